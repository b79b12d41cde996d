#!/usr/bin/env python3
"""Seal a secret in the Confidential Containers data hub's format, independently of ccmount.

    cdh_seal.py KEYDIR NAME KID [--type vault|envelope] [--alg ES256]

Makes (once) a P-256 key in KEYDIR/key.pem with openssl and its public JWK in
KEYDIR/key.jwk, then prints `sealed.<header>.<payload>.<signature>`: header
{"alg", "kid"}, payload {"version": "0.1.0", "type", "provider": "kbs", "name",
"provider_settings": {}, "annotations": {}}, signature ES256 (raw r || s) over
`header.payload`, made by `openssl dgst -sha256 -sign`. Only the openssl CLI and the Python
standard library are used: the tests hold ccmount's parser to a second implementation.
"""
import base64
import json
import os
import subprocess
import sys


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(sig):
    """ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) to r || s, 32 bytes each."""
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 2 + (sig[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        v = sig[i + 2:i + 2 + n].lstrip(b"\x00")
        out += v.rjust(32, b"\x00")
        i += 2 + n
    return out


def main():
    args = sys.argv[1:]
    keydir, name, kid = args[:3]
    kind = args[args.index("--type") + 1] if "--type" in args else "vault"
    alg = args[args.index("--alg") + 1] if "--alg" in args else "ES256"
    key = os.path.join(keydir, "key.pem")
    if not os.path.exists(key):
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                       check=True)
        spki = subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-outform", "DER"],
                              check=True, capture_output=True).stdout
        point = spki[-65:]
        assert point[0] == 4
        jwk = {"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:])}
        with open(os.path.join(keydir, "key.jwk"), "w", encoding="utf-8") as f:
            json.dump(jwk, f)
    header = {"alg": alg, "kid": kid}
    payload = {"version": "0.1.0", "type": kind, "provider": "kbs", "name": name,
               "provider_settings": {}, "annotations": {}}
    if kind == "envelope":
        payload.update(provider="aliyun", key_id="k", encrypted_key="AA", encrypted_data="AA",
                       wrap_type="A256GCM", iv="AA")
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                         input=signing_input.encode(), check=True, capture_output=True).stdout
    print(f"sealed.{signing_input}.{b64(der_to_raw(der))}")


if __name__ == "__main__":
    main()

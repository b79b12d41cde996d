"""Failure paths: wrong keys, tampered blocks, hostile safetensors headers, pins (right and
wrong), keys and pins from the test KBS, argument errors. Every failure is a subclass of
ccmount.Error; none returns data from a bad block; none is a PanicException."""

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import ccmount
from conftest import PASSWORD, ccmount_bin, run
from models import save_numpy

CIPHER_BS = 4096 + 32  # AES-GCM: 16-byte nonce + 4096 bytes + 16-byte tag
HEADER = 18


def model(tmp_path, name="plain"):
    plain = tmp_path / name
    plain.mkdir()
    rng = np.random.default_rng(7)
    t = {
        "head": np.arange(16, dtype=np.int32),
        "big": rng.standard_normal((512, 1024)).astype(np.float32),  # 2 MiB: blocks 0..512
    }
    save_numpy(plain / "m.safetensors", t)
    (plain / "config.json").write_text('{"a": 1}')
    return plain, t


def largest_cipher_file(cipher):
    files = [p for p in Path(cipher).rglob("*") if p.is_file() and p.name != "gocryptfs.conf"]
    return max(files, key=lambda p: p.stat().st_size)


def test_wrong_password(tmp_path, make_tree):
    plain, _ = model(tmp_path)
    cipher = make_tree(plain)
    bad = tmp_path / "bad"
    bad.write_bytes(b"not the password\n")
    with pytest.raises(ccmount.WrongKeyError) as e:
        ccmount.open_dir(cipher, passfile=bad)
    assert "wrong password" in str(e.value)
    assert "not the password" not in str(e.value)
    assert isinstance(e.value, ccmount.Error)


def test_wrong_master_key(tmp_path, make_tree):
    plain, _ = model(tmp_path)
    cipher = make_tree(plain, "ccmount")
    mk = tmp_path / "mk"
    mk.write_text("ab" * 32 + "\n")
    with pytest.raises(ccmount.WrongKeyError):
        ccmount.open_dir(cipher, masterkey_file=mk)


@pytest.mark.parametrize("tool", ["gocryptfs", "ccmount"])
def test_tampered_block_names_file_and_block(tmp_path, make_tree, passfile, tool):
    plain, t = model(tmp_path)
    cipher = make_tree(plain, tool)
    victim = largest_cipher_file(cipher)
    block = 300  # inside "big", far from "head"
    with open(victim, "r+b") as f:
        f.seek(HEADER + block * CIPHER_BS + 100)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x01]))
    with ccmount.open_dir(cipher, passfile=passfile) as d, d.safe_open("m.safetensors") as f:
        with pytest.raises(ccmount.CorruptError) as e:
            f.get_tensor("big")
        err = e.value
        assert err.block == block
        assert err.path == "m.safetensors"
        assert "m.safetensors" in str(err) and f"block {block}" in str(err)
        # Random access: what does not touch the bad block still reads.
        assert np.array_equal(f.get_tensor("head"), t["head"])
        assert np.array_equal(f.get_slice("big")[0:10], t["big"][0:10])
        with pytest.raises(ccmount.CorruptError):
            f.get_slice("big")[200:400]
        with pytest.raises(ccmount.CorruptError):
            d.read("m.safetensors")
        report = d.verify()
        assert report["ok"] is False
        assert any(x["block"] == block for x in report["findings"])


def test_zeroed_block_is_refused_by_default(tmp_path, make_tree, passfile):
    plain, t = model(tmp_path)
    cipher = make_tree(plain, "ccmount")
    victim = largest_cipher_file(cipher)
    with open(victim, "r+b") as f:
        f.seek(HEADER + 10 * CIPHER_BS)
        f.write(b"\0" * CIPHER_BS)
    with ccmount.open_dir(cipher, passfile=passfile) as d, d.safe_open("m.safetensors") as f:
        with pytest.raises(ccmount.CorruptError) as e:
            f.get_tensor("big")
        assert e.value.block == 10


def _st(header_bytes, data=b""):
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data


HOSTILE = {
    "short.safetensors": b"\x01\x02",
    "huge-len.safetensors": struct.pack("<Q", 1 << 62) + b"{}",
    "past-end.safetensors": struct.pack("<Q", 1000) + b"{}",
    "not-json.safetensors": _st(b"{not json"),
    "not-object.safetensors": _st(b"[1, 2]"),
    "bad-dtype.safetensors": _st(json.dumps({"x": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}).encode(), b"\0"),
    "size-mismatch.safetensors": _st(json.dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode(), b"\0" * 4),
    "overflow.safetensors": _st(json.dumps({"x": {"dtype": "F64", "shape": [1 << 62, 1 << 62], "data_offsets": [0, 8]}}).encode(), b"\0" * 8),
    "out-of-range.safetensors": _st(json.dumps({"x": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}).encode(), b"\0" * 4),
    "overlap.safetensors": _st(json.dumps({
        "x": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "y": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}).encode(), b"\0" * 6),
    "duplicate.safetensors": _st(b'{"x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "x": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', b"\0"),
    "complex.safetensors": _st(json.dumps({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}).encode(), b"\0" * 8),
}


def test_hostile_headers_raise_clean_exceptions(tmp_path, make_tree, passfile):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name, data in HOSTILE.items():
        (plain / name).write_bytes(data)
    cipher = make_tree(plain, "ccmount")
    with ccmount.open_dir(cipher, passfile=passfile) as d:
        for name in HOSTILE:
            with pytest.raises(ccmount.HeaderError) as e:
                d.safe_open(name)
            assert name in str(e.value), str(e.value)
            assert isinstance(e.value, ValueError) and isinstance(e.value, ccmount.CorruptError)


# --- pinning -------------------------------------------------------------------------------


def manifest_of(cipher, passfile, out):
    bin = ccmount_bin()
    if bin is None:
        pytest.skip("the ccmount binary is not built")
    digest = run([str(bin), "manifest", str(cipher), "--passfile", str(passfile), "--out", str(out)]).stdout
    return digest.decode().strip()


def test_pinned_open_right_and_wrong(tmp_path, make_tree, passfile):
    plain, t = model(tmp_path)
    cipher = make_tree(plain)
    man = tmp_path / "manifest.json"
    digest = manifest_of(cipher, passfile, man)
    assert digest == "sha256:" + hashlib.sha256(man.read_bytes()).hexdigest()

    for expect, mode in [(man, "full"), (man, "structure"), (digest, "full")]:
        with ccmount.open_dir(cipher, passfile=passfile, expect=expect, expect_mode=mode) as d:
            assert d.pinned_digest == digest
            with d.safe_open("m.safetensors") as f:
                assert np.array_equal(f.get_tensor("big"), t["big"])
            assert d.read("config.json") == b'{"a": 1}'

    with pytest.raises(ccmount.UsageError, match="full"):
        ccmount.open_dir(cipher, passfile=passfile, expect=digest, expect_mode="structure")

    # Another model's manifest: refused before anything is read, with the differences.
    other_plain = tmp_path / "other"
    other_plain.mkdir()
    (other_plain / "config.json").write_text('{"a": 2}')
    other = make_tree(other_plain, "ccmount")
    other_man = tmp_path / "other.json"
    other_digest = manifest_of(other, passfile, other_man)
    for expect in [other_man, other_digest]:
        with pytest.raises(ccmount.PinMismatchError) as e:
            ccmount.open_dir(cipher, passfile=passfile, expect=expect)
        assert e.value.differences


def test_pinned_files_are_held_to_the_pin_after_open(tmp_path, make_tree, passfile):
    plain, _ = model(tmp_path)
    (plain / "m2.safetensors").write_bytes((plain / "m.safetensors").read_bytes())
    cipher = make_tree(plain, "ccmount")
    man = tmp_path / "manifest.json"
    manifest_of(cipher, passfile, man)
    d = ccmount.open_dir(cipher, passfile=passfile, expect=man, expect_mode="structure")
    # After the check, the host swaps the two (same-size) files' ciphertexts.
    a, b = sorted((p for p in Path(cipher).iterdir() if p.stat().st_size > 1 << 20), key=str)
    tmp = a.with_name("swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    with pytest.raises(ccmount.PinMismatchError, match="file ID"):
        d.safe_open("m.safetensors")
    d.close()


# --- KBS -----------------------------------------------------------------------------------


def test_key_and_pin_from_the_test_kbs(tmp_path, make_tree, passfile, start_kbs):
    plain, t = model(tmp_path)
    cipher = make_tree(plain)  # the real gocryptfs, as in the PAI-EAS flow
    man = tmp_path / "manifest.json"
    manifest_of(cipher, passfile, man)
    kbs = start_kbs({
        "default/aliyun/model-decryption-key": PASSWORD,
        "default/pins/model": man.read_bytes(),
    })
    common = dict(kbs_url=kbs.url, kbs_cert=kbs.ca, tee="sample", kbs_timeout=20)
    with ccmount.open_dir(cipher, key="kbs:///default/aliyun/model-decryption-key",
                          expect="kbs:///default/pins/model", **common) as d:
        assert d.pinned_digest.startswith("sha256:")
        with d.safe_open("m.safetensors") as f:
            assert np.array_equal(f.get_tensor("big"), t["big"])

    with pytest.raises(ccmount.KbsError) as e:
        ccmount.open_dir(cipher, key="kbs:///default/aliyun/missing", **common)
    assert "missing" in str(e.value)
    # The KBS's CA is not trusted without kbs_cert.
    with pytest.raises(ccmount.KbsError):
        ccmount.open_dir(cipher, key="kbs:///default/aliyun/model-decryption-key",
                         kbs_url=kbs.url, tee="sample", kbs_timeout=10)
    # The password resource read as a master key: a wrong-key error, not a crash.
    with pytest.raises(ccmount.WrongKeyError):
        ccmount.open_dir(cipher, key="kbs:///default/aliyun/model-decryption-key",
                         key_format="masterkey", **common)


# --- arguments -----------------------------------------------------------------------------


def test_argument_errors(tmp_path, make_tree, passfile):
    plain, _ = model(tmp_path)
    cipher = make_tree(plain, "ccmount")
    cases = [
        dict(),
        dict(passfile=passfile, masterkey_file=passfile),
        dict(key="hunter2"),
        dict(key="kbs:///default/key/k"),
        dict(passfile=tmp_path / "absent"),
        dict(passfile=passfile, expect="sha256:1234"),
        dict(passfile=passfile, expect_mode="fast"),
        dict(passfile=passfile, key_format="pem"),
    ]
    for kw in cases:
        with pytest.raises(ccmount.UsageError) as e:
            ccmount.open_dir(cipher, **kw)
        assert "hunter2" not in str(e.value)
    with pytest.raises(ccmount.BadCipherDirError):
        ccmount.open_dir(tmp_path, passfile=passfile)
    with ccmount.open_dir(cipher, passfile=passfile) as d:
        with pytest.raises(ccmount.UsageError):
            d.safe_open("m.safetensors", framework="tf")
        with pytest.raises(ccmount.UsageError):
            d.safe_open("m.safetensors", framework="numpy", device="cuda:0")
        with pytest.raises(ccmount.UsageError):
            d.open("m.safetensors").read_at(-1, 5)

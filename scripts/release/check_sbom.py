#!/usr/bin/env python3
"""Check a release SBOM and the dependency list embedded in its artifact (scripts/release.sh).

    check_sbom.py SBOM.cdx.json ARTIFACT

1. The SBOM validates against the CycloneDX 1.5 JSON schema (cyclonedx-python-lib, strict).
2. It lists our crates and the crypto stack.
3. ARTIFACT (the binary, or a .deb holding usr/bin/ccmount) has the `.dep-v0` section that
   cargo-auditable embeds (zlib-compressed JSON); every crates.io package listed there is a
   component of the SBOM with the same version, so the two lists tell the same story.
Exit 1 with the reason on any failure.
"""
import json
import os
import subprocess
import sys
import tempfile
import zlib

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

OURS = {"ccmount", "attest", "gocryptfs-format", "fuse-decrypt", "gpu-loader"}
MUST = {"aws-lc-rs", "rustls", "fuser", "scrypt"}


def fail(msg):
    print(f"check_sbom: {msg}", file=sys.stderr)
    sys.exit(1)


def embedded(artifact):
    with tempfile.TemporaryDirectory() as tmp:
        elf = artifact
        if artifact.endswith(".deb"):
            subprocess.run(["dpkg-deb", "-x", artifact, tmp], check=True)
            elf = os.path.join(tmp, "usr/bin/ccmount")
        out = os.path.join(tmp, "dep-v0")
        r = subprocess.run(["objcopy", "--dump-section", f".dep-v0={out}", elf, os.path.join(tmp, "x")],
                           capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(out):
            fail(f"{artifact}: no .dep-v0 section (not built with cargo auditable?): {r.stderr.strip()}")
        with open(out, "rb") as f:
            return json.loads(zlib.decompress(f.read()))


def main():
    sbom_path, artifact = sys.argv[1:3]
    with open(sbom_path, encoding="utf-8") as f:
        text = f.read()
    err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    if err is not None:
        fail(f"{sbom_path}: not valid CycloneDX 1.5: {err}")
    bom = json.loads(text)
    comps = {}
    stack = list(bom.get("components", []))
    main_comp = bom.get("metadata", {}).get("component")
    if main_comp:
        stack.append(main_comp)
    while stack:
        c = stack.pop()
        comps.setdefault(c["name"], set()).add(c.get("version"))
        stack.extend(c.get("components", []))
    missing = (OURS | MUST) - comps.keys()
    if missing:
        fail(f"{sbom_path}: lacks {sorted(missing)}")
    deps = embedded(artifact)
    listed = 0
    for p in deps["packages"]:
        if p.get("source") != "crates.io":
            continue
        listed += 1
        if p["version"] not in comps.get(p["name"], set()):
            fail(f"{artifact} embeds {p['name']} {p['version']}, which {sbom_path} does not list")
    names = {p["name"] for p in deps["packages"]}
    if not OURS - {"fuse-decrypt"} <= names:
        fail(f"{artifact}: the embedded list lacks our crates: {sorted(OURS - names)}")
    print(f"  {os.path.basename(sbom_path)}: valid CycloneDX 1.5, {sum(len(v) for v in comps.values())} "
          f"components; {os.path.basename(artifact)} embeds {len(deps['packages'])} packages "
          f"({listed} from crates.io), all in the SBOM", file=sys.stderr)


if __name__ == "__main__":
    main()

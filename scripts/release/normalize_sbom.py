#!/usr/bin/env python3
"""Make a cargo-cyclonedx SBOM reproducible (scripts/release.sh).

    normalize_sbom.py IN.json COMMIT SOURCE_DATE_EPOCH OUT.json

cargo-cyclonedx writes a random serial number, the current time and the absolute paths of
path dependencies (our own crates). The serial number becomes a UUIDv5 of the commit, the
time the commit's, and every `file://` path of this tree is rewritten relative to
/build/ccmount, as the binary's remapped paths are. Nothing else changes.
"""
import datetime
import json
import os
import sys
import uuid


def rewrite(v, root):
    if isinstance(v, dict):
        return {k: rewrite(x, root) for k, x in v.items()}
    if isinstance(v, list):
        return [rewrite(x, root) for x in v]
    if isinstance(v, str):
        return v.replace(root, "/build/ccmount")
    return v


def main():
    src, commit, epoch, dst = sys.argv[1:5]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(src, encoding="utf-8") as f:
        bom = json.load(f)
    bom = rewrite(bom, root)
    bom["serialNumber"] = "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "ccmount:" + commit))
    meta = bom.setdefault("metadata", {})
    meta["timestamp"] = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(bom, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()

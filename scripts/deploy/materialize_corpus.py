#!/usr/bin/env python3
"""Copy one variant of the gocryptfs 2.3 corpus and restore what git lost.

Git stores the corpus' symlinks as plain files holding the link target, and does not keep
empty directories. This writes a faithful copy of a variant's cipher tree:

    materialize_corpus.py CORPUS_DIR VARIANT OUT_DIR

CORPUS_DIR is tests/fixtures/gocryptfs-2.3 (with MANIFEST.json); OUT_DIR must not exist.
Xattrs (gocryptfs keeps none on cipher files of these variants) are not restored.
"""
import json
import os
import shutil
import sys


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    corpus, variant, out = sys.argv[1:]
    manifest = json.load(open(os.path.join(corpus, "MANIFEST.json"), encoding="utf-8"))
    entries = manifest["variants"][variant]["entries"]
    shutil.copytree(os.path.join(corpus, variant), out, symlinks=True)
    links = 0
    for e in entries:
        path = os.path.join(out, e["cipher"])
        if e["type"] == "dir":
            os.makedirs(path, exist_ok=True)
        elif e["type"] == "symlink":
            target = e["cipher_target"]
            with open(path, encoding="utf-8") as f:
                stored = f.read()
            if stored != target:
                print(f"{path}: stored text does not match the manifest target", file=sys.stderr)
                return 1
            os.remove(path)
            os.symlink(target, path)
            links += 1
    print(f"materialized {variant} into {out} ({len(entries)} entries, {links} symlinks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Say where two builds of one artifact differ (scripts/check-reproducible.sh).

    explain_diff.py A B

ELF: the sections whose bytes differ (readelf + objcopy), with the first differing offset.
.deb: the ar members that differ, then the files of data.tar that differ (dpkg-deb -x).
JSON and text: a unified diff (first 60 lines). Anything else: the first differing byte.
"""
import difflib
import filecmp
import hashlib
import os
import subprocess
import sys
import tempfile


def first_diff(x, y):
    for i, (p, q) in enumerate(zip(x, y)):
        if p != q:
            return i
    return min(len(x), len(y))


def sections(path):
    out = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True).stdout
    names = []
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("[") and "]" in line:
            parts = line.split("]", 1)[1].split()
            if parts and parts[0] not in ("Name", "NULL"):
                names.append(parts[0])
    return names


def dump(path, name, tmp):
    out = os.path.join(tmp, hashlib.sha256((path + name).encode()).hexdigest())
    subprocess.run(["objcopy", "--dump-section", f"{name}={out}", path, os.path.join(tmp, "junk")],
                   capture_output=True)
    try:
        with open(out, "rb") as f:
            return f.read()
    except OSError:
        return None


def elf(a, b):
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(set(sections(a)) | set(sections(b))):
            x, y = dump(a, name, tmp), dump(b, name, tmp)
            if x != y:
                where = "missing in one" if x is None or y is None else \
                    f"{len(x)} vs {len(y)} bytes, first difference at offset {first_diff(x, y)}"
                print(f"    section {name}: {where}")


def deb(a, b):
    with tempfile.TemporaryDirectory() as tmp:
        da, db = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        for src, dst in ((a, da), (b, db)):
            os.makedirs(dst)
            subprocess.run(["dpkg-deb", "-R", src, dst], check=True)
        cmp = filecmp.dircmp(da, db)
        report(cmp, "")


def report(cmp, prefix):
    for n in cmp.left_only + cmp.right_only:
        print(f"    {prefix}{n}: only in one package")
    for n in cmp.diff_files:
        print(f"    {prefix}{n}: differs")
    for n, sub in cmp.subdirs.items():
        report(sub, f"{prefix}{n}/")


def main():
    a, b = sys.argv[1:3]
    with open(a, "rb") as f:
        x = f.read()
    with open(b, "rb") as f:
        y = f.read()
    if x[:4] == b"\x7fELF":
        elf(a, b)
    elif a.endswith(".deb"):
        deb(a, b)
    elif a.endswith((".json", ".txt")):
        lines = difflib.unified_diff(x.decode(errors="replace").splitlines(),
                                     y.decode(errors="replace").splitlines(), "A", "B", lineterm="")
        for i, line in enumerate(lines):
            if i >= 60:
                print("    ...")
                break
            print(f"    {line}")
    else:
        print(f"    first difference at byte {first_diff(x, y)} ({len(x)} vs {len(y)} bytes)")


if __name__ == "__main__":
    main()

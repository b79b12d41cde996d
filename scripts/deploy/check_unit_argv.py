#!/usr/bin/env python3
"""Check that the ccmount command lines of the systemd units parse.

    check_unit_argv.py CCMOUNT_BIN ENV_FILE UNIT...

For each unit, joins continued lines, takes ExecStart=, substitutes ${VAR} from ENV_FILE (the
example EnvironmentFile) and %i with "model", and runs `CCMOUNT_BIN ARGS... --help`: the real
CLI parser must accept every flag and value.
"""
import re
import shlex
import subprocess
import sys


def main():
    binary, env_file, *units = sys.argv[1:]
    env = {}
    with open(env_file, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                env[k] = v
    bad = 0
    for unit in units:
        with open(unit, encoding="utf-8") as f:
            text = f.read().replace("\\\n", " ")
        starts = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("ExecStart=")]
        if len(starts) != 1:
            print(f"FAIL: {unit}: want one ExecStart=, found {len(starts)}", file=sys.stderr)
            bad += 1
            continue
        cmd = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], starts[0]).replace("%i", "model")
        words = shlex.split(cmd)
        if not words[0].endswith("/ccmount"):
            print(f"FAIL: {unit}: ExecStart runs {words[0]}, not ccmount", file=sys.stderr)
            bad += 1
            continue
        r = subprocess.run([binary, *words[1:], "--help"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            print(f"FAIL: {unit}: {' '.join(words)}: {r.stderr.strip()}", file=sys.stderr)
            bad += 1
        else:
            print(f"  {unit.rsplit('/', 1)[-1]}: ccmount {' '.join(words[1:])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

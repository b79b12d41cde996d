#!/usr/bin/env python3
"""Check that every ccmount command line in a GitHub Actions workflow parses.

    check_workflow_argv.py CCMOUNT_BIN WORKFLOW.yml

Finds each `run:` script that starts the image (`"$CCMOUNT_IMAGE"`), takes the words after
the image reference up to a redirection, and runs `CCMOUNT_BIN WORDS... --help`: the real CLI
parser must accept every flag and value (required positionals are not checked by --help).
"""
import shlex
import subprocess
import sys

import yaml


def main():
    binary, workflow = sys.argv[1:3]
    with open(workflow, encoding="utf-8") as f:
        wf = yaml.safe_load(f)
    checked = 0
    bad = 0
    for job_name, job in wf["jobs"].items():
        for step in job.get("steps", []):
            script = step.get("run", "")
            if '"$CCMOUNT_IMAGE"' not in script:
                continue
            joined = script.replace("\\\n", " ")
            tail = joined.split('"$CCMOUNT_IMAGE"', 1)[1].splitlines()[0]
            words = []
            for w in shlex.split(tail):
                if w in (">", ">>", "|"):
                    break
                words.append(w)
            r = subprocess.run([binary, *words, "--help"], capture_output=True, text=True, timeout=30)
            checked += 1
            if r.returncode != 0:
                bad += 1
                print(f"FAIL: {job_name}: ccmount {' '.join(words)}: {r.stderr.strip()}", file=sys.stderr)
            else:
                print(f"  {job_name}: ccmount {' '.join(words)}")
    if checked == 0:
        print("FAIL: no ccmount command found in the workflow", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

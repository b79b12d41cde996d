#!/usr/bin/env bash
# Builds the release twice from clean clones of HEAD in two different directories (different
# path lengths, different times) with scripts/release.sh, and compares every artifact
# (docs/release.md). Then validates the SBOMs against the CycloneDX schema and checks the
# dependency list cargo-auditable embedded in the binary.
#
#   scripts/check-reproducible.sh [--keep]
#
# On a difference it names the artifact and, for the binary, the ELF sections that differ;
# for the .deb, the members and files; for JSON, a unified diff. Exit 1 on any difference.
# Leaves the first build's artifacts in target/release-check/a/dist for scripts/test-deb.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keep=0
[ "${1:-}" = "--keep" ] && keep=1
say() { printf 'reproducible: %s\n' "$*" >&2; }

git rev-parse --verify -q HEAD >/dev/null 2>&1 ||
  { say "SKIP: not a git checkout (a release is built from a commit)"; exit 0; }
venv=target/deploy-venv
[ -x "$venv/bin/python" ] || { say "no $venv (scripts/test-deploy.sh makes it)"; exit 1; }

base=$root/target/release-check
rm -rf "$base"
mkdir -p "$base"
# Two clones of the committed tree, at paths of different lengths.
dir_a=$base/a/ccmount
dir_b=$base/bb/nested/ccmount-clone
head=$(git rev-parse HEAD)
for d in "$dir_a" "$dir_b"; do
  mkdir -p "$(dirname "$d")"
  git clone -q --no-hardlinks "$root" "$d"
  git -C "$d" checkout -q --detach "$head" # this commit, whatever branch HEAD is on
done
# The clones have no ../shared; nothing in a release build needs it.
say "build A in $dir_a"
(cd "$dir_a" && TZ=UTC scripts/release.sh --out "$base/a/dist")
sleep 2 # a later wall clock for B
say "build B in $dir_b"
(cd "$dir_b" && TZ=Pacific/Kiritimati LANG=C scripts/release.sh --out "$base/bb/dist")

a=$base/a/dist b=$base/bb/dist
fail=0
while read -r sum name; do
  other=$(awk -v n="$name" '$2 == n {print $1}' "$b/SHA256SUMS")
  if [ "$sum" = "$other" ]; then
    say "same: $name ($sum)"
    continue
  fi
  fail=1
  say "DIFFERENT: $name (A $sum, B ${other:-missing})"
  "$venv/bin/python" scripts/release/explain_diff.py "$a/$name" "$b/$name" >&2 || true
done <"$a/SHA256SUMS"
cmp -s "$a/SHA256SUMS" "$b/SHA256SUMS" || { say "the artifact lists differ"; diff "$a/SHA256SUMS" "$b/SHA256SUMS" >&2 || true; fail=1; }
if [ -f "$a/image.txt" ]; then
  if cmp -s "$a/image.txt" "$b/image.txt"; then
    say "same image: $(grep '^id ' "$a/image.txt")"
  else
    say "DIFFERENT image:"; diff "$a/image.txt" "$b/image.txt" >&2 || true; fail=1
  fi
fi

# The SBOMs are valid CycloneDX 1.5, and the binary carries its dependency list.
for s in "$a"/*.cdx.json; do
  "$venv/bin/python" scripts/release/check_sbom.py "$s" "$a/$(basename "$s" .cdx.json)"
done
((keep)) || rm -rf "$dir_a" "$dir_b"
((fail == 0)) || { say "FAILED: the two builds differ"; exit 1; }
say "ok: two builds from $(git rev-parse --short=12 HEAD) in different directories are identical"

#!/usr/bin/env bash
# Benchmarks: tests/bench/run.sh <suite> [...]. Each suite prints lines
#   metric=<name> ours=<v> [gocryptfs=<v> ratio=<x>]
# (median of several runs). Record results with the command in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage() {
  echo "usage: tests/bench/run.sh <suite>..." >&2
  echo "suites: attest" >&2
  exit 2
}

suite_attest() {
  # auth+attest+resource against the local test KBS over HTTPS (sample evidence, EC key),
  # then requests per further resource with a cached token.
  cargo run --release --locked -q -p e2e --bin attest-bench -- "$@"
}

[ $# -ge 1 ] || usage
for suite in "$@"; do
  case "$suite" in
    attest) suite_attest ;;
    *) echo "unknown suite: $suite" >&2; usage ;;
  esac
done

#!/usr/bin/env bash
# Benchmarks ccmount side by side with gocryptfs; prints one line per metric:
#   metric=<name> ours=<MB/s> gocryptfs=<MB/s> ratio=<x>      (median of RUNS runs)
# Usage: tests/bench/run.sh SUITE   (SUITE = a file in tests/bench/suites/, e.g. offline)
# Adding a suite: drop tests/bench/suites/<name>.sh defining `suite_main`; it may use the
# helpers in tests/bench/lib.sh. Results go in docs/benchmarks.md with the command.
set -euo pipefail
cd "$(dirname "$0")/../.."
suite=${1:-}
file="tests/bench/suites/${suite}.sh"
if [[ -z "$suite" || ! -f "$file" ]]; then
  echo "usage: $0 SUITE   (available: $(cd tests/bench/suites && ls ./*.sh | xargs -n1 basename | sed 's/\.sh$//' | tr '\n' ' '))" >&2
  exit 2
fi
shift
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
# shellcheck disable=SC1090
source "$file"
suite_main "$@"

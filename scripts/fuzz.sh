#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 600), JOBS at a time (env FUZZ_JOBS,
# default 1), and prints one summary line per target: seconds, executions, coverage, and
# whether it found a crash. Needs nightly and cargo-fuzz (`cargo install cargo-fuzz
# --locked`); CI does not run this, it replays the corpora instead (docs/fuzzing.md).
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 60 jwe kbs_json
#   FUZZ_JOBS=2 scripts/fuzz.sh 300
#
# New interesting inputs go to fuzz/work/<target>/ (ignored by git); the curated seeds in
# fuzz/corpus/<target>/ are only read. Crashes land in fuzz/artifacts/<target>/: add the
# input to fuzz/corpus/<target>/, list it in FINDINGS (tests/tests/it/fuzz_corpus.rs), fix.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:-600}
shift || true
jobs=${FUZZ_JOBS:-1}
if (($#)); then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

cargo +nightly fuzz build >&2
mkdir -p work logs

run_one() {
  local t=$1
  mkdir -p "work/$t"
  local start=$SECONDS rc=0
  cargo +nightly fuzz run "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 >"logs/$t.log" 2>&1 || rc=$?
  local took=$((SECONDS - start))
  local execs cov
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo '?')
  local verdict=clean
  ((rc == 0)) || verdict="CRASH (rc $rc, see fuzz/logs/$t.log and fuzz/artifacts/$t/)"
  printf '%-16s %6ss %12s execs  cov %6s  %s\n' "$t" "$took" "$execs" "$cov" "$verdict"
  return "$rc"
}

fail=0
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || fail=1
    running=$((running - 1))
  fi
done
while ((running > 0)); do
  wait -n || fail=1
  running=$((running - 1))
done
exit "$fail"

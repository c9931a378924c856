#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time and prints the executions per target
# and the crashes found.
#
#   scripts/fuzz.sh [SECONDS]   each target for SECONDS (default 60)
#   scripts/fuzz.sh --smoke     each target for 10 s, starting from the checked-in corpus (CI)
#
# The checked-in seeds (fuzz/corpus/<target>/) are only read; what the fuzzer finds goes to
# fuzz/corpus-work/<target>/ (ignored by git). A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1: turn it into a unit test in the
# library, fix it, and add the input to the corpus if it is small.
# Needs the nightly toolchain and cargo-fuzz (scripts/setup-test-deps.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=60
if [ "${1:-}" = "--smoke" ]; then
  secs=10
elif [ -n "${1:-}" ]; then
  secs=$1
fi

# Safe Rust: no sanitizer (AddressSanitizer finds nothing the borrow checker has not, and
# halves the speed); debug assertions and overflow checks stay on.
flags=(--sanitizer none)
targets=$(cargo +nightly fuzz list)
cargo +nightly fuzz build "${flags[@]}"

failed=0
printf '%-16s %14s %10s  %s\n' target executions "exec/s" result
for t in $targets; do
  work="fuzz/corpus-work/$t"
  mkdir -p "$work" "fuzz/corpus/$t"
  log=$(mktemp)
  set +e
  cargo +nightly fuzz run "${flags[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ -z "$runs" ]; then
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  fi
  runs=${runs:-0}
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    failed=1
    result="CRASH (exit $rc): $(grep -o 'fuzz/artifacts/[^ ]*' "$log" | head -1)"
    grep -m1 -A4 'panicked at' "$log" >&2 || tail -20 "$log" >&2
  fi
  printf '%-16s %14s %10s  %s\n' "$t" "$runs" "$((runs / secs))" "$result"
  rm -f "$log"
done
exit "$failed"

#!/usr/bin/env bash
# fuzz/run.sh SECONDS [TARGET...]: builds the libFuzzer targets (clang-16, ASan + UBSan, every
# project library instrumented; -DMXP_FUZZ=ON) in build-fuzz/ if needed, then runs each target
# for SECONDS (default 60), one after the other under `nice -n 19`, and prints executions,
# exec/s, coverage (cov/ft), corpus size and findings per target.
#
# Seeds: fuzz/corpus/<target> (read only). The growing corpus lives in
# build-fuzz/fuzz-work/<target> (not committed) and is reused by the next run. Every crash,
# leak, timeout or OOM input is written to fuzz/corpus/<target>/ (crash-<sha1>, ...), which
# ctest replays (fuzz_<target>_corpus): fix the finding, keep the input as a regression.
#
# Environment: MXP_FUZZ_BUILD (build dir, default build-fuzz), CC/CXX (default clang-16),
# MXP_FUZZ_ARGS (extra libFuzzer flags, e.g. "-max_len=8192").
# Exit status: 0 when no target found anything, 1 otherwise.
set -euo pipefail

secs=${1:-60}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(config homeserver_answer api_request)

root=$(cd "$(dirname "$0")/.." && pwd)
build=${MXP_FUZZ_BUILD:-$root/build-fuzz}
work=$build/fuzz-work
logs=$build/fuzz-logs

if [[ ! -f $build/CMakeCache.txt ]]; then
  CC=${CC:-clang-16} CXX=${CXX:-clang++-16} cmake -S "$root" -B "$build" -DMXP_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
grep -q '^MXP_FUZZ:BOOL=ON' "$build/CMakeCache.txt" || {
  echo "run.sh: $build is not a -DMXP_FUZZ=ON build" >&2
  exit 2
}
nice -n 19 cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}" >/dev/null

# Symbolized reports. Debian's clang-16 package ships no llvm-symbolizer; the default one works.
if [[ -z ${ASAN_SYMBOLIZER_PATH:-} ]]; then
  for s in llvm-symbolizer-16 llvm-symbolizer llvm-symbolizer-14; do
    if command -v "$s" >/dev/null; then
      ASAN_SYMBOLIZER_PATH=$(command -v "$s")
      export ASAN_SYMBOLIZER_PATH
      break
    fi
  done
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

list_findings() { find "$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
  -o -name 'timeout-*' -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort; }

status=0
summary=()
for t in "${targets[@]}"; do
  seeds=$root/fuzz/corpus/$t
  mkdir -p "$work/$t" "$logs"
  before=$(list_findings "$seeds")
  log=$logs/$t.log
  echo "== fuzz_$t: ${secs}s, log $log"
  # The first directory receives new inputs; the seeds are only read.
  # shellcheck disable=SC2086
  nice -n 19 "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$seeds/" ${MXP_FUZZ_ARGS:-} \
    "$work/$t" "$seeds" >"$log" 2>&1 || true
  new=$(comm -13 <(echo "$before") <(list_findings "$seeds") | sed '/^$/d' || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(find "$work/$t" -type f | wc -l)
  nfind=$(sed '/^$/d' <<<"$new" | wc -l)
  line=$(printf '%-18s execs %-10s exec/s %-7s cov %-6s ft %-7s corpus %-6s findings %s' \
    "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$nfind")
  echo "$line"
  summary+=("$line")
  if [[ $nfind -gt 0 ]]; then
    status=1
    while read -r f; do echo "   new finding: $f"; done <<<"$new"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -5 | sed 's/^/   /'
  elif ! grep -q 'Done [0-9]* runs' "$log"; then
    status=1
    echo "   fuzz_$t stopped early without an artifact; see $log"
    tail -5 "$log" | sed 's/^/   /'
  fi
done

echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status

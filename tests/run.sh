#!/usr/bin/env bash
# tests/run.sh - runs every test of make check and prints one closing line
# "N passed, N failed, N skipped".
#
# A test is a unit binary (build/tests/test_*), a fuzz regression replay (build/tests/fuzz_*_replay
# over tests/fuzz/corpus/NAME/), or a shell script (tests/golden/*.sh, tests/parity/*.sh).
# Protocol: exit 0 = PASS, 77 = SKIP (say why on the last line of output), anything else = FAIL.
# Output of each test goes to $BUILD/logs/NAME.log; failing logs are printed at the end. A sanitizer
# report in a log (make check SAN=1) fails its test whatever the exit status. A test still running
# after DD_TEST_TIMEOUT seconds (default 1200) is stopped and fails: on 2 busy cores the longest
# (parity-evaltrain, about 2.5 min alone) took over 600 s.
set -uo pipefail
export LC_ALL=C   # the tests read and print numbers with a decimal point
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD PYTHON=${PYTHON:-/usr/bin/python3}
export BIN=$PWD/$BUILD/bin TESTS=$PWD/tests TMPROOT=${TMPDIR:-/tmp}
JOBS=${JOBS:-$(nproc)}
export DD_TEST_TIMEOUT=${DD_TEST_TIMEOUT:-1200}
logs=$BUILD/logs
rm -rf "$logs" && mkdir -p "$logs"

list=()
for t in "$BUILD"/tests/test_*; do [ -x "$t" ] && list+=("unit:$t"); done
for t in "$BUILD"/tests/fuzz_*_replay; do [ -x "$t" ] && list+=("fuzz:$t"); done
for t in tests/golden/*.sh tests/parity/*.sh; do
    case ${t##*/} in lib*.sh) continue ;; esac   # sourced helpers, not tests
    [ -f "$t" ] && list+=("sh:$t")
done

run_one() {
    local spec=$1 kind=${1%%:*} path=${1#*:} name rc
    name=$(basename "$path"); name=${name%.sh}
    [ "$kind" = sh ] && name=$(basename "$(dirname "$path")")-$name   # golden-x, parity-x
    local log=$logs/$name.log start=$SECONDS
    case $kind in
    unit) timeout "$DD_TEST_TIMEOUT" "$path" >"$log" 2>&1; rc=$? ;;
    fuzz) local corpus=tests/fuzz/corpus/${name%_replay}; corpus=${corpus/fuzz_/}
          timeout "$DD_TEST_TIMEOUT" "$path" "$corpus" >"$log" 2>&1; rc=$? ;;
    sh)   local work; work=$(mktemp -d "$TMPROOT/ddtest.XXXXXX")
          (cd "$work" && timeout "$DD_TEST_TIMEOUT" bash "$OLDPWD/$path") >"$log" 2>&1; rc=$?
          rm -rf "$work" ;;
    esac
    local dt=$((SECONDS - start)) res
    [ "$rc" = 124 ] && echo "(stopped: still running after $DD_TEST_TIMEOUT s; DD_TEST_TIMEOUT=S sets the limit)" >>"$log"
    case $rc in 0) res=PASS ;; 77) res=SKIP ;; *) res=FAIL ;; esac
    # a sanitizer's report (make check SAN=1) fails the test even where the program's exit status
    # was the one the test expected (a leak on an error path, say)
    if [ $res != FAIL ] && grep -qE '^==[0-9]+==ERROR: (Address|Leak)Sanitizer|: runtime error: ' "$log"; then
        res=FAIL
        echo "(a sanitizer reported an error above)" >>"$log"
    fi
    if [ $res = SKIP ]; then echo "$res $name (${dt}s): $(tail -n 1 "$log")"
    else echo "$res $name (${dt}s)"; fi
}
export -f run_one
export logs

results=$(printf '%s\n' "${list[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {} | tee /dev/stderr)
pass=$(grep -c '^PASS' <<<"$results" || true)
fail=$(grep -c '^FAIL' <<<"$results" || true)
skip=$(grep -c '^SKIP' <<<"$results" || true)
for n in $(grep '^FAIL' <<<"$results" | awk '{print $2}'); do
    # the failing checks first (a golden test's FAIL: lines come amid its ok: lines), then the end
    echo "---- $n ----"; grep -m 20 -E '^(FAIL|not ok)|[ :]FAIL$' "$logs/$n.log" && echo "[...]"
    tail -n 40 "$logs/$n.log"
done
if [ "${DD_REQUIRE_GPU:-0}" = 1 ] && grep -q '^SKIP.*GPU' <<<"$results"; then
    echo "check-gpu: GPU tests were skipped"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]

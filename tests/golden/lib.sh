# lib.sh - helpers for the golden shell tests (sourced). Each test runs in a fresh temporary
# directory; $BIN holds the programs, $TESTS the tests folder, $PYTHON the interpreter for peers.
# A test exits 0 on pass, 77 to skip (with the reason as its last line), anything else on failure.
set -euo pipefail
export LC_ALL=C   # numbers with a decimal point (bash's time and $EPOCHREALTIME, awk), as tests/run.sh sets
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
# expect_exit CODE DESC -- CMD...: runs CMD, checks its exit status.
expect_exit() {
    local want=$1 desc=$2; shift 3
    local rc=0
    "$@" || rc=$?
    if [ "$rc" = "$want" ]; then ok "$desc (exit $rc)"; else fail "$desc: exit $rc, want $want"; fi
}
# expect_usage PROG ARGS...: exit 2, empty stdout, one-line message on stderr starting "prog:".
expect_usage() {
    local rc=0 prog=$1
    "$BIN/$@" >out.usage 2>err.usage </dev/null || rc=$?
    [ "$rc" = 2 ] || fail "$* : exit $rc, want 2"
    [ ! -s out.usage ] || fail "$* : stdout not empty on usage error"
    grep -q "^$prog: " err.usage || fail "$* : stderr lacks '$prog: ' message"
    [ "$rc" = 2 ] && ok "usage error: $*"
}
have_torch() { "$PYTHON" -c 'import torch' >/dev/null 2>&1; }
fmnist=${FMNIST:-/usr/share/datasets/fashion-mnist}   # FMNIST: another copy (the device machine)
finish() {
    if [ "$fails" -gt 0 ]; then echo "$fails failure(s)" >&2; exit 1; fi
    echo "all ok"; exit 0
}

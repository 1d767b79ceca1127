# lib_tools.sh - helpers shared by the stream tools' golden tests (sourced after lib.sh).

# mk_npy DIR N C H W SEED [u8|f32]: image.npy (uniform [0,1] or bytes), label.npy (3 classes),
# soft.npy [N,3] float32, classes.txt, keys.txt.
mk_npy() {
    "$PYTHON" - "$@" <<'PY'
import os, sys, numpy as np
d, n, c, h, w, seed = sys.argv[1], *map(int, sys.argv[2:7])
kind = sys.argv[7] if len(sys.argv) > 7 else "f32"
r = np.random.default_rng(seed)
os.makedirs(d, exist_ok=True)
img = r.integers(0, 256, (n, c, h, w), dtype=np.uint8) if kind == "u8" else r.random((n, c, h, w), dtype=np.float32)
np.save(f"{d}/image.npy", img)
np.save(f"{d}/label.npy", (np.arange(n) % 3).astype(np.int64))
np.save(f"{d}/soft.npy", r.random((n, 3), dtype=np.float32))
open(f"{d}/classes.txt", "w").write("cat\ndog\nbird\n")
open(f"{d}/keys.txt", "w").write("".join(f"k{i:04d}\n" for i in range(n)))
PY
}

# on_tty CMD...: runs CMD with stdout on a pseudo-terminal; returns its exit status (77 without script).
on_tty() {
    command -v script >/dev/null || return 77
    script -qec "$(printf '%q ' "$@")" /dev/null >tty.out 2>&1
}

# slow_cat FILE: a shell command that writes FILE with a pause of 1.2 s at its middle, so that a
# program reading it draws its progress line (drawn at most every 0.25 s) before the second half.
# The pause starts once the reader has read from the pipe (slow_cat.py): a sanitizer build takes up
# to half a second to reach its first read, and with a fixed pause from the writer's start it
# sometimes read both halves at once.
slow_cat() { printf "'%s' '%s' '%s'" "$PYTHON" "$TESTS/golden/slow_cat.py" "$1"; }

# check_tty PROG ARGS...: the program refuses to write binary data to a terminal (exit 2).
check_tty() {
    local rc=0
    on_tty "$BIN/$1" "${@:2}" || rc=$?
    if [ "$rc" = 77 ]; then echo "skip: no script(1), terminal refusal not checked"
    elif [ "$rc" = 2 ] && grep -q "terminal" tty.out; then ok "$1 refuses a terminal"
    else fail "$1 on a terminal: exit $rc: $(head -c 200 tty.out)"; fi
}

# tty_lines_clean PATTERN: each line of tty.out (on_tty's transcript) that holds PATTERN shows it
# at the left margin: the progress line drawn before it was erased (what follows its last carriage
# return, less an erase-line, starts with PATTERN). Fails when no line holds PATTERN.
tty_lines_clean() {
    "$PYTHON" - "$1" <<'PY'
import sys
pat, n = sys.argv[1], 0
for line in open("tty.out", encoding="utf-8", errors="replace").read().split("\n"):
    if pat not in line:
        continue
    n += 1
    shown = line.rstrip("\r").split("\r")[-1].replace("\x1b[K", "")
    if not shown.startswith(pat):
        sys.exit(f"shown as {shown!r}")
if n == 0:
    sys.exit(f"no line holds {pat!r}")
PY
}

# check_truncated PROG ARGS... : the program fed with a truncated stream file cut.tsr (operand
# appended) exits 1 and its message says truncated and names the file.
check_truncated() {
    local rc=0
    "$BIN/$1" "${@:2}" cut.tsr >trunc.out 2>trunc.err || rc=$?
    if [ "$rc" = 1 ] && grep -q "truncated" trunc.err && grep -q "cut.tsr" trunc.err; then ok "$1: truncated input"
    else fail "$1 on truncated input: exit $rc: $(cat trunc.err)"; fi
}

# check_output PROG ARGS...: -o FILE writes what stdout gets (the same records), and nothing on
# stdout; -o into a missing directory is exit 1 naming the file, creating nothing; and a truncated
# input (cut.tsr in place of ARGS' last word) with -o is exit 1 leaving neither the file nor a
# temporary.
check_output() {
    local rc=0 n=$# f0=$fails
    local args=("${@:2}") first=("${@:2:n-2}")
    "$BIN/$1" "${args[@]}" >o_stdout.tsr || fail "$1: exit $?"
    "$BIN/$1" -o o_file.tsr "${args[@]}" >o_out.txt || fail "$1 -o: exit $?"
    [ ! -s o_out.txt ] && "$BIN/tscmp" -q --exact o_stdout.tsr o_file.tsr || fail "$1 -o FILE differs from stdout"
    "$BIN/$1" -o nodir/o.tsr "${args[@]}" >o_out.txt 2>o_err.txt || rc=$?
    [ "$rc" = 1 ] && [ ! -e nodir ] && [ ! -s o_out.txt ] && grep -q "nodir/o.tsr" o_err.txt \
        || fail "$1 -o nodir/o.tsr: exit $rc: $(cat o_err.txt)"
    rc=0; "$BIN/$1" -o o_cut.tsr "${first[@]}" cut.tsr >o_out.txt 2>o_err.txt || rc=$?
    [ "$rc" = 1 ] && ! compgen -G 'o_cut.tsr*' >/dev/null && grep -q "cut.tsr" o_err.txt \
        || fail "$1 -o on truncated input: exit $rc, left $(ls o_cut.tsr* 2>/dev/null): $(cat o_err.txt)"
    if [ "$fails" = "$f0" ]; then ok "$1 -o FILE: stdout's records; unwritable and truncated runs leave nothing"; fi
}

# nan_weights IN OUT: OUT is the weights file IN with its first weight tensor's first value NaN (a
# teacher whose logits and scores are not finite)
nan_weights() {
    "$PYTHON" - "$TESTS/../pipelines" "$1" "$2" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from torch2safetensors import st_load, st_save
t, meta = st_load(sys.argv[2])
k = next(k for k in t if k.endswith("weight"))
t[k] = t[k].copy()
t[k].flat[0] = np.nan
st_save(sys.argv[3], t, meta)
PY
}

# rgb_copy IN OUT: OUT is IN with every image repeated over 3 channels (the same keys and classes)
rgb_copy() {
    rm -rf rgb_np && "$BIN/tsexport" --npy rgb_np "$1" \
        && "$PYTHON" -c "import numpy as np; x = np.load('rgb_np/image.npy'); np.save('rgb_np/image.npy', x.repeat(3, 1))" \
        && "$BIN/tsimport" -q --format npy rgb_np >"$2"
}

# check_full PROG ARGS...: writing to /dev/full is exit 1 with a message.
check_full() {
    local rc=0
    "$BIN/$1" "${@:2}" >/dev/full 2>full.err || rc=$?
    if [ "$rc" = 1 ] && [ -s full.err ]; then ok "$1: write error"; else fail "$1 > /dev/full: exit $rc"; fi
}

# check_auto_precision PROG ARGS...: PROG -d auto --precision fp16 ARGS... writes a stream whose
# history names the precision computed in: without a device (-d cuda exits 3) a warning, -d cpu's
# records and no "precision" key (fp32); on a GPU "fp16".
check_auto_precision() {
    local rc=0 prec
    "$BIN/$1" "${@:2}" >ap_cpu.tsr || fail "$1: exit $?"
    "$BIN/$1" -d auto --precision fp16 "${@:2}" >ap_auto.tsr 2>ap.err || fail "$1 -d auto --precision fp16: exit $?"
    "$BIN/$1" -d cuda "${@:2}" >/dev/null 2>&1 || rc=$?
    prec=$("$BIN/tsinfo" --json ap_auto.tsr | "$PYTHON" -c 'import json, sys
print(json.load(sys.stdin)["history"][-1]["params"].get("precision", "fp32"))')
    if [ "$rc" = 3 ]; then
        [ "$prec" = fp32 ] && "$BIN/tscmp" -q --exact ap_cpu.tsr ap_auto.tsr && grep -q "computing in fp32" ap.err \
            && ok "$1 -d auto --precision fp16 without a device: $(cat ap.err)" \
            || fail "$1 -d auto --precision fp16 without a device: history says $prec: $(cat ap.err)"
    else
        [ "$prec" = fp16 ] && ok "$1 -d auto --precision fp16 on the GPU" || fail "$1 -d auto on the GPU: history says $prec"
    fi
}

# fm_small N: the first N Fashion-MNIST training records as fm.tsr and a truncated copy cut.tsr.
fm_small() {
    [ -d "$fmnist" ] || { echo "Fashion-MNIST not installed at $fmnist"; exit 77; }
    "$BIN/tsimport" --limit "$1" "$fmnist" >fm.tsr
    head -c $(( $(stat -c %s fm.tsr) / 2 )) fm.tsr >cut.tsr
}

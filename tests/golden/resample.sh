# resample: sizes, U8 -> F32, other fields untouched, errors. Values against PyTorch: parity/resample.sh.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 40
"$BIN/resample" --size 20 fm.tsr >r20.tsr
"$BIN/tsinfo" r20.tsr | grep -q "image (40 records): F32\[1,20,20\]" && ok "--size 20 (U8 in, F32 out)" || fail "--size 20"
"$BIN/resample" --antialias --size 37x11 fm.tsr | "$BIN/tsinfo" | grep -q "F32\[1,37,11\]" && ok "--size HxW --antialias" \
    || fail "HxW"
mk_npy d 5 3 8 8 1
"$BIN/tsimport" d >d.tsr
"$BIN/resample" --size 8 d.tsr | "$BIN/tscmp" --exact - d.tsr && ok "same size is the identity on F32" || fail "identity"
"$BIN/resample" --size 4 d.tsr | "$BIN/tsexport" --npy o - && "$PYTHON" -c '
import numpy as np
assert (np.load("o/soft.npy") == np.load("d/soft.npy")).all()' && ok "other fields pass through" || fail "soft changed"
"$BIN/tsinfo" --json r20.tsr | grep -q '"resample"' || fail "history"
expect_usage resample fm.tsr
expect_usage resample --size 0 fm.tsr
expect_usage resample --size 3y4 fm.tsr
expect_usage resample --size 3x fm.tsr
# a malformed --size is quoted whole with the form it wants (it said "'' is not an integer" for 20x and x20)
for s in 20x x20 20x30x40 0x5 +7; do
    expect_usage resample --size $s fm.tsr
    grep -qx "resample: --size: '$s' is not S or HxW (integers 1 to 65536)" err.usage \
        && ok "--size $s: $(cat err.usage)" || fail "--size $s: $(cat err.usage)"
done
check_truncated resample --size 10
# an image with a side of 0 (it aborted in the resize's assertion)
"$PYTHON" -c 'import numpy as np, os; os.makedirs("z0", exist_ok=True); np.save("z0/image.npy", np.zeros((1, 1, 0, 5), np.float32))'
"$BIN/tsimport" -q z0 >z0.tsr
rc=0; "$BIN/resample" --size 3 z0.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "resample: z0.tsr: record 0 (train_000000): image is F32\[1,0,5\], want \[C,H,W\] with C, H, W >= 1" err.txt \
    && ok "an empty image: $(cat err.txt)" || fail "empty image: exit $rc $(cat err.txt)"
# a key an earlier input had: named by the input (it was said naming the output's record)
rc=0; "$BIN/resample" -q --size 10 -o dk.tsr fm.tsr fm.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -e dk.tsr ] && [ "$(cat err.txt)" = \
    "resample: fm.tsr: record 0 (train_000000): duplicate key: an earlier input has a record of that key" ] \
    && ok "duplicate key across inputs: $(cat err.txt)" || fail "duplicate key: exit $rc $(cat err.txt)"
check_full resample --size 10 fm.tsr
check_output resample --size 10 fm.tsr
check_tty resample --size 10 fm.tsr
finish

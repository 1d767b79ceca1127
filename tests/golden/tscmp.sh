# tscmp: equal streams, value/key/shape differences, tolerance, class mismatch, stdin operand.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 50
expect_exit 0 "identical streams" -- "$BIN/tscmp" fm.tsr fm.tsr
expect_exit 0 "stdin operand" -- "$BIN/tscmp" - fm.tsr <fm.tsr
mk_npy a 6 3 4 4 1
mk_npy b 6 3 4 4 1
"$PYTHON" -c 'import numpy as np; x = np.load("b/image.npy"); x[4, 2, 1, 3] += 1e-6; np.save("b/image.npy", x)'
"$BIN/tsimport" a >a.tsr && "$BIN/tsimport" b >b.tsr
rc=0; "$BIN/tscmp" --exact a.tsr b.tsr >rep.txt || rc=$?
[ $rc = 1 ] && grep -q "record 4 (k0004): field image: element 39:" rep.txt && ok "value difference: $(head -1 rep.txt)" \
    || fail "value difference: exit $rc: $(cat rep.txt)"
expect_exit 0 "within --atol" -- "$BIN/tscmp" --atol 1e-5 a.tsr b.tsr
expect_exit 1 "outside --rtol" -- "$BIN/tscmp" --rtol 1e-9 a.tsr b.tsr
"$BIN/tscat" --head 5 a.tsr >a5.tsr
expect_exit 1 "different lengths" -- "$BIN/tscmp" a5.tsr a.tsr
"$BIN/resample" --size 3 a.tsr >a3.tsr
"$BIN/tscmp" a.tsr a3.tsr >rep.txt || true
grep -q "F32\[3,4,4\] in a.tsr, F32\[3,3,3\] in a3.tsr" rep.txt && ok "shape difference reported" || fail "shape difference"
"$BIN/tscmp" --max-report 2 a.tsr a3.tsr >rep.txt || true
[ "$(grep -c "^record" rep.txt)" = 2 ] && ok "--max-report" || fail "--max-report"
expect_exit 1 "class lists differ" -- "$BIN/tscmp" a.tsr fm.tsr
# integers compare exactly (2^53 + 1 and 2^53 are one apart, the same as doubles) and print exactly;
# the summary counts differences, not records
"$PYTHON" - <<'PY'
import numpy as np, os
for d, v in (("i1", 2**53 + 1), ("i2", 2**53)):
    os.makedirs(d, exist_ok=True)
    np.save(d + "/image.npy", np.zeros((1, 1, 2, 2), np.float32))
    np.save(d + "/v.npy", np.array([[v, 7, 8]], np.int64))
    np.save(d + "/w.npy", np.array([[v]], np.int64))
PY
"$BIN/tsimport" -q i1 >i1.tsr && "$BIN/tsimport" -q i2 >i2.tsr
rc=0; "$BIN/tscmp" --atol 0 i1.tsr i2.tsr >rep.txt || rc=$?
[ $rc = 1 ] && grep -q "field v: element 0: 9007199254740993 in i1.tsr, 9007199254740992 in i2.tsr" rep.txt \
    && grep -q "differ: 2 difference(s) over 1 records compared" rep.txt \
    && ok "integers exactly under a tolerance: $(head -1 rep.txt)" || fail "integers: exit $rc $(cat rep.txt)"
# progress on a terminal: differences found after the progress line was drawn start at the margin;
# -q: nothing at all (fm2.tsr: the same images as F32, so every record differs)
"$BIN/resample" -q --size 28 fm.tsr >fm2.tsr
rc=0; on_tty sh -c "$(slow_cat fm.tsr) | '$BIN/tscmp' --max-report 60 - fm2.tsr" || rc=$?
if [ $rc = 77 ]; then echo "skip: no script(1), progress on a terminal not checked"
else
    [ $rc = 1 ] && grep -q "tscmp: records [0-9]* .*/s" tty.out && [ "$(grep -c "record [0-9]* (train_" tty.out)" = 50 ] \
        && r=$(tty_lines_clean "record " 2>&1) && ok "progress on a terminal, differences at the margin" \
        || fail "tscmp progress: exit $rc: $r: $(head -c 600 tty.out | cat -A)"
    rc=0; on_tty sh -c "$(slow_cat fm.tsr) | '$BIN/tscmp' -q - fm2.tsr" || rc=$?
    [ $rc = 1 ] && [ ! -s tty.out ] && ok "-q: nothing on the terminal" || fail "tscmp -q: exit $rc: $(cat -A tty.out | head -c 300)"
fi
check_truncated tscmp fm.tsr
expect_usage tscmp a.tsr
expect_usage tscmp - -
expect_usage tscmp --exact --atol 1 a.tsr b.tsr
finish

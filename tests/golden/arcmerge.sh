# arcmerge: alpha*x + (1-alpha)*resample(P) by key; missing keys, class and channel mismatch.
# PyTorch parity in parity/resample.sh.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
mk_npy p 6 3 8 8 1
mk_npy x 6 3 8 8 2
"$BIN/tsimport" p >P.tsr && "$BIN/tsimport" x >x.tsr
"$BIN/arcmerge" --alpha 0.25 P.tsr <x.tsr >m.tsr && "$BIN/tsexport" --npy m m.tsr
"$PYTHON" -c '
import numpy as np
p, x, m = (np.load(d + "/image.npy") for d in "pxm")
want = np.float32(0.25) * x + np.float32(0.75) * p
assert (m == want).all(), abs(m - want).max()
assert (np.load("m/soft.npy") == np.load("x/soft.npy")).all()' && ok "same size: exact alpha*x + (1-alpha)*P" || fail "merge values"
"$BIN/arcmerge" -a 1 -x x.tsr P.tsr | "$BIN/tscmp" --exact - x.tsr && ok "alpha 1 gives x (-x FILE)" || fail "alpha 1"
"$BIN/resample" --size 5 x.tsr >x5.tsr
"$BIN/arcmerge" P.tsr <x5.tsr | "$BIN/tsinfo" | grep -q "F32\[3,5,5\]" && ok "P resampled to x's size" || fail "resampled shape"
# missing keys either way
"$BIN/tscat" --head 5 x.tsr >x_short.tsr
"$BIN/arcmerge" P.tsr <x_short.tsr >/dev/null 2>err.txt && fail "unseen P key accepted"
grep -q "P.tsr.*k0005" err.txt && ok "P key never seen: $(cat err.txt)" || fail "unseen message: $(cat err.txt)"
"$BIN/tscat" --head 5 P.tsr >P_short.tsr
"$BIN/arcmerge" P_short.tsr <x.tsr >/dev/null 2>err.txt && fail "x key missing in P accepted"
grep -q "record 5 (k0005): key not in P_short.tsr" err.txt && ok "x key not in P: $(cat err.txt)" || fail "missing: $(cat err.txt)"
printf 'a\nb\nc\n' >x/classes.txt && "$BIN/tsimport" x >xc.tsr
expect_exit 1 "class lists differ" -- "$BIN/arcmerge" P.tsr -x xc.tsr
head -c 2000 P.tsr >cut.tsr
expect_exit 1 "truncated patches" -- "$BIN/arcmerge" cut.tsr -x x.tsr
"$BIN/arcmerge" -x cut.tsr P.tsr >/dev/null 2>err.txt || true; grep -q "truncated" err.txt && ok "truncated x" || fail "truncated x"
# a label that differs from its patch's (the same key in another set): an error naming x's
# record (merged without a word before)
cp -r x xl && cp p/classes.txt xl/ && "$PYTHON" -c 'import numpy as np
l = np.load("xl/label.npy"); l[2] = (l[2] + 1) % 3; np.save("xl/label.npy", l)'
"$BIN/tsimport" -q xl >xl.tsr
rc=0; "$BIN/arcmerge" -q -x xl.tsr P.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "arcmerge: xl.tsr: record 2 (k0002): label 0, the patch's 2" err.txt \
    && ok "a label other than the patch's: $(cat err.txt)" || fail "label mismatch: exit $rc $(cat err.txt)"
# an image whose channels differ from its patch's
mk_npy g 6 1 8 8 2 && "$BIN/tsimport" g >g.tsr
"$BIN/arcmerge" P.tsr -x g.tsr >/dev/null 2>err.txt && fail "1-channel x on 3-channel patches accepted"
grep -q "g.tsr: record 0 (k0000): image F32\[1,8,8\] does not match the patch's F32\[3,8,8\]" err.txt \
    && ok "channels differ: $(cat err.txt)" || fail "channels: $(cat err.txt)"
expect_usage arcmerge
expect_usage arcmerge --alpha 1.5 P.tsr
expect_usage arcmerge P.tsr x.tsr
check_full arcmerge -x x.tsr P.tsr
check_output arcmerge -x x.tsr P.tsr
check_tty arcmerge -x x.tsr P.tsr
finish

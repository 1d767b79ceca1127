# tsimport: IDX import (names, counts, keys), npy import, format guessing, errors.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 200
"$BIN/tsinfo" --json fm.tsr >info.json
"$PYTHON" - <<'PY' || fail "tsimport idx: summary"
import json
j = json.load(open("info.json"))
assert j["records"] == 200, j["records"]
assert j["classes"][0] == "T-shirt/top" and j["classes"][9] == "Ankle boot", j["classes"]
assert j["fields"]["image"]["dtypes"] == ["U8"] and j["fields"]["image"]["shapes"] == [[1, 28, 28]]
assert j["history"][0]["prog"] == "tsimport"
PY
ok "idx import: 200 records, Fashion-MNIST names, U8 [1,28,28]"
"$BIN/tsinfo" --list fm.tsr | sed -n 1p | grep -qP "^0\ttrain_000000\t9\tAnkle boot\t" || fail "first record key/label"
"$BIN/tsimport" --format idx --split test --limit 5 "$fmnist" | "$BIN/tsinfo" --list | tail -1 | grep -q "test_000004" \
    || fail "test split keys"
# MNIST digits when the directory name does not say fashion; --classes-file overrides.
mkdir digits && cp "$fmnist"/t10k-* digits/
"$BIN/tsimport" --split test --limit 3 digits | "$BIN/tsinfo" --json | grep -q '"9"' || fail "digit class names"
printf 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n' >names.txt
"$BIN/tsimport" --split test --limit 3 --classes-file names.txt digits | "$BIN/tsinfo" --json | grep -q '"j"' \
    || fail "--classes-file"
ok "digits and --classes-file"
# npy directory (guessed), F32 and U8 images, extra fields, keys.txt.
mk_npy f32 7 3 5 4 1
mk_npy u8 7 1 6 6 2 u8
"$BIN/tsimport" f32 >f32.tsr && "$BIN/tsimport" --format npy u8 >u8.tsr || fail "npy import"
"$BIN/tsinfo" --list f32.tsr | sed -n 1p | grep -q "k0000	0	cat	image:F32\[3,5,4\] label:I64\[\] soft:F32\[3\]" \
    || fail "npy record layout: $("$BIN/tsinfo" --list f32.tsr | head -1)"
"$BIN/tsinfo" --json u8.tsr | grep -q '"U8"' || fail "npy u8 stays U8"
ok "npy import"
expect_usage tsimport
expect_usage tsimport --format nope "$fmnist"
expect_usage tsimport --split val "$fmnist"
expect_usage tsimport --limit x "$fmnist"
expect_usage tsimport "$PWD"/names.txt
expect_exit 1 "missing dataset files" -- "$BIN/tsimport" --format idx "$PWD/f32"
head -c 3000 "$fmnist"/t10k-labels-idx1-ubyte.gz >digits/t10k-labels-idx1-ubyte.gz
expect_exit 1 "truncated IDX file" -- "$BIN/tsimport" --split test digits
check_full tsimport --limit 50 "$fmnist"
check_tty tsimport --limit 5 "$fmnist"
finish

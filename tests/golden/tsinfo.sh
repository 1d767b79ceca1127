# tsinfo: text summary, --json keys, --list, truncated and corrupt input.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 200
"$BIN/tsinfo" fm.tsr >info.txt
grep -q "^records: 200" info.txt && grep -q "T-shirt/top" info.txt && grep -q "image (200 records): U8\[1,28,28\]" info.txt \
    && grep -q "^  0 tsimport" info.txt && ok "text summary" || fail "text summary: $(cat info.txt)"
"$BIN/tsinfo" --json fm.tsr fm.tsr >info.json
"$PYTHON" - <<'PY' && ok "--json (two operands concatenate)" || fail "--json"
import json
j = json.load(open("info.json"))
assert set(j) >= {"records", "classes", "class_counts", "fields", "history"}, j.keys()
assert j["records"] == 400 and sum(j["class_counts"]) == 400
assert j["fields"]["image"]["min"] == 0 and j["fields"]["image"]["max"] == 255
assert j["fields"]["label"]["shapes"] == [[]]
PY
[ "$("$BIN/tsinfo" --list - <fm.tsr | wc -l)" = 200 ] && ok "--list from stdin" || fail "--list"
check_truncated tsinfo
head -c 100000 fm.tsr | "$BIN/tsinfo" - 2>err.txt && fail "truncated stdin accepted"
grep -q "truncated" err.txt && ok "truncated stdin: $(cat err.txt)" || fail "truncated stdin: $(cat err.txt)"
"$PYTHON" -c 'import sys; b = bytearray(open("fm.tsr","rb").read()); b[5000] ^= 0xff; open("bad.tsr","wb").write(b)'
expect_exit 1 "corrupt record" -- "$BIN/tsinfo" bad.tsr
echo "not a stream" >junk.tsr
expect_exit 1 "not a stream" -- "$BIN/tsinfo" junk.tsr
expect_usage tsinfo --json --list fm.tsr
expect_usage tsinfo --bogus
check_full tsinfo fm.tsr
finish

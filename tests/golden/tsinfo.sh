# tsinfo: text summary, --json keys, --list, per-channel statistics, truncated and corrupt input.
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
# several shapes (as an ImageFolder import has): the first 8 with counts, and each dimension's range
"$BIN/tscat" -e 2:0 fm.tsr >even.tsr && "$BIN/tscat" -e 2:1 fm.tsr >odd.tsr
"$BIN/resample" -q --size 40x31 even.tsr >e40.tsr && "$BIN/tscat" e40.tsr odd.tsr >two.tsr || fail "two sizes"
"$BIN/tsinfo" two.tsr | grep -q "image (200 records): F32\[1,40,31\] x100 U8\[1,28,28\] x100  sizes \[1,28-40,28-31\]" \
    && ok "two sizes: counts and 'sizes [1,28-40,28-31]'" || fail "sizes line: $("$BIN/tsinfo" two.tsr | grep image)"
"$BIN/tsinfo" --json two.tsr | "$PYTHON" -c '
import json, sys
f = json.load(sys.stdin)["fields"]["image"]
assert f["shape_min"] == [1, 28, 28] and f["shape_max"] == [1, 40, 31], f
assert "shape_min" not in json.load(open("info.json"))["fields"]["image"]' && ok "--json shape_min / shape_max" \
    || fail "--json shape range"
# inputs with differing headers: the later input's history (the header's "inputs") after the first's,
# in the text and in --json; inputs with one header (fm.tsr fm.tsr) have none
"$BIN/tsinfo" two.tsr | sed -n '/^history:/,$p' >hist.txt
"$PYTHON" - <<'PY' && ok "later inputs' histories: $(grep later hist.txt)" || fail "inputs: $(cat hist.txt)"
import json, subprocess, os
t = open("hist.txt").read().splitlines()
i = t.index("  later input 1 of 1 (its header differs from the first input's):")
assert t[i - 1].startswith("  2 resample ") and len(t) == i + 3, t
assert t[i + 1].startswith("    0 tsimport ") and t[i + 2].startswith("    1 tscat "), t
out = subprocess.run([os.environ["BIN"] + "/tsinfo", "--json", "two.tsr"], capture_output=True, check=True).stdout
j = json.loads(out)
assert [[e["prog"] for e in k["history"]] for k in j["inputs"]] == [["tsimport", "tscat"]], j["inputs"]
assert json.load(open("info.json"))["inputs"] == [], "fm.tsr fm.tsr"
PY
# a later input that has inputs of its own brings them along (its own 'inputs' were dropped):
# t20.tsr's header differs from two.tsr's; two.tsr's later input (odd.tsr's history) follows it
"$BIN/tsimport" -q --format idx --split test --limit 20 "$fmnist" >t20.tsr
"$BIN/tscat" -q t20.tsr two.tsr | "$BIN/tsinfo" --json | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
assert [[e["prog"] for e in k["history"]] for k in j["inputs"]] == [["tsimport", "tscat", "resample"], ["tsimport", "tscat"]], j["inputs"]' \
    && ok "nested inputs kept, flat" || fail "nested inputs"
# more shapes than the 8 listed: the rest counted, the ranges over all
for i in 0 1 2 3 4 5 6 7 8 9; do "$BIN/tscat" -q -e 10:$i fm.tsr | "$BIN/resample" -q --size $((20 + i)) >sz$i.tsr; done
"$BIN/tscat" -q sz?.tsr >ten.tsr && "$BIN/tsinfo" ten.tsr | grep "^  image" >ten.txt
grep -q "F32\[1,27,27\] x20 +40 with other shapes  sizes \[1,20-29,20-29\]" ten.txt \
    && ok "ten sizes: 8 listed, '+40 with other shapes', sizes [1,20-29,20-29]" || fail "ten sizes: $(cat ten.txt)"
# per-channel mean and std, pixels in [0,1], against numpy: U8 (/255) and F32 streams of 3
# channels, and images of several sizes (every pixel counts once); none where channels differ
mk_npy u8d 40 3 9 7 1 u8 && "$BIN/tsimport" -q u8d >u8.tsr
mk_npy f32d 30 3 5 6 2 && "$BIN/tsimport" -q f32d >f32.tsr
"$BIN/tscat" -q -e 2:0 f32.tsr | "$BIN/resample" -q --size 11x4 >f32s.tsr && "$BIN/tscat" -q -e 2:1 f32.tsr >f32o.tsr
"$BIN/tscat" -q f32s.tsr f32o.tsr >mix.tsr
for f in u8 f32 mix; do "$BIN/tsinfo" --json $f.tsr >$f.json; done
"$PYTHON" - <<'PY' && ok "channel_mean / channel_std = numpy's (U8 / 255, F32, two sizes)" || fail "channel stats"
import json, subprocess, os, numpy as np
def load(t):
    subprocess.run([os.environ["BIN"] + "/tsexport", "--npy", t + ".np", t + ".tsr"], check=True)
    return np.load(t + ".np/image.npy").astype(np.float64)
def check(name, pix):   # pix: [C, all pixels]
    f = json.load(open(name + ".json"))["fields"]["image"]
    m, s = np.array(f["channel_mean"]), np.array(f["channel_std"])
    assert m.shape == (3,) and np.abs(m - pix.mean(1)).max() < 1e-9, (name, m, pix.mean(1))
    assert np.abs(s - pix.std(1)).max() < 1e-9, (name, s, pix.std(1))
u8 = np.load("u8d/image.npy").astype(np.float64) / 255
check("u8", u8.transpose(1, 0, 2, 3).reshape(3, -1))
x = np.load("f32d/image.npy").astype(np.float64)
check("f32", x.transpose(1, 0, 2, 3).reshape(3, -1))
y = load("f32s")
assert y.shape == (15, 3, 11, 4), y.shape
check("mix", np.concatenate([y.transpose(1, 0, 2, 3).reshape(3, -1), x[1::2].transpose(1, 0, 2, 3).reshape(3, -1)], 1))
PY
"$BIN/tsinfo" u8.tsr | grep -q "^    per channel, pixels in \[0,1\]: mean [0-9.]*,[0-9.]*,[0-9.]* std [0-9.]*,[0-9.]*,[0-9.]*$" \
    && ok "text: $("$BIN/tsinfo" u8.tsr | grep "per channel")" || fail "text channel line: $("$BIN/tsinfo" u8.tsr)"
"$BIN/tsinfo" fm.tsr | grep -q "per channel, pixels in \[0,1\]: mean 0\.[0-9]* std 0\.[0-9]*$" || fail "gray channel line"
# 1-channel and 3-channel images in one stream: no channel statistics
rgb_copy fm.tsr rgb.tsr && "$BIN/tscat" -q -e 2:0 rgb.tsr >rgb0.tsr && "$BIN/tscat" -q -e 2:1 fm.tsr >fm1.tsr
"$BIN/tscat" -q rgb0.tsr fm1.tsr >both.tsr
"$BIN/tsinfo" --json both.tsr | "$PYTHON" -c '
import json, sys
f = json.load(sys.stdin)["fields"]
assert "channel_mean" not in f["image"] and "channel_mean" not in f["label"], f' \
    && ok "channels that differ: no channel statistics" || fail "mixed channels"
# progress on a terminal: drawn while the input is slow, closed by a "done" line before the summary;
# none with -q, and none at all (no "done" line either) for a run too short to draw one
rc=0; on_tty sh -c "$(slow_cat fm.tsr) | '$BIN/tsinfo'" || rc=$?
if [ $rc = 77 ]; then echo "skip: no script(1), progress on a terminal not checked"
else
    [ $rc = 0 ] && grep -q "tsinfo: records [0-9]* .*/s" tty.out && grep -q "tsinfo: records 200 done in" tty.out \
        && r=$(tty_lines_clean "records: 200" 2>&1) && ok "progress on a terminal, the summary at the margin" \
        || fail "tsinfo progress: exit $rc: $r: $(head -c 400 tty.out | cat -A)"
    on_tty sh -c "$(slow_cat fm.tsr) | '$BIN/tsinfo' -q" && ! grep -q "tsinfo:" tty.out && ok "-q: no progress" \
        || fail "tsinfo -q: $(head -c 300 tty.out | cat -A)"
    on_tty "$BIN/tsinfo" fm.tsr && ! grep -q "tsinfo:" tty.out && ok "a short run: no progress, no done line" \
        || fail "short run: $(head -c 300 tty.out | cat -A)"
fi
check_truncated tsinfo
head -c 100000 fm.tsr | "$BIN/tsinfo" - 2>err.txt && fail "truncated stdin accepted"
grep -q "truncated" err.txt && ok "truncated stdin: $(cat err.txt)" || fail "truncated stdin: $(cat err.txt)"
# no bytes at all: said so (a pipe whose writer died before its header), not "truncated"
rc=0; "$BIN/tsinfo" - </dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "tsinfo: stdin: empty: no stream header (upstream died?)" err.txt \
    && ok "empty input: $(cat err.txt)" || fail "empty input: exit $rc: $(cat err.txt)"
"$PYTHON" -c 'import sys; b = bytearray(open("fm.tsr","rb").read()); b[5000] ^= 0xff; open("bad.tsr","wb").write(b)'
expect_exit 1 "corrupt record" -- "$BIN/tsinfo" bad.tsr
echo "not a stream" >junk.tsr
expect_exit 1 "not a stream" -- "$BIN/tsinfo" junk.tsr
expect_usage tsinfo --json --list fm.tsr
expect_usage tsinfo --bogus
check_full tsinfo fm.tsr
# a field of NaN only has no min or max (it showed the starting values inf and -inf), one of
# [1, inf] a max of inf (JSON: null, it has no infinity); --list prints meta on its one line
"$PYTHON" - <<'PY'
import numpy as np, os
os.makedirs("nanf", exist_ok=True)
np.save("nanf/image.npy", np.zeros((2, 1, 2, 2), np.float32))
np.save("nanf/nan.npy", np.full((2, 3), np.nan, np.float32))
np.save("nanf/inf.npy", np.array([[1.0], [np.inf]], np.float32))
c = np.full((2, 2, 2, 2), 0.5, np.float32)
c[1, 0, 1, 1] = np.nan   # channel 0 of one record: its mean and std nan, channel 1's numbers
np.save("nanf/cnan.npy", c)
PY
"$BIN/tsimport" -q nanf >nanf.tsr && "$BIN/tsinfo" nanf.tsr >nanf.txt && "$BIN/tsinfo" --json nanf.tsr >nanf.json
if grep -q "^  nan .*min nan max nan mean nan$" nanf.txt && grep -q "^  inf .*min 1 max inf mean inf$" nanf.txt \
    && "$PYTHON" -c '
import json; f = json.load(open("nanf.json"))["fields"]
assert f["nan"]["min"] is None and f["nan"]["max"] is None and f["inf"]["min"] == 1 and f["inf"]["max"] is None, f'
then ok "fields of NaN and inf: $(grep -E '^  (nan|inf) ' nanf.txt | tr -s ' ' | tr '\n' ';')"
else fail "NaN/inf statistics: $(cat nanf.txt)"; fi
# ... and a NaN pixel's channel has a mean and std of nan (JSON null), not a std of 0
if grep -A1 "^  cnan " nanf.txt | grep -q "per channel, pixels in \[0,1\]: mean nan,0.5000 std nan,0.0000$" \
    && "$PYTHON" -c '
import json; f = json.load(open("nanf.json"))["fields"]["cnan"]
assert f["channel_mean"] == [None, 0.5] and f["channel_std"] == [None, 0.0], f'
then ok "a channel with a NaN pixel: $(grep -A1 '^  cnan ' nanf.txt | tail -n 1 | tr -s ' ')"
else fail "channel NaN: $(grep -A1 '^  cnan ' nanf.txt)"; fi
"$BIN/tscat" --shards 'ml-%d.tar' nanf.tsr && "$PYTHON" - <<'PY'
import io, tarfile
src = tarfile.open("ml-0.tar")
with tarfile.open("ml.tar", "w", format=tarfile.USTAR_FORMAT) as t:
    for m in src:
        if m.name.endswith(".image.npy"):   # a meta member first in each record
            j = tarfile.TarInfo(m.name.split(".")[0] + ".json")
            meta = b'{\n"a":\t1}'
            j.size, j.mode = len(meta), 0o444
            t.addfile(j, io.BytesIO(meta))
        t.addfile(m, src.extractfile(m))
PY
"$BIN/tsinfo" --list ml.tar >ml.txt
[ "$(wc -l <ml.txt)" = 2 ] && grep -q '	{"a":1}$' ml.txt && ok "--list: multi-line meta on one line" || fail "--list meta: $(cat -A ml.txt)"

# weights files: tensors, values and metadata; --json, --list; not mixed with streams
"$BIN/evaltrain" -q -m convnet2:width=4 --epochs 1 --save w.safetensors fm.tsr >/dev/null || fail "evaltrain --save"
"$BIN/tsinfo" w.safetensors >w.txt
"$PYTHON" - <<'PY' && ok "weights: $(sed -n 2p w.txt)" || fail "weights text: $(cat w.txt)"
import json, struct
b = open("w.safetensors", "rb").read()
h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
meta = h.pop("__metadata__")
vals = sum(eval("*".join(map(str, t["shape"])) or "1") for t in h.values())
txt = open("w.txt").read().splitlines()
assert txt[0] == "weights: w.safetensors" and txt[1].startswith(f"tensors: {len(h)}, {vals} values"), txt[:2]
assert "  arch: convnet2:width=4" in txt and "  num_classes: 10" in txt and "metadata:" in txt, txt
assert all(f"  {k}: {v}" in txt for k, v in meta.items()), txt
PY
"$BIN/tsinfo" --json w.safetensors w.safetensors >w.json && "$BIN/tsinfo" --list w.safetensors >w.list
"$PYTHON" - <<'PY' && ok "weights --json (a line a file), --list (a line a tensor)" || fail "weights --json/--list"
import json
rows = [json.loads(l) for l in open("w.json")]
assert len(rows) == 2 and rows[0]["metadata"]["arch"] == "convnet2:width=4" and rows[0]["dtypes"]["F32"] > 0, rows
lines = [l.split("\t") for l in open("w.list").read().splitlines()]
assert len(lines) == rows[0]["tensors"] and ["0.weight", "F32[4,1,3,3]"] in lines, lines
PY
"$PYTHON" - <<'PY'
import json, struct
b = open("w.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__")
hb = json.dumps(h).encode(); hb += b" " * (-len(hb) % 8)
open("bare.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
"$BIN/tsinfo" bare.safetensors >bare.txt
grep -q "^metadata: none" bare.txt && grep -qx "normalization: not in the file: the programs apply the default for its \
channels (1: Fashion-MNIST's, 3: ImageNet's, others 0.5 / 0.5; ddpipe-models(7)): right only for a model trained on \
pixels normalized so" bare.txt && ok "weights without metadata: $(tail -1 bare.txt)" || fail "bare weights: $(cat bare.txt)"
! grep -q "^normalization" w.txt && ok "weights with mean, std: no normalization line" || fail "normalization line: $(cat w.txt)"
"$PYTHON" - "$TESTS/../pipelines" <<'PY' || fail "writing weights without mean, std"
import sys
sys.path.insert(0, sys.argv[1])
from torch2safetensors import st_load, st_save
t, meta = st_load("w.safetensors")
st_save("nonorm.safetensors", t, {k: v for k, v in meta.items() if k not in ("mean", "std")})
PY
"$BIN/tsinfo" nonorm.safetensors | grep -qx "normalization: not in the file: the programs apply the default for its \
channels (mean 0.286, std 0.353; ddpipe-models(7)): right only for a model trained on pixels normalized so" \
    && ok "weights of 1 channel without mean, std: the default named" || fail "nonorm: $("$BIN/tsinfo" nonorm.safetensors)"
rc=0; "$BIN/tsinfo" w.safetensors fm.tsr >mixed.out 2>mixed.err || rc=$?
[ $rc = 2 ] && [ ! -s mixed.out ] && grep -q "fm.tsr: not a safetensors weights file" mixed.err \
    && ok "a stream after a weights file: usage error, no output" || fail "mixed operands: rc $rc $(cat mixed.err)"
rc=0; "$BIN/tsinfo" fm.tsr w.safetensors >mixed.out 2>mixed.err || rc=$?
[ $rc = 2 ] && [ ! -s mixed.out ] && [ "$(cat mixed.err)" = "tsinfo: w.safetensors: a safetensors weights file, after \
fm.tsr (tsinfo describes streams or weights files, one kind at a time)" ] \
    && ok "a weights file after a stream: usage error, no output" || fail "stream, weights: rc $rc $(cat mixed.err)"
# operands that are pipes are read as streams, not sniffed (the sniffing ate the first bytes)
"$BIN/tsinfo" <(cat fm.tsr) | grep -q "^records: 200$" \
    && "$BIN/tsinfo" fm.tsr <(cat fm.tsr) | grep -q "^records: 400$" && ok "pipe operands: read as streams" \
    || fail "tsinfo <(cat fm.tsr)"
head -c 200 w.safetensors >cut.safetensors
rc=0; "$BIN/tsinfo" cut.safetensors >cut.out 2>cut.err || rc=$?
[ $rc = 1 ] && [ ! -s cut.out ] && grep -q "cut.safetensors" cut.err && ok "truncated weights: exit 1" \
    || fail "truncated weights: rc $rc $(cat cut.err)"
rc=0; "$BIN/tsinfo" w.safetensors >/dev/full 2>full.err || rc=$?
[ $rc = 1 ] && ok "weights to /dev/full: exit 1" || fail "weights to /dev/full: rc $rc"
# every message is one line: control characters (a newline in a path or a class name) are escaped, and a
# message cut to its 4 KiB shows the cut
rc=0; "$BIN/tsinfo" "$(printf 'no\nsuch\tfile\001')" >nl.out 2>nl.err || rc=$?
[ $rc = 1 ] && [ "$(wc -l <nl.err)" = 1 ] && [ "$(cat nl.err)" = 'tsinfo: no\nsuch\tfile\x01: No such file or directory' ] \
    && ok "a path with control characters: one line: $(cat nl.err)" || fail "control characters: rc $rc: $(cat -A nl.err)"
long=$(printf 'x%.0s' $(seq 5000))
rc=0; "$BIN/tsinfo" "$long" >long.out 2>long.err || rc=$?
[ $rc = 1 ] && [ "$(wc -l <long.err)" = 1 ] && grep -q '^tsinfo: xxxx*\.\.\.$' long.err && [ "$(wc -c <long.err)" -lt 4200 ] \
    && ok "a 5000-character path: one line of $(wc -c <long.err) bytes ending in ..." || fail "long message: rc $rc"
finish

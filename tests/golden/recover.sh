# recover: a small FADRM run on Fashion-MNIST patches (ipc 2, 40 steps in 4 stages) with a
# random-init teacher: the fused run equals the 4-piece pipe with arcmerge byte for byte, metrics,
# history, --init noise, two teachers (round robin, committee), INFER's compensators (--ufc), and the error paths.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 300
tool=$TESTS/../$BUILD/tests/parity/recover_tool
"$tool" teacher t.safetensors convnet3:width=16 fm.tsr 1
"$tool" teacher t2.safetensors convnet2:width=8 fm.tsr 2
"$BIN/patchsel" -q -w t.safetensors --ipc 2 --candidates 8 --crops 2 fm.tsr >init.tsr
R=("$BIN/recover" -q -w t.safetensors)

"${R[@]}" --iters 40 --arc 3 --alpha 0.5 -m m.jsonl --metrics-every 5 init.tsr >fused.tsr
"${R[@]}" --steps 0:10:40 init.tsr | "$BIN/arcmerge" -q -a 0.5 init.tsr \
    | "${R[@]}" --steps 10:20:40 | "$BIN/arcmerge" -q -a 0.5 init.tsr \
    | "${R[@]}" --steps 20:30:40 | "$BIN/arcmerge" -q -a 0.5 init.tsr \
    | "${R[@]}" --steps 30:40:40 >piped.tsr
"$BIN/tscmp" --exact fused.tsr piped.tsr && ok "fused == 4 pieces with arcmerge (tscmp --exact)" || fail "fused != piped"
"$BIN/tscmp" -q init.tsr fused.tsr && fail "recover changed nothing" || ok "images moved"
# PATCHES from another selection (same keys, other sources) is refused, unless --any-source
"$BIN/patchsel" -q -w t.safetensors --ipc 2 --candidates 8 --crops 2 --seed 1 fm.tsr >init1.tsr
"${R[@]}" --steps 0:10:40 init.tsr >p0.tsr
rc=0; "$BIN/arcmerge" -a 0.5 init1.tsr <p0.tsr >/dev/null 2>err.txt || rc=$?
c='train_[0-9]* box \[[0-9,]*\]'
if [ $rc = 1 ] && grep -q "^arcmerge: stdin: record 0 (c0000_i0000): recovered from another selection than init1.tsr \
(its first cell: $c; init1.tsr's: $c); give the PATCHES it was recovered from, or --any-source$" err.txt && [ "$(wc -l <err.txt)" = 1 ]; then ok "other selection refused: $(cat err.txt)"
else fail "other selection: exit $rc $(cat err.txt)"; fi
"$BIN/arcmerge" -a 0.5 init.tsr <p0.tsr >m0.tsr && ok "its own selection merges" || fail "own selection"
"$BIN/arcmerge" -q -a 0.5 --any-source init1.tsr <p0.tsr >m1.tsr && ! "$BIN/tscmp" -q m0.tsr m1.tsr \
    && ok "--any-source merges another selection" || fail "--any-source"
"$BIN/tsinfo" --json fused.tsr >f.json
"$PYTHON" - <<'PY' && ok "keys, labels, pixels in [0,1], params in the history" || fail "output / history"
import json
j = json.load(open("f.json"))
assert j["records"] == 20 and j["class_counts"] == [2] * 10
im = j["fields"]["image"]
assert im["dtypes"] == ["F32"] and im["shapes"] == [[1, 28, 28]] and 0 <= im["min"] and im["max"] <= 1, im
p = j["history"][-1]["params"]
assert j["history"][-1]["prog"] == "recover" and p["merges"] == 3 and p["total"] == 40 and p["batch"] == 10, p
PY
[ "$("$BIN/tsinfo" --list fused.tsr | awk '{print $2}')" = "$("$BIN/tsinfo" --list init.tsr | awk '{print $2}')" ] \
    && ok "records keep their keys and order" || fail "keys"
"$PYTHON" - <<'PY' && ok "metrics: JSON lines per batch and stage, every 5 steps and at stage ends" || fail "metrics"
import json
rows = [json.loads(l) for l in open("m.jsonl")]
assert len(rows) == 2 * 4 * 3, len(rows)      # 2 batches x 4 stages x (steps 0, 5, 9 of the stage)
assert set(rows[0]) == {"batch", "stage", "step", "crop", "flip", "roll", "lr", "ce", "bn", "loss"}, rows[0]
for r in rows:   # the draw: a box inside the 28x28 image, a flip bit, rolls in [0, 4]
    t, l, h, w = r["crop"]
    assert 0 <= t and 0 <= l and 0 < h and 0 < w and t + h <= 28 and l + w <= 28 and r["flip"] in (0, 1), r
    assert all(0 <= v <= 4 for v in r["roll"]), r
assert rows[0]["lr"] == 0.25 and rows[3]["stage"] == 1 and rows[3]["step"] == 10
assert all(abs(r["loss"] - r["ce"] - 0.01 * r["bn"]) < 1e-4 * abs(r["loss"]) for r in rows)
PY
# SRe2L from noise, SRe2L++ (no merge), FADRM+ (two teachers), no augmentation
"${R[@]}" --init noise --ipc 2 --iters 6 >noise.tsr
"$BIN/tsinfo" noise.tsr | grep -q "image (20 records): F32\[1,28,28\] x20  min 0 max 1" \
    && "$BIN/tsinfo" --list noise.tsr | head -n 2 | grep -q "c0000_i0001" && ok "--init noise --ipc 2" || fail "noise"
"${R[@]}" --init noise --ipc 2 --iters 6 | "$BIN/tscmp" --exact - noise.tsr >/dev/null && ok "noise run deterministic" || fail "noise again"
"${R[@]}" --iters 6 --arc 0 init.tsr >pp.tsr && ok "--arc 0 (SRe2L++)" || fail "--arc 0"
"$BIN/recover" -q -w t.safetensors -w t2.safetensors --iters 6 --arc 1 init.tsr >two.tsr
"$BIN/tscmp" -q two.tsr <("${R[@]}" --iters 6 --arc 1 init.tsr) && fail "second teacher unused" || ok "two teachers (round robin)"
# CV-DD's committee (the weighted sum itself is tests/parity/recover.sh's): weights 1,0 are teacher 1
# alone bit for bit (0 times the other's gradient adds +0), 0,1 teacher 2 alone; metrics carry each
# teacher's terms and the weighted sums; the weights go into the history
"$BIN/recover" -q -w t.safetensors -w t2.safetensors --committee 1,0 --iters 6 --arc 1 -m cm.jsonl init.tsr >c10.tsr
"${R[@]}" --iters 6 --arc 1 init.tsr | "$BIN/tscmp" -q --exact - c10.tsr && ok "--committee 1,0 == teacher 1 alone" \
    || fail "--committee 1,0"
"$BIN/recover" -q -w t.safetensors -w t2.safetensors --committee 0,1 --iters 6 --arc 1 init.tsr \
    | "$BIN/tscmp" -q --exact - <("$BIN/recover" -q -w t2.safetensors --iters 6 --arc 1 init.tsr) \
    && ok "--committee 0,1 == teacher 2 alone" || fail "--committee 0,1"
"$BIN/recover" -q -w t.safetensors -w t2.safetensors --committee prior:43.1,46.5 --committee-temp 2 --iters 6 \
    --arc 1 -m cp.jsonl init.tsr >cp.tsr
"$BIN/tsinfo" --json cp.tsr >cp.json
"$PYTHON" - <<'PY' && ok "committee metrics (ce_t, bn_t, weighted sums) and history weights" || fail "committee metrics"
import json, math
for f, w in (("cm.jsonl", [1.0, 0.0]), ("cp.jsonl", None)):
    rows = [json.loads(l) for l in open(f)]
    if w is None:
        e = [math.exp(43.1 / 2), math.exp(46.5 / 2)]
        w = [v / sum(e) for v in e]
    assert len(rows) == 2 * 6, len(rows)
    for r in rows:
        assert len(r["ce_t"]) == 2 and len(r["bn_t"]) == 2, r
        ce = sum(a * b for a, b in zip(w, r["ce_t"]))
        bn = sum(a * b for a, b in zip(w, r["bn_t"]))
        assert abs(r["ce"] - ce) <= 1e-5 * ce and abs(r["bn"] - bn) <= 1e-5 * bn, (r, w)
        assert abs(r["loss"] - ce - 0.01 * bn) <= 1e-5 * r["loss"], r
        assert r["ce_t"][0] != r["ce_t"][1], r
c = json.load(open("cp.json"))["history"][-1]["params"]["committee"]
assert len(c) == 2 and abs(c[0] - w[0]) < 1e-9 and abs(c[1] - w[1]) < 1e-9, c   # 10 digits in headers
PY
# recover(1)'s example: one committee per ipc index, on patchsel's keys, put together with tscat
ipc() { "$BIN/tscat" -q -k <("$BIN/tsinfo" --list init.tsr | awk -v s=_i000$1 '$2 ~ s"$" {print $2}') init.tsr; }
ipc 0 | "$BIN/recover" -q -w t.safetensors -w t2.safetensors --committee equal --iters 4 --arc 0 >c0.tsr
ipc 1 | "$BIN/recover" -q -w t2.safetensors -w t.safetensors --committee prior:1,2 --iters 4 --arc 0 >c1.tsr
"$BIN/tscat" -q c0.tsr c1.tsr >cv.tsr
[ "$("$BIN/tsinfo" --list cv.tsr | awk '{print $2}' | sort)" = "$("$BIN/tsinfo" --list init.tsr | awk '{print $2}' | sort)" ] \
    && [ "$("$BIN/tsinfo" --list c0.tsr | awk '$2 !~ /_i0000$/' | wc -l)" = 0 ] && [ "$("$BIN/tsinfo" --list c0.tsr | wc -l)" = 10 ] \
    && ok "a committee per ipc index (recover(1)'s example): every record once" || fail "committee per ipc index"
for bad in "--committee 1" "--committee 1,2,3" "--committee prior:40" "--committee 0,0" "--committee -1,2" \
           "--committee 1,x" "--committee 1,0 --committee-temp 2" "--committee-temp 2" "--committee equal --ufc"; do
    expect_usage recover -w t.safetensors -w t2.safetensors $bad init.tsr
done
"${R[@]}" --iters 6 --no-aug --batch 3 init.tsr >na.tsr && "$BIN/tsinfo" na.tsr | grep -q "^records: 20" \
    && ok "--no-aug, --batch 3" || fail "--no-aug --batch"
# INFER's compensators: the inputs, then inputs + compensator per teacher
"$BIN/recover" -q -w t.safetensors -w t2.safetensors --ufc --iters 6 -m um.jsonl init.tsr >ufc.tsr
"$BIN/tsinfo" --json ufc.tsr >u.json
"$BIN/tsinfo" --list init.tsr | awk '{print $2}' >keys0.txt
"$BIN/tsinfo" --list ufc.tsr | awk '{print $2}' >keys1.txt
"$BIN/tsexport" --npy u0 init.tsr && "$BIN/tsexport" --npy u1 ufc.tsr
"$BIN/tsinfo" --list ufc.tsr | cut -f 6 >u.meta
"$PYTHON" - <<'PY' && ok "--ufc: 3 x 20 records (inputs unchanged, then KEY_u1, KEY_u2), meta, history, metrics" || fail "--ufc"
import json
import numpy as np
j = json.load(open("u.json"))
assert j["records"] == 60 and j["class_counts"] == [6] * 10, j
k0, k1 = open("keys0.txt").read().split(), open("keys1.txt").read().split()
assert k1 == k0 + [k + "_u1" for k in k0] + [k + "_u2" for k in k0], k1[:3]
a, b = np.load("u0/image.npy"), np.load("u1/image.npy")
la, lb = np.load("u0/label.npy"), np.load("u1/label.npy")
assert (b[:20] == a).all() and (lb == np.concatenate([la] * 3)).all()
assert b.min() >= 0 and b.max() <= 1 and np.abs(b[20:40] - a).max() > 0.05 and np.abs(b[40:] - b[20:40]).max() > 0.01
metas = [json.loads(l) if l.strip() else None for l in open("u.meta")]
assert "cells" in metas[0] and metas[20] == {"ufc": 1, "of": k0[0]} and metas[59] == {"ufc": 2, "of": k0[19]}, metas[20]
p = j["history"][-1]["params"]
assert p["schedule"] == "ufc" and p["total"] == 6 and p["aug"] == "roll" and p["r_bn"] == 1 and p["merges"] == 0, p
rows = [json.loads(l) for l in open("um.jsonl")]
assert len(rows) == 2 * 2 * 6 and all("stage" not in r and "crop" not in r for r in rows)
assert [r["ufc"] for r in rows[:13:6]] == [0, 1, 0] and all(abs(r["loss"] - r["ce"] - r["bn"]) < 1e-4 * r["loss"] for r in rows)
PY
"$BIN/recover" -q -w t.safetensors -w t2.safetensors --ufc --iters 6 init.tsr | "$BIN/tscmp" --exact - ufc.tsr >/dev/null \
    && ok "--ufc deterministic" || fail "--ufc again"
"$BIN/recover" -q -w t.safetensors --ufc --iters 4 --aug full --r-bn 0.01 -j 1 init.tsr >uf.tsr \
    && "$BIN/tsinfo" --json uf.tsr | "$PYTHON" -c 'import json,sys; p=json.load(sys.stdin)["history"][-1]["params"]; assert p["aug"]=="full" and p["r_bn"]==0.01, p' \
    && ok "--ufc --aug full --r-bn" || fail "--ufc options"
# class slices aligned with the batches (--batch 5) make the compensators of the unsharded run
for c in 0,1,2,3,4 5,6,7,8,9; do
    "$BIN/tscat" -q --classes $c init.tsr | "$BIN/recover" -q -w t.safetensors --ufc --iters 4 --batch 5 >"us-$c.tsr"
done
"$BIN/recover" -q -w t.safetensors --ufc --iters 4 --batch 5 init.tsr >us-all.tsr
"$BIN/tscat" -q us-0,1,2,3,4.tsr us-5,6,7,8,9.tsr | "$BIN/tsexport" --npy us - && "$BIN/tsexport" --npy ua us-all.tsr
"$PYTHON" - <<'PY' && ok "--ufc on class slices == unsharded --ufc (same keys, same bits)" || fail "--ufc sharded"
import numpy as np
def load(d):
    k = open(d + "/keys.txt").read().split()
    o = sorted(range(len(k)), key=k.__getitem__)
    return [k[i] for i in o], np.load(d + "/image.npy")[o], np.load(d + "/label.npy")[o]
a, b = load("us"), load("ua")
assert len(a[0]) == 40 and a[0] == b[0] and (a[2] == b[2]).all()
assert a[1].tobytes() == b[1].tobytes()
PY
"$PYTHON" - <<'PY'
import json, numpy as np, os
os.makedirs("dup", exist_ok=True)
np.save("dup/image.npy", np.full((2, 1, 28, 28), 0.5, np.float32))
np.save("dup/label.npy", np.array([0, 1], np.int64))
open("dup/classes.txt", "w").write("".join(c + "\n" for c in json.load(open("u.json"))["classes"]))
open("dup/keys.txt", "w").write("a\na_u1\n")
PY
"$BIN/tsimport" -q dup >dup.tsr
rc=0; "$BIN/recover" -q -w t.safetensors --ufc --iters 2 dup.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^recover: dup.tsr: key a_u1 would appear twice" err.txt && ok "a compensated copy's key is an input's: exit 1, before any work" \
    || fail "duplicate key: exit $rc: $(cat err.txt)"
sed -i "1s/.*/$(printf 'k%.0s' $(seq 62))/" dup/keys.txt
"$BIN/tsimport" -q dup >long.tsr
rc=0; "$BIN/recover" -q -w t.safetensors --ufc --iters 2 long.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^recover: long.tsr: record 0 (kkk*): key kkk*_u1 of its compensated copy is longer than 64" err.txt \
    && ok "a compensated copy's key is too long: exit 1" || fail "long key: exit $rc: $(cat err.txt)"
for bad in "--arc 1" "--steps 0:2:4" "--sizes 28" "--alpha 0.5" "--init noise" "--aug crop"; do
    expect_usage recover -w t.safetensors --ufc $bad init.tsr
done
# errors
printf 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n' >cls.txt
"$BIN/tsimport" -q --limit 50 --classes-file cls.txt "$fmnist" >other.tsr
"$tool" teacher to.safetensors convnet3:width=16 other.tsr 1
expect_exit 1 "teacher's class list differs" -- "$BIN/recover" -q -w to.safetensors --iters 4 init.tsr
"$BIN/recover" -q -w to.safetensors --iters 4 init.tsr 2>err.txt >/dev/null || true
grep -qx "recover: to.safetensors: class 0 is 'a'; the images: 'T-shirt/top'" err.txt \
    && ok "class lists differ: $(cat err.txt)" || fail "class list message: $(cat err.txt)"
"$tool" teacher t32.safetensors convnet3:width=8 <("$BIN/resample" --size 32 init.tsr) 1
# images the teacher does not take, at the input's size or a stage's: both files named, before any work
rgb_copy init.tsr rgb.tsr || fail "a 3-channel copy"
for c in "-w t32.safetensors --iters 4 init.tsr:init.tsr: t32.safetensors: model convnet3:width=8 takes 1x32x32 images, got 1x28x28" \
         "-w t.safetensors --iters 4 rgb.tsr:rgb.tsr: t.safetensors: model convnet3:width=16 takes 1x28x28 images, got 3x28x28" \
         "-w t.safetensors --iters 4 --arc 1 --sizes 28,32 init.tsr:init.tsr: t.safetensors: stage 1 at 32x32: model convnet3:width=16 takes 1x28x28 images, got 1x32x32"; do
    rc=0; "$BIN/recover" -q ${c%%:*} >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.tsr ] && [ "$(cat err.txt)" = "recover: ${c#*:}" ] && ok "a teacher that does not take the images: $(cat err.txt)" \
        || fail "${c%%:*}: exit $rc: $(cat err.txt)"
done
# images of two sizes (an ImageFolder import, say): named, with the way out, and nothing written
"$BIN/tscat" -q -e 2:0 init.tsr | "$BIN/resample" --size 20 >e0.tsr && "$BIN/tscat" -q -e 2:1 init.tsr >e1.tsr \
    && "$BIN/tscat" -q e0.tsr e1.tsr >two.tsr || fail "a stream of two sizes"
rc=0; "$BIN/recover" -q -w t.safetensors --iters 4 two.tsr >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -s out.tsr ] && grep -q "^recover: two.tsr: record [0-9]* (.*): image F32\[1,28,28\] differs from the first record's \[1,20,20\] (one size per stream: resample --size S" err.txt \
    && ok "two image sizes: $(cat err.txt)" || fail "two sizes: exit $rc: $(cat err.txt)"
check_truncated recover -q -w t.safetensors --iters 4
check_full recover -q -w t.safetensors --iters 4 init.tsr
check_output recover -q -w t.safetensors --iters 4 init.tsr
check_tty recover -q -w t.safetensors --iters 4 init.tsr
expect_usage recover --iters 4 init.tsr
expect_usage recover -w t.safetensors --metrics-every 5 init.tsr   # no --metrics: nothing to thin
expect_usage recover -w t.safetensors --steps 5:5:10 init.tsr
expect_usage recover -w t.safetensors --steps 0:5:10 --iters 10 init.tsr
expect_usage recover -w t.safetensors --init noise --arc 2
# --ufc's batch holds every class by default (INFER's P^k: one compensator per k), also past
# the 100 classes that bound recover's own batches
"$PYTHON" - <<'PY'
import os, numpy as np
os.makedirs("c120", exist_ok=True)
np.save("c120/image.npy", np.random.default_rng(0).random((120, 1, 8, 8), dtype=np.float32))
np.save("c120/label.npy", np.arange(120))
open("c120/classes.txt", "w").write("".join("c%d\n" % i for i in range(120)))
PY
"$BIN/tsimport" -q c120 >c120.tsr && "$tool" teacher t120.safetensors convnet1:width=4 c120.tsr 1
"$BIN/recover" -q -w t120.safetensors --ufc --iters 1 c120.tsr | "$BIN/tsinfo" --json - >u120.json
"$BIN/recover" -q -w t120.safetensors --iters 1 --arc 0 c120.tsr | "$BIN/tsinfo" --json - >r120.json
"$PYTHON" - <<'PY' && ok "120 classes: --ufc batch 120 (every class), recover's own 100" || fail "batch defaults"
import json
b = [json.load(open(f))["history"][-1]["params"]["batch"] for f in ("u120.json", "r120.json")]
assert b == [120, 100], b
PY
# options the run would not use: --ipc without --init noise, --alpha where nothing is merged
expect_usage recover -w t.safetensors --ipc 5 init.tsr
expect_usage recover -w t.safetensors --steps 0:5:10 --alpha 0.3 init.tsr
expect_usage recover -w t.safetensors --arc 0 --alpha 0.3 init.tsr
expect_usage recover -w t.safetensors --init noise --alpha 0.3
expect_usage recover -w t.safetensors --init zeros
expect_usage recover -w t.safetensors --sizes 28,28 --arc 3 init.tsr
for l in 28,28,28,28, ,28 28,,28 "" 28,x; do    # empty items and lists, and non-numbers (dd_opt_long_list)
    expect_usage recover -w t.safetensors --sizes "$l" init.tsr
done
expect_usage recover -w t.safetensors --precision fp16 init.tsr
expect_usage recover -w t.safetensors -d cuda --precision fp8 init.tsr
rc=0; "${R[@]}" -d cuda --iters 4 init.tsr >/dev/null 2>err.txt || rc=$?
if [ $rc = 3 ]; then ok "-d cuda without a device: exit 3 ($(cat err.txt))"
elif [ $rc = 0 ]; then ok "-d cuda ran (golden/cuda.sh compares it with the CPU)"
else fail "-d cuda: exit $rc"; fi
check_auto_precision recover -q -w t.safetensors --iters 4 init.tsr
rc=0; DD_THREADS=0 "${R[@]}" --iters 4 init.tsr >out.tsr 2>err.txt || rc=$?
[ $rc = 2 ] && [ ! -s out.tsr ] && grep -q "^recover: DD_THREADS: 0 is out of range" err.txt \
    && ok "DD_THREADS=0: $(cat err.txt)" || fail "DD_THREADS=0: exit $rc: $(cat err.txt)"
DD_THREADS=1 "${R[@]}" --iters 4 init.tsr >r1.tsr && DD_THREADS=3 "${R[@]}" --iters 4 init.tsr >r3.tsr \
    && "$BIN/tscmp" -q --exact r1.tsr r3.tsr && ok "DD_THREADS=1 and 3: the same pixels" || fail "DD_THREADS 1 vs 3"
# an -o that cannot be written is said before the run (no metrics file yet: no step was taken)
rc=0; "${R[@]}" --iters 2000 -m mo.jsonl -o nodir/out.tsr init.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -e mo.jsonl ] && grep -q "^recover: nodir/out.tsr: cannot create temporary file" err.txt \
    && ok "unwritable -o, before any step: $(cat err.txt)" || fail "unwritable -o: exit $rc $(cat err.txt)"
# --metrics is a log of whole lines as the run goes: one killed mid-run leaves whole lines (and no -o)
"${R[@]}" --iters 100000 -m mk.jsonl -o killed.tsr init.tsr & pid=$!
for i in $(seq 300); do [ -s mk.jsonl ] && [ "$(wc -l <mk.jsonl)" -ge 3 ] && break; sleep 0.1; done
kill -TERM $pid; rc=0; wait $pid || rc=$?
[ $rc = 143 ] && [ ! -e killed.tsr ] && [ -z "$(ls killed.tsr.tmp.* 2>/dev/null)" ] && "$PYTHON" -c '
import json
rows = [json.loads(l) for l in open("mk.jsonl")]
assert len(rows) >= 3 and rows[0]["step"] == 0, rows[:1]' \
    && ok "killed mid-run: no -o file, $(wc -l <mk.jsonl) whole metrics lines" || fail "killed run: exit $rc"
# ... and a disk that fills: the log cut back to its last whole line, the run an error naming it, no -o
mkdir mfull
if mount -t tmpfs -o size=12k tmpfs mfull 2>/dev/null; then
    rc=0; "${R[@]}" --iters 400 -m mfull/m.jsonl -o full.tsr init.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -e full.tsr ] && grep -qx "recover: mfull/m.jsonl: write error: No space left on device" err.txt \
        && [ "$(tail -c 1 mfull/m.jsonl | od -An -c | tr -d ' ')" = '\n' ] && "$PYTHON" -c '
import json
rows = [json.loads(l) for l in open("mfull/m.jsonl")]
assert len(rows) >= 3, len(rows)' && ok "metrics on a full disk: $(wc -l <mfull/m.jsonl) whole lines, then $(cat err.txt)" \
        || fail "metrics on a full disk: exit $rc: $(cat err.txt); ends $(tail -c 40 mfull/m.jsonl)"
    umount mfull
else echo "note: no tmpfs can be mounted here: the full-disk metrics row is not checked"; fi
# a teacher without BatchNorm (the instance-norm ConvNet): said once, on stderr; the loss is the
# cross-entropy alone (bn 0 in every metrics row), and the images still move
"$tool" teacher tin.safetensors convnet3:width=16,norm=instance fm.tsr 1
rc=0; "$BIN/recover" -q -w tin.safetensors --iters 6 -m min.jsonl --metrics-every 1 init.tsr >in.tsr 2>err.txt || rc=$?
[ $rc = 0 ] && [ "$(cat err.txt)" = "recover: tin.safetensors (convnet3:width=16,norm=instance) has no BatchNorm layers: \
no statistics to match, its loss is the cross-entropy alone" ] \
    && "$PYTHON" -c '
import json
rows = [json.loads(l) for l in open("min.jsonl")]
assert len(rows) == 12 and all(r["bn"] == 0 and r["loss"] == r["ce"] for r in rows), rows[:2]' \
    && ! "$BIN/tscmp" -q init.tsr in.tsr && ok "teacher without BatchNorm: $(cat err.txt)" || fail "no-BN teacher: exit $rc $(cat err.txt)"
# a teacher whose loss is not finite: exit 1 naming the input, the batch and the step, no output
nan_weights t.safetensors tnan.safetensors
rc=0; "$BIN/recover" -q -w tnan.safetensors --iters 8 -o nan.tsr init.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "recover: init.tsr: batch 0, step 0: loss is not finite (ce nan, bn nan)" err.txt \
    && [ -z "$(ls nan.tsr* 2>/dev/null)" ] && ok "loss not finite: $(cat err.txt)" || fail "NaN teacher: exit $rc, $(cat err.txt)"
# a piece continues the piece before it (the input's history): one skipped, run again, or of
# another budget is an error naming the input; another seed is said
P2=("${R[@]}" --steps 0:10:40 init.tsr)
for bad in "10:20:50 budget of 40 steps" "20:30:40 ended at step 10" "0:10:40 ok" "5:15:40 ended at step 10"; do
    set -- $bad; rc=0; "${P2[@]}" | "${R[@]}" --steps "$1" >/dev/null 2>err.txt || rc=$?
    if [ "$2" = ok ]; then [ $rc = 0 ] && ok "--steps $1 after 0:10:40: a new run" || fail "--steps $1: exit $rc $(cat err.txt)"
    else [ $rc = 1 ] && grep -q "^recover: stdin: its last recover piece .*${*:2}" err.txt \
        && ok "--steps $1 after 0:10:40: $(cat err.txt)" || fail "--steps $1 after 0:10:40: exit $rc $(cat err.txt)"; fi
done
"${P2[@]}" | "${R[@]}" -s 9 --steps 10:20:40 2>err.txt >/dev/null && grep -q "ran with seed 0, this one with 9" err.txt \
    && ok "another seed: $(cat err.txt)" || fail "piece seed: $(cat err.txt)"
# teachers of two normalizations: said naming both files (--ufc, a compensator in each one's own
# space, takes them)
"$BIN/evaltrain" -q -m convnet3:width=16 --epochs 1 --mean 0.5 --std 0.25 --save tms.safetensors fm.tsr >/dev/null
rc=0; "${R[@]}" -w tms.safetensors --iters 4 init.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "recover: tms.safetensors (convnet3:width=16) normalizes its input otherwise than t.safetensors (convnet3:width=16): teachers share one mean and std" err.txt \
    && "${R[@]}" -w tms.safetensors --ufc --iters 2 init.tsr >/dev/null \
    && ok "teachers of two normalizations: $(cat err.txt)" || fail "two normalizations: exit $rc $(cat err.txt)"
# --metrics, a log written in place as the run goes, is not a file the run reads or writes (it
# replaced the teacher or the input, or was lost under -o): usage errors, the files untouched
cp t.safetensors tm.safetensors && cp init.tsr im.tsr
for m in "-m tm.safetensors" "-m im.tsr" "--metrics mo2.tsr -o mo2.tsr"; do
    expect_usage recover -q -w tm.safetensors --iters 4 $m im.tsr
done
# ... nor an output over a teacher (recover, patchsel, relabel -o) or evaltrain --save over the
# training stream (each replaced what the run read, exit 0)
expect_usage recover -q -w tm.safetensors --iters 4 -o tm.safetensors im.tsr
expect_usage patchsel -q -w tm.safetensors --ipc 1 -o tm.safetensors fm.tsr
expect_usage relabel -q -w tm.safetensors --epochs 1 -o tm.safetensors im.tsr
expect_usage evaltrain -q -m convnet3 --epochs 1 --save im.tsr im.tsr
cmp -s tm.safetensors t.safetensors && cmp -s im.tsr init.tsr && [ ! -e mo2.tsr ] \
    && ok "--metrics over the teacher, the input or -o: refused, nothing touched" || fail "--metrics over its files"
# FADRM's multi-resolution default on 224-px images with 3 merges, where every teacher takes 200 px:
# --print-sizes says the fused run's sizes, and the pipe of pieces resampled to them equals the run;
# a net of one input size (convnet3 at 224) keeps 224 throughout (it used to die at stage 0's 200)
"$BIN/tscat" --head 10 init.tsr | "$BIN/resample" -q --size 224 >i224.tsr
"$tool" teacher r224.safetensors resnet18 i224.tsr 1
"$tool" teacher c224.safetensors convnet3:width=16 i224.tsr 1
hsizes() { "$BIN/tsinfo" -q --json - | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["history"][-1]["params"]["sizes"])'; }
sz=$("$BIN/recover" -w r224.safetensors --iters 4 --print-sizes i224.tsr)
cz=$("$BIN/recover" -w c224.safetensors -w r224.safetensors --print-sizes i224.tsr)
P4=("$BIN/recover" -q -w r224.safetensors)
"${P4[@]}" --iters 4 i224.tsr >f224.tsr
"$BIN/resample" -q --size 200 i224.tsr | "${P4[@]}" --steps 0:1:4 | "$BIN/resample" -q --size 224 \
    | "$BIN/arcmerge" -q i224.tsr | "${P4[@]}" --steps 1:2:4 | "$BIN/resample" -q --size 200 \
    | "$BIN/arcmerge" -q i224.tsr | "${P4[@]}" --steps 2:3:4 | "$BIN/resample" -q --size 224 \
    | "$BIN/arcmerge" -q i224.tsr | "${P4[@]}" --steps 3:4:4 >p224.tsr
[ "$sz" = 200,224,200,224 ] && [ -z "$cz" ] && "$BIN/tscmp" -q --exact f224.tsr p224.tsr \
    && [ "$(hsizes <f224.tsr)" = "[200, 224, 200, 224]" ] \
    && [ "$("$BIN/recover" -q -w c224.safetensors --iters 4 i224.tsr | hsizes)" = "[224, 224, 224, 224]" ] \
    && ok "224 px: --print-sizes $sz (convnet3 alone at 224: '$cz'); the pipe at those sizes == the fused run" \
    || fail "224-px sizes: '$sz' '$cz'"
expect_usage recover -w r224.safetensors --steps 0:1:4 --print-sizes i224.tsr
finish

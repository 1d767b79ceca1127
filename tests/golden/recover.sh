# recover: a small FADRM run on Fashion-MNIST patches (ipc 2, 40 steps in 4 stages) with a
# random-init teacher: the fused run equals the 4-piece pipe with arcmerge byte for byte, metrics,
# history, --init noise, two teachers, and the error paths.
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
assert set(rows[0]) == {"batch", "stage", "step", "lr", "ce", "bn", "loss"}
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
"${R[@]}" --iters 6 --no-aug --batch 3 init.tsr >na.tsr && "$BIN/tsinfo" na.tsr | grep -q "^records: 20" \
    && ok "--no-aug, --batch 3" || fail "--no-aug --batch"
# errors
printf 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n' >cls.txt
"$BIN/tsimport" -q --limit 50 --classes-file cls.txt "$fmnist" >other.tsr
"$tool" teacher to.safetensors convnet3:width=16 other.tsr 1
expect_exit 1 "teacher's class list differs" -- "$BIN/recover" -q -w to.safetensors --iters 4 init.tsr
"$tool" teacher t32.safetensors convnet3:width=8 <("$BIN/resample" --size 32 init.tsr) 1
expect_exit 1 "image size the teacher does not take" -- "$BIN/recover" -q -w t32.safetensors --iters 4 init.tsr
check_truncated recover -q -w t.safetensors --iters 4
check_full recover -q -w t.safetensors --iters 4 init.tsr
check_tty recover -q -w t.safetensors --iters 4 init.tsr
expect_usage recover --iters 4 init.tsr
expect_usage recover -w t.safetensors --steps 5:5:10 init.tsr
expect_usage recover -w t.safetensors --steps 0:5:10 --iters 10 init.tsr
expect_usage recover -w t.safetensors --init noise --arc 2
expect_usage recover -w t.safetensors --init zeros
expect_usage recover -w t.safetensors --sizes 28,28 --arc 3 init.tsr
expect_usage recover -w t.safetensors --precision fp16 init.tsr
expect_usage recover -w t.safetensors -d cuda --precision fp8 init.tsr
rc=0; "${R[@]}" -d cuda --iters 4 init.tsr >/dev/null 2>err.txt || rc=$?
if [ $rc = 3 ]; then ok "-d cuda without a device: exit 3 ($(cat err.txt))"
elif [ $rc = 0 ]; then ok "-d cuda ran (golden/cuda.sh compares it with the CPU)"
else fail "-d cuda: exit $rc"; fi
finish

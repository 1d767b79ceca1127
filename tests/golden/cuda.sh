# cuda: every program with -d cuda against the same run with -d cpu (the CPU backend is the
# reference), then a small FADRM pipeline end to end on the GPU. Without a device (-d cuda exits 3)
# the test is a SKIP naming the GPU; make check-gpu counts that as a failure.
# Tolerances (fp32, TF32 off): logits and losses 1e-4 relative; recover's pixels after a few Adam
# steps: Adam's first steps move each pixel by about lr*sign(g), so a pixel whose gradient is ~0
# can go either way: mean |diff| <= 1e-3 and 99% of pixels within 1e-3.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 300
tool=$TESTS/../$BUILD/tests/parity/recover_tool
"$tool" teacher t.safetensors convnet3:width=16 fm.tsr 1
rc=0; "$BIN/evaltrain" -d cuda --eval-only -w t.safetensors fm.tsr >g.json 2>err.txt || rc=$?
if [ $rc = 3 ]; then echo "SKIP: no CUDA device (GPU required): $(cat err.txt)"; exit 77; fi
[ $rc = 0 ] || { cat err.txt; fail "evaltrain -d cuda --eval-only: exit $rc"; finish; }
"$BIN/evaltrain" --eval-only -w t.safetensors fm.tsr >c.json

# relcmp A B TOL KEY...: the JSON numbers KEY of the last lines of A and B that hold them agree to
# TOL relative
relcmp() {
    "$PYTHON" - "$@" <<'PY'
import json, sys
a, b, tol, keys = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
def last(f):
    rows = [json.loads(l) for l in open(f).read().splitlines()]
    return next(r for r in reversed(rows) if all(k in r for k in keys))
ja, jb = last(a), last(b)
for k in keys:
    x, y = float(ja[k]), float(jb[k])
    if abs(x - y) > tol * max(abs(x), 1e-12):
        sys.exit(f"{k}: cpu {x} cuda {y}")
print(" ".join(f"{k} {ja[k]}/{jb[k]}" for k in keys))
PY
}
r=$(relcmp c.json g.json 1e-4 loss top1) && ok "evaltrain --eval-only: $r" || fail "evaltrain --eval-only: $r"

# patchsel: the same crops win (scores agree far beyond the gaps between them)
"$BIN/patchsel" -q -w t.safetensors --ipc 2 --candidates 8 --crops 2 fm.tsr >init.tsr
"$BIN/patchsel" -q -d cuda -w t.safetensors --ipc 2 --candidates 8 --crops 2 fm.tsr >init_g.tsr \
    && "$BIN/tscmp" --exact init.tsr init_g.tsr && ok "patchsel -d cuda == -d cpu" || fail "patchsel -d cuda"

# recover: step-0 losses agree tightly; pixels after 6 steps and 1 merge as the header says
R=(-q -w t.safetensors --iters 6 --arc 1 -m)
"$BIN/recover" "${R[@]}" mc.jsonl init.tsr >rc.tsr
"$BIN/recover" -d cuda "${R[@]}" mg.jsonl init.tsr >rg.tsr || fail "recover -d cuda: exit $?"
"$PYTHON" - <<'PY' && ok "recover -d cuda: metrics agree" || fail "recover -d cuda metrics"
import json
a = [json.loads(l) for l in open("mc.jsonl")]
b = [json.loads(l) for l in open("mg.jsonl")]
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
for x, y in zip(a, b):
    tol = 1e-4 if x["step"] == 0 else 1e-2
    for k in ("ce", "bn", "loss"):
        assert abs(x[k] - y[k]) <= tol * max(abs(x[k]), 1e-6), (x, y)
print("step 0 loss cpu", a[0]["loss"], "cuda", b[0]["loss"])
PY
"$BIN/tsexport" --npy nc rc.tsr && "$BIN/tsexport" --npy ng rg.tsr && "$PYTHON" - <<'PY' \
    && ok "recover -d cuda: pixels" || fail "recover -d cuda: pixels"
import numpy as np
a, b = np.load("nc/image.npy"), np.load("ng/image.npy")
d = np.abs(a.astype(np.float64) - b)
print(f"pixels: mean |diff| {d.mean():.3g}, 99th pct {np.percentile(d, 99):.3g}, max {d.max():.3g}")
assert a.shape == b.shape and d.mean() <= 1e-3 and np.percentile(d, 99) <= 1e-3
PY

# recover --ufc (INFER): the compensator's broadcast add and its summed gradient on the device
U=(-q -w t.safetensors --ufc --iters 6 -m)
"$BIN/recover" "${U[@]}" uc.jsonl init.tsr >uc.tsr
"$BIN/recover" -d cuda "${U[@]}" ug.jsonl init.tsr >ug.tsr || fail "recover --ufc -d cuda: exit $?"
"$BIN/tsexport" --npy unc uc.tsr && "$BIN/tsexport" --npy ung ug.tsr && "$PYTHON" - <<'PY' \
    && ok "recover --ufc -d cuda: step-0 losses and images" || fail "recover --ufc -d cuda"
import json
import numpy as np
a = [json.loads(l) for l in open("uc.jsonl")]
b = [json.loads(l) for l in open("ug.jsonl")]
assert len(a) == len(b) > 0 and all(x["ufc"] == y["ufc"] and x["step"] == y["step"] for x, y in zip(a, b))
for x, y in zip(a, b):
    if x["step"] == 0:
        assert abs(x["loss"] - y["loss"]) <= 1e-4 * abs(x["loss"]), (x, y)
c, g = np.load("unc/image.npy"), np.load("ung/image.npy")
d = np.abs(c.astype(np.float64) - g)
print(f"--ufc images: mean |diff| {d.mean():.3g}, 99th pct {np.percentile(d, 99):.3g}")
assert c.shape == g.shape and (d[: len(d) // 2] == 0).all() and d.mean() <= 1e-3 and np.percentile(d, 99) <= 1e-3
PY

# recover --committee (CV-DD): two teachers' losses summed on one view, one backward through both
"$tool" teacher t2.safetensors convnet2:width=8 fm.tsr 2
K=(-q -w t.safetensors -w t2.safetensors --committee prior:43.1,46.5 --iters 6 --arc 1 -m)
"$BIN/recover" "${K[@]}" kc.jsonl init.tsr >kc.tsr
"$BIN/recover" -d cuda "${K[@]}" kg.jsonl init.tsr >kg.tsr || fail "recover --committee -d cuda: exit $?"
"$BIN/tsexport" --npy knc kc.tsr && "$BIN/tsexport" --npy kng kg.tsr && "$PYTHON" - <<'PY' \
    && ok "recover --committee -d cuda: step-0 terms per teacher and pixels" || fail "recover --committee -d cuda"
import json
import numpy as np
a = [json.loads(l) for l in open("kc.jsonl")]
b = [json.loads(l) for l in open("kg.jsonl")]
assert len(a) == len(b) > 0
for x, y in zip(a, b):
    if x["step"] == 0:
        for k in ("ce_t", "bn_t"):
            assert all(abs(u - v) <= 1e-4 * abs(u) for u, v in zip(x[k], y[k])), (x, y)
c, g = np.load("knc/image.npy"), np.load("kng/image.npy")
d = np.abs(c.astype(np.float64) - g)
print(f"--committee images: mean |diff| {d.mean():.3g}, 99th pct {np.percentile(d, 99):.3g}")
assert c.shape == g.shape and d.mean() <= 1e-3 and np.percentile(d, 99) <= 1e-3
PY
# mixed precision: fp16 / bf16 operands of conv and linear, fp32 everything else
for p in fp16 bf16; do
    "$BIN/recover" -d cuda --precision $p "${R[@]}" mp.jsonl init.tsr >rp.tsr || fail "recover --precision $p"
    "$BIN/tscmp" -q init.tsr rp.tsr && fail "recover --precision $p: no image moved"
    # the casts' copies and cuDNN's workspace in the step arena's free room (the default) or in
    # buffers of their own (DD_CUDA_OWN_TMP=1): the same algorithms on the same values, so the
    # same bits (a fault of the shared room would show here)
    DD_CUDA_OWN_TMP=1 "$BIN/recover" -d cuda --precision $p "${R[@]}" mo.jsonl init.tsr >ro.tsr \
        && "$BIN/tscmp" --exact rp.tsr ro.tsr && cmp -s mp.jsonl mo.jsonl \
        && ok "recover --precision $p: DD_CUDA_OWN_TMP=1 gives the same bits" \
        || fail "recover --precision $p: DD_CUDA_OWN_TMP=1 differs"
    # DD_NN_PROFILE: every call through the timing table, waited for (the sync slot): same bits
    DD_NN_PROFILE=$PWD/prof_$p.txt "$BIN/recover" -d cuda --precision $p "${R[@]}" mq.jsonl init.tsr >rq.tsr \
        && "$BIN/tscmp" --exact rp.tsr rq.tsr && cmp -s mp.jsonl mq.jsonl \
        && grep -q '^nn profile: cuda: .*each call waited for' prof_$p.txt && grep -q ' conv2d_bwd_data ' prof_$p.txt \
        && ok "recover --precision $p: DD_NN_PROFILE gives the same bits; $(sed -n 3p prof_$p.txt)" \
        || fail "recover --precision $p: DD_NN_PROFILE"
    # DD_CUDA_NHWC=1: the convolutions with 8k channels on NHWC copies (other algorithms: other
    # bits); its step-0 loss within 1e-2 of fp32's, as the default's (below)
    DD_CUDA_NHWC=1 "$BIN/recover" -d cuda --precision $p "${R[@]}" mn.jsonl init.tsr >rn.tsr \
        || fail "recover --precision $p, DD_CUDA_NHWC=1"
    "$BIN/tscmp" -q init.tsr rn.tsr && fail "recover --precision $p, DD_CUDA_NHWC=1: no image moved"
    "$PYTHON" -c 'import json, sys; a, b = (json.loads(open(f).readline())["loss"] for f in sys.argv[1:3]); print(sys.argv[3], "DD_CUDA_NHWC=1 step-0 loss", a, b); assert abs(a - b) <= 1e-2 * abs(a)' \
        mc.jsonl mn.jsonl $p && ok "recover --precision $p, DD_CUDA_NHWC=1: step-0 loss within 1e-2 of fp32" \
        || fail "recover --precision $p, DD_CUDA_NHWC=1: step-0 loss"
    "$BIN/evaltrain" -d cuda --precision $p --eval-only -w t.safetensors fm.tsr >gp.json || fail "evaltrain --precision $p"
    "$PYTHON" - $p <<'PY' && ok "--precision $p: step-0 loss and eval loss within 1e-2 of fp32" || fail "--precision $p"
import json, sys
a = json.loads(open("mc.jsonl").readline()); b = json.loads(open("mp.jsonl").readline())
e, f = json.loads(open("c.json").read()), json.loads(open("gp.json").read())
print(sys.argv[1], "step-0 loss", a["loss"], b["loss"], "eval loss", e["loss"], f["loss"])
assert abs(a["loss"] - b["loss"]) <= 1e-2 * abs(a["loss"]) and abs(e["loss"] - f["loss"]) <= 1e-2 * e["loss"]
rows = [json.loads(l) for l in open("mp.jsonl")]
if sys.argv[1] == "fp16":   # loss scaling: the scale reported, and most steps taken
    print("fp16 loss scale", rows[-1]["scale"], "steps skipped", rows[-1]["skipped"])
    assert all("scale" in r for r in rows) and rows[-1]["skipped"] < 6   # 6 steps a batch
else:
    assert not any("scale" in r for r in rows)
PY
done

# relabel: the same crops and flips, so the same soft labels to fp32 accuracy
"$BIN/relabel" -q -w t.safetensors --epochs 2 init.tsr >lc.tsr
"$BIN/relabel" -q -d cuda -w t.safetensors --epochs 2 init.tsr >lg.tsr \
    && "$BIN/tscmp" --atol 1e-4 --rtol 1e-4 lc.tsr lg.tsr && ok "relabel -d cuda == -d cpu (1e-4)" \
    || fail "relabel -d cuda"

# evaltrain: 2 epochs of SGD from the same init; the training losses agree to 1e-3
ET=(-q -m convnet3:width=16 --epochs 2 --batch 32 --val fm.tsr)
"$BIN/evaltrain" "${ET[@]}" fm.tsr >ec.json
"$BIN/evaltrain" -d cuda "${ET[@]}" fm.tsr >eg.json || fail "evaltrain -d cuda: exit $?"
r=$(relcmp ec.json eg.json 1e-3 train_loss) && ok "evaltrain -d cuda: $r" || fail "evaltrain -d cuda: $r"
# the same training in mixed precision (fp16: train_step's loss scaling, whose first steps may be
# skipped while the scale comes down from 65536): the last epoch's loss within 10% of fp32's
for p in fp16 bf16; do
    "$BIN/evaltrain" -d cuda --precision $p "${ET[@]}" fm.tsr >ep.json || fail "evaltrain -d cuda --precision $p: exit $?"
    r=$(relcmp ec.json ep.json 1e-1 train_loss) && ok "evaltrain -d cuda --precision $p: $r" \
        || fail "evaltrain --precision $p: $r"
done
ET=(-q -m convnet3:width=16 --epochs 2 --labels lc.tsr)
"$BIN/evaltrain" "${ET[@]}" init.tsr >sc.json
"$BIN/evaltrain" -d cuda "${ET[@]}" init.tsr >sg.json || fail "evaltrain -d cuda --labels: exit $?"
r=$(relcmp sc.json sg.json 1e-3 train_loss) && ok "evaltrain -d cuda --labels: $r" || fail "evaltrain --labels: $r"

# end to end on the GPU: teacher, RDED patches, FADRM recover, FKD labels, student (IPC 10)
N=${CUDA_E2E_RECORDS:-12000}
"$BIN/tsimport" -q --limit "$N" "$fmnist" >tr.tsr
"$BIN/tsimport" -q --split test "$fmnist" >te.tsr
D=(-d cuda -q)
t0=$EPOCHREALTIME
"$BIN/evaltrain" "${D[@]}" -m convnet3 --epochs 2 --save teacher.safetensors tr.tsr >teacher.json \
 && "$BIN/patchsel" "${D[@]}" -w teacher.safetensors --ipc 10 tr.tsr >p.tsr \
 && "$BIN/recover" "${D[@]}" -w teacher.safetensors --iters 200 --arc 3 p.tsr >x.tsr \
 && "$BIN/relabel" "${D[@]}" -w teacher.safetensors --epochs 100 x.tsr >l.tsr \
 && "$BIN/evaltrain" "${D[@]}" -m convnet3 --epochs 100 --labels l.tsr --val te.tsr x.tsr >student.json \
 || fail "pipeline -d cuda"
dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
"$BIN/evaltrain" -d cuda --eval-only -w teacher.safetensors te.tsr >teval.json
echo "teacher: $(cat teval.json)"
echo "student: $(tail -n 1 student.json)"
"$PYTHON" - <<'PY' && ok "FADRM ipc 10 on the GPU in $dt s" || fail "pipeline accuracy"
import json
t = json.loads(open("teval.json").read().splitlines()[-1])["top1"]
s = json.loads(open("student.json").read().splitlines()[-1])["final_top1"]
print(f"teacher top-1 {t}, student top-1 {s}")
assert t > 70 and s > 50, (t, s)
PY
finish

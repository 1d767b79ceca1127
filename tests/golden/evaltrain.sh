# evaltrain: happy path with --save and --eval-only agreeing, stdin input, usage errors, truncated
# input, class-list mismatches (val, weights), unwritable --save, stdout write error, resume from a
# checkpoint reaching the same weights, --mean/--std, NaN loss, static soft labels, online teacher, -d cuda.
# PyTorch parity in parity/evaltrain.sh.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
E="$BIN/evaltrain"
[ -d "$fmnist" ] || { echo "SKIP: Fashion-MNIST not installed at $fmnist"; exit 77; }
"$BIN/tsimport" -q --format idx --limit 192 "$fmnist" >tr.tsr
"$BIN/tsimport" -q --format idx --split test --limit 128 "$fmnist" >te.tsr
small=(-m "convnet3:width=16" -j 2 -q)

# happy path: one line per epoch and the final line; the saved weights evaluate to the same top-1
"$E" -m convnet3 -q --epochs 2 --batch 64 --val te.tsr --save w.safetensors tr.tsr >m.json
[ "$(wc -l <m.json)" = 3 ] && grep -q '"epoch":2,"lr":0.025,"train_loss":' m.json && ok "metrics lines" || fail "metrics: $(cat m.json)"
final=$(tail -n 1 m.json | sed -n 's/.*"final_top1":\([0-9.]*\).*"best_epoch":\([0-9]\).*"top1":\([0-9.]*\).*/\1 \3/p')
read -r f1 t1 <<<"$final"
[ -n "$f1" ] && [ "$f1" = "$t1" ] && ok "final line: $(tail -n 1 m.json)" || fail "final line: $(tail -n 1 m.json)"
"$E" --eval-only -w w.safetensors te.tsr >e.json
# the recipe goes with the results: on the final line and in the saved weights' metadata (T, eta,
# the augmentation: an INFER student at T 20 by mistake could not be told from one at T 30)
"$E" "${small[@]}" --epochs 1 --lr 0.01 --eta 2 --cutmix 0.5 --crop-pad 2 --save wr.safetensors tr.tsr >mr.json
"$BIN/tsinfo" --json wr.safetensors >wr.json
"$PYTHON" - mr.json wr.json <<'PY' && ok "the recipe on the final line and in --save's metadata" || fail "recipe: $(tail -n 1 mr.json)"
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])["recipe"]
assert r["lr"] == 0.01 and r["eta"] == 2 and r["optimizer"] == "sgd" and r["momentum"] == 0.9, r
assert r["aug"] == {"shuffle_patches": 1, "rrc": None, "crop_pad": 2, "flip": True, "cutmix": 0.5, "mixup": 0}, r
t = json.loads(json.load(open(sys.argv[2]))["metadata"]["training"])
assert t["recipe"] == r, (t, r)
PY
grep -q "\"records\":128,\"top1\":$f1," e.json && ok "eval-only top1 = final top1 ($f1)" || fail "eval-only: $(cat e.json) vs $f1"
grep -aq '"arch":"convnet3"' w.safetensors && grep -aq 'Ankle boot' w.safetensors && ok "weights metadata" || fail "metadata"
"$E" --eval-only -w w.safetensors <te.tsr | grep -q "\"top1\":$f1," && ok "eval-only from stdin" || fail "stdin eval"
"$E" "${small[@]}" --epochs 0 --save w0.safetensors <tr.tsr >/dev/null && [ -s w0.safetensors ] && ok "--epochs 0 saves the initial weights" || fail "epochs 0"
# the dataset-condensation ConvNet's instance norm (GroupNorm(C, C)): it learns (top-1 past 50 on
# 128 test images after 4 epochs of 192 images; 64.8 here), and its saved weights evaluate to the same top-1
"$E" -m convnet3:width=16,norm=instance -j 2 -q --epochs 4 --batch 32 --val te.tsr --save win.safetensors tr.tsr >min.json
fin=$(tail -n 1 min.json | sed -n 's/.*"final_top1":\([0-9.]*\).*/\1/p')
[ -n "$fin" ] && awk -v t="$fin" 'BEGIN { exit !(t > 50) }' && "$E" --eval-only -w win.safetensors te.tsr | grep -q "\"top1\":$fin," \
    && grep -aq '"arch":"convnet3:width=16,norm=instance"' win.safetensors \
    && ok "norm=instance trains (top-1 $fin) and evaluates alike from its weights" || fail "norm=instance: $(tail -n 1 min.json)"
# weights stored in half precision (a checkpoint saved after .half()) or float64 load, converted to
# fp32: a loss within 1e-2 and a top-1 within 2.5 points (bf16's rounding moves an image or two of
# the 128); integer weights are refused naming the dtype
"$PYTHON" - <<'PY' || fail "writing converted weights"
import json, struct, numpy as np
b = open("w.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h, data = json.loads(b[8:8 + n]), b[8 + n:]
for tag, conv in [("F16", lambda a: a.astype(np.float16)), ("BF16", lambda a: (a.view(np.uint32) >> 16).astype(np.uint16)),
                  ("F64", lambda a: a.astype(np.float64)), ("I64", lambda a: a.astype(np.int64))]:
    out, chunks, off = {}, [], 0
    for k, v in h.items():
        if k == "__metadata__":
            out[k] = v
            continue
        raw, v = data[v["data_offsets"][0]:v["data_offsets"][1]], dict(v)
        if v["dtype"] == "F32":
            raw, v["dtype"] = conv(np.frombuffer(raw, np.float32)).tobytes(), tag
        v["data_offsets"] = [off, off + len(raw)]
        off += len(raw)
        chunks.append(raw)
        out[k] = v
    js = json.dumps(out).encode()
    js += b" " * (-len(js) % 8)
    open(f"w_{tag}.safetensors", "wb").write(struct.pack("<Q", len(js)) + js + b"".join(chunks))
PY
for t in F16 BF16 F64; do
    "$E" --eval-only -w w_$t.safetensors te.tsr >e_$t.json || fail "$t weights: exit $?"
    "$PYTHON" -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:])
sys.exit(not (abs(a["top1"] - b["top1"]) <= 2.5 and abs(a["loss"] - b["loss"]) <= 1e-2))' e.json e_$t.json \
        && ok "$t weights: $(cat e_$t.json)" || fail "$t weights: $(cat e_$t.json) against $(cat e.json)"
done
rc=0; "$E" --eval-only -w w_I64.safetensors te.tsr >out.txt 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "w_I64.safetensors: weights do not fit model convnet3: not floating point .*0.weight (I64)" err.txt \
    && ok "integer weights refused" || fail "I64 weights: exit $rc: $(cat err.txt)"

# usage errors
expect_usage evaltrain tr.tsr
expect_usage evaltrain -m convnet3 -w w.safetensors tr.tsr
expect_usage evaltrain -m convnet3 --optimizer rmsprop tr.tsr
expect_usage evaltrain --eval-only -m convnet3 te.tsr
expect_usage evaltrain -m convnet3 --cutmix 1 --mixup 0.8 tr.tsr
expect_usage evaltrain -m convnet3 --teacher w.safetensors --hard tr.tsr
expect_usage evaltrain -m convnet3 --lr -1 tr.tsr
expect_usage evaltrain -m convnet3 --betas 0.9 tr.tsr
expect_usage evaltrain -m convnet3 --no-such-option tr.tsr
expect_usage evaltrain -m nosuchnet --epochs 0 tr.tsr
expect_usage evaltrain -m convnet3 --precision bf16 tr.tsr
expect_usage evaltrain -m convnet3 -d auto --precision half tr.tsr
expect_usage evaltrain -m convnet3 -j 4097 tr.tsr
expect_usage evaltrain -m convnet3 --rrc-scale 0.5,0.2 tr.tsr
rc=0; DD_THREADS=four "$E" -m convnet3 --epochs 0 tr.tsr >out.txt 2>err.txt || rc=$?
[ $rc = 2 ] && [ ! -s out.txt ] && grep -q "^evaltrain: DD_THREADS: 'four' is not an integer" err.txt \
    && ok "DD_THREADS=four: $(cat err.txt)" || fail "DD_THREADS=four: exit $rc: $(cat err.txt)"

# -d auto --precision fp16: on the GPU when there is one; without one a warning and the CPU's fp32
# run, whose weights are -d cpu's and whose provenance records the precision computed in (fp32:
# no "precision" key), not the one asked for
"$E" "${small[@]}" --epochs 1 --save wc.safetensors tr.tsr >/dev/null
"$E" "${small[@]}" --epochs 1 -d auto --precision fp16 --save wa.safetensors tr.tsr >/dev/null 2>err.txt \
    || fail "-d auto --precision fp16: exit $?"
rc=0; "$E" -d cuda --eval-only -w wc.safetensors te.tsr >/dev/null 2>&1 || rc=$?
"$PYTHON" - wc.safetensors wa.safetensors $rc <<'PY' && ok "-d auto --precision fp16 (cuda exit $rc): $(cat err.txt)" \
    || fail "-d auto --precision fp16: $(cat err.txt)"
import json, struct, sys
def load(f):
    b = open(f, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(json.loads(b[8:8 + n])["__metadata__"]["training"]), b[8 + n:]
(mc, dc), (ma, da) = load(sys.argv[1]), load(sys.argv[2])
if sys.argv[3] == "3":  # no device: the CPU's run, in fp32
    assert da == dc, "weights differ from -d cpu's"
    assert "precision" not in ma, ma
else:
    assert ma.get("precision") == "fp16", ma
PY
[ $rc != 3 ] || grep -q "no CUDA device, computing in fp32" err.txt || fail "-d auto without a device: no warning"

# bad data: truncated input, class lists that differ
head -c 60000 tr.tsr >cut.tsr
expect_exit 1 "truncated training stream" -- "$E" "${small[@]}" --epochs 1 cut.tsr
for i in 0 1 2 3 4 5 6 7 8 9; do echo "other$i"; done >cls.txt
"$BIN/tsimport" -q --format idx --split test --limit 32 --classes-file cls.txt "$fmnist" >other.tsr
"$E" "${small[@]}" --epochs 1 --val other.tsr tr.tsr >out.txt 2>err.txt && fail "class mismatch accepted"
[ ! -s out.txt ] && grep -q "tr.tsr" err.txt && grep -q "other.tsr" err.txt && ok "train/val classes differ: $(cat err.txt)" \
    || fail "class mismatch message: $(cat err.txt)"
"$E" --eval-only -w w.safetensors other.tsr >/dev/null 2>err.txt && fail "weights/stream classes accepted"
grep -q "w.safetensors" err.txt && grep -q "other.tsr" err.txt && ok "weights/stream classes differ: $(cat err.txt)" \
    || fail "weights mismatch message: $(cat err.txt)"
# images the model does not take (3 channels, 1 expected): the weights and the stream named
rgb_copy te.tsr rgb.tsr || fail "a 3-channel copy"
for c in "--eval-only -w w.safetensors rgb.tsr:w.safetensors: rgb.tsr" "-m convnet3 --epochs 1 --val rgb.tsr tr.tsr:convnet3: rgb.tsr" \
         "-m convnet3 --epochs 1 --teacher w.safetensors rgb.tsr:w.safetensors: rgb.tsr"; do
    rc=0; "$E" ${c%%:*} >out.txt 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.txt ] && grep -q "^evaltrain: ${c#*:}: model convnet3 takes 1x28x28 images, got 3x28x28" err.txt \
        && ok "${c%%:*}: $(cat err.txt)" || fail "${c%%:*}: exit $rc: $(cat err.txt)"
done

# output errors: --save where it cannot be written fails before training, leaving nothing
"$E" "${small[@]}" --epochs 1 --save nodir/w.safetensors tr.tsr >out.txt 2>err.txt && fail "unwritable --save accepted"
[ ! -e nodir ] && [ ! -s out.txt ] && grep -q "nodir/w.safetensors" err.txt && ok "unwritable --save: $(cat err.txt)" \
    || fail "unwritable save: $(cat err.txt)"
mkdir savedir
"$E" "${small[@]}" --epochs 1 --save savedir tr.tsr >out.txt 2>err.txt && fail "--save DIR accepted"
[ ! -s out.txt ] && grep -q "savedir: is a directory" err.txt && [ -z "$(ls savedir)" ] \
    && ok "--save DIR: before training: $(cat err.txt)" || fail "--save DIR: $(cat out.txt err.txt)"
# a FIFO is written through, not replaced by a file
mkfifo wfifo
cat wfifo >wfifo.got & reader=$!
"$E" "${small[@]}" --epochs 1 --save wfifo tr.tsr >/dev/null && wait $reader && [ -p wfifo ] \
    && "$BIN/tsinfo" wfifo.got | grep -q "format: ddpipe-weights/1" && ok "--save FIFO: the weights through it" \
    || fail "--save FIFO: $(ls -l wfifo)"
# a stdout that fails (the metrics) fails the run before --save appears
rc=0; "$E" "${small[@]}" --epochs 1 --save sfull.safetensors tr.tsr >/dev/full 2>err.txt || rc=$?
[ $rc = 1 ] && [ -z "$(ls sfull.safetensors* 2>/dev/null)" ] && ok "stdout full: exit 1, no --save: $(cat err.txt)" \
    || fail "stdout full: exit $rc, $(ls sfull* 2>/dev/null)"
# an unknown architecture is a usage error before any data are read (/dev/zero is no stream); a
# known one that the images are too small for is the data's: exit 1 naming the stream
rc=0; "$E" -m nosuchnet --epochs 1 /dev/zero >/dev/null 2>err.txt || rc=$?
[ $rc = 2 ] && grep -q "^evaltrain: model 'nosuchnet': unknown architecture" err.txt && ok "-m unknown: exit 2 before the data" \
    || fail "-m unknown: exit $rc: $(cat err.txt)"
"$BIN/resample" -q --size 4 tr.tsr >tiny4.tsr
rc=0; "$E" -m convnet3 --epochs 1 tiny4.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "evaltrain: tiny4.tsr: model convnet3: input 4 is too small for 3 pooling blocks" err.txt \
    && ok "images too small for -m: $(cat err.txt)" || fail "too small: exit $rc: $(cat err.txt)"
# weights whose metadata hold an std of 0: the file named
"$PYTHON" - "$TESTS/../pipelines" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from torch2safetensors import st_load, st_save
t, meta = st_load("w.safetensors")
st_save("wstd0.safetensors", t, dict(meta, std="[0.0]"))
PY
rc=0; "$E" --eval-only -w wstd0.safetensors te.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^evaltrain: wstd0.safetensors: metadata: model convnet3: invalid normalization for channel 0: mean .* std 0$" \
    err.txt && ok "std 0 in the metadata: $(cat err.txt)" || fail "std 0: exit $rc: $(cat err.txt)"
# the converters: a state_dict under another key (kuangliu's "net", the tutorials'
# "model_state_dict") converts; under several keys, a file that is no checkpoint, a bad
# --class-index: one line each naming the file, exit 1; safetensors2torch --help on stdout
if have_torch; then
    "$PYTHON" -c "
import torch, torchvision
sd = torchvision.models.resnet18(num_classes=10).state_dict()
torch.save({'net': sd, 'epoch': 1}, 'cnet.pth')
torch.save({'a': sd, 'b': sd}, 'ctwo.pth')
open('ctext.pth', 'w').write('hello')"
    C=("$PYTHON" "$TESTS/../pipelines/torch2safetensors.py")
    "${C[@]}" cnet.pth cnet.safetensors 2>/dev/null && "$BIN/tsinfo" cnet.safetensors | grep -q '"arch"\|arch' \
        && ok "torch2safetensors: {\"net\": state_dict}" || fail "converter: net key"
    for c in "ctwo.pth::tensors under the keys \['a', 'b'\]: give --key K" "ctext.pth::not a PyTorch checkpoint" \
             "cnet.pth:--class-index 0,10:--class-index: want distinct rows from 0 to 9 of fc" \
             "cnet.pth:--arch convnet3:--arch convnet3: the tensors are resnet18's"; do
        f=${c%%:*}; r=${c#*:}; opt=${r%%:*}; want=${r#*:}
        rc=0; "${C[@]}" $opt "$f" cx.safetensors >/dev/null 2>err.txt || rc=$?
        [ $rc = 1 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q "^torch2safetensors.py: .*$want" err.txt && [ ! -e cx.safetensors ] \
            && ok "torch2safetensors $opt $f: $(cat err.txt)" || fail "converter $f $opt: exit $rc: $(cat err.txt)"
    done
    "${C[@]}" --key b ctwo.pth ctwo.safetensors 2>/dev/null && ok "torch2safetensors --key" || fail "converter --key"
    # the normalization: the default written and said when not given; as given, silently, otherwise
    "${C[@]}" cnet.pth cdef.safetensors 2>err.txt && "${C[@]}" --mean 0,0,0 --std 1,1,1 cnet.pth craw.safetensors 2>err2.txt \
        && grep -q "^cnet.pth: no --mean/--std: wrote the default normalization for 3 channels, mean 0.485,0.456,0.406 std \
0.229,0.224,0.225; right only if" err.txt && ! grep -q "no --mean" err2.txt \
        && "$BIN/tsinfo" cdef.safetensors | grep -qx '  mean: \[0.485, 0.456, 0.406\]' \
        && "$BIN/tsinfo" craw.safetensors | grep -qx '  mean: \[0.0, 0.0, 0.0\]' \
        && ok "torch2safetensors: the default normalization written and said" \
        || fail "converter normalization: $(cat err.txt err2.txt; "$BIN/tsinfo" cdef.safetensors craw.safetensors)"
    "$PYTHON" "$TESTS/../pipelines/safetensors2torch.py" --help >s2t.txt && grep -q "^usage: safetensors2torch.py" s2t.txt \
        && ok "safetensors2torch --help" || fail "safetensors2torch --help"
else echo "skip: the converters' rows (no torch)"; fi
# the host out of memory is exit 1 (3 is a device's), in one line
if ldd "$E" | grep -q libasan; then echo "skip: out-of-memory row (ASan needs its address space)"
else
    rc=0; (ulimit -v 3000000; exec "$E" -m convnet3 --res 8192 --epochs 1 tr.tsr) >/dev/null 2>err.txt || rc=$?
    # (after the one line that says the limit)
    [ $rc = 1 ] && [ "$(grep -vc '(ulimit -v)' err.txt)" = 1 ] && grep -q "^evaltrain: nn: .*: out of memory" err.txt \
        && ok "host out of memory: exit 1: $(tail -n 1 err.txt)" || fail "out of memory: exit $rc: $(cat err.txt)"
fi
check_full evaltrain --eval-only -w w.safetensors te.tsr

# on a terminal: progress on stderr (the last step always draws it), erased before each metrics
# line on the same terminal's stdout
rc=0; on_tty "$E" -m "convnet3:width=16" -j 2 --epochs 2 --batch 64 tr.tsr || rc=$?
if [ $rc = 77 ]; then echo "skip: no script(1), progress on a terminal not checked"
else
    [ $rc = 0 ] && grep -q "evaltrain: steps 6/6 .*/s ETA" tty.out && grep -q "evaltrain: steps 6 done in" tty.out \
        && r=$(tty_lines_clean '{"epoch":2,' 2>&1) && ok "progress on a terminal, metrics lines at the margin" \
        || fail "progress on a terminal: exit $rc: $r: $(head -c 400 tty.out | cat -A)"
fi

# the CPU backend's path variables: an unknown value is a usage error naming it; empty is unset
for v in DD_CPU_CONV DD_CPU_ISA; do
    rc=0; env $v=foo "$E" --eval-only -w w.safetensors te.tsr >out.json 2>err.txt || rc=$?
    [ $rc = 2 ] && [ ! -s out.json ] && grep -q "^evaltrain: $v=foo: " err.txt && ok "$v=foo: $(cat err.txt)" \
        || fail "$v=foo: exit $rc $(cat err.txt)"
done
env DD_CPU_CONV= "$E" --eval-only -w w.safetensors te.tsr | grep -q "\"top1\":$f1," && ok "DD_CPU_CONV= is unset" \
    || fail "DD_CPU_CONV= (empty)"
# options the run's optimizer or batch does not use are said, not dropped
rc=0; "$E" "${small[@]}" --epochs 1 --optimizer adam --momentum 0.5 --micro 200 --batch 64 tr.tsr >/dev/null 2>err.txt \
    || rc=$?
[ $rc = 0 ] && grep -q "^evaltrain: --momentum is SGD's; this run's optimizer is adam" err.txt \
    && grep -q "^evaltrain: --micro 200 exceeds the batch of 64" err.txt && ok "ignored options said: $(tr '\n' ' ' <err.txt)" \
    || fail "ignored options: exit $rc $(cat err.txt)"
rc=0; "$E" "${small[@]}" --epochs 1 --betas 0.5,0.9 tr.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 0 ] && grep -q "^evaltrain: --betas are Adam's and AdamW's; this run's optimizer is sgd" err.txt \
    && ok "--betas with SGD said" || fail "--betas with sgd: exit $rc $(cat err.txt)"
# resume: stopped after the epoch-2 checkpoint, the same command resumes and ends where an
# uninterrupted run ends (byte-identical weights)
run=("$E" "${small[@]}" --epochs 3 --batch 32 -s 5 --crop-pad 2 --cutmix 1 --val te.tsr)
"${run[@]}" --save a.safetensors tr.tsr >a.json
"${run[@]}" --checkpoint ck.safetensors --stop-after-epoch 2 --save b.safetensors tr.tsr >/dev/null
[ -s ck.safetensors ] && [ ! -e b.safetensors ] && ok "stopped after the epoch-2 checkpoint" || fail "stop after 2"
"${run[@]}" --checkpoint ck.safetensors --save b.safetensors tr.tsr >b.json
cmp a.safetensors b.safetensors && ok "resumed run = uninterrupted run (weights identical)" || fail "resume differs"
[ "$(tail -n 1 a.json)" = "$(tail -n 1 b.json)" ] && [ "$(wc -l <b.json)" = 2 ] && ok "resumed final line" || fail "resume metrics"
# resumed at its end: nothing left to train, the same final line and weights (evaluated anew)
"${run[@]}" --checkpoint ck.safetensors --save c.safetensors tr.tsr >c.json && cmp -s a.safetensors c.safetensors \
    && [ "$(tail -n 1 a.json)" = "$(cat c.json)" ] && ok "a finished checkpoint resumed: $(cat c.json)" \
    || fail "resumed at the end: $(cat c.json)"
# --checkpoint-every 2, stopped after epoch 3: a slice's end is checkpointed anyway (else each rerun
# of the slice would train epoch 3 again and never get further), so the resumed run trains epoch 4
# only and ends with the uninterrupted run's weights
run4=("$E" "${small[@]}" --epochs 4 --batch 64 -s 3)
"${run4[@]}" --save a4.safetensors tr.tsr >/dev/null
"${run4[@]}" --checkpoint ck4.safetensors --checkpoint-every 2 --stop-after-epoch 3 tr.tsr >/dev/null
"${run4[@]}" --checkpoint ck4.safetensors --checkpoint-every 2 --save b4.safetensors tr.tsr >b4.json
[ "$(grep -c '"epoch":' b4.json)" = 1 ] && grep -q '"epoch":4,' b4.json && cmp -s a4.safetensors b4.safetensors \
    && ok "--checkpoint-every 2 --stop-after-epoch 3: resumed from epoch 3, the uninterrupted weights" \
    || fail "checkpoint-every: $(cat b4.json)"
# the stopping command itself again: the slice that stopped at epoch 2 is done, so this one runs on
# to the end (it stopped again after one more epoch before, every rerun one epoch)
"${run4[@]}" --checkpoint cks.safetensors --stop-after-epoch 2 tr.tsr >/dev/null
"${run4[@]}" --checkpoint cks.safetensors --stop-after-epoch 2 --save s4.safetensors tr.tsr >s4.json
cmp -s a4.safetensors s4.safetensors && [ "$(grep -c '"epoch":' s4.json)" = 2 ] \
    && ok "--stop-after-epoch 2 twice: the second runs epochs 3 and 4, the uninterrupted weights" \
    || fail "--stop-after-epoch 2 twice: $(cat s4.json)"
"${run4[@]}" --checkpoint ck1.safetensors --checkpoint-every 2 --stop-after-epoch 1 tr.tsr >/dev/null && [ -s ck1.safetensors ] \
    && ok "--stop-after-epoch 1 with --checkpoint-every 2: checkpointed" || fail "stop 1, every 2: no checkpoint"
expect_usage evaltrain "${small[@]}" --epochs 4 --stop-after-epoch 1 tr.tsr
"$E" "${small[@]}" --epochs 3 --batch 16 -s 5 --checkpoint ck.safetensors tr.tsr >/dev/null 2>err.txt && fail "foreign checkpoint"
grep -q "other options" err.txt && ok "checkpoint of another configuration refused" || fail "ckpt check: $(cat err.txt)"
# ... or of the same options on other inputs: other images (the same count and size), another
# --labels stream (relabel -s 1), another --teacher; each named. A checkpoint from before the
# digests were kept (no "inputs" in its metadata) resumes unchecked, to the same weights.
ck_refused() { # NAME CKPT WHAT RUN...: the run exits 1 refusing CKPT as written for other WHAT
    local name=$1 ck=$2 what=$3 rc=0; shift 3
    "$@" >/dev/null 2>err.txt || rc=$?
    if [ $rc = 1 ] && grep -q "^evaltrain: $ck: written by a run with other $what; remove it to start afresh$" err.txt
    then ok "checkpoint for $name refused: $(cat err.txt)"; else fail "$name: exit $rc $(cat err.txt)"; fi
}
"$BIN/tsimport" -q --format idx --split test --limit 192 "$fmnist" >tr2.tsr
"${run4[@]}" --checkpoint ckd.safetensors --stop-after-epoch 1 tr.tsr >/dev/null
ck_refused "other images" ckd.safetensors "training images or labels" "${run4[@]}" --checkpoint ckd.safetensors tr2.tsr
"$BIN/relabel" -q -w w.safetensors --epochs 2 --batch 32 tr.tsr >l0.tsr
"$BIN/relabel" -q -w w.safetensors --epochs 2 --batch 32 -s 1 tr.tsr >l1.tsr
runl=("$E" "${small[@]}" --epochs 2)
"${runl[@]}" --labels l0.tsr --checkpoint ckl.safetensors --stop-after-epoch 1 tr.tsr >/dev/null
ck_refused "other --labels" ckl.safetensors "--labels stream" "${runl[@]}" --labels l1.tsr --checkpoint ckl.safetensors tr.tsr
"${runl[@]}" --teacher w.safetensors --checkpoint ckt.safetensors --stop-after-epoch 1 tr.tsr >/dev/null
ck_refused "another --teacher" ckt.safetensors "--teacher weights" \
    "${runl[@]}" --teacher w0.safetensors --checkpoint ckt.safetensors tr.tsr
"$PYTHON" - ckd.safetensors ckold.safetensors <<'PY' || fail "a checkpoint without inputs"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
del h["__metadata__"]["inputs"]
j = json.dumps(h).encode()
j += b" " * (-len(j) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(j)) + j + b[8 + n:])
PY
"${run4[@]}" --checkpoint ckold.safetensors --save old4.safetensors tr.tsr >/dev/null && cmp -s a4.safetensors old4.safetensors \
    && ok "a checkpoint without inputs digests resumes, to the uninterrupted weights" || fail "checkpoint without inputs"

# --mean/--std: the defaults given explicitly train the same bytes as none (and leave the checkpoint
# fingerprint as it was before the options existed); others train other weights and are saved in
# the metadata; a checkpoint of other normalization is refused, of the same one resumed
run4m=("${run4[@]}" --mean 0.2860 --std 0.3530)
"${run4m[@]}" --save d4.safetensors tr.tsr >/dev/null && cmp -s a4.safetensors d4.safetensors \
    && ok "--mean 0.2860 --std 0.3530 (the 1-channel default) = no options, byte for byte" || fail "default norm differs"
"$PYTHON" - ck4.safetensors <<'PY' && ok "a default run's checkpoint fingerprint has no mean/std" || fail "fingerprint"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
fp = json.loads(json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]["fingerprint"])
assert "mean" not in fp and "std" not in fp and fp["arch"], fp
PY
run4n=("${run4[@]}" --mean 0.5 --std 0.25)
"${run4n[@]}" --save n4.safetensors tr.tsr >/dev/null
"$PYTHON" - n4.safetensors a4.safetensors <<'PY' && ok "--mean 0.5 --std 0.25: other weights, in the metadata" || fail "norm metadata"
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
(h, d), (h0, d0) = load(sys.argv[1]), load(sys.argv[2])
assert json.loads(h["__metadata__"]["mean"]) == [0.5] and json.loads(h["__metadata__"]["std"]) == [0.25], h["__metadata__"]
assert d != d0
PY
"${run4n[@]}" --checkpoint ckn.safetensors --stop-after-epoch 2 tr.tsr >/dev/null
"${run4[@]}" --checkpoint ckn.safetensors tr.tsr >/dev/null 2>err.txt && fail "checkpoint of another normalization resumed"
grep -q "other options" err.txt && ok "checkpoint of another normalization refused" || fail "norm ckpt: $(cat err.txt)"
"${run4n[@]}" --checkpoint ckn.safetensors --save m4.safetensors tr.tsr >/dev/null && cmp -s n4.safetensors m4.safetensors \
    && ok "resumed with the same --mean/--std: the uninterrupted weights" || fail "norm resume"
expect_usage evaltrain "${small[@]}" --mean 0.5 tr.tsr
expect_usage evaltrain "${small[@]}" --mean 0.5,0.4 --std 0.2 tr.tsr
expect_usage evaltrain "${small[@]}" --mean 0.5, --std 0.2 tr.tsr
expect_usage evaltrain "${small[@]}" --mean 0.5 --std 0 tr.tsr
expect_usage evaltrain -w w.safetensors --mean 0.5 --std 0.2 tr.tsr
rc=0; "$E" "${small[@]}" --mean 0.5,0.4,0.3 --std 0.2,0.2,0.2 tr.tsr >out.txt 2>err.txt || rc=$?
[ $rc = 2 ] && [ ! -s out.txt ] && grep -q "3 values; tr.tsr's images have 1 channel$" err.txt \
    && ok "3 values for 1 channel: $(cat err.txt)" || fail "channel count: exit $rc: $(cat err.txt)"

# a diverging run stops naming epoch and step, keeping the last good checkpoint
"$E" "${small[@]}" --epochs 30 --batch 32 --lr 1e5 --checkpoint nan.safetensors tr.tsr >/dev/null 2>err.txt && fail "NaN accepted"
grep -Eq "epoch [0-9]+ step [0-9]+: loss is (NaN|infinite)" err.txt && ok "non-finite loss: $(cat err.txt)" || fail "nan: $(cat err.txt)"

# static soft labels (records with "soft") and an online teacher
mk_npy s 24 1 8 8 1
"$BIN/tsimport" s >s.tsr
"$E" -m "convnet1:width=8" -q --epochs 2 --batch 8 --save s.safetensors s.tsr >s.json && grep -aq 'static' s.safetensors \
    && ok "static soft labels: $(tail -n 1 s.json)" || fail "static soft labels"
# INFER's student decays every parameter (one AdamW group); --decay weights restores the FKD groups
grep -aq '\\"optimizer\\":\\"adamw\\",\\"lr\\":0.001,\\"wd\\":0.01,\\"decay\\":\\"all\\"' s.safetensors \
    && ok "static labels: AdamW, weight decay on every parameter (metadata)" || fail "static labels' decay: $(grep -ao 'optimizer[^}]*' s.safetensors)"
"$E" -m "convnet1:width=8" -q --epochs 2 --batch 8 --decay weights --save s2.safetensors s.tsr >/dev/null \
    && grep -aq 'decay\\":\\"weights' s2.safetensors && ! cmp -s s.safetensors s2.safetensors \
    && ok "--decay weights: other weights" || fail "--decay weights"
expect_usage evaltrain -m convnet1 --decay some s.tsr
# static soft labels on some records only: refused either way round (--hard ignores them all)
mk_npy h 6 1 8 8 2 && rm h/soft.npy && printf 'm%d\n' 0 1 2 3 4 5 >h/keys.txt && "$BIN/tsimport" h >h.tsr \
    && "$BIN/tscat" s.tsr h.tsr >sh.tsr && "$BIN/tscat" h.tsr s.tsr >hs.tsr || fail "streams with and without soft"
for t in "sh.tsr:record 24 (m0): field 'soft' missing" "hs.tsr:record 6 (k0000): field 'soft' present, the first record has none"; do
    rc=0; "$E" -m "convnet1:width=8" -q --epochs 1 --batch 8 ${t%%:*} >out.txt 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.txt ] && grep -q "${t#*:}" err.txt && ok "soft on some records: $(cat err.txt)" \
        || fail "${t%%:*}: exit $rc: $(cat err.txt)"
done
"$E" -m "convnet1:width=8" -q --epochs 1 --batch 8 --hard hs.tsr >/dev/null && ok "--hard ignores them" || fail "--hard"
# an option the label source does not use is warned about, not silently dropped
"$E" "${small[@]}" --epochs 1 -T 4 tr.tsr >/dev/null 2>err.txt \
    && grep -q "^evaltrain: -T is the KL temperature of soft labels; tr.tsr has none" err.txt \
    && ok "-T on hard labels: warned" || fail "-T on hard labels: $(cat err.txt)"
"$E" -m "convnet1:width=8" -q --epochs 1 --batch 8 --hard -T 4 s.tsr >/dev/null 2>err.txt \
    && grep -qx "evaltrain: -T is the KL temperature of soft labels; --hard trains on hard labels and ignores it" err.txt \
    && ok "-T with --hard (the stream has soft labels): warned as such" || fail "-T with --hard: $(cat err.txt)"
"$E" -m "convnet1:width=8" -q --epochs 1 --batch 8 --label-smoothing 0.1 s.tsr >/dev/null 2>err.txt \
    && grep -q "^evaltrain: --label-smoothing applies to hard labels" err.txt \
    && ok "--label-smoothing on soft labels: warned" || fail "--label-smoothing on soft labels: $(cat err.txt)"
"$E" "${small[@]}" --epochs 1 --label-smoothing 0.1 tr.tsr >/dev/null 2>err.txt && [ ! -s err.txt ] \
    && ok "--label-smoothing on hard labels: no warning" || fail "--label-smoothing on hard labels: $(cat err.txt)"
# one image size per training stream: the error names the record and both sizes
"$BIN/tscat" --head 3 te.tsr >te3.tsr && "$BIN/resample" -q --size 30 te3.tsr >te30.tsr \
    && "$BIN/tscat" tr.tsr te30.tsr >mixed.tsr || fail "making a stream of two sizes"
"$E" "${small[@]}" --epochs 1 mixed.tsr >/dev/null 2>err.txt && fail "mixed sizes accepted"
grep -q "^evaltrain: mixed.tsr: record 192 (test_000000): image F32\[1,30,30\] differs from the first record's \[1,28,28\].*--res R" \
    err.txt && ok "mixed sizes: $(cat err.txt)" || fail "mixed sizes: $(cat err.txt)"
# an address-space limit (ulimit -v, under 4 GiB) is said once: OpenBLAS would hang where it cannot map
if ( ulimit -v 3000000; exec "$E" --version ) >/dev/null 2>&1; then
    rc=0; ( ulimit -v 3000000; exec "$E" "${small[@]}" --epochs 1 tr.tsr ) >/dev/null 2>err.txt || rc=$?
    [ $rc = 0 ] && [ "$(grep -c 'ulimit -v' err.txt)" = 1 ] && grep -q "^evaltrain: address space limited to 2929 MiB \
(ulimit -v): OpenBLAS hangs rather than fails" err.txt && ok "ulimit -v: said once" || fail "ulimit -v: exit $rc: $(cat err.txt)"
else echo "note: evaltrain cannot start under ulimit -v 3000000 here (a sanitizer build?): the row is not checked"; fi
# the record's image is described as stored (U8), not as the F32 it is read as
"$BIN/tscat" te30.tsr tr.tsr >mixed8.tsr || fail "making a stream of two sizes, U8 second"
"$E" "${small[@]}" --epochs 1 mixed8.tsr >/dev/null 2>err.txt && fail "mixed sizes (U8 second) accepted"
grep -q "^evaltrain: mixed8.tsr: record 3 (train_000000): image U8\[1,28,28\] differs from the first record's \[1,30,30\]" \
    err.txt && ok "mixed sizes, U8 named as U8: $(cat err.txt)" || fail "mixed sizes, U8: $(cat err.txt)"
# --res R: images of several sizes train at R x R (crops of each at its size) and evaluate there
"$E" "${small[@]}" --epochs 1 --res 24 --val mixed.tsr --save r.safetensors mixed.tsr >r.json \
    && grep -q '"epoch":1,' r.json && grep -aq '"input_size":"24"' r.safetensors && grep -aq 'res\\":24' r.safetensors \
    && ok "--res 24 on two sizes: $(tail -n 1 r.json)" || fail "--res on two sizes: $(cat r.json)"
"$E" --eval-only --res 24 -w r.safetensors mixed.tsr >e.json && grep -q '"records":195,' e.json \
    && ok "--eval-only --res 24 on two sizes: $(cat e.json)" || fail "--eval-only --res: $(cat e.json)"
# a model evaluates at its input size: images of other sizes through Resize + CenterCrop
"$E" --eval-only -w r.safetensors mixed.tsr >e2.json 2>e2.err && cmp -s e.json e2.json \
    && ok "--eval-only of a 24-px model on two sizes, without --res: the same" || fail "eval at the input size: $(cat e2.json)"
# ... said, since relabel, patchsel and recover refuse such a pair: the count, the first one's size
grep -qx "evaltrain: mixed.tsr: [0-9]* image(s) of [0-9]*x[0-9]* resized to 27 (shorter side) and centre-cropped to 24: \
r.safetensors takes 24 px" e2.err && ok "resized for the model: $(cat e2.err)" || fail "resize note: $(cat e2.err)"
"$E" "${small[@]}" --epochs 1 --res 24 --checkpoint rk.safetensors --stop-after-epoch 1 --epochs 2 mixed.tsr >/dev/null \
    && "$E" "${small[@]}" --epochs 2 --res 24 --checkpoint rk.safetensors --save rk2.safetensors mixed.tsr >/dev/null \
    && "$E" "${small[@]}" --epochs 2 --res 24 --save r2.safetensors mixed.tsr >/dev/null && cmp -s rk2.safetensors r2.safetensors \
    && ok "--res: a run resumed from its checkpoint ends at the uninterrupted run's weights" || fail "--res resume"
expect_usage evaltrain "${small[@]}" --res 24 --labels tr.tsr mixed.tsr
"$E" "${small[@]}" --teacher w.safetensors --epochs 1 --batch 32 --val te.tsr --save t.safetensors tr.tsr >t.json \
    && grep -aq 'teacher' t.safetensors && ok "online teacher: $(tail -n 1 t.json)" || fail "online teacher"
grep -aq 'decay\\":\\"weights' t.safetensors && ok "online teacher: AdamW decays conv/linear weights only" \
    || fail "online teacher's decay"
# RDED's augmentation: ShufflePatches(f) then RandomResizedCrop(scale 1/f..1), so f = 1 (the default)
# crops nothing (it was 0.08..1); the checkpoint's fingerprint holds the scale
for f in 1 2; do
    "$E" "${small[@]}" --teacher w.safetensors --epochs 1 --shuffle-patches $f --checkpoint rr$f.safetensors tr.tsr >/dev/null
done
"$PYTHON" - <<'PY' && ok "--teacher: RandomResizedCrop scale 1..1 with f = 1, 0.5..1 with f = 2" || fail "RDED's crop scale"
import json, struct
for f, lo in ((1, 1.0), (2, 0.5)):
    b = open("rr%d.safetensors" % f, "rb").read()
    aug = json.loads(json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]["fingerprint"])["aug"]
    assert (aug["rrc_lo"], aug["rrc_hi"], aug["shuffle_patches"]) == (lo, 1.0, f), aug
PY
# RDED's student defaults (argument.py, validation/main.py): batch 50 at 19 images per class (10
# classes), no micro-batches, BN momentum 0.19 (two train-mode forwards per step), lr by
# architecture (mobilenet_v2 2.5e-3); each overridden by its option
"$E" -m mobilenet_v2m -q --teacher w.safetensors --epochs 0 --save mb.safetensors tr.tsr >/dev/null
"$E" "${small[@]}" --teacher w.safetensors --epochs 0 --batch 20 --micro 2 --bn-momentum 0.1 --lr 0.01 \
    --save ov.safetensors tr.tsr >/dev/null
"$PYTHON" - <<'PY' && ok "--teacher: RDED's batch 50, micro 1, BN momentum 0.19, lr by architecture; options override" \
    || fail "RDED's student defaults"
import json, struct
def meta(path, key):
    b = open(path, "rb").read()
    return json.loads(json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"][key])
fp = meta("rr1.safetensors", "fingerprint")
assert (fp["batch"], fp["micro"], fp["lr"]) == (50, 1, 0.001) and abs(fp["bn_momentum"] - 0.19) < 1e-6, fp
t = meta("mb.safetensors", "training")
assert (t["lr"], t["batch"], t["micro"], t["bn_momentum"]) == (0.0025, 50, 1, 0.19), t
t = meta("ov.safetensors", "training")
assert (t["lr"], t["batch"], t["micro"]) == (0.01, 20, 2) and "bn_momentum" not in t, t
PY
expect_usage evaltrain --eval-only -w w.safetensors --bn-momentum 0.2 te.tsr
# INFER's val_dyn.py: several teachers (their mean logits), --crop-pad turning RandomResizedCrop off
"$E" "${small[@]}" --teacher w.safetensors --teacher w0.safetensors --mixup 0.8 --crop-pad 4 --epochs 1 \
    --checkpoint dyn.safetensors tr.tsr >/dev/null
"$PYTHON" - <<'PY' && ok "--teacher twice with --mixup --crop-pad: RandomCrop, no RandomResizedCrop, MixUp" \
    || fail "two teachers with --crop-pad"
import json, struct
def meta(path):
    b = open(path, "rb").read()
    return json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]
m = meta("dyn.safetensors")
aug = json.loads(m["fingerprint"])["aug"]
assert (aug["crop_pad"], aug["rrc_hi"], aug["mixup"], aug["cutmix"]) == (4, 0.0, 0.8, 0.0), aug
# the checkpoint's teacher digest covers both teachers (rr1's is w.safetensors' alone)
assert json.loads(m["inputs"])["teacher"] != json.loads(meta("rr1.safetensors")["inputs"])["teacher"]
PY
# RDED validates with its synthesis factor: --teacher's ShufflePatches defaults to the factor patchsel
# recorded in the stream's history (2 here), --shuffle-patches overrides
"$BIN/patchsel" -q -w w.safetensors --ipc 2 -n 12 -k 2 -f 2 tr.tsr >p2.tsr
"$E" "${small[@]}" --teacher w.safetensors --epochs 1 --checkpoint f2.safetensors p2.tsr >/dev/null
"$E" "${small[@]}" --teacher w.safetensors --epochs 1 --shuffle-patches 1 --checkpoint f1.safetensors p2.tsr >/dev/null
"$PYTHON" - <<'PY' && ok "--teacher: ShufflePatches from patchsel's recorded factor (2), --shuffle-patches 1 overrides" \
    || fail "the factor from the stream's history"
import json, struct
for path, f, lo in (("f2.safetensors", 2, 0.5), ("f1.safetensors", 1, 1.0)):
    b = open(path, "rb").read()
    aug = json.loads(json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])["__metadata__"]["fingerprint"])["aug"]
    assert (aug["shuffle_patches"], aug["rrc_lo"]) == (f, lo), (path, aug)
PY

# values that are not finite: pixels (evaltrain names the record and the place; patchsel, recover and
# relabel refuse them too), a model's NaN logits (never a hit; loss null in --eval-only's JSON), an
# online teacher's NaN logits; relabel: a logit beyond F16 (its stream's storage), and --static
# checks labels as the FKD path does
# (tsimport refuses them, so they are written into a shard's .npy members here)
"$BIN/tscat" --shards 'fin-%d.tar' tr.tsr && "$PYTHON" - <<'PY' || fail "NaN images"
import io, tarfile, numpy as np
src = tarfile.open("fin-0.tar")
for out, hit in (("nanimg.tar", lambda k: k == "train_000003"), ("nanall.tar", lambda k: True)):
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as t:
        for m in src:
            data = src.extractfile(m).read()
            key = m.name.split(".")[0]
            if m.name.endswith(".image.npy") and hit(key):
                x = np.load(io.BytesIO(data)).astype(np.float32) / 255
                if out == "nanimg.tar": x[0, 2, 5] = np.nan
                else: x[:] = np.nan
                b = io.BytesIO(); np.save(b, x); data = b.getvalue(); m.size = len(data)
            t.addfile(m, io.BytesIO(data))
PY
for c in "evaltrain -m convnet3:width=8 --epochs 1 nanimg.tar|nanimg.tar: record 3 (train_000003): image holds NaN at \[0,2,5\]" \
         "patchsel -w w.safetensors --ipc 1 --candidates 2 --crops 1 nanall.tar|nanall.tar: record [0-9]* (train_[0-9]*): image holds NaN at \[0,0,0\]" \
         "recover -w w.safetensors --iters 2 --arc 0 nanall.tar|nanall.tar: record 0 (train_000000): image holds NaN at \[0,0,0\]" \
         "relabel -w w.safetensors --epochs 1 nanall.tar|nanall.tar: record 0 (train_000000): image holds NaN at \[0,0,0\]" \
         "relabel --static -w w.safetensors nanall.tar|nanall.tar: record 0 (train_000000): image holds NaN at \[0,0,0\]"; do
    cmd=${c%%|*}; rc=0; "$BIN"/$cmd >out.tsr 2>err.txt || rc=$?
    if [ $rc = 1 ] && grep -q "^${cmd%% *}: ${c#*|}$" err.txt; then ok "NaN pixels, ${cmd%% *}: $(cat err.txt)"
    else fail "NaN pixels, $cmd: exit $rc $(cat err.txt)"; fi
done
"$PYTHON" - <<'PY' || fail "weights with a NaN or a huge bias"
import json, struct, numpy as np
b = open("w.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
bias = [k for k in h if k != "__metadata__" and k.endswith(".bias")]
last = max(bias, key=lambda k: int(k.split(".")[0]))   # the classifier's
for name, v in (("wnan", np.nan), ("wbig", 1e6)):
    d = bytearray(b[8 + n:])
    s, e = h[last]["data_offsets"]
    d[s:e] = np.full((e - s) // 4, v, np.float32).tobytes()
    open(name + ".safetensors", "wb").write(b[:8 + n] + bytes(d))
PY
"$E" --eval-only -w wnan.safetensors te.tsr >e.json && grep -q '^{"records":128,"top1":0,"top5":0,"loss":null}$' e.json \
    && ok "NaN logits: no hits, loss null: $(cat e.json)" || fail "NaN logits: $(cat e.json)"
rc=0; "$E" "${small[@]}" --teacher wnan.safetensors --epochs 1 tr.tsr >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^evaltrain: epoch 1 step 1: the teacher's logits hold a non-finite value (image 0 of the batch)$" err.txt \
    && ok "online teacher's NaN logits: $(cat err.txt)" || fail "--teacher NaN: exit $rc $(cat err.txt)"
rc=0; "$BIN/relabel" -q -w wbig.safetensors --epochs 1 tr.tsr >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^relabel: tr.tsr: record e000000_b000000: teacher logit [0-9.e+]* (image 0 of the batch) is beyond the range of F16" err.txt \
    && ok "relabel: a logit beyond F16: $(cat err.txt)" || fail "relabel F16 range: exit $rc $(cat err.txt)"
"$BIN/relabel" -q --static -w wbig.safetensors tr.tsr >/dev/null && ok "relabel --static stores F32: 1e6 is fine" \
    || fail "relabel --static wbig"
"$BIN/tscat" --head 4 --shards 'lab-%d.tar' tr.tsr && "$PYTHON" - <<'PY' || fail "a shard with label 10"
import io, tarfile
src = tarfile.open("lab-0.tar")
with tarfile.open("lab10.tar", "w", format=tarfile.USTAR_FORMAT) as t:
    for m in src:
        data = src.extractfile(m).read()
        if m.name == "train_000002.cls":
            data = b"10"
            m.size = 2
        t.addfile(m, io.BytesIO(data))
PY
rc=0; "$BIN/relabel" -q --static -w w.safetensors lab10.tar >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^relabel: lab10.tar: record 2 (train_000002): label 10 outside the 10 classes$" err.txt \
    && ok "relabel --static: a label outside the classes: $(cat err.txt)" || fail "relabel --static label: exit $rc $(cat err.txt)"
# options that would be ignored are usage errors: --eval-only's training options, stdin twice
for o in "--save x.safetensors" "--checkpoint x.safetensors" "--val te.tsr" "--labels l0.tsr" "--epochs 2"; do
    expect_usage evaltrain --eval-only -w w.safetensors $o te.tsr
done
expect_usage evaltrain "${small[@]}" --val -
expect_usage evaltrain "${small[@]}" --labels - tr.tsr --val -

# CUDA: exit 3 where the backend or device is missing
rc=0; "$E" -d cuda --eval-only -w w.safetensors te.tsr >/dev/null 2>err.txt || rc=$?
if [ $rc = 3 ]; then ok "-d cuda without a device: exit 3 ($(cat err.txt))"
elif [ $rc = 0 ]; then ok "-d cuda ran"
else fail "-d cuda: exit $rc"; fi
finish

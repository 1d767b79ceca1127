# relabel: FKD replay stream (record count, keys, fields), evaltrain --labels consuming it, -o equal
# to stdout, identical bytes for -j 1 and -j 2, two teachers and --bn eval changing the logits,
# --topk fields, --static through tsexport (soft.npy [N,10]), the -v storage line; usage errors,
# truncated input, class-list mismatch, /dev/full, a terminal, -d cuda. PyTorch parity in
# parity/relabel.sh.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
R="$BIN/relabel"
fm_small 40
"$BIN/evaltrain" -m "convnet3:width=16" -q -j 2 --epochs 0 --save t.safetensors fm.tsr >/dev/null
"$BIN/evaltrain" -m "convnet2:width=8" -q -j 2 -s 1 --epochs 0 --save t2.safetensors fm.tsr >/dev/null

# happy path: 2 epochs x ceil(40/16) = 6 records e000000_b000000.. with the replay fields
"$R" -q -j 2 -w t.safetensors --epochs 2 --batch 16 --seed 0 fm.tsr >l.tsr
"$BIN/tsinfo" l.tsr >info.txt
grep -q "^records: 6" info.txt && grep -q "logits (6 records): F16\[" info.txt && grep -q "crops (6 records): F32\[" info.txt \
    && ok "6 replay records" || fail "replay stream: $(cat info.txt)"
"$BIN/tsinfo" l.tsr | grep -q '^relabel (soft labels for evaltrain --labels): {"images":40,"epochs":2,"batch":16,"height":28,"width":28,"images_digest":"[0-9a-f]\{16\}"}$' \
    && "$BIN/tsinfo" --json l.tsr | "$PYTHON" -c 'import json, sys; r = json.load(sys.stdin)["relabel"]; assert r["epochs"] == 2 and r["images"] == 40, r' \
    && ok "tsinfo shows the relabel key" || fail "tsinfo relabel key: $("$BIN/tsinfo" l.tsr | grep relabel)"
"$BIN/tscat" -q -k e000001_b000002 l.tsr | "$BIN/tsinfo" - | grep -q "^records: 1" && ok "key e000001_b000002" || fail "keys"
"$BIN/evaltrain" -m "convnet3:width=16" -q -j 2 --labels l.tsr --epochs 2 --val fm.tsr --save e.safetensors fm.tsr >e.json \
    && grep -q '"final_top1":' e.json && ok "evaltrain --labels: $(tail -n 1 e.json)" || fail "evaltrain --labels"
# the replay's batches, order and augmentation are relabel's: evaltrain's own options for them are
# named in a warning and change nothing (the same weights, and the metadata records relabel's batch
# of 16, not --batch)
"$BIN/evaltrain" -m "convnet3:width=16" -q -j 2 --labels l.tsr --epochs 2 --val fm.tsr --batch 5 --no-shuffle --cutmix 0 \
    --mixup 0.5 --crop-pad 2 --no-flip --save e2.safetensors fm.tsr >e2.json 2>err.txt || fail "--labels with ignored options"
grep -qx "evaltrain: l.tsr replays relabel's batches, order and augmentation as stored: --batch, --no-shuffle, --crop-pad, --no-flip, --cutmix, --mixup ignored" err.txt \
    && cmp -s e.safetensors e2.safetensors && grep -aq '\\"batch\\":16,' e.safetensors && ok "--labels: $(cat err.txt)" \
    || fail "--labels ignored options: $(cat err.txt)"
# labels replayed against the wrong stream, for more epochs than they hold, or cut short
"$BIN/tscat" -q --head 20 fm.tsr >f20.tsr
for t in "f20.tsr --epochs 2:made for 40 images of 28x28, the training stream has 20 of 28x28" \
         "fm.tsr --epochs 3:holds 2 epochs of labels, 3 asked for"; do
    rc=0; "$BIN/evaltrain" -m "convnet3:width=16" -q --labels l.tsr ${t%%:*} >out.txt 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.txt ] && grep -q "l.tsr: ${t#*:}" err.txt && ok "--labels l.tsr ${t%%:*}: $(cat err.txt)" \
        || fail "--labels ${t%%:*}: exit $rc: $(cat err.txt)"
done
# labels replayed on other images of the same count, size and classes (resized to 27 and back):
# refused by the digest of the images relabel read; the same images stored as F32 are the same
"$BIN/resample" -q --size 27 fm.tsr | "$BIN/resample" -q --size 28 >other27.tsr
rc=0; "$BIN/evaltrain" -m "convnet3:width=16" -q --labels l.tsr --epochs 2 other27.tsr >out.txt 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -s out.txt ] && grep -q "l.tsr: made for other images (digest [0-9a-f]\{16\}; these 40 images' is" err.txt \
    && ok "labels of other images: $(cat err.txt)" || fail "other images: exit $rc: $(cat err.txt)"
"$BIN/resample" -q --size 28 fm.tsr >fm32.tsr
"$BIN/evaltrain" -m "convnet3:width=16" -q -j 2 --labels l.tsr --epochs 2 --val fm.tsr --save e3.safetensors fm32.tsr >/dev/null \
    && "$PYTHON" -c "
import struct, sys
def tensors(p):
    b = open(p, 'rb').read()
    return b[8 + struct.unpack('<Q', b[:8])[0]:]
sys.exit(tensors('e.safetensors') != tensors('e3.safetensors'))" && ok "the same images as F32: accepted, the same weights" \
    || fail "F32 copy refused, or trained otherwise"
# a label stream from before the digest (its header without images_digest, as a shard edited with
# tarfile): replayed unchecked, as before; a malformed digest is refused
"$BIN/tscat" -q --shards 'l-%02d.tar' l.tsr
"$BIN/tscmp" --exact l.tsr l-00.tar && ok "the label stream through a shard: the same records (fields crops, ...)" \
    || fail "label stream through a shard"
"$PYTHON" - <<'PY' || fail "editing the shard's header"
import io, json, tarfile
src = tarfile.open("l-00.tar")
for name, digest in (("old.tar", None), ("bad.tar", "xyz"), ("neg.tar", "-000000000000001")):
    with tarfile.open(name, "w", format=tarfile.USTAR_FORMAT) as t:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name == "__stream__":
                h = json.loads(data)
                assert len(h["relabel"]["images_digest"]) == 16, h["relabel"]
                if digest is None: del h["relabel"]["images_digest"]
                else: h["relabel"]["images_digest"] = digest
                data = json.dumps(h).encode()
            i = tarfile.TarInfo(m.name); i.size = len(data); i.mode = m.mode
            t.addfile(i, io.BytesIO(data))
PY
"$BIN/evaltrain" -m "convnet3:width=16" -q --labels old.tar --epochs 2 other27.tsr >/dev/null 2>err.txt \
    && ok "a label stream without a digest: not checked" || fail "old label stream refused: $(cat err.txt)"
for b in bad neg; do
    rc=0; "$BIN/evaltrain" -m "convnet3:width=16" -q --labels $b.tar --epochs 2 fm.tsr >/dev/null 2>err.txt || rc=$?
    [ $rc = 1 ] && grep -q "$b.tar: header relabel.images_digest is not 16 hex digits" err.txt \
        && ok "a malformed digest: $(cat err.txt)" || fail "bad digest $b: exit $rc: $(cat err.txt)"
done
head -c $(($(wc -c <l.tsr) * 2 / 3)) l.tsr >lcut.tsr
rc=0; "$BIN/evaltrain" -m "convnet3:width=16" -q --labels lcut.tsr --epochs 2 fm.tsr >out.txt 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "lcut.tsr" err.txt && grep -q "truncated" err.txt && ok "a cut label stream: $(cat err.txt)" \
    || fail "cut labels: exit $rc: $(cat err.txt)"
# a stream cut between records, an image drawn twice in one epoch, a batch of another size: each named
"$BIN/tscat" -q --head 3 l.tsr >l3.tsr
rc=0; "$BIN/evaltrain" -m "convnet3:width=16" -q --labels l3.tsr --epochs 2 fm.tsr >out.txt 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -s out.txt ] \
    && grep -qx "evaltrain: l3.tsr: ends before record e000001_b000000 (batch 1 of 3 of epoch 2 of 2)" err.txt \
    && ok "labels for one epoch of two: $(cat err.txt)" || fail "labels cut at an epoch: exit $rc: $(cat err.txt)"
"$PYTHON" - <<'PY' || fail "editing the label shard's records"
import io, tarfile
import numpy as np
src = tarfile.open("l-00.tar")
data = {m.name: src.extractfile(m).read() for m in src.getmembers()}
def load(name): return np.load(io.BytesIO(data[name]))
def save(d, name, a):
    b = io.BytesIO(); np.save(b, a); d[name] = b.getvalue()
twice, short = dict(data), dict(data)
i1 = load("e000000_b000001.index.npy"); i1[0] = load("e000000_b000000.index.npy")[3]
save(twice, "e000000_b000001.index.npy", i1)
for f in ("index", "crops", "flips", "logits"):
    save(short, "e000000_b000000.%s.npy" % f, load("e000000_b000000.%s.npy" % f)[:15])
save(short, "e000000_b000000.perm.npy", np.arange(15, dtype=np.int64))
for name, d in (("twice.tar", twice), ("short.tar", short)):
    with tarfile.open(name, "w", format=tarfile.USTAR_FORMAT) as t:
        for m in src.getmembers():
            i = tarfile.TarInfo(m.name); i.size = len(d[m.name]); i.mode = m.mode
            t.addfile(i, io.BytesIO(d[m.name]))
PY
for t in "twice:record e000000_b000001: image [0-9]* a second time in epoch 1 (each image once per epoch)" \
         "short:record e000000_b000000: 15 images, want 16 (each image once per epoch, in batches of 16)"; do
    rc=0; "$BIN/evaltrain" -m "convnet3:width=16" -q --labels ${t%%:*}.tar --epochs 2 fm.tsr >out.txt 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.txt ] && grep -qx "evaltrain: ${t%%:*}.tar: ${t#*:}" err.txt \
        && ok "a replay batch that breaks once per epoch (${t%%:*}): $(cat err.txt)" \
        || fail "${t%%:*}: exit $rc: $(cat err.txt)"
done
"$R" -q -j 1 -w t.safetensors --epochs 2 --batch 16 -o o.tsr fm.tsr
"$BIN/tscmp" -q l.tsr o.tsr && ok "-o FILE = stdout, -j 1 = -j 2 (records bitwise)" || fail "-o / -j differ"
"$R" -q -w t.safetensors --epochs 2 --batch 16 --seed 1 fm.tsr | "$BIN/tscmp" -q - l.tsr && fail "--seed ignored" || ok "--seed changes the draws"
"$R" -q -w t.safetensors -w t2.safetensors --epochs 1 fm.tsr >two.tsr && "$BIN/tsinfo" two.tsr | grep -q "^records: 4" \
    && ok "two teachers, default batch 10 for 10 classes" || fail "two teachers"
"$R" -q -w t.safetensors --bn eval --epochs 2 --batch 16 fm.tsr | "$BIN/tscmp" -q - l.tsr && fail "--bn eval = --bn batch" \
    || ok "--bn eval differs"
"$R" -q -w t.safetensors --topk 3 --epochs 1 fm.tsr | "$BIN/tsinfo" - >top.txt
grep -q "topv (4 records): F16\[10,3\]" top.txt && grep -q "topi (4 records): I16\[10,3\]" top.txt \
    && grep -q "topr (4 records): F16\[10\]" top.txt && ! grep -q logits top.txt && ok "--topk fields" || fail "topk: $(cat top.txt)"
"$R" -v -q -w t.safetensors --epochs 1 -o v.tsr fm.tsr 2>v.txt
grep -q "55.0 bytes per image per epoch" v.txt && ok "-v: $(cat v.txt)" || fail "-v: $(cat v.txt)"

# --static: the input records plus soft F32 [10]
"$R" --static -w t.safetensors fm.tsr | "$BIN/tsexport" --npy out -
"$PYTHON" -c 'import numpy as np, sys; s = np.load("out/soft.npy"); sys.exit(not (s.shape == (40, 10) and s.dtype == np.float32))' \
    && ok "--static | tsexport: soft.npy [40,10]" || fail "static soft.npy"

# usage errors
expect_usage relabel fm.tsr
expect_usage relabel -w t.safetensors --bn train fm.tsr
expect_usage relabel -w t.safetensors --static --epochs 3 fm.tsr
expect_usage relabel -w t.safetensors --static -v fm.tsr
expect_usage relabel -w t.safetensors --static --bn batch fm.tsr
expect_usage relabel -w t.safetensors --batch 0 fm.tsr
expect_usage relabel -w t.safetensors --no-such-option fm.tsr
expect_usage relabel -w t.safetensors --precision fp16 fm.tsr
expect_usage relabel -w t.safetensors -d cuda --precision fp64 fm.tsr
check_auto_precision relabel -q -j 2 -w t.safetensors --epochs 1 --batch 16 f20.tsr
check_tty relabel -w t.safetensors fm.tsr

# bad data: truncated input, classes that differ from the teacher's, a missing teacher
check_truncated relabel -q -w t.safetensors --epochs 1
for i in 0 1 2 3 4 5 6 7 8 9; do echo "other$i"; done >cls.txt
"$BIN/tsimport" -q --format idx --limit 20 --classes-file cls.txt "$fmnist" >other.tsr
"$R" -q -w t.safetensors --epochs 1 other.tsr >out.txt 2>err.txt && fail "class mismatch accepted"
[ ! -s out.txt ] && grep -q "t.safetensors" err.txt && grep -q "other.tsr" err.txt && grep -q "other0" err.txt \
    && ok "class mismatch: $(cat err.txt)" || fail "class mismatch message: $(cat err.txt)"
expect_exit 1 "missing teacher" -- "$R" -q -w nosuch.safetensors fm.tsr
check_full relabel -q -w t.safetensors --epochs 1 fm.tsr
check_full relabel --static -w t.safetensors fm.tsr

rc=0; "$R" -q -d cuda -w t.safetensors --epochs 1 fm.tsr >/dev/null 2>err.txt || rc=$?
if [ $rc = 3 ]; then ok "-d cuda without a device: exit 3 ($(cat err.txt))"
elif [ $rc = 0 ]; then ok "-d cuda ran"
else fail "-d cuda: exit $rc"; fi
# a teacher whose logits are not finite: exit 1 naming the input and its record (static) or its
# epoch and batch (FKD), and no output
nan_weights t.safetensors tnan.safetensors
first=$("$BIN/tsinfo" --list fm.tsr | awk 'NR == 1 {print $2}')
for m in "--static:fm.tsr: record 0 ($first): the teacher's logits are not finite (its weights?)" \
         "--epochs=1:fm.tsr: record e000000_b000000: teacher logits hold a non-finite value (image 0 of the batch)"; do
    rc=0; "$R" -q -w tnan.safetensors "${m%%:*}" -o nan.tsr fm.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && grep -qxF "relabel: ${m#*:}" err.txt && [ -z "$(ls nan.tsr* 2>/dev/null)" ] \
        && ok "${m%%:*}, logits not finite: $(cat err.txt)" || fail "${m%%:*} NaN teacher: exit $rc, $(cat err.txt)"
done
finish

# patchsel: RDED selection on the first 600 Fashion-MNIST records with a random-init teacher
# (tests/parity/recover_tool): counts, keys, rank order of the scores, stitching with --factor 2,
# --ipc-list (nested at f = 1), --method random, images of several sizes (--res), determinism and
# stdin, and the error paths. The stored pixels are checked against torchvision's
# resized_crop(..., antialias=True) of the recorded boxes (RDED's RandomResizedCrop on tensors):
# on the mixed sizes and on --factor 2 runs over 64-px and 96-px images, whose crops are mostly
# shrunk (where plain bilinear differs by far more than the tolerance).
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 600
tool=$TESTS/../$BUILD/tests/parity/recover_tool
"$tool" teacher t.safetensors convnet3:width=16 fm.tsr 1
ps() { "$BIN/patchsel" -q -w t.safetensors --candidates 12 --crops 3 "$@"; }

ps --ipc 2 fm.tsr >a.tsr
"$BIN/tsinfo" --json a.tsr >a.json
"$PYTHON" - <<'PY' && ok "20 records c%04d_i%04d, F32 [1,28,28] in [0,1], ranked scores" || fail "happy path"
import json, struct
j = json.load(open("a.json"))
assert j["records"] == 20 and j["class_counts"] == [2] * 10, j
assert j["fields"]["image"]["shapes"] == [[1, 28, 28]] and j["fields"]["image"]["dtypes"] == ["F32"], j["fields"]
assert 0 <= j["fields"]["image"]["min"] and j["fields"]["image"]["max"] <= 1
assert j["history"][-1]["prog"] == "patchsel" and j["history"][-1]["params"]["candidates"] == 12
PY
"$BIN/tsinfo" --list a.tsr | awk '{print $2}' >keys.txt
[ "$(head -n 3 keys.txt | tr '\n' ' ')" = "c0000_i0000 c0000_i0001 c0001_i0000 " ] && ok "keys class-major" || fail "keys: $(head -n 3 keys.txt)"
# metadata (JSON text in the pipe container): each record names its source record (of its class),
# a square box and the score; scores fall with the index within a class
"$BIN/tsinfo" --list fm.tsr | awk '{print $2, $3}' >src.txt
"$PYTHON" - a.tsr <<'PY' && ok "meta: src, box, score; rank order" || fail "meta / rank order"
import json, re, sys
metas = [json.loads(m) for m in re.findall(rb'\{"cells":\[.*?\]\}', open(sys.argv[1], "rb").read())]
label = dict(l.split() for l in open("src.txt"))
assert len(metas) == 20, len(metas)
for c in range(10):
    s0, s1 = metas[2 * c]["cells"][0], metas[2 * c + 1]["cells"][0]
    assert s0["rank"] == 0 and s1["rank"] == 1 and s0["score"] >= s1["score"], (s0, s1)
    assert label[s0["src"]] == str(c) and label[s1["src"]] == str(c), (c, s0, s1)
    assert s0["box"][2] == s0["box"][3] and s0["box"][0] + s0["box"][2] <= 28
PY
ps --ipc 2 fm.tsr | "$BIN/tscmp" --exact - a.tsr >/dev/null && ok "deterministic" || fail "two runs differ"
ps --ipc 2 <fm.tsr | "$BIN/tscmp" --exact - a.tsr >/dev/null && ok "stdin (spooled) == file" || fail "stdin differs"
ps --ipc 2 fm.tsr fm.tsr >ff.tsr
ps --ipc 2 fm.tsr - <fm.tsr | "$BIN/tscmp" --exact - ff.tsr >/dev/null && ok "stdin among the inputs (spooled)" ||
    fail "stdin among the inputs differs"
# ... in TMPDIR, as the pipe operands' copies (it went to /tmp whatever TMPDIR said)
rc=0; TMPDIR=$PWD/no-such-dir ps --ipc 2 <fm.tsr >/dev/null 2>sp.err || rc=$?
[ $rc = 1 ] && grep -qx "patchsel: stdin: cannot create a temporary file to hold it in $PWD/no-such-dir: No such file or directory" sp.err \
    && ok "stdin's copy goes to TMPDIR: $(cat sp.err)" || fail "stdin spool ignores TMPDIR: exit $rc, $(cat sp.err)"
# a TMPDIR too full for the copy: the operand named first, then its copy (where a tmpfs can be mounted)
mkdir full
if mount -t tmpfs -o size=64k tmpfs full 2>/dev/null; then
    rc=0; TMPDIR=$PWD/full ps --ipc 2 <(cat fm.tsr) >/dev/null 2>sp.err || rc=$?
    umount full
    [ $rc = 1 ] && grep -q "^patchsel: /dev/fd/[0-9]* (its copy $PWD/full/ddpipe-spool\.[A-Za-z0-9]*): write error: No space left on device$" \
        sp.err && ok "a full TMPDIR: $(cat sp.err)" || fail "full TMPDIR: exit $rc, $(cat sp.err)"
else echo "note: no tmpfs can be mounted here: the full-TMPDIR row is not checked"; fi
# a named pipe and <(...) are read twice too (copied once to TMPDIR, removed at exit)
mkdir sptmp && mkfifo fm.fifo
cat fm.tsr >fm.fifo &
TMPDIR=$PWD/sptmp timeout 120 "$BIN/patchsel" -q -w t.safetensors --candidates 12 --crops 3 --ipc 2 fm.fifo |
    "$BIN/tscmp" --exact - a.tsr >/dev/null && [ -z "$(ls sptmp)" ] \
    && ok "a named pipe (spooled) == file, no copy left" || fail "named pipe: $(ls sptmp)"
TMPDIR=$PWD/sptmp ps --ipc 2 <(cat fm.tsr) <(cat fm.tsr) | "$BIN/tscmp" --exact - ff.tsr >/dev/null \
    && [ -z "$(ls sptmp)" ] && ok "two <(...) inputs (spooled) == the files" || fail "<(...) inputs: $(ls sptmp)"
rc=0; TMPDIR=$PWD/sptmp ps --ipc 2 <(head -c 5000 fm.tsr) >/dev/null 2>sp.err || rc=$?
[ $rc = 1 ] && grep -q "^patchsel: /dev/fd/[0-9]*: stream is truncated after record" sp.err && [ -z "$(ls sptmp)" ] \
    && ok "a truncated <(...): its name, no copy left: $(cat sp.err)" || fail "truncated <(...): exit $rc, $(cat sp.err)"
# a teacher whose scores are not finite: the record named is the one scored (the batch is scored
# when full, at a later record)
nan_weights t.safetensors tnan.safetensors
rc=0; "$BIN/patchsel" -q -w tnan.safetensors --candidates 12 --crops 3 --ipc 2 fm.tsr >/dev/null 2>sp.err || rc=$?
at=$(sed -n 's/^patchsel: fm.tsr: record \([0-9]*\) (.*$/\1/p' sp.err)
key=$([ -n "$at" ] && "$BIN/tsinfo" --list fm.tsr | awk -v at="$at" '$1 == at {print $2}')
[ $rc = 1 ] && [ -n "$key" ] && grep -qx "patchsel: fm.tsr: record $at ($key): the teacher's scores of its crops are not finite (its weights?)" \
    sp.err && ok "scores not finite, the record's index and key: $(cat sp.err)" || fail "scores not finite: exit $rc, $(cat sp.err)"
# --ipc-list's streams appear together or not at all: the largest over the file-size limit leaves
# none (the smaller ones were renamed into place first)
rc=0; (ulimit -f 120; trap '' XFSZ; exec "$BIN/patchsel" -q -w t.safetensors --candidates 12 --crops 3 \
    --ipc-list 1,2,6 -o 'lim-%d.tsr' fm.tsr) 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "lim-6.tsr: write error: File too large" err.txt && [ -z "$(ls lim-* 2>/dev/null)" ] \
    && ok "--ipc-list: a failing stream leaves none: $(cat err.txt)" || fail "--ipc-list partial: exit $rc, $(ls lim-* 2>/dev/null) $(cat err.txt)"
ps --ipc 2 -s 1 fm.tsr | "$BIN/tscmp" -q - a.tsr && fail "seed does not matter" || ok "another seed, other patches"
# --factor 2: 2x2 grids of 14-px crops, cell k of image m = rank k*ipc + m
ps --ipc 2 --factor 2 fm.tsr >f2.tsr
"$PYTHON" - f2.tsr <<'PY' && ok "--factor 2: cells ranked k*ipc+m" || fail "--factor 2 meta"
import json, re, sys
metas = [json.loads(m) for m in re.findall(rb'\{"cells":\[.*?\]\}', open(sys.argv[1], "rb").read())]
assert len(metas) == 20
for i, m in enumerate(metas):
    assert [c["rank"] for c in m["cells"]] == [k * 2 + i % 2 for k in range(4)], m
    assert all(c["box"][2] >= 1 for c in m["cells"])
PY
"$BIN/tsinfo" f2.tsr | grep -q "F32\[1,28,28\] x20" && ok "--factor 2 keeps full resolution" || fail "--factor 2 shape"
# --ipc-list: one stream per IPC; at f = 1 the smaller set is each class's prefix
ps --ipc-list 2,1 -o 'p%d.tsr' fm.tsr
"$BIN/tscmp" --exact p2.tsr a.tsr >/dev/null && ok "--ipc-list: ipc 2 stream == --ipc 2" || fail "--ipc-list 2"
[ "$("$BIN/tsinfo" --list p1.tsr | awk '{print $2}' | tr '\n' ' ')" = "$(grep _i0000 keys.txt | tr '\n' ' ')" ] \
    && ok "--ipc-list: ipc 1 keys" || fail "--ipc-list 1 keys"
"$BIN/tsexport" --npy p1 p1.tsr && "$BIN/tsexport" --npy p2 p2.tsr && "$PYTHON" -c '
import numpy as np
a, b = np.load("p1/image.npy"), np.load("p2/image.npy")
assert (a == b[0::2]).all()' && ok "--ipc-list: ipc 1 images are the ipc 2 prefixes" || fail "nested prefixes"
# --method random: whole real images, no teacher needed
"$BIN/patchsel" -q --method random --ipc 3 fm.tsr >r.tsr
"$BIN/tsinfo" r.tsr | grep -q "^records: 30" && ok "--method random" || fail "--method random"
for o in "--candidates 5" "--crops 3" "--batch 8" "--factor 2" "-w t.safetensors"; do
    expect_usage patchsel --method random --ipc 3 $o fm.tsr
done
# errors
printf 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n' >cls.txt
"$BIN/tsimport" -q --limit 50 --classes-file cls.txt "$fmnist" >other.tsr
"$tool" teacher to.safetensors convnet3:width=16 other.tsr 1
expect_exit 1 "teacher's class list differs" -- "$BIN/patchsel" -q -w to.safetensors --ipc 1 fm.tsr
"$BIN/patchsel" -q -w to.safetensors --ipc 1 fm.tsr 2>err.txt >/dev/null || true
grep -qx "patchsel: to.safetensors: class 0 is 'a'; the input: 'T-shirt/top'" err.txt \
    && ok "class lists differ: $(cat err.txt)" || fail "class list message: $(cat err.txt)"
check_truncated patchsel -q -w t.safetensors --ipc 1
check_full patchsel -q -w t.safetensors --ipc 1 --candidates 3 fm.tsr
# stdin is spooled and read twice: its errors still name stdin (not the spool's /dev/fd path)
for src in /dev/null cut.tsr; do
    rc=0; "$BIN/patchsel" -q -w t.safetensors --ipc 1 <"$src" >sp.out 2>sp.err || rc=$?
    want=truncated; [ "$src" = /dev/null ] && want="empty: no stream header"
    if [ $rc = 1 ] && [ ! -s sp.out ] && [ "$(wc -l <sp.err)" = 1 ] &&
        grep -q "^patchsel: stdin: .*$want" sp.err
    then ok "stdin from $src: exit 1, names stdin ($(cat sp.err))"
    else fail "stdin from $src: exit $rc, $(wc -c <sp.out) bytes out, $(cat sp.err)"; fi
done
check_tty patchsel -q -w t.safetensors --ipc 1 fm.tsr
expect_usage patchsel -q -w t.safetensors --ipc 4 --factor 2 --candidates 10 fm.tsr
# --factor 2 on a 1-px canvas: cells of 0 pixels (scored as empty images, exit 0, before)
expect_usage patchsel -q -w t.safetensors --ipc 1 --factor 2 --res 1 -o zero.tsr fm.tsr
[ -z "$(ls zero.tsr* 2>/dev/null)" ] || fail "--factor 2 --res 1 left $(ls zero.tsr*)"
# a class with fewer images than ipc*f^2: exit 1 before any scoring, nothing on stdout, the
# message names the input and the class
"$BIN/tscat" -e 12 fm.tsr >few.tsr
rc=0; "$BIN/patchsel" -q -w t.safetensors --ipc 2 --factor 2 few.tsr >few.out 2>few.err || rc=$?
if [ $rc = 1 ] && [ ! -s few.out ] && [ "$(wc -l <few.err)" = 1 ] \
    && grep -q "^patchsel: few.tsr: class [0-9] (.*) has [0-9] image(s): IPC 2 needs 8" few.err
then ok "too few images in a class: exit 1, no output ($(cat few.err))"
else fail "too few images in a class: exit $rc, $(wc -c <few.out) bytes out, $(cat few.err)"; fi
# images of several sizes (an ImageFolder import): each candidate is cropped at its own size and
# scored on a canvas of the teacher's input size (or --res); every output cell is its source's box
# resized by torchvision's resized_crop(antialias=True), as RDED's RandomResizedCrop
for k in 0 1 2; do "$BIN/tscat" -e 3:$k fm.tsr >part$k.tsr; done
"$BIN/resample" -q --size 40x34 part0.tsr >sz0.tsr
"$BIN/resample" -q --size 31x45 part2.tsr >sz2.tsr
"$BIN/tscat" sz0.tsr part1.tsr sz2.tsr >mixed.tsr
ps --ipc 2 mixed.tsr >mx.tsr && ps --ipc 2 --res 28 mixed.tsr >mx28.tsr || fail "patchsel on mixed sizes"
"$BIN/tscmp" --exact mx.tsr mx28.tsr && ok "mixed sizes: the canvas defaults to the teacher's 28 px" \
    || fail "mixed sizes: default canvas != --res 28"
mkdir -p mxsrc && for t in sz0 part1 sz2; do "$BIN/tsexport" --npy mxsrc/$t $t.tsr || fail "export $t"; done
"$BIN/tsexport" --npy mxsrc/out mx.tsr && "$BIN/tsinfo" --list mx.tsr >mxsrc/list.txt || fail "exporting the mixed run"
"$PYTHON" - <<'PY' && ok "mixed sizes: 20 cells, each its source's box (beyond 28 px too) resized" || fail "mixed cells"
import json, numpy as np, torch
from torchvision.transforms import functional as TF
src = {}
for t in ("sz0", "part1", "sz2"):
    keys = open(f"mxsrc/{t}/keys.txt").read().split()
    src.update(zip(keys, torch.from_numpy(np.load(f"mxsrc/{t}/image.npy"))))
out = np.load("mxsrc/out/image.npy")
assert out.shape == (20, 1, 28, 28), out.shape
big = 0
for i, line in enumerate(open("mxsrc/list.txt")):
    cell = json.loads(line.split("\t")[5])["cells"][0]
    img = src[cell["src"]]
    t, l, h, w = cell["box"]
    assert h == w and t >= 0 and l >= 0 and t + h <= img.shape[1] and l + w <= img.shape[2], (cell, img.shape)
    big += h > 28
    want = TF.resized_crop(img, t, l, h, w, [28, 28], antialias=True)
    err = float((torch.from_numpy(out[i]) - want).abs().max())
    assert err < 1e-5, (i, cell, err)
assert big > 0, "no box beyond 28 px: the 40x34 and 31x45 images were not cropped at their own size"
PY
# --factor 2 where the crops are shrunk: 64-px Fashion-MNIST (1 channel) and random 96-px RGB
# images, crops of side 32 or 48 from boxes of up to 64 or 96 px. Every cell of every stitched image
# (cell k at row k / 2, column k % 2) is torchvision's resized_crop(src, *box, side, antialias=True)
# within 1e-5 (measured: bitwise equal); on the shrunk cells plain bilinear must be far off (measured
# 0.12 and 0.53), or the check could not tell the two apart.
"$BIN/resample" -q --size 64 fm.tsr >fm64.tsr
mk_npy rgb96 60 3 96 96 5 && "$BIN/tsimport" -q --format npy rgb96 >rgb96.tsr || fail "rgb96 import"
for d in fm64 rgb96; do
    "$tool" teacher "t$d.safetensors" convnet3:width=8 $d.tsr 1 &&
        "$BIN/patchsel" -q -w "t$d.safetensors" --candidates 8 --crops 3 --ipc 1 --factor 2 $d.tsr >s$d.tsr &&
        mkdir -p x$d && "$BIN/tsexport" --npy x$d/src $d.tsr && "$BIN/tsexport" --npy x$d/out s$d.tsr &&
        "$BIN/tsinfo" --list s$d.tsr >x$d/list.txt || fail "$d: --factor 2 run"
    "$PYTHON" - x$d <<'PY' && ok "$d, f = 2: each cell is resized_crop(antialias=True) of its box" || fail "$d cells"
import json, sys, numpy as np, torch
from torchvision.transforms import functional as TF
d = sys.argv[1]
src = dict(zip(open(f"{d}/src/keys.txt").read().split(), torch.from_numpy(np.load(f"{d}/src/image.npy"))))
out = torch.from_numpy(np.load(f"{d}/out/image.npy"))
n, C, S = out.shape[0], out.shape[1], out.shape[2]
side = S // 2
err, plain, shrunk = 0.0, 0.0, 0
for i, line in enumerate(open(f"{d}/list.txt")):
    cells = json.loads(line.split("\t")[5])["cells"]
    assert len(cells) == 4, cells
    for k, cell in enumerate(cells):
        img, (t, l, h, w) = src[cell["src"]], cell["box"]
        got = out[i, :, k // 2 * side:(k // 2 + 1) * side, k % 2 * side:(k % 2 + 1) * side]
        diff = lambda aa: float((got - TF.resized_crop(img, t, l, h, w, [side, side], antialias=aa)).abs().max())
        err = max(err, diff(True))
        if h > side:
            shrunk += 1
            plain = max(plain, diff(False))
print(f"{d[1:]}: {n} images [{C},{S},{S}], {shrunk} of {4 * n} cells shrunk; max |out - resized_crop(antialias=True)| "
      f"{err:.3g} (tolerance 1e-5); max |out - plain bilinear| on shrunk cells {plain:.3g}")
assert n == (10 if C == 1 else 3) and shrunk >= n, (n, shrunk)
assert err <= 1e-5, err
assert plain > 1e-2, plain
PY
done
"$BIN/tsinfo" --json mx.tsr | "$PYTHON" -c 'import json, sys; assert json.load(sys.stdin)["history"][-1]["params"]["res"] == 28' \
    && ok "mixed sizes: res in the history" || fail "res in history"
rc=0; "$BIN/patchsel" -q --method random --ipc 2 mixed.tsr >mr.out 2>mr.err || rc=$?
[ $rc = 2 ] && [ ! -s mr.out ] && grep -q "images of several sizes: --method random keeps whole images, so give --res" mr.err \
    && ok "--method random on mixed sizes without --res: exit 2 ($(cat mr.err))" || fail "random, mixed: exit $rc $(cat mr.err)"
# --method random keeps whole images: non-square ones as they are; with --res each is resized
# (shorter side to R, antialiased) and centre-cropped, as torchvision's Resize(R) + CenterCrop(R)
"$BIN/patchsel" -q --method random --ipc 2 sz2.tsr >rw.tsr && "$BIN/patchsel" -q --method random --ipc 2 --res 24 mixed.tsr >rr.tsr \
    && "$BIN/tsexport" --npy mxsrc/rw rw.tsr && "$BIN/tsexport" --npy mxsrc/rr rr.tsr \
    && "$BIN/tsinfo" --list rw.tsr >mxsrc/rw.txt && "$BIN/tsinfo" --list rr.tsr >mxsrc/rr.txt || fail "random runs"
"$PYTHON" - <<'PY' && ok "--method random: 31x45 images whole, and Resize + CenterCrop to --res 24" || fail "random images"
import json, numpy as np, torch
from torchvision.transforms import functional as TF
src = {}
for t in ("sz0", "part1", "sz2"):
    keys = open(f"mxsrc/{t}/keys.txt").read().split()
    src.update(zip(keys, torch.from_numpy(np.load(f"mxsrc/{t}/image.npy"))))
for run, want in (("rw", lambda x: x), ("rr", lambda x: TF.center_crop(TF.resize(x, 24, antialias=True), [24, 24]))):
    out = np.load(f"mxsrc/{run}/image.npy")
    assert out.shape == ((20, 1, 31, 45) if run == "rw" else (20, 1, 24, 24)), (run, out.shape)
    for i, line in enumerate(open(f"mxsrc/{run}.txt")):
        key = json.loads(line.split("\t")[5])["cells"][0]["src"]
        err = float((torch.from_numpy(out[i]) - want(src[key])).abs().max())
        assert err < 1e-5, (run, i, key, err)
PY
ps --ipc 2 --res 32 mixed.tsr >/dev/null 2>err.txt && fail "--res 32 with a 28-px convnet3"
grep -q "t.safetensors" err.txt && ok "--res the teacher cannot take: $(cat err.txt)" || fail "--res 32: $(cat err.txt)"
expect_usage patchsel --ipc 1 fm.tsr
expect_usage patchsel -w t.safetensors --factor 3 fm.tsr
expect_usage patchsel -w t.safetensors --ipc-list 1,2 fm.tsr
expect_usage patchsel -w t.safetensors --method best fm.tsr
expect_usage patchsel -w t.safetensors -o 'x%s%d' --ipc-list 1,2 fm.tsr
expect_usage patchsel -w t.safetensors --ipc 3 -o 'x%d.tsr' --ipc-list 1,2 fm.tsr   # one ignored: said
expect_usage patchsel -w t.safetensors -o 'x%d.tsr' --ipc-list 2,1,2 fm.tsr
expect_usage patchsel -w t.safetensors --precision bf16 fm.tsr
expect_usage patchsel -w t.safetensors -d auto --precision int8 fm.tsr
check_auto_precision patchsel -q -w t.safetensors --ipc 1 --candidates 4 --crops 2 fm.tsr
rc=0; "$BIN/patchsel" -q -d cuda -w t.safetensors --ipc 1 fm.tsr >/dev/null 2>err.txt || rc=$?
if [ $rc = 3 ]; then ok "-d cuda without a device: exit 3 ($(cat err.txt))"
elif [ $rc = 0 ]; then ok "-d cuda ran (golden/cuda.sh compares it with the CPU)"
else fail "-d cuda: exit $rc"; fi
finish

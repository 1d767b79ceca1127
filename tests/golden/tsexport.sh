# tsexport: --npy (round trip through tsimport), --png ImageFolder tree, --grid (images of several
# sizes too), atomic output.
source "$TESTS/golden/lib.sh"
source "$TESTS/golden/lib_tools.sh"
fm_small 100
# U8 stream -> npy (float32) -> stream: equal after converting the original to F32.
"$BIN/tsexport" --npy out fm.tsr
ls out | tr '\n' ' ' | grep -q "classes.txt image.npy keys.txt label.npy" || fail "npy files: $(ls out)"
"$PYTHON" -c '
import numpy as np
x = np.load("out/image.npy"); l = np.load("out/label.npy")
assert x.dtype == np.float32 and x.shape == (100, 1, 28, 28) and l.dtype == np.int64 and l.shape == (100,)
assert x.max() <= 1 and x.min() >= 0' && ok "npy layout" || fail "npy layout"
"$BIN/tsimport" out >back.tsr
"$BIN/resample" --size 28 fm.tsr >fm32.tsr     # same size: U8 / 255 as F32
"$BIN/tscmp" --exact fm32.tsr back.tsr && ok "npy export -> import (U8 source, via F32)" || fail "npy round trip U8"
# F32 stream with an extra field: exact round trip, soft.npy stacked.
mk_npy d 9 3 5 6 3
"$BIN/tsimport" d >d.tsr
"$BIN/tsexport" --npy d2 d.tsr && [ -f d2/soft.npy ] || fail "soft.npy"
"$BIN/tsimport" d2 | "$BIN/tscmp" --exact - d.tsr && ok "npy round trip exact (F32 + soft)" || fail "npy round trip F32"
# PNG tree: folder per class, NN_safe-name, rounding vs truncation.
"$BIN/tsexport" --png png fm.tsr
[ -d png/00_T-shirt_top ] && [ -d png/09_Ankle_boot ] && [ -f png/09_Ankle_boot/train_000000.png ] \
    && ok "png tree" || fail "png tree: $(ls png)"
[ "$(find png -name '*.png' | wc -l)" = 100 ] || fail "png count"
"$BIN/tsimport" --format imagefolder png | "$BIN/tsinfo" --json | grep -q '"records": 100' || fail "png tree re-import"
"$BIN/tsexport" --png pngd d.tsr && "$BIN/tsexport" --truncate --png pngt d.tsr
cmp -s pngd/00_cat/k0000.png pngt/00_cat/k0000.png && fail "--truncate changes nothing"
"$PYTHON" - <<'PY' && ok "rounding and --truncate match torchvision/reference conversions" || fail "png values"
import numpy as np, subprocess, os
x = np.load("d/image.npy")[0]
def load(p):
    # decode through our own importer: a one-file ImageFolder
    out = subprocess.run([os.environ["BIN"] + "/tsimport", "--format", "imagefolder", "--limit", "1", p],
                         capture_output=True, check=True).stdout
    subprocess.run([os.environ["BIN"] + "/tsexport", "--npy", p + ".npyd", "-"], input=out, check=True)
    return np.rint(np.load(p + ".npyd/image.npy")[0] * 255).astype(np.uint8)
r, t = load("pngd"), load("pngt")
assert (r == np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)).all()
assert (t == (x * 255).astype(np.uint8)).all()
PY
mkdir -p gdir/sheet && "$BIN/tsexport" --grid gdir/sheet/grid.png --grid-cols 4 fm.tsr || fail "grid"
"$BIN/tsimport" --format imagefolder gdir | "$BIN/tsinfo" | grep -q "U8\[3,291,117\]" \
    && ok "grid: 10 rows x 4 columns of 28 px with 1 px separators" || fail "grid size"
# images of several sizes (an ImageFolder import): each fills the first one's cell, scaled to
# cover it (antialiased) and centre-cropped; checked against torch's interpolation (+-1 level)
for k in 0 1 2; do "$BIN/tscat" -e 3:$k fm.tsr >part$k.tsr; done
"$BIN/resample" -q --size 40x34 part0.tsr >sz0.tsr && "$BIN/resample" -q --size 31x45 part2.tsr >sz2.tsr
"$BIN/tscat" sz0.tsr part1.tsr sz2.tsr >mixed.tsr && "$BIN/tsexport" --grid mixed.png --grid-cols 5 mixed.tsr \
    && "$BIN/tsexport" --npy mx0 sz0.tsr && "$BIN/tsexport" --npy mx1 part1.tsr && "$BIN/tsexport" --npy mx2 sz2.tsr \
    || fail "grid of several sizes"
"$PYTHON" - <<'PY' && ok "grid of 40x34, 28x28 and 31x45 images: cells of 40x34, cover-scaled" || fail "mixed grid"
import numpy as np, torch, torch.nn.functional as F
from torchvision.io import read_image
sheet = read_image("mixed.png")[0].int()
assert tuple(sheet.shape) == (10 * 41 + 1, 5 * 35 + 1), sheet.shape
imgs, labs = [], []
for d in ("mx0", "mx1", "mx2"):
    imgs += list(torch.from_numpy(np.load(d + "/image.npy")))
    labs += np.load(d + "/label.npy").tolist()
fill, checked = [0] * 10, 0
for x, c in zip(imgs, labs):
    if fill[c] == 5:
        continue
    H, W = x.shape[1:]
    s = max(40 / H, 34 / W)
    rh, rw = max(40, int(np.floor(H * s + 0.5))), max(34, int(np.floor(W * s + 0.5)))
    r = F.interpolate(x[None], size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)[0]
    t, l = int(round((rh - 40) / 2.0)), int(round((rw - 34) / 2.0))
    want = (r[0, t:t + 40, l:l + 34] * 255 + 0.5).clamp(0, 255).floor().int()
    y0, x0 = 1 + c * 41, 1 + fill[c] * 35
    diff = int((sheet[y0:y0 + 40, x0:x0 + 34] - want).abs().max())
    assert diff <= 1, (c, fill[c], (H, W), diff)
    fill[c] += 1
    checked += 1
assert checked == sum(min(labs.count(c), 5) for c in range(10)) and checked > 40, checked
PY
# Atomicity: a truncated input leaves no directory presented as complete.
expect_exit 1 "truncated input" -- "$BIN/tsexport" --npy cutout cut.tsr
[ ! -e cutout ] && [ -z "$(ls -d cutout.tmp.* 2>/dev/null)" ] && ok "no partial export left" || fail "partial export left"
check_truncated tsexport --png cutpng
# a fatal signal while the directories are being written: they are removed with what they hold
# (the tree of --png: class folders and their files), and no output is left
for sig in TERM INT; do
    rm -f in.fifo && mkfifo in.fifo
    "$PYTHON" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)     # a shell starts background jobs with SIGINT ignored
os.execv(sys.argv[1], sys.argv[1:])' "$BIN/tsexport" --png sigpng --npy signpy <in.fifo 2>sig.err &
    pid=$!
    exec 3>in.fifo
    head -c $(( $(stat -c %s fm.tsr) / 2 )) fm.tsr >&3
    for _ in $(seq 100); do compgen -G "sigpng.tmp.$pid/*/*.png" >/dev/null && break; sleep 0.05; done
    compgen -G "sigpng.tmp.$pid/*/*.png" >/dev/null && [ -d "signpy.tmp.$pid" ] || fail "SIG$sig: no temporaries: $(ls)"
    kill -s "$sig" "$pid" 2>/dev/null || true
    sleep 0.2
    exec 3>&-    # a run that lives on ends at the truncated input
    rc=0; wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" -gt 128 ] || fail "SIG$sig: exit $rc, want death by the signal: $(cat sig.err)"
    left=$(ls -d sigpng* signpy* 2>/dev/null || true)
    [ -z "$left" ] || fail "SIG$sig: left $left"
    if [ "$rc" -gt 128 ] && [ -z "$left" ]; then ok "SIG$sig while writing --png and --npy: exit $rc, nothing left"; fi
done
# write errors (a file size limit, with SIGXFSZ ignored: write fails with EFBIG): exit 1 naming
# the file, no output and no temporary left
rc=0; (ulimit -f 20; trap '' XFSZ; exec "$BIN/tsexport" --npy bignpy fm.tsr) 2>err.txt || rc=$?
left=$(ls -d bignpy* 2>/dev/null || true)
if [ "$rc" = 1 ] && grep -q "image.npy: write error: File too large" err.txt && [ -z "$left" ]; then
    ok "--npy write error: $(cat err.txt)"; else fail "--npy write error: exit $rc, $(cat err.txt), left $left"; fi
rc=0; (ulimit -f 20; trap '' XFSZ; exec "$BIN/tsexport" --grid big.png fm.tsr) 2>err.txt || rc=$?
left=$(ls big.png* 2>/dev/null || true)
if [ "$rc" = 1 ] && grep -q "big.png: write error: File too large" err.txt && [ -z "$left" ]; then
    ok "--grid write error: $(cat err.txt)"; else fail "--grid write error: exit $rc, $(cat err.txt), left $left"; fi
# --grid DIR fails before the stream is read; a FIFO is written through, not replaced
mkdir gd
rc=0; "$BIN/tsexport" --grid gd /dev/stdin <"$BIN/tsexport" 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "gd: is a directory" err.txt && ok "--grid DIR: $(cat err.txt)" || fail "--grid DIR: exit $rc, $(cat err.txt)"
cp fm.tsr self.tsr
expect_usage tsexport --grid self.tsr self.tsr   # the sheet would replace its own input
"$BIN/tscmp" -q --exact self.tsr fm.tsr && ok "--grid INPUT: the input kept" || fail "--grid INPUT replaced the input"
mkfifo gfifo
cat gfifo >gfifo.got & reader=$!
"$BIN/tsexport" --grid gfifo --grid-cols 4 fm.tsr && wait $reader && [ -p gfifo ] && cmp -s gfifo.got gdir/sheet/grid.png \
    && ok "--grid FIFO: the sheet through it" || fail "--grid FIFO: $(ls -l gfifo gfifo.got)"
# progress on a terminal while the input is slow; none with -q
rc=0; on_tty sh -c "$(slow_cat fm.tsr) | '$BIN/tsexport' --npy ttynpy" || rc=$?
if [ $rc = 77 ]; then echo "skip: no script(1), progress on a terminal not checked"
else
    [ $rc = 0 ] && grep -q "tsexport: records [0-9]* .*/s" tty.out && grep -q "tsexport: records 100 done in" tty.out \
        && [ -s ttynpy/image.npy ] && ok "progress on a terminal" || fail "tsexport progress: exit $rc: $(head -c 400 tty.out | cat -A)"
    on_tty sh -c "$(slow_cat fm.tsr) | '$BIN/tsexport' -q --npy ttynpy2" && [ ! -s tty.out ] && [ -s ttynpy2/image.npy ] \
        && ok "-q: no progress" || fail "tsexport -q: $(head -c 300 tty.out | cat -A)"
fi
mkdir busy && touch busy/x
expect_exit 1 "existing non-empty output dir" -- "$BIN/tsexport" --npy busy fm.tsr
# ... refused before any record is read (here a truncated input would be the later error)
"$BIN/tsexport" --png busy cut.tsr 2>err.txt && fail "--png into a non-empty dir"
grep -q "busy: exists and is not empty" err.txt && [ -z "$(ls -d busy.tmp.* 2>/dev/null)" ] \
    && ok "non-empty output dir refused first: $(cat err.txt)" || fail "busy dir: $(cat err.txt)"
# --npy refused after --png's temporary directory was made: neither is left behind
"$BIN/tsexport" --png fresh --npy busy fm.tsr 2>err.txt && fail "--png with --npy into a non-empty dir"
grep -q "busy: exists and is not empty" err.txt && [ ! -e fresh ] && [ -z "$(ls -d fresh.tmp.* 2>/dev/null)" ] \
    && ok "--png's temporary removed when --npy is refused" || fail "--png temporary: $(cat err.txt); $(ls)"
# a directory in a missing parent: the user's name first, then the temporary's
rc=0; "$BIN/tsexport" --npy nodir/npy fm.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "^tsexport: nodir/npy: cannot create (its temporary nodir/npy.tmp.[0-9]*): No such file or directory$" \
    err.txt && ok "output in a missing directory: $(cat err.txt)" || fail "missing parent: exit $rc: $(cat err.txt)"
touch plain
"$BIN/tsexport" --npy plain fm.tsr 2>err.txt && fail "--npy onto a file"
grep -q "plain: exists and is not a directory" err.txt && ok "output onto a file refused" || fail "file: $(cat err.txt)"
mkdir empty && "$BIN/tsexport" --npy empty fm.tsr && [ -s empty/image.npy ] && ok "an empty output dir is filled" \
    || fail "empty output dir"
# an empty stream: empty arrays that tsimport reads back as the same empty stream
"$BIN/tsimport" --limit 0 "$fmnist" >none.tsr && "$BIN/tsexport" --npy none none.tsr && "$PYTHON" -c "
import numpy as np
assert np.load('none/image.npy').shape == (0, 0, 0, 0) and np.load('none/label.npy').dtype == np.int64" \
    && "$BIN/tsimport" none >none2.tsr && "$BIN/tscmp" --exact none.tsr none2.tsr \
    && ok "no records: image.npy [0,0,0,0], read back as the same empty stream" || fail "empty stream to npy"
mk_npy odd 2 3 4 4 1 && rm odd/keys.txt && "$BIN/tsimport" odd >odd.tsr
"$BIN/tscat" d.tsr odd.tsr >mixed.tsr
"$BIN/tsexport" --npy mixed mixed.tsr 2>err.txt && fail "mixed shapes accepted"
grep -q "mixed.tsr: record 9 (train_000000)" err.txt && ok "mixed shapes: $(cat err.txt)" || fail "mixed shapes message: $(cat err.txt)"
# images of one dtype, then of another size: the earlier records' own dtypes (not the F32 they are
# stacked as) and shape, one line, no directory left
"$BIN/tscat" -q -e 2:0 fm.tsr >ev.tsr && "$BIN/tscat" -q -e 4:1 fm.tsr | "$BIN/resample" -q --size 28 >f28.tsr \
    && "$BIN/tscat" -q -e 4:3 fm.tsr | "$BIN/resample" -q --size 20 >f20.tsr || fail "U8 and F32 parts"
for c in "ev.tsr f20.tsr|record 50 (train_000003): field 'image' is F32[1,20,20], earlier records have U8[1,28,28]" \
         "ev.tsr f28.tsr f20.tsr|record 75 (train_000003): field 'image' is F32[1,20,20], earlier records have \
U8[1,28,28] and F32[1,28,28]"; do
    "$BIN/tscat" -q ${c%%|*} >u8f32.tsr
    rc=0; "$BIN/tsexport" --npy u8f32 u8f32.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ "$(cat err.txt)" = "tsexport: u8f32.tsr: ${c#*|} (--npy stacks images of one shape: resample them \
to one size first)" ] && [ -z "$(ls -d u8f32.tmp* u8f32 2>/dev/null)" ] && ok "--npy of ${c%%|*}: $(cat err.txt)" \
        || fail "--npy of ${c%%|*}: exit $rc $(cat err.txt)"
done
# more fields than --npy writes: the error says so, names the record, and leaves no directory
mk_npy wide 2 1 4 4 3 && "$PYTHON" -c "
import numpy as np
for i in range(70): np.save('wide/f%02d.npy' % i, np.zeros((2, 1), np.float32))" && "$BIN/tsimport" wide >wide.tsr \
    || fail "a stream of 73 fields"
"$BIN/tsexport" --npy widenpy wide.tsr 2>err.txt && fail "73 fields written to npy"
grep -q "wide.tsr: record 0 (k0000): more than 64 fields" err.txt && [ -z "$(ls -d widenpy* 2>/dev/null)" ] \
    && ok "--npy of 73 fields: $(cat err.txt)" || fail "too many fields: $(cat err.txt)"
# --grid needs one channel count, and records: each refusal names why and leaves no sheet
mk_npy g1 2 1 4 4 5 && mk_npy g3 2 3 4 4 6 && printf 'm0\nm1\n' >g3/keys.txt && "$BIN/tsimport" g1 >g1.tsr && "$BIN/tsimport" g3 >g3.tsr \
    && "$BIN/tscat" g1.tsr g3.tsr >g13.tsr || fail "1- and 3-channel records"
rc=0; "$BIN/tsexport" --grid g13.png g13.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "record 2 (m0): 3 channels, the first record's image has 1" err.txt && [ ! -e g13.png ] \
    && ok "--grid of 1- and 3-channel images: $(cat err.txt)" || fail "mixed channels grid: exit $rc: $(cat err.txt)"
rc=0; "$BIN/tsexport" --grid none.png none.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "none.tsr: no records, no grid" err.txt && [ ! -e none.png ] \
    && ok "--grid of an empty stream: $(cat err.txt)" || fail "empty grid: exit $rc: $(cat err.txt)"
# a record without an image, or with one of 2 dimensions (shards written by other tools): --png
# and --grid name the file, record and key, and leave nothing behind
"$BIN/tscat" --shards sh-%02d.tar fm.tsr && "$PYTHON" - <<'PY' || fail "writing odd shards"
import io, tarfile, numpy as np
hdr = tarfile.open("sh-00.tar").extractfile("__stream__").read()
def shard(name, members):
    with tarfile.open(name, "w", format=tarfile.USTAR_FORMAT) as t:
        for m, data in [("__stream__", hdr)] + members + [("__end__", b'{"records":1}')]:
            i = tarfile.TarInfo(m); i.size = len(data); i.mode = 0o444; t.addfile(i, io.BytesIO(data))
b = io.BytesIO(); np.save(b, np.zeros((4, 4), np.float32))
shard("noimg.tar", [("k0.cls", b"1")])
shard("img2d.tar", [("k0.cls", b"1"), ("k0.image.npy", b.getvalue())])
b = io.BytesIO(); np.save(b, np.zeros((1, 28, 28), np.float32))
shard("nolab.tar", [("k0.image.npy", b.getvalue())])
shard("lab99.tar", [("k0.cls", b"99"), ("k0.image.npy", b.getvalue())])
shard("labneg.tar", [("k0.cls", b"-3"), ("k0.image.npy", b.getvalue())])
PY
for t in "noimg:no image field" "img2d:image is F32\[4,4\], want \[C,H,W\]"; do
    for o in "--png zq" "--grid zq.png"; do
        rc=0; "$BIN/tsexport" $o ${t%%:*}.tar 2>err.txt || rc=$?
        [ $rc = 1 ] && grep -q "^tsexport: ${t%%:*}.tar: record 0 (k0): ${t#*:}" err.txt && [ -z "$(ls -d zq* 2>/dev/null)" ] \
            && ok "${o%% *} of ${t%%:*}: $(cat err.txt)" || fail "${o%% *} of ${t%%:*}: exit $rc: $(cat err.txt); $(ls -d zq*)"
    done
done
# records without a label, or with one outside the class list, in every program that needs one: one
# message naming file, record and key (no doubled "record k0:"), exit 1; tsexport --npy of an
# unlabelled record is fine (label.npy is then absent)
"$BIN/evaltrain" -q -m convnet3:width=8 --epochs 0 --save t.safetensors fm.tsr >/dev/null
for t in "nolab:no label field" "lab99:label 99 outside the 10 classes" "labneg:label -3 is negative"; do
    for p in "tsexport --grid zq.png" "tsexport --png zq" "tsexport --npy zq" "tscat -c 1" "evaltrain -m convnet3 --epochs 1" \
             "patchsel -w t.safetensors --ipc 1" "recover -w t.safetensors --iters 4" "relabel -w t.safetensors --epochs 1"; do
        [ "$p" = "tsexport --npy zq" ] && [ "${t%%:*}" = nolab ] && continue
        rc=0; "$BIN"/$p ${t%%:*}.tar >out.bin 2>err.txt || rc=$?
        [ $rc = 1 ] && [ "$(cat err.txt)" = "${p%% *}: ${t%%:*}.tar: record 0 (k0): ${t#*:}" ] && [ -z "$(ls -d zq* 2>/dev/null)" ] \
            || fail "${p%% *} of ${t%%:*}: exit $rc: $(cat err.txt)"
    done
done
"$BIN/tsexport" --npy zq nolab.tar && [ ! -e zq/label.npy ] && [ -e zq/image.npy ] || fail "--npy of an unlabelled record"
rm -rf zq
if [ "$fails" = 0 ]; then ok "records without a label or outside the classes: one message each, in 8 programs"; fi
expect_usage tsexport fm.tsr
expect_usage tsexport --grid-cols 0 --grid g.png fm.tsr
expect_usage tsexport --npy x a.tsr b.tsr
expect_usage tsexport --png same --npy same/ fm.tsr
[ ! -e same ] || fail "--png D --npy D left D"
# odd images: H = 0 (it crashed --grid), 4 channels (png's message, not a stale errno), and a
# record past a full grid row is checked all the same (2 channels after a 1-channel first)
"$PYTHON" - <<'PY'
import numpy as np, os
for d, img in (("z0", np.zeros((2, 1, 0, 5), np.float32)), ("c4", np.zeros((1, 4, 5, 7), np.float32)),
               ("c12", np.zeros((2, 2, 4, 4), np.float32))):
    os.makedirs(d, exist_ok=True)
    if d == "c12":
        np.save(d + "/image.npy", np.zeros((2, 1, 4, 4), np.float32)); np.save(d + "/label.npy", np.array([0, 0]))
        os.makedirs("c12b", exist_ok=True)
        np.save("c12b/image.npy", img); np.save("c12b/label.npy", np.array([0, 0]))
        open("c12b/keys.txt", "w").write("b0\nb1\n")
    else:
        np.save(d + "/image.npy", img); np.save(d + "/label.npy", np.zeros(len(img), np.int64))
PY
"$BIN/tsimport" -q z0 >z0.tsr && "$BIN/tsimport" -q c4 >c4.tsr && "$BIN/tsimport" -q c12 >c12a.tsr \
    && "$BIN/tsimport" -q c12b >c12b.tsr && "$BIN/tscat" c12a.tsr c12b.tsr >c12.tsr || fail "odd images"
for c in "--grid g0.png z0.tsr|z0.tsr: record 0 (train_000000): image is F32\[1,0,5\], want \[C,H,W\] with C, H, W >= 1" \
         "--png p4 c4.tsr|c4.tsr: record 0 (train_000000): png: cannot encode U8\[4,5,7\]" \
         "--grid g12.png --grid-cols 1 c12.tsr|c12.tsr: record 2 (b0): 2 channels, the first record's image has 1"; do
    rc=0; "$BIN/tsexport" ${c%%|*} 2>err.txt || rc=$?
    if [ $rc = 1 ] && grep -q "^tsexport: ${c#*|}" err.txt && [ "$(wc -l <err.txt)" = 1 ]; then ok "tsexport ${c%%|*}: $(cat err.txt)"
    else fail "tsexport ${c%%|*}: exit $rc $(cat err.txt)"; fi
done
finish

# tsimport: IDX import (names, counts, keys), CIFAR-10/100 (binary and python versions) and npy import,
# ImageFolder (--split, -j, Tiny-ImageNet's annotated val), format guessing, errors.
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
# class lists that would mislabel: a blank line before a name (every name after it shifted by one),
# a name twice, fewer names than the labels need; blank lines at the end are fine
printf 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n\n' >trail.txt
"$BIN/tsimport" -q --split test --limit 3 --classes-file trail.txt digits | "$BIN/tsinfo" | grep -q "^classes: 10$" \
    && ok "--classes-file with blank lines at the end" || fail "trailing blank lines"
printf 'a\nb\n\nd\ne\nf\ng\nh\ni\nj\nk\n' >blank.txt
printf 'a\nb\nc\nd\ne\nf\ng\nh\ni\ni\n' >twice.txt
printf 'a\nb\nc\nd\ne\nf\ng\nh\ni\n' >nine.txt
for c in "blank:blank.txt: line 3 is empty (one entry per line; blank lines only at the end)" \
         "twice:twice.txt: class 'i' is named twice (classes 8 and 9)" \
         "nine:digits/t10k-labels-idx1-ubyte.gz: record [0-9]* (test_[0-9]*): label 9 outside the 9 classes of nine.txt"; do
    # with -o: the output was open when tsimport died, and neither it nor its temporary is left
    rc=0; "$BIN/tsimport" -q --split test --limit 100 --classes-file ${c%%:*}.txt -o cf.tsr digits 2>/dev/null || rc=$?
    [ $rc = 1 ] && ! compgen -G 'cf.tsr*' >/dev/null || fail "--classes-file ${c%%:*} -o: exit $rc, left $(ls cf.tsr* 2>/dev/null)"
    rc=0; "$BIN/tsimport" -q --split test --limit 100 --classes-file ${c%%:*}.txt digits >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.tsr ] && grep -qx "tsimport: ${c#*:}" err.txt && ok "--classes-file ${c%%:*}: $(cat err.txt)" \
        || fail "--classes-file ${c%%:*}: exit $rc: $(cat err.txt)"
done
mkdir -p tv/FashionMNIST/raw && cp "$fmnist"/t10k-* tv/FashionMNIST/raw/
"$BIN/tsimport" --split test --limit 3 tv/FashionMNIST/raw | "$BIN/tsinfo" --json | grep -q '"Ankle boot"' \
    && (cd tv/FashionMNIST/raw && "$BIN/tsimport" --split test --limit 3 .) | "$BIN/tsinfo" --json | grep -q '"Ankle boot"' \
    && ok "torchvision's FashionMNIST/raw (and . inside it): Fashion-MNIST's class names" || fail "FashionMNIST/raw names"
# npy directory (guessed), F32 and U8 images, extra fields, keys.txt.
mk_npy f32 7 3 5 4 1
mk_npy u8 7 1 6 6 2 u8
"$BIN/tsimport" f32 >f32.tsr && "$BIN/tsimport" --format npy u8 >u8.tsr || fail "npy import"
"$BIN/tsinfo" --list f32.tsr | sed -n 1p | grep -q "k0000	0	cat	image:F32\[3,5,4\] label:I64\[\] soft:F32\[3\]" \
    || fail "npy record layout: $("$BIN/tsinfo" --list f32.tsr | head -1)"
"$BIN/tsinfo" --json u8.tsr | grep -q '"U8"' || fail "npy u8 stays U8"
ok "npy import"
# image.npy [N,H,W,3] (torchvision's CIFAR10.data): refused as channels-last, not read as 32 channels
"$PYTHON" -c "
import numpy as np, os
os.makedirs('nhwc', exist_ok=True)
np.save('nhwc/image.npy', np.zeros((2, 32, 32, 3), np.uint8))"
rc=0; "$BIN/tsimport" -q nhwc >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "nhwc/image.npy: shape \[2,32,32,3\] looks channels-last .*transpose(0,3,1,2)" err.txt \
    && ok "npy channels-last: $(cat err.txt)" || fail "npy channels-last: exit $rc, $(cat err.txt)"
# image.npy [N,H,W] (MNIST-like arrays): one channel, the records of [N,1,H,W]
"$PYTHON" -c "
import numpy as np, os
x = (np.arange(3 * 4 * 5) % 256).astype(np.uint8).reshape(3, 4, 5)
for d, a in ('g3', x), ('g4', x[:, None]):
    os.makedirs(d, exist_ok=True)
    np.save(d + '/image.npy', a)
    np.save(d + '/label.npy', np.array([0, 1, 0]))"
"$BIN/tsimport" -q g3 >g3.tsr && "$BIN/tsimport" -q g4 >g4.tsr && "$BIN/tscmp" -q --exact g3.tsr g4.tsr \
    && "$BIN/tsinfo" g3.tsr | grep -q "image (3 records): U8\[1,4,5\]" && ok "npy image.npy [N,H,W]: images [1,H,W]" \
    || fail "npy [N,H,W]: $("$BIN/tsinfo" g3.tsr 2>&1 | grep image)"
# npy errors name the file: an invalid field name (a long one whole), rows that disagree, no image.npy
mk_npy nbad 3 1 4 4 1 && cp nbad/soft.npy "nbad/$(printf 'a%.0s' {1..80}).npy"
rc=0; "$BIN/tsimport" nbad >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "nbad/a\{80\}\.npy: 'a\{80\}' is not a valid field name" err.txt \
    && ok "npy: an invalid field name ($(cut -c1-60 err.txt)...)" || fail "invalid npy field: exit $rc: $(cat err.txt)"
mk_npy nrows 3 1 4 4 1 && "$PYTHON" -c "import numpy as np; np.save('nrows/soft.npy', np.zeros((2, 3), np.float32))"
rc=0; "$BIN/tsimport" nrows >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "nrows/soft.npy: 2 rows, image.npy has 3" err.txt && ok "npy: rows that disagree ($(cat err.txt))" \
    || fail "npy rows: exit $rc: $(cat err.txt)"
# label.npy: class indices [N] of an integer type, inside the class list; otherwise refused, naming
# the file and row (they used to be truncated, or taken as unlabelled, or read one-hot arrays flat)
for bad in "f4 [0,1.5,2]:F32\[3\]: want integer class indices" "i1 [0,-1,2]:row 1: label -1 is negative" \
           "i4 [0,1,3]:row 2: label 3 outside the 3 classes of nl_i4/classes.txt$" "i8 [[1,0,0],[0,1,0],[0,0,1]]:I64\[3,3\]: want integer" \
           "u2 [0,60000,1]:row 1: label 60000 outside" "nocls [0,2000000,1]:row 1: label 2000000 is not a class index"; do
    dt=${bad%% *} rest=${bad#* } vals=${rest%%:*} msg=${rest#*:}
    mk_npy "nl_$dt" 3 1 4 4 1
    [ "$dt" = nocls ] && rm "nl_$dt/classes.txt"
    "$PYTHON" -c "import numpy as np, sys; np.save(sys.argv[1] + '/label.npy', np.array($vals, dtype=sys.argv[2]))" \
        "nl_$dt" "$([ "$dt" = nocls ] && echo i8 || echo "$dt")"
    rc=0; "$BIN/tsimport" --format npy "nl_$dt" >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.tsr ] && grep -q "nl_$dt/label.npy: $msg" err.txt && ok "npy label.npy $dt $vals: $(cat err.txt)" \
        || fail "npy label.npy $dt $vals: exit $rc: $(cat err.txt)"
done
# image.npy of another type than uint8: pixels in [0,1], else refused naming the row (0..255 saved as
# floats or int64, NaN); float64 in [0,1] is taken
for bad in "f4 255:row 0: pixel 255 outside" "i8 255:row 0: pixel 255 outside" "f4 nan:row 0: pixel nan outside" \
           "f8 -0.5:row 0: pixel -0.5 outside"; do
    dt=${bad%% *} rest=${bad#* } v=${rest%%:*} msg=${rest#*:}
    mk_npy "ni_$dt$v" 3 1 4 4 1
    "$PYTHON" -c "import numpy as np, sys; x = np.zeros((3, 1, 4, 4), sys.argv[2]); x[0, 0, 1, 2] = float(sys.argv[3])
np.save(sys.argv[1] + '/image.npy', x)" "ni_$dt$v" "$dt" "$v"
    rc=0; "$BIN/tsimport" --format npy "ni_$dt$v" >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.tsr ] && grep -q "ni_$dt$v/image.npy: $msg \[0,1\]" err.txt && ok "npy image.npy $dt $v: $(cat err.txt)" \
        || fail "npy image.npy $dt $v: exit $rc: $(cat err.txt)"
done
mk_npy ni_f8 3 1 4 4 1 && "$PYTHON" -c "import numpy as np; np.save('ni_f8/image.npy', np.full((3, 1, 4, 4), 0.5))"
"$BIN/tsimport" --format npy ni_f8 | "$BIN/tsinfo" | grep -q "F64\[1,4,4\] x3  min 0.5 max 0.5" && ok "npy float64 images in [0,1]" \
    || fail "npy float64 images"
mk_npy nl_cf 3 1 4 4 1 && printf 'x\ny\n' >two.txt
rc=0; "$BIN/tsimport" --format npy --classes-file two.txt nl_cf >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -s out.tsr ] && grep -qx "tsimport: nl_cf/label.npy: row 2: label 2 outside the 2 classes of two.txt" err.txt \
    && ok "npy labels beyond --classes-file: $(cat err.txt)" || fail "npy --classes-file: exit $rc: $(cat err.txt)"
# --classes-file replaces classes.txt: labels it names are taken though classes.txt lists fewer
mk_npy nl_over 3 1 4 4 1 && "$PYTHON" -c "import numpy as np; np.save('nl_over/label.npy', np.array([0, 4, 2]))"
printf 'v\nw\nx\ny\nz\n' >five.txt
"$BIN/tsimport" --format npy --classes-file five.txt nl_over | "$BIN/tsinfo" --list | cut -f 3,4 | tr '\n\t' ' :' \
    | grep -qx "0:v 4:z 2:x " && ok "npy labels named by --classes-file, not classes.txt" || fail "npy --classes-file override"
mk_npy nl_keys 3 1 4 4 1 && printf 'k0\n\nk2\nk3\n' >nl_keys/keys.txt
rc=0; "$BIN/tsimport" --format npy nl_keys >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "nl_keys/keys.txt: line 2 is empty" err.txt && ok "npy keys.txt with a blank line: $(cat err.txt)" \
    || fail "npy keys blank line: exit $rc: $(cat err.txt)"
mk_npy dup_keys 4 1 4 4 1 && printf 'k0\nk1\nk2\nk1\n' >dup_keys/keys.txt
rc=0; "$BIN/tsimport" --format npy -o dup.tsr dup_keys 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -e dup.tsr ] && grep -qx "tsimport: dup_keys/keys.txt: line 4: key 'k1' repeats line 2" err.txt \
    && ok "npy keys.txt repeating a key: $(cat err.txt)" || fail "npy duplicate key: exit $rc: $(cat err.txt)"
mk_npy nl_u1 3 1 4 4 1 && "$PYTHON" -c "import numpy as np; np.save('nl_u1/label.npy', np.array([2, 0, 1], np.uint8))"
"$BIN/tsimport" --format npy nl_u1 | "$BIN/tsinfo" --list | cut -f 3 | tr '\n' ' ' | grep -qx "2 0 1 " \
    && ok "npy label.npy of uint8" || fail "npy uint8 labels"
mk_npy noimg 3 1 4 4 1 && rm noimg/image.npy
rc=0; "$BIN/tsimport" --format npy noimg >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "noimg: no image.npy" err.txt && ok "npy: no image.npy ($(cat err.txt))" \
    || fail "npy without image: exit $rc: $(cat err.txt)"
# CIFAR-10 and CIFAR-100 binary versions, written here by Python: per record a label byte (CIFAR-100:
# coarse, then fine) and 3072 bytes R, G, B planes of 32x32; five training batches for CIFAR-10.
"$PYTHON" - <<'PY' || fail "writing CIFAR files"
import os, random
random.seed(5)
def rec(labels):
    return bytes(labels) + bytes(random.randrange(256) for _ in range(3072))
os.makedirs("c10", exist_ok=True); os.makedirs("c100", exist_ok=True)
want = {}
for f in range(1, 6):
    rs = [rec([(3 * f + i) % 10]) for i in range(4)]
    want["data_batch_%d.bin" % f] = rs
    open("c10/data_batch_%d.bin" % f, "wb").write(b"".join(rs))
rs = [rec([i % 10]) for i in range(3)]
open("c10/test_batch.bin", "wb").write(b"".join(rs))
open("c10/batches.meta.txt", "w").write("\n".join("c%d" % i for i in range(10)) + "\n\n")
rs = [rec([i % 20, (7 * i) % 100]) for i in range(5)]
open("c100/train.bin", "wb").write(b"".join(rs))
open("c100/fine_label_names.txt", "w").write("\n".join("f%02d" % i for i in range(100)) + "\n")
PY
"$BIN/tsimport" c10 >c10.tsr && "$BIN/tsimport" --split test c10 >c10t.tsr && "$BIN/tsimport" c100 >c100.tsr \
    && "$BIN/tsimport" --format cifar10 --limit 6 c10 >c10l.tsr || fail "CIFAR import"
# a CIFAR label that the directory's own name list does not name: refused, the list named
cp -r c10 c10s && printf 'c0\nc1\n' >c10s/batches.meta.txt
rc=0; "$BIN/tsimport" --split test c10s >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "tsimport: test_batch.bin: record 2 (test_000002): label 2 outside the 2 classes of c10s/batches.meta.txt" err.txt \
    && ok "CIFAR label without a name: $(cat err.txt)" || fail "CIFAR label without a name: exit $rc: $(cat -A err.txt)"
for t in c10 c10t c100 c10l; do "$BIN/tsexport" --npy "np_$t" $t.tsr || fail "tsexport --npy $t"; done
"$PYTHON" - <<'PY' || fail "CIFAR records against the files"
import json, numpy as np
def recs(path, c100):
    b = open(path, "rb").read(); n = 3074 if c100 else 3073
    return [(b[i + n - 3073], np.frombuffer(b[i + n - 3072:i + n], np.uint8).reshape(3, 32, 32))
            for i in range(0, len(b), n)]
def check(d, files, c100, classes, split):
    want = [r for f in files for r in recs(f, c100)]
    img, lab = np.load(d + "/image.npy"), np.load(d + "/label.npy")
    keys = open(d + "/keys.txt").read().split()
    assert img.shape == (len(want), 3, 32, 32), img.shape
    assert np.array_equal(np.rint(img * 255).astype(np.uint8), np.stack([w[1] for w in want]))
    assert lab.tolist() == [w[0] for w in want], lab.tolist()
    assert keys == ["%s_%06d" % (split, i) for i in range(len(want))], keys[:3]
    assert open(d + "/classes.txt").read().split() == classes
c10 = ["c%d" % i for i in range(10)]
check("np_c10", ["c10/data_batch_%d.bin" % f for f in range(1, 6)], 0, c10, "train")
check("np_c10t", ["c10/test_batch.bin"], 0, c10, "test")
check("np_c100", ["c100/train.bin"], 1, ["f%02d" % i for i in range(100)], "train")
img = np.load("np_c10l/image.npy")
assert img.shape[0] == 6, img.shape   # --limit across batch files: 4 of the first, 2 of the second
PY
"$BIN/tsinfo" --list c10.tsr | sed -n 5p | grep -q '"src":"data_batch_2.bin","index":0' \
    || fail "CIFAR meta: $("$BIN/tsinfo" --list c10.tsr | sed -n 5p)"
ok "CIFAR-10 (five batches, test, names, --limit) and CIFAR-100 (fine label) against the bytes"
# the python versions of the same batches (cifar-10-batches-py, cifar-100-python: torchvision's
# download): Python 2's protocol-2 pickles as CIFAR's were written (assembled here opcode by opcode,
# and checked to load in Python to the intended dict), Python 3's protocols 0 and 1 (the text
# opcodes; bytes through _codecs.encode of raw-unicode-escape text), 2 (_codecs.encode), 4 and 5
# (numpy's _frombuffer), labels as a list or a numpy array; each imports to the binary version's
# records
"$PYTHON" - <<'PY' || fail "writing CIFAR python batches"
import os, pickle, struct, numpy as np
def U(b):
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)
class P2:
    """Python 2 cPickle protocol 2: str as (SHORT_)BINSTRING, BINPUT memo, APPENDS in runs of 1000."""
    def __init__(s): s.out, s.k = bytearray(b"\x80\x02"), 1
    def put(s):
        s.out += b"q" + bytes([s.k]) if s.k < 256 else b"r" + struct.pack("<I", s.k)
        s.k += 1
    def int(s, v):
        s.out += b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)
    def val(s, v):
        if isinstance(v, bytes):
            s.out += U(v); s.put()
        elif isinstance(v, int):
            s.int(v)
        elif isinstance(v, list):
            s.out += b"]"; s.put()
            for i in range(0, len(v), 1000):
                s.out += b"("
                for x in v[i:i + 1000]: s.val(x)
                s.out += b"e"
        else:   # numpy array: _reconstruct(ndarray, (0,), 'b') + BUILD (1, shape, dtype, False, data)
            s.out += b"cnumpy.core.multiarray\n_reconstruct\n"; s.put()
            s.out += b"cnumpy\nndarray\n"; s.put()
            s.out += b"K\x00\x85"; s.put(); s.out += U(b"b"); s.put(); s.out += b"\x87"; s.put(); s.out += b"R"; s.put()
            s.out += b"(K\x01"
            for d in v.shape: s.int(d)
            s.out += b"\x86" if v.ndim == 2 else b"\x85"; s.put()
            s.out += b"cnumpy\ndtype\n"; s.put(); s.out += U(v.dtype.str[1:].encode()) + b"K\x00K\x01\x87"; s.put()
            s.out += b"R"; s.put()
            s.out += b"(K\x03" + U(v.dtype.str[:1].encode()) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"; s.put()
            s.out += b"b\x89" + U(v.tobytes()) + b"t"; s.put(); s.out += b"b"
    def dict(s, items):
        s.out += b"}"; s.put(); s.out += b"("
        for k, v in items:
            s.out += U(k); s.put(); s.val(v)
        s.out += b"u."
        return bytes(s.out)
def batches(path, c100):
    b = open(path, "rb").read(); n = 3074 if c100 else 3073
    recs = [b[i:i + n] for i in range(0, len(b), n)]
    return np.frombuffer(b"".join(r[n - 3072:] for r in recs), np.uint8).reshape(-1, 3072), [r[n - 3073] for r in recs]
files = ["data_batch_%d" % f for f in range(1, 6)] + ["test_batch"]
names = ["c%d" % i for i in range(10)]
for form in ("p2", "py3p0", "py3p1", "py3p2", "py3p4", "py3p5", "py3p4f", "py3p5f"):   # f: Fortran order
    os.makedirs("cpy_" + form)
    for f in files:
        x, y = batches("c10/%s.bin" % f, 0)
        if form == "p2":
            items = [(b"batch_label", f.encode()), (b"labels", y), (b"data", x),
                     (b"filenames", [b"img_%d.png" % i for i in range(len(y))])]
            blob = P2().dict(items)
            d = pickle.loads(blob, encoding="bytes")
            assert np.array_equal(d[b"data"], x) and d[b"labels"] == y, f
        else:
            proto = int(form[4])
            lab = np.array(y, np.int64) if proto == 4 else y
            xf = np.asfortranarray(x) if form.endswith("f") else x
            blob = pickle.dumps({b"data" if proto == 2 else "data": xf, b"labels" if proto == 2 else "labels": lab},
                                protocol=proto)
        open("cpy_%s/%s" % (form, f), "wb").write(blob)
    meta = P2().dict([(b"label_names", [n.encode() for n in names]), (b"num_vis", 3072)]) if form == "p2" \
        else pickle.dumps({"label_names": names, "num_cases_per_batch": 10000}, protocol=int(form[4]))
    open("cpy_%s/batches.meta" % form, "wb").write(meta)
os.makedirs("c100py")
x, y = batches("c100/train.bin", 1)
coarse = [open("c100/train.bin", "rb").read()[i * 3074] for i in range(len(y))]
open("c100py/train", "wb").write(P2().dict([(b"filenames", [b"x"] * len(y)), (b"batch_label", b"training batch 1 of 1"),
                                            (b"fine_labels", y), (b"coarse_labels", coarse), (b"data", x)]))
open("c100py/meta", "wb").write(P2().dict([(b"fine_label_names", [b"f%02d" % i for i in range(100)]),
                                           (b"coarse_label_names", [b"k%02d" % i for i in range(20)])]))
# not CIFAR: a global that would run a command if called (it must stay data), a cut pickle
open("evil", "wb").write(b"\x80\x02}q\x00(X\x04\x00\x00\x00dataq\x01cos\nsystem\nq\x02X\x0b\x00\x00\x00touch pwnedq\x03\x85Rq\x04X\x06\x00\x00\x00labelsq\x05]q\x06K\x01au.")
open("cut", "wb").write(open("cpy_p2/test_batch", "rb").read()[:5000])
# pickles that load but are not CIFAR batches: each error names what is wrong
z = lambda n, w=3072: np.zeros((n, w), np.uint8)
for name, obj in (("notdict", [1, 2, 3]), ("nodata", {"labels": [0]}), ("shape", {"data": z(2, 100), "labels": [0, 1]}),
                  ("count", {"data": z(2), "labels": [0]}), ("range", {"data": z(2), "labels": [0, 10]}),
                  ("hwc", {"data": np.zeros((2, 32, 32, 3), np.uint8), "labels": [0, 1]})):
    open(name, "wb").write(pickle.dumps(obj, protocol=4))
PY
for form in p2 py3p0 py3p1 py3p2 py3p4 py3p5 py3p4f py3p5f; do
    "$BIN/tsimport" cpy_$form >py_$form.tsr && "$BIN/tsimport" --split test cpy_$form >pyt_$form.tsr \
        && "$BIN/tsexport" --npy np_py_$form py_$form.tsr && "$BIN/tsexport" --npy np_pyt_$form pyt_$form.tsr \
        && cmp -s np_py_$form/image.npy np_c10/image.npy && cmp -s np_py_$form/label.npy np_c10/label.npy \
        && cmp -s np_py_$form/classes.txt np_c10/classes.txt && cmp -s np_pyt_$form/image.npy np_c10t/image.npy \
        && cmp -s np_pyt_$form/label.npy np_c10t/label.npy \
        && ok "CIFAR-10 python batches ($form): the binary version's images, labels and names" \
        || fail "CIFAR-10 python batches ($form)"
done
"$BIN/tsimport" c100py >c100py.tsr && "$BIN/tsexport" --npy np_c100py c100py.tsr && cmp -s np_c100py/image.npy np_c100/image.npy \
    && cmp -s np_c100py/label.npy np_c100/label.npy && cmp -s np_c100py/classes.txt np_c100/classes.txt \
    && ok "CIFAR-100 python batch (fine labels, meta's names): the binary version's records" || fail "CIFAR-100 python"
# torchvision's root (CIFAR10(root, download=True) unpacks into root/cifar-10-batches-py): the same
# records; a root holding two CIFAR folders is a usage error naming it
mkdir -p tvroot && cp -r cpy_p2 tvroot/cifar-10-batches-py
"$BIN/tsimport" tvroot >tvroot.tsr && "$BIN/tscmp" -q --exact tvroot.tsr py_p2.tsr \
    && ok "CIFAR-10 by torchvision's root: its cifar-10-batches-py" || fail "torchvision root"
mkdir -p tvroot/cifar-100-python
expect_usage tsimport tvroot
declare -A why=([evil]=. [cut]=. [notdict]="not a dict" [nodata]="no 'data'" [shape]="want U8 \[N,3072\]"
                [count]="1 labels for 2 images" [range]="image 1: label 10 out of range"
                [hwc]="'data' is U8\[2,32,32,3\], want U8 \[N,3072\] (rows of R, G and B planes); \[N,32,32,3\] is channels-last")
for bad in evil cut notdict nodata shape count range hwc; do
    mkdir -p bad_$bad && cp $bad bad_$bad/test_batch
    rc=0; "$BIN/tsimport" --format cifar10 --split test bad_$bad >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q "${why[$bad]}" err.txt && [ ! -s out.tsr ] && [ ! -e pwned ] \
        && ok "CIFAR python batch that is not one ($bad): $(cat err.txt)" || fail "bad python batch $bad: exit $rc: $(cat err.txt)"
done
rm c10/batches.meta.txt
"$BIN/tsimport" --split test c10 | "$BIN/tsinfo" --json | grep -q '"airplane"' || fail "CIFAR-10 default names"
rm c10/data_batch_4.bin
rc=0; "$BIN/tsimport" --format cifar10 c10 >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "tsimport: c10/data_batch_4.bin: No such file or directory (CIFAR-10's training split is \
data_batch_1 to data_batch_5, all five; tscat --head or -e takes a subset)" err.txt \
    && ok "missing CIFAR batch: $(cat err.txt)" || fail "missing CIFAR batch: exit $rc: $(cat err.txt)"
head -c 5000 c100/train.bin >c100/t && mv c100/t c100/train.bin
expect_exit 1 "truncated CIFAR-100 file" -- "$BIN/tsimport" c100
rm c100/fine_label_names.txt
expect_exit 1 "CIFAR-100 without names" -- "$BIN/tsimport" --format cifar100 c100
# an ImageFolder tree with splits: --split names the directory (ImageNet's val), keys VAL_NNNNNN
"$BIN/tscat" --head 4 fm.tsr >h4.tsr && "$BIN/tscat" --head 6 fm.tsr >h6.tsr
mkdir tree && "$BIN/tsexport" --png tree/train h4.tsr && "$BIN/tsexport" --png tree/val h6.tsr || fail "making a tree"
"$BIN/tsimport" --format imagefolder --split val tree | "$BIN/tsinfo" --list >val.txt || fail "imagefolder --split val"
[ "$(awk '{print $2}' val.txt | tr '\n' ' ')" = "val_000000 val_000001 val_000002 val_000003 val_000004 val_000005 " ] \
    && ok "imagefolder --split val: ROOT/val (6 images), keys val_NNNNNN" || fail "--split val: $(cat val.txt)"
"$BIN/tsimport" --format imagefolder --split vall tree >/dev/null 2>err.txt && fail "--split of a missing directory"
grep -q "tree/vall: no such directory" err.txt && ok "imagefolder --split of a missing directory: $(cat err.txt)" \
    || fail "--split vall: $(cat err.txt)"
expect_usage tsimport --format imagefolder --split a/b tree
# a tree with splits has no test/: an error, not its split folders read as two classes
"$BIN/tsimport" --format imagefolder --split test tree >/dev/null 2>err.txt && fail "--split test of a train/val tree"
grep -q "tree/test: no such directory (--split test); the tree's splits are its folders" err.txt \
    && ok "imagefolder --split test of a train/val tree: $(cat err.txt)" || fail "--split test: $(cat err.txt)"
# a tree of classes, one of them named train and holding a folder: still a tree of classes (not the split
# train with the one class 2019), read whole; --split test on it warns; a split it lacks is an error
mkdir -p veh/bus veh/car veh/train/2019 flat/a flat/b
set -- tree/val/*/*.png
cp "$1" veh/bus/0.png && cp "$2" veh/car/0.png && cp "$3" veh/train/0.png && cp "$4" veh/train/2019/1.png
"$BIN/tsimport" -q veh | "$BIN/tsinfo" --list | cut -f2,4 | tr '\t\n' ': ' >veh.txt
[ "$(cat veh.txt)" = "train_000000:bus train_000001:car train_000002:train train_000003:train " ] \
    && ok "a class named train beside classes with images: a tree of classes, its train walked" \
    || fail "class train: $(cat veh.txt)"
cp "$1" flat/a/0.png && cp "$2" flat/b/0.png
"$BIN/tsimport" -q --split test flat 2>err.txt | "$BIN/tsinfo" | grep -q "^records: 2$" \
    && grep -qx "tsimport: flat has no folder test of class folders: the whole tree read as split test" err.txt \
    && ok "--split test of a tree of classes: read whole, warned" || fail "--split test of a tree of classes: $(cat err.txt)"
"$BIN/tsimport" -q --split train flat 2>err.txt | "$BIN/tsinfo" | grep -q "^records: 2$" && [ ! -s err.txt ] \
    && ok "--split train of a tree of classes: read whole, silently" || fail "--split train of classes: $(cat err.txt)"
rc=0; "$BIN/tsimport" -q --split val veh >out.tsr 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -s out.tsr ] && grep -qx "tsimport: veh/val: no such directory (--split val); a tree of classes (its \
folders hold images), read whole as --split train or test" err.txt && ok "--split val of a tree of classes: $(cat err.txt)" \
    || fail "--split val of classes: exit $rc: $(cat err.txt)"
# a train/ of class folders beside a folder of images (samples beside the splits; or classes of subfolders,
# Tiny-ImageNet-style, one named train): ambiguous, an error asking for --split, which reads the split
mkdir -p amb/train/a amb/train/b amb/val/a amb/val/b amb/samples tin/train/images tin/cat/images
cp "$1" amb/train/a/ && cp "$2" amb/train/b/ && cp "$3" amb/val/a/ && cp "$4" amb/val/b/ && cp "$1" amb/samples/
cp "$1" tin/train/images/ && cp "$2" tin/cat/images/
for t in "amb:samples" "tin:cat"; do
    rc=0; "$BIN/tsimport" -q ${t%%:*} >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.tsr ] && grep -qx "tsimport: ${t%%:*}: train holds class folders as a split does, but \
${t#*:} holds images: a tree of splits or of classes? --split train reads train (to read the folders as classes, \
rename train)" err.txt && ok "an ambiguous tree (${t#*:} beside train/): $(cat err.txt)" || fail "ambiguous ${t%%:*}: exit $rc: $(cat err.txt)"
done
"$BIN/tsimport" -q --split val amb | "$BIN/tsinfo" | grep -q "^classes: 2$" && ok "--split val of that tree: its val" \
    || fail "--split val of the ambiguous tree"
# ImageNet's val before its valprep script (images of its own, no class folders) keeps train/ a split
mkdir -p inet/train/a inet/train/b inet/val && cp "$1" inet/train/a/ && cp "$2" inet/train/b/ && cp "$3" inet/val/x.png
"$BIN/tsimport" -q inet | "$BIN/tsinfo" | grep -q "^classes: 2$" && ok "a flat val beside train/ of classes: train read" \
    || fail "flat val: $("$BIN/tsimport" -q inet | "$BIN/tsinfo")"
# Tiny-ImageNet's layout: train/<wnid>/images/*, val/images/* labelled by val_annotations.txt
# (FILE<TAB>WNID<TAB>box); classes are train's folders, records in class order, then by file name
mkdir -p tiny/val/images tiny/train/n01/images tiny/train/n02/images tiny/train/n03/images
set -- tree/val/*/*.png tree/train/*/*.png
for n in 0 1 2 3 4 10; do cp "$1" tiny/val/images/val_$n.png; shift; done
for w in n01 n02 n03; do cp "$1" tiny/train/$w/images/a.png; shift; done
printf 'val_3.png\tn02\t0\t0\t10\t10\nval_0.png\tn03\t1\t2\t3\t4\r\nval_10.png\tn01\t0\t0\t1\t1\n\nval_2.png\tn01\t0\t0\t1\t1\nval_1.png\tn02\t0\t0\t5\t5' \
    >tiny/val/val_annotations.txt
"$BIN/tsimport" --split val tiny >tv.tsr 2>err.txt && "$BIN/tsinfo" --list tv.tsr | cut -f2,3,4,6 >tv.txt \
    || fail "Tiny-ImageNet val: $(cat err.txt)"
printf '%s\n' "val_000000	0	n01	{\"src\":\"images/val_10.png\",\"index\":0}" \
    "val_000001	0	n01	{\"src\":\"images/val_2.png\",\"index\":1}" "val_000002	1	n02	{\"src\":\"images/val_1.png\",\"index\":2}" \
    "val_000003	1	n02	{\"src\":\"images/val_3.png\",\"index\":3}" "val_000004	2	n03	{\"src\":\"images/val_0.png\",\"index\":4}" >tv.want
cmp -s tv.txt tv.want && grep -q "^tsimport: tiny/val/images: 1 image file(s) not listed in tiny/val/val_annotations.txt: skipped$" err.txt \
    && ok "Tiny-ImageNet val: labels from val_annotations.txt, class then file order, the unlisted file said" \
    || fail "Tiny-ImageNet val: $(cat tv.txt err.txt)"
"$BIN/tsimport" --split train tiny >tt.tsr && "$BIN/tscat" tt.tsr tv.tsr >/dev/null \
    && ok "Tiny-ImageNet: train and val carry one class list" || fail "Tiny-ImageNet class lists"
# no --split on a tree with splits: train (the default), not train and val read as two classes;
# the meta's src is the file under the split (class/images/file), not its last folder
"$BIN/tsimport" tiny | "$BIN/tsinfo" --list | cut -f2,4,6 >td.txt
printf '%s\n' "train_000000	n01	{\"src\":\"n01/images/a.png\",\"index\":0}" \
    "train_000001	n02	{\"src\":\"n02/images/a.png\",\"index\":1}" "train_000002	n03	{\"src\":\"n03/images/a.png\",\"index\":2}" >td.want
cmp -s td.txt td.want && ok "imagefolder without --split: the tree's train/, src under it" || fail "no --split: $(cat td.txt)"
# a link to an image that is not there: an error naming it (not an image silently lost)
mkdir -p blink/c && cp tiny/train/n01/images/a.png blink/c/ && ln -s ../gone.png blink/c/b.png
rc=0; "$BIN/tsimport" blink >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -qx "tsimport: blink/c/b.png: a broken symbolic link" err.txt && ok "imagefolder: $(cat err.txt)" \
    || fail "broken link: exit $rc, $(cat err.txt)"
"$BIN/tsimport" --split val tiny 2>/dev/null | "$BIN/tsinfo" --json | grep -A4 '"classes"' | tr -d ' \n' | grep -q '"classes":\["n01","n02","n03"\]' \
    || fail "Tiny-ImageNet classes"
mv tiny/train tiny/train.away
"$BIN/tsimport" tiny/val 2>/dev/null | "$BIN/tsinfo" --list | cut -f3,4,6 | cmp -s - <(cut -f2- tv.want) \
    && ok "Tiny-ImageNet val without train beside it: the annotations' classes, sorted" || fail "val without train"
mv tiny/train.away tiny/train
cp tiny/val/val_annotations.txt ann.txt
printf '\nval_4.png\tn09\n' >>tiny/val/val_annotations.txt
rc=0; "$BIN/tsimport" --split val tiny >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "val_annotations.txt: line 7: class 'n09' is not a class folder of tiny/val/../train$" err.txt \
    && ok "Tiny-ImageNet val: a class that is no train folder ($(cat err.txt))" || fail "class n09: exit $rc: $(cat err.txt)"
cp ann.txt tiny/val/val_annotations.txt && printf '\nval_3.png n01\n' >>tiny/val/val_annotations.txt
rc=0; "$BIN/tsimport" --split val tiny >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "val_annotations.txt: line 7: 'val_3.png' is listed twice" err.txt \
    && ok "Tiny-ImageNet val: a file listed twice ($(cat err.txt))" || fail "listed twice: exit $rc: $(cat err.txt)"
# CRLF line ends (a file saved on Windows) read the same; a line without a class, a path, a NUL
# byte and an empty file are refused naming the line
sed 's/$/\r/' ann.txt >tiny/val/val_annotations.txt
"$BIN/tsimport" --split val tiny 2>/dev/null | "$BIN/tsinfo" --list | cut -f2,3,4,6 | cmp -s - tv.txt \
    && ok "Tiny-ImageNet val: CRLF annotations read the same" || fail "CRLF annotations"
for t in "val_0.png:line 1: want FILE<TAB>CLASS, got 'val_0.png'" \
         "images/val_0.png\tn01:line 1: want FILE<TAB>CLASS, got 'images/val_0.png'" \
         "val_0.png\tn01\nval_1\0.png\tn01:line 2: a NUL byte" ":lists no images"; do
    printf "${t%%:*}" >tiny/val/val_annotations.txt
    rc=0; "$BIN/tsimport" --split val tiny >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.tsr ] && grep -qF "val_annotations.txt: ${t#*:}" err.txt \
        && ok "Tiny-ImageNet val annotations refused: $(cat err.txt)" || fail "annotations '${t%%:*}': exit $rc: $(cat err.txt)"
done
printf 'val_0.png\tn01\nval_77.png\tn02\n' >tiny/val/val_annotations.txt
rc=0; "$BIN/tsimport" --split val tiny >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && grep -q "val_77.png" err.txt && ok "Tiny-ImageNet val: a listed file that is missing ($(cat err.txt))" \
    || fail "missing listed file: exit $rc: $(cat err.txt)"
# decoding on threads: the same records for any -j, --limit across the windows of files, and the
# first bad file in order is the one named
"$BIN/tsexport" --png pngs fm.tsr || fail "a tree of 200 PNGs"
"$BIN/tsimport" -j 1 pngs >j1.tsr && "$BIN/tsimport" -j 3 pngs >j3.tsr && "$BIN/tsimport" pngs >jd.tsr \
    && "$BIN/tscmp" --exact j1.tsr j3.tsr && "$BIN/tscmp" --exact j1.tsr jd.tsr \
    && ok "imagefolder: -j 1, -j 3 and the default give the same records" || fail "imagefolder -j"
"$BIN/tsimport" -j 1 --limit 57 pngs >l1.tsr && "$BIN/tsimport" -j 3 --limit 57 pngs >l3.tsr \
    && "$BIN/tscmp" --exact l1.tsr l3.tsr && [ "$("$BIN/tsinfo" --json l3.tsr | grep -c '"records": 57')" = 1 ] \
    && ok "imagefolder --limit 57 with -j 3 (windows of 24)" || fail "imagefolder --limit with -j"
bad=$(ls pngs/*/*.png | sed -n 100p) && ls pngs/*/*.png | sed -n 150p | xargs -I{} sh -c 'head -c 60 {} >{}.tmp && mv {}.tmp {}'
head -c 50 "$bad" >bad.tmp && mv bad.tmp "$bad"
rc=0; "$BIN/tsimport" -j 3 pngs >/dev/null 2>err.txt || rc=$?
[ $rc = 1 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -q "$bad" err.txt \
    && ok "imagefolder -j 3: the first bad file is named ($(cat err.txt))" || fail "bad file with -j 3: exit $rc: $(cat err.txt)"
# --limit 0: a stream with the header and no records, in every format (idx and npy wrote one record)
for d in "$fmnist" f32 c10 pngs; do
    n=$("$BIN/tsimport" --limit 0 "$d" | "$BIN/tsinfo" --json | sed -n 's/.*"records": \([0-9]*\).*/\1/p')
    [ "$n" = 0 ] || fail "--limit 0 of $d: $n records"
done
ok "--limit 0: no records from idx, npy, cifar10 and imagefolder"
expect_usage tsimport -j 0 pngs
expect_usage tsimport
expect_usage tsimport --format nope "$fmnist"
expect_usage tsimport --split val "$fmnist"
expect_usage tsimport --limit x "$fmnist"
expect_usage tsimport "$PWD"/names.txt
grep -q "names.txt: not a directory: DATASET is a dataset's directory" err.usage && ok "a file operand: $(cat err.usage)" \
    || fail "a file operand: $(cat err.usage)"
# a path that is not there is an I/O error (1) that says so, with or without --format
for f in "" "--format idx"; do
    rc=0; "$BIN/tsimport" $f "$PWD/no_such_dir" >out.tsr 2>err.txt || rc=$?
    [ $rc = 1 ] && [ ! -s out.tsr ] && [ "$(cat err.txt)" = "tsimport: $PWD/no_such_dir: No such file or directory" ] \
        && ok "missing DATASET${f:+ ($f)}: $(cat err.txt)" || fail "missing DATASET $f: exit $rc $(cat err.txt)"
done
expect_exit 1 "missing dataset files" -- "$BIN/tsimport" --format idx "$PWD/f32"
head -c 3000 "$fmnist"/t10k-labels-idx1-ubyte.gz >digits/t10k-labels-idx1-ubyte.gz
expect_exit 1 "truncated IDX file" -- "$BIN/tsimport" --split test digits
# IDX files of other dtypes and shapes: integer labels of any width are read, others refused
# (a label of -1 left its record without one; float labels were truncated)
"$PYTHON" - <<'PY'
import numpy as np, os, struct
def idx(path, a, code, dt):
    a = np.asarray(a)
    with open(path, "wb") as f:
        f.write(bytes([0, 0, code, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape))
        f.write(a.astype(dt).tobytes())
cases = {"i16": ([1, 9, 2], 0x0B, ">i2"), "neg": ([1, -1, 2], 0x09, ">i1"), "big": ([1, 2, 12], 0x08, "u1"), "flt": ([1.7, 9.0, 2.0], 0x0D, ">f4"),
         "few": ([1, 2], 0x08, "u1"), "zero": ([1, 2, 3], 0x08, "u1")}
for d, (lab, code, dt) in cases.items():
    os.makedirs("idx_" + d, exist_ok=True)
    idx(f"idx_{d}/train-images-idx3-ubyte", np.zeros((3, 0 if d == "zero" else 2, 2)), 0x08, "u1")
    idx(f"idx_{d}/train-labels-idx1-ubyte", lab, code, dt)
PY
"$BIN/tsimport" -q --format idx idx_i16 | "$BIN/tsinfo" -l | awk '{print $3}' | tr '\n' ' ' | grep -q "^1 9 2 $" \
    && ok "idx: I16 labels read" || fail "idx: I16 labels"
for c in "neg:idx_neg/train-labels-idx1-ubyte: record 1: label -1 is negative" \
         "big:idx_big/train-labels-idx1-ubyte: record 2 (train_000002): label 12 outside the 10 classes of MNIST's digits" \
         "flt:idx_flt/train-labels-idx1-ubyte: labels are F32\[3\], want integers \[N\]" \
         "few:idx_few/train-labels-idx1-ubyte: 2 labels for the 3 images of idx_few/train-images-idx3-ubyte" \
         "zero:idx_zero/train-images-idx3-ubyte: images are U8\[3,0,2\], want U8 \[N,H,W\] with H, W >= 1"; do
    rc=0; "$BIN/tsimport" -q --format idx "idx_${c%%:*}" >/dev/null 2>err.txt || rc=$?
    if [ $rc = 1 ] && grep -q "^tsimport: ${c#*:}$" err.txt; then ok "idx ${c%%:*}: $(cat err.txt)"
    else fail "idx ${c%%:*}: exit $rc $(cat err.txt)"; fi
done
check_full tsimport --limit 50 "$fmnist"
"$BIN/tsimport" -q --limit 50 "$fmnist" >im_stdout.tsr
"$BIN/tsimport" -q --limit 50 -o im_file.tsr "$fmnist" >im_out.txt && [ ! -s im_out.txt ] \
    && "$BIN/tscmp" -q --exact im_stdout.tsr im_file.tsr && ok "-o FILE: stdout's records" || fail "tsimport -o FILE"
rc=0; "$BIN/tsimport" -q --limit 50 -o nodir/im.tsr "$fmnist" 2>err.txt || rc=$?
[ $rc = 1 ] && [ ! -e nodir ] && grep -q "nodir/im.tsr" err.txt && ok "-o nodir/im.tsr: $(cat err.txt)" \
    || fail "tsimport -o nodir/im.tsr: exit $rc: $(cat err.txt)"
check_tty tsimport --limit 5 "$fmnist"
finish

"""codecs_peer.py - the numpy/torch side of tests/parity/codecs.sh.

  write-npy DIR            numpy-written .npy files (dtypes, v1/v2/v3 headers, 0-d, big-endian, Fortran)
  check-npy DIR            our .npy files (codecs_tool npy-write): np.load values and numpy's exact bytes
  cmp-dump NPY DUMP        our npy-dump of a numpy file equals np.load
  check-st FILE            our safetensors file read with a few lines of numpy
  write-st-torch FILE      a safetensors file written from torch tensors with struct + json
  cmp-st FILE DUMP         our st-dump of FILE equals what the numpy reader sees
  write-img DIR            PIL-written JPEG (RGB, gray, CMYK) and PNG (RGBA, palette+tRNS, gray) files
  cmp-img FILE DUMP        our image_decode of FILE equals PIL's decode (torchvision's loader)
Exits 1 with a message on the first mismatch.
"""
import io
import json
import os
import pickle
import struct
import sys
import warnings

import numpy as np

ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
             "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}


def fail(msg):
    print("codecs_peer: " + msg)
    sys.exit(1)


def st_read(path):
    """The ~10-line numpy safetensors reader a Python user would write."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(data[b:end], dtype=ST_DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = (e["dtype"], a)
    return n, header, meta, out


def bf16_to_f32(a):
    return (a.astype(np.uint32) << 16).view(np.float32)


def fill(dtype, shape):
    """Mirror of codecs_tool.c fill()."""
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.int64)
    v = (i % 7) * 1.25 - 3
    table = {
        "f4": lambda: v.astype(np.float32), "f8": lambda: v / 3, "f2": lambda: v.astype(np.float16),
        "u1": lambda: (i * 37 % 256).astype(np.uint8), "i1": lambda: (i * 37 % 256).astype(np.uint8).view(np.int8),
        "b1": lambda: i % 3 == 0, "i2": lambda: (i * 1000 - 30000).astype(np.int16),
        "i8": lambda: i * 4000000000 - 5, "u8": lambda: i.astype(np.uint64) * np.uint64(3000000000000000000),
    }
    return table[dtype]().reshape(shape)


def parse_dump(lines):
    """Our dump: 'DTYPE[d0,d1]' then one value per line; returns (dtype, shape, values, rest)."""
    head = lines[0]
    dt, dims = head[:head.index("[")], head[head.index("[") + 1:-1]
    shape = tuple(int(x) for x in dims.split(",")) if dims else ()
    n = int(np.prod(shape, dtype=np.int64))
    vals = [float(x) for x in lines[1:1 + n]]
    return dt, shape, vals, lines[1 + n:]


def same_values(a, vals):
    ref = a.astype(np.float64).ravel() if a.dtype != np.uint64 else [float(int(x)) for x in a.ravel()]
    return len(vals) == len(ref) and all(x == y or (x != x and y != y) for x, y in zip(vals, ref))


def write_npy(d):
    rng = np.random.default_rng(0)
    arrays = {
        "np_f32.npy": (rng.standard_normal((3, 4)).astype(np.float32), None),
        "np_f64_v2.npy": (rng.standard_normal(5), (2, 0)),
        "np_u8_v3.npy": (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), (3, 0)),
        "np_i64_0d.npy": (np.array(-123456789012, dtype=np.int64), None),
        "np_f32_0d.npy": (np.array(2.5, dtype=np.float32), None),
        "np_bool.npy": (np.array([[True, False], [False, True]]), None),
        "np_i16.npy": (np.array([-32768, 0, 32767], dtype=np.int16), None),
        "np_f16.npy": (np.array([0.5, -1.0, 65504.0, 1e-7], dtype=np.float16), None),
        "np_u16.npy": (np.array([0, 65535], dtype=np.uint16), None),
        "np_i32_empty.npy": (np.zeros((0, 3), dtype=np.int32), None),
        "np_be_f4.npy": (np.array([1.5, -2.25, 3e38], dtype=">f4"), None),
        "np_be_i8.npy": (np.array([1, -2, 2**40], dtype=">i8"), None),
        "np_noncontig.npy": (np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2], None),
        "np_fortran.npy": (np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)), None),
    }
    for name, (a, version) in arrays.items():
        with open(f"{d}/{name}", "wb") as f:
            np.lib.format.write_array(f, a, version=version)


def check_npy(d):
    expect = {"f32_2x3": ("f4", (2, 3)), "u8_5": ("u1", (5,)), "i64_0d": ("i8", ()), "f16_4": ("f2", (4,)),
              "b1_2x2": ("b1", (2, 2)), "i16_3x1x2": ("i2", (3, 1, 2)), "f64_3": ("f8", (3,)),
              "f32_0x4": ("f4", (0, 4)), "u64_2": ("u8", (2,)), "i8_6": ("i1", (6,))}
    for name, (code, shape) in expect.items():
        path = f"{d}/{name}.npy"
        a = np.load(path)
        want = fill(code, shape)
        if a.dtype != want.dtype or a.shape != shape or not np.array_equal(a, want):
            fail(f"{path}: np.load gives {a.dtype}{a.shape} {a.ravel()[:8]}, want {want.dtype}{shape} {want.ravel()[:8]}")
        buf = io.BytesIO()
        np.save(buf, want)
        if buf.getvalue() != open(path, "rb").read():
            fail(f"{path}: bytes differ from np.save of the same array")
    print(f"check-npy: {len(expect)} files load in numpy with the same values and bytes as np.save")


def cmp_dump(npy, dump):
    a = np.load(npy)
    dt, shape, vals, _ = parse_dump(open(dump).read().split("\n"))
    if shape != a.shape or not same_values(a, vals):
        fail(f"{npy}: ours {dt}{shape} {vals[:6]} vs numpy {a.dtype}{a.shape} {a.ravel()[:6]}")


def check_st(path):
    n, header, meta, t = st_read(path)
    if n % 8:
        fail(f"{path}: header length {n} is not a multiple of 8")
    if meta != {"arch": "convnet3", "mean": "[0.5, 0.5, 0.5]"}:
        fail(f"{path}: metadata {meta}")
    size = {"F64": 8, "I64": 8, "F32": 4, "BF16": 2, "F16": 2, "U8": 1}
    order = sorted(t, key=lambda k: header[k]["data_offsets"])
    want_order = sorted(t, key=lambda k: (-size[header[k]["dtype"]], k))
    if order != want_order:
        fail(f"{path}: data order {order}, want {want_order}")
    checks = {"fc.weight": ("F32", fill("f4", (3, 4))), "fc.bias": ("F32", fill("f4", (3,))),
              "bn.num_batches_tracked": ("I64", np.array(12345)), "pix": ("U8", fill("u1", (2, 3))),
              "dbl": ("F64", fill("f8", (2,))), "empty": ("F16", np.zeros((0, 3), np.float16)),
              "half": ("BF16", fill("f4", (5,)))}
    for k, (dt, want) in checks.items():
        got_dt, a = t[k]
        if dt == "BF16":
            a = bf16_to_f32(a)
        if got_dt != dt or a.shape != want.shape or not np.array_equal(a, want):
            fail(f"{path}: tensor {k}: {got_dt}{a.shape} {a.ravel()[:6]}, want {dt}{want.shape} {want.ravel()[:6]}")
    print(f"check-st: {len(t)} tensors, metadata, order and padding as expected")


def write_st_torch(path):
    import torch
    torch.manual_seed(0)
    sd = {"conv1.weight": torch.randn(4, 3, 3, 3), "bn1.running_var": torch.rand(4) + 0.5,
          "bn1.num_batches_tracked": torch.tensor(7, dtype=torch.int64), "fc.bias": torch.randn(10).to(torch.bfloat16),
          "emb": torch.randn(2, 3).to(torch.float16), "mask": torch.tensor([True, False, True]),
          "idx": torch.tensor([[1, -2], [3, 4]], dtype=torch.int32), "d": torch.randn(3, dtype=torch.float64)}
    names = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bfloat16: "BF16",
             torch.float16: "F16", torch.bool: "BOOL", torch.int32: "I32"}
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for k in sorted(sd, key=lambda k: (-sd[k].element_size(), k)):
        v = sd[k].contiguous()
        raw = (v.view(torch.int16) if v.dtype == torch.bfloat16 else v).numpy().tobytes()
        header[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def cmp_st(path, dump):
    _, header, meta, t = st_read(path)
    lines = open(dump).read().split("\n")
    got_meta = {}
    while lines and lines[0].startswith("meta "):
        _, k, v = lines.pop(0).split(" ", 2)
        got_meta[k] = v
    if got_meta != meta:
        fail(f"{path}: metadata ours {got_meta} vs {meta}")
    seen = []
    while lines and lines[0]:
        name, rest = lines[0].split(" ", 1)
        dt, shape, vals, lines = parse_dump([rest] + lines[1:])
        want_dt, a = t[name]
        if want_dt == "BF16":
            a = bf16_to_f32(a)
        if dt != want_dt or shape != a.shape or not same_values(a, vals):
            fail(f"{path}: tensor {name}: ours {dt}{shape} {vals[:6]} vs {want_dt}{a.shape} {a.ravel()[:6]}")
        seen.append(name)
    if sorted(seen) != sorted(t):
        fail(f"{path}: tensors ours {sorted(seen)} vs {sorted(t)}")
    print(f"cmp-st: {len(seen)} tensors equal")


def write_img(d):
    from PIL import Image
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:37, 0:53]
    rgb = np.stack([x * 4, y * 6, (x + y) * 2], -1).astype(np.uint8)
    rgb[5:15, 5:20] = rng.integers(0, 256, (10, 15, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(f"{d}/rgb.jpg", quality=90)
    Image.fromarray(rgb).save(f"{d}/rgb420.jpg", quality=75, subsampling=2)
    Image.fromarray(rgb[..., 0]).save(f"{d}/gray.jpg")
    Image.fromarray(rgb).convert("CMYK").save(f"{d}/cmyk.jpg", quality=95)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (37, 53, 1), dtype=np.uint8)], -1)
    Image.fromarray(rgba).save(f"{d}/rgba.png")
    Image.fromarray(rgb).quantize(16).save(f"{d}/palette.png", transparency=3)
    Image.fromarray(rgb[..., 1]).save(f"{d}/gray.png")
    Image.fromarray(rgb).save(f"{d}/rgb.ppm")


def cmp_img(path, dump):
    from PIL import Image
    im = Image.open(path)
    im = im.convert("L" if im.mode in ("L", "I;16") else "RGB")
    a = np.asarray(im)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    dt, shape, vals, _ = parse_dump(open(dump).read().split("\n"))
    if dt != "U8" or shape != a.shape or not same_values(a, vals):
        got = np.array(vals).reshape(shape) if len(vals) == np.prod(shape) else None
        diff = np.abs(got - a).max() if got is not None and got.shape == a.shape else "shape"
        fail(f"{path}: ours {dt}{shape} vs PIL {a.shape}, max difference {diff}")


def pk_text(v):
    """The canonical text of codecs_tool's pk-dump for a value pickle.loads(encoding="bytes") gave."""
    if v is None:
        return "N"
    if v is True or v is False:
        return "T" if v else "F"
    if isinstance(v, int):
        return "i:%d" % v
    if isinstance(v, float):
        return "f:" + struct.pack(">d", v).hex()
    if isinstance(v, str):
        return "s:" + v.encode("utf-8", "surrogatepass").hex()
    if isinstance(v, (bytes, bytearray)):
        return "b:" + bytes(v).hex()
    if isinstance(v, list):
        return "[" + " ".join(pk_text(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + " ".join(pk_text(x) for x in v) + ")"
    if isinstance(v, dict):
        return "{" + " ".join(pk_text(k) + "=" + pk_text(x) for k, x in v.items()) + "}"
    if isinstance(v, np.ndarray):
        le = v.astype(v.dtype.newbyteorder("<"))
        return "A:%s:%s:%s" % (v.dtype.str[1:], "x".join(str(d) for d in v.shape), le.tobytes().hex())
    raise TypeError(type(v))


def pk_cases():
    """(name, object, protocols, want): every pickle.h value kind at the protocols that can hold it;
    want None: our dump must equal pk_text of what Python loads back; else a substring of our error."""
    rng = np.random.default_rng(3)
    ints = [0, 1, 255, 256, 65535, 65536, -1, -2**31, 2**31 - 1, 2**31, -2**31 - 1, 2**63 - 1, -2**63, 10**12]
    floats = [0.0, -1.5, 1e300, -2.5e-310, float("inf"), 3.141592653589793]
    shared = [1, 2]
    arrays = {dt: (rng.integers(0, 200, (2, 3)) if dt[-2] != "f" else rng.normal(size=(2, 3))).astype(dt)
              for dt in ("u1", "i1", "<i2", ">i2", "<u2", "<i4", ">i4", "<u4", "<i8", ">i8", "<u8", "<f2", "<f4",
                         ">f4", "<f8", ">f8")}
    arrays["b1"] = np.array([True, False, True])
    arrays["0d"] = np.array(7, np.int64)
    arrays["empty"] = np.zeros((0, 4), np.uint8)
    arrays["big"] = rng.integers(0, 256, (70000,)).astype(np.uint8)      # data past 64 KiB
    cases = [("ints", ints, range(6), None), ("floats", floats, range(6), None),
             ("consts", [None, True, False, (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)], range(6), None),
             ("strs", ["", "abc", "\u00e9\u2713", "x" * 300, "a\\b\nc\r\x00\x1a\U0001f600\\u0041"], range(6), None),
             ("bytes", [b"", b"\x00\xff", b"y" * 300], range(3, 6), None),
             ("nested", {"a": [1, {"b": (2.5, None)}], "c": {}, 5: "d"}, range(1, 6), None),
             ("shared", [shared, shared, (shared,)], range(6), None),
             ("many", list(range(2500)), range(6), None)]
    cases += [("array_" + k.replace("<", "le").replace(">", "be"), {"x": v}, range(6), None)
              for k, v in arrays.items()]
    cases += [("fortran", np.asfortranarray(np.arange(6, dtype=np.uint8).reshape(2, 3)), [2, 4, 5], None),
              ("complex", np.zeros(2, np.complex64), [2, 5], "not supported"),
              ("bigint", 2**64, [2], "wider than 64 bits"),
              ("set", {1, 2}, [4], "not supported")]
    return cases


# Protocol-0 text opcodes no Python 3 pickler writes: Python 2's STRING (a quoted literal with
# escapes) and UNICODE lines with backslash runs (Python 3 writes every backslash as \u005c).
TEXT0 = [("string_plain", b"S'abc'\np0\n.", None),
         ("string_escapes", b"(S'a\\x00\\xff\\n\\t\\\\\\''\nS\"it's\"\nS'\\101\\0\\777\\q\\a\\v'\nS''\nt.", None),
         ("string_dict", b"(dS'data'\n(lp1\nI1\naI2\nasS'labels'\nS'x\\x80y'\ns.", None),
         ("string_unquoted", b"Sabc\n.", "not quoted"),
         ("string_mixed_quotes", b"S'abc\"\n.", "not quoted"),
         ("string_trailing", b"S'a\\'\n.", "trailing backslash"),
         ("string_badhex", b"S'\\x4g'\n.", "two hexadecimal"),
         ("unicode_runs", b"(Va\\\\u0041\nV\\\\\\u0041\nV\\\\\nV\\q\xe9\nt.", None),
         ("unicode_badhex", b"V\\u00g1\n.", "not hexadecimal"),
         ("unicode_short", b"V\\u00\n.", "truncated"),
         ("unicode_range", b"V\\U00110000\n.", "above U+10FFFF")]
# Stack opcodes CPython's picklers rarely or never write (POP, POP_MARK, DUP), as other writers may:
# POP of a mark with nothing above it pops the mark, as Unpickler.load_pop does.
STACK = [("stack_pop", b"(I1\nI2\n0t.", None),
         ("stack_pop_mark", b"I7\n(I1\nI2\n1.", None),
         ("stack_dup", b"(I5\n2t.", None),
         ("stack_pop_at_mark", b"I9\n(0I3\n.", None),
         ("stack_pop_empty", b"0.", "stack is empty"),
         ("stack_dup_empty", b"2.", "stack is empty")]


def write_pk(d):
    os.makedirs(d, exist_ok=True)
    n = 0
    with open(os.path.join(d, "cases.txt"), "w") as idx:
        for name, blob, want in TEXT0 + STACK:
            f = name + ".pkl"
            if want is None:
                with warnings.catch_warnings():   # '\777': Python warns of the octal escape, then takes it mod 256
                    warnings.simplefilter("ignore", DeprecationWarning)
                    back = pickle.loads(blob, encoding="bytes")
                open(os.path.join(d, f + ".want"), "w").write(pk_text(back) + "\n")
            else:
                try:
                    pickle.loads(blob, encoding="bytes")
                    raise SystemExit("write-pk: %s loads in Python" % name)
                except (pickle.UnpicklingError, ValueError, UnicodeDecodeError, IndexError):
                    pass
                open(os.path.join(d, f + ".want"), "w").write("ERR " + want + "\n")
            open(os.path.join(d, f), "wb").write(blob)
            idx.write(f + "\n")
            n += 1
        for name, obj, protos, want in pk_cases():
            for p in protos:
                f = "%s_p%d.pkl" % (name, p)
                blob = pickle.dumps(obj, protocol=p)
                if want is None:
                    back = pickle.loads(blob, encoding="bytes")
                    open(os.path.join(d, f + ".want"), "w").write(pk_text(back) + "\n")
                else:
                    open(os.path.join(d, f + ".want"), "w").write("ERR " + want + "\n")
                open(os.path.join(d, f), "wb").write(blob)
                idx.write(f + "\n")
                n += 1
    print(f"write-pk: {n} pickles")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"write-npy": write_npy, "check-npy": check_npy, "cmp-dump": cmp_dump, "check-st": check_st,
     "write-st-torch": write_st_torch, "cmp-st": cmp_st, "write-img": write_img, "cmp-img": cmp_img,
     "write-pk": write_pk}[cmd](*args)

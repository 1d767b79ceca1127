#!/usr/bin/env python3
"""torch2safetensors.py - convert a PyTorch checkpoint to a ddpipe weights file (safetensors).

A user-side converter (ddpipe itself never runs Python). Accepts a plain state_dict, {"model": ...}
(torchvision's reference train.py, RDED), {"state_dict": ...}, or a whole pickled nn.Module;
strips DataParallel's "module." prefix; writes every tensor with numpy (no safetensors package
needed) plus ddpipe's metadata so `-w FILE` alone is enough:

  torch2safetensors.py resnet18-f37072fd.pth resnet18.safetensors --classes imagenet_classes.txt
  torch2safetensors.py cifar100_rn18.pth rn18m.safetensors --mean 0.5071,0.4867,0.4408 \\
      --std 0.2675,0.2565,0.2761 --input-size 32 --classes fine_label_names.txt
  torch2safetensors.py teacher.pth sub.safetensors --class-index 0,217,482   # keep 3 fc rows

The architecture is read from the tensor shapes (man 7 ddpipe-models) unless --arch is given.
Also importable: st_save(path, {name: ndarray}, metadata) and st_load(path) -> (dict, metadata).
"""
import argparse, json, os, struct, sys

import numpy as np

_DT = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
       "I8": "|i1", "U8": "|u1", "BOOL": "|b1", "U16": "<u2", "U32": "<u4", "U64": "<u8"}
_NP = {np.dtype(v).str: k for k, v in _DT.items()}


def st_save(path, tensors, metadata=None):
    """Writes {name: ndarray} as safetensors: order by dtype size descending then name, header
    space-padded to a multiple of 8. metadata: {str: str}."""
    arrs = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    order = sorted(arrs, key=lambda k: (-arrs[k].dtype.itemsize, k))
    header, off = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for k in order:
        a = arrs[k]
        dt = _NP.get(a.dtype.newbyteorder("<").str if a.dtype.byteorder == ">" else a.dtype.str)
        if dt is None:
            raise SystemExit(f"{k}: dtype {a.dtype} has no safetensors name")
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for k in order:
            f.write(arrs[k].astype(arrs[k].dtype.newbyteorder("<"), copy=False).tobytes())
    os.replace(path + ".tmp", path)


def st_load(path):
    """Reads a safetensors file: ({name: ndarray}, metadata dict)."""
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(buf[base + b:base + e], dtype=_DT[v["dtype"]]).reshape(v["shape"]).copy()
    return out, meta


_RESNETS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
            ((3, 4, 6, 3), True): "resnet50", ((3, 4, 23, 3), True): "resnet101"}


def describe(sd):
    """(arch, in_channels, num_classes, input_size) from the names and shapes, as ddpipe does."""
    if "conv1.weight" in sd:
        blocks = tuple(len({k.split(".")[1] for k in sd if k.startswith(f"layer{l}.")}) for l in range(1, 5))
        bottleneck = "layer1.0.conv3.weight" in sd
        name = _RESNETS.get((blocks, bottleneck))
        if name is None:
            raise SystemExit(f"resnet with blocks {blocks} is not in ddpipe's zoo")
        small = sd["conv1.weight"].shape[2] == 3
        return name + ("m" if small else ""), sd["conv1.weight"].shape[1], sd["fc.weight"].shape[0], 32 if small else 224
    if "0.weight" in sd and "1.running_mean" in sd:
        depth = 0
        while f"{4 * depth}.weight" in sd and sd[f"{4 * depth}.weight"].ndim == 4:
            depth += 1
        width, head = sd["0.weight"].shape[0], sd[f"{4 * depth + 1}.weight"]
        side = int(round((head.shape[1] / width) ** 0.5))
        size = next((s for s in (28, 32, 64, 224) if s >> depth == side), side << depth)
        arch = f"convnet{depth}" + ("" if width == 128 else f":width={width}")
        return arch, sd["0.weight"].shape[1], head.shape[0], size
    raise SystemExit("cannot tell the architecture from the names; give --arch and the sizes")


def main():
    import torch
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--arch", help="zoo name (default: from the shapes)")
    ap.add_argument("--classes", help="file with one class name per line, in label order")
    ap.add_argument("--class-index", help="comma-separated fc rows to keep (class-subset teachers)")
    ap.add_argument("--mean", help="per-channel mean, comma-separated (default: ImageNet's / Fashion-MNIST's)")
    ap.add_argument("--std", help="per-channel std, comma-separated")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--unsafe-pickle", action="store_true",
                    help="load with weights_only=False (trusted old files that pickle more than tensors)")
    a = ap.parse_args()
    kw = {"map_location": "cpu"}
    if a.unsafe_pickle is False and "weights_only" in torch.load.__code__.co_varnames:
        kw["weights_only"] = True
    obj = torch.load(a.checkpoint, **kw)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    sd = {}
    for k, v in obj.items():
        if not torch.is_tensor(v):
            continue
        k = k[7:] if k.startswith("module.") else k
        v = v.detach().cpu()
        if k.endswith("num_batches_tracked"):
            sd[k] = np.asarray(v.numpy(), dtype=np.int64).reshape(())
        else:
            sd[k] = v.float().numpy()
    head = "fc" if "fc.weight" in sd else None
    if head is None and "0.weight" in sd:
        head = max((k[:-7] for k in sd if k.endswith(".weight") and sd[k].ndim == 2), key=lambda s: int(s))
    if a.class_index:
        rows = [int(i) for i in a.class_index.split(",")]
        sd[head + ".weight"], sd[head + ".bias"] = sd[head + ".weight"][rows], sd[head + ".bias"][rows]
    arch, inch, ncls, size = describe(sd)
    meta = {"format": "ddpipe-weights/1", "arch": a.arch or arch, "in_channels": str(inch),
            "num_classes": str(ncls), "input_size": str(a.input_size or size)}
    if a.mean or a.std:
        if not (a.mean and a.std):
            raise SystemExit("--mean and --std go together")
        meta["mean"] = "[" + ",".join(a.mean.split(",")) + "]"
        meta["std"] = "[" + ",".join(a.std.split(",")) + "]"
        if len(json.loads(meta["mean"])) != inch or len(json.loads(meta["std"])) != inch:
            raise SystemExit(f"--mean/--std need {inch} values")
    if a.classes:
        with open(a.classes, encoding="utf-8") as f:
            names = [l.rstrip("\n") for l in f if l.strip()]
        if a.class_index:
            names = [names[int(i)] for i in a.class_index.split(",")] if len(names) != ncls else names
        if len(names) != ncls:
            raise SystemExit(f"{a.classes}: {len(names)} names for {ncls} classes")
        meta["classes"] = json.dumps(names, ensure_ascii=True, separators=(",", ":"))
    st_save(a.output, sd, meta)
    print(f"{a.output}: {meta['arch']}, {inch} channels, {ncls} classes, {len(sd)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()

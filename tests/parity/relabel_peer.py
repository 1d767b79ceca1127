#!/usr/bin/env python3
"""relabel_peer.py - the PyTorch side of tests/parity/relabel.sh.

  relabel_peer.py MODE IMAGES_NPY SHARD_DIR TEACHER.safetensors [TEACHER...]
      MODE batch | eval. IMAGES_NPY: the training images [N,C,H,W] (tsexport --npy). SHARD_DIR: relabel's
      output as WebDataset tar shards (tscat --shards), read with tarfile + numpy only. For every
      record the batch is rebuilt from the stored fields alone: per image crop rows/cols
      round(crops * side), F.interpolate(bilinear, align_corners=False) back to H x W, flip, then
      x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]; the teachers (torch nn.Sequential
      ConvNets loaded from the same safetensors) run on it, in train mode on x[:n // 2] and
      x[n // 2:] (mode batch, the reference's BSSL: FADRM's relabel.py split_point) or in eval mode, and the mean of their
      logits must equal the stored F16 logits within |d| <= 2e-3 + 2^-10 |ref| (F16 rounding is at
      most 2^-11 relative; float32 differences between the engines ~1e-5).
"""
import glob, io, json, os, sys, tarfile

import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pipelines"))
from torch2safetensors import st_load, describe  # noqa: E402

ATOL, RTOL = 2e-3, 2.0 ** -10


def teacher(path):
    sd, meta = st_load(path)
    arch, inch, nc, res = describe(sd)
    depth = int(arch[7:].split(":")[0])
    width = sd["0.weight"].shape[0]
    layers, c = [], inch
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AvgPool2d(2)]
        c, res = width, res // 2
    m = nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * res * res, nc))
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    mean = torch.tensor(json.loads(meta["mean"]) if "mean" in meta else [0.2860]).view(1, -1, 1, 1)
    std = torch.tensor(json.loads(meta["std"]) if "std" in meta else [0.3530]).view(1, -1, 1, 1)
    return m, mean, std


def records(shard_dir):
    recs = {}
    for path in sorted(glob.glob(f"{shard_dir}/*.tar")):
        with tarfile.open(path) as tf:
            for mem in tf.getmembers():
                parts = mem.name.split(".")
                if len(parts) == 3 and parts[2] == "npy":
                    recs.setdefault(parts[0], {})[parts[1]] = np.load(io.BytesIO(tf.extractfile(mem).read()))
    return [recs[k] for k in sorted(recs)]


def rebuild(x, r):
    _, _, H, W = x.shape
    imgs = []
    for i, (idx, c, fl) in enumerate(zip(r["index"], r["crops"], r["flips"])):
        top, left, h, w = (int(round(float(c[0]) * H)), int(round(float(c[1]) * W)),
                           int(round(float(c[2]) * H)), int(round(float(c[3]) * W)))
        im = F.interpolate(x[idx:idx + 1, :, top:top + h, left:left + w], size=(H, W), mode="bilinear",
                           align_corners=False)
        imgs.append(torch.flip(im, dims=[3]) if fl else im)
    b = torch.cat(imgs)
    y0, x0, y1, x1 = (int(v) for v in r["box"])
    perm = torch.from_numpy(r["perm"].astype(np.int64))
    if y1 > y0 and x1 > x0:
        b[:, :, y0:y1, x0:x1] = b[perm][:, :, y0:y1, x0:x1]
    return b


def main():
    mode, images, shards, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    torch.set_num_threads(2)
    x = torch.from_numpy(np.load(images).astype(np.float32))
    teachers = [teacher(p) for p in paths]
    worst, count = 0.0, 0
    with torch.no_grad():
        for r in records(shards):
            b = rebuild(x, r)
            out = 0
            for m, mean, std in teachers:
                m.train(mode == "batch")
                xn = (b - mean) / std
                h = len(xn) // 2 if len(xn) > 1 else len(xn)   # relabel.py: split_point = n // 2
                out = out + (torch.cat([m(xn[:h]), m(xn[h:])] if h < len(xn) else [m(xn)]) if mode == "batch"
                             else m(xn))
            ref = (out / len(teachers)).numpy()
            got = r["logits"].astype(np.float32)
            excess = np.abs(got - ref) - (ATOL + RTOL * np.abs(ref))
            worst = max(worst, float(np.abs(got - ref).max()))
            if (excess > 0).any():
                raise SystemExit(f"relabel parity ({mode}): batch of {len(b)}: logits differ by "
                                 f"{np.abs(got - ref).max():.3g}, tolerance {ATOL} + {RTOL:.3g}|ref|")
            count += 1
    if count == 0:
        raise SystemExit("no records read")
    print(f"relabel parity ({mode}, {len(paths)} teacher(s)): {count} batches, max abs diff {worst:.3g} "
          f"(tolerance {ATOL} + 2^-10 |ref|)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""recover_peer.py - the recover loop of ddpipe-method(7) section 2 and INFER's compensators (section 5)
written in PyTorch, the peer of tests/parity/recover.sh.

  recover_peer.py make DIR                 writes DIR/init (npy dataset for tsimport)
  recover_peer.py check OUT.npy INIT.npy SCHEDULE [metrics=FILE] [committee=W] TEACHER...
                                           compares ddpipe's output

SCHEDULE is "fused:ITERS:ARC:ALPHA" (stages of ITERS/(ARC+1) steps, Adam re-created per stage,
x = alpha*x + (1-alpha)*P between stages), "piece:START:END:TOTAL", or "ufc:ITERS:R_BN" (recover
--ufc: per batch and teacher m one compensator u [1,C,H,W], zero at the start, Adam on u with the
loss of teacher m on xn + u for the whole batch, no clamp; the output is the inputs, then per
teacher clamp(pixels(xn + u)) in input order). Without metrics= the run is --no-aug; with it, every
step's augmentation is the draw ddpipe wrote in its metrics (crop box, flip, roll: ddpipe's own
random draws, which torch cannot make), applied with torch's ops: crop then F.interpolate
(bilinear, align_corners=False), torch.flip, torch.roll. The loop is the reference's:
eval-mode teachers with BN forward hooks (BNStat of shared/bench/torch_recover_peer.py), x optimised
in normalized space with Adam(0.25, betas (0.5, 0.9), eps 1e-8), lr cosine over the global step,
clamp to [-m/s, (1-m)/s] after every step, teacher t mod M at step t, or with committee= (CV-DD's
recover.py) every teacher at every step on the same augmented view, the loss sum_m w_m (CE_m +
0.01 BN_m) with W "prior:A1,..,AM" (w = softmax(A / 5)) or "W1,..,WM"; ddpipe's stage boundaries
(x back to pixels clamped to [0,1], merged in pixels, normalized again) done the same way.
"""
import math, os, sys

import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "pipelines"))
from torch2safetensors import st_load  # noqa: E402

TOL = 2e-4


def convnet(nc, inch, res, width, depth):
    layers, c = [], inch
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AvgPool2d(2)]
        c, res = width, res // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * res * res, nc))


class BNStat:
    def __init__(self, bn):
        bn.register_forward_hook(self.hook)
        self.r = 0.0

    def hook(self, mod, inp, out):
        x = inp[0]
        n = x.shape[1]
        mean = x.mean([0, 2, 3])
        var = x.permute(1, 0, 2, 3).reshape(n, -1).var(1, unbiased=False)
        self.r = torch.norm(mod.running_var - var, 2) + torch.norm(mod.running_mean - mean, 2)


def load(path):
    sd, meta = st_load(path)
    depth = sum(1 for k in sd if k.endswith(".running_mean"))
    width = sd["0.weight"].shape[0]
    m = convnet(sd[f"{4 * depth + 1}.weight"].shape[0], sd["0.weight"].shape[1], int(meta["input_size"]), width, depth)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    hooks = [BNStat(x) for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    mean = torch.tensor([float(v) for v in json_list(meta["mean"])], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor([float(v) for v in json_list(meta["std"])], dtype=torch.float32).view(1, -1, 1, 1)
    return m, hooks, mean, std


def json_list(s):
    import json
    return json.loads(s) if isinstance(s, str) else s


def make(d):
    r = np.random.default_rng(3)
    os.makedirs(f"{d}/init", exist_ok=True)
    n, nc = 8, 4
    np.save(f"{d}/init/image.npy", r.random((n, 1, 16, 16), dtype=np.float32))
    np.save(f"{d}/init/label.npy", (np.arange(n) % nc).astype(np.int64))
    open(f"{d}/init/classes.txt", "w").write("a\nb\nc\nd\n")
    open(f"{d}/init/keys.txt", "w").write("".join(f"k{i:04d}\n" for i in range(n)))


def draws(path):
    """{(batch, stage or ("ufc", m), step): line} of a metrics file"""
    import json
    d = {}
    for line in open(path):
        j = json.loads(line)
        d[(j["batch"], ("ufc", j["ufc"]) if "ufc" in j else j["stage"], j["step"])] = j
    return d


def augment(x, j):
    if j is None:
        return x
    H, W = x.shape[2], x.shape[3]
    if "crop" in j:
        t, l, h, w = j["crop"]
        x = F.interpolate(x[:, :, t:t + h, l:l + w], size=(H, W), mode="bilinear", align_corners=False)
        if j["flip"]:
            x = torch.flip(x, dims=[3])
    if "roll" in j:
        x = torch.roll(x, shifts=tuple(j["roll"]), dims=(2, 3))
    return x


def check(out, init, sched, args):
    torch.set_num_threads(1)
    metrics = [a[len("metrics="):] for a in args if a.startswith("metrics=")]
    comm = [a[len("committee="):] for a in args if a.startswith("committee=")]
    teachers = [a for a in args if not a.startswith(("metrics=", "committee="))]
    dr = draws(metrics[0]) if metrics else None

    def draw(key):
        if dr is None:
            return None
        if key not in dr:
            sys.exit(f"no metrics line for batch {key[0]}, {key[1]}, step {key[2]}: run with --metrics-every 1")
        return dr[key]

    ts = [load(t) for t in teachers]
    weights = None
    if comm:
        if comm[0].startswith("prior:"):
            a = np.array([float(v) for v in comm[0][6:].split(",")]) / 5.0
            weights = list(np.exp(a) / np.exp(a).sum())
        else:
            weights = [float(v) for v in comm[0].split(",")]
        assert len(weights) == len(ts)
    mean, std = ts[0][2], ts[0][3]
    P = torch.from_numpy(np.load(init))
    y = torch.from_numpy(np.load(os.path.join(os.path.dirname(init), "label.npy")))
    kind, *a = sched.split(":")
    if kind == "ufc":
        return check_ufc(out, P, y, ts, int(a[0]), float(a[1]), draw, sched)
    if kind == "fused":
        iters, arc, alpha = int(a[0]), int(a[1]), float(a[2])
        stages = [(s * iters // (arc + 1), (s + 1) * iters // (arc + 1)) for s in range(arc + 1)]
        total = iters
    else:
        stages, total, alpha = [(int(a[0]), int(a[1]))], int(a[2]), 0.5
    lo, hi = -mean / std, (1 - mean) / std
    # batches: one image per class with the same ipc index (the order ddpipe forms them in)
    nc = int(y.max()) + 1
    ipc = [int((y[:i] == y[i]).sum()) for i in range(len(y))]
    res = P.clone()
    for i in sorted(set(ipc)):
        idx = [k for k in range(len(y)) if ipc[k] == i]
        idx.sort(key=lambda k: int(y[k]))
        x = P[idx].clone()
        for s, (t0, t1) in enumerate(stages):
            if s > 0:
                x = np.float32(alpha) * x + np.float32(1 - alpha) * P[idx]
            xn = ((x - mean) / std).requires_grad_(True)
            opt = torch.optim.Adam([xn], lr=0.25, betas=(0.5, 0.9), eps=1e-8)
            for t in range(t0, t1):
                for g in opt.param_groups:
                    g["lr"] = 0.5 * (1 + math.cos(math.pi * t / total)) * 0.25
                opt.zero_grad()
                xa = augment(xn, draw((i, s, t)))
                loss = 0.0
                for k, (m, hooks, _, _) in enumerate(ts):
                    if weights is None and k != t % len(ts):
                        continue
                    out_ = m(xa)
                    mult = [10.0] + [1.0] * (len(hooks) - 1)
                    lk = F.cross_entropy(out_, y[idx]) + 0.01 * sum(mm * h.r for mm, h in zip(mult, hooks))
                    loss = loss + (lk if weights is None else weights[k] * lk)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    xn.data = torch.max(torch.min(xn.data, hi), lo)
            x = (xn.detach() * std + mean).clamp(0, 1)
        res[idx] = x
    got = np.load(out)
    err = float(np.abs(got - res.numpy()).max())
    moved = float(np.abs(res.numpy() - P.numpy()).max())
    print(f"recover parity {sched} teachers {len(teachers)}{' committee ' + comm[0] if comm else ''}: max |ddpipe - torch| = {err:.3g} "
          f"(tolerance {TOL}; the images moved by up to {moved:.3g})")
    if not err <= TOL or moved < 0.05:
        sys.exit(1)


def check_ufc(out, P, y, ts, iters, r_bn, draw, sched):
    ipc = [int((y[:i] == y[i]).sum()) for i in range(len(y))]
    n, M = len(y), len(ts)
    res = torch.cat([P] * (M + 1))
    for i in sorted(set(ipc)):
        idx = [k for k in range(n) if ipc[k] == i]
        idx.sort(key=lambda k: int(y[k]))
        for mi, (m, hooks, mean, std) in enumerate(ts):
            xn = (P[idx] - mean) / std
            u = torch.zeros((1,) + tuple(P.shape[1:]), requires_grad=True)
            opt = torch.optim.Adam([u], lr=0.25, betas=(0.5, 0.9), eps=1e-8)
            for t in range(iters):
                for g in opt.param_groups:
                    g["lr"] = 0.5 * (1 + math.cos(math.pi * t / iters)) * 0.25
                opt.zero_grad()
                out_ = m(augment(xn + u, draw((i, ("ufc", mi), t))))
                mult = [10.0] + [1.0] * (len(hooks) - 1)
                loss = F.cross_entropy(out_, y[idx]) + r_bn * sum(mm * h.r for mm, h in zip(mult, hooks))
                loss.backward()
                opt.step()
            with torch.no_grad():
                res[[(mi + 1) * n + k for k in idx]] = ((xn + u) * std + mean).clamp(0, 1)
    got = np.load(out)
    if got.shape != tuple(res.shape):
        sys.exit(f"ddpipe wrote {got.shape}, the peer {tuple(res.shape)}")
    err = float(np.abs(got - res.numpy()).max())
    moved = float(np.abs(res.numpy()[n:] - torch.cat([P] * M).numpy()).max())
    print(f"recover --ufc parity {sched} teachers {M}: max |ddpipe - torch| = {err:.3g} "
          f"(tolerance {TOL}; the compensated images differ from the inputs by up to {moved:.3g})")
    if not err <= TOL or moved < 0.05 or not np.array_equal(got[:n], P.numpy()):
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])

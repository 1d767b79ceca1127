#!/usr/bin/env python3
"""optim_peer.py - the PyTorch side of tests/parity/optim.sh.

  optim_peer.py make DIR    writes DIR/init.safetensors (a conv-like weight [6,3,3,3], a linear
                            weight [5,7] and two 1-d params, "bn.weight" and "fc.bias"),
                            DIR/grads.safetensors (gradients step<k>.<name>, 3 steps) and
                            DIR/configs.txt (one C run per line)
  optim_peer.py check DIR   runs the same steps with torch.optim and compares with DIR/<config>.safetensors

Decay rule: ddpipe decays params with decay = 1 (conv/linear weights) unless DECAY_ALL; torch gets
the same rule through two param groups (weight_decay 0 for the others) or one group when DECAY_ALL.
Tolerance: max|ours - torch| <= 1e-6 * max(1, max|torch|) per param after 3 steps.
"""
import os, sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pipelines"))
from torch2safetensors import st_load, st_save  # noqa: E402

STEPS = 3
SHAPES = {"conv.weight": (6, 3, 3, 3), "fc.weight": (5, 7), "bn.weight": (6,), "fc.bias": (5,)}
# name: kind lr momentum nesterov beta1 beta2 eps wd decay_all
CONFIGS = {
    "sgd": ("sgd", 0.1, 0.9, 0, 0, 0, 0, 1e-4, 1),
    "sgd_nesterov": ("sgd", 0.1, 0.9, 1, 0, 0, 0, 1e-4, 1),
    "sgd_rule": ("sgd", 0.05, 0.9, 1, 0, 0, 0, 5e-2, 0),
    "adam_recover": ("adam", 0.25, 0, 0, 0.5, 0.9, 1e-8, 0, 0),
    "adam_l2": ("adam", 1e-2, 0, 0, 0.9, 0.999, 1e-8, 1e-2, 1),
    "adamw": ("adamw", 1e-3, 0, 0, 0.9, 0.999, 1e-8, 0.01, 0),
    "adamw_big": ("adamw", 0.1, 0, 0, 0.9, 0.999, 1e-8, 0.5, 0),
    "adamw_all": ("adamw", 1e-3, 0, 0, 0.9, 0.999, 1e-8, 0.01, 1),   # INFER's student: one group
}


def decays(name):
    return len(SHAPES[name]) > 1 and name.endswith(".weight")


def make(d):
    g = torch.Generator().manual_seed(3)
    init = {k: torch.randn(s, generator=g).numpy() for k, s in SHAPES.items()}
    grads = {f"step{t}.{k}": (torch.randn(s, generator=g) * (0.1 + t)).numpy()
             for t in range(STEPS) for k, s in SHAPES.items()}
    st_save(os.path.join(d, "init.safetensors"), init)
    st_save(os.path.join(d, "grads.safetensors"), grads)
    with open(os.path.join(d, "configs.txt"), "w") as f:
        for name, c in CONFIGS.items():
            f.write(" ".join([name, str(STEPS)] + [repr(v) if isinstance(v, float) else str(v) for v in c]) + "\n")


def run_torch(d, c):
    kind, lr, mom, nest, b1, b2, eps, wd, all_ = c
    init, _ = st_load(os.path.join(d, "init.safetensors"))
    grads, _ = st_load(os.path.join(d, "grads.safetensors"))
    ps = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    if all_:
        groups = [{"params": list(ps.values()), "weight_decay": wd}]
    else:
        groups = [{"params": [p for k, p in ps.items() if decays(k)], "weight_decay": wd},
                  {"params": [p for k, p in ps.items() if not decays(k)], "weight_decay": 0.0}]
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=mom, nesterov=bool(nest))
    elif kind == "adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=(b1, b2), eps=eps)
    else:
        opt = torch.optim.AdamW(groups, lr=lr, betas=(b1, b2), eps=eps)
    for t in range(STEPS):
        for k, p in ps.items():
            p.grad = torch.tensor(grads[f"step{t}.{k}"])
        opt.step()
    return {k: p.detach().numpy() for k, p in ps.items()}


def check(d):
    fails = 0
    for name, c in CONFIGS.items():
        ref = run_torch(d, c)
        ours, _ = st_load(os.path.join(d, name + ".safetensors"))
        worst = 0.0
        for k, r in ref.items():
            err = float(np.max(np.abs(ours[k].astype(np.float64) - r)))
            tol = 1e-6 * max(1.0, float(np.max(np.abs(r))))
            worst = max(worst, err)
            if err > tol:
                fails += 1
                print(f"  FAIL {name} {k}: max abs err {err:.3g} > {tol:.3g}")
        print(f"{name}: {STEPS} steps, max abs err vs torch.optim {worst:.3g}")
    print(f"optimizer parity: {fails} failure(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        raise SystemExit("usage: optim_peer.py make|check DIR")
    sys.exit(make(sys.argv[2]) or 0 if sys.argv[1] == "make" else check(sys.argv[2]))

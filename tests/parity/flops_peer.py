#!/usr/bin/env python3
"""flops_peer.py - the PyTorch side of tests/parity/flops.sh: the FLOPs of one recover step and one
training step of a model, counted over PyTorch's own modules as they run.

  flops_peer.py < CASES     lines of "recover|train|score ARCH STEM CHANNELS RES BATCH"

ARCH and STEM as model_peer.py's cases (its build(); STEM - for none; 10 classes). Forward hooks on every Conv2d and
Linear take the shapes torch ran (input, output, weight, groups) and count two FLOPs a
multiply-add: N Cout OH OW (Cin / groups) KH KW for a convolution, N in out for a linear layer.
Each pass of autograd's is counted where autograd runs it: the input gradient when the module's
input requires grad, the weight gradient when its weight does.
  recover: eval mode, weights frozen, the input requiring grad (recover's step: the pixels)
  train:   train mode, weights requiring grad, the input not (evaltrain's step)
  score:   eval mode, no gradients (patchsel's scoring forward)
Prints each line's total as an integer, a line each. The step is also run (forward, and backward where there is one),
so a module that never runs is not counted."""
import sys

import torch
import torch.nn as nn

import model_peer


def count(mode, arch, stem, inch, res, batch):
    model_peer.CASES = {"x": (arch, None if stem == "-" else stem, inch, res, batch, 10, "meta")}
    torch.manual_seed(0)
    m = model_peer.build("x")
    total = [0]

    def hook(mod, inputs, out):
        x = inputs[0]
        if isinstance(mod, nn.Conv2d):
            n, cout, oh, ow = out.shape
            kh, kw = mod.kernel_size
            f = 2 * n * cout * oh * ow * (mod.in_channels // mod.groups) * kh * kw
        else:
            f = 2 * x.numel() // x.shape[-1] * mod.in_features * mod.out_features
        passes = 1
        if torch.is_grad_enabled():
            passes += int(x.requires_grad) + int(mod.weight.requires_grad)
        total[0] += passes * f

    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            mod.register_forward_hook(hook)
    x = torch.rand(batch, inch, res, res)
    if mode == "recover":
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
        x.requires_grad_(True)
        m(x).sum().backward()
    elif mode == "train":
        m.train()
        m(x).sum().backward()
    else:
        m.eval()
        with torch.no_grad():
            m(x)
    return total[0]


if __name__ == "__main__":
    for line in filter(str.strip, sys.stdin):
        mode, arch, stem, inch, res, batch = line.split()
        print(count(mode, arch, stem, int(inch), int(res), int(batch)), flush=True)

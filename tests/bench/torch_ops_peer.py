#!/usr/bin/env python3
"""The PyTorch peer of bench_ops: times conv2d forward and backward-to-input (the recover step's
two convolution passes: the teacher is frozen) and backward-to-weights (training's third) for the
shapes given on the command line, with torch.nn.functional.conv2d and aten's convolution_backward
(autograd's own kernel), CPU fp32.

  torch_ops_peer.py --threads 2 --iters 10 NAME:N,CIN,H,W,COUT,K,STRIDE,PAD,GROUPS ...

Prints one line per shape: NAME FWD_MS BWD_DATA_MS BWD_FILTER_MS (the minimum over the timed
iterations).
"""
import argparse, time
import torch, torch.nn.functional as F


def best(fn, iters):
    fn()
    t = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - t0)
    return t * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("shapes", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with torch.no_grad():
        for spec in a.shapes:
            name, dims = spec.split(":")
            n, cin, h, w, cout, k, stride, pad, groups = map(int, dims.split(","))
            x = torch.rand(n, cin, h, w)
            wt = torch.randn(cout, cin // groups, k, k) * 0.1
            y = F.conv2d(x, wt, None, stride, pad, 1, groups)
            dy = torch.randn_like(y)
            fwd = best(lambda: F.conv2d(x, wt, None, stride, pad, 1, groups), a.iters)
            def back(mask):
                return best(lambda: torch.ops.aten.convolution_backward(
                    dy, x, wt, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], groups,
                    mask), a.iters)
            bwd, bwf = back([True, False, False]), back([False, True, False])
            print(f"{name} {fwd:.3f} {bwd:.3f} {bwf:.3f}", flush=True)


if __name__ == "__main__":
    main()

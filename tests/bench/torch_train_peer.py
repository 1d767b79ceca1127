#!/usr/bin/env python3
"""The PyTorch peer for evaltrain's speed: one training step as users run it on CPU.

One step = train-mode forward of a random batch, cross-entropy on hard labels, backward, SGD
(lr 0.05, momentum 0.9, weight decay 5e-4) step; 3 warm-up steps, then --iters timed steps.
Prints one line: images per second and ms per step. Run beside tests/bench/bench_train.c on the
same machine in the same session (tests/bench/run_train.sh) and quote the ratio.

  /usr/bin/python3 torch_train_peer.py --model convnet3 --res 28 --channels 1 --batch 128
  /usr/bin/python3 torch_train_peer.py --model resnet18m --res 32 --channels 3 --batch 128
"""
import argparse, time

import torch, torch.nn as nn, torch.nn.functional as F, torchvision


def convnet(nc, inch, res, width=128, depth=3):
    layers, c = [], inch
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AvgPool2d(2)]
        c, res = width, res // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * res * res, nc))


def build(name, nc, inch, res):
    if name == "convnet3":
        return convnet(nc, inch, res)
    if name == "resnet18m":           # resnet18 with the small stem (3x3 s1 conv, no maxpool)
        m = torchvision.models.resnet18(num_classes=nc)
        m.conv1 = nn.Conv2d(inch, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
        return m
    raise SystemExit(f"unknown model {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="convnet3")
    ap.add_argument("--res", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build(a.model, a.classes, a.channels, a.res).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(a.batch, a.channels, a.res, a.res)
    y = torch.arange(a.batch) % a.classes

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        step()
    dt = (time.perf_counter() - t0) / a.iters
    print(f"peer pytorch {torch.__version__} {a.model} {a.channels}x{a.res}x{a.res} batch {a.batch} cpu "
          f"threads {a.threads}: {a.batch / dt:.1f} img/s, {dt * 1e3:.1f} ms/step")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The PyTorch peer for evaltrain's speed: one training step as users run it on CPU.

One step = train-mode forward of a random batch, cross-entropy on hard labels, backward, SGD
(lr 0.05, momentum 0.9, weight decay 5e-4) step; 3 warm-up steps, then --iters timed steps.
Prints one line: images per second and ms per step. Run beside tests/bench/bench_train.c on the
same machine in the same session (tests/bench/run_train.sh) and quote the ratio.

  /usr/bin/python3 torch_train_peer.py --model convnet3 --res 28 --channels 1 --batch 128
  /usr/bin/python3 torch_train_peer.py --model resnet18m --res 32 --channels 3 --batch 128
  /usr/bin/python3 torch_train_peer.py --model densenet121m --res 32 --channels 3 --batch 128
"""
import argparse, os, sys, time

import torch, torch.nn.functional as F, torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "parity"))
from model_peer import DENSENETS_CIFAR, DenseNetCifar, EfficientNetB0Cifar, MobileNetV2Cifar, \
    ShuffleNetG2Cifar, convnet_named, small_stem  # noqa: E402

# the references' own small-image nets (tests/parity/model_peer.py's restatements)
CIFAR_NETS = {"mobilenet_v2_cifar": MobileNetV2Cifar, "shufflenet_g2_cifar": ShuffleNetG2Cifar,
              "efficientnet_b0_cifar": EfficientNetB0Cifar}


def build(name, nc, inch, res):
    """convnet3 (with its options: "convnet3:norm=instance"), the references' "_cifar" nets, or a
    zoo name: torchvision's architecture; a trailing "m" is the small stem (stride-1 first conv, no
    stem pooling), as in tests/parity/model_peer.py."""
    if name.startswith("convnet3"):
        return convnet_named(name, nc, inch, res)
    if name in CIFAR_NETS:
        return CIFAR_NETS[name](nc, inch)
    if name in DENSENETS_CIFAR:
        return DenseNetCifar(*DENSENETS_CIFAR[name], nc, inch)
    arch = name[:-1] if name.endswith("m") else name
    m = getattr(torchvision.models, arch, None)
    if m is None:
        raise SystemExit(f"unknown model {name}")
    m = m(num_classes=nc)
    return small_stem(m, arch, inch) if name.endswith("m") else m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="convnet3")
    ap.add_argument("--res", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="fp16 autocast + GradScaler")
    ap.add_argument("--score", action="store_true",
                    help="patchsel's scoring: eval-mode forward without gradients, logits to the host")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build(a.model, a.classes, a.channels, a.res).train().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.rand(a.batch, a.channels, a.res, a.res).to(dev)
    y = (torch.arange(a.batch) % a.classes).to(dev)
    scaler = (torch.amp.GradScaler(dev.type, enabled=a.amp) if hasattr(torch.amp, "GradScaler")
              else torch.cuda.amp.GradScaler(enabled=a.amp))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        opt.zero_grad()
        if a.amp:
            with torch.autocast(dev.type, dtype=torch.float16):
                loss = F.cross_entropy(model(x), y)
        else:
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def score():
        with torch.no_grad():
            if a.amp:
                with torch.autocast(dev.type, dtype=torch.float16):
                    model(x).float().cpu()
            else:
                model(x).cpu()

    if a.score:
        model.eval()
    run = score if a.score else step
    for _ in range(3):
        run()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        run()
    sync()
    dt = (time.perf_counter() - t0) / a.iters
    print(f"peer pytorch {torch.__version__} {'score ' if a.score else ''}{a.model} {a.channels}x{a.res}x{a.res} batch {a.batch} "
          f"{a.device}{' amp' if a.amp else ''} threads {a.threads}: {a.batch / dt:.1f} img/s, {dt * 1e3:.1f} ms/step")


if __name__ == "__main__":
    main()

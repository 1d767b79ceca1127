#!/usr/bin/env python3
"""cifarnets_peer.py - the PyTorch side of tests/parity/cifarnets.sh's converter part.

  cifarnets_peer.py convert   FADRM-style checkpoints of mobilenet_v2_cifar and densenet121_cifar,
                              UFC-style ones (the state_dict under "state_dict" beside "acc" and
                              "epoch") of shufflenet_g2_cifar and efficientnet_b0_cifar
                              (10 classes): model_peer.py's definitions, random
                              weights, BN running statistics of the 10 random 32-px images written
                              to np_rgb/ (for tsimport --format npy), saved as FADRM saves its
                              teachers (torch.save of the state_dict, num_batches_tracked kept) with
                              DataParallel's "module." names; converted by pipelines/torch2safetensors.py
                              with FADRM's CIFAR-100 mean/std and no --arch. Writes conv/CASE.safetensors,
                              conv/CASE.log (the converter's stderr), conv/ref.json (torch float64's mean
                              cross-entropy and top-1) and conv/cases.txt.
  cifarnets_peer.py check     the converter's arch is the zoo name; conv/CASE.json (evaltrain
                              --eval-only) has torch's mean cross-entropy within 1e-4 relative and its top-1;
                              a checkpoint that pickles a call (beside a float: the loader this torch's
                              weights_only cannot take) is refused without the call being made.
"""
import json, os, sys

import numpy as np
import torch, torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(here, "..", "..", "pipelines")]
from model_peer import CIFAR, DENSENETS_CIFAR, DenseNetCifar, EfficientNetB0Cifar, MobileNetV2Cifar, \
    ShuffleNetG2Cifar  # noqa: E402
from torch2safetensors import st_load  # noqa: E402
from evaltrain_peer import bn_stats_of, convert  # noqa: E402

TOL_LOSS = 1e-4
CASES = {"mobilenet_v2_cifar": 10, "densenet121_cifar": 10,   # the stream's 10 classes
         "shufflenet_g2_cifar": 10, "efficientnet_b0_cifar": 10}
UFC = ("shufflenet_g2_cifar", "efficientnet_b0_cifar")   # saved as UFC saves: {"state_dict": ..., "acc", "epoch"}


def build(case, ncls):
    if case == "mobilenet_v2_cifar":
        return MobileNetV2Cifar(ncls)
    if case == "shufflenet_g2_cifar":
        return ShuffleNetG2Cifar(ncls)
    if case == "efficientnet_b0_cifar":
        return EfficientNetB0Cifar(ncls)
    return DenseNetCifar(*DENSENETS_CIFAR[case], ncls)


class _Opener:
    def __reduce__(self):
        return (open, ("conv/pwned", "w"))


def make():
    torch.set_num_threads(2)
    torch.manual_seed(11)
    os.makedirs("np_rgb", exist_ok=True)
    os.makedirs("conv", exist_ok=True)
    x, y = torch.rand(10, 3, 32, 32), torch.arange(10)
    np.save("np_rgb/image.npy", x.numpy())
    np.save("np_rgb/label.npy", y.numpy())
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR)
    ref = {}
    for case, ncls in CASES.items():
        m = build(case, ncls)
        bn_stats_of(m, (x - mean) / std)
        sd = {"module." + k: v for k, v in m.state_dict().items()}
        torch.save({"state_dict": sd, "acc": 50.0, "epoch": 199} if case in UFC else sd, f"conv/{case}.pth")
        convert([f"conv/{case}.pth", f"conv/{case}.safetensors", "--mean", ",".join(map(str, CIFAR[0])),
                 "--std", ",".join(map(str, CIFAR[1]))], f"conv/{case}.log")
        with torch.no_grad():
            logits = m.double()((x.double() - mean.double()) / std.double())
        ref[case] = {"loss": float(F.cross_entropy(logits, y)),
                     "top1": 100.0 * float((logits.argmax(1) == y).sum()) / len(y)}
    # a UFC-style checkpoint that also pickles a call (open(), which would create conv/pwned): the
    # converter's tensors-only loading refuses it without calling it
    torch.save({"state_dict": {"linear.weight": torch.zeros(2, 2)}, "acc": 1.0, "x": _Opener()}, "conv/evil.pth")
    convert(["conv/evil.pth", "conv/evil.safetensors"], "conv/evil.log")
    # the same fallback on a file whose byteorder record (torch 2's) says big-endian: refused
    import zipfile
    torch.save({"state_dict": {"linear.weight": torch.zeros(2, 2)}, "acc": 1.0}, "conv/big.pth")
    with zipfile.ZipFile("conv/big.pth", "a") as z:
        z.writestr(next(n for n in z.namelist() if n.endswith("/data.pkl"))[:-len("data.pkl")] + "byteorder", "big")
    convert(["conv/big.pth", "conv/big.safetensors"], "conv/big.log")
    with open("conv/ref.json", "w") as f:
        json.dump(ref, f)
    with open("conv/cases.txt", "w") as f:
        f.write("\n".join(CASES) + "\n")


def check():
    ref, fails = json.load(open("conv/ref.json")), 0
    for case, r in ref.items():
        try:
            arch = st_load(f"conv/{case}.safetensors")[1].get("arch")
            o = json.loads(open(f"conv/{case}.json").read().strip().splitlines()[-1])
        except (OSError, IndexError, ValueError) as e:
            log = open(f"conv/{case}.log").read().strip().splitlines()[-1:]
            print(f"FAIL: {case}: no converted weights or evaltrain result ({e}; converter: {log})")
            fails += 1
            continue
        ok = arch == case and abs(o["loss"] - r["loss"]) <= TOL_LOSS * max(1.0, abs(r["loss"])) \
            and o["top1"] == r["top1"]
        print(("ok: " if ok else "FAIL: ") + f"{'UFC' if case in UFC else 'FADRM'}-style {case} checkpoint converted "
              f"as {arch}: --eval-only loss "
              f"torch {r['loss']:.6g} ours {o['loss']:.6g}, top1 torch {r['top1']:.1f} ours {o['top1']:.1f}")
        fails += not ok
    log = open("conv/evil.log").read()
    ok = "is not a tensor or a container of tensors" in log and not os.path.exists("conv/pwned") \
        and not os.path.exists("conv/evil.safetensors")
    print(("ok: " if ok else "FAIL: ") + f"a checkpoint pickling a call is refused, the call not made: {log.strip()}")
    big = open("conv/big.log").read()
    ok_big = "big-endian storages" in big and not os.path.exists("conv/big.safetensors")
    print(("ok: " if ok_big else "FAIL: ") + f"a big-endian checkpoint is refused: {big.strip()}")
    return fails == 0 and ok and ok_big


if __name__ == "__main__":
    if sys.argv[1:] == ["convert"]:
        sys.exit(make() or 0)
    if sys.argv[1:] == ["check"]:
        sys.exit(0 if check() else 1)
    raise SystemExit("usage: cifarnets_peer.py convert|check")

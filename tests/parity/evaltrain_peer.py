#!/usr/bin/env python3
"""evaltrain_peer.py - the PyTorch side of tests/parity/evaltrain.sh (files in the current directory).

  evaltrain_peer.py tvmodel FMNIST
      Trains a torchvision resnet18 with the small stem (1 channel) for 2 SGD steps on 32 training
      images and saves tv.pth = {"model": state_dict, ...} as torchvision's reference scripts do.
  evaltrain_peer.py check FMNIST
      (1) One epoch of SGD (momentum 0.9, weight decay 5e-4 on every param: torch.optim's single
      group), no augmentation, no shuffling, batches of 32 over the first 256 Fashion-MNIST training
      images, lr 0.001, from init.safetensors; every float tensor (weights and BN running statistics)
      must match PyTorch's within max abs diff 1e-5. The reference is PyTorch in float64 (the exact
      answer); PyTorch's own float32 distance from it is printed beside ours. Why lr 0.001: the
      epoch passes ReLU inputs within 1e-7 of the kink (measured in float64 on this data: 7.5e-8 in
      the second block at step 4, 2e-9 in the first at step 6), which fall on either side under
      any float32 summation order, and at lr >= 0.002 momentum and BN amplify one such flip to
      1e-5..1e-4 by the epoch's end (PyTorch float32 and an im2col engine both did so at lr 0.002,
      landing 9e-5 from float64 and 1e-7 from each other). At lr 0.001 a flip stays near 1e-7, so
      the check holds for any correct float32 implementation and still fails on a wrong gradient,
      momentum or running-statistics update. One step at lr 0.05 on 32 images is checked the same
      way against ours1.safetensors (observed 5e-7); weight decay at full strength is
      tests/parity/optim.sh's. And --batch 16 --micro 2 over 44 images (ours_micro.safetensors)
      against the FKD reference's gradient accumulation (train_fkd.py): slices of batch/micro = 8,
      each slice's mean loss divided by micro, so the last batch of 12 is a slice of 8 and one of 4
      (BN sees them apart), each weighted 1/2. And --bn-momentum 0.19 (evaltrain --teacher's
      default) over 64 images (ours_twice.safetensors) against RDED's student step
      (validation/main.py): a no-grad train-mode forward for its accuracy, then the training
      forward, on the same batch, so BN's running statistics move twice. (2) tv.pth evaluated on the first 100 test images:
      top-1 equal to ours.json's exactly, mean cross-entropy within 1e-4 relative (ours printed to
      6 significant digits).
  evaltrain_peer.py own FMNIST
      (5) evaltrain --res 28 on images kept at their own sizes: 32 Fashion-MNIST training images
      each at 20, 28 (the stored uint8) and 45 px (np_s20/, np_s28/, np_s45/ as exported by
      tsexport --npy), --rrc-scale 1,1 (the whole image, for a square one) --no-flip, one epoch
      of SGD as in (1) at lr 0.001: ours_own.safetensors, and ours_own_noaug.safetensors (--no-aug:
      Resize + CenterCrop, the same on a square image), within 1e-5 of float64 PyTorch trained
      on each image resized to 28 x 28 with antialias=True (torchvision's RandomResizedCrop on a
      PIL image antialiases too).
  evaltrain_peer.py tvzoo
      Every torchvision net of the zoo beyond resnet18 (TVZOO: both stems where the zoo has two,
      1 input channel, 10 classes, random weights with BN running statistics those of the images
      evaluated) saved as checkpoints of the forms users have (state_dict, {"model": ...},
      {"state_dict": ...}, "module." names, pickled modules) and converted by
      pipelines/torch2safetensors.py's main() (guessing the architecture; one case gives --arch).
      Writes zoo/CASE.safetensors, zoo/CASE.log (the converter's stderr), zoo/ref.json (torch
      float64's top-1 and mean cross-entropy on the first 8 test images, np28/ or np64/ as
      exported by tsexport --npy: 64 px for the nets that need more than 28) and zoo/cases.txt
      (CASE PX per evaluated case) for evaltrain --eval-only.
  evaltrain_peer.py tvzoo-check
      The converter's arch metadata equals the zoo name (and a small-stem state_dict of a net whose
      stems differ only in stride gets the imagenet name and a warning naming --arch); ours.json's
      mean cross-entropy within 1e-4 relative of torch's, top-1 equal up to the images whose two
      largest float64 logits are within 1e-4 (either side is a correct float32 answer).
  evaltrain_peer.py refconv / refconv-check
      The dataset-distillation ConvNet as the references name it (RDED's layers.conv / layers.norm,
      FADRM's and UFC's features Sequential, "classifier" heads), 3 channels, 32 px, random weights
      with BN running statistics of the 10 random images written to np_rgb/: converted by
      torch2safetensors.py as convnet3, evaltrain --eval-only (refconv/CASE.json) gives torch's
      mean cross-entropy (1e-4) and top-1; a 1-channel one (first convolution padded by 3, 28-px
      images of np_gray/) as convnet3:pad=3, FADRM's ShuffleNetV2 as shufflenet_v2_x0_5m, likewise;
      its other norms too: instance norm (a state_dict) as convnet3:norm=instance, GroupNorm(4, C)
      (a pickled module, whose groups the converter reads) as norm=group, RDED's without norm (1
      channel) as convnet3:pad=3,norm=none, FADRM's layer-norm one (1 channel) as
      convnet3:pad=3,norm=layer; a 2-d norm weight is refused, nothing written. refconv/cases.txt lists
      CASE DATA (rgb or gray) per converted case.
  evaltrain_peer.py val224 / val224-check
      A model made for 224 px (torchvision resnet18, 1 input channel, random weights, BN running
      statistics of the images) evaluates every validation image after Resize(256) (antialiased
      bilinear, shorter side to 256, the longer int(256 * long / short)) and CenterCrop(224), as
      torchvision's reference does: 8 test images at 250x300 and at 300x250 (np_wide/, np_tall/
      as exported by tsexport --npy), converted with --input-size 224; val224 writes val/ref.json
      (float64 top-1, mean cross-entropy, near-ties per shape) and val/rn18.safetensors,
      val224-check compares val/wide.json and val/tall.json (evaltrain --eval-only) as tvzoo-check.
"""
import gzip, json, os, sys

import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F, torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pipelines"))
from torch2safetensors import st_load  # noqa: E402

MEAN, STD = 0.2860, 0.3530
TOL_SGD, TOL_LOSS = 1e-5, 1e-4


def idx(path):
    with gzip.open(path) as f:
        buf = f.read()
    ndim = buf[3]
    shape = [int.from_bytes(buf[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(buf, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def data(root, split, n):
    pre = "train" if split == "train" else "t10k"
    x = idx(f"{root}/{pre}-images-idx3-ubyte.gz")[:n].astype(np.float32) / np.float32(255)
    y = idx(f"{root}/{pre}-labels-idx1-ubyte.gz")[:n].astype(np.int64)
    return torch.from_numpy(x[:, None].copy()), torch.from_numpy(y)


def convnet(nc=10, inch=1, res=28, width=128, depth=3):
    layers, c = [], inch
    for _ in range(depth):
        layers += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AvgPool2d(2)]
        c, res = width, res // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * res * res, nc))


def norm(x):
    return (x - MEAN) / STD


def sgd_run(root, n, batch, lr, mom, wd, init, dtype, xy=None, micro=1, twice=False):
    t, meta = st_load(init)
    assert meta.get("arch") == "convnet3", meta.get("arch")
    m = convnet()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in t.items()}, strict=True)
    m = m.to(dtype)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=mom, weight_decay=wd)
    x, y = xy if xy is not None else data(root, "train", n)
    x = x.to(dtype)
    small = batch // micro   # the FKD reference's gradient accumulation (train_fkd.py)
    assert small * micro == batch
    for s in range(0, n, batch):
        opt.zero_grad()
        nb = min(batch, n - s)
        for a in range(s, s + nb, small):
            e = min(a + small, s + nb)
            if twice:   # RDED's validation/main.py: a forward for the accuracy first, train mode
                with torch.no_grad():
                    m(norm(x[a:e]))
            (F.cross_entropy(m(norm(x[a:e])), y[a:e]) / micro).backward()
        opt.step()
    return {k: v.double().numpy() for k, v in m.state_dict().items() if v.is_floating_point()}


def sgd(root, n, batch, lr, mom, wd, init, ours, xy=None, what="images", micro=1, twice=False):
    torch.set_num_threads(2)
    ref = sgd_run(root, n, batch, lr, mom, wd, init, torch.float64, xy and (xy[0].double(), xy[1]), micro, twice)
    t32 = sgd_run(root, n, batch, lr, mom, wd, init, torch.float32, xy and (xy[0].float(), xy[1]), micro, twice)
    got, _ = st_load(ours)
    worst, where, worst32 = 0.0, "", 0.0
    for k, v in ref.items():
        d = float(np.abs(got[k] - v).max())
        worst32 = max(worst32, float(np.abs(t32[k] - v).max()))
        if d > worst:
            worst, where = d, k
    print(f"sgd parity ({n} {what}, lr {lr}) against float64 PyTorch: ours max abs diff "
          f"{worst:.3g} ({where}), tolerance {TOL_SGD}; float32 PyTorch {worst32:.3g}")
    return worst <= TOL_SGD


def tvmodel(root, n, out):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
    x, y = data(root, "train", n)
    m.train()
    for s in range(0, n, 16):
        opt.zero_grad()
        F.cross_entropy(m(norm(x[s:s + 16])), y[s:s + 16]).backward()
        opt.step()
    torch.save({"model": m.state_dict(), "epoch": 0}, out)
    return True


def tveval(root, n, pth, ours_json):
    torch.set_num_threads(2)
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.load_state_dict(torch.load(pth)["model"])
    m.eval()
    x, y = data(root, "test", n)
    with torch.no_grad():
        logits = m(norm(x))
    top1 = 100.0 * float((logits.argmax(1) == y).sum()) / n
    loss = float(F.cross_entropy(logits, y))
    ours = json.loads(open(ours_json).read().strip().splitlines()[-1])
    print(f"torchvision checkpoint: top1 torch {top1:.4f} ours {ours['top1']:.4f}; "
          f"loss torch {loss:.6g} ours {ours['loss']:.6g}")
    return abs(ours["top1"] - top1) < 1e-3 and abs(ours["loss"] - loss) <= TOL_LOSS * max(1.0, loss)


# case: (torchvision constructor, stem, checkpoint form, converter arguments, expected arch, eval px)
# eval px 0: not evaluated (the file's stem is knowingly not the module's)
TVZOO = {
    "mobilenet_v2": ("mobilenet_v2", "imagenet", "model", [], "mobilenet_v2", 28),
    "mobilenet_v2m": ("mobilenet_v2", "small", "pickle", [], "mobilenet_v2m", 28),
    "mobilenet_v2m_arch": ("mobilenet_v2", "small", "plain", ["--arch", "mobilenet_v2m"], "mobilenet_v2m", 28),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", "imagenet", "state_dict", [], "shufflenet_v2_x0_5", 28),
    "shufflenet_v2_x0_5m": ("shufflenet_v2_x0_5", "small", "pickle", [], "shufflenet_v2_x0_5m", 28),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", "imagenet", "pickle", [], "shufflenet_v2_x1_0", 28),
    "shufflenet_v2_x1_0m": ("shufflenet_v2_x1_0", "small", "pickle", [], "shufflenet_v2_x1_0m", 28),
    "shufflenet_v2_x1_0m_sd": ("shufflenet_v2_x1_0", "small", "model", [], "shufflenet_v2_x1_0", 0),
    "densenet121": ("densenet121", "imagenet", "module.", [], "densenet121", 64),
    "densenet121m": ("densenet121", "small", "model", [], "densenet121m", 28),
    "densenet169m": ("densenet169", "small", "plain", [], "densenet169m", 28),
    "densenet201": ("densenet201", "imagenet", "plain", [], "densenet201", 64),
    "efficientnet_b0": ("efficientnet_b0", "imagenet", "model", [], "efficientnet_b0", 28),
    "efficientnet_b0m": ("efficientnet_b0", "small", "pickle", [], "efficientnet_b0m", 28),
    "wide_resnet50_2": ("wide_resnet50_2", "imagenet", "plain", [], "wide_resnet50_2", 28),
    "wide_resnet50_2m": ("wide_resnet50_2", "small", "model", [], "wide_resnet50_2m", 28),
    "resnet50": ("resnet50", "imagenet", "plain", [], "resnet50", 28),
    "vgg11_bn": ("vgg11_bn", "imagenet", "state_dict", [], "vgg11_bn", 64),
    "vgg11": ("vgg11", "imagenet", "plain", [], "vgg11", 64),
    "alexnet": ("alexnet", "imagenet", "model", [], "alexnet", 64),
}
ZOO_N, TIE = 8, 1e-4


def bn_stats_of(m, x):
    """Sets every BatchNorm's running statistics to those of the batch x (a cumulative average over
    one train-mode forward, no gradients) and leaves m in eval mode."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.momentum = None
        m.train()
        m(x)
    m.eval()


def convert(argv, log):
    """pipelines/torch2safetensors.py's main() on argv, its standard error (and a SystemExit's
    message) written to the file log."""
    import contextlib, io
    import torch2safetensors as t2s
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            t2s.main(argv)
        except SystemExit as e:
            print(f"converter exit: {e}", file=sys.stderr)
    with open(log, "w") as f:
        f.write(err.getvalue())


def gray_first_conv(m):
    """The first convolution with 1 input channel, its kernel, stride, padding and bias kept."""
    name, c = next((n, c) for n, c in m.named_modules() if isinstance(c, nn.Conv2d))
    parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
    setattr(parent, name.rpartition(".")[2], nn.Conv2d(1, c.out_channels, c.kernel_size, c.stride, c.padding,
                                                       bias=c.bias is not None))
    return m


def tvzoo():
    from model_peer import small_stem
    torch.set_num_threads(1)   # small shapes: a second thread gains nothing and stalls on a busy machine
    os.makedirs("zoo", exist_ok=True)
    ref, evals = {}, []
    for i, (case, (ctor, stem, form, args, _, px)) in enumerate(TVZOO.items()):
        torch.manual_seed(200 + i)
        m = getattr(torchvision.models, ctor)(num_classes=10)
        m = small_stem(m, ctor, 1) if stem == "small" else gray_first_conv(m)
        if px:
            x = torch.from_numpy(np.load(f"np{px}/image.npy")[:ZOO_N])
            y = torch.from_numpy(np.load(f"np{px}/label.npy")[:ZOO_N])
        # running statistics of the images evaluated below: with statistics of other inputs the
        # deep nets' eval-mode logits reach 1e5 and float32 itself is off by half of that
        bn_stats_of(m, norm(x) if px else torch.rand(4, 1, 28, 28))
        sd = m.state_dict()
        obj = {"pickle": m, "plain": sd, "model": {"model": sd, "epoch": 1}, "state_dict": {"state_dict": sd},
               "module.": {"module." + k: v for k, v in sd.items()}}[form]
        pth = f"zoo/{case}.pth"
        torch.save(obj, pth)
        # --input-size: a model of 224 px or more gets Resize + CenterCrop of the data in evaltrain
        argv = [pth, f"zoo/{case}.safetensors", "--mean", str(MEAN), "--std", str(STD), "--input-size",
                str(max(px, 28))] + args
        convert(argv + (["--unsafe-pickle"] if form == "pickle" else []), f"zoo/{case}.log")
        if px:
            with torch.no_grad():
                logits = m.double()(norm(x.double()))
            top2 = logits.topk(2, 1).values
            ties = int((top2[:, 0] - top2[:, 1] <= TIE * max(1.0, float(logits.abs().max()))).sum())
            ref[case] = {"top1": 100.0 * float((logits.argmax(1) == y).sum()) / ZOO_N,
                         "loss": float(F.cross_entropy(logits, y)), "ties": ties}
            evals.append(f"{case} {px}")
    with open("zoo/ref.json", "w") as f:
        json.dump(ref, f)
    with open("zoo/cases.txt", "w") as f:
        f.write("".join(e + "\n" for e in evals))
    return True


def tvzoo_check():
    ref, fails = json.load(open("zoo/ref.json")), 0
    for case, (_, _, form, _, want, px) in TVZOO.items():
        log = open(f"zoo/{case}.log").read().strip()
        try:
            got = st_load(f"zoo/{case}.safetensors")[1].get("arch")
        except OSError:
            got = None
        line = f"{case} ({form}): converter arch {got}"
        ok = got == want
        if not ok:
            line += f", want {want}: {log.splitlines()[-1] if log else ''}"
        if ok and not px:
            ok = f"--arch {want}m" in log
            line += ", warns to give --arch" if ok else f", no warning naming --arch {want}m: '{log}'"
        if ok and px:
            r = ref[case]
            try:
                o = json.loads(open(f"zoo/{case}.json").read().strip().splitlines()[-1])
            except (OSError, IndexError, ValueError):
                print(f"FAIL: {line}; zoo/{case}.json: no evaltrain --eval-only result")
                fails += 1
                continue
            ok = abs(o["loss"] - r["loss"]) <= TOL_LOSS * max(1.0, abs(r["loss"])) \
                and abs(o["top1"] - r["top1"]) <= 100.0 * r["ties"] / ZOO_N + 1e-3
            line += (f"; --eval-only on {ZOO_N} {px}-px images: top1 torch {r['top1']:.2f} ours {o['top1']:.2f}"
                     f" ({r['ties']} near-ties), loss torch {r['loss']:.6g} ours {o['loss']:.6g}")
        print(("ok: " if ok else "FAIL: ") + line)
        fails += not ok
    print(f"torch2safetensors over the zoo: {fails} failure(s) in {len(TVZOO)} cases")
    return fails == 0


RGB_MEAN, RGB_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _dd_convnet(channel, norm, rded):
    """The dataset-distillation ConvNet (depth 3, width 128, 32 px, ReLU, average pooling) as the
    references define it: RDED's synthesize/models.py (layers.conv / layers.norm ModuleLists in a
    ModuleDict) or FADRM's / UFC's models/conv*.py (one features Sequential), both with the
    1-channel rule (first convolution padded by 3) and a "classifier" head; norm as their net_norm:
    batch, instance (GroupNorm(C, C)), group (GroupNorm(4, C)), layer (LayerNorm([C, H, W])) or none
    (no norm modules)."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            mk_norm = {"batch": lambda c, s: [nn.BatchNorm2d(c)], "instance": lambda c, s: [nn.GroupNorm(c, c)],
                       "group": lambda c, s: [nn.GroupNorm(4, c)], "layer": lambda c, s: [nn.LayerNorm([c, s, s])],
                       "none": lambda c, s: []}[norm]
            convs, norms, c = [], [], channel
            for d in range(3):
                convs.append(nn.Conv2d(c, 128, 3, padding=3 if channel == 1 and d == 0 else 1))
                norms.append(mk_norm(128, 32 >> d))   # the block's map: 32, 16, 8 (28 px + padding 3: 32)
                c = 128
            if rded:
                self.layers = nn.ModuleDict({"conv": nn.ModuleList(convs),
                                             "norm": nn.ModuleList([n for ns in norms for n in ns])})
            else:
                self.features = nn.Sequential(*[m for d in range(3) for m in [convs[d]] + norms[d] +
                                                [nn.ReLU(), nn.AvgPool2d(2)]])
            self.classifier = nn.Linear(128 * 4 * 4, 10)

        def forward(self, x):
            if rded:
                for d, cv in enumerate(self.layers["conv"]):
                    x = cv(x)
                    x = self.layers["norm"][d](x) if len(self.layers["norm"]) else x
                    x = F.avg_pool2d(F.relu(x), 2)
            else:
                x = self.features(x)
            return self.classifier(x.flatten(1))
    return Net()


def _fadrm_shufflenet(ncls=10):
    """FADRM's small-image ShuffleNetV2 at net_size 0.5 (models/shufflenetv2.py): a 3x3 stride-1
    stem without max pool, stages of a down block (two branches, each ending in ReLU but the
    depthwise-led left one) and split blocks, channel shuffle with 2 groups, a 1x1 conv to 1024,
    global average pool and "linear"; its parameter names (conv1..5 / bn1..5 per block)."""
    def cbr(cin, cout, k, stride=1, groups=1):
        return nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)

    def shuffle(x):
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)

    class Down(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            mid = cout // 2
            self.conv1, self.bn1 = cbr(cin, cin, 3, 2, cin)
            self.conv2, self.bn2 = cbr(cin, mid, 1)
            self.conv3, self.bn3 = cbr(cin, mid, 1)
            self.conv4, self.bn4 = cbr(mid, mid, 3, 2, mid)
            self.conv5, self.bn5 = cbr(mid, mid, 1)

        def forward(self, x):
            a = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
            b = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(F.relu(self.bn3(self.conv3(x))))))))
            return shuffle(torch.cat([a, b], 1))

    class Basic(nn.Module):
        def __init__(self, c):
            super().__init__()
            h = c // 2
            self.conv1, self.bn1 = cbr(h, h, 1)
            self.conv2, self.bn2 = cbr(h, h, 3, 1, h)
            self.conv3, self.bn3 = cbr(h, h, 1)

        def forward(self, x):
            h = x.shape[1] // 2
            out = F.relu(self.bn3(self.conv3(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x[:, h:]))))))))
            return shuffle(torch.cat([x[:, :h], out], 1))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = cbr(3, 24, 3)
            cin, layers = 24, []
            for cout, n in ((48, 3), (96, 7), (192, 3)):
                layers.append(nn.Sequential(Down(cin, cout), *[Basic(cout) for _ in range(n)]))
                cin = cout
            self.layer1, self.layer2, self.layer3 = layers
            self.conv2, self.bn2 = cbr(192, 1024, 1)
            self.linear = nn.Linear(1024, ncls)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
            x = F.relu(self.bn2(self.conv2(x)))
            return self.linear(x.mean((2, 3)))
    return Net()


def refconv():
    """Reference nets' checkpoints (RDED's and FADRM's ConvNet names, 3 channels at 32 px and 1
    channel at 28 px; FADRM's ShuffleNetV2), random weights, BN running statistics of the images,
    heads scaled up, converted by torch2safetensors.py; the ConvNet's other norms (GroupNorm affine
    perturbed): instance norm from a state_dict, GroupNorm(4, C) from a pickled module (the groups
    are not in the tensors), none (RDED's, 1 channel), layer norm (1 channel); a 2-d norm weight
    must be refused.
    Writes np_rgb/ and np_gray/ (10 images each, for tsimport --format npy), refconv/CASE.safetensors
    and .log, refconv/ref.json (float64 mean cross-entropy and top-1 per converted case, with the
    image set it is evaluated on)."""
    import torch2safetensors as t2s
    torch.manual_seed(7)
    os.makedirs("refconv", exist_ok=True)
    y = torch.arange(10)
    data = {}
    for name, shape, mean, std in (("rgb", (10, 3, 32, 32), RGB_MEAN, RGB_STD), ("gray", (10, 1, 28, 28), [MEAN], [STD])):
        os.makedirs(f"np_{name}", exist_ok=True)
        x = torch.rand(*shape)
        np.save(f"np_{name}/image.npy", x.numpy())
        np.save(f"np_{name}/label.npy", y.numpy())
        data[shape[1]] = (name, x, torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1))
    ref = {}
    for case, channel, kind, rded, form in (("rded", 3, "batch", True, "model"), ("fadrm", 3, "batch", False, "plain"),
                                            ("fadrm_gray", 1, "batch", False, "plain"),
                                            ("fadrm_instance", 3, "instance", False, "plain"),
                                            ("fadrm_group", 3, "group", False, "pickled"),
                                            ("rded_none_gray", 1, "none", True, "plain"),
                                            ("fadrm_layer_gray", 1, "layer", False, "plain"),
                                            ("fadrm_shufflenet", 3, "batch", None, "module.")):
        name, x, mean, std = data[channel]
        m = _fadrm_shufflenet() if rded is None else _dd_convnet(channel, kind, rded)
        if kind == "batch":
            bn_stats_of(m, (x - mean) / std)
        # a head 30 times the default init: logits of a few units, so that a network computing
        # anything else (a tensor in the wrong place) moves the cross-entropy well past 1e-4
        head = [mod for mod in m.modules() if isinstance(mod, nn.Linear)][-1]
        with torch.no_grad():
            head.weight.mul_(30)
            for mod in m.modules():
                if isinstance(mod, (nn.GroupNorm, nn.LayerNorm)):
                    mod.weight.uniform_(0.5, 1.5)
                    mod.bias.normal_(0, 0.1)
        m.eval()
        sd = m.state_dict()
        extra = []
        if form == "pickled":   # a whole module, of importable classes only (FADRM's names)
            torch.save(nn.ModuleDict({"features": m.features, "classifier": m.classifier}), f"refconv/{case}.pth")
            extra = ["--unsafe-pickle"]
        else:
            torch.save({"model": sd} if form == "model" else {"module." + k: v for k, v in sd.items()}
                       if form == "module." else sd, f"refconv/{case}.pth")
        convert([f"refconv/{case}.pth", f"refconv/{case}.safetensors", "--mean", ",".join(map(str, mean.flatten().tolist())),
                 "--std", ",".join(map(str, std.flatten().tolist()))] + extra, f"refconv/{case}.log")
        with torch.no_grad():
            logits = m.double()((x.double() - mean.double()) / std.double())
        ref[case] = {"loss": float(F.cross_entropy(logits, y)), "data": name,
                     "top1": 100.0 * float((logits.argmax(1) == y).sum()) / len(y)}
    # a ConvNet whose norm weight is 2-d (no net_norm makes one): refused, nothing written
    sd_ln = {"features.0.weight": torch.zeros(128, 3, 3, 3), "features.0.bias": torch.zeros(128),
             "features.1.weight": torch.ones(128, 32), "features.1.bias": torch.zeros(128, 32),
             "classifier.weight": torch.zeros(10, 128 * 16 * 16), "classifier.bias": torch.zeros(10)}
    torch.save(sd_ln, "refconv/odd_norm.pth")
    convert(["refconv/odd_norm.pth", "refconv/odd_norm.safetensors"], "refconv/odd_norm.log")
    # a net with conv1 but neither ResNet layers nor FADRM's CIFAR nets' (another reference
    # repository's own CIFAR net: these names are a cut UFC MobileNetV2's); the converter says so,
    # and so does ddpipe's loader on the raw tensors (no metadata). And a cut ShuffleNetG2's names
    # (layerL.N.conv1 as a ResNet's, a "linear" head, no conv3): neither a ResNet nor UFC's G2
    sd_g2 = {"conv1.weight": np.zeros((24, 3, 1, 1), np.float32), "layer1.0.conv1.weight": np.zeros((8, 24, 1, 1),
             np.float32), "linear.weight": np.zeros((10, 800), np.float32), "linear.bias": np.zeros(10, np.float32)}
    torch.save({k: torch.from_numpy(v) for k, v in sd_g2.items()}, "refconv/ufc_g2.pth")
    t2s.st_save("refconv/ufc_g2_raw.safetensors", sd_g2)
    convert(["refconv/ufc_g2.pth", "refconv/ufc_g2.safetensors"], "refconv/ufc_g2.log")
    sd = {"conv1.weight": np.zeros((32, 3, 3, 3), np.float32), "bn1.weight": np.ones(32, np.float32),
          "layers.0.conv1.weight": np.zeros((32, 32, 1, 1), np.float32),
          "linear.weight": np.zeros((10, 1280), np.float32), "linear.bias": np.zeros(10, np.float32)}
    t2s.st_save("refconv/ufc_mbv2_raw.safetensors", sd)
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, "refconv/ufc_mbv2.pth")
    convert(["refconv/ufc_mbv2.pth", "refconv/ufc_mbv2.safetensors"], "refconv/ufc_mbv2.log")
    with open("refconv/ref.json", "w") as f:
        json.dump(ref, f)
    with open("refconv/cases.txt", "w") as f:
        f.write("".join(f"{case} {r['data']}\n" for case, r in ref.items()))
    return True


def refconv_check():
    ref, fails = json.load(open("refconv/ref.json")), 0
    for case, r in ref.items():
        try:
            o = json.loads(open(f"refconv/{case}.json").read().strip().splitlines()[-1])
            arch = st_load(f"refconv/{case}.safetensors")[1].get("arch")
        except (OSError, IndexError, ValueError) as e:
            print(f"FAIL: reference ConvNet {case}: no converted weights or evaltrain result ({e})")
            fails += 1
            continue
        want = {"fadrm_shufflenet": "shufflenet_v2_x0_5m", "fadrm_gray": "convnet3:pad=3",
                "fadrm_instance": "convnet3:norm=instance", "fadrm_group": "convnet3:norm=group",
                "rded_none_gray": "convnet3:pad=3,norm=none",
                "fadrm_layer_gray": "convnet3:pad=3,norm=layer"}.get(case, "convnet3")
        ok = arch == want and abs(o["loss"] - r["loss"]) <= TOL_LOSS * max(1.0, abs(r["loss"])) \
            and o["top1"] == r["top1"]
        print(("ok: " if ok else "FAIL: ") + f"reference net ({case}'s names) converted as {arch}: --eval-only "
              f"loss torch {r['loss']:.6g} ours {o['loss']:.6g}, top1 torch {r['top1']:.1f} ours {o['top1']:.1f}")
        fails += not ok
    for case, want in (("odd_norm", "whose norm weight is 2-d"),
                       ("ufc_mbv2", "not a torchvision ResNet"), ("ufc_mbv2_loader", "not a torchvision ResNet"),
                       ("ufc_g2", "linear instead of fc: not a torchvision ResNet nor UFC's ShuffleNetG2"),
                       ("ufc_g2_loader", "no 2-d fc.weight: not a torchvision ResNet nor UFC's ShuffleNetG2 (its head is "
                        "linear")):
        log = open(f"refconv/{case}.log").read()
        ok = want in log and (case.endswith("_loader") or not os.path.exists(f"refconv/{case}.safetensors"))
        print(("ok: " if ok else "FAIL: ") + f"reference checkpoint {case} refused: {log.strip().splitlines()[-1:]}")
        fails += not ok
    return fails == 0


def val_transform(x):
    from torchvision.transforms import functional as TF
    return TF.center_crop(TF.resize(x, 256, antialias=True), [224, 224])


def val224():
    import contextlib, io
    import torch2safetensors as t2s
    torch.set_num_threads(2)
    torch.manual_seed(7)
    m = gray_first_conv(torchvision.models.resnet18(num_classes=10))
    xs = {k: torch.from_numpy(np.load(f"np_{k}/image.npy")) for k in ("wide", "tall")}
    ys = {k: torch.from_numpy(np.load(f"np_{k}/label.npy")) for k in ("wide", "tall")}
    crops = {k: val_transform(x) for k, x in xs.items()}
    assert all(c.shape[1:] == (1, 224, 224) for c in crops.values())
    bn_stats_of(m, norm(torch.cat(list(crops.values()))))
    os.makedirs("val", exist_ok=True)
    torch.save(m.state_dict(), "val/rn18.pth")
    with contextlib.redirect_stderr(io.StringIO()):
        t2s.main(["val/rn18.pth", "val/rn18.safetensors", "--mean", str(MEAN), "--std", str(STD),
                  "--input-size", "224"])
    ref = {}
    with torch.no_grad():
        m = m.double()
        for k, c in crops.items():
            logits = m(norm(c.double()))
            top2 = logits.topk(2, 1).values
            ties = int((top2[:, 0] - top2[:, 1] <= TIE * max(1.0, float(logits.abs().max()))).sum())
            ref[k] = {"top1": 100.0 * float((logits.argmax(1) == ys[k]).sum()) / len(c),
                      "loss": float(F.cross_entropy(logits, ys[k])), "ties": ties, "n": len(c)}
    with open("val/ref.json", "w") as f:
        json.dump(ref, f)
    return True


def val224_check():
    ref, fails = json.load(open("val/ref.json")), 0
    for k, r in ref.items():
        o = json.loads(open(f"val/{k}.json").read().strip().splitlines()[-1])
        ok = abs(o["loss"] - r["loss"]) <= TOL_LOSS * max(1.0, abs(r["loss"])) \
            and abs(o["top1"] - r["top1"]) <= 100.0 * r["ties"] / r["n"] + 1e-3
        print(("ok: " if ok else "FAIL: ") + f"224-px model, {k} images through Resize(256) + CenterCrop(224): "
              f"top1 torch {r['top1']:.2f} ours {o['top1']:.2f} ({r['ties']} near-ties), "
              f"loss torch {r['loss']:.6g} ours {o['loss']:.6g}")
        fails += not ok
    return fails == 0


OWN_PARTS = ("s20", "s28", "s45")


def own_sizes_data():
    """The images of np_s20/, np_s28/, np_s45/ (in that order, as tscat joined them), each resized
    whole to 28 x 28, bilinear with antialias (float64): torchvision's RandomResizedCrop at scale 1
    on a square image, whose box is the whole image."""
    xs, ys = [], []
    for part in OWN_PARTS:
        x = torch.from_numpy(np.load(f"np_{part}/image.npy")).double()
        xs.append(F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True))
        ys.append(torch.from_numpy(np.load(f"np_{part}/label.npy").astype(np.int64)))
    return torch.cat(xs), torch.cat(ys)


def main():
    cmd = sys.argv[1]
    if cmd == "val224":
        sys.exit(0 if val224() else 1)
    if cmd == "val224-check":
        sys.exit(0 if val224_check() else 1)
    if cmd == "tvzoo":
        sys.exit(0 if tvzoo() else 1)
    if cmd == "tvzoo-check":
        sys.exit(0 if tvzoo_check() else 1)
    if cmd == "refconv":
        sys.exit(0 if refconv() else 1)
    if cmd == "refconv-check":
        sys.exit(0 if refconv_check() else 1)
    root = sys.argv[2]
    if cmd == "tvmodel":
        good = tvmodel(root, 32, "tv.pth")
    elif cmd == "check":
        good = sgd(root, 256, 32, 0.001, 0.9, 5e-4, "init.safetensors", "ours.safetensors")
        good &= sgd(root, 32, 32, 0.05, 0.9, 5e-4, "init.safetensors", "ours1.safetensors")
        good &= sgd(root, 44, 16, 0.001, 0.9, 5e-4, "init.safetensors", "ours_micro.safetensors",
                    what="images, batch 16 as 2 micro-batches, the last batch 12 (8 + 4, each loss / 2)", micro=2)
        good &= sgd(root, 64, 32, 0.001, 0.9, 5e-4, "init.safetensors", "ours_twice.safetensors",
                    what="images, --bn-momentum 0.19 against two train-mode forwards per step", twice=True)
        good &= tveval(root, 100, "tv.pth", "ours.json")
    elif cmd == "own":
        xy, good = own_sizes_data(), True
        for ours, how in (("ours_own", "RandomResizedCrop"), ("ours_own_noaug", "Resize + CenterCrop")):
            good &= sgd(root, len(xy[1]), 32, 0.001, 0.9, 5e-4, "init.safetensors", ours + ".safetensors", xy,
                        f"images of 20, 28 and 45 px trained at --res 28 through {how}")
    else:
        raise SystemExit(f"unknown command {cmd}")
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()

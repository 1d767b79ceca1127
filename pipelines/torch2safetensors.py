#!/usr/bin/env python3
"""torch2safetensors.py - convert a PyTorch checkpoint to a ddpipe weights file (safetensors).

A user-side converter (ddpipe itself never runs Python). Accepts a plain state_dict, {"model": ...}
(torchvision's reference train.py, RDED), {"state_dict": ...}, the one dict of tensors under any
other key ({"net": ...}, {"model_state_dict": ...}; --key K picks one of several), or a whole
pickled nn.Module;
strips DataParallel's "module." prefix; writes every tensor with numpy (no safetensors package
needed) plus ddpipe's metadata so `-w FILE` alone is enough:

  torch2safetensors.py resnet18-f37072fd.pth resnet18.safetensors --classes imagenet_classes.txt
  torch2safetensors.py cifar100_rn18.pth rn18m.safetensors --mean 0.5071,0.4867,0.4408 \\
      --std 0.2675,0.2565,0.2761 --input-size 32 --classes fine_label_names.txt
  torch2safetensors.py teacher.pth sub.safetensors --class-index 0,217,482   # keep 3 fc rows

The architecture is read from the tensor shapes (man 7 ddpipe-models) unless --arch is given,
as ddpipe's loader reads it; the small-image stems of mobilenet_v2, shufflenet_v2_x0_5 / x1_0 and
efficientnet_b0 differ only in stride, so they are read from a pickled module's first convolution
(and ShuffleNet's max pool) and otherwise need --arch NAMEm (a state_dict gets a warning).
Also importable: st_save(path, {name: ndarray}, metadata) and st_load(path) -> (dict, metadata).
"""
import argparse, json, os, pickle, struct, sys

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


def default_norm(inch):
    """ddpipe-models(7) DEFAULT NORMALIZATION (libcommon/models/layers.c): what the programs apply to a file
    without mean/std."""
    if inch == 1:
        return [0.286], [0.353]
    if inch == 3:
        return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    return [0.5] * inch, [0.5] * inch


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


_RESNETS = {((2, 2, 2, 2), False, 64): "resnet18", ((3, 4, 6, 3), False, 64): "resnet34",
            ((3, 4, 6, 3), True, 64): "resnet50", ((3, 4, 23, 3), True, 64): "resnet101",
            ((3, 4, 6, 3), True, 128): "wide_resnet50_2"}
_DENSENETS = {(6, 12, 24, 16): "densenet121", (6, 12, 32, 32): "densenet169", (6, 12, 48, 32): "densenet201"}
_SHUFFLENETS = {24: "shufflenet_v2_x0_5", 58: "shufflenet_v2_x1_0"}   # stage2's branch2 width
_EFFICIENTNET_B0 = (1, 2, 2, 3, 3, 4, 1)                               # MBConv blocks per stage
# FADRM's models/densenet.py: (dense layers per block, growth rate) -> the zoo's name
_DENSENETS_CIFAR = {((6, 12, 24, 16), 32): "densenet121_cifar", ((6, 12, 32, 32), 32): "densenet169_cifar",
                    ((6, 12, 48, 32), 32): "densenet201_cifar", ((6, 12, 36, 24), 48): "densenet161_cifar",
                    ((6, 12, 24, 16), 12): "densenet_cifar"}
# the nets whose small stem differs from torchvision's only in stride: not readable from shapes
STRIDE_ONLY = ("mobilenet_v2", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "efficientnet_b0")


def _count(sd, fmt, first=0):
    """How many of fmt % i, i = first, first+1, ..., are keys of sd."""
    n = 0
    while fmt % (first + n) in sd:
        n += 1
    return n


def _torchvision(sd):
    """(zoo name, small stem from the shapes, first conv, head) of the zoo's torchvision nets other
    than the ResNets, from their characteristic names as libcommon/models/weights.c reads them;
    None when the names fit none of them."""
    if "features.conv0.weight" in sd and "classifier.weight" in sd:
        first = sd["features.conv0.weight"]
        blocks = tuple(_count(sd, f"features.denseblock{b}.denselayer%d.conv1.weight", 1) for b in range(1, 5))
        return _DENSENETS.get(blocks, f"densenet with blocks {blocks}"), first.shape[2] == 3, first, sd["classifier.weight"]
    if "conv1.0.weight" in sd and "fc.weight" in sd:
        b = sd.get("stage2.0.branch2.0.weight")
        width = b.shape[0] if b is not None else 0
        name = _SHUFFLENETS.get(width, f"shufflenet_v2 with stage2 branch width {width}")
        return name, False, sd["conv1.0.weight"], sd["fc.weight"]
    if "features.0.0.weight" in sd and "classifier.1.weight" in sd:
        first, head = sd["features.0.0.weight"], sd["classifier.1.weight"]
        if "features.18.0.weight" in sd and "features.1.conv.0.0.weight" in sd:
            return ("mobilenet_v2" if first.shape[0] == 32 else f"mobilenet_v2 with {first.shape[0]} stem channels"), \
                False, first, head
        if "features.1.0.block.1.fc1.weight" in sd:
            blocks = tuple(_count(sd, f"features.{s}.%d.block.0.0.weight") for s in range(1, 8))
            return ("efficientnet_b0" if blocks == _EFFICIENTNET_B0 else f"efficientnet with blocks {blocks}"), \
                False, first, head
        return "a features/classifier net", False, first, head
    if "features.0.weight" in sd and "classifier.6.weight" in sd:
        first, head = sd["features.0.weight"], sd["classifier.6.weight"]
        convs = sum(1 for k, v in sd.items() if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4)
        if first.shape[2] == 3 and "features.1.running_mean" in sd:
            return ("vgg11_bn" if convs == 8 else f"vgg with BatchNorm and {convs} convolutions"), False, first, head
        if first.shape[2] == 3:
            return ("vgg11" if convs == 8 else f"vgg without BatchNorm and {convs} convolutions"), False, first, head
        if first.shape[2] == 11 and "features.1.running_mean" not in sd:
            return "alexnet", False, first, head
        return "a VGG-like net", False, first, head
    return None


def _cifar(sd):
    """(arch, in_channels, num_classes, 32) of FADRM's own small-image nets (models/mobilenetv2.py,
    also UFC's; models/densenet.py) and UFC's (models/efficientnet.py's EfficientNetB0_cifar*,
    models/shufflenet.py's ShuffleNetG2_cifar*) from their names, as libcommon/models/weights.c reads them; None
    when the names are not theirs, or only partly (then describe() names conv1 without ResNet layers).
    Their pooling covers the whole map: Tiny-ImageNet's 64-px teachers need --input-size 64."""
    if "conv1.weight" not in sd or "linear.weight" not in sd:
        return None
    inch, ncls = sd["conv1.weight"].shape[1], sd["linear.weight"].shape[0]
    if "layers.0.conv1.weight" in sd and "layers.0.shortcut.0.weight" in sd:
        last = sd.get("layers.16.conv3.weight")
        if _count(sd, "layers.%d.conv3.weight") == 17 and last is not None and last.shape[0] == 320 \
                and sd.get("conv2.weight") is not None and sd["conv2.weight"].shape[0] == 1280:
            return "mobilenet_v2_cifar", inch, ncls, 32
        return None
    if "layers.0.se.se1.weight" in sd and "layers.0.conv3.weight" in sd:     # UFC's EfficientNet-B0
        last = sd.get("layers.15.conv3.weight")
        if _count(sd, "layers.%d.se.se1.weight") == 16 and last is not None and last.shape[0] == 320 \
                and sd["linear.weight"].shape[1] == 320:
            return "efficientnet_b0_cifar", inch, ncls, 32
        return None
    if "layer1.0.conv3.weight" in sd and "layer1.0.bn3.running_mean" in sd and "layer1.0.conv4.weight" not in sd \
            and "fc.weight" not in sd and sd["conv1.weight"].shape[2] == 1:     # UFC's ShuffleNetG2
        counts = tuple(_count(sd, f"layer{l}.%d.conv1.weight") for l in (1, 2, 3))
        if counts == (4, 8, 4) and sd["linear.weight"].shape[1] == 800:
            return "shufflenet_g2_cifar", inch, ncls, 32
        return None
    if "dense1.0.conv1.weight" in sd and "trans1.conv.weight" in sd and "dense1.0.conv2.weight" in sd:
        blocks = tuple(_count(sd, f"dense{b}.%d.conv1.weight") for b in range(1, 5))
        growth = sd["dense1.0.conv2.weight"].shape[0]
        name = _DENSENETS_CIFAR.get((blocks, growth))
        if name is None:
            raise SystemExit(f"a CIFAR DenseNet (FADRM's names) with blocks {blocks} and growth rate {growth} is not "
                             "in ddpipe's zoo")
        return name, inch, ncls, 32
    return None


def describe(sd):
    """(arch, in_channels, num_classes, input_size) from the names and shapes, as ddpipe does
    (libcommon/models/weights.c): ResNets from conv1.weight (3x3: small stem), the block counts and
    the bottleneck width; DenseNets from features.conv0.weight (3x3: small stem) and the dense
    layers of blocks 3 and 4; ShuffleNetV2 from stage2's width; mobilenet_v2, efficientnet_b0,
    vgg11_bn, vgg11, alexnet from their names; ConvNets from 0.weight and the head. The small stems of
    STRIDE_ONLY nets are not in the shapes: they read as torchvision's (see stem_of_module). FADRM's
    own CIFAR MobileNetV2 and DenseNets: _cifar()."""
    cifar = _cifar(sd)
    if cifar is not None:
        return cifar
    if "conv1.weight" in sd and "layer1.0.conv1.weight" not in sd:
        raise SystemExit("conv1.weight but no layer1.0.conv1.weight: not a torchvision ResNet nor FADRM's MobileNetV2 "
                         "or DenseNets nor UFC's EfficientNet-B0 (another reference repository's own CIFAR net? those "
                         "are not in ddpipe's zoo: man 7 ddpipe-models)")
    if "conv1.weight" in sd and "fc.weight" not in sd:
        head = "linear" if "linear.weight" in sd else "no fc"
        raise SystemExit(f"conv1.weight and layer1.0.conv1.weight but {head} instead of fc: not a torchvision ResNet "
                         "nor UFC's ShuffleNetG2 (other repositories' own CIFAR nets are named so; they are not in "
                         "ddpipe's zoo: man 7 ddpipe-models)")
    if "conv1.weight" in sd:
        blocks = tuple(_count(sd, f"layer{l}.%d.conv1.weight") for l in range(1, 5))
        bottleneck = "layer1.0.conv3.weight" in sd
        width = sd["layer1.0.conv1.weight"].shape[0] if bottleneck and "layer1.0.conv1.weight" in sd else 64
        name = _RESNETS.get((blocks, bottleneck, width))
        if name is None:
            raise SystemExit(f"resnet with blocks {blocks} ({'bottleneck' if bottleneck else 'basic'}, width "
                             f"{width}) is not in ddpipe's zoo")
        small = sd["conv1.weight"].shape[2] == 3
        return name + ("m" if small else ""), sd["conv1.weight"].shape[1], sd["fc.weight"].shape[0], 32 if small else 224
    tv = _torchvision(sd)
    if tv is not None:
        name, small, first, head = tv
        if " " in name:
            raise SystemExit(f"torchvision-style names of {name}: not in ddpipe's zoo (man 7 ddpipe-models)")
        return name + ("m" if small else ""), first.shape[1], head.shape[0], 32 if small else 224
    if "0.weight" in sd and sd["0.weight"].ndim == 4:
        # the norm at "1.": BatchNorm (running statistics), a GroupNorm's affine alone (instance
        # norm), or none (blocks of three modules)
        norm = "" if "1.running_mean" in sd else "norm=none" if "1.weight" not in sd else \
            "norm=layer" if sd["1.weight"].ndim == 3 else "norm=instance"
        step = 3 if norm == "norm=none" else 4
        depth = 0
        while f"{step * depth}.weight" in sd and sd[f"{step * depth}.weight"].ndim == 4:
            depth += 1
        width, head = sd["0.weight"].shape[0], sd.get(f"{step * depth + 1}.weight")
        if head is None or head.ndim != 2:
            raise SystemExit(f"a ConvNet's names without a 2-d head {step * depth + 1}.weight")
        side = int(round((head.shape[1] / width) ** 0.5))
        size = next((s for s in (28, 32, 64, 224) if s >> depth == side), side << depth)
        opts = ",".join(o for o in ("" if width == 128 else f"width={width}", norm) if o)
        return f"convnet{depth}" + (":" + opts if opts else ""), sd["0.weight"].shape[1], head.shape[0], size
    raise SystemExit("cannot tell the architecture from the tensors' names (man 7 ddpipe-models lists the names each "
                     "architecture has); not a network of ddpipe's zoo, or its tensors under a key: --key")


def reference_convnet(sd):
    """The zoo's convnet names ("0.", "1.", ..., "4D+1."; without a norm layer "0.", "3.", ...,
    "3D+1.") for a state_dict of the dataset-distillation ConvNet as the references name it: FADRM's
    and UFC's models/conv*.py (a features Sequential of conv, norm, act, pool per block, then
    "classifier") or RDED's synthesize/models.py ("layers.conv.D", "layers.norm.D", "classifier"); sd
    itself when it is neither. Their net_norm is read from the tensors: BatchNorm (running
    statistics), a GroupNorm (weight and bias only: instance norm, GroupNorm(C, C), the lineage's
    default, which GroupNorm(4, C) cannot be told from; main() reads the groups from a pickled module),
    LayerNorm([C,H,W]) (a [C,H,W] weight), or none (no norm tensors). Refuses what the zoo's convnet
    does not compute (no pooling). A 1-channel net pads its first convolution by 3 (28 px read as 32):
    the zoo's convnet with pad=3. Pooling and activation hold no tensors: average pooling and ReLU, the
    references' defaults, are assumed (a warning says so). Returns (renamed sd, first-convolution
    padding, norm: "batch", "instance", "layer" or "none"), or (sd, None, None) when sd is neither."""
    if "classifier.weight" not in sd or sd["classifier.weight"].ndim != 2:
        return sd, None, None
    if "layers.conv.0.weight" in sd:        # RDED
        depth = _count(sd, "layers.conv.%d.weight")
        conv_of, norm_of = "layers.conv.{}.".format, "layers.norm.{}.".format
    elif "features.0.weight" in sd and sd["features.0.weight"].ndim == 4:   # FADRM, UFC
        blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("features.")})
        convs = [i for i in blocks if f"features.{i}.weight" in sd and sd[f"features.{i}.weight"].ndim == 4]
        depth = len(convs)
        step = 4 if "features.1.weight" in sd else 3     # conv, norm, act, pool; without a norm: conv, act, pool
        if convs != [step * d for d in range(depth)]:
            raise SystemExit(f"a reference ConvNet whose convolutions are features {convs}: not the zoo's "
                             "convnet (conv, norm, act, pool per block: features.0, .4, .8, ...; without a norm "
                             "layer features.0, .3, .6, ...)")
        conv_of, norm_of = (lambda d: f"features.{step * d}."), (lambda d: f"features.{step * d + 1}.")
    else:
        return sd, None, None
    has_norm = [norm_of(d) + "weight" in sd for d in range(depth)]
    if any(has_norm) and not all(has_norm):
        raise SystemExit("a reference ConvNet with a norm layer in some blocks only: not in ddpipe's zoo")
    if has_norm[0] and sd[norm_of(0) + "weight"].ndim not in (1, 3):
        raise SystemExit(f"a reference ConvNet whose norm weight is {sd[norm_of(0) + 'weight'].ndim}-d: not in "
                         "ddpipe's zoo (its convnet has norm=batch, instance, group, layer or none)")
    norm = "none" if not has_norm[0] else "batch" if norm_of(0) + "running_mean" in sd else \
        "layer" if sd[norm_of(0) + "weight"].ndim == 3 else "instance"
    pad = 3 if sd[conv_of(0) + "weight"].shape[1] == 1 else 1
    step = 3 if norm == "none" else 4
    out = {}
    for d in range(depth):
        for src, dst in ((conv_of(d), f"{step * d}."), (norm_of(d), f"{step * d + 1}.")):
            for k, v in sd.items():
                if k.startswith(src) and "." not in k[len(src):]:
                    out[dst + k[len(src):]] = v
    out[f"{step * depth + 1}.weight"], out[f"{step * depth + 1}.bias"] = sd["classifier.weight"], sd["classifier.bias"]
    left = set(sd) - {k for d in range(depth) for k in sd if k.startswith((conv_of(d), norm_of(d)))} - \
        {"classifier.weight", "classifier.bias"}
    if left:
        raise SystemExit(f"a reference ConvNet with tensors the zoo's convnet lacks: {sorted(left)[:3]}")
    what = {"batch": "BatchNorm", "instance": "GroupNorm: instance norm, GroupNorm(C, C), the references' default, "
            "unless a pickled module says otherwise; GroupNorm(4, C) has the same tensors: --arch convnetD:norm=group "
            "for it", "layer": "LayerNorm([C, H, W])", "none": "no norm layer"}[norm]
    print(f"a reference ConvNet ({depth} blocks, {what}{', 1 channel: first convolution padded by 3' if pad == 3 else ''}"
          "): renamed to ddpipe's convnet; its pooling and activation are not in the checkpoint: average pooling and "
          "ReLU (the references' defaults) assumed", file=sys.stderr)
    return out, pad, norm


def fadrm_shufflenet(sd):
    """The zoo's shufflenet_v2_x0_5 / x1_0 names for FADRM's own small-image ShuffleNetV2
    (models/shufflenetv2.py, net_size 0.5 or 1: its CIFAR-100 and Tiny-ImageNet FADRM+ teacher),
    which is torchvision's network with the small stem under other names: conv1/bn1 (3x3, stride 1,
    no max pool), layerL.0 a DownBlock (conv1..5, bn1..5: torchvision's branch1 and branch2),
    layerL.i BasicBlocks (conv1..3: branch2), conv2/bn2 (conv5), linear (fc). Returns (renamed sd,
    zoo name), or (sd, None) when it is not that net."""
    if not ("layer1.0.conv5.weight" in sd and "linear.weight" in sd and "conv2.weight" in sd):
        return sd, None
    widths = {48: "shufflenet_v2_x0_5", 116: "shufflenet_v2_x1_0"}
    w = sd["layer1.0.conv5.weight"].shape[0] * 2
    if w not in widths:
        raise SystemExit(f"FADRM's ShuffleNetV2 with stage width {w}: only net_size 0.5 and 1 (torchvision's "
                         "x0_5 and x1_0) are in ddpipe's zoo")
    down = {"conv1": "branch1.0", "bn1": "branch1.1", "conv2": "branch1.2", "bn2": "branch1.3",
            "conv3": "branch2.0", "bn3": "branch2.1", "conv4": "branch2.3", "bn4": "branch2.4",
            "conv5": "branch2.5", "bn5": "branch2.6"}
    basic = {"conv1": "branch2.0", "bn1": "branch2.1", "conv2": "branch2.3", "bn2": "branch2.4",
             "conv3": "branch2.5", "bn3": "branch2.6"}
    top = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv5.0", "bn2": "conv5.1", "linear": "fc"}
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] in top:
            out[".".join([top[parts[0]]] + parts[1:])] = v
        elif parts[0] in ("layer1", "layer2", "layer3") and len(parts) >= 4:
            table = down if parts[1] == "0" else basic
            if parts[2] not in table:
                raise SystemExit(f"FADRM's ShuffleNetV2: unexpected tensor {k}")
            out[f"stage{int(parts[0][5:]) + 1}.{parts[1]}.{table[parts[2]]}." + ".".join(parts[3:])] = v
        else:
            raise SystemExit(f"FADRM's ShuffleNetV2: unexpected tensor {k}")
    print(f"FADRM's ShuffleNetV2 (models/shufflenetv2.py): renamed to {widths[w]}m (the small stem)", file=sys.stderr)
    return out, widths[w] + "m"


def head_of(sd):
    """The prefix of the linear head ("fc", "classifier", "classifier.1", "classifier.6", "linear"
    (FADRM's CIFAR nets), or a ConvNet's last index), for --class-index."""
    for h in ("fc", "classifier", "classifier.1", "classifier.6", "linear"):
        if h + ".weight" in sd and sd[h + ".weight"].ndim == 2:
            return h
    if "0.weight" in sd:
        return max((k[:-7] for k in sd if k.endswith(".weight") and sd[k].ndim == 2), key=lambda s: int(s))
    raise SystemExit("cannot find the linear head for --class-index")


def stem_of_module(m):
    """The stem of a pickled STRIDE_ONLY module, whose state_dict is the same for both stems:
    "imagenet" (torchvision's: first convolution stride 2, ShuffleNet's max pool), "small" (the
    small-image variant: stride 1, no max pool), or "other" (a mix: not a zoo variant)."""
    import torch.nn as nn
    conv = next(c for c in m.modules() if isinstance(c, nn.Conv2d))
    pool = getattr(m, "maxpool", None)
    if tuple(conv.stride) == (2, 2) and (pool is None or isinstance(pool, nn.MaxPool2d)):
        return "imagenet"
    if tuple(conv.stride) == (1, 1) and not isinstance(pool, nn.MaxPool2d):
        return "small"
    return "other"


def is_small(arch):
    """True for a zoo name of a small-stem variant ("mobilenet_v2m", "resnet18:stem=small")."""
    base, _, opts = arch.partition(":")
    if "stem=small" in opts.split(","):
        return True
    return base.endswith("m") and base[:-1] in set(_RESNETS.values()) | set(_DENSENETS.values()) | set(STRIDE_ONLY)


def load_tensors_only(torch, path):
    """The object of a zip-format checkpoint (torch.save since 1.6: DIR/data.pkl beside the
    storages DIR/data/KEY), unpickled with nothing but tensors, storages' dtypes, OrderedDict and
    what the pickle machine builds itself (numbers, strings, lists, dicts, tuples): what
    weights_only=True allows, for torches whose weights_only unpickler refuses plain floats
    (Debian's 1.13: 'Unsupported operand 71', BINFLOAT, in UFC's checkpoints, which keep the
    accuracy beside the state_dict). Little-endian storages only (a "byteorder" record saying
    otherwise is refused). Raises pickle.UnpicklingError naming
    anything else a file asks for, ValueError for a file that is not such a zip."""
    import collections, zipfile
    dtypes = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
              "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
              "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
              "BoolStorage": torch.bool}

    def rebuild(storage, offset, size, stride, *_):
        return storage.as_strided(tuple(size), tuple(stride), offset).clone()

    def parameter(data, *_):
        return data

    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: not a zip-format torch checkpoint (no DIR/data.pkl)")
        root = pkl[0][:-len("data.pkl")]
        if root + "byteorder" in z.namelist() and z.read(root + "byteorder").strip() != b"little":
            raise ValueError(f"{path}: big-endian storages")

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ("collections", "OrderedDict"):
                    return collections.OrderedDict
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return rebuild
                if (module, name) == ("torch._utils", "_rebuild_parameter"):
                    return parameter
                if module == "torch" and name in dtypes:
                    return dtypes[name]
                raise pickle.UnpicklingError(f"{module}.{name} is not a tensor or a container of tensors")

            def persistent_load(self, pid):
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in dtypes.values()):
                    raise pickle.UnpicklingError(f"persistent id {str(pid)[:60]} is not a storage")
                raw = bytearray(z.read(f"{root}data/{pid[2]}"))
                return torch.frombuffer(raw, dtype=pid[1]) if raw else torch.empty(0, dtype=pid[1])

        with z.open(pkl[0]) as f:
            return Unpickler(f).load()


def main(argv=None):
    """The command line (argv: its arguments, default sys.argv[1:])."""
    import torch
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--arch", help="zoo name (default: from the shapes)")
    ap.add_argument("--classes", help="file with one class name per line, in label order")
    ap.add_argument("--class-index", help="comma-separated rows of the linear head (fc, classifier, ...) to keep "
                    "(class-subset teachers)")
    ap.add_argument("--mean", help="per-channel mean in pixels [0,1], comma-separated (default: the programs' default for the "
                    "channels, ImageNet's or Fashion-MNIST's, written and said)")
    ap.add_argument("--std", help="per-channel std, comma-separated")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--key", help="the checkpoint's key holding the state_dict (when several do)")
    ap.add_argument("--unsafe-pickle", action="store_true",
                    help="load with weights_only=False (trusted old files that pickle more than tensors)")
    a = ap.parse_args(argv)
    prog = os.path.basename(sys.argv[0]) if argv is None else "torch2safetensors.py"
    try:
        convert(torch, a)
    except SystemExit as e:   # one line naming the program and the checkpoint, as ddpipe's programs' errors
        if isinstance(e.code, str):
            where = "" if e.code.startswith((a.checkpoint + ":", "--")) else a.checkpoint + ": "
            raise SystemExit(f"{prog}: {where}{e.code}")
        raise
    except OSError as e:      # --classes, the output's directory
        raise SystemExit(f"{prog}: {e.filename or a.checkpoint}: {e.strerror or e}")


def parse_floats(opt, text, n, positive=False):
    """--mean/--std: n comma-separated numbers (finite; > 0 with positive)."""
    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        raise SystemExit(f"{opt}: '{text}' is not comma-separated numbers")
    if len(v) != n:
        raise SystemExit(f"{opt}: {len(v)} values for {n} channels")
    if not all(np.isfinite(x) and (x > 0 or not positive) for x in v):
        raise SystemExit(f"{opt}: '{text}': want finite numbers{', each above 0' if positive else ''}")
    return v


def unwrap(torch, obj, key):
    """The state_dict (or module) inside a loaded checkpoint: under --key, "model" or
    "state_dict", else the one value that holds tensors."""
    holds = lambda v: isinstance(v, torch.nn.Module) or (isinstance(v, dict) and any(torch.is_tensor(t) for t in v.values()))
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise SystemExit(f"--key {key}: no such key (keys: {list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__})")
        return obj[key]
    for k in ("model", "state_dict"):
        if isinstance(obj, dict) and k in obj and holds(obj[k]):
            return obj[k]
    if isinstance(obj, dict) and not any(torch.is_tensor(v) for v in obj.values()):
        inner = [k for k, v in obj.items() if holds(v)]
        if len(inner) == 1:
            return obj[inner[0]]
        if inner:
            raise SystemExit(f"tensors under the keys {inner}: give --key K")
        raise SystemExit(f"no tensors (its keys: {[str(k) for k in obj][:10]})")
    return obj


def convert(torch, a):
    """Loads a.checkpoint, writes a.output."""
    kw = {"map_location": "cpu"}
    if a.unsafe_pickle is False and "weights_only" in torch.load.__code__.co_varnames:
        kw["weights_only"] = True
    import zipfile
    try:
        try:
            obj = torch.load(a.checkpoint, **kw)
        except pickle.UnpicklingError as e:
            if "Unsupported operand" not in str(e):
                raise
            try:
                obj = load_tensors_only(torch, a.checkpoint)   # an older torch's weights_only: no floats
            except zipfile.BadZipFile:
                raise SystemExit(f"{a.checkpoint}: a checkpoint of the format before torch 1.6 that holds more "
                                 "than tensors, which this torch cannot load as tensors only; a trusted file "
                                 "loads with --unsafe-pickle")
    except ValueError as e:
        raise SystemExit(f"{e}; a trusted file loads with --unsafe-pickle")
    except pickle.UnpicklingError as e:
        first = (str(e).split("WeightsUnpickler error:")[-1].strip().splitlines() or ["?"])[0]
        raise SystemExit(f"{a.checkpoint}: not loadable as tensors only ({first}); a trusted file that "
                         "pickles a module loads with --unsafe-pickle")
    except OSError as e:
        raise SystemExit(f"{a.checkpoint}: {e.strerror or e}")
    except Exception as e:   # torch.load's errors on a file that is no checkpoint (a KeyError, a RuntimeError, ...)
        first = (str(e).strip().splitlines() or [""])[0]
        raise SystemExit(f"{a.checkpoint}: not a PyTorch checkpoint ({type(e).__name__}: {first[:200]})")
    obj = unwrap(torch, obj, a.key)
    module = obj if isinstance(obj, torch.nn.Module) else None
    if module is not None:
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
    sd, pad, norm = reference_convnet(sd)
    sd, known = fadrm_shufflenet(sd)
    if a.class_index:
        head = head_of(sd)
        nrows = sd[head + ".weight"].shape[0]
        try:
            rows = [int(i) for i in a.class_index.split(",")]
        except ValueError:
            raise SystemExit(f"--class-index: '{a.class_index}' is not comma-separated row numbers")
        if not all(0 <= r < nrows for r in rows) or len(set(rows)) != len(rows):
            raise SystemExit(f"--class-index: want distinct rows from 0 to {nrows - 1} of {head}, got {a.class_index}")
        sd[head + ".weight"], sd[head + ".bias"] = sd[head + ".weight"][rows], sd[head + ".bias"][rows]
    arch, inch, ncls, size = describe(sd)
    if norm == "instance" and module is not None:   # the groups, which the tensors do not hold
        groups = {m.num_groups for m in module.modules() if isinstance(m, torch.nn.GroupNorm)}
        if groups != {sd["1.weight"].shape[0]}:
            if groups != {4}:
                raise SystemExit(f"{a.checkpoint}: a ConvNet with GroupNorm of {sorted(groups)} groups: ddpipe's "
                                 "convnet has instance norm (one group per channel) or GroupNorm(4, C) only")
            arch = arch.replace("norm=instance", "norm=group")
    if known:   # a network whose stem its names tell (FADRM's ShuffleNetV2: the small one)
        arch, size = known, 32
    elif pad == 3:   # the references' 1-channel ConvNet: made for 28-px images (MNIST, Fashion-MNIST)
        base, _, opts = arch.partition(":")
        opts = sorted([o for o in opts.split(",") if o] + ["pad=3"], key=lambda o: ("width", "pad", "norm").index(o.split("=")[0]))
        arch, size = base + ":" + ",".join(opts), 28
    elif arch in STRIDE_ONLY and module is not None:
        stem = stem_of_module(module)
        if stem == "other":
            raise SystemExit(f"{a.checkpoint}: {arch} with a stem that is neither torchvision's nor the "
                             "small-image one (stride 1, no max pool): not in ddpipe's zoo")
        if stem == "small":
            arch, size = arch + "m", 32
    elif arch in STRIDE_ONLY and not a.arch:
        print(f"{a.checkpoint}: {arch}'s small-image stem differs from torchvision's only in stride, which "
              f"a state_dict does not hold: written as {arch} (torchvision's stem); give --arch {arch}m "
              "for the small-image variant", file=sys.stderr)
    def family(name):   # the zoo name without options and without the small-stem "m"
        base = name.partition(":")[0]
        return base[:-1] if base.endswith("m") else base
    if a.arch and family(a.arch) != family(arch):   # a file nothing could load: said now, not at load time
        raise SystemExit(f"--arch {a.arch}: the tensors are {arch}'s (give the architecture they hold, or no "
                         "--arch: it is read from them)")
    if a.input_size and arch.startswith("convnet") and a.input_size != size:
        raise SystemExit(f"--input-size {a.input_size}: {arch}'s head fixes its input at {size} px")
    if a.arch and is_small(a.arch) != is_small(arch):
        size = 32 if is_small(a.arch) else 224
    meta = {"format": "ddpipe-weights/1", "arch": a.arch or arch, "in_channels": str(inch),
            "num_classes": str(ncls), "input_size": str(a.input_size or size)}
    note = None
    if a.mean or a.std:
        if not (a.mean and a.std):
            raise SystemExit("--mean and --std go together")
        meta["mean"] = json.dumps(parse_floats("--mean", a.mean, inch))
        meta["std"] = json.dumps(parse_floats("--std", a.std, inch, positive=True))
    else:
        # the normalization a checkpoint was trained with lives in its data transforms, not in its tensors:
        # the default is written, so that the file says what the programs will apply, and said
        mean, std = default_norm(inch)
        meta["mean"], meta["std"] = json.dumps(mean), json.dumps(std)
        note = (f"{a.checkpoint}: no --mean/--std: wrote the default normalization for {inch} channel"
                f"{'s' if inch != 1 else ''}, mean {','.join(map(str, mean))} std {','.join(map(str, std))}; "
                "right only if the model was trained on pixels normalized so (none: --mean "
                f"{','.join(['0'] * inch)} --std {','.join(['1'] * inch)})")
    if a.classes:
        with open(a.classes, encoding="utf-8") as f:
            names = [l.rstrip("\n") for l in f if l.strip()]
        if a.class_index:
            names = [names[int(i)] for i in a.class_index.split(",")] if len(names) != ncls else names
        if len(names) != ncls:
            raise SystemExit(f"{a.classes}: {len(names)} names for {ncls} classes")
        meta["classes"] = json.dumps(names, ensure_ascii=True, separators=(",", ":"))
    try:
        st_save(a.output, sd, meta)
    except OSError as e:
        raise SystemExit(f"--output {a.output}: {e.strerror or e}")
    if note:
        print(note, file=sys.stderr)
    print(f"{a.output}: {meta['arch']}, {inch} channels, {ncls} classes, {len(sd)} tensors", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""safetensors2torch.py - a ddpipe weights file to a PyTorch state_dict checkpoint.

  safetensors2torch.py teacher.safetensors teacher.pth
  python3 -c 'import torch, torchvision; m = torchvision.models.resnet18(num_classes=10); \\
      m.load_state_dict(torch.load("teacher.pth")["state_dict"])'

Writes {"state_dict": {...}, "ddpipe": metadata}; tensors keep their names and dtypes, so
load_state_dict(strict=True) accepts it for the architecture in metadata["arch"] (the small-stem
ResNets need conv1 = Conv2d(C, 64, 3, 1, 1, bias=False) and maxpool = Identity()).
"""
import os, struct, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch2safetensors import st_load  # noqa: E402


def main():
    usage = "usage: safetensors2torch.py IN.safetensors OUT.pth"
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(usage + "\n\n" + __doc__.split("\n\n", 1)[1].strip())
        return
    if len(sys.argv) != 3:
        print(usage, file=sys.stderr)
        raise SystemExit(2)
    try:
        tensors, meta = st_load(sys.argv[1])
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise SystemExit(f"safetensors2torch.py: {sys.argv[1]}: {getattr(e, 'strerror', None) or e}")
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    try:
        torch.save({"state_dict": sd, "ddpipe": meta}, sys.argv[2])
    except (OSError, RuntimeError) as e:
        raise SystemExit(f"safetensors2torch.py: {sys.argv[2]}: {getattr(e, 'strerror', None) or e}")


if __name__ == "__main__":
    main()

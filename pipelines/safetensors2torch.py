#!/usr/bin/env python3
"""safetensors2torch.py - a ddpipe weights file to a PyTorch state_dict checkpoint.

  safetensors2torch.py teacher.safetensors teacher.pth
  python3 -c 'import torch, torchvision; m = torchvision.models.resnet18(num_classes=10); \\
      m.load_state_dict(torch.load("teacher.pth")["state_dict"])'

Writes {"state_dict": {...}, "ddpipe": metadata}; tensors keep their names and dtypes, so
load_state_dict(strict=True) accepts it for the architecture in metadata["arch"] (the small-stem
ResNets need conv1 = Conv2d(C, 64, 3, 1, 1, bias=False) and maxpool = Identity()).
"""
import os, sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch2safetensors import st_load  # noqa: E402


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: safetensors2torch.py IN.safetensors OUT.pth")
    tensors, meta = st_load(sys.argv[1])
    sd = {k: torch.from_numpy(v) for k, v in tensors.items()}
    torch.save({"state_dict": sd, "ddpipe": meta}, sys.argv[2])


if __name__ == "__main__":
    main()

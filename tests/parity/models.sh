#!/usr/bin/env bash
# models.sh - the zoo's ConvNet and ResNets, in the cases below only (not resnet34, resnet101
# or other ConvNet depths and widths; zoo.sh has the other nets), against PyTorch/torchvision on
# the same weights and inputs:
# logits, the recover loss (CE + BN statistics), the gradient to the input and to every weight,
# running statistics, in train and eval BN modes; and C-saved weights loading in torch strictly.
# Cases: convnet3 1x28x28 (file without metadata), convnet3:pad=3 1x28x28 (the DC lineage's
# 1-channel ConvNet), its other norms (norm=instance 3x32x32 without metadata, norm=group
# width 16 and pad=3,norm=none 1x28x28, norm=layer width 16 3x32x32 without metadata), resnet18
# small stem 3x32x32 and 1x32x32
# ("module." names, no num_batches_tracked), resnet18 imagenet stem 3x64x64, resnet50 small stem.
# Tolerances: see tests/parity/model_peer.py. Runs in a fresh temporary directory.
set -euo pipefail
if ! "$PYTHON" -c 'import torch, torchvision, numpy' >/dev/null 2>&1; then
    echo "SKIP: python3-torch not importable"; exit 77
fi
"$PYTHON" "$TESTS/parity/model_peer.py" run cases "$TESTS/../$BUILD/tests/parity/model_parity"

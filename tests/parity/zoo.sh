#!/usr/bin/env bash
# zoo.sh - the torchvision nets of the zoo beyond the ResNets (mobilenet_v2, shufflenet_v2_x0_5 /
# x1_0, densenet121 / 169 / 201, efficientnet_b0, wide_resnet50_2, vgg11_bn, alexnet) against
# PyTorch on the same weights and inputs, as models.sh: logits, the recover loss (CE + BN
# statistics), the gradient to the input and to every weight, running statistics, in train and
# eval BN modes, and C-saved weights loading in torch strictly. Dropout and stochastic depth are 0
# on both sides (":dropout=0,stochastic_depth=0"), so train mode compares deterministically.
# STATUS: not yet a gate. make check reports it as SKIP unless ZOO_FULL=1; with ZOO_FULL=1 every
# case runs (mobilenet_v2, shufflenet x0_5 (1 channel, "module." names) / x1_0, densenet121 at 32
# and 64 px, efficientnet_b0, densenet169 / 201, wide_resnet50_2, vgg11_bn, alexnet) and some
# gradient tensors FAIL, depending on the random weights and inputs: single ReLU elements within
# float32 rounding of the kink (|pre-activation| ~ 1e-6) take the other side in ours than in
# torch, which moves one gradient entry (densenet121m eval, denselayer7.norm1.bias[241]: torch
# -0.1778 = float64 finite differences, ours -0.2018, min |y| of that channel 2.6e-6), and
# efficientnet_b0's eval-mode BN-statistics term is ill-conditioned beyond torch float32's own
# error. Logits, losses, BN statistics and running statistics agree in every case. The
# methodology (max error per tensor on random weights) needs a kink-robust rule before this can
# gate make check. Tolerances: model_peer.py.
set -euo pipefail
if ! "$PYTHON" -c 'import torch, torchvision, numpy' >/dev/null 2>&1; then
    echo "SKIP: python3-torch not importable"; exit 77
fi
helper=$TESTS/../$BUILD/tests/parity/model_parity
peer=$TESTS/parity/model_peer.py
if [ "${ZOO_FULL:-0}" != 1 ]; then
    echo "SKIP: zoo parity is not yet a gate (ReLU-kink flips on random weights; see header); ZOO_FULL=1 runs it"; exit 77
fi
suite=zoo-full
"$PYTHON" "$peer" make cases $suite
for d in cases/*/; do
    for mode in eval train; do
        mkdir -p "$d$mode"
        "$helper" "$d/weights.safetensors" "$d/x.npy" "$d/y.npy" "$mode" "$d$mode"
    done
done
"$PYTHON" "$peer" check cases $suite

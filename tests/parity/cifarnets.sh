#!/usr/bin/env bash
# cifarnets.sh - FADRM's and UFC's own small-image nets (mobilenet_v2_cifar, densenet121_cifar,
# densenet_cifar, shufflenet_g2_cifar, efficientnet_b0_cifar; man 7 ddpipe-models) against PyTorch definitions
# restated in model_peer.py from FADRM's models/mobilenetv2.py and models/densenet.py and UFC's
# models/shufflenet.py and models/efficientnet.py: (1) as models.sh (random weights, BN running
# statistics set): logits, the recover loss with its BN statistics term, the gradient to the input
# and to every weight, running statistics, train and eval BN modes, C-saved weights loading in
# torch strictly; mobilenet_v2_cifar (100 classes) from "module." names without metadata (the
# architecture guessed by the loader), densenet121_cifar from bare names, shufflenet_g2_cifar
# (100 classes) from "module." names, efficientnet_b0_cifar with metadata and ":dropout=0",
# densenet_cifar (growth 12, 100 classes) from bare names;
# 3x32x32. (2) FADRM-style checkpoints (torch.save of a state_dict with "module." names and
# num_batches_tracked) of mobilenet_v2_cifar and densenet121_cifar, UFC-style ones ({"state_dict":
# ..., "acc", "epoch"}) of shufflenet_g2_cifar and efficientnet_b0_cifar convert with
# pipelines/torch2safetensors.py to their zoo names, and evaltrain --eval-only on 10 images gives
# torch's mean cross-entropy (1e-4); recover runs 4 iterations on each; evaltrain trains one step,
# which leaves efficientnet_b0_cifar's unread first-block conv1/bn1 as they were.
# Tolerances: model_peer.py. Peer: cifarnets_peer.py. Runs in a fresh temporary directory.
set -euo pipefail
if ! "$PYTHON" -c 'import torch, torchvision, numpy' >/dev/null 2>&1; then
    echo "SKIP: python3-torch not importable"; exit 77
fi
"$PYTHON" "$TESTS/parity/model_peer.py" run cases "$TESTS/../$BUILD/tests/parity/model_parity" cifar

# (2) FADRM-style checkpoints through the converter, evaluated, recovered and trained
"$PYTHON" "$TESTS/parity/cifarnets_peer.py" convert
"$BIN/tsimport" -q --format npy np_rgb >rgb.tsr
while read -r case; do
    "$BIN/evaltrain" --eval-only -q -w "conv/$case.safetensors" rgb.tsr >"conv/$case.json" \
        || echo "evaltrain --eval-only -w conv/$case.safetensors failed" >&2
done <conv/cases.txt
"$PYTHON" "$TESTS/parity/cifarnets_peer.py" check
"$BIN/tscat" -q --head 4 rgb.tsr >rgb4.tsr
while read -r case; do
    # the BN statistics term is collected from every BN layer: nonzero and finite at each step
    "$BIN/recover" -q -j2 -w "conv/$case.safetensors" --iters 4 --arc 1 -m "conv/$case.jsonl" rgb4.tsr >"conv/$case.tsr"
    "$BIN/tsinfo" --json "conv/$case.tsr" >"conv/$case.info.json"
    "$PYTHON" -c 'import json, math, sys
assert json.load(open(sys.argv[2]))["records"] == 4, "recover did not write 4 images"
rows = [json.loads(l) for l in open(sys.argv[1]) if "bn" in l]
assert len(rows) >= 4 and all(r["bn"] > 0 and math.isfinite(r["loss"]) for r in rows), rows[:2]' \
        "conv/$case.jsonl" "conv/$case.info.json"
    "$BIN/evaltrain" -q -w "conv/$case.safetensors" --epochs 1 --batch 4 --save "conv/$case.trained.safetensors" \
        rgb4.tsr >/dev/null
done <conv/cases.txt
# efficientnet_b0_cifar's first block holds a conv1 and bn1 its forward never reads: training
# (SGD with weight decay) leaves them as they were, as PyTorch does (their grad is None), and
# moves the next block's conv1
PYTHONPATH="$TESTS/../pipelines" "$PYTHON" -c 'import sys, numpy as np
from torch2safetensors import st_load
a, b = st_load("conv/efficientnet_b0_cifar.safetensors")[0], st_load("conv/efficientnet_b0_cifar.trained.safetensors")[0]
held = [k for k in a if k.startswith(("layers.0.conv1.", "layers.0.bn1.")) and "num_batches" not in k]
assert len(held) == 5 and all(np.array_equal(a[k], b[k]) for k in held), held   # conv1.weight, bn1 x 4
assert not np.array_equal(a["layers.1.conv1.weight"], b["layers.1.conv1.weight"]), "layers.1 did not train"
print("ok: efficientnet_b0_cifar trained one epoch: the unread conv1/bn1 of its first block unchanged")'
echo "all ok"

#!/usr/bin/env bash
# relabel.sh - the logits relabel stores equal PyTorch's teachers on the batch rebuilt in Python
# from the stored crops, flips, CutMix permutation and box alone (tests/parity/relabel_peer.py):
# --bn batch (train-mode BN on each half of the batch, the reference's BSSL; one batch of odd size
# 7 = 3 + 4, FADRM's relabel.py split_point = n // 2) with two teachers, and --bn eval. Tolerance: 2e-3 + 2^-10 |ref| (F16 storage; see the
# peer). Runs in a fresh temporary directory.
set -euo pipefail
if ! "$PYTHON" -c 'import torch, numpy' >/dev/null 2>&1; then
    echo "SKIP: python3-torch not importable"; exit 77
fi
fmnist=/usr/share/datasets/fashion-mnist
[ -d "$fmnist" ] || { echo "SKIP: Fashion-MNIST not installed at $fmnist"; exit 77; }
peer=$TESTS/parity/relabel_peer.py
"$BIN/tsimport" -q --format idx --limit 23 "$fmnist" >tr.tsr
"$BIN/tsexport" --npy tr tr.tsr
"$BIN/evaltrain" -m "convnet3:width=16" -q -j 2 --epochs 1 --batch 8 --save t1.safetensors tr.tsr >/dev/null
"$BIN/evaltrain" -m "convnet2:width=8" -q -j 2 -s 1 --epochs 0 --save t2.safetensors tr.tsr >/dev/null
"$BIN/relabel" -q -w t1.safetensors -w t2.safetensors --epochs 2 --batch 8 tr.tsr | "$BIN/tscat" -q --shards b/l-%06d.tar
"$PYTHON" "$peer" batch tr/image.npy b t1.safetensors t2.safetensors
"$BIN/relabel" -q -w t1.safetensors --bn eval --epochs 1 --batch 10 tr.tsr | "$BIN/tscat" -q --shards e/l-%06d.tar
"$PYTHON" "$peer" eval tr/image.npy e t1.safetensors
echo "all ok"

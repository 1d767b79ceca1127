#!/usr/bin/env bash
# run_train.sh - `make bench`, training throughput (issue 4 "Speed"): one evaltrain step (train-mode
# forward, cross-entropy, backward, SGD momentum + weight decay) of ours (build/bench/bench_train)
# beside the PyTorch peer (tests/bench/torch_train_peer.py), same machine, same run, 2 threads:
#   bench train-step MODEL CxHxW bBATCH cpu: ours N img/s, peer M img/s, ratio R
# Cases: convnet3 1x28x28 and resnet18m (small stem) 3x32x32, batch 128; (issue 7) the FADRM+
# teachers mobilenet_v2m, shufflenet_v2_x1_0m, densenet121m (small stems) 3x32x32, fewer steps
# (ZOO_ITERS, default 2). ZOO_ALL=1 adds the rest of the zoo (run.sh's list), ZOO_ALL=only runs
# just those. Then patchsel's scoring (issue 8: eval-mode forward without gradients of a batch of
# 250 canvases, logits read back; bench_train --score beside the peer's --score):
#   bench score MODEL CxHxW b250 cpu: ours N img/s, peer M img/s, ratio R
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
ITERS=${ITERS:-5}
BATCH=${BATCH:-128}
ours_bin=$BUILD/bench/bench_train
peer=tests/bench/torch_train_peer.py
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

have_peer=1
if ! "$PYTHON" -c 'import torch, torchvision' >/dev/null 2>&1; then
    echo "bench: $PYTHON cannot import torch: ours only" >&2; have_peer=0
fi

# train_case MODEL CH RES
train_case() {
    local model=$1 ch=$2 res=$3 out ours peer_rate=NA ratio=NA
    out=$("$ours_bin" "$model" "$ch" "$res" "$BATCH" "$THREADS" "$ITERS")
    ours=$(sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p' <<<"$out")
    if [ $have_peer = 1 ]; then
        peer_rate=$("$PYTHON" "$peer" --model "$model" --channels "$ch" --res "$res" --batch "$BATCH" \
            --threads "$THREADS" --iters "$ITERS" | sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
        ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    fi
    echo "bench train-step $model ${ch}x${res}x${res} b$BATCH cpu: ours $ours img/s, peer $peer_rate img/s, ratio $ratio"
}

if [ "${ZOO_ALL:-0}" != only ]; then
    train_case convnet3 1 28
    train_case resnet18m 3 32
    ITERS=${ZOO_ITERS:-2} train_case mobilenet_v2m 3 32
    ITERS=${ZOO_ITERS:-2} train_case shufflenet_v2_x1_0m 3 32
    ITERS=${ZOO_ITERS:-2} train_case densenet121m 3 32
fi
# ZOO_ALL=1 (as run.sh): the rest of the zoo's training steps (issue 7 asks each reported);
# ZOO_ALL=only: just those
if [ "${ZOO_ALL:-0}" != 0 ]; then
    ITERS=${ZOO_ITERS:-2} train_case efficientnet_b0m 3 32
    ITERS=${ZOO_ITERS:-2} train_case shufflenet_v2_x0_5m 3 32
    ITERS=${ZOO_ITERS:-2} train_case densenet169m 3 32
    ITERS=${ZOO_ITERS:-2} train_case wide_resnet50_2m 3 32
    ITERS=${ZOO_ITERS:-2} train_case vgg11_bn 3 32
    ITERS=${ZOO_ITERS:-2} train_case alexnet 3 64
fi

# score_case MODEL CH RES: patchsel's scoring forward
score_case() {
    local model=$1 ch=$2 res=$3 ours peer_rate=NA ratio=NA
    ours=$("$ours_bin" --score "$model" "$ch" "$res" 250 "$THREADS" "${SCORE_ITERS:-3}" |
           sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
    if [ $have_peer = 1 ]; then
        peer_rate=$("$PYTHON" "$peer" --score --model "$model" --channels "$ch" --res "$res" --batch 250 \
            --threads "$THREADS" --iters "${SCORE_ITERS:-3}" | sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
        ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    fi
    echo "bench score $model ${ch}x${res}x${res} b250 cpu: ours $ours img/s, peer $peer_rate img/s, ratio $ratio"
}
if [ "${ZOO_ALL:-0}" != only ]; then
    score_case convnet3 1 28
    score_case resnet18m 3 32
fi

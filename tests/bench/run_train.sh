#!/usr/bin/env bash
# run_train.sh - `make bench`, training throughput (issue 4 "Speed"): one evaltrain step (train-mode
# forward, cross-entropy, backward, SGD momentum + weight decay) of ours (build/bench/bench_train)
# beside the PyTorch peer (tests/bench/torch_train_peer.py), same machine, same run, 2 threads:
#   bench train-step MODEL CxHxW bBATCH cpu: ours N img/s, peer M img/s, ratio R
# Cases: convnet3 1x28x28, the instance-norm ConvNet of the dataset-condensation benchmarks
# (convnet3:norm=instance) and resnet18m (small stem) 3x32x32, batch 128; (issue 7) the FADRM+
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

# run_case KIND MODEL CH RES BATCH ITERS: KIND train-step (ours bench_train, the peer) or score
# (both with --score)
run_case() {
    local kind=$1 model=$2 ch=$3 res=$4 batch=$5 iters=$6 ours peer_rate=NA ratio=NA flag=()
    [ "$kind" = score ] && flag=(--score)
    ours=$("$ours_bin" "${flag[@]}" "$model" "$ch" "$res" "$batch" "$THREADS" "$iters" |
           sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
    if [ $have_peer = 1 ]; then
        peer_rate=$("$PYTHON" "$peer" "${flag[@]}" --model "$model" --channels "$ch" --res "$res" \
            --batch "$batch" --threads "$THREADS" --iters "$iters" | sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
        ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    fi
    echo "bench $kind $model ${ch}x${res}x${res} b$batch cpu: ours $ours img/s, peer $peer_rate img/s, ratio $ratio"
}
train_case() { run_case train-step "$1" "$2" "$3" "$BATCH" "$ITERS"; }

if [ "${ZOO_ALL:-0}" != only ]; then
    train_case convnet3 1 28
    train_case convnet3:norm=instance 3 32
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
    # the references' own small-image nets (FADRM's, INFER's)
    ITERS=${ZOO_ITERS:-2} train_case mobilenet_v2_cifar 3 32
    ITERS=${ZOO_ITERS:-2} train_case shufflenet_g2_cifar 3 32
    ITERS=${ZOO_ITERS:-2} train_case efficientnet_b0_cifar 3 32
fi

# patchsel's scoring forward, 250 canvases a batch
score_case() { run_case score "$1" "$2" "$3" 250 "${SCORE_ITERS:-3}"; }
if [ "${ZOO_ALL:-0}" != only ]; then
    score_case convnet3 1 28
    score_case resnet18m 3 32
fi

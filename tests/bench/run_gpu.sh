#!/usr/bin/env bash
# run_gpu.sh - the recover inner step on the GPU: ours (build/bench/bench_recover -d cuda[:PREC])
# beside the PyTorch peer (../shared/bench/torch_recover_peer.py --device cuda --amp), same GPU,
# same run. Per case:
#   bench recover-step MODEL CxHxW bBATCH cuda: ours N img-iter/s, peer M img-iter/s, ratio R
#   bench recover-step MODEL CxHxW bBATCH cuda: peak device memory ours A MiB, peer B MiB
#   bench recover-step MODEL CxHxW bBATCH cuda: G GFLOP/img of convolutions and linear layers,
#     T TFLOP/s, F% of the GPU's dense PREC tensor peak by its datasheet (P TFLOP/s)
# then evaltrain's training step (batch 128) and patchsel's scoring forward (batch 250):
#   bench train-step MODEL CxHxW b128 cuda: ours N img/s, peer M img/s, ratio R
#   bench score MODEL CxHxW b250 cuda: ours N img/s, peer M img/s, ratio R
# Ours' peak is the backend's allocator peak (the engine's arena, which also holds cuDNN's
# workspace and the fp16 copies, among it) plus its own scratch buffers (DD_CUDA_MEMSTATS=1,
# printed at exit; the arena's own figures, DD_NN_MEMSTATS=1, follow in parentheses); the peer's
# is torch.cuda.max_memory_allocated.
# Bars (issue 8): resnet18 224 and 200 >= 2x, convnet3 and resnet18m >= 3x, resnet18 peak
# <= 2.0 GiB.
#
# On a GPU machine without the build dependencies (a lent device machine), tests/gpu.sh bench runs
# this with the libraries it needs (tests/gpu_bundle.sh). PREC=fp16|bf16|fp32 (default fp16, as
# the peer's --amp; our fp16 covers convolution and linear only, the rest stays fp32). ITERS=50.
# CASES="resnet18-224 convnet3-28 train-resnet18m score-convnet3 ...": a subset. NO_PEER=1: ours
# only. Each recover case runs again with DD_CUDA_NHWC=1 (NHWC=0: not).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
ITERS=${ITERS:-50}
PREC=${PREC:-fp16}
ours_bin=$BUILD/bench/bench_recover
peer=${PEER:-../shared/bench/torch_recover_peer.py}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have_peer=1
if [ -n "${NO_PEER:-}" ]; then have_peer=0
elif [ ! -f "$peer" ]; then echo "bench: peer $peer not found: ours only" >&2; have_peer=0
elif ! "$PYTHON" -c 'import torch, torchvision; assert torch.cuda.is_available()' >/dev/null 2>&1; then
    echo "bench: $PYTHON cannot import torch with CUDA: ours only" >&2; have_peer=0
fi

# The device's peak for PREC by its datasheet (dense, no sparsity): fp16/bf16 on tensor cores,
# fp32 (TF32 off) on the FMA units; PEAK_TFLOPS overrides, an unknown device gives none.
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)
if [ -n "${PEAK_TFLOPS:-}" ]; then peak=$PEAK_TFLOPS peak_what="PEAK_TFLOPS"
else
    case "$gpu_name" in
        *H100*PCIe*) peak=756.5 peak32=51 ;;
        *H100*NVL*|*H200*NVL*) peak=835.5 peak32=60 ;;
        *H100*|*H200*) peak=989.4 peak32=67 ;;   # SXM
        *) peak= peak32= ;;
    esac
    [ "$PREC" != fp32 ] || peak=$peak32
    peak_what="the $gpu_name's dense $([ "$PREC" = fp32 ] && echo "fp32 FMA" || echo "$PREC tensor") peak by its datasheet"
fi
# flops_line PREFIX OUT: a bench's FLOPs of convolutions and linear layers per image and its rate
# (nn_flops, two a multiply-add, checked against PyTorch's modules by tests/parity/flops.sh) as a
# fraction of that peak: the fraction of the tensor peak the step reaches.
flops_line() {
    local per rate
    per=$(sed -n 's/.*(\([0-9.e+]*\) GFLOP\/img.*/\1/p' "$2")
    rate=$(sed -n 's/.*, \([0-9.]*\) GFLOP\/s$/\1/p' "$2")
    [ -n "$rate" ] || return 0
    if [ -n "$peak" ]; then
        echo "$1: $per GFLOP/img of convolutions and linear layers, $(awk -v r="$rate" 'BEGIN { printf "%.1f", r / 1e3 }') TFLOP/s, $(awk -v r="$rate" -v p="$peak" 'BEGIN { printf "%.1f", r / 1e3 / p * 100 }')% of $peak_what ($peak TFLOP/s)"
    else
        echo "$1: $per GFLOP/img of convolutions and linear layers, $(awk -v r="$rate" 'BEGIN { printf "%.1f", r / 1e3 }') TFLOP/s (no peak known for '$gpu_name': PEAK_TFLOPS=)"
    fi
}

# bench_case LABEL MODEL CH RES BATCH PEER-ARGS... (CASES="LABEL-RES ...": only those)
bench_case() {
    local label=$1 model=$2 ch=$3 res=$4 batch=$5; shift 5
    [ -z "${CASES:-}" ] || [[ " $CASES " == *" $label-$res "* ]] || return 0
    local ours mem_ours peer_rate=NA peer_mem=NA ratio=NA
    DD_CUDA_MEMSTATS=1 DD_NN_MEMSTATS=1 "$ours_bin" -d "cuda:$PREC" "$model" "$ch" "$res" "$batch" 1 "$ITERS" \
        >"$tmp/ours.out" 2>"$tmp/ours.err" || { cat "$tmp/ours.err" >&2; return 1; }
    ours=$(sed -n 's/.*: \([0-9.]*\) img-iter\/s.*/\1/p' "$tmp/ours.out")
    # the allocator's peak plus the buffers beside it (scratch, casts, cuDNN workspace): the
    # peer's max_memory_allocated counts its workspace too
    mem_ours=$(sed -n 's/.*peak allocator memory \([0-9.]*\) MiB, scratch \([0-9.]*\) MiB, cudnn workspace \([0-9.]*\) MiB.*/\1 \2 \3/p' "$tmp/ours.err" |
               awk '{ printf "%.0f", $1 + $2 + $3 }')
    if [ $have_peer = 1 ]; then
        "$PYTHON" "$peer" "$@" --batch "$batch" --iters "$ITERS" --device cuda --amp >"$tmp/peer.out"
        peer_rate=$(sed -n 's/.*: \([0-9.]*\) image-iterations\/s.*/\1/p' "$tmp/peer.out")
        peer_mem=$(sed -n 's/.*peak device memory \([0-9.]*\) GiB.*/\1/p' "$tmp/peer.out" |
                   awk '{printf "%.0f", $1 * 1024}')
        ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    fi
    echo "bench recover-step $label ${ch}x${res}x${res} b$batch cuda: ours $ours img-iter/s, peer $peer_rate img-iter/s, ratio $ratio"
    echo "bench recover-step $label ${ch}x${res}x${res} b$batch cuda: peak device memory ours $mem_ours MiB, peer $peer_mem MiB ($(grep '^cuda: peak' "$tmp/ours.err" | sed 's/^cuda: //'); $(grep '^nn: step memory' "$tmp/ours.err" | sed 's/^nn: //'))"
    flops_line "bench recover-step $label ${ch}x${res}x${res} b$batch cuda" "$tmp/ours.out"
    # the same with DD_CUDA_NHWC=1 (fp16/bf16 convolutions on NHWC copies; man 7 ddpipe-cuda),
    # beside the same peer figure (NHWC=0: not run)
    [ "$PREC" != fp32 ] && [ "${NHWC:-1}" != 0 ] || return 0
    DD_CUDA_NHWC=1 DD_CUDA_MEMSTATS=1 "$ours_bin" -d "cuda:$PREC" "$model" "$ch" "$res" "$batch" 1 "$ITERS" \
        >"$tmp/nhwc.out" 2>"$tmp/nhwc.err" || { cat "$tmp/nhwc.err" >&2; return 1; }
    ours=$(sed -n 's/.*: \([0-9.]*\) img-iter\/s.*/\1/p' "$tmp/nhwc.out")
    mem_ours=$(sed -n 's/.*peak allocator memory \([0-9.]*\) MiB, scratch \([0-9.]*\) MiB, cudnn workspace \([0-9.]*\) MiB.*/\1 \2 \3/p' "$tmp/nhwc.err" |
               awk '{ printf "%.0f", $1 + $2 + $3 }')
    [ "$peer_rate" = NA ] || ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    echo "bench recover-step $label ${ch}x${res}x${res} b$batch cuda DD_CUDA_NHWC=1: ours $ours img-iter/s, peer $peer_rate img-iter/s, ratio $ratio, peak device memory $mem_ours MiB"
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/bench gpu: /' || true
bench_case resnet18 resnet18 3 224 100 --model resnet18 --stem imagenet --res 224 --channels 3
bench_case resnet18 resnet18 3 200 100 --model resnet18 --stem imagenet --res 200 --channels 3
bench_case convnet3 convnet3 1 28 100 --model convnet3 --res 28 --channels 1
bench_case resnet18m resnet18m 3 32 100 --model resnet18 --stem small --res 32 --channels 3

# evaltrain's training step (tests/bench/bench_train.c beside tests/bench/torch_train_peer.py,
# --device cuda --amp): one train-mode SGD step on a random batch of 128
train_case() {
    local model=$1 ch=$2 res=$3 ours peer_rate=NA ratio=NA
    [ -z "${CASES:-}" ] || [[ " $CASES " == *" train-$model "* ]] || return 0
    ours=$("$BUILD/bench/bench_train" -d "cuda:$PREC" "$model" "$ch" "$res" 128 1 "$ITERS" |
           sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
    if [ $have_peer = 1 ]; then
        peer_rate=$("$PYTHON" tests/bench/torch_train_peer.py --model "$model" --channels "$ch" --res "$res" \
                    --batch 128 --iters "$ITERS" --device cuda --amp | sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
        ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    fi
    echo "bench train-step $model ${ch}x${res}x${res} b128 cuda: ours $ours img/s, peer $peer_rate img/s, ratio $ratio"
}
train_case convnet3 1 28
train_case resnet18m 3 32
train_case mobilenet_v2m 3 32

# patchsel's scoring: eval-mode forward without gradients of 250 canvases, logits read back
score_case() {
    local model=$1 ch=$2 res=$3 ours peer_rate=NA ratio=NA
    [ -z "${CASES:-}" ] || [[ " $CASES " == *" score-$model "* ]] || return 0
    ours=$("$BUILD/bench/bench_train" -d "cuda:$PREC" --score "$model" "$ch" "$res" 250 1 "$ITERS" |
           sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
    if [ $have_peer = 1 ]; then
        peer_rate=$("$PYTHON" tests/bench/torch_train_peer.py --score --model "$model" --channels "$ch" \
                    --res "$res" --batch 250 --iters "$ITERS" --device cuda --amp | sed -n 's/.*: \([0-9.]*\) img\/s.*/\1/p')
        ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    fi
    echo "bench score $model ${ch}x${res}x${res} b250 cuda: ours $ours img/s, peer $peer_rate img/s, ratio $ratio"
}
score_case convnet3 1 28
score_case resnet18m 3 32
score_case resnet18 3 224

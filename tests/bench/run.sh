#!/usr/bin/env bash
# run.sh - `make bench`: the recover inner step, ours (build/bench/bench_recover) beside the PyTorch
# peer (../shared/bench/torch_recover_peer.py), same machine, same run, 2 threads. Per case:
#   bench recover-step MODEL CxHxW bBATCH cpu: ours N img-iter/s, peer M img-iter/s, ratio R
#   bench recover-step MODEL CxHxW bBATCH cpu: peak RSS ours A MiB, peer B MiB (our arena: U MiB in
#   use at once, H MiB held)
# Peak RSS: getrusage of our process; the peer's through /usr/bin/time -f %M (else Python's resource
# module). Bars (issue 3): convnet3 ratio >= 1.5, resnet18 (small stem) >= 1.0; (issue 7) mobilenet_v2,
# shufflenet_v2_x1_0, densenet121 (small stems) >= 1.0. ZOO_ITERS: timed steps of those (default 3, 3, 2).
# ROUNDS (default 3; ZOO_ROUNDS for the zoo, default 1): alternating runs of ours and the peer per
# case; the line gives the medians (and a "rounds" line every run's figure). ZOO_ALL=1 adds the rest
# of the zoo's recover steps (efficientnet_b0, shufflenet_v2_x0_5, densenet169, wide_resnet50_2,
# vgg11_bn, alexnet), and their training steps (run_train.sh); ZOO_ALL=only runs just those
# recover steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${THREADS:-2}
ITERS=${ITERS:-10}
ours_bin=$BUILD/bench/bench_recover
peer=${PEER:-../shared/bench/torch_recover_peer.py}
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

have_peer=1
if [ ! -f "$peer" ]; then echo "bench: peer $peer not found: ours only" >&2; have_peer=0
elif ! "$PYTHON" -c 'import torch, torchvision' >/dev/null 2>&1; then
    echo "bench: $PYTHON cannot import torch: ours only" >&2; have_peer=0
fi

# peer_run ARGS...: runs the peer, leaves its output in $tmp/peer.out and peak RSS (KiB) in $tmp/peer.rss
peer_run() {
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f %M -o "$tmp/peer.rss" "$PYTHON" "$peer" "$@" >"$tmp/peer.out"
    else
        "$PYTHON" - "$tmp/peer.rss" "$peer" "$@" >"$tmp/peer.out" <<'PY'
import resource, runpy, sys
out, sys.argv = sys.argv[1], sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
open(out, "w").write("%d\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
PY
    fi
}

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# bench_case LABEL MODEL CH RES BATCH PEER-ARGS...: ROUNDS alternating runs of ours and the peer
# (this machine's speed drifts by 10-20% within minutes), their medians and the ratio of those
bench_case() {
    local label=$1 model=$2 ch=$3 res=$4 batch=$5; shift 5
    local out ours rss_ours=0 peer_rate=NA peer_rss=NA ratio=NA r all_ours="" all_peer="" rss arena=
    for ((r = 0; r < ROUNDS; r++)); do
        out=$("$ours_bin" "$model" "$ch" "$res" "$batch" "$THREADS" "$ITERS")
        all_ours+="$(sed -n 's/.*: \([0-9.]*\) img-iter\/s.*/\1/p' <<<"$out") "
        rss=$(sed -n 's/.*peak RSS \([0-9]*\) KiB.*/\1/p' <<<"$out")
        [ "$rss" -gt "$rss_ours" ] && rss_ours=$rss
        arena=$(sed -n 's/.*arena \([0-9.]*\) MiB in use, \([0-9.]*\) MiB held.*/\1 MiB in use at once, \2 MiB held/p' <<<"$out")
        if [ $have_peer = 1 ]; then
            peer_run "$@" --batch "$batch" --threads "$THREADS" --iters "$ITERS"
            all_peer+="$(sed -n 's/.*: \([0-9.]*\) image-iterations\/s.*/\1/p' "$tmp/peer.out") "
            peer_rss=$(awk -v m="${peer_rss/NA/0}" '{ v = $1 / 1024 } END { printf "%.0f", (v > m ? v : m) }' "$tmp/peer.rss")
        fi
    done
    ours=$(tr ' ' '\n' <<<"$all_ours" | grep . | median)
    if [ $have_peer = 1 ]; then
        peer_rate=$(tr ' ' '\n' <<<"$all_peer" | grep . | median)
        ratio=$(awk -v a="$ours" -v b="$peer_rate" 'BEGIN { printf "%.2f", a / b }')
    fi
    echo "bench recover-step $label ${ch}x${res}x${res} b$batch cpu: ours $ours img-iter/s, peer $peer_rate img-iter/s, ratio $ratio"
    [ "$ROUNDS" -gt 1 ] && echo "bench recover-step $label ${ch}x${res}x${res} b$batch cpu: rounds ours ${all_ours% }, peer ${all_peer% } (medians above)"
    echo "bench recover-step $label ${ch}x${res}x${res} b$batch cpu: peak RSS ours $((rss_ours / 1024)) MiB, peer $peer_rss MiB (our arena: $arena)"
}

ROUNDS=${ROUNDS:-3}
if [ "${ZOO_ALL:-0}" != only ]; then
    bench_case convnet3 convnet3 1 28 100 --model convnet3 --res 28 --channels 1
    bench_case resnet18m resnet18m 3 32 100 --model resnet18 --stem small --res 32 --channels 3
    # issue 7: FADRM+'s teacher architectures as torchvision's nets with small stems (not FADRM's own
    # CIFAR nets), bar >= 1.0; heavier nets time fewer steps
    ROUNDS=${ZOO_ROUNDS:-1}
    ITERS=${ZOO_ITERS:-3} bench_case mobilenet_v2m mobilenet_v2m 3 32 100 --model mobilenet_v2 --stem small --res 32 --channels 3
    ITERS=${ZOO_ITERS:-3} bench_case shufflenet_v2_x1_0m shufflenet_v2_x1_0m 3 32 100 --model shufflenet_v2_x1_0 --stem small --res 32 --channels 3
    ITERS=${ZOO_ITERS:-2} bench_case densenet121m densenet121m 3 32 100 --model densenet121 --stem small --res 32 --channels 3
fi
ROUNDS=${ZOO_ROUNDS:-1}
# ZOO_ALL=1: the rest of the zoo's recover steps (small stems where the zoo has them; vgg11_bn
# and alexnet with torchvision's, alexnet at 64 px); ZOO_ALL=only: those and nothing else
if [ "${ZOO_ALL:-0}" != 0 ]; then
    ITERS=${ZOO_ITERS:-3} bench_case efficientnet_b0m efficientnet_b0m 3 32 100 --model efficientnet_b0 --stem small --res 32 --channels 3
    ITERS=${ZOO_ITERS:-3} bench_case shufflenet_v2_x0_5m shufflenet_v2_x0_5m 3 32 100 --model shufflenet_v2_x0_5 --stem small --res 32 --channels 3
    ITERS=${ZOO_ITERS:-2} bench_case densenet169m densenet169m 3 32 100 --model densenet169 --stem small --res 32 --channels 3
    ITERS=${ZOO_ITERS:-2} bench_case wide_resnet50_2m wide_resnet50_2m 3 32 100 --model wide_resnet50_2 --stem small --res 32 --channels 3
    ITERS=${ZOO_ITERS:-3} bench_case vgg11_bn vgg11_bn 3 32 100 --model vgg11_bn --stem imagenet --res 32 --channels 3
    ITERS=${ZOO_ITERS:-3} bench_case alexnet alexnet 3 64 100 --model alexnet --stem imagenet --res 64 --channels 3
    [ "$ZOO_ALL" = only ] && exit 0
fi
# conv kernels beside torch.nn.functional (tests/bench/bench_ops.c), 3 iterations: a quick look
PYTHON=$PYTHON "$BUILD/bench/bench_ops" "$THREADS" 3
# training throughput (forward + backward + SGD step) beside PyTorch's: evaltrain's bench
BUILD=$BUILD PYTHON=$PYTHON bash "$(dirname "$0")/run_train.sh"

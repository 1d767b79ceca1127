#!/usr/bin/env bash
# flops.sh - nn_flops (the FLOPs of convolutions and linear layers a context ran; DD_NN_PROFILE's
# GFLOP/s and the benches' FLOP/step, from which tests/bench/run_gpu.sh takes the fraction of the
# GPU's tensor peak) against a count over PyTorch's own modules as they run (flops_peer.py: the
# shapes torch ran, each autograd pass where autograd runs it): one recover step (input gradient
# only), one training step (weight gradients; the input's first convolution has no input
# gradient) and one scoring forward, exactly, on the zoo's kinds of network (plain, residual,
# depthwise, grouped, channel split and concatenation, squeeze-excitation, dense, linear heads).
set -euo pipefail
if ! "$PYTHON" -c 'import torch, torchvision' >/dev/null 2>&1; then
    echo "SKIP: python3-torch not importable"; exit 77
fi
bench=$TESTS/../$BUILD/bench
# ours (zoo name) | torch (model_peer.py's arch and stem) | channels resolution batch
cases="convnet3 convnet3 - 1 28 3
convnet3:pad=3 convnet3:pad=3 - 1 28 1
resnet18m resnet18 small 3 32 1
resnet18 resnet18 imagenet 3 64 1
mobilenet_v2m mobilenet_v2 small 3 32 2
shufflenet_v2_x0_5m shufflenet_v2_x0_5 small 1 32 2
efficientnet_b0m efficientnet_b0 small 3 32 1
shufflenet_g2_cifar shufflenet_g2_cifar - 3 32 1
densenet_cifar densenet_cifar - 3 32 1
alexnet alexnet imagenet 3 64 2"
peer_in=""
while read -r zoo arch stem ch res b; do
    for mode in recover train score; do peer_in+="$mode $arch $stem $ch $res $b"$'\n'; done
done <<<"$cases"
peer=$(cd "$TESTS/parity" && "$PYTHON" flops_peer.py <<<"$peer_in")
fails=0 i=0
mapfile -t want <<<"$peer"
while read -r zoo arch stem ch res b; do
    for mode in recover train score; do
        case $mode in
            recover) out=$("$bench/bench_recover" "$zoo" "$ch" "$res" "$b" 1 1) ;;
            train) out=$("$bench/bench_train" "$zoo" "$ch" "$res" "$b" 1 1) ;;
            score) out=$("$bench/bench_train" --score "$zoo" "$ch" "$res" "$b" 1 1) ;;
        esac
        ours=$(sed -n 's/.* \([0-9]*\) FLOP\/step .*/\1/p' <<<"$out")
        if [ -n "$ours" ] && [ "$ours" = "${want[$i]}" ]; then
            echo "ok: $mode $zoo ${ch}x${res}x${res} b$b: $ours FLOP/step, as torch's modules ran"
        else
            echo "FAIL: $mode $zoo ${ch}x${res}x${res} b$b: ours '${ours}', torch's ${want[$i]} ($out)"
            fails=$((fails + 1))
        fi
        i=$((i + 1))
    done
done <<<"$cases"
[ "$fails" = 0 ] || { echo "$fails of $i FLOP counts differ"; exit 1; }
echo "all $i FLOP counts equal torch's"

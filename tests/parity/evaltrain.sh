#!/usr/bin/env bash
# evaltrain.sh - (1) one epoch of SGD (lr 0.001, momentum 0.9, weight decay 5e-4) with --no-aug
# --no-shuffle, batch 32 over 256 Fashion-MNIST images, from weights saved by our tool, ends at
# float64 PyTorch's weights and BN running statistics (max abs diff <= 1e-5; why not a larger lr:
# see the peer's docstring), one step at lr 0.05 too, and batch 16 as 2 micro-batches over 44
# images (a last batch of 12) against the FKD reference's gradient accumulation, and --bn-momentum
# 0.19 against RDED's two train-mode forwards per step; (2) a torchvision resnet18 (small stem)
# checkpoint trained in PyTorch, converted with pipelines/torch2safetensors.py, evaluates under
# --eval-only to the same top-1 (exactly) and mean cross-entropy (1e-4) as in PyTorch; (3) every
# other torchvision net of the zoo (mobilenet_v2, shufflenet_v2_x0_5 / x1_0, densenet121 / 169 /
# 201, efficientnet_b0, wide_resnet50_2, resnet50, vgg11_bn, alexnet; small-image stems where the
# zoo has them), random weights, saved in the checkpoint forms users have, converted with the
# architecture guessed by torch2safetensors.py: the guess is the zoo name, and --eval-only on 8
# test images (64 px where a net needs more than 28) gives torch's mean cross-entropy (1e-4); (4) a
# 224-px resnet18 evaluates 250x300 and 300x250 images through Resize(256) + CenterCrop(224) to
# torch's mean cross-entropy (1e-4); (5) --res 28 trains on images kept at 20, 28 and 45 px, each
# cropped whole and resized antialiased, to float64 PyTorch's weights (1e-5); (6) the reference
# ConvNets' checkpoints (RDED's and FADRM's/UFC's names, 3 channels) convert to convnet3 and give
# torch's cross-entropy, a 1-channel one (first convolution padded by 3) to convnet3:pad=3 likewise
# on 28-px images, their instance-norm, GroupNorm(4, C), norm-less and layer-norm forms to
# convnet3:norm=instance, norm=group, pad=3,norm=none and pad=3,norm=layer likewise, a 2-d norm
# weight is refused; FADRM's own ShuffleNetV2 (net_size 0.5) converts to shufflenet_v2_x0_5m and gives
# torch's cross-entropy; and a reference repository's own CIFAR net (conv1 but no ResNet layers) is named as
# such by the converter and the loader.
# Peer: tests/parity/evaltrain_peer.py. Runs in a fresh temporary directory.
set -euo pipefail
if ! "$PYTHON" -c 'import torch, torchvision, numpy' >/dev/null 2>&1; then
    echo "SKIP: python3-torch/torchvision not importable"; exit 77
fi
fmnist=/usr/share/datasets/fashion-mnist
[ -d "$fmnist" ] || { echo "SKIP: Fashion-MNIST not installed at $fmnist"; exit 77; }
peer=$TESTS/parity/evaltrain_peer.py

"$BIN/tsimport" -q --format idx --limit 256 "$fmnist" >tr.tsr
"$BIN/evaltrain" -q -m convnet3 -s 1 --epochs 0 --save init.safetensors tr.tsr >/dev/null
sgd=(-q -w init.safetensors --epochs 1 --batch 32 --no-aug --no-shuffle --optimizer sgd --momentum 0.9 --wd 5e-4)
"$BIN/evaltrain" "${sgd[@]}" --lr 0.001 --save ours.safetensors tr.tsr >/dev/null
"$BIN/tscat" --head 32 tr.tsr >tr32.tsr
"$BIN/evaltrain" "${sgd[@]}" --lr 0.05 --save ours1.safetensors tr32.tsr >/dev/null
"$BIN/tscat" --head 44 tr.tsr >tr44.tsr
"$BIN/evaltrain" "${sgd[@]/32/16}" --micro 2 --lr 0.001 --save ours_micro.safetensors tr44.tsr >/dev/null
"$BIN/tscat" --head 64 tr.tsr >tr64.tsr
"$BIN/evaltrain" "${sgd[@]}" --bn-momentum 0.19 --lr 0.001 --save ours_twice.safetensors tr64.tsr >/dev/null

"$BIN/tsimport" -q --format idx --split test --limit 100 "$fmnist" >te.tsr
"$PYTHON" "$peer" tvmodel "$fmnist"
"$PYTHON" "$TESTS/../pipelines/torch2safetensors.py" tv.pth tv.safetensors --mean 0.2860 --std 0.3530 --input-size 28
"$BIN/evaltrain" --eval-only -w tv.safetensors te.tsr >ours.json
"$PYTHON" "$peer" check "$fmnist"

"$BIN/tscat" -q --head 8 te.tsr >te8.tsr
"$BIN/resample" -q --size 64 te8.tsr >te64.tsr
"$BIN/tsexport" --npy np28 te8.tsr
"$BIN/tsexport" --npy np64 te64.tsr
"$PYTHON" "$peer" tvzoo
while read -r case px; do
    t=te8.tsr; [ "$px" = 64 ] && t=te64.tsr
    "$BIN/evaltrain" --eval-only -q -w "zoo/$case.safetensors" "$t" >"zoo/$case.json" \
        || echo "evaltrain --eval-only -w zoo/$case.safetensors failed" >&2
done <zoo/cases.txt
"$PYTHON" "$peer" tvzoo-check

# reference ConvNets (RDED's and FADRM's names) through the converter
"$PYTHON" "$peer" refconv
for d in rgb gray; do "$BIN/tsimport" -q --format npy np_$d >$d.tsr; done
while read -r c d; do
    "$BIN/evaltrain" --eval-only -q -w refconv/$c.safetensors $d.tsr >refconv/$c.json \
        || echo "evaltrain --eval-only -w refconv/$c.safetensors failed" >&2
done <refconv/cases.txt
for c in ufc_mbv2 ufc_g2; do
    ! "$BIN/evaltrain" --eval-only -q -w refconv/${c}_raw.safetensors rgb.tsr 2>refconv/${c}_loader.log
done
"$PYTHON" "$peer" refconv-check

# (4) a 224-px model evaluates validation images of other sizes after Resize(256) + CenterCrop(224)
"$BIN/resample" -q --size 250x300 te8.tsr >wide.tsr
"$BIN/resample" -q --size 300x250 te8.tsr >tall.tsr
"$BIN/tsexport" --npy np_wide wide.tsr
"$BIN/tsexport" --npy np_tall tall.tsr
"$PYTHON" "$peer" val224
for k in wide tall; do "$BIN/evaltrain" --eval-only -q -w val/rn18.safetensors $k.tsr >val/$k.json; done
"$PYTHON" "$peer" val224-check

# (5) --res 28: images of 20, 28 (uint8 as imported) and 45 px kept at their sizes, each cropped
# whole (--rrc-scale 1,1 on a square image) and resized antialiased to 28 x 28
"$BIN/tscat" -q --head 96 tr.tsr >tr96.tsr
for k in 0 1 2; do "$BIN/tscat" -q --every 3:$k tr96.tsr >part$k.tsr; done
"$BIN/resample" -q --size 20 part0.tsr >s20.tsr
cp part1.tsr s28.tsr
"$BIN/resample" -q -A --size 45 part2.tsr >s45.tsr
for s in s20 s28 s45; do "$BIN/tsexport" --npy np_$s $s.tsr; done
"$BIN/tscat" -q s20.tsr s28.tsr s45.tsr >own.tsr
own=(-q -w init.safetensors --epochs 1 --batch 32 --no-shuffle --optimizer sgd --momentum 0.9 --wd 5e-4 --lr 0.001)
"$BIN/evaltrain" "${own[@]}" --res 28 --rrc-scale 1,1 --no-flip --save ours_own.safetensors own.tsr >/dev/null
# --no-aug: Resize(28) + CenterCrop(28), the same on a square image
"$BIN/evaltrain" "${own[@]}" --res 28 --no-aug --save ours_own_noaug.safetensors own.tsr >/dev/null
"$PYTHON" "$peer" own "$fmnist"
echo "all ok"

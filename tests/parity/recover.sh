#!/usr/bin/env bash
# recover.sh - 20 steps of recover equal the same loop in PyTorch (tests/parity/recover_peer.py)
# on the same weights and initial images: a fused run with one ARC merge (2 stages of 10, Adam
# re-created), without augmentation and with it (the peer replays the draws ddpipe wrote to its
# metrics with torch's crop/interpolate, flip and roll); one piece of a longer budget with two
# teachers in round robin; two teachers as CV-DD's weighted committee (--committee, with augmentation
# and without); and INFER's compensators (--ufc, two teachers: inputs, then inputs +
# compensator per teacher) without augmentation, with the roll alone (its default at 16 px) and
# with crop + flip + roll. Tolerance: 2e-4 on pixels (observed 4e-7 to 5e-5) (see the peer).
# Runs in a fresh temporary directory.
set -euo pipefail
if ! "$PYTHON" -c 'import torch, numpy' >/dev/null 2>&1; then
    echo "SKIP: python3-torch not importable"; exit 77
fi
tool=$TESTS/../$BUILD/tests/parity/recover_tool
peer=$TESTS/parity/recover_peer.py
"$PYTHON" "$peer" make .
"$BIN/tsimport" -q init >init.tsr
"$tool" teacher t1.safetensors convnet3:width=16 init.tsr 1
"$tool" teacher t2.safetensors convnet2:width=8 init.tsr 2
"$BIN/recover" -q -j1 --no-aug -w t1.safetensors --iters 20 --arc 1 --alpha 0.5 init.tsr >fused.tsr
"$BIN/tsexport" --npy fused fused.tsr
"$PYTHON" "$peer" check fused/image.npy init/image.npy fused:20:1:0.5 t1.safetensors
"$BIN/recover" -q -j1 --no-aug -w t1.safetensors -w t2.safetensors --steps 100:120:400 init.tsr >piece.tsr
"$BIN/tsexport" --npy piece piece.tsr
"$PYTHON" "$peer" check piece/image.npy init/image.npy piece:100:120:400 t1.safetensors t2.safetensors
"$BIN/recover" -q -j1 -w t1.safetensors --iters 20 --arc 1 -m aug.jsonl init.tsr >aug.tsr
"$BIN/tsexport" --npy aug aug.tsr
"$PYTHON" "$peer" check aug/image.npy init/image.npy fused:20:1:0.5 metrics=aug.jsonl t1.safetensors
# CV-DD's committee: both teachers at every step on one view, weighted (priors through softmax(A/5), and as given)
"$BIN/recover" -q -j1 -w t1.safetensors -w t2.safetensors --committee prior:43.1,46.5 --iters 20 --arc 1 \
    -m comm.jsonl init.tsr >comm.tsr
"$BIN/tsexport" --npy comm comm.tsr
"$PYTHON" "$peer" check comm/image.npy init/image.npy fused:20:1:0.5 metrics=comm.jsonl committee=prior:43.1,46.5 \
    t1.safetensors t2.safetensors
"$BIN/recover" -q -j1 --no-aug -w t1.safetensors -w t2.safetensors --committee 0.25,2 --steps 100:120:400 \
    init.tsr >commw.tsr
"$BIN/tsexport" --npy commw commw.tsr
"$PYTHON" "$peer" check commw/image.npy init/image.npy piece:100:120:400 committee=0.25,2 t1.safetensors t2.safetensors
for a in none roll full; do
    "$BIN/recover" -q -j1 --ufc --aug $a -w t1.safetensors -w t2.safetensors --iters 20 -m ufc-$a.jsonl init.tsr >ufc-$a.tsr
    "$BIN/tsexport" --npy ufc-$a ufc-$a.tsr
    "$PYTHON" "$peer" check ufc-$a/image.npy init/image.npy ufc:20:1 metrics=ufc-$a.jsonl t1.safetensors t2.safetensors
done
echo "all ok"

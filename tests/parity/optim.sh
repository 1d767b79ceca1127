#!/usr/bin/env bash
# optim.sh - three SGD (momentum, nesterov both ways, weight decay), Adam (recover's betas, and with
# L2) and AdamW (decoupled decay on conv/linear weights only, and on every parameter as INFER's
# student has it) steps equal torch.optim's.
# Tolerance: see tests/parity/optim_peer.py. Runs in a fresh temporary directory.
set -euo pipefail
if ! "$PYTHON" -c 'import torch, numpy' >/dev/null 2>&1; then
    echo "SKIP: python3-torch not importable"; exit 77
fi
helper=$TESTS/../$BUILD/tests/parity/optim_parity
peer=$TESTS/parity/optim_peer.py
"$PYTHON" "$peer" make .
while read -r name steps rest; do
    # shellcheck disable=SC2086
    "$helper" init.safetensors grads.safetensors "$steps" $rest "$name.safetensors"
done < configs.txt
"$PYTHON" "$peer" check .

#!/usr/bin/env bash
# codecs.sh - .npy and safetensors against numpy (and torch): our .npy files load in numpy with the
# same values and numpy's exact bytes; numpy-written .npy (several dtypes, v1/v2/v3 headers, 0-d,
# big-endian, Fortran order) parse in ours to numpy's values; our safetensors read with a few lines of
# numpy; a safetensors file written from torch tensors with struct/json reads in ours; JPEG/PNG/PPM
# decode as PIL does; pickles (CIFAR's python batches) read as Python's pickle reads them.
# Runs in a temp dir with BIN, BUILD, TESTS, PYTHON set by tests/run.sh. SKIP (77) without numpy.
set -euo pipefail
PYTHON=${PYTHON:-/usr/bin/python3}
TESTS=${TESTS:?TESTS not set}
BUILD=${BUILD:-build}
TOOL=$TESTS/../$BUILD/tests/parity/codecs_tool
PEER=$TESTS/parity/codecs_peer.py

if ! "$PYTHON" -c 'import numpy' 2>/dev/null; then
    echo "SKIP: numpy is not importable by $PYTHON"
    exit 77
fi
[ -x "$TOOL" ] || { echo "codecs.sh: $TOOL not built"; exit 1; }

# ours -> numpy
mkdir ours
"$TOOL" npy-write ours
"$PYTHON" "$PEER" check-npy ours

# numpy -> ours
mkdir np
"$PYTHON" "$PEER" write-npy np
n=0
for f in np/*.npy; do
    "$TOOL" npy-dump "$f" > dump.txt
    "$PYTHON" "$PEER" cmp-dump "$f" dump.txt
    n=$((n + 1))
done
echo "numpy -> ours: $n .npy files equal (Fortran order among them)"

# safetensors: ours -> numpy reader, and back through our reader
"$TOOL" st-write ours.safetensors
"$PYTHON" "$PEER" check-st ours.safetensors
"$TOOL" st-dump ours.safetensors > st_ours.txt
"$PYTHON" "$PEER" cmp-st ours.safetensors st_ours.txt

# safetensors written on the torch side
if "$PYTHON" -c 'import torch' 2>/dev/null; then
    "$PYTHON" "$PEER" write-st-torch torch.safetensors
    "$TOOL" st-dump torch.safetensors > st_torch.txt
    "$PYTHON" "$PEER" cmp-st torch.safetensors st_torch.txt
else
    echo "note: torch not importable; torch-written safetensors check skipped"
fi
# images: ours against PIL (what torchvision's ImageFolder loader uses)
if "$PYTHON" -c 'import PIL' 2>/dev/null; then
    mkdir img
    "$PYTHON" "$PEER" write-img img
    for f in img/*; do
        "$TOOL" img-dump "$f" > img.txt
        "$PYTHON" "$PEER" cmp-img "$f" img.txt
    done
    echo "images: $(ls img | wc -l) files decode as PIL does"
else
    echo "note: PIL not importable; image checks skipped"
fi
# pickles (formats/pickle.c, CIFAR's python batches): every value kind at protocols 0-5, numpy
# arrays of every supported dtype in both byte orders, shared references and long runs, dumped by
# ours and compared with what Python's pickle.loads gives; refused values name the reason
mkdir pk
"$PYTHON" "$PEER" write-pk pk
n=0
while read -r f; do
    want=$(cat "pk/$f.want")
    got=$("$TOOL" pk-dump "pk/$f" 2>&1) || true
    case $want in
    "ERR "*) [[ $got == *"${want#ERR }"* ]] || { echo "codecs.sh: $f: want an error with '${want#ERR }', got: ${got:0:200}"; exit 1; } ;;
    *) [ "$got" = "$want" ] || { echo "codecs.sh: $f: ours ${got:0:300}"; echo "  python ${want:0:300}"; exit 1; } ;;
    esac
    n=$((n + 1))
done <pk/cases.txt
echo "pickles: $n files read as Python reads them (or refused with the reason)"
echo "codecs parity: ok"

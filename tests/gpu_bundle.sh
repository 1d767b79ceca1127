#!/usr/bin/env bash
# tests/gpu_bundle.sh [DIR] - what tests/gpu.sh needs on a GPU machine without this project's
# build dependencies, gathered into DIR (default .gpu/, which .git/info/exclude should list):
#   DIR/libs.tar.xz   the shared libraries the programs load that are not CUDA's or glibc's
#                     (libarchive, libzstd, libjansson, libopenblas, ... as ldd finds them here)
#   DIR/fmnist/       Fashion-MNIST: the first 12,000 training images and the test set
#   DIR/torch_recover_peer.py   the PyTorch peer of the recover bench
#   DIR/run.sh        unpacks the libraries and runs tests/gpu.sh with DD_LIBS, FMNIST and PEER
# Then, on the device machine (repository root; carried: build/bin, build/lib (the CUDA backend the
# programs open for -d cuda), build/tests/test_cuda_ops, build/tests/test_cuda_models,
# build/tests/parity, build/bench and DIR, about 49 MiB; all of build/tests would pass 64 MiB):
#   LOGS=$OUT bash DIR/run.sh ops models programs bench profile
# or, where a machine might not last the whole run (one stopped answering on 2026-12-05 and
# nothing came back), two calls on the same warm machine: `ops models`, then `programs bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.gpu}
BUILD=${BUILD:-build}
FM=${FMNIST:-/usr/share/datasets/fashion-mnist}
PEER=${PEER:-../shared/bench/torch_recover_peer.py}
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$BUILD/bin/recover" ] && [ -x "$BUILD/tests/test_cuda_ops" ] && [ -f "$BUILD/lib/libddpipe-cuda.so" ] \
    || { echo "gpu_bundle: build first, with CUDA (make)"; exit 1; }
mkdir -p "$DIR/fmnist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/libs"
# every library the programs, tests and benches load, less glibc's, the C++ runtime's and CUDA's
for b in "$BUILD"/bin/* "$BUILD"/tests/test_cuda_ops "$BUILD"/bench/* "$BUILD"/lib/*.so; do ldd "$b"; done |
    awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u |
    grep -Ev '/(libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+)\.so|/libcu|/libnv|/usr/local/cuda' |
    while read -r l; do cp -L "$l" "$tmp/libs/"; done
tar -C "$tmp" -cJf "$DIR/libs.tar.xz" libs
"$PYTHON" - "$FM" "$DIR/fmnist" <<'PY'
import gzip, shutil, struct, sys
src, dst, n = sys.argv[1] + "/", sys.argv[2] + "/", 12000
im = gzip.open(src + "train-images-idx3-ubyte.gz").read()
lb = gzip.open(src + "train-labels-idx1-ubyte.gz").read()
m, _, r, c = struct.unpack(">4I", im[:16])
gzip.open(dst + "train-images-idx3-ubyte.gz", "wb").write(struct.pack(">4I", m, n, r, c) + im[16:16 + n * r * c])
m, _ = struct.unpack(">2I", lb[:8])
gzip.open(dst + "train-labels-idx1-ubyte.gz", "wb").write(struct.pack(">2I", m, n) + lb[8:8 + n])
for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    shutil.copy(src + f, dst + f)
PY
[ -f "$PEER" ] && cp "$PEER" "$DIR/torch_recover_peer.py" || echo "gpu_bundle: no peer at $PEER (bench: ours only)"
cat >"$DIR/run.sh" <<'EOF'
#!/usr/bin/env bash
# made by tests/gpu_bundle.sh: run from the repository root on the GPU machine
d=$(cd "$(dirname "$0")" && pwd)
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$d/libs.tar.xz" /tmp/ddpipe-gpu
DD_LIBS=/tmp/ddpipe-gpu/libs FMNIST=$d/fmnist PEER=$d/torch_recover_peer.py exec bash tests/gpu.sh "$@"
EOF
chmod +x "$DIR/run.sh"
du -sh "$DIR" "$BUILD/bin" "$BUILD/tests" "$BUILD/bench" | sed 's/^/gpu_bundle: /'

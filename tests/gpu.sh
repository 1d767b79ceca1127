#!/usr/bin/env bash
# tests/gpu.sh - the GPU checks, for a machine with a GPU that lacks this project's build
# dependencies (a lent device machine): run from the repository root with a tree built elsewhere
# (`make`: the CUDA backend is built wherever nvcc is found) carried along.
#   bash tests/gpu.sh [ops] [models] [programs] [bench] [kernels] [profile]
#   (default: all but kernels and profile)
# ops       build/tests/test_cuda_ops: every slot of the op table against the CPU backend, the
#           optimizers, fp16/bf16 convolution and linear, a resnet18m recover step end to end
# models    build/tests/test_cuda_models: every zoo architecture, eval, train and frozen-teacher
#           mode, logits, loss, input and weight gradients against the CPU, and the same bits
#           again with every value kept (DD_NN_KEEP_ALL=1)
# programs  tests/golden/cuda.sh: every program with -d cuda against -d cpu, --precision, and a
#           FADRM pipeline end to end on the GPU (Fashion-MNIST from $FMNIST)
# bench     tests/bench/run_gpu.sh: ours beside the PyTorch peer (PEER=.../torch_recover_peer.py)
# kernels   DD_NN_PROFILE's per-kernel table of the resnet18 224-px fp16 recover step (3 steps),
#           and its max pooling rows again with DD_CUDA_POOL_GENERAL=1 (the general kernel);
#           then the mobilenet_v2m fp16 training step's table (batch 128, 3 steps)
# profile   ncu's per-kernel times of the resnet18 224-px fp16 recover step (2 timed steps)
# tests/gpu_bundle.sh gathers what such a machine lacks and writes the command that runs this.
# Environment: PYTHON (default python3: torch, numpy), FMNIST, PEER; DD_LIBS, a folder of shared
# libraries the machine lacks (libarchive, libopenblas, ...: `ldd build/bin/recover build/lib/*.so` says which),
# put first on LD_LIBRARY_PATH; cuDNN and cuBLAS are looked for in PyTorch's nvidia/* packages,
# then /usr/local/cuda/lib64. Logs go to $LOGS (default build/gpu-logs). make check-gpu is the
# same checks on a machine that has the build dependencies (tests/run.sh, GPU SKIPs failing).
# Exit status 0 when every part asked for passed.
set -u
cd "$(dirname "$0")/.."
parts=${*:-ops models programs bench}
export PYTHON=${PYTHON:-python3} BUILD=${BUILD:-build}
export BIN=$PWD/$BUILD/bin TESTS=$PWD/tests
LOGS=${LOGS:-$BUILD/gpu-logs}
mkdir -p "$LOGS"
nv=$("$PYTHON" -c 'import os, nvidia; p = nvidia.__path__[0]; print(":".join(os.path.join(p, d, "lib")
    for d in ("cudnn", "cublas", "cuda_runtime") if os.path.isdir(os.path.join(p, d, "lib"))))' 2>/dev/null)
export LD_LIBRARY_PATH=${DD_LIBS:+$DD_LIBS:}${nv:+$nv:}/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
missing=$(ldd "$BIN/recover" "$PWD/$BUILD/lib/libddpipe-cuda.so" | grep 'not found')   # (the backend: -d cuda opens it)
[ -z "$missing" ] || { echo "gpu: libraries not found (set DD_LIBS):"; echo "$missing"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
for p in $parts; do
    case $p in ops | models | programs | bench | kernels | profile) ;;
    *) echo "gpu: unknown part '$p' (ops, models, programs, bench, kernels, profile)"; exit 2 ;;
    esac
done
# A device machine that runs out of host memory stops answering, and nothing of the run comes back
# (2026-12-05: one did, cause unknown). A watcher stops every part below this script once the
# host's available memory falls under GUARD_MIB (default 3072), so the logs of the parts before
# come back; guard.log in $LOGS says so.
killtree() { # PID [SPARE]: PID's descendants, SPARE's subtree left alone
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        [ "$c" = "${2:-}" ] && continue
        killtree "$c" "${2:-}"
        kill -TERM "$c" 2>/dev/null
    done
}
rm -f "$LOGS/guard.log"
(
    while sleep 2; do
        a=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo 2>/dev/null)
        [ -n "$a" ] && [ "$a" -lt "${GUARD_MIB:-3072}" ] || continue
        echo "gpu: host memory available ${a} MiB < ${GUARD_MIB:-3072}: parts stopped" | tee "$LOGS/guard.log" >&2
        killtree $$ "$BASHPID"
        exit 0
    done
) &
guard=$!
trap 'kill $guard 2>/dev/null' EXIT
fails=0
for p in $parts; do
    t0=$SECONDS
    case $p in
    ops) timeout 300 "$BUILD/tests/test_cuda_ops" >"$LOGS/cuda_ops.log" 2>&1; rc=$?
         grep -v ' PASS$' "$LOGS/cuda_ops.log" | tail -n 5 ;;
    models) timeout 600 "$BUILD/tests/test_cuda_models" >"$LOGS/cuda_models.log" 2>&1; rc=$?
         cat "$LOGS/cuda_models.log" ;;
    programs) work=$(mktemp -d)
         (cd "$work" && timeout 600 bash "$TESTS/golden/cuda.sh") >"$LOGS/cuda_sh.log" 2>&1; rc=$?
         rm -rf "$work"; grep -v '^ok' "$LOGS/cuda_sh.log" | tail -n 12 ;;
    bench) timeout 600 bash tests/bench/run_gpu.sh 2>&1 | grep -v 'Warning\|scaler =' | tee "$LOGS/bench.log"
         rc=${PIPESTATUS[0]} ;;
    kernels) rm -f "$LOGS/kernels.txt"
         DD_NN_PROFILE=$LOGS/kernels.txt timeout 300 "$BUILD/bench/bench_recover" -d cuda:fp16 resnet18 3 224 100 1 3 \
             >"$LOGS/kernels.out" 2>&1; rc=$?
         head -n 32 "$LOGS/kernels.txt" 2>/dev/null || tail -n 5 "$LOGS/kernels.out"
         # max pooling's backward by the general kernel, to compare with kern_pool.h's row tiles above
         rm -f "$LOGS/kernels-general.txt"
         [ $rc = 0 ] && DD_CUDA_POOL_GENERAL=1 DD_NN_PROFILE=$LOGS/kernels-general.txt timeout 300 \
             "$BUILD/bench/bench_recover" -d cuda:fp16 resnet18 3 224 100 1 3 >"$LOGS/kernels-general.out" 2>&1
         grep -h "maxpool" "$LOGS/kernels.txt" 2>/dev/null | sed 's/^/tiles:   /'
         grep -h "maxpool" "$LOGS/kernels-general.txt" 2>/dev/null | sed 's/^/general: /'
         # the training step that trails the peer most (mobilenet_v2m, 0.83x on the H200): where it goes
         rm -f "$LOGS/kernels-mobilenet.txt"
         [ $rc = 0 ] && DD_NN_PROFILE=$LOGS/kernels-mobilenet.txt timeout 300 \
             "$BUILD/bench/bench_train" -d cuda:fp16 mobilenet_v2m 3 32 128 1 3 >"$LOGS/kernels-mobilenet.out" 2>&1
         head -n 24 "$LOGS/kernels-mobilenet.txt" 2>/dev/null ;;
    profile) ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
         if [ -z "$ncu" ]; then echo "gpu: profile: ncu not found"; rc=1
         else
             timeout 300 "$ncu" --profile-from-start off --metrics gpu__time_duration.sum --csv --print-units base \
                 "$BUILD/bench/bench_recover" -d cuda:fp16 resnet18 3 224 100 1 2 >"$LOGS/ncu.csv" 2>"$LOGS/ncu.err"
             rc=$?; [ $rc = 0 ] && "$PYTHON" tests/bench/ncu_summary.py "$LOGS/ncu.csv" 2 | tee "$LOGS/profile.log"
         fi ;;
    esac
    echo "gpu: $p $([ $rc = 0 ] && echo PASS || echo "FAIL (exit $rc)") ($((SECONDS - t0)) s; log in $LOGS)"
    [ $rc = 0 ] || fails=$((fails + 1))
    [ -f "$LOGS/guard.log" ] && { echo "gpu: stopped by the host memory guard"; fails=$((fails + 1)); break; }
done
exit $((fails > 0))

/* cuda.h - private to libcommon/nn/cuda/: the backend's state, the one error-checking path every
 * CUDA / cuDNN / cuBLAS call goes through, launch helpers and the kernel groups that backend.cu
 * puts into the op table.
 *
 * Everything runs on one stream (impl->stream): kernels, cuBLAS, cuDNN and the copies, so
 * stream order alone makes scratch reuse and the caching allocator's recycling safe.
 * A failing call inside a kernel slot is fatal: dd_die(DD_EXIT_DEVICE) naming the call and
 * file:line (the slots return void; the tape already dies on device out-of-memory). Only
 * nn_cuda_backend_new reports failure by returning NULL.
 * Kernels are compiled with --fmad=false so that float expressions round as the CPU reference's.
 */
#ifndef DD_NN_CUDA_H
#define DD_NN_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "libcommon/base/base.h"
#include "libcommon/nn/backend.h"
}

/* A growable device buffer: grown (never shrunk) to the largest size asked for, so a fixed-shape
 * loop stops allocating after its first step. */
typedef struct {
    void *p;
    size_t size;
} CuBuf;

typedef struct CuPool CuPool;     /* the caching allocator (alloc.cu) */
typedef struct CuConvCache CuConvCache;  /* per-shape cuDNN plans (conv.cu) */

typedef struct {
    NnBackend *be;               /* the table this is the impl of (its tmp_get / tmp_put) */
    int dev;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudnnHandle_t dnn;
    CuPool *pool;
    CuConvCache *conv;
    int precision;               /* NnPrecision of nn.h: 0 fp32, 1 fp16, 2 bf16 */
    CuBuf scratch;               /* per-op temporaries (partial sums, copies of x) */
    CuBuf stage;                 /* host arguments copied to the device (labels, perm, mean/std) */
    CuBuf workspace;             /* cuDNN workspace, sized by the largest plan (without tmp_get) */
    CuBuf cast;                  /* fp16/bf16 copies of conv/linear operands (without tmp_get) */
    int own_tmp;                 /* DD_CUDA_OWN_TMP=1: those two as without tmp_get (a check of it) */
    int nhwc;                    /* DD_CUDA_NHWC=1: fp16/bf16 convolutions in NHWC (conv.cu) */
    int nhwc_plans, nhwc_fell_back; /* plans that asked for NHWC: made so, made NCHW (nn_cuda_conv_layouts) */
} CuImpl;

static inline CuImpl *cu_impl(NnBackend *be) { return (CuImpl *)be->impl; }

/* ---- errors (backend.cu) ---- */
DD_NORETURN void cu_fail(const char *lib, const char *what, const char *call, const char *file,
                         int line);
#define CU_CHECK(call)                                                                         \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) cu_fail("cuda", cudaGetErrorString(e_), #call, __FILE__, __LINE__); \
    } while (0)
#define DNN_CHECK(call)                                                                        \
    do {                                                                                       \
        cudnnStatus_t e_ = (call);                                                             \
        if (e_ != CUDNN_STATUS_SUCCESS)                                                        \
            cu_fail("cudnn", cudnnGetErrorString(e_), #call, __FILE__, __LINE__);              \
    } while (0)
#define BLAS_CHECK(call)                                                                       \
    do {                                                                                       \
        cublasStatus_t e_ = (call);                                                            \
        if (e_ != CUBLAS_STATUS_SUCCESS)                                                       \
            cu_fail("cublas", cublasGetStatusString(e_), #call, __FILE__, __LINE__);           \
    } while (0)
/* After every kernel launch: configuration errors surface here, execution errors at the next
 * synchronising call (download). */
#define CU_LAUNCHED() CU_CHECK(cudaGetLastError())

/* ---- launch geometry ---- */
enum { CU_THREADS = 256 };
static inline unsigned cu_blocks(int64_t n)
{
    int64_t b = (n + CU_THREADS - 1) / CU_THREADS;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 8 ? 65535 * 8 : b);
}
/* Grid-stride loop over [0, n) with an index of type I: the kernels that split an index into
 * (plane, row, column) are templates over I, launched with uint32_t when n < 2^31 (a 32-bit
 * division costs a fraction of a 64-bit one, which the GPU emulates) by CU_LAUNCH_IDX. */
#define CU_FOR_I(I, i, n)                                                                      \
    for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)(n); i += (I)gridDim.x * blockDim.x)
#define CU_LAUNCH_IDX(kernel, n, stream, ...)                                                  \
    do {                                                                                       \
        if ((int64_t)(n) < ((int64_t)1 << 31))                                                 \
            kernel<uint32_t><<<cu_blocks(n), CU_THREADS, 0, (stream)>>>(__VA_ARGS__);          \
        else                                                                                   \
            kernel<int64_t><<<cu_blocks(n), CU_THREADS, 0, (stream)>>>(__VA_ARGS__);           \
        CU_LAUNCHED();                                                                         \
    } while (0)

/* Grid-stride loop over [0, n). */
#define CU_FOR(i, n)                                                                           \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                  \
         i += (int64_t)gridDim.x * blockDim.x)

/* ---- buffers (backend.cu) ---- */
/* buf grown to at least bytes (synchronises when it grows); never NULL (dies on failure). */
void *cu_buf(CuImpl *c, CuBuf *b, size_t bytes);
/* An op's temporary of bytes: the engine's (NnBackend tmp_get), else buffer b grown to it. Hand
 * it back with cu_tmp_put once the op's work is queued (the stream keeps the order). */
void *cu_tmp(CuImpl *c, CuBuf *b, size_t bytes);
void cu_tmp_put(CuImpl *c, void *p, size_t bytes);
/* Copies host data into the stage buffer at byte offset off (16-byte aligned); returns the
 * device pointer. Stage contents live until the next op's staging. An op that stages several
 * arrays grows the buffer to their total first (cu_buf): growing drops what is staged. */
void *cu_stage(CuImpl *c, size_t off, const void *host, size_t bytes);

/* ---- the caching allocator (alloc.cu) ---- */
CuPool *cu_pool_new(void);
/* NULL with dd_err when the device is out of memory even after releasing cached blocks. */
void *cu_pool_alloc(CuPool *p, size_t bytes);
void cu_pool_free(CuPool *p, void *ptr);
void cu_pool_destroy(CuPool *p);
size_t cu_pool_peak(const CuPool *p);
/* Returns the cached (free) blocks to the driver. */
void cu_pool_trim(CuPool *p);

/* ---- kernel groups ---- */
void cu_elem_init(NnBackend *be);
void cu_layout_init(NnBackend *be);
void cu_conv_init(NnBackend *be);
void cu_conv_destroy(CuImpl *c);
void cu_norm_init(NnBackend *be);
void cu_pool_ops_init(NnBackend *be);
void cu_loss_init(NnBackend *be);
void cu_optim_init(NnBackend *be);

/* ---- block reduction in double (fixed tree: same bits every run) ---- */
/* Sum of v over the block (blockDim.x == CU_THREADS), returned to every thread. */
__device__ static inline double cu_block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = CU_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

#endif

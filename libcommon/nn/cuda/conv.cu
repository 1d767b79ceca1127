/* conv.cu - convolution through cuDNN and linear through cuBLAS, in fp32 (FMA math: no TF32, so
 * CUDA-vs-CPU tests are tight) or, after set_precision, with fp16 / bf16 operands on tensor cores
 * and fp32 accumulation (cast on entry, results cast back and added in fp32).
 *
 * A plan per (shape, precision): descriptors and the forward / backward-data / backward-filter
 * algorithms, chosen once (cuDNN's heuristics; its timings with DD_CUDNN_FIND=1) among the
 * deterministic ones that fit the workspace limit, and the workspace they need. Workspace and
 * low-precision copies are temporaries of the op: room in the engine's step arena (NnBackend
 * tmp_get), where the tensors the step freed are, so they cost no memory of their own and, once
 * the arena settled, no allocation; a backend driven without an engine grows buffers of its own. */
#include "libcommon/nn/cuda/cuda.h"
#include "libcommon/nn/cuda/kern_transpose.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WS_LIMIT ((size_t)1 << 30)  /* largest workspace an algorithm may ask for */

typedef struct {
    NnConvShape s;
    int prec;
    int want_nhwc;                             /* the cache key: use_nhwc when the plan was made */
    int nhwc;                                  /* x, y, w of the low-precision copies in NHWC / KRSC
                                                * (0 where NHWC found no algorithm: NCHW instead) */
    cudnnTensorDescriptor_t x, y, bias, y32;   /* y32: fp32 dy for the bias gradient */
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_data, ws_filter;
    cudnnMathType_t math_fwd, math_data, math_filter; /* each pass's, set on conv before its call */
} Plan;

struct CuConvCache {
    Plan *plans;
    int n, cap;
};

static cudnnDataType_t dnn_type(int prec)
{
    return prec == 1 ? CUDNN_DATA_HALF : prec == 2 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

static const char *prec_name(int prec) { return prec == 1 ? "fp16" : prec == 2 ? "bf16" : "fp32"; }

/* An entry of an algorithm query that may be taken: it ran, or would (SUCCESS), deterministically, and for
 * fp32 without tensor cores (TF32 rounds the inputs: the fp32 path promises FMA arithmetic). An entry's
 * status, determinism and workspace belong to the math type it lists (PyTorch's cuDNN code says the same:
 * the caller sets the entry's math type before running it): fp16 and bf16 run each pass under its entry's
 * (run_math); fp32 under CUDNN_FMA_MATH always (CUDNN_DEFAULT_MATH would allow TF32 from Ampere on), its
 * workspace query deciding that the algorithm runs so. */
static int entry_ok(int prec, cudnnStatus_t st, cudnnDeterminism_t det, cudnnMathType_t math, size_t memory)
{
    return st == CUDNN_STATUS_SUCCESS && det == CUDNN_DETERMINISTIC && memory <= WS_LIMIT &&
           (prec || math == CUDNN_FMA_MATH || math == CUDNN_DEFAULT_MATH);
}

static cudnnMathType_t run_math(int prec, cudnnMathType_t listed) { return prec ? listed : CUDNN_FMA_MATH; }

/* The workspace of an entry under its math type: the larger of the listed figure and
 * cudnnGet*WorkspaceSize's (status st, size ws); SIZE_MAX (not taken) where that query fails (the
 * algorithm is not supported so) or the figure passes WS_LIMIT. */
static size_t ws_of(size_t listed, cudnnStatus_t st, size_t ws)
{
    size_t m = ws > listed ? ws : listed;
    return st == CUDNN_STATUS_SUCCESS && m <= WS_LIMIT ? m : SIZE_MAX;
}

static DD_NORETURN void no_algo(const NnConvShape *s, int prec, const char *what)
{
    dd_die(DD_EXIT_DEVICE, "cudnn: no deterministic %s algorithm for conv %dx%dx%dx%d -> %d, "
           "k%dx%d s%d p%d d%d g%d (%s) within %zu MiB of workspace", what, s->n, s->cin, s->h,
           s->w, s->cout, s->kh, s->kw, s->stride, s->pad, s->dil, s->groups, prec_name(prec),
           WS_LIMIT >> 20);
}

static void plan_free_desc(Plan *p)
{
    cudnnDestroyTensorDescriptor(p->x);
    cudnnDestroyTensorDescriptor(p->y);
    cudnnDestroyTensorDescriptor(p->y32);
    cudnnDestroyTensorDescriptor(p->bias);
    cudnnDestroyFilterDescriptor(p->w);
    cudnnDestroyConvolutionDescriptor(p->conv);
}

/* DD_CUDA_NHWC=1: fp16/bf16 convolutions of one group with channel counts that are multiples of 8
 * (tensor cores' NHWC kernels; a 3-channel stem stays NCHW) run on NHWC copies, the transposes
 * folded into the casts (conv.cu's k_to_low_t / k_from_low_t), where cuDNN's NCHW path adds NHWC
 * transposes of its own around the kernel (1.9 of the resnet18 224-px step's 18.8 ms on an H200). */
static int use_nhwc(const CuImpl *c, const NnConvShape *s)
{
    return c->nhwc && c->precision && s->groups == 1 && s->cin % 8 == 0 && s->cout % 8 == 0 &&
           tr_fits(s->oh * s->ow) && tr_fits(s->h * s->w) && tr_fits(s->kh * s->kw) && tr_fits(s->cin) &&
           tr_fits(s->cout);
}

/* p's descriptors (p->s and p->prec set) in NHWC or NCHW, and its three algorithms; NULL, or the
 * pass ("forward", "backward-data", "backward-filter") with no deterministic algorithm within
 * the workspace limit (the descriptors are made either way). */
static const char *plan_build(CuImpl *c, Plan *p, int nhwc)
{
    const NnConvShape *s = &p->s;
    const int prec = p->prec;
    p->nhwc = nhwc;
    cudnnDataType_t dt = dnn_type(prec);
    const cudnnTensorFormat_t fmt = nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    DNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
    DNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
    DNN_CHECK(cudnnCreateTensorDescriptor(&p->y32));
    DNN_CHECK(cudnnCreateTensorDescriptor(&p->bias));
    DNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
    DNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
    DNN_CHECK(cudnnSetTensor4dDescriptor(p->x, fmt, dt, s->n, s->cin, s->h, s->w));
    DNN_CHECK(cudnnSetTensor4dDescriptor(p->y, fmt, dt, s->n, s->cout, s->oh, s->ow));
    DNN_CHECK(cudnnSetTensor4dDescriptor(p->y32, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s->n, s->cout,
                                         s->oh, s->ow));
    DNN_CHECK(cudnnSetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, s->cout, 1, 1));
    DNN_CHECK(cudnnSetFilter4dDescriptor(p->w, dt, fmt, s->cout, s->cin / s->groups, s->kh, s->kw));
    DNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, s->pad, s->pad, s->stride, s->stride, s->dil,
                                              s->dil, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DNN_CHECK(cudnnSetConvolutionGroupCount(p->conv, s->groups));
    /* fp32: FMA kernels only (CUDNN_DEFAULT_MATH would allow TF32 on Ampere and later); the queries
     * below list entries under this math type and others, and each pass runs under its entry's. */
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, prec ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    int n, cch, h, w;
    DNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &n, &cch, &h, &w));
    if (n != s->n || cch != s->cout || h != s->oh || w != s->ow)
        dd_die(DD_EXIT_DEVICE, "cudnn: output shape %dx%dx%dx%d differs from the engine's "
               "%dx%dx%dx%d", n, cch, h, w, s->n, s->cout, s->oh, s->ow);

    /* The algorithms: by cuDNN's heuristics (the _v7 queries, ranked without running anything),
     * or, with DD_CUDNN_FIND=1, by timing every candidate once on this shape (cudnnFind*). On an
     * H200 the heuristics' choices made the fp16 resnet18 224-px recover step faster (7424
     * against 6733 img-iter/s): timed one at a time, FFT algorithms won layers whose place in
     * the step they lose. Either way the first deterministic one that fits the workspace limit:
     * runs repeat bit for bit whichever is chosen. */
    const int find = dd_env_on("DD_CUDNN_FIND");
    enum { NALGO = 16 };
    int got = 0, i;
    size_t ws = 0; /* cudnnGet*WorkspaceSize's figure for an entry, and its status */
    cudnnStatus_t st;
    cudnnConvolutionFwdAlgoPerf_t fp[NALGO];
    if (find) DNN_CHECK(cudnnFindConvolutionForwardAlgorithm(c->dnn, p->x, p->w, p->conv, p->y, NALGO, &got, fp));
    else DNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(c->dnn, p->x, p->w, p->conv, p->y, NALGO, &got, fp));
    for (i = 0; i < got; i++) {
        if (!entry_ok(prec, fp[i].status, fp[i].determinism, fp[i].mathType, fp[i].memory)) continue;
        DNN_CHECK(cudnnSetConvolutionMathType(p->conv, run_math(prec, fp[i].mathType)));
        st = cudnnGetConvolutionForwardWorkspaceSize(c->dnn, p->x, p->w, p->conv, p->y, fp[i].algo, &ws);
        if ((p->ws_fwd = ws_of(fp[i].memory, st, ws)) != SIZE_MAX) break;
    }
    if (i == got) return "forward";
    p->fwd = fp[i].algo;
    p->math_fwd = run_math(prec, fp[i].mathType);
    cudnnConvolutionBwdDataAlgoPerf_t dp[NALGO];
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, prec ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    if (find)
        DNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(c->dnn, p->w, p->y, p->conv, p->x, NALGO, &got, dp));
    else
        DNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->dnn, p->w, p->y, p->conv, p->x, NALGO,
                                                              &got, dp));
    for (i = 0; i < got; i++) {
        if (!entry_ok(prec, dp[i].status, dp[i].determinism, dp[i].mathType, dp[i].memory)) continue;
        DNN_CHECK(cudnnSetConvolutionMathType(p->conv, run_math(prec, dp[i].mathType)));
        st = cudnnGetConvolutionBackwardDataWorkspaceSize(c->dnn, p->w, p->y, p->conv, p->x, dp[i].algo, &ws);
        if ((p->ws_data = ws_of(dp[i].memory, st, ws)) != SIZE_MAX) break;
    }
    if (i == got) return "backward-data";
    p->bwd_data = dp[i].algo;
    p->math_data = run_math(prec, dp[i].mathType);
    cudnnConvolutionBwdFilterAlgoPerf_t wp[NALGO];
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, prec ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
    if (find)
        DNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(c->dnn, p->x, p->y, p->conv, p->w, NALGO,
                                                              &got, wp));
    else
        DNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(c->dnn, p->x, p->y, p->conv, p->w,
                                                                NALGO, &got, wp));
    for (i = 0; i < got; i++) {
        if (!entry_ok(prec, wp[i].status, wp[i].determinism, wp[i].mathType, wp[i].memory)) continue;
        DNN_CHECK(cudnnSetConvolutionMathType(p->conv, run_math(prec, wp[i].mathType)));
        st = cudnnGetConvolutionBackwardFilterWorkspaceSize(c->dnn, p->x, p->y, p->conv, p->w, wp[i].algo, &ws);
        if ((p->ws_filter = ws_of(wp[i].memory, st, ws)) != SIZE_MAX) break;
    }
    if (i == got) return "backward-filter";
    p->bwd_filter = wp[i].algo;
    p->math_filter = run_math(prec, wp[i].mathType);
    return NULL;
}

static Plan *plan_get(CuImpl *c, const NnConvShape *s)
{
    CuConvCache *cc = c->conv;
    int prec = c->precision, nhwc = use_nhwc(c, s);
    for (int i = 0; i < cc->n; i++)
        if (cc->plans[i].prec == prec && cc->plans[i].want_nhwc == nhwc && !memcmp(&cc->plans[i].s, s, sizeof *s))
            return &cc->plans[i];
    if (cc->n == cc->cap) {
        cc->cap = cc->cap ? 2 * cc->cap : 32;
        cc->plans = (Plan *)dd_realloc(cc->plans, (size_t)cc->cap * sizeof *cc->plans);
    }
    Plan *p = &cc->plans[cc->n];
    memset(p, 0, sizeof *p);
    p->s = *s;
    p->prec = prec;
    p->want_nhwc = nhwc;
    const char *what = plan_build(c, p, nhwc);
    if (what && nhwc) { /* NHWC is a speed choice: a shape its kernels lack runs NCHW, as without it */
        plan_free_desc(p);
        what = plan_build(c, p, 0);
    }
    if (what) no_algo(s, prec, what);
    if (nhwc) (p->nhwc ? c->nhwc_plans : c->nhwc_fell_back)++;
    cc->n++;
    return p;
}

/* ---- fp32 <-> fp16 / bf16 ----
 * Four elements per thread and step (16-byte float loads, 8-byte half stores) where the pointers
 * allow, the tail one by one: these casts are pure memory traffic, and single floats leave too
 * few bytes in flight per thread to fill HBM's bandwidth. */

template <typename H> __device__ static inline H to_h(float v);
template <> __device__ inline __half to_h<__half>(float v) { return __float2half_rn(v); }
template <> __device__ inline __nv_bfloat16 to_h<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
__device__ static inline float from_h(__half v) { return __half2float(v); }
__device__ static inline float from_h(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename H> struct __align__(8) H4 { H a, b, c, d; };

template <typename H>
__global__ static void k_to_low(int64_t n, int vec, const float *x, H *y)
{
    int64_t n4 = vec ? n / 4 : 0;
    CU_FOR(i, n4) {
        float4 v = ((const float4 *)x)[i];
        union { H4<H> h; uint2 u; } pk;   /* one 8-byte store */
        pk.h = {to_h<H>(v.x), to_h<H>(v.y), to_h<H>(v.z), to_h<H>(v.w)};
        ((uint2 *)y)[i] = pk.u;
    }
    CU_FOR(i, n - 4 * n4) y[4 * n4 + i] = to_h<H>(x[4 * n4 + i]);
}

/* y (= or +=) float(x) */
template <typename H>
__global__ static void k_from_low(int64_t n, int vec, const H *x, float *y, int acc)
{
    int64_t n4 = vec ? n / 4 : 0;
    CU_FOR(i, n4) {
        union { uint2 u; H4<H> h; } pk;   /* one 8-byte load */
        pk.u = ((const uint2 *)x)[i];
        H4<H> h = pk.h;
        float4 v = {from_h(h.a), from_h(h.b), from_h(h.c), from_h(h.d)};
        if (acc) {
            float4 o = ((float4 *)y)[i];
            v = make_float4(o.x + v.x, o.y + v.y, o.z + v.z, o.w + v.w);
        }
        ((float4 *)y)[i] = v;
    }
    CU_FOR(i, n - 4 * n4) {
        int64_t j = 4 * n4 + i;
        y[j] = acc ? y[j] + from_h(x[j]) : from_h(x[j]);
    }
}

static int vec_ok(const void *f, const void *h)
{
    return ((uintptr_t)f % 16 == 0) && ((uintptr_t)h % 8 == 0);
}

static void to_low(CuImpl *c, int64_t n, const float *x, void *y)
{
    unsigned g = cu_blocks((n + 3) / 4);
    if (c->precision == 1) k_to_low<__half><<<g, CU_THREADS, 0, c->stream>>>(n, vec_ok(x, y), x, (__half *)y);
    else k_to_low<__nv_bfloat16><<<g, CU_THREADS, 0, c->stream>>>(n, vec_ok(x, y), x, (__nv_bfloat16 *)y);
    CU_LAUNCHED();
}

static void from_low(CuImpl *c, int64_t n, const void *x, float *y, int acc)
{
    unsigned g = cu_blocks((n + 3) / 4);
    if (c->precision == 1)
        k_from_low<__half><<<g, CU_THREADS, 0, c->stream>>>(n, vec_ok(y, x), (const __half *)x, y, acc);
    else
        k_from_low<__nv_bfloat16><<<g, CU_THREADS, 0, c->stream>>>(n, vec_ok(y, x),
                                                                   (const __nv_bfloat16 *)x, y, acc);
    CU_LAUNCHED();
}

/* ---- transposing casts (DD_CUDA_NHWC): B matrices [R, S] to [S, R] through a shared tile
 * (kern_transpose.h's index arithmetic, which test_cuda_emul runs on the CPU) ---- */

template <typename H>
__global__ static void k_to_low_t(int64_t B, int R, int S, const float *x, H *y)
{
    __shared__ float tile[TR_TILE][TR_TILE + 1];   /* + 1: a column's reads hit 32 banks */
    for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
        for (int j = 0; j < TR_TILE / TR_ROWS; j++) {
            int64_t o = tr_src(b, R, S, blockIdx.x, blockIdx.y, threadIdx.x, threadIdx.y, j);
            if (o >= 0) tile[threadIdx.y + j * TR_ROWS][threadIdx.x] = x[o];
        }
        __syncthreads();
        for (int j = 0; j < TR_TILE / TR_ROWS; j++) {
            int64_t o = tr_dst(b, R, S, blockIdx.x, blockIdx.y, threadIdx.x, threadIdx.y, j);
            if (o >= 0) y[o] = to_h<H>(tile[threadIdx.x][threadIdx.y + j * TR_ROWS]);
        }
        __syncthreads();
    }
}

/* y (= or +=) float(x), transposed */
template <typename H>
__global__ static void k_from_low_t(int64_t B, int R, int S, const H *x, float *y, int acc)
{
    __shared__ float tile[TR_TILE][TR_TILE + 1];
    for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
        for (int j = 0; j < TR_TILE / TR_ROWS; j++) {
            int64_t o = tr_src(b, R, S, blockIdx.x, blockIdx.y, threadIdx.x, threadIdx.y, j);
            if (o >= 0) tile[threadIdx.y + j * TR_ROWS][threadIdx.x] = from_h(x[o]);
        }
        __syncthreads();
        for (int j = 0; j < TR_TILE / TR_ROWS; j++) {
            int64_t o = tr_dst(b, R, S, blockIdx.x, blockIdx.y, threadIdx.x, threadIdx.y, j);
            if (o >= 0) {
                float v = tile[threadIdx.x][threadIdx.y + j * TR_ROWS];
                y[o] = acc ? y[o] + v : v;
            }
        }
        __syncthreads();
    }
}

static void to_low_t(CuImpl *c, int64_t B, int R, int S, const float *x, void *y)
{
    TrGrid g = tr_grid(B, R, S);
    dim3 grid(g.gx, g.gy, g.gz), block(TR_TILE, TR_ROWS);
    if (c->precision == 1) k_to_low_t<__half><<<grid, block, 0, c->stream>>>(B, R, S, x, (__half *)y);
    else k_to_low_t<__nv_bfloat16><<<grid, block, 0, c->stream>>>(B, R, S, x, (__nv_bfloat16 *)y);
    CU_LAUNCHED();
}

static void from_low_t(CuImpl *c, int64_t B, int R, int S, const void *x, float *y, int acc)
{
    TrGrid g = tr_grid(B, R, S);
    dim3 grid(g.gx, g.gy, g.gz), block(TR_TILE, TR_ROWS);
    if (c->precision == 1)
        k_from_low_t<__half><<<grid, block, 0, c->stream>>>(B, R, S, (const __half *)x, y, acc);
    else
        k_from_low_t<__nv_bfloat16><<<grid, block, 0, c->stream>>>(B, R, S, (const __nv_bfloat16 *)x, y, acc);
    CU_LAUNCHED();
}

/* An op's temporaries (cu_tmp: room in the engine's arena, or the backend's own buffer), each
 * 256-byte aligned as cudaMalloc's memory, handed back by tmp_done once the op's work is queued. */
typedef struct {
    void *p;
    size_t bytes;
} Tmp;

static void *tmp_take(CuImpl *c, CuBuf *b, size_t bytes, Tmp *t)
{
    t->bytes = bytes + 255;
    t->p = cu_tmp(c, b, t->bytes);
    return (void *)(((uintptr_t)t->p + 255) & ~(uintptr_t)255);
}

static void tmp_done(CuImpl *c, Tmp *t)
{
    if (t->p) cu_tmp_put(c, t->p, t->bytes);
    t->p = NULL;
}

/* Three 256-byte aligned regions of a temporary, of na, nb and nc 2-byte elements. */
static void cast_regions(CuImpl *c, int64_t na, int64_t nb, int64_t nc, void **a, void **b, void **d,
                         Tmp *t)
{
    size_t sa = ((size_t)na * 2 + 255) & ~(size_t)255, sb = ((size_t)nb * 2 + 255) & ~(size_t)255;
    char *base = (char *)tmp_take(c, &c->cast, sa + sb + (size_t)nc * 2, t);
    *a = base;
    *b = base + sa;
    *d = base + sa + sb;
}

static void *workspace(CuImpl *c, size_t bytes, Tmp *t)
{
    t->p = NULL;
    return bytes ? tmp_take(c, &c->workspace, bytes, t) : NULL;
}

/* ---- convolution ---- */

static int64_t nx(const NnConvShape *s) { return (int64_t)s->n * s->cin * s->h * s->w; }
static int64_t ny(const NnConvShape *s) { return (int64_t)s->n * s->cout * s->oh * s->ow; }
static int64_t nw(const NnConvShape *s) { return (int64_t)s->cout * (s->cin / s->groups) * s->kh * s->kw; }

/* The low-precision copy of an activation [n, ch, hw] (x, y, dy, dx), NCHW or the plan's NHWC, and
 * back (= or +=); of a weight [cout, cin, kh, kw] (one group where NHWC: KRSC), and back. */
static void act_to_low(CuImpl *c, const Plan *p, int ch, int hw, const float *a, void *al)
{
    if (p->nhwc) to_low_t(c, p->s.n, ch, hw, a, al);
    else to_low(c, (int64_t)p->s.n * ch * hw, a, al);
}

static void act_from_low(CuImpl *c, const Plan *p, int ch, int hw, const void *al, float *a, int acc)
{
    if (p->nhwc) from_low_t(c, p->s.n, hw, ch, al, a, acc);
    else from_low(c, (int64_t)p->s.n * ch * hw, al, a, acc);
}

static void w_to_low(CuImpl *c, const Plan *p, const float *w, void *wl)
{
    if (p->nhwc) to_low_t(c, p->s.cout, p->s.cin, p->s.kh * p->s.kw, w, wl);
    else to_low(c, nw(&p->s), w, wl);
}

static void w_from_low(CuImpl *c, const Plan *p, const void *wl, float *w, int acc)
{
    if (p->nhwc) from_low_t(c, p->s.cout, p->s.kh * p->s.kw, p->s.cin, wl, w, acc);
    else from_low(c, nw(&p->s), wl, w, acc);
}

static void conv2d_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                       const float *b, float *y)
{
    CuImpl *c = cu_impl(be);
    Plan *p = plan_get(c, s);
    const float one = 1.0f, zero = 0.0f;
    Tmp tw, tc = {NULL, 0};
    void *ws = workspace(c, p->ws_fwd, &tw);
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math_fwd));
    if (!c->precision) {
        DNN_CHECK(cudnnConvolutionForward(c->dnn, &one, p->x, x, p->w, w, p->conv, p->fwd, ws,
                                          p->ws_fwd, &zero, p->y, y));
    } else {
        void *xl, *wl, *yl;
        cast_regions(c, nx(s), nw(s), ny(s), &xl, &wl, &yl, &tc);
        act_to_low(c, p, s->cin, s->h * s->w, x, xl);
        w_to_low(c, p, w, wl);
        DNN_CHECK(cudnnConvolutionForward(c->dnn, &one, p->x, xl, p->w, wl, p->conv, p->fwd, ws,
                                          p->ws_fwd, &zero, p->y, yl));
        act_from_low(c, p, s->cout, s->oh * s->ow, yl, y, 0);
    }
    if (b) DNN_CHECK(cudnnAddTensor(c->dnn, &one, p->bias, b, &one, p->y32, y));
    tmp_done(c, &tc);
    tmp_done(c, &tw);
}

static void conv2d_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                            float *dx)
{
    CuImpl *c = cu_impl(be);
    Plan *p = plan_get(c, s);
    const float one = 1.0f, zero = 0.0f;
    Tmp tw, tc = {NULL, 0};
    void *ws = workspace(c, p->ws_data, &tw);
    DNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math_data));
    if (!c->precision) {
        DNN_CHECK(cudnnConvolutionBackwardData(c->dnn, &one, p->w, w, p->y, dy, p->conv, p->bwd_data,
                                               ws, p->ws_data, &one, p->x, dx));
    } else {
        void *dyl, *wl, *dxl;
        cast_regions(c, ny(s), nw(s), nx(s), &dyl, &wl, &dxl, &tc);
        act_to_low(c, p, s->cout, s->oh * s->ow, dy, dyl);
        w_to_low(c, p, w, wl);
        DNN_CHECK(cudnnConvolutionBackwardData(c->dnn, &one, p->w, wl, p->y, dyl, p->conv,
                                               p->bwd_data, ws, p->ws_data, &zero, p->x, dxl));
        act_from_low(c, p, s->cin, s->h * s->w, dxl, dx, 1);
    }
    tmp_done(c, &tc);
    tmp_done(c, &tw);
}

static void conv2d_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                              float *dw, float *db)
{
    CuImpl *c = cu_impl(be);
    Plan *p = plan_get(c, s);
    const float one = 1.0f, zero = 0.0f;
    if (dw) {
        Tmp tw, tc = {NULL, 0};
        void *ws = workspace(c, p->ws_filter, &tw);
        DNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math_filter));
        if (!c->precision) {
            DNN_CHECK(cudnnConvolutionBackwardFilter(c->dnn, &one, p->x, x, p->y, dy, p->conv,
                                                     p->bwd_filter, ws, p->ws_filter, &one, p->w, dw));
        } else {
            void *xl, *dyl, *dwl;
            cast_regions(c, nx(s), ny(s), nw(s), &xl, &dyl, &dwl, &tc);
            act_to_low(c, p, s->cin, s->h * s->w, x, xl);
            act_to_low(c, p, s->cout, s->oh * s->ow, dy, dyl);
            DNN_CHECK(cudnnConvolutionBackwardFilter(c->dnn, &one, p->x, xl, p->y, dyl, p->conv,
                                                     p->bwd_filter, ws, p->ws_filter, &zero, p->w, dwl));
            w_from_low(c, p, dwl, dw, 1);
        }
        tmp_done(c, &tc);
        tmp_done(c, &tw);
    }
    if (db) DNN_CHECK(cudnnConvolutionBackwardBias(c->dnn, &one, p->y32, dy, &one, p->bias, db));
}

void cu_conv_destroy(CuImpl *c)
{
    CuConvCache *cc = c->conv;
    if (!cc) return;
    for (int i = 0; i < cc->n; i++) {
        plan_free_desc(&cc->plans[i]);
    }
    free(cc->plans);
    free(cc);
    c->conv = NULL;
}

/* ---- linear: row-major y [n,out] = x [n,in] w^T, as column-major y^T = w^T' x^T ---- */

/* y[r, o] += b[o] */
__global__ static void k_add_rows(int64_t n, int out, const float *b, float *y)
{
    CU_FOR(i, n * out) y[i] += b[i % out];
}

/* db[o] += sum over rows of dy[r, o], in double, rows in order. */
__global__ static void k_col_sums(int n, int out, const float *dy, float *db)
{
    CU_FOR(o, out) {
        double acc = 0;
        for (int r = 0; r < n; r++) acc += dy[(int64_t)r * out + o];
        db[o] += (float)acc;
    }
}

/* C (col-major m x k result, ldc) (= beta C +) op(A) op(B) with A, B fp32 or cast to low precision. */
static void gemm(CuImpl *c, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 const float *a, int lda, int64_t na, const float *b, int ldb, int64_t nb,
                 float beta, float *out, int ldc)
{
    const float one = 1.0f;
    if (!c->precision) {
        BLAS_CHECK(cublasSgemm(c->blas, ta, tb, m, n, k, &one, a, lda, b, ldb, &beta, out, ldc));
        return;
    }
    void *al, *bl, *unused;
    Tmp tc;
    cast_regions(c, na, nb, 0, &al, &bl, &unused, &tc);
    to_low(c, na, a, al);
    to_low(c, nb, b, bl);
    cudaDataType_t t = c->precision == 1 ? CUDA_R_16F : CUDA_R_16BF;
    BLAS_CHECK(cublasGemmEx(c->blas, ta, tb, m, n, k, &one, al, t, lda, bl, t, ldb, &beta, out,
                            CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    tmp_done(c, &tc);
}

static void linear_fwd(NnBackend *be, int n, int in, int out, const float *x, const float *w,
                       const float *b, float *y)
{
    CuImpl *c = cu_impl(be);
    gemm(c, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, w, in, (int64_t)out * in, x, in, (int64_t)n * in,
         0.0f, y, out);
    if (b) {
        k_add_rows<<<cu_blocks((int64_t)n * out), CU_THREADS, 0, c->stream>>>((int64_t)n, out, b, y);
        CU_LAUNCHED();
    }
}

static void linear_bwd(NnBackend *be, int n, int in, int out, const float *dy, const float *x,
                       const float *w, float *dx, float *dw, float *db)
{
    CuImpl *c = cu_impl(be);
    if (dx)   /* dx^T [in,n] += w^T [in,out] dy^T [out,n] */
        gemm(c, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, w, in, (int64_t)out * in, dy, out,
             (int64_t)n * out, 1.0f, dx, in);
    if (dw)   /* dw^T [in,out] += x^T [in,n] dy [n,out] */
        gemm(c, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, x, in, (int64_t)n * in, dy, out,
             (int64_t)n * out, 1.0f, dw, in);
    if (db) {
        k_col_sums<<<cu_blocks(out), CU_THREADS, 0, c->stream>>>(n, out, dy, db);
        CU_LAUNCHED();
    }
}

void cu_conv_init(NnBackend *be)
{
    cu_impl(be)->conv = (CuConvCache *)dd_calloc(1, sizeof(CuConvCache));
    be->conv2d_fwd = conv2d_fwd;
    be->conv2d_bwd_data = conv2d_bwd_data;
    be->conv2d_bwd_filter = conv2d_bwd_filter;
    be->linear_fwd = linear_fwd;
    be->linear_bwd = linear_bwd;
}

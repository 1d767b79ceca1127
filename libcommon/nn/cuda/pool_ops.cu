/* pool_ops.cu - CUDA max / average / adaptive-average pooling. Own kernels rather than cuDNN's:
 * the op table's max pooling hands argmax indices to its backward (cuDNN keeps none), and these
 * follow cpu/pool_ops.c exactly (NaN wins, count_include_pad, PyTorch's adaptive windows). The
 * backwards gather: each input pixel visits the outputs whose windows cover it, in the CPU's
 * scatter order, so the float sums match and no atomics are needed. */
#include "libcommon/nn/cuda/cuda.h"
#include "libcommon/nn/cuda/kern_pool.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Output indices whose window [o*stride - pad, +k) covers input index i: [*lo, *hi]. */
__device__ static inline void cover(int i, int k, int stride, int pad, int out, int *lo, int *hi)
{
    int a = i + pad - k + 1;
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = (i + pad) / stride;
    *hi = b < out - 1 ? b : out - 1;
}

template <typename I>
__global__ static void k_maxpool(NnPoolShape s, const float *x, float *y, uint8_t *idx)
{
    const I ohw = (I)s.oh * s.ow;
    CU_FOR_I(I, o, (I)s.np * ohw) {
        I p = o / ohw, r = o - p * ohw;
        int oi = (int)(r / (I)s.ow), oj = (int)(r - (I)oi * s.ow);
        const float *xp = x + (int64_t)p * s.h * s.w;
        float best = -INFINITY;
        int at = NN_POOL_NONE; /* the window offset ki * k + kj, as the CPU's */
        for (int ki = 0; ki < s.k; ki++) {
            int ih = oi * s.stride - s.pad + ki;
            if (ih < 0 || ih >= s.h) continue;
            for (int kj = 0; kj < s.k; kj++) {
                int iw = oj * s.stride - s.pad + kj;
                if (iw < 0 || iw >= s.w) continue;
                float v = xp[ih * s.w + iw];
                if (at == NN_POOL_NONE || v > best || isnan(v)) {
                    best = v;
                    at = ki * s.k + kj;
                }
            }
        }
        y[o] = best;
        if (idx) idx[o] = (uint8_t)at;
    }
}

template <typename I>
__global__ static void k_maxpool_bwd(NnPoolShape s, const uint8_t *idx, const float *dy, float *dx)
{
    const I hw = (I)s.h * s.w;
    CU_FOR_I(I, t, (I)s.np * hw) {
        I p = t / hw, r = t - p * hw;
        int ih = (int)(r / (I)s.w), iw = (int)(r - (I)ih * s.w);
        int i0, i1, j0, j1;
        cover(ih, s.k, s.stride, s.pad, s.oh, &i0, &i1);
        cover(iw, s.k, s.stride, s.pad, s.ow, &j0, &j1);
        const uint8_t *ip = idx + (int64_t)p * s.oh * s.ow;
        const float *d = dy + (int64_t)p * s.oh * s.ow;
        float acc = dx[t];
        /* output (oi, oj) took this pixel when its offset is this pixel's place in its window */
        for (int oi = i0; oi <= i1; oi++)
            for (int oj = j0; oj <= j1; oj++)
                if (ip[oi * s.ow + oj] == (ih - oi * s.stride + s.pad) * s.k + (iw - oj * s.stride + s.pad))
                    acc += d[oi * s.ow + oj];
        dx[t] = acc;
    }
}

static void maxpool_fwd(NnBackend *be, const NnPoolShape *s, const float *x, float *y, uint8_t *idx)
{
    CU_LAUNCH_IDX(k_maxpool, s->np * s->oh * s->ow, cu_impl(be)->stream, *s, x, y, idx);
}

/* Planes at least MPB_MIN_W wide: kern_pool.h's tiles (a block a tile of rows, a thread a column). */
__global__ static void k_maxpool_bwd_rows(NnPoolShape s, int tiles, const uint8_t *idx, const float *dy,
                                          float *dx)
{
    mpb_thread(&s, tiles, (int)blockDim.x, (int64_t)blockIdx.x, (int)blockIdx.y, (int)threadIdx.x, idx, dy, dx);
}

static void maxpool_bwd(NnBackend *be, const NnPoolShape *s, const uint8_t *idx, const float *dy,
                        float *dx)
{
    static int general = -1; /* DD_CUDA_POOL_GENERAL=1: the general kernel for every plane (to compare) */
    if (general < 0) general = dd_env_on("DD_CUDA_POOL_GENERAL");
    if (s->w >= MPB_MIN_W && !general) {
        MpbGrid g = mpb_grid(s); /* gx 0 (no planes or no rows): the general kernel's at least one block */
        if (g.gx > 0 && g.gx < ((int64_t)1 << 31) && g.gy <= 65535) {
            k_maxpool_bwd_rows<<<dim3((unsigned)g.gx, (unsigned)g.gy), g.threads, 0, cu_impl(be)->stream>>>(
                *s, g.tiles, idx, dy, dx);
            CU_LAUNCHED();
            return;
        }
    }
    CU_LAUNCH_IDX(k_maxpool_bwd, s->np * s->h * s->w, cu_impl(be)->stream, *s, idx, dy, dx);
}

__global__ static void k_avgpool(NnPoolShape s, const float *x, float *y)
{
    float inv = 1.0f / (float)(s.k * s.k);
    CU_FOR(o, s.np * s.oh * s.ow) {
        int64_t p = o / ((int64_t)s.oh * s.ow);
        int oi = (int)(o / s.ow % s.oh), oj = (int)(o % s.ow);
        const float *xp = x + (int64_t)p * s.h * s.w;
        float acc = 0;
        for (int ki = 0; ki < s.k; ki++) {
            int ih = oi * s.stride - s.pad + ki;
            if (ih < 0 || ih >= s.h) continue;
            for (int kj = 0; kj < s.k; kj++) {
                int iw = oj * s.stride - s.pad + kj;
                if (iw >= 0 && iw < s.w) acc += xp[ih * s.w + iw];
            }
        }
        y[o] = acc * inv;
    }
}

__global__ static void k_avgpool_bwd(NnPoolShape s, const float *dy, float *dx)
{
    float inv = 1.0f / (float)(s.k * s.k);
    CU_FOR(t, s.np * s.h * s.w) {
        int64_t p = t / ((int64_t)s.h * s.w);
        int ih = (int)(t / s.w % s.h), iw = (int)(t % s.w);
        int i0, i1, j0, j1;
        cover(ih, s.k, s.stride, s.pad, s.oh, &i0, &i1);
        cover(iw, s.k, s.stride, s.pad, s.ow, &j0, &j1);
        const float *d = dy + (int64_t)p * s.oh * s.ow;
        float acc = dx[t];
        for (int oi = i0; oi <= i1; oi++)
            for (int oj = j0; oj <= j1; oj++) acc += d[oi * s.ow + oj] * inv;
        dx[t] = acc;
    }
}

static void avgpool_fwd(NnBackend *be, const NnPoolShape *s, const float *x, float *y)
{
    k_avgpool<<<cu_blocks(s->np * s->oh * s->ow), CU_THREADS, 0, cu_impl(be)->stream>>>(*s, x, y);
    CU_LAUNCHED();
}

static void avgpool_bwd(NnBackend *be, const NnPoolShape *s, const float *dy, float *dx)
{
    k_avgpool_bwd<<<cu_blocks(s->np * s->h * s->w), CU_THREADS, 0, cu_impl(be)->stream>>>(*s, dy, dx);
    CU_LAUNCHED();
}

/* Adaptive windows as PyTorch: [floor(i*H/OH), ceil((i+1)*H/OH)). */
__device__ static inline int win_start(int i, int in, int out) { return (int)((int64_t)i * in / out); }
__device__ static inline int win_end(int i, int in, int out)
{
    return (int)(((int64_t)(i + 1) * in + out - 1) / out);
}

__global__ static void k_adaptive(NnPoolShape s, const float *x, float *y)
{
    CU_FOR(o, s.np * s.oh * s.ow) {
        int64_t p = o / ((int64_t)s.oh * s.ow);
        int oi = (int)(o / s.ow % s.oh), oj = (int)(o % s.ow);
        int h0 = win_start(oi, s.h, s.oh), h1 = win_end(oi, s.h, s.oh);
        int w0 = win_start(oj, s.w, s.ow), w1 = win_end(oj, s.w, s.ow);
        const float *xp = x + (int64_t)p * s.h * s.w;
        float acc = 0;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) acc += xp[ih * s.w + iw];
        y[o] = acc / (float)((h1 - h0) * (w1 - w0));
    }
}

/* Windows are monotone in the output index: scan all of them (adaptive pools are small). */
__global__ static void k_adaptive_bwd(NnPoolShape s, const float *dy, float *dx)
{
    CU_FOR(t, s.np * s.h * s.w) {
        int64_t p = t / ((int64_t)s.h * s.w);
        int ih = (int)(t / s.w % s.h), iw = (int)(t % s.w);
        const float *d = dy + (int64_t)p * s.oh * s.ow;
        float acc = dx[t];
        for (int oi = 0; oi < s.oh; oi++) {
            int h0 = win_start(oi, s.h, s.oh), h1 = win_end(oi, s.h, s.oh);
            if (ih < h0 || ih >= h1) continue;
            for (int oj = 0; oj < s.ow; oj++) {
                int w0 = win_start(oj, s.w, s.ow), w1 = win_end(oj, s.w, s.ow);
                if (iw >= w0 && iw < w1) acc += d[oi * s.ow + oj] / (float)((h1 - h0) * (w1 - w0));
            }
        }
        dx[t] = acc;
    }
}

static void adaptive_fwd(NnBackend *be, const NnPoolShape *s, const float *x, float *y)
{
    k_adaptive<<<cu_blocks(s->np * s->oh * s->ow), CU_THREADS, 0, cu_impl(be)->stream>>>(*s, x, y);
    CU_LAUNCHED();
}

static void adaptive_bwd(NnBackend *be, const NnPoolShape *s, const float *dy, float *dx)
{
    k_adaptive_bwd<<<cu_blocks(s->np * s->h * s->w), CU_THREADS, 0, cu_impl(be)->stream>>>(*s, dy, dx);
    CU_LAUNCHED();
}

void cu_pool_ops_init(NnBackend *be)
{
    be->maxpool_fwd = maxpool_fwd;
    be->maxpool_bwd = maxpool_bwd;
    be->avgpool_fwd = avgpool_fwd;
    be->avgpool_bwd = avgpool_bwd;
    be->adaptive_avgpool_fwd = adaptive_fwd;
    be->adaptive_avgpool_bwd = adaptive_bwd;
}

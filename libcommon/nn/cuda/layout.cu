/* layout.cu - CUDA layout kernels: block copies (concat), channel shuffle, roll, horizontal flip,
 * and bilinear crop-resize (align_corners=False) with a deterministic backward: each input pixel
 * gathers the output pixels whose taps reach it (no atomics), from tap tables built on the host
 * with cpu/layout.c's float arithmetic. */
#include "libcommon/nn/cuda/cuda.h"

#include <stdlib.h>

__global__ static void k_block_copy(int64_t rows, int64_t len, const float *src, int64_t lds,
                                    float *dst, int64_t ldd, int acc)
{
    CU_FOR(i, rows * len) {
        int64_t r = i / len, k = i % len;
        float v = src[r * lds + k];
        if (acc) dst[r * ldd + k] += v;
        else dst[r * ldd + k] = v;
    }
}

static void block_copy(NnBackend *be, int64_t rows, int64_t len, const float *src, int64_t lds,
                       float *dst, int64_t ldd, int accumulate)
{
    k_block_copy<<<cu_blocks(rows * len), CU_THREADS, 0, cu_impl(be)->stream>>>(
        rows, len, src, lds, dst, ldd, accumulate);
    CU_LAUNCHED();
}

__global__ static void k_shuffle(int64_t total, int c, int64_t hw, int groups, int inverse,
                                 int acc, const float *x, float *y)
{
    int per = c / groups;
    CU_FOR(i, total) {
        int64_t p = i / hw, k = i % hw, n = p / c;
        int o = (int)(p % c), in;
        if (!inverse) in = (o % groups) * per + o / groups;
        else in = (o % per) * groups + o / per;
        float v = x[(n * c + in) * hw + k];
        if (acc) y[i] += v;
        else y[i] = v;
    }
}

static void shuffle(NnBackend *be, int64_t n, int c, int64_t hw, int groups, int inverse,
                    int accumulate, const float *x, float *y)
{
    int64_t total = n * c * hw;
    k_shuffle<<<cu_blocks(total), CU_THREADS, 0, cu_impl(be)->stream>>>(total, c, hw, groups,
                                                                        inverse, accumulate, x, y);
    CU_LAUNCHED();
}

/* y[i][j] = x[(i - sh) mod h][(j - sw) mod w]. */
template <typename I>
__global__ static void k_roll(int64_t total, int h, int w, int sh, int sw, int acc, const float *x,
                              float *y)
{
    const I hw = (I)h * w;
    CU_FOR_I(I, t, total) {
        I p = t / hw, r = t - p * hw;
        int i = (int)(r / (I)w), j = (int)(r - (I)i * w);
        int si = (i - sh + h) % h, sj = (j - sw + w) % w;
        float v = x[((int64_t)p * h + si) * w + sj];
        if (acc) y[t] += v;
        else y[t] = v;
    }
}

static void roll(NnBackend *be, int64_t np, int h, int w, int sh, int sw, int accumulate,
                 const float *x, float *y)
{
    sh = ((sh % h) + h) % h;
    sw = ((sw % w) + w) % w;
    int64_t total = np * h * w;
    CU_LAUNCH_IDX(k_roll, total, cu_impl(be)->stream, total, h, w, sh, sw, accumulate, x, y);
}

template <typename I>
__global__ static void k_flip(int64_t total, int w, int acc, const float *x, float *y)
{
    CU_FOR_I(I, t, total) {
        I r = t / (I)w;
        int i = (int)(t - r * (I)w);
        float v = x[r * w + (w - 1 - i)];
        if (acc) y[t] += v;
        else y[t] = v;
    }
}

static void flip_w(NnBackend *be, int64_t np, int h, int w, int accumulate, const float *x, float *y)
{
    int64_t total = np * h * w;
    CU_LAUNCH_IDX(k_flip, total, cu_impl(be)->stream, total, w, accumulate, x, y);
}

/* ---- bilinear: src = (dst + 0.5) * in/out - 0.5, clamped at 0 (as cpu/layout.c) ---- */

typedef struct {
    int i0, i1;
    float l0, l1;
} Tap;

/* Host: the CPU's tap, same float operations (no contraction on x86-64 without -mfma). */
static Tap tap(int dst, int in, int out)
{
    float scale = (float)in / (float)out;
    float src = scale * ((float)dst + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    Tap t;
    t.i0 = (int)src;
    t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
    t.l1 = src - (float)t.i0;
    t.l0 = 1.0f - t.l1;
    return t;
}

/* Tap tables for rows (oh) then columns (ow), and for the backward the range of output indices
 * reaching each crop index: rows (ch) then columns (cw), [first, last] inclusive, first > last
 * when none. Staged on the device in one block. */
typedef struct {
    Tap *th, *tw;
    int2 *rh, *rw;
} Taps;

static Taps taps_stage(CuImpl *c, const NnResample *r, int ranges)
{
    size_t nt = (size_t)r->oh + r->ow, nr = ranges ? (size_t)r->ch + r->cw : 0;
    size_t bytes = nt * sizeof(Tap) + nr * sizeof(int2);
    char *host = (char *)dd_malloc(bytes);
    Tap *th = (Tap *)host, *tw = th + r->oh;
    for (int i = 0; i < r->oh; i++) th[i] = tap(i, r->ch, r->oh);
    for (int k = 0; k < r->ow; k++) tw[k] = tap(k, r->cw, r->ow);
    int2 *rh = (int2 *)(host + nt * sizeof(Tap)), *rw = rh + (ranges ? r->ch : 0);
    if (ranges) {
        for (int q = 0; q < r->ch; q++) rh[q] = make_int2(r->oh, -1);
        for (int q = 0; q < r->cw; q++) rw[q] = make_int2(r->ow, -1);
        for (int i = 0; i < r->oh; i++) {
            int idx[2] = {th[i].i0, th[i].i1};
            for (int a = 0; a < 2; a++) {
                int2 *g = &rh[idx[a]];
                if (i < g->x) g->x = i;
                if (i > g->y) g->y = i;
            }
        }
        for (int k = 0; k < r->ow; k++) {
            int idx[2] = {tw[k].i0, tw[k].i1};
            for (int a = 0; a < 2; a++) {
                int2 *g = &rw[idx[a]];
                if (k < g->x) g->x = k;
                if (k > g->y) g->y = k;
            }
        }
    }
    char *dev = (char *)cu_stage(c, 0, host, bytes);
    free(host);
    Taps t;
    t.th = (Tap *)dev;
    t.tw = t.th + r->oh;
    t.rh = (int2 *)(dev + nt * sizeof(Tap));
    t.rw = t.rh + (ranges ? r->ch : 0);
    return t;
}

__global__ static void k_resample_fwd(NnResample r, Taps t, const float *x, float *y)
{
    CU_FOR(o, r.np * r.oh * r.ow) {
        int64_t p = o / ((int64_t)r.oh * r.ow);
        int i = (int)(o / r.ow % r.oh), k = (int)(o % r.ow);
        const float *xp = x + p * r.h * r.w + (int64_t)r.top * r.w + r.left;
        Tap th = t.th[i], tw = t.tw[k];
        const float *x0 = xp + (int64_t)th.i0 * r.w, *x1 = xp + (int64_t)th.i1 * r.w;
        y[o] = th.l0 * (tw.l0 * x0[tw.i0] + tw.l1 * x0[tw.i1]) +
               th.l1 * (tw.l0 * x1[tw.i0] + tw.l1 * x1[tw.i1]);
    }
}

/* dx at crop pixel (qh, qw) += sum over outputs (i, k) of the tap weights landing on it times
 * dy[i][k]; each term rounded as the CPU's (lh * lw) * g, the sum in double. */
__global__ static void k_resample_bwd(NnResample r, Taps t, const float *dy, float *dx)
{
    CU_FOR(o, r.np * r.ch * r.cw) {
        int64_t p = o / ((int64_t)r.ch * r.cw);
        int qh = (int)(o / r.cw % r.ch), qw = (int)(o % r.cw);
        int2 gh = t.rh[qh], gw = t.rw[qw];
        const float *d = dy + p * r.oh * r.ow;
        double acc = 0;
        for (int i = gh.x; i <= gh.y; i++) {
            Tap th = t.th[i];
            for (int k = gw.x; k <= gw.y; k++) {
                Tap tw = t.tw[k];
                float g = d[(int64_t)i * r.ow + k];
                if (th.i0 == qh && tw.i0 == qw) acc += th.l0 * tw.l0 * g;
                if (th.i0 == qh && tw.i1 == qw) acc += th.l0 * tw.l1 * g;
                if (th.i1 == qh && tw.i0 == qw) acc += th.l1 * tw.l0 * g;
                if (th.i1 == qh && tw.i1 == qw) acc += th.l1 * tw.l1 * g;
            }
        }
        dx[p * r.h * r.w + (int64_t)(r.top + qh) * r.w + r.left + qw] += (float)acc;
    }
}

static void resample_fwd(NnBackend *be, const NnResample *r, const float *x, float *y)
{
    CuImpl *c = cu_impl(be);
    Taps t = taps_stage(c, r, 0);
    k_resample_fwd<<<cu_blocks(r->np * r->oh * r->ow), CU_THREADS, 0, c->stream>>>(*r, t, x, y);
    CU_LAUNCHED();
}

static void resample_bwd(NnBackend *be, const NnResample *r, const float *dy, float *dx)
{
    CuImpl *c = cu_impl(be);
    Taps t = taps_stage(c, r, 1);
    k_resample_bwd<<<cu_blocks(r->np * r->ch * r->cw), CU_THREADS, 0, c->stream>>>(*r, t, dy, dx);
    CU_LAUNCHED();
}

void cu_layout_init(NnBackend *be)
{
    be->block_copy = block_copy;
    be->shuffle = shuffle;
    be->roll = roll;
    be->flip_w = flip_w;
    be->resample_fwd = resample_fwd;
    be->resample_bwd = resample_bwd;
}

/* conv.c - CPU convolution and linear: im2col + single-threaded OpenBLAS sgemm over fixed chunks
 * of images (several small images side by side in one GEMM), chunks spread over the worker pool
 * (each thread its own im2col buffer); stride-1 'same' convolutions of large planes skip im2col
 * (conv_flat.c); 3x3 ones with many channels go by Winograd's tiles (conv_wino.c: forward,
 * backward-data, and with AVX-512 the weight gradient) or a register-blocked kernel
 * (conv_direct.c); depthwise convolution on AVX-512 flat runs (conv_dw.c), else vectorised plane
 * kernels (one image-channel plane per item). Chunks and planes are fixed by the shape, so
 * per-image work is identical for any thread count, and the weight gradient sums fixed groups of
 * images in a fixed order: results do not depend on threads. Linear: OpenBLAS over fixed column
 * blocks, or (AVX-512) conv_direct.c's kernel as a GEMM.
 */
#include "libcommon/nn/cpu/cpu.h"

#include <cblas.h>
#include <stddef.h>
#include <string.h>

static int is_pointwise(const NnConvShape *s)
{
    return s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0;
}

/* Taps of a depthwise kernel the plane kernels handle (their per-tap sums live on the stack). */
#define DW_MAX_TAPS 64

static int is_depthwise(const NnConvShape *s)
{
    return s->groups > 1 && s->groups == s->cin && s->groups == s->cout &&
           s->kh * s->kw <= DW_MAX_TAPS;
}

/* n floats from s to d: inline, 8 at a time (fixed-size copies, which the compiler emits as
 * vector moves), for the short runs of small planes, where a libc call per run (memcpy) cost
 * more than the moving: 2x2 planes gathered side by side were a sixth of a 1x1 convolution's
 * pass. (Adds: cpu_acc_run.) */
static inline void copy_run(float *restrict d, const float *restrict s, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) memcpy(d + i, s + i, 8 * sizeof(float));
    if (i + 4 <= n) {
        memcpy(d + i, s + i, 4 * sizeof(float));
        i += 4;
    }
    switch (n - i) { /* not a loop, which the compiler would make a memmove call */
    case 3: d[i + 2] = s[i + 2]; /* fall through */
    case 2: d[i + 1] = s[i + 1]; /* fall through */
    case 1: d[i] = s[i];
    }
}

/* A chunk's images side by side: dst [c, nimg*plane] (rows ld floats apart) from src [nimg, c,
 * plane], and back. */
static void gather_planes(float *dst, size_t ld, const float *src, int nimg, int c, size_t plane)
{
    for (int i = 0; i < nimg; i++)
        for (int ci = 0; ci < c; ci++)
            copy_run(dst + ci * ld + (size_t)i * plane, src + ((size_t)i * c + ci) * plane, plane);
}

static void scatter_planes(float *dst, const float *src, size_t ld, int nimg, int c, size_t plane)
{
    for (int i = 0; i < nimg; i++)
        for (int ci = 0; ci < c; ci++)
            copy_run(dst + ((size_t)i * c + ci) * plane, src + ci * ld + (size_t)i * plane, plane);
}

/* col [cin*kh*kw, oh*ow] from one image x [cin,h,w]; rows ld floats apart. */
static void im2col(const NnConvShape *s, const float *x, float *col, size_t ld)
{
    /* 1x1 stride 1: each row one whole plane, a copy (the loop below makes three calls a row:
     * a quarter of the time of a 1x1 weight gradient on 4x4 planes, which gathers images so) */
    if (is_pointwise(s)) {
        size_t hw = (size_t)s->h * s->w;
        for (int c = 0; c < s->cin; c++) copy_run(col + (size_t)c * ld, x + (size_t)c * hw, hw);
        return;
    }
    for (int c = 0; c < s->cin; c++) {
        const float *xc = x + (size_t)c * s->h * s->w;
        for (int ki = 0; ki < s->kh; ki++) {
            for (int kj = 0; kj < s->kw; kj++) {
                float *row = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * ld;
                int iw0 = kj * s->dil - s->pad;
                for (int i = 0; i < s->oh; i++) {
                    float *r = row + (size_t)i * s->ow;
                    int ih = i * s->stride - s->pad + ki * s->dil;
                    if (ih < 0 || ih >= s->h) {
                        memset(r, 0, (size_t)s->ow * sizeof(float));
                        continue;
                    }
                    const float *xr = xc + (size_t)ih * s->w;
                    if (s->stride == 1) {
                        int j0 = iw0 < 0 ? -iw0 : 0, j1 = s->w - iw0 < s->ow ? s->w - iw0 : s->ow;
                        if (j1 < j0) j1 = j0;
                        if (j0 > s->ow) j0 = j1 = s->ow;
                        memset(r, 0, (size_t)j0 * sizeof(float));
                        memcpy(r + j0, xr + j0 + iw0, (size_t)(j1 - j0) * sizeof(float));
                        memset(r + j1, 0, (size_t)(s->ow - j1) * sizeof(float));
                    } else {
                        for (int j = 0; j < s->ow; j++) {
                            int iw = j * s->stride + iw0;
                            r[j] = iw >= 0 && iw < s->w ? xr[iw] : 0.0f;
                        }
                    }
                }
            }
        }
    }
}

/* dx [cin,h,w] += col2im(col), col's rows ld floats apart. */
static void col2im_add(const NnConvShape *s, const float *col, size_t ld, float *dx)
{
    if (is_pointwise(s)) { /* each row one whole plane */
        size_t hw = (size_t)s->h * s->w;
        for (int c = 0; c < s->cin; c++) cpu_acc_run((int64_t)hw, col + (size_t)c * ld, dx + (size_t)c * hw);
        return;
    }
    for (int c = 0; c < s->cin; c++) {
        float *xc = dx + (size_t)c * s->h * s->w;
        for (int ki = 0; ki < s->kh; ki++) {
            for (int kj = 0; kj < s->kw; kj++) {
                const float *row = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * ld;
                int iw0 = kj * s->dil - s->pad;
                for (int i = 0; i < s->oh; i++) {
                    int ih = i * s->stride - s->pad + ki * s->dil;
                    if (ih < 0 || ih >= s->h) continue;
                    const float *r = row + (size_t)i * s->ow;
                    float *xr = xc + (size_t)ih * s->w;
                    if (s->stride == 1) { /* the valid columns form one run */
                        int j0 = iw0 < 0 ? -iw0 : 0, j1 = s->w - iw0 < s->ow ? s->w - iw0 : s->ow;
                        for (int j = j0; j < j1; j++) xr[j + iw0] += r[j];
                        continue;
                    }
                    for (int j = 0; j < s->ow; j++) {
                        int iw = j * s->stride + iw0;
                        if (iw >= 0 && iw < s->w) xr[iw] += r[j];
                    }
                }
            }
        }
    }
}

typedef struct {
    const NnConvShape *s;
    NnBackend *be;
    const float *x, *w, *b, *dy;
    float *y, *dx, *dw, *parts;
    size_t wsize;
    int kg;          /* the chunk GEMMs on the AVX-512 kernel GEMM (kg_gemm_ok) */
    const float *ka; /* ... whose A: W's panels forward, W^T's backward data (the weight gradient
                      * packs dY's per chunk) */
} ConvJob;

/* ---- depthwise: one (image, channel) plane per item ----
 *
 * A plane row is stored padded and split into `stride` phases: phase r holds padded columns
 * stride*q + r. Tap kj (padded column offset t = kj*dil) of output column j then reads phase
 * t % stride at q = j + t / stride: every tap is a contiguous, branch-free run over the output
 * row, for any stride, padding and dilation. The inner loops go in fixed blocks of 8, which gcc
 * vectorises at -O2 (its cheap cost model leaves loops of unknown trip count scalar).
 */

#define DW_BLOCK 8

/* One plane pass: in [h,w] -> out [oh,ow] (the conv's geometry, or its transpose for backward). */
typedef struct {
    int h, w, oh, ow, kh, kw, stride, pad, dil;
} DwGeom;

static DwGeom dw_geom(const NnConvShape *s)
{
    return (DwGeom){s->h, s->w, s->oh, s->ow, s->kh, s->kw, s->stride, s->pad, s->dil};
}

/* Row length of one phase: padded width W + 2 pad, split into `stride` phases. */
static int dw_phase_len(const DwGeom *g) { return (g->w + 2 * g->pad + g->stride - 1) / g->stride; }

static size_t dw_split_size(const DwGeom *g) { return (size_t)g->h * g->stride * dw_phase_len(g); }

/* xs [h][stride][q] <- plane x [h][w] padded with zeros and split into phases. */
static void dw_split(const DwGeom *g, const float *x, float *xs)
{
    int q = dw_phase_len(g), st = g->stride;
    for (int i = 0; i < g->h; i++) {
        const float *xr = x + (size_t)i * g->w;
        float *row = xs + (size_t)i * st * q;
        for (int r = 0; r < st; r++)
            for (int c = 0; c < q; c++) {
                int iw = c * st + r - g->pad;
                row[r * q + c] = iw >= 0 && iw < g->w ? xr[iw] : 0.0f;
            }
    }
}

/* Where tap kj of output column 0 sits in a split row. */
static int dw_tap(const DwGeom *g, int kj)
{
    int t = kj * g->dil;
    return (t % g->stride) * dw_phase_len(g) + t / g->stride;
}

/* y[j] += w * a[j], j < n. */
static void row_axpy(int n, float w, const float *restrict a, float *restrict y)
{
    int j = 0;
    for (; j + DW_BLOCK <= n; j += DW_BLOCK)
        for (int k = 0; k < DW_BLOCK; k++) y[j + k] += w * a[j + k];
    for (; j < n; j++) y[j] += w * a[j];
}

/* y[j] += w0 a0[j] + w1 a1[j] + w2 a2[j], j < n: three taps per pass over y. */
static void row_axpy3(int n, const float *w, const float *restrict a0, const float *restrict a1,
                      const float *restrict a2, float *restrict y)
{
    float w0 = w[0], w1 = w[1], w2 = w[2];
    int j = 0;
    for (; j + DW_BLOCK <= n; j += DW_BLOCK)
        for (int k = 0; k < DW_BLOCK; k++)
            y[j + k] += w0 * a0[j + k] + w1 * a1[j + k] + w2 * a2[j + k];
    for (; j < n; j++) y[j] += w0 * a0[j] + w1 * a1[j] + w2 * a2[j];
}

/* lanes[j % 8] += a[j] * b[j], j < n: eight fixed partial sums (an order that never changes). */
static void row_dot(int n, const float *restrict a, const float *restrict b, float *restrict lanes)
{
    int j = 0;
    for (; j + DW_BLOCK <= n; j += DW_BLOCK)
        for (int k = 0; k < DW_BLOCK; k++) lanes[k] += a[j + k] * b[j + k];
    for (int k = 0; j < n; j++, k++) lanes[k] += a[j] * b[j];
}

/* out (= bias, or += when accumulate) the correlation of plane in with kernel w [kh,kw]; xs is
 * dw_split_size floats of scratch. */
static void dw_plane(const DwGeom *g, const float *in, const float *w, float bias, int accumulate,
                     float *out, float *xs)
{
    int q = dw_phase_len(g);
    dw_split(g, in, xs);
    for (int oi = 0; oi < g->oh; oi++) {
        float *yr = out + (size_t)oi * g->ow;
        if (!accumulate)
            for (int oj = 0; oj < g->ow; oj++) yr[oj] = bias;
        for (int ki = 0; ki < g->kh; ki++) {
            int ih = oi * g->stride - g->pad + ki * g->dil;
            if (ih < 0 || ih >= g->h) continue;
            const float *row = xs + (size_t)ih * g->stride * q, *wr = w + ki * g->kw;
            int kj = 0;
            for (; kj + 3 <= g->kw; kj += 3)
                row_axpy3(g->ow, wr + kj, row + dw_tap(g, kj), row + dw_tap(g, kj + 1),
                          row + dw_tap(g, kj + 2), yr);
            for (; kj < g->kw; kj++) row_axpy(g->ow, wr[kj], row + dw_tap(g, kj), yr);
        }
    }
}

static void dw_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    DwGeom g = dw_geom(s);
    float *xs = cpu_scratch(j->be, tid, dw_split_size(&g));
    for (int64_t p = b; p < e; p++) {
        int c = (int)(p % s->cin);
        dw_plane(&g, j->x + (size_t)p * s->h * s->w, j->w + (size_t)c * s->kh * s->kw,
                 j->b ? j->b[c] : 0.0f, 0, j->y + (size_t)p * s->oh * s->ow, xs);
    }
}

/* Stride 1, square kernel, pad <= (k-1) dil: dx is the correlation of dy, padded by
 * (k-1) dil - pad, with the flipped kernel -- the forward pass again, three taps per sweep. */
static int dw_bwd_gathers(const NnConvShape *s)
{
    return s->stride == 1 && s->kh == s->kw && s->pad <= (s->kh - 1) * s->dil;
}

static void dw_bwd_gather_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    DwGeom g = {s->oh, s->ow, s->h, s->w, s->kh, s->kw, 1, (s->kh - 1) * s->dil - s->pad, s->dil};
    int nt = s->kh * s->kw;
    float *xs = cpu_scratch(j->be, tid, dw_split_size(&g)), wf[DW_MAX_TAPS];
    for (int64_t p = b; p < e; p++) {
        const float *w = j->w + (size_t)(p % s->cin) * nt;
        for (int t = 0; t < nt; t++) wf[t] = w[nt - 1 - t];
        dw_plane(&g, j->dy + (size_t)p * s->oh * s->ow, wf, 0.0f, 1,
                 j->dx + (size_t)p * s->h * s->w, xs);
    }
}

/* Any stride: scatters dy through the taps into a split plane, then adds its real columns to dx. */
static void dw_bwd_scatter_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    DwGeom g = dw_geom(s);
    int q = dw_phase_len(&g), st = s->stride;
    size_t plane = dw_split_size(&g);
    float *dxs = cpu_scratch(j->be, tid, plane);
    for (int64_t p = b; p < e; p++) {
        int c = (int)(p % s->cin);
        const float *w = j->w + (size_t)c * s->kh * s->kw;
        const float *dy = j->dy + (size_t)p * s->oh * s->ow;
        float *dx = j->dx + (size_t)p * s->h * s->w;
        memset(dxs, 0, plane * sizeof(float));
        for (int oi = 0; oi < s->oh; oi++)
            for (int ki = 0; ki < s->kh; ki++) {
                int ih = oi * st - s->pad + ki * s->dil;
                if (ih < 0 || ih >= s->h) continue;
                float *row = dxs + (size_t)ih * st * q;
                for (int kj = 0; kj < s->kw; kj++)
                    row_axpy(s->ow, w[ki * s->kw + kj], dy + (size_t)oi * s->ow,
                             row + dw_tap(&g, kj));
            }
        for (int i = 0; i < s->h; i++) {
            const float *row = dxs + (size_t)i * st * q;
            float *xr = dx + (size_t)i * s->w;
            for (int iw = 0; iw < s->w; iw++) {
                int t = iw + s->pad;
                xr[iw] += row[(t % st) * q + t / st];
            }
        }
    }
}

/* One channel per item: per image and tap, a dot product over the plane in eight fixed lanes,
 * summed into double in image order (deterministic for any thread count). */
static void dw_bwd_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    DwGeom g = dw_geom(s);
    int q = dw_phase_len(&g), nt = s->kh * s->kw;
    float *xs = cpu_scratch(j->be, tid, dw_split_size(&g) + (size_t)nt * DW_BLOCK);
    float *lanes = xs + dw_split_size(&g);
    double acc[DW_MAX_TAPS];
    for (int64_t c = b; c < e; c++) {
        for (int t = 0; t < nt; t++) acc[t] = 0;
        for (int n = 0; n < s->n; n++) {
            size_t p = (size_t)n * s->cin + (size_t)c;
            const float *dy = j->dy + p * s->oh * s->ow;
            dw_split(&g, j->x + p * s->h * s->w, xs);
            memset(lanes, 0, (size_t)nt * DW_BLOCK * sizeof(float));
            for (int oi = 0; oi < s->oh; oi++)
                for (int ki = 0; ki < s->kh; ki++) {
                    int ih = oi * s->stride - s->pad + ki * s->dil;
                    if (ih < 0 || ih >= s->h) continue;
                    const float *row = xs + (size_t)ih * s->stride * q;
                    for (int kj = 0; kj < s->kw; kj++)
                        row_dot(s->ow, dy + (size_t)oi * s->ow, row + dw_tap(&g, kj),
                                lanes + (size_t)(ki * s->kw + kj) * DW_BLOCK);
                }
            for (int t = 0; t < nt; t++) {
                float sum = 0;
                for (int k = 0; k < DW_BLOCK; k++) sum += lanes[t * DW_BLOCK + k];
                acc[t] += sum;
            }
        }
        float *dw = j->dw + (size_t)c * nt;
        for (int t = 0; t < nt; t++) dw[t] += (float)acc[t];
    }
}

/* ---- GEMM on conv_direct.c's kernels (cpu_kg_cols in cpu.h) ---- */

void cpu_kg_pack_a(const float *src, size_t lds, int trans, int m, int k, int64_t p0, int64_t p1,
                   float *a)
{
    for (int64_t p = p0; p < p1; p++) {
        float *ap = a + (size_t)p * k * 6;
        for (int r = 0; r < 6; r++) {
            int row = (int)p * 6 + r;
            if (row >= m)
                for (int kk = 0; kk < k; kk++) ap[(size_t)kk * 6 + r] = 0.0f;
            else if (trans)
                for (int kk = 0; kk < k; kk++) ap[(size_t)kk * 6 + r] = src[(size_t)kk * lds + row];
            else
                for (int kk = 0; kk < k; kk++) ap[(size_t)kk * 6 + r] = src[(size_t)row * lds + kk];
        }
    }
}

/* Columns [t, t + nc) of B's row kk (not trans) into dst. */
static void kg_b_row(const KGemm *g, int kk, int t, int nc, float *dst)
{
    if (!g->seg) {
        copy_run(dst, g->b + (size_t)kk * g->ldb + t, (size_t)nc);
        return;
    }
    while (nc > 0) {
        int im = t / g->seg, at = t % g->seg, run = g->seg - at < nc ? g->seg - at : nc;
        copy_run(dst, g->b + (size_t)im * g->bstride + (size_t)kk * g->ldb + at, (size_t)run);
        dst += run, t += run, nc -= run;
    }
}

/* C's element (r, col). */
static inline float *kg_c_at(const KGemm *g, int r, int col)
{
    if (!g->seg) return g->c + (size_t)r * g->ldc + col;
    return g->c + (size_t)(col / g->seg) * g->cstride + (size_t)r * g->ldc + col % g->seg;
}

/* One tile of KG_NR columns: c[6][16] and d[6][16] (+)= a's panel times bt's two halves, by
 * cpu_dc_kernel2s with AVX-512, else two cpu_dc_kernel calls (the same sums, bit for bit). */
static void kg_tile(int wide, int kc, const float *a, const float *bt, float *c, float *d, size_t ldc, int load)
{
    const ptrdiff_t off0[1] = {0};
    if (wide) {
        cpu_dc_kernel2s(kc, 1, a, bt, bt + 16, KG_NR, off0, c, d, ldc, load);
    } else {
        cpu_dc_kernel(kc, 1, a, bt, KG_NR, off0, c, ldc, load);
        cpu_dc_kernel(kc, 1, a, bt + 16, KG_NR, off0, d, ldc, load);
    }
}

void cpu_kg_cols(const KGemm *g, int t0, int t1, float *buf)
{
    float *bt = buf, *tmp = buf + (size_t)KG_KC * KG_NR;
    const int wide = cpu_avx512();
    int npanel = (g->m + 5) / 6;
    for (int t = t0; t < t1; t += KG_NR) {
        int nc = g->cols - t < KG_NR ? g->cols - t : KG_NR;
        for (int k0 = 0; k0 < g->k; k0 += KG_KC) {
            int kc = g->k - k0 < KG_KC ? g->k - k0 : KG_KC;
            if (g->trans) {
                for (int cc = 0; cc < nc; cc++) {
                    const float *src = g->b + (size_t)(t + cc) * g->ldb + k0;
                    for (int kk = 0; kk < kc; kk++) bt[kk * KG_NR + cc] = src[kk];
                }
                for (int cc = nc; cc < KG_NR; cc++)
                    for (int kk = 0; kk < kc; kk++) bt[kk * KG_NR + cc] = 0.0f;
            } else {
                for (int kk = 0; kk < kc; kk++) {
                    kg_b_row(g, k0 + kk, t, nc, bt + kk * KG_NR);
                    if (nc < KG_NR) memset(bt + kk * KG_NR + nc, 0, (size_t)(KG_NR - nc) * sizeof(float));
                }
            }
            int load = k0 > 0 || g->load;
            for (int p = 0; p < npanel; p++) {
                int rows = g->m - p * 6 < 6 ? g->m - p * 6 : 6;
                const float *ap = g->a + ((size_t)p * g->k + k0) * 6;
                float *cp = kg_c_at(g, p * 6, t);
                if (rows == 6 && nc == KG_NR) {
                    kg_tile(wide, kc, ap, bt, cp, kg_c_at(g, p * 6, t + 16), g->ldc, load);
                    continue;
                }
                /* a short tile: through tmp (zeros load as the kernel's fresh start), a half of
                 * 16 columns at a time (one image each, with seg) */
                for (int h = 0; h < nc; h += 16) {
                    int hn = nc - h < 16 ? nc - h : 16;
                    float *hp = kg_c_at(g, p * 6, t + h);
                    for (int r = 0; r < 6; r++)
                        for (int cc = 0; cc < 16; cc++) {
                            int in = load && r < rows && cc < hn;
                            tmp[r * KG_NR + h + cc] = in ? hp[(size_t)r * g->ldc + cc] : 0.0f;
                        }
                }
                for (int r = 0; r < 6; r++)
                    for (int cc = nc > 16 ? 32 : 16; cc < KG_NR; cc++) tmp[r * KG_NR + cc] = 0.0f;
                kg_tile(wide, kc, ap, bt, tmp, tmp + 16, KG_NR, 1);
                for (int h = 0; h < nc; h += 16) {
                    int hn = nc - h < 16 ? nc - h : 16;
                    float *hp = kg_c_at(g, p * 6, t + h);
                    for (int r = 0; r < rows; r++)
                        memcpy(hp + (size_t)r * g->ldc, tmp + r * KG_NR + h, (size_t)hn * sizeof(float));
                }
            }
        }
        if (g->bias)
            for (int i = 0; i < g->m; i++)
                for (int cc = 0; cc < nc; cc++) g->c[(size_t)i * g->ldc + t + cc] += g->bias[t + cc];
    }
}

/* Floats of the panels of A with m rows of k terms. */
static size_t kg_group_floats(int m, int k)
{
    return (size_t)(m + 5) / 6 * 6 * k;
}

typedef struct {
    KGemm g;
    const float *src; /* kg_pack_task: A's source */
    size_t lds;
    int trans;
    float *a;
    int cb; /* kg_cols_task: columns per item */
    NnBackend *be;
} KgJob;

static void kg_pack_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const KgJob *j = arg;
    cpu_kg_pack_a(j->src, j->lds, j->trans, j->g.m, j->g.k, b, e, j->a);
}

static void kg_cols_task(void *arg, int64_t b, int64_t e, int tid)
{
    const KgJob *j = arg;
    float *buf = cpu_scratch(j->be, tid, KG_SCRATCH);
    for (int64_t it = b; it < e; it++) {
        int t1 = (int)(it + 1) * j->cb < j->g.cols ? (int)(it + 1) * j->cb : j->g.cols;
        cpu_kg_cols(&j->g, (int)it * j->cb, t1, buf);
    }
}

/* A's panels for m rows of k terms from src (as cpu_kg_pack_a), into the backend's shared buffer. */
static float *kg_pack(NnBackend *be, const float *src, size_t lds, int trans, int m, int k)
{
    int64_t npanel = (m + 5) / 6;
    KgJob j = {.g = {.m = m, .k = k}, .src = src, .lds = lds, .trans = trans,
               .a = cpu_shared(be, (size_t)npanel * 6 * k)};
    cpu_for(be, npanel, 2, kg_pack_task, &j);
    return j.a;
}

/* Item = one group's panels. */
static void kg_pack_groups_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const KgJob *j = arg;
    for (int64_t gi = b; gi < e; gi++)
        cpu_kg_pack_a(j->src + (size_t)gi * j->g.m * j->g.k, j->lds, j->trans, j->g.m, j->g.k, 0,
                      (j->g.m + 5) / 6, j->a + (size_t)gi * kg_group_floats(j->g.m, j->g.k));
}

/* A conv weight [groups][m][k] as A's panels per group: group gi's at kg_group_floats(m, k) * gi,
 * of W_gi (trans 0: m rows of k terms) or of W_gi^T (trans 1: k rows of m terms). */
static float *kg_pack_conv(NnBackend *be, const float *w, int groups, int trans, int m, int k)
{
    int rows = trans ? k : m, terms = trans ? m : k;
    if (groups == 1) return kg_pack(be, w, (size_t)k, trans, rows, terms);
    KgJob j = {.g = {.m = rows, .k = terms}, .src = w, .lds = (size_t)k, .trans = trans,
               .a = cpu_shared(be, (size_t)groups * kg_group_floats(rows, terms))};
    cpu_for(be, groups, 1, kg_pack_groups_task, &j);
    return j.a;
}

/* ---- GEMM formulation over fixed chunks of images ----
 *
 * Small planes make thin GEMMs (N = oh*ow = 16 at 4x4) whose cost is OpenBLAS packing the whole
 * weight matrix once per image; a chunk of images side by side in one col matrix [K, B*oh*ow]
 * packs it once per chunk. Chunks are a fixed function of the shape, never of the thread count,
 * so every image meets the same GEMM for any number of threads.
 */

/* Columns a chunk aims for, and its most images (the last chunk may be short). */
#define GEMM_COLS 256
#define GEMM_MAX_CHUNK 16

/* Thin convolutions: one group of few input channels and taps (cin kh kw <= THIN_K: the stems of
 * 1- and 3-channel nets, convnet3's 1 -> 128 at 28x28, resnet18m's 3 -> 64 at 32x32). The flat
 * path's GEMMs per tap have N = cin (a weight gradient of 1 input channel is 9 matrix-vector
 * products over dY) and the direct kernel's backward-data tile has 6 output-channel rows for
 * cin of them; im2col with one image a chunk takes both as one GEMM over the image's own dY,
 * uncopied: dW += dY_i col_i^T (M = cout, N = cin kh kw, K = the plane) and col_i = W^T dY_i
 * (M = cin kh kw, K = cout), col2im then adding kh kw shifted rows a channel. The forward stays
 * with the direct kernel (its output's writes are its cost either way). Taken unless DD_CPU_CONV
 * names a path other than gemm (direct and winograd keep theirs: the tests run every one). */
#define THIN_K 32
static int thin(const NnConvShape *s)
{
    if (s->groups != 1 || s->cin * s->kh * s->kw > THIN_K) return 0;
    const char *env = getenv("DD_CPU_CONV");
    return !env || !*env || strcmp(env, "gemm") == 0;
}

static int gemm_chunk(const NnConvShape *s)
{
    if (thin(s)) return 1;
    int want = GEMM_COLS / (s->oh * s->ow);
    want = want < 1 ? 1 : want > GEMM_MAX_CHUNK ? GEMM_MAX_CHUNK : want;
    return cpu_balanced_chunk(s->n, want);
}

/* Scratch floats of a chunk task: col [K*groups, chunk*ohw], and when chunk > 1 the chunk's
 * outputs (or output gradients) side by side [cout, chunk*ohw]. */
static size_t gemm_scratch(const NnConvShape *s)
{
    int chunk = gemm_chunk(s);
    size_t ld = (size_t)chunk * s->oh * s->ow;
    return ld * ((size_t)s->cin * s->kh * s->kw + (chunk > 1 ? (size_t)s->cout : 0));
}

static int64_t gemm_nchunks(const NnConvShape *s)
{
    int b = gemm_chunk(s);
    return (s->n + b - 1) / b;
}

/* Item = chunk of images. 1x1 stride 1 (one image, or with the kernel GEMM): x itself is the col
 * matrix and the GEMM writes y. */
static void gemm_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int g = s->groups, m = s->cout / g, k = s->cin / g * s->kh * s->kw, ohw = s->oh * s->ow;
    int chunk = gemm_chunk(s);
    size_t ld = (size_t)chunk * ohw;
    /* 1x1 stride 1: x is the col matrix (one image; a chunk's through the kernel GEMM's seg) */
    int direct = is_pointwise(s) && (chunk == 1 || (j->kg && ohw % 16 == 0));
    float *col = direct ? NULL : cpu_scratch(j->be, tid, gemm_scratch(s) + (j->kg ? KG_SCRATCH : 0));
    float *out = col ? col + ld * (size_t)k * g : NULL; /* [cout, chunk*ohw] when chunk > 1 */
    float *kbuf = !j->kg ? NULL : direct ? cpu_scratch(j->be, tid, KG_SCRATCH) : col + gemm_scratch(s);
    for (int64_t ch = b; ch < e; ch++) {
        int n0 = (int)ch * chunk, nb = s->n - n0 < chunk ? s->n - n0 : chunk;
        const float *x = j->x + (size_t)n0 * s->cin * s->h * s->w;
        float *y = j->y + (size_t)n0 * s->cout * ohw, *dst = chunk == 1 ? y : out;
        if (direct && j->kg) { /* per group: B is x's channels, C is y's, image by image */
            for (int gi = 0; gi < g; gi++) {
                KGemm kg = {.m = m, .k = k, .cols = nb * ohw, .a = j->ka + gi * kg_group_floats(m, k),
                            .b = x + (size_t)gi * k * ohw, .ldb = (size_t)ohw, .c = y + (size_t)gi * m * ohw,
                            .ldc = (size_t)ohw, .seg = nb > 1 ? ohw : 0, .bstride = (size_t)s->cin * ohw,
                            .cstride = (size_t)s->cout * ohw};
                cpu_kg_cols(&kg, 0, nb * ohw, kbuf);
            }
        } else if (direct) {
            for (int gi = 0; gi < g; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, ohw, k, 1.0f,
                            j->w + (size_t)gi * m * k, k, x + (size_t)gi * k * ohw, ohw, 0.0f,
                            y + (size_t)gi * m * ohw, ohw);
        } else {
            int cols = nb * ohw;
            for (int i = 0; i < nb; i++)
                im2col(s, x + (size_t)i * s->cin * s->h * s->w, col + (size_t)i * ohw, ld);
            for (int gi = 0; gi < g && j->kg; gi++) {
                KGemm kg = {.m = m, .k = k, .cols = cols, .a = j->ka + gi * kg_group_floats(m, k),
                            .b = col + (size_t)gi * k * ld, .ldb = ld, .c = dst + (size_t)gi * m * ld, .ldc = ld};
                cpu_kg_cols(&kg, 0, cols, kbuf);
            }
            for (int gi = 0; gi < g && !j->kg; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, cols, k, 1.0f,
                            j->w + (size_t)gi * m * k, k, col + (size_t)gi * k * ld, (int)ld, 0.0f,
                            dst + (size_t)gi * m * ld, (int)ld);
            if (chunk > 1) scatter_planes(y, out, ld, nb, s->cout, (size_t)ohw);
        }
        if (j->b) cpu_add_bias(y, j->b, nb, s->cout, ohw);
    }
}

/* Item = chunk of images: dcol = W^T dY over the chunk's dy side by side, then col2im per image.
 * 1x1 stride 1 (one image, or with the kernel GEMM): the GEMM accumulates into dx directly. */
static void gemm_bwd_data_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int g = s->groups, m = s->cout / g, k = s->cin / g * s->kh * s->kw, ohw = s->oh * s->ow;
    int chunk = gemm_chunk(s);
    size_t ld = (size_t)chunk * ohw;
    /* 1x1 stride 1: dx is the dcol matrix (one image; a chunk's through the kernel GEMM's seg) */
    int direct = is_pointwise(s) && (chunk == 1 || (j->kg && ohw % 16 == 0));
    float *col = direct ? NULL : cpu_scratch(j->be, tid, gemm_scratch(s) + (j->kg ? KG_SCRATCH : 0));
    float *dys = col ? col + ld * (size_t)k * g : NULL; /* [cout, chunk*ohw] when chunk > 1 */
    float *kbuf = !j->kg ? NULL : direct ? cpu_scratch(j->be, tid, KG_SCRATCH) : col + gemm_scratch(s);
    for (int64_t ch = b; ch < e; ch++) {
        int n0 = (int)ch * chunk, nb = s->n - n0 < chunk ? s->n - n0 : chunk;
        const float *dy = j->dy + (size_t)n0 * s->cout * ohw;
        float *dx = j->dx + (size_t)n0 * s->cin * s->h * s->w;
        if (direct && j->kg) { /* per group: dx += W^T dy, straight into dx, image by image */
            for (int gi = 0; gi < g; gi++) {
                KGemm kg = {.m = k, .k = m, .cols = nb * ohw, .a = j->ka + gi * kg_group_floats(k, m),
                            .b = dy + (size_t)gi * m * ohw, .ldb = (size_t)ohw, .c = dx + (size_t)gi * k * ohw,
                            .ldc = (size_t)ohw, .load = 1, .seg = nb > 1 ? ohw : 0,
                            .bstride = (size_t)s->cout * ohw, .cstride = (size_t)s->cin * ohw};
                cpu_kg_cols(&kg, 0, nb * ohw, kbuf);
            }
            continue;
        }
        if (direct) {
            for (int gi = 0; gi < g; gi++)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, ohw, m, 1.0f,
                            j->w + (size_t)gi * m * k, k, dy + (size_t)gi * m * ohw, ohw, 1.0f,
                            dx + (size_t)gi * k * ohw, ohw);
            continue;
        }
        const float *src = dy;
        if (chunk > 1) {
            gather_planes(dys, ld, dy, nb, s->cout, (size_t)ohw);
            src = dys;
        }
        for (int gi = 0; gi < g && j->kg; gi++) {
            KGemm kg = {.m = k, .k = m, .cols = nb * ohw, .a = j->ka + gi * kg_group_floats(k, m),
                        .b = src + (size_t)gi * m * ld, .ldb = ld, .c = col + (size_t)gi * k * ld, .ldc = ld};
            cpu_kg_cols(&kg, 0, nb * ohw, kbuf);
        }
        for (int gi = 0; gi < g && !j->kg; gi++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, nb * ohw, m, 1.0f,
                        j->w + (size_t)gi * m * k, k, src + (size_t)gi * m * ld, (int)ld, 0.0f,
                        col + (size_t)gi * k * ld, (int)ld);
        for (int i = 0; i < nb; i++)
            col2im_add(s, col + (size_t)i * ohw, ld, dx + (size_t)i * s->cin * s->h * s->w);
    }
}

/* Item = one fixed group of images; its partial weight gradient goes to parts[item]. Inside a
 * group, images go in chunks as in the forward: dW += dY [m, chunk*ohw] col^T. */
static void gemm_bwd_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int g = s->groups, m = s->cout / g, k = s->cin / g * s->kh * s->kw, ohw = s->oh * s->ow;
    int nparts = s->n < CONV_PARTS ? s->n : CONV_PARTS, chunk = gemm_chunk(s);
    size_t ld = (size_t)chunk * ohw;
    int direct = chunk == 1 && is_pointwise(s);
    /* with j->kg: the kernel GEMM's buffer and dY's panels (m rows, ld terms) */
    size_t kgs = j->kg ? KG_SCRATCH + (size_t)(m + 5) / 6 * 6 * ld : 0;
    float *col = direct && !kgs ? NULL : cpu_scratch(j->be, tid, (direct ? 0 : gemm_scratch(s)) + kgs);
    float *dys = col ? col + ld * (size_t)k * g : NULL; /* no pointer arithmetic on NULL */
    float *kbuf = !kgs ? NULL : direct ? col : col + gemm_scratch(s), *kpan = kbuf ? kbuf + KG_SCRATCH : NULL;
    for (int64_t p = b; p < e; p++) {
        float *dw = j->parts + (size_t)p * j->wsize;
        int first = (int)(s->n * p / nparts), end = (int)(s->n * (p + 1) / nparts);
        if (!j->kg) memset(dw, 0, j->wsize * sizeof(float)); /* the kernel GEMM's first chunk writes */
        for (int n0 = first; n0 < end; n0 += chunk) {
            int nb = end - n0 < chunk ? end - n0 : chunk;
            const float *x = j->x + (size_t)n0 * s->cin * s->h * s->w, *src = x;
            const float *dy = j->dy + (size_t)n0 * s->cout * ohw, *dsrc = dy;
            if (!direct) {
                for (int i = 0; i < nb; i++)
                    im2col(s, x + (size_t)i * s->cin * s->h * s->w, col + (size_t)i * ohw, ld);
                src = col;
            }
            if (chunk > 1) {
                gather_planes(dys, ld, dy, nb, s->cout, (size_t)ohw);
                dsrc = dys;
            }
            if (j->kg) { /* one group: dW += dY col^T, A dY's panels, B col transposed */
                cpu_kg_pack_a(dsrc, ld, 0, m, nb * ohw, 0, (m + 5) / 6, kpan);
                KGemm kg = {.m = m, .k = nb * ohw, .cols = k, .a = kpan, .b = src, .ldb = ld,
                            .trans = 1, .c = dw, .ldc = (size_t)k, .load = n0 > first};
                cpu_kg_cols(&kg, 0, k, kbuf);
                continue;
            }
            for (int gi = 0; gi < g; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, nb * ohw, 1.0f,
                            dsrc + (size_t)gi * m * ld, (int)ld, src + (size_t)gi * k * ld, (int)ld,
                            1.0f, dw + (size_t)gi * m * k, k);
        }
    }
}

/* dw[i] += sum over parts in order, from 0; REDUCE_RUN elements at a time, so that the adds go
 * along the parts' rows (which vectorises) rather than down one element's column. */
#define REDUCE_RUN 64
static void parts_reduce_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ConvJob *j = arg;
    int nparts = j->s->n < CONV_PARTS ? j->s->n : CONV_PARTS;
    int64_t i0 = b;
    for (; i0 + REDUCE_RUN <= e; i0 += REDUCE_RUN) {
        float acc[REDUCE_RUN] = {0};
        for (int p = 0; p < nparts; p++) {
            const float *part = j->parts + (size_t)p * j->wsize + i0;
            for (int i = 0; i < REDUCE_RUN; i++) acc[i] += part[i];
        }
        for (int i = 0; i < REDUCE_RUN; i++) j->dw[i0 + i] += acc[i];
    }
    for (; i0 < e; i0++) {
        float acc = 0;
        for (int p = 0; p < nparts; p++) acc += j->parts[(size_t)p * j->wsize + i0];
        j->dw[i0] += acc;
    }
}

/* db[c] += sum over images and pixels, one channel per item: each plane in 8 float lanes (element
 * i in lane i % 8; independent adds, which vectorise, where one running sum would wait on each
 * add's latency), the lanes combined in a fixed order, the planes summed in double. */
static void bias_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int ohw = s->oh * s->ow;
    for (int64_t c = b; c < e; c++) {
        double acc = 0;
        for (int n = 0; n < s->n; n++) {
            const float *restrict dy = j->dy + ((size_t)n * s->cout + (size_t)c) * ohw;
            float l[8] = {0};
            int i = 0;
            for (; i + 8 <= ohw; i += 8)
                for (int k = 0; k < 8; k++) l[k] += dy[i + k];
            for (int k = 0; i < ohw; i++, k++) l[k] += dy[i];
            acc += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
        }
        j->dw[c] += (float)acc;
    }
}

/* The GEMMs of the chunk tasks (one per group) on the kernel GEMM. With AVX-512: with one group,
 * every pass; grouped (ShuffleNet v1's 1x1s), the forward and dx where planes go side by side
 * (chunk > 1, where OpenBLAS packs W for few columns), and never the weight gradient, whose
 * transposed B the kernel GEMM packs slower than OpenBLAS at a group's sizes (bench_ops' group
 * cases). With AVX2 alone (two 16-column kernels a tile), only the forward and dx of 1x1 stride-1
 * convolutions on planes of a multiple of 16 pixels that go side by side (8x8, 4x4), which it
 * reads and writes where they lie, where OpenBLAS needs copies in and out: measured (bench_ops,
 * one thread, AMD EPYC) at 0.45 to 0.66 of OpenBLAS's time there (1x1 at 144x8 and 576x4, 2 and 3
 * groups at 8x8), but 1.15 to 1.94 on 16x16 planes (one image a GEMM), 1.04 to 1.14 for stride 2
 * (im2col) and 1.05 to 1.29 for weight gradients. Whole steps, best of 4 alternating, one thread:
 * training mobilenet_v2m +10%, shufflenet_v2_x1_0m +16%, shufflenet_g2_cifar +8%; recover
 * mobilenet_v2m +8%, shufflenet_g2_cifar +10%, densenet121m +7%. */
/* Thin and pointwise convolutions' weight gradients stay on OpenBLAS with AVX-512 too: few
 * columns (cin kh kw <= 32) or a B transposed from x itself, where the kernel GEMM took, on an
 * Intel Xeon (bench_ops, 2 threads, A/B alternating), 3.4x OpenBLAS's time for convnet3's stem
 * (1->128 at 28x28), 1.27x for 3->64 at 32x32 and 1.16-1.31x for 1x1s on 16x16 to 4x4 planes. */
static int kg_gemm_ok(const NnConvShape *s, int filter)
{
    if (s->groups > 1 && (filter || gemm_chunk(s) == 1)) return 0;
    if (filter && (thin(s) || is_pointwise(s))) return 0;
    if (cpu_avx512()) return 1;
    return !filter && cpu_avx2() && is_pointwise(s) && gemm_chunk(s) > 1 && s->oh * s->ow % 16 == 0;
}

static void conv2d_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                       const float *b, float *y)
{
    ConvJob j = {.s = s, .be = be, .x = x, .w = w, .b = b, .y = y};
    if (cpu_wino_ok(s)) cpu_wino_fwd(be, s, x, w, b, y);
    else if (cpu_dwp_ok(s)) cpu_dwp_fwd(be, s, x, w, b, y);
    else if (cpu_dwc_ok(s)) cpu_dwc_fwd(be, s, x, w, b, y);
    else if (cpu_dwflat_pick(s)) cpu_dwflat_fwd(be, s, x, w, b, y);
    else if (cpu_direct_ok(s)) cpu_direct_fwd(be, s, x, w, b, y);
    else if (!is_depthwise(s) && cpu_flat_ok(s)) cpu_flat_fwd(be, s, x, w, b, y);
    else if (is_depthwise(s)) cpu_for(be, (int64_t)s->n * s->cin, 2, dw_fwd_task, &j);
    else {
        int m = s->cout / s->groups, k = s->cin / s->groups * s->kh * s->kw;
        if ((j.kg = kg_gemm_ok(s, 0))) j.ka = kg_pack_conv(be, w, s->groups, 0, m, k);
        cpu_for(be, gemm_nchunks(s), 2, gemm_fwd_task, &j);
    }
}

static void conv2d_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                            float *dx)
{
    ConvJob j = {.s = s, .be = be, .w = w, .dy = dy, .dx = dx};
    if (thin(s)) cpu_for(be, gemm_nchunks(s), 2, gemm_bwd_data_task, &j); /* OpenBLAS (j.kg 0) */
    else if (cpu_wino_ok(s)) cpu_wino_bwd_data(be, s, dy, w, dx);
    else if (cpu_dwp_data_ok(s)) cpu_dwp_bwd_data(be, s, dy, w, dx);
    else if (cpu_dwc_data_ok(s)) cpu_dwc_bwd_data(be, s, dy, w, dx);
    else if (cpu_dwflat_pick(s)) cpu_dwflat_bwd_data(be, s, dy, w, dx);
    else if (cpu_direct_ok(s)) cpu_direct_bwd_data(be, s, dy, w, dx);
    else if (!is_depthwise(s) && cpu_flat_ok(s)) cpu_flat_bwd_data(be, s, dy, w, dx);
    else if (is_depthwise(s))
        cpu_for(be, (int64_t)s->n * s->cin, 2,
                dw_bwd_gathers(s) ? dw_bwd_gather_task : dw_bwd_scatter_task, &j);
    else {
        int m = s->cout / s->groups, k = s->cin / s->groups * s->kh * s->kw;
        if ((j.kg = kg_gemm_ok(s, 0))) j.ka = kg_pack_conv(be, w, s->groups, 1, m, k);
        cpu_for(be, gemm_nchunks(s), 2, gemm_bwd_data_task, &j);
    }
}

static void conv2d_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                              float *dw, float *db)
{
    if (dw) {
        ConvJob j = {.s = s, .be = be, .x = x, .dy = dy, .dw = dw};
        j.wsize = (size_t)s->cout * (s->cin / s->groups) * s->kh * s->kw;
        if (cpu_dwp_ok(s)) {
            cpu_dwp_bwd_filter(be, s, dy, x, dw);
        } else if (cpu_dwc_filter_ok(s)) {
            cpu_dwc_bwd_filter(be, s, dy, x, dw);
        } else if (cpu_dwflat_ok(s)) {
            cpu_dwflat_bwd_filter(be, s, dy, x, dw);
        } else if (cpu_wino_filter_ok(s)) {
            cpu_wino_bwd_filter(be, s, dy, x, dw);
        } else if (is_depthwise(s)) {
            cpu_for(be, s->cin, 2, dw_bwd_filter_task, &j);
        } else if (cpu_flat_ok(s) && !thin(s)) {
            cpu_flat_bwd_filter(be, s, dy, x, dw);
        } else {
            int nparts = s->n < CONV_PARTS ? s->n : CONV_PARTS;
            j.parts = cpu_shared(be, (size_t)nparts * j.wsize);
            j.kg = kg_gemm_ok(s, 1);
            cpu_for(be, nparts, 2, gemm_bwd_filter_task, &j);
            cpu_for(be, (int64_t)j.wsize, 4096, parts_reduce_task, &j);
        }
    }
    if (db) {
        ConvJob j = {.s = s, .be = be, .dy = dy, .dw = db};
        cpu_for(be, s->cout, 2, bias_bwd_task, &j);
    }
}

/* ---- linear: sgemms over fixed blocks of LIN_COLS output (or input) columns ----
 * The blocks are a function of the shape only, so results do not depend on the thread count;
 * VGG's and AlexNet's classifiers (25088 x 4096) are worth both cores, a ResNet head is one block.
 * With AVX-512 the forward and dx run on the kernel GEMM above (the batch is A's rows), for every
 * batch size: a row's sums do not depend on the others, so evaluation is batch-invariant (patchsel
 * --batch; OpenBLAS's small-matrix and gemv paths would sum a short batch in another order). dw
 * stays on OpenBLAS. */

#define LIN_COLS 512
#define KG_LIN_CB 128 /* columns per item on the AVX-512 kernel (a multiple of KG_NR) */

typedef struct {
    int n, in, out;
    const float *x, *w, *b, *dy;
    float *y, *dx, *dw;
} LinJob;

static void lin_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LinJob *j = arg;
    for (int64_t blk = b; blk < e; blk++) {
        int o0 = (int)blk * LIN_COLS, ob = j->out - o0 < LIN_COLS ? j->out - o0 : LIN_COLS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, ob, j->in, 1.0f, j->x, j->in,
                    j->w + (size_t)o0 * j->in, j->in, 0.0f, j->y + o0, j->out);
        if (j->b)
            for (int i = 0; i < j->n; i++)
                for (int o = o0; o < o0 + ob; o++) j->y[(size_t)i * j->out + o] += j->b[o];
    }
}

/* blocks [0, nin): dx columns; [nin, nin + nout): dw rows */
static void lin_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LinJob *j = arg;
    int64_t nin = j->dx ? (j->in + LIN_COLS - 1) / LIN_COLS : 0;
    for (int64_t blk = b; blk < e; blk++) {
        if (blk < nin) {
            int i0 = (int)blk * LIN_COLS, ib = j->in - i0 < LIN_COLS ? j->in - i0 : LIN_COLS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->n, ib, j->out, 1.0f, j->dy,
                        j->out, j->w + i0, j->in, 1.0f, j->dx + i0, j->in);
        } else {
            int o0 = (int)(blk - nin) * LIN_COLS, ob = j->out - o0 < LIN_COLS ? j->out - o0 : LIN_COLS;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ob, j->in, j->n, 1.0f, j->dy + o0,
                        j->out, j->x, j->in, 1.0f, j->dw + (size_t)o0 * j->in, j->in);
        }
    }
}

static void linear_fwd(NnBackend *be, int n, int in, int out, const float *x, const float *w,
                       const float *b, float *y)
{
    if (cpu_avx512()) { /* y = x W^T + b: A x, B W transposed */
        KgJob j = {.g = {.m = n, .k = in, .cols = out, .b = w, .ldb = (size_t)in, .trans = 1, .c = y,
                         .ldc = (size_t)out, .bias = b},
                   .cb = KG_LIN_CB, .be = be};
        j.g.a = kg_pack(be, x, (size_t)in, 0, n, in);
        cpu_for(be, (out + KG_LIN_CB - 1) / KG_LIN_CB, 1, kg_cols_task, &j);
        return;
    }
    LinJob j = {.n = n, .in = in, .out = out, .x = x, .w = w, .b = b, .y = y};
    cpu_for(be, (out + LIN_COLS - 1) / LIN_COLS, 2, lin_fwd_task, &j);
}

static void linear_bwd(NnBackend *be, int n, int in, int out, const float *dy, const float *x,
                       const float *w, float *dx, float *dw, float *db)
{
    if (dx && cpu_avx512()) { /* dx += dy W: A dy, B W */
        KgJob kj = {.g = {.m = n, .k = out, .cols = in, .b = w, .ldb = (size_t)in, .c = dx,
                          .ldc = (size_t)in, .load = 1},
                    .cb = KG_LIN_CB, .be = be};
        kj.g.a = kg_pack(be, dy, (size_t)out, 0, n, out);
        cpu_for(be, (in + KG_LIN_CB - 1) / KG_LIN_CB, 1, kg_cols_task, &kj);
        dx = NULL; /* done: OpenBLAS takes dw alone */
    }
    LinJob j = {.n = n, .in = in, .out = out, .x = x, .w = w, .dy = dy, .dx = dx, .dw = dw};
    int64_t nblk = (dx ? (in + LIN_COLS - 1) / LIN_COLS : 0) + (dw ? (out + LIN_COLS - 1) / LIN_COLS : 0);
    if (nblk) cpu_for(be, nblk, 2, lin_bwd_task, &j);
    if (db)
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int i = 0; i < n; i++) acc += dy[(size_t)i * out + o];
            db[o] += (float)acc;
        }
}

void cpu_conv_init(NnBackend *be)
{
    be->conv2d_fwd = conv2d_fwd;
    be->conv2d_bwd_data = conv2d_bwd_data;
    be->conv2d_bwd_filter = conv2d_bwd_filter;
    be->linear_fwd = linear_fwd;
    be->linear_bwd = linear_bwd;
}

/* conv.c - CPU convolution and linear: im2col + single-threaded OpenBLAS sgemm per image, images
 * spread over the worker pool (each thread its own im2col buffer); a direct loop kernel for
 * depthwise convolution. Per-image work is identical for any thread count, and the weight
 * gradient sums fixed groups of images in a fixed order, so results do not depend on threads.
 */
#include "libcommon/nn/cpu/cpu.h"

#include <cblas.h>
#include <string.h>

/* Weight-gradient partial sums: images are cut into this many fixed groups. */
#define CONV_PARTS 4

static int is_pointwise(const NnConvShape *s)
{
    return s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0;
}

static int is_depthwise(const NnConvShape *s)
{
    return s->groups > 1 && s->groups == s->cin && s->groups == s->cout;
}

/* col [cin*kh*kw, oh*ow] from one image x [cin,h,w]. */
static void im2col(const NnConvShape *s, const float *x, float *col)
{
    int ohw = s->oh * s->ow;
    for (int c = 0; c < s->cin; c++) {
        const float *xc = x + (size_t)c * s->h * s->w;
        for (int ki = 0; ki < s->kh; ki++) {
            for (int kj = 0; kj < s->kw; kj++) {
                float *row = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * ohw;
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

/* dx [cin,h,w] += col2im(col). */
static void col2im_add(const NnConvShape *s, const float *col, float *dx)
{
    int ohw = s->oh * s->ow;
    for (int c = 0; c < s->cin; c++) {
        float *xc = dx + (size_t)c * s->h * s->w;
        for (int ki = 0; ki < s->kh; ki++) {
            for (int kj = 0; kj < s->kw; kj++) {
                const float *row = col + ((size_t)(c * s->kh + ki) * s->kw + kj) * ohw;
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
} ConvJob;

/* ---- depthwise: direct loops over planes ---- */

static void dw_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    for (int64_t p = b; p < e; p++) {
        int c = (int)(p % s->cin);
        const float *x = j->x + (size_t)p * s->h * s->w, *w = j->w + (size_t)c * s->kh * s->kw;
        float *y = j->y + (size_t)p * s->oh * s->ow;
        float bias = j->b ? j->b[c] : 0.0f;
        for (int i = 0; i < s->oh * s->ow; i++) y[i] = bias;
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                float wv = w[ki * s->kw + kj];
                for (int oi = 0; oi < s->oh; oi++) {
                    int ih = oi * s->stride - s->pad + ki * s->dil;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int oj = 0; oj < s->ow; oj++) {
                        int iw = oj * s->stride - s->pad + kj * s->dil;
                        if (iw >= 0 && iw < s->w) y[oi * s->ow + oj] += wv * x[ih * s->w + iw];
                    }
                }
            }
    }
}

static void dw_bwd_data_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    for (int64_t p = b; p < e; p++) {
        int c = (int)(p % s->cin);
        const float *dy = j->dy + (size_t)p * s->oh * s->ow, *w = j->w + (size_t)c * s->kh * s->kw;
        float *dx = j->dx + (size_t)p * s->h * s->w;
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                float wv = w[ki * s->kw + kj];
                for (int oi = 0; oi < s->oh; oi++) {
                    int ih = oi * s->stride - s->pad + ki * s->dil;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int oj = 0; oj < s->ow; oj++) {
                        int iw = oj * s->stride - s->pad + kj * s->dil;
                        if (iw >= 0 && iw < s->w) dx[ih * s->w + iw] += wv * dy[oi * s->ow + oj];
                    }
                }
            }
    }
}

/* One channel per item: sums over all images in order (deterministic), in double. */
static void dw_bwd_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    for (int64_t c = b; c < e; c++) {
        float *dw = j->dw + (size_t)c * s->kh * s->kw;
        for (int ki = 0; ki < s->kh; ki++)
            for (int kj = 0; kj < s->kw; kj++) {
                double acc = 0;
                for (int n = 0; n < s->n; n++) {
                    size_t p = (size_t)n * s->cin + (size_t)c;
                    const float *x = j->x + p * s->h * s->w, *dy = j->dy + p * s->oh * s->ow;
                    for (int oi = 0; oi < s->oh; oi++) {
                        int ih = oi * s->stride - s->pad + ki * s->dil;
                        if (ih < 0 || ih >= s->h) continue;
                        float row = 0;
                        for (int oj = 0; oj < s->ow; oj++) {
                            int iw = oj * s->stride - s->pad + kj * s->dil;
                            if (iw >= 0 && iw < s->w) row += dy[oi * s->ow + oj] * x[ih * s->w + iw];
                        }
                        acc += row;
                    }
                }
                dw[ki * s->kw + kj] += (float)acc;
            }
    }
}

/* ---- GEMM formulation, one image per item ---- */

static void gemm_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int g = s->groups, m = s->cout / g, k = s->cin / g * s->kh * s->kw, ohw = s->oh * s->ow;
    float *col = is_pointwise(s) ? NULL : cpu_scratch(j->be, tid, (size_t)k * g * ohw);
    for (int64_t n = b; n < e; n++) {
        const float *x = j->x + (size_t)n * s->cin * s->h * s->w;
        float *y = j->y + (size_t)n * s->cout * ohw;
        const float *src = x;
        if (col) {
            im2col(s, x, col);
            src = col;
        }
        for (int gi = 0; gi < g; gi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, ohw, k, 1.0f,
                        j->w + (size_t)gi * m * k, k, src + (size_t)gi * k * ohw, ohw, 0.0f,
                        y + (size_t)gi * m * ohw, ohw);
        if (j->b)
            for (int c = 0; c < s->cout; c++) {
                float bv = j->b[c], *yc = y + (size_t)c * ohw;
                for (int i = 0; i < ohw; i++) yc[i] += bv;
            }
    }
}

static void gemm_bwd_data_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int g = s->groups, m = s->cout / g, k = s->cin / g * s->kh * s->kw, ohw = s->oh * s->ow;
    int direct = is_pointwise(s);
    float *col = direct ? NULL : cpu_scratch(j->be, tid, (size_t)k * g * ohw);
    for (int64_t n = b; n < e; n++) {
        const float *dy = j->dy + (size_t)n * s->cout * ohw;
        float *dx = j->dx + (size_t)n * s->cin * s->h * s->w;
        float *dst = direct ? dx : col;
        for (int gi = 0; gi < g; gi++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, ohw, m, 1.0f,
                        j->w + (size_t)gi * m * k, k, dy + (size_t)gi * m * ohw, ohw,
                        direct ? 1.0f : 0.0f, dst + (size_t)gi * k * ohw, ohw);
        if (!direct) col2im_add(s, col, dx);
    }
}

/* Item = one fixed group of images; its partial weight gradient goes to parts[item]. */
static void gemm_bwd_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int g = s->groups, m = s->cout / g, k = s->cin / g * s->kh * s->kw, ohw = s->oh * s->ow;
    int nparts = s->n < CONV_PARTS ? s->n : CONV_PARTS;
    float *col = is_pointwise(s) ? NULL : cpu_scratch(j->be, tid, (size_t)k * g * ohw);
    for (int64_t p = b; p < e; p++) {
        float *dw = j->parts + (size_t)p * j->wsize;
        memset(dw, 0, j->wsize * sizeof(float));
        for (int64_t n = s->n * p / nparts; n < s->n * (p + 1) / nparts; n++) {
            const float *x = j->x + (size_t)n * s->cin * s->h * s->w, *src = x;
            const float *dy = j->dy + (size_t)n * s->cout * ohw;
            if (col) {
                im2col(s, x, col);
                src = col;
            }
            for (int gi = 0; gi < g; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, ohw, 1.0f,
                            dy + (size_t)gi * m * ohw, ohw, src + (size_t)gi * k * ohw, ohw, 1.0f,
                            dw + (size_t)gi * m * k, k);
        }
    }
}

/* dw[i] += sum over parts in order. */
static void parts_reduce_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ConvJob *j = arg;
    int nparts = j->s->n < CONV_PARTS ? j->s->n : CONV_PARTS;
    for (int64_t i = b; i < e; i++) {
        float acc = 0;
        for (int p = 0; p < nparts; p++) acc += j->parts[(size_t)p * j->wsize + i];
        j->dw[i] += acc;
    }
}

/* db[c] += sum over images and pixels, in double, one channel per item. */
static void bias_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ConvJob *j = arg;
    const NnConvShape *s = j->s;
    int ohw = s->oh * s->ow;
    for (int64_t c = b; c < e; c++) {
        double acc = 0;
        for (int n = 0; n < s->n; n++) {
            const float *dy = j->dy + ((size_t)n * s->cout + (size_t)c) * ohw;
            float row = 0;
            for (int i = 0; i < ohw; i++) row += dy[i];
            acc += row;
        }
        j->dw[c] += (float)acc;
    }
}

static void conv2d_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                       const float *b, float *y)
{
    ConvJob j = {.s = s, .be = be, .x = x, .w = w, .b = b, .y = y};
    if (is_depthwise(s)) cpu_for(be, (int64_t)s->n * s->cin, 2, dw_fwd_task, &j);
    else cpu_for(be, s->n, 2, gemm_fwd_task, &j);
}

static void conv2d_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                            float *dx)
{
    ConvJob j = {.s = s, .be = be, .w = w, .dy = dy, .dx = dx};
    if (is_depthwise(s)) cpu_for(be, (int64_t)s->n * s->cin, 2, dw_bwd_data_task, &j);
    else cpu_for(be, s->n, 2, gemm_bwd_data_task, &j);
}

static void conv2d_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                              float *dw, float *db)
{
    if (dw) {
        ConvJob j = {.s = s, .be = be, .x = x, .dy = dy, .dw = dw};
        j.wsize = (size_t)s->cout * (s->cin / s->groups) * s->kh * s->kw;
        if (is_depthwise(s)) {
            cpu_for(be, s->cin, 2, dw_bwd_filter_task, &j);
        } else {
            int nparts = s->n < CONV_PARTS ? s->n : CONV_PARTS;
            j.parts = cpu_shared(be, (size_t)nparts * j.wsize);
            cpu_for(be, nparts, 2, gemm_bwd_filter_task, &j);
            cpu_for(be, (int64_t)j.wsize, 4096, parts_reduce_task, &j);
        }
    }
    if (db) {
        ConvJob j = {.s = s, .be = be, .dy = dy, .dw = db};
        cpu_for(be, s->cout, 2, bias_bwd_task, &j);
    }
}

/* ---- linear (small: one sgemm on the calling thread) ---- */

static void linear_fwd(NnBackend *be, int n, int in, int out, const float *x, const float *w,
                       const float *b, float *y)
{
    (void)be;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y,
                out);
    if (b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++) y[(size_t)i * out + o] += b[o];
}

static void linear_bwd(NnBackend *be, int n, int in, int out, const float *dy, const float *x,
                       const float *w, float *dx, float *dw, float *db)
{
    (void)be;
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0f, dy, out, w, in,
                    1.0f, dx, in);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, n, 1.0f, dy, out, x, in, 1.0f,
                    dw, in);
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

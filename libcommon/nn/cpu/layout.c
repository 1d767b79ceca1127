/* layout.c - CPU layout kernels: block copies (concat), channel shuffle, roll, horizontal flip and
 * bilinear crop-resize (align_corners=False, as F.interpolate) with its scatter backward. */
#include "libcommon/nn/cpu/cpu.h"

#include <string.h>

typedef struct {
    int64_t rows, len, lds, ldd;
    int c, h, w, sh, sw, groups, inverse, acc;
    int64_t hw;
    const float *x;
    float *y;
    const NnResample *r;
} LayoutJob;

static void copy_row(const float *src, float *dst, int64_t n, int acc)
{
    if (acc)
        cpu_acc_run(n, src, dst);
    else
        memcpy(dst, src, (size_t)n * sizeof(float));
}

static void block_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LayoutJob *j = arg;
    for (int64_t r = b; r < e; r++) copy_row(j->x + r * j->lds, j->y + r * j->ldd, j->len, j->acc);
}

static void block_copy(NnBackend *be, int64_t rows, int64_t len, const float *src, int64_t lds,
                       float *dst, int64_t ldd, int accumulate)
{
    LayoutJob j = {.rows = rows, .len = len, .lds = lds, .ldd = ldd, .acc = accumulate, .x = src,
                   .y = dst};
    cpu_for(be, rows, 2, block_task, &j);
}

/* Item = one (image, output channel) plane. */
static void shuffle_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LayoutJob *j = arg;
    int per = j->c / j->groups;
    for (int64_t p = b; p < e; p++) {
        int64_t n = p / j->c;
        int o = (int)(p % j->c), in;
        if (!j->inverse) in = (o % j->groups) * per + o / j->groups;  /* o = i*groups + g */
        else in = (o % per) * j->groups + o / per;                    /* o = g*per + i */
        copy_row(j->x + (n * j->c + in) * j->hw, j->y + p * j->hw, j->hw, j->acc);
    }
}

static void shuffle(NnBackend *be, int64_t n, int c, int64_t hw, int groups, int inverse,
                    int accumulate, const float *x, float *y)
{
    LayoutJob j = {.c = c, .hw = hw, .groups = groups, .inverse = inverse, .acc = accumulate,
                   .x = x, .y = y};
    cpu_for(be, n * c, 2, shuffle_task, &j);
}

/* y[i][j] = x[(i - sh) mod h][(j - sw) mod w], shifts already in [0, h) / [0, w) or negative. */
static void roll_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LayoutJob *j = arg;
    int sh = ((j->sh % j->h) + j->h) % j->h, sw = ((j->sw % j->w) + j->w) % j->w;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * j->h * j->w;
        float *y = j->y + p * j->h * j->w;
        for (int i = 0; i < j->h; i++) {
            const float *xr = x + (size_t)((i - sh + j->h) % j->h) * j->w;
            float *yr = y + (size_t)i * j->w;
            copy_row(xr + j->w - sw, yr, sw, j->acc);
            copy_row(xr, yr + sw, j->w - sw, j->acc);
        }
    }
}

static void roll(NnBackend *be, int64_t np, int h, int w, int sh, int sw, int accumulate,
                 const float *x, float *y)
{
    LayoutJob j = {.h = h, .w = w, .sh = sh, .sw = sw, .acc = accumulate, .x = x, .y = y};
    cpu_for(be, np, 2, roll_task, &j);
}

static void flip_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LayoutJob *j = arg;
    for (int64_t r = b; r < e; r++) {
        const float *x = j->x + r * j->w;
        float *y = j->y + r * j->w;
        if (j->acc)
            for (int i = 0; i < j->w; i++) y[i] += x[j->w - 1 - i];
        else
            for (int i = 0; i < j->w; i++) y[i] = x[j->w - 1 - i];
    }
}

static void flip_w(NnBackend *be, int64_t np, int h, int w, int accumulate, const float *x, float *y)
{
    LayoutJob j = {.w = w, .acc = accumulate, .x = x, .y = y};
    cpu_for(be, np * h, 2, flip_task, &j);
}

/* ---- bilinear: src = (dst + 0.5) * in/out - 0.5, clamped at 0 (PyTorch, float arithmetic) ---- */

typedef struct {
    int i0, i1;
    float l0, l1;
} Tap;

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

static void resample_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LayoutJob *j = arg;
    const NnResample *r = j->r;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * r->h * r->w + (size_t)r->top * r->w + r->left;
        float *y = j->y + p * r->oh * r->ow;
        for (int i = 0; i < r->oh; i++) {
            Tap th = tap(i, r->ch, r->oh);
            const float *x0 = x + (size_t)th.i0 * r->w, *x1 = x + (size_t)th.i1 * r->w;
            for (int k = 0; k < r->ow; k++) {
                Tap tw = tap(k, r->cw, r->ow);
                y[(size_t)i * r->ow + k] = th.l0 * (tw.l0 * x0[tw.i0] + tw.l1 * x0[tw.i1]) +
                                           th.l1 * (tw.l0 * x1[tw.i0] + tw.l1 * x1[tw.i1]);
            }
        }
    }
}

static void resample_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const LayoutJob *j = arg;
    const NnResample *r = j->r;
    for (int64_t p = b; p < e; p++) {
        const float *dy = j->x + p * r->oh * r->ow;
        float *dx = j->y + p * r->h * r->w + (size_t)r->top * r->w + r->left;
        for (int i = 0; i < r->oh; i++) {
            Tap th = tap(i, r->ch, r->oh);
            float *d0 = dx + (size_t)th.i0 * r->w, *d1 = dx + (size_t)th.i1 * r->w;
            for (int k = 0; k < r->ow; k++) {
                Tap tw = tap(k, r->cw, r->ow);
                float g = dy[(size_t)i * r->ow + k];
                d0[tw.i0] += th.l0 * tw.l0 * g;
                d0[tw.i1] += th.l0 * tw.l1 * g;
                d1[tw.i0] += th.l1 * tw.l0 * g;
                d1[tw.i1] += th.l1 * tw.l1 * g;
            }
        }
    }
}

static void resample_fwd(NnBackend *be, const NnResample *r, const float *x, float *y)
{
    LayoutJob j = {.r = r, .x = x, .y = y};
    cpu_for(be, r->np, 2, resample_task, &j);
}

static void resample_bwd(NnBackend *be, const NnResample *r, const float *dy, float *dx)
{
    LayoutJob j = {.r = r, .x = dy, .y = dx};
    cpu_for(be, r->np, 2, resample_bwd_task, &j);
}

void cpu_layout_init(NnBackend *be)
{
    be->block_copy = block_copy;
    be->shuffle = shuffle;
    be->roll = roll;
    be->flip_w = flip_w;
    be->resample_fwd = resample_fwd;
    be->resample_bwd = resample_bwd;
}

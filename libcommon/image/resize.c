/* resize.c - bilinear and antialiased bilinear resampling of float CHW planes, written to give the
 * values of PyTorch's CPU kernels (aten/src/ATen/native/cpu/UpSampleKernel.cpp): the same
 * coefficient formulas evaluated in the same precision (float, with the double intermediates the
 * C++ code has where it mixes float with double literals) and the same summation order.
 * The build uses ISO C (-std=c11), so no multiply-add contraction changes the rounding.
 */
#include "libcommon/image/resize.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "libcommon/base/base.h"

void img_linear_taps(int in, int out, ImgLinearTap *taps)
{
    assert(in >= 1 && out >= 1);
    const float scale = (float)in / (float)out;
    for (int o = 0; o < out; o++) {
        ImgLinearTap *t = &taps[o];
        if (in == out) {
            *t = (ImgLinearTap){o, o, 1.0f, 0.0f};
            continue;
        }
        double src = (double)scale * ((double)o + 0.5) - 0.5;
        if (src < 0.0) src = 0.0;
        int i0 = (int)src;
        float l1 = (float)(src - (double)i0);
        l1 = l1 < 0.0f ? 0.0f : (l1 > 1.0f ? 1.0f : l1);
        t->i0 = i0;
        t->i1 = i0 < in - 1 ? i0 + 1 : i0;
        t->l1 = l1;
        t->l0 = 1.0f - l1;
    }
}

/* The bilinear kernel on a strided source plane (row stride `ss`, plane stride `ps`), so a crop
 * box is just an offset pointer. */
static void resize_strided(const float *src, int C, size_t ps, size_t ss, int H, int W, float *dst,
                           int OH, int OW)
{
    ImgLinearTap *th = dd_malloc(sizeof *th * (size_t)OH);
    ImgLinearTap *tw = dd_malloc(sizeof *tw * (size_t)OW);
    img_linear_taps(H, OH, th);
    img_linear_taps(W, OW, tw);
    for (int c = 0; c < C; c++) {
        const float *p = src + (size_t)c * ps;
        float *q = dst + (size_t)c * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            const float *r0 = p + (size_t)th[oy].i0 * ss, *r1 = p + (size_t)th[oy].i1 * ss;
            const float h0 = th[oy].l0, h1 = th[oy].l1;
            for (int ox = 0; ox < OW; ox++) {
                const ImgLinearTap t = tw[ox];
                const float top = fmaf(r0[t.i0], t.l0, r0[t.i1] * t.l1);
                const float bot = fmaf(r1[t.i0], t.l0, r1[t.i1] * t.l1);
                q[(size_t)oy * OW + ox] = fmaf(top, h0, bot * h1);
            }
        }
    }
    free(th);
    free(tw);
}

void img_resize_bilinear(const float *src, int C, int H, int W, float *dst, int OH, int OW)
{
    assert(C >= 1 && H >= 1 && W >= 1 && OH >= 1 && OW >= 1);
    resize_strided(src, C, (size_t)H * W, (size_t)W, H, W, dst, OH, OW);
}

void img_crop_resize(const float *src, int C, int H, int W, int top, int left, int h, int w,
                     float *dst, int OH, int OW)
{
    assert(top >= 0 && left >= 0 && h >= 1 && w >= 1 && top + h <= H && left + w <= W);
    resize_strided(src + (size_t)top * W + left, C, (size_t)H * W, (size_t)W, h, w, dst, OH, OW);
}

/* Antialiased taps of one dimension: output o reads in[xmin[o] .. xmin[o]+xsize[o]-1] with the
 * weights wt[o*ksize ..]. Mirrors _compute_indices_weights_aa: `center`, `support` and `invscale`
 * are floats computed through double expressions, the filter argument goes through double. */
typedef struct {
    int ksize;
    int *xmin, *xsize;
    float *wt;
} AaTaps;

static float aa_filter(float x)
{
    if (x < 0.0f) x = -x;
    if (x < 1.0f) return (float)(1.0 - (double)x);
    return 0.0f;
}

static void aa_taps_init(AaTaps *a, int in, int out)
{
    const float scale = (float)in / (float)out;
    const float support = scale >= 1.0f ? (float)(1.0 * (double)scale) : 1.0f;
    const float invscale = scale >= 1.0f ? (float)(1.0 / (double)scale) : 1.0f;
    a->ksize = (int)ceilf(support) * 2 + 1;
    a->xmin = dd_malloc(sizeof *a->xmin * (size_t)out);
    a->xsize = dd_malloc(sizeof *a->xsize * (size_t)out);
    a->wt = dd_calloc((size_t)out * a->ksize, sizeof *a->wt);
    for (int o = 0; o < out; o++) {
        const float center = (float)((double)scale * ((double)o + 0.5));
        int64_t xmin = (int64_t)((double)(center - support) + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)((double)(center + support) + 0.5);
        if (xmax > in) xmax = in;
        const int n = (int)(xmax - xmin);
        float *w = a->wt + (size_t)o * a->ksize, total = 0.0f;
        for (int j = 0; j < n; j++) {
            const float d = (float)(j + xmin) - center;
            w[j] = aa_filter((float)(((double)d + 0.5) * (double)invscale));
            total += w[j];
        }
        if (total != 0.0f)
            for (int j = 0; j < n; j++) w[j] /= total;
        a->xmin[o] = (int)xmin;
        a->xsize[o] = n;
    }
}

static void aa_taps_free(AaTaps *a)
{
    free(a->xmin);
    free(a->xsize);
    free(a->wt);
}

/* The antialiased kernel on a strided source plane (row stride `ss`, plane stride `ps`), so that a
 * crop box is an offset pointer, as the bilinear kernel's resize_strided. */
static void resize_aa_strided(const float *src, int C, size_t ps, size_t ss, int H, int W, float *dst, int OH,
                              int OW)
{
    AaTaps tw, th;
    aa_taps_init(&tw, W, OW);
    aa_taps_init(&th, H, OH);
    /* Pass 1: along W, [C,H,W] -> tmp [C,H,OW]. */
    float *tmp = dd_malloc(sizeof *tmp * (size_t)C * H * OW);
    for (size_t row = 0; row < (size_t)C * H; row++) {
        const float *p = src + row / (size_t)H * ps + row % (size_t)H * ss;
        float *q = tmp + row * OW;
        for (int o = 0; o < OW; o++) {
            const float *x = p + tw.xmin[o], *w = tw.wt + (size_t)o * tw.ksize;
            float v = x[0] * w[0];
            for (int j = 1; j < tw.xsize[o]; j++) v = fmaf(x[j], w[j], v);
            q[o] = v;
        }
    }
    /* Pass 2: along H, tmp [C,H,OW] -> dst [C,OH,OW]. */
    for (int c = 0; c < C; c++) {
        const float *p = tmp + (size_t)c * H * OW;
        float *q = dst + (size_t)c * OH * OW;
        for (int o = 0; o < OH; o++) {
            const float *w = th.wt + (size_t)o * th.ksize;
            const float *x = p + (size_t)th.xmin[o] * OW;
            float *out = q + (size_t)o * OW;
            for (int i = 0; i < OW; i++) out[i] = x[i] * w[0];
            for (int j = 1; j < th.xsize[o]; j++) {
                const float *xj = x + (size_t)j * OW;
                for (int i = 0; i < OW; i++) out[i] = fmaf(xj[i], w[j], out[i]);
            }
        }
    }
    free(tmp);
    aa_taps_free(&tw);
    aa_taps_free(&th);
}

void img_resize_bilinear_aa(const float *src, int C, int H, int W, float *dst, int OH, int OW)
{
    assert(C >= 1 && H >= 1 && W >= 1 && OH >= 1 && OW >= 1);
    resize_aa_strided(src, C, (size_t)H * W, (size_t)W, H, W, dst, OH, OW);
}

void img_crop_resize_aa(const float *src, int C, int H, int W, int top, int left, int h, int w,
                        float *dst, int OH, int OW)
{
    assert(top >= 0 && left >= 0 && h >= 1 && w >= 1 && top + h <= H && left + w <= W);
    resize_aa_strided(src + (size_t)top * W + left, C, (size_t)H * W, (size_t)W, h, w, dst, OH, OW);
}

/* src resized (antialiased) to rh x rw, then its centred OH x OW (offsets round((size - out) / 2),
 * half to even, as torchvision's center_crop) into dst. */
static void resize_center_crop(const float *src, int C, int H, int W, int rh, int rw, float *dst, int OH,
                               int OW)
{
    assert(OH <= rh && OW <= rw);
    float *rs = dd_malloc((size_t)C * rh * rw * sizeof *rs);
    img_resize_bilinear_aa(src, C, H, W, rs, rh, rw);
    int top = (int)nearbyint((rh - OH) / 2.0), left = (int)nearbyint((rw - OW) / 2.0);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < OH; y++)
            memcpy(dst + ((size_t)c * OH + y) * OW, rs + ((size_t)c * rh + y + top) * rw + left,
                   (size_t)OW * sizeof(float));
    free(rs);
}

void img_resize_short_center_crop(const float *src, int C, int H, int W, int s, int crop, float *dst)
{
    if (H <= W) resize_center_crop(src, C, H, W, s, (int)((double)s * W / H), dst, crop, crop);
    else resize_center_crop(src, C, H, W, (int)((double)s * H / W), s, dst, crop, crop);
}

void img_resize_cover_crop(const float *src, int C, int H, int W, float *dst, int OH, int OW)
{
    double s = (double)OH / H > (double)OW / W ? (double)OH / H : (double)OW / W;
    int rh = (int)lround(H * s), rw = (int)lround(W * s);
    resize_center_crop(src, C, H, W, rh < OH ? OH : rh, rw < OW ? OW : rw, dst, OH, OW);
}

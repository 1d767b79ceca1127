/* test_conv_paths.c - the CPU backend's convolution kernels against a plain double-precision
 * convolution, on shapes that exercise what the small finite-difference cases of test_nn_grad do
 * not: the direct kernel's chunking (images innermost, partial 16-column tiles, short last chunk),
 * several K blocks of 32 input channels and M blocks of 96 output channels, 5x5 and 7x7 taps,
 * dilation; Winograd's, F(2x2) and F(4x4) (3x3: odd planes and their part tiles, 8-image lanes
 * with a short last one, several column blocks, bias); each shape on five paths: the default
 * (Winograd where it chooses to, else the direct kernel), DD_CPU_CONV=winograd2 and winograd4
 * (Winograd with 2x2 or 4x4 tiles for every 3x3 'same' shape), DD_CPU_CONV=direct (the direct
 * kernel for every shape it takes) and DD_CPU_CONV=gemm (the flat and im2col paths); forward,
 * backward data (which adds into dx) and backward filter (Winograd's too), with 1
 * and 3 threads bit-identical, and with Winograd's chunks of 8 images (DD_CPU_WINO_CHUNK=8:
 * several chunks, a short last one) the forward and dx bit-identical too; depthwise shapes on conv_dw.c's flat runs (AVX2 here,
 * AVX-512 in test_conv_avx512: any stride; by default, and where the direct kernel would not be
 * faster), conv_dwp.c's in-register planes (3x3 on 4x4 to 16x16, stride 1 or 2; AVX2, with AVX-512 from 8x8), the
 * direct kernel's depthwise path and conv.c's plane kernels (DD_CPU_CONV=gemm).
 * Tolerance per element: 3e-5 of the sum of |terms| (float accumulation over K = cin k^2 terms
 * stays far below that, F(4x4)'s worst here 5e-6; one wrong or missing term is about 1/K of it).
 */
#include "check.h"
#include "libcommon/base/base.h"
#include "libcommon/nn/backend.h"
#include "libcommon/nn/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int n, cin, cout, h, w, k, pad, dil, stride, bias, groups; /* groups 0: 1 */
} Shape;

static const Shape SHAPES[] = {
    {5, 40, 100, 8, 8, 3, 1, 1, 1, 0},    /* 2 K blocks, 2 M blocks, partial tiles */
    {7, 3, 10, 7, 7, 3, 1, 1, 1, 1},      /* odd plane, bias, co not a multiple of 6 */
    {9, 3, 10, 16, 14, 3, 1, 1, 1, 1},    /* an RGB stem: one image per chunk (few terms) */
    {4, 1, 16, 28, 28, 3, 1, 1, 1, 1},    /* convnet3's grayscale stem: thin (conv.c), im2col a chunk an image */
    {3, 1, 6, 11, 9, 5, 2, 1, 1, 0},      /* thin 5x5 (25 taps) */
    {5, 3, 8, 9, 9, 3, 1, 1, 2, 1},       /* thin, stride 2 */
    {37, 8, 12, 8, 8, 3, 1, 1, 1, 0},     /* many images: a short last chunk */
    {3, 16, 20, 20, 19, 3, 1, 1, 1, 1},   /* one image per chunk, ragged rows */
    {4, 6, 8, 9, 11, 5, 2, 1, 1, 0},      /* 5x5 */
    {2, 5, 7, 10, 10, 3, 2, 2, 1, 1},     /* dilation 2 */
    {2, 4, 9, 12, 12, 7, 3, 1, 1, 0},     /* 7x7 */
    {3, 33, 97, 4, 4, 3, 1, 1, 1, 0},     /* 4x4 planes, K and M one past a block */
    {11, 70, 18, 7, 5, 3, 1, 1, 1, 1},    /* Winograd: odd plane, 2 K blocks, 2 chunks, bias */
    {2, 17, 130, 6, 6, 3, 1, 1, 1, 0},    /* Winograd: 2 M blocks, one short chunk */
    {3, 100, 100, 5, 4, 3, 1, 1, 1, 1},   /* Winograd by default: 2 K blocks, 2 M blocks, bias */
    {20, 16, 16, 2, 3, 3, 1, 1, 1, 0},    /* Winograd: a 1x2-tile plane, 20 images in one chunk */
    {3, 8, 12, 9, 9, 3, 1, 1, 2, 0},      /* stride 2: not direct (im2col both ways) */
    {4, 40, 20, 9, 9, 3, 1, 1, 2, 1},     /* stride 2, AVX-512 GEMM: 2 K blocks, a short panel, column tail */
    {2, 7, 300, 8, 8, 5, 2, 1, 2, 1},     /* stride 2, 5x5: backward 2 K blocks, K = 175 (short panel) */
    {2, 20, 300, 17, 17, 1, 0, 1, 1, 1},  /* 1x1, large plane: GEMM on x itself; 2 K blocks backward */
    {9, 280, 14, 5, 5, 1, 0, 1, 1, 0},    /* 1x1, small planes side by side: 2 K blocks, short panel */
    {20, 40, 24, 4, 4, 1, 0, 1, 1, 1},    /* 1x1, 4x4 planes: every 32-column tile spans two images */
    {6, 24, 30, 8, 8, 1, 0, 1, 1, 1},     /* 1x1, 8x8 planes: whole tiles within an image */
    {12, 30, 20, 2, 2, 1, 0, 1, 1, 1},    /* 1x1, 2x2 planes side by side: runs of 4 floats */
    {10, 20, 26, 3, 5, 1, 0, 1, 1, 0},    /* ... of 8 + 4 + 3 */
    {10, 20, 26, 2, 3, 1, 0, 1, 1, 0},    /* ... of 4 + 2 */
    {40, 16, 13, 12, 12, 3, 1, 1, 1, 0},  /* flat weight gradient: 4 parts of two chunks, short panel */
    {5, 40, 40, 8, 8, 3, 1, 1, 1, 0, 40}, /* depthwise: 3 channel blocks, partial tiles */
    {3, 7, 7, 13, 11, 5, 2, 1, 1, 1, 7},  /* depthwise 5x5, bias, ragged rows */
    {37, 6, 6, 4, 4, 3, 1, 1, 1, 0, 6},   /* depthwise, many images */
    {20, 20, 20, 4, 4, 3, 1, 1, 1, 1, 20}, /* depthwise 4x4 (AVX2: conv_dwp.c), bias, 2 channel blocks */
    {3, 17, 17, 8, 8, 3, 1, 1, 1, 1, 17},  /* depthwise 8x8 (AVX2: conv_dwp.c), bias, a 1-channel block */
    {5, 18, 18, 16, 16, 3, 1, 1, 1, 1, 18}, /* ... 16x16, bias, 2 channel blocks */
    {17, 3, 3, 16, 16, 3, 1, 1, 1, 0, 3},   /* ... 16x16, 2 image blocks */
    {18, 20, 20, 8, 8, 3, 1, 1, 2, 1, 20}, /* ... stride 2 from 8x8, bias, 2 image and channel blocks */
    {3, 5, 5, 16, 16, 3, 1, 1, 2, 1, 5},   /* ... stride 2 from 16x16, bias */
    {2, 5, 5, 9, 9, 3, 2, 2, 1, 0, 5},    /* depthwise, dilation 2 */
    {3, 6, 6, 9, 9, 3, 1, 1, 2, 0, 6},    /* depthwise stride 2: not direct */
    /* conv_dw.c's polyphase runs (AVX2 or AVX-512; the plane kernels with DD_CPU_CONV=gemm) */
    {4, 12, 12, 16, 16, 3, 1, 1, 2, 0, 12}, /* stride 2, even plane: 8 x 9 runs, several vectors */
    {3, 5, 5, 9, 7, 3, 1, 1, 2, 1, 5},      /* stride 2, odd and ragged, bias */
    {3, 4, 4, 4, 4, 3, 1, 1, 2, 0, 4},      /* 4x4 -> 2x2: one vector */
    {2, 4, 4, 12, 12, 5, 2, 1, 2, 1, 4},    /* 5x5 stride 2 */
    {2, 3, 3, 11, 10, 3, 2, 2, 2, 0, 3},    /* stride 2, dilation 2 */
    {2, 3, 3, 10, 11, 3, 0, 1, 3, 1, 3},    /* stride 3, no padding */
    {2, 3, 3, 5, 5, 3, 3, 1, 2, 0, 3},      /* padding 3: whole rows of padding */
    {2, 6, 6, 7, 7, 3, 0, 1, 1, 1, 6},      /* stride 1, no padding: not direct */
    {2, 70, 70, 24, 24, 3, 1, 1, 2, 0, 70}, /* stride 2, 12 x 13 runs: the four-vector loop */
    {2, 3, 3, 9, 9, 3, 0, 1, 2, 0, 3},      /* stride 2, no padding */
    {1, 2, 2, 6, 70, 3, 1, 1, 2, 1, 2},     /* stride 2, rows of 70: three runs of 32 pixels */
    {2, 3, 3, 13, 13, 5, 2, 1, 4, 0, 3},    /* stride 4: 16 phases, some without taps */
    /* conv_dwc.c's 16-channel vectors (4 to 64 outputs, dx from 5; auto and winograd* paths; AVX2:
     * the weight gradient, and forward and dx at stride 2) */
    {3, 40, 40, 4, 4, 3, 1, 1, 1, 1, 40},   /* 4x4: 3 channel blocks, the last of 8, bias */
    {2, 20, 20, 7, 7, 3, 1, 1, 2, 0, 20},   /* stride 2, 7x7 -> 4x4, a block of 4 */
    {2, 17, 17, 4, 4, 5, 2, 1, 1, 1, 17},   /* 5x5 taps, pad 2, a block of 1 */
    {5, 16, 16, 3, 3, 3, 1, 1, 1, 0, 16},   /* 3x3 plane, one whole block */
    {3, 9, 9, 6, 7, 3, 0, 1, 2, 1, 9},      /* stride 2, no padding, 2x3 outputs */
    {2, 5, 5, 3, 3, 3, 3, 1, 2, 0, 5},      /* padding 3: outputs on padding alone */
    {2, 20, 20, 16, 16, 3, 1, 1, 2, 1, 20}, /* stride 2 from 16 px: the largest block, 18 x 18 */
    {2, 18, 18, 7, 7, 3, 1, 1, 1, 0, 18},   /* 49 pixels: a short transpose, a short group of 1 */
    {2, 17, 17, 8, 8, 5, 2, 1, 1, 1, 17},   /* 5x5 on 8x8: 25 taps (weight gradient 8+8+8+1) */
    {2, 33, 33, 6, 10, 3, 1, 1, 1, 0, 33},  /* 6 x 10: 60 outputs, 3 blocks */
    {2, 6, 6, 5, 5, 3, 2, 1, 1, 1, 6},      /* stride 1, padding 2: 7 x 7 outputs past the input */
    {3, 5, 5, 9, 9, 5, 1, 1, 2, 0, 5},      /* stride 2, 5x5, padding 1 */
    /* grouped, not depthwise (ResNeXt's, ShuffleNet v1's): im2col and a GEMM per group */
    {3, 64, 64, 9, 9, 3, 1, 1, 1, 1, 2},    /* 2 groups of 32, bias */
    {2, 12, 8, 7, 6, 3, 1, 1, 1, 0, 4},     /* 4 groups of 3 -> 2 */
    {4, 30, 24, 8, 8, 1, 0, 1, 1, 1, 3},    /* 1x1 in 3 groups, 8x8 planes */
    {2, 8, 12, 9, 9, 3, 1, 1, 2, 1, 2},     /* stride 2 */
    {2, 6, 6, 7, 7, 5, 2, 1, 1, 0, 3},      /* 5x5, 3 groups of 2 */
    /* ... images side by side: forward and dx a kernel GEMM per group (conv.c; AVX2: 1x1 on 4x4, 8x8) */
    {9, 40, 26, 4, 4, 1, 0, 1, 1, 1, 2},    /* 1x1, 4x4 planes, 13 rows a group (a short panel) */
    {6, 24, 36, 9, 9, 3, 1, 1, 2, 1, 3},    /* stride 2, 5x5 outputs: im2col */
    {2, 600, 14, 17, 17, 1, 0, 1, 1, 0, 2}, /* 1x1, one image a GEMM (OpenBLAS), 300 terms */
    {3, 40, 40, 2, 2, 3, 1, 1, 1, 1, 40},   /* 2x2: forward and weight gradient here, dx on conv_dw.c */
};
enum { NSHAPES = sizeof SHAPES / sizeof SHAPES[0] };

static void ref_conv(const Shape *c, int oh, int ow, const float *x, const float *w, const float *b,
                     double *y, double *yabs)
{
    for (int n = 0; n < c->n; n++)
        for (int o = 0; o < c->cout; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double acc = b ? b[o] : 0, aa = b ? fabs(b[o]) : 0;
                    int g = c->groups ? c->groups : 1, kc = c->cin / g, c0 = o / (c->cout / g) * kc;
                    for (int ch = 0; ch < kc; ch++)
                        for (int ki = 0; ki < c->k; ki++)
                            for (int kj = 0; kj < c->k; kj++) {
                                int ih = i * c->stride - c->pad + ki * c->dil;
                                int iw = j * c->stride - c->pad + kj * c->dil;
                                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                                double t = (double)x[((size_t)(n * c->cin + c0 + ch) * c->h + ih) * c->w + iw] *
                                           w[((size_t)(o * kc + ch) * c->k + ki) * c->k + kj];
                                acc += t, aa += fabs(t);
                            }
                    size_t at = ((size_t)(n * c->cout + o) * oh + i) * ow + j;
                    y[at] = acc, yabs[at] = aa;
                }
}

static void ref_bwd(const Shape *c, int oh, int ow, const float *x, const float *w, const float *dy,
                    double *dx, double *dxa, double *dw, double *dwa)
{
    for (int n = 0; n < c->n; n++)
        for (int o = 0; o < c->cout; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double g = dy[((size_t)(n * c->cout + o) * oh + i) * ow + j];
                    int ng = c->groups ? c->groups : 1, kc = c->cin / ng, c0 = o / (c->cout / ng) * kc;
                    for (int ch = 0; ch < kc; ch++)
                        for (int ki = 0; ki < c->k; ki++)
                            for (int kj = 0; kj < c->k; kj++) {
                                int ih = i * c->stride - c->pad + ki * c->dil;
                                int iw = j * c->stride - c->pad + kj * c->dil;
                                if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) continue;
                                size_t xi = ((size_t)(n * c->cin + c0 + ch) * c->h + ih) * c->w + iw;
                                size_t wi = ((size_t)(o * kc + ch) * c->k + ki) * c->k + kj;
                                dx[xi] += g * w[wi], dxa[xi] += fabs(g * w[wi]);
                                dw[wi] += g * x[xi], dwa[wi] += fabs(g * x[xi]);
                            }
                }
}

static float *rand_buf(DdRng *r, size_t n)
{
    float *p = dd_malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)dd_rng_uniform(r) * 2 - 1;
    return p;
}

/* max over elements of |got - ref| / (sum |terms|), the elements' bound being 3e-5 */
static double worst(const float *got, const double *ref, const double *abs_, size_t n, double base)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (ref[i] + base)) / (abs_[i] + fabs(base) + 1e-30);
        if (!(e <= m)) m = e; /* NaN sticks */
    }
    return m;
}

static void run_shape(const Shape *c, const char *path, int threads, float **out3)
{
    DdRng r;
    dd_rng_init(&r, 7, (uint64_t)(c - SHAPES), 0);
    int oh = (c->h + 2 * c->pad - c->dil * (c->k - 1) - 1) / c->stride + 1;
    int ow = (c->w + 2 * c->pad - c->dil * (c->k - 1) - 1) / c->stride + 1;
    size_t nx = (size_t)c->n * c->cin * c->h * c->w, ny = (size_t)c->n * c->cout * oh * ow;
    int groups = c->groups ? c->groups : 1;
    size_t nw = (size_t)c->cout * (c->cin / groups) * c->k * c->k;
    float *x = rand_buf(&r, nx), *w = rand_buf(&r, nw), *b = c->bias ? rand_buf(&r, c->cout) : NULL;
    float *dy = rand_buf(&r, ny), *dx0 = rand_buf(&r, nx), *dw0 = rand_buf(&r, nw);
    float *y = dd_malloc(ny * sizeof *y), *dx = dd_malloc(nx * sizeof *dx), *dw = dd_malloc(nw * sizeof *dw);
    memcpy(dx, dx0, nx * sizeof *dx);
    memcpy(dw, dw0, nw * sizeof *dw);
    NnConvShape s = {c->n, c->cin, c->h, c->w, c->cout, c->k, c->k, oh, ow, c->stride, c->pad, c->dil, groups};
    NnBackend *be = nn_cpu_backend_new(threads);
    be->conv2d_fwd(be, &s, x, w, b, y);
    be->conv2d_bwd_data(be, &s, dy, w, dx);
    be->conv2d_bwd_filter(be, &s, dy, x, dw, NULL);
    be->destroy(be);

    double *ry = dd_calloc(ny, sizeof *ry), *rya = dd_calloc(ny, sizeof *rya);
    double *rdx = dd_calloc(nx, sizeof *rdx), *rdxa = dd_calloc(nx, sizeof *rdxa);
    double *rdw = dd_calloc(nw, sizeof *rdw), *rdwa = dd_calloc(nw, sizeof *rdwa);
    ref_conv(c, oh, ow, x, w, b, ry, rya);
    ref_bwd(c, oh, ow, x, w, dy, rdx, rdxa, rdw, rdwa);
    double ey = worst(y, ry, rya, ny, 0), edx = 0, edw = 0;
    for (size_t i = 0; i < nx; i++) { /* dx was dx0 before: bwd_data adds */
        double e = fabs((double)dx[i] - dx0[i] - rdx[i]) / (rdxa[i] + fabs(dx0[i]) + 1e-30);
        if (!(e <= edx)) edx = e;
    }
    for (size_t i = 0; i < nw; i++) {
        double e = fabs((double)dw[i] - dw0[i] - rdw[i]) / (rdwa[i] + fabs(dw0[i]) + 1e-30);
        if (!(e <= edw)) edw = e;
    }
    printf("%-6s j%d n%d %dx%dx%d -> %d k%d p%d d%d s%d: worst |err|/sum|terms| y %.2g dx %.2g dw %.2g\n",
           path, threads, c->n, c->cin, c->h, c->w, c->cout, c->k, c->pad, c->dil, c->stride, ey, edx, edw);
    CHECK_MSG(ey <= 3e-5 && edx <= 3e-5 && edw <= 3e-5, "shape %d on the %s path", (int)(c - SHAPES), path);
    out3[0] = y, out3[1] = dx, out3[2] = dw;
    free(x), free(w), free(b), free(dy), free(dx0), free(dw0);
    free(ry), free(rya), free(rdx), free(rdxa), free(rdw), free(rdwa);
}

/* linear over several LIN_COLS blocks (in and out past a multiple of 512), against float64;
 * threads 1 vs 3 bit-identical; dx added to. n = 5: OpenBLAS; n = 13 (two 6-row panels and a
 * short one) takes the AVX-512 kernel where the CPU has it, its columns past 32-column tiles */
static void linear_blocks(int n)
{
    int in = 1100, out = 1030;
    DdRng r;
    dd_rng_init(&r, 7, 99, 0);
    float *x = rand_buf(&r, (size_t)n * in), *w = rand_buf(&r, (size_t)out * in), *b = rand_buf(&r, out);
    float *dy = rand_buf(&r, (size_t)n * out), *dx0 = rand_buf(&r, (size_t)n * in), *res[2][3];
    for (int t = 0; t < 2; t++) {
        NnBackend *be = nn_cpu_backend_new(t ? 3 : 1);
        float *y = dd_malloc((size_t)n * out * sizeof *y), *dx = dd_malloc((size_t)n * in * sizeof *dx);
        memcpy(dx, dx0, (size_t)n * in * sizeof *dx);
        float *dw = dd_calloc((size_t)out * in, sizeof *dw);
        be->linear_fwd(be, n, in, out, x, w, b, y);
        be->linear_bwd(be, n, in, out, dy, x, w, dx, dw, NULL);
        be->destroy(be);
        res[t][0] = y, res[t][1] = dx, res[t][2] = dw;
    }
    double ey = 0, edx = 0, edw = 0;
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double acc = b[o], aa = fabs(b[o]);
            for (int k = 0; k < in; k++) acc += (double)x[(size_t)i * in + k] * w[(size_t)o * in + k], aa += fabs((double)x[(size_t)i * in + k] * w[(size_t)o * in + k]);
            double e = fabs(res[0][0][(size_t)i * out + o] - acc) / aa;
            if (!(e <= ey)) ey = e;
        }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < in; k++) {
            double acc = dx0[(size_t)i * in + k], aa = fabs(acc);
            for (int o = 0; o < out; o++) acc += (double)dy[(size_t)i * out + o] * w[(size_t)o * in + k], aa += fabs((double)dy[(size_t)i * out + o] * w[(size_t)o * in + k]);
            double e = fabs(res[0][1][(size_t)i * in + k] - acc) / aa;
            if (!(e <= edx)) edx = e;
        }
    for (int o = 0; o < out; o += 7)
        for (int k = 0; k < in; k += 3) {
            double acc = 0, aa = 0;
            for (int i = 0; i < n; i++) acc += (double)dy[(size_t)i * out + o] * x[(size_t)i * in + k], aa += fabs((double)dy[(size_t)i * out + o] * x[(size_t)i * in + k]);
            double e = fabs(res[0][2][(size_t)o * in + k] - acc) / (aa + 1e-30);
            if (!(e <= edw)) edw = e;
        }
    printf("linear n%d %d -> %d: worst |err|/sum|terms| y %.2g dx %.2g dw %.2g\n", n, in, out, ey, edx, edw);
    CHECK_MSG(ey <= 3e-5 && edx <= 3e-5 && edw <= 3e-5, "linear blocks");
    size_t sz[3] = {(size_t)n * out, (size_t)n * in, (size_t)out * in};
    for (int k = 0; k < 3; k++) {
        CHECK_MSG(!memcmp(res[0][k], res[1][k], sz[k] * sizeof(float)), "linear: threads 1 vs 3 differ (output %d)", k);
        free(res[0][k]), free(res[1][k]);
    }
    free(x), free(w), free(b), free(dy), free(dx0);
}

/* Built twice: as test_conv_paths with DD_CPU_ISA=avx2 (the AVX2 kernels, on every x86 CPU), and
 * as test_conv_avx512 (CONV_PATHS_AVX512: the AVX-512 two-tile kernel, for the direct and
 * Winograd paths, whose results must also equal the AVX2 kernels' bit for bit, and as the GEMM of
 * the im2col convolutions and linear, against float64 alone; SKIP on CPUs without AVX-512F). */
int main(void)
{
#ifdef CONV_PATHS_AVX512
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) CHECK_SKIP("this CPU has no AVX-512F: cpu_dc_kernel2 untested");
#else
    CHECK_SKIP("not x86: no AVX-512 kernel");
#endif
    unsetenv("DD_CPU_ISA");
#else
    setenv("DD_CPU_ISA", "avx2", 1);
#endif
    linear_blocks(5);
    linear_blocks(13);
#ifdef CONV_PATHS_AVX512
    int nsame[3] = {0, 0, 0}; /* runs checked bit for bit against AVX2, per output */
#endif
    const char *paths[] = {"auto", "winograd2", "winograd4", "direct", "gemm"};
    for (int p = 0; p < 5; p++) {
        if (p) setenv("DD_CPU_CONV", paths[p], 1);
        else unsetenv("DD_CPU_CONV");
        for (int i = 0; i < NSHAPES; i++) {
            const Shape *c = &SHAPES[i];
            float *a[3], *b[3], *q[3];
            run_shape(c, paths[p], 1, a);
            run_shape(c, paths[p], 3, b);
            /* Winograd in chunks of 8 images: the same forward and dx sums; the weight gradient
             * groups its sums by chunk, so only float64 checks it */
            setenv("DD_CPU_WINO_CHUNK", "8", 1);
            run_shape(c, paths[p], 3, q);
            unsetenv("DD_CPU_WINO_CHUNK");
            int oh = (c->h + 2 * c->pad - c->dil * (c->k - 1) - 1) / c->stride + 1;
            int ow = (c->w + 2 * c->pad - c->dil * (c->k - 1) - 1) / c->stride + 1;
            size_t n[3] = {(size_t)c->n * c->cout * oh * ow, (size_t)c->n * c->cin * c->h * c->w,
                           (size_t)c->cout * (c->cin / (c->groups ? c->groups : 1)) * c->k * c->k};
#ifdef CONV_PATHS_AVX512
            float *r[3];
            setenv("DD_CPU_ISA", "avx2", 1);
            run_shape(c, paths[p], 1, r);
            NnConvShape cs = {c->n, c->cin, c->h, c->w, c->cout, c->k, c->k, oh, ow, c->stride, c->pad, c->dil,
                              c->groups ? c->groups : 1};
            /* passes conv_dwc.c takes with AVX2: with AVX-512 too (its conditions are wider) */
            int dwc[3] = {cpu_dwc_ok(&cs), cpu_dwc_data_ok(&cs), cpu_dwc_filter_ok(&cs)};
            int wino_w = cpu_wino_filter_ok(&cs); /* Winograd's weight gradient: the kernel GEMM either way */
            /* conv_dwp.c, first in conv.c's order, is one code for both ISAs (with AVX-512 on 8x8
             * and 16x16 planes only): the same bits where both take it; where AVX2's alone does
             * (4x4), its weight gradient sums in another order than conv_dwc.c's: no claim */
            int dwp2[3] = {cpu_dwp_ok(&cs), cpu_dwp_data_ok(&cs), cpu_dwp_ok(&cs)};
            unsetenv("DD_CPU_ISA");
            int dwp5[3] = {cpu_dwp_ok(&cs), cpu_dwp_data_ok(&cs), cpu_dwp_ok(&cs)};
#endif
            for (int t = 0; t < 3; t++) {
                CHECK_MSG(!memcmp(a[t], b[t], n[t] * sizeof(float)), "shape %d %s: threads 1 vs 3 differ (output %d)",
                          i, paths[p], t);
                CHECK_MSG(t == 2 || !memcmp(a[t], q[t], n[t] * sizeof(float)),
                          "shape %d %s: chunks of 8 images differ (output %d)", i, paths[p], t);
#ifdef CONV_PATHS_AVX512
                /* the direct and Winograd kernels sum as the AVX2 ones (Winograd's weight gradient
                 * too), and conv_dwc.c's halves as its AVX-512 vectors (where both take it); the
                 * im2col GEMMs (OpenBLAS with AVX2), the other weight gradients (OpenBLAS) and
                 * conv_dw.c's runs (the depthwise shapes but on DD_CPU_CONV=direct and conv_dwc.c's)
                 * are checked against float64 */
                int dw = c->groups > 1 && c->groups == c->cin && c->groups == c->cout;
                int kernel = p != 4 && c->stride == 1 && c->pad > 0 && (c->k - 1) * c->dil == 2 * c->pad &&
                             (c->groups <= 1 || (dw && p == 3));
                int same = dwp2[t] && dwp5[t] ? 1
                           : dwp2[t] || dwp5[t] ? 0
                           : t == 2 ? dwc[2] || (kernel && wino_w)
                                    : kernel || dwc[t];
                nsame[t] += same;
                CHECK_MSG(!same || !memcmp(a[t], r[t], n[t] * sizeof(float)),
                          "shape %d %s: AVX-512 vs AVX2 differ (output %d)", i, paths[p], t);
                free(r[t]);
#endif
                free(a[t]), free(b[t]), free(q[t]);
            }
        }
    }
#ifdef CONV_PATHS_AVX512
    printf("AVX-512 equal to AVX2 bit for bit: %d forward, %d backward-data, %d weight-gradient runs\n", nsame[0],
           nsame[1], nsame[2]);
    CHECK(nsame[0] > 0 && nsame[1] > 0 && nsame[2] > 0);
    return check_done("test_conv_avx512");
#else
    return check_done("test_conv_paths");
#endif
}

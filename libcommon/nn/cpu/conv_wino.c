/* conv_wino.c - 3x3 stride-1 'same' convolutions (one group) by Winograd's F(2x2, 3x3) or
 * F(4x4, 3x3): forward and backward-data, the two passes of recover's step, and (at the end of
 * this file) the weight gradient, training's third. An m x m tile of
 * outputs (m = 2 or 4) is
 *     Y = A^T [ (G g G^T) .* (B^T d B) ] A
 * of its (m + 2) x (m + 2) input patch d and the 3x3 kernel g, so the 9 m^2 multiply-adds per
 * channel pair and tile become (m + 2)^2: 2.25x fewer with 2x2 tiles, 4x fewer with 4x4 ones,
 * which is the whole gain over conv_direct.c's kernel (a GEMM's speed). F(2x2)'s transforms are
 * additions except G's halves, and its error stays within a few ulp of the sum of |terms|.
 * F(4x4)'s points 0, +-1, +-2 scale terms by up to 25 in B and 8 in A, and its error is some ten
 * times F(2x2)'s (still some 1e-6 of the sum of |terms|; tests/unit/test_conv_paths.c checks both
 * against float64 on the shapes they take). 4x4 tiles are the default where they compute fewer
 * products than 2x2 ones: not on 5x5 and 6x6 planes (144 products per channel pair either way),
 * nor on planes narrower than 3 pixels.
 *
 * Layout. Images go in chunks of nb (a multiple of 8, so 8 images are one vector), as many as
 * keep V and M of a chunk within WG_BUDGET floats (24 MiB). Per chunk:
 *   1. input transform, items = input channels: a channel's planes of the chunk are packed into a
 *      zero-padded plane with the images innermost, P[y][x][i], and each tile's a^2 transformed
 *      values (a = m + 2), 8 images at a time, go to V[xi][c][col], col = tile * nimg + image (a^2
 *      matrices of ci rows of the columns rounded up to 16, zero past the real ones; nimg the
 *      chunk's images: a batch of 10 has 10 columns a tile, not 16, so small batches - recover's
 *      class batches, small students - pay no GEMM for missing images. A vector of a tile's last
 *      8 images spills its lanes past nimg, zero, into the next tile's columns, which are
 *      written after it);
 *   2. products, items = (xi, block of WG_CB columns): M[xi] = U[xi] V[xi] by conv_direct.c's
 *      6x16 kernel, or its 6x32 AVX-512 one on two tiles (a 1-tap convolution is a GEMM), each
 *      output's sum over all ci in one call, into the chunk's M[xi][k][col];
 *   3. output transform, items = output channels: each tile's Y = A^T M A into the NCHW output
 *      (= or + bias forward, += backward).
 * Whole chunks per xi, not blocks of columns through all xi at once: deep layers' planes are
 * small and their kernels many (ResNet-18's 512 x 512 at 4x4: U is 36 MiB, V and M 8 MiB each
 * for 100 images), so U, read once per item, must be read as few times as can be; M's trip
 * through memory costs less (measured: recover's step on resnet18m 3x32x32, 1.2x).
 * U[xi][k][c] = (G g_kc G^T)[xi] is computed once per call, packed as the kernel's A. Backward data
 * is the same convolution of dy with the kernel flipped and transposed. Every output is summed in
 * one fixed order (channels ascending within each xi, then the fixed output transform), so results
 * depend neither on the thread count nor on the chunking.
 */
#include "libcommon/nn/cpu/cpu.h"

#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define WG_AVX2 __attribute__((target("avx2,fma")))

#define WG_MR 6            /* the kernel's rows and columns (conv_direct.c's DC_MR, DC_NR) */
#define WG_NR 16
/* By default, where 1/ci + 1/co > 1/WG_MIN_CH: the direct path. With F(4x4) tiles (36 products for
 * 16 outputs against 144) Winograd took 64x64-channel layers 1.4-1.8x faster than the direct kernel
 * in all three passes, DenseNet's 128-to-32 1.1-3x, 32x32 channels at par (bench of 32-56 px planes,
 * batch 100, 2 threads, an AVX-512 Xeon); F(2x2) alone had 64 channels at par, hence the old 48. */
#define WG_MIN_CH 16
#define WG_CB 128          /* columns per product item */
#define WG_BUDGET ((int64_t)6 << 20) /* floats of V and M per chunk, but for 8 images at least */
#define WG_MAXA 6          /* the largest transformed tile's side */

static int wg_tiles(int h, int w, int m) { return ((h + m - 1) / m) * ((w + m - 1) / m); }

/* The tile (2 or 4) for shape s: DD_CPU_CONV=winograd2 or winograd4 forces it; otherwise 4x4
 * where its products, 36 per tile, are fewer than 2x2 tiles' 16 per tile. */
static int wg_tile(const NnConvShape *s)
{
    const char *env = getenv("DD_CPU_CONV");
    if (env && strcmp(env, "winograd2") == 0) return 2;
    if (env && strcmp(env, "winograd4") == 0) return 4;
    return 36 * wg_tiles(s->h, s->w, 4) < 16 * wg_tiles(s->h, s->w, 2) ? 4 : 2;
}

/* The transforms cost per input and per output channel, the products per pair of them: with
 * few channels (ResNet-18's 64 at 32x32, DenseNet's 32 new ones) the direct kernel is as fast or
 * faster, measured. Odd planes compute whole tiles; the default asks for at most 6 products per
 * output: a 3x3 plane (AlexNet's at 64 px) is one 4x4 tile, 36 products per pair for 9 outputs
 * against the direct kernel's 81 (its recover step measured the same either way; with 2x2 tiles,
 * 64 products, the transforms ate the gain); 5x5 planes take 5.8. DD_CPU_CONV=winograd
 * (winograd2, winograd4: and the tile) takes every 3x3 'same' shape (the tests use it). */
int cpu_wino_ok(const NnConvShape *s)
{
    const char *env = getenv("DD_CPU_CONV"); /* read per call: tests switch paths; every forward passes here */
    if (env && !*env) env = NULL;               /* DD_CPU_CONV= is unset */
    if (env && strcmp(env, "winograd") && strcmp(env, "winograd2") && strcmp(env, "winograd4") &&
        strcmp(env, "direct") && strcmp(env, "gemm"))
        dd_die(DD_EXIT_USAGE, "DD_CPU_CONV=%s: want winograd, winograd2, winograd4, direct or gemm (or unset)", env);
    int forced = env && strncmp(env, "winograd", 8) == 0;
    if (!cpu_avx2() || (env && !forced)) return 0;
    if (s->groups != 1 || s->stride != 1 || s->kh != 3 || s->kw != 3 || s->pad != 1 || s->dil != 1 ||
        s->oh != s->h || s->ow != s->w)
        return 0;
    int m = wg_tile(s), a = m + 2;
    int64_t prod = (int64_t)a * a * wg_tiles(s->h, s->w, m);
    return forced || ((int64_t)s->cin * s->cout >= (int64_t)WG_MIN_CH * (s->cin + s->cout) &&
                      prod <= 6 * (int64_t)s->h * s->w);
}

typedef struct {
    int n, ci, co, h, w;
    int m, a, nxi;         /* output tile m x m, input tile a x a (a = m + 2), nxi = a^2 */
    int th, tw, ntile;     /* tiles per image: rows, columns, all */
    int nb, nchunks;       /* images per chunk (a multiple of 8; the last chunk may be short) */
    int hp, wp;            /* padded plane of P: m th + 2 by m tw + 2 */
    size_t ncolp;          /* the most columns of V a chunk has: ntile nb rounded up to WG_NR */
    size_t vld;            /* floats from one row of V (and of M) to the next: ncolp, or 16 more */
    int mpad;              /* output channels rounded up to WG_MR */
} Wino;

typedef struct {
    const Wino *g;
    int backward;
    const float *x, *w, *b; /* x: the input (dy backward) [n][ci][h][w]; w: the conv's weights */
    float *y;               /* forward: y =; backward: dx += */
    float *u, *v, *m;       /* U packed as the kernel's A [xi][row/6][c][6]; V and M of a chunk */
    const float *dy;        /* the weight gradient's: dy, and dw (+=) */
    float *dw;
    int chunk;
    int nimg;     /* the chunk's images: V's and M's columns are tile * nimg + image */
    size_t ncolc; /* the chunk's columns, ntile nimg, rounded up to WG_NR (zero past the real ones) */
    int ncbc;     /* its blocks of WG_CB columns */
    int wide; /* cpu_dc_kernel2 (AVX-512) for pairs of tiles */
    NnBackend *be;
} WinoJob;

static Wino wg_geom(const NnConvShape *s, int backward)
{
    Wino g;
    g.n = s->n, g.h = s->h, g.w = s->w;
    g.ci = backward ? s->cout : s->cin;
    g.co = backward ? s->cin : s->cout;
    g.m = wg_tile(s), g.a = g.m + 2, g.nxi = g.a * g.a;
    g.th = (g.h + g.m - 1) / g.m, g.tw = (g.w + g.m - 1) / g.m, g.ntile = g.th * g.tw;
    /* nb: as many images as V and M of WG_BUDGET floats hold (8 at least), then chunks evened
     * out (100 images with room for 64: 2 chunks of 56 and 44, not 64 and 36) */
    g.mpad = (g.co + WG_MR - 1) / WG_MR * WG_MR;
    int64_t groups = WG_BUDGET / ((int64_t)g.nxi * (g.ci + g.mpad) * g.ntile * 8); /* of 8 images */
    int n8 = (g.n + 7) / 8 * 8, want = groups < 1 ? 8 : groups * 8 < n8 ? (int)groups * 8 : n8;
    const char *env = getenv("DD_CPU_WINO_CHUNK"); /* images per chunk (tests: many chunks) */
    if (env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end || v < 1 || v > 1 << 20)
            dd_die(DD_EXIT_USAGE, "DD_CPU_WINO_CHUNK=%s: not a count of images (1 to 2^20)", env);
        want = (int)(v + 7) / 8 * 8;
    }
    g.nchunks = (n8 + want - 1) / want;
    g.nb = ((g.n + g.nchunks - 1) / g.nchunks + 7) / 8 * 8;
    g.nchunks = (g.n + g.nb - 1) / g.nb;
    g.hp = g.m * g.th + 2, g.wp = g.m * g.tw + 2;
    g.ncolp = ((size_t)g.ntile * g.nb + WG_NR - 1) / WG_NR * WG_NR;
    /* an odd number of 64-byte lines between rows, so the kernel's ci rows of a tile spread over
     * all of L1's sets (2048 columns apart, 64 rows would share 8 sets and thrash) */
    g.vld = g.ncolp / WG_NR % 2 ? g.ncolp : g.ncolp + WG_NR;
    return g;
}

/* ---- U: the kernels transformed, G g G^T ----
 * F(2x2): G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 * F(4x4): G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1] */

/* G of 3 taps k (ks floats apart) -> a values t (ts apart), for the WG_MR rows of a panel at once
 * (r: the row, innermost, so the loops vectorise) */
__attribute__((always_inline)) static inline void wg_gt(int a, const float *k, int ks, float *t, int ts)
{
    const float h = 0.5f, s6 = 1.0f / 6, s12 = 1.0f / 12, s24 = 1.0f / 24;
    const float *k0 = k, *k1 = k + ks, *k2 = k + 2 * ks;
    if (a == 4)
        for (int r = 0; r < WG_MR; r++) {
            t[r] = k0[r];
            t[ts + r] = h * (k0[r] + k1[r] + k2[r]);
            t[2 * ts + r] = h * (k0[r] - k1[r] + k2[r]);
            t[3 * ts + r] = k2[r];
        }
    else
        for (int r = 0; r < WG_MR; r++) {
            t[r] = 0.25f * k0[r];
            t[ts + r] = -s6 * (k0[r] + k1[r] + k2[r]);
            t[2 * ts + r] = -s6 * (k0[r] - k1[r] + k2[r]);
            t[3 * ts + r] = s24 * k0[r] + s12 * k1[r] + s6 * k2[r];
            t[4 * ts + r] = s24 * k0[r] - s12 * k1[r] + s6 * k2[r];
            t[5 * ts + r] = k2[r];
        }
}

#define WG_FC 32 /* channels per block of the filter transform */

/* Channels [c0, c0 + nc) of the 6-row panel at r0 (nr rows real, the rest zero) into every U[xi],
 * through buf [xi][WG_FC][6] (so U is written in runs of nc 6-float groups, not 36 scattered
 * 6-float pieces per channel): k[tap][r] the 3x3 kernels of the panel's rows (the row innermost);
 * t = G k [i][tap column][r]; u = t G^T [i][l][r] = U[xi = i a + l] of the rows. a is a constant
 * where this is inlined, so the loops over rows unroll and vectorise. */
__attribute__((always_inline)) static inline void wg_filter_block(const WinoJob *j, int a, int r0,
                                                                  int nr, int c0, int nc,
                                                                  float *panel, float *buf)
{
    const Wino *g = j->g;
    size_t xistride = (size_t)g->mpad * g->ci;
    for (int c = c0; c < c0 + nc; c++) {
        float k[9][WG_MR] = {{0}}, t[WG_MAXA][3][WG_MR], u[WG_MAXA * WG_MAXA][WG_MR];
        for (int r = 0; r < nr; r++) {
            int row = r0 + r;
            if (!j->backward) { /* w [co][ci][3][3] */
                const float *src = j->w + ((size_t)row * g->ci + c) * 9;
                for (int q = 0; q < 9; q++) k[q][r] = src[q];
            } else { /* w [ci = cout][co = cin][3][3], flipped */
                const float *src = j->w + ((size_t)c * g->co + row) * 9;
                for (int q = 0; q < 9; q++) k[q][r] = src[8 - q];
            }
        }
        for (int q = 0; q < 3; q++) wg_gt(a, k[q], 3 * WG_MR, t[0][q], 3 * WG_MR); /* G g */
        for (int i = 0; i < a; i++) wg_gt(a, t[i][0], WG_MR, u[i * a], WG_MR);    /* (G g) G^T */
        for (int xi = 0; xi < a * a; xi++)
            memcpy(buf + ((size_t)xi * WG_FC + (c - c0)) * WG_MR, u[xi], sizeof u[xi]);
    }
    for (int xi = 0; xi < a * a; xi++)
        memcpy(panel + xi * xistride + (size_t)c0 * WG_MR, buf + (size_t)xi * WG_FC * WG_MR,
               (size_t)nc * WG_MR * sizeof(float));
}

/* Items: 6-row panels; panel r0/6 of every U[xi] (rows past co are zero). */
static void wg_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    const WinoJob *j = arg;
    const Wino *g = j->g;
    float *buf = cpu_scratch(j->be, tid, (size_t)WG_MAXA * WG_MAXA * WG_FC * WG_MR);
    for (int64_t it = b; it < e; it++) {
        int r0 = (int)it * WG_MR, nr = g->co - r0 < WG_MR ? g->co - r0 : WG_MR;
        float *panel = j->u + (size_t)r0 * g->ci;
        for (int c0 = 0; c0 < g->ci; c0 += WG_FC) {
            int nc = g->ci - c0 < WG_FC ? g->ci - c0 : WG_FC;
            if (g->a == 6) wg_filter_block(j, 6, r0, nr, c0, nc, panel, buf);
            else wg_filter_block(j, 4, r0, nr, c0, nc, panel, buf);
        }
    }
}

/* ---- V: B^T d B, 8 images at a time ----
 * F(2x2): B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 * F(4x4): B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *                0 4 0 -5 0 1] */

/* Channel c (of nch) of the chunk's images of src -> the plane pl [hp][wp][nb] at row and column
 * off (1: the input, padded; 0: the weight gradient's dy), zero elsewhere (cpu_interleave). */
WG_AVX2 static void wg_pack_plane(const WinoJob *j, const float *src0, int nch, int c, int off,
                                  float *pl)
{
    const Wino *g = j->g;
    size_t hw = (size_t)g->h * g->w, nb = (size_t)g->nb;
    int n0 = j->chunk * g->nb, nimg = g->n - n0 < g->nb ? g->n - n0 : g->nb;
    memset(pl, 0, (size_t)g->hp * g->wp * nb * sizeof(float));
    cpu_interleave(src0 + ((size_t)n0 * nch + c) * hw, (size_t)nch * hw, nimg, g->h, g->w, nb,
                   pl + ((size_t)off * g->wp + off) * nb, (size_t)g->wp * nb);
}

WG_AVX2 static void wg_input_tiles2(const Wino *g, int nimg, const float *pl, float *v, size_t xistride)
{
    size_t rowf = (size_t)g->wp * g->nb;
    for (int ty = 0; ty < g->th; ty++)
        for (int tx = 0; tx < g->tw; tx++) {
            const float *d0 = pl + (size_t)(2 * ty) * rowf + (size_t)(2 * tx) * g->nb;
            size_t col = ((size_t)ty * g->tw + tx) * nimg;
            for (int l = 0; l < nimg; l += 8) {
                __m256 d[4][4], t[4][4];
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++)
                        d[r][q] = _mm256_loadu_ps(d0 + r * rowf + (size_t)q * g->nb + l);
                for (int q = 0; q < 4; q++) { /* B^T d */
                    t[0][q] = _mm256_sub_ps(d[0][q], d[2][q]);
                    t[1][q] = _mm256_add_ps(d[1][q], d[2][q]);
                    t[2][q] = _mm256_sub_ps(d[2][q], d[1][q]);
                    t[3][q] = _mm256_sub_ps(d[1][q], d[3][q]);
                }
                float *o = v + col + l;
                for (int r = 0; r < 4; r++) { /* (B^T d) B */
                    _mm256_storeu_ps(o + (size_t)(r * 4 + 0) * xistride, _mm256_sub_ps(t[r][0], t[r][2]));
                    _mm256_storeu_ps(o + (size_t)(r * 4 + 1) * xistride, _mm256_add_ps(t[r][1], t[r][2]));
                    _mm256_storeu_ps(o + (size_t)(r * 4 + 2) * xistride, _mm256_sub_ps(t[r][2], t[r][1]));
                    _mm256_storeu_ps(o + (size_t)(r * 4 + 3) * xistride, _mm256_sub_ps(t[r][1], t[r][3]));
                }
            }
        }
}

/* B^T of 6 vectors d (st apart) into t (tt apart): with a = d4 - 4 d2, b = d3 - 4 d1,
 * c = d4 - d2, e = 2 (d3 - d1): 4 d0 - 5 d2 + d4, a + b, a - b, c + e, c - e, 4 d1 - 5 d3 + d5 */
WG_AVX2 static inline void wg_bt4(const __m256 *d, int st, __m256 *t, int tt)
{
    const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f);
    __m256 a = _mm256_fnmadd_ps(four, d[2 * st], d[4 * st]);
    __m256 b = _mm256_fnmadd_ps(four, d[1 * st], d[3 * st]);
    __m256 c = _mm256_sub_ps(d[4 * st], d[2 * st]);
    __m256 e = _mm256_sub_ps(d[3 * st], d[1 * st]);
    e = _mm256_add_ps(e, e);
    t[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2 * st], d[4 * st]));
    t[tt] = _mm256_add_ps(a, b);
    t[2 * tt] = _mm256_sub_ps(a, b);
    t[3 * tt] = _mm256_add_ps(c, e);
    t[4 * tt] = _mm256_sub_ps(c, e);
    t[5 * tt] = _mm256_fmadd_ps(four, d[1 * st], _mm256_fnmadd_ps(five, d[3 * st], d[5 * st]));
}

WG_AVX2 static void wg_input_tiles4(const Wino *g, int nimg, const float *pl, float *v, size_t xistride)
{
    size_t rowf = (size_t)g->wp * g->nb;
    for (int ty = 0; ty < g->th; ty++)
        for (int tx = 0; tx < g->tw; tx++) {
            const float *d0 = pl + (size_t)(4 * ty) * rowf + (size_t)(4 * tx) * g->nb;
            size_t col = ((size_t)ty * g->tw + tx) * nimg;
            for (int l = 0; l < nimg; l += 8) {
                __m256 d[6][6], t[6][6], s[6];
                for (int r = 0; r < 6; r++)
                    for (int q = 0; q < 6; q++)
                        d[r][q] = _mm256_loadu_ps(d0 + r * rowf + (size_t)q * g->nb + l);
                for (int q = 0; q < 6; q++) wg_bt4(&d[0][q], 6, &t[0][q], 6); /* B^T d, per column */
                float *o = v + col + l;
                for (int r = 0; r < 6; r++) { /* (B^T d) B, per row */
                    wg_bt4(t[r], 1, s, 1);
                    for (int q = 0; q < 6; q++) _mm256_storeu_ps(o + (size_t)(r * 6 + q) * xistride, s[q]);
                }
            }
        }
}

/* Items: input channels of the chunk. Rows of V are vld apart; xistride = ci vld. */
static void wg_input_task(void *arg, int64_t b, int64_t e, int tid)
{
    const WinoJob *j = arg;
    const Wino *g = j->g;
    size_t xistride = (size_t)g->ci * g->vld, ncols = (size_t)g->ntile * j->nimg;
    float *pl = cpu_scratch(j->be, tid, (size_t)g->hp * g->wp * g->nb);
    for (int64_t c = b; c < e; c++) {
        float *v = j->v + (size_t)c * g->vld;
        wg_pack_plane(j, j->x, g->ci, (int)c, 1, pl);
        if (g->m == 4) wg_input_tiles4(g, j->nimg, pl, v, xistride);
        else wg_input_tiles2(g, j->nimg, pl, v, xistride);
        if (ncols < j->ncolc)
            for (int xi = 0; xi < g->nxi; xi++)
                memset(v + xi * xistride + ncols, 0, (j->ncolc - ncols) * sizeof(float));
    }
}

/* ---- M = U V per xi, then Y = A^T M A ----
 * F(2x2): A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4x4): A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */

/* A^T of 6 vectors m (st apart) into o (ot apart): with p = m1 + m2, q = m1 - m2, r = m3 + m4,
 * s = m3 - m4: m0 + p + r, q + 2 s, p + 4 r, q + 8 s + m5 */
WG_AVX2 static inline void wg_at4(const __m256 *m, int st, __m256 *o, int ot)
{
    __m256 p = _mm256_add_ps(m[st], m[2 * st]), q = _mm256_sub_ps(m[st], m[2 * st]);
    __m256 r = _mm256_add_ps(m[3 * st], m[4 * st]), s = _mm256_sub_ps(m[3 * st], m[4 * st]);
    o[0] = _mm256_add_ps(_mm256_add_ps(m[0], p), r);
    o[ot] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), s, q);
    o[2 * ot] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), r, p);
    o[3 * ot] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), s, q), m[5 * st]);
}

/* One 8-lane column group of a row of M (m: its xi = 0 value's, xs floats from one xi to the
 * next) -> the tile's m x m outputs out[m m] (8 images each), bias added forward. */
WG_AVX2 static void wg_out_tile(const Wino *g, const float *m, size_t xs, float bias, int backward,
                                __m256 out[16])
{
    if (g->m == 2) {
        __m256 s[2][4];
        for (int q = 0; q < 4; q++) { /* A^T M */
            __m256 m0v = _mm256_loadu_ps(m + (size_t)(0 * 4 + q) * xs);
            __m256 m1v = _mm256_loadu_ps(m + (size_t)(1 * 4 + q) * xs);
            __m256 m2v = _mm256_loadu_ps(m + (size_t)(2 * 4 + q) * xs);
            __m256 m3v = _mm256_loadu_ps(m + (size_t)(3 * 4 + q) * xs);
            s[0][q] = _mm256_add_ps(_mm256_add_ps(m0v, m1v), m2v);
            s[1][q] = _mm256_sub_ps(_mm256_sub_ps(m1v, m2v), m3v);
        }
        for (int a = 0; a < 2; a++) { /* (A^T M) A */
            out[a * 2 + 0] = _mm256_add_ps(_mm256_add_ps(s[a][0], s[a][1]), s[a][2]);
            out[a * 2 + 1] = _mm256_sub_ps(_mm256_sub_ps(s[a][1], s[a][2]), s[a][3]);
        }
    } else {
        __m256 mv[6][6], s[4][6];
        for (int r = 0; r < 6; r++)
            for (int q = 0; q < 6; q++) mv[r][q] = _mm256_loadu_ps(m + (size_t)(r * 6 + q) * xs);
        for (int q = 0; q < 6; q++) wg_at4(&mv[0][q], 6, &s[0][q], 6); /* A^T M, per column */
        for (int a = 0; a < 4; a++) wg_at4(s[a], 1, out + a * 4, 1);   /* (A^T M) A, per row */
    }
    if (!backward)
        for (int q = 0; q < g->m * g->m; q++) out[q] = _mm256_add_ps(out[q], _mm256_set1_ps(bias));
}

/* A whole 4x4 tile of nl images (dst: the first's, istride floats from one image to the next,
 * rows w apart): out[q] transposed, image l's rows 0-1 in out[l], rows 2-3 in out[8 + l] */
WG_AVX2 static void wg_store4(__m256 out[16], float *dst, size_t w, size_t istride, int nl, int backward)
{
    cpu_transpose8(out);
    cpu_transpose8(out + 8);
    for (int l = 0; l < nl; l++, dst += istride) {
        __m128 r[4] = {_mm256_castps256_ps128(out[l]), _mm256_extractf128_ps(out[l], 1),
                       _mm256_castps256_ps128(out[8 + l]), _mm256_extractf128_ps(out[8 + l], 1)};
        for (int a = 0; a < 4; a++) {
            float *p = dst + (size_t)a * w;
            _mm_storeu_ps(p, backward ? _mm_add_ps(_mm_loadu_ps(p), r[a]) : r[a]);
        }
    }
}

/* Row k of the chunk's M (the output channel k of its images) -> the output, 8 images of one tile
 * at a time. */
WG_AVX2 static void wg_output(const WinoJob *j, int k)
{
    const Wino *g = j->g;
    size_t hw = (size_t)g->h * g->w, xs = (size_t)g->mpad * g->vld;
    size_t istride = (size_t)g->co * hw, w = (size_t)g->w;
    int n0 = j->chunk * g->nb, tm = g->m, nimg = j->nimg;
    const float *mk = j->m + (size_t)k * g->vld;
    float bias = j->b ? j->b[k] : 0.0f;
    for (size_t tile = 0; tile < (size_t)g->ntile; tile++)
        for (int i0 = 0; i0 < nimg; i0 += 8) {
            size_t col = tile * nimg + i0; /* 8 lanes: images i0.. of the tile (then the next's) */
            __m256 out[16];
            float o[16][8];
            wg_out_tile(g, mk + col, xs, bias, j->backward, out);
            int ty = (int)tile / g->tw, tx = (int)tile % g->tw, nl = nimg - i0 < 8 ? nimg - i0 : 8;
            int ny = g->h - tm * ty < tm ? g->h - tm * ty : tm, nx = g->w - tm * tx < tm ? g->w - tm * tx : tm;
            float *dst = j->y + ((size_t)(n0 + i0) * g->co + k) * hw + (size_t)(tm * ty) * w + tm * tx;
            if (tm == 4 && ny == 4 && nx == 4) {
                wg_store4(out, dst, w, istride, nl, j->backward);
                continue;
            }
            for (int q = 0; q < tm * tm; q++) _mm256_storeu_ps(o[q], out[q]);
            if (tm == 2 && ny == 2 && nx == 2 && !j->backward) {
                for (int l = 0; l < nl; l++, dst += istride)
                    dst[0] = o[0][l], dst[1] = o[1][l], dst[w] = o[2][l], dst[w + 1] = o[3][l];
            } else if (tm == 2 && ny == 2 && nx == 2) {
                for (int l = 0; l < nl; l++, dst += istride)
                    dst[0] += o[0][l], dst[1] += o[1][l], dst[w] += o[2][l], dst[w + 1] += o[3][l];
            } else { /* tiles past the last row or column */
                for (int l = 0; l < nl; l++, dst += istride)
                    for (int a = 0; a < ny; a++) {
                        float *p = dst + (size_t)a * w;
                        if (j->backward)
                            for (int bq = 0; bq < nx; bq++) p[bq] += o[a * tm + bq][l];
                        else
                            for (int bq = 0; bq < nx; bq++) p[bq] = o[a * tm + bq][l];
                    }
            }
        }
}

/* Items: (xi, block of WG_CB columns) of the chunk: M[xi] = U[xi] V[xi] of the block's columns;
 * U[xi] is streamed once per item (once per call where the chunk's columns fit in one block, as
 * small planes' do: U is then the larger operand), the block's columns of V[xi] (ci by WG_CB, at
 * most a few hundred KiB) stay in L2 for all its 6-row panels, and each output sums all ci terms
 * in one kernel call. */
static void wg_gemm_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const WinoJob *j = arg;
    const Wino *g = j->g;
    const ptrdiff_t off0[1] = {0};
    int step = j->wide ? 2 * WG_NR : WG_NR;
    for (int64_t it = b; it < e; it++) {
        int xi = (int)(it / j->ncbc), cb = (int)(it % j->ncbc);
        size_t c0 = (size_t)cb * WG_CB;
        int ncol = j->ncolc - c0 < WG_CB ? (int)(j->ncolc - c0) : WG_CB;
        const float *uxb = j->u + (size_t)xi * g->mpad * g->ci;
        const float *vxb = j->v + (size_t)xi * g->ci * g->vld + c0;
        float *mxb = j->m + (size_t)xi * g->mpad * g->vld + c0;
        for (int r = 0; r < g->mpad; r += WG_MR) {
            const float *a = uxb + (size_t)r * g->ci;
            for (int t = 0; t < ncol; t += step) {
                int pair = step > WG_NR && t + WG_NR < ncol; /* two tiles (AVX-512) */
                const float *p = vxb + t;
                float *c = mxb + (size_t)r * g->vld + t;
                if (pair) cpu_dc_kernel2(g->ci, 1, a, p, p + WG_NR, g->vld, off0, c, g->vld, 0);
                else cpu_dc_kernel(g->ci, 1, a, p, g->vld, off0, c, g->vld, 0);
            }
        }
    }
}

/* Items: output channels of the chunk: Y = A^T M A of every tile. */
static void wg_output_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    for (int64_t k = b; k < e; k++) wg_output(arg, (int)k);
}

/* The chunk's images and columns (V's and M's compact layout: no columns of missing images) */
static void wg_chunk(const Wino *g, WinoJob *j)
{
    int n0 = j->chunk * g->nb;
    j->nimg = g->n - n0 < g->nb ? g->n - n0 : g->nb;
    j->ncolc = ((size_t)g->ntile * j->nimg + WG_NR - 1) / WG_NR * WG_NR;
    j->ncbc = (int)((j->ncolc + WG_CB - 1) / WG_CB);
}

static void wg_run(NnBackend *be, const NnConvShape *s, int backward, const float *x,
                   const float *w, const float *b, float *y)
{
    Wino g = wg_geom(s, backward);
    size_t usize = (size_t)g.nxi * g.mpad * g.ci, vsize = (size_t)g.nxi * g.ci * g.vld;
    size_t msize = (size_t)g.nxi * g.mpad * g.vld;
    float *u = cpu_shared(be, usize + vsize + msize);
    WinoJob j = {.g = &g, .backward = backward, .x = x, .w = w, .b = b, .y = y,
                 .u = u, .v = u + usize, .m = u + usize + vsize, .wide = cpu_avx512(), .be = be};
    cpu_for(be, g.mpad / WG_MR, 4, wg_filter_task, &j);
    for (j.chunk = 0; j.chunk < g.nchunks; j.chunk++) {
        wg_chunk(&g, &j);
        cpu_for(be, g.ci, 2, wg_input_task, &j);
        cpu_for(be, (int64_t)g.nxi * j.ncbc, 1, wg_gemm_task, &j);
        cpu_for(be, g.co, 4, wg_output_task, &j);
    }
}

void cpu_wino_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                  const float *b, float *y)
{
    wg_run(be, s, 0, x, w, b, y);
}

void cpu_wino_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                       float *dx)
{
    wg_run(be, s, 1, dy, w, NULL, dx);
}

/* ---- the weight gradient (on cpu_kg_cols's GEMM, AVX-512 or AVX2; measured with AVX2 alone:
 * bench_ops, one thread, AMD EPYC, ResNet-18's 3x3 at 64x32 to 512x4 in 0.41 to 0.59 of the time
 * of conv_flat.c's OpenBLAS GEMMs; training steps resnet18m +22%, convnet3 +21%, densenet121m +10%)
 * ----
 * dw[k][c] += the sum over images and tiles of G^T [ (A dy A^T) .* (B^T d B) ] G: the 3x3
 * correlation of each tile's input patch d with its m x m of dy, by the forward's algorithm
 * transposed (its trilinear form sum over xi of (A z)(G g)(B^T d), differentiated in g). Per chunk:
 * V as the forward's; dy's tiles transformed, Y[xi][k][col] = (A dy A^T)[xi], in the room of M;
 * per xi, W[xi] (+)= Y[xi] V[xi]^T over the chunk's columns (cpu_kg_cols: A = Y[xi]'s panels,
 * B = V[xi] transposed), W [xi][co][ci] in the room of U; at the end dw += G^T W G per kernel.
 * Each weight sums its terms in one fixed order (the chunks in turn, KG_KC columns at a time
 * within one): the thread count does not change it; the chunking (DD_CPU_WINO_CHUNK) regroups
 * the sums and so changes the rounding. */

/* A of m values y (st apart) into a values t (tt apart). F(2x2): y0, y0 + y1, y0 - y1, -y1;
 * F(4x4), with p = y0 + y2, q = y1 + y3, r = y0 + 4 y2, s = 2 (y1 + 4 y3):
 * y0, p + q, p - q, r + s, r - s, y3 */
WG_AVX2 static inline void wg_ay(int m, const __m256 *y, int st, __m256 *t, int tt)
{
    if (m == 2) {
        t[0] = y[0];
        t[tt] = _mm256_add_ps(y[0], y[st]);
        t[2 * tt] = _mm256_sub_ps(y[0], y[st]);
        t[3 * tt] = _mm256_sub_ps(_mm256_setzero_ps(), y[st]);
        return;
    }
    const __m256 four = _mm256_set1_ps(4.0f);
    __m256 p = _mm256_add_ps(y[0], y[2 * st]), q = _mm256_add_ps(y[st], y[3 * st]);
    __m256 r = _mm256_fmadd_ps(four, y[2 * st], y[0]);
    __m256 s = _mm256_fmadd_ps(four, y[3 * st], y[st]);
    s = _mm256_add_ps(s, s);
    t[0] = y[0];
    t[tt] = _mm256_add_ps(p, q);
    t[2 * tt] = _mm256_sub_ps(p, q);
    t[3 * tt] = _mm256_add_ps(r, s);
    t[4 * tt] = _mm256_sub_ps(r, s);
    t[5 * tt] = y[3 * st];
}

/* dy's channel k of the chunk, packed as pl [hp][wp][nb] from row and column 0 -> Y[xi][k][col]
 * (yk: Y[0][k], xs floats from one xi to the next), 8 images of one tile at a time. */
WG_AVX2 static void wg_dy_tiles(const Wino *g, int nimg, const float *pl, float *yk, size_t xs)
{
    size_t rowf = (size_t)g->wp * g->nb;
    int m = g->m, a = g->a;
    for (int ty = 0; ty < g->th; ty++)
        for (int tx = 0; tx < g->tw; tx++) {
            const float *d0 = pl + (size_t)(m * ty) * rowf + (size_t)(m * tx) * g->nb;
            size_t col = ((size_t)ty * g->tw + tx) * nimg;
            for (int l = 0; l < nimg; l += 8) {
                __m256 d[4][4], t[WG_MAXA][4], u[WG_MAXA];
                for (int r = 0; r < m; r++)
                    for (int q = 0; q < m; q++)
                        d[r][q] = _mm256_loadu_ps(d0 + r * rowf + (size_t)q * g->nb + l);
                for (int q = 0; q < m; q++) wg_ay(m, &d[0][q], 4, &t[0][q], 4); /* A dy, per column */
                float *o = yk + col + l;
                for (int r = 0; r < a; r++) { /* (A dy) A^T, per row */
                    wg_ay(m, t[r], 1, u, 1);
                    for (int q = 0; q < a; q++) _mm256_storeu_ps(o + (size_t)(r * a + q) * xs, u[q]);
                }
            }
        }
}

/* Items: dy's channels of the chunk. */
static void wg_dy_task(void *arg, int64_t b, int64_t e, int tid)
{
    const WinoJob *j = arg;
    const Wino *g = j->g;
    size_t xs = (size_t)g->mpad * g->vld, ncols = (size_t)g->ntile * j->nimg;
    float *pl = cpu_scratch(j->be, tid, (size_t)g->hp * g->wp * g->nb);
    for (int64_t k = b; k < e; k++) {
        float *yk = j->m + (size_t)k * g->vld;
        wg_pack_plane(j, j->dy, g->co, (int)k, 0, pl);
        wg_dy_tiles(g, j->nimg, pl, yk, xs);
        if (ncols < j->ncolc)
            for (int xi = 0; xi < g->nxi; xi++)
                memset(yk + xi * xs + ncols, 0, (j->ncolc - ncols) * sizeof(float));
    }
}

/* Items: xi: W[xi] (+)= Y[xi] V[xi]^T over the chunk's columns. */
static void wg_wgemm_task(void *arg, int64_t b, int64_t e, int tid)
{
    const WinoJob *j = arg;
    const Wino *g = j->g;
    int k = (int)((size_t)g->ntile * j->nimg); /* the GEMM's terms: the chunk's columns */
    float *a = cpu_scratch(j->be, tid, (size_t)g->mpad * k + KG_SCRATCH), *buf = a + (size_t)g->mpad * k;
    for (int64_t xi = b; xi < e; xi++) {
        const float *y = j->m + (size_t)xi * g->mpad * g->vld;
        cpu_kg_pack_a(y, g->vld, 0, g->co, k, 0, g->mpad / WG_MR, a);
        KGemm kg = {.m = g->co, .k = k, .cols = g->ci, .a = a, .b = j->v + (size_t)xi * g->ci * g->vld,
                    .ldb = g->vld, .trans = 1, .c = j->u + (size_t)xi * g->co * g->ci, .ldc = (size_t)g->ci,
                    .load = j->chunk > 0};
        cpu_kg_cols(&kg, 0, g->ci, buf);
    }
}

/* G^T of a values m (st apart) -> 3. F(2x2): m0 + (m1 + m2)/2, (m1 - m2)/2, (m1 + m2)/2 + m3;
 * F(4x4): m0/4 - (m1 + m2)/6 + (m3 + m4)/24, (m2 - m1)/6 + (m3 - m4)/12,
 * (m3 + m4 - m1 - m2)/6 + m5 */
static inline void wg_gtw(int a, const float *m, int st, float *o, int ot)
{
    if (a == 4) {
        float p = 0.5f * (m[st] + m[2 * st]);
        o[0] = m[0] + p;
        o[ot] = 0.5f * (m[st] - m[2 * st]);
        o[2 * ot] = p + m[3 * st];
        return;
    }
    float p = m[st] + m[2 * st], q = m[3 * st] + m[4 * st];
    o[0] = 0.25f * m[0] - p / 6.0f + q / 24.0f;
    o[ot] = (m[2 * st] - m[st]) / 6.0f + (m[3 * st] - m[4 * st]) / 12.0f;
    o[2 * ot] = (q - p) / 6.0f + m[5 * st];
}

/* Items: output channels k: dw[k][c] += G^T W[.][k][c] G for every c. */
static void wg_wout_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const WinoJob *j = arg;
    const Wino *g = j->g;
    size_t xs = (size_t)g->co * g->ci;
    int a = g->a;
    for (int64_t k = b; k < e; k++)
        for (int c = 0; c < g->ci; c++) {
            float mv[WG_MAXA * WG_MAXA], t[3][WG_MAXA], o[3][3];
            const float *src = j->u + (size_t)k * g->ci + c;
            for (int xi = 0; xi < g->nxi; xi++) mv[xi] = src[xi * xs];
            for (int q = 0; q < a; q++) wg_gtw(a, mv + q, a, &t[0][q], WG_MAXA); /* G^T W, per column */
            for (int r = 0; r < 3; r++) wg_gtw(a, t[r], 1, o[r], 1);            /* (G^T W) G, per row */
            float *dst = j->dw + ((size_t)k * g->ci + c) * 9;
            for (int q = 0; q < 9; q++) dst[q] += o[q / 3][q % 3];
        }
}

/* The weight gradient's products are GEMMs whose depth is the batch's tiles (images x tiles per
 * image), and its fixed costs (every channel pair's transforms back) do not shrink with the
 * batch: by default it also asks for at least WG_FILTER_MIN_K tiles. Measured (AMD EPYC, AVX2, one
 * thread, convnet3's 128 channels, GFLOP/s of the direct formulation against im2col's): at 7x7,
 * 4 tiles an image, 22 / 43 for 5 images, 39 / 49 for 10, 62 / 52 for 20, 99 / 51 for 40; at
 * 14x14 (16 tiles) Winograd from 5 images (55 / 47). The demo's students train on batches of 5. */
#define WG_FILTER_MIN_K 64
int cpu_wino_filter_ok(const NnConvShape *s)
{
    if (!cpu_wino_ok(s)) return 0;
    const char *env = getenv("DD_CPU_CONV");
    if (env && strncmp(env, "winograd", 8) == 0) return 1;
    return (int64_t)s->n * wg_tiles(s->h, s->w, wg_tile(s)) >= WG_FILTER_MIN_K;
}

void cpu_wino_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                         float *dw)
{
    Wino g = wg_geom(s, 0);
    size_t wsize = (size_t)g.nxi * g.co * g.ci, vsize = (size_t)g.nxi * g.ci * g.vld;
    size_t ysize = (size_t)g.nxi * g.mpad * g.vld;
    float *u = cpu_shared(be, wsize + vsize + ysize);
    WinoJob j = {.g = &g, .x = x, .dy = dy, .dw = dw, .u = u, .v = u + wsize, .m = u + wsize + vsize,
                 .be = be};
    for (j.chunk = 0; j.chunk < g.nchunks; j.chunk++) {
        wg_chunk(&g, &j);
        cpu_for(be, g.ci, 2, wg_input_task, &j);
        cpu_for(be, g.co, 2, wg_dy_task, &j);
        cpu_for(be, g.nxi, 1, wg_wgemm_task, &j);
    }
    cpu_for(be, g.co, 2, wg_wout_task, &j);
}

#else /* no x86 vector kernel: cpu_wino_ok is always false */

int cpu_wino_ok(const NnConvShape *s)
{
    (void)s;
    return 0;
}

void cpu_wino_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                  const float *b, float *y)
{
    (void)be, (void)s, (void)x, (void)w, (void)b, (void)y;
    dd_die(DD_EXIT_DATA, "nn: cpu: Winograd convolution without x86 vector support");
}

void cpu_wino_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                       float *dx)
{
    (void)be, (void)s, (void)dy, (void)w, (void)dx;
    dd_die(DD_EXIT_DATA, "nn: cpu: Winograd convolution without x86 vector support");
}

int cpu_wino_filter_ok(const NnConvShape *s)
{
    (void)s;
    return 0;
}

void cpu_wino_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                         float *dw)
{
    (void)be, (void)s, (void)dy, (void)x, (void)dw;
    dd_die(DD_EXIT_DATA, "nn: cpu: Winograd convolution without x86 vector support");
}

#endif

/* conv_wino.c - 3x3 stride-1 'same' convolutions (one group) by Winograd's F(2x2, 3x3): forward
 * and backward-data, the two passes of recover's step. A 2x2 tile of outputs is
 *     Y = A^T [ (G g G^T) .* (B^T d B) ] A
 * of its 4x4 input patch d and the 3x3 kernel g, so the 36 multiply-adds per channel pair and tile
 * become 16: 2.25x fewer, which is the whole gain over conv_direct.c's kernel (a GEMM's speed).
 * The transforms are additions except G's halves; the error stays within a few ulp of the sum of
 * |terms| (tests/unit/test_conv_paths.c checks it against float64 on the shapes it takes).
 *
 * Layout. Images go in chunks of nb (a multiple of 8, so 8 images are one vector). Per chunk:
 *   1. input transform, items = input channels: a channel's planes of the chunk are packed into a
 *      zero-padded plane with the images innermost, P[y][x][i], and each tile's 16 transformed
 *      values, 8 images at a time, go to V[xi][c][col], col = tile * nb + image (16 matrices of
 *      ci rows of the columns rounded up to 16, zero past the real ones);
 *   2. items = (block of WG_CB columns, block of output channels): for each xi, the product
 *      M[xi] = U[xi] V[xi] by conv_direct.c's 6x16 kernel, or its 6x32 AVX-512 one on two tiles
 *      (a 1-tap convolution is a GEMM), into an
 *      item-local buffer, then the output transform of the block's columns into the NCHW output
 *      (= or + bias forward, += backward).
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
#define WG_KC 64           /* input channels per K block */
#define WG_CB 64           /* columns per work item */
#define WG_MC 96           /* most output channels per item (a multiple of WG_MR) */
#define WG_MIN_CH 48       /* by default, where 1/ci + 1/co > 1/WG_MIN_CH: the direct path */
#define WG_COLS 256        /* columns a chunk aims for at least */

/* The transforms cost per input and per output channel, the products per pair of them: with
 * few channels (ResNet-18's 64 at 32x32, DenseNet's 32 new ones) the direct kernel is as fast or
 * faster, measured. Odd planes compute whole tiles: a 3x3 plane (AlexNet's at 64 px) is 4 tiles,
 * 64 products per pair for 9 outputs against the direct kernel's 81, which the transforms eat;
 * the default asks for at most 6 products per output (5x5 planes: 5.8). DD_CPU_CONV=winograd
 * takes every 3x3 'same' shape (the tests use it). */
int cpu_wino_ok(const NnConvShape *s)
{
    const char *env = getenv("DD_CPU_CONV"); /* read per call: tests switch paths */
    int forced = env && strcmp(env, "winograd") == 0;
    if (!cpu_avx2() || (env && !forced)) return 0;
    if (s->groups != 1 || s->stride != 1 || s->kh != 3 || s->kw != 3 || s->pad != 1 || s->dil != 1 ||
        s->oh != s->h || s->ow != s->w)
        return 0;
    int64_t tiles = (int64_t)((s->h + 1) / 2) * ((s->w + 1) / 2);
    return forced || ((int64_t)s->cin * s->cout >= (int64_t)WG_MIN_CH * (s->cin + s->cout) &&
                      16 * tiles <= 6 * (int64_t)s->h * s->w);
}

typedef struct {
    int n, ci, co, h, w;
    int th, tw, ntile;     /* tiles per image: rows, columns, all */
    int nb, nchunks;       /* images per chunk (a multiple of 8; the last chunk may be short) */
    int hp, wp;            /* padded plane of P: 2 th + 2 by 2 tw + 2 */
    size_t ncolp;          /* columns of V per chunk: ntile nb rounded up to WG_NR */
    size_t vld;            /* floats from one row of V to the next: ncolp, or 16 more */
    int mpad, nmb, mc;     /* output channels rounded up to WG_MR; blocks per column block, rows */
    int ncb;               /* column blocks per chunk */
} Wino;

typedef struct {
    const Wino *g;
    int backward;
    const float *x, *w, *b; /* x: the input (dy backward) [n][ci][h][w]; w: the conv's weights */
    float *y;               /* forward: y =; backward: dx += */
    float *u, *v;           /* U packed as the kernel's A [xi][row/6][c][6]; V of one chunk */
    int chunk;
    int wide; /* cpu_dc_kernel2 (AVX-512) for pairs of tiles */
    NnBackend *be;
} WinoJob;

static Wino wg_geom(const NnConvShape *s, int backward)
{
    Wino g;
    g.n = s->n, g.h = s->h, g.w = s->w;
    g.ci = backward ? s->cout : s->cin;
    g.co = backward ? s->cin : s->cout;
    g.th = (g.h + 1) / 2, g.tw = (g.w + 1) / 2, g.ntile = g.th * g.tw;
    /* nb: at least WG_COLS columns per chunk, then chunks evened out (100 images of 4x4: 2 of
     * 56, not 64 and 36) */
    int n8 = (g.n + 7) / 8 * 8, want = (WG_COLS + g.ntile * 8 - 1) / (g.ntile * 8) * 8;
    g.nchunks = (n8 + want - 1) / want;
    g.nb = ((g.n + g.nchunks - 1) / g.nchunks + 7) / 8 * 8;
    g.nchunks = (g.n + g.nb - 1) / g.nb;
    g.hp = 2 * g.th + 2, g.wp = 2 * g.tw + 2;
    g.ncolp = ((size_t)g.ntile * g.nb + WG_NR - 1) / WG_NR * WG_NR;
    /* an odd number of 64-byte lines between rows, so the kernel's kc rows of a tile spread over
     * all of L1's sets (2048 columns apart, 64 rows would share 8 sets and thrash) */
    g.vld = g.ncolp / WG_NR % 2 ? g.ncolp : g.ncolp + WG_NR;
    g.ncb = (int)((g.ncolp + WG_CB - 1) / WG_CB);
    g.mpad = (g.co + WG_MR - 1) / WG_MR * WG_MR;
    g.nmb = (g.mpad + WG_MC - 1) / WG_MC;
    g.mc = (g.mpad / WG_MR + g.nmb - 1) / g.nmb * WG_MR;
    g.nmb = (g.mpad + g.mc - 1) / g.mc;
    return g;
}

/* ---- U: the kernels transformed, G g G^T, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1] ---- */

static void wg_filter(const float *k, float *u) /* k [3][3] -> u [4][4] */
{
    float t[4][3];
    for (int j = 0; j < 3; j++) {
        float k0 = k[j], k1 = k[3 + j], k2 = k[6 + j];
        t[0][j] = k0;
        t[1][j] = 0.5f * (k0 + k1 + k2);
        t[2][j] = 0.5f * (k0 - k1 + k2);
        t[3][j] = k2;
    }
    for (int i = 0; i < 4; i++) {
        float k0 = t[i][0], k1 = t[i][1], k2 = t[i][2];
        u[i * 4 + 0] = k0;
        u[i * 4 + 1] = 0.5f * (k0 + k1 + k2);
        u[i * 4 + 2] = 0.5f * (k0 - k1 + k2);
        u[i * 4 + 3] = k2;
    }
}

/* Items: 6-row panels; panel r0/6 of every U[xi] (rows past co are zero), a channel's 6 rows at
 * a time: 6 contiguous floats per xi. */
static void wg_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const WinoJob *j = arg;
    const Wino *g = j->g;
    size_t xistride = (size_t)g->mpad * g->ci;
    for (int64_t it = b; it < e; it++) {
        int r0 = (int)it * WG_MR, nr = g->co - r0 < WG_MR ? g->co - r0 : WG_MR;
        float *panel = j->u + (size_t)r0 * g->ci;
        for (int c = 0; c < g->ci; c++) {
            float u[WG_MR][16], k[9];
            for (int r = 0; r < nr; r++) {
                int row = r0 + r;
                if (!j->backward) { /* w [co][ci][3][3] */
                    memcpy(k, j->w + ((size_t)row * g->ci + c) * 9, sizeof k);
                } else { /* w [ci = cout][co = cin][3][3], flipped */
                    const float *src = j->w + ((size_t)c * g->co + row) * 9;
                    for (int t = 0; t < 9; t++) k[t] = src[8 - t];
                }
                wg_filter(k, u[r]);
            }
            for (int r = nr; r < WG_MR; r++) memset(u[r], 0, sizeof u[r]);
            for (int xi = 0; xi < 16; xi++) {
                float *dst = panel + xi * xistride + (size_t)c * WG_MR;
                for (int r = 0; r < WG_MR; r++) dst[r] = u[r][xi];
            }
        }
    }
}

/* ---- V: B^T d B, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], 8 images at a time ---- */

/* Channel c of the chunk's images -> the padded plane pl [hp][wp][nb] (zero outside the data). */
static void wg_pack_plane(const WinoJob *j, int c, float *pl)
{
    const Wino *g = j->g;
    size_t hw = (size_t)g->h * g->w;
    int n0 = j->chunk * g->nb, nimg = g->n - n0 < g->nb ? g->n - n0 : g->nb;
    memset(pl, 0, (size_t)g->hp * g->wp * g->nb * sizeof(float));
    for (int i = 0; i < nimg; i++) {
        const float *src = j->x + ((size_t)(n0 + i) * g->ci + c) * hw;
        for (int y = 0; y < g->h; y++) {
            float *row = pl + ((size_t)(y + 1) * g->wp + 1) * g->nb + i;
            for (int x = 0; x < g->w; x++) row[(size_t)x * g->nb] = src[(size_t)y * g->w + x];
        }
    }
}

WG_AVX2 static void wg_input_tiles(const Wino *g, const float *pl, float *v, size_t xistride)
{
    size_t rowf = (size_t)g->wp * g->nb;
    for (int ty = 0; ty < g->th; ty++)
        for (int tx = 0; tx < g->tw; tx++) {
            const float *d0 = pl + (size_t)(2 * ty) * rowf + (size_t)(2 * tx) * g->nb;
            size_t col = ((size_t)ty * g->tw + tx) * g->nb;
            for (int l = 0; l < g->nb; l += 8) {
                __m256 d[4][4], t[4][4];
                for (int r = 0; r < 4; r++)
                    for (int q = 0; q < 4; q++) d[r][q] = _mm256_loadu_ps(d0 + r * rowf + (size_t)q * g->nb + l);
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

/* Items: input channels of the chunk. Rows of V are vld apart; xistride = ci vld. */
static void wg_input_task(void *arg, int64_t b, int64_t e, int tid)
{
    const WinoJob *j = arg;
    const Wino *g = j->g;
    size_t xistride = (size_t)g->ci * g->vld, ncols = (size_t)g->ntile * g->nb;
    float *pl = cpu_scratch(j->be, tid, (size_t)g->hp * g->wp * g->nb);
    for (int64_t c = b; c < e; c++) {
        float *v = j->v + (size_t)c * g->vld;
        wg_pack_plane(j, (int)c, pl);
        wg_input_tiles(g, pl, v, xistride);
        if (ncols < g->ncolp)
            for (int xi = 0; xi < 16; xi++)
                memset(v + xi * xistride + ncols, 0, (g->vld - ncols) * sizeof(float));
    }
}

/* ---- M = U V per xi, then Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1] ---- */

/* Rows [m0, m0 + nrows) and columns [c0, c0 + ncol) (a multiple of 8) of the item's buffer
 * mb [xi][row][WG_CB] -> the output, 8 images of one tile at a time. */
WG_AVX2 static void wg_output(const WinoJob *j, int m0, int nrows, size_t c0, int ncol,
                              const float *mb, int mrows)
{
    const Wino *g = j->g;
    size_t hw = (size_t)g->h * g->w, xs = (size_t)mrows * WG_CB;
    int n0 = j->chunk * g->nb;
    for (int r = 0; r < nrows; r++) {
        int k = m0 + r;
        float bias = j->b ? j->b[k] : 0.0f;
        for (int cc = 0; cc < ncol; cc += 8) {
            size_t col = c0 + (size_t)cc;
            int tile = (int)(col / (size_t)g->nb), i0 = (int)(col % (size_t)g->nb);
            if (tile >= g->ntile) break;
            const float *m = mb + (size_t)r * WG_CB + cc;
            __m256 s[2][4], out[4];
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
            float o[4][8];
            __m256 bv = _mm256_set1_ps(bias);
            for (int q = 0; q < 4; q++) _mm256_storeu_ps(o[q], j->backward ? out[q] : _mm256_add_ps(out[q], bv));
            int ty = tile / g->tw, tx = tile % g->tw, nl = g->n - (n0 + i0) < 8 ? g->n - (n0 + i0) : 8;
            int ny = 2 * ty + 1 < g->h ? 2 : 1, nx = 2 * tx + 1 < g->w ? 2 : 1;
            float *dst = j->y + ((size_t)(n0 + i0) * g->co + k) * hw + (size_t)(2 * ty) * g->w + 2 * tx;
            size_t istride = (size_t)g->co * hw, w = (size_t)g->w;
            if (ny == 2 && nx == 2 && !j->backward) {
                for (int l = 0; l < nl; l++, dst += istride)
                    dst[0] = o[0][l], dst[1] = o[1][l], dst[w] = o[2][l], dst[w + 1] = o[3][l];
            } else if (ny == 2 && nx == 2) {
                for (int l = 0; l < nl; l++, dst += istride)
                    dst[0] += o[0][l], dst[1] += o[1][l], dst[w] += o[2][l], dst[w + 1] += o[3][l];
            } else { /* a tile past the last row or column */
                for (int l = 0; l < nl; l++, dst += istride)
                    for (int a = 0; a < ny; a++)
                        for (int bq = 0; bq < nx; bq++) {
                            float *p = dst + (size_t)a * w + bq;
                            if (j->backward) *p += o[a * 2 + bq][l];
                            else *p = o[a * 2 + bq][l];
                        }
            }
        }
    }
}

/* Items: (column block, output-channel block) of the chunk. */
static void wg_gemm_task(void *arg, int64_t b, int64_t e, int tid)
{
    const WinoJob *j = arg;
    const Wino *g = j->g;
    float *mb = cpu_scratch(j->be, tid, (size_t)16 * g->mc * WG_CB);
    size_t vxi = (size_t)g->ci * g->vld, uxi = (size_t)g->mpad * g->ci, mxi = (size_t)g->mc * WG_CB;
    const ptrdiff_t off0[1] = {0};
    int step = j->wide ? 2 * WG_NR : WG_NR;
    for (int64_t it = b; it < e; it++) {
        int cb = (int)(it / g->nmb), m0 = (int)(it % g->nmb) * g->mc;
        int mrows = g->mpad - m0 < g->mc ? g->mpad - m0 : g->mc;
        size_t c0 = (size_t)cb * WG_CB;
        int ncol = g->ncolp - c0 < WG_CB ? (int)(g->ncolp - c0) : WG_CB;
        for (int xi = 0; xi < 16; xi++) {
            const float *uxb = j->u + xi * uxi + (size_t)m0 * g->ci, *vxb = j->v + xi * vxi + c0;
            float *mxb = mb + xi * mxi;
            for (int k0 = 0; k0 < g->ci; k0 += WG_KC) {
                int kc = g->ci - k0 < WG_KC ? g->ci - k0 : WG_KC;
                for (int t = 0; t < ncol; t += step) {
                    int pair = step > WG_NR && t + WG_NR < ncol; /* two tiles (AVX-512) */
                    /* the next tiles' rows of V: kc streams, too many to be guessed */
                    for (int nt = t + step; nt < t + 2 * step && nt < ncol; nt += WG_NR)
                        for (int ch = 0; ch < kc; ch++)
                            _mm_prefetch((const char *)(vxb + (size_t)(k0 + ch) * g->vld + nt), _MM_HINT_T0);
                    const float *p = vxb + (size_t)k0 * g->vld + t;
                    for (int r = 0; r < mrows; r += WG_MR) {
                        const float *a = uxb + (size_t)r * g->ci + (size_t)k0 * WG_MR;
                        float *c = mxb + (size_t)r * WG_CB + t;
                        if (pair) cpu_dc_kernel2(kc, 1, a, p, p + WG_NR, g->vld, off0, c, WG_CB, k0 > 0);
                        else cpu_dc_kernel(kc, 1, a, p, g->vld, off0, c, WG_CB, k0 > 0);
                    }
                }
            }
        }
        wg_output(j, m0, g->co - m0 < mrows ? g->co - m0 : mrows, c0, ncol, mb, g->mc);
    }
}

static void wg_run(NnBackend *be, const NnConvShape *s, int backward, const float *x,
                   const float *w, const float *b, float *y)
{
    Wino g = wg_geom(s, backward);
    size_t usize = (size_t)16 * g.mpad * g.ci, vsize = (size_t)16 * g.ci * g.vld;
    float *u = cpu_shared(be, usize + vsize);
    WinoJob j = {.g = &g, .backward = backward, .x = x, .w = w, .b = b, .y = y,
                 .u = u, .v = u + usize, .wide = cpu_avx512(), .be = be};
    cpu_for(be, g.mpad / WG_MR, 4, wg_filter_task, &j);
    for (j.chunk = 0; j.chunk < g.nchunks; j.chunk++) {
        cpu_for(be, g.ci, 2, wg_input_task, &j);
        cpu_for(be, (int64_t)g.ncb * g.nmb, 1, wg_gemm_task, &j);
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

#endif

/* conv_direct.c - stride-1 'same' convolutions (one group) by a register-blocked direct kernel:
 * no im2col matrix, no col2im, no GEMM call per tap, no packing of the input by a BLAS. Forward
 * and backward-data, the two passes of recover's step; AVX2 + FMA (AVX-512F where the CPU has it), chosen at run time
 * (cpu_direct_ok is false on other CPUs, and conv.c's im2col / flat paths take those shapes).
 *
 * Layout. Images go in chunks of nb. A chunk's input is stored per channel as one zero-padded
 * plane with the images innermost: P[c][y][x][i], y < h + 2 pad, x < w + 2 pad, i < nb. The
 * pixels (x, i) of one output row are then one contiguous run of w*nb columns, and tap (ki, kj) of
 * every output column reads P at one fixed offset ((ki dil - pad)(w + 2 pad) + kj dil - pad) nb.
 * Rows are cut into tiles of 16 columns; the last tile of a row may run past its real columns
 * into padding (computed, then dropped). Images go into P and out of the tiles eight at a time
 * through 8 x 8 transposes (cpu_interleave, cpu_deinterleave); a depthwise item's packing and
 * every item's stores take eight images of each of its planes in turn (an image's planes lie
 * together in NCHW). Pixel by pixel, these moves, not the FMAs, were most of the time of
 * depthwise convolutions on 4x4 planes.
 *
 * Kernel. A 6 x 16 tile of outputs (6 output channels, 16 columns) lives in 12 ymm registers:
 * per input channel and tap, 2 loads of P, 6 broadcasts of the packed weights, 12 FMA. On CPUs
 * with AVX-512F (cpu_avx512), cpu_dc_kernel2 takes two tiles at once in 12 zmm registers, the
 * same sums in the same order (bit-identical results, twice the work per instruction). The
 * weights are packed once per call as A[row/6][c][t][6] (rows past cout are zero). Loops, outer
 * to inner: K blocks of DC_KC input channels (a tile's lines of P stay in L1), tiles, 6-row
 * groups of one item's block of output channels (whose packed block stays in L2 and is reused by
 * every tile of the chunk). The tile goes to an item-local buffer between K blocks, and to NCHW
 * once at the end.
 *
 * Backward data is the same convolution of dy with the kernel flipped and transposed (stride 1,
 * symmetric padding), added to dx.
 *
 * Work items are (chunk, block of output channels) pairs, after a packing pass over (chunk,
 * channel) planes; where a chunk is one item (large planes), the item packs its chunk itself, so
 * P goes through cache rather than memory. Every output is summed in one fixed order (channels,
 * then taps, ascending), so results depend neither on the thread count nor on the chunking.
 */
#include "libcommon/nn/cpu/cpu.h"

#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DC_X86 1
#include <immintrin.h>
#endif

#define DC_MR 6
#define DC_NR 16
#ifndef DC_KC
#define DC_KC 32       /* input channels per K block */
#endif
#define DC_MC 96       /* most output channels per work item (a multiple of DC_MR) */
#define DC_MIN_MC 24   /* ... and least, when blocks are cut smaller for more items */
#define DC_MIN_ITEMS 8
#define DC_COLS 1024   /* output columns a chunk aims for */
#define DC_MAX_TAPS 49 /* up to 7x7 */
#define DC_FEW_TERMS 27 /* sums of at most this many terms (an RGB or gray 3x3 stem): nb = 1 */

/* One direct convolution: ci -> co channels over h x w planes, square kernel k, dilation dil. */
typedef struct {
    int n, ci, co, h, w, k, pad, dil;
    int nb, nchunks;      /* images per chunk (the last may be short: its plane keeps nb lanes) */
    int hp, wp;           /* padded plane */
    size_t cs;            /* floats per channel plane of P, slack included */
    int rowlen, rowtiles; /* real columns per output row (w nb); DC_NR tiles covering them */
    size_t ldc;           /* columns of an item's output buffer: h rowtiles DC_NR */
    int mpad, nmb, mc;    /* co rounded up to DC_MR; output-channel blocks per chunk, their rows */
    int ntap;
    ptrdiff_t off[DC_MAX_TAPS];
} Direct;

int cpu_direct_ok(const NnConvShape *s)
{
#ifdef DC_X86
    const char *env = getenv("DD_CPU_CONV"); /* read per call: a test switches paths */
    if (!cpu_avx2() || (env && strcmp(env, "gemm") == 0)) return 0;
    int depthwise = s->groups > 1 && s->groups == s->cin && s->groups == s->cout;
    if ((s->groups != 1 && !depthwise) || s->stride != 1 || s->pad <= 0 || s->dil < 1) return 0;
    if (s->kh != s->kw || (s->kh - 1) * s->dil != 2 * s->pad || s->kh * s->kw > DC_MAX_TAPS) return 0;
    return s->oh == s->h && s->ow == s->w;
#else
    (void)s;
    return 0;
#endif
}

#ifdef DC_X86

/* Computed columns for chunks of nb images: whole tiles per row, nb lanes in every chunk. */
static double dc_cost(int n, int h, int w, int nb)
{
    int nchunks = (n + nb - 1) / nb, tiles = (w * nb + DC_NR - 1) / DC_NR;
    return (double)nchunks * h * tiles * DC_NR + 64.0 * nchunks; /* + a chunk's fixed cost */
}

static Direct dc_geom(const NnConvShape *s, int backward)
{
    Direct d;
    d.n = s->n, d.h = s->h, d.w = s->w, d.k = s->kh, d.pad = s->pad, d.dil = s->dil;
    d.ci = backward ? s->cout : s->cin;
    d.co = backward ? s->cin : s->cout;
    /* nb: the fewest computed columns (whole tiles, full chunks) near DC_COLS per chunk */
    int want = (DC_COLS + d.h * d.w - 1) / (d.h * d.w), lo = want / 2 > 0 ? want / 2 : 1;
    int hi = 2 * want < d.n ? 2 * want : d.n;
    if (lo > hi) lo = hi;
    d.nb = lo;
    for (int nb = lo; nb <= hi; nb++) {
        double c = dc_cost(d.n, d.h, d.w, nb), best = dc_cost(d.n, d.h, d.w, d.nb);
        if (c < best || (c == best && abs(nb - want) < abs(d.nb - want))) d.nb = nb;
    }
    /* few terms per output (a gray or RGB stem): the stores, not the FMAs, are the cost, and one
     * image per chunk stores contiguous runs where interleaved images need 8x8 transposes (1.6-2x
     * faster forward, measured on 28 and 32 px planes); unless its rows waste over 1/7 of a tile */
    if (d.ci * d.k * d.k <= DC_FEW_TERMS && (d.w + DC_NR - 1) / DC_NR * DC_NR * 7 <= 8 * d.w) d.nb = 1;
    d.nchunks = (d.n + d.nb - 1) / d.nb;
    d.hp = d.h + 2 * d.pad, d.wp = d.w + 2 * d.pad;
    /* slack past the plane: a last tile's 15 extra columns at the largest tap offset */
    d.cs = ((size_t)d.hp * d.wp * d.nb + DC_NR + 15) / 16 * 16;
    if (d.cs % 1024 == 0) d.cs += 16; /* planes 4 KiB apart alias in L1 */
    d.rowlen = d.w * d.nb;
    d.rowtiles = (d.rowlen + DC_NR - 1) / DC_NR;
    d.ldc = (size_t)d.h * d.rowtiles * DC_NR;
    d.mpad = (d.co + DC_MR - 1) / DC_MR * DC_MR;
    /* output-channel blocks of equal size, at most DC_MC rows, at least DC_MIN_ITEMS items when
     * blocks can stay DC_MIN_MC rows (few chunks: 4x4 planes are one chunk) */
    d.nmb = (d.mpad + DC_MC - 1) / DC_MC;
    while (d.nchunks * d.nmb < DC_MIN_ITEMS && d.mpad / (d.nmb + 1) >= DC_MIN_MC) d.nmb++;
    d.mc = (d.mpad / DC_MR + d.nmb - 1) / d.nmb * DC_MR;
    d.nmb = (d.mpad + d.mc - 1) / d.mc;
    d.ntap = d.k * d.k;
    for (int t = 0; t < d.ntap; t++) {
        int ki = t / d.k, kj = t % d.k;
        d.off[t] = ((ptrdiff_t)(ki * d.dil - d.pad) * d.wp + (kj * d.dil - d.pad)) * d.nb;
    }
    return d;
}

/* Column of P where output row y, column j of the row reads tap offset 0. */
static size_t dc_col(const Direct *d, int y, int j)
{
    return ((size_t)(y + d->pad) * d->wp + d->pad) * d->nb + (size_t)j;
}

typedef struct {
    const Direct *d;
    int backward;
    const float *x, *w, *b; /* x: the input (x, or dy backward) [n][ci][h][w]; w: the conv's weights */
    float *y;               /* forward: y =; backward: dx += */
    float *a, *p;           /* packed weights, padded planes */
    int wide;               /* cpu_dc_kernel2 (AVX-512) for pairs of tiles */
    NnBackend *be;
} DirectJob;

/* (*y, *x) <- the next pixel of a plane w wide, row by row */
static inline void dc_next(int w, int *y, int *x)
{
    if (++*x == w) *x = 0, ++*y;
}

__attribute__((target("avx2,fma"))) void cpu_interleave(const float *src, size_t istride, int nimg, int h,
                                                       int w, size_t nb, float *dst, size_t rowf)
{
    const size_t hw = (size_t)h * w;
    int i = 0;
    for (; i + 8 <= nimg; i += 8) {
        const float *s = src + (size_t)i * istride;
        float *d = dst + i;
        int y = 0, x = 0;
        if (hw < 8) { /* (transposes of a few pixels measured slower than this) */
            for (size_t p = 0; p < hw; p++, dc_next(w, &y, &x))
                for (int l = 0; l < 8; l++) d[(size_t)y * rowf + (size_t)x * nb + l] = s[(size_t)l * istride + p];
            continue;
        }
        for (size_t p = 0; p < hw; p += 8) {
            const size_t m = hw - p < 8 ? hw - p : 8;
            const __m256i mk = cpu_mask8(m);
            __m256 v[8];
            for (int l = 0; l < 8; l++)
                v[l] = m == 8 ? _mm256_loadu_ps(s + (size_t)l * istride + p)
                              : _mm256_maskload_ps(s + (size_t)l * istride + p, mk);
            cpu_transpose8(v);
            for (size_t k = 0; k < m; k++, dc_next(w, &y, &x))
                _mm256_storeu_ps(d + (size_t)y * rowf + (size_t)x * nb, v[k]);
        }
    }
    for (; i < nimg; i++) {
        const float *s = src + (size_t)i * istride;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) dst[(size_t)y * rowf + (size_t)x * nb + i] = s[(size_t)y * w + x];
    }
}

__attribute__((target("avx2,fma"))) void cpu_deinterleave(const float *src, size_t rowf, size_t nb, int nimg,
                                                         int h, int w, const float *bias, int acc, float *dst,
                                                         size_t istride)
{
    const size_t hw = (size_t)h * w;
    const float bv = bias && !acc ? *bias : 0.0f;
    const __m256 bvec = _mm256_set1_ps(bv);
    int i = 0;
    for (; i + 8 <= nimg; i += 8) {
        const float *s = src + i;
        float *d = dst + (size_t)i * istride;
        int y = 0, x = 0;
        if (hw < 8) {
            for (size_t p = 0; p < hw; p++, dc_next(w, &y, &x))
                for (int l = 0; l < 8; l++) {
                    float v = s[(size_t)y * rowf + (size_t)x * nb + l], *o = d + (size_t)l * istride + p;
                    *o = acc ? *o + v : bias ? v + bv : v;
                }
            continue;
        }
        for (size_t p = 0; p < hw; p += 8) {
            const size_t m = hw - p < 8 ? hw - p : 8;
            __m256 v[8];
            for (size_t k = 0; k < 8; k++)
                if (k < m) v[k] = _mm256_loadu_ps(s + (size_t)y * rowf + (size_t)x * nb), dc_next(w, &y, &x);
                else v[k] = _mm256_setzero_ps();
            cpu_transpose8(v);
            for (int l = 0; l < 8; l++) {
                float *o = d + (size_t)l * istride + p;
                __m256 r = v[l];
                if (m == 8) {
                    if (acc) r = _mm256_add_ps(_mm256_loadu_ps(o), r);
                    else if (bias) r = _mm256_add_ps(r, bvec);
                    _mm256_storeu_ps(o, r);
                } else { /* (no maskstore: microcoded on AMD's Zen) */
                    float t[8];
                    _mm256_storeu_ps(t, r);
                    for (size_t k = 0; k < m; k++) o[k] = acc ? o[k] + t[k] : bias ? t[k] + bv : t[k];
                }
            }
        }
    }
    for (; i < nimg; i++) {
        float *d = dst + (size_t)i * istride;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                float v = src[(size_t)y * rowf + (size_t)x * nb + i], *o = d + (size_t)y * w + x;
                *o = acc ? *o + v : bias ? v + bv : v;
            }
    }
}

/* Plane c of chunk's P (cs floats at pl) from the input; without inter, its zeros only where
 * images are interleaved (nb > 1: dc_pack_planes puts them in). */
static void dc_pack_plane(const DirectJob *j, int chunk, int c, float *pl, int inter)
{
    const Direct *d = j->d;
    size_t hw = (size_t)d->h * d->w;
    int n0 = chunk * d->nb, nimg = d->n - n0 < d->nb ? d->n - n0 : d->nb;
    size_t rowf = (size_t)d->wp * d->nb, padf = (size_t)d->pad * d->nb;
    memset(pl, 0, (size_t)d->pad * rowf * sizeof(float));
    for (int y = 0; y < d->h; y++) {
        float *row = pl + (size_t)(y + d->pad) * rowf;
        memset(row, 0, padf * sizeof(float));
        memset(row + padf + d->rowlen, 0, padf * sizeof(float));
        float *r = row + padf;
        if (d->nb == 1) {
            memcpy(r, j->x + ((size_t)n0 * d->ci + c) * hw + (size_t)y * d->w,
                   (size_t)d->w * sizeof(float));
            continue;
        }
        if (nimg < d->nb) memset(r, 0, (size_t)d->rowlen * sizeof(float));
    }
    if (d->nb > 1 && inter)
        cpu_interleave(j->x + ((size_t)n0 * d->ci + c) * hw, (size_t)d->ci * hw, nimg, d->h, d->w, (size_t)d->nb,
                       pl + (size_t)d->pad * rowf + padf, rowf);
    float *end = pl + (size_t)(d->h + d->pad) * rowf;
    memset(end, 0, (d->cs - (size_t)(end - pl)) * sizeof(float));
}

/* Images moved per call in the packing and stores: eight of each plane in turn (an image's
 * planes lie together in NCHW), but under 8 pixels a plane's images all at once (measured
 * faster there: 960x2 0.80 against 0.95 ms). */
static int dc_img_step(size_t hw, int nimg) { return hw < 8 ? nimg : 8; }

/* The images of planes c0 .. c0 + nc - 1 of chunk's P (at pl, cs apart; nb > 1), dc_img_step
 * images of each plane in turn. */
static void dc_pack_planes(const DirectJob *j, int chunk, int c0, int nc, float *pl)
{
    const Direct *d = j->d;
    size_t hw = (size_t)d->h * d->w, rowf = (size_t)d->wp * d->nb;
    int n0 = chunk * d->nb, nimg = d->n - n0 < d->nb ? d->n - n0 : d->nb;
    const int step = dc_img_step(hw, nimg);
    for (int c = 0; c < nc; c++) dc_pack_plane(j, chunk, c0 + c, pl + (size_t)c * d->cs, 0);
    for (int i = 0; i < nimg; i += step)
        for (int c = 0; c < nc; c++)
            cpu_interleave(j->x + ((size_t)(n0 + i) * d->ci + c0 + c) * hw, (size_t)d->ci * hw,
                           nimg - i < step ? nimg - i : step, d->h, d->w, (size_t)d->nb,
                           pl + (size_t)c * d->cs + (size_t)d->pad * (rowf + d->nb) + i, rowf);
}

/* Items [0, nchunks*ci) when P is shared: chunk plane c of P; then [.., + mpad/DC_MR): one
 * 6-row panel of A. */
static void dc_pack_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DirectJob *j = arg;
    const Direct *d = j->d;
    int64_t nplanes = j->p ? (int64_t)d->nchunks * d->ci : 0;
    for (int64_t it = b; it < e; it++) {
        if (it < nplanes) {
            dc_pack_plane(j, (int)(it / d->ci), (int)(it % d->ci), j->p + (size_t)it * d->cs, 1);
        } else {
            int r0 = (int)(it - nplanes) * DC_MR;
            float *a = j->a + (size_t)r0 * d->ci * d->ntap;
            for (int c = 0; c < d->ci; c++)
                for (int t = 0; t < d->ntap; t++, a += DC_MR)
                    for (int r = 0; r < DC_MR; r++) {
                        int row = r0 + r;
                        if (row >= d->co) a[r] = 0.0f;
                        else if (!j->backward) /* w [co][ci][t] */
                            a[r] = j->w[((size_t)row * d->ci + c) * d->ntap + t];
                        else /* w [ci = cout][co = cin][t], flipped */
                            a[r] = j->w[((size_t)c * d->co + row) * d->ntap + (d->ntap - 1 - t)];
                    }
        }
    }
}

/* c[6][ldc] (+)= sum over kc channels of P (cs apart) and ntap taps of a[c][t][6] x p[off[t] ..+16]
 * (cpu.h: conv_wino.c uses it as its GEMM kernel). */
__attribute__((target("avx2,fma"))) void cpu_dc_kernel(int kc, int ntap, const float *a,
                                                       const float *p, size_t cs,
                                                       const ptrdiff_t *off, float *c, size_t ldc,
                                                       int load)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (load) {
        c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
        c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    for (int ch = 0; ch < kc; ch++, p += cs)
        for (int t = 0; t < ntap; t++, a += DC_MR) {
            const float *q = p + off[t];
            __m256 b0 = _mm256_loadu_ps(q), b1 = _mm256_loadu_ps(q + 8), av;
            av = _mm256_broadcast_ss(a + 0);
            c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);
            av = _mm256_broadcast_ss(a + 1);
            c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);
            av = _mm256_broadcast_ss(a + 2);
            c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);
            av = _mm256_broadcast_ss(a + 3);
            c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);
            av = _mm256_broadcast_ss(a + 4);
            c40 = _mm256_fmadd_ps(av, b0, c40), c41 = _mm256_fmadd_ps(av, b1, c41);
            av = _mm256_broadcast_ss(a + 5);
            c50 = _mm256_fmadd_ps(av, b0, c50), c51 = _mm256_fmadd_ps(av, b1, c51);
        }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

/* Two tiles at once with AVX-512: c[6][16] and d[6][16] (+)= the same sums as cpu_dc_kernel's for
 * the tile at p0 and the tile at p1 (cpu_dc_kernel2: d = c + 16). The tiles need not be adjacent
 * in P (the direct path pairs a row's last tile with the next row's first). Each output is one FMA
 * chain in cpu_dc_kernel's order, so the results are bit-identical to it. */
__attribute__((target("avx512f"))) void cpu_dc_kernel2s(int kc, int ntap, const float *a,
                                                        const float *p0, const float *p1, size_t cs,
                                                        const ptrdiff_t *off, float *c, float *d,
                                                        size_t ldc, int load)
{
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (load) {
        c00 = _mm512_loadu_ps(c), c01 = _mm512_loadu_ps(d);
        c10 = _mm512_loadu_ps(c + ldc), c11 = _mm512_loadu_ps(d + ldc);
        c20 = _mm512_loadu_ps(c + 2 * ldc), c21 = _mm512_loadu_ps(d + 2 * ldc);
        c30 = _mm512_loadu_ps(c + 3 * ldc), c31 = _mm512_loadu_ps(d + 3 * ldc);
        c40 = _mm512_loadu_ps(c + 4 * ldc), c41 = _mm512_loadu_ps(d + 4 * ldc);
        c50 = _mm512_loadu_ps(c + 5 * ldc), c51 = _mm512_loadu_ps(d + 5 * ldc);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm512_setzero_ps();
    }
    for (int ch = 0; ch < kc; ch++, p0 += cs, p1 += cs)
        for (int t = 0; t < ntap; t++, a += DC_MR) {
            __m512 b0 = _mm512_loadu_ps(p0 + off[t]), b1 = _mm512_loadu_ps(p1 + off[t]), av;
            av = _mm512_set1_ps(a[0]);
            c00 = _mm512_fmadd_ps(av, b0, c00), c01 = _mm512_fmadd_ps(av, b1, c01);
            av = _mm512_set1_ps(a[1]);
            c10 = _mm512_fmadd_ps(av, b0, c10), c11 = _mm512_fmadd_ps(av, b1, c11);
            av = _mm512_set1_ps(a[2]);
            c20 = _mm512_fmadd_ps(av, b0, c20), c21 = _mm512_fmadd_ps(av, b1, c21);
            av = _mm512_set1_ps(a[3]);
            c30 = _mm512_fmadd_ps(av, b0, c30), c31 = _mm512_fmadd_ps(av, b1, c31);
            av = _mm512_set1_ps(a[4]);
            c40 = _mm512_fmadd_ps(av, b0, c40), c41 = _mm512_fmadd_ps(av, b1, c41);
            av = _mm512_set1_ps(a[5]);
            c50 = _mm512_fmadd_ps(av, b0, c50), c51 = _mm512_fmadd_ps(av, b1, c51);
        }
    _mm512_storeu_ps(c, c00), _mm512_storeu_ps(d, c01);
    _mm512_storeu_ps(c + ldc, c10), _mm512_storeu_ps(d + ldc, c11);
    _mm512_storeu_ps(c + 2 * ldc, c20), _mm512_storeu_ps(d + 2 * ldc, c21);
    _mm512_storeu_ps(c + 3 * ldc, c30), _mm512_storeu_ps(d + 3 * ldc, c31);
    _mm512_storeu_ps(c + 4 * ldc, c40), _mm512_storeu_ps(d + 4 * ldc, c41);
    _mm512_storeu_ps(c + 5 * ldc, c50), _mm512_storeu_ps(d + 5 * ldc, c51);
}

__attribute__((target("avx512f"))) void cpu_dc_kernel2(int kc, int ntap, const float *a,
                                                       const float *p0, const float *p1, size_t cs,
                                                       const ptrdiff_t *off, float *c, size_t ldc,
                                                       int load)
{
    cpu_dc_kernel2s(kc, ntap, a, p0, p1, cs, off, c, c + 16, ldc, load);
}

/* dst += s (backward), = s + b (a bias), or = s, over n floats (dst is the op's output). */
static void dc_store_run(int n, const float *restrict s, float *restrict dst, int backward,
                         const float *b, float bias)
{
    int i = 0;
    if (backward) {
        cpu_acc_run(n, s, dst);
    } else if (b) {
        for (; i + 8 <= n; i += 8)
            for (int k = 0; k < 8; k++) dst[i + k] = s[i + k] + bias;
        for (; i < n; i++) dst[i] = s[i] + bias;
    } else {
        memcpy(dst, s, (size_t)n * sizeof(float));
    }
}

/* Rows [m0, m0 + nrows) of an item's buffer cbuf [row][y][column x*nb + i] -> NCHW output
 * (= or + bias forward, += backward). */
static void dc_store(const DirectJob *j, int chunk, int m0, int nrows, const float *cbuf)
{
    const Direct *d = j->d;
    size_t hw = (size_t)d->h * d->w;
    int n0 = chunk * d->nb, nimg = d->n - n0 < d->nb ? d->n - n0 : d->nb;
    if (d->nb > 1) { /* dc_img_step images of each row in turn */
        const int step = dc_img_step(hw, nimg);
        for (int i = 0; i < nimg; i += step)
            for (int r = 0; r < nrows; r++) {
                float bias = j->b ? j->b[m0 + r] : 0.0f;
                cpu_deinterleave(cbuf + (size_t)r * d->ldc + i, (size_t)d->rowtiles * DC_NR, (size_t)d->nb,
                                 nimg - i < step ? nimg - i : step, d->h, d->w, j->b ? &bias : NULL, j->backward,
                                 j->y + ((size_t)(n0 + i) * d->co + m0 + r) * hw, (size_t)d->co * hw);
            }
        return;
    }
    for (int r = 0; r < nrows; r++) {
        int m = m0 + r;
        float bias = j->b ? j->b[m] : 0.0f;
        float *y0 = j->y + ((size_t)n0 * d->co + m) * hw;
        for (int y = 0; y < d->h; y++) /* one image per chunk: contiguous runs */
            dc_store_run(d->w, cbuf + (size_t)r * d->ldc + (size_t)y * d->rowtiles * DC_NR,
                         y0 + (size_t)y * d->w, j->backward, j->b, bias);
    }
}

/* Item = (chunk, block of mc output channels). */
static void dc_conv_task(void *arg, int64_t b, int64_t e, int tid)
{
    const DirectJob *j = arg;
    const Direct *d = j->d;
    size_t psize = j->p ? 0 : (size_t)d->ci * d->cs;
    float *cbuf = cpu_scratch(j->be, tid, (size_t)d->mc * d->ldc + psize), *own = cbuf + (size_t)d->mc * d->ldc;
    int ntiles = d->h * d->rowtiles;
    for (int64_t it = b; it < e; it++) {
        int chunk = (int)(it / d->nmb), m0 = (int)(it % d->nmb) * d->mc;
        int mrows = d->mpad - m0 < d->mc ? d->mpad - m0 : d->mc;
        const float *p = j->p ? j->p + (size_t)chunk * d->ci * d->cs : own;
        if (!j->p) /* one item per chunk: its planes are packed here, and stay in cache */
            for (int c = 0; c < d->ci; c++) dc_pack_plane(j, chunk, c, own + (size_t)c * d->cs, 1);
        for (int c0 = 0; c0 < d->ci; c0 += DC_KC) {
            int kc = d->ci - c0 < DC_KC ? d->ci - c0 : DC_KC;
            const float *pk = p + (size_t)c0 * d->cs;
            /* tiles k, row by row; with AVX-512, two at a time (cbuf holds them side by side) */
            for (int k = 0; k < ntiles; k += j->wide ? 2 : 1) {
                int pair = j->wide && k + 1 < ntiles;
                const float *p0 = pk + dc_col(d, k / d->rowtiles, k % d->rowtiles * DC_NR);
                const float *p1 = pair ? pk + dc_col(d, (k + 1) / d->rowtiles, (k + 1) % d->rowtiles * DC_NR) : NULL;
                float *ct = cbuf + (size_t)k * DC_NR;
                for (int r = 0; r < mrows; r += DC_MR) {
                    const float *a = j->a + ((size_t)(m0 + r) * d->ci + (size_t)c0 * DC_MR) * d->ntap;
                    if (pair)
                        cpu_dc_kernel2(kc, d->ntap, a, p0, p1, d->cs, d->off, ct + (size_t)r * d->ldc,
                                       d->ldc, c0 > 0);
                    else
                        cpu_dc_kernel(kc, d->ntap, a, p0, d->cs, d->off, ct + (size_t)r * d->ldc,
                                      d->ldc, c0 > 0);
                }
            }
        }
        dc_store(j, chunk, m0, d->co - m0 < mrows ? d->co - m0 : mrows, cbuf);
    }
}

/* ---- depthwise: each channel its own plane, a 1 x 16 tile per tap FMA ---- */

#define DW_CB 16 /* channels per work item */

/* c[k*16 ..] = sum over taps of wt[t] x p[cols[k] + off[t] ..+16], for ntiles tiles, four at a
 * time (eight accumulators: enough independent FMA chains to hide their latency). */
__attribute__((target("avx2,fma"))) static void dw_tiles(int ntap, const float *wt, const float *p,
                                                          const ptrdiff_t *off, const size_t *cols,
                                                          int ntiles, float *c)
{
    int k = 0;
    for (; k + 4 <= ntiles; k += 4) {
        const float *q0 = p + cols[k], *q1 = p + cols[k + 1], *q2 = p + cols[k + 2], *q3 = p + cols[k + 3];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int t = 0; t < ntap; t++) {
            __m256 wv = _mm256_broadcast_ss(wt + t);
            ptrdiff_t o = off[t];
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q0 + o), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q0 + o + 8), a1);
            a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q1 + o), a2);
            a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q1 + o + 8), a3);
            a4 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q2 + o), a4);
            a5 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q2 + o + 8), a5);
            a6 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q3 + o), a6);
            a7 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q3 + o + 8), a7);
        }
        float *ck = c + (size_t)k * DC_NR;
        _mm256_storeu_ps(ck, a0), _mm256_storeu_ps(ck + 8, a1);
        _mm256_storeu_ps(ck + 16, a2), _mm256_storeu_ps(ck + 24, a3);
        _mm256_storeu_ps(ck + 32, a4), _mm256_storeu_ps(ck + 40, a5);
        _mm256_storeu_ps(ck + 48, a6), _mm256_storeu_ps(ck + 56, a7);
    }
    for (; k < ntiles; k++) {
        const float *q = p + cols[k];
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (int t = 0; t < ntap; t++) {
            __m256 wv = _mm256_broadcast_ss(wt + t);
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q + off[t]), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q + off[t] + 8), a1);
        }
        _mm256_storeu_ps(c + (size_t)k * DC_NR, a0), _mm256_storeu_ps(c + (size_t)k * DC_NR + 8, a1);
    }
}

typedef struct {
    const DirectJob *j;
    const float *wt;    /* [c][ntap], flipped for backward */
    const size_t *cols; /* P column of each tile, row by row */
} DwJob;

/* Item = (chunk, block of DW_CB channels): packs its planes, convolves, stores. */
static void dw_task(void *arg, int64_t b, int64_t e, int tid)
{
    const DwJob *w = arg;
    const DirectJob *j = w->j;
    const Direct *d = j->d;
    int nchb = (d->ci + DW_CB - 1) / DW_CB, ntiles = d->h * d->rowtiles;
    float *cbuf = cpu_scratch(j->be, tid, (size_t)DW_CB * (d->ldc + d->cs));
    float *own = cbuf + (size_t)DW_CB * d->ldc;
    for (int64_t it = b; it < e; it++) {
        int chunk = (int)(it / nchb), c0 = (int)(it % nchb) * DW_CB;
        int nc = d->ci - c0 < DW_CB ? d->ci - c0 : DW_CB;
        if (d->nb > 1) dc_pack_planes(j, chunk, c0, nc, own);
        for (int c = 0; c < nc; c++) {
            float *pl = own + (size_t)c * d->cs;
            if (d->nb == 1) dc_pack_plane(j, chunk, c0 + c, pl, 1);
            dw_tiles(d->ntap, w->wt + (size_t)(c0 + c) * d->ntap, pl, d->off, w->cols, ntiles,
                     cbuf + (size_t)c * d->ldc);
        }
        dc_store(j, chunk, c0, nc, cbuf);
    }
}

static void dw_run(NnBackend *be, const Direct *d, int backward, const float *x, const float *w,
                   const float *b, float *y)
{
    int ntiles = d->h * d->rowtiles;
    size_t *cols = dd_malloc((size_t)ntiles * sizeof *cols);
    for (int yy = 0; yy < d->h; yy++)
        for (int tt = 0; tt < d->rowtiles; tt++) cols[yy * d->rowtiles + tt] = dc_col(d, yy, tt * DC_NR);
    const float *wt = w;
    float *flip = NULL;
    if (backward) { /* the transposed convolution of a depthwise one: each kernel flipped */
        flip = cpu_shared(be, (size_t)d->ci * d->ntap);
        for (int c = 0; c < d->ci; c++)
            for (int t = 0; t < d->ntap; t++)
                flip[(size_t)c * d->ntap + t] = w[(size_t)c * d->ntap + (d->ntap - 1 - t)];
        wt = flip;
    }
    DirectJob j = {.d = d, .backward = backward, .x = x, .w = w, .b = b, .y = y, .be = be};
    DwJob dj = {.j = &j, .wt = wt, .cols = cols};
    cpu_for(be, (int64_t)d->nchunks * ((d->ci + DW_CB - 1) / DW_CB), 1, dw_task, &dj);
    free(cols);
}

static void dc_run(NnBackend *be, const NnConvShape *s, int backward, const float *x,
                   const float *w, const float *b, float *y)
{
    Direct d = dc_geom(s, backward);
    if (s->groups > 1) {
        dw_run(be, &d, backward, x, w, b, y);
        return;
    }
    /* P shared by the items of a chunk, packed first; or, one item per chunk, packed by it */
    int shared = d.nmb > 1;
    size_t asize = (size_t)d.mpad * d.ci * d.ntap, psize = shared ? (size_t)d.nchunks * d.ci * d.cs : 0;
    float *a = cpu_shared(be, asize + psize);
    DirectJob j = {.d = &d, .backward = backward, .x = x, .w = w, .b = b, .y = y,
                   .a = a, .p = shared ? a + asize : NULL, .wide = cpu_avx512(), .be = be};
    cpu_for(be, (shared ? (int64_t)d.nchunks * d.ci : 0) + d.mpad / DC_MR, 4, dc_pack_task, &j);
    cpu_for(be, (int64_t)d.nchunks * d.nmb, 1, dc_conv_task, &j);
}

void cpu_direct_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                    const float *b, float *y)
{
    dc_run(be, s, 0, x, w, b, y);
}

void cpu_direct_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                         float *dx)
{
    dc_run(be, s, 1, dy, w, NULL, dx);
}

#else /* no x86 vector kernel: cpu_direct_ok is always false */

void cpu_direct_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                    const float *b, float *y)
{
    (void)be, (void)s, (void)x, (void)w, (void)b, (void)y;
    dd_die(DD_EXIT_DATA, "nn: cpu: direct convolution without x86 vector support");
}

void cpu_direct_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                         float *dx)
{
    (void)be, (void)s, (void)dy, (void)w, (void)dx;
    dd_die(DD_EXIT_DATA, "nn: cpu: direct convolution without x86 vector support");
}

/* conv.c's kernel GEMM calls it only where cpu_avx512(), never true here. */
void cpu_dc_kernel2(int kc, int ntap, const float *a, const float *p0, const float *p1, size_t cs,
                    const ptrdiff_t *off, float *c, size_t ldc, int load)
{
    (void)kc, (void)ntap, (void)a, (void)p0, (void)p1, (void)cs, (void)off, (void)c, (void)ldc, (void)load;
    dd_die(DD_EXIT_DATA, "nn: cpu: AVX-512 kernel without x86 vector support");
}

#endif

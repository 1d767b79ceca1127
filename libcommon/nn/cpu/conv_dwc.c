/* conv_dwc.c - depthwise convolution of small planes, 16 channels to a vector (AVX-512F; or AVX2 +
 * FMA, each vector as two halves of 8 with the same operations lane by lane: the same bits):
 * forward, backward data (dx +=) and backward filter (dw +=) where the output plane has 4 to 64
 * pixels (MobileNetV2's, EfficientNet's and ShuffleNetV2's small-image stages: 8x8, 4x4, 2x2 and
 * stride 2 onto them, with up to 960 channels), backward data from 5; with AVX2 alone forward
 * and backward data at stride 2 only (cpu_dwc_ok says why).
 *
 * conv_dw.c vectorises along a plane; a 4x4 output is 20 lanes of two vectors (rows qw wide),
 * and its split and copies cost more than its 18 FMAs. Here a task item is one image and 16
 * channels: their input planes are gathered into a zero-padded [hp][wp][16] block (lane l =
 * channel c0 + l), each output pixel is one vector, the sum over taps of w[t] (16 channels' tap t)
 * times the block's vector under the tap, and the outputs are scattered back to their planes.
 * The gathers and scatters move 16 pixels of 16 planes at a time through a 16 x 16 transpose in
 * registers (64 shuffles, where element by element it was 256 loads and stores: on 8x8 planes
 * those moves, not the FMAs, were the cost; AVX2: four 8 x 8 transposes of 24 shuffles). DWC_G
 * outputs are summed at once, so the FMA chains of their taps run side by side.
 *
 * Backward data is the transposed convolution as a forward pass: dy placed at its outputs' window
 * corners in a zeroed block, each padded pixel sums w[t] times the block at minus tap t's offset
 * over the taps of its stride phase (dwc_bwd_data_task), and the interior is then added to dx.
 * Backward filter: an item is a block of 16 channels over all images; per image,
 * dw[t] += the sum over outputs of dy times the block under tap t, in float over the image's
 * outputs, then added to double sums in image order.
 *
 * Each output, dx pixel and dw entry is summed in one fixed order inside one item: results do not
 * depend on the thread count. */
#include "libcommon/nn/cpu/cpu.h"

#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DWC_X86 1
#include <immintrin.h>
#define DWC_AVX512 __attribute__((target("avx512f")))
#define DWC_AVX2 __attribute__((target("avx2,fma")))
#endif

#define DWC_V 16         /* channels to a vector */
#define DWC_MIN_OUT 4    /* output pixels of a plane: from 2x2 (forward and weight gradient) */
#define DWC_MIN_OUT_DX 5 /* ... from 3x2 for backward data (at 2x2 conv_dw.c's was 1.15x faster) */
#define DWC_MAX_OUT 64   /* ... to 8x8 */
#define DWC_MAX_IN 324   /* padded input pixels of a plane: 18 x 18 (stride 2 from 16 px) */
#define DWC_MAX_TAPS 25
#define DWC_G 8          /* outputs (forward) or taps (filter) summed side by side */

/* The weight gradient's condition: the shape fits a block and the CPU has AVX2 + FMA. */
int cpu_dwc_filter_ok(const NnConvShape *s)
{
#ifdef DWC_X86
    const char *env = getenv("DD_CPU_CONV"); /* read per call: tests run the other paths too */
    if (!cpu_avx2() || (env && (!strcmp(env, "gemm") || !strcmp(env, "direct")))) return 0;
    const int64_t hp = (int64_t)s->h + 2 * s->pad, wp = (int64_t)s->w + 2 * s->pad;
    return s->groups > 1 && s->groups == s->cin && s->groups == s->cout && s->dil == 1 && s->stride >= 1 &&
           s->stride <= 2 && s->pad >= 0 && s->kh * s->kw <= DWC_MAX_TAPS &&
           (int64_t)s->oh * s->ow >= DWC_MIN_OUT && (int64_t)s->oh * s->ow <= DWC_MAX_OUT &&
           hp * wp <= DWC_MAX_IN;
#else
    (void)s;
    return 0;
#endif
}

/* Forward and backward data: with AVX2 alone, stride 2 only. Measured with bench_ops, one
 * thread, each shape both ways in one run (AMD EPYC, 3x3 taps unless said, time here over the
 * path taken otherwise). Stride 1: the four 8 x 8 transposes per 8 pixels cost more than the
 * direct kernel's and conv_dw.c's runs lose (forward and dx: 8x8 planes 1.18 and 1.20, 5x5 taps
 * on 8x8 1.16, 2x2 forward 1.56; only 4x4 gains, 0.91 and 0.89, too little for a rule of its
 * own). Stride 2, where conv_dw.c splits phases: forward 0.23 to 0.67, dx 0.45 to 0.56 (from 16,
 * 14 and 8 px, 5x5 taps too), measured while the AVX2 scatter still stored through masks (which
 * AMD's Zen microcodes); plain stores since took forward to 0.78 to 0.90 and dx to 0.67 of that.
 * The weight gradient gains at every size (0.15 to 0.73). conv_dwp.c comes first (conv.c's order)
 * for 3x3 with padding 1 at stride 1 on 4x4 (AVX2 alone) to 16x16 and stride 2 from 8x8 and 16x16
 * (forward and weight gradient; 0.2 to 0.6 of the time here). */
int cpu_dwc_ok(const NnConvShape *s)
{
    return cpu_dwc_filter_ok(s) && (s->stride == 2 || cpu_avx512());
}

int cpu_dwc_data_ok(const NnConvShape *s)
{
    return cpu_dwc_ok(s) && (int64_t)s->oh * s->ow >= DWC_MIN_OUT_DX;
}

#ifdef DWC_X86

/* One weighted sum over a block for each of np places: out [idx[i]] = the sum over the taps
 * tap[0..ntp-1] (in that order) of wt[t] times the block at base[idx[i]] + toff[t] (neg: minus
 * toff[t]), in vectors of DWC_V lanes. idx NULL: i itself. base (through idx) has DWC_G more
 * entries than np repeating a valid place, so that a last short group reads inside the block. */
typedef struct {
    const float *blk, *wt;
    const int *base, *idx, *tap, *toff;
    int np, ntp, neg;
} DwcSum;

/* The vector kernels of one ISA: AVX-512F (one vector of 16 lanes) or AVX2 + FMA (each vector
 * as two halves of 8, with the same operation lane by lane: the same bits). */
typedef struct {
    /* blk [pos[i]][16] <- the npx pixels of cb planes src + l * plane (lane l; zero past cb);
     * pos NULL: pixel i to vector i */
    void (*gather)(const float *src, size_t plane, int cb, size_t npx, const int *pos, float *blk);
    /* planes dst + l * plane (l < cb), pixel i: = blk vector i lane l + bias[l] (acc 0; bias
     * NULL: 0) or += it (acc 1) */
    void (*scatter)(const float *blk, size_t npx, int cb, const float *bias, int acc, float *dst, size_t plane);
    void (*sum)(const DwcSum *q, float *out);
    /* sum [k][16] (k < G <= DWC_G) += the float sum over the ohw outputs of g times the block
     * under tap toff[k] */
    void (*filter)(int G, size_t ohw, const float *g, const float *in, const int *obase, const int *toff,
                   double *sum);
} DwcKern;

typedef struct {
    const NnConvShape *s;
    const DwcKern *k;
    const float *x, *b, *dy;
    float *y, *dx, *dw;
    const float *wt; /* [blocks][taps][16]: channel c0 + l's tap t at lane l, zero past c */
    int nblk, nt;
    size_t hw, ohw;  /* input and output plane */
    size_t block;    /* floats of the padded [hp][wp][16] block */
    /* In vectors of the block: input pixel i's place (ipos), output o's window corner (obase),
     * tap t's offset from the corner (toff). ipos and obase have DWC_G more entries repeating
     * entry 0, so that a last short group reads inside the block. */
    const int *ipos, *obase, *toff;
    const int *taps; /* 0 .. nt - 1 */
    /* Backward data: the interior pixels of each of the stride^2 phases (indices into ipos,
     * DWC_G more repeating the first) and the taps that reach them from a corner. */
    int nph;
    const int *ph_pix[4], *ph_tap[4];
    int ph_npix[4], ph_ntap[4];
} DwcJob;

/* RUN(G, ...) with G (1 to DWC_G) as a constant: a kernel inlined for it keeps its G sums in
 * registers */
#define DWC_BY_G(RUN, G, ...)                                                                                 \
    switch (G) {                                                                                              \
    case 1: RUN(1, __VA_ARGS__); break;                                                                       \
    case 2: RUN(2, __VA_ARGS__); break;                                                                       \
    case 3: RUN(3, __VA_ARGS__); break;                                                                       \
    case 4: RUN(4, __VA_ARGS__); break;                                                                       \
    case 5: RUN(5, __VA_ARGS__); break;                                                                       \
    case 6: RUN(6, __VA_ARGS__); break;                                                                       \
    case 7: RUN(7, __VA_ARGS__); break;                                                                       \
    default: RUN(8, __VA_ARGS__); break;                                                                      \
    }

/* ---- AVX-512F ---- */

/* r[k] <- lane k of r[0..15] (a 16 x 16 transpose: rows of 16 floats become columns): 32-bit and
 * 64-bit interleaves within 128-bit lanes, then two rounds of 128-bit lane shuffles. */
DWC_AVX512 static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 a[16], b[16];
    for (int i = 0; i < 8; i++) {
        a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* b[4j + k], 128-bit lane L: rows 4j..4j+3 at column 4L + k */
    for (int j = 0; j < 4; j++) {
        __m512d a0 = _mm512_castps_pd(a[4 * j]), a1 = _mm512_castps_pd(a[4 * j + 1]);
        __m512d a2 = _mm512_castps_pd(a[4 * j + 2]), a3 = _mm512_castps_pd(a[4 * j + 3]);
        b[4 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    /* column 4L + k = lane L of b[k], b[4 + k], b[8 + k], b[12 + k] */
    for (int k = 0; k < 4; k++) {
        __m512 e0 = _mm512_shuffle_f32x4(b[k], b[4 + k], 0x44);
        __m512 e1 = _mm512_shuffle_f32x4(b[k], b[4 + k], 0xEE);
        __m512 f0 = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0x44);
        __m512 f1 = _mm512_shuffle_f32x4(b[8 + k], b[12 + k], 0xEE);
        r[k] = _mm512_shuffle_f32x4(e0, f0, 0x88);
        r[4 + k] = _mm512_shuffle_f32x4(e0, f0, 0xDD);
        r[8 + k] = _mm512_shuffle_f32x4(e1, f1, 0x88);
        r[12 + k] = _mm512_shuffle_f32x4(e1, f1, 0xDD);
    }
}

static inline __mmask16 dwc_mask(size_t m) { return (__mmask16)((1u << m) - 1); }

DWC_AVX512 static void dwc_gather_avx512(const float *src, size_t plane, int cb, size_t npx, const int *pos,
                                         float *blk)
{
    __m512 r[16];
    for (size_t q0 = 0; q0 < npx; q0 += 16) {
        size_t m = npx - q0 < 16 ? npx - q0 : 16;
        __mmask16 mk = dwc_mask(m);
        if (m == 16 && cb == 16)
            for (int l = 0; l < 16; l++) r[l] = _mm512_loadu_ps(src + (size_t)l * plane + q0);
        else
            for (int l = 0; l < 16; l++)
                r[l] = l < cb ? _mm512_maskz_loadu_ps(mk, src + (size_t)l * plane + q0) : _mm512_setzero_ps();
        transpose16(r);
        for (size_t k = 0; k < m; k++)
            _mm512_store_ps(blk + (size_t)(pos ? pos[q0 + k] : (int)(q0 + k)) * DWC_V, r[k]);
    }
}

DWC_AVX512 static void dwc_scatter_avx512(const float *blk, size_t npx, int cb, const float *bias, int acc,
                                          float *dst, size_t plane)
{
    __m512 r[16];
    for (size_t q0 = 0; q0 < npx; q0 += 16) {
        size_t m = npx - q0 < 16 ? npx - q0 : 16;
        __mmask16 mk = dwc_mask(m);
        for (size_t k = 0; k < 16; k++) r[k] = k < m ? _mm512_load_ps(blk + (q0 + k) * DWC_V) : _mm512_setzero_ps();
        transpose16(r);
        for (int l = 0; l < cb; l++) {
            float *d = dst + (size_t)l * plane + q0;
            __m512 v = r[l];
            if (acc) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, d), v);
            else if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[l]));
            _mm512_mask_storeu_ps(d, mk, v);
        }
    }
}

/* DWC_G places summed at once, so that the FMA chains of their taps run side by side */
DWC_AVX512 static void dwc_sum_avx512(const DwcSum *q, float *out)
{
    for (int i0 = 0; i0 < q->np; i0 += DWC_G) {
        __m512 acc[DWC_G];
        const float *at[DWC_G];
#pragma GCC unroll 8
        for (int g = 0; g < DWC_G; g++)
            acc[g] = _mm512_setzero_ps(), at[g] = q->blk + (size_t)q->base[q->idx ? q->idx[i0 + g] : i0 + g] * DWC_V;
        for (int k = 0; k < q->ntp; k++) {
            const int t = q->tap[k];
            const __m512 wv = _mm512_loadu_ps(q->wt + t * DWC_V);
            const ptrdiff_t to = (ptrdiff_t)(q->neg ? -q->toff[t] : q->toff[t]) * DWC_V;
#pragma GCC unroll 8
            for (int g = 0; g < DWC_G; g++) acc[g] = _mm512_fmadd_ps(wv, _mm512_load_ps(at[g] + to), acc[g]);
        }
        for (int g = 0; g < DWC_G && i0 + g < q->np; g++)
            _mm512_store_ps(out + (size_t)(q->idx ? q->idx[i0 + g] : i0 + g) * DWC_V, acc[g]);
    }
}

/* G a constant where inlined: the accumulators stay in registers */
DWC_AVX512 static inline __attribute__((always_inline)) void dwc_filter_run_avx512(const int G, size_t ohw,
                                                                                  const float *g, const float *in,
                                                                                  const int *obase,
                                                                                  const int *toff, double *sum)
{
    __m512 acc[DWC_G];
    size_t to[DWC_G];
#pragma GCC unroll 8
    for (int k = 0; k < G; k++) acc[k] = _mm512_setzero_ps(), to[k] = (size_t)toff[k] * DWC_V;
    for (size_t o = 0; o < ohw; o++) {
        const __m512 d = _mm512_load_ps(g + o * DWC_V);
        const float *at = in + (size_t)obase[o] * DWC_V;
#pragma GCC unroll 8
        for (int k = 0; k < G; k++) acc[k] = _mm512_fmadd_ps(d, _mm512_load_ps(at + to[k]), acc[k]);
    }
    for (int k = 0; k < G; k++) {
        double *q = sum + (size_t)k * DWC_V;
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(acc[k]));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[k]), 1)));
        _mm512_store_pd(q, _mm512_add_pd(_mm512_load_pd(q), lo));
        _mm512_store_pd(q + 8, _mm512_add_pd(_mm512_load_pd(q + 8), hi));
    }
}

DWC_AVX512 static void dwc_filter_avx512(int G, size_t ohw, const float *g, const float *in, const int *obase,
                                         const int *toff, double *sum)
{
    DWC_BY_G(dwc_filter_run_avx512, G, ohw, g, in, obase, toff, sum);
}

static const DwcKern DWC_KERN_AVX512 = {dwc_gather_avx512, dwc_scatter_avx512, dwc_sum_avx512, dwc_filter_avx512};

/* ---- AVX2 + FMA: each 16-lane vector as its halves [0, 8) and [8, 16) ---- */

DWC_AVX2 static void dwc_gather_avx2(const float *src, size_t plane, int cb, size_t npx, const int *pos,
                                     float *blk)
{
    __m256 r[8];
    for (size_t q0 = 0; q0 < npx; q0 += 8) {
        size_t m = npx - q0 < 8 ? npx - q0 : 8;
        __m256i mk = cpu_mask8(m);
        for (int h = 0; h < DWC_V; h += 8) {
            const float *sh = src + (size_t)h * plane + q0;
            if (m == 8 && cb >= h + 8)
                for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(sh + (size_t)l * plane);
            else
                for (int l = 0; l < 8; l++)
                    r[l] = h + l < cb ? _mm256_maskload_ps(sh + (size_t)l * plane, mk) : _mm256_setzero_ps();
            cpu_transpose8(r);
            for (size_t k = 0; k < m; k++)
                _mm256_store_ps(blk + (size_t)(pos ? pos[q0 + k] : (int)(q0 + k)) * DWC_V + h, r[k]);
        }
    }
}

DWC_AVX2 static void dwc_scatter_avx2(const float *blk, size_t npx, int cb, const float *bias, int acc,
                                      float *dst, size_t plane)
{
    __m256 r[8];
    for (size_t q0 = 0; q0 < npx; q0 += 8) {
        size_t m = npx - q0 < 8 ? npx - q0 : 8;
        __m256i mk = cpu_mask8(m);
        for (int h = 0; h < cb; h += 8) {
            for (size_t k = 0; k < 8; k++)
                r[k] = k < m ? _mm256_load_ps(blk + (q0 + k) * DWC_V + h) : _mm256_setzero_ps();
            cpu_transpose8(r);
            for (int l = 0; l < 8 && h + l < cb; l++) {
                float *d = dst + (size_t)(h + l) * plane + q0;
                __m256 v = r[l];
                if (acc) v = _mm256_add_ps(m == 8 ? _mm256_loadu_ps(d) : _mm256_maskload_ps(d, mk), v);
                else if (bias) v = _mm256_add_ps(v, _mm256_set1_ps(bias[h + l]));
                if (m == 8) {
                    _mm256_storeu_ps(d, v);
                } else { /* a short run: no maskstore (microcoded on AMD's Zen) */
                    float t[8];
                    _mm256_storeu_ps(t, v);
                    memcpy(d, t, m * sizeof *t);
                }
            }
        }
    }
}

DWC_AVX2 static void dwc_sum_avx2(const DwcSum *q, float *out)
{
    for (int i0 = 0; i0 < q->np; i0 += DWC_G) {
        const float *at[DWC_G];
        for (int g = 0; g < DWC_G; g++) at[g] = q->blk + (size_t)q->base[q->idx ? q->idx[i0 + g] : i0 + g] * DWC_V;
        for (int h = 0; h < DWC_V; h += 8) {
            __m256 acc[DWC_G];
#pragma GCC unroll 8
            for (int g = 0; g < DWC_G; g++) acc[g] = _mm256_setzero_ps();
            for (int k = 0; k < q->ntp; k++) {
                const int t = q->tap[k];
                const __m256 wv = _mm256_loadu_ps(q->wt + t * DWC_V + h);
                const ptrdiff_t to = (ptrdiff_t)(q->neg ? -q->toff[t] : q->toff[t]) * DWC_V + h;
#pragma GCC unroll 8
                for (int g = 0; g < DWC_G; g++) acc[g] = _mm256_fmadd_ps(wv, _mm256_load_ps(at[g] + to), acc[g]);
            }
            for (int g = 0; g < DWC_G && i0 + g < q->np; g++)
                _mm256_store_ps(out + (size_t)(q->idx ? q->idx[i0 + g] : i0 + g) * DWC_V + h, acc[g]);
        }
    }
}

DWC_AVX2 static inline __attribute__((always_inline)) void dwc_filter_run_avx2(const int G, size_t ohw,
                                                                              const float *g, const float *in,
                                                                              const int *obase, const int *toff,
                                                                              double *sum)
{
    size_t to[DWC_G];
    for (int k = 0; k < G; k++) to[k] = (size_t)toff[k] * DWC_V;
    for (int h = 0; h < DWC_V; h += 8) {
        __m256 acc[DWC_G];
#pragma GCC unroll 8
        for (int k = 0; k < G; k++) acc[k] = _mm256_setzero_ps();
        for (size_t o = 0; o < ohw; o++) {
            const __m256 d = _mm256_load_ps(g + o * DWC_V + h);
            const float *at = in + (size_t)obase[o] * DWC_V + h;
#pragma GCC unroll 8
            for (int k = 0; k < G; k++) acc[k] = _mm256_fmadd_ps(d, _mm256_load_ps(at + to[k]), acc[k]);
        }
        for (int k = 0; k < G; k++) {
            double *q = sum + (size_t)k * DWC_V + h;
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(acc[k]));
            __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(acc[k], 1));
            _mm256_store_pd(q, _mm256_add_pd(_mm256_load_pd(q), lo));
            _mm256_store_pd(q + 4, _mm256_add_pd(_mm256_load_pd(q + 4), hi));
        }
    }
}

DWC_AVX2 static void dwc_filter_avx2(int G, size_t ohw, const float *g, const float *in, const int *obase,
                                     const int *toff, double *sum)
{
    DWC_BY_G(dwc_filter_run_avx2, G, ohw, g, in, obase, toff, sum);
}

static const DwcKern DWC_KERN_AVX2 = {dwc_gather_avx2, dwc_scatter_avx2, dwc_sum_avx2, dwc_filter_avx2};

/* ---- the tasks, on either ISA's kernels ---- */

/* Asks for the n floats from p in cache (an item's planes are 16 runs at once, too many for
 * the hardware's stream detection: the next item's are fetched while this one computes). */
static inline void dwc_prefetch(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i += 16) __builtin_prefetch(p + i, 0, 3);
}

/* The channels of item it: image *n, first channel *c0, *cb of them (16 but in the last block). */
static void dwc_item(const DwcJob *j, int64_t it, int64_t *n, int *c0, int *cb)
{
    *n = it / j->nblk;
    *c0 = (int)(it % j->nblk) * DWC_V;
    *cb = j->s->cin - *c0 < DWC_V ? j->s->cin - *c0 : DWC_V;
}

static void dwc_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DwcJob *j = arg;
    const NnConvShape *s = j->s;
    const size_t hw = j->hw, ohw = j->ohw;
    float in[DWC_MAX_IN * DWC_V] __attribute__((aligned(64)));
    float out[DWC_MAX_OUT * DWC_V] __attribute__((aligned(64)));
    /* the padding stays zero: items write the interior only, lanes past cb as zeros */
    memset(in, 0, j->block * sizeof *in);
    DwcSum q = {.blk = in, .base = j->obase, .tap = j->taps, .toff = j->toff, .np = (int)ohw, .ntp = j->nt};
    for (int64_t it = b; it < e; it++) {
        int64_t n;
        int c0, cb;
        dwc_item(j, it, &n, &c0, &cb);
        const float *x = j->x + ((size_t)n * s->cin + (size_t)c0) * hw;
        if (it + 1 < e) dwc_prefetch(x + (size_t)cb * hw, DWC_V * hw);
        j->k->gather(x, hw, cb, hw, j->ipos, in);
        q.wt = j->wt + (size_t)(c0 / DWC_V) * j->nt * DWC_V;
        j->k->sum(&q, out);
        j->k->scatter(out, ohw, cb, j->b ? j->b + c0 : NULL, 0, j->y + ((size_t)n * s->cout + (size_t)c0) * ohw,
                      ohw);
    }
}

/* dx as a forward pass over dy: dy sits at its outputs' window corners in a zeroed block (guard
 * vectors before it, so that corner - offset stays inside), and padded pixel p sums w[t] times
 * the block at p - toff[t] over the taps whose p - toff[t] can be a corner (stride 2: the taps of
 * p's row and column phase, a quarter of them on average), DWC_G pixels of one phase side by
 * side in registers, taps ascending. A p - toff[t] that is no output's corner holds a zero:
 * columns past the last corner and rows below the last (a column below 0 lands on the row
 * before's: wp - 1 - (ow - 1) stride >= kw - 1, no corner). */
static void dwc_bwd_data_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DwcJob *j = arg;
    const NnConvShape *s = j->s;
    const size_t hw = j->hw, ohw = j->ohw, guard = (size_t)j->toff[j->nt - 1] * DWC_V;
    float dq[2 * DWC_MAX_IN * DWC_V] __attribute__((aligned(64)));
    float out[DWC_MAX_IN * DWC_V] __attribute__((aligned(64)));
    float *blk = dq + guard;
    memset(dq, 0, guard * sizeof *dq + j->block * sizeof *dq); /* items write the corners only */
    DwcSum q = {.blk = blk, .base = j->ipos, .toff = j->toff, .neg = 1};
    for (int64_t it = b; it < e; it++) {
        int64_t n;
        int c0, cb;
        dwc_item(j, it, &n, &c0, &cb);
        const float *dy = j->dy + ((size_t)n * s->cout + (size_t)c0) * ohw;
        float *dx = j->dx + ((size_t)n * s->cin + (size_t)c0) * hw;
        if (it + 1 < e) {
            dwc_prefetch(dy + (size_t)cb * ohw, DWC_V * ohw);
            dwc_prefetch(dx + (size_t)cb * hw, DWC_V * hw);
        }
        j->k->gather(dy, ohw, cb, ohw, j->obase, blk);
        q.wt = j->wt + (size_t)(c0 / DWC_V) * j->nt * DWC_V;
        for (int ph = 0; ph < j->nph; ph++) {
            q.idx = j->ph_pix[ph], q.np = j->ph_npix[ph], q.tap = j->ph_tap[ph], q.ntp = j->ph_ntap[ph];
            j->k->sum(&q, out);
        }
        j->k->scatter(out, hw, cb, NULL, 1, dx, hw);
    }
}

/* Item = 16 channels over every image: dw [c][t] += the double sums, image by image, of each
 * image's float sums over its outputs. */
static void dwc_bwd_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DwcJob *j = arg;
    const NnConvShape *s = j->s;
    const int nt = j->nt;
    const size_t hw = j->hw, ohw = j->ohw;
    float in[DWC_MAX_IN * DWC_V] __attribute__((aligned(64)));
    float g[DWC_MAX_OUT * DWC_V] __attribute__((aligned(64)));
    double sum[DWC_MAX_TAPS * DWC_V] __attribute__((aligned(64)));
    memset(in, 0, j->block * sizeof *in);
    for (int64_t blk = b; blk < e; blk++) {
        const int c0 = (int)blk * DWC_V, cb = s->cin - c0 < DWC_V ? s->cin - c0 : DWC_V;
        memset(sum, 0, (size_t)nt * DWC_V * sizeof *sum);
        for (int n = 0; n < s->n; n++) {
            const float *x = j->x + ((size_t)n * s->cin + (size_t)c0) * hw;
            const float *dy = j->dy + ((size_t)n * s->cout + (size_t)c0) * ohw;
            if (n + 1 < s->n) {
                dwc_prefetch(x + (size_t)s->cin * hw, (size_t)cb * hw);
                dwc_prefetch(dy + (size_t)s->cout * ohw, (size_t)cb * ohw);
            }
            j->k->gather(x, hw, cb, hw, j->ipos, in);
            j->k->gather(dy, ohw, cb, ohw, NULL, g);
            /* taps in balanced runs of at most DWC_G (9: 4 + 5; 25: 6 + 6 + 6 + 7) */
            const int nch = (nt + DWC_G - 1) / DWC_G;
            for (int ch = 0; ch < nch; ch++) {
                const int t0 = nt * ch / nch, tn = nt * (ch + 1) / nch - t0;
                j->k->filter(tn, ohw, g, in, j->obase, j->toff + t0, sum + (size_t)t0 * DWC_V);
            }
        }
        for (int l = 0; l < cb; l++)
            for (int t = 0; t < nt; t++)
                j->dw[(size_t)(c0 + l) * nt + t] += (float)sum[(size_t)t * DWC_V + l];
    }
}

/* The job's geometry: weights by channel block and tap, 16 lanes each, and the place and phase
 * tables. Frees with dwc_free. */
static void dwc_setup(const NnConvShape *s, const float *w, DwcJob *j)
{
    const int wp = s->w + 2 * s->pad, st = s->stride;
    j->s = s;
    j->k = cpu_avx512() ? &DWC_KERN_AVX512 : &DWC_KERN_AVX2;
    j->nblk = (s->cin + DWC_V - 1) / DWC_V;
    j->nt = s->kh * s->kw;
    j->hw = (size_t)s->h * s->w;
    j->ohw = (size_t)s->oh * s->ow;
    j->block = (size_t)(s->h + 2 * s->pad) * wp * DWC_V;
    j->nph = st * st;
    /* ipos, obase, toff, taps, then per phase its pixels and taps */
    int *tab = dd_malloc((2 * j->hw + j->ohw + (size_t)(2 + j->nph) * DWC_G + (size_t)(2 + j->nph) * j->nt) *
                         sizeof *tab);
    int *ipos = tab, *obase = tab + j->hw + DWC_G, *toff = obase + j->ohw + DWC_G, *taps = toff + j->nt;
    int *ph = taps + j->nt;
    for (int i = 0; i < s->h; i++)
        for (int k = 0; k < s->w; k++) ipos[i * s->w + k] = (i + s->pad) * wp + k + s->pad;
    for (int oi = 0; oi < s->oh; oi++)
        for (int oj = 0; oj < s->ow; oj++) obase[oi * s->ow + oj] = oi * st * wp + oj * st;
    for (int g = 0; g < DWC_G; g++) ipos[j->hw + (size_t)g] = ipos[0], obase[j->ohw + (size_t)g] = obase[0];
    for (int ki = 0; ki < s->kh; ki++)
        for (int kj = 0; kj < s->kw; kj++) toff[ki * s->kw + kj] = ki * wp + kj;
    for (int t = 0; t < j->nt; t++) taps[t] = t;
    for (int p = 0; p < j->nph; p++) { /* phase p: padded rows = p / st, columns = p % st (mod st) */
        const int pr = p / st, pc = p % st;
        int np = 0, ntp = 0;
        j->ph_pix[p] = ph;
        for (int i = 0; i < s->h; i++)
            for (int k = 0; k < s->w; k++)
                if ((i + s->pad) % st == pr && (k + s->pad) % st == pc) ph[np++] = i * s->w + k;
        for (int g = 0; g < DWC_G; g++) ph[np + g] = np ? ph[0] : 0;
        ph += np + DWC_G;
        j->ph_tap[p] = ph;
        for (int t = 0; t < j->nt; t++)
            if ((t / s->kw) % st == pr && (t % s->kw) % st == pc) ph[ntp++] = t;
        ph += ntp;
        j->ph_npix[p] = np, j->ph_ntap[p] = ntp;
    }
    j->ipos = ipos, j->obase = obase, j->toff = toff, j->taps = taps;
    j->wt = NULL;
    if (w) {
        float *wt = dd_calloc((size_t)j->nblk * j->nt * DWC_V, sizeof *wt);
        for (int c = 0; c < s->cin; c++)
            for (int t = 0; t < j->nt; t++)
                wt[((size_t)(c / DWC_V) * j->nt + t) * DWC_V + c % DWC_V] = w[(size_t)c * j->nt + t];
        j->wt = wt;
    }
}

static void dwc_free(DwcJob *j)
{
    free((void *)j->ipos);
    free((void *)j->wt);
}

void cpu_dwc_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y)
{
    DwcJob j = {.x = x, .b = b, .y = y};
    dwc_setup(s, w, &j);
    cpu_for(be, (int64_t)s->n * j.nblk, 2, dwc_fwd_task, &j);
    dwc_free(&j);
}

void cpu_dwc_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx)
{
    DwcJob j = {.dy = dy, .dx = dx};
    dwc_setup(s, w, &j);
    cpu_for(be, (int64_t)s->n * j.nblk, 2, dwc_bwd_data_task, &j);
    dwc_free(&j);
}

void cpu_dwc_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x, float *dw)
{
    DwcJob j = {.x = x, .dy = dy, .dw = dw};
    dwc_setup(s, NULL, &j);
    cpu_for(be, j.nblk, 1, dwc_bwd_filter_task, &j);
    dwc_free(&j);
}

#else /* !DWC_X86: cpu_dwc_ok is 0 */

void cpu_dwc_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y)
{
    (void)be, (void)s, (void)x, (void)w, (void)b, (void)y;
    dd_die(DD_EXIT_DATA, "nn: cpu: conv_dwc.c's depthwise convolution off x86");
}

void cpu_dwc_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx)
{
    (void)be, (void)s, (void)dy, (void)w, (void)dx;
    dd_die(DD_EXIT_DATA, "nn: cpu: conv_dwc.c's depthwise convolution off x86");
}

void cpu_dwc_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x, float *dw)
{
    (void)be, (void)s, (void)dy, (void)x, (void)dw;
    dd_die(DD_EXIT_DATA, "nn: cpu: conv_dwc.c's depthwise convolution off x86");
}

#endif

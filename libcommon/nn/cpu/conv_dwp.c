/* conv_dwp.c - depthwise 3x3 convolutions, padding 1, each plane held in AVX2 registers where it
 * lies in NCHW (MobileNetV2's, ShuffleNetV2's and EfficientNet's small-image stages): stride 1 on
 * 4x4, 8x8 and 16x16 planes (forward, backward data dx +=, backward filter dw +=) and stride 2 from 8x8
 * and 16x16 (forward and backward filter), on CPUs with AVX2 and FMA; with AVX-512 from 8x8 on,
 * where it took 0.18 to 0.54 of the time of conv_dwc.c's and conv_dw.c's 16-lane vectors (an
 * Intel Xeon, bench_ops), while on 4x4 planes conv_dwc.c was as fast and keeps them.
 *
 * The other depthwise paths move every plane into another layout and back (conv_direct.c: 8
 * images innermost; conv_dwc.c: 16 channels innermost) or split it into runs (conv_dw.c); on
 * 16- and 64-pixel planes those moves, not the 9 multiply-adds per pixel, were the cost. Here a
 * 4x4 plane is two vectors (rows 0-1 and 2-3, one row per 128-bit lane), an 8x8 plane eight
 * (one row each), a 16x16 plane's row two. The taps' shifted copies of the plane come from in-register shifts with zero
 * fill: a column to the left or right is a byte shift within each lane (4x4) or a lane
 * permute and an align (8x8); a row up or down is a lane permute (4x4) or the neighbouring row
 * vector (8x8), zero past the edge. So the padding is the shifts' zeros, every tap of every pixel
 * is one multiply-add (the border's against zero), and nothing is copied. Stride 2 takes each
 * input row's (8x8: each pair of rows') even and odd pixels apart (two shuffles and two
 * permutes): the taps of output column j are the odd pixel j - 1 (the odds shifted right, zero
 * fill), the even j and the odd j.
 *
 * Each output (and dx pixel) is the sum of its 9 taps in the order (0,0), (0,1) .. (2,2), the
 * bias (or dx's old value) added last. Backward data is the forward over dy with the taps
 * rotated by 180 degrees. The weight gradient sums tap t's products in float lanes over blocks of
 * DWP_IMGS images, each block's lanes then added to double sums in image order; an item is a
 * block of DWP_CB channels over all images, so results do not depend on the thread count. */
#include "libcommon/nn/cpu/cpu.h"

#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DWP_X86 1
#include <immintrin.h>
#define DWP_AVX2 __attribute__((target("avx2,fma")))
#endif

#define DWP_CB 16   /* channels per task item (the planes of an image's block lie together) */
#define DWP_IMGS 16 /* images summed in float before the weight gradient's double sums */

int cpu_dwp_ok(const NnConvShape *s)
{
#ifdef DWP_X86
    if (!(s->groups > 1 && s->groups == s->cin && s->groups == s->cout && s->kh == 3 && s->kw == 3 &&
          s->pad == 1 && s->dil == 1 && s->h == s->w &&
          ((s->stride == 1 && (s->h == 4 || s->h == 8 || s->h == 16)) ||
           (s->stride == 2 && (s->h == 8 || s->h == 16)))))
        return 0;
    const char *env = getenv("DD_CPU_CONV"); /* read per call, shapes first: tests run the other paths */
    return cpu_avx2() && (s->h >= 8 || !cpu_avx512()) && !(env && (!strcmp(env, "gemm") || !strcmp(env, "direct")));
#else
    (void)s;
    return 0;
#endif
}

int cpu_dwp_data_ok(const NnConvShape *s)
{
    return cpu_dwp_ok(s) && s->stride == 1;
}

#ifdef DWP_X86

/* ---- shifts with zero fill ---- */

/* 4x4 (a row per 128-bit lane): column j gets j - 1 (right), j + 1 (left) */
DWP_AVX2 static inline __m256 r4(__m256 v)
{
    return _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(v), 4));
}
DWP_AVX2 static inline __m256 l4(__m256 v)
{
    return _mm256_castsi256_ps(_mm256_srli_si256(_mm256_castps_si256(v), 4));
}

/* 8x8 (a row per vector): the same across the two lanes */
DWP_AVX2 static inline __m256 r8(__m256 v)
{
    __m256i t = _mm256_castps_si256(_mm256_permute2f128_ps(v, v, 0x08)); /* [0 | lo] */
    return _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(v), t, 12));
}
DWP_AVX2 static inline __m256 l8(__m256 v)
{
    __m256i t = _mm256_castps_si256(_mm256_permute2f128_ps(v, v, 0x81)); /* [hi | 0] */
    return _mm256_castsi256_ps(_mm256_alignr_epi8(t, _mm256_castps_si256(v), 4));
}

/* A source vector's three tap sources: for output column j the pixels j - 1, j, j + 1 (4x4: a row
 * per lane; 8x8: a row per vector) */
DWP_AVX2 static inline void taps4(__m256 v, __m256 t[3])
{
    t[0] = r4(v), t[1] = v, t[2] = l4(v);
}
DWP_AVX2 static inline void taps8(__m256 v, __m256 t[3])
{
    t[0] = r8(v), t[1] = v, t[2] = l8(v);
}

/* the sum of the taps w[3a + b] times the sources u (a = 0), m, d, in tap order */
#define DWP_SUM9(acc, w, u, m, d)                                                          \
    do {                                                                                   \
        acc = _mm256_mul_ps(w[0], u[0]);                                                   \
        acc = _mm256_fmadd_ps(w[1], u[1], acc);                                            \
        acc = _mm256_fmadd_ps(w[2], u[2], acc);                                            \
        acc = _mm256_fmadd_ps(w[3], m[0], acc);                                            \
        acc = _mm256_fmadd_ps(w[4], m[1], acc);                                            \
        acc = _mm256_fmadd_ps(w[5], m[2], acc);                                            \
        acc = _mm256_fmadd_ps(w[6], d[0], acc);                                            \
        acc = _mm256_fmadd_ps(w[7], d[1], acc);                                            \
        acc = _mm256_fmadd_ps(w[8], d[2], acc);                                            \
    } while (0)

/* acc[b] += g times the sources t[b] of one tap row; acc[3a + b] += ... of the three */
#define DWP_GRAD3(acc, g, t)                                                               \
    do {                                                                                   \
        (acc)[0] = _mm256_fmadd_ps(g, (t)[0], (acc)[0]);                                   \
        (acc)[1] = _mm256_fmadd_ps(g, (t)[1], (acc)[1]);                                   \
        (acc)[2] = _mm256_fmadd_ps(g, (t)[2], (acc)[2]);                                   \
    } while (0)
#define DWP_GRAD9(acc, g, u, m, d)                                                         \
    do {                                                                                   \
        DWP_GRAD3(acc, g, u);                                                              \
        DWP_GRAD3(acc + 3, g, m);                                                          \
        DWP_GRAD3(acc + 6, g, d);                                                          \
    } while (0)

/* The accumulators of a plane in local variables (the caller's may alias the planes: __m256
 * may alias anything, so updates through a pointer would go to memory row by row) */
#define DWP_MOVE9(d, s)                                                                    \
    do {                                                                                   \
        d[0] = s[0], d[1] = s[1], d[2] = s[2], d[3] = s[3], d[4] = s[4];                   \
        d[5] = s[5], d[6] = s[6], d[7] = s[7], d[8] = s[8];                                \
    } while (0)

/* One plane: out = the taps w over in, then + bias (acc 0) or + out's old values (acc 1).
 * 4x4: rows (0,1) and (2,3); up/down of (0,1) are (-1,0) and (1,2), of (2,3) (1,2) and (3,4). */
DWP_AVX2 static inline void plane4(const float *in, float *out, const __m256 w[9], __m256 bias, int acc)
{
    const __m256 a = _mm256_loadu_ps(in), b = _mm256_loadu_ps(in + 8);
    __m256 ua[3], ta[3], m[3], tb[3], db[3], ya, yb;
    taps4(_mm256_permute2f128_ps(a, a, 0x08), ua);
    taps4(a, ta);
    taps4(_mm256_permute2f128_ps(a, b, 0x21), m);
    DWP_SUM9(ya, w, ua, ta, m);
    taps4(b, tb);
    taps4(_mm256_permute2f128_ps(b, b, 0x81), db);
    DWP_SUM9(yb, w, m, tb, db);
    _mm256_storeu_ps(out, _mm256_add_ps(ya, acc ? _mm256_loadu_ps(out) : bias));
    _mm256_storeu_ps(out + 8, _mm256_add_ps(yb, acc ? _mm256_loadu_ps(out + 8) : bias));
}

/* 8x8: output row i takes rows i - 1, i, i + 1 (zero outside), each row's sources made once */
DWP_AVX2 static inline void plane8(const float *in, float *out, const __m256 w[9], __m256 bias, int acc)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 u[3] = {z, z, z}, m[3], d[3], y;
    taps8(_mm256_loadu_ps(in), m);
    for (int i = 0; i < 8; i++) {
        if (i < 7) taps8(_mm256_loadu_ps(in + 8 * (i + 1)), d);
        else d[0] = d[1] = d[2] = z;
        DWP_SUM9(y, w, u, m, d);
        _mm256_storeu_ps(out + 8 * i, _mm256_add_ps(y, acc ? _mm256_loadu_ps(out + 8 * i) : bias));
        u[0] = m[0], u[1] = m[1], u[2] = m[2];
        m[0] = d[0], m[1] = d[1], m[2] = d[2];
    }
}

/* 16x16 (a row as two vectors): a row's three tap sources for the left half (t[0..2]: columns
 * j - 1, j, j + 1) and the right half (t[3..5]), zero past the row's ends */
DWP_AVX2 static inline void taps_row16s1(const float *row, __m256 t[6])
{
    const __m256 lo = _mm256_loadu_ps(row), hi = _mm256_loadu_ps(row + 8);
    const __m256i mid = _mm256_castps_si256(_mm256_permute2f128_ps(lo, hi, 0x21)); /* [lo.hi | hi.lo] */
    t[0] = r8(lo);
    t[1] = lo;
    t[2] = _mm256_castsi256_ps(_mm256_alignr_epi8(mid, _mm256_castps_si256(lo), 4));
    t[3] = _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(hi), mid, 12));
    t[4] = hi;
    t[5] = l8(hi);
}

/* ---- stride 2 ---- */

/* The evens and odds of two rows of 8: e = [p's evens | q's evens], o = the odds likewise. */
DWP_AVX2 static inline void evens_odds(__m256 p, __m256 q, __m256 *e, __m256 *o)
{
    const __m256 te = _mm256_shuffle_ps(p, q, 0x88), to = _mm256_shuffle_ps(p, q, 0xdd);
    *e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(te), 0xd8));
    *o = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(to), 0xd8));
}

/* A tap row's three sources: for output column j the odd pixel j - 1, the even j, the odd j.
 * 8x8: rows p and q, one per lane of the result; 16x16: one row of 16. */
DWP_AVX2 static inline void taps_pair(__m256 p, __m256 q, __m256 t[3])
{
    evens_odds(p, q, &t[1], &t[2]);
    t[0] = r4(t[2]);
}

DWP_AVX2 static inline void taps_row16(const float *row, __m256 t[3])
{
    evens_odds(_mm256_loadu_ps(row), _mm256_loadu_ps(row + 8), &t[1], &t[2]);
    t[0] = r8(t[2]);
}

/* 8x8 -> 4x4: output rows (0,1) take input rows (-1,1), (0,2), (1,3); rows (2,3) take (3,5),
 * (4,6), (5,7). */
DWP_AVX2 static inline void plane8s2(const float *in, float *out, const __m256 w[9], __m256 bias)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 u[3], m[3], d[3], y;
    taps_pair(z, _mm256_loadu_ps(in + 8), u);
    taps_pair(_mm256_loadu_ps(in), _mm256_loadu_ps(in + 16), m);
    taps_pair(_mm256_loadu_ps(in + 8), _mm256_loadu_ps(in + 24), d);
    DWP_SUM9(y, w, u, m, d);
    _mm256_storeu_ps(out, _mm256_add_ps(y, bias));
    taps_pair(_mm256_loadu_ps(in + 24), _mm256_loadu_ps(in + 40), u);
    taps_pair(_mm256_loadu_ps(in + 32), _mm256_loadu_ps(in + 48), m);
    taps_pair(_mm256_loadu_ps(in + 40), _mm256_loadu_ps(in + 56), d);
    DWP_SUM9(y, w, u, m, d);
    _mm256_storeu_ps(out + 8, _mm256_add_ps(y, bias));
}

/* 16x16 -> 8x8: output row i takes input rows 2i - 1, 2i, 2i + 1 */
DWP_AVX2 static inline void plane16s2(const float *in, float *out, const __m256 w[9], __m256 bias)
{
    __m256 u[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}, m[3], d[3], y;
    for (int i = 0; i < 8; i++) {
        taps_row16(in + 32 * i, m);
        taps_row16(in + 32 * i + 16, d);
        DWP_SUM9(y, w, u, m, d);
        _mm256_storeu_ps(out + 8 * i, _mm256_add_ps(y, bias));
        u[0] = d[0], u[1] = d[1], u[2] = d[2];
    }
}

/* Six tap sources: zeroed, or moved along the window of rows (statements, not loops, so the
 * arrays stay in registers) */
#define DWP_ZERO6(a)                                                                       \
    do {                                                                                   \
        a[0] = a[1] = a[2] = a[3] = a[4] = a[5] = _mm256_setzero_ps();                     \
    } while (0)
#define DWP_SHIFT6(u, m, d)                                                                \
    do {                                                                                   \
        u[0] = m[0], u[1] = m[1], u[2] = m[2], u[3] = m[3], u[4] = m[4], u[5] = m[5];      \
        m[0] = d[0], m[1] = d[1], m[2] = d[2], m[3] = d[3], m[4] = d[4], m[5] = d[5];      \
    } while (0)

/* 16x16, stride 1: output row i takes rows i - 1, i, i + 1 (zero outside) */
DWP_AVX2 static inline void plane16(const float *in, float *out, const __m256 w[9], __m256 bias, int acc)
{
    __m256 u[6], m[6], d[6], y;
    DWP_ZERO6(u);
    taps_row16s1(in, m);
    for (int i = 0; i < 16; i++) {
        if (i < 15) taps_row16s1(in + 16 * (i + 1), d);
        else DWP_ZERO6(d);
        float *o = out + 16 * i;
        DWP_SUM9(y, w, u, m, d);
        _mm256_storeu_ps(o, _mm256_add_ps(y, acc ? _mm256_loadu_ps(o) : bias));
        DWP_SUM9(y, w, (u + 3), (m + 3), (d + 3));
        _mm256_storeu_ps(o + 8, _mm256_add_ps(y, acc ? _mm256_loadu_ps(o + 8) : bias));
        DWP_SHIFT6(u, m, d);
    }
}

typedef struct {
    const NnConvShape *s;
    const float *in, *w, *b;
    float *out;
    int rot, acc; /* backward data: taps rotated, added to out */
} DwpJob;

/* Item = one image and DWP_CB channels. */
DWP_AVX2 static void dwp_plane_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DwpJob *j = arg;
    const NnConvShape *s = j->s;
    const int64_t nblk = (s->cin + DWP_CB - 1) / DWP_CB;
    const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow; /* in and out: x and y, or dy and dx */
    for (int64_t it = b; it < e; it++) {
        int64_t n = it / nblk, c0 = it % nblk * DWP_CB, c1 = c0 + DWP_CB < s->cin ? c0 + DWP_CB : s->cin;
        for (int64_t c = c0; c < c1; c++) {
            __m256 w[9];
            for (int t = 0; t < 9; t++) w[t] = _mm256_set1_ps(j->w[c * 9 + (j->rot ? 8 - t : t)]);
            const __m256 bias = _mm256_set1_ps(j->b ? j->b[c] : 0.0f);
            size_t plane = (size_t)n * s->cin + (size_t)c;
            const float *in = j->in + plane * (j->rot ? ohw : hw);
            float *out = j->out + plane * (j->rot ? hw : ohw);
            if (s->stride == 2) {
                if (s->h == 8) plane8s2(in, out, w, bias);
                else plane16s2(in, out, w, bias);
            } else if (s->h == 4) {
                plane4(in, out, w, bias, j->acc);
            } else if (s->h == 8) {
                plane8(in, out, w, bias, j->acc);
            } else {
                plane16(in, out, w, bias, j->acc);
            }
        }
    }
}

static void dwp_run(NnBackend *be, const NnConvShape *s, DwpJob *j)
{
    int64_t nblk = (s->cin + DWP_CB - 1) / DWP_CB;
    cpu_for(be, (int64_t)s->n * nblk, 2, dwp_plane_task, j);
}

void cpu_dwp_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y)
{
    DwpJob j = {.s = s, .in = x, .w = w, .b = b, .out = y};
    dwp_run(be, s, &j);
}

void cpu_dwp_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx)
{
    DwpJob j = {.s = s, .in = dy, .w = w, .out = dx, .rot = 1, .acc = 1};
    dwp_run(be, s, &j);
}

/* ---- weight gradient ---- */

/* acc[t] += dy times the plane's copy under tap t (the forward's sources) */
DWP_AVX2 static inline void grad4(const float *x, const float *dy, __m256 out[9])
{
    __m256 acc[9];
    DWP_MOVE9(acc, out);
    const __m256 a = _mm256_loadu_ps(x), b = _mm256_loadu_ps(x + 8), m = _mm256_permute2f128_ps(a, b, 0x21);
    const __m256 ga = _mm256_loadu_ps(dy), gb = _mm256_loadu_ps(dy + 8);
    __m256 t[3]; /* one tap row's sources at a time: all five rows' at once spill registers */
    taps4(_mm256_permute2f128_ps(a, a, 0x08), t);
    DWP_GRAD3(acc, ga, t);
    taps4(a, t);
    DWP_GRAD3(acc + 3, ga, t);
    taps4(m, t);
    DWP_GRAD3(acc + 6, ga, t);
    DWP_GRAD3(acc, gb, t);
    taps4(b, t);
    DWP_GRAD3(acc + 3, gb, t);
    taps4(_mm256_permute2f128_ps(b, b, 0x81), t);
    DWP_GRAD3(acc + 6, gb, t);
    DWP_MOVE9(out, acc);
}

DWP_AVX2 static inline void grad8(const float *x, const float *dy, __m256 out[9])
{
    __m256 acc[9];
    DWP_MOVE9(acc, out);
    const __m256 z = _mm256_setzero_ps();
    __m256 u[3] = {z, z, z}, m[3], d[3];
    taps8(_mm256_loadu_ps(x), m);
    for (int i = 0; i < 8; i++) {
        if (i < 7) taps8(_mm256_loadu_ps(x + 8 * (i + 1)), d);
        else d[0] = d[1] = d[2] = z;
        DWP_GRAD9(acc, _mm256_loadu_ps(dy + 8 * i), u, m, d);
        u[0] = m[0], u[1] = m[1], u[2] = m[2];
        m[0] = d[0], m[1] = d[1], m[2] = d[2];
    }
    DWP_MOVE9(out, acc);
}

DWP_AVX2 static inline void grad8s2(const float *x, const float *dy, __m256 out[9])
{
    __m256 acc[9];
    DWP_MOVE9(acc, out);
    const __m256 z = _mm256_setzero_ps();
    __m256 u[3], m[3], d[3];
    taps_pair(z, _mm256_loadu_ps(x + 8), u);
    taps_pair(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 16), m);
    taps_pair(_mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 24), d);
    DWP_GRAD9(acc, _mm256_loadu_ps(dy), u, m, d);
    taps_pair(_mm256_loadu_ps(x + 24), _mm256_loadu_ps(x + 40), u);
    taps_pair(_mm256_loadu_ps(x + 32), _mm256_loadu_ps(x + 48), m);
    taps_pair(_mm256_loadu_ps(x + 40), _mm256_loadu_ps(x + 56), d);
    DWP_GRAD9(acc, _mm256_loadu_ps(dy + 8), u, m, d);
    DWP_MOVE9(out, acc);
}

DWP_AVX2 static inline void grad16s2(const float *x, const float *dy, __m256 out[9])
{
    __m256 acc[9];
    DWP_MOVE9(acc, out);
    __m256 u[3] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}, m[3], d[3];
    for (int i = 0; i < 8; i++) {
        taps_row16(x + 32 * i, m);
        taps_row16(x + 32 * i + 16, d);
        DWP_GRAD9(acc, _mm256_loadu_ps(dy + 8 * i), u, m, d);
        u[0] = d[0], u[1] = d[1], u[2] = d[2];
    }
    DWP_MOVE9(out, acc);
}

DWP_AVX2 static inline void grad16(const float *x, const float *dy, __m256 out[9])
{
    __m256 acc[9];
    DWP_MOVE9(acc, out);
    __m256 u[6], m[6], d[6];
    DWP_ZERO6(u);
    taps_row16s1(x, m);
    for (int i = 0; i < 16; i++) {
        if (i < 15) taps_row16s1(x + 16 * (i + 1), d);
        else DWP_ZERO6(d);
        DWP_GRAD9(acc, _mm256_loadu_ps(dy + 16 * i), u, m, d);
        DWP_GRAD9(acc, _mm256_loadu_ps(dy + 16 * i + 8), (u + 3), (m + 3), (d + 3));
        DWP_SHIFT6(u, m, d);
    }
    DWP_MOVE9(out, acc);
}

typedef struct {
    const NnConvShape *s;
    const float *x, *dy;
    float *dw;
} DwpGradJob;

/* Item = DWP_CB channels over all images: per block of DWP_IMGS images, each channel's 9 taps in
 * float lanes (the block's planes image by image, channel by channel, as they lie), then added
 * lane by lane to double sums; dw[c][t] += the lanes' total, lanes in order. */
DWP_AVX2 static void dwp_grad_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const DwpGradJob *j = arg;
    const NnConvShape *s = j->s;
    const size_t hw = (size_t)s->h * s->w, ohw = (size_t)s->oh * s->ow;
    for (int64_t blk = b; blk < e; blk++) {
        const int64_t c0 = blk * DWP_CB, cb = s->cin - c0 < DWP_CB ? s->cin - c0 : DWP_CB;
        double sum[DWP_CB][9][8] = {{{0}}};
        __m256 acc[DWP_CB][9];
        for (int n0 = 0; n0 < s->n; n0 += DWP_IMGS) {
            const int n1 = n0 + DWP_IMGS < s->n ? n0 + DWP_IMGS : s->n;
            for (int l = 0; l < cb; l++)
                for (int t = 0; t < 9; t++) acc[l][t] = _mm256_setzero_ps();
            for (int n = n0; n < n1; n++)
                for (int l = 0; l < cb; l++) {
                    size_t plane = (size_t)n * s->cin + (size_t)(c0 + l);
                    const float *x = j->x + plane * hw, *dy = j->dy + plane * ohw;
                    if (s->stride == 2) {
                        if (s->h == 8) grad8s2(x, dy, acc[l]);
                        else grad16s2(x, dy, acc[l]);
                    } else if (s->h == 4) {
                        grad4(x, dy, acc[l]);
                    } else if (s->h == 8) {
                        grad8(x, dy, acc[l]);
                    } else {
                        grad16(x, dy, acc[l]);
                    }
                }
            for (int l = 0; l < cb; l++)
                for (int t = 0; t < 9; t++) {
                    float v[8];
                    _mm256_storeu_ps(v, acc[l][t]);
                    for (int k = 0; k < 8; k++) sum[l][t][k] += v[k];
                }
        }
        for (int l = 0; l < cb; l++)
            for (int t = 0; t < 9; t++) {
                const double *q = sum[l][t];
                j->dw[(c0 + l) * 9 + t] += (float)(((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7])));
            }
    }
}

void cpu_dwp_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x, float *dw)
{
    DwpGradJob j = {.s = s, .x = x, .dy = dy, .dw = dw};
    cpu_for(be, (s->cin + DWP_CB - 1) / DWP_CB, 2, dwp_grad_task, &j);
}

#else /* !DWP_X86: cpu_dwp_ok is 0 */

void cpu_dwp_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y)
{
    (void)be, (void)s, (void)x, (void)w, (void)b, (void)y;
    dd_die(DD_EXIT_DATA, "nn: cpu: conv_dwp.c needs x86");
}

void cpu_dwp_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx)
{
    (void)be, (void)s, (void)dy, (void)w, (void)dx;
    dd_die(DD_EXIT_DATA, "nn: cpu: conv_dwp.c needs x86");
}

void cpu_dwp_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x, float *dw)
{
    (void)be, (void)s, (void)dy, (void)x, (void)dw;
    dd_die(DD_EXIT_DATA, "nn: cpu: conv_dwp.c needs x86");
}

#endif

/* conv_dw.c - depthwise convolution (one channel per group) on flat runs of a polyphase plane,
 * with AVX-512F or AVX2: any stride, padding and dilation; forward, backward data and backward
 * filter. AVX2 computes each 16-lane vector of the layout as two 8-lane halves with the same
 * operations lane by lane, so both give the same bits.
 * conv.c's plane kernels (and conv_direct.c for stride-1 'same' shapes) take the rest.
 *
 * Layout. A plane x [h][w], padded by pad on every side (hp x wp), is split into stride^2 phase
 * planes: phase (ri, rj) holds the padded pixels (a, b) with a % stride = ri and b % stride = rj,
 * at row a / stride, column b / stride of a qh x qw plane (qh = ceil(hp / stride), qw likewise),
 * zero where the pixel is padding. Output (oi, oj) takes from tap (ki, kj) the padded pixel
 * (oi stride + ti, oj stride + tj), ti = ki dil and tj = kj dil: in phase (ti % stride,
 * tj % stride), row oi + ti / stride, column oj + tj / stride. Laid out qw apart as well
 * (o = oi qw + oj; columns ow..qw-1 are computed and dropped), the outputs read one contiguous run
 * per tap at a fixed offset: out[o] = sum over taps of w[t] P[o + off[t]], 16 outputs per FMA,
 * with no row edges and no short rows (a 4 x 4 output plane is 20 lanes of two vectors, where
 * a row kernel runs four rows of 4).
 *
 * Backward data is the transposed convolution: padded pixel (a, b), in phase (ri, rj), gets
 * w[t] dy[a / stride - ti / stride][b / stride - tj / stride] from every tap with ti % stride = ri
 * and tj % stride = rj. With dy laid out qw apart (zero columns ow..qw-1, zero rows before and
 * after) that is again one run per tap, read at minus its offset, over the phase plane's rows
 * that hold real pixels; those pixels are then added to dx (stride 2: two permutes interleave the
 * two column phases back). Negative columns read the row before's zero columns:
 * qw - ow >= (kw - 1) dil / stride, as floor is superadditive.
 *
 * Backward filter: dw[t] = the sum over images and outputs of dy[o] P[o + off[t]], dy laid out
 * qw apart with zero columns: per image and tap a 16-lane float dot product, added lane by lane
 * to 16 double sums in image order, which are summed in one fixed order at the end.
 *
 * Zeros (padding, slack, dy's zero columns) are written once per task: each plane writes its real
 * pixels only, to the same places. Stride 2's split is two permutes per 32 pixels of a row.
 *
 * Every result is summed in one fixed order (taps ascending; images ascending), per plane or per
 * channel: it does not depend on the thread count.
 */
#include "libcommon/nn/cpu/cpu.h"

#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define DWF_X86 1
#include <immintrin.h>
#define DWF_AVX512 __attribute__((target("avx512f")))
#define DWF_AVX2 __attribute__((target("avx2,fma")))
#endif

#define DWF_MAX_TAPS 64
#define DWF_MAX_STRIDE 8
#define DWF_V 16 /* lanes of a vector */

int cpu_dwflat_ok(const NnConvShape *s)
{
#ifdef DWF_X86
    const char *env = getenv("DD_CPU_CONV"); /* read per call: gemm tests conv.c's plane kernels */
    if (!cpu_avx2() || (env && strcmp(env, "gemm") == 0)) return 0;
    return s->groups > 1 && s->groups == s->cin && s->groups == s->cout && s->kh * s->kw <= DWF_MAX_TAPS &&
           s->stride >= 1 && s->stride <= DWF_MAX_STRIDE && s->dil >= 1 && s->pad >= 0;
#else
    (void)s;
    return 0;
#endif
}

#ifdef DWF_X86

static size_t round_v(size_t n) { return (n + DWF_V - 1) / DWF_V * DWF_V; }

int cpu_dwflat_pick(const NnConvShape *s)
{
    if (!cpu_dwflat_ok(s)) return 0;
    if (!cpu_direct_ok(s)) return 1;
    const char *env = getenv("DD_CPU_CONV");
    if (env && strcmp(env, "direct") == 0) return 0;
    /* stride 1 here: the runs compute oh rows of qw = w + 2 pad lanes, rounded up to DWF_V */
    size_t lanes = round_v((size_t)s->oh * (size_t)(s->w + 2 * s->pad)), outs = (size_t)s->oh * s->ow;
    return 4 * lanes <= 5 * outs;
}

typedef struct {
    int wide;                    /* AVX-512 (cpu_avx512() when made), else AVX2 */
    int n, c, h, w, oh, ow, kh, kw, s, pad, dil, ntap;
    int qh, qw;                  /* a phase plane's rows and columns */
    size_t ps;                   /* floats from one phase plane to the next */
    size_t split;                /* the split plane: s^2 ps floats */
    size_t lo;                   /* outputs computed forward: oh qw rounded up to DWF_V */
    ptrdiff_t off[DWF_MAX_TAPS]; /* tap t's run in the split plane */
    /* backward data: a phase plane's rows that hold real pixels, from flat e0 on, ne outputs (a
     * multiple of DWF_V); phase planes le = e0 + ne floats apart */
    size_t e0, ne, le;
    size_t z;                    /* dy's leading zeros, the largest in-phase offset */
    size_t dqn;                  /* dy laid out qw apart after z zeros: z + max(le, oh qw) floats */
    int first[DWF_MAX_STRIDE * DWF_MAX_STRIDE + 1]; /* phase r's taps: tap[first[r] .. first[r+1]) */
    int tap[DWF_MAX_TAPS];
    ptrdiff_t back[DWF_MAX_TAPS]; /* ... and their reads: minus the in-phase offset */
} DwfGeom;

static void dwf_geom(const NnConvShape *sh, DwfGeom *g)
{
    memset(g, 0, sizeof *g);
    g->wide = cpu_avx512();
    g->n = sh->n, g->c = sh->cin, g->h = sh->h, g->w = sh->w, g->oh = sh->oh, g->ow = sh->ow;
    g->kh = sh->kh, g->kw = sh->kw, g->s = sh->stride, g->pad = sh->pad, g->dil = sh->dil;
    g->ntap = g->kh * g->kw;
    int s = g->s, hp = g->h + 2 * g->pad, wp = g->w + 2 * g->pad;
    g->qh = (hp + s - 1) / s, g->qw = (wp + s - 1) / s;
    g->lo = round_v((size_t)g->oh * g->qw);
    g->z = (size_t)((g->kh - 1) * g->dil / s) * g->qw + (size_t)((g->kw - 1) * g->dil / s);
    /* a phase's forward reads end before lo + z; the plane itself is qh qw */
    size_t need = g->lo + g->z, plane = (size_t)g->qh * g->qw;
    g->ps = round_v(need > plane ? need : plane);
    g->split = (size_t)s * s * g->ps;
    g->e0 = (size_t)(g->pad / s) * g->qw;
    g->ne = round_v((size_t)((g->pad + g->h - 1) / s + 1) * g->qw - g->e0);
    g->le = g->e0 + g->ne;
    /* (rows of dy past le feed padding only, but are packed all the same) */
    g->dqn = g->z + (g->le > (size_t)g->oh * g->qw ? g->le : (size_t)g->oh * g->qw);
    for (int ki = 0; ki < g->kh; ki++)
        for (int kj = 0; kj < g->kw; kj++) {
            int ti = ki * g->dil, tj = kj * g->dil;
            size_t phase = (size_t)((ti % s) * s + tj % s), in = (size_t)(ti / s) * g->qw + (size_t)(tj / s);
            g->off[ki * g->kw + kj] = (ptrdiff_t)(phase * g->ps + in);
        }
    int k = 0;
    for (int r = 0; r < s * s; r++) {
        g->first[r] = k;
        for (int t = 0; t < g->ntap; t++) {
            int ti = t / g->kw * g->dil, tj = t % g->kw * g->dil;
            if ((ti % s) * s + tj % s != r) continue;
            g->tap[k] = t;
            g->back[k++] = -(ptrdiff_t)((size_t)(ti / s) * g->qw + (size_t)(tj / s));
        }
    }
    g->first[s * s] = k;
}

/* The pixels of the run of up to 32 at k of a row of w; m0, m1 the lane masks of its first and
 * second 16. */
static inline int dwf_masks(int w, int k, __mmask16 *m0, __mmask16 *m1)
{
    int nk = w - k < 32 ? w - k : 32;
    *m0 = (__mmask16)(nk >= 16 ? 0xFFFFu : (1u << nk) - 1);
    *m1 = (__mmask16)(nk >= 32 ? 0xFFFFu : nk > 16 ? (1u << (nk - 16)) - 1 : 0u);
    return nk;
}

/* Row r < rows of dst (dn floats apart) <- row r of src (sn apart), n floats each. */
DWF_AVX512 static void dwf_copy_rows512(int rows, int n, const float *src, size_t sn, float *dst, size_t dn)
{
    __mmask16 tail = (__mmask16)((1u << (n % DWF_V)) - 1);
    for (int r = 0; r < rows; r++) {
        const float *sr = src + (size_t)r * sn;
        float *dr = dst + (size_t)r * dn;
        int k = 0;
        for (; k + DWF_V <= n; k += DWF_V) _mm512_storeu_ps(dr + k, _mm512_loadu_ps(sr + k));
        if (tail) _mm512_mask_storeu_ps(dr + k, tail, _mm512_maskz_loadu_ps(tail, sr + k));
    }
}

static void dwf_copy_rows(const DwfGeom *g, int rows, int n, const float *src, size_t sn, float *dst, size_t dn)
{
    if (g->wide) {
        dwf_copy_rows512(rows, n, src, sn, dst, dn);
        return;
    }
    for (int r = 0; r < rows; r++) memcpy(dst + (size_t)r * dn, src + (size_t)r * sn, (size_t)n * sizeof(float));
}

/* Stride 2's split: each run of 32 pixels of a row deinterleaved by two permutes. Pixel iw goes
 * to column phase (iw + pad) % 2, column (iw + pad) / 2: the even pixels to phase pad % 2 from
 * column pad / 2 on, the odd ones to the other phase from (pad + 1) / 2. */
DWF_AVX512 static void dwf_split2(const DwfGeom *g, const float *x, float *xs)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    int w = g->w, pad = g->pad;
    size_t pe = (size_t)(pad % 2) * g->ps + (size_t)(pad / 2);
    size_t po = (size_t)((pad + 1) % 2) * g->ps + (size_t)((pad + 1) / 2);
    for (int ih = 0; ih < g->h; ih++) {
        int a = ih + pad;
        const float *xr = x + (size_t)ih * w;
        float *row = xs + (size_t)(a % 2) * 2 * g->ps + (size_t)(a / 2) * g->qw;
        for (int k = 0; k < w; k += 32) {
            __mmask16 m0, m1;
            int nk = dwf_masks(w, k, &m0, &m1);
            __m512 lo = _mm512_maskz_loadu_ps(m0, xr + k), hi = _mm512_maskz_loadu_ps(m1, xr + k + 16);
            _mm512_mask_storeu_ps(row + pe + k / 2, (__mmask16)((1u << (nk + 1) / 2) - 1),
                                  _mm512_permutex2var_ps(lo, ie, hi));
            _mm512_mask_storeu_ps(row + po + k / 2, (__mmask16)((1u << nk / 2) - 1),
                                  _mm512_permutex2var_ps(lo, io, hi));
        }
    }
}

/* Stride 2, the inverse: dx += the phase planes' real pixels (le floats apart), each run of 32
 * interleaved back from its two column phases by two permutes. */
DWF_AVX512 static void dwf_unsplit2_add(const DwfGeom *g, const float *ph, float *dx)
{
    const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    int w = g->w, pad = g->pad;
    size_t pe = (size_t)(pad % 2) * g->le + (size_t)(pad / 2);
    size_t po = (size_t)((pad + 1) % 2) * g->le + (size_t)((pad + 1) / 2);
    for (int i = 0; i < g->h; i++) {
        int a = i + pad;
        const float *row = ph + (size_t)(a % 2) * 2 * g->le + (size_t)(a / 2) * g->qw;
        float *xr = dx + (size_t)i * w;
        for (int k = 0; k < w; k += 32) {
            __mmask16 m0, m1;
            int nk = dwf_masks(w, k, &m0, &m1);
            __m512 e = _mm512_maskz_loadu_ps((__mmask16)((1u << (nk + 1) / 2) - 1), row + pe + k / 2);
            __m512 o = _mm512_maskz_loadu_ps((__mmask16)((1u << nk / 2) - 1), row + po + k / 2);
            __m512 lo = _mm512_permutex2var_ps(e, il, o), hi = _mm512_permutex2var_ps(e, ih, o);
            _mm512_mask_storeu_ps(xr + k, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, xr + k), lo));
            _mm512_mask_storeu_ps(xr + k + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, xr + k + 16), hi));
        }
    }
}

/* xs <- plane x split into phases. Only the real pixels are written, the same places for every
 * plane: the caller zeroes xs (g->split floats) once, and padding and slack stay zero. */
static void dwf_split(const DwfGeom *g, const float *x, float *xs)
{
    int s = g->s;
    if (s == 1) {
        float *at = xs + (size_t)g->pad * g->qw + (size_t)g->pad;
        dwf_copy_rows(g, g->h, g->w, x, (size_t)g->w, at, (size_t)g->qw);
        return;
    }
    if (s == 2 && g->wide) {
        dwf_split2(g, x, xs);
        return;
    }
    for (int ih = 0; ih < g->h; ih++) {
        int a = ih + g->pad;
        const float *xr = x + (size_t)ih * g->w;
        float *row = xs + (size_t)(a % s) * s * g->ps + (size_t)(a / s) * g->qw;
        for (int rj = 0; rj < s; rj++) { /* the columns iw with (iw + pad) % s = rj */
            float *dst = row + (size_t)rj * g->ps;
            int iw = ((rj - g->pad) % s + s) % s;
            for (int col = (iw + g->pad) / s; iw < g->w; iw += s, col++) dst[col] = xr[iw];
        }
    }
}

/* dx [h][w] += the real pixels of the phase planes ph (s^2 of them, le floats apart). */
static void dwf_unsplit_add(const DwfGeom *g, const float *ph, float *dx)
{
    int s = g->s;
    if (s == 2 && g->wide) {
        dwf_unsplit2_add(g, ph, dx);
        return;
    }
    for (int ih = 0; ih < g->h; ih++) {
        int a = ih + g->pad;
        const float *row = ph + (size_t)(a % s) * s * g->le + (size_t)(a / s) * g->qw;
        float *xr = dx + (size_t)ih * g->w;
        if (s == 1) {
            cpu_acc_run(g->w, row + g->pad, xr);
            continue;
        }
        for (int iw = 0; iw < g->w; iw++) {
            int b = iw + g->pad;
            xr[iw] += row[(size_t)(b % s) * g->le + (size_t)(b / s)];
        }
    }
}

/* d + lead <- dy [oh][ow] laid out qw apart. Only dy's pixels are written: the caller zeroes d
 * once, and its lead, columns ow..qw-1 and tail stay zero. */
static void dwf_pack_dy(const DwfGeom *g, const float *dy, size_t lead, float *d)
{
    dwf_copy_rows(g, g->oh, g->ow, dy, (size_t)g->ow, d + lead, (size_t)g->qw);
}

/* out[o] = bias + the sum over taps t < ntap (ascending) of w[t] p[o + off[t]], o < n (a multiple
 * of DWF_V); four vectors at a time, so four FMA chains overlap. */
DWF_AVX512 static void dwf_run512(size_t n, int ntap, const ptrdiff_t *off, const float *w,
                                  const float *p, float bias, float *out)
{
    size_t o = 0;
    for (; o + 4 * DWF_V <= n; o += 4 * DWF_V) {
        __m512 a0 = _mm512_set1_ps(bias), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < ntap; t++) {
            const float *q = p + off[t] + o;
            __m512 wv = _mm512_set1_ps(w[t]);
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(q), a0);
            a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(q + DWF_V), a1);
            a2 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(q + 2 * DWF_V), a2);
            a3 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(q + 3 * DWF_V), a3);
        }
        _mm512_storeu_ps(out + o, a0), _mm512_storeu_ps(out + o + DWF_V, a1);
        _mm512_storeu_ps(out + o + 2 * DWF_V, a2), _mm512_storeu_ps(out + o + 3 * DWF_V, a3);
    }
    for (; o + 2 * DWF_V <= n; o += 2 * DWF_V) {
        __m512 a0 = _mm512_set1_ps(bias), a1 = a0;
        for (int t = 0; t < ntap; t++) {
            const float *q = p + off[t] + o;
            __m512 wv = _mm512_set1_ps(w[t]);
            a0 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(q), a0);
            a1 = _mm512_fmadd_ps(wv, _mm512_loadu_ps(q + DWF_V), a1);
        }
        _mm512_storeu_ps(out + o, a0), _mm512_storeu_ps(out + o + DWF_V, a1);
    }
    for (; o < n; o += DWF_V) {
        __m512 a0 = _mm512_set1_ps(bias);
        for (int t = 0; t < ntap; t++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(w[t]), _mm512_loadu_ps(p + off[t] + o), a0);
        _mm512_storeu_ps(out + o, a0);
    }
}

/* acc[t] (16 double lanes) += the lane-wise sums over o < n (a multiple of DWF_V) of
 * d[o] p[o + off[t]], t < ntap: float FMAs in o order, then added to the double lanes. Four taps
 * share each load of d. */
DWF_AVX512 static void dwf_dots512(size_t n, int ntap, const ptrdiff_t *off, const float *d,
                                   const float *p, double *acc)
{
    for (int t = 0; t < ntap; t += 4) {
        int nt = ntap - t < 4 ? ntap - t : 4;
        const float *q[4];
        __m512 a[4];
        for (int k = 0; k < 4; k++) {
            q[k] = p + off[t + (k < nt ? k : 0)];
            a[k] = _mm512_setzero_ps();
        }
        for (size_t o = 0; o < n; o += DWF_V) {
            __m512 dv = _mm512_loadu_ps(d + o);
            a[0] = _mm512_fmadd_ps(dv, _mm512_loadu_ps(q[0] + o), a[0]);
            a[1] = _mm512_fmadd_ps(dv, _mm512_loadu_ps(q[1] + o), a[1]);
            a[2] = _mm512_fmadd_ps(dv, _mm512_loadu_ps(q[2] + o), a[2]);
            a[3] = _mm512_fmadd_ps(dv, _mm512_loadu_ps(q[3] + o), a[3]);
        }
        for (int k = 0; k < nt; k++) {
            double *at = acc + (size_t)(t + k) * DWF_V;
            __m256 lo = _mm512_castps512_ps256(a[k]);
            __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[k]), 1));
            _mm512_storeu_pd(at, _mm512_add_pd(_mm512_loadu_pd(at), _mm512_cvtps_pd(lo)));
            _mm512_storeu_pd(at + 8, _mm512_add_pd(_mm512_loadu_pd(at + 8), _mm512_cvtps_pd(hi)));
        }
    }
}

/* dwf_run with AVX2: each 16-lane vector as two halves, the same FMAs per lane in the same order
 * (two vectors at a time: four 8-lane chains). */
DWF_AVX2 static void dwf_run256(size_t n, int ntap, const ptrdiff_t *off, const float *w,
                                const float *p, float bias, float *out)
{
    size_t o = 0;
    for (; o + 2 * DWF_V <= n; o += 2 * DWF_V) {
        __m256 a0 = _mm256_set1_ps(bias), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < ntap; t++) {
            const float *q = p + off[t] + o;
            __m256 wv = _mm256_set1_ps(w[t]);
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q + 8), a1);
            a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q + 16), a2);
            a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(q + 24), a3);
        }
        _mm256_storeu_ps(out + o, a0), _mm256_storeu_ps(out + o + 8, a1);
        _mm256_storeu_ps(out + o + 16, a2), _mm256_storeu_ps(out + o + 24, a3);
    }
    for (; o < n; o += DWF_V) {
        __m256 a0 = _mm256_set1_ps(bias), a1 = a0;
        for (int t = 0; t < ntap; t++) {
            __m256 wv = _mm256_set1_ps(w[t]);
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + off[t] + o), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + off[t] + o + 8), a1);
        }
        _mm256_storeu_ps(out + o, a0), _mm256_storeu_ps(out + o + 8, a1);
    }
}

/* dwf_dots with AVX2: per tap two 8-lane float sums (the 16 lanes' halves) in o order, then added
 * to the double lanes as dwf_dots512 adds them. Two taps share each load of d. */
DWF_AVX2 static void dwf_dots256(size_t n, int ntap, const ptrdiff_t *off, const float *d,
                                 const float *p, double *acc)
{
    for (int t = 0; t < ntap; t += 2) {
        int nt = ntap - t < 2 ? ntap - t : 2;
        const float *q0 = p + off[t], *q1 = p + off[t + (nt > 1 ? 1 : 0)];
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t o = 0; o < n; o += DWF_V) {
            __m256 d0 = _mm256_loadu_ps(d + o), d1 = _mm256_loadu_ps(d + o + 8);
            a[0] = _mm256_fmadd_ps(d0, _mm256_loadu_ps(q0 + o), a[0]);
            a[1] = _mm256_fmadd_ps(d1, _mm256_loadu_ps(q0 + o + 8), a[1]);
            a[2] = _mm256_fmadd_ps(d0, _mm256_loadu_ps(q1 + o), a[2]);
            a[3] = _mm256_fmadd_ps(d1, _mm256_loadu_ps(q1 + o + 8), a[3]);
        }
        for (int k = 0; k < nt; k++) {
            double *at = acc + (size_t)(t + k) * DWF_V;
            for (int h = 0; h < 2; h++) {
                __m256 v = a[2 * k + h];
                double *l = at + 8 * h;
                __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
                _mm256_storeu_pd(l, _mm256_add_pd(_mm256_loadu_pd(l), lo));
                _mm256_storeu_pd(l + 4, _mm256_add_pd(_mm256_loadu_pd(l + 4), hi));
            }
        }
    }
}

static void dwf_run(const DwfGeom *g, size_t n, int ntap, const ptrdiff_t *off, const float *w, const float *p,
                    float bias, float *out)
{
    if (g->wide) dwf_run512(n, ntap, off, w, p, bias, out);
    else dwf_run256(n, ntap, off, w, p, bias, out);
}

static void dwf_dots(const DwfGeom *g, size_t n, int ntap, const ptrdiff_t *off, const float *d, const float *p,
                     double *acc)
{
    if (g->wide) dwf_dots512(n, ntap, off, d, p, acc);
    else dwf_dots256(n, ntap, off, d, p, acc);
}

typedef struct {
    const DwfGeom *g;
    NnBackend *be;
    const float *x, *w, *b, *dy;
    float *y, *dx, *dw;
} DwfJob;

/* Items: (image, channel) planes. */
static void dwf_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    const DwfJob *j = arg;
    const DwfGeom *g = j->g;
    float *xs = cpu_scratch(j->be, tid, g->split + g->lo), *out = xs + g->split;
    memset(xs, 0, g->split * sizeof(float));
    for (int64_t p = b; p < e; p++) {
        int c = (int)(p % g->c);
        dwf_split(g, j->x + (size_t)p * g->h * g->w, xs);
        dwf_run(g, g->lo, g->ntap, g->off, j->w + (size_t)c * g->ntap, xs, j->b ? j->b[c] : 0.0f, out);
        dwf_copy_rows(g, g->oh, g->ow, out, (size_t)g->qw, j->y + (size_t)p * g->oh * g->ow, (size_t)g->ow);
    }
}

/* Items: (image, channel) planes; dx += the transposed convolution of dy, every phase plane
 * computed, then their real pixels added. */
static void dwf_bwd_data_task(void *arg, int64_t b, int64_t e, int tid)
{
    const DwfJob *j = arg;
    const DwfGeom *g = j->g;
    int s = g->s;
    float *dq = cpu_scratch(j->be, tid, g->dqn + (size_t)s * s * g->le), *out = dq + g->dqn;
    float wr[DWF_MAX_TAPS];
    memset(dq, 0, g->dqn * sizeof(float));
    for (int64_t p = b; p < e; p++) {
        const float *w = j->w + (size_t)(p % g->c) * g->ntap;
        dwf_pack_dy(g, j->dy + (size_t)p * g->oh * g->ow, g->z, dq);
        for (int r = 0; r < s * s; r++) {
            int k0 = g->first[r], nt = g->first[r + 1] - k0;
            float *ph = out + (size_t)r * g->le;
            if (!nt) {
                memset(ph + g->e0, 0, g->ne * sizeof(float));
                continue;
            }
            for (int k = 0; k < nt; k++) wr[k] = w[g->tap[k0 + k]];
            dwf_run(g, g->ne, nt, g->back + k0, wr, dq + g->z + g->e0, 0.0f, ph + g->e0);
        }
        dwf_unsplit_add(g, out, j->dx + (size_t)p * g->h * g->w);
    }
}

/* Items: channels; per image in order, dw's sums in 16 double lanes, which are added in one
 * fixed order at the end. */
static void dwf_bwd_filter_task(void *arg, int64_t b, int64_t e, int tid)
{
    const DwfJob *j = arg;
    const DwfGeom *g = j->g;
    size_t nacc = (size_t)g->ntap * DWF_V * sizeof(double) / sizeof(float);
    float *xs = cpu_scratch(j->be, tid, g->split + g->lo + nacc), *dq = xs + g->split;
    double *acc = (double *)(dq + g->lo);
    memset(xs, 0, (g->split + g->lo) * sizeof(float));
    for (int64_t c = b; c < e; c++) {
        memset(acc, 0, (size_t)g->ntap * DWF_V * sizeof(double));
        for (int n = 0; n < g->n; n++) {
            size_t p = (size_t)n * g->c + (size_t)c;
            dwf_split(g, j->x + p * g->h * g->w, xs);
            dwf_pack_dy(g, j->dy + p * g->oh * g->ow, 0, dq);
            dwf_dots(g, g->lo, g->ntap, g->off, dq, xs, acc);
        }
        float *dw = j->dw + (size_t)c * g->ntap;
        for (int t = 0; t < g->ntap; t++) {
            const double *l = acc + (size_t)t * DWF_V;
            double sum = 0;
            for (int k = 0; k < DWF_V; k++) sum += l[k];
            dw[t] += (float)sum;
        }
    }
}

void cpu_dwflat_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                    const float *b, float *y)
{
    DwfGeom g;
    dwf_geom(s, &g);
    DwfJob j = {.g = &g, .be = be, .x = x, .w = w, .b = b, .y = y};
    cpu_for(be, (int64_t)s->n * s->cin, 2, dwf_fwd_task, &j);
}

void cpu_dwflat_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                         float *dx)
{
    DwfGeom g;
    dwf_geom(s, &g);
    DwfJob j = {.g = &g, .be = be, .w = w, .dy = dy, .dx = dx};
    cpu_for(be, (int64_t)s->n * s->cin, 2, dwf_bwd_data_task, &j);
}

void cpu_dwflat_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                           float *dw)
{
    DwfGeom g;
    dwf_geom(s, &g);
    DwfJob j = {.g = &g, .be = be, .x = x, .dy = dy, .dw = dw};
    cpu_for(be, s->cin, 2, dwf_bwd_filter_task, &j);
}

#else /* not x86: cpu_dwflat_ok is always false */

int cpu_dwflat_pick(const NnConvShape *s)
{
    (void)s;
    return 0;
}

void cpu_dwflat_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                    const float *b, float *y)
{
    (void)be, (void)s, (void)x, (void)w, (void)b, (void)y;
    dd_die(DD_EXIT_DATA, "nn: cpu: SIMD depthwise convolution off x86");
}

void cpu_dwflat_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                         float *dx)
{
    (void)be, (void)s, (void)dy, (void)w, (void)dx;
    dd_die(DD_EXIT_DATA, "nn: cpu: SIMD depthwise convolution off x86");
}

void cpu_dwflat_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                           float *dw)
{
    (void)be, (void)s, (void)dy, (void)x, (void)dw;
    dd_die(DD_EXIT_DATA, "nn: cpu: SIMD depthwise convolution off x86");
}

#endif

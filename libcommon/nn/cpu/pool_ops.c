/* pool_ops.c - CPU max / average / adaptive-average pooling over NCHW planes, one plane per item. */
#include "libcommon/nn/cpu/cpu.h"

#include <math.h>

typedef struct {
    const NnPoolShape *s;
    const float *x;
    float *y;
    uint8_t *idx;
    const uint8_t *cidx;
} PoolJob;

static void maxpool_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const PoolJob *j = arg;
    const NnPoolShape *s = j->s;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * s->h * s->w;
        float *y = j->y + p * s->oh * s->ow;
        uint8_t *idx = j->idx ? j->idx + p * s->oh * s->ow : NULL;
        for (int oi = 0; oi < s->oh; oi++)
            for (int oj = 0; oj < s->ow; oj++) {
                float best = -INFINITY;
                int at = NN_POOL_NONE; /* the window offset ki * k + kj */
                for (int ki = 0; ki < s->k; ki++) {
                    int ih = oi * s->stride - s->pad + ki;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kj = 0; kj < s->k; kj++) {
                        int iw = oj * s->stride - s->pad + kj;
                        if (iw < 0 || iw >= s->w) continue;
                        float v = x[ih * s->w + iw];
                        if (at == NN_POOL_NONE || v > best || isnan(v)) { /* NaN wins, as PyTorch */
                            best = v;
                            at = ki * s->k + kj;
                        }
                    }
                }
                y[oi * s->ow + oj] = best;
                if (idx) idx[oi * s->ow + oj] = (uint8_t)at;
            }
    }
}

static void maxpool_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const PoolJob *j = arg;
    const NnPoolShape *s = j->s;
    for (int64_t p = b; p < e; p++) {
        const float *dy = j->x + p * s->oh * s->ow;
        const uint8_t *idx = j->cidx + p * s->oh * s->ow;
        float *dx = j->y + p * s->h * s->w;
        for (int oi = 0; oi < s->oh; oi++)
            for (int oj = 0; oj < s->ow; oj++) {
                int at = idx[oi * s->ow + oj];
                if (at == NN_POOL_NONE) continue;
                int ih = oi * s->stride - s->pad + at / s->k, iw = oj * s->stride - s->pad + at % s->k;
                dx[ih * s->w + iw] += dy[oi * s->ow + oj];
            }
    }
}

static void maxpool_fwd(NnBackend *be, const NnPoolShape *s, const float *x, float *y, uint8_t *idx)
{
    PoolJob j = {.s = s, .x = x, .y = y, .idx = idx};
    cpu_for(be, s->np, 2, maxpool_task, &j);
}

static void maxpool_bwd(NnBackend *be, const NnPoolShape *s, const uint8_t *idx, const float *dy,
                        float *dx)
{
    PoolJob j = {.s = s, .x = dy, .y = dx, .cidx = idx};
    cpu_for(be, s->np, 2, maxpool_bwd_task, &j);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* 8 outputs of avgpool2_plane's row: the even and odd columns of both rows split by shuffles
 * (which leave the 64-bit pairs in the order a0 a2 b0 b2 a4 a6 b4 b6), summed in the scalar
 * order, the pairs put back in place. Returns the outputs done. */
__attribute__((target("avx2"))) static int avgpool2_row_avx2(int ow, const float *r0, const float *r1,
                                                               float *yr)
{
    const __m256 zero = _mm256_setzero_ps(), quarter = _mm256_set1_ps(0.25f);
    int oj = 0;
    for (; oj + 8 <= ow; oj += 8) {
        __m256 a0 = _mm256_loadu_ps(r0 + 2 * oj), b0 = _mm256_loadu_ps(r0 + 2 * oj + 8);
        __m256 a1 = _mm256_loadu_ps(r1 + 2 * oj), b1 = _mm256_loadu_ps(r1 + 2 * oj + 8);
        __m256 e0 = _mm256_shuffle_ps(a0, b0, _MM_SHUFFLE(2, 0, 2, 0));
        __m256 o0 = _mm256_shuffle_ps(a0, b0, _MM_SHUFFLE(3, 1, 3, 1));
        __m256 e1 = _mm256_shuffle_ps(a1, b1, _MM_SHUFFLE(2, 0, 2, 0));
        __m256 o1 = _mm256_shuffle_ps(a1, b1, _MM_SHUFFLE(3, 1, 3, 1));
        __m256 acc = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(zero, e0), o0), e1), o1);
        acc = _mm256_mul_ps(acc, quarter);
        _mm256_storeu_ps(yr + oj, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(acc),
                                                                           _MM_SHUFFLE(3, 1, 2, 0))));
    }
    return oj;
}

/* 8 outputs' gradients of avgpool2_bwd_plane's row: each g = dy * 0.25 added once to the four
 * inputs of its window (the pairs duplicated by unpacks, the 128-bit halves put in place). */
__attribute__((target("avx2"))) static int avgpool2_bwd_row_avx2(int ow, const float *dy, float *r0,
                                                                   float *r1)
{
    const __m256 quarter = _mm256_set1_ps(0.25f);
    int oj = 0;
    for (; oj + 8 <= ow; oj += 8) {
        __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + oj), quarter);     /* g0 .. g7 */
        __m256 lo = _mm256_unpacklo_ps(g, g), hi = _mm256_unpackhi_ps(g, g); /* g0g0g1g1 g4g4g5g5 | ... */
        __m256 a = _mm256_permute2f128_ps(lo, hi, 0x20), b = _mm256_permute2f128_ps(lo, hi, 0x31);
        float *p0 = r0 + 2 * oj, *p1 = r1 + 2 * oj;
        _mm256_storeu_ps(p0, _mm256_add_ps(_mm256_loadu_ps(p0), a));
        _mm256_storeu_ps(p0 + 8, _mm256_add_ps(_mm256_loadu_ps(p0 + 8), b));
        _mm256_storeu_ps(p1, _mm256_add_ps(_mm256_loadu_ps(p1), a));
        _mm256_storeu_ps(p1 + 8, _mm256_add_ps(_mm256_loadu_ps(p1 + 8), b));
    }
    return oj;
}
#endif

/* AvgPool2d(2)'s backward: windows apart and inside the plane, so no bounds tests; each input
 * takes one add, so the vector rows give the same bits. */
static void avgpool2_bwd_plane(const NnPoolShape *s, const float *dy, float *dx, int vec)
{
    for (int oi = 0; oi < s->oh; oi++) {
        float *r0 = dx + (size_t)2 * oi * s->w, *r1 = r0 + s->w;
        const float *dr = dy + (size_t)oi * s->ow;
        int oj = 0;
#if defined(__x86_64__) || defined(__i386__)
        if (vec) oj = avgpool2_bwd_row_avx2(s->ow, dr, r0, r1);
#else
        (void)vec;
#endif
        for (; oj < s->ow; oj++) {
            float g = dr[oj] * 0.25f;
            r0[2 * oj] += g, r0[2 * oj + 1] += g, r1[2 * oj] += g, r1[2 * oj + 1] += g;
        }
    }
}

/* AvgPool2d(2) (ConvNet's): every window inside the plane, summed in the general loop's order
 * from 0 (0 + x keeps its bits but turns -0 into +0, as there), so the same bits, without its
 * bounds tests; 8 outputs at a time with AVX2. */
static void avgpool2_plane(const NnPoolShape *s, const float *x, float *y, int vec)
{
    for (int oi = 0; oi < s->oh; oi++) {
        const float *r0 = x + (size_t)2 * oi * s->w, *r1 = r0 + s->w;
        float *yr = y + (size_t)oi * s->ow;
        int oj = 0;
#if defined(__x86_64__) || defined(__i386__)
        if (vec) oj = avgpool2_row_avx2(s->ow, r0, r1, yr);
#else
        (void)vec;
#endif
        for (; oj < s->ow; oj++)
            yr[oj] = ((((0.0f + r0[2 * oj]) + r0[2 * oj + 1]) + r1[2 * oj]) + r1[2 * oj + 1]) * 0.25f;
    }
}

/* Average pooling, count_include_pad: every window divides by k*k. */
static void avgpool_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const PoolJob *j = arg;
    const NnPoolShape *s = j->s;
    float inv = 1.0f / (float)(s->k * s->k);
    const int vec = cpu_avx2();   /* once per task: DD_CPU_ISA is read from the environment */
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * s->h * s->w;
        float *y = j->y + p * s->oh * s->ow;
        if (s->k == 2 && s->stride == 2 && s->pad == 0) {
            avgpool2_plane(s, x, y, vec);
            continue;
        }
        for (int oi = 0; oi < s->oh; oi++)
            for (int oj = 0; oj < s->ow; oj++) {
                float acc = 0;
                for (int ki = 0; ki < s->k; ki++) {
                    int ih = oi * s->stride - s->pad + ki;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kj = 0; kj < s->k; kj++) {
                        int iw = oj * s->stride - s->pad + kj;
                        if (iw >= 0 && iw < s->w) acc += x[ih * s->w + iw];
                    }
                }
                y[oi * s->ow + oj] = acc * inv;
            }
    }
}

static void avgpool_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const PoolJob *j = arg;
    const NnPoolShape *s = j->s;
    float inv = 1.0f / (float)(s->k * s->k);
    const int vec = cpu_avx2();
    for (int64_t p = b; p < e; p++) {
        const float *dy = j->x + p * s->oh * s->ow;
        float *dx = j->y + p * s->h * s->w;
        if (s->k == 2 && s->stride == 2 && s->pad == 0) {
            avgpool2_bwd_plane(s, dy, dx, vec);
            continue;
        }
        for (int oi = 0; oi < s->oh; oi++)
            for (int oj = 0; oj < s->ow; oj++) {
                float g = dy[oi * s->ow + oj] * inv;
                for (int ki = 0; ki < s->k; ki++) {
                    int ih = oi * s->stride - s->pad + ki;
                    if (ih < 0 || ih >= s->h) continue;
                    for (int kj = 0; kj < s->k; kj++) {
                        int iw = oj * s->stride - s->pad + kj;
                        if (iw >= 0 && iw < s->w) dx[ih * s->w + iw] += g;
                    }
                }
            }
    }
}

static void avgpool_fwd(NnBackend *be, const NnPoolShape *s, const float *x, float *y)
{
    PoolJob j = {.s = s, .x = x, .y = y};
    cpu_for(be, s->np, 2, avgpool_task, &j);
}

static void avgpool_bwd(NnBackend *be, const NnPoolShape *s, const float *dy, float *dx)
{
    PoolJob j = {.s = s, .x = dy, .y = dx};
    cpu_for(be, s->np, 2, avgpool_bwd_task, &j);
}

/* Adaptive windows as PyTorch: [floor(i*H/OH), ceil((i+1)*H/OH)). */
static int win_start(int i, int in, int out) { return (int)((int64_t)i * in / out); }
static int win_end(int i, int in, int out) { return (int)(((int64_t)(i + 1) * in + out - 1) / out); }

static void adaptive_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const PoolJob *j = arg;
    const NnPoolShape *s = j->s;
    for (int64_t p = b; p < e; p++) {
        const float *x = j->x + p * s->h * s->w;
        float *y = j->y + p * s->oh * s->ow;
        for (int oi = 0; oi < s->oh; oi++) {
            int h0 = win_start(oi, s->h, s->oh), h1 = win_end(oi, s->h, s->oh);
            for (int oj = 0; oj < s->ow; oj++) {
                int w0 = win_start(oj, s->w, s->ow), w1 = win_end(oj, s->w, s->ow);
                float acc = 0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) acc += x[ih * s->w + iw];
                y[oi * s->ow + oj] = acc / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

static void adaptive_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const PoolJob *j = arg;
    const NnPoolShape *s = j->s;
    for (int64_t p = b; p < e; p++) {
        const float *dy = j->x + p * s->oh * s->ow;
        float *dx = j->y + p * s->h * s->w;
        for (int oi = 0; oi < s->oh; oi++) {
            int h0 = win_start(oi, s->h, s->oh), h1 = win_end(oi, s->h, s->oh);
            for (int oj = 0; oj < s->ow; oj++) {
                int w0 = win_start(oj, s->w, s->ow), w1 = win_end(oj, s->w, s->ow);
                float g = dy[oi * s->ow + oj] / (float)((h1 - h0) * (w1 - w0));
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) dx[ih * s->w + iw] += g;
            }
        }
    }
}

static void adaptive_fwd(NnBackend *be, const NnPoolShape *s, const float *x, float *y)
{
    PoolJob j = {.s = s, .x = x, .y = y};
    cpu_for(be, s->np, 2, adaptive_task, &j);
}

static void adaptive_bwd(NnBackend *be, const NnPoolShape *s, const float *dy, float *dx)
{
    PoolJob j = {.s = s, .x = dy, .y = dx};
    cpu_for(be, s->np, 2, adaptive_bwd_task, &j);
}

void cpu_pool_ops_init(NnBackend *be)
{
    be->maxpool_fwd = maxpool_fwd;
    be->maxpool_bwd = maxpool_bwd;
    be->avgpool_fwd = avgpool_fwd;
    be->avgpool_bwd = avgpool_bwd;
    be->adaptive_avgpool_fwd = adaptive_fwd;
    be->adaptive_avgpool_bwd = adaptive_bwd;
}

/* elem.c - CPU elementwise kernels: axpy, activations, broadcast add/mul, normalize, dropout, and
 * the full sum (fixed blocks of partial sums in double, added in block order). */
#include "libcommon/base/base.h"
#include "libcommon/nn/cpu/cpu.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ELEM_X86 1
#define ELEM_AVX2 __attribute__((target("avx2,fma")))
#define ELEM_AVX512 __attribute__((target("avx512f")))
#endif

#define ELEM_MIN 32768         /* below this many elements a loop runs on the calling thread */
#define SUM_BLOCK 8192

typedef struct {
    int64_t n;
    float alpha, p;
    int op;
    const float *x, *y, *dy, *a, *b;
    float *out, *da, *db;
    const NnBroadcast *bc;
    uint64_t key, ctr;
    double *partial;
} ElemJob;

/* ---- axpy, fill_add, scale ---- */

static void axpy_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    for (int64_t i = b; i < e; i++) j->out[i] += j->alpha * j->x[i];
}

static void axpy(NnBackend *be, int64_t n, float alpha, const float *src, float *dst)
{
    ElemJob j = {.alpha = alpha, .x = src, .out = dst};
    cpu_for(be, n, ELEM_MIN, axpy_task, &j);
}

static void fill_add_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    for (int64_t i = b; i < e; i++) j->out[i] += j->alpha;
}

static void fill_add(NnBackend *be, int64_t n, float alpha, const float *scalar, float *dst)
{
    ElemJob j = {.alpha = alpha * scalar[0], .out = dst};
    cpu_for(be, n, ELEM_MIN, fill_add_task, &j);
}

static void scale_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    for (int64_t i = b; i < e; i++) j->out[i] = j->alpha * j->x[i];
}

static void scale_fwd(NnBackend *be, int64_t n, float s, const float *x, float *y)
{
    ElemJob j = {.alpha = s, .x = x, .out = y};
    cpu_for(be, n, ELEM_MIN, scale_task, &j);
}

/* ---- activations ---- */

/* The piecewise-linear activations go in fixed blocks of 8, which gcc vectorises at -O2 (its
 * cheap cost model leaves loops of unknown trip count scalar); they are memory-bound, and one
 * ReLU pass over each activation and its gradient is a visible share of a ResNet step. */
#define ACT_BLOCK 8

/* NaN passes through relu and relu6 as in PyTorch (a diverged net's NaN reaches its loss): hence
 * !(x <= 0) rather than x > 0. Their backward passes nothing at NaN, as PyTorch's. */
static void relu_fwd_range(int64_t n, const float *restrict x, float *restrict y)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++) y[i + k] = !(x[i + k] <= 0) ? x[i + k] : 0.0f;
    for (; i < n; i++) y[i] = !(x[i] <= 0) ? x[i] : 0.0f;
}

static void relu_bwd_range(int64_t n, const float *restrict y, const float *restrict dy,
                           float *restrict dx)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++) {
            float g = dy[i + k]; /* read unconditionally: a masked read is a branch to gcc */
            dx[i + k] += y[i + k] > 0 ? g : 0.0f;
        }
    for (; i < n; i++) dx[i] += y[i] > 0 ? dy[i] : 0.0f;
}

static void relu6_fwd_range(int64_t n, const float *restrict x, float *restrict y)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++)
            y[i + k] = !(x[i + k] <= 0) ? (!(x[i + k] >= 6) ? x[i + k] : 6.0f) : 0.0f;
    for (; i < n; i++) y[i] = !(x[i] <= 0) ? (!(x[i] >= 6) ? x[i] : 6.0f) : 0.0f;
}

static void relu6_bwd_range(int64_t n, const float *restrict x, const float *restrict dy,
                            float *restrict dx)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++) {
            float g = dy[i + k]; /* as relu_bwd_range */
            dx[i + k] += x[i + k] > 0 && x[i + k] < 6 ? g : 0.0f;
        }
    for (; i < n; i++) dx[i] += x[i] > 0 && x[i] < 6 ? dy[i] : 0.0f;
}

/* SiLU and sigmoid, 8 lanes at a time where the CPU has AVX2 + FMA (cpu_avx2), 16 with AVX-512F
 * (cpu_avx512; the same bits per element): libm's expf is a
 * scalar call per element, and EfficientNet spends a quarter of its step there. e^x is Cephes'
 * single-precision scheme: x = n ln2 + r (ln2 in two parts), |r| <= ln2/2, e^r by a degree-5
 * polynomial, times 2^(n-1) (exponent bits, n in [-125, 128]) and 2; within 2 ulp of e^x for x in
 * [-86.5, 88.72], e^-86.5 below (1 + e^x is then 1), +inf above (as expf), NaN stays NaN. The divisions stay IEEE divisions. A short tail
 * goes through the same lanes from a padded copy, so every element of a tensor gets the same
 * function. Without AVX2 the loops call expf. */
/* act_vec's modes: forward (out = y), backward in place (out holds dy, becomes dx), backward
 * accumulated (out = dx, += the gradient from dy). */
enum { V_FWD, V_BWD_INPLACE, V_BWD_ACC };

#ifdef ELEM_X86
ELEM_AVX2 static inline __m256 exp8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    /* min(hi, x) then max(lo, .): a NaN x is the operand that comes back */
    x = _mm256_max_ps(_mm256_set1_ps(-86.5f), _mm256_min_ps(_mm256_set1_ps(89.0f), x));
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, one));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
    return _mm256_mul_ps(_mm256_add_ps(p, p), _mm256_castsi256_ps(e)); /* 2^127 e^r stays finite */
}

/* 1 / (1 + e^-x) */
ELEM_AVX2 static inline __m256 sigmoid8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* One block of 8 (modes below). The formulas are act_fwd_task's and act_bwd_task's. */
ELEM_AVX2 static inline void act8(int op, int mode, const float *x, const float *y,
                                  const float *dy, float *out)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    if (mode == V_FWD) {
        __m256 vx = _mm256_loadu_ps(x), s = sigmoid8(vx);
        _mm256_storeu_ps(out, op == NN_ACT_SILU ? _mm256_mul_ps(vx, s) : s);
        return;
    }
    __m256 g = _mm256_loadu_ps(mode == V_BWD_INPLACE ? out : dy), d;
    if (op == NN_ACT_SILU) { /* g s (1 + x (1 - s)) */
        __m256 vx = _mm256_loadu_ps(x), s = sigmoid8(vx);
        d = _mm256_mul_ps(_mm256_mul_ps(g, s), _mm256_add_ps(one, _mm256_mul_ps(vx, _mm256_sub_ps(one, s))));
    } else { /* sigmoid: g y (1 - y) */
        __m256 vy = _mm256_loadu_ps(y);
        d = _mm256_mul_ps(_mm256_mul_ps(g, vy), _mm256_sub_ps(one, vy));
    }
    _mm256_storeu_ps(out, mode == V_BWD_ACC ? _mm256_add_ps(_mm256_loadu_ps(out), d) : d);
}

/* exp8, sigmoid8 and act8 16 lanes wide, where the CPU has AVX-512F: the same operations lane for
 * lane (floor as a round toward -inf, the same FMAs, IEEE divisions), so every element gets the
 * same bits as through act8, twice as many per instruction. */
ELEM_AVX512 static inline __m512 exp16(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    x = _mm512_max_ps(_mm512_set1_ps(-86.5f), _mm512_min_ps(_mm512_set1_ps(89.0f), x));
    __m512 n = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
    n = _mm512_roundscale_ps(n, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); /* floor */
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, one));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(126)), 23);
    return _mm512_mul_ps(_mm512_add_ps(p, p), _mm512_castsi512_ps(e));
}

ELEM_AVX512 static inline __m512 sigmoid16(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

ELEM_AVX512 static inline void act16(int op, int mode, const float *x, const float *y,
                                     const float *dy, float *out)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    if (mode == V_FWD) {
        __m512 vx = _mm512_loadu_ps(x), s = sigmoid16(vx);
        _mm512_storeu_ps(out, op == NN_ACT_SILU ? _mm512_mul_ps(vx, s) : s);
        return;
    }
    __m512 g = _mm512_loadu_ps(mode == V_BWD_INPLACE ? out : dy), d;
    if (op == NN_ACT_SILU) {
        __m512 vx = _mm512_loadu_ps(x), s = sigmoid16(vx);
        d = _mm512_mul_ps(_mm512_mul_ps(g, s),
                          _mm512_add_ps(one, _mm512_mul_ps(vx, _mm512_sub_ps(one, s))));
    } else {
        __m512 vy = _mm512_loadu_ps(y);
        d = _mm512_mul_ps(_mm512_mul_ps(g, vy), _mm512_sub_ps(one, vy));
    }
    _mm512_storeu_ps(out, mode == V_BWD_ACC ? _mm512_add_ps(_mm512_loadu_ps(out), d) : d);
}

/* The whole blocks of 16 of act_vec; returns the elements done. */
ELEM_AVX512 static int64_t act_vec16(int op, int mode, int64_t n, const float *x, const float *y,
                                     const float *dy, float *out)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        act16(op, mode, x ? x + i : NULL, y ? y + i : NULL, dy ? dy + i : NULL, out + i);
    return i;
}

/* act8 over n elements (act16 first where the CPU has AVX-512F); x, y, dy may be NULL where the
 * rule does not read them. */
ELEM_AVX2 static void act_vec(int op, int mode, int64_t n, const float *x, const float *y,
                              const float *dy, float *out)
{
    int64_t i = cpu_avx512() ? act_vec16(op, mode, n, x, y, dy, out) : 0;
    for (; i + 8 <= n; i += 8)
        act8(op, mode, x ? x + i : NULL, y ? y + i : NULL, dy ? dy + i : NULL, out + i);
    if (i == n) return;
    float tx[8] = {0}, ty[8] = {0}, tdy[8] = {0}, to[8] = {0};
    size_t m = (size_t)(n - i) * sizeof(float);
    if (x) memcpy(tx, x + i, m);
    if (y) memcpy(ty, y + i, m);
    if (dy) memcpy(tdy, dy + i, m);
    memcpy(to, out + i, m);
    act8(op, mode, tx, ty, tdy, to);
    memcpy(out + i, to, m);
}
#endif

/* 1 where act_vec takes (op, this CPU) */
static int act_vec_ok(int op)
{
#ifdef ELEM_X86
    return (op == NN_ACT_SILU || op == NN_ACT_SIGMOID) && cpu_avx2();
#else
    (void)op;
    return 0;
#endif
}

#ifndef ELEM_X86 /* never called there: act_vec_ok is 0 */
static void act_vec(int op, int mode, int64_t n, const float *x, const float *y, const float *dy,
                    float *out)
{
    (void)op, (void)mode, (void)n, (void)x, (void)y, (void)dy, (void)out;
}
#endif

static void act_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const float *x = j->x;
    float *y = j->out;
    if (act_vec_ok(j->op)) {
        act_vec(j->op, V_FWD, e - b, x + b, NULL, NULL, y + b);
        return;
    }
    switch ((NnAct)j->op) {
    case NN_ACT_RELU:
        relu_fwd_range(e - b, x + b, y + b);
        break;
    case NN_ACT_RELU6:
        relu6_fwd_range(e - b, x + b, y + b);
        break;
    case NN_ACT_SILU:
        for (int64_t i = b; i < e; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case NN_ACT_SIGMOID:
        for (int64_t i = b; i < e; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case NN_ACT_HARDSWISH:
        for (int64_t i = b; i < e; i++) {
            float r = x[i] + 3.0f;
            r = r > 0 ? (r < 6 ? r : 6.0f) : 0.0f;
            y[i] = x[i] * r / 6.0f;
        }
        break;
    }
}

/* In place, g (dy, then dx) is never y or x: restrict lets gcc turn the select into a mask. */
static void relu_bwd_inplace_range(int64_t n, const float *restrict y, float *restrict g)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++) {
            float v = g[i + k];
            g[i + k] = y[i + k] > 0 ? v : 0.0f;
        }
    for (; i < n; i++) g[i] = y[i] > 0 ? g[i] : 0.0f;
}

static void relu6_bwd_inplace_range(int64_t n, const float *restrict x, float *restrict g)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++) {
            float v = g[i + k];
            g[i + k] = x[i + k] > 0 && x[i + k] < 6 ? v : 0.0f;
        }
    for (; i < n; i++) g[i] = x[i] > 0 && x[i] < 6 ? g[i] : 0.0f;
}

/* Backward rules as PyTorch's: relu passes where y > 0, relu6 where 0 < x < 6, hardswish is 0
 * below -3, x/3 + 1/2 on [-3, 3], 1 above. */
static void act_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const float *x = j->x, *y = j->y, *dy = j->dy;
    float *dx = j->out;
    if (act_vec_ok(j->op)) {
        act_vec(j->op, V_BWD_ACC, e - b, j->op == NN_ACT_SILU ? x + b : NULL,
                j->op == NN_ACT_SIGMOID ? y + b : NULL, dy + b, dx + b);
        return;
    }
    switch ((NnAct)j->op) {
    case NN_ACT_RELU:
        relu_bwd_range(e - b, y + b, dy + b, dx + b);
        break;
    case NN_ACT_RELU6:
        relu6_bwd_range(e - b, x + b, dy + b, dx + b);
        break;
    case NN_ACT_SILU:
        for (int64_t i = b; i < e; i++) {
            float s = 1.0f / (1.0f + expf(-x[i]));
            dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    case NN_ACT_SIGMOID:
        for (int64_t i = b; i < e; i++) dx[i] += dy[i] * y[i] * (1.0f - y[i]);
        break;
    case NN_ACT_HARDSWISH:
        for (int64_t i = b; i < e; i++)
            dx[i] += x[i] < -3.0f ? 0.0f : x[i] <= 3.0f ? dy[i] * (x[i] / 3.0f + 0.5f) : dy[i];
        break;
    }
}

/* In place: g holds dy and becomes dx (the same rules as act_bwd_task). */
static void act_bwd_inplace_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const float *x = j->x, *y = j->y;
    float *g = j->out;
    if (act_vec_ok(j->op)) {
        act_vec(j->op, V_BWD_INPLACE, e - b, j->op == NN_ACT_SILU ? x + b : NULL,
                j->op == NN_ACT_SIGMOID ? y + b : NULL, NULL, g + b);
        return;
    }
    switch ((NnAct)j->op) {
    case NN_ACT_RELU:
        relu_bwd_inplace_range(e - b, y + b, g + b);
        break;
    case NN_ACT_RELU6:
        relu6_bwd_inplace_range(e - b, x + b, g + b);
        break;
    case NN_ACT_SILU:
        for (int64_t i = b; i < e; i++) {
            float s = 1.0f / (1.0f + expf(-x[i]));
            g[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    case NN_ACT_SIGMOID:
        for (int64_t i = b; i < e; i++) g[i] = g[i] * y[i] * (1.0f - y[i]);
        break;
    case NN_ACT_HARDSWISH:
        for (int64_t i = b; i < e; i++)
            g[i] = x[i] < -3.0f ? 0.0f : x[i] <= 3.0f ? g[i] * (x[i] / 3.0f + 0.5f) : g[i];
        break;
    }
}

static void act_bwd_inplace(NnBackend *be, NnAct act, int64_t n, const float *x, const float *y,
                            float *g)
{
    ElemJob j = {.op = (int)act, .x = x, .y = y, .out = g};
    cpu_for(be, n, ELEM_MIN, act_bwd_inplace_task, &j);
}

static void act_fwd(NnBackend *be, NnAct act, int64_t n, const float *x, float *y)
{
    ElemJob j = {.op = (int)act, .x = x, .out = y};
    cpu_for(be, n, ELEM_MIN, act_fwd_task, &j);
}

static void act_bwd(NnBackend *be, NnAct act, int64_t n, const float *x, const float *y,
                    const float *dy, float *dx)
{
    ElemJob j = {.op = (int)act, .x = x, .y = y, .dy = dy, .out = dx};
    cpu_for(be, n, ELEM_MIN, act_bwd_task, &j);
}

/* ---- broadcast add / mul ---- */

/* Index into b of element i of a. */
static int64_t bcast_index(const NnBroadcast *bc, int64_t i)
{
    int64_t bi = 0;
    for (int d = bc->ndim - 1; d >= 0; d--) {
        bi += (i % bc->shape[d]) * bc->bstride[d];
        i /= bc->shape[d];
    }
    return bi;
}

/* The innermost run of elements sharing one b index (b constant over the trailing broadcast dims),
 * so the per-element index math runs once per run. */
static int64_t bcast_run(const NnBroadcast *bc)
{
    int64_t run = 1;
    for (int d = bc->ndim - 1; d >= 0 && bc->bstride[d] == 0; d--) run *= bc->shape[d];
    return run;
}

/* Runs of one b value, in blocks of 8 that gcc vectorises at -O2 (no overlaps). */
static void addc_run(int64_t n, float c, const float *restrict x, float *restrict y) /* y = x + c */
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] = x[i + k] + c;
    for (; i < n; i++) y[i] = x[i] + c;
}

static void mulc_run(int64_t n, float c, const float *restrict x, float *restrict y) /* y = x c */
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] = x[i + k] * c;
    for (; i < n; i++) y[i] = x[i] * c;
}

static void axpyc_run(int64_t n, float c, const float *restrict x, float *restrict y) /* y += x c */
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] += x[i + k] * c;
    for (; i < n; i++) y[i] += x[i] * c;
}

static void add_run(int64_t n, const float *restrict x, const float *restrict y, float *restrict z)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) z[i + k] = x[i + k] + y[i + k];
    for (; i < n; i++) z[i] = x[i] + y[i];
}

static void mul_run(int64_t n, const float *restrict x, const float *restrict y, float *restrict z)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) z[i + k] = x[i + k] * y[i + k];
    for (; i < n; i++) z[i] = x[i] * y[i];
}

static void addmul_run(int64_t n, const float *restrict x, const float *restrict y,
                       float *restrict z) /* z += x y */
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) z[i + k] += x[i + k] * y[i + k];
    for (; i < n; i++) z[i] += x[i] * y[i];
}

static void binary_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const NnBroadcast *bc = j->bc;
    if (bc->nb == bc->n) {
        if (j->op == NN_BIN_ADD) add_run(e - b, j->a + b, j->b + b, j->out + b);
        else mul_run(e - b, j->a + b, j->b + b, j->out + b);
        return;
    }
    int64_t run = bcast_run(bc);
    for (int64_t i = b; i < e;) {
        float bv = j->b[bcast_index(bc, i)];
        int64_t end = (i / run + 1) * run;
        if (end > e) end = e;
        if (j->op == NN_BIN_ADD) addc_run(end - i, bv, j->a + i, j->out + i);
        else mulc_run(end - i, bv, j->a + i, j->out + i);
        i = end;
    }
}

static void binary_fwd(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, float *y)
{
    ElemJob j = {.op = (int)op, .bc = bc, .a = a, .b = b, .out = y};
    cpu_for(be, bc->n, ELEM_MIN, binary_fwd_task, &j);
}

/* b not broadcast: da and db elementwise, one pass each (da may be db: x * x adds both terms, in
 * the order da's then db's). */
static void binary_bwd_same_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    int64_t n = e - b;
    if (j->op == NN_BIN_ADD) {
        if (j->da) cpu_acc_run(n, j->dy + b, j->da + b);
        if (j->db) cpu_acc_run(n, j->dy + b, j->db + b);
    } else {
        if (j->da) addmul_run(n, j->dy + b, j->b + b, j->da + b);
        if (j->db) addmul_run(n, j->dy + b, j->a + b, j->db + b);
    }
}

/* b broadcast: items are runs (bcast_run elements that share one b value). da gets the run's
 * dy (times b); for db the run's sum of dy (times a) goes to partial[run] in double, in four
 * interleaved sums added in a fixed order, so results do not depend on the threads. */
static void binary_bwd_runs_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const NnBroadcast *bc = j->bc;
    int64_t run = bcast_run(bc);
    for (int64_t r = b; r < e; r++) {
        int64_t i0 = r * run;
        const float *dy = j->dy + i0, *a = j->op == NN_BIN_MUL ? j->a + i0 : NULL; /* add: a may be NULL */
        if (j->da) {
            if (j->op == NN_BIN_ADD) cpu_acc_run(run, dy, j->da + i0);
            else axpyc_run(run, j->b[bcast_index(bc, i0)], dy, j->da + i0);
        }
        if (!j->db) continue;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t k = 0;
        if (j->op == NN_BIN_ADD) {
            for (; k + 4 <= run; k += 4) s0 += dy[k], s1 += dy[k + 1], s2 += dy[k + 2], s3 += dy[k + 3];
            for (; k < run; k++) s0 += dy[k];
        } else {
            for (; k + 4 <= run; k += 4) {
                s0 += (double)dy[k] * a[k], s1 += (double)dy[k + 1] * a[k + 1];
                s2 += (double)dy[k + 2] * a[k + 2], s3 += (double)dy[k + 3] * a[k + 3];
            }
            for (; k < run; k++) s0 += (double)dy[k] * a[k];
        }
        j->partial[r] = (s0 + s1) + (s2 + s3);
    }
}

static void binary_bwd(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, const float *dy, float *da, float *db)
{
    ElemJob j = {.op = (int)op, .bc = bc, .a = a, .b = b, .dy = dy, .da = da, .db = db};
    if (bc->nb == bc->n) {
        cpu_for(be, bc->n, ELEM_MIN, binary_bwd_same_task, &j);
        return;
    }
    int64_t run = bcast_run(bc), nrun = bc->n / run;
    double *acc = NULL;
    if (db) {
        acc = (double *)cpu_shared(be, 2 * (size_t)(bc->nb + nrun));
        j.partial = acc + bc->nb;
    }
    cpu_for(be, nrun, ELEM_MIN / run + 1, binary_bwd_runs_task, &j);
    if (!db) return;
    /* the runs' sums into b's elements, in run order */
    memset(acc, 0, (size_t)bc->nb * sizeof *acc);
    for (int64_t r = 0; r < nrun; r++) acc[bcast_index(bc, r * run)] += j.partial[r];
    for (int64_t i = 0; i < bc->nb; i++) db[i] += (float)acc[i];
}

/* ---- normalize ---- */

typedef struct {
    int64_t n, hw;
    int c;
    const float *mean, *std, *x;
    float *y;
    int bwd;
} NormJob;

static void normalize_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const NormJob *j = arg;
    for (int64_t p = b; p < e; p++) {
        int c = (int)(p % j->c);
        const float *x = j->x + p * j->hw;
        float *y = j->y + p * j->hw;
        if (j->bwd)
            for (int64_t i = 0; i < j->hw; i++) y[i] += x[i] / j->std[c];
        else
            for (int64_t i = 0; i < j->hw; i++) y[i] = (x[i] - j->mean[c]) / j->std[c];
    }
}

static void normalize_fwd(NnBackend *be, int64_t n, int c, int64_t hw, const float *host_mean,
                          const float *host_std, const float *x, float *y)
{
    NormJob j = {n, hw, c, host_mean, host_std, x, y, 0};
    cpu_for(be, n * c, 2, normalize_task, &j);
}

static void normalize_bwd(NnBackend *be, int64_t n, int c, int64_t hw, const float *host_std,
                          const float *dy, float *dx)
{
    NormJob j = {n, hw, c, NULL, host_std, dy, dx, 1};
    cpu_for(be, n * c, 2, normalize_task, &j);
}

/* ---- dropout ---- */

static void dropout_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    float keep = 1.0f / (1.0f - j->p);
    uint32_t r[4];
    for (int64_t i = b; i < e; i++) {
        if (i == b || (i & 3) == 0) dd_philox4x32(j->key, j->ctr, (uint64_t)i >> 2, r);
        double u = r[i & 3] * (1.0 / 4294967296.0);
        j->da[i] = u >= j->p ? keep : 0.0f;
        j->out[i] = j->x[i] * j->da[i];
    }
}

static void dropout_fwd(NnBackend *be, int64_t n, float p, uint64_t key, uint64_t ctr_hi,
                        const float *x, float *y, float *mask)
{
    ElemJob j = {.p = p, .key = key, .ctr = ctr_hi, .x = x, .out = y, .da = mask};
    cpu_for(be, n, ELEM_MIN, dropout_task, &j);
}

static void mul_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    for (int64_t i = b; i < e; i++) j->out[i] += j->x[i] * j->dy[i];
}

static void mul_bwd(NnBackend *be, int64_t n, const float *mask, const float *dy, float *dx)
{
    ElemJob j = {.x = mask, .dy = dy, .out = dx};
    cpu_for(be, n, ELEM_MIN, mul_task, &j);
}

/* ---- sum ---- */

static void sum_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    for (int64_t blk = b; blk < e; blk++) {
        int64_t i0 = blk * SUM_BLOCK, i1 = i0 + SUM_BLOCK < j->n ? i0 + SUM_BLOCK : j->n;
        double s = 0;
        for (int64_t i = i0; i < i1; i++) s += j->x[i];
        j->partial[blk] = s;
    }
}

static void sum_fwd(NnBackend *be, int64_t n, float scale, const float *x, float *y)
{
    int64_t nblk = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    ElemJob j = {.n = n, .x = x, .partial = (double *)cpu_shared(be, 2 * (size_t)nblk)};
    cpu_for(be, nblk, 4, sum_task, &j);
    double s = 0;
    for (int64_t b = 0; b < nblk; b++) s += j.partial[b];
    y[0] = (float)(s * scale);
}

void cpu_elem_init(NnBackend *be)
{
    be->axpy = axpy;
    be->fill_add = fill_add;
    be->scale_fwd = scale_fwd;
    be->act_fwd = act_fwd;
    be->act_bwd = act_bwd;
    be->act_bwd_inplace = act_bwd_inplace;
    be->binary_fwd = binary_fwd;
    be->binary_bwd = binary_bwd;
    be->normalize_fwd = normalize_fwd;
    be->normalize_bwd = normalize_bwd;
    be->dropout_fwd = dropout_fwd;
    be->mul_bwd = mul_bwd;
    be->sum_fwd = sum_fwd;
}

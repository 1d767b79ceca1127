/* norm.c - CPU batchnorm (train / eval, forward / backward) and the BN-statistics loss. One channel
 * per task item (the fused kernels run their items' channels 16 at a time, image by image);
 * per-channel sums in double, in image order, so results do not depend on threads. */
#include "libcommon/nn/cpu/cpu.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define NORM_X86 1
#include <immintrin.h>
/* The sums' vector forms: AVX2 without FMA, so each product and sum rounds as in the scalar loops
 * (lane l of SUM_LANES takes elements i + l, as there): the results are bit-identical. */
#define NORM_AVX2 __attribute__((target("avx2")))
#endif

/* A task NAME running ITEMS(job, b, e) as built (x86-64's SSE2), and NAME_avx2 with AVX2 (no FMA,
 * so every operation rounds as in the SSE2 build: the element loops just run 8 wide;
 * test_bn_fused compares the two bit for bit). Jobs pick NAME_avx2 where cpu_avx2(). */
#ifdef NORM_X86
#define BN_TASKS(name, items)                                                   \
    static void name(void *arg, int64_t b, int64_t e, int tid)                  \
    {                                                                           \
        (void)tid;                                                              \
        items(arg, b, e);                                                       \
    }                                                                           \
    NORM_AVX2 static void name##_avx2(void *arg, int64_t b, int64_t e, int tid) \
    {                                                                           \
        (void)tid;                                                              \
        items(arg, b, e);                                                       \
    }
#else
#define BN_TASKS(name, items)                                  \
    static void name(void *arg, int64_t b, int64_t e, int tid) \
    {                                                          \
        (void)tid;                                             \
        items(arg, b, e);                                      \
    }                                                          \
    static void (*const name##_avx2)(void *, int64_t, int64_t, int) = name;
#endif

typedef struct {
    int n, c;
    int64_t hw;
    float eps, momentum;
    const float *x, *w, *b, *dy, *save;
    float *y, *mean, *invstd, *rm, *rv, *dx, *dw, *db;
    const float *crm, *crv;
    float g;                       /* bn_stat backward: dloss */
    int train, inplace;            /* inplace: dx == dy, written (=) rather than accumulated */
    NnAct act;                     /* NN_ACT_RELU, NN_ACT_RELU6 or NN_BN_NO_ACT */
    const float *r;                /* bn_act: the residual added before act, or NULL */
    float *dr;                     /* ... and its gradient (+=), or NULL */
    float *stat;                   /* eval forward: bn_stat_fwd's save of x, or NULL */
    int vec;                       /* the sums' AVX2 forms (cpu_avx2()) */
} BnJob;

/* Lanes of the per-channel sums: independent accumulators (a latency chain of double adds per
 * element would bound these loops), combined in one fixed order. */
#define SUM_LANES 8

static double lanes_total(const double *s)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* s, q (SUM_LANES each) += the lane sums of (x - k) and (x - k)^2 over one plane run. */
#ifdef NORM_X86
/* stat_lanes_run's whole blocks of SUM_LANES; returns the elements done. */
NORM_AVX2 static int64_t stat_lanes_avx2(int64_t n, const float *x, double k, double *s, double *q)
{
    __m256d s0 = _mm256_loadu_pd(s), s1 = _mm256_loadu_pd(s + 4);
    __m256d q0 = _mm256_loadu_pd(q), q1 = _mm256_loadu_pd(q + 4), kk = _mm256_set1_pd(k);
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), kk);
        __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), kk);
        s0 = _mm256_add_pd(s0, d0), s1 = _mm256_add_pd(s1, d1);
        q0 = _mm256_add_pd(q0, _mm256_mul_pd(d0, d0)), q1 = _mm256_add_pd(q1, _mm256_mul_pd(d1, d1));
    }
    _mm256_storeu_pd(s, s0), _mm256_storeu_pd(s + 4, s1);
    _mm256_storeu_pd(q, q0), _mm256_storeu_pd(q + 4, q1);
    return i;
}
#endif

static void stat_lanes_run(int vec, int64_t n, const float *restrict x, double k,
                           double *restrict s, double *restrict q)
{
    int64_t i = 0;
#ifdef NORM_X86
    if (vec) i = stat_lanes_avx2(n, x, k, s, q);
#else
    (void)vec;
#endif
    for (; i + SUM_LANES <= n; i += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++) {
            double d = x[i + l] - k;
            s[l] += d;
            q[l] += d * d;
        }
    for (; i < n; i++) {
        double d = x[i] - k;
        s[0] += d;
        q[0] += d * d;
    }
}

/* Mean and biased variance from stat_lanes_run's sums over count values shifted by k. */
static void stats_of_lanes(const double *s, const double *q, double k, double count, double *mean,
                           double *var)
{
    double m = lanes_total(s) / count, v = lanes_total(q) / count - m * m;
    *mean = k + m;
    *var = v > 0 ? v : 0.0;
}

/* Mean and biased variance of channel c: one pass of double sums of (x - k) and (x - k)^2, k the
 * channel's first value (shifted sums: no cancellation while the mean is near any one value). */
static void channel_stats(const BnJob *j, int64_t c, double *mean, double *var)
{
    double s[SUM_LANES] = {0}, q[SUM_LANES] = {0};
    double k = j->x[(size_t)c * j->hw];
    for (int n = 0; n < j->n; n++)
        stat_lanes_run(j->vec, j->hw, j->x + ((size_t)n * j->c + (size_t)c) * j->hw, k, s, q);
    stats_of_lanes(s, q, k, (double)j->n * (double)j->hw, mean, var);
}

/* Elementwise loops go in fixed blocks of 8 over restrict pointers, which gcc vectorises at -O2
 * (its cheap cost model leaves loops of unknown trip count scalar). */
#define VBLOCK 8

/* BN_CB channels at a time, image by image: one channel's plane runs lie an image apart (a cache
 * line at 4x4, 4 KiB at 32x32), a block's runs of one image lie together, and the hardware
 * streams them (measured, one thread, AMD EPYC, time over one channel at a time: train forward
 * 0.69 to 0.72 from 2x2 to 8x8 planes, 0.61 at 16x16, 0.68 to 0.82 at 32x32; backward 0.78 to
 * 0.81 from 4x4 to 8x8, 0.68 at 16x16, 0.84 at 32x32 with 32 channels; the same at 64x64). Each
 * channel's operations stay the same, in the same order: only the channels interleave. */
#define BN_CB 16

/* Channel c's plane run of image n in t (x, y, dy, ...: NCHW as x) */
static inline const float *bn_run(const BnJob *j, const float *t, int n, int64_t c)
{
    return t + ((size_t)n * j->c + (size_t)c) * j->hw;
}

/* Eval mode: mean[c] and invstd[c] from the running stats (crm, crv). */
static void channel_norm_eval(const BnJob *j, int64_t c)
{
    j->mean[c] = j->crm[c];
    j->invstd[c] = (float)(1.0 / sqrt((double)j->crv[c] + j->eps));
}

/* Train mode: mean[c] and invstd[c] from the batch's mean m and biased variance v (the running
 * stats updated where rm is set). */
static void channel_norm_train(const BnJob *j, int64_t c, double m, double v)
{
    double count = (double)j->n * (double)j->hw;
    j->mean[c] = (float)m;
    j->invstd[c] = (float)(1.0 / sqrt(v + j->eps));
    if (j->rm) {
        j->rm[c] = (float)((1.0 - j->momentum) * j->rm[c] + j->momentum * m);
        j->rv[c] = (float)((1.0 - j->momentum) * j->rv[c] + j->momentum * v * count / (count - 1));
    }
}

/* ---- statistics loss: save = [mean-rm (c), var-rv (c), mean (c), ||mean-rm||, ||var-rv||] ---- */

/* The two norms at the end of save, and the loss, from its first 2c floats. */
static void stat_norms(int c, float *save, float *loss)
{
    double sm = 0, sv = 0;
    for (int i = 0; i < c; i++) {
        sm += (double)save[i] * save[i];
        sv += (double)save[c + i] * save[c + i];
    }
    save[3 * c] = (float)sqrt(sm);
    save[3 * c + 1] = (float)sqrt(sv);
    loss[0] = (float)(sqrt(sm) + sqrt(sv));
}

static void stat_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const BnJob *j = arg;
    float *save = (float *)j->save;
    for (int64_t c = b; c < e; c++) {
        double m, v;
        channel_stats(j, c, &m, &v);
        save[c] = (float)(m - j->crm[c]);
        save[j->c + c] = (float)(v - j->crv[c]);
        save[2 * j->c + c] = (float)m;
    }
}

static void bn_stat_fwd(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *rm,
                        const float *rv, float *loss, float *save)
{
    BnJob j = {.vec = cpu_avx2(), .n = n, .c = c, .hw = hw, .x = x, .crm = rm, .crv = rv, .save = save};
    cpu_for(be, c, 2, stat_task, &j);
    stat_norms(c, save, loss);
}

/* dx += km + kv (x - m) over one plane run (dx is the input's gradient, never x). */
static void stat_bwd_run(int64_t n, const float *restrict x, float *restrict dx, float km, float kv,
                         float m)
{
    int64_t i = 0;
    for (; i + VBLOCK <= n; i += VBLOCK)
        for (int k = 0; k < VBLOCK; k++) dx[i + k] += km + kv * (x[i + k] - m);
    for (; i < n; i++) dx[i] += km + kv * (x[i] - m);
}

/* The statistics loss's dx = km + kv (x - m) for channel c, of save and dloss (j->save, j->g):
 * d||a||/da = a/||a|| (0 where the norm is 0); dmean/dx = 1/M; dvar/dx = 2(x-mean)/M. */
static void stat_coefs(const BnJob *j, int64_t c, float *km, float *kv, float *m)
{
    const float *s = j->save;
    float nm = s[3 * j->c], nv = s[3 * j->c + 1];
    double count = (double)j->n * (double)j->hw;
    *km = nm > 0 ? (float)(j->g * s[c] / nm / count) : 0.0f;
    *kv = nv > 0 ? (float)(2.0 * j->g * s[j->c + c] / nv / count) : 0.0f;
    *m = s[2 * j->c + c];
}

static void stat_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const BnJob *j = arg;
    for (int64_t c = b; c < e; c++) {
        float km, kv, m;
        stat_coefs(j, c, &km, &kv, &m);
        for (int n = 0; n < j->n; n++) {
            size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
            stat_bwd_run(j->hw, j->x + off, j->dx + off, km, kv, m);
        }
    }
}

static void bn_stat_bwd(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *save,
                        const float *dloss, float *dx)
{
    BnJob j = {.vec = cpu_avx2(), .n = n, .c = c, .hw = hw, .x = x, .save = save, .dx = dx, .g = dloss[0]};
    cpu_for(be, c, 2, stat_bwd_task, &j);
}

/* ---- batchnorm, with or without ReLU / ReLU6 and a residual, in one pass ----
 *
 * A ResNet's recover step is memory-bound outside its convolutions: BN statistics, BN affine,
 * the residual add and ReLU were a pass each over every activation forward (and ReLU, add, BN
 * and the statistics loss a pass each backward). Here the statistics of x (when the loss wants
 * them), the affine, the residual and the activation share one read of x and one write of y;
 * backward masks dy by the activation while it scales it, and adds the statistics loss's
 * gradient. The arithmetic is the separate ops' own, in their order: results are bit-identical.
 * The plain batchnorm slots are these kernels with NN_BN_NO_ACT. */

/* The activation of z, and whether it passes a gradient (PyTorch: relu where y > 0, relu6 where
 * 0 < x < 6, which for y = relu6(x) is 0 < y < 6). Called with a constant act, so it folds. */
static inline float act_of(NnAct act, float z)
{
    if (act == NN_BN_NO_ACT) return z;
    if (act == NN_ACT_RELU6) return !(z <= 0) ? (!(z >= 6) ? z : 6.0f) : 0.0f; /* NaN passes (elem.c) */
    return !(z <= 0) ? z : 0.0f;
}

static inline int act_passes(NnAct act, float y)
{
    return act == NN_ACT_RELU6 ? y > 0 && y < 6 : y > 0;
}

/* What act_passes tests at element i: the output y[i], or where y is NULL (a BN without a
 * residual; its output need not be kept for the backward) the activation's input z recomputed
 * from x with the forward's float operations (affine_act_run), so the same mask: relu's z > 0 is
 * its y > 0, relu6's 0 < z < 6 its 0 < y < 6, and a NaN z fails both as its y = NaN does. f holds
 * the channel's m, is, w, b. */
#define ACT_ARG(y, x, i, f) ((y) ? (y)[i] : ((x)[i] - (f).m) * (f).is * (f).w + (f).b)
/* dy's share that passes at element i (y and x are not read with no activation). */
#define ACT_PASS(act, y, x, i, f, dy) \
    ((act) == NN_BN_NO_ACT || act_passes(act, ACT_ARG(y, x, i, f)) ? (dy) : 0.0f)

/* y = act((x - m) is w + b (+ r, where has_r)) over one plane run. */
static inline __attribute__((always_inline)) void affine_act_run(NnAct act, int has_r, int64_t n,
                                                                 const float *restrict x,
                                                                 const float *restrict r,
                                                                 float *restrict y, float m,
                                                                 float is, float w, float b)
{
    int64_t i = 0;
    for (; i + VBLOCK <= n; i += VBLOCK)
        for (int l = 0; l < VBLOCK; l++) {
            float z = (x[i + l] - m) * is * w + b;
            y[i + l] = act_of(act, has_r ? z + r[i + l] : z);
        }
    for (; i + VBLOCK / 2 <= n; i += VBLOCK / 2) /* 2x2 planes: one half block */
        for (int l = 0; l < VBLOCK / 2; l++) {
            float z = (x[i + l] - m) * is * w + b;
            y[i + l] = act_of(act, has_r ? z + r[i + l] : z);
        }
    for (; i < n; i++) {
        float z = (x[i] - m) * is * w + b;
        y[i] = act_of(act, has_r ? z + r[i] : z);
    }
}

/* y = act((x - m) is w + b (+ r)) over channel c's run of image n; with s, also channel_stats'
 * sums of x (shift k), the run summed while it is still in L1. */
static inline __attribute__((always_inline)) void affine_act_one(const BnJob *j, int64_t c, int n, double k,
                                                                 double *s, double *q)
{
    float w = j->w ? j->w[c] : 1.0f, b = j->b ? j->b[c] : 0.0f;
    float m = j->mean[c], is = j->invstd[c];
    size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
    const float *x = j->x + off, *r = j->r ? j->r + off : NULL;
    float *y = j->y + off;
    if (s) stat_lanes_run(j->vec, j->hw, x, k, s, q);
    if (r && j->act == NN_ACT_RELU6) affine_act_run(NN_ACT_RELU6, 1, j->hw, x, r, y, m, is, w, b);
    else if (r) affine_act_run(NN_ACT_RELU, 1, j->hw, x, r, y, m, is, w, b);
    else if (j->act == NN_ACT_RELU6) affine_act_run(NN_ACT_RELU6, 0, j->hw, x, r, y, m, is, w, b);
    else if (j->act == NN_ACT_RELU) affine_act_run(NN_ACT_RELU, 0, j->hw, x, r, y, m, is, w, b);
    else affine_act_run(NN_BN_NO_ACT, 0, j->hw, x, r, y, m, is, w, b);
}

/* Channels [b, e) in blocks of BN_CB: train mode, the statistics of x, then the affine; eval
 * mode, the affine, with the statistics loss's sums of x from the same read where it wants them. */
static inline __attribute__((always_inline)) void bn_act_fwd_items(const BnJob *j, int64_t b,
                                                                   int64_t e)
{
    const double count = (double)j->n * (double)j->hw;
    const int stat = !j->train && j->stat;
    for (int64_t c0 = b; c0 < e; c0 += BN_CB) {
        const int cb = e - c0 < BN_CB ? (int)(e - c0) : BN_CB;
        double s[BN_CB][SUM_LANES] = {{0}}, q[BN_CB][SUM_LANES] = {{0}}, k[BN_CB];
        for (int l = 0; l < cb; l++) k[l] = j->x[(size_t)(c0 + l) * j->hw];
        if (j->train) {
            for (int n = 0; n < j->n; n++)
                for (int l = 0; l < cb; l++)
                    stat_lanes_run(j->vec, j->hw, bn_run(j, j->x, n, c0 + l), k[l], s[l], q[l]);
            for (int l = 0; l < cb; l++) {
                double mm, v;
                stats_of_lanes(s[l], q[l], k[l], count, &mm, &v);
                channel_norm_train(j, c0 + l, mm, v);
            }
        } else {
            for (int l = 0; l < cb; l++) channel_norm_eval(j, c0 + l);
        }
        for (int n = 0; n < j->n; n++)
            for (int l = 0; l < cb; l++) affine_act_one(j, c0 + l, n, k[l], stat ? s[l] : NULL, q[l]);
        for (int l = 0; stat && l < cb; l++) { /* as stat_task */
            double mm, v;
            const int64_t c = c0 + l;
            stats_of_lanes(s[l], q[l], k[l], count, &mm, &v);
            j->stat[c] = (float)(mm - j->crm[c]);
            j->stat[j->c + c] = (float)(v - j->crv[c]);
            j->stat[2 * j->c + c] = (float)mm;
        }
    }
}

BN_TASKS(bn_act_fwd_task, bn_act_fwd_items)

static void bn_act_fwd(NnBackend *be, NnAct act, int train, int n, int c, int64_t hw, float eps,
                       float momentum, const float *x, const float *r, const float *w,
                       const float *b, float *rm, float *rv, float *y, float *mean, float *invstd,
                       float *stat_loss, float *stat_save)
{
    BnJob j = {.vec = cpu_avx2(), .act = act, .r = r, .train = train, .n = n, .c = c, .hw = hw, .eps = eps,
               .momentum = momentum, .x = x, .w = w, .b = b, .y = y, .mean = mean,
               .invstd = invstd, .rm = train ? rm : NULL, .rv = train ? rv : NULL, .crm = rm,
               .crv = rv, .stat = train ? NULL : stat_save};
    cpu_for(be, c, 2, j.vec ? bn_act_fwd_task_avx2 : bn_act_fwd_task, &j);
    if (j.stat) stat_norms(c, stat_save, stat_loss);
}

/* One plane run of the backward from dz = act's mask of g (dy; rz: y is NULL, the mask
 * recomputed from x): dr += dz (residual: dr not
 * NULL); dx = eval k dz, train k (dz - a - (x - m) is q), written over g (inplace) or added to
 * dx (dx not NULL); then (has_s) the statistics loss's dx += km + kv (x - ms), as a second add.
 * Called with constant flags, so each use is its own branch-free loop; blocks of 8 over restrict
 * pointers vectorise. */
typedef struct {
    float k, a, m, is, q; /* the BN's */
    float km, kv, ms;     /* the statistics loss's */
    float w, b;           /* the BN's affine (the mask recomputed: ACT_ARG) */
} DzCoef;

static inline __attribute__((always_inline)) void dz_dx_run(NnAct act, int rz, int train,
                                                            int inplace, int has_dx, int has_r,
                                                            int has_s,
                                                            int64_t n, const float *restrict x,
                                                            const float *restrict y,
                                                            float *restrict g, float *restrict dx,
                                                            float *restrict dr, DzCoef f)
{
#define DZ_DX_ONE(i)                                                                   \
    do {                                                                               \
        float gi = g[i]; /* read unconditionally: a masked read is a branch to gcc */ \
        float dz = ACT_PASS(act, rz ? (const float *)0 : y, x, i, f, gi);             \
        if (has_r) dr[i] += dz;                                                        \
        float v = train ? f.k * (dz - f.a - (x[i] - f.m) * f.is * f.q) : f.k * dz;     \
        if (inplace) v = has_s ? v + (f.km + f.kv * (x[i] - f.ms)) : v;                \
        if (inplace) g[i] = v;                                                         \
        else if (has_dx && has_s) dx[i] = (dx[i] + v) + (f.km + f.kv * (x[i] - f.ms)); \
        else if (has_dx) dx[i] += v;                                                   \
    } while (0)
    int64_t i = 0;
    for (; i + VBLOCK <= n; i += VBLOCK)
        for (int l = 0; l < VBLOCK; l++) DZ_DX_ONE(i + l);
    for (; i + VBLOCK / 2 <= n; i += VBLOCK / 2) /* 2x2 planes: one half block */
        for (int l = 0; l < VBLOCK / 2; l++) DZ_DX_ONE(i + l);
    for (; i < n; i++) DZ_DX_ONE(i);
#undef DZ_DX_ONE
}

#ifdef NORM_X86
/* The whole blocks of bn_act_bwd_channel's sums s += dz, sx += dz xhat (xhat = (x - m) is, in
 * float, as there); returns the elements done. */
NORM_AVX2 static int64_t dz_sums_avx2(NnAct act, int64_t n, const float *x, const float *y,
                                      const float *dy, DzCoef f, double *s, double *sx)
{
    const float m = f.m, is = f.is;
    const __m256 wv = _mm256_set1_ps(f.w), bv = _mm256_set1_ps(f.b);
    __m256d s0 = _mm256_loadu_pd(s), s1 = _mm256_loadu_pd(s + 4);
    __m256d t0 = _mm256_loadu_pd(sx), t1 = _mm256_loadu_pd(sx + 4);
    __m256 mv = _mm256_set1_ps(m), iv = _mm256_set1_ps(is), zero = _mm256_setzero_ps();
    __m256 six = _mm256_set1_ps(6.0f);
    int64_t i = 0;
    for (; i + SUM_LANES <= n; i += SUM_LANES) {
        __m256 dz = _mm256_loadu_ps(dy + i);
        if (act != NN_BN_NO_ACT) { /* act_passes: y > 0 (and y < 6); NaN fails both */
            __m256 yv = y ? _mm256_loadu_ps(y + i) /* else ACT_ARG's z, the same operations */
                          : _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), iv), wv), bv);
            __m256 pass = _mm256_cmp_ps(yv, zero, _CMP_GT_OQ);
            if (act == NN_ACT_RELU6) pass = _mm256_and_ps(pass, _mm256_cmp_ps(yv, six, _CMP_LT_OQ));
            dz = _mm256_and_ps(dz, pass);
        }
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv), iv);
        __m256d dz0 = _mm256_cvtps_pd(_mm256_castps256_ps128(dz));
        __m256d dz1 = _mm256_cvtps_pd(_mm256_extractf128_ps(dz, 1));
        s0 = _mm256_add_pd(s0, dz0), s1 = _mm256_add_pd(s1, dz1);
        t0 = _mm256_add_pd(t0, _mm256_mul_pd(dz0, _mm256_cvtps_pd(_mm256_castps256_ps128(xh))));
        t1 = _mm256_add_pd(t1, _mm256_mul_pd(dz1, _mm256_cvtps_pd(_mm256_extractf128_ps(xh, 1))));
    }
    _mm256_storeu_pd(s, s0), _mm256_storeu_pd(s + 4, s1);
    _mm256_storeu_pd(sx, t0), _mm256_storeu_pd(sx + 4, t1);
    return i;
}
#endif

/* s, sx += the sums of dz = act's mask of dy and dz xhat over channel c's run of image n */
static inline __attribute__((always_inline)) void dz_sums_one(const BnJob *j, int64_t c, int n, NnAct act,
                                                              DzCoef f, double *s, double *sx)
{
    const float m = f.m, is = f.is;
    size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
    const float *x = j->x + off, *dy = j->dy + off, *y = j->y ? j->y + off : NULL;
    int64_t i = 0;
#ifdef NORM_X86
    if (j->vec) i = dz_sums_avx2(act, j->hw, x, y, dy, f, s, sx);
#endif
    for (; i + SUM_LANES <= j->hw; i += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++) {
            float dz = ACT_PASS(act, y, x, i + l, f, dy[i + l]);
            s[l] += dz;
            sx[l] += (double)dz * ((x[i + l] - m) * is);
        }
    for (; i < j->hw; i++) {
        float dz = ACT_PASS(act, y, x, i, f, dy[i]);
        s[0] += dz;
        sx[0] += (double)dz * ((x[i] - m) * is);
    }
}

/* dx of dz over channel c's run of image n (and dr += dz), f complete */
static inline __attribute__((always_inline)) void dz_dx_one(const BnJob *j, int64_t c, int n, NnAct act,
                                                            DzCoef f)
{
    size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
    const float *x = j->x + off, *y = j->y ? j->y + off : NULL;
    float *g = (float *)j->dy + off, *dx = j->dx ? j->dx + off : NULL, *dr = j->dr ? j->dr + off : NULL;
    int64_t hw = j->hw;
    int hr = dr != NULL, hs = j->save != NULL;
    /* (train, in place, dx, dr, statistics): the cases that occur, each with constant flags
     * (statistics: eval mode only) */
#define RUN(T, I, X, R, S) \
    (y ? dz_dx_run(act, 0, T, I, X, R, S, hw, x, y, g, dx, dr, f) \
       : dz_dx_run(act, 1, T, I, X, R, S, hw, x, y, g, dx, dr, f))
    if (!dx) RUN(0, 0, 0, 1, 0);
    else if (j->train && j->inplace) hr ? RUN(1, 1, 1, 1, 0) : RUN(1, 1, 1, 0, 0);
    else if (j->train) hr ? RUN(1, 0, 1, 1, 0) : RUN(1, 0, 1, 0, 0);
    else if (j->inplace && hs) hr ? RUN(0, 1, 1, 1, 1) : RUN(0, 1, 1, 0, 1);
    else if (j->inplace) hr ? RUN(0, 1, 1, 1, 0) : RUN(0, 1, 1, 0, 0);
    else if (hs) hr ? RUN(0, 0, 1, 1, 1) : RUN(0, 0, 1, 0, 1);
    else hr ? RUN(0, 0, 1, 1, 0) : RUN(0, 0, 1, 0, 0);
#undef RUN
}

/* Channels c0 .. c0 + cb - 1: dz = act's mask of dy; the sums of dz and dz xhat (for dw, db and
 * train mode's dx; eval mode with a frozen BN, recover's, needs none), dx of dz, and the
 * residual's dr += dz. */
static inline __attribute__((always_inline)) void bn_act_bwd_block(const BnJob *j, int64_t c0, int cb,
                                                                   NnAct act)
{
    double count = (double)j->n * (double)j->hw;
    DzCoef f[BN_CB];
    double s[BN_CB][SUM_LANES] = {{0}}, sx[BN_CB][SUM_LANES] = {{0}};
    for (int l = 0; l < cb; l++) {
        const int64_t c = c0 + l;
        f[l] = (DzCoef){.m = j->mean[c], .is = j->invstd[c], .w = j->w ? j->w[c] : 1.0f,
                        .b = j->b ? j->b[c] : 0.0f};
    }
    const int sums = j->dw || j->db || j->train;
    for (int n = 0; sums && n < j->n; n++)
        for (int l = 0; l < cb; l++) dz_sums_one(j, c0 + l, n, act, f[l], s[l], sx[l]);
    for (int l = 0; l < cb; l++) {
        const int64_t c = c0 + l;
        double sdy = sums ? lanes_total(s[l]) : 0, sdyx = sums ? lanes_total(sx[l]) : 0;
        if (j->dw) j->dw[c] += (float)sdyx;
        if (j->db) j->db[c] += (float)sdy;
        f[l].k = f[l].w * f[l].is;
        f[l].a = (float)(sdy / count);
        f[l].q = (float)(sdyx / count);
        if (j->save) stat_coefs(j, c, &f[l].km, &f[l].kv, &f[l].ms);
    }
    if (!j->dx && !j->dr) return;
    for (int n = 0; n < j->n; n++)
        for (int l = 0; l < cb; l++) dz_dx_one(j, c0 + l, n, act, f[l]);
}

static inline __attribute__((always_inline)) void bn_act_bwd_items(const BnJob *j, int64_t b,
                                                                   int64_t e)
{
    for (int64_t c0 = b; c0 < e; c0 += BN_CB) {
        const int cb = e - c0 < BN_CB ? (int)(e - c0) : BN_CB;
        if (j->act == NN_ACT_RELU6) bn_act_bwd_block(j, c0, cb, NN_ACT_RELU6);
        else if (j->act == NN_ACT_RELU) bn_act_bwd_block(j, c0, cb, NN_ACT_RELU);
        else bn_act_bwd_block(j, c0, cb, NN_BN_NO_ACT);
    }
}

BN_TASKS(bn_act_bwd_task, bn_act_bwd_items)

static void bn_act_bwd(NnBackend *be, NnAct act, int train, int n, int c, int64_t hw,
                       const float *x, const float *y, const float *w, const float *b,
                       const float *mean,
                       const float *invstd, const float *dy, float *dx, float *dr, float *dw,
                       float *db, const float *stat_save, const float *stat_dloss)
{
    BnJob j = {.vec = cpu_avx2(), .act = act, .dr = dr, .save = stat_save, .g = stat_save ? stat_dloss[0] : 0.0f,
               .train = train, .n = n, .c = c, .hw = hw, .x = x, .y = (float *)y,
               .w = w, .b = b, .dy = dy, .dx = dx, .dw = dw, .db = db, .mean = (float *)mean,
               .invstd = (float *)invstd, .inplace = dx && dx == dy};
    cpu_for(be, c, 2, j.vec ? bn_act_bwd_task_avx2 : bn_act_bwd_task, &j);
}

/* The plain batchnorm slots: the same kernels with no activation. */
static void bn_fwd_train(NnBackend *be, int n, int c, int64_t hw, float eps, float momentum,
                         const float *x, const float *w, const float *b, float *y, float *mean,
                         float *invstd, float *rm, float *rv)
{
    bn_act_fwd(be, NN_BN_NO_ACT, 1, n, c, hw, eps, momentum, x, NULL, w, b, rm, rv, y, mean,
               invstd, NULL, NULL);
}

static void bn_fwd_eval(NnBackend *be, int n, int c, int64_t hw, float eps, const float *x,
                        const float *w, const float *b, const float *rm, const float *rv, float *y,
                        float *mean, float *invstd)
{
    bn_act_fwd(be, NN_BN_NO_ACT, 0, n, c, hw, eps, 0.0f, x, NULL, w, b, (float *)rm, (float *)rv,
               y, mean, invstd, NULL, NULL);
}

static void bn_bwd(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                   const float *w, const float *mean, const float *invstd, const float *dy,
                   float *dx, float *dw, float *db)
{
    bn_act_bwd(be, NN_BN_NO_ACT, train, n, c, hw, x, NULL, w, NULL, mean, invstd, dy, dx, NULL, dw, db,
               NULL, NULL);
}

static void bn_bwd_inplace(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                           const float *w, const float *mean, const float *invstd, float *g,
                           float *dw, float *db)
{
    bn_act_bwd(be, NN_BN_NO_ACT, train, n, c, hw, x, NULL, w, NULL, mean, invstd, g, g, NULL, dw, db,
               NULL, NULL);
}

void cpu_norm_init(NnBackend *be)
{
    be->bn_fwd_train = bn_fwd_train;
    be->bn_fwd_eval = bn_fwd_eval;
    be->bn_bwd = bn_bwd;
    be->bn_bwd_inplace = bn_bwd_inplace;
    be->bn_stat_fwd = bn_stat_fwd;
    be->bn_stat_bwd = bn_stat_bwd;
    be->bn_act_fwd = bn_act_fwd;
    be->bn_act_bwd = bn_act_bwd;
}

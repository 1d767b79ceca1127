/* norm.c - CPU batchnorm (train / eval, forward / backward) and the BN-statistics loss. One channel
 * per task item; per-channel sums in double, in image order, so results do not depend on threads. */
#include "libcommon/nn/cpu/cpu.h"

#include <math.h>

typedef struct {
    int n, c;
    int64_t hw;
    float eps, momentum;
    const float *x, *w, *b, *dy, *save;
    float *y, *mean, *invstd, *rm, *rv, *dx, *dw, *db;
    const float *crm, *crv;
    float g;                       /* bn_stat backward: dloss */
    int train, inplace;            /* inplace: dx == dy, written (=) rather than accumulated */
} BnJob;

/* Lanes of the per-channel sums: independent accumulators (a latency chain of double adds per
 * element would bound these loops), combined in one fixed order. */
#define SUM_LANES 8

static double lanes_total(const double *s)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Mean and biased variance of channel c: one pass of double sums of (x - k) and (x - k)^2, k the
 * channel's first value (shifted sums: no cancellation while the mean is near any one value). */
static void channel_stats(const BnJob *j, int64_t c, double *mean, double *var)
{
    double s[SUM_LANES] = {0}, q[SUM_LANES] = {0};
    double k = j->x[(size_t)c * j->hw];
    for (int n = 0; n < j->n; n++) {
        const float *x = j->x + ((size_t)n * j->c + (size_t)c) * j->hw;
        int64_t i = 0;
        for (; i + SUM_LANES <= j->hw; i += SUM_LANES)
            for (int l = 0; l < SUM_LANES; l++) {
                double d = x[i + l] - k;
                s[l] += d;
                q[l] += d * d;
            }
        for (; i < j->hw; i++) {
            double d = x[i] - k;
            s[0] += d;
            q[0] += d * d;
        }
    }
    double count = (double)j->n * (double)j->hw, m = lanes_total(s) / count;
    double v = lanes_total(q) / count - m * m;
    *mean = k + m;
    *var = v > 0 ? v : 0.0;
}

/* Elementwise loops go in fixed blocks of 8 over restrict pointers, which gcc vectorises at -O2
 * (its cheap cost model leaves loops of unknown trip count scalar). */
#define VBLOCK 8

/* y = (x - m) * is * w + b over one plane run. */
static void affine_run(int64_t n, const float *restrict x, float *restrict y, float m, float is,
                       float w, float b)
{
    int64_t i = 0;
    for (; i + VBLOCK <= n; i += VBLOCK)
        for (int k = 0; k < VBLOCK; k++) y[i + k] = (x[i + k] - m) * is * w + b;
    for (; i < n; i++) y[i] = (x[i] - m) * is * w + b;
}

/* y = (x - mean) * invstd * w + b for channel c. */
static void channel_affine(const BnJob *j, int64_t c)
{
    float w = j->w ? j->w[c] : 1.0f, b = j->b ? j->b[c] : 0.0f;
    float m = j->mean[c], is = j->invstd[c];
    for (int n = 0; n < j->n; n++) {
        size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
        affine_run(j->hw, j->x + off, j->y + off, m, is, w, b);
    }
}

/* dx += k dy (dx is not dy). */
static void scale_acc_run(int64_t n, const float *restrict dy, float *restrict dx, float k)
{
    int64_t i = 0;
    for (; i + VBLOCK <= n; i += VBLOCK)
        for (int l = 0; l < VBLOCK; l++) dx[i + l] += k * dy[i + l];
    for (; i < n; i++) dx[i] += k * dy[i];
}

/* g = k g in place. */
static void scale_inplace_run(int64_t n, float *g, float k)
{
    int64_t i = 0;
    for (; i + VBLOCK <= n; i += VBLOCK)
        for (int l = 0; l < VBLOCK; l++) g[i + l] *= k;
    for (; i < n; i++) g[i] *= k;
}

static void fwd_train_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const BnJob *j = arg;
    double count = (double)j->n * (double)j->hw;
    for (int64_t c = b; c < e; c++) {
        double m, v;
        channel_stats(j, c, &m, &v);
        j->mean[c] = (float)m;
        j->invstd[c] = (float)(1.0 / sqrt(v + j->eps));
        if (j->rm) {
            j->rm[c] = (float)((1.0 - j->momentum) * j->rm[c] + j->momentum * m);
            j->rv[c] = (float)((1.0 - j->momentum) * j->rv[c] + j->momentum * v * count / (count - 1));
        }
        channel_affine(j, c);
    }
}

static void fwd_eval_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const BnJob *j = arg;
    for (int64_t c = b; c < e; c++) {
        j->mean[c] = j->crm[c];
        j->invstd[c] = (float)(1.0 / sqrt((double)j->crv[c] + j->eps));
        channel_affine(j, c);
    }
}

static void bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const BnJob *j = arg;
    double count = (double)j->n * (double)j->hw;
    for (int64_t c = b; c < e; c++) {
        float m = j->mean[c], is = j->invstd[c], w = j->w ? j->w[c] : 1.0f;
        double sdy = 0, sdyx = 0;
        /* the sums feed dw, db and train mode's dx; eval mode with a frozen BN (recover) needs none */
        if (j->dw || j->db || j->train) {
            double s[SUM_LANES] = {0}, sx[SUM_LANES] = {0};
            for (int n = 0; n < j->n; n++) {
                size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
                const float *x = j->x + off, *dy = j->dy + off;
                int64_t i = 0;
                for (; i + SUM_LANES <= j->hw; i += SUM_LANES)
                    for (int l = 0; l < SUM_LANES; l++) {
                        s[l] += dy[i + l];
                        sx[l] += (double)dy[i + l] * ((x[i + l] - m) * is);
                    }
                for (; i < j->hw; i++) {
                    s[0] += dy[i];
                    sx[0] += (double)dy[i] * ((x[i] - m) * is);
                }
            }
            sdy = lanes_total(s), sdyx = lanes_total(sx);
        }
        if (j->dw) j->dw[c] += (float)sdyx;
        if (j->db) j->db[c] += (float)sdy;
        if (!j->dx) continue;
        float k = w * is;
        float a = (float)(sdy / count), q = (float)(sdyx / count);
        for (int n = 0; n < j->n; n++) {
            size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
            const float *x = j->x + off, *dy = j->dy + off;
            float *dx = j->dx + off;
            if (!j->train && j->inplace) /* eval: dx = w invstd dy */
                scale_inplace_run(j->hw, dx, k);
            else if (!j->train)
                scale_acc_run(j->hw, dy, dx, k);
            else if (j->inplace)
                for (int64_t i = 0; i < j->hw; i++) dx[i] = k * (dy[i] - a - (x[i] - m) * is * q);
            else
                for (int64_t i = 0; i < j->hw; i++) dx[i] += k * (dy[i] - a - (x[i] - m) * is * q);
        }
    }
}

static void bn_fwd_train(NnBackend *be, int n, int c, int64_t hw, float eps, float momentum,
                         const float *x, const float *w, const float *b, float *y, float *mean,
                         float *invstd, float *rm, float *rv)
{
    BnJob j = {.n = n, .c = c, .hw = hw, .eps = eps, .momentum = momentum, .x = x, .w = w, .b = b,
               .y = y, .mean = mean, .invstd = invstd, .rm = rm, .rv = rv};
    cpu_for(be, c, 2, fwd_train_task, &j);
}

static void bn_fwd_eval(NnBackend *be, int n, int c, int64_t hw, float eps, const float *x,
                        const float *w, const float *b, const float *rm, const float *rv, float *y,
                        float *mean, float *invstd)
{
    BnJob j = {.n = n, .c = c, .hw = hw, .eps = eps, .x = x, .w = w, .b = b, .crm = rm, .crv = rv,
               .y = y, .mean = mean, .invstd = invstd};
    cpu_for(be, c, 2, fwd_eval_task, &j);
}

static void bn_bwd(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                   const float *w, const float *mean, const float *invstd, const float *dy,
                   float *dx, float *dw, float *db)
{
    BnJob j = {.train = train, .n = n, .c = c, .hw = hw, .x = x, .w = w, .dy = dy, .dx = dx,
               .dw = dw, .db = db, .mean = (float *)mean, .invstd = (float *)invstd};
    cpu_for(be, c, 2, bwd_task, &j);
}

static void bn_bwd_inplace(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                           const float *w, const float *mean, const float *invstd, float *g,
                           float *dw, float *db)
{
    BnJob j = {.train = train, .n = n, .c = c, .hw = hw, .x = x, .w = w, .dy = g, .dx = g,
               .dw = dw, .db = db, .mean = (float *)mean, .invstd = (float *)invstd, .inplace = 1};
    cpu_for(be, c, 2, bwd_task, &j);
}

/* ---- statistics loss: save = [mean-rm (c), var-rv (c), mean (c), ||mean-rm||, ||var-rv||] ---- */

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
    BnJob j = {.n = n, .c = c, .hw = hw, .x = x, .crm = rm, .crv = rv, .save = save};
    cpu_for(be, c, 2, stat_task, &j);
    double sm = 0, sv = 0;
    for (int i = 0; i < c; i++) {
        sm += (double)save[i] * save[i];
        sv += (double)save[c + i] * save[c + i];
    }
    save[3 * c] = (float)sqrt(sm);
    save[3 * c + 1] = (float)sqrt(sv);
    loss[0] = (float)(sqrt(sm) + sqrt(sv));
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

static void stat_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const BnJob *j = arg;
    const float *s = j->save;
    float nm = s[3 * j->c], nv = s[3 * j->c + 1];
    double count = (double)j->n * (double)j->hw;
    for (int64_t c = b; c < e; c++) {
        /* d||a||/da = a/||a|| (0 where the norm is 0); dmean/dx = 1/M; dvar/dx = 2(x-mean)/M. */
        float km = nm > 0 ? (float)(j->g * s[c] / nm / count) : 0.0f;
        float kv = nv > 0 ? (float)(2.0 * j->g * s[j->c + c] / nv / count) : 0.0f;
        float m = s[2 * j->c + c];
        for (int n = 0; n < j->n; n++) {
            size_t off = ((size_t)n * j->c + (size_t)c) * j->hw;
            stat_bwd_run(j->hw, j->x + off, j->dx + off, km, kv, m);
        }
    }
}

static void bn_stat_bwd(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *save,
                        const float *dloss, float *dx)
{
    BnJob j = {.n = n, .c = c, .hw = hw, .x = x, .save = save, .dx = dx, .g = dloss[0]};
    cpu_for(be, c, 2, stat_bwd_task, &j);
}

void cpu_norm_init(NnBackend *be)
{
    be->bn_fwd_train = bn_fwd_train;
    be->bn_fwd_eval = bn_fwd_eval;
    be->bn_bwd = bn_bwd;
    be->bn_bwd_inplace = bn_bwd_inplace;
    be->bn_stat_fwd = bn_stat_fwd;
    be->bn_stat_bwd = bn_stat_bwd;
}

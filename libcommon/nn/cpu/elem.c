/* elem.c - CPU elementwise kernels: axpy, activations, broadcast add/mul, normalize, dropout, and
 * the full sum (fixed blocks of partial sums in double, added in block order). */
#include "libcommon/base/base.h"
#include "libcommon/nn/cpu/cpu.h"

#include <math.h>
#include <string.h>

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

static void relu_fwd_range(int64_t n, const float *restrict x, float *restrict y)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++) y[i + k] = x[i + k] > 0 ? x[i + k] : 0.0f;
    for (; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
}

static void relu_bwd_range(int64_t n, const float *restrict y, const float *restrict dy,
                           float *restrict dx)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++) dx[i + k] += y[i + k] > 0 ? dy[i + k] : 0.0f;
    for (; i < n; i++) dx[i] += y[i] > 0 ? dy[i] : 0.0f;
}

static void relu6_fwd_range(int64_t n, const float *restrict x, float *restrict y)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++)
            y[i + k] = x[i + k] > 0 ? (x[i + k] < 6 ? x[i + k] : 6.0f) : 0.0f;
    for (; i < n; i++) y[i] = x[i] > 0 ? (x[i] < 6 ? x[i] : 6.0f) : 0.0f;
}

static void relu6_bwd_range(int64_t n, const float *restrict x, const float *restrict dy,
                            float *restrict dx)
{
    int64_t i = 0;
    for (; i + ACT_BLOCK <= n; i += ACT_BLOCK)
        for (int k = 0; k < ACT_BLOCK; k++)
            dx[i + k] += x[i + k] > 0 && x[i + k] < 6 ? dy[i + k] : 0.0f;
    for (; i < n; i++) dx[i] += x[i] > 0 && x[i] < 6 ? dy[i] : 0.0f;
}

static void act_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const float *x = j->x;
    float *y = j->out;
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

static void binary_fwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const NnBroadcast *bc = j->bc;
    if (bc->nb == bc->n) {
        for (int64_t i = b; i < e; i++)
            j->out[i] = j->op == NN_BIN_ADD ? j->a[i] + j->b[i] : j->a[i] * j->b[i];
        return;
    }
    int64_t run = bcast_run(bc);
    for (int64_t i = b; i < e;) {
        float bv = j->b[bcast_index(bc, i)];
        int64_t end = (i / run + 1) * run;
        if (end > e) end = e;
        if (j->op == NN_BIN_ADD)
            for (; i < end; i++) j->out[i] = j->a[i] + bv;
        else
            for (; i < end; i++) j->out[i] = j->a[i] * bv;
    }
}

static void binary_fwd(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, float *y)
{
    ElemJob j = {.op = (int)op, .bc = bc, .a = a, .b = b, .out = y};
    cpu_for(be, bc->n, ELEM_MIN, binary_fwd_task, &j);
}

/* da (parallel, elementwise); db when b is not broadcast (elementwise too). */
static void binary_bwd_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ElemJob *j = arg;
    const NnBroadcast *bc = j->bc;
    int same = bc->nb == bc->n;
    if (same && j->op == NN_BIN_ADD && j->da != j->db) { /* the residual add: two plain passes */
        if (j->da) cpu_acc_run(e - b, j->dy + b, j->da + b);
        if (j->db) cpu_acc_run(e - b, j->dy + b, j->db + b);
        return;
    }
    for (int64_t i = b; i < e; i++) {
        float bv = j->b[same ? i : bcast_index(bc, i)];
        if (j->da) j->da[i] += j->op == NN_BIN_ADD ? j->dy[i] : j->dy[i] * bv;
        if (j->db && same) j->db[i] += j->op == NN_BIN_ADD ? j->dy[i] : j->dy[i] * j->a[i];
    }
}

static void binary_bwd(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, const float *dy, float *da, float *db)
{
    ElemJob j = {.op = (int)op, .bc = bc, .a = a, .b = b, .dy = dy, .da = da, .db = db};
    if (da || (db && bc->nb == bc->n)) cpu_for(be, bc->n, ELEM_MIN, binary_bwd_task, &j);
    if (!db || bc->nb == bc->n) return;
    /* Reduction over the broadcast dims: one sequential pass in double (deterministic). */
    double *acc = (double *)cpu_shared(be, 2 * (size_t)bc->nb);
    memset(acc, 0, (size_t)bc->nb * sizeof *acc);
    int64_t run = bcast_run(bc);
    for (int64_t i = 0; i < bc->n; i += run) {
        double s = 0;
        if (op == NN_BIN_ADD)
            for (int64_t k = i; k < i + run; k++) s += dy[k];
        else
            for (int64_t k = i; k < i + run; k++) s += (double)dy[k] * a[k];
        acc[bcast_index(bc, i)] += s;
    }
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

/* profile.c - DD_NN_PROFILE: the time of every backend kernel call, summed per kernel and shape.
 *
 * nn_new wraps the device's op table in one of the same type whose every slot times the call and
 * passes it on (the same arguments, the inner table as `be`), so the kernels and their results are
 * the ones of an unprofiled run, bit for bit. A device that queues work (CUDA: the `sync` slot)
 * is waited for before and after each call, so a call's time is its own work, as if the device
 * ran one kernel at a time (and with the waits' cost: the profiled run is slower). nn_free prints
 * the table: kernels by total time, each with its shape (the geometry that decides its cost:
 * convolutions, linear layers, normalisation, pooling, crop-resize), calls, share of the time in
 * kernels and, for convolutions and linear layers, GFLOP/s (nn_conv_flops: two a multiply-add);
 * the context's wall time, of which the rest went to the tape, host loops (the CPU's optimizer),
 * data and I/O; and a last line with the FLOPs and rate of the convolutions and linear layers.
 *
 * A slot added to backend.h must be wrapped here (a _Static_assert counts them): an unwrapped slot
 * would be NULL in the profiled table, the op a loud "no kernel" error, never a silent pass. */
#include "libcommon/nn/nn_impl.h"

#include "libcommon/base/base.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* name, device, impl, tmp_ctx and 65 function slots (destroy .. sync) */
_Static_assert(sizeof(NnBackend) == 69 * sizeof(void *),
               "a slot was added to NnBackend: wrap it in profile.c and count it here");

#define PROF_KEY 96

typedef struct {
    char name[24];
    char key[PROF_KEY];
    uint64_t hash;
    int64_t calls;
    double secs, flops;   /* flops: nn_conv_flops / nn_linear_flops of its calls, 0 for the other kernels */
} ProfRow;

typedef struct {
    NnBackend *in;  /* the device's table */
    ProfRow *rows;  /* open addressing, cap a power of two, at most half full */
    int nrows, cap;
    int64_t calls;
    double secs, born, flops, flop_secs;
} NnProf;

static NnProf *prof_of(NnBackend *be) { return be->impl; }

static double prof_begin(NnProf *P)
{
    if (P->in->sync) P->in->sync(P->in);
    return dd_now();
}

static uint64_t prof_hash(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull;
    for (; *a; a++) h = (h ^ (unsigned char)*a) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (; *b; b++) h = (h ^ (unsigned char)*b) * 1099511628211ull;
    return h;
}

static void prof_grow(NnProf *P)
{
    int cap = P->cap ? 2 * P->cap : 256;
    ProfRow *rows = dd_calloc((size_t)cap, sizeof *rows);
    for (int i = 0; i < P->cap; i++) {
        if (!P->rows[i].calls) continue;
        int j = (int)(P->rows[i].hash & (uint64_t)(cap - 1));
        while (rows[j].calls) j = (j + 1) & (cap - 1);
        rows[j] = P->rows[i];
    }
    free(P->rows);
    P->rows = rows;
    P->cap = cap;
}

static void prof_end(NnProf *P, const char *name, const char *key, double t0, double flops)
{
    if (P->in->sync) P->in->sync(P->in);
    double dt = dd_now() - t0;
    if (2 * (P->nrows + 1) > P->cap) prof_grow(P);
    uint64_t h = prof_hash(name, key);
    int j = (int)(h & (uint64_t)(P->cap - 1));
    while (P->rows[j].calls && !(P->rows[j].hash == h && !strcmp(P->rows[j].name, name) &&
                                 !strcmp(P->rows[j].key, key)))
        j = (j + 1) & (P->cap - 1);
    ProfRow *r = &P->rows[j];
    if (!r->calls) {
        snprintf(r->name, sizeof r->name, "%s", name);
        snprintf(r->key, sizeof r->key, "%s", key);
        r->hash = h;
        P->nrows++;
    }
    r->calls++;
    r->secs += dt;
    r->flops += flops;
    P->calls++;
    P->secs += dt;
    if (flops > 0) P->flops += flops, P->flop_secs += dt;
}

/* ---- shapes ---- */

static const char *act_name(NnAct a)
{
    switch ((int)a) {
    case NN_ACT_RELU: return "relu";
    case NN_ACT_RELU6: return "relu6";
    case NN_ACT_SILU: return "silu";
    case NN_ACT_SIGMOID: return "sigmoid";
    case NN_ACT_HARDSWISH: return "hardswish";
    case (int)NN_BN_NO_ACT: return "none";
    }
    return "?";
}

static void key_conv(char *k, const NnConvShape *s)
{
    snprintf(k, PROF_KEY, "n%d %dx%dx%d -> %dx%dx%d k%dx%d s%d p%d d%d g%d", s->n, s->cin, s->h, s->w,
             s->cout, s->oh, s->ow, s->kh, s->kw, s->stride, s->pad, s->dil, s->groups);
}

static void key_pool(char *k, const NnPoolShape *s)
{
    snprintf(k, PROF_KEY, "%" PRId64 " planes %dx%d -> %dx%d k%d s%d p%d", s->np, s->h, s->w, s->oh,
             s->ow, s->k, s->stride, s->pad);
}

static void key_bn(char *k, int train, int n, int c, int64_t hw, const char *act)
{
    snprintf(k, PROF_KEY, "%sn%d c%d hw%" PRId64 "%s%s", train < 0 ? "" : train ? "train " : "eval ", n,
             c, hw, act ? " " : "", act ? act : "");
}

static void key_resample(char *k, const NnResample *r)
{
    snprintf(k, PROF_KEY, "%" PRId64 " planes %dx%d -> %dx%d", r->np, r->h, r->w, r->oh, r->ow); /* any box */
}

/* ---- the wrapped slots ---- */

/* pw_NAME: time in->NAME(ARGS) under NAME and the key KEYSTMT writes into k (and the FLOPs it
 * sets fl to, for the convolutions and linear layers). */
#define PW(name, params, args, keystmt)                                                    \
    static void pw_##name params                                                           \
    {                                                                                      \
        NnProf *P = prof_of(be);                                                           \
        NnBackend *in = P->in;                                                             \
        double t0 = prof_begin(P);                                                         \
        in->name args;                                                                     \
        char k[PROF_KEY] = "";                                                             \
        double fl = 0;                                                                     \
        keystmt;                                                                           \
        prof_end(P, #name, k, t0, fl);                                                     \
    }
#define NOKEY (void)k
#define KEY_N snprintf(k, PROF_KEY, "%" PRId64, n)              /* elementwise: the size */
#define KEY_BYTES snprintf(k, PROF_KEY, "%zu bytes", bytes)

PW(zero, (NnBackend *be, void *p, size_t bytes), (in, p, bytes), KEY_BYTES)
PW(upload, (NnBackend *be, void *dst, const void *src, size_t bytes), (in, dst, src, bytes), KEY_BYTES)
PW(download, (NnBackend *be, void *dst, const void *src, size_t bytes), (in, dst, src, bytes), KEY_BYTES)
PW(copy, (NnBackend *be, void *dst, const void *src, size_t bytes), (in, dst, src, bytes), KEY_BYTES)
PW(axpy, (NnBackend *be, int64_t n, float alpha, const float *src, float *dst), (in, n, alpha, src, dst),
   KEY_N)
PW(fill_add, (NnBackend *be, int64_t n, float alpha, const float *scalar, float *dst),
   (in, n, alpha, scalar, dst), KEY_N)
PW(scale_fwd, (NnBackend *be, int64_t n, float s, const float *x, float *y), (in, n, s, x, y), KEY_N)
PW(act_fwd, (NnBackend *be, NnAct act, int64_t n, const float *x, float *y), (in, act, n, x, y),
   snprintf(k, PROF_KEY, "%s %" PRId64, act_name(act), n))
PW(act_bwd, (NnBackend *be, NnAct act, int64_t n, const float *x, const float *y, const float *dy, float *dx),
   (in, act, n, x, y, dy, dx), snprintf(k, PROF_KEY, "%s %" PRId64, act_name(act), n))
PW(act_bwd_inplace, (NnBackend *be, NnAct act, int64_t n, const float *x, const float *y, float *g),
   (in, act, n, x, y, g), snprintf(k, PROF_KEY, "%s %" PRId64, act_name(act), n))
PW(binary_fwd, (NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a, const float *b, float *y),
   (in, op, bc, a, b, y), snprintf(k, PROF_KEY, "%s %" PRId64, op == NN_BIN_ADD ? "add" : "mul", bc->n))
PW(binary_bwd,
   (NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a, const float *b, const float *dy,
    float *da, float *db),
   (in, op, bc, a, b, dy, da, db), snprintf(k, PROF_KEY, "%s %" PRId64, op == NN_BIN_ADD ? "add" : "mul", bc->n))
PW(normalize_fwd,
   (NnBackend *be, int64_t n, int c, int64_t hw, const float *host_mean, const float *host_std,
    const float *x, float *y),
   (in, n, c, hw, host_mean, host_std, x, y), NOKEY)
PW(normalize_bwd, (NnBackend *be, int64_t n, int c, int64_t hw, const float *host_std, const float *dy, float *dx),
   (in, n, c, hw, host_std, dy, dx), NOKEY)
PW(dropout_fwd,
   (NnBackend *be, int64_t n, float p, uint64_t key, uint64_t ctr_hi, const float *x, float *y, float *mask),
   (in, n, p, key, ctr_hi, x, y, mask), KEY_N)
PW(mul_bwd, (NnBackend *be, int64_t n, const float *mask, const float *dy, float *dx), (in, n, mask, dy, dx),
   KEY_N)
PW(block_copy,
   (NnBackend *be, int64_t rows, int64_t len, const float *src, int64_t lds, float *dst, int64_t ldd,
    int accumulate),
   (in, rows, len, src, lds, dst, ldd, accumulate),
   snprintf(k, PROF_KEY, "%" PRId64 " x %" PRId64 "%s", rows, len, accumulate ? " +=" : ""))
PW(shuffle,
   (NnBackend *be, int64_t n, int c, int64_t hw, int groups, int inverse, int accumulate, const float *x,
    float *y),
   (in, n, c, hw, groups, inverse, accumulate, x, y),
   snprintf(k, PROF_KEY, "n%" PRId64 " c%d hw%" PRId64 " g%d%s%s", n, c, hw, groups, inverse ? " inverse" : "",
            accumulate ? " +=" : ""))
PW(roll,
   (NnBackend *be, int64_t np, int h, int w, int sh, int sw, int accumulate, const float *x, float *y),
   (in, np, h, w, sh, sw, accumulate, x, y),
   snprintf(k, PROF_KEY, "%" PRId64 " planes %dx%d%s", np, h, w, accumulate ? " +=" : ""))
PW(flip_w, (NnBackend *be, int64_t np, int h, int w, int accumulate, const float *x, float *y),
   (in, np, h, w, accumulate, x, y),
   snprintf(k, PROF_KEY, "%" PRId64 " planes %dx%d%s", np, h, w, accumulate ? " +=" : ""))
PW(resample_fwd, (NnBackend *be, const NnResample *r, const float *x, float *y), (in, r, x, y),
   key_resample(k, r))
PW(resample_bwd, (NnBackend *be, const NnResample *r, const float *dy, float *dx), (in, r, dy, dx),
   key_resample(k, r))
PW(conv2d_fwd, (NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b, float *y),
   (in, s, x, w, b, y), (key_conv(k, s), fl = nn_conv_flops(s)))
PW(conv2d_bwd_data, (NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx),
   (in, s, dy, w, dx), (key_conv(k, s), fl = nn_conv_flops(s)))
PW(conv2d_bwd_filter,
   (NnBackend *be, const NnConvShape *s, const float *dy, const float *x, float *dw, float *db),
   (in, s, dy, x, dw, db), (key_conv(k, s), fl = dw ? nn_conv_flops(s) : 0))
PW(linear_fwd,
   (NnBackend *be, int n, int in_, int out, const float *x, const float *w, const float *b, float *y),
   (in, n, in_, out, x, w, b, y), (snprintf(k, PROF_KEY, "n%d %d -> %d", n, in_, out),
                                  fl = nn_linear_flops(n, in_, out)))
PW(linear_bwd,
   (NnBackend *be, int n, int in_, int out, const float *dy, const float *x, const float *w, float *dx,
    float *dw, float *db),
   (in, n, in_, out, dy, x, w, dx, dw, db), (snprintf(k, PROF_KEY, "n%d %d -> %d", n, in_, out),
                                              fl = ((dx != NULL) + (dw != NULL)) * nn_linear_flops(n, in_, out)))
PW(bn_fwd_train,
   (NnBackend *be, int n, int c, int64_t hw, float eps, float momentum, const float *x, const float *w,
    const float *b, float *y, float *mean, float *invstd, float *rm, float *rv),
   (in, n, c, hw, eps, momentum, x, w, b, y, mean, invstd, rm, rv), key_bn(k, -1, n, c, hw, NULL))
PW(bn_fwd_eval,
   (NnBackend *be, int n, int c, int64_t hw, float eps, const float *x, const float *w, const float *b,
    const float *rm, const float *rv, float *y, float *mean, float *invstd),
   (in, n, c, hw, eps, x, w, b, rm, rv, y, mean, invstd), key_bn(k, -1, n, c, hw, NULL))
PW(bn_bwd,
   (NnBackend *be, int train, int n, int c, int64_t hw, const float *x, const float *w, const float *mean,
    const float *invstd, const float *dy, float *dx, float *dw, float *db),
   (in, train, n, c, hw, x, w, mean, invstd, dy, dx, dw, db), key_bn(k, train, n, c, hw, NULL))
PW(bn_bwd_inplace,
   (NnBackend *be, int train, int n, int c, int64_t hw, const float *x, const float *w, const float *mean,
    const float *invstd, float *g, float *dw, float *db),
   (in, train, n, c, hw, x, w, mean, invstd, g, dw, db), key_bn(k, train, n, c, hw, NULL))
PW(bn_stat_fwd,
   (NnBackend *be, int n, int c, int64_t hw, const float *x, const float *rm, const float *rv, float *loss,
    float *save),
   (in, n, c, hw, x, rm, rv, loss, save), key_bn(k, -1, n, c, hw, NULL))
PW(bn_stat_bwd,
   (NnBackend *be, int n, int c, int64_t hw, const float *x, const float *save, const float *dloss, float *dx),
   (in, n, c, hw, x, save, dloss, dx), key_bn(k, -1, n, c, hw, NULL))
PW(bn_act_fwd,
   (NnBackend *be, NnAct act, int train, int n, int c, int64_t hw, float eps, float momentum, const float *x,
    const float *r, const float *w, const float *b, float *rm, float *rv, float *y, float *mean,
    float *invstd, float *stat_loss, float *stat_save),
   (in, act, train, n, c, hw, eps, momentum, x, r, w, b, rm, rv, y, mean, invstd, stat_loss, stat_save),
   key_bn(k, train, n, c, hw, act_name(act)))
PW(bn_act_bwd,
   (NnBackend *be, NnAct act, int train, int n, int c, int64_t hw, const float *x, const float *y,
    const float *w, const float *b, const float *mean, const float *invstd, const float *dy, float *dx,
    float *dr, float *dw, float *db, const float *stat_save, const float *stat_dloss),
   (in, act, train, n, c, hw, x, y, w, b, mean, invstd, dy, dx, dr, dw, db, stat_save, stat_dloss),
   key_bn(k, train, n, c, hw, act_name(act)))
PW(maxpool_fwd, (NnBackend *be, const NnPoolShape *s, const float *x, float *y, uint8_t *idx),
   (in, s, x, y, idx), key_pool(k, s))
PW(maxpool_bwd, (NnBackend *be, const NnPoolShape *s, const uint8_t *idx, const float *dy, float *dx),
   (in, s, idx, dy, dx), key_pool(k, s))
PW(avgpool_fwd, (NnBackend *be, const NnPoolShape *s, const float *x, float *y), (in, s, x, y), key_pool(k, s))
PW(avgpool_bwd, (NnBackend *be, const NnPoolShape *s, const float *dy, float *dx), (in, s, dy, dx),
   key_pool(k, s))
PW(adaptive_avgpool_fwd, (NnBackend *be, const NnPoolShape *s, const float *x, float *y), (in, s, x, y),
   key_pool(k, s))
PW(adaptive_avgpool_bwd, (NnBackend *be, const NnPoolShape *s, const float *dy, float *dx), (in, s, dy, dx),
   key_pool(k, s))
PW(sum_fwd, (NnBackend *be, int64_t n, float scale, const float *x, float *y), (in, n, scale, x, y), KEY_N)
PW(ce_fwd,
   (NnBackend *be, int n, int k_, float eps, const float *logits, const int64_t *host_labels, float *loss),
   (in, n, k_, eps, logits, host_labels, loss), NOKEY)
PW(ce_bwd,
   (NnBackend *be, int n, int k_, float eps, const float *logits, const int64_t *host_labels,
    const float *dloss, float *dlogits),
   (in, n, k_, eps, logits, host_labels, dloss, dlogits), NOKEY)
PW(soft_ce_fwd, (NnBackend *be, int n, int k_, const float *logits, const float *target, float *loss),
   (in, n, k_, logits, target, loss), NOKEY)
PW(soft_ce_bwd,
   (NnBackend *be, int n, int k_, const float *logits, const float *target, const float *dloss,
    float *dlogits),
   (in, n, k_, logits, target, dloss, dlogits), NOKEY)
PW(kl_fwd, (NnBackend *be, int n, int k_, float T, const float *student, const float *teacher, float *loss),
   (in, n, k_, T, student, teacher, loss), NOKEY)
PW(kl_bwd,
   (NnBackend *be, int n, int k_, float T, const float *student, const float *teacher, const float *dloss,
    float *dstudent),
   (in, n, k_, T, student, teacher, dloss, dstudent), NOKEY)
PW(mixup, (NnBackend *be, int64_t n, int64_t row, const int64_t *host_perm, float lam, float *x),
   (in, n, row, host_perm, lam, x), NOKEY)
PW(cutmix,
   (NnBackend *be, int n, int c, int h, int w, const int64_t *host_perm, int y0, int x0, int y1, int x1,
    float *x),
   (in, n, c, h, w, host_perm, y0, x0, y1, x1, x), NOKEY)
PW(sgd_step,
   (NnBackend *be, int64_t n, float *p, const float *g, float *buf, float lr, float mom, float wd,
    int nesterov),
   (in, n, p, g, buf, lr, mom, wd, nesterov), NOKEY)
PW(adam_step,
   (NnBackend *be, int64_t n, float *p, const float *g, float *m, float *v, float b1, float omb1, float b2,
    float omb2, float step_size, float bc2s, float eps, float wd, float decay),
   (in, n, p, g, m, v, b1, omb1, b2, omb2, step_size, bc2s, eps, wd, decay), NOKEY)
PW(clamp, (NnBackend *be, int64_t n, float lo, float hi, float *p), (in, n, lo, hi, p), KEY_N)
PW(unscale, (NnBackend *be, int64_t n, float inv, float *g, int *flag), (in, n, inv, g, flag), KEY_N)
PW(clamp_channels,
   (NnBackend *be, int64_t n, int c, int64_t hw, const float *lo, const float *hi, float *p),
   (in, n, c, hw, lo, hi, p), NOKEY)

/* Memory management, precision and the profiler marks pass on untimed. */
static void *pw_alloc(NnBackend *be, size_t bytes) { return prof_of(be)->in->alloc(prof_of(be)->in, bytes); }
static void *pw_alloc_uninit(NnBackend *be, size_t bytes)
{
    return prof_of(be)->in->alloc_uninit(prof_of(be)->in, bytes);
}
static void pw_free(NnBackend *be, void *p) { prof_of(be)->in->free(prof_of(be)->in, p); }
static int pw_set_precision(NnBackend *be, int precision)
{
    return prof_of(be)->in->set_precision(prof_of(be)->in, precision);
}
static void pw_trim(NnBackend *be) { prof_of(be)->in->trim(prof_of(be)->in); }
static void pw_profile(NnBackend *be, int on) { prof_of(be)->in->profile(prof_of(be)->in, on); }
static void pw_sync(NnBackend *be) { prof_of(be)->in->sync(prof_of(be)->in); }

static void pw_destroy(NnBackend *be)
{
    NnProf *P = prof_of(be);
    P->in->destroy(P->in);
    free(P->rows);
    free(P);
    free(be);
}

NnBackend *nn_profile_wrap(NnBackend *in)
{
    NnProf *P = dd_calloc(1, sizeof *P);
    P->in = in;
    P->born = dd_now();
    prof_grow(P);
    NnBackend *w = dd_calloc(1, sizeof *w);
    w->name = in->name;
    w->device = in->device;
    w->impl = P;
    w->destroy = pw_destroy;
    w->tmp_get = in->tmp_get; /* the context's, called with tmp_ctx (not a device slot) */
    w->tmp_put = in->tmp_put;
    w->tmp_ctx = in->tmp_ctx;
#define SET(slot) (w->slot = in->slot ? pw_##slot : NULL)
    SET(alloc), SET(free), SET(zero), SET(upload), SET(download), SET(copy), SET(alloc_uninit);
    SET(axpy), SET(fill_add), SET(scale_fwd), SET(act_fwd), SET(act_bwd), SET(act_bwd_inplace);
    SET(binary_fwd), SET(binary_bwd), SET(normalize_fwd), SET(normalize_bwd), SET(dropout_fwd);
    SET(mul_bwd), SET(block_copy), SET(shuffle), SET(roll), SET(flip_w), SET(resample_fwd);
    SET(resample_bwd), SET(conv2d_fwd), SET(conv2d_bwd_data), SET(conv2d_bwd_filter), SET(linear_fwd);
    SET(linear_bwd), SET(bn_fwd_train), SET(bn_fwd_eval), SET(bn_bwd), SET(bn_bwd_inplace);
    SET(bn_stat_fwd), SET(bn_stat_bwd), SET(bn_act_fwd), SET(bn_act_bwd), SET(maxpool_fwd);
    SET(maxpool_bwd), SET(avgpool_fwd), SET(avgpool_bwd), SET(adaptive_avgpool_fwd);
    SET(adaptive_avgpool_bwd), SET(sum_fwd), SET(ce_fwd), SET(ce_bwd), SET(soft_ce_fwd);
    SET(soft_ce_bwd), SET(kl_fwd), SET(kl_bwd), SET(mixup), SET(cutmix), SET(set_precision);
    SET(sgd_step), SET(adam_step), SET(clamp), SET(unscale), SET(clamp_channels), SET(trim);
    SET(profile), SET(sync);
#undef SET
    return w;
}

static int row_cmp(const void *a, const void *b)
{
    const ProfRow *x = a, *y = b;
    if (x->secs != y->secs) return x->secs < y->secs ? 1 : -1;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->key, y->key);
}

/* Every kernel and shape, by total time. */
void nn_profile_report(NnBackend *be, FILE *f)
{
    NnProf *P = prof_of(be);
    ProfRow *rows = dd_calloc((size_t)P->nrows + 1, sizeof *rows);
    int n = 0;
    for (int i = 0; i < P->cap; i++)
        if (P->rows[i].calls) rows[n++] = P->rows[i];
    qsort(rows, (size_t)n, sizeof *rows, row_cmp);
    double wall = dd_now() - P->born, tot = P->secs > 0 ? P->secs : 1e-300;
    fprintf(f, "nn profile: %s: %s (pid %ld): %.3f s in %" PRId64 " kernel calls, of %.3f s from nn_new to "
            "nn_free (the rest: the tape, host loops, data and I/O)%s\n", be->name, dd_prog(), (long)getpid(),
            P->secs, P->calls, wall,
            P->in->sync ? "; each call waited for, as if the device ran one at a time" : "");
    fprintf(f, "%7s %11s %9s %10s %9s  %-21s %s\n", "share", "total ms", "calls", "ms/call", "GFLOP/s", "kernel",
            "shape");
    for (int i = 0; i < n; i++) {
        const ProfRow *r = &rows[i];
        char rate[32] = "-";
        if (r->flops > 0) snprintf(rate, sizeof rate, "%.1f", r->secs > 0 ? r->flops / r->secs / 1e9 : 0.0);
        fprintf(f, "%6.1f%% %11.3f %9" PRId64 " %10.4f %9s  %-21s %s\n", 100.0 * r->secs / tot, 1e3 * r->secs,
                r->calls, 1e3 * r->secs / (double)r->calls, rate, r->name, r->key);
    }
    fprintf(f, "convolutions and linear layers: %.3f GFLOP (two a multiply-add) in %.3f s, %.1f GFLOP/s\n",
            P->flops / 1e9, P->flop_secs, P->flop_secs > 0 ? P->flops / P->flop_secs / 1e9 : 0.0);
    free(rows);
}

/* ops_norm.c - front-ends of batchnorm and the BN-statistics loss (ddpipe-method(7) section 2). */
#include "libcommon/nn/nn_impl.h"

#include <string.h>

/* x is [N,C,H,W] (or [N,C]); returns C and sets *n, *hw. */
static int bn_dims(const char *op, const NnVar *x, int *n, int64_t *hw)
{
    nn_check_f32(op, x, -1);
    nn_check(x->v.ndim == 4 || x->v.ndim == 2, op, "expected [N,C,H,W] or [N,C], got %d dims",
             x->v.ndim);
    *n = (int)x->v.shape[0];
    *hw = x->v.ndim == 4 ? x->v.shape[2] * x->v.shape[3] : 1;
    return (int)x->v.shape[1];
}

static void check_channel_vec(const char *op, const NnVar *v, int c, const char *what)
{
    if (!v) return;
    nn_check_f32(op, v, 1);
    nn_check(v->v.shape[0] == c, op, "%s has %lld entries for %d channels", what,
             (long long)v->v.shape[0], c);
}

/* ---- statistics loss ---- */

static void bn_stat_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    NN_BE(nn, bn_stat_bwd);
    nn->be->bn_stat_bwd(nn->be, e->iarg[0], e->iarg[1], (int64_t)e->iarg[2] * e->iarg[3], nn_f(x),
                        e->save[0], nn_dout(e), nn_grad_of(nn, x));
}

/* Records the statistics loss y of x whose save (3c+2 floats) is filled. */
static NnVar *bn_stat_record(Nn *nn, NnVar *x, NnVar *y, float *save, int n, int c)
{
    NnEntry *e = nn_record(nn, bn_stat_backward, y, 1, &x);
    if (e) {
        nn_keep(e, x);
        e->iarg[0] = n;
        e->iarg[1] = c;
        /* hw as two factors that fit in int */
        e->iarg[2] = x->v.ndim == 4 ? (int)x->v.shape[2] : 1;
        e->iarg[3] = x->v.ndim == 4 ? (int)x->v.shape[3] : 1;
        e->save[0] = save;
    }
    return y;
}

static float *bn_stat_save_alloc(Nn *nn, int c)
{
    return nn_dev_alloc(nn, (3 * (size_t)c + 2) * sizeof(float), 0);
}

NnVar *nn_bn_stat_loss(Nn *nn, NnVar *x, NnVar *running_mean, NnVar *running_var)
{
    int n;
    int64_t hw;
    int c = bn_dims("bn_stat_loss", x, &n, &hw);
    nn_check(running_mean && running_var, "bn_stat_loss", "running statistics required");
    check_channel_vec("bn_stat_loss", running_mean, c, "running_mean");
    check_channel_vec("bn_stat_loss", running_var, c, "running_var");
    NnVar *y = nn_new_var(nn, 0, NULL);
    float *save = bn_stat_save_alloc(nn, c);
    NN_BE(nn, bn_stat_fwd);
    nn->be->bn_stat_fwd(nn->be, n, c, hw, nn_f(x), nn_f(running_mean), nn_f(running_var),
                        nn_f(y), save);
    return bn_stat_record(nn, x, y, save, n, c);
}

/* Puts a layer's statistics loss at place slot of the collected list (reserved), or appends it
 * (slot < 0). */
static void bn_stat_push(Nn *nn, NnVar *l, int slot)
{
    if (slot >= 0 && slot < nn->nbn_stats) {
        nn->bn_stats[slot] = l;
        return;
    }
    if (nn->nbn_stats == nn->cap_bn_stats) {
        nn->cap_bn_stats = nn->cap_bn_stats ? 2 * nn->cap_bn_stats : 64;
        nn->bn_stats = dd_realloc(nn->bn_stats, (size_t)nn->cap_bn_stats * sizeof *nn->bn_stats);
    }
    nn->bn_stats[nn->nbn_stats++] = l;
}

int nn_bn_stat_reserve(Nn *nn)
{
    if (!nn->bn_collect) return -1;
    bn_stat_push(nn, NULL, -1);
    return nn->nbn_stats - 1;
}

/* ---- batchnorm ---- */

/* iarg: training, n, c, h, w, whether the backend's bn_act kernels ran (1) or bn_fwd_* (0), and
 * the activation (an NnAct, or NN_BN_NO_ACT). */

static void bn_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0], *w = e->in[1], *b = e->in[2];
    float *dw = nn_grad_of(nn, w), *db = nn_grad_of(nn, b), *g;
    int64_t hw = (int64_t)e->iarg[3] * e->iarg[4];
    if (e->iarg[5]) {
        /* the statistics loss of x computed in the forward pass (save[2]: its var, save[1]: its
         * save): its gradient is final here (its consumers were recorded after this entry), so
         * its backward joins this pass, and its own entry is skipped (no output gradient) */
        NnVar *stat = e->save[2];
        const float *stat_save = NULL, *stat_dloss = NULL;
        if (stat && stat->g.data && x->requires_grad) {
            stat_save = e->save[1];
            stat_dloss = stat->g.data;
        }
        float *dr = e->nin > 3 ? nn_grad_of(nn, e->in[3]) : NULL;
        float *mean = e->save[0];
        g = nn_grad_take(nn, e, x);
        nn->be->bn_act_bwd(nn->be, (NnAct)e->iarg[6], e->iarg[0], e->iarg[1], e->iarg[2], hw,
                           nn_f(x), e->nin > 3 ? nn_f(e->out) : NULL, w ? nn_f(w) : NULL,
                           b ? nn_f(b) : NULL, mean, mean + e->iarg[2],
                           g ? g : nn_dout(e), g ? g : nn_grad_of(nn, x), dr, dw, db, stat_save,
                           stat_dloss);
        if (stat_dloss) {
            nn_dev_release(nn, stat->g.data, sizeof(float));
            stat->g.data = NULL;
        }
        return;
    }
    if (nn->be->bn_bwd_inplace && (g = nn_grad_take(nn, e, x))) {
        nn->be->bn_bwd_inplace(nn->be, e->iarg[0], e->iarg[1], e->iarg[2], hw, nn_f(x),
                               w ? nn_f(w) : NULL, e->save[0], e->save[1], g, dw, db);
        return;
    }
    float *dx = nn_grad_of(nn, x);
    NN_BE(nn, bn_bwd);
    nn->be->bn_bwd(nn->be, e->iarg[0], e->iarg[1], e->iarg[2], hw, nn_f(x), w ? nn_f(w) : NULL,
                   e->save[0], e->save[1], nn_dout(e), dx, dw, db);
}

/* batchnorm, plus r where r is not NULL, then act (NN_BN_NO_ACT: none, and r NULL); one op, one
 * pass each way, where the backend has bn_act; else the separate ops. */
static NnVar *batchnorm_act(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                            NnVar *running_var, int training, int update_running, float momentum,
                            float eps, NnVar *r, NnAct act, int slot)
{
    int n;
    int64_t hw;
    int c = bn_dims("batchnorm", x, &n, &hw);
    check_channel_vec("batchnorm", weight, c, "weight");
    check_channel_vec("batchnorm", bias, c, "bias");
    check_channel_vec("batchnorm", running_mean, c, "running_mean");
    check_channel_vec("batchnorm", running_var, c, "running_var");
    nn_check(training || (running_mean && running_var), "batchnorm",
             "eval mode needs running statistics");
    nn_check(!training || (int64_t)n * hw > 1, "batchnorm",
             "train mode needs more than one value per channel: a batch of %d image(s) at %lld pixel(s) here "
             "(as PyTorch: a last batch of one image, or images too small for the net's downsampling; "
             "change the batch size or the image size)", n, (long long)hw);
    if (r) {
        nn_check_f32("batchnorm", r, x->v.ndim);
        for (int i = 0; i < x->v.ndim; i++)
            nn_check(r->v.shape[i] == x->v.shape[i], "batchnorm", "residual's dim %d is %lld, not %lld",
                     i, (long long)r->v.shape[i], (long long)x->v.shape[i]);
    }
    int fused = nn->be->bn_act_fwd && nn->be->bn_act_bwd;
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    float *mean = nn_dev_alloc(nn, 2 * (size_t)c * sizeof(float), 0), *invstd = mean + c;
    const float *w = weight ? nn_f(weight) : NULL, *b = bias ? nn_f(bias) : NULL;
    int collect = nn->bn_collect && running_mean && running_var;
    NnVar *stat = NULL;
    float *stat_save = NULL;
    if (fused) {
        /* eval mode: the statistics loss of x from the same pass */
        stat_save = collect && !training ? bn_stat_save_alloc(nn, c) : NULL;
        if (stat_save) stat = nn_new_var(nn, 0, NULL);
        int upd = training && update_running && running_mean && running_var;
        nn->be->bn_act_fwd(nn->be, act, training != 0, n, c, hw, eps, momentum, nn_f(x),
                           r ? nn_f(r) : NULL, w, b, upd || !training ? nn_f(running_mean) : NULL,
                           upd || !training ? nn_f(running_var) : NULL, nn_f(y), mean, invstd,
                           stat ? nn_f(stat) : NULL, stat_save);
        if (stat) bn_stat_record(nn, x, stat, stat_save, n, c);
    } else if (training) {
        int upd = update_running && running_mean && running_var;
        NN_BE(nn, bn_fwd_train);
        nn->be->bn_fwd_train(nn->be, n, c, hw, eps, momentum, nn_f(x), w, b, nn_f(y), mean, invstd,
                             upd ? nn_f(running_mean) : NULL, upd ? nn_f(running_var) : NULL);
    } else {
        NN_BE(nn, bn_fwd_eval);
        nn->be->bn_fwd_eval(nn->be, n, c, hw, eps, nn_f(x), w, b, nn_f(running_mean),
                            nn_f(running_var), nn_f(y), mean, invstd);
    }
    if (collect) bn_stat_push(nn, stat ? stat : nn_bn_stat_loss(nn, x, running_mean, running_var), slot);
    /* Recorded after the statistics loss: backward then runs this entry first, so x's gradient is
     * still fresh and the in-place backward can take dy's buffer for it. */
    NnEntry *e = nn_record(nn, bn_backward, y, fused && r ? 4 : 3, (NnVar *[]){x, weight, bias, r});
    if (e) {
        /* x always; the fused op's output only with a residual: without one, the activation's
         * mask is recomputed from x (bn_act_bwd with y NULL) */
        nn_keep(e, x);
        nn_keep(e, weight); /* read as the affine's (a model's are params: never released) */
        nn_keep(e, bias);
        if (fused && r) nn_keep(e, y);
        e->iarg[0] = training != 0;
        e->iarg[1] = n;
        e->iarg[2] = c;
        e->iarg[3] = x->v.ndim == 4 ? (int)x->v.shape[2] : 1;
        e->iarg[4] = x->v.ndim == 4 ? (int)x->v.shape[3] : 1;
        e->iarg[5] = fused;
        e->iarg[6] = act;
        e->save[0] = mean; /* invstd follows it */
        e->save[1] = fused ? stat_save : invstd;
        e->save[2] = fused ? stat : NULL;
    }
    if (act == NN_BN_NO_ACT || fused) return y;
    if (r) y = nn_add(nn, y, r);
    return act == NN_ACT_RELU6 ? nn_relu6(nn, y) : nn_relu(nn, y);
}

NnVar *nn_batchnorm(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                    NnVar *running_var, int training, int update_running, float momentum, float eps)
{
    return batchnorm_act(nn, x, weight, bias, running_mean, running_var, training, update_running,
                         momentum, eps, NULL, NN_BN_NO_ACT, -1);
}

NnVar *nn_batchnorm_relu(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                         NnVar *running_var, int training, int update_running, float momentum,
                         float eps)
{
    return batchnorm_act(nn, x, weight, bias, running_mean, running_var, training, update_running,
                         momentum, eps, NULL, NN_ACT_RELU, -1);
}

NnVar *nn_batchnorm_relu6(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                          NnVar *running_var, int training, int update_running, float momentum,
                          float eps)
{
    return batchnorm_act(nn, x, weight, bias, running_mean, running_var, training, update_running,
                         momentum, eps, NULL, NN_ACT_RELU6, -1);
}

NnVar *nn_batchnorm_add_relu(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                             NnVar *running_var, int training, int update_running, float momentum,
                             float eps, NnVar *r, int stat_slot)
{
    nn_check(r != NULL, "batchnorm_add_relu", "residual required");
    nn_check(stat_slot < nn_bn_stat_count(nn), "batchnorm_add_relu", "statistics slot %d not reserved",
             stat_slot);
    return batchnorm_act(nn, x, weight, bias, running_mean, running_var, training, update_running,
                         momentum, eps, r, NN_ACT_RELU, stat_slot);
}

/* ---- group norm ---- */

/* Its standardisation (any group count) is batchnorm's train-mode arithmetic on x [N,C,H,W] viewed as
 * [1, N*G, (C/G)*H*W], whose channels are the groups (no affine, no running statistics): the
 * backends' bn_fwd_train and bn_bwd, in slices of at most GN_SLICE groups (a device's grid bound).
 * A group's statistics do not depend on the slicing. iarg: groups in all (N*G); the group's length
 * as two factors that fit in int (C/G, H*W). */
#define GN_SLICE 32768

static void gn_dims(const NnVar *x, int groups, int *ng, int64_t *len)
{
    int n;
    int64_t hw;
    int c = bn_dims("group_norm", x, &n, &hw);
    nn_check(groups >= 1 && c % groups == 0, "group_norm", "%d channels do not split into %d groups", c,
             groups);
    *ng = n * groups;
    *len = (int64_t)(c / groups) * hw;
}

static void gn_std_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    const int ng = e->iarg[0];
    const int64_t len = (int64_t)e->iarg[1] * e->iarg[2];
    const float *mean = e->save[0], *invstd = mean + ng, *dy = nn_dout(e);
    float *dx = nn_grad_of(nn, x);
    NN_BE(nn, bn_bwd);
    for (int s = 0; s < ng; s += GN_SLICE) {
        int k = ng - s < GN_SLICE ? ng - s : GN_SLICE;
        nn->be->bn_bwd(nn->be, 1, 1, k, len, nn_f(x) + s * len, NULL, mean + s, invstd + s, dy + s * len,
                       dx + s * len, NULL, NULL);
    }
}

static NnVar *gn_standardize(Nn *nn, NnVar *x, int groups, float eps)
{
    int ng;
    int64_t len;
    gn_dims(x, groups, &ng, &len);
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    float *mean = nn_dev_alloc(nn, 2 * (size_t)ng * sizeof(float), 0), *invstd = mean + ng;
    NN_BE(nn, bn_fwd_train);
    for (int s = 0; s < ng; s += GN_SLICE) {
        int k = ng - s < GN_SLICE ? ng - s : GN_SLICE;
        nn->be->bn_fwd_train(nn->be, 1, k, len, eps, 0.0f, nn_f(x) + s * len, NULL, NULL, nn_f(y) + s * len,
                             mean + s, invstd + s, NULL, NULL);
    }
    NnEntry *e = nn_record(nn, gn_std_backward, y, 1, &x);
    if (e) {
        nn_keep(e, x);
        e->iarg[0] = ng;
        e->iarg[1] = (int)(x->v.shape[1] / groups);
        e->iarg[2] = (int)(len / e->iarg[1]);
        e->save[0] = mean;
    }
    return y;
}

/* y = x w[c] + b[c] over the channels of x [N,C,...]; w, b [C] or NULL: the per-channel affine of
 * a norm whose statistics are not per channel. The backends' broadcast binary ops with b's
 * strides over dim 1. */
static NnBroadcast channel_bcast(const NnVar *x)
{
    NnBroadcast bc;
    memset(&bc, 0, sizeof bc);
    bc.ndim = x->v.ndim;
    for (int i = 0; i < x->v.ndim; i++) bc.shape[i] = x->v.shape[i];
    bc.bstride[1] = 1;
    bc.n = nn_numel(x);
    bc.nb = x->v.shape[1];
    return bc;
}

static void channel_affine_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0], *w = e->in[1], *b = e->in[2];
    NnBroadcast bc = channel_bcast(x);
    const float *dy = nn_dout(e);
    float *dx = nn_grad_of(nn, x), *dw = nn_grad_of(nn, w), *db = nn_grad_of(nn, b);
    NN_BE(nn, binary_bwd);
    if (db) nn->be->binary_bwd(nn->be, NN_BIN_ADD, &bc, NULL, NULL, dy, NULL, db);
    if (w && (dx || dw)) nn->be->binary_bwd(nn->be, NN_BIN_MUL, &bc, nn_f(x), nn_f(w), dy, dx, dw);
    else if (dx) nn->be->axpy(nn->be, bc.n, 1.0f, dy, dx);
}

static NnVar *channel_affine(Nn *nn, NnVar *x, NnVar *w, NnVar *b)
{
    int c = (int)x->v.shape[1];
    check_channel_vec("group_norm", w, c, "weight");
    check_channel_vec("group_norm", b, c, "bias");
    NnBroadcast bc = channel_bcast(x);
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    NN_BE(nn, binary_fwd);
    if (w) nn->be->binary_fwd(nn->be, NN_BIN_MUL, &bc, nn_f(x), nn_f(w), nn_f(y));
    if (b) nn->be->binary_fwd(nn->be, NN_BIN_ADD, &bc, w ? nn_f(y) : nn_f(x), nn_f(b), nn_f(y));
    NnEntry *e = nn_record(nn, channel_affine_backward, y, 3, (NnVar *[]){x, w, b});
    if (e) {
        nn_keep(e, x); /* read for w's gradient */
        nn_keep(e, w);
    }
    return y;
}

/* Instance norm (groups = C), with its activation, is one batchnorm pass (bn_act: statistics,
 * affine, activation) on the [1, N*C, H*W] view, the per-channel weight and bias tiled over the
 * images (view channel n*C + c takes w[c]); their gradients are the tiled ones summed over the
 * images (the broadcast add's deterministic reduction). iarg: N, C, h, w (hw as two factors),
 * act. save: mean (invstd after), the tiled weight and bias (NULL where the layer has none). */
static float *tile_channels(Nn *nn, const NnVar *v, int n, int c)
{
    if (!v) return NULL;
    float *t = nn_dev_alloc(nn, (size_t)n * c * sizeof(float), 0);
    NN_BE(nn, block_copy);
    nn->be->block_copy(nn->be, n, c, nn_f(v), 0, t, c, 0);
    return t;
}

static void gn_instance_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0], *w = e->in[1], *b = e->in[2];
    const int n = e->iarg[0], c = e->iarg[1], ng = n * c;
    const int64_t hw = (int64_t)e->iarg[2] * e->iarg[3];
    const float *mean = e->save[0], *invstd = mean + ng, *wt = e->save[1], *bt = e->save[2];
    float *dw = nn_grad_of(nn, w), *db = nn_grad_of(nn, b);
    float *dwt = dw ? nn_dev_alloc(nn, (size_t)ng * sizeof(float), 1) : NULL;
    float *dbt = db ? nn_dev_alloc(nn, (size_t)ng * sizeof(float), 1) : NULL;
    /* in place where x's gradient can take dy's buffer (written), else accumulated */
    float *g = nn_grad_take(nn, e, x), *dx = g ? g : nn_grad_of(nn, x);
    const float *dy = g ? g : nn_dout(e);
    NN_BE(nn, bn_act_bwd);
    for (int s = 0; s < ng; s += GN_SLICE) {
        int k = ng - s < GN_SLICE ? ng - s : GN_SLICE;
        int64_t off = s * hw;
        nn->be->bn_act_bwd(nn->be, (NnAct)e->iarg[4], 1, 1, k, hw, nn_f(x) + off, NULL, wt ? wt + s : NULL,
                           bt ? bt + s : NULL, mean + s, invstd + s, dy + off, dx ? dx + off : NULL, NULL,
                           dwt ? dwt + s : NULL, dbt ? dbt + s : NULL, NULL, NULL);
    }
    /* the tiled gradients [N, C] summed over the images: the broadcast add's reduction */
    NnBroadcast bc = {.ndim = 2, .shape = {n, c}, .bstride = {0, 1}, .n = (int64_t)ng, .nb = c};
    NN_BE(nn, binary_bwd);
    if (dwt) nn->be->binary_bwd(nn->be, NN_BIN_ADD, &bc, NULL, NULL, dwt, NULL, dw);
    if (dbt) nn->be->binary_bwd(nn->be, NN_BIN_ADD, &bc, NULL, NULL, dbt, NULL, db);
    nn_dev_release(nn, dwt, (size_t)ng * sizeof(float));
    nn_dev_release(nn, dbt, (size_t)ng * sizeof(float));
}

static NnVar *gn_instance(Nn *nn, NnVar *x, NnVar *w, NnVar *b, float eps, NnAct act)
{
    int n;
    int64_t hw;
    const int c = bn_dims("group_norm", x, &n, &hw), ng = n * c;
    check_channel_vec("group_norm", w, c, "weight");
    check_channel_vec("group_norm", b, c, "bias");
    float *wt = tile_channels(nn, w, n, c), *bt = tile_channels(nn, b, n, c);
    float *mean = nn_dev_alloc(nn, 2 * (size_t)ng * sizeof(float), 0), *invstd = mean + ng;
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    NN_BE(nn, bn_act_fwd);
    for (int s = 0; s < ng; s += GN_SLICE) {
        int k = ng - s < GN_SLICE ? ng - s : GN_SLICE;
        int64_t off = s * hw;
        nn->be->bn_act_fwd(nn->be, act, 1, 1, k, hw, eps, 0.0f, nn_f(x) + off, NULL, wt ? wt + s : NULL,
                           bt ? bt + s : NULL, NULL, NULL, nn_f(y) + off, mean + s, invstd + s, NULL, NULL);
    }
    NnEntry *e = nn_record(nn, gn_instance_backward, y, 3, (NnVar *[]){x, w, b});
    if (e) {
        nn_keep(e, x); /* the activation's mask is recomputed from x (bn_act_bwd with y NULL) */
        e->iarg[0] = n;
        e->iarg[1] = c;
        e->iarg[2] = x->v.ndim == 4 ? (int)x->v.shape[2] : 1;
        e->iarg[3] = x->v.ndim == 4 ? (int)x->v.shape[3] : 1;
        e->iarg[4] = (int)act;
        e->save[0] = mean;
        e->save[1] = wt;
        e->save[2] = bt;
    }
    return y;
}

/* act: NN_BN_NO_ACT or NN_ACT_RELU. Instance norm in one fused op where the backend has bn_act;
 * other group counts (or a backend without it): standardize, affine, activation. */
static NnVar *group_norm_act(Nn *nn, NnVar *x, int groups, NnVar *weight, NnVar *bias, float eps, NnAct act)
{
    int n;
    int64_t hw;
    if (groups == bn_dims("group_norm", x, &n, &hw) && nn->be->bn_act_fwd && nn->be->bn_act_bwd)
        return gn_instance(nn, x, weight, bias, eps, act);
    NnVar *t = gn_standardize(nn, x, groups, eps);
    if (weight || bias) t = nn_done_with(nn, channel_affine(nn, t, weight, bias), t);
    return act == NN_BN_NO_ACT ? t : nn_done_with(nn, nn_relu(nn, t), t);
}

NnVar *nn_group_norm(Nn *nn, NnVar *x, int groups, NnVar *weight, NnVar *bias, float eps)
{
    return group_norm_act(nn, x, groups, weight, bias, eps, NN_BN_NO_ACT);
}

NnVar *nn_group_norm_relu(Nn *nn, NnVar *x, int groups, NnVar *weight, NnVar *bias, float eps)
{
    return group_norm_act(nn, x, groups, weight, bias, eps, NN_ACT_RELU);
}

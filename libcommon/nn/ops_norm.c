/* ops_norm.c - front-ends of batchnorm and the BN-statistics loss (method.md section 2). */
#include "libcommon/nn/nn_impl.h"

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

NnVar *nn_bn_stat_loss(Nn *nn, NnVar *x, NnVar *running_mean, NnVar *running_var)
{
    int n;
    int64_t hw;
    int c = bn_dims("bn_stat_loss", x, &n, &hw);
    nn_check(running_mean && running_var, "bn_stat_loss", "running statistics required");
    check_channel_vec("bn_stat_loss", running_mean, c, "running_mean");
    check_channel_vec("bn_stat_loss", running_var, c, "running_var");
    NnVar *y = nn_new_var(nn, 0, NULL);
    float *save = nn_dev_alloc(nn, (3 * (size_t)c + 2) * sizeof(float), 0);
    NN_BE(nn, bn_stat_fwd);
    nn->be->bn_stat_fwd(nn->be, n, c, hw, nn_f(x), nn_f(running_mean), nn_f(running_var),
                        nn_f(y), save);
    NnEntry *e = nn_record(nn, bn_stat_backward, y, 1, &x);
    if (e) {
        e->iarg[0] = n;
        e->iarg[1] = c;
        /* hw as two factors that fit in int */
        e->iarg[2] = x->v.ndim == 4 ? (int)x->v.shape[2] : 1;
        e->iarg[3] = x->v.ndim == 4 ? (int)x->v.shape[3] : 1;
        e->save[0] = save;
    }
    return y;
}

/* ---- batchnorm ---- */

static void bn_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0], *w = e->in[1], *b = e->in[2];
    float *dw = nn_grad_of(nn, w), *db = nn_grad_of(nn, b), *g;
    if (nn->be->bn_bwd_inplace && (g = nn_grad_take(nn, e, x))) {
        nn->be->bn_bwd_inplace(nn->be, e->iarg[0], e->iarg[1], e->iarg[2],
                               (int64_t)e->iarg[3] * e->iarg[4], nn_f(x), w ? nn_f(w) : NULL,
                               e->save[0], e->save[1], g, dw, db);
        return;
    }
    float *dx = nn_grad_of(nn, x);
    NN_BE(nn, bn_bwd);
    nn->be->bn_bwd(nn->be, e->iarg[0], e->iarg[1], e->iarg[2],
                   (int64_t)e->iarg[3] * e->iarg[4], nn_f(x), w ? nn_f(w) : NULL, e->save[0],
                   e->save[1], nn_dout(e), dx, dw, db);
}

NnVar *nn_batchnorm(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                    NnVar *running_var, int training, int update_running, float momentum, float eps)
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
             "train mode needs more than one value per channel");
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    float *mean = nn_dev_alloc(nn, 2 * (size_t)c * sizeof(float), 0), *invstd = mean + c;
    const float *w = weight ? nn_f(weight) : NULL, *b = bias ? nn_f(bias) : NULL;
    if (training) {
        int upd = update_running && running_mean && running_var;
        NN_BE(nn, bn_fwd_train);
        nn->be->bn_fwd_train(nn->be, n, c, hw, eps, momentum, nn_f(x), w, b, nn_f(y), mean, invstd,
                             upd ? nn_f(running_mean) : NULL, upd ? nn_f(running_var) : NULL);
    } else {
        NN_BE(nn, bn_fwd_eval);
        nn->be->bn_fwd_eval(nn->be, n, c, hw, eps, nn_f(x), w, b, nn_f(running_mean),
                            nn_f(running_var), nn_f(y), mean, invstd);
    }
    if (nn->bn_collect && running_mean && running_var) {
        NnVar *l = nn_bn_stat_loss(nn, x, running_mean, running_var);
        if (nn->nbn_stats == nn->cap_bn_stats) {
            nn->cap_bn_stats = nn->cap_bn_stats ? 2 * nn->cap_bn_stats : 64;
            nn->bn_stats = dd_realloc(nn->bn_stats, (size_t)nn->cap_bn_stats * sizeof *nn->bn_stats);
        }
        nn->bn_stats[nn->nbn_stats++] = l;
    }
    /* Recorded after the statistics loss: backward then runs this entry first, so x's gradient is
     * still fresh and bn_bwd_inplace can take dy's buffer for it. */
    NnEntry *e = nn_record(nn, bn_backward, y, 3, (NnVar *[]){x, weight, bias});
    if (e) {
        e->iarg[0] = training != 0;
        e->iarg[1] = n;
        e->iarg[2] = c;
        e->iarg[3] = x->v.ndim == 4 ? (int)x->v.shape[2] : 1;
        e->iarg[4] = x->v.ndim == 4 ? (int)x->v.shape[3] : 1;
        e->save[0] = mean;
        e->save[1] = invstd;
    }
    return y;
}

/* ops_elem.c - front-ends of the elementwise ops: activations, add/mul with broadcasting, scale,
 * normalize, dropout, and the reductions sum and mean. */
#include "libcommon/nn/nn_impl.h"

#include <string.h>

/* ---- activations ---- */

static void act_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    float *g;
    if (nn->be->act_bwd_inplace && (g = nn_grad_take(nn, e, x))) {
        nn->be->act_bwd_inplace(nn->be, (NnAct)e->iarg[0], nn_numel(x), nn_f(x), nn_f(e->out), g);
        return;
    }
    NN_BE(nn, act_bwd);
    nn->be->act_bwd(nn->be, (NnAct)e->iarg[0], nn_numel(x), nn_f(x), nn_f(e->out), nn_dout(e),
                    nn_grad_of(nn, x));
}

static NnVar *act(Nn *nn, NnVar *x, NnAct a, const char *op)
{
    nn_check_f32(op, x, -1);
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    NN_BE(nn, act_fwd);
    nn->be->act_fwd(nn->be, a, nn_numel(x), nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, act_backward, y, 1, &x);
    if (e) {
        e->iarg[0] = (int)a;
        /* act_bwd reads y for relu and sigmoid, x for the others (backend.h) */
        nn_keep(e, a == NN_ACT_RELU || a == NN_ACT_SIGMOID ? y : x);
    }
    return y;
}

NnVar *nn_relu(Nn *nn, NnVar *x) { return act(nn, x, NN_ACT_RELU, "relu"); }
NnVar *nn_relu6(Nn *nn, NnVar *x) { return act(nn, x, NN_ACT_RELU6, "relu6"); }
NnVar *nn_silu(Nn *nn, NnVar *x) { return act(nn, x, NN_ACT_SILU, "silu"); }
NnVar *nn_sigmoid(Nn *nn, NnVar *x) { return act(nn, x, NN_ACT_SIGMOID, "sigmoid"); }
NnVar *nn_hardswish(Nn *nn, NnVar *x) { return act(nn, x, NN_ACT_HARDSWISH, "hardswish"); }

/* ---- add / mul with broadcasting of b over a ---- */

/* fwd: a and b are checked as a forward's inputs (a backward's may have been released). */
static NnBroadcast broadcast(const char *op, const NnVar *a, const NnVar *b, int fwd)
{
    if (fwd) {
        nn_check_f32(op, a, -1);
        nn_check_f32(op, b, -1);
    }
    nn_check(b->v.ndim <= a->v.ndim, op, "b has more dims (%d) than a (%d)", b->v.ndim, a->v.ndim);
    NnBroadcast bc;
    memset(&bc, 0, sizeof bc);
    bc.ndim = a->v.ndim;
    int off = a->v.ndim - b->v.ndim;
    int64_t stride = 1;
    for (int i = a->v.ndim - 1; i >= 0; i--) {
        bc.shape[i] = a->v.shape[i];
        int64_t bd = i >= off ? b->v.shape[i - off] : 1;
        nn_check(bd == 1 || bd == a->v.shape[i], op, "shapes do not broadcast at dim %d (%lld vs %lld)",
                 i, (long long)a->v.shape[i], (long long)bd);
        bc.bstride[i] = bd == 1 ? 0 : stride;
        stride *= bd;
    }
    bc.n = nn_numel(a);
    bc.nb = nn_numel(b);
    return bc;
}

static void binary_backward(Nn *nn, const NnEntry *e)
{
    NnVar *a = e->in[0], *b = e->in[1];
    NnBroadcast bc = broadcast("binary", a, b, 0);
    /* add: da = dy exactly, so a fresh a takes dy's buffer (a residual add costs one pass) */
    if ((NnBinary)e->iarg[0] == NN_BIN_ADD && a != b && nn_grad_take(nn, e, a)) {
        if (b->requires_grad) {
            NN_BE(nn, binary_bwd);
            nn->be->binary_bwd(nn->be, NN_BIN_ADD, &bc, nn_f(a), nn_f(b), a->g.data, NULL,
                               nn_grad_of(nn, b));
        }
        return;
    }
    NN_BE(nn, binary_bwd);
    nn->be->binary_bwd(nn->be, (NnBinary)e->iarg[0], &bc, nn_f(a), nn_f(b), nn_dout(e),
                       nn_grad_of(nn, a), nn_grad_of(nn, b));
}

static NnVar *binary(Nn *nn, NnVar *a, NnVar *b, NnBinary op, const char *name)
{
    NnBroadcast bc = broadcast(name, a, b, 1);
    NnVar *y = nn_new_var(nn, a->v.ndim, a->v.shape);
    NN_BE(nn, binary_fwd);
    nn->be->binary_fwd(nn->be, op, &bc, nn_f(a), nn_f(b), nn_f(y));
    NnEntry *e = nn_record(nn, binary_backward, y, 2, (NnVar *[]){a, b});
    if (e) {
        e->iarg[0] = (int)op;
        if (op == NN_BIN_MUL) { /* add's backward reads neither */
            nn_keep(e, a);
            nn_keep(e, b);
        }
    }
    return y;
}

NnVar *nn_add(Nn *nn, NnVar *a, NnVar *b) { return binary(nn, a, b, NN_BIN_ADD, "add"); }
NnVar *nn_mul(Nn *nn, NnVar *a, NnVar *b) { return binary(nn, a, b, NN_BIN_MUL, "mul"); }

/* ---- scale ---- */

static void scale_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    NN_BE(nn, axpy);
    nn->be->axpy(nn->be, nn_numel(x), e->farg[0], nn_dout(e), nn_grad_of(nn, x));
}

NnVar *nn_scale(Nn *nn, NnVar *x, float s)
{
    nn_check_f32("scale", x, -1);
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    NN_BE(nn, scale_fwd);
    nn->be->scale_fwd(nn->be, nn_numel(x), s, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, scale_backward, y, 1, &x);
    if (e) e->farg[0] = s;
    return y;
}

/* ---- normalize ---- */

static void normalize_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    const int64_t *s = x->v.shape;
    NN_BE(nn, normalize_bwd);
    nn->be->normalize_bwd(nn->be, s[0], (int)s[1], s[2] * s[3], e->save[0], nn_dout(e),
                          nn_grad_of(nn, x));
}

NnVar *nn_normalize(Nn *nn, NnVar *x, const float *mean, const float *std)
{
    nn_check_f32("normalize", x, 4);
    int c = (int)x->v.shape[1];
    for (int i = 0; i < c; i++) nn_check(std[i] != 0, "normalize", "std[%d] is 0", i);
    NnVar *y = nn_new_var(nn, 4, x->v.shape);
    const int64_t *s = x->v.shape;
    NN_BE(nn, normalize_fwd);
    nn->be->normalize_fwd(nn->be, s[0], c, s[2] * s[3], mean, std, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, normalize_backward, y, 1, &x);
    if (e) {
        float *sd = nn_host_alloc(nn, (size_t)c * sizeof(float));
        memcpy(sd, std, (size_t)c * sizeof(float));
        e->save[0] = sd;
    }
    return y;
}

/* ---- dropout ---- */

static void mask_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    NN_BE(nn, mul_bwd);
    nn->be->mul_bwd(nn->be, nn_numel(x), e->save[0], nn_dout(e), nn_grad_of(nn, x));
}

NnVar *nn_dropout(Nn *nn, NnVar *x, float p, int training)
{
    nn_check_f32("dropout", x, -1);
    nn_check(p >= 0 && p < 1, "dropout", "p = %g outside [0,1)", p);
    NnVar *y = nn_new_var(nn, x->v.ndim, x->v.shape);
    int64_t n = nn_numel(x);
    if (!training || p == 0) {
        nn->be->copy(nn->be, nn_f(y), nn_f(x), (size_t)n * sizeof(float));
        NnEntry *e = nn_record(nn, scale_backward, y, 1, &x);
        if (e) e->farg[0] = 1.0f;
        return y;
    }
    /* Each dropout call of a step draws its own stream: key (seed, call), counter (step, element). */
    DdRng r;
    dd_rng_init(&r, nn->rng_seed, 0x44524f50ull + nn->rng_calls++, nn->rng_step);
    float *mask = nn_dev_alloc(nn, (size_t)n * sizeof(float), 0);
    NN_BE(nn, dropout_fwd);
    nn->be->dropout_fwd(nn->be, n, p, r.key, nn->rng_step, nn_f(x), nn_f(y), mask);
    NnEntry *e = nn_record(nn, mask_backward, y, 1, &x);
    if (e) e->save[0] = mask;
    return y;
}

/* ---- sum / mean ---- */

static void sum_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    NN_BE(nn, fill_add);
    nn->be->fill_add(nn->be, nn_numel(x), e->farg[0], nn_dout(e), nn_grad_of(nn, x));
}

static NnVar *reduce(Nn *nn, NnVar *x, int mean, const char *op)
{
    nn_check_f32(op, x, -1);
    int64_t n = nn_numel(x);
    nn_check(n > 0, op, "empty input");
    float s = mean ? (float)(1.0 / (double)n) : 1.0f;
    NnVar *y = nn_new_var(nn, 0, NULL);
    NN_BE(nn, sum_fwd);
    nn->be->sum_fwd(nn->be, n, s, nn_f(x), nn_f(y));
    NnEntry *e = nn_record(nn, sum_backward, y, 1, &x);
    if (e) e->farg[0] = s;
    return y;
}

NnVar *nn_sum(Nn *nn, NnVar *x) { return reduce(nn, x, 0, "sum"); }
NnVar *nn_mean(Nn *nn, NnVar *x) { return reduce(nn, x, 1, "mean"); }

/* test_optim.c - SGD (momentum, nesterov, weight decay), Adam and AdamW single steps against
 * hand-computed values, the decay rule (decay = 1 params only, unless decay_all), frozen params,
 * optim_reset, clamp, and the cosine schedules of ddpipe-method(7) sections 2 and 4. */
#include "libcommon/optim/optim.h"
#include "tests/unit/check.h"

#include <math.h>

/* A 1-element param holding v with gradient g (gradient set directly: CPU test). */
static NnParam *param1(Nn *nn, const char *name, float v, float g, int decay)
{
    int64_t shape[1] = {1};
    NnParam *p = nn_param_new(nn, name, NN_PARAM, 1, shape);
    nn_var_upload(nn, &p->var, &v);
    p->var.requires_grad = 1;
    p->decay = decay;
    p->var.g = tensor_new(DD_F32, 1, shape);
    ((float *)p->var.g.data)[0] = g;
    return p;
}

static float val(const NnParam *p) { return ((const float *)p->var.v.data)[0]; }
static void set_grad(NnParam *p, float g) { ((float *)p->var.g.data)[0] = g; }

static void test_sgd(Nn *nn)
{
    NnParam *p = param1(nn, "w", 1.0f, 0.5f, 1);
    OptimConf c = optim_sgd(0.1, 0.9, 0.1, 0);
    CHECK(optim_step(nn, &c, &p, 1) == 0);
    CHECK_CLOSE(val(p), 1.0 - 0.1 * 0.6, 1e-7, 0);       /* d = 0.5 + 0.1 * 1; buf = d */
    CHECK(optim_step(nn, &c, &p, 1) == 0);
    double d = 0.5 + 0.1 * 0.94, buf = 0.9 * 0.6 + d;
    CHECK_CLOSE(val(p), 0.94 - 0.1 * buf, 1e-7, 0);
    CHECK(p->opt_step == 2);

    NnParam *q = param1(nn, "w2", 1.0f, 0.5f, 1);
    c.nesterov = 1;
    CHECK(optim_step(nn, &c, &q, 1) == 0);
    CHECK_CLOSE(val(q), 1.0 - 0.1 * (0.6 + 0.9 * 0.6), 1e-7, 0);

    /* decay = 0 (BN, bias): no weight decay unless decay_all */
    NnParam *b = param1(nn, "b", 1.0f, 0.5f, 0);
    OptimConf plain = optim_sgd(0.1, 0.0, 0.1, 0);
    CHECK(optim_step(nn, &plain, &b, 1) == 0);
    CHECK_CLOSE(val(b), 0.95, 1e-7, 0);
    CHECK(b->opt_m == NULL);                               /* no momentum: no state */
    plain.decay_all = 1;
    CHECK(optim_step(nn, &plain, &b, 1) == 0);
    CHECK_CLOSE(val(b), 0.95 - 0.1 * (0.5 + 0.1 * 0.95), 1e-7, 0);

    OptimConf bad = optim_sgd(0.1, 0.0, 0.0, 1);
    CHECK(optim_step(nn, &bad, &b, 1) < 0);
    nn_param_free(nn, p);
    nn_param_free(nn, q);
    nn_param_free(nn, b);
}

/* Reference Adam in double: returns the param after `n` steps with gradients g[0..n). */
static double adam_ref(double p, const double *g, int n, double lr, double b1, double b2, double eps,
                       double wd, int decoupled)
{
    double m = 0, v = 0;
    for (int t = 1; t <= n; t++) {
        double d = g[t - 1];
        if (decoupled) p *= 1 - lr * wd;
        else d += wd * p;
        m = b1 * m + (1 - b1) * d;
        v = b2 * v + (1 - b2) * d * d;
        double mh = m / (1 - pow(b1, t)), vh = sqrt(v) / sqrt(1 - pow(b2, t));
        p -= lr * mh / (vh + eps);
    }
    return p;
}

static void test_adam(Nn *nn)
{
    const double g[3] = {0.5, -1.0, 0.25};
    NnParam *p = param1(nn, "x", 1.0f, 0.5f, 0);
    OptimConf c = optim_adam(0.25, 0.5, 0.9, 1e-8, 0.0);
    CHECK(optim_step(nn, &c, &p, 1) == 0);
    CHECK_CLOSE(val(p), 0.75, 1e-6, 0);                   /* first step: lr * sign(g) */
    for (int t = 1; t < 3; t++) {
        set_grad(p, (float)g[t]);
        CHECK(optim_step(nn, &c, &p, 1) == 0);
    }
    CHECK_CLOSE(val(p), adam_ref(1.0, g, 3, 0.25, 0.5, 0.9, 1e-8, 0, 0), 1e-6, 0);

    /* Adam's L2 decay enters the gradient (decay_all as torch.optim.Adam's single group) */
    NnParam *q = param1(nn, "w", 2.0f, 0.5f, 1);
    OptimConf l2 = optim_adam(1e-2, 0.9, 0.999, 1e-8, 0.1);
    for (int t = 0; t < 3; t++) {
        set_grad(q, (float)g[t]);
        CHECK(optim_step(nn, &l2, &q, 1) == 0);
    }
    CHECK_CLOSE(val(q), adam_ref(2.0, g, 3, 1e-2, 0.9, 0.999, 1e-8, 0.1, 0), 1e-6, 0);

    /* optim_reset: the next step is a first step again */
    optim_reset(&p, 1);
    CHECK(p->opt_m == NULL && p->opt_v == NULL && p->opt_step == 0);
    float before = val(p);
    set_grad(p, -2.0f);
    CHECK(optim_step(nn, &c, &p, 1) == 0);
    CHECK_CLOSE(val(p), before + 0.25, 1e-6, 0);
    nn_param_free(nn, p);
    nn_param_free(nn, q);
}

static void test_adamw(Nn *nn)
{
    const double g[2] = {0.5, -0.3};
    NnParam *ps[3] = {param1(nn, "conv.weight", 1.0f, 0.5f, 1), param1(nn, "bn.weight", 1.0f, 0.5f, 0),
                      param1(nn, "frozen", 1.0f, 0.5f, 1)};
    ps[2]->var.requires_grad = 0;
    OptimConf c = optim_adamw(1e-3, 0.9, 0.999, 1e-8, 0.01);
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < 3; i++) set_grad(ps[i], (float)g[t]);
        CHECK(optim_step(nn, &c, ps, 3) == 0);
    }
    CHECK_CLOSE(val(ps[0]), adam_ref(1.0, g, 2, 1e-3, 0.9, 0.999, 1e-8, 0.01, 1), 1e-7, 0);
    CHECK_CLOSE(val(ps[1]), adam_ref(1.0, g, 2, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1), 1e-7, 0);
    CHECK(val(ps[0]) < val(ps[1]));                        /* the decay did act */
    CHECK(val(ps[2]) == 1.0f && ps[2]->opt_step == 0);     /* frozen: untouched */
    for (int i = 0; i < 3; i++) nn_param_free(nn, ps[i]);
}

static void test_clamp(Nn *nn)
{
    int64_t shape[1] = {4};
    NnParam *p = nn_param_new(nn, "pixels", NN_INPUT, 1, shape);
    const float v[4] = {-0.5f, 0.25f, 1.5f, 1.0f};
    float out[4];
    nn_var_upload(nn, &p->var, v);
    CHECK(optim_clamp(nn, p, 0.0f, 1.0f) == 0);
    nn_var_download(nn, &p->var, out);
    CHECK(out[0] == 0.0f && out[1] == 0.25f && out[2] == 1.0f && out[3] == 1.0f);
    nn_param_free(nn, p);
}

static void test_schedules(void)
{
    CHECK_CLOSE(optim_cosine_lr(1e-3, 0, 300, 1), 1e-3, 1e-15, 0);
    CHECK_CLOSE(optim_cosine_lr(1e-3, 150, 300, 1), 5e-4, 1e-15, 0);
    CHECK_CLOSE(optim_cosine_lr(1e-3, 300, 300, 1), 0.0, 1e-15, 0);
    CHECK_CLOSE(optim_cosine_lr(1e-3, 300, 300, 2), 5e-4, 1e-15, 0);   /* eta 2 ends at half */
    CHECK_CLOSE(optim_cosine_lr(5e-4, 100, 300, 2), 5e-4 * 0.5 * (1 + cos(M_PI / 6)), 1e-15, 0);
    CHECK_CLOSE(optim_recover_lr(0.25, 0, 2000), 0.25, 1e-15, 0);
    CHECK_CLOSE(optim_recover_lr(0.25, 1000, 2000), 0.125, 1e-15, 0);
    CHECK_CLOSE(optim_recover_lr(0.25, 500, 2000), 0.25 * 0.5 * (1 + sqrt(0.5)), 1e-15, 0);
    CHECK_CLOSE(optim_recover_lr(0.25, 2000, 2000), 0.0, 1e-15, 0);
}

int main(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    CHECK(nn != NULL);
    test_sgd(nn);
    test_adam(nn);
    test_adamw(nn);
    test_clamp(nn);
    test_schedules();
    nn_free(nn);
    return check_done("test_optim");
}

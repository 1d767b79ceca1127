/* test_scaler.c - loss scaling (optim.h OptimScaler), on the CPU backend:
 * - backward from seed 2^16 gives gradients exactly 2^16 times those from seed 1 (every backward is
 *   linear in its output gradient, and powers of two scale floats exactly);
 * - training a resnet-style net (BN, ReLU, residual, max-pool, linear) with the scaler reaches
 *   bit-identical weights to training without it;
 * - a non-finite gradient makes optim_unscale say "skip", halve the scale and count the skip;
 *   `interval` good steps in a row double it, unless that would make it infinite. */
#include "libcommon/models/model.h"
#include "libcommon/optim/optim.h"
#include "tests/unit/check.h"

#include <string.h>

enum { N = 6, RES = 16, K = 10 };

static Tensor batch(int step, Tensor *labels)
{
    Tensor x = tensor_newv(DD_F32, 4, (int64_t)N, (int64_t)3, (int64_t)RES, (int64_t)RES);
    DdRng r;
    dd_rng_init(&r, 5, 1, (uint64_t)step);
    float *p = x.data;
    for (int64_t i = 0; i < tensor_numel(&x); i++) p[i] = (float)dd_rng_uniform(&r);
    *labels = tensor_newv(DD_I64, 1, (int64_t)N);
    for (int i = 0; i < N; i++) ((int64_t *)labels->data)[i] = (i * 7 + step) % K;
    return x;
}

/* Loss of one step's forward (train mode); the caller runs backward. */
static NnVar *forward(Nn *nn, Model *m, int step, Tensor *x, Tensor *y)
{
    *x = batch(step, y);
    return nn_cross_entropy(nn, model_forward(m, nn, nn_input(nn, x, 0), 1), y, 0.0f);
}

static void snapshot(Model *m, float **out, int64_t *total)
{
    int64_t n = 0;
    for (int i = 0; i < m->nparams; i++) n += tensor_numel(&m->params[i]->var.v);
    float *s = dd_malloc((size_t)n * sizeof *s);
    int64_t o = 0;
    for (int i = 0; i < m->nparams; i++) {
        int64_t k = tensor_numel(&m->params[i]->var.v);
        memcpy(s + o, m->params[i]->var.v.data, (size_t)k * sizeof *s);
        o += k;
    }
    *out = s;
    *total = n;
}

/* Trains `steps` SGD steps; with sc, through the scaler. Returns the weights. */
static float *train(OptimScaler *sc, int steps, int64_t *n)
{
    Nn *nn = nn_new(DD_CPU, 2);
    Model *m = model_create(nn, "resnet18m", 3, K, RES, 3);
    CHECK(m != NULL);
    OptimConf c = optim_sgd(0.05, 0.9, 5e-4, 0);
    for (int t = 0; t < steps; t++) {
        Tensor x, y;
        nn_zero_grad(nn, m->params, m->nparams);
        NnVar *loss = forward(nn, m, t, &x, &y);
        nn_backward_seed(nn, loss, sc ? sc->scale : 1.0f);
        nn_reset(nn);
        int take = sc ? optim_unscale(nn, sc, m->params, m->nparams) : 1;
        CHECK(take == 1);
        CHECK(optim_step(nn, &c, m->params, m->nparams) == 0);
        tensor_free(&x);
        tensor_free(&y);
    }
    float *w;
    snapshot(m, &w, n);
    model_free(m);
    nn_free(nn);
    return w;
}

int main(void)
{
    /* gradients from seed 2^16 are 2^16 times those from seed 1, exactly */
    {
        Nn *nn = nn_new(DD_CPU, 2);
        Model *m = model_create(nn, "resnet18m", 3, K, RES, 3);
        float *g1[256], *g2[256];
        CHECK(m->nparams <= 256);
        for (int pass = 0; pass < 2; pass++) {
            Tensor x, y;
            nn_zero_grad(nn, m->params, m->nparams);
            nn_backward_seed(nn, forward(nn, m, 0, &x, &y), pass ? 65536.0f : 1.0f);
            nn_reset(nn);
            for (int i = 0; i < m->nparams; i++) {
                int64_t k = tensor_numel(&m->params[i]->var.v);
                float *g = dd_malloc((size_t)k * sizeof *g);
                nn_grad_download(nn, &m->params[i]->var, g);
                (pass ? g2 : g1)[i] = g;
            }
            tensor_free(&x);
            tensor_free(&y);
        }
        int64_t bad = 0, nonzero = 0;
        for (int i = 0; i < m->nparams; i++) {
            for (int64_t j = 0, k = tensor_numel(&m->params[i]->var.v); j < k; j++) {
                bad += g2[i][j] != g1[i][j] * 65536.0f;
                nonzero += g1[i][j] != 0;
            }
            free(g1[i]);
            free(g2[i]);
        }
        CHECK_MSG(bad == 0, "%lld gradients differ from 2^16 times the unscaled ones", (long long)bad);
        CHECK(nonzero > 1000);
        model_free(m);
        nn_free(nn);
    }

    /* training through the scaler reaches the same weights, bit for bit */
    {
        int64_t n1, n2;
        OptimScaler sc = optim_scaler_new();
        float *w1 = train(NULL, 4, &n1), *w2 = train(&sc, 4, &n2);
        CHECK(n1 == n2);
        int64_t bad = 0;
        for (int64_t i = 0; i < n1 && n1 == n2; i++) bad += memcmp(&w1[i], &w2[i], sizeof *w1) != 0;
        CHECK_MSG(bad == 0, "%lld of %lld weights differ with loss scaling", (long long)bad, (long long)n1);
        CHECK(sc.scale == 65536.0f && sc.good == 4 && sc.skipped == 0);
        free(w1);
        free(w2);
    }

    /* a gradient that overflowed (seeded here with infinity; on the GPU, an fp16 cast past 65504):
     * the step is to be skipped and the scale halved; `interval` good steps double it again */
    {
        Nn *nn = nn_new(DD_CPU, 2);
        Model *m = model_create(nn, "resnet18m", 3, K, RES, 3);
        OptimScaler sc = optim_scaler_new();
        sc.interval = 2;
        Tensor x, y;
        nn_zero_grad(nn, m->params, m->nparams);
        nn_backward_seed(nn, forward(nn, m, 0, &x, &y), INFINITY);
        nn_reset(nn);
        tensor_free(&x);
        tensor_free(&y);
        CHECK(optim_unscale(nn, &sc, m->params, m->nparams) == 0);
        CHECK(sc.scale == 32768.0f && sc.skipped == 1 && sc.good == 0);
        for (int t = 0; t < 3; t++) {
            nn_zero_grad(nn, m->params, m->nparams);
            nn_backward_seed(nn, forward(nn, m, t, &x, &y), sc.scale);
            nn_reset(nn);
            tensor_free(&x);
            tensor_free(&y);
            CHECK(optim_unscale(nn, &sc, m->params, m->nparams) == 1);
        }
        CHECK(sc.scale == 65536.0f && sc.good == 1 && sc.skipped == 1);
        /* as torch's _amp_update_scale_: a growth that would make the scale infinite is not taken */
        sc.scale = 0x1p127f;
        sc.interval = 1;
        sc.good = 0;
        nn_zero_grad(nn, m->params, m->nparams);
        CHECK(optim_unscale(nn, &sc, m->params, m->nparams) == 1);
        CHECK(sc.scale == 0x1p127f && sc.good == 0);
        model_free(m);
        nn_free(nn);
    }
    return check_done("test_scaler");
}

/* test_cuda_models.c - every architecture of the zoo on the CUDA backend against the CPU
 * reference: the same seeded weights, the same batch of 8, in eval mode (running statistics,
 * recover's teacher) and in training mode (batch statistics, live dropout and stochastic depth
 * from the same philox stream on both sides), cross-entropy, backward to the input and to every
 * weight; and as recover's frozen teacher (eval, no weight gradients, the BN statistics loss
 * added). One row per model and mode: the largest relative difference (max|cuda - cpu| /
 * max|cpu|) of the logits, the loss, the input gradient and, per parameter, its gradient.
 * Tolerances (fp32, TF32 off, sums in another order): logits, loss and input gradient 1e-4;
 * weight gradients 1e-3 (the deepest nets' first layers sum over every path).
 * Each CUDA run is repeated in a context with DD_NN_KEEP_ALL=1 (every value kept to the step's
 * end): the value lifetimes must not change a bit on the device either (column "kept").
 * Exit 77 with "SKIP: no CUDA device ... GPU ..." when the CUDA backend cannot start, which make
 * check-gpu counts as a failure. DD_TEST_AS_CPU=1 runs the CPU in both roles: the harness's own
 * check (every row exactly 0). */
#include "libcommon/models/model.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>

enum { N = 8, K = 10 };

typedef struct {
    float logits[N * K], loss;
    float *dx;         /* input gradient */
    float **dw;        /* per parameter (NULL where it has none) */
    int64_t *numel;    /* per parameter */
    int nparams;
} Side;

/* mode 0: eval, 1: training, 2: recover's (eval, frozen weights, the BN statistics loss added:
 * the convolutions' inputs are released, the BN masks recomputed) */
static void run_side(Nn *nn, const char *name, int res, int mode, const float *px, Side *s)
{
    const int training = mode == 1;
    Model *m = model_create(nn, name, 3, K, res, 17);
    if (!m) dd_die_err(DD_EXIT_DATA);
    if (mode == 2) model_set_requires_grad(m, 0);
    nn_set_rng(nn, 99, 1);
    int64_t shape[4] = {N, 3, res, res};
    Tensor t = tensor_new(DD_F32, 4, shape);
    memcpy(t.data, px, (size_t)N * 3 * res * res * sizeof(float));
    Tensor y = tensor_newv(DD_I64, 1, (int64_t)N);
    for (int i = 0; i < N; i++) ((int64_t *)y.data)[i] = (i * 3) % K;
    NnVar *x = nn_input(nn, &t, 1);
    nn_bn_collect(nn, mode == 2);
    NnVar *out = model_forward(m, nn, x, training);
    NnVar *loss = nn_cross_entropy(nn, out, &y, 0.0f);
    for (int i = 0; i < nn_bn_stat_count(nn); i++)
        loss = nn_add(nn, loss, nn_scale(nn, nn_bn_stat(nn, i), 0.01f));
    nn_bn_collect(nn, 0);
    nn_backward(nn, loss);
    nn_var_download(nn, out, s->logits);
    s->loss = nn_item(nn, loss);
    s->dx = dd_malloc((size_t)N * 3 * res * res * sizeof(float));
    nn_grad_download(nn, x, s->dx);
    s->nparams = m->nparams;
    s->dw = dd_calloc((size_t)m->nparams, sizeof *s->dw);
    s->numel = dd_calloc((size_t)m->nparams, sizeof *s->numel);
    for (int i = 0; i < m->nparams; i++) {
        NnVar *v = &m->params[i]->var;
        s->numel[i] = tensor_numel(&v->v);
        if (!v->requires_grad || !v->g.data) continue;
        s->dw[i] = dd_malloc((size_t)tensor_numel(&v->v) * sizeof(float));
        nn_grad_download(nn, v, s->dw[i]);
    }
    nn_reset(nn);
    tensor_free(&t);
    tensor_free(&y);
    model_free(m);
}

/* As test_cuda_ops' err_host: max|got - ref| / max|ref| over finite ref; NaN on one side or an
 * infinity not matched: infinity; equal values (a shared infinity too) add nothing. */
static double rel(const float *ref, const float *got, int64_t n)
{
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > mr) mr = fabs(ref[i]);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(ref[i]) != isnan(got[i])) return INFINITY;
        if (isnan(ref[i]) || got[i] == ref[i]) continue;
        if (isinf(ref[i]) || isinf(got[i])) return INFINITY;
        double d = fabs((double)got[i] - ref[i]);
        md = d > md ? d : md;
    }
    return mr > 0 ? md / mr : md;
}

/* The same bits in every output of two runs. */
static int same_side(const Side *a, const Side *b, int res)
{
    if (memcmp(a->logits, b->logits, sizeof a->logits) || memcmp(&a->loss, &b->loss, sizeof a->loss) ||
        memcmp(a->dx, b->dx, (size_t)N * 3 * res * res * sizeof(float)) || a->nparams != b->nparams)
        return 0;
    for (int i = 0; i < a->nparams; i++)
        if (!a->dw[i] != !b->dw[i] || (a->dw[i] && memcmp(a->dw[i], b->dw[i], (size_t)a->numel[i] * sizeof(float))))
            return 0;
    return 1;
}

static void free_side(Side *s)
{
    free(s->dx);
    for (int i = 0; i < s->nparams; i++) free(s->dw[i]);
    free(s->dw);
    free(s->numel);
}

int main(void)
{
    const int as_cpu = getenv("DD_TEST_AS_CPU") && atoi(getenv("DD_TEST_AS_CPU"));
    Nn *ng = as_cpu ? nn_new(DD_CPU, 2) : nn_new(DD_CUDA, 1);
    if (!ng) CHECK_SKIP("no CUDA device (GPU required for this test): %s", dd_errmsg());
    Nn *nc = nn_new(DD_CPU, 2);
    setenv("DD_NN_KEEP_ALL", "1", 1);
    Nn *nk = as_cpu ? nn_new(DD_CPU, 2) : nn_new(DD_CUDA, 1);
    unsetenv("DD_NN_KEEP_ALL");
    if (!nk) dd_die_err(DD_EXIT_DEVICE);
    static const struct { const char *name; int res; } nets[] = {
        {"convnet3", 28},        {"resnet18m", 32},          {"resnet50m", 32},
        {"wide_resnet50_2m", 32}, {"mobilenet_v2m", 32},     {"shufflenet_v2_x0_5m", 32},
        {"shufflenet_v2_x1_0m", 32}, {"densenet121m", 32},   {"efficientnet_b0m", 32},
        {"vgg11_bn", 32},        {"alexnet", 64},            {"resnet18", 64},
        {"convnet3:pad=3", 28},  {"mobilenet_v2_cifar", 32}, {"densenet121_cifar", 32},
        {"convnet3:norm=instance", 32}, {"convnet3:width=16,pad=3,norm=none", 28},
        {"shufflenet_g2_cifar", 32}, {"efficientnet_b0_cifar", 32}, {"vgg11", 32},
        {"convnet3:width=16,norm=layer", 32},
    };
    int rows = 0, failed = 0;
    printf("%-34s %-6s %-10s %-10s %-10s %-10s %-5s %s\n", "model (CUDA vs CPU)", "mode", "logits", "loss",
           "input grad", "weight grad", "kept", "result");
    for (size_t k = 0; k < sizeof nets / sizeof nets[0]; k++) {
        int res = nets[k].res;
        float *px = dd_malloc((size_t)N * 3 * res * res * sizeof(float));
        DdRng r;
        dd_rng_init(&r, 7, (uint64_t)k, 0);
        for (int64_t i = 0; i < (int64_t)N * 3 * res * res; i++) px[i] = (float)dd_rng_uniform(&r);
        for (int mode = 0; mode <= 2; mode++) {
            Side c, g, kg;
            run_side(nc, nets[k].name, res, mode, px, &c);
            run_side(ng, nets[k].name, res, mode, px, &g);
            run_side(nk, nets[k].name, res, mode, px, &kg);
            int kept = same_side(&g, &kg, res);
            double el = rel(c.logits, g.logits, N * K), es = rel(&c.loss, &g.loss, 1);
            double ex = rel(c.dx, g.dx, (int64_t)N * 3 * res * res), ew = 0;
            /* the same parameters with gradients on both sides, then each one's difference */
            int wmiss = c.nparams != g.nparams;
            for (int i = 0; i < c.nparams && !wmiss; i++) {
                wmiss = !c.dw[i] != !g.dw[i] || c.numel[i] != g.numel[i];
                if (wmiss || !c.dw[i]) continue;
                double e = rel(c.dw[i], g.dw[i], c.numel[i]);
                ew = e > ew ? e : ew;
            }
            int ok = !wmiss && el <= 1e-4 && es <= 1e-4 && ex <= 1e-4 && ew <= 1e-3 && kept;
            if (as_cpu) ok = ok && el == 0 && es == 0 && ex == 0 && ew == 0;
            printf("%-34s %-6s %-10.3g %-10.3g %-10.3g %-10.3g %-5s %s\n", nets[k].name,
                   mode == 1 ? "train" : mode ? "frozen" : "eval", el, es, ex, wmiss ? INFINITY : ew, kept ? "same" : "DIFF",
                   ok ? "PASS" : "FAIL");
            rows++;
            failed += !ok;
            free_side(&c);
            free_side(&g);
            free_side(&kg);
        }
        free(px);
    }
    printf("%d rows, %d failed\n", rows, failed);
    nn_free(nc);
    nn_free(ng);
    nn_free(nk);
    check_failures += failed;
    return check_done("test_cuda_models");
}

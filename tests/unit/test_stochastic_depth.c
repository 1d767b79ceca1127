/* test_stochastic_depth.c - EfficientNet-B0's stochastic depth, torchvision's StochasticDepth(p,
 * "row") in training mode. libcommon/models/efficientnet.c draws it as dropout of a [N,1,1,1]
 * tensor of ones (the context's rng) multiplied, broadcast, into the residual branch; that helper
 * is static, so the per-sample properties are checked on the same construction through the
 * public engine API, and the model-level ones through model_create / model_forward:
 *   construction: whole samples are zeroed (never part of one), with frequency p within 4
 *     binomial standard deviations over 4000 samples (p = 0.1, 0.3, 0.5, 0.8); kept samples are
 *     x * (1.0f / (1.0f - p)) exactly, as torchvision's noise.div_(1 - p); the gradient to the
 *     branch is the upstream gradient times the same per-sample factor, exactly; the draw is a
 *     function of (seed, step) only: repeated, it is equal, on 1 or 2 threads; another step
 *     differs;
 *   efficientnet_b0m (dropout 0): eval mode is the identity (stochastic_depth=0.5 gives the same
 *     logits as stochastic_depth=0, whatever the rng); p = 0 draws nothing in train mode (the
 *     logits do not depend on the rng); p = 0.5 in train mode is live (other logits than p = 0,
 *     and at another step) and the same (seed, step) reproduces the logits bit for bit.
 * Per-sample dropping is not observed through the model: train-mode BN mixes the batch, and
 * copies of one image are no probe (at 1x1 maps BN blows their rounding differences up to O(1)).
 * tests/unit/test_nn_grad.c checks dropout and mul's [N,1,1,1] broadcast (this construction's
 * factor) by finite differences; here the gradient is checked exactly (the op is linear given
 * the mask). */
#include "libcommon/models/model.h"
#include "tests/unit/check.h"

#include <math.h>
#include <string.h>

/* efficientnet.c's stochastic_depth() in training mode, p > 0: a per-sample factor, 0 or
 * 1/(1-p), broadcast over C, H, W. */
static NnVar *row_drop(Nn *nn, NnVar *x, float p)
{
    Tensor ones = tensor_newv(DD_F32, 4, x->v.shape[0], (int64_t)1, (int64_t)1, (int64_t)1);
    for (int64_t i = 0; i < x->v.shape[0]; i++) ((float *)ones.data)[i] = 1.0f;
    NnVar *keep = nn_dropout(nn, nn_input(nn, &ones, 0), p, 1);
    tensor_free(&ones);
    return nn_mul(nn, x, keep);
}

enum { N = 4000, C = 3, H = 2, W = 2, PER = C * H * W };

/* A [N,C,H,W] tensor of values in [0.5, 1.5) (never 0: a zero marks a dropped sample). */
static Tensor branch_values(uint64_t seed)
{
    Tensor t = tensor_newv(DD_F32, 4, (int64_t)N, (int64_t)C, (int64_t)H, (int64_t)W);
    DdRng r;
    dd_rng_init(&r, seed, 0, 0);
    for (int64_t i = 0; i < (int64_t)N * PER; i++) ((float *)t.data)[i] = (float)dd_rng_uniform_range(&r, 0.5, 1.5);
    return t;
}

/* Runs the construction with rng (seed, step) and gradient weights w (loss = sum(y * w));
 * writes y and dL/dx. */
static void run_rows(int threads, float p, uint64_t seed, uint64_t step, const Tensor *x, const Tensor *w,
                     float *y, float *dx)
{
    Nn *nn = nn_new(DD_CPU, threads);
    nn_set_rng(nn, seed, step);
    NnVar *xv = nn_input(nn, x, 1);
    NnVar *yv = row_drop(nn, xv, p);
    nn_backward(nn, nn_sum(nn, nn_mul(nn, yv, nn_input(nn, w, 0))));
    nn_var_download(nn, yv, y);
    nn_grad_download(nn, xv, dx);
    nn_reset(nn);
    nn_free(nn);
}

/* Which samples were dropped (1) or kept (0); -1 when a sample is neither wholly zero nor wholly
 * x * keep, or its gradient is not w * (0 or keep) exactly. */
static int classify(const float *x, const float *w, const float *y, const float *dx, float keep, int64_t i)
{
    int zero = 0, scaled = 0;
    for (int k = 0; k < PER; k++) {
        int64_t e = i * PER + k;
        if (y[e] == 0.0f && dx[e] == 0.0f) zero++;
        else if (y[e] == x[e] * keep && dx[e] == w[e] * keep) scaled++;
    }
    return zero == PER ? 1 : scaled == PER ? 0 : -1;
}

static void test_rows(void)
{
    static const float probs[] = {0.1f, 0.3f, 0.5f, 0.8f};
    Tensor x = branch_values(1), w = branch_values(2);
    float *y = malloc((size_t)N * PER * sizeof(float)), *dx = malloc((size_t)N * PER * sizeof(float));
    float *y2 = malloc((size_t)N * PER * sizeof(float)), *dx2 = malloc((size_t)N * PER * sizeof(float));
    const float *xs = x.data, *ws = w.data;
    for (size_t k = 0; k < sizeof probs / sizeof probs[0]; k++) {
        float p = probs[k], keep = 1.0f / (1.0f - p);
        run_rows(1, p, 11, 5, &x, &w, y, dx);
        int dropped = 0, partial = 0;
        for (int64_t i = 0; i < N; i++) {
            int c = classify(xs, ws, y, dx, keep, i);
            if (c < 0) partial++;
            else dropped += c;
        }
        double frac = (double)dropped / N, tol = 4.0 * sqrt((double)p * (1.0 - p) / N);
        CHECK_MSG(partial == 0, "p %g: %d samples neither wholly dropped nor wholly scaled by 1/(1-p)", (double)p, partial);
        CHECK_MSG(fabs(frac - p) <= tol, "p %g: dropped fraction %.4f, want within %.4f of p", (double)p, frac, tol);
        printf("p %.1f: %d of %d samples dropped (%.4f, tolerance %.4f), the others x * %.9g exactly\n",
               (double)p, dropped, N, frac, tol, (double)keep);

        /* the draw is (seed, step)'s: the same on 2 threads, another one at the next step */
        run_rows(2, p, 11, 5, &x, &w, y2, dx2);
        CHECK_MSG(!memcmp(y, y2, (size_t)N * PER * sizeof(float)) && !memcmp(dx, dx2, (size_t)N * PER * sizeof(float)),
                  "p %g: seed 11 step 5 differs between 1 and 2 threads", (double)p);
        run_rows(1, p, 11, 6, &x, &w, y2, dx2);
        int moved = 0;
        for (int64_t i = 0; i < N; i++) moved += classify(xs, ws, y, dx, keep, i) != classify(xs, ws, y2, dx2, keep, i);
        CHECK_MSG(moved > 0, "p %g: step 6 drops the same samples as step 5", (double)p);
    }
    free(y);
    free(dx);
    free(y2);
    free(dx2);
    tensor_free(&x);
    tensor_free(&w);
}

/* ---- through the model ---- */

enum { MN = 6, MSIDE = 16, NCLS = 10 };

/* Logits [MN, NCLS] of `m` on MN fixed random images, the context's rng at (seed, step). */
static void logits_of(Nn *nn, Model *m, int training, uint64_t seed, uint64_t step, float *out)
{
    Tensor x = tensor_newv(DD_F32, 4, (int64_t)MN, (int64_t)1, (int64_t)MSIDE, (int64_t)MSIDE);
    DdRng r;
    dd_rng_init(&r, 3, 0, 0);
    for (int64_t i = 0; i < MN * MSIDE * MSIDE; i++) ((float *)x.data)[i] = (float)dd_rng_uniform(&r);
    nn_set_rng(nn, seed, step);
    int g = nn_set_grad(nn, 0);
    nn_var_download(nn, model_forward(m, nn, nn_input(nn, &x, 0), training), out);
    nn_set_grad(nn, g);
    nn_reset(nn);
    tensor_free(&x);
}

static int same(const float *a, const float *b) { return !memcmp(a, b, MN * NCLS * sizeof(float)); }

static void test_model(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    Model *live = model_create(nn, "efficientnet_b0m:dropout=0,stochastic_depth=0.5", 1, NCLS, MSIDE, 7);
    Model *off = model_create(nn, "efficientnet_b0m:dropout=0,stochastic_depth=0", 1, NCLS, MSIDE, 7);
    CHECK(live && off);
    if (!live || !off) {
        model_free(live);
        model_free(off);
        nn_free(nn);
        return;
    }
    CHECK(live->stochastic_depth == 0.5f && off->stochastic_depth == 0.0f);
    float a[MN * NCLS], b[MN * NCLS], c[MN * NCLS];

    /* running statistics of these images (fresh ones, mean 0 var 1, shrink the logits to 1e-14),
     * the same in both models: train-mode forwards of the p = 0 model, its buffers copied */
    for (int k = 0; k < 30; k++) logits_of(nn, off, 1, 1, (uint64_t)k, a);
    for (int i = 0; i < off->nparams; i++) {
        NnVar *v = &off->params[i]->var;
        if (v->role != NN_BUFFER) continue;
        float *buf = malloc((size_t)tensor_numel(&v->v) * sizeof(float));
        nn_var_download(nn, v, buf);
        nn_var_upload(nn, &live->params[i]->var, buf);
        free(buf);
    }

    /* eval mode: the identity */
    logits_of(nn, live, 0, 1, 0, a);
    logits_of(nn, live, 0, 2, 9, b);
    logits_of(nn, off, 0, 1, 0, c);
    CHECK_MSG(same(a, b) && same(a, c), "eval mode: stochastic_depth=0.5 is not the identity");
    double big = 0;
    for (int i = 0; i < MN * NCLS; i++) big = fmax(big, fabs(a[i]));
    CHECK_MSG(big > 1e-2, "eval mode: logits of at most %.3g, too small to compare", big);

    /* p = 0, train mode: nothing drawn */
    float p0[MN * NCLS];
    logits_of(nn, off, 1, 1, 0, p0);
    logits_of(nn, off, 1, 2, 9, b);
    CHECK_MSG(same(p0, b), "stochastic_depth=0, train mode: the logits depend on the rng");

    /* p = 0.5, train mode: live, reproducible */
    logits_of(nn, live, 1, 1, 0, a);
    logits_of(nn, live, 1, 1, 0, b);
    logits_of(nn, live, 1, 1, 1, c);
    CHECK_MSG(same(a, b), "stochastic_depth=0.5, train mode: the same seed and step gave other logits");
    CHECK_MSG(!same(a, c), "stochastic_depth=0.5, train mode: step 1 gave the logits of step 0");
    CHECK_MSG(!same(a, p0), "stochastic_depth=0.5, train mode: the logits of stochastic_depth=0");
    printf("efficientnet_b0m: eval mode the identity (logits up to %.3g), p = 0 draws nothing, p = 0.5 live "
           "and reproducible\n", big);
    model_free(live);
    model_free(off);
    nn_free(nn);
}

int main(void)
{
    test_rows();
    test_model();
    return check_done("test_stochastic_depth");
}

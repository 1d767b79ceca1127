/* test_nn_engine.c - the engine's contract beyond single-op gradients: forward values against
 * hand-computed ones (MixUp and CutMix too), gradient accumulation (+= for params, written for
 * inputs), frozen params, identical repeated steps without arena growth, thread-count independence,
 * AvgPool2d(2)'s fast loop against its definition, the CUDA-less stub. */
#include "libcommon/base/base.h"
#include "libcommon/nn/nn.h"
#include "libcommon/nn/nn_impl.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>

static NnVar *input(Nn *nn, int ndim, const int64_t *shape, const float *data, int grad)
{
    Tensor t = {.dtype = DD_F32, .device = DD_CPU, .ndim = ndim, .data = (void *)data};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return nn_input(nn, &t, grad);
}

static void test_forward_values(Nn *nn)
{
    nn_reset(nn);
    /* conv: 1x1x3x3 input 1..9, 2x2 kernel of ones, stride 1, no pad: window sums. */
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, k[4] = {1, 1, 1, 1}, b[1] = {0.5f}, y[4];
    NnVar *vx = input(nn, 4, (int64_t[]){1, 1, 3, 3}, x, 0);
    NnVar *vk = input(nn, 4, (int64_t[]){1, 1, 2, 2}, k, 0);
    NnVar *vb = input(nn, 1, (int64_t[]){1}, b, 0);
    nn_var_download(nn, nn_conv2d(nn, vx, vk, vb, 1, 0, 1, 1), y);
    CHECK(y[0] == 12.5f && y[1] == 16.5f && y[2] == 24.5f && y[3] == 28.5f);
    /* pad 1, stride 2: corners of the padded 4x4 result grid. */
    nn_var_download(nn, nn_conv2d(nn, vx, vk, NULL, 2, 1, 1, 1), y);
    CHECK(y[0] == 1 && y[1] == 5 && y[2] == 11 && y[3] == 28);
    /* maxpool 2x2 stride 1, avgpool 3 pad 1 (count_include_pad: corner = (1+2+4+5)/9). */
    nn_var_download(nn, nn_maxpool2d(nn, vx, 2, 1, 0), y);
    CHECK(y[0] == 5 && y[1] == 6 && y[2] == 8 && y[3] == 9);
    float z[9];
    nn_var_download(nn, nn_avgpool2d(nn, vx, 3, 1, 1), z);
    CHECK_CLOSE(z[0], 12.0 / 9, 1e-6, 0);
    CHECK_CLOSE(z[4], 5.0, 1e-6, 0);
    /* adaptive 3x3 -> 2x2: windows [0,2) and [1,3). */
    nn_var_download(nn, nn_adaptive_avgpool2d(nn, vx, 2, 2), y);
    CHECK_CLOSE(y[0], 3.0, 1e-6, 0);
    CHECK_CLOSE(y[3], 7.0, 1e-6, 0);
    /* bilinear 3x3 -> 2x2: src = (d + 0.5) * 1.5 - 0.5 = 0.25, 1.75. */
    nn_var_download(nn, nn_resize_bilinear(nn, vx, 2, 2), y);
    CHECK_CLOSE(y[0], 1 + 0.25 + 3 * 0.25, 1e-5, 0);
    CHECK_CLOSE(y[3], 1 + 1.75 + 3 * 1.75, 1e-5, 0);
    /* upsampling 3 -> 6 rows: src of row 0 is clamped to 0; of row 5: 2.25 -> clamped tap 2. */
    float u[36];
    nn_var_download(nn, nn_resize_bilinear(nn, vx, 6, 6), u);
    CHECK_CLOSE(u[0], 1.0, 1e-6, 0);
    CHECK_CLOSE(u[35], 9.0, 1e-6, 0);
    CHECK_CLOSE(u[1], 1.25, 1e-6, 0);   /* col src 0.25 */
    /* roll by (1, 1), flip. */
    nn_var_download(nn, nn_roll(nn, vx, 1, 1), z);
    CHECK(z[0] == 9 && z[1] == 7 && z[4] == 1);
    nn_var_download(nn, nn_flip_w(nn, vx), z);
    CHECK(z[0] == 3 && z[2] == 1 && z[5] == 4);
    /* BN eval: (x - 1) / sqrt(4 + 0) * 2 + 1 (eps 0). */
    float rm[1] = {1}, rv[1] = {4}, w[1] = {2}, bb[1] = {1};
    NnVar *vrm = input(nn, 1, (int64_t[]){1}, rm, 0), *vrv = input(nn, 1, (int64_t[]){1}, rv, 0);
    NnVar *vw = input(nn, 1, (int64_t[]){1}, w, 0), *vbb = input(nn, 1, (int64_t[]){1}, bb, 0);
    nn_var_download(nn, nn_batchnorm(nn, vx, vw, vbb, vrm, vrv, 0, 0, 0.1f, 0.0f), z);
    CHECK_CLOSE(z[0], 1.0, 1e-6, 0);
    CHECK_CLOSE(z[8], 9.0, 1e-6, 0);
    /* BN train updates running stats with momentum and unbiased var: mean 5, var_unb 7.5. */
    nn_batchnorm(nn, vx, NULL, NULL, vrm, vrv, 1, 1, 0.1f, 1e-5f);
    CHECK_CLOSE(nn_f(vrm)[0], 0.9 * 1 + 0.1 * 5, 1e-6, 0);
    CHECK_CLOSE(nn_f(vrv)[0], 0.9 * 4 + 0.1 * 7.5, 1e-5, 0);
    /* stat loss: |5 - rm| + |60/9 - rv| with the updated rm, rv. */
    float l = nn_item(nn, nn_bn_stat_loss(nn, vx, vrm, vrv));
    CHECK_CLOSE(l, fabs(5 - 1.4) + fabs(60.0 / 9 - 4.35), 1e-5, 0);
    /* CE with smoothing 0.1 over 2 equal logits: log 2. */
    float lg[2] = {3, 3};
    Tensor lab = tensor_scalar_i64(1);
    lab.ndim = 1;
    lab.shape[0] = 1;
    CHECK_CLOSE(nn_item(nn, nn_cross_entropy(nn, input(nn, 2, (int64_t[]){1, 2}, lg, 0), &lab, 0.1f)),
                log(2.0), 1e-6, 0);
    tensor_free(&lab);
    /* channel shuffle of 4 channels, 2 groups: 0 2 1 3. */
    float c4[4] = {0, 1, 2, 3};
    nn_var_download(nn, nn_channel_shuffle(nn, input(nn, 4, (int64_t[]){1, 4, 1, 1}, c4, 0), 2), y);
    CHECK(y[0] == 0 && y[1] == 2 && y[2] == 1 && y[3] == 3);
    /* narrow and interleave of 2 images of 4 channels of 2 px (value 100 n + 10 c + p): channels
     * 1-2; interleave of channels 0-1 with 2-3 gives 0 2 1 3 per image, as shuffle(concat). */
    float v[16], h[8], o[16];
    for (int i = 0; i < 16; i++) v[i] = (float)(100 * (i / 8) + 10 * (i / 2 % 4) + i % 2);
    NnVar *vv = input(nn, 4, (int64_t[]){2, 4, 1, 2}, v, 0);
    nn_var_download(nn, nn_narrow(nn, vv, 1, 1, 2), h);
    CHECK(h[0] == 10 && h[1] == 11 && h[2] == 20 && h[3] == 21 && h[4] == 110 && h[7] == 121);
    NnVar *lo = nn_narrow(nn, vv, 1, 0, 2), *hi = nn_narrow(nn, vv, 1, 2, 2);
    nn_var_download(nn, nn_channel_interleave(nn, lo, hi), o);
    static const int order[4] = {0, 2, 1, 3};
    int same = 1;
    for (int i = 0; i < 16; i++)
        same &= o[i] == (float)(100 * (i / 8) + 10 * order[i / 2 % 4] + i % 2);
    CHECK(same);
}

/* MixUp and CutMix of a batch in place (the ops the CUDA backend's kernels are checked against):
 * image i becomes lam x_i + (1 - lam) x_perm[i], its targets too; CutMix copies the box of
 * x_perm[i] into x_i, every channel, nothing outside the box. */
static void test_mix_ops(Nn *nn)
{
    nn_reset(nn);
    enum { N = 3, C = 2, H = 4, W = 5, IMG = C * H * W };
    const int64_t perm[N] = {2, 0, 1};
    float x[N * IMG], y[N * 2], got[N * IMG], gy[N * 2];
    for (int i = 0; i < N * IMG; i++) x[i] = (float)(i * 7 % 23) / 4;
    for (int i = 0; i < N * 2; i++) y[i] = (float)i;
    NnVar *vx = input(nn, 4, (int64_t[]){N, C, H, W}, x, 0), *vy = input(nn, 2, (int64_t[]){N, 2}, y, 0);
    nn_mixup(nn, vx, vy, perm, 0.25f);
    nn_var_download(nn, vx, got);
    nn_var_download(nn, vy, gy);
    int same = 1;
    for (int i = 0; i < N; i++) {
        for (int e = 0; e < IMG; e++)
            same &= got[i * IMG + e] == 0.25f * x[i * IMG + e] + 0.75f * x[perm[i] * IMG + e];
        for (int e = 0; e < 2; e++) same &= gy[i * 2 + e] == 0.25f * y[i * 2 + e] + 0.75f * y[perm[i] * 2 + e];
    }
    CHECK_MSG(same, "mixup: not lam x_i + (1 - lam) x_perm[i]");
    vx = input(nn, 4, (int64_t[]){N, C, H, W}, x, 0);
    nn_cutmix(nn, vx, perm, 1, 2, 3, 5); /* rows [1,3), columns [2,5) */
    nn_var_download(nn, vx, got);
    same = 1;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++)
            for (int r = 0; r < H; r++)
                for (int q = 0; q < W; q++) {
                    int off = (c * H + r) * W + q, in = r >= 1 && r < 3 && q >= 2;
                    same &= got[i * IMG + off] == x[(in ? perm[i] : i) * IMG + off];
                }
    CHECK_MSG(same, "cutmix: not the box of x_perm[i] in x_i");
    vx = input(nn, 4, (int64_t[]){N, C, H, W}, x, 0);
    nn_cutmix(nn, vx, perm, 2, 3, 2, 3); /* an empty box: unchanged */
    nn_var_download(nn, vx, got);
    CHECK(!memcmp(got, x, sizeof x));
}

/* Stat loss gradient where a norm is exactly 0: finite (0 from that term), never NaN. */
static void test_zero_norm(Nn *nn)
{
    nn_reset(nn);
    float x[8] = {1, 3, 1, 3, 1, 3, 1, 3}, rm[1] = {2}, rv[1] = {1}, g[8];
    NnVar *vx = input(nn, 4, (int64_t[]){2, 1, 2, 2}, x, 1);
    NnVar *l = nn_bn_stat_loss(nn, vx, input(nn, 1, (int64_t[]){1}, rm, 0),
                               input(nn, 1, (int64_t[]){1}, rv, 0));
    CHECK(nn_item(nn, l) == 0.0f);
    nn_backward(nn, l);
    nn_grad_download(nn, vx, g);
    for (int i = 0; i < 8; i++) CHECK(g[i] == 0.0f);
}

/* A conv -> BN(train) -> relu -> mean graph over a param weight and an input. */
static NnVar *small_step(Nn *nn, NnParam *w, NnParam *gamma, NnParam *rm, NnParam *rv, NnVar **xo,
                         const float *x, int64_t n, int64_t c, int64_t hw)
{
    NnVar *vx = input(nn, 4, (int64_t[]){n, c, hw, hw}, x, 1);
    *xo = vx;
    NnVar *h = nn_conv2d(nn, vx, &w->var, NULL, 1, 1, 1, 1);
    nn_bn_collect(nn, 1);
    h = nn_relu(nn, nn_batchnorm(nn, h, &gamma->var, NULL, &rm->var, &rv->var, 1, 0, 0.1f, 1e-5f));
    NnVar *l = nn_add(nn, nn_mean(nn, nn_mul(nn, h, h)), nn_bn_stat(nn, 0));
    nn_bn_collect(nn, 0);
    return l;
}

static void fill(float *p, int64_t n, uint64_t seed)
{
    DdRng r;
    dd_rng_init(&r, seed, 3, 0);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(2 * dd_rng_uniform(&r) - 1);
}

typedef struct {
    NnParam *w, *gamma, *rm, *rv;
} Net;

static Net net_new(Nn *nn, int64_t c)
{
    Net t;
    t.w = nn_param_new(nn, "conv.weight", NN_PARAM, 4, (int64_t[]){c, c, 3, 3});
    t.gamma = nn_param_new(nn, "bn.weight", NN_PARAM, 1, (int64_t[]){c});
    t.rm = nn_param_new(nn, "bn.running_mean", NN_BUFFER, 1, (int64_t[]){c});
    t.rv = nn_param_new(nn, "bn.running_var", NN_BUFFER, 1, (int64_t[]){c});
    float *tmp = dd_malloc((size_t)(c * c * 9) * sizeof *tmp);
    fill(tmp, c * c * 9, 1);
    for (int64_t i = 0; i < c * c * 9; i++) tmp[i] *= 0.3f;
    nn_var_upload(nn, &t.w->var, tmp);
    for (int64_t i = 0; i < c; i++) tmp[i] = 1.0f + 0.01f * (float)i;
    nn_var_upload(nn, &t.gamma->var, tmp);
    nn_var_upload(nn, &t.rv->var, tmp);
    free(tmp);
    return t;
}

static void net_free(Nn *nn, Net *t)
{
    nn_param_free(nn, t->w);
    nn_param_free(nn, t->gamma);
    nn_param_free(nn, t->rm);
    nn_param_free(nn, t->rv);
}

static void test_accumulation(Nn *nn)
{
    const int64_t n = 2, c = 3, hw = 5, nx = n * c * hw * hw, nw = c * c * 9;
    Net t = net_new(nn, c);
    float *x = dd_malloc((size_t)nx * sizeof *x), *gx1 = dd_malloc((size_t)nx * sizeof *x),
          *gx2 = dd_malloc((size_t)nx * sizeof *x), *gw1 = dd_malloc((size_t)nw * sizeof *x),
          *gw2 = dd_malloc((size_t)nw * sizeof *x);
    fill(x, nx, 2);
    NnVar *vx;
    /* step 1 */
    nn_reset(nn);
    nn_backward(nn, small_step(nn, t.w, t.gamma, t.rm, t.rv, &vx, x, n, c, hw));
    nn_grad_download(nn, vx, gx1);
    nn_grad_download(nn, &t.w->var, gw1);
    /* step 2 without zeroing: param grads double, input grads are written afresh */
    nn_reset(nn);
    NnVar *l = small_step(nn, t.w, t.gamma, t.rm, t.rv, &vx, x, n, c, hw);
    nn_backward(nn, l);
    nn_grad_download(nn, vx, gx2);
    nn_grad_download(nn, &t.w->var, gw2);
    int ok = 1;
    for (int64_t i = 0; i < nx; i++) ok &= gx1[i] == gx2[i];
    CHECK_MSG(ok, "input gradient not written afresh");
    ok = 1;
    for (int64_t i = 0; i < nw; i++) ok &= fabsf(gw2[i] - 2 * gw1[i]) <= 1e-6f * (1 + fabsf(gw1[i]));
    CHECK_MSG(ok, "param gradient does not accumulate");
    /* a second backward of the same graph: input grads written again, params accumulate */
    nn_backward(nn, l);
    nn_grad_download(nn, vx, gx2);
    ok = 1;
    for (int64_t i = 0; i < nx; i++) ok &= gx1[i] == gx2[i];
    CHECK_MSG(ok, "input gradient of a second backward not written afresh");
    /* zero_grad, then a frozen weight gets nothing and the input gradient is unchanged */
    NnParam *ps[2] = {t.w, t.gamma};
    nn_zero_grad(nn, ps, 2);
    t.w->var.requires_grad = 0;
    nn_reset(nn);
    nn_backward(nn, small_step(nn, t.w, t.gamma, t.rm, t.rv, &vx, x, n, c, hw));
    nn_grad_download(nn, &t.w->var, gw2);
    nn_grad_download(nn, vx, gx2);
    ok = 1;
    for (int64_t i = 0; i < nw; i++) ok &= gw2[i] == 0.0f;
    CHECK_MSG(ok, "frozen weight got a gradient");
    ok = 1;
    for (int64_t i = 0; i < nx; i++) ok &= gx1[i] == gx2[i];
    CHECK_MSG(ok, "input gradient changed when the weight froze");
    /* grad mode off: nothing recorded */
    nn_reset(nn);
    int old = nn_set_grad(nn, 0);
    l = small_step(nn, t.w, t.gamma, t.rm, t.rv, &vx, x, n, c, hw);
    CHECK(!l->requires_grad && nn->ntape == 0);
    nn_set_grad(nn, old);
    net_free(nn, &t);
    free(x);
    free(gx1);
    free(gx2);
    free(gw1);
    free(gw2);
}

/* Runs `steps` identical steps on a fresh context; returns the input gradient and loss of the last. */
static float run_steps(int threads, int steps, float *gx, const float *x, int64_t n, int64_t c,
                       int64_t hw, int check_arena)
{
    Nn *nn = nn_new(DD_CPU, threads);
    Net t = net_new(nn, c);
    t.w->var.requires_grad = 0;
    t.gamma->var.requires_grad = 0;
    float loss = 0;
    void *head = NULL;
    size_t peak = 0;
    for (int s = 0; s < steps; s++) {
        nn_reset(nn);
        if (s == 2) {
            head = nn->dev.head;
            peak = nn->dev.held_peak + nn->dev_small.held_peak;
        }
        NnVar *vx;
        NnVar *l = small_step(nn, t.w, t.gamma, t.rm, t.rv, &vx, x, n, c, hw);
        nn_backward(nn, l);
        nn_grad_download(nn, vx, gx);
        loss = nn_item(nn, l);
    }
    if (check_arena) {
        CHECK_MSG(nn->dev.head == head && !nn->dev.head->next && nn->dev.held_peak + nn->dev_small.held_peak == peak,
                  "device arena grew after the first steps");
        CHECK_MSG(!nn->host.head->next, "host arena has several chunks");
    }
    net_free(nn, &t);
    nn_free(nn);
    return loss;
}

static void test_steps_and_threads(void)
{
    /* big enough that elementwise loops and conv split across threads (> 32768 elements) */
    const int64_t n = 8, c = 16, hw = 24, nx = n * c * hw * hw;
    float *x = dd_malloc((size_t)nx * sizeof *x), *g1 = dd_malloc((size_t)nx * sizeof *x),
          *g2 = dd_malloc((size_t)nx * sizeof *x), *g3 = dd_malloc((size_t)nx * sizeof *x);
    fill(x, nx, 5);
    float l1 = run_steps(1, 1, g1, x, n, c, hw, 0);
    float l2 = run_steps(2, 4, g2, x, n, c, hw, 1);
    float l3 = run_steps(3, 1, g3, x, n, c, hw, 0);
    CHECK(l1 == l2 && l1 == l3);
    CHECK_MSG(!memcmp(g1, g2, (size_t)nx * sizeof *x), "threads 1 vs 2 (or step 1 vs 4) differ");
    CHECK_MSG(!memcmp(g1, g3, (size_t)nx * sizeof *x), "threads 1 vs 3 differ");
    free(x);
    free(g1);
    free(g2);
    free(g3);
}

/* AvgPool2d(2)'s own loop (pool_ops.c: AVX2 rows of 8 outputs, a scalar tail) against the general
 * definition in its summation order, ((((0 + a) + b) + c) + d) / 4, bit for bit, with and
 * without AVX2: planes whose outputs are 8, 17 and 3 wide, odd sizes dropping the last row and
 * column, and -0 inputs (which the order turns into +0); the backward adds dy / 4 to each
 * input's gradient once, over gradients already there. */
static void test_avgpool2(Nn *nn)
{
    static const int sizes[][2] = {{16, 16}, {35, 34}, {7, 7}};
    for (int isa = 0; isa < 2; isa++) {
        if (isa) setenv("DD_CPU_ISA", "baseline", 1);
        for (int t = 0; t < 3; t++) {
            int h = sizes[t][0], w = sizes[t][1], oh = h / 2, ow = w / 2, n = 2 * 3;
            float *x = dd_malloc((size_t)n * h * w * sizeof(float)), *want = dd_malloc((size_t)n * oh * ow * 4);
            float *got = dd_malloc((size_t)n * oh * ow * sizeof(float)), *dx = dd_malloc((size_t)n * h * w * 4);
            float *dy = dd_malloc((size_t)n * oh * ow * sizeof(float));
            DdRng r;
            dd_rng_init(&r, 9, 1, (uint64_t)t);
            for (int i = 0; i < n * h * w; i++) x[i] = i % 13 == 0 ? -0.0f : (float)dd_rng_normal(&r);
            for (int i = 0; i < n * oh * ow; i++) dy[i] = (float)dd_rng_normal(&r);
            for (int p = 0; p < n; p++)
                for (int i = 0; i < oh; i++)
                    for (int j = 0; j < ow; j++) {
                        const float *q = x + ((size_t)p * h + 2 * i) * w + 2 * j;
                        want[((size_t)p * oh + i) * ow + j] = ((((0.0f + q[0]) + q[1]) + q[w]) + q[w + 1]) * 0.25f;
                    }
            NnPoolShape sh = {n, h, w, oh, ow, 2, 2, 0};
            nn->be->avgpool_fwd(nn->be, &sh, x, got);
            CHECK_MSG(!memcmp(got, want, (size_t)n * oh * ow * sizeof(float)), "avgpool2 %dx%d isa %d", h, w, isa);
            for (int i = 0; i < n * h * w; i++) dx[i] = x[i];  /* the backward adds to dx */
            nn->be->avgpool_bwd(nn->be, &sh, dy, dx);
            int bad = 0;
            for (int p = 0; p < n; p++)
                for (int i = 0; i < h; i++)
                    for (int j = 0; j < w; j++) {
                        size_t at = ((size_t)p * h + i) * w + j;
                        float want_dx = i < 2 * oh && j < 2 * ow
                                            ? x[at] + dy[((size_t)p * oh + i / 2) * ow + j / 2] * 0.25f : x[at];
                        bad += memcmp(&dx[at], &want_dx, sizeof(float)) != 0;
                    }
            CHECK_MSG(bad == 0, "avgpool2 backward %dx%d isa %d: %d wrong", h, w, isa, bad);
            free(x), free(want), free(got), free(dx), free(dy);
        }
        unsetenv("DD_CPU_ISA");
    }
}

int main(void)
{
    Nn *nn = nn_new(DD_CPU, 2);
    test_forward_values(nn);
    test_zero_norm(nn);
    test_mix_ops(nn);
    test_accumulation(nn);
    test_avgpool2(nn);
    nn_free(nn);
    test_steps_and_threads();
    /* Without a usable CUDA device (or in a build without the backend) asking for one fails
     * cleanly with the device exit class; with one, the context works (test_cuda_ops tests it). */
    Nn *cu = nn_new(DD_CUDA, 1);
    CHECK(cu != NULL || (dd_errcode() == DD_EXIT_DEVICE && dd_errmsg()[0]));
    if (cu) nn_free(cu);
    return check_done("test_nn_engine");
}

/* test_nn_grad.c - every op's backward against central finite differences.
 *
 * For each case: random small inputs, a fixed random projection R and the loss L = sum(out * R),
 * evaluated in double on the host from the fp32 forward. The analytic gradient (nn_backward of
 * nn_sum(nn_mul(out, R))) must match (L(x+h) - L(x-h)) / 2h for every element of every
 * differentiable input within |a - n| <= ATOL + RTOL * |n|. h = 1e-2 (the forward is fp32, so a
 * smaller h drowns in rounding); non-smooth ops get inputs kept away from their kinks. The
 * cases run with each convolution path, and once more with the values the backward does not
 * read released first (nn_done's contract, each op's nn_keep). Activations and batchnorm also
 * run with x feeding a later op ("x shared"), whose backward runs first: their kernels' forms that
 * add to an existing gradient, where the others write a fresh one.
 */
#include "libcommon/base/base.h"
#include "libcommon/nn/nn.h"
#include "tests/unit/check.h"

#include <string.h>

#define ATOL 2e-3
#define RTOL 2e-2
#define MAXIN 4

enum { GEN_UNIFORM, GEN_POSITIVE, GEN_SPACED, GEN_AWAY };

typedef struct Case Case;
typedef NnVar *(*CaseFn)(Nn *nn, NnVar **in, const Case *c);
struct Case {
    const char *name;
    CaseFn fn;
    int nin;
    int ndim[MAXIN];
    int64_t shape[MAXIN][4];
    int grad[MAXIN];      /* 1: differentiable input, checked */
    int gen[MAXIN];
    int a[8];
    float f[4];
};

static int64_t numel(const Case *c, int i)
{
    int64_t n = 1;
    for (int d = 0; d < c->ndim[i]; d++) n *= c->shape[i][d];
    return n;
}

/* Inputs: GEN_AWAY keeps |x - k| >= 0.05 for the kinks k of relu/relu6/hardswish in [-8, 8]. */
static void gen_input(DdRng *r, int gen, float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double u = dd_rng_uniform(r);
        switch (gen) {
        case GEN_UNIFORM: x[i] = (float)(2 * u - 1); break;
        case GEN_POSITIVE: x[i] = (float)(0.5 + u); break;
        case GEN_SPACED: x[i] = (float)(0.05 * (double)i - 0.02 * (double)n); break;
        case GEN_AWAY: {
            double v = 16 * u - 8;
            const double kinks[] = {-3, 0, 3, 6};
            for (int k = 0; k < 4; k++)
                if (v > kinks[k] - 0.05 && v < kinks[k] + 0.05) v = kinks[k] + (v < kinks[k] ? -0.05 : 0.05);
            x[i] = (float)v;
            break;
        }
        }
    }
    if (gen == GEN_SPACED) /* distinct values, shuffled: maxpool windows have unique maxima */
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = dd_rng_int(r, 0, i);
            float t = x[i];
            x[i] = x[j];
            x[j] = t;
        }
}

static NnVar *make_inputs(Nn *nn, const Case *c, float **host, NnVar **in)
{
    for (int i = 0; i < c->nin; i++) {
        Tensor t = {.dtype = DD_F32, .device = DD_CPU, .ndim = c->ndim[i], .data = host[i]};
        for (int d = 0; d < c->ndim[i]; d++) t.shape[d] = c->shape[i][d];
        in[i] = nn_input(nn, &t, c->grad[i]);
    }
    return c->fn(nn, in, c);
}

static double eval_loss(Nn *nn, const Case *c, float **host, const float *R)
{
    NnVar *in[MAXIN];
    nn_reset(nn);
    int old = nn_set_grad(nn, 0);
    NnVar *out = make_inputs(nn, c, host, in);
    nn_set_grad(nn, old);
    int64_t n = tensor_numel(&out->v);
    float *y = dd_malloc((size_t)n * sizeof *y);
    nn_var_download(nn, out, y);
    double l = 0;
    for (int64_t i = 0; i < n; i++) l += (double)y[i] * R[i];
    free(y);
    return l;
}

static int check_case(Nn *nn, const Case *c, uint64_t seed)
{
    DdRng r;
    dd_rng_init(&r, seed, 1, 0);
    float *host[MAXIN], *grad[MAXIN];
    for (int i = 0; i < c->nin; i++) {
        host[i] = dd_malloc((size_t)numel(c, i) * sizeof(float));
        grad[i] = dd_malloc((size_t)numel(c, i) * sizeof(float));
        gen_input(&r, c->gen[i], host[i], numel(c, i));
    }
    /* analytic */
    nn_reset(nn);
    NnVar *in[MAXIN];
    NnVar *out = make_inputs(nn, c, host, in);
    int64_t nout = tensor_numel(&out->v);
    float *R = dd_malloc((size_t)nout * sizeof *R);
    for (int64_t i = 0; i < nout; i++) R[i] = (float)(2 * dd_rng_uniform(&r) - 1);
    Tensor rt = out->v;
    rt.device = DD_CPU;
    rt.data = R;
    rt.owns = 0;
    NnVar *loss = nn_sum(nn, nn_mul(nn, out, nn_input(nn, &rt, 0)));
    nn_backward(nn, loss);
    for (int i = 0; i < c->nin; i++) nn_grad_download(nn, in[i], grad[i]);
    /* numeric */
    int bad = 0;
    const double h = 1e-2;
    for (int i = 0; i < c->nin; i++) {
        if (!c->grad[i]) continue;
        for (int64_t e = 0; e < numel(c, i); e++) {
            float keep = host[i][e];
            host[i][e] = (float)(keep + h);
            double lp = eval_loss(nn, c, host, R);
            host[i][e] = (float)(keep - h);
            double lm = eval_loss(nn, c, host, R);
            host[i][e] = keep;
            double num = (lp - lm) / (2 * h), an = grad[i][e];
            if (!(fabs(an - num) <= ATOL + RTOL * fabs(num))) {
                if (bad < 5)
                    fprintf(stderr, "%s: input %d element %lld: analytic %.6g numeric %.6g\n",
                            c->name, i, (long long)e, an, num);
                bad++;
            }
        }
    }
    for (int i = 0; i < c->nin; i++) {
        free(host[i]);
        free(grad[i]);
    }
    free(R);
    CHECK_MSG(bad == 0, "%s: %d gradient elements off", c->name, bad);
    return bad;
}

/* ---- case functions ---- */

static NnVar *f_conv(Nn *nn, NnVar **in, const Case *c)
{
    return nn_conv2d(nn, in[0], in[1], c->nin > 2 ? in[2] : NULL, c->a[0], c->a[1], c->a[2], c->a[3]);
}
static NnVar *f_bn(Nn *nn, NnVar **in, const Case *c)
{
    return nn_batchnorm(nn, in[0], NULL, NULL, in[1], in[2], c->a[0], 1, 0.1f, 1e-5f);
}
static NnVar *f_bn_affine(Nn *nn, NnVar **in, const Case *c)
{
    /* inputs: x, weight, bias, running stats packed as [2,C] (mean row, var row) */
    int64_t C = in[0]->v.shape[1];
    Tensor rm = in[3]->v, rv = in[3]->v;
    rm.ndim = rv.ndim = 1;
    rm.shape[0] = rv.shape[0] = C;
    rv.data = (float *)rm.data + C;
    NnVar *vm = nn_input_borrow(nn, &rm, 0), *vv = nn_input_borrow(nn, &rv, 0), *y;
    /* a[1]: 1 with ReLU, 2 with ReLU6 (the fused ops; x's gradient alone is checked there: a
     * weight or bias moves a whole channel, some element across the kink); a[2]: x also feeds a
     * later op (f_act) */
    if (c->a[1] == 1) y = nn_batchnorm_relu(nn, in[0], in[1], in[2], vm, vv, c->a[0], 1, 0.1f, 1e-5f);
    else if (c->a[1] == 2) y = nn_batchnorm_relu6(nn, in[0], in[1], in[2], vm, vv, c->a[0], 1, 0.1f, 1e-5f);
    else y = nn_batchnorm(nn, in[0], in[1], in[2], vm, vv, c->a[0], 1, 0.1f, 1e-5f);
    return c->a[2] ? nn_add(nn, y, nn_scale(nn, in[0], 0.5f)) : y;
}
/* inputs: x, then weight and bias when a[1]; a[0] groups; a[2]: x also feeds a later op; a[3]:
 * with ReLU, the weight scaled by 0.1 and the bias (in [0.5, 1.5]) kept (1) or negated (2), so
 * that every normalized value (|xhat| < 4.5 for these groups) stays on one side of the kink: the
 * mask's plumbing is checked (all ones, all zeros) without a finite difference across it */
static NnVar *f_gn(Nn *nn, NnVar **in, const Case *c)
{
    NnVar *w = c->a[1] ? in[1] : NULL, *b = c->a[1] ? in[2] : NULL;
    if (!c->a[3]) {
        NnVar *y = nn_group_norm(nn, in[0], c->a[0], w, b, 1e-5f);
        return c->a[2] ? nn_add(nn, y, nn_scale(nn, in[0], 0.5f)) : y;
    }
    NnVar *ws = nn_scale(nn, w, 0.1f), *bs = c->a[3] == 2 ? nn_scale(nn, b, -1.0f) : b;
    NnVar *y = nn_group_norm_relu(nn, in[0], c->a[0], ws, bs, 1e-5f);
    return c->a[2] ? nn_add(nn, y, nn_scale(nn, in[0], 0.5f)) : y;
}
static NnVar *f_bn_stat(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    return nn_bn_stat_loss(nn, in[0], in[1], in[2]);
}
/* a[1]: x also feeds a later op, whose backward runs first: the activation's backward then adds
 * to x's gradient rather than writing it (the kernels' accumulating forms) */
static NnVar *f_act(Nn *nn, NnVar **in, const Case *c)
{
    NnVar *y;
    switch (c->a[0]) {
    case 0: y = nn_relu(nn, in[0]); break;
    case 1: y = nn_relu6(nn, in[0]); break;
    case 2: y = nn_silu(nn, in[0]); break;
    case 3: y = nn_sigmoid(nn, in[0]); break;
    default: y = nn_hardswish(nn, in[0]); break;
    }
    return c->a[1] ? nn_add(nn, y, nn_scale(nn, in[0], 0.5f)) : y;
}
static NnVar *f_maxpool(Nn *nn, NnVar **in, const Case *c)
{
    return nn_maxpool2d(nn, in[0], c->a[0], c->a[1], c->a[2]);
}
static NnVar *f_avgpool(Nn *nn, NnVar **in, const Case *c)
{
    return nn_avgpool2d(nn, in[0], c->a[0], c->a[1], c->a[2]);
}
static NnVar *f_adaptive(Nn *nn, NnVar **in, const Case *c)
{
    return nn_adaptive_avgpool2d(nn, in[0], c->a[0], c->a[1]);
}
static NnVar *f_linear(Nn *nn, NnVar **in, const Case *c)
{
    return nn_linear(nn, in[0], in[1], c->nin > 2 ? in[2] : NULL);
}
static NnVar *f_add(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    return nn_add(nn, in[0], in[1]);
}
static NnVar *f_mul(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    return nn_mul(nn, in[0], in[1]);
}
static NnVar *f_scale(Nn *nn, NnVar **in, const Case *c) { return nn_scale(nn, in[0], c->f[0]); }
static NnVar *f_normalize(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    static const float mean[3] = {0.4f, -0.2f, 0.1f}, std[3] = {0.5f, 2.0f, 0.25f};
    return nn_normalize(nn, in[0], mean, std);
}
static NnVar *f_concat(Nn *nn, NnVar **in, const Case *c) { return nn_concat(nn, 2, in, c->a[0]); }
static NnVar *f_shuffle(Nn *nn, NnVar **in, const Case *c)
{
    return nn_channel_shuffle(nn, in[0], c->a[0]);
}
/* narrow(dim a0, start a1, len a2); with a3 set, also the slice before it, the two concatenated in
 * reverse order, so both backward copies add into the one gradient of x */
static NnVar *f_narrow(Nn *nn, NnVar **in, const Case *c)
{
    NnVar *y = nn_narrow(nn, in[0], c->a[0], c->a[1], c->a[2]);
    if (!c->a[3]) return y;
    NnVar *parts[2] = {y, nn_narrow(nn, in[0], c->a[0], 0, c->a[1])};
    return nn_concat(nn, 2, parts, c->a[0]);
}
/* a0 set: x with itself, both halves of the backward adding into one gradient */
static NnVar *f_interleave(Nn *nn, NnVar **in, const Case *c)
{
    return nn_channel_interleave(nn, in[0], in[c->a[0] ? 0 : 1]);
}
static NnVar *f_flatten(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    return nn_flatten(nn, in[0]);
}
static NnVar *f_dropout(Nn *nn, NnVar **in, const Case *c)
{
    nn_set_rng(nn, 1234, 7);
    return nn_dropout(nn, in[0], c->f[0], 1);
}
static NnVar *f_resize(Nn *nn, NnVar **in, const Case *c)
{
    return nn_resize_bilinear(nn, in[0], c->a[0], c->a[1]);
}
static NnVar *f_crop(Nn *nn, NnVar **in, const Case *c)
{
    return nn_crop_resize(nn, in[0], c->a[0], c->a[1], c->a[2], c->a[3], c->a[4], c->a[5]);
}
static NnVar *f_roll(Nn *nn, NnVar **in, const Case *c) { return nn_roll(nn, in[0], c->a[0], c->a[1]); }
static NnVar *f_flip(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    return nn_flip_w(nn, in[0]);
}
static NnVar *f_ce(Nn *nn, NnVar **in, const Case *c)
{
    Tensor lab = tensor_newv(DD_I64, 1, in[0]->v.shape[0]);
    for (int64_t i = 0; i < in[0]->v.shape[0]; i++) ((int64_t *)lab.data)[i] = (i * 3 + 1) % in[0]->v.shape[1];
    NnVar *y = nn_cross_entropy(nn, in[0], &lab, c->f[0]);
    tensor_free(&lab);
    return y;
}
static NnVar *f_soft_ce(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    return nn_soft_cross_entropy(nn, in[0], in[1]);
}
static NnVar *f_kl(Nn *nn, NnVar **in, const Case *c) { return nn_kl_div(nn, in[0], in[1], c->f[0]); }
static NnVar *f_sum(Nn *nn, NnVar **in, const Case *c)
{
    return c->a[0] ? nn_mean(nn, in[0]) : nn_sum(nn, in[0]);
}
/* A small chain: conv -> bn(train) -> relu -> avgpool -> flatten -> linear -> CE, plus the BN
 * statistics loss, exercising accumulation through shared inputs. */
static NnVar *f_chain(Nn *nn, NnVar **in, const Case *c)
{
    (void)c;
    NnVar *h = nn_conv2d(nn, in[0], in[1], NULL, 1, 1, 1, 1);
    Tensor rm = tensor_newv(DD_F32, 1, (int64_t)4), rv = tensor_newv(DD_F32, 1, (int64_t)4);
    for (int i = 0; i < 4; i++) ((float *)rv.data)[i] = 1.0f + 0.1f * (float)i;
    NnVar *vm = nn_input(nn, &rm, 0), *vv = nn_input(nn, &rv, 0);
    tensor_free(&rm);
    tensor_free(&rv);
    nn_bn_collect(nn, 1);
    NnVar *b = nn_batchnorm(nn, h, NULL, NULL, vm, vv, 0, 0, 0.1f, 1e-5f);
    nn_bn_collect(nn, 0);
    NnVar *s = nn_add(nn, nn_relu(nn, b), in[0]);
    NnVar *p = nn_flatten(nn, nn_avgpool2d(nn, s, 2, 2, 0));
    NnVar *logits = nn_linear(nn, p, in[2], NULL);
    NnVar *ce = f_ce(nn, &logits, &(Case){.f = {0.0f}});
    return nn_add(nn, ce, nn_scale(nn, nn_bn_stat(nn, 0), 0.5f));
}

#define S4(...) {__VA_ARGS__}

/* Case i draws its inputs from seed 100 + i: new cases go at the end, so the inputs of existing
 * ones (chosen clear of ReLU kinks within the step h) stay what they were. */
static const Case cases[] = {
    {"conv s1 p1 bias", f_conv, 3, {4, 4, 1}, {S4(2, 4, 6, 7), S4(6, 4, 3, 3), S4(6)}, {1, 1, 1}, {0}, {1, 1, 1, 1}},
    {"conv s2 p1 nobias", f_conv, 2, {4, 4}, {S4(2, 4, 6, 7), S4(5, 4, 3, 3)}, {1, 1}, {0}, {2, 1, 1, 1}},
    {"conv dil2 p2 bias", f_conv, 3, {4, 4, 1}, {S4(2, 3, 7, 6), S4(4, 3, 3, 3), S4(4)}, {1, 1, 1}, {0}, {1, 2, 2, 1}},
    {"conv s2 p0 5x5 k2", f_conv, 2, {4, 4}, {S4(2, 3, 5, 5), S4(4, 3, 2, 2)}, {1, 1}, {0}, {2, 0, 1, 1}},
    {"conv groups2 bias", f_conv, 3, {4, 4, 1}, {S4(2, 4, 6, 5), S4(6, 2, 3, 3), S4(6)}, {1, 1, 1}, {0}, {1, 1, 1, 2}},
    {"conv depthwise s1", f_conv, 2, {4, 4}, {S4(2, 4, 6, 7), S4(4, 1, 3, 3)}, {1, 1}, {0}, {1, 1, 1, 4}},
    {"conv depthwise s2 bias", f_conv, 3, {4, 4, 1}, {S4(2, 3, 7, 6), S4(3, 1, 3, 3), S4(3)}, {1, 1, 1}, {0}, {2, 1, 1, 3}},
    {"conv depthwise dil2", f_conv, 2, {4, 4}, {S4(2, 3, 7, 6), S4(3, 1, 3, 3)}, {1, 1}, {0}, {1, 2, 2, 3}},
    /* widths past the 8-wide blocks of the depthwise plane kernels, odd tails, 5x5 taps */
    {"conv depthwise s1 wide", f_conv, 2, {4, 4}, {S4(2, 2, 5, 19), S4(2, 1, 3, 3)}, {1, 1}, {0}, {1, 1, 1, 2}},
    {"conv depthwise 5x5 s2 wide bias", f_conv, 3, {4, 4, 1}, {S4(1, 2, 6, 21), S4(2, 1, 5, 5), S4(2)}, {1, 1, 1}, {0}, {2, 2, 1, 2}},
    {"conv 1x1 bias", f_conv, 3, {4, 4, 1}, {S4(2, 4, 5, 5), S4(3, 4, 1, 1), S4(3)}, {1, 1, 1}, {0}, {1, 0, 1, 1}},
    {"conv 1x1 s2", f_conv, 2, {4, 4}, {S4(2, 4, 5, 5), S4(3, 4, 1, 1)}, {1, 1}, {0}, {2, 0, 1, 1}},
    {"bn train affine", f_bn_affine, 4, {4, 1, 1, 2}, {S4(2, 3, 5, 5), S4(3), S4(3), S4(2, 3)}, {1, 1, 1, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {1}},
    {"bn eval affine", f_bn_affine, 4, {4, 1, 1, 2}, {S4(2, 3, 5, 5), S4(3), S4(3), S4(2, 3)}, {1, 1, 1, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {0}},
    {"bn train affine, x shared", f_bn_affine, 4, {4, 1, 1, 2}, {S4(2, 3, 5, 5), S4(3), S4(3), S4(2, 3)}, {1, 1, 1, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {1, 0, 1}},
    {"bn train relu, x shared", f_bn_affine, 4, {4, 1, 1, 2}, {S4(2, 3, 5, 5), S4(3), S4(3), S4(2, 3)}, {1, 0, 0, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {1, 1, 1}},
    {"bn eval relu6, x shared", f_bn_affine, 4, {4, 1, 1, 2}, {S4(2, 3, 5, 5), S4(3), S4(3), S4(2, 3)}, {1, 0, 0, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {0, 2, 1}},
    {"bn train plain", f_bn, 3, {4, 1, 1}, {S4(2, 3, 4, 5), S4(3), S4(3)}, {1, 0, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {1}},
    {"bn eval plain", f_bn, 3, {4, 1, 1}, {S4(2, 3, 4, 5), S4(3), S4(3)}, {1, 0, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {0}},
    {"bn_stat_loss", f_bn_stat, 3, {4, 1, 1}, {S4(2, 3, 5, 5), S4(3), S4(3)}, {1, 0, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}},
    /* the small planes of the last stages: 2x2 (norm.c's half block alone), 3x3 (a block and a tail) */
    {"bn train affine 37x2x2", f_bn_affine, 4, {4, 1, 1, 2}, {S4(2, 37, 2, 2), S4(37), S4(37), S4(2, 37)}, {1, 1, 1, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {1}},
    {"bn eval affine 37x3x3", f_bn_affine, 4, {4, 1, 1, 2}, {S4(2, 37, 3, 3), S4(37), S4(37), S4(2, 37)}, {1, 1, 1, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {0}},
    {"bn_stat_loss 37x2x2", f_bn_stat, 3, {4, 1, 1}, {S4(2, 37, 2, 2), S4(37), S4(37)}, {1, 0, 0}, {GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}},
    /* group norm: instance norm (groups = C: one fused batchnorm pass on the [1, N*C, HW] view),
     * 2 groups of 3 (standardize, then affine), [N,C] input, one value per group; with ReLU */
    {"group_norm instance affine", f_gn, 3, {4, 1, 1}, {S4(2, 3, 4, 5), S4(3), S4(3)}, {1, 1, 1}, {0}, {3, 1}},
    {"group_norm 2 groups affine, x shared", f_gn, 3, {4, 1, 1}, {S4(2, 6, 3, 3), S4(6), S4(6)}, {1, 1, 1}, {0}, {2, 1, 1}},
    {"group_norm 1 group plain", f_gn, 1, {4}, {S4(3, 4, 2, 3)}, {1}, {0}, {1, 0}},
    {"group_norm [N,C] 2 groups", f_gn, 3, {2, 1, 1}, {S4(3, 8), S4(8), S4(8)}, {1, 1, 1}, {0}, {2, 1}},
    {"group_norm instance 1x1", f_gn, 3, {4, 1, 1}, {S4(2, 3, 1, 1), S4(3), S4(3)}, {1, 1, 1}, {0}, {3, 1}},
    {"group_norm instance plain, x shared", f_gn, 1, {4}, {S4(2, 4, 3, 5)}, {1}, {0}, {4, 0, 1}},
    {"group_norm_relu instance > 0, x shared", f_gn, 3, {4, 1, 1}, {S4(2, 3, 4, 5), S4(3), S4(3)}, {1, 1, 1}, {GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {3, 1, 1, 1}},
    {"group_norm_relu instance < 0", f_gn, 3, {4, 1, 1}, {S4(2, 3, 4, 5), S4(3), S4(3)}, {1, 1, 1}, {GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {3, 1, 0, 2}},
    {"group_norm_relu 2 groups > 0", f_gn, 3, {4, 1, 1}, {S4(2, 6, 3, 3), S4(6), S4(6)}, {1, 1, 1}, {GEN_UNIFORM, GEN_UNIFORM, GEN_POSITIVE}, {2, 1, 0, 1}},
    {"relu", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {0}},
    {"relu6", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {1}},
    {"silu", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {2}},
    {"sigmoid", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_UNIFORM}, {3}},
    {"hardswish", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {4}},
    {"relu, x shared", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {0, 1}},
    {"relu6, x shared", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {1, 1}},
    {"silu, x shared", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {2, 1}},
    {"sigmoid, x shared", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_UNIFORM}, {3, 1}},
    {"hardswish, x shared", f_act, 1, {4}, {S4(2, 3, 5, 5)}, {1}, {GEN_AWAY}, {4, 1}},
    {"maxpool k3 s2 p1", f_maxpool, 1, {4}, {S4(2, 3, 6, 7)}, {1}, {GEN_SPACED}, {3, 2, 1}},
    {"maxpool k2 s2", f_maxpool, 1, {4}, {S4(2, 3, 6, 7)}, {1}, {GEN_SPACED}, {2, 2, 0}},
    {"avgpool k3 s2 p1", f_avgpool, 1, {4}, {S4(2, 3, 6, 7)}, {1}, {0}, {3, 2, 1}},
    {"avgpool k2 s2", f_avgpool, 1, {4}, {S4(2, 3, 6, 7)}, {1}, {0}, {2, 2, 0}},
    {"adaptive 5x7->3x2", f_adaptive, 1, {4}, {S4(2, 3, 5, 7)}, {1}, {0}, {3, 2}},
    {"adaptive ->1x1", f_adaptive, 1, {4}, {S4(2, 3, 5, 7)}, {1}, {0}, {1, 1}},
    {"linear bias", f_linear, 3, {2, 2, 1}, {S4(3, 5), S4(4, 5), S4(4)}, {1, 1, 1}},
    {"linear nobias", f_linear, 2, {2, 2}, {S4(3, 5), S4(4, 5)}, {1, 1}},
    {"add same", f_add, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 3, 4, 5)}, {1, 1}},
    {"add [1,C,1,1]", f_add, 2, {4, 4}, {S4(2, 3, 4, 5), S4(1, 3, 1, 1)}, {1, 1}},
    {"add [N,C,1,1]", f_add, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 3, 1, 1)}, {1, 1}},
    {"add [W]", f_add, 2, {4, 1}, {S4(2, 3, 4, 5), S4(5)}, {1, 1}},
    {"add scalar", f_add, 2, {4, 0}, {S4(2, 3, 4, 5)}, {1, 1}},
    {"add [C] over [N,C]", f_add, 2, {2, 1}, {S4(4, 3), S4(3)}, {1, 1}},
    {"mul same", f_mul, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 3, 4, 5)}, {1, 1}},
    {"mul [N,C,1,1]", f_mul, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 3, 1, 1)}, {1, 1}},
    {"mul [1,C,1,1]", f_mul, 2, {4, 4}, {S4(2, 3, 4, 5), S4(1, 3, 1, 1)}, {1, 1}},
    {"mul scalar", f_mul, 2, {4, 1}, {S4(2, 3, 4, 5), S4(1)}, {1, 1}},
    {"scale", f_scale, 1, {4}, {S4(2, 3, 4, 5)}, {1}, {0}, {0}, {-1.5f}},
    {"normalize", f_normalize, 1, {4}, {S4(2, 3, 4, 5)}, {1}},
    {"concat dim1", f_concat, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 2, 4, 5)}, {1, 1}, {0}, {1}},
    {"concat dim0", f_concat, 2, {4, 4}, {S4(2, 3, 4, 5), S4(1, 3, 4, 5)}, {1, 1}, {0}, {0}},
    {"channel_shuffle", f_shuffle, 1, {4}, {S4(2, 6, 3, 4)}, {1}, {0}, {3}},
    {"narrow dim1", f_narrow, 1, {4}, {S4(2, 5, 3, 4)}, {1}, {0}, {1, 2, 3, 0}},
    {"narrow dim3", f_narrow, 1, {4}, {S4(2, 3, 4, 5)}, {1}, {0}, {3, 1, 2, 0}},
    {"narrow dim0", f_narrow, 1, {4}, {S4(3, 2, 3, 4)}, {1}, {0}, {0, 1, 1, 0}},
    {"narrow halves", f_narrow, 1, {4}, {S4(2, 6, 3, 4)}, {1}, {0}, {1, 3, 3, 1}},
    {"channel_interleave", f_interleave, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 3, 4, 5)}, {1, 1}},
    {"channel_interleave x x", f_interleave, 1, {4}, {S4(2, 3, 4, 5)}, {1}, {0}, {1}},
    {"flatten", f_flatten, 1, {4}, {S4(2, 3, 4, 5)}, {1}},
    {"dropout", f_dropout, 1, {4}, {S4(2, 3, 4, 5)}, {1}, {0}, {0}, {0.3f}},
    {"resize up 5x6->8x9", f_resize, 1, {4}, {S4(2, 3, 5, 6)}, {1}, {0}, {8, 9}},
    {"resize down 7x6->3x4", f_resize, 1, {4}, {S4(2, 3, 7, 6)}, {1}, {0}, {3, 4}},
    {"crop_resize up", f_crop, 1, {4}, {S4(2, 3, 7, 8)}, {1}, {0}, {1, 2, 4, 5, 9, 7}},
    {"crop_resize down", f_crop, 1, {4}, {S4(2, 3, 7, 8)}, {1}, {0}, {1, 0, 6, 7, 4, 3}},
    {"roll", f_roll, 1, {4}, {S4(2, 3, 4, 5)}, {1}, {0}, {1, -2}},
    {"flip_w", f_flip, 1, {4}, {S4(2, 3, 4, 5)}, {1}},
    {"cross_entropy", f_ce, 1, {2}, {S4(4, 5)}, {1}, {0}, {0}, {0.0f}},
    {"cross_entropy smooth", f_ce, 1, {2}, {S4(4, 5)}, {1}, {0}, {0}, {0.1f}},
    {"soft_cross_entropy", f_soft_ce, 2, {2, 2}, {S4(4, 5), S4(4, 5)}, {1, 0}, {GEN_UNIFORM, GEN_POSITIVE}},
    {"kl_div T=2", f_kl, 2, {2, 2}, {S4(4, 5), S4(4, 5)}, {1, 0}, {0}, {0}, {2.0f}},
    {"sum", f_sum, 1, {4}, {S4(2, 3, 4, 5)}, {1}, {0}, {0}},
    {"mean", f_sum, 1, {4}, {S4(2, 3, 4, 5)}, {1}, {0}, {1}},
    {"chain", f_chain, 3, {4, 4, 1}, {S4(2, 4, 4, 4), S4(4, 4, 3, 3)}, {1, 1, 1}},
    /* stride-1 'same' convolutions of large planes: the direct kernel (conv_direct.c) on AVX2,
     * Winograd's with DD_CPU_CONV=winograd (3x3), and with DD_CPU_CONV=gemm (the last pass of
     * main) conv_flat.c's shifted GEMMs: two images
     * side by side in one flat row; a grouped 5x5 with dilation 1 and pad 2 is flat either way */
    {"conv flat 3x3 p1 bias", f_conv, 3, {4, 4, 1}, {S4(2, 3, 12, 13), S4(4, 3, 3, 3), S4(4)}, {1, 1, 1}, {0}, {1, 1, 1, 1}},
    {"conv flat 5x5 p2 groups2", f_conv, 2, {4, 4}, {S4(1, 4, 24, 25), S4(4, 2, 5, 5)}, {1, 1}, {0}, {1, 2, 1, 2}},
    /* EfficientNet's stochastic depth: the residual branch times a per-image factor */
    {"mul [N,1,1,1]", f_mul, 2, {4, 4}, {S4(2, 3, 4, 5), S4(2, 1, 1, 1)}, {1, 1}},
};

static void run_cases(void)
{
    const char *path = getenv("DD_CPU_CONV");
    fprintf(stderr, "cases with the %s convolutions\n", path ? path : "default");
    Nn *nn = nn_new(DD_CPU, 2);
    CHECK(nn != NULL);
    int ncase = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < ncase; i++) {
        Case c = cases[i];
        if (c.fn == f_chain) { /* linear weight [3, 4*2*2] */
            c.ndim[2] = 2;
            c.shape[2][0] = 5;
            c.shape[2][1] = 16;
        }
        check_case(nn, &c, 100 + (uint64_t)i);
    }
    nn_free(nn);
}

int main(void)
{
    /* every case three times: the CPU backend's default kernels; Winograd for every 3x3 'same'
     * convolution (the default takes it only with many channels); its GEMM convolutions (im2col
     * and conv_flat.c instead of the direct kernel: what CPUs without AVX2 run) */
    unsetenv("DD_CPU_CONV");
    run_cases();
    setenv("DD_CPU_CONV", "winograd", 1);
    run_cases();
    setenv("DD_CPU_CONV", "gemm", 1);
    run_cases();
    /* and with every op output and input given to nn_done before the backward (DD_NN_DONE_ALL):
     * each value is released unless the op's nn_keep says its backward reads it, and a released
     * var reads as NULL, so an op that reads a value it did not keep crashes or (an optional
     * argument) computes without it: a wrong gradient here */
    unsetenv("DD_CPU_CONV");
    setenv("DD_NN_DONE_ALL", "1", 1);
    fprintf(stderr, "values released before the backward (DD_NN_DONE_ALL): ");
    run_cases();
    unsetenv("DD_NN_DONE_ALL");
    return check_done("test_nn_grad");
}

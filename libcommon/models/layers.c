/* layers.c - params in state_dict order with PyTorch's initialisations, and the cursor-driven
 * forward helpers (see layers.h). */
#include "libcommon/models/layers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dd_rng stream of weight initialisation; the counter index is the param's position, so a
 * param's initial values depend only on (seed, arch, position). */
#define MODEL_RNG_STREAM 0x6d6f64656c696e69ull

static const float FMNIST_MEAN = 0.2860f, FMNIST_STD = 0.3530f;
static const float IMAGENET_MEAN[3] = {0.485f, 0.456f, 0.406f};
static const float IMAGENET_STD[3] = {0.229f, 0.224f, 0.225f};

Model *model_alloc(Nn *nn, int in_channels, int num_classes, int input_size, uint64_t seed)
{
    Model *m = dd_calloc(1, sizeof *m);
    m->nn = nn;
    m->in_channels = in_channels;
    m->num_classes = num_classes;
    m->input_size = input_size;
    m->seed = seed;
    m->min_input = 1;
    m->bn_momentum = 0.1f;
    m->max_values = -1;
    m->mean = dd_malloc((size_t)in_channels * sizeof(float));
    m->std = dd_malloc((size_t)in_channels * sizeof(float));
    model_default_norm(in_channels, m->mean, m->std);
    return m;
}

void model_default_norm(int in_channels, float *mean, float *std)
{
    for (int c = 0; c < in_channels; c++) {
        mean[c] = in_channels == 1 ? FMNIST_MEAN : in_channels == 3 ? IMAGENET_MEAN[c] : 0.5f;
        std[c] = in_channels == 1 ? FMNIST_STD : in_channels == 3 ? IMAGENET_STD[c] : 0.5f;
    }
}

static NnParam *add_param(Model *m, const char *prefix, const char *leaf, NnRole role, int ndim,
                          const int64_t *shape, int decay)
{
    char name[sizeof ((NnParam *)0)->name];
    int len = snprintf(name, sizeof name, "%s%s", prefix, leaf);
    if (len < 0 || (size_t)len >= sizeof name) dd_die(1, "model: param name too long: %s%s", prefix, leaf);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n = shape[i] > 0 && n > INT64_MAX / shape[i] ? INT64_MAX : n * shape[i];
    m->nvalues = n > INT64_MAX - m->nvalues ? INT64_MAX : m->nvalues + n;
    const int64_t one = 1; /* past the cap: a 1-value placeholder */
    int capped = m->max_values >= 0 && m->nvalues > m->max_values;
    NnParam *p = nn_param_new(m->nn, name, role, capped ? 1 : ndim, capped ? &one : shape);
    p->decay = decay;
    p->var.requires_grad = role == NN_PARAM;
    m->params = dd_realloc(m->params, (size_t)(m->nparams + 1) * sizeof *m->params);
    m->params[m->nparams++] = p;
    return p;
}

/* Fills p with U(-bound, bound) or N(0, std) (normal = 1) from the param's own counter. */
static void init_param(Model *m, NnParam *p, int normal, double a)
{
    int64_t n = tensor_numel(&p->var.v);
    float *h = dd_malloc((size_t)n * sizeof(float));
    DdRng r;
    dd_rng_init(&r, m->seed, MODEL_RNG_STREAM, (uint64_t)(m->nparams - 1));
    for (int64_t i = 0; i < n; i++)
        h[i] = (float)(normal ? a * dd_rng_normal(&r) : dd_rng_uniform_range(&r, -a, a));
    nn_var_upload(m->nn, &p->var, h);
    free(h);
}

static void fill_param(Model *m, NnParam *p, float v)
{
    int64_t n = tensor_numel(&p->var.v);
    float *h = dd_malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = v;
    nn_var_upload(m->nn, &p->var, h);
    free(h);
}

void model_add_conv(Model *m, const char *prefix, int cout, int cin, int k, int bias, ModelInit init)
{
    int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    double fan_in = (double)cin * k * k, fan_out = (double)cout * k * k;
    NnParam *w = add_param(m, prefix, "weight", NN_PARAM, 4, ws, 1);
    if (init == INIT_KAIMING_OUT) init_param(m, w, 1, sqrt(2.0 / fan_out));
    else if (init == INIT_KAIMING_IN) init_param(m, w, 1, sqrt(2.0 / fan_in));
    else init_param(m, w, 0, 1.0 / sqrt(fan_in));
    if (!bias) return;
    NnParam *b = add_param(m, prefix, "bias", NN_PARAM, 1, bs, 0);
    if (init == INIT_TORCH_DEFAULT) init_param(m, b, 0, 1.0 / sqrt(fan_in)); /* Kaiming inits: bias 0 */
}

void model_add_conv_bn(Model *m, const char *prefix, int cout, int cin, int k, int groups, ModelInit init)
{
    char p[sizeof ((NnParam *)0)->name];
    snprintf(p, sizeof p, "%s0.", prefix);
    model_add_conv(m, p, cout, cin / groups, k, 0, init);
    snprintf(p, sizeof p, "%s1.", prefix);
    model_add_bn(m, p, cout);
}

void model_add_bn(Model *m, const char *prefix, int c)
{
    int64_t s[1] = {c};
    fill_param(m, add_param(m, prefix, "weight", NN_PARAM, 1, s, 0), 1.0f);
    add_param(m, prefix, "bias", NN_PARAM, 1, s, 0);
    add_param(m, prefix, "running_mean", NN_BUFFER, 1, s, 0);
    fill_param(m, add_param(m, prefix, "running_var", NN_BUFFER, 1, s, 0), 1.0f);
}

void model_add_conv_bn_pair(Model *m, const char *prefix, int i, int cout, int cin, int k)
{
    char p[96];
    snprintf(p, sizeof p, "%sconv%d.", prefix, i);
    model_add_conv(m, p, cout, cin, k, 0, INIT_TORCH_DEFAULT);
    snprintf(p, sizeof p, "%sbn%d.", prefix, i);
    model_add_bn(m, p, cout);
}

void model_add_layer_norm(Model *m, const char *prefix, int c, int side)
{
    int64_t s[3] = {c, side, side};
    fill_param(m, add_param(m, prefix, "weight", NN_PARAM, 3, s, 1), 1.0f);
    add_param(m, prefix, "bias", NN_PARAM, 3, s, 0);
}

void model_add_norm_affine(Model *m, const char *prefix, int c)
{
    int64_t s[1] = {c};
    fill_param(m, add_param(m, prefix, "weight", NN_PARAM, 1, s, 0), 1.0f);
    add_param(m, prefix, "bias", NN_PARAM, 1, s, 0);
}

void model_add_linear_init(Model *m, const char *prefix, int out, int in, ModelLinearInit init)
{
    int64_t ws[2] = {out, in}, bs[1] = {out};
    NnParam *w = add_param(m, prefix, "weight", NN_PARAM, 2, ws, 1);
    if (init == LINEAR_NORMAL_001) init_param(m, w, 1, 0.01);
    else if (init == LINEAR_UNIFORM_OUT) init_param(m, w, 0, 1.0 / sqrt((double)out));
    else init_param(m, w, 0, 1.0 / sqrt((double)in));
    NnParam *b = add_param(m, prefix, "bias", NN_PARAM, 1, bs, 0);
    if (init == LINEAR_TORCH_DEFAULT) init_param(m, b, 0, 1.0 / sqrt((double)in));
}

void model_add_linear(Model *m, const char *prefix, int out, int in)
{
    model_add_linear_init(m, prefix, out, in, LINEAR_TORCH_DEFAULT);
}

/* The cursor's current param, not consumed. */
static NnVar *peek(const ModelCursor *c)
{
    if (c->i >= c->m->nparams) dd_die(1, "model %s: forward asks for more params than it has", c->m->arch);
    return &c->m->params[c->i]->var;
}

static NnVar *next(ModelCursor *c)
{
    NnVar *v = peek(c);
    c->i++;
    return v;
}

NnVar *layer_conv(Nn *nn, ModelCursor *c, NnVar *x, int stride, int pad, int bias)
{
    NnVar *w = next(c);
    NnVar *b = bias ? next(c) : NULL;
    return nn_conv2d(nn, x, w, b, stride, pad, 1, 1);
}

NnVar *layer_conv_groups(Nn *nn, ModelCursor *c, NnVar *x, int stride, int pad, int groups, int bias)
{
    NnVar *w = next(c);
    NnVar *b = bias ? next(c) : NULL;
    return nn_conv2d(nn, x, w, b, stride, pad, 1, groups);
}

LayerBn layer_bn_take(ModelCursor *c)
{
    LayerBn bn;
    bn.w = next(c), bn.b = next(c), bn.rm = next(c), bn.rv = next(c);
    bn.momentum = c->m->bn_momentum;
    return bn;
}

NnVar *layer_bn_add_relu(Nn *nn, const LayerBn *bn, NnVar *x, NnVar *r, int stat_slot,
                         int training)
{
    return nn_batchnorm_add_relu(nn, x, bn->w, bn->b, bn->rm, bn->rv, training, 1, bn->momentum, 1e-5f, r,
                                 stat_slot);
}

/* The BN params at the cursor, applied by bn (nn_batchnorm or one fused with its activation). */
typedef NnVar *(*BnOp)(Nn *, NnVar *, NnVar *, NnVar *, NnVar *, NnVar *, int, int, float, float);
static NnVar *bn_layer(Nn *nn, ModelCursor *c, NnVar *x, int training, BnOp bn)
{
    LayerBn p = layer_bn_take(c);
    return bn(nn, x, p.w, p.b, p.rm, p.rv, training, 1, p.momentum, 1e-5f);
}

static NnVar *conv_bn_layer(Nn *nn, ModelCursor *c, NnVar *x, int stride, int groups, int training,
                            BnOp bn)
{
    int k = (int)peek(c)->v.shape[2];
    NnVar *t = layer_conv_groups(nn, c, x, stride, (k - 1) / 2, groups, 0);
    return nn_done_with(nn, bn_layer(nn, c, t, training, bn), t);
}

NnVar *layer_conv_bn(Nn *nn, ModelCursor *c, NnVar *x, int stride, int groups, int training)
{
    return conv_bn_layer(nn, c, x, stride, groups, training, nn_batchnorm);
}

NnVar *layer_conv_bn_relu6(Nn *nn, ModelCursor *c, NnVar *x, int stride, int groups, int training)
{
    return conv_bn_layer(nn, c, x, stride, groups, training, nn_batchnorm_relu6);
}

NnVar *layer_bn(Nn *nn, ModelCursor *c, NnVar *x, int training)
{
    return bn_layer(nn, c, x, training, nn_batchnorm);
}

NnVar *layer_bn_relu(Nn *nn, ModelCursor *c, NnVar *x, int training)
{
    return bn_layer(nn, c, x, training, nn_batchnorm_relu);
}

NnVar *layer_layer_norm(Nn *nn, ModelCursor *c, NnVar *x)
{
    NnVar *w = next(c), *b = next(c);
    NnVar *t = nn_group_norm(nn, x, 1, NULL, NULL, 1e-5f);
    NnVar *y = nn_done_with(nn, nn_mul(nn, t, w), t);
    return nn_done_with(nn, nn_add(nn, y, b), y);
}

NnVar *layer_group_norm_relu(Nn *nn, ModelCursor *c, NnVar *x, int groups)
{
    NnVar *w = next(c), *b = next(c);
    return nn_group_norm_relu(nn, x, groups, w, b, 1e-5f);
}

NnVar *layer_linear(Nn *nn, ModelCursor *c, NnVar *x)
{
    NnVar *w = next(c), *b = next(c);
    return nn_linear(nn, x, w, b);
}

NnVar *layer_pool_linear_head(Nn *nn, ModelCursor *c, NnVar *x, float dropout, int training)
{
    x = nn_done_with(nn, nn_adaptive_avgpool2d(nn, x, 1, 1), x);
    x = nn_done_with(nn, nn_flatten(nn, x), x);
    if (dropout > 0.0f && training) x = nn_done_with(nn, nn_dropout(nn, x, dropout, training), x);
    x = nn_done_with(nn, layer_linear(nn, c, x), x);
    cursor_end(c);
    return x;
}

void cursor_end(const ModelCursor *c)
{
    if (c->i != c->m->nparams)
        dd_die(1, "model %s: forward used %d of %d params", c->m->arch, c->i, c->m->nparams);
}

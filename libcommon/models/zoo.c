/* zoo.c - the table of architecture names, model creation and the Model helpers shared by every
 * architecture (normalization, freezing, counting, input checks, forward). */
#include "libcommon/models/layers.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int blocks[4];
    int bottleneck;
} ResnetSpec;

static const ResnetSpec RESNETS[] = {
    {"resnet18", {2, 2, 2, 2}, 0},
    {"resnet34", {3, 4, 6, 3}, 0},
    {"resnet50", {3, 4, 6, 3}, 1},
    {"resnet101", {3, 4, 23, 3}, 1},
};

enum { CONVNET_WIDTH = 128, CONVNET_DEPTH = 3 };

/* A parsed zoo name: "base[m][:opt=val,...]". */
typedef struct {
    const ResnetSpec *resnet;  /* NULL: convnet */
    int depth, width;
    ModelStem stem;
} ZooSpec;

static int parse_int(const char *s, size_t n, int lo, int hi, int *out)
{
    if (n == 0 || n > 6) return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_options(const char *name, const char *opts, ZooSpec *z)
{
    while (opts && *opts) {
        const char *end = strchr(opts, ',');
        size_t n = end ? (size_t)(end - opts) : strlen(opts);
        if (n == 10 && !strncmp(opts, "stem=small", n) && z->resnet) z->stem = MODEL_STEM_SMALL;
        else if (n == 13 && !strncmp(opts, "stem=imagenet", n) && z->resnet) z->stem = MODEL_STEM_IMAGENET;
        else if (n > 6 && !strncmp(opts, "width=", 6) && !z->resnet
                 && parse_int(opts + 6, n - 6, 1, 65536, &z->width) == 0) {
        } else {
            return dd_err("model %s: unknown or invalid option '%.*s' (resnets: stem=small|imagenet; "
                          "convnets: width=N)", name, (int)n, opts);
        }
        opts = end ? end + 1 : NULL;
    }
    return 0;
}

static int zoo_parse(const char *name, ZooSpec *z)
{
    const char *colon = strchr(name, ':');
    size_t n = colon ? (size_t)(colon - name) : strlen(name);
    *z = (ZooSpec){NULL, CONVNET_DEPTH, CONVNET_WIDTH, MODEL_STEM_IMAGENET};
    if (n >= 7 && !strncmp(name, "convnet", 7)) {
        if (n > 7 && parse_int(name + 7, n - 7, 1, 16, &z->depth) < 0)
            return dd_err("model %s: convnet depth must be 1..16", name);
    } else {
        for (size_t i = 0; i < sizeof RESNETS / sizeof RESNETS[0]; i++) {
            size_t k = strlen(RESNETS[i].name);
            if (strncmp(name, RESNETS[i].name, k)) continue;
            if (n == k || (n == k + 1 && name[k] == 'm')) {
                z->resnet = &RESNETS[i];
                z->stem = n == k ? MODEL_STEM_IMAGENET : MODEL_STEM_SMALL;
            }
        }
        if (!z->resnet)
            return dd_err("model '%.*s': unknown architecture (known: convnet<D>, resnet18, resnet34, "
                          "resnet50, resnet101, with 'm' or :stem=small for the small stem)", (int)n, name);
    }
    return parse_options(name, colon ? colon + 1 : NULL, z);
}

Model *model_create(Nn *nn, const char *name, int in_channels, int num_classes, int input_size,
                    uint64_t seed)
{
    ZooSpec z;
    if (zoo_parse(name, &z) < 0) return NULL;
    if (in_channels < 1 || in_channels > 64 || num_classes < 1 || num_classes > 1000000 || input_size < 1
        || input_size > 65536) {
        dd_err("model %s: invalid shape: %d channels, %d classes, input %d", name, in_channels,
               num_classes, input_size);
        return NULL;
    }
    if (!z.resnet && input_size >> z.depth < 1) {
        dd_err("model %s: input %d is too small for %d pooling blocks", name, input_size, z.depth);
        return NULL;
    }
    Model *m = model_alloc(nn, in_channels, num_classes, input_size, seed);
    if (z.resnet) {
        snprintf(m->arch, sizeof m->arch, "%s%s", z.resnet->name, z.stem == MODEL_STEM_SMALL ? "m" : "");
        resnet_build(m, z.resnet->blocks, z.resnet->bottleneck, z.stem);
    } else {
        if (z.width == CONVNET_WIDTH) snprintf(m->arch, sizeof m->arch, "convnet%d", z.depth);
        else snprintf(m->arch, sizeof m->arch, "convnet%d:width=%d", z.depth, z.width);
        convnet_build(m, z.depth, z.width);
    }
    return m;
}

void model_free(Model *m)
{
    if (!m) return;
    for (int i = 0; i < m->nparams; i++) nn_param_free(m->nn, m->params[i]);
    for (int i = 0; i < m->nclass_names; i++) free(m->class_names[i]);
    free(m->class_names);
    free(m->params);
    free(m->mean);
    free(m->std);
    free(m);
}

int model_set_norm(Model *m, const float *mean, const float *std)
{
    for (int c = 0; c < m->in_channels; c++)
        if (!(std[c] > 0.0f) || !(mean[c] == mean[c]))
            return dd_err("model %s: invalid normalization for channel %d: mean %g std %g", m->arch, c,
                          (double)mean[c], (double)std[c]);
    memcpy(m->mean, mean, (size_t)m->in_channels * sizeof(float));
    memcpy(m->std, std, (size_t)m->in_channels * sizeof(float));
    return 0;
}

void model_set_requires_grad(Model *m, int on)
{
    for (int i = 0; i < m->nparams; i++)
        m->params[i]->var.requires_grad = on && m->params[i]->var.role == NN_PARAM;
}

int64_t model_param_count(const Model *m)
{
    int64_t n = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i]->var.role == NN_PARAM) n += tensor_numel(&m->params[i]->var.v);
    return n;
}

NnParam *model_find(const Model *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i]->name, name)) return m->params[i];
    return NULL;
}

int model_check_input(const Model *m, int64_t c, int64_t h, int64_t w)
{
    int ok = c == m->in_channels && h >= 1 && w >= 1;
    if (ok && m->depth > 0) { /* convnet: the head's in_features fix the final spatial size */
        int64_t want = m->input_size >> m->depth;
        ok = (h >> m->depth) == want && (w >> m->depth) == want;
    }
    if (!ok)
        return dd_err("model %s takes %dx%dx%d images, got %lldx%lldx%lld", m->arch, m->in_channels,
                      m->input_size, m->input_size, (long long)c, (long long)h, (long long)w);
    return 0;
}

NnVar *model_forward(Model *m, Nn *nn, NnVar *x, int training)
{
    const Tensor *t = &x->v;
    if (t->ndim != 4 || model_check_input(m, t->shape[1], t->shape[2], t->shape[3]) < 0)
        dd_die(1, "model_forward: %s", t->ndim == 4 ? dd_errmsg() : "input must be NCHW");
    return m->net(m, nn, nn_normalize(nn, x, m->mean, m->std), training);
}

/* zoo.c - the table of architecture names, model creation and the Model helpers shared by every
 * architecture (normalization, freezing, counting, input checks, forward). */
#include "libcommon/models/layers.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    FAMILY_RESNET,
    FAMILY_MOBILENET_V2,
    FAMILY_SHUFFLENET_V2,
    FAMILY_DENSENET,
    FAMILY_EFFICIENTNET_B0,
    FAMILY_VGG11_BN,
    FAMILY_VGG11,
    FAMILY_ALEXNET,
    FAMILY_MOBILENET_V2_CIFAR,
    FAMILY_DENSENET_CIFAR,
    FAMILY_SHUFFLENET_G2_CIFAR,
    FAMILY_EFFICIENTNET_B0_CIFAR
} ZooFamily;

/* A named torchvision architecture, or one of FADRM's own small-image nets ("_cifar"). */
typedef struct {
    const char *name;
    ZooFamily family;
    int cfg[5];           /* resnets, densenets: blocks per stage (_cifar: then the growth rate); shufflenets: stage
                           * channels */
    int bottleneck;       /* resnets */
    int width_per_group;  /* resnets */
    int small;            /* 1: has the small stem ("m" suffix, stem=small) */
    float dropout;        /* torchvision's classifier dropout; < 0: the net has none */
} ZooArch;

static const ZooArch ZOO[] = {
    {"resnet18", FAMILY_RESNET, {2, 2, 2, 2}, 0, 64, 1, -1},
    {"resnet34", FAMILY_RESNET, {3, 4, 6, 3}, 0, 64, 1, -1},
    {"resnet50", FAMILY_RESNET, {3, 4, 6, 3}, 1, 64, 1, -1},
    {"resnet101", FAMILY_RESNET, {3, 4, 23, 3}, 1, 64, 1, -1},
    {"wide_resnet50_2", FAMILY_RESNET, {3, 4, 6, 3}, 1, 128, 1, -1},
    {"mobilenet_v2", FAMILY_MOBILENET_V2, {0}, 0, 0, 1, 0.2f},
    {"shufflenet_v2_x0_5", FAMILY_SHUFFLENET_V2, {24, 48, 96, 192, 1024}, 0, 0, 1, -1},
    {"shufflenet_v2_x1_0", FAMILY_SHUFFLENET_V2, {24, 116, 232, 464, 1024}, 0, 0, 1, -1},
    {"densenet121", FAMILY_DENSENET, {6, 12, 24, 16}, 0, 0, 1, -1},
    {"densenet169", FAMILY_DENSENET, {6, 12, 32, 32}, 0, 0, 1, -1},
    {"densenet201", FAMILY_DENSENET, {6, 12, 48, 32}, 0, 0, 1, -1},
    {"efficientnet_b0", FAMILY_EFFICIENTNET_B0, {0}, 0, 0, 1, 0.2f},
    {"vgg11_bn", FAMILY_VGG11_BN, {0}, 0, 0, 0, 0.5f},
    {"vgg11", FAMILY_VGG11, {0}, 0, 0, 0, 0.5f},
    {"alexnet", FAMILY_ALEXNET, {0}, 0, 0, 0, 0.5f},
    /* FADRM's models/mobilenetv2.py and models/densenet.py (DenseNet121 ... DenseNet161) */
    {"mobilenet_v2_cifar", FAMILY_MOBILENET_V2_CIFAR, {0}, 0, 0, 0, -1},
    {"densenet121_cifar", FAMILY_DENSENET_CIFAR, {6, 12, 24, 16, 32}, 0, 0, 0, -1},
    {"densenet169_cifar", FAMILY_DENSENET_CIFAR, {6, 12, 32, 32, 32}, 0, 0, 0, -1},
    {"densenet201_cifar", FAMILY_DENSENET_CIFAR, {6, 12, 48, 32, 32}, 0, 0, 0, -1},
    {"densenet161_cifar", FAMILY_DENSENET_CIFAR, {6, 12, 36, 24, 48}, 0, 0, 0, -1},
    {"densenet_cifar", FAMILY_DENSENET_CIFAR, {6, 12, 24, 16, 12}, 0, 0, 0, -1},   /* growth 12 */
    /* UFC's (INFER's) own: models/shufflenet.py's ShuffleNetG2, models/efficientnet.py's B0 */
    {"shufflenet_g2_cifar", FAMILY_SHUFFLENET_G2_CIFAR, {0}, 0, 0, 0, -1},
    {"efficientnet_b0_cifar", FAMILY_EFFICIENTNET_B0_CIFAR, {0}, 0, 0, 0, 0.2f},
};
enum { NZOO = sizeof ZOO / sizeof ZOO[0] };

enum { CONVNET_WIDTH = 128, CONVNET_DEPTH = 3 };
static const char *const NORM_NAMES[] = {"batch", "instance", "group", "none", "layer"}; /* by ModelNorm */
static const float STOCHASTIC_DEPTH = 0.2f;  /* torchvision's EfficientNet stochastic_depth_prob */

/* A parsed zoo name: "base[m][:opt=val,...]". */
typedef struct {
    const ZooArch *arch;  /* NULL: convnet */
    int depth, width, pad;
    ModelNorm norm;
    ModelStem stem;
    float dropout, stochastic_depth;
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

/* A probability in [0, 1) from the n characters at s. */
static int parse_prob(const char *s, size_t n, float *out)
{
    char buf[32], *end;
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    double v = strtod(buf, &end);
    if (*end || !(v >= 0.0 && v < 1.0)) return -1;
    *out = (float)v;
    return 0;
}

/* 1 when the n characters at opts are "key=" followed by a value; *val points at the value. */
static int is_opt(const char *opts, size_t n, const char *key, const char **val)
{
    size_t k = strlen(key);
    if (n <= k + 1 || strncmp(opts, key, k) || opts[k] != '=') return 0;
    *val = opts + k + 1;
    return 1;
}

static int parse_options(const char *name, const char *opts, ZooSpec *z)
{
    const ZooArch *a = z->arch;
    unsigned seen = 0; /* the options given so far, one bit each: a second one is an error */
    while (opts && *opts) {
        const char *end = strchr(opts, ','), *v;
        size_t n = end ? (size_t)(end - opts) : strlen(opts);
        int ok = 0;
        unsigned bit = 0;
        if (is_opt(opts, n, "stem", &v) && a && a->small) {
            bit = 1;
            size_t vn = n - (size_t)(v - opts);
            ok = (vn == 5 && !strncmp(v, "small", 5)) || (vn == 8 && !strncmp(v, "imagenet", 8));
            z->stem = vn == 5 ? MODEL_STEM_SMALL : MODEL_STEM_IMAGENET;
        } else if (is_opt(opts, n, "width", &v) && !a) {
            bit = 2;
            ok = parse_int(v, n - (size_t)(v - opts), 1, 65536, &z->width) == 0;
        } else if (is_opt(opts, n, "pad", &v) && !a) {
            bit = 4;
            ok = parse_int(v, n - (size_t)(v - opts), 1, 3, &z->pad) == 0;
        } else if (is_opt(opts, n, "norm", &v) && !a) {
            bit = 8;
            size_t vn = n - (size_t)(v - opts);
            for (int k = 0; k < 5 && !ok; k++)
                if (vn == strlen(NORM_NAMES[k]) && !strncmp(v, NORM_NAMES[k], vn)) {
                    z->norm = (ModelNorm)k;
                    ok = 1;
                }
        } else if (is_opt(opts, n, "dropout", &v) && a && a->dropout >= 0) {
            bit = 16;
            ok = parse_prob(v, n - (size_t)(v - opts), &z->dropout) == 0;
        } else if (is_opt(opts, n, "stochastic_depth", &v) && a && a->family == FAMILY_EFFICIENTNET_B0) {
            bit = 32;
            ok = parse_prob(v, n - (size_t)(v - opts), &z->stochastic_depth) == 0;
        }
        if (!ok)
            return dd_err("model %s: unknown or invalid option '%.*s' (stem=small|imagenet where a small "
                          "variant exists; convnets: width=N, pad=1..3, norm=batch|instance|group|none|layer; "
                          "dropout=P where the net has dropout; "
                          "efficientnet_b0: stochastic_depth=P)", name, (int)n, opts);
        if (seen & bit)
            return dd_err("model %s: option '%.*s' given twice", name, (int)(v - opts - 1), opts);
        seen |= bit;
        opts = end ? end + 1 : NULL;
    }
    return 0;
}

static int zoo_parse(const char *name, ZooSpec *z)
{
    const char *colon = strchr(name, ':');
    size_t n = colon ? (size_t)(colon - name) : strlen(name);
    *z = (ZooSpec){NULL, CONVNET_DEPTH, CONVNET_WIDTH, 1, MODEL_NORM_BATCH, MODEL_STEM_IMAGENET, 0.0f,
                   STOCHASTIC_DEPTH};
    if (n >= 7 && !strncmp(name, "convnet", 7)) {
        if (n > 7 && parse_int(name + 7, n - 7, 1, 16, &z->depth) < 0)
            return dd_err("model %s: convnet depth must be 1..16", name);
    } else {
        for (int i = 0; i < NZOO && !z->arch; i++) {
            size_t k = strlen(ZOO[i].name);
            if (strncmp(name, ZOO[i].name, k)) continue;
            if (n == k || (n == k + 1 && name[k] == 'm' && ZOO[i].small)) {
                z->arch = &ZOO[i];
                z->stem = n == k ? MODEL_STEM_IMAGENET : MODEL_STEM_SMALL;
                z->dropout = ZOO[i].dropout;
            }
        }
        if (!z->arch)
            return dd_err("model '%.*s': unknown architecture (known: convnet<D>, resnet18, resnet34, resnet50, "
                          "resnet101, wide_resnet50_2, mobilenet_v2, shufflenet_v2_x0_5, shufflenet_v2_x1_0, "
                          "densenet121, densenet169, densenet201, efficientnet_b0, vgg11_bn, vgg11, alexnet; 'm' or "
                          ":stem=small for the small stem, except the vggs and alexnet; FADRM's mobilenet_v2_cifar, "
                          "densenet121_cifar, densenet169_cifar, densenet201_cifar, densenet161_cifar, densenet_cifar; UFC's "
                          "shufflenet_g2_cifar, efficientnet_b0_cifar)", (int)n, name);
    }
    if (parse_options(name, colon ? colon + 1 : NULL, z) < 0) return -1;
    if (!z->arch && z->norm == MODEL_NORM_GROUP && z->width % 4)
        return dd_err("model %s: norm=group is GroupNorm(4, C): the width must be a multiple of 4", name);
    return 0;
}

/* The canonical name: the base, "m" for the small stem, then the non-default options. */
static void canonical_name(const ZooSpec *z, char *out, size_t size)
{
    const ZooArch *a = z->arch;
    int n = snprintf(out, size, "%s%s", a->name, z->stem == MODEL_STEM_SMALL ? "m" : "");
    char sep = ':';
    if (a->dropout >= 0 && z->dropout != a->dropout) {
        n += snprintf(out + n, size - (size_t)n, "%cdropout=%g", sep, (double)z->dropout);
        sep = ',';
    }
    if (a->family == FAMILY_EFFICIENTNET_B0 && z->stochastic_depth != STOCHASTIC_DEPTH)
        snprintf(out + n, size - (size_t)n, "%cstochastic_depth=%g", sep, (double)z->stochastic_depth);
}

static void zoo_build(Model *m, const ZooSpec *z)
{
    const ZooArch *a = z->arch;
    m->dropout = a->dropout >= 0 ? z->dropout : 0.0f;
    m->stochastic_depth = a->family == FAMILY_EFFICIENTNET_B0 ? z->stochastic_depth : 0.0f;
    switch (a->family) {
    case FAMILY_RESNET: resnet_build(m, a->cfg, a->bottleneck, a->width_per_group, z->stem); break;
    case FAMILY_MOBILENET_V2: mobilenet_v2_build(m, z->stem); break;
    case FAMILY_SHUFFLENET_V2: shufflenet_v2_build(m, a->cfg, z->stem); break;
    case FAMILY_DENSENET: densenet_build(m, a->cfg, z->stem); break;
    case FAMILY_EFFICIENTNET_B0: efficientnet_b0_build(m, z->stem); break;
    case FAMILY_VGG11_BN: vgg11_build(m, 1); break;
    case FAMILY_VGG11: vgg11_build(m, 0); break;
    case FAMILY_ALEXNET: alexnet_build(m); break;
    case FAMILY_MOBILENET_V2_CIFAR: mobilenet_v2_cifar_build(m); break;
    case FAMILY_DENSENET_CIFAR: densenet_cifar_build(m, a->cfg, a->cfg[4]); break;
    case FAMILY_SHUFFLENET_G2_CIFAR: shufflenet_g2_cifar_build(m); break;
    case FAMILY_EFFICIENTNET_B0_CIFAR: efficientnet_b0_cifar_build(m); break;
    }
}

int model_name_check(const char *name)
{
    ZooSpec z;
    return zoo_parse(name, &z);
}

Model *model_create(Nn *nn, const char *name, int in_channels, int num_classes, int input_size,
                    uint64_t seed)
{
    return model_create_capped(nn, name, in_channels, num_classes, input_size, seed, -1);
}

Model *model_create_capped(Nn *nn, const char *name, int in_channels, int num_classes, int input_size,
                           uint64_t seed, int64_t max_values)
{
    ZooSpec z;
    if (zoo_parse(name, &z) < 0) return NULL;
    if (in_channels < 1 || in_channels > 64 || num_classes < 1 || num_classes > 1000000 || input_size < 1
        || input_size > 65536) {
        dd_err("model %s: invalid shape: %d channels, %d classes, input %d", name, in_channels,
               num_classes, input_size);
        return NULL;
    }
    if (!z.arch && (input_size + 2 * (z.pad - 1)) >> z.depth < 1) {
        dd_err("model %s: input %d is too small for %d pooling blocks", name, input_size, z.depth);
        return NULL;
    }
    int64_t side = z.arch ? 0 : (input_size + 2 * (z.pad - 1)) >> z.depth; /* the ConvNet head's input side */
    if ((int64_t)z.width * side * side > INT32_MAX) {
        dd_err("model %s: input %d is too large: its head would take %lld features", name, input_size,
               (long long)((int64_t)z.width * side * side));
        return NULL;
    }
    Model *m = model_alloc(nn, in_channels, num_classes, input_size, seed);
    m->max_values = max_values;
    if (z.arch) {
        canonical_name(&z, m->arch, sizeof m->arch);
        zoo_build(m, &z);
    } else {
        const size_t size = sizeof m->arch;
        int base = snprintf(m->arch, size, "convnet%d", z.depth), n = base;
        if (z.width != CONVNET_WIDTH) n += snprintf(m->arch + n, size - (size_t)n, ":width=%d", z.width);
        if (z.pad != 1) n += snprintf(m->arch + n, size - (size_t)n, "%cpad=%d", n > base ? ',' : ':', z.pad);
        if (z.norm != MODEL_NORM_BATCH)
            snprintf(m->arch + n, size - (size_t)n, "%cnorm=%s", n > base ? ',' : ':', NORM_NAMES[z.norm]);
        convnet_build(m, z.depth, z.width, z.pad, z.norm);
    }
    if (input_size < m->min_input || (m->max_input && input_size > m->max_input)) {
        if (m->max_input) dd_err("model %s takes inputs of %d to %d px, not %d", m->arch, m->min_input, m->max_input,
                                 input_size);
        else dd_err("model %s takes inputs of at least %d px, not %d", m->arch, m->min_input, input_size);
        model_free(m);
        return NULL;
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

int model_check_classes(const Model *m, const char *mname, const TsHeader *h, const char *hname)
{
    const int k = ts_header_nclasses(h);
    if (m->num_classes != k) return dd_err("%s: %d classes; %s: %d", mname, m->num_classes, hname, k);
    for (int c = 0; c < m->nclass_names; c++)
        if (strcmp(m->class_names[c], ts_header_class(h, c)))
            return dd_err("%s: class %d is '%s'; %s: '%s'", mname, c, m->class_names[c], hname, ts_header_class(h, c));
    return 0;
}

int model_same_norm(const Model *a, const Model *b)
{
    size_t nb = (size_t)a->in_channels * sizeof(float);
    return a->in_channels == b->in_channels && !memcmp(a->mean, b->mean, nb) && !memcmp(a->std, b->std, nb);
}

int model_check_input(const Model *m, int64_t c, int64_t h, int64_t w)
{
    int ok = c == m->in_channels && h >= m->min_input && w >= m->min_input;
    if (m->max_input) ok = ok && h <= m->max_input && w <= m->max_input;
    if (ok && m->depth > 0) { /* convnet: the head's in_features fix the final spatial size */
        const int64_t grow = 2 * (m->first_pad - 1), want = (m->input_size + grow) >> m->depth;
        ok = ((h + grow) >> m->depth) == want && ((w + grow) >> m->depth) == want;
        /* LayerNorm([C,H,W])'s affine fixes every block's map: the size it was made for */
        if (m->norm == MODEL_NORM_LAYER) ok = ok && h == m->input_size && w == m->input_size;
    }
    if (ok) return 0;
    if (m->depth > 0)
        return dd_err("model %s takes %dx%dx%d images, got %lldx%lldx%lld", m->arch, m->in_channels,
                      m->input_size, m->input_size, (long long)c, (long long)h, (long long)w);
    if (m->max_input)
        return dd_err("model %s takes %d-channel images of %d to %d px, got %lldx%lldx%lld", m->arch, m->in_channels,
                      m->min_input, m->max_input, (long long)c, (long long)h, (long long)w);
    return dd_err("model %s takes %d-channel images of at least %d px, got %lldx%lldx%lld", m->arch,
                  m->in_channels, m->min_input, (long long)c, (long long)h, (long long)w);
}

NnVar *model_forward(Model *m, Nn *nn, NnVar *x, int training)
{
    const Tensor *t = &x->v;
    if (t->ndim != 4 || model_check_input(m, t->shape[1], t->shape[2], t->shape[3]) < 0)
        dd_die(1, "model_forward: %s", t->ndim == 4 ? dd_errmsg() : "input must be NCHW");
    /* no program makes an empty batch; the backends need not handle one (cuDNN refuses a dimension of 0, a
     * CUDA grid of 0 blocks is a launch error, a mean over 0 images is NaN) */
    if (t->shape[0] < 1) dd_die(1, "model_forward: an empty batch (0 images)");
    NnVar *xn = nn_normalize(nn, x, m->mean, m->std);
    return nn_done_with(nn, m->net(m, nn, xn, training), xn);
}

/* weights.c - models to and from safetensors files: torchvision's state_dict names, F32 params
 * and buffers, I64 0-d num_batches_tracked per BN (written as 0, ignored on read), and ddpipe's
 * metadata ("format": "ddpipe-weights/1", arch, classes, in_channels, num_classes, input_size,
 * mean, std; every value a string, JSON text for the arrays). */
#include "formats/codecs.h"
#include "libcommon/models/layers.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WEIGHTS_FORMAT "ddpipe-weights/1"
#define NBT ".num_batches_tracked"
enum { LIST_MAX = 8 };  /* names listed per kind of error */

/* ---- a growing message ---- */

typedef struct {
    char *s;
    size_t len, cap;
} Buf;

DD_PRINTF(2, 3) static void buf_add(Buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = dd_realloc(b->s, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* A list of names for one kind of error: "missing 3: a, b, c". */
typedef struct {
    const char *what;
    int n;
    Buf b;
} NameList;

static void list_add(NameList *l, const char *name, const char *detail)
{
    if (l->n < LIST_MAX) buf_add(&l->b, "%s%s%s", l->n ? ", " : "", name, detail ? detail : "");
    l->n++;
}

static void list_report(Buf *msg, NameList *l)
{
    if (!l->n) return;
    buf_add(msg, "%s%s %d: %s%s", msg->len ? "; " : "", l->what, l->n, l->b.s,
            l->n > LIST_MAX ? ", ..." : "");
}

/* ---- names in the file ---- */

static const char *entry_key(const StEntry *e)
{
    return strncmp(e->name, "module.", 7) ? e->name : e->name + 7;
}

static const StEntry *find_key(const Safetensors *st, const char *key)
{
    for (int i = 0; i < st->n; i++)
        if (!strcmp(entry_key(&st->e[i]), key)) return &st->e[i];
    return NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* 1 when `key` is "<prefix>num_batches_tracked" of a BN layer the model has. */
static int is_model_nbt(const Model *m, const char *key)
{
    if (!ends_with(key, NBT)) return 0;
    char name[sizeof ((NnParam *)0)->name + 16];
    size_t plen = strlen(key) - strlen(NBT);
    if (plen + sizeof ".running_mean" > sizeof name) return 0;
    snprintf(name, sizeof name, "%.*s.running_mean", (int)plen, key);
    return model_find(m, name) != NULL;
}

static int shape_equal(const Tensor *a, const Tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

static int is_float(DdDtype t) { return t == DD_F32 || t == DD_F16 || t == DD_BF16 || t == DD_F64; }

/* Checks every name and shape of st against m, listing all problems; then uploads. */
static int load_state(Model *m, const Safetensors *st, const char *path)
{
    NameList missing = {"missing"}, shape = {"wrong shape"}, dtype = {"not floating point"},
             unexpected = {"unexpected"};
    char *used = dd_calloc((size_t)st->n + 1, 1);
    const StEntry **match = dd_calloc((size_t)m->nparams + 1, sizeof *match);
    for (int i = 0; i < m->nparams; i++) {
        const StEntry *e = find_key(st, m->params[i]->name);
        if (!e) {
            list_add(&missing, m->params[i]->name, NULL);
            continue;
        }
        used[e - st->e] = 1;
        char got[96], want[96], detail[200];
        if (!shape_equal(&e->t, &m->params[i]->var.v)) {
            snprintf(detail, sizeof detail, " (file %s, model %s)", tensor_describe(&e->t, got, sizeof got),
                     tensor_describe(&m->params[i]->var.v, want, sizeof want));
            list_add(&shape, m->params[i]->name, detail);
        } else if (!is_float(e->t.dtype)) {
            snprintf(detail, sizeof detail, " (%s)", dd_dtype_name(e->t.dtype));
            list_add(&dtype, m->params[i]->name, detail);
        }
        match[i] = e;
    }
    for (int i = 0; i < st->n; i++)
        if (!used[i] && !is_model_nbt(m, entry_key(&st->e[i]))) list_add(&unexpected, st->e[i].name, NULL);
    Buf msg = {0};
    list_report(&msg, &missing);
    list_report(&msg, &unexpected);
    list_report(&msg, &shape);
    list_report(&msg, &dtype);
    int rc = 0;
    if (msg.len) {
        rc = dd_err("%s: weights do not fit model %s: %s", path, m->arch, msg.s);
    } else {
        for (int i = 0; i < m->nparams; i++) {
            const Tensor *t = &match[i]->t;
            if (t->dtype == DD_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
                nn_var_upload(m->nn, &m->params[i]->var, t->data);
            } else {
                Tensor f = tensor_to_f32(t);
                nn_var_upload(m->nn, &m->params[i]->var, f.data);
                tensor_free(&f);
            }
        }
    }
    free(msg.s);
    free(missing.b.s);
    free(shape.b.s);
    free(dtype.b.s);
    free(unexpected.b.s);
    free(used);
    free(match);
    return rc;
}

int model_load_weights(Model *m, const char *path)
{
    Safetensors st;
    if (st_read_file(path, &st) < 0) return -1;
    int rc = load_state(m, &st, path);
    st_free(&st);
    return rc;
}

/* ---- what the file describes ---- */

typedef struct {
    char arch[64];
    int in_channels, num_classes, input_size;
} Described;

static const Tensor *shape_of(const Safetensors *st, const char *key, int ndim)
{
    const StEntry *e = find_key(st, key);
    return e && e->t.ndim == ndim ? &e->t : NULL;
}

/* Counts the keys printf(fmt, i) for i = first, first+1, ... present in st. */
static int count_keys(const Safetensors *st, const char *fmt, int first)
{
    char key[128];
    int n = 0;
    for (;;) {
        snprintf(key, sizeof key, fmt, first + n);
        if (!find_key(st, key)) return n;
        n++;
    }
}

/* The zoo's torchvision nets other than ResNets, from their characteristic names: densenets (the
 * stem from conv0's kernel, the depth from the last two blocks), shufflenets (the width from
 * stage2's branch), mobilenet_v2, efficientnet_b0, vgg11_bn, vgg11, alexnet. MobileNet, ShuffleNet and
 * EfficientNet stems differ only in stride, not in shape: without "arch" metadata they load with
 * torchvision's (imagenet) stem. Returns 0, 1 when the names fit none of these nets, or -1 with
 * dd_err for torchvision-style names of a net not in the zoo. */
static int describe_torchvision(const Safetensors *st, const char *path, Described *d)
{
    const Tensor *first, *head;
    char name[32] = "";
    int small = 0;
    if ((first = shape_of(st, "features.conv0.weight", 4)) && (head = shape_of(st, "classifier.weight", 2))) {
        int b3 = count_keys(st, "features.denseblock3.denselayer%d.conv1.weight", 1);
        int b4 = count_keys(st, "features.denseblock4.denselayer%d.conv1.weight", 1);
        snprintf(name, sizeof name, "%s", b3 == 24 && b4 == 16 ? "densenet121" : b3 == 32 && b4 == 32
                 ? "densenet169" : b3 == 48 && b4 == 32 ? "densenet201" : "");
        small = first->shape[2] == 3;
    } else if ((first = shape_of(st, "conv1.0.weight", 4)) && (head = shape_of(st, "fc.weight", 2))) {
        const Tensor *b = shape_of(st, "stage2.0.branch2.0.weight", 4);
        int64_t bf = b ? b->shape[0] : 0;
        snprintf(name, sizeof name, "%s", bf == 24 ? "shufflenet_v2_x0_5" : bf == 58 ? "shufflenet_v2_x1_0" : "");
    } else if ((first = shape_of(st, "features.0.0.weight", 4)) && (head = shape_of(st, "classifier.1.weight", 2))) {
        if (find_key(st, "features.18.0.weight") && find_key(st, "features.1.conv.0.0.weight"))
            snprintf(name, sizeof name, "mobilenet_v2");
        else if (find_key(st, "features.1.0.block.1.fc1.weight"))
            snprintf(name, sizeof name, "efficientnet_b0");
    } else if ((first = shape_of(st, "features.0.weight", 4)) && (head = shape_of(st, "classifier.6.weight", 2))) {
        if (find_key(st, "features.1.running_mean") && first->shape[2] == 3) snprintf(name, sizeof name, "vgg11_bn");
        else if (first->shape[2] == 3 && shape_of(st, "features.18.weight", 4) && !find_key(st, "features.20.weight"))
            snprintf(name, sizeof name, "vgg11"); /* conv, ReLU per layer: the last conv at 18 */
        else if (first->shape[2] == 11) snprintf(name, sizeof name, "alexnet");
    } else {
        return 1;
    }
    if (!name[0]) return dd_err("%s: torchvision-style names of a net that is not in the zoo", path);
    snprintf(d->arch, sizeof d->arch, "%s%s", name, small ? "m" : "");
    d->in_channels = (int)first->shape[1];
    d->num_classes = (int)head->shape[0];
    d->input_size = small ? 32 : 224;
    return 0;
}

/* FADRM's and UFC's own small-image nets (zoo.c's "_cifar" names) from their names:
 * mobilenet_v2_cifar (layers.N.conv1 ... linear, 17 blocks, 320 -> 1280), efficientnet_b0_cifar
 * (layers.N.se.se1, 16 blocks, 320 -> linear), shufflenet_g2_cifar (a 1x1 conv1, layerL.N.conv1..3
 * with bn3, 4 + 8 + 4 blocks, 800 -> linear), densenet<N>_cifar (dense1..4.N, trans1..3, linear;
 * N from the dense layers per block and the growth rate, conv2's output channels).
 * Returns 0, 1 when the names are not theirs (or a part only: left to the ResNet check's
 * message), or -1 with dd_err for a DenseNet of theirs with other block counts. */
static int describe_cifar(const Safetensors *st, const char *path, Described *d)
{
    static const struct { const char *name; int blocks[4], growth; } dense[] = {
        {"densenet121_cifar", {6, 12, 24, 16}, 32}, {"densenet169_cifar", {6, 12, 32, 32}, 32},
        {"densenet201_cifar", {6, 12, 48, 32}, 32}, {"densenet161_cifar", {6, 12, 36, 24}, 48},
        {"densenet_cifar", {6, 12, 24, 16}, 12}};
    const Tensor *first = shape_of(st, "conv1.weight", 4), *head = shape_of(st, "linear.weight", 2), *t;
    if (!first || !head) return 1;
    d->in_channels = (int)first->shape[1];
    d->num_classes = (int)head->shape[0];
    d->input_size = 32;
    if (find_key(st, "layers.0.conv1.weight") && find_key(st, "layers.0.shortcut.0.weight")) {
        const Tensor *last = shape_of(st, "conv2.weight", 4);
        if (count_keys(st, "layers.%d.conv3.weight", 0) != 17 || !(t = shape_of(st, "layers.16.conv3.weight", 4))
            || t->shape[0] != 320 || !last || last->shape[0] != 1280)
            return 1;
        snprintf(d->arch, sizeof d->arch, "mobilenet_v2_cifar");
        return 0;
    }
    if (find_key(st, "layers.0.se.se1.weight") && find_key(st, "layers.0.conv3.weight")) {
        if (count_keys(st, "layers.%d.se.se1.weight", 0) != 16 || !(t = shape_of(st, "layers.15.conv3.weight", 4))
            || t->shape[0] != 320 || head->shape[1] != 320)
            return 1;
        snprintf(d->arch, sizeof d->arch, "efficientnet_b0_cifar");
        return 0;
    }
    if (find_key(st, "layer1.0.conv3.weight") && find_key(st, "layer1.0.bn3.running_mean")
        && !find_key(st, "layer1.0.conv4.weight") && !find_key(st, "fc.weight") && first->shape[2] == 1) {
        if (count_keys(st, "layer1.%d.conv1.weight", 0) != 4 || count_keys(st, "layer2.%d.conv1.weight", 0) != 8
            || count_keys(st, "layer3.%d.conv1.weight", 0) != 4 || head->shape[1] != 800)
            return 1;
        snprintf(d->arch, sizeof d->arch, "shufflenet_g2_cifar");
        return 0;
    }
    if (!find_key(st, "dense1.0.conv1.weight") || !find_key(st, "trans1.conv.weight")
        || !(t = shape_of(st, "dense1.0.conv2.weight", 4)))
        return 1;
    int blocks[4], growth = (int)t->shape[0];
    for (int b = 0; b < 4; b++) {
        char fmt[32];
        snprintf(fmt, sizeof fmt, "dense%d.%%d.conv1.weight", b + 1);
        blocks[b] = count_keys(st, fmt, 0);
    }
    for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++)
        if (!memcmp(dense[i].blocks, blocks, sizeof blocks) && dense[i].growth == growth) {
            snprintf(d->arch, sizeof d->arch, "%s", dense[i].name);
            return 0;
        }
    return dd_err("%s: a CIFAR DenseNet (FADRM's names) with blocks %d,%d,%d,%d and growth rate %d is not in "
                  "the zoo", path, blocks[0], blocks[1], blocks[2], blocks[3], growth);
}

/* The architecture from tensor names and shapes alone (files converted without metadata). */
static int describe_from_shapes(const Safetensors *st, const char *path, Described *d)
{
    char key[64];
    const Tensor *t;
    int rc = describe_cifar(st, path, d);
    if (rc <= 0) return rc;
    if ((t = shape_of(st, "conv1.weight", 4)) && !find_key(st, "layer1.0.conv1.weight"))
        /* another repository's own CIFAR net; FADRM's ShuffleNetV2 names have layerL.N.conv1
         * too: see fc below */
        return dd_err("%s: conv1.weight but no layer1.0.conv1.weight: not a torchvision ResNet nor FADRM's "
                      "MobileNetV2 or DenseNets nor UFC's EfficientNet-B0 (another reference repository's own "
                      "CIFAR net? those are not in the zoo: man 7 ddpipe-models)", path);
    if (t) {
        static const struct { const char *name; int blocks[4], bottleneck, width; } known[] = {
            {"resnet18", {2, 2, 2, 2}, 0, 64}, {"resnet34", {3, 4, 6, 3}, 0, 64},
            {"resnet50", {3, 4, 6, 3}, 1, 64}, {"resnet101", {3, 4, 23, 3}, 1, 64},
            {"wide_resnet50_2", {3, 4, 6, 3}, 1, 128}};
        int blocks[4], bottleneck = find_key(st, "layer1.0.conv3.weight") != NULL;
        const Tensor *c1 = shape_of(st, "layer1.0.conv1.weight", 4);
        int width = bottleneck && c1 ? (int)c1->shape[0] : 64;
        for (int l = 0; l < 4; l++) {
            blocks[l] = 0;
            for (;;) {
                snprintf(key, sizeof key, "layer%d.%d.conv1.weight", l + 1, blocks[l]);
                if (!find_key(st, key)) break;
                blocks[l]++;
            }
        }
        int small = t->shape[2] == 3;
        d->in_channels = (int)t->shape[1];
        d->input_size = small ? 32 : 224;
        const Tensor *fc = shape_of(st, "fc.weight", 2);
        if (!fc)
            return dd_err("%s: conv1.weight and layer1.0.conv1.weight but no 2-d fc.weight: not a torchvision "
                          "ResNet nor UFC's ShuffleNetG2 (%s: another repository's own CIFAR net, not in the zoo, "
                          "or FADRM's ShuffleNetV2, which pipelines/torch2safetensors.py converts to "
                          "shufflenet_v2_x0_5m: man 7 ddpipe-models)", path,
                          find_key(st, "linear.weight") ? "its head is linear" : "no head fc");
        d->num_classes = (int)fc->shape[0];
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (!memcmp(known[i].blocks, blocks, sizeof blocks) && known[i].bottleneck == bottleneck
                && known[i].width == width) {
                snprintf(d->arch, sizeof d->arch, "%s%s", known[i].name, small ? "m" : "");
                return 0;
            }
        return dd_err("%s: ResNet with blocks %d,%d,%d,%d (%s) is not in the zoo", path, blocks[0],
                      blocks[1], blocks[2], blocks[3], bottleneck ? "bottleneck" : "basic");
    }
    rc = describe_torchvision(st, path, d);
    if (rc <= 0) return rc;
    if ((t = shape_of(st, "0.weight", 4))) {
        /* BatchNorm at "1." (running statistics), a GroupNorm's affine only (instance norm, the
         * dataset-condensation default; GroupNorm(4, C) has the same tensors and needs the metadata),
         * LayerNorm's [C,H,W] affine, or no norm layer: blocks of three modules */
        const char *norm = find_key(st, "1.running_mean")  ? ""
                           : shape_of(st, "1.weight", 1) ? "norm=instance"
                           : shape_of(st, "1.weight", 3) ? "norm=layer"
                                                         : "norm=none";
        const int stride = !strcmp(norm, "norm=none") ? 3 : 4;
        int depth = 0;
        for (;;) {
            snprintf(key, sizeof key, "%d.weight", stride * depth);
            if (!shape_of(st, key, 4)) break;
            depth++;
        }
        int width = (int)t->shape[0];
        snprintf(key, sizeof key, "%d.weight", stride * depth + 1);
        const Tensor *head = shape_of(st, key, 2);
        if (!head) return dd_err("%s: ConvNet weights without a 2-d %s", path, key);
        int64_t side = 1;
        while (side * side * width < head->shape[1]) side++;
        if (side * side * width != head->shape[1] || depth > 16)
            return dd_err("%s: ConvNet head %s takes %lld features, not width x side^2", path, key,
                          (long long)head->shape[1]);
        static const int common[] = {28, 32, 64, 224};
        d->input_size = (int)side << depth;
        for (size_t i = 0; i < sizeof common / sizeof common[0]; i++)
            if ((common[i] >> depth) == side) {
                d->input_size = common[i];
                break;
            }
        d->in_channels = (int)t->shape[1];
        d->num_classes = (int)head->shape[0];
        int n = snprintf(d->arch, sizeof d->arch, "convnet%d", depth);
        if (width != 128) n += snprintf(d->arch + n, sizeof d->arch - (size_t)n, ":width=%d", width);
        if (*norm) snprintf(d->arch + n, sizeof d->arch - (size_t)n, "%c%s", width != 128 ? ',' : ':', norm);
        return 0;
    }
    return dd_err("%s: no \"arch\" metadata and the names fit no architecture of the zoo (conv1.weight: "
                  "ResNet, 0.weight: ConvNet, man 7 ddpipe-models): cannot tell the architecture", path);
}

static const char *meta_str(const Safetensors *st, const char *key)
{
    return st->metadata ? json_string_value(json_object_get(st->metadata, key)) : NULL;
}

/* Integer metadata `key` into *out when present; -1 when present but not an integer in range. */
static int meta_int(const Safetensors *st, const char *path, const char *key, int lo, int hi, int *out)
{
    const char *s = meta_str(st, key);
    if (!s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return dd_err("%s: metadata %s = \"%s\" is not an integer in %d..%d", path, key, s, lo, hi);
    *out = (int)v;
    return 0;
}

/* A JSON array text of n numbers into out[n]. */
static int meta_floats(const Safetensors *st, const char *path, const char *key, int n, float *out,
                       int *found)
{
    const char *s = meta_str(st, key);
    *found = s != NULL;
    if (!s) return 0;
    json_t *a = json_loads(s, JSON_DECODE_ANY, NULL);
    int ok = json_is_array(a) && (int)json_array_size(a) == n;
    for (int i = 0; ok && i < n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        ok = json_is_number(v);
        if (ok) out[i] = (float)json_number_value(v);
    }
    json_decref(a);
    return ok ? 0 : dd_err("%s: metadata %s = '%s' is not a JSON array of %d numbers", path, key, s, n);
}

static int meta_classes(Model *m, const Safetensors *st, const char *path)
{
    const char *s = meta_str(st, "classes");
    if (!s) return 0;
    json_t *a = json_loads(s, JSON_DECODE_ANY, NULL);
    int ok = json_is_array(a) && (int)json_array_size(a) == m->num_classes;
    for (size_t i = 0; ok && i < json_array_size(a); i++) ok = json_is_string(json_array_get(a, i));
    if (ok) {
        m->nclass_names = m->num_classes;
        m->class_names = dd_calloc((size_t)m->num_classes, sizeof(char *));
        for (int i = 0; i < m->num_classes; i++)
            m->class_names[i] = dd_strdup(json_string_value(json_array_get(a, (size_t)i)));
    }
    json_decref(a);
    return ok ? 0 : dd_err("%s: metadata classes is not a JSON array of %d strings", path, m->num_classes);
}

Model *model_load(Nn *nn, const char *path)
{
    Safetensors st;
    if (st_read_file(path, &st) < 0) return NULL;
    Described d = {{0}};
    Model *m = NULL;
    const char *arch = meta_str(&st, "arch");
    if (describe_from_shapes(&st, path, &d) < 0 && !arch) goto fail;
    if (arch) snprintf(d.arch, sizeof d.arch, "%s", arch);
    if (meta_int(&st, path, "in_channels", 1, 64, &d.in_channels) < 0
        || meta_int(&st, path, "num_classes", 1, 1000000, &d.num_classes) < 0
        || meta_int(&st, path, "input_size", 1, 65536, &d.input_size) < 0)
        goto fail;
    int64_t values = 0; /* the file's; the model can need no more (load_state wants each one) */
    for (int i = 0; i < st.n; i++) values += tensor_numel(&st.e[i].t);
    if (!(m = model_create_capped(nn, d.arch, d.in_channels, d.num_classes, d.input_size, 0, values))) {
        dd_err_prefix("%s", path);
        goto fail;
    }
    if (m->nvalues > values) {
        dd_err("%s: model %s (%d channels, %d classes, %d px) has %lld values; the file holds %lld", path,
               m->arch, m->in_channels, m->num_classes, m->input_size, (long long)m->nvalues, (long long)values);
        goto fail;
    }
    float mean[64], std[64];
    int has_mean, has_std;
    if (meta_floats(&st, path, "mean", m->in_channels, mean, &has_mean) < 0
        || meta_floats(&st, path, "std", m->in_channels, std, &has_std) < 0)
        goto fail;
    if (has_mean != has_std) {
        dd_err("%s: metadata has %s without %s", path, has_mean ? "mean" : "std", has_mean ? "std" : "mean");
        goto fail;
    }
    if (has_mean && model_set_norm(m, mean, std) < 0) {
        dd_err_prefix("%s: metadata", path);
        goto fail;
    }
    if (meta_classes(m, &st, path) < 0 || load_state(m, &st, path) < 0) goto fail;
    st_free(&st);
    return m;
fail:
    model_free(m);
    st_free(&st);
    return NULL;
}

/* ---- saving ---- */

/* Shortest decimal text that reads back as the same float. */
static void float_text(Buf *b, float v)
{
    char s[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, (double)v);
        if (strtof(s, NULL) == v) break;
    }
    buf_add(b, "%s", s);
}

static void set_str(json_t *meta, const char *key, const char *s)
{
    json_object_set_new(meta, key, json_string(s));
}

static void set_int(json_t *meta, const char *key, int v)
{
    char s[24];
    snprintf(s, sizeof s, "%d", v);
    set_str(meta, key, s);
}

static void set_floats(json_t *meta, const char *key, const float *v, int n)
{
    Buf b = {0};
    buf_add(&b, "[");
    for (int i = 0; i < n; i++) {
        if (i) buf_add(&b, ",");
        float_text(&b, v[i]);
    }
    buf_add(&b, "]");
    set_str(meta, key, b.s);
    free(b.s);
}

int model_save(const char *path, const Model *m, int nclasses, const char *const *classes, json_t *extra)
{
    if (!classes && m->class_names) {
        nclasses = m->nclass_names;
        classes = (const char *const *)m->class_names;
    }
    if (classes && nclasses != m->num_classes)
        return dd_err("%s: %d class names for a model with %d classes", path, nclasses, m->num_classes);
    int nbn = 0;
    for (int i = 0; i < m->nparams; i++) nbn += ends_with(m->params[i]->name, ".running_var");
    int n = m->nparams + nbn, k = 0;
    char **names = dd_calloc((size_t)n, sizeof *names);
    Tensor *ts = dd_calloc((size_t)n, sizeof *ts);
    const Tensor **tp = dd_calloc((size_t)n, sizeof *tp);
    for (int i = 0; i < m->nparams; i++) {
        const NnParam *p = m->params[i];
        names[k] = dd_strdup(p->name);
        ts[k] = tensor_new(DD_F32, p->var.v.ndim, p->var.v.shape);
        nn_var_download(m->nn, &p->var, ts[k].data);
        k++;
        if (ends_with(p->name, ".running_var")) {
            size_t plen = strlen(p->name) - strlen(".running_var");
            names[k] = dd_malloc(plen + sizeof NBT);
            snprintf(names[k], plen + sizeof NBT, "%.*s%s", (int)plen, p->name, NBT);
            ts[k++] = tensor_scalar_i64(0);
        }
    }
    for (int i = 0; i < n; i++) tp[i] = &ts[i];
    json_t *meta = json_object();
    if (extra) json_object_update(meta, extra);
    set_str(meta, "format", WEIGHTS_FORMAT);
    set_str(meta, "arch", m->arch);
    set_int(meta, "in_channels", m->in_channels);
    set_int(meta, "num_classes", m->num_classes);
    set_int(meta, "input_size", m->input_size);
    set_floats(meta, "mean", m->mean, m->in_channels);
    set_floats(meta, "std", m->std, m->in_channels);
    if (classes) {
        json_t *a = json_array();
        for (int i = 0; i < nclasses; i++) json_array_append_new(a, json_string(classes[i]));
        char *s = json_dumps(a, JSON_COMPACT | JSON_ENSURE_ASCII);
        set_str(meta, "classes", s);
        free(s);
        json_decref(a);
    }
    int rc = st_write_file(path, n, (const char *const *)names, tp, meta);
    json_decref(meta);
    for (int i = 0; i < n; i++) {
        free(names[i]);
        tensor_free(&ts[i]);
    }
    free(names);
    free(ts);
    free(tp);
    return rc;
}

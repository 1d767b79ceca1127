/* test_models.c - the zoo: parameter counts and state_dict sizes against torchvision's, names and
 * stems, seeded initialisation, forward shapes, batch-invariant evaluation, save -> load round trips
 * (metadata, shape-only files, "module." prefixes), and load errors that list missing, unexpected
 * and mis-shaped names. */
#include "formats/codecs.h"
#include "libcommon/models/model.h"
#include "libcommon/nn/cpu/cpu.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static char dir[256];

static const char *tmp(const char *name)
{
    static char path[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
    return path[k];
}

/* Entries of a safetensors file, as the stored count. */
static int file_keys(const char *path)
{
    Safetensors st;
    if (st_read_file(path, &st) < 0) return -1;
    int n = st.n;
    st_free(&st);
    return n;
}

static int same_values(Nn *nn, const Model *a, const Model *b)
{
    if (a->nparams != b->nparams) return 0;
    int same = 1;
    for (int i = 0; i < a->nparams && same; i++) {
        int64_t n = tensor_numel(&a->params[i]->var.v);
        float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
        nn_var_download(nn, &a->params[i]->var, x);
        nn_var_download(nn, &b->params[i]->var, y);
        same = !strcmp(a->params[i]->name, b->params[i]->name) && !memcmp(x, y, (size_t)n * sizeof(float));
        free(x);
        free(y);
    }
    return same;
}

static void test_counts(Nn *nn)
{
    static const struct { const char *name; int inch, ncls, size; int64_t params; int keys; } want[] = {
        {"resnet18", 3, 1000, 224, 11689512, 122},
        {"resnet34", 3, 1000, 224, 21797672, 218},
        {"resnet50", 3, 1000, 224, 25557032, 320},
        {"resnet101", 3, 1000, 224, 44549160, 626},
        {"convnet3", 1, 10, 28, 308746, 23},
        /* torchvision 0.14: sum(p.numel() for p in m.parameters()), len(m.state_dict()) */
        {"wide_resnet50_2", 3, 1000, 224, 68883240, 320},
        {"mobilenet_v2", 3, 1000, 224, 3504872, 314},
        {"shufflenet_v2_x0_5", 3, 1000, 224, 1366792, 338},
        {"shufflenet_v2_x1_0", 3, 1000, 224, 2278604, 338},
        {"densenet121", 3, 1000, 224, 7978856, 727},
        {"densenet169", 3, 1000, 224, 14149480, 1015},
        {"densenet201", 3, 1000, 224, 20013928, 1207},
        {"efficientnet_b0", 3, 1000, 224, 5288548, 360},
        {"vgg11_bn", 3, 1000, 224, 132868840, 62},
        {"vgg11", 3, 1000, 224, 132863336, 22},
        {"alexnet", 3, 1000, 224, 61100840, 16},
        /* FADRM's models/mobilenetv2.py and models/densenet.py, CIFAR-100: the same sums in torch */
        {"mobilenet_v2_cifar", 3, 100, 32, 2412212, 344},
        {"densenet121_cifar", 3, 100, 32, 7048548, 722},
        {"densenet169_cifar", 3, 100, 32, 12643172, 1010},
        {"densenet201_cifar", 3, 100, 32, 18277220, 1202},
        {"densenet161_cifar", 3, 100, 32, 26681188, 962},
        {"densenet_cifar", 3, 100, 32, 1035268, 722},
        /* UFC's models/shufflenet.py and models/efficientnet.py, CIFAR-100: torch's sums, except
         * that the B0's first block's unread conv1 and bn1 (1088 values) are buffers here */
        {"shufflenet_g2_cifar", 3, 100, 32, 959672, 296},
        {"efficientnet_b0_cifar", 3, 100, 32, 3628576 - 1088, 360},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        Model *m = model_create(nn, want[i].name, want[i].inch, want[i].ncls, want[i].size, 1);
        CHECK_MSG(m != NULL, "%s: %s", want[i].name, dd_errmsg());
        if (!m) continue;
        CHECK_MSG(model_param_count(m) == want[i].params, "%s: %lld params", want[i].name,
                  (long long)model_param_count(m));
        /* the saved state_dict has torchvision's key count (large files skipped for speed) */
        if (i == 0 || (i >= 4 && want[i].params < 30000000)) {
            CHECK(model_save(tmp("count.safetensors"), m, 0, NULL, NULL) == 0);
            CHECK_MSG(file_keys(tmp("count.safetensors")) == want[i].keys, "%s: %d keys", want[i].name,
                      file_keys(tmp("count.safetensors")));
        }
        model_free(m);
    }
    Model *r = model_create(nn, "resnet18", 3, 1000, 224, 1);
    CHECK(r->nparams == 102 && !strcmp(r->params[0]->name, "conv1.weight"));
    CHECK(model_find(r, "layer2.0.downsample.1.running_var") != NULL);
    CHECK(model_find(r, "layer1.0.downsample.0.weight") == NULL);
    CHECK(!strcmp(r->params[r->nparams - 1]->name, "fc.bias"));
    CHECK(model_find(r, "conv1.weight")->decay == 1 && model_find(r, "bn1.weight")->decay == 0);
    CHECK(model_find(r, "fc.bias")->decay == 0 && model_find(r, "fc.weight")->decay == 1);
    CHECK(model_find(r, "bn1.running_mean")->var.requires_grad == 0);
    model_free(r);
}

static void test_names(Nn *nn)
{
    Model *m = model_create(nn, "resnet18:stem=small", 1, 10, 28, 1);
    CHECK(m && !strcmp(m->arch, "resnet18m") && m->stem == MODEL_STEM_SMALL);
    CHECK(m && model_find(m, "conv1.weight")->var.v.shape[2] == 3);
    CHECK(m && m->mean[0] == 0.2860f && m->std[0] == 0.3530f);
    model_free(m);
    m = model_create(nn, "resnet50m", 3, 100, 32, 1);
    CHECK(m && m->stem == MODEL_STEM_SMALL && m->bottleneck && m->mean[2] == 0.406f);
    model_free(m);
    m = model_create(nn, "convnet4:width=32", 3, 10, 32, 1);
    CHECK(m && !strcmp(m->arch, "convnet4:width=32") && m->depth == 4 && m->width == 32);
    CHECK(m && !strcmp(m->params[m->nparams - 1]->name, "17.bias"));
    model_free(m);
    CHECK(model_create(nn, "resnet19", 3, 10, 32, 1) == NULL);
    CHECK(strstr(dd_errmsg(), "unknown architecture") != NULL);
    CHECK(model_create(nn, "convnet3:stem=small", 3, 10, 32, 1) == NULL);
    CHECK(model_create(nn, "convnet5", 1, 10, 28, 1) == NULL);   /* 28 >> 5 == 0 */
    /* the DC lineage's 1-channel ConvNet: the first convolution padded by 3, 28 px read as 32, so
     * the head takes 128 x 4 x 4; images whose side ends at 4 are taken (28..35 px), 24 is not */
    m = model_create(nn, "convnet3:width=16,pad=3", 1, 10, 28, 1);
    CHECK(m && !strcmp(m->arch, "convnet3:width=16,pad=3") && m->first_pad == 3);
    CHECK(m && model_find(m, "13.weight")->var.v.shape[1] == 16 * 4 * 4);
    CHECK(m && model_check_input(m, 1, 28, 28) == 0 && model_check_input(m, 1, 32, 32) == 0);
    CHECK(m && model_check_input(m, 1, 24, 24) < 0);
    model_free(m);
    m = model_create(nn, "convnet3:pad=3", 1, 10, 28, 1);
    CHECK(m && !strcmp(m->arch, "convnet3:pad=3"));
    model_free(m);
    CHECK(model_create(nn, "convnet3:pad=4", 1, 10, 28, 1) == NULL && strstr(dd_errmsg(), "pad=1..3"));
    /* the other norms of the dataset-condensation ConvNet: a GroupNorm's weight and bias where BN
     * was (no running statistics), or no layer (blocks of conv, relu, pool: the head is 3D+1) */
    m = model_create(nn, "convnet3:norm=instance", 3, 10, 32, 1);
    CHECK(m && !strcmp(m->arch, "convnet3:norm=instance") && m->norm == MODEL_NORM_INSTANCE);
    CHECK(m && m->nparams == 3 * 4 + 2 && model_find(m, "5.bias") && !model_find(m, "1.running_mean"));
    CHECK(m && model_find(m, "1.weight")->decay == 0 && model_find(m, "13.weight"));
    model_free(m);
    m = model_create(nn, "convnet3:width=16,pad=3,norm=none", 1, 10, 28, 1);
    CHECK(m && !strcmp(m->arch, "convnet3:width=16,pad=3,norm=none") && m->nparams == 3 * 2 + 2);
    CHECK(m && model_find(m, "6.weight") && model_find(m, "10.weight")->var.v.shape[1] == 16 * 4 * 4);
    model_free(m);
    m = model_create(nn, "convnet:norm=group,width=8", 3, 10, 32, 1);
    CHECK(m && !strcmp(m->arch, "convnet3:width=8,norm=group") && m->norm == MODEL_NORM_GROUP);
    model_free(m);
    CHECK(model_create(nn, "convnet3:norm=group,width=6", 3, 10, 32, 1) == NULL
          && strstr(dd_errmsg(), "multiple of 4"));
    CHECK(model_create(nn, "convnet3:norm=batchnorm", 3, 10, 32, 1) == NULL
          && strstr(dd_errmsg(), "norm=batch|instance"));
    /* an option given twice is a typo, not "the last one wins" */
    CHECK(model_create(nn, "convnet3:width=8,norm=none,width=9", 3, 10, 32, 1) == NULL
          && strstr(dd_errmsg(), "option 'width' given twice"));
    CHECK(model_create(nn, "resnet18:stem=small,stem=imagenet", 3, 10, 32, 1) == NULL
          && strstr(dd_errmsg(), "option 'stem' given twice"));
    /* LayerNorm([C,H,W]): an affine of each block's map shape (1 channel, pad=3: 32, 16, 8), so the
     * model takes the size it was made for only */
    m = model_create(nn, "convnet3:width=8,pad=3,norm=layer", 1, 10, 28, 1);
    CHECK(m && !strcmp(m->arch, "convnet3:width=8,pad=3,norm=layer") && m->norm == MODEL_NORM_LAYER);
    CHECK(m && model_find(m, "1.weight")->var.v.ndim == 3 && model_find(m, "1.weight")->var.v.shape[2] == 32);
    CHECK(m && model_find(m, "9.bias")->var.v.shape[1] == 8 && model_find(m, "1.weight")->decay == 1);
    CHECK(m && model_check_input(m, 1, 28, 28) == 0 && model_check_input(m, 1, 29, 29) < 0);
    model_free(m);
    CHECK(model_create(nn, "resnet18:norm=instance", 3, 10, 32, 1) == NULL);
    /* UFC's ShuffleNetG2 pools its final map with avg_pool2d(4) into a head of 800: 25..56 px */
    m = model_create(nn, "shufflenet_g2_cifar", 3, 10, 32, 1);
    CHECK(m && model_check_input(m, 3, 25, 56) == 0 && model_check_input(m, 3, 24, 32) < 0);
    CHECK(m && model_check_input(m, 3, 32, 57) < 0 && strstr(dd_errmsg(), "of 25 to 56 px"));
    model_free(m);
    CHECK(model_create(nn, "shufflenet_g2_cifar", 3, 10, 64, 1) == NULL && strstr(dd_errmsg(), "25 to 56 px, not 64"));
    /* UFC's EfficientNet-B0: the first block's conv1 and bn1, which its forward skips, are held
     * untrained; dropout is an option as torchvision's B0's */
    m = model_create(nn, "efficientnet_b0_cifar:dropout=0", 3, 10, 32, 1);
    CHECK(m && !strcmp(m->arch, "efficientnet_b0_cifar:dropout=0") && m->dropout == 0.0f);
    CHECK(m && model_find(m, "layers.0.conv1.weight")->var.role == NN_BUFFER
          && !model_find(m, "layers.0.bn1.weight")->var.requires_grad
          && model_find(m, "layers.1.conv1.weight")->var.role == NN_PARAM);
    model_free(m);
}

static void test_init(Nn *nn)
{
    Model *a = model_create(nn, "resnet18m", 3, 10, 32, 7), *b = model_create(nn, "resnet18m", 3, 10, 32, 7),
          *c = model_create(nn, "resnet18m", 3, 10, 32, 8);
    CHECK(same_values(nn, a, b));
    CHECK(!same_values(nn, a, c));
    /* Kaiming-normal fan_out: std of conv1 is sqrt(2 / (64 * 9)) */
    float w[64 * 27];
    nn_var_download(nn, &model_find(a, "conv1.weight")->var, w);
    double s = 0;
    for (int i = 0; i < 64 * 27; i++) s += (double)w[i] * w[i];
    CHECK_CLOSE(sqrt(s / (64 * 27)), sqrt(2.0 / (64 * 9)), 0, 0.08);
    float bw[64], rv[64];
    nn_var_download(nn, &model_find(a, "bn1.weight")->var, bw);
    nn_var_download(nn, &model_find(a, "bn1.running_var")->var, rv);
    CHECK(bw[0] == 1.0f && bw[63] == 1.0f && rv[5] == 1.0f);
    model_free(a);
    model_free(b);
    model_free(c);
}

static void test_forward(Nn *nn)
{
    Model *m = model_create(nn, "convnet3", 1, 10, 28, 1);
    Tensor x = tensor_newv(DD_F32, 4, (int64_t)2, (int64_t)1, (int64_t)28, (int64_t)28);
    NnVar *y = model_forward(m, nn, nn_input(nn, &x, 0), 0);
    CHECK(y->v.ndim == 2 && y->v.shape[0] == 2 && y->v.shape[1] == 10);
    CHECK(model_check_input(m, 1, 31, 31) == 0);              /* avgpool floors: 31 -> 3 */
    CHECK(model_check_input(m, 1, 32, 32) < 0 && model_check_input(m, 3, 28, 28) < 0);
    nn_reset(nn);
    tensor_free(&x);
    model_free(m);
    m = model_create(nn, "resnet18", 3, 5, 64, 1);
    x = tensor_newv(DD_F32, 4, (int64_t)2, (int64_t)3, (int64_t)64, (int64_t)64);
    nn_bn_collect(nn, 1);
    y = model_forward(m, nn, nn_input(nn, &x, 0), 0);
    CHECK(y->v.shape[0] == 2 && y->v.shape[1] == 5);
    CHECK(nn_bn_stat_count(nn) == 20);
    nn_bn_collect(nn, 0);
    nn_reset(nn);
    tensor_free(&x);
    model_free(m);
}

/* Logits of N images in eval mode, in batches of bs (the last one shorter). */
static void logits_by(Nn *nn, Model *m, const float *x, int n, int c, int side, int bs, float *out)
{
    size_t img = (size_t)c * side * side, k = (size_t)m->num_classes;
    nn_set_grad(nn, 0);
    for (int i0 = 0; i0 < n; i0 += bs) {
        int nb = n - i0 < bs ? n - i0 : bs;
        Tensor t = tensor_newv(DD_F32, 4, (int64_t)nb, (int64_t)c, (int64_t)side, (int64_t)side);
        memcpy(t.data, x + i0 * img, nb * img * sizeof(float));
        nn_var_download(nn, model_forward(m, nn, nn_input(nn, &t, 0), 0), out + i0 * k);
        nn_reset(nn);
        tensor_free(&t);
    }
    nn_set_grad(nn, 1);
}

/* Evaluation is batch-invariant on the engine's own kernels (AVX-512F): an image's logits are the
 * same bits alone or in any batch, so that patchsel --batch and evaltrain's evaluation batches change
 * speed and memory only. Without AVX-512F the GEMMs are OpenBLAS's, whose summation order can depend
 * on the matrix sizes (on Intel's AVX-512 cores even with DD_CPU_ISA=avx2): not claimed there. */
static void test_batch_invariance(Nn *nn)
{
    if (!cpu_avx512()) {
        printf("test_models: batch invariance not checked: no AVX-512F (OpenBLAS GEMMs, not claimed)\n");
        return;
    }
    static const struct { const char *name; int c, side; } nets[] = {
        {"convnet3", 1, 28}, {"resnet18m", 3, 16}, {"mobilenet_v2m", 3, 32}, {"shufflenet_v2_x1_0m", 3, 32},
        {"densenet121m", 3, 16}, {"efficientnet_b0m", 3, 32},
    };
    enum { N = 13 };
    static const int sizes[] = {1, 5, 8, 12};
    for (size_t q = 0; q < sizeof nets / sizeof nets[0]; q++) {
        Model *m = model_create(nn, nets[q].name, nets[q].c, 10, nets[q].side, 7);
        size_t img = (size_t)nets[q].c * nets[q].side * nets[q].side;
        float *x = malloc(N * img * sizeof(float)), all[N * 10], part[N * 10];
        DdRng r;
        dd_rng_init(&r, 11, q, 0);
        for (size_t i = 0; i < N * img; i++) x[i] = (float)dd_rng_uniform(&r);
        logits_by(nn, m, x, N, nets[q].c, nets[q].side, N, all);
        for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; b++) {
            logits_by(nn, m, x, N, nets[q].c, nets[q].side, sizes[b], part);
            CHECK_MSG(!memcmp(all, part, sizeof all), "%s: logits in batches of %d differ from one batch of %d",
                      nets[q].name, sizes[b], N);
        }
        free(x);
        model_free(m);
    }
}

static void test_roundtrip(Nn *nn)
{
    Model *m = model_create(nn, "resnet18m", 1, 3, 28, 5);
    const float mean[1] = {0.25f}, std[1] = {0.1f};
    CHECK(model_set_norm(m, mean, std) == 0);
    const char *classes[3] = {"T-shirt/top", "Trouser", "caf\xc3\xa9"};
    json_t *extra = json_object();
    json_object_set_new(extra, "teacher_top1", json_string("91.5"));
    json_object_set_new(extra, "arch", json_string("overridden"));
    CHECK(model_save(tmp("rt.safetensors"), m, 3, classes, extra) == 0);
    json_decref(extra);
    CHECK(model_save(tmp("bad.safetensors"), m, 2, classes, NULL) < 0);   /* 2 names, 3 classes */
    Model *l = model_load(nn, tmp("rt.safetensors"));
    CHECK_MSG(l != NULL, "%s", dd_errmsg());
    if (l) {
        CHECK(!strcmp(l->arch, "resnet18m") && l->in_channels == 1 && l->num_classes == 3);
        CHECK(l->input_size == 28);
        CHECK(l->mean[0] == 0.25f && l->std[0] == 0.1f);
        CHECK(l->nclass_names == 3 && !strcmp(l->class_names[0], "T-shirt/top")
              && !strcmp(l->class_names[2], "caf\xc3\xa9"));
        CHECK(same_values(nn, m, l));
        model_free(l);
    }
    Safetensors st;
    CHECK(st_read_file(tmp("rt.safetensors"), &st) == 0);
    CHECK(!strcmp(json_string_value(json_object_get(st.metadata, "teacher_top1")), "91.5"));
    CHECK(!strcmp(json_string_value(json_object_get(st.metadata, "format")), "ddpipe-weights/1"));
    const StEntry *nbt = st_find(&st, "layer3.1.bn2.num_batches_tracked");
    CHECK(nbt && nbt->t.dtype == DD_I64 && nbt->t.ndim == 0);

    /* the same tensors without metadata, without num_batches_tracked, with "module." names */
    const char **names = calloc((size_t)st.n, sizeof *names);
    const Tensor **ts = calloc((size_t)st.n, sizeof *ts);
    char (*buf)[160] = calloc((size_t)st.n, sizeof *buf);
    int n = 0;
    for (int i = 0; i < st.n; i++) {
        if (strstr(st.e[i].name, "num_batches_tracked")) continue;
        snprintf(buf[n], sizeof buf[n], "module.%s", st.e[i].name);
        names[n] = buf[n];
        ts[n++] = &st.e[i].t;
    }
    CHECK(st_write_file(tmp("bare.safetensors"), n, names, ts, NULL) == 0);
    l = model_load(nn, tmp("bare.safetensors"));
    CHECK_MSG(l != NULL, "%s", dd_errmsg());
    if (l) {
        CHECK(!strcmp(l->arch, "resnet18m") && l->in_channels == 1 && l->num_classes == 3);
        CHECK(l->nclass_names == 0 && l->mean[0] == 0.2860f);
        CHECK(same_values(nn, m, l));
        model_free(l);
    }

    /* errors list every kind: drop fc.bias, add "extra.weight", reshape bn1.weight */
    int64_t odd[1] = {7};
    Tensor seven = tensor_new(DD_F32, 1, odd);
    n = 0;
    for (int i = 0; i < st.n; i++) {
        if (!strcmp(st.e[i].name, "fc.bias")) continue;
        names[n] = st.e[i].name;
        ts[n++] = !strcmp(st.e[i].name, "bn1.weight") ? &seven : &st.e[i].t;
    }
    names[n] = "extra.weight";
    ts[n++] = &seven;
    CHECK(st_write_file(tmp("broken.safetensors"), n, names, ts, NULL) == 0);
    CHECK(model_load_weights(m, tmp("broken.safetensors")) < 0);
    const char *msg = dd_errmsg();
    CHECK_MSG(strstr(msg, "missing 1: fc.bias") && strstr(msg, "unexpected 1: extra.weight")
              && strstr(msg, "wrong shape 1: bn1.weight"), "%s", msg);
    Model *other = model_create(nn, "convnet3", 1, 3, 28, 1);
    CHECK(model_load_weights(other, tmp("rt.safetensors")) < 0);
    CHECK(strstr(dd_errmsg(), "missing 20: 0.weight") != NULL);
    model_free(other);
    tensor_free(&seven);
    free(names);
    free(ts);
    free(buf);
    st_free(&st);
    model_free(m);

    /* convnet: the input size and the norm come back from the tensors when there is no metadata
     * (a GroupNorm's affine alone: instance norm; no "1.weight": no norm, blocks of 3 modules) */
    static const char *const convnets[] = {"convnet3", "convnet3:norm=instance", "convnet2:width=16,norm=none",
                                           "convnet2:width=8,norm=layer"};
    for (int k = 0; k < 4; k++) {
        m = model_create(nn, convnets[k], 1, 10, 28, 2);
        CHECK(model_save(tmp("cn.safetensors"), m, 0, NULL, NULL) == 0);
        CHECK(st_read_file(tmp("cn.safetensors"), &st) == 0);
        const char **cn = calloc((size_t)st.n, sizeof *cn);
        const Tensor **ct = calloc((size_t)st.n, sizeof *ct);
        for (int i = 0; i < st.n; i++) {
            cn[i] = st.e[i].name;
            ct[i] = &st.e[i].t;
        }
        CHECK(st_write_file(tmp("cnbare.safetensors"), st.n, cn, ct, NULL) == 0);
        l = model_load(nn, tmp("cnbare.safetensors"));
        CHECK_MSG(l && !strcmp(l->arch, convnets[k]) && l->input_size == 28 && same_values(nn, m, l), "%s: %s",
                  convnets[k], l ? l->arch : dd_errmsg());
        model_free(l);
        free(cn);
        free(ct);
        st_free(&st);
        model_free(m);
    }
}

/* Peak resident memory so far, in KiB. */
static long peak_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* A weights file's metadata decides the model built before its tensors are read: a file whose
 * metadata names a model larger than its tensors could fill is refused, and the build stops
 * allocating at the file's count of values (a 200-byte file asking for vgg11 with a million classes
 * cost 16 GiB and was killed at 24 GiB). A ConvNet whose head would take more features than an int
 * holds is refused, not overflowed. Runs first, while the process's peak memory is small. */
static void test_metadata_bounds(Nn *nn)
{
    Model *m = model_create(nn, "convnet3:width=8", 1, 10, 28, 3), *l;
    CHECK(model_save(tmp("meta.safetensors"), m, 0, NULL, NULL) == 0);
    Safetensors st;
    CHECK(st_read_file(tmp("meta.safetensors"), &st) == 0);
    const char **names = calloc((size_t)st.n, sizeof *names);
    const Tensor **ts = calloc((size_t)st.n, sizeof *ts);
    int64_t held = 0;
    for (int i = 0; i < st.n; i++) {
        names[i] = st.e[i].name;
        ts[i] = &st.e[i].t;
        held += tensor_numel(&st.e[i].t);
    }
    /* a million classes: a head of 72 million values (288 MB, and as much again to initialise it)
     * is never allocated */
    json_object_set_new(st.metadata, "num_classes", json_string("1000000"));
    CHECK(st_write_file(tmp("meta.safetensors"), st.n, names, ts, st.metadata) == 0);
    long before = peak_rss_kib();
    l = model_load(nn, tmp("meta.safetensors"));
    long grew = peak_rss_kib() - before;
    CHECK_MSG(!l && strstr(dd_errmsg(), "the file holds"), "%s", l ? "loaded" : dd_errmsg());
    CHECK_MSG(before > 0 && grew < 50 * 1024, "loading grew the peak memory by %ld KiB", grew);
    model_free(l);
    /* one class more: 8 * 3 * 3 + 1 more values than the file has */
    json_object_set_new(st.metadata, "num_classes", json_string("11"));
    CHECK(st_write_file(tmp("meta.safetensors"), st.n, names, ts, st.metadata) == 0);
    l = model_load(nn, tmp("meta.safetensors"));
    char want[160];
    snprintf(want, sizeof want, "model convnet3:width=8 (1 channels, 11 classes, 28 px) has %lld values; the file "
             "holds %lld", (long long)(m->nvalues + 8 * 3 * 3 + 1), (long long)held);
    CHECK_MSG(!l && strstr(dd_errmsg(), want), "want '%s': %s", want, l ? "loaded" : dd_errmsg());
    model_free(l);
    /* the file's own count still loads */
    json_object_set_new(st.metadata, "num_classes", json_string("10"));
    CHECK(st_write_file(tmp("meta.safetensors"), st.n, names, ts, st.metadata) == 0);
    l = model_load(nn, tmp("meta.safetensors"));
    CHECK_MSG(l && same_values(nn, m, l), "%s", l ? "values differ" : dd_errmsg());
    model_free(l);
    free(names);
    free(ts);
    st_free(&st);
    model_free(m);

    /* no tensors at all */
    json_t *meta = json_object();
    json_object_set_new(meta, "arch", json_string("vgg11"));
    json_object_set_new(meta, "in_channels", json_string("3"));
    json_object_set_new(meta, "num_classes", json_string("1000000"));
    json_object_set_new(meta, "input_size", json_string("224"));
    CHECK(st_write_file(tmp("meta.safetensors"), 0, NULL, NULL, meta) == 0);
    json_decref(meta);
    l = model_load(nn, tmp("meta.safetensors"));
    CHECK_MSG(!l && strstr(dd_errmsg(), "model vgg11 (3 channels, 1000000 classes, 224 px) has 4225766336 values; "
                                        "the file holds 0"), "%s", l ? "loaded" : dd_errmsg());
    model_free(l);

    CHECK(model_create(nn, "convnet3", 1, 10, 65536, 0) == NULL);
    CHECK_MSG(strstr(dd_errmsg(), "input 65536 is too large: its head would take 8589934592 features"), "%s",
              dd_errmsg());
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/test_models.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) return 1;
    Nn *nn = nn_new(DD_CPU, 2);
    test_metadata_bounds(nn);
    test_counts(nn);
    test_names(nn);
    test_init(nn);
    test_forward(nn);
    test_batch_invariance(nn);
    test_roundtrip(nn);
    nn_free(nn);
    const char *files[] = {"count", "rt", "bad", "bare", "broken", "cn", "cnbare", "meta"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char f[64];
        snprintf(f, sizeof f, "%s.safetensors", files[i]);
        unlink(tmp(f));
    }
    rmdir(dir);
    return check_done("test_models");
}

/* shufflenet.c - torchvision's ShuffleNetV2 (x0_5: 24-48-96-192-1024 channels, x1_0:
 * 24-116-232-464-1024): conv1 3x3 s2 - BN - ReLU and a 3x3 s2 maxpool (the small stem: conv1
 * stride 1, no maxpool), stages 2-4 of 4, 8, 4 units, conv5 1x1 - BN - ReLU, global average
 * pooling and a linear head. A unit of stride 2 runs both branches on the whole input; a unit of
 * stride 1 keeps the first half of the channels and runs branch2 on the second; both end with
 * concat and a channel shuffle of 2 groups. Names and shapes are torchvision's state_dict
 * ("stage2.0.branch1.2.weight", "conv5.1.running_var"); PyTorch's default initialisation. */
#include "libcommon/models/layers.h"

#include <stdio.h>

static const int REPEATS[3] = {4, 8, 4};

/* branch2: 1x1 - BN - ReLU - 3x3 depthwise (stride) - BN - 1x1 - BN - ReLU. Each intermediate
 * goes to nn_done once read; x is the caller's. */
static NnVar *branch2(Nn *nn, ModelCursor *c, NnVar *x, int stride, int training)
{
    NnVar *t = layer_conv(nn, c, x, 1, 0, 0);
    NnVar *h = nn_done_with(nn, layer_bn_relu(nn, c, t, training), t);
    t = nn_done_with(nn, layer_conv_groups(nn, c, h, stride, 1, (int)h->v.shape[1], 0), h);
    h = nn_done_with(nn, layer_bn(nn, c, t, training), t);
    t = nn_done_with(nn, layer_conv(nn, c, h, 1, 0, 0), h);
    return nn_done_with(nn, layer_bn_relu(nn, c, t, training), t);
}

/* x is the caller's. */
static NnVar *unit_forward(Nn *nn, ModelCursor *c, NnVar *x, int stride, int training)
{
    NnVar *out[2];
    if (stride == 1) { /* x.chunk(2, dim=1) */
        int64_t half = x->v.shape[1] / 2;
        out[0] = nn_narrow(nn, x, 1, 0, half);
        NnVar *second = nn_narrow(nn, x, 1, half, half);
        out[1] = nn_done_with(nn, branch2(nn, c, second, 1, training), second);
    } else { /* branch1: 3x3 depthwise s2 - BN - 1x1 - BN - ReLU */
        NnVar *t = layer_conv_groups(nn, c, x, stride, 1, (int)x->v.shape[1], 0);
        NnVar *y = nn_done_with(nn, layer_bn(nn, c, t, training), t);
        t = nn_done_with(nn, layer_conv(nn, c, y, 1, 0, 0), y);
        out[0] = nn_done_with(nn, layer_bn_relu(nn, c, t, training), t);
        out[1] = branch2(nn, c, x, stride, training);
    }
    NnVar *y = nn_channel_interleave(nn, out[0], out[1]); /* concat, then shuffle of 2 groups */
    nn_done(nn, out[0]);
    nn_done(nn, out[1]);
    return y;
}

/* Each intermediate to nn_done once read, the input too (model.h). */
static NnVar *shufflenet_v2_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    const int big = m->stem == MODEL_STEM_IMAGENET;
    NnVar *t = layer_conv(nn, &c, in, big ? 2 : 1, 1, 0);
    nn_done(nn, in);
    NnVar *x = nn_done_with(nn, layer_bn_relu(nn, &c, t, training), t);
    if (big) x = nn_done_with(nn, nn_maxpool2d(nn, x, 3, 2, 1), x);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < REPEATS[s]; i++)
            x = nn_done_with(nn, unit_forward(nn, &c, x, i == 0 ? 2 : 1, training), x);
    t = nn_done_with(nn, layer_conv(nn, &c, x, 1, 0, 0), x);
    x = nn_done_with(nn, layer_bn_relu(nn, &c, t, training), t);
    return layer_pool_linear_head(nn, &c, x, 0.0f, training);
}

/* Appends "<prefix><i>.weight" [cout,cin/groups,k,k] and the BN "<prefix><i+1>.*" [cout]. */
static void add_conv_bn(Model *m, const char *prefix, int i, int cout, int cin, int k, int groups)
{
    char p[64];
    snprintf(p, sizeof p, "%s%d.", prefix, i);
    model_add_conv(m, p, cout, cin / groups, k, 0, INIT_TORCH_DEFAULT);
    snprintf(p, sizeof p, "%s%d.", prefix, i + 1);
    model_add_bn(m, p, cout);
}

void shufflenet_v2_build(Model *m, const int channels[5], ModelStem stem)
{
    char p[64];
    m->stem = stem;
    add_conv_bn(m, "conv1.", 0, channels[0], m->in_channels, 3, 1);
    int inp = channels[0];
    for (int s = 0; s < 3; s++) {
        int bf = channels[s + 1] / 2;
        for (int i = 0; i < REPEATS[s]; i++) {
            if (i == 0) {
                snprintf(p, sizeof p, "stage%d.%d.branch1.", s + 2, i);
                add_conv_bn(m, p, 0, inp, inp, 3, inp);
                add_conv_bn(m, p, 2, bf, inp, 1, 1);
            }
            snprintf(p, sizeof p, "stage%d.%d.branch2.", s + 2, i);
            add_conv_bn(m, p, 0, bf, i == 0 ? inp : bf, 1, 1);
            add_conv_bn(m, p, 3, bf, bf, 3, bf);
            add_conv_bn(m, p, 5, bf, bf, 1, 1);
        }
        inp = channels[s + 1];
    }
    add_conv_bn(m, "conv5.", 0, channels[4], inp, 1, 1);
    model_add_linear(m, "fc.", m->num_classes, channels[4]);
    m->net = shufflenet_v2_net;
}

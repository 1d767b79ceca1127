/* efficientnet.c - torchvision's EfficientNet-B0: a 3x3 conv-BN-SiLU stem (stride 2, or 1 for the
 * small stem), 16 MBConv blocks in 7 stages (1x1 expansion - SiLU, kxk depthwise - SiLU,
 * squeeze-excitation, 1x1 projection, each conv followed by BN; a residual add behind stochastic
 * depth when the shape is kept), a 1x1 conv to 1280 channels - SiLU, global average pooling,
 * dropout and a linear head. Names and shapes are torchvision's state_dict
 * ("features.2.1.block.2.fc1.bias", "classifier.1.weight").
 *
 * efficientnet_b0_cifar: UFC's (INFER's) EfficientNetB0_cifar10/100 (models/efficientnet.py), the
 * same 16 blocks with a 3x3 stride-1 stem ("conv1", "bn1"), blocks named layers.N.{conv1, bn1,
 * conv2, bn2, se.se1, se.se2, conv3, bn3}, no 1x1 convolution to 1280: average pooling of the 320
 * channels, dropout 0.2 in training, "linear". Its blocks of expansion 1 hold a conv1 and bn1 that
 * the forward never reads: kept as buffers (loaded and saved, never trained). Its drop-connect
 * rate is 0.2 x b / 16 with b never incremented, so 0: no stochastic depth. PyTorch's default
 * initialisations (the reference sets none). */
#include "libcommon/models/layers.h"

#include <stdio.h>

enum { LAST_CHANNELS = 1280 };

/* torchvision's bneck_conf for b0: expansion, kernel, stride, in, out, layers. */
static const struct { int expand, kernel, stride, in, out, layers; } STAGE[] = {
    {1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},   {6, 3, 2, 40, 80, 3},
    {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4}, {6, 3, 1, 192, 320, 1},
};
enum { NSTAGE = sizeof STAGE / sizeof STAGE[0], NBLOCKS = 16 };

/* torchvision's StochasticDepth(p, "row") in training mode: each image's residual branch is
 * zeroed with probability p, survivors scaled by 1/(1-p). The per-image factor is dropout of a
 * [N,1,1,1] tensor of ones (the context's rng), broadcast over the branch. */
static NnVar *stochastic_depth(Nn *nn, NnVar *x, float p, int training)
{
    if (!training || p == 0.0f) return x;
    Tensor ones = tensor_newv(DD_F32, 4, x->v.shape[0], (int64_t)1, (int64_t)1, (int64_t)1);
    for (int64_t i = 0; i < x->v.shape[0]; i++) ((float *)ones.data)[i] = 1.0f;
    NnVar *keep = nn_dropout(nn, nn_input(nn, &ones, 0), p, 1);
    tensor_free(&ones);
    return nn_mul(nn, x, keep);
}

/* SqueezeExcitation: x * sigmoid(fc2(silu(fc1(avgpool(x))))), fc1/fc2 1x1 convs with bias. */
NnVar *layer_squeeze_excitation(Nn *nn, ModelCursor *c, NnVar *x)
{
    NnVar *s = nn_adaptive_avgpool2d(nn, x, 1, 1);
    NnVar *t = nn_done_with(nn, layer_conv(nn, c, s, 1, 0, 1), s);
    s = nn_done_with(nn, nn_silu(nn, t), t);
    t = nn_done_with(nn, layer_conv(nn, c, s, 1, 0, 1), s);
    s = nn_done_with(nn, nn_sigmoid(nn, t), t);
    return nn_done_with(nn, nn_mul(nn, x, s), s);
}

/* The 16 MBConv blocks from the cursor; x is consumed. unread_conv1: a block of expansion 1 holds
 * a conv1 and bn1 that it skips (UFC's net). Stochastic depth from m->stochastic_depth (0: none). */
static NnVar *b0_blocks(Model *m, Nn *nn, ModelCursor *c, NnVar *x, int training, int unread_conv1)
{
    int id = 0;
    for (int s = 0; s < NSTAGE; s++) {
        for (int i = 0; i < STAGE[s].layers; i++, id++) {
            int in_ch = i == 0 ? STAGE[s].in : STAGE[s].out, stride = i == 0 ? STAGE[s].stride : 1;
            int expanded = in_ch * STAGE[s].expand;
            NnVar *y = x, *t;
            if (expanded != in_ch) {
                t = layer_conv_bn(nn, c, y, 1, 1, training);
                y = nn_done_with(nn, nn_silu(nn, t), t);
            } else if (unread_conv1) {
                c->i += 5; /* the unread conv1 and bn1 (weight, bias, running mean and var) */
            }
            t = layer_conv_bn(nn, c, y, stride, expanded, training);
            if (y != x) nn_done(nn, y);
            y = nn_done_with(nn, nn_silu(nn, t), t);
            y = nn_done_with(nn, layer_squeeze_excitation(nn, c, y), y);
            y = nn_done_with(nn, layer_conv_bn(nn, c, y, 1, 1, training), y);
            if (stride == 1 && in_ch == STAGE[s].out) {
                float p = m->stochastic_depth * (float)id / NBLOCKS;
                NnVar *d = stochastic_depth(nn, y, p, training);
                if (d != y) nn_done(nn, y);
                y = nn_done_with(nn, nn_add(nn, d, x), d);
            }
            x = nn_done_with(nn, y, x);
        }
    }
    return x;
}

/* Each intermediate to nn_done once read, the input too (model.h); SiLU and the excitation's
 * product keep their inputs for the backward, so less goes than in the ReLU nets. */
static NnVar *efficientnet_b0_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *t = layer_conv_bn(nn, &c, in, m->stem == MODEL_STEM_SMALL ? 1 : 2, 1, training);
    nn_done(nn, in);
    NnVar *x = nn_done_with(nn, nn_silu(nn, t), t);
    x = b0_blocks(m, nn, &c, x, training, 0);
    t = nn_done_with(nn, layer_conv_bn(nn, &c, x, 1, 1, training), x);
    x = nn_done_with(nn, nn_silu(nn, t), t);
    return layer_pool_linear_head(nn, &c, x, m->dropout, training);
}

void efficientnet_b0_build(Model *m, ModelStem stem)
{
    char p[64];
    m->stem = stem;
    model_add_conv_bn(m, "features.0.", STAGE[0].in, m->in_channels, 3, 1, INIT_KAIMING_OUT);
    for (int s = 0; s < NSTAGE; s++) {
        for (int i = 0; i < STAGE[s].layers; i++) {
            int in = i == 0 ? STAGE[s].in : STAGE[s].out, expanded = in * STAGE[s].expand, j = 0;
            int squeeze = in / 4 > 1 ? in / 4 : 1;
            if (expanded != in) {
                snprintf(p, sizeof p, "features.%d.%d.block.%d.", s + 1, i, j++);
                model_add_conv_bn(m, p, expanded, in, 1, 1, INIT_KAIMING_OUT);
            }
            snprintf(p, sizeof p, "features.%d.%d.block.%d.", s + 1, i, j++);
            model_add_conv_bn(m, p, expanded, expanded, STAGE[s].kernel, expanded, INIT_KAIMING_OUT);
            snprintf(p, sizeof p, "features.%d.%d.block.%d.fc1.", s + 1, i, j);
            model_add_conv(m, p, squeeze, expanded, 1, 1, INIT_KAIMING_OUT);
            snprintf(p, sizeof p, "features.%d.%d.block.%d.fc2.", s + 1, i, j++);
            model_add_conv(m, p, expanded, squeeze, 1, 1, INIT_KAIMING_OUT);
            snprintf(p, sizeof p, "features.%d.%d.block.%d.", s + 1, i, j);
            model_add_conv_bn(m, p, STAGE[s].out, expanded, 1, 1, INIT_KAIMING_OUT);
        }
    }
    snprintf(p, sizeof p, "features.%d.", NSTAGE + 1);
    model_add_conv_bn(m, p, LAST_CHANNELS, STAGE[NSTAGE - 1].out, 1, 1, INIT_KAIMING_OUT);
    model_add_linear_init(m, "classifier.1.", m->num_classes, LAST_CHANNELS, LINEAR_UNIFORM_OUT);
    m->net = efficientnet_b0_net;
}

static NnVar *efficientnet_b0_cifar_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *t = layer_conv_bn(nn, &c, in, 1, 1, training);
    nn_done(nn, in);
    NnVar *x = nn_done_with(nn, nn_silu(nn, t), t);
    x = b0_blocks(m, nn, &c, x, training, 1);
    return layer_pool_linear_head(nn, &c, x, m->dropout, training);
}

void efficientnet_b0_cifar_build(Model *m)
{
    char p[64];
    model_add_conv_bn_pair(m, "", 1, STAGE[0].in, m->in_channels, 3);
    int b = 0;
    for (int s = 0; s < NSTAGE; s++) {
        for (int i = 0; i < STAGE[s].layers; i++, b++) {
            int in = i == 0 ? STAGE[s].in : STAGE[s].out, expanded = in * STAGE[s].expand;
            snprintf(p, sizeof p, "layers.%d.", b);
            model_add_conv_bn_pair(m, p, 1, expanded, in, 1);
            if (expanded == in) /* unread by the forward: held, never trained */
                for (int k = m->nparams - 5; k < m->nparams; k++) {
                    m->params[k]->var.role = NN_BUFFER;
                    m->params[k]->var.requires_grad = 0;
                }
            model_add_conv_bn_pair(m, p, 2, expanded, 1, STAGE[s].kernel);
            snprintf(p, sizeof p, "layers.%d.se.se1.", b);
            model_add_conv(m, p, in / 4, expanded, 1, 1, INIT_TORCH_DEFAULT); /* int(in * se_ratio 0.25) */
            snprintf(p, sizeof p, "layers.%d.se.se2.", b);
            model_add_conv(m, p, expanded, in / 4, 1, 1, INIT_TORCH_DEFAULT);
            snprintf(p, sizeof p, "layers.%d.", b);
            model_add_conv_bn_pair(m, p, 3, STAGE[s].out, expanded, 1);
        }
    }
    model_add_linear(m, "linear.", m->num_classes, STAGE[NSTAGE - 1].out);
    m->net = efficientnet_b0_cifar_net;
}

/* resnet.c - torchvision's ResNet (v1.5: a Bottleneck strides in its 3x3 conv) with BasicBlock
 * (resnet18/34) or Bottleneck (resnet50/101; wide_resnet50_2: width_per_group 128, i.e. twice the
 * channels inside each bottleneck), the imagenet stem (7x7 s2 p3 conv, BN, ReLU,
 * maxpool 3x3 s2 p1) or the small stem of the CIFAR / Tiny-ImageNet teachers (3x3 s1 p1 conv,
 * BN, ReLU, no maxpool). Names and shapes are torchvision's state_dict; any channel and class
 * count. Convolutions have no bias. */
#include "libcommon/models/layers.h"

#include <stdio.h>

static const int PLANES[4] = {64, 128, 256, 512};

/* 1 when block b of layer l has a downsample branch (torchvision: stride != 1 or channel change). */
static int has_downsample(const Model *m, int l, int b)
{
    int expansion = m->bottleneck ? 4 : 1;
    return b == 0 && (l > 0 || 64 != PLANES[0] * expansion);
}

/* Each intermediate goes to nn_done once read (a frozen teacher's backward keeps only the BN
 * inputs and the block outputs); x, the block's input, is the caller's. */
static NnVar *block_forward(Model *m, Nn *nn, ModelCursor *c, NnVar *x, int l, int b, int training)
{
    int stride = (b == 0 && l > 0) ? 2 : 1;
    NnVar *y, *t;
    if (m->bottleneck) {
        t = layer_conv(nn, c, x, 1, 0, 0);
        y = nn_done_with(nn, layer_bn_relu(nn, c, t, training), t);
        t = nn_done_with(nn, layer_conv(nn, c, y, stride, 1, 0), y);
        y = nn_done_with(nn, layer_bn_relu(nn, c, t, training), t);
        y = nn_done_with(nn, layer_conv(nn, c, y, 1, 0, 0), y);
    } else {
        t = layer_conv(nn, c, x, stride, 1, 0);
        y = nn_done_with(nn, layer_bn_relu(nn, c, t, training), t);
        y = nn_done_with(nn, layer_conv(nn, c, y, 1, 1, 0), y);
    }
    /* relu(bn(y) + shortcut) is one op, so the shortcut runs first; the last BN's statistics
     * keep their place before the shortcut BN's (the modules' order) */
    LayerBn bn = layer_bn_take(c);
    int slot = nn_bn_stat_reserve(nn);
    NnVar *id = x;
    if (has_downsample(m, l, b)) {
        t = layer_conv(nn, c, x, stride, 0, 0);
        id = nn_done_with(nn, layer_bn(nn, c, t, training), t);
    }
    NnVar *out = nn_done_with(nn, layer_bn_add_relu(nn, &bn, y, id, slot, training), y);
    if (id != x) nn_done(nn, id);
    return out;
}

static NnVar *resnet_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *t = layer_conv(nn, &c, in, m->stem == MODEL_STEM_IMAGENET ? 2 : 1,
                          m->stem == MODEL_STEM_IMAGENET ? 3 : 1, 0);
    nn_done(nn, in); /* the net consumes its input (model.h) */
    NnVar *x = nn_done_with(nn, layer_bn_relu(nn, &c, t, training), t);
    if (m->stem == MODEL_STEM_IMAGENET) x = nn_done_with(nn, nn_maxpool2d(nn, x, 3, 2, 1), x);
    for (int l = 0; l < 4; l++)
        for (int b = 0; b < m->blocks[l]; b++) x = nn_done_with(nn, block_forward(m, nn, &c, x, l, b, training), x);
    return layer_pool_linear_head(nn, &c, x, 0.0f, training);
}

/* Appends block (l, b)'s "conv<i>.weight" [cout,cin,k,k] and "bn<i>.*" [cout]. */
static void block_conv_bn(Model *m, int l, int b, int i, int cout, int cin, int k)
{
    char p[64];
    snprintf(p, sizeof p, "layer%d.%d.conv%d.", l + 1, b, i);
    model_add_conv(m, p, cout, cin, k, 0, INIT_KAIMING_OUT);
    snprintf(p, sizeof p, "layer%d.%d.bn%d.", l + 1, b, i);
    model_add_bn(m, p, cout);
}

void resnet_build(Model *m, const int blocks[4], int bottleneck, int width_per_group, ModelStem stem)
{
    int expansion = bottleneck ? 4 : 1, inplanes = 64;
    m->stem = stem;
    m->bottleneck = bottleneck;
    m->width_per_group = width_per_group;
    for (int l = 0; l < 4; l++) m->blocks[l] = blocks[l];
    model_add_conv(m, "conv1.", 64, m->in_channels, stem == MODEL_STEM_IMAGENET ? 7 : 3, 0,
                   INIT_KAIMING_OUT);
    model_add_bn(m, "bn1.", 64);
    for (int l = 0; l < 4; l++) {
        int planes = PLANES[l];
        for (int b = 0; b < blocks[l]; b++) {
            if (bottleneck) {
                int width = planes * width_per_group / 64;
                block_conv_bn(m, l, b, 1, width, inplanes, 1);
                block_conv_bn(m, l, b, 2, width, width, 3);
                block_conv_bn(m, l, b, 3, planes * 4, width, 1);
            } else {
                block_conv_bn(m, l, b, 1, planes, inplanes, 3);
                block_conv_bn(m, l, b, 2, planes, planes, 3);
            }
            if (has_downsample(m, l, b)) {
                char p[64];
                snprintf(p, sizeof p, "layer%d.%d.downsample.0.", l + 1, b);
                model_add_conv(m, p, planes * expansion, inplanes, 1, 0, INIT_KAIMING_OUT);
                snprintf(p, sizeof p, "layer%d.%d.downsample.1.", l + 1, b);
                model_add_bn(m, p, planes * expansion);
            }
            inplanes = planes * expansion;
        }
    }
    model_add_linear(m, "fc.", m->num_classes, 512 * expansion);
    m->net = resnet_net;
}

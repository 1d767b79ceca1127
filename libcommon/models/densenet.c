/* densenet.c - torchvision's DenseNet-BC (growth rate 32, bn_size 4, 64 stem channels, no
 * dropout): conv0 7x7 s2 - norm0 - ReLU - pool0 maxpool 3x3 s2 (the small stem: conv0 3x3 s1 p1,
 * no pool0), four dense blocks (121: 6-12-24-16 layers, 169: 6-12-32-32, 201: 6-12-48-32) with
 * transitions (BN - ReLU - 1x1 conv halving the channels - avgpool 2) between them, norm5, ReLU,
 * global average pooling and a linear head. A dense layer is BN - ReLU - 1x1 conv (128) - BN -
 * ReLU - 3x3 conv (32) on the concatenation of every earlier feature map of its block. Names and
 * shapes are torchvision's state_dict ("features.denseblock2.denselayer3.conv1.weight"). */
#include "libcommon/models/layers.h"

#include <stdio.h>

enum { GROWTH = 32, BN_SIZE = 4, INIT_FEATURES = 64 };

NnVar *densenet_blocks(Nn *nn, ModelCursor *c, NnVar *x, int training, int new_first)
{
    for (int b = 0; b < 4; b++) {
        /* the running concatenation is the block's feature list: torch.cat(features, 1) */
        for (int i = 0; i < c->m->blocks[b]; i++) {
            NnVar *h = layer_bn_relu(nn, c, x, training);
            NnVar *y = nn_done_with(nn, layer_conv(nn, c, h, 1, 0, 0), h);
            h = nn_done_with(nn, layer_bn_relu(nn, c, y, training), y);
            y = nn_done_with(nn, layer_conv(nn, c, h, 1, 1, 0), h);
            NnVar *cat[2] = {new_first ? y : x, new_first ? x : y};
            NnVar *nx = nn_concat(nn, 2, cat, 1);
            nn_done(nn, x);
            nn_done(nn, y);
            x = nx;
        }
        if (b < 3) {
            NnVar *h = nn_done_with(nn, layer_bn_relu(nn, c, x, training), x);
            NnVar *t = nn_done_with(nn, layer_conv(nn, c, h, 1, 0, 0), h);
            x = nn_done_with(nn, nn_avgpool2d(nn, t, 2, 2, 0), t);
        }
    }
    return x;
}

/* Each intermediate goes to nn_done once read (a frozen teacher's backward then keeps the BN
 * inputs: the running concatenations and the bottlenecks), the input too (model.h). */
static NnVar *densenet_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    const int big = m->stem == MODEL_STEM_IMAGENET;
    NnVar *t = layer_conv(nn, &c, in, big ? 2 : 1, big ? 3 : 1, 0);
    nn_done(nn, in);
    NnVar *x = nn_done_with(nn, layer_bn_relu(nn, &c, t, training), t);
    if (big) x = nn_done_with(nn, nn_maxpool2d(nn, x, 3, 2, 1), x);
    x = densenet_blocks(nn, &c, x, training, 0);
    x = nn_done_with(nn, layer_bn_relu(nn, &c, x, training), x);
    return layer_pool_linear_head(nn, &c, x, 0.0f, training);
}

void densenet_build(Model *m, const int blocks[4], ModelStem stem)
{
    char p[96];
    m->stem = stem;
    model_add_conv(m, "features.conv0.", INIT_FEATURES, m->in_channels, stem == MODEL_STEM_IMAGENET ? 7 : 3, 0,
                   INIT_KAIMING_IN);
    model_add_bn(m, "features.norm0.", INIT_FEATURES);
    int nf = INIT_FEATURES;
    for (int b = 0; b < 4; b++) {
        m->blocks[b] = blocks[b];
        for (int i = 0; i < blocks[b]; i++) {
            int cin = nf + i * GROWTH;
            snprintf(p, sizeof p, "features.denseblock%d.denselayer%d.norm1.", b + 1, i + 1);
            model_add_bn(m, p, cin);
            snprintf(p, sizeof p, "features.denseblock%d.denselayer%d.conv1.", b + 1, i + 1);
            model_add_conv(m, p, BN_SIZE * GROWTH, cin, 1, 0, INIT_KAIMING_IN);
            snprintf(p, sizeof p, "features.denseblock%d.denselayer%d.norm2.", b + 1, i + 1);
            model_add_bn(m, p, BN_SIZE * GROWTH);
            snprintf(p, sizeof p, "features.denseblock%d.denselayer%d.conv2.", b + 1, i + 1);
            model_add_conv(m, p, GROWTH, BN_SIZE * GROWTH, 3, 0, INIT_KAIMING_IN);
        }
        nf += blocks[b] * GROWTH;
        if (b < 3) {
            snprintf(p, sizeof p, "features.transition%d.norm.", b + 1);
            model_add_bn(m, p, nf);
            snprintf(p, sizeof p, "features.transition%d.conv.", b + 1);
            model_add_conv(m, p, nf / 2, nf, 1, 0, INIT_KAIMING_IN);
            nf /= 2;
        }
    }
    model_add_bn(m, "features.norm5.", nf);
    model_add_linear_init(m, "classifier.", m->num_classes, nf, LINEAR_ZERO_BIAS);
    /* the three avgpools need 8 px after the stem: 29 px in for the imagenet stem */
    m->min_input = stem == MODEL_STEM_IMAGENET ? 29 : 8;
    m->net = densenet_net;
}

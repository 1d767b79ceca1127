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

static NnVar *densenet_net(Model *m, Nn *nn, NnVar *x, int training)
{
    ModelCursor c = {m, 0};
    if (m->stem == MODEL_STEM_IMAGENET) {
        x = layer_bn_relu(nn, &c, layer_conv(nn, &c, x, 2, 3, 0), training);
        x = nn_maxpool2d(nn, x, 3, 2, 1);
    } else {
        x = layer_bn_relu(nn, &c, layer_conv(nn, &c, x, 1, 1, 0), training);
    }
    for (int b = 0; b < 4; b++) {
        /* the running concatenation is the block's feature list: torch.cat(features, 1) */
        for (int i = 0; i < m->blocks[b]; i++) {
            NnVar *y = layer_conv(nn, &c, layer_bn_relu(nn, &c, x, training), 1, 0, 0);
            y = layer_conv(nn, &c, layer_bn_relu(nn, &c, y, training), 1, 1, 0);
            NnVar *cat[2] = {x, y};
            x = nn_concat(nn, 2, cat, 1);
        }
        if (b < 3) {
            x = layer_conv(nn, &c, layer_bn_relu(nn, &c, x, training), 1, 0, 0);
            x = nn_avgpool2d(nn, x, 2, 2, 0);
        }
    }
    x = layer_bn_relu(nn, &c, x, training);
    x = layer_linear(nn, &c, nn_flatten(nn, nn_adaptive_avgpool2d(nn, x, 1, 1)));
    cursor_end(&c);
    return x;
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

/* mobilenet.c - torchvision's MobileNetV2 (width 1.0): a 3x3 conv-BN-ReLU6 stem (stride 2, or 1
 * for the small stem), 17 inverted residuals (1x1 expansion - ReLU6 - 3x3 depthwise - ReLU6 -
 * 1x1 linear projection, each conv followed by BN; residual add when the shape is kept), a 1x1
 * conv to 1280 channels, global average pooling, dropout and a linear head. Names and shapes are
 * torchvision's state_dict ("features.2.conv.1.0.weight", "classifier.1.bias"). */
#include "libcommon/models/layers.h"

#include <stdio.h>

enum { STEM_CHANNELS = 32, LAST_CHANNELS = 1280 };

/* torchvision's inverted_residual_setting: expansion t, output channels c, repeats n, stride s. */
static const struct { int t, c, n, s; } SETTING[] = {
    {1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1},
};
enum { NSETTING = sizeof SETTING / sizeof SETTING[0] };

static NnVar *mobilenet_v2_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *x = layer_conv_bn_relu6(nn, &c, in, m->stem == MODEL_STEM_SMALL ? 1 : 2, 1, training);
    nn_done(nn, in); /* the net consumes its input (model.h) */
    int inp = STEM_CHANNELS;
    for (int k = 0; k < NSETTING; k++) {
        for (int i = 0; i < SETTING[k].n; i++) {
            int stride = i == 0 ? SETTING[k].s : 1, hidden = inp * SETTING[k].t;
            NnVar *y = x;
            if (SETTING[k].t != 1) y = layer_conv_bn_relu6(nn, &c, y, 1, 1, training);
            NnVar *e = y;
            y = layer_conv_bn_relu6(nn, &c, y, stride, hidden, training);
            if (e != x) nn_done(nn, e);
            NnVar *t = nn_done_with(nn, layer_conv(nn, &c, y, 1, 0, 0), y);
            y = nn_done_with(nn, layer_bn(nn, &c, t, training), t);
            /* each intermediate to nn_done once read; the block's input after the block */
            NnVar *out = stride == 1 && inp == SETTING[k].c ? nn_done_with(nn, nn_add(nn, x, y), y) : y;
            x = nn_done_with(nn, out, x);
            inp = SETTING[k].c;
        }
    }
    x = nn_done_with(nn, layer_conv_bn_relu6(nn, &c, x, 1, 1, training), x);
    return layer_pool_linear_head(nn, &c, x, m->dropout, training);
}

void mobilenet_v2_build(Model *m, ModelStem stem)
{
    char p[64];
    m->stem = stem;
    model_add_conv_bn(m, "features.0.", STEM_CHANNELS, m->in_channels, 3, 1, INIT_KAIMING_OUT);
    int inp = STEM_CHANNELS, f = 1;
    for (int k = 0; k < NSETTING; k++) {
        for (int i = 0; i < SETTING[k].n; i++, f++) {
            int hidden = inp * SETTING[k].t, j = 0;
            if (SETTING[k].t != 1) {
                snprintf(p, sizeof p, "features.%d.conv.%d.", f, j++);
                model_add_conv_bn(m, p, hidden, inp, 1, 1, INIT_KAIMING_OUT);
            }
            snprintf(p, sizeof p, "features.%d.conv.%d.", f, j++);
            model_add_conv_bn(m, p, hidden, hidden, 3, hidden, INIT_KAIMING_OUT);
            snprintf(p, sizeof p, "features.%d.conv.%d.", f, j++);
            model_add_conv(m, p, SETTING[k].c, hidden, 1, 0, INIT_KAIMING_OUT);
            snprintf(p, sizeof p, "features.%d.conv.%d.", f, j);
            model_add_bn(m, p, SETTING[k].c);
            inp = SETTING[k].c;
        }
    }
    snprintf(p, sizeof p, "features.%d.", f);
    model_add_conv_bn(m, p, LAST_CHANNELS, inp, 1, 1, INIT_KAIMING_OUT);
    model_add_linear_init(m, "classifier.1.", m->num_classes, LAST_CHANNELS, LINEAR_NORMAL_001);
    m->net = mobilenet_v2_net;
}

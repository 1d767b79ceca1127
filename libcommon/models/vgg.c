/* vgg.c - torchvision's VGG-11 (configuration "A") with BN (vgg11_bn) or without (vgg11, one of
 * RDED's students): eight 3x3 conv (bias) - [BN] - ReLU layers with five 2x2 maxpools, adaptive
 * average pooling to 7x7 and a classifier of Linear(25088, 4096) - ReLU - dropout -
 * Linear(4096, 4096) - ReLU - dropout - Linear. Names and shapes are torchvision's state_dict
 * ("features.8.weight", "classifier.6.bias"; without BN a layer is two modules, conv and ReLU).
 * No small variant: as torchvision's, inputs of 32 px and up, the adaptive pooling makes any
 * size 7x7. */
#include "libcommon/models/layers.h"

#include <stdio.h>

enum { POOL = 0 };  /* a maxpool in the configuration */
static const int CFG_A[] = {64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL};
enum { NCFG = sizeof CFG_A / sizeof CFG_A[0], HIDDEN = 4096 };

/* x = op's output, the previous x (the net's input first: model.h) to nn_done once read. */
#define THEN(op) (x = nn_done_with(nn, (op), x))

static NnVar *vgg11_net(Model *m, Nn *nn, NnVar *x, int training)
{
    ModelCursor c = {m, 0};
    for (int i = 0; i < NCFG; i++) {
        if (CFG_A[i] == POOL) {
            THEN(nn_maxpool2d(nn, x, 2, 2, 0));
        } else {
            THEN(layer_conv(nn, &c, x, 1, 1, 1));
            THEN(m->norm == MODEL_NORM_BATCH ? layer_bn_relu(nn, &c, x, training) : nn_relu(nn, x));
        }
    }
    THEN(nn_adaptive_avgpool2d(nn, x, 7, 7));
    THEN(nn_flatten(nn, x));
    for (int k = 0; k < 2; k++) {
        THEN(layer_linear(nn, &c, x));
        THEN(nn_relu(nn, x));
        THEN(nn_dropout(nn, x, m->dropout, training));
    }
    THEN(layer_linear(nn, &c, x));
    cursor_end(&c);
    return x;
}

void vgg11_build(Model *m, int bn)
{
    char p[64];
    int cin = m->in_channels, f = 0;
    for (int i = 0; i < NCFG; i++) {
        if (CFG_A[i] == POOL) {
            f++;
            continue;
        }
        snprintf(p, sizeof p, "features.%d.", f);
        model_add_conv(m, p, CFG_A[i], cin, 3, 1, INIT_KAIMING_OUT);
        if (bn) {
            snprintf(p, sizeof p, "features.%d.", f + 1);
            model_add_bn(m, p, CFG_A[i]);
        }
        cin = CFG_A[i];
        f += bn ? 3 : 2;  /* conv, [BN,] ReLU */
    }
    model_add_linear_init(m, "classifier.0.", HIDDEN, cin * 7 * 7, LINEAR_NORMAL_001);
    model_add_linear_init(m, "classifier.3.", HIDDEN, HIDDEN, LINEAR_NORMAL_001);
    model_add_linear_init(m, "classifier.6.", m->num_classes, HIDDEN, LINEAR_NORMAL_001);
    m->norm = bn ? MODEL_NORM_BATCH : MODEL_NORM_NONE;
    m->min_input = 32;
    m->net = vgg11_net;
}

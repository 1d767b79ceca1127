/* alexnet.c - torchvision's AlexNet: conv 11x11 s4 p2 (64) - ReLU - maxpool 3 s2, conv 5x5 p2 (192)
 * - ReLU - maxpool, conv 3x3 (384, 256, 256) with ReLUs, maxpool, adaptive average pooling to 6x6,
 * and a classifier of dropout - Linear(9216, 4096) - ReLU - dropout - Linear(4096, 4096) - ReLU -
 * Linear. Convolutions have biases; PyTorch's default initialisation. Names and shapes are
 * torchvision's state_dict ("features.3.weight", "classifier.4.bias"). No small variant: inputs
 * of at least 63 px (torchvision's min_size), the adaptive pooling makes the rest 6x6. */
#include "libcommon/models/layers.h"

#include <stdio.h>

/* features: output channels, kernel, stride, padding, maxpool after; index in the Sequential */
static const struct { int cout, k, stride, pad, pool, index; } CONV[] = {
    {64, 11, 4, 2, 1, 0}, {192, 5, 1, 2, 1, 3}, {384, 3, 1, 1, 0, 6}, {256, 3, 1, 1, 0, 8}, {256, 3, 1, 1, 1, 10},
};
enum { NCONV = sizeof CONV / sizeof CONV[0], HIDDEN = 4096 };

/* x = op's output, the previous x (the net's input first: model.h) to nn_done once read. */
#define THEN(op) (x = nn_done_with(nn, (op), x))

static NnVar *alexnet_net(Model *m, Nn *nn, NnVar *x, int training)
{
    ModelCursor c = {m, 0};
    for (int i = 0; i < NCONV; i++) {
        THEN(layer_conv(nn, &c, x, CONV[i].stride, CONV[i].pad, 1));
        THEN(nn_relu(nn, x));
        if (CONV[i].pool) THEN(nn_maxpool2d(nn, x, 3, 2, 0));
    }
    THEN(nn_adaptive_avgpool2d(nn, x, 6, 6));
    THEN(nn_flatten(nn, x));
    for (int k = 0; k < 2; k++) {
        THEN(nn_dropout(nn, x, m->dropout, training));
        THEN(layer_linear(nn, &c, x));
        THEN(nn_relu(nn, x));
    }
    THEN(layer_linear(nn, &c, x));
    cursor_end(&c);
    return x;
}

void alexnet_build(Model *m)
{
    char p[64];
    int cin = m->in_channels;
    for (int i = 0; i < NCONV; i++) {
        snprintf(p, sizeof p, "features.%d.", CONV[i].index);
        model_add_conv(m, p, CONV[i].cout, cin, CONV[i].k, 1, INIT_TORCH_DEFAULT);
        cin = CONV[i].cout;
    }
    model_add_linear(m, "classifier.1.", HIDDEN, cin * 6 * 6);
    model_add_linear(m, "classifier.4.", HIDDEN, HIDDEN);
    model_add_linear(m, "classifier.6.", m->num_classes, HIDDEN);
    m->min_input = 63;
    m->net = alexnet_net;
}

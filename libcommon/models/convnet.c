/* convnet.c - the dataset-distillation ConvNet: depth blocks of conv3x3(width, padding 1, bias) -
 * BatchNorm - ReLU - avgpool 2, then flatten and a linear head. Params are named as the
 * nn.Sequential of shared/bench/torch_recover_peer.py's convnet() (block i: "4i." conv,
 * "4i+1." BN; the head "4D+1."), so its state_dict round-trips with that module. The first
 * convolution's padding is an option (first_pad): the dataset-condensation lineage (DC, MTT, RDED,
 * FADRM, UFC) pads it by 3 for 1-channel images, so a 28-px image is 32 x 32 after it. */
#include "libcommon/models/layers.h"

#include <stdio.h>

static NnVar *convnet_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *x = in; /* each var to nn_done once read, the input too (model.h) */
    for (int i = 0; i < m->depth; i++) {
        x = nn_done_with(nn, layer_conv(nn, &c, x, 1, i == 0 ? m->first_pad : 1, 1), x);
        x = nn_done_with(nn, layer_bn_relu(nn, &c, x, training), x);
        x = nn_done_with(nn, nn_avgpool2d(nn, x, 2, 2, 0), x);
    }
    x = nn_done_with(nn, nn_flatten(nn, x), x);
    x = nn_done_with(nn, layer_linear(nn, &c, x), x);
    cursor_end(&c);
    return x;
}

void convnet_build(Model *m, int depth, int width, int first_pad)
{
    char prefix[32];
    int cin = m->in_channels, side = m->input_size + 2 * (first_pad - 1);
    m->depth = depth;
    m->width = width;
    m->first_pad = first_pad;
    for (int i = 0; i < depth; i++) {
        snprintf(prefix, sizeof prefix, "%d.", 4 * i);
        model_add_conv(m, prefix, width, cin, 3, 1, INIT_TORCH_DEFAULT);
        snprintf(prefix, sizeof prefix, "%d.", 4 * i + 1);
        model_add_bn(m, prefix, width);
        cin = width;
        side /= 2;
    }
    snprintf(prefix, sizeof prefix, "%d.", 4 * depth + 1);
    model_add_linear(m, prefix, m->num_classes, width * side * side);
    m->net = convnet_net;
}

/* convnet.c - the dataset-distillation ConvNet: depth blocks of conv3x3(width, padding 1, bias) -
 * norm - ReLU - avgpool 2, then flatten and a linear head. The norm is BatchNorm (default), or the
 * dataset-condensation code's other net_norm choices: instance norm (GroupNorm(C, C)), GroupNorm(4,
 * C), none, or LayerNorm([C, H, W]) (its weight and bias of the block's map shape). Params are
 * named as the nn.Sequential of shared/bench/torch_recover_peer.py's
 * convnet() (block i: "4i." conv, "4i+1." norm; the head "4D+1."; without a norm layer the blocks
 * are 3 modules long: "3i." conv, the head "3D+1."), so its state_dict round-trips with that
 * module. The first convolution's padding is an option (first_pad): the dataset-condensation
 * lineage (DC, MTT, RDED, FADRM, UFC) pads it by 3 for 1-channel images, so a 28-px image is
 * 32 x 32 after it. */
#include "libcommon/models/layers.h"

#include <stdio.h>

static NnVar *convnet_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *x = in; /* each var to nn_done once read, the input too (model.h) */
    for (int i = 0; i < m->depth; i++) {
        x = nn_done_with(nn, layer_conv(nn, &c, x, 1, i == 0 ? m->first_pad : 1, 1), x);
        if (m->norm == MODEL_NORM_BATCH) {
            x = nn_done_with(nn, layer_bn_relu(nn, &c, x, training), x);
        } else if (m->norm == MODEL_NORM_NONE) {
            x = nn_done_with(nn, nn_relu(nn, x), x);
        } else if (m->norm == MODEL_NORM_LAYER) {
            x = nn_done_with(nn, layer_layer_norm(nn, &c, x), x);
            x = nn_done_with(nn, nn_relu(nn, x), x);
        } else {
            x = nn_done_with(nn, layer_group_norm_relu(nn, &c, x, m->norm == MODEL_NORM_INSTANCE ? m->width : 4), x);
        }
        x = nn_done_with(nn, nn_avgpool2d(nn, x, 2, 2, 0), x);
    }
    x = nn_done_with(nn, nn_flatten(nn, x), x);
    x = nn_done_with(nn, layer_linear(nn, &c, x), x);
    cursor_end(&c);
    return x;
}

void convnet_build(Model *m, int depth, int width, int first_pad, ModelNorm norm)
{
    char prefix[32];
    const int stride = norm == MODEL_NORM_NONE ? 3 : 4; /* modules per block */
    int cin = m->in_channels, side = m->input_size + 2 * (first_pad - 1);
    m->depth = depth;
    m->width = width;
    m->first_pad = first_pad;
    m->norm = norm;
    for (int i = 0; i < depth; i++) {
        snprintf(prefix, sizeof prefix, "%d.", stride * i);
        model_add_conv(m, prefix, width, cin, 3, 1, INIT_TORCH_DEFAULT);
        snprintf(prefix, sizeof prefix, "%d.", stride * i + 1);
        if (norm == MODEL_NORM_BATCH) model_add_bn(m, prefix, width);
        else if (norm == MODEL_NORM_LAYER) model_add_layer_norm(m, prefix, width, side);
        else if (norm != MODEL_NORM_NONE) model_add_norm_affine(m, prefix, width);
        cin = width;
        side /= 2;
    }
    snprintf(prefix, sizeof prefix, "%d.", stride * depth + 1);
    model_add_linear(m, prefix, m->num_classes, width * side * side);
    m->net = convnet_net;
}

/* cifarnets.c - FADRM's own small-image MobileNetV2 and DenseNets (its models/mobilenetv2.py and
 * models/densenet.py, the "pytorch-cifar" definitions; UFC's models/mobilenetv2.py is the same
 * MobileNetV2), which its CIFAR-100 and Tiny-ImageNet teachers use, and UFC's ShuffleNetG2, one
 * of INFER's four CIFAR teachers (its EfficientNet-B0 is in efficientnet.c). They are not
 * torchvision's nets with a small stem (mobilenet.c, densenet.c): other blocks, other state_dict
 * names.
 *
 * mobilenet_v2_cifar: conv1 3x3 s1 (32) - bn1 - ReLU; 17 blocks of expansion 1x1 conv1 - bn1 -
 * ReLU - depthwise 3x3 conv2 - bn2 - ReLU - projection 1x1 conv3 - bn3 (the expansion conv in
 * every block, ReLU not ReLU6), plus a shortcut at stride 1 (shortcut.0 1x1 conv, shortcut.1 BN
 * when the channels change, else the identity; none at stride 2) without a ReLU after the add;
 * conv2 1x1 to 1280 - bn2 - ReLU, average pooling over the whole map, "linear".
 * densenet<N>_cifar: conv1 3x3 (2 x growth channels) with no BN or ReLU after it; dense layers
 * bn1 - ReLU - conv1 1x1 (4 x growth) - bn2 - ReLU - conv2 3x3 (growth), their output
 * concatenated BEFORE their input (torch.cat([out, x], 1)); transitions trans<i>: bn - ReLU -
 * conv 1x1 to floor(channels / 2) - avgpool 2; bn - ReLU - average pooling over the whole map -
 * "linear".
 * shufflenet_g2_cifar: UFC's (INFER's) ShuffleNetG2 (models/shufflenet.py, ShuffleNet v1 with 2
 * groups): conv1 1x1 (24) - bn1 - ReLU; stages of 4, 8, 4 bottlenecks to 200, 400, 800 channels:
 * conv1 1x1 grouped (1 group on the 24-channel stem's output, else 2) - bn1 - ReLU - channel
 * shuffle - depthwise 3x3 conv2 - bn2 - ReLU - conv3 1x1 in 2 groups - bn3; a stage's first block
 * strides 2 and concatenates a 3x3 stride-2 average pool of its input after its own output (its
 * conv3 makes the stage's channels minus the input's), the others add their input; ReLU after
 * either. Then avg_pool2d(4) and "linear": the final map must pool to 1x1, so 25..56-px inputs.
 * Every convolution without bias, PyTorch's default initialisations throughout (the references
 * set none). */
#include "libcommon/models/layers.h"

#include <stdio.h>

enum { MB_STEM = 32, MB_LAST = 1280 };

/* models/mobilenetv2.py's cfg: expansion, output channels, blocks, first block's stride; the
 * second stage strides 1 where torchvision's strides 2 (32-px inputs). */
static const struct { int t, c, n, s; } MB_CFG[] = {
    {1, 16, 1, 1}, {6, 24, 2, 1}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1},
};
enum { MB_NCFG = sizeof MB_CFG / sizeof MB_CFG[0] };

/* conv (no bias, padding k/2) then relu(BN), each intermediate to nn_done once read. */
static NnVar *conv_bn_relu(Nn *nn, ModelCursor *c, NnVar *x, int stride, int groups, int training)
{
    int k = (int)c->m->params[c->i]->var.v.shape[2];
    NnVar *t = layer_conv_groups(nn, c, x, stride, k / 2, groups, 0);
    return nn_done_with(nn, layer_bn_relu(nn, c, t, training), t);
}

static NnVar *conv_bn(Nn *nn, ModelCursor *c, NnVar *x, int training)
{
    NnVar *t = layer_conv(nn, c, x, 1, 0, 0);
    return nn_done_with(nn, layer_bn(nn, c, t, training), t);
}

/* Module order is forward order here (bn3 before the shortcut's BN), so the BN statistics that
 * recover collects come in the reference's modules() order without reserved slots. */
static NnVar *mobilenet_v2_cifar_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *x = conv_bn_relu(nn, &c, in, 1, 1, training);
    nn_done(nn, in); /* the net consumes its input (model.h) */
    int inp = MB_STEM;
    for (int k = 0; k < MB_NCFG; k++) {
        for (int i = 0; i < MB_CFG[k].n; i++) {
            int stride = i == 0 ? MB_CFG[k].s : 1, planes = inp * MB_CFG[k].t;
            NnVar *h = conv_bn_relu(nn, &c, x, 1, 1, training);
            h = nn_done_with(nn, conv_bn_relu(nn, &c, h, stride, planes, training), h);
            NnVar *y = nn_done_with(nn, conv_bn(nn, &c, h, training), h);
            if (stride == 1) {
                NnVar *sc = inp != MB_CFG[k].c ? conv_bn(nn, &c, x, training) : x;
                y = nn_done_with(nn, nn_add(nn, y, sc), y);
                if (sc != x) nn_done(nn, sc);
            }
            x = nn_done_with(nn, y, x);
            inp = MB_CFG[k].c;
        }
    }
    x = nn_done_with(nn, conv_bn_relu(nn, &c, x, 1, 1, training), x);
    return layer_pool_linear_head(nn, &c, x, 0.0f, training);
}

void mobilenet_v2_cifar_build(Model *m)
{
    char p[64];
    model_add_conv_bn_pair(m, "", 1, MB_STEM, m->in_channels, 3);
    int inp = MB_STEM, b = 0;
    for (int k = 0; k < MB_NCFG; k++) {
        for (int i = 0; i < MB_CFG[k].n; i++, b++) {
            int stride = i == 0 ? MB_CFG[k].s : 1, planes = inp * MB_CFG[k].t;
            snprintf(p, sizeof p, "layers.%d.", b);
            model_add_conv_bn_pair(m, p, 1, planes, inp, 1);
            model_add_conv_bn_pair(m, p, 2, planes, 1, 3);
            model_add_conv_bn_pair(m, p, 3, MB_CFG[k].c, planes, 1);
            if (stride == 1 && inp != MB_CFG[k].c) {
                snprintf(p, sizeof p, "layers.%d.shortcut.0.", b);
                model_add_conv(m, p, MB_CFG[k].c, inp, 1, 0, INIT_TORCH_DEFAULT);
                snprintf(p, sizeof p, "layers.%d.shortcut.1.", b);
                model_add_bn(m, p, MB_CFG[k].c);
            }
            inp = MB_CFG[k].c;
        }
    }
    model_add_conv_bn_pair(m, "", 2, MB_LAST, inp, 1);
    model_add_linear(m, "linear.", m->num_classes, MB_LAST);
    m->net = mobilenet_v2_cifar_net;
}

/* Each intermediate goes to nn_done once read, the input too (model.h). */
static NnVar *densenet_cifar_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *x = layer_conv(nn, &c, in, 1, 1, 0);
    nn_done(nn, in);
    /* the new features first: the reference's torch.cat([out, x], 1), whose channel order the
     * next layer's weights are laid out for (torchvision's appends them) */
    x = densenet_blocks(nn, &c, x, training, 1);
    x = nn_done_with(nn, layer_bn_relu(nn, &c, x, training), x);
    return layer_pool_linear_head(nn, &c, x, 0.0f, training);
}

void densenet_cifar_build(Model *m, const int blocks[4], int growth)
{
    char p[64];
    int nf = 2 * growth;
    m->growth = growth;
    model_add_conv(m, "conv1.", nf, m->in_channels, 3, 0, INIT_TORCH_DEFAULT);
    for (int b = 0; b < 4; b++) {
        m->blocks[b] = blocks[b];
        for (int i = 0; i < blocks[b]; i++) {
            snprintf(p, sizeof p, "dense%d.%d.bn1.", b + 1, i);
            model_add_bn(m, p, nf + i * growth);
            snprintf(p, sizeof p, "dense%d.%d.conv1.", b + 1, i);
            model_add_conv(m, p, 4 * growth, nf + i * growth, 1, 0, INIT_TORCH_DEFAULT);
            snprintf(p, sizeof p, "dense%d.%d.bn2.", b + 1, i);
            model_add_bn(m, p, 4 * growth);
            snprintf(p, sizeof p, "dense%d.%d.conv2.", b + 1, i);
            model_add_conv(m, p, growth, 4 * growth, 3, 0, INIT_TORCH_DEFAULT);
        }
        nf += blocks[b] * growth;
        if (b < 3) {
            snprintf(p, sizeof p, "trans%d.bn.", b + 1);
            model_add_bn(m, p, nf);
            snprintf(p, sizeof p, "trans%d.conv.", b + 1);
            model_add_conv(m, p, nf / 2, nf, 1, 0, INIT_TORCH_DEFAULT); /* floor(nf * reduction 0.5) */
            nf /= 2;
        }
    }
    model_add_bn(m, "bn.", nf);
    model_add_linear(m, "linear.", m->num_classes, nf);
    m->min_input = 8; /* three avgpools of 2 */
    m->net = densenet_cifar_net;
}

enum { G2_STEM = 24, G2_GROUPS = 2 };
static const int G2_OUT[3] = {200, 400, 800}, G2_BLOCKS[3] = {4, 8, 4};

/* A block's output channels (a first block's: the stage's minus its input's, concatenated after)
 * and its first convolution's groups. */
static void g2_block(int l, int i, int inp, int *out, int *g)
{
    *out = G2_OUT[l] - (i == 0 ? inp : 0);
    *g = inp == G2_STEM ? 1 : G2_GROUPS;
}

static NnVar *shufflenet_g2_cifar_net(Model *m, Nn *nn, NnVar *in, int training)
{
    ModelCursor c = {m, 0};
    NnVar *x = conv_bn_relu(nn, &c, in, 1, 1, training);
    nn_done(nn, in); /* the net consumes its input (model.h) */
    int inp = G2_STEM;
    for (int l = 0; l < 3; l++) {
        for (int i = 0; i < G2_BLOCKS[l]; i++) {
            int out, g, stride = i == 0 ? 2 : 1;
            g2_block(l, i, inp, &out, &g);
            NnVar *h = conv_bn_relu(nn, &c, x, 1, g, training), *y;
            if (g > 1) h = nn_done_with(nn, nn_channel_shuffle(nn, h, g), h);
            h = nn_done_with(nn, conv_bn_relu(nn, &c, h, stride, out / 4, training), h);
            NnVar *t = nn_done_with(nn, layer_conv_groups(nn, &c, h, 1, 0, G2_GROUPS, 0), h);
            if (stride == 2) {
                NnVar *b = nn_done_with(nn, layer_bn(nn, &c, t, training), t);
                NnVar *r = nn_avgpool2d(nn, x, 3, 2, 1);
                NnVar *cat = nn_concat(nn, 2, (NnVar *[]){b, r}, 1);
                nn_done(nn, b);
                nn_done(nn, r);
                y = nn_done_with(nn, nn_relu(nn, cat), cat);
            } else {
                /* bn3, then relu(. + x): one fused op; its statistics come last in the block */
                LayerBn bn = layer_bn_take(&c);
                y = nn_done_with(nn, layer_bn_add_relu(nn, &bn, t, x, -1, training), t);
            }
            x = nn_done_with(nn, y, x);
            inp = G2_OUT[l];
        }
    }
    x = nn_done_with(nn, nn_avgpool2d(nn, x, 4, 4, 0), x);
    x = nn_done_with(nn, nn_flatten(nn, x), x);
    x = nn_done_with(nn, layer_linear(nn, &c, x), x);
    cursor_end(&c);
    return x;
}

void shufflenet_g2_cifar_build(Model *m)
{
    char p[64];
    model_add_conv_bn_pair(m, "", 1, G2_STEM, m->in_channels, 1);
    int inp = G2_STEM;
    for (int l = 0; l < 3; l++) {
        for (int i = 0; i < G2_BLOCKS[l]; i++) {
            int out, g;
            g2_block(l, i, inp, &out, &g);
            snprintf(p, sizeof p, "layer%d.%d.", l + 1, i);
            model_add_conv_bn_pair(m, p, 1, out / 4, inp / g, 1);
            model_add_conv_bn_pair(m, p, 2, out / 4, 1, 3);
            model_add_conv_bn_pair(m, p, 3, out, out / 4 / G2_GROUPS, 1);
            inp = G2_OUT[l];
        }
    }
    model_add_linear(m, "linear.", m->num_classes, G2_OUT[2]);
    /* three stride-2 stages make ceil(side / 8), which avg_pool2d(4) must take to 1 */
    m->min_input = 25;
    m->max_input = 56;
    m->net = shufflenet_g2_cifar_net;
}

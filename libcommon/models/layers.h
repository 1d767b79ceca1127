/* layers.h - private to libcommon/models: building a model's params in state_dict order with
 * PyTorch's initialisations, and the forward helpers that consume them in the same order.
 *
 * Construction appends params (model_add_*); forward code walks them with a ModelCursor in the
 * same order, so a layer's params are found without names and a forward that takes a different
 * path than construction dies loudly (cursor_end). */
#ifndef DD_MODELS_LAYERS_H
#define DD_MODELS_LAYERS_H

#include "libcommon/models/model.h"

/* Conv initialisations: torchvision's ResNet / MobileNet / EfficientNet / VGG (kaiming_normal_,
 * fan_out, gain sqrt(2); bias 0), DenseNet's (kaiming_normal_, fan_in, gain sqrt(2)), or PyTorch's
 * default for nn.Conv2d (kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)), bias likewise). Fans
 * count the weight's own dims: cin per group x k x k in, cout x k x k out, as PyTorch's. */
typedef enum { INIT_KAIMING_OUT = 0, INIT_TORCH_DEFAULT = 1, INIT_KAIMING_IN = 2 } ModelInit;

/* Linear initialisations: PyTorch's default (U(+-1/sqrt(in)) weight and bias); the same weight
 * with bias 0 (DenseNet); N(0, 0.01) weight, bias 0 (MobileNetV2, VGG); U(+-1/sqrt(out)) weight,
 * bias 0 (EfficientNet). */
typedef enum {
    LINEAR_TORCH_DEFAULT = 0,
    LINEAR_ZERO_BIAS = 1,
    LINEAR_NORMAL_001 = 2,
    LINEAR_UNIFORM_OUT = 3
} ModelLinearInit;

/* model_create, for a weights file of max_values values in all (model_load): the build allocates
 * no parameter past that many values (the file could not fill it), and m->nvalues > max_values
 * then says the model was cut short (its later parameters are 1-value placeholders: not a model
 * to run). So a small file whose metadata names a huge model costs no memory. max_values -1: no
 * cap. */
Model *model_create_capped(Nn *nn, const char *name, int in_channels, int num_classes, int input_size,
                           uint64_t seed, int64_t max_values);
/* An empty model (no params) with default mean/std for in_channels. */
Model *model_alloc(Nn *nn, int in_channels, int num_classes, int input_size, uint64_t seed);
/* Appends "<prefix>weight" [cout,cin,k,k] (+ "<prefix>bias" [cout] when bias); cin is the
 * weight's dim 1, i.e. the input channels per group of a grouped convolution. */
void model_add_conv(Model *m, const char *prefix, int cout, int cin, int k, int bias, ModelInit init);
/* torchvision's Conv2dNormActivation without bias: "<prefix>0.weight" [cout,cin/groups,k,k] and
 * the BN "<prefix>1.*" [cout]. */
void model_add_conv_bn(Model *m, const char *prefix, int cout, int cin, int k, int groups, ModelInit init);
/* Appends "<prefix>weight", "bias", "running_mean", "running_var" [c]. */
void model_add_bn(Model *m, const char *prefix, int c);
/* "<prefix>conv<i>.weight" [cout,cin,k,k] (no bias, PyTorch's default init) and the BN "<prefix>bn<i>.*"
 * [cout]: the pytorch-cifar nets' naming (cin: the weight's dim 1, per group). */
void model_add_conv_bn_pair(Model *m, const char *prefix, int i, int cout, int cin, int k);
/* Appends "<prefix>weight" (ones) and "bias" (zeros) [c]: a GroupNorm's affine. */
void model_add_norm_affine(Model *m, const char *prefix, int c);
/* The same of shape [c, side, side]: LayerNorm([C, H, W])'s elementwise affine (the weight
 * decays, as a weight of more than one dimension does in the references' parameter groups). */
void model_add_layer_norm(Model *m, const char *prefix, int c, int side);
/* Appends "<prefix>weight" [out,in], "<prefix>bias" [out] with PyTorch's default init. */
void model_add_linear(Model *m, const char *prefix, int out, int in);
/* The same with the given initialisation. */
void model_add_linear_init(Model *m, const char *prefix, int out, int in, ModelLinearInit init);

typedef struct {
    Model *m;
    int i;
} ModelCursor;

NnVar *layer_conv(Nn *nn, ModelCursor *c, NnVar *x, int stride, int pad, int bias);
/* A convolution with `groups` groups (groups = channels: depthwise). */
NnVar *layer_conv_groups(Nn *nn, ModelCursor *c, NnVar *x, int stride, int pad, int groups, int bias);
/* Conv2dNormActivation's conv (padding (k-1)/2, no bias, k from the weight) then BN, no activation. */
NnVar *layer_conv_bn(Nn *nn, ModelCursor *c, NnVar *x, int stride, int groups, int training);
NnVar *layer_bn(Nn *nn, ModelCursor *c, NnVar *x, int training);
/* relu6(layer_conv_bn(...)) and relu(layer_bn(...)), each BN and its activation one fused op. */
NnVar *layer_conv_bn_relu6(Nn *nn, ModelCursor *c, NnVar *x, int stride, int groups, int training);
NnVar *layer_bn_relu(Nn *nn, ModelCursor *c, NnVar *x, int training);
/* A BN's four params (weight, bias, running mean and var) taken from the cursor, for a BN that
 * is applied after layers whose params come later (a residual block's last BN, fused with the
 * shortcut's add: layer_bn_add_relu, relu(bn(x) + r) as one op; stat_slot as
 * nn_batchnorm_add_relu's). */
typedef struct {
    NnVar *w, *b, *rm, *rv;
    float momentum;   /* the model's bn_momentum */
} LayerBn;
LayerBn layer_bn_take(ModelCursor *c);
NnVar *layer_bn_add_relu(Nn *nn, const LayerBn *bn, NnVar *x, NnVar *r, int stat_slot,
                         int training);
NnVar *layer_linear(Nn *nn, ModelCursor *c, NnVar *x);
/* The usual head: average pooling of the whole map, flatten, dropout p (in training; 0: none), the
 * linear layer at the cursor, then cursor_end. x is consumed. */
NnVar *layer_pool_linear_head(Nn *nn, ModelCursor *c, NnVar *x, float dropout, int training);
/* SqueezeExcitation: x * sigmoid(conv(silu(conv(avgpool(x))))), both 1x1 convs with bias from
 * the cursor; x is not consumed (efficientnet.c). */
NnVar *layer_squeeze_excitation(Nn *nn, ModelCursor *c, NnVar *x);
/* LayerNorm([C,H,W]) of x [N,C,H,W] with model_add_layer_norm's affine (eps 1e-5): each image
 * standardized over its whole map (GroupNorm's one group), then the elementwise affine. */
NnVar *layer_layer_norm(Nn *nn, ModelCursor *c, NnVar *x);
/* relu(GroupNorm(groups, C)) with the affine of model_add_norm_affine (eps 1e-5, PyTorch's). */
NnVar *layer_group_norm_relu(Nn *nn, ModelCursor *c, NnVar *x, int groups);
/* Dies unless the cursor consumed every param. */
void cursor_end(const ModelCursor *c);

/* Architecture builders (convnet.c, resnet.c, mobilenet.c, shufflenet.c, densenet.c,
 * efficientnet.c, vgg.c, alexnet.c, cifarnets.c): add the params, set m->net and m->min_input. */
void convnet_build(Model *m, int depth, int width, int first_pad, ModelNorm norm);
/* The four dense blocks (m->blocks[b] layers: BN - ReLU - 1x1 conv - BN - ReLU - 3x3 conv, the
 * output concatenated after the running features, or before them with new_first) with the
 * transitions between them (BN - ReLU - 1x1 conv - avgpool 2), from the cursor's params; x is
 * consumed (densenet.c; cifarnets.c's DenseNets). */
NnVar *densenet_blocks(Nn *nn, ModelCursor *c, NnVar *x, int training, int new_first);
/* width_per_group: 64 (resnets), 128 (wide_resnet50_2); bottleneck blocks only use it. */
void resnet_build(Model *m, const int blocks[4], int bottleneck, int width_per_group, ModelStem stem);
void mobilenet_v2_build(Model *m, ModelStem stem);
/* channels: the stem's, stage2..4's and conv5's output channels (torchvision's stages_out_channels). */
void shufflenet_v2_build(Model *m, const int channels[5], ModelStem stem);
/* blocks: dense layers per block (121: 6,12,24,16); growth rate 32, 64 stem channels, bn_size 4. */
void densenet_build(Model *m, const int blocks[4], ModelStem stem);
void efficientnet_b0_build(Model *m, ModelStem stem);
/* bn: vgg11_bn; 0: vgg11 */
void vgg11_build(Model *m, int bn);
void alexnet_build(Model *m);
/* cifarnets.c: FADRM's own small-image MobileNetV2, and its DenseNets (blocks: dense layers per
 * block, growth: the growth rate; 121: 6,12,24,16 and 32). */
void mobilenet_v2_cifar_build(Model *m);
void densenet_cifar_build(Model *m, const int blocks[4], int growth);
/* UFC's (INFER's) own CIFAR nets: ShuffleNetG2 (cifarnets.c) and EfficientNet-B0 (efficientnet.c). */
void shufflenet_g2_cifar_build(Model *m);
void efficientnet_b0_cifar_build(Model *m);

#endif

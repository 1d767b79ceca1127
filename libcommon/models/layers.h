/* layers.h - private to libcommon/models: building a model's params in state_dict order with
 * PyTorch's initialisations, and the forward helpers that consume them in the same order.
 *
 * Construction appends params (model_add_*); forward code walks them with a ModelCursor in the
 * same order, so a layer's params are found without names and a forward that takes a different
 * path than construction dies loudly (cursor_end). */
#ifndef DD_MODELS_LAYERS_H
#define DD_MODELS_LAYERS_H

#include "libcommon/models/model.h"

/* Conv initialisations: torchvision's ResNet (kaiming_normal_, fan_out, relu) or PyTorch's
 * default for nn.Conv2d (kaiming_uniform_(a=sqrt(5)): U(+-1/sqrt(fan_in)), bias likewise). */
typedef enum { INIT_KAIMING_OUT = 0, INIT_TORCH_DEFAULT = 1 } ModelInit;

/* An empty model (no params) with default mean/std for in_channels. */
Model *model_alloc(Nn *nn, int in_channels, int num_classes, int input_size, uint64_t seed);
/* Appends "<prefix>weight" [cout,cin,k,k] (+ "<prefix>bias" [cout] when bias). */
void model_add_conv(Model *m, const char *prefix, int cout, int cin, int k, int bias, ModelInit init);
/* Appends "<prefix>weight", "bias", "running_mean", "running_var" [c]. */
void model_add_bn(Model *m, const char *prefix, int c);
/* Appends "<prefix>weight" [out,in], "<prefix>bias" [out] with PyTorch's default init. */
void model_add_linear(Model *m, const char *prefix, int out, int in);

typedef struct {
    Model *m;
    int i;
} ModelCursor;

NnVar *layer_conv(Nn *nn, ModelCursor *c, NnVar *x, int stride, int pad, int bias);
NnVar *layer_bn(Nn *nn, ModelCursor *c, NnVar *x, int training);
NnVar *layer_linear(Nn *nn, ModelCursor *c, NnVar *x);
/* Dies unless the cursor consumed every param. */
void cursor_end(const ModelCursor *c);

/* Architecture builders (convnet.c, resnet.c): add the params and set m->net. */
void convnet_build(Model *m, int depth, int width);
void resnet_build(Model *m, const int blocks[4], int bottleneck, ModelStem stem);

#endif

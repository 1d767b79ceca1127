/* model.h - the Model type, the zoo of architectures, and weights files (safetensors with
 * torchvision's state_dict names and ddpipe metadata).
 *
 * A Model is forward code plus its parameters and buffers, held as an NnParam array in the
 * order of the PyTorch module's state_dict (num_batches_tracked is not held: it is tolerated on
 * load and written as an I64 0-d zero on save, so PyTorch's load_state_dict(strict=True) accepts
 * our files). The model takes PIXELS in [0,1]: model_forward normalizes with the model's mean/std
 * first, so normalization travels with the weights, not with the data.
 *
 * Names in the zoo (man 7 ddpipe-models):
 *   convnet<D>          the dataset-distillation ConvNet, D blocks of conv3x3(width, bias) - BN -
 *                       ReLU - avgpool2, then a linear head; width 128 unless ":width=W" is given;
 *                       "convnet" = convnet3. Names as the nn.Sequential of torch_recover_peer.py.
 *                       ":norm=instance|group|none|layer": GroupNorm(C, C), GroupNorm(4, C), no
 *                       layer or LayerNorm([C,H,W]) in place of BN (the dataset-condensation code's
 *                       net_norm); ":pad=P": the
 *                       first convolution's padding.
 *   resnet18/34/50/101  torchvision's ResNets (BasicBlock / Bottleneck); the imagenet stem (7x7 s2
 *                       conv, BN, ReLU, maxpool 3x3 s2) unless the name ends in "m" or carries
 *                       ":stem=small" (3x3 s1 p1 conv, no maxpool: the CIFAR / Tiny-ImageNet teachers).
 *   wide_resnet50_2     resnet50 with 128 channels per bottleneck group; stems as the resnets.
 *   mobilenet_v2, shufflenet_v2_x0_5, shufflenet_v2_x1_0, densenet121, densenet169, densenet201,
 *   efficientnet_b0     torchvision's; the small stem ("m" suffix or ":stem=small") is
 *                       shared/bench/torch_recover_peer.py's small_stem(): the first conv 3x3 s1 p1,
 *                       no stem pooling (shufflenet's maxpool, densenet's pool0).
 *   vgg11_bn, vgg11, alexnet  torchvision's, imagenet layout only (no small variant): inputs of at
 *                       least 32 (vgg) / 63 (alexnet) pixels, adaptive pooling handles the rest.
 *   mobilenet_v2_cifar, densenet121_cifar, densenet169_cifar, densenet201_cifar, densenet161_cifar,
 *   densenet_cifar      FADRM's own small-image nets (models/mobilenetv2.py, models/densenet.py;
 *                       UFC's MobileNetV2 too) with their state_dict names ("layers.3.shortcut.0.weight",
 *                       "dense2.5.conv1.weight", "trans1.conv.weight", "linear.bias"); no options.
 *   shufflenet_g2_cifar, efficientnet_b0_cifar  UFC's (INFER's) own CIFAR nets (models/shufflenet.py,
 *                       models/efficientnet.py), their names ("layer2.0.conv3.weight",
 *                       "layers.4.se.se1.bias"); efficientnet_b0_cifar takes dropout=P.
 * Options after ':' (comma-separated): stem=small|imagenet; width=W, pad=P, norm=N (convnets); dropout=P
 * (classifier dropout of mobilenet_v2, efficientnet_b0, vgg11_bn, vgg11, alexnet and
 * efficientnet_b0_cifar in training mode);
 * stochastic_depth=P (efficientnet_b0's stochastic_depth_prob, the last block's; default 0.2).
 *
 * Ownership: model_create / model_load return a Model the caller frees with model_free (which
 * frees its params through the Nn context they were made in; free the model before the context).
 * Errors: NULL / -1 with dd_err set (unknown names, unreadable or mismatched weights files).
 */
#ifndef DD_MODEL_H
#define DD_MODEL_H

#include <jansson.h>
#include <stdint.h>

#include "formats/stream.h"
#include "libcommon/nn/nn.h"

typedef enum { MODEL_STEM_IMAGENET = 0, MODEL_STEM_SMALL = 1 } ModelStem;
/* The convnet's normalization layer (":norm="): BatchNorm2d, GroupNorm(C, C) (instance), the
 * dataset-condensation code's GroupNorm(4, C), none, or LayerNorm([C, H, W]) (an elementwise
 * affine of the block's map shape). */
typedef enum {
    MODEL_NORM_BATCH = 0,
    MODEL_NORM_INSTANCE,
    MODEL_NORM_GROUP,
    MODEL_NORM_NONE,
    MODEL_NORM_LAYER
} ModelNorm;

typedef struct Model Model;

struct Model {
    char arch[64];             /* canonical zoo name with non-default options: "convnet3", "resnet18m" */
    int in_channels, num_classes;
    int input_size;            /* side the model was made for (convnet's head depends on it) */
    float *mean, *std;         /* [in_channels], pixel-space normalization */
    int nclass_names;          /* class names from the weights' metadata; 0 / NULL when unknown */
    char **class_names;
    int nparams;               /* parameters and buffers, state_dict order */
    NnParam **params;
    Nn *nn;                    /* the context the params live in (borrowed) */
    uint64_t seed;             /* initialisation seed (model_create) */
    /* architecture details, read by the forward code */
    /* The forward on normalized x. It consumes x: it may give it to nn_done once read (the
     * value lifetimes of nn.h), so a caller passes a var it is done with (model_forward: its
     * normalized copy; params and borrowed vars are never released). */
    NnVar *(*net)(Model *m, Nn *nn, NnVar *x, int training);
    int depth, width;          /* convnet */
    int first_pad;             /* convnet: the first convolution's padding (1; the DC lineage's 3) */
    ModelNorm norm;            /* convnet, vgg: its normalization layers */
    ModelStem stem;            /* every net with a small variant */
    int bottleneck, blocks[4]; /* resnets; blocks: densenets' layers per dense block too */
    int width_per_group;       /* resnets: 64, wide_resnet50_2: 128 */
    int growth;                /* the *_cifar densenets' growth rate */
    float dropout;             /* classifier dropout probability, live in training mode */
    float stochastic_depth;    /* efficientnet: stochastic_depth_prob, live in training mode */
    int min_input;             /* smallest input side the layers accept (1 for most nets) */
    int max_input;             /* largest (0: no bound; shufflenet_g2_cifar's fixed final pool) */
    float bn_momentum;         /* BN running-statistics momentum in training mode (PyTorch's 0.1) */
    int64_t nvalues;           /* the values of every parameter and buffer the build asked for */
    int64_t max_values;        /* model_create_capped's cap (-1: none) */
};

/* Builds `name` (see above) for in_channels x input_size x input_size inputs and num_classes
 * outputs, initialised as PyTorch / torchvision do for that architecture (e.g. Kaiming-normal
 * fan_out convolutions for ResNets, PyTorch's default uniform layers for the ConvNet, AlexNet and
 * ShuffleNet; each net's own Linear init; BN weight 1 bias 0, running stats 0 / 1; a small stem's
 * conv takes the architecture's conv init), drawn from dd_rng keyed by `seed`. mean/std default to the dataset's of
 * ddpipe-method(7) section 0 by channel count (1: Fashion-MNIST, 3: ImageNet); see model_set_norm.
 * Parameters require gradients; buffers do not. */
Model *model_create(Nn *nn, const char *name, int in_channels, int num_classes, int input_size,
                    uint64_t seed);
/* 0 when name is an architecture of the zoo with valid options (what model_create would take for
 * some input), else -1 with dd_err: a usage error found before the data are read. */
int model_name_check(const char *name);
void model_free(Model *m);

/* Sets mean/std (in_channels values each, std > 0). Returns 0 or -1. */
int model_set_norm(Model *m, const float *mean, const float *std);
/* The default mean/std of model_create for in_channels channels (1: Fashion-MNIST's, 3:
 * ImageNet's, else 0.5 / 0.5), written to mean[c], std[c]. */
void model_default_norm(int in_channels, float *mean, float *std);
/* Sets requires_grad of every parameter (buffers never require gradients): 0 = frozen teacher. */
void model_set_requires_grad(Model *m, int on);
/* The number of parameter elements (buffers excluded): resnet18, 1000 classes: 11,689,512. */
int64_t model_param_count(const Model *m);
/* The param of state_dict name `name`, or NULL. */
NnParam *model_find(const Model *m, const char *name);

/* 0 when the model accepts [C,H,W] images (channel count; ConvNet: the spatial size its head was
 * made for, up to avgpool's flooring; others: at least m->min_input per side); -1 with dd_err
 * naming both shapes otherwise. */
int model_check_input(const Model *m, int64_t c, int64_t h, int64_t w);
/* 1 when a and b take the same input: channels, mean and std */
int model_same_norm(const Model *a, const Model *b);

/* x: pixels [N, in_channels, H, W] (checked by model_check_input's rules; a mismatch dies as a
 * programming error). Normalizes, runs the network and returns logits [N, num_classes].
 * training = 1: BN uses batch statistics and updates the running ones (evaltrain, relabel's BSSL),
 * dropout and stochastic depth are live, drawn from the context's rng (nn_set_rng);
 * 0: running statistics, dropout and stochastic depth are the identity (recover, scoring). When the context collects BN statistics
 * (nn_bn_collect) every BN layer appends its distance, in module order. */
NnVar *model_forward(Model *m, Nn *nn, NnVar *x, int training);

/* 0 when the model classifies the stream's classes: as many as header h lists and, where the
 * weights name theirs, the same names in the same order; -1 with dd_err naming the weights
 * (mname), the stream (hname) and the first difference. */
int model_check_classes(const Model *m, const char *mname, const TsHeader *h, const char *hname);

/* ---- weights files ---- */

/* Reads a safetensors file and builds the model it describes: from the metadata ("arch",
 * "in_channels", "num_classes", "input_size", "mean", "std", "classes") where present, else from
 * the tensors' shapes (conv1.weight [64,C,3,3]: small stem; block counts: depth; fc.weight: classes).
 * Tolerates a "module." prefix and *.num_batches_tracked; F16/BF16/F64 tensors are converted.
 * Missing or unexpected names and wrong shapes are errors that list them; a model with more values
 * than the file's tensors hold is an error before it is allocated (model_create_capped). */
Model *model_load(Nn *nn, const char *path);

/* Loads the tensors of the safetensors file `path` into an existing model (same checks). */
int model_load_weights(Model *m, const char *path);

/* Writes the model's parameters and buffers as F32 (plus I64 0-d num_batches_tracked per BN) with
 * the metadata above ("format": "ddpipe-weights/1"), atomically. classes: nclasses names in label
 * order, or NULL to keep the model's own class_names (none: no "classes" key). extra: more string
 * metadata (borrowed, may be NULL; our keys win). */
int model_save(const char *path, const Model *m, int nclasses, const char *const *classes,
               json_t *extra);

#endif

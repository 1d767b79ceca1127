/* nn.h - the engine: variables, the tape (reverse mode), and the ops models are written with.
 *
 * Models are forward code calling nn_* ops. Each op computes its output through the context's
 * backend (CPU now, CUDA later: kernels live behind the NnBackend table in backend.h, never here)
 * and, when grad mode is on and an input needs a gradient, records itself on the tape. nn_backward
 * replays the tape in reverse.
 *
 * Gradient rules: gradients to parameters ACCUMULATE (+=) into var->g; the caller zeroes them
 * (nn_zero_grad / optimizer). Gradients to non-parameter inputs (NN_INPUT vars, e.g. recover's
 * pixels) are WRITTEN by backward (zeroed at the start of nn_backward, then accumulated over uses).
 * Only leaves keep a gradient after nn_backward: an op output's gradient buffer is recycled as
 * soon as that op's backward has consumed it (it reads as zeros afterwards).
 *
 * Ownership: vars returned by ops and nn_input are owned by the context's arena and live until
 * nn_reset (call once per step). Parameters and buffers (nn_param_new) live until nn_param_free;
 * they are never freed by nn_reset. Tensors passed to nn_input are copied unless nn_input_borrow.
 *
 * Shapes: images NCHW float32 (F32 on CPU). Errors in shapes or devices are programming errors
 * and abort with a message naming the op (dd_die, exit 1); data errors (NaN) are for callers.
 */
#ifndef DD_NN_H
#define DD_NN_H

#include <stdint.h>

#include "libcommon/base/base.h"
#include "libcommon/tensor/tensor.h"

typedef enum { NN_INPUT = 0, NN_PARAM = 1, NN_BUFFER = 2 } NnRole;

typedef struct NnVar {
    Tensor v;              /* value, on the context's device; data NULL once released (nn_done) */
    Tensor g;              /* gradient (F32, same shape), allocated on first need; data NULL until then */
    int requires_grad;
    NnRole role;
    /* the engine's, for nn_done: tape entries whose backward still reads the value; whether the
     * forward code is done with it; whether the value is an op output the engine may release */
    int32_t keeps;
    uint8_t done, releasable;
} NnVar;

/* A named persistent tensor: a weight (NN_PARAM) or a buffer such as running_mean (NN_BUFFER).
 * Names are torchvision's state_dict names ("layer1.0.bn1.running_var"). */
typedef struct NnParam {
    char name[128];
    NnVar var;
    int decay;             /* 1: weight decay applies (conv/linear weights); 0: BN, biases */
    float *opt_m, *opt_v;  /* optimizer state (host or device per context), NULL until first step */
    int64_t opt_step;
    struct Nn *opt_ctx;    /* context whose nn_state_alloc made opt_m/opt_v; NULL: host (free()) */
} NnParam;

typedef struct Nn Nn;

/* ---- context ---- */

/* device DD_CPU (DD_CUDA once the backend exists: NULL + dd_err with code DD_EXIT_DEVICE when it
 * is unavailable). threads <= 0: dd_threads_default(). */
Nn *nn_new(DdDevice device, int threads);
/* The context a program's -d/--device argument names: "cpu", "cuda", or "auto" (CUDA when a
 * device is usable, else the CPU). NULL + dd_err when it cannot be had: dd_errcode() is
 * DD_EXIT_DEVICE for device failures, DD_EXIT_USAGE for an unknown name. */
Nn *nn_open(const char *device, int threads);
void nn_free(Nn *nn);
DdDevice nn_device(const Nn *nn);
/* Grad mode: when 0, ops record nothing (scoring, evaluation). Default 1. Returns the old value. */
int nn_set_grad(Nn *nn, int on);
/* Frees every arena var and clears the tape. Params are untouched. */
void nn_reset(Nn *nn);
/* Seeded randomness for ops that draw (dropout): set per step by the caller. */
void nn_set_rng(Nn *nn, uint64_t seed, uint64_t step);

/* Precision of conv2d and linear (mixed precision, ddpipe-method(7) section 2): NN_FP32 (default) or
 * fp16 / bf16 storage with tensor-core math and fp32 accumulation; inputs, outputs, gradients and
 * every other op stay fp32. Returns 0, or -1 with dd_err (code DD_EXIT_DEVICE) when the backend
 * cannot (the CPU backend is fp32 only). */
typedef enum { NN_FP32 = 0, NN_FP16 = 1, NN_BF16 = 2 } NnPrecision;
int nn_set_precision(Nn *nn, NnPrecision p);
/* The precision set last (NN_FP32 until nn_set_precision). */
NnPrecision nn_precision(const Nn *nn);
/* The programs' --precision: NN_FP32, NN_FP16 or NN_BF16 of "fp32", "fp16", "bf16"; -1 else. */
int nn_precision_parse(const char *s);
/* "fp32", "fp16" or "bf16": what provenance records, the precision a context computes in (after
 * nn_use_precision, fp32 on the CPU whatever --precision asked). */
const char *nn_precision_name(NnPrecision p);
/* The programs' -d and --precision checked before any work: exit 2 for an unknown device or
 * precision, or fp16/bf16 with -d cpu. */
void nn_check_device_opts(const char *device, const char *precision);
/* Applies --precision OPTION to a context from nn_open: exit 2 for an unknown name, 3 when the
 * device refuses it; on a CPU context (-d auto without a device) a warning, and fp32. */
void nn_use_precision(Nn *nn, const char *option);

/* ---- variables ---- */

/* An arena var holding a copy of t (moved to the context's device). */
NnVar *nn_input(Nn *nn, const Tensor *t, int requires_grad);
/* An arena var viewing t's data (must be on the context's device and outlive the step). */
NnVar *nn_input_borrow(Nn *nn, const Tensor *t, int requires_grad);
/* A persistent parameter/buffer of F32 zeros with the given shape, on the context's device. */
NnParam *nn_param_new(Nn *nn, const char *name, NnRole role, int ndim, const int64_t *shape);
void nn_param_free(Nn *nn, NnParam *p);
/* Value lifetimes. The forward code says when it is done with an op output it made: its value
 * is released at once when no recorded backward reads it, else right after the last backward
 * that does (nn_backward), and its memory serves the tensors that come after it. So a step needs
 * the memory of what backward reads (for recover's frozen teacher: the BN inputs and the residual
 * blocks' outputs, not the convolutions' inputs) instead of every tensor the forward made. A
 * released var must not be read again (the ops die naming it); its shape stays. Vars that are
 * not op outputs (params, nn_input_borrow) are left alone, so nn_done never hurts; call it only
 * on vars the calling code made, and only once it will not read them. One nn_backward per step
 * (nn_reset) once nn_done was used. DD_NN_KEEP_ALL=1 in the environment turns it off (every
 * value lives to nn_reset, as without it): a check that a result does not depend on it. */
void nn_done(Nn *nn, NnVar *v);
/* nn_done(nn, v) and returns r: y = nn_done_with(nn, nn_relu(nn, x), x). */
NnVar *nn_done_with(Nn *nn, NnVar *r, NnVar *v);
/* The step memory of the context's device so far: the most bytes its op outputs, gradients and
 * saves had in use at once, and the most its arena held (chunks from the backend; one chunk
 * sized to the step once a step has run). DD_NN_MEMSTATS=1 prints both at nn_free. */
void nn_memory(const Nn *nn, size_t *in_use, size_t *held);
/* The floating-point operations (two per multiply-add; nn_conv_flops) of the convolutions and
 * linear layers the context has run since nn_new: forwards, input and weight gradients, as they
 * were dispatched (a frozen layer's weight gradient is not run, so not counted). The matrix work
 * that a device's tensor peak is quoted for; batchnorm, pooling and the elementwise ops are not
 * in it. */
double nn_flops(const Nn *nn);

/* Copies host data (F32, numel elements) into / out of a var's value. */
void nn_var_upload(Nn *nn, NnVar *v, const float *host);
void nn_var_download(Nn *nn, const NnVar *v, float *host);
/* Starts (on = 1) or ends the span an external profiler records (ncu --profile-from-start off);
 * nothing on backends without one. */
void nn_profile(Nn *nn, int on);
/* Elements [off, off + n) of v; like every download, it waits for the work queued before it. */
void nn_var_download_range(Nn *nn, const NnVar *v, int64_t off, int64_t n, float *host);
void nn_grad_download(Nn *nn, const NnVar *v, float *host);  /* zeros if no gradient */
/* Zeroes the gradients of `n` params. */
void nn_zero_grad(Nn *nn, NnParam **params, int n);
/* The scalar value of a 0-d / 1-element var, copied to host. */
float nn_item(Nn *nn, const NnVar *v);

/* Optimizer state: n zero floats on the context's device (NULL with dd_err, code DD_EXIT_DEVICE,
 * when out of memory); freed with nn_state_free (or by nn_param_free for a param's opt_m/opt_v). */
float *nn_state_alloc(Nn *nn, size_t n);
void nn_state_free(Nn *nn, float *p);
/* optim.c's per-element updates on a device backend (NnBackend sgd_step / adam_step / clamp, same
 * arguments); -1 with dd_err (code DD_EXIT_DEVICE) when the backend has no such kernel. */
int nn_optim_sgd(Nn *nn, int64_t n, float *p, const float *g, float *buf, float lr, float mom,
                 float wd, int nesterov);
int nn_optim_adam(Nn *nn, int64_t n, float *p, const float *g, float *m, float *v, float b1,
                  float omb1, float b2, float omb2, float step_size, float bc2s, float eps,
                  float wd, float decay);
int nn_optim_clamp(Nn *nn, int64_t n, float lo, float hi, float *p);
/* g[i][0..n[i]) *= inv (device memory; g[i] NULL skipped); 1 when every result is finite, 0 when
 * one is not, -1 with dd_err when the backend has no kernel (optim_unscale's device half). */
int nn_grads_unscale(Nn *nn, float inv, float *const *g, const int64_t *n, int count);
/* p [n, c, hw] (device memory) clamped to [lo[ch], hi[ch]] per channel; lo, hi: host arrays. */
int nn_optim_clamp_channels(Nn *nn, int64_t n, int c, int64_t hw, const float *lo, const float *hi,
                            float *p);

/* ---- backward ---- */

/* loss must be a 1-element var. Seeds dloss = 1, replays the tape in reverse. */
void nn_backward(Nn *nn, NnVar *loss);
/* The same with dloss = seed (loss scaling: every gradient comes out seed times larger). */
void nn_backward_seed(Nn *nn, NnVar *loss, float seed);

/* ---- ops (each returns a new arena var) ---- */

/* x [N,Cin,H,W], w [Cout,Cin/groups,kh,kw], b [Cout] or NULL. PyTorch's conv2d semantics. */
NnVar *nn_conv2d(Nn *nn, NnVar *x, NnVar *w, NnVar *b, int stride, int pad, int dilation, int groups);
/* BatchNorm2d. training=1: normalize with batch statistics (biased var), update running stats
 * (momentum, unbiased var as PyTorch) unless update_running=0. training=0: running statistics.
 * weight/bias may be NULL (affine=False). When BN statistics collection is on (nn_bn_collect),
 * also appends the layer's statistics distance (see nn_bn_stat_loss) for its input x. */
NnVar *nn_batchnorm(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                    NnVar *running_var, int training, int update_running, float momentum, float eps);
/* relu(nn_batchnorm(...)), relu6(nn_batchnorm(...)) and relu(nn_batchnorm(...) + r) (a residual
 * block's end; r of x's shape) as one op: the same values and gradients bit for bit, in one pass
 * over x forward (statistics collection included) and one backward where the backend has it
 * (CPU), the separate ops elsewhere. The residual's own BN runs before this one; so that the
 * collected statistics stay in the modules' order, stat_slot is a place reserved by
 * nn_bn_stat_reserve before that BN ran (or -1: appended). */
NnVar *nn_batchnorm_relu(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                         NnVar *running_var, int training, int update_running, float momentum,
                         float eps);
NnVar *nn_batchnorm_relu6(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                          NnVar *running_var, int training, int update_running, float momentum,
                          float eps);
NnVar *nn_batchnorm_add_relu(Nn *nn, NnVar *x, NnVar *weight, NnVar *bias, NnVar *running_mean,
                             NnVar *running_var, int training, int update_running, float momentum,
                             float eps, NnVar *r, int stat_slot);
/* ||mean_c(x) - rm||_2 + ||var_c(x) - rv||_2, mean and BIASED variance per channel over (N,H,W);
 * plain (not squared) L2 norms; scalar; differentiable w.r.t. x (ddpipe-method(7) section 2). */
NnVar *nn_bn_stat_loss(Nn *nn, NnVar *x, NnVar *running_mean, NnVar *running_var);
/* Turn collection on/off (clears the list when turned on). nn_bn_stat(i) in BN call order. */
void nn_bn_collect(Nn *nn, int on);
int nn_bn_stat_count(const Nn *nn);
/* Reserves the next place of the collected list for a BN that runs later (nn_batchnorm_add_relu);
 * its index, or -1 when collection is off. nn_bn_stat(i) is NULL until the place is filled. */
int nn_bn_stat_reserve(Nn *nn);
NnVar *nn_bn_stat(const Nn *nn, int i);

/* GroupNorm(groups, C) of x [N,C,H,W] (or [N,C]): each image's groups of C/groups channels
 * normalized by their own mean and biased variance, (x - mean) / sqrt(var + eps), then weight[c]
 * and bias[c] per channel (either may be NULL: none). No running statistics: the same in training
 * and eval, and nothing for nn_bn_collect. groups = C is instance norm (the dataset-condensation
 * ConvNet's nn.GroupNorm(C, C)). A group of one value normalizes to 0, as PyTorch's. */
NnVar *nn_group_norm(Nn *nn, NnVar *x, int groups, NnVar *weight, NnVar *bias, float eps);
/* relu(nn_group_norm(...)); instance norm (groups = C) as one fused op where the backend has it
 * (statistics, affine and ReLU in one pass each way, only x kept for the backward). */
NnVar *nn_group_norm_relu(Nn *nn, NnVar *x, int groups, NnVar *weight, NnVar *bias, float eps);

NnVar *nn_relu(Nn *nn, NnVar *x);
NnVar *nn_relu6(Nn *nn, NnVar *x);
NnVar *nn_silu(Nn *nn, NnVar *x);
NnVar *nn_sigmoid(Nn *nn, NnVar *x);
NnVar *nn_hardswish(Nn *nn, NnVar *x);
/* k at most 15 (the argmax kept for the backward is a byte: its offset in the window). */
NnVar *nn_maxpool2d(Nn *nn, NnVar *x, int k, int stride, int pad);
/* count_include_pad=1 as PyTorch's default. */
NnVar *nn_avgpool2d(Nn *nn, NnVar *x, int k, int stride, int pad);
NnVar *nn_adaptive_avgpool2d(Nn *nn, NnVar *x, int oh, int ow);
/* x [N,In], w [Out,In], b [Out] or NULL. */
NnVar *nn_linear(Nn *nn, NnVar *x, NnVar *w, NnVar *b);
/* Elementwise with broadcasting of b over a (b's shape broadcastable to a's, numpy rules). */
NnVar *nn_add(Nn *nn, NnVar *a, NnVar *b);
NnVar *nn_mul(Nn *nn, NnVar *a, NnVar *b);
NnVar *nn_scale(Nn *nn, NnVar *x, float s);          /* s * x */
/* (x - mean[c]) / std[c] per channel of NCHW x; constants, no gradient to them. */
NnVar *nn_normalize(Nn *nn, NnVar *x, const float *mean, const float *std);
NnVar *nn_concat(Nn *nn, int n, NnVar **xs, int dim);
NnVar *nn_channel_shuffle(Nn *nn, NnVar *x, int groups);
/* x.narrow(dim, start, len): a copy of indices [start, start+len) of dim. */
NnVar *nn_narrow(Nn *nn, NnVar *x, int dim, int64_t start, int64_t len);
/* channel_shuffle(concat([a, b], 1), 2) of two NCHW tensors of one shape, in one copy: channel 2k of
 * the result is a's k, 2k+1 is b's k. */
NnVar *nn_channel_interleave(Nn *nn, NnVar *a, NnVar *b);
/* [N, ...] -> [N, prod(...)] */
NnVar *nn_flatten(Nn *nn, NnVar *x);
/* Inverted dropout with probability p, live only when training; mask from the context's rng. */
NnVar *nn_dropout(Nn *nn, NnVar *x, float p, int training);
/* F.interpolate(mode='bilinear', align_corners=False, antialias=False) to [oh, ow]. */
NnVar *nn_resize_bilinear(Nn *nn, NnVar *x, int oh, int ow);
/* Crop rows [top, top+h), cols [left, left+w) of every image (same box for the batch), then
 * bilinear resize to [oh, ow] (align_corners=False): torchvision's resized_crop on a tensor. */
NnVar *nn_crop_resize(Nn *nn, NnVar *x, int top, int left, int h, int w, int oh, int ow);
/* torch.roll(x, shifts=(sh, sw), dims=(2,3)). */
NnVar *nn_roll(Nn *nn, NnVar *x, int sh, int sw);
/* Horizontal flip (dim 3). */
NnVar *nn_flip_w(Nn *nn, NnVar *x);
/* Mean softmax cross-entropy over the batch; labels: I64 tensor [N] (host memory);
 * label_smoothing as PyTorch's. */
NnVar *nn_cross_entropy(Nn *nn, NnVar *logits, const Tensor *labels, float label_smoothing);
/* Mean over the batch of -sum_k target[n,k] * log_softmax(logits)[n,k]; target [N,K] var (no grad). */
NnVar *nn_soft_cross_entropy(Nn *nn, NnVar *logits, NnVar *target);
/* KL(softmax(teacher/T) || softmax(student/T)), summed over classes, mean over the batch
 * ('batchmean'), no T^2 factor; no gradient to teacher. */
NnVar *nn_kl_div(Nn *nn, NnVar *student, NnVar *teacher, float T);
/* Sum of all elements (scalar) and mean. */
NnVar *nn_sum(Nn *nn, NnVar *x);
NnVar *nn_mean(Nn *nn, NnVar *x);

/* ---- data mixing (no gradient; act on values of NCHW batches and [N,K] targets) ---- */

/* MixUp: x <- lam*x + (1-lam)*x[perm]; same for y when y != NULL. */
void nn_mixup(Nn *nn, NnVar *x, NnVar *y, const int64_t *perm, float lam);
/* CutMix: box rows [y0,y1), cols [x0,x1) of each image replaced by that of perm[i]. */
void nn_cutmix(Nn *nn, NnVar *x, const int64_t *perm, int y0, int x0, int y1, int x1);

#endif

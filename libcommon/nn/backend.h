/* backend.h - the op table every device implements: memory plus the kernels behind nn.h.
 *
 * The tape (the .c files of libcommon/nn/) is device-agnostic: it checks shapes, records entries
 * and calls ctx->be->KERNEL. A backend fills one NnBackend; a NULL slot is an op the device lacks,
 * and calling it is a loud error (nn_be_missing), never a silent round trip to another device.
 *
 * Pointer arguments are device memory of the backend unless named `host_*`. Kernels named *_fwd
 * WRITE their outputs (=); kernels named *_bwd ACCUMULATE into the gradients they are given (+=),
 * and skip any gradient pointer that is NULL (a frozen weight costs no work). Reductions are
 * deterministic: the same inputs give the same bits for any thread count.
 *
 * Ownership: the backend owns its private state (impl) and frees it in destroy().
 */
#ifndef DD_NN_BACKEND_H
#define DD_NN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "libcommon/tensor/tensor.h"

/* Convolution geometry: x [n,cin,h,w], w [cout,cin/groups,kh,kw], y [n,cout,oh,ow]. */
typedef struct {
    int n, cin, h, w, cout, kh, kw, oh, ow, stride, pad, dil, groups;
} NnConvShape;

/* Floating-point operations of one convolution pass (forward, input gradient or weight gradient:
 * the same multiply-adds in another order), two per multiply-add, as FLOP counts are quoted
 * against a device's peak; bias and the other ops' elementwise work not counted. */
static inline double nn_conv_flops(const NnConvShape *s)
{
    return 2.0 * s->n * s->cout * s->oh * s->ow * (double)(s->cin / s->groups) * s->kh * s->kw;
}
/* The same of one linear pass over n rows (y = x w^T, dx = dy w or dw = dy^T x). */
static inline double nn_linear_flops(int n, int in, int out) { return 2.0 * n * in * (double)out; }

/* Pooling geometry over NCHW planes (np = n*c planes): kernel k, stride, pad. */
typedef struct {
    int64_t np;
    int h, w, oh, ow, k, stride, pad;
} NnPoolShape;

/* Max pooling's argmax offsets: kernels up to 15 wide, 255 for an empty window. */
enum { NN_POOL_KMAX = 15, NN_POOL_NONE = 255 };

/* Bilinear crop-resize geometry (align_corners=False): box [top,top+ch) x [left,left+cw) of each
 * [h,w] plane resized to [oh,ow]. */
typedef struct {
    int64_t np;
    int h, w, top, left, ch, cw, oh, ow;
} NnResample;

/* Broadcast b over a: a's shape (ndim dims) with b's strides (0 where b is broadcast). */
typedef struct {
    int ndim;
    int64_t shape[DD_MAXDIM];
    int64_t bstride[DD_MAXDIM];
    int64_t n, nb;                 /* numel of a and of b */
} NnBroadcast;

typedef enum { NN_ACT_RELU, NN_ACT_RELU6, NN_ACT_SILU, NN_ACT_SIGMOID, NN_ACT_HARDSWISH } NnAct;
/* No activation: for the bn_act slots only (the act slots never see it). */
#define NN_BN_NO_ACT ((NnAct)-1)
typedef enum { NN_BIN_ADD, NN_BIN_MUL } NnBinary;

typedef struct NnBackend NnBackend;
struct NnBackend {
    const char *name;
    DdDevice device;
    void *impl;                               /* the backend's private state */
    void (*destroy)(NnBackend *be);

    /* ---- memory: zero-filled alloc (NULL on failure, with dd_err), copies, zero ---- */
    void *(*alloc)(NnBackend *be, size_t bytes);
    void (*free)(NnBackend *be, void *p);
    void (*zero)(NnBackend *be, void *p, size_t bytes);
    void (*upload)(NnBackend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(NnBackend *be, void *host_dst, const void *src, size_t bytes);
    void (*copy)(NnBackend *be, void *dst, const void *src, size_t bytes);
    /* Optional: memory of undefined contents, released with free (the context's arena chunks,
     * whose every use writes or zeroes first). The CPU leaves it unmapped until first touched,
     * so a chunk's unused tail costs nothing. NULL: alloc serves. */
    void *(*alloc_uninit)(NnBackend *be, size_t bytes);
    /* Set by the engine (nn_new), not the backend: an op's temporaries (a device's low-precision
     * copies of conv operands, its library workspace) from the step's arena, so they take the
     * room that tensors freed instead of buffers of their own. tmp_put hands one back once the
     * op's work is queued: a backend that runs in order (one stream) may do so before it ran.
     * NULL when the backend is driven without a context (its own buffers serve). */
    void *(*tmp_get)(void *ctx, size_t bytes);
    void (*tmp_put)(void *ctx, void *p, size_t bytes);
    void *tmp_ctx;

    /* ---- elementwise ---- */
    /* dst += alpha * src over n elements. */
    void (*axpy)(NnBackend *be, int64_t n, float alpha, const float *src, float *dst);
    /* dst[i] += alpha * *scalar for i < n (the backward of sum / mean). */
    void (*fill_add)(NnBackend *be, int64_t n, float alpha, const float *scalar, float *dst);
    /* y = s * x. */
    void (*scale_fwd)(NnBackend *be, int64_t n, float s, const float *x, float *y);
    void (*act_fwd)(NnBackend *be, NnAct act, int64_t n, const float *x, float *y);
    /* Reads x for silu/relu6/hardswish, y for relu/sigmoid, never the other (which may be NULL:
     * the engine keeps only the one read). */
    void (*act_bwd)(NnBackend *be, NnAct act, int64_t n, const float *x, const float *y,
                    const float *dy, float *dx);
    /* Optional (NULL: the front-end accumulates with act_bwd): g = dy on entry, dx on return. */
    void (*act_bwd_inplace)(NnBackend *be, NnAct act, int64_t n, const float *x, const float *y,
                            float *g);
    void (*binary_fwd)(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, float *y);
    /* mul reads a (for db) and b (for da); add reads neither (they may be NULL). */
    void (*binary_bwd)(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, const float *dy, float *da, float *db);
    /* (x - mean[c]) / std[c] over planes of size hw; host_mean/host_std have c entries. */
    void (*normalize_fwd)(NnBackend *be, int64_t n, int c, int64_t hw, const float *host_mean,
                          const float *host_std, const float *x, float *y);
    void (*normalize_bwd)(NnBackend *be, int64_t n, int c, int64_t hw, const float *host_std,
                          const float *dy, float *dx);
    /* Inverted dropout: keep element i when philox(key, ctr_hi, i) >= p; mask gets 0 or 1/(1-p). */
    void (*dropout_fwd)(NnBackend *be, int64_t n, float p, uint64_t key, uint64_t ctr_hi,
                        const float *x, float *y, float *mask);
    void (*mul_bwd)(NnBackend *be, int64_t n, const float *mask, const float *dy, float *dx);

    /* ---- layout ---- */
    /* For r < rows: dst[r*ldd .. +len] (= or +=) src[r*lds .. +len]. */
    void (*block_copy)(NnBackend *be, int64_t rows, int64_t len, const float *src, int64_t lds,
                       float *dst, int64_t ldd, int accumulate);
    /* Output channel i*groups + j <- input channel j*(c/groups) + i; inverse when inverse = 1. */
    void (*shuffle)(NnBackend *be, int64_t n, int c, int64_t hw, int groups, int inverse,
                    int accumulate, const float *x, float *y);
    /* torch.roll over the last two dims of np planes [h,w]. */
    void (*roll)(NnBackend *be, int64_t np, int h, int w, int sh, int sw, int accumulate,
                 const float *x, float *y);
    void (*flip_w)(NnBackend *be, int64_t np, int h, int w, int accumulate, const float *x, float *y);
    void (*resample_fwd)(NnBackend *be, const NnResample *r, const float *x, float *y);
    void (*resample_bwd)(NnBackend *be, const NnResample *r, const float *dy, float *dx);

    /* ---- convolution and linear ---- */
    void (*conv2d_fwd)(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                       const float *b, float *y);
    void (*conv2d_bwd_data)(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                            float *dx);
    /* dw and/or db may be NULL. */
    void (*conv2d_bwd_filter)(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                              float *dw, float *db);
    /* y [n,out] = x [n,in] w^T [in,out] + b. */
    void (*linear_fwd)(NnBackend *be, int n, int in, int out, const float *x, const float *w,
                       const float *b, float *y);
    /* dx, dw, db may each be NULL; x is read only for dw, w only for dx (the other may be NULL:
     * the engine keeps only what is read). */
    void (*linear_bwd)(NnBackend *be, int n, int in, int out, const float *dy, const float *x,
                       const float *w, float *dx, float *dw, float *db);

    /* ---- normalization ---- */
    /* Train: batch mean and biased var per channel into mean/invstd (c floats each) and y; when
     * rm/rv are non-NULL they are updated with momentum (unbiased variance, as PyTorch). */
    void (*bn_fwd_train)(NnBackend *be, int n, int c, int64_t hw, float eps, float momentum,
                         const float *x, const float *w, const float *b, float *y, float *mean,
                         float *invstd, float *rm, float *rv);
    /* Eval: normalize with rm, rv; fills mean/invstd (c floats) for the backward. */
    void (*bn_fwd_eval)(NnBackend *be, int n, int c, int64_t hw, float eps, const float *x,
                        const float *w, const float *b, const float *rm, const float *rv, float *y,
                        float *mean, float *invstd);
    /* train = 1: the full batch-statistics formula; 0: affine (statistics are constants). */
    void (*bn_bwd)(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                   const float *w, const float *mean, const float *invstd, const float *dy,
                   float *dx, float *dw, float *db);
    /* Optional (NULL: the front-end accumulates with bn_bwd): g = dy on entry, dx on return. */
    void (*bn_bwd_inplace)(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                           const float *w, const float *mean, const float *invstd, float *g,
                           float *dw, float *db);
    /* loss[0] = ||mean_c(x) - rm|| + ||var_c(x) - rv|| (biased var); save gets 3c+2 floats for the
     * backward (it does not read rm/rv again, so later running-stat updates do not matter). */
    void (*bn_stat_fwd)(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *rm,
                        const float *rv, float *loss, float *save);
    void (*bn_stat_bwd)(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *save,
                        const float *dloss, float *dx);
    /* Optional (NULL: the front-end runs bn_fwd_*, bn_stat_fwd, add and act_fwd):
     * y = act(batchnorm(x) + r) in one pass, r (x's shape) or NULL for none, act NN_ACT_RELU,
     * NN_ACT_RELU6 or NN_BN_NO_ACT (then r is NULL); train = 1
     * as bn_fwd_train (rm/rv updated when non-NULL), 0 as bn_fwd_eval (rm/rv read). stat_save:
     * NULL, or (eval only) bn_stat_fwd's loss and save of x, from the same pass. */
    void (*bn_act_fwd)(NnBackend *be, NnAct act, int train, int n, int c, int64_t hw, float eps,
                       float momentum, const float *x, const float *r, const float *w,
                       const float *b, float *rm, float *rv, float *y, float *mean, float *invstd,
                       float *stat_loss, float *stat_save);
    /* Its backward, given its output y: dz = dy masked by the activation's rule; dr += dz (dr
     * NULL: none); dx of dz by bn_bwd's formula: dx == dy in place (written), else dx +=, dx
     * NULL none; then, where stat_save is not NULL, bn_stat_bwd's dx += of stat_save and
     * stat_dloss (the statistics loss of x) in the same pass. y may be NULL where the forward
     * had no residual: the mask then comes from z = (x - mean) invstd w + b recomputed with the
     * forward's float operations (the same mask; b as the forward's, NULL for 0). */
    void (*bn_act_bwd)(NnBackend *be, NnAct act, int train, int n, int c, int64_t hw,
                       const float *x, const float *y, const float *w, const float *b,
                       const float *mean,
                       const float *invstd, const float *dy, float *dx, float *dr, float *dw,
                       float *db, const float *stat_save, const float *stat_dloss);

    /* ---- pooling ---- */
    /* idx (NULL: none) gets each output's argmax as its offset in the window, ki * k + kj (k at
     * most NN_POOL_KMAX; NN_POOL_NONE where a window holds no input), a byte where an index
     * into the plane took four: max pooling keeps it for its backward. */
    void (*maxpool_fwd)(NnBackend *be, const NnPoolShape *s, const float *x, float *y, uint8_t *idx);
    void (*maxpool_bwd)(NnBackend *be, const NnPoolShape *s, const uint8_t *idx, const float *dy,
                        float *dx);
    void (*avgpool_fwd)(NnBackend *be, const NnPoolShape *s, const float *x, float *y);
    void (*avgpool_bwd)(NnBackend *be, const NnPoolShape *s, const float *dy, float *dx);
    void (*adaptive_avgpool_fwd)(NnBackend *be, const NnPoolShape *s, const float *x, float *y);
    void (*adaptive_avgpool_bwd)(NnBackend *be, const NnPoolShape *s, const float *dy, float *dx);

    /* ---- reductions and losses (scalar outputs are 1 float of device memory) ---- */
    /* y[0] = scale * sum(x). */
    void (*sum_fwd)(NnBackend *be, int64_t n, float scale, const float *x, float *y);
    /* Hard-label cross-entropy with label smoothing eps; host_labels [n] in [0,k). */
    void (*ce_fwd)(NnBackend *be, int n, int k, float eps, const float *logits,
                   const int64_t *host_labels, float *loss);
    void (*ce_bwd)(NnBackend *be, int n, int k, float eps, const float *logits,
                   const int64_t *host_labels, const float *dloss, float *dlogits);
    void (*soft_ce_fwd)(NnBackend *be, int n, int k, const float *logits, const float *target,
                        float *loss);
    void (*soft_ce_bwd)(NnBackend *be, int n, int k, const float *logits, const float *target,
                        const float *dloss, float *dlogits);
    void (*kl_fwd)(NnBackend *be, int n, int k, float T, const float *student,
                   const float *teacher, float *loss);
    void (*kl_bwd)(NnBackend *be, int n, int k, float T, const float *student,
                   const float *teacher, const float *dloss, float *dstudent);

    /* ---- data mixing (in place, no gradient); host_perm [n] ---- */
    /* x <- lam x + (1-lam) x[perm] for n rows of `row` elements. */
    void (*mixup)(NnBackend *be, int64_t n, int64_t row, const int64_t *host_perm, float lam,
                  float *x);
    void (*cutmix)(NnBackend *be, int n, int c, int h, int w, const int64_t *host_perm, int y0,
                   int x0, int y1, int x1, float *x);

    /* ---- precision and optimizer updates (optional: NULL on the CPU backend, whose optimizer
     * runs optim.c's host loops and which computes in fp32 only) ---- */
    /* Storage/math precision of conv2d and linear (an NnPrecision of nn.h); 0, or -1 with dd_err
     * when the device cannot. Everything else stays fp32. */
    int (*set_precision)(NnBackend *be, int precision);
    /* optim.c's sgd_update / adam_update / clamp_update on device memory, same arguments and
     * float arithmetic; buf may be NULL (no momentum). */
    void (*sgd_step)(NnBackend *be, int64_t n, float *p, const float *g, float *buf, float lr,
                     float mom, float wd, int nesterov);
    void (*adam_step)(NnBackend *be, int64_t n, float *p, const float *g, float *m, float *v,
                      float b1, float omb1, float b2, float omb2, float step_size, float bc2s,
                      float eps, float wd, float decay);
    void (*clamp)(NnBackend *be, int64_t n, float lo, float hi, float *p);
    /* g *= inv; *flag (device int) set to 1 where a result is not finite (loss scaling). */
    void (*unscale)(NnBackend *be, int64_t n, float inv, float *g, int *flag);
    /* p [n, c, hw] clamped per channel to [lo[ch], hi[ch]]; lo and hi are host arrays of c. */
    void (*clamp_channels)(NnBackend *be, int64_t n, int c, int64_t hw, const float *lo,
                           const float *hi, float *p);
    /* Hands cached device memory back to the driver (optional; the arena calls it after it
     * frees the chunks of a step that outgrew its memory). */
    void (*trim)(NnBackend *be);
    /* Optional: marks the span an external profiler records (CUDA: cudaProfilerStart/Stop). */
    void (*profile)(NnBackend *be, int on);
    /* Optional: returns when the work queued so far is done (NULL: every kernel returns done, as
     * the CPU's); DD_NN_PROFILE times each call between two of these. */
    void (*sync)(NnBackend *be);
};

/* The CPU backend with `threads` worker threads (>= 1). Never NULL. */
NnBackend *nn_cpu_backend_new(int threads);
/* The CUDA backend, or NULL with dd_err and dd_err_code(DD_EXIT_DEVICE) when it is unavailable
 * (no device, or built without CUDA). */
NnBackend *nn_cuda_backend_new(int threads);
/* The CUDA backend's convolution plans so far that DD_CUDA_NHWC=1 asked to run NHWC: *nhwc of them do, and
 * *nchw run NCHW since cuDNN listed no deterministic NHWC algorithm for their shape (a test's check that
 * the NHWC path ran). Zeros for another backend. */
void nn_cuda_conv_layouts(NnBackend *be, int *nhwc, int *nchw);

#endif

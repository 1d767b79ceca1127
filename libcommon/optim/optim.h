/* optim.h - optimizers and learning-rate schedules on NnParam arrays: SGD, Adam, AdamW (the
 * semantics of torch.optim's), and the cosine schedules of ddpipe-method(7) sections 2 and 4.
 *
 * An optimizer does not care whether a param is a weight (evaltrain) or a batch of pixels
 * (recover): it reads var.v and var.g and keeps its state in the param itself (opt_m, opt_v,
 * opt_step), so "a fresh optimizer" is optim_reset on the same params.
 *
 * Weight decay applies to params with decay = 1 (conv and linear weights) unless the config says
 * decay_all = 1 (torch's behaviour for a single param group holding everything).
 *
 * Ownership: the state buffers are allocated on a param's first step (zero-filled, on the
 * param's device) and freed by optim_reset. Params whose gradient was never allocated are
 * skipped (torch skips params whose .grad is None).
 * Errors: -1 with dd_err when the context's device has no optimizer kernels.
 */
#ifndef DD_OPTIM_H
#define DD_OPTIM_H

#include "libcommon/nn/nn.h"

typedef enum { OPTIM_SGD = 0, OPTIM_ADAM = 1, OPTIM_ADAMW = 2 } OptimKind;

typedef struct {
    OptimKind kind;
    double lr;             /* doubles, as torch's hyper-parameters are Python floats */
    double momentum;       /* SGD; 0 = plain SGD (dampening is always 0) */
    int nesterov;          /* SGD; needs momentum > 0 */
    double beta1, beta2, eps;  /* Adam, AdamW */
    double weight_decay;   /* SGD, Adam: L2 added to the gradient; AdamW: p -= lr * wd * p */
    int decay_all;         /* 1: decay every param; 0: only params with decay = 1 */
} OptimConf;

/* Configurations with torch.optim's defaults for the unnamed fields (decay_all = 0). */
OptimConf optim_sgd(double lr, double momentum, double weight_decay, int nesterov);
OptimConf optim_adam(double lr, double beta1, double beta2, double eps, double weight_decay);
OptimConf optim_adamw(double lr, double beta1, double beta2, double eps, double weight_decay);

/* One step on params[0..n) with their current gradients (the gradients are not zeroed).
 * Params with requires_grad = 0 or no gradient are left alone. Returns 0 or -1. */
int optim_step(Nn *nn, const OptimConf *c, NnParam **params, int n);

/* Frees the optimizer state of params[0..n) (moments and step count): the next step starts as a
 * new optimizer would. Safe on params that never stepped. */
void optim_reset(NnParam **params, int n);

/* Clamps the values of `p` to [lo, hi] (recover's pixels after each step). Returns 0 or -1. */
int optim_clamp(Nn *nn, NnParam *p, float lo, float hi);

/* Dynamic loss scaling for fp16 (torch.amp.GradScaler's rule): backward from scale * loss
 * (nn_backward_seed), then optim_unscale divides the gradients by the scale and says whether
 * they are all finite; a step with an infinite or NaN gradient is skipped and the scale halved,
 * and after `interval` good steps in a row the scale doubles. Powers of two: unscaling is exact. */
typedef struct {
    float scale;           /* 65536 to start */
    float growth, backoff; /* 2, 0.5 */
    int interval, good;    /* 2000; good steps since the last change */
    int64_t skipped;       /* steps skipped so far */
} OptimScaler;

OptimScaler optim_scaler_new(void);
/* Unscales the gradients of params[0..n) and updates the scaler: 1 when the step is to be taken,
 * 0 when it is to be skipped (a gradient was not finite), -1 with dd_err. */
int optim_unscale(Nn *nn, OptimScaler *s, NnParam **params, int n);

/* Cosine schedules, evaluated at the start of step/epoch `t` of `total`:
 * optim_cosine_lr:  lr * 0.5 * (1 + cos(pi * t / (total * eta)))   (ddpipe-method(7) 4; eta 1 or 2)
 * optim_recover_lr: 0.5 * (1 + cos(pi * t / total)) * lr           (ddpipe-method(7) 2; global step) */
double optim_cosine_lr(double lr, int64_t t, int64_t total, double eta);
double optim_recover_lr(double lr, int64_t t, int64_t total);

#endif

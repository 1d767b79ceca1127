/* optim.c - SGD, Adam and AdamW steps with torch.optim's arithmetic (single-tensor path of
 * PyTorch 1.13: the same order of float operations, hyper-parameters rounded to float where torch
 * passes them to a float kernel), and the cosine schedules.
 *
 * The per-element updates are the *_update functions: plain float loops over host memory. On a
 * device backend the same updates run as its kernels (nn_optim_*, state from nn_state_alloc);
 * optim_step only decides per param what to call. */
#include "libcommon/optim/optim.h"

#include <math.h>
#include <stdlib.h>

OptimConf optim_sgd(double lr, double momentum, double weight_decay, int nesterov)
{
    return (OptimConf){.kind = OPTIM_SGD, .lr = lr, .momentum = momentum,
                       .weight_decay = weight_decay, .nesterov = nesterov};
}

OptimConf optim_adam(double lr, double beta1, double beta2, double eps, double weight_decay)
{
    return (OptimConf){.kind = OPTIM_ADAM, .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                       .weight_decay = weight_decay};
}

OptimConf optim_adamw(double lr, double beta1, double beta2, double eps, double weight_decay)
{
    return (OptimConf){.kind = OPTIM_ADAMW, .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                       .weight_decay = weight_decay};
}

/* p[n] -= lr * d, d = g + wd * p; with momentum: buf = mom * buf + d (buf starts at 0, which
 * equals torch's clone of d on the first step), d = nesterov ? d + mom * buf : buf. */
static void sgd_update(float *p, const float *g, float *buf, int64_t n, float lr, float mom,
                       float wd, int nesterov)
{
    for (int64_t i = 0; i < n; i++) {
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        if (buf) {
            buf[i] = buf[i] * mom + d;
            d = nesterov ? d + mom * buf[i] : buf[i];
        }
        p[i] = p[i] + (-lr) * d;
    }
}

/* Adam on n elements: m, v the moments; step_size = lr / (1 - b1^t), bc2s = sqrt(1 - b2^t);
 * p += -step_size * m / (sqrt(v) / bc2s + eps). wd: L2 term added to the gradient (Adam);
 * decay: p *= 1 - lr * wd' first (AdamW, 1.0f when off). */
static void adam_update(float *p, const float *g, float *m, float *v, int64_t n, float b1,
                        float omb1, float b2, float omb2, float step_size, float bc2s, float eps,
                        float wd, float decay)
{
    for (int64_t i = 0; i < n; i++) {
        if (decay != 1.0f) p[i] = p[i] * decay;
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        m[i] = m[i] * b1 + omb1 * d;
        v[i] = v[i] * b2 + omb2 * d * d;
        float denom = sqrtf(v[i]) / bc2s + eps;
        p[i] = p[i] + (-step_size) * m[i] / denom;
    }
}

static void clamp_update(float *p, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) p[i] = p[i] < lo ? lo : (p[i] > hi ? hi : p[i]);
}

/* Zeroed state on the param's device: host calloc on CPU, nn_state_alloc elsewhere (opt_ctx
 * remembers which, for optim_reset). NULL with dd_err when device memory runs out. */
static float *state_alloc(Nn *nn, NnParam *prm, float **slot, int64_t n)
{
    if (*slot) return *slot;
    if (nn_device(nn) == DD_CPU) return *slot = dd_calloc((size_t)n, sizeof(float));
    prm->opt_ctx = nn;
    return *slot = nn_state_alloc(nn, (size_t)n);
}

static int step_one(Nn *nn, const OptimConf *c, NnParam *prm)
{
    int64_t n = tensor_numel(&prm->var.v);
    float *p = prm->var.v.data;
    const float *g = prm->var.g.data;
    int decays = c->decay_all || prm->decay, host = nn_device(nn) == DD_CPU;
    float wd = decays ? (float)c->weight_decay : 0.0f;
    prm->opt_step++;
    switch (c->kind) {
    case OPTIM_SGD: {
        float *buf = c->momentum != 0.0 ? state_alloc(nn, prm, &prm->opt_m, n) : NULL;
        if (c->momentum != 0.0 && !buf) return -1;
        if (!host)
            return nn_optim_sgd(nn, n, p, g, buf, (float)c->lr, (float)c->momentum, wd,
                                c->nesterov);
        sgd_update(p, g, buf, n, (float)c->lr, (float)c->momentum, wd, c->nesterov);
        return 0;
    }
    case OPTIM_ADAM:
    case OPTIM_ADAMW: {
        double t = (double)prm->opt_step;
        double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
        float decay = 1.0f;
        if (c->kind == OPTIM_ADAMW) {
            decay = decays ? (float)(1.0 - c->lr * c->weight_decay) : 1.0f;
            wd = 0.0f;
        }
        float *m = state_alloc(nn, prm, &prm->opt_m, n), *v = state_alloc(nn, prm, &prm->opt_v, n);
        if (!m || !v) return -1;
        if (!host)
            return nn_optim_adam(nn, n, p, g, m, v, (float)c->beta1, (float)(1.0 - c->beta1),
                                 (float)c->beta2, (float)(1.0 - c->beta2), (float)(c->lr / bc1),
                                 (float)sqrt(bc2), (float)c->eps, wd, decay);
        adam_update(p, g, m, v, n, (float)c->beta1, (float)(1.0 - c->beta1), (float)c->beta2,
                    (float)(1.0 - c->beta2), (float)(c->lr / bc1), (float)sqrt(bc2), (float)c->eps,
                    wd, decay);
        return 0;
    }
    }
    return dd_err("optim: unknown optimizer kind %d", (int)c->kind);
}

int optim_step(Nn *nn, const OptimConf *c, NnParam **params, int n)
{
    if (c->kind == OPTIM_SGD && c->nesterov && c->momentum <= 0.0)
        return dd_err("optim: nesterov momentum requires momentum > 0");
    for (int i = 0; i < n; i++) {
        NnParam *p = params[i];
        if (!p->var.requires_grad || !p->var.g.data) continue;
        if (p->var.v.dtype != DD_F32 || p->var.g.dtype != DD_F32)
            return dd_err("optim: %s: parameters and gradients must be F32", p->name);
        if (step_one(nn, c, p) < 0) return -1;
    }
    return 0;
}

void optim_reset(NnParam **params, int n)
{
    for (int i = 0; i < n; i++) {
        if (params[i]->opt_ctx) {
            nn_state_free(params[i]->opt_ctx, params[i]->opt_m);
            nn_state_free(params[i]->opt_ctx, params[i]->opt_v);
        } else {
            free(params[i]->opt_m);
            free(params[i]->opt_v);
        }
        params[i]->opt_m = params[i]->opt_v = NULL;
        params[i]->opt_ctx = NULL;
        params[i]->opt_step = 0;
    }
}

int optim_clamp(Nn *nn, NnParam *p, float lo, float hi)
{
    if (nn_device(nn) != DD_CPU)
        return nn_optim_clamp(nn, tensor_numel(&p->var.v), lo, hi, p->var.v.data);
    clamp_update(p->var.v.data, tensor_numel(&p->var.v), lo, hi);
    return 0;
}

OptimScaler optim_scaler_new(void)
{
    return (OptimScaler){.scale = 65536.0f, .growth = 2.0f, .backoff = 0.5f, .interval = 2000};
}

int optim_unscale(Nn *nn, OptimScaler *s, NnParam **params, int n)
{
    const float inv = 1.0f / s->scale;
    int finite = 1;
    if (nn_device(nn) == DD_CPU) {
        for (int i = 0; i < n; i++) {
            if (!params[i]->var.requires_grad || !params[i]->var.g.data) continue;
            float *g = params[i]->var.g.data;
            for (int64_t j = 0, m = tensor_numel(&params[i]->var.v); j < m; j++) {
                g[j] *= inv;
                finite &= isfinite(g[j]) != 0;
            }
        }
    } else {
        enum { BATCH = 64 };
        float *g[BATCH];
        int64_t m[BATCH];
        for (int i = 0; i < n; i += BATCH) {
            int k = 0;
            for (int j = i; j < n && j < i + BATCH; j++, k++) {
                int on = params[j]->var.requires_grad && params[j]->var.g.data;
                g[k] = on ? params[j]->var.g.data : NULL;
                m[k] = tensor_numel(&params[j]->var.v);
            }
            int r = nn_grads_unscale(nn, inv, g, m, k);
            if (r < 0) return -1;
            finite &= r;
        }
    }
    if (!finite) {
        s->scale *= s->backoff;
        s->good = 0;
        s->skipped++;
        return 0;
    }
    if (++s->good == s->interval) { /* as torch's _amp_update_scale_: never grown to infinity */
        if (isfinite(s->scale * s->growth)) s->scale *= s->growth;
        s->good = 0;
    }
    return 1;
}

double optim_cosine_lr(double lr, int64_t t, int64_t total, double eta)
{
    return lr * 0.5 * (1.0 + cos(M_PI * (double)t / ((double)total * eta)));
}

double optim_recover_lr(double lr, int64_t t, int64_t total)
{
    return 0.5 * (1.0 + cos(M_PI * (double)t / (double)total)) * lr;
}

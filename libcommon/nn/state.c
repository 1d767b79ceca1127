/* state.c - the context's device-facing extras: precision of conv/linear, optimizer state
 * memory and the optimizer's per-element updates dispatched to the backend (kept apart from
 * context.c so optim.c can run on any device without seeing the backend table). */
#include "libcommon/nn/nn_impl.h"

#include <string.h>

static int no_kernel(const Nn *nn, const char *what)
{
    return dd_err_device("nn: backend %s has no %s", nn->be->name, what);
}

int nn_set_precision(Nn *nn, NnPrecision p)
{
    if (!nn->be->set_precision) {
        if (p == NN_FP32) return 0;
        return no_kernel(nn, "mixed precision (fp32 only)");
    }
    if (nn->be->set_precision(nn->be, (int)p) < 0) return -1;
    nn->precision = (int)p;
    return 0;
}

NnPrecision nn_precision(const Nn *nn) { return (NnPrecision)nn->precision; }

int nn_grads_unscale(Nn *nn, float inv, float *const *g, const int64_t *n, int count)
{
    if (!nn->be->unscale) return no_kernel(nn, "gradient unscale kernel");
    int *flag = nn_dev_alloc(nn, sizeof(int), 1), bad = 0;
    for (int i = 0; i < count; i++)
        if (g[i]) nn->be->unscale(nn->be, n[i], inv, g[i], flag);
    nn->be->download(nn->be, &bad, flag, sizeof bad);
    return bad ? 0 : 1;
}

const char *nn_precision_name(NnPrecision p)
{
    return p == NN_FP16 ? "fp16" : p == NN_BF16 ? "bf16" : "fp32";
}

int nn_precision_parse(const char *s)
{
    if (!strcmp(s, "fp32")) return NN_FP32;
    if (!strcmp(s, "fp16")) return NN_FP16;
    if (!strcmp(s, "bf16")) return NN_BF16;
    return -1;
}

void nn_check_device_opts(const char *device, const char *precision)
{
    if (strcmp(device, "cpu") && strcmp(device, "cuda") && strcmp(device, "auto"))
        dd_die(DD_EXIT_USAGE, "--device: want cpu, cuda or auto, not '%s'", device);
    int p = nn_precision_parse(precision);
    if (p < 0) dd_die(DD_EXIT_USAGE, "--precision: want fp32, fp16 or bf16, not '%s'", precision);
    if (p != NN_FP32 && !strcmp(device, "cpu"))
        dd_die(DD_EXIT_USAGE, "--precision %s needs -d cuda (the CPU computes in fp32)", precision);
}

void nn_use_precision(Nn *nn, const char *option)
{
    int p = nn_precision_parse(option);
    if (p < 0) dd_die(DD_EXIT_USAGE, "--precision: want fp32, fp16 or bf16, not '%s'", option);
    if (p == NN_FP32) return;
    if (nn->device == DD_CPU) {   /* -d auto found no device: the CPU computes in fp32 */
        dd_warn("--precision %s: no CUDA device, computing in fp32 on the CPU", option);
        return;
    }
    if (nn_set_precision(nn, (NnPrecision)p) < 0) dd_die_err(DD_EXIT_DEVICE);
}

float *nn_state_alloc(Nn *nn, size_t n)
{
    float *p = nn->be->alloc(nn->be, (n ? n : 1) * sizeof(float));
    if (!p) dd_err_code(nn_oom_exit(nn->be));
    return p;
}

void nn_state_free(Nn *nn, float *p)
{
    if (p) nn->be->free(nn->be, p);
}

int nn_optim_sgd(Nn *nn, int64_t n, float *p, const float *g, float *buf, float lr, float mom,
                 float wd, int nesterov)
{
    if (!nn->be->sgd_step) return no_kernel(nn, "SGD kernel");
    nn->be->sgd_step(nn->be, n, p, g, buf, lr, mom, wd, nesterov);
    return 0;
}

int nn_optim_adam(Nn *nn, int64_t n, float *p, const float *g, float *m, float *v, float b1,
                  float omb1, float b2, float omb2, float step_size, float bc2s, float eps,
                  float wd, float decay)
{
    if (!nn->be->adam_step) return no_kernel(nn, "Adam kernel");
    nn->be->adam_step(nn->be, n, p, g, m, v, b1, omb1, b2, omb2, step_size, bc2s, eps, wd, decay);
    return 0;
}

int nn_optim_clamp(Nn *nn, int64_t n, float lo, float hi, float *p)
{
    if (!nn->be->clamp) return no_kernel(nn, "clamp kernel");
    nn->be->clamp(nn->be, n, lo, hi, p);
    return 0;
}

int nn_optim_clamp_channels(Nn *nn, int64_t n, int c, int64_t hw, const float *lo, const float *hi,
                            float *p)
{
    if (!nn->be->clamp_channels) return no_kernel(nn, "per-channel clamp kernel");
    nn->be->clamp_channels(nn->be, n, c, hw, lo, hi, p);
    return 0;
}

/* optim.cu - CUDA optimizer updates and clamp: libcommon/optim/optim.c's sgd_update,
 * adam_update and clamp_update per element, the same float operations in the same order
 * (kernels compiled without FMA contraction, so they round as the CPU loops). */
#include "libcommon/nn/cuda/cuda.h"
#include "libcommon/nn/cuda/kern_mix.h"

__global__ static void k_sgd(int64_t n, float *p, const float *g, float *buf, float lr, float mom,
                             float wd, int nesterov)
{
    CU_FOR(i, n) {
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        if (buf) {
            buf[i] = buf[i] * mom + d;
            d = nesterov ? d + mom * buf[i] : buf[i];
        }
        p[i] = p[i] + (-lr) * d;
    }
}

static void sgd_step(NnBackend *be, int64_t n, float *p, const float *g, float *buf, float lr,
                     float mom, float wd, int nesterov)
{
    k_sgd<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, p, g, buf, lr, mom, wd, nesterov);
    CU_LAUNCHED();
}

__global__ static void k_adam(int64_t n, float *p, const float *g, float *m, float *v, float b1,
                              float omb1, float b2, float omb2, float step_size, float bc2s,
                              float eps, float wd, float decay)
{
    CU_FOR(i, n) {
        if (decay != 1.0f) p[i] = p[i] * decay;
        float d = g[i];
        if (wd != 0.0f) d = d + wd * p[i];
        m[i] = m[i] * b1 + omb1 * d;
        v[i] = v[i] * b2 + omb2 * d * d;
        float denom = sqrtf(v[i]) / bc2s + eps;
        p[i] = p[i] + (-step_size) * m[i] / denom;
    }
}

static void adam_step(NnBackend *be, int64_t n, float *p, const float *g, float *m, float *v,
                      float b1, float omb1, float b2, float omb2, float step_size, float bc2s,
                      float eps, float wd, float decay)
{
    k_adam<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, p, g, m, v, b1, omb1, b2, omb2,
                                                                 step_size, bc2s, eps, wd, decay);
    CU_LAUNCHED();
}

__global__ static void k_clamp(int64_t n, float lo, float hi, float *p)
{
    CU_FOR(i, n) p[i] = p[i] < lo ? lo : (p[i] > hi ? hi : p[i]);
}

static void clamp(NnBackend *be, int64_t n, float lo, float hi, float *p)
{
    k_clamp<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, lo, hi, p);
    CU_LAUNCHED();
}

/* g *= inv; any non-finite result sets *flag (every writer writes 1: no atomics needed). */
__global__ static void k_unscale(int64_t n, float inv, float *g, int *flag)
{
    CU_FOR(i, n) {
        float v = g[i] * inv;
        g[i] = v;
        if (!isfinite(v)) *flag = 1;
    }
}

static void unscale(NnBackend *be, int64_t n, float inv, float *g, int *flag)
{
    k_unscale<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, inv, g, flag);
    CU_LAUNCHED();
}

/* p [n, C, hw]: plane (image, channel) = blockIdx.y (strided), elements over x (kern_mix.h). */
__global__ static void k_clamp_channels(int64_t planes, int C, int64_t hw, const float *lo,
                                        const float *hi, float *p)
{
    cc_thread(planes, C, hw, lo, hi, p, blockIdx.x, blockIdx.y, gridDim.x, gridDim.y, (int)blockDim.x,
              (int)threadIdx.x);
}

static void clamp_channels(NnBackend *be, int64_t n, int c, int64_t hw, const float *lo,
                           const float *hi, float *p)
{
    CuImpl *ci = cu_impl(be);
    size_t bytes = (size_t)c * sizeof(float), off = (bytes + 15) & ~(size_t)15;
    cu_buf(ci, &ci->stage, off + bytes);   /* grown first: growing would drop what is staged */
    const float *dlo = (const float *)cu_stage(ci, 0, lo, bytes);
    const float *dhi = (const float *)cu_stage(ci, off, hi, bytes);
    unsigned gx, gy;
    cc_grid(n * c, hw, CU_THREADS, &gx, &gy);
    k_clamp_channels<<<dim3(gx, gy), CU_THREADS, 0, ci->stream>>>(n * c, c, hw, dlo, dhi, p);
    CU_LAUNCHED();
}

void cu_optim_init(NnBackend *be)
{
    be->clamp_channels = clamp_channels;
    be->unscale = unscale;
    be->sgd_step = sgd_step;
    be->adam_step = adam_step;
    be->clamp = clamp;
}

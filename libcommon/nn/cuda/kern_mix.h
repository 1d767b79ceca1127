/* kern_mix.h - one thread's work of loss.cu's MixUp and CutMix kernels and of optim.cu's
 * per-channel clamp, as functions of the element (or block and thread) index: the kernels call
 * them on the GPU, and tests/unit/test_cuda_emul.c calls them on the CPU over every index of the
 * launch against the CPU backend (MixUp, CutMix) or a plain loop (the clamp), so the index
 * arithmetic is checked where there is no GPU. Plain C that nvcc compiles as C++ too. */
#ifndef DD_NN_CUDA_KERN_MIX_H
#define DD_NN_CUDA_KERN_MIX_H

#include <stdint.h>

#include "libcommon/nn/cuda/kern.h"

/* MixUp: element e of the n x row batch, lam of itself and (1 - lam) of image perm[e / row]'s
 * element at the same place; orig is the batch before mixing. */
DD_HD static inline float mix_up(int64_t e, int64_t row, const int64_t *perm, float lam, const float *orig)
{
    const int64_t i = e / row, k = e - i * row;
    return lam * orig[e] + (1.0f - lam) * orig[perm[i] * row + k];
}

/* CutMix: element e of the n x c x bh x bw boxes (rows y0.., columns x0.. of every plane): the
 * pixel of image perm[i] at the same place replaces image i's. */
DD_HD static inline void cut_mix(int64_t e, int c, int h, int w, const int64_t *perm, int y0, int x0, int bh,
                                 int bw, const float *orig, float *x)
{
    const int64_t p = e / ((int64_t)bh * bw), box = e - p * bh * bw;
    const int i = (int)(p / c), ch = (int)(p - (int64_t)i * c);
    const int r = y0 + (int)(box / bw), col = x0 + (int)(box % bw);
    const int64_t off = ((int64_t)ch * h + r) * w + col, img = (int64_t)c * h * w;
    x[i * img + off] = orig[perm[i] * img + off];
}

enum { CC_MAX_GX = 64, CC_MAX_GY = 65535 };

/* The clamp's launch over planes (image, channel) of hw pixels, threads a block: grid.x blocks
 * of a plane's pixels (at most CC_MAX_GX), grid.y planes (at most CC_MAX_GY, the rest by
 * striding); at least 1 each, so that no planes (n c = 0) is an empty loop, not a launch error. */
static inline void cc_grid(int64_t planes, int64_t hw, int threads, unsigned *gx, unsigned *gy)
{
    int64_t x = (hw + threads - 1) / threads;
    *gx = (unsigned)(x < 1 ? 1 : x > (int64_t)CC_MAX_GX ? (int64_t)CC_MAX_GX : x);
    *gy = (unsigned)(planes < 1 ? 1 : planes > (int64_t)CC_MAX_GY ? (int64_t)CC_MAX_GY : planes);
}

/* Block (bx, by) of a (gx, gy) grid, thread tx of threads: p [planes, hw] clamped to [lo[c], hi[c]]
 * of its channel c = plane % C, planes by + k gy, pixels bx threads + tx + k gx threads. */
DD_HD static inline void cc_thread(int64_t planes, int C, int64_t hw, const float *lo, const float *hi, float *p,
                                   unsigned bx, unsigned by, unsigned gx, unsigned gy, int threads, int tx)
{
    for (int64_t pl = by; pl < planes; pl += gy) {
        const int c = (int)(pl % C);
        const float l = lo[c], u = hi[c];
        float *q = p + pl * hw;
        for (int64_t j = (int64_t)bx * threads + tx; j < hw; j += (int64_t)gx * threads)
            q[j] = q[j] < l ? l : (q[j] > u ? u : q[j]);
    }
}

#endif

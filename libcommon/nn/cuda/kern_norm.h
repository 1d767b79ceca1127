/* kern_norm.h - norm.cu's per-element arithmetic and its batchnorm backward's elementwise pass as
 * plain C: how a channel's n*hw values are split into chunks and walked by a block's threads, the
 * activation and its mask (with z recomputed where the forward's output was not kept), the
 * per-channel coefficients, and one thread's share of dz -> dx. norm.cu's kernels call these
 * with blockIdx / threadIdx; tests/unit/test_cuda_emul.c runs the eval-mode backward (recover's
 * frozen teacher: no sums needed) and the forward's elementwise pass on the CPU over the whole
 * grid against the CPU backend, bit for bit. The reductions (cu_block_sum) stay in norm.cu.
 */
#ifndef DD_NN_CUDA_KERN_NORM_H
#define DD_NN_CUDA_KERN_NORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#include "libcommon/nn/backend.h"
}
#else
#include "libcommon/nn/backend.h"
#endif
#include "libcommon/nn/cuda/kern.h"

enum { KN_THREADS = 256 }; /* a block's threads: CU_THREADS (norm.cu asserts it) */

/* Per-channel coefficients, 8 floats: k, a, m, is, q (the BN's), km, kv, ms (the statistics
 * loss's). */
enum { CK, CA, CM, CIS, CQ, CKM, CKV, CMS };

/* A channel's mean, invstd, weight and bias, for z. */
typedef struct {
    float m, is, w, b;
} BnAb;

/* Chunks per channel: about 16K elements each, at most 64. */
static inline int chunks_for(int n, int64_t hw)
{
    int64_t m = (int64_t)n * hw, k = (m + 16383) / 16384;
    return (int)(k < 1 ? 1 : k > 64 ? 64 : k);
}

/* Moves (image, offset) on by KN_THREADS elements of a channel's n*hw values: one compare where
 * planes are at least that long, a 32-bit division where they are shorter. */
DD_HD static inline void chunk_adv(int64_t *img, int64_t *off, int64_t hw)
{
    if (hw >= KN_THREADS) {
        *off += KN_THREADS;
        if (*off >= hw) {
            *off -= hw;
            ++*img;
        }
    } else {
        unsigned o = (unsigned)*off + KN_THREADS, h = (unsigned)hw;
        *img += o / h;
        *off = o % h;
    }
}

#ifdef __CUDA_ARCH__ /* nvcc's device pass (its host pass, and gcc, know no such pragma) */
#define KN_UNROLL4 _Pragma("unroll 4")
#else
#define KN_UNROLL4
#endif

/* Walks thread tx's elements of chunk bx of channel c: j = j0 + tx, j0 + tx + 256, ... < j1 of
 * the channel's m = n*hw values, as the index i of x[n][C][hw]. Unrolled on the GPU: the loads
 * of several steps in flight at once. */
#define CHUNK_FOR_AT(i, C, c, hw, chunks, m, bx, tx)                                          \
    const int64_t j0_ = (m) * (int64_t)(bx) / (chunks), j1_ = (m) * ((int64_t)(bx) + 1) / (chunks); \
    int64_t img_ = (j0_ + (tx)) / (hw), off_ = (j0_ + (tx)) - img_ * (hw);                    \
    KN_UNROLL4                                                                                \
    for (int64_t j_ = j0_ + (tx), i = (img_ * (C) + (c)) * (hw) + off_; j_ < j1_;            \
         j_ += KN_THREADS, chunk_adv(&img_, &off_, (hw)), i = (img_ * (C) + (c)) * (hw) + off_)

/* ---- activation (as cpu/norm.c) ---- */

DD_HD static inline float act_of(int act, float z)
{
    if (act == NN_ACT_RELU6) return !(z <= 0) ? (!(z >= 6) ? z : 6.0f) : 0.0f; /* NaN passes */
    if (act == NN_ACT_RELU) return !(z <= 0) ? z : 0.0f;
    return z;
}

/* The forward's z = (x - m) is w + b: the forward and the backward's recomputed mask share it
 * (nvcc --fmad=false, and ISO C without contraction on the host: the same roundings, hence the
 * same mask). */
DD_HD static inline float bn_z(float xv, float mv, float is, float wv, float bv)
{
    return (xv - mv) * is * wv + bv;
}

/* dy where the activation passes a gradient at output y (relu: y > 0; relu6: 0 < y < 6); y NULL
 * (a BN without residual, its output not kept): at the forward's z of x, the same test (relu's
 * z > 0 is its y > 0, relu6's 0 < z < 6 its 0 < y < 6; a NaN fails both ways). */
DD_HD static inline float act_pass(int act, const float *y, const float *x, int64_t i, BnAb ab, float dy)
{
    if (act != NN_ACT_RELU && act != NN_ACT_RELU6) return dy;
    const float v = y ? y[i] : bn_z(x[i], ab.m, ab.is, ab.w, ab.b);
    if (act == NN_ACT_RELU) return v > 0 ? dy : 0.0f;
    return v > 0 && v < 6 ? dy : 0.0f;
}

/* Thread tx of block (bx = chunk, c = channel) of the forward: y = act((x - m) is w + b (+ r));
 * where sums is set, *s and *q get this thread's shifted sums of x - k and its square (k the
 * channel's first value), for the block's reduction. */
DD_HD static inline void bn_fwd_thread(unsigned bx, unsigned tx, int c, int act, int n, int C, int64_t hw,
                                       int chunks, const float *x, const float *r, const float *w, const float *b,
                                       const float *mean, const float *invstd, float *y, int sums, double *s,
                                       double *q)
{
    const int64_t m = (int64_t)n * hw;
    const float wv = w ? w[c] : 1.0f, bv = b ? b[c] : 0.0f, mv = mean[c], is = invstd[c];
    const double k = x[(int64_t)c * hw];
    double ss = 0, qq = 0;
    CHUNK_FOR_AT(i, C, c, hw, chunks, m, bx, tx) {
        float xv = x[i];
        if (sums) {
            double d = xv - k;
            ss += d;
            qq += d * d;
        }
        float z = bn_z(xv, mv, is, wv, bv);
        y[i] = act_of(act, r ? z + r[i] : z);
    }
    *s = ss;
    *q = qq;
}

/* Channel c's coefficients (coef + 8 c): dw, db += the sums (sums NULL: none taken, a = q = 0);
 * the statistics loss's (stat_coefs of cpu/norm.c) where save is set. */
DD_HD static inline void bn_coef_one(int64_t c, int C, double count, const float *w, const float *mean,
                                     const float *invstd, const double *sdy, const double *sdyx, float *dw,
                                     float *db, const float *save, const float *dloss, float *coef)
{
    double a = sdy ? sdy[c] : 0.0, q = sdyx ? sdyx[c] : 0.0;
    if (dw) dw[c] += (float)q;
    if (db) db[c] += (float)a;
    float *f = coef + 8 * c;
    f[CK] = (w ? w[c] : 1.0f) * invstd[c];
    f[CA] = (float)(a / count);
    f[CM] = mean[c];
    f[CIS] = invstd[c];
    f[CQ] = (float)(q / count);
    if (save) {
        float g = dloss[0], nm = save[3 * C], nv = save[3 * C + 1];
        f[CKM] = nm > 0 ? (float)(g * save[c] / nm / count) : 0.0f;
        f[CKV] = nv > 0 ? (float)(2.0 * g * save[C + c] / nv / count) : 0.0f;
        f[CMS] = save[2 * C + c];
    }
}

/* Thread tx of block (bx = chunk, c = channel): dz = act's mask of g; dr += dz (dr set); v = eval
 * k dz, train k (dz - a - (x - m) is q); in place (dx == g): g = v (+ the statistics term); else
 * dx += v, or dx = (dx + v) + the statistics term (cpu/norm.c dz_dx_run, the same expressions). */
DD_HD static inline void bn_dz_dx_thread(unsigned bx, unsigned tx, int c, int act, int train, int has_s, int n,
                                         int C, int64_t hw, int chunks, const float *x, const float *y,
                                         const float *w, const float *b, float *g, float *dx, float *dr,
                                         const float *coef)
{
    const int64_t m = (int64_t)n * hw;
    const float *f = coef + 8 * c;
    const float k = f[CK], a = f[CA], mv = f[CM], is = f[CIS], q = f[CQ];
    const float km = has_s ? f[CKM] : 0.0f, kv = has_s ? f[CKV] : 0.0f, ms = has_s ? f[CMS] : 0.0f;
    const int inplace = dx == g;
    const BnAb ab = {mv, is, w ? w[c] : 1.0f, b ? b[c] : 0.0f};
    CHUNK_FOR_AT(i, C, c, hw, chunks, m, bx, tx) {
        float dz = act_pass(act, y, x, i, ab, g[i]);
        if (dr) dr[i] += dz;
        if (!dx) continue;
        float v = train ? k * (dz - a - (x[i] - mv) * is * q) : k * dz;
        if (inplace) g[i] = has_s ? v + (km + kv * (x[i] - ms)) : v;
        else if (has_s) dx[i] = (dx[i] + v) + (km + kv * (x[i] - ms));
        else dx[i] += v;
    }
}

#endif

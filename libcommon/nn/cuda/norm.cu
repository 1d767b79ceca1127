/* norm.cu - CUDA batchnorm (train / eval, forward / backward) and the BN-statistics loss, with
 * the CPU reference's arithmetic: per-channel sums in double over fixed chunks (a function of the
 * shape only, reduced by fixed trees, then the chunks in order: the same bits every run), two
 * passes for the variance, biased variance for normalization, unbiased for the running update.
 * Own kernels rather than cuDNN's batchnorm: cuDNN keeps a different saved-statistics contract
 * and does not give the statistics loss; these match cpu/norm.c expression for expression. */
#include "libcommon/nn/cuda/cuda.h"

/* Chunks per channel: about 16K elements each, at most 64. */
static int chunks_for(int n, int64_t hw)
{
    int64_t m = (int64_t)n * hw, k = (m + 16383) / 16384;
    return (int)(k < 1 ? 1 : k > 64 ? 64 : k);
}

/* Element j of channel c's n*hw values. */
__device__ static inline int64_t chan_index(int64_t j, int64_t c, int C, int64_t hw)
{
    return ((j / hw) * C + c) * hw + j % hw;
}

/* part[c*chunks + k] = sum over chunk k of channel c of: x (what 0), (x - m[c])^2 (what 1, m in
 * double), dy (what 2), dy * ((x - mean[c]) * invstd[c]) (what 3, float factor as the CPU). */
__global__ static void k_chan_partial(int what, int n, int C, int64_t hw, int chunks,
                                      const float *x, const double *md, const float *mean,
                                      const float *invstd, const float *dy, double *part)
{
    __shared__ double sh[CU_THREADS];
    int64_t c = blockIdx.y, m = (int64_t)n * hw;
    int k = blockIdx.x;
    int64_t j0 = m * k / chunks, j1 = m * (k + 1) / chunks;
    double acc = 0;
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        int64_t i = chan_index(j, c, C, hw);
        switch (what) {
        case 0: acc += x[i]; break;
        case 1: { double d = x[i] - md[c]; acc += d * d; break; }
        case 2: acc += dy[i]; break;
        default: acc += (double)dy[i] * ((x[i] - mean[c]) * invstd[c]);
        }
    }
    acc = cu_block_sum(acc, sh);
    if (threadIdx.x == 0) part[c * chunks + k] = acc;
}

/* out[c] = sum of the chunks of channel c, in order, divided by div (count for means, as the
 * CPU's s / count; 1 for plain sums). */
__global__ static void k_chan_total(int C, int chunks, const double *part, double div, double *out)
{
    CU_FOR(c, C) {
        double s = 0;
        for (int k = 0; k < chunks; k++) s += part[c * chunks + k];
        out[c] = s / div;
    }
}

/* Per-channel double sums of `what` into out (C doubles); tmp holds C*chunks doubles. */
static void chan_sums(CuImpl *ci, int what, int n, int C, int64_t hw, const float *x,
                      const double *md, const float *mean, const float *invstd, const float *dy,
                      double *tmp, double div, double *out)
{
    int chunks = chunks_for(n, hw);
    dim3 grid((unsigned)chunks, (unsigned)C);
    k_chan_partial<<<grid, CU_THREADS, 0, ci->stream>>>(what, n, C, hw, chunks, x, md, mean, invstd,
                                                        dy, tmp);
    CU_LAUNCHED();
    k_chan_total<<<cu_blocks(C), CU_THREADS, 0, ci->stream>>>(C, chunks, tmp, div, out);
    CU_LAUNCHED();
}

/* Scratch: [tmp C*64][a C][b C] doubles. */
static double *bn_scratch(CuImpl *ci, int C, double **a, double **b)
{
    double *t = (double *)cu_buf(ci, &ci->scratch, (size_t)C * 66 * sizeof(double));
    *a = t + (size_t)C * 64;
    *b = *a + C;
    return t;
}

__global__ static void k_affine(int64_t total, int C, int64_t hw, const float *x, const float *w,
                                const float *b, const float *mean, const float *invstd, float *y)
{
    CU_FOR(i, total) {
        int c = (int)((i / hw) % C);
        float wv = w ? w[c] : 1.0f, bv = b ? b[c] : 0.0f;
        y[i] = (x[i] - mean[c]) * invstd[c] * wv + bv;
    }
}

static void affine(CuImpl *ci, int n, int C, int64_t hw, const float *x, const float *w,
                   const float *b, const float *mean, const float *invstd, float *y)
{
    int64_t total = (int64_t)n * C * hw;
    k_affine<<<cu_blocks(total), CU_THREADS, 0, ci->stream>>>(total, C, hw, x, w, b, mean, invstd, y);
    CU_LAUNCHED();
}

__global__ static void k_train_stats(int C, double count, float eps, float momentum,
                                     const double *m, const double *q, float *mean, float *invstd,
                                     float *rm, float *rv)
{
    CU_FOR(c, C) {
        double v = q[c] / count;
        mean[c] = (float)m[c];
        invstd[c] = (float)(1.0 / sqrt(v + eps));
        if (rm) {
            rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * m[c]);
            rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * v * count / (count - 1));
        }
    }
}

static void bn_fwd_train(NnBackend *be, int n, int c, int64_t hw, float eps, float momentum,
                         const float *x, const float *w, const float *b, float *y, float *mean,
                         float *invstd, float *rm, float *rv)
{
    CuImpl *ci = cu_impl(be);
    double *md, *q, *tmp = bn_scratch(ci, c, &md, &q), count = (double)n * (double)hw;
    chan_sums(ci, 0, n, c, hw, x, NULL, NULL, NULL, NULL, tmp, count, md);
    chan_sums(ci, 1, n, c, hw, x, md, NULL, NULL, NULL, tmp, 1.0, q);
    k_train_stats<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, count, eps, momentum, md, q, mean,
                                                               invstd, rm, rv);
    CU_LAUNCHED();
    affine(ci, n, c, hw, x, w, b, mean, invstd, y);
}

__global__ static void k_eval_stats(int C, float eps, const float *rm, const float *rv,
                                    float *mean, float *invstd)
{
    CU_FOR(c, C) {
        mean[c] = rm[c];
        invstd[c] = (float)(1.0 / sqrt((double)rv[c] + eps));
    }
}

static void bn_fwd_eval(NnBackend *be, int n, int c, int64_t hw, float eps, const float *x,
                        const float *w, const float *b, const float *rm, const float *rv, float *y,
                        float *mean, float *invstd)
{
    CuImpl *ci = cu_impl(be);
    k_eval_stats<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, eps, rm, rv, mean, invstd);
    CU_LAUNCHED();
    affine(ci, n, c, hw, x, w, b, mean, invstd, y);
}

/* dw, db += the sums; k, a, q per channel into kaq (3 floats per channel) for the dx pass. */
__global__ static void k_bwd_coef(int C, int train, double count, const float *w,
                                  const float *invstd, const double *sdy, const double *sdyx,
                                  float *dw, float *db, float *kaq)
{
    CU_FOR(c, C) {
        if (dw) dw[c] += (float)sdyx[c];
        if (db) db[c] += (float)sdy[c];
        kaq[3 * c] = (w ? w[c] : 1.0f) * invstd[c];
        kaq[3 * c + 1] = train ? (float)(sdy[c] / count) : 0.0f;
        kaq[3 * c + 2] = train ? (float)(sdyx[c] / count) : 0.0f;
    }
}

__global__ static void k_bwd_dx(int64_t total, int C, int64_t hw, const float *x, const float *dy,
                                const float *mean, const float *invstd, const float *kaq, float *dx)
{
    CU_FOR(i, total) {
        int c = (int)((i / hw) % C);
        float k = kaq[3 * c], a = kaq[3 * c + 1], q = kaq[3 * c + 2];
        dx[i] += k * (dy[i] - a - (x[i] - mean[c]) * invstd[c] * q);
    }
}

static void bn_bwd(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                   const float *w, const float *mean, const float *invstd, const float *dy,
                   float *dx, float *dw, float *db)
{
    CuImpl *ci = cu_impl(be);
    double *sdy, *sdyx, *tmp = bn_scratch(ci, c, &sdy, &sdyx), count = (double)n * (double)hw;
    chan_sums(ci, 2, n, c, hw, x, NULL, mean, invstd, dy, tmp, 1.0, sdy);
    chan_sums(ci, 3, n, c, hw, x, NULL, mean, invstd, dy, tmp, 1.0, sdyx);
    /* kaq after the doubles: tmp's first 3c floats are free once the sums are taken (stream order) */
    float *kaq = (float *)tmp;
    k_bwd_coef<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, train, count, w, invstd, sdy, sdyx,
                                                            dw, db, kaq);
    CU_LAUNCHED();
    if (!dx) return;
    int64_t total = (int64_t)n * c * hw;
    k_bwd_dx<<<cu_blocks(total), CU_THREADS, 0, ci->stream>>>(total, c, hw, x, dy, mean, invstd, kaq, dx);
    CU_LAUNCHED();
}

/* ---- statistics loss: save = [mean-rm (c), var-rv (c), mean (c), ||mean-rm||, ||var-rv||] ---- */

__global__ static void k_stat_save(int C, double count, const double *m, const double *q,
                                   const float *rm, const float *rv, float *save)
{
    CU_FOR(c, C) {
        save[c] = (float)(m[c] - rm[c]);
        save[C + c] = (float)(q[c] / count - rv[c]);
        save[2 * C + c] = (float)m[c];
    }
}

/* One thread: the two norms, channels in order as the CPU. */
__global__ static void k_stat_norms(int C, float *save, float *loss)
{
    double sm = 0, sv = 0;
    for (int i = 0; i < C; i++) {
        sm += (double)save[i] * save[i];
        sv += (double)save[C + i] * save[C + i];
    }
    save[3 * C] = (float)sqrt(sm);
    save[3 * C + 1] = (float)sqrt(sv);
    loss[0] = (float)(sqrt(sm) + sqrt(sv));
}

static void bn_stat_fwd(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *rm,
                        const float *rv, float *loss, float *save)
{
    CuImpl *ci = cu_impl(be);
    double *md, *q, *tmp = bn_scratch(ci, c, &md, &q), count = (double)n * (double)hw;
    chan_sums(ci, 0, n, c, hw, x, NULL, NULL, NULL, NULL, tmp, count, md);
    chan_sums(ci, 1, n, c, hw, x, md, NULL, NULL, NULL, tmp, 1.0, q);
    k_stat_save<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, count, md, q, rm, rv, save);
    CU_LAUNCHED();
    k_stat_norms<<<1, 1, 0, ci->stream>>>(c, save, loss);
    CU_LAUNCHED();
}

/* dx += km[c] + kv[c] * (x - mean[c]); km, kv with the CPU's mix of float and double steps. */
__global__ static void k_stat_bwd(int64_t total, int C, int64_t hw, double count, const float *x,
                                  const float *s, const float *dloss, float *dx)
{
    float g = dloss[0], nm = s[3 * C], nv = s[3 * C + 1];
    CU_FOR(i, total) {
        int c = (int)((i / hw) % C);
        float km = nm > 0 ? (float)(g * s[c] / nm / count) : 0.0f;
        float kv = nv > 0 ? (float)(2.0 * g * s[C + c] / nv / count) : 0.0f;
        dx[i] += km + kv * (x[i] - s[2 * C + c]);
    }
}

static void bn_stat_bwd(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *save,
                        const float *dloss, float *dx)
{
    CuImpl *ci = cu_impl(be);
    int64_t total = (int64_t)n * c * hw;
    k_stat_bwd<<<cu_blocks(total), CU_THREADS, 0, ci->stream>>>(total, c, hw, (double)n * (double)hw,
                                                                x, save, dloss, dx);
    CU_LAUNCHED();
}

void cu_norm_init(NnBackend *be)
{
    be->bn_fwd_train = bn_fwd_train;
    be->bn_fwd_eval = bn_fwd_eval;
    be->bn_bwd = bn_bwd;
    be->bn_stat_fwd = bn_stat_fwd;
    be->bn_stat_bwd = bn_stat_bwd;
}

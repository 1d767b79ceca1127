/* loss.cu - CUDA losses over [n,k] logits (one block per row: log-sum-exp and the row's terms in
 * double by fixed trees, then the rows added in order by one thread) and MixUp / CutMix value
 * mixing (from a copy of the batch, as the CPU). */
#include "libcommon/nn/cuda/cuda.h"
#include "libcommon/nn/cuda/kern_mix.h"

#include <math.h>

enum { LOSS_CE = 0, LOSS_SOFT = 1, LOSS_KL = 2 };

/* Block max in double, returned to every thread. */
__device__ static double block_max(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = CU_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s && sh[threadIdx.x + s] > sh[threadIdx.x]) sh[threadIdx.x] = sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

/* logsumexp(z / T) of a row of k. */
__device__ static double row_lse(const float *z, int k, double T, double *sh)
{
    double m = -INFINITY;
    for (int i = threadIdx.x; i < k; i += blockDim.x) m = fmax(m, z[i] / T);
    m = block_max(m, sh);
    double s = 0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) s += exp(z[i] / T - m);
    return m + log(cu_block_sum(s, sh));
}

/* Per row r: lse[2r] = lse of the logits / student (over T), lse[2r+1] = lse of teacher (KL), the
 * sum of the target row (soft CE, KL: its softmax sum) in tsum[r], and the row's loss in rowloss[r]. */
__global__ static void k_rows(int kind, int k, float eps, double T, const float *logits,
                              const float *target, const int64_t *labels, double *lse, double *tsum,
                              double *rowloss)
{
    __shared__ double sh[CU_THREADS];
    int r = blockIdx.x;
    const float *z = logits + (int64_t)r * k, *t = target ? target + (int64_t)r * k : NULL;
    double ls = row_lse(z, k, T, sh), lt = kind == LOSS_KL ? row_lse(t, k, T, sh) : 0.0;
    double acc = 0, ts = 0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        double lp = z[i] / T - ls;
        if (kind == LOSS_CE) {
            acc -= lp;                                       /* sum of -logp: mean_nll * k */
        } else if (kind == LOSS_SOFT) {
            acc -= t[i] * lp;
            ts += t[i];
        } else {
            double ltp = t[i] / T - lt, pt = exp(ltp);
            if (pt > 0) acc += pt * (ltp - lp);
            ts += pt;
        }
    }
    acc = cu_block_sum(acc, sh);
    ts = cu_block_sum(ts, sh);
    if (threadIdx.x == 0) {
        lse[2 * r] = ls;
        lse[2 * r + 1] = lt;
        tsum[r] = ts;
        if (kind == LOSS_CE) {
            double lpl = z[labels[r]] - ls;
            rowloss[r] = (1.0 - eps) * -lpl + eps * acc / k;
        } else {
            rowloss[r] = acc;
        }
    }
}

__global__ static void k_rows_total(int n, const double *rowloss, float *loss)
{
    double total = 0;
    for (int r = 0; r < n; r++) total += rowloss[r];
    loss[0] = (float)(total / n);
}

__global__ static void k_rows_bwd(int kind, int n, int k, float eps, double T, const float *logits,
                                  const float *target, const int64_t *labels, const double *lse,
                                  const double *tsum, const float *dloss, float *d)
{
    double g = kind == LOSS_KL ? (double)dloss[0] / ((double)n * T) : (double)dloss[0] / n;
    CU_FOR(e, (int64_t)n * k) {
        int r = (int)(e / k), i = (int)(e % k);
        double p = exp(logits[e] / T - lse[2 * r]);
        double v;
        if (kind == LOSS_CE) v = g * (p - (eps / k + (i == labels[r] ? 1.0 - eps : 0.0)));
        else if (kind == LOSS_SOFT) v = g * (p * tsum[r] - target[e]);
        else v = g * (p * tsum[r] - exp(target[e] / T - lse[2 * r + 1]));
        d[e] += (float)v;
    }
}

/* Scratch: lse 2n, tsum n, rowloss n doubles; labels after them (n int64). */
static double *rows_scratch(CuImpl *c, int n)
{
    return (double *)cu_buf(c, &c->scratch, (size_t)n * 5 * sizeof(double));
}

static void rows_fwd(NnBackend *be, int kind, int n, int k, float eps, double T, const float *z,
                     const float *t, const int64_t *host_labels, float *loss)
{
    CuImpl *c = cu_impl(be);
    double *lse = rows_scratch(c, n), *tsum = lse + 2 * n, *rl = tsum + n;
    const int64_t *lab = host_labels ? (const int64_t *)cu_stage(c, 0, host_labels,
                                                                (size_t)n * sizeof(int64_t)) : NULL;
    k_rows<<<n, CU_THREADS, 0, c->stream>>>(kind, k, eps, T, z, t, lab, lse, tsum, rl);
    CU_LAUNCHED();
    k_rows_total<<<1, 1, 0, c->stream>>>(n, rl, loss);
    CU_LAUNCHED();
}

static void rows_bwd(NnBackend *be, int kind, int n, int k, float eps, double T, const float *z,
                     const float *t, const int64_t *host_labels, const float *dloss, float *d)
{
    CuImpl *c = cu_impl(be);
    double *lse = rows_scratch(c, n), *tsum = lse + 2 * n, *rl = tsum + n;
    const int64_t *lab = host_labels ? (const int64_t *)cu_stage(c, 0, host_labels,
                                                                (size_t)n * sizeof(int64_t)) : NULL;
    k_rows<<<n, CU_THREADS, 0, c->stream>>>(kind, k, eps, T, z, t, lab, lse, tsum, rl);
    CU_LAUNCHED();
    k_rows_bwd<<<cu_blocks((int64_t)n * k), CU_THREADS, 0, c->stream>>>(kind, n, k, eps, T, z, t, lab,
                                                                         lse, tsum, dloss, d);
    CU_LAUNCHED();
}

static void ce_fwd(NnBackend *be, int n, int k, float eps, const float *logits,
                   const int64_t *host_labels, float *loss)
{
    rows_fwd(be, LOSS_CE, n, k, eps, 1.0, logits, NULL, host_labels, loss);
}

static void ce_bwd(NnBackend *be, int n, int k, float eps, const float *logits,
                   const int64_t *host_labels, const float *dloss, float *dlogits)
{
    rows_bwd(be, LOSS_CE, n, k, eps, 1.0, logits, NULL, host_labels, dloss, dlogits);
}

static void soft_ce_fwd(NnBackend *be, int n, int k, const float *logits, const float *target,
                        float *loss)
{
    rows_fwd(be, LOSS_SOFT, n, k, 0.0f, 1.0, logits, target, NULL, loss);
}

static void soft_ce_bwd(NnBackend *be, int n, int k, const float *logits, const float *target,
                        const float *dloss, float *dlogits)
{
    rows_bwd(be, LOSS_SOFT, n, k, 0.0f, 1.0, logits, target, NULL, dloss, dlogits);
}

static void kl_fwd(NnBackend *be, int n, int k, float T, const float *student, const float *teacher,
                   float *loss)
{
    rows_fwd(be, LOSS_KL, n, k, 0.0f, T, student, teacher, NULL, loss);
}

static void kl_bwd(NnBackend *be, int n, int k, float T, const float *student, const float *teacher,
                   const float *dloss, float *dstudent)
{
    rows_bwd(be, LOSS_KL, n, k, 0.0f, T, student, teacher, NULL, dloss, dstudent);
}

/* ---- mixing ---- */

/* kern_mix.h's element bodies (test_cuda_emul runs them on the CPU) */
__global__ static void k_mixup(int64_t n, int64_t row, const int64_t *perm, float lam,
                               const float *orig, float *x)
{
    CU_FOR(e, n * row) x[e] = mix_up(e, row, perm, lam, orig);
}

static void mixup(NnBackend *be, int64_t n, int64_t row, const int64_t *host_perm, float lam, float *x)
{
    CuImpl *c = cu_impl(be);
    size_t bytes = (size_t)(n * row) * sizeof(float);
    float *orig = (float *)cu_buf(c, &c->scratch, bytes);
    CU_CHECK(cudaMemcpyAsync(orig, x, bytes, cudaMemcpyDeviceToDevice, c->stream));
    const int64_t *perm = (const int64_t *)cu_stage(c, 0, host_perm, (size_t)n * sizeof(int64_t));
    k_mixup<<<cu_blocks(n * row), CU_THREADS, 0, c->stream>>>(n, row, perm, lam, orig, x);
    CU_LAUNCHED();
}

__global__ static void k_cutmix(int n, int c, int h, int w, const int64_t *perm, int y0, int x0,
                                int bh, int bw, const float *orig, float *x)
{
    CU_FOR(e, (int64_t)n * c * bh * bw) cut_mix(e, c, h, w, perm, y0, x0, bh, bw, orig, x);
}

static void cutmix(NnBackend *be, int n, int c, int h, int w, const int64_t *host_perm, int y0,
                   int x0, int y1, int x1, float *x)
{
    CuImpl *ci = cu_impl(be);
    if (y1 <= y0 || x1 <= x0) return;
    size_t bytes = (size_t)n * c * h * w * sizeof(float);
    float *orig = (float *)cu_buf(ci, &ci->scratch, bytes);
    CU_CHECK(cudaMemcpyAsync(orig, x, bytes, cudaMemcpyDeviceToDevice, ci->stream));
    const int64_t *perm = (const int64_t *)cu_stage(ci, 0, host_perm, (size_t)n * sizeof(int64_t));
    int64_t total = (int64_t)n * c * (y1 - y0) * (x1 - x0);
    k_cutmix<<<cu_blocks(total), CU_THREADS, 0, ci->stream>>>(n, c, h, w, perm, y0, x0, y1 - y0,
                                                              x1 - x0, orig, x);
    CU_LAUNCHED();
}

void cu_loss_init(NnBackend *be)
{
    be->ce_fwd = ce_fwd;
    be->ce_bwd = ce_bwd;
    be->soft_ce_fwd = soft_ce_fwd;
    be->soft_ce_bwd = soft_ce_bwd;
    be->kl_fwd = kl_fwd;
    be->kl_bwd = kl_bwd;
    be->mixup = mixup;
    be->cutmix = cutmix;
}

/* norm.cu - CUDA batchnorm, with or without a residual and ReLU / ReLU6, forward and backward,
 * and the BN-statistics loss, with the CPU reference's arithmetic (cpu/norm.c): statistics as
 * double sums of x - k (k the channel's first value) and their squares, mean and biased variance
 * from them, unbiased variance for the running update; the backward's sums of dz and dz xhat in
 * double. Sums go over fixed chunks of each channel (a function of the shape only), each reduced
 * by a fixed tree, then the chunks in order: the same bits every run.
 *
 * One kernel does a channel chunk's elementwise work and, where wanted, its sums in the same
 * read: eval mode (recover's frozen teacher) computes y = act(bn(x) + r) and the statistics loss's
 * sums of x in one pass; backward masks dy by the activation, scales it and adds the statistics
 * loss's gradient in one pass (plus a pass of sums where train mode or dw/db want them).
 * Own kernels rather than cuDNN's batchnorm: cuDNN keeps a different saved-statistics contract
 * and does not give the statistics loss. */
#include "libcommon/nn/cuda/cuda.h"
#include "libcommon/nn/cuda/kern_norm.h"

static_assert((int)KN_THREADS == (int)CU_THREADS, "kern_norm.h's block size is the launches'");

/* kern_norm.h's walk of a chunk of a channel, by this block's chunk and this thread. */
#define CHUNK_FOR(i, C, c, hw, chunks, m) CHUNK_FOR_AT(i, C, c, hw, chunks, m, blockIdx.x, threadIdx.x)

/* Scratch: [part A: C*64][part B: C*64][A totals: C][B totals: C] doubles, then C*8 floats of
 * per-channel coefficients. */
typedef struct {
    double *pa, *pb, *ta, *tb;
    float *coef;
} BnScratch;

static BnScratch bn_scratch(CuImpl *ci, int C)
{
    double *t = (double *)cu_buf(ci, &ci->scratch, (size_t)C * 130 * sizeof(double) +
                                                       (size_t)C * 8 * sizeof(float));
    BnScratch s = {t, t + (size_t)C * 64, t + (size_t)C * 128, t + (size_t)C * 129,
                   (float *)(t + (size_t)C * 130)};
    return s;
}

/* ta[c], tb[c] = the chunk partials of channel c summed in order. */
__global__ static void k_chunk_totals(int C, int chunks, const double *pa, const double *pb,
                                      double *ta, double *tb)
{
    CU_FOR(c, C) {
        double a = 0, b = 0;
        for (int k = 0; k < chunks; k++) {
            a += pa[c * chunks + k];
            b += pb[c * chunks + k];
        }
        ta[c] = a;
        tb[c] = b;
    }
}

/* ---- activation: act_of, bn_z, act_pass (kern_norm.h) ---- */

/* ---- statistics: sums of d = x - k and d^2 per chunk (k = the channel's first value) ---- */

__global__ static void k_stat_partial(int n, int C, int64_t hw, int chunks, const float *x,
                                      double *pa, double *pb)
{
    __shared__ double sh[CU_THREADS];
    const int c = blockIdx.y;
    const int64_t m = (int64_t)n * hw;
    const double k = x[(int64_t)c * hw];
    double s = 0, q = 0;
    CHUNK_FOR(i, C, c, hw, chunks, m) {
        double d = x[i] - k;
        s += d;
        q += d * d;
    }
    s = cu_block_sum(s, sh);
    q = cu_block_sum(q, sh);
    if (threadIdx.x == 0) {
        pa[c * chunks + blockIdx.x] = s;
        pb[c * chunks + blockIdx.x] = q;
    }
}

/* Mean and biased variance of channel c from the shifted sums (cpu/norm.c stats_of_lanes). */
__device__ static inline void stats_of(double s, double q, double k, double count, double *mean,
                                       double *var)
{
    double m = s / count, v = q / count - m * m;
    *mean = k + m;
    *var = v > 0 ? v : 0.0;
}

/* Train: mean, invstd from the batch, running statistics updated where rm is set. */
__global__ static void k_train_stats(int C, int64_t hw, double count, float eps, float momentum,
                                     const float *x, const double *ts, const double *tq,
                                     float *mean, float *invstd, float *rm, float *rv)
{
    CU_FOR(c, C) {
        double m, v;
        stats_of(ts[c], tq[c], x[c * hw], count, &m, &v);
        mean[c] = (float)m;
        invstd[c] = (float)(1.0 / sqrt(v + eps));
        if (rm) {
            rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * m);
            rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * v * count / (count - 1));
        }
    }
}

__global__ static void k_eval_stats(int C, float eps, const float *rm, const float *rv,
                                    float *mean, float *invstd)
{
    CU_FOR(c, C) {
        mean[c] = rm[c];
        invstd[c] = (float)(1.0 / sqrt((double)rv[c] + eps));
    }
}

/* save = [mean-rm (C), var-rv (C), mean (C), ...] from the shifted sums. */
__global__ static void k_stat_save(int C, int64_t hw, double count, const float *x,
                                   const double *ts, const double *tq, const float *rm,
                                   const float *rv, float *save)
{
    CU_FOR(c, C) {
        double m, v;
        stats_of(ts[c], tq[c], x[c * hw], count, &m, &v);
        save[c] = (float)(m - rm[c]);
        save[C + c] = (float)(v - rv[c]);
        save[2 * C + c] = (float)m;
    }
}

/* One block: the two norms at the end of save, and the loss; the squares summed in double by
 * thread t over channels t, t + 256, ..., then the block's fixed tree (the CPU sums the channels
 * in order: the same to double precision, then rounded to float). */
__global__ static void k_stat_norms(int C, float *save, float *loss)
{
    __shared__ double sh[CU_THREADS];
    double sm = 0, sv = 0;
    for (int i = threadIdx.x; i < C; i += CU_THREADS) {
        sm += (double)save[i] * save[i];
        sv += (double)save[C + i] * save[C + i];
    }
    sm = cu_block_sum(sm, sh);
    sv = cu_block_sum(sv, sh);
    if (threadIdx.x == 0) {
        save[3 * C] = (float)sqrt(sm);
        save[3 * C + 1] = (float)sqrt(sv);
        loss[0] = (float)(sqrt(sm) + sqrt(sv));
    }
}

/* ---- forward: y = act((x - m) is w + b (+ r)), with the shifted sums of x where pa != NULL ---- */

__global__ static void k_bn_act_fwd(int act, int n, int C, int64_t hw, int chunks, const float *x,
                                    const float *r, const float *w, const float *b,
                                    const float *mean, const float *invstd, float *y, double *pa,
                                    double *pb)
{
    __shared__ double sh[CU_THREADS];
    const int c = blockIdx.y;
    double s, q;
    bn_fwd_thread(blockIdx.x, threadIdx.x, c, act, n, C, hw, chunks, x, r, w, b, mean, invstd, y, pa != NULL,
                  &s, &q);
    if (pa) {   /* uniform over the block */
        s = cu_block_sum(s, sh);
        q = cu_block_sum(q, sh);
        if (threadIdx.x == 0) {
            pa[c * chunks + blockIdx.x] = s;
            pb[c * chunks + blockIdx.x] = q;
        }
    }
}

static void bn_act_fwd(NnBackend *be, NnAct act, int train, int n, int c, int64_t hw, float eps,
                       float momentum, const float *x, const float *r, const float *w,
                       const float *b, float *rm, float *rv, float *y, float *mean, float *invstd,
                       float *stat_loss, float *stat_save)
{
    CuImpl *ci = cu_impl(be);
    BnScratch s = bn_scratch(ci, c);
    const int chunks = chunks_for(n, hw);
    const double count = (double)n * (double)hw;
    dim3 grid((unsigned)chunks, (unsigned)c);
    if (train) {
        k_stat_partial<<<grid, CU_THREADS, 0, ci->stream>>>(n, c, hw, chunks, x, s.pa, s.pb);
        CU_LAUNCHED();
        k_chunk_totals<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, chunks, s.pa, s.pb, s.ta, s.tb);
        CU_LAUNCHED();
        k_train_stats<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, hw, count, eps, momentum, x, s.ta,
                                                                   s.tb, mean, invstd, rm, rv);
        CU_LAUNCHED();
    } else {
        k_eval_stats<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, eps, rm, rv, mean, invstd);
        CU_LAUNCHED();
    }
    const int stat = !train && stat_save;
    k_bn_act_fwd<<<grid, CU_THREADS, 0, ci->stream>>>((int)act, n, c, hw, chunks, x, r, w, b, mean,
                                                      invstd, y, stat ? s.pa : NULL, s.pb);
    CU_LAUNCHED();
    if (stat) {
        k_chunk_totals<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, chunks, s.pa, s.pb, s.ta, s.tb);
        CU_LAUNCHED();
        k_stat_save<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, hw, count, x, s.ta, s.tb, rm, rv,
                                                                 stat_save);
        CU_LAUNCHED();
        k_stat_norms<<<1, CU_THREADS, 0, ci->stream>>>(c, stat_save, stat_loss);
        CU_LAUNCHED();
    }
}

/* ---- backward ---- */

/* Per-channel coefficients: kern_norm.h's CK .. CMS. */

/* Sums of dz (masked dy) and dz xhat per chunk, xhat = (x - m) is in float as the CPU. */
__global__ static void k_dz_partial(int act, int n, int C, int64_t hw, int chunks, const float *x,
                                    const float *y, const float *w, const float *b,
                                    const float *dy, const float *mean, const float *invstd,
                                    double *pa, double *pb)
{
    __shared__ double sh[CU_THREADS];
    const int c = blockIdx.y;
    const int64_t m = (int64_t)n * hw;
    const float mv = mean[c], is = invstd[c];
    const BnAb ab = {mv, is, w ? w[c] : 1.0f, b ? b[c] : 0.0f};
    double s = 0, sx = 0;
    CHUNK_FOR(i, C, c, hw, chunks, m) {
        float dz = act_pass(act, y, x, i, ab, dy[i]);
        s += dz;
        sx += (double)dz * ((x[i] - mv) * is);
    }
    s = cu_block_sum(s, sh);
    sx = cu_block_sum(sx, sh);
    if (threadIdx.x == 0) {
        pa[c * chunks + blockIdx.x] = s;
        pb[c * chunks + blockIdx.x] = sx;
    }
}

/* dw, db += the sums (sums NULL: none taken, a = q = 0); the coefficients; the statistics loss's
 * (stat_coefs of cpu/norm.c) where save is set. */
__global__ static void k_bwd_coef(int C, double count, const float *w, const float *mean,
                                  const float *invstd, const double *sdy, const double *sdyx,
                                  float *dw, float *db, const float *save, const float *dloss,
                                  float *coef)
{
    CU_FOR(c, C) bn_coef_one(c, C, count, w, mean, invstd, sdy, sdyx, dw, db, save, dloss, coef);
}

/* dz = act's mask of g; dr += dz (dr set); v = eval k dz, train k (dz - a - (x - m) is q);
 * in place: g = v (+ the statistics term); else dx += v, or dx = (dx + v) + the statistics term
 * (cpu/norm.c dz_dx_run, the same expressions). */
__global__ static void k_dz_dx(int act, int train, int has_s, int n, int C, int64_t hw, int chunks,
                               const float *x, const float *y, const float *w, const float *b,
                               float *g, float *dx, float *dr, const float *coef)
{
    bn_dz_dx_thread(blockIdx.x, threadIdx.x, (int)blockIdx.y, act, train, has_s, n, C, hw, chunks, x, y, w, b,
                    g, dx, dr, coef);
}

static void bn_act_bwd(NnBackend *be, NnAct act, int train, int n, int c, int64_t hw,
                       const float *x, const float *y, const float *w, const float *b,
                       const float *mean,
                       const float *invstd, const float *dy, float *dx, float *dr, float *dw,
                       float *db, const float *stat_save, const float *stat_dloss)
{
    CuImpl *ci = cu_impl(be);
    BnScratch s = bn_scratch(ci, c);
    const int chunks = chunks_for(n, hw);
    const double count = (double)n * (double)hw;
    dim3 grid((unsigned)chunks, (unsigned)c);
    const int sums = dw || db || train;
    if (sums) {
        k_dz_partial<<<grid, CU_THREADS, 0, ci->stream>>>((int)act, n, c, hw, chunks, x, y, w, b, dy,
                                                          mean, invstd, s.pa, s.pb);
        CU_LAUNCHED();
        k_chunk_totals<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, chunks, s.pa, s.pb, s.ta, s.tb);
        CU_LAUNCHED();
    }
    k_bwd_coef<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, count, w, mean, invstd,
                                                            sums ? s.ta : NULL, sums ? s.tb : NULL,
                                                            dw, db, stat_save, stat_dloss, s.coef);
    CU_LAUNCHED();
    if (!dx && !dr) return;
    k_dz_dx<<<grid, CU_THREADS, 0, ci->stream>>>((int)act, train, stat_save != NULL, n, c, hw, chunks,
                                                 x, y, w, b, (float *)dy, dx, dr, s.coef);
    CU_LAUNCHED();
}

/* ---- the plain slots: the same kernels with no activation ---- */

static void bn_fwd_train(NnBackend *be, int n, int c, int64_t hw, float eps, float momentum,
                         const float *x, const float *w, const float *b, float *y, float *mean,
                         float *invstd, float *rm, float *rv)
{
    bn_act_fwd(be, NN_BN_NO_ACT, 1, n, c, hw, eps, momentum, x, NULL, w, b, rm, rv, y, mean,
               invstd, NULL, NULL);
}

static void bn_fwd_eval(NnBackend *be, int n, int c, int64_t hw, float eps, const float *x,
                        const float *w, const float *b, const float *rm, const float *rv, float *y,
                        float *mean, float *invstd)
{
    bn_act_fwd(be, NN_BN_NO_ACT, 0, n, c, hw, eps, 0.0f, x, NULL, w, b, (float *)rm, (float *)rv,
               y, mean, invstd, NULL, NULL);
}

static void bn_bwd(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                   const float *w, const float *mean, const float *invstd, const float *dy,
                   float *dx, float *dw, float *db)
{
    bn_act_bwd(be, NN_BN_NO_ACT, train, n, c, hw, x, NULL, w, NULL, mean, invstd, dy, dx, NULL, dw, db,
               NULL, NULL);
}

static void bn_bwd_inplace(NnBackend *be, int train, int n, int c, int64_t hw, const float *x,
                           const float *w, const float *mean, const float *invstd, float *g,
                           float *dw, float *db)
{
    bn_act_bwd(be, NN_BN_NO_ACT, train, n, c, hw, x, NULL, w, NULL, mean, invstd, g, g, NULL, dw, db,
               NULL, NULL);
}

/* ---- the statistics loss alone (train-mode layers, and backends' unfused path) ---- */

static void bn_stat_fwd(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *rm,
                        const float *rv, float *loss, float *save)
{
    CuImpl *ci = cu_impl(be);
    BnScratch s = bn_scratch(ci, c);
    const int chunks = chunks_for(n, hw);
    dim3 grid((unsigned)chunks, (unsigned)c);
    k_stat_partial<<<grid, CU_THREADS, 0, ci->stream>>>(n, c, hw, chunks, x, s.pa, s.pb);
    CU_LAUNCHED();
    k_chunk_totals<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, chunks, s.pa, s.pb, s.ta, s.tb);
    CU_LAUNCHED();
    k_stat_save<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, hw, (double)n * (double)hw, x, s.ta,
                                                             s.tb, rm, rv, save);
    CU_LAUNCHED();
    k_stat_norms<<<1, CU_THREADS, 0, ci->stream>>>(c, save, loss);
    CU_LAUNCHED();
}

/* dx += km + kv (x - ms) with the coefficients of k_bwd_coef. */
__global__ static void k_stat_bwd(int n, int C, int64_t hw, int chunks, const float *x,
                                  const float *coef, float *dx)
{
    const int c = blockIdx.y;
    const int64_t m = (int64_t)n * hw;
    const float km = coef[8 * c + CKM], kv = coef[8 * c + CKV], ms = coef[8 * c + CMS];
    CHUNK_FOR(i, C, c, hw, chunks, m) dx[i] += km + kv * (x[i] - ms);
}

static void bn_stat_bwd(NnBackend *be, int n, int c, int64_t hw, const float *x, const float *save,
                        const float *dloss, float *dx)
{
    CuImpl *ci = cu_impl(be);
    BnScratch s = bn_scratch(ci, c);
    const int chunks = chunks_for(n, hw);
    /* the coefficient kernel reads only save and dloss for the statistics terms: mean and invstd
     * are placeholders here (save's own third row), its BN terms unused */
    k_bwd_coef<<<cu_blocks(c), CU_THREADS, 0, ci->stream>>>(c, (double)n * (double)hw, NULL,
                                                            save + 2 * c, save + 2 * c, NULL, NULL,
                                                            NULL, NULL, save, dloss, s.coef);
    CU_LAUNCHED();
    dim3 grid((unsigned)chunks, (unsigned)c);
    k_stat_bwd<<<grid, CU_THREADS, 0, ci->stream>>>(n, c, hw, chunks, x, s.coef, dx);
    CU_LAUNCHED();
}

void cu_norm_init(NnBackend *be)
{
    be->bn_fwd_train = bn_fwd_train;
    be->bn_fwd_eval = bn_fwd_eval;
    be->bn_bwd = bn_bwd;
    be->bn_bwd_inplace = bn_bwd_inplace;
    be->bn_stat_fwd = bn_stat_fwd;
    be->bn_stat_bwd = bn_stat_bwd;
    be->bn_act_fwd = bn_act_fwd;
    be->bn_act_bwd = bn_act_bwd;
}

/* elem.cu - CUDA elementwise kernels: axpy, fill_add, scale, activations, broadcast add/mul (the
 * broadcast gradient reduced per b element in a fixed order), normalize, dropout with the CPU's
 * Philox stream (a device port of dd_philox4x32: identical masks), mask multiply, and the full
 * sum (fixed 8192-element blocks in double, as the CPU). */
#include "libcommon/nn/cuda/cuda.h"

#define SUM_BLOCK 8192

/* ---- axpy, fill_add, scale ---- */

__global__ static void k_axpy(int64_t n, float alpha, const float *x, float *y)
{
    CU_FOR(i, n) y[i] += alpha * x[i];
}

static void axpy(NnBackend *be, int64_t n, float alpha, const float *src, float *dst)
{
    k_axpy<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, alpha, src, dst);
    CU_LAUNCHED();
}

__global__ static void k_fill_add(int64_t n, float alpha, const float *scalar, float *y)
{
    float a = alpha * scalar[0];
    CU_FOR(i, n) y[i] += a;
}

static void fill_add(NnBackend *be, int64_t n, float alpha, const float *scalar, float *dst)
{
    k_fill_add<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, alpha, scalar, dst);
    CU_LAUNCHED();
}

__global__ static void k_scale(int64_t n, float s, const float *x, float *y)
{
    CU_FOR(i, n) y[i] = s * x[i];
}

static void scale_fwd(NnBackend *be, int64_t n, float s, const float *x, float *y)
{
    k_scale<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, s, x, y);
    CU_LAUNCHED();
}

/* ---- activations (formulas as cpu/elem.c) ---- */

__global__ static void k_act_fwd(int act, int64_t n, const float *x, float *y)
{
    CU_FOR(i, n) {
        float v = x[i], r;
        switch (act) {
        case NN_ACT_RELU: r = !(v <= 0) ? v : 0.0f; break; /* NaN passes, as PyTorch's */
        case NN_ACT_RELU6: r = !(v <= 0) ? (!(v >= 6) ? v : 6.0f) : 0.0f; break;
        case NN_ACT_SILU: r = v / (1.0f + expf(-v)); break;
        case NN_ACT_SIGMOID: r = 1.0f / (1.0f + expf(-v)); break;
        default: {
            float t = v + 3.0f;
            t = t > 0 ? (t < 6 ? t : 6.0f) : 0.0f;
            r = v * t / 6.0f;
        }
        }
        y[i] = r;
    }
}

/* dx += g, or dx = g where inplace (dx == dy: each element is read before it is written). */
__global__ static void k_act_bwd(int act, int64_t n, const float *x, const float *y,
                                 const float *dy, float *dx, int inplace)
{
    CU_FOR(i, n) {
        float g;
        switch (act) {
        case NN_ACT_RELU: g = y[i] > 0 ? dy[i] : 0.0f; break;
        case NN_ACT_RELU6: g = x[i] > 0 && x[i] < 6 ? dy[i] : 0.0f; break;
        case NN_ACT_SILU: {
            float s = 1.0f / (1.0f + expf(-x[i]));
            g = dy[i] * s * (1.0f + x[i] * (1.0f - s));
            break;
        }
        case NN_ACT_SIGMOID: g = dy[i] * y[i] * (1.0f - y[i]); break;
        default: g = x[i] < -3.0f ? 0.0f : x[i] <= 3.0f ? dy[i] * (x[i] / 3.0f + 0.5f) : dy[i];
        }
        dx[i] = inplace ? g : dx[i] + g;
    }
}

static void act_fwd(NnBackend *be, NnAct act, int64_t n, const float *x, float *y)
{
    k_act_fwd<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>((int)act, n, x, y);
    CU_LAUNCHED();
}

static void act_bwd(NnBackend *be, NnAct act, int64_t n, const float *x, const float *y,
                    const float *dy, float *dx)
{
    k_act_bwd<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>((int)act, n, x, y, dy, dx, 0);
    CU_LAUNCHED();
}

static void act_bwd_inplace(NnBackend *be, NnAct act, int64_t n, const float *x, const float *y,
                            float *g)
{
    k_act_bwd<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>((int)act, n, x, y, g, g, 1);
    CU_LAUNCHED();
}

/* ---- broadcast add / mul ---- */

__device__ static int64_t bcast_index(const NnBroadcast &bc, int64_t i)
{
    int64_t bi = 0;
    for (int d = bc.ndim - 1; d >= 0; d--) {
        bi += (i % bc.shape[d]) * bc.bstride[d];
        i /= bc.shape[d];
    }
    return bi;
}

__global__ static void k_binary_fwd(int op, NnBroadcast bc, const float *a, const float *b, float *y)
{
    int same = bc.nb == bc.n;
    CU_FOR(i, bc.n) {
        float bv = b[same ? i : bcast_index(bc, i)];
        y[i] = op == NN_BIN_ADD ? a[i] + bv : a[i] * bv;
    }
}

__global__ static void k_binary_bwd_elem(int op, NnBroadcast bc, const float *a, const float *b,
                                         const float *dy, float *da, float *db)
{
    int same = bc.nb == bc.n;
    CU_FOR(i, bc.n) {
        /* add reads neither a nor b: the engine may have released them (nn_done) */
        float bv = op == NN_BIN_ADD ? 0.0f : b[same ? i : bcast_index(bc, i)];
        if (da) da[i] += op == NN_BIN_ADD ? dy[i] : dy[i] * bv;
        if (db && same) db[i] += op == NN_BIN_ADD ? dy[i] : dy[i] * a[i];
    }
}

/* One block per element j of b: sums, in double, over the a elements that map to j (the
 * broadcast dims enumerated as a mixed-radix counter r), then db[j] += (float)sum. */
__global__ static void k_binary_bwd_db(int op, NnBroadcast bc, const float *a, const float *dy,
                                       float *db)
{
    __shared__ double sh[CU_THREADS];
    int64_t j = blockIdx.x, per = bc.n / bc.nb;
    /* a-offset of b element j: its coordinates over the non-broadcast dims */
    int64_t base = 0, rem = j, astride[DD_MAXDIM];
    int64_t s = 1;
    for (int d = bc.ndim - 1; d >= 0; d--) {
        astride[d] = s;
        s *= bc.shape[d];
    }
    for (int d = bc.ndim - 1; d >= 0; d--)
        if (bc.bstride[d]) {
            base += (rem % bc.shape[d]) * astride[d];
            rem /= bc.shape[d];
        }
    double acc = 0;
    for (int64_t r = threadIdx.x; r < per; r += blockDim.x) {
        int64_t off = base, q = r;
        for (int d = bc.ndim - 1; d >= 0; d--)
            if (!bc.bstride[d]) {
                off += (q % bc.shape[d]) * astride[d];
                q /= bc.shape[d];
            }
        acc += op == NN_BIN_ADD ? (double)dy[off] : (double)dy[off] * a[off];
    }
    acc = cu_block_sum(acc, sh);
    if (threadIdx.x == 0) db[j] += (float)acc;
}

static void binary_fwd(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, float *y)
{
    k_binary_fwd<<<cu_blocks(bc->n), CU_THREADS, 0, cu_impl(be)->stream>>>((int)op, *bc, a, b, y);
    CU_LAUNCHED();
}

static void binary_bwd(NnBackend *be, NnBinary op, const NnBroadcast *bc, const float *a,
                       const float *b, const float *dy, float *da, float *db)
{
    cudaStream_t st = cu_impl(be)->stream;
    int same = bc->nb == bc->n;
    if (da || (db && same)) {
        k_binary_bwd_elem<<<cu_blocks(bc->n), CU_THREADS, 0, st>>>((int)op, *bc, a, b, dy, da,
                                                                    same ? db : NULL);
        CU_LAUNCHED();
    }
    if (!db || same) return;
    k_binary_bwd_db<<<(unsigned)bc->nb, CU_THREADS, 0, st>>>((int)op, *bc, a, dy, db);
    CU_LAUNCHED();
}

/* ---- normalize ---- */

template <typename I>
__global__ static void k_normalize(int64_t total, int c, int64_t hw, const float *mean,
                                   const float *std, const float *x, float *y, int bwd)
{
    CU_FOR_I(I, i, total) {
        int ch = (int)((i / (I)hw) % (I)c);
        if (bwd) y[i] += x[i] / std[ch];
        else y[i] = (x[i] - mean[ch]) / std[ch];
    }
}

static void normalize_fwd(NnBackend *be, int64_t n, int c, int64_t hw, const float *host_mean,
                          const float *host_std, const float *x, float *y)
{
    CuImpl *ci = cu_impl(be);
    size_t bytes = (size_t)c * sizeof(float), off = (bytes + 15) & ~(size_t)15;
    cu_buf(ci, &ci->stage, off + bytes);   /* grown first: growing would drop what is staged */
    const float *m = (const float *)cu_stage(ci, 0, host_mean, bytes);
    const float *s = (const float *)cu_stage(ci, off, host_std, bytes);
    CU_LAUNCH_IDX(k_normalize, n * c * hw, ci->stream, n * c * hw, c, hw, m, s, x, y, 0);
}

static void normalize_bwd(NnBackend *be, int64_t n, int c, int64_t hw, const float *host_std,
                          const float *dy, float *dx)
{
    CuImpl *ci = cu_impl(be);
    const float *s = (const float *)cu_stage(ci, 0, host_std, (size_t)c * sizeof(float));
    CU_LAUNCH_IDX(k_normalize, n * c * hw, ci->stream, n * c * hw, c, hw, NULL, s, dy, dx, 1);
}

/* ---- dropout: dd_philox4x32 (libcommon/base/rng.c) on the device, word for word ---- */

__device__ static void philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)ctr_lo, c1 = (uint32_t)(ctr_lo >> 32);
    uint32_t c2 = (uint32_t)ctr_hi, c3 = (uint32_t)(ctr_hi >> 32);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* One thread per group of 4 elements (one Philox call), as the CPU's (i >> 2, i & 3) layout. */
__global__ static void k_dropout(int64_t n, float p, uint64_t key, uint64_t ctr, const float *x,
                                 float *y, float *mask)
{
    float keep = 1.0f / (1.0f - p);
    CU_FOR(q, (n + 3) / 4) {
        uint32_t r[4];
        philox4x32(key, ctr, (uint64_t)q, r);
        for (int k = 0; k < 4; k++) {
            int64_t i = 4 * q + k;
            if (i >= n) break;
            double u = r[k] * (1.0 / 4294967296.0);
            mask[i] = u >= p ? keep : 0.0f;
            y[i] = x[i] * mask[i];
        }
    }
}

static void dropout_fwd(NnBackend *be, int64_t n, float p, uint64_t key, uint64_t ctr_hi,
                        const float *x, float *y, float *mask)
{
    k_dropout<<<cu_blocks((n + 3) / 4), CU_THREADS, 0, cu_impl(be)->stream>>>(n, p, key, ctr_hi, x,
                                                                              y, mask);
    CU_LAUNCHED();
}

__global__ static void k_mul_bwd(int64_t n, const float *mask, const float *dy, float *dx)
{
    CU_FOR(i, n) dx[i] += mask[i] * dy[i];
}

static void mul_bwd(NnBackend *be, int64_t n, const float *mask, const float *dy, float *dx)
{
    k_mul_bwd<<<cu_blocks(n), CU_THREADS, 0, cu_impl(be)->stream>>>(n, mask, dy, dx);
    CU_LAUNCHED();
}

/* ---- sum: block b of SUM_BLOCK elements -> partial[b] (double), then the partials in order ---- */

__global__ static void k_sum_blocks(int64_t n, const float *x, double *partial)
{
    __shared__ double sh[CU_THREADS];
    int64_t i0 = (int64_t)blockIdx.x * SUM_BLOCK, i1 = i0 + SUM_BLOCK < n ? i0 + SUM_BLOCK : n;
    double s = 0;
    for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += x[i];
    s = cu_block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ static void k_sum_final(int64_t nblk, const double *partial, float scale, float *y)
{
    double s = 0;
    for (int64_t b = 0; b < nblk; b++) s += partial[b];
    y[0] = (float)(s * scale);
}

static void sum_fwd(NnBackend *be, int64_t n, float scale, const float *x, float *y)
{
    CuImpl *c = cu_impl(be);
    int64_t nblk = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    double *part = (double *)cu_buf(c, &c->scratch, (size_t)(nblk ? nblk : 1) * sizeof(double));
    if (nblk) { /* an empty x sums to 0 (k_sum_final over no blocks); a 0-block launch is an error */
        k_sum_blocks<<<(unsigned)nblk, CU_THREADS, 0, c->stream>>>(n, x, part);
        CU_LAUNCHED();
    }
    k_sum_final<<<1, 1, 0, c->stream>>>(nblk, part, scale, y);
    CU_LAUNCHED();
}

void cu_elem_init(NnBackend *be)
{
    be->axpy = axpy;
    be->fill_add = fill_add;
    be->scale_fwd = scale_fwd;
    be->act_fwd = act_fwd;
    be->act_bwd = act_bwd;
    be->act_bwd_inplace = act_bwd_inplace;
    be->binary_fwd = binary_fwd;
    be->binary_bwd = binary_bwd;
    be->normalize_fwd = normalize_fwd;
    be->normalize_bwd = normalize_bwd;
    be->dropout_fwd = dropout_fwd;
    be->mul_bwd = mul_bwd;
    be->sum_fwd = sum_fwd;
}

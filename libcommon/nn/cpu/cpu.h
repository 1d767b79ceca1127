/* cpu.h - private to libcommon/nn/cpu/: the worker pool, per-thread scratch, and the kernel groups
 * that backend.c puts into the CPU op table.
 *
 * Work is split into fixed contiguous ranges (cpu_for); results never depend on the thread count
 * because every reduction either stays inside one task item or sums fixed blocks in a fixed order.
 */
#ifndef DD_NN_CPU_H
#define DD_NN_CPU_H

#include "libcommon/nn/backend.h"

typedef struct CpuPool CpuPool;

/* fn(arg, begin, end, tid) over [0, n) split into at most `threads` contiguous ranges. */
typedef void (*CpuTask)(void *arg, int64_t begin, int64_t end, int tid);

typedef struct {
    CpuPool *pool;
    int threads;
    float **scratch;        /* per thread, grown on demand and kept (no malloc in steady state) */
    size_t *scratch_n;
    float *shared;          /* one buffer shared by a kernel's tasks (partial sums), kept */
    size_t shared_n;
} CpuImpl;

CpuPool *cpu_pool_new(int threads);
void cpu_pool_free(CpuPool *p);
void cpu_pool_run(CpuPool *p, int64_t n, CpuTask fn, void *arg);

static inline CpuImpl *cpu_impl(NnBackend *be) { return (CpuImpl *)be->impl; }
/* Runs fn over [0, n) on the backend's pool; small n (< min_items) runs inline on one range. */
void cpu_for(NnBackend *be, int64_t n, int64_t min_items, CpuTask fn, void *arg);
/* Thread tid's scratch buffer of at least n floats (contents undefined). */
float *cpu_scratch(NnBackend *be, int tid, size_t n);
/* The shared buffer of at least n floats; call outside tasks (contents undefined). */
float *cpu_shared(NnBackend *be, size_t n);

/* Weight-gradient partial sums of the GEMM convolutions: images are cut into this many fixed
 * groups, summed in order. */
#define CONV_PARTS 4

/* Images per GEMM chunk when `want` would be ideal: the chunk count rounded up to a multiple of 4
 * where that keeps chunks at least half as large, so 2 or 4 workers get equal shares (100 images
 * at want 16: 8 chunks of 13, not 7 of 16). A function of the shape only, never of the threads. */
static inline int cpu_balanced_chunk(int n, int want)
{
    int nc = (n + want - 1) / want, nc4 = (nc + 3) / 4 * 4, c = (n + nc4 - 1) / nc4;
    return c * 2 >= want ? c : want;
}

/* y [nb][cout][hw] += b[c] per channel. */
static inline void cpu_add_bias(float *y, const float *b, int nb, int cout, int64_t hw)
{
    for (int i = 0; i < nb; i++)
        for (int c = 0; c < cout; c++) {
            float bv = b[c], *yc = y + ((size_t)i * cout + c) * hw;
            for (int64_t t = 0; t < hw; t++) yc[t] += bv;
        }
}

/* dst[i] += src[i], in blocks of 8 that gcc vectorises at -O2; dst never overlaps src. */
static inline void cpu_acc_run(int64_t n, const float *restrict src, float *restrict dst)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] += src[i + k];
    for (; i < n; i++) dst[i] += src[i];
}

/* conv_flat.c: stride-1 'same' convolutions as shifted GEMMs over padded flat planes, for the
 * shapes cpu_flat_ok accepts (not depthwise: conv.c's plane kernels do those). */
int cpu_flat_ok(const NnConvShape *s);
void cpu_flat_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                  const float *b, float *y);
void cpu_flat_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                       float *dx);
void cpu_flat_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                         float *dw);

/* conv_direct.c: stride-1 'same' convolutions of one group by a register-blocked AVX2/FMA kernel
 * (forward and backward-data); cpu_direct_ok is false without AVX2 and FMA, or with the
 * environment DD_CPU_CONV=gemm (the im2col / flat paths: tests run both). */
int cpu_direct_ok(const NnConvShape *s);
void cpu_direct_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                    const float *b, float *y);
void cpu_direct_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                         float *dx);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* r[k] <- lane k of r[0..7] (an 8 x 8 transpose: rows of 8 floats become columns); AVX callers
 * only. */
__attribute__((target("avx2,fma"), always_inline)) static inline void cpu_transpose8(__m256 r[8])
{
    __m256 a[8], b[8];
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        a[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* b[4j + k], 128-bit lane L: rows 4j..4j+3 at column 4L + k */
    for (int i = 0; i < 8; i += 4) {
        b[i] = _mm256_shuffle_ps(a[i], a[i + 2], 0x44);
        b[i + 1] = _mm256_shuffle_ps(a[i], a[i + 2], 0xEE);
        b[i + 2] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0x44);
        b[i + 3] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x31);
    }
}

/* lanes [0, m) of 8 set: a mask for maskload (AMD's Zen microcodes maskstore: slow) */
__attribute__((target("avx2,fma"), always_inline)) static inline __m256i cpu_mask8(size_t m)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* conv_direct.c (AVX2 CPUs only), the images-innermost planes of the direct and Winograd paths:
 * dst [y rowf + x nb + i] = src [i istride + y w + x] for i < nimg, y < h, x < w (interleave),
 * and back: dst [i istride + y w + x] = (or += when acc) src [y rowf + x nb + i] (+ bias when
 * bias is not NULL and not acc) (deinterleave). Eight images by eight pixels of a plane (across
 * its rows) go through cpu_transpose8, the rest one by one; each value is moved, or added once,
 * as a scalar loop would. */
void cpu_interleave(const float *src, size_t istride, int nimg, int h, int w, size_t nb, float *dst,
                    size_t rowf);
void cpu_deinterleave(const float *src, size_t rowf, size_t nb, int nimg, int h, int w, const float *bias,
                      int acc, float *dst, size_t istride);
#endif

/* conv_direct.c's register-blocked kernel, which conv_wino.c uses as its GEMM (x86 with AVX2 + FMA
 * only): c[6][ldc] (+= when load, else =) the sum over kc channels of P (cs floats apart) and ntap
 * taps (P at off[t]) of a[c][t][6] x the 16 floats of P. */
void cpu_dc_kernel(int kc, int ntap, const float *a, const float *p, size_t cs, const ptrdiff_t *off,
                   float *c, size_t ldc, int load);
/* The same for two tiles at once, with AVX-512 (only where cpu_avx512()): the tile at p0 into
 * columns 0-15 of c, the one at p1 into columns 16-31; bit-identical to two cpu_dc_kernel calls. */
void cpu_dc_kernel2(int kc, int ntap, const float *a, const float *p0, const float *p1, size_t cs,
                    const ptrdiff_t *off, float *c, size_t ldc, int load);
/* The same with the two tiles' outputs apart: p0's into c[6][16], p1's into d[6][16]. */
void cpu_dc_kernel2s(int kc, int ntap, const float *a, const float *p0, const float *p1, size_t cs,
                     const ptrdiff_t *off, float *c, float *d, size_t ldc, int load);

/* conv.c: a GEMM on cpu_dc_kernel2s (with one tap; with AVX2 alone two cpu_dc_kernel calls a tile,
 * the same bits), for the im2col and flat convolutions and linear where cpu_avx512(), and with
 * AVX2 the pointwise convolutions on small planes side by side (conv.c's kg_gemm_ok): C[m][cols] (=, or += when load) A B over k terms. A in 6-row panels
 * packed once per call ([panel][k][6], zero rows past m); B in tiles of KG_NR columns packed per
 * block of KG_KC terms into a thread's buffer (zero columns past cols) that serve every panel;
 * tiles short of 6 rows or KG_NR columns through a 6 x KG_NR buffer. Each output sums its terms
 * in one fixed order (ascending, KG_KC at a time): the results do not depend on how columns are
 * split between threads. */
#define KG_KC 256
#define KG_NR 32
#define KG_SCRATCH ((size_t)KG_KC * KG_NR + 6 * KG_NR) /* floats of cpu_kg_cols's buffer */

typedef struct {
    int m, k, cols;
    const float *a;    /* packed panels */
    const float *b;    /* B[kk][col] = trans ? b[col ldb + kk] : b[kk ldb + col] */
    size_t ldb;
    int trans;
    float *c;          /* [m][ldc] */
    size_t ldc;
    int load;
    const float *bias; /* per column, added after the sums, or NULL (not with seg) */
    /* seg > 0, a multiple of 16: the columns come in images of seg (B not trans): column col of
     * B and C lies in image col / seg, at b + (col / seg) bstride, c + (col / seg) cstride,
     * column col % seg there (a pointwise convolution reads x and writes y in place of im2col's
     * copies; each 16-column half of a tile lies in one image) */
    int seg;
    size_t bstride, cstride;
} KGemm;

/* Panels [p0, p1) of A (a: (m + 5) / 6 panels of 6 k floats) from src: row r, term kk at
 * src[r lds + kk], or (trans) src[kk lds + r]. */
void cpu_kg_pack_a(const float *src, size_t lds, int trans, int m, int k, int64_t p0, int64_t p1,
                   float *a);
/* Columns [t0, t1) of C (t0 a multiple of KG_NR); buf: KG_SCRATCH floats. */
void cpu_kg_cols(const KGemm *g, int t0, int t1, float *buf);

/* conv_wino.c: 3x3 stride-1 'same' convolutions of one group with enough channels (1/cin +
 * 1/cout <= 1/16) and planes whose tiles waste little by Winograd's F(4x4, 3x3), or F(2x2, 3x3)
 * where 4x4 tiles would compute as many products (forward and backward-data); cpu_wino_ok is false
 * without AVX2 and FMA, or with DD_CPU_CONV set (direct: conv_direct.c's kernel; gemm), and true for
 * every 3x3 'same' shape with DD_CPU_CONV=winograd (winograd2, winograd4: the tile forced). */
int cpu_wino_ok(const NnConvShape *s);
void cpu_wino_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                  const float *b, float *y);
void cpu_wino_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                       float *dx);
/* The weight gradient (dw +=) by the same tiles, on cpu_kg_cols's GEMM: cpu_wino_filter_ok is
 * cpu_wino_ok (AVX-512F or AVX2). */
int cpu_wino_filter_ok(const NnConvShape *s);
void cpu_wino_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                         float *dw);

/* conv_dw.c: depthwise convolutions (groups = cin = cout, at most 64 taps, stride at most 8) on
 * flat runs of a polyphase-split plane with AVX-512F or AVX2 (the same bits): forward, backward
 * data (dx +=) and backward filter (dw +=). cpu_dwflat_ok is false without AVX2, or with
 * DD_CPU_CONV=gemm (conv.c's
 * plane kernels: tests run both). cpu_dwflat_pick, for forward and backward data: ok, and where
 * conv_direct.c takes the shape too, the runs compute at most 5/4 lanes per output (not 4x4
 * planes, nor 5x5 taps on 8x8, where the direct kernel is faster) and DD_CPU_CONV is not direct. */
int cpu_dwflat_ok(const NnConvShape *s);
int cpu_dwflat_pick(const NnConvShape *s);
void cpu_dwflat_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w,
                    const float *b, float *y);
void cpu_dwflat_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w,
                         float *dx);
void cpu_dwflat_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x,
                           float *dw);

/* conv_dwc.c: depthwise convolutions of small planes (4 to 64 output and at most 324 padded input
 * pixels, stride 1 or 2, no dilation, at most 25 taps), 16 channels to a vector (AVX-512F, or
 * AVX2 + FMA as two halves: the same bits): backward filter (dw +=; cpu_dwc_filter_ok), forward
 * (cpu_dwc_ok: with AVX2 alone, stride 2 only) and backward data (dx +=; cpu_dwc_data_ok: that,
 * from 5 outputs). All false without AVX2, or with DD_CPU_CONV=direct or gemm (the other depthwise
 * paths: tests run them all). */
int cpu_dwc_filter_ok(const NnConvShape *s);
int cpu_dwc_ok(const NnConvShape *s);
int cpu_dwc_data_ok(const NnConvShape *s);
void cpu_dwc_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y);
void cpu_dwc_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx);
void cpu_dwc_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x, float *dw);

/* conv_dwp.c: depthwise 3x3 convolutions, padding 1, the plane in registers where it lies (AVX2 +
 * FMA): stride 1 on 4x4, 8x8 and 16x16 planes and stride 2 from 8x8 and 16x16, forward and backward
 * filter (dw +=; cpu_dwp_ok), backward data (dx +=; cpu_dwp_data_ok: stride 1). False without
 * AVX2, on 4x4 planes with AVX-512 (conv_dwc.c keeps those there), or with DD_CPU_CONV=direct or
 * gemm (tests run those paths too). */
int cpu_dwp_ok(const NnConvShape *s);
int cpu_dwp_data_ok(const NnConvShape *s);
void cpu_dwp_fwd(NnBackend *be, const NnConvShape *s, const float *x, const float *w, const float *b,
                 float *y);
void cpu_dwp_bwd_data(NnBackend *be, const NnConvShape *s, const float *dy, const float *w, float *dx);
void cpu_dwp_bwd_filter(NnBackend *be, const NnConvShape *s, const float *dy, const float *x, float *dw);

/* 1 where the CPU runs AVX2 and FMA (the vector kernels of conv_direct.c, conv_wino.c, elem.c and
 * norm.c's sums), and AVX-512F too (conv_direct.c's cpu_dc_kernel2, for the direct and Winograd
 * convolutions); always 0 off x86. The environment lowers them (read per call, so tests and
 * benchmarks compare the paths): DD_CPU_ISA=avx2 no AVX-512, DD_CPU_ISA=baseline neither (the
 * plain C loops and the OpenBLAS convolution paths); another value is a usage error. */
int cpu_avx2(void);
int cpu_avx512(void);

/* Kernel groups (fill their slots of the table). */
void cpu_conv_init(NnBackend *be);
void cpu_elem_init(NnBackend *be);
void cpu_norm_init(NnBackend *be);
void cpu_pool_ops_init(NnBackend *be);
void cpu_loss_init(NnBackend *be);
void cpu_layout_init(NnBackend *be);

#endif

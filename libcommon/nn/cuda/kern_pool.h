/* kern_pool.h - the body of max pooling's backward on planes at least MPB_MIN_W wide, one thread's
 * work as a function of its block and thread index: pool_ops.cu's kernel calls it on the GPU, and
 * tests/unit/test_cuda_emul.c calls it on the CPU over the same grid (every block, every thread)
 * against the CPU backend, so the index arithmetic and the grid's cover of every pixel are
 * checked where there is no GPU. Plain C that nvcc compiles as C++ too.
 *
 * The general kernel (one thread per input pixel) most likely spends its time on integer
 * divisions (a reading of its code, not a measurement): six a pixel (the plane, the row, and both
 * ends of the two ranges of outputs whose windows cover it), which the GPU emulates in some twenty
 * instructions each; ResNet's stem (3x3 stride 2 over
 * 112x112 at 224 px) made it 1.0 of the recover step's 18.8 ms of GPU time. Here a block is a tile
 * of MPB_ROWS rows of one plane and a thread one column of it: the column's output range is
 * computed once, the rows' ranges are stepped without division, and the plane and tile come from
 * one division per thread. The sums are the general kernel's (and the CPU's scatter's): for each
 * output (oi, oj) covering the pixel in row-major order, dy added where the argmax is the pixel.
 */
#ifndef DD_NN_CUDA_KERN_POOL_H
#define DD_NN_CUDA_KERN_POOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#include "libcommon/nn/backend.h"
}
#else
#include "libcommon/nn/backend.h"
#endif

#include "libcommon/nn/cuda/kern.h"

enum {
    MPB_MIN_W = 32,   /* narrower planes leave most of a warp idle: the general kernel takes them */
    MPB_ROWS = 8,     /* rows of a block's tile */
    MPB_MAX_THREADS = 256,
};

/* The launch: grid.x = planes * tiles (tiles = row tiles per plane), grid.y = column blocks of
 * `threads` columns (a multiple of 32, up to MPB_MAX_THREADS). */
typedef struct {
    int64_t gx;
    int gy, threads, tiles;
} MpbGrid;

static inline MpbGrid mpb_grid(const NnPoolShape *s)
{
    MpbGrid g;
    int w32 = (s->w + 31) / 32 * 32;
    g.threads = w32 < MPB_MAX_THREADS ? w32 : MPB_MAX_THREADS;
    g.gy = (s->w + g.threads - 1) / g.threads;
    g.tiles = (s->h + MPB_ROWS - 1) / MPB_ROWS;
    g.gx = s->np * g.tiles;
    return g;
}

/* Outputs [*lo, *hi] whose windows [o stride - pad, + k) cover input index i (pool_ops.cu's cover). */
DD_HD static inline void mpb_cover(int i, int k, int stride, int pad, int out, int *lo, int *hi)
{
    int a = i + pad - k + 1;
    *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
    int b = (i + pad) / stride;
    *hi = b < out - 1 ? b : out - 1;
}

/* Block (bx, by), thread tx: column by * threads + tx of tile bx % tiles of plane bx / tiles. */
DD_HD static inline void mpb_thread(const NnPoolShape *s, int tiles, int threads, int64_t bx, int by, int tx,
                                    const uint8_t *idx, const float *dy, float *dx)
{
    const int iw = by * threads + tx;
    if (iw >= s->w) return;
    const int64_t p = bx / tiles;
    const int r0 = (int)(bx - p * tiles) * MPB_ROWS, r1 = r0 + MPB_ROWS < s->h ? r0 + MPB_ROWS : s->h;
    int j0, j1;
    mpb_cover(iw, s->k, s->stride, s->pad, s->ow, &j0, &j1);
    /* rows, stepped: lo the first output whose window's last row (lo stride - pad + k - 1) reaches
     * ih; hi the last whose first row (hi stride - pad) is at most ih, clamped to oh - 1 after */
    int lo, hi;
    mpb_cover(r0, s->k, s->stride, s->pad, s->oh, &lo, &hi);
    const uint8_t *ip = idx + p * s->oh * s->ow;
    const float *d = dy + p * s->oh * s->ow;
    float *x = dx + p * s->h * s->w + iw;
    for (int ih = r0; ih < r1; ih++) {
        while (lo * s->stride - s->pad + s->k - 1 < ih) lo++;
        while ((hi + 1) * s->stride - s->pad <= ih) hi++;
        const int i1 = hi < s->oh - 1 ? hi : s->oh - 1;
        float acc = x[(int64_t)ih * s->w];
        for (int oi = lo; oi <= i1; oi++) {
            const int row = (ih - oi * s->stride + s->pad) * s->k;
            for (int oj = j0; oj <= j1; oj++)
                if (ip[oi * s->ow + oj] == row + (iw - oj * s->stride + s->pad)) acc += d[oi * s->ow + oj];
        }
        x[(int64_t)ih * s->w] = acc;
    }
}

#endif

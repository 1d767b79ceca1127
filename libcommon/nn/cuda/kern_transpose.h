/* kern_transpose.h - the index arithmetic of conv.cu's transposing casts (DD_CUDA_NHWC): B
 * matrices [R, S] (row-major, matrix b at b R S) to [S, R], through a TR_TILE x TR_TILE tile in
 * shared memory, so that both the reads and the writes go along rows. A block is TR_TILE x
 * TR_ROWS threads; each loads TR_TILE / TR_ROWS elements of the tile, waits for the block, and
 * stores as many. conv.cu's kernels call these with blockIdx / threadIdx; tests/unit/
 * test_cuda_emul.c runs the same two phases over the whole grid on the CPU (plain C, which nvcc
 * compiles as C++ too).
 *
 * Uses: NCHW activations to NHWC (B = images, R = channels, S = pixels) and back (R = pixels,
 * S = channels); KCRS weights to KRSC (B = output channels, R = input channels, S = taps) and
 * their gradients back.
 */
#ifndef DD_NN_CUDA_KERN_TRANSPOSE_H
#define DD_NN_CUDA_KERN_TRANSPOSE_H

#include <stdint.h>

#include "libcommon/nn/cuda/kern.h"

enum {
    TR_TILE = 32,
    TR_ROWS = 8,
    TR_GZ_MAX = 65535, /* grid.z's limit: matrices beyond it go round again (b += gridDim.z) */
};

/* grid.x over S's tiles, grid.y over R's (at most 65535: R < 2^21), grid.z over the matrices. */
typedef struct {
    unsigned gx, gy, gz;
} TrGrid;

static inline TrGrid tr_grid(int64_t B, int R, int S)
{
    TrGrid g;
    g.gx = (unsigned)((S + TR_TILE - 1) / TR_TILE);
    g.gy = (unsigned)((R + TR_TILE - 1) / TR_TILE);
    g.gz = (unsigned)(B < (int64_t)TR_GZ_MAX ? B : (int64_t)TR_GZ_MAX);
    return g;
}

/* Whether tr_grid can launch it (grid.y's limit). */
static inline int tr_fits(int R) { return (R + TR_TILE - 1) / TR_TILE <= 65535; }

/* Load step j (0 <= j < TR_TILE / TR_ROWS) of thread (tx, ty) in block (bx, by), matrix b: the
 * source element's offset, or -1 outside the matrix; it goes to tile[ty + j TR_ROWS][tx]. */
DD_HD static inline int64_t tr_src(int64_t b, int R, int S, unsigned bx, unsigned by, unsigned tx, unsigned ty,
                                   int j)
{
    const int64_t r = (int64_t)by * TR_TILE + ty + j * TR_ROWS, s = (int64_t)bx * TR_TILE + tx;
    return r < R && s < S ? (b * R + r) * S + s : -1;
}

/* Store step j: the destination element's offset, or -1; it takes tile[tx][ty + j TR_ROWS]. */
DD_HD static inline int64_t tr_dst(int64_t b, int R, int S, unsigned bx, unsigned by, unsigned tx, unsigned ty,
                                   int j)
{
    const int64_t s = (int64_t)bx * TR_TILE + ty + j * TR_ROWS, r = (int64_t)by * TR_TILE + tx;
    return r < R && s < S ? (b * S + s) * R + r : -1;
}

#endif

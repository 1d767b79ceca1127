/* test_cuda_emul.c - CUDA kernel bodies that are written as one thread's work (libcommon/nn/cuda/
 * kern_*.h), run on the CPU over their launch grid, block by block and thread by thread, against
 * the CPU backend: bit for bit where the kernel promises the CPU's sums. This checks the index
 * arithmetic and that the grid covers every element once, here, where there is no GPU; what it
 * cannot check (the launch itself, memory, concurrency) test_cuda_ops does on a device. Kernels:
 * max pooling's backward tiles, the NHWC transposes, eval-mode batchnorm, MixUp and CutMix, the
 * per-channel clamp. */
#include "check.h"
#include "libcommon/base/base.h"
#include "libcommon/nn/backend.h"
#include "libcommon/nn/cuda/kern_mix.h"
#include "libcommon/nn/cuda/kern_norm.h"
#include "libcommon/nn/cuda/kern_pool.h"
#include "libcommon/nn/cuda/kern_transpose.h"

#include <stdint.h>
#include <string.h>

static DdRng rng;

static float *rnd(int64_t n)
{
    float *p = dd_malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = (float)dd_rng_uniform(&rng) * 2.0f - 1.0f;
    return p;
}

static int cases;

/* Max pooling's backward by kern_pool.h's thread over mpb_grid, against the CPU backend's. */
static void maxpool_case(NnBackend *cpu, NnPoolShape s, int ties)
{
    s.oh = (s.h + 2 * s.pad - s.k) / s.stride + 1;
    s.ow = (s.w + 2 * s.pad - s.k) / s.stride + 1;
    int64_t nx = s.np * s.h * s.w, ny = s.np * s.oh * s.ow;
    float *x = rnd(nx), *y = dd_malloc((size_t)ny * sizeof *y), *dy = rnd(ny), *dc = rnd(nx);
    if (ties) /* few distinct values: argmax ties, resolved by the forward's first-wins rule */
        for (int64_t i = 0; i < nx; i++) x[i] = (float)(int)(x[i] * 2.0f);
    if (ties > 1) x[nx / 2] = NAN;
    uint8_t *idx = dd_malloc((size_t)ny);
    float *de = dd_malloc((size_t)nx * sizeof *de);
    memcpy(de, dc, (size_t)nx * sizeof *de);
    cpu->maxpool_fwd(cpu, &s, x, y, idx);
    cpu->maxpool_bwd(cpu, &s, idx, dy, dc);
    MpbGrid g = mpb_grid(&s);
    CHECK(g.threads % 32 == 0 && g.threads >= 32 && g.threads <= MPB_MAX_THREADS);
    CHECK((int64_t)g.gy * g.threads >= s.w && (int64_t)(g.gy - 1) * g.threads < s.w);
    CHECK(g.gx == s.np * g.tiles && (int64_t)g.tiles * MPB_ROWS >= s.h);
    for (int64_t bx = 0; bx < g.gx; bx++)
        for (int by = 0; by < g.gy; by++)
            for (int tx = 0; tx < g.threads; tx++) mpb_thread(&s, g.tiles, g.threads, bx, by, tx, idx, dy, de);
    int64_t bad = -1;
    for (int64_t i = 0; i < nx && bad < 0; i++)
        if (memcmp(&dc[i], &de[i], sizeof *dc)) bad = i;
    CHECK_MSG(bad < 0, "maxpool bwd np %lld %dx%d k%d s%d p%d ties %d: element %lld (plane %lld row %lld col %lld) "
              "%.9g, the CPU's %.9g", (long long)s.np, s.h, s.w, s.k, s.stride, s.pad, ties, (long long)bad,
              (long long)(bad / ((int64_t)s.h * s.w)), (long long)(bad / s.w % s.h), (long long)(bad % s.w),
              bad < 0 ? 0.0 : (double)de[bad], bad < 0 ? 0.0 : (double)dc[bad]);
    cases++;
    free(x), free(y), free(dy), free(dc), free(de), free(idx);
}

static void test_maxpool_bwd(NnBackend *cpu)
{
    /* np h w oh ow k stride pad */
    maxpool_case(cpu, (NnPoolShape){6, 112, 112, 0, 0, 3, 2, 1}, 0); /* ResNet's stem at 224 px */
    maxpool_case(cpu, (NnPoolShape){4, 100, 100, 0, 0, 3, 2, 1}, 1); /* ... at 200 px */
    maxpool_case(cpu, (NnPoolShape){3, 55, 55, 0, 0, 3, 2, 0}, 2);   /* AlexNet's */
    maxpool_case(cpu, (NnPoolShape){5, 37, 291, 0, 0, 4, 3, 2}, 0);  /* two column blocks, a short tile */
    maxpool_case(cpu, (NnPoolShape){2, 20, 19, 0, 0, 15, 1, 7}, 1);  /* offsets to 224 */
    maxpool_case(cpu, (NnPoolShape){2, 64, 64, 0, 0, 2, 2, 0}, 0);   /* VGG's */
    maxpool_case(cpu, (NnPoolShape){1, 1, 1, 0, 0, 1, 1, 0}, 0);
    for (int t = 0; t < 300; t++) { /* random geometry, narrow planes too (the function, not the launch) */
        int k = (int)dd_rng_int(&rng, 1, 7), stride = (int)dd_rng_int(&rng, 1, 4);
        int pad = (int)dd_rng_int(&rng, 0, k / 2);
        int lo = k - 2 * pad > 1 ? k - 2 * pad : 1;
        int h = (int)dd_rng_int(&rng, lo, 60), w = (int)dd_rng_int(&rng, lo, t % 3 ? 80 : 600);
        maxpool_case(cpu, (NnPoolShape){dd_rng_int(&rng, 1, 3), h, w, 0, 0, k, stride, pad}, t % 3);
    }
}

/* conv.cu's transposing casts (k_to_low_t, k_from_low_t) as their blocks run them: every thread's
 * loads into the shared tile, the block's barrier, every thread's stores; matrices b = z, z + gz,
 * ... as the kernel's loop over grid.z (gz below tr_grid's to take that loop round). Each
 * destination element must be written once, with its source's value. */
static void transpose_case(int64_t B, int R, int S, unsigned gz)
{
    int64_t n = B * R * S;
    float *src = rnd(n), *dst = dd_malloc((size_t)n * sizeof *dst);
    int *writes = dd_calloc((size_t)n, sizeof *writes);
    TrGrid g = tr_grid(B, R, S);
    CHECK((int64_t)g.gx * TR_TILE >= S && (int64_t)g.gy * TR_TILE >= R && g.gz >= 1 && g.gz <= TR_GZ_MAX);
    CHECK(g.gz == (B < TR_GZ_MAX ? (unsigned)B : (unsigned)TR_GZ_MAX));
    if (gz) g.gz = gz;
    static float tile[TR_TILE][TR_TILE + 1];
    for (unsigned bz = 0; bz < g.gz; bz++)
        for (unsigned by = 0; by < g.gy; by++)
            for (unsigned bx = 0; bx < g.gx; bx++)
                for (int64_t b = bz; b < B; b += g.gz) {
                    for (unsigned ty = 0; ty < TR_ROWS; ty++)
                        for (unsigned tx = 0; tx < TR_TILE; tx++)
                            for (int j = 0; j < TR_TILE / TR_ROWS; j++) {
                                int64_t o = tr_src(b, R, S, bx, by, tx, ty, j);
                                if (o >= 0) tile[ty + j * TR_ROWS][tx] = src[o];
                            }
                    for (unsigned ty = 0; ty < TR_ROWS; ty++)
                        for (unsigned tx = 0; tx < TR_TILE; tx++)
                            for (int j = 0; j < TR_TILE / TR_ROWS; j++) {
                                int64_t o = tr_dst(b, R, S, bx, by, tx, ty, j);
                                if (o < 0) continue;
                                CHECK(o < n);
                                dst[o] = tile[tx][ty + j * TR_ROWS];
                                writes[o]++;
                            }
                }
    int64_t bad = -1;
    for (int64_t b = 0; b < B && bad < 0; b++)
        for (int r = 0; r < R && bad < 0; r++)
            for (int s = 0; s < S; s++) {
                int64_t to = (b * S + s) * R + r;
                if (writes[to] != 1 || dst[to] != src[(b * R + r) * S + s]) {
                    bad = to;
                    break;
                }
            }
    CHECK_MSG(bad < 0, "transpose B %lld R %d S %d gz %u: destination %lld written %d times", (long long)B, R, S,
              gz, (long long)bad, bad < 0 ? 0 : writes[bad]);
    cases++;
    free(src), free(dst), free(writes);
}

static void test_transpose(void)
{
    /* B R S: conv.cu's uses (activations both ways, weights both ways), then edges of the tile */
    transpose_case(3, 64, 56 * 56, 0);  /* NCHW -> NHWC */
    transpose_case(3, 28 * 28, 128, 0); /* NHWC -> NCHW */
    transpose_case(64, 64, 9, 0);       /* KCRS -> KRSC */
    transpose_case(64, 9, 64, 0);       /* KRSC -> KCRS */
    transpose_case(2, 1, 1, 0);
    transpose_case(1, 33, 31, 0);
    transpose_case(5, 32, 32, 0);
    transpose_case(7, 65, 97, 3);       /* matrices beyond grid.z: the loop goes round */
    for (int t = 0; t < 40; t++)
        transpose_case(dd_rng_int(&rng, 1, 6), (int)dd_rng_int(&rng, 1, 140), (int)dd_rng_int(&rng, 1, 140),
                       t % 4 ? 0 : (unsigned)dd_rng_int(&rng, 1, 3));
}

/* Bitwise equal, or both NaN (the payload is not part of the contract). */
static int64_t first_diff(const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) && !(isnan(a[i]) && isnan(b[i]))) return i;
    return -1;
}

static float *copyf(const float *p, int64_t n)
{
    float *q = dd_malloc((size_t)(n ? n : 1) * sizeof *q);
    memcpy(q, p, (size_t)n * sizeof *q);
    return q;
}

/* norm.cu's batchnorm in eval mode with a frozen BN (recover's teacher: no sums, dw and db NULL),
 * against the CPU backend's bn_act_fwd and bn_act_bwd: the forward's elementwise pass
 * (k_bn_act_fwd), then the backward as bn_act_bwd launches it: k_bwd_coef's channels, then
 * k_dz_dx, each over (chunks, C) blocks of KN_THREADS. keep_y: the forward's output given (else
 * the mask from z recomputed; only without a residual); res: a residual (dr); inplace: dx is
 * dy's buffer; stat: the statistics loss's gradient added; nan: one x is NaN. */
static void bn_bwd_case(NnBackend *cpu, NnAct act, int n, int C, int64_t hw, int keep_y, int res, int inplace,
                        int stat, int nan)
{
    int64_t total = (int64_t)n * C * hw;
    float *x = rnd(total), *r = res ? rnd(total) : NULL, *w = rnd(C), *b = rnd(C), *rm = rnd(C), *rv = rnd(C);
    for (int c = 0; c < C; c++) rv[c] = rv[c] * rv[c] + 0.1f, rm[c] *= 0.5f, w[c] *= 4.0f, b[c] *= 3.0f;
    for (int64_t i = 0; i < total; i++) x[i] *= 3.0f; /* z over (-6, 6) and beyond: relu6's both edges */
    if (nan) x[total / 3] = NAN;
    float *y = dd_malloc((size_t)total * sizeof *y), *mean = dd_malloc((size_t)C * sizeof *mean);
    float *invstd = dd_malloc((size_t)C * sizeof *invstd), *save = dd_malloc((size_t)(3 * C + 2) * sizeof *save);
    float loss[1], dloss[1] = {0.37f};
    cpu->bn_act_fwd(cpu, act, 0, n, C, hw, 1e-5f, 0.0f, x, r, w, b, rm, rv, y, mean, invstd, stat ? loss : NULL,
                    stat ? save : NULL);
    /* the forward's elementwise pass (k_bn_act_fwd, eval: the CPU's mean and invstd are
     * k_eval_stats' expressions) over every chunk, channel and thread */
    const int chunks = chunks_for(n, hw);
    float *ye = dd_malloc((size_t)total * sizeof *ye);
    for (int c = 0; c < C; c++)
        for (int bx = 0; bx < chunks; bx++)
            for (unsigned tx = 0; tx < KN_THREADS; tx++) {
                double s1, q1;
                bn_fwd_thread((unsigned)bx, tx, c, (int)act, n, C, hw, chunks, x, r, w, b, mean, invstd, ye, stat,
                              &s1, &q1);
            }
    int64_t bady = first_diff(y, ye, total);
    CHECK_MSG(bady < 0, "bn forward act %d n %d C %d hw %lld res %d nan %d: y element %lld (%.9g, the CPU's %.9g)",
              (int)act, n, C, (long long)hw, res, nan, (long long)bady, bady < 0 ? 0.0 : (double)ye[bady],
              bady < 0 ? 0.0 : (double)y[bady]);
    free(ye);
    float *dy = rnd(total), *dx0 = rnd(total), *dr0 = res ? rnd(total) : NULL;
    float *gc = copyf(dy, total), *dxc = inplace ? gc : copyf(dx0, total), *drc = res ? copyf(dr0, total) : NULL;
    float *ge = copyf(dy, total), *dxe = inplace ? ge : copyf(dx0, total), *dre = res ? copyf(dr0, total) : NULL;
    const float *yk = keep_y ? y : NULL;
    cpu->bn_act_bwd(cpu, act, 0, n, C, hw, x, yk, w, b, mean, invstd, gc, dxc, drc, NULL, NULL,
                    stat ? save : NULL, stat ? dloss : NULL);
    const double count = (double)n * (double)hw;
    float *coef = dd_malloc((size_t)C * 8 * sizeof *coef);
    for (int c = 0; c < C; c++)
        bn_coef_one(c, C, count, w, mean, invstd, NULL, NULL, NULL, NULL, stat ? save : NULL, dloss, coef);
    for (int c = 0; c < C; c++)
        for (int bx = 0; bx < chunks; bx++)
            for (unsigned tx = 0; tx < KN_THREADS; tx++)
                bn_dz_dx_thread((unsigned)bx, tx, c, (int)act, 0, stat, n, C, hw, chunks, x, yk, w, b, ge, dxe, dre,
                                coef);
    int64_t bad = first_diff(dxc, dxe, total), badr = res ? first_diff(drc, dre, total) : -1;
    CHECK_MSG(bad < 0 && badr < 0, "bn backward act %d n %d C %d hw %lld keep_y %d res %d inplace %d stat %d nan %d: "
              "dx element %lld (%.9g, the CPU's %.9g), dr element %lld", (int)act, n, C, (long long)hw, keep_y, res,
              inplace, stat, nan, (long long)bad, bad < 0 ? 0.0 : (double)dxe[bad], bad < 0 ? 0.0 : (double)dxc[bad],
              (long long)badr);
    cases++;
    free(x), free(r), free(w), free(b), free(rm), free(rv), free(y), free(mean), free(invstd), free(save);
    free(dy), free(dx0), free(dr0), free(gc), free(ge), free(coef), free(drc), free(dre);
    if (!inplace) free(dxc), free(dxe);
}

static void test_bn_bwd(NnBackend *cpu)
{
    static const NnAct acts[3] = {NN_ACT_RELU, NN_ACT_RELU6, NN_BN_NO_ACT};
    /* n C hw: planes longer and shorter than a block, one and several chunks per channel */
    static const int shapes[][3] = {{3, 5, 49}, {2, 3, 1024}, {70, 2, 300}, {1, 4, 1}, {5, 3, 257}, {40, 2, 1000}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int a = 0; a < 3; a++)
            for (int mode = 0; mode < 16; mode++) {
                int keep_y = mode & 1, res = (mode >> 1) & 1, inplace = (mode >> 2) & 1, stat = (mode >> 3) & 1;
                if (res && !keep_y) continue; /* the forward had a residual: its output is kept */
                if (acts[a] == NN_BN_NO_ACT && res) continue; /* bn_act's contract: no residual without act */
                bn_bwd_case(cpu, acts[a], shapes[s][0], shapes[s][1], shapes[s][2], keep_y, res, inplace, stat,
                            (int)(s + a + mode) % 5 == 0);
            }
}

/* loss.cu's MixUp and CutMix, element by element over the launch's whole range (the grid-stride
 * loop's cover is CU_FOR's), against the CPU backend: bit for bit. */
static void mix_case(NnBackend *cpu, int n, int c, int h, int w, int y0, int x0, int y1, int x1)
{
    int64_t row = (int64_t)c * h * w, total = n * row;
    float *x = rnd(total), *xc = copyf(x, total), *xe = copyf(x, total);
    int64_t *perm = dd_malloc((size_t)n * sizeof *perm);
    for (int i = 0; i < n; i++) perm[i] = (int64_t)dd_rng_int(&rng, 0, n - 1);
    float lam = (float)dd_rng_uniform(&rng);
    cpu->mixup(cpu, n, row, perm, lam, xc);
    for (int64_t e = 0; e < total; e++) xe[e] = mix_up(e, row, perm, lam, x);
    int64_t bad = first_diff(xc, xe, total);
    CHECK_MSG(bad < 0, "mixup n %d row %lld: element %lld", n, (long long)row, (long long)bad);
    memcpy(xc, x, (size_t)total * sizeof *x);
    memcpy(xe, x, (size_t)total * sizeof *x);
    cpu->cutmix(cpu, n, c, h, w, perm, y0, x0, y1, x1, xc);
    if (y1 > y0 && x1 > x0) /* cutmix launches nothing for an empty box */
        for (int64_t e = 0; e < (int64_t)n * c * (y1 - y0) * (x1 - x0); e++)
            cut_mix(e, c, h, w, perm, y0, x0, y1 - y0, x1 - x0, x, xe);
    bad = first_diff(xc, xe, total);
    CHECK_MSG(bad < 0, "cutmix n %d c %d %dx%d box rows %d..%d cols %d..%d: element %lld", n, c, h, w, y0, y1, x0,
              x1, (long long)bad);
    cases++;
    free(x), free(xc), free(xe), free(perm);
}

static void test_mix(NnBackend *cpu)
{
    mix_case(cpu, 4, 3, 8, 8, 0, 0, 8, 8);     /* the whole image */
    mix_case(cpu, 3, 1, 28, 28, 27, 27, 28, 28); /* one pixel, the last */
    mix_case(cpu, 2, 2, 5, 7, 2, 3, 2, 6);     /* empty box */
    mix_case(cpu, 1, 3, 4, 4, 1, 1, 3, 3);
    for (int t = 0; t < 40; t++) {
        int n = (int)dd_rng_int(&rng, 1, 9), c = (int)dd_rng_int(&rng, 1, 4);
        int h = (int)dd_rng_int(&rng, 1, 40), w = (int)dd_rng_int(&rng, 1, 40);
        int y0 = (int)dd_rng_int(&rng, 0, h - 1), x0 = (int)dd_rng_int(&rng, 0, w - 1);
        mix_case(cpu, n, c, h, w, y0, x0, (int)dd_rng_int(&rng, y0 + 1, h), (int)dd_rng_int(&rng, x0 + 1, w));
    }
}

/* optim.cu's per-channel clamp by cc_grid's launch, every block and thread, against a loop. */
static void clamp_case(int n, int C, int64_t hw, int threads)
{
    int64_t planes = (int64_t)n * C, total = planes * hw;
    float *p = rnd(total), *want = copyf(p, total), *lo = rnd(C), *hi = rnd(C);
    for (int c = 0; c < C; c++) {
        lo[c] *= 0.5f, hi[c] = lo[c] + 0.5f * (hi[c] + 1.0f);
        if (c % 3 == 2) hi[c] = lo[c]; /* a degenerate range: every value the bound */
    }
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t j = 0; j < hw; j++) {
            float v = want[pl * hw + j], l = lo[pl % C], u = hi[pl % C];
            want[pl * hw + j] = v < l ? l : v > u ? u : v;
        }
    unsigned gx, gy;
    cc_grid(planes, hw, threads, &gx, &gy);
    CHECK(gx >= 1 && gx <= CC_MAX_GX && gy >= 1 && gy <= CC_MAX_GY);
    for (unsigned by = 0; by < gy; by++)
        for (unsigned bx = 0; bx < gx; bx++)
            for (int tx = 0; tx < threads; tx++) cc_thread(planes, C, hw, lo, hi, p, bx, by, gx, gy, threads, tx);
    int64_t bad = first_diff(want, p, total);
    CHECK_MSG(bad < 0, "clamp_channels n %d C %d hw %lld: element %lld", n, C, (long long)hw, (long long)bad);
    cases++;
    free(p), free(want), free(lo), free(hi);
}

static void test_clamp(void)
{
    clamp_case(0, 3, 100, 256);          /* no planes: one empty block, not an empty grid */
    clamp_case(2, 3, 1, 256);
    clamp_case(3, 3, 50000, 256);        /* more pixels than 64 blocks: the x stride loop */
    clamp_case(22000, 3, 2, 32);         /* 66000 planes: grid.y's stride loop */
    clamp_case(5, 1, 257, 32);
}

int main(void)
{
    dd_rng_init(&rng, 20261206, 0, 0);
    NnBackend *cpu = nn_cpu_backend_new(1);
    test_maxpool_bwd(cpu);
    test_transpose();
    test_bn_bwd(cpu);
    test_mix(cpu);
    test_clamp();
    cpu->destroy(cpu);
    printf("%d cases\n", cases);
    return check_done("test_cuda_emul");
}

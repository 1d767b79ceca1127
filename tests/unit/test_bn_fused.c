/* test_bn_fused.c - the one-pass batchnorm ops (nn_batchnorm, and with an activation
 * nn_batchnorm_relu, _relu6, _add_relu) against the separate ops they replace (nn_batchnorm
 * without statistics collection, nn_bn_stat_loss, nn_add, nn_relu / nn_relu6, each checked by
 * finite differences in test_nn_grad): output, statistics loss, running statistics and every
 * gradient must be the same bits. Cases: train and eval mode; with and without statistics
 * collection (in eval mode the one-pass ops compute the statistics loss and its gradient in
 * their own passes; the reference calls nn_bn_stat_loss, whose kernels are separate); the
 * in-place backward (x's gradient fresh) and the accumulating one (x also feeds a later op);
 * planes of 4 (the half block alone), 25 (blocks and a tail of 1), 36 (blocks and a half block)
 * and 64 values; 1 and 2 threads; an input with no gradient (the weights' gradients alone). Each
 * fused case runs again with DD_CPU_ISA=baseline: the AVX2 forms of the per-channel sums (norm.c)
 * must give the plain C loops' bits.
 * Sums of a few floats in double are exact in any order, so two channels of x (for the statistics)
 * and the other two of the output's gradient (for dw, db) hold pairs of +-2^40-sized values that
 * cancel: which small values each one absorbs depends on the lanes, and shows in the results.
 * And the same op calls on a backend without the one-pass slots (bn_act_fwd, bn_act_bwd cleared,
 * as a new backend may start): the engine's fallback to the plain batchnorm slots and separate
 * ops must give those bits too.
 */
#include "libcommon/base/base.h"
#include "libcommon/nn/nn.h"
#include "libcommon/nn/nn_impl.h"
#include "tests/unit/check.h"

#include <math.h>
#include <string.h>

enum { ACT_NONE, ACT_RELU, ACT_RELU6, ACT_ADD_RELU, NACT };
static const char *ACT_NAME[] = {"none", "relu", "relu6", "add_relu"};

#define N 3
#define C 4
#define MAXHW 64

typedef struct {
    float x[N * C * MAXHW], r[N * C * MAXHW], w[C], b[C], rm[C], rv[C], proj[N * C * MAXHW],
        proj2[N * C * MAXHW];
} Inputs;

typedef struct {
    float y[N * C * MAXHW], dx[N * C * MAXHW], dr[N * C * MAXHW], dw[C], db[C], rm[C], rv[C];
    float loss;
} Result;

static NnVar *var(Nn *nn, const float *data, int ndim, const int64_t *shape, int grad)
{
    Tensor t = {0};
    t.dtype = DD_F32;
    t.device = DD_CPU;
    t.ndim = ndim;
    memcpy(t.shape, shape, (size_t)ndim * sizeof *shape);
    t.data = (void *)data;
    return nn_input(nn, &t, grad);
}

/* One forward and backward; fused selects the op under test or the separate ops. */
static void run(Nn *nn, const Inputs *in, int hs, int train, int act, int collect, int shared,
                int xgrad, int fused, Result *out)
{
    int64_t xs[4] = {N, C, hs, hs}, cs[1] = {C};
    nn_reset(nn);
    NnVar *xin = var(nn, in->x, 4, xs, xgrad), *r = var(nn, in->r, 4, xs, 1);
    NnVar *w = var(nn, in->w, 1, cs, 1), *b = var(nn, in->b, 1, cs, 1);
    NnVar *rm = var(nn, in->rm, 1, cs, 0), *rv = var(nn, in->rv, 1, cs, 0);
    /* an arena var, so that the in-place backward can take its gradient */
    NnVar *x = nn_scale(nn, xin, 1.5f);
    NnVar *y, *stat = NULL;
    if (fused) {
        nn_bn_collect(nn, collect);
        if (act == ACT_NONE) y = nn_batchnorm(nn, x, w, b, rm, rv, train, 1, 0.1f, 1e-5f);
        else if (act == ACT_RELU) y = nn_batchnorm_relu(nn, x, w, b, rm, rv, train, 1, 0.1f, 1e-5f);
        else if (act == ACT_RELU6) y = nn_batchnorm_relu6(nn, x, w, b, rm, rv, train, 1, 0.1f, 1e-5f);
        else y = nn_batchnorm_add_relu(nn, x, w, b, rm, rv, train, 1, 0.1f, 1e-5f, r, -1);
        stat = collect ? nn_bn_stat(nn, 0) : NULL;
        nn_bn_collect(nn, 0);
    } else {
        /* eval mode: the statistics loss by its own op, on the tape before the BN (as the BN's
         * is); train mode: the BN collects it (by that same op: only eval mode fuses it) */
        if (collect && !train) stat = nn_bn_stat_loss(nn, x, rm, rv);
        nn_bn_collect(nn, collect && train);
        y = nn_batchnorm(nn, x, w, b, rm, rv, train, 1, 0.1f, 1e-5f);
        if (collect && train) stat = nn_bn_stat(nn, 0);
        nn_bn_collect(nn, 0);
        if (act == ACT_ADD_RELU) y = nn_add(nn, y, r);
        if (act == ACT_RELU6) y = nn_relu6(nn, y);
        else if (act != ACT_NONE) y = nn_relu(nn, y);
    }
    NnVar *loss = nn_sum(nn, nn_mul(nn, y, var(nn, in->proj, 4, xs, 0)));
    /* x feeds a later op too: its gradient exists when the BN's backward runs (accumulate) */
    if (shared) loss = nn_add(nn, loss, nn_sum(nn, nn_mul(nn, x, var(nn, in->proj2, 4, xs, 0))));
    if (stat) loss = nn_add(nn, loss, nn_scale(nn, stat, 0.7f));
    nn_backward(nn, loss);
    nn_var_download(nn, y, out->y);
    nn_var_download(nn, loss, &out->loss);
    nn_var_download(nn, rm, out->rm);
    nn_var_download(nn, rv, out->rv);
    memset(out->dx, 0, sizeof out->dx);
    if (xgrad) nn_grad_download(nn, xin, out->dx);
    nn_grad_download(nn, r, out->dr);
    nn_grad_download(nn, w, out->dw);
    nn_grad_download(nn, b, out->db);
}

/* Pairs of +-v, v of order 2^40, over a run of values (every fifth one; an unpaired last one is
 * 0); the first value stays small (the statistics' shift). */
static void cancelling_pairs(float *a, int64_t n, DdRng *rng)
{
    int64_t last = -1;
    float v = 0;
    for (int64_t i = 2; i < n; i += 5) {
        if (last < 0) v = (float)ldexp(1 + dd_rng_uniform(rng), 40), a[i] = v, last = i;
        else a[i] = -v, last = -1;
    }
    if (last >= 0) a[last] = 0;
}

/* The inputs for planes of hs x hs: uniform values, then the cancelling pairs over channels 1
 * and 3 of x, and 0 and 2 of the output's gradient (proj). */
static void fill_inputs(Inputs *in, int hs)
{
    DdRng rng;
    dd_rng_init(&rng, 7, 1, (uint64_t)hs);
    for (int i = 0; i < N * C * MAXHW; i++) {
        in->x[i] = (float)(4 * dd_rng_uniform(&rng) - 2);
        in->r[i] = (float)(2 * dd_rng_uniform(&rng) - 1);
        in->proj[i] = (float)(2 * dd_rng_uniform(&rng) - 1);
        in->proj2[i] = (float)(2 * dd_rng_uniform(&rng) - 1);
    }
    for (int c = 0; c < C; c++) {
        in->w[c] = (float)(2 * dd_rng_uniform(&rng) - 1) * 3; /* |z| up to ~6: ReLU6 clips */
        in->b[c] = (float)(dd_rng_uniform(&rng) - 0.5);
        in->rm[c] = (float)(dd_rng_uniform(&rng) - 0.5);
        in->rv[c] = (float)(0.5 + dd_rng_uniform(&rng));
    }
    const int64_t hw = (int64_t)hs * hs;
    float run[N * MAXHW];
    for (int c = 0; c < C; c++) {
        float *a = c % 2 ? in->x : in->proj;   /* one channel's values over the batch, in order */
        for (int i = 0; i < N * hw; i++) run[i] = a[(i / hw * C + c) * hw + i % hw];
        cancelling_pairs(run, N * hw, &rng);
        for (int i = 0; i < N * hw; i++) a[(i / hw * C + c) * hw + i % hw] = run[i];
    }
}

static int same(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof *a) == 0; }

/* Every output of two runs, the same bits (dr only where the op has a residual). */
static int same_result(const Result *a, const Result *b, int64_t n, int act)
{
    return same(a->y, b->y, n) && a->loss == b->loss && same(a->dx, b->dx, n) && same(a->dw, b->dw, C) &&
           same(a->db, b->db, C) && same(a->rm, b->rm, C) && same(a->rv, b->rv, C) &&
           (act != ACT_ADD_RELU || same(a->dr, b->dr, n));
}

int main(void)
{
    static Inputs in;
    static Result f, s, p, u;
    int ncases = 0, zeros = 0, sixes = 0;
    for (int threads = 1; threads <= 2; threads++) {
        Nn *nn = nn_new(DD_CPU, threads);
        CHECK(nn != NULL);
        for (int hi = 0; hi < 4; hi++) {
            fill_inputs(&in, (int[]){2, 5, 6, 8}[hi]);
            for (int train = 0; train <= 1; train++)
                for (int act = 0; act < NACT; act++)
                    for (int collect = 0; collect <= 1; collect++)
                        for (int shared = 0; shared <= 1; shared++)
                            for (int xgrad = 0; xgrad <= 1; xgrad++) {
                                const int hs = (int[]){2, 5, 6, 8}[hi];
                                if (!xgrad && shared) continue;
                                int64_t n = (int64_t)N * C * hs * hs;
                                run(nn, &in, hs, train, act, collect, shared, xgrad, 1, &f);
                                run(nn, &in, hs, train, act, collect, shared, xgrad, 0, &s);
                                setenv("DD_CPU_ISA", "baseline", 1); /* the sums' plain C loops */
                                run(nn, &in, hs, train, act, collect, shared, xgrad, 1, &p);
                                unsetenv("DD_CPU_ISA");
                                const NnBackend whole = *nn->be;
                                nn->be->bn_act_fwd = NULL, nn->be->bn_act_bwd = NULL;
                                run(nn, &in, hs, train, act, collect, shared, xgrad, 1, &u);
                                *nn->be = whole;
                                for (int64_t i = 0; i < n; i++) {
                                    zeros += act != ACT_NONE && f.y[i] == 0.0f;
                                    sixes += act == ACT_RELU6 && f.y[i] == 6.0f;
                                }
                                int ok = same_result(&f, &s, n, act);
                                CHECK_MSG(ok, "threads %d %dx%d %s %s collect %d shared %d xgrad %d: "
                                          "fused differs (loss %.9g vs %.9g)", threads, hs, hs,
                                          train ? "train" : "eval", ACT_NAME[act], collect, shared,
                                          xgrad, f.loss, s.loss);
                                ok = same_result(&f, &p, n, act);
                                CHECK_MSG(ok, "threads %d %dx%d %s %s collect %d shared %d xgrad %d: "
                                          "vector sums differ from the plain loops'", threads, hs, hs,
                                          train ? "train" : "eval", ACT_NAME[act], collect, shared, xgrad);
                                ok = same_result(&u, &s, n, act);
                                CHECK_MSG(ok, "threads %d %dx%d %s %s collect %d shared %d xgrad %d: "
                                          "the fallback without one-pass slots differs", threads, hs, hs,
                                          train ? "train" : "eval", ACT_NAME[act], collect, shared, xgrad);
                                ncases++;
                            }
        }
        nn_free(nn);
    }
    /* the cases exercise the masks: outputs at 0, and at 6 for ReLU6 */
    fprintf(stderr, "%d cases, %d outputs at 0, %d at 6\n", ncases, zeros, sixes);
    CHECK(zeros > 0 && sixes > 0);
    return check_done("test_bn_fused");
}

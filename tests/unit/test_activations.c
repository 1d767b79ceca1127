/* test_activations.c - the CPU backend's smooth activations (SiLU, sigmoid) against float64, on a
 * large tensor, elementwise; test_nn_grad checks their gradients by finite differences on small
 * shapes, which cannot see a few ulp. elem.c computes these in 8 AVX2 lanes with its own e^x where
 * the CPU has AVX2 + FMA, and through libm's expf elsewhere; both must hold here (the second with
 * DD_CPU_ISA=baseline, as on a CPU without AVX2).
 *
 * Inputs: 200003 values (more than a task's minimum, so the pool splits them, and a ragged tail)
 * spread over [-100, 100], densest near 0, plus the edges of e^x's range, signed zeros, tiny
 * values, +-inf and NaN. For every element, with e = FLT_EPSILON:
 *   forward:  |y - ref| <= 4 e |ref| + 4e-37 (silu, sigmoid in float64; float's e^x overflows
 *             above 88.72 as expf does, so silu(x < -88.72) is -0 where float64 has up to
 *             2.6e-37);
 *   backward: dx = g * act'(x), accumulated into a dx that starts at 0.5 (act_bwd) and in place
 *             (act_bwd_inplace); |dx - ref| <= 16 e m + 4e-37, m the size of the error that a
 *             few ulp of s = sigmoid(x) carries into the formula (through 1 - s): |g| s (1 + |x|)
 *             for silu, |g| s for sigmoid;
 *   NaN in, NaN out (and where the formula gives NaN in float64); results equal on 1 and 3 threads,
 *   and with AVX-512's 16 lanes and AVX2's 8 (DD_CPU_ISA=avx2), bit for bit.
 */
#include "check.h"
#include "libcommon/base/base.h"
#include "libcommon/nn/backend.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N = 200003 };

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

static void fill(float *x, float *g)
{
    static const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 88.3f, -88.3f, 88.5f, -88.5f,
                                    87.3f, -87.3f, 89.0f, -89.0f, 103.0f, -103.0f};
    int ns = (int)(sizeof special / sizeof special[0]);
    for (int i = 0; i < N; i++) {
        double u = (double)i / (N - 1) * 2 - 1;        /* [-1, 1] */
        x[i] = (float)(100.0 * u * u * u);             /* dense near 0 */
        g[i] = (float)(0.25 + 0.5 * ((i * 7919) % 1000) / 1000.0) * (i % 3 ? 1.0f : -1.0f);
    }
    for (int k = 0; k < ns; k++) x[1000 + 37 * k] = special[k];
    x[2000] = INFINITY;
    x[2001] = -INFINITY;
    x[2002] = NAN;
    x[N - 1] = NAN; /* in the ragged tail */
    x[N - 2] = -0.5f;
}

/* act(x) and act'(x) * g in float64 by the backend's formulas (PyTorch's: so silu(-inf) and
 * silu'(+-inf) are NaN), with the magnitude of the backward formula's terms */
static void reference(NnAct a, float xf, float gf, double *y, double *dx, double *mag)
{
    double x = xf, g = gf, s = sig(x);
    if (a == NN_ACT_SILU) {
        *y = x / (1.0 + exp(-x));
        *dx = g * s * (1.0 + x * (1.0 - s));
        *mag = fabs(g) * s * (1.0 + fabs(x)); /* s to a few ulp, and 1 - s then to |x| s ulp */
    } else {
        *y = s;
        *dx = g * s * (1.0 - s);
        *mag = fabs(g) * s; /* 1 - s carries s's error */
    }
}

static int close_to(float got, double ref, double tol)
{
    if (isnan(ref)) return isnan(got);
    if (isinf(ref)) return got == ref;
    return fabs(got - ref) <= tol;
}

static void run(NnAct a, const char *name, int threads, const float *x, const float *g, float *y,
                float *dx, float *dxi)
{
    NnBackend *be = nn_cpu_backend_new(threads);
    be->act_fwd(be, a, N, x, y);
    for (int i = 0; i < N; i++) dx[i] = 0.5f;
    be->act_bwd(be, a, N, x, y, g, dx);
    memcpy(dxi, g, N * sizeof *dxi);
    CHECK_MSG(be->act_bwd_inplace != NULL, "%s: no in-place backward", name);
    if (be->act_bwd_inplace) be->act_bwd_inplace(be, a, N, x, y, dxi);
    be->destroy(be);
}

/* The results of one ISA: every element within the tolerances above, and the same bits on 1 and 3
 * threads; the largest forward error in units of e |ref| (|ref| > 1e-30) goes to *worst_out. */
static void check_isa(NnAct a, const char *name, const char *isa, const float *x, const float *g, float *y,
                      float *dx, float *dxi, double *worst_out)
{
    float *y3 = malloc(N * sizeof *y), *dx3 = malloc(N * sizeof *dx), *dxi3 = malloc(N * sizeof *dxi);
    if (!y3 || !dx3 || !dxi3) abort();
    if (isa) setenv("DD_CPU_ISA", isa, 1);
    run(a, name, 1, x, g, y, dx, dxi);
    run(a, name, 3, x, g, y3, dx3, dxi3);
    unsetenv("DD_CPU_ISA");
    const double e = FLT_EPSILON;
    int bad = 0;
    double worst = 0; /* the largest forward error in units of e |ref|, |ref| > 1e-30 */
    for (int i = 0; i < N; i++) {
        double ry, rdx, mag;
        reference(a, x[i], g[i], &ry, &rdx, &mag);
        int ok = close_to(y[i], ry, 4 * e * fabs(ry) + 4e-37) &&
                 close_to(dx[i], isnan(rdx) ? rdx : rdx + 0.5, 16 * e * (mag + 0.5) + 4e-37) &&
                 close_to(dxi[i], rdx, 16 * e * mag + 4e-37);
        if (!ok && bad++ < 5)
            fprintf(stderr, "%s (%s): x[%d] = %.9g: y %.9g (ref %.17g), dx %.9g (ref %.17g), in place %.9g\n",
                    name, isa ? isa : "default", i, x[i], y[i], ry, dx[i], rdx + 0.5, dxi[i]);
        if (fabs(ry) > 1e-30 && isfinite(ry) && fabs(y[i] - ry) / (e * fabs(ry)) > worst)
            worst = fabs(y[i] - ry) / (e * fabs(ry));
    }
    CHECK_MSG(bad == 0, "%s (%s): %d elements out of tolerance", name, isa ? isa : "default", bad);
    CHECK_MSG(memcmp(y, y3, N * sizeof *y) == 0 && memcmp(dx, dx3, N * sizeof *dx) == 0 &&
                  memcmp(dxi, dxi3, N * sizeof *dxi) == 0,
              "%s (%s): 1 and 3 threads differ", name, isa ? isa : "default");
    *worst_out = worst;
    free(y3), free(dx3), free(dxi3);
}

static void test_act(NnAct a, const char *name, const float *x, const float *g)
{
    float *y = malloc(N * sizeof *y), *dx = malloc(N * sizeof *dx), *dxi = malloc(N * sizeof *dxi);
    float *y2 = malloc(N * sizeof *y), *dx2 = malloc(N * sizeof *dx), *dxi2 = malloc(N * sizeof *dxi);
    if (!y || !dx || !dxi || !y2 || !dx2 || !dxi2) abort();
    double worst, worst2, worst_libm;
    check_isa(a, name, NULL, x, g, y, dx, dxi, &worst);
    /* AVX-512's 16 lanes (where the CPU has them) against AVX2's 8: the same bits */
    check_isa(a, name, "avx2", x, g, y2, dx2, dxi2, &worst2);
    CHECK_MSG(memcmp(y, y2, N * sizeof *y) == 0 && memcmp(dx, dx2, N * sizeof *dx) == 0 &&
                  memcmp(dxi, dxi2, N * sizeof *dxi) == 0,
              "%s: AVX-512 and AVX2 lanes differ", name);
    /* the plain C loops through libm's expf (other bits: another e^x) */
    check_isa(a, name, "baseline", x, g, y2, dx2, dxi2, &worst_libm);
    printf("%s: forward within %.2f ulp-eps of float64 at worst (%.2f through libm's expf)\n", name, worst,
           worst_libm);
    free(y), free(dx), free(dxi), free(y2), free(dx2), free(dxi2);
}

/* relu and relu6 as PyTorch's on the special values: NaN passes forward (so a diverged net's NaN
 * reaches its loss, and a NaN weight its logits), +inf gives inf / 6, -inf 0; the backward passes
 * nothing at NaN. The same through the fused batchnorm (eval mode: y = act(x w + b) with mean 0,
 * var 1 - eps, so invstd 1), in the 8-wide blocks and the tail. */
static void test_piecewise_nan(void)
{
    enum { M = 21 };
    NnBackend *be = nn_cpu_backend_new(1);
    float x[M], y[M], dx[M], g[M];
    for (int i = 0; i < M; i++) x[i] = (float)(i % 9) - 2.0f, g[i] = 1.0f;
    x[3] = NAN, x[19] = NAN, x[4] = INFINITY, x[5] = -INFINITY, x[20] = -0.0f;
    const NnAct acts[] = {NN_ACT_RELU, NN_ACT_RELU6};
    for (int a = 0; a < 2; a++) {
        const float top = acts[a] == NN_ACT_RELU ? INFINITY : 6.0f;
        be->act_fwd(be, acts[a], M, x, y);
        memset(dx, 0, sizeof dx);
        be->act_bwd(be, acts[a], M, x, y, g, dx);
        float want[M];
        for (int i = 0; i < M; i++) {
            want[i] = isnan(x[i]) ? NAN : x[i] <= 0 ? 0.0f : x[i] < top ? x[i] : top;
            CHECK_MSG(isnan(want[i]) ? isnan(y[i]) : y[i] == want[i] && !signbit(y[i]), "%s(%g) = %g, want %g",
                      a ? "relu6" : "relu", x[i], y[i], want[i]);
            if (isnan(x[i])) CHECK_MSG(dx[i] == 0, "%s'(NaN) passes %g", a ? "relu6" : "relu", dx[i]);
        }
        float w = 1, b = 0, rm = 0, rv = 1 - 1e-5f, mean[1], invstd[1], yb[M];
        be->bn_act_fwd(be, acts[a], 0, 1, 1, M, 1e-5f, 0.1f, x, NULL, &w, &b, &rm, &rv, yb, mean, invstd, NULL, NULL);
        for (int i = 0; i < M; i++)
            CHECK_MSG(isnan(want[i]) ? isnan(yb[i]) : yb[i] == want[i], "bn+%s at %g: %g, want %g",
                      a ? "relu6" : "relu", x[i], yb[i], want[i]);
    }
    be->destroy(be);
}

int main(void)
{
    test_piecewise_nan();
    float *x = malloc(N * sizeof *x), *g = malloc(N * sizeof *g);
    if (!x || !g) abort();
    fill(x, g);
    test_act(NN_ACT_SILU, "silu", x, g);
    test_act(NN_ACT_SIGMOID, "sigmoid", x, g);
    free(x), free(g);
    return check_done("test_activations");
}

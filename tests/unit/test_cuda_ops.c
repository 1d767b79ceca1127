/* test_cuda_ops.c - the CUDA backend against the CPU reference, slot by slot: random inputs, the
 * same call on both backends, the largest difference relative to the reference's largest
 * magnitude (max|gpu - cpu| / max|cpu|), one table row per check. Outputs that a slot writes (=)
 * start as NaN on both sides, so an unwritten element fails; outputs it accumulates into (+=)
 * start from the same random values. Then the optimizers through optim_step, mixed-precision
 * conv/linear, and a resnet18 (small stem) batch-8 recover step end to end.
 *
 * Tolerances: fp32 kernels of our own are written to round as the CPU does: 1e-6 (exact where the
 * arithmetic is the same: dropout masks, layout, pooling); cuDNN / cuBLAS fp32 (FMA, no TF32) and
 * reductions summed in another order: 1e-5; the end-to-end step: 1e-4; fp16/bf16 conv and linear:
 * 1e-2 / 3e-2.
 * Exit 77 with "SKIP: no CUDA device ... GPU ..." when the CUDA backend cannot start (no device,
 * or a GPU=0 build), which make check-gpu counts as a failure. */
#include "libcommon/models/model.h"
#include "libcommon/nn/nn_impl.h"
#include "libcommon/optim/optim.h"
#include "tests/unit/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static NnBackend *C, *G;       /* CPU reference, CUDA under test */
static DdRng rng;
static void *hold[4096];       /* host buffers, freed at the end */
static int nhold, nrows, nfail;

static void *keep(void *p)
{
    if (nhold < (int)(sizeof hold / sizeof *hold)) hold[nhold++] = p;
    return p;
}

static float *rnd(int64_t n, float lo, float hi)
{
    float *p = keep(dd_malloc((size_t)(n ? n : 1) * sizeof(float)));
    for (int64_t i = 0; i < n; i++) p[i] = (float)dd_rng_uniform_range(&rng, lo, hi);
    return p;
}

static float *nans(int64_t n)
{
    float *p = keep(dd_malloc((size_t)(n ? n : 1) * sizeof(float)));
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static float *copyh(const float *h, int64_t n)
{
    float *p = keep(dd_malloc((size_t)(n ? n : 1) * sizeof(float)));
    memcpy(p, h, (size_t)n * sizeof(float));
    return p;
}

/* A device copy of n floats (or bytes, via upb). */
static void *upb(const void *h, size_t bytes)
{
    void *d = G->alloc(G, bytes ? bytes : 4);
    if (!d) dd_die(DD_EXIT_DEVICE, "test: %s", dd_errmsg());
    if (bytes) G->upload(G, d, h, bytes);
    return d;
}
static float *up(const float *h, int64_t n) { return upb(h, (size_t)n * sizeof(float)); }

/* max|h - ref| / max|ref| over finite ref (absolute when those are all zeros); NaN on one side
 * only, or an infinity the other side lacks: infinity. Equal values (the same infinity too) add
 * nothing, so a shared infinity does not hide the other differences. */
static double err_host(const float *ref, const float *h, int64_t n)
{
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > mr) mr = fabs(ref[i]);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(h[i]) != isnan(ref[i])) return INFINITY;
        if (isnan(ref[i]) || h[i] == ref[i]) continue;
        if (isinf(ref[i]) || isinf(h[i])) return INFINITY;
        double d = fabs((double)h[i] - ref[i]);
        if (d > md) md = d;
    }
    return mr > 0 ? md / mr : md;
}

/* A host copy of n floats of G's memory. */
static float *down(const float *dev, int64_t n)
{
    float *h = keep(dd_malloc((size_t)(n ? n : 1) * sizeof(float)));
    G->download(G, h, dev, (size_t)n * sizeof(float));
    return h;
}

/* err_host of n floats of G's memory. */
static double err_of(const float *ref, const float *dev, int64_t n) { return err_host(ref, down(dev, n), n); }

static void row(const char *name, double err, double tol)
{
    int ok = err <= tol;
    printf("%-44s max rel err %-10.3g tol %-7.0e %s\n", name, err, tol, ok ? "PASS" : "FAIL");
    nrows++;
    if (!ok) nfail++;
}

#define CMP(name, ref, dev, n, tol) row(name, err_of(ref, dev, n), tol)

/* ---- memory ---- */

static void test_memory(void)
{
    int64_t n = 1000;
    float *z = G->alloc(G, (size_t)n * 4), *zero = calloc((size_t)n, 4);
    keep(zero);
    CMP("alloc (zero-filled)", zero, z, n, 0);
    float *x = rnd(n, -1, 1), *d = up(x, n);
    CMP("upload/download", x, d, n, 0);
    G->copy(G, z, d, (size_t)n * 4);
    CMP("copy", x, z, n, 0);
    G->zero(G, z, (size_t)n * 4);
    CMP("zero", zero, z, n, 0);
    G->free(G, z);
    float *again = G->alloc(G, (size_t)n * 4);     /* recycled by the caching allocator */
    CMP("alloc after free (zero-filled)", zero, again, n, 0);
    G->free(G, again);
    G->trim(G);                                     /* the cached block goes back to the driver */
    float *fresh = G->alloc(G, (size_t)n * 4);
    CMP("alloc after trim (zero-filled)", zero, fresh, n, 0);
    float *u = G->alloc_uninit(G, (size_t)n * 4);
    G->upload(G, u, x, (size_t)n * 4);
    CMP("alloc_uninit, written", x, u, n, 0);
    G->free(G, u);
}

/* ---- elementwise ---- */

/* Every activation's forward, backward (into dx = y0) and in-place backward of x, CUDA against
 * the CPU; sfx names the input in the rows. */
static void act_rows(const float *x, const float *dy, const float *y0, int64_t n, const char *sfx)
{
    static const char *an[] = {"relu", "relu6", "silu", "sigmoid", "hardswish"};
    float *xg = up(x, n), *dyg = up(dy, n);
    for (int a = 0; a < 5; a++) {
        char name[96];
        float *ac = nans(n), *ag = up(nans(n), n);
        C->act_fwd(C, (NnAct)a, n, x, ac);
        G->act_fwd(G, (NnAct)a, n, xg, ag);
        snprintf(name, sizeof name, "act_fwd %s%s", an[a], sfx);
        CMP(name, ac, ag, n, 1e-6);
        float *dxc = copyh(y0, n), *dxg = up(y0, n);
        C->act_bwd(C, (NnAct)a, n, x, ac, dy, dxc);
        G->act_bwd(G, (NnAct)a, n, xg, ag, dyg, dxg);
        snprintf(name, sizeof name, "act_bwd %s%s", an[a], sfx);
        CMP(name, dxc, dxg, n, 1e-6);
        float *gc = copyh(dy, n), *gg = up(dy, n);
        C->act_bwd_inplace(C, (NnAct)a, n, x, ac, gc);
        G->act_bwd_inplace(G, (NnAct)a, n, xg, ag, gg);
        snprintf(name, sizeof name, "act_bwd_inplace %s%s", an[a], sfx);
        CMP(name, gc, gg, n, 1e-6);
    }
}

static void test_elem(void)
{
    int64_t n = 70001;
    float *x = rnd(n, -8, 8), *y0 = rnd(n, -1, 1), *s1 = rnd(1, 0.5f, 2);
    float *yc = copyh(y0, n), *yg = up(y0, n);
    C->axpy(C, n, 0.7f, x, yc);
    G->axpy(G, n, 0.7f, up(x, n), yg);
    CMP("axpy", yc, yg, n, 1e-6);
    C->fill_add(C, n, 0.3f, s1, yc);
    G->fill_add(G, n, 0.3f, up(s1, 1), yg);
    CMP("fill_add", yc, yg, n, 1e-6);
    float *sc = nans(n), *sg = up(nans(n), n);
    C->scale_fwd(C, n, -1.5f, x, sc);
    G->scale_fwd(G, n, -1.5f, up(x, n), sg);
    CMP("scale_fwd", sc, sg, n, 1e-6);

    float *dy = rnd(n, -1, 1);
    act_rows(x, dy, y0, n, "");
    /* special values: NaN passes relu and relu6 forward (as PyTorch's), +-inf, the relu6 edge */
    static const float sv[] = {NAN, INFINITY, -INFINITY, 6.0f, -0.0f, 0.0f, 1e30f, -1e30f};
    float *xs = copyh(x, n);
    for (int64_t i = 0; i < n; i += 37) xs[i] = sv[(i / 37) % 8];
    act_rows(xs, dy, y0, n, ", NaN and inf");

    /* broadcast: b [6,1,1] over a [4,6,5,7]; b [7]; b the same shape */
    struct { int nd; int64_t s[4]; } bs[3] = {{3, {6, 1, 1}}, {1, {7}}, {4, {4, 6, 5, 7}}};
    int64_t as[4] = {4, 6, 5, 7};
    for (int k = 0; k < 3; k++) {
        NnBroadcast bc;
        memset(&bc, 0, sizeof bc);
        bc.ndim = 4;
        int off = 4 - bs[k].nd;
        int64_t stride = 1;
        for (int i = 3; i >= 0; i--) {
            bc.shape[i] = as[i];
            int64_t bd = i >= off ? bs[k].s[i - off] : 1;
            bc.bstride[i] = bd == 1 ? 0 : stride;
            stride *= bd;
        }
        bc.n = 4 * 6 * 5 * 7;
        bc.nb = stride;
        float *a = rnd(bc.n, -2, 2), *b = rnd(bc.nb, -2, 2), *g = rnd(bc.n, -1, 1);
        float *ag = up(a, bc.n), *bg = up(b, bc.nb), *gg = up(g, bc.n);
        for (int op = 0; op < 2; op++) {
            char name[64];
            float *yc2 = nans(bc.n), *yg2 = up(nans(bc.n), bc.n);
            C->binary_fwd(C, (NnBinary)op, &bc, a, b, yc2);
            G->binary_fwd(G, (NnBinary)op, &bc, ag, bg, yg2);
            snprintf(name, sizeof name, "binary_fwd %s b[%lld]", op ? "mul" : "add", (long long)bc.nb);
            CMP(name, yc2, yg2, bc.n, 1e-6);
            float *da0 = rnd(bc.n, -1, 1), *db0 = rnd(bc.nb, -1, 1);
            float *dac = copyh(da0, bc.n), *dbc = copyh(db0, bc.nb);
            float *dag = up(da0, bc.n), *dbg = up(db0, bc.nb);
            C->binary_bwd(C, (NnBinary)op, &bc, a, b, g, dac, dbc);
            G->binary_bwd(G, (NnBinary)op, &bc, ag, bg, gg, dag, dbg);
            snprintf(name, sizeof name, "binary_bwd %s b[%lld] da", op ? "mul" : "add", (long long)bc.nb);
            CMP(name, dac, dag, bc.n, 1e-6);
            snprintf(name, sizeof name, "binary_bwd %s b[%lld] db", op ? "mul" : "add", (long long)bc.nb);
            CMP(name, dbc, dbg, bc.nb, 1e-6);
        }
    }

    /* normalize [5,3,9,11] */
    int64_t nn_ = 5, hw = 99, tot = nn_ * 3 * hw;
    float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    float *nx = rnd(tot, 0, 1), *nc = nans(tot), *ng = up(nans(tot), tot);
    C->normalize_fwd(C, nn_, 3, hw, mean, sd, nx, nc);
    G->normalize_fwd(G, nn_, 3, hw, mean, sd, up(nx, tot), ng);
    CMP("normalize_fwd", nc, ng, tot, 1e-6);
    float *nd0 = rnd(tot, -1, 1), *ndc = copyh(nd0, tot), *ndg = up(nd0, tot), *ndy = rnd(tot, -1, 1);
    C->normalize_bwd(C, nn_, 3, hw, sd, ndy, ndc);
    G->normalize_bwd(G, nn_, 3, hw, sd, up(ndy, tot), ndg);
    CMP("normalize_bwd", ndc, ndg, tot, 1e-6);

    /* dropout: the masks must be identical */
    int64_t dn = 100003;
    float *dx = rnd(dn, -1, 1), *dpc = nans(dn), *dmc = nans(dn), *dpg = up(nans(dn), dn),
          *dmg = up(nans(dn), dn);
    C->dropout_fwd(C, dn, 0.3f, 0x1234abcdull, 7, dx, dpc, dmc);
    G->dropout_fwd(G, dn, 0.3f, 0x1234abcdull, 7, up(dx, dn), dpg, dmg);
    CMP("dropout_fwd mask (exact)", dmc, dmg, dn, 0);
    CMP("dropout_fwd y", dpc, dpg, dn, 0);
    float *mg0 = rnd(dn, -1, 1), *mgc = copyh(mg0, dn), *mgg = up(mg0, dn), *mdy = rnd(dn, -1, 1);
    C->mul_bwd(C, dn, dmc, mdy, mgc);
    G->mul_bwd(G, dn, dmg, up(mdy, dn), mgg);
    CMP("mul_bwd", mgc, mgg, dn, 1e-6);

    /* sum over several 8192-blocks */
    int64_t sn = 50000;
    float *sx = rnd(sn, -1, 1), sc1[1] = {NAN}, *sg1 = up(nans(1), 1);
    C->sum_fwd(C, sn, 0.5f, sx, sc1);
    G->sum_fwd(G, sn, 0.5f, up(sx, sn), sg1);
    CMP("sum_fwd", sc1, sg1, 1, 1e-6);
}

/* ---- layout ---- */

static void test_layout(void)
{
    int64_t n = 3, c = 12, h = 9, w = 13, hw = h * w, tot = n * c * hw;
    float *x = rnd(tot, -1, 1), *xg = up(x, tot), *base = rnd(tot, -1, 1);
    for (int acc = 0; acc < 2; acc++) {
        char name[64];
        float *yc = acc ? copyh(base, tot) : nans(tot), *yg = up(yc, tot);
        C->block_copy(C, n * c, hw / 2, x, hw, yc, hw, acc);
        G->block_copy(G, n * c, hw / 2, xg, hw, yg, hw, acc);
        snprintf(name, sizeof name, "block_copy acc=%d", acc);
        CMP(name, yc, yg, tot, 0);
        for (int inv = 0; inv < 2; inv++) {
            yc = acc ? copyh(base, tot) : nans(tot);
            yg = up(yc, tot);
            C->shuffle(C, n, (int)c, hw, 3, inv, acc, x, yc);
            G->shuffle(G, n, (int)c, hw, 3, inv, acc, xg, yg);
            snprintf(name, sizeof name, "shuffle inverse=%d acc=%d", inv, acc);
            CMP(name, yc, yg, tot, 0);
        }
        yc = acc ? copyh(base, tot) : nans(tot);
        yg = up(yc, tot);
        C->roll(C, n * c, (int)h, (int)w, acc ? -4 : 3, acc ? 5 : -2, acc, x, yc);
        G->roll(G, n * c, (int)h, (int)w, acc ? -4 : 3, acc ? 5 : -2, acc, xg, yg);
        snprintf(name, sizeof name, "roll acc=%d", acc);
        CMP(name, yc, yg, tot, 0);
        yc = acc ? copyh(base, tot) : nans(tot);
        yg = up(yc, tot);
        C->flip_w(C, n * c, (int)h, (int)w, acc, x, yc);
        G->flip_w(G, n * c, (int)h, (int)w, acc, xg, yg);
        snprintf(name, sizeof name, "flip_w acc=%d", acc);
        CMP(name, yc, yg, tot, 0);
    }
    /* crop-resize: up, down, and 224 -> 200 (the multi-resolution step) */
    NnResample rs[3] = {{4, 17, 19, 2, 3, 11, 9, 23, 29},
                        {4, 17, 19, 0, 0, 17, 19, 6, 7},
                        {2, 224, 224, 0, 0, 224, 224, 200, 200}};
    for (int k = 0; k < 3; k++) {
        NnResample *r = &rs[k];
        char name[64];
        int64_t nx = r->np * r->h * r->w, ny = r->np * r->oh * r->ow;
        float *rx = rnd(nx, -1, 1), *ryc = nans(ny), *ryg = up(nans(ny), ny);
        C->resample_fwd(C, r, rx, ryc);
        G->resample_fwd(G, r, up(rx, nx), ryg);
        snprintf(name, sizeof name, "resample_fwd %dx%d->%dx%d", r->ch, r->cw, r->oh, r->ow);
        CMP(name, ryc, ryg, ny, 1e-6);
        float *rdy = rnd(ny, -1, 1), *rd0 = rnd(nx, -1, 1), *rdc = copyh(rd0, nx), *rdg = up(rd0, nx);
        C->resample_bwd(C, r, rdy, rdc);
        G->resample_bwd(G, r, up(rdy, ny), rdg);
        snprintf(name, sizeof name, "resample_bwd %dx%d->%dx%d", r->ch, r->cw, r->oh, r->ow);
        CMP(name, rdc, rdg, nx, 1e-6);
    }
}

/* ---- convolution and linear ---- */

static void conv_case(NnConvShape s, int bias, const char *what, double tol)
{
    s.oh = (s.h + 2 * s.pad - s.dil * (s.kh - 1) - 1) / s.stride + 1;
    s.ow = (s.w + 2 * s.pad - s.dil * (s.kw - 1) - 1) / s.stride + 1;
    int64_t nx = (int64_t)s.n * s.cin * s.h * s.w, ny = (int64_t)s.n * s.cout * s.oh * s.ow;
    int64_t nw = (int64_t)s.cout * (s.cin / s.groups) * s.kh * s.kw;
    float *x = rnd(nx, -1, 1), *w = rnd(nw, -0.5f, 0.5f), *b = bias ? rnd(s.cout, -1, 1) : NULL;
    float *xg = up(x, nx), *wg = up(w, nw), *bg = bias ? up(b, s.cout) : NULL;
    char name[96];
    float *yc = nans(ny), *yg = up(nans(ny), ny);
    C->conv2d_fwd(C, &s, x, w, b, yc);
    G->conv2d_fwd(G, &s, xg, wg, bg, yg);
    snprintf(name, sizeof name, "conv2d_fwd %s", what);
    CMP(name, yc, yg, ny, tol);
    float *dy = rnd(ny, -1, 1), *dyg = up(dy, ny);
    float *dx0 = rnd(nx, -1, 1), *dxc = copyh(dx0, nx), *dxg = up(dx0, nx);
    C->conv2d_bwd_data(C, &s, dy, w, dxc);
    G->conv2d_bwd_data(G, &s, dyg, wg, dxg);
    snprintf(name, sizeof name, "conv2d_bwd_data %s", what);
    CMP(name, dxc, dxg, nx, tol);
    float *dw0 = rnd(nw, -1, 1), *dwc = copyh(dw0, nw), *dwg = up(dw0, nw);
    float *db0 = rnd(s.cout, -1, 1), *dbc = copyh(db0, s.cout), *dbg = up(db0, s.cout);
    C->conv2d_bwd_filter(C, &s, dy, x, dwc, bias ? dbc : NULL);
    G->conv2d_bwd_filter(G, &s, dyg, xg, dwg, bias ? dbg : NULL);
    snprintf(name, sizeof name, "conv2d_bwd_filter %s dw", what);
    CMP(name, dwc, dwg, nw, tol);
    if (bias) {
        snprintf(name, sizeof name, "conv2d_bwd_filter %s db", what);
        CMP(name, dbc, dbg, s.cout, tol);
    }
}

static void linear_case(int n, int in, int out, const char *what, double tol)
{
    float *x = rnd((int64_t)n * in, -1, 1), *w = rnd((int64_t)out * in, -0.5f, 0.5f),
          *b = rnd(out, -1, 1);
    float *xg = up(x, (int64_t)n * in), *wg = up(w, (int64_t)out * in), *bg = up(b, out);
    char name[96];
    float *yc = nans((int64_t)n * out), *yg = up(yc, (int64_t)n * out);
    C->linear_fwd(C, n, in, out, x, w, b, yc);
    G->linear_fwd(G, n, in, out, xg, wg, bg, yg);
    snprintf(name, sizeof name, "linear_fwd %s", what);
    CMP(name, yc, yg, (int64_t)n * out, tol);
    float *dy = rnd((int64_t)n * out, -1, 1), *dyg = up(dy, (int64_t)n * out);
    float *dx0 = rnd((int64_t)n * in, -1, 1), *dw0 = rnd((int64_t)out * in, -1, 1), *db0 = rnd(out, -1, 1);
    float *dxc = copyh(dx0, (int64_t)n * in), *dwc = copyh(dw0, (int64_t)out * in), *dbc = copyh(db0, out);
    float *dxg = up(dx0, (int64_t)n * in), *dwg = up(dw0, (int64_t)out * in), *dbg = up(db0, out);
    C->linear_bwd(C, n, in, out, dy, x, w, dxc, dwc, dbc);
    G->linear_bwd(G, n, in, out, dyg, xg, wg, dxg, dwg, dbg);
    snprintf(name, sizeof name, "linear_bwd %s dx", what);
    CMP(name, dxc, dxg, (int64_t)n * in, tol);
    snprintf(name, sizeof name, "linear_bwd %s dw", what);
    CMP(name, dwc, dwg, (int64_t)out * in, tol);
    snprintf(name, sizeof name, "linear_bwd %s db", what);
    CMP(name, dbc, dbg, out, tol);
}

/* body(precision name, tolerance) with G in fp16, then in bf16; G back in fp32 after. */
static void low_precision(void (*body)(const char *prec, double tol))
{
    static const char *pn[3] = {"", "fp16", "bf16"};
    for (int p = 1; p <= 2; p++) {
        if (G->set_precision(G, p) < 0) {
            row(dd_errmsg(), INFINITY, 0);
            continue;
        }
        body(pn[p], p == 1 ? 1e-2 : 3e-2);
        G->set_precision(G, 0);
    }
}

static void low_cases(const char *prec, double tol)
{
    char what[64];
    snprintf(what, sizeof what, "3x3 s1 p1 +bias %s", prec);
    conv_case((NnConvShape){4, 16, 15, 13, 32, 3, 3, 0, 0, 1, 1, 1, 1}, 1, what, tol);
    snprintf(what, sizeof what, "depthwise %s", prec);
    conv_case((NnConvShape){3, 24, 8, 8, 24, 3, 3, 0, 0, 2, 1, 1, 24}, 0, what, tol);
    snprintf(what, sizeof what, "33x64->100 %s", prec);
    linear_case(33, 64, 100, what, tol);
}

static void test_conv(void)
{
    /* n cin h w cout kh kw oh ow stride pad dil groups */
    conv_case((NnConvShape){4, 16, 15, 13, 32, 3, 3, 0, 0, 1, 1, 1, 1}, 1, "3x3 s1 p1 +bias", 1e-5);
    conv_case((NnConvShape){2, 3, 40, 40, 16, 7, 7, 0, 0, 2, 3, 1, 1}, 0, "7x7 s2 p3 (stem)", 1e-5);
    conv_case((NnConvShape){3, 24, 8, 8, 40, 1, 1, 0, 0, 1, 0, 1, 1}, 0, "1x1", 1e-5);
    conv_case((NnConvShape){3, 24, 8, 8, 24, 3, 3, 0, 0, 2, 1, 1, 24}, 0, "depthwise 3x3 s2", 1e-5);
    conv_case((NnConvShape){2, 8, 10, 10, 12, 3, 3, 0, 0, 1, 2, 2, 2}, 1, "groups 2 dil 2", 1e-5);
    linear_case(8, 300, 10, "8x300->10", 1e-5);
    linear_case(33, 64, 100, "33x64->100", 1e-5);
    low_precision(low_cases);
}

/* fp16's loss scaling sees an overflow only as a non-finite gradient: a convolution's fp16 result
 * (cuDNN writes fp16) past 65504 must come back infinite, not saturated (operands within fp16's
 * range, sums of them beyond it). Linear layers' GEMMs write fp32 (cublasGemmEx, fp32 C), so the
 * same sums stay finite and exact there: nothing for the scaler to see. */
static int any_nonfinite(const float *dev, int64_t n)
{
    const float *h = down(dev, n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(h[i])) return 1;
    return 0;
}

/* Every one of n floats of G's memory equal to v? */
static int all_equal(const float *dev, int64_t n, float v)
{
    const float *h = down(dev, n);
    for (int64_t i = 0; i < n; i++)
        if (h[i] != v) return 0;
    return 1;
}

/* A device array of n floats equal to v. */
static float *fill(int64_t n, float v)
{
    float *h = nans(n);
    for (int64_t i = 0; i < n; i++) h[i] = v;
    return up(h, n);
}

static void test_fp16_overflow(void)
{
    if (G->set_precision(G, 1) < 0) {
        row(dd_errmsg(), INFINITY, 0);
        return;
    }
    NnConvShape s = {2, 16, 8, 8, 32, 3, 3, 8, 8, 1, 1, 1, 1};
    int64_t nx = 2 * 16 * 64, ny = 2 * 32 * 64, nw = 32 * 16 * 9;
    float *big = fill(nx, 3e4f), *one = fill(nx, 1.0f), *w = fill(nw, 0.5f), *dy = fill(ny, 3e4f);
    float *y = fill(ny, 0.0f), *dx = fill(nx, 0.0f), *dw = fill(nw, 0.0f);
    G->conv2d_fwd(G, &s, big, w, NULL, y);
    row("fp16 conv2d_fwd: a sum past 65504 is infinite", any_nonfinite(y, ny) ? 0 : INFINITY, 0);
    G->conv2d_bwd_data(G, &s, dy, w, dx);
    row("fp16 conv2d_bwd_data: past 65504 is infinite", any_nonfinite(dx, nx) ? 0 : INFINITY, 0);
    G->conv2d_bwd_filter(G, &s, dy, one, dw, NULL);
    row("fp16 conv2d_bwd_filter: past 65504 is infinite", any_nonfinite(dw, nw) ? 0 : INFINITY, 0);
    int n = 8, in = 64, out = 100;
    float *lx = fill((int64_t)n * in, 1.0f), *lw = fill((int64_t)out * in, 0.5f), *ldy = fill((int64_t)n * out, 3e4f);
    float *ldx = fill((int64_t)n * in, 0.0f), *ldw = fill((int64_t)out * in, 0.0f), *ldb = fill(out, 0.0f);
    G->linear_bwd(G, n, in, out, ldy, lx, lw, ldx, ldw, ldb);
    /* dx = 100 x 3e4 x 0.5, dw = 8 x 3e4: exact in fp32 */
    row("fp16 linear_bwd dx: fp32 sum 1.5e6, exact", all_equal(ldx, (int64_t)n * in, 1.5e6f) ? 0 : INFINITY, 0);
    row("fp16 linear_bwd dw: fp32 sum 2.4e5, exact", all_equal(ldw, (int64_t)out * in, 2.4e5f) ? 0 : INFINITY, 0);
    G->set_precision(G, 0);
}

/* The two common shapes must run NHWC (a fallback to NCHW would pass the rows without the transposing casts
 * having run): the plans made for a case, by layout. */
static void nhwc_ran(const char *what, int nhwc0, int nchw0)
{
    int nhwc, nchw;
    nn_cuda_conv_layouts(G, &nhwc, &nchw);
    char r[96];
    snprintf(r, sizeof r, "%s: planned NHWC (%d NHWC, %d NCHW)", what, nhwc - nhwc0, nchw - nchw0);
    row(r, nhwc > nhwc0 && nchw == nchw0 ? 0 : INFINITY, 0);
}

static void nhwc_cases(const char *prec, double tol)
{
    char what[64];
    int nhwc0, nchw0;
    nn_cuda_conv_layouts(G, &nhwc0, &nchw0);
    snprintf(what, sizeof what, "NHWC 3x3 s1 p1 +bias %s", prec);
    conv_case((NnConvShape){4, 16, 15, 13, 32, 3, 3, 0, 0, 1, 1, 1, 1}, 1, what, tol);
    nhwc_ran(what, nhwc0, nchw0);
    nn_cuda_conv_layouts(G, &nhwc0, &nchw0);
    snprintf(what, sizeof what, "NHWC 3x3 s2 64->128 %s", prec);
    conv_case((NnConvShape){3, 64, 17, 35, 128, 3, 3, 0, 0, 2, 1, 1, 1}, 0, what, tol);
    nhwc_ran(what, nhwc0, nchw0);
    snprintf(what, sizeof what, "NHWC 1x1 24->40 %s", prec);
    conv_case((NnConvShape){3, 24, 8, 8, 40, 1, 1, 0, 0, 1, 0, 1, 1}, 0, what, tol);
    snprintf(what, sizeof what, "NHWC 7x7 s2 p3 stem (NCHW) %s", prec);
    conv_case((NnConvShape){2, 3, 40, 40, 16, 7, 7, 0, 0, 2, 3, 1, 1}, 0, what, tol);
    snprintf(what, sizeof what, "NHWC depthwise (NCHW) %s", prec);
    conv_case((NnConvShape){3, 24, 8, 8, 24, 3, 3, 0, 0, 2, 1, 1, 24}, 0, what, tol);
}

/* DD_CUDA_NHWC=1 (read when a backend is made): fp16/bf16 convolutions of one group with channel
 * counts that are multiples of 8 on NHWC copies, through the transposing casts; the others (the
 * 3-channel stem, depthwise) as before. A second backend runs them, as G, then G is restored. */
static void test_conv_nhwc(void)
{
    setenv("DD_CUDA_NHWC", "1", 1);
    NnBackend *g0 = G, *g1 = nn_cuda_backend_new(1);
    unsetenv("DD_CUDA_NHWC");
    if (!g1) {
        row(dd_errmsg(), INFINITY, 0);
        return;
    }
    G = g1;
    low_precision(nhwc_cases);
    printf("(DD_CUDA_NHWC=1:)\n");
    test_fp16_overflow();
    G = g0;
    g1->destroy(g1);
}

/* ---- normalization ---- */

static void test_norm(void)
{
    int n = 6, c = 10;
    int64_t hw = 7 * 9, tot = (int64_t)n * c * hw;
    float *x = rnd(tot, -2, 3), *w = rnd(c, 0.5f, 1.5f), *b = rnd(c, -1, 1);
    float *rm = rnd(c, -0.5f, 0.5f), *rv = rnd(c, 0.5f, 2);
    float *xg = up(x, tot), *wg = up(w, c), *bg = up(b, c);
    float *rmc = copyh(rm, c), *rvc = copyh(rv, c), *rmg = up(rm, c), *rvg = up(rv, c);
    float *yc = nans(tot), *yg = up(yc, tot), *mc = nans(2 * c), *mg = up(mc, 2 * c);
    C->bn_fwd_train(C, n, c, hw, 1e-5f, 0.1f, x, w, b, yc, mc, mc + c, rmc, rvc);
    G->bn_fwd_train(G, n, c, hw, 1e-5f, 0.1f, xg, wg, bg, yg, mg, mg + c, rmg, rvg);
    CMP("bn_fwd_train y", yc, yg, tot, 1e-6);
    CMP("bn_fwd_train mean,invstd", mc, mg, 2 * c, 1e-6);
    CMP("bn_fwd_train running_mean", rmc, rmg, c, 1e-6);
    CMP("bn_fwd_train running_var (unbiased)", rvc, rvg, c, 1e-6);
    float *dy = rnd(tot, -1, 1), *dyg = up(dy, tot);
    for (int train = 1; train >= 0; train--) {
        char name[64];
        if (!train) {
            yc = nans(tot);
            yg = up(yc, tot);
            C->bn_fwd_eval(C, n, c, hw, 1e-5f, x, w, b, rm, rv, yc, mc, mc + c);
            G->bn_fwd_eval(G, n, c, hw, 1e-5f, xg, wg, bg, up(rm, c), up(rv, c), yg, mg, mg + c);
            CMP("bn_fwd_eval y", yc, yg, tot, 1e-6);
            CMP("bn_fwd_eval mean,invstd", mc, mg, 2 * c, 1e-6);
        }
        float *dx0 = rnd(tot, -1, 1), *dw0 = rnd(c, -1, 1), *db0 = rnd(c, -1, 1);
        float *dxc = copyh(dx0, tot), *dwc = copyh(dw0, c), *dbc = copyh(db0, c);
        float *dxg = up(dx0, tot), *dwg = up(dw0, c), *dbg = up(db0, c);
        float *mch = keep(dd_malloc(2 * (size_t)c * sizeof(float)));
        G->download(G, mch, mg, 2 * (size_t)c * sizeof(float));
        /* both sides from the same saved statistics (the CPU's) */
        C->bn_bwd(C, train, n, c, hw, x, w, mc, mc + c, dy, dxc, dwc, dbc);
        float *mcg = up(mc, 2 * c);
        G->bn_bwd(G, train, n, c, hw, xg, wg, mcg, mcg + c, dyg, dxg, dwg, dbg);
        snprintf(name, sizeof name, "bn_bwd train=%d dx", train);
        CMP(name, dxc, dxg, tot, 1e-5);
        snprintf(name, sizeof name, "bn_bwd train=%d dw", train);
        CMP(name, dwc, dwg, c, 1e-5);
        snprintf(name, sizeof name, "bn_bwd train=%d db", train);
        CMP(name, dbc, dbg, c, 1e-5);
    }
    float lc[1] = {NAN}, *lg = up(nans(1), 1);
    float *sc = nans(3 * c + 2), *sg = up(sc, 3 * c + 2);
    C->bn_stat_fwd(C, n, c, hw, x, rm, rv, lc, sc);
    G->bn_stat_fwd(G, n, c, hw, xg, up(rm, c), up(rv, c), lg, sg);
    CMP("bn_stat_fwd loss", lc, lg, 1, 1e-6);
    CMP("bn_stat_fwd save", sc, sg, 3 * c + 2, 1e-6);
    /* group norm's use (ops_norm.c): one image whose channels are the groups, up to 32768 a call,
     * no affine, no running statistics */
    int gc = 32768;
    int64_t glen = 9, gt = (int64_t)gc * glen;
    float *gx = rnd(gt, -2, 3), *gxg = up(gx, gt), *gyc = nans(gt), *gyg = up(gyc, gt);
    float *gmc = nans(2 * gc), *gmg = up(gmc, 2 * gc);
    C->bn_fwd_train(C, 1, gc, glen, 1e-5f, 0.0f, gx, NULL, NULL, gyc, gmc, gmc + gc, NULL, NULL);
    G->bn_fwd_train(G, 1, gc, glen, 1e-5f, 0.0f, gxg, NULL, NULL, gyg, gmg, gmg + gc, NULL, NULL);
    CMP("bn_fwd_train n=1, 32768 groups, no affine: y", gyc, gyg, gt, 1e-6);
    CMP("bn_fwd_train n=1, 32768 groups: mean,invstd", gmc, gmg, 2 * gc, 1e-6);
    float *gdy = rnd(gt, -1, 1), *gdxc = rnd(gt, -1, 1), *gdxg = up(gdxc, gt);
    C->bn_bwd(C, 1, 1, gc, glen, gx, NULL, gmc, gmc + gc, gdy, gdxc, NULL, NULL);
    float *gmu = up(gmc, 2 * gc); /* both sides from the CPU's statistics */
    G->bn_bwd(G, 1, 1, gc, glen, gxg, NULL, gmu, gmu + gc, up(gdy, gt), gdxg, NULL, NULL);
    CMP("bn_bwd n=1, 32768 groups, no affine: dx", gdxc, gdxg, gt, 1e-5);
    float dl[1] = {0.7f}, *dx0 = rnd(tot, -1, 1), *dxc = copyh(dx0, tot), *dxg = up(dx0, tot);
    C->bn_stat_bwd(C, n, c, hw, x, sc, dl, dxc);
    G->bn_stat_bwd(G, n, c, hw, xg, up(sc, 3 * c + 2), up(dl, 1), dxg);
    CMP("bn_stat_bwd", dxc, dxg, tot, 1e-6);
}

/* bn_act_fwd / bn_act_bwd, CUDA against the CPU's, over the cases the front-end uses:
 * activation (none, ReLU, ReLU6), residual, train or eval, eval with the statistics loss, and the
 * backward in place or accumulating, with or without dw/db (recover's frozen teacher has none).
 * Shapes: short planes (hw < 256) and long ones split over several chunks per channel. */
static void bn_act_case(int n, int c, int64_t hw, int act, int train, int has_r, int stat,
                        int inplace, int wgrad)
{
    const char *an = act == (int)NN_BN_NO_ACT ? "none" : act == NN_ACT_RELU ? "relu" : "relu6";
    char tag[96], name[128];
    snprintf(tag, sizeof tag, "bn_act %s %s%s%s%s%s n%d c%d hw%lld", an, train ? "train" : "eval",
             has_r ? " +r" : "", stat ? " stat" : "", inplace ? " inplace" : "", wgrad ? " dw" : "",
             n, c, (long long)hw);
    int64_t tot = (int64_t)n * c * hw;
    float *x = rnd(tot, -2, 4), *w = rnd(c, 0.5f, 1.5f), *b = rnd(c, -1, 1), *r = rnd(tot, -1, 1);
    float *rm = rnd(c, -0.5f, 0.5f), *rv = rnd(c, 0.5f, 2);
    float *rmc = copyh(rm, c), *rvc = copyh(rv, c), *rmg = up(rm, c), *rvg = up(rv, c);
    float *xg = up(x, tot), *wg = up(w, c), *bg = up(b, c), *rg = up(r, tot);
    float *yc = nans(tot), *yg = up(yc, tot), *mc = nans(2 * c), *mg = up(mc, 2 * c);
    float lc[1] = {NAN}, *lg = up(lc, 1), *sc = nans(3 * c + 2), *sg = up(sc, 3 * c + 2);
    C->bn_act_fwd(C, (NnAct)act, train, n, c, hw, 1e-5f, 0.1f, x, has_r ? r : NULL, w, b, rmc, rvc,
                  yc, mc, mc + c, stat ? lc : NULL, stat ? sc : NULL);
    G->bn_act_fwd(G, (NnAct)act, train, n, c, hw, 1e-5f, 0.1f, xg, has_r ? rg : NULL, wg, bg, rmg,
                  rvg, yg, mg, mg + c, stat ? lg : NULL, stat ? sg : NULL);
    snprintf(name, sizeof name, "%s y", tag);
    CMP(name, yc, yg, tot, 1e-6);
    snprintf(name, sizeof name, "%s mean,invstd", tag);
    CMP(name, mc, mg, 2 * c, 1e-6);
    if (train) {
        snprintf(name, sizeof name, "%s running stats", tag);
        row(name, fmax(err_of(rmc, rmg, c), err_of(rvc, rvg, c)), 1e-6);
    }
    if (stat) {
        snprintf(name, sizeof name, "%s stat loss, save", tag);
        row(name, fmax(err_of(lc, lg, 1), err_of(sc, sg, 3 * c + 2)), 1e-6);
    }
    /* backward from the CPU's outputs on both sides */
    float *yh = yc, *mh = mc, *ygc = up(yh, tot), *mgc = up(mh, 2 * c), *sgc = up(sc, 3 * c + 2);
    float dl[1] = {0.7f}, *dlg = up(dl, 1);
    float *dy = rnd(tot, -1, 1), *dx0 = rnd(tot, -1, 1), *dr0 = rnd(tot, -1, 1);
    float *dw0 = rnd(c, -1, 1), *db0 = rnd(c, -1, 1);
    float *dyc = copyh(dy, tot), *dyg = up(dy, tot);
    float *dxc = inplace ? dyc : copyh(dx0, tot), *dxg = inplace ? dyg : up(dx0, tot);
    float *drc = copyh(dr0, tot), *drg = up(dr0, tot);
    float *dwc = copyh(dw0, c), *dbc = copyh(db0, c), *dwg = up(dw0, c), *dbg = up(db0, c);
    /* the CPU's from y, the device's as the engine calls it: y only with a residual, else the
     * mask recomputed from x, w and b */
    C->bn_act_bwd(C, (NnAct)act, train, n, c, hw, x, act == (int)NN_BN_NO_ACT ? NULL : yh, w, b,
                  mh, mh + c, dyc, dxc, has_r ? drc : NULL, wgrad ? dwc : NULL, wgrad ? dbc : NULL,
                  stat ? sc : NULL, stat ? dl : NULL);
    G->bn_act_bwd(G, (NnAct)act, train, n, c, hw, xg, act == (int)NN_BN_NO_ACT || !has_r ? NULL : ygc,
                  wg, bg, mgc, mgc + c, dyg, dxg, has_r ? drg : NULL, wgrad ? dwg : NULL,
                  wgrad ? dbg : NULL, stat ? sgc : NULL, stat ? dlg : NULL);
    snprintf(name, sizeof name, "%s dx", tag);
    CMP(name, dxc, dxg, tot, 1e-5);
    if (has_r) {
        snprintf(name, sizeof name, "%s dr", tag);
        CMP(name, drc, drg, tot, 1e-6);
    }
    if (wgrad) {
        snprintf(name, sizeof name, "%s dw, db", tag);
        row(name, fmax(err_of(dwc, dwg, c), err_of(dbc, dbg, c)), 1e-5);
    }
}

static void test_bn_act(void)
{
    const int none = (int)NN_BN_NO_ACT;
    /* recover's cases: eval, statistics, in place, no dw */
    bn_act_case(6, 10, 63, NN_ACT_RELU, 0, 0, 1, 1, 0);
    bn_act_case(6, 10, 63, NN_ACT_RELU, 0, 1, 1, 1, 0);
    bn_act_case(4, 3, 75 * 71, NN_ACT_RELU, 0, 1, 1, 1, 0);
    bn_act_case(4, 3, 75 * 71, none, 0, 0, 1, 0, 0);
    bn_act_case(5, 7, 1, NN_ACT_RELU6, 0, 0, 1, 1, 0);
    /* training's: train mode, dw/db, accumulate or in place */
    bn_act_case(6, 10, 63, NN_ACT_RELU, 1, 1, 0, 0, 1);
    bn_act_case(4, 3, 75 * 71, NN_ACT_RELU6, 1, 0, 0, 1, 1);
    bn_act_case(4, 3, 300, none, 1, 0, 0, 0, 1);
    bn_act_case(3, 5, 17, NN_ACT_RELU, 0, 1, 0, 0, 1);
}

/* recover's per-channel clamp: [n, c, hw] to [lo[ch], hi[ch]] */
static void test_clamp_channels(void)
{
    int n = 7, c = 3;
    int64_t hw = 300, tot = (int64_t)n * c * hw;
    float *x = rnd(tot, -3, 3), lo[3] = {-0.4f, -1.9f, 0.1f}, hi[3] = {2.2f, 0.3f, 0.9f};
    float *xc = copyh(x, tot), *xg = up(x, tot);
    for (int64_t i = 0; i < tot; i++) {
        int ch = (int)((i / hw) % c);
        xc[i] = xc[i] < lo[ch] ? lo[ch] : xc[i] > hi[ch] ? hi[ch] : xc[i];
    }
    G->clamp_channels(G, n, c, hw, lo, hi, xg);
    CMP("clamp_channels", xc, xg, tot, 0);
}

/* loss scaling's unscale: g * inv exactly, the flag set only by a non-finite result */
static void test_unscale(void)
{
    int64_t n = 100003;
    float *g = rnd(n, -1e4f, 1e4f), *gc = copyh(g, n), *gg = up(g, n), inv = 1.0f / 1024.0f;
    for (int64_t i = 0; i < n; i++) gc[i] *= inv;
    int zero = 0, flag = -1, *fg = upb(&zero, sizeof zero);
    G->unscale(G, n, inv, gg, fg);
    G->download(G, &flag, fg, sizeof flag);
    CMP("unscale", gc, gg, n, 0);
    row("unscale: finite, flag stays 0", flag == 0 ? 0 : INFINITY, 0);
    g[n / 2] = INFINITY;
    gg = up(g, n);
    G->unscale(G, n, inv, gg, fg);
    G->download(G, &flag, fg, sizeof flag);
    row("unscale: an infinity sets the flag", flag == 1 ? 0 : INFINITY, 0);
}

/* ---- pooling ---- */

static void pool_case(int kind, NnPoolShape s, const char *what)
{
    if (kind < 2) {
        s.oh = (s.h + 2 * s.pad - s.k) / s.stride + 1;
        s.ow = (s.w + 2 * s.pad - s.k) / s.stride + 1;
    }
    int64_t nx = s.np * s.h * s.w, ny = s.np * s.oh * s.ow;
    float *x = rnd(nx, -1, 1), *xg = up(x, nx), *yc = nans(ny), *yg = up(yc, ny);
    uint8_t *ic = keep(dd_malloc((size_t)ny)), *ig = upb(ic, (size_t)ny);
    char name[96];
    if (kind == 0) {
        C->maxpool_fwd(C, &s, x, yc, ic);
        G->maxpool_fwd(G, &s, xg, yg, ig);
    } else if (kind == 1) {
        C->avgpool_fwd(C, &s, x, yc);
        G->avgpool_fwd(G, &s, xg, yg);
    } else {
        C->adaptive_avgpool_fwd(C, &s, x, yc);
        G->adaptive_avgpool_fwd(G, &s, xg, yg);
    }
    snprintf(name, sizeof name, "%s fwd", what);
    CMP(name, yc, yg, ny, 1e-6);
    float *dy = rnd(ny, -1, 1), *dyg = up(dy, ny), *d0 = rnd(nx, -1, 1), *dc = copyh(d0, nx),
          *dg = up(d0, nx);
    if (kind == 0) {
        uint8_t *ih = keep(dd_malloc((size_t)ny));
        G->download(G, ih, ig, (size_t)ny);
        int same = !memcmp(ih, ic, (size_t)ny);
        snprintf(name, sizeof name, "%s argmax indices (exact)", what);
        row(name, same ? 0 : INFINITY, 0);
        C->maxpool_bwd(C, &s, ic, dy, dc);
        G->maxpool_bwd(G, &s, ig, dyg, dg);
    } else if (kind == 1) {
        C->avgpool_bwd(C, &s, dy, dc);
        G->avgpool_bwd(G, &s, dyg, dg);
    } else {
        C->adaptive_avgpool_bwd(C, &s, dy, dc);
        G->adaptive_avgpool_bwd(G, &s, dyg, dg);
    }
    snprintf(name, sizeof name, "%s bwd", what);
    CMP(name, dc, dg, nx, 1e-6);
}

static void test_pool(void)
{
    /* np h w oh ow k stride pad */
    pool_case(0, (NnPoolShape){12, 17, 15, 0, 0, 3, 2, 1}, "maxpool k3 s2 p1");
    pool_case(0, (NnPoolShape){12, 16, 16, 0, 0, 2, 2, 0}, "maxpool k2 s2");
    pool_case(0, (NnPoolShape){4, 20, 19, 0, 0, 15, 1, 7}, "maxpool k15 s1 p7 (offsets to 224)");
    /* planes of 32 columns and more: kern_pool.h's row tiles (a last tile and column block short) */
    pool_case(0, (NnPoolShape){6, 112, 112, 0, 0, 3, 2, 1}, "maxpool k3 s2 p1 112x112 (ResNet's stem)");
    pool_case(0, (NnPoolShape){5, 37, 291, 0, 0, 4, 3, 2}, "maxpool k4 s3 p2 37x291 (tiles)");
    pool_case(0, (NnPoolShape){3, 33, 40, 0, 0, 5, 1, 2}, "maxpool k5 s1 p2 33x40 (tiles)");
    pool_case(0, (NnPoolShape){0, 40, 40, 0, 0, 3, 2, 1}, "maxpool no planes (no row-tile grid)");
    pool_case(1, (NnPoolShape){12, 16, 14, 0, 0, 2, 2, 0}, "avgpool k2 s2");
    pool_case(1, (NnPoolShape){12, 9, 11, 0, 0, 3, 1, 1}, "avgpool k3 s1 p1");
    pool_case(2, (NnPoolShape){12, 7, 7, 1, 1, 0, 0, 0}, "adaptive_avgpool 7x7->1x1");
    pool_case(2, (NnPoolShape){12, 10, 7, 3, 4, 0, 0, 0}, "adaptive_avgpool 10x7->3x4");
}

/* ---- losses and mixing ---- */

static void test_loss(void)
{
    int n = 37, k = 100;
    int64_t nk = (int64_t)n * k;
    float *z = rnd(nk, -6, 6), *t = rnd(nk, 0, 1), *te = rnd(nk, -6, 6), *zg = up(z, nk);
    int64_t lab[37];
    for (int i = 0; i < n; i++) lab[i] = dd_rng_int(&rng, 0, k - 1);
    float dl[1] = {1.3f}, *dlg = up(dl, 1);
    for (int kind = 0; kind < 3; kind++) {
        static const char *names[3] = {"ce (smoothing 0.1)", "soft_ce", "kl (T=4)"};
        char name[64];
        float lc[1] = {NAN}, *lg = up(nans(1), 1);
        float *d0 = rnd(nk, -1, 1), *dc = copyh(d0, nk), *dg = up(d0, nk);
        if (kind == 0) {
            C->ce_fwd(C, n, k, 0.1f, z, lab, lc);
            G->ce_fwd(G, n, k, 0.1f, zg, lab, lg);
            C->ce_bwd(C, n, k, 0.1f, z, lab, dl, dc);
            G->ce_bwd(G, n, k, 0.1f, zg, lab, dlg, dg);
        } else if (kind == 1) {
            C->soft_ce_fwd(C, n, k, z, t, lc);
            G->soft_ce_fwd(G, n, k, zg, up(t, nk), lg);
            C->soft_ce_bwd(C, n, k, z, t, dl, dc);
            G->soft_ce_bwd(G, n, k, zg, up(t, nk), dlg, dg);
        } else {
            C->kl_fwd(C, n, k, 4.0f, z, te, lc);
            G->kl_fwd(G, n, k, 4.0f, zg, up(te, nk), lg);
            C->kl_bwd(C, n, k, 4.0f, z, te, dl, dc);
            G->kl_bwd(G, n, k, 4.0f, zg, up(te, nk), dlg, dg);
        }
        snprintf(name, sizeof name, "%s fwd", names[kind]);
        CMP(name, lc, lg, 1, 1e-6);
        snprintf(name, sizeof name, "%s bwd", names[kind]);
        CMP(name, dc, dg, nk, 1e-6);
    }
    int64_t perm[5] = {3, 0, 4, 1, 2};
    int64_t row_ = 2 * 9 * 8, tot = 5 * row_;
    float *x = rnd(tot, 0, 1), *xc = copyh(x, tot), *xg = up(x, tot);
    C->mixup(C, 5, row_, perm, 0.3f, xc);
    G->mixup(G, 5, row_, perm, 0.3f, xg);
    CMP("mixup", xc, xg, tot, 1e-6);
    xc = copyh(x, tot);
    xg = up(x, tot);
    C->cutmix(C, 5, 2, 9, 8, perm, 2, 1, 7, 6, xc);
    G->cutmix(G, 5, 2, 9, 8, perm, 2, 1, 7, 6, xg);
    CMP("cutmix", xc, xg, tot, 0);
}

/* ---- optimizers through optim_step / optim_clamp (device state via nn_state_alloc) ---- */

static NnParam *opt_param(Nn *nn, const float *v, const float *g, int64_t n)
{
    NnParam *p = nn_param_new(nn, "p", NN_PARAM, 1, &n);
    nn_var_upload(nn, &p->var, v);
    p->decay = 1;
    p->var.g.data = nn_state_alloc(nn, (size_t)n);
    if (!p->var.g.data) dd_die_err(DD_EXIT_DEVICE);
    nn->be->upload(nn->be, p->var.g.data, g, (size_t)n * sizeof(float));
    return p;
}

static void test_optim(void)
{
    Nn *nc = nn_new(DD_CPU, 2), *ng = nn_new(DD_CUDA, 1);
    if (!ng) dd_die_err(DD_EXIT_DEVICE);
    int64_t n = 5000;
    OptimConf confs[4] = {optim_sgd(0.1, 0.9, 1e-4, 0), optim_sgd(0.1, 0.9, 1e-4, 1),
                          optim_adam(0.25, 0.5, 0.9, 1e-8, 0.0), optim_adamw(1e-3, 0.9, 0.999, 1e-8, 0.05)};
    static const char *names[4] = {"optim sgd momentum wd, 3 steps", "optim sgd nesterov, 3 steps",
                                    "optim adam (recover), 3 steps", "optim adamw, 3 steps"};
    for (int k = 0; k < 4; k++) {
        float *v = rnd(n, -1, 1), *g = rnd(n, -1, 1);
        NnParam *pc = opt_param(nc, v, g, n), *pg = opt_param(ng, v, g, n);
        int ok = 1;
        for (int s = 0; s < 3; s++)
            ok &= optim_step(nc, &confs[k], &pc, 1) == 0 && optim_step(ng, &confs[k], &pg, 1) == 0;
        if (!ok) {
            row(dd_errmsg(), INFINITY, 0);
        } else {
            float *vc = keep(dd_malloc((size_t)n * 4)), *vg = keep(dd_malloc((size_t)n * 4));
            nn_var_download(nc, &pc->var, vc);
            nn_var_download(ng, &pg->var, vg);    /* ng's own stream, not G's */
            row(names[k], err_host(vc, vg, n), 1e-6);
        }
        optim_reset(&pg, 1);
        if (k == 2) {
            CHECK(pg->opt_m == NULL && pg->opt_ctx == NULL);
            ok = optim_clamp(nc, pc, 0.0f, 0.5f) == 0 && optim_clamp(ng, pg, 0.0f, 0.5f) == 0;
            float *vc = keep(dd_malloc((size_t)n * 4)), *vg = keep(dd_malloc((size_t)n * 4));
            nn_var_download(nc, &pc->var, vc);
            nn_var_download(ng, &pg->var, vg);
            if (ok) row("optim clamp", err_host(vc, vg, n), 0);
            else row(dd_errmsg(), INFINITY, 0);
        }
        nn_param_free(nc, pc);
        nn_param_free(ng, pg);
    }
    nn_free(nc);
    nn_free(ng);
}

/* ---- end to end: resnet18 (small stem) recover step, batch 8, 3x32x32 ---- */

static void e2e_side(Nn *nn, const float *pixels, float *logits, float *loss, float *grad)
{
    Model *m = model_create(nn, "resnet18m", 3, 10, 32, 7);
    if (!m) dd_die_err(DD_EXIT_DATA);
    model_set_requires_grad(m, 0);
    /* non-trivial running statistics, the same on both sides */
    DdRng r;
    dd_rng_init(&r, 11, 3, 0);
    for (int i = 0; i < m->nparams; i++) {
        NnParam *p = m->params[i];
        int isvar = strstr(p->name, "running_var") != NULL;
        if (!isvar && !strstr(p->name, "running_mean")) continue;
        int64_t n = tensor_numel(&p->var.v);
        float *h = dd_malloc((size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++)
            h[j] = (float)(isvar ? dd_rng_uniform_range(&r, 0.5, 2) : dd_rng_uniform_range(&r, -0.2, 0.2));
        nn_var_upload(nn, &p->var, h);
        free(h);
    }
    int64_t shape[4] = {8, 3, 32, 32};
    Tensor t = tensor_new(DD_F32, 4, shape);
    memcpy(t.data, pixels, 8 * 3 * 32 * 32 * sizeof(float));
    NnVar *x = nn_input(nn, &t, 1);
    Tensor labels = tensor_newv(DD_I64, 1, (int64_t)8);
    for (int i = 0; i < 8; i++) ((int64_t *)labels.data)[i] = i;
    NnVar *xa = nn_roll(nn, nn_flip_w(nn, nn_crop_resize(nn, x, 3, 2, 24, 27, 32, 32)), 2, 3);
    nn_bn_collect(nn, 1);
    NnVar *out = model_forward(m, nn, xa, 0);
    NnVar *l = nn_cross_entropy(nn, out, &labels, 0.0f), *bn = NULL;
    for (int i = 0; i < nn_bn_stat_count(nn); i++) {
        NnVar *s = nn_scale(nn, nn_bn_stat(nn, i), i == 0 ? 10.0f : 1.0f);
        bn = bn ? nn_add(nn, bn, s) : s;
    }
    l = nn_add(nn, l, nn_scale(nn, bn, 0.01f));
    nn_backward(nn, l);
    nn_var_download(nn, out, logits);
    *loss = nn_item(nn, l);
    nn_grad_download(nn, x, grad);
    nn_bn_collect(nn, 0);
    nn_reset(nn);
    tensor_free(&t);
    tensor_free(&labels);
    model_free(m);
}

static void test_e2e(void)
{
    Nn *nc = nn_new(DD_CPU, 2), *ng = nn_new(DD_CUDA, 1);
    if (!ng) dd_die_err(DD_EXIT_DEVICE);
    int64_t np = 8 * 3 * 32 * 32;
    float *px = rnd(np, 0, 1), lc[80], lg[80], sc, sg;
    float *gc = keep(dd_malloc((size_t)np * 4)), *gg = keep(dd_malloc((size_t)np * 4));
    e2e_side(nc, px, lc, &sc, gc);
    e2e_side(ng, px, lg, &sg, gg);
    double el = 0, ml = 0, eg = 0, mg = 0;
    for (int i = 0; i < 80; i++) {
        el = fmax(el, isnan(lg[i]) ? INFINITY : fabs((double)lc[i] - lg[i])); /* fmax drops a NaN */
        ml = fmax(ml, fabs(lc[i]));
    }
    for (int64_t i = 0; i < np; i++) {
        eg = fmax(eg, isnan(gg[i]) ? INFINITY : fabs((double)gc[i] - gg[i]));
        mg = fmax(mg, fabs(gc[i]));
    }
    row("e2e resnet18m b8 recover step: logits", el / ml, 1e-4);
    row("e2e resnet18m b8 recover step: loss", fabs((double)sc - sg) / fabs(sc), 1e-4);
    row("e2e resnet18m b8 recover step: input grad", eg / mg, 1e-4);
    nn_free(nc);
    nn_free(ng);
}

int main(void)
{
    G = nn_cuda_backend_new(1);
    if (!G) CHECK_SKIP("no CUDA device (GPU required for this test): %s", dd_errmsg());
    C = nn_cpu_backend_new(2);
    dd_rng_init(&rng, 2024, 9, 0);
    printf("%-44s %-22s %-11s %s\n", "check (CUDA vs CPU)", "", "", "result");
    test_memory();
    test_elem();
    test_layout();
    test_conv();
    test_norm();
    test_bn_act();
    test_clamp_channels();
    test_unscale();
    test_fp16_overflow();
    test_conv_nhwc();
    test_pool();
    test_loss();
    test_optim();
    test_e2e();
    printf("%d checks, %d failed\n", nrows, nfail);
    for (int i = 0; i < nhold; i++) free(hold[i]);
    C->destroy(C);
    G->destroy(G);
    check_failures += nfail;
    return check_done("test_cuda_ops");
}

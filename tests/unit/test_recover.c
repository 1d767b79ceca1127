/* test_recover.c - the recover loop: schedule arithmetic, the cosine over the global counter, the
 * loss of a tiny ConvNet against a hand computation in double, the pixel <-> normalized round
 * trip, the batch plan, noise draws, fused == pieces with arc_merge between them (bit for bit), the multi-teacher round robin,
 * the ARC merge's arithmetic, the batch ids: intrinsic to a batch's content (a class slice
 * plans the ids of the whole input) and keying the augmentation draws, and INFER's compensator. */
#include <string.h>

#include "libcommon/distill/merge.h"
#include "libcommon/distill/recover.h"
#include "libcommon/image/resize.h"
#include "libcommon/optim/optim.h"
#include "tests/unit/check.h"

static void test_schedule(void)
{
    RecConf c = rec_conf_default();
    CHECK(rec_schedule_fused(&c, 2000, 3, NULL) == 0);
    CHECK(c.nstages == 4 && c.merge && c.total == 2000);
    for (int s = 0; s < 4; s++) CHECK(c.stage[s].start == 500 * s && c.stage[s].end == 500 * (s + 1) && c.stage[s].h == 0);
    int sizes[3] = {20, 24, 28};
    CHECK(rec_schedule_fused(&c, 10, 2, sizes) == 0);
    CHECK(c.stage[0].end == 3 && c.stage[1].start == 3 && c.stage[1].end == 6 && c.stage[2].end == 10);
    CHECK(c.stage[1].h == 24 && c.stage[2].w == 28);
    CHECK(rec_schedule_fused(&c, 1000, 0, NULL) == 0 && c.nstages == 1 && !c.merge && c.stage[0].end == 1000);
    CHECK(rec_schedule_fused(&c, 2, 3, NULL) < 0);
    CHECK(rec_schedule_piece(&c, 500, 1000, 2000) == 0 && c.nstages == 1 && c.total == 2000 && !c.merge);
    CHECK(rec_schedule_piece(&c, 500, 500, 2000) < 0 && rec_schedule_piece(&c, 0, 2001, 2000) < 0);
    /* cosine over the global counter, evaluated at the start of the step */
    CHECK(optim_recover_lr(0.25, 0, 2000) == 0.25);
    CHECK_CLOSE(optim_recover_lr(0.25, 500, 2000), 0.5 * (1 + cos(M_PI / 4)) * 0.25, 1e-15, 0);
    CHECK_CLOSE(optim_recover_lr(0.25, 1000, 2000), 0.125, 1e-15, 0);
}

static void fill(Nn *nn, Model *m, const char *name, DdRng *r, double lo, double hi)
{
    NnParam *p = model_find(m, name);
    int64_t n = tensor_numel(&p->var.v);
    float v[512];
    for (int64_t i = 0; i < n; i++) v[i] = (float)dd_rng_uniform_range(r, lo, hi);
    nn_var_upload(nn, &p->var, v);
}

/* convnet1:width=2 on 1x4x4, 3 classes: conv3x3 pad 1 + bias, BN (eval), ReLU, avgpool 2, linear. */
static void test_loss(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    Model *m = model_create(nn, "convnet1:width=2", 1, 3, 4, 2);
    CHECK(m != NULL);
    if (!m) return;
    model_set_requires_grad(m, 0);
    DdRng r;
    dd_rng_init(&r, 4, 0, 0);
    fill(nn, m, "1.running_mean", &r, -0.3, 0.3);
    fill(nn, m, "1.running_var", &r, 0.5, 1.5);
    fill(nn, m, "1.weight", &r, 0.5, 1.5);
    fill(nn, m, "1.bias", &r, -0.2, 0.2);
    float w[18], b[2], rm[2], rv[2], g[2], be[2], lw[24], lb[3], x[2 * 16];
    nn_var_download(nn, &model_find(m, "0.weight")->var, w);
    nn_var_download(nn, &model_find(m, "0.bias")->var, b);
    nn_var_download(nn, &model_find(m, "1.running_mean")->var, rm);
    nn_var_download(nn, &model_find(m, "1.running_var")->var, rv);
    nn_var_download(nn, &model_find(m, "1.weight")->var, g);
    nn_var_download(nn, &model_find(m, "1.bias")->var, be);
    nn_var_download(nn, &model_find(m, "5.weight")->var, lw);
    nn_var_download(nn, &model_find(m, "5.bias")->var, lb);
    for (int i = 0; i < 32; i++) x[i] = (float)dd_rng_uniform_range(&r, -1, 2);
    int64_t y[2] = {2, 0};

    double conv[2][2][4][4], mu[2] = {0}, var[2] = {0}, logits[2][3] = {{0}};
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < 2; o++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    double s = b[o];
                    for (int di = 0; di < 3; di++)
                        for (int dj = 0; dj < 3; dj++) {
                            int ii = i + di - 1, jj = j + dj - 1;
                            if (ii >= 0 && ii < 4 && jj >= 0 && jj < 4) s += (double)w[o * 9 + di * 3 + dj] * x[n * 16 + ii * 4 + jj];
                        }
                    conv[n][o][i][j] = s;
                    mu[o] += s / 32;
                }
    for (int n = 0; n < 2; n++)
        for (int o = 0; o < 2; o++)
            for (int i = 0; i < 16; i++) var[o] += pow(conv[n][o][i / 4][i % 4] - mu[o], 2) / 32;
    double dist = sqrt(pow(mu[0] - rm[0], 2) + pow(mu[1] - rm[1], 2)) + sqrt(pow(var[0] - rv[0], 2) + pow(var[1] - rv[1], 2));
    double ce = 0;
    for (int n = 0; n < 2; n++) {
        double feat[8];
        for (int o = 0; o < 2; o++)
            for (int a = 0; a < 2; a++)
                for (int c = 0; c < 2; c++) {
                    double s = 0;
                    for (int q = 0; q < 4; q++) {
                        double z = (conv[n][o][2 * a + q / 2][2 * c + q % 2] - rm[o]) / sqrt(rv[o] + 1e-5) * g[o] + be[o];
                        s += z > 0 ? z : 0;
                    }
                    feat[o * 4 + a * 2 + c] = s / 4;
                }
        double mx = -1e30, se = 0;
        for (int k = 0; k < 3; k++) {
            logits[n][k] = lb[k];
            for (int f = 0; f < 8; f++) logits[n][k] += (double)lw[k * 8 + f] * feat[f];
            mx = logits[n][k] > mx ? logits[n][k] : mx;
        }
        for (int k = 0; k < 3; k++) se += exp(logits[n][k] - mx);
        ce += (mx + log(se) - logits[n][y[n]]) / 2;
    }
    Tensor xt = tensor_newv(DD_F32, 4, (int64_t)2, (int64_t)1, (int64_t)4, (int64_t)4), lab = tensor_newv(DD_I64, 1, (int64_t)2);
    memcpy(xt.data, x, sizeof x);
    memcpy(lab.data, y, sizeof y);
    float fce, fbn;
    NnVar *loss = rec_loss(nn, m, nn_input(nn, &xt, 1), &lab, 0.01, 10, &fce, &fbn);
    CHECK_CLOSE(fce, ce, 1e-5, 1e-5);
    CHECK_CLOSE(fbn, 10 * dist, 1e-5, 1e-5);
    CHECK_CLOSE(nn_item(nn, loss), ce + 0.01 * 10 * dist, 1e-5, 1e-5);
    nn_reset(nn);
    tensor_free(&xt);
    tensor_free(&lab);
    model_free(m);
    nn_free(nn);
}

static void test_norm(void)
{
    float mean[2] = {0.2860f, 0.5f}, std[2] = {0.3530f, 0.25f}, x[8] = {0, 1, 0.5f, 0.25f, 0, 1, 0.3f, 0.7f}, xn[8], back[8];
    rec_to_norm(x, xn, 1, 2, 4, mean, std);
    CHECK(xn[0] == (0 - mean[0]) / std[0] && xn[5] == (1 - mean[1]) / std[1]);
    rec_to_pix(xn, back, 1, 2, 4, mean, std);
    for (int i = 0; i < 8; i++) CHECK_CLOSE(back[i], x[i], 1e-6, 0);
    for (int i = 0; i < 8; i++) CHECK(back[i] >= 0 && back[i] <= 1);
    xn[0] = -100;
    xn[1] = 100;
    rec_to_pix(xn, back, 1, 2, 4, mean, std);
    CHECK(back[0] == 0 && back[1] == 1);
}

/* A batch of n random pixel images, labels 0..n-1. */
static RecBatch batch(int n, float **P, int64_t *labels, uint64_t seed)
{
    RecBatch b = {.n = n, .C = 1, .H = 8, .W = 8, .labels = labels, .P = (const float *const *)P, .PH = 8, .PW = 8, .id = 3};
    b.x = malloc((size_t)n * 64 * sizeof *b.x);
    DdRng r;
    dd_rng_init(&r, seed, 0, 0);
    for (int i = 0; i < n; i++) {
        labels[i] = i;
        for (int j = 0; j < 64; j++) P[i][j] = b.x[i * 64 + j] = (float)dd_rng_uniform(&r);
    }
    return b;
}

static void test_fused_pieces(void)
{
    Nn *nn = nn_new(DD_CPU, 2);
    Model *t[2] = {model_create(nn, "convnet2:width=4", 1, 3, 8, 1), model_create(nn, "convnet2:width=4", 1, 3, 8, 2)};
    model_set_requires_grad(t[0], 0);
    model_set_requires_grad(t[1], 0);
    float pa[3][64], pb[3][64], *PA[3] = {pa[0], pa[1], pa[2]}, *PB[3] = {pb[0], pb[1], pb[2]};
    int64_t la[3], lb[3];
    RecBatch fa = batch(3, PA, la, 5), pc = batch(3, PB, lb, 5);
    RecConf c = rec_conf_default();
    CHECK(rec_schedule_fused(&c, 12, 2, NULL) == 0);
    CHECK(rec_run(nn, t, 2, &c, &fa) == 0);
    /* the same three stages as pieces, merging in between with arc_merge */
    for (int s = 0; s < 3; s++) {
        RecConf p = rec_conf_default();
        CHECK(rec_schedule_piece(&p, 4 * s, 4 * s + 4, 12) == 0);
        if (s > 0)
            for (int i = 0; i < 3; i++) arc_merge(pc.x + i * 64, 1, 8, 8, PB[i], 8, 8, 0.5);
        CHECK(rec_run(nn, t, 2, &p, &pc) == 0);
    }
    CHECK(!memcmp(fa.x, pc.x, 3 * 64 * sizeof(float)));
    float lo = 1, hi = 0, diff = 0;
    for (int i = 0; i < 192; i++) {
        lo = fa.x[i] < lo ? fa.x[i] : lo;
        hi = fa.x[i] > hi ? fa.x[i] : hi;
        diff += fabsf(fa.x[i] - pa[i / 64][i % 64]);
    }
    CHECK(lo >= 0 && hi <= 1 && diff > 1);           /* moved, and still pixels */
    /* round robin: teachers {A, A} give the bits of {A}; {A, B} differ from {B, A} */
    RecBatch a1 = batch(3, PA, la, 6), a2 = batch(3, PA, la, 6), ab = batch(3, PA, la, 6), ba = batch(3, PA, la, 6);
    Model *tt[2] = {t[0], t[0]}, *tr[2] = {t[1], t[0]};
    RecConf q = rec_conf_default();
    rec_schedule_fused(&q, 6, 0, NULL);
    CHECK(rec_run(nn, t, 1, &q, &a1) == 0 && rec_run(nn, tt, 2, &q, &a2) == 0);
    CHECK(rec_run(nn, t, 2, &q, &ab) == 0 && rec_run(nn, tr, 2, &q, &ba) == 0);
    CHECK(!memcmp(a1.x, a2.x, 192 * sizeof(float)) && memcmp(ab.x, ba.x, 192 * sizeof(float)));
    /* stage sizes (MRO): 8 -> 9 for stage 0, back to 8 and merged with P for stage 1; the same as
     * resample | piece | resample | merge | piece */
    RecBatch mf = batch(3, PA, la, 7), mp = batch(3, PA, la, 7);
    int sizes[2] = {9, 8};
    CHECK(rec_schedule_fused(&q, 6, 1, sizes) == 0);
    CHECK(rec_run(nn, t, 2, &q, &mf) == 0 && mf.H == 8 && mf.W == 8);
    float *x9 = malloc(3 * 81 * sizeof *x9);
    for (int i = 0; i < 3; i++) img_resize_bilinear(mp.x + i * 64, 1, 8, 8, x9 + i * 81, 9, 9);
    free(mp.x);
    mp.x = x9;
    mp.H = mp.W = 9;
    RecConf p0 = rec_conf_default(), p1 = rec_conf_default();
    rec_schedule_piece(&p0, 0, 3, 6);
    rec_schedule_piece(&p1, 3, 6, 6);
    CHECK(rec_run(nn, t, 2, &p0, &mp) == 0 && mp.H == 9);
    float *x8 = malloc(3 * 64 * sizeof *x8);
    for (int i = 0; i < 3; i++) {
        img_resize_bilinear(mp.x + i * 81, 1, 9, 9, x8 + i * 64, 8, 8);
        arc_merge(x8 + i * 64, 1, 8, 8, PA[i], 8, 8, 0.5);
    }
    free(mp.x);
    mp.x = x8;
    mp.H = mp.W = 8;
    CHECK(rec_run(nn, t, 2, &p1, &mp) == 0);
    CHECK(!memcmp(mf.x, mp.x, 192 * sizeof(float)));
    free(fa.x), free(pc.x), free(a1.x), free(a2.x), free(ab.x), free(ba.x), free(mf.x), free(mp.x);
    model_free(t[0]);
    model_free(t[1]);
    nn_free(nn);
}

static void test_plan(void)
{
    /* records (class, ipc): (2,0) (0,0) (2,1) (1,0) (0,1) (2,2); B = 2 */
    int64_t labels[6] = {2, 0, 2, 1, 0, 2}, *order, *start, *id;
    int64_t nb = rec_plan(labels, 6, 3, 2, &order, &start, &id);
    int64_t want_order[6] = {1, 3, 0, 4, 2, 5}, want_start[5] = {0, 2, 3, 5, 6};
    CHECK(nb == 4 && !memcmp(order, want_order, sizeof want_order) && !memcmp(start, want_start, sizeof want_start));
    /* id = ipc * ceil(3 / 2) + first class / 2: {0,1} ipc 0, {2} ipc 0, {0,2} ipc 1, {2} ipc 2 */
    int64_t want_id[4] = {0, 1, 2, 5};
    CHECK(!memcmp(id, want_id, sizeof want_id));
    free(order);
    free(start);
    free(id);
    CHECK(rec_plan(labels, 6, 3, 2, &order, &start, NULL) == 4);
    free(order);
    free(start);
    /* sharding: 6 classes, 3 images each, B = 3; the slices {0,1,2} and {3,4,5} (as tscat --classes
     * writes them, in the whole input's order) plan their batches with the ids of the whole input */
    int64_t all[18], sl[2][9], *oa, *sa, *ia;
    for (int i = 0; i < 18; i++) all[i] = (i * 5) % 6;      /* classes interleaved */
    int64_t na = rec_plan(all, 18, 6, 3, &oa, &sa, &ia);
    CHECK(na == 6);
    for (int s = 0; s < 2; s++) {
        int m = 0;
        for (int i = 0; i < 18; i++)
            if (all[i] / 3 == s) sl[s][m++] = all[i];
        int64_t *os, *ss, *is;
        int64_t ns = rec_plan(sl[s], 9, 6, 3, &os, &ss, &is);
        CHECK(ns == 3);
        for (int64_t b = 0; b < ns; b++) {
            /* the whole input's batch holding this batch's first class at the same ipc index */
            int64_t found = -1, cls = sl[s][os[ss[b]]];
            for (int64_t a = 0; a < na; a++)
                if (all[oa[sa[a]]] == cls && a / 2 == b) found = a;
            CHECK_MSG(found >= 0 && ia[found] == is[b] && sa[found + 1] - sa[found] == ss[b + 1] - ss[b],
                      "slice %d batch %lld: id %lld", s, (long long)b, (long long)is[b]);
        }
        free(os), free(ss), free(is);
    }
    free(oa), free(sa), free(ia);
    float a[16], b[16];
    rec_noise(1, 2, 3, a, 16);
    rec_noise(1, 2, 3, b, 16);
    CHECK(!memcmp(a, b, sizeof a));
    rec_noise(1, 3, 2, b, 16);
    CHECK(memcmp(a, b, sizeof a));
}

/* The augmentation draws are keyed by the batch id alone (with the seed and step): the same batch
 * with the same id gives the same bits in any process, another id other draws. */
static void test_batch_id(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    Model *t = model_create(nn, "convnet2:width=4", 1, 3, 8, 1);
    model_set_requires_grad(t, 0);
    float pa[3][64], *PA[3] = {pa[0], pa[1], pa[2]};
    int64_t la[3];
    RecBatch a = batch(3, PA, la, 8), b = batch(3, PA, la, 8), c = batch(3, PA, la, 8);
    a.id = b.id = 7;
    c.id = 8;
    RecConf q = rec_conf_default();
    rec_schedule_fused(&q, 4, 0, NULL);
    CHECK(rec_run(nn, &t, 1, &q, &a) == 0 && rec_run(nn, &t, 1, &q, &b) == 0 && rec_run(nn, &t, 1, &q, &c) == 0);
    CHECK(!memcmp(a.x, b.x, 192 * sizeof(float)) && memcmp(a.x, c.x, 192 * sizeof(float)));
    free(a.x), free(b.x), free(c.x);
    model_free(t);
    nn_free(nn);
}

/* INFER's compensator: the schedule it takes, its draws keyed by the teacher's index, the input
 * left alone, and the images it makes (rec_ufc_apply) against the same arithmetic by hand.
 * Its values against PyTorch: tests/parity/recover.sh. */
static void test_ufc(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    Model *t = model_create(nn, "convnet2:width=4", 1, 3, 8, 1);
    model_set_requires_grad(t, 0);
    float pa[3][64], *PA[3] = {pa[0], pa[1], pa[2]}, x0[192];
    int64_t la[3];
    RecBatch b = batch(3, PA, la, 9);
    memcpy(x0, b.x, sizeof x0);
    RecConf q = rec_conf_default();
    q.aug = REC_AUG_ROLL;
    float u0[64], u0b[64], u1[64], z[64] = {0};
    CHECK(rec_schedule_fused(&q, 5, 0, NULL) == 0);
    CHECK(rec_ufc(nn, t, 0, &q, &b, u0) == 0 && rec_ufc(nn, t, 0, &q, &b, u0b) == 0 && rec_ufc(nn, t, 1, &q, &b, u1) == 0);
    CHECK(!memcmp(u0, u0b, sizeof u0) && memcmp(u0, u1, sizeof u0) && memcmp(u0, z, sizeof u0));
    CHECK(!memcmp(b.x, x0, sizeof x0));                      /* the images are read, not changed */
    CHECK(rec_ufc(nn, t, REC_UFC_MAX, &q, &b, u1) < 0);
    RecConf two = q;
    CHECK(rec_schedule_fused(&two, 6, 1, NULL) == 0 && rec_ufc(nn, t, 0, &two, &b, u1) < 0);
    RecConf big = q;
    big.stage[0].h = big.stage[0].w = 16;
    CHECK(rec_ufc(nn, t, 0, &big, &b, u1) < 0);
    /* out = clamp((x - m) / s + u) * s + m, 0, 1), in that order of float operations */
    float out[192], want[192];
    rec_ufc_apply(b.x, u0, out, 3, 1, 64, t->mean, t->std);
    int clamped = 0;
    for (int i = 0; i < 192; i++) {
        float v = ((b.x[i] - t->mean[0]) / t->std[0] + u0[i % 64]) * t->std[0] + t->mean[0];
        want[i] = v < 0 ? 0 : v > 1 ? 1 : v;
        clamped += v < 0 || v > 1;
    }
    CHECK(!memcmp(out, want, sizeof out) && clamped > 0 && clamped < 192);
    free(b.x);
    model_free(t);
    nn_free(nn);
}

static void test_merge(void)
{
    float x[4] = {1, 0, 0.5f, 0.25f}, p[1] = {0.5f};
    arc_merge(x, 1, 2, 2, p, 1, 1, 0.25);   /* P resampled 1x1 -> 2x2: constant */
    float a = 0.25f, b = 0.75f;
    CHECK(x[0] == a * 1 + b * 0.5f && x[1] == a * 0 + b * 0.5f && x[3] == a * 0.25f + b * 0.5f);
}

int main(void)
{
    test_schedule();
    test_loss();
    test_norm();
    test_fused_pieces();
    test_merge();
    test_plan();
    test_batch_id();
    test_ufc();
    return check_done("test_recover");
}

/* test_select.c - RDED selection pieces: the seeded subset (uniform, nested prefixes), square crop
 * boxes, the mean-coloured canvas, per-sample CE, ranking with its tie-break and bounded memory,
 * the f x f stitching order (cell k holds rank k*IPC + m), the scorer against a direct
 * evaluation of the winning crop (resized antialiased, as RDED's), independent of the scoring batch
 * size, and a class's selection unchanged when the other classes are removed or reordered. */
#include <stdlib.h>
#include <string.h>

#include "libcommon/distill/select.h"
#include "libcommon/image/resize.h"
#include "libcommon/nn/cpu/cpu.h"
#include "tests/unit/check.h"

static void test_subset(void)
{
    int64_t a[50], b[10], c[50];
    CHECK(sel_subset(1, 3, 50, 80, a) == 50);
    char seen[50] = {0};
    for (int i = 0; i < 50; i++) {
        CHECK(a[i] >= 0 && a[i] < 50 && !seen[a[i]]);
        seen[a[i]] = 1;
    }
    CHECK(sel_subset(1, 3, 50, 10, b) == 10);
    CHECK(!memcmp(a, b, sizeof b));                 /* a smaller k is a prefix */
    sel_subset(1, 4, 50, 50, c);
    CHECK(memcmp(a, c, sizeof c) != 0);             /* classes draw independently */
    /* uniform: each of 10 positions is picked ~ k/n of the time */
    int hits[10] = {0};
    for (int cls = 0; cls < 4000; cls++) {
        int64_t s[3];
        sel_subset(7, cls, 10, 3, s);
        for (int i = 0; i < 3; i++) hits[s[i]]++;
    }
    for (int i = 0; i < 10; i++) CHECK_MSG(hits[i] > 1050 && hits[i] < 1350, "position %d: %d", i, hits[i]);
}

static void test_boxes_canvas_ce(void)
{
    AugBox b[5], b2[5];
    sel_crop_boxes(3, 2, 17, 28, 28, 5, b);
    sel_crop_boxes(3, 2, 17, 28, 28, 5, b2);
    CHECK(!memcmp(b, b2, sizeof b));
    sel_crop_boxes(3, 1, 17, 28, 28, 5, b2);       /* keyed by the class ... */
    CHECK(memcmp(b, b2, sizeof b) != 0);
    sel_crop_boxes(3, 2, 16, 28, 28, 5, b2);       /* ... and the index within it */
    CHECK(memcmp(b, b2, sizeof b) != 0);
    for (int k = 0; k < 5; k++)
        CHECK(b[k].h == b[k].w && b[k].top >= 0 && b[k].left >= 0 && b[k].top + b[k].h <= 28 && b[k].left + b[k].w <= 28);
    float crop[2 * 2 * 2] = {1, 2, 3, 4, 5, 6, 7, 8}, mean[2] = {0.25f, 0.5f}, cv[2 * 4 * 5];
    sel_canvas(crop, 2, 2, mean, 4, 5, cv);
    /* centred at ((4-2)/2, (5-2)/2) = (1, 1) */
    CHECK(cv[0] == 0.25f && cv[1 * 5 + 1] == 1 && cv[1 * 5 + 2] == 2 && cv[2 * 5 + 1] == 3 && cv[2 * 5 + 3] == 0.25f);
    CHECK(cv[20] == 0.5f && cv[20 + 2 * 5 + 2] == 8);
    float lg[6] = {1, 2, 3, 0, 0, 0};
    int64_t y[2] = {2, 1};
    double ce[2];
    sel_ce(lg, 2, 3, y, ce);
    CHECK_CLOSE(ce[0], log(exp(1) + exp(2) + exp(3)) - 3, 1e-12, 0);
    CHECK_CLOSE(ce[1], log(3.0), 1e-12, 0);
}

static SelEntry entry(double ce, int64_t src, float v)
{
    SelEntry e = {.ce = ce, .src = src};
    snprintf(e.key, sizeof e.key, "k%lld", (long long)src);
    e.pix = malloc(4 * sizeof *e.pix);
    for (int i = 0; i < 4; i++) e.pix[i] = v;
    return e;
}

static void test_rank_stitch(void)
{
    /* 20 entries with ce = a permutation; keep the best 12 (ipc 3, f 2); one tie on ce 5. */
    SelTop t;
    sel_top_init(&t, 12);
    int order[20] = {7, 19, 3, 11, 0, 15, 8, 2, 18, 5, 13, 1, 9, 17, 4, 14, 10, 6, 12, 16};
    for (int i = 0; i < 20; i++) {
        SelEntry e = entry(order[i], 100 - i, (float)order[i]);
        sel_top_offer(&t, &e);
    }
    SelEntry tie = entry(5, 50, 55);    /* ties with src 91 (ce 5): the lower src ranks first */
    sel_top_offer(&t, &tie);
    CHECK(t.n == 12);
    sel_top_sort(&t);
    /* ranks: ce 0,1,2,3,4, then the two 5s (src 50 before src 91), then 6..10 */
    double want_ce[12] = {0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10};
    for (int r = 0; r < 12; r++) CHECK(t.e[r].ce == want_ce[r]);
    CHECK(t.e[5].src == 50 && t.e[6].src == 91 && t.e[5].pix[0] == 55);
    CHECK(sel_top_need(&t, 0, 3, 2) == 0 && sel_top_need(&t, 0, 4, 2) < 0);
    /* stitch image m = 1 of ipc 3: cells TL, TR, BL, BR = ranks 1, 4, 7, 10 (pix value = its ce) */
    float out[1 * 4 * 4];
    sel_stitch(&t, 3, 2, 1, 1, 2, out);
    float want[4] = {1, 4, (float)t.e[7].ce, (float)t.e[10].ce};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) CHECK(out[y * 4 + x] == want[(y / 2) * 2 + x / 2]);
    sel_top_free(&t);
}

enum { K = 3, SIDE = 4 };

/* The scorer's answer computed directly: the best CE over the K crops (seed 9) of image img [1,h,w]
 * of class c, index src within it, each resized antialiased (RDED's RandomResizedCrop(antialias=True);
 * the 4-px crops of 8-px images are mostly shrunk, where plain bilinear differs) and scored alone on an
 * 8x8 canvas. */
static double direct_best(Model *m, Nn *nn, const float *img, int h, int w, int c, int64_t src)
{
    AugBox bx[K];
    sel_crop_boxes(9, c, src, h, w, K, bx);
    double best = 1e30;
    for (int q = 0; q < K; q++) {
        CHECK(bx[q].top + bx[q].h <= h && bx[q].left + bx[q].w <= w);
        float crop[SIDE * SIDE], cv[64], lg[3];
        img_crop_resize_aa(img, 1, h, w, bx[q].top, bx[q].left, bx[q].h, bx[q].w, crop, SIDE, SIDE);
        sel_canvas(crop, 1, SIDE, m->mean, 8, 8, cv);
        Tensor t = tensor_newv(DD_F32, 4, (int64_t)1, (int64_t)1, (int64_t)8, (int64_t)8);
        memcpy(t.data, cv, sizeof cv);
        nn_set_grad(nn, 0);
        nn_var_download(nn, model_forward(m, nn, nn_input(nn, &t, 0), 0), lg);
        nn_reset(nn);
        tensor_free(&t);
        int64_t y = c;
        double ce;
        sel_ce(lg, 1, 3, &y, &ce);
        best = ce < best ? ce : best;
    }
    return best;
}

/* The scorer keeps, per image, the crop whose canvas the model scores best, whatever the batch;
 * with a fixed canvas, for images of any size. */
static void test_scorer(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    Model *m = model_create(nn, "convnet1:width=4", 1, 3, 8, 5);
    CHECK(m != NULL);
    if (!m) return;
    model_set_requires_grad(m, 0);
    enum { NIMG = 7 };
    float img[NIMG][64];
    DdRng r;
    dd_rng_init(&r, 1, 0, 0);
    for (int i = 0; i < NIMG; i++)
        for (int j = 0; j < 64; j++) img[i][j] = (float)dd_rng_uniform(&r);
    SelScorer *s1 = sel_scorer_new(m, nn, 3, 2, K, SIDE, 1, 9), *s2 = sel_scorer_new(m, nn, 3, 2, K, SIDE, 1000, 9);
    for (int i = 0; i < NIMG; i++) {
        char key[16];
        snprintf(key, sizeof key, "r%d", i);
        CHECK(sel_scorer_add(s1, "t.tsr", 0, i / 3, key, i % 3, img[i], 1, 8, 8) == 0);
        CHECK(sel_scorer_add(s2, "t.tsr", 0, i / 3, key, i % 3, img[i], 1, 8, 8) == 0);
    }
    CHECK(sel_scorer_flush(s1) == 0 && sel_scorer_flush(s2) == 0);
    CHECK(sel_scorer_add(s1, "t.tsr", 0, 9, "bad", 0, img[0], 1, 4, 4) < 0);
    for (int c = 0; c < 3; c++) {
        SelTop *a = sel_scorer_top(s1, c), *b = sel_scorer_top(s2, c);
        sel_top_sort(a);
        sel_top_sort(b);
        CHECK(a->n == 2 && b->n == 2);
        for (int k = 0; k < a->n && k < b->n; k++) {
            /* the same bits with AVX-512F (batch-invariant evaluation, test_models); OpenBLAS's GEMMs
             * may round a batch of 3 and one of 21 differently */
            CHECK(a->e[k].src == b->e[k].src && !memcmp(a->e[k].pix, b->e[k].pix, 16 * sizeof(float)));
            if (cpu_avx512()) CHECK(a->e[k].ce == b->e[k].ce);
            else CHECK_CLOSE(a->e[k].ce, b->e[k].ce, 1e-6, 1e-6);
            /* direct: best of the K crops of that image, scored alone */
            const int64_t at = a->e[k].src * 3 + c;    /* image src of class c */
            CHECK_CLOSE(a->e[k].ce, direct_best(m, nn, img[at], 8, 8, c, a->e[k].src), 1e-6, 1e-6);
        }
    }
    sel_scorer_free(s1);
    sel_scorer_free(s2);

    /* a fixed 8x8 canvas and images of several sizes: each image's boxes are drawn on its own size */
    static const int dims[NIMG][2] = {{8, 8}, {11, 7}, {6, 13}, {9, 9}, {5, 6}, {16, 10}, {7, 5}};
    float *big[NIMG];
    SelScorer *s3 = sel_scorer_new(m, nn, 3, 2, K, SIDE, 5, 9);
    CHECK(sel_scorer_canvas(s3, 1, 8, 8) == 0);
    for (int i = 0; i < NIMG; i++) {
        big[i] = malloc((size_t)dims[i][0] * dims[i][1] * sizeof(float));
        for (int j = 0; j < dims[i][0] * dims[i][1]; j++) big[i][j] = (float)dd_rng_uniform(&r);
        char key[16];
        snprintf(key, sizeof key, "v%d", i);
        CHECK(sel_scorer_add(s3, "t.tsr", 0, i / 3, key, i % 3, big[i], 1, dims[i][0], dims[i][1]) == 0);
    }
    CHECK(sel_scorer_add(s3, "t.tsr", 0, 9, "rgb", 0, big[0], 3, 2, 2) < 0); /* channels must match the canvas */
    CHECK(sel_scorer_flush(s3) == 0);
    for (int c = 0; c < 3; c++) {
        SelTop *a = sel_scorer_top(s3, c);
        CHECK(a->n == 2);
        for (int k = 0; k < a->n; k++) {
            const int64_t at = a->e[k].src * 3 + c;
            CHECK_CLOSE(a->e[k].ce, direct_best(m, nn, big[at], dims[at][0], dims[at][1], c, a->e[k].src), 1e-6,
                        1e-6);
        }
    }
    sel_scorer_free(s3);
    for (int i = 0; i < NIMG; i++) free(big[i]);
    model_free(m);
    nn_free(nn);
}

/* patchsel's selection over an input of n records (label[p], image img[id[p]]): per class the
 * seeded subset of `want` candidates, each added with its index within the class. */
static void select_input(SelScorer *s, int n, const int *label, const int *id, float (*img)[64], int ncls,
                         int want)
{
    int64_t count[4] = {0}, pos[4][16], perm[16];
    int role[64];
    for (int p = 0; p < n; p++) pos[label[p]][count[label[p]]++] = p, role[p] = 0;
    for (int c = 0; c < ncls; c++) {
        int64_t k = sel_subset(5, c, count[c], want, perm);
        for (int64_t i = 0; i < k; i++) role[pos[c][perm[i]]] = 1;
    }
    int64_t seen[4] = {0};
    for (int p = 0; p < n; p++) {
        char key[16];
        snprintf(key, sizeof key, "r%d", id[p]);
        if (role[p]) CHECK(sel_scorer_add(s, "t.tsr", 0, seen[label[p]], key, label[p], img[id[p]], 1, 8, 8) == 0);
        seen[label[p]]++;
    }
    CHECK(sel_scorer_flush(s) == 0);
}

/* A class's selection depends only on its own records (in input order) and the seed: the same
 * with the other classes removed (a tscat --classes slice) or interleaved differently. */
static void test_class_keying(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    Model *m = model_create(nn, "convnet1:width=4", 1, 4, 8, 5);
    CHECK(m != NULL);
    if (!m) return;
    model_set_requires_grad(m, 0);
    enum { NIMG = 40, K = 3, SIDE = 4, KEEP = 3, WANT = 6 };
    float img[NIMG][64];
    DdRng r;
    dd_rng_init(&r, 2, 0, 0);
    for (int i = 0; i < NIMG; i++)
        for (int j = 0; j < 64; j++) img[i][j] = (float)dd_rng_uniform(&r);
    /* whole: image i of class i % 4, interleaved; slice: class 2's records only; reordered: class
     * 2's records in the same order, the other classes before, between and after them reversed */
    int lw[NIMG], iw[NIMG], ls[NIMG], is[NIMG], lr[NIMG], ir[NIMG], ns = 0, nr = 0;
    for (int i = 0; i < NIMG; i++) {
        lw[i] = i % 4, iw[i] = i;
        if (i % 4 == 2) ls[ns] = 2, is[ns++] = i;
    }
    for (int i = NIMG - 1, j = 0; i >= 0; i--) {
        if (i % 4 == 2) continue;
        lr[nr] = i % 4, ir[nr++] = i;
        if (nr % 3 == 0 && j < ns) lr[nr] = 2, ir[nr++] = is[j++];
        if (i == 0)
            while (j < ns) lr[nr] = 2, ir[nr++] = is[j++];
    }
    CHECK(nr == NIMG);
    SelScorer *sw = sel_scorer_new(m, nn, 4, KEEP, K, SIDE, 4 * K, 9);
    SelScorer *ss = sel_scorer_new(m, nn, 4, KEEP, K, SIDE, 2 * K, 9);
    SelScorer *sr = sel_scorer_new(m, nn, 4, KEEP, K, SIDE, 5 * K, 9);
    select_input(sw, NIMG, lw, iw, img, 4, WANT);
    select_input(ss, ns, ls, is, img, 4, WANT);
    select_input(sr, nr, lr, ir, img, 4, WANT);
    SelTop *tw = sel_scorer_top(sw, 2), *ts = sel_scorer_top(ss, 2), *tr = sel_scorer_top(sr, 2);
    sel_top_sort(tw);
    sel_top_sort(ts);
    sel_top_sort(tr);
    CHECK(tw->n == KEEP && ts->n == KEEP && tr->n == KEEP);
    for (int k = 0; k < KEEP && k < tw->n && k < ts->n && k < tr->n; k++) {
        const SelEntry *a = &tw->e[k], *b = &ts->e[k], *c = &tr->e[k];
        CHECK(a->src == b->src && !memcmp(&a->box, &b->box, sizeof a->box) &&
              !strcmp(a->key, b->key) && !memcmp(a->pix, b->pix, SIDE * SIDE * sizeof(float)));
        CHECK(a->src == c->src && !memcmp(&a->box, &c->box, sizeof a->box) &&
              !strcmp(a->key, c->key) && !memcmp(a->pix, c->pix, SIDE * SIDE * sizeof(float)));
        /* the scores: the same bits with AVX-512F; OpenBLAS may round batches of 4K, 2K and 5K apart */
        if (cpu_avx512()) CHECK(a->ce == b->ce && a->ce == c->ce);
        else {
            CHECK_CLOSE(a->ce, b->ce, 1e-6, 1e-6);
            CHECK_CLOSE(a->ce, c->ce, 1e-6, 1e-6);
        }
    }
    CHECK(sel_scorer_top(ss, 0)->n == 0 && sel_scorer_top(ss, 3)->n == 0);   /* absent classes: nothing */
    sel_scorer_free(sw);
    sel_scorer_free(ss);
    sel_scorer_free(sr);
    model_free(m);
    nn_free(nn);
}

int main(void)
{
    test_subset();
    test_boxes_canvas_ce();
    test_rank_stitch();
    test_scorer();
    test_class_keying();
    return check_done("test_select");
}

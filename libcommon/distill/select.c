/* select.c - RDED patch selection: subset, crops, canvas scoring, ranking, stitching (select.h). */
#include "libcommon/distill/select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/image/resize.h"

int64_t sel_subset(uint64_t seed, int cls, int64_t n, int64_t k, int64_t *out)
{
    if (k > n) k = n;
    int64_t *perm = dd_malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    DdRng r;
    dd_rng_init(&r, seed, AUG_STREAM_SUBSET, (uint64_t)cls);
    dd_rng_perm(&r, perm, n);
    memcpy(out, perm, (size_t)k * sizeof *out);
    free(perm);
    return k;
}

void sel_crop_boxes(uint64_t seed, int cls, int64_t idx, int H, int W, int ncrops, AugBox *out)
{
    DdRng r;
    dd_rng_init(&r, seed, AUG_STREAM_PATCHSEL, (uint64_t)cls << 32 | (uint64_t)idx);
    for (int k = 0; k < ncrops; k++) out[k] = aug_rrc(&r, H, W, 0.08, 1.0, 1.0, 1.0);
}

void sel_canvas(const float *crop, int C, int side, const float *mean, int H, int W, float *canvas)
{
    const int top = (H - side) / 2, left = (W - side) / 2;
    for (int c = 0; c < C; c++) {
        float *pl = canvas + (size_t)c * H * W;
        for (size_t i = 0; i < (size_t)H * W; i++) pl[i] = mean[c];
        for (int y = 0; y < side; y++)
            memcpy(pl + (size_t)(top + y) * W + left, crop + ((size_t)c * side + y) * side,
                   (size_t)side * sizeof *pl);
    }
}

void sel_ce(const float *logits, int n, int K, const int64_t *labels, double *ce)
{
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * K;
        double mx = l[0], s = 0;
        for (int k = 1; k < K; k++) mx = l[k] > mx ? l[k] : mx;
        for (int k = 0; k < K; k++) s += exp((double)l[k] - mx);
        ce[i] = mx + log(s) - (double)l[labels[i]];
    }
}

/* ---- ranking ---- */

/* 1 when a ranks before b. */
static int better(const SelEntry *a, const SelEntry *b)
{
    return a->ce < b->ce || (a->ce == b->ce && a->src < b->src);
}

static int cmp_entry(const void *pa, const void *pb)
{
    const SelEntry *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

void sel_top_init(SelTop *t, int keep)
{
    t->keep = keep;
    t->n = 0;
    t->e = dd_calloc((size_t)(keep > 0 ? keep : 1), sizeof *t->e);
}

int sel_top_offer(SelTop *t, const SelEntry *e)
{
    if (t->n < t->keep) {
        t->e[t->n++] = *e;
        return 1;
    }
    int worst = -1;
    for (int i = 0; i < t->n; i++)
        if (worst < 0 || better(&t->e[worst], &t->e[i])) worst = i;
    if (worst < 0 || !better(e, &t->e[worst])) {
        free(e->pix);
        return 0;
    }
    free(t->e[worst].pix);
    t->e[worst] = *e;
    return 1;
}

void sel_top_sort(SelTop *t) { qsort(t->e, (size_t)t->n, sizeof *t->e, cmp_entry); }

void sel_top_free(SelTop *t)
{
    for (int i = 0; i < t->n; i++) free(t->e[i].pix);
    free(t->e);
    t->e = NULL;
    t->n = t->keep = 0;
}

int sel_top_need(const SelTop *t, int cls, int ipc, int f)
{
    if (t->n >= ipc * f * f) return 0;
    return dd_err("class %d: %d candidate image(s), stitching %d image(s) of %dx%d cells needs %d", cls, t->n,
                  ipc, f, f, ipc * f * f);
}

void sel_stitch(const SelTop *t, int ipc, int f, int m, int C, int side, float *out)
{
    const size_t S = (size_t)f * side;
    for (int k = 0; k < f * f; k++) {
        const float *crop = t->e[k * ipc + m].pix;
        const size_t r0 = (size_t)(k / f) * side, c0 = (size_t)(k % f) * side;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < side; y++)
                memcpy(out + ((size_t)c * S + r0 + y) * S + c0, crop + ((size_t)c * side + y) * side,
                       (size_t)side * sizeof *out);
    }
}

/* ---- the scorer ---- */

typedef struct {
    int64_t src;
    int label;
    char key[SEL_KEY_MAX + 1];
    AugBox box[];
} Queued;

struct SelScorer {
    Model *m;
    Nn *nn;
    int nclasses, ncrops, side, batch;
    uint64_t seed;
    int C, H, W;                  /* canvas shape: the first image's, or sel_scorer_canvas's */
    int fixed;                    /* 1: set by sel_scorer_canvas, images of any size */
    SelTop *top;                  /* [nclasses] */
    int nq;                       /* queued images (nq * ncrops canvases) */
    Queued **q;                   /* [batch / ncrops] */
    float *crops, *canvas, *logits;
    int64_t *labels;
    double *ce;
};

SelScorer *sel_scorer_new(Model *m, Nn *nn, int nclasses, int keep, int ncrops, int side, int batch,
                          uint64_t seed)
{
    SelScorer *s = dd_calloc(1, sizeof *s);
    s->m = m;
    s->nn = nn;
    s->nclasses = nclasses;
    s->ncrops = ncrops;
    s->side = side;
    s->batch = batch < ncrops ? ncrops : batch;
    s->seed = seed;
    s->top = dd_calloc((size_t)nclasses, sizeof *s->top);
    for (int c = 0; c < nclasses; c++) sel_top_init(&s->top[c], keep);
    int per = s->batch / ncrops;
    s->q = dd_calloc((size_t)per, sizeof *s->q);
    for (int i = 0; i < per; i++) s->q[i] = dd_malloc(sizeof(Queued) + (size_t)ncrops * sizeof(AugBox));
    s->labels = dd_malloc((size_t)s->batch * sizeof *s->labels);
    s->ce = dd_malloc((size_t)s->batch * sizeof *s->ce);
    s->logits = dd_malloc((size_t)s->batch * (size_t)m->num_classes * sizeof *s->logits);
    return s;
}

int sel_scorer_canvas(SelScorer *s, int C, int H, int W)
{
    if (s->canvas) return dd_err("the canvas is set by the first image");
    if (s->side > H || s->side > W) return dd_err("crop side %d exceeds the %dx%d canvas", s->side, H, W);
    if (model_check_input(s->m, C, H, W) < 0) return -1;
    s->C = C;
    s->H = H;
    s->W = W;
    s->fixed = 1;
    s->canvas = dd_malloc((size_t)s->batch * C * H * W * sizeof *s->canvas);
    s->crops = dd_malloc((size_t)s->batch * C * s->side * s->side * sizeof *s->crops);
    return 0;
}

int sel_scorer_add(SelScorer *s, int64_t src, const char *key, int label, const float *img, int C, int H,
                   int W)
{
    if (!s->canvas) {
        if (sel_scorer_canvas(s, C, H, W) < 0) return -1;
        s->fixed = 0;
    } else if (s->fixed ? C != s->C : C != s->C || H != s->H || W != s->W) {
        if (s->fixed) return dd_err("image [%d,%d,%d]: %d channels, the canvas has %d", C, H, W, C, s->C);
        return dd_err("image [%d,%d,%d] differs from the first candidate's [%d,%d,%d]", C, H, W, s->C, s->H,
                      s->W);
    }
    if (H < 1 || W < 1) return dd_err("image [%d,%d,%d] is empty", C, H, W);
    if (label < 0 || label >= s->nclasses) return dd_err("label %d out of range", label);
    if (src < 0 || src > (int64_t)UINT32_MAX)
        return dd_err("index %lld within class %d out of range", (long long)src, label);
    if ((s->nq + 1) * s->ncrops > s->batch && sel_scorer_flush(s) < 0) return -1;
    Queued *q = s->q[s->nq];
    q->src = src;
    q->label = label;
    snprintf(q->key, sizeof q->key, "%s", key);
    sel_crop_boxes(s->seed, label, src, H, W, s->ncrops, q->box);
    const size_t csz = (size_t)C * s->side * s->side, isz = (size_t)C * s->H * s->W;
    for (int k = 0; k < s->ncrops; k++) {
        size_t j = (size_t)s->nq * s->ncrops + k;
        img_crop_resize(img, C, H, W, q->box[k].top, q->box[k].left, q->box[k].h, q->box[k].w,
                        s->crops + j * csz, s->side, s->side);
        sel_canvas(s->crops + j * csz, C, s->side, s->m->mean, s->H, s->W, s->canvas + j * isz);
        s->labels[j] = label;
    }
    s->nq++;
    return 0;
}

int sel_scorer_flush(SelScorer *s)
{
    if (!s->nq) return 0;
    const int n = s->nq * s->ncrops, K = s->m->num_classes;
    int old = nn_set_grad(s->nn, 0);
    Tensor t = {.dtype = DD_F32, .device = DD_CPU, .ndim = 4, .shape = {n, s->C, s->H, s->W}, .data = s->canvas};
    NnVar *x = nn_input(s->nn, &t, 0);
    NnVar *logits = model_forward(s->m, s->nn, x, 0);
    nn_var_download(s->nn, logits, s->logits);
    nn_reset(s->nn);
    nn_set_grad(s->nn, old);
    sel_ce(s->logits, n, K, s->labels, s->ce);
    const size_t csz = (size_t)s->C * s->side * s->side;
    for (int i = 0; i < s->nq; i++) {
        int best = 0;
        const double *ce = s->ce + (size_t)i * s->ncrops;
        for (int k = 1; k < s->ncrops; k++)
            if (ce[k] < ce[best]) best = k;
        if (!isfinite(ce[best])) return dd_err("record %s: teacher score is not finite", s->q[i]->key);
        SelEntry e = {.ce = ce[best], .src = s->q[i]->src, .box = s->q[i]->box[best]};
        memcpy(e.key, s->q[i]->key, sizeof e.key);
        e.pix = dd_malloc(csz * sizeof *e.pix);
        memcpy(e.pix, s->crops + ((size_t)i * s->ncrops + best) * csz, csz * sizeof *e.pix);
        sel_top_offer(&s->top[s->q[i]->label], &e);
    }
    s->nq = 0;
    return 0;
}

SelTop *sel_scorer_top(SelScorer *s, int c) { return &s->top[c]; }

void sel_scorer_free(SelScorer *s)
{
    if (!s) return;
    for (int c = 0; c < s->nclasses; c++) sel_top_free(&s->top[c]);
    for (int i = 0; i < s->batch / s->ncrops; i++) free(s->q[i]);
    free(s->q);
    free(s->top);
    free(s->labels);
    free(s->ce);
    free(s->logits);
    free(s->canvas);
    free(s->crops);
    free(s);
}

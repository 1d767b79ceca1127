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
    const char *file; /* where the record came from, for messages: its input and index there */
    int64_t at;
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

int sel_scorer_add(SelScorer *s, const char *file, int64_t at, int64_t src, const char *key, int label,
                   const float *img, int C, int H, int W)
{
    int bad = 0;
    if (!s->canvas) {
        bad = sel_scorer_canvas(s, C, H, W) < 0;
        s->fixed = 0;
    } else if (s->fixed ? C != s->C : C != s->C || H != s->H || W != s->W) {
        if (s->fixed) bad = dd_err("image [%d,%d,%d]: %d channels, the canvas has %d", C, H, W, C, s->C);
        else bad = dd_err("image [%d,%d,%d] differs from the first candidate's [%d,%d,%d]", C, H, W, s->C, s->H, s->W);
    } else if (H < 1 || W < 1) {
        bad = dd_err("image [%d,%d,%d] is empty", C, H, W);
    } else if (label < 0 || label >= s->nclasses) {
        bad = dd_err("label %d out of range", label);
    } else if (src < 0 || src > (int64_t)UINT32_MAX) {
        bad = dd_err("index %lld within class %d out of range", (long long)src, label);
    }
    if (bad) return dd_err_prefix("%s: record %lld (%s)", file, (long long)at, key);
    if ((s->nq + 1) * s->ncrops > s->batch && sel_scorer_flush(s) < 0) return -1;
    Queued *q = s->q[s->nq];
    q->src = src;
    q->file = file;
    q->at = at;
    q->label = label;
    snprintf(q->key, sizeof q->key, "%s", key);
    sel_crop_boxes(s->seed, label, src, H, W, s->ncrops, q->box);
    const size_t csz = (size_t)C * s->side * s->side, isz = (size_t)C * s->H * s->W;
    for (int k = 0; k < s->ncrops; k++) {
        size_t j = (size_t)s->nq * s->ncrops + k;
        /* antialiased, as RDED's RandomResizedCrop(antialias=True) on the ToTensor'd image: crops
         * larger than side are shrunk (224 -> 112 at f = 2); the same pixels are scored and kept */
        img_crop_resize_aa(img, C, H, W, q->box[k].top, q->box[k].left, q->box[k].h, q->box[k].w,
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
        if (!isfinite(ce[best]))
            return dd_err("%s: record %lld (%s): the teacher's scores of its crops are not finite (its weights?)",
                          s->q[i]->file, (long long)s->q[i]->at, s->q[i]->key);
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

/* ---- over a stream ---- */

int sel_plan_scan(TsInput *in, SelPlan *p)
{
    *p = (SelPlan){.ncls = ts_header_nclasses(ts_input_header(in))};
    p->count = dd_calloc((size_t)p->ncls, sizeof *p->count);
    int64_t cap = 0;
    int r;
    TsRecord rec;
    ts_record_init(&rec);
    while ((r = ts_input_next(in, &rec)) == 1) {
        const int64_t y = ts_record_label(&rec);
        const Tensor *im = ts_record_cget(&rec, "image");
        const char *name = ts_input_name(in);
        const long long at = (long long)ts_input_index(in);
        if (y < 0) r = dd_err_prefix("%s: record %lld (%s)", name, at, rec.key);
        else if (y >= p->ncls)
            r = dd_err("%s: record %lld (%s): label %lld outside the %d classes", name, at, rec.key, (long long)y, p->ncls);
        else if (!im || im->ndim != 3) r = dd_err("%s: record %lld (%s): no [C,H,W] image", name, at, rec.key);
        else if (p->n > 0 && im->shape[0] != p->C)
            r = dd_err("%s: record %lld (%s): %lld channels, the first record's image has %d", name, at, rec.key,
                       (long long)im->shape[0], p->C);
        if (r < 0) break;
        if (p->n == cap) p->label = dd_realloc(p->label, (size_t)(cap = cap ? 2 * cap : 4096) * sizeof *p->label);
        p->label[p->n++] = (int)y;
        p->count[y]++;
        if (p->n == 1) p->C = (int)im->shape[0], p->H = (int)im->shape[1], p->W = (int)im->shape[2];
        else p->varied |= im->shape[1] != p->H || im->shape[2] != p->W;
    }
    ts_record_free(&rec);
    if (r < 0) sel_plan_free(p);
    return r < 0 ? -1 : 0;
}

void sel_plan_subsets(SelPlan *p, uint64_t seed, int64_t want)
{
    const int64_t n = p->n;
    p->role = dd_malloc((size_t)(n ? n : 1) * sizeof *p->role);
    p->within = dd_malloc((size_t)(n ? n : 1) * sizeof *p->within);
    p->last = dd_malloc((size_t)(p->ncls ? p->ncls : 1) * sizeof *p->last);
    /* pos[c]: the record indices of class c in input order */
    int64_t **pos = dd_calloc((size_t)(p->ncls ? p->ncls : 1), sizeof *pos);
    int64_t *fill = dd_calloc((size_t)(p->ncls ? p->ncls : 1), sizeof *fill);
    for (int c = 0; c < p->ncls; c++) pos[c] = dd_malloc((size_t)(p->count[c] ? p->count[c] : 1) * sizeof **pos);
    for (int64_t i = 0; i < n; i++) {
        const int c = p->label[i];
        p->role[i] = -1;
        p->within[i] = fill[c];
        pos[c][fill[c]++] = i;
    }
    int64_t *perm = dd_malloc((size_t)want * sizeof *perm);
    for (int c = 0; c < p->ncls; c++) {
        const int64_t k = sel_subset(seed, c, p->count[c], want, perm);
        p->last[c] = -1;
        for (int64_t j = 0; j < k; j++) {
            const int64_t i = pos[c][perm[j]];
            p->role[i] = j;
            p->last[c] = i > p->last[c] ? i : p->last[c];
        }
        free(pos[c]);
    }
    free(perm);
    free(pos);
    free(fill);
}

void sel_plan_free(SelPlan *p)
{
    free(p->label);
    free(p->count);
    free(p->role);
    free(p->within);
    free(p->last);
    *p = (SelPlan){0};
}

void sel_top_offer_whole(SelTop *t, int64_t rank, int64_t src, const char *key, Tensor *im, int res)
{
    const int C = (int)im->shape[0], h = (int)im->shape[1], w = (int)im->shape[2];
    SelEntry e = {.ce = (double)rank, .src = src, .box = {0, 0, h, w}, .pix = im->data};
    if (res > 0) {
        e.pix = dd_malloc((size_t)C * res * res * sizeof *e.pix);
        img_resize_short_center_crop(im->data, C, h, w, res, res, e.pix);
    } else {
        im->owns = 0;
    }
    snprintf(e.key, sizeof e.key, "%s", key);
    sel_top_offer(t, &e);
}

/* Record m of class cls for IPC ipc from its sorted list t (see sel_write_class). */
static void class_record(TsRecord *rec, const SelTop *t, int cls, int ipc, int m, const SelLayout *l)
{
    const int f = l->f;
    snprintf(rec->key, sizeof rec->key, "c%04d_i%04d", cls, m);
    Tensor im;
    if (l->whole) {
        im = tensor_newv(DD_F32, 3, (int64_t)l->C, (int64_t)l->h, (int64_t)l->w);
        memcpy(im.data, t->e[m].pix, (size_t)l->C * l->h * l->w * sizeof(float));
    } else {
        im = tensor_newv(DD_F32, 3, (int64_t)l->C, (int64_t)f * l->side, (int64_t)f * l->side);
        sel_stitch(t, ipc, f, m, l->C, l->side, im.data);
    }
    ts_record_set(rec, "image", im);
    ts_record_set(rec, "label", tensor_scalar_i64(cls));
    json_t *cells = json_array();
    for (int cell = 0; cell < f * f; cell++) {
        const SelEntry *e = &t->e[cell * ipc + m];
        json_t *j = json_pack("{s:s,s:[i,i,i,i],s:i}", "src", e->key, "box", e->box.top, e->box.left, e->box.h,
                              e->box.w, "rank", cell * ipc + m);
        if (!l->whole) json_object_set_new(j, "score", json_real(-e->ce));
        json_array_append_new(cells, j);
    }
    json_t *meta = json_pack("{s:o}", "cells", cells);
    char *s = json_dumps(meta, JSON_COMPACT);
    ts_record_set_meta(rec, s);
    free(s);
    json_decref(meta);
}

int sel_write_class(TsWriter *const *w, const int *ipc, int nipc, SelTop *t, int cls, const SelLayout *l)
{
    int rc = 0;
    sel_top_sort(t);
    for (int k = 0; k < nipc && rc == 0; k++) {
        /* sel_stitch's precondition: a caller that checked its classes' counts ensures it (each
         * candidate gives one entry), so this guards the reads */
        rc = sel_top_need(t, cls, ipc[k], l->f);
        for (int m = 0; m < ipc[k] && rc == 0; m++) {
            TsRecord rec;
            ts_record_init(&rec);
            class_record(&rec, t, cls, ipc[k], m, l);
            rc = ts_writer_put(w[k], &rec);
            ts_record_free(&rec);
        }
    }
    sel_top_free(t);
    return rc;
}

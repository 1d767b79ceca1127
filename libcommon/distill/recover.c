/* recover.c - the recover loop: schedule, stages, loss, Adam, clamp, ARC merges (recover.h). */
#include "libcommon/distill/recover.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/distill/augment.h"
#include "libcommon/distill/merge.h"
#include "libcommon/image/resize.h"
#include "libcommon/optim/optim.h"

RecConf rec_conf_default(void)
{
    return (RecConf){.alpha = 0.5, .lr = 0.25, .r_bn = 0.01, .first_bn_mult = 10.0, .aug = REC_AUG_FULL, .jitter = 4,
                     .metrics_every = 1};
}

int rec_schedule_fused(RecConf *c, int64_t iters, int arc, const int *sizes)
{
    if (arc < 0 || arc + 1 > REC_MAX_STAGES || arc + 1 > iters)
        return dd_err("%d merges need %d stages of at least one step: %lld steps, at most %d stages", arc, arc + 1,
                      (long long)iters, REC_MAX_STAGES);
    c->total = iters;
    c->nstages = arc + 1;
    c->merge = arc > 0;
    for (int s = 0; s <= arc; s++) {
        c->stage[s].start = s * iters / (arc + 1);
        c->stage[s].end = (s + 1) * iters / (arc + 1);
        c->stage[s].h = c->stage[s].w = sizes ? sizes[s] : 0;
    }
    return 0;
}

int rec_schedule_piece(RecConf *c, int64_t start, int64_t end, int64_t total)
{
    if (start < 0 || end <= start || end > total)
        return dd_err("steps %lld:%lld:%lld: want 0 <= START < END <= TOTAL", (long long)start, (long long)end,
                      (long long)total);
    c->total = total;
    c->nstages = 1;
    c->merge = 0;
    c->stage[0] = (RecStage){start, end, 0, 0};
    return 0;
}

void rec_to_norm(const float *x, float *xn, int64_t n, int C, int64_t hw, const float *mean, const float *std)
{
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const float m = mean[c], s = std[c];
            const float *p = x + (i * C + c) * hw;
            float *q = xn + (i * C + c) * hw;
            for (int64_t j = 0; j < hw; j++) q[j] = (p[j] - m) / s;
        }
}

void rec_to_pix(const float *xn, float *x, int64_t n, int C, int64_t hw, const float *mean, const float *std)
{
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const float m = mean[c], s = std[c];
            const float *p = xn + (i * C + c) * hw;
            float *q = x + (i * C + c) * hw;
            for (int64_t j = 0; j < hw; j++) {
                float v = p[j] * s + m;
                q[j] = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            }
        }
}

NnVar *rec_loss(Nn *nn, Model *t, NnVar *xa, const Tensor *labels, double r_bn, double first_bn_mult,
                float *ce, float *bn)
{
    nn_bn_collect(nn, 1);
    NnVar *logits = t->net(t, nn, xa, 0);
    NnVar *l_ce = nn_cross_entropy(nn, logits, labels, 0.0f), *l_bn = NULL;
    for (int i = 0; i < nn_bn_stat_count(nn); i++) {
        NnVar *s = nn_scale(nn, nn_bn_stat(nn, i), i == 0 ? (float)first_bn_mult : 1.0f);
        l_bn = l_bn ? nn_add(nn, l_bn, s) : s;
    }
    nn_bn_collect(nn, 0);
    *ce = nn_item(nn, l_ce);
    *bn = l_bn ? nn_item(nn, l_bn) : 0.0f;
    return l_bn ? nn_add(nn, l_ce, nn_scale(nn, l_bn, (float)r_bn)) : l_ce;
}

/* Per-channel clamp of xn [n,C,hw] to [lo[c], hi[c]] in place: here on the CPU, else the
 * device's kernel (the same comparisons). */
static int clamp_channels(Nn *nn, NnParam *p, int C, const float *lo, const float *hi)
{
    const Tensor *t = &p->var.v;
    const int64_t n = t->shape[0], hw = t->shape[2] * t->shape[3];
    if (nn_device(nn) != DD_CPU) return nn_optim_clamp_channels(nn, n, C, hw, lo, hi, t->data);
    float *x = t->data;
    for (int64_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            float *q = x + (i * C + c) * hw;
            for (int64_t j = 0; j < hw; j++) q[j] = q[j] < lo[c] ? lo[c] : q[j] > hi[c] ? hi[c] : q[j];
        }
    return 0;
}

static void metric_num(FILE *f, const char *name, double v)
{
    if (isfinite(v)) fprintf(f, ",\"%s\":%.9g", name, v);
    else fprintf(f, ",\"%s\":null", name);
}

/* Applies a step's draw to xa per c->aug, consuming each view once read (none is read by a
 * backward; nn_done leaves the pixels' param alone) and, with metrics on, writes the draw as
 * fields of the step's line. */
static NnVar *augment(Nn *nn, const RecConf *c, const AugRecover *a, NnVar *xa, int H, int W, int log)
{
    if (c->aug == REC_AUG_FULL) {
        xa = nn_done_with(nn, nn_crop_resize(nn, xa, a->box.top, a->box.left, a->box.h, a->box.w, H, W), xa);
        if (a->flip) xa = nn_done_with(nn, nn_flip_w(nn, xa), xa);
        if (log)
            fprintf(c->metrics, ",\"crop\":[%d,%d,%d,%d],\"flip\":%d", a->box.top, a->box.left, a->box.h,
                    a->box.w, a->flip);
    }
    if (c->aug != REC_AUG_NONE) {
        xa = nn_done_with(nn, nn_roll(nn, xa, a->roll_h, a->roll_w), xa);
        if (log) fprintf(c->metrics, ",\"roll\":[%d,%d]", a->roll_h, a->roll_w);
    }
    return xa;
}

/* One optimisation step of p (the pixels, or a compensator) on the view x of the batch (an op
 * output of this step, or p's own var; consumed): augmentation keyed by `key`, the loss, backward
 * (scaled in fp16), Adam, the clamp to [lo, hi] per channel when lo != NULL, the metrics line
 * (`head`: its first fields) and the progress. The loss is teacher ts[0]'s when w is NULL (nt 1),
 * else sum_k w[k] * loss_k over ts[0..nt), each teacher fed the same draw applied to x afresh (x is
 * then p's own var, which the ops leave alone). 0, or -1 with dd_err. */
static int rec_step(Nn *nn, Model *const *ts, int nt, const double *w, const RecConf *c, const RecBatch *b,
                    const char *head, int64_t t, int64_t key, int log, NnVar *x, NnParam *p, const Tensor *labels,
                    const float *lo, const float *hi, OptimScaler *sc)
{
    const double lr = optim_recover_lr(c->lr, t, c->total);
    if (log) fprintf(c->metrics, "{%s,\"step\":%lld", head, (long long)t);
    AugRecover a;
    if (c->aug != REC_AUG_NONE) a = aug_recover_draw(c->seed, key, b->H, b->W, c->jitter);
    float ce = 0.0f, bn = 0.0f, ces[REC_MAX_TEACHERS], bns[REC_MAX_TEACHERS];
    NnVar *loss = NULL;
    for (int k = 0; k < nt; k++) {
        NnVar *xv = c->aug != REC_AUG_NONE ? augment(nn, c, &a, x, b->H, b->W, log && k == 0) : x;
        NnVar *l = rec_loss(nn, ts[k], xv, labels, c->r_bn, c->first_bn_mult, &ces[k], &bns[k]);
        if (!w) {
            ce = ces[k], bn = bns[k];
        } else {
            l = nn_scale(nn, l, (float)w[k]);
            ce += (float)w[k] * ces[k];
            bn += (float)w[k] * bns[k];
        }
        loss = loss ? nn_add(nn, loss, l) : l;
    }
    const float lv = nn_item(nn, loss);
    int rc = 0;
    if (!isfinite(lv)) {
        rc = dd_err("%s%sbatch %lld, step %lld: loss is not finite (ce %g, bn %g)", c->input ? c->input : "",
                    c->input ? ": " : "", (long long)b->id, (long long)t, ce, bn);
    } else {
        /* fp16: backward from the scaled loss, a step whose gradient overflowed skipped (the
         * reference's GradScaler) */
        nn_backward_seed(nn, loss, sc ? sc->scale : 1.0f);
        OptimConf oc = optim_adam(lr, 0.5, 0.9, 1e-8, 0.0);
        int take = sc ? optim_unscale(nn, sc, &p, 1) : 1;
        if (take < 0 ||
            (take && (optim_step(nn, &oc, &p, 1) < 0 || (lo && clamp_channels(nn, p, b->C, lo, hi) < 0))))
            rc = -1;
    }
    nn_reset(nn);
    if (log) {
        metric_num(c->metrics, "lr", lr);
        metric_num(c->metrics, "ce", ce);
        metric_num(c->metrics, "bn", bn);
        metric_num(c->metrics, "loss", lv);
        if (w) { /* the committee: each teacher's own terms, unweighted, in -w order */
            for (int f = 0; f < 2; f++) {
                fprintf(c->metrics, ",\"%s\":[", f ? "bn_t" : "ce_t");
                for (int k = 0; k < nt; k++) {
                    const float v = f ? bns[k] : ces[k];
                    if (isfinite(v)) fprintf(c->metrics, "%s%.9g", k ? "," : "", v);
                    else fprintf(c->metrics, "%snull", k ? "," : "");
                }
                fputc(']', c->metrics);
            }
        }
        if (sc) { /* fp16: the loss scale after this step, and the steps skipped so far */
            metric_num(c->metrics, "scale", sc->scale);
            fprintf(c->metrics, ",\"skipped\":%lld", (long long)sc->skipped);
        }
        fputs("}\n", c->metrics);
    }
    if (c->progress) dd_progress_update(c->progress, c->progress->done + 1);
    return rc;
}

/* Whether step t of stage st writes a metrics line. */
static int logged(const RecConf *c, const RecStage *st, int64_t t)
{
    return c->metrics && ((t - st->start) % c->metrics_every == 0 || t == st->end - 1);
}

/* One stage: Adam (fresh: a new param has no state) on xn [n,C,H,W] for steps [st->start, st->end). */
static int run_stage(Nn *nn, Model **teachers, int M, const RecConf *c, const RecBatch *b, int s, float *xn,
                     const Tensor *labels, const float *lo, const float *hi, OptimScaler *sc)
{
    const RecStage *st = &c->stage[s];
    int64_t shape[4] = {b->n, b->C, b->H, b->W};
    NnParam *xp = nn_param_new(nn, "x", NN_INPUT, 4, shape);
    xp->var.requires_grad = 1;
    nn_var_upload(nn, &xp->var, xn);
    char head[64];
    snprintf(head, sizeof head, "\"batch\":%lld,\"stage\":%d", (long long)b->id, s);
    int rc = 0;
    for (int64_t t = st->start; t < st->end && rc == 0; t++)
        rc = rec_step(nn, c->committee ? teachers : &teachers[t % M], c->committee ? M : 1, c->committee, c, b,
                      head, t, (int64_t)((uint64_t)b->id << 32 | (uint64_t)t), logged(c, st, t), &xp->var, xp,
                      labels, lo, hi, sc);
    nn_var_download(nn, &xp->var, xn);
    nn_param_free(nn, xp);
    return rc;
}

int rec_run(Nn *nn, Model **teachers, int M, const RecConf *c, RecBatch *b)
{
    const Model *t0 = teachers[0];
    for (int i = 1; i < M; i++)
        if (!model_same_norm(teachers[i], t0))
            return dd_err("teacher %d (%s) normalizes differently from teacher 0 (%s)", i, teachers[i]->arch,
                          t0->arch);
    if (b->C != t0->in_channels) return dd_err("images have %d channels, the teacher takes %d", b->C, t0->in_channels);
    if (c->committee && M > REC_MAX_TEACHERS)
        return dd_err("a committee of %d teachers: at most %d", M, REC_MAX_TEACHERS);
    if (c->nstages > 1 && c->merge && !b->P) return dd_err("merges need the initial patches");
    const int C = b->C;
    float lo[C], hi[C];
    for (int ch = 0; ch < C; ch++) {
        lo[ch] = (float)(-(double)t0->mean[ch] / t0->std[ch]);
        hi[ch] = (float)((1.0 - t0->mean[ch]) / t0->std[ch]);
    }
    Tensor labels = tensor_newv(DD_I64, 1, (int64_t)b->n);
    memcpy(labels.data, b->labels, (size_t)b->n * sizeof *b->labels);
    float *xn = NULL;
    int rc = 0;
    OptimScaler sc = optim_scaler_new(), *scp = nn_precision(nn) == NN_FP16 ? &sc : NULL;
    for (int s = 0; s < c->nstages && rc == 0; s++) {
        const RecStage *st = &c->stage[s];
        const int H = st->h ? st->h : b->H, W = st->w ? st->w : b->W;
        const size_t img = (size_t)C * H * W;
        if (s == 0 && b->xn0) {
            if (H != b->H || W != b->W) {
                rc = dd_err("normalized start is %dx%d, the first stage %dx%d", b->H, b->W, H, W);
                break;
            }
        } else if (H != b->H || W != b->W) {
            float *nx = dd_malloc((size_t)b->n * img * sizeof *nx);
            for (int i = 0; i < b->n; i++)
                img_resize_bilinear(b->x + (size_t)i * C * b->H * b->W, C, b->H, b->W, nx + i * img, H, W);
            free(b->x);
            b->x = nx;
            b->H = H;
            b->W = W;
        }
        for (int k = 0; k < M && rc == 0; k++)
            if (model_check_input(teachers[k], C, H, W) < 0) rc = dd_err_prefix("stage %d, teacher %d", s, k);
        if (rc) break;
        if (s > 0 && c->merge)
            for (int i = 0; i < b->n; i++) arc_merge(b->x + i * img, C, H, W, b->P[i], b->PH, b->PW, c->alpha);
        xn = dd_realloc(xn, (size_t)b->n * img * sizeof *xn);
        if (s == 0 && b->xn0) memcpy(xn, b->xn0, (size_t)b->n * img * sizeof *xn);
        else rec_to_norm(b->x, xn, b->n, C, (int64_t)H * W, t0->mean, t0->std);
        rc = run_stage(nn, teachers, M, c, b, s, xn, &labels, lo, hi, scp);
        if (!b->x) b->x = dd_malloc((size_t)b->n * img * sizeof *b->x);
        rec_to_pix(xn, b->x, b->n, C, (int64_t)H * W, t0->mean, t0->std);
    }
    free(xn);
    tensor_free(&labels);
    return rc;
}

int rec_ufc(Nn *nn, Model *t, int m, const RecConf *c, const RecBatch *b, float *u)
{
    const RecStage *st = &c->stage[0];
    if (m < 0 || m >= REC_UFC_MAX) return dd_err("compensator of teacher %d: at most %d teachers", m, REC_UFC_MAX);
    if (c->nstages != 1 || c->merge || st->h || st->w)
        return dd_err("a compensator is one stage at the input size, without merges");
    if (c->committee) return dd_err("a compensator is one teacher's: no committee");
    if (b->C != t->in_channels) return dd_err("images have %d channels, the teacher takes %d", b->C, t->in_channels);
    if (model_check_input(t, b->C, b->H, b->W) < 0) return -1;
    const int C = b->C;
    const int64_t hw = (int64_t)b->H * b->W;
    float *xn = dd_malloc((size_t)b->n * C * hw * sizeof *xn);
    rec_to_norm(b->x, xn, b->n, C, hw, t->mean, t->std);
    NnParam *base = nn_param_new(nn, "ufc.images", NN_BUFFER, 4, (int64_t[]){b->n, C, b->H, b->W});
    nn_var_upload(nn, &base->var, xn);
    free(xn);
    NnParam *up = nn_param_new(nn, "ufc", NN_INPUT, 4, (int64_t[]){1, C, b->H, b->W});
    up->var.requires_grad = 1;
    Tensor labels = tensor_newv(DD_I64, 1, (int64_t)b->n);
    memcpy(labels.data, b->labels, (size_t)b->n * sizeof *b->labels);
    OptimScaler sc = optim_scaler_new(), *scp = nn_precision(nn) == NN_FP16 ? &sc : NULL;
    char head[64];
    snprintf(head, sizeof head, "\"batch\":%lld,\"ufc\":%d", (long long)b->id, m);
    int rc = 0;
    for (int64_t k = st->start; k < st->end && rc == 0; k++) {
        /* x_i + u for every image (u broadcast over the batch; its gradient sums theirs) */
        NnVar *x = nn_add(nn, &base->var, &up->var);
        const uint64_t key = ((uint64_t)b->id * REC_UFC_MAX + (uint64_t)m) << 32 | (uint64_t)k;
        rc = rec_step(nn, &t, 1, NULL, c, b, head, k, (int64_t)key, logged(c, st, k), x, up, &labels, NULL, NULL,
                      scp);
    }
    nn_var_download(nn, &up->var, u);
    nn_param_free(nn, up);
    nn_param_free(nn, base);
    tensor_free(&labels);
    return rc;
}

void rec_ufc_apply(const float *x, const float *u, float *out, int64_t n, int C, int64_t hw, const float *mean,
                   const float *std)
{
    rec_to_norm(x, out, n, C, hw, mean, std);
    for (int64_t i = 0; i < n; i++) {
        float *q = out + i * C * hw;
        for (int64_t j = 0; j < C * hw; j++) q[j] += u[j];
    }
    rec_to_pix(out, out, n, C, hw, mean, std);
}

int64_t rec_plan(const int64_t *labels, int64_t n, int ncls, int B, int64_t **order, int64_t **start,
                 int64_t **id)
{
    const int64_t per = ((int64_t)ncls + B - 1) / B;   /* batch ids per ipc index */
    int64_t *ipc = dd_malloc((size_t)(n ? n : 1) * sizeof *ipc), *seen = dd_calloc((size_t)ncls, sizeof *seen);
    int64_t maxipc = 0, nb = 0, k = 0;
    for (int64_t i = 0; i < n; i++) {
        ipc[i] = seen[labels[i]]++;
        maxipc = seen[labels[i]] > maxipc ? seen[labels[i]] : maxipc;
    }
    /* at[c]: the record of class c with the current ipc index, -1 if none */
    int64_t *at = dd_malloc((size_t)ncls * sizeof *at);
    *order = dd_malloc((size_t)(n ? n : 1) * sizeof **order);
    *start = dd_malloc((size_t)(n + 1) * sizeof **start);
    if (id) *id = dd_malloc((size_t)(n ? n : 1) * sizeof **id);
    for (int64_t i = 0; i < maxipc; i++) {
        for (int c = 0; c < ncls; c++) at[c] = -1;
        for (int64_t r = 0; r < n; r++)
            if (ipc[r] == i) at[labels[r]] = r;
        int inb = 0;
        for (int c = 0; c < ncls; c++) {
            if (at[c] < 0) continue;
            if (inb == 0) {
                if (id) (*id)[nb] = i * per + c / B;
                (*start)[nb++] = k;
            }
            (*order)[k++] = at[c];
            inb = (inb + 1) % B;
        }
    }
    (*start)[nb] = k;
    free(ipc);
    free(seen);
    free(at);
    return nb;
}

void rec_noise(uint64_t seed, int cls, int i, float *xn, size_t len)
{
    DdRng r;
    dd_rng_init(&r, seed, AUG_STREAM_INIT, (uint64_t)cls << 32 | (uint64_t)i);
    for (size_t j = 0; j < len; j++) xn[j] = (float)dd_rng_normal(&r);
}

/* ---- over a stream's records ---- */

/* Checks a record's label and image (shape fixed by the first record) and stores the image as F32. */
static int take_image(TsRecord *rec, int ncls, int first, int *C, int *H, int *W)
{
    Tensor im;
    int64_t y = ts_record_label(rec);
    if (y < 0) return -1;
    if (y >= ncls) return dd_err("label %lld outside the %d classes", (long long)y, ncls);
    if (ts_record_image_f32(rec, &im) < 0) return -1;
    int bad = im.ndim != 3 || (!first && (im.shape[0] != *C || im.shape[1] != *H || im.shape[2] != *W));
    if (bad) { /* described as the record holds it (U8 stays U8), not as converted */
        char d[128];
        tensor_describe(ts_record_cget(rec, "image"), d, sizeof d);
        tensor_free(&im);
        return first ? dd_err("image %s is not [C,H,W]", d)
                     : dd_err("image %s differs from the first record's [%d,%d,%d] (one size per stream: "
                              "resample --size S makes one)", d, *C, *H, *W);
    }
    if (ts_image_finite(&im) < 0) {
        tensor_free(&im);
        return -1;
    }
    *C = (int)im.shape[0], *H = (int)im.shape[1], *W = (int)im.shape[2];
    ts_record_set(rec, "image", im);
    return 0;
}

int rec_set_read(TsInput *in, RecSet *s)
{
    *s = (RecSet){0};
    const int ncls = ts_header_nclasses(ts_input_header(in));
    int64_t cap = 64;
    int r;
    s->recs = dd_malloc((size_t)cap * sizeof *s->recs);
    for (;; s->n++) {
        if (s->n == cap) s->recs = dd_realloc(s->recs, (size_t)(cap *= 2) * sizeof *s->recs);
        TsRecord *rec = &s->recs[s->n];
        ts_record_init(rec);
        if ((r = ts_input_next(in, rec)) != 1) {
            ts_record_free(rec);
            break;
        }
        if ((r = take_image(rec, ncls, s->n == 0, &s->C, &s->H, &s->W)) < 0) {
            dd_err_prefix("%s: record %lld (%s)", ts_input_name(in), (long long)ts_input_index(in), rec->key);
            s->n++;
            break;
        }
    }
    if (r == 0 && s->n == 0) r = dd_err("%s: no records", ts_input_name(in));
    if (r < 0) rec_set_free(s);
    return r < 0 ? -1 : 0;
}

int rec_set_noise(RecSet *s, const Model *m, const char *wname, int ipc, int side, uint64_t seed, TsHeader **h)
{
    *s = (RecSet){0};
    if (!m->nclass_names) return dd_err("%s: no class list in the weights' metadata", wname);
    *h = ts_header_new(m->nclass_names, (const char *const *)m->class_names);
    s->n = (int64_t)m->nclass_names * ipc;
    s->C = m->in_channels, s->H = s->W = side;
    const size_t img = (size_t)s->C * side * side;
    s->recs = dd_malloc((size_t)s->n * sizeof *s->recs);
    s->xn0 = dd_malloc((size_t)s->n * img * sizeof *s->xn0);
    for (int64_t k = 0; k < s->n; k++) {
        int cls = (int)(k / ipc), i = (int)(k % ipc);
        ts_record_init(&s->recs[k]);
        snprintf(s->recs[k].key, sizeof s->recs[k].key, "c%04d_i%04d", cls, i);
        ts_record_set(&s->recs[k], "label", tensor_scalar_i64(cls));
        rec_noise(seed, cls, i, s->xn0 + (size_t)k * img, img);
    }
    return 0;
}

static int keycmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int rec_set_ufc(RecSet *s, int M)
{
    const int64_t n = s->n;
    s->M = M;
    s->urecs = dd_calloc((size_t)(n * M), sizeof *s->urecs);   /* zeroed: initialized records */
    const char **keys = dd_malloc((size_t)(n * (M + 1)) * sizeof *keys);
    int rc = 0;
    for (int64_t k = 0; k < n; k++) keys[k] = s->recs[k].key;
    for (int m = 0; m < M && rc == 0; m++)
        for (int64_t k = 0; k < n && rc == 0; k++) {
            TsRecord *r = &s->urecs[m * n + k];
            char key[2 * TS_KEY_MAX], meta[3 * TS_KEY_MAX];
            snprintf(key, sizeof key, "%s_u%d", s->recs[k].key, m + 1);
            if (!ts_key_valid(key)) {
                rc = dd_err("record %lld (%s): key %s of its compensated copy is longer than %d characters",
                            (long long)k, s->recs[k].key, key, TS_KEY_MAX);
                break;
            }
            memcpy(r->key, key, strlen(key) + 1);
            snprintf(meta, sizeof meta, "{\"ufc\":%d,\"of\":\"%s\"}", m + 1, s->recs[k].key);
            ts_record_set_meta(r, meta);
            keys[n + m * n + k] = r->key;
        }
    if (rc == 0) qsort(keys, (size_t)(n * (M + 1)), sizeof *keys, keycmp);
    for (int64_t k = 1; rc == 0 && k < n * (M + 1); k++)
        if (!strcmp(keys[k - 1], keys[k]))
            rc = dd_err("key %s would appear twice in the output (an input's key, or two inputs' with --ufc's "
                        "suffix _uM): give the inputs distinct keys", keys[k]);
    free(keys);
    return rc;
}

int64_t rec_set_plan(RecSet *s, int ncls, int B)
{
    s->B = B;
    s->lab = dd_malloc((size_t)s->n * sizeof *s->lab);
    for (int64_t k = 0; k < s->n; k++) s->lab[k] = ts_record_label(&s->recs[k]);
    return s->nbatch = rec_plan(s->lab, s->n, ncls, B, &s->order, &s->start, &s->bid);
}

/* Batch b's compensated images for each teacher, set on s->urecs (see rec_set_run). */
static int run_ufc(Nn *nn, Model **t, int M, const RecConf *c, RecSet *s, const RecBatch *b, const int64_t *mem,
                   float *u)
{
    const int C = s->C, H = s->H, W = s->W, nb = b->n;
    const size_t img = (size_t)C * H * W;
    for (int m = 0; m < M; m++) {
        if (rec_ufc(nn, t[m], m, c, b, u) < 0) return -1;
        float *y = dd_malloc((size_t)nb * img * sizeof *y);
        rec_ufc_apply(b->x, u, y, nb, C, (int64_t)H * W, t[m]->mean, t[m]->std);
        for (int j = 0; j < nb; j++) {
            Tensor out = tensor_newv(DD_F32, 3, (int64_t)C, (int64_t)H, (int64_t)W);
            memcpy(out.data, y + (size_t)j * img, img * sizeof(float));
            ts_record_set(&s->urecs[m * s->n + mem[j]], "image", out);
            ts_record_set(&s->urecs[m * s->n + mem[j]], "label", tensor_scalar_i64(b->labels[j]));
        }
        free(y);
    }
    return 0;
}

int rec_set_run(Nn *nn, Model **t, int M, const RecConf *c, RecSet *s)
{
    const int C = s->C, H = s->H, W = s->W;
    const size_t img = (size_t)C * H * W;
    const float **P = dd_malloc((size_t)s->B * sizeof *P);
    int64_t *labels = dd_malloc((size_t)s->B * sizeof *labels);
    float *u = s->urecs ? dd_malloc(img * sizeof *u) : NULL;
    int rc = 0;
    for (int64_t k = 0; k < s->nbatch && rc == 0; k++) {
        const int64_t *mem = s->order + s->start[k];
        const int nb = (int)(s->start[k + 1] - s->start[k]);
        RecBatch b = {.n = nb, .C = C, .H = H, .W = W, .labels = labels, .P = P, .PH = H, .PW = W, .id = s->bid[k]};
        float *g = dd_malloc((size_t)nb * img * sizeof *g);
        for (int j = 0; j < nb; j++) {
            labels[j] = s->lab[mem[j]];
            P[j] = s->xn0 ? NULL : ts_record_cget(&s->recs[mem[j]], "image")->data;
            memcpy(g + j * img, s->xn0 ? s->xn0 + (size_t)mem[j] * img : P[j], img * sizeof *g);
        }
        if (s->xn0) b.xn0 = g;
        else b.x = g;
        if (s->urecs) {
            rc = run_ufc(nn, t, M, c, s, &b, mem, u);
            free(g);
            continue;
        }
        if ((rc = rec_run(nn, t, M, c, &b)) == 0)
            for (int j = 0; j < nb; j++) {
                Tensor out = tensor_newv(DD_F32, 3, (int64_t)C, (int64_t)b.H, (int64_t)b.W);
                memcpy(out.data, b.x + (size_t)j * C * b.H * b.W, (size_t)C * b.H * b.W * sizeof(float));
                ts_record_set(&s->recs[mem[j]], "image", out);
            }
        free(b.x);
        if (s->xn0) free(g);
    }
    free(u);
    free(labels);
    free(P);
    return rc;
}

void rec_set_free(RecSet *s)
{
    for (int64_t k = 0; s->recs && k < s->n; k++) ts_record_free(&s->recs[k]);
    for (int64_t k = 0; s->urecs && k < s->n * s->M; k++) ts_record_free(&s->urecs[k]);
    free(s->recs);
    free(s->urecs);
    free(s->xn0);
    free(s->lab);
    free(s->order);
    free(s->start);
    free(s->bid);
    *s = (RecSet){0};
}

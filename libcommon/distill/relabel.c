/* relabel.c - FKD soft labels, INFER static labels and top-k storage (see relabel.h). The crop,
 * flip and CutMix are applied with the very functions evaltrain's replay uses (img_crop_resize,
 * trainaug_flip, trainaug_cutmix), so the teacher labels the pixels the student will see. */
#include "libcommon/distill/relabel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "libcommon/distill/augment.h"
#include "libcommon/distill/trainaug.h"
#include "libcommon/image/resize.h"

int relabel_check_teacher(const Model *m, const char *wname, const TsHeader *h, const char *dname, int C, int H,
                          int W)
{
    if (model_check_classes(m, wname, h, dname) < 0) return -1;
    if (model_check_input(m, C, H, W) < 0) return dd_err_prefix("%s: %s", wname, dname);
    return 0;
}

void relabel_order(uint64_t seed, int64_t epoch, int64_t n, int64_t *order)
{
    DdRng r;
    dd_rng_init(&r, seed, RELABEL_STREAM_ORDER, (uint64_t)epoch);
    dd_rng_perm(&r, order, n);
}

void relabel_plan(uint64_t seed, int64_t epoch, int64_t bi, const int64_t *idx, int n, int H, int W,
                  TrainReplay *b)
{
    b->epoch = epoch;
    b->batch = bi;
    b->n = n;
    DdRng r;
    for (int i = 0; i < n; i++) {
        b->index[i] = idx[i];
        dd_rng_init(&r, seed, AUG_STREAM_RELABEL, ((uint64_t)epoch << 32) + (uint64_t)idx[i]);
        b->crop[i] = aug_rrc(&r, H, W, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0);
        b->flip[i] = dd_rng_uniform(&r) < 0.5;
    }
    dd_rng_init(&r, seed, RELABEL_STREAM_BATCH, ((uint64_t)epoch << 32) + (uint64_t)bi);
    dd_rng_perm(&r, b->perm, n);
    double lam = dd_rng_beta11(&r);
    b->lam = (float)lam;
    trainaug_cutmix_box(&r, H, W, lam, b->box);
}

void relabel_images(const TrainData *d, const TrainReplay *b, float *x)
{
    const int64_t img = (int64_t)d->C * d->H * d->W;
    for (int i = 0; i < b->n; i++) {
        const AugBox *a = &b->crop[i];
        float *dst = x + i * img;
        img_crop_resize(d->x + b->index[i] * img, d->C, d->H, d->W, a->top, a->left, a->h, a->w, dst, d->H, d->W);
        if (b->flip[i]) trainaug_flip(dst, d->C, d->H, d->W);
    }
    trainaug_cutmix(x, b->n, d->C, d->H, d->W, b->perm, b->box);
}

/* Host copies of a model's buffers (BN running statistics), in params order; NULL for params. */
static float **buffers_save(Nn *nn, const Model *m)
{
    float **s = dd_calloc((size_t)m->nparams, sizeof *s);
    for (int p = 0; p < m->nparams; p++) {
        const NnVar *v = &m->params[p]->var;
        if (v->role != NN_BUFFER) continue;
        s[p] = dd_malloc((size_t)tensor_numel(&v->v) * sizeof(float));
        nn_var_download(nn, v, s[p]);
    }
    return s;
}

static void buffers_restore(Nn *nn, Model *m, float **s)
{
    for (int p = 0; p < m->nparams; p++) {
        if (!s[p]) continue;
        nn_var_upload(nn, &m->params[p]->var, s[p]);
        free(s[p]);
    }
    free(s);
}

/* out[n,K] (=) = teacher m on x[n,C,H,W] in the given BN mode. */
static void forward(Nn *nn, Model *m, const float *x, int n, int C, int H, int W, int training, float *out)
{
    Tensor t = {.dtype = DD_F32, .device = DD_CPU, .ndim = 4, .shape = {n, C, H, W}, .data = (void *)x};
    nn_var_download(nn, model_forward(m, nn, nn_input(nn, &t, 0), training), out);
    nn_reset(nn);
}

int relabel_logits(Nn *nn, Model **t, int nt, RelabelBn bn, const float *x, int n, int C, int H, int W,
                   uint64_t seed, uint64_t step, float *logits)
{
    const int K = t[0]->num_classes;
    const int64_t img = (int64_t)C * H * W;
    const int h1 = n > 1 ? n / 2 : n;   /* the reference's split_point = n // 2; one image: one pass */
    float *one = dd_malloc((size_t)n * (size_t)K * sizeof(float));
    int old = nn_set_grad(nn, 0);
    nn_set_rng(nn, seed, step);
    memset(logits, 0, (size_t)n * (size_t)K * sizeof(float));
    for (int k = 0; k < nt; k++) {
        if (bn == RELABEL_BN_BATCH) {
            /* model_forward in training mode updates the running statistics: put them back */
            float **saved = buffers_save(nn, t[k]);
            forward(nn, t[k], x, h1, C, H, W, 1, one);
            if (n > h1) forward(nn, t[k], x + h1 * img, n - h1, C, H, W, 1, one + (int64_t)h1 * K);
            buffers_restore(nn, t[k], saved);
        } else {
            forward(nn, t[k], x, n, C, H, W, 0, one);
        }
        for (int64_t i = 0; i < (int64_t)n * K; i++) logits[i] += one[i];
    }
    nn_set_grad(nn, old);
    free(one);
    int rc = 0;
    for (int64_t i = 0; i < (int64_t)n * K && !rc; i++) {
        if (nt > 1) logits[i] /= (float)nt;
        if (!isfinite(logits[i])) rc = dd_err("teacher logits hold a non-finite value (image %lld of the batch)",
                                              (long long)(i / K));
    }
    return rc;
}

int relabel_run(Nn *nn, Model **t, int nt, const RelabelConf *c, const TrainData *d, TsWriter *w,
                DdProgress *progress)
{
    const int B = c->batch, K = d->K;
    const int64_t nb = (d->n + B - 1) / B, img = (int64_t)d->C * d->H * d->W;
    int64_t *order = dd_malloc((size_t)d->n * sizeof *order);
    float *x = dd_malloc((size_t)B * (size_t)img * sizeof *x);
    TrainReplay b = {.K = K};
    b.index = dd_malloc((size_t)B * sizeof *b.index);
    b.perm = dd_malloc((size_t)B * sizeof *b.perm);
    b.crop = dd_malloc((size_t)B * sizeof *b.crop);
    b.flip = dd_malloc((size_t)B);
    b.logits = dd_malloc((size_t)B * (size_t)K * sizeof *b.logits);
    TsRecord rec;
    ts_record_init(&rec);
    int rc = 0;
    for (int64_t e = 0; e < c->epochs && !rc; e++) {
        relabel_order(c->seed, e, d->n, order);
        for (int64_t bi = 0; bi < nb && !rc; bi++) {
            int n = (int)(d->n - bi * B < B ? d->n - bi * B : B);
            relabel_plan(c->seed, e, bi, order + bi * B, n, d->H, d->W, &b);
            relabel_images(d, &b, x);
            if (relabel_logits(nn, t, nt, c->bn, x, n, d->C, d->H, d->W, c->seed, (uint64_t)(e * nb + bi),
                               b.logits) < 0) {
                rc = dd_err_prefix("%s%srecord e%06lld_b%06lld", c->input ? c->input : "", c->input ? ": " : "",
                                   (long long)e, (long long)bi);
                break;
            }
            for (int64_t i = 0; i < (int64_t)n * K && !rc; i++) /* stored as F16 (its largest: 65504) */
                if (fabsf(b.logits[i]) > 65504.0f)
                    rc = dd_err("%s%srecord e%06lld_b%06lld: teacher logit %g (image %lld of the batch) is beyond the "
                                "range of F16, which the label stream stores", c->input ? c->input : "",
                                c->input ? ": " : "", (long long)e, (long long)bi,
                                (double)b.logits[i], (long long)(i / K));
            if (rc) break;
            train_replay_to_record(&b, d->H, d->W, &rec);
            if (c->topk > 0 && c->topk < K) relabel_topk_set(&rec, b.logits, n, K, c->topk);
            if (ts_writer_put(w, &rec) < 0) rc = -1;
            if (progress) dd_progress_update(progress, progress->done + 1);
        }
    }
    ts_record_free(&rec);
    free(order);
    free(x);
    free(b.index);
    free(b.perm);
    free(b.crop);
    free(b.flip);
    free(b.logits);
    return rc;
}

int relabel_static(Nn *nn, Model **t, int nt, const float *x, int64_t n, int C, int H, int W, float *soft,
                   int64_t *bad)
{
    const int K = t[0]->num_classes, chunk = 256;
    const int64_t img = (int64_t)C * H * W;
    for (int64_t s = 0; s < n; s += chunk) {
        int m = (int)(n - s < chunk ? n - s : chunk);
        if (relabel_logits(nn, t, nt, RELABEL_BN_EVAL, x + s * img, m, C, H, W, 0, 0, soft + s * K) < 0) {
            int64_t i = 0; /* the first row not finite: the one relabel_logits stopped at */
            while (i < (int64_t)m * K && isfinite(soft[s * K + i])) i++;
            *bad = s + i / K;
            return dd_err("the teacher's logits are not finite (its weights?)");
        }
    }
    return 0;
}

/* ---- top-k ---- */

void relabel_topk_set(TsRecord *rec, const float *logits, int n, int K, int k)
{
    Tensor v = tensor_newv(DD_F16, 2, (int64_t)n, (int64_t)k);
    Tensor ix = tensor_newv(K > 32767 ? DD_I32 : DD_I16, 2, (int64_t)n, (int64_t)k);
    Tensor r = tensor_newv(DD_F16, 1, (int64_t)n);
    uint8_t *taken = dd_malloc((size_t)K);
    for (int i = 0; i < n; i++) {
        const float *l = logits + (int64_t)i * K;
        double rest = 0;
        memset(taken, 0, (size_t)K);
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int q = 0; q < K; q++)
                if (!taken[q] && (best < 0 || l[q] > l[best])) best = q;
            taken[best] = 1;
            ((uint16_t *)v.data)[(int64_t)i * k + j] = dd_f32_to_f16(l[best]);
            if (ix.dtype == DD_I16) ((int16_t *)ix.data)[(int64_t)i * k + j] = (int16_t)best;
            else ((int32_t *)ix.data)[(int64_t)i * k + j] = best;
        }
        for (int q = 0; q < K; q++)
            if (!taken[q]) rest += l[q];
        ((uint16_t *)r.data)[i] = dd_f32_to_f16((float)(rest / (K - k)));
    }
    free(taken);
    ts_record_remove(rec, "logits");
    ts_record_set(rec, "topv", v);
    ts_record_set(rec, "topi", ix);
    ts_record_set(rec, "topr", r);
}

int relabel_topk_expand(const TsRecord *rec, int64_t n, int K, float *logits)
{
    const Tensor *v = ts_record_cget(rec, "topv"), *ix = ts_record_cget(rec, "topi"), *r = ts_record_cget(rec, "topr");
    if (!v && !ix && !r) return 0;
    if (!v || !ix || !r) return dd_err("top-k labels need the fields topv, topi and topr together");
    if (v->dtype != DD_F16 || v->ndim != 2 || v->shape[0] != n || v->shape[1] < 1 || v->shape[1] > K)
        return dd_err("field 'topv' is not F16[%lld,k] with 1 <= k <= %d", (long long)n, K);
    const int64_t k = v->shape[1];
    if ((ix->dtype != DD_I16 && ix->dtype != DD_I32) || ix->ndim != 2 || ix->shape[0] != n || ix->shape[1] != k)
        return dd_err("field 'topi' is not I16 or I32 [%lld,%lld]", (long long)n, (long long)k);
    if (r->dtype != DD_F16 || r->ndim != 1 || r->shape[0] != n)
        return dd_err("field 'topr' is not F16[%lld]", (long long)n);
    uint8_t *seen = dd_malloc((size_t)K);
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        float *l = logits + i * K, rest = dd_f16_to_f32(((const uint16_t *)r->data)[i]);
        memset(seen, 0, (size_t)K);
        for (int q = 0; q < K; q++) l[q] = rest;
        for (int64_t j = 0; j < k && !rc; j++) {
            int64_t q = (int64_t)tensor_get_f64(ix, i * k + j);
            float val = dd_f16_to_f32(((const uint16_t *)v->data)[i * k + j]);
            if (q < 0 || q >= K || seen[q]++) rc = dd_err("topi row %lld: index %lld repeated or outside [0,%d)",
                                                          (long long)i, (long long)q, K);
            else l[q] = val;
        }
        for (int q = 0; q < K && !rc; q++)
            if (!isfinite(l[q])) rc = dd_err("top-k labels of row %lld hold a non-finite value", (long long)i);
    }
    free(seen);
    return rc ? -1 : 1;
}

double relabel_payload_bytes(int K, int topk, int batch)
{
    /* index I64 + crops 4 x F32 + flips U8 + perm I64 per image; lam F32 + box 4 x I32 per batch */
    double per_image = 8 + 16 + 1 + 8 + 20.0 / batch;
    if (topk > 0 && topk < K) return per_image + 2.0 * topk + (K > 32767 ? 4.0 : 2.0) * topk + 2;
    return per_image + 2.0 * K;
}

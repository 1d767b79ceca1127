/* train.c - evaltrain's loop (see train.h): data in memory, the replay record layout, evaluation,
 * checkpoints, and the epoch / batch / micro-batch loop with its four label sources.
 *
 * A step: the batch is prepared on the host (augmentation draws keyed by image and epoch, mixing
 * keyed by batch and epoch), targets are made (hard labels, teacher logits, stored logits), then
 * each micro-batch runs forward / weighted loss / backward on its slice (train_step) and the
 * optimizer steps once. Loss and accuracy are accumulated for the metrics. */
#include "libcommon/distill/train.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/codecs.h"
#include "libcommon/distill/relabel.h"
#include "libcommon/distill/trainaug.h"
#include "libcommon/image/resize.h"

#define CKPT_FORMAT "ddpipe-checkpoint/1"

/* ---- data in memory ---- */

/* torchvision's validation transform: Resize(crop * 256 / 224) + CenterCrop(crop). */
static Tensor val_transform(const Tensor *img, int crop)
{
    int C = (int)img->shape[0], H = (int)img->shape[1], W = (int)img->shape[2];
    Tensor out = tensor_newv(DD_F32, 3, (int64_t)C, (int64_t)crop, (int64_t)crop);
    img_resize_short_center_crop(img->data, C, H, W, crop * 256 / 224, crop, out.data);
    return out;
}

/* Checks a [C,H,W] image's size: the first record sets C (and H, W unless kept at own sizes). Errors describe
 * `as` (the record's own field, U8 as U8, where img is its conversion; img where it was cropped). */
static int data_size_ok(TrainData *d, const Tensor *img, const Tensor *as, int own_size)
{
    char desc[128];
    if (img->ndim != 3) return dd_err("image %s is not [C,H,W]", tensor_describe(as, desc, sizeof desc));
    if (img->shape[0] < 1 || img->shape[0] > 64 || img->shape[1] < 1 || img->shape[1] > 65536 || img->shape[2] < 1
        || img->shape[2] > 65536)
        return dd_err("image %s: unsupported size", tensor_describe(as, desc, sizeof desc));
    if (d->n == 0) {
        d->C = (int)img->shape[0];
        if (!own_size) {
            d->H = (int)img->shape[1];
            d->W = (int)img->shape[2];
        }
        return 0;
    }
    if (own_size && img->shape[0] != d->C)
        return dd_err("image %s has other channels than the first record's %d", tensor_describe(as, desc, sizeof desc),
                      d->C);
    if (!own_size && (img->shape[0] != d->C || img->shape[1] != d->H || img->shape[2] != d->W))
        return dd_err("image %s differs from the first record's [%d,%d,%d] (one size per stream: resample --size S "
                      "makes one; evaltrain --res R trains on several)",
                      tensor_describe(as, desc, sizeof desc), d->C, d->H, d->W);
    return 0;
}

/* Appends an image at its own size to d->img / d->pix: U8 bytes as they are, other dtypes as F32. */
static void data_keep(TrainData *d, int64_t *pix_cap, int64_t *pix_len, const Tensor *t)
{
    Tensor f = {0};
    const Tensor *src = t;
    if (t->dtype != DD_U8 && t->dtype != DD_F32) {
        f = tensor_to_f32(t);
        src = &f;
    }
    int64_t bytes = tensor_numel(src) * (src->dtype == DD_U8 ? 1 : 4), off = (*pix_len + 3) & ~(int64_t)3;
    if (off + bytes > *pix_cap) {
        while (off + bytes > *pix_cap) *pix_cap = *pix_cap ? 2 * *pix_cap : (int64_t)1 << 20;
        d->pix = dd_realloc(d->pix, (size_t)*pix_cap);
    }
    memcpy(d->pix + off, src->data, (size_t)bytes);
    *pix_len = off + bytes;
    TrainImage *im = &d->img[d->n];
    im->off = off;
    im->h = (int)src->shape[1];
    im->w = (int)src->shape[2];
    im->f32 = src->dtype != DD_U8;
    if ((int64_t)im->h * im->w > d->max_hw) d->max_hw = (int64_t)im->h * im->w;
    tensor_free(&f);
}

typedef struct {
    int64_t cap, pix_cap, pix_len;
    int want_soft;
    int soft_auto; /* want_soft is the first record's: every record must then agree */
} DataFill;

/* Adds one record to d (growing its arrays). */
static int data_add(TrainData *d, DataFill *f, const TrainDataOpts *o, const TsRecord *rec)
{
    const Tensor *raw = ts_record_cget(rec, "image");
    Tensor img = {0};
    if (o->res > 0) {
        if (!raw) return dd_err("no image field"); /* the caller names file, record and key */
        if (raw->device != DD_CPU) return dd_err("image is not on the CPU");
        if (data_size_ok(d, raw, raw, 1) < 0 || ts_image_finite(raw) < 0) return -1;
    } else {
        if (ts_record_image_f32(rec, &img) < 0) return -1;
        if (ts_image_finite(&img) < 0) {
            tensor_free(&img);
            return -1;
        }
        const Tensor *as = raw;
        if (o->crop > 0 && img.ndim == 3 && img.shape[1] >= 1 && img.shape[2] >= 1
            && !(o->crop_other && img.shape[1] == o->crop && img.shape[2] == o->crop)) {
            if (!d->resized++) d->src_h = (int)img.shape[1], d->src_w = (int)img.shape[2];
            Tensor t = val_transform(&img, o->crop);
            tensor_free(&img);
            img = t;
            as = &img;
        }
        if (data_size_ok(d, &img, as, 0) < 0) {
            tensor_free(&img);
            return -1;
        }
    }
    int64_t y = ts_record_label(rec);
    if (y < 0 || y >= d->K) {
        tensor_free(&img);
        return y < 0 ? -1 : dd_err("label %lld outside the %d classes", (long long)y, d->K);
    }
    if (f->want_soft < 0) f->want_soft = ts_record_cget(rec, "soft") != NULL;
    const Tensor *soft = f->want_soft ? ts_record_cget(rec, "soft") : NULL;
    if (!f->want_soft && f->soft_auto && ts_record_cget(rec, "soft")) {
        tensor_free(&img);
        return dd_err("field 'soft' present, the first record has none (static soft labels: on every record or "
                      "none; --hard ignores them)");
    }
    if (f->want_soft && (!soft || tensor_numel(soft) != d->K)) {
        tensor_free(&img);
        return dd_err("field 'soft' %s (want %d values: static soft labels)", soft ? "has the wrong size" : "missing",
                      d->K);
    }
    for (int k = 0; f->want_soft && k < d->K; k++)
        if (!isfinite(tensor_get_f64(soft, k))) {
            tensor_free(&img);
            return dd_err("field 'soft' holds a non-finite value at [%d]", k);
        }
    int64_t img_n = tensor_numel(&img);
    if (d->n == f->cap) {
        size_t bytes;
        f->cap = f->cap ? 2 * f->cap : 1024;
        if (o->res > 0) {
            d->img = dd_realloc(d->img, (size_t)f->cap * sizeof *d->img);
        } else {
            if (dd_mul_ok((size_t)f->cap, (size_t)img_n * sizeof(float), &bytes) < 0) {
                tensor_free(&img);
                return dd_err("data set too large");
            }
            d->x = dd_realloc(d->x, bytes);
        }
        d->y = dd_realloc(d->y, (size_t)f->cap * sizeof(int64_t));
        if (f->want_soft) d->soft = dd_realloc(d->soft, (size_t)f->cap * (size_t)d->K * sizeof(float));
    }
    if (o->res > 0) data_keep(d, &f->pix_cap, &f->pix_len, raw);
    else memcpy(d->x + d->n * img_n, img.data, (size_t)img_n * sizeof(float));
    d->y[d->n] = y;
    if (f->want_soft)
        for (int k = 0; k < d->K; k++) d->soft[d->n * d->K + k] = (float)tensor_get_f64(soft, k);
    d->n++;
    tensor_free(&img);
    return 0;
}

int train_data_read(TsInput *in, const TrainDataOpts *o, TrainData *d)
{
    memset(d, 0, sizeof *d);
    d->K = ts_header_nclasses(ts_input_header(in));
    if (d->K < 1) return dd_err("%s: the stream header lists no classes", ts_input_name(in));
    if (o->res > 0) d->H = d->W = o->res;
    TsRecord rec;
    ts_record_init(&rec);
    DataFill f = {.want_soft = o->want_soft, .soft_auto = o->want_soft < 0};
    int rc;
    while ((rc = ts_input_next(in, &rec)) == 1) {
        if (data_add(d, &f, o, &rec) < 0) {
            dd_err_prefix("%s: record %lld (%s)", ts_input_name(in), (long long)ts_input_index(in), rec.key);
            rc = -1;
            break;
        }
    }
    ts_record_free(&rec);
    if (rc == 0 && d->n == 0) rc = dd_err("%s: no records", ts_input_name(in));
    if (rc < 0) train_data_free(d);
    return rc;
}

void train_data_free(TrainData *d)
{
    free(d->x);
    free(d->img);
    free(d->pix);
    free(d->y);
    free(d->soft);
    memset(d, 0, sizeof *d);
}

/* ---- the replay stream ---- */

#define FNV_START 1469598103934665603ull
static uint64_t fnv(uint64_t h, uint64_t word) { return (h ^ word) * 1099511628211ull; }

/* FNV-1a over n floats' bits, continuing from h. */
static uint64_t fnv_floats(uint64_t h, const float *p, size_t n)
{
    const uint32_t *w = (const uint32_t *)p;
    for (size_t i = 0; i < n; i++) h = fnv(h, w[i]);
    return h;
}

uint64_t train_data_digest(const TrainData *d)
{
    uint64_t h = FNV_START;
    if (!d->img) h = fnv_floats(h, d->x, (size_t)d->n * (size_t)d->C * (size_t)d->H * (size_t)d->W);
    for (int64_t i = 0; d->img && i < d->n; i++) {
        const TrainImage *im = &d->img[i];
        const int64_t np = (int64_t)d->C * im->h * im->w;
        h = fnv(fnv(h, (uint64_t)im->h), (uint64_t)im->w);
        for (int64_t k = 0; k < np; k++) {
            float v;
            if (im->f32) memcpy(&v, d->pix + im->off + 4 * k, 4);
            else v = (float)d->pix[im->off + k] / 255.0f;
            h = fnv_floats(h, &v, 1);
        }
    }
    for (int64_t i = 0; i < d->n; i++) h = fnv(h, (uint64_t)d->y[i]);
    return h;
}

void train_replay_header_set(TsHeader *h, const TrainReplayInfo *info)
{
    json_t *o = json_pack("{s:I,s:I,s:i,s:i,s:i}", "images", (json_int_t)info->images, "epochs",
                          (json_int_t)info->epochs, "batch", info->batch, "height", info->H, "width", info->W);
    if (info->has_digest) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)info->digest);
        json_object_set_new(o, "images_digest", json_string(hex));
    }
    json_object_set_new(h->json, "relabel", o);
}

int train_replay_header_get(const TsHeader *h, const char *what, TrainReplayInfo *info)
{
    json_t *o = json_object_get(h->json, "relabel");
    json_int_t v[5];
    const char *keys[5] = {"images", "epochs", "batch", "height", "width"};
    if (!json_is_object(o)) return dd_err("%s: not a relabel stream (no \"relabel\" key in its header)", what);
    for (int i = 0; i < 5; i++) {
        json_t *x = json_object_get(o, keys[i]);
        if (!json_is_integer(x) || (v[i] = json_integer_value(x)) < 1 || (i >= 2 && v[i] > 65536))
            return dd_err("%s: header relabel.%s is missing or out of range", what, keys[i]);
    }
    info->images = v[0];
    info->epochs = v[1];
    info->batch = (int)v[2];
    info->H = (int)v[3];
    info->W = (int)v[4];
    json_t *dg = json_object_get(o, "images_digest");
    const char *hex = json_string_value(dg);
    info->has_digest = dg != NULL;
    if (dg && (!hex || strlen(hex) != 16 || strspn(hex, "0123456789abcdef") != 16))
        return dd_err("%s: header relabel.images_digest is not 16 hex digits", what);
    if (dg) info->digest = strtoull(hex, NULL, 16);
    return 0;
}

void train_replay_to_record(const TrainReplay *b, int H, int W, TsRecord *rec)
{
    ts_record_clear(rec);
    snprintf(rec->key, sizeof rec->key, "e%06lld_b%06lld", (long long)b->epoch, (long long)b->batch);
    char meta[96];
    snprintf(meta, sizeof meta, "{\"epoch\":%lld,\"batch\":%lld}", (long long)b->epoch, (long long)b->batch);
    ts_record_set_meta(rec, meta);
    int64_t n = b->n;
    Tensor index = tensor_newv(DD_I64, 1, n), crops = tensor_newv(DD_F32, 2, n, (int64_t)4);
    Tensor flips = tensor_newv(DD_U8, 1, n), perm = tensor_newv(DD_I64, 1, n);
    Tensor lam = tensor_new(DD_F32, 0, NULL), box = tensor_newv(DD_I32, 1, (int64_t)4);
    Tensor logits = tensor_newv(DD_F16, 2, n, (int64_t)b->K);
    memcpy(index.data, b->index, (size_t)n * sizeof(int64_t));
    memcpy(perm.data, b->perm, (size_t)n * sizeof(int64_t));
    memcpy(flips.data, b->flip, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        float *c = (float *)crops.data + 4 * i;
        c[0] = (float)((double)b->crop[i].top / H);
        c[1] = (float)((double)b->crop[i].left / W);
        c[2] = (float)((double)b->crop[i].h / H);
        c[3] = (float)((double)b->crop[i].w / W);
    }
    *(float *)lam.data = b->lam;
    for (int i = 0; i < 4; i++) ((int32_t *)box.data)[i] = b->box[i];
    for (int64_t i = 0; i < n * b->K; i++) ((uint16_t *)logits.data)[i] = dd_f32_to_f16(b->logits[i]);
    ts_record_set(rec, "index", index);
    ts_record_set(rec, "crops", crops);
    ts_record_set(rec, "flips", flips);
    ts_record_set(rec, "perm", perm);
    ts_record_set(rec, "lam", lam);
    ts_record_set(rec, "box", box);
    ts_record_set(rec, "logits", logits);
}

/* The named field with dtype `dt` (or `dt2`, -1 for none) and shape (d0 [, d1]); ndim 0 for d0 < 0. */
static const Tensor *replay_field(const TsRecord *rec, const char *name, int dt, int dt2, int64_t d0, int64_t d1)
{
    const Tensor *t = ts_record_cget(rec, name);
    int ndim = d0 < 0 ? 0 : (d1 < 0 ? 1 : 2);
    char desc[128];
    if (!t) {
        dd_err("field '%s' missing", name);
        return NULL;
    }
    if (((int)t->dtype != dt && (int)t->dtype != dt2) || t->ndim != ndim || (ndim >= 1 && t->shape[0] != d0)
        || (ndim == 2 && t->shape[1] != d1)) {
        char shape[64] = "";
        if (ndim == 1) snprintf(shape, sizeof shape, "%lld", (long long)d0);
        if (ndim == 2) snprintf(shape, sizeof shape, "%lld,%lld", (long long)d0, (long long)d1);
        dd_err("field '%s' is %s, want %s[%s]", name, tensor_describe(t, desc, sizeof desc),
               dd_dtype_name((DdDtype)dt), shape);
        return NULL;
    }
    return t;
}

int train_replay_from_record(const TsRecord *rec, const TrainReplayInfo *info, int K, TrainReplay *b)
{
    memset(b, 0, sizeof *b);
    long long ke, kb;
    char tail;
    if (sscanf(rec->key, "e%lld_b%lld%c", &ke, &kb, &tail) != 2 || ke < 0 || kb < 0)
        return dd_err("key is not e<epoch>_b<batch>");
    b->epoch = ke;
    b->batch = kb;
    const Tensor *index = ts_record_cget(rec, "index");
    if (!index || index->ndim != 1 || index->shape[0] < 1 || index->shape[0] > info->batch)
        return dd_err("field 'index' missing or not I64[n] with 1 <= n <= %d", info->batch);
    int64_t n = index->shape[0];
    const Tensor *crops, *flips, *perm, *lam, *box, *logits;
    if (!(index = replay_field(rec, "index", DD_I64, -1, n, -1))
        || !(crops = replay_field(rec, "crops", DD_F32, -1, n, 4))
        || !(flips = replay_field(rec, "flips", DD_U8, -1, n, -1))
        || !(perm = replay_field(rec, "perm", DD_I64, -1, n, -1))
        || !(lam = replay_field(rec, "lam", DD_F32, -1, -1, -1))
        || !(box = replay_field(rec, "box", DD_I32, -1, 4, -1)))
        return -1;
    /* dense logits, or relabel's top-k form (topv/topi/topr) when "logits" is absent */
    logits = ts_record_cget(rec, "logits") ? replay_field(rec, "logits", DD_F16, DD_F32, n, K) : NULL;
    if (!logits && ts_record_cget(rec, "logits")) return -1;
    b->n = (int)n;
    b->K = K;
    b->index = dd_malloc((size_t)n * sizeof(int64_t));
    b->perm = dd_malloc((size_t)n * sizeof(int64_t));
    b->crop = dd_malloc((size_t)n * sizeof(AugBox));
    b->flip = dd_malloc((size_t)n);
    b->logits = dd_malloc((size_t)(n * K) * sizeof(float));
    uint8_t *seen = dd_calloc((size_t)n, 1);
    int rc = 0;
    const int H = info->H, W = info->W;
    for (int64_t i = 0; i < n && !rc; i++) {
        b->index[i] = ((const int64_t *)index->data)[i];
        b->perm[i] = ((const int64_t *)perm->data)[i];
        b->flip[i] = ((const uint8_t *)flips->data)[i] != 0;
        const float *c = (const float *)crops->data + 4 * i;
        AugBox a = {(int)lround(c[0] * H), (int)lround(c[1] * W), (int)lround(c[2] * H), (int)lround(c[3] * W)};
        b->crop[i] = a;
        if (b->index[i] < 0 || b->index[i] >= info->images)
            rc = dd_err("index[%lld] = %lld outside the %lld training images", (long long)i, (long long)b->index[i],
                        (long long)info->images);
        else if (!(c[0] >= 0 && c[1] >= 0) || a.h < 1 || a.w < 1 || a.top + a.h > H || a.left + a.w > W)
            rc = dd_err("crops[%lld] is not a box inside the %dx%d image", (long long)i, H, W);
        else if (b->perm[i] < 0 || b->perm[i] >= n || seen[b->perm[i]]++)
            rc = dd_err("perm is not a permutation of 0..%lld", (long long)n - 1);
        else if (((const uint8_t *)flips->data)[i] > 1)
            rc = dd_err("flips[%lld] = %d: not 0 or 1", (long long)i, ((const uint8_t *)flips->data)[i]);
    }
    free(seen);
    for (int i = 0; i < 4; i++) b->box[i] = ((const int32_t *)box->data)[i];
    b->lam = *(const float *)lam->data;
    if (!rc && !(b->lam >= 0 && b->lam <= 1)) rc = dd_err("lam = %g: not in [0, 1]", (double)b->lam);
    if (!rc && b->box[0] < b->box[2] && b->box[1] < b->box[3]
        && (b->box[0] < 0 || b->box[1] < 0 || b->box[2] > H || b->box[3] > W))
        rc = dd_err("box [%d,%d,%d,%d] outside the %dx%d image", b->box[0], b->box[1], b->box[2], b->box[3], H, W);
    if (!rc && !logits) {
        int e = relabel_topk_expand(rec, n, K, b->logits);
        rc = e < 0 ? -1 : e == 0 ? dd_err("field 'logits' (or topv, topi, topr) missing") : 0;
    }
    for (int64_t i = 0; logits && i < n * K && !rc; i++) {
        b->logits[i] = (float)tensor_get_f64(logits, i);
        if (!isfinite(b->logits[i])) rc = dd_err("logits hold a non-finite value");
    }
    if (rc) {
        train_replay_free(b);
        return -1;
    }
    b->epoch = ke;
    b->batch = kb;
    return 0;
}

void train_replay_free(TrainReplay *b)
{
    free(b->index);
    free(b->perm);
    free(b->crop);
    free(b->flip);
    free(b->logits);
    memset(b, 0, sizeof *b);
}

/* ---- evaluation ---- */

/* Adds to *loss the summed cross-entropy of n rows of logits [n,K] against y; counts top-1 and
 * top-k hits. */
static void score_rows(const float *logits, const int64_t *y, int n, int K, int k, double *loss, int64_t *hit1,
                       int64_t *hitk)
{
    for (int i = 0; i < n; i++) {
        const float *l = logits + (int64_t)i * K;
        float mx = l[0];
        int above = 0, finite = 1;
        for (int j = 0; j < K; j++) finite &= isfinite(l[j]) != 0;
        for (int j = 1; j < K; j++) mx = l[j] > mx ? l[j] : mx;
        double s = 0;
        for (int j = 0; j < K; j++) s += exp((double)l[j] - mx);
        *loss += log(s) + mx - l[y[i]];
        /* rank of the true class: classes strictly above it, ties before it count as above */
        for (int j = 0; j < K; j++) above += l[j] > l[y[i]] || (l[j] == l[y[i]] && j < y[i]);
        *hit1 += finite && above == 0; /* NaN compares false: a row of NaN would rank first */
        *hitk += finite && above < k;
    }
}

int train_eval(Nn *nn, Model *m, const TrainData *d, int batch, TrainEval *out)
{
    if (d->img) return dd_err("evaluation wants images of one size (TrainDataOpts.crop)");
    if (model_check_input(m, d->C, d->H, d->W) < 0) return -1;
    int old = nn_set_grad(nn, 0);
    int64_t img = (int64_t)d->C * d->H * d->W, hit1 = 0, hitk = 0;
    double loss = 0;
    float *logits = dd_malloc((size_t)batch * (size_t)d->K * sizeof(float));
    for (int64_t s = 0; s < d->n; s += batch) {
        int n = (int)(d->n - s < batch ? d->n - s : batch);
        Tensor x = {.dtype = DD_F32, .device = DD_CPU, .ndim = 4, .shape = {n, d->C, d->H, d->W},
                    .data = d->x + s * img};
        NnVar *out_v = model_forward(m, nn, nn_input(nn, &x, 0), 0);
        nn_var_download(nn, out_v, logits);
        nn_reset(nn);
        score_rows(logits, d->y + s, n, d->K, d->K < 5 ? d->K : 5, &loss, &hit1, &hitk);
    }
    free(logits);
    nn_set_grad(nn, old);
    out->n = d->n;
    out->top1 = (double)hit1 / (double)d->n;
    out->top5 = (double)hitk / (double)d->n;
    out->loss = loss / (double)d->n;
    return 0;
}

/* ---- checkpoints: model params and buffers, optimizer state, epoch, best so far ---- */

typedef struct {
    int epoch;                 /* epochs finished */
    double best_top1;
    int best_epoch;
} CkptState;

json_t *train_recipe(const TrainConf *c)
{
    static const char *const labels[] = {[TRAIN_HARD] = "hard", [TRAIN_TEACHER] = "teacher",
                                         [TRAIN_STATIC] = "static", [TRAIN_REPLAY] = "replay"};
    static const char *const opts[] = {[OPTIM_SGD] = "sgd", [OPTIM_ADAM] = "adam", [OPTIM_ADAMW] = "adamw"};
    json_t *o = json_pack("{s:s,s:s,s:f,s:f,s:s,s:f,s:i,s:i,s:i,s:I}", "labels", labels[c->labels], "optimizer",
                          opts[c->opt.kind], "lr", c->opt.lr, "wd", c->opt.weight_decay, "decay",
                          c->opt.decay_all ? "all" : "weights", "eta", c->eta, "epochs", c->epochs, "batch", c->batch,
                          "micro", c->micro < c->batch ? c->micro : c->batch, "seed", (json_int_t)c->seed);
    if (c->opt.kind == OPTIM_SGD) json_object_set_new(o, "momentum", json_real(c->opt.momentum));
    else json_object_set_new(o, "betas", json_pack("[f,f]", c->opt.beta1, c->opt.beta2));
    if (c->labels == TRAIN_HARD) json_object_set_new(o, "label_smoothing", json_real(c->label_smoothing));
    else json_object_set_new(o, "T", json_real(c->T));
    if (c->labels == TRAIN_REPLAY) {
        json_object_set_new(o, "aug", json_null());
        return o;
    }
    json_t *rrc = c->rrc_hi > 0 ? json_pack("[f,f]", c->rrc_lo, c->rrc_hi) : json_null();
    json_object_set_new(o, "aug", json_pack("{s:i,s:o,s:i,s:b,s:f,s:f}", "shuffle_patches", c->shuffle_patches, "rrc",
                                            rrc, "crop_pad", c->crop_pad, "flip", c->flip, "cutmix", c->cutmix,
                                            "mixup", c->mixup));
    return o;
}

static char *fingerprint(const TrainConf *c, const Model *m, const TrainData *tr)
{
    json_t *o = json_pack("{s:s,s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:i,s:f,s:i,s:i,s:i,s:i,s:I,s:f,s:f}",
                          "arch", m->arch, "labels", (int)c->labels, "optimizer", (int)c->opt.kind, "lr", c->opt.lr,
                          "momentum", c->opt.momentum, "wd", c->opt.weight_decay, "beta1", c->opt.beta1,
                          "beta2", c->opt.beta2, "eta", c->eta, "nesterov", c->opt.nesterov, "eps", c->opt.eps,
                          "epochs", c->epochs, "batch", c->batch, "micro", c->micro, "shuffle", c->shuffle,
                          "seed", (json_int_t)c->seed, "label_smoothing", (double)c->label_smoothing, "T",
                          (double)c->T);
    json_t *aug = json_pack("{s:i,s:f,s:f,s:i,s:i,s:f,s:f,s:i}", "shuffle_patches", c->shuffle_patches, "rrc_lo",
                            c->rrc_lo, "rrc_hi", c->rrc_hi, "crop_pad", c->crop_pad, "flip", c->flip, "cutmix",
                            c->cutmix, "mixup", c->mixup, "decay_all", c->opt.decay_all);
    json_t *data = json_pack("{s:I,s:i,s:i,s:i,s:i}", "n", (json_int_t)tr->n, "C", tr->C, "H", tr->H, "W", tr->W,
                             "K", tr->K);
    if (tr->img) json_object_set_new(data, "own_sizes", json_true());
    /* the input normalization where it is not the architecture's default (evaltrain --mean/--std;
     * checkpoints of default runs keep the fingerprint they had before the options existed) */
    size_t nb = (size_t)m->in_channels * sizeof(float);
    float *dm = dd_malloc(nb), *ds = dd_malloc(nb);
    model_default_norm(m->in_channels, dm, ds);
    if (memcmp(dm, m->mean, nb) || memcmp(ds, m->std, nb)) {
        json_t *mean = json_array(), *std = json_array();
        for (int c = 0; c < m->in_channels; c++) {
            json_array_append_new(mean, json_real(m->mean[c]));
            json_array_append_new(std, json_real(m->std[c]));
        }
        json_object_set_new(o, "mean", mean);
        json_object_set_new(o, "std", std);
    }
    free(dm);
    free(ds);
    /* likewise the BN momentum where it is not PyTorch's (evaltrain --bn-momentum, --teacher) */
    if (m->bn_momentum != 0.1f) json_object_set_new(o, "bn_momentum", json_real(m->bn_momentum));
    json_object_set_new(o, "aug", aug);
    json_object_set_new(o, "data", data);
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

/* What the run reads besides its options (the fingerprint's): digests of the training images and
 * labels, the static soft labels, the --labels stream's header (its provenance: images digest,
 * relabel's command and seed) and the teachers' weights (one digest over all, in order), as JSON
 * {"images":"HEX",...}. A
 * checkpoint is resumed only with the same (one without, from before they were kept, is not
 * checked). */
static char *inputs_digest(Nn *nn, const TrainData *tr, Model *const *teachers, TsReader *replay)
{
    char hex[17];
    json_t *o = json_object();
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)train_data_digest(tr));
    json_object_set_new(o, "images", json_string(hex));
    if (tr->soft) {
        uint64_t h = fnv_floats(FNV_START, tr->soft, (size_t)tr->n * (size_t)tr->K);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        json_object_set_new(o, "soft", json_string(hex));
    }
    if (replay) {
        char *s = json_dumps(ts_reader_header(replay)->json, JSON_COMPACT | JSON_SORT_KEYS);
        uint64_t h = FNV_START;
        for (const char *p = s; *p; p++) h = fnv(h, (uint8_t)*p);
        free(s);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        json_object_set_new(o, "labels", json_string(hex));
    }
    if (teachers && teachers[0]) {
        uint64_t h = FNV_START;
        for (Model *const *t = teachers; *t; t++)
            for (int i = 0; i < (*t)->nparams; i++) {
                const NnVar *v = &(*t)->params[i]->var;
                size_t n = (size_t)tensor_numel(&v->v);
                float *buf = dd_malloc(n * sizeof *buf);
                nn_var_download(nn, v, buf);
                h = fnv_floats(h, buf, n);
                free(buf);
            }
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        json_object_set_new(o, "teacher", json_string(hex));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return s;
}

/* 0 when a checkpoint's inputs (NULL: not kept) are these; -1 with dd_err naming what differs. */
static int inputs_check(const char *path, const char *kept, const char *now)
{
    if (!kept || !strcmp(kept, now)) return 0;
    static const char *const what[][2] = {{"images", "training images or labels"},
                                          {"soft", "static soft labels"},
                                          {"labels", "--labels stream"},
                                          {"teacher", "--teacher weights"}};
    json_t *a = json_loads(kept, 0, NULL), *b = json_loads(now, 0, NULL);
    const char *differ = "inputs";
    for (size_t i = 0; i < sizeof what / sizeof *what; i++) {
        json_t *x = json_object_get(a, what[i][0]), *y = json_object_get(b, what[i][0]);
        if ((x || y) && !json_equal(x, y)) { /* json_equal(NULL, NULL) is 0 */
            differ = what[i][1];
            break;
        }
    }
    json_decref(a);
    json_decref(b);
    return dd_err("%s: written by a run with other %s; remove it to start afresh", path, differ);
}

static int ckpt_save(const char *path, const Model *m, const char *fp, const char *inputs, const CkptState *st,
                     uint64_t seed)
{
    int np = m->nparams, n = 0;
    char **names = dd_calloc((size_t)(3 * np + 1), sizeof *names);
    Tensor *ts = dd_calloc((size_t)(3 * np + 1), sizeof *ts);
    const Tensor **tp = dd_calloc((size_t)(3 * np + 1), sizeof *tp);
    Tensor steps = tensor_newv(DD_I64, 1, (int64_t)np);
    for (int i = 0; i < np; i++) {
        const NnParam *p = m->params[i];
        int64_t k = tensor_numel(&p->var.v);
        names[n] = dd_strdup(p->name);
        ts[n] = tensor_new(DD_F32, p->var.v.ndim, p->var.v.shape);
        nn_var_download(m->nn, &p->var, ts[n++].data);
        const float *state[2] = {p->opt_m, p->opt_v};
        for (int s = 0; s < 2; s++) {
            if (!state[s]) continue;
            size_t len = strlen(p->name) + 16;
            names[n] = dd_malloc(len);
            snprintf(names[n], len, "optim.%c.%s", s ? 'v' : 'm', p->name);
            ts[n] = tensor_new(DD_F32, p->var.v.ndim, p->var.v.shape);
            memcpy(ts[n++].data, state[s], (size_t)k * sizeof(float));
        }
        ((int64_t *)steps.data)[i] = p->opt_step;
    }
    names[n] = dd_strdup("optim.step");
    ts[n++] = steps;
    for (int i = 0; i < n; i++) tp[i] = &ts[i];
    char buf[64];
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string(CKPT_FORMAT));
    json_object_set_new(meta, "fingerprint", json_string(fp));
    json_object_set_new(meta, "inputs", json_string(inputs));
    snprintf(buf, sizeof buf, "%d", st->epoch);
    json_object_set_new(meta, "epoch", json_string(buf));
    snprintf(buf, sizeof buf, "%.17g", st->best_top1);
    json_object_set_new(meta, "best_top1", json_string(buf));
    snprintf(buf, sizeof buf, "%d", st->best_epoch);
    json_object_set_new(meta, "best_epoch", json_string(buf));
    snprintf(buf, sizeof buf, "philox seed %llu, next epoch %d", (unsigned long long)seed, st->epoch);
    json_object_set_new(meta, "rng", json_string(buf));
    int rc = st_write_file(path, n, (const char *const *)names, tp, meta);
    json_decref(meta);
    for (int i = 0; i < n; i++) {
        free(names[i]);
        tensor_free(&ts[i]);
    }
    free(names);
    free(ts);
    free(tp);
    return rc;
}

static const char *ckpt_meta(const Safetensors *st, const char *key)
{
    json_t *v = st->metadata ? json_object_get(st->metadata, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The F32 entry `name` with the shape of t, or NULL with dd_err. */
static const StEntry *ckpt_entry(const Safetensors *st, const char *path, const char *name, const Tensor *t)
{
    const StEntry *e = st_find(st, name);
    if (!e || e->t.dtype != DD_F32 || e->t.ndim != t->ndim
        || memcmp(e->t.shape, t->shape, (size_t)t->ndim * sizeof(int64_t))) {
        dd_err("%s: entry %s missing or of the wrong shape", path, name);
        return NULL;
    }
    return e;
}

static int ckpt_load(const char *path, Model *m, const char *fp, const char *inputs, CkptState *st)
{
    Safetensors s;
    if (st_read_file(path, &s) < 0) return -1;
    int rc = -1;
    const char *fmt = ckpt_meta(&s, "format"), *f = ckpt_meta(&s, "fingerprint"), *ep = ckpt_meta(&s, "epoch");
    const char *bt = ckpt_meta(&s, "best_top1"), *be = ckpt_meta(&s, "best_epoch");
    const StEntry *steps = st_find(&s, "optim.step");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) || !ep || !bt || !be) {
        dd_err("%s: not a ddpipe checkpoint", path);
        goto done;
    }
    if (!f || strcmp(f, fp)) {
        dd_err("%s: written by a run with other options or data; remove it to start afresh", path);
        goto done;
    }
    if (inputs_check(path, ckpt_meta(&s, "inputs"), inputs) < 0) goto done;
    if (!steps || steps->t.dtype != DD_I64 || steps->t.ndim != 1 || steps->t.shape[0] != m->nparams) {
        dd_err("%s: entry optim.step missing or of the wrong shape", path);
        goto done;
    }
    for (int i = 0; i < m->nparams; i++) {
        NnParam *p = m->params[i];
        const StEntry *e = ckpt_entry(&s, path, p->name, &p->var.v);
        if (!e) goto done;
        nn_var_upload(m->nn, &p->var, e->t.data);
        optim_reset(&p, 1);
        p->opt_step = ((const int64_t *)steps->t.data)[i];
        float **state[2] = {&p->opt_m, &p->opt_v};
        for (int k = 0; k < 2; k++) {
            char name[160];
            snprintf(name, sizeof name, "optim.%c.%s", k ? 'v' : 'm', p->name);
            if (!st_find(&s, name)) continue;
            if (!(e = ckpt_entry(&s, path, name, &p->var.v))) goto done;
            /* optim.c keeps CPU state in calloc'ed host memory */
            *state[k] = dd_malloc((size_t)tensor_numel(&e->t) * sizeof(float));
            memcpy(*state[k], e->t.data, (size_t)tensor_numel(&e->t) * sizeof(float));
        }
    }
    st->epoch = atoi(ep);
    st->best_top1 = strtod(bt, NULL);
    st->best_epoch = atoi(be);
    rc = 0;
done:
    st_free(&s);
    return rc;
}

/* ---- batch preparation ---- */

/* A thread's buffers for preparing an image: a holds one image (with d->img: the largest, whole), b
 * a crop of it (with d->img only). */
typedef struct {
    float *a, *b;
} Scratch;

typedef struct {
    const TrainConf *c;
    const TrainData *d;
    int64_t img;          /* floats per image */
    int n;                /* images in the batch */
    int batch;            /* the run's batch size (a replay's: relabel's) */
    float *x;             /* [batch,C,H,W] */
    int64_t *y;           /* [batch] hard labels of the base images (accuracy, CE) */
    float *t;             /* [batch,K] soft targets (logits, or probabilities for mixed hard labels) */
    int soft;             /* 1: t holds the targets */
    Scratch *scr;         /* [nscr]: one per thread preparing images */
    int nscr;
    int64_t *perm;        /* [batch] */
} Batch;

/* Rows [top, top+h), columns [left, left+w) of kept image idx as floats in [0,1] into dst [C,h,w]. */
static void kept_box(const TrainData *d, int64_t idx, int top, int left, int h, int w, float *dst)
{
    const TrainImage *im = &d->img[idx];
    const uint8_t *p = d->pix + im->off;
    for (int ch = 0; ch < d->C; ch++)
        for (int i = 0; i < h; i++) {
            int64_t at = ((int64_t)ch * im->h + top + i) * im->w + left;
            float *o = dst + ((int64_t)ch * h + i) * w;
            if (im->f32) memcpy(o, p + at * 4, (size_t)w * sizeof(float));
            else
                for (int j = 0; j < w; j++) o[j] = (float)p[at + j] / 255.0f;
        }
}

/* Kept image idx brought to d->H x d->W into dst: its RRC box resized antialiased, or Resize +
 * CenterCrop; ShufflePatches first, on the whole image. Draws from r in prep_image's order. */
static void prep_kept(Batch *b, int64_t idx, DdRng *r, float *dst, const Scratch *s)
{
    const TrainConf *c = b->c;
    const TrainData *d = b->d;
    const int h = d->img[idx].h, w = d->img[idx].w;
    const float *whole = NULL;
    if (c->shuffle_patches > 1 || c->rrc_hi <= 0) {
        kept_box(d, idx, 0, 0, h, w, s->a);
        if (c->shuffle_patches > 1) trainaug_shuffle_patches(r, s->a, d->C, h, w, c->shuffle_patches);
        whole = s->a;
    }
    if (c->rrc_hi <= 0) {
        img_resize_short_center_crop(whole, d->C, h, w, d->H, d->H, dst);
        return;
    }
    AugBox a = aug_rrc(r, h, w, c->rrc_lo, c->rrc_hi, 3.0 / 4.0, 4.0 / 3.0);
    if (whole) {
        for (int ch = 0; ch < d->C; ch++)
            for (int i = 0; i < a.h; i++)
                memcpy(s->b + ((int64_t)ch * a.h + i) * a.w, whole + ((int64_t)ch * h + a.top + i) * w + a.left,
                       (size_t)a.w * sizeof(float));
    } else {
        kept_box(d, idx, a.top, a.left, a.h, a.w, s->b);
    }
    img_resize_bilinear_aa(s->b, d->C, a.h, a.w, dst, d->H, d->W);
}

/* Image `idx` of the data set, augmented with its (epoch, image) draws, into dst. */
static void prep_image(Batch *b, int64_t idx, int epoch, float *dst, const Scratch *s)
{
    const TrainConf *c = b->c;
    const TrainData *d = b->d;
    DdRng r;
    dd_rng_init(&r, c->seed, AUG_STREAM_TRAIN, ((uint64_t)epoch << 32) + (uint64_t)idx);
    if (d->img) {
        prep_kept(b, idx, &r, dst, s);
        if (c->rrc_hi <= 0 && c->crop_pad > 0) {
            int dy = (int)dd_rng_int(&r, 0, 2 * c->crop_pad), dx = (int)dd_rng_int(&r, 0, 2 * c->crop_pad);
            memcpy(s->b, dst, (size_t)b->img * sizeof(float));
            trainaug_pad_crop(s->b, d->C, d->H, d->W, c->crop_pad, dy, dx, dst);
        }
        if (c->flip && dd_rng_uniform(&r) < 0.5) trainaug_flip(dst, d->C, d->H, d->W);
        return;
    }
    const float *src = d->x + idx * b->img;
    if (c->shuffle_patches > 1) {
        memcpy(s->a, src, (size_t)b->img * sizeof(float));
        trainaug_shuffle_patches(&r, s->a, d->C, d->H, d->W, c->shuffle_patches);
        src = s->a;
    }
    if (c->rrc_hi > 0) {
        AugBox a = aug_rrc(&r, d->H, d->W, c->rrc_lo, c->rrc_hi, 3.0 / 4.0, 4.0 / 3.0);
        img_crop_resize(src, d->C, d->H, d->W, a.top, a.left, a.h, a.w, dst, d->H, d->W);
    } else if (c->crop_pad > 0) {
        int dy = (int)dd_rng_int(&r, 0, 2 * c->crop_pad), dx = (int)dd_rng_int(&r, 0, 2 * c->crop_pad);
        trainaug_pad_crop(src, d->C, d->H, d->W, c->crop_pad, dy, dx, dst);
    } else {
        memcpy(dst, src, (size_t)b->img * sizeof(float));
    }
    if (c->flip && dd_rng_uniform(&r) < 0.5) trainaug_flip(dst, d->C, d->H, d->W);
}

typedef struct {
    Batch *b;
    const int64_t *order;
    int epoch, t;
    int64_t *next;        /* the next batch position to take (atomic) */
} PrepJob;

static void *prep_worker(void *arg)
{
    PrepJob *j = arg;
    Batch *b = j->b;
    for (int64_t i; (i = __atomic_fetch_add(j->next, 1, __ATOMIC_RELAXED)) < b->n;)
        prep_image(b, j->order[i], j->epoch, b->x + i * b->img, &b->scr[j->t]);
    return NULL;
}

/* Images order[0..n) of epoch `epoch` into b->x, on b->nscr threads (the caller among them). */
static void prep_images(Batch *b, const int64_t *order, int epoch)
{
    int64_t next = 0;
    int nt = b->nscr < b->n ? b->nscr : b->n, started = 0;
    if (nt < 1) nt = 1;
    PrepJob *job = dd_malloc((size_t)nt * sizeof *job);
    pthread_t *tid = dd_malloc((size_t)nt * sizeof *tid);
    for (int t = 0; t < nt; t++) job[t] = (PrepJob){b, order, epoch, t, &next};
    for (; started + 1 < nt; started++)   /* a thread that fails to start leaves its share to the rest */
        if (pthread_create(&tid[started], NULL, prep_worker, &job[started + 1])) break;
    prep_worker(&job[0]);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    free(job);
    free(tid);
}

/* The batch of images order[0..n) of epoch `epoch`: augmented images, labels, targets (hard
 * labels become probabilities only when mixed; static soft labels are copied), then CutMix or
 * MixUp with the batch's draws, applied to the targets too. */
static void prep_batch(Batch *b, const int64_t *order, int epoch, int64_t bi)
{
    const TrainConf *c = b->c;
    const TrainData *d = b->d;
    const int n = b->n, K = d->K;
    const int mixing = c->cutmix > 0 || c->mixup > 0;
    prep_images(b, order, epoch);
    for (int i = 0; i < n; i++) b->y[i] = d->y[order[i]];
    b->soft = c->labels != TRAIN_HARD || mixing;
    if (c->labels == TRAIN_STATIC) {
        for (int i = 0; i < n; i++) memcpy(b->t + (int64_t)i * K, d->soft + order[i] * K, (size_t)K * sizeof(float));
    } else if (c->labels == TRAIN_HARD && mixing) {
        float ls = c->label_smoothing, off = ls / (float)K;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++) b->t[(int64_t)i * K + k] = off + (k == b->y[i] ? 1.0f - ls : 0.0f);
    }
    if (!mixing) return;
    DdRng r;
    dd_rng_init(&r, c->seed, TRAIN_STREAM_BATCH, ((uint64_t)epoch << 32) + (uint64_t)bi);
    dd_rng_perm(&r, b->perm, n);
    double a = c->cutmix > 0 ? c->cutmix : c->mixup;
    double lam = dd_rng_beta(&r, a, a);
    if (c->cutmix > 0) {
        int box[4];
        trainaug_cutmix_box(&r, d->H, d->W, lam, box);
        trainaug_cutmix(b->x, n, d->C, d->H, d->W, b->perm, box);
        lam = 1.0 - (double)(box[2] - box[0]) * (box[3] - box[1]) / ((double)d->H * d->W);
    } else {
        trainaug_mix_rows(b->x, n, b->img, b->perm, (float)lam);
    }
    /* the teacher labels the mixed images itself */
    if (c->labels != TRAIN_TEACHER) trainaug_mix_rows(b->t, n, K, b->perm, (float)lam);
}

/* A replay batch: crops, flips, CutMix from the stream; targets = its logits. */
static void prep_replay(Batch *b, const TrainReplay *rp)
{
    const TrainData *d = b->d;
    b->n = rp->n;
    for (int i = 0; i < rp->n; i++) {
        const AugBox *a = &rp->crop[i];
        float *dst = b->x + i * b->img;
        img_crop_resize(d->x + rp->index[i] * b->img, d->C, d->H, d->W, a->top, a->left, a->h, a->w, dst, d->H,
                        d->W);
        if (rp->flip[i]) trainaug_flip(dst, d->C, d->H, d->W);
        b->y[i] = d->y[rp->index[i]];
    }
    trainaug_cutmix(b->x, rp->n, d->C, d->H, d->W, rp->perm, rp->box);
    memcpy(b->t, rp->logits, (size_t)rp->n * (size_t)rp->K * sizeof(float));
    b->soft = 1;
}

/* The mean of the eval-mode teachers' logits on the prepared batch into b->t (summed in teacher
 * order, then divided, as val_dyn.py's sum(...) / M; one teacher: its logits); -1 with dd_err when
 * a teacher's are not finite. */
static int teacher_targets(Nn *nn, Model *const *teachers, Batch *b)
{
    const TrainData *d = b->d;
    const int64_t len = (int64_t)b->n * d->K;
    int nt = 0;
    while (teachers[nt]) nt++;
    float *one = nt > 1 ? dd_malloc((size_t)len * sizeof *one) : b->t;
    int old = nn_set_grad(nn, 0), rc = 0;
    Tensor x = {.dtype = DD_F32, .device = DD_CPU, .ndim = 4, .shape = {b->n, d->C, d->H, d->W}, .data = b->x};
    for (int k = 0; k < nt && !rc; k++) {
        nn_var_download(nn, model_forward(teachers[k], nn, nn_input(nn, &x, 0), 0), one);
        nn_reset(nn);
        for (int64_t i = 0; i < len && !rc; i++)
            if (!isfinite(one[i])) {
                if (nt > 1) dd_err("teacher %d's logits hold a non-finite value (image %lld of the batch)", k + 1,
                                   (long long)(i / d->K));
                else dd_err("the teacher's logits hold a non-finite value (image %lld of the batch)",
                            (long long)(i / d->K));
                rc = -1;
            }
        if (nt > 1)
            for (int64_t i = 0; i < len; i++) b->t[i] = k ? b->t[i] + one[i] : one[i];
    }
    if (nt > 1) {
        for (int64_t i = 0; i < len; i++) b->t[i] /= (float)nt;
        free(one);
    }
    nn_set_grad(nn, old);
    b->soft = 1;
    return rc;
}

/* ---- the loop ---- */

typedef struct {
    double loss;          /* sum over images of the loss */
    int64_t seen, correct;
} EpochStats;

/* One optimizer step over the prepared batch, in micro-batches; with a scaler (fp16), backward
 * from the scaled loss and the step skipped where a gradient overflowed. Returns 0, or -1 with
 * dd_err on a non-finite loss.
 * Micro-batches as the FKD reference's gradient accumulation (FADRM's and SRe2L's train_fkd.py):
 * slices of ceil(batch / micro) images, so a smaller last batch has fewer of them (a batch of 8
 * under batch 16, micro 2: one slice of 8, which BN sees whole); in a full batch each slice's
 * loss weighs its share of the batch (1/micro where micro divides the batch), in a smaller one
 * 1/micro, as the reference's loss / gradient_accumulation_steps (that batch's gradient is then
 * smaller than a mean over it). */
static int train_step(Nn *nn, const TrainConf *c, Model *m, Batch *b, float *logits, EpochStats *es,
                      OptimScaler *sc)
{
    const TrainData *d = b->d;
    const int K = d->K, full = b->n >= b->batch;
    const int chunk = (b->batch + c->micro - 1) / c->micro;
    nn_zero_grad(nn, m->params, m->nparams);
    for (int s = 0; s < b->n; s += chunk) {
        int n = b->n - s < chunk ? b->n - s : chunk;
        Tensor x = {.dtype = DD_F32, .device = DD_CPU, .ndim = 4, .shape = {n, d->C, d->H, d->W},
                    .data = b->x + s * b->img};
        NnVar *xin = nn_input(nn, &x, 0);
        NnVar *out = nn_done_with(nn, model_forward(m, nn, xin, 1), xin), *loss;
        if (b->soft) {
            Tensor t = {.dtype = DD_F32, .device = DD_CPU, .ndim = 2, .shape = {n, K}, .data = b->t + (int64_t)s * K};
            NnVar *tv = nn_input(nn, &t, 0);
            loss = c->labels == TRAIN_HARD ? nn_soft_cross_entropy(nn, out, tv) : nn_kl_div(nn, out, tv, c->T);
        } else {
            Tensor y = {.dtype = DD_I64, .device = DD_CPU, .ndim = 1, .shape = {n}, .data = b->y + s};
            loss = nn_cross_entropy(nn, out, &y, c->label_smoothing);
        }
        float lv = nn_item(nn, loss);
        if (!isfinite(lv)) {
            nn_reset(nn);
            return dd_err("loss is %s", isnan(lv) ? "NaN" : "infinite");
        }
        const float wgt = full ? (float)n / (float)b->n : 1.0f / (float)c->micro;
        nn_backward_seed(nn, nn_scale(nn, loss, wgt), sc ? sc->scale : 1.0f);
        nn_var_download(nn, out, logits);
        nn_reset(nn);
        for (int i = 0; i < n; i++) {
            const float *l = logits + (int64_t)i * K;
            int arg = 0;
            for (int k = 1; k < K; k++) arg = l[k] > l[arg] ? k : arg;
            es->correct += arg == b->y[s + i];
        }
        es->loss += (double)lv * n;
        es->seen += n;
    }
    int take = sc ? optim_unscale(nn, sc, m->params, m->nparams) : 1;
    if (take <= 0) return take;
    return optim_step(nn, &c->opt, m->params, m->nparams);
}

/* Prints v, or null when it is not finite (JSON has no NaN). */
static void json_num(FILE *f, const char *key, double v, int last)
{
    if (isfinite(v)) fprintf(f, "\"%s\":%.6g%s", key, v, last ? "" : ",");
    else fprintf(f, "\"%s\":null%s", key, last ? "" : ",");
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int train_run(Nn *nn, const TrainConf *c, Model *m, const TrainData *tr, const TrainData *val,
              Model *const *teachers, TsReader *replay, const TrainReplayInfo *rinfo, TrainResult *res)
{
    memset(res, 0, sizeof *res);
    /* fp16 convolutions and linear layers: loss scaling (not kept in checkpoints: a resumed run
     * starts from the initial scale) */
    OptimScaler sc = optim_scaler_new(), *scp = nn_precision(nn) == NN_FP16 ? &sc : NULL;
    res->final_top1 = res->final_top5 = res->best_top1 = res->train_loss = res->train_acc = NAN;
    if (model_check_input(m, tr->C, tr->H, tr->W) < 0 || (val && model_check_input(m, val->C, val->H, val->W) < 0))
        return -1;
    for (int k = 0; teachers && teachers[k]; k++)
        if (model_check_input(teachers[k], tr->C, tr->H, tr->W) < 0) return -1;
    if (c->labels == TRAIN_TEACHER && !(teachers && teachers[0])) return dd_err("online soft labels need a teacher");
    if (replay && tr->img)
        return dd_err("%s: replays crops of one image size; the training images are kept at several sizes",
                      ts_reader_name(replay));
    if (replay && (rinfo->images != tr->n || rinfo->H != tr->H || rinfo->W != tr->W))
        return dd_err("%s: made for %lld images of %dx%d, the training stream has %lld of %dx%d",
                      ts_reader_name(replay), (long long)rinfo->images, rinfo->H, rinfo->W, (long long)tr->n, tr->H,
                      tr->W);
    if (replay && rinfo->has_digest) {
        uint64_t dg = train_data_digest(tr);
        if (dg != rinfo->digest)
            return dd_err("%s: made for other images (digest %016llx; these %lld images' is %016llx): the soft "
                          "labels belong to the images relabel read; relabel these", ts_reader_name(replay),
                          (unsigned long long)rinfo->digest, (long long)tr->n, (unsigned long long)dg);
    }
    if (replay && rinfo->epochs < c->epochs)
        return dd_err("%s: holds %lld epochs of labels, %d asked for", ts_reader_name(replay),
                      (long long)rinfo->epochs, c->epochs);
    const int batch = c->labels == TRAIN_REPLAY ? rinfo->batch : c->batch;
    const int64_t steps_per_epoch = ceil_div(tr->n, batch);   /* replay: rinfo->images == tr->n */
    char *fp = fingerprint(c, m, tr), *inputs = c->checkpoint ? inputs_digest(nn, tr, teachers, replay) : NULL;
    CkptState st = {0, NAN, 0};
    struct stat sb;
    if (c->checkpoint && stat(c->checkpoint, &sb) == 0) {
        if (ckpt_load(c->checkpoint, m, fp, inputs, &st) < 0) {
            free(fp);
            free(inputs);
            return -1;
        }
        if (st.epoch > c->epochs) {
            free(fp);
            free(inputs);
            return dd_err("%s: holds epoch %d of a %d-epoch run", c->checkpoint, st.epoch, c->epochs);
        }
    }
    Batch b = {.c = c, .d = tr, .img = (int64_t)tr->C * tr->H * tr->W, .batch = batch};
    b.x = dd_malloc((size_t)batch * (size_t)b.img * sizeof(float));
    b.y = dd_malloc((size_t)batch * sizeof(int64_t));
    b.t = dd_malloc((size_t)batch * (size_t)tr->K * sizeof(float));
    /* images kept at their own sizes are prepared on threads (each image's draws are its own, so
     * the batch is the same for any count); an in-memory batch costs less than starting them */
    int64_t kept = (int64_t)tr->C * tr->max_hw, scr = kept > b.img ? kept : b.img;
    b.nscr = tr->img && c->threads > 1 ? (c->threads < batch ? c->threads : batch) : 1;
    b.scr = dd_calloc((size_t)b.nscr, sizeof *b.scr);
    for (int t = 0; t < b.nscr; t++) {
        b.scr[t].a = dd_malloc((size_t)scr * sizeof(float));
        b.scr[t].b = tr->img ? dd_malloc((size_t)scr * sizeof(float)) : NULL;
    }
    b.perm = dd_malloc((size_t)batch * sizeof(int64_t));
    int64_t *order = dd_malloc((size_t)tr->n * sizeof(int64_t));
    /* replay: the epoch (+1) in which each image was last drawn: every image once per epoch, as relabel writes */
    int32_t *drawn = replay ? dd_calloc((size_t)tr->n, sizeof(int32_t)) : NULL;
    float *logits = dd_malloc((size_t)batch * (size_t)tr->K * sizeof(float));
    TsRecord rec;
    ts_record_init(&rec);
    TrainReplay rp = {0};
    DdProgress prog;
    dd_progress_start(&prog, "steps", steps_per_epoch * (c->epochs - st.epoch), c->quiet);
    double t0 = dd_now();
    int rc = 0, epoch = st.epoch;
    TrainConf cc = *c;
    int64_t done = 0;

    /* replay: skip the records of the epochs a checkpoint already holds */
    for (int64_t i = 0; replay && rc == 0 && i < (int64_t)st.epoch * steps_per_epoch; i++) {
        int r = ts_reader_next(replay, &rec);
        if (r != 1)
            rc = r < 0 ? -1 : dd_err("%s: ends before epoch %d (resumed there)", ts_reader_name(replay), st.epoch + 1);
    }

    for (; rc == 0 && epoch < c->epochs; epoch++) {
        EpochStats es = {0};
        cc.opt.lr = optim_cosine_lr(c->opt.lr, epoch, c->epochs, c->eta);
        if (c->labels != TRAIN_REPLAY) {
            if (c->shuffle) {
                DdRng r;
                dd_rng_init(&r, c->seed, TRAIN_STREAM_ORDER, (uint64_t)epoch);
                dd_rng_perm(&r, order, tr->n);
            } else {
                for (int64_t i = 0; i < tr->n; i++) order[i] = i;
            }
        }
        for (int64_t bi = 0; rc == 0 && bi < steps_per_epoch; bi++) {
            nn_set_rng(nn, c->seed, (uint64_t)epoch * (uint64_t)steps_per_epoch + (uint64_t)bi);
            if (c->labels == TRAIN_REPLAY) {
                int r = ts_reader_next(replay, &rec);
                if (r != 1) {
                    rc = r < 0 ? -1
                                : dd_err("%s: ends before record e%06d_b%06lld (batch %lld of %lld of epoch %d of %d)",
                                         ts_reader_name(replay), epoch, (long long)bi, (long long)bi + 1,
                                         (long long)steps_per_epoch, epoch + 1, c->epochs);
                    break;
                }
                if (train_replay_from_record(&rec, rinfo, tr->K, &rp) < 0) {
                    rc = dd_err_prefix("%s: record %s", ts_reader_name(replay), rec.key);
                    break;
                }
                if (rp.epoch != epoch || rp.batch != bi) {
                    train_replay_free(&rp);
                    rc = dd_err("%s: record %s: want record e%06d_b%06lld here (replay out of step)",
                                ts_reader_name(replay), rec.key, epoch, (long long)bi);
                    break;
                }
                const int64_t left = tr->n - bi * batch, want = left < batch ? left : batch;
                if (rp.n != want)
                    rc = dd_err("%s: record %s: %d images, want %lld (each image once per epoch, in batches of %d)",
                                ts_reader_name(replay), rec.key, rp.n, (long long)want, batch);
                for (int i = 0; rc == 0 && i < rp.n; i++) {
                    if (drawn[rp.index[i]] == epoch + 1)
                        rc = dd_err("%s: record %s: image %lld a second time in epoch %d (each image once per epoch)",
                                    ts_reader_name(replay), rec.key, (long long)rp.index[i], epoch + 1);
                    drawn[rp.index[i]] = epoch + 1;
                }
                if (rc < 0) {
                    train_replay_free(&rp);
                    break;
                }
                prep_replay(&b, &rp);
                train_replay_free(&rp);
            } else {
                int64_t s = bi * batch;
                b.n = (int)(tr->n - s < batch ? tr->n - s : batch);
                prep_batch(&b, order + s, epoch, bi);
                if (c->labels == TRAIN_TEACHER && teacher_targets(nn, teachers, &b) < 0) {
                    rc = dd_err_prefix("epoch %d step %lld", epoch + 1, (long long)bi + 1);
                    break;
                }
            }
            if (train_step(nn, &cc, m, &b, logits, &es, scp) < 0) {
                rc = dd_err_prefix("epoch %d step %lld", epoch + 1, (long long)bi + 1);
                break;
            }
            dd_progress_update(&prog, ++done);
        }
        if (rc) break;
        res->train_loss = es.loss / (double)es.seen;
        res->train_acc = (double)es.correct / (double)es.seen;
        const int ep = epoch + 1;
        TrainEval ev = {0, NAN, NAN, NAN};
        if (val && (ep % c->eval_every == 0 || ep == c->epochs)) {
            if (train_eval(nn, m, val, c->eval_batch, &ev) < 0) {
                rc = -1;
                break;
            }
            res->final_top1 = 100.0 * ev.top1;
            res->final_top5 = 100.0 * ev.top5;
            if (!(st.best_top1 >= res->final_top1)) {
                st.best_top1 = res->final_top1;
                st.best_epoch = ep;
            }
        }
        if (c->metrics && (ep % c->eval_every == 0 || ep == c->epochs)) {
            dd_progress_break(); /* stdout and stderr may share a terminal */
            fprintf(c->metrics, "{\"epoch\":%d,", ep);
            json_num(c->metrics, "lr", cc.opt.lr, 0);
            json_num(c->metrics, "train_loss", res->train_loss, 0);
            json_num(c->metrics, "train_acc", 100.0 * res->train_acc, 0);
            json_num(c->metrics, "val_top1", 100.0 * ev.top1, 0);
            json_num(c->metrics, "val_top5", 100.0 * ev.top5, 0);
            json_num(c->metrics, "val_loss", ev.loss, 0);
            json_num(c->metrics, "seconds", dd_now() - t0, 1);
            fprintf(c->metrics, "}\n");
            fflush(c->metrics);
        }
        st.epoch = ep;
        /* a slice's end is checkpointed whatever --checkpoint-every says: the next slice resumes there.
         * The slice is the one that reaches epoch N: a run resumed past it (the same command again)
         * runs on to the end, as the one run would have. */
        const int stop = c->stop_after > 0 && ep == c->stop_after && ep < c->epochs;
        if (c->checkpoint && (ep % c->checkpoint_every == 0 || ep == c->epochs || stop)
            && ckpt_save(c->checkpoint, m, fp, inputs, &st, c->seed) < 0) {
            rc = -1;
            break;
        }
        if (stop) {
            res->stopped = 1;
            break;
        }
    }
    dd_progress_end(&prog);
    res->epochs_done = st.epoch;
    res->best_top1 = st.best_top1;
    res->best_epoch = st.best_epoch;
    res->seconds = dd_now() - t0;
    /* a run with nothing left to train (0 epochs, or resumed at its end) still reports */
    if (rc == 0 && !res->stopped && val && !isfinite(res->final_top1)) {
        TrainEval ev;
        if (train_eval(nn, m, val, c->eval_batch, &ev) < 0) {
            rc = -1;
        } else {
            res->final_top1 = 100.0 * ev.top1;
            res->final_top5 = 100.0 * ev.top5;
            if (!(res->best_top1 >= res->final_top1)) {
                res->best_top1 = res->final_top1;
                res->best_epoch = st.epoch;
            }
        }
    }
    if (rc == 0 && !res->stopped && c->metrics) {
        fprintf(c->metrics, "{");
        json_num(c->metrics, "final_top1", res->final_top1, 0);
        json_num(c->metrics, "best_top1", res->best_top1, 0);
        if (res->best_epoch) fprintf(c->metrics, "\"best_epoch\":%d,", res->best_epoch);
        else fprintf(c->metrics, "\"best_epoch\":null,"); /* nothing evaluated (no --val) */
        fprintf(c->metrics, "\"epochs\":%d,", res->epochs_done);
        json_num(c->metrics, "top1", res->final_top1, 0);
        json_num(c->metrics, "top5", res->final_top5, 0);
        json_t *r = train_recipe(c);
        char *rs = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(10));
        fprintf(c->metrics, "\"recipe\":%s}\n", rs);
        free(rs);
        json_decref(r);
        fflush(c->metrics);
    }
    ts_record_free(&rec);
    free(b.x);
    free(b.y);
    free(b.t);
    for (int t = 0; t < b.nscr; t++) {
        free(b.scr[t].a);
        free(b.scr[t].b);
    }
    free(b.scr);
    free(b.perm);
    free(order);
    free(drawn);
    free(logits);
    free(fp);
    free(inputs);
    return rc;
}

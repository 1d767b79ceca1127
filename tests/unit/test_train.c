/* test_train.c - evaltrain's loop (libcommon/distill/train.c) and augmentations (trainaug.c):
 * the host-side augmentations against direct definitions; the replay record layout round trip
 * through a real stream file (and relabel's top-k form); replay training equal to static-label training on batches prepared
 * by hand from the layout's definition; checkpoint resume equal to an uninterrupted run; images
 * kept at their own sizes (evaltrain --res: U8 and F32 storage alike, any preparation thread count
 * alike, equal to the in-memory set within 1e-6 at one size, resume, refusals); several online
 * teachers equal to static labels of their mean logits; a non-finite loss stopping with the epoch
 * and step named; evaluation counts. */
#include "libcommon/distill/relabel.h"
#include "libcommon/distill/train.h"
#include "libcommon/distill/trainaug.h"
#include "libcommon/image/resize.h"
#include "tests/unit/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 12, C = 1, S = 8, K = 3, B = 4 };

static char tmpdir[] = "/tmp/test_train.XXXXXX", replay_path[64], ckpt_path[64];

static void test_trainaug(void)
{
    float img[2 * 3 * 4], orig[2 * 3 * 4], out[2 * 3 * 4];
    for (int i = 0; i < 24; i++) img[i] = orig[i] = (float)i;
    trainaug_flip(img, 2, 3, 4);
    CHECK(img[0] == 3 && img[3] == 0 && img[12] == 15);
    trainaug_flip(img, 2, 3, 4);
    CHECK(!memcmp(img, orig, sizeof img));
    trainaug_pad_crop(img, 2, 3, 4, 2, 2, 2, out);           /* centred: identity */
    CHECK(!memcmp(out, orig, sizeof out));
    trainaug_pad_crop(img, 2, 3, 4, 1, 0, 2, out);           /* down 1 row, left 1 col */
    CHECK(out[0] == 0 && out[1] == 0 && out[4] == 1 && out[5] == 2 && out[7] == 0);

    DdRng r;
    dd_rng_init(&r, 1, 2, 3);
    for (int t = 0; t < 200; t++) {
        int box[4];
        trainaug_cutmix_box(&r, 7, 9, dd_rng_uniform(&r), box);
        CHECK(0 <= box[0] && box[0] <= box[2] && box[2] <= 7 && 0 <= box[1] && box[1] <= box[3] && box[3] <= 9);
    }
    /* patch shuffle keeps the multiset of pixel values and moves whole strips */
    float p[16], q[16];
    for (int i = 0; i < 16; i++) p[i] = q[i] = (float)i;
    dd_rng_init(&r, 5, 2, 3);
    trainaug_shuffle_patches(&r, p, 1, 4, 4, 2);
    float sum = 0;
    for (int i = 0; i < 16; i++) sum += p[i];
    CHECK(sum == 120);
    CHECK(p[1] == p[0] + 1 && p[3] == p[2] + 1);

    float x[6] = {1, 2, 3, 4, 5, 6};
    int64_t perm[3] = {2, 0, 1};
    trainaug_mix_rows(x, 3, 2, perm, 0.25f);
    CHECK(x[0] == 0.25f * 1 + 0.75f * 5 && x[3] == 0.25f * 4 + 0.75f * 2);
    float cm[2 * 1 * 2 * 2] = {1, 1, 1, 1, 2, 2, 2, 2};
    int64_t swap[2] = {1, 0};
    int box[4] = {0, 1, 2, 2};
    trainaug_cutmix(cm, 2, 1, 2, 2, swap, box);
    CHECK(cm[0] == 1 && cm[1] == 2 && cm[3] == 2 && cm[5] == 1 && cm[4] == 2);
    (void)q;
}

static void make_data(TrainData *d)
{
    memset(d, 0, sizeof *d);
    d->n = N;
    d->C = C;
    d->H = d->W = S;
    d->K = K;
    d->x = dd_malloc(N * C * S * S * sizeof(float));
    d->y = dd_malloc(N * sizeof(int64_t));
    DdRng r;
    dd_rng_init(&r, 7, 1, 0);
    for (int i = 0; i < N * C * S * S; i++) d->x[i] = (float)dd_rng_uniform(&r);
    for (int i = 0; i < N; i++) d->y[i] = i % K;
}

static TrainConf base_conf(TrainLabelKind kind)
{
    TrainConf c = {.labels = kind, .opt = optim_adamw(1e-2, 0.9, 0.999, 1e-8, 0.01), .eta = 1, .epochs = 2,
                   .batch = B, .micro = 2, .shuffle = 0, .seed = 3, .T = 4, .eval_every = 1, .eval_batch = 5,
                   .checkpoint_every = 1, .quiet = 1};
    return c;
}

/* The random replay batch (e, b) of `nb` per epoch over N images. */
static void make_replay(TrainReplay *rp, int64_t e, int64_t b, int n)
{
    DdRng r;
    dd_rng_init(&r, 11, 2, (uint64_t)(e * 100 + b));
    rp->epoch = e;
    rp->batch = b;
    rp->n = n;
    rp->K = K;
    rp->index = dd_malloc((size_t)n * sizeof(int64_t));
    rp->perm = dd_malloc((size_t)n * sizeof(int64_t));
    rp->crop = dd_malloc((size_t)n * sizeof(AugBox));
    rp->flip = dd_malloc((size_t)n);
    rp->logits = dd_malloc((size_t)n * K * sizeof(float));
    int64_t order[N]; /* one permutation per epoch, batch b its slice: every image once per epoch, as relabel */
    DdRng ro;
    dd_rng_init(&ro, 11, 3, (uint64_t)e);
    dd_rng_perm(&ro, order, N);
    for (int i = 0; i < n; i++) {
        rp->index[i] = order[(b * n + i) % N];
        rp->crop[i] = aug_rrc(&r, S, S, 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0);
        rp->flip[i] = dd_rng_uniform(&r) < 0.5;
    }
    dd_rng_perm(&r, rp->perm, n);
    rp->lam = (float)dd_rng_uniform(&r);
    trainaug_cutmix_box(&r, S, S, rp->lam, rp->box);
    for (int i = 0; i < n * K; i++) rp->logits[i] = dd_f16_to_f32(dd_f32_to_f16((float)(3 * dd_rng_normal(&r))));
}

static Model *new_model(Nn *nn)
{
    Model *m = model_create(nn, "convnet1:width=4", C, K, S, 5);
    CHECK(m != NULL);
    return m;
}

static int same_weights(const Model *a, const Model *b)
{
    for (int i = 0; i < a->nparams; i++)
        if (memcmp(a->params[i]->var.v.data, b->params[i]->var.v.data, (size_t)tensor_nbytes(&a->params[i]->var.v)))
            return 0;
    return 1;
}

/* Replay (one epoch, batches of B) equals static-label training on the batches built by hand:
 * crop -> resize, flip, CutMix of the box from image perm[i], targets = logits. */
static void test_replay(Nn *nn, const TrainData *d)
{
    const char *path = replay_path;
    const char *names[K] = {"a", "b", "c"};
    TsHeader *h = ts_header_new(K, names);
    TrainReplayInfo info = {N, 1, B, S, S};
    train_replay_header_set(h, &info);
    TsWriter *w = ts_writer_open(path, h);
    CHECK(w != NULL);
    TsRecord rec;
    ts_record_init(&rec);
    TrainData hand = *d;
    hand.x = dd_malloc(N * C * S * S * sizeof(float));
    hand.y = dd_malloc(N * sizeof(int64_t));
    hand.soft = dd_malloc(N * K * sizeof(float));
    const int64_t img = C * S * S;
    for (int b = 0; b < N / B; b++) {
        TrainReplay rp, back;
        make_replay(&rp, 0, b, B);
        train_replay_to_record(&rp, S, S, &rec);
        CHECK(ts_writer_put(w, &rec) == 0);
        CHECK(train_replay_from_record(&rec, &info, K, &back) == 0);
        CHECK(back.n == B && back.epoch == 0 && back.batch == b && back.lam == rp.lam);
        CHECK(!memcmp(back.crop, rp.crop, B * sizeof(AugBox)) && !memcmp(back.box, rp.box, sizeof rp.box));
        CHECK(!memcmp(back.logits, rp.logits, B * K * sizeof(float)));
        float *x = hand.x + b * B * img;
        for (int i = 0; i < B; i++) {
            const AugBox *a = &rp.crop[i];
            img_crop_resize(d->x + rp.index[i] * img, C, S, S, a->top, a->left, a->h, a->w, x + i * img, S, S);
            if (rp.flip[i]) trainaug_flip(x + i * img, C, S, S);
            hand.y[b * B + i] = d->y[rp.index[i]];
        }
        float orig[B * C * S * S];
        memcpy(orig, x, sizeof orig);
        for (int i = 0; i < B; i++)
            for (int y = rp.box[0]; y < rp.box[2]; y++)
                for (int xx = rp.box[1]; xx < rp.box[3]; xx++) x[i * img + y * S + xx] = orig[rp.perm[i] * img + y * S + xx];
        memcpy(hand.soft + b * B * K, rp.logits, B * K * sizeof(float));
        train_replay_free(&rp);
        train_replay_free(&back);
    }
    CHECK(ts_writer_close(w) == 0);

    /* malformed records are refused */
    TrainReplay rp, back;
    make_replay(&rp, 0, 0, B);
    rp.perm[0] = rp.perm[1];
    train_replay_to_record(&rp, S, S, &rec);
    CHECK(train_replay_from_record(&rec, &info, K, &back) < 0 && strstr(dd_errmsg(), "perm"));
    train_replay_free(&rp);
    make_replay(&rp, 0, 0, B);
    rp.index[2] = N;
    train_replay_to_record(&rp, S, S, &rec);
    CHECK(train_replay_from_record(&rec, &info, K, &back) < 0 && strstr(dd_errmsg(), "index"));
    train_replay_free(&rp);
    make_replay(&rp, 0, 0, B); /* a flip other than 0 or 1, lam outside [0, 1] */
    train_replay_to_record(&rp, S, S, &rec);
    ((uint8_t *)ts_record_cget(&rec, "flips")->data)[1] = 2;
    CHECK_MSG(train_replay_from_record(&rec, &info, K, &back) < 0 && strstr(dd_errmsg(), "flips[1] = 2: not 0 or 1"),
              "%s", dd_errmsg());
    train_replay_to_record(&rp, S, S, &rec);
    *(float *)ts_record_cget(&rec, "lam")->data = 1.5f;
    CHECK_MSG(train_replay_from_record(&rec, &info, K, &back) < 0 && strstr(dd_errmsg(), "lam = 1.5: not in [0, 1]"),
              "%s", dd_errmsg());
    train_replay_free(&rp);
    /* a field of the wrong shape: the message gives the shape wanted ("I32[4]", not "I32[40]") */
    make_replay(&rp, 0, 0, B);
    train_replay_to_record(&rp, S, S, &rec);
    ((Tensor *)ts_record_cget(&rec, "box"))->shape[0] = 3;
    CHECK_MSG(train_replay_from_record(&rec, &info, K, &back) < 0 && strstr(dd_errmsg(), "want I32[4]"), "%s",
              dd_errmsg());
    ((Tensor *)ts_record_cget(&rec, "box"))->shape[0] = 4;
    ((Tensor *)ts_record_cget(&rec, "lam"))->ndim = 1, ((Tensor *)ts_record_cget(&rec, "lam"))->shape[0] = 1;
    CHECK_MSG(train_replay_from_record(&rec, &info, K, &back) < 0 && strstr(dd_errmsg(), "want F32[]"), "%s",
              dd_errmsg());
    ((Tensor *)ts_record_cget(&rec, "lam"))->ndim = 0;
    train_replay_free(&rp);

    /* relabel's top-k form in place of "logits" */
    make_replay(&rp, 0, 0, B);
    train_replay_to_record(&rp, S, S, &rec);
    relabel_topk_set(&rec, rp.logits, B, K, 2);
    CHECK(!ts_record_cget(&rec, "logits"));
    CHECK_MSG(train_replay_from_record(&rec, &info, K, &back) == 0, "%s", dd_errmsg());
    for (int i = 0; i < B; i++) {
        float mx = rp.logits[i * K], got = back.logits[i * K];
        for (int k = 1; k < K; k++) {
            mx = rp.logits[i * K + k] > mx ? rp.logits[i * K + k] : mx;
            got = back.logits[i * K + k] > got ? back.logits[i * K + k] : got;
        }
        CHECK(mx == got);
    }
    train_replay_free(&rp);
    train_replay_free(&back);

    TsReader *rd = ts_reader_open(path);
    TrainReplayInfo got;
    CHECK(rd && train_replay_header_get(ts_reader_header(rd), path, &got) == 0);
    CHECK(got.images == N && got.epochs == 1 && got.batch == B && got.H == S && got.W == S);
    Model *a = new_model(nn), *s = new_model(nn);
    TrainConf c = base_conf(TRAIN_REPLAY);
    c.epochs = 1;
    TrainResult res;
    CHECK(train_run(nn, &c, a, d, NULL, NULL, rd, &got, &res) == 0);
    ts_reader_close(rd);
    TrainConf cs = base_conf(TRAIN_STATIC);
    cs.epochs = 1;
    CHECK(train_run(nn, &cs, s, &hand, NULL, NULL, NULL, NULL, &res) == 0);
    CHECK(same_weights(a, s));

    /* more epochs than the stream holds: refused */
    rd = ts_reader_open(path);
    c.epochs = 2;
    CHECK(train_run(nn, &c, a, d, NULL, NULL, rd, &got, &res) < 0 && strstr(dd_errmsg(), "epochs"));
    ts_reader_close(rd);
    model_free(a);
    model_free(s);
    train_data_free(&hand);
    ts_record_free(&rec);
    ts_header_free(h);
    unlink(path);
}

/* Hard labels, SGD, every per-image augmentation and CutMix. */
static TrainConf aug_conf(void)
{
    TrainConf c = base_conf(TRAIN_HARD);
    c.opt = optim_sgd(0.05, 0.9, 5e-4, 0);
    c.shuffle = 1;
    c.rrc_lo = 0.5;
    c.rrc_hi = 1;
    c.flip = 1;
    c.cutmix = 1;
    c.shuffle_patches = 2;
    return c;
}

/* Stopped after epoch 2 and resumed from the checkpoint = 3 epochs uninterrupted (aug_conf);
 * evaluated on val (may be NULL). */
static void test_resume(Nn *nn, const TrainData *d, const TrainData *val)
{
    const char *ck = ckpt_path;
    unlink(ck);
    TrainConf c = aug_conf();
    c.epochs = 3;
    TrainResult res;
    Model *full = new_model(nn), *part = new_model(nn);
    CHECK(train_run(nn, &c, full, d, val, NULL, NULL, NULL, &res) == 0);
    CHECK(res.epochs_done == 3 && !res.stopped && (!val || res.best_epoch >= 1));
    c.checkpoint = ck;
    c.stop_after = 2;
    CHECK(train_run(nn, &c, part, d, val, NULL, NULL, NULL, &res) == 0);
    CHECK(res.stopped && res.epochs_done == 2);
    CHECK(!same_weights(full, part));
    model_free(part);
    part = new_model(nn);
    c.stop_after = 0;
    CHECK(train_run(nn, &c, part, d, val, NULL, NULL, NULL, &res) == 0);
    CHECK(res.epochs_done == 3);
    CHECK(same_weights(full, part));
    /* a checkpoint of another configuration is refused */
    c.opt.lr = 0.01;
    CHECK(train_run(nn, &c, part, d, val, NULL, NULL, NULL, &res) < 0 && strstr(dd_errmsg(), "other options"));
    unlink(ck);
    model_free(full);
    model_free(part);
}

/* Writes N images of varying sizes (sizes[i % 6]; all S x S when `same`), labels i % K, as U8 or
 * as F32 holding the same values / 255, with `ch` channels for image `odd_c` (-1: none). */
static void write_sized(const char *path, int f32, int same, int odd_c)
{
    static const int sizes[6][2] = {{8, 8}, {11, 13}, {5, 9}, {16, 12}, {8, 10}, {20, 7}};
    const char *names[K] = {"a", "b", "c"};
    TsHeader *h = ts_header_new(K, names);
    TsWriter *w = ts_writer_open(path, h);
    CHECK(w != NULL);
    TsRecord rec;
    ts_record_init(&rec);
    DdRng r;
    dd_rng_init(&r, 21, 0, 0);
    for (int i = 0; i < N; i++) {
        int hh = same ? S : sizes[i % 6][0], ww = same ? S : sizes[i % 6][1], ch = i == odd_c ? C + 1 : C;
        Tensor t = tensor_newv(f32 ? DD_F32 : DD_U8, 3, (int64_t)ch, (int64_t)hh, (int64_t)ww);
        for (int64_t k = 0; k < tensor_numel(&t); k++) {
            uint8_t v = (uint8_t)dd_rng_int(&r, 0, 255);
            if (f32) ((float *)t.data)[k] = (float)v / 255.0f;
            else ((uint8_t *)t.data)[k] = v;
        }
        ts_record_clear(&rec);
        snprintf(rec.key, sizeof rec.key, "img%02d", i);
        ts_record_set(&rec, "image", t);
        Tensor y = tensor_newv(DD_I64, 0);
        *(int64_t *)y.data = i % K;
        ts_record_set(&rec, "label", y);
        CHECK(ts_writer_put(w, &rec) == 0);
    }
    CHECK(ts_writer_close(w) == 0);
    ts_record_free(&rec);
    ts_header_free(h);
}

static int read_path(const char *path, const TrainDataOpts *o, TrainData *d)
{
    char *files[1] = {(char *)path};
    TsInput *in = ts_input_open(1, files);
    CHECK(in != NULL);
    int rc = train_data_read(in, o, d);
    ts_input_close(in);
    return rc;
}

static float max_abs_diff(const Model *a, const Model *b)
{
    float worst = 0;
    for (int i = 0; i < a->nparams; i++) {
        const float *x = a->params[i]->var.v.data, *y = b->params[i]->var.v.data;
        for (int64_t k = 0; k < tensor_numel(&a->params[i]->var.v); k++)
            worst = fabsf(x[k] - y[k]) > worst ? fabsf(x[k] - y[k]) : worst;
    }
    return worst;
}

/* Images kept at their own sizes (TrainDataOpts.res, evaltrain --res): what is kept, U8 and F32
 * storage training alike, S x S images kept training as the in-memory set does (RRC boxes inside
 * S x S only upsample, where the antialiased resize is bilinear up to weight rounding), resume,
 * the validation crop of other sizes only, and the refusals. */
static void test_kept(Nn *nn, const TrainData *flat)
{
    char u8p[80], f32p[80], samep[80], oddp[80];
    snprintf(u8p, sizeof u8p, "%s/u8.tsr", tmpdir);
    snprintf(f32p, sizeof f32p, "%s/f32.tsr", tmpdir);
    snprintf(samep, sizeof samep, "%s/same.tsr", tmpdir);
    snprintf(oddp, sizeof oddp, "%s/odd.tsr", tmpdir);
    write_sized(u8p, 0, 0, -1);
    write_sized(f32p, 1, 0, -1);
    write_sized(oddp, 0, 0, 5);
    TrainData du, df, flat_s;
    CHECK(read_path(u8p, &(TrainDataOpts){0}, &du) < 0);
    CHECK_MSG(strstr(dd_errmsg(), "record 1 (img01)") && strstr(dd_errmsg(), "--res"), "%s", dd_errmsg());
    CHECK(read_path(oddp, &(TrainDataOpts){.res = S}, &du) < 0);
    CHECK_MSG(strstr(dd_errmsg(), "record 5 (img05)") && strstr(dd_errmsg(), "channels"), "%s", dd_errmsg());
    CHECK(read_path(u8p, &(TrainDataOpts){.res = S}, &du) == 0 && read_path(f32p, &(TrainDataOpts){.res = S}, &df) == 0);
    CHECK(du.n == N && du.C == C && du.H == S && du.W == S && !du.x && du.img && du.max_hw == 16 * 12);
    CHECK(du.img[1].h == 11 && du.img[1].w == 13 && !du.img[1].f32 && df.img[1].f32 && du.y[4] == 1);
    /* pixel 2 of image 3 (16 x 12): the stream's byte, kept as it was */
    CHECK((float)du.pix[du.img[3].off + 2] / 255.0f == ((const float *)(df.pix + df.img[3].off))[2]);

    TrainConf c = aug_conf();
    TrainResult res;
    Model *mu = new_model(nn), *mf = new_model(nn);
    CHECK(train_run(nn, &c, mu, &du, flat, NULL, NULL, NULL, &res) == 0 && res.epochs_done == 2);
    CHECK(train_run(nn, &c, mf, &df, flat, NULL, NULL, NULL, &res) == 0);
    CHECK(same_weights(mu, mf));
    /* prepared on threads: the same batches */
    c.threads = 3;
    Model *mt = new_model(nn);
    CHECK(train_run(nn, &c, mt, &du, flat, NULL, NULL, NULL, &res) == 0);
    CHECK(same_weights(mu, mt));
    model_free(mt);
    c.threads = 0;
    /* without RRC: Resize + CenterCrop, then RandomCrop(pad) and flip */
    c.rrc_hi = 0;
    c.crop_pad = 2;
    Model *mu2 = new_model(nn), *mf2 = new_model(nn);
    CHECK(train_run(nn, &c, mu2, &du, NULL, NULL, NULL, NULL, &res) == 0);
    CHECK(train_run(nn, &c, mf2, &df, NULL, NULL, NULL, NULL, &res) == 0);
    CHECK(same_weights(mu2, mf2) && !same_weights(mu2, mu));
    c.rrc_hi = 1;
    c.crop_pad = 0;

    /* S x S images kept, against the same images in memory */
    write_sized(samep, 1, 1, -1);
    TrainData ds;
    CHECK(read_path(samep, &(TrainDataOpts){.res = S}, &ds) == 0 && ds.img && ds.max_hw == S * S);
    CHECK(read_path(samep, &(TrainDataOpts){0}, &flat_s) == 0 && flat_s.x && !flat_s.img);
    Model *ms = new_model(nn), *mflat = new_model(nn);
    CHECK(train_run(nn, &c, ms, &ds, NULL, NULL, NULL, NULL, &res) == 0);
    CHECK(train_run(nn, &c, mflat, &flat_s, NULL, NULL, NULL, NULL, &res) == 0);
    float dw = max_abs_diff(ms, mflat);
    CHECK_MSG(dw < 1e-6f && max_abs_diff(ms, mu) > 1e-2f, "kept S x S vs in memory: %g", (double)dw);

    /* resume; the in-memory set of the same shape is another run's data */
    test_resume(nn, &du, NULL);
    Model *part = new_model(nn);
    c.epochs = 1;
    c.checkpoint = ckpt_path;
    CHECK(train_run(nn, &c, part, &du, NULL, NULL, NULL, NULL, &res) == 0);
    CHECK(train_run(nn, &c, part, &flat_s, NULL, NULL, NULL, NULL, &res) < 0 && strstr(dd_errmsg(), "other options"));
    unlink(ckpt_path);

    /* refusals: evaluation and replay want one size */
    TrainEval ev;
    CHECK(train_eval(nn, mu, &du, 4, &ev) < 0);
    TrainReplayInfo info = {N, 1, B, S, S};
    TsReader *rd = ts_reader_open(samep);     /* refused before its first record is read */
    CHECK(rd != NULL);
    TrainConf rc = base_conf(TRAIN_REPLAY);
    CHECK(train_run(nn, &rc, part, &du, NULL, NULL, rd, &info, &res) < 0 && strstr(dd_errmsg(), "several sizes"));
    ts_reader_close(rd);

    /* validation crop: S x S images kept as they are with crop_other, the others resized */
    TrainData v1, v2;
    CHECK(read_path(u8p, &(TrainDataOpts){.crop = S, .crop_other = 1}, &v1) == 0);
    CHECK(read_path(u8p, &(TrainDataOpts){.crop = S}, &v2) == 0);
    CHECK(v1.H == S && v1.W == S && v2.H == S && v1.x && v2.x);
    CHECK(v1.x[0] == (float)du.pix[du.img[0].off] / 255.0f);                              /* image 0 is 8 x 8 */
    CHECK(memcmp(v1.x, v2.x, S * S * sizeof(float)) != 0);                                /* Resize(9) + crop */
    CHECK(!memcmp(v1.x + 1 * S * S, v2.x + 1 * S * S, S * S * sizeof(float)));         /* 11 x 13: both resized */

    train_data_free(&v1);
    train_data_free(&v2);
    model_free(part);
    model_free(ms);
    model_free(mflat);
    model_free(mu);
    model_free(mf);
    model_free(mu2);
    model_free(mf2);
    train_data_free(&ds);
    train_data_free(&flat_s);
    train_data_free(&du);
    train_data_free(&df);
    unlink(u8p);
    unlink(f32p);
    unlink(samep);
    unlink(oddp);
}

/* Online teachers (TRAIN_TEACHER, no augmentation or mixing, batches in order): two teachers train
 * the student exactly as static soft labels holding the mean of their logits do, computed here
 * batch by batch as (a + b) / 2; one teacher listed twice as that teacher alone. */
static void test_teachers(Nn *nn, const TrainData *d)
{
    Model *ta = model_create(nn, "convnet1:width=4", C, K, S, 6);
    Model *tb = model_create(nn, "convnet1:width=4", C, K, S, 7);
    CHECK(ta && tb);
    TrainData hand = *d;
    hand.soft = dd_malloc((size_t)N * K * sizeof(float));
    float la[B * K], lb[B * K];
    int old = nn_set_grad(nn, 0);
    for (int s = 0; s < N; s += B) {
        Tensor x = {.dtype = DD_F32, .device = DD_CPU, .ndim = 4, .shape = {B, C, S, S}, .data = d->x + s * C * S * S};
        nn_var_download(nn, model_forward(ta, nn, nn_input(nn, &x, 0), 0), la);
        nn_reset(nn);
        nn_var_download(nn, model_forward(tb, nn, nn_input(nn, &x, 0), 0), lb);
        nn_reset(nn);
        for (int i = 0; i < B * K; i++) hand.soft[s * K + i] = (la[i] + lb[i]) / 2.0f;
    }
    nn_set_grad(nn, old);
    TrainConf c = base_conf(TRAIN_TEACHER), cs = base_conf(TRAIN_STATIC);
    TrainResult res;
    Model *two = new_model(nn), *stat = new_model(nn), *one = new_model(nn), *twice = new_model(nn);
    Model *pair[] = {ta, tb, NULL}, *alone[] = {ta, NULL}, *same[] = {ta, ta, NULL};
    CHECK(train_run(nn, &c, two, d, NULL, pair, NULL, NULL, &res) == 0);
    CHECK(train_run(nn, &cs, stat, &hand, NULL, NULL, NULL, NULL, &res) == 0);
    CHECK(same_weights(two, stat));
    CHECK(train_run(nn, &c, one, d, NULL, alone, NULL, NULL, &res) == 0);
    CHECK(train_run(nn, &c, twice, d, NULL, same, NULL, NULL, &res) == 0);
    CHECK(same_weights(one, twice) && !same_weights(one, two));
    CHECK(train_run(nn, &c, one, d, NULL, NULL, NULL, NULL, &res) < 0 && strstr(dd_errmsg(), "need a teacher"));
    free(hand.soft);
    model_free(two);
    model_free(stat);
    model_free(one);
    model_free(twice);
    model_free(ta);
    model_free(tb);
}

static void test_nan_and_eval(Nn *nn, const TrainData *d)
{
    Model *m = new_model(nn);
    TrainEval ev;
    CHECK(train_eval(nn, m, d, 5, &ev) == 0);
    CHECK(ev.n == N && ev.top5 == 1.0 && ev.top1 >= 0 && ev.top1 <= 1 && ev.loss > 0);
    TrainConf c = base_conf(TRAIN_HARD);
    c.opt = optim_sgd(1e6, 0.9, 0, 0);
    c.epochs = 50;
    TrainResult res;
    CHECK(train_run(nn, &c, m, d, NULL, NULL, NULL, NULL, &res) < 0);
    CHECK_MSG(strstr(dd_errmsg(), "epoch ") && strstr(dd_errmsg(), "step ") && strstr(dd_errmsg(), "loss is"), "%s",
              dd_errmsg());
    model_free(m);
}

int main(void)
{
    dd_prog_init("test_train");
    if (!mkdtemp(tmpdir)) return 1;
    snprintf(replay_path, sizeof replay_path, "%s/replay.tsr", tmpdir);
    snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt.safetensors", tmpdir);
    test_trainaug();
    Nn *nn = nn_new(DD_CPU, 1);
    TrainData d;
    make_data(&d);
    test_replay(nn, &d);
    test_resume(nn, &d, &d);
    test_kept(nn, &d);
    test_teachers(nn, &d);
    test_nan_and_eval(nn, &d);
    train_data_free(&d);
    nn_free(nn);
    rmdir(tmpdir);
    return check_done("test_train");
}

/* test_train.c - evaltrain's loop (libcommon/distill/train.c) and augmentations (trainaug.c):
 * the host-side augmentations against direct definitions; the replay record layout round trip
 * through a real stream file (and relabel's top-k form); replay training equal to static-label training on batches prepared
 * by hand from the layout's definition; checkpoint resume equal to an uninterrupted run; a
 * non-finite loss stopping with the epoch and step named; evaluation counts. */
#include "libcommon/distill/relabel.h"
#include "libcommon/distill/train.h"
#include "libcommon/distill/trainaug.h"
#include "libcommon/image/resize.h"
#include "tests/unit/check.h"

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
    int64_t order[N];
    dd_rng_perm(&r, order, N);
    for (int i = 0; i < n; i++) {
        rp->index[i] = order[i];
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

/* Stopped after epoch 2 and resumed from the checkpoint = 3 epochs uninterrupted (hard labels with
 * every augmentation, and CutMix). */
static void test_resume(Nn *nn, const TrainData *d)
{
    const char *ck = ckpt_path;
    unlink(ck);
    TrainConf c = base_conf(TRAIN_HARD);
    c.opt = optim_sgd(0.05, 0.9, 5e-4, 0);
    c.epochs = 3;
    c.shuffle = 1;
    c.rrc_lo = 0.5;
    c.rrc_hi = 1;
    c.flip = 1;
    c.cutmix = 1;
    c.shuffle_patches = 2;
    TrainResult res;
    Model *full = new_model(nn), *part = new_model(nn);
    CHECK(train_run(nn, &c, full, d, d, NULL, NULL, NULL, &res) == 0);
    CHECK(res.epochs_done == 3 && !res.stopped && res.best_epoch >= 1);
    c.checkpoint = ck;
    c.stop_after = 2;
    CHECK(train_run(nn, &c, part, d, d, NULL, NULL, NULL, &res) == 0);
    CHECK(res.stopped && res.epochs_done == 2);
    CHECK(!same_weights(full, part));
    model_free(part);
    part = new_model(nn);
    c.stop_after = 0;
    CHECK(train_run(nn, &c, part, d, d, NULL, NULL, NULL, &res) == 0);
    CHECK(res.epochs_done == 3);
    CHECK(same_weights(full, part));
    /* a checkpoint of another configuration is refused */
    c.opt.lr = 0.01;
    CHECK(train_run(nn, &c, part, d, d, NULL, NULL, NULL, &res) < 0 && strstr(dd_errmsg(), "other options"));
    unlink(ck);
    model_free(full);
    model_free(part);
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
    test_resume(nn, &d);
    test_nan_and_eval(nn, &d);
    train_data_free(&d);
    nn_free(nn);
    rmdir(tmpdir);
    return check_done("test_train");
}

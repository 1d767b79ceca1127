/* test_relabel.c - relabel's algorithm (libcommon/distill/relabel.c): the replay records it writes
 * read back through train_replay_from_record (evaltrain's reader) with the draws relabel_plan
 * makes, every image once per epoch, and logits equal to the teacher's on the batch rebuilt from
 * the record (within F16 rounding); BN running statistics untouched by the train-mode (BSSL)
 * passes; the CutMix box geometry; identical bytes for 1 and 3 threads; top-k storage round trip
 * and its malformed cases; the teacher/data class check. */
#include "libcommon/distill/relabel.h"
#include "libcommon/distill/trainaug.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { N = 11, C = 1, S = 8, K = 3, B = 4, E = 2 };

static char tmpdir[] = "/tmp/test_relabel.XXXXXX";
static const char *names[K] = {"a", "b", "c"};

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

/* Writes the FKD stream of `teacher` on d to path; returns relabel_run's result. */
static int write_run(Nn *nn, Model *teacher, const TrainData *d, const RelabelConf *c, const char *path)
{
    TsHeader *h = ts_header_new(K, names);
    train_replay_header_set(h, &(TrainReplayInfo){N, c->epochs, c->batch, S, S});
    TsWriter *w = ts_writer_open(path, h);
    CHECK(w != NULL);
    int rc = relabel_run(nn, &teacher, 1, c, d, w, NULL);
    CHECK(ts_writer_close(w) == 0);
    ts_header_free(h);
    return rc;
}

static void test_roundtrip(Nn *nn, Model *t, const TrainData *d, const char *path)
{
    RelabelConf c = {.epochs = E, .batch = B, .bn = RELABEL_BN_BATCH, .seed = 9};
    float *before = dd_malloc(64 * sizeof(float)), *after = dd_malloc(64 * sizeof(float));
    NnParam *rm = model_find(t, "1.running_mean");
    CHECK(rm != NULL && tensor_numel(&rm->var.v) <= 64);
    nn_var_download(nn, &rm->var, before);
    CHECK(write_run(nn, t, d, &c, path) == 0);
    nn_var_download(nn, &rm->var, after);
    CHECK(!memcmp(before, after, (size_t)tensor_numel(&rm->var.v) * sizeof(float)));

    TsReader *r = ts_reader_open(path);
    CHECK(r != NULL);
    TrainReplayInfo info;
    CHECK(train_replay_header_get(ts_reader_header(r), path, &info) == 0);
    CHECK(info.images == N && info.epochs == E && info.batch == B && info.H == S && info.W == S);
    TsRecord rec;
    ts_record_init(&rec);
    TrainReplay got, want = {.K = K};
    int64_t order[N], idx[B], perm[B];
    AugBox crop[B];
    uint8_t flip[B];
    float x[B * C * S * S], logits[B * K];
    want.index = idx, want.perm = perm, want.crop = crop, want.flip = flip;
    int records = 0;
    for (int e = 0; e < E; e++) {
        int seen[N] = {0};
        relabel_order(c.seed, e, N, order);
        for (int b = 0; b < (N + B - 1) / B; b++, records++) {
            CHECK(ts_reader_next(r, &rec) == 1);
            if (train_replay_from_record(&rec, &info, K, &got) < 0) {
                CHECK_MSG(0, "%s", dd_errmsg());
                continue;
            }
            int n = b < N / B ? B : N % B;
            CHECK(got.epoch == e && got.batch == b && got.n == n);
            relabel_plan(c.seed, e, b, order + b * B, n, S, S, &want);
            for (int i = 0; i < n; i++) {
                seen[got.index[i]]++;
                CHECK(got.index[i] == want.index[i] && got.perm[i] == want.perm[i] && got.flip[i] == want.flip[i]);
                CHECK(!memcmp(&got.crop[i], &want.crop[i], sizeof(AugBox)));
            }
            CHECK(!memcmp(got.box, want.box, sizeof got.box) && got.lam == want.lam);
            /* the teacher on the batch evaltrain rebuilds from the record gives the stored logits */
            relabel_images(d, &got, x);
            CHECK(relabel_logits(nn, &t, 1, RELABEL_BN_BATCH, x, n, C, S, S, 0, 0, logits) == 0);
            for (int i = 0; i < n * K; i++) CHECK_CLOSE(got.logits[i], logits[i], 1e-6, 1.0 / 1024);
            train_replay_free(&got);
        }
        for (int i = 0; i < N; i++) CHECK(seen[i] == 1);
    }
    CHECK(records == E * 3);
    CHECK(ts_reader_next(r, &rec) == 0);
    ts_record_free(&rec);
    ts_reader_close(r);
    free(before);
    free(after);
}

static void test_cutmix_box(void)
{
    int64_t idx[B] = {0, 1, 2, 3}, perm[B];
    AugBox crop[B];
    uint8_t flip[B];
    TrainReplay b = {.index = idx, .perm = perm, .crop = crop, .flip = flip};
    const int H = 13, W = 17;
    int empty = 0, full_side = 0;
    for (int t = 0; t < 500; t++) {
        relabel_plan(3, t, t, idx, B, H, W, &b);
        CHECK(b.lam >= 0 && b.lam < 1);
        double rat = sqrt(1.0 - b.lam);
        int ch = (int)(H * rat), cw = (int)(W * rat);
        CHECK(0 <= b.box[0] && b.box[0] <= b.box[2] && b.box[2] <= H);
        CHECK(0 <= b.box[1] && b.box[1] <= b.box[3] && b.box[3] <= W);
        /* rand_bbox: centre +- cut/2, clipped, so a side is at most 2*(cut/2) and exactly that
         * when the box does not touch the border */
        CHECK(b.box[2] - b.box[0] <= 2 * (ch / 2) && b.box[3] - b.box[1] <= 2 * (cw / 2));
        if (b.box[0] > 0 && b.box[2] < H) {
            CHECK(b.box[2] - b.box[0] == 2 * (ch / 2));
            full_side++;
        }
        empty += b.box[2] == b.box[0] || b.box[3] == b.box[1];
        for (int i = 0; i < B; i++)
            CHECK(crop[i].h >= 1 && crop[i].w >= 1 && crop[i].top + crop[i].h <= H && crop[i].left + crop[i].w <= W);
    }
    CHECK(full_side > 50 && empty < 250);
    /* applied: inside the box image i holds image perm[i]'s pixels, outside its own */
    TrainData d = {.n = B, .C = 1, .H = H, .W = W, .K = K};
    d.x = dd_malloc(B * H * W * sizeof(float));
    for (int i = 0; i < B * H * W; i++) d.x[i] = (float)(i / (H * W));
    for (int i = 0; i < B; i++) crop[i] = (AugBox){0, 0, H, W}, flip[i] = 0;
    b.box[0] = 2, b.box[1] = 3, b.box[2] = 5, b.box[3] = 9;
    float *x = dd_malloc(B * H * W * sizeof(float));
    relabel_images(&d, &b, x);
    for (int i = 0; i < B; i++) {
        CHECK(x[i * H * W + 3 * W + 4] == (float)perm[i]);
        CHECK(x[i * H * W + 6 * W + 4] == (float)i);
    }
    free(x);
    free(d.x);
}

static void test_threads(Model *t1, Model *t3, const TrainData *d, Nn *nn1, Nn *nn3, const char *p1, const char *p3)
{
    RelabelConf c = {.epochs = 1, .batch = 5, .bn = RELABEL_BN_BATCH, .seed = 4, .topk = 2};
    CHECK(write_run(nn1, t1, d, &c, p1) == 0 && write_run(nn3, t3, d, &c, p3) == 0);
    FILE *a = fopen(p1, "rb"), *b = fopen(p3, "rb");
    CHECK(a && b);
    int ca, cb, same = 1;
    long len = 0;
    do {
        ca = fgetc(a), cb = fgetc(b), len++;
        same &= ca == cb;
    } while (ca != EOF && cb != EOF);
    CHECK_MSG(same && len > 100, "1 and 3 threads differ (or empty: %ld bytes)", len);
    fclose(a);
    fclose(b);
}

static void test_topk(void)
{
    enum { R = 2, KK = 5, k = 2 };
    float l[R * KK] = {1, 5, 3, 5, -1, 0, 0, 2, 0, 0}, out[R * KK];
    TsRecord rec;
    ts_record_init(&rec);
    CHECK(relabel_topk_expand(&rec, R, KK, out) == 0);
    relabel_topk_set(&rec, l, R, KK, k);
    CHECK(ts_record_cget(&rec, "topi")->dtype == DD_I16);
    CHECK(relabel_topk_expand(&rec, R, KK, out) == 1);
    /* row 0: 5 (class 1, the first of the tie), 5 (class 3); rest mean (1+3-1)/3 = 1 */
    const float want[R * KK] = {1, 5, 1, 5, 1, 0, 0, 2, 0, 0};
    for (int i = 0; i < R * KK; i++) CHECK_CLOSE(out[i], want[i], 1e-3, 0);
    CHECK(relabel_payload_bytes(10, 0, 10) == 55 && relabel_payload_bytes(10, 3, 10) == 49);
    ((int16_t *)ts_record_get(&rec, "topi")->data)[1] = ((int16_t *)ts_record_get(&rec, "topi")->data)[0];
    CHECK(relabel_topk_expand(&rec, R, KK, out) == -1 && strstr(dd_errmsg(), "repeated"));
    ts_record_remove(&rec, "topr");
    CHECK(relabel_topk_expand(&rec, R, KK, out) == -1);
    ts_record_free(&rec);
}

static void test_check_teacher(Model *t)
{
    TsHeader *h = ts_header_new(K, names);
    CHECK(relabel_check_teacher(t, "t.st", h, "d.tsr", C, S, S) == 0);
    t->nclass_names = K;
    t->class_names = dd_malloc(K * sizeof(char *));
    t->class_names[0] = dd_strdup("a");
    t->class_names[1] = dd_strdup("dog");
    t->class_names[2] = dd_strdup("c");
    CHECK(relabel_check_teacher(t, "t.st", h, "d.tsr", C, S, S) == -1);
    CHECK_MSG(strstr(dd_errmsg(), "t.st") && strstr(dd_errmsg(), "d.tsr") && strstr(dd_errmsg(), "'dog'"), "%s",
              dd_errmsg());
    ts_header_free(h);
    const char *four[4] = {"a", "b", "c", "d"};
    h = ts_header_new(4, four);
    CHECK(relabel_check_teacher(t, "t.st", h, "d.tsr", C, S, S) == -1);
    ts_header_free(h);
}

int main(void)
{
    CHECK(mkdtemp(tmpdir) != NULL);
    char p1[64], p3[64];
    snprintf(p1, sizeof p1, "%s/a.tsr", tmpdir);
    snprintf(p3, sizeof p3, "%s/b.tsr", tmpdir);
    TrainData d;
    make_data(&d);
    Nn *nn1 = nn_new(DD_CPU, 1), *nn3 = nn_new(DD_CPU, 3);
    Model *t1 = model_create(nn1, "convnet2:width=4", C, K, S, 5), *t3 = model_create(nn3, "convnet2:width=4", C, K, S, 5);
    CHECK(t1 && t3);
    test_roundtrip(nn1, t1, &d, p1);
    test_cutmix_box();
    test_threads(t1, t3, &d, nn1, nn3, p1, p3);
    test_topk();
    test_check_teacher(t1);
    unlink(p1);
    unlink(p3);
    rmdir(tmpdir);
    model_free(t1);
    model_free(t3);
    nn_free(nn1);
    nn_free(nn3);
    train_data_free(&d);
    return check_done("test_relabel");
}

/* bench_recover.c - ours in `make bench`: the recover inner step as shared/bench/torch_recover_peer.py
 * runs it, timed. One step = a batch-shared random-resized crop (torchvision's rule, scale 0.08..1,
 * ratio 3/4..4/3) + flip p 0.5 + roll by U{0..J} (J = 4, 32 from 128 px), eval-mode teacher forward
 * with BN statistics collection, loss = CE + 0.01 * sum_l m_l stat_l (m = 10 for the first BN),
 * backward to the pixels only (teacher frozen), Adam (lr 0.25 cosine over 2000, betas 0.5/0.9),
 * clamp to [0,1]. 3 warm-up steps, then ITERS timed steps. No loss scaling (recover
 * --precision fp16 adds one pass over the pixels' gradient and a 4-byte read per step).
 * usage: bench_recover [-d cpu|cuda[:fp16|:bf16]] MODEL CHANNELS RES BATCH THREADS [ITERS]
 * prints: ours MODEL CxHxW bBATCH threads T: R img-iter/s, S ms/step, peak RSS K KiB, arena U MiB in
 * use, H MiB held (nn_memory: the step's tensors, gradients and saves), F FLOP/step (G GFLOP/img-iter;
 * convolutions and linear layers), P GFLOP/s (nn_flops: two a multiply-add; tests/parity/flops.sh
 * checks F against a count over PyTorch's modules) */
#include "libcommon/models/model.h"
#include "libcommon/optim/optim.h"
#include "tests/bench/bench_dev.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { NCLASSES = 10, WARMUP = 3, TOTAL_STEPS = 2000 };

typedef struct {
    Nn *nn;
    Model *m;
    NnParam *x;
    Tensor labels;
    int res, jitter;
    uint64_t seed;
} Bench;

/* torchvision's RandomResizedCrop.get_params on a square res x res image, whole image fallback. */
static void rrc_box(DdRng *r, int res, int *top, int *left, int *h, int *w)
{
    double area = (double)res * res;
    for (int i = 0; i < 10; i++) {
        double ta = area * dd_rng_uniform_range(r, 0.08, 1.0);
        double ar = exp(dd_rng_uniform_range(r, log(3.0 / 4.0), log(4.0 / 3.0)));
        int cw = (int)lround(sqrt(ta * ar)), ch = (int)lround(sqrt(ta / ar));
        if (cw > 0 && cw <= res && ch > 0 && ch <= res) {
            *top = (int)dd_rng_int(r, 0, res - ch);
            *left = (int)dd_rng_int(r, 0, res - cw);
            *h = ch;
            *w = cw;
            return;
        }
    }
    *top = *left = 0;
    *h = *w = res;
}

static void step(Bench *b, int t)
{
    Nn *nn = b->nn;
    DdRng r;
    dd_rng_init(&r, b->seed, 1, (uint64_t)t);
    int top, left, h, w;
    rrc_box(&r, b->res, &top, &left, &h, &w);
    NnVar *xa = nn_crop_resize(nn, &b->x->var, top, left, h, w, b->res, b->res);
    if (dd_rng_uniform(&r) < 0.5) xa = nn_done_with(nn, nn_flip_w(nn, xa), xa);
    int sh = (int)dd_rng_int(&r, 0, b->jitter), sw = (int)dd_rng_int(&r, 0, b->jitter);
    xa = nn_done_with(nn, nn_roll(nn, xa, sh, sw), xa);
    nn_bn_collect(nn, 1);
    /* model_forward's normalization, then the net, which consumes its input (model.h) */
    NnVar *xn = nn_done_with(nn, nn_normalize(nn, xa, b->m->mean, b->m->std), xa);
    NnVar *logits = b->m->net(b->m, nn, xn, 0);
    NnVar *loss = nn_cross_entropy(nn, logits, &b->labels, 0.0f), *bn = NULL;
    for (int i = 0; i < nn_bn_stat_count(nn); i++) {
        NnVar *s = nn_scale(nn, nn_bn_stat(nn, i), i == 0 ? 10.0f : 1.0f);
        bn = bn ? nn_add(nn, bn, s) : s;
    }
    if (bn) loss = nn_add(nn, loss, nn_scale(nn, bn, 0.01f));
    nn_backward(nn, loss);
    OptimConf c = optim_adam(optim_recover_lr(0.25, t, TOTAL_STEPS), 0.5, 0.9, 1e-8, 0.0);
    if (optim_step(nn, &c, &b->x, 1) < 0 || optim_clamp(nn, b->x, 0.0f, 1.0f) < 0) dd_die_err(1);
    nn_bn_collect(nn, 0);
    nn_reset(nn);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    const char *dev = "cpu";      /* -d cuda[:fp16|:bf16] (tests/bench/run_gpu.sh) */
    bench_take(&argc, &argv, "-d", 1, &dev);
    if (argc != 6 && argc != 7)
        dd_die(2, "usage: bench_recover [-d cpu|cuda[:fp16|:bf16]] MODEL CHANNELS RES BATCH THREADS [ITERS]");
    int ch = (int)dd_opt_long("CHANNELS", argv[2], 1, 64), res = (int)dd_opt_long("RES", argv[3], 1, 4096);
    int batch = (int)dd_opt_long("BATCH", argv[4], 1, 100000);
    int threads = (int)dd_opt_long("THREADS", argv[5], 1, 1024);
    int iters = argc == 7 ? (int)dd_opt_long("ITERS", argv[6], 1, 100000) : 10;
    Bench b = {.res = res, .jitter = res >= 128 ? 32 : 4, .seed = 0};
    b.nn = bench_nn(dev, threads);
    if (!(b.m = model_create(b.nn, argv[1], ch, NCLASSES, res, 0))) dd_die_err(2);
    model_set_requires_grad(b.m, 0);

    int64_t shape[4] = {batch, ch, res, res};
    b.x = nn_param_new(b.nn, "pixels", NN_INPUT, 4, shape);
    b.x->var.requires_grad = 1;
    int64_t n = tensor_numel(&b.x->var.v);
    float *host = dd_malloc((size_t)n * sizeof(float));
    DdRng r;
    dd_rng_init(&r, 0, 2, 0);
    for (int64_t i = 0; i < n; i++) host[i] = (float)dd_rng_uniform(&r);
    nn_var_upload(b.nn, &b.x->var, host);
    free(host);
    b.labels = tensor_newv(DD_I64, 1, (int64_t)batch);
    for (int i = 0; i < batch; i++) ((int64_t *)b.labels.data)[i] = i % NCLASSES;

    /* A device backend queues work: reading one pixel back waits for every step before it. */
    float probe;
    for (int t = 0; t < WARMUP; t++) step(&b, t);
    nn_var_download_range(b.nn, &b.x->var, 0, 1, &probe);
    /* the timed steps are the span a profiler records (ncu --profile-from-start off) */
    nn_profile(b.nn, 1);
    double t0 = dd_now(), f0 = nn_flops(b.nn);
    for (int t = 0; t < iters; t++) step(&b, t);
    nn_var_download_range(b.nn, &b.x->var, 0, 1, &probe);
    double dt = (dd_now() - t0) / iters, fl = (nn_flops(b.nn) - f0) / iters;
    nn_profile(b.nn, 0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t inuse, held;
    nn_memory(b.nn, &inuse, &held);
    printf("ours %s %dx%dx%d b%d threads %d: %.1f img-iter/s, %.1f ms/step, peak RSS %ld KiB, arena %.1f MiB "
           "in use, %.1f MiB held, %.0f FLOP/step (%.4g GFLOP/img-iter; convolutions and linear layers), %.1f "
           "GFLOP/s\n", argv[1], ch, res, res, batch, threads, batch / dt, dt * 1e3, ru.ru_maxrss, inuse / 1048576.0,
           held / 1048576.0, fl, fl / batch / 1e9, fl / dt / 1e9);

    tensor_free(&b.labels);
    nn_param_free(b.nn, b.x);
    model_free(b.m);
    nn_free(b.nn);
    return 0;
}

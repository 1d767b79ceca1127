/* bench_train.c - ours in `make bench` (tests/bench/run_train.sh): one evaltrain training step as
 * tests/bench/torch_train_peer.py runs it, timed. One step = train-mode forward of a random batch,
 * cross-entropy on hard labels, backward to the weights, SGD (lr 0.05, momentum 0.9, wd 5e-4) step.
 * 3 warm-up steps, then ITERS timed steps.
 * With --score: patchsel's scoring instead, an eval-mode forward without gradients of the batch
 * and the logits read back (patchsel takes the cross-entropy per crop on the host from them).
 * usage: bench_train [-d cpu|cuda[:fp16|:bf16]] [--score] MODEL CHANNELS RES BATCH THREADS [ITERS]
 * prints: ours MODEL CxHxW bBATCH threads T: R img/s, S ms/step, peak RSS K KiB, F FLOP/step (G GFLOP/img;
 * convolutions and linear layers), P GFLOP/s (nn_flops; tests/parity/flops.sh checks F) */
#include "libcommon/models/model.h"
#include "libcommon/optim/optim.h"
#include "tests/bench/bench_dev.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum { NCLASSES = 10, WARMUP = 3 };

static void score(Nn *nn, Model *m, const Tensor *x, float *logits)
{
    int old = nn_set_grad(nn, 0);
    nn_var_download(nn, model_forward(m, nn, nn_input(nn, x, 0), 0), logits);
    nn_reset(nn);
    nn_set_grad(nn, old);
}

static void step(Nn *nn, Model *m, const Tensor *x, const Tensor *labels, const OptimConf *c)
{
    nn_zero_grad(nn, m->params, m->nparams);
    NnVar *in = nn_input(nn, x, 0);
    NnVar *loss = nn_cross_entropy(nn, model_forward(m, nn, in, 1), labels, 0.0f);
    nn_backward(nn, loss);
    if (optim_step(nn, c, m->params, m->nparams) < 0) dd_die_err(1);
    nn_reset(nn);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    const char *dev = "cpu";      /* -d cuda[:fp16|:bf16] (tests/bench/run_gpu.sh) */
    bench_take(&argc, &argv, "-d", 1, &dev);
    const int scoring = bench_take(&argc, &argv, "--score", 0, NULL);
    if (argc != 6 && argc != 7)
        dd_die(2, "usage: bench_train [-d cpu|cuda[:fp16|:bf16]] [--score] MODEL CHANNELS RES BATCH THREADS [ITERS]");
    int ch = (int)dd_opt_long("CHANNELS", argv[2], 1, 64), res = (int)dd_opt_long("RES", argv[3], 1, 4096);
    int batch = (int)dd_opt_long("BATCH", argv[4], 1, 100000);
    int threads = (int)dd_opt_long("THREADS", argv[5], 1, 1024);
    int iters = argc == 7 ? (int)dd_opt_long("ITERS", argv[6], 1, 100000) : 10;
    Nn *nn = bench_nn(dev, threads);
    Model *m = model_create(nn, argv[1], ch, NCLASSES, res, 0);
    if (!m) dd_die_err(2);

    Tensor x = tensor_newv(DD_F32, 4, (int64_t)batch, (int64_t)ch, (int64_t)res, (int64_t)res);
    Tensor labels = tensor_newv(DD_I64, 1, (int64_t)batch);
    DdRng r;
    dd_rng_init(&r, 0, 2, 0);
    float *px = x.data;
    for (int64_t i = 0, n = tensor_numel(&x); i < n; i++) px[i] = (float)dd_rng_uniform(&r);
    for (int i = 0; i < batch; i++) ((int64_t *)labels.data)[i] = i % NCLASSES;
    OptimConf c = optim_sgd(0.05, 0.9, 5e-4, 0);
    c.decay_all = 1;

    /* a device backend queues work: reading one weight back waits for every step before it */
    float probe;
    float *logits = dd_malloc((size_t)batch * NCLASSES * sizeof *logits);
#define ONE_STEP() (scoring ? score(nn, m, &x, logits) : step(nn, m, &x, &labels, &c))
    for (int t = 0; t < WARMUP; t++) ONE_STEP();
    nn_var_download_range(nn, &m->params[0]->var, 0, 1, &probe);
    double t0 = dd_now(), f0 = nn_flops(nn);
    for (int t = 0; t < iters; t++) ONE_STEP();
    nn_var_download_range(nn, &m->params[0]->var, 0, 1, &probe);
    double dt = (dd_now() - t0) / iters, fl = (nn_flops(nn) - f0) / iters;
#undef ONE_STEP
    free(logits);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("ours %s%s %dx%dx%d b%d threads %d: %.1f img/s, %.1f ms/step, peak RSS %ld KiB, %.0f FLOP/step "
           "(%.4g GFLOP/img; convolutions and linear layers), %.1f GFLOP/s\n", scoring ? "score " : "", argv[1], ch,
           res, res, batch, threads, batch / dt, dt * 1e3, ru.ru_maxrss, fl, fl / batch / 1e9, fl / dt / 1e9);

    tensor_free(&x);
    tensor_free(&labels);
    model_free(m);
    nn_free(nn);
    return 0;
}

/* bench_ops.c - convolution micro-benchmark: forward and backward-to-input (the two passes of the
 * recover step, whose teacher is frozen) and backward-to-weights (training's third) of the CPU
 * backend's conv kernels on representative shapes
 * (MobileNetV2 / ShuffleNetV2 depthwise 3x3, grouped, ResNet-18's 3x3 convs at 32/16/8/4 px, the
 * stems of convnet3 on 1 channel and resnet18m on 3),
 * beside the PyTorch peer (tests/bench/torch_ops_peer.py, run through $PYTHON, default
 * /usr/bin/python3) timing the same shapes in the same run. Times are the minimum over ITERS
 * iterations after one warm-up (the machine is shared: the minimum is the least noisy).
 * usage: bench_ops [THREADS [ITERS [FILTER]]]   (run from the repository root; FILTER: only the
 * shapes whose name contains it, the peer too)
 * prints per shape and pass (fwd, bwd-data, bwd-filter): bench conv NAME PASS: ours A ms, peer B
 * ms, ratio B/A */
#include "libcommon/base/base.h"
#include "libcommon/nn/backend.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int n, cin, h, w, cout, k, stride, pad, groups;
} OpCase;

static const OpCase CASES[] = {
    {"dw3x3-s1-32x32", 100, 32, 32, 32, 32, 3, 1, 1, 32},
    {"dw3x3-s2-96x32", 100, 96, 32, 32, 96, 3, 2, 1, 96},
    {"dw3x3-s1-96x16", 100, 96, 16, 16, 96, 3, 1, 1, 96},
    {"dw3x3-s2-96x16", 100, 96, 16, 16, 96, 3, 2, 1, 96},
    {"dw3x3-s1-144x8", 100, 144, 8, 8, 144, 3, 1, 1, 144},
    {"dw3x3-s2-144x8", 100, 144, 8, 8, 144, 3, 2, 1, 144},
    {"dw3x3-s1-576x4", 100, 576, 4, 4, 576, 3, 1, 1, 576},   /* MobileNetV2's small-image 4 px */
    {"dw3x3-s1-960x2", 100, 960, 2, 2, 960, 3, 1, 1, 960},   /* ... and 2 px stages */
    {"dw5x5-s1-240x8", 100, 240, 8, 8, 240, 5, 1, 2, 240},
    {"group4-3x3-128x16", 100, 128, 16, 16, 128, 3, 1, 1, 4},
    {"group3-1x1-240x8", 100, 240, 8, 8, 240, 1, 1, 0, 3},
    {"group2-1x1-200x16", 100, 200, 16, 16, 50, 1, 1, 0, 2}, /* ShuffleNet v1 (g2)'s: OpenBLAS */
    {"group2-1x1-400x8", 100, 400, 8, 8, 100, 1, 1, 0, 2},   /* ... and the kernel GEMM's */
    {"r18-3x3-64x32", 100, 64, 32, 32, 64, 3, 1, 1, 1},
    {"r18-3x3-128x16", 100, 128, 16, 16, 128, 3, 1, 1, 1},
    {"r18-3x3-256x8", 100, 256, 8, 8, 256, 3, 1, 1, 1},
    {"r18-3x3-512x4", 100, 512, 4, 4, 512, 3, 1, 1, 1},
    {"pw1x1-58x16", 100, 58, 16, 16, 58, 1, 1, 0, 1}, /* ShuffleNet v2 x1.0 (small stem)'s branches */
    {"pw1x1-116x8", 100, 116, 8, 8, 116, 1, 1, 0, 1},
    {"pw1x1-232x4", 100, 232, 4, 4, 232, 1, 1, 0, 1},
    {"pw1x1-464to1024x4", 100, 464, 4, 4, 1024, 1, 1, 0, 1}, /* ... and its conv5 */
    {"stem-3x3-1to128x28", 100, 1, 28, 28, 128, 3, 1, 1, 1}, /* convnet3's first on Fashion-MNIST */
    {"stem-3x3-3to64x32", 100, 3, 32, 32, 64, 3, 1, 1, 1},   /* resnet18m's on CIFAR */
};
enum { NCASES = sizeof CASES / sizeof CASES[0] };

static float *random_buf(DdRng *r, size_t n)
{
    float *p = dd_malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)dd_rng_uniform(r) - 0.5f;
    return p;
}

enum { NPASS = 3 }; /* fwd, bwd-data, bwd-filter */

/* Minimum ms over iters runs of one pass (after a warm-up run). */
static double best_ms(NnBackend *be, const NnConvShape *s, int pass, const float *x, float *w,
                      float *y, int iters)
{
    double best = 1e30;
    for (int i = 0; i <= iters; i++) {
        double t0 = dd_now();
        if (pass == 2) be->conv2d_bwd_filter(be, s, y, x, w, NULL);
        else if (pass == 1) be->conv2d_bwd_data(be, s, y, w, (float *)x);
        else be->conv2d_fwd(be, s, x, w, NULL, y);
        double dt = (dd_now() - t0) * 1e3;
        if (i > 0 && dt < best) best = dt;
    }
    return best;
}

/* Runs the peer over every case (whose name holds filter, if any); fills peer[NPASS*i + pass] (ms)
 * or leaves -1 where it gave nothing. */
static void run_peer(int threads, int iters, const char *filter, double *peer)
{
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    char cmd[4096];
    int len = snprintf(cmd, sizeof cmd, "%s tests/bench/torch_ops_peer.py --threads %d --iters %d",
                       py, threads, iters);
    for (int i = 0; i < NCASES && len > 0 && (size_t)len < sizeof cmd; i++) {
        const OpCase *c = &CASES[i];
        if (filter && !strstr(c->name, filter)) continue;
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s:%d,%d,%d,%d,%d,%d,%d,%d,%d",
                        c->name, c->n, c->cin, c->h, c->w, c->cout, c->k, c->stride, c->pad,
                        c->groups);
    }
    if (len <= 0 || (size_t)len >= sizeof cmd) return;
    FILE *f = popen(cmd, "r");
    if (!f) return;
    char name[64];
    double t[NPASS];
    while (fscanf(f, "%63s %lf %lf %lf", name, &t[0], &t[1], &t[2]) == 4)
        for (int i = 0; i < NCASES; i++)
            if (!strcmp(name, CASES[i].name))
                for (int k = 0; k < NPASS; k++) peer[NPASS * i + k] = t[k];
    pclose(f);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    if (argc > 4) dd_die(2, "usage: bench_ops [THREADS [ITERS [FILTER]]]");
    const char *filter = argc > 3 ? argv[3] : NULL;
    int threads = argc > 1 ? (int)dd_opt_long("THREADS", argv[1], 1, 1024) : 2;
    int iters = argc > 2 ? (int)dd_opt_long("ITERS", argv[2], 1, 100000) : 10;
    double ours[NPASS * NCASES], peer[NPASS * NCASES];
    NnBackend *be = nn_cpu_backend_new(threads);
    DdRng r;
    dd_rng_init(&r, 0, 3, 0);
    for (int i = 0; i < NCASES; i++) {
        const OpCase *c = &CASES[i];
        for (int k = 0; k < NPASS; k++) peer[NPASS * i + k] = ours[NPASS * i + k] = -1;
        if (filter && !strstr(c->name, filter)) continue;
        int oh = (c->h + 2 * c->pad - c->k) / c->stride + 1;
        int ow = (c->w + 2 * c->pad - c->k) / c->stride + 1;
        NnConvShape s = {c->n,  c->cin, c->h, c->w,      c->cout, c->k, c->k,
                         oh,    ow,     c->stride, c->pad, 1,       c->groups};
        size_t nx = (size_t)c->n * c->cin * c->h * c->w, ny = (size_t)c->n * c->cout * oh * ow;
        size_t nw = (size_t)c->cout * (c->cin / c->groups) * c->k * c->k;
        float *x = random_buf(&r, nx), *w = random_buf(&r, nw), *y = random_buf(&r, ny);
        for (int k = 0; k < NPASS; k++) ours[NPASS * i + k] = best_ms(be, &s, k, x, w, y, iters);
        free(x);
        free(w);
        free(y);
    }
    be->destroy(be);
    run_peer(threads, iters, filter, peer);
    for (int i = 0; i < NPASS * NCASES; i++) {
        const char *pass = i % NPASS == 2 ? "bwd-filter" : i % NPASS ? "bwd-data" : "fwd";
        if (ours[i] < 0) continue;
        if (peer[i] < 0)
            printf("bench conv %s %s: ours %.3f ms, peer NA\n", CASES[i / NPASS].name, pass, ours[i]);
        else
            printf("bench conv %s %s: ours %.3f ms, peer %.3f ms, ratio %.2f\n", CASES[i / NPASS].name,
                   pass, ours[i], peer[i], peer[i] / ours[i]);
    }
    return 0;
}

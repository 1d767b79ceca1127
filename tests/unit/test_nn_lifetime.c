/* test_nn_lifetime.c - value lifetimes (nn_done) and the device arena that recycles them.
 *
 * 1. Results do not depend on them: for the nets that give their intermediates to nn_done
 *    (resnet18 with each stem, bottleneck resnet50m, convnet3, mobilenet_v2m, densenet121 and
 *    shufflenet_v2 with each stem, efficientnet_b0m with its stochastic depth live,
 *    alexnet with its dropout live; vgg11_bn, whose classifier is 120M weights, is left to
 *    the zoo's full parity (ZOO_FULL=1) and test_cuda_models), the recover step
 *    (eval mode, BN statistics loss, frozen weights, augmentation views, input gradient) and a
 *    training step (batch statistics, every weight's gradient) give the same bits as a context
 *    with DD_NN_KEEP_ALL=1, where every value lives to nn_reset.
 * 2. They pay: the recover step of resnet18 needs at most 55% of the arena memory in use that
 *    it needs with every value kept (64 px; resnet18m at 32 px 65%; measured with nn_memory;
 *    the 224 px figures are make bench's).
 * 3. The rules: nn_done of a var no backward reads frees it at once (its memory serves the
 *    next request of its size); a kept one goes after the backward that reads it; params and
 *    borrowed inputs are left alone; a released var's use dies naming the op (exit 1); a second
 *    backward after values were released dies.
 * 4. A GPU's arena (256-byte blocks, as cudaMalloc's; nn_new for DD_CUDA) puts every block, fresh,
 *    recycled or split off a freed one, on a 256-byte boundary, and (here on the CPU) gives the
 *    64-byte arena's bits.
 */
#include "libcommon/models/model.h"
#include "libcommon/nn/nn_impl.h"
#include "tests/unit/check.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { N = 4, K = 10 };

typedef struct {
    float *dx;     /* input gradient */
    float *dw;     /* every weight gradient, concatenated (training) */
    int64_t ndw;
    float loss;
    size_t inuse, held;
} Out;

static Nn *context(int keep_all)
{
    if (keep_all) setenv("DD_NN_KEEP_ALL", "1", 1);
    else unsetenv("DD_NN_KEEP_ALL");
    Nn *nn = nn_new(DD_CPU, 2);
    unsetenv("DD_NN_KEEP_ALL");
    CHECK(nn != NULL);
    return nn;
}

/* One step of model `name` on pixels px [N,3,res,res]: recover's (training 0: crop, flip and
 * roll views, eval-mode teacher with the statistics loss, gradient to the pixels only) or a
 * training step (training 1: gradients to every weight and the pixels). Two identical steps, so
 * the second runs in the settled arena. */
static void step(Nn *nn, const char *name, int res, int training, const float *px, Out *o)
{
    Model *m = model_create(nn, name, 3, K, res, 5);
    if (!m) dd_die_err(DD_EXIT_DATA);
    if (!training) model_set_requires_grad(m, 0);
    int64_t shape[4] = {N, 3, res, res}, n = (int64_t)N * 3 * res * res;
    NnParam *x = nn_param_new(nn, "x", NN_INPUT, 4, shape);
    x->var.requires_grad = 1;
    nn_var_upload(nn, &x->var, px);
    Tensor lab = tensor_newv(DD_I64, 1, (int64_t)N);
    for (int i = 0; i < N; i++) ((int64_t *)lab.data)[i] = (i * 7) % K;
    for (int rep = 0; rep < 2; rep++) {
        nn_set_rng(nn, 3, 1);
        NnVar *xa = &x->var;
        if (!training) {
            xa = nn_crop_resize(nn, xa, 1, 2, res - 3, res - 2, res, res);
            xa = nn_done_with(nn, nn_flip_w(nn, xa), xa);
            xa = nn_done_with(nn, nn_roll(nn, xa, 2, 1), xa);
            nn_bn_collect(nn, 1);
        }
        NnVar *logits = nn_done_with(nn, model_forward(m, nn, xa, training), xa);
        NnVar *loss = nn_cross_entropy(nn, logits, &lab, 0.0f);
        for (int i = 0; i < nn_bn_stat_count(nn); i++)
            loss = nn_add(nn, loss, nn_scale(nn, nn_bn_stat(nn, i), i == 0 ? 0.1f : 0.01f));
        nn_bn_collect(nn, 0);
        nn_done(nn, logits);
        if (training) nn_zero_grad(nn, m->params, m->nparams);
        nn_backward(nn, loss);
        o->loss = nn_item(nn, loss);
        nn_reset(nn);
    }
    o->dx = dd_malloc((size_t)n * sizeof(float));
    nn_grad_download(nn, &x->var, o->dx);
    o->ndw = 0;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i]->var.requires_grad) o->ndw += tensor_numel(&m->params[i]->var.v);
    o->dw = dd_malloc((size_t)(o->ndw ? o->ndw : 1) * sizeof(float));
    int64_t off = 0;
    for (int i = 0; i < m->nparams; i++) {
        NnVar *v = &m->params[i]->var;
        if (!v->requires_grad) continue;
        nn_grad_download(nn, v, o->dw + off);
        off += tensor_numel(&v->v);
    }
    nn_memory(nn, &o->inuse, &o->held);
    tensor_free(&lab);
    nn_param_free(nn, x);
    model_free(m);
}

/* Every block of nn->dev on a 256-byte boundary? */
static int on_256(const void *p) { return ((uintptr_t)p & 255) == 0; }

static void same_bits(const char *name, int res, int training, int align256)
{
    int64_t n = (int64_t)N * 3 * res * res;
    float *px = dd_malloc((size_t)n * sizeof(float));
    DdRng r;
    dd_rng_init(&r, 11, 0, 0);
    for (int64_t i = 0; i < n; i++) px[i] = (float)(2 * dd_rng_uniform(&r) - 1);
    Out a, b;
    Nn *na = context(0), *nb = context(1);
    step(na, name, res, training, px, &a);
    step(nb, name, res, training, px, &b);
    CHECK_MSG(memcmp(&a.loss, &b.loss, sizeof a.loss) == 0, "%s %s: loss %.9g vs %.9g kept", name,
              training ? "train" : "recover", a.loss, b.loss);
    CHECK_MSG(!memcmp(a.dx, b.dx, (size_t)n * sizeof(float)), "%s %s: input gradients differ", name,
              training ? "train" : "recover");
    CHECK(a.ndw == b.ndw);
    CHECK_MSG(a.ndw == b.ndw && !memcmp(a.dw, b.dw, (size_t)a.ndw * sizeof(float)),
              "%s %s: weight gradients differ", name, training ? "train" : "recover");
    CHECK(training ? a.ndw > 0 : a.ndw == 0);
    if (align256) {
        Out c;
        Nn *nc = context(0);
        nc->dev.align = nc->dev_small.align = 256;
        step(nc, name, res, training, px, &c);
        CHECK_MSG(!memcmp(&a.loss, &c.loss, sizeof a.loss) && !memcmp(a.dx, c.dx, (size_t)n * sizeof(float)) &&
                      c.ndw == a.ndw && !memcmp(a.dw, c.dw, (size_t)a.ndw * sizeof(float)),
                  "%s %s: the 256-byte arena's results differ", name, training ? "train" : "recover");
        nn_free(nc);
        free(c.dx), free(c.dw);
    }
    fprintf(stderr, "%-14s %-7s arena in use %7.2f MiB (every value kept: %7.2f), held %7.2f\n", name,
            training ? "train" : "recover", a.inuse / 1048576.0, b.inuse / 1048576.0, a.held / 1048576.0);
    /* resnet18 keeps its BN inputs and block outputs: with the small stem 3 of the 4 tensors of
     * a block (and the gradients), with the imagenet stem not the stem's ReLU output either */
    double bound = !strcmp(name, "resnet18") ? 0.55 : !strcmp(name, "resnet18m") ? 0.65 : 0;
    if (!training && bound > 0)
        CHECK_MSG(a.inuse <= bound * b.inuse, "%s: %zu bytes in use, %zu with every value kept", name,
                  a.inuse, b.inuse);
    nn_free(na);
    nn_free(nb);
    free(a.dx), free(a.dw), free(b.dx), free(b.dw), free(px);
}

/* Runs fn in a child; its exit status, with its stderr in err. */
static int child(void (*fn)(void), char *err, size_t cap)
{
    int fd[2];
    if (pipe(fd) < 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t len = 0;
    ssize_t k;
    while (len + 1 < cap && (k = read(fd[0], err + len, cap - 1 - len)) > 0) len += (size_t)k;
    err[len] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void use_after_done(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    int64_t s[1] = {8};
    Tensor t = tensor_new(DD_F32, 1, s);
    memset(t.data, 0, 8 * sizeof(float));
    NnVar *a = nn_relu(nn, nn_input(nn, &t, 0));
    nn_done(nn, a);
    nn_relu(nn, a);
}

static void second_backward(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    int64_t s[1] = {8};
    Tensor t = tensor_new(DD_F32, 1, s);
    for (int i = 0; i < 8; i++) ((float *)t.data)[i] = (float)i - 3.5f;
    NnVar *x = nn_input(nn, &t, 1);
    NnVar *h = nn_relu(nn, nn_scale(nn, x, 2.0f)), *l = nn_sum(nn, h);
    nn_done(nn, h); /* relu's own output: kept for its backward, released by it */
    nn_backward(nn, l);
    nn_backward(nn, l);
}

static void rules(void)
{
    Nn *nn = nn_new(DD_CPU, 1);
    int64_t s[2] = {64, 1024};
    Tensor t = tensor_new(DD_F32, 2, s);
    for (int i = 0; i < 64 * 1024; i++) ((float *)t.data)[i] = (float)(i % 7) - 3.0f;
    NnVar *x = nn_input(nn, &t, 1);
    /* no backward reads scale's input or output: released at once, the memory reused */
    NnVar *a = nn_scale(nn, x, 2.0f);
    void *pa = a->v.data;
    nn_done(nn, a);
    CHECK(a->v.data == NULL);
    CHECK(a->v.shape[1] == 1024);
    NnVar *b = nn_scale(nn, x, 3.0f);
    CHECK(b->v.data == pa);
    /* relu's backward reads its output: kept until that backward ran */
    NnVar *y = nn_relu(nn, b);
    nn_done(nn, b);
    CHECK(b->v.data == NULL);
    nn_done(nn, y);
    CHECK(y->v.data != NULL && y->keeps == 1);
    NnVar *l = nn_sum(nn, nn_scale(nn, y, 1.0f));
    nn_backward(nn, l);
    CHECK(y->v.data == NULL && y->keeps == 0);
    /* params and borrowed inputs are not the engine's to release */
    NnParam *p = nn_param_new(nn, "p", NN_PARAM, 2, s);
    nn_done(nn, &p->var);
    CHECK(p->var.v.data != NULL);
    NnVar *bor = nn_input_borrow(nn, &t, 0);
    nn_done(nn, bor);
    CHECK(bor->v.data == t.data);
    nn_param_free(nn, p);
    nn_reset(nn);
    /* DD_NN_KEEP_ALL: nn_done does nothing */
    Nn *keep = context(1);
    NnVar *k = nn_scale(keep, nn_input(keep, &t, 0), 2.0f);
    nn_done(keep, k);
    CHECK(k->v.data != NULL);
    nn_free(keep);
    tensor_free(&t);
    nn_free(nn);

    char err[1024];
    int rc = child(use_after_done, err, sizeof err);
    CHECK_MSG(rc == 1 && strstr(err, "nn_relu") && strstr(err, "released"), "use after nn_done: exit %d, %s",
              rc, err);
    rc = child(second_backward, err, sizeof err);
    CHECK_MSG(rc == 1 && strstr(err, "second backward"), "second backward: exit %d, %s", rc, err);
}

/* 4.: blocks of odd sizes, small and large (the two device arenas), fresh and after a rewind; a
 * large freed block split by a smaller request leaves its tail on a boundary too. */
static void aligned_blocks(void)
{
    Nn *nn = context(0);
    nn->dev.align = nn->dev_small.align = 256;
    static const size_t sz[] = {4, 300, 1000, 70000, 200004, 65540, 12};
    enum { NS = sizeof sz / sizeof *sz };
    int bad = 0;
    for (int rep = 0; rep < 3; rep++) {
        void *p[NS];
        for (int i = 0; i < NS; i++) bad += !on_256(p[i] = nn_dev_alloc(nn, sz[i], i & 1));
        nn_dev_release(nn, p[4], sz[4]);
        void *q = nn_dev_alloc(nn, 66000, 0), *r = nn_dev_alloc(nn, 70000, 0);
        bad += !on_256(q) + !on_256(r);
        nn_dev_release(nn, p[1], sz[1]);
        bad += !on_256(nn_dev_alloc(nn, 44, 0));
        nn_reset(nn);
    }
    CHECK_MSG(bad == 0, "%d blocks of the 256-byte arena off a 256-byte boundary", bad);
    nn_free(nn);
}

int main(void)
{
    dd_prog_init("test_nn_lifetime");
    rules();
    aligned_blocks();
    same_bits("resnet18m", 32, 0, 1);
    same_bits("resnet18m", 16, 1, 0);
    same_bits("resnet18", 64, 0, 0);
    same_bits("resnet50m", 16, 0, 0);
    same_bits("convnet3", 32, 0, 0);
    same_bits("convnet3", 32, 1, 0);
    same_bits("mobilenet_v2m", 16, 0, 0);
    same_bits("mobilenet_v2m", 16, 1, 1);
    same_bits("densenet121m", 16, 0, 1);
    same_bits("densenet121", 32, 1, 0);
    same_bits("shufflenet_v2_x0_5m", 16, 0, 0);
    same_bits("shufflenet_v2_x1_0", 64, 1, 1);
    same_bits("efficientnet_b0m", 16, 0, 0);
    same_bits("efficientnet_b0m", 16, 1, 0);
    same_bits("alexnet", 64, 1, 0);
    return check_done("test_nn_lifetime");
}

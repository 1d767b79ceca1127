/* model_parity.c - the C side of tests/parity/models.sh: loads a weights file, an input batch and
 * labels, runs the recover loss (CE + r_bn * sum_l m_l * bn_stat_l, r_bn 0.01, m = 10 for the first
 * BN layer, 1 for the others) through model_forward in train or eval BN mode, backward to the input
 * and to every weight, and writes what model_peer.py compares with PyTorch:
 *   OUT/logits.npy [N,K], OUT/loss.npy [3] (ce, sum_l m_l stat_l, total), OUT/bnstat.npy [L],
 *   OUT/xgrad.npy [N,C,H,W], OUT/grads.safetensors (every parameter's gradient, by name),
 *   OUT/buffers.safetensors (running statistics after the forward),
 *   OUT/saved.safetensors (model_save of the loaded model, before the forward).
 * usage: model_parity WEIGHTS X.npy Y.npy train|eval OUTDIR */
#include "formats/codecs.h"
#include "libcommon/models/model.h"

#include <stdlib.h>
#include <string.h>

static void write_npy(const char *dir, const char *name, Tensor *t)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (npy_write_file(path, t) < 0) dd_die_err(1);
}

/* Writes the gradients (grads = 1) or the buffers (grads = 0) of m as safetensors. */
static void write_params(const char *dir, const char *name, Nn *nn, const Model *m, int grads)
{
    int n = 0;
    const char **names = dd_calloc((size_t)m->nparams, sizeof *names);
    Tensor *ts = dd_calloc((size_t)m->nparams, sizeof *ts);
    const Tensor **tp = dd_calloc((size_t)m->nparams, sizeof *tp);
    for (int i = 0; i < m->nparams; i++) {
        const NnParam *p = m->params[i];
        if ((p->var.role == NN_PARAM) != grads) continue;
        names[n] = p->name;
        ts[n] = tensor_new(DD_F32, p->var.v.ndim, p->var.v.shape);
        if (grads) nn_grad_download(nn, &p->var, ts[n].data);
        else nn_var_download(nn, &p->var, ts[n].data);
        tp[n] = &ts[n];
        n++;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (st_write_file(path, n, names, tp, NULL) < 0) dd_die_err(1);
    for (int i = 0; i < n; i++) tensor_free(&ts[i]);
    free(names);
    free(ts);
    free(tp);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    if (argc != 6 || (strcmp(argv[4], "train") && strcmp(argv[4], "eval")))
        dd_die(2, "usage: model_parity WEIGHTS X.npy Y.npy train|eval OUTDIR");
    int training = !strcmp(argv[4], "train");
    const char *out = argv[5];
    Nn *nn = nn_new(DD_CPU, 0);   /* threads: DD_THREADS, else every CPU */
    if (!nn) dd_die_err(3);
    Model *m = model_load(nn, argv[1]);
    if (!m) dd_die_err(1);
    Tensor x, y;
    if (npy_read_file(argv[2], &x) < 0 || npy_read_file(argv[3], &y) < 0) dd_die_err(1);
    if (x.dtype != DD_F32 || x.ndim != 4 || y.dtype != DD_I64 || y.ndim != 1 || y.shape[0] != x.shape[0])
        dd_die(1, "input must be F32 [N,C,H,W] and labels I64 [N]");

    char path[4096];
    snprintf(path, sizeof path, "%s/saved.safetensors", out);
    if (model_save(path, m, 0, NULL, NULL) < 0) dd_die_err(1);

    nn_zero_grad(nn, m->params, m->nparams);
    nn_bn_collect(nn, 1);
    NnVar *xv = nn_input(nn, &x, 1);
    NnVar *logits = model_forward(m, nn, xv, training);
    NnVar *ce = nn_cross_entropy(nn, logits, &y, 0.0f);
    int nbn = nn_bn_stat_count(nn);
    NnVar *bn = NULL;
    Tensor stats = tensor_newv(DD_F32, 1, (int64_t)nbn);
    for (int i = 0; i < nbn; i++) {
        NnVar *s = nn_bn_stat(nn, i);
        ((float *)stats.data)[i] = nn_item(nn, s);
        s = nn_scale(nn, s, i == 0 ? 10.0f : 1.0f);
        bn = bn ? nn_add(nn, bn, s) : s;
    }
    NnVar *loss = bn ? nn_add(nn, ce, nn_scale(nn, bn, 0.01f)) : ce;
    nn_backward(nn, loss);

    Tensor lt = tensor_new(DD_F32, logits->v.ndim, logits->v.shape);
    nn_var_download(nn, logits, lt.data);
    Tensor xg = tensor_new(DD_F32, 4, x.shape);
    nn_grad_download(nn, xv, xg.data);
    Tensor lv = tensor_newv(DD_F32, 1, (int64_t)3);
    float *l = lv.data;
    l[0] = nn_item(nn, ce);
    l[1] = bn ? nn_item(nn, bn) : 0.0f;
    l[2] = nn_item(nn, loss);
    write_npy(out, "logits.npy", &lt);
    write_npy(out, "loss.npy", &lv);
    write_npy(out, "bnstat.npy", &stats);
    write_npy(out, "xgrad.npy", &xg);
    write_params(out, "grads.safetensors", nn, m, 1);
    write_params(out, "buffers.safetensors", nn, m, 0);

    tensor_free(&lt);
    tensor_free(&xg);
    tensor_free(&lv);
    tensor_free(&stats);
    tensor_free(&x);
    tensor_free(&y);
    nn_reset(nn);
    model_free(m);
    nn_free(nn);
    return 0;
}

/* optim_parity.c - the C side of tests/parity/optim.sh: runs STEPS optimizer steps on the params of
 * INIT.safetensors with the gradients "step<k>.<name>" of GRADS.safetensors and writes the params
 * after the last step. Gradients enter through the engine (backward of sum(p * G)), as in training.
 * A param has decay = 1 when it is a weight with more than one dimension (conv/linear), as the zoo.
 * usage: optim_parity INIT GRADS STEPS sgd|adam|adamw LR MOMENTUM NESTEROV BETA1 BETA2 EPS WD
 *        DECAY_ALL OUT */
#include "formats/codecs.h"
#include "libcommon/optim/optim.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    if (argc != 14)
        dd_die(2, "usage: optim_parity INIT GRADS STEPS KIND LR MOM NESTEROV B1 B2 EPS WD ALL OUT");
    Safetensors init, grads;
    if (st_read_file(argv[1], &init) < 0 || st_read_file(argv[2], &grads) < 0) dd_die_err(1);
    int steps = (int)dd_opt_long("STEPS", argv[3], 1, 1000);
    OptimConf c = {0};
    if (!strcmp(argv[4], "sgd")) c.kind = OPTIM_SGD;
    else if (!strcmp(argv[4], "adam")) c.kind = OPTIM_ADAM;
    else if (!strcmp(argv[4], "adamw")) c.kind = OPTIM_ADAMW;
    else dd_die(2, "unknown optimizer %s", argv[4]);
    c.lr = dd_opt_double("LR", argv[5], 0, 10);
    c.momentum = dd_opt_double("MOM", argv[6], 0, 1);
    c.nesterov = (int)dd_opt_long("NESTEROV", argv[7], 0, 1);
    c.beta1 = dd_opt_double("B1", argv[8], 0, 1);
    c.beta2 = dd_opt_double("B2", argv[9], 0, 1);
    c.eps = dd_opt_double("EPS", argv[10], 0, 1);
    c.weight_decay = dd_opt_double("WD", argv[11], 0, 1);
    c.decay_all = (int)dd_opt_long("ALL", argv[12], 0, 1);

    Nn *nn = nn_new(DD_CPU, 1);
    if (!nn) dd_die_err(3);
    int n = init.n;
    NnParam **ps = dd_calloc((size_t)n, sizeof *ps);
    for (int i = 0; i < n; i++) {
        const StEntry *e = &init.e[i];
        if (e->t.dtype != DD_F32) dd_die(1, "%s: F32 expected", e->name);
        ps[i] = nn_param_new(nn, e->name, NN_PARAM, e->t.ndim, e->t.shape);
        nn_var_upload(nn, &ps[i]->var, e->t.data);
        ps[i]->var.requires_grad = 1;
        size_t len = strlen(e->name);
        ps[i]->decay = e->t.ndim > 1 && len >= 7 && !strcmp(e->name + len - 7, ".weight");
    }
    for (int k = 0; k < steps; k++) {
        nn_zero_grad(nn, ps, n);
        NnVar *loss = NULL;
        for (int i = 0; i < n; i++) {
            char name[300];
            snprintf(name, sizeof name, "step%d.%s", k, ps[i]->name);
            const StEntry *g = st_find(&grads, name);
            if (!g || !tensor_same_shape(&g->t, &ps[i]->var.v)) dd_die(1, "%s: missing or wrong shape", name);
            NnVar *term = nn_sum(nn, nn_mul(nn, &ps[i]->var, nn_input(nn, &g->t, 0)));
            loss = loss ? nn_add(nn, loss, term) : term;
        }
        nn_backward(nn, loss);
        if (optim_step(nn, &c, ps, n) < 0) dd_die_err(1);
        nn_reset(nn);
    }
    Tensor *ts = dd_calloc((size_t)n, sizeof *ts);
    const Tensor **tp = dd_calloc((size_t)n, sizeof *tp);
    const char **names = dd_calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        ts[i] = tensor_new(DD_F32, ps[i]->var.v.ndim, ps[i]->var.v.shape);
        nn_var_download(nn, &ps[i]->var, ts[i].data);
        tp[i] = &ts[i];
        names[i] = ps[i]->name;
    }
    if (st_write_file(argv[13], n, names, tp, NULL) < 0) dd_die_err(1);
    for (int i = 0; i < n; i++) {
        tensor_free(&ts[i]);
        nn_param_free(nn, ps[i]);
    }
    free(ts);
    free(tp);
    free(names);
    free(ps);
    st_free(&init);
    st_free(&grads);
    nn_free(nn);
    return 0;
}

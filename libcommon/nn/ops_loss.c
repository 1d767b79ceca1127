/* ops_loss.c - front-ends of the losses (cross-entropy with hard and soft targets, KL with
 * temperature) and of MixUp / CutMix (value-only, no tape). */
#include "libcommon/nn/nn_impl.h"

#include <string.h>

static void check_logits(const char *op, const NnVar *x)
{
    nn_check_f32(op, x, 2);
    nn_check(x->v.shape[0] >= 1 && x->v.shape[1] >= 1, op, "empty logits");
}

/* ---- hard labels ---- */

static void ce_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    NN_BE(nn, ce_bwd);
    nn->be->ce_bwd(nn->be, e->iarg[0], e->iarg[1], e->farg[0], nn_f(x), e->save[0], nn_dout(e),
                   nn_grad_of(nn, x));
}

NnVar *nn_cross_entropy(Nn *nn, NnVar *logits, const Tensor *labels, float label_smoothing)
{
    check_logits("cross_entropy", logits);
    int n = (int)logits->v.shape[0], k = (int)logits->v.shape[1];
    nn_check(labels->dtype == DD_I64 && labels->device == DD_CPU && tensor_numel(labels) == n,
             "cross_entropy", "labels must be I64 [%d] in host memory", n);
    const int64_t *lab = labels->data;
    for (int i = 0; i < n; i++)
        nn_check(lab[i] >= 0 && lab[i] < k, "cross_entropy", "label %lld of row %d outside [0,%d)",
                 (long long)lab[i], i, k);
    nn_check(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy",
             "label_smoothing %g outside [0,1]", label_smoothing);
    NnVar *y = nn_new_var(nn, 0, NULL);
    NN_BE(nn, ce_fwd);
    nn->be->ce_fwd(nn->be, n, k, label_smoothing, nn_f(logits), lab, nn_f(y));
    NnEntry *e = nn_record(nn, ce_backward, y, 1, &logits);
    if (e) {
        nn_keep(e, logits);
        int64_t *copy = nn_host_alloc(nn, (size_t)n * sizeof *copy);
        memcpy(copy, lab, (size_t)n * sizeof *copy);
        e->iarg[0] = n;
        e->iarg[1] = k;
        e->farg[0] = label_smoothing;
        e->save[0] = copy;
    }
    return y;
}

/* ---- soft targets ---- */

static void soft_ce_backward(Nn *nn, const NnEntry *e)
{
    NnVar *x = e->in[0];
    NN_BE(nn, soft_ce_bwd);
    nn->be->soft_ce_bwd(nn->be, e->iarg[0], e->iarg[1], nn_f(x), e->save[0], nn_dout(e),
                        nn_grad_of(nn, x));
}

NnVar *nn_soft_cross_entropy(Nn *nn, NnVar *logits, NnVar *target)
{
    check_logits("soft_cross_entropy", logits);
    nn_check_f32("soft_cross_entropy", target, 2);
    nn_check(tensor_same_shape(&logits->v, &target->v), "soft_cross_entropy",
             "target shape differs from logits");
    int n = (int)logits->v.shape[0], k = (int)logits->v.shape[1];
    NnVar *y = nn_new_var(nn, 0, NULL);
    NN_BE(nn, soft_ce_fwd);
    nn->be->soft_ce_fwd(nn->be, n, k, nn_f(logits), nn_f(target), nn_f(y));
    NnEntry *e = nn_record(nn, soft_ce_backward, y, 2, (NnVar *[]){logits, target});
    if (e) {
        nn_keep(e, logits);
        nn_keep(e, target);
        e->iarg[0] = n;
        e->iarg[1] = k;
        e->save[0] = nn_f(target);
    }
    return y;
}

/* ---- KL with temperature ---- */

static void kl_backward(Nn *nn, const NnEntry *e)
{
    NnVar *s = e->in[0];
    NN_BE(nn, kl_bwd);
    nn->be->kl_bwd(nn->be, e->iarg[0], e->iarg[1], e->farg[0], nn_f(s), e->save[0], nn_dout(e),
                   nn_grad_of(nn, s));
}

NnVar *nn_kl_div(Nn *nn, NnVar *student, NnVar *teacher, float T)
{
    check_logits("kl_div", student);
    nn_check_f32("kl_div", teacher, 2);
    nn_check(tensor_same_shape(&student->v, &teacher->v), "kl_div", "teacher shape differs");
    nn_check(T > 0, "kl_div", "temperature %g", T);
    int n = (int)student->v.shape[0], k = (int)student->v.shape[1];
    NnVar *y = nn_new_var(nn, 0, NULL);
    NN_BE(nn, kl_fwd);
    nn->be->kl_fwd(nn->be, n, k, T, nn_f(student), nn_f(teacher), nn_f(y));
    NnEntry *e = nn_record(nn, kl_backward, y, 2, (NnVar *[]){student, teacher});
    if (e) {
        nn_keep(e, student);
        nn_keep(e, teacher);
        e->iarg[0] = n;
        e->iarg[1] = k;
        e->farg[0] = T;
        e->save[0] = nn_f(teacher);
    }
    return y;
}

/* ---- mixing ---- */

static void check_perm(const char *op, const int64_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        nn_check(perm[i] >= 0 && perm[i] < n, op, "perm[%lld] = %lld outside [0,%lld)",
                 (long long)i, (long long)perm[i], (long long)n);
}

void nn_mixup(Nn *nn, NnVar *x, NnVar *y, const int64_t *perm, float lam)
{
    nn_check_f32("mixup", x, -1);
    int64_t n = x->v.shape[0];
    check_perm("mixup", perm, n);
    NN_BE(nn, mixup);
    nn->be->mixup(nn->be, n, nn_numel(x) / n, perm, lam, nn_f(x));
    if (y) {
        nn_check_f32("mixup", y, -1);
        nn_check(y->v.shape[0] == n, "mixup", "targets have %lld rows for %lld images",
                 (long long)y->v.shape[0], (long long)n);
        nn->be->mixup(nn->be, n, nn_numel(y) / n, perm, lam, nn_f(y));
    }
}

void nn_cutmix(Nn *nn, NnVar *x, const int64_t *perm, int y0, int x0, int y1, int x1)
{
    nn_check_f32("cutmix", x, 4);
    const int64_t *s = x->v.shape;
    nn_check(0 <= y0 && y0 <= y1 && y1 <= s[2] && 0 <= x0 && x0 <= x1 && x1 <= s[3], "cutmix",
             "box [%d,%d)x[%d,%d) outside %lldx%lld", y0, y1, x0, x1, (long long)s[2],
             (long long)s[3]);
    check_perm("cutmix", perm, s[0]);
    NN_BE(nn, cutmix);
    nn->be->cutmix(nn->be, (int)s[0], (int)s[1], (int)s[2], (int)s[3], perm, y0, x0, y1, x1,
                   nn_f(x));
}

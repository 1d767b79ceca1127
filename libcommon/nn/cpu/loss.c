/* loss.c - CPU losses over [n,k] logits (row by row, sums in double on the calling thread: the
 * logits are small) and the MixUp / CutMix value mixing. */
#include "libcommon/nn/cpu/cpu.h"

#include <math.h>
#include <string.h>

/* logp[k] = z[k]/T - logsumexp(z/T), in double. */
static void log_softmax_row(const float *z, int k, double T, double *logp)
{
    double m = -INFINITY, s = 0;
    for (int i = 0; i < k; i++) m = z[i] / T > m ? z[i] / T : m;
    for (int i = 0; i < k; i++) s += exp(z[i] / T - m);
    double lse = m + log(s);
    for (int i = 0; i < k; i++) logp[i] = z[i] / T - lse;
}

static double *row_buf(NnBackend *be, int k, int rows)
{
    return (double *)cpu_shared(be, 2 * (size_t)k * (size_t)rows);
}

static void ce_fwd(NnBackend *be, int n, int k, float eps, const float *logits,
                   const int64_t *host_labels, float *loss)
{
    double *lp = row_buf(be, k, 1), total = 0;
    for (int r = 0; r < n; r++) {
        log_softmax_row(logits + (size_t)r * k, k, 1.0, lp);
        double mean_nll = 0;
        for (int i = 0; i < k; i++) mean_nll -= lp[i];
        total += (1.0 - eps) * -lp[host_labels[r]] + eps * mean_nll / k;
    }
    loss[0] = (float)(total / n);
}

static void ce_bwd(NnBackend *be, int n, int k, float eps, const float *logits,
                   const int64_t *host_labels, const float *dloss, float *dlogits)
{
    double *lp = row_buf(be, k, 1), g = (double)dloss[0] / n;
    for (int r = 0; r < n; r++) {
        log_softmax_row(logits + (size_t)r * k, k, 1.0, lp);
        float *d = dlogits + (size_t)r * k;
        for (int i = 0; i < k; i++) {
            double t = eps / k + (i == host_labels[r] ? 1.0 - eps : 0.0);
            d[i] += (float)(g * (exp(lp[i]) - t));
        }
    }
}

static void soft_ce_fwd(NnBackend *be, int n, int k, const float *logits, const float *target,
                        float *loss)
{
    double *lp = row_buf(be, k, 1), total = 0;
    for (int r = 0; r < n; r++) {
        log_softmax_row(logits + (size_t)r * k, k, 1.0, lp);
        for (int i = 0; i < k; i++) total -= target[(size_t)r * k + i] * lp[i];
    }
    loss[0] = (float)(total / n);
}

static void soft_ce_bwd(NnBackend *be, int n, int k, const float *logits, const float *target,
                        const float *dloss, float *dlogits)
{
    double *lp = row_buf(be, k, 1), g = (double)dloss[0] / n;
    for (int r = 0; r < n; r++) {
        const float *t = target + (size_t)r * k;
        log_softmax_row(logits + (size_t)r * k, k, 1.0, lp);
        double ts = 0;
        for (int i = 0; i < k; i++) ts += t[i];
        float *d = dlogits + (size_t)r * k;
        for (int i = 0; i < k; i++) d[i] += (float)(g * (exp(lp[i]) * ts - t[i]));
    }
}

/* KL(p_t || p_s) with p = softmax(z / T); terms with p_t = 0 contribute 0. */
static void kl_fwd(NnBackend *be, int n, int k, float T, const float *student, const float *teacher,
                   float *loss)
{
    double *ls = row_buf(be, k, 2), *lt = ls + k, total = 0;
    for (int r = 0; r < n; r++) {
        log_softmax_row(student + (size_t)r * k, k, T, ls);
        log_softmax_row(teacher + (size_t)r * k, k, T, lt);
        for (int i = 0; i < k; i++) {
            double pt = exp(lt[i]);
            if (pt > 0) total += pt * (lt[i] - ls[i]);
        }
    }
    loss[0] = (float)(total / n);
}

static void kl_bwd(NnBackend *be, int n, int k, float T, const float *student, const float *teacher,
                   const float *dloss, float *dstudent)
{
    double *ls = row_buf(be, k, 2), *lt = ls + k, g = (double)dloss[0] / ((double)n * T);
    for (int r = 0; r < n; r++) {
        log_softmax_row(student + (size_t)r * k, k, T, ls);
        log_softmax_row(teacher + (size_t)r * k, k, T, lt);
        double ts = 0;
        for (int i = 0; i < k; i++) ts += exp(lt[i]);
        float *d = dstudent + (size_t)r * k;
        for (int i = 0; i < k; i++) d[i] += (float)(g * (exp(ls[i]) * ts - exp(lt[i])));
    }
}

static void mixup(NnBackend *be, int64_t n, int64_t row, const int64_t *host_perm, float lam, float *x)
{
    float *orig = cpu_shared(be, (size_t)(n * row));
    memcpy(orig, x, (size_t)(n * row) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        const float *a = orig + i * row, *b = orig + host_perm[i] * row;
        float *y = x + i * row;
        for (int64_t e = 0; e < row; e++) y[e] = lam * a[e] + (1.0f - lam) * b[e];
    }
}

static void cutmix(NnBackend *be, int n, int c, int h, int w, const int64_t *host_perm, int y0,
                   int x0, int y1, int x1, float *x)
{
    size_t img = (size_t)c * h * w;
    float *orig = cpu_shared(be, (size_t)n * img);
    memcpy(orig, x, (size_t)n * img * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int r = y0; r < y1; r++) {
                size_t off = (size_t)ch * h * w + (size_t)r * w + (size_t)x0;
                memcpy(x + i * img + off, orig + (size_t)host_perm[i] * img + off,
                       (size_t)(x1 - x0) * sizeof(float));
            }
}

void cpu_loss_init(NnBackend *be)
{
    be->ce_fwd = ce_fwd;
    be->ce_bwd = ce_bwd;
    be->soft_ce_fwd = soft_ce_fwd;
    be->soft_ce_bwd = soft_ce_bwd;
    be->kl_fwd = kl_fwd;
    be->kl_bwd = kl_bwd;
    be->mixup = mixup;
    be->cutmix = cutmix;
}

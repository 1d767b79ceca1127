/* bench_dev.h - the benches' leading options and device: "-d cpu|cuda[:fp16|:bf16]" (and flags
 * such as bench_train's --score) taken off argv, and the context the device names. */
#ifndef DD_BENCH_DEV_H
#define DD_BENCH_DEV_H

#include "libcommon/base/base.h"
#include "libcommon/nn/nn.h"

#include <string.h>

/* Takes a leading `flag` and its n_values words off argv (argv[0] stays); 1 when it was there,
 * *value (when given) pointing at its first value. */
static inline int bench_take(int *argc, char ***argv, const char *flag, int n_values, const char **value)
{
    if (*argc <= n_values + 1 || strcmp((*argv)[1], flag)) return 0;
    if (value) *value = (*argv)[2];
    (*argv)[n_values + 1] = (*argv)[0];
    *argv += n_values + 1;
    *argc -= n_values + 1;
    return 1;
}

/* The context of device string dev (cpu, cuda, cuda:fp16, cuda:bf16); exit 3 when unavailable. */
static inline Nn *bench_nn(const char *dev, int threads)
{
    Nn *nn = nn_new(strncmp(dev, "cuda", 4) ? DD_CPU : DD_CUDA, threads);
    if (!nn) dd_die_err(3);
    const char *prec = strchr(dev, ':');
    if (prec && nn_set_precision(nn, !strcmp(prec, ":fp16") ? NN_FP16 : !strcmp(prec, ":bf16") ? NN_BF16
                                                                                           : NN_FP32) < 0)
        dd_die_err(3);
    return nn;
}

#endif

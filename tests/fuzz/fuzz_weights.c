/* fuzz_weights.c - libFuzzer harness for model_load: a weights file (safetensors) as a user might
 * download it, whose metadata ("arch" and its options, input size, classes, mean/std) and tensor
 * names and shapes decide the model that is built. Any file must give a model or an error message,
 * never a crash, a leak or an allocation out of proportion to the file (libFuzzer's -rss_limit_mb
 * and -malloc_limit_mb catch those). */
#include "libcommon/base/base.h"
#include "libcommon/models/model.h"
#include "libcommon/nn/nn.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static Nn *nn;
    static char path[4096];
    if (!nn) { /* model_load reads a path: each input goes through one file of this process's */
        nn = nn_new(DD_CPU, 1);
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/fuzz_weights.%d.safetensors", dir && *dir ? dir : "/tmp", (int)getpid());
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t wrote = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || wrote != size) return 0;
    Model *m = model_load(nn, path);
    if (m) model_free(m);
    unlink(path);
    return 0;
}

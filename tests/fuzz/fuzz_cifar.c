/* fuzz_cifar.c - libFuzzer harness for the dataset files tsimport reads besides the ones with
 * harnesses of their own: CIFAR-10/100 binary batches (cifar_read), the python batches and their
 * meta files (cifar_read_py, cifar_names_py: a pickled dict walked for 'data', the labels and the
 * class names), one-entry-per-line files (dd_read_lines: class names, keys.txt) and the kind
 * sniffer of error messages (dd_sniff). The readers take paths: each input goes through one file
 * of this process's. Any file must give tensors or an error message, never a crash or a leak;
 * what reads must be consistent (as many labels as images, labels in range). */
#include "formats/codecs.h"
#include "formats/sniff.h"
#include "libcommon/base/base.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check_set(const Tensor *im, const Tensor *lab, int classes)
{
    if (im->ndim != 4 || im->shape[1] != 3 || im->shape[2] != 32 || im->shape[3] != 32 ||
        lab->ndim != 1 || lab->shape[0] != im->shape[0] || im->shape[0] < 1)
        abort();
    for (int64_t i = 0; i < lab->shape[0]; i++) {
        int64_t l = ((const int64_t *)lab->data)[i];
        if (l < 0 || l >= classes) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[4096];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/fuzz_cifar.%d", dir && *dir ? dir : "/tmp", (int)getpid());
    }
    (void)dd_sniff(data, size);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t wrote = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || wrote != size) return 0;
    for (int c100 = 0; c100 <= 1; c100++) {
        Tensor im, lab;
        if (cifar_read(path, c100, &im, &lab) == 0) {
            check_set(&im, &lab, c100 ? 100 : 10);
            tensor_free(&im);
            tensor_free(&lab);
        }
        if (cifar_read_py(path, c100, &im, &lab) == 0) {
            check_set(&im, &lab, c100 ? 100 : 10);
            tensor_free(&im);
            tensor_free(&lab);
        }
        char **names;
        int n;
        if (cifar_names_py(path, c100, &names, &n) == 0) dd_lines_free(names, n);
    }
    char **lines;
    int n;
    if (dd_read_lines(path, &lines, &n) == 0) {
        for (int i = 0; i < n; i++)
            if (!lines[i][0]) abort(); /* blank entries are errors, never empty strings */
        dd_lines_free(lines, n);
    }
    unlink(path);
    return 0;
}

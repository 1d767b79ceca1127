/* cifar.c - CIFAR-10/100 binary batches: records of label byte(s) + 3072 pixel bytes (R, G, B
 * planes of 32x32, row-major), which is already our [3,32,32] layout. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#define CIFAR_PIXELS 3072

int cifar_read(const char *path, int cifar100, Tensor *images, Tensor *labels)
{
    memset(images, 0, sizeof *images);
    memset(labels, 0, sizeof *labels);
    void *buf;
    size_t len;
    if (dd_read_file(path, &buf, &len)) return -1;
    size_t nlab = cifar100 ? 2 : 1, rec = nlab + CIFAR_PIXELS, nclass = cifar100 ? 100 : 10;
    if (len == 0 || len % rec) {
        free(buf);
        return dd_err("%s: %s file size %zu is not a positive multiple of the %zu-byte record", path,
                      cifar100 ? "CIFAR-100" : "CIFAR-10", len, rec);
    }
    size_t n = len / rec;
    const uint8_t *b = buf;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = b + i * rec;
        if ((cifar100 && r[0] >= 20) || r[nlab - 1] >= nclass) {
            int bad = cifar100 && r[0] >= 20 ? r[0] : r[nlab - 1];
            free(buf);
            return dd_err("%s: record %zu: label %d out of range (is this a %s file?)", path, i, bad,
                          cifar100 ? "CIFAR-100" : "CIFAR-10");
        }
    }
    *images = tensor_newv(DD_U8, 4, (int64_t)n, (int64_t)3, (int64_t)32, (int64_t)32);
    *labels = tensor_newv(DD_I64, 1, (int64_t)n);
    uint8_t *im = images->data;
    int64_t *lab = labels->data;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = b + i * rec;
        lab[i] = r[nlab - 1]; /* CIFAR-100: (coarse, fine), the fine label is kept */
        memcpy(im + i * CIFAR_PIXELS, r + nlab, CIFAR_PIXELS);
    }
    free(buf);
    return 0;
}

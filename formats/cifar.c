/* cifar.c - CIFAR-10/100 binary batches: records of label byte(s) + 3072 pixel bytes (R, G, B
 * planes of 32x32, row-major), which is already our [3,32,32] layout; and the python batches, a
 * pickled dict whose 'data' holds the same rows as a numpy uint8 [N,3072] array. */
#include "formats/codecs.h"
#include "formats/pickle.h"
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

/* ---- the python version (cifar-10-batches-py, cifar-100-python: what torchvision downloads) ---- */

static int load_pickle(const char *path, void **buf, Pickle **p, const PkObj **root)
{
    size_t len;
    if (dd_read_file(path, buf, &len)) return -1;
    if (pickle_parse(*buf, len, path, p, root) < 0) {
        free(*buf);
        return -1;
    }
    if ((*root)->kind != PK_DICT) {
        pickle_free(*p);
        free(*buf);
        return dd_err("%s: the pickle is not a dict (is this a CIFAR python batch?)", path);
    }
    return 0;
}

int cifar_read_py(const char *path, int cifar100, Tensor *images, Tensor *labels)
{
    memset(images, 0, sizeof *images);
    memset(labels, 0, sizeof *labels);
    void *buf;
    Pickle *p;
    const PkObj *d;
    if (load_pickle(path, &buf, &p, &d) < 0) return -1;
    const char *lkey = cifar100 ? "fine_labels" : "labels";
    char what[1100];
    Tensor x = {0}, y = {0};
    int rc = -1;
    const PkObj *xo = pk_get(d, "data"), *yo = pk_get(d, lkey);
    if (!xo || !yo) {
        dd_err("%s: no '%s' in the batch's dict (is this a CIFAR-%d python batch?)", path, xo ? lkey : "data",
               cifar100 ? 100 : 10);
        goto done;
    }
    snprintf(what, sizeof what, "%s: 'data'", path);
    if (pk_ndarray(xo, what, &x) < 0) goto done;
    snprintf(what, sizeof what, "%s: '%s'", path, lkey);
    if (pk_int_list(yo, what, &y) < 0) goto done;
    int64_t n = x.ndim >= 1 ? x.shape[0] : 0;
    /* rows of R, G, B planes: [N,3072], or the same as [N,3,32,32]; not torchvision's [N,32,32,3]
     * (CIFAR10.data), whose 3072 bytes per image are interleaved */
    const int rows = x.ndim == 2 && x.shape[1] == CIFAR_PIXELS;
    const int planes = x.ndim == 4 && x.shape[1] == 3 && x.shape[2] == 32 && x.shape[3] == 32;
    if (x.dtype != DD_U8 || !(rows || planes) || n < 1) {
        char desc[96];
        dd_err("%s: 'data' is %s, want U8 [N,3072] (rows of R, G and B planes)%s", path,
               tensor_describe(&x, desc, sizeof desc),
               x.ndim == 4 && x.shape[3] == 3 ? "; [N,32,32,3] is channels-last: transpose(0,3,1,2)" : "");
        goto done;
    }
    if (y.shape[0] != n) {
        dd_err("%s: %lld labels for %lld images", path, (long long)y.shape[0], (long long)n);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t l = ((const int64_t *)y.data)[i];
        if (l < 0 || l >= (cifar100 ? 100 : 10)) {
            dd_err("%s: image %lld: label %lld out of range (is this a CIFAR-%d file?)", path, (long long)i,
                   (long long)l, cifar100 ? 100 : 10);
            goto done;
        }
    }
    *images = tensor_newv(DD_U8, 4, n, (int64_t)3, (int64_t)32, (int64_t)32);
    memcpy(images->data, x.data, (size_t)n * CIFAR_PIXELS);
    *labels = y;
    y.data = NULL;
    rc = 0;
done:
    tensor_free(&x);
    tensor_free(&y);
    pickle_free(p);
    free(buf);
    return rc;
}

int cifar_names_py(const char *path, int cifar100, char ***names, int *n)
{
    void *buf;
    Pickle *p;
    const PkObj *d;
    *names = NULL;
    *n = 0;
    if (load_pickle(path, &buf, &p, &d) < 0) return -1;
    const char *key = cifar100 ? "fine_label_names" : "label_names";
    char what[1100];
    snprintf(what, sizeof what, "%s: '%s'", path, key);
    int rc = pk_get(d, key) ? pk_str_list(pk_get(d, key), what, names, n) : dd_err("%s: no '%s'", path, key);
    pickle_free(p);
    free(buf);
    return rc;
}

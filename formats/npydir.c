/* npydir.c - npy directories (see npydir.h): read whole into one tensor per field with the keys and
 * class names beside them, and written from records stacked row by row in memory, the arrays
 * through npy.c. */
#include "formats/npydir.h"
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NPYDIR_FILES_MAX 128

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* ---- reading ---- */

/* Floating-point images must be pixels in [0,1], as the stream wants them: images saved as 0..255
 * floats (no division by 255), NaN or infinities would otherwise flow into every stage. */
static int check_pixels(const char *dir, const Tensor *t)
{
    if (t->dtype == DD_U8) return 0;
    const int64_t n = tensor_numel(t), row = t->shape[0] ? n / t->shape[0] : 0;
    for (int64_t i = 0; i < n; i++) {
        const double v = tensor_get_f64(t, i);
        if (!(v >= 0 && v <= 1))
            return dd_err("%s/image.npy: row %lld: pixel %g outside [0,1] (an image.npy that is not uint8 holds "
                          "pixels in [0,1]: divide 0..255 values by 255, or save uint8)", dir, (long long)(i / row), v);
    }
    return 0;
}

/* The fields: every NAME.npy, checked, and which are image and label. */
static int read_fields(const char *dir, NpyDir *out)
{
    DIR *d = opendir(dir);
    if (!d) return dd_err("%s: cannot open directory", dir);
    out->names = dd_malloc(NPYDIR_FILES_MAX * sizeof *out->names);
    out->t = dd_calloc(NPYDIR_FILES_MAX, sizeof *out->t);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".npy") || e->d_name[0] == '.') continue;
        if (out->nfields == NPYDIR_FILES_MAX) {
            closedir(d);
            return dd_err("%s: too many .npy files", dir);
        }
        out->names[out->nfields] = dd_strdup(e->d_name);
        out->names[out->nfields++][len - 4] = 0;
    }
    closedir(d);
    qsort(out->names, (size_t)out->nfields, sizeof *out->names, cmp_str);
    for (int i = 0; i < out->nfields; i++) {
        char *fn = dd_path_join(dir, out->names[i]), *p = dd_malloc(strlen(fn) + 5);
        sprintf(p, "%s.npy", fn);
        free(fn);
        int rc = 0;
        if (!ts_key_valid(out->names[i])) rc = dd_err("%s: '%s' is not a valid field name", p, out->names[i]);
        else if (npy_read_file(p, &out->t[i]) < 0) rc = -1;
        else if (out->t[i].ndim < 1) rc = dd_err("%s: scalar, want one row per record", p);
        free(p);
        if (rc) return -1;
        if (!strcmp(out->names[i], "image")) out->image = i;
        if (!strcmp(out->names[i], "label")) out->label = i;
    }
    if (out->image < 0) return dd_err("%s: no image.npy", dir);
    const int64_t n = out->t[out->image].shape[0];
    Tensor *im = &out->t[out->image];
    if (im->ndim == 3) { /* [N,H,W] (MNIST-like arrays, and tsexport of 2-D images): one channel */
        im->shape[3] = im->shape[2], im->shape[2] = im->shape[1], im->shape[1] = 1;
        im->ndim = 4;
    }
    if (im->ndim != 4) return dd_err("%s/image.npy: want shape [N,C,H,W], or [N,H,W] for one channel", dir);
    /* [N,H,W,3] (torchvision's CIFAR10.data, PIL arrays stacked) would pass as H-channel images
     * of width 3, and fail far away */
    if ((im->shape[3] == 1 || im->shape[3] == 3) && im->shape[1] > 4)
        return dd_err("%s/image.npy: shape [%lld,%lld,%lld,%lld] looks channels-last [N,H,W,C] (as [N,C,H,W]: "
                      "%lld channels, %lld pixels wide): save x.transpose(0,3,1,2)", dir, (long long)im->shape[0],
                      (long long)im->shape[1], (long long)im->shape[2], (long long)im->shape[3],
                      (long long)im->shape[1], (long long)im->shape[3]);
    if (check_pixels(dir, &out->t[out->image]) < 0) return -1;
    for (int i = 0; i < out->nfields; i++)
        if (out->t[i].shape[0] != n)
            return dd_err("%s/%s.npy: %lld rows, image.npy has %lld", dir, out->names[i],
                          (long long)out->t[i].shape[0], (long long)n);
    out->n = n;
    return 0;
}

/* label.npy, if there is one: class indices, [N] of an integer dtype, each in 0..NPYDIR_CLASSES_MAX-1.
 * One-hot or soft labels are another field. Whether a class list names each label is the
 * reader's to check: tsimport --classes-file replaces classes.txt. */
static int check_labels(const char *dir, const NpyDir *d)
{
    if (d->label < 0) return 0;
    const Tensor *t = &d->t[d->label];
    char desc[64];
    switch (t->dtype) {
    case DD_U8: case DD_I8: case DD_U16: case DD_I16: case DD_U32: case DD_I32: case DD_U64: case DD_I64: break;
    default: return dd_err("%s/label.npy: %s: want integer class indices [N] (soft or one-hot labels go in another "
                           "NAME.npy)", dir, tensor_describe(t, desc, sizeof desc));
    }
    if (t->ndim != 1)
        return dd_err("%s/label.npy: %s: want integer class indices [N] (soft or one-hot labels go in another "
                      "NAME.npy)", dir, tensor_describe(t, desc, sizeof desc));
    for (int64_t i = 0; i < d->n; i++) {
        double v = tensor_get_f64(t, i); /* exact: the bound is far below 2^53 */
        if (v < 0) return dd_err("%s/label.npy: row %lld: label %.0f is negative", dir, (long long)i, v);
        if (v >= NPYDIR_CLASSES_MAX)
            return dd_err("%s/label.npy: row %lld: label %.0f is not a class index (0 to %d)", dir, (long long)i, v,
                          NPYDIR_CLASSES_MAX - 1);
    }
    return 0;
}

/* keys.txt and classes.txt; the classes "0".."K-1" when there is no classes.txt. */
static int read_lists(const char *dir, NpyDir *out)
{
    char *kp = dd_path_join(dir, "keys.txt"), *cp = dd_path_join(dir, "classes.txt");
    int nk = 0, rc = -1;
    if (dd_is_file(kp) && dd_read_lines(kp, &out->keys, &nk) < 0) goto done;
    if (out->keys && nk != out->n) {
        dd_err("%s: %d keys for %lld records", kp, nk, (long long)out->n);
        dd_lines_free(out->keys, nk);
        out->keys = NULL;
        goto done;
    }
    if (dd_is_file(cp) && dd_read_lines(cp, &out->classes, &out->nclasses) < 0) goto done;
    if (!out->classes) { /* K = 1 + the largest label */
        const Tensor *lab = out->label >= 0 ? &out->t[out->label] : NULL;
        int64_t k = 0;
        for (int64_t i = 0; lab && i < out->n; i++)
            if ((int64_t)tensor_get_f64(lab, i) + 1 > k) k = (int64_t)tensor_get_f64(lab, i) + 1;
        out->classes = dd_calloc((size_t)k + 1, sizeof *out->classes);
        for (out->nclasses = 0; out->nclasses < k; out->nclasses++) {
            out->classes[out->nclasses] = dd_malloc(24);
            snprintf(out->classes[out->nclasses], 24, "%d", out->nclasses);
        }
    }
    rc = 0;
done:
    free(kp);
    free(cp);
    return rc;
}

int npydir_read(const char *dir, NpyDir *out)
{
    memset(out, 0, sizeof *out);
    out->image = out->label = -1;
    if (read_fields(dir, out) < 0 || check_labels(dir, out) < 0 || read_lists(dir, out) < 0) {
        npydir_free(out);
        return -1;
    }
    return 0;
}

void npydir_free(NpyDir *d)
{
    for (int i = 0; i < d->nfields; i++) {
        tensor_free(&d->t[i]);
        free(d->names[i]);
    }
    free(d->t);
    free(d->names);
    if (d->keys) dd_lines_free(d->keys, (int)d->n);
    if (d->classes) dd_lines_free(d->classes, d->nclasses);
    memset(d, 0, sizeof *d);
}

/* ---- writing ---- */

/* Appends row w->n of field `name`; its dtype and shape must match the first record's. */
static int stack_put(NpyDirWriter *w, const char *name, const Tensor *t, const char *key)
{
    int i = 0;
    while (i < w->nfields && strcmp(w->field[i].name, name)) i++;
    if (i == w->nfields) {
        if (w->n > 0)
            return dd_err("record %lld (%s): field '%s' absent from the records before", (long long)w->n, key, name);
        if (i == NPYDIR_FIELDS_MAX)
            return dd_err("record %lld (%s): more than %d fields, the most --npy writes", (long long)w->n, key,
                          NPYDIR_FIELDS_MAX);
        NpyStack *s = &w->field[w->nfields++];
        snprintf(s->name, sizeof s->name, "%s", name);
        s->first = *t;
        s->first.data = NULL;
        s->first.owns = 0;
        s->rowbytes = (size_t)tensor_nbytes(t);
    }
    NpyStack *s = &w->field[i];
    char a[128], b[128];
    if (!tensor_same_shape(&s->first, t))
        return dd_err("record %lld (%s): field '%s' is %s, earlier records have %s", (long long)w->n, key, name,
                      tensor_describe(t, a, sizeof a), tensor_describe(&s->first, b, sizeof b));
    size_t need = s->rowbytes * (size_t)(w->n + 1);
    if (need > s->cap) {
        s->cap = need * 2;
        s->data = dd_realloc(s->data, s->cap);
    }
    memcpy(s->data + s->rowbytes * (size_t)w->n, t->data, s->rowbytes);
    return 0;
}

int npydir_add(NpyDirWriter *w, const TsRecord *r)
{
    Tensor im;
    if (ts_record_image_f32(r, &im) < 0) return dd_err_prefix("record %lld (%s)", (long long)w->n, r->key);
    int rc = stack_put(w, "image", &im, r->key);
    tensor_free(&im);
    if (!rc && ts_record_cget(r, "label")) {
        int64_t y = ts_record_label(r);
        if (y < 0) return dd_err_prefix("record %lld (%s)", (long long)w->n, r->key);
        Tensor lt = tensor_scalar_i64(y);
        rc = stack_put(w, "label", &lt, r->key);
        tensor_free(&lt);
    }
    for (int f = 0; f < r->nfields && !rc; f++)
        if (strcmp(r->fields[f].name, "image") && strcmp(r->fields[f].name, "label"))
            rc = stack_put(w, r->fields[f].name, &r->fields[f].t, r->key);
    if (rc) return -1;
    if (r->nfields != w->nfields)
        return dd_err("record %lld (%s): %d fields, earlier records have %d", (long long)w->n, r->key, r->nfields,
                      w->nfields);
    if ((w->n & (w->n - 1)) == 0) w->keys = dd_realloc(w->keys, sizeof *w->keys * (size_t)(w->n ? 2 * w->n : 1));
    w->keys[w->n++] = dd_strdup(r->key);
    return 0;
}

static const char *key_line(const void *w, int i) { return ((const NpyDirWriter *)w)->keys[i]; }
static const char *class_line(const void *h, int i) { return ts_header_class(h, i); }

/* dir/name: line(ctx, i) for i in [0, n), one per line. */
static int write_lines(const char *dir, const char *name, int n, const char *(*line)(const void *, int),
                       const void *ctx)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return dd_err("%s: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) fprintf(f, "%s\n", line(ctx, i));
    return dd_fclose_checked(f, path);
}

int npydir_write(const NpyDirWriter *w, const char *dir, const TsHeader *h)
{
    char path[4096];
    for (int i = 0; i < w->nfields; i++) {
        const NpyStack *s = &w->field[i];
        Tensor t = s->first;
        if (t.ndim == DD_MAXDIM) return dd_err("field '%s': %d dimensions, no room to stack", s->name, t.ndim);
        memmove(t.shape + 1, t.shape, sizeof(int64_t) * (size_t)t.ndim);
        t.shape[0] = w->n;
        t.ndim++;
        t.data = s->data;
        snprintf(path, sizeof path, "%s/%s.npy", dir, s->name);
        if (npy_write_file(path, &t) < 0) return -1;
    }
    if (w->n == 0) { /* no records, no shapes: image [0,0,0,0] and label [0], an empty stream read back */
        float none;
        Tensor im = {.dtype = DD_F32, .ndim = 4, .data = &none}, lab = {.dtype = DD_I64, .ndim = 1, .data = &none};
        snprintf(path, sizeof path, "%s/image.npy", dir);
        if (npy_write_file(path, &im) < 0) return -1;
        snprintf(path, sizeof path, "%s/label.npy", dir);
        if (npy_write_file(path, &lab) < 0) return -1;
    }
    if (write_lines(dir, "keys.txt", (int)w->n, key_line, w) < 0) return -1;
    return write_lines(dir, "classes.txt", ts_header_nclasses(h), class_line, h);
}

void npydir_writer_free(NpyDirWriter *w)
{
    for (int i = 0; i < w->nfields; i++) free(w->field[i].data);
    for (int64_t i = 0; i < w->n; i++) free(w->keys[i]);
    free(w->keys);
    memset(w, 0, sizeof *w);
}

/* npydir.h - npy directories: a record stream as one NumPy array per field, stacked over the
 * records (image.npy [N,C,H,W], label.npy [N], NAME.npy [N,...]), with keys.txt (one key per
 * line) and classes.txt (one class name per line). tsexport --npy writes them, tsimport --format
 * npy reads them, and Python opens them with numpy.load and no code of ours.
 *
 * Errors: -1 with dd_err naming the file, or the record by index and key.
 */
#ifndef DD_NPYDIR_H
#define DD_NPYDIR_H

#include <stdint.h>

#include "formats/stream.h"
#include "libcommon/tensor/tensor.h"

/* ---- reading ---- */

typedef struct {
    int nfields;
    char **names;          /* [nfields] field names: the .npy files' names less ".npy", sorted by strcmp */
    Tensor *t;             /* [nfields] owning, [N, ...] */
    int image, label;      /* indices of image and label in names (label -1 when there is no label.npy) */
    int64_t n;             /* N, the rows: one per record */
    char **keys;           /* [n] lines of keys.txt, not validated; NULL when absent or empty */
    int nclasses;
    char **classes;        /* [nclasses] lines of classes.txt; when absent or empty "0".."K-1", K = 1 + the
                              largest label (0 without label.npy) */
} NpyDir;

/* Reads every NAME.npy of dir (hidden files skipped; at most 128). Each NAME must be a valid field
 * name (ts_key_valid) and each array have at least one dimension; image.npy must be there, 4-D,
 * uint8 or pixels in [0,1] (NaN and infinities refused too);
 * every array must have image.npy's row count, and keys.txt that many lines; label.npy, if there,
 * must be integer class indices [N] in 0..NPYDIR_CLASSES_MAX-1 (whether classes names each one is
 * the caller's check: a class list may replace it). On failure nothing is left to free. */
#define NPYDIR_CLASSES_MAX (1 << 20)
int npydir_read(const char *dir, NpyDir *out);
void npydir_free(NpyDir *d);

/* ---- writing ---- */

#define NPYDIR_FIELDS_MAX 64

typedef struct {
    char name[TS_NAME_MAX + 1];
    Tensor first;          /* dtype and shape of the first record's (no data) */
    char *data;            /* the rows so far */
    size_t rowbytes, cap;
} NpyStack;

typedef struct {
    int nfields;
    NpyStack field[NPYDIR_FIELDS_MAX];
    char **keys;           /* [n] */
    int64_t n;             /* records added */
} NpyDirWriter;            /* zero-initialise before the first npydir_add */

/* Appends record r as row n: its image as F32 [C,H,W] in [0,1] (ts_record_image_f32), its label as
 * I64 (ts_record_label) when it has a label field, every other field as it is. Every record must
 * have the first record's fields with the same dtypes and shapes, at most NPYDIR_FIELDS_MAX. */
int npydir_add(NpyDirWriter *w, const TsRecord *r);
/* Writes NAME.npy for every field, keys.txt and h's classes.txt into the existing directory dir
 * (no records: image.npy F32 [0,0,0,0] and label.npy I64 [0]). w stays to be freed. */
int npydir_write(const NpyDirWriter *w, const char *dir, const TsHeader *h);
void npydir_writer_free(NpyDirWriter *w);

#endif

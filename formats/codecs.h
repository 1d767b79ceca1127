/* codecs.h - the file formats ddpipe reads and writes besides its own stream: NumPy .npy,
 * PNG, JPEG, IDX (MNIST / Fashion-MNIST, gzip or plain), CIFAR-10/100 (binary, and python through
 * formats/pickle.h), ImageFolder trees, and safetensors; and the file and directory helpers they
 * share. Each parser trusts no size: every product is checked for overflow before allocation, and
 * a malformed file is an error naming the file and what is wrong.
 *
 * Ownership: functions returning a Tensor return an owning CPU tensor (tensor_free). Lists are
 * freed with their *_free function. Errors: -1 (or NULL) with dd_err set; `name` arguments are
 * used in messages only.
 */
#ifndef DD_CODECS_H
#define DD_CODECS_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "libcommon/tensor/tensor.h"

/* ---- NumPy .npy (v1, v2, v3 read; v1 written, v2 when the header needs it) ---- */

/* Parses a complete .npy image in memory (C or Fortran order; out is C order). */
int npy_parse(const void *buf, size_t len, const char *name, Tensor *out);
/* Fills t (C order, its shape and dtype set, data allocated) from column-major data at src:
 * element (i0, .., ik) at i0 + d0 (i1 + d1 (i2 + ...)), as numpy's Fortran order. */
void npy_from_fortran(Tensor *t, const void *src);
int npy_read_file(const char *path, Tensor *out);
/* Serialises t into a new malloc'ed buffer (*buf, *len). BF16 is an error (numpy has none). */
int npy_serialize(const Tensor *t, void **buf, size_t *len);
int npy_write_file(const char *path, const Tensor *t);   /* atomic */

/* ---- PNG (libpng): 8/16-bit gray, gray+alpha, RGB, RGBA, palette ---- */

/* Decodes to U8 [C,H,W] (C = 1 gray, 3 RGB; alpha dropped, palette expanded, 16-bit scaled down
 * with rounding) unless want16, then U16. */
int png_decode(const void *buf, size_t len, const char *name, int want16, Tensor *out);
/* Encodes U8 or U16 [C,H,W] (C 1 or 3) to a malloc'ed PNG. */
int png_encode(const Tensor *t, void **buf, size_t *len);
int png_write_file(const char *path, const Tensor *t);   /* atomic */

/* ---- JPEG (libjpeg-turbo): gray, RGB/YCbCr, CMYK/YCCK converted to RGB ---- */

/* Decodes to U8 [C,H,W], C = 1 for grayscale input, else 3. */
int jpeg_decode(const void *buf, size_t len, const char *name, Tensor *out);

/* Any supported image by magic bytes (PNG, JPEG, PPM/PGM binary): U8 [C,H,W]. */
int image_decode(const void *buf, size_t len, const char *name, Tensor *out);
/* Reads a whole file (size-checked) into a malloc'ed buffer. */
int dd_read_file(const char *path, void **buf, size_t *len);
/* Writes len bytes to path atomically (temporary in the same directory, fsync, rename). */
int dd_write_file(const char *path, const void *buf, size_t len);

/* ---- paths and directories (formats/fileio.c) ---- */

/* 1 if path is, after symlinks, a regular file (a directory); 0 otherwise, errors included. */
int dd_is_file(const char *path);
int dd_is_dir(const char *path);
/* "dir/name" in a new malloc'ed string. */
char *dd_path_join(const char *dir, const char *name);
/* 1 if dir/name is a regular file. */
int dd_has_file(const char *dir, const char *name);
/* dir/name.gz if it is a regular file, else dir/name if it is one, else NULL; malloc'ed. */
char *dd_find_gz(const char *dir, const char *name);

/* Atomic directory output: a new directory DIR is built as DIR.tmp.PID and renamed into place
 * only when complete, so a half-written one is never presented as finished. */
typedef struct {
    char *dir;             /* DIR, trailing slashes removed */
    char *tmp;             /* DIR.tmp.PID, to write into; NULL when not open */
} DdAtomicDir;
/* Checks that DIR does not exist or is an empty directory (the final rename would fail), before
 * any work, then creates DIR.tmp.PID (removing a tree of that name first). -1 with dd_err, and
 * nothing to free, on failure. */
int dd_atomic_dir_open(DdAtomicDir *a, const char *dir);
/* Renames the temporary into place; on failure removes it and returns -1 with dd_err. Either
 * way `a` is closed (its strings freed). */
int dd_atomic_dir_commit(DdAtomicDir *a);
/* Removes the temporary tree and closes `a`; nothing when it is not open. */
void dd_atomic_dir_abort(DdAtomicDir *a);

/* ---- IDX (MNIST / Fashion-MNIST) ---- */

/* Reads an IDX file, gzip-compressed or not (detected), into a tensor of its dtype (U8 images
 * [N,28,28], U8 labels [N]). Big-endian multi-byte types are converted. */
int idx_read(const char *path, Tensor *out);
/* Same, from an IDX image in memory (gzip-compressed or not). */
int idx_parse(const void *buf, size_t len, const char *name, Tensor *out);

/* ---- CIFAR binary ---- */

/* Reads one CIFAR-10 (coarse=0, 1 label byte) or CIFAR-100 (2 label bytes; fine label kept) .bin
 * file: images U8 [N,3,32,32], labels I64 [N]. */
int cifar_read(const char *path, int cifar100, Tensor *images, Tensor *labels);
/* Reads one entry per line (class names: batches.meta.txt, fine_label_names.txt, classes.txt;
 * keys.txt), trailing blanks and \r trimmed. Blank lines at the end are ignored; one before an
 * entry is an error naming it (the entries after it would be off by one). */
int dd_read_lines(const char *path, char ***lines, int *n);
void dd_lines_free(char **lines, int n);
/* The python version (cifar-10-batches-py/data_batch_N, test_batch; cifar-100-python/train, test),
 * read with formats/pickle.c: a dict with 'data' (numpy uint8 [N,3072]) and 'labels' (CIFAR-10) or
 * 'fine_labels' (CIFAR-100); the same tensors as cifar_read. */
int cifar_read_py(const char *path, int cifar100, Tensor *images, Tensor *labels);
/* Class names of batches.meta ('label_names') or CIFAR-100's meta ('fine_label_names'). */
int cifar_names_py(const char *path, int cifar100, char ***names, int *n);

/* ---- ImageFolder: root/<class>/<file>, classes and files sorted by strcmp ---- */

typedef struct {
    int nclasses;
    char **classes;        /* folder names in label order */
    int64_t nfiles;
    char **paths;          /* full paths, grouped by class in label order, sorted within a class */
    int64_t *labels;
} ImageFolder;

/* Lists image files (extensions .jpg .jpeg .png .ppm .pgm .bmp .tif .tiff .webp, any case).
 * Hidden entries are skipped. A root holding val_annotations.txt and images/ is Tiny-ImageNet's
 * val: labels from the annotations, classes from root/../train's folders (else the annotations'),
 * files in class order, then by name; unlisted images are skipped with a dd_warn. */
int imagefolder_scan(const char *root, ImageFolder *out);
/* 1 when the tree at root has splits (ImageNet's train/ and val/ of class folders), split among them: root/split
 * holds folders and no image of its own (else 0: root is a tree of classes, split one of them or none); with
 * others, also no other folder of root not named as a split (train, val, valid, validation, test: ImageNet's
 * flat val may hold images) holds images, at any depth: one that does makes the tree ambiguous, -1 with dd_err
 * (split a class of subfolders beside other classes, or a folder of samples beside the splits). */
int imagefolder_has_splits(const char *root, const char *split, int others);
void imagefolder_free(ImageFolder *f);
/* Decodes the files [first, first + n) of f into out[0..n) on `threads` threads (the caller's among
 * them): U8 [3,H,W] each, gray expanded to RGB as ImageFolder loaders convert everything to RGB.
 * The result is the same for any thread count. Returns how many leading files decoded (n when all
 * did): out[0..k) are then the caller's (tensor_free), and when k < n, dd_err holds file k's
 * error (the first in file order) and out[k..n) hold nothing. */
int64_t imagefolder_decode(const ImageFolder *f, int64_t first, int64_t n, int threads, Tensor *out);

/* ---- dataset directories (formats/dataset.c) ---- */

/* The format of the dataset directory at path, as tsimport --format names it: "idx" (MNIST-like
 * *-images-idx3-ubyte, gzip or plain), "cifar10" or "cifar100" (binary or python batches), "npy"
 * (image.npy), "imagefolder" (any other directory with a subdirectory); NULL if none fits or path
 * is not a directory. Sets no dd_err. */
const char *dataset_guess_format(const char *path);

/* ---- safetensors ---- */

typedef struct {
    char *name;
    Tensor t;              /* borrowed view into the file's buffer (owns = 0); where the file puts
                              it at an offset misaligned for its dtype, an aligned copy (owns = 1)
                              that st_free frees */
} StEntry;

typedef struct {
    int n;
    StEntry *e;            /* in file order */
    json_t *metadata;      /* "__metadata__" object (string values), or NULL */
    void *buf;             /* the whole file; entries point into it (its data section moved up
                              to an 8-byte boundary when the header length is not a multiple of 8) */
    size_t len;
} Safetensors;

/* Strict: header size bounds, JSON object, dtypes, shapes, offsets contiguous from 0 without
 * holes or overlap, end - begin == numel * size, no trailing bytes, no duplicate names. */
int st_parse(void *buf, size_t len, const char *name, Safetensors *out); /* takes ownership of buf */
int st_read_file(const char *path, Safetensors *out);
const StEntry *st_find(const Safetensors *st, const char *name);
void st_free(Safetensors *st);

/* Writer: entries are written in safetensors order (dtype size descending, then name), header
 * padded with spaces to a multiple of 8. metadata: string -> string object or NULL (borrowed). */
int st_write_file(const char *path, int n, const char *const *names, const Tensor *const *tensors,
                  json_t *metadata);  /* atomic */
int st_serialize(int n, const char *const *names, const Tensor *const *tensors, json_t *metadata,
                 void **buf, size_t *len);

#endif

/* imagefolder.c - torchvision ImageFolder listing: classes are the subdirectories of root sorted
 * by strcmp; each class directory is walked recursively (Tiny-ImageNet keeps its files in
 * <wnid>/images/) in the order of Python's sorted(os.walk(...)): by directory path, then by file
 * name. Hidden entries are skipped; a class without images is an error, as in torchvision.
 * Tiny-ImageNet's val (images/ beside val_annotations.txt) takes its labels from the annotations.
 * imagefolder_decode decodes a run of the listed files on threads, the same bytes for any count. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define IF_MAX_DEPTH 16 /* symlink loops end here */

typedef struct {
    char *dir, *file;
} FileEnt;

typedef struct {
    FileEnt *v;
    size_t n, cap;
} FileList;

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int fent_cmp(const void *a, const void *b)
{
    const FileEnt *x = a, *y = b;
    int c = strcmp(x->dir, y->dir);
    return c ? c : strcmp(x->file, y->file);
}

static int is_image_name(const char *n)
{
    static const char *const ext[] = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"};
    const char *dot = strrchr(n, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot, ext[i])) return 1;
    return 0;
}

/* Appends the non-hidden names of dir to *names (malloc'ed); -1 with dd_err if unreadable. */
static int list_dir(const char *dir, char ***names, size_t *n)
{
    DIR *d = opendir(dir);
    if (!d) return dd_err("%s: %s", dir, strerror(errno));
    size_t cap = 0;
    *names = NULL;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            *names = dd_realloc(*names, cap * sizeof **names);
        }
        (*names)[(*n)++] = dd_strdup(e->d_name);
    }
    closedir(d);
    return 0;
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Adds the images under dir (recursively) to fl. */
static int walk(const char *dir, int depth, FileList *fl)
{
    char **names;
    size_t n;
    if (depth > IF_MAX_DEPTH) return dd_err("%s: directories nested too deep (symlink loop?)", dir);
    if (list_dir(dir, &names, &n)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char *p = dd_path_join(dir, names[i]);
        struct stat st;
        if (stat(p, &st)) {
            /* a link to an image that is not there: an error, as torchvision's (it lists the file
             * and fails to open it), not an image silently lost; one named otherwise is skipped */
            int e = errno;
            if (is_image_name(names[i]))
                rc = dd_err("%s: %s", p, !lstat(p, &st) && S_ISLNK(st.st_mode) ? "a broken symbolic link" : strerror(e));
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            rc = walk(p, depth + 1, fl);
        } else if (S_ISREG(st.st_mode) && is_image_name(names[i])) {
            if (fl->n == fl->cap) {
                fl->cap = fl->cap ? fl->cap * 2 : 256;
                fl->v = dd_realloc(fl->v, fl->cap * sizeof *fl->v);
            }
            fl->v[fl->n++] = (FileEnt){dd_strdup(dir), dd_strdup(names[i])};
        }
        free(p);
    }
    names_free(names, n);
    return rc;
}

/* The subdirectories of dir sorted by strcmp (class folders), or n = 0. */
static int class_dirs(const char *dir, char ***names, size_t *n)
{
    if (list_dir(dir, names, n)) return -1;
    if (*n) qsort(*names, *n, sizeof **names, str_cmp);
    size_t nc = 0;
    for (size_t i = 0; i < *n; i++) {
        char *p = dd_path_join(dir, (*names)[i]);
        if (dd_is_dir(p)) (*names)[nc++] = (*names)[i];
        else free((*names)[i]);
        free(p);
    }
    *n = nc;
    return 0;
}

/* 1 when dir holds an image file of its own (not in a subdirectory) or a subdirectory (with sub). */
static int holds(const char *dir, int sub)
{
    char **names;
    size_t n;
    if (list_dir(dir, &names, &n)) return 0;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        char *p = dd_path_join(dir, names[i]);
        found = sub ? dd_is_dir(p) : is_image_name(names[i]) && !dd_is_dir(p);
        free(p);
    }
    names_free(names, n);
    return found;
}

/* 1 when an image file is anywhere under dir (the search stops at the first; not below IF_MAX_DEPTH). */
static int holds_below(const char *dir, int depth)
{
    char **names;
    size_t n;
    if (depth > IF_MAX_DEPTH || list_dir(dir, &names, &n)) return 0;
    int found = 0;
    for (size_t i = 0; i < n && !found; i++) {
        char *p = dd_path_join(dir, names[i]);
        found = dd_is_dir(p) ? holds_below(p, depth + 1) : is_image_name(names[i]);
        free(p);
    }
    names_free(names, n);
    return found;
}

int imagefolder_has_splits(const char *root, const char *split, int others)
{
    static const char *const split_names[] = {"train", "val", "valid", "validation", "test"};
    char *sd = dd_path_join(root, split);
    int splits = dd_is_dir(sd) && holds(sd, 1) && !holds(sd, 0);
    free(sd);
    char **names;
    size_t n;
    if (!splits || !others || class_dirs(root, &names, &n)) return splits;
    for (size_t i = 0; i < n && splits > 0; i++) {
        int named = !strcmp(names[i], split);
        for (size_t k = 0; k < sizeof split_names / sizeof *split_names; k++)
            named |= !strcmp(names[i], split_names[k]);
        char *p = dd_path_join(root, names[i]);
        if (!named && holds_below(p, 0)) /* a class (and split a class of subfolders), or a folder beside splits */
            splits = dd_err("%s: %s holds class folders as a split does, but %s holds images: a tree of splits or of "
                            "classes? --split %s reads %s (to read the folders as classes, rename %s)", root, split,
                            names[i], split, split, split);
        free(p);
    }
    names_free(names, n);
    return splits;
}

typedef struct {
    char *file, *cls;
    int64_t line, label;
} AnnEnt;

static int ann_cmp(const void *a, const void *b)
{
    const AnnEnt *x = a, *y = b;
    return x->label != y->label ? (x->label < y->label ? -1 : 1) : strcmp(x->file, y->file);
}

static int ann_file_cmp(const void *a, const void *b)
{
    return strcmp(((const AnnEnt *)a)->file, ((const AnnEnt *)b)->file);
}

/* Tiny-ImageNet's val: root/images/<file> labelled by root/val_annotations.txt ("file<TAB>wnid<TAB>
 * box..." per line). Classes: the class folders of the sibling root/../train when it has some
 * (the train import's list), else the annotations' wnids sorted; files in class order, then by
 * name, as an ImageFolder of the tree regrouped by class would list them. */
static int annotated_scan(const char *root, const char *ann_path, ImageFolder *out)
{
    void *buf;
    size_t len;
    if (dd_read_file(ann_path, &buf, &len) < 0) return -1;
    char *text = dd_realloc(buf, len + 1), *end = text + len;
    *end = 0;
    AnnEnt *v = NULL;
    size_t n = 0, cap = 0, nc = 0;
    char **classes = NULL, *train = dd_path_join(root, "../train"), *images = dd_path_join(root, "images");
    int rc = -1;
    int64_t line = 0;
    for (char *p = text; p < end;) {
        char *eol = memchr(p, '\n', (size_t)(end - p)), *stop = eol ? eol : end;
        line++;
        if (memchr(p, 0, (size_t)(stop - p))) {
            dd_err("%s: line %lld: a NUL byte", ann_path, (long long)line);
            goto done;
        }
        *stop = 0;
        char *next = eol ? eol + 1 : end;
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r') p[--l] = 0;
        if (l) {
            char *file = p, *cls = p + strcspn(p, "\t ");
            if (*cls) *cls++ = 0;
            cls += strspn(cls, "\t ");
            cls[strcspn(cls, "\t ")] = 0;
            if (!*file || !*cls || strchr(file, '/') || file[0] == '.' || strchr(cls, '/') || cls[0] == '.') {
                dd_err("%s: line %lld: want FILE<TAB>CLASS, got '%.80s'", ann_path, (long long)line, p);
                goto done;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                v = dd_realloc(v, cap * sizeof *v);
            }
            v[n++] = (AnnEnt){file, cls, line, -1};
        }
        p = next;
    }
    if (n == 0) {
        dd_err("%s: lists no images", ann_path);
        goto done;
    }
    qsort(v, n, sizeof *v, ann_file_cmp);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(v[i].file, v[i - 1].file)) {
            dd_err("%s: line %lld: '%s' is listed twice", ann_path,
                   (long long)(v[i].line > v[i - 1].line ? v[i].line : v[i - 1].line), v[i].file);
            goto done;
        }
    if (dd_is_dir(train) && class_dirs(train, &classes, &nc)) goto done;
    if (nc == 0) { /* no train folder beside: the annotations' classes, sorted */
        free(classes);
        classes = dd_malloc(n * sizeof *classes);
        for (size_t i = 0; i < n; i++) classes[i] = v[i].cls;
        qsort(classes, n, sizeof *classes, str_cmp);
        for (size_t i = 0; i < n; i++)
            if (!nc || strcmp(classes[nc - 1], classes[i])) classes[nc++] = classes[i];
        for (size_t i = 0; i < nc; i++) classes[i] = dd_strdup(classes[i]);
    }
    if (nc > INT32_MAX) {
        dd_err("%s: too many classes", ann_path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char **hit = bsearch(&v[i].cls, classes, nc, sizeof *classes, str_cmp);
        if (!hit) {
            dd_err("%s: line %lld: class '%s' is not a class folder of %s", ann_path, (long long)v[i].line, v[i].cls,
                   train);
            goto done;
        }
        v[i].label = hit - classes;
    }
    /* image files the annotations leave out are said, not silently dropped */
    char **names;
    size_t nn, unlisted = 0;
    if (list_dir(images, &names, &nn)) goto done;
    for (size_t i = 0; i < nn; i++) {
        AnnEnt key = {.file = names[i]};
        unlisted += is_image_name(names[i]) && !bsearch(&key, v, n, sizeof *v, ann_file_cmp);
    }
    names_free(names, nn);
    if (unlisted) dd_warn("%s: %zu image file(s) not listed in %s: skipped", images, unlisted, ann_path);
    qsort(v, n, sizeof *v, ann_cmp);
    out->nclasses = (int)nc;
    out->classes = classes;
    classes = NULL;
    out->nfiles = (int64_t)n;
    out->paths = dd_malloc(n * sizeof *out->paths);
    out->labels = dd_malloc(n * sizeof *out->labels);
    for (size_t i = 0; i < n; i++) {
        out->paths[i] = dd_path_join(images, v[i].file);
        out->labels[i] = v[i].label;
    }
    rc = 0;
done:
    if (classes) names_free(classes, nc);
    free(v);
    free(text);
    free(train);
    free(images);
    return rc;
}

int imagefolder_scan(const char *root, ImageFolder *out)
{
    memset(out, 0, sizeof *out);
    char *ann = dd_path_join(root, "val_annotations.txt"), *images = dd_path_join(root, "images");
    int tiny = dd_is_file(ann) && dd_is_dir(images);
    free(images);
    if (tiny) {
        int rc = annotated_scan(root, ann, out);
        free(ann);
        return rc;
    }
    free(ann);
    char **names;
    size_t nc;
    if (class_dirs(root, &names, &nc)) return -1;
    if (nc == 0) {
        free(names);
        return dd_err("%s: no class subdirectories found", root);
    }
    if (nc > INT32_MAX) {
        names_free(names, nc);
        return dd_err("%s: too many classes", root);
    }
    out->nclasses = (int)nc;
    out->classes = names;
    size_t total = 0;
    for (size_t c = 0; c < nc; c++) {
        FileList fl = {0};
        char *cdir = dd_path_join(root, names[c]);
        int rc = walk(cdir, 0, &fl);
        free(cdir);
        if (!rc && fl.n == 0) rc = dd_err("%s: class '%s' has no image files", root, names[c]);
        if (rc) {
            for (size_t i = 0; i < fl.n; i++) free(fl.v[i].dir), free(fl.v[i].file);
            free(fl.v);
            imagefolder_free(out);
            return -1;
        }
        qsort(fl.v, fl.n, sizeof *fl.v, fent_cmp);
        out->paths = dd_realloc(out->paths, (total + fl.n) * sizeof *out->paths);
        out->labels = dd_realloc(out->labels, (total + fl.n) * sizeof *out->labels);
        for (size_t i = 0; i < fl.n; i++) {
            out->paths[total] = dd_path_join(fl.v[i].dir, fl.v[i].file);
            out->labels[total] = (int64_t)c;
            total++;
            out->nfiles = (int64_t)total;
            free(fl.v[i].dir);
            free(fl.v[i].file);
        }
        free(fl.v);
    }
    return 0;
}

void imagefolder_free(ImageFolder *f)
{
    for (int i = 0; i < f->nclasses; i++) free(f->classes[i]);
    free(f->classes);
    for (int64_t i = 0; i < f->nfiles; i++) free(f->paths[i]);
    free(f->paths);
    free(f->labels);
    memset(f, 0, sizeof *f);
}

/* A run of files decoded on threads: each takes the next file (atomic counter) until none is left;
 * the results land at the file's index, so they do not depend on which thread decoded what. */
typedef struct {
    char **paths;        /* the run's files */
    int64_t n, next;     /* files in the run; the next one to take (atomic) */
    Tensor *im;          /* [n] decoded, RGB */
    char (*err)[1024];   /* [n] "" or the message (dd_err is per thread) */
} Run;

static void decode_one(const char *path, Tensor *im, char *err)
{
    void *buf;
    size_t len;
    err[0] = 0;
    if (dd_read_file(path, &buf, &len) < 0) {
        snprintf(err, 1024, "%s", dd_errmsg());
        return;
    }
    int rc = image_decode(buf, len, path, im);
    free(buf);
    if (rc < 0) {
        snprintf(err, 1024, "%s", dd_errmsg());
        return;
    }
    if (im->shape[0] == 1) { /* ImageFolder loaders convert everything to RGB */
        Tensor rgb = tensor_newv(DD_U8, 3, (int64_t)3, im->shape[1], im->shape[2]);
        size_t plane = (size_t)(im->shape[1] * im->shape[2]);
        for (int c = 0; c < 3; c++) memcpy((uint8_t *)rgb.data + c * plane, im->data, plane);
        tensor_free(im);
        *im = rgb;
    }
}

static void *decode_worker(void *arg)
{
    Run *w = arg;
    for (int64_t k; (k = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->n;)
        decode_one(w->paths[k], &w->im[k], w->err[k]);
    return NULL;
}

int64_t imagefolder_decode(const ImageFolder *f, int64_t first, int64_t n, int threads, Tensor *out)
{
    Run w = {.paths = f->paths + first, .n = n, .im = out};
    w.err = dd_malloc((size_t)(n > 0 ? n : 1) * sizeof *w.err);
    pthread_t *tid = dd_malloc((size_t)(threads > 0 ? threads : 1) * sizeof *tid);
    int started = 0;
    for (; started < threads - 1 && started + 1 < n; started++)
        if (pthread_create(&tid[started], NULL, decode_worker, &w)) break;
    decode_worker(&w);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    free(tid);
    int64_t ok = 0;
    while (ok < n && !w.err[ok][0]) ok++;
    if (ok < n) dd_err("%s", w.err[ok]);
    for (int64_t k = ok + 1; k < n; k++)
        if (!w.err[k][0]) tensor_free(&out[k]);
    free(w.err);
    return ok;
}

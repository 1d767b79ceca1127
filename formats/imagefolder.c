/* imagefolder.c - torchvision ImageFolder listing: classes are the subdirectories of root sorted
 * by strcmp; each class directory is walked recursively (Tiny-ImageNet keeps its files in
 * <wnid>/images/) in the order of Python's sorted(os.walk(...)): by directory path, then by file
 * name. Hidden entries are skipped; a class without images is an error, as in torchvision. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <dirent.h>
#include <errno.h>
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

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = dd_malloc(la + lb + 2);
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
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
        char *p = path_join(dir, names[i]);
        struct stat st;
        if (stat(p, &st)) {
            free(p);
            continue; /* dangling symlink: os.walk skips it too */
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

int imagefolder_scan(const char *root, ImageFolder *out)
{
    memset(out, 0, sizeof *out);
    char **names;
    size_t n;
    if (list_dir(root, &names, &n)) return -1;
    if (n) qsort(names, n, sizeof *names, str_cmp);
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        char *p = path_join(root, names[i]);
        struct stat st;
        if (!stat(p, &st) && S_ISDIR(st.st_mode)) names[nc++] = names[i];
        else free(names[i]);
        free(p);
    }
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
        char *cdir = path_join(root, names[c]);
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
            out->paths[total] = path_join(fl.v[i].dir, fl.v[i].file);
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

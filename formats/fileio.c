/* fileio.c - whole-file read and atomic write, line lists (class-name files), path tests and
 * joins, and atomic directory output: the small file helpers the codecs and filters share. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dd_read_file(const char *path, void **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return dd_err("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st)) {
        fclose(f);
        return dd_err("%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        fclose(f);
        return dd_err("%s: is a directory", path);
    }
    /* The size from fstat is a hint only (pipes, files growing or shrinking under us): read to EOF. */
    size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size < SIZE_MAX ? (size_t)st.st_size + 1 : 65536;
    uint8_t *b = dd_malloc(cap);
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > SIZE_MAX / 2) {
                free(b);
                fclose(f);
                return dd_err("%s: file too large", path);
            }
            cap *= 2;
            b = dd_realloc(b, cap);
        }
        size_t k = fread(b + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        free(b);
        fclose(f);
        return dd_err("%s: read error: %s", path, strerror(e ? e : EIO));
    }
    fclose(f);
    *buf = b;
    *len = n;
    return 0;
}

int dd_write_file(const char *path, const void *buf, size_t len)
{
    DdAtomicFile a;
    if (dd_atomic_open(&a, path)) return -1;
    if (len && fwrite(buf, 1, len, a.f) != len) {
        int e = errno;
        dd_atomic_abort(&a);
        return dd_err("%s: write error: %s", path, strerror(e ? e : EIO));
    }
    return dd_atomic_commit(&a);
}

int dd_read_lines(const char *path, char ***lines, int *n)
{
    void *buf;
    size_t len;
    *lines = NULL;
    *n = 0;
    if (dd_read_file(path, &buf, &len)) return -1;
    char *s = buf, *end = s + len;
    char **v = NULL;
    int cnt = 0, cap = 0, line = 0, blank = 0;
    while (s < end) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        char *e = nl ? nl : end;
        char *t = e;
        line++;
        while (t > s && (t[-1] == '\r' || t[-1] == ' ' || t[-1] == '\t')) t--;
        if (t == s && !blank) blank = line;
        if (t > s) {
            if (blank) { /* an entry after a blank line: the entries below it would shift by one */
                dd_lines_free(v, cnt);
                free(buf);
                return dd_err("%s: line %d is empty (one entry per line; blank lines only at the end)", path, blank);
            }
            if (memchr(s, 0, (size_t)(t - s))) {
                dd_lines_free(v, cnt);
                free(buf);
                return dd_err("%s: line %d contains a NUL byte", path, line);
            }
            if (cnt == cap) {
                if (cap > (1 << 28)) {
                    dd_lines_free(v, cnt);
                    free(buf);
                    return dd_err("%s: too many lines", path);
                }
                cap = cap ? cap * 2 : 16;
                v = dd_realloc(v, (size_t)cap * sizeof *v);
            }
            v[cnt] = dd_malloc((size_t)(t - s) + 1);
            memcpy(v[cnt], s, (size_t)(t - s));
            v[cnt][t - s] = 0;
            cnt++;
        }
        s = e + 1;
    }
    free(buf);
    *lines = v;
    *n = cnt;
    return 0;
}

void dd_lines_free(char **lines, int n)
{
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

int dd_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int dd_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *dd_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = dd_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int dd_has_file(const char *dir, const char *name)
{
    char *p = dd_path_join(dir, name);
    int r = dd_is_file(p);
    free(p);
    return r;
}

char *dd_find_gz(const char *dir, const char *name)
{
    char gz[256];
    snprintf(gz, sizeof gz, "%s.gz", name);
    char *p = dd_path_join(dir, gz);
    if (dd_is_file(p)) return p;
    free(p);
    p = dd_path_join(dir, name);
    if (dd_is_file(p)) return p;
    free(p);
    return NULL;
}

/* ---- atomic directory output ---- */

int dd_atomic_dir_open(DdAtomicDir *a, const char *dir)
{
    a->dir = dd_strdup(dir);
    a->tmp = NULL;
    for (size_t n = strlen(a->dir); n > 1 && a->dir[n - 1] == '/'; n--) a->dir[n - 1] = 0;
    DIR *d = opendir(a->dir);
    if (d) {
        struct dirent *e;
        int empty = 1;
        while (empty && (e = readdir(d)))
            empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        closedir(d);
        if (!empty) {
            dd_err("%s: exists and is not empty (%s writes a new directory)", a->dir, dd_prog());
            goto fail;
        }
    } else if (errno != ENOENT) {
        dd_err("%s: %s", a->dir, errno == ENOTDIR ? "exists and is not a directory" : strerror(errno));
        goto fail;
    }
    size_t n = strlen(a->dir) + 32;
    a->tmp = dd_malloc(n);
    snprintf(a->tmp, n, "%s.tmp.%ld", a->dir, (long)getpid());
    dd_remove_tree(a->tmp); /* a dead run's, whose pid we have */
    dd_temp_track(a->tmp, 1); /* removed by a fatal signal or an exit before the commit: listed first */
    if (mkdir(a->tmp, 0777) == 0) return 0;
    int e = errno;
    dd_temp_track(a->tmp, 0);
    dd_err("%s: cannot create (its temporary %s): %s", a->dir, a->tmp, strerror(e)); /* the user's name first */
fail:
    free(a->dir);
    free(a->tmp);
    a->dir = a->tmp = NULL;
    return -1;
}

int dd_atomic_dir_commit(DdAtomicDir *a)
{
    int rc = 0;
    if (rename(a->tmp, a->dir) < 0) {
        int e = errno;
        dd_remove_tree(a->tmp);
        rc = dd_err("%s: cannot rename %s into place: %s", a->dir, a->tmp,
                    e == ENOTEMPTY || e == EEXIST ? "it exists and is not empty" : strerror(e));
    }
    dd_temp_track(a->tmp, 0);
    free(a->dir);
    free(a->tmp);
    a->dir = a->tmp = NULL;
    return rc;
}

void dd_atomic_dir_abort(DdAtomicDir *a)
{
    if (a->tmp) {
        dd_remove_tree(a->tmp);
        dd_temp_track(a->tmp, 0);
    }
    free(a->dir);
    free(a->tmp);
    a->dir = a->tmp = NULL;
}

/* progress.c - monotonic time, progress lines on a terminal, checked closing of outputs, and
 * atomic file replacement (temporary + fsync + rename; the temporary removed on error, at exit
 * (a dd_die after the open) and on a fatal signal; temporary directories likewise). */
#include "libcommon/base/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double dd_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dd_progress_start(DdProgress *p, const char *what, int64_t total, int quiet)
{
    p->what = what;
    p->total = total;
    p->done = 0;
    p->t0 = p->last = dd_now();
    p->tty = !quiet && isatty(STDERR_FILENO);
    p->shown = 0;
}

/* A progress line is on the terminal now (the cursor is not at a line start); and one was erased,
 * so the next update draws at once. Flags, not a pointer: a message may come from any thread, and
 * after the DdProgress is gone. */
static atomic_int line_shown, redraw;

void dd_progress_break(void)
{
    if (!atomic_exchange(&line_shown, 0)) return;
    fputs("\r\033[K", stderr);
    atomic_store(&redraw, 1);
}

void dd_progress_update(DdProgress *p, int64_t done)
{
    p->done = done;
    if (!p->tty) return;
    double now = dd_now();
    if (!atomic_exchange(&redraw, 0) && now - p->last < 0.25 && done != p->total) return;
    p->last = now;
    p->shown = 1;
    atomic_store(&line_shown, 1);
    double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
    if (p->total > 0 && rate > 0) {
        double eta = (double)(p->total - done) / rate;
        fprintf(stderr, "\r%s: %s %lld/%lld %.1f/s ETA %.0fs   ", dd_prog(), p->what, (long long)done,
                (long long)p->total, rate, eta);
    } else {
        fprintf(stderr, "\r%s: %s %lld %.1f/s   ", dd_prog(), p->what, (long long)done, rate);
    }
}

void dd_progress_end(DdProgress *p)
{
    if (!p->tty || !p->shown) return;
    atomic_store(&line_shown, 0);
    fprintf(stderr, "\r%s: %s %lld done in %.1fs\033[K\n", dd_prog(), p->what, (long long)p->done, dd_now() - p->t0);
}

int dd_fflush_checked(FILE *f, const char *what)
{
    if (fflush(f) != 0 || ferror(f)) return dd_err("%s: write error: %s", what, strerror(errno ? errno : EIO));
    return 0;
}

int dd_fclose_checked(FILE *f, const char *what)
{
    int bad = ferror(f);
    int e = fclose(f);
    if (bad || e) return dd_err("%s: write error: %s", what, strerror(errno ? errno : EIO));
    return 0;
}

/* Removes the tree `name` (relative to the directory fd `at`) with system calls only, so that the
 * signal handler may use it: no malloc, no stdio, no nftw. Links are removed, not followed.
 * Entries are unlinked while the directory is read, which may make the reading skip some, so the
 * directory is read again while a pass removed something and left something (each pass removes
 * one entry at least, so it ends; what cannot be removed is left). Deeper than 16 levels is
 * left. Returns 1 when `name` is gone. */
static int remove_tree_at(int at, const char *name, int depth)
{
    if (unlinkat(at, name, 0) == 0 || errno == ENOENT) return 1;
    int fd = depth < 16 ? openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (fd < 0) return 0;
    char buf[2048] __attribute__((aligned(8)));
    for (int removed = 1, left = 1; removed && left;) {
        removed = left = 0;
        ssize_t n;
        while ((n = getdents64(fd, buf, sizeof buf)) > 0) {
            for (ssize_t off = 0; off < n;) {
                const struct dirent64 *e = (const struct dirent64 *)(buf + off);
                off += e->d_reclen;
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
                if (remove_tree_at(fd, e->d_name, depth + 1)) removed = 1;
                else left = 1;
            }
        }
        if (n < 0 || lseek(fd, 0, SEEK_SET) < 0) break;
    }
    close(fd);
    return unlinkat(at, name, AT_REMOVEDIR) == 0;
}

void dd_remove_tree(const char *path) { remove_tree_at(AT_FDCWD, path, 0); }

/* Temporaries alive now, for the signal handler and the exit handler: files, and directories
 * (removed with what they hold). A list that only grows: a node is published whole before it is
 * linked, unlisting clears its slot (reused by the next listing), so the handler walks it safely
 * at any moment. A program has a handful; tscat --shards one per shard until the set is done. */
typedef struct LiveTmp {
    const char *volatile tmp;
    struct LiveTmp *volatile next;
} LiveTmp;
static LiveTmp *volatile live_tmp;

static void remove_live_tmp(void)
{
    for (LiveTmp *n = live_tmp; n; n = n->next)
        if (n->tmp) dd_remove_tree(n->tmp);
}


static void on_signal(int sig)
{
    int e = errno;
    remove_live_tmp();
    errno = e;
    signal(sig, SIG_DFL);
    raise(sig);
}

void dd_temp_track(const char *tmp, int add)
{
    static int installed;
    if (!installed) {
        installed = 1;
        /* a signal ignored when the program started stays ignored: nohup's SIGHUP, and SIGINT of a
         * script's background jobs, must not become fatal because an output file is open */
        static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
        for (int i = 0; i < 3; i++) {
            struct sigaction old;
            if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN) signal(sigs[i], on_signal);
        }
        /* and at exit: a dd_die after the output was opened leaves no temporary (committed ones
         * are no longer listed) */
        atexit(remove_live_tmp);
    }
    for (LiveTmp *n = live_tmp; n; n = n->next) {
        if (add && !n->tmp) { n->tmp = tmp; return; }
        if (!add && n->tmp == tmp) { n->tmp = NULL; return; }
    }
    if (!add) return;
    LiveTmp *n = dd_malloc(sizeof *n);
    n->tmp = tmp;
    n->next = live_tmp;
    live_tmp = n;
}

/* The file a dangling link names (made as the shell's > would make it): its text, after the
 * link's directory when relative. */
static int dangling_target(const char *path, off_t size, char **target)
{
    size_t n = size > 0 ? (size_t)size + 1 : 4096;
    char *t = dd_malloc(n);
    ssize_t k = readlink(path, t, n - 1);
    if (k < 0) {
        int e = errno;
        free(t);
        return dd_err("%s: %s", path, strerror(e));
    }
    t[k] = 0;
    const char *slash = strrchr(path, '/');
    if (t[0] == '/' || !slash) {
        *target = t;
        return 0;
    }
    size_t d = (size_t)(slash - path) + 1;
    *target = dd_malloc(d + (size_t)k + 1);
    memcpy(*target, path, d);
    memcpy(*target + d, t, (size_t)k + 1);
    free(t);
    return 0;
}

/* Where an output path's bytes go: 0 and *target (malloc'd) the file to replace (path, or the
 * file a symbolic link names: the link stays a link); 1: a device or FIFO (or a link to one),
 * written in place; -1 (dd_err): a directory, or a path that cannot be examined. */
static int out_kind(const char *path, char **target)
{
    struct stat st;
    char *real = NULL;
    *target = NULL;
    if (lstat(path, &st) < 0) {
        if (errno != ENOENT) return dd_err("%s: %s", path, strerror(errno));
        *target = dd_strdup(path);
        return 0;
    }
    if (S_ISLNK(st.st_mode)) {
        real = realpath(path, NULL);
        if (!real && errno != ENOENT) return dd_err("%s: %s", path, strerror(errno));
        if (!real) return dangling_target(path, st.st_size, target);
        if (stat(real, &st) < 0) {
            int e = errno;
            free(real);
            return dd_err("%s: %s", path, strerror(e));
        }
    }
    if (!S_ISREG(st.st_mode)) {
        free(real);
        return S_ISDIR(st.st_mode) ? dd_err("%s: is a directory", path) : 1;
    }
    *target = real ? real : dd_strdup(path);
    return 0;
}

int dd_atomic_check(const char *path)
{
    char *target;
    int kind = out_kind(path, &target);
    if (kind < 0) return -1;
    if (kind == 1) return access(path, W_OK) < 0 ? dd_err("%s: %s", path, strerror(errno)) : 0;
    free(target);
    DdAtomicFile a;
    if (dd_atomic_open(&a, path) < 0) return -1;
    dd_atomic_abort(&a);
    return 0;
}

int dd_atomic_open(DdAtomicFile *a, const char *path)
{
    char *target;
    *a = (DdAtomicFile){0};
    int kind = out_kind(path, &target);
    if (kind < 0) return -1;
    a->path = dd_strdup(path);
    if (kind == 1) { /* /dev/null, a FIFO: no temporary and no rename, which would replace it */
        a->direct = 1;
        a->f = fopen(path, "wb");
        if (!a->f) {
            dd_err("%s: %s", path, strerror(errno));
            free(a->path);
            a->path = NULL;
            return -1;
        }
        return 0;
    }
    a->target = target;
    size_t n = strlen(target);
    a->tmp = dd_malloc(n + 32);
    snprintf(a->tmp, n + 32, "%s.tmp.%ld.XXXXXX", target, (long)getpid());
    /* listed (and the handlers installed) before the file exists: a signal right after mkstemp
     * must find it (mkstemp writes the name into a->tmp before it creates the file) */
    dd_temp_track(a->tmp, 1);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int e = errno;
        dd_temp_track(a->tmp, 0);
        dd_err("%s: cannot create temporary file: %s", path, strerror(e));
        free(a->path);
        free(a->tmp);
        free(a->target);
        *a = (DdAtomicFile){0};
        return -1;
    }
    { mode_t m = umask(0); umask(m); fchmod(fd, 0666 & ~m); } /* mkstemp makes 0600; give the usual mode */
    a->f = fdopen(fd, "wb");
    return 0;
}

int dd_atomic_finish(DdAtomicFile *a)
{
    if (!a->f) return 0;
    int rc = 0;
    errno = 0;
    if (fflush(a->f) || ferror(a->f) || (!a->direct && fsync(fileno(a->f))))
        rc = dd_err("%s: write error: %s", a->path, strerror(errno ? errno : EIO));
    if (fclose(a->f) && !rc) rc = dd_err("%s: write error: %s", a->path, strerror(errno));
    a->f = NULL;
    return rc;
}

int dd_atomic_commit(DdAtomicFile *a)
{
    int rc = dd_atomic_finish(a);
    if (a->tmp) {
        if (!rc && rename(a->tmp, a->target)) rc = dd_err("%s: cannot rename into place: %s", a->path, strerror(errno));
        if (rc) unlink(a->tmp);
        dd_temp_track(a->tmp, 0);
    }
    free(a->tmp);
    free(a->target);
    free(a->path);
    *a = (DdAtomicFile){0};
    return rc;
}

void dd_atomic_abort(DdAtomicFile *a)
{
    if (!a->tmp && !a->direct) return;
    if (a->f) fclose(a->f);
    if (a->tmp) {
        unlink(a->tmp);
        dd_temp_track(a->tmp, 0);
    }
    free(a->tmp);
    free(a->target);
    free(a->path);
    *a = (DdAtomicFile){0};
}

/* ---- a log written a whole line at a time ----
 * The FILE is unbuffered; its writes collect here and go out up to their last newline in one write(2)
 * loop. A write that fails (a full disk) truncates the file back to its last whole line, so the log ends
 * in whole lines whatever happened, and the FILE's error flag is set (dd_fclose_checked says it). */
typedef struct {
    int fd;
    char *buf;
    size_t len, cap;
    off_t good;     /* the file's length in whole lines */
    int err;        /* errno of the write that failed; later writes fail with it */
} LineLog;

static int line_log_put(LineLog *l, size_t n)
{
    for (size_t o = 0; o < n;) {
        ssize_t k = write(l->fd, l->buf + o, n - o);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            l->err = k < 0 ? errno : EIO;
            if (ftruncate(l->fd, l->good) < 0) { /* a device or a pipe: nothing to cut back */ }
            errno = l->err;
            return -1;
        }
        o += (size_t)k;
    }
    l->good += (off_t)n;
    memmove(l->buf, l->buf + n, l->len - n);
    l->len -= n;
    return 0;
}

static ssize_t line_log_write(void *cookie, const char *p, size_t n)
{
    LineLog *l = cookie;
    if (l->err) return errno = l->err, 0; /* fopencookie(3): 0 on error, never negative (errno says why) */
    if (l->len + n > l->cap) {
        l->cap = (l->len + n) * 2;
        l->buf = dd_realloc(l->buf, l->cap);
    }
    memcpy(l->buf + l->len, p, n);
    l->len += n;
    size_t whole = l->len;
    while (whole && l->buf[whole - 1] != '\n') whole--;
    if (whole && line_log_put(l, whole) < 0) return 0;
    return (ssize_t)n;
}

static int line_log_close(void *cookie)
{
    LineLog *l = cookie;
    int rc = l->err || (l->len && line_log_put(l, l->len) < 0) ? -1 : 0; /* a last line without its newline */
    int e = l->err ? l->err : errno;
    if (close(l->fd) < 0 && !rc) rc = -1, e = errno;
    free(l->buf);
    free(l);
    errno = e;
    return rc;
}

FILE *dd_line_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return NULL;
    LineLog *l = dd_calloc(1, sizeof *l);
    l->fd = fd;
    FILE *f = fopencookie(l, "w", (cookie_io_functions_t){.write = line_log_write, .close = line_log_close});
    if (!f) {
        int e = errno;
        close(fd);
        free(l);
        errno = e;
        return NULL;
    }
    setvbuf(f, NULL, _IONBF, 0);
    return f;
}

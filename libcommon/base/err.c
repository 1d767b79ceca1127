/* err.c - the thread-local error message of library code, and the filters' fatal exit. */
#include "libcommon/base/base.h"

#include <getopt.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static _Thread_local char err_buf[4096];
static _Thread_local int err_code = DD_EXIT_DATA;
static char prog_name[64] = "ddpipe";

/* A program's exit ends in _exit() once stdio is flushed, before the exit handlers of the libraries loaded
 * ahead of main run: OpenBLAS's joins its threads, and under a memory limit (ulimit -v) one of them may spin
 * for ever retrying a buffer it cannot map, so a program that had done its work, or said it could not, hung
 * at exit. The handlers registered after this one (dd_prog_init's) still run before it: the removal of the
 * temporaries (dd_temp_track's), the CUDA backend's. Under the sanitizers exit runs whole: their reports. */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
static void exit_now(int status, void *arg)
{
    (void)arg;
    fflush(NULL);
    _exit(status);
}
#endif

/* A standard stream closed at start (prog <&- or >&-) gets /dev/null opened the wrong way round in its place:
 * the descriptor is taken, so the next file opened does not become "stdin" or "stdout" (an input then read
 * as stdin, or taken for the file stdout writes to), and using the stream still fails as a closed one does
 * (EBADF: stdin opened for writing only, stdout and stderr for reading only). */
static void hold_closed_std(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int got = open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY);
            if (got >= 0 && got != fd) close(got); /* not the lowest free: leave it */
        }
}

void dd_prog_init(const char *argv0)
{
    hold_closed_std();
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    on_exit(exit_now, NULL);
#endif
    const char *b = argv0 ? strrchr(argv0, '/') : NULL;
    b = b ? b + 1 : (argv0 ? argv0 : "ddpipe");
    snprintf(prog_name, sizeof prog_name, "%s", b);
    opterr = 0; /* getopt's own messages (two lines, argv[0]'s path): dd_opt_fail says it in one */
}

const char *dd_prog(void) { return prog_name; }

/* Writes "prog: MSG\n" to stderr as one line: control characters in MSG (a class name or a path with a newline,
 * say) are written as \n, \t or \xNN, so that every message stays one line however its parts were spelt. */
static void put_line(const char *fmt, va_list ap)
{
    char msg[4096], out[sizeof msg * 4 + sizeof prog_name + 8];
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t o = (size_t)snprintf(out, sizeof out, "%s: ", prog_name);
    for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
        if (*c >= 0x20 && *c != 0x7f) out[o++] = (char)*c;
        else if (*c == '\n') o += (size_t)snprintf(out + o, 3, "\\n");
        else if (*c == '\t') o += (size_t)snprintf(out + o, 3, "\\t");
        else o += (size_t)snprintf(out + o, 5, "\\x%02x", *c);
    }
    if (len >= (int)sizeof msg) o += (size_t)snprintf(out + o, 5, "...");
    out[o++] = '\n';
    fwrite(out, 1, o, stderr);
}

void dd_die(int code, const char *fmt, ...)
{
    va_list ap;
    dd_progress_break();
    va_start(ap, fmt);
    put_line(fmt, ap);
    va_end(ap);
    exit(code);
}

void dd_die_err(int code) { dd_die(code, "%s", err_buf[0] ? err_buf : "unknown error"); }

void dd_warn(const char *fmt, ...)
{
    va_list ap;
    dd_progress_break();
    va_start(ap, fmt);
    put_line(fmt, ap);
    va_end(ap);
}

/* A message cut to err_buf's size ends in "..." so that the cut shows. */
static void mark_cut(int len)
{
    if (len >= (int)sizeof err_buf) memcpy(err_buf + sizeof err_buf - 4, "...", 4);
}

int dd_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mark_cut(vsnprintf(err_buf, sizeof err_buf, fmt, ap));
    va_end(ap);
    err_code = DD_EXIT_DATA;
    return -1;
}

int dd_err_device(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mark_cut(vsnprintf(err_buf, sizeof err_buf, fmt, ap));
    va_end(ap);
    err_code = DD_EXIT_DEVICE;
    return -1;
}

int dd_err_prefix(const char *fmt, ...)
{
    char pre[1024], joined[sizeof pre + sizeof err_buf + 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    snprintf(joined, sizeof joined, "%s: %s", pre, err_buf);
    size_t n = strlen(joined);
    memcpy(err_buf, joined, n < sizeof err_buf ? n : sizeof err_buf - 1); /* a long message is cut, never overrun */
    err_buf[n < sizeof err_buf ? n : sizeof err_buf - 1] = 0;
    mark_cut((int)n);
    return -1;
}

const char *dd_errmsg(void) { return err_buf; }
void dd_err_code(int code) { err_code = code; }
int dd_errcode(void) { return err_code; }

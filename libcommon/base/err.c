/* err.c - the thread-local error message of library code, and the filters' fatal exit. */
#include "libcommon/base/base.h"

#include <getopt.h>

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char err_buf[1024];
static _Thread_local int err_code = DD_EXIT_DATA;
static char prog_name[64] = "ddpipe";

void dd_prog_init(const char *argv0)
{
    const char *b = argv0 ? strrchr(argv0, '/') : NULL;
    b = b ? b + 1 : (argv0 ? argv0 : "ddpipe");
    snprintf(prog_name, sizeof prog_name, "%s", b);
    opterr = 0; /* getopt's own messages (two lines, argv[0]'s path): dd_opt_fail says it in one */
}

const char *dd_prog(void) { return prog_name; }

void dd_die(int code, const char *fmt, ...)
{
    va_list ap;
    dd_progress_break();
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

void dd_die_err(int code) { dd_die(code, "%s", err_buf[0] ? err_buf : "unknown error"); }

void dd_warn(const char *fmt, ...)
{
    va_list ap;
    dd_progress_break();
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int dd_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    err_code = DD_EXIT_DATA;
    return -1;
}

int dd_err_device(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    err_code = DD_EXIT_DEVICE;
    return -1;
}

int dd_err_prefix(const char *fmt, ...)
{
    char pre[512], joined[sizeof pre + sizeof err_buf + 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    snprintf(joined, sizeof joined, "%s: %s", pre, err_buf);
    size_t n = strlen(joined);
    if (n >= sizeof err_buf) n = sizeof err_buf - 1;   /* a long message is cut, never overrun */
    memcpy(err_buf, joined, n);
    err_buf[n] = 0;
    return -1;
}

const char *dd_errmsg(void) { return err_buf; }
void dd_err_code(int code) { err_code = code; }
int dd_errcode(void) { return err_code; }

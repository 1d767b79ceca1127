/* base.h - errors and exit codes, checked allocation, option parsing, counter-based RNG,
 * progress and timing: the few things every ddpipe program and library module needs.
 *
 * Error model: library functions return 0 (or a pointer) on success and -1 (or NULL) on failure
 * after recording a one-line message with dd_err(); the caller may prefix context with
 * dd_err_prefix(). Only filters exit, through dd_die()/dd_die_err().
 *
 * Ownership: dd_malloc/dd_calloc/dd_realloc/dd_strdup return memory the caller frees with free().
 * They never return NULL: running out of memory prints a message and exits 1.
 */
#ifndef DD_BASE_H
#define DD_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DD_VERSION "0.1.0"

enum { DD_EXIT_OK = 0, DD_EXIT_DATA = 1, DD_EXIT_USAGE = 2, DD_EXIT_DEVICE = 3 };

#if defined(__GNUC__)
#define DD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define DD_NORETURN __attribute__((noreturn))
#else
#define DD_PRINTF(a, b)
#define DD_NORETURN
#endif

/* ---- program identity and fatal errors (filters only) ---- */

/* Records the program name (basename of argv[0]) for messages. Call first in main(). */
void dd_prog_init(const char *argv0);
const char *dd_prog(void);
/* Prints "prog: message" to stderr and exits with `code`. */
DD_NORETURN void dd_die(int code, const char *fmt, ...) DD_PRINTF(2, 3);
/* Prints "prog: <last library error>" and exits with `code`. */
DD_NORETURN void dd_die_err(int code);
/* Prints "prog: message" to stderr (warnings, never fatal). */
void dd_warn(const char *fmt, ...) DD_PRINTF(1, 2);

/* ---- library error reporting (thread-local, one message) ---- */

/* Sets the current error message; returns -1 so `return dd_err(...)` reads naturally. */
int dd_err(const char *fmt, ...) DD_PRINTF(1, 2);
/* Same, and marks the error as a device failure (exit class DD_EXIT_DEVICE). */
int dd_err_device(const char *fmt, ...) DD_PRINTF(1, 2);
/* Prepends "context: " to the current message; returns -1. */
int dd_err_prefix(const char *fmt, ...) DD_PRINTF(1, 2);
/* The current message ("" when none). Borrowed; valid until the next dd_err on this thread. */
const char *dd_errmsg(void);
/* Error class of the last error: DD_EXIT_DATA unless set otherwise (dd_err_code). */
void dd_err_code(int code);
int dd_errcode(void);

/* ---- checked allocation and size arithmetic ---- */

void *dd_malloc(size_t n);
void *dd_calloc(size_t n, size_t size);
void *dd_realloc(void *p, size_t n);
char *dd_strdup(const char *s);
/* *r = a * b; returns 0, or -1 on overflow (then *r is unspecified). */
int dd_mul_ok(size_t a, size_t b, size_t *r);
int dd_add_ok(size_t a, size_t b, size_t *r);

/* ---- option parsing helpers (usage errors exit 2 with the option named) ---- */

long dd_opt_long(const char *opt, const char *s, long lo, long hi);
double dd_opt_double(const char *opt, const char *s, double lo, double hi);
/* Parse "A,B,C" into at most `max` values, each in [lo, hi]; return the count (at least 1). An
 * empty item or list, too many items or a bad number is a usage error naming the option. */
int dd_opt_long_list(const char *opt, const char *s, long *out, int max, long lo, long hi);
int dd_opt_double_list(const char *opt, const char *s, double *out, int max, double lo, double hi);
/* getopt_long's '?' (with opterr 0, which dd_prog_init sets): one line naming the unknown option
 * or the option whose argument is missing, and --help; exit 2. shortopts: the getopt string. */
DD_NORETURN void dd_opt_fail(char **argv, const char *shortopts);
/* Prints the version line "prog (ddpipe) VERSION" to stdout and exits 0 (1 on a write error). */
DD_NORETURN void dd_version_exit(void);
/* --help: usage(stdout), then exit 0 (1 on a write error). */
DD_NORETURN void dd_help_exit(void (*usage)(FILE *));
/* Dies with exit 2 if stdout is a terminal (binary output refused), naming the option to use. */
void dd_refuse_tty_stdout(void);

/* ---- counter-based RNG: Philox4x32-10 ----
 * Keyed by (seed, stream), counter (index, draw): a value depends only on these four numbers, never
 * on thread count, batch size or which process computes it. */
void dd_philox4x32(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4]);

typedef struct {
    uint64_t key;      /* seed ^ mixed stream id */
    uint64_t index;    /* record / step index (high counter word) */
    uint64_t draw;     /* incremented per 4 words */
    uint32_t buf[4];
    int pos;           /* next unused word in buf; 4 = empty */
} DdRng;

/* Starts a generator for (seed, stream, index). Stream ids are small constants per use site. */
void dd_rng_init(DdRng *r, uint64_t seed, uint64_t stream, uint64_t index);
uint32_t dd_rng_u32(DdRng *r);
uint64_t dd_rng_u64(DdRng *r);
double dd_rng_uniform(DdRng *r);                 /* [0,1), 53 bits */
double dd_rng_uniform_range(DdRng *r, double lo, double hi);
int64_t dd_rng_int(DdRng *r, int64_t lo, int64_t hi); /* inclusive, unbiased */
double dd_rng_normal(DdRng *r);                  /* Box-Muller */
double dd_rng_beta11(DdRng *r);                  /* Beta(1,1) = U(0,1) kept named for clarity */
double dd_rng_gamma(DdRng *r, double shape);     /* Marsaglia-Tsang */
double dd_rng_beta(DdRng *r, double a, double b);
/* Fisher-Yates permutation of 0..n-1 into perm. */
void dd_rng_perm(DdRng *r, int64_t *perm, int64_t n);

/* ---- timing and progress ---- */

double dd_now(void); /* monotonic seconds */

typedef struct {
    const char *what;
    int64_t total, done;
    double t0, last;
    int tty;           /* stderr is a terminal and progress is enabled */
    int shown;         /* a progress line was drawn */
} DdProgress;

/* Progress on stderr (rate, ETA) only when stderr is a terminal and `quiet` is 0: a line at most
 * every 0.25 s (and at done == total), and at the end, where one was drawn, a "done in" line (a
 * run too short to draw one says nothing). */
void dd_progress_start(DdProgress *p, const char *what, int64_t total, int quiet);
void dd_progress_update(DdProgress *p, int64_t done);
void dd_progress_end(DdProgress *p);
/* Erases the progress line on the terminal, if one is shown, so that a line written next (a
 * message, a metrics line on a terminal's stdout) starts at the left margin; the next update draws
 * it again. dd_die and dd_warn call it. */
void dd_progress_break(void);

/* ---- output checking ---- */

/* fflush + ferror check; returns 0 or -1 with dd_err naming `what`. */
int dd_fclose_checked(FILE *f, const char *what);
int dd_fflush_checked(FILE *f, const char *what);
/* A log file (path created or truncated) written a whole line at a time as lines end: a failed write cuts
 * the file back to its last whole line and sets the FILE's error (dd_fclose_checked reports it). NULL with
 * errno when it cannot be opened. */
FILE *dd_line_log_open(const char *path);

/* Atomic file output: writes go to a temporary in the same directory; commit renames it into
 * place after fsync; abort, exit before the commit (dd_die) or a fatal signal removes it. A
 * symbolic link stays one: the file it names is replaced. A device or FIFO (/dev/null, a named
 * pipe, /dev/stdout on a pipe) is written in place, as it is, with no temporary; a directory is an
 * error at open. */
typedef struct {
    char *path, *tmp;
    char *target; /* the file replaced: path, or the file its link names */
    FILE *f;
    int direct;   /* a device or FIFO, written in place */
} DdAtomicFile;
int dd_atomic_open(DdAtomicFile *a, const char *path);
/* 0 when dd_atomic_open(path) would succeed (checked before long work: a temporary is made
 * and removed, a device or FIFO is not opened), else -1 with dd_err. */
int dd_atomic_check(const char *path);
int dd_atomic_commit(DdAtomicFile *a);
void dd_atomic_abort(DdAtomicFile *a);
/* Flushes, syncs and closes the temporary without renaming it (still listed; commit or abort
 * later): for outputs of several files that appear together. 0, or -1 with dd_err. */
int dd_atomic_finish(DdAtomicFile *a);
/* Lists (add 1) or unlists (add 0) a temporary file or directory, by its pointer, which must stay
 * valid while listed: a fatal signal (SIGINT, SIGTERM, SIGHUP) or exit removes what is listed, a
 * directory with everything in it. dd_atomic_* list their files themselves. */
void dd_temp_track(const char *tmp, int add);
/* Removes a file, or a directory and everything in it (links are removed, not followed), with
 * system calls only (safe in a signal handler); errors are ignored. */
void dd_remove_tree(const char *path);

/* Number of worker threads when -j is not given: DD_THREADS, else the CPUs this process may run
 * on (its affinity mask: taskset, a container's or a batch job's cpuset), fewer where its cgroup's
 * CPU quota allows fewer. A DD_THREADS that is not an integer in 1..DD_MAX_THREADS is a usage
 * error (exit 2), as a bad -j is. */
#define DD_MAX_THREADS 4096
int dd_threads_default(void);
/* 1 when the environment variable NAME is set to something other than "" or "0" (the DD_* switches:
 * DD_NN_PROFILE=0 and an empty value are off, as unset) */
int dd_env_on(const char *name);
/* 1 when paths a and b name one existing file (links followed), or are the same text */
int dd_same_file(const char *a, const char *b);
/* Dies with a usage error (exit 2) when the output `out`, given as option oopt, is the file `in`,
 * given as iopt (a teacher -w, a training stream): writing it would replace what the run reads
 * (an atomic -o over an INPUT stream is fine: read whole before the rename). "-" and NULL pass. */
void dd_refuse_same(const char *oopt, const char *out, const char *iopt, const char *in);
/* A cgroup CPU quota as whole CPUs, rounded up: text "QUOTA PERIOD" (cgroup v2's cpu.max; v1's
 * cfs_quota_us and cfs_period_us joined by a space); 0 for no limit ("max", a negative quota) or
 * text that is not one. */
int dd_cgroup_cpus(const char *text);

#endif

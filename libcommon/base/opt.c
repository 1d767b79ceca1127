/* opt.c - number parsing for command-line options (usage errors exit 2 naming the option),
 * version output, and the refusal to write binary data to a terminal. */
#include "libcommon/base/base.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

long dd_opt_long(const char *opt, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end)
        dd_die(DD_EXIT_USAGE, "%s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi)
        dd_die(DD_EXIT_USAGE, "%s: %ld is out of range [%ld, %ld]", opt, v, lo, hi);
    return v;
}

double dd_opt_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v))
        dd_die(DD_EXIT_USAGE, "%s: '%s' is not a number", opt, s);
    if (v < lo || v > hi)
        dd_die(DD_EXIT_USAGE, "%s: %g is out of range [%g, %g]", opt, v, lo, hi);
    return v;
}

/* The next item of the comma-separated list s at *p into buf (of 64 bytes), *p moved past it and
 * its comma; 0 at the end of the list. Empty items (",,", a leading or trailing comma) and a list
 * of more than max items are usage errors. */
static int list_item(const char *opt, const char *s, const char **p, char *buf, int n, int max)
{
    if (!**p) {
        if (n == 0 || (*p > s && (*p)[-1] == ',')) dd_die(DD_EXIT_USAGE, "%s: bad list '%s'", opt, s);
        return 0;
    }
    const char *c = strchr(*p, ',');
    size_t len = c ? (size_t)(c - *p) : strlen(*p);
    if (len == 0 || len >= 64) dd_die(DD_EXIT_USAGE, "%s: bad list '%s'", opt, s);
    if (n == max) dd_die(DD_EXIT_USAGE, "%s: more than %d values in '%s'", opt, max, s);
    memcpy(buf, *p, len);
    buf[len] = 0;
    *p += len + (c != NULL);
    return 1;
}

int dd_opt_long_list(const char *opt, const char *s, long *out, int max, long lo, long hi)
{
    int n = 0;
    char buf[64];
    for (const char *p = s; list_item(opt, s, &p, buf, n, max);) out[n++] = dd_opt_long(opt, buf, lo, hi);
    return n;
}

int dd_opt_double_list(const char *opt, const char *s, double *out, int max, double lo, double hi)
{
    int n = 0;
    char buf[64];
    for (const char *p = s; list_item(opt, s, &p, buf, n, max);) out[n++] = dd_opt_double(opt, buf, lo, hi);
    return n;
}

/* --help and --version: exit 0 only when the text reached stdout (> /dev/full is a write error, exit 1). */
static DD_NORETURN void stdout_exit(void)
{
    if (dd_fflush_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
    exit(0);
}

void dd_version_exit(void)
{
    printf("%s (ddpipe) %s\n", dd_prog(), DD_VERSION);
    stdout_exit();
}

void dd_help_exit(void (*usage)(FILE *))
{
    usage(stdout);
    stdout_exit();
}

void dd_refuse_tty_stdout(void)
{
    if (isatty(STDOUT_FILENO))
        dd_die(DD_EXIT_USAGE, "refusing to write binary data to a terminal (redirect stdout or use -o)");
}

int dd_cgroup_cpus(const char *text)
{
    char a[32];
    long long period;
    if (!text || sscanf(text, "%31s %lld", a, &period) != 2 || period <= 0) return 0;
    char *end;
    errno = 0;
    long long quota = strtoll(a, &end, 10);
    if (errno || end == a || *end || quota <= 0) return 0; /* "max", -1: no limit */
    long long cpus = quota / period + (quota % period != 0);
    return cpus > DD_MAX_THREADS ? DD_MAX_THREADS : (int)cpus;
}

/* The first line of a small file, or "" */
static void read_line(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (!fgets(buf, (int)n, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
}

/* This process's cgroup CPU quota in CPUs (0: none found): cgroup v2's cpu.max of its own group
 * (/proc/self/cgroup's "0::PATH") or of the root of the mount (a container's view), else v1's. */
static int cgroup_quota(void)
{
    char line[512], path[640], a[64], b[64];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3)) continue;
            line[strcspn(line, "\n")] = 0;
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", strcmp(line + 3, "/") ? line + 3 : "");
            read_line(path, line, sizeof line);
            if (*line) {
                fclose(f);
                return dd_cgroup_cpus(line);
            }
            break;
        }
        fclose(f);
    }
    read_line("/sys/fs/cgroup/cpu.max", line, sizeof line);
    if (*line) return dd_cgroup_cpus(line);
    read_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", a, sizeof a);
    read_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us", b, sizeof b);
    snprintf(line, sizeof line, "%s %s", a, b);
    return dd_cgroup_cpus(line);
}

int dd_env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

int dd_same_file(const char *a, const char *b)
{
    struct stat x, y;
    if (!strcmp(a, b)) return 1;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

void dd_refuse_same(const char *oopt, const char *out, const char *iopt, const char *in)
{
    if (!out || !in || !strcmp(out, "-") || !strcmp(in, "-") || !dd_same_file(out, in)) return;
    dd_die(DD_EXIT_USAGE, "%s %s is %s %s: it would be replaced", oopt, out, iopt, in);
}

int dd_threads_default(void)
{
    const char *e = getenv("DD_THREADS");
    if (e && *e) return (int)dd_opt_long("DD_THREADS", e, 1, DD_MAX_THREADS);
    long n = 0;
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
    if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    int q = cgroup_quota();
    if (q > 0 && q < n) n = q;
    return n > DD_MAX_THREADS ? DD_MAX_THREADS : (int)n;
}

void dd_opt_fail(char **argv, const char *shortopts)
{
    /* the element getopt was reading: optind has passed it, unless a short option in the middle
     * of a cluster (-qx) failed */
    const char *el = optind > 0 ? argv[optind - 1] : "";
    if (el && el[0] == '-' && el[1] == '-' && el[2]) {
        const char *eq = strchr(el, '=');
        int n = eq ? (int)(eq - el) : (int)strlen(el);
        if (optopt && eq) dd_die(DD_EXIT_USAGE, "option '%.*s' takes no argument (try '%s --help')", n, el, dd_prog());
        if (optopt) dd_die(DD_EXIT_USAGE, "option '%.*s' needs an argument (try '%s --help')", n, el, dd_prog());
        dd_die(DD_EXIT_USAGE, "unknown or ambiguous option '%.*s' (try '%s --help')", n, el, dd_prog());
    }
    if (optopt > 0 && optopt < 256 && optopt != ':' && strchr(shortopts, optopt))
        dd_die(DD_EXIT_USAGE, "option '-%c' needs an argument (try '%s --help')", optopt, dd_prog());
    if (optopt > ' ' && optopt < 127) dd_die(DD_EXIT_USAGE, "unknown option '-%c' (try '%s --help')", optopt, dd_prog());
    dd_die(DD_EXIT_USAGE, "unknown option (try '%s --help')", dd_prog());
}

/* tscmp.c - compare two record streams record by record: class lists, keys, field names,
 * dtypes, shapes and values (bitwise by default, or within --atol/--rtol). Differences are the
 * program's output (stdout); exit 0 when equal, 1 when different or on a read error. Metadata
 * and history are not compared. See tscmp(1).
 */
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "formats/stream.h"
#include "libcommon/base/base.h"

typedef struct {
    const char *na, *nb;
    int tolerant, quiet;
    double atol, rtol;
    long max_report, reported;
    int64_t diffs;                /* differences found (records, plus header and length) */
} Cmp;

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [options] FILE1 FILE2\n"
               "Compare two record streams (either may be '-' for stdin); exit 0 if equal, 1 if not.\n"
               "  -e, --exact           bitwise equality of values (the default)\n"
               "  -a, --atol A          equal when |a-b| <= A + R*|b| (NaN equals NaN)\n"
               "  -r, --rtol R          relative tolerance (default 0)\n"
               "  -m, --max-report N    report at most N differences (default 10)\n"
               "  -q, --quiet           report nothing (no progress either), exit status only\n"
               "  -h, --help            this text\n"
               "      --version         version\n", dd_prog());
}

static void report(Cmp *c, int64_t idx, const char *key, const char *fmt, ...) DD_PRINTF(4, 5);
static void report(Cmp *c, int64_t idx, const char *key, const char *fmt, ...)
{
    if (c->quiet || c->reported++ >= c->max_report) return;
    dd_progress_break(); /* stdout may share the terminal with the progress line */
    va_list ap;
    if (idx >= 0) printf("record %lld (%s): ", (long long)idx, key);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static int is_int(DdDtype t)
{
    return t == DD_BOOL || t == DD_U8 || t == DD_I8 || t == DD_I16 || t == DD_U16 || t == DD_I32 || t == DD_U32 ||
           t == DD_I64 || t == DD_U64;
}

/* Element i of an integer tensor, exactly (a double holds 53 bits: 2^53 + 1 read as 2^53). */
static __int128 int_at(const Tensor *t, int64_t i)
{
    const void *p = t->data;
    switch (t->dtype) {
    case DD_BOOL:
    case DD_U8: return ((const uint8_t *)p)[i];
    case DD_I8: return ((const int8_t *)p)[i];
    case DD_I16: return ((const int16_t *)p)[i];
    case DD_U16: return ((const uint16_t *)p)[i];
    case DD_I32: return ((const int32_t *)p)[i];
    case DD_U32: return ((const uint32_t *)p)[i];
    case DD_U64: return ((const uint64_t *)p)[i];
    default: return ((const int64_t *)p)[i];
    }
}

/* Element i as text: integers exactly, floats to 9 digits. */
static const char *value_str(const Tensor *t, int64_t i, char *buf, size_t n)
{
    if (t->dtype == DD_U64) snprintf(buf, n, "%llu", (unsigned long long)((const uint64_t *)t->data)[i]);
    else if (is_int(t->dtype)) snprintf(buf, n, "%lld", (long long)int_at(t, i));
    else snprintf(buf, n, "%.9g", tensor_get_f64(t, i));
    return buf;
}

/* 1 if the values are equal under the comparison mode; *at = first differing element. */
static int values_equal(const Cmp *c, const Tensor *a, const Tensor *b, int64_t *at)
{
    const int64_t n = tensor_numel(a);
    const size_t es = dd_dtype_size(a->dtype);
    if (!c->tolerant && memcmp(a->data, b->data, (size_t)n * es) == 0) return 1;
    for (int64_t i = 0; i < n; i++) {
        int eq;
        if (!c->tolerant) {
            eq = memcmp((const char *)a->data + i * es, (const char *)b->data + i * es, es) == 0;
        } else if (is_int(a->dtype)) { /* the same dtype on both sides (tensor_same_shape) */
            __int128 x = int_at(a, i), y = int_at(b, i), d = x > y ? x - y : y - x;
            eq = d == 0 || (double)d <= c->atol + c->rtol * fabs((double)y);
        } else {
            double x = tensor_get_f64(a, i), y = tensor_get_f64(b, i);
            eq = (isnan(x) && isnan(y)) || x == y || fabs(x - y) <= c->atol + c->rtol * fabs(y);
        }
        if (!eq) {
            *at = i;
            return 0;
        }
    }
    return 1;
}

/* Compares one pair of records; returns 1 if they differ. */
static int record_differs(Cmp *c, int64_t idx, const TsRecord *a, const TsRecord *b)
{
    char da[128], db[128];
    int bad = 0;
    if (strcmp(a->key, b->key)) {
        report(c, idx, a->key, "key %s in %s, %s in %s", a->key, c->na, b->key, c->nb);
        bad = 1;
    }
    for (int f = 0; f < a->nfields; f++) {
        const TsField *fa = &a->fields[f];
        const Tensor *tb = ts_record_cget(b, fa->name);
        if (!tb) {
            report(c, idx, a->key, "field %s only in %s", fa->name, c->na);
            bad = 1;
        } else if (!tensor_same_shape(&fa->t, tb)) {
            report(c, idx, a->key, "field %s: %s in %s, %s in %s", fa->name, tensor_describe(&fa->t, da, sizeof da),
                   c->na, tensor_describe(tb, db, sizeof db), c->nb);
            bad = 1;
        } else {
            int64_t at = 0;
            if (!values_equal(c, &fa->t, tb, &at)) {
                report(c, idx, a->key, "field %s: element %lld: %s in %s, %s in %s", fa->name, (long long)at,
                       value_str(&fa->t, at, da, sizeof da), c->na, value_str(tb, at, db, sizeof db), c->nb);
                bad = 1;
            }
        }
    }
    for (int f = 0; f < b->nfields; f++)
        if (!ts_record_cget(a, b->fields[f].name)) {
            report(c, idx, a->key, "field %s only in %s", b->fields[f].name, c->nb);
            bad = 1;
        }
    return bad;
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    static const struct option lo[] = {
        {"exact", 0, 0, 'e'}, {"atol", 1, 0, 'a'}, {"rtol", 1, 0, 'r'}, {"max-report", 1, 0, 'm'},
        {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0}};
    Cmp c = {.max_report = 10};
    int opt, exact = 0;
    const char *shortopts = "ea:r:m:qh";
    while ((opt = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (opt) {
        case 'e': exact = 1; break;
        case 'a': c.atol = dd_opt_double("--atol", optarg, 0, INFINITY); c.tolerant = 1; break;
        case 'r': c.rtol = dd_opt_double("--rtol", optarg, 0, INFINITY); c.tolerant = 1; break;
        case 'm': c.max_report = dd_opt_long("--max-report", optarg, 0, 1L << 40); break;
        case 'q': c.quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case 'V': dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (exact && c.tolerant) dd_die(DD_EXIT_USAGE, "--exact and --atol/--rtol exclude each other");
    if (argc - optind != 2) dd_die(DD_EXIT_USAGE, "want two files (try --help)");
    c.na = argv[optind];
    c.nb = argv[optind + 1];
    if (!strcmp(c.na, "-") && !strcmp(c.nb, "-")) dd_die(DD_EXIT_USAGE, "only one operand may be '-'");
    TsReader *a = ts_reader_open(c.na), *b = a ? ts_reader_open(c.nb) : NULL;
    if (!a || !b) dd_die_err(DD_EXIT_DATA);
    if (ts_header_classes_check(ts_reader_header(a), c.na, ts_reader_header(b), c.nb) < 0) {
        report(&c, -1, "", "%s", dd_errmsg());
        c.diffs++;
    }
    TsRecord ra, rb;
    ts_record_init(&ra);
    ts_record_init(&rb);
    int64_t idx = 0;
    DdProgress prog;
    dd_progress_start(&prog, "records", -1, c.quiet);
    for (;; idx++) {
        int ea = ts_reader_next(a, &ra), eb = ts_reader_next(b, &rb);
        if (ea < 0 || eb < 0) dd_die_err(DD_EXIT_DATA);
        if (!ea || !eb) {
            if (ea != eb) {
                report(&c, -1, "", "%s ends after %lld records, %s has more", ea ? c.nb : c.na, (long long)idx,
                       ea ? c.na : c.nb);
                c.diffs++;
            }
            break;
        }
        c.diffs += record_differs(&c, idx, &ra, &rb);
        dd_progress_update(&prog, idx + 1);
    }
    dd_progress_end(&prog);
    if (c.diffs && !c.quiet) {
        if (c.reported > c.max_report) printf("(%ld more differences not shown)\n", c.reported - c.max_report);
        printf("%s and %s differ: %ld difference(s) over %lld records compared\n", c.na, c.nb, c.reported,
               (long long)idx);
    }
    if (dd_fflush_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
    ts_record_free(&ra);
    ts_record_free(&rb);
    ts_reader_close(a);
    ts_reader_close(b);
    return c.diffs ? 1 : 0;
}

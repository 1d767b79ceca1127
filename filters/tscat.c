/* tscat.c - concatenate record streams (either container, any operands, stdin when none) and
 * select records: by class, by key, every K-th, the first N (overall or per class); write a
 * stream to stdout or WebDataset tar shards. The selection is applied in that order: a record
 * must pass --classes and --keys; of those, --every keeps positions OFFSET, OFFSET+K, ...;
 * of those, --head keeps the first N. See tscat(1).
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/codecs.h"
#include "formats/stream.h"
#include "libcommon/base/base.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [options] [file...]\n"
               "Concatenate and select records; write a stream on stdout or tar shards.\n"
               "  -c, --classes LIST      keep these classes (indices or names, comma-separated)\n"
               "  -k, --keys FILE|LIST    keep these keys (a file with one key per line, or a list)\n"
               "  -e, --every K[:OFFSET]  keep every K-th selected record, starting at OFFSET\n"
               "  -n, --head N            keep the first N selected records\n"
               "  -p, --per-class         --head counts per class\n"
               "      --shards PATTERN    write tar shards (printf pattern, .zst compresses)\n"
               "      --shard-records N   records per shard (default 10000)\n"
               "  -o, --output FILE       write FILE atomically instead of stdout\n"
               "  -q, --quiet             no progress\n"
               "  -h, --help              this text\n"
               "      --version           version\n", dd_prog());
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* --keys: a file of keys (one per line) if such a file exists (a pipe too: <(...)), else a
 * comma-separated list. An empty file selects no record. Every key must be one a stream can hold:
 * a misspelt file name (it has a dot) is an error, not a list that selects nothing. */
static char **keys_load(const char *arg, int *n)
{
    char **k = NULL;
    struct stat st;
    if (stat(arg, &st) == 0) {
        if (S_ISDIR(st.st_mode)) dd_die(DD_EXIT_USAGE, "--keys %s: is a directory", arg);
        if (dd_read_lines(arg, &k, n) < 0) dd_die_err(DD_EXIT_DATA);
        for (int i = 0; i < *n; i++)
            if (!ts_key_valid(k[i]))
                dd_die(DD_EXIT_DATA, "%s: line %d: '%s' is not a key ([A-Za-z0-9_-], 1 to 64 characters)", arg,
                       i + 1, k[i]);
    } else {
        char *s = dd_strdup(arg), *save = NULL;
        *n = 0;
        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!ts_key_valid(t))
                dd_die(DD_EXIT_USAGE, "--keys: '%s' is not a key ([A-Za-z0-9_-], 1 to 64 characters), and no file "
                       "'%s' exists", t, arg);
            k = dd_realloc(k, sizeof *k * (size_t)(*n + 1));
            k[(*n)++] = dd_strdup(t);
        }
        free(s);
        if (*n == 0) dd_die(DD_EXIT_USAGE, "--keys: empty list");
    }
    if (*n) qsort(k, (size_t)*n, sizeof *k, cmp_str); /* k is NULL for an empty file */
    return k;
}

/* The outermost directory make_parents created (NULL: none), a temporary until the set is whole: a run that
 * fails or is killed leaves no directory it made (dd_temp_track, as the shards' own temporaries). */
static char *made_dir;

/* Creates the directories leading to the shards' pattern (mkdir -p of its dirname, "%%" read as
 * "%"; ts_shards_pattern_check keeps the conversion out of it). */
static void make_parents(const char *pattern)
{
    char *d = dd_strdup(pattern);
    for (char *p = d, *q = d; (*q = *p); p++, q++)
        if (p[0] == '%' && p[1] == '%') p++;
    for (char *p = strchr(d + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = 0;
        if (mkdir(d, 0777) == 0) {
            if (!made_dir) dd_temp_track(made_dir = dd_strdup(d), 1);
        } else if (errno != EEXIST) {
            dd_die(DD_EXIT_DATA, "%s: cannot create: %s", d, strerror(errno));
        }
        *p = '/';
    }
    free(d);
}

/* The writer refused rec, the input's record `index` of `name`, as output record `out`. Its message
 * names the output's record ("stdout: record 500 (KEY): duplicate key"; the shards' without a file
 * name): that naming is replaced by the input's. A duplicate key comes from an earlier input (one
 * input cannot repeat a key: its reader refuses that), which is said. */
static void put_error(const char *name, int64_t index, const char *key, int64_t out)
{
    char *msg = dd_strdup(dd_errmsg()), want[TS_KEY_MAX + 64];
    snprintf(want, sizeof want, "record %lld (%s): ", (long long)out, key);
    const char *p = strstr(msg, want), *rest = p ? p + strlen(want) : msg;
    if (!strcmp(rest, "duplicate key"))
        dd_err("%s: record %lld (%s): duplicate key: an earlier input has a record of that key", name,
               (long long)index, key);
    else
        dd_err("%s: record %lld (%s): %s", name, (long long)index, key, rest);
    free(msg);
}

/* --classes: a mask over the header's classes from indices or exact names. */
static char *classes_mask(const char *arg, const TsHeader *h)
{
    const int nc = ts_header_nclasses(h);
    char *mask = dd_calloc((size_t)nc + 1, 1), *s = dd_strdup(arg), *save = NULL;
    for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int i = 0;
        while (i < nc && strcmp(ts_header_class(h, i), t)) i++;
        if (i == nc && strspn(t, "0123456789") == strlen(t)) i = (int)dd_opt_long("--classes", t, 0, nc - 1);
        if (i == nc) dd_die(DD_EXIT_USAGE, "--classes: no class named '%s'", t);
        mask[i] = 1;
    }
    free(s);
    if (!memchr(mask, 1, (size_t)nc)) dd_die(DD_EXIT_USAGE, "--classes: empty list");
    return mask;
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    enum { OPT_SHARDS = 256, OPT_SHARD_RECORDS, OPT_VERSION };
    static const struct option lo[] = {
        {"classes", 1, 0, 'c'}, {"keys", 1, 0, 'k'}, {"every", 1, 0, 'e'}, {"head", 1, 0, 'n'},
        {"per-class", 0, 0, 'p'}, {"shards", 1, 0, OPT_SHARDS}, {"shard-records", 1, 0, OPT_SHARD_RECORDS},
        {"output", 1, 0, 'o'}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {"version", 0, 0, OPT_VERSION}, {0}};
    const char *classes = NULL, *keys_arg = NULL, *shards = NULL, *output = "-";
    long every = 1, offset = 0, head = -1, shard_records = 10000;
    int records_set = 0;
    int c, per_class = 0, quiet = 0;
    const char *shortopts = "c:k:e:n:po:qh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'c': classes = optarg; break;
        case 'k': keys_arg = optarg; break;
        case 'e': { /* on a copy: the history records argv as given ("-e 2:1", not "-e 2") */
            char *k = dd_strdup(optarg), *colon = strchr(k, ':');
            if (colon) *colon = 0;
            every = dd_opt_long("--every", k, 1, 1L << 40);
            offset = colon ? dd_opt_long("--every", colon + 1, 0, every - 1) : 0;
            free(k);
            break;
        }
        case 'n': head = dd_opt_long("--head", optarg, 0, 1L << 62); break;
        case 'p': per_class = 1; break;
        case OPT_SHARDS: shards = optarg; break;
        case OPT_SHARD_RECORDS: shard_records = dd_opt_long("--shard-records", optarg, 1, 1L << 40), records_set = 1; break;
        case 'o': output = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case OPT_VERSION: dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (per_class && head < 0) dd_die(DD_EXIT_USAGE, "--per-class needs --head N");
    if (shards && strcmp(output, "-")) dd_die(DD_EXIT_USAGE, "--shards and --output exclude each other");
    if (!shards && records_set) dd_die(DD_EXIT_USAGE, "--shard-records without --shards");
    if (!shards && !strcmp(output, "-")) dd_refuse_tty_stdout();

    TsInput *in = ts_input_open(argc - optind, argv + optind);
    if (!in) dd_die_err(dd_errcode());
    TsHeader *h = ts_header_copy(ts_input_header(in));
    const int nc = ts_header_nclasses(h);
    char *mask = classes ? classes_mask(classes, h) : NULL;
    int nkeys = 0;
    char **keys = keys_arg ? keys_load(keys_arg, &nkeys) : NULL;
    /* Like cat(1), tscat leaves no trace when it only concatenates or changes the container:
     * stream -> shards -> stream is then byte-identical. A selection changes the record set and
     * is recorded in the history. */
    if (classes || keys_arg || head >= 0 || every > 1) ts_header_add_history(h, argc, argv, -1, NULL);
    TsWriter *w = NULL;
    TsShardWriter *sw = NULL;
    if (shards && ts_shards_pattern_check(shards) < 0) dd_die_err(DD_EXIT_USAGE);
    if (shards) make_parents(shards);
    if (shards) sw = ts_shards_open(shards, shard_records, h);
    else w = ts_writer_open(output, h);
    if (!w && !sw) dd_die_err(DD_EXIT_DATA);

    int64_t *taken = dd_calloc((size_t)nc + 1, sizeof *taken), passed = 0, written = 0;
    TsRecord rec;
    ts_record_init(&rec);
    DdProgress prog;
    dd_progress_start(&prog, "records", -1, quiet);
    int r;
    while ((r = ts_input_next(in, &rec)) == 1) {
        dd_progress_update(&prog, ts_input_index(in) + 1);
        int64_t lab = -1;
        if (mask || per_class) {
            lab = ts_record_label(&rec);
            if (lab < 0 || lab >= nc) {
                if (lab >= nc) dd_err("label %lld outside the %d classes", (long long)lab, nc);
                dd_err_prefix("%s: record %lld (%s)", ts_input_name(in), (long long)ts_input_index(in), rec.key);
                r = -1;
                break;
            }
        }
        if (mask && !mask[lab]) continue;
        const char *kp = rec.key;
        if (keys_arg && (!nkeys || !bsearch(&kp, keys, (size_t)nkeys, sizeof *keys, cmp_str))) continue;
        if (passed++ % every != offset) continue;
        int64_t *t = per_class ? &taken[lab] : &taken[nc];
        if (head >= 0 && *t >= head) {
            if (!per_class) break;   /* nothing more can be selected: stop reading */
            continue;
        }
        (*t)++;
        if ((sw ? ts_shards_put(sw, &rec) : ts_writer_put(w, &rec)) < 0) { /* a duplicate key, ...: name the input */
            put_error(ts_input_name(in), ts_input_index(in), rec.key, written);
            r = -1;
            break;
        }
        written++;
    }
    dd_progress_end(&prog);
    if (r < 0) {
        if (sw) ts_shards_abort(sw);
        else ts_writer_abort(w);
        dd_die_err(DD_EXIT_DATA);
    }
    if ((sw ? ts_shards_close(sw) : ts_writer_close(w)) < 0) dd_die_err(DD_EXIT_DATA);
    if (made_dir) dd_temp_track(made_dir, 0); /* the set is whole: its directories stay */
    ts_record_free(&rec);
    ts_input_close(in);
    ts_header_free(h);
    if (keys) dd_lines_free(keys, nkeys);
    free(mask);
    free(taken);
    return 0;
}

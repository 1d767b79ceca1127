/* tsinfo.c - what a record stream holds: record count, classes with counts, per-field dtypes,
 * distinct shapes and value min/max/mean, the images' per-channel mean and std (the numbers a new
 * dataset's normalization wants), and the provenance history; --json for machines, --list for one
 * line per record. Reading the whole stream also verifies it: a truncated or corrupt stream is
 * exit 1 with the reader's message. Given weights files (safetensors) instead, what each holds:
 * its tensors and values, and its metadata (the architecture, classes, normalization and how it
 * was trained). See tsinfo(1).
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/codecs.h"
#include "formats/sniff.h"
#include "formats/stream.h"
#include "libcommon/base/base.h"
#include "libcommon/models/model.h"

#define MAX_FIELDS 64
#define MAX_SHAPES 8

typedef struct {
    char name[TS_NAME_MAX + 1];
    unsigned dtypes;               /* bit per DdDtype seen */
    int nshapes;
    Tensor shapes[MAX_SHAPES];     /* dtype and shape only (no data) */
    int64_t shape_count[MAX_SHAPES], more_shapes, count;
    int ndim;                      /* of every value so far; -1 once two differ */
    int64_t dmin[DD_MAXDIM], dmax[DD_MAXDIM]; /* per dimension, over every value */
    double min, max, sum;
    int64_t numel;
    /* [C,H,W] values with one C in every record: per channel, the sum and the sum of squares of the
     * pixels in [0,1] (U8 / 255), over cnumel pixels each; channels -1 once a record disagrees */
    int channels;
    double *csum, *csq;
    int64_t cnumel;
} FieldStat;

/* The channel statistics are kept for images of at most this many channels. */
#define MAX_CHANNELS 64

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [options] [file...]\n"
               "Summarise record streams (stdin when no file is given), or weights files.\n"
               "      --json      one JSON object: records, classes, class_counts, fields, history\n"
               "  -l, --list      one line per record: index, key, label, class, field shapes,\n"
               "                  and the record's meta JSON where it has one\n"
               "  -q, --quiet     no progress (--list shows none: its lines are the progress)\n"
               "  -h, --help      this text\n"
               "      --version   version\n", dd_prog());
}

/* ---- weights files ---- */

/* 1 when path is a regular file whose first bytes are a safetensors header's (dd_sniff); 0
 * otherwise or unreadable (the stream reader then says why). Only regular files are sniffed: the
 * bytes read from stdin, a pipe or a FIFO (<(...)) would be lost to the stream reader. */
static int is_weights_file(const char *path)
{
    struct stat sb;
    if (!strcmp(path, "-") || stat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t b[64];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return dd_sniff(b, n) == DD_KIND_SAFETENSORS;
}

/* One weights file: text (a block), --json (one object a line) or --list (a tab-separated line
 * per tensor: name, dtype and shape, after the file's name when several files are listed: tag).
 * Dies (exit 1) on a file that does not parse. */
static void print_weights(const char *path, int json, int list, int tag)
{
    Safetensors st;
    if (st_read_file(path, &st) < 0) dd_die_err(DD_EXIT_DATA);
    int64_t values = 0, bytes = 0, per[DD_NDTYPE] = {0};
    char buf[256];
    for (int i = 0; i < st.n; i++) {
        const Tensor *t = &st.e[i].t;
        values += tensor_numel(t);
        bytes += tensor_nbytes(t);
        per[t->dtype]++;
        if (list) printf("%s%s%s\t%s\n", tag ? path : "", tag ? "\t" : "", st.e[i].name,
                         tensor_describe(t, buf, sizeof buf));
    }
    if (list) goto done;
    if (json) {
        json_t *o = json_pack("{s:s,s:i,s:I,s:I}", "file", path, "tensors", st.n, "values", (json_int_t)values,
                              "bytes", (json_int_t)bytes), *d = json_object();
        for (int k = 0; k < DD_NDTYPE; k++)
            if (per[k]) json_object_set_new(d, dd_dtype_name((DdDtype)k), json_integer(per[k]));
        json_object_set_new(o, "dtypes", d);
        json_object_set_new(o, "metadata", st.metadata ? json_incref(st.metadata) : json_object());
        char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!text) dd_die(DD_EXIT_DATA, "%s: out of memory", path);
        puts(text);
        free(text);
        json_decref(o);
        goto done;
    }
    printf("weights: %s\ntensors: %d, %lld values, %lld bytes (", path, st.n, (long long)values, (long long)bytes);
    for (int k = 0, first = 1; k < DD_NDTYPE; k++)
        if (per[k]) {
            printf("%s%s %lld", first ? "" : ", ", dd_dtype_name((DdDtype)k), (long long)per[k]);
            first = 0;
        }
    printf(")\n");
    if (!st.metadata || !json_object_size(st.metadata)) {
        printf("metadata: none (loading derives the architecture from the tensor names and shapes)\n");
    } else {
        printf("metadata:\n");
        const char *key;
        json_t *v;
        json_object_foreach(st.metadata, key, v) {
            const char *sv = json_string_value(v);
            printf("  %s: %s\n", key, sv ? sv : "(not a string)");
        }
    }
    /* a file without its normalization gets the default one, silently wrong for a model trained otherwise */
    if (!st.metadata || !json_object_get(st.metadata, "mean")) {
        const char *cs = st.metadata ? json_string_value(json_object_get(st.metadata, "in_channels")) : NULL;
        int ch = cs ? atoi(cs) : 0;
        printf("normalization: not in the file: the programs apply the default for its channels (");
        if (ch >= 1 && ch <= 64) {
            float mean[64], std[64];
            model_default_norm(ch, mean, std);
            for (int c = 0; c < ch; c++) printf("%s%g", c ? "," : "mean ", (double)mean[c]);
            for (int c = 0; c < ch; c++) printf("%s%g", c ? "," : ", std ", (double)std[c]);
        } else {
            printf("1: Fashion-MNIST's, 3: ImageNet's, others 0.5 / 0.5");
        }
        printf("; ddpipe-models(7)): right only for a model trained on pixels normalized so\n");
    }
done:
    st_free(&st);
}

/* Folds one tensor's values into min/max/sum with a fast path for the common dtypes. */
static void stat_values(FieldStat *s, const Tensor *t)
{
    int64_t n = tensor_numel(t);
    double mn = s->min, mx = s->max, sum = 0;
    if (t->dtype == DD_U8) {
        const uint8_t *p = t->data;
        for (int64_t i = 0; i < n; i++) {
            double v = p[i];
            sum += v;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    } else if (t->dtype == DD_F32) {
        const float *p = t->data;
        for (int64_t i = 0; i < n; i++) {
            double v = p[i];
            sum += v;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            double v = tensor_get_f64(t, i);
            sum += v;
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
        }
    }
    s->min = mn;
    s->max = mx;
    s->sum += sum;
    s->numel += n;
}

/* Folds a [C,H,W] value into the per-channel sums (the first one fixes C). */
static void stat_channels(FieldStat *s, const Tensor *t)
{
    if (s->channels < 0) return;
    if (t->ndim != 3 || t->shape[0] < 1 || t->shape[0] > MAX_CHANNELS
        || (s->csum && t->shape[0] != s->channels)) {
        s->channels = -1;
        return;
    }
    if (!s->csum) {
        s->channels = (int)t->shape[0];
        s->csum = dd_calloc((size_t)s->channels, sizeof *s->csum);
        s->csq = dd_calloc((size_t)s->channels, sizeof *s->csq);
    }
    int64_t hw = t->shape[1] * t->shape[2];
    for (int c = 0; c < s->channels; c++) {
        double sum = 0, sq = 0;
        if (t->dtype == DD_U8) { /* integer sums: exact, and scaled once */
            const uint8_t *p = (const uint8_t *)t->data + c * hw;
            uint64_t a = 0, b = 0;
            for (int64_t i = 0; i < hw; i++) {
                a += p[i];
                b += (uint64_t)p[i] * p[i];
            }
            sum = (double)a / 255;
            sq = (double)b / (255.0 * 255.0);
        } else {
            for (int64_t i = c * hw; i < (c + 1) * hw; i++) {
                double v = t->dtype == DD_F32 ? ((const float *)t->data)[i] : tensor_get_f64(t, i);
                sum += v;
                sq += v * v;
            }
        }
        s->csum[c] += sum;
        s->csq[c] += sq;
    }
    s->cnumel += hw;
}

static int has_channel_stats(const FieldStat *s) { return s->channels > 0 && s->cnumel > 0; }

/* Channel c's mean and (population) standard deviation. */
static void channel_stat(const FieldStat *s, int c, double *mean, double *sd)
{
    *mean = s->csum[c] / (double)s->cnumel;
    double var = s->csq[c] / (double)s->cnumel - *mean * *mean;
    *sd = isnan(var) ? NAN : sqrt(var > 0 ? var : 0); /* a NaN or infinite pixel: nan, not 0 */
}

static void stat_field(FieldStat *s, const Tensor *t)
{
    if (!s->count) {
        s->ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) s->dmin[d] = s->dmax[d] = t->shape[d];
    } else if (s->ndim != t->ndim) {
        s->ndim = -1;
    }
    for (int d = 0; s->ndim == t->ndim && d < t->ndim; d++) {
        if (t->shape[d] < s->dmin[d]) s->dmin[d] = t->shape[d];
        if (t->shape[d] > s->dmax[d]) s->dmax[d] = t->shape[d];
    }
    s->count++;
    s->dtypes |= 1u << t->dtype;
    int i = 0;
    while (i < s->nshapes && !tensor_same_shape(&s->shapes[i], t)) i++;
    if (i < s->nshapes) s->shape_count[i]++;
    else if (s->nshapes < MAX_SHAPES) {
        s->shapes[i] = *t;
        s->shapes[i].data = NULL;
        s->shapes[i].owns = 0;
        s->shape_count[s->nshapes++] = 1;
    } else s->more_shapes++;
    stat_values(s, t);
    stat_channels(s, t);
}

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* --list: the meta as one compact line (valid JSON may hold newlines and tabs between tokens). */
static void print_meta(const char *meta)
{
    json_t *j = json_loads(meta, 0, NULL);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    printf("\t%s", s ? s : meta);
    free(s);
    json_decref(j);
}

static json_t *shape_json(const Tensor *t)
{
    json_t *a = json_array();
    for (int d = 0; d < t->ndim; d++) json_array_append_new(a, json_integer(t->shape[d]));
    return a;
}

static void print_json(const TsHeader *h, int64_t records, const int64_t *counts, int nc,
                       const FieldStat *fs, int nf)
{
    json_t *o = json_object(), *cl = json_array(), *cc = json_array(), *fo = json_object();
    for (int i = 0; i < nc; i++) {
        json_array_append_new(cl, json_string(ts_header_class(h, i)));
        json_array_append_new(cc, json_integer(counts[i]));
    }
    for (int i = 0; i < nf; i++) {
        const FieldStat *s = &fs[i];
        json_t *f = json_object(), *dt = json_array(), *sh = json_array();
        for (int d = 0; d < DD_NDTYPE; d++)
            if (s->dtypes >> d & 1) json_array_append_new(dt, json_string(dd_dtype_name(d)));
        for (int k = 0; k < s->nshapes; k++) json_array_append_new(sh, shape_json(&s->shapes[k]));
        json_object_set_new(f, "count", json_integer(s->count));
        json_object_set_new(f, "dtypes", dt);
        json_object_set_new(f, "shapes", sh);
        if (s->nshapes > 1 && s->ndim >= 0) { /* the range of each dimension, when shapes differ */
            json_t *lo = json_array(), *hi = json_array();
            for (int d = 0; d < s->ndim; d++) {
                json_array_append_new(lo, json_integer(s->dmin[d]));
                json_array_append_new(hi, json_integer(s->dmax[d]));
            }
            json_object_set_new(f, "shape_min", lo);
            json_object_set_new(f, "shape_max", hi);
        }
        json_object_set_new(f, "min", s->numel ? jnum(s->min) : json_null());
        json_object_set_new(f, "max", s->numel ? jnum(s->max) : json_null());
        json_object_set_new(f, "mean", s->numel ? jnum(s->sum / (double)s->numel) : json_null());
        if (has_channel_stats(s)) {
            json_t *cm = json_array(), *cs = json_array();
            for (int c = 0; c < s->channels; c++) {
                double mean, sd;
                channel_stat(s, c, &mean, &sd);
                json_array_append_new(cm, jnum(mean));
                json_array_append_new(cs, jnum(sd));
            }
            json_object_set_new(f, "channel_mean", cm);
            json_object_set_new(f, "channel_std", cs);
        }
        json_object_set_new(fo, s->name, f);
    }
    json_t *hist = json_object_get(h->json, "history"), *inputs = json_object_get(h->json, "inputs");
    json_object_set_new(o, "records", json_integer(records));
    json_object_set_new(o, "classes", cl);
    json_object_set_new(o, "class_counts", cc);
    json_object_set_new(o, "unlabelled", json_integer(counts[nc]));
    json_object_set_new(o, "fields", fo);
    json_object_set_new(o, "history", hist ? json_incref(hist) : json_array());
    json_object_set_new(o, "inputs", json_is_array(inputs) ? json_incref(inputs) : json_array());
    json_t *rl = json_object_get(h->json, "relabel");   /* a label stream's: what it was made for */
    if (rl) json_object_set_new(o, "relabel", json_incref(rl));
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    putchar('\n');
    json_decref(o);
}

/* A header's history, one line per program: index, prog, version, time where there is one, argv. */
static void print_history(const json_t *hist, const char *indent)
{
    json_t *e;
    size_t i;
    json_array_foreach(hist, i, e) {
        json_t *av = json_object_get(e, "argv"), *a;
        size_t j;
        const char *p = json_string_value(json_object_get(e, "prog"));
        const char *v = json_string_value(json_object_get(e, "version"));
        const char *t = json_string_value(json_object_get(e, "time"));
        printf("%s%zu %s %s%s%s:", indent, i, p ? p : "?", v ? v : "?", t ? " " : "", t ? t : "");
        json_array_foreach(av, j, a) printf(" %s", json_string_value(a) ? json_string_value(a) : "?");
        putchar('\n');
    }
}

static void print_text(const TsHeader *h, int64_t records, const int64_t *counts, int nc,
                       const FieldStat *fs, int nf)
{
    char buf[256];
    printf("records: %lld\nclasses: %d\n", (long long)records, nc);
    for (int i = 0; i < nc; i++) printf("  %3d %-24s %lld\n", i, ts_header_class(h, i), (long long)counts[i]);
    if (counts[nc]) printf("  unlabelled or out of range: %lld\n", (long long)counts[nc]);
    printf("fields:\n");
    for (int i = 0; i < nf; i++) {
        const FieldStat *s = &fs[i];
        printf("  %s (%lld records):", s->name, (long long)s->count);
        for (int k = 0; k < s->nshapes; k++)
            printf(" %s x%lld", tensor_describe(&s->shapes[k], buf, sizeof buf), (long long)s->shape_count[k]);
        if (s->more_shapes) printf(" +%lld with other shapes", (long long)s->more_shapes);
        if (s->nshapes > 1 && s->ndim >= 0) {
            printf("  sizes [");
            for (int d = 0; d < s->ndim; d++)
                if (s->dmin[d] == s->dmax[d]) printf("%s%lld", d ? "," : "", (long long)s->dmin[d]);
                else printf("%s%lld-%lld", d ? "," : "", (long long)s->dmin[d], (long long)s->dmax[d]);
            printf("]");
        }
        /* min/max skip NaN (a field of NaN only has none: min > max, their starting values) */
        if (s->numel && s->min <= s->max)
            printf("  min %.6g max %.6g mean %.6g", s->min, s->max, s->sum / (double)s->numel);
        else if (s->numel) printf("  min nan max nan mean nan");
        putchar('\n');
        if (has_channel_stats(s)) {
            double mean[MAX_CHANNELS], sd[MAX_CHANNELS];
            for (int c = 0; c < s->channels; c++) channel_stat(s, c, &mean[c], &sd[c]);
            printf("    per channel, pixels in [0,1]: mean");
            for (int c = 0; c < s->channels; c++) printf("%s%.4f", c ? "," : " ", mean[c]);
            printf(" std");
            for (int c = 0; c < s->channels; c++) printf("%s%.4f", c ? "," : " ", sd[c]);
            putchar('\n');
        }
    }
    json_t *rl = json_object_get(h->json, "relabel");
    if (json_is_object(rl)) {
        char *s = json_dumps(rl, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("relabel (soft labels for evaltrain --labels): %s\n", s ? s : "");
        free(s);
    }
    printf("history:\n");
    print_history(json_object_get(h->json, "history"), "  ");
    /* the histories of the later inputs whose header differs from the first's (ddpipe-stream(5)) */
    json_t *inputs = json_object_get(h->json, "inputs"), *e;
    size_t i, n = json_array_size(inputs);
    json_array_foreach(inputs, i, e) {
        printf("  later input %zu of %zu (its header differs from the first input's):\n", i + 1, n);
        print_history(json_object_get(e, "history"), "    ");
    }
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    static const struct option lo[] = {{"json", 0, 0, 'J'}, {"list", 0, 0, 'l'}, {"quiet", 0, 0, 'q'},
                                       {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0}};
    int c, json = 0, list = 0, quiet = 0;
    const char *shortopts = "lqh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'J': json = 1; break;
        case 'l': list = 1; break;
        case 'q': quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case 'V': dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (json && list) dd_die(DD_EXIT_USAGE, "--json and --list exclude each other");
    /* the kind is the first operand's; an operand of the other kind, in either order, is a usage error */
    const int weights = optind < argc && is_weights_file(argv[optind]);
    for (int i = optind + 1; i < argc; i++)
        if (is_weights_file(argv[i]) != weights)
            dd_die(DD_EXIT_USAGE, "%s: %s, after %s (tsinfo describes streams or weights files, one kind at a time)",
                   argv[i], weights ? "not a safetensors weights file" : "a safetensors weights file", argv[optind]);
    if (weights) { /* weights files, one summary each */
        for (int i = optind; i < argc; i++) {
            if (i > optind && !json && !list) putchar('\n');
            print_weights(argv[i], json, list, argc - optind > 1);
        }
        if (dd_fflush_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
        return 0;
    }
    TsInput *in = ts_input_open(argc - optind, argv + optind);
    if (!in) dd_die_err(dd_errcode());
    const TsHeader *h = ts_input_header(in);
    const int nc = ts_header_nclasses(h);
    int64_t *counts = dd_calloc((size_t)nc + 1, sizeof *counts), records = 0;
    FieldStat *fs = dd_calloc(MAX_FIELDS, sizeof *fs);
    int nf = 0, r;
    TsRecord rec;
    ts_record_init(&rec);
    DdProgress prog;
    dd_progress_start(&prog, "records", -1, quiet || list);
    while ((r = ts_input_next(in, &rec)) == 1) {
        int64_t lab = ts_record_cget(&rec, "label") ? ts_record_label(&rec) : -1;
        counts[lab >= 0 && lab < nc ? lab : nc]++;
        if (list) {
            char buf[256];
            printf("%lld\t%s\t%lld\t%s\t", (long long)records, rec.key, (long long)lab,
                   lab >= 0 && lab < nc ? ts_header_class(h, (int)lab) : "-");
            for (int f = 0; f < rec.nfields; f++)
                printf("%s%s:%s", f ? " " : "", rec.fields[f].name, tensor_describe(&rec.fields[f].t, buf, sizeof buf));
            if (rec.meta) print_meta(rec.meta);
            putchar('\n');
        }
        records++;
        dd_progress_update(&prog, records);
        if (list) continue;
        for (int f = 0; f < rec.nfields; f++) {
            int k = 0;
            while (k < nf && strcmp(fs[k].name, rec.fields[f].name)) k++;
            if (k == nf) {
                if (nf == MAX_FIELDS) dd_die(DD_EXIT_DATA, "more than %d distinct field names", MAX_FIELDS);
                snprintf(fs[nf].name, sizeof fs[nf].name, "%s", rec.fields[f].name);
                fs[nf].min = INFINITY;
                fs[nf++].max = -INFINITY;
            }
            stat_field(&fs[k], &rec.fields[f].t);
        }
    }
    if (r < 0) dd_die_err(DD_EXIT_DATA);
    dd_progress_end(&prog);
    if (json) print_json(h, records, counts, nc, fs, nf);
    else if (!list) print_text(h, records, counts, nc, fs, nf);
    if (dd_fflush_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
    ts_record_free(&rec);
    ts_input_close(in);
    for (int i = 0; i < nf; i++) {
        free(fs[i].csum);
        free(fs[i].csq);
    }
    free(counts);
    free(fs);
    return 0;
}

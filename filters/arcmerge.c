/* arcmerge.c - FADRM's data residual (ARC, ddpipe-method(7) section 2): for each record x of the input
 * stream, the record of the initial patches P with the same key, P's image resampled bilinearly
 * (align_corners=False, no antialias) to x's size, and out = alpha*x + (1-alpha)*P in float32.
 * x's other fields, key, label and meta pass through. P is read whole (IPC x classes records)
 * and looked up by key; every key must be on both sides. Where both records carry patchsel's
 * provenance (meta "cells"), it must be the same: P is the selection x was recovered from. See
 * arcmerge(1).
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/stream.h"
#include "libcommon/base/base.h"
#include "libcommon/distill/merge.h"

typedef struct {
    TsRecord rec;
    int seen;
} Patch;

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [options] PATCHES [< x]\n"
               "Merge x (stdin) with the initial patches: alpha*x + (1-alpha)*resample(P).\n"
               "  -a, --alpha A      weight of x, in [0,1] (default 0.5)\n"
               "  -x, --input FILE   read x from FILE instead of stdin\n"
               "      --any-source   merge even where x's meta names other source patches\n"
               "  -o, --output FILE  write FILE atomically instead of stdout\n"
               "  -q, --quiet        no progress\n"
               "  -h, --help         this text\n"
               "      --version      version\n", dd_prog());
}

static json_int_t box(json_t *b, size_t i) { return json_integer_value(json_array_get(b, i)); }

/* The first cell source named by a record's meta {"cells":[{"src":KEY,"box":[..]},..]}, for messages. */
static void first_src(json_t *cells, char *buf, size_t len)
{
    json_t *c0 = json_array_get(cells, 0), *b = json_object_get(c0, "box");
    const char *src = json_string_value(json_object_get(c0, "src"));
    snprintf(buf, len, "%s", src ? src : "?");
    if (json_array_size(b) == 4)
        snprintf(buf + strlen(buf), len - strlen(buf), " box [%lld,%lld,%lld,%lld]", (long long)box(b, 0),
                 (long long)box(b, 1), (long long)box(b, 2), (long long)box(b, 3));
}

/* 0 when x and its patch p come from the same selection: patchsel writes each record's sources
 * (meta "cells"), recover, resample and arcmerge pass x's meta through, so where both carry them
 * they must be equal. Records without cells (tsimport, recover --init noise) are not checked.
 * -1 with dd_err naming both first sources: PATCHES is another run's selection (same keys). */
static int check_source(const TsRecord *x, const TsRecord *p, const char *pname)
{
    if (!x->meta || !p->meta) return 0;
    json_t *jx = json_loads(x->meta, 0, NULL), *jp = json_loads(p->meta, 0, NULL);
    json_t *cx = json_object_get(jx, "cells"), *cp = json_object_get(jp, "cells");
    int rc = 0;
    if (cx && cp && !json_equal(cx, cp)) {
        char sx[TS_KEY_MAX + 64], sp[TS_KEY_MAX + 64];
        first_src(cx, sx, sizeof sx);
        first_src(cp, sp, sizeof sp);
        rc = dd_err("recovered from another selection than %s (its first cell: %s; %s's: %s); give the PATCHES "
                    "it was recovered from, or --any-source", pname, sx, pname, sp);
    }
    json_decref(jx);
    json_decref(jp);
    return rc;
}

static int cmp_patch(const void *a, const void *b)
{
    return strcmp(((const Patch *)a)->rec.key, ((const Patch *)b)->rec.key);
}

/* Reads all of P, sorted by key; duplicate keys are an error. */
static Patch *patches_load(TsReader *r, int64_t *n)
{
    Patch *p = NULL;
    int64_t cap = 0;
    int e;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            p = dd_realloc(p, sizeof *p * (size_t)cap);
        }
        ts_record_init(&p[*n].rec);
        p[*n].seen = 0;
        if ((e = ts_reader_next(r, &p[*n].rec)) != 1) break;
        (*n)++;
    }
    ts_record_free(&p[*n].rec);
    if (e < 0) dd_die_err(DD_EXIT_DATA);
    qsort(p, (size_t)*n, sizeof *p, cmp_patch);
    for (int64_t i = 1; i < *n; i++)
        if (!strcmp(p[i].rec.key, p[i - 1].rec.key))
            dd_die(DD_EXIT_DATA, "%s: key %s appears twice", ts_reader_name(r), p[i].rec.key);
    return p;
}

/* x's image (=) alpha*x + (1-alpha)*P through arc_merge, the merge recover's fused schedule uses
 * too (so fused and piped runs agree bit for bit); -1 with dd_err on a shape mismatch. */
/* 1 when the pixels are all finite */
static int finite_pixels(const Tensor *t)
{
    const float *v = t->data;
    for (int64_t i = 0, n = tensor_numel(t); i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

static int merge(TsRecord *x, const Patch *p, double alpha)
{
    /* the same record in both streams: a label that differs means another set's patches */
    const Tensor *lx = ts_record_cget(x, "label"), *lp = ts_record_cget(&p->rec, "label");
    if (lx && lp && lx->dtype == DD_I64 && lp->dtype == DD_I64 && tensor_numel(lx) == 1 && tensor_numel(lp) == 1 &&
        *(const int64_t *)lx->data != *(const int64_t *)lp->data)
        return dd_err("label %lld, the patch's %lld", (long long)*(const int64_t *)lx->data,
                      (long long)*(const int64_t *)lp->data);
    Tensor tx, tp;
    if (ts_record_image_f32(x, &tx) < 0) return -1;
    if (ts_record_image_f32(&p->rec, &tp) < 0) {
        tensor_free(&tx);
        return -1;
    }
    int rc = 0;
    char da[128], db[128];
    /* shapes are described as the records hold them (U8 stays U8), not as converted */
    const Tensor *ox = ts_record_cget(x, "image"), *op = ts_record_cget(&p->rec, "image");
    if (tx.ndim != 3 || tp.ndim != 3) {
        rc = dd_err("image %s, the patch's %s: not [C,H,W]", tensor_describe(ox, da, sizeof da),
                    tensor_describe(op, db, sizeof db));
    } else if (tx.shape[0] != tp.shape[0]) {
        rc = dd_err("image %s does not match the patch's %s (channels)", tensor_describe(ox, da, sizeof da),
                    tensor_describe(op, db, sizeof db));
    } else if (!tensor_numel(&tx) || !tensor_numel(&tp)) {
        rc = dd_err("image %s, the patch's %s: no pixels", tensor_describe(ox, da, sizeof da),
                    tensor_describe(op, db, sizeof db));
    } else if (!finite_pixels(&tx) || !finite_pixels(&tp)) {
        rc = dd_err("%s holds a pixel that is not finite", finite_pixels(&tx) ? "the patch" : "the image");
    } else {
        arc_merge(tx.data, (int)tx.shape[0], (int)tx.shape[1], (int)tx.shape[2], tp.data, (int)tp.shape[1],
                  (int)tp.shape[2], alpha);
        ts_record_set(x, "image", tx);
        tx.owns = 0;
    }
    tensor_free(&tx);
    tensor_free(&tp);
    return rc;
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    enum { O_ANY = 256 };
    static const struct option lo[] = {
        {"alpha", 1, 0, 'a'}, {"input", 1, 0, 'x'}, {"any-source", 0, 0, O_ANY}, {"output", 1, 0, 'o'},
        {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0}};
    const char *xname = "-", *output = "-";
    double alpha = 0.5;
    int c, quiet = 0, any_source = 0;
    const char *shortopts = "a:x:o:qh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'a': alpha = dd_opt_double("--alpha", optarg, 0, 1); break;
        case 'x': xname = optarg; break;
        case O_ANY: any_source = 1; break;
        case 'o': output = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case 'V': dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (argc - optind != 1) dd_die(DD_EXIT_USAGE, "want exactly one PATCHES file (try --help)");
    const char *pname = argv[optind];
    if (!strcmp(pname, "-") && !strcmp(xname, "-")) dd_die(DD_EXIT_USAGE, "x and PATCHES cannot both be stdin");
    if (!strcmp(output, "-")) dd_refuse_tty_stdout();

    TsReader *pr = ts_reader_open(pname);
    if (!pr) dd_die_err(DD_EXIT_DATA);
    int64_t np;
    Patch *P = patches_load(pr, &np);
    TsReader *xr = ts_reader_open(xname);
    if (!xr) dd_die_err(DD_EXIT_DATA);
    xname = ts_reader_name(xr);
    if (ts_header_classes_check(ts_reader_header(xr), xname, ts_reader_header(pr), pname) < 0)
        dd_die_err(DD_EXIT_DATA);
    TsHeader *h = ts_header_copy(ts_reader_header(xr));
    json_t *params = json_pack("{s:f}", "alpha", alpha);
    ts_header_add_history(h, argc, argv, -1, params);
    json_decref(params);
    TsWriter *w = ts_writer_open(output, h);
    if (!w) dd_die_err(DD_EXIT_DATA);

    /* The reference computes alpha*x + (1-alpha)*P with both scalars cast to float32. */
    TsRecord rec;
    ts_record_init(&rec);
    DdProgress prog;
    dd_progress_start(&prog, "records", -1, quiet);
    int r;
    while ((r = ts_reader_next(xr, &rec)) == 1) {
        int64_t idx = ts_reader_index(xr) - 1;
        Patch key, *p;
        memcpy(key.rec.key, rec.key, sizeof rec.key);
        if (!(p = bsearch(&key, P, (size_t)np, sizeof *P, cmp_patch))) {
            dd_err("%s: record %lld (%s): key not in %s", xname, (long long)idx, rec.key, pname);
            r = -1;
        } else if (p->seen++) {
            dd_err("%s: record %lld (%s): key appears twice", xname, (long long)idx, rec.key);
            r = -1;
        } else if ((!any_source && check_source(&rec, &p->rec, pname) < 0) ||
                   merge(&rec, p, alpha) < 0) {
            dd_err_prefix("%s: record %lld (%s)", xname, (long long)idx, rec.key);
            r = -1;
        } else if (ts_writer_put(w, &rec) < 0) {
            r = -1;
        }
        if (r < 0) break;
        dd_progress_update(&prog, idx + 1);
    }
    dd_progress_end(&prog);
    int64_t unseen = 0, first = -1;
    for (int64_t i = 0; r == 0 && i < np; i++)
        if (!P[i].seen && unseen++ == 0) first = i;
    if (unseen) r = dd_err("%s: %lld key(s) never seen in %s, first %s", pname, (long long)unseen, xname,
                           P[first].rec.key);
    if (r < 0) {
        ts_writer_abort(w);
        dd_die_err(DD_EXIT_DATA);
    }
    if (ts_writer_close(w) < 0) dd_die_err(DD_EXIT_DATA);
    for (int64_t i = 0; i < np; i++) ts_record_free(&P[i].rec);
    free(P);
    ts_record_free(&rec);
    ts_reader_close(xr);
    ts_reader_close(pr);
    ts_header_free(h);
    return 0;
}

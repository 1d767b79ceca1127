/* patchsel.c - RDED patch selection (ddpipe-method(7) section 1), FADRM's initial patches: per class a
 * seeded subset of candidates, K random square crops each scored by the teacher on a mean-coloured
 * canvas, the best crop per image, the best IPC*f^2 per class stitched f x f in rank order.
 * `--method random` picks whole real images instead (the sanity baseline). Images of several sizes
 * (an ImageFolder import) are cropped at their own sizes and scored on a --res canvas (default: the
 * teacher's input size). See patchsel(1).
 *
 * The input is read twice (labels first, then the candidates), so stdin is spooled to an unlinked
 * temporary file, and so are named pipes and <(...) operands (ts_spool_path). Classes are written in label order as soon as their candidates are all scored;
 * classes of the header with no records (a tscat --classes slice) are skipped silently.
 *
 * A class's draws (subset, crop boxes) are keyed by the class and indices within the class, so its
 * output depends only on its own records (in input order) and the seed: class-sharded runs merged
 * with tscat equal the unsharded run.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "formats/stream.h"
#include "libcommon/base/base.h"
#include "libcommon/distill/select.h"

enum { MAX_IPC = 16 };

typedef struct {
    int nipc, ipc[MAX_IPC], maxipc;   /* --ipc / --ipc-list, ascending */
    int candidates, crops, factor, res, batch, random, quiet, threads;
    uint64_t seed;
    const char *weights, *output, *device, *precision;
} Opts;

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s -w TEACHER [--ipc N | --ipc-list A,B,.. -o PATTERN] [options] [file...]\n"
               "       %s --method random [--ipc N] [options] [file...]\n"
               "RDED patch selection: the best-scored random crops per class, stitched f x f.\n"
               "  -w, --weights FILE     teacher (safetensors); not with --method random\n"
               "  -i, --ipc N            images per class (default 10)\n"
               "  -I, --ipc-list A,B,..  several IPCs from one selection; -o PATTERN with %%d gets each\n"
               "  -n, --candidates N     candidate images per class (default 300)\n"
               "  -k, --crops K          random square crops per candidate (default 5)\n"
               "  -f, --factor F         1 or 2 cells per side (default 2 from 128 px, else 1)\n"
               "      --res R            canvas and output side (default: the images' size, or\n"
               "                         the teacher's input size when the images' sizes differ)\n"
               "  -M, --method M         rded (default) | random (whole random real images)\n"
               "  -b, --batch N          canvases per teacher forward (default 250)\n"
               "  -s, --seed S           seed (default 0)\n"
               "  -o, --output FILE      write FILE atomically instead of stdout\n"
               "  -d, --device D         cpu | cuda | auto (default cpu)\n"
               "      --precision P      fp32 | fp16 | bf16: conv/linear math with -d cuda\n"
               "  -j, --threads N        worker threads\n"
               "  -q, --quiet            no progress\n"
               "  -h, --help             this text\n"
               "      --version          version\n", dd_prog(), dd_prog());
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static void parse(int argc, char **argv, Opts *o)
{
    enum { O_PREC = 256, O_RES };
    static const struct option lo[] = {
        {"weights", 1, 0, 'w'}, {"ipc", 1, 0, 'i'}, {"ipc-list", 1, 0, 'I'}, {"candidates", 1, 0, 'n'},
        {"crops", 1, 0, 'k'}, {"factor", 1, 0, 'f'}, {"method", 1, 0, 'M'}, {"batch", 1, 0, 'b'},
        {"seed", 1, 0, 's'}, {"output", 1, 0, 'o'}, {"device", 1, 0, 'd'}, {"precision", 1, 0, O_PREC},
        {"threads", 1, 0, 'j'}, {"quiet", 0, 0, 'q'}, {"res", 1, 0, O_RES}, {"help", 0, 0, 'h'},
        {"version", 0, 0, 'V'}, {0}};
    *o = (Opts){.nipc = 1, .ipc = {10}, .candidates = 300, .crops = 5, .batch = 250, .output = "-",
                .device = "cpu", .precision = "fp32"};
    long l[MAX_IPC];
    int c, list = 0, one = 0, scoring = 0; /* scoring: an option of RDED's scoring given */
    const char *shortopts = "w:i:I:n:k:f:M:b:s:o:d:j:qh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'w': o->weights = optarg; break;
        case 'i': o->nipc = 1; o->ipc[0] = (int)dd_opt_long("--ipc", optarg, 1, 9999), one = 1; break;
        case 'I':
            list = 1;
            o->nipc = dd_opt_long_list("--ipc-list", optarg, l, MAX_IPC, 1, 9999);
            for (int i = 0; i < o->nipc; i++) o->ipc[i] = (int)l[i];
            break;
        case 'n': o->candidates = (int)dd_opt_long("--candidates", optarg, 1, 1 << 24), scoring = 1; break;
        case 'k': o->crops = (int)dd_opt_long("--crops", optarg, 1, 1000), scoring = 1; break;
        case 'f': o->factor = (int)dd_opt_long("--factor", optarg, 1, 2); break;
        case O_RES: o->res = (int)dd_opt_long("--res", optarg, 1, 65536); break;
        case 'M':
            if (!strcmp(optarg, "random")) o->random = 1;
            else if (strcmp(optarg, "rded")) dd_die(DD_EXIT_USAGE, "--method: want rded or random, not '%s'", optarg);
            break;
        case 'b': o->batch = (int)dd_opt_long("--batch", optarg, 1, 1 << 20), scoring = 1; break;
        case 's': o->seed = (uint64_t)dd_opt_long("--seed", optarg, 0, INT64_MAX); break;
        case 'o': o->output = optarg; break;
        case 'd': o->device = optarg; break;
        case O_PREC: o->precision = optarg; break;
        case 'j': o->threads = (int)dd_opt_long("--threads", optarg, 1, DD_MAX_THREADS); break;
        case 'q': o->quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case 'V': dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (one && list) dd_die(DD_EXIT_USAGE, "--ipc and --ipc-list exclude each other");
    qsort(o->ipc, (size_t)o->nipc, sizeof *o->ipc, cmp_int);
    for (int i = 1; i < o->nipc; i++)
        if (o->ipc[i] == o->ipc[i - 1]) dd_die(DD_EXIT_USAGE, "--ipc-list: %d given twice", o->ipc[i]);
    o->maxipc = o->ipc[o->nipc - 1];
    nn_check_device_opts(o->device, o->precision);
    if (!o->weights && !o->random) dd_die(DD_EXIT_USAGE, "a teacher is needed: -w FILE (try --help)");
    const char *pc = strchr(o->output, '%');
    if (pc && (pc[1] != 'd' || strchr(pc + 1, '%')))
        dd_die(DD_EXIT_USAGE, "-o: a pattern holds one %%d and no other %% (got '%s')", o->output);
    if (list && !strstr(o->output, "%d"))
        dd_die(DD_EXIT_USAGE, "--ipc-list writes one stream per IPC: give -o PATTERN containing %%d");
    if (!list && strstr(o->output, "%d")) dd_die(DD_EXIT_USAGE, "-o PATTERN with %%d needs --ipc-list");
    dd_refuse_same("-o", o->output, "the teacher -w", o->weights);
    if (o->random && o->factor > 1) dd_die(DD_EXIT_USAGE, "--method random takes whole images: no --factor");
    if (o->random && (scoring || o->weights))
        dd_die(DD_EXIT_USAGE, "--method random scores nothing: no -w, --candidates, --crops or --batch");
    if (!strcmp(o->output, "-")) dd_refuse_tty_stdout();
}

/* The teacher, frozen, on the context of -d (made here). */
static Model *load_teacher(const Opts *o, Nn **nn)
{
    if (!(*nn = nn_open(o->device, o->threads))) dd_die_err(dd_errcode());
    nn_use_precision(*nn, o->precision);
    Model *m = model_load(*nn, o->weights);
    if (!m) dd_die_err(DD_EXIT_DATA);
    model_set_requires_grad(m, 0);
    return m;
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    Opts o;
    parse(argc, argv, &o);
    int nfiles = argc - optind, spool = 0;
    char **files = argv + optind, *dash[] = {"-"};
    if (nfiles == 0) nfiles = 1, files = dash;
    for (int i = 0; i < nfiles; i++) spool |= !strcmp(files[i], "-"); /* stdin, alone or not */
    if (spool && ts_stdin_spool() < 0) dd_die_err(DD_EXIT_DATA);
    for (int i = 0; i < nfiles; i++) /* named pipes and <(...): copied once, as stdin */
        if (ts_spool_path(files[i]) < 0) dd_die_err(DD_EXIT_DATA);
    /* The input as messages about the whole of it name it */
    char iname[4096];
    const char *first = strcmp(files[0], "-") ? files[0] : "stdin";
    if (nfiles > 1) snprintf(iname, sizeof iname, "%s and %d more input(s)", first, nfiles - 1);
    else snprintf(iname, sizeof iname, "%s", first);

    /* Pass 1: labels and the image shape. */
    TsInput *in = ts_input_open(nfiles, files);
    if (!in) dd_die_err(dd_errcode());
    TsHeader *h = ts_header_copy(ts_input_header(in));
    SelPlan pl;
    if (sel_plan_scan(in, &pl) < 0) dd_die_err(DD_EXIT_DATA);
    ts_input_close(in);
    if (pl.n == 0) dd_die(DD_EXIT_DATA, "%s: no records", iname);
    const int ncls = pl.ncls, C = pl.C, H = pl.H, W = pl.W, varied = pl.varied;
    const int64_t *count = pl.count;

    if (varied && o.random && !o.res)
        dd_die(DD_EXIT_USAGE, "%s: images of several sizes: --method random keeps whole images, so give "
               "--res R (each resized, shorter side to R, and centre-cropped) or resample them first", iname);
    /* The canvas: the images' size when they share one, else --res or the teacher's input size
     * (each image is then cropped at its own size, as the reference crops the original images;
     * only then is the teacher loaded before the shortfall checks below). */
    Nn *nn = NULL;
    Model *m = NULL;
    int res = o.res;
    if (varied && !res) {
        m = load_teacher(&o, &nn);
        if ((res = m->input_size) < 1)
            dd_die(DD_EXIT_USAGE, "%s: images of several sizes and %s does not record its input size: "
                   "give --res", iname, o.weights);
    }
    const int CH = res ? res : H, CW = res ? res : W;
    int f = o.random ? 1 : o.factor ? o.factor : (CH >= 128 && CW >= 128 ? 2 : 1);
    int side = (CH < CW ? CH : CW) / f;
    /* a cell of no pixel (--factor 2 on a 1-px side; the default factor is 2 from 128 px only)
     * would be scored as empty images, all alike */
    if (side < 1) dd_die(DD_EXIT_USAGE, "%s: --factor %d on a %dx%d canvas: cells of 0 pixels", iname, f, CH, CW);
    /* Each candidate gives one entry (its best crop), and a class's candidates are its first
     * min(records, want) in a seeded order: a shortfall is known now, before the teacher loads,
     * anything is scored or a byte is written. */
    const int64_t want = o.random ? o.maxipc : o.candidates, need = (int64_t)o.maxipc * f * f;
    char cells[64] = "";
    if (f > 1) snprintf(cells, sizeof cells, " (%dx%d cells per image; see --factor)", f, f);
    for (int c = 0; c < ncls; c++) {
        const int64_t k = count[c] < want ? count[c] : want;
        if (k && k < need && k == want)
            dd_die(DD_EXIT_USAGE, "--candidates %lld: IPC %d needs %lld candidate images per class%s",
                   (long long)want, o.maxipc, (long long)need, cells);
        if (k && k < need)
            dd_die(DD_EXIT_DATA, "%s: class %d (%s) has %lld image(s): IPC %d needs %lld%s",
                   iname, c, ts_header_class(h, c), (long long)k, o.maxipc,
                   (long long)need, cells);
    }
    SelScorer *sc = NULL;
    SelTop *rtop = NULL;
    const int keep = o.maxipc * f * f;
    if (o.random) {
        rtop = dd_calloc((size_t)ncls, sizeof *rtop);
        for (int c = 0; c < ncls; c++) sel_top_init(&rtop[c], keep);
    } else {
        if (!m) m = load_teacher(&o, &nn);
        if (model_check_classes(m, o.weights, h, "the input") < 0) dd_die_err(DD_EXIT_DATA);
        sc = sel_scorer_new(m, nn, ncls, keep, o.crops, side, o.batch, o.seed);
        if (res && sel_scorer_canvas(sc, C, CH, CW) < 0)
            dd_die(DD_EXIT_DATA, "%s: %s", o.weights, dd_errmsg());
    }

    /* The subsets. A class without records (a slice of the input) has an empty subset: it is done
     * from the start and writes nothing. */
    sel_plan_subsets(&pl, o.seed, want);
    /* static: a root LeakSanitizer sees when a dd_die in the loop exits (a local is dead after a
     * noreturn call, and its register may be reused before exit's leak check) */
    static char *done;
    done = dd_calloc((size_t)ncls, 1);
    for (int c = 0; c < ncls; c++) done[c] = pl.last[c] < 0;

    /* Writers: one per IPC. */
    json_t *params = json_pack("{s:s,s:i,s:i,s:i,s:i,s:s?}", "method", o.random ? "random" : "rded", "candidates",
                               o.candidates, "crops", o.crops, "factor", f, "side", side, "weights", o.weights);
    json_t *ipcs = json_array();
    for (int k = 0; k < o.nipc; k++) json_array_append_new(ipcs, json_integer(o.ipc[k]));
    json_object_set_new(params, "ipc", ipcs);
    if (nn && nn_precision(nn) != NN_FP32)
        json_object_set_new(params, "precision", json_string(nn_precision_name(nn_precision(nn))));
    if (res) json_object_set_new(params, "res", json_integer(res));
    ts_header_add_history(h, argc, argv, (int64_t)o.seed, params);
    json_decref(params);
    TsWriter *w[MAX_IPC];
    for (int k = 0; k < o.nipc; k++) {
        char path[4096];
        if (strstr(o.output, "%d")) snprintf(path, sizeof path, o.output, o.ipc[k]);
        else snprintf(path, sizeof path, "%s", o.output);
        if (!(w[k] = ts_writer_open(path, h))) dd_die_err(DD_EXIT_DATA);
    }

    /* Pass 2: candidates, scored as they come; classes written in label order once complete. */
    if (spool && ts_stdin_rewind() < 0) dd_die_err(DD_EXIT_DATA);
    if (!(in = ts_input_open(nfiles, files))) dd_die_err(dd_errcode());
    const SelLayout lay = {.C = C, .f = f, .side = side, .whole = o.random, .h = CH, .w = CW};
    int next = 0, r;
    TsRecord rec;
    ts_record_init(&rec);
    DdProgress prog;
    dd_progress_start(&prog, "records", pl.n, o.quiet);
    for (int64_t p = 0; (r = ts_input_next(in, &rec)) == 1; p++) {
        if (p >= pl.n || ts_record_label(&rec) != pl.label[p])
            dd_die(DD_EXIT_DATA, "%s: the input changed between the two passes", ts_input_name(in));
        const int c = pl.label[p];
        if (pl.role[p] >= 0) {
            Tensor im;
            if (ts_record_image_f32(&rec, &im) < 0 || ts_image_finite(&im) < 0)
                dd_die(DD_EXIT_DATA, "%s: record %lld (%s): %s", ts_input_name(in), (long long)ts_input_index(in),
                       rec.key, dd_errmsg());
            int bad = im.shape[0] != C || (!res && (im.shape[1] != H || im.shape[2] != W));
            if (!bad && o.random) {
                sel_top_offer_whole(&rtop[c], pl.role[p], pl.within[p], rec.key, &im, res);
            } else if (!bad && sel_scorer_add(sc, ts_input_name(in), ts_input_index(in), pl.within[p], rec.key, c,
                                              im.data, C, (int)im.shape[1], (int)im.shape[2]) < 0) {
                dd_die_err(DD_EXIT_DATA); /* naming its record: this one, or a queued one */
            }
            tensor_free(&im);
            if (bad)
                dd_die(DD_EXIT_DATA, "%s: record %lld (%s): image shape differs from the first record's [%d,%d,%d]",
                       ts_input_name(in), (long long)ts_input_index(in), rec.key, C, H, W);
            if (p == pl.last[c]) {
                if (sc && sel_scorer_flush(sc) < 0) dd_die_err(DD_EXIT_DATA);
                done[c] = 1;
                for (; next < ncls && done[next]; next++) {
                    SelTop *t = o.random ? &rtop[next] : sel_scorer_top(sc, next);
                    if (!count[next]) sel_top_free(t);
                    else if (sel_write_class(w, o.ipc, o.nipc, t, next, &lay) < 0) dd_die_err(DD_EXIT_DATA);
                }
            }
        }
        dd_progress_update(&prog, p + 1);
    }
    dd_progress_end(&prog);
    if (r < 0) dd_die_err(DD_EXIT_DATA);
    if (next < ncls) dd_die(DD_EXIT_DATA, "%s: the input changed between the two passes", iname);
    for (int k = 0; k < o.nipc; k++) /* every --ipc-list stream whole before any is renamed into place */
        if (ts_writer_finish(w[k]) < 0) dd_die_err(DD_EXIT_DATA);
    for (int k = 0; k < o.nipc; k++)
        if (ts_writer_close(w[k]) < 0) dd_die_err(DD_EXIT_DATA);

    ts_input_close(in);
    ts_record_free(&rec);
    sel_scorer_free(sc);
    free(rtop);
    model_free(m);
    nn_free(nn);
    free(done);
    sel_plan_free(&pl);
    ts_header_free(h);
    return 0;
}

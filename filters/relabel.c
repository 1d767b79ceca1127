/* relabel.c - FKD soft labels for a (distilled) training stream (ddpipe-method(7) section 3): the replay
 * stream evaltrain --labels reads, one record per (epoch, batch), or with --static INFER's one soft
 * label per image added to the input records. The algorithm is libcommon/distill/relabel; this main
 * parses options, loads the teachers, reads the images and wires the output. See relabel(1).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/stream.h"
#include "libcommon/distill/relabel.h"

enum { MAX_TEACHERS = 16 };

typedef struct {
    const char *w[MAX_TEACHERS], *device, *precision, *output;
    int nw, stat, bn_set, quiet, verbose, threads;
    RelabelConf c;
} Opts;

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s -w TEACHER [-w TEACHER...] [--epochs N] [--batch B] [options] [file...]\n"
               "       %s --static -w TEACHER [-w TEACHER...] [options] [file...]\n"
               "FKD soft labels (crops, flips, CutMix, teacher logits per epoch and batch) for\n"
               "evaltrain --labels; stream on stdout.\n"
               "  -w, --weights FILE   teacher; several: the mean of their logits\n"
               "  -e, --epochs N       epochs of labels (default 300)\n"
               "  -b, --batch B        batch size (default 10 for 10-class data, else 16)\n"
               "      --bn MODE        teacher BN: batch (train mode on each half batch, the\n"
               "                       reference's BSSL; default) or eval (running statistics)\n"
               "      --static         INFER: one label per un-augmented image (eval mode), added\n"
               "                       to each input record as field 'soft' F32 [K]\n"
               "  -k, --topk K         keep the K largest logits per row (see relabel(1))\n"
               "  -s, --seed S         seed (default 0)\n"
               "  -o, --output FILE    write FILE atomically instead of stdout\n"
               "  -d, --device D       cpu | cuda | auto (default cpu)\n"
               "      --precision P    fp32 | fp16 | bf16: conv/linear math with -d cuda\n"
               "  -j, --threads N      worker threads\n"
               "  -q, --quiet          no progress\n"
               "  -v, --verbose        print the label storage per image and epoch\n"
               "  -h, --help           this text\n"
               "      --version        version\n", dd_prog(), dd_prog());
}

static void parse(int argc, char **argv, Opts *o)
{
    enum { O_BN = 256, O_STATIC, O_PREC };
    static const struct option lo[] = {
        {"weights", 1, 0, 'w'}, {"epochs", 1, 0, 'e'}, {"batch", 1, 0, 'b'}, {"bn", 1, 0, O_BN},
        {"static", 0, 0, O_STATIC}, {"topk", 1, 0, 'k'}, {"seed", 1, 0, 's'}, {"output", 1, 0, 'o'},
        {"device", 1, 0, 'd'}, {"precision", 1, 0, O_PREC}, {"threads", 1, 0, 'j'}, {"quiet", 0, 0, 'q'}, {"verbose", 0, 0, 'v'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0}};
    *o = (Opts){.device = "cpu", .precision = "fp32", .output = "-", .c = {.epochs = 300}};
    int c, trained = 0;
    const char *shortopts = "w:e:b:k:s:o:d:j:qvh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'w':
            if (o->nw == MAX_TEACHERS) dd_die(DD_EXIT_USAGE, "at most %d teachers", MAX_TEACHERS);
            o->w[o->nw++] = optarg;
            break;
        case 'e': o->c.epochs = (int)dd_opt_long("--epochs", optarg, 1, 1 << 20); trained = 1; break;
        case 'b': o->c.batch = (int)dd_opt_long("--batch", optarg, 1, 65536); trained = 1; break;
        case O_BN:
            if (!strcmp(optarg, "batch")) o->c.bn = RELABEL_BN_BATCH;
            else if (!strcmp(optarg, "eval")) o->c.bn = RELABEL_BN_EVAL;
            else dd_die(DD_EXIT_USAGE, "--bn: want batch or eval, not '%s'", optarg);
            o->bn_set = 1;
            break;
        case O_STATIC: o->stat = 1; break;
        case 'k': o->c.topk = (int)dd_opt_long("--topk", optarg, 1, 1 << 20); trained = 1; break;
        case 's': o->c.seed = (uint64_t)dd_opt_long("--seed", optarg, 0, INT64_MAX); break;
        case 'o': o->output = optarg; break;
        case 'd': o->device = optarg; break;
        case O_PREC: o->precision = optarg; break;
        case 'j': o->threads = (int)dd_opt_long("--threads", optarg, 1, DD_MAX_THREADS); break;
        case 'q': o->quiet = 1; break;
        case 'v': o->verbose = 1; break;
        case 'h': dd_help_exit(usage);
        case 'V': dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (!o->nw) dd_die(DD_EXIT_USAGE, "a teacher is needed: -w FILE (try --help)");
    nn_check_device_opts(o->device, o->precision);
    if (o->stat && o->bn_set && o->c.bn == RELABEL_BN_BATCH)
        dd_die(DD_EXIT_USAGE, "--static labels are eval-mode (INFER): --bn batch does not apply");
    if (o->stat && (trained || o->verbose))
        dd_die(DD_EXIT_USAGE, "--static takes no --epochs, --batch, --topk or -v (which reports the FKD stream's size)");
    if (!strcmp(o->output, "-")) dd_refuse_tty_stdout();
    for (int k = 0; k < o->nw; k++) dd_refuse_same("-o", o->output, "the teacher -w", o->w[k]);
}

/* Reads every record of `in` into recs (grown), their images as F32 into *x [n,C,H,W]; labels in
 * [0, K), images finite. */
static TsRecord *read_records(TsInput *in, int K, int64_t *n, float **x, int *C, int *H, int *W)
{
    int64_t cap = 64;
    size_t img = 0;
    TsRecord *recs = dd_malloc((size_t)cap * sizeof *recs);
    *x = NULL;
    for (*n = 0;; ++*n) {
        if (*n == cap) recs = dd_realloc(recs, (size_t)(cap *= 2) * sizeof *recs);
        ts_record_init(&recs[*n]);
        int r = ts_input_next(in, &recs[*n]);
        if (r != 1) {
            ts_record_free(&recs[*n]);
            if (r < 0) dd_die_err(DD_EXIT_DATA);
            return recs;
        }
        Tensor im;
        char d[128];
        int64_t y = ts_record_label(&recs[*n]);
        if (y >= K) dd_err("label %lld outside the %d classes", (long long)y, K);
        if (y < 0 || y >= K || ts_record_image_f32(&recs[*n], &im) < 0 || ts_image_finite(&im) < 0)
            dd_die(DD_EXIT_DATA, "%s: record %lld (%s): %s", ts_input_name(in), (long long)ts_input_index(in),
                   recs[*n].key, dd_errmsg());
        if (*n == 0 && im.ndim == 3) {
            *C = (int)im.shape[0], *H = (int)im.shape[1], *W = (int)im.shape[2];
            img = (size_t)*C * *H * *W;
        }
        if (im.ndim != 3 || im.shape[0] != *C || im.shape[1] != *H || im.shape[2] != *W)
            dd_die(DD_EXIT_DATA, "%s: record %lld (%s): image %s is not [C,H,W] like the first record's",
                   ts_input_name(in), (long long)ts_input_index(in), recs[*n].key,
                   tensor_describe(ts_record_cget(&recs[*n], "image"), d, sizeof d));
        if ((*n & (*n - 1)) == 0) *x = dd_realloc(*x, (size_t)(*n ? 2 * *n : 1) * img * sizeof **x);
        memcpy(*x + (size_t)*n * img, im.data, img * sizeof **x);
        tensor_free(&im);
    }
}

/* The size of the finished output when it is a regular file, else -1. */
static long long output_size(const char *path)
{
    struct stat st;
    int r = strcmp(path, "-") ? stat(path, &st) : fstat(STDOUT_FILENO, &st);
    return r == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : -1;
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    Opts o;
    parse(argc, argv, &o);
    Nn *nn = nn_open(o.device, o.threads);
    if (!nn) dd_die_err(dd_errcode());
    nn_use_precision(nn, o.precision);
    Model *t[MAX_TEACHERS];
    for (int k = 0; k < o.nw; k++) {
        if (!(t[k] = model_load(nn, o.w[k]))) dd_die_err(DD_EXIT_DATA);
        model_set_requires_grad(t[k], 0);
    }
    TsInput *in = ts_input_open(argc - optind, argv + optind);
    if (!in) dd_die_err(dd_errcode());
    TsHeader *h = ts_header_copy(ts_input_header(in));
    const int K = ts_header_nclasses(h);

    TrainData d = {0};
    TsRecord *recs = NULL;
    int64_t n = 0;
    float *x = NULL;
    int C = 0, H = 0, W = 0;
    if (o.stat) {
        recs = read_records(in, K, &n, &x, &C, &H, &W);
    } else {
        if (train_data_read(in, &(TrainDataOpts){0}, &d) < 0) dd_die_err(DD_EXIT_DATA);
        n = d.n, C = d.C, H = d.H, W = d.W;
    }
    if (n == 0) dd_die(DD_EXIT_DATA, "%s: no records", ts_input_name(in));
    const char *dname = ts_input_name(in);
    for (int k = 0; k < o.nw; k++)
        if (relabel_check_teacher(t[k], o.w[k], h, dname, C, H, W) < 0) dd_die_err(DD_EXIT_DATA);

    if (!o.c.batch) o.c.batch = K == 10 ? 10 : 16;
    if (o.c.topk >= K) o.c.topk = 0;
    json_t *tw = json_array();
    for (int k = 0; k < o.nw; k++) json_array_append_new(tw, json_string(o.w[k]));
    json_t *params = o.stat ? json_pack("{s:s,s:s,s:o}", "labels", "static", "bn", "eval", "teachers", tw)
                            : json_pack("{s:s,s:i,s:i,s:s,s:i,s:o}", "labels", "fkd", "epochs", o.c.epochs, "batch",
                                        o.c.batch, "bn", o.c.bn == RELABEL_BN_BATCH ? "batch" : "eval", "topk",
                                        o.c.topk, "teachers", tw);
    if (nn_precision(nn) != NN_FP32)
        json_object_set_new(params, "precision", json_string(nn_precision_name(nn_precision(nn))));
    ts_header_add_history(h, argc, argv, (int64_t)o.c.seed, params);
    json_decref(params);
    if (!o.stat)
        train_replay_header_set(h, &(TrainReplayInfo){.images = n, .epochs = o.c.epochs, .batch = o.c.batch,
                                                      .H = H, .W = W, .has_digest = 1,
                                                      .digest = train_data_digest(&d)});
    TsWriter *w = ts_writer_open(o.output, h);
    if (!w) dd_die_err(DD_EXIT_DATA);

    int rc = 0;
    if (o.stat) {
        float *soft = dd_malloc((size_t)n * (size_t)K * sizeof *soft);
        int64_t bad = -1;
        rc = relabel_static(nn, t, o.nw, x, n, C, H, W, soft, &bad);
        if (rc < 0 && bad >= 0 && bad < n) dd_err_prefix("%s: record %lld (%s)", dname, (long long)bad, recs[bad].key);
        for (int64_t i = 0; i < n && !rc; i++) {
            Tensor s = tensor_newv(DD_F32, 1, (int64_t)K);
            memcpy(s.data, soft + i * K, (size_t)K * sizeof *soft);
            ts_record_set(&recs[i], "soft", s);
            rc = ts_writer_put(w, &recs[i]);
        }
        free(soft);
    } else {
        DdProgress prog;
        dd_progress_start(&prog, "batches", (int64_t)o.c.epochs * ((n + o.c.batch - 1) / o.c.batch), o.quiet);
        o.c.input = dname;
        rc = relabel_run(nn, t, o.nw, &o.c, &d, w, &prog);
        dd_progress_end(&prog);
    }
    if (rc < 0) {
        ts_writer_abort(w);
        dd_die_err(dd_errcode());
    }
    if (ts_writer_close(w) < 0) dd_die_err(DD_EXIT_DATA);
    if (o.verbose && !o.stat) {
        long long size = output_size(o.output);
        fprintf(stderr, "%s: %lld images x %d epochs, batch %d, %d classes: %.1f bytes per image per epoch "
                        "(index 8, crops 16, flip 1, perm 8, lam+box 20/batch, %s)", dd_prog(), (long long)n,
                o.c.epochs, o.c.batch, K, relabel_payload_bytes(K, o.c.topk, o.c.batch),
                o.c.topk ? "top-k values, indexes, rest" : "logits 2*K");
        if (size >= 0) fprintf(stderr, "; %.1f with the stream's framing", (double)size / ((double)n * o.c.epochs));
        fputc('\n', stderr);
    }

    for (int64_t i = 0; recs && i < n; i++) ts_record_free(&recs[i]);
    free(recs);
    free(x);
    train_data_free(&d);
    ts_input_close(in);
    ts_header_free(h);
    for (int k = 0; k < o.nw; k++) model_free(t[k]);
    nn_free(nn);
    return 0;
}

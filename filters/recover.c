/* recover.c - SRe2L / SRe2L++ / FADRM / FADRM+ recover (ddpipe-method(7) section 2): optimise the input
 * images (or noise) against frozen teachers, in one fused run (--iters, --arc) or one piece of the
 * schedule (--steps START:END:TOTAL) for pipes with arcmerge; or INFER's compensators (--ufc,
 * ddpipe-method(7) section 5): per batch and teacher one perturbation shared by the batch's images. The
 * loops, and the records and batches (one image per class, same ipc index) they run over, are
 * libcommon/distill/recover (RecSet); this main resolves the options against the input, wires them
 * and writes the result in input order (--ufc: the inputs, then their compensated copies teacher by
 * teacher). See recover(1).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/stream.h"
#include "libcommon/distill/recover.h"


enum { MAX_TEACHERS = REC_MAX_TEACHERS };

typedef struct {
    const char *w[MAX_TEACHERS], *device, *precision, *output, *metrics;
    int nw, arc, nsizes, sizes[REC_MAX_STAGES], batch, jitter, noise, ipc, quiet, threads, piece;
    int ufc, aug, alpha_set, rbn_set, iters_set, ipc_set;     /* aug: -1 = the mode's default */
    int print_sizes;
    int64_t iters, s0, s1, stot;
    const char *committee;       /* --committee as given, or NULL (round robin) */
    double ctemp, cw[MAX_TEACHERS];
    int ctemp_set;
    RecConf c;
} Opts;

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s -w TEACHER [-w TEACHER...] [--iters N --arc K | --steps S:E:T] [options] [file...]\n"
               "       %s -w TEACHER --init noise --ipc N [options]\n"
               "       %s --ufc -w TEACHER [-w TEACHER...] [--iters N] [options] [file...]\n"
               "Optimise images against frozen teachers (SRe2L/FADRM recover); stream on stdout.\n"
               "  -w, --weights FILE       teacher; several: round robin by step (FADRM+)\n"
               "      --committee W        several teachers at every step, the loss summed with\n"
               "                           weights W: equal (1/M each), W1,..,WM (-w order), or\n"
               "                           prior:A1,..,AM (softmax of A/T; CV-DD)\n"
               "      --committee-temp T   T of prior: (default 5)\n"
               "  -t, --iters N            fused run of N steps (default 2000)\n"
               "  -a, --arc K              K residual merges, K+1 stages (default 3; 0 = SRe2L++)\n"
               "  -A, --alpha A            merge weight of x (default 0.5)\n"
               "  -S, --sizes A,B,..       stage sizes (default 200,224,200,224 for 224-px data\n"
               "                           with 4 stages where every teacher takes 200 px, else\n"
               "                           the input's)\n"
               "      --print-sizes        print the fused run's stage sizes (A,B,..; an empty\n"
               "                           line at the input's size throughout) and exit: what a\n"
               "                           pipe of --steps pieces resamples to\n"
               "  -p, --steps S:E:T        run one piece, steps [S,E) of T, at the input size\n"
               "  -i, --init noise         start from N(0,1) noise in normalized space (SRe2L)\n"
               "  -n, --ipc N              images per class with --init noise (default 10)\n"
               "  -b, --batch B            classes per batch (default min(classes, 100); --ufc:\n"
               "                           every class, INFER's P^k)\n"
               "      --lr LR              Adam learning rate (default 0.25)\n"
               "      --r-bn R             BN statistics weight (default 0.01)\n"
               "      --first-bn-mult M    first BN layer's multiplier (default 10)\n"
               "  -J, --jitter J           roll by up to J pixels (default 32 from 128 px, else 4)\n"
               "      --aug A              full (crop, flip, roll) | roll | none (default full;\n"
               "                           --ufc: roll below 128 px)\n"
               "      --no-aug             --aug none\n"
               "  -u, --ufc                INFER: one compensator per batch and teacher (-w);\n"
               "                           writes the inputs, then inputs + compensator per teacher\n"
               "                           (default --iters 1000 below 128 px, else 2000; --r-bn 1\n"
               "                           below 128 px, else 0.01)\n"
               "  -m, --metrics FILE       JSON lines: batch, stage (--ufc: ufc), step, the\n"
               "                           augmentation draw, lr, ce, bn, loss\n"
               "      --metrics-every N    a metrics line every N steps (default 1)\n"
               "  -s, --seed S             seed (default 0)\n"
               "  -o, --output FILE        write FILE atomically instead of stdout\n"
               "  -d, --device D           cpu | cuda | auto (default cpu)\n"
               "      --precision P        fp32 | fp16 | bf16: conv/linear math with -d cuda\n"
               "  -j, --threads N          worker threads\n"
               "  -q, --quiet              no progress\n"
               "  -h, --help               this text\n"
               "      --version            version\n", dd_prog(), dd_prog(), dd_prog());
}

/* --committee's weights into o->cw[0..nw) and o->c.committee: "equal", W1,..,WM (as given,
 * each >= 0, not all 0) or prior:A1,..,AM, CV-DD's softmax(A / T) (T = --committee-temp, 5 as
 * the reference's --weight-temperature), computed in double with the largest A subtracted. */
static void committee_weights(Opts *o)
{
    const char *s = o->committee;
    int n, prior = !strncmp(s, "prior:", 6);
    if (!strcmp(s, "equal")) {
        for (n = 0; n < o->nw; n++) o->cw[n] = 1.0 / o->nw;
    } else {
        n = dd_opt_double_list("--committee", prior ? s + 6 : s, o->cw, MAX_TEACHERS, prior ? -1e6 : 0, 1e6);
        if (n != o->nw)
            dd_die(DD_EXIT_USAGE, "--committee: %d %s%s for %d teachers (-w)", n, prior ? "prior" : "weight",
                   n == 1 ? "" : "s", o->nw);
    }
    if (prior) {
        const double T = o->ctemp_set ? o->ctemp : 5.0;
        double mx = o->cw[0], sum = 0;
        for (int k = 1; k < n; k++) mx = o->cw[k] > mx ? o->cw[k] : mx;
        for (int k = 0; k < n; k++) sum += (o->cw[k] = exp((o->cw[k] - mx) / T));
        for (int k = 0; k < n; k++) o->cw[k] /= sum;
    } else {
        double sum = 0;
        for (int k = 0; k < n; k++) sum += o->cw[k];
        if (!(sum > 0)) dd_die(DD_EXIT_USAGE, "--committee: the weights are all 0");
    }
    o->c.committee = o->cw;
}

static void parse(int argc, char **argv, Opts *o)
{
    enum { O_LR = 256, O_RBN, O_FIRST, O_NOAUG, O_EVERY, O_PREC, O_AUG, O_COMM, O_CTEMP, O_PSIZES };
    static const struct option lo[] = {
        {"weights", 1, 0, 'w'}, {"iters", 1, 0, 't'}, {"arc", 1, 0, 'a'}, {"alpha", 1, 0, 'A'},
        {"sizes", 1, 0, 'S'}, {"steps", 1, 0, 'p'}, {"init", 1, 0, 'i'}, {"ipc", 1, 0, 'n'},
        {"batch", 1, 0, 'b'}, {"lr", 1, 0, O_LR}, {"r-bn", 1, 0, O_RBN}, {"first-bn-mult", 1, 0, O_FIRST},
        {"jitter", 1, 0, 'J'}, {"no-aug", 0, 0, O_NOAUG}, {"aug", 1, 0, O_AUG}, {"ufc", 0, 0, 'u'}, {"metrics", 1, 0, 'm'},
        {"metrics-every", 1, 0, O_EVERY}, {"seed", 1, 0, 's'}, {"output", 1, 0, 'o'}, {"device", 1, 0, 'd'}, {"precision", 1, 0, O_PREC},
        {"committee", 1, 0, O_COMM}, {"committee-temp", 1, 0, O_CTEMP}, {"print-sizes", 0, 0, O_PSIZES},
        {"threads", 1, 0, 'j'}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0}};
    *o = (Opts){.device = "cpu", .precision = "fp32", .output = "-", .arc = -1, .jitter = -1, .ipc = 10, .iters = 2000,
                .aug = -1};
    o->c = rec_conf_default();
    long l[REC_MAX_STAGES];
    int c, fused = 0, every_set = 0;
    char tail;
    const char *shortopts = "w:t:a:A:S:p:i:n:b:J:um:s:o:d:j:qh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'w':
            if (o->nw == MAX_TEACHERS) dd_die(DD_EXIT_USAGE, "at most %d teachers", MAX_TEACHERS);
            o->w[o->nw++] = optarg;
            break;
        case 't': o->iters = dd_opt_long("--iters", optarg, 1, INT32_MAX); o->iters_set = 1; break;
        case 'a': o->arc = (int)dd_opt_long("--arc", optarg, 0, REC_MAX_STAGES - 1); fused = 1; break;
        case 'A': o->c.alpha = dd_opt_double("--alpha", optarg, 0, 1); o->alpha_set = 1; break;
        case 'S':
            o->nsizes = dd_opt_long_list("--sizes", optarg, l, REC_MAX_STAGES, 1, 1 << 14);
            for (int i = 0; i < o->nsizes; i++) o->sizes[i] = (int)l[i];
            fused = 1;
            break;
        case 'p':
            if (sscanf(optarg, "%" SCNd64 ":%" SCNd64 ":%" SCNd64 "%c", &o->s0, &o->s1, &o->stot, &tail) != 3 ||
                rec_schedule_piece(&o->c, o->s0, o->s1, o->stot) < 0)
                dd_die(DD_EXIT_USAGE, "--steps: want START:END:TOTAL with 0 <= START < END <= TOTAL, not '%s'", optarg);
            o->piece = 1;
            break;
        case 'i':
            if (strcmp(optarg, "noise")) dd_die(DD_EXIT_USAGE, "--init: only 'noise' (else give initial images)");
            o->noise = 1;
            break;
        case 'n': o->ipc = (int)dd_opt_long("--ipc", optarg, 1, 9999); o->ipc_set = 1; break;
        case 'b': o->batch = (int)dd_opt_long("--batch", optarg, 1, 1 << 20); break;
        case O_LR: o->c.lr = dd_opt_double("--lr", optarg, 0, 1e6); break;
        case O_RBN: o->c.r_bn = dd_opt_double("--r-bn", optarg, 0, 1e6); o->rbn_set = 1; break;
        case O_FIRST: o->c.first_bn_mult = dd_opt_double("--first-bn-mult", optarg, 0, 1e6); break;
        case 'J': o->jitter = (int)dd_opt_long("--jitter", optarg, 0, 1 << 14); break;
        case O_NOAUG: o->aug = REC_AUG_NONE; break;
        case O_AUG:
            if (!strcmp(optarg, "full")) o->aug = REC_AUG_FULL;
            else if (!strcmp(optarg, "roll")) o->aug = REC_AUG_ROLL;
            else if (!strcmp(optarg, "none")) o->aug = REC_AUG_NONE;
            else dd_die(DD_EXIT_USAGE, "--aug: full, roll or none, not '%s'", optarg);
            break;
        case 'u': o->ufc = 1; break;
        case O_COMM: o->committee = optarg; break;
        case O_PSIZES: o->print_sizes = 1; break;
        case O_CTEMP: o->ctemp = dd_opt_double("--committee-temp", optarg, 1e-3, 1e6); o->ctemp_set = 1; break;
        case 'm': o->metrics = optarg; break;
        case O_EVERY: o->c.metrics_every = dd_opt_long("--metrics-every", optarg, 1, INT64_MAX), every_set = 1; break;
        case 's': o->c.seed = (uint64_t)dd_opt_long("--seed", optarg, 0, INT64_MAX); break;
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
    if (!o->nw) dd_die(DD_EXIT_USAGE, "a teacher is needed: -w FILE (try --help)");
    nn_check_device_opts(o->device, o->precision);
    if (every_set && !o->metrics) dd_die(DD_EXIT_USAGE, "--metrics-every without --metrics");
    if (o->iters_set) fused = 1;
    if (o->piece && fused) dd_die(DD_EXIT_USAGE, "--steps excludes --iters, --arc and --sizes");
    if (o->ufc) {
        const char *bad = o->piece ? "--steps" : o->arc >= 0 ? "--arc" : o->nsizes ? "--sizes" : o->alpha_set ? "--alpha"
                        : o->noise ? "--init" : NULL;
        if (bad) dd_die(DD_EXIT_USAGE, "--ufc optimises one stage at the input size from the input images: not with %s", bad);
        if (o->committee) dd_die(DD_EXIT_USAGE, "--ufc optimises one compensator per teacher: not with --committee");
        if (o->nw > REC_UFC_MAX) dd_die(DD_EXIT_USAGE, "--ufc: at most %d teachers", REC_UFC_MAX);
        o->arc = 0;
    }
    if (o->ctemp_set && !(o->committee && !strncmp(o->committee, "prior:", 6)))
        dd_die(DD_EXIT_USAGE, "--committee-temp is the temperature of --committee prior:...");
    if (o->committee) committee_weights(o);
    if (o->noise && o->arc > 0) dd_die(DD_EXIT_USAGE, "--arc merges with initial images: not with --init noise");
    if (o->noise && optind < argc) dd_die(DD_EXIT_USAGE, "--init noise reads no input");
    if (o->print_sizes && (o->piece || o->ufc))
        dd_die(DD_EXIT_USAGE, "--print-sizes prints a fused run's stage sizes: not with %s", o->piece ? "--steps" : "--ufc");
    if (o->arc < 0) o->arc = o->noise ? 0 : 3;
    /* options the run would not use are said, not dropped */
    if (o->ipc_set && !o->noise) dd_die(DD_EXIT_USAGE, "--ipc counts --init noise's images; the input's are its records");
    if (o->alpha_set && (o->piece || o->arc == 0))
        dd_die(DD_EXIT_USAGE, "--alpha weighs the merges of --arc K > 0; %s merges nothing (in a pipe, arcmerge -a does)",
               o->piece ? "--steps" : "this run");
    if (o->nsizes && o->nsizes != o->arc + 1)
        dd_die(DD_EXIT_USAGE, "--sizes: %d sizes for %d stages", o->nsizes, o->arc + 1);
    if (!o->piece && !o->ufc && rec_schedule_fused(&o->c, o->iters, o->arc, NULL) < 0) dd_die_err(DD_EXIT_USAGE);
    if (!strcmp(o->output, "-") && !o->print_sizes) dd_refuse_tty_stdout();
    for (int k = 0; k < o->nw; k++) dd_refuse_same("-o", o->output, "the teacher -w", o->w[k]);
    /* the metrics log is written as the run goes, in place: not over a file the run reads or writes */
    for (int k = 0; k < o->nw; k++) dd_refuse_same("--metrics", o->metrics, "the teacher -w", o->w[k]);
    for (int i = optind; i < argc; i++) dd_refuse_same("--metrics", o->metrics, "the input", argv[i]);
    dd_refuse_same("--metrics", o->metrics, "the output -o", o->output);
}

/* A piece (--steps S:E:T, S > 0) continues the piece before it: where the input's last recover
 * entry is a piece, it must be of the same budget T and have ended at S (a skipped or repeated
 * piece, or pieces of two budgets, ran without a word: not the fused run's schedule); another seed
 * is said. A fused run, INFER's, or no recover before: nothing to check. */
static void check_piece_chain(const TsHeader *h, const Opts *o, const char *iname)
{
    json_t *e = o->piece && o->s0 > 0 ? ts_header_last_history(h, "recover") : NULL, *p = json_object_get(e, "params");
    const char *sch = json_string_value(json_object_get(p, "schedule"));
    if (!sch || strcmp(sch, "piece")) return;
    long long end = json_integer_value(json_object_get(p, "end"));
    long long tot = json_integer_value(json_object_get(p, "total"));
    if (tot != o->stot)
        dd_die(DD_EXIT_DATA, "%s: its last recover piece is of a budget of %lld steps; --steps %lld:%lld:%lld of %lld",
               iname, tot, (long long)o->s0, (long long)o->s1, (long long)o->stot, (long long)o->stot);
    if (end != o->s0)
        dd_die(DD_EXIT_DATA, "%s: its last recover piece ended at step %lld; --steps %lld:%lld:%lld would %s", iname,
               end, (long long)o->s0, (long long)o->s1, (long long)o->stot, end < o->s0 ? "skip steps" : "run steps again");
    json_t *seed = json_object_get(e, "seed");
    if (json_is_integer(seed) && (uint64_t)json_integer_value(seed) != o->c.seed)
        dd_warn("%s: its last recover piece ran with seed %lld, this one with %llu: other draws than one run's", iname,
                (long long)json_integer_value(seed), (unsigned long long)o->c.seed);
}

/* 1 when the model has a BatchNorm layer (running statistics): what the BN term of the loss reads. */
static int has_batchnorm(const Model *m)
{
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i]->var.role == NN_BUFFER) return 1;
    return 0;
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
        /* the teachers optimise one image in one normalized space (--ufc: a compensator each, in its
         * own): said naming the files */
        if (k && !o.ufc && !model_same_norm(t[k], t[0]))
            dd_die(DD_EXIT_DATA, "%s (%s) normalizes its input otherwise than %s (%s): teachers share one mean and std",
                   o.w[k], t[k]->arch, o.w[0], t[0]->arch);
        model_set_requires_grad(t[k], 0);
        if (!has_batchnorm(t[k]))
            dd_warn("%s (%s) has no BatchNorm layers: no statistics to match, its loss is the cross-entropy alone",
                    o.w[k], t[k]->arch);
    }

    /* The records, in input order, and their images [C,H,W]. */
    TsHeader *h;
    RecSet rs;
    char iname[4096];
    if (o.noise) {
        snprintf(iname, sizeof iname, "--init noise");
        if (rec_set_noise(&rs, t[0], o.w[0], o.ipc, o.nsizes ? o.sizes[0] : t[0]->input_size, o.c.seed, &h) < 0)
            dd_die_err(DD_EXIT_DATA);
    } else {
        TsInput *in = ts_input_open(argc - optind, argv + optind);
        if (!in) dd_die_err(dd_errcode());
        ts_input_unique_keys(in);
        snprintf(iname, sizeof iname, "%s%s", argc - optind > 0 ? argv[optind] : "stdin",
                 argc - optind > 1 ? " and more inputs" : "");
        h = ts_header_copy(ts_input_header(in));
        check_piece_chain(h, &o, iname);
        if (rec_set_read(in, &rs) < 0) dd_die_err(DD_EXIT_DATA);
        ts_input_close(in);
    }
    const int64_t n = rs.n;
    const int H = rs.H, W = rs.W;
    const int ncls = ts_header_nclasses(h);
    for (int k = 0; k < o.nw; k++)
        if (model_check_classes(t[k], o.w[k], h, o.noise ? o.w[0] : "the images") < 0) dd_die_err(DD_EXIT_DATA);
    if (o.ufc) {
        /* the reference's two settings: CIFAR (32 px) and ImageNet (224 px) */
        const int big = H >= 128 && W >= 128;
        if (!o.iters_set) o.iters = big ? 2000 : 1000;
        if (!o.rbn_set) o.c.r_bn = big ? 0.01 : 1.0;
        if (o.aug < 0) o.aug = big ? REC_AUG_FULL : REC_AUG_ROLL;
        rec_schedule_fused(&o.c, o.iters, 0, NULL);
    } else if (!o.piece) {
        /* FADRM's multi-resolution default, where every teacher takes 200x200 (a net of one
         * input size keeps the input's; a pipe of pieces asks --print-sizes) */
        int mro = !o.nsizes && H == 224 && W == 224 && o.arc == 3;
        for (int k = 0; mro && k < o.nw; k++) mro = model_check_input(t[k], rs.C, 200, 200) == 0;
        if (mro) {
            o.nsizes = 4;
            memcpy(o.sizes, (int[]){200, 224, 200, 224}, sizeof(int[4]));
        }
        rec_schedule_fused(&o.c, o.iters, o.arc, o.nsizes ? o.sizes : NULL);
    }
    /* every teacher takes the images at every stage's size, said before any work */
    for (int s = 0, sh = H, sw = W; s < o.c.nstages; s++) {
        if (o.c.stage[s].h) sh = o.c.stage[s].h, sw = o.c.stage[s].w;
        for (int k = 0; k < o.nw; k++)
            if (model_check_input(t[k], rs.C, sh, sw) < 0) {
                if (sh == H && sw == W) dd_die(DD_EXIT_DATA, "%s: %s: %s", iname, o.w[k], dd_errmsg());
                dd_die(DD_EXIT_DATA, "%s: %s: stage %d at %dx%d: %s", iname, o.w[k], s, sh, sw, dd_errmsg());
            }
    }
    if (o.print_sizes) {
        for (int i = 0; i < o.nsizes; i++) printf("%s%d", i ? "," : "", o.sizes[i]);
        putchar('\n');
        if (dd_fclose_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
        goto done;
    }
    o.c.aug = o.aug < 0 ? REC_AUG_FULL : (RecAug)o.aug;
    o.c.jitter = o.jitter >= 0 ? o.jitter : (H >= 128 ? 32 : 4);
    /* INFER: one compensator per P^k, the k-th image of every class (ddpipe-method(7) section 5) */
    if (!o.batch) o.batch = o.ufc ? ncls : ncls < 100 ? ncls : 100;

    /* Batch ids come from the batches' content (rec_plan), not their order in this process, so a
     * class slice aligned with the batches draws the augmentation of the unsharded run. */
    const int64_t nbatch = rec_set_plan(&rs, ncls, o.batch);
    /* --ufc: the compensated copies, M after the n inputs, keys KEY_uM checked before any work */
    if (o.ufc && rec_set_ufc(&rs, o.nw) < 0) dd_die(DD_EXIT_DATA, "%s: %s", iname, dd_errmsg());

    json_t *tw = json_array(), *sz = json_array();
    for (int k = 0; k < o.nw; k++) json_array_append_new(tw, json_string(o.w[k]));
    for (int s = 0; s < o.c.nstages; s++) json_array_append_new(sz, json_integer(o.c.stage[s].h ? o.c.stage[s].h : H));
    static const char *const augs[] = {"none", "full", "roll"};
    json_t *params = json_pack("{s:s,s:I,s:I,s:I,s:i,s:f,s:o,s:f,s:f,s:f,s:s,s:i,s:i,s:o,s:s}",
                               "schedule", o.ufc ? "ufc" : o.piece ? "piece" : "fused", "start", (json_int_t)o.c.stage[0].start,
                               "end", (json_int_t)o.c.stage[o.c.nstages - 1].end, "total", (json_int_t)o.c.total,
                               "merges", o.c.merge ? o.c.nstages - 1 : 0, "alpha", o.c.alpha, "sizes", sz, "lr", o.c.lr,
                               "r_bn", o.c.r_bn, "first_bn_mult", o.c.first_bn_mult, "aug", augs[o.c.aug], "jitter",
                               o.c.jitter, "batch", o.batch, "teachers", tw, "init", o.noise ? "noise" : "images");
    if (o.c.committee) {
        json_t *cw = json_array();
        for (int k = 0; k < o.nw; k++) json_array_append_new(cw, json_real(o.cw[k]));
        json_object_set_new(params, "committee", cw);
    }
    if (nn_precision(nn) != NN_FP32)
        json_object_set_new(params, "precision", json_string(nn_precision_name(nn_precision(nn))));
    ts_header_add_history(h, argc, argv, (int64_t)o.c.seed, params);
    json_decref(params);
    /* the output opened before the run (its header, history included, is known): an -o that
     * cannot be written is said now, not after hours of optimisation; a run that fails after this
     * leaves no file (the temporary is removed at exit) and a truncated stream on stdout */
    TsWriter *w = ts_writer_open(o.output, h);
    if (!w) dd_die_err(DD_EXIT_DATA);

    FILE *mf = NULL;
    /* a log: whole lines as the run goes, even if it is killed or the disk fills */
    if (o.metrics && !(mf = dd_line_log_open(o.metrics)))
        dd_die(DD_EXIT_DATA, "%s: cannot open for writing: %s", o.metrics, strerror(errno));
    o.c.metrics = mf;
    DdProgress prog;
    int64_t steps = 0;
    for (int s = 0; s < o.c.nstages; s++) steps += o.c.stage[s].end - o.c.stage[s].start;
    dd_progress_start(&prog, "steps", steps * nbatch * (o.ufc ? o.nw : 1), o.quiet);
    o.c.progress = &prog;
    o.c.input = iname;
    if (rec_set_run(nn, t, o.nw, &o.c, &rs) < 0) {
        ts_writer_abort(w);
        dd_die_err(dd_errcode());
    }
    dd_progress_end(&prog);
    if (mf && dd_fclose_checked(mf, o.metrics) < 0) {
        ts_writer_abort(w);
        dd_die_err(DD_EXIT_DATA);
    }

    for (int64_t k = 0; k < n * (o.ufc ? o.nw + 1 : 1); k++)
        if (ts_writer_put(w, k < n ? &rs.recs[k] : &rs.urecs[k - n]) < 0) {
            ts_writer_abort(w);
            dd_die_err(DD_EXIT_DATA);
        }
    if (ts_writer_close(w) < 0) dd_die_err(DD_EXIT_DATA);

done:
    rec_set_free(&rs);
    for (int k = 0; k < o.nw; k++) model_free(t[k]);
    nn_free(nn);
    ts_header_free(h);
    return 0;
}

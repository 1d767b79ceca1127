/* evaltrain.c - train a model on a record stream and evaluate it (ddpipe-method(7) sections 0 and 4): the
 * teacher "squeeze" with hard labels, and the post-evaluation of distilled sets with relabel's
 * replayed soft labels, an online teacher or static soft labels. Options, class-list checks and
 * wiring only; the loop is libcommon/distill/train.c. See evaltrain(1).
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/stream.h"
#include "libcommon/distill/train.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s (-m ARCH | -w FILE) [options] [STREAM...]   (training stream; stdin when none)\n"
               "       %s --eval-only -w FILE [STREAM...]\n"
               "Train a model on a record stream and evaluate it; metrics as JSON lines on stdout.\n"
               "  -m, --model ARCH         zoo name (man 7 ddpipe-models), random init\n"
               "  -w, --weights FILE       start from (or evaluate) these weights\n"
               "      --mean M1,M2,.. --std S1,S2,..  -m's input normalization, one value per\n"
               "                           channel, pixels in [0,1] (default: man 7 ddpipe-models)\n"
               "      --val STREAM         evaluate on this stream\n"
               "      --labels STREAM      relabel's soft labels, replayed (KL, -T)\n"
               "      --teacher FILE       online soft labels from this eval-mode teacher (KL, -T);\n"
               "                           several: the mean of their logits\n"
               "      --hard               train on hard labels even if records carry 'soft'\n"
               "  -T, --temperature T      KL temperature (default 20)\n"
               "      --label-smoothing E  hard labels (default 0)\n"
               "      --optimizer NAME     sgd | adam | adamw\n"
               "      --lr LR --momentum M --wd WD --betas B1,B2 --eta ETA\n"
               "      --decay all|weights  which params --wd decays (default: weights for AdamW,\n"
               "                           but all with static labels; all for sgd and adam)\n"
               "      --epochs N --batch N --micro N --no-shuffle\n"
               "      --bn-momentum M      BN running statistics' momentum (default 0.1;\n"
               "                           --teacher: 0.19, RDED's two forwards per step)\n"
               "      --rrc-scale LO,HI --crop-pad P --no-flip --cutmix A --mixup A\n"
               "      --shuffle-patches F  --no-aug\n"
               "      --res R              train (and evaluate) at R x R on images of any sizes:\n"
               "                           crops of each image at its size (see evaltrain(1))\n"
               "      --eval-every N --eval-batch N\n"
               "      --save FILE          write the trained weights (safetensors)\n"
               "      --checkpoint FILE    resume from / save to FILE  --checkpoint-every N\n"
               "      --stop-after-epoch N end after epoch N (a run in slices: the next resumes)\n"
               "      --eval-only          evaluate -w on the operands and exit\n"
               "  -s, --seed N  -j, --threads N  -d, --device cpu|cuda|auto  -q, --quiet\n"
               "      --precision fp32|fp16|bf16   conv/linear math with -d cuda (default fp32)\n"
               "  -h, --help  --version    (defaults depend on the label source: see evaltrain(1))\n",
               dd_prog(), dd_prog());
}

enum {
    O_VAL = 256, O_LABELS, O_TEACHER, O_HARD, O_LS, O_OPT, O_LR, O_MOM, O_WD, O_BETAS, O_ETA, O_EPOCHS,
    O_BATCH, O_MICRO, O_NOSHUF, O_RRC, O_PAD, O_NOFLIP, O_CUTMIX, O_MIXUP, O_SHUFP, O_NOAUG, O_EVERY,
    O_EBATCH, O_SAVE, O_CKPT, O_CKEVERY, O_EVALONLY, O_STOP, O_VERSION, O_PREC, O_DECAY, O_RES, O_MEAN, O_STD,
    O_BNMOM
};

/* --mean / --std: at most this many channels */
#define NORM_MAX 64

/* "A,B" into two doubles in [lo, hi]. */
static void opt_pair(const char *opt, const char *s, double *a, double *b, double lo, double hi)
{
    double v[2];
    if (dd_opt_double_list(opt, s, v, 2, lo, hi) != 2)
        dd_die(DD_EXIT_USAGE, "%s: want two comma-separated numbers, got '%s'", opt, s);
    *a = v[0];
    *b = v[1];
}

/* Dies unless `path` can be written (checked before hours of training). */
static void check_writable(const char *path)
{
    if (dd_atomic_check(path) < 0) dd_die_err(DD_EXIT_DATA);
}

static TsInput *open_input(int n, char **files)
{
    TsInput *in = ts_input_open(n, files);
    if (!in) dd_die_err(dd_errcode());
    return in;
}

/* Says when images were resized for a small model (below 224 px, where no resize is the rule: a 28-px stream
 * evaluated by a 32-px model, say), since relabel, patchsel and recover refuse such a pair instead. */
static void note_resized(const TrainData *d, const TrainDataOpts *o, const char *mname, const char *dname)
{
    if (d->resized && o->crop < 224)
        dd_warn("%s: %lld image(s) of %dx%d resized to %d (shorter side) and centre-cropped to %d: %s takes %d px",
                dname, (long long)d->resized, d->src_h, d->src_w, o->crop * 256 / 224, o->crop, mname, o->crop);
}

/* Dies naming the weights (or architecture) and the stream when model m does not take d's images
 * (as the model sees them: with --res, res x res crops). */
static void check_input(const Model *m, const char *mname, const TrainData *d, const char *dname)
{
    if (model_check_input(m, d->C, d->H, d->W) < 0) dd_die(DD_EXIT_DATA, "%s: %s: %s", mname, dname, dd_errmsg());
}

/* Appends ", NAME" (or NAME first) to buf when cond holds: the options a run ignores, said. */
static void list_if(char *buf, size_t size, int cond, const char *name)
{
    size_t n = strlen(buf);
    if (cond) snprintf(buf + n, size - n, "%s%s", n ? ", " : "", name);
}

static const char *const label_names[] = {"hard", "teacher", "static", "replay"};

/* --teacher: at most this many */
#define MAX_TEACHERS 16

/* The factor of the last patchsel entry in h's history (its params' "factor"), or 1. */
static int history_factor(const TsHeader *h)
{
    json_t *e = ts_header_last_history(h, "patchsel");
    json_int_t f = json_integer_value(json_object_get(json_object_get(e, "params"), "factor"));
    return f >= 1 && f <= 64 ? (int)f : 1;
}

/* RDED's student learning rate by architecture (argument.py's adamw_lr), for --teacher. */
static double rded_lr(const char *arch)
{
    static const struct { const char *prefix; double lr; } t[] = {
        {"vgg", 5e-4}, {"efficientnet", 2e-3}, {"mobilenet", 2.5e-3}, {"alexnet", 1e-4}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (!strncmp(arch, t[i].prefix, strlen(t[i].prefix))) return t[i].lr;
    return 1e-3;   /* ConvNets, ResNets */
}

/* RDED's batch (argument.py) by images per class: 100 from IPC 50, 50 from IPC 10, else 10 (the
 * reference defines IPC 1, 10 and 50); doubled for 100 and 1000 classes; 100 for 200 classes
 * (Tiny-ImageNet); 25 for its CIFAR-100 conv3 case; at most the number of images. */
static int rded_batch(const TrainData *tr, int c100_conv3)
{
    const int64_t ipc = tr->K ? tr->n / tr->K : tr->n;
    int64_t b = ipc >= 50 ? 100 : ipc >= 10 ? 50 : 10;
    if (tr->K == 100 || tr->K == 1000) b *= 2;
    if (tr->K == 200) b = 100;
    if (c100_conv3) b = 25;
    if (b > tr->n) b = tr->n;
    return (int)(b > 0 ? b : 1);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    static const struct option lo[] = {
        {"model", 1, 0, 'm'}, {"weights", 1, 0, 'w'}, {"val", 1, 0, O_VAL}, {"labels", 1, 0, O_LABELS},
        {"teacher", 1, 0, O_TEACHER}, {"hard", 0, 0, O_HARD}, {"temperature", 1, 0, 'T'},
        {"label-smoothing", 1, 0, O_LS}, {"optimizer", 1, 0, O_OPT}, {"lr", 1, 0, O_LR},
        {"momentum", 1, 0, O_MOM}, {"wd", 1, 0, O_WD}, {"decay", 1, 0, O_DECAY}, {"betas", 1, 0, O_BETAS}, {"eta", 1, 0, O_ETA},
        {"epochs", 1, 0, O_EPOCHS}, {"batch", 1, 0, O_BATCH}, {"micro", 1, 0, O_MICRO}, {"bn-momentum", 1, 0, O_BNMOM},
        {"no-shuffle", 0, 0, O_NOSHUF}, {"rrc-scale", 1, 0, O_RRC}, {"crop-pad", 1, 0, O_PAD},
        {"no-flip", 0, 0, O_NOFLIP}, {"cutmix", 1, 0, O_CUTMIX}, {"mixup", 1, 0, O_MIXUP},
        {"shuffle-patches", 1, 0, O_SHUFP}, {"no-aug", 0, 0, O_NOAUG}, {"res", 1, 0, O_RES},
        {"mean", 1, 0, O_MEAN}, {"std", 1, 0, O_STD},
        {"eval-every", 1, 0, O_EVERY},
        {"eval-batch", 1, 0, O_EBATCH}, {"save", 1, 0, O_SAVE}, {"checkpoint", 1, 0, O_CKPT},
        {"checkpoint-every", 1, 0, O_CKEVERY}, {"eval-only", 0, 0, O_EVALONLY},
        {"stop-after-epoch", 1, 0, O_STOP}, {"seed", 1, 0, 's'}, {"threads", 1, 0, 'j'},
        {"device", 1, 0, 'd'}, {"precision", 1, 0, O_PREC}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {"version", 0, 0, O_VERSION}, {0}};
    const char *arch = NULL, *weights = NULL, *valf = NULL, *labelsf = NULL, *teacherf = NULL, *save = NULL;
    const char *teacherfs[MAX_TEACHERS];
    int nteachers = 0;
    const char *optname = NULL, *device = "cpu", *precision = "fp32";
    double lr = NAN, mom = NAN, wd = NAN, b1 = 0.9, b2 = 0.999, eta = NAN, T = 20, ls = 0;
    int T_given = 0, ls_given = 0, betas_given = 0;
    double rrc_lo = NAN, rrc_hi = NAN, cutmix = NAN, mixup = NAN, bnmom = NAN;
    int hard = 0, epochs = -1, batch = -1, micro = -1, shuffle = 1, pad = -1, flip = 1, shufp = 0, noaug = 0;
    int train_res = 0, every = 0, ebatch = 256, ckevery = 1, evalonly = 0, stop = 0, threads = 0, quiet = 0;
    int decay_all = -1, c;
    const char *ckpt = NULL;
    long seed = 0;
    double norm_mean[NORM_MAX], norm_std[NORM_MAX];
    int nmean = 0, nstd = 0;
    const char *shortopts = "m:w:T:s:j:d:qh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'm': arch = optarg; break;
        case 'w': weights = optarg; break;
        case O_VAL: valf = optarg; break;
        case O_LABELS: labelsf = optarg; break;
        case O_TEACHER:
            if (nteachers == MAX_TEACHERS) dd_die(DD_EXIT_USAGE, "--teacher: at most %d teachers", MAX_TEACHERS);
            teacherf = teacherfs[nteachers++] = optarg;
            break;
        case O_HARD: hard = 1; break;
        case 'T': T = dd_opt_double("-T", optarg, 1e-3, 1e6), T_given = 1; break;
        case O_LS: ls = dd_opt_double("--label-smoothing", optarg, 0, 1), ls_given = 1; break;
        case O_OPT: optname = optarg; break;
        case O_LR: lr = dd_opt_double("--lr", optarg, 0, 1e6); break;
        case O_MOM: mom = dd_opt_double("--momentum", optarg, 0, 1); break;
        case O_WD: wd = dd_opt_double("--wd", optarg, 0, 10); break;
        case O_DECAY:
            if (!strcmp(optarg, "all")) decay_all = 1;
            else if (!strcmp(optarg, "weights")) decay_all = 0;
            else dd_die(DD_EXIT_USAGE, "--decay: want all or weights, got '%s'", optarg);
            break;
        case O_BETAS: opt_pair("--betas", optarg, &b1, &b2, 0, 0.999999), betas_given = 1; break;
        case O_ETA: eta = dd_opt_double("--eta", optarg, 1e-3, 1e3); break;
        case O_EPOCHS: epochs = (int)dd_opt_long("--epochs", optarg, 0, 1000000); break;
        case O_BATCH: batch = (int)dd_opt_long("--batch", optarg, 1, 1 << 20); break;
        case O_MICRO: micro = (int)dd_opt_long("--micro", optarg, 1, 1 << 20); break;
        case O_BNMOM: bnmom = dd_opt_double("--bn-momentum", optarg, 0, 1); break;
        case O_NOSHUF: shuffle = 0; break;
        case O_RRC:
            opt_pair("--rrc-scale", optarg, &rrc_lo, &rrc_hi, 1e-4, 1);
            if (rrc_lo > rrc_hi) dd_die(DD_EXIT_USAGE, "--rrc-scale: LO %g is above HI %g", rrc_lo, rrc_hi);
            break;
        case O_PAD: pad = (int)dd_opt_long("--crop-pad", optarg, 0, 4096); break;
        case O_NOFLIP: flip = 0; break;
        case O_CUTMIX: cutmix = dd_opt_double("--cutmix", optarg, 0, 1e3); break;
        case O_MIXUP: mixup = dd_opt_double("--mixup", optarg, 0, 1e3); break;
        case O_SHUFP: shufp = (int)dd_opt_long("--shuffle-patches", optarg, 1, 64); break;
        case O_NOAUG: noaug = 1; break;
        case O_RES: train_res = (int)dd_opt_long("--res", optarg, 1, 8192); break;
        case O_MEAN: nmean = dd_opt_double_list("--mean", optarg, norm_mean, NORM_MAX, -1e3, 1e3); break;
        case O_STD: nstd = dd_opt_double_list("--std", optarg, norm_std, NORM_MAX, 1e-6, 1e3); break;
        case O_EVERY: every = (int)dd_opt_long("--eval-every", optarg, 1, 1000000); break;
        case O_EBATCH: ebatch = (int)dd_opt_long("--eval-batch", optarg, 1, 1 << 20); break;
        case O_SAVE: save = optarg; break;
        case O_CKPT: ckpt = optarg; break;
        case O_CKEVERY: ckevery = (int)dd_opt_long("--checkpoint-every", optarg, 1, 1000000); break;
        case O_EVALONLY: evalonly = 1; break;
        case O_STOP: stop = (int)dd_opt_long("--stop-after-epoch", optarg, 1, 1000000); break;
        case 's': seed = dd_opt_long("--seed", optarg, 0, 0x7fffffffL); break;
        case 'j': threads = (int)dd_opt_long("--threads", optarg, 1, DD_MAX_THREADS); break;
        case 'd': device = optarg; break;
        case O_PREC: precision = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case O_VERSION: dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    nn_check_device_opts(device, precision);
    if (!!arch + !!weights != 1) dd_die(DD_EXIT_USAGE, "give one of -m ARCH and -w FILE (try --help)");
    if (evalonly && !weights) dd_die(DD_EXIT_USAGE, "--eval-only needs -w FILE");
    if (evalonly) {
        const char *bad = save ? "--save" : ckpt ? "--checkpoint" : valf ? "--val" : labelsf ? "--labels"
                        : teacherf ? "--teacher" : epochs >= 0 ? "--epochs" : stop ? "--stop-after-epoch"
                        : !isnan(bnmom) ? "--bn-momentum" : NULL;
        if (bad) dd_die(DD_EXIT_USAGE, "--eval-only evaluates -w on the operands and trains nothing: not with %s", bad);
    }
    if (stop && !ckpt)
        dd_die(DD_EXIT_USAGE, "--stop-after-epoch ends one slice of a run that the next resumes: give --checkpoint FILE");
    /* stdin is one input: the operands' (none, or '-'), --val's or --labels' */
    int stdin_uses = argc == optind;
    for (int i = optind; i < argc; i++) stdin_uses += !strcmp(argv[i], "-");
    stdin_uses += (valf && !strcmp(valf, "-")) + (labelsf && !strcmp(labelsf, "-"));
    if (stdin_uses > 1) dd_die(DD_EXIT_USAGE, "stdin ('-') given more than once (operands, --val, --labels)");
    /* --save and --checkpoint replace their file: not a stream or teacher this run reads (-w, the
     * weights it starts from, it may update) */
    for (int i = optind; i < argc; i++) {
        dd_refuse_same("--save", save, "the training stream", argv[i]);
        dd_refuse_same("--checkpoint", ckpt, "the training stream", argv[i]);
    }
    for (int k = 0; k < nteachers; k++) {
        dd_refuse_same("--save", save, "the teacher", teacherfs[k]);
        dd_refuse_same("--checkpoint", ckpt, "the teacher", teacherfs[k]);
    }
    dd_refuse_same("--save", save, "--val", valf), dd_refuse_same("--save", save, "--labels", labelsf);
    dd_refuse_same("--checkpoint", ckpt, "--val", valf), dd_refuse_same("--checkpoint", ckpt, "--labels", labelsf);
    dd_refuse_same("--save", save, "--checkpoint", ckpt);
    if (!!nmean != !!nstd) dd_die(DD_EXIT_USAGE, "--mean and --std go together");
    if (nmean && weights)
        dd_die(DD_EXIT_USAGE, "--mean and --std set a new model's normalization (-m); %s carries its own", weights);
    if (nmean != nstd) dd_die(DD_EXIT_USAGE, "--mean has %d values, --std %d", nmean, nstd);
    if (!!labelsf + !!teacherf + hard > 1) dd_die(DD_EXIT_USAGE, "--labels, --teacher and --hard exclude each other");
    if (cutmix > 0 && mixup > 0) dd_die(DD_EXIT_USAGE, "--cutmix and --mixup exclude each other");
    if (train_res && labelsf)
        dd_die(DD_EXIT_USAGE, "--res trains on crops of images of several sizes; --labels replays relabel's crops "
                              "of one size (run relabel on a stream of one size, without --res)");
    OptimKind kind = OPTIM_SGD;
    if (optname && !strcmp(optname, "adam")) kind = OPTIM_ADAM;
    else if (optname && !strcmp(optname, "adamw")) kind = OPTIM_ADAMW;
    else if (optname && strcmp(optname, "sgd")) dd_die(DD_EXIT_USAGE, "--optimizer: want sgd, adam or adamw, got '%s'", optname);

    Nn *nn = nn_open(device, threads);
    if (!nn) dd_die_err(dd_errcode());
    nn_use_precision(nn, precision);
    Model *m = weights ? model_load(nn, weights) : NULL;
    if (weights && !m) dd_die_err(DD_EXIT_DATA);
    /* evaluation at the model's input size (--res R: R): torchvision's Resize(256) + CenterCrop(224)
     * on every image at 224 px and above; below, images of another size only */
    TrainDataOpts vo = {.crop = train_res ? train_res : m ? m->input_size : 0};
    vo.crop_other = vo.crop < 224;
    if (arch && model_name_check(arch) < 0) dd_die_err(DD_EXIT_USAGE); /* before the data are read */
    TsInput *in = open_input(argc - optind, argv + optind);
    const TsHeader *th = ts_input_header(in);
    const char *tname = argc > optind ? argv[optind] : "stdin";
    if (m && model_check_classes(m, weights, th, tname) < 0) dd_die_err(DD_EXIT_DATA);
    if (evalonly) {
        TrainData d;
        TrainEval ev;
        if (train_data_read(in, &vo, &d) < 0) dd_die_err(DD_EXIT_DATA);
        check_input(m, weights, &d, tname);
        note_resized(&d, &vo, weights, tname);
        if (train_eval(nn, m, &d, ebatch, &ev) < 0) dd_die_err(DD_EXIT_DATA);
        char loss[32] = "null"; /* JSON has no NaN: a model whose logits are not finite */
        if (isfinite(ev.loss)) snprintf(loss, sizeof loss, "%.6g", ev.loss);
        printf("{\"records\":%lld,\"top1\":%.6g,\"top5\":%.6g,\"loss\":%s}\n", (long long)ev.n, 100 * ev.top1,
               100 * ev.top5, loss);
        if (dd_fclose_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
        train_data_free(&d);
        ts_input_close(in);
        model_free(m);
        nn_free(nn);
        return 0;
    }
    if (save) check_writable(save);
    if (ckpt) check_writable(ckpt);
    TsInput *vin = valf ? open_input(1, (char **)&valf) : NULL;
    if (vin && ts_header_classes_check(th, tname, ts_input_header(vin), valf) < 0) dd_die_err(DD_EXIT_DATA);
    TsReader *lr_in = labelsf ? ts_reader_open(labelsf) : NULL;
    TrainReplayInfo rinfo = {0};
    if (labelsf && (!lr_in || ts_header_classes_check(th, tname, ts_reader_header(lr_in), labelsf) < 0
                    || train_replay_header_get(ts_reader_header(lr_in), labelsf, &rinfo) < 0))
        dd_die_err(DD_EXIT_DATA);
    Model *teachers[MAX_TEACHERS + 1] = {NULL};
    for (int k = 0; k < nteachers; k++) {
        if (!(teachers[k] = model_load(nn, teacherfs[k]))) dd_die_err(DD_EXIT_DATA);
        if (model_check_classes(teachers[k], teacherfs[k], th, tname) < 0) dd_die_err(DD_EXIT_DATA);
        model_set_requires_grad(teachers[k], 0);
    }

    TrainData tr, val;
    TrainDataOpts to = {.want_soft = labelsf || teacherf || hard ? 0 : -1, .res = train_res};
    if (train_data_read(in, &to, &tr) < 0) dd_die_err(DD_EXIT_DATA);
    if (!m && !(m = model_create(nn, arch, tr.C, tr.K, tr.H, (uint64_t)seed))) /* the name is good: the images' size */
        dd_die(DD_EXIT_DATA, "%s: %s", tname, dd_errmsg());
    if (nmean) {
        if (nmean != m->in_channels)
            dd_die(DD_EXIT_USAGE, "--mean and --std have %d value%s; %s's images have %d channel%s", nmean,
                   nmean == 1 ? "" : "s", tname, m->in_channels, m->in_channels == 1 ? "" : "s");
        float fm[NORM_MAX], fs[NORM_MAX];
        for (int i = 0; i < nmean; i++) fm[i] = (float)norm_mean[i], fs[i] = (float)norm_std[i];
        if (model_set_norm(m, fm, fs) < 0) dd_die_err(DD_EXIT_USAGE);
    }
    if (!vo.crop) {
        vo.crop = m->input_size;
        vo.crop_other = vo.crop < 224;
    }
    if (vin && train_data_read(vin, &vo, &val) < 0) dd_die_err(DD_EXIT_DATA);
    if (vin) note_resized(&val, &vo, weights ? weights : arch, valf);
    check_input(m, weights ? weights : arch, &tr, tname);
    if (vin) check_input(m, weights ? weights : arch, &val, valf);
    for (int k = 0; k < nteachers; k++) check_input(teachers[k], teacherfs[k], &tr, tname);

    /* defaults by label source: hard labels train teachers (ddpipe-method(7) 0), soft labels follow the
     * post-evaluation protocol (ddpipe-method(7) 4; RDED's for --teacher, INFER's for static labels) */
    TrainConf tc = {.labels = labelsf ? TRAIN_REPLAY : teacherf ? TRAIN_TEACHER : tr.soft ? TRAIN_STATIC : TRAIN_HARD};
    const int soft = tc.labels != TRAIN_HARD;
    /* an option the label source does not use is said, not silently dropped */
    if (T_given && !soft && hard)
        dd_warn("-T is the KL temperature of soft labels; --hard trains on hard labels and ignores it");
    else if (T_given && !soft)
        dd_warn("-T is the KL temperature of soft labels; %s has none (no 'soft' field, --labels or "
                "--teacher), so this run trains on hard labels and ignores it", tname);
    if (ls_given && soft) dd_warn("--label-smoothing applies to hard labels; this run's are soft: ignored");
    if (labelsf) { /* the replay's batches, order and augmentation are relabel's */
        char ign[256] = "";
        list_if(ign, sizeof ign, batch > 0, "--batch");
        list_if(ign, sizeof ign, !shuffle, "--no-shuffle");
        list_if(ign, sizeof ign, !isnan(rrc_lo), "--rrc-scale");
        list_if(ign, sizeof ign, pad >= 0, "--crop-pad");
        list_if(ign, sizeof ign, !flip, "--no-flip");
        list_if(ign, sizeof ign, !isnan(cutmix), "--cutmix");
        list_if(ign, sizeof ign, !isnan(mixup), "--mixup");
        list_if(ign, sizeof ign, shufp > 0, "--shuffle-patches");
        list_if(ign, sizeof ign, noaug, "--no-aug");
        if (*ign)
            dd_warn("%s replays relabel's batches, order and augmentation as stored: %s ignored", labelsf, ign);
    }
    if (!optname) kind = soft ? OPTIM_ADAMW : OPTIM_SGD;
    if (!isnan(mom) && kind != OPTIM_SGD)
        dd_warn("--momentum is SGD's; this run's optimizer is %s (its moments are --betas): ignored",
                kind == OPTIM_ADAM ? "adam" : "adamw");
    if (betas_given && kind == OPTIM_SGD) dd_warn("--betas are Adam's and AdamW's; this run's optimizer is sgd: ignored");
    /* RDED's special case (argument.py): CIFAR-100 (100 classes, 3x32x32) conv3 -> conv3 */
    const int rded_c100_conv3 = tc.labels == TRAIN_TEACHER && nteachers == 1 && tr.K == 100 && tr.C == 3 &&
                                tr.H == 32 && tr.W == 32 && !strcmp(m->arch, "convnet3") &&
                                !strcmp(teachers[0]->arch, "convnet3");
    if (isnan(lr))
        lr = kind == OPTIM_SGD ? 0.05 : tc.labels != TRAIN_TEACHER ? 1e-3 : rded_c100_conv3 ? 2e-3 : rded_lr(m->arch);
    if (isnan(wd)) wd = kind == OPTIM_SGD ? 5e-4 : 0.01;
    tc.opt = kind == OPTIM_SGD ? optim_sgd(lr, isnan(mom) ? 0.9 : mom, wd, 0)
           : kind == OPTIM_ADAM ? optim_adam(lr, b1, b2, 1e-8, wd) : optim_adamw(lr, b1, b2, 1e-8, wd);
    /* AdamW decays conv/linear weights only (the FKD and RDED protocols' parameter groups), except
     * on static labels: INFER's val_static.py gives torch.optim.AdamW one group, every parameter */
    tc.opt.decay_all = decay_all >= 0 ? decay_all : kind != OPTIM_ADAMW || tc.labels == TRAIN_STATIC;
    tc.eta = !isnan(eta) ? eta : tc.labels == TRAIN_TEACHER ? 2 : 1;
    tc.epochs = epochs >= 0 ? epochs : soft ? 300 : 3;
    /* a replay's batch is relabel's (the weights' metadata and the checkpoint say so) */
    tc.batch = labelsf ? (int)rinfo.batch
             : batch > 0 ? batch : tc.labels == TRAIN_STATIC ? 64
             : tc.labels == TRAIN_TEACHER ? rded_batch(&tr, rded_c100_conv3) : soft ? (tr.K == 10 ? 10 : 16) : 128;
    tc.micro = micro > 0 ? micro : tc.labels == TRAIN_REPLAY ? 2 : 1;
    if (micro > tc.batch)
        dd_warn("--micro %d exceeds the batch of %d: %d micro-batches of one image each", micro, tc.batch, tc.batch);
    /* RDED's student runs forward twice per step in train mode on the same batch (validation/main.py:
     * once for its accuracy, once for the loss), so its BN running statistics move twice: momentum
     * 1 - 0.9^2 */
    if (isnan(bnmom)) bnmom = tc.labels == TRAIN_TEACHER ? 0.19 : 0.1;
    m->bn_momentum = (float)bnmom;
    tc.shuffle = shuffle;
    tc.seed = (uint64_t)seed;
    tc.label_smoothing = (float)ls;
    tc.T = (float)T;
    /* RDED validates with its synthesis factor: with --teacher, the factor patchsel recorded in the
     * stream's history (its last patchsel entry), else 1 */
    if (!shufp) shufp = tc.labels == TRAIN_TEACHER ? history_factor(th) : 1;
    if (!noaug) {
        /* RDED's online-teacher protocol, and torchvision's ImageNet recipe for images of their own
         * sizes, unless --crop-pad asks for RandomCrop instead (INFER's val_dyn.py: --teacher with
         * RandomCrop(pad 4) and MixUp); --rrc-scale turns RandomResizedCrop on anywhere */
        int rrc = (tc.labels == TRAIN_TEACHER || train_res > 0) && pad < 0;
        tc.shuffle_patches = shufp;
        /* RDED's (--teacher): RandomResizedCrop(scale 1/f..1) after ShufflePatches(f), so f = 1 crops
         * nothing (ddpipe-method(7) section 4); elsewhere torchvision's 0.08..1 */
        tc.rrc_lo = !isnan(rrc_lo) ? rrc_lo : tc.labels == TRAIN_TEACHER || shufp > 1 ? 1.0 / shufp : 0.08;
        tc.rrc_hi = !isnan(rrc_hi) ? rrc_hi : rrc ? 1.0 : 0;
        tc.crop_pad = pad >= 0 ? pad : tc.labels == TRAIN_STATIC ? 4 : 0;
        tc.flip = flip;
        tc.cutmix = !isnan(cutmix) ? cutmix : tc.labels == TRAIN_TEACHER && isnan(mixup) ? 1.0 : 0;
        tc.mixup = !isnan(mixup) ? mixup : tc.labels == TRAIN_STATIC && isnan(cutmix) ? 0.8 : 0;
    }
    /* the reference evaluates soft-label students every 10th epoch and after the last (ddpipe-method(7) 4) */
    tc.eval_every = every > 0 ? every : soft ? 10 : 1;
    tc.eval_batch = ebatch;
    tc.checkpoint = ckpt;
    tc.checkpoint_every = ckevery;
    tc.stop_after = stop;
    tc.threads = threads ? threads : dd_threads_default();
    tc.quiet = quiet;
    tc.metrics = stdout;

    TrainResult res;
    if (train_run(nn, &tc, m, &tr, vin ? &val : NULL, teachers, lr_in, &rinfo, &res) < 0) dd_die_err(DD_EXIT_DATA);
    /* the metrics first: a stdout that fails (a full disk) fails the run before --save appears */
    if (dd_fflush_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
    if (save && !res.stopped) {
        static const char *const opt_names[] = {[OPTIM_SGD] = "sgd", [OPTIM_ADAM] = "adam", [OPTIM_ADAMW] = "adamw"};
        json_t *sum = json_pack("{s:s,s:s,s:s,s:I,s:i,s:s,s:s,s:f,s:f,s:s,s:i,s:i,s:I}", "prog", "evaltrain", "version",
                                DD_VERSION, "train", tname, "records", (json_int_t)tr.n, "epochs", res.epochs_done, "labels",
                                label_names[tc.labels], "optimizer", opt_names[kind], "lr", lr, "wd", wd, "decay",
                                tc.opt.decay_all ? "all" : "weights", "batch", tc.batch, "micro", tc.micro, "seed",
                                (json_int_t)seed);
        if (nn_precision(nn) != NN_FP32)
            json_object_set_new(sum, "precision", json_string(nn_precision_name(nn_precision(nn))));
        if (train_res) json_object_set_new(sum, "res", json_integer(train_res));
        if (bnmom != 0.1) json_object_set_new(sum, "bn_momentum", json_real(bnmom));
        json_object_set_new(sum, "recipe", train_recipe(&tc)); /* T, eta, augmentation: all of it */
        if (isfinite(res.final_top1)) {
            json_object_set_new(sum, "final_top1", json_real(res.final_top1));
            json_object_set_new(sum, "best_top1", json_real(res.best_top1));
            json_object_set_new(sum, "best_epoch", json_integer(res.best_epoch));
            json_object_set_new(sum, "val", json_string(valf));
        }
        char *s = json_dumps(sum, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_t *extra = json_pack("{s:s}", "training", s);
        int nc = ts_header_nclasses(th);
        const char **names = dd_calloc((size_t)nc, sizeof *names);
        for (int i = 0; i < nc; i++) names[i] = ts_header_class(th, i);
        if (model_save(save, m, nc, names, extra) < 0) dd_die_err(DD_EXIT_DATA);
        free(names);
        free(s);
        json_decref(extra);
        json_decref(sum);
    }
    if (dd_fclose_checked(stdout, "stdout") < 0) dd_die_err(DD_EXIT_DATA);
    train_data_free(&tr);
    if (vin) {
        train_data_free(&val);
        ts_input_close(vin);
    }
    ts_reader_close(lr_in);
    ts_input_close(in);
    for (int k = 0; k < nteachers; k++) model_free(teachers[k]);
    model_free(m);
    nn_free(nn);
    return 0;
}

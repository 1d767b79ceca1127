/* tsimport.c - a dataset on disk -> the record stream on stdout: IDX (MNIST, Fashion-MNIST),
 * CIFAR-10/100 binary, ImageFolder trees, and npy directories (the inverse of tsexport --npy).
 * Images travel as U8 [C,H,W] (the datasets' own bytes, 4x smaller than F32) except npy float32
 * images, which stay F32. Keys are SPLIT_NNNNNN (position in the dataset order), or keys.txt for
 * npy. See tsimport(1).
 */
#include <dirent.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/codecs.h"
#include "formats/stream.h"
#include "libcommon/base/base.h"

static const char *const fmnist_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
static const char *const digit_names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const cifar10_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                              "dog", "frog", "horse", "ship", "truck"};

/* Where records go: header options, the writer, the limit and progress. */
typedef struct {
    int argc;
    char **argv;
    const char *output, *classes_file, *split;
    int64_t limit, n;
    int quiet, threads;
    TsWriter *w;
    TsRecord rec;
    DdProgress prog;
} Out;

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [options] DATASET\n"
               "Import a dataset as a record stream on stdout.\n"
               "  -f, --format F         idx | cifar10 | cifar100 | imagefolder | npy (default: guessed)\n"
               "  -S, --split S          train | test (default train); imagefolder: any\n"
               "                         directory name, e.g. val\n"
               "  -n, --limit N          import the first N records only\n"
               "  -c, --classes-file F   class names, one per line (overrides the dataset's)\n"
               "  -j, --threads N        imagefolder: threads decoding images (default: all cores)\n"
               "  -o, --output FILE      write FILE atomically instead of stdout\n"
               "  -q, --quiet            no progress\n"
               "  -h, --help             this text\n"
               "      --version          version\n", dd_prog());
}

static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }
static int is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = dd_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* dir/name(.gz): the existing one, or NULL. */
static char *find_gz(const char *dir, const char *name)
{
    char gz[256];
    snprintf(gz, sizeof gz, "%s.gz", name);
    char *p = path_join(dir, gz);
    if (is_file(p)) return p;
    free(p);
    p = path_join(dir, name);
    if (is_file(p)) return p;
    free(p);
    return NULL;
}

static int has(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    int r = is_file(p);
    free(p);
    return r;
}

static const char *guess_format(const char *path)
{
    if (!is_dir(path)) return NULL;
    char *p;
    if ((p = find_gz(path, "train-images-idx3-ubyte")) || (p = find_gz(path, "t10k-images-idx3-ubyte"))) {
        free(p);
        return "idx";
    }
    if (has(path, "data_batch_1.bin") || has(path, "test_batch.bin")) return "cifar10";
    if (has(path, "train.bin") && has(path, "fine_label_names.txt")) return "cifar100";
    if (has(path, "data_batch_1") || has(path, "test_batch")) return "cifar10";       /* python */
    if ((has(path, "train") || has(path, "test")) && has(path, "meta")) return "cifar100";
    if (has(path, "image.npy")) return "npy";
    DIR *d = opendir(path);
    struct dirent *e;
    int sub = 0;
    while (d && !sub && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *q = path_join(path, e->d_name);
        sub = is_dir(q);
        free(q);
    }
    if (d) closedir(d);
    return sub ? "imagefolder" : NULL;
}

/* Opens the writer with the dataset's class names, or those of --classes-file. */
static void out_begin(Out *o, int n, const char *const *names)
{
    char **lines = NULL;
    int nl = 0;
    if (o->classes_file) {
        if (dd_read_lines(o->classes_file, &lines, &nl) < 0) dd_die_err(DD_EXIT_DATA);
        n = nl;
        names = (const char *const *)lines;
    }
    TsHeader *h = ts_header_new(n, names);
    ts_header_add_history(h, o->argc, o->argv, -1, NULL);
    o->w = ts_writer_open(o->output, h);
    if (!o->w) dd_die_err(DD_EXIT_DATA);
    ts_header_free(h);
    if (lines) dd_lines_free(lines, nl);
    ts_record_init(&o->rec);
    dd_progress_start(&o->prog, "records", -1, o->quiet);
}

/* Writes one record; `image` is moved into it (a borrowed view or an owning tensor). Returns 0
 * when --limit is reached. */
static int out_put(Out *o, Tensor image, int64_t label, const char *src, int64_t index)
{
    TsRecord *r = &o->rec;
    ts_record_clear(r);
    snprintf(r->key, sizeof r->key, "%s_%06lld", o->split, (long long)o->n);
    ts_record_set(r, "image", image);
    if (label >= 0) ts_record_set(r, "label", tensor_scalar_i64(label));
    json_t *m = json_pack("{s:s,s:I}", "src", src, "index", (json_int_t)index);
    char *txt = json_dumps(m, JSON_COMPACT);
    ts_record_set_meta(r, txt);
    free(txt);
    json_decref(m);
    if (ts_writer_put(o->w, r) < 0) dd_die_err(DD_EXIT_DATA);
    dd_progress_update(&o->prog, ++o->n);
    return o->limit < 0 || o->n < o->limit;
}

static Tensor view(DdDtype dt, int ndim, const int64_t *shape, void *data)
{
    Tensor t = {.dtype = dt, .ndim = ndim, .data = data, .owns = 0};
    memcpy(t.shape, shape, sizeof(int64_t) * (size_t)ndim);
    return t;
}

static void import_idx(Out *o, const char *dir)
{
    const char *pre = strcmp(o->split, "test") == 0 ? "t10k" : "train";
    char ni[64], nl[64];
    snprintf(ni, sizeof ni, "%s-images-idx3-ubyte", pre);
    snprintf(nl, sizeof nl, "%s-labels-idx1-ubyte", pre);
    char *pi = find_gz(dir, ni), *pl = find_gz(dir, nl);
    if (!pi || !pl) dd_die(DD_EXIT_DATA, "%s: no %s or %s (.gz)", dir, ni, nl);
    Tensor im, lb;
    if (idx_read(pi, &im) < 0 || idx_read(pl, &lb) < 0) dd_die_err(DD_EXIT_DATA);
    if (im.ndim != 3 || im.dtype != DD_U8 || lb.ndim != 1 || lb.shape[0] != im.shape[0])
        dd_die(DD_EXIT_DATA, "%s: images and labels do not match", dir);
    /* Debian's fashion-mnist, torchvision's FashionMNIST/raw (the path as resolved: "." too) */
    char *real = realpath(dir, NULL);
    out_begin(o, 10, strcasestr(real ? real : dir, "fashion") ? fmnist_names : digit_names);
    free(real);
    const char *src = strrchr(pi, '/') + 1;
    int64_t shape[3] = {1, im.shape[1], im.shape[2]}, sz = im.shape[1] * im.shape[2];
    for (int64_t i = 0; i < im.shape[0]; i++)
        if (!out_put(o, view(DD_U8, 3, shape, (uint8_t *)im.data + i * sz),
                     (int64_t)tensor_get_f64(&lb, i), src, i)) break;
    tensor_free(&im);
    tensor_free(&lb);
    free(pi);
    free(pl);
}

static void import_cifar(Out *o, const char *dir, int c100)
{
    const int test = strcmp(o->split, "test") == 0;
    /* the binary version (*.bin, *.txt names), else the python one (pickles, torchvision's download) */
    const char *first_bin = c100 ? (test ? "test.bin" : "train.bin") : test ? "test_batch.bin" : "data_batch_1.bin";
    const char *first_py = c100 ? (test ? "test" : "train") : test ? "test_batch" : "data_batch_1";
    const int py = !has(dir, first_bin) && has(dir, first_py);
    char **names = NULL;
    int nn = 0;
    char *meta = path_join(dir, py ? (c100 ? "meta" : "batches.meta")
                                   : c100 ? "fine_label_names.txt" : "batches.meta.txt");
    if (is_file(meta) && (py ? cifar_names_py(meta, c100, &names, &nn) : dd_read_lines(meta, &names, &nn)) < 0)
        dd_die_err(DD_EXIT_DATA);
    if (!names && c100 && !o->classes_file) dd_die(DD_EXIT_DATA, "%s: missing", meta);
    free(meta);
    out_begin(o, names ? nn : 10, names ? (const char *const *)names : cifar10_names);
    const int nfiles = c100 || test ? 1 : 5;
    int64_t shape[3] = {3, 32, 32};
    int more = o->limit != 0;
    for (int f = 0; f < nfiles && more; f++) {
        char nm[32];
        if (c100) snprintf(nm, sizeof nm, "%s%s", test ? "test" : "train", py ? "" : ".bin");
        else if (test) snprintf(nm, sizeof nm, "test_batch%s", py ? "" : ".bin");
        else snprintf(nm, sizeof nm, "data_batch_%d%s", f + 1, py ? "" : ".bin");
        char *p = path_join(dir, nm);
        Tensor im, lb;
        if ((py ? cifar_read_py(p, c100, &im, &lb) : cifar_read(p, c100, &im, &lb)) < 0) dd_die_err(DD_EXIT_DATA);
        const int64_t *l = lb.data;
        for (int64_t i = 0; i < im.shape[0] && more; i++)
            more = out_put(o, view(DD_U8, 3, shape, (uint8_t *)im.data + i * 3072), l[i], nm, i);
        tensor_free(&im);
        tensor_free(&lb);
        free(p);
    }
    if (names) dd_lines_free(names, nn);
}

/* ImageFolder decoding (1-2 ms per ImageNet JPEG, the whole cost of the import) runs on -j
 * threads over a window of files at a time; the main thread writes the window in file order, so
 * the output is the same bytes for any thread count and an error names the first bad file. */
typedef struct {
    char **paths;        /* the window's files */
    int64_t n, next;     /* files in the window; the next one to take (atomic) */
    Tensor *im;          /* [n] decoded, RGB */
    char (*err)[1024];   /* [n] "" or the message */
} Window;

static void decode_one(const char *path, Tensor *im, char *err)
{
    void *buf;
    size_t len;
    err[0] = 0;
    if (dd_read_file(path, &buf, &len) < 0) {
        snprintf(err, 1024, "%s", dd_errmsg());
        return;
    }
    int rc = image_decode(buf, len, path, im);
    free(buf);
    if (rc < 0) {
        snprintf(err, 1024, "%s", dd_errmsg());
        return;
    }
    if (im->shape[0] == 1) { /* ImageFolder loaders convert everything to RGB */
        Tensor rgb = tensor_newv(DD_U8, 3, (int64_t)3, im->shape[1], im->shape[2]);
        size_t plane = (size_t)(im->shape[1] * im->shape[2]);
        for (int c = 0; c < 3; c++) memcpy((uint8_t *)rgb.data + c * plane, im->data, plane);
        tensor_free(im);
        *im = rgb;
    }
}

static void *decode_worker(void *arg)
{
    Window *w = arg;
    for (int64_t k; (k = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->n;)
        decode_one(w->paths[k], &w->im[k], w->err[k]);
    return NULL;
}

static void import_folder(Out *o, const char *root)
{
    ImageFolder f;
    if (imagefolder_scan(root, &f) < 0) dd_die_err(DD_EXIT_DATA);
    out_begin(o, f.nclasses, (const char *const *)f.classes);
    const int nt = o->threads > 0 ? o->threads : dd_threads_default();
    const int64_t cap = 8 * (int64_t)nt;   /* decoded images held at once */
    Window w = {.im = dd_malloc((size_t)cap * sizeof *w.im), .err = dd_malloc((size_t)cap * sizeof *w.err)};
    pthread_t *tid = dd_malloc((size_t)nt * sizeof *tid);
    int more = o->limit != 0;
    for (int64_t base = 0; base < f.nfiles && more; base += w.n) {
        w.paths = f.paths + base;
        w.n = f.nfiles - base < cap ? f.nfiles - base : cap;
        if (o->limit >= 0 && w.n > o->limit - o->n) w.n = o->limit - o->n;
        w.next = 0;
        int started = 0;
        for (; started < nt - 1 && started + 1 < w.n; started++)
            if (pthread_create(&tid[started], NULL, decode_worker, &w)) break;
        decode_worker(&w);
        for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
        for (int64_t k = 0; k < w.n; k++) {
            if (w.err[k][0]) dd_die(DD_EXIT_DATA, "%s", w.err[k]);
            const char *src = strrchr(w.paths[k], '/');     /* "class/file" for the meta */
            if (src) while (src > w.paths[k] && src[-1] != '/') src--;
            else src = w.paths[k];
            more = out_put(o, w.im[k], f.labels[base + k], src, base + k);
        }
    }
    free(tid);
    free(w.im);
    free(w.err);
    imagefolder_free(&f);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* image.npy [N,C,H,W] (+ label.npy [N], keys.txt, classes.txt, other NAME.npy [N,...]). */
static void import_npy(Out *o, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) dd_die(DD_EXIT_DATA, "%s: cannot open directory", dir);
    char *names[TS_NAME_MAX + 64];
    Tensor t[TS_NAME_MAX + 64];
    int nf = 0, img = -1, lab = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".npy") || e->d_name[0] == '.') continue;
        if (nf == (int)(sizeof names / sizeof *names)) dd_die(DD_EXIT_DATA, "%s: too many .npy files", dir);
        names[nf] = dd_strdup(e->d_name);
        names[nf++][len - 4] = 0;
    }
    closedir(d);
    qsort(names, (size_t)nf, sizeof *names, cmp_str);
    for (int i = 0; i < nf; i++) {
        char fn[TS_NAME_MAX + 8];
        snprintf(fn, sizeof fn, "%s.npy", names[i]);
        char *p = path_join(dir, fn);
        if (!ts_key_valid(names[i])) dd_die(DD_EXIT_DATA, "%s: '%s' is not a valid field name", p, names[i]);
        if (npy_read_file(p, &t[i]) < 0) dd_die_err(DD_EXIT_DATA);
        if (t[i].ndim < 1) dd_die(DD_EXIT_DATA, "%s: scalar, want one row per record", p);
        free(p);
        if (!strcmp(names[i], "image")) img = i;
        if (!strcmp(names[i], "label")) lab = i;
    }
    if (img < 0) dd_die(DD_EXIT_DATA, "%s: no image.npy", dir);
    const int64_t n = t[img].shape[0];
    if (t[img].ndim != 4) dd_die(DD_EXIT_DATA, "%s/image.npy: want shape [N,C,H,W]", dir);
    for (int i = 0; i < nf; i++)
        if (t[i].shape[0] != n) dd_die(DD_EXIT_DATA, "%s/%s.npy: %lld rows, image.npy has %lld", dir,
                                       names[i], (long long)t[i].shape[0], (long long)n);
    char **keys = NULL, **cls = NULL;
    int nk = 0, nc = 0;
    char *kp = path_join(dir, "keys.txt"), *cp = path_join(dir, "classes.txt");
    if (is_file(kp) && dd_read_lines(kp, &keys, &nk) < 0) dd_die_err(DD_EXIT_DATA);
    if (keys && nk != n) dd_die(DD_EXIT_DATA, "%s: %d keys for %lld records", kp, nk, (long long)n);
    if (is_file(cp) && dd_read_lines(cp, &cls, &nc) < 0) dd_die_err(DD_EXIT_DATA);
    char **gen = NULL;
    if (!cls) { /* classes "0".."K-1", K = 1 + the largest label */
        int64_t k = 0;
        for (int64_t i = 0; lab >= 0 && i < n; i++)
            if ((int64_t)tensor_get_f64(&t[lab], i) + 1 > k) k = (int64_t)tensor_get_f64(&t[lab], i) + 1;
        gen = dd_calloc((size_t)k + 1, sizeof *gen);
        for (nc = 0; nc < k; nc++) {
            gen[nc] = dd_malloc(24);
            snprintf(gen[nc], 24, "%d", nc);
        }
    }
    out_begin(o, nc, (const char *const *)(cls ? cls : gen));
    for (int64_t i = 0; i < n; i++) {
        TsRecord *r = &o->rec;
        ts_record_clear(r);
        if (keys && !ts_key_valid(keys[i])) dd_die(DD_EXIT_DATA, "%s: line %lld: bad key", kp, (long long)i + 1);
        if (keys) snprintf(r->key, sizeof r->key, "%s", keys[i]);
        else snprintf(r->key, sizeof r->key, "%s_%06lld", o->split, (long long)i);
        for (int f = 0; f < nf; f++) {
            if (f == lab) {
                ts_record_set(r, "label", tensor_scalar_i64((int64_t)tensor_get_f64(&t[f], i)));
                continue;
            }
            size_t row = (size_t)(tensor_nbytes(&t[f]) / n);
            ts_record_set(r, names[f], view(t[f].dtype, t[f].ndim - 1, t[f].shape + 1, (char *)t[f].data + i * row));
        }
        if (ts_writer_put(o->w, r) < 0) dd_die_err(DD_EXIT_DATA);
        dd_progress_update(&o->prog, ++o->n);
        if (o->limit >= 0 && o->n >= o->limit) break;
    }
    for (int i = 0; i < nf; i++) { tensor_free(&t[i]); free(names[i]); }
    if (keys) dd_lines_free(keys, nk);
    if (cls) dd_lines_free(cls, nc);
    for (int i = 0; gen && i < nc; i++) free(gen[i]);
    free(gen);
    free(kp);
    free(cp);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    static const struct option lo[] = {
        {"format", 1, 0, 'f'}, {"split", 1, 0, 'S'}, {"limit", 1, 0, 'n'}, {"classes-file", 1, 0, 'c'},
        {"output", 1, 0, 'o'}, {"quiet", 0, 0, 'q'}, {"threads", 1, 0, 'j'}, {"help", 0, 0, 'h'},
        {"version", 0, 0, 'V'}, {0}};
    Out o = {.argc = argc, .argv = argv, .output = "-", .split = "train", .limit = -1};
    const char *format = NULL;
    int c, split_given = 0;
    while ((c = getopt_long(argc, argv, "f:S:n:c:o:j:qh", lo, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'S': o.split = optarg; split_given = 1; break;
        case 'n': o.limit = dd_opt_long("--limit", optarg, 0, INT64_MAX); break;
        case 'c': o.classes_file = optarg; break;
        case 'j': o.threads = (int)dd_opt_long("--threads", optarg, 1, 4096); break;
        case 'o': o.output = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': dd_version_exit();
        default: dd_die(DD_EXIT_USAGE, "try '%s --help'", dd_prog());
        }
    }
    if (optind != argc - 1) dd_die(DD_EXIT_USAGE, "want exactly one DATASET operand (try --help)");
    const char *path = argv[optind];
    const int traintest = !strcmp(o.split, "train") || !strcmp(o.split, "test");
    if (!format && !(format = guess_format(path)))
        dd_die(DD_EXIT_USAGE, "%s: cannot guess the dataset format; use --format", path);
    static const char *const formats[] = {"idx", "cifar10", "cifar100", "imagefolder", "npy"};
    int fmt = 0;
    while (fmt < 5 && strcmp(format, formats[fmt])) fmt++;
    if (fmt == 5) dd_die(DD_EXIT_USAGE, "--format: unknown format '%s'", format);
    /* the split names keys (SPLIT_NNNNNN) and, for an ImageFolder tree, its directory ROOT/SPLIT
     * (ImageNet's val); the other formats know train and test only */
    size_t sl = strlen(o.split);
    if (fmt != 3 && !traintest) dd_die(DD_EXIT_USAGE, "--split: '%s' is not train or test", o.split);
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    if (!sl || sl > 32 || strspn(o.split, name_chars) != sl)
        dd_die(DD_EXIT_USAGE, "--split: '%s' is not a directory name of at most 32 letters, digits, - or _",
               o.split);
    if (!strcmp(o.output, "-")) dd_refuse_tty_stdout();
    char *split_dir = path_join(path, o.split);   /* ImageFolder: ROOT/SPLIT when --split is given */
    char *train_dir = path_join(path, "train");
    /* train and test fall back to a tree without splits, not to the class folders "train", "val" */
    if (fmt == 3 && split_given && !is_dir(split_dir) && (!traintest || is_dir(train_dir))) {
        dd_err("%s: no such directory (--split %s)%s", split_dir, o.split,
               is_dir(train_dir) ? "; the tree's splits are its folders, such as train and val" : "");
        free(split_dir);
        free(train_dir);
        dd_die_err(DD_EXIT_DATA);
    }
    free(train_dir);
    switch (fmt) {
    case 0: import_idx(&o, path); break;
    case 1: case 2: import_cifar(&o, path, fmt == 2); break;
    case 3: import_folder(&o, split_given && is_dir(split_dir) ? split_dir : path); break;
    default: import_npy(&o, path); break;
    }
    free(split_dir);
    dd_progress_end(&o.prog);
    if (ts_writer_close(o.w) < 0) dd_die_err(DD_EXIT_DATA);
    ts_record_free(&o.rec);
    return 0;
}

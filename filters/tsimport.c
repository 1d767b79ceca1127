/* tsimport.c - a dataset on disk -> the record stream on stdout: IDX (MNIST, Fashion-MNIST),
 * CIFAR-10/100 binary, ImageFolder trees, and npy directories (the inverse of tsexport --npy).
 * Images travel as U8 [C,H,W] (the datasets' own bytes, 4x smaller than F32) except npy float32
 * images, which stay F32. Keys are SPLIT_NNNNNN (position in the dataset order), or keys.txt for
 * npy. See tsimport(1).
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "formats/codecs.h"
#include "formats/npydir.h"
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
    const char *classes_from;   /* where the class names come from, for messages */
    int ncls;
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
               "  -j, --threads N        imagefolder: threads decoding images (default: the CPUs usable)\n"
               "  -o, --output FILE      write FILE atomically instead of stdout\n"
               "  -q, --quiet            no progress\n"
               "  -h, --help             this text\n"
               "      --version          version\n", dd_prog());
}

/* Opens the writer with the dataset's class names, or those of --classes-file. */
static void out_begin(Out *o, int n, const char *const *names, const char *from)
{
    char **lines = NULL;
    int nl = 0;
    if (o->classes_file) {
        if (dd_read_lines(o->classes_file, &lines, &nl) < 0) dd_die_err(DD_EXIT_DATA);
        n = nl;
        names = (const char *const *)lines;
        from = o->classes_file;
    }
    /* one name per class: tscat -c NAME and the class-list checks between streams go by names */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                dd_die(DD_EXIT_DATA, "%s: class '%s' is named twice (classes %d and %d)", from, names[i], j, i);
    o->ncls = n;
    o->classes_from = from;
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
    if (label >= o->ncls)
        dd_die(DD_EXIT_DATA, "%s: record %lld (%s): label %lld outside the %d classes of %s", src, (long long)index,
               r->key, (long long)label, o->ncls, o->classes_from);
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
    char *pi = dd_find_gz(dir, ni), *pl = dd_find_gz(dir, nl);
    if (!pi || !pl) dd_die(DD_EXIT_DATA, "%s: no %s or %s (.gz)", dir, ni, nl);
    Tensor im, lb;
    if (idx_read(pi, &im) < 0 || idx_read(pl, &lb) < 0) dd_die_err(DD_EXIT_DATA);
    char da[96], db[96];
    tensor_describe(&im, da, sizeof da);
    tensor_describe(&lb, db, sizeof db);
    if (im.ndim != 3 || im.dtype != DD_U8 || im.shape[1] < 1 || im.shape[2] < 1)
        dd_die(DD_EXIT_DATA, "%s: images are %s, want U8 [N,H,W] with H, W >= 1", pi, da);
    if (lb.ndim != 1 || (lb.dtype != DD_U8 && lb.dtype != DD_I8 && lb.dtype != DD_I16 && lb.dtype != DD_I32))
        dd_die(DD_EXIT_DATA, "%s: labels are %s, want integers [N]", pl, db);
    if (lb.shape[0] != im.shape[0])
        dd_die(DD_EXIT_DATA, "%s: %lld labels for the %lld images of %s", pl, (long long)lb.shape[0],
               (long long)im.shape[0], pi);
    /* Debian's fashion-mnist, torchvision's FashionMNIST/raw (the path as resolved: "." too) */
    char *real = realpath(dir, NULL);
    const int fashion = strcasestr(real ? real : dir, "fashion") != NULL;
    out_begin(o, 10, fashion ? fmnist_names : digit_names, fashion ? "Fashion-MNIST's names" : "MNIST's digits");
    free(real);
    const char *src = strrchr(pi, '/') + 1;
    for (int64_t i = 0; i < lb.shape[0]; i++) /* a negative label would leave its record without one */
        if (tensor_get_f64(&lb, i) < 0)
            dd_die(DD_EXIT_DATA, "%s: record %lld: label %lld is negative", pl, (long long)i,
                   (long long)tensor_get_f64(&lb, i));
    int64_t shape[3] = {1, im.shape[1], im.shape[2]}, sz = im.shape[1] * im.shape[2];
    for (int64_t i = 0; i < im.shape[0] && o->limit != 0; i++) {
        const int64_t label = (int64_t)tensor_get_f64(&lb, i);
        if (label >= o->ncls) /* here, naming the labels' file (out_put would name the images') */
            dd_die(DD_EXIT_DATA, "%s: record %lld (%s_%06lld): label %lld outside the %d classes of %s", pl, (long long)i,
                   o->split, (long long)o->n, (long long)label, o->ncls, o->classes_from);
        if (!out_put(o, view(DD_U8, 3, shape, (uint8_t *)im.data + i * sz), label, src, i)) break;
    }
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
    const int py = !dd_has_file(dir, first_bin) && dd_has_file(dir, first_py);
    char **names = NULL;
    int nn = 0;
    char *meta = dd_path_join(dir, py ? (c100 ? "meta" : "batches.meta")
                                   : c100 ? "fine_label_names.txt" : "batches.meta.txt");
    if (dd_is_file(meta) && (py ? cifar_names_py(meta, c100, &names, &nn) : dd_read_lines(meta, &names, &nn)) < 0)
        dd_die_err(DD_EXIT_DATA);
    if (!names && c100 && !o->classes_file) dd_die(DD_EXIT_DATA, "%s: missing", meta);
    out_begin(o, names ? nn : 10, names ? (const char *const *)names : cifar10_names, names ? meta : "CIFAR-10's names");
    const int nfiles = c100 || test ? 1 : 5;
    int64_t shape[3] = {3, 32, 32};
    int more = o->limit != 0;
    for (int f = 0; f < nfiles && more; f++) {
        char nm[32];
        if (c100) snprintf(nm, sizeof nm, "%s%s", test ? "test" : "train", py ? "" : ".bin");
        else if (test) snprintf(nm, sizeof nm, "test_batch%s", py ? "" : ".bin");
        else snprintf(nm, sizeof nm, "data_batch_%d%s", f + 1, py ? "" : ".bin");
        char *p = dd_path_join(dir, nm);
        Tensor im, lb;
        if (f > 0 && access(p, F_OK) < 0) /* the training split is the five batches: one missing is no subset */
            dd_die(DD_EXIT_DATA, "%s: %s (CIFAR-10's training split is data_batch_1 to data_batch_5, all five; "
                   "tscat --head or -e takes a subset)", p, strerror(errno));
        if ((py ? cifar_read_py(p, c100, &im, &lb) : cifar_read(p, c100, &im, &lb)) < 0) dd_die_err(DD_EXIT_DATA);
        const int64_t *l = lb.data;
        for (int64_t i = 0; i < im.shape[0] && more; i++)
            more = out_put(o, view(DD_U8, 3, shape, (uint8_t *)im.data + i * 3072), l[i], nm, i);
        tensor_free(&im);
        tensor_free(&lb);
        free(p);
    }
    if (names) dd_lines_free(names, nn);
    o->classes_from = NULL;
    free(meta);   /* o->classes_from until here */
}

/* ImageFolder decoding (1-2 ms per ImageNet JPEG, the whole cost of the import) runs on -j
 * threads over a window of files at a time; the window is written in file order, so the output is
 * the same bytes for any thread count and an error names the first bad file. */
static void import_folder(Out *o, const char *root)
{
    ImageFolder f;
    if (imagefolder_scan(root, &f) < 0) dd_die_err(DD_EXIT_DATA);
    out_begin(o, f.nclasses, (const char *const *)f.classes, root);
    const int nt = o->threads > 0 ? o->threads : dd_threads_default();
    const int64_t cap = 8 * (int64_t)nt;   /* decoded images held at once */
    const size_t rootlen = strlen(root);
    Tensor *im = dd_malloc((size_t)cap * sizeof *im);
    int more = o->limit != 0;
    for (int64_t base = 0, n; base < f.nfiles && more; base += n) {
        n = f.nfiles - base < cap ? f.nfiles - base : cap;
        if (o->limit >= 0 && n > o->limit - o->n) n = o->limit - o->n;
        const int64_t ok = imagefolder_decode(&f, base, n, nt, im);
        for (int64_t k = 0; k < ok; k++) {
            /* the file under ROOT for the meta ("class/file", "class/images/file": Tiny-ImageNet's) */
            const char *p = f.paths[base + k], *src = p;
            if (!strncmp(p, root, rootlen)) src += rootlen;
            while (*src == '/') src++;
            more = out_put(o, im[k], f.labels[base + k], src, base + k);
        }
        if (ok < n) dd_die_err(DD_EXIT_DATA);
    }
    free(im);
    imagefolder_free(&f);
}

typedef struct {
    const char *key;
    int64_t line;
} KeyLine;

static int cmp_keyline(const void *a, const void *b)
{
    const KeyLine *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Dies naming both lines when keys.txt repeats a key (the stream writer would name only the
 * output and the second record). */
static void keys_unique(const char *dir, char **keys, int64_t n)
{
    KeyLine *kl = dd_malloc((size_t)(n ? n : 1) * sizeof *kl);
    for (int64_t i = 0; i < n; i++) kl[i] = (KeyLine){keys[i], i + 1};
    qsort(kl, (size_t)n, sizeof *kl, cmp_keyline);
    for (int64_t i = 1; i < n; i++)
        if (!strcmp(kl[i].key, kl[i - 1].key))
            dd_die(DD_EXIT_DATA, "%s/keys.txt: line %lld: key '%s' repeats line %lld", dir, (long long)kl[i].line,
                   kl[i].key, (long long)kl[i - 1].line);
    free(kl);
}

/* An npy directory (npydir.h): its rows as records, keys from keys.txt or SPLIT_NNNNNN. */
static void import_npy(Out *o, const char *dir)
{
    NpyDir d;
    if (npydir_read(dir, &d) < 0) dd_die_err(DD_EXIT_DATA);
    if (d.keys) keys_unique(dir, d.keys, d.n);
    char *cls = dd_path_join(dir, "classes.txt");   /* o->classes_from until the end */
    out_begin(o, d.nclasses, (const char *const *)d.classes, cls);
    for (int64_t i = 0; i < d.n && (o->limit < 0 || o->n < o->limit); i++) {
        TsRecord *r = &o->rec;
        ts_record_clear(r);
        if (d.keys && !ts_key_valid(d.keys[i]))
            dd_die(DD_EXIT_DATA, "%s/keys.txt: line %lld: bad key", dir, (long long)i + 1);
        if (d.keys) snprintf(r->key, sizeof r->key, "%s", d.keys[i]);
        else snprintf(r->key, sizeof r->key, "%s_%06lld", o->split, (long long)i);
        for (int f = 0; f < d.nfields; f++) {
            const Tensor *t = &d.t[f];
            if (f == d.label) {
                const int64_t y = (int64_t)tensor_get_f64(t, i);   /* 0 <= y < 2^20: npydir_read */
                if (y >= o->ncls) /* classes.txt, or the --classes-file replacing it, lists fewer */
                    dd_die(DD_EXIT_DATA, "%s/label.npy: row %lld: label %lld outside the %d classes of %s", dir,
                           (long long)i, (long long)y, o->ncls, o->classes_from);
                ts_record_set(r, "label", tensor_scalar_i64(y));
                continue;
            }
            size_t row = (size_t)(tensor_nbytes(t) / d.n);
            ts_record_set(r, d.names[f], view(t->dtype, t->ndim - 1, t->shape + 1, (char *)t->data + i * row));
        }
        if (ts_writer_put(o->w, r) < 0) dd_die_err(DD_EXIT_DATA);
        dd_progress_update(&o->prog, ++o->n);
    }
    o->classes_from = NULL;
    free(cls);
    npydir_free(&d);
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
    const char *shortopts = "f:S:n:c:o:j:qh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'S': o.split = optarg; split_given = 1; break;
        case 'n': o.limit = dd_opt_long("--limit", optarg, 0, INT64_MAX); break;
        case 'c': o.classes_file = optarg; break;
        case 'j': o.threads = (int)dd_opt_long("--threads", optarg, 1, DD_MAX_THREADS); break;
        case 'o': o.output = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case 'V': dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (optind != argc - 1) dd_die(DD_EXIT_USAGE, "want exactly one DATASET operand (try --help)");
    const char *path = argv[optind];
    const int traintest = !strcmp(o.split, "train") || !strcmp(o.split, "test");
    struct stat st;
    if (stat(path, &st) < 0) dd_die(DD_EXIT_DATA, "%s: %s", path, strerror(errno));
    if (!format && !S_ISDIR(st.st_mode))
        dd_die(DD_EXIT_USAGE, "%s: not a directory: DATASET is a dataset's directory (IDX, CIFAR, npy, ImageFolder; "
               "man 1 tsimport)", path);
    /* torchvision's root (CIFAR10(root, download=True) unpacks into root/cifar-10-batches-py) and
     * the binary tarballs' folders: the one of them DATASET holds, where DATASET holds no dataset
     * of its own (it would be read as an ImageFolder of one class, the folder) */
    char *cifar_sub = NULL;
    static const char *const cifar_dirs[] = {"cifar-10-batches-py", "cifar-10-batches-bin", "cifar-100-python",
                                             "cifar-100-binary"};
    const char *g = S_ISDIR(st.st_mode) ? dataset_guess_format(path) : NULL;
    if (S_ISDIR(st.st_mode) && (!g || !strcmp(g, "imagefolder")) && (!format || strncmp(format, "cifar", 5) == 0)) {
        int nfound = 0;
        for (int i = 0; i < 4; i++) {
            char *q = dd_path_join(path, cifar_dirs[i]);
            if (dd_is_dir(q) && !nfound++) cifar_sub = q;
            else free(q);
        }
        if (nfound > 1) dd_die(DD_EXIT_USAGE, "%s: holds several CIFAR folders: give one of them as DATASET", path);
        if (cifar_sub) path = cifar_sub;
    }
    if (!format && !(format = dataset_guess_format(path)))
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
    char *split_dir = dd_path_join(path, o.split);   /* ImageFolder: ROOT/SPLIT of a tree with splits */
    /* ImageFolder: a tree with splits (ROOT/train of class folders: ImageNet's, ImageNette's, Tiny-ImageNet's)
     * is read at ROOT/SPLIT, train by default; a tree of classes (one of them may be named train or val) whole,
     * for --split train or test; a split that the tree does not have is an error */
    const char *folder = path;
    if (fmt == 3) {
        int splits = imagefolder_has_splits(path, "train", 1);
        if (splits < 0 && !split_given) {
            free(split_dir);
            dd_die_err(DD_EXIT_DATA);
        }
        if (split_given ? imagefolder_has_splits(path, o.split, 0) : splits) {
            folder = split_dir;
        } else if (split_given && (splits || !traintest)) {
            dd_err("%s: %s (--split %s); %s", split_dir,
                   dd_is_dir(split_dir) ? "not a split of class folders" : "no such directory", o.split,
                   splits ? "the tree's splits are its folders of class folders, such as train and val"
                          : "a tree of classes (its folders hold images), read whole as --split train or test");
            free(split_dir);
            dd_die_err(DD_EXIT_DATA);
        } else if (split_given && !strcmp(o.split, "test")) {
            dd_warn("%s has no folder test of class folders: the whole tree read as split test", path);
        }
    }
    switch (fmt) {
    case 0: import_idx(&o, path); break;
    case 1: case 2: import_cifar(&o, path, fmt == 2); break;
    case 3: import_folder(&o, folder); break;
    default: import_npy(&o, path); break;
    }
    free(split_dir);
    free(cifar_sub);
    dd_progress_end(&o.prog);
    if (ts_writer_close(o.w) < 0) dd_die_err(DD_EXIT_DATA);
    ts_record_free(&o.rec);
    return 0;
}

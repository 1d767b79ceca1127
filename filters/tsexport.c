/* tsexport.c - a record stream -> files other tools read: an ImageFolder tree of PNGs (--png),
 * stacked NumPy arrays (--npy, the inverse of tsimport --format npy), a contact sheet (--grid).
 * Directories are built under DIR.tmp.PID and renamed into place only when complete, so a
 * half-written export is never presented as finished. See tsexport(1).
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/codecs.h"
#include "formats/npydir.h"
#include "formats/stream.h"
#include "libcommon/base/base.h"
#include "libcommon/image/resize.h"

typedef struct {
    const char *png, *npy, *grid; /* the options' output paths */
    int truncate, cols;
    const TsHeader *h;
    const char *src;              /* the input's name, for messages */
    DdAtomicDir png_dir, npy_dir; /* the directories being built */
    NpyDirWriter npyw;
    int64_t n;
    Tensor grid_img;              /* U8 [C, rows, cols] once the first image is seen */
    int64_t cell_h, cell_w;       /* its cells: the first image's size */
    int64_t *grid_fill;           /* images placed per class */
    Tensor npy_image;             /* --npy: the first record's image's dtype and shape (no data) */
    unsigned npy_dtypes;          /* bit per DdDtype of the images so far (0 before the first) */
} Export;

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s [options] [file]\n"
               "Export a record stream as PNG folders, NumPy arrays or a contact sheet.\n"
               "  -P, --png DIR       ImageFolder tree: DIR/NN_class/KEY.png\n"
               "  -N, --npy DIR       image.npy [N,C,H,W] float32, label.npy [N] int64, keys.txt,\n"
               "                      classes.txt, and NAME.npy for every other field\n"
               "  -g, --grid FILE     contact sheet PNG: one row per class\n"
               "      --grid-cols N   images per row of the sheet (default 10)\n"
               "  -t, --truncate      float -> uint8 by truncation (the references) instead of rounding\n"
               "  -q, --quiet         no progress\n"
               "  -h, --help          this text\n"
               "      --version       version\n", dd_prog());
}

/* [0,1] float -> byte: torchvision's save_image rounding (x*255+0.5, clamped), or truncation. */
static uint8_t to_u8(float x, int truncate)
{
    float v = truncate ? x * 255.0f : x * 255.0f + 0.5f;
    if (!(v > 0.0f)) return 0;
    return v >= 255.0f ? 255 : (uint8_t)v;
}

/* f (freed) as bytes. */
static Tensor f32_to_u8(Tensor *f, int truncate)
{
    Tensor u = tensor_new(DD_U8, f->ndim, f->shape);
    const float *p = f->data;
    uint8_t *q = u.data;
    for (int64_t i = 0, n = tensor_numel(f); i < n; i++) q[i] = to_u8(p[i], truncate);
    tensor_free(f);
    return u;
}

static Tensor image_u8(const TsRecord *r, int truncate)
{
    const Tensor *im = ts_record_cget(r, "image");
    if (im && im->dtype == DD_U8) return tensor_clone(im);
    Tensor f;
    if (ts_record_image_f32(r, &f) < 0) dd_die_err(DD_EXIT_DATA); /* not reached: need_image() first */
    return f32_to_u8(&f, truncate);
}

/* The same directory named twice (a trailing slash aside; both are still to be created). */
static int same_dir(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/') la--;
    while (lb > 1 && b[lb - 1] == '/') lb--;
    return la == lb && !memcmp(a, b, la);
}

static void die_cleanup(Export *x)
{
    dd_atomic_dir_abort(&x->png_dir);
    dd_atomic_dir_abort(&x->npy_dir);
    dd_die_err(DD_EXIT_DATA);
}

/* --png and --grid want an image [C,H,W] (none of them 0) in every record. */
static void need_image(Export *x, const TsRecord *r)
{
    const Tensor *im = ts_record_cget(r, "image");
    char desc[96];
    if (im && im->ndim == 3 && im->shape[0] >= 1 && im->shape[1] >= 1 && im->shape[2] >= 1) return;
    if (im) dd_err("%s: record %lld (%s): image is %s, want [C,H,W] with C, H, W >= 1", x->src, (long long)x->n,
                   r->key, tensor_describe(im, desc, sizeof desc));
    else dd_err("%s: record %lld (%s): no image field", x->src, (long long)x->n, r->key);
    die_cleanup(x);
}

/* "NN_name" with every byte outside [A-Za-z0-9._-] replaced by '_': lexical order = label order. */
static void class_dir(const TsHeader *h, int i, char *buf, size_t n)
{
    int nc = ts_header_nclasses(h), width = 2;
    for (int k = 100; k <= nc - 1; k *= 10) width++;
    int len = snprintf(buf, n, "%0*d_%s", width, i, ts_header_class(h, i));
    for (int k = width + 1; k < len && (size_t)k < n; k++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", buf[k])) buf[k] = '_';
}

static void put_png(Export *x, const TsRecord *r, int64_t lab, char *path, size_t n)
{
    char cd[256];
    class_dir(x->h, (int)lab, cd, sizeof cd);
    snprintf(path, n, "%s/%s", x->png_dir.tmp, cd);
    if (mkdir(path, 0777) < 0 && errno != EEXIST) {
        dd_err("%s: %s", path, strerror(errno));
        die_cleanup(x);
    }
    snprintf(path, n, "%s/%s/%s.png", x->png_dir.tmp, cd, r->key);
    need_image(x, r);
    Tensor u = image_u8(r, x->truncate);
    void *buf;
    size_t len;
    FILE *f = NULL;
    const int enc = png_encode(&u, &buf, &len);   /* its own message (channels, size) on failure */
    if (enc < 0 || !(f = fopen(path, "wb")) || fwrite(buf, 1, len, f) != len || dd_fclose_checked(f, path) < 0) {
        if (enc == 0 && !f) dd_err("%s: %s", path, strerror(errno));
        dd_err_prefix("%s: record %lld (%s)", x->src, (long long)x->n, r->key);
        die_cleanup(x);
    }
    free(buf);
    tensor_free(&u);
}

/* Places the image in its class row (first --grid-cols images of each class). */
static void put_grid(Export *x, const TsRecord *r, int64_t lab)
{
    const int nc = ts_header_nclasses(x->h);
    need_image(x, r);   /* every record's, as tsexport(1) says, also where its row is full */
    const Tensor *im = ts_record_cget(r, "image");
    if (x->grid_img.data && im->shape[0] != x->grid_img.shape[0]) {
        dd_err("%s: record %lld (%s): %lld channels, the first record's image has %lld", x->src, (long long)x->n,
               r->key, (long long)im->shape[0], (long long)x->grid_img.shape[0]);
        die_cleanup(x);
    }
    if (x->grid_img.data && x->grid_fill[lab] >= x->cols) return; /* its row is full */
    Tensor u;
    if (x->grid_img.data && (im->shape[1] != x->cell_h || im->shape[2] != x->cell_w)) {
        /* an image of another size fills the first one's cell: scaled to cover it, centre-cropped */
        Tensor f, cell = tensor_newv(DD_F32, 3, im->shape[0], x->cell_h, x->cell_w);
        if (ts_record_image_f32(r, &f) < 0) die_cleanup(x);
        img_resize_cover_crop(f.data, (int)f.shape[0], (int)f.shape[1], (int)f.shape[2], cell.data,
                              (int)x->cell_h, (int)x->cell_w);
        tensor_free(&f);
        u = f32_to_u8(&cell, x->truncate);
    } else {
        u = image_u8(r, x->truncate);
    }
    if (!x->grid_img.data) {
        x->cell_h = u.shape[1];
        x->cell_w = u.shape[2];
        x->grid_img = tensor_newv(DD_U8, 3, u.shape[0], nc * (u.shape[1] + 1) + 1, x->cols * (u.shape[2] + 1) + 1);
        memset(x->grid_img.data, 255, (size_t)tensor_nbytes(&x->grid_img));
        x->grid_fill = dd_calloc((size_t)nc, sizeof *x->grid_fill);
    }
    Tensor *g = &x->grid_img;
    /* u has the grid's channels (checked above) and its cell's size (the first image's, or resized to it) */
    const int64_t C = u.shape[0], H = u.shape[1], W = u.shape[2], GH = g->shape[1], GW = g->shape[2];
    if (x->grid_fill[lab] < x->cols) {
        int64_t y0 = 1 + lab * (H + 1), x0 = 1 + x->grid_fill[lab]++ * (W + 1);
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++)
                memcpy((uint8_t *)g->data + (c * GH + y0 + y) * GW + x0, (uint8_t *)u.data + (c * H + y) * W,
                       (size_t)W);
    }
    tensor_free(&u);
}

/* --npy stacks the images as F32 [C,H,W] (npydir_add converts them), so they must have one shape;
 * checked here, where the stream's own dtypes are known (npydir_add would name the converted F32). */
static void npy_image_check(Export *x, const TsRecord *r)
{
    const Tensor *im = ts_record_cget(r, "image");
    if (!im) return;   /* npydir_add says so */
    if (!x->npy_dtypes) {
        x->npy_image = *im;
        x->npy_image.data = NULL;
        x->npy_image.owns = 0;
    }
    Tensor t = x->npy_image;
    t.dtype = im->dtype;
    if (tensor_same_shape(&t, im)) {
        x->npy_dtypes |= 1u << im->dtype;
        return;
    }
    char a[128], b[512];
    size_t o = 0;
    for (int d = 0; d < DD_NDTYPE; d++) /* the earlier records' dtypes, each with their shape */
        if (x->npy_dtypes >> d & 1) {
            t.dtype = (DdDtype)d;
            o += (size_t)snprintf(b + o, sizeof b - o, "%s%s", o ? " and " : "", tensor_describe(&t, a, sizeof a));
            if (o >= sizeof b) break;
        }
    dd_err("%s: record %lld (%s): field 'image' is %s, earlier records have %s (--npy stacks images of one shape: "
           "resample them to one size first)", x->src, (long long)x->n, r->key, tensor_describe(im, a, sizeof a), b);
    die_cleanup(x);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    enum { OPT_COLS = 256, OPT_VERSION };
    static const struct option lo[] = {
        {"png", 1, 0, 'P'}, {"npy", 1, 0, 'N'}, {"grid", 1, 0, 'g'}, {"grid-cols", 1, 0, OPT_COLS},
        {"truncate", 0, 0, 't'}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {"version", 0, 0, OPT_VERSION}, {0}};
    Export x = {.cols = 10};
    int c, quiet = 0;
    const char *shortopts = "P:N:g:tqh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'P': x.png = optarg; break;
        case 'N': x.npy = optarg; break;
        case 'g': x.grid = optarg; break;
        case OPT_COLS: x.cols = (int)dd_opt_long("--grid-cols", optarg, 1, 4096); break;
        case 't': x.truncate = 1; break;
        case 'q': quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case OPT_VERSION: dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (!x.png && !x.npy && !x.grid) dd_die(DD_EXIT_USAGE, "nothing to do: give --png, --npy or --grid");
    if (argc - optind > 1) dd_die(DD_EXIT_USAGE, "at most one input file (concatenate with tscat)");
    if (x.png && x.npy && same_dir(x.png, x.npy)) dd_die(DD_EXIT_USAGE, "--png and --npy want different directories");
    if (x.grid && dd_atomic_check(x.grid) < 0) dd_die_err(DD_EXIT_DATA); /* before the stream is read */
    struct stat gs, is;
    if (x.grid && optind < argc && !stat(x.grid, &gs) && !stat(argv[optind], &is) && S_ISREG(gs.st_mode) &&
        gs.st_dev == is.st_dev && gs.st_ino == is.st_ino)
        dd_die(DD_EXIT_USAGE, "--grid %s is the input: the sheet would replace the stream", x.grid);
    TsReader *in = ts_reader_open(optind < argc ? argv[optind] : "-");
    if (!in) dd_die_err(DD_EXIT_DATA);
    x.h = ts_reader_header(in);
    x.src = ts_reader_name(in);
    const int nc = ts_header_nclasses(x.h);
    if (x.png && dd_atomic_dir_open(&x.png_dir, x.png) < 0) dd_die_err(DD_EXIT_DATA);
    if (x.npy && dd_atomic_dir_open(&x.npy_dir, x.npy) < 0) die_cleanup(&x);   /* --png's temporary too */
    TsRecord rec;
    ts_record_init(&rec);
    char path[4096];
    int r;
    DdProgress prog;
    dd_progress_start(&prog, "records", -1, quiet);
    while ((r = ts_reader_next(in, &rec)) == 1) {
        int64_t lab = ts_record_label(&rec);
        /* a class's directory or row for each image; --npy: labels that tsimport reads back */
        if ((x.png || x.grid || (x.npy && ts_record_cget(&rec, "label"))) && (lab < 0 || lab >= nc)) {
            if (lab >= nc) dd_err("label %lld outside the %d classes", (long long)lab, nc);
            dd_err_prefix("%s: record %lld (%s)", ts_reader_name(in), (long long)x.n, rec.key);
            die_cleanup(&x);
        }
        if (x.png) put_png(&x, &rec, lab, path, sizeof path);
        if (x.npy) npy_image_check(&x, &rec);
        if (x.npy && npydir_add(&x.npyw, &rec) < 0) {
            dd_err_prefix("%s", x.src);
            die_cleanup(&x);
        }
        if (x.grid) put_grid(&x, &rec, lab);
        dd_progress_update(&prog, ++x.n);
    }
    if (r < 0) die_cleanup(&x);
    dd_progress_end(&prog);
    if (x.npy && npydir_write(&x.npyw, x.npy_dir.tmp, x.h) < 0) die_cleanup(&x);
    npydir_writer_free(&x.npyw);
    if (x.grid && !x.grid_img.data) {
        dd_err("%s: no records, no grid", ts_reader_name(in));
        die_cleanup(&x);
    }
    if (x.grid && png_write_file(x.grid, &x.grid_img) < 0) die_cleanup(&x);
    if (x.png && dd_atomic_dir_commit(&x.png_dir) < 0) die_cleanup(&x);   /* --npy's temporary too */
    if (x.npy && dd_atomic_dir_commit(&x.npy_dir) < 0) dd_die_err(DD_EXIT_DATA);
    tensor_free(&x.grid_img);
    free(x.grid_fill);
    ts_record_free(&rec);
    ts_reader_close(in);
    return 0;
}

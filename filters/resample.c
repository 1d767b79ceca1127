/* resample.c - bilinear resize of every record's "image" to a fixed size, with the values of
 * PyTorch's F.interpolate(mode='bilinear', align_corners=False) (and antialias=True with
 * --antialias). The multi-resolution step of FADRM (224 -> 200 -> 224) as its own filter.
 * Images leave as F32 in [0,1] (U8 input is divided by 255 first); other fields pass through.
 * See resample(1).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "formats/stream.h"
#include "libcommon/base/base.h"
#include "libcommon/image/resize.h"

static void usage(FILE *f)
{
    fprintf(f, "Usage: %s --size S|HxW [options] [file...]\n"
               "Resize every record's image (bilinear, align_corners=False); stream on stdout.\n"
               "  -S, --size S|HxW    output size: S x S, or H x W\n"
               "  -A, --antialias     antialiased bilinear (PyTorch antialias=True) when shrinking\n"
               "  -o, --output FILE   write FILE atomically instead of stdout\n"
               "  -q, --quiet         no progress\n"
               "  -h, --help          this text\n"
               "      --version       version\n", dd_prog());
}

/* --size S or HxW: each side a decimal integer in [1, 65536]; anything else (an empty side, a sign,
 * a second 'x') is a usage error quoting the whole argument. */
static void parse_size(const char *s, int *h, int *w)
{
    long v[2];
    const char *p = s;
    for (int n = 0; n < 2; n++) {
        size_t len = strspn(p, "0123456789");
        if (len < 1 || len > 6) break;
        v[n] = strtol(p, NULL, 10);
        if (v[n] < 1 || v[n] > 1 << 16) break;
        p += len;
        if (!*p) {
            *h = (int)v[0];
            *w = (int)v[n];
            return;
        }
        if (*p++ != 'x') break;
    }
    dd_die(DD_EXIT_USAGE, "--size: '%s' is not S or HxW (integers 1 to 65536)", s);
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    static const struct option lo[] = {
        {"size", 1, 0, 'S'}, {"antialias", 0, 0, 'A'}, {"output", 1, 0, 'o'}, {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'}, {"version", 0, 0, 'V'}, {0}};
    const char *output = "-";
    int c, oh = 0, ow = 0, aa = 0, quiet = 0;
    const char *shortopts = "S:Ao:qh";
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        switch (c) {
        case 'S': parse_size(optarg, &oh, &ow); break;
        case 'A': aa = 1; break;
        case 'o': output = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': dd_help_exit(usage);
        case 'V': dd_version_exit();
        default: dd_opt_fail(argv, shortopts);
        }
    }
    if (!oh) dd_die(DD_EXIT_USAGE, "--size is required (try --help)");
    if (!strcmp(output, "-")) dd_refuse_tty_stdout();
    TsInput *in = ts_input_open(argc - optind, argv + optind);
    if (!in) dd_die_err(dd_errcode());
    ts_input_unique_keys(in);
    TsHeader *h = ts_header_copy(ts_input_header(in));
    json_t *params = json_pack("{s:[i,i],s:b}", "size", oh, ow, "antialias", aa);
    ts_header_add_history(h, argc, argv, -1, params);
    json_decref(params);
    TsWriter *w = ts_writer_open(output, h);
    if (!w) dd_die_err(DD_EXIT_DATA);
    TsRecord rec;
    ts_record_init(&rec);
    DdProgress prog;
    dd_progress_start(&prog, "records", -1, quiet);
    int r;
    while ((r = ts_input_next(in, &rec)) == 1) {
        Tensor im = {0};
        int bad = ts_record_image_f32(&rec, &im) < 0;
        if (!bad && (im.ndim != 3 || im.shape[0] < 1 || im.shape[1] < 1 || im.shape[2] < 1)) {
            char d[96];
            bad = dd_err("image is %s, want [C,H,W] with C, H, W >= 1",
                         tensor_describe(ts_record_cget(&rec, "image"), d, sizeof d));
            tensor_free(&im);
        }
        if (bad) {
            dd_err_prefix("%s: record %lld (%s)", ts_input_name(in), (long long)ts_input_index(in), rec.key);
            r = -1;
            break;
        }
        Tensor out = tensor_newv(DD_F32, 3, im.shape[0], (int64_t)oh, (int64_t)ow);
        (aa ? img_resize_bilinear_aa : img_resize_bilinear)(im.data, (int)im.shape[0], (int)im.shape[1],
                                                            (int)im.shape[2], out.data, oh, ow);
        tensor_free(&im);
        ts_record_set(&rec, "image", out);
        if (ts_writer_put(w, &rec) < 0) {
            r = -1;
            break;
        }
        dd_progress_update(&prog, ts_input_index(in) + 1);
    }
    dd_progress_end(&prog);
    if (r < 0) {
        ts_writer_abort(w);
        dd_die_err(DD_EXIT_DATA);
    }
    if (ts_writer_close(w) < 0) dd_die_err(DD_EXIT_DATA);
    ts_record_free(&rec);
    ts_input_close(in);
    ts_header_free(h);
    return 0;
}

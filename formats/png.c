/* png.c - PNG decode and encode with libpng's classic API (setjmp error handling, so a corrupt
 * file is an error message, never an exit). Pixels travel as [C,H,W]; no gamma conversion is
 * applied in either direction. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* Largest decoded image we allocate: 1 GiB (a 16-bit RGB 18k x 18k image). A tiny file can
 * declare 1e6 x 1e6 pixels; refuse before allocating. */
#define PNG_MAX_BYTES ((size_t)1 << 30)

typedef struct {
    const uint8_t *data;
    size_t len, pos;
    const char *name;
    char msg[256];
    uint8_t *pix;       /* decoded rows, HWC */
    png_bytep *rows;
    uint8_t *obuf;      /* encoder output */
    size_t olen, ocap;
} PngCtx;

static void on_error(png_structp png, png_const_charp msg)
{
    PngCtx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void on_read(png_structp png, png_bytep out, png_size_t n)
{
    PngCtx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) png_error(png, "truncated file");
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

/* Reads the image into c->pix (HWC, *ch channels of *bps bytes); the setjmp lives here so that
 * only c's members (not this frame's locals) change between setjmp and a longjmp. */
static int decode_rows(PngCtx *c, int want16, uint32_t *w, uint32_t *h, int *ch, int *bps)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
    if (!png) return dd_err("%s: png: out of memory", c->name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return dd_err("%s: png: out of memory", c->name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return dd_err("%s: png: %s", c->name, c->msg);
    }
    png_set_read_fn(png, c, on_read);
    png_set_user_limits(png, 1000000, 1000000);
    png_read_info(png, info);
    int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    /* alpha (and tRNS, which the palette and 16-bit expansions turn into alpha) is dropped */
    png_set_strip_alpha(png);
    if (want16) {
        if (depth < 16) png_set_expand_16(png);
        png_set_swap(png);
    } else if (depth == 16) {
        png_set_scale_16(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    *w = png_get_image_width(png, info);
    *h = png_get_image_height(png, info);
    *ch = png_get_channels(png, info);
    *bps = want16 ? 2 : 1;
    size_t rowbytes = png_get_rowbytes(png, info), total;
    if (*ch == 4) png_error(png, "unexpected 4 channels after alpha stripping");
    if (rowbytes != (size_t)*w * (size_t)*ch * (size_t)*bps) png_error(png, "unexpected row size after transforms");
    if (dd_mul_ok(rowbytes, *h, &total) || total > PNG_MAX_BYTES) png_error(png, "image too large");
    c->pix = dd_malloc(total ? total : 1);
    c->rows = dd_malloc((size_t)*h * sizeof *c->rows);
    for (uint32_t y = 0; y < *h; y++) c->rows[y] = c->pix + (size_t)y * rowbytes;
    png_read_image(png, c->rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

int png_decode(const void *buf, size_t len, const char *name, int want16, Tensor *out)
{
    memset(out, 0, sizeof *out);
    PngCtx c = {.data = buf, .len = len, .name = name};
    if (len < 8 || png_sig_cmp(buf, 0, 8)) return dd_err("%s: not a PNG file (bad signature)", name);
    uint32_t w, h;
    int ch, bps;
    int rc = decode_rows(&c, want16, &w, &h, &ch, &bps);
    free(c.rows);
    if (rc) {
        free(c.pix);
        return -1;
    }
    int chan = ch >= 3 ? 3 : 1;
    *out = tensor_newv(want16 ? DD_U16 : DD_U8, 3, (int64_t)chan, (int64_t)h, (int64_t)w);
    size_t plane = (size_t)w * h;
    /* HWC -> CHW (gray+alpha and RGBA were already reduced to gray and RGB) */
    if (want16) {
        const uint16_t *s = (const uint16_t *)(const void *)c.pix;
        uint16_t *d = out->data;
        for (size_t i = 0; i < plane; i++)
            for (int k = 0; k < chan; k++) d[k * plane + i] = s[i * ch + k];
    } else {
        uint8_t *d = out->data;
        for (size_t i = 0; i < plane; i++)
            for (int k = 0; k < chan; k++) d[k * plane + i] = c.pix[i * ch + k];
    }
    free(c.pix);
    return 0;
}

static void on_write(png_structp png, png_bytep data, png_size_t n)
{
    PngCtx *c = png_get_io_ptr(png);
    if (n > c->ocap - c->olen) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap - c->olen < n) cap *= 2;
        c->obuf = dd_realloc(c->obuf, cap);
        c->ocap = cap;
    }
    memcpy(c->obuf + c->olen, data, n);
    c->olen += n;
}

static void on_flush(png_structp png) { (void)png; }

/* Writes c->pix (HWC, already laid out) as PNG into c->obuf. */
static int encode_rows(PngCtx *c, uint32_t w, uint32_t h, int ch, int depth)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
    if (!png) return dd_err("png: out of memory");
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return dd_err("png: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return dd_err("png: encode: %s", c->msg);
    }
    png_set_write_fn(png, c, on_write, on_flush);
    png_set_IHDR(png, info, w, h, depth, ch == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (depth == 16) png_set_swap(png);
    png_write_image(png, c->rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int png_encode(const Tensor *t, void **buf, size_t *len)
{
    char desc[160];
    if (t->device != DD_CPU || (t->dtype != DD_U8 && t->dtype != DD_U16) || t->ndim != 3 ||
        (t->shape[0] != 1 && t->shape[0] != 3) || t->shape[1] < 1 || t->shape[2] < 1 ||
        t->shape[1] > 0x7fffffff || t->shape[2] > 0x7fffffff)
        return dd_err("png: cannot encode %s (want U8 or U16 [1 or 3,H,W] on the CPU)", tensor_describe(t, desc, sizeof desc));
    int ch = (int)t->shape[0], bps = t->dtype == DD_U16 ? 2 : 1;
    uint32_t h = (uint32_t)t->shape[1], w = (uint32_t)t->shape[2];
    size_t plane = (size_t)w * h;
    PngCtx c = {.name = "png"};
    c.pix = dd_malloc((size_t)tensor_nbytes(t));
    c.rows = dd_malloc((size_t)h * sizeof *c.rows);
    for (size_t i = 0; i < plane; i++)
        for (int k = 0; k < ch; k++) memcpy(c.pix + (i * ch + k) * bps, (const uint8_t *)t->data + (k * plane + i) * bps, bps);
    for (uint32_t y = 0; y < h; y++) c.rows[y] = c.pix + (size_t)y * w * ch * bps;
    int rc = encode_rows(&c, w, h, ch, bps * 8);
    free(c.pix);
    free(c.rows);
    if (rc) {
        free(c.obuf);
        return -1;
    }
    *buf = c.obuf;
    *len = c.olen;
    return 0;
}

int png_write_file(const char *path, const Tensor *t)
{
    void *buf;
    size_t len;
    if (png_encode(t, &buf, &len)) return dd_err_prefix("%s", path);
    int rc = dd_write_file(path, buf, len);
    free(buf);
    return rc;
}

/* jpeg.c - JPEG decode with libjpeg (error manager that longjmps, so corrupt data is an error,
 * never an exit), binary PPM/PGM decode, and image_decode, which picks the decoder by magic bytes
 * (ImageNet has PNGs named .JPEG). */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* Largest decoded image we allocate (JPEG allows 65500 x 65500 x 4 = 17 GB from a few bytes). */
#define IMG_MAX_BYTES ((size_t)1 << 30)

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void on_error_exit(j_common_ptr ci)
{
    JpegErr *e = (JpegErr *)ci->err;
    e->mgr.format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings are ignored (extraneous bytes before a marker decode fine), except a premature end of
 * data: libjpeg would fill the rest with gray, we report a truncated file. */
static void on_emit(j_common_ptr ci, int level)
{
    JpegErr *e = (JpegErr *)ci->err;
    if (level < 0) {
        e->mgr.num_warnings++;
        if (e->mgr.msg_code == JWRN_JPEG_EOF) on_error_exit(ci);
    }
}

/* PIL's CMYK -> RGB: r = (255 - K) - C * (255 - K) / 255, rounded. */
static uint8_t cmyk_channel(unsigned c, unsigned k)
{
    unsigned nk = 255 - k, t = c * nk + 128;
    unsigned m = ((t >> 8) + t) >> 8;
    return (uint8_t)(nk - m);
}

typedef struct {
    struct jpeg_decompress_struct ci;
    JpegErr err;
    uint8_t *row;
} JpegCtx;

/* Decodes into *out; the setjmp lives here and only *j and *out change after it. */
static int jpeg_run(JpegCtx *j, const void *buf, size_t len, const char *name, Tensor *out)
{
    j->ci.err = jpeg_std_error(&j->err.mgr);
    j->err.mgr.error_exit = on_error_exit;
    j->err.mgr.emit_message = on_emit;
    if (setjmp(j->err.jb)) {
        jpeg_destroy_decompress(&j->ci);
        tensor_free(out);
        return dd_err("%s: jpeg: %s", name, j->err.msg);
    }
    jpeg_create_decompress(&j->ci);
    jpeg_mem_src(&j->ci, buf, (unsigned long)len);
    jpeg_read_header(&j->ci, TRUE);
    int cmyk = 0, ch;
    switch (j->ci.jpeg_color_space) {
    case JCS_GRAYSCALE:
        j->ci.out_color_space = JCS_GRAYSCALE;
        ch = 1;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        j->ci.out_color_space = JCS_CMYK;
        cmyk = 1;
        ch = 3;
        break;
    case JCS_RGB:
    case JCS_YCbCr:
        j->ci.out_color_space = JCS_RGB;
        ch = 3;
        break;
    default:
        jpeg_destroy_decompress(&j->ci);
        return dd_err("%s: jpeg: unsupported color space (%d components)", name, j->ci.num_components);
    }
    size_t w = j->ci.image_width, h = j->ci.image_height, total;
    if (dd_mul_ok(w * h, 4, &total) || total > IMG_MAX_BYTES) {
        jpeg_destroy_decompress(&j->ci);
        return dd_err("%s: jpeg: image too large (%zux%zu)", name, w, h);
    }
    jpeg_start_decompress(&j->ci);
    if (j->ci.output_width != w || j->ci.output_height != h || j->ci.output_components != (cmyk ? 4 : ch))
        ERREXIT(&j->ci, JERR_BAD_J_COLORSPACE);
    *out = tensor_newv(DD_U8, 3, (int64_t)ch, (int64_t)h, (int64_t)w);
    j->row = dd_malloc(w * (size_t)j->ci.output_components);
    uint8_t *d = out->data;
    size_t plane = w * h;
    while (j->ci.output_scanline < h) {
        size_t y = j->ci.output_scanline;
        JSAMPROW r = j->row;
        if (jpeg_read_scanlines(&j->ci, &r, 1) != 1) ERREXIT(&j->ci, JERR_INPUT_EOF);
        for (size_t x = 0; x < w; x++) {
            if (cmyk) {
                const uint8_t *p = j->row + 4 * x;
                /* Adobe (Photoshop) convention: stored values are inverted; PIL assumes it always */
                unsigned k = 255u - p[3];
                d[y * w + x] = cmyk_channel(255u - p[0], k);
                d[plane + y * w + x] = cmyk_channel(255u - p[1], k);
                d[2 * plane + y * w + x] = cmyk_channel(255u - p[2], k);
            } else {
                for (int k = 0; k < ch; k++) d[k * plane + y * w + x] = j->row[ch * x + k];
            }
        }
    }
    jpeg_finish_decompress(&j->ci);
    jpeg_destroy_decompress(&j->ci);
    return 0;
}

int jpeg_decode(const void *buf, size_t len, const char *name, Tensor *out)
{
    memset(out, 0, sizeof *out);
    if (len < 3) return dd_err("%s: not a JPEG file (too short)", name);
    JpegCtx *j = dd_calloc(1, sizeof *j);
    int rc = jpeg_run(j, buf, len, name, out);
    free(j->row);
    free(j);
    return rc;
}

/* ---- binary PPM (P6) / PGM (P5), maxval <= 255 ---- */

/* Skips whitespace and '#' comments, then reads a decimal number. */
static int pnm_num(const uint8_t *b, size_t len, size_t *pos, long *v)
{
    size_t p = *pos;
    for (;;) {
        while (p < len && (b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r' || b[p] == '\f' || b[p] == '\v')) p++;
        if (p < len && b[p] == '#') {
            while (p < len && b[p] != '\n') p++;
            continue;
        }
        break;
    }
    if (p >= len || b[p] < '0' || b[p] > '9') return -1;
    long x = 0;
    while (p < len && b[p] >= '0' && b[p] <= '9') {
        x = x * 10 + (b[p++] - '0');
        if (x > 1000000) return -1;
    }
    *pos = p;
    *v = x;
    return 0;
}

static int pnm_decode(const uint8_t *b, size_t len, const char *name, Tensor *out)
{
    int ch = b[1] == '6' ? 3 : 1;
    size_t p = 2;
    long w, h, maxval;
    if (pnm_num(b, len, &p, &w) || pnm_num(b, len, &p, &h) || pnm_num(b, len, &p, &maxval))
        return dd_err("%s: P%c: malformed header", name, b[1]);
    if (w < 1 || h < 1 || maxval < 1 || maxval > 255)
        return dd_err("%s: P%c: unsupported size %ldx%ld or maxval %ld (1..255 supported)", name, b[1], w, h, maxval);
    if (p >= len || !(b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r'))
        return dd_err("%s: P%c: malformed header", name, b[1]);
    p++;
    size_t plane = (size_t)w * (size_t)h, need = plane * (size_t)ch;
    if (need > IMG_MAX_BYTES) return dd_err("%s: P%c: image too large", name, b[1]);
    if (len - p != need)
        return dd_err("%s: P%c: %ldx%ld needs %zu pixel bytes, file has %zu", name, b[1], w, h, need, len - p);
    *out = tensor_newv(DD_U8, 3, (int64_t)ch, (int64_t)h, (int64_t)w);
    uint8_t *d = out->data;
    const uint8_t *s = b + p;
    for (size_t i = 0; i < plane; i++)
        for (int k = 0; k < ch; k++) {
            unsigned v = s[i * ch + k];
            if (v > (unsigned)maxval) {
                tensor_free(out);
                return dd_err("%s: P%c: sample %u exceeds maxval %ld", name, b[1], v, maxval);
            }
            d[k * plane + i] = (uint8_t)((v * 255 + (unsigned)maxval / 2) / (unsigned)maxval);
        }
    return 0;
}

int image_decode(const void *buf, size_t len, const char *name, Tensor *out)
{
    const uint8_t *b = buf;
    memset(out, 0, sizeof *out);
    if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return png_decode(buf, len, name, 0, out);
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return jpeg_decode(buf, len, name, out);
    if (len >= 3 && b[0] == 'P' && (b[1] == '5' || b[1] == '6')) return pnm_decode(b, len, name, out);
    const char *what = len >= 2 && b[0] == 'B' && b[1] == 'M'                             ? "BMP"
                       : len >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4)) ? "TIFF"
                       : len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4) ? "WebP"
                       : len >= 4 && !memcmp(b, "GIF8", 4)                               ? "GIF"
                                                                                         : NULL;
    if (what) return dd_err("%s: %s images are not supported (convert to PNG or JPEG)", name, what);
    return dd_err("%s: unknown image format (not PNG, JPEG or binary PPM/PGM)", name);
}

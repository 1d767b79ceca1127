/* npy.c - NumPy .npy read (format versions 1, 2, 3) and write (version 1, version 2 when the
 * header does not fit in 65535 bytes), byte-compatible with numpy.save's header layout.
 *
 * The header is a Python dict literal; we accept exactly the keys descr, fortran_order and shape
 * in any order, '<' and '|' types directly and '>' types by byte-swapping into native order. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64
#define NPY_GROWTH_DIGITS 21 /* numpy pads the header so axis 0 can grow in place */

/* ---- header dict literal parser ---- */

typedef struct {
    const char *p, *end;
} Lex;

static void lex_ws(Lex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\t' || *l->p == '\n' || *l->p == '\r')) l->p++;
}

/* Consumes character c (after whitespace); 1 if it was there. */
static int lex_eat(Lex *l, char c)
{
    lex_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes into out (NUL-terminated); -1 if malformed or too long. */
static int lex_string(Lex *l, char *out, size_t cap)
{
    lex_ws(l);
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"')) return -1;
    char q = *l->p++;
    size_t n = 0;
    while (l->p < l->end && *l->p != q) {
        /* keys and descr are printable ASCII: anything else is malformed (and would break the
         * one-line messages that quote them) */
        if (*l->p == '\\' || n + 1 >= cap || (unsigned char)*l->p < 0x20 || (unsigned char)*l->p > 0x7e) return -1;
        out[n++] = *l->p++;
    }
    if (l->p >= l->end) return -1;
    l->p++;
    out[n] = 0;
    return 0;
}

static int lex_word(Lex *l, const char *w)
{
    size_t n = strlen(w);
    lex_ws(l);
    if ((size_t)(l->end - l->p) < n || memcmp(l->p, w, n)) return 0;
    l->p += n;
    return 1;
}

/* A non-negative decimal integer (Python may write "3L" in old headers). */
static int lex_dim(Lex *l, int64_t *v)
{
    lex_ws(l);
    if (l->p >= l->end || *l->p < '0' || *l->p > '9') return -1;
    int64_t x = 0;
    while (l->p < l->end && *l->p >= '0' && *l->p <= '9') {
        int d = *l->p++ - '0';
        if (x > (INT64_MAX - d) / 10) return -1;
        x = x * 10 + d;
    }
    if (l->p < l->end && *l->p == 'L') l->p++;
    *v = x;
    return 0;
}

/* "(a, b, c)" with optional trailing comma; "()" is 0-d. */
static int lex_shape(Lex *l, int *ndim, int64_t *shape, const char *name)
{
    if (!lex_eat(l, '(')) return dd_err("%s: npy header: shape is not a tuple", name);
    *ndim = 0;
    if (lex_eat(l, ')')) return 0;
    for (;;) {
        int64_t v;
        if (lex_dim(l, &v)) return dd_err("%s: npy header: bad shape dimension", name);
        if (*ndim >= DD_MAXDIM) return dd_err("%s: npy header: more than %d dimensions", name, DD_MAXDIM);
        shape[(*ndim)++] = v;
        int comma = lex_eat(l, ',');
        if (lex_eat(l, ')')) return 0;
        if (!comma) return dd_err("%s: npy header: malformed shape tuple", name);
    }
}

static void swap_bytes(uint8_t *p, size_t n, size_t size)
{
    for (size_t i = 0; i < n; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Parses the dict literal hdr[0..hlen) into dtype/shape; *swap = 1 for big-endian data, *fortran
 * = 1 for column-major data. */
static int parse_header(const char *hdr, size_t hlen, const char *name, Tensor *t, int *swap, int *fortran)
{
    Lex l = {hdr, hdr + hlen};
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    if (!lex_eat(&l, '{')) return dd_err("%s: npy header is not a dict", name);
    while (!lex_eat(&l, '}')) {
        char key[32], descr[16];
        if (lex_string(&l, key, sizeof key) || !lex_eat(&l, ':'))
            return dd_err("%s: npy header: malformed dict", name);
        if (!strcmp(key, "descr")) {
            if (seen_descr++) return dd_err("%s: npy header: duplicate key 'descr'", name);
            if (lex_string(&l, descr, sizeof descr))
                return dd_err("%s: npy header: descr is not a simple type string (structured dtypes are not supported)", name);
            *swap = 0;
            if (descr[0] == '>' && descr[1] && strcmp(descr + 2, "1")) {
                descr[0] = '<';
                *swap = 1;
            }
            int dt = dd_dtype_from_npy(descr);
            if (dt < 0) return dd_err("%s: npy: unsupported dtype descr '%s'", name, descr);
            t->dtype = (DdDtype)dt;
        } else if (!strcmp(key, "fortran_order")) {
            if (seen_fortran++) return dd_err("%s: npy header: duplicate key 'fortran_order'", name);
            if (lex_word(&l, "True")) *fortran = 1;
            else if (lex_word(&l, "False")) *fortran = 0;
            else return dd_err("%s: npy header: fortran_order is not True/False", name);
        } else if (!strcmp(key, "shape")) {
            if (seen_shape++) return dd_err("%s: npy header: duplicate key 'shape'", name);
            if (lex_shape(&l, &t->ndim, t->shape, name)) return -1;
        } else {
            return dd_err("%s: npy header: unexpected key '%s'", name, key);
        }
        if (!lex_eat(&l, ',')) {
            if (!lex_eat(&l, '}')) return dd_err("%s: npy header: malformed dict", name);
            break;
        }
    }
    lex_ws(&l);
    if (l.p != l.end) return dd_err("%s: npy header: trailing characters after the dict", name);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return dd_err("%s: npy header: missing key '%s'", name,
                      !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    return 0;
}

/* np.save writes column-major data for a transposed or Fortran array (codecs.h). */
void npy_from_fortran(Tensor *t, const void *from)
{
    const uint8_t *src = from;
    const size_t es = dd_dtype_size(t->dtype);
    const int nd = t->ndim;
    const int64_t n = tensor_numel(t);
    int64_t fs[DD_MAXDIM], idx[DD_MAXDIM] = {0}, off = 0;
    for (int k = 0; k < nd; k++) fs[k] = k ? fs[k - 1] * t->shape[k - 1] : 1;
    uint8_t *dst = t->data;
    for (int64_t c = 0; c < n; c++) {
        memcpy(dst + (size_t)c * es, src + (size_t)off * es, es);
        for (int k = nd - 1; k >= 0; k--) { /* the next C-order index, and its column-major offset */
            off += fs[k];
            if (++idx[k] < t->shape[k]) break;
            off -= fs[k] * t->shape[k];
            idx[k] = 0;
        }
    }
}

int npy_parse(const void *buf, size_t len, const char *name, Tensor *out)
{
    const uint8_t *b = buf;
    memset(out, 0, sizeof *out);
    if (len < 10 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN)) return dd_err("%s: not a .npy file (bad magic)", name);
    int major = b[6];
    size_t off, hlen;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return dd_err("%s: npy: truncated header", name);
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        off = 12;
    } else {
        return dd_err("%s: npy: unsupported format version %d.%d", name, major, b[7]);
    }
    if (hlen > len - off) return dd_err("%s: npy: truncated header (%zu bytes declared, %zu present)", name, hlen, len - off);
    Tensor t = {.device = DD_CPU};
    int swap = 0, fortran = 0;
    if (parse_header((const char *)b + off, hlen, name, &t, &swap, &fortran)) return -1;
    size_t data = off + hlen;
    int64_t nb = tensor_nbytes(&t);
    char desc[128];
    if (nb < 0) return dd_err("%s: npy: shape %s overflows", name, tensor_describe(&t, desc, sizeof desc));
    if ((uint64_t)nb != len - data)
        return dd_err("%s: npy: %s needs %lld data bytes, file has %zu", name, tensor_describe(&t, desc, sizeof desc),
                      (long long)nb, len - data);
    *out = t;
    out->device = DD_CPU;
    out->owns = 1;
    if (!(out->data = malloc(nb ? (size_t)nb : 1)))   /* the caller names the file and record */
        return dd_err("%s: npy: %s: out of memory (%lld bytes)", name, tensor_describe(&t, desc, sizeof desc),
                      (long long)nb);
    if (fortran && t.ndim > 1) npy_from_fortran(out, b + data);
    else memcpy(out->data, b + data, (size_t)nb);
    if (swap) swap_bytes(out->data, (size_t)tensor_numel(out), dd_dtype_size(out->dtype));
    return 0;
}

int npy_read_file(const char *path, Tensor *out)
{
    void *buf;
    size_t len;
    if (dd_read_file(path, &buf, &len)) return -1;
    int rc = npy_parse(buf, len, path, out);
    free(buf);
    return rc;
}

int npy_serialize(const Tensor *t, void **buf, size_t *len)
{
    const char *descr = dd_dtype_npy(t->dtype);
    if (!descr) return dd_err("npy: dtype %s has no numpy equivalent", dd_dtype_name(t->dtype) ? dd_dtype_name(t->dtype) : "?");
    if (t->device != DD_CPU) return dd_err("npy: tensor is not on the CPU");
    if (t->ndim < 0 || t->ndim > DD_MAXDIM) return dd_err("npy: bad ndim %d", t->ndim);
    int64_t nb = tensor_nbytes(t);
    if (nb < 0) return dd_err("npy: tensor size overflows");

    /* numpy's layout: "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" then spaces for
     * growth of axis 0, then padding spaces and '\n' so that the data starts at a multiple of 64. */
    char shape[DD_MAXDIM * 24 + 8], dict[sizeof shape + 128];
    size_t o = 0;
    shape[o++] = '(';
    for (int i = 0; i < t->ndim; i++)
        o += (size_t)snprintf(shape + o, sizeof shape - o, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (t->ndim == 1) shape[o++] = ',';
    shape[o++] = ')';
    shape[o] = 0;
    int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    size_t growth = 0;
    if (t->ndim > 0) {
        char d0[24];
        growth = NPY_GROWTH_DIGITS - (size_t)snprintf(d0, sizeof d0, "%lld", (long long)t->shape[0]);
    }
    size_t hl = (size_t)dl + growth + 1; /* + '\n' */
    int major = 1;
    size_t prefix = NPY_MAGIC_LEN + 2 + 2;
    size_t pad = NPY_ALIGN - (prefix + hl) % NPY_ALIGN;
    if (hl + pad > 65535) {
        major = 2;
        prefix = NPY_MAGIC_LEN + 2 + 4;
        pad = NPY_ALIGN - (prefix + hl) % NPY_ALIGN;
    }
    size_t hdr = hl + pad, total;
    if (dd_add_ok(prefix + hdr, (size_t)nb, &total)) return dd_err("npy: tensor size overflows");
    uint8_t *b = dd_malloc(total);
    memcpy(b, NPY_MAGIC, NPY_MAGIC_LEN);
    b[6] = (uint8_t)major;
    b[7] = 0;
    for (size_t i = 0; i < prefix - 8; i++) b[8 + i] = (uint8_t)(hdr >> (8 * i));
    memcpy(b + prefix, dict, (size_t)dl);
    memset(b + prefix + dl, ' ', growth + pad);
    b[prefix + hdr - 1] = '\n';
    if (nb) memcpy(b + prefix + hdr, t->data, (size_t)nb);
    *buf = b;
    *len = total;
    return 0;
}

int npy_write_file(const char *path, const Tensor *t)
{
    void *buf;
    size_t len;
    if (npy_serialize(t, &buf, &len)) return dd_err_prefix("%s", path);
    int rc = dd_write_file(path, buf, len);
    free(buf);
    return rc;
}

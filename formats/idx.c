/* idx.c - IDX files (MNIST, Fashion-MNIST): 00 00 TYPE NDIM, NDIM big-endian u32 dims, then the
 * data big-endian. Read from a file with zlib's gzread (plain or gzip, detected) or from memory
 * (inflate when it starts with 1f 8b). The data size must match the dims exactly.
 *
 * The buffer grows as data arrives, so a tiny file that declares huge dims fails on its short
 * data, not on a huge allocation. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* A byte source: a gzFile, plain memory, or gzip in memory. */
typedef struct {
    gzFile gz;
    const uint8_t *mem;
    size_t len, pos;
    z_stream zs;
    int inflating, zdone;
} Src;

/* Reads up to n bytes; returns the count (short only at end of data) or -1 with dd_err set. */
static long src_read(Src *s, void *out, size_t n, const char *name)
{
    if (n > (1u << 30)) n = 1u << 30;
    if (s->gz) {
        int k = gzread(s->gz, out, (unsigned)n);
        if (k < 0) {
            int e;
            const char *m = gzerror(s->gz, &e);
            return dd_err("%s: %s", name, e == Z_ERRNO ? strerror(errno) : m);
        }
        return k;
    }
    if (!s->inflating) {
        size_t k = n < s->len - s->pos ? n : s->len - s->pos;
        memcpy(out, s->mem + s->pos, k);
        s->pos += k;
        return (long)k;
    }
    s->zs.next_out = out;
    s->zs.avail_out = (uInt)n;
    while (s->zs.avail_out && !s->zdone) {
        int r = inflate(&s->zs, Z_NO_FLUSH);
        if (r == Z_STREAM_END) {
            /* concatenated gzip members continue; end of input ends the data */
            if (s->zs.avail_in == 0) s->zdone = 1;
            else if (inflateReset(&s->zs) != Z_OK) return dd_err("%s: gzip: %s", name, s->zs.msg ? s->zs.msg : "reset failed");
        } else if (r == Z_BUF_ERROR && s->zs.avail_in == 0) {
            return dd_err("%s: gzip: truncated compressed data", name);
        } else if (r != Z_OK) {
            return dd_err("%s: gzip: %s", name, s->zs.msg ? s->zs.msg : "corrupt data");
        }
    }
    return (long)(n - s->zs.avail_out);
}

static int src_exact(Src *s, void *out, size_t n, const char *name, const char *what)
{
    long k = src_read(s, out, n, name);
    if (k < 0) return -1;
    if ((size_t)k != n) return dd_err("%s: idx: truncated %s", name, what);
    return 0;
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

static int idx_load(Src *s, const char *name, Tensor *out)
{
    uint8_t h[4], dim[4];
    char desc[160];
    memset(out, 0, sizeof *out);
    if (src_exact(s, h, 4, name, "header")) return -1;
    if (h[0] || h[1]) return dd_err("%s: not an IDX file (bad magic %02x%02x%02x%02x)", name, h[0], h[1], h[2], h[3]);
    DdDtype dt;
    switch (h[2]) {
    case 0x08: dt = DD_U8; break;
    case 0x09: dt = DD_I8; break;
    case 0x0B: dt = DD_I16; break;
    case 0x0C: dt = DD_I32; break;
    case 0x0D: dt = DD_F32; break;
    case 0x0E: dt = DD_F64; break;
    default: return dd_err("%s: idx: unknown data type code 0x%02x", name, h[2]);
    }
    if (h[3] < 1 || h[3] > DD_MAXDIM) return dd_err("%s: idx: %d dimensions (1..%d supported)", name, h[3], DD_MAXDIM);
    Tensor t = {.dtype = dt, .device = DD_CPU, .ndim = h[3], .owns = 1};
    for (int i = 0; i < t.ndim; i++) {
        if (src_exact(s, dim, 4, name, "dimensions")) return -1;
        t.shape[i] = (int64_t)dim[0] << 24 | dim[1] << 16 | dim[2] << 8 | dim[3];
    }
    int64_t nb = tensor_nbytes(&t);
    if (nb < 0 || (uint64_t)nb >= SIZE_MAX / 2) return dd_err("%s: idx: shape %s overflows", name, tensor_describe(&t, desc, sizeof desc));
    size_t need = (size_t)nb, have = 0, cap = need < (1u << 20) ? need : (1u << 20);
    uint8_t *d = dd_malloc(cap ? cap : 1);
    while (have < need) {
        if (have == cap) {
            cap = cap * 2 < need ? cap * 2 : need;
            d = dd_realloc(d, cap);
        }
        long k = src_read(s, d + have, cap - have, name);
        if (k <= 0) {
            free(d);
            if (k < 0) return -1;
            return dd_err("%s: idx: %s needs %zu data bytes, file has %zu", name, tensor_describe(&t, desc, sizeof desc), need, have);
        }
        have += (size_t)k;
    }
    uint8_t extra;
    long k = src_read(s, &extra, 1, name);
    if (k != 0) {
        free(d);
        return k < 0 ? -1 : dd_err("%s: idx: trailing bytes after %s data", name, tensor_describe(&t, desc, sizeof desc));
    }
    if (dd_dtype_size(dt) > 1) swap_bytes(d, (size_t)tensor_numel(&t), dd_dtype_size(dt));
    t.data = d;
    *out = t;
    return 0;
}

int idx_read(const char *path, Tensor *out)
{
    memset(out, 0, sizeof *out);
    Src s = {0};
    s.gz = gzopen(path, "rb");
    if (!s.gz) return dd_err("%s: %s", path, errno ? strerror(errno) : "cannot open");
    gzbuffer(s.gz, 1 << 17);
    int rc = idx_load(&s, path, out);
    gzclose(s.gz);
    return rc;
}

int idx_parse(const void *buf, size_t len, const char *name, Tensor *out)
{
    memset(out, 0, sizeof *out);
    Src s = {.mem = buf, .len = len};
    if (len >= 2 && s.mem[0] == 0x1f && s.mem[1] == 0x8b) {
        if (len > UINT_MAX) return dd_err("%s: gzip input too large for in-memory parsing", name);
        if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK) return dd_err("%s: zlib init failed", name);
        s.zs.next_in = (Bytef *)(uintptr_t)buf;
        s.zs.avail_in = (uInt)len;
        s.inflating = 1;
    }
    int rc = idx_load(&s, name, out);
    if (s.inflating) inflateEnd(&s.zs);
    return rc;
}

/* bytesrc.c - growable read window over a FILE, optionally zstd-decompressed, and the key set of
 * the stream readers and writers. See bytesrc.h. */
#include "formats/bytesrc.h"
#include "libcommon/base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

struct BsSrc {
    FILE *f;
    int fd;                    /* -1: read through stdio (fmemopen) */
    const char *name;
    uint8_t *buf;              /* window: buf[pos, len) is unconsumed */
    size_t pos, len, cap;
    int eof;                   /* no more bytes will come into the window */
    ZSTD_DStream *z;           /* NULL: plain */
    uint8_t *raw;              /* compressed input: raw[rpos, rlen) */
    size_t rpos, rlen, rcap;
    int raw_eof, zopen, trunc;
};

BsSrc *bs_open(FILE *f, const char *name, size_t window)
{
    BsSrc *s = dd_calloc(1, sizeof *s);
    s->f = f;
    s->fd = fileno(f);
    s->name = name;
    s->cap = window < 4096 ? 4096 : window;
    s->buf = dd_malloc(s->cap);
    return s;
}

void bs_close(BsSrc *s)
{
    if (!s) return;
    if (s->z) ZSTD_freeDStream(s->z);
    free(s->raw);
    free(s->buf);
    free(s);
}

/* Reads up to n raw bytes; 0 at the end of input. */
static int raw_read(BsSrc *s, uint8_t *dst, size_t n, size_t *got)
{
    if (s->fd >= 0) {
        ssize_t k;
        do k = read(s->fd, dst, n);
        while (k < 0 && errno == EINTR);
        if (k < 0) return dd_err("%s: read error: %s", s->name, strerror(errno));
        *got = (size_t)k;
        return 0;
    }
    *got = fread(dst, 1, n, s->f);
    if (*got == 0 && ferror(s->f)) return dd_err("%s: read error", s->name);
    return 0;
}

void bs_push_zstd(BsSrc *s)
{
    size_t rest = s->len - s->pos;
    s->rcap = ZSTD_DStreamInSize();
    if (s->rcap < rest) s->rcap = rest;
    s->raw = dd_malloc(s->rcap);
    memcpy(s->raw, s->buf + s->pos, rest);
    s->rpos = 0;
    s->rlen = rest;
    s->pos = s->len = 0;
    s->z = ZSTD_createDStream();
    if (!s->z) dd_die(DD_EXIT_DATA, "out of memory (zstd decoder)");
    ZSTD_initDStream(s->z);
}

/* Appends at least one byte to the window, or sets eof. The window has room (len < cap). */
static int more(BsSrc *s)
{
    if (!s->z) {
        size_t got;
        if (raw_read(s, s->buf + s->len, s->cap - s->len, &got)) return -1;
        if (got == 0) s->eof = 1;
        s->len += got;
        return 0;
    }
    for (;;) {
        if (s->rpos == s->rlen && !s->raw_eof) {
            size_t got;
            if (raw_read(s, s->raw, s->rcap, &got)) return -1;
            s->rpos = 0;
            s->rlen = got;
            if (got == 0) s->raw_eof = 1;
        }
        if (s->rpos == s->rlen && s->raw_eof) {
            s->trunc = s->zopen;
            s->eof = 1;
            return 0;
        }
        ZSTD_inBuffer in = {s->raw, s->rlen, s->rpos};
        ZSTD_outBuffer out = {s->buf + s->len, s->cap - s->len, 0};
        size_t r = ZSTD_decompressStream(s->z, &out, &in);
        if (ZSTD_isError(r)) return dd_err("%s: zstd: %s", s->name, ZSTD_getErrorName(r));
        s->rpos = in.pos;
        s->zopen = r != 0;
        s->len += out.pos;
        if (out.pos) return 0;
    }
}

int bs_peek(BsSrc *s, size_t n, const uint8_t **p, size_t *avail)
{
    while (s->len - s->pos < n && !s->eof) {
        if (s->pos) {
            memmove(s->buf, s->buf + s->pos, s->len - s->pos);
            s->len -= s->pos;
            s->pos = 0;
        }
        if (s->len == s->cap) { /* grows only while data keeps arriving: a lying length costs nothing */
            size_t c = s->cap * 2;
            if (c > n && n > s->cap) c = n;
            uint8_t *nb = realloc(s->buf, c);
            if (!nb) return dd_err("out of memory holding a frame of %zu bytes", n), -2; /* the caller names it */
            s->buf = nb;
            s->cap = c;
        }
        if (more(s)) return -1;
    }
    *p = s->buf + s->pos;
    *avail = s->len - s->pos < n ? s->len - s->pos : n;
    return 0;
}

void bs_consume(BsSrc *s, size_t n) { s->pos += n; }

int bs_chunk(BsSrc *s, const uint8_t **p, size_t *n)
{
    if (s->pos == s->len) {
        s->pos = s->len = 0;
        while (!s->len && !s->eof)
            if (more(s)) return -1;
    }
    *p = s->buf + s->pos;
    *n = s->len - s->pos;
    s->pos = s->len;
    return 0;
}

int bs_truncated(const BsSrc *s) { return s->trunc; }
int bs_ended(const BsSrc *s) { return s->eof; }

/* ---- key set ---- */

static uint64_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *k; k++) h = (h ^ (uint8_t)*k) * 1099511628211ull;
    return h;
}

void tsi_keyset_init(TsKeySet *k) { memset(k, 0, sizeof *k); }

void tsi_keyset_free(TsKeySet *k)
{
    free(k->slot);
    free(k->arena);
    memset(k, 0, sizeof *k);
}

static void keyset_insert(TsKeySet *k, size_t off)
{
    size_t i = key_hash(k->arena + off) & k->mask;
    while (k->slot[i]) i = (i + 1) & k->mask;
    k->slot[i] = off + 1;
}

int tsi_keyset_add(TsKeySet *k, const char *key)
{
    if (k->slot) {
        size_t i = key_hash(key) & k->mask;
        for (; k->slot[i]; i = (i + 1) & k->mask)
            if (!strcmp(k->arena + k->slot[i] - 1, key)) return 0;
    }
    if (!k->slot || 2 * (k->n + 1) > k->mask + 1) { /* load factor <= 1/2 */
        size_t nsz = k->slot ? 2 * (k->mask + 1) : 1024;
        free(k->slot);
        k->slot = dd_calloc(nsz, sizeof *k->slot);
        k->mask = nsz - 1;
        for (size_t off = 0; off < k->alen; off += strlen(k->arena + off) + 1) keyset_insert(k, off);
    }
    size_t l = strlen(key) + 1;
    if (k->alen + l > k->acap) {
        k->acap = k->acap ? 2 * k->acap : 16384;
        while (k->alen + l > k->acap) k->acap *= 2;
        k->arena = dd_realloc(k->arena, k->acap);
    }
    memcpy(k->arena + k->alen, key, l);
    keyset_insert(k, k->alen);
    k->alen += l;
    k->n++;
    return 1;
}

struct TsiZout {
    ZSTD_CCtx *z;
    uint8_t *buf;
    size_t cap;
};

TsiZout *tsi_zout_new(void)
{
    TsiZout *z = dd_calloc(1, sizeof *z);
    z->z = ZSTD_createCCtx();
    z->cap = ZSTD_CStreamOutSize();
    z->buf = dd_malloc(z->cap);
    if (!z->z || ZSTD_isError(ZSTD_CCtx_setParameter(z->z, ZSTD_c_compressionLevel, 3))
        || ZSTD_isError(ZSTD_CCtx_setParameter(z->z, ZSTD_c_checksumFlag, 1))) {
        tsi_zout_free(z);
        return NULL;
    }
    return z;
}

int tsi_zout_put(TsiZout *z, const void *p, size_t n, int end, int (*put)(void *ctx, const void *p, size_t n),
                 void *ctx, const char **zerr)
{
    ZSTD_inBuffer in = {p, n, 0};
    size_t left;
    do {
        ZSTD_outBuffer out = {z->buf, z->cap, 0};
        left = ZSTD_compressStream2(z->z, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
        if (ZSTD_isError(left)) return *zerr = ZSTD_getErrorName(left), -1;
        int r = out.pos ? put(ctx, z->buf, out.pos) : 0;
        if (r) return r;
    } while (end ? left != 0 : in.pos < in.size);
    return 0;
}

void tsi_zout_restart(TsiZout *z) { ZSTD_CCtx_reset(z->z, ZSTD_reset_session_only); }

void tsi_zout_free(TsiZout *z)
{
    if (!z) return;
    ZSTD_freeCCtx(z->z);
    free(z->buf);
    free(z);
}

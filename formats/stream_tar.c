/* stream_tar.c - WebDataset-compatible tar shards of the record stream, read and written with
 * libarchive: a "__stream__" header member first, KEY.json / KEY.cls / KEY.NAME.npy members per
 * record (adjacent, in field order), an "__end__" member with the record count last.
 * Byte format: man/man5/ddpipe-shards.5. */
#include "formats/bytesrc.h"
#include "formats/codecs.h"
#include "formats/stream.h"
#include "libcommon/base/base.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MEMBER_MAX ((int64_t)1 << 40)

/* ---- reading ---- */

struct TsTarIn {
    struct archive *a;
    struct archive_entry *e;   /* current member header (owned by a) */
    int pending;               /* e is read but not yet consumed (it starts the next record) */
    BsSrc *src;
    const char *name;          /* borrowed from the reader */
    const char *last;          /* borrowed: the key of the last whole record read */
    uint8_t *mbuf;             /* current member's data */
    size_t mlen, mcap;
    char srcerr[512];          /* message of a failed byte-source read ("" = none) */
};

static la_ssize_t tar_read_cb(struct archive *a, void *ud, const void **buf)
{
    TsTarIn *t = ud;
    const uint8_t *p;
    size_t n;
    if (bs_chunk(t->src, &p, &n)) {
        snprintf(t->srcerr, sizeof t->srcerr, "%s", dd_errmsg());
        archive_set_error(a, EIO, "%s", t->srcerr);
        return -1;
    }
    *buf = p;
    return (la_ssize_t)n;
}

/* Turns a libarchive failure into our message: truncation as such, else libarchive's words. */
static int tar_err(TsTarIn *t, int64_t index, const char *key)
{
    if (t->srcerr[0]) return dd_err("%s", t->srcerr);
    const char *m = archive_error_string(t->a);
    m = m ? m : "unknown error";
    /* libarchive words truncation several ways; a first block cut short is "unrecognized" */
    if (bs_truncated(t->src) || strstr(m, "runcated") || strstr(m, "Premature end") ||
        (bs_ended(t->src) && strstr(m, "Unrecognized archive format")))
        return tsi_truncated(t->name, index, t->last);
    if (index < 0) return dd_err("%s: header: tar: %s", t->name, m);
    if (key && *key) return dd_err("%s: record %lld (%s): tar: %s", t->name, (long long)index, key, m);
    return dd_err("%s: record %lld: tar: %s", t->name, (long long)index, m);
}

/* Reads the next member header into t->e: 1 = got one, 0 = end of archive, -1 = error. */
static int tar_header(TsTarIn *t, int64_t index, const char *key)
{
    int rc = archive_read_next_header(t->a, &t->e);
    if (rc == ARCHIVE_EOF) return 0;
    if (rc < ARCHIVE_WARN || rc == ARCHIVE_RETRY) return tar_err(t, index, key);   /* RETRY: a damaged header */
    t->pending = 1;
    return 1;
}

/* Reads the current member's data into mbuf (grown as data arrives, never from the size field). */
static int tar_data(TsTarIn *t, int64_t index, const char *key)
{
    const char *mn = archive_entry_pathname(t->e);
    t->pending = 0;
    if (archive_entry_filetype(t->e) != AE_IFREG)
        return index < 0 ? dd_err("%s: header: member '%s' is not a regular file", t->name, mn)
                         : dd_err("%s: record %lld: member '%s' is not a regular file", t->name, (long long)index, mn);
    int64_t size = archive_entry_size(t->e);
    if (size < 0 || size > MEMBER_MAX)
        return index < 0 ? dd_err("%s: header: member '%s' has an impossible size", t->name, mn)
                         : dd_err("%s: record %lld: member '%s' has an impossible size", t->name, (long long)index, mn);
    t->mlen = 0;
    while (t->mlen < (size_t)size) {
        if (t->mlen == t->mcap) {
            size_t c = t->mcap ? 2 * t->mcap : 65536;
            c = c < (size_t)size ? c : (size_t)size;
            uint8_t *nb = realloc(t->mbuf, c);
            if (!nb) /* a member too big for this process's memory: named, not a bare "out of memory" */
                return index < 0 ? dd_err("%s: header: member '%s': out of memory (%lld bytes)", t->name, mn,
                                          (long long)size)
                                 : dd_err("%s: record %lld: member '%s': out of memory (%lld bytes)", t->name,
                                          (long long)index, mn, (long long)size);
            t->mbuf = nb;
            t->mcap = c;
        }
        size_t want = (t->mcap < (size_t)size ? t->mcap : (size_t)size) - t->mlen;
        la_ssize_t k = archive_read_data(t->a, t->mbuf + t->mlen, want);
        if (k < 0) return tar_err(t, index, key);
        if (k == 0) return tsi_truncated(t->name, index, t->last);
        t->mlen += (size_t)k;
    }
    return 0;
}

/* Parses mbuf as a JSON object. NULL + dd_err on failure. */
static json_t *tar_json(TsTarIn *t, int64_t index, const char *what)
{
    json_error_t e;
    /* an empty member has no buffer yet: memchr and json_loadb take no NULL, even for 0 bytes */
    json_t *j = !t->mlen || memchr(t->mbuf, 0, t->mlen)
                    ? NULL
                    : json_loadb((const char *)t->mbuf, t->mlen, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(j)) {
        json_decref(j);
        if (index < 0) dd_err("%s: header: %s is not a JSON object", t->name, what);
        else dd_err("%s: record %lld: %s is not a JSON object", t->name, (long long)index, what);
        return NULL;
    }
    return j;
}

TsTarIn *tsi_tar_open(BsSrc *src, const char *name, TsHeader **hdr, const char *last)
{
    TsTarIn *t = dd_calloc(1, sizeof *t);
    t->src = src;
    t->name = name;
    t->last = last;
    t->a = archive_read_new();
    archive_read_support_format_tar(t->a);
    /* past zero blocks, so that what follows the end-of-archive marker is seen (tar_end) */
    if (archive_read_set_format_option(t->a, "tar", "read_concatenated_archives", "1") != ARCHIVE_OK) {
        tar_err(t, -1, NULL);
        tsi_tar_close(t);
        return NULL;
    }
    if (archive_read_open(t->a, t, NULL, tar_read_cb, NULL) != ARCHIVE_OK) {
        tar_err(t, -1, NULL);
        tsi_tar_close(t);
        return NULL;
    }
    int rc = tar_header(t, -1, NULL);
    if (rc <= 0) {
        if (rc == 0) tsi_truncated(name, -1, NULL);
        tsi_tar_close(t);
        return NULL;
    }
    const char *mn = archive_entry_pathname(t->e);
    if (!mn || strcmp(mn, "__stream__")) {
        dd_err("%s: not a ddpipe shard (first member is '%.80s', want '__stream__')", name, mn ? mn : "");
        tsi_tar_close(t);
        return NULL;
    }
    json_t *j;
    if (tar_data(t, -1, NULL) || !(j = tar_json(t, -1, "the __stream__ header"))) {
        tsi_tar_close(t);
        return NULL;
    }
    *hdr = dd_malloc(sizeof **hdr);
    (*hdr)->json = j;
    return t;
}

/* The "__end__" member: count check, then the input must end: tar's zero blocks may follow, but
 * not another shard (files concatenated with cat: give each as an operand), other bytes, or the
 * end of the input inside a zstd frame. */
static int tar_end(TsTarIn *t, int64_t index)
{
    if (tar_data(t, index, NULL)) return -1;
    json_t *j = tar_json(t, index, "the __end__ member");
    if (!j) return -1;
    json_t *n = json_object_get(j, "records");
    int ok = json_is_integer(n);
    long long cnt = ok ? (long long)json_integer_value(n) : -1;
    json_decref(j);
    if (!ok) return dd_err("%s: __end__ member has no record count", t->name);
    if (cnt != index) return dd_err("%s: end member says %lld records, %lld were read", t->name, cnt, (long long)index);
    int rc = archive_read_next_header(t->a, &t->e);
    if (rc == ARCHIVE_EOF) {
        if (t->srcerr[0]) return dd_err("%s", t->srcerr);
        if (bs_truncated(t->src)) return dd_err("%s: stream is truncated after its end member (zstd frame incomplete)",
                                                t->name);
        return 0;
    }
    if (t->srcerr[0]) return dd_err("%s", t->srcerr);
    const char *mn = rc >= ARCHIVE_WARN && rc != ARCHIVE_RETRY ? archive_entry_pathname(t->e) : NULL;
    if (mn && !strcmp(mn, "__stream__"))
        return dd_err("%s: another shard follows the end member (shards concatenated into one file? give each "
                      "as an operand)", t->name);
    if (mn) return dd_err("%s: member '%.80s' after the end member", t->name, mn);
    return dd_err("%s: bytes after the end member that are not a tar member", t->name);
}

/* "KEY.cls": ASCII decimal, optional minus sign, nothing else. */
static int parse_cls(const uint8_t *p, size_t n, int64_t *v)
{
    size_t i = n && p[0] == '-';
    if (i == n || n - i > 19) return -1;
    uint64_t acc = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        acc = acc * 10 + (uint64_t)(p[i] - '0');
    }
    const int neg = p[0] == '-';
    if (acc > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;   /* INT64_MIN is written too */
    *v = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

/* One member of the record being read: key already checked. */
static int tar_member(TsTarIn *t, TsRecord *rec, int64_t index, const char *ext)
{
    const char *mn = archive_entry_pathname(t->e);
    char name[TS_NAME_MAX + 1];
    if (!strcmp(ext, "json")) {
        if (rec->meta) return dd_err("%s: record %lld (%s): duplicate member '%s'", t->name, (long long)index, rec->key, mn);
        if (tar_data(t, index, rec->key)) return -1;
        json_t *j = tar_json(t, index, mn);
        if (!j) return -1;
        json_decref(j);
        rec->meta = dd_malloc(t->mlen + 1);
        memcpy(rec->meta, t->mbuf, t->mlen);
        rec->meta[t->mlen] = 0;
        return 0;
    }
    size_t el = strlen(ext);
    if (!strcmp(ext, "cls")) strcpy(name, "label");
    else if (el > 4 && el - 4 <= TS_NAME_MAX && !strcmp(ext + el - 4, ".npy")) {
        memcpy(name, ext, el - 4);
        name[el - 4] = 0;
        if (!ts_key_valid(name)) return dd_err("%s: record %lld (%s): bad field name in member '%s'", t->name, (long long)index, rec->key, mn);
    } else {
        return dd_err("%s: record %lld (%s): unexpected member '%.80s'", t->name, (long long)index, rec->key, mn);
    }
    if (ts_record_cget(rec, name)) return dd_err("%s: record %lld (%s): duplicate field '%s'", t->name, (long long)index, rec->key, name);
    if (tar_data(t, index, rec->key)) return -1;
    if (!strcmp(ext, "cls")) {
        int64_t v;
        if (parse_cls(t->mbuf, t->mlen, &v))
            return dd_err("%s: record %lld (%s): member '%s' is not a decimal integer", t->name, (long long)index, rec->key, mn);
        int64_t *d = tsi_record_slot(rec, sizeof v);
        if (!d) return dd_err("%s: record %lld (%s): out of memory", t->name, (long long)index, rec->key);
        *d = v;
        TsField *f = &rec->fields[rec->nfields++];
        strcpy(f->name, name);
        f->t.dtype = DD_I64;
        f->t.ndim = 0;
        return 0;
    }
    Tensor x;
    if (npy_parse(t->mbuf, t->mlen, mn, &x)) return dd_err_prefix("%s: record %lld (%s)", t->name, (long long)index, rec->key);
    ts_record_set(rec, name, x);
    return 0;
}

int tsi_tar_next(TsTarIn *t, TsRecord *rec, int64_t index)
{
    int started = 0;
    for (;;) {
        if (!t->pending) {
            int rc = tar_header(t, index, rec->key);
            if (rc < 0) return -1;
            if (rc == 0) return tsi_truncated(t->name, index, t->last);
        }
        const char *mn = archive_entry_pathname(t->e);
        if (!mn) return dd_err("%s: record %lld: member without a name", t->name, (long long)index);
        const char *dot = strchr(mn, '.');
        size_t kl = dot ? (size_t)(dot - mn) : strlen(mn);
        if (started && (kl != strlen(rec->key) || memcmp(mn, rec->key, kl))) return 1; /* next record's */
        if (!dot) {
            if (!started && !strcmp(mn, "__end__")) return tar_end(t, index) ? -1 : 0;
            return dd_err("%s: record %lld: unexpected member '%.80s'", t->name, (long long)index, mn);
        }
        if (!started) {
            if (kl > TS_KEY_MAX) return dd_err("%s: record %lld: key of member '%.80s' is too long", t->name, (long long)index, mn);
            memcpy(rec->key, mn, kl);
            rec->key[kl] = 0;
            if (!ts_key_valid(rec->key)) {
                rec->key[0] = 0;
                return dd_err("%s: record %lld: invalid key in member '%.80s'", t->name, (long long)index, mn);
            }
            started = 1;
        }
        if (tar_member(t, rec, index, dot + 1)) return -1;
    }
}

void tsi_tar_close(TsTarIn *t)
{
    if (!t) return;
    archive_read_free(t->a);
    free(t->mbuf);
    free(t);
}

/* ---- writing ---- */

struct TsShardWriter {
    char *fmt;                 /* the pattern with its conversion rewritten to take a long long */
    int64_t rps;
    char *hdr_text;
    int zst;
    time_t mtime;
    struct archive *a;         /* the shard being written; NULL between shards */
    struct archive_entry *e;
    DdAtomicFile af;
    TsiZout *z;                /* .zst: our own compressor (tsi_zout_new's: the content checksum) */
    struct archive *za;        /* the archive sink_zstd's output goes to (sink_put's first argument) */
    DdAtomicFile *done;        /* the finished shards, temporaries until the set is whole */
    int64_t ndone, cap;
    char *cur;                 /* its path */
    int64_t shard, nrec, total;
    int failed;
    TsKeySet keys;
};

/* Accepts exactly one %d / %i / %u conversion (optional 0 flag and width), "%%" elsewhere. */
static char *pattern_format(const char *pat)
{
    size_t n = strlen(pat);
    char *fmt = dd_malloc(3 * n + 8);
    size_t o = 0;
    int conv = 0;
    for (size_t i = 0; i < n; i++) {
        fmt[o++] = pat[i];
        if (pat[i] != '%') continue;
        if (pat[i + 1] == '%') {
            fmt[o++] = pat[++i];
            continue;
        }
        size_t j = i + 1;
        while (pat[j] >= '0' && pat[j] <= '9' && j - i < 4) fmt[o++] = pat[j++];
        if (pat[j] != 'd' && pat[j] != 'i' && pat[j] != 'u') conv = 2;
        fmt[o++] = 'l';
        fmt[o++] = 'l';
        fmt[o++] = 'd';
        conv++;
        i = j;
    }
    fmt[o] = 0;
    if (conv != 1) {
        dd_err("shard pattern '%s' must hold exactly one integer conversion such as %%06d", pat);
        free(fmt);
        return NULL;
    }
    return fmt;
}

int ts_shards_pattern_check(const char *pattern)
{
    char *fmt = pattern_format(pattern);
    if (!fmt) return -1;
    free(fmt);
    const char *slash = strrchr(pattern, '/');
    for (const char *p = pattern; slash && p < slash; p++)
        if (*p == '%' && *++p != '%')
            return dd_err("shard pattern '%s': the shard number belongs in the file name, not a directory", pattern);
    return 0;
}

static int sw_err(TsShardWriter *w, const char *what)
{
    w->failed = 1;
    return dd_err("%s: %s: %s", w->cur, what, archive_error_string(w->a) ? archive_error_string(w->a) : strerror(EIO));
}

static int put_member(TsShardWriter *w, const char *name, const void *data, size_t len)
{
    archive_entry_clear(w->e);
    archive_entry_set_pathname(w->e, name);
    archive_entry_set_size(w->e, (la_int64_t)len);
    archive_entry_set_filetype(w->e, AE_IFREG);
    archive_entry_set_perm(w->e, 0444);
    archive_entry_set_mtime(w->e, w->mtime, 0);
    archive_entry_set_uid(w->e, 0);
    archive_entry_set_gid(w->e, 0);
    if (archive_write_header(w->a, w->e) != ARCHIVE_OK) return sw_err(w, "write error");
    if (len && archive_write_data(w->a, data, len) != (la_ssize_t)len) return sw_err(w, "write error");
    return 0;
}

/* The file name of shard i (malloc'd). */
static char *shard_name(const TsShardWriter *w, int64_t i)
{
    size_t n = strlen(w->fmt) + 32;
    char *name = dd_malloc(n);
    snprintf(name, n, w->fmt, (long long)i);
    return name;
}

/* libarchive's client: the tar's bytes to the shard's temporary, through zstd for .zst. Our own
 * compressor, not libarchive's zstd filter, whose frames carry no checksum (a flipped bit in a
 * shard decoded to other pixels without an error); with ZSTD_c_checksumFlag every frame ends in a
 * checksum of its content, which the reader checks. A write error keeps errno's text. */
static int sink_put(struct archive *a, TsShardWriter *w, const void *buf, size_t n)
{
    errno = 0;
    if (n && fwrite(buf, 1, n, w->af.f) != n) {
        int e = errno ? errno : EIO;
        archive_set_error(a, e, "%s", strerror(e));
        return -1;
    }
    return 0;
}

static int zout_put(void *ctx, const void *p, size_t n)
{
    TsShardWriter *w = ctx;
    return sink_put(w->za, w, p, n);
}

static int sink_zstd(struct archive *a, TsShardWriter *w, const void *buf, size_t n, int end)
{
    const char *zerr = NULL;
    w->za = a;
    if (!tsi_zout_put(w->z, buf, n, end, zout_put, w, &zerr)) return 0;
    if (zerr) archive_set_error(a, EIO, "zstd: %s", zerr);
    return -1;
}

static la_ssize_t sink_write(struct archive *a, void *cd, const void *buf, size_t n)
{
    TsShardWriter *w = cd;
    if (w->zst ? sink_zstd(a, w, buf, n, 0) : sink_put(a, w, buf, n)) return -1;
    return (la_ssize_t)n;
}

static int sink_close(struct archive *a, void *cd)
{
    TsShardWriter *w = cd;
    return w->zst && sink_zstd(a, w, NULL, 0, 1) ? ARCHIVE_FATAL : ARCHIVE_OK;
}

static int shard_begin(TsShardWriter *w)
{
    w->cur = shard_name(w, w->shard);
    if (dd_atomic_open(&w->af, w->cur)) {
        w->failed = 1;
        return -1;
    }
    w->a = archive_write_new();
    archive_write_set_format_pax_restricted(w->a);
    archive_write_set_bytes_in_last_block(w->a, 1); /* no padding past the end (as to a file before) */
    if (w->zst) {
        if (!w->z && !(w->z = tsi_zout_new())) {
            w->failed = 1;
            return dd_err("%s: zstd: cannot set up the compressor", w->cur);
        }
        tsi_zout_restart(w->z);
    }
    if (archive_write_open(w->a, w, NULL, sink_write, sink_close) != ARCHIVE_OK) return sw_err(w, "cannot open");
    w->nrec = 0;
    return put_member(w, "__stream__", w->hdr_text, strlen(w->hdr_text));
}

static int shard_end(TsShardWriter *w)
{
    char end[64];
    int n = snprintf(end, sizeof end, "{\"records\":%lld}", (long long)w->nrec);
    if (put_member(w, "__end__", end, (size_t)n)) return -1;
    if (archive_write_close(w->a) != ARCHIVE_OK) return sw_err(w, "write error");
    archive_write_free(w->a);
    w->a = NULL;
    free(w->cur);
    w->cur = NULL;
    w->shard++;
    /* closed and synced now, renamed into place with the others by ts_shards_close */
    if (dd_atomic_finish(&w->af)) {
        w->failed = 1;
        return -1;
    }
    if (w->ndone == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->done = dd_realloc(w->done, (size_t)w->cap * sizeof *w->done);
    }
    w->done[w->ndone++] = w->af;
    w->af = (DdAtomicFile){0};
    return 0;
}

TsShardWriter *ts_shards_open(const char *pattern, int64_t records_per_shard, const TsHeader *h)
{
    if (records_per_shard < 1) {
        dd_err("records per shard must be at least 1 (got %lld)", (long long)records_per_shard);
        return NULL;
    }
    time_t mtime = 0;
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    if (sde && *sde) {
        char *end;
        errno = 0;
        long long v = strtoll(sde, &end, 10);
        if (*end || errno || v < 0) {
            dd_err("SOURCE_DATE_EPOCH '%s' is not a non-negative integer", sde);
            return NULL;
        }
        mtime = (time_t)v;
    }
    char *fmt = pattern_format(pattern);
    if (!fmt) return NULL;
    if (ts_header_validate(h, pattern)) {
        free(fmt);
        return NULL;
    }
    TsShardWriter *w = dd_calloc(1, sizeof *w);
    w->fmt = fmt;
    w->rps = records_per_shard;
    w->hdr_text = json_dumps(h->json, JSON_COMPACT);
    size_t pl = strlen(pattern);
    w->zst = pl >= 4 && !strcmp(pattern + pl - 4, ".zst");
    w->mtime = mtime;
    w->e = archive_entry_new();
    tsi_keyset_init(&w->keys);
    return w;
}

int ts_shards_put(TsShardWriter *w, const TsRecord *rec)
{
    if (w->failed) return -1;
    if (ts_record_check(rec)) return dd_err_prefix("shards: record %lld", (long long)w->total);
    if (!rec->nfields && !rec->meta)
        return dd_err("record %lld (%s): a record without fields or meta cannot be stored in a shard", (long long)w->total, rec->key);
    for (int i = 0; i < rec->nfields; i++)
        if (rec->fields[i].t.dtype == DD_BF16)
            return dd_err("record %lld (%s): field '%s' is BF16, which .npy cannot hold: convert it (to F32) before writing shards",
                          (long long)w->total, rec->key, rec->fields[i].name);
    if (!tsi_keyset_add(&w->keys, rec->key)) return dd_err("record %lld (%s): duplicate key", (long long)w->total, rec->key);
    if (!w->a && shard_begin(w)) return -1;
    char mn[TS_KEY_MAX + TS_NAME_MAX + 8];
    if (rec->meta) {
        snprintf(mn, sizeof mn, "%s.json", rec->key);
        if (put_member(w, mn, rec->meta, strlen(rec->meta))) return -1;
    }
    for (int i = 0; i < rec->nfields; i++) {
        const TsField *f = &rec->fields[i];
        int rc;
        if (!strcmp(f->name, "label") && f->t.dtype == DD_I64 && f->t.ndim == 0) {
            char txt[32];
            int n = snprintf(txt, sizeof txt, "%" PRId64, *(const int64_t *)f->t.data);
            snprintf(mn, sizeof mn, "%s.cls", rec->key);
            rc = put_member(w, mn, txt, (size_t)n);
        } else {
            void *buf;
            size_t len;
            if (npy_serialize(&f->t, &buf, &len))
                return dd_err_prefix("record %lld (%s): field '%s'", (long long)w->total, rec->key, f->name);
            snprintf(mn, sizeof mn, "%s.%s.npy", rec->key, f->name);
            rc = put_member(w, mn, buf, len);
            free(buf);
        }
        if (rc) return -1;
    }
    w->nrec++;
    w->total++;
    return w->nrec == w->rps ? shard_end(w) : 0;
}

static void shards_free(TsShardWriter *w)
{
    tsi_zout_free(w->z);
    free(w->done);
    archive_entry_free(w->e);
    tsi_keyset_free(&w->keys);
    free(w->hdr_text);
    free(w->fmt);
    free(w->cur);
    free(w);
}

/* Renames the finished shards into place as one step: an earlier run's file of the same name is
 * first moved aside (NAME.old.PID), and removed only once every shard is in place; when a rename
 * fails, the shards placed so far go and the earlier files come back. SIGINT, SIGTERM and SIGHUP
 * wait until it is done (a signal then ends the program with the set whole), so an interrupt
 * cannot leave part of this set, or a mix with an earlier one, under the names. (SIGKILL can.) */
static int commit_all(TsShardWriter *w)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT), sigaddset(&block, SIGTERM), sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old);
    char **aside = dd_calloc((size_t)w->ndone + 1, sizeof *aside);
    int64_t placed = 0;
    int rc = 0;
    struct stat st;
    for (; placed < w->ndone; placed++) {
        DdAtomicFile *a = &w->done[placed];
        if (!a->tmp) continue; /* a device or FIFO: written in place */
        if (lstat(a->target, &st) == 0) {
            size_t n = strlen(a->target) + 32;
            aside[placed] = dd_malloc(n);
            snprintf(aside[placed], n, "%s.old.%ld", a->target, (long)getpid());
            if (rename(a->target, aside[placed])) {
                rc = dd_err("%s: cannot move the earlier file aside: %s", a->path, strerror(errno));
                free(aside[placed]), aside[placed] = NULL;
                break;
            }
        }
        if (rename(a->tmp, a->target)) {
            rc = dd_err("%s: cannot rename into place: %s", a->path, strerror(errno));
            if (aside[placed]) rename(aside[placed], a->target);
            free(aside[placed]), aside[placed] = NULL;
            break;
        }
    }
    for (int64_t i = 0; i < placed; i++) { /* failed: undo; done: drop what was moved aside */
        DdAtomicFile *a = &w->done[i];
        if (rc && a->tmp) unlink(a->target);
        if (aside[i] && rc) rename(aside[i], a->target);
        else if (aside[i]) unlink(aside[i]);
        free(aside[i]);
    }
    free(aside);
    if (!rc)
        for (int64_t i = 0; i < w->ndone; i++) {
            DdAtomicFile *a = &w->done[i];
            if (a->tmp) dd_temp_track(a->tmp, 0);
            free(a->tmp), free(a->target), free(a->path);
            a->tmp = a->target = a->path = NULL;
            a->direct = 0;
        }
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int ts_shards_close(TsShardWriter *w)
{
    int rc = w->failed ? -1 : 0;
    if (!rc && (w->a || w->shard == 0)) /* an empty stream still gets one (empty) shard */
        rc = (w->a || !shard_begin(w)) ? shard_end(w) : -1;
    /* every shard renamed into place only now: a run that fails leaves none of its shards */
    if (!rc) rc = commit_all(w);
    if (rc) {
        ts_shards_abort(w);
        return -1;
    }
    /* the next number's file, left by an earlier, longer run, would join this set in a glob */
    char *next = shard_name(w, w->ndone);
    if (access(next, F_OK) == 0)
        dd_warn("%s is not part of this stream's %lld shard(s) (numbered from 0): an earlier run's? remove it", next,
                (long long)w->ndone);
    free(next);
    shards_free(w);
    return 0;
}

void ts_shards_abort(TsShardWriter *w)
{
    if (!w) return;
    if (w->a) archive_write_free(w->a);
    dd_atomic_abort(&w->af);
    for (int64_t i = 0; i < w->ndone; i++) dd_atomic_abort(&w->done[i]);
    shards_free(w);
}

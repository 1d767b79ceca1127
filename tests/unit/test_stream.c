/* test_stream.c - the record stream: round trips through the pipe container and tar shards (plain
 * and zstd), byte-identical stream -> shards -> stream, truncation at every offset, corruption,
 * version and count checks, class-list mismatch, write errors, record helpers, operands that cannot
 * be reopened (a pipe as /dev/fd/N, a FIFO) among several. */
#include "formats/stream.h"
#include "libcommon/base/base.h"
#include "tests/unit/check.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

static char dir[] = "/tmp/test_stream.XXXXXX";

static const char *path_in(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Counts the entries of directory d: *named those "PREFIXN.tar" (a shard's final name), *other
 * the rest (temporaries). */
static void count_dir(const char *d, const char *prefix, int *named, int *other)
{
    *named = *other = 0;
    DIR *dp = opendir(d);
    CHECK(dp != NULL);
    if (!dp) return;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.') continue;
        size_t pl = strlen(prefix), nl = strlen(e->d_name);
        size_t digits = strspn(e->d_name + (nl >= pl ? pl : nl), "0123456789");
        int is_named = nl > pl + 4 && !strncmp(e->d_name, prefix, pl) && digits == nl - pl - 4 &&
                       !strcmp(e->d_name + nl - 4, ".tar");
        (*(is_named ? named : other))++;
    }
    closedir(dp);
}

static TsHeader *header3(const char *c2)
{
    const char *cl[] = {"T-shirt/top", "Trouser", c2};
    return ts_header_new(3, cl);
}

/* Record i: image F32 [1,4,4] (U8 for i % 7 == 3), label I64 scalar, sometimes soft F16 [3] placed
 * first, a label of another dtype or INT64_MIN/MAX, and meta. */
static void make_record(TsRecord *r, int i)
{
    ts_record_clear(r);
    snprintf(r->key, sizeof r->key, "c%04d_i%04d", i % 3, i);
    if (i % 5 == 1) {
        Tensor s = tensor_newv(DD_F16, 1, (int64_t)3);
        for (int k = 0; k < 3; k++) ((uint16_t *)s.data)[k] = dd_f32_to_f16((float)(i + k) / 8);
        ts_record_set(r, "soft", s);
    }
    Tensor img = tensor_newv(i % 7 == 3 ? DD_U8 : DD_F32, 3, (int64_t)1, (int64_t)4, (int64_t)4);
    for (int k = 0; k < 16; k++) {
        if (img.dtype == DD_U8) ((uint8_t *)img.data)[k] = (uint8_t)(i * 7 + k);
        else ((float *)img.data)[k] = (float)(i * 16 + k) / 1000.0f;
    }
    ts_record_set(r, "image", img);
    if (i % 3 == 2) { /* a field named like the label's tar member ("cls"): a c at its start */
        Tensor c = tensor_newv(DD_F32, 1, (int64_t)2);
        ((float *)c.data)[0] = (float)i;
        ((float *)c.data)[1] = -1.5f;
        ts_record_set(r, "crops", c);
    }
    if (i % 11 == 4) {
        Tensor l = tensor_newv(DD_I32, 1, (int64_t)1);
        *(int32_t *)l.data = i % 3;
        ts_record_set(r, "label", l);
    } else if (i % 13 == 6) { /* the extremes, as the shards' .cls text too */
        ts_record_set(r, "label", tensor_scalar_i64(i % 2 ? INT64_MAX : INT64_MIN));
    } else {
        ts_record_set(r, "label", tensor_scalar_i64(i % 3));
    }
    if (i % 2 == 0) {
        char m[64];
        snprintf(m, sizeof m, "{\"src\":\"idx\",\"i\":%d}", i);
        ts_record_set_meta(r, m);
    }
}

static int record_equal(const TsRecord *a, const TsRecord *b)
{
    if (strcmp(a->key, b->key) || a->nfields != b->nfields) return 0;
    if ((a->meta == NULL) != (b->meta == NULL) || (a->meta && strcmp(a->meta, b->meta))) return 0;
    for (int i = 0; i < a->nfields; i++) {
        const TsField *x = &a->fields[i], *y = &b->fields[i];
        if (strcmp(x->name, y->name) || !tensor_same_shape(&x->t, &y->t)) return 0;
        if (memcmp(x->t.data, y->t.data, (size_t)tensor_nbytes(&x->t))) return 0;
    }
    return 1;
}

static int write_pipe(const char *path, int n, const char *c2)
{
    TsHeader *h = header3(c2);
    TsWriter *w = ts_writer_open(path, h);
    ts_header_free(h);
    if (!w) return -1;
    TsRecord r;
    ts_record_init(&r);
    for (int i = 0; i < n; i++) {
        make_record(&r, i);
        if (ts_writer_put(w, &r)) {
            ts_record_free(&r);
            ts_writer_abort(w);
            return -1;
        }
    }
    ts_record_free(&r);
    return ts_writer_close(w);
}

/* Reads every operand, checking records against make_record; returns the count or -1. */
static int64_t read_check(int nfiles, char **files)
{
    TsInput *in = ts_input_open(nfiles, files);
    if (!in) return -1;
    TsRecord r, e;
    ts_record_init(&r);
    ts_record_init(&e);
    int64_t n = 0;
    int rc;
    while ((rc = ts_input_next(in, &r)) == 1) {
        make_record(&e, (int)n);
        CHECK_MSG(record_equal(&r, &e), "record %lld differs", (long long)n);
        n++;
    }
    CHECK(ts_header_nclasses(ts_input_header(in)) == 3);
    ts_record_free(&r);
    ts_record_free(&e);
    ts_input_close(in);
    return rc < 0 ? -1 : n;
}

static int slurp(const char *path, uint8_t **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    *buf = malloc(*len ? *len : 1);
    size_t k = fread(*buf, 1, *len, f);
    fclose(f);
    return k == *len ? 0 : -1;
}

static void spill(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
}

/* Reads a stream held in memory to its end; returns the last ts_reader_next result (or -1 at open). */
static int read_mem(const uint8_t *buf, size_t len)
{
    FILE *f = len ? fmemopen((void *)buf, len, "rb") : fopen("/dev/null", "rb");
    TsReader *r = ts_reader_open_file(f, "mem");
    int rc = -1;
    if (r) {
        TsRecord rec;
        ts_record_init(&rec);
        while ((rc = ts_reader_next(r, &rec)) == 1) {}
        ts_record_free(&rec);
        ts_reader_close(r);
    }
    fclose(f);
    return rc;
}

static void *zstd_of(const uint8_t *buf, size_t len, size_t *zlen)
{
    size_t cap = ZSTD_compressBound(len);
    void *z = malloc(cap);
    *zlen = ZSTD_compress(z, cap, buf, len, 3);
    return z;
}

/* Every proper prefix of a stream must fail with a message saying "truncated" ("empty" for no
 * bytes at all). */
static void check_truncations(const uint8_t *buf, size_t len, size_t from, size_t upto, const char *what)
{
    int bad = 0;
    for (size_t cut = from; cut < upto && bad < 3; cut++) {
        int rc = read_mem(buf, cut);
        if (rc != -1 || !strstr(dd_errmsg(), cut ? "truncated" : "empty: no stream header")) {
            fprintf(stderr, "%s: cut at %zu of %zu: rc %d, message '%s'\n", what, cut, len, rc, dd_errmsg());
            bad++;
        }
    }
    CHECK(bad == 0);
}

static void fix_crc(uint8_t *frame, size_t payload_len)
{
    uint32_t c = (uint32_t)crc32(0, frame, (uInt)(12 + payload_len));
    for (int i = 0; i < 4; i++) frame[12 + payload_len + i] = (uint8_t)(c >> 8 * i);
}

static void test_pipe(void)
{
    const char *a = path_in("a.tsr");
    CHECK(write_pipe(a, 50, "Pullover") == 0);
    char *files[] = {(char *)a};
    CHECK(read_check(1, files) == 50);

    uint8_t *buf;
    size_t len;
    CHECK(slurp(a, &buf, &len) == 0);
    CHECK(read_mem(buf, len) == 0);

    /* zstd-compressed */
    size_t zl;
    void *z = zstd_of(buf, len, &zl);
    spill(path_in("a.tsr.zst"), z, zl);
    char *zf[] = {(char *)path_in("a.tsr.zst")};
    CHECK(read_check(1, zf) == 50);
    free(z);

    /* two operands concatenated */
    char *two[] = {(char *)a, (char *)path_in("a.tsr.zst")};
    TsInput *in = ts_input_open(2, two);
    CHECK(in != NULL);
    if (in) {
        TsRecord r;
        ts_record_init(&r);
        int n = 0;
        while (ts_input_next(in, &r) == 1) n++;
        CHECK(n == 100);
        CHECK(ts_input_index(in) == 49);
        CHECK(strstr(ts_input_name(in), "a.tsr.zst") != NULL);
        ts_record_free(&r);
        ts_input_close(in);
    }

    /* a flipped data byte: bad checksum; any flipped byte: an error */
    uint8_t *c = malloc(len);
    memcpy(c, buf, len);
    c[len - 100] ^= 0x10;
    CHECK(read_mem(c, len) == -1);
    CHECK_MSG(strstr(dd_errmsg(), "bad checksum") != NULL, "%s", dd_errmsg());
    int undetected = 0;
    for (size_t i = 0; i < len; i += 7) {
        memcpy(c, buf, len);
        c[i] ^= 0x01;
        if (read_mem(c, len) != -1) undetected++;
    }
    CHECK(undetected == 0);

    /* bad magic, unknown version, unknown flags */
    memcpy(c, buf, len);
    c[1] = 'X';
    CHECK(read_mem(c, len) == -1 && strstr(dd_errmsg(), "not a ddpipe stream"));
    CHECK_MSG(!strstr(dd_errmsg(), "(it "), "%s", dd_errmsg()); /* nothing recognised: no hint */
    { /* weights, a checkpoint or a dataset file given as a stream: the error says what it looks like */
        static const struct { const char *head; size_t n; const char *hint; } mix[] = {
            {"\x40\0\0\0\0\0\0\0{\"", 10, "safetensors weights file: weights go to -w"},
            {"PK\x03\x04\x14\0", 6, "PyTorch checkpoint"},
            {"\x89PNG\r\n\x1a\n", 8, "tsimport makes a stream of it"},
            {"\x93NUMPY\x01\0", 8, "tsimport makes a stream of it"},
            {"\0\0\x08\x03\0\0\0\x01", 8, "tsimport makes a stream of it"},
        };
        for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
            memset(c, ' ', len);
            memcpy(c, mix[i].head, mix[i].n);
            CHECK(read_mem(c, len) == -1);
            CHECK_MSG(strstr(dd_errmsg(), "not a ddpipe stream") && strstr(dd_errmsg(), mix[i].hint), "%s",
                      dd_errmsg());
        }
    }
    memcpy(c, buf, len);
    c[8] = 2;
    CHECK(read_mem(c, len) == -1);
    CHECK_MSG(strstr(dd_errmsg(), "version 2") != NULL, "%s", dd_errmsg());
    memcpy(c, buf, len);
    c[12] = 1;
    CHECK(read_mem(c, len) == -1 && strstr(dd_errmsg(), "flags"));

    /* end count mismatch (checksum fixed up, so the count is what is wrong) */
    memcpy(c, buf, len);
    uint8_t *end = c + len - 24;
    CHECK(!memcmp(end, "END!", 4));
    end[12] = 49;
    fix_crc(end, 8);
    CHECK(read_mem(c, len) == -1);
    CHECK_MSG(strstr(dd_errmsg(), "end frame says 49 records, 50 were read") != NULL, "%s", dd_errmsg());

    /* trailing garbage; a second stream appended */
    uint8_t *t = malloc(2 * len);
    memcpy(t, buf, len);
    t[len] = 'x';
    CHECK(read_mem(t, len + 1) == -1 && strstr(dd_errmsg(), "trailing"));
    memcpy(t + len, buf, len);
    CHECK(read_mem(t, 2 * len) == -1 && strstr(dd_errmsg(), "second stream"));
    free(t);
    free(c);
    free(buf);
}

static void test_truncation(void)
{
    const char *p = path_in("small.tsr");
    CHECK(write_pipe(p, 3, "Pullover") == 0);
    uint8_t *buf;
    size_t len;
    CHECK(slurp(p, &buf, &len) == 0);
    CHECK(read_mem(buf, len) == 0);
    check_truncations(buf, len, 0, len, "pipe");
    /* where the cut is, said: in the header frame, in the first record, after record N (its key);
     * a damaged header frame is the header's, not record 0's. Frames: tag, u64 length, payload,
     * crc after the 16-byte container header. */
    size_t fr[5], at = 16;
    for (int k = 0; k < 5 && at + 12 <= len; k++) {
        uint64_t fl = 0;
        for (int b = 7; b >= 0; b--) fl = fl << 8 | buf[at + 4 + b];
        fr[k] = at;
        at += 16 + (size_t)fl;
    }
    static const char *const want[3] = {"mem: stream is truncated in its header (upstream died?)",
                                        "mem: stream is truncated before its first record (upstream died?)",
                                        "mem: stream is truncated after record 0 (c0000_i0000), the last whole one "
                                        "(upstream died?)"};
    for (int k = 0; k < 3; k++) {
        CHECK(read_mem(buf, fr[k] + 20) == -1);
        CHECK_MSG(strstr(dd_errmsg(), want[k]) != NULL, "cut in frame %d: '%s'", k, dd_errmsg());
    }
    uint8_t *hb = malloc(len);
    memcpy(hb, buf, len);
    hb[fr[0] + 14] ^= 0x01; /* a byte of the header's JSON */
    CHECK(read_mem(hb, len) == -1);
    CHECK_MSG(strstr(dd_errmsg(), "mem: header: bad checksum") != NULL, "%s", dd_errmsg());
    free(hb);
    size_t zl;
    uint8_t *z = zstd_of(buf, len, &zl);
    CHECK(read_mem(z, zl) == 0);
    check_truncations(z, zl, 0, zl, "pipe.zst");
    free(z);
    free(buf);

    /* a shard: every cut before the end member's data is complete */
    TsHeader *h = header3("Pullover");
    TsShardWriter *w = ts_shards_open(path_in("small-%d.tar"), 10, h);
    ts_header_free(h);
    CHECK(w != NULL);
    TsRecord r;
    ts_record_init(&r);
    for (int i = 0; i < 3 && w; i++) {
        make_record(&r, i);
        CHECK(ts_shards_put(w, &r) == 0);
    }
    ts_record_free(&r);
    CHECK(w && ts_shards_close(w) == 0);
    CHECK(slurp(path_in("small-0.tar"), &buf, &len) == 0);
    CHECK(read_mem(buf, len) == 0);
    size_t endhdr = 0;
    for (size_t o = 0; o + 512 <= len; o += 512)
        if (!memcmp(buf + o, "__end__", 8)) endhdr = o;
    CHECK(endhdr > 0);
    check_truncations(buf, len, 0, endhdr + 512 + strlen("{\"records\":3}"), "tar");
    free(buf);
}

/* Writes a.tsr's records as shards, reads them back as one stream, re-encodes: same bytes. */
static void test_shards(const char *pattern, const char *shard0, int zst)
{
    const char *a = path_in("b.tsr");
    CHECK(write_pipe(a, 50, "Pullover") == 0);
    TsReader *rd = ts_reader_open(a);
    CHECK(rd != NULL);
    if (!rd) return;
    TsShardWriter *w = ts_shards_open(path_in(pattern), 20, ts_reader_header(rd));
    CHECK(w != NULL);
    TsRecord r;
    ts_record_init(&r);
    int rc;
    while ((rc = ts_reader_next(rd, &r)) == 1) CHECK(ts_shards_put(w, &r) == 0);
    CHECK(rc == 0);
    CHECK(ts_shards_close(w) == 0);
    ts_reader_close(rd);

    char names[3][512];
    char *files[3];
    for (int i = 0; i < 3; i++) {
        snprintf(names[i], sizeof names[i], "%s/%s", dir, shard0);
        names[i][strlen(names[i]) - (zst ? 9 : 5)] = (char)('0' + i);
        files[i] = names[i];
    }
    CHECK(access(files[2], F_OK) == 0);
    CHECK(read_check(3, files) == 50);

    uint8_t *buf;
    size_t len;
    CHECK(slurp(files[0], &buf, &len) == 0);
    CHECK(len >= 4 && (buf[0] == 0x28) == zst);
    CHECK(read_mem(buf, len) == 0); /* one shard alone is a complete stream */
    free(buf);

    TsInput *in = ts_input_open(3, files);
    CHECK(in != NULL);
    TsWriter *out = ts_writer_open(path_in("c.tsr"), ts_input_header(in));
    while ((rc = ts_input_next(in, &r)) == 1) CHECK(ts_writer_put(out, &r) == 0);
    CHECK(rc == 0);
    CHECK(ts_writer_close(out) == 0);
    ts_input_close(in);
    ts_record_free(&r);
    uint8_t *x, *y;
    size_t xl, yl;
    CHECK(slurp(a, &x, &xl) == 0 && slurp(path_in("c.tsr"), &y, &yl) == 0);
    CHECK_MSG(xl == yl && !memcmp(x, y, xl), "stream -> shards -> stream is not byte-identical (%s)", pattern);
    free(x);
    free(y);
}

static void test_errors(void)
{
    /* class lists disagree: both files named */
    CHECK(write_pipe(path_in("d1.tsr"), 2, "Pullover") == 0);
    CHECK(write_pipe(path_in("d2.tsr"), 2, "Dress") == 0);
    char *files[] = {(char *)path_in("d1.tsr"), (char *)path_in("d2.tsr")};
    CHECK(ts_input_open(2, files) == NULL);
    CHECK_MSG(strstr(dd_errmsg(), "d1.tsr") && strstr(dd_errmsg(), "d2.tsr") && strstr(dd_errmsg(), "Dress"), "%s", dd_errmsg());

    /* write errors are reported at the latest by close */
    FILE *f = fopen("/dev/full", "wb");
    if (f) {
        TsHeader *h = header3("Pullover");
        TsWriter *w = ts_writer_open_file(f, "/dev/full", h);
        TsRecord r;
        ts_record_init(&r);
        for (int i = 0; i < 5; i++) {
            make_record(&r, i);
            ts_writer_put(w, &r);
        }
        CHECK(ts_writer_close(w) == -1);
        CHECK_MSG(strstr(dd_errmsg(), "write error") != NULL, "%s", dd_errmsg());
        fclose(f);
        w = ts_writer_open("/dev/full", h);
        CHECK(w != NULL);
        if (w) {
            make_record(&r, 0);
            ts_writer_put(w, &r);
            CHECK(ts_writer_close(w) == -1);
        }
        ts_record_free(&r);
        ts_header_free(h);
    }

    /* writer validation: bad key, duplicate key, bad sizes */
    TsHeader *h = header3("Pullover");
    TsWriter *w = ts_writer_open(path_in("e.tsr"), h);
    TsRecord r;
    ts_record_init(&r);
    make_record(&r, 0);
    CHECK(ts_writer_put(w, &r) == 0);
    CHECK(ts_writer_put(w, &r) == -1 && strstr(dd_errmsg(), "duplicate key"));
    strcpy(r.key, "a.b");
    CHECK(ts_writer_put(w, &r) == -1 && strstr(dd_errmsg(), "invalid"));
    strcpy(r.key, "ok2");
    r.fields[0].t.shape[0] = -1;
    CHECK(ts_writer_put(w, &r) == -1);
    r.fields[0].t.shape[0] = 1;
    CHECK(ts_writer_put(w, &r) == 0);
    CHECK(ts_writer_close(w) == 0);

    /* shard pattern validation and BF16 */
    CHECK(ts_shards_open(path_in("x.tar"), 10, h) == NULL && strstr(dd_errmsg(), "conversion"));
    CHECK(ts_shards_open(path_in("x-%d-%d.tar"), 10, h) == NULL);
    CHECK(ts_shards_open(path_in("x-%s.tar"), 10, h) == NULL);
    TsShardWriter *sw = ts_shards_open(path_in("bf-%%-%04d.tar"), 10, h);
    CHECK(sw != NULL);
    ts_record_clear(&r);
    strcpy(r.key, "k");
    ts_record_set(&r, "x", tensor_newv(DD_BF16, 1, (int64_t)2));
    CHECK(ts_shards_put(sw, &r) == -1 && strstr(dd_errmsg(), "BF16"));
    ts_record_clear(&r);
    strcpy(r.key, "k");
    ts_record_set(&r, "x", tensor_newv(DD_F32, 1, (int64_t)2));
    CHECK(ts_shards_put(sw, &r) == 0);
    CHECK(ts_shards_close(sw) == 0);
    CHECK(access(path_in("bf-%-0000.tar"), F_OK) == 0);

    /* names too long for ustar (key and field name of 64 characters): pax headers, same record */
    ts_record_clear(&r);
    memset(r.key, 'k', TS_KEY_MAX);
    r.key[TS_KEY_MAX] = 0;
    char longname[TS_NAME_MAX + 1];
    memset(longname, 'n', TS_NAME_MAX);
    longname[TS_NAME_MAX] = 0;
    ts_record_set(&r, longname, tensor_newv(DD_F64, 2, (int64_t)2, (int64_t)3));
    ((double *)r.fields[0].t.data)[5] = 1.5;
    sw = ts_shards_open(path_in("long-%d.tar"), 10, h);
    CHECK(sw && ts_shards_put(sw, &r) == 0 && ts_shards_close(sw) == 0);
    TsReader *lr = ts_reader_open(path_in("long-0.tar"));
    TsRecord back;
    ts_record_init(&back);
    CHECK(lr && ts_reader_next(lr, &back) == 1 && record_equal(&back, &r) && ts_reader_next(lr, &back) == 0);
    ts_reader_close(lr);
    ts_record_free(&back);

    /* a set of shards appears whole or not at all: finished shards stay temporaries until the
     * close renames them all; an abort leaves an empty directory */
    CHECK(mkdir(path_in("set"), 0777) == 0);
    for (int close = 0; close < 2; close++) {
        sw = ts_shards_open(path_in("set/s-%d.tar"), 10, h);
        for (int i = 0; i < 35 && sw; i++) {
            make_record(&r, i);
            snprintf(r.key, sizeof r.key, "set%d", i);
            CHECK(ts_shards_put(sw, &r) == 0);
        }
        int named, other;
        count_dir(path_in("set"), "s-", &named, &other);
        CHECK(named == 0 && other == 4); /* three finished shards and the fourth, all temporaries */
        if (close) CHECK(sw && ts_shards_close(sw) == 0);
        else ts_shards_abort(sw);
        count_dir(path_in("set"), "s-", &named, &other);
        CHECK(named == (close ? 4 : 0) && other == 0);
    }

    /* an empty stream as a shard */
    sw = ts_shards_open(path_in("empty-%d.tar.zst"), 10, h);
    CHECK(sw && ts_shards_close(sw) == 0);
    char *ef[] = {(char *)path_in("empty-0.tar.zst")};
    TsInput *in = ts_input_open(1, ef);
    CHECK(in && ts_input_next(in, &r) == 0);
    ts_input_close(in);
    ts_record_free(&r);
    ts_header_free(h);
}

static void test_records(void)
{
    TsRecord r, c;
    ts_record_init(&r);
    ts_record_init(&c);
    make_record(&r, 3); /* U8 image */
    CHECK(ts_record_label(&r) == 0);
    Tensor f;
    CHECK(ts_record_image_f32(&r, &f) == 0);
    CHECK_CLOSE(((float *)f.data)[1], (3 * 7 + 1) / 255.0, 1e-7, 0);
    tensor_free(&f);
    ts_record_copy(&c, &r);
    CHECK(record_equal(&c, &r));
    ts_record_remove(&c, "image");
    CHECK(c.nfields == 1 && ts_record_get(&c, "image") == NULL);
    void *spare = r.fields[0].t.data;
    ts_record_clear(&r);
    CHECK(r.nfields == 0 && r.meta == NULL);
    make_record(&r, 6);
    CHECK(ts_record_get(&r, "image") != NULL);
    CHECK(spare != NULL);
    CHECK(ts_record_check(&r) == 0);
    ts_record_free(&r);
    ts_record_free(&c);
    CHECK(ts_key_valid("c0003_i0012") && !ts_key_valid("") && !ts_key_valid("a.b"));
    CHECK(!ts_key_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));

    TsHeader *h = header3("Pullover");
    char *argv[] = {"prog", "-s", "1"};
    json_t *params = json_pack("{s:f}", "alpha", 0.5);
    ts_header_add_history(h, 3, argv, 1, params);
    ts_header_add_history(h, 1, argv, -1, NULL);
    json_decref(params);
    json_t *hist = json_object_get(h->json, "history");
    CHECK(json_array_size(hist) == 2);
    CHECK(json_object_get(json_array_get(hist, 0), "seed") && !json_object_get(json_array_get(hist, 1), "seed"));
    CHECK(ts_header_validate(h, "h") == 0);
    CHECK(!strcmp(ts_header_class(h, 0), "T-shirt/top"));
    /* the optional members, checked when present (ddpipe-stream(5)) */
    json_object_set_new(json_array_get(hist, 1), "seed", json_string("1"));
    CHECK(ts_header_validate(h, "h") == -1 && strstr(dd_errmsg(), "h: header history entry 1 is not {"));
    json_object_del(json_array_get(hist, 1), "seed");
    json_t *av0 = json_object_get(json_array_get(hist, 0), "argv");
    json_array_append_new(av0, json_integer(3));
    CHECK(ts_header_validate(h, "h") == -1 && strstr(dd_errmsg(), "history entry 0"));
    json_array_remove(av0, json_array_size(av0) - 1);
    json_array_append_new(hist, json_string("x"));
    CHECK(ts_header_validate(h, "h") == -1 && strstr(dd_errmsg(), "history entry 2"));
    json_array_remove(hist, 2);
    json_object_set_new(h->json, "space", json_string("zero-mean"));
    CHECK(ts_header_validate(h, "h") == -1 && strstr(dd_errmsg(), "h: header \"space\" is not \"pixel\""));
    json_object_set_new(h->json, "space", json_string("pixel"));
    CHECK(ts_header_validate(h, "h") == 0);
    json_object_set_new(h->json, "version", json_integer(7));
    CHECK(ts_header_validate(h, "h") == -1 && strstr(dd_errmsg(), "version 7"));
    ts_header_free(h);
}

/* ---- operands that cannot be reopened ---- */

typedef struct {
    const char *src;           /* file whose bytes are written */
    const char *fifo;          /* open this FIFO for writing, or NULL: write to fd */
    int fd;
    pthread_t th;
} Feeder;

static void *feeder_main(void *arg)
{
    Feeder *f = arg;
    int fd = f->fifo ? open(f->fifo, O_WRONLY) : f->fd; /* a FIFO: blocks until the reader opens it */
    if (fd < 0) return NULL;
    uint8_t *buf;
    size_t len, off = 0;
    if (slurp(f->src, &buf, &len) == 0) {
        while (off < len) {
            ssize_t k = write(fd, buf + off, len - off);
            if (k <= 0) break; /* EPIPE (ignored SIGPIPE): the reader gave up */
            off += (size_t)k;
        }
        free(buf);
    }
    close(fd);
    return NULL;
}

/* Reads the operands as one stream; each holds make_record(0..per-1). The count, or -1. */
static int64_t read_concat(int nfiles, char **files, int per)
{
    TsInput *in = ts_input_open(nfiles, files);
    if (!in) return -1;
    TsRecord r, e;
    ts_record_init(&r);
    ts_record_init(&e);
    int64_t n = 0;
    int rc;
    while ((rc = ts_input_next(in, &r)) == 1) {
        make_record(&e, (int)(n % per));
        CHECK_MSG(record_equal(&r, &e), "record %lld (%s: %lld) differs", (long long)n, ts_input_name(in),
                  (long long)ts_input_index(in));
        n++;
    }
    if (rc < 0) fprintf(stderr, "read_concat: %s\n", dd_errmsg());
    else CHECK(!strcmp(ts_input_name(in), files[nfiles - 1]) && ts_input_index(in) == per - 1);
    ts_record_free(&r);
    ts_record_free(&e);
    ts_input_close(in);
    return rc < 0 ? -1 : n;
}

/* `tscat a.tsr <(cat b.tsr)`: a later operand that is a pipe (/dev/fd/N) or a FIFO was opened at
 * ts_input_open to check its class list; it must be read on then, not reopened. */
static void test_unreopenable(void)
{
    const char *a = path_in("a.tsr"), *az = path_in("a.tsr.zst"); /* from test_pipe: 50 records */
    signal(SIGPIPE, SIG_IGN);
    alarm(60); /* a regression may block on a FIFO reopened with no writer: fail, do not hang */

    /* a pipe passed as /dev/fd/N, second of two and middle of three */
    for (int three = 0; three < 2; three++) {
        int p[2];
        CHECK(pipe(p) == 0);
        Feeder fd = {.src = three ? az : a, .fd = p[1]};
        CHECK(pthread_create(&fd.th, NULL, feeder_main, &fd) == 0);
        char devfd[32];
        snprintf(devfd, sizeof devfd, "/dev/fd/%d", p[0]);
        if (access(devfd, R_OK)) {
            fprintf(stderr, "note: %s not available, skipping the /dev/fd case\n", devfd);
            close(p[0]);
            pthread_join(fd.th, NULL);
            break;
        }
        char *files[] = {(char *)a, devfd, (char *)az};
        CHECK_MSG(read_concat(2 + three, files, 50) == 50 * (2 + three), "/dev/fd operand, %d operands", 2 + three);
        close(p[0]); /* before the join: a writer left blocked gets EPIPE */
        pthread_join(fd.th, NULL);
    }

    /* a FIFO between regular files (which are closed and reopened), and a FIFO first */
    const char *fifo = path_in("fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    Feeder ff = {.src = az, .fifo = fifo};
    CHECK(pthread_create(&ff.th, NULL, feeder_main, &ff) == 0);
    char *mid[] = {(char *)a, (char *)fifo, (char *)az, (char *)a};
    CHECK_MSG(read_concat(4, mid, 50) == 200, "FIFO operand in the middle");
    pthread_join(ff.th, NULL);
    CHECK(pthread_create(&ff.th, NULL, feeder_main, &ff) == 0);
    char *first[] = {(char *)fifo, (char *)a};
    CHECK_MSG(read_concat(2, first, 50) == 100, "FIFO operand first");
    pthread_join(ff.th, NULL);

    /* a later FIFO whose class list differs: refused at open */
    const char *b = path_in("b.tsr");
    CHECK(write_pipe(b, 5, "Sneaker") == 0);
    Feeder fb = {.src = b, .fifo = fifo};
    CHECK(pthread_create(&fb.th, NULL, feeder_main, &fb) == 0);
    char *mism[] = {(char *)a, (char *)fifo};
    CHECK(ts_input_open(2, mism) == NULL);
    pthread_join(fb.th, NULL);
    alarm(0);
    unlink(fifo);
}

int main(void)
{
    dd_prog_init("test_stream");
    if (!mkdtemp(dir)) return 1;
    test_records();
    test_pipe();
    test_unreopenable();
    test_truncation();
    test_shards("s-%02d.tar", "s-00.tar", 0);
    test_shards("z-%02d.tar.zst", "z-00.tar.zst", 1);
    test_errors();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
    return check_done("test_stream");
}

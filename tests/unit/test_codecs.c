/* test_codecs.c - the file codecs: npy, safetensors, PNG, JPEG, PPM/PGM, IDX (with the installed
 * Fashion-MNIST files), CIFAR, line lists and ImageFolder: writer round trips, and every malformed
 * case rejected with -1 and a message naming the file. */
#include "formats/codecs.h"
#include "libcommon/base/base.h"
#include "tests/unit/check.h"

#include <jpeglib.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[64];

static char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n);
    if (f) fclose(f);
}

/* Expects rc == -1 with a message that contains `needle`. */
#define CHECK_FAILS(rc, needle)                                                             \
    do {                                                                                    \
        int rc_ = (rc);                                                                     \
        CHECK_MSG(rc_ == -1 && strstr(dd_errmsg(), needle), "rc %d, message \"%s\", want \"%s\"", \
                  rc_, dd_errmsg(), needle);                                                \
    } while (0)

/* ---- npy ---- */

/* A .npy image from a header dict and raw data (version 1 unless major > 1). */
static size_t make_npy(uint8_t *out, int major, const char *dict, const void *data, size_t dlen)
{
    size_t hl = strlen(dict), pre = major == 1 ? 10 : 12;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t)major;
    out[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) out[8 + i] = (uint8_t)(hl >> (8 * i));
    memcpy(out + pre, dict, hl);
    memcpy(out + pre + hl, data, dlen);
    return pre + hl + dlen;
}

static void test_npy(void)
{
    /* round trips: several dtypes, 0-d, 1-d, 3-d, empty */
    DdDtype dts[] = {DD_F32, DD_U8, DD_I64, DD_F64, DD_BOOL, DD_I16, DD_F16, DD_U64};
    for (size_t k = 0; k < sizeof dts / sizeof *dts; k++) {
        int64_t shapes[4][3] = {{0}, {7}, {2, 3, 4}, {3, 0}};
        int ndims[4] = {0, 1, 3, 2};
        for (int s = 0; s < 4; s++) {
            Tensor t = tensor_new(dts[k], ndims[s], shapes[s]), r;
            uint8_t *d = t.data;
            for (int64_t i = 0; i < tensor_nbytes(&t); i++) d[i] = (uint8_t)(i * 37 + k + (dts[k] == DD_BOOL ? 0 : 1)) & (dts[k] == DD_BOOL ? 1 : 0xff);
            void *buf;
            size_t len;
            CHECK(npy_serialize(&t, &buf, &len) == 0);
            size_t hl = (size_t)((uint8_t *)buf)[8] | (size_t)((uint8_t *)buf)[9] << 8;
            CHECK((10 + hl) % 64 == 0);
            CHECK(((char *)buf)[10 + hl - 1] == '\n');
            CHECK(npy_parse(buf, len, "rt.npy", &r) == 0);
            CHECK(tensor_same_shape(&t, &r));
            CHECK(!memcmp(t.data, r.data, (size_t)tensor_nbytes(&t)));
            free(buf);
            tensor_free(&r);
            tensor_free(&t);
        }
    }
    /* exact numpy header for a 1-d float32 array */
    {
        Tensor t = tensor_newv(DD_F32, 1, (int64_t)5);
        void *buf;
        size_t len;
        CHECK(npy_serialize(&t, &buf, &len) == 0);
        CHECK(len == 128 + 20);
        CHECK(!memcmp((char *)buf + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", 57));
        free(buf);
        tensor_free(&t);
    }
    /* file round trip */
    {
        Tensor t = tensor_newv(DD_I32, 2, (int64_t)2, (int64_t)2), r;
        ((int32_t *)t.data)[3] = -7;
        CHECK(npy_write_file(tmp_path("a.npy"), &t) == 0);
        CHECK(npy_read_file(tmp_path("a.npy"), &r) == 0);
        CHECK(r.dtype == DD_I32 && r.ndim == 2 && ((int32_t *)r.data)[3] == -7);
        tensor_free(&r);
        tensor_free(&t);
        CHECK_FAILS(npy_read_file(tmp_path("missing.npy"), &r), "missing.npy");
    }
    uint8_t b[512];
    Tensor r;
    float f3[3] = {1.5f, -2, 3};
    /* keys in any order, double quotes, v2 and v3 headers */
    size_t n = make_npy(b, 1, "{\"shape\": (3,), 'fortran_order': False, 'descr': '<f4'}  \n", f3, 12);
    CHECK(npy_parse(b, n, "x.npy", &r) == 0 && r.dtype == DD_F32 && r.ndim == 1 && ((float *)r.data)[0] == 1.5f);
    tensor_free(&r);
    n = make_npy(b, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", f3, 12);
    CHECK(npy_parse(b, n, "x.npy", &r) == 0 && ((float *)r.data)[1] == -2);
    tensor_free(&r);
    n = make_npy(b, 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3), }\n", f3, 12);
    CHECK(npy_parse(b, n, "x.npy", &r) == 0 && r.ndim == 2 && r.shape[1] == 3);
    tensor_free(&r);
    /* big-endian is byte-swapped into native order */
    uint8_t be[8] = {0x3f, 0xc0, 0, 0, 0x01, 0x02, 0, 0};
    n = make_npy(b, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n", be, 4);
    CHECK(npy_parse(b, n, "be.npy", &r) == 0 && ((float *)r.data)[0] == 1.5f);
    tensor_free(&r);
    n = make_npy(b, 1, "{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }\n", be + 4, 4);
    CHECK(npy_parse(b, n, "be.npy", &r) == 0 && r.dtype == DD_U16 && ((uint16_t *)r.data)[0] == 0x0102);
    tensor_free(&r);
    /* 0-d */
    n = make_npy(b, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n", "\x2a\0\0\0\0\0\0\0", 8);
    CHECK(npy_parse(b, n, "s.npy", &r) == 0 && r.ndim == 0 && ((int64_t *)r.data)[0] == 42);
    tensor_free(&r);

    /* malformed */
    CHECK_FAILS(npy_parse("\x93NUMPZ\1\0\0\0", 10, "m.npy", &r), "m.npy: not a .npy");
    CHECK_FAILS(npy_parse("\x93NUMPY\1\0", 8, "m.npy", &r), "m.npy");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, 30, "m.npy", &r), "truncated header");
    CHECK_FAILS(npy_parse(b, n - 1, "m.npy", &r), "needs 12 data bytes, file has 11");
    b[n] = 0;
    CHECK_FAILS(npy_parse(b, n + 1, "m.npy", &r), "file has 13");
    b[6] = 4;
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "unsupported format version 4");
    /* column-major data (np.save of a transposed array): read in C order. [2,3,4] int16 with
     * element (i,j,k) = 100 i + 10 j + k stored at i + 2 j + 6 k, and the same big-endian. */
    {
        int16_t col[24];
        uint8_t colbe[48];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                for (int k = 0; k < 4; k++) col[i + 2 * j + 6 * k] = (int16_t)(100 * i + 10 * j + k);
        for (int e = 0; e < 24; e++) colbe[2 * e] = (uint8_t)((uint16_t)col[e] >> 8), colbe[2 * e + 1] = (uint8_t)col[e];
        for (int big = 0; big < 2; big++) {
            n = make_npy(b, 1, big ? "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3, 4), }\n"
                                   : "{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3, 4), }\n",
                         big ? (const void *)colbe : (const void *)col, 48);
            CHECK(npy_parse(b, n, "f.npy", &r) == 0 && r.ndim == 3 && r.shape[0] == 2 && r.shape[2] == 4);
            int bad = 0;
            for (int c = 0; c < 24; c++) bad += ((int16_t *)r.data)[c] != 100 * (c / 12) + 10 * (c / 4 % 3) + c % 4;
            CHECK_MSG(bad == 0, "fortran_order True%s: %d elements misplaced", big ? ", big-endian" : "", bad);
            tensor_free(&r);
        }
        n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }\n", f3, 12);
        CHECK(npy_parse(b, n, "f1.npy", &r) == 0 && ((float *)r.data)[2] == 3); /* 1-d: the same order */
        tensor_free(&r);
    }
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x\ny': 1}\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "m.npy: npy header: malformed dict"); /* not quoted: one line */
    n = make_npy(b, 1, "{'descr': '<f4', 'shape': (3,), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "missing key 'fortran_order'");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "unexpected key 'x'");
    n = make_npy(b, 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "duplicate key");
    n = make_npy(b, 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "unsupported dtype descr '<c8'");
    n = make_npy(b, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "structured");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "overflows");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "bad shape dimension");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "bad shape dimension");
    n = make_npy(b, 1, "{'descr': '<u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", f3, 1);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "more than 8 dimensions");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } x\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "trailing characters");
    n = make_npy(b, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3 3), }\n", f3, 12);
    CHECK_FAILS(npy_parse(b, n, "m.npy", &r), "malformed shape");
    Tensor bf = tensor_newv(DD_BF16, 1, (int64_t)2);
    void *buf;
    size_t len;
    CHECK_FAILS(npy_serialize(&bf, &buf, &len), "BF16");
    tensor_free(&bf);
}

/* ---- safetensors ---- */

/* A safetensors image from header JSON (unpadded) and `dlen` data bytes of value i. */
static uint8_t *make_st(const char *json, size_t dlen, size_t *len)
{
    size_t hl = strlen(json);
    uint8_t *b = malloc(8 + hl + dlen + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, hl);
    for (size_t i = 0; i < dlen; i++) b[8 + hl + i] = (uint8_t)i;
    *len = 8 + hl + dlen;
    return b;
}

static int st_try(const char *json, size_t dlen, Safetensors *st)
{
    size_t len;
    uint8_t *b = make_st(json, dlen, &len);
    return st_parse(b, len, "w.safetensors", st);
}

static void test_safetensors(void)
{
    Tensor a = tensor_newv(DD_F32, 2, (int64_t)2, (int64_t)3), c = tensor_newv(DD_U8, 1, (int64_t)5),
           d = tensor_scalar_i64(-9), e = tensor_newv(DD_F16, 1, (int64_t)0), g = tensor_newv(DD_F32, 1, (int64_t)1);
    for (int i = 0; i < 6; i++) ((float *)a.data)[i] = (float)i * 0.5f;
    for (int i = 0; i < 5; i++) ((uint8_t *)c.data)[i] = (uint8_t)(200 + i);
    ((float *)g.data)[0] = 7;
    const char *names[] = {"z.u8", "b.weight", "num_batches_tracked", "empty", "a.bias"};
    const Tensor *ts[] = {&c, &a, &d, &e, &g};
    json_t *meta = json_pack("{s:s, s:s}", "arch", "convnet3", "classes", "10");
    void *buf;
    size_t len;
    CHECK(st_serialize(5, names, ts, meta, &buf, &len) == 0);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | ((uint8_t *)buf)[i];
    CHECK(hl % 8 == 0);
    /* order: I64 (8) first, then F32 by name (a.bias, b.weight), F16, U8 */
    const char *hdr = (const char *)buf + 8;
    const char *p1 = strstr(hdr, "num_batches_tracked"), *p2 = strstr(hdr, "a.bias"), *p3 = strstr(hdr, "b.weight"),
               *p4 = strstr(hdr, "empty"), *p5 = strstr(hdr, "z.u8");
    CHECK(p1 && p2 && p3 && p4 && p5 && p1 < p2 && p2 < p3 && p3 < p4 && p4 < p5);
    Safetensors st;
    CHECK(st_parse(buf, len, "rt.safetensors", &st) == 0);
    CHECK(st.n == 5);
    const StEntry *en = st_find(&st, "b.weight");
    CHECK(en && tensor_same_shape(&en->t, &a) && !memcmp(en->t.data, a.data, 24));
    en = st_find(&st, "num_batches_tracked");
    CHECK(en && en->t.ndim == 0 && *(int64_t *)en->t.data == -9);
    en = st_find(&st, "z.u8");
    CHECK(en && en->t.dtype == DD_U8 && ((uint8_t *)en->t.data)[4] == 204);
    en = st_find(&st, "empty");
    CHECK(en && en->t.dtype == DD_F16 && en->t.shape[0] == 0);
    CHECK(!st_find(&st, "nope"));
    CHECK(st.metadata && !strcmp(json_string_value(json_object_get(st.metadata, "arch")), "convnet3"));
    st_free(&st);
    /* file round trip without metadata */
    CHECK(st_write_file(tmp_path("w.safetensors"), 2, names, ts, NULL) == 0);
    CHECK(st_read_file(tmp_path("w.safetensors"), &st) == 0);
    CHECK(st.n == 2 && !st.metadata && st_find(&st, "b.weight"));
    st_free(&st);
    /* writer errors */
    const char *dup[] = {"x", "x"};
    const Tensor *ts2[] = {&a, &c};
    CHECK_FAILS(st_serialize(2, dup, ts2, NULL, &buf, &len), "duplicate tensor name 'x'");
    json_t *badmeta = json_pack("{s:i}", "epochs", 3);
    CHECK_FAILS(st_serialize(1, names, ts, badmeta, &buf, &len), "is not a string");
    json_decref(badmeta);
    CHECK_FAILS(st_write_file("/nonexistent-dir/w.safetensors", 1, names, ts, NULL), "/nonexistent-dir/w.safetensors");
    json_decref(meta);

    /* a header length that is not a multiple of 8 (other writers): values still right and aligned */
    CHECK(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[8,9]}}",
                 9, &st) == 0);
    en = st_find(&st, "a");
    CHECK(en && (uintptr_t)en->t.data % 4 == 0 && !memcmp(en->t.data, "\0\1\2\3\4\5\6\7", 8));
    en = st_find(&st, "b");
    CHECK(en && ((uint8_t *)en->t.data)[0] == 8);
    st_free(&st);
    /* U8 first, then an F32 at an odd offset: copied to aligned memory */
    CHECK(st_try("{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]}}   ",
                 5, &st) == 0);
    en = st_find(&st, "a");
    CHECK(en && (uintptr_t)en->t.data % 4 == 0 && !memcmp(en->t.data, "\1\2\3\4", 4));
    st_free(&st);
    CHECK(st_try("{}", 0, &st) == 0 && st.n == 0);
    st_free(&st);

    /* malformed */
    CHECK_FAILS(st_try("{\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,40]}}", 40, &st),
                "w.safetensors: tensor 'fc.bias': data_offsets [0,40] do not match F32[5] (20 bytes)");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, &st), "leave a hole");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, &st),
                "overlap");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5, &st), "trailing bytes");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 3, &st), "truncated");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, &st),
                "duplicate");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, &st), "unknown dtype F31");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, &st), "non-negative");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, &st), "overflows");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, &st), "do not match");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, &st), "data_offsets is not");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, &st), "unexpected field 'x'");
    CHECK_FAILS(st_try("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, &st), "missing 'data_offsets'");
    CHECK_FAILS(st_try("{\"__metadata__\":{\"k\":1}}", 0, &st), "__metadata__ value 'k' is not a string");
    CHECK_FAILS(st_try("{\"__metadata__\":[]}", 0, &st), "__metadata__ is not an object");
    CHECK_FAILS(st_try("[1,2]", 0, &st), "does not start with '{'");
    CHECK_FAILS(st_try("{\"a\":1", 0, &st), "header JSON");
    CHECK_FAILS(st_try("{\"a\":[]}", 0, &st), "entry is not an object");
    CHECK_FAILS(st_parse(malloc(4), 4, "w.safetensors", &st), "too short");
    {
        size_t l;
        uint8_t *b = make_st("{}", 0, &l);
        b[0] = 0;
        b[3] = 0x10; /* 268 MB */
        CHECK_FAILS(st_parse(b, l, "w.safetensors", &st), "exceeds 100 MB");
        b = make_st("{}", 0, &l);
        b[0] = 100;
        CHECK_FAILS(st_parse(b, l, "w.safetensors", &st), "exceeds the file");
    }
    { /* the usual mix-ups are named: a record stream (zstd, plain or tar) or a PyTorch checkpoint */
        static const struct { const char *head; size_t n, at; const char *hint; } mix[] = {
            {"\x28\xb5\x2f\xfd\x04\x58", 6, 0, "record stream or shard, not weights"},
            {"\x89" "DDTS\r\n\x1a\n\x01", 9, 0, "record stream or shard, not weights"},
            {"ustar\0", 6, 257, "record stream or shard, not weights"},
            {"PK\x03\x04\x14\0", 6, 0, "PyTorch checkpoint: pipelines/torch2safetensors.py"},
            {"\x80\x02\x8a\x0a", 4, 0, "PyTorch checkpoint: pipelines/torch2safetensors.py"},
            {"\x10\0\0\0\0\0\0\0[", 9, 0, "does not start with '{'"},
        };
        for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
            uint8_t *b = calloc(1, 600);
            memset(b, 'x', mix[i].at);
            memcpy(b + mix[i].at, mix[i].head, mix[i].n);
            CHECK_FAILS(st_parse(b, 600, "w.safetensors", &st), mix[i].hint);
            if (i == 5) CHECK_MSG(!strstr(dd_errmsg(), "(it "), "%s", dd_errmsg()); /* no hint */
        }
    }
    tensor_free(&a);
    tensor_free(&c);
    tensor_free(&d);
    tensor_free(&e);
    tensor_free(&g);
}

/* ---- PNG ---- */

static void test_png(void)
{
    for (int bits = 8; bits <= 16; bits += 8)
        for (int ch = 1; ch <= 3; ch += 2) {
            Tensor t = tensor_newv(bits == 8 ? DD_U8 : DD_U16, 3, (int64_t)ch, (int64_t)5, (int64_t)7), r;
            int64_t n = tensor_numel(&t);
            for (int64_t i = 0; i < n; i++) {
                if (bits == 8) ((uint8_t *)t.data)[i] = (uint8_t)(i * 11);
                else ((uint16_t *)t.data)[i] = (uint16_t)(i * 977);
            }
            void *buf;
            size_t len;
            CHECK(png_encode(&t, &buf, &len) == 0);
            CHECK(png_decode(buf, len, "rt.png", bits == 16, &r) == 0);
            CHECK(tensor_same_shape(&t, &r) && !memcmp(t.data, r.data, (size_t)tensor_nbytes(&t)));
            tensor_free(&r);
            /* the other depth: 8 -> 16 replicates (v * 257), 16 -> 8 rounds */
            CHECK(png_decode(buf, len, "rt.png", bits == 8, &r) == 0);
            CHECK(r.ndim == 3 && r.shape[0] == ch && r.shape[1] == 5 && r.shape[2] == 7);
            for (int64_t i = 0; i < n; i++) {
                if (bits == 8) CHECK(((uint16_t *)r.data)[i] == ((uint8_t *)t.data)[i] * 257);
                else CHECK_CLOSE(((uint8_t *)r.data)[i], ((uint16_t *)t.data)[i] / 257.0, 0.5, 0);
            }
            tensor_free(&r);
            CHECK(image_decode(buf, len, "rt.png", &r) == 0 && r.dtype == DD_U8 && r.shape[0] == ch);
            tensor_free(&r);
            /* corrupt: truncated, flipped data byte (CRC), bad signature */
            CHECK_FAILS(png_decode(buf, len / 2, "bad.png", 0, &r), "bad.png: png:");
            ((uint8_t *)buf)[len - 20] ^= 0x55;
            CHECK_FAILS(png_decode(buf, len, "bad.png", 0, &r), "bad.png");
            ((uint8_t *)buf)[0] = 0;
            CHECK_FAILS(png_decode(buf, len, "bad.png", 0, &r), "not a PNG");
            free(buf);
            tensor_free(&t);
        }
    /* RGBA and palette PNGs (written with libpng's simplified API): alpha dropped, palette expanded */
    uint8_t rgba[2 * 3 * 4], cmap[3 * 3] = {10, 20, 30, 40, 50, 60, 250, 251, 252}, idx[6] = {0, 1, 2, 2, 1, 0};
    for (int i = 0; i < 24; i++) rgba[i] = (uint8_t)(i * 10);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 3;
    im.height = 2;
    im.format = PNG_FORMAT_RGBA;
    static uint8_t mem[4096];
    png_alloc_size_t sz = sizeof mem;
    CHECK(png_image_write_to_memory(&im, mem, &sz, 0, rgba, 0, NULL));
    Tensor r;
    CHECK(png_decode(mem, sz, "rgba.png", 0, &r) == 0 && r.shape[0] == 3 && r.shape[1] == 2 && r.shape[2] == 3);
    if (r.data) CHECK(((uint8_t *)r.data)[0] == 0 && ((uint8_t *)r.data)[1] == 40 && ((uint8_t *)r.data)[6 + 0] == 10);
    tensor_free(&r);
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = 3;
    im.height = 2;
    im.format = PNG_FORMAT_RGB_COLORMAP;
    im.colormap_entries = 3;
    sz = sizeof mem;
    CHECK(png_image_write_to_memory(&im, mem, &sz, 0, idx, 0, cmap));
    CHECK(png_decode(mem, sz, "pal.png", 0, &r) == 0 && r.shape[0] == 3);
    if (r.data) {
        const uint8_t *p = r.data;
        CHECK(p[0] == 10 && p[6] == 20 && p[12] == 30 && p[2] == 250 && p[5] == 10);
    }
    tensor_free(&r);
    Tensor bad = tensor_newv(DD_F32, 3, (int64_t)3, (int64_t)2, (int64_t)2);
    void *buf;
    size_t len;
    CHECK_FAILS(png_encode(&bad, &buf, &len), "cannot encode F32[3,2,2]");
    tensor_free(&bad);
    Tensor ok = tensor_newv(DD_U8, 3, (int64_t)1, (int64_t)2, (int64_t)2);
    CHECK(png_write_file(tmp_path("o.png"), &ok) == 0);
    void *fb;
    size_t fl;
    CHECK(dd_read_file(tmp_path("o.png"), &fb, &fl) == 0 && png_decode(fb, fl, "o.png", 0, &r) == 0);
    tensor_free(&r);
    free(fb);
    tensor_free(&ok);
}

/* ---- JPEG ---- */

/* Compresses w x h pixels of `comps` components (HWC) in `cs` with libjpeg. */
static uint8_t *jpeg_make(const uint8_t *pix, int w, int h, int comps, J_COLOR_SPACE cs, unsigned long *len)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    jpeg_mem_dest(&ci, &out, len);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = comps;
    ci.in_color_space = cs;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 98, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return out;
}

/* Mean absolute difference of a decoded [C,H,W] image against expected HWC pixels. */
static double mad_chw(const Tensor *t, const uint8_t *hwc, int c)
{
    size_t plane = (size_t)(t->shape[1] * t->shape[2]);
    double s = 0;
    for (size_t i = 0; i < plane; i++)
        for (int k = 0; k < c; k++) s += fabs((double)((uint8_t *)t->data)[k * plane + i] - hwc[i * c + k]);
    return s / (double)(plane * c);
}

static void test_jpeg(void)
{
    enum { W = 32, H = 24 };
    static uint8_t rgb[W * H * 3], gray[W * H], cmyk[W * H * 4], expect[W * H * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int i = y * W + x;
            rgb[3 * i] = (uint8_t)(x * 8);
            rgb[3 * i + 1] = (uint8_t)(y * 10);
            rgb[3 * i + 2] = 128;
            gray[i] = (uint8_t)(x * 4 + y * 4);
            /* Adobe CMYK stores inverted values: stored = 255 - ink */
            int C = x * 4, M = 50, Y = y * 5, K = 40;
            cmyk[4 * i] = (uint8_t)(255 - C);
            cmyk[4 * i + 1] = (uint8_t)(255 - M);
            cmyk[4 * i + 2] = (uint8_t)(255 - Y);
            cmyk[4 * i + 3] = (uint8_t)(255 - K);
            expect[3 * i] = (uint8_t)((255 - C) * (255 - K) / 255);
            expect[3 * i + 1] = (uint8_t)((255 - M) * (255 - K) / 255);
            expect[3 * i + 2] = (uint8_t)((255 - Y) * (255 - K) / 255);
        }
    unsigned long len;
    Tensor r;
    uint8_t *j = jpeg_make(rgb, W, H, 3, JCS_RGB, &len);
    CHECK(jpeg_decode(j, len, "rgb.jpg", &r) == 0 && r.dtype == DD_U8 && r.shape[0] == 3 && r.shape[1] == H && r.shape[2] == W);
    if (r.data) CHECK_MSG(mad_chw(&r, rgb, 3) < 2.0, "mad %g", mad_chw(&r, rgb, 3));
    tensor_free(&r);
    CHECK(image_decode(j, len, "rgb.jpg", &r) == 0 && r.shape[0] == 3);
    tensor_free(&r);
    CHECK_FAILS(jpeg_decode(j, len / 2, "trunc.jpg", &r), "trunc.jpg: jpeg:");
    CHECK(r.data == NULL);
    memset(j + 2, 0x11, 40);
    CHECK_FAILS(jpeg_decode(j, len, "bad.jpg", &r), "bad.jpg: jpeg:");
    free(j);
    j = jpeg_make(gray, W, H, 1, JCS_GRAYSCALE, &len);
    CHECK(jpeg_decode(j, len, "gray.jpg", &r) == 0 && r.shape[0] == 1);
    if (r.data) CHECK(mad_chw(&r, gray, 1) < 2.0);
    tensor_free(&r);
    free(j);
    j = jpeg_make(cmyk, W, H, 4, JCS_CMYK, &len);
    CHECK(jpeg_decode(j, len, "cmyk.jpg", &r) == 0 && r.shape[0] == 3);
    if (r.data) CHECK_MSG(mad_chw(&r, expect, 3) < 2.5, "mad %g", mad_chw(&r, expect, 3));
    tensor_free(&r);
    free(j);
    CHECK_FAILS(jpeg_decode("\xff\xd8\xff", 3, "tiny.jpg", &r), "tiny.jpg");
}

/* ---- PPM/PGM and sniffing ---- */

static void test_pnm(void)
{
    Tensor r;
    const char p6[] = "P6\n# comment\n2 1\n255\n\x01\x02\x03\x04\x05\x06";
    CHECK(image_decode(p6, sizeof p6 - 1, "a.ppm", &r) == 0 && r.shape[0] == 3 && r.shape[1] == 1 && r.shape[2] == 2);
    if (r.data) CHECK(((uint8_t *)r.data)[0] == 1 && ((uint8_t *)r.data)[1] == 4 && ((uint8_t *)r.data)[2] == 2);
    tensor_free(&r);
    const char p5[] = "P5 2 2 15\n\x00\x0f\x07\x08";
    CHECK(image_decode(p5, sizeof p5 - 1, "a.pgm", &r) == 0 && r.shape[0] == 1);
    if (r.data) CHECK(((uint8_t *)r.data)[1] == 255 && ((uint8_t *)r.data)[2] == 119);
    tensor_free(&r);
    CHECK_FAILS(image_decode(p6, sizeof p6 - 2, "a.ppm", &r), "a.ppm: P6: 2x1 needs 6 pixel bytes, file has 5");
    CHECK_FAILS(image_decode("P5 2 2 65535\n", 13, "w.pgm", &r), "maxval 65535");
    CHECK_FAILS(image_decode("P5 2 x", 6, "w.pgm", &r), "malformed header");
    CHECK_FAILS(image_decode("P5 2 2 15\n\x00\x10\x07\x08", 14, "w.pgm", &r), "exceeds maxval");
    CHECK_FAILS(image_decode("BM\0\0\0\0", 6, "x.bmp", &r), "BMP images are not supported");
    CHECK_FAILS(image_decode("hello", 5, "x.txt", &r), "x.txt: unknown image format");
    CHECK_FAILS(image_decode("", 0, "e.jpg", &r), "unknown image format");
}

/* ---- IDX ---- */

static size_t gzip_mem(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    z_stream z = {0};
    CHECK(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
    size_t k = cap - z.avail_out;
    deflateEnd(&z);
    return k;
}

static void test_idx(void)
{
    uint8_t b[256], gz[512];
    Tensor r;
    /* u8 [2,2,3] */
    uint8_t h3[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
    memcpy(b, h3, 16);
    for (int i = 0; i < 12; i++) b[16 + i] = (uint8_t)i;
    CHECK(idx_parse(b, 28, "m.idx", &r) == 0 && r.dtype == DD_U8 && r.ndim == 3 && r.shape[2] == 3 && ((uint8_t *)r.data)[11] == 11);
    tensor_free(&r);
    size_t gl = gzip_mem(b, 28, gz, sizeof gz);
    CHECK(idx_parse(gz, gl, "m.idx.gz", &r) == 0 && r.shape[0] == 2 && ((uint8_t *)r.data)[5] == 5);
    tensor_free(&r);
    write_bytes(tmp_path("m.idx.gz"), gz, gl);
    CHECK(idx_read(tmp_path("m.idx.gz"), &r) == 0 && r.shape[1] == 2);
    tensor_free(&r);
    write_bytes(tmp_path("m.idx"), b, 28);
    CHECK(idx_read(tmp_path("m.idx"), &r) == 0 && ((uint8_t *)r.data)[7] == 7);
    tensor_free(&r);
    CHECK_FAILS(idx_parse(gz, gl - 5, "t.idx.gz", &r), "t.idx.gz");
    write_bytes(tmp_path("t.idx.gz"), gz, gl - 12);
    CHECK_FAILS(idx_read(tmp_path("t.idx.gz"), &r), "t.idx.gz");
    CHECK_FAILS(idx_parse(b, 27, "m.idx", &r), "U8[2,2,3] needs 12 data bytes, file has 11");
    CHECK_FAILS(idx_parse(b, 29, "m.idx", &r), "trailing bytes");
    CHECK_FAILS(idx_parse(b, 10, "m.idx", &r), "truncated dimensions");
    CHECK_FAILS(idx_parse(b, 2, "m.idx", &r), "truncated header");
    /* big-endian i16 and f32 */
    uint8_t h16[] = {0, 0, 0x0B, 1, 0, 0, 0, 2, 0xff, 0xfe, 0x01, 0x00};
    CHECK(idx_parse(h16, sizeof h16, "s.idx", &r) == 0 && r.dtype == DD_I16 && ((int16_t *)r.data)[0] == -2 && ((int16_t *)r.data)[1] == 256);
    tensor_free(&r);
    uint8_t hf[] = {0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3f, 0xc0, 0, 0};
    CHECK(idx_parse(hf, sizeof hf, "f.idx", &r) == 0 && r.dtype == DD_F32 && ((float *)r.data)[0] == 1.5f);
    tensor_free(&r);
    /* malformed */
    uint8_t bad[] = {1, 0, 8, 1, 0, 0, 0, 1, 0};
    CHECK_FAILS(idx_parse(bad, sizeof bad, "b.idx", &r), "not an IDX file");
    bad[0] = 0;
    bad[2] = 0x0A;
    CHECK_FAILS(idx_parse(bad, sizeof bad, "b.idx", &r), "unknown data type code 0x0a");
    bad[2] = 8;
    bad[3] = 0;
    CHECK_FAILS(idx_parse(bad, sizeof bad, "b.idx", &r), "0 dimensions");
    uint8_t huge[] = {0, 0, 0x0E, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1};
    CHECK_FAILS(idx_parse(huge, sizeof huge, "h.idx", &r), "overflows");
    uint8_t big[] = {0, 0, 0x08, 2, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0x10, 0, 1, 2, 3};
    CHECK_FAILS(idx_parse(big, sizeof big, "big.idx", &r), "file has 3");
    CHECK_FAILS(idx_read(tmp_path("nope.idx"), &r), "nope.idx");

    /* the installed Fashion-MNIST */
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char p[256];
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    if (access(p, R_OK)) {
        printf("note: %s absent, Fashion-MNIST checks skipped\n", dir);
        return;
    }
    CHECK(idx_read(p, &r) == 0 && r.dtype == DD_U8 && r.ndim == 1 && r.shape[0] == 60000);
    if (r.data) CHECK(((uint8_t *)r.data)[0] == 9); /* Ankle boot */
    tensor_free(&r);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    CHECK(idx_read(p, &r) == 0 && r.ndim == 3 && r.shape[0] == 60000 && r.shape[1] == 28 && r.shape[2] == 28);
    tensor_free(&r);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    CHECK(idx_read(p, &r) == 0 && r.ndim == 3 && r.shape[0] == 10000);
    tensor_free(&r);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    CHECK(idx_read(p, &r) == 0 && r.ndim == 1 && r.shape[0] == 10000);
    if (r.data) CHECK(((uint8_t *)r.data)[0] == 9);
    tensor_free(&r);
}

/* ---- CIFAR, line lists ---- */

static void test_cifar(void)
{
    static uint8_t rec[3 * 3074];
    for (int i = 0; i < 3; i++) {
        rec[i * 3073] = (uint8_t)(i + 5);
        rec[i * 3073 + 1 + 3071] = (uint8_t)(100 + i);
        rec[i * 3073 + 1 + 1024] = 77; /* first green pixel */
    }
    write_bytes(tmp_path("c10.bin"), rec, 3 * 3073);
    Tensor im, lab;
    CHECK(cifar_read(tmp_path("c10.bin"), 0, &im, &lab) == 0);
    CHECK(im.dtype == DD_U8 && im.ndim == 4 && im.shape[0] == 3 && im.shape[1] == 3 && im.shape[2] == 32);
    CHECK(lab.dtype == DD_I64 && lab.shape[0] == 3 && ((int64_t *)lab.data)[2] == 7);
    if (im.data) CHECK(((uint8_t *)im.data)[2 * 3072 + 3071] == 102 && ((uint8_t *)im.data)[1024] == 77);
    tensor_free(&im);
    tensor_free(&lab);
    write_bytes(tmp_path("c10b.bin"), rec, 3 * 3073 - 1);
    CHECK_FAILS(cifar_read(tmp_path("c10b.bin"), 0, &im, &lab), "not a positive multiple of the 3073-byte record");
    rec[0] = 10;
    write_bytes(tmp_path("c10c.bin"), rec, 3073);
    CHECK_FAILS(cifar_read(tmp_path("c10c.bin"), 0, &im, &lab), "record 0: label 10 out of range");
    memset(rec, 0, sizeof rec);
    rec[0] = 19;
    rec[1] = 99;
    rec[3074] = 3;
    rec[3075] = 42;
    write_bytes(tmp_path("c100.bin"), rec, 2 * 3074);
    CHECK(cifar_read(tmp_path("c100.bin"), 1, &im, &lab) == 0 && lab.shape[0] == 2);
    if (lab.data) CHECK(((int64_t *)lab.data)[0] == 99 && ((int64_t *)lab.data)[1] == 42);
    tensor_free(&im);
    tensor_free(&lab);
    write_bytes(tmp_path("empty.bin"), "", 0);
    CHECK_FAILS(cifar_read(tmp_path("empty.bin"), 1, &im, &lab), "CIFAR-100 file size 0");

    /* CRLF and trailing blanks trimmed, blank lines at the end ignored (CIFAR's batches.meta.txt);
     * a blank line before an entry is refused: the entries after it would be off by one */
    const char txt[] = "airplane\r\nautomobile\nbird  \ncat\n\n  \r\n";
    write_bytes(tmp_path("names.txt"), txt, sizeof txt - 1);
    char **lines;
    int n;
    CHECK(dd_read_lines(tmp_path("names.txt"), &lines, &n) == 0 && n == 4);
    if (n == 4) CHECK(!strcmp(lines[0], "airplane") && !strcmp(lines[1], "automobile") && !strcmp(lines[2], "bird") && !strcmp(lines[3], "cat"));
    dd_lines_free(lines, n);
    const char gap[] = "airplane\r\nautomobile\n\n  \nbird  \ncat";
    write_bytes(tmp_path("gap.txt"), gap, sizeof gap - 1);
    CHECK_FAILS(dd_read_lines(tmp_path("gap.txt"), &lines, &n), "gap.txt: line 3 is empty");
    CHECK_FAILS(dd_read_lines(tmp_path("none.txt"), &lines, &n), "none.txt");
}

/* ---- ImageFolder ---- */

static void touch(const char *rel)
{
    write_bytes(tmp_path(rel), "x", 1);
}

static void test_imagefolder(void)
{
    const char *dirs[] = {"if", "if/b", "if/a", "if/a/sub", "if/.git", "if/B2", "if/a/.cache", "e", "e2", "e2/c"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) CHECK(mkdir(tmp_path(dirs[i]), 0755) == 0);
    touch("if/b/x.PNG");
    touch("if/a/2.jpg");
    touch("if/a/10.JPEG");
    touch("if/a/.hidden.jpg");
    touch("if/a/notes.txt");
    touch("if/a/sub/0.webp");
    touch("if/a/.cache/9.png");
    touch("if/.git/1.png");
    touch("if/B2/y.tiff");
    touch("if/file.png");
    touch("e2/c/readme.md");
    ImageFolder f;
    CHECK(imagefolder_scan(tmp_path("if"), &f) == 0);
    CHECK(f.nclasses == 3 && f.nfiles == 5);
    if (f.nclasses == 3 && f.nfiles == 5) {
        CHECK(!strcmp(f.classes[0], "B2") && !strcmp(f.classes[1], "a") && !strcmp(f.classes[2], "b"));
        const char *want[] = {"if/B2/y.tiff", "if/a/10.JPEG", "if/a/2.jpg", "if/a/sub/0.webp", "if/b/x.PNG"};
        int64_t lab[] = {0, 1, 1, 1, 2};
        for (int i = 0; i < 5; i++) {
            CHECK_MSG(!strcmp(f.paths[i], tmp_path(want[i])), "%s vs %s", f.paths[i], want[i]);
            CHECK(f.labels[i] == lab[i]);
        }
    }
    imagefolder_free(&f);
    CHECK_FAILS(imagefolder_scan(tmp_path("e"), &f), "no class subdirectories");
    CHECK_FAILS(imagefolder_scan(tmp_path("e2"), &f), "class 'c' has no image files");
    CHECK_FAILS(imagefolder_scan(tmp_path("nonexistent"), &f), "nonexistent");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_codecs.XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_npy();
    test_safetensors();
    test_png();
    test_jpeg();
    test_pnm();
    test_idx();
    test_cifar();
    test_imagefolder();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_done("test_codecs");
}

/* codecs_tool.c - helper of tests/parity/codecs.sh: writes .npy and safetensors files of known
 * content with our writers, and dumps what our readers parse, so the script can compare both
 * directions against numpy and torch.
 *
 *   codecs_tool npy-write DIR     a.npy ... (see below) into DIR
 *   codecs_tool npy-dump FILE     "DTYPE[shape]" then one value per line (%.17g)
 *   codecs_tool st-write FILE     a safetensors file with metadata
 *   codecs_tool st-dump FILE      "meta KEY VALUE" lines, then per tensor "NAME DTYPE[shape]" and values
 *   codecs_tool img-dump FILE     image_decode: "U8[C,H,W]" then the values
 *   codecs_tool pk-dump FILE      pickle_parse: the value in one canonical line (pk_text below)
 * Exit 1 with the library's message on a parse or write error. */
#include "formats/codecs.h"
#include "formats/pickle.h"
#include "libcommon/base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void dump(const Tensor *t)
{
    char d[160];
    printf("%s\n", tensor_describe(t, d, sizeof d));
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) printf("%.17g\n", tensor_get_f64(t, i));
}

/* Element i of every test tensor: a deterministic value representable in each dtype. */
static void fill(Tensor *t)
{
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = (double)(i % 7) * 1.25 - 3;
        switch (t->dtype) {
        case DD_F32: ((float *)t->data)[i] = (float)v; break;
        case DD_F64: ((double *)t->data)[i] = v / 3; break;
        case DD_F16: ((uint16_t *)t->data)[i] = dd_f32_to_f16((float)v); break;
        case DD_BF16: ((uint16_t *)t->data)[i] = dd_f32_to_bf16((float)v); break;
        case DD_U8: ((uint8_t *)t->data)[i] = (uint8_t)(i * 37); break;
        case DD_I8: ((int8_t *)t->data)[i] = (int8_t)(i * 37); break;
        case DD_BOOL: ((uint8_t *)t->data)[i] = (uint8_t)(i % 3 == 0); break;
        case DD_I16: ((int16_t *)t->data)[i] = (int16_t)(i * 1000 - 30000); break;
        case DD_I32: ((int32_t *)t->data)[i] = (int32_t)(i * 100000 - 7); break;
        case DD_I64: ((int64_t *)t->data)[i] = (int64_t)i * 4000000000LL - 5; break;
        case DD_U16: ((uint16_t *)t->data)[i] = (uint16_t)(i * 5000); break;
        case DD_U32: ((uint32_t *)t->data)[i] = (uint32_t)i * 300000000u; break;
        case DD_U64: ((uint64_t *)t->data)[i] = (uint64_t)i * 3000000000000000000ull; break;
        default: break;
        }
    }
}

static int npy_write_all(const char *dir)
{
    struct { const char *name; DdDtype dt; int nd; int64_t s[3]; } v[] = {
        {"f32_2x3", DD_F32, 2, {2, 3}}, {"u8_5", DD_U8, 1, {5}},        {"i64_0d", DD_I64, 0, {0}},
        {"f16_4", DD_F16, 1, {4}},      {"b1_2x2", DD_BOOL, 2, {2, 2}}, {"i16_3x1x2", DD_I16, 3, {3, 1, 2}},
        {"f64_3", DD_F64, 1, {3}},      {"f32_0x4", DD_F32, 2, {0, 4}}, {"u64_2", DD_U64, 1, {2}},
        {"i8_6", DD_I8, 1, {6}},
    };
    char path[4096];
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        Tensor t = tensor_new(v[i].dt, v[i].nd, v[i].s);
        fill(&t);
        snprintf(path, sizeof path, "%s/%s.npy", dir, v[i].name);
        int rc = npy_write_file(path, &t);
        tensor_free(&t);
        if (rc) return -1;
    }
    return 0;
}

static int st_write(const char *path)
{
    Tensor w = tensor_newv(DD_F32, 2, (int64_t)3, (int64_t)4), b = tensor_newv(DD_F32, 1, (int64_t)3),
           n = tensor_scalar_i64(12345), h = tensor_newv(DD_BF16, 1, (int64_t)5), u = tensor_newv(DD_U8, 2, (int64_t)2, (int64_t)3),
           d = tensor_newv(DD_F64, 1, (int64_t)2), e = tensor_newv(DD_F16, 2, (int64_t)0, (int64_t)3);
    Tensor *all[] = {&w, &b, &h, &u, &d, &e};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) fill(all[i]);
    const char *names[] = {"fc.weight", "fc.bias", "bn.num_batches_tracked", "half", "pix", "dbl", "empty"};
    const Tensor *ts[] = {&w, &b, &n, &h, &u, &d, &e};
    json_t *meta = json_pack("{s:s, s:s}", "arch", "convnet3", "mean", "[0.5, 0.5, 0.5]");
    int rc = st_write_file(path, 7, names, ts, meta);
    json_decref(meta);
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_free(all[i]);
    tensor_free(&n);
    return rc;
}

static int st_dump(const char *path)
{
    Safetensors st;
    if (st_read_file(path, &st)) return -1;
    if (st.metadata) {
        const char *k;
        json_t *v;
        json_object_foreach(st.metadata, k, v) printf("meta %s %s\n", k, json_string_value(v));
    }
    for (int i = 0; i < st.n; i++) {
        printf("%s ", st.e[i].name);
        dump(&st.e[i].t);
    }
    st_free(&st);
    return 0;
}

static void hex(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
}

/* The canonical text of a value, as codecs_peer.py's pk_text writes Python's: N T F, i:DEC,
 * f:HEX (the double's bits, big-endian), s:HEX (UTF-8), b:HEX, [..] (..) {k=v ..} with items
 * separated by spaces; a numpy array A:CODE:SHAPE:HEX (little-endian data; CODE as numpy's
 * dtype.str without the byte order, SHAPE sizes joined by x), or E:MESSAGE where pk_ndarray
 * refuses one; another call C:MODULE.NAME. */
static void pk_text(const PkObj *o)
{
    static const char *const codes[DD_NDTYPE] = {[DD_BOOL] = "b1", [DD_U8] = "u1", [DD_I8] = "i1", [DD_I16] = "i2",
        [DD_U16] = "u2", [DD_F16] = "f2", [DD_I32] = "i4", [DD_U32] = "u4", [DD_F32] = "f4", [DD_F64] = "f8",
        [DD_I64] = "i8", [DD_U64] = "u8"};
    switch (o->kind) {
    case PK_NONE: printf("N"); break;
    case PK_BOOL: printf(o->i ? "T" : "F"); break;
    case PK_INT: printf("i:%lld", (long long)o->i); break;
    case PK_FLOAT: {
        uint64_t u;
        memcpy(&u, &o->f, 8);
        printf("f:%016llx", (unsigned long long)u);
        break;
    }
    case PK_STR: printf("s:"), hex(o->s, o->len); break;
    case PK_BYTES: printf("b:"), hex(o->s, o->len); break;
    case PK_LIST: case PK_TUPLE: case PK_DICT:
        printf("%c", o->kind == PK_LIST ? '[' : o->kind == PK_TUPLE ? '(' : '{');
        for (size_t i = 0; i < o->n; i++) {
            if (i && (o->kind != PK_DICT || i % 2 == 0)) printf(" ");
            if (o->kind == PK_DICT && i % 2) printf("=");
            pk_text(o->v[i]);
        }
        printf("%c", o->kind == PK_LIST ? ']' : o->kind == PK_TUPLE ? ')' : '}');
        break;
    case PK_GLOBAL: printf("G:%s.%s", o->module, o->name); break;
    case PK_CALL: {
        Tensor t;
        if (pk_ndarray(o, "array", &t) == 0) {
            printf("A:%s:", codes[t.dtype]);
            for (int d = 0; d < t.ndim; d++) printf("%s%lld", d ? "x" : "", (long long)t.shape[d]);
            printf(":");
            hex(t.data, (size_t)tensor_nbytes(&t));
            tensor_free(&t);
        } else if (pk_is_global(o->fn, "numpy.core.multiarray", "_reconstruct")
                   || pk_is_global(o->fn, "numpy.core.numeric", "_frombuffer")) {
            printf("E:%s", dd_errmsg());
        } else if (o->fn->kind == PK_GLOBAL) {
            printf("C:%s.%s", o->fn->module, o->fn->name);
        } else {
            printf("C:?");
        }
        break;
    }
    }
}

static int pk_dump(const char *path)
{
    void *buf;
    size_t len;
    Pickle *p;
    const PkObj *root;
    if (dd_read_file(path, &buf, &len)) return -1;
    int rc = pickle_parse(buf, len, path, &p, &root);
    if (rc == 0) {
        pk_text(root);
        printf("\n");
        pickle_free(p);
    }
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    dd_prog_init(argv[0]);
    if (argc != 3) dd_die(DD_EXIT_USAGE, "usage: codecs_tool npy-write DIR | npy-dump FILE | st-write FILE | st-dump FILE | "
                                      "img-dump FILE | pk-dump FILE");
    int rc;
    if (!strcmp(argv[1], "npy-write")) {
        rc = npy_write_all(argv[2]);
    } else if (!strcmp(argv[1], "npy-dump")) {
        Tensor t;
        rc = npy_read_file(argv[2], &t);
        if (!rc) dump(&t), tensor_free(&t);
    } else if (!strcmp(argv[1], "img-dump")) {
        void *buf;
        size_t len;
        Tensor t;
        rc = dd_read_file(argv[2], &buf, &len);
        if (!rc) {
            rc = image_decode(buf, len, argv[2], &t);
            free(buf);
            if (!rc) dump(&t), tensor_free(&t);
        }
    } else if (!strcmp(argv[1], "st-write")) {
        rc = st_write(argv[2]);
    } else if (!strcmp(argv[1], "st-dump")) {
        rc = st_dump(argv[2]);
    } else if (!strcmp(argv[1], "pk-dump")) {
        rc = pk_dump(argv[2]);
    } else {
        dd_die(DD_EXIT_USAGE, "unknown command '%s'", argv[1]);
    }
    if (rc) dd_die_err(DD_EXIT_DATA);
    return 0;
}

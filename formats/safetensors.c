/* safetensors.c - strict safetensors reader and writer (u64 LE header length, JSON header, one
 * little-endian byte buffer). The reader validates everything before handing out views; the
 * writer orders tensors by dtype size descending, then name, and pads the header to 8 bytes. */
#include "formats/codecs.h"
#include "formats/sniff.h"
#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u)
#define ST_ALIGN 8

typedef struct {
    size_t begin, end;
    int idx;
} Span;

static int span_cmp(const void *a, const void *b)
{
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* A JSON integer that fits in [0, SIZE_MAX); -1 otherwise. */
static int json_size(const json_t *v, size_t *out)
{
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    if (x < 0 || (unsigned long long)x >= SIZE_MAX) return -1;
    *out = (size_t)x;
    return 0;
}

/* Validates one tensor entry object and fills e->t (data still unset) and its span. */
static int parse_entry(const char *name, const char *key, json_t *v, StEntry *e, Span *sp)
{
    char desc[160];
    if (!json_is_object(v)) return dd_err("%s: tensor '%s': entry is not an object", name, key);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!dt || !shape || !offs)
        return dd_err("%s: tensor '%s': missing '%s'", name, key, !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (json_object_size(v) != 3) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return dd_err("%s: tensor '%s': unexpected field '%s'", name, key, k);
    }
    int code = json_is_string(dt) ? dd_dtype_parse(json_string_value(dt)) : -1;
    if (code < 0)
        return dd_err("%s: tensor '%s': unknown dtype %s", name, key, json_is_string(dt) ? json_string_value(dt) : "(not a string)");
    if (!json_is_array(shape)) return dd_err("%s: tensor '%s': shape is not an array", name, key);
    size_t nd = json_array_size(shape);
    if (nd > DD_MAXDIM) return dd_err("%s: tensor '%s': %zu dimensions (at most %d supported)", name, key, nd, DD_MAXDIM);
    e->t = (Tensor){.dtype = (DdDtype)code, .device = DD_CPU, .ndim = (int)nd};
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return dd_err("%s: tensor '%s': shape[%zu] is not a non-negative integer", name, key, i);
        e->t.shape[i] = (int64_t)json_integer_value(d);
    }
    size_t b, en;
    if (!json_is_array(offs) || json_array_size(offs) != 2 || json_size(json_array_get(offs, 0), &b) ||
        json_size(json_array_get(offs, 1), &en))
        return dd_err("%s: tensor '%s': data_offsets is not [begin, end] with non-negative integers", name, key);
    int64_t nb = tensor_nbytes(&e->t);
    if (nb < 0) return dd_err("%s: tensor '%s': shape %s overflows", name, key, tensor_describe(&e->t, desc, sizeof desc));
    if (en < b || (uint64_t)(en - b) != (uint64_t)nb)
        return dd_err("%s: tensor '%s': data_offsets [%zu,%zu] do not match %s (%lld bytes)", name, key, b, en,
                      tensor_describe(&e->t, desc, sizeof desc), (long long)nb);
    sp->begin = b;
    sp->end = en;
    return 0;
}

static int check_metadata(const char *name, json_t *m)
{
    if (!json_is_object(m)) return dd_err("%s: __metadata__ is not an object", name);
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) if (!json_is_string(v))
        return dd_err("%s: __metadata__ value '%s' is not a string", name, k);
    return 0;
}

/* The error's hint for a file that is not safetensors: the two usual mix-ups are a record stream
 * given as weights and a PyTorch checkpoint given before conversion. */
static const char *st_lookalike(const uint8_t *b, size_t len)
{
    switch (dd_sniff(b, len)) {
    case DD_KIND_STREAM: return " (it is a record stream or shard, not weights)";
    case DD_KIND_TORCH:
        return " (it looks like a PyTorch checkpoint: pipelines/torch2safetensors.py converts it, "
               "man 7 ddpipe-models)";
    default: return "";
    }
}

/* Validates the header and offsets; fills out->e (views set later from (*begins)[i], malloc'ed)
 * and out->metadata. */
static int parse_header(const uint8_t *b, size_t len, const char *name, Safetensors *out, size_t *data_off,
                        size_t **begins)
{
    if (len < 8) return dd_err("%s: safetensors: file too short (%zu bytes)", name, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b[i];
    if (n > ST_MAX_HEADER)
        return dd_err("%s: safetensors: header length %llu exceeds 100 MB%s", name, (unsigned long long)n,
                      st_lookalike(b, len));
    if (n > len - 8)
        return dd_err("%s: safetensors: header length %llu exceeds the file (%zu bytes)%s", name,
                      (unsigned long long)n, len, st_lookalike(b, len));
    if (n < 2 || b[8] != '{')
        return dd_err("%s: safetensors: header does not start with '{'%s", name, st_lookalike(b, len));
    json_error_t je;
    json_t *root = json_loadb((const char *)b + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root) return dd_err("%s: safetensors: header JSON: %s (offset %d)", name, je.text, je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return dd_err("%s: safetensors: header is not a JSON object", name);
    }
    size_t cnt = json_object_size(root);
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        if (check_metadata(name, meta)) {
            json_decref(root);
            return -1;
        }
        cnt--;
    }
    out->e = dd_calloc(cnt ? cnt : 1, sizeof *out->e);
    Span *sp = dd_malloc((cnt ? cnt : 1) * sizeof *sp);
    const char *k;
    json_t *v;
    int i = 0, rc = 0;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) continue;
        out->e[i].name = dd_strdup(k);
        out->n = i + 1;
        sp[i].idx = i;
        if ((rc = parse_entry(name, k, v, &out->e[i], &sp[i]))) break;
        i++;
    }
    size_t end = 0;
    if (!rc) {
        qsort(sp, cnt, sizeof *sp, span_cmp);
        for (size_t j = 0; j < cnt && !rc; j++) {
            if (sp[j].begin != end)
                rc = dd_err("%s: tensor '%s': data_offsets [%zu,%zu] %s (expected begin %zu)", name, out->e[sp[j].idx].name,
                            sp[j].begin, sp[j].end, sp[j].begin < end ? "overlap the previous tensor" : "leave a hole", end);
            end = sp[j].end;
        }
    }
    *begins = dd_malloc((cnt ? cnt : 1) * sizeof **begins);
    for (size_t j = 0; j < (size_t)out->n; j++) (*begins)[sp[j].idx] = sp[j].begin;
    if (!rc && len - 8 - n != end)
        rc = dd_err("%s: safetensors: file is %zu bytes, header says %llu (8 + %llu header + %zu data)%s", name, len,
                    (unsigned long long)(8 + n + end), (unsigned long long)n, end,
                    len - 8 - n < end ? ": truncated" : ": trailing bytes");
    free(sp);
    if (!rc && meta) out->metadata = json_incref(meta);
    json_decref(root);
    *data_off = 8 + (size_t)n;
    return rc;
}

int st_parse(void *buf, size_t len, const char *name, Safetensors *out)
{
    memset(out, 0, sizeof *out);
    out->buf = buf;
    out->len = len;
    size_t off, *begins = NULL;
    if (parse_header(buf, len, name, out, &off, &begins)) {
        free(begins);
        st_free(out);
        return -1;
    }
    /* Views must be aligned for their dtype: move the data section to an 8-byte boundary when the
     * header length is not a multiple of 8 (other writers), and copy any tensor still misaligned. */
    if (off % ST_ALIGN) {
        size_t pad = ST_ALIGN - off % ST_ALIGN;
        out->buf = dd_realloc(out->buf, len + pad);
        memmove((uint8_t *)out->buf + off + pad, (uint8_t *)out->buf + off, len - off);
        memset((uint8_t *)out->buf + off, ' ', pad);
        off += pad;
        out->len = len + pad;
    }
    for (int i = 0; i < out->n; i++) {
        Tensor *t = &out->e[i].t;
        t->data = (uint8_t *)out->buf + off + begins[i];
        size_t sz = dd_dtype_size(t->dtype);
        if ((uintptr_t)t->data % sz) {
            size_t nb = (size_t)tensor_nbytes(t);
            void *c = dd_malloc(nb ? nb : 1);
            memcpy(c, t->data, nb);
            t->data = c;
            t->owns = 1;
        }
    }
    free(begins);
    return 0;
}

int st_read_file(const char *path, Safetensors *out)
{
    void *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    if (dd_read_file(path, &buf, &len)) return -1;
    return st_parse(buf, len, path, out);
}

const StEntry *st_find(const Safetensors *st, const char *name)
{
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->e[i].name, name)) return &st->e[i];
    return NULL;
}

void st_free(Safetensors *st)
{
    for (int i = 0; i < st->n; i++) {
        free(st->e[i].name);
        tensor_free(&st->e[i].t);
    }
    free(st->e);
    if (st->metadata) json_decref(st->metadata);
    free(st->buf);
    memset(st, 0, sizeof *st);
}

/* ---- writer ---- */

typedef struct {
    const char *name;
    const Tensor *t;
} WItem;

static int witem_cmp(const void *a, const void *b)
{
    const WItem *x = a, *y = b;
    size_t sx = dd_dtype_size(x->t->dtype), sy = dd_dtype_size(y->t->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

int st_serialize(int n, const char *const *names, const Tensor *const *tensors, json_t *metadata,
                 void **buf, size_t *len)
{
    char desc[160];
    if (n < 0) return dd_err("safetensors: negative tensor count");
    if (metadata && check_metadata("safetensors", metadata)) return -1;
    WItem *it = dd_malloc((size_t)(n ? n : 1) * sizeof *it);
    for (int i = 0; i < n; i++) it[i] = (WItem){names[i], tensors[i]};
    int bad = 0;
    for (int i = 0; i < n && !bad; i++) {
        const Tensor *t = it[i].t;
        if (!dd_dtype_name(t->dtype) || t->ndim < 0 || t->ndim > DD_MAXDIM || tensor_nbytes(t) < 0)
            bad = dd_err("safetensors: tensor '%s': invalid dtype or shape", it[i].name);
        else if (t->device != DD_CPU)
            bad = dd_err("safetensors: tensor '%s': not on the CPU", it[i].name);
        else if (!strcmp(it[i].name, "__metadata__"))
            bad = dd_err("safetensors: '__metadata__' is not a valid tensor name");
    }
    if (!bad) qsort(it, (size_t)n, sizeof *it, witem_cmp);
    for (int i = 0; i < n && !bad; i++)
        for (int j = 0; j < i && !bad; j++)
            if (!strcmp(it[i].name, it[j].name)) bad = dd_err("safetensors: duplicate tensor name '%s'", it[i].name);
    if (bad) {
        free(it);
        return -1;
    }

    json_t *root = json_object();
    if (metadata) json_object_set(root, "__metadata__", metadata);
    size_t off = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const Tensor *t = it[i].t;
        size_t nb = (size_t)tensor_nbytes(t);
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        if (dd_add_ok(off, nb, &nb) || nb > (size_t)INT64_MAX) {
            json_decref(shape);
            rc = dd_err("safetensors: total size overflows at '%s' %s", it[i].name, tensor_describe(t, desc, sizeof desc));
            break;
        }
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dd_dtype_name(t->dtype), "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)nb);
        if (!e || json_object_set_new(root, it[i].name, e)) rc = dd_err("safetensors: tensor name '%s' is not valid UTF-8", it[i].name);
        off = nb;
    }
    char *js = rc ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!rc && !js) rc = dd_err("safetensors: cannot encode the header");
    if (rc) {
        free(it);
        return -1;
    }
    size_t hl = strlen(js), padded = (hl + ST_ALIGN - 1) / ST_ALIGN * ST_ALIGN, total;
    if (dd_add_ok(8 + padded, off, &total)) {
        free(js);
        free(it);
        return dd_err("safetensors: total size overflows");
    }
    uint8_t *b = dd_malloc(total);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, js, hl);
    memset(b + 8 + hl, ' ', padded - hl);
    free(js);
    uint8_t *p = b + 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t nb = (size_t)tensor_nbytes(it[i].t);
        if (nb) memcpy(p, it[i].t->data, nb);
        p += nb;
    }
    free(it);
    *buf = b;
    *len = total;
    return 0;
}

int st_write_file(const char *path, int n, const char *const *names, const Tensor *const *tensors,
                  json_t *metadata)
{
    void *buf;
    size_t len;
    if (st_serialize(n, names, tensors, metadata, &buf, &len)) return dd_err_prefix("%s", path);
    int rc = dd_write_file(path, buf, len);
    free(buf);
    return rc;
}

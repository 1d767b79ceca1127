/* stream.c - the record stream: headers, records, the pipe container (reader and writer), the
 * container-sniffing reader and the multi-operand input. Tar shards live in stream_tar.c, the byte
 * window and zstd layer in bytesrc.c. Byte format: man/man5/ddpipe-stream.5. */
#include "formats/stream.h"
#include "formats/bytesrc.h"
#include "formats/sniff.h"
#include "libcommon/base/base.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define PIPE_MAGIC "\x89" "DDTS\r\n\x1a"
#define PIPE_VERSION 1u
#define FRAME_MAX ((uint64_t)1 << 40)
#define WINDOW ((size_t)1 << 20)
#define TAG_HEAD 0x44414548u /* "HEAD" read as u32 LE */
#define TAG_RECD 0x44434552u /* "RECD" */
#define TAG_END 0x21444e45u  /* "END!" */

static const uint8_t zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ---- header ---- */

TsHeader *ts_header_new(int nclasses, const char *const *classes)
{
    TsHeader *h = dd_malloc(sizeof *h);
    json_t *cl = json_array();
    for (int i = 0; i < nclasses; i++) json_array_append_new(cl, json_string(classes[i]));
    h->json = json_object();
    json_object_set_new(h->json, "format", json_string("ddpipe-stream"));
    json_object_set_new(h->json, "version", json_integer(1));
    json_object_set_new(h->json, "classes", cl);
    json_object_set_new(h->json, "space", json_string("pixel"));
    json_object_set_new(h->json, "history", json_array());
    return h;
}

TsHeader *ts_header_copy(const TsHeader *h)
{
    TsHeader *c = dd_malloc(sizeof *c);
    c->json = json_deep_copy(h->json);
    return c;
}

void ts_header_free(TsHeader *h)
{
    if (!h) return;
    json_decref(h->json);
    free(h);
}

int ts_header_nclasses(const TsHeader *h) { return (int)json_array_size(json_object_get(h->json, "classes")); }

const char *ts_header_class(const TsHeader *h, int i)
{
    return json_string_value(json_array_get(json_object_get(h->json, "classes"), (size_t)i));
}

json_t *ts_header_last_history(const TsHeader *h, const char *prog)
{
    json_t *hist = json_object_get(h->json, "history");
    for (size_t i = json_array_size(hist); i-- > 0;) {
        json_t *e = json_array_get(hist, i);
        const char *p = json_string_value(json_object_get(e, "prog"));
        if (p && !strcmp(p, prog)) return e;
    }
    return NULL;
}

void ts_header_add_history(TsHeader *h, int argc, char **argv, int64_t seed, json_t *params)
{
    json_t *hist = json_object_get(h->json, "history");
    if (!json_is_array(hist)) {
        hist = json_array();
        json_object_set_new(h->json, "history", hist);
    }
    json_t *e = json_object(), *av = json_array();
    for (int i = 0; i < argc; i++) json_array_append_new(av, json_string(argv[i]));
    json_object_set_new(e, "prog", json_string(dd_prog()));
    json_object_set_new(e, "version", json_string(DD_VERSION));
    json_object_set_new(e, "argv", av);
    if (seed >= 0) json_object_set_new(e, "seed", json_integer(seed));
    if (params) json_object_set_new(e, "params", json_deep_copy(params));
    json_array_append_new(hist, e);
}

int ts_header_classes_check(const TsHeader *a, const char *what_a, const TsHeader *b, const char *what_b)
{
    int na = ts_header_nclasses(a), nb = ts_header_nclasses(b);
    if (na != nb) return dd_err("class lists differ: %s has %d classes, %s has %d", what_a, na, what_b, nb);
    for (int i = 0; i < na; i++) {
        const char *ca = ts_header_class(a, i), *cb = ts_header_class(b, i);
        if (!ca || !cb || strcmp(ca, cb))
            return dd_err("class lists differ at class %d: %s has '%s', %s has '%s'", i, what_a, ca ? ca : "?",
                          what_b, cb ? cb : "?");
    }
    return 0;
}

int ts_header_validate(const TsHeader *h, const char *what)
{
    json_t *j = h->json;
    if (!json_is_object(j)) return dd_err("%s: header is not a JSON object", what);
    const char *fmt = json_string_value(json_object_get(j, "format"));
    if (!fmt || strcmp(fmt, "ddpipe-stream"))
        return dd_err("%s: header format is '%s', not 'ddpipe-stream'", what, fmt ? fmt : "(missing)");
    json_t *v = json_object_get(j, "version");
    if (!json_is_integer(v)) return dd_err("%s: header has no integer version", what);
    if (json_integer_value(v) != 1)
        return dd_err("%s: unsupported stream version %lld (this reader knows version 1)", what,
                      (long long)json_integer_value(v));
    json_t *cl = json_object_get(j, "classes");
    if (!json_is_array(cl)) return dd_err("%s: header has no class list", what);
    for (size_t i = 0; i < json_array_size(cl); i++)
        if (!json_is_string(json_array_get(cl, i))) return dd_err("%s: header class %zu is not a string", what, i);
    json_t *sp = json_object_get(j, "space");
    if (sp && (!json_is_string(sp) || strcmp(json_string_value(sp), "pixel")))
        return dd_err("%s: header \"space\" is not \"pixel\"", what);
    json_t *hi = json_object_get(j, "history"), *e;
    if (hi && !json_is_array(hi)) return dd_err("%s: header \"history\" is not an array", what);
    size_t i;
    json_array_foreach(hi, i, e) {
        json_t *av = json_object_get(e, "argv"), *a, *seed = json_object_get(e, "seed");
        json_t *params = json_object_get(e, "params");
        size_t k;
        int ok = json_is_object(e) && json_is_string(json_object_get(e, "prog")) &&
                 json_is_string(json_object_get(e, "version")) && json_is_array(av) &&
                 (!seed || json_is_integer(seed)) && (!params || json_is_object(params));
        json_array_foreach(av, k, a) ok &= json_is_string(a);
        if (!ok)
            return dd_err("%s: header history entry %zu is not {\"prog\": string, \"version\": string, "
                          "\"argv\": [strings], \"seed\": integer, \"params\": object}", what, i);
    }
    return 0;
}

/* ---- records ---- */

void ts_record_init(TsRecord *r) { memset(r, 0, sizeof *r); }

void ts_record_clear(TsRecord *r)
{
    for (int i = 0; i < r->nfields; i++)
        if (!r->fields[i].t.owns) r->fields[i].t.data = NULL; /* not ours: no spare */
    r->nfields = 0;
    r->key[0] = 0;
    free(r->meta);
    r->meta = NULL;
}

void ts_record_free(TsRecord *r)
{
    for (int i = 0; i < r->cap; i++) tensor_free(&r->fields[i].t);
    free(r->fields);
    free(r->meta);
    ts_record_init(r);
}

int ts_key_valid(const char *key)
{
    size_t n = 0;
    for (; key[n]; n++) {
        char c = key[n];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
        if (n >= TS_KEY_MAX) return 0;
    }
    return n > 0;
}

/* Ensures slot nfields exists (new slots zeroed). */
static TsField *record_next_slot(TsRecord *r)
{
    if (r->nfields == r->cap) {
        int nc = r->cap ? 2 * r->cap : 4;
        r->fields = dd_realloc(r->fields, (size_t)nc * sizeof *r->fields);
        memset(r->fields + r->cap, 0, (size_t)(nc - r->cap) * sizeof *r->fields);
        r->cap = nc;
    }
    return &r->fields[r->nfields];
}

void *tsi_record_slot(TsRecord *rec, size_t nbytes)
{
    TsField *f = record_next_slot(rec);
    int64_t have = f->t.owns && f->t.data ? tensor_nbytes(&f->t) : -1;
    if (have < 0 || (uint64_t)have < nbytes) {
        tensor_free(&f->t);
        if (!(f->t.data = malloc(nbytes ? nbytes : 1))) return NULL;
    }
    f->t.owns = 1;
    f->t.device = DD_CPU;
    f->name[0] = 0;
    return f->t.data;
}

void ts_record_set(TsRecord *r, const char *name, Tensor t)
{
    if (!ts_key_valid(name)) dd_die(DD_EXIT_DATA, "ts_record_set: invalid field name '%.80s'", name);
    Tensor *old = ts_record_get(r, name);
    if (old) {
        tensor_free(old);
        *old = t;
        return;
    }
    TsField *f = record_next_slot(r);
    tensor_free(&f->t);
    snprintf(f->name, sizeof f->name, "%s", name);
    f->t = t;
    r->nfields++;
}

Tensor *ts_record_get(TsRecord *r, const char *name)
{
    for (int i = 0; i < r->nfields; i++)
        if (!strcmp(r->fields[i].name, name)) return &r->fields[i].t;
    return NULL;
}

const Tensor *ts_record_cget(const TsRecord *r, const char *name)
{
    for (int i = 0; i < r->nfields; i++)
        if (!strcmp(r->fields[i].name, name)) return &r->fields[i].t;
    return NULL;
}

void ts_record_remove(TsRecord *r, const char *name)
{
    for (int i = 0; i < r->nfields; i++) {
        if (strcmp(r->fields[i].name, name)) continue;
        tensor_free(&r->fields[i].t);
        memmove(r->fields + i, r->fields + i + 1, (size_t)(r->nfields - i - 1) * sizeof *r->fields);
        memset(&r->fields[r->nfields - 1], 0, sizeof *r->fields);
        r->nfields--;
        return;
    }
}

int64_t ts_record_label(const TsRecord *r)
{
    const Tensor *t = ts_record_cget(r, "label");
    if (!t) return dd_err("no label field");
    if (!(t->ndim == 0 || (t->ndim == 1 && t->shape[0] == 1))) return dd_err("label is not a scalar");
    int64_t v;
    switch (t->dtype) {
    case DD_U8: v = *(const uint8_t *)t->data; break;
    case DD_I8: v = *(const int8_t *)t->data; break;
    case DD_I16: v = *(const int16_t *)t->data; break;
    case DD_U16: v = *(const uint16_t *)t->data; break;
    case DD_I32: v = *(const int32_t *)t->data; break;
    case DD_U32: v = *(const uint32_t *)t->data; break;
    case DD_I64: v = *(const int64_t *)t->data; break;
    case DD_U64:
        if (*(const uint64_t *)t->data > INT64_MAX)
            return dd_err("label %llu is too large", (unsigned long long)*(const uint64_t *)t->data);
        v = (int64_t)*(const uint64_t *)t->data;
        break;
    default: return dd_err("label has non-integer dtype %s", dd_dtype_name(t->dtype));
    }
    if (v < 0) return dd_err("label %lld is negative", (long long)v);
    return v;
}

int ts_record_check(const TsRecord *r)
{
    if (!ts_key_valid(r->key)) return dd_err("record key '%.80s' is invalid (want [A-Za-z0-9_-]{1,64})", r->key);
    for (int i = 0; i < r->nfields; i++) {
        const TsField *f = &r->fields[i];
        const Tensor *t = &f->t;
        if (!ts_key_valid(f->name))
            return dd_err("record (%s): field name '%.80s' is invalid (want [A-Za-z0-9_-]{1,64})", r->key, f->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(r->fields[j].name, f->name)) return dd_err("record (%s): duplicate field '%s'", r->key, f->name);
        if ((unsigned)t->dtype >= DD_NDTYPE) return dd_err("record (%s): field '%s': bad dtype %d", r->key, f->name, (int)t->dtype);
        if (t->device != DD_CPU) return dd_err("record (%s): field '%s' is not on the CPU", r->key, f->name);
        if (t->ndim < 0 || t->ndim > DD_MAXDIM) return dd_err("record (%s): field '%s': bad ndim %d", r->key, f->name, t->ndim);
        int64_t nb = tensor_nbytes(t);
        if (nb < 0) return dd_err("record (%s): field '%s': shape is negative or overflows", r->key, f->name);
        if (nb > 0 && !t->data) return dd_err("record (%s): field '%s' has no data", r->key, f->name);
    }
    if (r->meta) {
        json_t *m = json_loads(r->meta, JSON_REJECT_DUPLICATES, NULL);
        int ok = json_is_object(m);
        json_decref(m);
        if (!ok) return dd_err("record (%s): meta is not a JSON object", r->key);
    }
    return 0;
}

void ts_record_copy(TsRecord *dst, const TsRecord *src)
{
    ts_record_clear(dst);
    memcpy(dst->key, src->key, sizeof dst->key);
    for (int i = 0; i < src->nfields; i++) {
        const Tensor *s = &src->fields[i].t;
        size_t nb = (size_t)tensor_nbytes(s);
        void *d = tsi_record_slot(dst, nb);
        if (!d)
            dd_die(DD_EXIT_DATA, "record %s: field '%s': out of memory (%zu bytes)", src->key, src->fields[i].name, nb);
        if (nb) memcpy(d, s->data, nb);
        TsField *f = &dst->fields[dst->nfields++];
        memcpy(f->name, src->fields[i].name, sizeof f->name);
        f->t.dtype = s->dtype;
        f->t.ndim = s->ndim;
        memcpy(f->t.shape, s->shape, sizeof f->t.shape);
    }
    dst->meta = src->meta ? dd_strdup(src->meta) : NULL;
}

void ts_record_set_meta(TsRecord *r, const char *json)
{
    free(r->meta);
    r->meta = json ? dd_strdup(json) : NULL;
}

int ts_image_finite(const Tensor *t)
{
    if (t->dtype != DD_F32 && t->dtype != DD_F64 && t->dtype != DD_F16 && t->dtype != DD_BF16) return 0;
    const int64_t n = tensor_numel(t);
    int64_t i = 0;
    double v = 0;
    if (t->dtype == DD_F32) {
        const float *p = t->data;
        while (i < n && isfinite(p[i])) i++;
        if (i < n) v = p[i];
    } else {
        while (i < n && isfinite(v = tensor_get_f64(t, i))) i++;
    }
    if (i == n) return 0;
    char at[96] = "";
    if (t->ndim == 3)
        snprintf(at, sizeof at, " at [%lld,%lld,%lld]", (long long)(i / (t->shape[1] * t->shape[2])),
                 (long long)(i / t->shape[2] % t->shape[1]), (long long)(i % t->shape[2]));
    return dd_err("image holds %s%s", isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf", at);
}

int ts_record_image_f32(const TsRecord *r, Tensor *out)
{
    const Tensor *t = ts_record_cget(r, "image");
    if (!t) return dd_err("no image field");   /* callers name the file, record and key */
    if (t->device != DD_CPU) return dd_err("image is not on the CPU");
    *out = tensor_to_f32(t);
    if (t->dtype == DD_U8) {
        float *p = out->data;
        int64_t n = tensor_numel(out);
        for (int64_t i = 0; i < n; i++) p[i] /= 255.0f;
    }
    return 0;
}

/* ---- reading ---- */

struct TsReader {
    char *name;
    FILE *own;                 /* opened by ts_reader_open, closed at ts_reader_close */
    BsSrc *src;
    TsHeader *hdr;
    TsTarIn *tar;              /* NULL: pipe container */
    int64_t n;                 /* records read */
    char last[TS_KEY_MAX + 1]; /* the last one's key ("" before the first) */
    int state;                 /* 0 reading, 1 clean end seen, -1 failed */
    TsKeySet keys;
};

int tsi_truncated(const char *name, int64_t index, const char *last)
{
    if (index < 0) return dd_err("%s: stream is truncated in its header (upstream died?)", name);
    if (index == 0) return dd_err("%s: stream is truncated before its first record (upstream died?)", name);
    if (!last || !*last) return dd_err("%s: stream is truncated after %lld records (upstream died?)", name, (long long)index);
    return dd_err("%s: stream is truncated after record %lld (%s), the last whole one (upstream died?)", name,
                  (long long)index - 1, last);
}

/* "NAME: record N (KEY): problem"; key may be empty. Before the header is read (its own frame's
 * damage), "NAME: header: problem". */
DD_PRINTF(3, 4) static int rec_err(const TsReader *r, const char *key, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!r->hdr) return dd_err("%s: header: %s", r->name, msg);
    if (key && *key) return dd_err("%s: record %lld (%s): %s", r->name, (long long)r->n, key, msg);
    return dd_err("%s: record %lld: %s", r->name, (long long)r->n, msg);
}

/* bs_peek on r's source; a window that cannot grow is named by file and record. */
static int peek(TsReader *r, size_t n, const uint8_t **p, size_t *avail)
{
    int e = bs_peek(r->src, n, p, avail);
    return e == -2 ? rec_err(r, NULL, "%s", dd_errmsg()) : e;
}

/* Reads one whole frame into the window and verifies its checksum. *total = bytes to consume. */
static int frame_read(TsReader *r, uint32_t *tag, const uint8_t **payload, uint64_t *len, size_t *total)
{
    const uint8_t *p;
    size_t avail;
    const int64_t at = r->hdr ? r->n : -1; /* for a cut: in the header, or after r->n records */
    if (peek(r, 12, &p, &avail)) return -1;
    if (avail < 12) return tsi_truncated(r->name, at, r->last);
    *tag = le32(p);
    *len = le64(p + 4);
    if (*tag != TAG_HEAD && *tag != TAG_RECD && *tag != TAG_END)
        return rec_err(r, NULL, "bad frame tag %02x %02x %02x %02x (corrupt stream)", p[0], p[1], p[2], p[3]);
    if (*len > FRAME_MAX) return rec_err(r, NULL, "frame length %llu exceeds the bound of 2^40 bytes", (unsigned long long)*len);
    *total = 16 + (size_t)*len;
    if (peek(r, *total, &p, &avail)) return -1;
    if (avail < *total) return tsi_truncated(r->name, at, r->last);
    if ((uint32_t)crc32_z(0, p, 12 + (size_t)*len) != le32(p + 12 + *len)) return rec_err(r, NULL, "bad checksum");
    *payload = p + 12;
    return 0;
}

/* Cursor over a frame's payload. */
typedef struct {
    const uint8_t *p;
    size_t n;
} Cur;

static const uint8_t *cur_take(Cur *c, size_t k)
{
    if (k > c->n) return NULL;
    const uint8_t *p = c->p;
    c->p += k;
    c->n -= k;
    return p;
}

static int name_ok(const uint8_t *p, size_t n, char *out)
{
    if (n < 1 || n > TS_KEY_MAX) return 0;
    memcpy(out, p, n);
    out[n] = 0;
    return memchr(out, 0, n) == NULL && ts_key_valid(out);
}

#define SHORT(what) rec_err(r, rec->key, "frame length does not match its content (ends inside %s)", what)

static int parse_record(TsReader *r, const uint8_t *payload, uint64_t len, TsRecord *rec)
{
    Cur c = {payload, (size_t)len};
    const uint8_t *p;
    if (!(p = cur_take(&c, 2))) return SHORT("the key");
    size_t kl = le16(p);
    if (!(p = cur_take(&c, kl))) return SHORT("the key");
    if (!name_ok(p, kl, rec->key)) {
        rec->key[0] = 0;
        return rec_err(r, NULL, "invalid key (want [A-Za-z0-9_-]{1,64})");
    }
    if (!(p = cur_take(&c, 4))) return SHORT("the meta length");
    size_t ml = le32(p);
    if (!(p = cur_take(&c, ml))) return SHORT("the meta");
    if (ml) {
        json_t *m = memchr(p, 0, ml) ? NULL : json_loadb((const char *)p, ml, JSON_REJECT_DUPLICATES, NULL);
        int ok = json_is_object(m);
        json_decref(m);
        if (!ok) return rec_err(r, rec->key, "meta is not a JSON object");
        rec->meta = dd_malloc(ml + 1);
        memcpy(rec->meta, p, ml);
        rec->meta[ml] = 0;
    }
    if (!(p = cur_take(&c, 2))) return SHORT("the field count");
    int nf = le16(p);
    for (int i = 0; i < nf; i++) {
        char name[TS_NAME_MAX + 1];
        if (!(p = cur_take(&c, 2))) return SHORT("a field");
        size_t nl = le16(p);
        if (!(p = cur_take(&c, nl))) return SHORT("a field name");
        if (!name_ok(p, nl, name)) return rec_err(r, rec->key, "field %d: invalid name", i);
        if (ts_record_cget(rec, name)) return rec_err(r, rec->key, "duplicate field '%s'", name);
        if (!(p = cur_take(&c, 2))) return SHORT(name);
        Tensor t = {.dtype = (DdDtype)p[0], .ndim = p[1]};
        if (p[0] >= DD_NDTYPE) return rec_err(r, rec->key, "field '%s': unknown dtype code %d", name, p[0]);
        if (t.ndim > DD_MAXDIM) return rec_err(r, rec->key, "field '%s': %d dimensions (at most %d)", name, t.ndim, DD_MAXDIM);
        if (!(p = cur_take(&c, 8 * (size_t)t.ndim + 8))) return SHORT(name);
        for (int d = 0; d < t.ndim; d++) {
            uint64_t v = le64(p + 8 * d);
            if (v > INT64_MAX) return rec_err(r, rec->key, "field '%s': dimension %d is too large", name, d);
            t.shape[d] = (int64_t)v;
        }
        uint64_t nb = le64(p + 8 * t.ndim);
        int64_t want = tensor_nbytes(&t);
        char desc[160];
        if (want < 0 || (uint64_t)want != nb)
            return rec_err(r, rec->key, "field '%s': %llu data bytes for %s", name, (unsigned long long)nb,
                           tensor_describe(&t, desc, sizeof desc));
        if (!(p = cur_take(&c, (size_t)nb))) return SHORT(name);
        void *d = tsi_record_slot(rec, (size_t)nb);
        if (!d) return rec_err(r, rec->key, "field '%s': out of memory (%llu bytes)", name, (unsigned long long)nb);
        if (nb) memcpy(d, p, (size_t)nb);
        TsField *f = &rec->fields[rec->nfields++];
        memcpy(f->name, name, sizeof f->name);
        f->t.dtype = t.dtype;
        f->t.ndim = t.ndim;
        memcpy(f->t.shape, t.shape, sizeof t.shape);
    }
    if (c.n) return rec_err(r, rec->key, "frame length does not match its content (%zu bytes left over)", c.n);
    return 1;
}

/* After the end frame: the input must end here. */
static int pipe_after_end(TsReader *r)
{
    const uint8_t *p;
    size_t avail;
    if (peek(r, 8, &p, &avail)) return -1;
    if (avail == 8 && !memcmp(p, PIPE_MAGIC, 8))
        return dd_err("%s: a second stream follows the end frame after record %lld (concatenated streams are not "
                      "one stream: give them as separate operands)", r->name, (long long)r->n);
    if (avail) return dd_err("%s: trailing bytes after the end frame (record %lld)", r->name, (long long)r->n);
    if (bs_truncated(r->src)) return dd_err("%s: stream is truncated after its end frame (zstd frame incomplete)", r->name);
    return 0;
}

static int pipe_next(TsReader *r, TsRecord *rec)
{
    uint32_t tag;
    const uint8_t *pl;
    uint64_t len;
    size_t total;
    if (frame_read(r, &tag, &pl, &len, &total)) return -1;
    if (tag == TAG_HEAD) return rec_err(r, NULL, "unexpected second header frame");
    if (tag == TAG_END) {
        if (len != 8) return rec_err(r, NULL, "end frame of %llu bytes (want 8)", (unsigned long long)len);
        uint64_t cnt = le64(pl);
        if (cnt != (uint64_t)r->n)
            return dd_err("%s: end frame says %llu records, %lld were read", r->name, (unsigned long long)cnt, (long long)r->n);
        bs_consume(r->src, total);
        return pipe_after_end(r) ? -1 : 0;
    }
    int rc = parse_record(r, pl, len, rec);
    bs_consume(r->src, total);
    return rc;
}

static int pipe_open(TsReader *r)
{
    const uint8_t *p;
    size_t avail;
    if (peek(r, 16, &p, &avail)) return -1;
    if (avail < 16) return tsi_truncated(r->name, -1, NULL);
    uint32_t ver = le32(p + 8), flags = le32(p + 12);
    if (ver != PIPE_VERSION)
        return dd_err("%s: unsupported pipe container version %u (this reader knows version %u)", r->name, ver, PIPE_VERSION);
    if (flags) return dd_err("%s: unknown pipe container flags 0x%x", r->name, flags);
    bs_consume(r->src, 16);
    uint32_t tag;
    const uint8_t *pl;
    uint64_t len;
    size_t total;
    if (frame_read(r, &tag, &pl, &len, &total)) return -1;
    if (tag != TAG_HEAD) return dd_err("%s: first frame is not a header", r->name);
    json_error_t e;
    json_t *j = json_loadb((const char *)pl, (size_t)len, JSON_REJECT_DUPLICATES, &e);
    bs_consume(r->src, total);
    if (!j) return dd_err("%s: header is not valid JSON: %s", r->name, e.text);
    r->hdr = dd_malloc(sizeof *r->hdr);
    r->hdr->json = j;
    return 0;
}

/* The error's hint for input that is not a stream: weights given where records go, or a dataset
 * file not yet imported. */
static const char *not_stream_hint(const uint8_t *p, size_t avail)
{
    switch (dd_sniff(p, avail)) {
    case DD_KIND_SAFETENSORS: return " (it looks like a safetensors weights file: weights go to -w)";
    case DD_KIND_TORCH: return " (it looks like a PyTorch checkpoint)";
    case DD_KIND_IMAGE: case DD_KIND_NPY: case DD_KIND_IDX:
        return " (it looks like an image, .npy or IDX file: tsimport makes a stream of it)";
    default: return "";
    }
}

/* Detects zstd, then the container, and reads the header. */
static int reader_sniff(TsReader *r)
{
    const uint8_t *p;
    size_t avail;
    if (peek(r, 4, &p, &avail)) return -1;
    if (avail == 0) return dd_err("%s: empty: no stream header (upstream died?)", r->name);
    if (avail == 4 && !memcmp(p, zstd_magic, 4)) bs_push_zstd(r->src);
    else if (avail < 4 && !memcmp(p, zstd_magic, avail) && memcmp(p, PIPE_MAGIC, avail))
        return tsi_truncated(r->name, -1, NULL);
    if (peek(r, 512, &p, &avail)) return -1;
    if (avail >= 8 && !memcmp(p, PIPE_MAGIC, 8)) {
        if (pipe_open(r)) return -1;
    } else if (avail >= 262 && !memcmp(p + 257, "ustar", 5)) {
        r->tar = tsi_tar_open(r->src, r->name, &r->hdr, r->last);
        if (!r->tar) return -1;
    } else if ((avail < 8 && !memcmp(p, PIPE_MAGIC, avail)) || (avail < 262 && !memcmp(p, "__stream__", avail < 10 ? avail : 10))
               || bs_truncated(r->src)) {
        return tsi_truncated(r->name, -1, NULL);
    } else {
        return dd_err("%s: not a ddpipe stream or shard%s", r->name, not_stream_hint(p, avail));
    }
    return ts_header_validate(r->hdr, r->name);
}

TsReader *ts_reader_open_file(FILE *f, const char *name)
{
    TsReader *r = dd_calloc(1, sizeof *r);
    r->name = dd_strdup(name);
    r->src = bs_open(f, r->name, WINDOW);
    tsi_keyset_init(&r->keys);
    if (reader_sniff(r)) {
        ts_reader_close(r);
        return NULL;
    }
    return r;
}

static const char *spooled_copy(const char *path);

/* 1 when fd is the regular file standard output writes to (tscat s.tsr >> s.tsr would read what it
 * appends, without end), as cat(1) refuses "input file is output file" */
static int is_stdout_file(int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstat(STDOUT_FILENO, &b) == 0 && S_ISREG(a.st_mode) && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

TsReader *ts_reader_open(const char *path)
{
    if (!strcmp(path, "-")) {
        if (is_stdout_file(STDIN_FILENO)) {
            dd_err("stdin: is the file standard output writes to");
            return NULL;
        }
        return ts_reader_open_file(stdin, "stdin");
    }
    const char *copy = spooled_copy(path);
    FILE *f = fopen(copy ? copy : path, "rb");
    if (!f) {
        dd_err("%s: %s", path, strerror(errno));
        return NULL;
    }
    if (is_stdout_file(fileno(f))) {
        dd_err("%s: is the file standard output writes to", path);
        fclose(f);
        return NULL;
    }
    TsReader *r = ts_reader_open_file(f, path);
    if (!r) {
        fclose(f);
        return NULL;
    }
    r->own = f;
    return r;
}

const TsHeader *ts_reader_header(const TsReader *r) { return r->hdr; }
int64_t ts_reader_index(const TsReader *r) { return r->n; }
const char *ts_reader_name(const TsReader *r) { return r->name; }

int ts_reader_next(TsReader *r, TsRecord *rec)
{
    if (r->state) return r->state > 0 ? 0 : dd_err("%s: reading past an error", r->name);
    ts_record_clear(rec);
    int rc = r->tar ? tsi_tar_next(r->tar, rec, r->n) : pipe_next(r, rec);
    if (rc == 1 && !tsi_keyset_add(&r->keys, rec->key)) rc = rec_err(r, rec->key, "duplicate key");
    if (rc == 1) {
        r->n++;
        snprintf(r->last, sizeof r->last, "%s", rec->key);
    } else {
        r->state = rc == 0 ? 1 : -1;
    }
    return rc;
}

void ts_reader_close(TsReader *r)
{
    if (!r) return;
    if (r->tar) tsi_tar_close(r->tar);
    bs_close(r->src);
    ts_header_free(r->hdr);
    tsi_keyset_free(&r->keys);
    if (r->own) fclose(r->own);
    free(r->name);
    free(r);
}

/* ---- several operands ---- */

/* Every later operand is opened at ts_input_open to check its class list. A regular file is then
 * closed and reopened when reached (so hundreds of shards need not hold hundreds of descriptors
 * and windows); anything else - stdin, a pipe, a FIFO, /dev/fd/N, a character device, a socket -
 * cannot be read twice (the first open consumed its header), so its reader is kept from open
 * until it is reached and read on from where the header ended. */
struct TsInput {
    int n, cur;
    char **files;              /* borrowed */
    TsReader *r;               /* reader of files[cur] */
    TsReader **held;           /* [n]: held[i] (i > cur) kept open since ts_input_open, or NULL */
    TsHeader *hdr;             /* merged */
    int64_t last;              /* index of the record last read in its file */
    int unique;                /* ts_input_unique_keys: keys across operands */
    TsKeySet keys;
};

static char *stdin_operand[] = {"-"};

/* 1 if the reader's operand can be closed and opened again for the same bytes: a regular file. */
static int reader_reopenable(const TsReader *r)
{
    struct stat st;
    return r->own && fstat(fileno(r->own), &st) == 0 && S_ISREG(st.st_mode);
}

/* Checks a later operand's header against the merged one; folds in its history. */
static int input_merge(TsInput *in, const TsReader *first, const TsReader *r)
{
    if (ts_header_classes_check(in->hdr, first->name, r->hdr, r->name)) return -1;
    if (json_equal(first->hdr->json, r->hdr->json)) return 0; /* shards of one stream */
    json_t *inputs = json_object_get(in->hdr->json, "inputs");
    if (!json_is_array(inputs)) {
        inputs = json_array();
        json_object_set_new(in->hdr->json, "inputs", inputs);
    }
    json_t *h = json_object_get(r->hdr->json, "history");
    json_t *e = json_object();
    json_object_set_new(e, "history", h ? json_deep_copy(h) : json_array());
    json_array_append_new(inputs, e);
    /* and the inputs it was made from in its turn: the list stays flat, nothing is lost */
    json_t *nested = json_object_get(r->hdr->json, "inputs"), *ne;
    size_t i;
    if (json_is_array(nested))
        json_array_foreach(nested, i, ne) json_array_append_new(inputs, json_deep_copy(ne));
    return 0;
}

TsInput *ts_input_open(int nfiles, char **files)
{
    if (nfiles == 0) {
        nfiles = 1;
        files = stdin_operand;
    }
    int ndash = 0;
    for (int i = 0; i < nfiles; i++) ndash += !strcmp(files[i], "-");
    if (ndash > 1) {
        dd_err("stdin ('-') given more than once");
        dd_err_code(DD_EXIT_USAGE);
        return NULL;
    }
    TsInput *in = dd_calloc(1, sizeof *in);
    in->n = nfiles;
    in->files = files;
    in->last = -1;
    in->held = dd_calloc((size_t)nfiles, sizeof *in->held);
    in->r = ts_reader_open(files[0]);
    if (!in->r) {
        free(in->held);
        free(in);
        return NULL;
    }
    in->hdr = ts_header_copy(in->r->hdr);
    for (int i = 1; i < nfiles; i++) {
        TsReader *r = ts_reader_open(files[i]);
        if (!r || input_merge(in, in->r, r)) {
            ts_reader_close(r);
            ts_input_close(in);
            return NULL;
        }
        if (reader_reopenable(r)) ts_reader_close(r);
        else in->held[i] = r;
    }
    return in;
}

const TsHeader *ts_input_header(const TsInput *in) { return in->hdr; }

int ts_input_next(TsInput *in, TsRecord *rec)
{
    while (in->cur < in->n) {
        int rc = ts_reader_next(in->r, rec);
        if (rc) {
            if (rc > 0) in->last = ts_reader_index(in->r) - 1;
            if (rc > 0 && in->unique && in->n > 1 && !tsi_keyset_add(&in->keys, rec->key))
                return dd_err("%s: record %lld (%s): duplicate key: an earlier input has a record of that key",
                              in->r->name, (long long)in->last, rec->key);
            return rc;
        }
        if (in->cur + 1 == in->n) return 0;
        int i = in->cur + 1;
        TsReader *r = in->held[i];
        in->held[i] = NULL;
        if (!r) { /* a regular file: reopened, and checked again in case it changed since open */
            if (!(r = ts_reader_open(in->files[i]))) return -1;
            if (ts_header_classes_check(in->hdr, in->files[0], r->hdr, r->name)) {
                ts_reader_close(r);
                return -1;
            }
        }
        ts_reader_close(in->r);
        in->r = r;
        in->cur = i;
        in->last = -1;
    }
    return 0;
}

const char *ts_input_name(const TsInput *in) { return in->r->name; }
int64_t ts_input_index(const TsInput *in) { return in->last; }

void ts_input_unique_keys(TsInput *in)
{
    if (!in->unique) tsi_keyset_init(&in->keys);
    in->unique = 1;
}

void ts_input_close(TsInput *in)
{
    if (!in) return;
    if (in->unique) tsi_keyset_free(&in->keys);
    ts_reader_close(in->r);
    for (int i = 0; i < in->n; i++) ts_reader_close(in->held[i]);
    free(in->held);
    ts_header_free(in->hdr);
    free(in);
}

/* ---- stdin and other pipes read twice ---- */

/* Operands ts_spool_path copied: a named pipe's or device's bytes in a temporary file, which
 * ts_reader_open reads under the operand's name. The temporaries are listed with dd_temp_track:
 * removed at exit and by a fatal signal. */
typedef struct {
    char *path, *tmp;
} Spooled;
static Spooled *spooled;
static int nspooled;

/* in's bytes to out (a spool's temporary): 0, or -1 with dd_err naming iname or oname. */
static int spool_copy(FILE *in, const char *iname, FILE *out, const char *oname)
{
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) return dd_err("%s: write error: %s", oname, strerror(errno ? errno : EIO));
    if (ferror(in)) return dd_err("%s: read error: %s", iname, strerror(errno ? errno : EIO));
    return dd_fflush_checked(out, oname);
}

static const char *spooled_copy(const char *path)
{
    for (int i = 0; i < nspooled; i++)
        if (!strcmp(spooled[i].path, path)) return spooled[i].tmp;
    return NULL;
}

/* A new temporary file in $TMPDIR (else /tmp), open to write and read back, its name in *tmp
 * (the caller's to free), tracked for removal at exit and on a fatal signal. NULL on error, said
 * naming what it was to hold. */
static FILE *spool_create(const char *what, char **tmp)
{
    const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    size_t n = strlen(dir) + 32;
    *tmp = dd_malloc(n);
    snprintf(*tmp, n, "%s/ddpipe-spool.XXXXXX", dir);
    dd_temp_track(*tmp, 1); /* before it exists: see dd_atomic_open */
    int fd = mkstemp(*tmp);
    FILE *t = fd < 0 ? NULL : fdopen(fd, "w+b");
    if (!t) {
        int e = errno;
        if (fd >= 0) close(fd), unlink(*tmp);
        dd_temp_track(*tmp, 0);
        free(*tmp);
        *tmp = NULL;
        dd_err("%s: cannot create a temporary file to hold it in %s: %s", what, dir, strerror(e));
    }
    return t;
}

int ts_spool_path(const char *path)
{
    struct stat st;
    if (!strcmp(path, "-") || spooled_copy(path) || stat(path, &st) < 0 || S_ISREG(st.st_mode) ||
        S_ISDIR(st.st_mode))
        return 0; /* a file read again as it is; stdin, a missing path, a directory: elsewhere */
    FILE *in = fopen(path, "rb");
    if (!in) return dd_err("%s: %s", path, strerror(errno));
    char *tmp;
    FILE *t = spool_create(path, &tmp);
    char *oname = NULL; /* errors name the operand first, then its copy */
    if (t) {
        size_t on = strlen(path) + strlen(tmp) + 32;
        oname = dd_malloc(on);
        snprintf(oname, on, "%s (its copy %s)", path, tmp);
    }
    int rc = t ? spool_copy(in, path, t, oname) : -1;
    fclose(in);
    if (t && fclose(t) && rc == 0) rc = dd_err("%s: write error: %s", oname, strerror(errno));
    free(oname);
    if (rc < 0) {
        if (tmp) unlink(tmp), dd_temp_track(tmp, 0);
        free(tmp);
        return -1;
    }
    spooled = dd_realloc(spooled, (size_t)(nspooled + 1) * sizeof *spooled);
    spooled[nspooled++] = (Spooled){dd_strdup(path), tmp};
    return 0;
}

int ts_stdin_rewind(void)
{
    if (lseek(0, 0, SEEK_SET) < 0) return dd_err("temporary copy of stdin: %s", strerror(errno));
    return 0;
}

int ts_stdin_spool(void)
{
    char *tmp;
    FILE *t = spool_create("stdin", &tmp);
    if (!t) return -1;
    unlink(tmp); /* no name: gone with the program, however it ends */
    dd_temp_track(tmp, 0);
    free(tmp);
    int rc = spool_copy(stdin, "stdin", t, "temporary copy of stdin");
    if (rc == 0 && dup2(fileno(t), 0) < 0) rc = dd_err("temporary copy of stdin: %s", strerror(errno));
    fclose(t);
    if (rc < 0) return -1;
    clearerr(stdin);
    return ts_stdin_rewind();
}

/* ---- writing the pipe container ---- */

struct TsWriter {
    FILE *f;
    char *name;
    DdAtomicFile af;           /* af.f == f for a path (a device or fifo: written in place, af.direct) */
    uint8_t *buf;
    size_t len, cap;
    uint32_t crc;
    int64_t n;
    int failed;
    int finished;              /* ts_writer_finish ran: the end frame is out, the file synced */
    TsKeySet keys;
    TsiZout *z;                /* -o NAME.zst: compressed (tsi_zout_new's), else NULL */
};

static int w_fwrite(void *ctx, const void *p, size_t n)
{
    TsWriter *w = ctx;
    if (fwrite(p, 1, n, w->f) == n) return 0;
    w->failed = 1;
    return dd_err("%s: write error: %s", w->name, strerror(errno ? errno : EIO));
}

/* Writes n bytes to the file, through the compressor when there is one (end: the frame closed). */
static void w_out(TsWriter *w, const void *p, size_t n, int end)
{
    if (w->failed) return;
    if (!w->z) {
        if (n) w_fwrite(w, p, n);
        return;
    }
    const char *zerr = NULL;
    if (tsi_zout_put(w->z, p, n, end, w_fwrite, w, &zerr) && zerr) {
        w->failed = 1;
        dd_err("%s: zstd: %s", w->name, zerr);
    }
}

static void w_flush(TsWriter *w)
{
    if (w->len) w_out(w, w->buf, w->len, 0);
    w->len = 0;
}

/* Appends bytes covered by the running frame checksum. */
static void w_put(TsWriter *w, const void *p, size_t n)
{
    if (!n) return; /* zlib's crc32 of a NULL buffer is its initial value, not a no-op */
    w->crc = (uint32_t)crc32_z(w->crc, p, n);
    if (n > w->cap - w->len) w_flush(w);
    if (n >= w->cap) {
        w_out(w, p, n, 0);
        return;
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void w_u16(TsWriter *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    w_put(w, b, 2);
}

static void w_u32(TsWriter *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> 8 * i);
    w_put(w, b, 4);
}

static void w_u64(TsWriter *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> 8 * i);
    w_put(w, b, 8);
}

static void w_frame_begin(TsWriter *w, const char *tag, uint64_t len)
{
    w->crc = 0;
    w_put(w, tag, 4);
    w_u64(w, len);
}

static void w_frame_end(TsWriter *w)
{
    uint32_t c = w->crc;
    w_u32(w, c);
}

static TsWriter *writer_start(TsWriter *w, const TsHeader *h)
{
    w->cap = WINDOW;
    w->buf = dd_malloc(w->cap);
    tsi_keyset_init(&w->keys);
    if (ts_header_validate(h, w->name)) return NULL;
    char *text = json_dumps(h->json, JSON_COMPACT);
    if (!text) {
        dd_err("%s: header cannot be encoded as JSON", w->name);
        return NULL;
    }
    w_put(w, PIPE_MAGIC, 8);
    w_u32(w, PIPE_VERSION);
    w_u32(w, 0);
    size_t n = strlen(text);
    w_frame_begin(w, "HEAD", n);
    w_put(w, text, n);
    w_frame_end(w);
    free(text);
    return w;
}

static void writer_free(TsWriter *w)
{
    tsi_zout_free(w->z);
    tsi_keyset_free(&w->keys);
    free(w->buf);
    free(w->name);
    free(w);
}

TsWriter *ts_writer_open_file(FILE *f, const char *name, const TsHeader *h)
{
    TsWriter *w = dd_calloc(1, sizeof *w);
    w->f = f;
    w->name = dd_strdup(name);
    if (!writer_start(w, h)) {
        writer_free(w);
        return NULL;
    }
    return w;
}

TsWriter *ts_writer_open(const char *path, const TsHeader *h)
{
    if (!strcmp(path, "-")) return ts_writer_open_file(stdout, "stdout", h);
    TsWriter *w = dd_calloc(1, sizeof *w);
    w->name = dd_strdup(path);
    size_t pl = strlen(path);
    if (pl > 4 && !strcmp(path + pl - 4, ".zst") && !(w->z = tsi_zout_new())) { /* as the shards' */
        dd_err("%s: zstd: cannot set up the compressor", path);
        writer_free(w);
        return NULL;
    }
    if (!dd_atomic_open(&w->af, path)) w->f = w->af.f;
    if (!w->f || !writer_start(w, h)) {
        ts_writer_abort(w);
        return NULL;
    }
    return w;
}

int ts_writer_put(TsWriter *w, const TsRecord *rec)
{
    if (w->failed) return -1;
    if (ts_record_check(rec)) return dd_err_prefix("%s: record %lld", w->name, (long long)w->n);
    if (!tsi_keyset_add(&w->keys, rec->key))
        return dd_err("%s: record %lld (%s): duplicate key", w->name, (long long)w->n, rec->key);
    size_t kl = strlen(rec->key), ml = rec->meta ? strlen(rec->meta) : 0;
    uint64_t len = 2 + kl + 4 + ml + 2;
    for (int i = 0; i < rec->nfields && len <= FRAME_MAX; i++) { /* each term <= 2^63: no overflow */
        const Tensor *t = &rec->fields[i].t;
        len += 2 + strlen(rec->fields[i].name) + 2 + 8 * (uint64_t)t->ndim + 8 + (uint64_t)tensor_nbytes(t);
    }
    if (len > FRAME_MAX || rec->nfields > 65535 || ml > UINT32_MAX)
        return dd_err("%s: record %lld (%s): too large for one frame", w->name, (long long)w->n, rec->key);
    w_frame_begin(w, "RECD", len);
    w_u16(w, (uint16_t)kl);
    w_put(w, rec->key, kl);
    w_u32(w, (uint32_t)ml);
    w_put(w, rec->meta, ml);
    w_u16(w, (uint16_t)rec->nfields);
    for (int i = 0; i < rec->nfields; i++) {
        const Tensor *t = &rec->fields[i].t;
        size_t nl = strlen(rec->fields[i].name);
        uint8_t dt[2] = {(uint8_t)t->dtype, (uint8_t)t->ndim};
        w_u16(w, (uint16_t)nl);
        w_put(w, rec->fields[i].name, nl);
        w_put(w, dt, 2);
        for (int d = 0; d < t->ndim; d++) w_u64(w, (uint64_t)t->shape[d]);
        uint64_t nb = (uint64_t)tensor_nbytes(t);
        w_u64(w, nb);
        w_put(w, t->data, (size_t)nb);
    }
    w_frame_end(w);
    w->n++;
    return w->failed ? -1 : 0;
}

int ts_writer_finish(TsWriter *w)
{
    if (w->finished || w->failed) return w->failed ? -1 : 0;
    w_frame_begin(w, "END!", 8);
    w_u64(w, (uint64_t)w->n);
    w_frame_end(w);
    w_flush(w);
    if (w->z) w_out(w, NULL, 0, 1); /* the zstd frame's end and checksum */
    w->finished = 1;
    if (w->failed) return -1;
    if ((w->af.tmp || w->af.direct) && dd_atomic_finish(&w->af) < 0) return w->failed = 1, -1;
    return 0;
}

int ts_writer_close(TsWriter *w)
{
    int rc = ts_writer_finish(w);
    if (w->af.tmp || w->af.direct) {
        if (rc) dd_atomic_abort(&w->af);
        else rc = dd_atomic_commit(&w->af);
    } else if (!rc) {
        rc = dd_fflush_checked(w->f, w->name);
    }
    writer_free(w);
    return rc;
}

void ts_writer_abort(TsWriter *w)
{
    if (!w) return;
    dd_atomic_abort(&w->af); /* nothing for stdout's writer */
    writer_free(w);
}


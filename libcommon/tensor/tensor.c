/* tensor.c - dtype tables, shape arithmetic and CPU tensor lifetime. */
#include "libcommon/tensor/tensor.h"
#include "libcommon/base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *name, *npy; size_t size; } dtypes[DD_NDTYPE] = {
    [DD_BOOL] = {"BOOL", "|b1", 1}, [DD_U8] = {"U8", "|u1", 1},   [DD_I8] = {"I8", "|i1", 1},
    [DD_I16] = {"I16", "<i2", 2},   [DD_U16] = {"U16", "<u2", 2}, [DD_F16] = {"F16", "<f2", 2},
    [DD_BF16] = {"BF16", NULL, 2},  [DD_I32] = {"I32", "<i4", 4}, [DD_U32] = {"U32", "<u4", 4},
    [DD_F32] = {"F32", "<f4", 4},   [DD_F64] = {"F64", "<f8", 8}, [DD_I64] = {"I64", "<i8", 8},
    [DD_U64] = {"U64", "<u8", 8},
};

size_t dd_dtype_size(DdDtype t) { return (unsigned)t < DD_NDTYPE ? dtypes[t].size : 0; }
const char *dd_dtype_name(DdDtype t) { return (unsigned)t < DD_NDTYPE ? dtypes[t].name : NULL; }
const char *dd_dtype_npy(DdDtype t) { return (unsigned)t < DD_NDTYPE ? dtypes[t].npy : NULL; }

int dd_dtype_parse(const char *name)
{
    for (int i = 0; i < DD_NDTYPE; i++)
        if (!strcmp(dtypes[i].name, name)) return i;
    return -1;
}

int dd_dtype_from_npy(const char *descr)
{
    for (int i = 0; i < DD_NDTYPE; i++)
        if (dtypes[i].npy && !strcmp(dtypes[i].npy, descr)) return i;
    /* numpy writes single-byte types with '|' but accepts '<' and '>' too; "<b1"/"<u1"/"<i1" occur */
    if (descr[0] && descr[1] && (descr[1] == 'u' || descr[1] == 'i' || descr[1] == 'b') && descr[2] == '1' && !descr[3]) {
        char d[4] = {'|', descr[1], '1', 0};
        return dd_dtype_from_npy(d);
    }
    return -1;
}

int64_t tensor_numel(const Tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0) return -1;
        if (t->shape[i] && n > INT64_MAX / t->shape[i]) return -1;
        n *= t->shape[i];
    }
    return n;
}

int64_t tensor_nbytes(const Tensor *t)
{
    int64_t n = tensor_numel(t);
    int64_t s = (int64_t)dd_dtype_size(t->dtype);
    if (n < 0 || s == 0 || (n && s > INT64_MAX / n)) return -1;
    return n * s;
}

Tensor tensor_new(DdDtype dtype, int ndim, const int64_t *shape)
{
    Tensor t = {.dtype = dtype, .device = DD_CPU, .ndim = ndim, .owns = 1};
    if (ndim < 0 || ndim > DD_MAXDIM) dd_die(DD_EXIT_DATA, "tensor_new: bad ndim %d", ndim);
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    int64_t nb = tensor_nbytes(&t);
    if (nb < 0) dd_die(DD_EXIT_DATA, "tensor_new: size overflows");
    t.data = dd_calloc((size_t)nb, 1);
    return t;
}

Tensor tensor_newv(DdDtype dtype, int ndim, ...)
{
    int64_t shape[DD_MAXDIM];
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim && i < DD_MAXDIM; i++) shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    return tensor_new(dtype, ndim, shape);
}

Tensor tensor_scalar_i64(int64_t v)
{
    Tensor t = tensor_new(DD_I64, 0, NULL);
    *(int64_t *)t.data = v;
    return t;
}

Tensor tensor_clone(const Tensor *t)
{
    Tensor c = tensor_new(t->dtype, t->ndim, t->shape);
    memcpy(c.data, t->data, (size_t)tensor_nbytes(t));
    return c;
}

void tensor_free(Tensor *t)
{
    if (t->owns) free(t->data);
    t->data = NULL;
    t->owns = 0;
}

int tensor_same_shape(const Tensor *a, const Tensor *b)
{
    if (a->dtype != b->dtype || a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *tensor_describe(const Tensor *t, char *buf, size_t n)
{
    size_t o = (size_t)snprintf(buf, n, "%s[", dd_dtype_name(t->dtype) ? dd_dtype_name(t->dtype) : "?");
    for (int i = 0; i < t->ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

double tensor_get_f64(const Tensor *t, int64_t i)
{
    const void *d = t->data;
    switch (t->dtype) {
    case DD_BOOL: case DD_U8: return ((const uint8_t *)d)[i];
    case DD_I8: return ((const int8_t *)d)[i];
    case DD_I16: return ((const int16_t *)d)[i];
    case DD_U16: return ((const uint16_t *)d)[i];
    case DD_F16: return dd_f16_to_f32(((const uint16_t *)d)[i]);
    case DD_BF16: return dd_bf16_to_f32(((const uint16_t *)d)[i]);
    case DD_I32: return ((const int32_t *)d)[i];
    case DD_U32: return ((const uint32_t *)d)[i];
    case DD_F32: return ((const float *)d)[i];
    case DD_F64: return ((const double *)d)[i];
    case DD_I64: return (double)((const int64_t *)d)[i];
    case DD_U64: return (double)((const uint64_t *)d)[i];
    default: return 0;
    }
}

Tensor tensor_to_f32(const Tensor *t)
{
    Tensor o = tensor_new(DD_F32, t->ndim, t->shape);
    int64_t n = tensor_numel(t);
    float *p = o.data;
    if (t->dtype == DD_F32) memcpy(p, t->data, (size_t)n * 4);
    else
        for (int64_t i = 0; i < n; i++) p[i] = (float)tensor_get_f64(t, i);
    return o;
}

float dd_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0) {
        if (m == 0) u = s;
        else { /* subnormal: normalise */
            e = 127 - 15 + 1;
            while (!(m & 0x400)) { m <<= 1; e--; }
            m &= 0x3ff;
            u = s | (e << 23) | (m << 13);
        }
    } else if (e == 31) u = s | 0x7f800000u | (m << 13);
    else u = s | ((e + 127 - 15) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dd_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t s = (u >> 16) & 0x8000, e = (u >> 23) & 0xff, m = u & 0x7fffff;
    if (e == 0xff) return (uint16_t)(s | 0x7c00 | (m ? 0x200 : 0));
    int32_t ne = (int32_t)e - 127 + 15;
    if (ne >= 31) return (uint16_t)(s | 0x7c00);
    if (ne <= 0) {
        if (ne < -10) return (uint16_t)s;
        m |= 0x800000;
        int shift = 14 - ne;
        uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1))) hm++;
        return (uint16_t)(s | hm);
    }
    uint32_t hm = m >> 13, rem = m & 0x1fff;
    uint32_t r = s | ((uint32_t)ne << 10) | hm;
    if (rem > 0x1000 || (rem == 0x1000 && (hm & 1))) r++;
    return (uint16_t)r;
}

float dd_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dd_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

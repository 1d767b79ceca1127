/* tensor.h - the Tensor type shared by the record stream and the engine: dtype, device, shape,
 * contiguous C-order data.
 *
 * Ownership: a Tensor with owns=1 frees its data in tensor_free(); owns=0 borrows it (views into
 * a reader's buffer, or into an arena). Tensors are plain structs passed by value or pointer; only
 * `data` is heap memory. Host <-> device copies go through the backend (libcommon/nn).
 */
#ifndef DD_TENSOR_H
#define DD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define DD_MAXDIM 8

/* Codes are part of the pipe container's byte format (man5 ddpipe-stream): never renumber. */
typedef enum {
    DD_BOOL = 0, DD_U8 = 1, DD_I8 = 2, DD_I16 = 3, DD_U16 = 4, DD_F16 = 5, DD_BF16 = 6,
    DD_I32 = 7, DD_U32 = 8, DD_F32 = 9, DD_F64 = 10, DD_I64 = 11, DD_U64 = 12,
    DD_NDTYPE
} DdDtype;

typedef enum { DD_CPU = 0, DD_CUDA = 1 } DdDevice;

typedef struct {
    DdDtype dtype;
    DdDevice device;
    int ndim;                 /* 0 = scalar (one element) */
    int64_t shape[DD_MAXDIM];
    void *data;
    int owns;
} Tensor;

size_t dd_dtype_size(DdDtype t);
/* safetensors names: "F32", "I64", ... ; NULL for an invalid code. */
const char *dd_dtype_name(DdDtype t);
/* Parses a safetensors dtype name; returns -1 when unknown. */
int dd_dtype_parse(const char *name);
/* numpy descr ("<f4", "|u1", ...); NULL where numpy has none (BF16). */
const char *dd_dtype_npy(DdDtype t);
int dd_dtype_from_npy(const char *descr);

/* Element count (1 for ndim 0). Returns -1 on overflow or negative dims. */
int64_t tensor_numel(const Tensor *t);
/* Byte size; returns -1 on overflow. */
int64_t tensor_nbytes(const Tensor *t);
/* A CPU tensor of `dtype` and shape, zero-filled, owning its data. */
Tensor tensor_new(DdDtype dtype, int ndim, const int64_t *shape);
/* Same, shape given as arguments: tensor_newv(DD_F32, 3, C, H, W). */
Tensor tensor_newv(DdDtype dtype, int ndim, ...);
/* A scalar (ndim 0) I64 tensor. */
Tensor tensor_scalar_i64(int64_t v);
/* Deep copy to a new owning CPU tensor. */
Tensor tensor_clone(const Tensor *t);
void tensor_free(Tensor *t);
/* 1 if dtype and shape are equal. */
int tensor_same_shape(const Tensor *a, const Tensor *b);
/* "F32[1,28,28]" into buf; returns buf. */
char *tensor_describe(const Tensor *t, char *buf, size_t n);
/* Converts any numeric CPU tensor to a new owning F32 tensor (U8 is NOT rescaled). */
Tensor tensor_to_f32(const Tensor *t);
/* Reads element i of any numeric dtype as double. */
double tensor_get_f64(const Tensor *t, int64_t i);

/* IEEE half and bfloat16 conversions (round to nearest even). */
float dd_f16_to_f32(uint16_t h);
uint16_t dd_f32_to_f16(float f);
float dd_bf16_to_f32(uint16_t h);
uint16_t dd_f32_to_bf16(float f);

#endif

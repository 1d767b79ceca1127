/* sniff.h - what a file is, from its first bytes: for error messages that name the usual mix-ups
 * (weights given where records go and the reverse, a PyTorch checkpoint not yet converted, a
 * dataset file not yet imported), never to choose a reader. */
#ifndef DD_FORMATS_SNIFF_H
#define DD_FORMATS_SNIFF_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    DD_KIND_UNKNOWN = 0,
    DD_KIND_STREAM,      /* a record stream or shard: zstd, the pipe container, a tar */
    DD_KIND_SAFETENSORS, /* a plausible header length, then '{' */
    DD_KIND_TORCH,       /* torch.save: a zip, or a legacy pickle (protocol 2-5) */
    DD_KIND_IMAGE,       /* PNG or JPEG */
    DD_KIND_NPY,
    DD_KIND_IDX,
} DdFileKind;

/* The kind of the n bytes at b (a file's start; the more bytes, the more kinds are told apart:
 * a tar needs 262). */
DdFileKind dd_sniff(const uint8_t *b, size_t n);

#endif

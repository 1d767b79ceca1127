/* bytesrc.h - the byte layer under the stream readers: a growable read window over a FILE with an
 * optional zstd decompression layer, so the pipe parser and libarchive see the same plain bytes
 * whether the input was compressed or not. Also the small seam shared by formats/stream.c and
 * formats/stream_tar.c (key set, tar back end); nothing outside formats/stream*.c includes this.
 *
 * Ownership: a BsSrc borrows its FILE (never closes it) and its name. Pointers returned by
 * bs_peek/bs_chunk stay valid until the next call on the same source.
 * Errors: -1 with dd_err set ("NAME: zstd: ..."). End of input is not an error: a short peek
 * tells it; bs_truncated() says whether the input ended inside a compressed frame.
 */
#ifndef DD_BYTESRC_H
#define DD_BYTESRC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "formats/stream.h"

typedef struct BsSrc BsSrc;

/* Reads `f` through a window of `window` bytes (grown on demand). When f has a descriptor it is
 * read with read(2) directly, so a pipe delivers what is available without waiting for a full
 * window: the caller must not have read from f through stdio before. */
BsSrc *bs_open(FILE *f, const char *name, size_t window);
void bs_close(BsSrc *s);
/* From now on the bytes not yet consumed (and the rest of the input) are zstd-decompressed. */
void bs_push_zstd(BsSrc *s);
/* Makes at least n bytes available at *p unless the input ends first (*avail < n then). -1 on a read
 * error (dd_err names the source), -2 when the window cannot grow to n (dd_err says so; the caller names
 * the file and record). */
int bs_peek(BsSrc *s, size_t n, const uint8_t **p, size_t *avail);
void bs_consume(BsSrc *s, size_t n);
/* Whatever is available next, consumed at once (libarchive's read callback); *n = 0 at the end. */
int bs_chunk(BsSrc *s, const uint8_t **p, size_t *n);
/* The zstd compressor of the writers (-o NAME.zst, .tar.zst shards): level 3 and the content checksum, so
 * that a changed bit is an error when read, not other pixels. tsi_zout_new: NULL when zstd cannot be set up
 * (no dd_err). tsi_zout_put compresses n bytes (end: and closes the frame, its checksum written) and hands
 * each piece of output to put(ctx, ...), whose failure (non-zero) it returns; a zstd error: -1 with *zerr
 * zstd's message. tsi_zout_restart begins a new frame (the next shard). */
typedef struct TsiZout TsiZout;
TsiZout *tsi_zout_new(void);
int tsi_zout_put(TsiZout *z, const void *p, size_t n, int end, int (*put)(void *ctx, const void *p, size_t n),
                 void *ctx, const char **zerr);
void tsi_zout_restart(TsiZout *z);
void tsi_zout_free(TsiZout *z);

/* 1 if the input ended in the middle of a zstd frame. */
int bs_truncated(const BsSrc *s);
/* 1 once the underlying input has reported its end. */
int bs_ended(const BsSrc *s);

/* ---- key set: exact-membership hash set of record keys (duplicate detection) ---- */

typedef struct {
    size_t *slot;          /* arena offset + 1; 0 = empty */
    size_t mask, n;
    char *arena;
    size_t alen, acap;
} TsKeySet;

void tsi_keyset_init(TsKeySet *k);
/* 1 if key was added, 0 if it was already present. */
int tsi_keyset_add(TsKeySet *k, const char *key);
void tsi_keyset_free(TsKeySet *k);

/* Slot nfields of rec, ready to be filled: capacity ensured, name cleared, its spare buffer (left
 * there by ts_record_clear) reused for `nbytes` when large enough. Returns the data pointer. */
void *tsi_record_slot(TsRecord *rec, size_t nbytes); /* NULL when out of memory (no dd_err) */

/* ---- tar back end (formats/stream_tar.c) ---- */

typedef struct TsTarIn TsTarIn;

/* Reads the "__stream__" member; *hdr receives the parsed (not yet validated) header. `last`
 * (borrowed) holds the key of the last whole record read, for the message of a cut stream. */
TsTarIn *tsi_tar_open(BsSrc *src, const char *name, TsHeader **hdr, const char *last);
/* As ts_reader_next; `index` = records read so far (for messages and the end count). */
int tsi_tar_next(TsTarIn *t, TsRecord *rec, int64_t index);
void tsi_tar_close(TsTarIn *t);

/* The message of a stream cut short, naming `name`: index -1 in its header, else after `index`
 * records, the last of them with key `last` (NULL or "": not said). */
int tsi_truncated(const char *name, int64_t index, const char *last);

#endif

/* stream.h - the ddpipe record stream: a header (JSON), records (key + named tensors + small JSON
 * metadata) and an end marker with the record count, in two containers:
 *   - the pipe container (framed binary, per-frame CRC-32, explicit end frame), see ddpipe-stream(5);
 *   - WebDataset-compatible tar shards (plain or zstd), see ddpipe-shards(5).
 * Every reader accepts both containers, plain or zstd-compressed, detected from the first bytes.
 *
 * Header JSON object (jansson json_t, owned by the header):
 *   {"format":"ddpipe-stream","version":1,"classes":["T-shirt/top",...],"space":"pixel",
 *    "history":[{"prog":"tsimport","version":"0.1.0","argv":[...],"seed":0,"params":{...}}...],
 *    ... other keys are preserved}
 * Record conventions: field "image" (F32 [C,H,W] in [0,1], U8 accepted on input), field "label"
 * (I64 scalar, the class index into header.classes), optional others ("soft", "crops", ...).
 *
 * Ownership: a TsRecord owns its fields' tensors and meta string. ts_record_clear drops them but
 * keeps owning tensors' buffers as spares in the slots past nfields (up to cap), so a reader
 * refills a record without allocating; ts_record_free releases everything. Add fields with
 * ts_record_set (it frees a spare it overwrites); to keep a tensor past the next clear, take it
 * out (copy the Tensor, set the field's owns = 0) or clone it.
 * Readers never close a FILE they were given; ts_reader_close frees what the reader opened.
 * Errors: functions return -1 (or NULL) with dd_err set to one line naming file, record index
 * and key where known ("train.tsr: record 41 (c0003_i0012): bad checksum").
 */
#ifndef DD_STREAM_H
#define DD_STREAM_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "libcommon/tensor/tensor.h"

#define TS_KEY_MAX 64
#define TS_NAME_MAX 64

typedef struct {
    char name[TS_NAME_MAX + 1];    /* [A-Za-z0-9_-]{1,64}: no dots (they end a WebDataset key) */
    Tensor t;                      /* CPU, contiguous */
} TsField;

typedef struct {
    char key[TS_KEY_MAX + 1];      /* [A-Za-z0-9_-]{1,64}, unique in a stream */
    int nfields, cap;
    TsField *fields;
    char *meta;                    /* JSON object text, or NULL */
} TsRecord;

typedef struct {
    json_t *json;                  /* owned */
} TsHeader;

/* ---- header ---- */

/* A new header with the given class names (copied), space "pixel", empty history. */
TsHeader *ts_header_new(int nclasses, const char *const *classes);
TsHeader *ts_header_copy(const TsHeader *h);
void ts_header_free(TsHeader *h);
int ts_header_nclasses(const TsHeader *h);
const char *ts_header_class(const TsHeader *h, int i);
/* Appends {"prog","version","argv","seed"?,"params"?} to history; params may be NULL (borrowed). */
void ts_header_add_history(TsHeader *h, int argc, char **argv, int64_t seed, json_t *params);
/* The last entry of h's history written by prog (borrowed), or NULL. */
json_t *ts_header_last_history(const TsHeader *h, const char *prog);
/* 0 if both headers have the same class list; else -1 with dd_err describing the first difference,
 * naming `what_a` and `what_b` (file names). */
int ts_header_classes_check(const TsHeader *a, const char *what_a, const TsHeader *b, const char *what_b);
/* Validates a parsed header (format, version, classes are strings). */
int ts_header_validate(const TsHeader *h, const char *what);

/* ---- records ---- */

void ts_record_init(TsRecord *r);
void ts_record_clear(TsRecord *r);          /* drops fields (buffers kept as spares), frees meta */
void ts_record_free(TsRecord *r);           /* frees everything */
int ts_key_valid(const char *key);          /* 1 if [A-Za-z0-9_-]{1,64} */
/* Adds (moves) a tensor under `name`, replacing a field of that name. The record takes ownership.
 * `name` must satisfy ts_key_valid (field names follow the key rules); anything else is a
 * programming error and exits. */
void ts_record_set(TsRecord *r, const char *name, Tensor t);
/* Borrowed pointer to the named field's tensor, or NULL. */
Tensor *ts_record_get(TsRecord *r, const char *name);
const Tensor *ts_record_cget(const TsRecord *r, const char *name);
void ts_record_remove(TsRecord *r, const char *name);
/* The record's label (field "label", any integer dtype, scalar or [1]); -1 with dd_err ("no label
 * field", "label -3 is negative", ...: the caller names the file and record) otherwise. */
int64_t ts_record_label(const TsRecord *r);
/* Checks what every writer requires: valid key, valid and distinct field names, known dtype, ndim <= 8,
 * CPU tensors whose size is computable, meta a JSON object when present. 0 or -1 with dd_err
 * ("record (KEY): field 'x': ..."). */
int ts_record_check(const TsRecord *r);
/* Deep copy. */
void ts_record_copy(TsRecord *dst, const TsRecord *src);
/* Replaces meta with a copy of `json` text (NULL clears). */
void ts_record_set_meta(TsRecord *r, const char *json);
/* The image as a new F32 tensor in [0,1] (U8 is divided by 255); -1 with dd_err ("no image field",
 * which the caller prefixes with the file, record and key) if absent. */
int ts_record_image_f32(const TsRecord *r, Tensor *out);
/* 0 when every value of image tensor t (any dtype; [C,H,W] or other) is finite; else -1 with
 * dd_err "image holds NaN at [c,y,x]" (the caller prefixes file, record and key). For the
 * programs that compute on pixels; format conversions pass NaN through. */
int ts_image_finite(const Tensor *t);

/* ---- reading (either container, plain or zstd, detected) ---- */

typedef struct TsReader TsReader;

/* Opens `path` ("-" = stdin) and reads the header. NULL + dd_err on failure. */
TsReader *ts_reader_open(const char *path);
/* Reads from an already open FILE (not closed by the reader); `name` is used in messages. A FILE
 * with a descriptor is read with read(2) directly: do not read from it through stdio first. */
TsReader *ts_reader_open_file(FILE *f, const char *name);
const TsHeader *ts_reader_header(const TsReader *r);
/* 1 = a record was read into rec (cleared first), 0 = clean end (end marker seen and the count
 * matches), -1 = error (truncation, corruption, bad checksum, unknown version, count mismatch). */
int ts_reader_next(TsReader *r, TsRecord *rec);
int64_t ts_reader_index(const TsReader *r);  /* records read so far */
const char *ts_reader_name(const TsReader *r);
void ts_reader_close(TsReader *r);

/* Several operands read as their concatenation; class lists must agree (checked at open, which
 * reads every operand's header). nfiles == 0 reads stdin; "-" may appear once (twice: NULL with a
 * usage error, dd_errcode() DD_EXIT_USAGE; other failures DD_EXIT_DATA). Operands that are
 * regular files are closed after that check and reopened when reached (re-checked then), so many
 * shards (`tscat sh/part-*.tar.zst`) hold one descriptor at a time; any other operand - stdin, a
 * pipe, a FIFO, /dev/fd/N (`<(cmd)`), a character device - cannot be read twice, so its reader
 * stays open (one descriptor and one read window each) from ts_input_open until it is consumed.
 * The merged header is the first file's, with the histories of the others appended under "inputs". */
typedef struct TsInput TsInput;
TsInput *ts_input_open(int nfiles, char **files);
const TsHeader *ts_input_header(const TsInput *in);
int ts_input_next(TsInput *in, TsRecord *rec);    /* as ts_reader_next */
const char *ts_input_name(const TsInput *in);     /* file of the record last read */
int64_t ts_input_index(const TsInput *in);        /* index of that record within its file */
void ts_input_close(TsInput *in);
/* From now on a key an earlier operand had is an error naming this operand, its record and the
 * key (each operand's reader refuses its own repeats): for programs whose output keeps the input's
 * keys, which would otherwise refuse it naming their output's record. */
void ts_input_unique_keys(TsInput *in);

/* Reading stdin twice (a two-pass filter): ts_stdin_spool copies stdin to an unlinked temporary
 * file and puts that file on descriptor 0, rewound; ts_stdin_rewind seeks it back to the start
 * before each later pass. Readers read descriptor 0 with read(2) (not through stdio), so each
 * pass reads "-" from the first byte, and their messages still name it stdin. Call
 * ts_stdin_spool before anything reads stdin. Both return 0, or -1 with dd_err set
 * ("temporary copy of stdin: ..."; "stdin: read error"). */
int ts_stdin_spool(void);
int ts_stdin_rewind(void);
/* A path operand read twice: when it is a named pipe or a device (bash's <(...) is /dev/fd/N, a
 * pipe), its bytes are copied once to a temporary file (TMPDIR, else /tmp; removed at exit) that
 * every later ts_reader_open of the same path reads, its messages naming the path. A regular
 * file, "-" (ts_stdin_spool), a missing path or a directory: nothing done (the open reports
 * what is wrong). 0, or -1 with dd_err set. */
int ts_spool_path(const char *path);

/* ---- writing the pipe container ---- */

typedef struct TsWriter TsWriter;

/* Writes to `f` (not closed by the writer); `name` for messages ("stdout"). Writes the header now. */
TsWriter *ts_writer_open_file(FILE *f, const char *name, const TsHeader *h);
/* Writes to `path` atomically (temporary + rename at ts_writer_close); "-" = stdout. */
TsWriter *ts_writer_open(const char *path, const TsHeader *h);
int ts_writer_put(TsWriter *w, const TsRecord *rec);
/* Writes the end frame, flushes and checks for write errors (a path's temporary synced, not yet
 * renamed): the first step of closing several outputs that appear together or not at all. 0 or -1;
 * either way ts_writer_close or ts_writer_abort follows. */
int ts_writer_finish(TsWriter *w);
/* Writes the end frame (unless ts_writer_finish did), flushes and checks for write errors, renames
 * a path's temporary into place; frees w. 0 or -1. */
int ts_writer_close(TsWriter *w);
/* Discards: removes the temporary of a path writer; frees w. */
void ts_writer_abort(TsWriter *w);

/* ---- writing tar shards ---- */

typedef struct TsShardWriter TsShardWriter;

/* `pattern` holds one printf integer conversion ("out/part-%06d.tar.zst"); ".zst" selects zstd
 * compression. Each shard is written to a temporary, and ts_shards_close renames them all into
 * place once the last is written: abort, an exit before the close or a fatal signal leaves none. */
TsShardWriter *ts_shards_open(const char *pattern, int64_t records_per_shard, const TsHeader *h);
/* 0 when pattern is one ts_shards_open takes with its conversion in the file name (a directory
 * part may hold "%%" only); else -1 with dd_err. */
int ts_shards_pattern_check(const char *pattern);
int ts_shards_put(TsShardWriter *w, const TsRecord *rec);
int ts_shards_close(TsShardWriter *w);
void ts_shards_abort(TsShardWriter *w);

#endif

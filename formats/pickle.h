/* pickle.h - Python pickles read as data: enough of the format for the datasets users already have
 * in that form (CIFAR-10/100's python batches, as torchvision downloads them), never a way to run
 * anything. pickle_parse runs the pickle machine over protocols 0-5 (the binary opcodes and
 * protocol 0's text lines: MARK/INT/LONG/FLOAT/PUT/GET, UNICODE's raw-unicode-escape str and
 * STRING's quoted Python 2 str, read as bytes) and builds a tree of values: None, bool, int,
 * float, str, bytes, list, tuple, dict, a global named by (module, name), and a "call" (a global
 * applied to arguments by REDUCE or NEWOBJ, with the state BUILD gave it). Nothing is imported or
 * called: a call is only a node, and the readers below recognise the nodes numpy writes for an
 * array (numpy.core.multiarray._reconstruct + BUILD state, or _frombuffer under protocol 5) and
 * _codecs.encode(str, "latin1") (how Python 3 writes bytes at protocol 2).
 *
 * Limits: integers must fit int64; persistent ids, extension codes, sets and out-of-band buffers
 * are errors. Memory is proportional to the input (every node costs
 * at least one opcode byte; memo indices may not exceed the bytes read), and nothing recurses on
 * the input's depth.
 *
 * Ownership: the tree lives in the Pickle (pickle_free) and may point into the caller's buffer,
 * which must outlive it. Errors: -1 (or NULL) with dd_err naming `name`, the opcode and its byte
 * offset.
 */
#ifndef DD_PICKLE_H
#define DD_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "libcommon/tensor/tensor.h"

typedef enum {
    PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR, PK_BYTES, PK_LIST, PK_TUPLE, PK_DICT, PK_GLOBAL, PK_CALL
} PkKind;

typedef struct PkObj PkObj;
struct PkObj {
    PkKind kind;
    int64_t i;               /* BOOL, INT */
    double f;                /* FLOAT */
    const uint8_t *s;        /* STR (UTF-8 as stored), BYTES */
    size_t len;
    PkObj **v;               /* LIST, TUPLE: n items; DICT: keys and values alternately (n even) */
    size_t n, cap;
    const char *module, *name;   /* GLOBAL */
    PkObj *fn, *args, *state;    /* CALL: the global, its argument tuple, BUILD's state or NULL */
};

typedef struct Pickle Pickle;

/* Parses the pickle in buf[0, len) (trailing bytes after STOP are an error). *root is the value. */
int pickle_parse(const void *buf, size_t len, const char *name, Pickle **out, const PkObj **root);
void pickle_free(Pickle *p);

/* The value of dict d under key (a str or bytes key equal to `key`; the last one set), or NULL. */
const PkObj *pk_get(const PkObj *d, const char *key);
/* 1 if o is the global module.name, or module is one of numpy's spellings of it: "numpy.core.X"
 * matches "numpy._core.X" (numpy 2) too. */
int pk_is_global(const PkObj *o, const char *module, const char *name);
/* A numpy array node (either form above; C order; dtypes b1 i1-i8 u1-u8 f2 f4 f8, either byte
 * order) as a new CPU tensor of that dtype. `what` names the value in errors. */
int pk_ndarray(const PkObj *o, const char *what, Tensor *out);
/* A list or tuple of ints, or an integer numpy array of one dimension, as I64 [n]. */
int pk_int_list(const PkObj *o, const char *what, Tensor *out);
/* A list or tuple of str or bytes as n malloc'ed strings (free with dd_lines_free); a NUL inside
 * one is an error. */
int pk_str_list(const PkObj *o, const char *what, char ***out, int *n);

#endif

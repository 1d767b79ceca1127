/* pickle.c - the pickle machine as a data reader (see pickle.h): a value stack with marks, a memo,
 * and one node per value, all owned by the Pickle; then the readers of numpy's array nodes. */
#include "formats/pickle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "formats/codecs.h"
#include "libcommon/base/base.h"

struct Pickle {
    PkObj **objs;            /* every node, for pickle_free */
    size_t nobjs, capobjs;
    void **blocks;           /* bytes made here (global names, protocol 0's decoded text), for pickle_free */
    size_t nblocks, capblocks;
};

static void *grow(void *v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return v;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    *cap = c;
    return dd_realloc(v, c * elem);
}

static PkObj *node(Pickle *p, PkKind kind)
{
    PkObj *o = dd_calloc(1, sizeof *o);
    o->kind = kind;
    p->objs = grow(p->objs, &p->capobjs, p->nobjs + 1, sizeof *p->objs);
    p->objs[p->nobjs++] = o;
    return o;
}

static void push_item(PkObj *c, PkObj *item)
{
    c->v = grow(c->v, &c->cap, c->n + 1, sizeof *c->v);
    c->v[c->n++] = item;
}

void pickle_free(Pickle *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nobjs; i++) {
        free(p->objs[i]->v);
        free(p->objs[i]);
    }
    for (size_t i = 0; i < p->nblocks; i++) free(p->blocks[i]);
    free(p->objs);
    free(p->blocks);
    free(p);
}

/* ---- the machine ---- */

typedef struct {
    const uint8_t *b;
    size_t len, at, op_at;   /* input, next byte, the current opcode's offset */
    int op;
    const char *name;
    Pickle *p;
    PkObj **stack;
    size_t n, cap;
    size_t *marks;           /* stack heights at MARK */
    size_t nmarks, capmarks;
    PkObj **memo;
    size_t nmemo, capmemo, memo_count;
} Vm;

static int fail(Vm *m, const char *what)
{
    if (m->op >= 0x20 && m->op < 0x7f)
        return dd_err("%s: pickle opcode '%c' at byte %zu: %s", m->name, m->op, m->op_at, what);
    return dd_err("%s: pickle opcode 0x%02x at byte %zu: %s", m->name, m->op, m->op_at, what);
}

static int take(Vm *m, size_t n, const uint8_t **out)
{
    if (n > m->len - m->at) return fail(m, "the pickle ends inside its argument (truncated file?)");
    *out = m->b + m->at;
    m->at += n;
    return 0;
}

static int take_le(Vm *m, int n, uint64_t *v)
{
    const uint8_t *q = NULL;
    if (take(m, (size_t)n, &q) < 0) return -1;
    *v = 0;
    for (int i = n - 1; i >= 0; i--) *v = (*v << 8) | q[i];
    return 0;
}

/* A protocol-0 argument: the bytes up to the next newline (NUL-terminated copy in buf). */
static int take_line(Vm *m, char *buf, size_t size)
{
    const uint8_t *nl = memchr(m->b + m->at, '\n', m->len - m->at);
    if (!nl) return fail(m, "no newline after its text argument");
    size_t n = (size_t)(nl - (m->b + m->at));
    if (n >= size) return fail(m, "text argument too long");
    memcpy(buf, m->b + m->at, n);
    buf[n] = 0;
    m->at += n + 1;
    return 0;
}

static void push(Vm *m, PkObj *o)
{
    m->stack = grow(m->stack, &m->cap, m->n + 1, sizeof *m->stack);
    m->stack[m->n++] = o;
}

static PkObj *pop(Vm *m)
{
    if (m->n == 0 || (m->nmarks && m->marks[m->nmarks - 1] == m->n)) {
        fail(m, "the stack is empty");
        return NULL;
    }
    return m->stack[--m->n];
}

static PkObj *top(Vm *m)
{
    if (m->n == 0 || (m->nmarks && m->marks[m->nmarks - 1] == m->n)) {
        fail(m, "the stack is empty");
        return NULL;
    }
    return m->stack[m->n - 1];
}

/* Pops back to the last MARK: the items above it are stack[*from, m->n) until the next push. */
static int pop_mark(Vm *m, size_t *from)
{
    if (!m->nmarks) return fail(m, "no MARK before it");
    *from = m->marks[--m->nmarks];
    return 0;
}

static PkObj *make_bytes(Vm *m, PkKind kind, size_t n)
{
    const uint8_t *q = NULL;
    if (take(m, n, &q) < 0) return NULL;
    PkObj *o = node(m->p, kind);
    o->s = q;
    o->len = n;
    return o;
}

static PkObj *make_int(Vm *m, int64_t v, PkKind kind)
{
    PkObj *o = node(m->p, kind);
    o->i = v;
    return o;
}

/* LONG1 / LONG4: n bytes of little-endian two's complement. */
static PkObj *make_long(Vm *m, uint64_t n)
{
    const uint8_t *q = NULL;
    if (n > 8) {
        fail(m, "integer wider than 64 bits");
        return NULL;
    }
    if (take(m, (size_t)n, &q) < 0) return NULL;
    uint64_t u = 0;
    for (int i = (int)n - 1; i >= 0; i--) u = (u << 8) | q[i];
    if (n > 0 && n < 8 && (q[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
    return make_int(m, (int64_t)u, PK_INT);
}

static int memo_put(Vm *m, uint64_t idx)
{
    PkObj *o = top(m);
    if (!o) return -1;
    /* Python numbers the memo 0, 1, 2, ...: an index beyond the bytes read so far would only make
     * a small file allocate a large memo */
    if (idx > m->at) return fail(m, "memo index larger than the pickle so far");
    if (idx >= m->nmemo) {
        m->memo = grow(m->memo, &m->capmemo, (size_t)idx + 1, sizeof *m->memo);
        memset(m->memo + m->nmemo, 0, ((size_t)idx + 1 - m->nmemo) * sizeof *m->memo);
        m->nmemo = (size_t)idx + 1;
    }
    m->memo_count += m->memo[idx] == NULL;
    m->memo[idx] = o;
    return 0;
}

static int memo_get(Vm *m, uint64_t idx)
{
    if (idx >= m->nmemo || !m->memo[idx]) return fail(m, "memo index not set");
    push(m, m->memo[idx]);
    return 0;
}

/* A decimal line (protocol 0's INT, LONG, PUT, GET): "01"/"00" are INT's True/False. */
static int line_int(Vm *m, int64_t *v, int *is_bool)
{
    char buf[64], *end;
    if (take_line(m, buf, sizeof buf) < 0) return -1;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == 'L') buf[--n] = 0;
    *is_bool = !strcmp(buf, "00") || !strcmp(buf, "01");
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (!n || *end || errno) return fail(m, "not a 64-bit decimal integer");
    *v = x;
    return 0;
}

static PkObj *seq_from(Vm *m, PkKind kind, size_t from)
{
    PkObj *o = node(m->p, kind);
    for (size_t i = from; i < m->n; i++) push_item(o, m->stack[i]);
    m->n = from;
    return o;
}

/* Adds stack[from, n) to the container just under them: a list (APPEND, APPENDS) or a dict
 * (SETITEM, SETITEMS: keys and values alternately). */
static int add_items(Vm *m, PkKind kind, size_t from)
{
    if (from == 0 || (m->nmarks && m->marks[m->nmarks - 1] == from)) return fail(m, "no container under the items");
    PkObj *c = m->stack[from - 1];
    if (c->kind != kind) return fail(m, kind == PK_LIST ? "not a list under the items" : "not a dict under the items");
    if (kind == PK_DICT && (m->n - from) % 2) return fail(m, "an odd number of keys and values");
    for (size_t i = from; i < m->n; i++) push_item(c, m->stack[i]);
    m->n = from;
    return 0;
}

/* n bytes the Pickle owns (pickle_free). */
static void *block(Vm *m, size_t n)
{
    m->p->blocks = grow(m->p->blocks, &m->p->capblocks, m->p->nblocks + 1, sizeof *m->p->blocks);
    return m->p->blocks[m->p->nblocks++] = dd_malloc(n ? n : 1);
}

static PkObj *make_global(Vm *m, const char *module, size_t ml, const char *name, size_t nl)
{
    PkObj *o = node(m->p, PK_GLOBAL);
    char *s = block(m, ml + nl + 2);
    memcpy(s, module, ml);
    s[ml] = 0;
    memcpy(s + ml + 1, name, nl);
    s[ml + 1 + nl] = 0;
    o->module = s;
    o->name = s + ml + 1;
    return o;
}

static int hex_digit(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The argument line of a protocol-0 text opcode: [s, s + n), the newline consumed. */
static int text_line(Vm *m, const uint8_t **s, size_t *n)
{
    const uint8_t *nl = memchr(m->b + m->at, '\n', m->len - m->at);
    if (!nl) return fail(m, "no newline after its text argument");
    *s = m->b + m->at;
    *n = (size_t)(nl - *s);
    m->at += *n + 1;
    return 0;
}

/* UNICODE (protocol 0's str): raw-unicode-escape text to UTF-8, as Python decodes it: every byte
 * is the code point of its value, except that \uXXXX and \UXXXXXXXX after an odd number of
 * backslashes are one code point (the last backslash dropped). */
static PkObj *unicode_line(Vm *m)
{
    const uint8_t *s;
    size_t n, k = 0;
    if (text_line(m, &s, &n) < 0) return NULL;
    uint8_t *o = block(m, 2 * n);          /* a byte is at most 2 bytes of UTF-8; an escape shrinks */
    for (size_t i = 0; i < n;) {
        uint32_t cp = s[i++];
        if (cp == '\\') {
            size_t run = 1;
            while (i < n && s[i] == '\\') i++, run++;
            if (run % 2 == 0 || i == n || (s[i] != 'u' && s[i] != 'U')) {
                memset(o + k, '\\', run), k += run;
                continue;
            }
            memset(o + k, '\\', run - 1), k += run - 1;
            int w = s[i] == 'u' ? 4 : 8;
            if (n - i - 1 < (size_t)w) return fail(m, "a truncated \\u escape"), NULL;
            cp = 0;
            for (int d = 1; d <= w; d++) {
                int h = hex_digit(s[i + (size_t)d]);
                if (h < 0) return fail(m, "a \\u escape that is not hexadecimal"), NULL;
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10ffff) return fail(m, "a \\U escape above U+10FFFF"), NULL;
            i += (size_t)w + 1;
        }
        if (cp < 0x80) o[k++] = (uint8_t)cp;
        else if (cp < 0x800) o[k++] = (uint8_t)(0xc0 | cp >> 6), o[k++] = (uint8_t)(0x80 | (cp & 0x3f));
        else if (cp < 0x10000)
            o[k++] = (uint8_t)(0xe0 | cp >> 12), o[k++] = (uint8_t)(0x80 | (cp >> 6 & 0x3f)),
            o[k++] = (uint8_t)(0x80 | (cp & 0x3f));
        else
            o[k++] = (uint8_t)(0xf0 | cp >> 18), o[k++] = (uint8_t)(0x80 | (cp >> 12 & 0x3f)),
            o[k++] = (uint8_t)(0x80 | (cp >> 6 & 0x3f)), o[k++] = (uint8_t)(0x80 | (cp & 0x3f));
    }
    PkObj *a = node(m->p, PK_STR);
    a->s = o;
    a->len = k;
    return a;
}

/* STRING (Python 2's str at protocol 0, bytes here): a quoted literal with Python's string
 * escapes (codecs.escape_decode): \\ \' \" \a \b \f \n \r \t \v, \xHH, up to three octal
 * digits (the value mod 256); any other escape keeps its backslash. */
static PkObj *string_line(Vm *m)
{
    const uint8_t *s;
    size_t n, k = 0;
    if (text_line(m, &s, &n) < 0) return NULL;
    if (n < 2 || s[0] != s[n - 1] || (s[0] != '\'' && s[0] != '"'))
        return fail(m, "its argument is not quoted"), NULL;
    s++, n -= 2;
    uint8_t *o = block(m, n);              /* escapes only shrink */
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i++];
        if (c != '\\') {
            o[k++] = c;
            continue;
        }
        if (i == n) return fail(m, "a trailing backslash in its argument"), NULL;
        c = s[i++];
        static const char from[] = "\\'\"abfnrtv", to[] = "\\'\"\a\b\f\n\r\t\v";
        const char *e = strchr(from, c);
        if (e && c) {
            o[k++] = (uint8_t)to[e - from];
        } else if (c >= '0' && c <= '7') {
            unsigned v = (unsigned)(c - '0');
            for (int d = 0; d < 2 && i < n && s[i] >= '0' && s[i] <= '7'; d++) v = v * 8 + (unsigned)(s[i++] - '0');
            o[k++] = (uint8_t)v;
        } else if (c == 'x') {
            int h1 = i < n ? hex_digit(s[i]) : -1, h2 = i + 1 < n ? hex_digit(s[i + 1]) : -1;
            if (h1 < 0 || h2 < 0) return fail(m, "an \\x escape without two hexadecimal digits"), NULL;
            o[k++] = (uint8_t)(h1 * 16 + h2);
            i += 2;
        } else {
            o[k++] = '\\', o[k++] = c;
        }
    }
    PkObj *a = node(m->p, PK_BYTES);
    a->s = o;
    a->len = k;
    return a;
}

/* One opcode; 1 at STOP. */
static int step(Vm *m, const PkObj **root)
{
    uint64_t u;
    int64_t v;
    int is_bool;
    size_t from = 0;
    PkObj *a, *b, *c;
    char line[512];
    m->op_at = m->at;
    m->op = m->b[m->at++];
    switch (m->op) {
    case 0x80: /* PROTO */
        if (take_le(m, 1, &u) < 0) return -1;
        if (u > 5) return fail(m, "protocol above 5");
        return 0;
    case 0x95: /* FRAME: a length hint */
        return take_le(m, 8, &u);
    case '.': /* STOP */
        if (!(a = pop(m))) return -1;
        *root = a;
        return 1;
    case '(': /* MARK */
        m->marks = grow(m->marks, &m->capmarks, m->nmarks + 1, sizeof *m->marks);
        m->marks[m->nmarks++] = m->n;
        return 0;
    case '0': /* POP */
        if (m->nmarks && m->marks[m->nmarks - 1] == m->n) return pop_mark(m, &from);
        return pop(m) ? 0 : -1;
    case '1': /* POP_MARK */
        if (pop_mark(m, &from) < 0) return -1;
        m->n = from;
        return 0;
    case '2': /* DUP */
        if (!(a = top(m))) return -1;
        push(m, a);
        return 0;
    case 'N': push(m, node(m->p, PK_NONE)); return 0;
    case 0x88: push(m, make_int(m, 1, PK_BOOL)); return 0;
    case 0x89: push(m, make_int(m, 0, PK_BOOL)); return 0;
    case 'I': /* INT */
    case 'L': /* LONG */
        if (line_int(m, &v, &is_bool) < 0) return -1;
        push(m, make_int(m, v, m->op == 'I' && is_bool ? PK_BOOL : PK_INT));
        return 0;
    case 'J': /* BININT */
        if (take_le(m, 4, &u) < 0) return -1;
        push(m, make_int(m, (int32_t)(uint32_t)u, PK_INT));
        return 0;
    case 'K': /* BININT1 */
    case 'M': /* BININT2 */
        if (take_le(m, m->op == 'K' ? 1 : 2, &u) < 0) return -1;
        push(m, make_int(m, (int64_t)u, PK_INT));
        return 0;
    case 0x8a: /* LONG1 */
    case 0x8b: /* LONG4 */
        if (take_le(m, m->op == 0x8a ? 1 : 4, &u) < 0 || !(a = make_long(m, u))) return -1;
        push(m, a);
        return 0;
    case 'G': { /* BINFLOAT: big-endian double */
        const uint8_t *q = NULL;
        if (take(m, 8, &q) < 0) return -1;
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = (bits << 8) | q[i];
        a = node(m->p, PK_FLOAT);
        memcpy(&a->f, &bits, sizeof a->f);
        push(m, a);
        return 0;
    }
    case 'F': { /* FLOAT */
        char *end;
        if (take_line(m, line, sizeof line) < 0) return -1;
        a = node(m->p, PK_FLOAT);
        a->f = strtod(line, &end);
        if (!line[0] || *end) return fail(m, "not a decimal number");
        push(m, a);
        return 0;
    }
    case 'V': /* UNICODE */
    case 'S': /* STRING */
        if (!(a = m->op == 'V' ? unicode_line(m) : string_line(m))) return -1;
        push(m, a);
        return 0;
    case 'T': /* BINSTRING: a Python 2 str, bytes here */
    case 'B': /* BINBYTES */
    case 'X': /* BINUNICODE */
        if (take_le(m, 4, &u) < 0) return -1;
        if (m->op == 'T' && u >= 0x80000000u) return fail(m, "negative length");
        if (!(a = make_bytes(m, m->op == 'X' ? PK_STR : PK_BYTES, (size_t)u))) return -1;
        push(m, a);
        return 0;
    case 'U': /* SHORT_BINSTRING */
    case 'C': /* SHORT_BINBYTES */
    case 0x8c: /* SHORT_BINUNICODE */
        if (take_le(m, 1, &u) < 0 || !(a = make_bytes(m, m->op == 0x8c ? PK_STR : PK_BYTES, (size_t)u))) return -1;
        push(m, a);
        return 0;
    case 0x8d: /* BINUNICODE8 */
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
        if (take_le(m, 8, &u) < 0) return -1;
        if (u > m->len - m->at) return fail(m, "the pickle ends inside its argument (truncated file?)");
        if (!(a = make_bytes(m, m->op == 0x8d ? PK_STR : PK_BYTES, (size_t)u))) return -1;
        push(m, a);
        return 0;
    case 0x98: /* READONLY_BUFFER */
        return top(m) ? 0 : -1;
    case ']': push(m, node(m->p, PK_LIST)); return 0;
    case '}': push(m, node(m->p, PK_DICT)); return 0;
    case ')': push(m, node(m->p, PK_TUPLE)); return 0;
    case 'l': /* LIST */
    case 't': /* TUPLE */
        if (pop_mark(m, &from) < 0) return -1;
        push(m, seq_from(m, m->op == 'l' ? PK_LIST : PK_TUPLE, from));
        return 0;
    case 'd': /* DICT */
        if (pop_mark(m, &from) < 0) return -1;
        if ((m->n - from) % 2) return fail(m, "an odd number of keys and values");
        push(m, seq_from(m, PK_DICT, from));
        return 0;
    case 0x85: /* TUPLE1 */
    case 0x86: /* TUPLE2 */
    case 0x87: { /* TUPLE3 */
        size_t k = (size_t)(m->op - 0x84);
        if (m->n < k || (m->nmarks && m->marks[m->nmarks - 1] > m->n - k)) return fail(m, "the stack is too short");
        push(m, seq_from(m, PK_TUPLE, m->n - k));
        return 0;
    }
    case 'a': /* APPEND: one item */
    case 's': { /* SETITEM: a key and a value */
        size_t k = m->op == 'a' ? 1 : 2;
        if (m->n < k || (m->nmarks && m->marks[m->nmarks - 1] > m->n - k)) return fail(m, "the stack is too short");
        return add_items(m, m->op == 'a' ? PK_LIST : PK_DICT, m->n - k);
    }
    case 'e': /* APPENDS */
    case 'u': /* SETITEMS */
        if (pop_mark(m, &from) < 0) return -1;
        return add_items(m, m->op == 'e' ? PK_LIST : PK_DICT, from);
    case 'p': /* PUT */
    case 'g': /* GET */
        if (line_int(m, &v, &is_bool) < 0) return -1;
        if (v < 0) return fail(m, "negative memo index");
        return m->op == 'p' ? memo_put(m, (uint64_t)v) : memo_get(m, (uint64_t)v);
    case 'q': /* BINPUT */
    case 'h': /* BINGET */
        if (take_le(m, 1, &u) < 0) return -1;
        return m->op == 'q' ? memo_put(m, u) : memo_get(m, u);
    case 'r': /* LONG_BINPUT */
    case 'j': /* LONG_BINGET */
        if (take_le(m, 4, &u) < 0) return -1;
        return m->op == 'r' ? memo_put(m, u) : memo_get(m, u);
    case 0x94: /* MEMOIZE */
        return memo_put(m, m->memo_count);
    case 'c': { /* GLOBAL: module\nname\n */
        char mod[256];
        if (take_line(m, mod, sizeof mod) < 0 || take_line(m, line, sizeof line) < 0) return -1;
        push(m, make_global(m, mod, strlen(mod), line, strlen(line)));
        return 0;
    }
    case 0x93: /* STACK_GLOBAL */
        if (!(b = pop(m)) || !(a = pop(m))) return -1;
        if (a->kind != PK_STR || b->kind != PK_STR || memchr(a->s, 0, a->len) || memchr(b->s, 0, b->len))
            return fail(m, "module and name are not strings");
        push(m, make_global(m, (const char *)a->s, a->len, (const char *)b->s, b->len));
        return 0;
    case 'R': /* REDUCE: callable, args */
    case 0x81: /* NEWOBJ: cls, args */
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs (kwargs dropped: numpy does not use them) */
        if ((m->op == 0x92 && !pop(m)) || !(b = pop(m)) || !(a = pop(m))) return -1;
        if (b->kind != PK_TUPLE) return fail(m, "the arguments are not a tuple");
        c = node(m->p, PK_CALL);
        c->fn = a;
        c->args = b;
        push(m, c);
        return 0;
    case 'b': /* BUILD */
        if (!(b = pop(m)) || !(a = top(m))) return -1;
        if (a->kind != PK_CALL || a->state) return fail(m, "BUILD on something that is not a fresh object");
        a->state = b;
        return 0;
    default:
        return fail(m, "not supported here (persistent ids, extension codes, sets, out-of-band buffers, "
                       "or not a pickle)");
    }
}

int pickle_parse(const void *buf, size_t len, const char *name, Pickle **out, const PkObj **root)
{
    *out = NULL;
    *root = NULL;
    Vm m = {.b = buf, .len = len, .name = name, .op = -1, .p = dd_calloc(1, sizeof(Pickle))};
    int rc = 0;
    while (rc == 0) {
        if (m.at >= m.len) {
            m.op_at = m.at;
            rc = dd_err("%s: the pickle ends before its STOP opcode (truncated file, or not a pickle)", name);
            break;
        }
        rc = step(&m, root);
    }
    if (rc == 1 && m.at != m.len) rc = dd_err("%s: %zu bytes after the pickle's STOP", name, m.len - m.at);
    free(m.stack);
    free(m.marks);
    free(m.memo);
    if (rc != 1) {
        pickle_free(m.p);
        *root = NULL;
        return -1;
    }
    *out = m.p;
    return 0;
}

/* ---- readers ---- */

static const PkObj *item(const PkObj *t, size_t i)
{
    return t && (t->kind == PK_TUPLE || t->kind == PK_LIST) && i < t->n ? t->v[i] : NULL;
}

/* 1 if o is the str or bytes s (an ASCII s also matches Python 3's protocol-2 bytes,
 * _codecs.encode(s, "latin1")). */
static int str_eq(const PkObj *o, const char *s)
{
    size_t n = strlen(s);
    if (o && o->kind == PK_CALL && pk_is_global(o->fn, "_codecs", "encode") && o->args && o->args->n == 2
        && o->args->v[1]->kind == PK_STR && o->args->v[1]->len == 6 && !memcmp(o->args->v[1]->s, "latin1", 6))
        o = o->args->v[0];
    return o && (o->kind == PK_STR || o->kind == PK_BYTES) && o->len == n && !memcmp(o->s, s, n);
}

const PkObj *pk_get(const PkObj *d, const char *key)
{
    if (!d || d->kind != PK_DICT) return NULL;
    for (size_t i = d->n; i >= 2; i -= 2)
        if (str_eq(d->v[i - 2], key)) return d->v[i - 1];
    return NULL;
}

int pk_is_global(const PkObj *o, const char *module, const char *name)
{
    if (!o || o->kind != PK_GLOBAL || strcmp(o->name, name)) return 0;
    if (!strcmp(o->module, module)) return 1;
    /* numpy 2 moved numpy.core to numpy._core */
    return !strncmp(module, "numpy.core.", 11) && !strncmp(o->module, "numpy._core.", 12)
        && !strcmp(o->module + 12, module + 11);
}

static int is_builtin(const PkObj *o, const char *name)
{
    return pk_is_global(o, "builtins", name) || pk_is_global(o, "__builtin__", name);
}

/* Bytes of a BYTES node, or of what Python 3 writes for bytes at protocol 2: bytes() for empty
 * ones, _codecs.encode(str, "latin1") (decoded into *own, malloc'ed), bytearray(either). */
static int bytes_of(const PkObj *o, const char *what, const uint8_t **data, size_t *len, uint8_t **own)
{
    *own = NULL;
    if (o && o->kind == PK_CALL && is_builtin(o->fn, "bytearray") && o->args->n == 1) o = o->args->v[0];
    if (o && o->kind == PK_BYTES) {
        *data = o->s;
        *len = o->len;
        return 0;
    }
    if (o && o->kind == PK_CALL && (is_builtin(o->fn, "bytes") || is_builtin(o->fn, "bytearray")) && o->args->n == 0) {
        *data = (const uint8_t *)"";
        *len = 0;
        return 0;
    }
    if (o && o->kind == PK_CALL && pk_is_global(o->fn, "_codecs", "encode") && item(o->args, 0)
        && item(o->args, 0)->kind == PK_STR
        && (str_eq(item(o->args, 1), "latin1") || str_eq(item(o->args, 1), "latin-1"))) {
        const PkObj *s = item(o->args, 0);
        uint8_t *b = dd_malloc(s->len ? s->len : 1);
        size_t n = 0;
        for (size_t i = 0; i < s->len; n++) {   /* UTF-8 of code points below 256 */
            uint8_t c = s->s[i];
            if (c < 0x80) {
                b[n] = c;
                i++;
            } else if ((c == 0xc2 || c == 0xc3) && i + 1 < s->len && (s->s[i + 1] & 0xc0) == 0x80) {
                b[n] = (uint8_t)(((c & 0x1f) << 6) | (s->s[i + 1] & 0x3f));
                i += 2;
            } else {
                free(b);
                return dd_err("%s: latin-1 text with a character above 255", what);
            }
        }
        *data = b;
        *len = n;
        *own = b;
        return 0;
    }
    return dd_err("%s: not bytes", what);
}

/* numpy.dtype(code, ...) with BUILD state (version, byteorder, ...). */
static int dtype_of(const PkObj *o, const char *what, DdDtype *dt, int *swap)
{
    if (!o || o->kind != PK_CALL || !pk_is_global(o->fn, "numpy", "dtype"))
        return dd_err("%s: the array's dtype is not a numpy.dtype", what);
    const PkObj *code = item(o->args, 0), *order = item(o->state, 1);
    static const struct { const char *code; DdDtype dt; } map[] = {
        {"b1", DD_BOOL}, {"i1", DD_I8}, {"u1", DD_U8}, {"i2", DD_I16}, {"u2", DD_U16}, {"i4", DD_I32}, {"u4", DD_U32},
        {"i8", DD_I64}, {"u8", DD_U64}, {"f2", DD_F16}, {"f4", DD_F32}, {"f8", DD_F64}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (str_eq(code, map[i].code)) {
            *dt = map[i].dt;
            *swap = str_eq(order, ">") && dd_dtype_size(*dt) > 1;
            if (order && !str_eq(order, ">") && !str_eq(order, "<") && !str_eq(order, "|") && !str_eq(order, "="))
                return dd_err("%s: unknown byte order", what);
            return 0;
        }
    int show = code && (code->kind == PK_STR || code->kind == PK_BYTES) && code->len < 32;
    return dd_err("%s: numpy dtype '%.*s' is not supported (want b1, i1-i8, u1-u8, f2, f4 or f8)", what,
                  show ? (int)code->len : 1, show ? (const char *)code->s : "?");
}

int pk_ndarray(const PkObj *o, const char *what, Tensor *out)
{
    memset(out, 0, sizeof *out);
    const PkObj *shape, *dtype, *data;
    int fortran = 0;
    if (o && o->kind == PK_CALL && pk_is_global(o->fn, "numpy.core.multiarray", "_reconstruct")) {
        /* _reconstruct(ndarray, (0,), b'b') + BUILD (version, shape, dtype, is_fortran, data) */
        const PkObj *st = o->state;
        int k = st && st->kind == PK_TUPLE && st->n == 5 ? 1 : 0;
        if (!pk_is_global(item(o->args, 0), "numpy", "ndarray") || !k)
            return dd_err("%s: not a numpy array as numpy pickles one", what);
        shape = item(st, 1);
        dtype = item(st, 2);
        fortran = item(st, 3) && (item(st, 3)->kind == PK_BOOL || item(st, 3)->kind == PK_INT) && item(st, 3)->i;
        data = item(st, 4);
    } else if (o && o->kind == PK_CALL && pk_is_global(o->fn, "numpy.core.numeric", "_frombuffer")) {
        /* protocol 5: _frombuffer(buffer, dtype, shape, order) */
        data = item(o->args, 0);
        dtype = item(o->args, 1);
        shape = item(o->args, 2);
        fortran = str_eq(item(o->args, 3), "F");
    } else {
        return dd_err("%s: not a numpy array", what);
    }
    if (!shape || shape->kind != PK_TUPLE || shape->n > DD_MAXDIM)
        return dd_err("%s: the array's shape is not a tuple of at most %d sizes", what, DD_MAXDIM);
    DdDtype dt = DD_U8;
    int swap = 0;
    if (dtype_of(dtype, what, &dt, &swap) < 0) return -1;
    int64_t dims[DD_MAXDIM];
    size_t numel = 1;
    for (size_t i = 0; i < shape->n; i++) {
        const PkObj *d = shape->v[i];
        if (d->kind != PK_INT || d->i < 0 || dd_mul_ok(numel, (size_t)d->i, &numel) < 0)
            return dd_err("%s: bad array size", what);
        dims[i] = d->i;
    }
    const uint8_t *bytes = NULL;
    size_t len = 0, want;
    uint8_t *own;
    if (dd_mul_ok(numel, dd_dtype_size(dt), &want) < 0) return dd_err("%s: bad array size", what);
    if (bytes_of(data, what, &bytes, &len, &own) < 0) return -1;
    if (len != want) {
        free(own);
        return dd_err("%s: %zu bytes of data for %zu elements of %zu bytes", what, len, numel, dd_dtype_size(dt));
    }
    *out = tensor_new(dt, (int)shape->n, dims);
    if (fortran && shape->n > 1) npy_from_fortran(out, bytes); /* e.g. np.asfortranarray, a transpose */
    else memcpy(out->data, bytes, len);
    free(own);
    if (swap) {
        size_t es = dd_dtype_size(dt);
        uint8_t *p = out->data;
        for (size_t i = 0; i < numel; i++)
            for (size_t a = 0, b = es - 1; a < b; a++, b--) {
                uint8_t t = p[i * es + a];
                p[i * es + a] = p[i * es + b];
                p[i * es + b] = t;
            }
    }
    return 0;
}

int pk_int_list(const PkObj *o, const char *what, Tensor *out)
{
    memset(out, 0, sizeof *out);
    if (o && (o->kind == PK_LIST || o->kind == PK_TUPLE)) {
        *out = tensor_newv(DD_I64, 1, (int64_t)o->n);
        for (size_t i = 0; i < o->n; i++) {
            if (o->v[i]->kind != PK_INT && o->v[i]->kind != PK_BOOL) {
                tensor_free(out);
                return dd_err("%s: item %zu is not an integer", what, i);
            }
            ((int64_t *)out->data)[i] = o->v[i]->i;
        }
        return 0;
    }
    Tensor a;
    if (pk_ndarray(o, what, &a) < 0) return -1;
    if (a.ndim != 1 || a.dtype == DD_F16 || a.dtype == DD_F32 || a.dtype == DD_F64 || a.dtype == DD_BF16) {
        tensor_free(&a);
        return dd_err("%s: want a list of integers or a 1-D integer array", what);
    }
    *out = tensor_newv(DD_I64, 1, a.shape[0]);
    int64_t *y = out->data;
    for (int64_t i = 0; i < a.shape[0]; i++) {
        const uint8_t *q = (const uint8_t *)a.data + (size_t)i * dd_dtype_size(a.dtype);
        switch (a.dtype) {
        case DD_BOOL: case DD_U8: y[i] = *q; break;
        case DD_I8: y[i] = *(const int8_t *)q; break;
        case DD_I16: { int16_t t; memcpy(&t, q, 2); y[i] = t; break; }
        case DD_U16: { uint16_t t; memcpy(&t, q, 2); y[i] = t; break; }
        case DD_I32: { int32_t t; memcpy(&t, q, 4); y[i] = t; break; }
        case DD_U32: { uint32_t t; memcpy(&t, q, 4); y[i] = t; break; }
        default: { uint64_t t; memcpy(&t, q, 8); y[i] = (int64_t)t; break; } /* I64, U64 */
        }
        if (a.dtype == DD_U64 && y[i] < 0) {
            tensor_free(&a);
            tensor_free(out);
            return dd_err("%s: item %lld above the int64 range", what, (long long)i);
        }
    }
    tensor_free(&a);
    return 0;
}

int pk_str_list(const PkObj *o, const char *what, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    if (!o || (o->kind != PK_LIST && o->kind != PK_TUPLE) || o->n > INT32_MAX)
        return dd_err("%s: not a list of strings", what);
    char **v = dd_calloc(o->n ? o->n : 1, sizeof *v);
    for (size_t i = 0; i < o->n; i++) {
        const PkObj *s = o->v[i];
        const uint8_t *t = s->s;
        size_t len = s->len;
        uint8_t *own = NULL;
        if ((s->kind != PK_STR && bytes_of(s, what, &t, &len, &own) < 0) || memchr(t, 0, len)) {
            free(own);
            dd_lines_free(v, (int)i);
            return dd_err("%s: item %zu is not a string", what, i);
        }
        v[i] = dd_malloc(len + 1);
        memcpy(v[i], t, len);
        v[i][len] = 0;
        free(own);
    }
    *out = v;
    *n = (int)o->n;
    return 0;
}

/* nn_impl.h - private to the .c files of libcommon/nn/: the context, the arenas and the tape.
 *
 * Arena vars (op outputs, nn_input) have v.owns = 0; persistent vars (inside an NnParam) have
 * v.owns = 1. That flag decides where a gradient lives: in the device arena (freed by nn_reset) or
 * in its own allocation (freed by nn_param_free).
 */
#ifndef DD_NN_IMPL_H
#define DD_NN_IMPL_H

#include "libcommon/nn/backend.h"
#include "libcommon/nn/nn.h"

#include <stdio.h>

/* A bump allocator over kept chunks, with a free list: a block handed back (nn_dev_release: a
 * dead gradient, or a value given to nn_done) joins its free neighbours, or lowers the bump
 * pointer when it is the top, and serves the next request it can hold: a block of exactly the
 * size (the gradients of a backward pass die as fast as they are born and recycle a few
 * buffers), else the smallest larger one, split. nn_reset rewinds it; when a step added
 * chunks, they are replaced by one sized to the step (arena_rewind), so identical later steps
 * never allocate. */
typedef struct NnChunk {
    struct NnChunk *next;
    char *base;           /* on the arena's alignment */
    void *mem;            /* what was allocated (base, unless the allocator's was coarser) */
    size_t size, used;
} NnChunk;

typedef struct {
    void *p;
    size_t size;
    NnChunk *chunk;       /* the chunk it lies in (blocks join only within one) */
} NnBlock;

typedef struct {
    NnBackend *be;        /* device arena: memory from be->alloc; NULL: host arena (malloc) */
    size_t align;         /* blocks' sizes and offsets in their chunk: a power of two, 0 for 64 */
    NnChunk *head, *cur;
    size_t live;          /* bytes bumped since the last rewind */
    size_t free_bytes;    /* of live, in the free list */
    size_t step_peak, step_inuse; /* this step's most bumped, and most in use (live - free) */
    size_t inuse_peak;    /* the most in use ever */
    size_t held, held_peak; /* bytes of the chunks, now and the most ever */
    int resized;          /* rewinds that replaced the chunks */
    int grew;             /* this step added a chunk */
    NnBlock *free;        /* blocks handed back since the last rewind */
    int nfree, cap_free;
} NnArena;

typedef struct NnEntry NnEntry;
typedef void (*NnBackwardFn)(Nn *nn, const NnEntry *e);

/* One recorded op. in/save live in the host/device arenas until nn_reset. */
struct NnEntry {
    NnBackwardFn backward;
    NnVar **in;
    int nin;
    NnVar *out;
    int iarg[16];
    float farg[4];
    void *save[3];
    NnVar *keep[4];       /* vars whose values this backward reads (nn_keep) */
    int nkeep;
};

struct Nn {
    DdDevice device;
    NnBackend *be;
    NnArena host, dev, dev_small; /* dev_small: device requests under 64 KiB */
    NnEntry *tape;
    int ntape, cap_tape;
    NnVar **bn_stats;
    int nbn_stats, cap_bn_stats, bn_collect;
    int grad;
    int precision;        /* NnPrecision set by nn_set_precision */
    int keep_all;         /* DD_NN_KEEP_ALL: nn_done does nothing */
    int released;         /* values released by this step's backward (a second would read them) */
    int backward_ran;     /* this step had its nn_backward */
    int done_all;         /* DD_NN_DONE_ALL (a test of the ops' nn_keep): nn_backward first marks
                           * every op output but the loss done */
    uint64_t rng_seed, rng_step, rng_calls;
    char *profile;        /* DD_NN_PROFILE: "1" (stderr) or a file the table is added to; be is wrapped */
    double flops;         /* nn_flops: conv and linear passes dispatched */
};

/* profile.c: a table of the same type that times every call of in's (nn_free frees both), and
 * its report. */
NnBackend *nn_profile_wrap(NnBackend *in);
void nn_profile_report(NnBackend *be, FILE *f);

/* Arena memory (64-byte aligned); device memory is zeroed when zero = 1. */
void *nn_host_alloc(Nn *nn, size_t bytes);
void *nn_dev_alloc(Nn *nn, size_t bytes, int zero);
/* Hands a block of nn_dev_alloc(bytes) back for reuse within the step; p NULL is a no-op. */
void nn_dev_release(Nn *nn, void *p, size_t bytes);

/* A new arena var of F32 with the given shape (value uninitialised). */
NnVar *nn_new_var(Nn *nn, int ndim, const int64_t *shape);
int64_t nn_numel(const NnVar *v);
static inline float *nn_f(const NnVar *v) { return (float *)v->v.data; }

/* Records an op when grad mode is on and an input requires grad; sets out->requires_grad. Returns
 * the entry to fill (args, saves), or NULL when nothing was recorded. Inputs may be NULL. */
NnEntry *nn_record(Nn *nn, NnBackwardFn fn, NnVar *out, int nin, NnVar *const *in);
/* Notes that e's backward reads v's value (an input, or e's output): nn_done leaves the value
 * until that backward has run. e NULL (nothing recorded) or v NULL: nothing. */
void nn_keep(NnEntry *e, NnVar *v);

/* The gradient buffer of v for a backward to write into (allocated zeroed on first need), or NULL
 * when v needs no gradient (v NULL or requires_grad 0). */
float *nn_grad_of(Nn *nn, NnVar *v);
/* Hands the entry's output gradient to x as x's gradient, when x has none yet and both are arena
 * vars of the same size: the output's gradient is dead after its own backward, so a backward that
 * can work in place (dx = f(dy) over dy's buffer) skips zeroing a new buffer and accumulating into
 * it. Returns x's gradient (the former dy), or NULL when it cannot be taken (then accumulate into
 * nn_grad_of(nn, x) as usual). */
float *nn_grad_take(Nn *nn, const NnEntry *e, NnVar *x);
/* The gradient of an entry's output (always present when its backward runs). */
static inline const float *nn_dout(const NnEntry *e) { return (const float *)e->out->g.data; }

/* Dies naming the op when a backend slot is empty. */
void nn_be_missing(const Nn *nn, const char *op);
/* The exit status when be cannot give memory: DD_EXIT_DEVICE for a device, DD_EXIT_DATA for the host. */
int nn_oom_exit(const NnBackend *be);
#define NN_BE(nn, slot) ((nn)->be->slot ? (void)0 : nn_be_missing((nn), #slot))

/* Shape checks that die naming the op. */
void nn_check(int cond, const char *op, const char *fmt, ...) DD_PRINTF(3, 4);
void nn_check_f32(const char *op, const NnVar *v, int ndim);

#endif

/* context.c - the engine's context: backend choice, arenas, variables, parameters, the tape and
 * nn_backward. Ops live in ops_*.c; kernels behind the backend table (backend.h). */
#include "libcommon/nn/nn_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NN_ALIGN 64
#define NN_CHUNK_MIN ((size_t)16 << 20)
#define NN_SPLIT_MIN ((size_t)64 << 10)

/* ---- arenas ---- */

/* The exit status of memory a backend cannot give: a device's (3), or the host's (1, as every
 * other allocation on the host). */
int nn_oom_exit(const NnBackend *be) { return be->device == DD_CPU ? DD_EXIT_DATA : DD_EXIT_DEVICE; }

static void *chunk_mem(NnArena *a, size_t bytes)
{
    if (!a->be) return dd_malloc(bytes);
    void *p = a->be->alloc_uninit ? a->be->alloc_uninit(a->be, bytes) : a->be->alloc(a->be, bytes);
    if (!p)
        dd_die(nn_oom_exit(a->be), "nn: %s: out of %smemory (%zu bytes)", a->be->name,
               a->be->device == DD_CPU ? "" : "device ", bytes);
    return p;
}

static void chunk_free(NnArena *a, NnChunk *c)
{
    if (a->be) a->be->free(a->be, c->mem);
    else free(c->mem);
    free(c);
}

static NnChunk *chunk_new(NnArena *a, size_t size)
{
    NnChunk *c = dd_calloc(1, sizeof *c);
    c->base = c->mem = chunk_mem(a, size);
    size_t al = a->align ? a->align : NN_ALIGN;
    if ((uintptr_t)c->base & (al - 1)) { /* a coarser boundary than the allocator's: room to move to it */
        if (a->be) a->be->free(a->be, c->mem);
        else free(c->mem);
        c->mem = chunk_mem(a, size + al);
        c->base = (char *)(((uintptr_t)c->mem + al - 1) & ~(uintptr_t)(al - 1));
    }
    c->size = size;
    return c;
}

static size_t round_to(size_t bytes, size_t align)
{
    align = align ? align : NN_ALIGN;
    bytes = (bytes + align - 1) & ~(align - 1);
    return bytes ? bytes : align;
}

static size_t arena_round(const NnArena *a, size_t bytes) { return round_to(bytes, a->align); }

static void free_remove(NnArena *a, int i) { a->free[i] = a->free[--a->nfree]; }

static void arena_note(NnArena *a)
{
    size_t inuse = a->live - a->free_bytes;
    if (a->live > a->step_peak) a->step_peak = a->live;
    if (inuse > a->step_inuse) a->step_inuse = inuse;
    if (inuse > a->inuse_peak) a->inuse_peak = inuse;
}

static NnChunk *arena_chunk_new(NnArena *a, size_t size)
{
    NnChunk *c = chunk_new(a, size);
    a->grew = 1;
    a->held += size;
    if (a->held > a->held_peak) a->held_peak = a->held;
    return c;
}

static void *arena_alloc(NnArena *a, size_t bytes)
{
    bytes = arena_round(a, bytes);
    /* a handed-back block: the most recent one of this size (the likeliest still in cache),
     * else the smallest larger one, split (its tail stays free); not for small requests,
     * which would leave big blocks just short of the tensor sizes that come back (a device's
     * small requests have an arena of their own: dev_arena) */
    int best = -1, split = bytes >= NN_SPLIT_MIN;
    for (int i = a->nfree - 1; i >= 0; i--) {
        size_t sz = a->free[i].size;
        if (sz == bytes) {
            best = i;
            break;
        }
        if (split && sz > bytes && (best < 0 || sz < a->free[best].size)) best = i;
    }
    if (best >= 0) {
        NnBlock *f = &a->free[best];
        void *p = f->p;
        if (f->size == bytes) free_remove(a, best);
        else {
            f->p = (char *)f->p + bytes;
            f->size -= bytes;
        }
        a->free_bytes -= bytes;
        arena_note(a);
        return p;
    }
    while (a->cur && a->cur->used + bytes > a->cur->size) {
        if (!a->cur->next) {
            size_t sz = bytes > NN_CHUNK_MIN ? bytes : NN_CHUNK_MIN;
            a->cur->next = arena_chunk_new(a, sz);
        }
        a->cur = a->cur->next;
    }
    if (!a->cur) {
        size_t sz = bytes > NN_CHUNK_MIN ? bytes : NN_CHUNK_MIN;
        a->head = a->cur = arena_chunk_new(a, sz);
    }
    void *p = a->cur->base + a->cur->used;
    a->cur->used += bytes;
    a->live += bytes;
    arena_note(a);
    return p;
}

/* Rewinds; several chunks become one (chunk boundaries waste the tail of each chunk, and keep
 * blocks handed back from joining, so one chunk holding the step is what makes the next
 * identical step malloc-free and compact). The first time it holds the most the step had in
 * use at once (blocks handed back and not reused do not count: in one chunk they join or are
 * reused); should a step still overflow it, the next one holds that step's bumped peak. A
 * sixteenth more absorbs steps that differ a little (an optional flip), which would otherwise
 * each trigger a new chunk, and the next rewind a fresh allocation of it all. */
static void arena_rewind(NnArena *a)
{
    if (a->grew) {
        size_t need = a->resized ? (a->step_peak > a->head->size ? a->step_peak : a->head->size)
                                 : a->step_inuse;
        size_t sz = need + need / 16 + arena_round(a, 1);
        for (NnChunk *c = a->head, *n; c; c = n) {
            n = c->next;
            chunk_free(a, c);
        }
        a->held = 0;
        if (a->be && a->be->trim) a->be->trim(a->be);
        a->head = arena_chunk_new(a, sz > NN_CHUNK_MIN ? sz : NN_CHUNK_MIN);
        a->resized++;
    }
    if (a->head) a->head->used = 0;
    a->cur = a->head;
    a->live = a->free_bytes = 0;
    a->step_peak = a->step_inuse = 0;
    a->nfree = 0;
    a->grew = 0;
}

/* A chunk behind the current one whose blocks are all handed back goes back to the device:
 * a step that outgrew its chunk (the first) then holds little more than it uses, the device's
 * allocator placing the chunks that come next. */
static void chunk_drop(NnArena *a, NnChunk *ch)
{
    NnChunk **pp = &a->head;
    while (*pp != ch) pp = &(*pp)->next;
    *pp = ch->next;
    a->live -= ch->used;
    a->free_bytes -= ch->used;
    a->held -= ch->size;
    chunk_free(a, ch);
}

/* A block handed back joins the free blocks it touches in its chunk; one that ends at the
 * current chunk's bump pointer lowers it instead. */
static void arena_release(NnArena *a, void *p, size_t bytes)
{
    char *s = p, *e = s + arena_round(a, bytes);
    NnChunk *ch = a->head;
    while (ch && !(s >= ch->base && e <= ch->base + ch->size)) ch = ch->next;
    if (!ch) dd_die(DD_EXIT_DATA, "nn: a released block is not in the arena");
    a->free_bytes += (size_t)(e - s);
    for (int i = 0; i < a->nfree;) {
        NnBlock *f = &a->free[i];
        char *fs = f->p, *fe = fs + f->size;
        if (f->chunk == ch && fe == s) {
            s = fs;
            free_remove(a, i);
        } else if (f->chunk == ch && fs == e) {
            e = fe;
            free_remove(a, i);
        } else {
            i++;
        }
    }
    if (ch == a->cur && e == ch->base + ch->used) {
        ch->used = (size_t)(s - ch->base);
        a->live -= (size_t)(e - s);
        a->free_bytes -= (size_t)(e - s);
        return;
    }
    if (ch != a->cur && s == ch->base && e == ch->base + ch->used && a->be) {
        chunk_drop(a, ch);
        return;
    }
    if (a->nfree == a->cap_free) {
        a->cap_free = a->cap_free ? 2 * a->cap_free : 64;
        a->free = dd_realloc(a->free, (size_t)a->cap_free * sizeof *a->free);
    }
    a->free[a->nfree++] = (NnBlock){s, (size_t)(e - s), ch};
}

static void arena_free(NnArena *a)
{
    for (NnChunk *c = a->head, *n; c; c = n) {
        n = c->next;
        chunk_free(a, c);
    }
    free(a->free);
    memset(a, 0, sizeof *a);
}

void *nn_host_alloc(Nn *nn, size_t bytes) { return arena_alloc(&nn->host, bytes); }

/* Small requests (a BN's per-channel saves, scalars) have an arena of their own: among the
 * tensors they would stand between blocks handed back and keep them from joining. */
static NnArena *dev_arena(Nn *nn, size_t bytes)
{
    return round_to(bytes, nn->dev.align) < NN_SPLIT_MIN ? &nn->dev_small : &nn->dev;
}

void *nn_dev_alloc(Nn *nn, size_t bytes, int zero)
{
    void *p = arena_alloc(dev_arena(nn, bytes), bytes);
    if (zero) nn->be->zero(nn->be, p, bytes);
    return p;
}

void nn_dev_release(Nn *nn, void *p, size_t bytes)
{
    if (p) arena_release(dev_arena(nn, bytes), p, bytes);
}

/* The backend's temporaries (NnBackend tmp_get / tmp_put). */
static void *tmp_get(void *ctx, size_t bytes) { return nn_dev_alloc(ctx, bytes, 0); }
static void tmp_put(void *ctx, void *p, size_t bytes) { nn_dev_release(ctx, p, bytes); }

/* ---- errors ---- */

void nn_be_missing(const Nn *nn, const char *op)
{
    dd_die(DD_EXIT_DEVICE, "nn: backend %s has no kernel %s", nn->be->name, op);
}

void nn_check(int cond, const char *op, const char *fmt, ...)
{
    if (cond) return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dd_die(DD_EXIT_DATA, "nn_%s: %s", op, msg);
}

void nn_check_f32(const char *op, const NnVar *v, int ndim)
{
    char d[96];
    nn_check(v != NULL, op, "NULL input");
    nn_check(v->v.dtype == DD_F32, op, "expected F32, got %s", tensor_describe(&v->v, d, sizeof d));
    nn_check(v->v.data != NULL, op, "input %s was released (nn_done) before this use",
             tensor_describe(&v->v, d, sizeof d));
    nn_check(ndim < 0 || v->v.ndim == ndim, op, "expected %d dims, got %s", ndim,
             tensor_describe(&v->v, d, sizeof d));
}

/* ---- context ---- */

Nn *nn_new(DdDevice device, int threads)
{
    if (threads <= 0) threads = dd_threads_default();
    NnBackend *be = NULL;
    if (device == DD_CPU) be = nn_cpu_backend_new(threads);
    else if (device == DD_CUDA) be = nn_cuda_backend_new(threads);
    else {
        dd_err_device("nn: unknown device %d", (int)device);
    }
    if (!be) return NULL;
    Nn *nn = dd_calloc(1, sizeof *nn);
    nn->device = device;
    nn->be = be;
    nn->dev.be = be;
    nn->dev_small.be = be;
    /* a GPU's tensors on cudaMalloc's 256-byte boundaries, as before the arena: cuBLAS and cuDNN
     * may choose kernels by pointer alignment, and results should not depend on where a step's
     * values lie (test_cuda_models compares DD_NN_KEEP_ALL=1 runs bit for bit) */
    nn->dev.align = nn->dev_small.align = device == DD_CUDA ? 256 : NN_ALIGN;
    be->tmp_get = tmp_get;
    be->tmp_put = tmp_put;
    be->tmp_ctx = nn;
    nn->grad = 1;
    nn->keep_all = dd_env_on("DD_NN_KEEP_ALL");
    nn->done_all = dd_env_on("DD_NN_DONE_ALL");
    const char *prof = getenv("DD_NN_PROFILE");
    if (dd_env_on("DD_NN_PROFILE")) {
        nn->profile = dd_strdup(prof);
        nn->be = nn_profile_wrap(be);
    }
    return nn;
}

Nn *nn_open(const char *device, int threads)
{
    if (!strcmp(device, "cpu")) return nn_new(DD_CPU, threads);
    if (!strcmp(device, "cuda")) return nn_new(DD_CUDA, threads);
    if (!strcmp(device, "auto")) {
        Nn *nn = nn_new(DD_CUDA, threads);
        return nn ? nn : nn_new(DD_CPU, threads);
    }
    dd_err("--device: want cpu, cuda or auto, not '%s'", device);
    dd_err_code(DD_EXIT_USAGE);
    return NULL;
}

/* DD_NN_PROFILE's table: to stderr for "1", else added to the file it names, the whole table in
 * one write to the end of the file (O_APPEND), so the tables of programs that run at once (make
 * -j) do not interleave; a file that cannot be written is said, not fatal. */
static void profile_write(Nn *nn)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) {
        fprintf(stderr, "nn: DD_NN_PROFILE: %s\n", strerror(errno));
        return;
    }
    nn_profile_report(nn->be, m);
    fclose(m);
    int fd = strcmp(nn->profile, "1") ? open(nn->profile, O_WRONLY | O_APPEND | O_CREAT, 0644) : STDERR_FILENO;
    ssize_t w = fd < 0 ? -1 : write(fd, buf, len);
    int err = w < 0 ? errno : EIO;
    if (fd >= 0 && fd != STDERR_FILENO && close(fd) < 0 && w == (ssize_t)len) w = -1, err = errno;
    if (w != (ssize_t)len)
        fprintf(stderr, "nn: DD_NN_PROFILE: cannot write %s: %s\n", strcmp(nn->profile, "1") ? nn->profile : "stderr",
                strerror(err));
    free(buf);
}

void nn_free(Nn *nn)
{
    if (!nn) return;
    if (dd_env_on("DD_NN_MEMSTATS"))
        fprintf(stderr, "nn: step memory on %s: at most %.1f MiB in use at once, %.1f MiB held "
                "(peak of the arena's chunks; the small requests' arena %.1f MiB of it); host "
                "arena %.1f MiB\n", nn->be->name,
                (nn->dev.inuse_peak + nn->dev_small.inuse_peak) / 1048576.0,
                (nn->dev.held_peak + nn->dev_small.held_peak) / 1048576.0,
                nn->dev_small.held_peak / 1048576.0, nn->host.held_peak / 1048576.0);
    if (nn->profile) profile_write(nn);
    arena_free(&nn->host);
    arena_free(&nn->dev);
    arena_free(&nn->dev_small);
    free(nn->tape);
    free(nn->bn_stats);
    free(nn->profile);
    nn->be->destroy(nn->be);
    free(nn);
}

DdDevice nn_device(const Nn *nn) { return nn->device; }

int nn_set_grad(Nn *nn, int on)
{
    int old = nn->grad;
    nn->grad = on != 0;
    return old;
}

void nn_reset(Nn *nn)
{
    nn->ntape = 0;
    nn->released = 0;
    nn->backward_ran = 0;
    nn->nbn_stats = 0;
    nn->rng_calls = 0;
    arena_rewind(&nn->host);
    arena_rewind(&nn->dev);
    arena_rewind(&nn->dev_small);
}

void nn_set_rng(Nn *nn, uint64_t seed, uint64_t step)
{
    nn->rng_seed = seed;
    nn->rng_step = step;
    nn->rng_calls = 0;
}

/* ---- variables ---- */

int64_t nn_numel(const NnVar *v) { return tensor_numel(&v->v); }

NnVar *nn_new_var(Nn *nn, int ndim, const int64_t *shape)
{
    NnVar *v = nn_host_alloc(nn, sizeof *v);
    memset(v, 0, sizeof *v);
    v->v.dtype = DD_F32;
    v->v.device = nn->device;
    v->v.ndim = ndim;
    for (int i = 0; i < ndim; i++) v->v.shape[i] = shape[i];
    int64_t n = tensor_numel(&v->v);
    nn_check(n >= 0 && n <= INT64_MAX / 4, "new_var", "bad shape");
    v->v.data = nn_dev_alloc(nn, (size_t)n * sizeof(float), 0);
    v->g = v->v;
    v->g.data = NULL;
    v->role = NN_INPUT;
    v->releasable = 1;
    return v;
}

/* ---- value lifetimes (nn_done) ---- */

static void release_value(Nn *nn, NnVar *v)
{
    /* DD_NN_DONE_ALL on the CPU also fills what is released with NaNs (all bits set): a
     * backward reading it through a pointer taken in the forward shows as a NaN gradient */
    if (nn->done_all && nn->device == DD_CPU) memset(v->v.data, 0xff, (size_t)nn_numel(v) * sizeof(float));
    nn_dev_release(nn, v->v.data, (size_t)nn_numel(v) * sizeof(float));
    v->v.data = NULL;
}

void nn_done(Nn *nn, NnVar *v)
{
    if (!v || nn->keep_all || !v->releasable || v->done) return;
    v->done = 1;
    if (v->keeps == 0) release_value(nn, v);
}

NnVar *nn_done_with(Nn *nn, NnVar *r, NnVar *v)
{
    nn_done(nn, v);
    return r;
}

void nn_memory(const Nn *nn, size_t *in_use, size_t *held)
{
    if (in_use) *in_use = nn->dev.inuse_peak + nn->dev_small.inuse_peak;
    if (held) *held = nn->dev.held_peak + nn->dev_small.held_peak;
}

double nn_flops(const Nn *nn) { return nn->flops; }

void nn_keep(NnEntry *e, NnVar *v)
{
    if (!e || !v || !v->releasable) return;
    if (e->nkeep == (int)(sizeof e->keep / sizeof e->keep[0]))
        dd_die(DD_EXIT_DATA, "nn: an op keeps more than %d values", e->nkeep);
    e->keep[e->nkeep++] = v;
    v->keeps++;
}

/* After entry e's backward (or its skip): the values it kept whose forward use is over go. */
static void unkeep(Nn *nn, NnEntry *e)
{
    for (int k = 0; k < e->nkeep; k++) {
        NnVar *v = e->keep[k];
        if (--v->keeps == 0 && v->done) {
            release_value(nn, v);
            nn->released = 1;
        }
    }
}

NnVar *nn_input(Nn *nn, const Tensor *t, int requires_grad)
{
    nn_check(t->device == DD_CPU || t->device == nn->device, "input", "tensor on another device");
    NnVar *v = nn_new_var(nn, t->ndim, t->shape);
    size_t bytes = (size_t)nn_numel(v) * sizeof(float);
    if (t->device == nn->device && t->dtype == DD_F32) {
        nn->be->copy(nn->be, v->v.data, t->data, bytes);
    } else if (t->dtype == DD_F32) {
        nn->be->upload(nn->be, v->v.data, t->data, bytes);
    } else {
        nn_check(t->device == DD_CPU, "input", "non-F32 tensor must be on the host");
        Tensor f = tensor_to_f32(t);
        nn->be->upload(nn->be, v->v.data, f.data, bytes);
        tensor_free(&f);
    }
    v->requires_grad = requires_grad != 0;
    return v;
}

NnVar *nn_input_borrow(Nn *nn, const Tensor *t, int requires_grad)
{
    nn_check(t->device == nn->device && t->dtype == DD_F32, "input_borrow",
             "tensor must be F32 on the context's device");
    NnVar *v = nn_host_alloc(nn, sizeof *v);
    memset(v, 0, sizeof *v);
    v->v = *t;
    v->v.owns = 0;
    v->g = v->v;
    v->g.data = NULL;
    v->requires_grad = requires_grad != 0;
    v->role = NN_INPUT;
    return v;
}

NnParam *nn_param_new(Nn *nn, const char *name, NnRole role, int ndim, const int64_t *shape)
{
    NnParam *p = dd_calloc(1, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    NnVar *v = &p->var;
    v->v.dtype = DD_F32;
    v->v.device = nn->device;
    v->v.ndim = ndim;
    for (int i = 0; i < ndim; i++) v->v.shape[i] = shape[i];
    int64_t n = tensor_numel(&v->v);
    nn_check(n >= 0 && n <= INT64_MAX / 4, "param_new", "%s: bad shape", name);
    v->v.data = nn->be->alloc(nn->be, (size_t)n * sizeof(float));
    if (!v->v.data) dd_die(nn_oom_exit(nn->be), "nn: %s: %s", name, dd_errmsg());
    v->v.owns = 1;
    v->g = v->v;
    v->g.data = NULL;
    v->g.owns = 1;
    v->role = role;
    v->requires_grad = role == NN_PARAM;
    return p;
}

void nn_param_free(Nn *nn, NnParam *p)
{
    if (!p) return;
    nn->be->free(nn->be, p->var.v.data);
    if (p->var.g.data) nn->be->free(nn->be, p->var.g.data);
    if (p->opt_m) nn->be->free(nn->be, p->opt_m);
    if (p->opt_v) nn->be->free(nn->be, p->opt_v);
    free(p);
}

/* Dies when a var read by the caller was released. */
static void check_live(const char *op, const NnVar *v)
{
    nn_check(v->v.data != NULL, op, "the var was released (nn_done) before this read");
}

void nn_var_upload(Nn *nn, NnVar *v, const float *host)
{
    check_live("var_upload", v);
    nn->be->upload(nn->be, v->v.data, host, (size_t)nn_numel(v) * sizeof(float));
}

void nn_var_download(Nn *nn, const NnVar *v, float *host)
{
    check_live("var_download", v);
    nn->be->download(nn->be, host, v->v.data, (size_t)nn_numel(v) * sizeof(float));
}

void nn_profile(Nn *nn, int on)
{
    if (nn->be->profile) nn->be->profile(nn->be, on);
}

void nn_var_download_range(Nn *nn, const NnVar *v, int64_t off, int64_t n, float *host)
{
    check_live("var_download_range", v);
    if (off < 0 || n < 0 || off + n > nn_numel(v))
        dd_die(DD_EXIT_DATA, "nn_var_download_range: [%lld, %lld) outside %lld elements", (long long)off,
               (long long)(off + n), (long long)nn_numel(v));
    nn->be->download(nn->be, host, (const float *)v->v.data + off, (size_t)n * sizeof(float));
}

void nn_grad_download(Nn *nn, const NnVar *v, float *host)
{
    size_t bytes = (size_t)nn_numel(v) * sizeof(float);
    if (v->g.data) nn->be->download(nn->be, host, v->g.data, bytes);
    else memset(host, 0, bytes);
}

void nn_zero_grad(Nn *nn, NnParam **params, int n)
{
    for (int i = 0; i < n; i++) {
        NnVar *v = &params[i]->var;
        if (v->g.data) nn->be->zero(nn->be, v->g.data, (size_t)nn_numel(v) * sizeof(float));
    }
}

float nn_item(Nn *nn, const NnVar *v)
{
    nn_check(nn_numel(v) == 1, "item", "var has %lld elements", (long long)nn_numel(v));
    check_live("item", v);
    float f;
    nn->be->download(nn->be, &f, v->v.data, sizeof f);
    return f;
}

/* ---- the tape ---- */

NnEntry *nn_record(Nn *nn, NnBackwardFn fn, NnVar *out, int nin, NnVar *const *in)
{
    int need = 0;
    for (int i = 0; i < nin; i++) need |= in[i] && in[i]->requires_grad;
    out->requires_grad = nn->grad && need;
    if (!out->requires_grad) return NULL;
    if (nn->ntape == nn->cap_tape) {
        nn->cap_tape = nn->cap_tape ? 2 * nn->cap_tape : 256;
        nn->tape = dd_realloc(nn->tape, (size_t)nn->cap_tape * sizeof *nn->tape);
    }
    NnEntry *e = &nn->tape[nn->ntape++];
    memset(e, 0, sizeof *e);
    e->backward = fn;
    e->out = out;
    e->nin = nin;
    e->in = nn_host_alloc(nn, (size_t)nin * sizeof *e->in);
    for (int i = 0; i < nin; i++) e->in[i] = in[i];
    return e;
}

float *nn_grad_of(Nn *nn, NnVar *v)
{
    if (!v || !v->requires_grad) return NULL;
    if (!v->g.data) {
        size_t bytes = (size_t)nn_numel(v) * sizeof(float);
        if (v->v.owns) {
            v->g.data = nn->be->alloc(nn->be, bytes);
            if (!v->g.data) dd_die(nn_oom_exit(nn->be), "nn: gradient: %s", dd_errmsg());
        } else {
            v->g.data = nn_dev_alloc(nn, bytes, 1);
        }
    }
    return v->g.data;
}

float *nn_grad_take(Nn *nn, const NnEntry *e, NnVar *x)
{
    (void)nn;
    NnVar *y = e->out;
    if (!x->requires_grad || x->g.data || x->v.owns || y->v.owns || !y->g.data || x == y ||
        nn_numel(x) != nn_numel(y))
        return NULL;
    x->g.data = y->g.data;
    y->g.data = NULL;
    return x->g.data;
}

/* An arena var's gradient buffer goes back to the arena. */
static void release_grad(Nn *nn, NnVar *v)
{
    nn_dev_release(nn, v->g.data, (size_t)nn_numel(v) * sizeof(float));
    v->g.data = NULL;
}

/* Non-parameter gradients are written by each backward: persistent ones are zeroed, arena ones are
 * released (allocated zeroed again on first use, so an entry whose output got no gradient is
 * skipped: branches that do not reach the loss cost nothing). */
static void clear_written_grad(Nn *nn, NnVar *v)
{
    if (!v || !v->requires_grad || v->role == NN_PARAM || !v->g.data) return;
    if (v->v.owns) nn->be->zero(nn->be, v->g.data, (size_t)nn_numel(v) * sizeof(float));
    else release_grad(nn, v);
}

void nn_backward(Nn *nn, NnVar *loss) { nn_backward_seed(nn, loss, 1.0f); }

void nn_backward_seed(Nn *nn, NnVar *loss, float seed)
{
    nn_check(nn_numel(loss) == 1, "backward", "loss has %lld elements", (long long)nn_numel(loss));
    nn_check(loss->requires_grad, "backward", "loss does not require grad (grad mode off, or no "
             "input requires grad)");
    /* the values the first backward released would be read again */
    nn_check(!nn->released, "backward", "a second backward in one step, after the first released "
             "values of vars given to nn_done (nn_reset between backwards)");
    int first = !nn->backward_ran;
    nn->backward_ran = 1;
    if (nn->done_all && first) /* debug: every op output but the loss done, as early as can be */
        for (int i = 0; i < nn->ntape; i++) {
            NnEntry *e = &nn->tape[i];
            if (e->out != loss) nn_done(nn, e->out);
            for (int j = 0; j < e->nin; j++)
                if (e->in[j] != loss) nn_done(nn, e->in[j]);
        }
    for (int i = 0; i < nn->ntape; i++) {
        NnEntry *e = &nn->tape[i];
        clear_written_grad(nn, e->out);
        for (int j = 0; j < e->nin; j++) clear_written_grad(nn, e->in[j]);
    }
    nn->be->upload(nn->be, nn_grad_of(nn, loss), &seed, sizeof seed);
    for (int i = nn->ntape - 1; i >= 0; i--) {
        NnEntry *e = &nn->tape[i];
        if (e->out->g.data) {
            e->backward(nn, e);
            /* An op's output gradient is read by its own backward only (consumers ran before,
             * in reverse order): it is dead now, and its buffer serves the gradients to come. */
            release_grad(nn, e->out);
        }
        if (first) unkeep(nn, e);
    }
}

/* ---- BN statistics collection ---- */

void nn_bn_collect(Nn *nn, int on)
{
    nn->bn_collect = on != 0;
    if (on) nn->nbn_stats = 0;
}

int nn_bn_stat_count(const Nn *nn) { return nn->nbn_stats; }

NnVar *nn_bn_stat(const Nn *nn, int i)
{
    nn_check(i >= 0 && i < nn->nbn_stats, "bn_stat", "index %d of %d", i, nn->nbn_stats);
    return nn->bn_stats[i];
}

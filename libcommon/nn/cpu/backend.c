/* backend.c - the CPU backend: host memory, the worker pool, per-thread scratch, and the op table
 * assembled from the kernel groups in this folder. */
#include "libcommon/base/base.h"
#include "libcommon/nn/cpu/cpu.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

static void *cpu_alloc(NnBackend *be, size_t bytes)
{
    (void)be;
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        dd_err("out of memory (%zu bytes)", bytes);
        return NULL;
    }
    memset(p, 0, n);
    return p;
}

/* Not zeroed: large blocks come fresh from mmap, so their pages cost nothing until first written
 * (and the kernel zeroes them once then, rather than memset here and again by the caller). */
static void *cpu_alloc_uninit(NnBackend *be, size_t bytes)
{
    (void)be;
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        dd_err("out of memory (%zu bytes)", bytes);
        return NULL;
    }
    return p;
}

static void cpu_free(NnBackend *be, void *p)
{
    (void)be;
    free(p);
}

/* Zeroing runs on the pool in pieces of ZERO_PIECE bytes: a gradient buffer zeroed before a
 * backward accumulates into it is tens of MiB, more than one core's stores keep up with. */
#define ZERO_PIECE ((size_t)256 << 10)

typedef struct {
    char *p;
    size_t bytes;
} ZeroJob;

static void zero_task(void *arg, int64_t b, int64_t e, int tid)
{
    (void)tid;
    const ZeroJob *j = arg;
    size_t lo = (size_t)b * ZERO_PIECE, hi = (size_t)e * ZERO_PIECE;
    memset(j->p + lo, 0, (hi < j->bytes ? hi : j->bytes) - lo);
}

static void cpu_zero(NnBackend *be, void *p, size_t bytes)
{
    ZeroJob j = {p, bytes};
    cpu_for(be, (int64_t)((bytes + ZERO_PIECE - 1) / ZERO_PIECE), 4, zero_task, &j);
}

static void cpu_copy(NnBackend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (dst != src) memmove(dst, src, bytes);
}

static void cpu_destroy(NnBackend *be)
{
    CpuImpl *c = cpu_impl(be);
    cpu_pool_free(c->pool);
    free(c->shared);
    for (int t = 0; t < c->threads; t++) free(c->scratch[t]);
    free(c->scratch);
    free(c->scratch_n);
    free(c);
    free(be);
}

void cpu_for(NnBackend *be, int64_t n, int64_t min_items, CpuTask fn, void *arg)
{
    if (n <= 0) return;
    if (n < min_items) fn(arg, 0, n, 0);
    else cpu_pool_run(cpu_impl(be)->pool, n, fn, arg);
}

/* The vector ISA of this CPU: 2 AVX-512F (with AVX2 and FMA), 1 AVX2 and FMA, 0 neither; detected
 * once (benign race: every thread stores the same value). */
static int cpu_isa_hw(void)
{
#if defined(__x86_64__) || defined(__i386__)
    static int isa = -1;
    if (isa < 0) {
        __builtin_cpu_init();
        int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        isa = avx2 ? (__builtin_cpu_supports("avx512f") ? 2 : 1) : 0;
    }
    return isa;
#else
    return 0;
#endif
}

/* The hardware's ISA, lowered by DD_CPU_ISA (read per call: tests and benchmarks compare). */
static int cpu_isa(void)
{
    int isa = cpu_isa_hw();
    const char *env = getenv("DD_CPU_ISA");
    if (!env || !*env || strcmp(env, "avx512") == 0) return isa;
    if (strcmp(env, "avx2") == 0) return isa < 1 ? isa : 1;
    if (strcmp(env, "baseline") == 0) return 0;
    dd_die(DD_EXIT_USAGE, "DD_CPU_ISA=%s: expected baseline, avx2 or avx512", env);
}

int cpu_avx2(void)
{
    return cpu_isa() >= 1;
}

int cpu_avx512(void)
{
    return cpu_isa() >= 2;
}

float *cpu_scratch(NnBackend *be, int tid, size_t n)
{
    CpuImpl *c = cpu_impl(be);
    if (c->scratch_n[tid] < n) {
        free(c->scratch[tid]);
        c->scratch[tid] = cpu_alloc(be, n * sizeof(float));
        if (!c->scratch[tid]) dd_die(DD_EXIT_DATA, "nn: cpu: %s", dd_errmsg());
        c->scratch_n[tid] = n;
    }
    return c->scratch[tid];
}

float *cpu_shared(NnBackend *be, size_t n)
{
    CpuImpl *c = cpu_impl(be);
    if (c->shared_n < n) {
        free(c->shared);
        c->shared = cpu_alloc(be, n * sizeof(float));
        if (!c->shared) dd_die(DD_EXIT_DATA, "nn: cpu: %s", dd_errmsg());
        c->shared_n = n;
    }
    return c->shared;
}

/* Under an address-space limit below 4 GiB (ulimit -v), said once: OpenBLAS retries a buffer it cannot map
 * for ever, so such a run can hang in a matrix product where it would fail (ddpipe(7) BUGS); a limit on
 * resident memory fails cleanly instead. */
static void warn_address_limit(void)
{
    static int said;
    struct rlimit r;
    if (said || getrlimit(RLIMIT_AS, &r) < 0 || r.rlim_cur == RLIM_INFINITY || r.rlim_cur >= (rlim_t)4 << 30) return;
    said = 1;
    dd_warn("address space limited to %llu MiB (ulimit -v): OpenBLAS hangs rather than fails when it cannot map a "
            "buffer (128 MiB a thread); limit resident memory instead (ddpipe(7) BUGS)",
            (unsigned long long)(r.rlim_cur >> 20));
}

NnBackend *nn_cpu_backend_new(int threads)
{
    if (threads < 1) threads = 1;
    warn_address_limit();
#ifdef __GLIBC__
    /* Big blocks (the arena's chunks, which a step that outgrows them frees and takes anew)
     * mapped and unmapped whole: glibc's default raises its mmap threshold to the size of each
     * mapped block freed (up to 32 MiB), after which blocks of that size come from the heap,
     * which keeps what is freed in it: the process then holds more than the arena. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
    NnBackend *be = dd_calloc(1, sizeof *be);
    CpuImpl *c = dd_calloc(1, sizeof *c);
    c->threads = threads;
    c->pool = cpu_pool_new(threads);
    c->scratch = dd_calloc((size_t)threads, sizeof *c->scratch);
    c->scratch_n = dd_calloc((size_t)threads, sizeof *c->scratch_n);
    /* Our pool parallelises over images; each GEMM runs single-threaded inside one task. */
    openblas_set_num_threads(1);
    be->name = "cpu";
    be->device = DD_CPU;
    be->impl = c;
    be->destroy = cpu_destroy;
    be->alloc = cpu_alloc;
    be->alloc_uninit = cpu_alloc_uninit;
    be->free = cpu_free;
    be->zero = cpu_zero;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->copy = cpu_copy;
    cpu_conv_init(be);
    cpu_elem_init(be);
    cpu_norm_init(be);
    cpu_pool_ops_init(be);
    cpu_loss_init(be);
    cpu_layout_init(be);
    return be;
}

/* pool.c - a small pthread worker pool for the CPU kernels: one job at a time, cut into contiguous
 * blocks that the threads (the caller among them) take in turn as they finish. Blocks shrink as
 * the job drains (guided scheduling: each is a share of what is left), so the threads start on
 * large blocks and end within a small one of each other, and a thread slowed by the machine's
 * other work does not hold the rest up. Every item of a task is self-contained (cpu.h), so which
 * thread runs a block never changes a result.
 *
 * Hand-over: the caller posts a job (fn, arg, n, then `next` opened under the job's generation,
 * then the generation), takes blocks itself, and returns once every item is finished (`left`),
 * not once every worker has looked: a worker that wakes late finds the job taken or over and
 * waits for the next. An ended job's `next` is closed before the next job's n is stored, so a
 * late worker's stale reading can never take items of the new job. Idle workers poll for the
 * next job for a while before they sleep (see SPIN_US). tests/golden/tsan.sh runs test_pool
 * under ThreadSanitizer. */
#include "libcommon/base/base.h"
#include "libcommon/nn/cpu/cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

struct CpuPool {
    int threads;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;            /* job generation (atomic): workers run each generation at most once */
    int sleepers;            /* workers waiting on go (atomic) */
    int caller_waits;        /* the caller waits on done for the job's last items (atomic) */
    int quit;
    CpuTask fn;
    void *arg;
    int64_t n;
    uint64_t next;           /* the job's tag (gen, high bits) and first item not yet taken (atomic) */
    int64_t left;            /* items not yet finished (atomic) */
};

/* A block is 1/(GUIDED_SHARE threads) of the items left: the first blocks are large (few takes of
 * the shared counter), the last are single items (a job of 50 equal items on 2 threads, cut into
 * fixed blocks of 7, left one thread idle for up to 7 items; now for at most 1). */
#define GUIDED_SHARE 2

/* `next` holds the job's generation above its item index: a thread still reading an ended job
 * sees another tag, or the ended job's closed index, and takes nothing. */
#define NEXT_BITS 40
#define NEXT_IDX(v) ((int64_t)((v) & ((UINT64_C(1) << NEXT_BITS) - 1)))
#define NEXT_TAG(v) ((v) >> NEXT_BITS)
#define GEN_TAG(g) ((g) & ((UINT64_C(1) << (64 - NEXT_BITS)) - 1))
#define NEXT_CLOSED ((INT64_C(1) << NEXT_BITS) - 1) /* an ended job's index: nothing left to take */

/* An idle worker polls for the next job this long before it sleeps: a training step's kernels
 * follow each other within microseconds, and a sleeping thread took 60 us to wake on a 2-core
 * VM (each small job paid it); the caller polls for the job's last blocks for CALLER_SPIN_US (a
 * job's threads end within a block of each other), then sleeps until they are done. Polls yield every SPIN_YIELD_US, so a busy machine's other threads get
 * the core. */
#define SPIN_US 200.0
#define CALLER_SPIN_US 1000.0
#define SPIN_YIELD_US 20.0

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A poll: one pause per call of poll_on, which returns 0 once limit_us have passed since
 * poll_start and yields the CPU every SPIN_YIELD_US (the clock read every 64 pauses). */
typedef struct {
    double t0, ty;
    int i;
} Poll;

static void poll_start(Poll *q)
{
    q->t0 = q->ty = dd_now();
    q->i = 0;
}

static int poll_on(Poll *q, double limit_us)
{
    cpu_relax();
    if (++q->i % 64) return 1;
    double now = dd_now();
    if (now - q->t0 > limit_us * 1e-6) return 0;
    if (now - q->ty > SPIN_YIELD_US * 1e-6) sched_yield(), q->ty = now;
    return 1;
}

/* Takes blocks of generation gen's job until none are left; returns when this thread can take
 * nothing more (the job's last blocks may still be running elsewhere). */
static void run_range(CpuPool *p, uint64_t gen, int t)
{
    const uint64_t tag = GEN_TAG(gen);
    uint64_t v = __atomic_load_n(&p->next, __ATOMIC_ACQUIRE);
    for (;;) {
        int64_t b, g;
        do {
            if (NEXT_TAG(v) != tag) return;      /* that job is over: another has begun */
            b = NEXT_IDX(v);
            /* n of gen's job, or, had it ended meanwhile, of a later one: then the job was
             * closed before that n was stored, and the exchange below fails */
            int64_t n = __atomic_load_n(&p->n, __ATOMIC_ACQUIRE);
            if (b >= n) return;
            g = (n - b) / ((int64_t)GUIDED_SHARE * p->threads);
            if (g < 1) g = 1;
        } while (!__atomic_compare_exchange_n(&p->next, &v, v + (uint64_t)g, 1, __ATOMIC_ACQUIRE,
                                              __ATOMIC_ACQUIRE));
        /* an unfinished block of gen's job is ours: the job, its fn and arg, stay until it ends */
        CpuTask fn = __atomic_load_n(&p->fn, __ATOMIC_RELAXED);
        fn(__atomic_load_n(&p->arg, __ATOMIC_RELAXED), b, b + g, t);
        if (__atomic_sub_fetch(&p->left, g, __ATOMIC_SEQ_CST) == 0 &&
            __atomic_load_n(&p->caller_waits, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
        v = __atomic_load_n(&p->next, __ATOMIC_ACQUIRE);
    }
}

typedef struct {
    CpuPool *p;
    int t;
} Worker;

/* Waits until the pool's generation differs from old (or quit): polls SPIN_US, then sleeps on go
 * (a job's poster wakes sleepers: sleepers and gen are sequentially consistent, so either the
 * poster sees this thread counted or this thread sees the new generation). */
static uint64_t wait_gen(CpuPool *p, uint64_t old)
{
    Poll q;
    poll_start(&q);
    do {
        uint64_t g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        if (g != old || __atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) return g;
    } while (poll_on(&q, SPIN_US));
    pthread_mutex_lock(&p->mu);
    __atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    uint64_t g;
    while ((g = __atomic_load_n(&p->gen, __ATOMIC_SEQ_CST)) == old &&
           !__atomic_load_n(&p->quit, __ATOMIC_SEQ_CST))
        pthread_cond_wait(&p->go, &p->mu);
    __atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *a)
{
    Worker w = *(Worker *)a;
    free(a);
    CpuPool *p = w.p;
    uint64_t seen = 0;
    for (;;) {
        seen = wait_gen(p, seen);
        if (__atomic_load_n(&p->quit, __ATOMIC_ACQUIRE)) break;
        run_range(p, seen, w.t);
    }
    return NULL;
}

CpuPool *cpu_pool_new(int threads)
{
    CpuPool *p = dd_calloc(1, sizeof *p);
    p->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    p->tid = dd_calloc((size_t)p->threads, sizeof *p->tid);
    for (int t = 1; t < p->threads; t++) {
        Worker *w = dd_malloc(sizeof *w);
        w->p = p;
        w->t = t;
        if (pthread_create(&p->tid[t], NULL, worker_main, w))
            dd_die(DD_EXIT_DATA, "nn: cpu: cannot start worker thread");
    }
    return p;
}

void cpu_pool_free(CpuPool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->quit, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->threads; t++) pthread_join(p->tid[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->tid);
    free(p);
}

/* One job (the file's head: the hand-over). No worker is inside an earlier job's items when it
 * is posted: that job ended with all its items done. */
void cpu_pool_run(CpuPool *p, int64_t n, CpuTask fn, void *arg)
{
    if (n <= 0) return;
    if (p->threads == 1 || n == 1) {
        fn(arg, 0, n, 0);
        return;
    }
    if (n >= NEXT_CLOSED) dd_die(DD_EXIT_DATA, "nn: cpu: a job of %lld items", (long long)n);
    uint64_t gen = p->gen + 1;                /* only this thread writes gen */
    __atomic_store_n(&p->fn, fn, __ATOMIC_RELAXED); /* atomics: a late worker may read them */
    __atomic_store_n(&p->arg, arg, __ATOMIC_RELAXED);
    __atomic_store_n(&p->n, n, __ATOMIC_RELEASE); /* after the last job's close (below) */
    __atomic_store_n(&p->left, n, __ATOMIC_RELAXED);
    __atomic_store_n(&p->next, GEN_TAG(gen) << NEXT_BITS, __ATOMIC_RELEASE);
    __atomic_store_n(&p->gen, gen, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->sleepers, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->go);
        pthread_mutex_unlock(&p->mu);
    }
    run_range(p, gen, 0);
    /* the blocks others took: polled for CALLER_SPIN_US, then waited for on done (a worker held
     * off the CPU by the machine's other work would otherwise have this thread spin meanwhile) */
    Poll q;
    poll_start(&q);
    while (__atomic_load_n(&p->left, __ATOMIC_ACQUIRE) > 0)
        if (!poll_on(&q, CALLER_SPIN_US)) {
            pthread_mutex_lock(&p->mu);
            __atomic_store_n(&p->caller_waits, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&p->left, __ATOMIC_SEQ_CST) > 0) pthread_cond_wait(&p->done, &p->mu);
            __atomic_store_n(&p->caller_waits, 0, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&p->mu);
            break;
        }
    /* Closed: a thread that read the job's last index before this and the next job's n after it
     * would otherwise take that index under the next job's n, fn and arg */
    __atomic_store_n(&p->next, (GEN_TAG(gen) << NEXT_BITS) | (uint64_t)NEXT_CLOSED, __ATOMIC_RELAXED);
}

/* pool.c - a small pthread worker pool for the CPU kernels: one job at a time, cut into about
 * four contiguous blocks per thread that the threads (the caller among them) take in turn as they
 * finish, so a thread slowed by the machine's other work does not hold the rest up. Every item
 * of a task is self-contained (cpu.h), so which thread runs a block never changes a result. */
#include "libcommon/base/base.h"
#include "libcommon/nn/cpu/cpu.h"

#include <pthread.h>
#include <stdlib.h>

struct CpuPool {
    int threads;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t gen;            /* job generation: workers run each generation once */
    int pending, quit;
    CpuTask fn;
    void *arg;
    int64_t n, grain, next; /* items, items per block, next block to take (atomic) */
};

/* Blocks per thread: enough to even out uneven progress, few enough to keep blocks large. */
#define BLOCKS_PER_THREAD 4

static void run_range(CpuPool *p, int t)
{
    for (;;) {
        int64_t blk = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED), b = blk * p->grain;
        if (b >= p->n) break;
        int64_t e = b + p->grain < p->n ? b + p->grain : p->n;
        p->fn(p->arg, b, e, t);
    }
}

typedef struct {
    CpuPool *p;
    int t;
} Worker;

static void *worker_main(void *a)
{
    Worker w = *(Worker *)a;
    free(a);
    CpuPool *p = w.p;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->quit) pthread_cond_wait(&p->go, &p->mu);
        if (p->quit) break;
        seen = p->gen;
        pthread_mutex_unlock(&p->mu);
        run_range(p, w.t);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    p->quit = 1;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->threads; t++) pthread_join(p->tid[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
    free(p->tid);
    free(p);
}

void cpu_pool_run(CpuPool *p, int64_t n, CpuTask fn, void *arg)
{
    if (n <= 0) return;
    if (p->threads == 1 || n == 1) {
        fn(arg, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->grain = (n + (int64_t)p->threads * BLOCKS_PER_THREAD - 1) / ((int64_t)p->threads * BLOCKS_PER_THREAD);
    p->next = 0;
    p->pending = p->threads - 1;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    run_range(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

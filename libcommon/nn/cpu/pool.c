/* pool.c - a small pthread worker pool for the CPU kernels: one job at a time, cut into contiguous
 * blocks that the threads (the caller among them) take in turn as they finish. Blocks shrink as
 * the job drains (guided scheduling: each is a share of what is left), so the threads start on
 * large blocks and end within a small one of each other, and a thread slowed by the machine's
 * other work does not hold the rest up. Every item of a task is self-contained (cpu.h), so which
 * thread runs a block never changes a result. */
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
    int64_t n, next;         /* items, first item not yet taken (atomic) */
};

/* A block is 1/(GUIDED_SHARE threads) of the items left: the first blocks are large (few takes of
 * the shared counter), the last are single items (a job of 50 equal items on 2 threads, cut into
 * fixed blocks of 7, left one thread idle for up to 7 items; now for at most 1). */
#define GUIDED_SHARE 2

static void run_range(CpuPool *p, int t)
{
    int64_t share = (int64_t)GUIDED_SHARE * p->threads, b = __atomic_load_n(&p->next, __ATOMIC_RELAXED);
    for (;;) {
        int64_t g;
        do {
            if (b >= p->n) return;
            g = (p->n - b) / share;
            if (g < 1) g = 1;
        } while (!__atomic_compare_exchange_n(&p->next, &b, b + g, 1, __ATOMIC_RELAXED,
                                              __ATOMIC_RELAXED));
        p->fn(p->arg, b, b + g, t);
        b = __atomic_load_n(&p->next, __ATOMIC_RELAXED);
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

/* test_pool.c - the CPU backend's worker pool (libcommon/nn/cpu/pool.c): every item of every job
 * runs exactly once, with the job's own function and argument, never on two threads under one tid
 * at once; a job returns only when all its items are done; workers that went to sleep wake for
 * the next job, and a caller that slept waiting for a worker's block is woken; back-to-back jobs
 * of 1 to 64 items (workers polling, or still finishing the last job's bookkeeping when the next
 * is posted) on 2, 3 and 5 threads; jobs whose items take a while (late workers); the pool's end. */
#include "check.h"

#include "libcommon/base/base.h"
#include "libcommon/nn/cpu/cpu.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define MAXT 8
#define MAXN 64

typedef struct {
    uint64_t id;            /* this job's number: an item run under another job's would see it */
    int64_t n;
    int hits[MAXN];         /* per item, atomic */
    int busy[MAXT];         /* per tid: 1 while an item runs under it (atomic) */
    int overlap, bad_range, wrong_job;
    int spin_us;            /* each item busy-waits this long */
    int slow1_us;           /* item 1 busy-waits this long (the caller's wait outlasts its polling) */
    int waitfor;            /* (n = 2) item 0 waits up to 2 s for item 1 to start: two threads ran */
    int started1, timed_out;
} Job;

static uint64_t current_job;

static void task(void *arg, int64_t b, int64_t e, int tid)
{
    Job *j = arg;
    if (j->id != __atomic_load_n(&current_job, __ATOMIC_ACQUIRE))
        __atomic_add_fetch(&j->wrong_job, 1, __ATOMIC_RELAXED);
    if (b < 0 || e > j->n || b >= e || tid < 0 || tid >= MAXT) {
        __atomic_add_fetch(&j->bad_range, 1, __ATOMIC_RELAXED);
        return;
    }
    if (__atomic_exchange_n(&j->busy[tid], 1, __ATOMIC_ACQ_REL)) __atomic_add_fetch(&j->overlap, 1, __ATOMIC_RELAXED);
    for (int64_t i = b; i < e; i++) {
        if (i == 1) __atomic_store_n(&j->started1, 1, __ATOMIC_RELEASE);
        if (i == 0 && j->waitfor) {
            double t0 = dd_now();
            while (!__atomic_load_n(&j->started1, __ATOMIC_ACQUIRE))
                if (dd_now() - t0 > 2.0) {
                    j->timed_out = 1;
                    break;
                }
        }
        int us = j->spin_us + (i == 1 ? j->slow1_us : 0);
        if (us) {
            double t0 = dd_now();
            while (dd_now() - t0 < us * 1e-6) {
            }
        }
        __atomic_add_fetch(&j->hits[i], 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&j->busy[tid], 0, __ATOMIC_RELEASE);
}

/* Runs one job on the stack (a late reader of an ended job's argument reads a reused frame) and
 * checks it; returns the failures. */
static int run_job_slow(CpuPool *p, uint64_t id, int64_t n, int spin_us, int waitfor, int slow1_us)
{
    Job j;
    memset(&j, 0, sizeof j);
    j.id = id, j.n = n, j.spin_us = spin_us, j.waitfor = waitfor, j.slow1_us = slow1_us;
    __atomic_store_n(&current_job, id, __ATOMIC_RELEASE);
    cpu_pool_run(p, n, task, &j);
    int bad = j.overlap + j.bad_range + j.wrong_job + j.timed_out;
    for (int64_t i = 0; i < n; i++) bad += __atomic_load_n(&j.hits[i], __ATOMIC_ACQUIRE) != 1;
    if (bad)
        fprintf(stderr, "job %llu (n %lld): overlap %d bad range %d wrong job %d timed out %d\n",
                (unsigned long long)id, (long long)n, j.overlap, j.bad_range, j.wrong_job, j.timed_out);
    /* poison the frame: an item of this job run after the return would count as a wrong job */
    memset(&j, 0xa5, sizeof j);
    return bad;
}

static int run_job(CpuPool *p, uint64_t id, int64_t n, int spin_us, int waitfor)
{
    return run_job_slow(p, id, n, spin_us, waitfor, 0);
}

int main(void)
{
    alarm(120); /* a lost wake-up hangs: fail (SIGALRM) rather than wait for the runner's timeout */
    uint64_t id = 0;
    const int threads[] = {2, 3, 5};
    for (int ti = 0; ti < 3; ti++) {
        CpuPool *p = cpu_pool_new(threads[ti]);
        int bad = 0;
        /* back to back, small: the workers poll and often arrive after the caller took it all */
        for (int r = 0; r < 20000 && bad < 5; r++) bad += run_job(p, ++id, 1 + r % MAXN, 0, 0);
        CHECK_MSG(bad == 0, "%d threads: back-to-back jobs", threads[ti]);
        /* items that take a while: every thread takes part, blocks shrink as the job drains */
        bad = 0;
        for (int r = 0; r < 200 && bad < 5; r++) bad += run_job(p, ++id, 2 + r % (MAXN - 1), 3, 0);
        CHECK_MSG(bad == 0, "%d threads: slow items", threads[ti]);
        /* after a pause the workers sleep; a job that needs two threads at once must wake one */
        bad = 0;
        for (int r = 0; r < 5; r++) {
            usleep(5000);
            bad += run_job(p, ++id, 2, 0, 1);
        }
        CHECK_MSG(bad == 0, "%d threads: a sleeping worker wakes for a job", threads[ti]);
        /* a worker's block outlasts the caller's polling: the caller sleeps, the worker wakes it */
        bad = 0;
        for (int r = 0; r < 5; r++) bad += run_job_slow(p, ++id, 2, 0, 1, 3000);
        CHECK_MSG(bad == 0, "%d threads: the caller sleeps until a worker's last block", threads[ti]);
        /* sleeping and polling mixed with pauses about the polling time */
        bad = 0;
        for (int r = 0; r < 400 && bad < 5; r++) {
            if (r % 7 == 0) usleep((useconds_t)(50 * (r % 11)));
            bad += r % 50 == 0 ? run_job(p, ++id, 2, 0, 1) : run_job(p, ++id, 1 + (r * 13) % MAXN, r % 3 == 0, 0);
        }
        CHECK_MSG(bad == 0, "%d threads: pauses between jobs", threads[ti]);
        cpu_pool_free(p);
    }
    /* a pool freed at once, and one freed while its workers sleep */
    cpu_pool_free(cpu_pool_new(4));
    CpuPool *p = cpu_pool_new(2);
    CHECK(run_job(p, ++id, 7, 0, 0) == 0);
    usleep(5000);
    cpu_pool_free(p);
    return check_done("test_pool");
}

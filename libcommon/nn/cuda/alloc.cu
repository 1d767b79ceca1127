/* alloc.cu - the caching device allocator behind the backend's alloc/free: size classes with four
 * steps per power of two (at most 25% rounding), one free list per class, and a hash table of
 * live blocks (pointer -> class). Freed blocks are kept for reuse, so a training or recover loop
 * stops calling cudaMalloc after its first step; when cudaMalloc fails, the cached blocks are
 * released and the call retried once. Reuse needs no event because the backend runs on one
 * stream. Requests of LARGE_MIN and more (the engine's arena chunk, which holds a whole step,
 * and big parameters such as a batch's pixels and their optimizer state) are not rounded to a
 * class, which could add a quarter: they get their size in 2 MiB units and are not cached;
 * they come and go once per stage or less. Host-side bookkeeping only: not thread-safe (one
 * context per thread). */
#include "libcommon/nn/cuda/cuda.h"

#include <stdlib.h>
#include <string.h>

enum { NCLASS = 4 * 48, MIN_SHIFT = 8 };
#define LARGE_MIN ((size_t)64 << 20)
#define LARGE_UNIT ((size_t)2 << 20)

typedef struct Block {
    void *p;
    struct Block *next;
} Block;

typedef struct {
    void *p;          /* NULL: empty slot; TOMB: deleted */
    int cls;          /* a class, or NCLASS + units of LARGE_UNIT for a large block */
} Slot;

struct CuPool {
    Block *free_list[NCLASS];
    Block *spare;            /* recycled list nodes */
    Slot *live;
    size_t cap, nlive, nused;  /* nused: live + tombstones */
    size_t reserved, peak;     /* bytes obtained from cudaMalloc (in use or cached) */
};

static void *const TOMB = (void *)1;

/* Class of a request and its rounded size: [2^k, 2^(k+1)) is cut in four steps. */
static int size_class(size_t bytes, size_t *rounded)
{
    if (bytes < ((size_t)1 << MIN_SHIFT)) bytes = (size_t)1 << MIN_SHIFT;
    int k = 63 - __builtin_clzll((unsigned long long)bytes);
    size_t step = (size_t)1 << (k - 2);
    size_t r = (bytes + step - 1) / step * step;
    if (r == ((size_t)1 << (k + 1))) k++;
    *rounded = r;
    return (k - MIN_SHIFT) * 4 + (int)((r >> (k - 2)) - 4);
}

static size_t class_size(int cls)
{
    int k = cls / 4 + MIN_SHIFT;
    return ((size_t)(4 + cls % 4)) << (k - 2);
}

static size_t hash_ptr(const void *p, size_t cap)
{
    return (size_t)(((uintptr_t)p >> 8) * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

static void live_put(CuPool *p, void *ptr, int cls);

static void live_grow(CuPool *p)
{
    Slot *old = p->live;
    size_t oldcap = p->cap;
    p->cap = p->cap ? 2 * p->cap : 1024;
    p->live = (Slot *)dd_calloc(p->cap, sizeof *p->live);
    p->nlive = p->nused = 0;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].p && old[i].p != TOMB) live_put(p, old[i].p, old[i].cls);
    free(old);
}

static void live_put(CuPool *p, void *ptr, int cls)
{
    if (2 * (p->nused + 1) > p->cap) live_grow(p);
    size_t i = hash_ptr(ptr, p->cap);
    while (p->live[i].p && p->live[i].p != TOMB) i = (i + 1) & (p->cap - 1);
    if (!p->live[i].p) p->nused++;
    p->live[i].p = ptr;
    p->live[i].cls = cls;
    p->nlive++;
}

/* Removes ptr; its class, or -1 when ptr is not a live block of this pool. */
static int live_take(CuPool *p, void *ptr)
{
    if (!p->cap) return -1;
    for (size_t i = hash_ptr(ptr, p->cap);; i = (i + 1) & (p->cap - 1)) {
        if (!p->live[i].p) return -1;
        if (p->live[i].p == ptr) {
            p->live[i].p = TOMB;
            p->nlive--;
            return p->live[i].cls;
        }
    }
}

CuPool *cu_pool_new(void) { return (CuPool *)dd_calloc(1, sizeof(CuPool)); }

/* Returns every cached block to the driver. A failing cudaFree (an earlier kernel's error
 * surfacing) ends the program with exit status 3, as any other failing call. */
static void release_cached(CuPool *p)
{
    for (int c = 0; c < NCLASS; c++)
        while (p->free_list[c]) {
            Block *b = p->free_list[c];
            p->free_list[c] = b->next;
            CU_CHECK(cudaFree(b->p));
            p->reserved -= class_size(c);
            b->next = p->spare;
            p->spare = b;
        }
}

void *cu_pool_alloc(CuPool *p, size_t bytes)
{
    size_t r;
    int cls;
    if (bytes >= LARGE_MIN) {
        size_t units = (bytes + LARGE_UNIT - 1) / LARGE_UNIT;
        if (units > (size_t)(INT32_MAX - NCLASS)) {
            dd_err("cuda: allocation of %zu bytes is too large", bytes);
            return NULL;
        }
        r = units * LARGE_UNIT;
        cls = NCLASS + (int)units;
    } else {
        cls = size_class(bytes, &r);
    }
    void *ptr = NULL;
    if (cls < NCLASS && p->free_list[cls]) {
        Block *b = p->free_list[cls];
        p->free_list[cls] = b->next;
        ptr = b->p;
        b->next = p->spare;
        p->spare = b;
    } else {
        if (cudaMalloc(&ptr, r) != cudaSuccess) {
            (void)cudaGetLastError();
            release_cached(p);
            if (cudaMalloc(&ptr, r) != cudaSuccess) {
                (void)cudaGetLastError();
                size_t fr = 0, tot = 0;
                cudaMemGetInfo(&fr, &tot);
                dd_err("cuda: cudaMalloc(%zu): out of device memory (%zu MiB free of %zu, %zu MiB "
                       "held by ddpipe)", r, fr >> 20, tot >> 20, p->reserved >> 20);
                return NULL;
            }
        }
        p->reserved += r;
        if (p->reserved > p->peak) p->peak = p->reserved;
    }
    live_put(p, ptr, cls);
    return ptr;
}

void cu_pool_free(CuPool *p, void *ptr)
{
    int cls = live_take(p, ptr);
    if (cls < 0) dd_die(DD_EXIT_DEVICE, "cuda: free of %p, which this backend did not allocate", ptr);
    if (cls > NCLASS) { /* large: back to the driver */
        CU_CHECK(cudaFree(ptr));
        p->reserved -= (size_t)(cls - NCLASS) * LARGE_UNIT;
        return;
    }
    Block *b = p->spare;
    if (b) p->spare = b->next;
    else b = (Block *)dd_malloc(sizeof *b);
    b->p = ptr;
    b->next = p->free_list[cls];
    p->free_list[cls] = b;
}

size_t cu_pool_peak(const CuPool *p) { return p->peak; }

void cu_pool_trim(CuPool *p) { release_cached(p); }

void cu_pool_destroy(CuPool *p)
{
    release_cached(p);
    for (size_t i = 0; i < p->cap; i++)
        if (p->live[i].p && p->live[i].p != TOMB) cudaFree(p->live[i].p);
    for (Block *b = p->spare, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    free(p->live);
    free(p);
}

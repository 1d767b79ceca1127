/* alloc.c - allocation that never returns NULL, and overflow-checked size arithmetic. */
#include "libcommon/base/base.h"

#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    dd_die(DD_EXIT_DATA, "out of memory (asked for %zu bytes)", n);
}

void *dd_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *dd_calloc(size_t n, size_t size)
{
    size_t t;
    if (dd_mul_ok(n, size, &t)) dd_die(DD_EXIT_DATA, "allocation size overflows (%zu x %zu)", n, size);
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(t);
    return p;
}

void *dd_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *dd_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dd_malloc(n);
    memcpy(d, s, n);
    return d;
}

int dd_mul_ok(size_t a, size_t b, size_t *r)
{
    if (a && b > SIZE_MAX / a) return -1;
    *r = a * b;
    return 0;
}

int dd_add_ok(size_t a, size_t b, size_t *r)
{
    if (b > SIZE_MAX - a) return -1;
    *r = a + b;
    return 0;
}

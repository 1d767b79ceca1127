/* check.h - the unit tests' few macros. A test binary exits 0 when every CHECK held, 1 otherwise,
 * and 77 (SKIP) through CHECK_SKIP with a reason on its last output line. */
#ifndef DD_CHECK_H
#define DD_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);    \
            check_failures++;                                                           \
        }                                                                               \
    } while (0)

#define CHECK_MSG(cond, ...)                                                            \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                        \
            check_failures++;                                                           \
        }                                                                               \
    } while (0)

/* |a - b| <= atol + rtol * |b| */
#define CHECK_CLOSE(a, b, atol, rtol)                                                           \
    do {                                                                                        \
        double a_ = (a), b_ = (b);                                                              \
        if (!(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_))) {                                   \
            fprintf(stderr, "%s:%d: CHECK_CLOSE failed: %s = %.9g vs %s = %.9g\n", __FILE__,    \
                    __LINE__, #a, a_, #b, b_);                                                  \
            check_failures++;                                                                   \
        }                                                                                       \
    } while (0)

#define CHECK_SKIP(...)                 \
    do {                                \
        printf("SKIP: " __VA_ARGS__);   \
        printf("\n");                   \
        exit(77);                       \
    } while (0)

static inline int check_done(const char *name)
{
    if (check_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif

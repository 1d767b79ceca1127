/* load.c - the CUDA backend, loaded when asked for: libddpipe-cuda.so (libcommon/nn/cuda/, built with nvcc) is
 * opened by the first nn_cuda_backend_new, so a program links no CUDA library: on the CPU it starts without
 * them (in 5 ms, not 60, and 150 MB smaller), on a machine that has none, and under a tight ulimit -v. The
 * library's few needs from ours (dd_err, dd_malloc, ...) resolve against the program (linked -rdynamic).
 *
 * Where it is looked for, first found first: $DD_CUDA_LIB; beside the program, ../lib/libddpipe-cuda.so
 * (build/bin, build/bench and build/tests of the build tree) and ../lib/ddpipe/libddpipe-cuda.so (make install's
 * PREFIX/bin); the build tree's own, by its absolute path (DD_CUDA_SO_BUILD, for programs elsewhere). */
#include "libcommon/base/base.h"
#include "libcommon/nn/backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DD_CUDA_SO_BUILD
#define DD_CUDA_SO_BUILD ""
#endif

static void *so;                                     /* dlopen's handle once loaded */
static NnBackend *(*so_new)(int);
static void (*so_layouts)(NnBackend *, int *, int *);

/* The library's path into buf (first candidate that exists), or 0 (buf holds what was tried, for the error). */
static int find_so(char *buf, size_t n)
{
    const char *env = getenv("DD_CUDA_LIB");
    if (env && *env) return snprintf(buf, n, "%s", env), 1;
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        static const char *const rel[] = {"/../lib/libddpipe-cuda.so", "/../lib/ddpipe/libddpipe-cuda.so"};
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++)
            if (snprintf(buf, n, "%s%s", exe, rel[i]) < (int)n && access(buf, F_OK) == 0) return 1;
    }
    if (*DD_CUDA_SO_BUILD && access(DD_CUDA_SO_BUILD, F_OK) == 0) return snprintf(buf, n, "%s", DD_CUDA_SO_BUILD), 1;
    snprintf(buf, n, "%s/../lib/libddpipe-cuda.so", k > 0 ? exe : "(this program's directory)");
    return 0;
}

static int load(void)
{
    if (so) return 0;
    char path[PATH_MAX + 64];
    if (!find_so(path, sizeof path))
        return dd_err_device("cuda: the CUDA backend %s is not there (nor in DD_CUDA_LIB): -d cpu needs none", path);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return dd_err_device("cuda: cannot load the CUDA backend: %s", dlerror());
    so_new = (NnBackend * (*)(int)) dlsym(h, "dd_cuda_so_backend_new");
    so_layouts = (void (*)(NnBackend *, int *, int *))dlsym(h, "dd_cuda_so_conv_layouts");
    if (!so_new || !so_layouts) {
        dd_err_device("cuda: %s is not this build's CUDA backend (no dd_cuda_so_backend_new)", path);
        dlclose(h);
        return -1;
    }
    so = h;
    return 0;
}

NnBackend *nn_cuda_backend_new(int threads)
{
    return load() < 0 ? NULL : so_new(threads);
}

void nn_cuda_conv_layouts(NnBackend *be, int *nhwc, int *nchw)
{
    *nhwc = *nchw = 0;
    if (be && be->device == DD_CUDA && load() == 0) so_layouts(be, nhwc, nchw);
}

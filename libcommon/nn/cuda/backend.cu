/* backend.cu - the CUDA backend: device choice, stream and library handles, memory slots (through
 * the caching allocator), scratch buffers, the checked-call failure path, and the op table
 * assembled from the kernel groups of this folder. */
#include "libcommon/nn/cuda/cuda.h"

#include <cuda_profiler_api.h>
#include <stdlib.h>
#include <string.h>

void cu_fail(const char *lib, const char *what, const char *call, const char *file, int line)
{
    dd_die(DD_EXIT_DEVICE, "%s: %s: %s (%s:%d)", lib, call, what, file, line);
}

void *cu_buf(CuImpl *c, CuBuf *b, size_t bytes)
{
    if (bytes <= b->size && b->p) return b->p;
    size_t n = bytes < 4096 ? 4096 : bytes + bytes / 4;
    if (b->p) {
        CU_CHECK(cudaStreamSynchronize(c->stream));
        CU_CHECK(cudaFree(b->p));
        b->p = NULL;
        b->size = 0;
    }
    if (cudaMalloc(&b->p, n) != cudaSuccess) {
        (void)cudaGetLastError();
        dd_die(DD_EXIT_DEVICE, "cuda: cudaMalloc(%zu) for a scratch buffer: out of device memory", n);
    }
    b->size = n;
    return b->p;
}

void *cu_tmp(CuImpl *c, CuBuf *b, size_t bytes)
{
    NnBackend *be = c->be;
    if (!be->tmp_get || c->own_tmp) return cu_buf(c, b, bytes);
    void *p = be->tmp_get(be->tmp_ctx, bytes);
    if (!p) dd_die(DD_EXIT_DEVICE, "cuda: a temporary of %zu bytes: out of device memory", bytes);
    return p;
}

void cu_tmp_put(CuImpl *c, void *p, size_t bytes)
{
    NnBackend *be = c->be;
    if (be->tmp_put && p && !c->own_tmp) be->tmp_put(be->tmp_ctx, p, bytes);
}

void *cu_stage(CuImpl *c, size_t off, const void *host, size_t bytes)
{
    char *d = (char *)cu_buf(c, &c->stage, off + bytes) + off;
    /* From pageable memory: returns once the data is staged, so the host buffer may change. */
    CU_CHECK(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, c->stream));
    return d;
}

/* ---- memory slots ---- */

static void *cu_alloc(NnBackend *be, size_t bytes)
{
    CuImpl *c = cu_impl(be);
    void *p = cu_pool_alloc(c->pool, bytes ? bytes : 1);
    if (!p) {
        dd_err_code(DD_EXIT_DEVICE);
        return NULL;
    }
    CU_CHECK(cudaMemsetAsync(p, 0, bytes, c->stream));
    return p;
}

/* The arena's chunks: every use writes or zeroes first, so no memset. */
static void *cu_alloc_uninit(NnBackend *be, size_t bytes)
{
    void *p = cu_pool_alloc(cu_impl(be)->pool, bytes ? bytes : 1);
    if (!p) dd_err_code(DD_EXIT_DEVICE);
    return p;
}

static void cu_free(NnBackend *be, void *p)
{
    if (p) cu_pool_free(cu_impl(be)->pool, p);
}

/* The arena's chunks are freed after a step that outgrew them and one chunk of the peak size is
 * taken in their place: the freed ones, cached, would double the memory held. */
static void cu_trim(NnBackend *be)
{
    CuImpl *c = cu_impl(be);
    CU_CHECK(cudaStreamSynchronize(c->stream));
    cu_pool_trim(c->pool);
}

static void cu_profile(NnBackend *be, int on)
{
    CU_CHECK(cudaStreamSynchronize(cu_impl(be)->stream));
    CU_CHECK(on ? cudaProfilerStart() : cudaProfilerStop());
}

static void cu_sync(NnBackend *be) { CU_CHECK(cudaStreamSynchronize(cu_impl(be)->stream)); }

static void cu_zero(NnBackend *be, void *p, size_t bytes)
{
    CU_CHECK(cudaMemsetAsync(p, 0, bytes, cu_impl(be)->stream));
}

static void cu_upload(NnBackend *be, void *dst, const void *host_src, size_t bytes)
{
    CU_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, cu_impl(be)->stream));
}

static void cu_download(NnBackend *be, void *host_dst, const void *src, size_t bytes)
{
    CuImpl *c = cu_impl(be);
    CU_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CU_CHECK(cudaStreamSynchronize(c->stream));
}

static void cu_copy(NnBackend *be, void *dst, const void *src, size_t bytes)
{
    if (dst != src)
        CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu_impl(be)->stream));
}

static int cu_set_precision(NnBackend *be, int precision)
{
    if (precision < 0 || precision > 2) {
        return dd_err_device("cuda: unknown precision %d", precision);
    }
    cu_impl(be)->precision = precision;
    return 0;
}

static void free_buf(CuBuf *b)
{
    if (b->p) cudaFree(b->p);
    b->p = NULL;
    b->size = 0;
}

/* Frees whatever exists of a (possibly half-built) backend; errors are ignored (nothing more
 * can be done about them at teardown), except that the pool's cudaFree calls are checked
 * (release_cached: exit 3, since a failing one reports an earlier kernel's error). */
static void cu_destroy(NnBackend *be)
{
    CuImpl *c = cu_impl(be);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (dd_env_on("DD_CUDA_MEMSTATS") && c->pool) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        fprintf(stderr, "cuda: peak allocator memory %.1f MiB, scratch %.1f MiB, cudnn workspace "
                "%.1f MiB, device in use now %.1f MiB\n", cu_pool_peak(c->pool) / 1048576.0,
                (c->scratch.size + c->stage.size + c->cast.size) / 1048576.0,
                c->workspace.size / 1048576.0, (double)(tot - fr) / 1048576.0);
    }
    cu_conv_destroy(c);
    free_buf(&c->scratch);
    free_buf(&c->stage);
    free_buf(&c->workspace);
    free_buf(&c->cast);
    if (c->pool) cu_pool_destroy(c->pool);
    if (c->dnn) cudnnDestroy(c->dnn);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
    free(be);
}

/* Records "cuda: CALL: message" and the device exit class; used only while building. */
static int init_err(const char *call, const char *msg)
{
    return dd_err_device("cuda: %s: %s", call, msg);
}

#define INIT_RT(call)                                                                          \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            init_err(#call, cudaGetErrorString(e_));                                           \
            goto fail;                                                                         \
        }                                                                                      \
    } while (0)

/* The library's two entry points (libcommon/nn/cudaload/load.c finds them by name; other names than the
 * program's own nn_cuda_*, which would interpose) */
extern "C" void dd_cuda_so_conv_layouts(NnBackend *be, int *nhwc, int *nchw)
{
    const int cuda = be && be->device == DD_CUDA;
    *nhwc = cuda ? cu_impl(be)->nhwc_plans : 0;
    *nchw = cuda ? cu_impl(be)->nhwc_fell_back : 0;
}

extern "C" NnBackend *dd_cuda_so_backend_new(int threads)
{
    (void)threads;              /* host threads: the CUDA backend does its work on the device */
    NnBackend *be = (NnBackend *)dd_calloc(1, sizeof *be);
    CuImpl *c = (CuImpl *)dd_calloc(1, sizeof *c);
    be->impl = c;
    c->be = be;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        init_err("cudaGetDeviceCount", e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device");
        (void)cudaGetLastError();
        cu_destroy(be);
        return NULL;
    }
    {
        const char *env = getenv("CUDA_DEVICE"); /* which device; default 0; not a number: exit 2 */
        c->dev = env && *env ? (int)dd_opt_long("CUDA_DEVICE", env, 0, 1023) : 0;
        c->own_tmp = dd_env_on("DD_CUDA_OWN_TMP");
        c->nhwc = dd_env_on("DD_CUDA_NHWC");
        INIT_RT(cudaSetDevice(c->dev));
        INIT_RT(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
        cublasStatus_t bs = cublasCreate(&c->blas);
        if (bs != CUBLAS_STATUS_SUCCESS) {
            init_err("cublasCreate", cublasGetStatusString(bs));
            goto fail;
        }
        /* fp32 GEMMs stay fp32 (no TF32): CUDA-vs-CPU tests are tight. */
        if ((bs = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS ||
            (bs = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS) {
            init_err("cublasSetMathMode/cublasSetStream", cublasGetStatusString(bs));
            goto fail;
        }
        cudnnStatus_t ds = cudnnCreate(&c->dnn);
        if (ds != CUDNN_STATUS_SUCCESS) {
            init_err("cudnnCreate", cudnnGetErrorString(ds));
            goto fail;
        }
        if ((ds = cudnnSetStream(c->dnn, c->stream)) != CUDNN_STATUS_SUCCESS) {
            init_err("cudnnSetStream", cudnnGetErrorString(ds));
            goto fail;
        }
        c->pool = cu_pool_new();
    }
    be->name = "cuda";
    be->device = DD_CUDA;
    be->destroy = cu_destroy;
    be->alloc = cu_alloc;
    be->alloc_uninit = cu_alloc_uninit;
    be->free = cu_free;
    be->zero = cu_zero;
    be->upload = cu_upload;
    be->download = cu_download;
    be->copy = cu_copy;
    be->set_precision = cu_set_precision;
    be->trim = cu_trim;
    be->profile = cu_profile;
    be->sync = cu_sync;
    cu_elem_init(be);
    cu_layout_init(be);
    cu_conv_init(be);
    cu_norm_init(be);
    cu_pool_ops_init(be);
    cu_loss_init(be);
    cu_optim_init(be);
    return be;
fail:
    (void)cudaGetLastError();
    cu_destroy(be);
    return NULL;
}

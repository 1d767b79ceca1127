/* backend.c - the CUDA backend's stand-in for builds without CUDA: asking for it fails cleanly. */
#include "libcommon/base/base.h"
#include "libcommon/nn/backend.h"

void nn_cuda_conv_layouts(NnBackend *be, int *nhwc, int *nchw)
{
    (void)be;
    *nhwc = *nchw = 0;
}

NnBackend *nn_cuda_backend_new(int threads)
{
    (void)threads;
    dd_err_device("cuda: built without CUDA (rebuild with nvcc available, or use -d cpu)");
    return NULL;
}

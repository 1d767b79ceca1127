/* test_conv_avx512.c - test_conv_paths.c's shapes and paths on the AVX-512 two-tile kernel
 * (conv_direct.c's cpu_dc_kernel2: the direct and Winograd paths, the im2col convolutions' and
 * linear's GEMM, where the CPU has AVX-512F): against float64 as there, and the direct and
 * Winograd results bit for bit against the AVX2 kernels'. SKIP without AVX-512F. */
#define CONV_PATHS_AVX512 1
#include "test_conv_paths.c"

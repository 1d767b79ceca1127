/* kern.h - what the kern_*.h headers share: DD_HD marks a function that nvcc compiles for the
 * device and the host (the kernels call it; tests/unit/test_cuda_emul.c calls it from plain C,
 * where it is an ordinary static inline function). */
#ifndef DD_NN_CUDA_KERN_H
#define DD_NN_CUDA_KERN_H

#ifdef __CUDACC__
#define DD_HD __host__ __device__
#else
#define DD_HD
#endif

#endif

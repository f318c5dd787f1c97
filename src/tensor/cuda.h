// The CUDA backend's C interface. Built only when nvcc was found (TWIN_HAVE_CUDA in
// twin_config.h); callers check that first, then tw_cuda_device_count() at run time.
#ifndef TW_TENSOR_CUDA_H
#define TW_TENSOR_CUDA_H

#include <stddef.h>

// CUDA devices visible to this process (0 when there is no driver or no GPU).
int tw_cuda_device_count(void);
// "NVIDIA H100 80GB HBM3 (sm_90, 81559 MiB)" into buf; -1 when the device cannot be read.
int tw_cuda_device_name(int device, char *buf, size_t cap);
// Runs the trivial kernel: host_out[i] = value * i for i < n, computed on device 0.
int tw_cuda_fill_ramp(float *host_out, float value, size_t n);

#endif

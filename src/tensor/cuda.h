// The CUDA backend's C interface. Built only when nvcc was found (TWIN_HAVE_CUDA in
// twin_config.h); without it tw_backend_cuda_new reports TW_EUNSUPPORTED and
// tw_cuda_device_count returns 0, so callers need no #if.
#ifndef TW_TENSOR_CUDA_H
#define TW_TENSOR_CUDA_H

#include <stddef.h>

#include "tensor/backend.h"

// CUDA devices visible to this process (0 when there is no driver or no GPU).
int tw_cuda_device_count(void);
// "NVIDIA H100 80GB HBM3 (sm_90, 81559 MiB)" into buf; -1 when the device cannot be read.
int tw_cuda_device_name(int device, char *buf, size_t cap);
// Runs the trivial kernel: host_out[i] = value * i for i < n, computed on device 0.
int tw_cuda_fill_ramp(float *host_out, float value, size_t n);

// The CUDA backend on GPU `device`: its ops take f32 activations and weights of any dtype in
// the backend's memory (tw_backend_alloc / tw_backend_tensor_upload), run on one stream in
// order, and report failures at tw_backend_sync. Host arrays the ops take (token ids,
// positions, sequences) are copied to the device by the op. Returns 0, or TW_EUNSUPPORTED
// (no GPU, or twin built without CUDA) / TW_EDEVICE / TW_ENOMEM with a message.
int tw_backend_cuda_new(int device, struct tw_backend **out);

// Measurements for the benchmarks on a CUDA backend's device: the device-to-device copy
// bandwidth in GB/s (bytes read plus bytes written, the best of reps copies of `bytes`), and
// the rate cuBLASLt's bf16 GEMM reaches on random data for y (M, N) = x (M, K) w (N, K)^T in
// TFLOP/s (the median of reps). 0 when the device failed (tw_backend_sync says why).
double tw_cuda_copy_bandwidth(struct tw_backend *be, size_t bytes, int reps);
double tw_cuda_gemm_rate(struct tw_backend *be, int64_t M, int64_t N, int64_t K, int reps);
// Bytes of the backend's GPU in use (by every process; what cudaMemGetInfo leaves out of
// free): twin's pool never gives memory back during a run, so after a workload this less the
// figure before it is the workload's peak, as PyTorch's max_memory_reserved. 0 on failure.
size_t tw_cuda_mem_used(struct tw_backend *be);

#endif

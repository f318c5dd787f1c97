// The CUDA entry points of a build without nvcc: no devices, and the backend unsupported, so
// that callers need no #if (tensor/cuda.h).
#include "twin_config.h"

#if !TWIN_HAVE_CUDA
#include "base/error.h"
#include "tensor/cuda.h"

int tw_cuda_device_count(void)
{
    return 0;
}

int tw_cuda_device_name(int device, char *buf, size_t cap)
{
    (void)device, (void)buf, (void)cap;
    return -1;
}

int tw_cuda_fill_ramp(float *host_out, float value, size_t n)
{
    (void)host_out, (void)value, (void)n;
    return -1;
}

int tw_backend_cuda_new(int device, struct tw_backend **out)
{
    (void)device, (void)out;
    return tw_error_set(TW_EUNSUPPORTED, "cuda: twin was built without CUDA (no nvcc)");
}

double tw_cuda_copy_bandwidth(struct tw_backend *be, size_t bytes, int reps)
{
    (void)be, (void)bytes, (void)reps;
    return 0.0;
}

double tw_cuda_gemm_rate(struct tw_backend *be, int64_t M, int64_t N, int64_t K, int reps)
{
    (void)be, (void)M, (void)N, (void)K, (void)reps;
    return 0.0;
}

size_t tw_cuda_mem_used(struct tw_backend *be)
{
    (void)be;
    return 0;
}
#else
typedef int tw_cuda_none_unused; // ISO C wants a translation unit to declare something
#endif

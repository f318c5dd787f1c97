// The CUDA backend's first piece: device discovery and a trivial kernel (fill) that proves
// the build path (nvcc, sm_90a + PTX, cudart) from the start. The real backend grows here.
#include "tensor/cuda/kernels.cuh"

extern "C" {
#include "tensor/cuda.h"
}

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static __global__ void fill_kernel(float *out, float value, size_t n)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        out[i] = value * (float)i;
}

static bool pdl_probe(void)
{
    int dev = 0, major = 0;
    const char *env = getenv("TWIN_PDL");
    bool ok =
        cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess;
    cudaGetLastError();
    return ok && major >= 9 && !(env && strcmp(env, "0") == 0);
}

bool twc_pdl_on(void)
{
    static const bool on = pdl_probe(); // once: every GPU of a machine is of one kind
    return on;
}

static cudaError_t sm_probe(int *n_sm)
{
    int dev = 0;
    cudaError_t err = cudaGetDevice(&dev);
    return err != cudaSuccess ? err
                              : cudaDeviceGetAttribute(n_sm, cudaDevAttrMultiProcessorCount, dev);
}

cudaError_t twc_sm_count(int *n_sm)
{
    // once, as twc_pdl_on: the launches that size their grids by it (attention every layer of
    // a decode step, the training backward) then ask no driver call
    static int n = 0;
    static const cudaError_t err = sm_probe(&n);
    if (err == cudaSuccess)
        *n_sm = n;
    return err;
}

extern "C" int tw_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no device" error
        return 0;
    }
    return n;
}

extern "C" int tw_cuda_device_name(int device, char *buf, size_t cap)
{
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    snprintf(buf, cap, "%s (sm_%d%d, %zu MiB)", prop.name, prop.major, prop.minor,
             prop.totalGlobalMem >> 20);
    return 0;
}

extern "C" int tw_cuda_fill_ramp(float *host_out, float value, size_t n)
{
    float *dev = NULL;
    size_t bytes = n * sizeof(float);
    if (cudaMalloc(&dev, bytes) != cudaSuccess)
        return -1;
    unsigned threads = 256;
    unsigned blocks = (unsigned)((n + threads - 1) / threads);
    fill_kernel<<<blocks, threads>>>(dev, value, n);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess)
        err = cudaMemcpy(host_out, dev, bytes, cudaMemcpyDeviceToHost);
    cudaFree(dev);
    return err == cudaSuccess ? 0 : -1;
}

// The NCCL transport of tensor/comm.h (comm_int.h's hooks): one communicator a worker, on
// the process's GPU 0 (the launcher leaves each worker one visible GPU), collectives enqueued
// on the CUDA backend's stream so that they fall in order with the ops around them.
#include "twin_config.h"

#if TWIN_HAVE_NCCL
#include <nccl.h>
#include <string.h>

#include "tensor/cuda/kernels.cuh"

extern "C" {
#include "base/error.h"
#include "tensor/comm_int.h"
}

static_assert(TW_COMM_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "NCCL's unique id size");

static int nccl_error(const struct tw_comm *c, const char *what, ncclResult_t r)
{
    return tw_error_set(TW_EDEVICE, "rank %d of %d: NCCL %s: %s", c->rank, c->size, what,
                        ncclGetErrorString(r));
}

extern "C" int twc_nccl_unique_id(unsigned char id[TW_COMM_ID_BYTES])
{
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess)
        return tw_error_set(TW_EDEVICE, "NCCL: no unique id: %s", ncclGetErrorString(r));
    memcpy(id, u.internal, TW_COMM_ID_BYTES);
    return 0;
}

extern "C" int twc_nccl_init(struct tw_comm *c, const unsigned char id[TW_COMM_ID_BYTES])
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n < 1)
        return tw_error_set(TW_EUNSUPPORTED, "rank %d of %d: no GPU (CUDA_VISIBLE_DEVICES=%s): %s",
                            c->rank, c->size, getenv("CUDA_VISIBLE_DEVICES"),
                            e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
    if ((e = cudaSetDevice(0)) != cudaSuccess)
        return tw_error_set(TW_EDEVICE, "rank %d: %s", c->rank, cudaGetErrorString(e));
    ncclUniqueId u;
    memcpy(u.internal, id, TW_COMM_ID_BYTES);
    ncclComm_t comm;
    ncclResult_t r = ncclCommInitRank(&comm, c->size, u, c->rank);
    if (r != ncclSuccess)
        return nccl_error(c, "init", r);
    c->nccl = comm;
    return 0;
}

extern "C" void twc_nccl_free(struct tw_comm *c)
{
    if (c->dscratch)
        cudaFree(c->dscratch);
    if (c->nccl)
        ncclCommDestroy((ncclComm_t)c->nccl);
    c->nccl = NULL, c->dscratch = NULL;
}

extern "C" int twc_nccl_sum(struct tw_comm *c, struct tw_backend *be, float *const *bufs,
                            const size_t *ns, size_t count)
{
    if (twc_failed(be))
        return 0; // tw_backend_sync reports the first failure
    cudaStream_t s = twc_stream(be);
    ncclResult_t r = ncclGroupStart();
    for (size_t i = 0; r == ncclSuccess && i < count; i++)
        if (ns[i] > 0)
            r = ncclAllReduce(bufs[i], bufs[i], ns[i], ncclFloat32, ncclSum, (ncclComm_t)c->nccl,
                              s);
    ncclResult_t g = ncclGroupEnd();
    if (r == ncclSuccess)
        r = g;
    if (r != ncclSuccess) {
        twc_fail(be, "NCCL all-reduce", ncclGetErrorString(r));
        return nccl_error(c, "all-reduce", r);
    }
    return 0;
}

extern "C" int twc_nccl_sum_host(struct tw_comm *c, struct tw_backend *be, double *v, size_t n)
{
    if (n == 0)
        return 0;
    cudaStream_t s = twc_stream(be);
    if (c->dscratch_n < n) {
        if (c->dscratch)
            cudaFree(c->dscratch);
        c->dscratch = NULL, c->dscratch_n = 0;
        cudaError_t e = cudaMalloc(&c->dscratch, n * sizeof(double));
        if (e != cudaSuccess)
            return tw_error_set(TW_EDEVICE, "rank %d: %s", c->rank, cudaGetErrorString(e));
        c->dscratch_n = n;
    }
    cudaError_t e = cudaMemcpyAsync(c->dscratch, v, n * sizeof(double), cudaMemcpyHostToDevice, s);
    if (e != cudaSuccess)
        return tw_error_set(TW_EDEVICE, "rank %d: %s", c->rank, cudaGetErrorString(e));
    ncclResult_t r =
        ncclAllReduce(c->dscratch, c->dscratch, n, ncclFloat64, ncclSum, (ncclComm_t)c->nccl, s);
    if (r != ncclSuccess)
        return nccl_error(c, "all-reduce", r);
    if ((e = cudaMemcpyAsync(v, c->dscratch, n * sizeof(double), cudaMemcpyDeviceToHost, s)) !=
            cudaSuccess ||
        (e = cudaStreamSynchronize(s)) != cudaSuccess)
        return tw_error_set(TW_EDEVICE, "rank %d: %s", c->rank, cudaGetErrorString(e));
    return 0;
}
#else
typedef int tw_comm_cuda_unused; // ISO C++ is fine with an empty unit; kept for symmetry
#endif

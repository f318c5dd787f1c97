// Data parallelism: a group of worker processes, one per GPU, and the collectives that keep
// their copies of a model in step. tw_comm_launch forks the workers (rank r sees only the
// r-th GPU of those visible, through CUDA_VISIBLE_DEVICES) and waits for them; each runs the
// same function with its communicator. Two transports:
//   TW_COMM_NCCL  NVIDIA's NCCL on the workers' GPUs (buffers in CUDA backend memory); NVLink
//                 multicast (NVLS) stays off unless NCCL_NVLS_ENABLE is set by the user;
//   TW_COMM_HOST  host shared memory between the processes (buffers in CPU backend memory): a
//                 CPU backend's data parallelism, which the tests use to check the trainer's
//                 split of the work without a GPU.
// A sum leaves the very same bits on every rank (NCCL's ring hands each reduced chunk on;
// the host transport adds the ranks' values in rank order on every rank), so replicas that
// apply the same update stay identical.
#ifndef TW_TENSOR_COMM_H
#define TW_TENSOR_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor/backend.h"

enum tw_comm_kind { TW_COMM_NCCL, TW_COMM_HOST };

typedef struct tw_comm tw_comm;

// Whether this build has the NCCL transport (CUDA and NCCL found at build time).
bool tw_comm_nccl_available(void);

// Runs fn(comm, ud) in n worker processes (2 <= n <= 64) and waits for them. Call it before
// this process touches CUDA or runs an OpenMP region (neither a CUDA context nor GNU OpenMP's
// threads survive fork). Each worker's stdout and
// stderr are the caller's; a worker's fn returning non-zero ends its process with that error,
// the other workers are stopped (a worker blocked in a collective would wait forever; they
// get $TWIN_COMM_GRACE seconds, default 30, to end by themselves first, none after a crash;
// a TW_ECANCELED stop is taken to be agreed by all and waited for), and
// tw_comm_launch returns the code and message of the lowest-ranked worker that failed by
// itself. Returns 0 when every worker returned 0; TW_EUNSUPPORTED (no NCCL in this build),
// TW_EINVAL (n, or CUDA_VISIBLE_DEVICES lists fewer than n GPUs), TW_EIO (fork, pipes,
// shared memory).
int tw_comm_launch(int n, enum tw_comm_kind kind, int (*fn)(tw_comm *c, void *ud), void *ud);

int tw_comm_rank(const tw_comm *c);
int tw_comm_size(const tw_comm *c);

// Sums buffers across the ranks, in place: count buffers of ns[i] floats at bufs[i], in the
// memory of be (a CUDA backend for NCCL, a CPU one for the host transport); every rank passes
// the same shapes. Enqueued on be's stream for NCCL (tw_backend_sync reports a failure there);
// 0, or TW_EDEVICE / TW_EIO with a message.
int tw_comm_sum(tw_comm *c, struct tw_backend *be, float *const *bufs, const size_t *ns,
                size_t count);
// Sums n doubles of host memory across the ranks, in place (a step's loss, token counts, a
// stop flag), waiting for the result. 0, or TW_EDEVICE / TW_EIO.
int tw_comm_sum_host(tw_comm *c, struct tw_backend *be, double *v, size_t n);

#endif

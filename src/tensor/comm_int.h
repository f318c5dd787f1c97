// Shared between the launcher and host transport (comm.c) and the NCCL transport
// (cuda/comm.cu); not part of the public interface (tensor/comm.h).
#ifndef TW_TENSOR_COMM_INT_H
#define TW_TENSOR_COMM_INT_H

#include <stddef.h>

#include "tensor/comm.h"

#define TW_COMM_ID_BYTES 128 // NCCL_UNIQUE_ID_BYTES

struct tw_comm_shm; // comm.c: the host transport's shared pages

struct tw_comm {
    int rank, size;
    enum tw_comm_kind kind;
    struct tw_comm_shm *shm; // TW_COMM_HOST
    void *nccl;              // TW_COMM_NCCL: the ncclComm_t
    double *dscratch;        // TW_COMM_NCCL: device doubles for tw_comm_sum_host
    size_t dscratch_n;
};

// The NCCL transport (cuda/comm.cu; without NCCL, comm.c's versions report TW_EUNSUPPORTED).
// A new unique id (rank 0 makes it, the others are sent it); the communicator of rank
// c->rank on this process's GPU 0; its release; the collectives of tensor/comm.h.
int twc_nccl_unique_id(unsigned char id[TW_COMM_ID_BYTES]);
int twc_nccl_init(struct tw_comm *c, const unsigned char id[TW_COMM_ID_BYTES]);
void twc_nccl_free(struct tw_comm *c);
int twc_nccl_sum(struct tw_comm *c, struct tw_backend *be, float *const *bufs, const size_t *ns,
                 size_t count);
int twc_nccl_sum_host(struct tw_comm *c, struct tw_backend *be, double *v, size_t n);

#endif

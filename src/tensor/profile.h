// A profiling backend: it wraps another backend, forwards every op to it and adds up, per op,
// the calls, the time the caller waited and (matmuls, split into one activation row and
// several) the bytes of weights read; the training ops (tensor/grad.h) too. bench/infer_cpu
// --profile prints the breakdown of a decoded token with it, bench/train --profile that of a
// training step. Not thread-safe: one context drives it.
#ifndef TW_TENSOR_PROFILE_H
#define TW_TENSOR_PROFILE_H

#include <stdbool.h>

#include "tensor/backend.h"

struct tw_op_stat {
    const char *name;
    double calls, seconds, bytes;
};

// A profiling backend over inner (which the caller keeps and frees after it). Returns 0 or
// TW_ENOMEM. Free it with tw_backend_free.
int tw_backend_profile_new(struct tw_backend *inner, struct tw_backend **out);
// The counts of op number i (0, 1, ...): false past the last op or if be is not a profiling
// backend.
bool tw_backend_profile_stat(struct tw_backend *be, int i, struct tw_op_stat *st);
// Zeroes the counts.
void tw_backend_profile_reset(struct tw_backend *be);

#endif

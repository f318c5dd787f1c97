// Shared between the CPU backends (cpu_ref.c, cpu.c); not part of the public interface.
#ifndef TW_TENSOR_CPU_INT_H
#define TW_TENSOR_CPU_INT_H

#include <stdint.h>

#include "tensor/backend.h"

// The keys [lo, hi) that the query at position p sees among S cache rows.
void tw_attn_range(const struct tw_attn *a, int64_t p, int64_t S, int64_t *lo, int64_t *hi);
// The activation functions of tw_act, computed in double.
float tw_act_ref(enum tw_act act, float x);

#endif

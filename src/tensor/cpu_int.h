// Shared between the CPU backends (cpu_ref.c, cpu.c); not part of the public interface.
#ifndef TW_TENSOR_CPU_INT_H
#define TW_TENSOR_CPU_INT_H

#include <stddef.h>
#include <stdint.h>

#include "base/cpu.h"
#include "tensor/backend.h"

// The keys [lo, hi) that the query at position p sees among S cache rows.
void tw_attn_range(const struct tw_attn *a, int64_t p, int64_t S, int64_t *lo, int64_t *hi);
// One query row q (D floats) against keys and values k[j], v[j] (rows kv_stride apart) for
// lo <= j < hi: out = softmax(q k^T * scale) v with an online softmax (cpu_attn.c).
// Where a cache's rows are: row j of the keys at k + tw_kv_off(map, j) (the values alike),
// rows of stride floats, in order (pages NULL) or through a page table (backend.h,
// tw_attn_seq.pages) of pages of 1 << shift rows.
struct tw_kv_map {
    int64_t stride;
    const int32_t *pages;
    int shift;
};

static inline int64_t tw_kv_off(const struct tw_kv_map *m, int64_t j)
{
    if (m->pages)
        j = (int64_t)m->pages[j >> m->shift] << m->shift | (j & (((int64_t)1 << m->shift) - 1));
    return j * m->stride;
}

// out (D floats) = softmax(scale q k_j) v_j over the keys j in [lo, hi) (not empty); lse (NULL:
// not wanted) = the log of that softmax's sum, so that parts of one row's keys can be merged.
typedef void (*tw_attend_fn)(const float *q, const float *k, const float *v,
                             const struct tw_kv_map *map, int64_t lo, int64_t hi, int64_t D,
                             float scale, float *out, float *lse);
// The kernel for isa (lowered to what the CPU has): AVX2 and AVX-512 for heads of 64 and 128.
tw_attend_fn tw_attend_kernel(enum tw_cpu_isa isa);
// G consecutive query heads q (G * D floats) that share the keys and values: one (a kernel
// of tw_attend_kernel(isa)) for each, or a kernel that reads each key once for all G
// (AVX-512, D = 64, G = 2..4). out: G * D floats; lse (NULL or G floats): each head's.
void tw_attend_group(tw_attend_fn one, enum tw_cpu_isa isa, const float *q, const float *k,
                     const float *v, const struct tw_kv_map *map, int64_t lo, int64_t hi,
                     int64_t D, int G, float scale, float *out, float *lse);
// y[i] = silu(g[i]) * u[i] for i < n, in float (cpu_vec.c): within a few float ulps of the
// reference's double; y may alias g or u. The kernel for isa, lowered to what the CPU has.
typedef void (*tw_swiglu_fn)(float *y, const float *g, const float *u, size_t n);
tw_swiglu_fn tw_swiglu_kernel(enum tw_cpu_isa isa);

// x[i] = exp(x[i] - m) for i < n, every x[i] <= m (a softmax's numerators), with cpu_vec.c's
// vector exp (relative error about 1e-7); returns their sum. AVX-512 F; for the decode
// attention's kernels (cpu_attn.c), which call it only where the CPU has AVX-512.
float tw_exp_sub_sum_avx512(float *x, size_t n, float m);

// The activation functions of tw_act, computed in double.
float tw_act_ref(enum tw_act act, float x);

#endif

// The CPU dot-product kernels under twin's matmul: one weight row of any dtype against one to
// eight f32 activation rows, with a scalar, an AVX2 (+FMA, F16C) and an AVX-512 version of
// each, chosen at run time. The numerics are the reference's (tw_vec_dot_row in dtype.h): each
// weight is decoded to the float that tw_dequantize_row gives, multiplied by the f32
// activation and summed in float; activations are never quantized.
#ifndef TW_TENSOR_CPU_DOT_H
#define TW_TENSOR_CPU_DOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/cpu.h"
#include "tensor/dtype.h"

// out[j] = sum_i decode(row)[i] * x[j * ldx + i] for j < nx (1..8), over n elements (a
// multiple of the dtype's block size). The row is read once for all nx activation rows, so a
// tile of nx rows costs one pass over the weights (prefill); nx = 1 is the decode path. row
// needs the alignment dtype.h asks of a row (4 bytes for f32, 2 for the others), x and out
// that of a float; x rows on 64-byte boundaries (x aligned, ldx a multiple of 16) are faster,
// as AVX-512 loads across cache lines cost twice. (A larger nx is done 8 rows at a time.) The
// sums are in float, in an order of the kernel's own: they differ from tw_vec_dot_row's
// (double) by float rounding, a few 1e-7 of sum_i |decode(row)[i] * x[i]|.
typedef void (*tw_dot_fn)(const void *row, const float *x, size_t ldx, int nx, size_t n,
                          float *out);

// The dot kernel of dtype t for isa: the one of the highest ISA up to isa that both has a
// kernel for t and the CPU supports (an isa above the CPU's is lowered to it, so a kernel that
// comes back is safe to call). NULL when t is not a dtype.
tw_dot_fn tw_dot_kernel(enum tw_dtype t, enum tw_cpu_isa isa);

// ---- internal: the per-ISA kernel tables, filled by cpu_dot_avx2.c and cpu_dot_avx512.c
// (compiled with target attributes, so the files build with default flags). Each returns NULL
// for a dtype it has no kernel for, or when the compiler or target cannot build them.
tw_dot_fn tw_dot_kernel_avx2(enum tw_dtype t);
tw_dot_fn tw_dot_kernel_avx512(enum tw_dtype t);

// Software prefetch of the weights TW_DOT_PREFETCH bytes ahead of a kernel's loads, into L2:
// one core keeps too few misses in flight for the hardware prefetchers alone to hold DRAM busy
// (L1's fill buffers are the limit; L2's queue is deeper). On Sapphire Rapids it takes one
// thread's bf16 decode from about 70 % of a plain read to the read's rate (the development
// VM), and the 1B's bf16 decode up by half at one and two threads on the device's host. Past a
// row's end it fetches the next row's lines, which a matmul reads next; a prefetch never faults.
#define TW_DOT_PREFETCH 4096

// Prefetches the lines of [p, p + bytes) moved TW_DOT_PREFETCH ahead.
static inline void tw_dot_prefetch(const void *p, size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch((const char *)p + TW_DOT_PREFETCH + o, 0, 2); // 2: prefetcht1, L2
}

// The int8-activation kernels' prefetch distances in bytes (tw_dot_prefetch_l1): into L1
// `near` ahead, and into L2 `far` ahead when far is not 0. Process-wide, set by
// tw_dot_stream_set (a data race between backends is harmless: it moves only hints).
struct tw_dot_stream {
    uint32_t near, far;
};
extern struct tw_dot_stream tw_dot_stream_cfg;

// Sets the distances for weights that stream from DRAM (from_dram: a forward reads more than
// the last-level cache keeps for it: cpu.c takes a quarter of it) or from the cache.
// TWIN_DOT_PREFETCH="near,far" overrides both.
void tw_dot_stream_set(bool from_dram);

// The same into L1 (prefetcht0): for the int8-activation kernels (cpu_qdot.h), which are
// bound by a core's arithmetic at one to four threads and lose to L2's latency otherwise
// (with L2 hints the device's host ran one thread's q4_0 decode a third slower). Weights that
// stream from DRAM get a second, far prefetch into L2: an L1 miss holds one of a core's ~16
// fill buffers for a DRAM latency, so the near one alone keeps too little in flight.
static inline void tw_dot_prefetch_l1(const void *p, size_t bytes)
{
    const char *c = (const char *)p;
    const size_t near = tw_dot_stream_cfg.near, far = tw_dot_stream_cfg.far;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(c + near + o, 0, 3);
    if (far)
        for (size_t o = 0; o < bytes; o += 64)
            __builtin_prefetch(c + far + o, 0, 2);
}

// The bits of the f32 equal to the fp16 value h, in integer code (the kernels broadcast block
// scales from memory, which costs no vector shuffle); exactly tw_f16_to_f32, which it calls
// for the values that are not normal numbers.
static inline uint32_t tw_dot_f16_bits(uint16_t h)
{
    uint32_t e = h & 0x7C00u;
    if (e != 0 && e != 0x7C00u) // rebias the exponent 15 -> 127
        return ((uint32_t)(h & 0x8000u) << 16) | (((uint32_t)(h & 0x7FFFu) << 13) + 0x38000000u);
    float f = tw_f16_to_f32(h);
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

#endif

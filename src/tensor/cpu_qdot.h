// The integer CPU dot-product kernels of the decode path: an f32 activation row is quantized
// once to int8 blocks of 32 (struct tw_q8_act), and each weight row of a block dtype (q8_0,
// q4_0, q4_K, q6_K) is multiplied against one to eight such rows with integer SIMD (AVX-512
// VNNI vpdpbusd, or AVX2 vpmaddubsw + vpmaddwd), the block scales applied in float. Unlike
// cpu_dot.h the activations are rounded to 8 bits; the result is the exact dot product of the
// decoded weights with the decoded activations up to float rounding.
#ifndef TW_TENSOR_CPU_QDOT_H
#define TW_TENSOR_CPU_QDOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/cpu_dot.h"
#include "tensor/dtype.h"

#define TW_QK8_ACT     32
#define TW_Q8_ACT_TINY 0x1p-100f

// A block of 32 quantized activations: element i is d * qs[i]. 36 bytes, 4-byte aligned.
// The kernels need no stored sums of qs: the offset terms of q4_0 / q6_K (q - 8, q - 32) are
// folded into signed weights and the min term of q4_K is summed in the same SIMD lanes.
struct tw_q8_act {
    float d;
    int8_t qs[TW_QK8_ACT];
};

// Quantizes n floats (a multiple of 32, finite) to n / 32 blocks: for each block, with
// a = max |x|, d = a / 127 and q = rint(x * (127 / a)) (round half to even), all in float;
// d = 0 and q = 0 when a < TW_Q8_ACT_TINY (where 127 / a could overflow). Every ISA gives
// the same bits. The error of an element is at
// most d / 2 (plus one float rounding of x * (127 / a)).
typedef void (*tw_q8_act_fn)(const float *x, size_t n, struct tw_q8_act *out);
// The quantizer for isa (lowered to what the CPU has, as tw_dot_kernel does).
tw_q8_act_fn tw_q8_act_quantizer(enum tw_cpu_isa isa);
// tw_q8_act_quantizer(tw_cpu_isa_best())(x, n, out). Hot loops pick the function once.
void tw_q8_act_quantize(const float *x, size_t n, struct tw_q8_act *out);

// out[j] = sum_i decode(row)[i] * decode(x + j * ldx)[i] for j < nx (1..8), over n elements
// (a multiple of the dtype's block size; ldx counts blocks of 32 between activation rows). The
// weight row is read once for all nx activation rows (a prefill tile). The integer products
// are exact; the block scales are applied and the sums taken in float, so the result differs
// from the exact value by float rounding, about 1e-7 of the sum of the magnitudes of the
// terms (d * sc * q and dmin * m for q4_K, taken separately). row needs the alignment
// dtype.h asks of a row (2 bytes), x that of a float.
typedef void (*tw_qdot_fn)(const void *row, const struct tw_q8_act *x, size_t ldx, int nx,
                           size_t n, float *out);

// The kernel of dtype t for isa: the highest ISA up to isa (lowered to the CPU's) that has
// one. TW_ISA_AVX512 kernels need AVX-512 VNNI besides F, BW and VL; on an AVX-512 CPU
// without VNNI the AVX2 kernels come back. NULL for the float dtypes and for non-dtypes.
tw_qdot_fn tw_qdot_kernel(enum tw_dtype t, enum tw_cpu_isa isa);

#define TW_QDOT_ROWS 4 // weight rows of a tw_qdot_rows_fn call, at most

// out[r] = sum_i decode(w + r * ldw)[i] * decode(x)[i] for r < nw (1..TW_QDOT_ROWS): nw weight
// rows, ldw bytes apart, against one activation row (decoding a token). The activations' side
// of the work (their bytes, scales and sums) is done once for all the rows, and the rows' sums
// are reduced together: where a kernel's arithmetic rather than the memory sets the pace, this
// goes faster than a tw_qdot_fn call per row. (Where the memory does, four streams side by
// side were measured slower than one, which is why not every dtype has one.) Numerics and
// alignment are tw_qdot_fn's with nx = 1.
typedef void (*tw_qdot_rows_fn)(const void *w, size_t ldw, int nw, const struct tw_q8_act *x,
                                size_t n, float *out);

// The multi-row kernel of the ISA whose kernel tw_qdot_kernel(t, isa) gives; NULL where that
// ISA has none for t (the caller then calls the tw_qdot_fn row by row).
tw_qdot_rows_fn tw_qdot_rows_kernel(enum tw_dtype t, enum tw_cpu_isa isa);

// ---- Q4_K, Q4_0 and Q8_0 against one activation row repacked once a matmul (tw_q8k_act_pack), so
// that the activations' side of the work (their sums, the scales' products) is not redone for
// every weight row: per 256 elements, the int8 values of its eight tw_q8_act blocks and v, with
// v[j] = d_j and v[8 + j] = d_j * sum(q_j) for sub-block j (the blocks' numbers, repacked, not
// rounded again). The values lie in the order of Q4_K's nibbles in 64-byte loads: 32-byte slot
// s of qs holds sub-block TW_Q8K_SLOT(s), that is 0, 2, 1, 3, 4, 6, 5, 7 (64 bytes of a Q4_K
// block's qs hold sub-blocks 4h and 4h + 2 in their low nibbles, 4h + 1 and 4h + 3 in their
// high ones). out = tw_qdot_fn's (nx = 1) up to float rounding.
struct tw_q8k_act {
    float v[16];
    int8_t qs[256];
};

// The sub-block in slot s of a tw_q8k_act, and the slot of sub-block s (bits 0 and 1 swapped).
#define TW_Q8K_SLOT(s) (((s)&4) | ((s)&1) << 1 | ((s) >> 1 & 1))

// n (a multiple of 256) activations' blocks x into n / 256 packed groups.
void tw_q8k_act_pack(const struct tw_q8_act *x, size_t n, struct tw_q8k_act *out);

typedef void (*tw_qdot_k_fn)(const void *row, const struct tw_q8k_act *x, size_t n, float *out);

// The kernel of dtype t (Q4_K, Q4_0, Q8_0) for isa: AVX-512 with VNNI; NULL where there is none
// (the caller then uses tw_qdot_fn). n must be a multiple of 256 (Q4_0 and Q8_0 too).
tw_qdot_k_fn tw_qdot_k_kernel(enum tw_dtype t, enum tw_cpu_isa isa);

// ---- Q4_0 against one activation row laid out as the weight rows' bytes (tw_q40m), so that a
// kernel multiplies 64 bytes of a row as they lie in memory, the blocks' scale bytes included,
// instead of unpacking the 18-byte blocks two by two: the activations that meet each byte's low
// and high nibble sit at that byte's place (0 at the scales' places, which so contribute
// nothing), and per 4-byte lane (each holds quants of one block only, as 18 = 2 mod 4 and a
// scale takes 2 bytes) the offset of 8. 32 blocks take 576 bytes, nine stretches of 64: a
// group. out = tw_qdot_fn's (nx = 1) up to float rounding.
#define TW_Q40M_BLOCKS 32
#define TW_Q40M_BYTES  576 // TW_Q40M_BLOCKS q4_0 blocks of 18 bytes
struct tw_q40m {
    int8_t lo[TW_Q40M_BYTES], hi[TW_Q40M_BYTES]; // the activations of bytes' low, high nibbles
    int32_t off[TW_Q40M_BYTES / 4];              // lane l: -8 * the sum of its lo and hi bytes
    float d[TW_Q40M_BLOCKS];                     // the blocks' activation scales (0 past the row)
};

// Groups a row of n elements takes: ceil(n / 32 / TW_Q40M_BLOCKS).
size_t tw_q40m_count(size_t n);

// Blocks [b0, b0 + nb) of an activation row of kb blocks x (x points at block 0) into out (a
// row's tw_q40m_count(32 * kb) groups; the block that ends the row also clears the rest of
// its group). Different blocks write different bytes of out, so threads may pack a row's
// blocks side by side.
void tw_q40m_pack(const struct tw_q8_act *x, size_t b0, size_t nb, size_t kb, struct tw_q40m *out);

// x: 64-byte aligned.
typedef void (*tw_qdot_m_fn)(const void *row, const struct tw_q40m *x, size_t n, float *out);

// The kernel of dtype t (Q4_0) for isa: AVX-512 with VNNI; NULL otherwise.
tw_qdot_m_fn tw_qdot_m_kernel(enum tw_dtype t, enum tw_cpu_isa isa);

// ---- internal: the per-ISA tables of cpu_qdot_avx2.c and cpu_qdot_avx512.c (built with
// target attributes); NULL where the compiler or target cannot build them. (Multi-row kernels
// exist for AVX-512 only.)
tw_qdot_fn tw_qdot_kernel_avx2(enum tw_dtype t);
tw_qdot_fn tw_qdot_kernel_avx512(enum tw_dtype t);
tw_qdot_rows_fn tw_qdot_rows_kernel_avx512(enum tw_dtype t);
// (gfni: the variant with GFNI's affine transform, for a CPU that has it.)
tw_qdot_k_fn tw_qdot_k_kernel_avx512(enum tw_dtype t, bool gfni);
tw_qdot_m_fn tw_qdot_m_kernel_avx512(enum tw_dtype t, bool gfni);
tw_q8_act_fn tw_q8_act_quantizer_avx2(void);
tw_q8_act_fn tw_q8_act_quantizer_avx512(void);

#endif

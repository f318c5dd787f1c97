// The CPU GEMM for bf16 weights: y (T, N) = x (T, K) · w (N, K)^T with AVX-512 BF16
// (VDPBF16PS: pairs of bf16 products summed into f32 lanes), used by the fast backend's
// matmul (cpu.c) for T > 16 activation rows in place of dequantising w to f32 for sgemm.
// Implements: the packing of x (once per call, shared by the threads), the packing of weight
// tiles and the register-blocked microkernel (cpu_gemm_avx512.c), and the switch that turns
// the kernel off.
#ifndef TW_TENSOR_CPU_GEMM_H
#define TW_TENSOR_CPU_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cpu.h"

// Numerics. x is rounded to bf16 once per call (VCVTNE2PS2BF16: to nearest even, as PyTorch's
// .to(torch.bfloat16); a NaN stays NaN; f32 subnormals become zero, as VDPBF16PS would take
// bf16 subnormals anyway); each lane of VDPBF16PS adds the two products of a k pair to its
// f32 accumulator, k pair after k pair, so output (t, n) is one f32 sum over k. The weights
// are used exactly. Against the f32 product (tw_dequantize_row and a dot product in double,
// the reference), for every output:
//   |y - ref| <= (2^-8 + (K/2 + 1) 2^-24) * sum_k |w_k x_k|      (proven: the rounding of x,
//                                                                  then the f32 sums)
// Measured on random data (tests/tensor/test_cpu_gemm.c: uniform w and x of mixed scales,
// T = 1..512, N = 1..3000, K = 1..6002), the largest |y - ref| / sum_k |w_k x_k| is about
// 0.009 / sqrt(K), the errors of the terms having random signs: 1.05e-3 at K = 64, 2.3e-4 at
// K = 1448, 1.1e-4 at K = 4096 (1.5e-3 at K = 1 or 2, where one term can reach 2^-8). Against
// the reference on x rounded to bf16 the difference is the f32 summation alone: at most
// 1.2e-7 of sum_k |w_k x_k| measured. The test holds these under 0.02 / sqrt(K) (K >= 64),
// 2^-8 + 1e-5 and 1e-5.
//
// Speed (bench/gemm): on AMD Zen 4, where VDPBF16PS (32 products) issues as fast as an f32 FMA
// (16), the kernel runs at about 3x the old path's speed. On a Sapphire Rapids VM VDPBF16PS
// issued at a quarter of the FMA's rate (half its products a cycle): the kernel reached 70-85
// GFLOP/s a core, 4x the old path with OpenBLAS' mis-detected "Prescott" kernels, but behind
// it at T >= 256 with OPENBLAS_CORETYPE=SkylakeX (100-135 GFLOP/s a core).
//
// Use: tw_gemm_bf16_usable() says whether the kernel runs here; the caller packs x with
// tw_gemm_bf16_pack_x into a buffer of tw_gemm_bf16_packed_bytes (the threads may share the
// work by part / parts, then meet at a barrier), and each thread calls tw_gemm_bf16 for its
// own columns of y with TW_GEMM_BF16_SCRATCH bytes of scratch memory of its own.

// Bytes of scratch memory tw_gemm_bf16 needs: one packed weight panel (1024 k pairs of 32
// rows), and 64 for alignment.
#define TW_GEMM_BF16_SCRATCH ((size_t)(128 * 1024 + 64))

// True when the kernel can run on this CPU at the ISA cap isa (the one the caller's kernels
// were chosen for): isa is TW_ISA_AVX512, the CPU has AVX-512 BF16, the compiler built the
// kernel, and the environment variable TWIN_NO_BF16_GEMM is unset, empty or "0" (set it to 1
// to compare with the dequantise + sgemm path; it is read once per process).
bool tw_gemm_bf16_usable(enum tw_cpu_isa isa);

// Bytes of x (T, K) packed as the kernel reads it (bf16, in panels of rows).
size_t tw_gemm_bf16_packed_bytes(int64_t T, int64_t K);

// Packs x (T, K), f32 rows of K contiguous values, into xp (tw_gemm_bf16_packed_bytes,
// 4-byte aligned): the share `part` (0 <= part < parts) of the work, so that `parts` threads
// can pack it together; xp is complete when every part is done.
void tw_gemm_bf16_pack_x(const float *x, int64_t T, int64_t K, void *xp, int part, int parts);

// y[t * ldy + n] = sum_k x[t][k] w[n * ldw + k] for t < T, n < N (K >= 1): xp as packed by
// tw_gemm_bf16_pack_x for the same T and K, w rows of K bf16 values (2-byte aligned, ldw
// elements apart), y overwritten. scratch: TW_GEMM_BF16_SCRATCH bytes, not shared with a
// thread running at the same time. Only call when tw_gemm_bf16_usable() said so.
void tw_gemm_bf16(const void *xp, int64_t T, int64_t K, const uint16_t *w, size_t ldw, int64_t N,
                  float *y, size_t ldy, void *scratch);

// ---- internal: the shape of the packed x, shared with cpu_gemm_avx512.c, and its kernel
// (compiled with target attributes; returns false when the compiler cannot build it).

// Rows of x per panel: the panel's k pairs are stored [K/2][MR] as 32-bit bf16 pairs, the
// rows past T as zeros; panels follow each other.
#define TW_GEMM_BF16_MR 8

bool tw_gemm_bf16_built_avx512(void);
void tw_gemm_bf16_pack_x_avx512(const float *x, int64_t T, int64_t K, void *xp, size_t q0,
                                size_t q1); // panels q0 .. q1
void tw_gemm_bf16_avx512(const void *xp, int64_t T, int64_t K, const uint16_t *w, size_t ldw,
                         int64_t N, float *y, size_t ldy, void *scratch);

#endif

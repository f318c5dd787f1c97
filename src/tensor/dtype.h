// Element types of twin's tensors: the float types (f32, f16, bf16) and ggml's block formats
// (q8_0, q4_0, q4_K, q6_K) with their sizes and names, scalar and row conversions between f32
// and the 16-bit floats, and the plain-C reference quantize / dequantize / dot product of a
// row that every SIMD and CUDA kernel is tested against. The block layouts are ggml's
// (ggml-common.h, docs/gguf.md), byte for byte, little-endian.
#ifndef TW_TENSOR_DTYPE_H
#define TW_TENSOR_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tw_dtype {
    TW_DTYPE_F32,
    TW_DTYPE_F16,  // IEEE 754 binary16
    TW_DTYPE_BF16, // bfloat16: the upper half of an f32
    TW_DTYPE_Q8_0, // blocks of 32: fp16 scale + 32 int8
    TW_DTYPE_Q4_0, // blocks of 32: fp16 scale + 32 nibbles
    TW_DTYPE_Q4_K, // blocks of 256: 8 sub-blocks of 32 with 6-bit scales and mins
    TW_DTYPE_Q6_K, // blocks of 256: 16 sub-blocks of 16 with int8 scales, 6-bit quants
    TW_DTYPE_COUNT
};

// ---- block layouts (ggml's; every field little-endian; fp16 fields hold binary16 bits).
// Rows of blocks are packed with no padding; a row pointer must be 2-byte aligned (GGUF
// aligns tensor data to 32 bytes and every block size is even).
#define TW_QK8_0 32
#define TW_QK4_0 32
#define TW_QK_K  256

// Q8_0, 34 bytes: [0] d (fp16), [2..33] qs. Element j = d * qs[j].
struct tw_block_q8_0 {
    uint16_t d;
    int8_t qs[TW_QK8_0];
};

// Q4_0, 18 bytes: [0] d (fp16), [2..17] qs. Element j < 16 is the low nibble of qs[j],
// element j + 16 the high nibble of qs[j]; value = d * (nibble - 8).
struct tw_block_q4_0 {
    uint16_t d;
    uint8_t qs[TW_QK4_0 / 2];
};

// Q4_K, 144 bytes: [0] d (fp16), [2] dmin (fp16), [4..15] scales (8 six-bit scales and 8
// six-bit mins, packed as tw_q4_k_scale_min reads them), [16..143] qs. The 256 elements are
// 8 sub-blocks of 32; sub-block s has scale sc[s] and min m[s]; element e = 64c + i
// (c = 0..3, i < 32) is the low nibble of qs[32c + i], element 64c + 32 + i its high nibble;
// value = d * sc[s] * q - dmin * m[s] with s = e / 32.
struct tw_block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[TW_QK_K / 2];
};

// Q6_K, 210 bytes: [0..127] ql, [128..191] qh, [192..207] scales (int8), [208] d (fp16).
// The 256 elements are two halves of 128; in half h (ql += 64h, qh += 32h), for i < 32:
//   element 128h + i      : low nibble of ql[i],      bits 0-1 of qh[i]
//   element 128h + 32 + i : low nibble of ql[32 + i], bits 2-3 of qh[i]
//   element 128h + 64 + i : high nibble of ql[i],     bits 4-5 of qh[i]
//   element 128h + 96 + i : high nibble of ql[32 + i], bits 6-7 of qh[i]
// q = nibble | (two bits << 4), value = d * scales[e / 16] * (q - 32).
struct tw_block_q6_k {
    uint8_t ql[TW_QK_K / 2];
    uint8_t qh[TW_QK_K / 4];
    int8_t scales[TW_QK_K / 16];
    uint16_t d;
};

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K block: for j < 4 they are the low
// 6 bits of scales[j] and scales[j + 4]; for j >= 4 the low 4 bits come from the low / high
// nibble of scales[j + 4] and the top 2 bits from bits 6-7 of scales[j - 4] / scales[j].
void tw_q4_k_scale_min(const uint8_t scales[12], int j, uint8_t *sc, uint8_t *m);

// ---- sizes and names.

// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_K", "q6_K" (ggml's spelling); "?" when t is not
// a dtype.
const char *tw_dtype_name(enum tw_dtype t);
// The dtype named `name` (case-insensitive: "Q4_K" and "q4_k" name q4_K). Returns 0, or
// TW_EINVAL with a message naming the string.
int tw_dtype_from_name(const char *name, enum tw_dtype *out);
// Elements per block: 1 for the float types, 32 for q8_0 and q4_0, 256 for q4_K and q6_K.
size_t tw_dtype_block_size(enum tw_dtype t);
// Bytes per block: 4, 2, 2, 34, 18, 144, 210.
size_t tw_dtype_block_bytes(enum tw_dtype t);
// True for the block formats (q8_0, q4_0, q4_K, q6_K).
bool tw_dtype_is_quantized(enum tw_dtype t);
// The byte size of n elements into *out. Returns 0; TW_EINVAL when n is not a multiple of
// the block size (the message gives both) or t is not a dtype; TW_EOVERFLOW when the size
// does not fit size_t. *out is untouched on failure. Shapes read from files go through this.
int tw_dtype_nbytes(enum tw_dtype t, size_t n, size_t *out);

// GGUF's tensor type numbers (ggml_type: F32 0, F16 1, Q4_0 2, Q8_0 8, Q4_K 12, Q6_K 14,
// BF16 30). tw_dtype_from_ggml returns 0, or TW_EUNSUPPORTED naming the number.
int tw_dtype_from_ggml(uint32_t ggml_type, enum tw_dtype *out);
uint32_t tw_dtype_ggml_type(enum tw_dtype t);

// ---- scalar conversions.

// f32 -> binary16, rounding to nearest even; overflow gives +-inf, tiny values subnormals or
// +-0; a NaN stays NaN, quieted, with the top 10 bits of its payload and its sign (what x86's
// F16C instructions do).
uint16_t tw_f32_to_f16(float f);
// binary16 -> f32, exact for every non-NaN value; a NaN comes back quieted.
float tw_f16_to_f32(uint16_t h);
// f32 -> bfloat16, rounding to nearest even; every NaN becomes 0x7FC0 (PyTorch's
// c10::BFloat16 rule). Exact inverse: tw_bf16_to_f32(h) is h << 16.
uint16_t tw_f32_to_bf16(float f);
float tw_bf16_to_f32(uint16_t h);

// Row conversions of n values, bit-identical to the scalar functions above, with an
// AVX2/F16C path chosen at run time on x86-64. Source and destination must not overlap.
void tw_f32_to_f16_row(const float *x, uint16_t *y, size_t n);
void tw_f16_to_f32_row(const uint16_t *x, float *y, size_t n);
void tw_f32_to_bf16_row(const float *x, uint16_t *y, size_t n);
void tw_bf16_to_f32_row(const uint16_t *x, float *y, size_t n);

// ---- rows: the plain-C reference.
// n must be a multiple of tw_dtype_block_size(t) (asserted: shapes are validated with
// tw_dtype_nbytes when a tensor is made); the packed row takes tw_dtype_nbytes(t, n) bytes.
// Inputs to the quantizers must be finite.

// Encodes n floats as dtype t into `out`. Float types convert (f32 copies). Quantizers:
//   q8_0: d = max|x| / 127, q = round(x / d) (ggml's rule, ties away from zero); the error is
//         at most d/2 + 127 |d - fp16(d)| per element;
//   q4_0: ggml's rule: d = (the x of largest magnitude) / -8, q = min(15, (int)(x / d + 8.5));
//         the error is at most |d|/2 (+ fp16 rounding of d), but up to |d| for elements on the
//         clamped side with |x / d| > 7.5;
//   q4_K: per sub-block of 32, range [min(0, min x), max x] -> scale and min, quantized to
//         6 bits against d = max scale / 63 and dmin = max min / 63; for each sub-block the
//         best of the neighbouring 6-bit scale and min pairs (least squared error) is kept;
//   q6_K: per sub-block of 16 with v its x of largest magnitude, scale v / -32 or v / 31,
//         quantized to int8 against d = (largest-magnitude v / 31 of the block) / -128; of
//         the int8 scales next to the two candidates the one with least squared error wins.
// The K-quant encoders are simpler than ggml's iterative search, not bit-identical with it;
// their decoded values follow the layout exactly. Measured on uniform and Gaussian data
// (tests/tensor/test_dtype.c), RMS(error) / RMS(x) is 0.058 / 0.075 for q4_K and
// 0.013 / 0.017 for q6_K; the tests hold them under 0.070 / 0.090 and 0.017 / 0.022.
void tw_quantize_row(enum tw_dtype t, const float *x, void *out, size_t n);
// Decodes n elements of dtype t from `in` into y, exactly as ggml's dequantize_row_* define.
void tw_dequantize_row(enum tw_dtype t, const void *in, float *y, size_t n);
// sum_i decode(row)[i] * x[i], each decoded value computed as tw_dequantize_row does and the
// sum accumulated in double: the reference for the fast dot-product kernels.
float tw_vec_dot_row(enum tw_dtype t, const void *row, const float *x, size_t n);

#endif

// Weights of any dtype to floats (kernels.cuh): twc_dequant_bf16 for the cuBLASLt GEMMs of
// prefill (rows to bf16, contiguous) and twc_get_rows for the embedding lookup (rows picked
// by token id, to f32). Every element is decoded as tw_dequantize_row computes it, with the
// same f32 operations in the same order and no fused multiply-adds (__fmul_rn, __fsub_rn),
// so get_rows is bit-identical with the reference and bf16 is that value rounded to even.
#include "tensor/cuda/kernels.cuh"

#include <cuda_fp16.h>

#define DQ_THREADS 256 // per block; a block covers one row or several short ones

namespace
{

__device__ __forceinline__ float f16_at(const unsigned char *p)
{
    return __half2float(__ushort_as_half(__ldg((const unsigned short *)p)));
}

__device__ __forceinline__ unsigned byte_at(const unsigned char *p)
{
    return __ldg(p);
}

// Elements 8g .. 8g + 7 of a row of block format DT (the row's K a multiple of its block
// size, so a group of 8 never straddles blocks) into v. The layouts: tensor/dtype.h.
template <int DT> __device__ void decode8(const unsigned char *row, int g, float v[8])
{
    if constexpr (DT == TW_DTYPE_Q8_0) { // 34 bytes: d, qs[32]; four groups a block
        const unsigned char *blk = row + 34 * (size_t)(g / 4);
        float d = f16_at(blk);
        for (int m = 0; m < 8; m++)
            v[m] = __fmul_rn((float)(signed char)byte_at(blk + 2 + 8 * (g % 4) + m), d);
    } else if constexpr (DT == TW_DTYPE_Q4_0) {
        // 18 bytes: d, qs[16]; groups 0, 1 are the low nibbles of qs[0..15], 2, 3 the high.
        const unsigned char *blk = row + 18 * (size_t)(g / 4);
        int j = g % 4, shift = j < 2 ? 0 : 4;
        float d = f16_at(blk);
        for (int m = 0; m < 8; m++) {
            int q = (byte_at(blk + 2 + 8 * (j % 2) + m) >> shift) & 0x0F;
            v[m] = __fmul_rn((float)(q - 8), d);
        }
    } else if constexpr (DT == TW_DTYPE_Q4_K) {
        // 144 bytes: d, dmin, scales[12], qs[128]. Element e = 64c + i (i < 32) is the low
        // nibble of qs[32c + i], 64c + 32 + i the high nibble; sub-block e / 32.
        const unsigned char *blk = row + 144 * (size_t)(g / 32);
        int e0 = 8 * (g % 32), c = e0 / 64, i0 = e0 % 32, s = e0 / 32,
            shift = e0 % 64 < 32 ? 0 : 4;
        const unsigned char *sc = blk + 4;
        unsigned scale, min; // tw_q4_k_scale_min
        if (s < 4) {
            scale = byte_at(sc + s) & 63;
            min = byte_at(sc + s + 4) & 63;
        } else {
            scale = (byte_at(sc + s + 4) & 0x0F) | ((byte_at(sc + s - 4) >> 6) << 4);
            min = (byte_at(sc + s + 4) >> 4) | ((byte_at(sc + s) >> 6) << 4);
        }
        float d1 = __fmul_rn(f16_at(blk), (float)scale);
        float m1 = __fmul_rn(f16_at(blk + 2), (float)min);
        for (int m = 0; m < 8; m++) {
            int q = (byte_at(blk + 16 + 32 * c + i0 + m) >> shift) & 0x0F;
            v[m] = __fsub_rn(__fmul_rn(d1, (float)q), m1);
        }
    } else { // Q6_K
        // 210 bytes: ql[128], qh[64], scales[16], d. In half h, element 128h + 32j + l
        // (l < 32) has its low 4 bits in ql[64h + 32 (j & 1) + l] (nibble j >> 1) and its top 2
        // in bits 2j of qh[32h + l]; scale scales[8h + 2j + l / 16].
        const unsigned char *blk = row + 210 * (size_t)(g / 32);
        int e0 = 8 * (g % 32), h = e0 / 128, j = (e0 % 128) / 32, l0 = e0 % 32;
        const unsigned char *ql = blk + 64 * h + 32 * (j & 1) + l0, *qh = blk + 128 + 32 * h + l0;
        int sc = (signed char)byte_at(blk + 192 + 8 * h + 2 * j + l0 / 16);
        float ds = __fmul_rn(f16_at(blk + 208), (float)sc);
        for (int m = 0; m < 8; m++) {
            int q = ((byte_at(ql + m) >> (4 * (j >> 1))) & 0x0F) |
                    (((byte_at(qh + m) >> (2 * j)) & 3) << 4);
            v[m] = __fmul_rn(ds, (float)(q - 32));
        }
    }
}

// Element k of a row of float type DT.
template <int DT> __device__ __forceinline__ float float_at(const unsigned char *row, int k)
{
    if constexpr (DT == TW_DTYPE_F32)
        return __ldg((const float *)row + k);
    else if constexpr (DT == TW_DTYPE_F16)
        return f16_at(row + 2 * (size_t)k);
    else
        return __uint_as_float((unsigned)__ldg((const unsigned short *)row + k) << 16);
}

// A block covers blockDim.y rows, threadIdx.x walking a row's units (groups of 8 elements for
// the block formats, single elements for the float types), blocks striding over the rows.

// out (rows, K) bf16. ALIGNED: out is 16-byte aligned (K % 8 == 0 for the block formats),
// so a group is one 16-byte store.
template <int DT, bool ALIGNED>
__global__ void __launch_bounds__(DQ_THREADS)
    dequant_bf16_kernel(const unsigned char *w, size_t row_bytes, int64_t rows, int K,
                        __nv_bfloat16 *out)
{
    twc_pdl_enter();
    for (int64_t r = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; r < rows;
         r += (int64_t)gridDim.x * blockDim.y) {
        const unsigned char *row = w + (size_t)r * row_bytes;
        __nv_bfloat16 *o = out + (size_t)r * K;
        if constexpr (DT <= TW_DTYPE_BF16) {
            for (int k = threadIdx.x; k < K; k += blockDim.x)
                o[k] = __float2bfloat16(float_at<DT>(row, k));
        } else {
            for (int g = threadIdx.x; g < K / 8; g += blockDim.x) {
                float v[8];
                decode8<DT>(row, g, v);
                if constexpr (ALIGNED) {
                    unsigned u[4]; // little-endian: element 2m in the low half of word m
                    for (int m = 0; m < 4; m++)
                        u[m] = __bfloat16_as_ushort(__float2bfloat16(v[2 * m])) |
                               (unsigned)__bfloat16_as_ushort(__float2bfloat16(v[2 * m + 1]))
                                   << 16;
                    *(uint4 *)(o + 8 * g) = make_uint4(u[0], u[1], u[2], u[3]);
                } else {
                    for (int m = 0; m < 8; m++)
                        o[8 * g + m] = __float2bfloat16(v[m]); // round to nearest even
                }
            }
        }
    }
}

// y (T, K) f32: y[t] = row ids[t]. ALIGNED: y is 16-byte aligned (K % 4 == 0 follows for
// the block formats).
template <int DT, bool ALIGNED>
__global__ void __launch_bounds__(DQ_THREADS)
    get_rows_kernel(const unsigned char *table, size_t row_bytes, int K, const int32_t *ids,
                    int64_t T, float *y)
{
    twc_pdl_enter();
    for (int64_t t = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; t < T;
         t += (int64_t)gridDim.x * blockDim.y) {
        const unsigned char *row = table + (size_t)__ldg(ids + t) * row_bytes;
        float *o = y + (size_t)t * K;
        if constexpr (DT <= TW_DTYPE_BF16) {
            for (int k = threadIdx.x; k < K; k += blockDim.x)
                o[k] = float_at<DT>(row, k);
        } else {
            for (int g = threadIdx.x; g < K / 8; g += blockDim.x) {
                float v[8];
                decode8<DT>(row, g, v);
                if constexpr (ALIGNED) {
                    *(float4 *)(o + 8 * g) = make_float4(v[0], v[1], v[2], v[3]);
                    *(float4 *)(o + 8 * g + 4) = make_float4(v[4], v[5], v[6], v[7]);
                } else {
                    for (int m = 0; m < 8; m++)
                        o[8 * g + m] = v[m];
                }
            }
        }
    }
}

// The block shape for rows of `units` units: threads along a row up to the next power of two
// (at least a warp), the rest of DQ_THREADS over rows; a grid covering `rows` rows, capped
// (the kernels stride).
void shape(int64_t units, int64_t rows, dim3 *block, unsigned *grid)
{
    unsigned x = 32;
    while (x < DQ_THREADS && x < units)
        x *= 2;
    *block = dim3(x, DQ_THREADS / x);
    int64_t g = (rows + block->y - 1) / block->y;
    *grid = (unsigned)(g < 65536 ? g : 65536);
}

bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

template <int DT>
void launch_dequant(const void *w, size_t row_bytes, int64_t rows, int K, __nv_bfloat16 *out,
                    cudaStream_t s)
{
    dim3 block;
    unsigned grid;
    shape(DT <= TW_DTYPE_BF16 ? K : K / 8, rows, &block, &grid);
    const unsigned char *wb = (const unsigned char *)w;
    if (aligned16(out) && K % 8 == 0)
        twc_launch(dequant_bf16_kernel<DT, true>, grid, block, 0, s, wb, row_bytes, rows, K, out);
    else
        twc_launch(dequant_bf16_kernel<DT, false>, grid, block, 0, s, wb, row_bytes, rows, K, out);
}

template <int DT>
void launch_get_rows(const void *table, size_t row_bytes, int K, const int32_t *ids, int64_t T,
                     float *y, cudaStream_t s)
{
    dim3 block;
    unsigned grid;
    shape(DT <= TW_DTYPE_BF16 ? K : K / 8, T, &block, &grid);
    const unsigned char *tb = (const unsigned char *)table;
    if (aligned16(y) && K % 4 == 0)
        twc_launch(get_rows_kernel<DT, true>, grid, block, 0, s, tb, row_bytes, K, ids, T, y);
    else
        twc_launch(get_rows_kernel<DT, false>, grid, block, 0, s, tb, row_bytes, K, ids, T, y);
}

bool valid_shape(enum tw_dtype dt, int64_t K)
{
    size_t bs = tw_dtype_block_size(dt);
    return bs && K >= 0 && K <= INT32_MAX && K % (int64_t)bs == 0;
}

} // namespace

cudaError_t twc_dequant_bf16(enum tw_dtype dt, const void *w, size_t row_bytes, int64_t rows,
                             int64_t K, __nv_bfloat16 *out, cudaStream_t s)
{
    if (rows <= 0 || K == 0)
        return cudaSuccess;
    if (!valid_shape(dt, K))
        return cudaErrorInvalidValue;
    int k = (int)K;
    switch (dt) {
    case TW_DTYPE_F32:
        launch_dequant<TW_DTYPE_F32>(w, row_bytes, rows, k, out, s);
        break;
    case TW_DTYPE_F16:
        launch_dequant<TW_DTYPE_F16>(w, row_bytes, rows, k, out, s);
        break;
    case TW_DTYPE_BF16: // already bf16: a strided copy
        return cudaMemcpy2DAsync(out, (size_t)K * 2, w, row_bytes, (size_t)K * 2, (size_t)rows,
                                 cudaMemcpyDeviceToDevice, s);
    case TW_DTYPE_Q8_0:
        launch_dequant<TW_DTYPE_Q8_0>(w, row_bytes, rows, k, out, s);
        break;
    case TW_DTYPE_Q4_0:
        launch_dequant<TW_DTYPE_Q4_0>(w, row_bytes, rows, k, out, s);
        break;
    case TW_DTYPE_Q4_K:
        launch_dequant<TW_DTYPE_Q4_K>(w, row_bytes, rows, k, out, s);
        break;
    case TW_DTYPE_Q6_K:
        launch_dequant<TW_DTYPE_Q6_K>(w, row_bytes, rows, k, out, s);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

cudaError_t twc_get_rows(enum tw_dtype dt, const void *table, size_t row_bytes, int64_t K,
                         const int32_t *ids, int64_t T, float *y, cudaStream_t s)
{
    if (T <= 0 || K == 0)
        return cudaSuccess;
    if (!valid_shape(dt, K))
        return cudaErrorInvalidValue;
    int k = (int)K;
    switch (dt) {
    case TW_DTYPE_F32:
        launch_get_rows<TW_DTYPE_F32>(table, row_bytes, k, ids, T, y, s);
        break;
    case TW_DTYPE_F16:
        launch_get_rows<TW_DTYPE_F16>(table, row_bytes, k, ids, T, y, s);
        break;
    case TW_DTYPE_BF16:
        launch_get_rows<TW_DTYPE_BF16>(table, row_bytes, k, ids, T, y, s);
        break;
    case TW_DTYPE_Q8_0:
        launch_get_rows<TW_DTYPE_Q8_0>(table, row_bytes, k, ids, T, y, s);
        break;
    case TW_DTYPE_Q4_0:
        launch_get_rows<TW_DTYPE_Q4_0>(table, row_bytes, k, ids, T, y, s);
        break;
    case TW_DTYPE_Q4_K:
        launch_get_rows<TW_DTYPE_Q4_K>(table, row_bytes, k, ids, T, y, s);
        break;
    case TW_DTYPE_Q6_K:
        launch_get_rows<TW_DTYPE_Q6_K>(table, row_bytes, k, ids, T, y, s);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

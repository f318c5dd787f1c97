// Decode-sized matmuls (twc_gemv, kernels.cuh): y (T, N) = x (T, K) W (N, K)^T (+ bias) for
// T = 1..TWC_GEMV_MAX_T, reading each weight row once straight from its dtype's blocks
// (tensor/dtype.h: ggml's layouts) and using every decoded weight, held in a register, for all
// T activation rows. Memory-bound at small T: the point is to stream W at HBM bandwidth.
//
// A block of GEMV_THREADS threads computes GEMV_ROWS output rows: its threads split K (each
// takes whole quant blocks, or 16-byte pieces of a float row), so every x value a thread loads
// serves GEMV_ROWS rows; warp shuffles and then shared memory sum the threads' shares. x is
// small (T * K floats) and read through L1 (__ldg); weights read exactly once bypass L1
// (ld.global.nc.L1::no_allocate) so that x stays there. Sums are f32, like the CPU backend's
// kernels; the reference (tw_vec_dot_row) sums in double. The K loops stay rolled
// (#pragma unroll 1): occupancy keeps enough loads in flight, and unrolled they took up to
// 250 registers or spilled under a bound.
#include "tensor/cuda/kernels.cuh"

#include <cuda_fp16.h>

#define GEMV_THREADS 128 // per block: 4 warps splitting the block's rows' K
#define GEMV_WARPS   (GEMV_THREADS / 32)
#define GEMV_ROWS    2 // output rows per block: each x load serves this many weight rows
// Blocks per SM for __launch_bounds__: 4 (at most 128 registers) for the float types, where
// ptxas otherwise spills a few bytes to stay at 64; 0 (no bound) for the block formats.
#define GEMV_MIN_BLOCKS(DT) ((DT) <= TW_DTYPE_BF16 ? 4 : 0)

// A float whose mantissa holds an integer 0..255: 2^23 + u is exact in f32, so a byte
// placed under the exponent bits of 2^23 (0x4B000000) and MAGIC subtracted gives the byte's
// value with one byte-permute and one add (the int-to-float converter runs at a quarter of
// the rate of the FP32 units on sm_90).
#define MAGIC 8388608.0f

namespace
{

struct gemv_args {
    const char *w; // row n at w + n * row_bytes
    size_t row_bytes;
    int64_t N;
    int K;
    const float *x; // (T, K), rows ldx apart
    int64_t ldx;
    float *y; // (T, N), rows ldy apart
    int64_t ldy;
    const float *bias; // (N) or NULL
};

// 2^23 + byte k (0..3, a constant) of u, as a float.
__device__ __forceinline__ float byte_f(uint32_t u, int k)
{
    return __int_as_float((int)__byte_perm(u, 0x4B000000u, 0x7540 + k));
}

__device__ __forceinline__ float f16_f(uint32_t h)
{
    return __half2float(__ushort_as_half((unsigned short)(h & 0xFFFF)));
}

__device__ __forceinline__ uint32_t ld_u16(const char *p)
{
    return __ldg((const unsigned short *)p);
}

// 4 bytes at a 2-byte aligned address (quant blocks are only 2-byte aligned).
__device__ __forceinline__ uint32_t ld_u32_a2(const char *p)
{
    return ld_u16(p) | (ld_u16(p + 2) << 16);
}

// 16 bytes read once: not allocated in L1, which keeps x there.
__device__ __forceinline__ uint4 ld_stream(const void *p)
{
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

// 16 bytes at p: one load when p is 16-byte aligned (A16), else 2-byte loads.
template <bool A16> __device__ __forceinline__ uint4 ld16(const char *p)
{
    if constexpr (A16)
        return ld_stream(p);
    else
        return make_uint4(ld_u32_a2(p), ld_u32_a2(p + 4), ld_u32_a2(p + 8), ld_u32_a2(p + 12));
}

// x[0..3]: one 16-byte load when x rows are 16-byte aligned (VEC), else four.
template <bool VEC> __device__ __forceinline__ float4 ld_x4(const float *p)
{
    if constexpr (VEC)
        return __ldg((const float4 *)p);
    else
        return make_float4(__ldg(p), __ldg(p + 1), __ldg(p + 2), __ldg(p + 3));
}

__device__ __forceinline__ float dot4(const float *w, float4 x)
{
    return fmaf(w[3], x.w, fmaf(w[2], x.z, fmaf(w[1], x.y, w[0] * x.x)));
}

__device__ __forceinline__ uint32_t word(uint4 v, int m)
{
    return m == 0 ? v.x : m == 1 ? v.y : m == 2 ? v.z : v.w;
}

constexpr int R = GEMV_ROWS;

// ---- float weights. FAST: K % 4 == 0 (f32) or % 8 == 0 (f16, bf16), rows and x 16-byte
// aligned; each thread takes 16-byte pieces of the rows. Else one element per thread.

template <int T, bool FAST>
__device__ void dot_f32(const char *const *w, const gemv_args &a, int g, float (&acc)[R][T])
{
    if constexpr (FAST) {
#pragma unroll 1
        for (int i = g; i < a.K / 4; i += GEMV_THREADS) {
            float wv[R][4];
#pragma unroll
            for (int r = 0; r < R; r++) {
                uint4 u = ld_stream(w[r] + 16 * (size_t)i);
                wv[r][0] = __uint_as_float(u.x), wv[r][1] = __uint_as_float(u.y);
                wv[r][2] = __uint_as_float(u.z), wv[r][3] = __uint_as_float(u.w);
            }
#pragma unroll
            for (int t = 0; t < T; t++) {
                float4 xv = ld_x4<true>(a.x + t * a.ldx + 4 * i);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][t] += dot4(wv[r], xv);
            }
        }
    } else {
#pragma unroll 1
        for (int k = g; k < a.K; k += GEMV_THREADS) {
            float wv[R];
#pragma unroll
            for (int r = 0; r < R; r++)
                wv[r] = __ldg((const float *)w[r] + k);
#pragma unroll
            for (int t = 0; t < T; t++) {
                float xv = __ldg(a.x + t * a.ldx + k);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][t] = fmaf(wv[r], xv, acc[r][t]);
            }
        }
    }
}

// f16 (BF16 false) or bf16 (BF16 true) element h, the low 16 bits of h.
template <bool BF16> __device__ __forceinline__ float half_f(uint32_t h)
{
    if constexpr (BF16)
        return __uint_as_float(h << 16);
    else
        return f16_f(h);
}

// Elements 2m and 2m + 1 from the word that holds both.
template <bool BF16> __device__ __forceinline__ void half2_f(uint32_t u, float *out)
{
    if constexpr (BF16) {
        out[0] = __uint_as_float(u << 16);
        out[1] = __uint_as_float(u & 0xFFFF0000u);
    } else {
        float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&u));
        out[0] = f.x;
        out[1] = f.y;
    }
}

template <int T, bool FAST, bool BF16>
__device__ void dot_f16(const char *const *w, const gemv_args &a, int g, float (&acc)[R][T])
{
    if constexpr (FAST) {
#pragma unroll 1
        for (int i = g; i < a.K / 8; i += GEMV_THREADS) {
            float wv[R][8];
#pragma unroll
            for (int r = 0; r < R; r++) {
                uint4 u = ld_stream(w[r] + 16 * (size_t)i);
#pragma unroll
                for (int m = 0; m < 4; m++) // little-endian: element 2m is the low half
                    half2_f<BF16>(word(u, m), &wv[r][2 * m]);
            }
#pragma unroll
            for (int t = 0; t < T; t++) {
                const float4 *xp = (const float4 *)(a.x + t * a.ldx) + 2 * i;
                float4 x0 = __ldg(xp), x1 = __ldg(xp + 1);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][t] += dot4(wv[r], x0) + dot4(wv[r] + 4, x1);
            }
        }
    } else {
#pragma unroll 1
        for (int k = g; k < a.K; k += GEMV_THREADS) {
            float wv[R];
#pragma unroll
            for (int r = 0; r < R; r++)
                wv[r] = half_f<BF16>(ld_u16(w[r] + 2 * (size_t)k));
#pragma unroll
            for (int t = 0; t < T; t++) {
                float xv = __ldg(a.x + t * a.ldx + k);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][t] = fmaf(wv[r], xv, acc[r][t]);
            }
        }
    }
}

// ---- Q8_0, 34-byte blocks: four threads per block, thread j takes quants 8j .. 8j + 7
// (bytes 2 + 8j, 2-byte aligned). Element = d * q: the thread sums q * x and scales once.

template <int T, bool FAST>
__device__ void dot_q8_0(const char *const *w, const gemv_args &a, int g, float (&acc)[R][T])
{
    const int j = g % 4, nb = a.K / TW_QK8_0;
#pragma unroll 1
    for (int b = g / 4; b < nb; b += GEMV_THREADS / 4) {
        float d[R], q[R][8];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const char *blk = w[r] + 34 * (size_t)b;
            d[r] = f16_f(ld_u16(blk));
            // int8 q ^ 0x80 is the byte q + 128
            uint32_t lo = ld_u32_a2(blk + 2 + 8 * j) ^ 0x80808080u;
            uint32_t hi = ld_u32_a2(blk + 6 + 8 * j) ^ 0x80808080u;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                q[r][k] = byte_f(lo, k) - (MAGIC + 128.0f);
                q[r][4 + k] = byte_f(hi, k) - (MAGIC + 128.0f);
            }
        }
#pragma unroll
        for (int t = 0; t < T; t++) {
            const float *xp = a.x + t * a.ldx + TW_QK8_0 * b + 8 * j;
            float4 x0 = ld_x4<FAST>(xp), x1 = ld_x4<FAST>(xp + 4);
#pragma unroll
            for (int r = 0; r < R; r++)
                acc[r][t] = fmaf(d[r], dot4(q[r], x0) + dot4(q[r] + 4, x1), acc[r][t]);
        }
    }
}

// ---- Q4_0, 18-byte blocks: two threads per block, thread j takes qs bytes 8j .. 8j + 7:
// elements 8j .. 8j + 7 (low nibbles) and 16 + 8j .. 16 + 8j + 7 (high nibbles).
// Element = d * (nibble - 8).

template <int T, bool FAST>
__device__ void dot_q4_0(const char *const *w, const gemv_args &a, int g, float (&acc)[R][T])
{
    const int j = g % 2, nb = a.K / TW_QK4_0;
#pragma unroll 1
    for (int b = g / 2; b < nb; b += GEMV_THREADS / 2) {
        float d[R], q[R][16]; // [0..7] low nibbles, [8..15] high nibbles
#pragma unroll
        for (int r = 0; r < R; r++) {
            const char *blk = w[r] + 18 * (size_t)b;
            d[r] = f16_f(ld_u16(blk));
            uint32_t u0 = ld_u32_a2(blk + 2 + 8 * j), u1 = ld_u32_a2(blk + 6 + 8 * j);
            uint32_t l0 = u0 & 0x0F0F0F0Fu, l1 = u1 & 0x0F0F0F0Fu;
            uint32_t h0 = (u0 >> 4) & 0x0F0F0F0Fu, h1 = (u1 >> 4) & 0x0F0F0F0Fu;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                q[r][k] = byte_f(l0, k) - (MAGIC + 8.0f);
                q[r][4 + k] = byte_f(l1, k) - (MAGIC + 8.0f);
                q[r][8 + k] = byte_f(h0, k) - (MAGIC + 8.0f);
                q[r][12 + k] = byte_f(h1, k) - (MAGIC + 8.0f);
            }
        }
#pragma unroll
        for (int t = 0; t < T; t++) {
            const float *xp = a.x + t * a.ldx + TW_QK4_0 * b + 8 * j;
            float4 x0 = ld_x4<FAST>(xp), x1 = ld_x4<FAST>(xp + 4);
            float4 x2 = ld_x4<FAST>(xp + 16), x3 = ld_x4<FAST>(xp + 20);
#pragma unroll
            for (int r = 0; r < R; r++) {
                float s = dot4(q[r], x0) + dot4(q[r] + 4, x1);
                s += dot4(q[r] + 8, x2) + dot4(q[r] + 12, x3);
                acc[r][t] = fmaf(d[r], s, acc[r][t]);
            }
        }
    }
}

// ---- Q4_K, 144-byte blocks (9 x 16 bytes: 16-byte aligned when the tensor is): eight
// threads per block; thread i = 2c + p reads the 16-byte header and qs bytes 16i .. 16i + 15
// = 32c + 16p + m, whose low nibbles are elements 64c + 16p + m (sub-block 2c) and high
// nibbles elements 64c + 32 + 16p + m (sub-block 2c + 1). Element = d*sc * q - dmin*m.

// d * scale and dmin * min of sub-block j (a lane constant) from the header (d, dmin and the
// 12 scale bytes in hdr.y, .z, .w): tw_q4_k_scale_min's unpacking, with jj = j & 3,
// A = scales[jj], B = scales[jj + 4], C = scales[jj + 8].
__device__ __forceinline__ void q4_k_scale(uint4 hdr, int j, float *ds, float *dm)
{
    int sh = 8 * (j & 3);
    uint32_t A = (hdr.y >> sh) & 0xFF, B = (hdr.z >> sh) & 0xFF, C = (hdr.w >> sh) & 0xFF;
    uint32_t sc, m;
    if (j < 4) {
        sc = A & 63;
        m = B & 63;
    } else {
        sc = (C & 0x0F) | ((A >> 6) << 4);
        m = (C >> 4) | ((B >> 6) << 4);
    }
    *ds = f16_f(hdr.x) * (float)sc;
    *dm = f16_f(hdr.x >> 16) * (float)m;
}

template <int T, bool FAST>
__device__ void dot_q4_k(const char *const *w, const gemv_args &a, int g, float (&acc)[R][T])
{
    const int i = g % 8, c = i / 2, p = i % 2, nb = a.K / TW_QK_K;
#pragma unroll 1
    for (int b = g / 8; b < nb; b += GEMV_THREADS / 8) {
        uint4 qv[R];
        float dl[R], ml[R], dh[R], mh[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const char *blk = w[r] + 144 * (size_t)b;
            uint4 hdr = ld16<FAST>(blk);
            qv[r] = ld16<FAST>(blk + 16 + 16 * i);
            q4_k_scale(hdr, 2 * c, &dl[r], &ml[r]);
            q4_k_scale(hdr, 2 * c + 1, &dh[r], &mh[r]);
        }
#pragma unroll
        for (int m = 0; m < 4; m++) { // qs bytes 16i + 4m .. + 3
            float wl[R][4], wh[R][4];
#pragma unroll
            for (int r = 0; r < R; r++) {
                uint32_t u = word(qv[r], m);
                uint32_t lo = u & 0x0F0F0F0Fu, hi = (u >> 4) & 0x0F0F0F0Fu;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    wl[r][k] = fmaf(dl[r], byte_f(lo, k) - MAGIC, -ml[r]);
                    wh[r][k] = fmaf(dh[r], byte_f(hi, k) - MAGIC, -mh[r]);
                }
            }
#pragma unroll
            for (int t = 0; t < T; t++) {
                const float *xp = a.x + t * a.ldx + TW_QK_K * b + 64 * c + 16 * p + 4 * m;
                float4 xl = ld_x4<FAST>(xp), xh = ld_x4<FAST>(xp + 32);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][t] += dot4(wl[r], xl) + dot4(wh[r], xh);
            }
        }
    }
}

// ---- Q6_K, 210-byte blocks (2-byte aligned): eight threads per block; thread i takes half
// h = i / 4 and l = l0 .. l0 + 7 with l0 = 8 (i % 4), so for position j = 0..3 its elements
// 128h + 32j + l share the scale scales[8h + 2j + l0 / 16]. The quants: bytes ql[64h + l]
// (A) and ql[64h + 32 + l] (B) give the low nibbles of positions 0, 2 (A) and 1, 3 (B), and
// qh[32h + l] (H) the two high bits of position j at bits 2j. Element = d*sc * (q - 32).

// The four 6-bit quants of position j from four bytes each of A, B and H.
__device__ __forceinline__ uint32_t q6_k_quants(uint32_t A, uint32_t B, uint32_t H, int j)
{
    const uint32_t lo = 0x0F0F0F0Fu, hb = 0x30303030u;
    switch (j) {
    case 0:
        return (A & lo) | ((H << 4) & hb);
    case 1:
        return (B & lo) | ((H << 2) & hb);
    case 2:
        return ((A >> 4) & lo) | (H & hb);
    default:
        return ((B >> 4) & lo) | ((H >> 2) & hb);
    }
}

template <int T, bool FAST>
__device__ void dot_q6_k(const char *const *w, const gemv_args &a, int g, float (&acc)[R][T])
{
    const int i = g % 8, h = i / 4, l0 = 8 * (i % 4), nb = a.K / TW_QK_K;
#pragma unroll 1
    for (int b = g / 8; b < nb; b += GEMV_THREADS / 8) {
        uint32_t A[R][2], B[R][2], H[R][2];
        float ds[R][4];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const char *blk = w[r] + 210 * (size_t)b;
            const char *ql = blk + 64 * h + l0, *qh = blk + 128 + 32 * h + l0;
            const signed char *sc = (const signed char *)blk + 192 + 8 * h + l0 / 16;
            A[r][0] = ld_u32_a2(ql), A[r][1] = ld_u32_a2(ql + 4);
            B[r][0] = ld_u32_a2(ql + 32), B[r][1] = ld_u32_a2(ql + 36);
            H[r][0] = ld_u32_a2(qh), H[r][1] = ld_u32_a2(qh + 4);
            float d = f16_f(ld_u16(blk + 208));
#pragma unroll
            for (int jj = 0; jj < 4; jj++)
                ds[r][jj] = d * (float)__ldg(sc + 2 * jj);
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float q[R][8];
#pragma unroll
            for (int r = 0; r < R; r++) {
                uint32_t q0 = q6_k_quants(A[r][0], B[r][0], H[r][0], j);
                uint32_t q1 = q6_k_quants(A[r][1], B[r][1], H[r][1], j);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    q[r][k] = byte_f(q0, k) - (MAGIC + 32.0f);
                    q[r][4 + k] = byte_f(q1, k) - (MAGIC + 32.0f);
                }
            }
#pragma unroll
            for (int t = 0; t < T; t++) {
                const float *xp = a.x + t * a.ldx + TW_QK_K * b + 128 * h + 32 * j + l0;
                float4 x0 = ld_x4<FAST>(xp), x1 = ld_x4<FAST>(xp + 4);
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][t] = fmaf(ds[r][j], dot4(q[r], x0) + dot4(q[r] + 4, x1), acc[r][t]);
            }
        }
    }
}

// ---- the kernel: block = GEMV_ROWS output rows, its threads' shares summed at the end.

template <int DT, int T, bool FAST>
__global__ void __launch_bounds__(GEMV_THREADS, GEMV_MIN_BLOCKS(DT)) gemv_kernel(gemv_args a)
{
    __shared__ float part[GEMV_WARPS][R * T];
    const int g = threadIdx.x, lane = g % 32, warp = g / 32;
    const int64_t row0 = (int64_t)blockIdx.x * R;
    // A block past the last row (odd N) reads the last row again and stores nothing for it.
    const char *w[R];
#pragma unroll
    for (int r = 0; r < R; r++)
        w[r] = a.w + (size_t)min(row0 + r, a.N - 1) * a.row_bytes;

    float acc[R][T];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < T; t++)
            acc[r][t] = 0.0f;

    if constexpr (DT == TW_DTYPE_F32)
        dot_f32<T, FAST>(w, a, g, acc);
    else if constexpr (DT == TW_DTYPE_F16)
        dot_f16<T, FAST, false>(w, a, g, acc);
    else if constexpr (DT == TW_DTYPE_BF16)
        dot_f16<T, FAST, true>(w, a, g, acc);
    else if constexpr (DT == TW_DTYPE_Q8_0)
        dot_q8_0<T, FAST>(w, a, g, acc);
    else if constexpr (DT == TW_DTYPE_Q4_0)
        dot_q4_0<T, FAST>(w, a, g, acc);
    else if constexpr (DT == TW_DTYPE_Q4_K)
        dot_q4_k<T, FAST>(w, a, g, acc);
    else
        dot_q6_k<T, FAST>(w, a, g, acc);

#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int t = 0; t < T; t++) {
            float v = acc[r][t];
#pragma unroll
            for (int o = 16; o > 0; o /= 2)
                v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
            if (lane == 0)
                part[warp][r * T + t] = v;
        }
    }
    __syncthreads();
    if (g < R * T) {
        const int r = g / T, t = g % T;
        const int64_t n = row0 + r;
        if (n < a.N) {
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < GEMV_WARPS; i++)
                s += part[i][g];
            if (a.bias)
                s += a.bias[n];
            a.y[t * a.ldy + n] = s;
        }
    }
}

template <int DT, int T>
void launch_t(const gemv_args &a, bool fast, unsigned grid, cudaStream_t s)
{
    if (fast)
        gemv_kernel<DT, T, true><<<grid, GEMV_THREADS, 0, s>>>(a);
    else
        gemv_kernel<DT, T, false><<<grid, GEMV_THREADS, 0, s>>>(a);
}

template <int DT>
void launch_dt(const gemv_args &a, int T, bool fast, unsigned grid, cudaStream_t s)
{
    switch (T) {
    case 1:
        return launch_t<DT, 1>(a, fast, grid, s);
    case 2:
        return launch_t<DT, 2>(a, fast, grid, s);
    case 3:
        return launch_t<DT, 3>(a, fast, grid, s);
    case 4:
        return launch_t<DT, 4>(a, fast, grid, s);
    case 5:
        return launch_t<DT, 5>(a, fast, grid, s);
    case 6:
        return launch_t<DT, 6>(a, fast, grid, s);
    case 7:
        return launch_t<DT, 7>(a, fast, grid, s);
    default:
        return launch_t<DT, 8>(a, fast, grid, s);
    }
}

bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

} // namespace

cudaError_t twc_gemv(enum tw_dtype dt, const void *w, size_t row_bytes, int64_t N, int64_t K,
                     const float *x, int64_t ldx, int T, float *y, int64_t ldy, const float *bias,
                     cudaStream_t s)
{
    if (T == 0 || N == 0)
        return cudaSuccess;
    if (T < 0 || T > TWC_GEMV_MAX_T || N < 0 || K < 0 || K > INT32_MAX ||
        (N + R - 1) / R > INT32_MAX || !tw_dtype_block_size(dt) ||
        K % (int64_t)tw_dtype_block_size(dt) != 0)
        return cudaErrorInvalidValue;
    gemv_args a = { (const char *)w, row_bytes, N, (int)K, x, ldx, y, ldy, bias };
    // The 16-byte paths: x rows 16-byte aligned, and for the float types and Q4_K (whose
    // blocks are 16-byte multiples) the weight rows too. The other block formats are read
    // with 2-byte loads wherever their rows start.
    bool xvec = aligned16(x) && (T == 1 || ldx % 4 == 0);
    bool wvec = aligned16(w) && row_bytes % 16 == 0;
    unsigned grid = (unsigned)((N + R - 1) / R);
    switch (dt) {
    case TW_DTYPE_F32:
        launch_dt<TW_DTYPE_F32>(a, T, xvec && wvec && K % 4 == 0, grid, s);
        break;
    case TW_DTYPE_F16:
        launch_dt<TW_DTYPE_F16>(a, T, xvec && wvec && K % 8 == 0, grid, s);
        break;
    case TW_DTYPE_BF16:
        launch_dt<TW_DTYPE_BF16>(a, T, xvec && wvec && K % 8 == 0, grid, s);
        break;
    case TW_DTYPE_Q8_0:
        launch_dt<TW_DTYPE_Q8_0>(a, T, xvec, grid, s);
        break;
    case TW_DTYPE_Q4_0:
        launch_dt<TW_DTYPE_Q4_0>(a, T, xvec, grid, s);
        break;
    case TW_DTYPE_Q4_K:
        launch_dt<TW_DTYPE_Q4_K>(a, T, xvec && wvec, grid, s);
        break;
    case TW_DTYPE_Q6_K:
        launch_dt<TW_DTYPE_Q6_K>(a, T, xvec, grid, s);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

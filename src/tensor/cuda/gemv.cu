// Decode-sized matmuls (twc_gemv, twc_gemv_multi, twc_gemv_swiglu: kernels.cuh): y (T, N) =
// x (T, K) W (N, K)^T (+ bias, + a residual) for T = 1..TWC_GEMV_MAX_T, reading each weight
// row once straight from its dtype's blocks (tensor/dtype.h: ggml's layouts) and using every
// decoded weight, held in a register, for all T activation rows. Memory-bound at small T: the
// point is to stream W at HBM bandwidth.
//
// A block of GEMV_THREADS threads is split into groups of WG warps; a group computes RO output
// rows (SwiGLU: RO gate rows and the RO matching up rows), its threads splitting K into
// pieces (16 bytes of a float row, or a fixed share of a quant block), so that every x value
// a thread loads serves all the group's rows. A thread issues the loads of U pieces of every
// row before decoding them. Warp shuffles and then shared memory sum the threads' shares. x is
// small (T * K floats) and read through L1 (__ldg); weights read exactly once bypass L1
// (ld.global.nc.L1::no_allocate) so that x stays there. Sums are f32, like the CPU backend's
// kernels; the reference (tw_vec_dot_row) sums in double.
//
// Several outputs sharing x (q, k, v) are one launch: the grid runs over the blocks of all of
// them, each block looking up which output its index falls in.
//
// Q8_0, Q4_0 and Q4_K weights meet int8 activations when the caller gives scratch for them
// (twc_gemv_multi's xq; Q8_0 from two rows on, twc_gemv_int8): x is rounded to int8 blocks of
// 32 first (q8_act_kernel, the CPU's rounding, cpu_qdot.h: d = max|x| / 127, q = rint(x * 127 /
// max|x|), with an RMSNorm applied before it when one is folded in), and four weights meet four
// activations in one integer dp4a (as llama.cpp's mmvq does). Decoding a float per weight made
// these formats bound by the SM's issue rate (about five instructions a weight) far below HBM's;
// dp4a takes one or two.
#include "tensor/cuda/kernels.cuh"

extern "C" {
#include "tensor/cpu_qdot.h" // TW_Q8_ACT_TINY: the rounding is the CPU's
}

#include <cuda_fp16.h>
#include <cstdlib>
#include <type_traits>

#define GEMV_THREADS 128 // per block: 4 warps, in groups of WG warps
#define GEMV_WARPS   (GEMV_THREADS / 32)
// Blocks per SM for __launch_bounds__: 4 (at most 128 registers) for the float types, where
// ptxas otherwise spills a few bytes at T = 8 to stay at 64; 0 (no bound) for the block
// formats.
#define GEMV_MIN_BLOCKS(DT) ((DT) <= TW_DTYPE_BF16 ? 4 : 0)

// A float whose mantissa holds an integer 0..255: 2^23 + u is exact in f32, so a byte
// placed under the exponent bits of 2^23 (0x4B000000) and MAGIC subtracted gives the byte's
// value with one byte-permute and one add (the int-to-float converter runs at a quarter of
// the rate of the FP32 units on sm_90).
#define MAGIC 8388608.0f

namespace
{

// One output as the kernel sees it: its blocks are grid blocks block0 .. of the launch.
struct gemv_out {
    const char *w; // row n at w + n * row_bytes
    size_t row_bytes;
    int64_t N;
    float *y; // (T, N), rows ldy apart; may alias res
    int64_t ldy;
    const float *bias, *res; // (N) and (T, N) rows ldy apart, or NULL
    unsigned block0;
};

struct gemv_args {
    gemv_out o[TWC_GEMV_MAX_OUTS];
    int n; // outputs in use
    int K;
    const float *x; // (T, K), rows ldx apart
    int64_t ldx;
    const char *wu;  // SwiGLU's up matrix (rows as o[0].w's), else NULL
    const float *nw; // the RMSNorm's weight (K) applied to x first (NORM), else NULL
    float eps;
    const int8_t *xq;     // x rounded to int8 (T rows of K), with Q; else NULL
    const float *xd, *xs; // per row: the scale d of each block of 32, d * sum(q) of each 16
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

// 8 bytes at a 2-byte aligned address, as two words.
__device__ __forceinline__ uint2 ld8(const char *p)
{
    return make_uint2(ld_u32_a2(p), ld_u32_a2(p + 4));
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

// The activations as the formats' dot() reads them: element k of x row t. With NORM, each
// value comes out times the RMSNorm weight g[k] and its square is summed into ss[t]: every x
// value is read exactly once by a group, so the group's sums give the rows' mean squares, and
// rmsnorm(x) . w = (g x) . w / sqrt(mean(x^2) + eps) is scaled once at the end.
template <int T, bool FAST, bool NORM> struct xin {
    const float *x;
    int64_t ldx;
    const float *g;
    float ss[T];

    __device__ float4 ld4(int t, int64_t k)
    {
        float4 v = ld_x4<FAST>(x + t * ldx + k);
        if constexpr (NORM) {
            ss[t] = fmaf(v.x, v.x, fmaf(v.y, v.y, fmaf(v.z, v.z, fmaf(v.w, v.w, ss[t]))));
            float4 w = ld_x4<FAST>(g + k);
            v = make_float4(v.x * w.x, v.y * w.y, v.z * w.z, v.w * w.w);
        }
        return v;
    }
    __device__ float ld1(int t, int64_t k)
    {
        float v = __ldg(x + t * ldx + k);
        if constexpr (NORM) {
            ss[t] = fmaf(v, v, ss[t]);
            v *= __ldg(g + k);
        }
        return v;
    }
};

// The int8 activations as the formats' dotq() reads them (row t: bytes q + t K, scales
// d + t K / 32, sums s + t K / 16); 16- and 8-byte loads at element offsets that are
// multiples of 16 and 8 (the scratch is 16-byte aligned and K a multiple of 32).
struct xq_in {
    const int8_t *q;
    const float *dd, *ss;
    int64_t K;

    __device__ uint4 q16(int t, int64_t k) const
    {
        return __ldg((const uint4 *)(q + t * K + k));
    }
    __device__ uint2 q8(int t, int64_t k) const
    {
        return __ldg((const uint2 *)(q + t * K + k));
    }
    __device__ float d(int t, int64_t b32) const // block of 32 number b32
    {
        return __ldg(dd + t * (K / 32) + b32);
    }
    __device__ float s16(int t, int64_t b16) const // d * sum(q) of the 16 at 16 * b16
    {
        return __ldg(ss + t * (K / 16) + b16);
    }
};

__device__ __forceinline__ int dp4a(uint32_t a, uint32_t b, int c)
{
    return __dp4a((int)a, (int)b, c);
}

// Nibbles n (0..15, one a byte) as the signed bytes n - 8: n + 0x78 stays below 0x100 in every
// byte, and the xor with 0x80 then takes 0x80 off it as a signed byte.
__device__ __forceinline__ uint32_t nib_minus8(uint32_t n)
{
    return (n + 0x78787878u) ^ 0x80808080u;
}

__device__ __forceinline__ float dot4(const float *w, float4 x)
{
    return fmaf(w[3], x.w, fmaf(w[2], x.z, fmaf(w[1], x.y, w[0] * x.x)));
}

__device__ __forceinline__ uint32_t word(uint4 v, int m)
{
    return m == 0 ? v.x : m == 1 ? v.y : m == 2 ? v.z : v.w;
}

// ---- the weight formats. wfmt<DT, FAST> splits a row of K elements into blocks(K) blocks
// (the format's, or one 16-byte piece / one element of a float row) of PPB pieces each; a
// thread takes one piece j of each block it visits (j = its index % PPB: fixed, since
// threads step through the blocks together). load(row, b, j) reads the piece's bytes (raw,
// undecoded, so that a thread's loads all issue before the first is used); dot() decodes them
// and adds their products with x to acc[r][t] for the RW rows and T activation rows.
// FAST: x rows 16-byte aligned and the weights aligned as the format's 16-byte loads need
// (weights_fast); else the same arithmetic with narrow loads.

template <int DT, bool FAST> struct wfmt;

// f32: 16-byte pieces (4 elements), or single elements.
template <bool FAST> struct wfmt<TW_DTYPE_F32, FAST> {
    using raw = typename std::conditional<FAST, uint4, float>::type;
    static constexpr int PPB = 1;
    static __device__ int blocks(int K)
    {
        return FAST ? K / 4 : K;
    }
    static __device__ raw load(const char *row, int b, int)
    {
        if constexpr (FAST)
            return ld_stream(row + 16 * (size_t)b);
        else
            return __ldg((const float *)row + b);
    }
    template <int T, int RW, class X>
    static __device__ void dot(const raw (&v)[RW], X &x, int b, int, float (&acc)[RW][T])
    {
#pragma unroll
        for (int t = 0; t < T; t++) {
            if constexpr (FAST) {
                float4 xv = x.ld4(t, 4 * b);
#pragma unroll
                for (int r = 0; r < RW; r++) {
                    float f[4] = { __uint_as_float(v[r].x), __uint_as_float(v[r].y),
                                   __uint_as_float(v[r].z), __uint_as_float(v[r].w) };
                    acc[r][t] += dot4(f, xv);
                }
            } else {
                float xv = x.ld1(t, b);
#pragma unroll
                for (int r = 0; r < RW; r++)
                    acc[r][t] = fmaf(v[r], xv, acc[r][t]);
            }
        }
    }
};

// f16 (BF16 false) or bf16 (BF16 true) element h, the low 16 bits of h.
template <bool BF16> __device__ __forceinline__ float half_f(uint32_t h)
{
    if constexpr (BF16)
        return __uint_as_float(h << 16);
    else
        return f16_f(h);
}

// Elements 2m and 2m + 1 from the word that holds both (little-endian: 2m is the low half).
template <bool BF16> __device__ __forceinline__ void half2_f(uint32_t u, float *out)
{
    if constexpr (BF16) {
        float2 f = twc_unpack_bf16(u);
        out[0] = f.x;
        out[1] = f.y;
    } else {
        float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&u));
        out[0] = f.x;
        out[1] = f.y;
    }
}

// f16 and bf16: 16-byte pieces (8 elements), or single elements.
template <bool FAST, bool BF16> struct wfmt_half {
    using raw = typename std::conditional<FAST, uint4, uint32_t>::type;
    static constexpr int PPB = 1;
    static __device__ int blocks(int K)
    {
        return FAST ? K / 8 : K;
    }
    static __device__ raw load(const char *row, int b, int)
    {
        if constexpr (FAST)
            return ld_stream(row + 16 * (size_t)b);
        else
            return ld_u16(row + 2 * (size_t)b);
    }
    template <int T, int RW, class X>
    static __device__ void dot(const raw (&v)[RW], X &x, int b, int, float (&acc)[RW][T])
    {
        if constexpr (FAST) {
            float f[RW][8];
#pragma unroll
            for (int r = 0; r < RW; r++)
#pragma unroll
                for (int m = 0; m < 4; m++)
                    half2_f<BF16>(word(v[r], m), &f[r][2 * m]);
#pragma unroll
            for (int t = 0; t < T; t++) {
                float4 x0 = x.ld4(t, 8 * b), x1 = x.ld4(t, 8 * b + 4);
#pragma unroll
                for (int r = 0; r < RW; r++)
                    acc[r][t] += dot4(f[r], x0) + dot4(f[r] + 4, x1);
            }
        } else {
#pragma unroll
            for (int t = 0; t < T; t++) {
                float xv = x.ld1(t, b);
#pragma unroll
                for (int r = 0; r < RW; r++)
                    acc[r][t] = fmaf(half_f<BF16>(v[r]), xv, acc[r][t]);
            }
        }
    }
};
template <bool FAST> struct wfmt<TW_DTYPE_F16, FAST> : wfmt_half<FAST, false> {
};
template <bool FAST> struct wfmt<TW_DTYPE_BF16, FAST> : wfmt_half<FAST, true> {
};

// Q8_0, 34-byte blocks: four pieces per block, piece j = quants 8j .. 8j + 7 (bytes 2 + 8j).
// Element = d * q: the thread sums q * x and scales once.
template <bool FAST> struct wfmt<TW_DTYPE_Q8_0, FAST> {
    struct raw {
        uint32_t d;
        uint2 q;
    };
    static constexpr int PPB = 4;
    static __device__ int blocks(int K)
    {
        return K / TW_QK8_0;
    }
    static __device__ raw load(const char *row, int b, int j)
    {
        const char *blk = row + 34 * (size_t)b;
        return { ld_u16(blk), ld8(blk + 2 + 8 * j) };
    }
    template <int T, int RW, class X>
    static __device__ void dot(const raw (&v)[RW], X &x, int b, int j, float (&acc)[RW][T])
    {
        float d[RW], q[RW][8];
#pragma unroll
        for (int r = 0; r < RW; r++) {
            d[r] = f16_f(v[r].d);
            uint32_t lo = v[r].q.x ^ 0x80808080u, hi = v[r].q.y ^ 0x80808080u; // q + 128
#pragma unroll
            for (int k = 0; k < 4; k++) {
                q[r][k] = byte_f(lo, k) - (MAGIC + 128.0f);
                q[r][4 + k] = byte_f(hi, k) - (MAGIC + 128.0f);
            }
        }
#pragma unroll
        for (int t = 0; t < T; t++) {
            const int64_t k = TW_QK8_0 * b + 8 * j;
            float4 x0 = x.ld4(t, k), x1 = x.ld4(t, k + 4);
#pragma unroll
            for (int r = 0; r < RW; r++)
                acc[r][t] = fmaf(d[r], dot4(q[r], x0) + dot4(q[r] + 4, x1), acc[r][t]);
        }
    }
    // With int8 activations: the piece's eight products in two dp4a.
    template <int T, int RW, class XQ>
    static __device__ void dotq(const raw (&v)[RW], const XQ &x, int b, int j, float (&acc)[RW][T])
    {
        float d[RW];
#pragma unroll
        for (int r = 0; r < RW; r++)
            d[r] = f16_f(v[r].d);
#pragma unroll
        for (int t = 0; t < T; t++) {
            uint2 xv = x.q8(t, TW_QK8_0 * (int64_t)b + 8 * j);
            float dx = x.d(t, b);
#pragma unroll
            for (int r = 0; r < RW; r++) {
                int p = dp4a(v[r].q.y, xv.y, dp4a(v[r].q.x, xv.x, 0));
                acc[r][t] = fmaf(d[r] * dx, (float)p, acc[r][t]);
            }
        }
    }
};

// Q4_0, 18-byte blocks: two pieces per block, piece j = qs bytes 8j .. 8j + 7: elements
// 8j .. 8j + 7 (low nibbles) and 16 + 8j .. 16 + 8j + 7 (high nibbles).
// Element = d * (nibble - 8).
template <bool FAST> struct wfmt<TW_DTYPE_Q4_0, FAST> {
    struct raw {
        uint32_t d;
        uint2 q;
    };
    static constexpr int PPB = 2;
    static __device__ int blocks(int K)
    {
        return K / TW_QK4_0;
    }
    static __device__ raw load(const char *row, int b, int j)
    {
        const char *blk = row + 18 * (size_t)b;
        return { ld_u16(blk), ld8(blk + 2 + 8 * j) };
    }
    template <int T, int RW, class X>
    static __device__ void dot(const raw (&v)[RW], X &x, int b, int j, float (&acc)[RW][T])
    {
        float d[RW], q[RW][16]; // [0..7] low nibbles, [8..15] high nibbles
#pragma unroll
        for (int r = 0; r < RW; r++) {
            d[r] = f16_f(v[r].d);
            uint32_t u0 = v[r].q.x, u1 = v[r].q.y;
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
            const int64_t k = TW_QK4_0 * b + 8 * j;
            float4 x0 = x.ld4(t, k), x1 = x.ld4(t, k + 4);
            float4 x2 = x.ld4(t, k + 16), x3 = x.ld4(t, k + 20);
#pragma unroll
            for (int r = 0; r < RW; r++) {
                float s = dot4(q[r], x0) + dot4(q[r] + 4, x1);
                s += dot4(q[r] + 8, x2) + dot4(q[r] + 12, x3);
                acc[r][t] = fmaf(d[r], s, acc[r][t]);
            }
        }
    }
    // With int8 activations: the nibbles as signed bytes n - 8, four dp4a.
    template <int T, int RW, class XQ>
    static __device__ void dotq(const raw (&v)[RW], const XQ &x, int b, int j, float (&acc)[RW][T])
    {
        float d[RW];
        uint32_t q[RW][4]; // elements 8j.. +3, 8j + 4.. +7, 16 + 8j.. +3, 16 + 8j + 4.. +7
#pragma unroll
        for (int r = 0; r < RW; r++) {
            d[r] = f16_f(v[r].d);
            q[r][0] = nib_minus8(v[r].q.x & 0x0F0F0F0Fu);
            q[r][1] = nib_minus8(v[r].q.y & 0x0F0F0F0Fu);
            q[r][2] = nib_minus8((v[r].q.x >> 4) & 0x0F0F0F0Fu);
            q[r][3] = nib_minus8((v[r].q.y >> 4) & 0x0F0F0F0Fu);
        }
#pragma unroll
        for (int t = 0; t < T; t++) {
            const int64_t k = TW_QK4_0 * (int64_t)b + 8 * j;
            uint2 xl = x.q8(t, k), xh = x.q8(t, k + 16);
            float dx = x.d(t, b);
#pragma unroll
            for (int r = 0; r < RW; r++) {
                int p = dp4a(q[r][0], xl.x, dp4a(q[r][1], xl.y, 0));
                p = dp4a(q[r][2], xh.x, dp4a(q[r][3], xh.y, p));
                acc[r][t] = fmaf(d[r] * dx, (float)p, acc[r][t]);
            }
        }
    }
};

// Q4_K, 144-byte blocks (9 x 16 bytes: 16-byte aligned when the tensor is): eight pieces per
// block; piece i = 2c + p0 is the 16-byte header and qs bytes 16i .. 16i + 15 = 32c + 16p0 + m,
// whose low nibbles are elements 64c + 16p0 + m (sub-block 2c) and high nibbles elements
// 64c + 32 + 16p0 + m (sub-block 2c + 1). Element = d*sc * q - dmin*m.

// d * scale and dmin * min of sub-block j from the header (d, dmin and the 12 scale bytes in
// hdr.y, .z, .w): tw_q4_k_scale_min's unpacking, with jj = j & 3, A = scales[jj],
// B = scales[jj + 4], C = scales[jj + 8].
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

template <bool FAST> struct wfmt<TW_DTYPE_Q4_K, FAST> {
    struct raw {
        uint4 hdr, q;
    };
    static constexpr int PPB = 8;
    static __device__ int blocks(int K)
    {
        return K / TW_QK_K;
    }
    static __device__ raw load(const char *row, int b, int i)
    {
        const char *blk = row + 144 * (size_t)b;
        return { ld16<FAST>(blk), ld16<FAST>(blk + 16 + 16 * i) };
    }
    template <int T, int RW, class X>
    static __device__ void dot(const raw (&v)[RW], X &x, int b, int i, float (&acc)[RW][T])
    {
        const int c = i / 2;
        float dl[RW], ml[RW], dh[RW], mh[RW];
#pragma unroll
        for (int r = 0; r < RW; r++) {
            q4_k_scale(v[r].hdr, 2 * c, &dl[r], &ml[r]);
            q4_k_scale(v[r].hdr, 2 * c + 1, &dh[r], &mh[r]);
        }
#pragma unroll
        for (int m = 0; m < 4; m++) { // qs bytes 16i + 4m .. + 3
            float wl[RW][4], wh[RW][4];
#pragma unroll
            for (int r = 0; r < RW; r++) {
                uint32_t u = word(v[r].q, m);
                uint32_t lo = u & 0x0F0F0F0Fu, hi = (u >> 4) & 0x0F0F0F0Fu;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    wl[r][k] = fmaf(dl[r], byte_f(lo, k) - MAGIC, -ml[r]);
                    wh[r][k] = fmaf(dh[r], byte_f(hi, k) - MAGIC, -mh[r]);
                }
            }
#pragma unroll
            for (int t = 0; t < T; t++) {
                const int64_t k = TW_QK_K * b + 64 * c + 16 * (i % 2) + 4 * m;
                float4 xl = x.ld4(t, k), xh = x.ld4(t, k + 32);
#pragma unroll
                for (int r = 0; r < RW; r++)
                    acc[r][t] += dot4(wl[r], xl) + dot4(wh[r], xh);
            }
        }
    }
    // With int8 activations: per sub-block half, d*sc * dx * sum(n q) - dmin*m * dx * sum(q),
    // the first from four dp4a of the nibbles, the second from the activations' sums.
    template <int T, int RW, class XQ>
    static __device__ void dotq(const raw (&v)[RW], const XQ &x, int b, int i, float (&acc)[RW][T])
    {
        const int c = i / 2;
        float dl[RW], ml[RW], dh[RW], mh[RW];
        uint32_t lo[RW][4], hi[RW][4];
#pragma unroll
        for (int r = 0; r < RW; r++) {
            q4_k_scale(v[r].hdr, 2 * c, &dl[r], &ml[r]);
            q4_k_scale(v[r].hdr, 2 * c + 1, &dh[r], &mh[r]);
#pragma unroll
            for (int m = 0; m < 4; m++) {
                uint32_t u = word(v[r].q, m);
                lo[r][m] = u & 0x0F0F0F0Fu;
                hi[r][m] = (u >> 4) & 0x0F0F0F0Fu;
            }
        }
        const int64_t k = TW_QK_K * (int64_t)b + 64 * c + 16 * (i % 2);
#pragma unroll
        for (int t = 0; t < T; t++) {
            uint4 xl = x.q16(t, k), xh = x.q16(t, k + 32);
            float dxl = x.d(t, k / 32), dxh = x.d(t, k / 32 + 1);
            float sl = x.s16(t, k / 16), sh = x.s16(t, k / 16 + 2);
#pragma unroll
            for (int r = 0; r < RW; r++) {
                int pl = dp4a(lo[r][0], xl.x, dp4a(lo[r][1], xl.y, 0));
                pl = dp4a(lo[r][2], xl.z, dp4a(lo[r][3], xl.w, pl));
                int ph = dp4a(hi[r][0], xh.x, dp4a(hi[r][1], xh.y, 0));
                ph = dp4a(hi[r][2], xh.z, dp4a(hi[r][3], xh.w, ph));
                float a = fmaf(dl[r] * dxl, (float)pl, -ml[r] * sl);
                acc[r][t] += fmaf(dh[r] * dxh, (float)ph, fmaf(-mh[r], sh, a));
            }
        }
    }
};

// Q6_K, 210-byte blocks (2-byte aligned): eight pieces per block; piece i takes half
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

template <bool FAST> struct wfmt<TW_DTYPE_Q6_K, FAST> {
    struct raw {
        uint2 A, B, H;
        uint32_t d;
        int sc[4];
    };
    static constexpr int PPB = 8;
    static __device__ int blocks(int K)
    {
        return K / TW_QK_K;
    }
    static __device__ raw load(const char *row, int b, int i)
    {
        const int h = i / 4, l0 = 8 * (i % 4);
        const char *blk = row + 210 * (size_t)b;
        const char *ql = blk + 64 * h + l0, *qh = blk + 128 + 32 * h + l0;
        const signed char *sc = (const signed char *)blk + 192 + 8 * h + l0 / 16;
        raw v;
        v.A = ld8(ql);
        v.B = ld8(ql + 32);
        v.H = ld8(qh);
        v.d = ld_u16(blk + 208);
#pragma unroll
        for (int j = 0; j < 4; j++)
            v.sc[j] = __ldg(sc + 2 * j);
        return v;
    }
    template <int T, int RW, class X>
    static __device__ void dot(const raw (&v)[RW], X &x, int b, int i, float (&acc)[RW][T])
    {
        const int h = i / 4, l0 = 8 * (i % 4);
        float d[RW];
#pragma unroll
        for (int r = 0; r < RW; r++)
            d[r] = f16_f(v[r].d);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float q[RW][8];
#pragma unroll
            for (int r = 0; r < RW; r++) {
                uint32_t q0 = q6_k_quants(v[r].A.x, v[r].B.x, v[r].H.x, j);
                uint32_t q1 = q6_k_quants(v[r].A.y, v[r].B.y, v[r].H.y, j);
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    q[r][k] = byte_f(q0, k) - (MAGIC + 32.0f);
                    q[r][4 + k] = byte_f(q1, k) - (MAGIC + 32.0f);
                }
            }
#pragma unroll
            for (int t = 0; t < T; t++) {
                const int64_t k = TW_QK_K * b + 128 * h + 32 * j + l0;
                float4 x0 = x.ld4(t, k), x1 = x.ld4(t, k + 4);
#pragma unroll
                for (int r = 0; r < RW; r++) {
                    float s = d[r] * (float)v[r].sc[j];
                    acc[r][t] = fmaf(s, dot4(q[r], x0) + dot4(q[r] + 4, x1), acc[r][t]);
                }
            }
        }
    }
};

// ---- the kernel: a group of WG warps computes RO output rows (SWIGLU: RO gate and RO up
// rows, one output each pair); a block holds GEMV_WARPS / WG groups.

template <int RO_, int WG_, int U_> struct gemv_cfg {
    static constexpr int RO = RO_, WG = WG_, U = U_;
};

template <int DT, int T, bool FAST, class C, bool SWIGLU, bool NORM, bool Q>
__global__ void __launch_bounds__(GEMV_THREADS, GEMV_MIN_BLOCKS(DT))
    gemv_kernel(const __grid_constant__ gemv_args a)
{
    static_assert(!(Q && NORM), "int8 activations come normalised");
    using W = wfmt<DT, FAST>;
    constexpr int RO = C::RO, WG = C::WG, U = C::U, GT = 32 * WG, NG = GEMV_WARPS / WG;
    constexpr int RW = SWIGLU ? 2 * RO : RO, NS = NORM ? T : 0; // NS: mean-square slots
    static_assert(RO * T <= GT, "one thread per output element");
    __shared__ float part[GEMV_WARPS][RW * T + NS];
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, g = tid % GT;
    int oi = 0;
#pragma unroll
    for (int i = 1; i < TWC_GEMV_MAX_OUTS; i++)
        if (i < a.n && blockIdx.x >= a.o[i].block0)
            oi = i;
    const gemv_out &o = a.o[oi];
    const int64_t row0 = (int64_t)(blockIdx.x - o.block0) * (NG * RO) + warp / WG * RO;
    // Rows past the last (N not a multiple of the block's rows) read the last row again and
    // store nothing.
    const char *w[RW];
#pragma unroll
    for (int r = 0; r < RO; r++) {
        size_t off = (size_t)min(row0 + r, o.N - 1) * o.row_bytes;
        w[r] = o.w + off;
        if constexpr (SWIGLU)
            w[RO + r] = a.wu + off;
    }
    // The weights depend on nothing before this kernel: their first lines head for L2 while
    // the previous kernel finishes (programmatic dependent launch, twc_launch).
    for (size_t off = 128 * (size_t)g; off < o.row_bytes && off < 128 * (size_t)GT * 2;
         off += 128 * (size_t)GT)
#pragma unroll
        for (int r = 0; r < RW; r++)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(w[r] + off));
    twc_pdl_enter();

    float acc[RW][T];
#pragma unroll
    for (int r = 0; r < RW; r++)
#pragma unroll
        for (int t = 0; t < T; t++)
            acc[r][t] = 0.0f;
    xin<T, FAST, NORM> x = { a.x, a.ldx, a.nw, {} };
    const xq_in xq = { a.xq, a.xd, a.xs, a.K };

    // Thread g takes piece g % PPB of blocks g / PPB, + GT / PPB, ...
    constexpr int PPB = W::PPB, STEP = GT / PPB;
    const int nb = W::blocks(a.K), j = g % PPB;
#pragma unroll 1
    for (int b0 = g / PPB; b0 < nb; b0 += U * STEP) {
        typename W::raw v[U][RW];
#pragma unroll
        for (int u = 0; u < U; u++)
            if (b0 + u * STEP < nb)
#pragma unroll
                for (int r = 0; r < RW; r++)
                    v[u][r] = W::load(w[r], b0 + u * STEP, j);
#pragma unroll
        for (int u = 0; u < U; u++)
            if (b0 + u * STEP < nb) {
                if constexpr (Q)
                    W::template dotq<T, RW>(v[u], xq, b0 + u * STEP, j, acc);
                else
                    W::template dot<T, RW>(v[u], x, b0 + u * STEP, j, acc);
            }
    }

#pragma unroll
    for (int i = 0; i < RW * T + NS; i++) {
        float v = i < RW * T ? acc[i / T][i % T] : x.ss[(i - RW * T) % T];
#pragma unroll
        for (int m = 16; m > 0; m /= 2)
            v += __shfl_xor_sync(0xFFFFFFFFu, v, m);
        if (lane == 0)
            part[warp][i] = v;
    }
    __syncthreads();
    if (g < RO * T) {
        const int r = g / T, t = g % T, w0 = warp / WG * WG;
        const int64_t n = row0 + r;
        if (n < o.N) {
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < WG; i++)
                s += part[w0 + i][r * T + t];
            float scale = 1.0f; // the RMSNorm's 1 / sqrt(mean(x^2) + eps) of row t
            if constexpr (NORM) {
                float ss = 0.0f;
#pragma unroll
                for (int i = 0; i < WG; i++)
                    ss += part[w0 + i][RW * T + t];
                scale = 1.0f / sqrtf(ss / (float)a.K + a.eps);
            }
            float *y = o.y + t * o.ldy + n;
            if constexpr (SWIGLU) {
                float u = 0.0f;
#pragma unroll
                for (int i = 0; i < WG; i++)
                    u += part[w0 + i][(RO + r) * T + t];
                s *= scale, u *= scale;
                *y = twc_silu(s) * u;
            } else {
                s *= scale;
                if (o.bias)
                    s += o.bias[n];
                if (o.res) // read before the store: res may be y
                    s += o.res[t * o.ldy + n];
                *y = s;
            }
        }
    }
}

// ---- launch shapes. Measured on the H100 at T = 1 (bench/gemv_cuda's sweep of rows per
// group, warps per group and pieces in flight, docs/perf.md): four warps on two rows was the
// best or within a few per cent of it for the block formats but Q4_K, which gains on most
// large matrices from two warps on four rows (each x load serving four rows: the block
// formats are bound by L1 wavefronts and arithmetic rather than by loads in flight; a warp
// per row with 4 to 8 pieces in flight lost up to 40 % on them). The 16-bit float rows want
// two pieces in flight a thread (every 1B and 8B matrix gained, 1-27 %), and the longest ones
// (K >= 12288: the 8B's down) two warps a pair of rows (40.1 against 45.3 us). SwiGLU reads
// two matrices: half the output rows.

template <int DT, int T, bool SW> struct pick_cfg {
    static constexpr bool Q4K = DT == TW_DTYPE_Q4_K && T == 1;
    static constexpr bool HALF = (DT == TW_DTYPE_BF16 || DT == TW_DTYPE_F16) && T == 1;
    static constexpr int RO = Q4K ? 4 : 2;
    using type = gemv_cfg<SW ? RO / 2 : RO, Q4K ? 2 : 4, HALF ? 2 : 1>;
};

template <class C> constexpr int cfg_rows()
{
    return GEMV_WARPS / C::WG * C::RO;
}

// Numbers the outputs' blocks for rows-per-block `rows`; returns the grid's size.
unsigned number_blocks(gemv_args &a, int rows)
{
    unsigned b = 0;
    for (int i = 0; i < a.n; i++) {
        a.o[i].block0 = b;
        b += (unsigned)((a.o[i].N + rows - 1) / rows);
    }
    return b;
}

template <int DT, int T, bool FAST, class C, bool SW, bool NORM = false, bool Q = false>
void launch_c(gemv_args a, cudaStream_t s)
{
    unsigned grid = number_blocks(a, cfg_rows<C>());
    twc_launch(gemv_kernel<DT, T, FAST, C, SW, NORM, Q>, grid, GEMV_THREADS, 0, s, a);
}

#ifdef GEMV_SWEEP
// The development harness's configurations (bench/gemv_cuda with TWIN_GEMV_SWEEP=i): rows per
// group, warps per group, pieces in flight.
template <int DT, bool Q> bool launch_sweep(const gemv_args &a, cudaStream_t s)
{
    const char *e = getenv("TWIN_GEMV_SWEEP");
#define GEMV_SWEEP_CASE(I, RO, WG, U)                                      \
    case I:                                                                \
        launch_c<DT, 1, true, gemv_cfg<RO, WG, U>, false, false, Q>(a, s); \
        return true;
    switch (e ? atoi(e) : -1) {
        GEMV_SWEEP_CASE(0, 2, 4, 1)
        GEMV_SWEEP_CASE(1, 4, 4, 1)
        GEMV_SWEEP_CASE(2, 2, 4, 2)
        GEMV_SWEEP_CASE(3, 4, 2, 1)
        GEMV_SWEEP_CASE(4, 1, 4, 4)
        GEMV_SWEEP_CASE(5, 2, 2, 2)
        GEMV_SWEEP_CASE(6, 4, 1, 2)
        GEMV_SWEEP_CASE(7, 1, 4, 2)
        GEMV_SWEEP_CASE(8, 8, 1, 1)
        GEMV_SWEEP_CASE(9, 4, 2, 2)
        GEMV_SWEEP_CASE(10, 8, 2, 1)
        GEMV_SWEEP_CASE(11, 2, 1, 2)
        GEMV_SWEEP_CASE(12, 4, 1, 1)
        GEMV_SWEEP_CASE(13, 8, 1, 2)
        GEMV_SWEEP_CASE(14, 2, 1, 4)
        GEMV_SWEEP_CASE(15, 1, 1, 4)
    }
#undef GEMV_SWEEP_CASE
    return false;
}
#endif

template <int DT, int T, bool FAST, bool SW, bool NORM = false, bool Q = false>
void launch_t(const gemv_args &a, cudaStream_t s)
{
#ifdef GEMV_SWEEP
    if (T == 1 && FAST && !SW && !NORM && launch_sweep<DT, Q>(a, s))
        return;
#endif
    if ((DT == TW_DTYPE_BF16 || DT == TW_DTYPE_F16) && T == 1 && a.K >= 12288) {
        launch_c<DT, T, FAST, gemv_cfg<SW ? 1 : 2, 2, 2>, SW, NORM, Q>(a, s);
        return;
    }
    if (DT == TW_DTYPE_Q4_K && T == 1) {
        // Four rows a group leave fewer blocks than SMs on small matrices of long rows: the
        // two-row shape below 4096 rows when K >= 8192 (the 1B's down: 6.9 against 8.2 us).
        // The 1B's q, k, v and o (K = 2048) run faster on four (4.2 against 5.2 us, 3.5
        // against 3.8: bench/gemv_cuda's sweep).
        int64_t rows = 0;
        for (int i = 0; i < a.n; i++)
            rows += a.o[i].N;
        if (rows < 4096 && a.K >= 8192) {
            launch_c<DT, T, FAST, gemv_cfg<SW ? 1 : 2, 4, 1>, SW, NORM, Q>(a, s);
            return;
        }
    }
    launch_c<DT, T, FAST, typename pick_cfg<DT, T, SW>::type, SW, NORM, Q>(a, s);
}

// The formats with int8-activation kernels (wfmt's dotq).
constexpr bool has_dotq(int dt)
{
    return dt == TW_DTYPE_Q8_0 || dt == TW_DTYPE_Q4_0 || dt == TW_DTYPE_Q4_K;
}

// With a norm (a.nw) T is 1: the fused RMSNorm is decode's alone.
template <int DT, bool SW> void launch_dt(const gemv_args &a, int T, bool fast, cudaStream_t s)
{
    if constexpr (has_dotq(DT)) {
        if (a.xq) { // the callers pass xq only with fast weights
#define GEMV_Q_CASE(TT) \
    case TT:            \
        return launch_t<DT, TT, true, SW, false, true>(a, s);
            switch (T) {
                GEMV_Q_CASE(1)
                GEMV_Q_CASE(2)
                GEMV_Q_CASE(3)
                GEMV_Q_CASE(4)
                GEMV_Q_CASE(5)
                GEMV_Q_CASE(6)
                GEMV_Q_CASE(7)
                GEMV_Q_CASE(8)
            }
#undef GEMV_Q_CASE
            return;
        }
    }
    if (a.nw) {
        if (fast)
            launch_t<DT, 1, true, SW, true>(a, s);
        else
            launch_t<DT, 1, false, SW, true>(a, s);
        return;
    }
#define GEMV_CASE(TT) \
    case TT:          \
        return fast ? launch_t<DT, TT, true, SW>(a, s) : launch_t<DT, TT, false, SW>(a, s);
    switch (T) {
        GEMV_CASE(1)
        GEMV_CASE(2)
        GEMV_CASE(3)
        GEMV_CASE(4)
        GEMV_CASE(5)
        GEMV_CASE(6)
        GEMV_CASE(7)
        GEMV_CASE(8)
    }
#undef GEMV_CASE
}

template <bool SW>
void launch(enum tw_dtype dt, const gemv_args &a, int T, bool fast, cudaStream_t s)
{
    switch (dt) {
    case TW_DTYPE_F32:
        return launch_dt<TW_DTYPE_F32, SW>(a, T, fast, s);
    case TW_DTYPE_F16:
        return launch_dt<TW_DTYPE_F16, SW>(a, T, fast, s);
    case TW_DTYPE_BF16:
        return launch_dt<TW_DTYPE_BF16, SW>(a, T, fast, s);
    case TW_DTYPE_Q8_0:
        return launch_dt<TW_DTYPE_Q8_0, SW>(a, T, fast, s);
    case TW_DTYPE_Q4_0:
        return launch_dt<TW_DTYPE_Q4_0, SW>(a, T, fast, s);
    case TW_DTYPE_Q4_K:
        return launch_dt<TW_DTYPE_Q4_K, SW>(a, T, fast, s);
    default:
        return launch_dt<TW_DTYPE_Q6_K, SW>(a, T, fast, s);
    }
}

bool aligned(const void *p, uintptr_t n)
{
    return ((uintptr_t)p & (n - 1)) == 0;
}

// Whether weights w (rows row_bytes apart, K elements) allow dt's 16-byte loads (wfmt's
// FAST): the float types and Q4_K; the other block formats are read with 2-byte loads
// wherever their rows start.
bool weights_fast(enum tw_dtype dt, const void *w, size_t row_bytes, int64_t K)
{
    switch (dt) {
    case TW_DTYPE_F32:
        return aligned(w, 16) && row_bytes % 16 == 0 && K % 4 == 0;
    case TW_DTYPE_F16:
    case TW_DTYPE_BF16:
        return aligned(w, 16) && row_bytes % 16 == 0 && K % 8 == 0;
    case TW_DTYPE_Q4_K:
        return aligned(w, 16) && row_bytes % 16 == 0;
    default:
        return true;
    }
}

bool shape_ok(enum tw_dtype dt, int64_t K, int T)
{
    return T >= 0 && T <= TWC_GEMV_MAX_T && K >= 0 && K <= INT32_MAX &&
           (unsigned)dt < TW_DTYPE_COUNT && K % (int64_t)tw_dtype_block_size(dt) == 0;
}

bool x_fast(const float *x, int64_t ldx, int T)
{
    return aligned(x, 16) && (T == 1 || ldx % 4 == 0);
}

// The int8 activations' parts in twc_gemv_multi's scratch: the bytes, then the scales, then
// the sums of 16 (each part 16-byte aligned).
size_t xq_q_bytes(int64_t K, int T)
{
    return ((size_t)K * (size_t)T + 15) / 16 * 16;
}

size_t xq_d_bytes(int64_t K, int T)
{
    return ((size_t)(K / 32) * (size_t)T * sizeof(float) + 15) / 16 * 16;
}

// Row blockIdx.y of x (ldx apart; K a multiple of 32), times g / sqrt(mean(x^2) + eps) when g
// (an RMSNorm folded in, as ref_rmsnorm: x * inv * g), rounded to int8 blocks of 32 as
// tw_q8_act_quantize rounds them (IEEE divisions, rint half to even): q, d per block, and
// d * sum(q) per 16. A warp takes a block of 32, a lane an element; a thread block takes
// Q8_WARPS of them (each computing the row's norm: the row is small and in L2), so that the
// rounding, which the matvec after it waits for, is one short step.
#define Q8_WARPS 8
__global__ void q8_act_kernel(int8_t *q, float *d, float *s16, const float *x, int64_t ldx,
                              int64_t K, const float *g, float eps)
{
    __shared__ float red[32];
    twc_pdl_enter();
    const int64_t t = blockIdx.y;
    const float *xr = x + t * ldx;
    float inv = 1.0f;
    if (g) {
        float ss = 0.0f;
        for (int64_t k = threadIdx.x; k < K; k += blockDim.x)
            ss = fmaf(xr[k], xr[k], ss);
        ss = twc_block_sum(ss, red);
        inv = 1.0f / sqrtf(ss / (float)K + eps);
    }
    const int lane = threadIdx.x % 32;
    const int64_t b = (int64_t)blockIdx.x * Q8_WARPS + threadIdx.x / 32;
    if (b < K / 32) {
        const int64_t k = 32 * b + lane;
        float v = g ? xr[k] * inv * g[k] : xr[k];
        float a = twc_warp_max(fabsf(v));
        if (a < TW_Q8_ACT_TINY)
            a = 0.0f;
        float id = a > 0.0f ? __fdiv_rn(127.0f, a) : 0.0f, db = __fdiv_rn(a, 127.0f);
        int qi = __float2int_rn(__fmul_rn(v, id));
        q[t * K + k] = (int8_t)qi;
        int sum = qi; // over the lane's half of 16
        for (int o = 8; o > 0; o >>= 1)
            sum += __shfl_xor_sync(0xFFFFFFFFu, sum, o);
        if (lane == 0)
            d[t * (K / 32) + b] = db;
        if (lane % 16 == 0)
            s16[t * (K / 16) + 2 * b + lane / 16] = db * (float)sum;
    }
}

} // namespace

// Q8_0 at one row decodes cheaply enough in floats that the rounding step costs more than
// dp4a saves (Llama-3.2-1B decode 2-3 % slower on the H100); Q4_0 and Q4_K gain at any T
// (1B +12 %, 8B +30 %), and every format at T >= 2 (batch 8: 1.5-2.9x).
bool twc_gemv_int8(enum tw_dtype dt, int T)
{
    return has_dotq(dt) && (T >= 2 || dt != TW_DTYPE_Q8_0);
}

size_t twc_gemv_xq_bytes(int64_t K, int T)
{
    return xq_q_bytes(K, T) + 3 * xq_d_bytes(K, T); // d, then the sums of 16 (twice as many)
}

// Points a's int8 activations at their parts in the scratch xq (twc_gemv_xq_bytes); the
// outputs of a then read them (dotq) and not x, whose norm they hold.
static void use_xq(gemv_args &a, void *xq, int T)
{
    a.xq = (const int8_t *)xq;
    a.xd = (const float *)((char *)xq + xq_q_bytes(a.K, T));
    a.xs = (const float *)((const char *)a.xd + xq_d_bytes(a.K, T));
    a.nw = NULL;
}

// x (a's) rounded into the scratch a's int8 pointers name (use_xq), norm applied first.
static cudaError_t quantize_x(const gemv_args &a, int T, const twc_gemv_norm *norm, cudaStream_t s)
{
    dim3 grid((unsigned)((a.K / 32 + Q8_WARPS - 1) / Q8_WARPS), (unsigned)T);
    return twc_launch(q8_act_kernel, grid, 32 * Q8_WARPS, 0, s, (int8_t *)a.xq, (float *)a.xd,
                      (float *)a.xs, a.x, a.ldx, (int64_t)a.K,
                      norm ? norm->w : (const float *)NULL, norm ? norm->eps : 0.0f);
}

cudaError_t twc_gemv_multi(int n, const struct twc_gemv_out *outs, int64_t K, const float *x,
                           int64_t ldx, int T, const struct twc_gemv_norm *norm, void *xq,
                           cudaStream_t s)
{
    if (n < 1 || n > TWC_GEMV_MAX_OUTS || (norm && T > 1))
        return cudaErrorInvalidValue;
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        if (!shape_ok(outs[i].dt, K, T) || outs[i].N < 0)
            return cudaErrorInvalidValue;
        rows += outs[i].N;
    }
    if (rows > INT32_MAX)
        return cudaErrorInvalidValue;
    if (T == 0)
        return cudaSuccess;
    // One launch per dtype, over that dtype's outputs in their order; x rounded to int8 once,
    // before the first that takes it.
    bool done[TWC_GEMV_MAX_OUTS] = { false }, rounded = false;
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        gemv_args a = {};
        a.K = (int)K, a.x = x, a.ldx = ldx;
        a.nw = norm ? norm->w : NULL, a.eps = norm ? norm->eps : 0.0f;
        bool fast = x_fast(x, ldx, T) && (!norm || aligned(norm->w, 16)), wfast = true;
        for (int j = i; j < n; j++) {
            const twc_gemv_out &o = outs[j];
            if (done[j] || o.dt != outs[i].dt)
                continue;
            done[j] = true;
            if (o.N == 0)
                continue;
            a.o[a.n++] = { (const char *)o.w, o.row_bytes, o.N, o.y, o.ldy, o.bias, o.res, 0 };
            wfast = wfast && weights_fast(o.dt, o.w, o.row_bytes, K);
        }
        if (a.n == 0)
            continue;
        if (xq && wfast && twc_gemv_int8(outs[i].dt, T)) {
            use_xq(a, xq, T);
            cudaError_t e = rounded ? cudaSuccess : quantize_x(a, T, norm, s);
            if (e != cudaSuccess)
                return e;
            rounded = true;
        }
        launch<false>(outs[i].dt, a, T, fast && wfast, s);
    }
    return cudaGetLastError();
}

cudaError_t twc_gemv(enum tw_dtype dt, const void *w, size_t row_bytes, int64_t N, int64_t K,
                     const float *x, int64_t ldx, int T, float *y, int64_t ldy, const float *bias,
                     cudaStream_t s)
{
    struct twc_gemv_out o = { dt, w, row_bytes, N, y, ldy, bias, NULL };
    return twc_gemv_multi(1, &o, K, x, ldx, T, NULL, NULL, s);
}

cudaError_t twc_gemv_swiglu(enum tw_dtype dt, const void *wg, const void *wu, size_t row_bytes,
                            int64_t N, int64_t K, const float *x, int64_t ldx, int T, float *y,
                            int64_t ldy, const struct twc_gemv_norm *norm, void *xq,
                            cudaStream_t s)
{
    if (!shape_ok(dt, K, T) || N < 0 || N > INT32_MAX || (norm && T > 1))
        return cudaErrorInvalidValue;
    if (T == 0 || N == 0)
        return cudaSuccess;
    gemv_args a = {};
    a.o[0] = { (const char *)wg, row_bytes, N, y, ldy, NULL, NULL, 0 };
    a.n = 1, a.K = (int)K, a.x = x, a.ldx = ldx, a.wu = (const char *)wu;
    a.nw = norm ? norm->w : NULL, a.eps = norm ? norm->eps : 0.0f;
    bool wfast = weights_fast(dt, wg, row_bytes, K) && weights_fast(dt, wu, row_bytes, K);
    bool fast = x_fast(x, ldx, T) && (!norm || aligned(norm->w, 16)) && wfast;
    if (xq && wfast && twc_gemv_int8(dt, T)) {
        use_xq(a, xq, T);
        cudaError_t e = quantize_x(a, T, norm, s);
        if (e != cudaSuccess)
            return e;
    }
    launch<true>(dt, a, T, fast, s);
    return cudaGetLastError();
}

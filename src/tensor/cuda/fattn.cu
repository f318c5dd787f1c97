// Training attention on bf16 tensor cores, fused: the forward and both halves of the backward
// of softmax(scale q k^T + mask) v over packed examples without the scores ever in memory
// (FlashAttention-2's algorithm and work split: Dao, "FlashAttention-2: Faster Attention with
// Better Parallelism and Work Partitioning", 2023). Tiles of 64 keys, four warps a block, each
// owning 16 rows (the forward's: two tiles of 16, its query tiles 128 rows), mma.sync
// m16n8k16 with bf16 inputs and f32 accumulators (kernels.cuh's helpers): scores, probabilities
// and the accumulators stay in registers, a row's softmax inside the quad of lanes that holds it.
// q, k, v (and dO) come as bf16 copies (the caller rounds them once a layer); out, lse and the
// gradients are f32.
//
// The backward recomputes the probabilities from q, k and the forward's log-sum-exp and runs
// as two kernels, so that every gradient element is written by one block in a fixed order
// (no atomics: the same bits on every run): dK and dV a block per key tile and KV head (its
// warps own key rows: S^T = K Q^T, over its G query heads and every query tile that sees the
// keys), dQ a block per query tile. (With TWIN_FA_DQ=1 the first adds dQ too, in an order
// that counters fix: dq_inside, below.)
//
// The tiles a block walks (K and V in the forward and dQ's kernel, Q and dO in dK/dV's) are
// double-buffered: the next one is copied with cp.async while the current one is multiplied.
// Blocks are numbered heavy first (causal: the last query tiles see the most keys, the first
// key tiles the most queries), so that the long ones do not trail the grid.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cuda/kernels.cuh"

#define TQ    64  // query rows a tile
#define TK    64  // keys a tile (the same: the products below take 64 columns)
#define NT    128 // threads a block: four warps of 16 rows
#define LOG2E 1.4426950408889634f
#define LN2   0.6931471805599453f

struct fa_args {
    const __nv_bfloat16 *q, *k, *v, *dout;
    const float *out, *lse, *delta;
    const __nv_bfloat16 *outb; // the backward's out as bf16 (out NULL)
    float *o, *l, *dq, *dk, *dv;
    __nv_bfloat16 *ob; // the forward's output as bf16 (o NULL)
    float *part;       // the backward's split over query heads: dK, dV partials, or NULL
    unsigned *count;   // dQ's adds done, an int a (row, head, query tile), or NULL: dQ's
                       // own kernel
    int dq_mode;       // (bench/attn_cuda's variants) 1: dQ's adds unordered, 2: a float at a time
    const int32_t *start; // (B, T)
    int T, H, Hkv;
    int split; // dK/dV's blocks a KV head and key tile (each over G / split query heads)
    float scale;
    int window;
    bool assign; // dq, dk, dv written, not added to
};

// rows [r0, r0 + R) of x (rows of `heads` heads of D bf16; head h) into s (R rows D + 8
// apart: 16 bytes more than a multiple of 128 for D = 64, 128, so an ldmatrix's 8 rows fall in
// different banks), 16 bytes a copy; rows past T are 0.
template <int D, int R = 64>
static __device__ void stage(uint16_t *s, const __nv_bfloat16 *x, int r0, int T, int heads, int h)
{
    for (int i = threadIdx.x; i < R * D / 8; i += NT) {
        int r = i / (D / 8), c = i % (D / 8) * 8, t = r0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (t < T)
            v = *(const uint4 *)(x + ((size_t)t * heads + h) * D + c);
        *(uint4 *)(s + r * (D + 8) + c) = v;
    }
}

// stage's copy issued with cp.async (rows past T zero-filled); the caller commits and waits.
template <int D, int R = 64>
static __device__ void stage_async(uint16_t *s, const __nv_bfloat16 *x, int r0, int T, int heads,
                                   int h)
{
    for (int i = threadIdx.x; i < R * D / 8; i += NT) {
        int r = i / (D / 8), c = i % (D / 8) * 8, t = r0 + r;
        const __nv_bfloat16 *src = t < T ? x + ((size_t)t * heads + h) * D + c : x;
        twc_cp16(s + r * (D + 8) + c, src, t < T ? 16 : 0);
    }
}

// Elements of one staged tile of R rows.
template <int D, int R = 64> static __host__ __device__ __forceinline__ int tile_elems(void)
{
    return R * (D + 8);
}

// Key tiles double-buffered in KV (K, V, then K, V again): kv_issue starts the copies of the
// tile at k0 into the buffer pair of it & 1 (it = 0: the first); kv_ready, before tile it (at
// k0) is multiplied, starts the next one's into the other pair (when k0 + TK <= hi), waits
// for this one's and synchronises the block; it returns this tile's K (V follows). The tile
// is read until a barrier after it (the next kv_ready refills that pair).
template <int D>
static __device__ __forceinline__ void kv_issue(uint16_t *KV, const __nv_bfloat16 *k,
                                                const __nv_bfloat16 *v, int k0, int T, int Hkv,
                                                int kvh, int it = 0)
{
    uint16_t *Ks = KV + 2 * (it & 1) * tile_elems<D>();
    stage_async<D>(Ks, k, k0, T, Hkv, kvh);
    stage_async<D>(Ks + tile_elems<D>(), v, k0, T, Hkv, kvh);
    twc_cp_commit();
}

template <int D>
static __device__ __forceinline__ uint16_t *kv_ready(uint16_t *KV, const __nv_bfloat16 *k,
                                                     const __nv_bfloat16 *v, int it, int k0,
                                                     int hi, int T, int Hkv, int kvh)
{
    if (k0 + TK <= hi) {
        kv_issue<D>(KV, k, v, k0 + TK, T, Hkv, kvh, it + 1);
        twc_cp_wait<1>();
    } else {
        twc_cp_wait<0>();
    }
    __syncthreads();
    return KV + 2 * (it & 1) * tile_elems<D>();
}

template <int D> static __device__ __forceinline__ void zero_acc(float (&acc)[D / 8][4])
{
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
        acc[nd][0] = acc[nd][1] = acc[nd][2] = acc[nd][3] = 0.f;
}

// The keys [*lo, *hi] that some row of query tile [q0, q0 + R) sees (every key between: a row's
// keys run up to itself, and row t + 1's first key is at most t + 1), and the greatest of the
// rows' first keys in *max_lo (for full_tile). red: 8 ints of shared memory.
template <int R = TQ>
static __device__ void tile_keys(const int32_t *start_row, int q0, int T, int window, int *lo,
                                 int *hi, int *max_lo, int *red)
{
    int m = INT_MAX, x = INT_MIN;
    for (int r = threadIdx.x; r < R; r += NT)
        if (q0 + r < T) {
            int k = twc_key_lo(start_row, q0 + r, window);
            m = min(m, k), x = max(x, k);
        }
    m = __reduce_min_sync(0xffffffffu, m), x = __reduce_max_sync(0xffffffffu, x);
    if (threadIdx.x % 32 == 0)
        red[threadIdx.x / 32] = m, red[4 + threadIdx.x / 32] = x;
    __syncthreads();
    m = min(min(red[0], red[1]), min(red[2], red[3]));
    x = max(max(red[4], red[5]), max(red[6], red[7]));
    __syncthreads();
    *lo = m, *max_lo = x;
    *hi = min(q0 + R, T) - 1;
}

// Whether every row of the query tile [q0, q0 + R) sees every key of [k0, k0 + TK): the
// tile's rows all exist, its first comes after the last key, and no row's first key (max_lo:
// the greatest) is past k0. Such tiles (most of a causal square's) skip the mask.
template <int R>
static __device__ __forceinline__ bool full_tile(int q0, int k0, int T, int max_lo)
{
    return q0 + R <= T && q0 >= k0 + TK - 1 && max_lo <= k0;
}

// s[m] (16 x NC) = A (rows r0 + 16 m .. r0 + 16 m + 15 of a staged tile, m < WM) B^T (B: a
// staged tile of NC rows), over D: s[m][n] holds columns 8n .. 8n + 7 (element e: row g + 8
// (e / 2), column 2c + e % 2). Each fragment of B read from shared memory feeds WM products.
template <int D, int NC, int WM>
static __device__ __forceinline__ void mma_abt_m(float (&s)[WM][NC / 8][4], const uint16_t *A,
                                                 int r0, const uint16_t *Bm)
{
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int m = 0; m < WM; m++)
#pragma unroll
        for (int n = 0; n < NC / 8; n++)
            s[m][n][0] = s[m][n][1] = s[m][n][2] = s[m][n][3] = 0.f;
#pragma unroll
    for (int kd = 0; kd < D / 16; kd++) {
        uint32_t a[WM][4];
#pragma unroll
        for (int m = 0; m < WM; m++)
            twc_ldsm_x4(a[m], A + (r0 + 16 * m + lane % 16) * (D + 8) + 8 * (lane / 16) + 16 * kd);
#pragma unroll
        for (int np = 0; np < NC / 16; np++) {
            uint32_t b[4];
            twc_ldsm_x4(b, Bm + (16 * np + lane % 8 + 8 * (lane / 16)) * (D + 8) + 16 * kd +
                               8 * (lane / 8 % 2));
#pragma unroll
            for (int m = 0; m < WM; m++) {
                twc_mma_bf16(s[m][2 * np], a[m], b[0], b[1]);
                twc_mma_bf16(s[m][2 * np + 1], a[m], b[2], b[3]);
            }
        }
    }
}

// One tile of 16 rows: s = A (rows r0 .. r0 + 15) B^T.
template <int D, int NC = 64>
static __device__ __forceinline__ void mma_abt(float (&s)[NC / 8][4], const uint16_t *A, int r0,
                                               const uint16_t *Bm)
{
    mma_abt_m<D, NC, 1>(*reinterpret_cast<float(*)[1][NC / 8][4]>(&s), A, r0, Bm);
}

// o[m] (16 x D) += X[m] (16 x KR, mma_abt's layout, rounded to bf16) Y (a staged tile of KR rows
// of D), m < WM: o[m][nd] holds columns 8 nd .. 8 nd + 7. Each fragment of Y feeds WM products.
template <int D, int KR, int WM>
static __device__ __forceinline__ void mma_xy_m(float (&o)[WM][D / 8][4],
                                                const float (&x)[WM][KR / 8][4], const uint16_t *Y)
{
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int kt = 0; kt < KR / 16; kt++) {
        uint32_t xf[WM][4];
#pragma unroll
        for (int m = 0; m < WM; m++)
            twc_acc_to_a(xf[m], x[m][2 * kt], x[m][2 * kt + 1]);
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            uint32_t yb[4];
            twc_ldsm_x4_t(yb, Y + (16 * kt + lane % 8 + 8 * (lane / 8 % 2)) * (D + 8) + 16 * dp +
                                  8 * (lane / 16));
#pragma unroll
            for (int m = 0; m < WM; m++) {
                twc_mma_bf16(o[m][2 * dp], xf[m], yb[0], yb[1]);
                twc_mma_bf16(o[m][2 * dp + 1], xf[m], yb[2], yb[3]);
            }
        }
    }
}

// One tile of 16 rows: o += X Y, X's bf16 A fragments given (xf[kt]: keys 16 kt ..; as
// twc_acc_to_a packs them).
template <int D, int KR>
static __device__ __forceinline__ void
mma_xy_a(float (&o)[D / 8][4], const uint32_t (&xf)[KR / 16][4], const uint16_t *Y)
{
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int kt = 0; kt < KR / 16; kt++)
#pragma unroll
        for (int dp = 0; dp < D / 16; dp++) {
            uint32_t yb[4];
            twc_ldsm_x4_t(yb, Y + (16 * kt + lane % 8 + 8 * (lane / 8 % 2)) * (D + 8) + 16 * dp +
                                  8 * (lane / 16));
            twc_mma_bf16(o[2 * dp], xf[kt], yb[0], yb[1]);
            twc_mma_bf16(o[2 * dp + 1], xf[kt], yb[2], yb[3]);
        }
}

// One tile of 16 rows: o += X Y.
template <int D, int KR = 64>
static __device__ __forceinline__ void mma_xy(float (&o)[D / 8][4], const float (&x)[KR / 8][4],
                                              const uint16_t *Y)
{
    mma_xy_m<D, KR, 1>(*reinterpret_cast<float(*)[1][D / 8][4]>(&o),
                       *reinterpret_cast<const float(*)[1][KR / 8][4]>(&x), Y);
}

// dst rows (row0 + g + 8 i, i = 0, 1; those < T) of heads-wide rows, head h: += acc, or with
// add false = acc (a partial, written whole: rows no query sees get zeros).
template <int D>
static __device__ __forceinline__ void put_rows(float *dst, const float (&acc)[D / 8][4], int row0,
                                                int T, int heads, int h, bool add)
{
    const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int t = row0 + g + 8 * i;
        if (t >= T)
            continue;
        float *p = dst + ((size_t)t * heads + h) * D; // 4-byte aligned only (a carve-out)
#pragma unroll
        for (int nd = 0; nd < D / 8; nd++) {
            float *e = p + 8 * nd + 2 * c;
            e[0] = (add ? e[0] : 0.f) + acc[nd][2 * i];
            e[1] = (add ? e[1] : 0.f) + acc[nd][2 * i + 1];
        }
    }
}

// The forward's scores s (mma_abt's layout, WM tiles of 16 rows) times sc; with MASK the keys
// a row does not see (before its first, rlo, or after itself, t) -inf.
template <int WM, bool MASK>
static __device__ __forceinline__ void fwd_scores(float (&s)[WM][8][4], int k0, int c,
                                                  const int (&t)[WM][2], const int (&rlo)[WM][2],
                                                  float sc)
{
#pragma unroll
    for (int mt = 0; mt < WM; mt++)
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int j = k0 + 8 * n + 2 * c + e % 2, i = e / 2;
                bool on = !MASK || (j >= rlo[mt][i] && j <= t[mt][i]);
                s[mt][n][e] = on ? s[mt][n][e] * sc : -INFINITY;
            }
}

// ---- forward: a block per (query tile, head, row of the batch), an online softmax.

// Query tiles of 64 WM rows: each warp owns WM tiles of 16 (FlashAttention-2's forward gives
// a warp two, so that each K and V fragment read from shared memory feeds two products).
// Registers capped for MINB blocks an SM.
template <int D, int WM, int MINB>
static __global__ void __launch_bounds__(NT, MINB) fa_fwd(struct fa_args a)
{
    constexpr int QT = 64 * WM;
    extern __shared__ uint4 smem_u4[];
    uint16_t *Qs = (uint16_t *)smem_u4, *KV = Qs + tile_elems<D, QT>(); // K, V twice
    __shared__ int red[8];
    const int q0 = (gridDim.z - 1 - blockIdx.z) * QT, h = blockIdx.x, b = blockIdx.y;
    const int T = a.T, H = a.H;
    const int kvh = h / (H / a.Hkv), w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int32_t *st = a.start + (size_t)b * T;
    const __nv_bfloat16 *q = a.q + (size_t)b * T * H * D;
    const __nv_bfloat16 *k = a.k + (size_t)b * T * a.Hkv * D;
    const __nv_bfloat16 *v = a.v + (size_t)b * T * a.Hkv * D;
    twc_pdl_enter();
    stage_async<D, QT>(Qs, q, q0, T, H, h); // (waited for with the first K, V)
    twc_cp_commit();
    int lo, hi, max_lo;
    tile_keys<QT>(st, q0, T, a.window, &lo, &hi, &max_lo, red);
    int t[WM][2], rlo[WM][2];
    float m[WM][2], l[WM][2], o[WM][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < WM; mt++) {
        for (int i = 0; i < 2; i++) {
            t[mt][i] = q0 + 16 * (WM * w + mt) + g + 8 * i;
            rlo[mt][i] = t[mt][i] < T ? twc_key_lo(st, t[mt][i], a.window) : INT_MAX;
            m[mt][i] = -INFINITY, l[mt][i] = 0.f;
        }
        zero_acc<D>(o[mt]);
    }
    const float sc = a.scale * LOG2E;
    int k0 = lo / TK * TK;
    kv_issue<D>(KV, k, v, k0, T, a.Hkv, kvh);
    for (int it = 0; k0 <= hi; k0 += TK, it++) {
        uint16_t *Ks = kv_ready<D>(KV, k, v, it, k0, hi, T, a.Hkv, kvh),
                 *Vs = Ks + tile_elems<D>();
        float s[WM][8][4];
        mma_abt_m<D, 64, WM>(s, Qs, 16 * WM * w, Ks);
        if (full_tile<QT>(q0, k0, T, max_lo))
            fwd_scores<WM, false>(s, k0, c, t, rlo, sc);
        else
            fwd_scores<WM, true>(s, k0, c, t, rlo, sc);
#pragma unroll
        for (int mt = 0; mt < WM; mt++) {
#pragma unroll
            for (int i = 0; i < 2; i++) {
                float mx = -INFINITY;
#pragma unroll
                for (int n = 0; n < 8; n++)
                    mx = fmaxf(mx, fmaxf(s[mt][n][2 * i], s[mt][n][2 * i + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                float m_new = fmaxf(m[mt][i], mx);
                float m_sub = m_new == -INFINITY ? 0.f : m_new; // all masked so far: no NaN
                float alpha = twc_exp2_ftz(m[mt][i] - m_sub);
                m[mt][i] = m_new;
                l[mt][i] *= alpha;
#pragma unroll
                for (int n = 0; n < 8; n++)
#pragma unroll
                    for (int e = 2 * i; e < 2 * i + 2; e++) {
                        float p = twc_exp2_ftz(s[mt][n][e] - m_sub);
                        s[mt][n][e] = p;
                        l[mt][i] += p;
                    }
#pragma unroll
                for (int nd = 0; nd < D / 8; nd++)
                    o[mt][nd][2 * i] *= alpha, o[mt][nd][2 * i + 1] *= alpha;
            }
        }
        mma_xy_m<D, 64, WM>(o, s, Vs);
        __syncthreads(); // the buffer is refilled next
    }
#pragma unroll
    for (int mt = 0; mt < WM; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float lt = l[mt][i] + __shfl_xor_sync(0xffffffffu, l[mt][i], 1);
            lt += __shfl_xor_sync(0xffffffffu, lt, 2);
            if (t[mt][i] >= T)
                continue;
            float inv = 1.f / lt;
            size_t row = (((size_t)b * T + t[mt][i]) * H + h) * D;
            float *dst = a.o ? a.o + row : NULL;
            __nv_bfloat16 *db = a.ob ? a.ob + row : NULL;
#pragma unroll
            for (int nd = 0; nd < D / 8; nd++) { // dst: 4-byte aligned only
                float x0 = o[mt][nd][2 * i] * inv, x1 = o[mt][nd][2 * i + 1] * inv;
                if (dst)
                    dst[8 * nd + 2 * c] = x0, dst[8 * nd + 2 * c + 1] = x1;
                else
                    *(__nv_bfloat162 *)(db + 8 * nd + 2 * c) = __floats2bfloat162_rn(x0, x1);
            }
            if (c == 0)
                a.l[((size_t)b * T + t[mt][i]) * H + h] = (m[mt][i] + log2f(lt)) * LN2;
        }
}

// ---- backward. delta[t, h] = dO . O, and dO's bf16 copy for the kernels below (rounded as
// twc_to_bf16 rounds): L = min(32, D / 4) lanes a (token, head) row, four floats a step,
// loaded as one float4 where the rows are 16-byte aligned (VEC), else one at a time, summed in
// the same order either way (the same bits whatever the buffers' alignment).

// It also zeroes dQ's n_count counters (count: NULL when there are none). O as f32 or (OT
// bf16) the forward's bf16 output (grad.h's hand-offs: as FlashAttention keeps it).
template <bool VEC, typename OT>
static __global__ void fa_delta(float *delta, __nv_bfloat16 *dout_b, const float *dout,
                                const OT *out, int64_t rows, int D, unsigned *count,
                                int64_t n_count)
{
    twc_pdl_enter();
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n_count;
         j += (int64_t)gridDim.x * blockDim.x)
        count[j] = 0;
    const int L = min(32, D / 4), lane = threadIdx.x % L;
    int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / L;
    float s = 0;
    if (i < rows) {
        const OT *o = out + i * D;
        const float *g = dout + i * D;
        __nv_bfloat16 *gb = dout_b + i * D;
        for (int d = lane * 4; d < D; d += L * 4) {
            float4 a, b;
            if constexpr (VEC) {
                a = *(const float4 *)(g + d);
                if constexpr (sizeof(OT) == 2) { // four bf16: 8 bytes
                    uint2 u = *(const uint2 *)(o + d);
                    float2 lo = twc_unpack_bf16(u.x), hi = twc_unpack_bf16(u.y);
                    b = make_float4(lo.x, lo.y, hi.x, hi.y);
                } else {
                    b = *(const float4 *)(o + d);
                }
                *(uint2 *)(gb + d) = make_uint2(twc_pack_bf16(a.x, a.y), twc_pack_bf16(a.z, a.w));
            } else {
                a = make_float4(g[d], g[d + 1], g[d + 2], g[d + 3]);
                b = make_float4((float)o[d], (float)o[d + 1], (float)o[d + 2], (float)o[d + 3]);
                // (dout_b 4-byte aligned: the bf16 scratch's, offsets of whole heads)
                *(__nv_bfloat162 *)(gb + d) = __floats2bfloat162_rn(a.x, a.y);
                *(__nv_bfloat162 *)(gb + d + 2) = __floats2bfloat162_rn(a.z, a.w);
            }
            s = fmaf(a.w, b.w, fmaf(a.z, b.z, fmaf(a.y, b.y, fmaf(a.x, b.x, s))));
        }
    }
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) // (the lanes of other rows add nothing: m < L)
        if (m < L)
            s += __shfl_xor_sync(0xffffffffu, s, m);
    if (lane == 0 && i < rows)
        delta[i] = s;
}

// The first query tile of QT rows a head's walk over the keys [k0, ..] looks at: up from the
// keys' own, or (DOWN) down from the last.
template <int QT, bool DOWN> static __device__ __forceinline__ int first_tile(int k0, int T)
{
    return DOWN ? (T - 1) / QT * QT : k0 / QT * QT;
}

// The first key each query tile of QT rows from t0 (a multiple of QT) on sees, into tlo (as
// tile_keys counts them: the least over the tile's rows; INT_MAX for none), and the greatest
// of its rows' first keys into thi (full_tile's max_lo): a warp's 32 rows lie in one tile,
// each thread's loads issued together. Ends with a barrier.
template <int QT>
static __device__ void tiles_lo(int *tlo, int *thi, const int32_t *st, int t0, int T, int window)
{
    const int n = (T - t0 + QT - 1) / QT;
    for (int i = threadIdx.x; i < n; i += NT)
        tlo[i] = INT_MAX, thi[i] = INT_MIN;
    __syncthreads();
    for (int r = threadIdx.x - threadIdx.x % 32; r < T - t0; r += 4 * NT) {
        int v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int t = t0 + r + threadIdx.x % 32 + u * NT;
            v[u] = t < T ? twc_key_lo(st, t, window) : INT_MAX;
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int m = __reduce_min_sync(0xffffffffu, v[u]);
            int x = __reduce_max_sync(0xffffffffu, v[u] == INT_MAX ? INT_MIN : v[u]);
            if (threadIdx.x % 32 == 0 && r + u * NT < T - t0) {
                atomicMin(&tlo[(r + u * NT) / QT], m);
                atomicMax(&thi[(r + u * NT) / QT], x);
            }
        }
    }
    __syncthreads();
}

// From (*gh, *q0) on, the first (query head below G, query tile of QT rows) whose keys (*lo,
// its first, from tiles_lo's tlo of the tiles from t0 on) meet [k0, k1] (*gh = G: none left),
// heads in order, each head's tiles up (or DOWN) from first_tile's. Whether a tile sees them
// does not depend on the head. The tiles a key tile takes and the key tiles that take a query
// tile are runs without gaps, whatever the rows' starts: dQ's counters below depend on it.
template <int QT, bool DOWN>
static __device__ __forceinline__ void next_seen(const int *tlo, int t0, int k0, int k1, int T,
                                                 int G, int *gh, int *q0, int *lo)
{
    while (*gh < G) {
        if (DOWN ? *q0 + QT <= k0 : *q0 >= T) { // past the tiles that can see the keys
            ++*gh, *q0 = first_tile<QT, DOWN>(k0, T);
            continue;
        }
        *lo = tlo[(*q0 - t0) / QT];
        if (*lo <= k1 && min(*q0 + QT, T) - 1 >= k0)
            return;
        *q0 += DOWN ? -QT : QT;
    }
}

// Query tile q0's Q, dO (QT rows of head h) and its rows' lse, delta and starts (rv: 3 QT
// values) issued with cp.async into one of the double buffers; rows past T are zeros.
template <int D, int QT>
static __device__ __forceinline__ void
qtile_issue(uint16_t *Qs, float *rv, const struct fa_args &a, const __nv_bfloat16 *q,
            const __nv_bfloat16 *dout, const int32_t *st, int b, int q0, int h)
{
    const int T = a.T, H = a.H;
    stage_async<D, QT>(Qs, q, q0, T, H, h);
    stage_async<D, QT>(Qs + tile_elems<D, QT>(), dout, q0, T, H, h);
    for (int r = threadIdx.x; r < QT; r += NT) {
        int t = q0 + r, n = t < T ? 4 : 0;
        size_t at = ((size_t)b * T + (t < T ? t : 0)) * H + h;
        twc_cp4(rv + r, a.lse + at, n);
        twc_cp4(rv + QT + r, a.delta + at, n);
        twc_cp4(rv + 2 * QT + r, st + (t < T ? t : 0), n);
    }
    twc_cp_commit();
}

// ---- dQ's ordered sums: with DQ, dK/dV's kernel adds each query tile's share of dQ too, and
// the blocks of one (row, head) add into a tile in the order of their key tiles, each waiting
// for the count of adds done before it, so that the sums have the same bits on every run (the
// deterministic mode of FlashAttention-3's Hopper backward orders its dQ adds with a counter
// a tile as well). The blocks walk the query tiles down from the last,
// in step: every key tile's block reaches a tile at the same point of its walk, and the one
// it waits for (the key tile before, a block started no later: blocks start in the order of
// their index, key tiles slowest) is at least as far along, so the waits are short and cannot
// close a cycle. The counters (one an int per query tile of each row and head) are zeroed by
// fa_delta, before each backward.

static __device__ __forceinline__ unsigned ld_acquire(const unsigned *p)
{
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// The block waits until *count == want (thread 0 reads; the barrier passes what it saw on).
static __device__ __forceinline__ void wait_count(const unsigned *count, unsigned want)
{
    if (threadIdx.x == 0)
        while (ld_acquire(count) != want)
            ;
    __syncthreads();
}

// After the block's adds: *count += 1, once they are visible to the whole GPU (the barrier
// orders every thread's adds before thread 0's release).
static __device__ __forceinline__ void bump_count(unsigned *count)
{
    __syncthreads();
    if (threadIdx.x == 0)
        asm volatile("fence.acq_rel.gpu;\n"
                     "red.relaxed.gpu.global.add.u32 [%0], 1;\n" ::"l"(count)
                     : "memory");
}

// Query tile q0 (QT rows) of head h, row b: dQ += dS K over the block's 64 keys, dS^T being
// the warps' bf16 fragments of dS / scale (kv_ds's pd, rows our keys) and Ks the staged keys; the
// adds wait for the `before` key tiles before ours that add into the tile. Ends with a barrier.
template <int D, int QT>
static __device__ __forceinline__ void add_dq(const struct fa_args &a,
                                              const uint32_t (&ds)[QT / 16][4], uint16_t *dSs,
                                              const uint16_t *Ks, int b, int h, int q0, int before)
{
    constexpr int RG = QT / 16, W = D / (4 / RG); // row groups; each warp's columns
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
#pragma unroll
    for (int n = 0; n < QT / 8; n++)
#pragma unroll
        for (int i = 0; i < 2; i++) // ds[n / 2][2 (n % 2) + i]: row g + 8 i, columns 8 n + 2 c ..
            *(uint32_t *)(dSs + (16 * w + g + 8 * i) * (QT + 8) + 8 * n + 2 * c) =
                ds[n / 2][2 * (n % 2) + i];
    __syncthreads();
    const int m0 = 16 * (w % RG), n0 = W * (w / RG);
    float o[W / 8][4];
#pragma unroll
    for (int nd = 0; nd < W / 8; nd++)
        o[nd][0] = o[nd][1] = o[nd][2] = o[nd][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < TK / 16; kk++) {
        uint32_t af[4]; // (query m0 + .., key 16 kk + ..) from dS^T's rows of keys
        twc_ldsm_x4_t(af, dSs + (16 * kk + lane % 8 + 8 * (lane / 16)) * (QT + 8) + m0 +
                              8 * (lane / 8 % 2));
#pragma unroll
        for (int dp = 0; dp < W / 16; dp++) {
            uint32_t yb[4];
            twc_ldsm_x4_t(yb, Ks + (16 * kk + lane % 8 + 8 * (lane / 8 % 2)) * (D + 8) + n0 +
                                  16 * dp + 8 * (lane / 16));
            twc_mma_bf16(o[2 * dp], af, yb[0], yb[1]);
            twc_mma_bf16(o[2 * dp + 1], af, yb[2], yb[3]);
        }
    }
#pragma unroll
    for (int nd = 0; nd < W / 8; nd++) // ds is dS / scale
        o[nd][0] *= a.scale, o[nd][1] *= a.scale, o[nd][2] *= a.scale, o[nd][3] *= a.scale;
    const int T = a.T, nqt = (T + QT - 1) / QT;
    unsigned *count = a.count + ((size_t)b * a.H + h) * nqt + q0 / QT;
    const bool order = !(a.dq_mode & 1);
    if (order)
        wait_count(count, (unsigned)before);
    if (((uintptr_t)a.dq & 15) == 0 && !(a.dq_mode & 2)) {
        // four floats a reduction: lanes 2j and 2j + 1 trade halves, so that the even one holds
        // 4 columns of row g and the odd one the same 4 of row g + 8
        const bool odd = c & 1;
        int t = q0 + m0 + g + (odd ? 8 : 0);
        float *p = a.dq + (((size_t)b * T + t) * a.H + h) * D + n0 + 2 * (c & ~1);
#pragma unroll
        for (int nd = 0; nd < W / 8; nd++) {
            float s0 = odd ? o[nd][0] : o[nd][2], s1 = odd ? o[nd][1] : o[nd][3];
            float r0 = __shfl_xor_sync(0xffffffffu, s0, 1),
                  r1 = __shfl_xor_sync(0xffffffffu, s1, 1);
            float v0 = odd ? r0 : o[nd][0], v1 = odd ? r1 : o[nd][1];
            float v2 = odd ? o[nd][2] : r0, v3 = odd ? o[nd][3] : r1;
            if (t < T)
                asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(p + 8 * nd),
                             "f"(v0), "f"(v1), "f"(v2), "f"(v3)
                             : "memory");
        }
    } else {
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int t = q0 + m0 + g + 8 * i;
            if (t >= T)
                continue;
            float *p = a.dq + (((size_t)b * T + t) * a.H + h) * D + n0;
#pragma unroll
            for (int nd = 0; nd < W / 8; nd++) {
                atomicAdd(p + 8 * nd + 2 * c, o[nd][2 * i]);
                atomicAdd(p + 8 * nd + 2 * c + 1, o[nd][2 * i + 1]);
            }
        }
    }
    if (order)
        bump_count(count);
    else
        __syncthreads();
}

// dK/dV's P^T and dS^T / scale (dk is scaled once at the end) as bf16 A fragments (pp, pd:
// mma_xy_a's), from S^T and dP^T (mma_abt's layout: rows the warp's keys kr, columns the
// tile's QT queries from q0) and the queries' lse (ls), delta (dls) and starts (rst); with
// MASK the probabilities of pairs the mask hides are 0. Each pair of columns is packed as
// soon as it is made, so that the f32 values die early (registers).
template <int QT, bool MASK>
static __device__ __forceinline__ void
kv_ds(uint32_t (&pp)[QT / 16][4], uint32_t (&pd)[QT / 16][4], const float (&s)[QT / 8][4],
      const float (&dp)[QT / 8][4], const float *ls, const float *dls, const int *rst, int q0,
      const int (&kr)[2], int T, int window, float sc)
{
    const int c = threadIdx.x % 4;
#pragma unroll
    for (int kt = 0; kt < QT / 16; kt++) {
        float p[2][4], d[2][4];
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int n = 2 * kt + hf, col0 = 8 * n + 2 * c;
            const float2 l = *(const float2 *)(ls + col0), dl = *(const float2 *)(dls + col0);
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int col = col0 + e % 2, t = q0 + col, j = kr[e / 2];
                bool on = !MASK || (t < T && j <= t && j >= twc_key_lo_at(rst[col], t, window));
                float pv = on ? twc_exp2_ftz(s[n][e] * sc - (e % 2 ? l.y : l.x) * LOG2E) : 0.f;
                p[hf][e] = pv;
                d[hf][e] = pv * (dp[n][e] - (e % 2 ? dl.y : dl.x));
            }
        }
        twc_acc_to_a(pp[kt], p[0], p[1]);
        twc_acc_to_a(pd[kt], d[0], d[1]);
    }
}

// A block per (key tile, KV head and part, row of the batch): dK and dV of its keys over the
// part's G / split query heads and every query tile (of QT rows) that sees them. Warp w owns
// keys k0 + 16 w ..: S^T = K Q^T and dP^T = V dO^T in its registers, then dV += P^T dO and dK
// += dS^T Q. With split > 1 each part writes its own partial (fa_sum_parts adds them up): on
// a grid of few blocks (one row of the 8B: 256) the first key tiles' blocks, which every query
// sees, would otherwise run alone at the end. With DQ the block also adds dS K, the keys'
// share of the tile's dQ, in key-tile order (above; the query tiles walked down), through dS
// in shared memory: warp w takes query rows 16 (w % (QT / 16)) .. and a 1 / (64 / QT) part of
// the D columns.
template <int D, int MINB, int QT, bool DQ>
static __global__ void __launch_bounds__(NT, MINB) fa_bwd_kv(struct fa_args a)
{
    extern __shared__ uint4 smem_u4[];
    uint16_t *Ks = (uint16_t *)smem_u4, *Vs = Ks + tile_elems<D>();
    uint16_t *QD = Vs + tile_elems<D>();                      // Q, dO twice
    uint16_t *dSs = QD + 4 * tile_elems<D, QT>();             // (DQ) dS^T: 64 keys of QT + 8 apart
    float *RV = (float *)(dSs + (DQ ? tile_elems<QT>() : 0)); // twice: lse, delta, start
    const int k0 = blockIdx.z * TK, kvh = blockIdx.x / a.split, part = blockIdx.x % a.split;
    const int b = blockIdx.y, T = a.T, H = a.H;
    int *tlo = (int *)(RV + 6 * QT);                   // tiles_lo's, of the query tiles from t0 on
    int *thi = tlo + (T - k0 / QT * QT + QT - 1) / QT; // and their rows' greatest first key
    const int G = H / a.Hkv, w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, g_end = (part + 1) * (G / a.split);
    const int32_t *st = a.start + (size_t)b * T;
    const __nv_bfloat16 *q = a.q + (size_t)b * T * H * D, *dout = a.dout + (size_t)b * T * H * D;
    const __nv_bfloat16 *k = a.k + (size_t)b * T * a.Hkv * D;
    const __nv_bfloat16 *v = a.v + (size_t)b * T * a.Hkv * D;
    twc_pdl_enter();
    stage_async<D>(Ks, k, k0, T, a.Hkv, kvh); // (waited for with the first query tile)
    stage_async<D>(Vs, v, k0, T, a.Hkv, kvh);
    twc_cp_commit();
    float dk[D / 8][4], dv[D / 8][4];
    zero_acc<D>(dk), zero_acc<D>(dv);
    const int k1 = min(k0 + TK, T) - 1;
    const float sc = a.scale * LOG2E;
    const int kr[2] = { k0 + 16 * w + g, k0 + 16 * w + g + 8 };
    // the (query head, query tile) pairs whose queries see some key of ours, in order, found
    // from the tiles' first keys (no barrier a step): the first one's Q, dO and row values
    // copied ahead, each next one's during the current one's products
    const int t0 = k0 / QT * QT;
    tiles_lo<QT>(tlo, thi, st, t0, T, a.window);
    int gh = part * (G / a.split), q0 = first_tile<QT, DQ>(k0, T), lo;
    next_seen<QT, DQ>(tlo, t0, k0, k1, T, g_end, &gh, &q0, &lo);
    if (gh < g_end)
        qtile_issue<D, QT>(QD, RV, a, q, dout, st, b, q0, kvh * G + gh);
    for (int it = 0; gh < g_end; it++) {
        const int h = kvh * G + gh;
        uint16_t *Qs = QD + 2 * (it & 1) * tile_elems<D, QT>(), *dOs = Qs + tile_elems<D, QT>();
        const float *ls = RV + 3 * QT * (it & 1), *dls = ls + QT;
        const int *rst = (const int *)(dls + QT);
        int ngh = gh, nq0 = q0 + (DQ ? -QT : QT), nlo;
        next_seen<QT, DQ>(tlo, t0, k0, k1, T, g_end, &ngh, &nq0, &nlo);
        if (ngh < g_end) {
            qtile_issue<D, QT>(QD + 2 * (~it & 1) * tile_elems<D, QT>(), RV + 3 * QT * (~it & 1),
                               a, q, dout, st, b, nq0, kvh * G + ngh);
            twc_cp_wait<1>();
        } else {
            twc_cp_wait<0>();
        }
        __syncthreads();
        float s[QT / 8][4], dp[QT / 8][4];
        mma_abt<D, QT>(s, Ks, 16 * w, Qs);   // rows: our keys; columns: the tile's queries
        mma_abt<D, QT>(dp, Vs, 16 * w, dOs); // dP^T
        uint32_t pp[QT / 16][4], pd[QT / 16][4];
        if (full_tile<QT>(q0, k0, T, thi[(q0 - t0) / QT]))
            kv_ds<QT, false>(pp, pd, s, dp, ls, dls, rst, q0, kr, T, a.window, sc);
        else
            kv_ds<QT, true>(pp, pd, s, dp, ls, dls, rst, q0, kr, T, a.window, sc);
        mma_xy_a<D, QT>(dv, pp, dOs);
        mma_xy_a<D, QT>(dk, pd, Qs);
        if constexpr (DQ)
            add_dq<D, QT>(a, pd, dSs, Ks, b, h, q0, blockIdx.z - lo / TK);
        __syncthreads(); // the buffers and the row values are refilled next
        gh = ngh, q0 = nq0, lo = nlo;
    }
    twc_cp_wait<0>(); // (K and V's copies, had no query tile seen them)
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
        dk[nd][0] *= a.scale, dk[nd][1] *= a.scale, dk[nd][2] *= a.scale, dk[nd][3] *= a.scale;
    // one part: added into dK, dV; else this part's partials (dK's split of them, then dV's)
    size_t off = (size_t)b * T * a.Hkv * D, nk = (size_t)gridDim.y * T * a.Hkv * D;
    bool whole = a.split == 1;
    float *pk = whole ? a.dk + off : a.part + part * nk + off;
    float *pv = whole ? a.dv + off : a.part + (a.split + part) * nk + off;
    put_rows<D>(pk, dk, k0 + 16 * w, T, a.Hkv, kvh, whole && !a.assign);
    put_rows<D>(pv, dv, k0 + 16 * w, T, a.Hkv, kvh, whole && !a.assign);
}

// dk, dv (n values each) += their split partials (part: dK's split of n, then dV's), in order
// (= with assign).
static __global__ void fa_sum_parts(float *dk, float *dv, const float *part, int64_t n, int split,
                                    bool assign)
{
    twc_pdl_enter();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float sk = 0, sv = 0;
        for (int j = 0; j < split; j++)
            sk += part[(size_t)j * n + i], sv += part[(size_t)(split + j) * n + i];
        dk[i] = (assign ? 0.f : dk[i]) + sk, dv[i] = (assign ? 0.f : dv[i]) + sv;
    }
}

// dQ's dS / scale (dq is scaled once at the end) into s, from the scores s and dP (mma_abt's
// layout, 16 rows), the rows' lse * log2(e) (l2) and delta (dl); with MASK the probabilities
// of keys a row does not see are 0.
template <bool MASK>
static __device__ __forceinline__ void dq_ds(float (&s)[8][4], const float (&dp)[8][4], int k0,
                                             int c, const int (&t)[2], const int (&rlo)[2],
                                             const float (&l2)[2], const float (&dl)[2], float sc)
{
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int j = k0 + 8 * n + 2 * c + e % 2, i = e / 2;
            bool on = !MASK || (j >= rlo[i] && j <= t[i]);
            float p = on ? twc_exp2_ftz(s[n][e] * sc - l2[i]) : 0.f;
            s[n][e] = p * (dp[n][e] - dl[i]);
        }
}

// A block per (query tile, head, row of the batch): dQ += dS K over the keys the tile sees,
// S and dP = dO V^T recomputed in the warps' registers.
template <int D, int MINB>
static __global__ void __launch_bounds__(NT, MINB) fa_bwd_q(struct fa_args a)
{
    extern __shared__ uint4 smem_u4[];
    uint16_t *Qs = (uint16_t *)smem_u4, *dOs = Qs + tile_elems<D>();
    uint16_t *KV = dOs + tile_elems<D>(); // K, V twice
    __shared__ int red[8];
    const int q0 = (gridDim.z - 1 - blockIdx.z) * TQ, h = blockIdx.x, b = blockIdx.y;
    const int T = a.T, H = a.H;
    const int kvh = h / (H / a.Hkv), w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, c = lane % 4;
    const int32_t *st = a.start + (size_t)b * T;
    const __nv_bfloat16 *q = a.q + (size_t)b * T * H * D, *dout = a.dout + (size_t)b * T * H * D;
    const __nv_bfloat16 *k = a.k + (size_t)b * T * a.Hkv * D;
    const __nv_bfloat16 *v = a.v + (size_t)b * T * a.Hkv * D;
    twc_pdl_enter();
    stage_async<D>(Qs, q, q0, T, H, h); // (waited for with the first K, V)
    stage_async<D>(dOs, dout, q0, T, H, h);
    twc_cp_commit();
    int lo, hi, max_lo;
    tile_keys(st, q0, T, a.window, &lo, &hi, &max_lo, red);
    int t[2], rlo[2];
    float l2[2], dl[2];
    for (int i = 0; i < 2; i++) {
        t[i] = q0 + 16 * w + g + 8 * i;
        bool in = t[i] < T;
        size_t at = ((size_t)b * T + (in ? t[i] : 0)) * H + h;
        rlo[i] = in ? twc_key_lo(st, t[i], a.window) : INT_MAX;
        l2[i] = in ? a.lse[at] * LOG2E : 0.f;
        dl[i] = in ? a.delta[at] : 0.f;
    }
    float dq[D / 8][4];
    zero_acc<D>(dq);
    const float sc = a.scale * LOG2E;
    int k0 = lo / TK * TK;
    kv_issue<D>(KV, k, v, k0, T, a.Hkv, kvh);
    for (int it = 0; k0 <= hi; k0 += TK, it++) {
        uint16_t *Ks = kv_ready<D>(KV, k, v, it, k0, hi, T, a.Hkv, kvh),
                 *Vs = Ks + tile_elems<D>();
        float s[8][4], dp[8][4];
        mma_abt<D>(s, Qs, 16 * w, Ks);
        mma_abt<D>(dp, dOs, 16 * w, Vs);
        if (full_tile<TQ>(q0, k0, T, max_lo))
            dq_ds<false>(s, dp, k0, c, t, rlo, l2, dl, sc);
        else
            dq_ds<true>(s, dp, k0, c, t, rlo, l2, dl, sc);
        mma_xy<D>(dq, s, Ks);
        __syncthreads(); // the buffer is refilled next
    }
#pragma unroll
    for (int nd = 0; nd < D / 8; nd++)
        dq[nd][0] *= a.scale, dq[nd][1] *= a.scale, dq[nd][2] *= a.scale, dq[nd][3] *= a.scale;
    put_rows<D>(a.dq + (size_t)b * T * H * D, dq, q0 + 16 * w, T, H, h, !a.assign);
}

// ---- launchers.

// Q (64 WM rows) and twice K, V: tiles in bf16.
template <int D, int WM> static size_t fwd_smem(void)
{
    return (size_t)(tile_elems<D, 64 * WM>() + 4 * tile_elems<D>()) * 2;
}

// dK/dV's: K, V and twice Q, dO (query tiles of QT rows), with DQ dS^T; twice the query
// tile's lse, delta and starts; the first keys of the query tiles (T rows at most).
template <int D, int QT, bool DQ> static size_t bwd_kv_smem(int T)
{
    return (size_t)(2 * tile_elems<D>() + 4 * tile_elems<D, QT>() + (DQ ? tile_elems<QT>() : 0)) *
               2 +
           6 * QT * 4 + (size_t)((T + QT - 1) / QT) * 8;
}

// dQ's: Q, dO and twice K, V.
template <int D> static size_t bwd_q_smem(void)
{
    return (size_t)6 * tile_elems<D>() * 2;
}

bool twc_flash_ok(int D)
{
    return D == 32 || D == 64 || D == 128;
}

template <int D, int WM, int MINB>
static cudaError_t fwd_launch(const struct fa_args *a, int B, cudaStream_t s)
{
    size_t sm = fwd_smem<D, WM>();
    void (*k)(struct fa_args) = fa_fwd<D, WM, MINB>;
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    if (e != cudaSuccess)
        return e;
    const int qt = 64 * WM;
    dim3 grid((unsigned)a->H, (unsigned)B, (unsigned)((a->T + qt - 1) / qt)); // tiles slowest
    return twc_launch(k, grid, dim3(NT), sm, s, *a);
}

template <int D> static cudaError_t fwd_d(const struct fa_args *a, int B, cudaStream_t s)
{
#ifdef FA_SWEEP
    // bench/attn_cuda's forward variants (TWIN_FA_FWD=i): 16-row tiles a warp (WM) and the
    // blocks an SM the registers are capped for
    const char *e = getenv("TWIN_FA_FWD");
    constexpr int minb0 = D <= 64 ? 4 : 1; // before two tiles a warp
    switch (e ? atoi(e) : -1) {
    case 0:
        return fwd_launch<D, 1, minb0>(a, B, s);
    case 1:
        return fwd_launch<D, 2, 1>(a, B, s);
    case 2:
        return fwd_launch<D, 2, 2>(a, B, s);
    case 3:
        return fwd_launch<D, 2, 3>(a, B, s);
    case 4:
        return fwd_launch<D, 1, 2>(a, B, s);
    default:
        break;
    }
#endif
    // Two 16-row tiles a warp for D = 64 and 128 (H200, bench/attn_cuda, docs/perf.md: the 8B's
    // forward 0.258 -> 0.226 ms a layer, the 1B's 0.522 -> 0.509 with the registers capped for
    // two blocks an SM); D = 32 (not measured) as before: one tile, four blocks an SM.
    constexpr int wm = D >= 64 ? 2 : 1, minb = D == 128 ? 1 : D == 64 ? 2 : 4;
    return fwd_launch<D, wm, minb>(a, B, s);
}

// dK/dV's kernel (blocks capped at MINB an SM, query tiles of QT rows), with DQ adding dQ
// too, else dQ's own kernel after it (capped at MINB_Q).
template <int D, int MINB, int QT, bool DQ, int MINB_Q = 1>
static cudaError_t bwd_launch(const struct fa_args *a, int B, cudaStream_t s)
{
    size_t skv = bwd_kv_smem<D, QT, DQ>(a->T), sq = bwd_q_smem<D>();
    void (*kv)(struct fa_args) = fa_bwd_kv<D, MINB, QT, DQ>;
    void (*qk)(struct fa_args) = fa_bwd_q<D, MINB_Q>;
    cudaError_t e =
        cudaFuncSetAttribute(kv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)skv);
    if (e == cudaSuccess && !DQ)
        e = cudaFuncSetAttribute(qk, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sq);
    if (e != cudaSuccess)
        return e;
    dim3 gkv((unsigned)(a->Hkv * a->split), (unsigned)B, (unsigned)((a->T + TK - 1) / TK));
    dim3 gq((unsigned)a->H, (unsigned)B, (unsigned)((a->T + TQ - 1) / TQ));
    e = twc_launch(kv, gkv, dim3(NT), skv, s, *a);
    if (e == cudaSuccess && a->split > 1) {
        int64_t n = (int64_t)B * a->T * a->Hkv * D;
        e = twc_launch(fa_sum_parts, dim3((unsigned)((n / 4 + 255) / 256)), dim3(256), 0, s, a->dk,
                       a->dv, (const float *)a->part, n, a->split, a->assign);
    }
    return e != cudaSuccess || DQ ? e : twc_launch(qk, gq, dim3(NT), sq, s, *a);
}

// dQ inside at its tiles: dK/dV's registers capped as below (three blocks an SM for D <= 64,
// one above), query tiles of 32 rows for D = 128 (the registers of 64 do not fit).
template <int D> static cudaError_t bwd_dq_launch(const struct fa_args *a, int B, cudaStream_t s)
{
    constexpr int minb = D <= 64 ? 3 : 1, qt = D <= 64 ? 64 : 32;
    return bwd_launch<D, minb, qt, true>(a, B, s);
}

#ifdef FA_SWEEP
// bench/attn_cuda's variants (TWIN_FA_SWEEP=i): dK/dV's blocks an SM (MINB, the register cap),
// its query tile (QT rows), dQ's blocks an SM (0-8, 18-20: dQ's own kernel), dQ inside (9-17).
template <int D>
static cudaError_t bwd_sweep(const struct fa_args *a, int B, cudaStream_t s, int v)
{
    // dK/dV's cap at one (D = 128) or three blocks an SM, and the variants' raised caps
    constexpr int c1 = D > 64 ? 1 : 3, c2 = D > 64 ? 2 : 4, c3 = D > 64 ? 3 : 5;
    constexpr int q3 = D > 64 ? 1 : 3; // dQ's default cap
    switch (v) {
    case 1:
        return bwd_launch<D, c1, 32, false, 1>(a, B, s);
    case 2:
        return bwd_launch<D, c2, 32, false, 1>(a, B, s);
    case 3:
        return bwd_launch<D, 2, 64, false, 1>(a, B, s);
    case 4:
        return bwd_launch<D, c3, 32, false, 1>(a, B, s);
    case 5:
        return bwd_launch<D, c1, 64, false, 2>(a, B, s);
    case 6:
        return bwd_launch<D, c1, 64, false, 3>(a, B, s);
    case 7:
        return bwd_launch<D, c2, 32, false, 2>(a, B, s);
    case 8:
        return bwd_launch<D, c2, 32, false, q3>(a, B, s);
    case 9:
        return bwd_launch<D, 1, 32, true>(a, B, s);
    case 10:
        return bwd_launch<D, 2, 32, true>(a, B, s);
    case 11:
        return bwd_launch<D, 3, 32, true>(a, B, s);
    case 12:
        return bwd_launch<D, 1, 64, true>(a, B, s);
    case 13:
        return bwd_launch<D, 2, 64, true>(a, B, s);
    case 14:
        return bwd_launch<D, 3, 64, true>(a, B, s);
    case 15: // bwd_dq_launch's kernel, its dQ adds in any order (other bits each run)
    case 16: // a float at a time
    case 17: // both
    {
        struct fa_args b = *a;
        b.dq_mode = v - 14;
        return bwd_dq_launch<D>(&b, B, s);
    }
    case 18:
        return bwd_launch<D, 2, 64, false, q3>(a, B, s);
    case 19:
        return bwd_launch<D, 2, 64, false, 2>(a, B, s);
    case 20:
        return bwd_launch<D, c2, 32, false, 2>(a, B, s);
    default: // 0: the configuration before dQ's blocks were capped at three an SM
        return bwd_launch<D, c1, 64, false, 1>(a, B, s);
    }
}
#endif

// Whether dK/dV's kernel adds dQ too: only with TWIN_FA_DQ=1 in the environment (read once).
// It saves dQ's kernel (S and dP computed twice) but costs more than that on every shape
// measured (H200, bench/attn_cuda, docs/perf.md): the 1B's backward 2.24 ms a layer against
// 2.00, the 8B's 1.33 against 0.97. Without the order of the adds (sweep variant 15, other bits
// each run) it would gain 5-8 %: the waits and each step's fence cost more than that, and
// a float at a time the reductions alone do (variant 16: 2.92 ms on the 1B). Kept, tested,
// for a kernel over 128-key tiles (half the adds) to build on.
static bool dq_inside(void)
{
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("TWIN_FA_DQ");
        on = e && strcmp(e, "1") == 0;
    }
    return on;
}

template <int D> static cudaError_t bwd_d(const struct fa_args *a, int B, cudaStream_t s)
{
#ifdef FA_SWEEP
    const char *e = getenv("TWIN_FA_SWEEP");
    if (e && ((atoi(e) < 9 || atoi(e) > 17) || a->count)) // (dQ inside needs its counters)
        return bwd_sweep<D>(a, B, s, atoi(e));
#endif
    // Both kernels' registers capped so that an SM holds three blocks for D <= 64 (dK/dV's
    // spill a few): on the 1B shape dK/dV's took the backward from 35.3 to 31.1 ms a step
    // (docs/perf.md), dQ's a layer's from 2.02 to 1.92 ms (bench/attn_cuda's variant 6)
    constexpr int minb = D <= 64 ? 3 : 1;
    return a->count ? bwd_dq_launch<D>(a, B, s) : bwd_launch<D, minb, 64, false, minb>(a, B, s);
}

cudaError_t twc_flash_fwd(float *out, __nv_bfloat16 *out_b, float *lse, const __nv_bfloat16 *q,
                          const __nv_bfloat16 *k, const __nv_bfloat16 *v, const int32_t *start,
                          int B, int T, int H, int Hkv, int D, float scale, int window,
                          cudaStream_t s)
{
    struct fa_args a = {};
    a.q = q, a.k = k, a.v = v, a.o = out, a.ob = out ? NULL : out_b, a.l = lse, a.start = start;
    a.T = T, a.H = H, a.Hkv = Hkv, a.scale = scale, a.window = window;
    return D == 32 ? fwd_d<32>(&a, B, s) : D == 64 ? fwd_d<64>(&a, B, s) : fwd_d<128>(&a, B, s);
}

int twc_flash_bwd_split(int B, int T, int H, int Hkv)
{
    int G = H / Hkv, blocks = B * Hkv * ((T + TK - 1) / TK), n_sm = 132, split = 1;
    twc_sm_count(&n_sm);
#ifdef FA_SWEEP
    const char *e = getenv("TWIN_FA_SPLIT");
    if (e && atoi(e) >= 1 && G % atoi(e) == 0)
        return atoi(e);
#endif
    // parts until the grid has two blocks an SM (what fits at once for D = 128): the 8B's 256
    // blocks of one row (dK/dV's kernel 1.10 ms a layer under ncu, 8.6 % achieved occupancy)
    // took the backward from 1.36 to 0.89 ms a layer in two parts, 0.91 in four (H200,
    // bench/attn_cuda, docs/perf.md); the 1B's 1024 blocks moved by 1.5 % at most
    while (2 * split <= G && G % (2 * split) == 0 && blocks * split < 2 * n_sm)
        split *= 2;
    return split;
}

// dQ's counters (an int a row, head and query tile of 32 rows or more), in floats' room.
static size_t count_room(int B, int T, int H)
{
    return ((size_t)B * H * ((T + 31) / 32) + 3) / 4 * 4;
}

size_t twc_flash_bwd_scratch(int B, int T, int H, int Hkv, int D)
{
    int split = twc_flash_bwd_split(B, T, H, Hkv);
    return (dq_inside() ? count_room(B, T, H) : 0) +
           (split > 1 ? 2 * (size_t)split * B * T * Hkv * D : 0);
}

// fa_delta over the R rows of O, f32 or bf16 (OT), its float4 loads where vec (dO, O and dO's
// copy aligned for them).
template <typename OT>
static cudaError_t launch_delta(bool vec, int64_t R, int D, float *delta, __nv_bfloat16 *dout_b,
                                const float *dout, const OT *out, unsigned *count, int64_t n_count,
                                cudaStream_t s)
{
    dim3 grid((unsigned)((R * (D / 4 < 32 ? D / 4 : 32) + 255) / 256));
    return twc_launch(vec ? fa_delta<true, OT> : fa_delta<false, OT>, grid, dim3(256), 0, s, delta,
                      dout_b, dout, out, R, D, count, n_count);
}

cudaError_t twc_flash_bwd(float *dq, float *dk, float *dv, const float *dout,
                          __nv_bfloat16 *dout_b, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                          const __nv_bfloat16 *v, const float *out, const __nv_bfloat16 *out_b,
                          const float *lse, const int32_t *start, float *delta, float *part, int B,
                          int T, int H, int Hkv, int D, float scale, int window, bool assign,
                          cudaStream_t s)
{
    struct fa_args a = {};
    a.q = q, a.k = k, a.v = v, a.out = out, a.outb = out ? NULL : out_b, a.dout = dout_b;
    a.lse = lse, a.delta = delta;
    a.dq = dq, a.dk = dk, a.dv = dv, a.start = start;
    a.T = T, a.H = H, a.Hkv = Hkv, a.scale = scale, a.window = window, a.assign = assign;
    a.split = part ? twc_flash_bwd_split(B, T, H, Hkv) : 1;
    size_t nc = part && dq_inside() ? count_room(B, T, H) : 0;
    a.count = nc ? (unsigned *)part : NULL;
    a.part = a.split > 1 ? part + nc : NULL;
    int64_t rows = (int64_t)B * T * H;
    cudaError_t e = cudaSuccess;
    if (assign && a.count) // dK/dV's blocks add into dq
        e = cudaMemsetAsync(dq, 0, (size_t)rows * D * sizeof(float), s);
    bool vec = ((uintptr_t)dout & 15) == 0 && ((uintptr_t)dout_b & 7) == 0 &&
               (out ? ((uintptr_t)out & 15) == 0 : ((uintptr_t)out_b & 7) == 0);
    if (e == cudaSuccess)
        e = out ? launch_delta(vec, rows, D, delta, dout_b, dout, out, a.count, (int64_t)nc, s)
                : launch_delta(vec, rows, D, delta, dout_b, dout, out_b, a.count, (int64_t)nc, s);
    if (e != cudaSuccess)
        return e;
    return D == 32 ? bwd_d<32>(&a, B, s) : D == 64 ? bwd_d<64>(&a, B, s) : bwd_d<128>(&a, B, s);
}

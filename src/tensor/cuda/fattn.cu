// Training attention on bf16 tensor cores, fused: the forward and both halves of the backward
// of softmax(scale q k^T + mask) v over packed examples without the scores ever in global
// memory (FlashAttention-2's algorithm: Dao, "FlashAttention-2: Faster Attention with Better
// Parallelism and Work Partitioning", 2023). Tiles of 64 query rows by 64 keys, four warps of
// WMMA 16x16x16 bf16 products with f32 accumulators. q, k, v (and dO) come as bf16 copies
// (the caller rounds them once a layer), out and the gradients are f32 (the lowp models'
// attention). The forward takes two passes over the keys: the row maxima and sums first, then
// P = exp(s - lse) already normalised into O's fragments, which stay in registers (no
// rescaling of an accumulator whose layout WMMA does not expose).
//
// The backward recomputes the probabilities from q, k and the forward's log-sum-exp and runs
// as two kernels, so that every gradient element is written by one block in a fixed order
// (no atomics: the same bits on every run): dK and dV a block per key tile and KV head (over
// its G query heads and every query tile that sees the keys), dQ a block per query tile.
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <mma.h>

#include "tensor/cuda/kernels.cuh"

using namespace nvcuda;

#define TQ 64  // query rows a tile
#define TK 64  // keys a tile
#define NT 128 // threads a block: four warps of 16 query (or key) rows
#define PB 8   // bf16 padding of a shared row
#define PF 4   // f32 padding

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::col_major> frag_at;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> frag_b;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> frag_bt;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

struct fa_args {
    const __nv_bfloat16 *q, *k, *v, *dout;
    const float *out, *lse, *delta;
    float *o, *l, *dq, *dk, *dv;
    const int32_t *start; // (B, T)
    int T, H, Hkv;
    float scale;
    int window;
};

// The first key row-local query t sees.
static __device__ __forceinline__ int key_lo(const int32_t *start_row, int t, int window)
{
    int lo = start_row[t];
    return window > 0 && t - window + 1 > lo ? t - window + 1 : lo;
}

// rows [r0, r0 + 64) of x (rows of `heads` heads of D bf16; head h) into s (64, D + PB),
// 16 bytes a copy; rows past T are 0.
template <int D>
static __device__ void stage(__nv_bfloat16 *s, const __nv_bfloat16 *x, int r0, int T, int heads,
                             int h)
{
    for (int i = threadIdx.x; i < 64 * D / 8; i += NT) {
        int r = i / (D / 8), c = i % (D / 8) * 8, t = r0 + r;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (t < T)
            v = *(const uint4 *)(x + ((size_t)t * heads + h) * D + c);
        *(uint4 *)(s + r * (D + PB) + c) = v;
    }
}

// The first key of each row of query tile q0 (rows past T: INT_MAX, none), into rlo.
static __device__ void row_lo(int *rlo, const int32_t *st, int q0, int T, int window)
{
    for (int r = threadIdx.x; r < TQ; r += NT)
        rlo[r] = q0 + r < T ? key_lo(st, q0 + r, window) : 0x7fffffff;
}

// The keys [*lo, *hi] that some row of query tile [q0, q0 + 64) sees (lo > hi: none).
static __device__ void tile_keys(const int32_t *start_row, int q0, int T, int window, int *lo,
                                 int *hi, int *red)
{
    int m = 1 << 30;
    for (int r = threadIdx.x; r < TQ; r += NT)
        if (q0 + r < T)
            m = min(m, key_lo(start_row, q0 + r, window));
    for (int o = 16; o > 0; o >>= 1)
        m = min(m, __shfl_xor_sync(0xffffffffu, m, o));
    if (threadIdx.x % 32 == 0)
        red[threadIdx.x / 32] = m;
    __syncthreads();
    m = min(min(red[0], red[1]), min(red[2], red[3]));
    __syncthreads();
    *lo = m;
    *hi = min(q0 + TQ, T) - 1;
}

// S (64 x 64, f32, ld TK + PF) = A (64 x D) B^T (B: 64 x D), each warp its 16 rows.
template <int D>
static __device__ void qk(float *S, const __nv_bfloat16 *A, const __nv_bfloat16 *Bm)
{
    int w = threadIdx.x / 32;
    for (int n = 0; n < TK / 16; n++) {
        frag_c c;
        wmma::fill_fragment(c, 0.0f);
        for (int kk = 0; kk < D / 16; kk++) {
            frag_a a;
            frag_bt b;
            wmma::load_matrix_sync(a, A + (w * 16) * (D + PB) + kk * 16, D + PB);
            wmma::load_matrix_sync(b, Bm + (n * 16) * (D + PB) + kk * 16, D + PB);
            wmma::mma_sync(c, a, b, c);
        }
        wmma::store_matrix_sync(S + (w * 16) * (TK + PF) + n * 16, c, TK + PF,
                                wmma::mem_row_major);
    }
}

// ---- forward: a block per (query tile, head, row of the batch).

template <int D> static __global__ void __launch_bounds__(NT) fa_fwd(struct fa_args a)
{
    extern __shared__ __align__(128) unsigned char smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)smem, *Ks = Qs + 64 * (D + PB), *Vs = Ks + 64 * (D + PB);
    __nv_bfloat16 *Ps = Vs + 64 * (D + PB);
    float *Ss = (float *)(Ps + 64 * (TK + PB)), *Os = Ss + 64 * (TK + PF);
    float *lrow = Os + 64 * (D + PF);
    int *rlo = (int *)(lrow + 64);
    __shared__ int red[4];
    int q0 = blockIdx.x * TQ, h = blockIdx.y, b = blockIdx.z, T = a.T, H = a.H;
    int kvh = h / (H / a.Hkv), w = threadIdx.x / 32;
    const int32_t *st = a.start + (size_t)b * T;
    const __nv_bfloat16 *q = a.q + (size_t)b * T * H * D;
    const __nv_bfloat16 *k = a.k + (size_t)b * T * a.Hkv * D;
    const __nv_bfloat16 *v = a.v + (size_t)b * T * a.Hkv * D;
    twc_pdl_enter();
    stage<D>(Qs, q, q0, T, H, h);
    row_lo(rlo, st, q0, T, a.window);
    int lo, hi;
    tile_keys(st, q0, T, a.window, &lo, &hi, red);
    // two threads a row: thread i takes row i / 2, columns (i % 2) * 32 .. + 31
    int r = threadIdx.x / 2, half = threadIdx.x % 2, t = q0 + r;
    // pass 1: each thread's running maximum and sum over its columns
    float m = -INFINITY, l = 0;
    for (int k0 = lo / TK * TK; k0 <= hi; k0 += TK) {
        __syncthreads(); // the last tile's K is read
        stage<D>(Ks, k, k0, T, a.Hkv, kvh);
        __syncthreads();
        qk<D>(Ss, Qs, Ks);
        __syncwarp();
        const float *srow = Ss + r * (TK + PF);
        for (int c = half * 32; c < half * 32 + 32; c++) {
            int j = k0 + c;
            if (j < rlo[r] || j > t)
                continue;
            float s = srow[c] * a.scale;
            if (s > m)
                l = l * __expf(m - s) + 1.0f, m = s;
            else
                l += __expf(s - m);
        }
    }
    float m2 = __shfl_xor_sync(0xffffffffu, m, 1), l2 = __shfl_xor_sync(0xffffffffu, l, 1);
    float mx = fmaxf(m, m2);
    float lsum = (m == -INFINITY ? 0.0f : l * __expf(m - mx)) +
                 (m2 == -INFINITY ? 0.0f : l2 * __expf(m2 - mx));
    float lse = mx + logf(lsum);
    if (half == 0)
        lrow[r] = lse;
    // pass 2: O = sum of P V with P normalised, O in the warps' fragments
    frag_c o[D / 16];
    for (int n = 0; n < D / 16; n++)
        wmma::fill_fragment(o[n], 0.0f);
    for (int k0 = lo / TK * TK; k0 <= hi; k0 += TK) {
        __syncthreads();
        stage<D>(Ks, k, k0, T, a.Hkv, kvh);
        stage<D>(Vs, v, k0, T, a.Hkv, kvh);
        __syncthreads();
        qk<D>(Ss, Qs, Ks);
        __syncwarp();
        const float *srow = Ss + r * (TK + PF);
        for (int c = half * 32; c < half * 32 + 32; c++) {
            int j = k0 + c;
            float p = j >= rlo[r] && j <= t ? __expf(srow[c] * a.scale - lse) : 0.0f;
            Ps[r * (TK + PB) + c] = __float2bfloat16(p);
        }
        __syncwarp();
        for (int kk = 0; kk < TK / 16; kk++) {
            frag_a pa;
            wmma::load_matrix_sync(pa, Ps + (w * 16) * (TK + PB) + kk * 16, TK + PB);
            for (int n = 0; n < D / 16; n++) {
                frag_b vb;
                wmma::load_matrix_sync(vb, Vs + (kk * 16) * (D + PB) + n * 16, D + PB);
                wmma::mma_sync(o[n], pa, vb, o[n]);
            }
        }
    }
    for (int n = 0; n < D / 16; n++)
        wmma::store_matrix_sync(Os + (w * 16) * (D + PF) + n * 16, o[n], D + PF,
                                wmma::mem_row_major);
    __syncthreads();
    for (int i = threadIdx.x; i < 64 * D; i += NT) {
        int rr = i / D, d = i % D, tt = q0 + rr;
        if (tt < T)
            a.o[(((size_t)b * T + tt) * H + h) * D + d] = Os[rr * (D + PF) + d];
    }
    if (threadIdx.x < TQ && q0 + (int)threadIdx.x < T)
        a.l[((size_t)b * T + q0 + threadIdx.x) * H + h] = lrow[threadIdx.x];
}

// ---- backward. delta[t, h] = dO . O, a warp per (token, head).

static __global__ void fa_delta(float *delta, const float *dout, const float *out, int64_t rows,
                                int D)
{
    twc_pdl_enter();
    int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / 32;
    if (i >= rows)
        return;
    float s = 0;
    for (int d = threadIdx.x % 32; d < D; d += 32)
        s += dout[i * D + d] * out[i * D + d];
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x % 32 == 0)
        delta[i] = s;
}

// P and dS of a (query tile q0, key tile k0) pair: S holds scale-less q.k, dP dO.v; P =
// exp(scale S - lse) where the query sees the key (rlo: each row's first key; else 0), dS =
// scale P (dP - delta), into Ps and dSs in bf16.
static __device__ void probs_and_ds(float *S, float *dP, __nv_bfloat16 *Ps, __nv_bfloat16 *dSs,
                                    const float *lse, const float *dl, const int *rlo, int q0,
                                    int k0, float scale)
{
    for (int i = threadIdx.x; i < TQ * TK; i += NT) {
        int r = i / TK, c = i % TK, t = q0 + r, j = k0 + c;
        bool on = j <= t && j >= rlo[r];
        float p = on ? __expf(S[r * (TK + PF) + c] * scale - lse[r]) : 0.0f;
        float ds = scale * p * (dP[r * (TK + PF) + c] - dl[r]);
        Ps[r * (TK + PB) + c] = __float2bfloat16(p);
        dSs[r * (TK + PB) + c] = __float2bfloat16(ds);
    }
}

// A block per (key tile, KV head, row of the batch): dK, dV of its keys over the G query
// heads and every query tile that sees them, accumulated in the warps' fragments (warp w: keys
// 16w ..), added to dk, dv once.
template <int D> static __global__ void __launch_bounds__(NT) fa_bwd_kv(struct fa_args a)
{
    extern __shared__ __align__(128) unsigned char smem[];
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)smem, *Vs = Ks + 64 * (D + PB), *Qs = Vs + 64 * (D + PB);
    __nv_bfloat16 *dOs = Qs + 64 * (D + PB), *Ps = dOs + 64 * (D + PB), *dSs = Ps + 64 * (TK + PB);
    float *Ss = (float *)(dSs + 64 * (TK + PB)), *dPs = Ss + 64 * (TK + PF);
    float *ls = dPs + 64 * (TK + PF), *dls = ls + 64;
    int *rlo = (int *)(dls + 64);
    int k0 = blockIdx.x * TK, kvh = blockIdx.y, b = blockIdx.z, T = a.T, H = a.H;
    int G = H / a.Hkv, w = threadIdx.x / 32;
    const int32_t *st = a.start + (size_t)b * T;
    const __nv_bfloat16 *q = a.q + (size_t)b * T * H * D, *dout = a.dout + (size_t)b * T * H * D;
    const __nv_bfloat16 *k = a.k + (size_t)b * T * a.Hkv * D;
    const __nv_bfloat16 *v = a.v + (size_t)b * T * a.Hkv * D;
    twc_pdl_enter();
    stage<D>(Ks, k, k0, T, a.Hkv, kvh);
    stage<D>(Vs, v, k0, T, a.Hkv, kvh);
    frag_c dk[D / 16], dv[D / 16];
    for (int n = 0; n < D / 16; n++)
        wmma::fill_fragment(dk[n], 0.0f), wmma::fill_fragment(dv[n], 0.0f);
    int k1 = min(k0 + TK, T) - 1;
    for (int g = 0; g < G; g++) {
        int h = kvh * G + g;
        for (int q0 = k0 / TQ * TQ; q0 < T; q0 += TQ) {
            // does any query of the tile see a key of ours?
            int sees = 0;
            for (int r = threadIdx.x; r < TQ; r += NT) {
                int t = q0 + r;
                sees |= t < T && t >= k0 && key_lo(st, t, a.window) <= k1;
            }
            if (!__syncthreads_or(sees))
                continue;
            stage<D>(Qs, q, q0, T, H, h);
            stage<D>(dOs, dout, q0, T, H, h);
            row_lo(rlo, st, q0, T, a.window);
            if (threadIdx.x < TQ) {
                int t = q0 + threadIdx.x;
                ls[threadIdx.x] = t < T ? a.lse[((size_t)b * T + t) * H + h] : 0.0f;
                dls[threadIdx.x] = t < T ? a.delta[((size_t)b * T + t) * H + h] : 0.0f;
            }
            __syncthreads();
            qk<D>(Ss, Qs, Ks);   // rows: queries
            qk<D>(dPs, dOs, Vs); // dO V^T
            __syncthreads();
            probs_and_ds(Ss, dPs, Ps, dSs, ls, dls, rlo, q0, k0, a.scale);
            __syncthreads();
            // dV += P^T dO, dK += dS^T Q: warp w's keys are columns 16w.. of P and dS
            for (int kk = 0; kk < TQ / 16; kk++) {
                frag_at pt, dst;
                wmma::load_matrix_sync(pt, Ps + (kk * 16) * (TK + PB) + w * 16, TK + PB);
                wmma::load_matrix_sync(dst, dSs + (kk * 16) * (TK + PB) + w * 16, TK + PB);
                for (int n = 0; n < D / 16; n++) {
                    frag_b ob, qb;
                    wmma::load_matrix_sync(ob, dOs + (kk * 16) * (D + PB) + n * 16, D + PB);
                    wmma::load_matrix_sync(qb, Qs + (kk * 16) * (D + PB) + n * 16, D + PB);
                    wmma::mma_sync(dv[n], pt, ob, dv[n]);
                    wmma::mma_sync(dk[n], dst, qb, dk[n]);
                }
            }
            __syncthreads();
        }
    }
    // out through shared memory (the fragments' layout is opaque), added to dk and dv
    float *stage_f = Ss; // 64 x (D + PF) floats fit in Ss + dPs
    for (int pass = 0; pass < 2; pass++) {
        for (int n = 0; n < D / 16; n++)
            wmma::store_matrix_sync(stage_f + (w * 16) * (D + PF) + n * 16, pass ? dv[n] : dk[n],
                                    D + PF, wmma::mem_row_major);
        __syncthreads();
        float *dst = (pass ? a.dv : a.dk) + (size_t)b * T * a.Hkv * D;
        for (int i = threadIdx.x; i < 64 * D; i += NT) {
            int r = i / D, d = i % D, j = k0 + r;
            if (j < T)
                dst[((size_t)j * a.Hkv + kvh) * D + d] += stage_f[r * (D + PF) + d];
        }
        __syncthreads();
    }
}

// A block per (query tile, head, row of the batch): dQ += dS K over the keys the tile sees.
template <int D> static __global__ void __launch_bounds__(NT) fa_bwd_q(struct fa_args a)
{
    extern __shared__ __align__(128) unsigned char smem[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)smem, *dOs = Qs + 64 * (D + PB),
                  *Ks = dOs + 64 * (D + PB);
    __nv_bfloat16 *Vs = Ks + 64 * (D + PB), *Ps = Vs + 64 * (D + PB), *dSs = Ps + 64 * (TK + PB);
    float *Ss = (float *)(dSs + 64 * (TK + PB)), *dPs = Ss + 64 * (TK + PF);
    float *ls = dPs + 64 * (TK + PF), *dls = ls + 64;
    int *rlo = (int *)(dls + 64);
    __shared__ int red[4];
    int q0 = blockIdx.x * TQ, h = blockIdx.y, b = blockIdx.z, T = a.T, H = a.H;
    int kvh = h / (H / a.Hkv), w = threadIdx.x / 32;
    const int32_t *st = a.start + (size_t)b * T;
    const __nv_bfloat16 *q = a.q + (size_t)b * T * H * D, *dout = a.dout + (size_t)b * T * H * D;
    const __nv_bfloat16 *k = a.k + (size_t)b * T * a.Hkv * D;
    const __nv_bfloat16 *v = a.v + (size_t)b * T * a.Hkv * D;
    twc_pdl_enter();
    stage<D>(Qs, q, q0, T, H, h);
    stage<D>(dOs, dout, q0, T, H, h);
    row_lo(rlo, st, q0, T, a.window);
    if (threadIdx.x < TQ) {
        int t = q0 + threadIdx.x;
        ls[threadIdx.x] = t < T ? a.lse[((size_t)b * T + t) * H + h] : 0.0f;
        dls[threadIdx.x] = t < T ? a.delta[((size_t)b * T + t) * H + h] : 0.0f;
    }
    frag_c dq[D / 16];
    for (int n = 0; n < D / 16; n++)
        wmma::fill_fragment(dq[n], 0.0f);
    int lo, hi;
    tile_keys(st, q0, T, a.window, &lo, &hi, red);
    for (int k0 = lo / TK * TK; k0 <= hi; k0 += TK) {
        __syncthreads();
        stage<D>(Ks, k, k0, T, a.Hkv, kvh);
        stage<D>(Vs, v, k0, T, a.Hkv, kvh);
        __syncthreads();
        qk<D>(Ss, Qs, Ks);
        qk<D>(dPs, dOs, Vs);
        __syncthreads();
        probs_and_ds(Ss, dPs, Ps, dSs, ls, dls, rlo, q0, k0, a.scale);
        __syncthreads();
        for (int kk = 0; kk < TK / 16; kk++) {
            frag_a ds;
            wmma::load_matrix_sync(ds, dSs + (w * 16) * (TK + PB) + kk * 16, TK + PB);
            for (int n = 0; n < D / 16; n++) {
                frag_b kb;
                wmma::load_matrix_sync(kb, Ks + (kk * 16) * (D + PB) + n * 16, D + PB);
                wmma::mma_sync(dq[n], ds, kb, dq[n]);
            }
        }
    }
    __syncthreads();
    float *stage_f = Ss;
    for (int n = 0; n < D / 16; n++)
        wmma::store_matrix_sync(stage_f + (w * 16) * (D + PF) + n * 16, dq[n], D + PF,
                                wmma::mem_row_major);
    __syncthreads();
    float *dst = a.dq + (size_t)b * T * H * D;
    for (int i = threadIdx.x; i < 64 * D; i += NT) {
        int r = i / D, d = i % D, t = q0 + r;
        if (t < T)
            dst[((size_t)t * H + h) * D + d] += stage_f[r * (D + PF) + d];
    }
}

// ---- launchers.

// Q, K, V and P in bf16; S, O and the rows' lse in f32, their first keys.
template <int D> static size_t fwd_smem(void)
{
    return (size_t)3 * 64 * (D + PB) * 2 + (size_t)64 * (TK + PB) * 2 +
           (size_t)64 * (TK + PF) * 4 + (size_t)64 * (D + PF) * 4 + 2 * 64 * 4;
}

// Two 64 x D tiles of each side (K V, Q dO) and P, dS in bf16; S, dP, lse, delta in f32, the
// rows' first keys.

template <int D> static size_t bwd_smem(void)
{
    return (size_t)4 * 64 * (D + PB) * 2 + (size_t)2 * 64 * (TK + PB) * 2 +
           (size_t)2 * 64 * (TK + PF) * 4 + 3 * 64 * 4;
}

bool twc_flash_ok(int D)
{
    return D == 32 || D == 64 || D == 128;
}

template <int D> static cudaError_t fwd_d(const struct fa_args *a, int B, cudaStream_t s)
{
    size_t sm = fwd_smem<D>();
    cudaError_t e =
        cudaFuncSetAttribute(fa_fwd<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    if (e != cudaSuccess)
        return e;
    dim3 grid((unsigned)((a->T + TQ - 1) / TQ), (unsigned)a->H, (unsigned)B);
    return twc_launch(fa_fwd<D>, grid, dim3(NT), sm, s, *a);
}

template <int D> static cudaError_t bwd_d(const struct fa_args *a, int B, cudaStream_t s)
{
    size_t sm = bwd_smem<D>();
    cudaError_t e =
        cudaFuncSetAttribute(fa_bwd_kv<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(fa_bwd_q<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)sm);
    if (e != cudaSuccess)
        return e;
    dim3 gkv((unsigned)((a->T + TK - 1) / TK), (unsigned)a->Hkv, (unsigned)B);
    dim3 gq((unsigned)((a->T + TQ - 1) / TQ), (unsigned)a->H, (unsigned)B);
    e = twc_launch(fa_bwd_kv<D>, gkv, dim3(NT), sm, s, *a);
    return e != cudaSuccess ? e : twc_launch(fa_bwd_q<D>, gq, dim3(NT), sm, s, *a);
}

cudaError_t twc_flash_fwd(float *out, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                          const __nv_bfloat16 *v, const int32_t *start, int B, int T, int H,
                          int Hkv, int D, float scale, int window, cudaStream_t s)
{
    struct fa_args a = {};
    a.q = q, a.k = k, a.v = v, a.o = out, a.l = lse, a.start = start;
    a.T = T, a.H = H, a.Hkv = Hkv, a.scale = scale, a.window = window;
    return D == 32 ? fwd_d<32>(&a, B, s) : D == 64 ? fwd_d<64>(&a, B, s) : fwd_d<128>(&a, B, s);
}

cudaError_t twc_flash_bwd(float *dq, float *dk, float *dv, const float *dout,
                          const __nv_bfloat16 *dout_b, const __nv_bfloat16 *q,
                          const __nv_bfloat16 *k, const __nv_bfloat16 *v, const float *out,
                          const float *lse, const int32_t *start, float *delta, int B, int T,
                          int H, int Hkv, int D, float scale, int window, cudaStream_t s)
{
    int64_t rows = (int64_t)B * T * H;
    cudaError_t e = twc_launch(fa_delta, dim3((unsigned)((rows * 32 + 255) / 256)), dim3(256), 0,
                               s, delta, dout, out, rows, D);
    if (e != cudaSuccess)
        return e;
    struct fa_args a = {};
    a.q = q, a.k = k, a.v = v, a.out = out, a.dout = dout_b, a.lse = lse, a.delta = delta;
    a.dq = dq, a.dk = dk, a.dv = dv, a.start = start;
    a.T = T, a.H = H, a.Hkv = Hkv, a.scale = scale, a.window = window;
    return D == 32 ? bwd_d<32>(&a, B, s) : D == 64 ? bwd_d<64>(&a, B, s) : bwd_d<128>(&a, B, s);
}

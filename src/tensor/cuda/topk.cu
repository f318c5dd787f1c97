// The CUDA backend's top-k (tw_topk): the k largest of each row of x (R, V) by a radix select
// in registers, in levels. Each value becomes a 64-bit key that orders as tw_topk does: the
// float's bits made order-preserving (NaN as -inf, -0 as +0) above the complement of its
// column id, so the keys of a row are distinct and the larger key is the one ranked first.
// Level 0 splits each row into chunks of a block's items and keeps the k largest keys of each
// (any of the row's k largest is among its chunk's k largest); each further level does the
// same over the kept keys until one chunk per row is left, whose k keys are sorted (a bitonic
// sort in shared memory) and written out as values and ids.
#include "tensor/cuda/kernels.cuh"

// Threads of a block (>= 256: one histogram bin each) and the items each holds in registers.
#ifndef TOPK_THREADS
#define TOPK_THREADS 512
#endif
#ifndef TOPK_ITEMS
#define TOPK_ITEMS 16
#endif
// Level 0's items when few blocks would cover the rows (fewer than TOPK_FEW_PER_SM per SM):
// smaller chunks, more blocks at once, one more level.
#ifndef TOPK_ITEMS_FEW
#define TOPK_ITEMS_FEW 4
#endif
#ifndef TOPK_FEW_PER_SM
#define TOPK_FEW_PER_SM 2
#endif
// Blocks an SM should hold at once (registers are capped to allow it).
#ifndef TOPK_MIN_BLOCKS
#define TOPK_MIN_BLOCKS 2
#endif

static_assert(TOPK_THREADS >= 256 && TOPK_THREADS % 32 == 0, "a thread per histogram bin");
static_assert(TOPK_THREADS * TOPK_ITEMS_FEW >= 2 * TW_TOPK_MAX, "a chunk holds 2 k at least");
static_assert(TOPK_THREADS * TOPK_ITEMS >= 2 * TW_TOPK_MAX, "a chunk holds 2 k at least");

// The key of x at column id; 0 is below every key made (-inf's is 0x007fffff << 32 | ...),
// so it pads a chunk's output when the chunk holds fewer than k values.
static __device__ __forceinline__ uint64_t key_of(float x, uint32_t id)
{
    uint32_t u = __float_as_uint(x);
    if (x != x)
        u = 0xff800000u; // NaN: -inf
    if (u == 0x80000000u)
        u = 0; // -0: +0
    uint32_t ord = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t)ord << 32 | (uint32_t)~id;
}

struct select_smem {
    uint32_t hist[256];
    uint32_t warp_sum[8];
    uint64_t prefix;
    uint32_t need, bin;
    uint32_t n_gt, n_eq;
    uint64_t sorted[TW_TOPK_MAX]; // the last level's keys
};

// The k largest of the block's keys c[j] (items j * THREADS + tid below n are real; n > k)
// into out[0, k), in no order. A radix select over 8-bit digits from the top: each pass counts
// the digits of the keys that share the prefix found so far and picks the digit where the
// k-th largest lies; it stops early once that digit's keys are exactly the ones still needed.
template <int ITEMS>
static __device__ void select_k(const uint64_t (&c)[ITEMS], int n, int k, uint64_t *out,
                                select_smem &sm)
{
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    uint64_t prefix = 0, mask = 0;
    uint32_t need = (uint32_t)k;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = tid; i < 256; i += TOPK_THREADS)
            sm.hist[i] = 0;
        __syncthreads();
        // One shared atomic per key: on an H100 this beat adding a warp's equal digits at once
        // (__match_any_sync), though the first digits of logits pile into a few bins.
#pragma unroll
        for (int j = 0; j < ITEMS; j++)
            if (j * TOPK_THREADS + tid < n && (c[j] & mask) == prefix)
                atomicAdd(&sm.hist[(uint32_t)(c[j] >> shift) & 255u], 1u);
        __syncthreads();
        // Counts from the highest digit down: thread t holds digit 255 - t.
        uint32_t h = 0, incl = 0;
        if (tid < 256) {
            h = sm.hist[255 - tid];
            incl = h;
            for (int o = 1; o < 32; o <<= 1) {
                uint32_t v = __shfl_up_sync(0xffffffffu, incl, o);
                incl += lane >= o ? v : 0;
            }
            if (lane == 31)
                sm.warp_sum[warp] = incl;
        }
        __syncthreads();
        if (tid < 256) {
            for (int w = 0; w < warp; w++)
                incl += sm.warp_sum[w];
            uint32_t excl = incl - h;
            if (excl < need && incl >= need) {
                sm.prefix = prefix | (uint64_t)(255 - tid) << shift;
                sm.need = need - excl;
                sm.bin = h;
            }
        }
        __syncthreads();
        prefix = sm.prefix;
        need = sm.need;
        mask |= (uint64_t)255 << shift;
        if (sm.bin == need)
            break;
    }
    // Keys above the prefix are all taken (k - need of them); of those with the prefix, need
    // (all of them when the loop stopped early; else the one key equal to it).
    if (tid == 0)
        sm.n_gt = sm.n_eq = 0;
    __syncthreads();
    uint32_t above = (uint32_t)k - need;
#pragma unroll
    for (int j = 0; j < ITEMS; j++) {
        if (j * TOPK_THREADS + tid >= n)
            continue;
        uint64_t m = c[j] & mask;
        if (m > prefix) {
            out[atomicAdd(&sm.n_gt, 1u)] = c[j];
        } else if (m == prefix) {
            uint32_t e = atomicAdd(&sm.n_eq, 1u);
            if (e < need)
                out[above + e] = c[j];
        }
    }
    __syncthreads();
}

// One block per (row, chunk): blockIdx.x = row * S + chunk. Level 0 (FROM_ROW) reads the
// chunk's floats from x (R, V), later levels the n_in keys per row of cin. Non-final levels
// write k keys per chunk to cout (R, S, k), padded with 0; the final one (S == 1) writes the
// row's vals and ids (R, k), sorted, the values read back from x (NaN as -inf).
template <int ITEMS, bool FROM_ROW, bool FINAL>
static __global__ __launch_bounds__(TOPK_THREADS, TOPK_MIN_BLOCKS) void topk_kernel(
    const float *x, int64_t V, const uint64_t *cin, int64_t n_in, int64_t S, int k, uint64_t *cout,
    float *vals, int32_t *ids)
{
    __shared__ select_smem sm;
    const int tid = threadIdx.x;
    const int64_t row = blockIdx.x / S, chunk = blockIdx.x % S;
    const int64_t CH = (int64_t)TOPK_THREADS * ITEMS, start = chunk * CH;
    const int64_t total = FROM_ROW ? V : n_in;
    const int n = (int)(total - start < CH ? total - start : CH);
    uint64_t c[ITEMS];
#pragma unroll
    for (int j = 0; j < ITEMS; j++) {
        int i = j * TOPK_THREADS + tid;
        if (i >= n)
            c[j] = 0;
        else if (FROM_ROW)
            c[j] = key_of(x[row * V + start + i], (uint32_t)(start + i));
        else
            c[j] = cin[row * n_in + start + i];
    }
    uint64_t *out = FINAL ? sm.sorted : cout + (row * S + chunk) * k;
    if (n > k) {
        select_k<ITEMS>(c, n, k, out, sm);
    } else { // all of them, then padding
#pragma unroll
        for (int j = 0; j < ITEMS; j++)
            if (j * TOPK_THREADS + tid < n)
                out[j * TOPK_THREADS + tid] = c[j];
        for (int i = n + tid; i < k; i += TOPK_THREADS)
            out[i] = 0;
        __syncthreads();
    }
    if (!FINAL)
        return;
    // Bitonic sort of the k keys (padded with 0 to a power of two), largest first.
    int P = 1;
    while (P < k)
        P <<= 1;
    for (int i = k + tid; i < P; i += TOPK_THREADS)
        sm.sorted[i] = 0;
    for (int size = 2; size <= P; size <<= 1) {
        for (int stride = size / 2; stride > 0; stride >>= 1) {
            __syncthreads();
            for (int i = tid; i < P / 2; i += TOPK_THREADS) {
                int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                uint64_t a = sm.sorted[lo], b = sm.sorted[hi];
                if ((lo & size) == 0 ? a < b : a > b) {
                    sm.sorted[lo] = b;
                    sm.sorted[hi] = a;
                }
            }
        }
    }
    __syncthreads();
    for (int i = tid; i < k; i += TOPK_THREADS) {
        uint32_t id = ~(uint32_t)sm.sorted[i];
        float v = x[row * V + id];
        vals[row * k + i] = v != v ? -INFINITY : v;
        ids[row * k + i] = (int32_t)id;
    }
}

static int64_t cdiv(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

#define CH_MANY ((int64_t)TOPK_THREADS * TOPK_ITEMS)
#define CH_FEW  ((int64_t)TOPK_THREADS * TOPK_ITEMS_FEW)

size_t twc_topk_scratch(int64_t R, int64_t V, int k)
{
    int64_t ch = CH_FEW < CH_MANY ? CH_FEW : CH_MANY, s0 = cdiv(V, ch);
    return s0 > 1 ? 2 * (size_t)(R * s0 * k) * sizeof(uint64_t) : 0;
}

cudaError_t twc_topk(const float *x, int64_t R, int64_t V, int k, float *vals, int32_t *ids,
                     void *scratch, cudaStream_t s)
{
    int sms = 132;
    twc_sm_count(&sms);
    bool few = R * cdiv(V, CH_MANY) < (int64_t)TOPK_FEW_PER_SM * sms;
    int64_t S = cdiv(V, few ? CH_FEW : CH_MANY);
    uint64_t *buf[2] = { (uint64_t *)scratch, (uint64_t *)scratch + R * S * k };
    unsigned grid = (unsigned)(R * S);
    if (few && S == 1)
        topk_kernel<TOPK_ITEMS_FEW, true, true>
            <<<grid, TOPK_THREADS, 0, s>>>(x, V, NULL, 0, S, k, NULL, vals, ids);
    else if (few)
        topk_kernel<TOPK_ITEMS_FEW, true, false>
            <<<grid, TOPK_THREADS, 0, s>>>(x, V, NULL, 0, S, k, buf[0], NULL, NULL);
    else if (S == 1)
        topk_kernel<TOPK_ITEMS, true, true>
            <<<grid, TOPK_THREADS, 0, s>>>(x, V, NULL, 0, S, k, NULL, vals, ids);
    else
        topk_kernel<TOPK_ITEMS, true, false>
            <<<grid, TOPK_THREADS, 0, s>>>(x, V, NULL, 0, S, k, buf[0], NULL, NULL);
    for (int b = 0; S > 1; b ^= 1) {
        int64_t n_in = S * k;
        S = cdiv(n_in, CH_MANY);
        grid = (unsigned)(R * S);
        if (S == 1)
            topk_kernel<TOPK_ITEMS, false, true>
                <<<grid, TOPK_THREADS, 0, s>>>(x, V, buf[b], n_in, S, k, NULL, vals, ids);
        else
            topk_kernel<TOPK_ITEMS, false, false>
                <<<grid, TOPK_THREADS, 0, s>>>(x, V, buf[b], n_in, S, k, buf[b ^ 1], NULL, NULL);
    }
    return cudaGetLastError();
}

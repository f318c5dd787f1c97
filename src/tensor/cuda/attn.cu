// Attention on the GPU (twc_attention): one kernel for decode and prefill, FlashAttention's
// tiling and online softmax (Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient
// Exact Attention with IO-Awareness"), never materialising the score matrix; long caches are
// split across blocks and merged by a second kernel (split-K, "Flash-Decoding", Dao et al.
// 2023). The cache is read through each sequence's block table (paged, kernels.cuh).
//
// A block works on one kv head of one sequence: its query vectors are the (row, head) pairs
// of that kv head's group, numbered qv = row * G + g (G = n_head / n_head_kv), so the G
// query heads that share a kv head read each key and value once. A tile of BQ query vectors
// sits in shared memory; the block walks kv tiles of TK rows over the range its rows can
// see (causal and window bounds of its first and last row), computes the BQ x TK scores
// with register tiles, updates the running max and sum (in log2 units: the queries are
// pre-scaled by scale * log2(e), so exp2 serves), and adds P V into register accumulators.
// Small batches (decode) use a small BQ; a config per padded head size (32, 64, 128, 256).
#include "tensor/cuda/kernels.cuh"

#include <limits.h>
#include <math.h>

#define NT 128 // threads per block, every config

// The per-split partial results of split-K: o (D floats, not yet divided by l) and (m, l),
// for query (seq, r, h) and split s at index ((seq * max_rows + r) * H + h) * n_split + s.
struct partials {
    float *o;
    float2 *ml;
};

struct attn_args {
    float *out;
    const float *q;
    const struct twc_attn_seq *seqs;
    int32_t H, Hkv, G, D, block_rows, max_rows, window, n_split, chunk;
    bool causal;
    float qscale; // scale * log2(e)
    struct partials part;
};

static __device__ __forceinline__ bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

// Floats d .. d + 3 of a row of D floats, zero past D; vec: D % 4 == 0 and the row is 16-byte
// aligned, so a float4 is either wholly inside or wholly past the end.
static __device__ __forceinline__ float4 load4(const float *row, int d, int D, bool vec)
{
    float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
    if (vec) {
        if (d < D)
            r = *(const float4 *)(row + d);
        return r;
    }
    if (d < D)
        r.x = row[d];
    if (d + 1 < D)
        r.y = row[d + 1];
    if (d + 2 < D)
        r.z = row[d + 2];
    if (d + 3 < D)
        r.w = row[d + 3];
    return r;
}

static __device__ __forceinline__ void store4(float *row, int d, int D, bool vec, float4 x)
{
    if (vec) {
        if (d < D)
            *(float4 *)(row + d) = x;
        return;
    }
    if (d < D)
        row[d] = x.x;
    if (d + 1 < D)
        row[d + 1] = x.y;
    if (d + 2 < D)
        row[d + 2] = x.z;
    if (d + 3 < D)
        row[d + 3] = x.w;
}

// Max and sum over the W consecutive lanes (aligned groups of W, W a power of two <= 32).
template <int W> static __device__ __forceinline__ float group_max(float x)
{
#pragma unroll
    for (int o = W / 2; o > 0; o /= 2)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}
template <int W> static __device__ __forceinline__ float group_sum(float x)
{
#pragma unroll
    for (int o = W / 2; o > 0; o /= 2)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// DP: head size padded (a multiple of 32, >= D); BQ query vectors and TK kv rows a tile.
// Scores: each thread holds RQ x RK of the BQ x TK tile, query rows tq + TQt * i and keys
// tk + TKt * jj, the TKt threads of a query row being consecutive lanes (shuffle reductions)
// and, 8 or more of them, reading 8 different key rows a quarter-warp (no bank conflict with
// rows DP + 4 floats apart). Output: each thread holds RQo x RD of the BQ x DP accumulator,
// query rows tqo + TQo * i and columns 4 * td + 4 * TDo * c .. + 3.
template <int DP_, int BQ_, int TK_, int RK_, int RD_> struct cfg {
    static constexpr int DP = DP_, BQ = BQ_, TK = TK_, RK = RK_, RD = RD_;
    static constexpr int TKt = TK / RK, TQt = NT / TKt, RQ = BQ / TQt;
    static constexpr int TDo = DP / RD, TQo = NT / TDo, RQo = BQ / TQo;
    static constexpr int QS = DP + 4, KS = DP + 4, PS = TK + 4; // row strides (floats)
    // Qs (BQ, QS), Ks (TK, KS), Vs (TK, DP), Ps (BQ, PS), alpha, m, l (BQ), row offsets (TK)
    static constexpr int SMEM_FLOATS = BQ * QS + TK * KS + TK * DP + BQ * PS + 3 * BQ;
    static constexpr size_t SMEM = SMEM_FLOATS * sizeof(float) + TK * sizeof(long long);
    static_assert(DP % 32 == 0 && TK % RK == 0 && RD % 4 == 0 && DP % RD == 0, "tiles");
    static_assert(TKt >= 8 && TKt <= 32 && NT % TKt == 0 && BQ % TQt == 0, "score tiles");
    static_assert(TDo >= 8 && NT % TDo == 0 && BQ % TQo == 0, "output tiles");
    static_assert(BQ % 4 == 0 && TK % 4 == 0 && (TK * DP / 4) % NT == 0, "loads");
};

// grid (qtiles * n_split, Hkv, n_seq), NT threads, C::SMEM bytes of dynamic shared memory.
template <class C> static __global__ void __launch_bounds__(NT) attn_kernel(struct attn_args a)
{
    constexpr int DP = C::DP, BQ = C::BQ, TK = C::TK, RK = C::RK, RD = C::RD;
    constexpr int TKt = C::TKt, TQt = C::TQt, RQ = C::RQ, TDo = C::TDo, TQo = C::TQo;
    constexpr int RQo = C::RQo, QS = C::QS, KS = C::KS, PS = C::PS;
    extern __shared__ float4 smem4[];
    float *Qs = (float *)smem4;    // (BQ, QS) queries * qscale, zero past D and past nq
    float *Ks = Qs + BQ * QS;      // (TK, KS) keys, zero past D and past the range
    float *Vs = Ks + TK * KS;      // (TK, DP) values, likewise
    float *Ps = Vs + TK * DP;      // (BQ, PS) exp2(s - m) of this tile
    float *alpha_s = Ps + BQ * PS; // (BQ) rescale of the accumulators for this tile
    float *m_s = alpha_s + BQ, *l_s = m_s + BQ;
    long long *row_off = (long long *)(l_s + BQ); // (TK) float offset of each kv row, or -1

    const int tid = threadIdx.x;
    const int n_split = a.n_split;
    const int qtiles = gridDim.x / n_split;
    // Last query tiles first: under a causal mask they see the most keys.
    const int qt = qtiles - 1 - (int)(blockIdx.x / n_split), split = (int)(blockIdx.x % n_split);
    const int kvh = blockIdx.y;
    const struct twc_attn_seq sq = a.seqs[blockIdx.z];
    const int G = a.G, D = a.D, H = a.H;
    const int nq = sq.n_rows * G, qv0 = qt * BQ;
    if (qv0 >= nq)
        return; // the whole block: this sequence has fewer rows than max_rows
    const int S = sq.n_past + sq.n_rows;
    const bool vec = D % 4 == 0 && aligned16(a.q) && aligned16(a.out) && aligned16(sq.k_pool) &&
                     aligned16(sq.v_pool) && (n_split == 1 || aligned16(a.part.o));

    // The keys the tile's rows see: from the first row's window start to the last row's end.
    const int p_first = sq.n_past + qv0 / G;
    const int p_last = sq.n_past + (min(qv0 + BQ, nq) - 1) / G;
    int kv_begin = a.window > 0 ? max(0, p_first - a.window + 1) : 0;
    int kv_end = a.causal ? p_last + 1 : S;
    kv_begin = max(kv_begin, split * a.chunk);
    kv_end = min(kv_end, split * a.chunk + a.chunk);

    // Queries: (BQ, D) of q's rows (T, H, D), scaled so that exp2 gives the softmax.
    for (int it = tid; it < BQ * DP / 4; it += NT) {
        int i = it / (DP / 4), d = 4 * (it % (DP / 4));
        int qv = qv0 + i;
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (qv < nq) {
            int r = qv / G, h = kvh * G + qv % G;
            x = load4(a.q + ((size_t)(sq.row0 + r) * H + h) * D, d, D, vec);
            x.x *= a.qscale, x.y *= a.qscale, x.z *= a.qscale, x.w *= a.qscale;
        }
        *(float4 *)(Qs + i * QS + d) = x;
    }

    // This thread's score rows: their visible keys [lo, hi); none for rows past nq.
    const int tk = tid % TKt, tq = tid / TKt;
    int lo[RQ], hi[RQ];
    float m[RQ], l[RQ];
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        int qv = qv0 + tq + TQt * i;
        int p = sq.n_past + qv / G;
        lo[i] = qv >= nq ? INT_MAX : a.window > 0 ? max(0, p - a.window + 1) : 0;
        hi[i] = a.causal ? p + 1 : S;
        m[i] = -INFINITY, l[i] = 0.f;
    }
    const int td = tid % TDo, tqo = tid / TDo;
    float4 o[RQo][RD / 4];
#pragma unroll
    for (int i = 0; i < RQo; i++)
#pragma unroll
        for (int c = 0; c < RD / 4; c++)
            o[i][c] = make_float4(0.f, 0.f, 0.f, 0.f);

    const size_t kv_row = (size_t)a.Hkv * D; // floats between cache rows
    for (int j0 = kv_begin; j0 < kv_end; j0 += TK) {
        const int n_kv = min(TK, kv_end - j0);
        for (int t = tid; t < TK; t += NT) {
            long long off = -1;
            if (t < n_kv) {
                int j = j0 + t;
                long long b = sq.block_table[j / a.block_rows];
                off = (long long)((b * a.block_rows + j % a.block_rows) * kv_row) +
                      (long long)kvh * D;
            }
            row_off[t] = off;
        }
        __syncthreads(); // row_off ready; the previous tile's Ks, Vs, Ps are consumed

        // K and V tiles, a few float4 loads in flight per thread before the stores.
        constexpr int NL = TK * DP / 4 / NT, NB = NL < 4 ? NL : 4;
        static_assert(NL % NB == 0, "load batches");
#pragma unroll
        for (int b0 = 0; b0 < NL; b0 += NB) {
            float4 kr[NB], vr[NB];
#pragma unroll
            for (int b = 0; b < NB; b++) {
                int it = tid + NT * (b0 + b);
                int t = it / (DP / 4), d = 4 * (it % (DP / 4));
                long long off = row_off[t];
                kr[b] = vr[b] = make_float4(0.f, 0.f, 0.f, 0.f);
                if (off >= 0) {
                    kr[b] = load4(sq.k_pool + off, d, D, vec);
                    vr[b] = load4(sq.v_pool + off, d, D, vec);
                }
            }
#pragma unroll
            for (int b = 0; b < NB; b++) {
                int it = tid + NT * (b0 + b);
                int t = it / (DP / 4), d = 4 * (it % (DP / 4));
                *(float4 *)(Ks + t * KS + d) = kr[b];
                *(float4 *)(Vs + t * DP + d) = vr[b];
            }
        }
        __syncthreads(); // Qs (first tile), Ks, Vs ready

        // Scores s = q k (log2 units), masked to -inf outside each row's [lo, hi).
        float s[RQ][RK];
#pragma unroll
        for (int i = 0; i < RQ; i++)
#pragma unroll
            for (int jj = 0; jj < RK; jj++)
                s[i][jj] = 0.f;
#pragma unroll 4
        for (int d = 0; d < DP; d += 4) {
            float4 qr[RQ], kr[RK];
#pragma unroll
            for (int i = 0; i < RQ; i++)
                qr[i] = *(const float4 *)(Qs + (tq + TQt * i) * QS + d);
#pragma unroll
            for (int jj = 0; jj < RK; jj++)
                kr[jj] = *(const float4 *)(Ks + (tk + TKt * jj) * KS + d);
#pragma unroll
            for (int i = 0; i < RQ; i++)
#pragma unroll
                for (int jj = 0; jj < RK; jj++) {
                    s[i][jj] = fmaf(qr[i].x, kr[jj].x, s[i][jj]);
                    s[i][jj] = fmaf(qr[i].y, kr[jj].y, s[i][jj]);
                    s[i][jj] = fmaf(qr[i].z, kr[jj].z, s[i][jj]);
                    s[i][jj] = fmaf(qr[i].w, kr[jj].w, s[i][jj]);
                }
        }

        // Online softmax: new running max, the accumulators' rescale, this tile's weights.
#pragma unroll
        for (int i = 0; i < RQ; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int jj = 0; jj < RK; jj++) {
                int t = tk + TKt * jj, j = j0 + t;
                if (t >= n_kv || j < lo[i] || j >= hi[i])
                    s[i][jj] = -INFINITY;
                mx = fmaxf(mx, s[i][jj]);
            }
            mx = group_max<TKt>(mx);
            float m_new = fmaxf(m[i], mx);
            // All masked so far: m_new is -inf, nothing is accumulated, and -inf - -inf
            // would make NaNs, so the weights are 0 and the rescale 1.
            bool none = m_new == -INFINITY;
            float alpha = none ? 1.f : exp2f(m[i] - m_new);
            m[i] = m_new;
            l[i] *= alpha;
            int qi = tq + TQt * i;
#pragma unroll
            for (int jj = 0; jj < RK; jj++) {
                float p = none ? 0.f : exp2f(s[i][jj] - m_new);
                l[i] += p;
                Ps[qi * PS + tk + TKt * jj] = p;
            }
            if (tk == 0)
                alpha_s[qi] = alpha;
        }
        __syncthreads(); // Ps, alpha_s ready

        // o = o * alpha + P V over the tile's rows (Ps is 0 and Vs finite past n_kv).
#pragma unroll
        for (int i = 0; i < RQo; i++) {
            float al = alpha_s[tqo + TQo * i];
#pragma unroll
            for (int c = 0; c < RD / 4; c++) {
                o[i][c].x *= al, o[i][c].y *= al, o[i][c].z *= al, o[i][c].w *= al;
            }
        }
        const int n_kv4 = (n_kv + 3) & ~3;
        for (int t = 0; t < n_kv4; t += 4) {
            float4 pr[RQo];
#pragma unroll
            for (int i = 0; i < RQo; i++)
                pr[i] = *(const float4 *)(Ps + (tqo + TQo * i) * PS + t);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                float4 vr[RD / 4];
#pragma unroll
                for (int c = 0; c < RD / 4; c++)
                    vr[c] = *(const float4 *)(Vs + (t + u) * DP + 4 * td + 4 * TDo * c);
#pragma unroll
                for (int i = 0; i < RQo; i++) {
                    float p = u == 0 ? pr[i].x : u == 1 ? pr[i].y : u == 2 ? pr[i].z : pr[i].w;
#pragma unroll
                    for (int c = 0; c < RD / 4; c++) {
                        o[i][c].x = fmaf(p, vr[c].x, o[i][c].x);
                        o[i][c].y = fmaf(p, vr[c].y, o[i][c].y);
                        o[i][c].z = fmaf(p, vr[c].z, o[i][c].z);
                        o[i][c].w = fmaf(p, vr[c].w, o[i][c].w);
                    }
                }
            }
        }
    }

    // Each row's sum lies spread over its TKt lanes; m is the same in all of them.
#pragma unroll
    for (int i = 0; i < RQ; i++) {
        float lt = group_sum<TKt>(l[i]);
        if (tk == 0) {
            m_s[tq + TQt * i] = m[i];
            l_s[tq + TQt * i] = lt;
        }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < RQo; i++) {
        int qi = tqo + TQo * i, qv = qv0 + qi;
        if (qv >= nq)
            continue;
        int r = qv / G, h = kvh * G + qv % G;
        float *dst;
        float inv = 1.f;
        if (n_split == 1) {
            // Every row sees at least its own key (or all keys), so l > 0.
            dst = a.out + ((size_t)(sq.row0 + r) * H + h) * D;
            inv = 1.f / l_s[qi];
        } else {
            size_t idx = (((size_t)blockIdx.z * a.max_rows + r) * H + h) * n_split + split;
            dst = a.part.o + idx * D;
            if (td == 0)
                a.part.ml[idx] = make_float2(m_s[qi], l_s[qi]);
        }
#pragma unroll
        for (int c = 0; c < RD / 4; c++) {
            float4 x = o[i][c];
            x.x *= inv, x.y *= inv, x.z *= inv, x.w *= inv;
            store4(dst, 4 * td + 4 * TDo * c, D, vec, x);
        }
    }
}

// Split-K's merge: out = sum_s o_s 2^(m_s - M) / sum_s l_s 2^(m_s - M), M = max_s m_s.
// grid (max_rows * H, n_seq), NT threads over the D columns.
static __global__ void __launch_bounds__(NT) combine_kernel(struct attn_args a)
{
    const struct twc_attn_seq sq = a.seqs[blockIdx.y];
    const int H = a.H, D = a.D, n_split = a.n_split;
    const int r = blockIdx.x / H, h = blockIdx.x % H;
    if (r >= sq.n_rows)
        return;
    const size_t idx0 = (((size_t)blockIdx.y * a.max_rows + r) * H + h) * n_split;
    const float2 *ml = a.part.ml + idx0;
    float M = -INFINITY;
    for (int sp = 0; sp < n_split; sp++)
        M = fmaxf(M, ml[sp].x);
    float L = 0.f;
    for (int sp = 0; sp < n_split; sp++)
        if (ml[sp].x != -INFINITY)
            L += ml[sp].y * exp2f(ml[sp].x - M);
    float *dst = a.out + ((size_t)(sq.row0 + r) * H + h) * D;
    const float *po = a.part.o + idx0 * D;
    for (int d = threadIdx.x; d < D; d += NT) {
        float acc = 0.f;
        for (int sp = 0; sp < n_split; sp++)
            if (ml[sp].x != -INFINITY)
                acc += po[(size_t)sp * D + d] * exp2f(ml[sp].x - M);
        dst[d] = acc / L;
    }
}

// Launches config C for the batch: picks the split count, allocates and frees the partials.
template <class C>
static cudaError_t launch(struct attn_args a, int n_seq, int32_t max_kv, cudaStream_t s)
{
    const int64_t nq_max = (int64_t)a.max_rows * a.G;
    const int64_t qtiles = (nq_max + C::BQ - 1) / C::BQ;
    const int64_t blocks = qtiles * a.Hkv * n_seq;
    int dev = 0, n_sm = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev);
    if (err != cudaSuccess)
        return err;
    // Split only when the grid would not fill the GPU (a few blocks an SM), into ranges of
    // at least 256 keys, and only while the partials stay small.
    int64_t n_split = 1;
    const int64_t target = 4 * (int64_t)n_sm;
    if (blocks < target && max_kv >= 512) {
        n_split = (target + blocks - 1) / blocks;
        n_split = n_split < max_kv / 256 ? n_split : max_kv / 256;
        n_split = n_split < 64 ? n_split : 64;
        const int64_t per_split = (int64_t)n_seq * a.max_rows * a.H * (a.D + 2) * 4;
        while (n_split > 1 && per_split * n_split > ((int64_t)64 << 20))
            n_split--;
    }
    int64_t chunk = (max_kv + n_split - 1) / n_split;
    chunk = (chunk + C::TK - 1) / C::TK * C::TK;
    n_split = (max_kv + chunk - 1) / chunk; // no trailing split without keys
    if (n_split < 1)
        n_split = 1;
    if (qtiles * n_split > INT_MAX)
        return cudaErrorInvalidValue;
    a.n_split = (int)n_split;
    a.chunk = (int)(n_split == 1 ? INT_MAX / 2 : chunk);

    void *part = NULL;
    if (n_split > 1) {
        size_t n = (size_t)n_seq * a.max_rows * a.H * n_split;
        size_t o_bytes = (n * a.D * sizeof(float) + 15) & ~(size_t)15;
        err = cudaMallocAsync(&part, o_bytes + n * sizeof(float2), s);
        if (err != cudaSuccess)
            return err;
        a.part.o = (float *)part;
        a.part.ml = (float2 *)((char *)part + o_bytes);
    }
    err = cudaFuncSetAttribute(attn_kernel<C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               (int)C::SMEM);
    if (err == cudaSuccess) {
        dim3 grid((unsigned)(qtiles * n_split), (unsigned)a.Hkv, (unsigned)n_seq);
        attn_kernel<C><<<grid, NT, C::SMEM, s>>>(a);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess && n_split > 1) {
        dim3 grid((unsigned)((int64_t)a.max_rows * a.H), (unsigned)n_seq);
        combine_kernel<<<grid, NT, 0, s>>>(a);
        err = cudaGetLastError();
    }
    if (part) {
        cudaError_t ferr = cudaFreeAsync(part, s);
        if (err == cudaSuccess)
            err = ferr;
    }
    return err;
}

// Small query tiles when a sequence brings few (decode), 64-query tiles otherwise.
template <class Small, class Large>
static cudaError_t launch_dp(struct attn_args a, int n_seq, int32_t max_kv, cudaStream_t s)
{
    if ((int64_t)a.max_rows * a.G <= Small::BQ)
        return launch<Small>(a, n_seq, max_kv, s);
    return launch<Large>(a, n_seq, max_kv, s);
}

cudaError_t twc_attention(float *out, const float *q, const struct twc_attn_seq *seqs, int n_seq,
                          int32_t max_rows, int32_t max_kv, int32_t block_rows,
                          const struct tw_attn *a, cudaStream_t s)
{
    if (n_seq <= 0 || max_rows <= 0)
        return cudaSuccess;
    if (a->head_dim <= 0 || a->head_dim > 256 || a->n_head_kv <= 0 ||
        a->n_head % a->n_head_kv != 0 || a->n_head_kv > 65535 || n_seq > 65535 ||
        block_rows <= 0 || max_kv < max_rows)
        return cudaErrorInvalidValue;
    struct attn_args x = {};
    x.out = out, x.q = q, x.seqs = seqs;
    x.H = a->n_head, x.Hkv = a->n_head_kv, x.G = a->n_head / a->n_head_kv, x.D = a->head_dim;
    x.block_rows = block_rows, x.max_rows = max_rows, x.window = a->window;
    x.causal = a->causal;
    x.qscale = a->scale * 1.4426950408889634f; // log2(e)
    if ((int64_t)max_rows * x.G > INT_MAX / 2)
        return cudaErrorInvalidValue;
    if (x.D <= 32)
        return launch_dp<cfg<32, 16, 32, 4, 4>, cfg<32, 64, 64, 8, 4>>(x, n_seq, max_kv, s);
    if (x.D <= 64)
        return launch_dp<cfg<64, 8, 32, 2, 4>, cfg<64, 64, 64, 8, 8>>(x, n_seq, max_kv, s);
    if (x.D <= 128)
        return launch_dp<cfg<128, 8, 32, 2, 8>, cfg<128, 64, 32, 4, 16>>(x, n_seq, max_kv, s);
    return launch_dp<cfg<256, 8, 32, 2, 16>, cfg<256, 32, 32, 4, 16>>(x, n_seq, max_kv, s);
}

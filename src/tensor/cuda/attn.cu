// Attention on the GPU (twc_attention): one kernel for decode and prefill, FlashAttention's
// tiling and online softmax (Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient
// Exact Attention with IO-Awareness"), never materialising the score matrix; long caches are
// split across blocks and merged by a second kernel (split-K, "Flash-Decoding", Dao et al.
// 2023). The cache is read through each sequence's block table (paged, kernels.cuh). With
// a->lowp, prefill-sized work goes instead to tc_kernel, which runs the two products
// on bf16 tensor cores with f32 accumulators.
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

#include <cuda_bf16.h>
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
    // split_unit: with n_split > 1, a split's range of keys is a multiple of it (the kernel's
    // key tile).
    int32_t H, Hkv, G, D, block_rows, max_rows, window, n_split, split_unit;
    bool causal;
    float qscale; // scale * log2(e)
    struct partials part;
    // tc_kernel<C, true> (twc_attention_bf16): q, the pools and out are bf16 (the pointers
    // above cast), and the biases of q (H * D), k and v (Hkv * D; each may be NULL) are added
    // to the rows as they are loaded.
    const float *bq, *bk, *bv;
};

// A block's query tile, key split and kv head: blockIdx.x = (i * n_split + split) * Hkv + kvh
// with tile qt = qtiles - 1 - i. Blocks start roughly in index order, so under a causal mask
// the last tiles of every head (which see the most keys) start first and the short ones fill
// the end of the grid.
struct block_pos {
    int qt, split, kvh;
};

static __device__ __forceinline__ struct block_pos block_pos_of(const struct attn_args &a)
{
    const int b = (int)blockIdx.x, rest = b / a.Hkv;
    const int qtiles = (int)gridDim.x / a.Hkv / a.n_split;
    return { qtiles - 1 - rest / a.n_split, rest % a.n_split, b % a.Hkv };
}

static __device__ __forceinline__ bool aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

// What a block of query vectors qv0 .. qv0 + BQ - 1 of sequence sq works on: its query
// vectors (nq of the sequence's), the cache length S, whether float4 accesses are aligned,
// and the keys its rows see (from the first row's window start to the last row's end), or with
// n_split > 1 this split's share of them. The shares are cut from the keys this tile sees,
// not from the cache's capacity: a graph recorded for the capacity (split for it) and replayed
// at a short length still spreads the keys there are over the splits (decode after a short
// prompt: a few tiles a split instead of all in the first). empty: the block is past the
// sequence's rows.
struct tile_range {
    bool empty, vec;
    int nq, S, kv_begin, kv_end;
};

static __device__ __forceinline__ struct tile_range
tile_range_of(const struct attn_args &a, const struct twc_attn_seq &sq, int qv0, int BQ, int split)
{
    struct tile_range r;
    const int G = a.G, D = a.D;
    r.nq = sq.n_rows * G;
    r.empty = qv0 >= r.nq;
    r.S = sq.n_past + sq.n_rows;
    r.vec = D % 4 == 0 && aligned16(a.q) && aligned16(a.out) && aligned16(sq.k_pool) &&
            aligned16(sq.v_pool) && (a.n_split == 1 || aligned16(a.part.o)) && aligned16(a.bq) &&
            aligned16(a.bk) && aligned16(a.bv);
    const int p_first = sq.n_past + qv0 / G;
    const int p_last = sq.n_past + (min(qv0 + BQ, r.nq) - 1) / G;
    int kv_begin = a.window > 0 ? max(0, p_first - a.window + 1) : 0;
    int kv_end = a.causal ? p_last + 1 : r.S;
    r.kv_begin = kv_begin, r.kv_end = kv_end;
    if (a.n_split > 1) {
        const int n = kv_end - kv_begin, u = a.split_unit;
        const int share = ((n + a.n_split - 1) / a.n_split + u - 1) / u * u;
        r.kv_begin = min(kv_end, kv_begin + split * share);
        r.kv_end = min(kv_end, r.kv_begin + share);
    }
    return r;
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

// load4 of a row of D bf16 (vec: 8-byte loads, D % 4 == 0, the row 8-byte aligned and the
// bias 16-byte aligned), plus bias[d .. d + 3] (zero past D) when bias is not NULL.
static __device__ __forceinline__ float4 load4_bf16(const __nv_bfloat16 *row, const float *bias,
                                                    int d, int D, bool vec)
{
    float4 r = make_float4(0.f, 0.f, 0.f, 0.f);
    if (vec) {
        if (d < D) {
            uint2 u = *(const uint2 *)(row + d);
            float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x);
            float2 b = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
            r = make_float4(a.x, a.y, b.x, b.y);
        }
    } else {
        if (d < D)
            r.x = __bfloat162float(row[d]);
        if (d + 1 < D)
            r.y = __bfloat162float(row[d + 1]);
        if (d + 2 < D)
            r.z = __bfloat162float(row[d + 2]);
        if (d + 3 < D)
            r.w = __bfloat162float(row[d + 3]);
    }
    if (bias && vec) {
        if (d < D) {
            float4 b = *(const float4 *)(bias + d);
            r.x += b.x, r.y += b.y, r.z += b.z, r.w += b.w;
        }
    } else if (bias) {
        r.x += d < D ? bias[d] : 0.f;
        r.y += d + 1 < D ? bias[d + 1] : 0.f;
        r.z += d + 2 < D ? bias[d + 2] : 0.f;
        r.w += d + 3 < D ? bias[d + 3] : 0.f;
    }
    return r;
}

// Row `row` of a pool (rows kv_row elements apart, this head's D at its start), f32 or bf16.
template <bool BF>
static __device__ __forceinline__ float4 pool_load4(const float *pool, size_t off,
                                                    const float *bias, int d, int D, bool vec)
{
    if (BF)
        return load4_bf16((const __nv_bfloat16 *)pool + off, bias, d, D, vec);
    return load4(pool + off, d, D, vec);
}

// Elements d and d + 1 (d even) of a row of D, f32 or (BF) bf16: one 8- or 4-byte store where
// vec (D % 4 == 0, the row aligned), element by element otherwise; none past D.
template <bool BF>
static __device__ __forceinline__ void store2(void *row, int d, int D, bool vec, float x0,
                                              float x1)
{
    if (BF) {
        __nv_bfloat16 *r = (__nv_bfloat16 *)row;
        if (vec && d < D) {
            *(__nv_bfloat162 *)(r + d) = __floats2bfloat162_rn(x0, x1);
        } else if (!vec) {
            if (d < D)
                r[d] = __float2bfloat16(x0);
            if (d + 1 < D)
                r[d + 1] = __float2bfloat16(x1);
        }
        return;
    }
    float *r = (float *)row;
    if (vec && d < D) {
        *(float2 *)(r + d) = make_float2(x0, x1);
    } else if (!vec) {
        if (d < D)
            r[d] = x0;
        if (d + 1 < D)
            r[d + 1] = x1;
    }
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

// grid (qtiles * n_split * Hkv, 1, n_seq) (block_pos_of), NT threads, C::SMEM bytes of dynamic
// shared memory.
template <class C> static __global__ void __launch_bounds__(NT) attn_kernel(struct attn_args a)
{
    constexpr int DP = C::DP, BQ = C::BQ, TK = C::TK, RK = C::RK, RD = C::RD;
    constexpr int TKt = C::TKt, TQt = C::TQt, RQ = C::RQ, TDo = C::TDo, TQo = C::TQo;
    constexpr int RQo = C::RQo, QS = C::QS, KS = C::KS, PS = C::PS;
    extern __shared__ float4 smem4[];
    twc_pdl_enter();
    float *Qs = (float *)smem4;    // (BQ, QS) queries * qscale, zero past D and past nq
    float *Ks = Qs + BQ * QS;      // (TK, KS) keys, zero past D and past the range
    float *Vs = Ks + TK * KS;      // (TK, DP) values, likewise
    float *Ps = Vs + TK * DP;      // (BQ, PS) exp2(s - m) of this tile
    float *alpha_s = Ps + BQ * PS; // (BQ) rescale of the accumulators for this tile
    float *m_s = alpha_s + BQ, *l_s = m_s + BQ;
    long long *row_off = (long long *)(l_s + BQ); // (TK) float offset of each kv row, or -1

    const int tid = threadIdx.x;
    const int n_split = a.n_split;
    const struct block_pos bp = block_pos_of(a);
    const int qt = bp.qt, split = bp.split, kvh = bp.kvh;
    const struct twc_attn_seq sq = a.seqs[blockIdx.z];
    const int G = a.G, D = a.D, H = a.H;
    const struct tile_range tr = tile_range_of(a, sq, qt * BQ, BQ, split);
    if (tr.empty)
        return; // the whole block: this sequence has fewer rows than max_rows
    const int nq = tr.nq, qv0 = qt * BQ, S = tr.S;
    const bool vec = tr.vec;
    int kv_begin = tr.kv_begin, kv_end = tr.kv_end;

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

// ---- bf16 tensor cores (a->lowp, prefill): the same blocks, query vectors and bounds as
// attn_kernel, the products on mma.sync.m16n8k16 with bf16 inputs and f32 accumulators
// (FlashAttention-2's work split, Dao 2023, "FlashAttention-2: Faster Attention with Better
// Parallelism and Work Partitioning": each warp owns WM tiles of 16 query vectors, so a row's
// softmax stays inside the 4 lanes of a quad, P never leaves registers, and each K or V
// fragment read from shared memory feeds WM products).
//
// Fragment layouts: kernels.cuh's helpers (twc_mma_bf16, twc_ldsm_x4). So Q K^T reads Q (query, d)
// and K (key, d) row-major with plain ldmatrix, and P V reads V (key, d) with .trans; the S
// accumulators of keys 16k .. 16k + 15 are, packed to bf16 pairs, the A fragment of P for k-step
// k.

// DP: head size padded (32, 64 or 128); TK kv rows a tile; WM 16-query tiles a warp; NW warps;
// MINB blocks an SM (launch bounds). Rows of the bf16 tiles are ST elements apart, 16 bytes
// more than a multiple of 128, so the 8 rows an ldmatrix reads fall in different banks.
template <int DP_, int TK_, int WM_, int NW_, int MINB_> struct tc_cfg {
    static constexpr int DP = DP_, TK = TK_, WM = WM_, NW = NW_, MINB = MINB_;
    static constexpr int NTH = 32 * NW, BQ = 16 * WM * NW, ST = DP + 8;
    static constexpr int CPR = DP / 4;         // float4 a cache row
    static constexpr int RSTEP = NTH / CPR;    // rows between one thread's loads
    static constexpr int RPT = TK * CPR / NTH; // float4 a thread loads of a K or V tile
    // Qs (BQ, ST), Ks and Vs two (TK, ST) each (double-buffered), bf16
    static constexpr size_t SMEM = (size_t)(BQ + 4 * TK) * ST * sizeof(uint16_t);
    static_assert(DP % 16 == 0 && TK % 16 == 0 && NTH % CPR == 0 && TK % RSTEP == 0, "tiles");
};

static __device__ __forceinline__ void st_bf16x4(uint16_t *p, float4 x)
{
    *(uint2 *)p = make_uint2(twc_pack_bf16(x.x, x.y), twc_pack_bf16(x.z, x.w));
}

// The pool rows (block * block_rows + row in block) of the kv tile at j0 that this thread
// loads, tile rows tid / CPR + RSTEP * b; -1 past the range's end.
template <class C>
static __device__ __forceinline__ void tc_rows(int (&row)[C::RPT], const struct twc_attn_seq &sq,
                                               int br, int j0, int kv_end)
{
#pragma unroll
    for (int b = 0; b < C::RPT; b++) {
        int j = j0 + (int)threadIdx.x / C::CPR + C::RSTEP * b;
        row[b] = j < kv_end ? sq.block_table[j / br] * br + j % br : -1;
    }
}

// This thread's float4 of those rows (zero past D and for rows -1: the pool may hold NaN);
// BF: a bf16 pool (pool + off counts bf16 elements), bias added.
template <class C, bool BF>
static __device__ __forceinline__ void tc_load(float4 (&x)[C::RPT], const float *pool,
                                               const float *bias, const int (&row)[C::RPT],
                                               size_t kv_row, int D, bool vec)
{
    const int d = 4 * ((int)threadIdx.x % C::CPR);
#pragma unroll
    for (int b = 0; b < C::RPT; b++) {
        x[b] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (row[b] >= 0)
            x[b] = pool_load4<BF>(pool, (size_t)row[b] * kv_row, bias, d, D, vec);
    }
}

template <class C>
static __device__ __forceinline__ void tc_store(uint16_t *tile, const float4 (&x)[C::RPT])
{
    const int t = (int)threadIdx.x / C::CPR, d = 4 * ((int)threadIdx.x % C::CPR);
#pragma unroll
    for (int b = 0; b < C::RPT; b++)
        st_bf16x4(tile + (t + C::RSTEP * b) * C::ST + d, x[b]);
}

// grid (qtiles * n_split * Hkv, 1, n_seq) (block_pos_of), C::NTH threads, C::SMEM bytes of dynamic
// shared memory. The next kv tile's floats are fetched into registers while the current one is
// multiplied (K before Q K^T, V before P V), then converted into the other buffer: one barrier a
// tile. The block table is read a tile earlier still, so its latency and the loads' do not add up.
template <class C, bool BF>
static __global__ void __launch_bounds__(C::NTH, C::MINB) tc_kernel(struct attn_args a)
{
    constexpr int DP = C::DP, BQ = C::BQ, TK = C::TK, ST = C::ST, RPT = C::RPT, WM = C::WM;
    extern __shared__ float4 smem4[];
    twc_pdl_enter();
    uint16_t *Qs = (uint16_t *)smem4; // (BQ, ST) bf16 queries * qscale, zero past D and nq
    uint16_t *Ks = Qs + BQ * ST;      // 2 x (TK, ST) keys, zero past D and past the range
    uint16_t *Vs = Ks + 2 * TK * ST;  // 2 x (TK, ST) values, likewise

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, g = lane / 4, c = lane % 4;
    const int n_split = a.n_split;
    const struct block_pos bp = block_pos_of(a);
    const int qt = bp.qt, split = bp.split, kvh = bp.kvh;
    const struct twc_attn_seq sq = a.seqs[blockIdx.z];
    const int G = a.G, D = a.D, H = a.H;
    const struct tile_range tr = tile_range_of(a, sq, qt * BQ, BQ, split);
    if (tr.empty)
        return;
    const int nq = tr.nq, qv0 = qt * BQ, S = tr.S;
    const bool vec = tr.vec;
    const int kv_begin = tr.kv_begin, kv_end = tr.kv_end;

    const size_t kv_row = (size_t)a.Hkv * D;
    // This kv head's columns of the pools (in their element type) and of k's and v's biases.
    const float *k_pool = BF ? (const float *)((const __nv_bfloat16 *)sq.k_pool + kvh * D)
                             : sq.k_pool + (size_t)kvh * D;
    const float *v_pool = BF ? (const float *)((const __nv_bfloat16 *)sq.v_pool + kvh * D)
                             : sq.v_pool + (size_t)kvh * D;
    const float *bk = BF && a.bk ? a.bk + kvh * D : NULL, *bv = BF && a.bv ? a.bv + kvh * D : NULL;
    int row[RPT], row_next[RPT];
    float4 x[RPT];
    tc_rows<C>(row, sq, a.block_rows, kv_begin, kv_end);
    tc_rows<C>(row_next, sq, a.block_rows, kv_begin + TK, kv_end);
    tc_load<C, BF>(x, k_pool, bk, row, kv_row, D, vec);

    for (int it = tid; it < BQ * DP / 4; it += C::NTH) {
        int i = it / (DP / 4), d = 4 * (it % (DP / 4));
        int qv = qv0 + i;
        float4 q = make_float4(0.f, 0.f, 0.f, 0.f);
        if (qv < nq) {
            int r = qv / G, h = kvh * G + qv % G;
            q = pool_load4<BF>(a.q, ((size_t)(sq.row0 + r) * H + h) * D,
                               BF && a.bq ? a.bq + h * D : NULL, d, D, vec);
            q.x *= a.qscale, q.y *= a.qscale, q.z *= a.qscale, q.w *= a.qscale;
        }
        st_bf16x4(Qs + i * ST + d, q);
    }
    tc_store<C>(Ks, x);
    tc_load<C, BF>(x, v_pool, bv, row, kv_row, D, vec);
    tc_store<C>(Vs, x);

    // This lane's rows qw + 16 mt + g + 8 r (slot i = 2 mt + r), their visible keys [lo, hi)
    // (none past nq); the warp's: keys some row sees [wlo, whi), keys all rows see [alo, ahi).
    const int qw = qv0 + 16 * WM * warp;
    int lo[2 * WM], hi[2 * WM];
    float m[2 * WM], l[2 * WM];
#pragma unroll
    for (int i = 0; i < 2 * WM; i++) {
        int qv = qw + 16 * (i / 2) + g + 8 * (i % 2), p = sq.n_past + qv / G;
        lo[i] = qv >= nq ? INT_MAX : a.window > 0 ? max(0, p - a.window + 1) : 0;
        hi[i] = a.causal ? p + 1 : S;
        m[i] = -INFINITY, l[i] = 0.f;
    }
    const bool w_live = qw < nq, w_full = qw + 16 * WM <= nq;
    const int pa = sq.n_past + qw / G, pb = sq.n_past + (min(qw + 16 * WM, nq) - 1) / G;
    const int wlo = a.window > 0 ? max(0, pa - a.window + 1) : 0, whi = a.causal ? pb + 1 : S;
    const int alo = a.window > 0 ? max(0, pb - a.window + 1) : 0, ahi = a.causal ? pa + 1 : S;

    float o[WM][DP / 8][4]; // (16, DP) a tile: n-tile nd holds columns 8 nd .. 8 nd + 7
#pragma unroll
    for (int mt = 0; mt < WM; mt++)
#pragma unroll
        for (int nd = 0; nd < DP / 8; nd++)
            o[mt][nd][0] = o[mt][nd][1] = o[mt][nd][2] = o[mt][nd][3] = 0.f;
    // This lane's address of the warp's Q A fragments (tile mt, k-step kd at + 16 (mt ST + kd)).
    const uint16_t *Qw = Qs + (16 * WM * warp + lane % 16) * ST + 8 * (lane / 16);
    __syncthreads(); // Qs and the first K, V tiles ready

    int buf = 0;
    for (int j0 = kv_begin; j0 < kv_end; j0 += TK, buf ^= 1) {
        const int n_kv = min(TK, kv_end - j0);
        const bool next = j0 + TK < kv_end;
        const uint16_t *Kc = Ks + buf * TK * ST, *Vc = Vs + buf * TK * ST;
        if (next) {
#pragma unroll
            for (int b = 0; b < RPT; b++)
                row[b] = row_next[b];
            tc_load<C, BF>(x, k_pool, bk, row, kv_row, D, vec);
            tc_rows<C>(row_next, sq, a.block_rows, j0 + 2 * TK, kv_end);
        }
        // Warp-uniform: whether any of the warp's rows sees a key of the tile.
        const bool work = w_live && j0 < whi && j0 + n_kv > wlo;
        float s[WM][TK / 8][4]; // (16, TK) scores a tile: n-tile n holds keys j0 + 8 n .. + 7
        if (work) {
#pragma unroll
            for (int mt = 0; mt < WM; mt++)
#pragma unroll
                for (int n = 0; n < TK / 8; n++)
                    s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
#pragma unroll
            for (int kd = 0; kd < DP / 16; kd++) {
                uint32_t qf[WM][4];
#pragma unroll
                for (int mt = 0; mt < WM; mt++)
                    twc_ldsm_x4(qf[mt], Qw + 16 * (mt * ST + kd));
#pragma unroll
                for (int np = 0; np < TK / 16; np++) {
                    // keys 16 np + (0..7 | 8..15) x d 16 kd + (0..7 | 8..15)
                    uint32_t kb[4];
                    twc_ldsm_x4(kb, Kc + (16 * np + lane % 8 + 8 * (lane / 16)) * ST + 16 * kd +
                                        8 * (lane / 8 % 2));
#pragma unroll
                    for (int mt = 0; mt < WM; mt++) {
                        twc_mma_bf16(s[mt][2 * np], qf[mt], kb[0], kb[1]);
                        twc_mma_bf16(s[mt][2 * np + 1], qf[mt], kb[2], kb[3]);
                    }
                }
            }
        }
        if (next) {
            tc_store<C>(Ks + (buf ^ 1) * TK * ST, x);
            tc_load<C, BF>(x, v_pool, bv, row, kv_row, D, vec);
        }
        if (work) {
            // Masks only where the tile is not wholly inside every row's range.
            if (n_kv < TK || j0 < alo || j0 + TK > ahi || !w_full) {
#pragma unroll
                for (int mt = 0; mt < WM; mt++)
#pragma unroll
                    for (int n = 0; n < TK / 8; n++)
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            int t = 8 * n + 2 * c + e % 2, j = j0 + t, i = 2 * mt + e / 2;
                            if (t >= n_kv || j < lo[i] || j >= hi[i])
                                s[mt][n][e] = -INFINITY;
                        }
            }
            // Online softmax per row (slot i: tile i / 2, elements 2 (i % 2) ..), over the
            // quad's lanes.
#pragma unroll
            for (int i = 0; i < 2 * WM; i++) {
                const int mt = i / 2, e0 = 2 * (i % 2);
                float mx = -INFINITY;
#pragma unroll
                for (int n = 0; n < TK / 8; n++)
                    mx = fmaxf(mx, fmaxf(s[mt][n][e0], s[mt][n][e0 + 1]));
                mx = group_max<4>(mx);
                float m_new = fmaxf(m[i], mx);
                // All masked so far (m_new -inf): subtracting 0 instead keeps the weights
                // exp2(-inf) = 0 and the rescale 0 of accumulators still 0, without NaNs
                // and without a branch.
                float m_sub = m_new == -INFINITY ? 0.f : m_new;
                float alpha = twc_exp2_ftz(m[i] - m_sub);
                m[i] = m_new;
                l[i] *= alpha;
#pragma unroll
                for (int n = 0; n < TK / 8; n++)
#pragma unroll
                    for (int e = e0; e < e0 + 2; e++) {
                        float p = twc_exp2_ftz(s[mt][n][e] - m_sub);
                        s[mt][n][e] = p;
                        l[i] += p;
                    }
#pragma unroll
                for (int nd = 0; nd < DP / 8; nd++)
                    o[mt][nd][e0] *= alpha, o[mt][nd][e0 + 1] *= alpha;
            }
            // o += P V: P's A fragment for keys 16 kt .. from the score n-tiles 2 kt, 2 kt + 1.
#pragma unroll
            for (int kt = 0; kt < TK / 16; kt++) {
                uint32_t pf[WM][4];
#pragma unroll
                for (int mt = 0; mt < WM; mt++)
                    twc_acc_to_a(pf[mt], s[mt][2 * kt], s[mt][2 * kt + 1]);
#pragma unroll
                for (int dp = 0; dp < DP / 16; dp++) {
                    // keys 16 kt + (0..7 | 8..15) x d 16 dp + (0..7 | 8..15), transposed
                    uint32_t vb[4];
                    twc_ldsm_x4_t(vb, Vc + (16 * kt + lane % 8 + 8 * (lane / 8 % 2)) * ST +
                                          16 * dp + 8 * (lane / 16));
#pragma unroll
                    for (int mt = 0; mt < WM; mt++) {
                        twc_mma_bf16(o[mt][2 * dp], pf[mt], vb[0], vb[1]);
                        twc_mma_bf16(o[mt][2 * dp + 1], pf[mt], vb[2], vb[3]);
                    }
                }
            }
        }
        if (next)
            tc_store<C>(Vs + (buf ^ 1) * TK * ST, x);
        __syncthreads(); // the next tile ready; this one's buffers free for the one after
    }

#pragma unroll
    for (int i = 0; i < 2 * WM; i++) {
        const int mt = i / 2, e0 = 2 * (i % 2);
        float lt = group_sum<4>(l[i]); // every lane of the quad gets the row's sum
        int qv = qw + 16 * mt + g + 8 * (i % 2);
        if (qv >= nq)
            continue;
        int rr = qv / G, h = kvh * G + qv % G;
        void *dst;
        float inv = 1.f;
        if (BF || n_split == 1) { // (BF: never split, twc_attention_bf16)
            size_t off = ((size_t)(sq.row0 + rr) * H + h) * D;
            dst = BF ? (void *)((__nv_bfloat16 *)a.out + off) : (void *)(a.out + off);
            inv = 1.f / lt; // every row sees at least its own key (or all keys)
        } else {
            size_t idx = (((size_t)blockIdx.z * a.max_rows + rr) * H + h) * n_split + split;
            dst = a.part.o + idx * D;
            if (c == 0)
                a.part.ml[idx] = make_float2(m[i], lt);
        }
#pragma unroll
        for (int nd = 0; nd < DP / 8; nd++)
            store2<BF>(dst, 8 * nd + 2 * c, D, vec, o[mt][nd][e0] * inv, o[mt][nd][e0 + 1] * inv);
    }
}

// Split-K's merge: out = sum_s o_s 2^(m_s - M) / sum_s l_s 2^(m_s - M), M = max_s m_s.
// grid (max_rows * H, n_seq), NT threads over the D columns.
static __global__ void __launch_bounds__(NT) combine_kernel(struct attn_args a)
{
    twc_pdl_enter();
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

// A kernel and its tiling, for launch: grid (qtiles * n_split * Hkv, 1, n_seq).
struct kernel {
    void (*fn)(struct attn_args);
    int bq, tk, threads;
    size_t smem;
    int waves; // blocks an SM wanted before splitting the keys
};

template <class C> static struct kernel f32_kernel(void)
{
    return (struct kernel){ attn_kernel<C>, C::BQ, C::TK, NT, C::SMEM, 4 };
}

// waves 0: never split the keys (tc_kernel<C, true> writes bf16 rows, no partials).
template <class C, bool BF> static struct kernel bf16_kernel(int waves)
{
    return (struct kernel){ tc_kernel<C, BF>, C::BQ, C::TK, C::NTH, C::SMEM, BF ? 0 : waves };
}

// Launches k for the batch: picks the split count, allocates and frees the partials.
static cudaError_t launch(struct kernel k, struct attn_args a, int n_seq, int32_t max_kv,
                          cudaStream_t s)
{
    const int64_t nq_max = (int64_t)a.max_rows * a.G;
    const int64_t qtiles = (nq_max + k.bq - 1) / k.bq;
    const int64_t blocks = qtiles * a.Hkv * n_seq;
    int n_sm = 0;
    cudaError_t err = twc_sm_count(&n_sm);
    if (err != cudaSuccess)
        return err;
    // Split only when the grid would not fill the GPU (a few blocks an SM), into at most one
    // split per 256 keys of max_kv, and only while the partials stay small. Each block's share
    // of the keys is cut when it runs, from the keys its tile sees (tile_range_of).
    int64_t n_split = 1;
    const int64_t target = (int64_t)k.waves * n_sm;
    if (blocks < target && max_kv >= 512 && k.waves > 0) {
        n_split = (target + blocks - 1) / blocks;
        n_split = n_split < max_kv / 256 ? n_split : max_kv / 256;
        n_split = n_split < 64 ? n_split : 64;
        const int64_t per_split = (int64_t)n_seq * a.max_rows * a.H * (a.D + 2) * 4;
        while (n_split > 1 && per_split * n_split > ((int64_t)64 << 20))
            n_split--;
    }
    int64_t chunk = (max_kv + n_split - 1) / n_split;
    chunk = (chunk + k.tk - 1) / k.tk * k.tk;
    n_split = (max_kv + chunk - 1) / chunk; // no trailing split without keys
    if (n_split < 1)
        n_split = 1;
    if (qtiles * n_split * a.Hkv > INT_MAX)
        return cudaErrorInvalidValue;
    a.n_split = (int)n_split;
    a.split_unit = k.tk;

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
    err = cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)k.smem);
    if (err == cudaSuccess) {
        dim3 grid((unsigned)(qtiles * n_split * a.Hkv), 1, (unsigned)n_seq);
        err = twc_launch(k.fn, grid, dim3((unsigned)k.threads), k.smem, s, a);
    }
    if (err == cudaSuccess && n_split > 1) {
        dim3 grid((unsigned)((int64_t)a.max_rows * a.H), (unsigned)n_seq);
        err = twc_launch(combine_kernel, grid, dim3(NT), 0, s, a);
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
        return launch(f32_kernel<Small>(), a, n_seq, max_kv, s);
    return launch(f32_kernel<Large>(), a, n_seq, max_kv, s);
}

// The arguments common to twc_attention and twc_attention_bf16, checked (block_rows > 0,
// max_kv >= max_rows, grid limits); cudaErrorInvalidValue when they do not hold.
static cudaError_t args_of(struct attn_args *x, float *out, const float *q,
                           const struct twc_attn_seq *seqs, int n_seq, int32_t max_rows,
                           int32_t max_kv, int32_t block_rows, const struct tw_attn *a)
{
    if (a->head_dim <= 0 || a->head_dim > 256 || a->n_head_kv <= 0 ||
        a->n_head % a->n_head_kv != 0 || a->n_head_kv > 65535 || n_seq > 65535 ||
        block_rows <= 0 || max_kv < max_rows)
        return cudaErrorInvalidValue;
    *x = attn_args{};
    x->out = out, x->q = q, x->seqs = seqs;
    x->H = a->n_head, x->Hkv = a->n_head_kv, x->G = a->n_head / a->n_head_kv, x->D = a->head_dim;
    x->block_rows = block_rows, x->max_rows = max_rows, x->window = a->window;
    x->causal = a->causal;
    x->qscale = a->scale * 1.4426950408889634f; // log2(e)
    return (int64_t)max_rows * x->G > INT_MAX / 2 ? cudaErrorInvalidValue : cudaSuccess;
}

// Whether the work goes to the bf16 tensor cores (tc_kernel): a->lowp, head sizes up to 128,
// several rows and a query tile well filled (a->n_head_kv checked > 0 before).
static bool tc_ok(const struct tw_attn *a, int32_t max_rows)
{
    return a->lowp && a->head_dim <= 128 && max_rows > 1 &&
           (int64_t)max_rows * (a->n_head / a->n_head_kv) >= 64;
}

// tc_kernel's tilings and split targets, the fastest measured on H100 (bench/cuda_attn.cu):
// D 128 two 16-query tiles a warp, 256 a block (K and V read from L2 and shared memory half as
// often per product), split while under 2 blocks an SM; D 64 one tile a warp, 128 a block,
// split only under 1; D 32 (BERT's MiniLM) the same tiles, two blocks an SM: at one (136
// registers a thread, a 32 KB shared-memory carve-out) the encoder's 3072 blocks of 128-token
// sequences ran 23 waves at 12.5 % occupancy, and bench/embed gained 11 % from two (H200; TK
// 128, 4 warps or WM 2 no better). BF: tc_kernel<C, true> (bf16 rows, never split).
template <bool BF>
static cudaError_t launch_tc(struct attn_args x, int n_seq, int32_t max_kv, cudaStream_t s)
{
    if (x.D <= 32)
        return launch(bf16_kernel<tc_cfg<32, 64, 1, 8, 2>, BF>(1), x, n_seq, max_kv, s);
    if (x.D <= 64)
        return launch(bf16_kernel<tc_cfg<64, 64, 1, 8, 1>, BF>(1), x, n_seq, max_kv, s);
    return launch(bf16_kernel<tc_cfg<128, 32, 2, 8, 1>, BF>(2), x, n_seq, max_kv, s);
}

cudaError_t twc_attention(float *out, const float *q, const struct twc_attn_seq *seqs, int n_seq,
                          int32_t max_rows, int32_t max_kv, int32_t block_rows,
                          const struct tw_attn *a, cudaStream_t s)
{
    if (n_seq <= 0 || max_rows <= 0)
        return cudaSuccess;
    struct attn_args x;
    cudaError_t err = args_of(&x, out, q, seqs, n_seq, max_rows, max_kv, block_rows, a);
    if (err != cudaSuccess)
        return err;
    // bf16 tensor cores for prefill-sized work; decode rows keep f32.
    if (tc_ok(a, max_rows))
        return launch_tc<false>(x, n_seq, max_kv, s);
    if (x.D <= 32)
        return launch_dp<cfg<32, 16, 32, 4, 4>, cfg<32, 64, 64, 8, 4>>(x, n_seq, max_kv, s);
    if (x.D <= 64)
        return launch_dp<cfg<64, 8, 32, 2, 4>, cfg<64, 64, 64, 8, 8>>(x, n_seq, max_kv, s);
    if (x.D <= 128)
        return launch_dp<cfg<128, 8, 32, 2, 8>, cfg<128, 64, 32, 4, 16>>(x, n_seq, max_kv, s);
    return launch_dp<cfg<256, 8, 32, 2, 16>, cfg<256, 32, 32, 4, 16>>(x, n_seq, max_kv, s);
}

bool twc_attention_bf16_ok(const struct tw_attn *a, int32_t max_rows)
{
    return a->head_dim > 0 && a->head_dim % 4 == 0 && a->n_head_kv > 0 &&
           a->n_head % a->n_head_kv == 0 && tc_ok(a, max_rows);
}

cudaError_t twc_attention_bf16(__nv_bfloat16 *out, const __nv_bfloat16 *q, const float *bq,
                               const float *bk, const float *bv, const struct twc_attn_seq *seqs,
                               int n_seq, int32_t max_rows, int32_t max_kv, int32_t block_rows,
                               const struct tw_attn *a, cudaStream_t s)
{
    if (n_seq <= 0 || max_rows <= 0)
        return cudaSuccess;
    if (!twc_attention_bf16_ok(a, max_rows))
        return cudaErrorInvalidValue;
    struct attn_args x;
    cudaError_t err =
        args_of(&x, (float *)out, (const float *)q, seqs, n_seq, max_rows, max_kv, block_rows, a);
    if (err != cudaSuccess)
        return err;
    x.bq = bq, x.bk = bk, x.bv = bv;
    return launch_tc<true>(x, n_seq, max_kv, s);
}

// ---- prefill of fresh sequences on the training attention's kernel (fattn.cu's forward:
// FlashAttention-2's split, 64-row tiles of one head, K and V double-buffered through
// cp.async, bf16 rows gathered once instead of the cache's floats rounded a tile at a time):
// the 1B's 2048-token prefill ran 4 % faster for it (docs/perf.md). Every sequence of the
// step has n_past 0, so its keys are exactly its query rows: the step is packed examples, a
// row t of sequence i seeing rows row0_i .. t (fa_args.start).

bool twc_attention_flash_ok(const struct twc_attn_seq *seqs, int n_seq, int32_t T,
                            const struct tw_attn *a, bool any_size)
{
    if (!a->lowp || !a->causal || !twc_flash_ok(a->head_dim) || a->n_head_kv <= 0 ||
        a->n_head % a->n_head_kv != 0 || T < 64 || n_seq <= 0)
        return false;
    for (int i = 0; i < n_seq; i++)
        if (seqs[i].n_past != 0 || seqs[i].row0 < 0 || seqs[i].n_rows < 0 ||
            seqs[i].row0 > T - seqs[i].n_rows)
            return false;
    if (any_size)
        return true;
    // Its grid (a block per head and 128 rows, no split of the keys) must fill the SMs at the
    // blocks an SM holds (two for head sizes up to 64, one above): SmolLM2's 9 heads over
    // 2048 rows (288 blocks of 64 rows then, four an SM) ran 14 % slower than tc_kernel, which
    // splits; the 1B's 32 heads (1024 blocks) 4 % faster (docs/perf.md).
    int n_sm = 0;
    if (twc_sm_count(&n_sm) != cudaSuccess)
        return false;
    int64_t blocks = (int64_t)a->n_head * ((T + 127) / 128);
    return blocks >= (int64_t)n_sm * (a->head_dim <= 64 ? 2 : 1);
}

// The parts of twc_attention_flash's scratch, each 16-byte aligned: q, k, v in bf16, start,
// the log-sum-exp the forward writes.
struct flash_parts {
    size_t q, kv, start, lse, total;
};

static size_t align16(size_t n)
{
    return (n + 15) / 16 * 16;
}

static struct flash_parts flash_parts_of(int32_t T, const struct tw_attn *a)
{
    struct flash_parts p;
    p.q = align16((size_t)T * a->n_head * a->head_dim * 2);
    p.kv = align16((size_t)T * a->n_head_kv * a->head_dim * 2);
    p.start = align16((size_t)T * sizeof(int32_t));
    p.lse = align16((size_t)T * a->n_head * sizeof(float));
    p.total = p.q + 2 * p.kv + p.start + p.lse;
    return p;
}

size_t twc_attention_flash_bytes(int32_t T, const struct tw_attn *a)
{
    return flash_parts_of(T, a).total;
}

// Row t of the step (a block): its query row, and its sequence's key and value row (the
// cache row t - row0, read through the block table) in bf16; start[t] = the sequence's row0.
// A row of no sequence (padding) sees only itself, over zero keys and values.
static __global__ void flash_gather_kernel(__nv_bfloat16 *qb, __nv_bfloat16 *kb, __nv_bfloat16 *vb,
                                           int32_t *start, const float *q,
                                           const struct twc_attn_seq *seqs, int n_seq, int H,
                                           int Hkv, int D, int32_t block_rows)
{
    twc_pdl_enter();
    const int32_t t = (int32_t)blockIdx.x;
    int found = -1;
    for (int i = 0; i < n_seq; i++)
        if (t >= seqs[i].row0 && t < seqs[i].row0 + seqs[i].n_rows)
            found = i;
    const size_t qn = (size_t)H * D, kvn = (size_t)Hkv * D;
    for (size_t e = threadIdx.x; e < qn; e += blockDim.x)
        qb[t * qn + e] = __float2bfloat16(q[t * qn + e]);
    const float *kr = NULL, *vr = NULL;
    if (found >= 0) {
        const struct twc_attn_seq sq = seqs[found];
        const int32_t j = t - sq.row0;
        const size_t row = (size_t)sq.block_table[j / block_rows] * block_rows + j % block_rows;
        kr = sq.k_pool + row * kvn, vr = sq.v_pool + row * kvn;
    }
    for (size_t e = threadIdx.x; e < kvn; e += blockDim.x) {
        kb[t * kvn + e] = __float2bfloat16(kr ? kr[e] : 0.f);
        vb[t * kvn + e] = __float2bfloat16(vr ? vr[e] : 0.f);
    }
    if (threadIdx.x == 0)
        start[t] = found >= 0 ? seqs[found].row0 : t;
}

cudaError_t twc_attention_flash(float *out, const float *q, const struct twc_attn_seq *seqs,
                                int n_seq, int32_t T, int32_t block_rows, const struct tw_attn *a,
                                void *scratch, cudaStream_t s)
{
    if (T <= 0 || n_seq <= 0 || block_rows <= 0 || !twc_flash_ok(a->head_dim))
        return cudaErrorInvalidValue;
    const struct flash_parts p = flash_parts_of(T, a);
    char *b = (char *)scratch;
    __nv_bfloat16 *qb = (__nv_bfloat16 *)b, *kb = (__nv_bfloat16 *)(b + p.q),
                  *vb = (__nv_bfloat16 *)(b + p.q + p.kv);
    int32_t *start = (int32_t *)(b + p.q + 2 * p.kv);
    float *lse = (float *)(b + p.q + 2 * p.kv + p.start);
    cudaError_t e =
        twc_launch(flash_gather_kernel, dim3((unsigned)T), dim3(NT), 0, s, qb, kb, vb, start, q,
                   seqs, n_seq, a->n_head, a->n_head_kv, a->head_dim, block_rows);
    if (e != cudaSuccess)
        return e;
    return twc_flash_fwd(out, NULL, lse, qb, kb, vb, start, 1, T, a->n_head, a->n_head_kv,
                         a->head_dim, a->scale, a->window, s);
}

// The fast CPU backend: matmuls through the SIMD dot kernels of cpu_dot.h and cpu_qdot.h
// (decode: one weight row read once for up to 8 activation rows) or through OpenBLAS' sgemm on
// dequantised tiles of the weights (prefill; bf16 weights through cpu_gemm.h's AVX-512 BF16
// kernel where the CPU has it); attention with an online softmax per (token, head); OpenMP
// threads over rows. Ops without a fast path run the reference.
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/error.h"
#include "base/mem.h"
#include "tensor/backend.h"
#include "tensor/cpu_dot.h"
#include "tensor/cpu_gemm.h"
#include "tensor/cpu_int.h"
#include "tensor/cpu_qdot.h"

// Batches of more activation rows than this go to sgemm.
#define GEMM_MIN_ROWS 16
// Work (multiply-adds) under which an op stays on the calling thread.
#define PAR_MIN (1 << 16)
// Bytes of dequantised weights per sgemm tile, per thread.
#define TILE_BYTES (2u << 20)

struct cpu_impl {
    tw_dot_fn dot[TW_DTYPE_COUNT];
    tw_qdot_fn qdot[TW_DTYPE_COUNT];           // NULL for the float dtypes
    tw_qdot_rows_fn qdot_rows[TW_DTYPE_COUNT]; // NULL where the ISA has none
    tw_qdot_k_fn qdot_k[TW_DTYPE_COUNT];       // over packed activations (q4_K, q4_0, q8_0)
    tw_q8_act_fn quantize;
    float *tiles;        // TILE_BYTES per thread
    bool gemm_bf16;      // bf16 weights go to cpu_gemm.h's kernel (tw_gemm_bf16_usable)
    tw_attend_fn attend; // the decode rows' attention (cpu_attn.c)
    tw_swiglu_fn swiglu; // cpu_vec.c
    enum tw_cpu_isa isa;
    size_t llc; // the last-level cache's bytes (cpu_dot.h's prefetch: weights past a quarter
                // of it stream)
};

_Static_assert(TILE_BYTES >= TW_GEMM_BF16_SCRATCH, "a tile is the bf16 kernel's scratch");

static float *f32(const struct tw_tensor *t)
{
    return (float *)t->data;
}

static struct cpu_impl *impl(struct tw_backend *be)
{
    return be->impl;
}

// The shortest rows the one-row kernels over packed activations take (tw_qdot_k_fn): on
// shorter ones the multi-row kernels are faster, their calls' fixed costs shared by four rows
// (SmolLM2's K = 576 and 1536 in q4_0 at one thread: 116 against 86-103 t/s packed on the
// development VM, docs/perf.md); from the 1B's K = 2048 on, the packed ones are (+24-31 % at
// one thread on the device's host).
#define PACK_MIN_K 2048

// ys[i] (T, N_i) for T <= GEMM_MIN_ROWS, for n weights of the same input: the threads share
// out the rows of all of them (one fork and join), and each weight row is streamed once
// against up to 8 activation rows at a time. Block-quantised weights (q8_0, q4_0, q4_K,
// q6_K) meet the activations quantised once to int8 blocks (cpu_qdot.h), as llama.cpp does:
// integer dot products keep the decode memory-bound where float decoding would not. For one
// activation row, the dtypes with a multi-row kernel (tw_qdot_rows_fn) go TW_QDOT_ROWS weight
// rows a call: the threads share out units of that many rows.
static void matmul_dot(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                       const struct tw_tensor *x, const struct tw_tensor *const *ws,
                       const struct tw_tensor *const *biases)
{
    int64_t T = tw_tensor_nrows(x), K = ws[0]->ne[1], total = 0, work = 0;
    int64_t start[9]; // the first unit of each weight; a unit is per[i] rows
    int per[8];
    bool any_q = false, any_k = false;
    assert(n >= 1 && n <= 8);
    struct cpu_impl *im = impl(be);
    for (int i = 0; i < n; i++) {
        any_q |= im->qdot[ws[i]->dtype] != NULL;
        any_k |= im->qdot_k[ws[i]->dtype] != NULL;
    }
    const float *xs = f32(x);
    // K is a multiple of 32 wherever a block dtype is in ws (its rows are whole blocks). At one
    // activation row of K >= PACK_MIN_K, Q4_K, Q4_0 and Q8_0 read it packed (tw_q8k_act) after
    // the blocks, in the same allocation.
    int64_t kb = K / TW_QK8_ACT;
    size_t q_bytes = (size_t)(T * kb) * sizeof(struct tw_q8_act);
    bool pack = any_k && T == 1 && K % TW_QK_K == 0 && K >= PACK_MIN_K;
    struct tw_q8_act *xq = NULL;
    struct tw_q8k_act *xk = NULL;
    if (any_q && K % TW_QK8_ACT == 0)
        xq = tw_malloc(q_bytes + (pack ? (size_t)(K / TW_QK_K) * sizeof *xk : 0));
    if (xq) { // else the float kernels below do the work
        for (int64_t t = 0; t < T; t++)
            im->quantize(xs + t * K, (size_t)K, xq + t * kb);
        if (pack)
            tw_q8k_act_pack(xq, (size_t)K, xk = (struct tw_q8k_act *)((char *)xq + q_bytes));
    }
    for (int i = 0; i < n; i++) {
        bool packed = xk && im->qdot_k[ws[i]->dtype];
        per[i] = xq && T == 1 && !packed && im->qdot_rows[ws[i]->dtype] ? TW_QDOT_ROWS : 1;
        start[i] = total;
        total += (ws[i]->ne[0] + per[i] - 1) / per[i];
        work += ws[i]->ne[0] * K * T;
    }
    start[n] = total;
    // a quarter: a cloud VM's last-level cache is shared with other tenants, so a model of a
    // third of it (SmolLM2 in q8_0, 145 MB, on the development VM's 480 MB) does not stay
    // there from one token to the next (docs/perf.md: +10-18 % with the far prefetch)
    tw_dot_stream_set(be->stream_bytes > im->llc / 4);
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (work >= PAR_MIN)
    for (int64_t g = 0; g < total; g++) {
        int i = 0;
        while (g >= start[i + 1])
            i++;
        int64_t r = (g - start[i]) * per[i], N = ws[i]->ne[0];
        int nr = N - r < per[i] ? (int)(N - r) : per[i];
        const void *row = tw_tensor_row(ws[i], r);
        const float *b = biases && biases[i] ? f32(biases[i]) : NULL;
        tw_qdot_fn qdot = xq ? im->qdot[ws[i]->dtype] : NULL;
        tw_qdot_k_fn qdot_k = xk ? im->qdot_k[ws[i]->dtype] : NULL;
        float *ys_i = f32(ys[i]);
        float out[8];
        if (qdot_k) { // T == 1
            qdot_k(row, xk, (size_t)K, out);
            ys_i[r] = b ? out[0] + b[r] : out[0];
            continue;
        }
        if (per[i] > 1) { // T == 1: nr rows against the one activation row
            im->qdot_rows[ws[i]->dtype](row, ws[i]->nb[0], nr, xq, (size_t)K, out);
            for (int k = 0; k < nr; k++)
                ys_i[r + k] = b ? out[k] + b[r + k] : out[k];
            continue;
        }
        for (int64_t t0 = 0; t0 < T; t0 += 8) {
            int nx = T - t0 < 8 ? (int)(T - t0) : 8;
            if (qdot)
                qdot(row, xq + t0 * kb, (size_t)kb, nx, (size_t)K, out);
            else
                im->dot[ws[i]->dtype](row, xs + t0 * K, (size_t)K, nx, (size_t)K, out);
            for (int j = 0; j < nx; j++)
                ys_i[(t0 + j) * N + r] = b ? out[j] + b[r] : out[j];
        }
    }
    tw_free(xq);
}

// matmul_gemm for bf16 weights on a CPU with AVX-512 BF16, without dequantising them: x is
// rounded to bf16 and packed once (the threads share the work), then each thread runs
// cpu_gemm.h's kernel on its slice of the output columns (matmul_gemm's split). Returns false,
// having done nothing, when the packed x finds no memory.
static bool matmul_gemm_bf16(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                             const struct tw_tensor *w, const struct tw_tensor *bias)
{
    int64_t T = tw_tensor_nrows(x), K = w->ne[1], N = w->ne[0];
    struct cpu_impl *im = impl(be);
    void *xp = tw_malloc(tw_gemm_bf16_packed_bytes(T, K));
    if (!xp)
        return false;
    size_t ldw = N > 1 ? (size_t)((char *)tw_tensor_row(w, 1) - (char *)tw_tensor_row(w, 0)) / 2
                       : (size_t)K; // elements from one row to the next
#pragma omp parallel num_threads(be->n_threads)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        tw_gemm_bf16_pack_x(f32(x), T, K, xp, id, nt);
#pragma omp barrier
        int64_t per = (N + nt - 1) / nt;
        per = (per + 15) / 16 * 16;
        int64_t n0 = (int64_t)id * per, n1 = n0 + per < N ? n0 + per : N;
        float *tile = im->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
        if (n0 < n1)
            tw_gemm_bf16(xp, T, K, tw_tensor_row(w, n0), ldw, n1 - n0, f32(y) + n0, (size_t)N,
                         tile);
        if (bias)
            for (int64_t t = 0; t < T; t++)
                for (int64_t n = n0; n < n1; n++)
                    f32(y)[t * N + n] += f32(bias)[n];
    }
    tw_free(xp);
    return true;
}

// y (T, N) for larger T: each thread takes a slice of the weight rows (output columns),
// dequantises it a tile at a time into its own buffer and runs a single-threaded sgemm on it
// (OpenBLAS' own threads stay off: they would fight the OpenMP team for the cores). bf16
// weights go to matmul_gemm_bf16 where the CPU has AVX-512 BF16, unless the environment
// variable TWIN_NO_BF16_GEMM=1 (read once) turns that off, for comparison.
static void matmul_gemm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, const struct tw_tensor *bias)
{
    int64_t T = tw_tensor_nrows(x), K = w->ne[1], N = w->ne[0];
    struct cpu_impl *im = impl(be);
    if (im->gemm_bf16 && w->dtype == TW_DTYPE_BF16 && matmul_gemm_bf16(be, y, x, w, bias))
        return;
    bool direct = w->dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(w);
    int64_t rows = (int64_t)(TILE_BYTES / sizeof(float)) / K;
    assert(rows > 0);
#pragma omp parallel num_threads(be->n_threads)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t per = (N + nt - 1) / nt;
        per = (per + 15) / 16 * 16;
        int64_t n0 = (int64_t)id * per, n1 = n0 + per < N ? n0 + per : N;
        float *tile = im->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
        for (int64_t r0 = n0; r0 < n1; r0 += rows) {
            int64_t nr = n1 - r0 < rows ? n1 - r0 : rows;
            const float *wt = tile;
            if (direct)
                wt = (const float *)tw_tensor_row(w, r0);
            else
                for (int64_t r = 0; r < nr; r++)
                    tw_dequantize_row(w->dtype, tw_tensor_row(w, r0 + r), tile + r * K, (size_t)K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, (int)K, 1.0f,
                        f32(x), (int)K, wt, (int)K, 0.0f, f32(y) + r0, (int)N);
            if (bias)
                for (int64_t t = 0; t < T; t++)
                    for (int64_t n = r0; n < r0 + nr; n++)
                        f32(y)[t * N + n] += f32(bias)[n];
        }
    }
}

static void cpu_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                         const struct tw_tensor *x, const struct tw_tensor *const *ws,
                         const struct tw_tensor *const *biases)
{
    int64_t K = ws[0]->ne[1];
    if (tw_tensor_nrows(x) > GEMM_MIN_ROWS && K * (int64_t)sizeof(float) <= TILE_BYTES) {
        for (int i = 0; i < n; i++)
            matmul_gemm(be, ys[i], x, ws[i], biases ? biases[i] : NULL);
        return;
    }
    for (int i0 = 0; i0 < n; i0 += 8)
        matmul_dot(be, n - i0 < 8 ? n - i0 : 8, ys + i0, x, ws + i0, biases ? biases + i0 : NULL);
}

static void cpu_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                       const struct tw_tensor *w, const struct tw_tensor *bias)
{
    cpu_matmul_n(be, 1, &y, x, &w, &bias);
}

// Query rows t0 .. t0 + nt - 1 of head h against their keys, as two sgemms (the prefill
// path): scores = Q K^T over the union of the rows' key ranges, masked and softmaxed per row
// in scratch (nt * S floats), then out = P V.
static void attend_block(const struct tw_tensor *q, const struct tw_tensor *k,
                         const struct tw_tensor *v, const struct tw_attn *a, int64_t h, int64_t t0,
                         int64_t nt, float *scratch, struct tw_tensor *out)
{
    int64_t H = a->n_head, D = a->head_dim, S = k->ne[0], Hkv = a->n_head_kv;
    int64_t kvh = h / (H / Hkv), lo, hi, lo1, hi1;
    tw_attn_range(a, a->n_past + t0, S, &lo, &hi1);
    tw_attn_range(a, a->n_past + t0 + nt - 1, S, &lo1, &hi);
    int64_t n = hi - lo;
    const float *qb = f32(q) + (t0 * H + h) * D;
    const float *kb = f32(k) + lo * Hkv * D + kvh * D, *vb = f32(v) + lo * Hkv * D + kvh * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nt, (int)n, (int)D, a->scale, qb,
                (int)(H * D), kb, (int)(Hkv * D), 0.0f, scratch, (int)n);
    for (int64_t i = 0; i < nt; i++) {
        int64_t rlo, rhi;
        tw_attn_range(a, a->n_past + t0 + i, S, &rlo, &rhi);
        float *r = scratch + i * n, mx = -INFINITY, sum = 0;
        for (int64_t j = rlo - lo; j < rhi - lo; j++)
            mx = r[j] > mx ? r[j] : mx;
        for (int64_t j = 0; j < n; j++) {
            bool in = j >= rlo - lo && j < rhi - lo;
            r[j] = in ? expf(r[j] - mx) : 0;
            sum += r[j];
        }
        float inv = 1 / sum;
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            r[j] *= inv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nt, (int)D, (int)n, 1.0f, scratch,
                (int)n, vb, (int)(Hkv * D), 0.0f, f32(out) + (t0 * H + h) * D, (int)(H * D));
}

// Where a decode row's keys are: the first key-value head's rows (k, v; map's layout) and
// the range [lo, hi) that row t attends to.
struct row_keys {
    const float *k, *v;
    struct tw_kv_map map;
    int64_t lo, hi;
};
typedef void (*row_keys_fn)(const void *ctx, int64_t t, struct row_keys *rk);

// How many parts to split each decode row's keys (at most S) into: with fewer (row, key-value
// head) pairs than threads, enough parts for every thread (flash-decoding's split), each of at
// least KEYS_PART keys, from work (rows x heads x keys x D) of PAR_MIN / 8 up. Unsplit, a
// decode row ran on one thread below PAR_MIN and on one a key-value head above it: SmolLM2's
// attention (9 heads over 3) took 12 us a layer at 16 threads, 12 % of a token (docs/perf.md).
#define KEYS_PART 32
static int64_t key_parts(const struct tw_backend *be, int64_t pairs, int64_t S, int64_t work)
{
    int64_t n = be->n_threads, most = S / KEYS_PART;
    if (pairs >= n || most < 2 || work < PAR_MIN / 8)
        return 1;
    int64_t p = (n + pairs - 1) / pairs;
    return p < most ? p : most;
}

// out (D) = the P parts of row-and-head th merged: each part's output weighted by its share of
// the softmax's sum, exp(lse_p - max) over the sum of those.
static void merge_parts(const float *part, const float *lse, int64_t P, int64_t TH, int64_t th,
                        int64_t D, float *out)
{
    float m = -INFINITY, den = 0;
    for (int64_t p = 0; p < P; p++)
        m = lse[p * TH + th] > m ? lse[p * TH + th] : m;
    for (int64_t d = 0; d < D; d++)
        out[d] = 0;
    for (int64_t p = 0; p < P; p++) {
        float w = lse[p * TH + th] == -INFINITY ? 0 : expf(lse[p * TH + th] - m);
        den += w;
        const float *o = part + (p * TH + th) * D;
        for (int64_t d = 0; d < D && w > 0; d++)
            out[d] += w * o[d];
    }
    for (int64_t d = 0; d < D; d++)
        out[d] /= den;
}

// The decode rows of q (T rows of H heads) into out, each row's keys where keys_of says:
// (row, key-value head) pairs shared out in one fork from `work` (rows x heads x keys x D) of
// PAR_MIN up, or split over their keys (key_parts; S: the most keys a row has): part p of row
// t's keys for head h gives an output (part, rows (p, t, h) of D) and its softmax's log-sum
// (lse, (p, t, h)), merged by those sums in the same parallel region.
static void decode_attention(struct tw_backend *be, struct tw_tensor *out,
                             const struct tw_tensor *q, const struct tw_attn *a, int64_t S,
                             int64_t work, row_keys_fn keys_of, const void *ctx)
{
    struct cpu_impl *im = impl(be);
    int64_t T = q->ne[0], H = a->n_head, D = a->head_dim, Hkv = a->n_head_kv, group = H / Hkv;
    int64_t P = key_parts(be, T * Hkv, S, work);
    // the parts in the threads' tiles (free while this runs) where they fit, as a rule (a few
    // decode rows); else their own allocation
    size_t n_part = (size_t)(P * T * H * (D + 1));
    bool in_tiles = n_part * sizeof(float) <= (size_t)be->n_threads * TILE_BYTES;
    float *part = P <= 1 ? NULL : in_tiles ? im->tiles : tw_malloc_array(n_part, sizeof(float));
    P = part ? P : 1;
    float *lse = part ? part + P * T * H * D : NULL;
#pragma omp parallel num_threads(be->n_threads) if (work >= PAR_MIN || P > 1)
    {
#pragma omp for schedule(dynamic, 1) collapse(3)
        for (int64_t t = 0; t < T; t++)
            for (int64_t kvh = 0; kvh < Hkv; kvh++)
                for (int64_t p = 0; p < P; p++) {
                    struct row_keys rk;
                    keys_of(ctx, t, &rk);
                    int64_t h = kvh * group, i = (p * T + t) * H + h;
                    int64_t p0 = rk.lo + (rk.hi - rk.lo) * p / P;
                    int64_t p1 = rk.lo + (rk.hi - rk.lo) * (p + 1) / P;
                    if (p0 == p1) { // (a part of none of a short window's keys)
                        for (int64_t g = 0; g < group; g++)
                            lse[i + g] = -INFINITY;
                        continue;
                    }
                    tw_attend_group(im->attend, im->isa, f32(q) + (t * H + h) * D, rk.k + kvh * D,
                                    rk.v + kvh * D, &rk.map, p0, p1, D, (int)group, a->scale,
                                    part ? part + i * D : f32(out) + (t * H + h) * D,
                                    part ? lse + i : NULL);
                }
        if (part) {
#pragma omp for schedule(static)
            for (int64_t th = 0; th < T * H; th++)
                merge_parts(part, lse, P, T * H, th, D, f32(out) + th * D);
        }
    }
    if (part != im->tiles)
        tw_free(part);
}

struct one_seq {
    const struct tw_tensor *k, *v;
    const struct tw_attn *a;
};

static void one_seq_keys(const void *ctx, int64_t t, struct row_keys *rk)
{
    const struct one_seq *c = ctx;
    int64_t S = c->k->ne[0];
    rk->k = f32(c->k), rk->v = f32(c->v);
    rk->map = (struct tw_kv_map){ .stride = c->a->n_head_kv * c->a->head_dim };
    tw_attn_range(c->a, c->a->n_past + t, S, &rk->lo, &rk->hi);
}

static void cpu_attention(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                          const struct tw_tensor *k, const struct tw_tensor *v,
                          const struct tw_attn *a)
{
    int64_t T = q->ne[0], H = a->n_head, D = a->head_dim, S = k->ne[0];
    // Prefill: blocks of query rows whose scores fit a thread's tile.
    int64_t bt = (int64_t)(TILE_BYTES / sizeof(float)) / S;
    bt = bt > 64 ? 64 : bt;
    if (T > GEMM_MIN_ROWS && bt >= GEMM_MIN_ROWS) {
        int64_t nb = (T + bt - 1) / bt;
        float *tiles = impl(be)->tiles;
#pragma omp parallel for num_threads(be->n_threads) schedule(dynamic, 1) collapse(2)
        for (int64_t h = 0; h < H; h++)
            for (int64_t b = 0; b < nb; b++) {
                float *scratch =
                    tiles + (size_t)omp_get_thread_num() * (TILE_BYTES / sizeof(float));
                int64_t t0 = b * bt, nt = T - t0 < bt ? T - t0 : bt;
                attend_block(q, k, v, a, h, t0, nt, scratch, out);
            }
        return;
    }
    struct one_seq c = { k, v, a };
    decode_attention(be, out, q, a, S, T * H * S * D, one_seq_keys, &c);
}

struct many_seqs {
    const struct tw_attn_seq *seqs;
    const int32_t *seq_of;
    const struct tw_attn *a;
    int shift;
};

static void many_seqs_keys(const void *ctx, int64_t t, struct row_keys *rk)
{
    const struct many_seqs *c = ctx;
    const struct tw_attn_seq *s = &c->seqs[c->seq_of[t]];
    rk->k = s->k, rk->v = s->v;
    rk->map = (struct tw_kv_map){ c->a->n_head_kv * c->a->head_dim, s->pages, c->shift };
    tw_attn_range(c->a, s->n_past + (t - s->row0), (int64_t)s->n_past + s->n_rows, &rk->lo,
                  &rk->hi);
}

// Several sequences' rows (continuous batching). Decode rows (a few per sequence) are shared
// out as (row, key-value head) pairs in one fork (split over their keys where those are fewer
// than the threads), reading paged caches through their tables; with a prefill's worth of rows
// in some sequence, false: tw_attention_seqs runs each sequence through cpu_attention's blocks
// (a paged cache gathered first).
static bool cpu_attention_seqs(struct tw_backend *be, struct tw_tensor *out,
                               const struct tw_tensor *q, const struct tw_attn_seq *seqs, int n,
                               const struct tw_attn *a)
{
    int64_t T = q->ne[0], H = a->n_head, D = a->head_dim;
    for (int i = 0; i < n; i++)
        if (seqs[i].n_rows > GEMM_MIN_ROWS)
            return false; // a prefill's worth of rows: per sequence, cpu_attention's blocks
    int32_t *seq_of = tw_malloc_array((size_t)T, sizeof *seq_of);
    if (!seq_of)
        return false;
    for (int i = 0; i < n; i++)
        for (int32_t r = 0; r < seqs[i].n_rows; r++)
            seq_of[seqs[i].row0 + r] = i;
    int shift = 0;
    while (a->page > 0 && (1 << shift) < a->page)
        shift++;
    int64_t work = 0, S = 0; // query heads times keys times D: the fork pays from PAR_MIN up
    for (int i = 0; i < n; i++) {
        int64_t keys = (int64_t)seqs[i].n_past + seqs[i].n_rows;
        work += (int64_t)seqs[i].n_rows * keys * H * D;
        S = keys > S ? keys : S;
    }
    struct many_seqs c = { seqs, seq_of, a, shift };
    decode_attention(be, out, q, a, S, work, many_seqs_keys, &c);
    tw_free(seq_of);
    return true;
}

static void cpu_free(struct tw_backend *be)
{
    tw_free(impl(be)->tiles);
    tw_free(be->impl);
    tw_free(be);
}

// The row-wise ops of a batch (RMSNorm, SwiGLU, add) on many rows: a slice of the rows per
// thread, with the reference code (RMSNorm, add: the numerics stay the reference's) or
// cpu_vec.c's SwiGLU; few rows stay on the calling thread (the fork would cost more than the
// work).
#define ROWS_PAR_MIN (1 << 15) // elements

static struct tw_tensor rows(const struct tw_tensor *t, int64_t r0, int64_t n)
{
    int64_t C = tw_tensor_ncols(t);
    return tw_tensor_f32_2d(f32(t) + r0 * C, n, C);
}

enum rows_op { ROWS_RMSNORM, ROWS_SWIGLU, ROWS_ADD };

// y = op(a, b) (b: w for RMSNorm) over the rows of y, a slice of them per thread.
static void rows_op(struct tw_backend *be, enum rows_op op, struct tw_tensor *y,
                    const struct tw_tensor *a, const struct tw_tensor *b, float eps)
{
    int64_t R = tw_tensor_nrows(y);
    int nt = tw_tensor_nelem(y) >= ROWS_PAR_MIN && R > 1 ? be->n_threads : 1;
#pragma omp parallel num_threads(nt)
    {
        int id = omp_get_thread_num(), n = omp_get_num_threads();
        int64_t per = (R + n - 1) / n, r0 = id * per, nr = r0 + per < R ? per : R - r0;
        if (nr > 0) {
            struct tw_tensor ys = rows(y, r0, nr), as = rows(a, r0, nr), bs;
            if (op == ROWS_RMSNORM) {
                tw_cpu_ref_ops.rmsnorm(be, &ys, &as, b, eps);
            } else {
                bs = rows(b, r0, nr);
                if (op == ROWS_SWIGLU)
                    impl(be)->swiglu(f32(&ys), f32(&as), f32(&bs), (size_t)tw_tensor_nelem(&ys));
                else
                    tw_cpu_ref_ops.add(be, &ys, &as, &bs);
            }
        }
    }
}

static void cpu_rmsnorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, float eps)
{
    rows_op(be, ROWS_RMSNORM, y, x, w, eps);
}

static void cpu_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *gate,
                       const struct tw_tensor *up)
{
    rows_op(be, ROWS_SWIGLU, y, gate, up, 0);
}

static void cpu_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *a,
                    const struct tw_tensor *b)
{
    rows_op(be, ROWS_ADD, y, a, b, 0);
}

static struct tw_backend_ops cpu_ops; // tw_cpu_ref_ops with the fast ops put in
static pthread_once_t cpu_ops_once = PTHREAD_ONCE_INIT;

static void cpu_ops_init(void)
{
    cpu_ops = tw_cpu_ref_ops;
    cpu_ops.name = "cpu";
    cpu_ops.free = cpu_free;
    cpu_ops.matmul = cpu_matmul;
    cpu_ops.matmul_n = cpu_matmul_n;
    cpu_ops.attention = cpu_attention;
    cpu_ops.attention_seqs = cpu_attention_seqs;
    cpu_ops.rmsnorm = cpu_rmsnorm;
    cpu_ops.swiglu = cpu_swiglu;
    cpu_ops.add = cpu_add;
}

int tw_backend_cpu_new(int n_threads, struct tw_backend **out)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    struct tw_backend *be = tw_calloc(1, sizeof *be);
    struct cpu_impl *im = tw_calloc(1, sizeof *im);
    float *tiles = tw_malloc_array((size_t)n_threads, TILE_BYTES);
    if (!be || !im || !tiles) {
        tw_free(be);
        tw_free(im);
        tw_free(tiles);
        return tw_error_set(TW_ENOMEM, "cpu backend: out of memory");
    }
    im->tiles = tiles;
    enum tw_cpu_isa isa = tw_cpu_isa_best();
    // The multi-row kernels pay where a core's arithmetic sets the pace: with few threads. With
    // many, memory does, and four streams a thread were slower (Llama-3.2-1B q4_K at 16
    // threads: 56-59 against 68 tokens/s one row a call; at one thread 9.7-9.9 against
    // 8.3-9.6; docs/perf.md). TWIN_QDOT_ROWS=1: one row a call always (for comparing the two).
    const char *rows_env = getenv("TWIN_QDOT_ROWS");
    bool one_row = n_threads > 4 || (rows_env && strcmp(rows_env, "1") == 0);
    // The kernels over packed activations, at every thread count (TWIN_QDOT_PACKED=0: the
    // kernels above instead, for comparing).
    const char *packed_env = getenv("TWIN_QDOT_PACKED");
    bool packed = !(packed_env && strcmp(packed_env, "0") == 0);
    for (int t = 0; t < TW_DTYPE_COUNT; t++) {
        im->dot[t] = tw_dot_kernel((enum tw_dtype)t, isa);
        im->qdot[t] = tw_qdot_kernel((enum tw_dtype)t, isa);
        im->qdot_rows[t] = one_row ? NULL : tw_qdot_rows_kernel((enum tw_dtype)t, isa);
        im->qdot_k[t] = packed ? tw_qdot_k_kernel((enum tw_dtype)t, isa) : NULL;
    }
    im->quantize = tw_q8_act_quantizer(isa);
    im->gemm_bf16 = tw_gemm_bf16_usable(isa);
    im->attend = tw_attend_kernel(isa);
    im->swiglu = tw_swiglu_kernel(isa);
    im->isa = isa;
    im->llc = tw_cpu_llc_bytes();
    if (!im->llc)
        im->llc = (size_t)32 << 20; // (unknown: a desktop's 32 MiB)
    pthread_once(&cpu_ops_once, cpu_ops_init);
    openblas_set_num_threads(1);
    be->ops = &cpu_ops;
    be->device = TW_DEVICE_CPU;
    be->n_threads = n_threads;
    be->impl = im;
    *out = be;
    return 0;
}

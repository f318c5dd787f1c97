// The fast CPU backend: matmuls through the SIMD dot kernels of cpu_dot.h and cpu_qdot.h
// (decode: one weight row read once for up to 8 activation rows) or through OpenBLAS' sgemm on
// dequantised tiles of the weights (prefill; bf16 weights through cpu_gemm.h's AVX-512 BF16
// kernel where the CPU has it); attention with an online softmax per (token, head); the
// backend's team of threads (team.h) over rows. Ops without a fast path run the reference.
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
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
#include "tensor/team.h"

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
    float *tiles;         // TILE_BYTES per thread
    struct tw_team *team; // the threads of every parallel region
    bool gemm_bf16;       // bf16 weights go to cpu_gemm.h's kernel (tw_gemm_bf16_usable)
    tw_attend_fn attend;  // the decode rows' attention (cpu_attn.c)
    tw_swiglu_fn swiglu;  // cpu_vec.c
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

// What matmul_dot's threads share: the weights, their units' starts (a unit is per[i] rows of
// weight i), the activations and their int8 forms.
struct dot_job {
    const struct cpu_impl *im;
    struct tw_tensor *const *ys;
    const struct tw_tensor *const *ws, *const *biases;
    int64_t T, K, kb, total;
    int64_t start[9];
    int per[8];
    const float *xs;
    const struct tw_q8_act *xq;
    const struct tw_q8k_act *xk;
};

// Units [g0, g1) of j.
static void dot_units(const struct dot_job *j, int64_t g0, int64_t g1)
{
    const struct cpu_impl *im = j->im;
    int64_t T = j->T, K = j->K;
    for (int64_t g = g0; g < g1; g++) {
        int i = 0;
        while (g >= j->start[i + 1])
            i++;
        const struct tw_tensor *w = j->ws[i];
        int64_t r = (g - j->start[i]) * j->per[i], N = w->ne[0];
        int nr = N - r < j->per[i] ? (int)(N - r) : j->per[i];
        const void *row = tw_tensor_row(w, r);
        const float *b = j->biases && j->biases[i] ? f32(j->biases[i]) : NULL;
        tw_qdot_fn qdot = j->xq ? im->qdot[w->dtype] : NULL;
        tw_qdot_k_fn qdot_k = j->xk ? im->qdot_k[w->dtype] : NULL;
        float *ys_i = f32(j->ys[i]);
        float out[8];
        if (qdot_k) { // T == 1
            qdot_k(row, j->xk, (size_t)K, out);
            ys_i[r] = b ? out[0] + b[r] : out[0];
            continue;
        }
        if (j->per[i] > 1) { // T == 1: nr rows against the one activation row
            im->qdot_rows[w->dtype](row, w->nb[0], nr, j->xq, (size_t)K, out);
            for (int k = 0; k < nr; k++)
                ys_i[r + k] = b ? out[k] + b[r + k] : out[k];
            continue;
        }
        for (int64_t t0 = 0; t0 < T; t0 += 8) {
            int nx = T - t0 < 8 ? (int)(T - t0) : 8;
            if (qdot)
                qdot(row, j->xq + t0 * j->kb, (size_t)j->kb, nx, (size_t)K, out);
            else
                im->dot[w->dtype](row, j->xs + t0 * K, (size_t)K, nx, (size_t)K, out);
            for (int k = 0; k < nx; k++)
                ys_i[(t0 + k) * N + r] = b ? out[k] + b[r] : out[k];
        }
    }
}

static void dot_region(void *ctx, int id, int nt)
{
    const struct dot_job *j = ctx;
    int64_t g0, g1;
    tw_team_range(j->total, id, nt, &g0, &g1);
    dot_units(j, g0, g1);
}

// ys[i] (T, N_i) for T <= GEMM_MIN_ROWS, for n weights of the same input: the threads share
// out the rows of all of them (one region), and each weight row is streamed once against up
// to 8 activation rows at a time. Block-quantised weights (q8_0, q4_0, q4_K, q6_K) meet the
// activations quantised once to int8 blocks (cpu_qdot.h), as llama.cpp does: integer dot
// products keep the decode memory-bound where float decoding would not. For one activation
// row, the dtypes with a multi-row kernel (tw_qdot_rows_fn) go TW_QDOT_ROWS weight rows a
// call: the threads share out units of that many rows.
static void matmul_dot(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                       const struct tw_tensor *x, const struct tw_tensor *const *ws,
                       const struct tw_tensor *const *biases)
{
    struct cpu_impl *im = impl(be);
    struct dot_job j = { .im = im, .ys = ys, .ws = ws, .biases = biases };
    int64_t T = j.T = tw_tensor_nrows(x), K = j.K = ws[0]->ne[1], work = 0;
    bool any_q = false, any_k = false;
    assert(n >= 1 && n <= 8);
    for (int i = 0; i < n; i++) {
        any_q |= im->qdot[ws[i]->dtype] != NULL;
        any_k |= im->qdot_k[ws[i]->dtype] != NULL;
    }
    j.xs = f32(x);
    // K is a multiple of 32 wherever a block dtype is in ws (its rows are whole blocks). At one
    // activation row of K >= PACK_MIN_K, Q4_K, Q4_0 and Q8_0 read it packed (tw_q8k_act) after
    // the blocks, in the same allocation.
    int64_t kb = j.kb = K / TW_QK8_ACT;
    size_t q_bytes = (size_t)(T * kb) * sizeof(struct tw_q8_act);
    bool pack = any_k && T == 1 && K % TW_QK_K == 0 && K >= PACK_MIN_K;
    struct tw_q8_act *xq = NULL;
    struct tw_q8k_act *xk = NULL;
    if (any_q && K % TW_QK8_ACT == 0)
        xq = tw_malloc(q_bytes + (pack ? (size_t)(K / TW_QK_K) * sizeof *xk : 0));
    if (xq) { // else the float kernels do the work
        for (int64_t t = 0; t < T; t++)
            im->quantize(j.xs + t * K, (size_t)K, xq + t * kb);
        if (pack)
            tw_q8k_act_pack(xq, (size_t)K, xk = (struct tw_q8k_act *)((char *)xq + q_bytes));
    }
    j.xq = xq, j.xk = xk;
    for (int i = 0; i < n; i++) {
        bool packed = xk && im->qdot_k[ws[i]->dtype];
        j.per[i] = xq && T == 1 && !packed && im->qdot_rows[ws[i]->dtype] ? TW_QDOT_ROWS : 1;
        j.start[i] = j.total;
        j.total += (ws[i]->ne[0] + j.per[i] - 1) / j.per[i];
        work += ws[i]->ne[0] * K * T;
    }
    j.start[n] = j.total;
    // a quarter: a cloud VM's last-level cache is shared with other tenants, so a model of a
    // third of it (SmolLM2 in q8_0, 145 MB, on the development VM's 480 MB) does not stay
    // there from one token to the next (docs/perf.md: +10-18 % with the far prefetch)
    tw_dot_stream_set(be->stream_bytes > im->llc / 4);
    tw_team_run(work >= PAR_MIN ? im->team : NULL, dot_region, &j);
    tw_free(xq);
}

struct gemm_job {
    const struct cpu_impl *im;
    struct tw_tensor *y;
    const struct tw_tensor *x, *w, *bias;
    int64_t T, K, N;
    void *xp;   // x packed for the bf16 kernel
    size_t ldw; // its elements from one weight row to the next
};

// The job of y = x w^T (+ bias) on im's team.
static struct gemm_job gemm_job_of(struct cpu_impl *im, struct tw_tensor *y,
                                   const struct tw_tensor *x, const struct tw_tensor *w,
                                   const struct tw_tensor *bias)
{
    return (struct gemm_job){ .im = im,
                              .y = y,
                              .x = x,
                              .w = w,
                              .bias = bias,
                              .T = tw_tensor_nrows(x),
                              .K = w->ne[1],
                              .N = w->ne[0] };
}

// Thread id's slice [*n0, *n1) of N output columns: whole pieces of 16 (the kernels' width).
static void gemm_slice(int64_t N, int id, int nt, int64_t *n0, int64_t *n1)
{
    int64_t per = (N + nt - 1) / nt;
    per = (per + 15) / 16 * 16;
    *n0 = (int64_t)id * per;
    *n1 = *n0 + per < N ? *n0 + per : N;
}

static void add_bias(const struct gemm_job *j, int64_t n0, int64_t n1)
{
    if (j->bias)
        for (int64_t t = 0; t < j->T; t++)
            for (int64_t n = n0; n < n1; n++)
                f32(j->y)[t * j->N + n] += f32(j->bias)[n];
}

static void gemm_bf16_region(void *ctx, int id, int nt)
{
    const struct gemm_job *j = ctx;
    tw_gemm_bf16_pack_x(f32(j->x), j->T, j->K, j->xp, id, nt);
    tw_team_barrier(j->im->team, nt);
    int64_t n0, n1;
    gemm_slice(j->N, id, nt, &n0, &n1);
    float *tile = j->im->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
    if (n0 < n1)
        tw_gemm_bf16(j->xp, j->T, j->K, tw_tensor_row(j->w, n0), j->ldw, n1 - n0, f32(j->y) + n0,
                     (size_t)j->N, tile);
    add_bias(j, n0, n1);
}

// matmul_gemm for bf16 weights on a CPU with AVX-512 BF16, without dequantising them: x is
// rounded to bf16 and packed once (the threads share the work), then each thread runs
// cpu_gemm.h's kernel on its slice of the output columns (matmul_gemm's split). Returns false,
// having done nothing, when the packed x finds no memory.
static bool matmul_gemm_bf16(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                             const struct tw_tensor *w, const struct tw_tensor *bias)
{
    struct cpu_impl *im = impl(be);
    struct gemm_job j = gemm_job_of(im, y, x, w, bias);
    j.xp = tw_malloc(tw_gemm_bf16_packed_bytes(j.T, j.K));
    if (!j.xp)
        return false;
    j.ldw = j.N > 1 ? (size_t)((char *)tw_tensor_row(w, 1) - (char *)tw_tensor_row(w, 0)) / 2
                    : (size_t)j.K;
    tw_team_run(im->team, gemm_bf16_region, &j);
    tw_free(j.xp);
    return true;
}

static void gemm_region(void *ctx, int id, int nt)
{
    const struct gemm_job *j = ctx;
    int64_t K = j->K, n0, n1;
    int64_t rows = (int64_t)(TILE_BYTES / sizeof(float)) / K;
    bool direct = j->w->dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(j->w);
    gemm_slice(j->N, id, nt, &n0, &n1);
    float *tile = j->im->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
    for (int64_t r0 = n0; r0 < n1; r0 += rows) {
        int64_t nr = n1 - r0 < rows ? n1 - r0 : rows;
        const float *wt = tile;
        if (direct)
            wt = (const float *)tw_tensor_row(j->w, r0);
        else
            for (int64_t r = 0; r < nr; r++)
                tw_dequantize_row(j->w->dtype, tw_tensor_row(j->w, r0 + r), tile + r * K,
                                  (size_t)K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->T, (int)nr, (int)K, 1.0f,
                    f32(j->x), (int)K, wt, (int)K, 0.0f, f32(j->y) + r0, (int)j->N);
        add_bias(j, r0, r0 + nr);
    }
}

// y (T, N) for larger T: each thread takes a slice of the weight rows (output columns),
// dequantises it a tile at a time into its own buffer and runs a single-threaded sgemm on it
// (OpenBLAS' own threads stay off: they would fight the team for the cores). bf16
// weights go to matmul_gemm_bf16 where the CPU has AVX-512 BF16, unless the environment
// variable TWIN_NO_BF16_GEMM=1 (read once) turns that off, for comparison.
static void matmul_gemm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, const struct tw_tensor *bias)
{
    struct cpu_impl *im = impl(be);
    if (im->gemm_bf16 && w->dtype == TW_DTYPE_BF16 && matmul_gemm_bf16(be, y, x, w, bias))
        return;
    assert(TILE_BYTES / sizeof(float) / (size_t)w->ne[1] > 0);
    struct gemm_job j = gemm_job_of(im, y, x, w, bias);
    tw_team_run(im->team, gemm_region, &j);
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

struct attn_job {
    const struct cpu_impl *im;
    struct tw_tensor *out;
    const struct tw_tensor *q;
    const struct tw_attn *a;
    row_keys_fn keys_of;
    const void *ctx;
    int64_t T, P;
    float *part, *lse;
    _Atomic int64_t next; // the next item handed out (dynamic sharing)
};

// Item u of the decode rows' attention: part p of (row t, key-value head kvh)'s keys.
static void attn_item(const struct attn_job *j, int64_t u)
{
    const struct tw_attn *a = j->a;
    int64_t H = a->n_head, D = a->head_dim, Hkv = a->n_head_kv, group = H / Hkv, T = j->T;
    int64_t p = u % j->P, kvh = u / j->P % Hkv, t = u / j->P / Hkv;
    struct row_keys rk;
    j->keys_of(j->ctx, t, &rk);
    int64_t h = kvh * group, i = (p * T + t) * H + h;
    int64_t p0 = rk.lo + (rk.hi - rk.lo) * p / j->P;
    int64_t p1 = rk.lo + (rk.hi - rk.lo) * (p + 1) / j->P;
    if (p0 == p1) { // (a part of none of a short window's keys)
        for (int64_t g = 0; g < group; g++)
            j->lse[i + g] = -INFINITY;
        return;
    }
    tw_attend_group(j->im->attend, j->im->isa, f32(j->q) + (t * H + h) * D, rk.k + kvh * D,
                    rk.v + kvh * D, &rk.map, p0, p1, D, (int)group, a->scale,
                    j->part ? j->part + i * D : f32(j->out) + (t * H + h) * D,
                    j->part ? j->lse + i : NULL);
}

// One row's items (a decode step of one sequence) are alike: a share of them each; rows of
// several sequences differ in keys: handed out one at a time. Then the parts are merged.
static void attn_region(void *ctx, int id, int nt)
{
    struct attn_job *j = ctx;
    int64_t TH = j->T * j->a->n_head, items = j->T * j->a->n_head_kv * j->P, lo, hi;
    if (j->T == 1) {
        tw_team_range(items, id, nt, &lo, &hi);
        for (int64_t u = lo; u < hi; u++)
            attn_item(j, u);
    } else {
        for (int64_t u;
             (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < items;)
            attn_item(j, u);
    }
    if (!j->part)
        return;
    tw_team_barrier(j->im->team, nt);
    tw_team_range(TH, id, nt, &lo, &hi);
    for (int64_t th = lo; th < hi; th++)
        merge_parts(j->part, j->lse, j->P, TH, th, j->a->head_dim,
                    f32(j->out) + th * j->a->head_dim);
}

// The decode rows of q (T rows of H heads) into out, each row's keys where keys_of says:
// (row, key-value head) pairs shared out in one region from `work` (rows x heads x keys x D)
// of PAR_MIN up, or split over their keys (key_parts; S: the most keys a row has): part p of
// row t's keys for head h gives an output (part, rows (p, t, h) of D) and its softmax's
// log-sum (lse, (p, t, h)), merged by those sums in the same region.
static void decode_attention(struct tw_backend *be, struct tw_tensor *out,
                             const struct tw_tensor *q, const struct tw_attn *a, int64_t S,
                             int64_t work, row_keys_fn keys_of, const void *ctx)
{
    struct cpu_impl *im = impl(be);
    int64_t T = q->ne[0], H = a->n_head, D = a->head_dim;
    int64_t P = key_parts(be, T * a->n_head_kv, S, work);
    // the parts in the threads' tiles (free while this runs) where they fit, as a rule (a few
    // decode rows); else their own allocation
    size_t n_part = (size_t)(P * T * H * (D + 1));
    bool in_tiles = n_part * sizeof(float) <= (size_t)be->n_threads * TILE_BYTES;
    float *part = P <= 1 ? NULL : in_tiles ? im->tiles : tw_malloc_array(n_part, sizeof(float));
    P = part ? P : 1;
    struct attn_job j = { .im = im,
                          .out = out,
                          .q = q,
                          .a = a,
                          .keys_of = keys_of,
                          .ctx = ctx,
                          .T = T,
                          .P = P,
                          .part = part,
                          .lse = part ? part + P * T * H * D : NULL };
    tw_team_run(work >= PAR_MIN || P > 1 ? im->team : NULL, attn_region, &j);
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

// The prefill's attention blocks (attend_block), (head, block of rows) handed out one at a
// time; each thread's scores in its tile.
struct block_job {
    float *tiles;
    const struct tw_tensor *q, *k, *v;
    const struct tw_attn *a;
    struct tw_tensor *out;
    int64_t T, bt, nb;
    _Atomic int64_t next;
};

static void block_region(void *ctx, int id, int nt)
{
    struct block_job *j = ctx;
    (void)nt;
    float *scratch = j->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
    for (int64_t u; (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) <
                    j->a->n_head * j->nb;) {
        int64_t h = u / j->nb, t0 = u % j->nb * j->bt, n = j->T - t0 < j->bt ? j->T - t0 : j->bt;
        attend_block(j->q, j->k, j->v, j->a, h, t0, n, scratch, j->out);
    }
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
        struct block_job j = { .tiles = impl(be)->tiles,
                               .q = q,
                               .k = k,
                               .v = v,
                               .a = a,
                               .out = out,
                               .T = T,
                               .bt = bt,
                               .nb = (T + bt - 1) / bt };
        tw_team_run(impl(be)->team, block_region, &j);
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
    tw_team_free(impl(be)->team);
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

struct rows_job {
    struct tw_backend *be;
    enum rows_op op;
    struct tw_tensor *y;
    const struct tw_tensor *a, *b;
    float eps;
};

static void rows_region(void *ctx, int id, int nt)
{
    const struct rows_job *j = ctx;
    int64_t r0, r1;
    tw_team_range(tw_tensor_nrows(j->y), id, nt, &r0, &r1);
    if (r0 == r1)
        return;
    struct tw_tensor ys = rows(j->y, r0, r1 - r0), as = rows(j->a, r0, r1 - r0), bs;
    if (j->op == ROWS_RMSNORM) {
        tw_cpu_ref_ops.rmsnorm(j->be, &ys, &as, j->b, j->eps);
        return;
    }
    bs = rows(j->b, r0, r1 - r0);
    if (j->op == ROWS_SWIGLU)
        impl(j->be)->swiglu(f32(&ys), f32(&as), f32(&bs), (size_t)tw_tensor_nelem(&ys));
    else
        tw_cpu_ref_ops.add(j->be, &ys, &as, &bs);
}

// y = op(a, b) (b: w for RMSNorm) over the rows of y, a slice of them per thread.
static void rows_op(struct tw_backend *be, enum rows_op op, struct tw_tensor *y,
                    const struct tw_tensor *a, const struct tw_tensor *b, float eps)
{
    bool par = tw_tensor_nelem(y) >= ROWS_PAR_MIN && tw_tensor_nrows(y) > 1;
    struct rows_job j = { be, op, y, a, b, eps };
    tw_team_run(par ? impl(be)->team : NULL, rows_region, &j);
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

static int cpu_new(int n_threads, bool openmp, struct tw_backend **out)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    struct tw_backend *be = tw_calloc(1, sizeof *be);
    struct cpu_impl *im = tw_calloc(1, sizeof *im);
    float *tiles = tw_malloc_array((size_t)n_threads, TILE_BYTES);
    int rc = !be || !im || !tiles ? tw_error_set(TW_ENOMEM, "cpu backend: out of memory")
             : openmp             ? tw_team_new_openmp(n_threads, &im->team)
                                  : tw_team_new(n_threads, &im->team);
    if (rc != 0) {
        tw_free(be);
        tw_free(im);
        tw_free(tiles);
        return rc;
    }
    im->tiles = tiles;
    enum tw_cpu_isa isa = tw_cpu_isa_best();
    // The multi-row kernels take the rows the packed kernels do not (K < PACK_MIN_K: SmolLM2's),
    // where a core's arithmetic and each call's fixed costs set the pace at every thread count
    // (SmolLM2 at 16 threads on the device tool's host, q4_0 437-523 -> 639-722 tokens/s, q4_K
    // 479-493 -> 674-770, run Z2 in docs/perf.md). On long rows, four streams a thread were
    // slower than one at 16 threads (the 1B's q4_K before the packed kernels took those rows).
    // TWIN_QDOT_ROWS=1: one row a call always (for comparing the two).
    const char *rows_env = getenv("TWIN_QDOT_ROWS");
    bool one_row = rows_env && strcmp(rows_env, "1") == 0;
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

int tw_backend_cpu_new(int n_threads, struct tw_backend **out)
{
    return cpu_new(n_threads, false, out);
}

int tw_backend_cpu_new_openmp(int n_threads, struct tw_backend **out)
{
    return cpu_new(n_threads, true, out);
}

// The fast CPU backend: matmuls through the SIMD dot kernels of cpu_dot.h and cpu_qdot.h
// (decode: one weight row read once for up to 8 activation rows) or through OpenBLAS' sgemm on
// dequantised tiles of the weights (prefill; bf16 weights through cpu_gemm.h's AVX-512 BF16
// kernel where the CPU has it); attention with an online softmax per (token, head); the
// backend's team of threads (team.h) over rows. Every op is a node (cpu_step.h): a region of
// its own, or one of a recorded step's. Ops without a fast path run the reference's code.
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
#include "tensor/cpu_step.h"
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
    tw_qdot_m_fn qdot_m[TW_DTYPE_COUNT];       // over activations laid out in place (q4_0)
    tw_q8_act_fn quantize;
    float *tiles;         // TILE_BYTES per thread
    struct tw_team *team; // the threads of every parallel region
    bool gemm_bf16;       // bf16 weights go to cpu_gemm.h's kernel (tw_gemm_bf16_usable)
    bool no_steps;        // graph_begin declines (TWIN_CPU_STEPS=0)
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

// Whether an op's work is shared out among the threads: from its size up (big), as a region of
// its own costs about a microsecond; always in a recorded step, whose region every thread is in
// anyway.
static bool shared_out(const struct tw_backend *be, bool big)
{
    return big || cpu_step_of(be) != NULL;
}

// n bytes for an op's arrays: the recorded step's memory (kept until it has run; *own false),
// or the heap's (*own: the caller frees them).
static void *op_mem(struct tw_backend *be, size_t n, bool *own)
{
    struct cpu_step *s = cpu_step_of(be);
    *own = !s;
    return s ? cpu_step_alloc(s, n) : tw_malloc(n);
}

// The shortest rows the one-row kernels over packed activations take (tw_qdot_k_fn): on
// shorter ones the multi-row kernels are faster, their calls' fixed costs shared by four rows
// (SmolLM2's K = 576 and 1536 in q4_0 at one thread: 116 against 86-103 t/s packed on the
// development VM, docs/perf.md); from the 1B's K = 2048 on, the packed ones are (+24-31 % at
// one thread on the device's host).
#define PACK_MIN_K 2048

// The same for the Q4_0 kernels over activations laid out in place (tw_qdot_m_fn).
#define INPLACE_MIN_K 2048

// A weight of a decode product: its rows, where its outputs go, and its units (per rows each,
// from unit start on).
struct dot_w {
    const char *data;
    size_t nb0; // bytes from one row to the next
    int64_t N;
    enum tw_dtype dtype;
    const float *bias; // NULL: none
    float *y;          // (T, N)
    int per;
    int64_t start;
};

// What a decode product writes: y = x w^T (each weight's own y), y += x w^T (one weight: a
// residual added in place), or y = silu(x w0^T) * (x w1^T) (two weights of one shape, into
// w[0].y).
enum dot_out { OUT_SET, OUT_ADD, OUT_SWIGLU };

// A decode product (T <= GEMM_MIN_ROWS rows) of up to eight weights of one input x: the
// threads share out units of weight rows. x is prepared first (an RMSNorm folded in, int8
// blocks for block-quantised weights, packed groups at one row), each thread its own copy at
// a small x (no barrier), else a share of one copy.
struct dot_job {
    const struct cpu_impl *im;
    int n;
    enum dot_out out;
    struct dot_w w[8];
    const float *x;
    const float *norm; // a prenorm's K weights, or NULL
    float eps;
    int64_t T, K, kb, total;
    int64_t piece; // elements of x a preparing thread takes at a time (a row's divisor)
    bool quant, pack, inplace, own;
    size_t xs_bytes, xq_bytes, xk_bytes, xm_bytes; // the prepared parts' bytes
};

// The activations as the kernels read them.
struct acts {
    const float *xs;
    const struct tw_q8_act *xq;
    const struct tw_q8k_act *xk;
    const struct tw_q40m *xm;
};

// 1 / sqrt(mean(x^2) + eps) over x's K values (the reference's, in double, eight sums at a
// time).
static float rms_inv(const float *x, int64_t K, float eps)
{
    double s[8] = { 0 }, ss = 0;
    int64_t i = 0;
    for (; i + 8 <= K; i += 8)
        for (int l = 0; l < 8; l++)
            s[l] += (double)x[i + l] * x[i + l];
    for (; i < K; i++)
        ss += (double)x[i] * x[i];
    for (int l = 0; l < 8; l++)
        ss += s[l];
    return (float)(1.0 / sqrt(ss / (double)K + eps));
}

// y = x * inv * w (w NULL: ones) over n values: a row normalised, the reference's arithmetic.
static void norm_row(const float *x, float inv, const float *w, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * inv * (w ? w[i] : 1.0f);
}

static struct acts acts_in(const struct dot_job *j, char *buf)
{
    return (struct acts){
        .xs = j->norm ? (const float *)buf : j->x,
        .xq = j->quant ? (const struct tw_q8_act *)(buf + j->xs_bytes) : NULL,
        .xk = j->pack ? (const struct tw_q8k_act *)(buf + j->xs_bytes + j->xq_bytes) : NULL,
        .xm = j->inplace ? (const struct tw_q40m *)(buf + j->xs_bytes + j->xq_bytes + j->xk_bytes)
                         : NULL,
    };
}

// Pieces [p0, p1) of j's activations (piece p: row p / (K / piece)) prepared into buf.
static void prep(const struct dot_job *j, int64_t p0, int64_t p1, char *buf)
{
    int64_t K = j->K, per_row = K / j->piece, row = -1;
    float *xs = (float *)buf, inv = 1;
    struct tw_q8_act *xq = (struct tw_q8_act *)(buf + j->xs_bytes);
    struct tw_q8k_act *xk = (struct tw_q8k_act *)(buf + j->xs_bytes + j->xq_bytes);
    struct tw_q40m *xm = (struct tw_q40m *)(buf + j->xs_bytes + j->xq_bytes + j->xk_bytes);
    for (int64_t p = p0; p < p1; p++) {
        int64_t t = p / per_row, e = p % per_row * j->piece;
        const float *src = j->x + t * K + e;
        if (j->norm) {
            if (t != row)
                inv = rms_inv(j->x + t * K, K, j->eps), row = t;
            float *d = xs + t * K + e;
            norm_row(src, inv, j->norm + e, j->piece, d);
            src = d;
        }
        if (!j->quant)
            continue;
        struct tw_q8_act *q = xq + t * j->kb + e / TW_QK8_ACT;
        j->im->quantize(src, (size_t)j->piece, q);
        if (j->pack) // one row; pieces of TW_QK_K
            tw_q8k_act_pack(q, (size_t)j->piece, xk + e / TW_QK_K);
        if (j->inplace) // one row
            tw_q40m_pack(xq, (size_t)(e / TW_QK8_ACT), (size_t)(j->piece / TW_QK8_ACT),
                         (size_t)j->kb, xm);
    }
}

// Weight w's rows r .. r + nr - 1 against activation rows t0 .. t0 + nx - 1 (nr > 1 only at
// nx = 1): out[k * nx + t].
static void dot_block(const struct dot_job *j, const struct acts *a, const struct dot_w *w,
                      int64_t r, int nr, int64_t t0, int nx, float *out)
{
    const struct cpu_impl *im = j->im;
    const void *row = w->data + (size_t)r * w->nb0;
    size_t K = (size_t)j->K;
    if (a->xm && im->qdot_m[w->dtype]) // (T == 1, one row a unit)
        im->qdot_m[w->dtype](row, a->xm, K, out);
    else if (a->xk && im->qdot_k[w->dtype]) // (T == 1, one row a unit)
        im->qdot_k[w->dtype](row, a->xk, K, out);
    else if (nr > 1)
        im->qdot_rows[w->dtype](row, w->nb0, nr, a->xq, K, out);
    else if (a->xq && im->qdot[w->dtype])
        im->qdot[w->dtype](row, a->xq + t0 * j->kb, (size_t)j->kb, nx, K, out);
    else
        im->dot[w->dtype](row, a->xs + t0 * j->K, K, nx, K, out);
}

// Units [g0, g1) of j.
static void dot_units(const struct dot_job *j, const struct acts *a, int64_t g0, int64_t g1)
{
    int64_t T = j->T;
    for (int64_t g = g0; g < g1; g++) {
        int i = 0;
        while (j->out != OUT_SWIGLU && i + 1 < j->n && g >= j->w[i + 1].start)
            i++;
        const struct dot_w *w = &j->w[i];
        int64_t r = (g - w->start) * w->per, N = w->N;
        int nr = N - r < w->per ? (int)(N - r) : w->per;
        for (int64_t t0 = 0; t0 < T; t0 += 8) {
            int nx = T - t0 < 8 ? (int)(T - t0) : 8, m = nr * nx;
            float out[8], up[8];
            dot_block(j, a, w, r, nr, t0, nx, out);
            if (w->bias)
                for (int u = 0; u < m; u++)
                    out[u] += w->bias[r + u / nx];
            if (j->out == OUT_SWIGLU) {
                dot_block(j, a, &j->w[1], r, nr, t0, nx, up);
                if (j->w[1].bias)
                    for (int u = 0; u < m; u++)
                        up[u] += j->w[1].bias[r + u / nx];
                j->im->swiglu(out, out, up, (size_t)m);
            }
            for (int u = 0; u < m; u++) {
                float *y = w->y + (t0 + u % nx) * N + r + u / nx;
                *y = j->out == OUT_ADD ? *y + out[u] : out[u];
            }
        }
    }
}

static void dot_node(void *job, const struct cpu_run *run, int id, int nt)
{
    const struct dot_job *j = job;
    char *buf = j->own ? run->mine : run->shared;
    if (j->norm || j->quant) {
        int64_t pieces = j->T * (j->K / j->piece), p0 = 0, p1 = pieces;
        if (!j->own)
            tw_team_range(pieces, id, nt, &p0, &p1);
        prep(j, p0, p1, buf);
        if (!j->own)
            cpu_barrier(run, nt);
    }
    struct acts a = acts_in(j, buf);
    // the same rows for a thread from token to token: they stay in its core's caches where
    // they fit (units handed out as they came, or a thread's leftovers taken by others, were
    // slower: runs 25c and 25g in docs/perf.md)
    int64_t g0, g1;
    tw_team_range(j->total, id, nt, &g0, &g1);
    dot_units(j, &a, g0, g1);
}
CPU_NODE(dot);

// Each thread prepares its own copy of x up to this many values (about a barrier's time).
#define OWN_MAX 2048

// The decode product of n (<= 8) weights ws against x (T <= GEMM_MIN_ROWS rows), writing as
// out says, an RMSNorm (weights norm, NULL: none) folded in. Block-quantised weights (q8_0,
// q4_0, q4_K, q6_K) meet the activations quantised to int8 blocks (cpu_qdot.h), as
// llama.cpp does: integer dot products keep the decode memory-bound where float decoding
// would not; at one row of K >= PACK_MIN_K, Q4_K, Q4_0 and Q8_0 read them packed
// (tw_q8k_act); the dtypes with a multi-row kernel (tw_qdot_rows_fn) go TW_QDOT_ROWS weight
// rows a call.
static void matmul_dot(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                       const struct tw_tensor *x, const struct tw_tensor *const *ws,
                       const struct tw_tensor *const *biases, enum dot_out out,
                       const struct tw_prenorm *pn)
{
    struct cpu_impl *im = impl(be);
    struct dot_job j = { .im = im, .n = n, .out = out, .x = f32(x) };
    int64_t T = j.T = tw_tensor_nrows(x), K = j.K = ws[0]->ne[1], work = 0;
    bool any_q = false, any_k = false, any_m = false;
    assert(n >= 1 && n <= 8 && (out != OUT_SWIGLU || n == 2) && (out != OUT_ADD || n == 1));
    // one row of K >= INPLACE_MIN_K: the dtypes with an in-place kernel take it (their packed
    // groups would go unread), the others with a packed one that
    bool one = T == 1 && K >= INPLACE_MIN_K;
    for (int i = 0; i < n; i++) {
        enum tw_dtype t = ws[i]->dtype;
        bool m = one && im->qdot_m[t];
        any_q |= im->qdot[t] != NULL;
        any_m |= m;
        any_k |= !m && im->qdot_k[t];
    }
    if (pn)
        j.norm = f32(pn->w), j.eps = pn->eps;
    // K is a multiple of 32 wherever a block dtype is in ws (its rows are whole blocks)
    j.kb = K / TW_QK8_ACT;
    j.quant = any_q && K % TW_QK8_ACT == 0;
    j.pack = j.quant && any_k && T == 1 && K % TW_QK_K == 0 && K >= PACK_MIN_K;
    j.inplace = j.quant && any_m;
    j.piece = j.pack ? TW_QK_K : j.quant ? TW_QK8_ACT : K;
    j.xs_bytes = j.norm ? (size_t)(T * K) * sizeof(float) : 0;
    j.xq_bytes = j.quant ? (size_t)(T * j.kb) * sizeof(struct tw_q8_act) : 0;
    j.xk_bytes = j.pack ? (size_t)(K / TW_QK_K) * sizeof(struct tw_q8k_act) : 0;
    j.xm_bytes = j.inplace ? tw_q40m_count((size_t)K) * sizeof(struct tw_q40m) : 0;
    j.xs_bytes = (j.xs_bytes + 63) / 64 * 64, j.xq_bytes = (j.xq_bytes + 63) / 64 * 64;
    j.xk_bytes = (j.xk_bytes + 63) / 64 * 64; // (tw_q40m: whole lines, aligned loads)
    for (int i = 0; i < n; i++) {
        const struct tw_tensor *w = ws[i];
        bool packed = (j.inplace && im->qdot_m[w->dtype]) || (j.pack && im->qdot_k[w->dtype]);
        j.w[i] = (struct dot_w){
            .data = w->data,
            .nb0 = w->nb[0],
            .N = w->ne[0],
            .dtype = w->dtype,
            .bias = biases && biases[i] ? f32(biases[i]) : NULL,
            .y = ys[i] ? f32(ys[i]) : NULL,
            .per = j.quant && T == 1 && !packed && im->qdot_rows[w->dtype] ? TW_QDOT_ROWS : 1,
        };
        work += w->ne[0] * K * T;
    }
    if (out == OUT_SWIGLU) { // units of both weights' rows alike
        j.w[0].per = j.w[1].per = j.w[0].per < j.w[1].per ? j.w[0].per : j.w[1].per;
        j.total = (j.w[0].N + j.w[0].per - 1) / j.w[0].per;
    } else {
        for (int i = 0; i < n; i++) {
            j.w[i].start = j.total;
            j.total += (j.w[i].N + j.w[i].per - 1) / j.w[i].per;
        }
    }
    bool par = shared_out(be, work >= PAR_MIN);
    j.own = T * K <= OWN_MAX;
    size_t bytes = j.xs_bytes + j.xq_bytes + j.xk_bytes + j.xm_bytes;
    // a quarter: a cloud VM's last-level cache is shared with other tenants, so a model of a
    // third of it (SmolLM2 in q8_0, 145 MB, on the development VM's 480 MB) does not stay
    // there from one token to the next (docs/perf.md: +10-18 % with the far prefetch)
    tw_dot_stream_set(be->stream_bytes > im->llc / 4);
    cpu_exec(be, im->team, &dot_kind, &j, sizeof j, j.own ? 0 : bytes, j.own ? bytes : 0, par);
}

struct gemm_job {
    const struct cpu_impl *im;
    struct tw_tensor w;
    float *y;
    const float *x, *bias;
    int64_t T, K, N;
    size_t ldw; // the bf16 kernel's elements from one weight row to the next
};

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
                j->y[t * j->N + n] += j->bias[n];
}

// x rounded to bf16 and packed once (the threads share the work, into the shared scratch),
// then each thread runs cpu_gemm.h's kernel on its slice of the output columns.
static void gemm_bf16_node(void *job, const struct cpu_run *run, int id, int nt)
{
    const struct gemm_job *j = job;
    tw_gemm_bf16_pack_x(j->x, j->T, j->K, run->shared, id, nt);
    cpu_barrier(run, nt);
    int64_t n0, n1;
    gemm_slice(j->N, id, nt, &n0, &n1);
    float *tile = j->im->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
    if (n0 < n1)
        tw_gemm_bf16(run->shared, j->T, j->K, tw_tensor_row(&j->w, n0), j->ldw, n1 - n0, j->y + n0,
                     (size_t)j->N, tile);
    add_bias(j, n0, n1);
}
CPU_NODE(gemm_bf16);

static void gemm_node(void *job, const struct cpu_run *run, int id, int nt)
{
    const struct gemm_job *j = job;
    (void)run;
    int64_t K = j->K, n0, n1;
    int64_t rows = (int64_t)(TILE_BYTES / sizeof(float)) / K;
    bool direct = j->w.dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(&j->w);
    gemm_slice(j->N, id, nt, &n0, &n1);
    float *tile = j->im->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
    for (int64_t r0 = n0; r0 < n1; r0 += rows) {
        int64_t nr = n1 - r0 < rows ? n1 - r0 : rows;
        const float *wt = tile;
        if (direct)
            wt = (const float *)tw_tensor_row(&j->w, r0);
        else
            for (int64_t r = 0; r < nr; r++)
                tw_dequantize_row(j->w.dtype, tw_tensor_row(&j->w, r0 + r), tile + r * K,
                                  (size_t)K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->T, (int)nr, (int)K, 1.0f,
                    j->x, (int)K, wt, (int)K, 0.0f, j->y + r0, (int)j->N);
        add_bias(j, r0, r0 + nr);
    }
}
CPU_NODE(gemm);

// y (T, N) = x w^T (+ bias) for larger T: each thread takes a slice of the weight rows
// (output columns), dequantises it a tile at a time into its own buffer and runs a
// single-threaded sgemm on it (OpenBLAS' own threads stay off: they would fight the team for
// the cores). bf16 weights go to cpu_gemm.h's kernel where the CPU has AVX-512 BF16
// (without dequantising them), unless the environment variable TWIN_NO_BF16_GEMM=1 (read
// once) turns that off, for comparison.
static void matmul_gemm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, const struct tw_tensor *bias)
{
    struct cpu_impl *im = impl(be);
    struct gemm_job j = { .im = im,
                          .w = *w,
                          .y = f32(y),
                          .x = f32(x),
                          .bias = bias ? f32(bias) : NULL,
                          .T = tw_tensor_nrows(x),
                          .K = w->ne[1],
                          .N = w->ne[0] };
    if (im->gemm_bf16 && w->dtype == TW_DTYPE_BF16) {
        j.ldw = j.N > 1 ? (size_t)((char *)tw_tensor_row(w, 1) - (char *)tw_tensor_row(w, 0)) / 2
                        : (size_t)j.K;
        if (cpu_exec(be, im->team, &gemm_bf16_kind, &j, sizeof j,
                     tw_gemm_bf16_packed_bytes(j.T, j.K), 0, true))
            return;
    }
    assert(TILE_BYTES / sizeof(float) / (size_t)w->ne[1] > 0);
    cpu_exec(be, im->team, &gemm_kind, &j, sizeof j, 0, 0, true);
}

// Whether a product of x (against weights of K columns) goes to sgemm.
static bool gemm_rows(const struct tw_tensor *x, int64_t K)
{
    return tw_tensor_nrows(x) > GEMM_MIN_ROWS && K * (int64_t)sizeof(float) <= TILE_BYTES;
}

static void cpu_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                         const struct tw_tensor *x, const struct tw_tensor *const *ws,
                         const struct tw_tensor *const *biases)
{
    if (gemm_rows(x, ws[0]->ne[1])) {
        for (int i = 0; i < n; i++)
            matmul_gemm(be, ys[i], x, ws[i], biases ? biases[i] : NULL);
        return;
    }
    for (int i0 = 0; i0 < n; i0 += 8)
        matmul_dot(be, n - i0 < 8 ? n - i0 : 8, ys + i0, x, ws + i0, biases ? biases + i0 : NULL,
                   OUT_SET, NULL);
}

static void cpu_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                       const struct tw_tensor *w, const struct tw_tensor *bias)
{
    cpu_matmul_n(be, 1, &y, x, &w, &bias);
}

// The fused products decode: the norm folded into the preparation of x (its sum of squares
// once a row), the residual added and SwiGLU formed as the outputs are written. With sgemm's
// rows (or more than 8 weights) they decline, and tw_matmul_n, tw_matmul_add and
// tw_matmul_swiglu compose the plain ops.
static bool cpu_norm_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                              const struct tw_tensor *x, const struct tw_tensor *const *ws,
                              const struct tw_tensor *const *biases, const struct tw_prenorm *pn)
{
    if (gemm_rows(x, ws[0]->ne[1]) || n > 8)
        return false;
    matmul_dot(be, n, ys, x, ws, biases, OUT_SET, pn);
    return true;
}

static bool cpu_matmul_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                           const struct tw_tensor *w, const struct tw_tensor *bias)
{
    if (gemm_rows(x, w->ne[1]))
        return false;
    matmul_dot(be, 1, &y, x, &w, &bias, OUT_ADD, NULL);
    return true;
}

static bool cpu_norm_matmul_swiglu(struct tw_backend *be, struct tw_tensor *y,
                                   const struct tw_tensor *x, const struct tw_tensor *wg,
                                   const struct tw_tensor *wu, const struct tw_prenorm *pn)
{
    if (gemm_rows(x, wg->ne[1]))
        return false;
    struct tw_tensor *ys[2] = { y, NULL }; // (the up rows' outputs are not kept)
    const struct tw_tensor *ws[2] = { wg, wu };
    matmul_dot(be, 2, ys, x, ws, NULL, OUT_SWIGLU, pn);
    return true;
}

static bool cpu_matmul_swiglu(struct tw_backend *be, struct tw_tensor *y,
                              const struct tw_tensor *x, const struct tw_tensor *wg,
                              const struct tw_tensor *wu)
{
    return cpu_norm_matmul_swiglu(be, y, x, wg, wu, NULL);
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

// The decode rows' attention: T rows of q, their keys in one sequence's cache (k, v: S rows
// in order) or in several sequences' (seqs, and seq_of: each row's), P parts a row's keys.
struct attn_job {
    const struct cpu_impl *im;
    float *out;
    const float *q;
    struct tw_attn a;
    int64_t T, P;
    const float *k, *v;
    int64_t S;
    const struct tw_attn_seq *seqs;
    const int32_t *seq_of;
    int shift;            // log2 of a->page
    _Atomic int64_t next; // the next item handed out (dynamic sharing)
};

static void keys_of(const struct attn_job *j, int64_t t, struct row_keys *rk)
{
    const struct tw_attn *a = &j->a;
    int64_t stride = (int64_t)a->n_head_kv * a->head_dim;
    if (!j->seqs) {
        rk->k = j->k, rk->v = j->v;
        rk->map = (struct tw_kv_map){ .stride = stride };
        tw_attn_range(a, a->n_past + t, j->S, &rk->lo, &rk->hi);
        return;
    }
    const struct tw_attn_seq *s = &j->seqs[j->seq_of[t]];
    rk->k = s->k, rk->v = s->v;
    rk->map = (struct tw_kv_map){ stride, s->pages, j->shift };
    tw_attn_range(a, s->n_past + (t - s->row0), (int64_t)s->n_past + s->n_rows, &rk->lo, &rk->hi);
}

// Item u of the decode rows' attention: part p of (row t, key-value head kvh)'s keys, into
// part and lse when the keys are split.
static void attn_item(const struct attn_job *j, float *part, float *lse, int64_t u)
{
    const struct tw_attn *a = &j->a;
    int64_t H = a->n_head, D = a->head_dim, Hkv = a->n_head_kv, group = H / Hkv, T = j->T;
    int64_t p = u % j->P, kvh = u / j->P % Hkv, t = u / j->P / Hkv;
    struct row_keys rk;
    keys_of(j, t, &rk);
    int64_t h = kvh * group, i = (p * T + t) * H + h;
    int64_t p0 = rk.lo + (rk.hi - rk.lo) * p / j->P;
    int64_t p1 = rk.lo + (rk.hi - rk.lo) * (p + 1) / j->P;
    if (p0 == p1) { // (a part of none of a short window's keys)
        for (int64_t g = 0; g < group; g++)
            lse[i + g] = -INFINITY;
        return;
    }
    tw_attend_group(j->im->attend, j->im->isa, j->q + (t * H + h) * D, rk.k + kvh * D,
                    rk.v + kvh * D, &rk.map, p0, p1, D, (int)group, a->scale,
                    part ? part + i * D : j->out + (t * H + h) * D, part ? lse + i : NULL);
}

// One row's items (a decode step of one sequence) are alike: a share of them each; rows of
// several sequences differ in keys: handed out one at a time. Then the parts (in the shared
// scratch) are merged.
static void attn_node(void *job, const struct cpu_run *run, int id, int nt)
{
    struct attn_job *j = job;
    int64_t TH = j->T * j->a.n_head, items = j->T * j->a.n_head_kv * j->P, lo, hi;
    float *part = j->P > 1 ? (float *)run->shared : NULL;
    float *lse = part ? part + j->P * TH * j->a.head_dim : NULL;
    if (j->T == 1) {
        tw_team_range(items, id, nt, &lo, &hi);
        for (int64_t u = lo; u < hi; u++)
            attn_item(j, part, lse, u);
    } else {
        for (int64_t u;
             (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < items;)
            attn_item(j, part, lse, u);
    }
    if (!part)
        return;
    cpu_barrier(run, nt);
    tw_team_range(TH, id, nt, &lo, &hi);
    for (int64_t th = lo; th < hi; th++)
        merge_parts(part, lse, j->P, TH, th, j->a.head_dim, j->out + th * j->a.head_dim);
}
CPU_NODE(attn);

// The decode rows of q (its first T rows, of H heads) into out, their keys where j says: (row,
// key-value head) pairs shared out in one region from `work` (rows x heads x keys x D) of PAR_MIN
// up, or split over their keys (key_parts; S: the most keys a row has): part p of row t's keys for
// head h gives an output (part, rows (p, t, h) of D) and its softmax's log-sum (lse, (p, t,
// h)), merged by those sums in the same region.
static void decode_attention(struct tw_backend *be, struct attn_job *j, struct tw_tensor *out,
                             const struct tw_tensor *q, int64_t T, const struct tw_attn *a,
                             int64_t S, int64_t work)
{
    int64_t H = a->n_head, D = a->head_dim;
    j->im = impl(be);
    j->out = f32(out), j->q = f32(q), j->a = *a, j->T = T;
    j->P = key_parts(be, T * a->n_head_kv, S, work);
    size_t parts = j->P > 1 ? (size_t)(j->P * T * H * (D + 1)) * sizeof(float) : 0;
    cpu_exec(be, j->im->team, &attn_kind, j, sizeof *j, parts, 0,
             shared_out(be, work >= PAR_MIN || j->P > 1));
}

// The prefill's attention blocks (attend_block), (head, block of rows) handed out one at a
// time; each thread's scores in its tile.
struct block_job {
    float *tiles;
    struct tw_tensor q, k, v, out;
    struct tw_attn a;
    int64_t T, bt, nb;
    _Atomic int64_t next;
};

static void block_node(void *job, const struct cpu_run *run, int id, int nt)
{
    struct block_job *j = job;
    (void)run, (void)nt;
    float *scratch = j->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
    for (int64_t u; (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) <
                    j->a.n_head * j->nb;) {
        int64_t h = u / j->nb, t0 = u % j->nb * j->bt, n = j->T - t0 < j->bt ? j->T - t0 : j->bt;
        attend_block(&j->q, &j->k, &j->v, &j->a, h, t0, n, scratch, &j->out);
    }
}
CPU_NODE(block);

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
                               .q = *q,
                               .k = *k,
                               .v = *v,
                               .out = *out,
                               .a = *a,
                               .T = T,
                               .bt = bt,
                               .nb = (T + bt - 1) / bt };
        cpu_exec(be, impl(be)->team, &block_kind, &j, sizeof j, 0, 0, true);
        return;
    }
    struct attn_job j = { .k = f32(k), .v = f32(v), .S = S };
    decode_attention(be, &j, out, q, T, a, S, T * H * S * D);
}

// A paged sequence's cache rows 0 .. S - 1 gathered in order into dst: keys, then values.
struct gather_job {
    const float *k, *v;
    const int32_t *pages;
    int64_t S, page, row; // row: floats a cache row
    float *dst;
};

static void gather_node(void *job, const struct cpu_run *run, int id, int nt)
{
    const struct gather_job *j = job;
    (void)run;
    int64_t np = (j->S + j->page - 1) / j->page, lo, hi;
    tw_team_range(np, id, nt, &lo, &hi);
    for (int64_t p = lo; p < hi; p++) {
        int64_t r0 = p * j->page, n = j->S - r0 < j->page ? j->S - r0 : j->page;
        size_t at = (size_t)j->pages[p] * (size_t)j->page * (size_t)j->row;
        size_t m = (size_t)(n * j->row) * sizeof(float);
        memcpy(j->dst + r0 * j->row, j->k + at, m);
        memcpy(j->dst + (j->S + r0) * j->row, j->v + at, m);
    }
}
CPU_NODE(gather);

// Several sequences' rows (continuous batching). Decode rows (a few per sequence) are shared
// out as (row, key-value head) pairs in one region (split over their keys where those are
// fewer than the threads), reading paged caches through their tables; with a prefill's worth
// of rows in some sequence, each sequence through cpu_attention (a paged cache gathered first
// into a->gather, in order with the ops).
static bool cpu_attention_seqs(struct tw_backend *be, struct tw_tensor *out,
                               const struct tw_tensor *q, const struct tw_attn_seq *seqs, int n,
                               const struct tw_attn *a)
{
    int64_t T = q->ne[0], H = a->n_head, D = a->head_dim, HD = H * D;
    int64_t row = (int64_t)a->n_head_kv * D;
    bool prefill = false, own;
    for (int i = 0; i < n; i++)
        prefill |= seqs[i].n_rows > GEMM_MIN_ROWS;
    if (prefill) {
        for (int i = 0; i < n; i++) {
            const struct tw_attn_seq *s = &seqs[i];
            int64_t S = (int64_t)s->n_past + s->n_rows;
            struct tw_attn ai = *a;
            ai.n_past = s->n_past;
            struct tw_tensor qi = tw_tensor_f32_3d((float *)q->data + s->row0 * HD, s->n_rows,
                                                   a->n_head, a->head_dim);
            struct tw_tensor oi =
                tw_tensor_f32_2d((float *)out->data + s->row0 * HD, s->n_rows, HD);
            const float *k = s->k, *v = s->v;
            if (s->pages) {
                assert(a->page > 0 && a->gather && S <= (int64_t)a->max_pages * a->page);
                struct gather_job g = { s->k, s->v, s->pages, S, a->page, row, a->gather };
                cpu_exec(be, impl(be)->team, &gather_kind, &g, sizeof g, 0, 0, true);
                k = a->gather, v = a->gather + S * row;
            }
            struct tw_tensor ki = tw_tensor_f32_3d((float *)k, S, a->n_head_kv, a->head_dim);
            struct tw_tensor vi = tw_tensor_f32_3d((float *)v, S, a->n_head_kv, a->head_dim);
            cpu_attention(be, &oi, &qi, &ki, &vi, &ai);
        }
        return true;
    }
    struct attn_job j = { 0 };
    struct tw_attn_seq *sq = op_mem(be, (size_t)n * sizeof *sq, &own);
    int32_t *seq_of = op_mem(be, (size_t)T * sizeof *seq_of, &own);
    if (!sq || !seq_of) { // run op by op, tw_attention_seqs composes the plain ops; a recorded
        if (!own)         // step ends in the error instead (the gathers would come too early)
            return true;
        tw_free(sq), tw_free(seq_of);
        return false;
    }
    memcpy(sq, seqs, (size_t)n * sizeof *sq);
    for (int i = 0; i < n; i++)
        for (int32_t r = 0; r < seqs[i].n_rows; r++)
            seq_of[seqs[i].row0 + r] = i;
    while (a->page > 0 && (1 << j.shift) < a->page)
        j.shift++;
    // query heads times keys times D: the region pays from PAR_MIN up; rows past the
    // sequences' (a padded step's filler) are left
    int64_t work = 0, S = 0, rows = 0;
    for (int i = 0; i < n; i++) {
        int64_t keys = (int64_t)seqs[i].n_past + seqs[i].n_rows;
        work += (int64_t)seqs[i].n_rows * keys * H * D;
        S = keys > S ? keys : S;
        rows += seqs[i].n_rows;
    }
    j.seqs = sq, j.seq_of = seq_of;
    decode_attention(be, &j, out, q, rows, a, S, work);
    if (own)
        tw_free(sq), tw_free(seq_of);
    return true;
}

// The teams of the process's fast CPU backends: one a thread count, shared by every backend of
// that many threads. Each backend with its own team, two side by side (an embedder and a
// generator: `twin ask`, the server) would keep twice the threads spinning on the cores; one
// team's regions take turns instead (team.h). Counted, under a mutex; past SHARED_TEAMS thread
// counts a backend gets a team of its own.
#define SHARED_TEAMS 8
static struct {
    int n, refs;
    struct tw_team *team;
} shared_teams[SHARED_TEAMS];
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;

static int team_take(int n, struct tw_team **out)
{
    pthread_mutex_lock(&shared_mu);
    int i = 0, free_slot = -1, rc = 0;
    for (; i < SHARED_TEAMS && !(shared_teams[i].refs > 0 && shared_teams[i].n == n); i++)
        free_slot = free_slot < 0 && shared_teams[i].refs == 0 ? i : free_slot;
    if (i < SHARED_TEAMS) {
        shared_teams[i].refs++;
        *out = shared_teams[i].team;
    } else {
        rc = tw_team_new(n, out);
        if (rc == 0 && free_slot >= 0) {
            shared_teams[free_slot].n = n;
            shared_teams[free_slot].refs = 1;
            shared_teams[free_slot].team = *out;
        }
    }
    pthread_mutex_unlock(&shared_mu);
    return rc;
}

static void team_drop(struct tw_team *t)
{
    pthread_mutex_lock(&shared_mu);
    int i = 0;
    while (i < SHARED_TEAMS && !(shared_teams[i].refs > 0 && shared_teams[i].team == t))
        i++;
    if (i == SHARED_TEAMS || --shared_teams[i].refs == 0)
        tw_team_free(t); // its own, or the last backend's
    pthread_mutex_unlock(&shared_mu);
}

static void cpu_free(struct tw_backend *be)
{
    team_drop(impl(be)->team);
    tw_free(impl(be)->tiles);
    tw_free(be->impl);
    tw_free(be);
}

enum rows_op { ROWS_RMSNORM, ROWS_SWIGLU, ROWS_ADD };

// The row-wise ops (RMSNorm, SwiGLU, add): a slice of the rows per thread from
// ROWS_PAR_MIN elements up (below, the region would cost more than the work), with rms_inv's
// sums (RMSNorm), cpu_vec.c's SwiGLU and the reference's add.
#define ROWS_PAR_MIN (1 << 15) // elements

struct rows_job {
    enum rows_op op;
    tw_swiglu_fn swiglu;
    float *y;
    const float *a, *b; // b: RMSNorm's weights (NULL: none)
    int64_t R, C;
    float eps;
};

static void rows_node(void *job, const struct cpu_run *run, int id, int nt)
{
    const struct rows_job *j = job;
    (void)run;
    int64_t r0, r1, C = j->C;
    tw_team_range(j->R, id, nt, &r0, &r1);
    if (j->op == ROWS_SWIGLU) {
        j->swiglu(j->y + r0 * C, j->a + r0 * C, j->b + r0 * C, (size_t)((r1 - r0) * C));
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const float *a = j->a + r * C;
        float *y = j->y + r * C;
        if (j->op == ROWS_ADD) {
            const float *b = j->b + r * C;
            for (int64_t i = 0; i < C; i++)
                y[i] = a[i] + b[i];
            continue;
        }
        norm_row(a, rms_inv(a, C, j->eps), j->b, C, y);
    }
}
CPU_NODE(rows);

// y = op(a, b) (b: w for RMSNorm) over the rows of y.
static void rows_op(struct tw_backend *be, enum rows_op op, struct tw_tensor *y,
                    const struct tw_tensor *a, const struct tw_tensor *b, float eps)
{
    struct rows_job j = { .op = op,
                          .swiglu = impl(be)->swiglu,
                          .y = f32(y),
                          .a = f32(a),
                          .b = b ? f32(b) : NULL,
                          .R = tw_tensor_nrows(y),
                          .C = tw_tensor_ncols(y),
                          .eps = eps };
    cpu_exec(be, impl(be)->team, &rows_kind, &j, sizeof j, 0, 0,
             shared_out(be, tw_tensor_nelem(y) >= ROWS_PAR_MIN && j.R > 1));
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

// tw_rope_store: RoPE on q's and k's heads (T rows) with angles cs (T rows of half (cos, sin)
// pairs), k's and v's rows stored to the caches' rows; a head per item.
struct rope_job {
    float *q, *k;
    const float *v, *cs;
    float *kc, *vc;
    const int32_t *rows;
    int64_t T, H, Hkv, D;
    int32_t half;
    bool neox;
};

static void rotate(float *x, const float *cs, int32_t half, bool neox)
{
    for (int32_t i = 0; i < half; i++) {
        int32_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        float a = x[i0], b = x[i1], c = cs[2 * i], s = cs[2 * i + 1];
        x[i0] = a * c - b * s;
        x[i1] = b * c + a * s;
    }
}

static void rope_node(void *job, const struct cpu_run *run, int id, int nt)
{
    const struct rope_job *j = job;
    (void)run;
    int64_t per = j->H + 2 * j->Hkv, lo, hi, D = j->D, kvd = j->Hkv * D;
    tw_team_range(j->T * per, id, nt, &lo, &hi);
    for (int64_t u = lo; u < hi; u++) {
        int64_t t = u / per, h = u % per;
        const float *cs = j->cs + t * 2 * j->half;
        if (h < j->H) {
            rotate(j->q + (t * j->H + h) * D, cs, j->half, j->neox);
        } else if (h < j->H + j->Hkv) {
            float *x = j->k + t * kvd + (h - j->H) * D;
            rotate(x, cs, j->half, j->neox);
            memcpy(j->kc + (size_t)j->rows[t] * (size_t)kvd + (h - j->H) * D, x,
                   (size_t)D * sizeof(float));
        } else {
            int64_t g = h - j->H - j->Hkv;
            memcpy(j->vc + (size_t)j->rows[t] * (size_t)kvd + g * D, j->v + t * kvd + g * D,
                   (size_t)D * sizeof(float));
        }
    }
}
CPU_NODE(rope);

// The angles of T positions: (cos, sin) of pos * inv_freq[i] (in float, as transformers forms
// the product; cos and sin in double, as the reference), half pairs a row, into cs.
static void rope_angles(const int32_t *pos, int64_t T, const float *inv_freq, int32_t half,
                        float *cs)
{
    for (int64_t t = 0; t < T; t++)
        for (int32_t i = 0; i < half; i++) {
            float ang = (float)pos[t] * inv_freq[i];
            cs[(t * half + i) * 2] = (float)cos((double)ang);
            cs[(t * half + i) * 2 + 1] = (float)sin((double)ang);
        }
}

// The angles are worked out on the caller, once a step when it is recorded (every layer
// rotates the same positions: the memo's key is the positions' values and the frequencies).
static void cpu_rope_store(struct tw_backend *be, struct tw_tensor *q, struct tw_tensor *k,
                           const struct tw_tensor *v, const int32_t *pos, const struct tw_rope *r,
                           float *k_cache, float *v_cache, const int32_t *rows)
{
    int64_t T = q->ne[0];
    int32_t half = r->n_rot / 2;
    struct rope_job j = { .q = f32(q),
                          .k = f32(k),
                          .v = f32(v),
                          .kc = k_cache,
                          .vc = v_cache,
                          .rows = rows,
                          .T = T,
                          .H = q->ne[1],
                          .Hkv = k->ne[1],
                          .D = q->ne[2],
                          .half = half,
                          .neox = r->neox };
    bool par = shared_out(be, T * (j.H + 2 * j.Hkv) * j.D >= ROWS_PAR_MIN);
    struct cpu_step *s = cpu_step_of(be);
    size_t n = (size_t)(T * half) * 2 * sizeof(float);
    struct {
        const float *freq;
        int64_t T;
        int32_t half;
        int32_t pos[16];
    } key = { r->inv_freq, T, half, { 0 } };
    bool memo = s && T <= 16;
    if (memo)
        memcpy(key.pos, pos, (size_t)T * sizeof *pos);
    float *cs = memo ? cpu_step_memo(s, &key, sizeof key) : NULL;
    bool own = false;
    if (!cs) {
        cs = op_mem(be, n, &own);
        if (!cs) { // (a recorded step ends in the error) the reference's, working them out itself
            if (s)
                return;
            struct tw_tensor kr = tw_tensor_f32_2d(k->data, T, k->ne[1] * k->ne[2]);
            tw_cpu_ref_ops.rope(be, q, pos, r);
            tw_cpu_ref_ops.rope(be, k, pos, r);
            tw_cpu_ref_ops.set_rows(be, k_cache, &kr, rows);
            tw_cpu_ref_ops.set_rows(be, v_cache, v, rows);
            return;
        }
        rope_angles(pos, T, r->inv_freq, half, cs);
        if (memo)
            cpu_step_memo_put(s, &key, sizeof key, cs);
    }
    j.cs = cs;
    cpu_exec(be, impl(be)->team, &rope_kind, &j, sizeof j, 0, 0, par);
    if (own)
        tw_free(cs);
}

// tw_embedding: rows of the table (any dtype) dequantised, a slice of the rows a thread.
struct embed_job {
    struct tw_tensor table;
    float *y;
    const int32_t *ids;
    int64_t T, C;
};

static void embed_node(void *job, const struct cpu_run *run, int id, int nt)
{
    const struct embed_job *j = job;
    (void)run;
    int64_t lo, hi;
    tw_team_range(j->T, id, nt, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        assert(j->ids[t] >= 0 && j->ids[t] < j->table.ne[0]);
        tw_dequantize_row(j->table.dtype, tw_tensor_row(&j->table, j->ids[t]), j->y + t * j->C,
                          (size_t)j->C);
    }
}
CPU_NODE(embed);

static void cpu_embedding(struct tw_backend *be, struct tw_tensor *y,
                          const struct tw_tensor *table, const int32_t *ids)
{
    struct embed_job j = { *table, f32(y), ids, tw_tensor_nrows(y), tw_tensor_ncols(y) };
    cpu_exec(be, impl(be)->team, &embed_kind, &j, sizeof j, 0, 0,
             shared_out(be, tw_tensor_nelem(y) >= ROWS_PAR_MIN && j.T > 1));
}

// The ops without a node of their own run the reference's code, after the queued nodes of a
// recorded step (they read and write what those do).
#define AFTER_STEP(op, params, args) \
    static void cpu_##op params      \
    {                                \
        cpu_step_flush(be);          \
        tw_cpu_ref_ops.op args;      \
    }
AFTER_STEP(layernorm,
           (struct tw_backend * be, struct tw_tensor *y, const struct tw_tensor *x,
            const struct tw_tensor *w, const struct tw_tensor *b, float eps),
           (be, y, x, w, b, eps))
AFTER_STEP(rope,
           (struct tw_backend * be, struct tw_tensor *x, const int32_t *pos,
            const struct tw_rope *r),
           (be, x, pos, r))
AFTER_STEP(softmax, (struct tw_backend * be, struct tw_tensor *x), (be, x))
AFTER_STEP(act,
           (struct tw_backend * be, struct tw_tensor *y, const struct tw_tensor *x,
            enum tw_act act),
           (be, y, x, act))
AFTER_STEP(pool,
           (struct tw_backend * be, struct tw_tensor *y, const struct tw_tensor *x,
            enum tw_pooling mode),
           (be, y, x, mode))
AFTER_STEP(l2norm, (struct tw_backend * be, struct tw_tensor *x), (be, x))
AFTER_STEP(set_rows,
           (struct tw_backend * be, float *dst, const struct tw_tensor *src, const int32_t *rows),
           (be, dst, src, rows))
AFTER_STEP(topk,
           (struct tw_backend * be, const struct tw_tensor *x, int32_t k, float *vals,
            int32_t *ids),
           (be, x, k, vals, ids))
#undef AFTER_STEP

// Host memory: a copy comes after the queued nodes.
static void cpu_copy(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    cpu_step_flush(be);
    memmove(dst, src, n);
}

// TWIN_CPU_STEPS=0 (read when the backend is made): no recorded steps, every op a region of
// its own, for comparing.
static int cpu_graph_begin(struct tw_backend *be, void **graph, int32_t kv_bound,
                           int32_t rows_bound)
{
    (void)kv_bound, (void)rows_bound;
    if (impl(be)->no_steps)
        return tw_error_set(TW_EUNSUPPORTED, "cpu backend: recorded steps are off");
    return cpu_step_begin(be, impl(be)->team, graph);
}

static int cpu_graph_end(struct tw_backend *be, void **graph)
{
    return cpu_step_end(be, graph);
}

static void cpu_graph_free(struct tw_backend *be, void *graph)
{
    (void)be;
    cpu_step_free(graph);
}

static struct tw_backend_ops cpu_ops; // tw_cpu_ref_ops with the fast ops put in
static pthread_once_t cpu_ops_once = PTHREAD_ONCE_INIT;

static void cpu_ops_init(void)
{
    cpu_ops = tw_cpu_ref_ops;
    cpu_ops.name = "cpu";
    cpu_ops.free = cpu_free;
    cpu_ops.embedding = cpu_embedding;
    cpu_ops.matmul = cpu_matmul;
    cpu_ops.matmul_n = cpu_matmul_n;
    cpu_ops.rmsnorm = cpu_rmsnorm;
    cpu_ops.layernorm = cpu_layernorm;
    cpu_ops.rope = cpu_rope;
    cpu_ops.attention = cpu_attention;
    cpu_ops.attention_seqs = cpu_attention_seqs;
    cpu_ops.softmax = cpu_softmax;
    cpu_ops.swiglu = cpu_swiglu;
    cpu_ops.act = cpu_act;
    cpu_ops.add = cpu_add;
    cpu_ops.pool = cpu_pool;
    cpu_ops.l2norm = cpu_l2norm;
    cpu_ops.set_rows = cpu_set_rows;
    cpu_ops.topk = cpu_topk;
    cpu_ops.norm_matmul_n = cpu_norm_matmul_n;
    cpu_ops.norm_matmul_swiglu = cpu_norm_matmul_swiglu;
    cpu_ops.rope_store = cpu_rope_store;
    cpu_ops.matmul_add = cpu_matmul_add;
    cpu_ops.matmul_swiglu = cpu_matmul_swiglu;
    cpu_ops.graph_begin = cpu_graph_begin;
    cpu_ops.graph_end = cpu_graph_end;
    cpu_ops.graph_free = cpu_graph_free;
    cpu_ops.copy = cpu_copy;
}

// Whether the environment variable name is set to val (the backend's switches for comparing).
static bool env_is(const char *name, const char *val)
{
    const char *e = getenv(name);
    return e && strcmp(e, val) == 0;
}

static int cpu_new(int n_threads, bool openmp, struct tw_backend **out)
{
    if (n_threads <= 0)
        n_threads = tw_cpu_count();
    struct tw_backend *be = tw_calloc(1, sizeof *be);
    struct cpu_impl *im = tw_calloc(1, sizeof *im);
    float *tiles = tw_malloc_array((size_t)n_threads, TILE_BYTES);
    int rc = !be || !im || !tiles ? tw_error_set(TW_ENOMEM, "cpu backend: out of memory")
             : openmp             ? tw_team_new_openmp(n_threads, &im->team)
                                  : team_take(n_threads, &im->team);
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
    bool one_row = env_is("TWIN_QDOT_ROWS", "1");
    // The kernels over packed activations, at every thread count (TWIN_QDOT_PACKED=0: the
    // kernels above instead, for comparing).
    bool packed = !env_is("TWIN_QDOT_PACKED", "0");
    // Q4_0 against activations laid out as its rows' bytes (TWIN_QDOT_INPLACE=0: not).
    bool inplace = !env_is("TWIN_QDOT_INPLACE", "0");
    for (int t = 0; t < TW_DTYPE_COUNT; t++) {
        im->dot[t] = tw_dot_kernel((enum tw_dtype)t, isa);
        im->qdot[t] = tw_qdot_kernel((enum tw_dtype)t, isa);
        im->qdot_rows[t] = one_row ? NULL : tw_qdot_rows_kernel((enum tw_dtype)t, isa);
        im->qdot_k[t] = packed ? tw_qdot_k_kernel((enum tw_dtype)t, isa) : NULL;
        im->qdot_m[t] = inplace ? tw_qdot_m_kernel((enum tw_dtype)t, isa) : NULL;
    }
    im->no_steps = env_is("TWIN_CPU_STEPS", "0");
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

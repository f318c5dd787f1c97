// The training ops of tensor/grad.h on the GPU, on the backend's stream: row-wise kernels for
// RMSNorm and the log-softmax, elementwise ones for SwiGLU's backward, dropout and AdamW, and
// cuBLAS for every product. The linear layers multiply f32 weights in f32 and the others in
// bf16 (bf16 weights as they are, block-quantised ones dequantised a tile of rows at a time),
// with the activations rounded to bf16 and f32 accumulators, as PyTorch's bf16 training does.
// Attention of lowp models runs fused (fattn.cu); otherwise (f32 models, head sizes other than
// 32, 64, 128) it materialises one KV head's scores at a time (its G query heads, (G, T, T)
// floats), in f32 (TF32 for lowp models), and never keeps them: the backward recomputes them
// from q, k and the forward's log-sum-exp (FlashAttention's recipe, unfused).
//
// Reductions run in a fixed order (partial sums per block, then one pass over the partials;
// the embedding's backward sums each vocabulary row's tokens in token order): the same inputs
// give the same bits on every run, so a resumed training run repeats the uninterrupted one.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/cuda/kernels.cuh"

extern "C" {
#include "base/error.h"
#include "base/mem.h"
#include "tensor/grad.h"
}

#define THREADS    256
#define COL_ROWS   64                  // rows a block of a column sum covers
#define TILE_ELEMS ((size_t)32 << 20)  // bf16 elements of a dequantised weight tile
#define CE_BYTES   ((size_t)256 << 20) // bytes of logits a chunk of the output projection

struct scratch {
    void *p;
    size_t cap;
};

struct grad_state {
    cublasHandle_t h;
    struct scratch xb, yb, yf, tile, logits, s, dp, part, seg, delta, abf, segs;
    int32_t *seg_host; // pinned: the embedding backward's token order and segments
    void *segs_host;   // adamw_multi's table as last uploaded (tw_calloc'd), to segs_dev
    void *segs_dev;
    size_t segs_bytes;
    size_t seg_cap;
    cudaEvent_t seg_copied; // after the last copy out of seg_host (NULL: none yet)
};

// ---- the state, its scratch and errors.

static struct grad_state *state(struct tw_backend *be)
{
    void **slot = twc_grad_slot(be);
    if (*slot)
        return (struct grad_state *)*slot;
    struct grad_state *g = (struct grad_state *)tw_calloc(1, sizeof *g);
    if (!g) {
        twc_fail(be, "training ops", "out of host memory");
        return NULL;
    }
    cublasStatus_t st = cublasCreate(&g->h);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasSetStream(g->h, twc_stream(be));
    if (st != CUBLAS_STATUS_SUCCESS) {
        char why[48];
        snprintf(why, sizeof why, "cuBLAS status %d", (int)st);
        twc_fail(be, "cuBLAS", why);
        if (g->h)
            cublasDestroy(g->h);
        tw_free(g);
        return NULL;
    }
    *slot = g;
    return g;
}

void twc_grad_free(void *p)
{
    struct grad_state *g = (struct grad_state *)p;
    if (!g)
        return;
    struct scratch *all[] = { &g->xb, &g->yb,   &g->yf,  &g->tile,  &g->logits, &g->s,
                              &g->dp, &g->part, &g->seg, &g->delta, &g->abf,    &g->segs };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        cudaFree(all[i]->p);
    cudaFreeHost(g->seg_host);
    tw_free(g->segs_host);
    if (g->seg_copied)
        cudaEventDestroy(g->seg_copied);
    cublasDestroy(g->h);
    tw_free(g);
}

// sc grown to `bytes` (twc_scratch); NULL with the failure recorded.
static void *grow(struct tw_backend *be, struct scratch *sc, size_t bytes)
{
    return twc_scratch(be, &sc->p, &sc->cap, bytes) ? sc->p : NULL;
}

#define GRID_STRIDE(i, n)                                                     \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

// The same over groups of vn elements (i the group's first), for kernels that take a group a
// thread by 16-byte loads where they can; grid_vec is their launch's blocks.
#define GRID_STRIDE_VEC(i, n, vn)                                                      \
    for (int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * (vn); i < (n); \
         i += (int64_t)gridDim.x * blockDim.x * (vn))

static unsigned grid_vec(int64_t n, int vn)
{
    return twc_grid_for((n + vn - 1) / vn);
}

// 16 bytes of T at p as floats, and back: 4 f32 or 8 bf16 values.
template <typename T> struct vec16;
template <> struct vec16<float> {
    enum { n = 4 };
    static __device__ __forceinline__ void load(const float *p, float (&v)[4])
    {
        float4 x = *(const float4 *)p;
        v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
    }
    static __device__ __forceinline__ void store(float *p, const float (&v)[4])
    {
        *(float4 *)p = make_float4(v[0], v[1], v[2], v[3]);
    }
};
template <> struct vec16<__nv_bfloat16> {
    enum { n = 8 };
    static __device__ __forceinline__ void load(const __nv_bfloat16 *p, float (&v)[8])
    {
        uint4 u = *(const uint4 *)p;
        const uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = twc_unpack_bf16(w[i]);
            v[2 * i] = f.x, v[2 * i + 1] = f.y;
        }
    }
    static __device__ __forceinline__ void store(__nv_bfloat16 *p, const float (&v)[8])
    {
        *(uint4 *)p = make_uint4(twc_pack_bf16(v[0], v[1]), twc_pack_bf16(v[2], v[3]),
                                 twc_pack_bf16(v[4], v[5]), twc_pack_bf16(v[6], v[7]));
    }
};

// ---- products. Row-major C (M, N) = alpha op(A) op(B) + beta C is column-major
// C^T = op(B)^T op(A)^T: cuBLAS gets B first. batch > 1: strided batches (strides in elements).

enum gemm_kind { G_F32, G_TF32, G_BF16 };

static void gemm_any(struct tw_backend *be, enum gemm_kind kind, bool ta, bool tb, int64_t M,
                     int64_t N, int64_t K, float alpha, const void *A, int64_t lda, int64_t sa,
                     const void *B, int64_t ldb, int64_t sb, float beta, void *C,
                     cudaDataType_t ctype, int64_t ldc, int64_t sc, int batch)
{
    struct grad_state *g = state(be);
    if (!g || twc_failed(be) || M == 0 || N == 0)
        return;
    cudaDataType_t ab = kind == G_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    cublasComputeType_t ct = kind == G_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st;
    if (batch == 1)
        st = cublasGemmEx(g->h, opb, opa, (int)N, (int)M, (int)K, &alpha, B, ab, (int)ldb, A, ab,
                          (int)lda, &beta, C, ctype, (int)ldc, ct, CUBLAS_GEMM_DEFAULT);
    else
        st = cublasGemmStridedBatchedEx(g->h, opb, opa, (int)N, (int)M, (int)K, &alpha, B, ab,
                                        (int)ldb, sb, A, ab, (int)lda, sa, &beta, C, ctype,
                                        (int)ldc, sc, batch, ct, CUBLAS_GEMM_DEFAULT);
    twc_check_blas(be, st, "training matmul");
}

// f32 C: the usual case.
static void gemm_rm(struct tw_backend *be, enum gemm_kind kind, bool ta, bool tb, int64_t M,
                    int64_t N, int64_t K, float alpha, const void *A, int64_t lda, int64_t sa,
                    const void *B, int64_t ldb, int64_t sb, float beta, float *C, int64_t ldc,
                    int64_t sc, int batch)
{
    gemm_any(be, kind, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, CUDA_R_32F, ldc,
             sc, batch);
}

// x (n floats) rounded to bf16 in sc; NULL on failure.
static const __nv_bfloat16 *bf16_of(struct tw_backend *be, struct scratch *sc, const float *x,
                                    int64_t n)
{
    __nv_bfloat16 *y = (__nv_bfloat16 *)grow(be, sc, (size_t)n * 2);
    return y && twc_check(be, twc_to_bf16(y, x, n, twc_stream(be)), "to bf16") ? y : NULL;
}

// dst (rows, cols; rows ld_dst apart) = src (rows ld_src apart) rounded to bf16.
static void to_bf16_2d(struct tw_backend *be, __nv_bfloat16 *dst, int64_t ld_dst, const float *src,
                       int64_t ld_src, int64_t rows, int64_t cols)
{
    if (!twc_failed(be))
        twc_check(be, twc_to_bf16_2d(dst, ld_dst, src, ld_src, rows, cols, twc_stream(be)),
                  "to bf16");
}

// Rows [r0, r0 + n) of a block-quantised w as bf16 in the tile scratch.
static const __nv_bfloat16 *w_tile(struct tw_backend *be, const struct tw_tensor *w, int64_t r0,
                                   int64_t n)
{
    struct grad_state *g = state(be);
    int64_t K = w->ne[1];
    __nv_bfloat16 *t = g ? (__nv_bfloat16 *)grow(be, &g->tile, (size_t)(n * K) * 2) : NULL;
    if (t)
        twc_check(be,
                  twc_dequant_bf16(w->dtype, (const char *)w->data + (size_t)r0 * w->nb[0],
                                   w->nb[0], n, K, t, twc_stream(be)),
                  "dequantise");
    return t;
}

// The elements between w's row starts: a bf16 weight may sit in a wider block (the fused LoRA
// layout, grad.h); a dequantised tile is dense.
static int64_t w_ld(const struct tw_tensor *w)
{
    return w->dtype == TW_DTYPE_BF16 ? (int64_t)(w->nb[0] / 2) : w->ne[1];
}

// Weight rows a tile of w holds (all of them unless w is block-quantised).
static int64_t tile_rows(const struct tw_tensor *w)
{
    if (w->dtype == TW_DTYPE_F32 || w->dtype == TW_DTYPE_BF16)
        return w->ne[0];
    int64_t r = (int64_t)(TILE_ELEMS / (size_t)w->ne[1]);
    return r < 1 ? 1 : r;
}

// out = y + b over rows of M (out may be y), as OutT: f32, or bf16 rounded once.
template <typename OutT>
static __global__ void add_bias_kernel(OutT *out, const float *y, const float *b, int64_t N,
                                       int64_t M)
{
    GRID_STRIDE(i, N * M)
    {
        out[i] = (OutT)(y[i] + b[i % M]);
    }
}

// y = x W^T (+ b), x given as f32 (x) or as its bf16 copy (xb, for a bf16 or block-quantised w:
// grad.h's hand-offs); written to y as f32 or, for a bf16 or block-quantised w, to yb rounded
// to bf16 (y NULL): the product's f32 sums rounded once, as PyTorch's autocast keeps them.
static int linear_fwd(struct tw_backend *be, float *y, __nv_bfloat16 *yb, const float *x,
                      const __nv_bfloat16 *xb, const struct tw_tensor *w, const float *b,
                      int64_t N)
{
    struct grad_state *g = state(be);
    int64_t K = w->ne[1], M = w->ne[0];
    if (!g)
        return 0;
    if (w->dtype == TW_DTYPE_F32 && !xb && !yb) {
        gemm_rm(be, G_F32, false, true, N, M, K, 1, x, K, 0, w->data, K, 0, 0, y, M, 0, 1);
    } else if (w->dtype == TW_DTYPE_F32) {
        twc_fail(be, "linear", "bf16 operands for an f32 weight");
        return 0;
    } else {
        if (!xb)
            xb = bf16_of(be, &g->xb, x, N * K);
        if (yb && b) // the bias added before the rounding: the product in f32 first
            y = (float *)grow(be, &g->yf, (size_t)(N * M) * sizeof(float));
        void *out = yb && !b ? (void *)yb : (void *)y;
        cudaDataType_t ot = yb && !b ? CUDA_R_16BF : CUDA_R_32F;
        size_t osz = yb && !b ? 2 : 4;
        int64_t rows = tile_rows(w);
        for (int64_t r0 = 0; xb && out && r0 < M; r0 += rows) {
            int64_t nr = M - r0 < rows ? M - r0 : rows;
            const void *wt = w->dtype == TW_DTYPE_BF16 ? w->data : w_tile(be, w, r0, nr);
            if (wt)
                gemm_any(be, G_BF16, false, true, N, nr, K, 1, xb, K, 0, wt, w_ld(w), 0, 0,
                         (char *)out + (size_t)r0 * osz, ot, M, 0, 1);
        }
    }
    if (b && y && !twc_failed(be)) {
        if (yb)
            add_bias_kernel<<<twc_grid_for(N * M), THREADS, 0, twc_stream(be)>>>(yb, y, b, N, M);
        else
            add_bias_kernel<<<twc_grid_for(N * M), THREADS, 0, twc_stream(be)>>>(y, y, b, N, M);
    }
    twc_check(be, cudaGetLastError(), "linear (bias)");
    return 0;
}

static int g_linear_fwd(struct tw_backend *be, float *y, const float *x, const struct tw_tensor *w,
                        const float *b, int64_t N)
{
    return linear_fwd(be, y, NULL, x, NULL, w, b, N);
}

static int g_linear_fwd_bf16(struct tw_backend *be, float *y, void *yb, const void *xb,
                             const struct tw_tensor *w, const float *b, int64_t N)
{
    return linear_fwd(be, y, (__nv_bfloat16 *)yb, NULL, (const __nv_bfloat16 *)xb, w, b, N);
}

// out[c] += sum over rows r of a[r][c] * (b ? b[r][c] : 1) * (rs ? rs[r] : 1), in a fixed
// order: per block of COL_ROWS rows into part, then the parts in order.
static __global__ void colsum_part(float *part, const float *a, const float *b, const float *rs,
                                   int64_t N, int64_t C)
{
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x,
            r0 = (int64_t)blockIdx.y * COL_ROWS;
    if (c >= C)
        return;
    int64_t r1 = r0 + COL_ROWS < N ? r0 + COL_ROWS : N;
    float s = 0;
    for (int64_t r = r0; r < r1; r++)
        s += a[r * C + c] * (b ? b[r * C + c] : 1.0f) * (rs ? rs[r] : 1.0f);
    part[blockIdx.y * C + c] = s;
}

// out[c] += the sum of part's nparts rows at column c: a block of (32, COL_FINAL_Y) threads for
// 32 columns, each thread over every COL_FINAL_Y-th row, then those sums in order (a thread a
// column over all the rows left 768 threads to read 256 rows each: 16 us a call).
#define COL_FINAL_Y 16
static __global__ void colsum_final(float *out, const float *part, int64_t nparts, int64_t C)
{
    __shared__ float red[COL_FINAL_Y][33];
    int64_t c = blockIdx.x * 32 + (int64_t)threadIdx.x;
    float s = 0;
    if (c < C)
        for (int64_t p = threadIdx.y; p < nparts; p += COL_FINAL_Y)
            s += part[p * C + c];
    red[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int i = 1; i < COL_FINAL_Y; i++)
            s += red[i][threadIdx.x];
        out[c] += s;
    }
}

// colsum_final over C columns.
static void launch_colsum_final(struct tw_backend *be, float *out, const float *part,
                                int64_t nparts, int64_t C)
{
    colsum_final<<<(unsigned)((C + 31) / 32), dim3(32, COL_FINAL_Y), 0, twc_stream(be)>>>(
        out, part, nparts, C);
}

static void colsum(struct tw_backend *be, float *out, const float *a, const float *b,
                   const float *rs, int64_t N, int64_t C)
{
    struct grad_state *g = state(be);
    int64_t np = (N + COL_ROWS - 1) / COL_ROWS;
    float *part = g ? (float *)grow(be, &g->part, (size_t)(np * C) * sizeof(float)) : NULL;
    if (!part || np == 0)
        return;
    cudaStream_t s = twc_stream(be);
    colsum_part<<<dim3((unsigned)((C + THREADS - 1) / THREADS), (unsigned)np), THREADS, 0, s>>>(
        part, a, b, rs, N, C);
    launch_colsum_final(be, out, part, np, C);
    twc_check(be, cudaGetLastError(), "column sums");
}

// The products of g_linear_bwd for a bf16 or block-quantised w, dy given in bf16 (dyb), x as
// f32 (rounded here) or as its bf16 copy xb; dx as f32 or (dxb, dx NULL, add false) written as
// bf16, the product's f32 sums rounded once.
static void linear_bwd_bf16(struct tw_backend *be, float *dx, __nv_bfloat16 *dxb, bool add,
                            float *dw, const __nv_bfloat16 *dyb, const float *x,
                            const __nv_bfloat16 *xb, const struct tw_tensor *w, int64_t N)
{
    struct grad_state *g = state(be);
    int64_t K = w->ne[1], M = w->ne[0];
    if (!g)
        return;
    int64_t rows = tile_rows(w);
    if (dxb && rows < M) // a block-quantised w's tiles add up in f32 first
        dx = (float *)grow(be, &g->yf, (size_t)(N * K) * sizeof(float));
    if (dxb && rows >= M) { // dxb (N, K) = dy (N, M) W (M, K)
        gemm_any(be, G_BF16, false, false, N, K, M, 1, dyb, M, 0, w->data, w_ld(w), 0, 0, dxb,
                 CUDA_R_16BF, K, 0, 1);
    } else if (dx) { // dx (N, K) (+)= dy (N, M) W (M, K)
        for (int64_t r0 = 0; r0 < M; r0 += rows) {
            int64_t nr = M - r0 < rows ? M - r0 : rows;
            const void *wt = w->dtype == TW_DTYPE_BF16 ? (const void *)w->data
                                                       : (const void *)w_tile(be, w, r0, nr);
            if (wt)
                gemm_rm(be, G_BF16, false, false, N, K, nr, 1, dyb + r0, M, 0, wt, w_ld(w), 0,
                        add || r0 > 0 ? 1 : 0, dx, K, 0, 1);
        }
        if (dxb)
            to_bf16_2d(be, dxb, K, dx, K, N, K);
    }
    if (dw) { // dw (M, K) += dy^T x: in the precision the forward multiplied in
        if (!xb)
            xb = bf16_of(be, &g->xb, x, N * K);
        if (xb)
            gemm_rm(be, G_BF16, true, false, M, K, N, 1, dyb, M, 0, xb, K, 0, 1, dw, K, 0, 1);
    }
}

// dy as f32, or (dyb, for a bf16 or block-quantised w) as its bf16 copy: dy then only for db.
static int linear_bwd(struct tw_backend *be, float *dx, __nv_bfloat16 *dxb, bool add, float *dw,
                      float *db, const float *dy, const __nv_bfloat16 *dyb, const float *x,
                      const __nv_bfloat16 *xb, const struct tw_tensor *w, int64_t N)
{
    struct grad_state *g = state(be);
    int64_t K = w->ne[1], M = w->ne[0];
    if (!g)
        return 0;
    if (w->dtype == TW_DTYPE_F32 && (xb || dyb || dxb)) {
        twc_fail(be, "linear backward", "bf16 operands for an f32 weight");
        return 0;
    }
    if (w->dtype == TW_DTYPE_F32) {
        if (dx) // dx (N, K) (+)= dy (N, M) W (M, K)
            gemm_rm(be, G_F32, false, false, N, K, M, 1, dy, M, 0, w->data, K, 0, add ? 1 : 0, dx,
                    K, 0, 1);
        if (dw) // dw (M, K) += dy^T x
            gemm_rm(be, G_F32, true, false, M, K, N, 1, dy, M, 0, x, K, 0, 1, dw, K, 0, 1);
    } else if (dx || dxb || dw) {
        if (!dyb)
            dyb = bf16_of(be, &g->yb, dy, N * M);
        if (dyb)
            linear_bwd_bf16(be, dx, dxb, add, dw, dyb, x, xb, w, N);
    }
    if (db)
        colsum(be, db, dy, NULL, NULL, N, M);
    return 0;
}

static int g_linear_bwd(struct tw_backend *be, float *dx, bool add, float *dw, float *db,
                        const float *dy, const float *x, const struct tw_tensor *w, int64_t N)
{
    return linear_bwd(be, dx, NULL, add, dw, db, dy, NULL, x, NULL, w, N);
}

static int g_linear_bwd_bf16(struct tw_backend *be, float *dx, void *dxb, bool add, float *dw,
                             float *db, const float *dy, const void *dyb, const void *xb,
                             const struct tw_tensor *w, int64_t N)
{
    return linear_bwd(be, dx, (__nv_bfloat16 *)dxb, add, dw, db, dy, (const __nv_bfloat16 *)dyb,
                      NULL, (const __nv_bfloat16 *)xb, w, N);
}

static void g_gemm(struct tw_backend *be, bool lowp, bool ta, bool tb, int64_t M, int64_t N,
                   int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                   int64_t ldb, float beta, float *C, int64_t ldc)
{
    // LoRA's products are bound by their f32 operands' traffic, not arithmetic: on the 1B
    // shape TF32 takes 56 ms a step, plain f32 63, bf16 roundings of both operands first 84
    // (docs/perf.md) — TF32 it is for lowp models.
    gemm_rm(be, lowp ? G_TF32 : G_F32, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc,
            0, 1);
}

// ---- row-wise kernels: a block per row (sums through warp shuffles then shared memory), or
// for rows of up to WARP_ROW_C values a warp per row, eight rows a block (a block a row left
// most of its threads idle, waiting on its barriers: 135M's C = 576 took 166 us a backward
// call where the traffic needs 75).
#define WARP_ROW_C 1024

// A row kernel's row (WARP: a warp's, else the block's; past N only when WARP, for whole
// warps), its first element and its stride for this thread, and the sum of v over its threads.
template <bool WARP> static __device__ __forceinline__ int64_t row_of(void)
{
    return WARP ? blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32 : blockIdx.x;
}
template <bool WARP> static __device__ __forceinline__ int row_lane(void)
{
    return WARP ? threadIdx.x % 32 : threadIdx.x;
}
template <bool WARP> static __device__ __forceinline__ int row_step(void)
{
    return WARP ? 32 : blockDim.x;
}
template <bool WARP> static __device__ __forceinline__ float row_sum(float v, float *red)
{
    return WARP ? twc_warp_sum(v) : twc_block_sum(v, red);
}

// OutT: float, or __nv_bfloat16 for grad.h's hand-offs (the f32 value rounded).
template <bool WARP, typename OutT>
static __global__ void rmsnorm_fwd_kernel(OutT *y, float *rstd, const float *x, const float *w,
                                          int64_t N, int64_t C, float eps)
{
    __shared__ float red[32];
    int64_t t = row_of<WARP>();
    if (t >= N)
        return;
    const float *xr = x + t * C;
    OutT *yr = y + t * C;
    float ss = 0;
    for (int64_t i = row_lane<WARP>(); i < C; i += row_step<WARP>())
        ss += xr[i] * xr[i];
    float r = rsqrtf(row_sum<WARP>(ss, red) / (float)C + eps);
    if (row_lane<WARP>() == 0)
        rstd[t] = r;
    for (int64_t i = row_lane<WARP>(); i < C; i += row_step<WARP>())
        yr[i] = (OutT)(xr[i] * r * (w ? w[i] : 1.0f));
}

template <bool WARP>
static __global__ void rmsnorm_bwd_kernel(float *dx, const float *dy, const float *x,
                                          const float *w, const float *rstd, int64_t N, int64_t C)
{
    __shared__ float red[32];
    int64_t t = row_of<WARP>();
    if (t >= N)
        return;
    const float *xr = x + t * C, *gr = dy + t * C;
    float *dr = dx + t * C, r = rstd[t];
    float dot = 0;
    for (int64_t i = row_lane<WARP>(); i < C; i += row_step<WARP>())
        dot += gr[i] * (w ? w[i] : 1.0f) * xr[i];
    float k = row_sum<WARP>(dot, red) * r * r * r / (float)C;
    for (int64_t i = row_lane<WARP>(); i < C; i += row_step<WARP>())
        dr[i] += r * (w ? w[i] : 1.0f) * gr[i] - xr[i] * k;
}

// The blocks of a row kernel over N rows of C.
static unsigned row_blocks(int64_t N, int64_t C)
{
    return (unsigned)(C <= WARP_ROW_C ? (N + THREADS / 32 - 1) / (THREADS / 32) : N);
}

template <typename OutT>
static void rmsnorm_fwd(struct tw_backend *be, OutT *y, float *rstd, const float *x,
                        const float *w, int64_t N, int64_t C, float eps)
{
    if (N == 0 || twc_failed(be))
        return;
    // the engine's kernel where it can (its row in registers); these where it cannot
    if (twc_rmsnorm_warp(be, y, sizeof(OutT) == 2, rstd, x, w, N, C, eps))
        return;
    if (C <= WARP_ROW_C)
        rmsnorm_fwd_kernel<true, OutT>
            <<<row_blocks(N, C), THREADS, 0, twc_stream(be)>>>(y, rstd, x, w, N, C, eps);
    else
        rmsnorm_fwd_kernel<false, OutT>
            <<<row_blocks(N, C), THREADS, 0, twc_stream(be)>>>(y, rstd, x, w, N, C, eps);
    twc_check(be, cudaGetLastError(), "rmsnorm (training)");
}

static void g_rmsnorm_fwd(struct tw_backend *be, float *y, float *rstd, const float *x,
                          const float *w, int64_t N, int64_t C, float eps)
{
    rmsnorm_fwd(be, y, rstd, x, w, N, C, eps);
}

static void g_rmsnorm_fwd_bf16(struct tw_backend *be, void *y, float *rstd, const float *x,
                               const float *w, int64_t N, int64_t C, float eps)
{
    rmsnorm_fwd(be, (__nv_bfloat16 *)y, rstd, x, w, N, C, eps);
}

// RMSNorm's backward for rows of C <= 32 NV values: a warp a row, each lane holding NV of its
// values (columns lane + 32 k) in registers, the block's eight warps over RB rows; with dxb
// the new dx is also written rounded to bf16 (grad.h's hand-offs), and with part the block's
// share of dw (its rows' dy x rstd, summed a column at a time in row order) goes to part's
// row blockIdx.x, colsum_final adding the rows in order: dw without a second read of dy and
// x (colsum's).
#define NORM_RB 64
template <int NV>
static __global__ void __launch_bounds__(THREADS)
    rmsnorm_bwd_warp(float *dx, __nv_bfloat16 *dxb, float *part, const float *dy, const float *x,
                     const float *w, const float *rstd, int64_t N, int C)
{
    __shared__ float sp[THREADS / 32][32 * NV];
    const int lane = threadIdx.x % 32, wp = threadIdx.x / 32;
    float wv[NV], acc[NV];
#pragma unroll
    for (int k = 0; k < NV; k++) {
        int c = lane + 32 * k;
        wv[k] = c < C ? (w ? w[c] : 1.0f) : 0.0f;
        acc[k] = 0.0f;
    }
    int64_t r1 = min((int64_t)(blockIdx.x + 1) * NORM_RB, N);
    for (int64_t t = (int64_t)blockIdx.x * NORM_RB + wp; t < r1; t += THREADS / 32) {
        const float *xr = x + t * C, *gr = dy + t * C;
        float *dr = dx + t * C;
        // dx's old values loaded with x and dy, before the row's sum: one wait for memory a row
        // (loaded after it, they took 2.79 ms a llama-124m step where these take 1.51, H200)
        float xv[NV], gv[NV], dv[NV], dot = 0.0f, r = rstd[t];
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int c = lane + 32 * k;
            xv[k] = c < C ? xr[c] : 0.0f;
            gv[k] = c < C ? gr[c] : 0.0f;
            dv[k] = c < C ? dr[c] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < NV; k++)
            dot += gv[k] * wv[k] * xv[k];
        float kk = twc_warp_sum(dot) * r * r * r / (float)C;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int c = lane + 32 * k;
            if (c < C) {
                float d = dv[k] + (r * wv[k] * gv[k] - xv[k] * kk);
                dr[c] = d;
                if (dxb)
                    dxb[t * C + c] = __float2bfloat16(d);
            }
            acc[k] += gv[k] * xv[k] * r;
        }
    }
    if (!part)
        return;
#pragma unroll
    for (int k = 0; k < NV; k++)
        sp[wp][lane + 32 * k] = acc[k];
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += THREADS) {
        float v = 0.0f;
        for (int i = 0; i < THREADS / 32; i++)
            v += sp[i][c];
        part[(int64_t)blockIdx.x * C + c] = v;
    }
}

template <int NV>
static void launch_norm_bwd(struct tw_backend *be, float *dx, __nv_bfloat16 *dxb, float *part,
                            const float *dy, const float *x, const float *w, const float *rstd,
                            int64_t N, int64_t C, unsigned blocks)
{
    rmsnorm_bwd_warp<NV>
        <<<blocks, THREADS, 0, twc_stream(be)>>>(dx, dxb, part, dy, x, w, rstd, N, (int)C);
}

// dx += the gradient (and dxb = it rounded, where given), dw += its column sums.
static void rmsnorm_bwd(struct tw_backend *be, float *dx, __nv_bfloat16 *dxb, float *dw,
                        const float *dy, const float *x, const float *w, const float *rstd,
                        int64_t N, int64_t C)
{
    struct grad_state *g = state(be);
    if (!g || N == 0 || twc_failed(be))
        return;
    if (C > WARP_ROW_C) {
        rmsnorm_bwd_kernel<false>
            <<<row_blocks(N, C), THREADS, 0, twc_stream(be)>>>(dx, dy, x, w, rstd, N, C);
        twc_check(be, cudaGetLastError(), "rmsnorm backward");
        if (dxb)
            to_bf16_2d(be, dxb, C, dx, C, N, C);
        if (dw)
            colsum(be, dw, dy, x, rstd, N, C);
        return;
    }
    unsigned blocks = (unsigned)((N + NORM_RB - 1) / NORM_RB);
    float *part = dw ? (float *)grow(be, &g->part, (size_t)blocks * C * sizeof(float)) : NULL;
    if (dw && !part)
        return;
    int nv = (int)((C + 31) / 32);
    if (nv <= 2)
        launch_norm_bwd<2>(be, dx, dxb, part, dy, x, w, rstd, N, C, blocks);
    else if (nv <= 4)
        launch_norm_bwd<4>(be, dx, dxb, part, dy, x, w, rstd, N, C, blocks);
    else if (nv <= 8)
        launch_norm_bwd<8>(be, dx, dxb, part, dy, x, w, rstd, N, C, blocks);
    else if (nv <= 16)
        launch_norm_bwd<16>(be, dx, dxb, part, dy, x, w, rstd, N, C, blocks);
    else if (nv <= 24)
        launch_norm_bwd<24>(be, dx, dxb, part, dy, x, w, rstd, N, C, blocks);
    else
        launch_norm_bwd<32>(be, dx, dxb, part, dy, x, w, rstd, N, C, blocks);
    twc_check(be, cudaGetLastError(), "rmsnorm backward");
    if (dw) {
        launch_colsum_final(be, dw, part, blocks, C);
        twc_check(be, cudaGetLastError(), "rmsnorm backward (dw)");
    }
}

static void g_rmsnorm_bwd(struct tw_backend *be, float *dx, float *dw, const float *dy,
                          const float *x, const float *w, const float *rstd, int64_t N, int64_t C)
{
    rmsnorm_bwd(be, dx, NULL, dw, dy, x, w, rstd, N, C);
}

static void g_rmsnorm_bwd_bf16(struct tw_backend *be, float *dx, void *dxb, float *dw,
                               const float *dy, const float *x, const float *w, const float *rstd,
                               int64_t N, int64_t C)
{
    rmsnorm_bwd(be, dx, (__nv_bfloat16 *)dxb, dw, dy, x, w, rstd, N, C);
}

// ---- the output projection and the log-softmax, a chunk of rows at a time.

// The vectors j and j + step (when below NV) of row as floats, both loads issued before either
// is used: how many there were.
template <typename T, int VN>
static __device__ __forceinline__ int load_two(const T *row, int64_t j, int64_t step, int64_t NV,
                                               float (&x)[2][VN])
{
    vec16<T>::load(row + VN * j, x[0]);
    if (j + step >= NV)
        return 1;
    vec16<T>::load(row + VN * (j + step), x[1]);
    return 2;
}

// e^x for the log-softmax of T logits: expf for f32 (the CPU's within its last bits), one
// MUFU.EX2 for bf16 logits, whose own rounding is 2^-9.
static __device__ __forceinline__ float ce_exp(float x, float)
{
    return expf(x);
}
static __device__ __forceinline__ float ce_exp(float x, __nv_bfloat16)
{
    return twc_exp2_ftz(x * 1.4426950408889634f);
}

// Row i of l (V logits of T) with target y: logp = l[y] - lse; with coef, dl's row i (l
// itself: in place) becomes dL/dlogits = c ([j == y] - p_j); rows without a target get logp 0
// (and dl 0). Two passes over the row: the maximum and the sum of the exponentials together
// (an online softmax per thread, merged), then dl; 16 bytes a thread at a time where vec (V a
// multiple of vec16<T>::n, l aligned). On an H200, llama-124m's head: 3.85 ms a step with
// 4-byte loads, 2-byte stores and a rescale per value; 2.90 with three passes (max, sum, dl: a
// row is 4 V bytes, and the rows in flight outgrow the L2, so each pass reads memory); 2.21
// with these two; on bf16 logits 1.77 with 8-byte loads, 1.24 with 16-byte ones, 1.16 with
// two of them in flight a thread.
template <typename T>
static __global__ void __launch_bounds__(1024)
    logsoftmax_kernel(T *l, float *logp, const int32_t *targets, const float *coef, int64_t V,
                      bool vec)
{
    constexpr int VN = vec16<T>::n;
    __shared__ float red[32];
    T *row = l + blockIdx.x * V;
    int32_t y = targets[blockIdx.x];
    const int64_t NV = vec ? V / VN : 0; // the values from VN NV on go one at a time
    if (y < 0) {
        if (threadIdx.x == 0)
            logp[blockIdx.x] = 0;
        if (coef)
            for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
                row[j] = (T)0.0f;
        return;
    }
    float m = -INFINITY, z = 0;
    const int64_t step = blockDim.x;
    for (int64_t j = threadIdx.x; j < NV; j += 2 * step) { // two loads in flight a thread
        float x[2][VN];
        const int nu = load_two(row, j, step, NV, x);
#pragma unroll
        for (int u = 0; u < 2; u++) {
            if (u >= nu)
                break;
            float mx = x[u][0];
#pragma unroll
            for (int i = 1; i < VN; i++)
                mx = fmaxf(mx, x[u][i]);
            if (mx > m) {
                z *= ce_exp(m - mx, T());
                m = mx;
            }
#pragma unroll
            for (int i = 0; i < VN; i++)
                z += ce_exp(x[u][i] - m, T());
        }
    }
    for (int64_t j = VN * NV + threadIdx.x; j < V; j += blockDim.x) {
        float x = (float)row[j];
        if (x > m) {
            z *= ce_exp(m - x, T());
            m = x;
        }
        z += ce_exp(x - m, T());
    }
    float mb = twc_block_max(m, red);
    z = twc_block_sum(m == -INFINITY ? 0.0f : z * ce_exp(m - mb, T()), red);
    m = mb;
    float lse = m + logf(z), ly = (float)row[y];
    __syncthreads(); // every thread has read row[y] before it changes
    if (threadIdx.x == 0)
        logp[blockIdx.x] = ly - lse;
    if (!coef)
        return;
    float c = coef[blockIdx.x];
    for (int64_t j = threadIdx.x; j < NV; j += 2 * step) {
        float x[2][VN];
        const int nu = load_two(row, j, step, NV, x);
#pragma unroll
        for (int u = 0; u < 2; u++) {
            if (u >= nu)
                break;
            const int64_t ju = j + u * step;
#pragma unroll
            for (int i = 0; i < VN; i++)
                x[u][i] = -c * ce_exp(x[u][i] - lse, T());
            if (y / VN == ju)
                x[u][y % VN] += c;
            vec16<T>::store(row + VN * ju, x[u]);
        }
    }
    for (int64_t j = VN * NV + threadIdx.x; j < V; j += blockDim.x)
        row[j] = (T)(-c * ce_exp((float)row[j] - lse, T()) + (j == y ? c : 0.0f));
}

static int g_head_logp(struct tw_backend *be, const float *x, const struct tw_tensor *w,
                       const int32_t *targets, int64_t N, float *logp, const float *coef,
                       float *dx, float *dw, double *sum)
{
    struct grad_state *g = state(be);
    int64_t V = w->ne[0], C = w->ne[1];
    // bf16 weights: the logits as bf16, as PyTorch computes them for a bf16 model (the
    // product's f32 sums rounded once; the log-softmax reads them in f32), x rounded once for
    // every chunk's products, and the gradient written over the logits in place, as bf16 for
    // the backward's products; f32 weights: f32 logits and gradient, in place
    bool lowp = w->dtype != TW_DTYPE_F32;
    size_t es = lowp ? 2 : sizeof(float);
    int64_t R = (int64_t)(CE_BYTES / (es * (size_t)V));
    R = R < 16 ? 16 : R > N ? N : R;
    void *lg = g ? grow(be, &g->logits, (size_t)(R * V) * es) : NULL;
    const __nv_bfloat16 *xb = lg && lowp ? bf16_of(be, &g->xb, x, N * C) : NULL;
    if (!lg || (lowp && !xb))
        return tw_backend_sync(be);
    // lg is the allocator's, 16-byte aligned: so are its rows when 16 bytes hold whole values
    float *lf = (float *)lg;
    __nv_bfloat16 *lb = (__nv_bfloat16 *)lg;
    for (int64_t r0 = 0; r0 < N && !twc_failed(be); r0 += R) {
        int64_t nr = N - r0 < R ? N - r0 : R;
        const float *cr = coef ? coef + r0 : NULL;
        if (lowp) {
            linear_fwd(be, NULL, lb, NULL, xb + r0 * C, w, NULL, nr);
            logsoftmax_kernel<<<(unsigned)nr, 1024, 0, twc_stream(be)>>>(
                lb, logp + r0, targets + r0, cr, V, V % 8 == 0);
        } else {
            linear_fwd(be, lf, NULL, x + r0 * C, NULL, w, NULL, nr);
            logsoftmax_kernel<<<(unsigned)nr, 1024, 0, twc_stream(be)>>>(
                lf, logp + r0, targets + r0, cr, V, V % 4 == 0);
        }
        twc_check(be, cudaGetLastError(), "log-softmax");
        if (coef && lowp)
            linear_bwd_bf16(be, dx ? dx + r0 * C : NULL, NULL, true, dw, lb, NULL, xb + r0 * C, w,
                            nr);
        else if (coef)
            g_linear_bwd(be, dx ? dx + r0 * C : NULL, true, dw, NULL, lf, x + r0 * C, w, nr);
    }
    // the sum on the host, in row order (the CPU's order)
    float *h = (float *)tw_malloc_array((size_t)(N ? N : 1), sizeof(float));
    if (!h)
        return tw_error_set(TW_ENOMEM, "out of memory");
    int rc = tw_backend_download(be, h, logp, (size_t)N * sizeof(float));
    double total = 0;
    for (int64_t t = 0; t < N; t++)
        total += h[t];
    tw_free(h);
    *sum = total;
    return rc;
}

// ---- attention over packed examples: per row b and KV head, its G query heads at once.

// Row (i, t) of s (G, T, T), the scaled scores of query head h0 + i: becomes the
// probabilities (0 outside the keys t sees); lse gets their log-sum-exp.
static __global__ void attn_softmax_kernel(float *s, float *lse, const int32_t *start_row,
                                           int64_t T, int64_t H, int64_t h0, int32_t window)
{
    __shared__ float red[32];
    int64_t i = blockIdx.x / T, t = blockIdx.x % T, lo = twc_key_lo(start_row, (int)t, window);
    float *row = s + blockIdx.x * T;
    float m = -INFINITY;
    for (int64_t j = lo + threadIdx.x; j <= t; j += blockDim.x)
        m = fmaxf(m, row[j]);
    m = twc_block_max(m, red);
    float z = 0;
    for (int64_t j = lo + threadIdx.x; j <= t; j += blockDim.x)
        z += expf(row[j] - m);
    z = twc_block_sum(z, red);
    float l = m + logf(z);
    for (int64_t j = threadIdx.x; j < T; j += blockDim.x)
        row[j] = j >= lo && j <= t ? expf(row[j] - l) : 0.0f;
    if (threadIdx.x == 0)
        lse[t * H + h0 + i] = l;
}

// Row (i, t): s's scores to probabilities with the kept lse; dp (dO V^T) to
// dS = scale p (dp - dO . O).
static __global__ void attn_ds_kernel(float *s, float *dp, const float *lse, const float *dout,
                                      const float *out, const int32_t *start_row, int64_t T,
                                      int64_t H, int64_t h0, int64_t D, float scale,
                                      int32_t window)
{
    __shared__ float red[32];
    int64_t i = blockIdx.x / T, t = blockIdx.x % T, lo = twc_key_lo(start_row, (int)t, window);
    const float *o = out + (t * H + h0 + i) * D, *d = dout + (t * H + h0 + i) * D;
    float delta = 0;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x)
        delta += o[e] * d[e];
    delta = twc_block_sum(delta, red);
    float l = lse[t * H + h0 + i];
    float *srow = s + blockIdx.x * T, *prow = dp + blockIdx.x * T;
    for (int64_t j = threadIdx.x; j < T; j += blockDim.x) {
        float p = j >= lo && j <= t ? expf(srow[j] - l) : 0.0f;
        srow[j] = p;
        prow[j] = scale * p * (prow[j] - delta);
    }
}

// The fused kernels (fattn.cu) for lowp models of the head sizes they take, unless
// TWIN_TRAIN_ATTN=gemm asks for the products (a check, and the comparison in benchmarks).
static bool fused(struct tw_backend *be, const struct tw_attn_shape *sh)
{
    static int gemm = -1; // read once
    if (gemm < 0) {
        const char *e = getenv("TWIN_TRAIN_ATTN");
        gemm = e && strcmp(e, "gemm") == 0;
    }
    return sh->lowp && twc_flash_ok((int)sh->D) && !gemm && !twc_failed(be);
}

// bf16 copies of q, k, v (and dout when n is 4): src[i] has the query heads' size for i = 0, 3,
// the KV heads' for 1, 2; into out[i] (src[i] NULL: only the room). q, k and v go to sh->keep
// where the caller gives one (grad.h): rounded into it by the forward, read from it as they are
// by the backward (kept); the rest to the abf scratch. False on failure (recorded).
static bool attn_bf16(struct tw_backend *be, __nv_bfloat16 **out, int n, const float *const *src,
                      const struct tw_attn_shape *sh, bool kept)
{
    struct grad_state *g = state(be);
    int64_t nq = sh->B * sh->T * sh->H * sh->D, nk = sh->B * sh->T * sh->Hkv * sh->D;
    int64_t len[4] = { nq, nk, nk, nq }, total = 0;
    __nv_bfloat16 *keep = (__nv_bfloat16 *)sh->keep;
    for (int i = keep ? 3 : 0; i < n; i++)
        total += len[i];
    __nv_bfloat16 *p = g && total ? (__nv_bfloat16 *)grow(be, &g->abf, (size_t)total * 2) : NULL;
    bool ok = g && (p || !total);
    for (int i = 0; ok && i < n; i++) {
        bool in_keep = i < 3 && keep,
             there = in_keep && (kept || (i < 2 && sh->kept_qk) || (i == 2 && sh->kept_v));
        __nv_bfloat16 *dst = in_keep ? keep : p;
        if (!there && src[i])
            ok = twc_check(be, twc_to_bf16(dst, src[i], len[i], twc_stream(be)),
                           "attention (to bf16)");
        out[i] = dst;
        if (in_keep)
            keep += len[i];
        else
            p += len[i];
    }
    return ok;
}

static bool g_attn_keeps(struct tw_backend *be, const struct tw_attn_shape *sh)
{
    return fused(be, sh);
}

static void g_attn_fwd(struct tw_backend *be, float *out, float *lse, const float *q,
                       const float *k, const float *v, const int32_t *start,
                       const struct tw_attn_shape *sh)
{
    struct grad_state *g = state(be);
    int64_t T = sh->T, H = sh->H, Hkv = sh->Hkv, D = sh->D, G = H / Hkv;
    if (fused(be, sh)) {
        const float *src[3] = { q, k, v };
        __nv_bfloat16 *b[3];
        if (attn_bf16(be, b, 3, src, sh, false))
            twc_check(be,
                      twc_flash_fwd(out, (__nv_bfloat16 *)sh->out_b, lse, b[0], b[1], b[2], start,
                                    (int)sh->B, (int)T, (int)H, (int)Hkv, (int)D, sh->scale,
                                    sh->window, twc_stream(be)),
                      "attention (fused)");
        return;
    }
    float *s = g ? (float *)grow(be, &g->s, (size_t)(G * T * T) * sizeof(float)) : NULL;
    enum gemm_kind kind = sh->lowp ? G_TF32 : G_F32;
    if (!s)
        return;
    for (int64_t b = 0; b < sh->B && !twc_failed(be); b++)
        for (int64_t kh = 0; kh < Hkv; kh++) {
            int64_t h0 = kh * G;
            const float *qb = q + (b * T * H + h0) * D, *kb = k + (b * T * Hkv + kh) * D;
            const float *vb = v + (b * T * Hkv + kh) * D;
            gemm_rm(be, kind, false, true, T, T, D, sh->scale, qb, H * D, D, kb, Hkv * D, 0, 0, s,
                    T, T * T, (int)G);
            attn_softmax_kernel<<<(unsigned)(G * T), THREADS, 0, twc_stream(be)>>>(
                s, lse + b * T * H, start + b * T, T, H, h0, sh->window);
            twc_check(be, cudaGetLastError(), "attention softmax");
            gemm_rm(be, kind, false, false, T, D, T, 1, s, T, T * T, vb, Hkv * D, 0, 0,
                    out + (b * T * H + h0) * D, H * D, D, (int)G);
        }
}

static void g_zero(struct tw_backend *be, void *p, size_t bytes);

static void g_attn_bwd(struct tw_backend *be, float *dq, float *dk, float *dv, const float *dout,
                       const float *q, const float *k, const float *v, const float *out,
                       const float *lse, const int32_t *start, const struct tw_attn_shape *sh)
{
    struct grad_state *g = state(be);
    int64_t T = sh->T, H = sh->H, Hkv = sh->Hkv, D = sh->D, G = H / Hkv;
    if (fused(be, sh)) {
        size_t nd = (size_t)(sh->B * T * H),
               np = twc_flash_bwd_scratch((int)sh->B, (int)T, (int)H, (int)Hkv, (int)D);
        float *delta = g ? (float *)grow(be, &g->delta, (nd + np) * sizeof(float)) : NULL;
        const float *src[4] = { q, k, v, NULL }; // (dout: rounded by the backward's first kernel)
        __nv_bfloat16 *b[4];
        if (delta && attn_bf16(be, b, 4, src, sh, true))
            twc_check(be,
                      twc_flash_bwd(dq, dk, dv, dout, b[3], b[0], b[1], b[2], out,
                                    (const __nv_bfloat16 *)sh->out_b, lse, start, delta,
                                    np ? delta + nd : NULL, (int)sh->B, (int)T, (int)H, (int)Hkv,
                                    (int)D, sh->scale, sh->window, sh->assign, twc_stream(be)),
                      "attention backward (fused)");
        return;
    }
    if (sh->assign) { // the GEMMs below add
        size_t nq = (size_t)(sh->B * T * H * D), nk = (size_t)(sh->B * T * Hkv * D);
        g_zero(be, dq, nq * sizeof(float));
        g_zero(be, dk, nk * sizeof(float));
        g_zero(be, dv, nk * sizeof(float));
    }
    size_t bytes = (size_t)(G * T * T) * sizeof(float);
    float *s = g ? (float *)grow(be, &g->s, bytes) : NULL;
    float *dp = s ? (float *)grow(be, &g->dp, bytes) : NULL;
    enum gemm_kind kind = sh->lowp ? G_TF32 : G_F32;
    if (!dp)
        return;
    for (int64_t b = 0; b < sh->B && !twc_failed(be); b++)
        for (int64_t kh = 0; kh < Hkv; kh++) {
            int64_t h0 = kh * G, qo = (b * T * H + h0) * D, ko = (b * T * Hkv + kh) * D;
            // the scores again, and dP = dO V^T
            gemm_rm(be, kind, false, true, T, T, D, sh->scale, q + qo, H * D, D, k + ko, Hkv * D,
                    0, 0, s, T, T * T, (int)G);
            gemm_rm(be, kind, false, true, T, T, D, 1, dout + qo, H * D, D, v + ko, Hkv * D, 0, 0,
                    dp, T, T * T, (int)G);
            attn_ds_kernel<<<(unsigned)(G * T), THREADS, 0, twc_stream(be)>>>(
                s, dp, lse + b * T * H, dout + b * T * H * D, out + b * T * H * D, start + b * T,
                T, H, h0, D, sh->scale, sh->window);
            twc_check(be, cudaGetLastError(), "attention backward");
            // dQ_i += dS_i K;  dK += sum_i dS_i^T Q_i;  dV += sum_i P_i^T dO_i
            gemm_rm(be, kind, false, false, T, D, T, 1, dp, T, T * T, k + ko, Hkv * D, 0, 1,
                    dq + qo, H * D, D, (int)G);
            for (int64_t i = 0; i < G; i++) {
                gemm_rm(be, kind, true, false, T, D, T, 1, dp + i * T * T, T, 0, q + qo + i * D,
                        H * D, 0, 1, dk + ko, Hkv * D, 0, 1);
                gemm_rm(be, kind, true, false, T, D, T, 1, s + i * T * T, T, 0, dout + qo + i * D,
                        H * D, 0, 1, dv + ko, Hkv * D, 0, 1);
            }
        }
}

// ---- elementwise.

// The sigmoid of SiLU: with FAST (bf16 outputs, rounded far coarser than these errors) by
// ex2.approx and a reciprocal (__expf, __fdividef: a few ulp of f32) instead of expf's range
// reduction and an IEEE division — fewer instructions in kernels that run at the memory's
// rate (llama-124m's SwiGLU forward 56.4 -> 50.4 us a layer, ncu, H200); f32 keeps the CPU's
// values to the bit.
template <bool FAST> static __device__ __forceinline__ float sigmoid(float g)
{
    return FAST ? __fdividef(1.0f, 1.0f + __expf(-g)) : 1.0f / (1.0f + expf(-g));
}

template <bool FAST>
static __device__ __forceinline__ void swiglu_bwd_one(float *dg, float *du, float dh, float g,
                                                      float u)
{
    float s = sigmoid<FAST>(g);
    *dg = dh * u * s * (1.0f + g * (1.0f - s));
    *du = dh * g * s;
}

// Element i of a dense (rows, F) array in an array of such rows ld apart (the stacked gate
// and up products' interleaved output: g and u in one row of 2F); 32-bit division where i
// fits.
static __device__ __forceinline__ int64_t in_rows(int64_t i, int64_t F, int64_t ld)
{
    if (ld == F)
        return i;
    if (i <= 0xffffffffll && F <= 0xffffffffll) {
        uint32_t r = (uint32_t)i / (uint32_t)F;
        return (int64_t)r * ld + ((uint32_t)i - r * (uint32_t)F);
    }
    return i / F * ld + i % F;
}

// 16 bytes of each array a thread (vec16<T>::n elements) where vec (every pointer 16-byte
// aligned, F and ld multiples of that), element by element otherwise and at the end; T float,
// or __nv_bfloat16 for grad.h's hand-offs (the f32 values rounded). dh dense (n = rows x F),
// g, u, dg, du rows of F values ld apart.
template <typename T>
static __global__ void swiglu_bwd_kernel(T *dg, T *du, const T *dh, const T *g, const T *u,
                                         int64_t n, int64_t F, int64_t ld, bool vec)
{
    constexpr int VN = vec16<T>::n;
    constexpr bool FAST = sizeof(T) == 2;
    GRID_STRIDE_VEC(i, n, VN)
    {
        if (vec && i + VN <= n) {
            int64_t o = in_rows(i, F, ld);
            float h[VN], a[VN], b[VN], og[VN], ou[VN];
            vec16<T>::load(dh + i, h), vec16<T>::load(g + o, a), vec16<T>::load(u + o, b);
#pragma unroll
            for (int k = 0; k < VN; k++)
                swiglu_bwd_one<FAST>(&og[k], &ou[k], h[k], a[k], b[k]);
            vec16<T>::store(dg + o, og), vec16<T>::store(du + o, ou);
        } else {
            for (int64_t j = i; j < i + VN && j < n; j++) {
                int64_t o = in_rows(j, F, ld);
                float vg, vu;
                swiglu_bwd_one<FAST>(&vg, &vu, (float)dh[j], (float)g[o], (float)u[o]);
                dg[o] = (T)vg, du[o] = (T)vu;
            }
        }
    }
}

template <typename T>
static void swiglu_bwd(struct tw_backend *be, T *dg, T *du, const T *dh, const T *g, const T *u,
                       int64_t n, int64_t F, int64_t ld)
{
    if (n == 0 || twc_failed(be))
        return;
    constexpr int VN = vec16<T>::n;
    bool vec = twc_aligned16(dg) && twc_aligned16(du) && twc_aligned16(dh) && twc_aligned16(g) &&
               twc_aligned16(u) && F % VN == 0 && ld % VN == 0;
    swiglu_bwd_kernel<T>
        <<<grid_vec(n, VN), THREADS, 0, twc_stream(be)>>>(dg, du, dh, g, u, n, F, ld, vec);
    twc_check(be, cudaGetLastError(), "swiglu backward");
}

static void g_swiglu_bwd(struct tw_backend *be, float *dg, float *du, const float *dh,
                         const float *g, const float *u, int64_t n)
{
    swiglu_bwd(be, dg, du, dh, g, u, n, n, n);
}

static void g_swiglu_bwd_bf16(struct tw_backend *be, void *dg, void *du, const void *dh,
                              const void *g, const void *u, int64_t N, int64_t F, int64_t ld)
{
    swiglu_bwd(be, (__nv_bfloat16 *)dg, (__nv_bfloat16 *)du, (const __nv_bfloat16 *)dh,
               (const __nv_bfloat16 *)g, (const __nv_bfloat16 *)u, N * F, F, ld);
}

// h = silu(g) * u rounded to bf16 (the engine's tw_swiglu in f32 on bf16 g and u, then the
// rounding), eight elements a thread where vec; h dense (n = rows x F), g and u rows of F
// values ld apart.
static __global__ void swiglu_bf16_kernel(__nv_bfloat16 *h, const __nv_bfloat16 *g,
                                          const __nv_bfloat16 *u, int64_t n, int64_t F, int64_t ld,
                                          bool vec)
{
    GRID_STRIDE_VEC(i, n, 8)
    {
        if (vec && i + 8 <= n) {
            int64_t o = in_rows(i, F, ld);
            float a[8], b[8];
            vec16<__nv_bfloat16>::load(g + o, a), vec16<__nv_bfloat16>::load(u + o, b);
#pragma unroll
            for (int k = 0; k < 8; k++)
                a[k] = a[k] * sigmoid<true>(a[k]) * b[k];
            vec16<__nv_bfloat16>::store(h + i, a);
        } else {
            for (int64_t j = i; j < i + 8 && j < n; j++) {
                int64_t o = in_rows(j, F, ld);
                h[j] = __float2bfloat16((float)g[o] * sigmoid<true>((float)g[o]) * (float)u[o]);
            }
        }
    }
}

static void g_swiglu_bf16(struct tw_backend *be, void *h, const void *g, const void *u, int64_t N,
                          int64_t F, int64_t ld)
{
    int64_t n = N * F;
    if (n == 0 || twc_failed(be))
        return;
    bool vec =
        twc_aligned16(h) && twc_aligned16(g) && twc_aligned16(u) && F % 8 == 0 && ld % 8 == 0;
    swiglu_bf16_kernel<<<grid_vec(n, 8), THREADS, 0, twc_stream(be)>>>(
        (__nv_bfloat16 *)h, (const __nv_bfloat16 *)g, (const __nv_bfloat16 *)u, n, F, ld, vec);
    twc_check(be, cudaGetLastError(), "swiglu (bf16)");
}

// y = a + b, a f32 and b bf16, eight elements a thread where vec (every pointer 16-byte aligned).
static __global__ void add_bf16_kernel(float *y, const float *a, const __nv_bfloat16 *b, int64_t n,
                                       bool vec)
{
    GRID_STRIDE_VEC(i, n, 8)
    {
        if (vec && i + 8 <= n) {
            float u[8], v0[4], v1[4];
            vec16<__nv_bfloat16>::load(b + i, u);
            vec16<float>::load(a + i, v0), vec16<float>::load(a + i + 4, v1);
#pragma unroll
            for (int k = 0; k < 4; k++)
                v0[k] += u[k], v1[k] += u[k + 4];
            vec16<float>::store(y + i, v0), vec16<float>::store(y + i + 4, v1);
        } else {
            for (int64_t j = i; j < i + 8 && j < n; j++)
                y[j] = a[j] + __bfloat162float(b[j]);
        }
    }
}

static void g_add_bf16(struct tw_backend *be, float *y, const float *a, const void *b, int64_t n)
{
    if (n == 0 || twc_failed(be))
        return;
    bool vec = twc_aligned16(y) && twc_aligned16(a) && twc_aligned16(b);
    add_bf16_kernel<<<grid_vec(n, 8), THREADS, 0, twc_stream(be)>>>(y, a, (const __nv_bfloat16 *)b,
                                                                    n, vec);
    twc_check(be, cudaGetLastError(), "add (bf16)");
}

static void g_rope_bf16(struct tw_backend *be, void *xb, int64_t ld, float *x, bool keep,
                        const int32_t *pos, int64_t N, int64_t heads, const struct tw_rope *r)
{
    if (!twc_failed(be))
        twc_rope_train(be, x, xb, ld, keep, pos, N, heads, r);
}

// splitmix64 (base/map.h's tw_splitmix64, the same steps on the device).
static __device__ __forceinline__ uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static __global__ void dropout_kernel(float *y, const float *x, int64_t n, uint64_t thr,
                                      float keep, uint64_t key, bool add)
{
    GRID_STRIDE(i, n)
    {
        float v = splitmix64(key ^ (uint64_t)i * 0xD1B54A32D192ED03ull) < thr ? 0.0f : x[i] * keep;
        y[i] = add ? y[i] + v : v;
    }
}

static void g_dropout(struct tw_backend *be, float *y, const float *x, int64_t n, float p,
                      uint64_t key, bool add)
{
    if (n == 0 || twc_failed(be))
        return;
    uint64_t thr = (uint64_t)((double)p * 18446744073709551615.0);
    dropout_kernel<<<twc_grid_for(n), THREADS, 0, twc_stream(be)>>>(y, x, n, thr,
                                                                    1.0f / (1.0f - p), key, add);
    twc_check(be, cudaGetLastError(), "dropout");
}

static void g_zero(struct tw_backend *be, void *p, size_t bytes)
{
    if (bytes && !twc_failed(be))
        twc_check(be, cudaMemsetAsync(p, 0, bytes, twc_stream(be)), "zero");
}

// One element of torch.optim.AdamW's update.
// Each operation rounded on its own (no contraction into FMAs, which the compiler may choose
// differently kernel by kernel: adamw_kernel and adamw_multi_kernel gave different bits), in
// tw_adamw_update's order.
static __device__ __forceinline__ void adamw_one(float &w, float g, float &m, float &v,
                                                 const struct tw_adamw_args &a)
{
    float wj = __fmul_rn(w, a.decay);
    float mj = __fadd_rn(m, __fmul_rn(__fsub_rn(g, m), __fsub_rn(1.0f, a.beta1)));
    float vj =
        __fadd_rn(__fmul_rn(v, a.beta2), __fmul_rn(__fmul_rn(__fsub_rn(1.0f, a.beta2), g), g));
    m = mj, v = vj;
    float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vj), a.bc2_sqrt), a.eps);
    w = __fsub_rn(wj, __fdiv_rn(__fmul_rn(a.step_size, mj), den));
}

// Four elements a thread, by 16-byte loads and stores where vec (every array aligned).
static __global__ void adamw_kernel(float *w, const float *g, float *m, float *v, int64_t n,
                                    struct tw_adamw_args a, bool vec)
{
    GRID_STRIDE_VEC(i, n, 4)
    {
        if (vec && i + 4 <= n) {
            float4 W = *(float4 *)(w + i), G = *(const float4 *)(g + i), M = *(float4 *)(m + i),
                   V = *(float4 *)(v + i);
            adamw_one(W.x, G.x, M.x, V.x, a);
            adamw_one(W.y, G.y, M.y, V.y, a);
            adamw_one(W.z, G.z, M.z, V.z, a);
            adamw_one(W.w, G.w, M.w, V.w, a);
            *(float4 *)(w + i) = W, *(float4 *)(m + i) = M, *(float4 *)(v + i) = V;
        } else {
            for (int64_t j = i; j < i + 4 && j < n; j++)
                adamw_one(w[j], g[j], m[j], v[j], a);
        }
    }
}

static void g_adamw(struct tw_backend *be, float *w, const float *g, float *m, float *v, size_t n,
                    const struct tw_adamw_args *a)
{
    if (n == 0 || twc_failed(be))
        return;
    bool vec = twc_aligned16(w) && twc_aligned16(g) && twc_aligned16(m) && twc_aligned16(v);
    adamw_kernel<<<grid_vec((int64_t)n, 4), THREADS, 0, twc_stream(be)>>>(w, g, m, v, (int64_t)n,
                                                                          *a, vec);
    twc_check(be, cudaGetLastError(), "adamw");
}

// adamw_multi's tensors on the device: each with its first block of the launch.
struct adamw_dseg {
    float *w;
    const float *g;
    float *m, *v;
    __nv_bfloat16 *wb;
    int64_t n, first;
    int64_t decay; // the args' decay applies (else 1)
};

#define ADAMW_PER_BLOCK (4 * THREADS) // elements a block of adamw_multi_kernel

// A block's tensor found by bisection over the tensors' first blocks; its threads take
// ADAMW_PER_BLOCK elements, THREADS apart (coalesced), by adamw_one: the same update as
// adamw_kernel's, element for element.
static __global__ void adamw_multi_kernel(const struct adamw_dseg *seg, int nseg,
                                          struct tw_adamw_args a)
{
    int lo = 0, hi = nseg - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (seg[mid].first <= (int64_t)blockIdx.x)
            lo = mid;
        else
            hi = mid - 1;
    }
    const struct adamw_dseg S = seg[lo];
    a.decay = S.decay ? a.decay : 1.0f;
    int64_t i0 = ((int64_t)blockIdx.x - S.first) * ADAMW_PER_BLOCK + threadIdx.x;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        int64_t i = i0 + k * THREADS;
        if (i < S.n) {
            float w = S.w[i], m = S.m[i], v = S.v[i];
            adamw_one(w, S.g[i], m, v, a);
            S.w[i] = w, S.m[i] = m, S.v[i] = v;
            if (S.wb)
                S.wb[i] = __float2bfloat16(w);
        }
    }
}

static void g_adamw_multi(struct tw_backend *be, const struct tw_adamw_seg *seg, int nseg,
                          const struct tw_adamw_args *a)
{
    struct grad_state *g = state(be);
    if (!g || nseg <= 0 || twc_failed(be))
        return;
    struct adamw_dseg *h = (struct adamw_dseg *)tw_calloc((size_t)nseg, sizeof *h);
    if (!h) {
        twc_fail(be, "adamw", "out of host memory");
        return;
    }
    int64_t blocks = 0;
    int n = 0;
    for (int i = 0; i < nseg; i++) {
        if (seg[i].n <= 0)
            continue;
        h[n] = (struct adamw_dseg){
            seg[i].w, seg[i].g, seg[i].m,    seg[i].v, (__nv_bfloat16 *)seg[i].wb,
            seg[i].n, blocks,   seg[i].decay
        };
        blocks += (seg[i].n + ADAMW_PER_BLOCK - 1) / ADAMW_PER_BLOCK;
        n++;
    }
    // The table on the device, uploaded again only when it changed (the same tensors every
    // step: no copy, and no wait on the stream that a copy from pageable memory may bring)
    size_t bytes = (size_t)n * sizeof *h;
    void *d = n ? grow(be, &g->segs, bytes) : NULL;
    bool same =
        d && d == g->segs_dev && g->segs_bytes == bytes && memcmp(g->segs_host, h, bytes) == 0;
    if (d && !same) {
        tw_free(g->segs_host);
        g->segs_host = NULL, g->segs_dev = NULL, g->segs_bytes = 0;
        if (twc_check(be, cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, twc_stream(be)),
                      "adamw (tensors)"))
            g->segs_host = h, g->segs_dev = d, g->segs_bytes = bytes, h = NULL;
    }
    if (d && !twc_failed(be)) {
        adamw_multi_kernel<<<(unsigned)blocks, THREADS, 0, twc_stream(be)>>>(
            (const struct adamw_dseg *)d, n, *a);
        twc_check(be, cudaGetLastError(), "adamw");
    }
    tw_free(h);
}

// Sum of squares in double: a part per block, then one thread adds the parts in order.
static __global__ void sumsq_part(double *part, const float *x, int64_t n)
{
    __shared__ double red[THREADS];
    double s = 0;
    GRID_STRIDE(i, n)
    {
        s += (double)x[i] * x[i];
    }
    red[threadIdx.x] = s;
    __syncthreads();
    for (int o = THREADS / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o)
            red[threadIdx.x] += red[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        part[blockIdx.x] = red[0];
}

static __global__ void sumsq_final(double *acc, const double *part, int np)
{
    double s = 0;
    for (int i = 0; i < np; i++)
        s += part[i];
    *acc += s;
}

static void g_sumsq(struct tw_backend *be, const float *x, size_t n, double *acc)
{
    struct grad_state *g = state(be);
    unsigned nb = twc_grid_for((int64_t)n) < 1024 ? twc_grid_for((int64_t)n) : 1024;
    double *part = g ? (double *)grow(be, &g->part, nb * sizeof(double)) : NULL;
    if (!part || n == 0)
        return;
    sumsq_part<<<nb, THREADS, 0, twc_stream(be)>>>(part, x, (int64_t)n);
    sumsq_final<<<1, 1, 0, twc_stream(be)>>>(acc, part, (int)nb);
    twc_check(be, cudaGetLastError(), "gradient norm");
}

// x *= c, four elements a thread as adamw_kernel.
static __global__ void scale_kernel(float *x, int64_t n, float c, bool vec)
{
    GRID_STRIDE_VEC(i, n, 4)
    {
        if (vec && i + 4 <= n) {
            float4 v = *(float4 *)(x + i);
            v.x *= c, v.y *= c, v.z *= c, v.w *= c;
            *(float4 *)(x + i) = v;
        } else {
            for (int64_t j = i; j < i + 4 && j < n; j++)
                x[j] *= c;
        }
    }
}

static void g_scale(struct tw_backend *be, float *x, size_t n, float c)
{
    if (n == 0 || twc_failed(be))
        return;
    scale_kernel<<<grid_vec((int64_t)n, 4), THREADS, 0, twc_stream(be)>>>(x, (int64_t)n, c,
                                                                          twc_aligned16(x));
    twc_check(be, cudaGetLastError(), "scale");
}

static void g_convert(struct tw_backend *be, void *dst, enum tw_dtype dt, const float *src,
                      size_t n)
{
    if (n == 0 || twc_failed(be))
        return;
    if (dt == TW_DTYPE_F32) {
        twc_check(
            be,
            cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, twc_stream(be)),
            "convert");
    } else if (dt == TW_DTYPE_BF16) {
        twc_check(be, twc_to_bf16((__nv_bfloat16 *)dst, src, (int64_t)n, twc_stream(be)),
                  "convert");
    } else {
        twc_fail(be, "convert", "only to f32 or bf16");
    }
}

// ---- the embedding's backward: the tokens ordered by id on the host (ids are host memory),
// then a block per distinct id adds its tokens' rows in token order.

static __global__ void embedding_bwd_kernel(float *dtable, const int32_t *seg, int64_t n_seg,
                                            const float *dy, int64_t C)
{
    // seg: n_seg + 1 offsets into order, then the ids of the segments, then the order
    const int32_t *ids = seg + n_seg + 1, *order = ids + n_seg;
    int64_t sg = blockIdx.y;
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    float s = 0;
    for (int32_t i = seg[sg]; i < seg[sg + 1]; i++)
        s += dy[(int64_t)order[i] * C + c];
    dtable[(int64_t)ids[sg] * C + c] += s;
}

static int cmp_pair(const void *a, const void *b)
{
    const int64_t *x = (const int64_t *)a, *y = (const int64_t *)b;
    return *x < *y ? -1 : *x > *y;
}

static void g_embedding_bwd(struct tw_backend *be, float *dtable, const int32_t *ids,
                            const float *dy, int64_t N, int64_t C)
{
    struct grad_state *g = state(be);
    if (!g || N == 0 || twc_failed(be))
        return;
    // (id << 32 | t) sorted: by id, then token order
    int64_t *key = (int64_t *)tw_malloc_array((size_t)N, sizeof *key);
    if (!key) {
        twc_fail(be, "embedding backward", "out of host memory");
        return;
    }
    for (int64_t t = 0; t < N; t++)
        key[t] = (int64_t)ids[t] << 32 | t;
    qsort(key, (size_t)N, sizeof *key, cmp_pair);
    size_t need = (size_t)(3 * N + 1) * sizeof(int32_t);
    // the pinned buffer may still feed the last call's copy: wait for that copy alone, not for
    // the whole stream (the backward's kernels still queued before this one)
    if (g->seg_copied)
        twc_check(be, cudaEventSynchronize(g->seg_copied), "embedding backward");
    if (need > g->seg_cap) {
        cudaFreeHost(g->seg_host);
        g->seg_host = NULL, g->seg_cap = 0;
        if (!twc_check(be, cudaMallocHost(&g->seg_host, need), "embedding backward")) {
            tw_free(key);
            return;
        }
        g->seg_cap = need;
    }
    int64_t n_seg = 0;
    for (int64_t i = 0; i < N; i++)
        n_seg += i == 0 || key[i] >> 32 != key[i - 1] >> 32;
    int32_t *seg = g->seg_host, *sid = seg + n_seg + 1, *order = sid + n_seg;
    int64_t k = 0;
    for (int64_t i = 0; i < N; i++) {
        if (i == 0 || key[i] >> 32 != key[i - 1] >> 32) {
            seg[k] = (int32_t)i;
            sid[k++] = (int32_t)(key[i] >> 32);
        }
        order[i] = (int32_t)(key[i] & 0xffffffff);
    }
    seg[n_seg] = (int32_t)N;
    tw_free(key);
    size_t bytes = (size_t)(2 * n_seg + 1 + N) * sizeof(int32_t);
    int32_t *dseg = (int32_t *)grow(be, &g->seg, bytes);
    if (!dseg)
        return;
    cudaStream_t s = twc_stream(be);
    twc_check(be, cudaMemcpyAsync(dseg, seg, bytes, cudaMemcpyHostToDevice, s),
              "embedding backward");
    if (!g->seg_copied)
        twc_check(be, cudaEventCreateWithFlags(&g->seg_copied, cudaEventDisableTiming),
                  "embedding backward");
    if (g->seg_copied)
        twc_check(be, cudaEventRecord(g->seg_copied, s), "embedding backward");
    embedding_bwd_kernel<<<dim3((unsigned)((C + THREADS - 1) / THREADS), (unsigned)n_seg), THREADS,
                           0, s>>>(dtable, dseg, n_seg, dy, C);
    twc_check(be, cudaGetLastError(), "embedding backward");
}

// ---- LoRA fused into the base's products (grad.h): the weight block [[W, B], [A, 0]] of
// (out + r) rows of ld = in + r bf16 values.

static void g_lora_sync(struct tw_backend *be, const struct tw_tensor *w, int64_t r,
                        const float *A, const float *B)
{
    int64_t out = w->ne[0], in = w->ne[1], ld = w_ld(w);
    __nv_bfloat16 *W = (__nv_bfloat16 *)w->data;
    to_bf16_2d(be, W + out * ld, ld, A, in, r, in); // A (r, in) at the bottom left
    to_bf16_2d(be, W + in, ld, B, r, out, r);       // B (out, r) at the top right
}

static void g_round_bf16(struct tw_backend *be, void *dst, int64_t ld, const float *src,
                         int64_t rows, int64_t cols)
{
    to_bf16_2d(be, (__nv_bfloat16 *)dst, ld, src, cols, rows, cols);
}

static int g_lora_fwd(struct tw_backend *be, float *y, void *xcv, const struct tw_tensor *w,
                      const float *b, int64_t r, float s, void *xa, int64_t N)
{
    int64_t out = w->ne[0], in = w->ne[1], ld = w_ld(w), K = in + r;
    const __nv_bfloat16 *W = (const __nv_bfloat16 *)w->data;
    __nv_bfloat16 *xc = (__nv_bfloat16 *)xcv;
    // [x | s x A^T]: the adapter's input product in the last r columns, kept for the backward
    gemm_any(be, G_BF16, false, true, N, r, in, s, xc, K, 0, W + out * ld, ld, 0, 0, xc + in,
             CUDA_R_16BF, K, 0, 1);
    if (!twc_failed(be))
        twc_check(be,
                  cudaMemcpy2DAsync(xa, (size_t)r * 2, xc + in, (size_t)K * 2, (size_t)r * 2,
                                    (size_t)N, cudaMemcpyDeviceToDevice, twc_stream(be)),
                  "LoRA activations");
    gemm_rm(be, G_BF16, false, true, N, out, K, 1, xc, K, 0, W, ld, 0, 0, y, out, 0, 1);
    if (b && !twc_failed(be)) {
        add_bias_kernel<<<twc_grid_for(N * out), THREADS, 0, twc_stream(be)>>>(y, y, b, N, out);
        twc_check(be, cudaGetLastError(), "linear (bias)");
    }
    return 0;
}

static int g_lora_bwd(struct tw_backend *be, float *dx, bool add, float *dA, float *dB, float *db,
                      const float *dy, const void *xc, const void *xa, const struct tw_tensor *w,
                      int64_t r, float s, int64_t N)
{
    struct grad_state *g = state(be);
    int64_t out = w->ne[0], in = w->ne[1], ld = w_ld(w), Ko = out + r;
    const __nv_bfloat16 *W = (const __nv_bfloat16 *)w->data, *xb = (const __nv_bfloat16 *)xc;
    __nv_bfloat16 *dc = g ? (__nv_bfloat16 *)grow(be, &g->yb, (size_t)(N * Ko) * 2) : NULL;
    if (!dc)
        return 0; // recorded: tw_backend_sync reports it
    to_bf16_2d(be, dc, Ko, dy, out, N, out);
    // [dy | s dy B]
    gemm_any(be, G_BF16, false, false, N, r, out, s, dc, Ko, 0, W + in, ld, 0, 0, dc + out,
             CUDA_R_16BF, Ko, 0, 1);
    // dB += dy^T (s x A^T); dA += (s dy B)^T x
    gemm_rm(be, G_BF16, true, false, out, r, N, 1, dc, Ko, 0, xa, r, 0, 1, dB, r, 0, 1);
    gemm_rm(be, G_BF16, true, false, r, in, N, 1, dc + out, Ko, 0, xb, in + r, 0, 1, dA, in, 0, 1);
    if (dx) // dx (+)= [dy | s dy B] [W ; A]
        gemm_rm(be, G_BF16, false, false, N, in, Ko, 1, dc, Ko, 0, W, ld, 0, add ? 1 : 0, dx, in,
                0, 1);
    if (db)
        colsum(be, db, dy, NULL, NULL, N, out);
    return 0;
}

const struct tw_grad_ops twc_grad_ops = {
    /* rmsnorm_fwd */ g_rmsnorm_fwd,
    /* rmsnorm_bwd */ g_rmsnorm_bwd,
    /* attn_fwd */ g_attn_fwd,
    /* attn_bwd */ g_attn_bwd,
    /* swiglu_bwd */ g_swiglu_bwd,
    /* linear_fwd */ g_linear_fwd,
    /* linear_bwd */ g_linear_bwd,
    /* head_logp */ g_head_logp,
    /* embedding_bwd */ g_embedding_bwd,
    /* gemm */ g_gemm,
    /* dropout */ g_dropout,
    /* zero */ g_zero,
    /* adamw */ g_adamw,
    /* adamw_multi */ g_adamw_multi,
    /* sumsq */ g_sumsq,
    /* scale */ g_scale,
    /* convert */ g_convert,
    /* lora_sync */ g_lora_sync,
    /* lora_fwd */ g_lora_fwd,
    /* lora_bwd */ g_lora_bwd,
    /* round_bf16 */ g_round_bf16,
    /* rmsnorm_fwd_bf16 */ g_rmsnorm_fwd_bf16,
    /* rmsnorm_bwd_bf16 */ g_rmsnorm_bwd_bf16,
    /* rope_bf16 */ g_rope_bf16,
    /* attn_keeps */ g_attn_keeps,
    /* swiglu_bf16 */ g_swiglu_bf16,
    /* swiglu_bwd_bf16 */ g_swiglu_bwd_bf16,
    /* linear_fwd_bf16 */ g_linear_fwd_bf16,
    /* linear_bwd_bf16 */ g_linear_bwd_bf16,
    /* add_bf16 */ g_add_bf16,
};

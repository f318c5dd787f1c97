// Implements profile.h: a backend whose ops forward to another one and add up, per op, the
// calls, the wall time and (matmuls) the weight bytes read. Every op is timed on the calling
// thread around the inner call, so the times are those a caller waits for, fork and join of
// the inner backend's threads included.
#include <stdio.h>
#include <time.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/grad.h"
#include "tensor/profile.h"

enum {
    P_EMBEDDING,
    P_MATMUL1, // one activation row: decode
    P_MATMULN, // several rows: prefill and batched decode
    P_RMSNORM,
    P_LAYERNORM,
    P_ROPE,
    P_ATTENTION,
    P_SOFTMAX,
    P_SWIGLU,
    P_ACT,
    P_ADD,
    P_POOL,
    P_L2NORM,
    P_SET_ROWS,
    P_TOPK,
    // the training ops (tensor/grad.h)
    P_G_RMSNORM_FWD,
    P_G_RMSNORM_BWD,
    P_G_ATTN_FWD,
    P_G_ATTN_BWD,
    P_G_SWIGLU_BWD,
    P_G_LINEAR_FWD,
    P_G_LINEAR_BWD,
    P_G_HEAD,
    P_G_EMBEDDING_BWD,
    P_G_GEMM,
    P_G_GEMM_DW,
    P_G_GEMM_DX,
    P_G_DROPOUT,
    P_G_ZERO,
    P_G_OPTIM, // adamw, sumsq, scale, convert
    P_COUNT
};

static const char *const op_names[P_COUNT] = {
    "embedding",
    "matmul T=1",
    "matmul T>1",
    "rmsnorm",
    "layernorm",
    "rope",
    "attention",
    "softmax",
    "swiglu",
    "act",
    "add",
    "pool",
    "l2norm",
    "set_rows",
    "topk",
    "rmsnorm fwd (training)",
    "rmsnorm bwd",
    "attention fwd (training)",
    "attention bwd",
    "swiglu bwd",
    "linear fwd",
    "linear bwd",
    "head + cross-entropy",
    "embedding bwd",
    "gemm f32 (LoRA): y = x W^T",
    "gemm f32 (LoRA): dW = dy^T x",
    "gemm f32 (LoRA): dx = dy W",
    "dropout",
    "zero",
    "optimiser (adamw, norm, convert)",
};

struct prof {
    struct tw_backend *inner;
    struct tw_op_stat stat[P_COUNT];
    struct tw_backend_ops ops; // profile_ops with grad's optional ops where inner has them
    struct tw_grad_ops grad;
};

static struct prof *P(struct tw_backend *be)
{
    return be->impl;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Runs CALL on the inner backend and charges its time (and `bytes`) to op k. A device
// backend runs its ops asynchronously: the op is waited for (before and after), so that its
// time is its launch plus its run, one op at a time.
#define TIMED(BE, K, NBYTES, CALL)             \
    do {                                       \
        struct prof *p_ = P(BE);               \
        struct tw_backend *in = p_->inner;     \
        in->stream_bytes = (BE)->stream_bytes; \
        if (in->device != TW_DEVICE_CPU)       \
            tw_backend_sync(in);               \
        double t0_ = now();                    \
        CALL;                                  \
        if (in->device != TW_DEVICE_CPU)       \
            tw_backend_sync(in);               \
        p_->stat[K].seconds += now() - t0_;    \
        p_->stat[K].calls++;                   \
        p_->stat[K].bytes += (double)(NBYTES); \
    } while (0)

static void p_free(struct tw_backend *be)
{
    tw_free(be->impl);
    tw_free(be);
}

static void p_embedding(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *table,
                        const int32_t *ids)
{
    TIMED(be, P_EMBEDDING, 0, tw_embedding(in, y, table, ids));
}

static void p_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                     const struct tw_tensor *w, const struct tw_tensor *bias)
{
    int k = tw_tensor_nrows(x) == 1 ? P_MATMUL1 : P_MATMULN;
    TIMED(be, k, tw_tensor_nbytes(w), tw_matmul(in, y, x, w, bias));
}

static void p_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                       const struct tw_tensor *x, const struct tw_tensor *const *ws,
                       const struct tw_tensor *const *biases)
{
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += tw_tensor_nbytes(ws[i]);
    int k = tw_tensor_nrows(x) == 1 ? P_MATMUL1 : P_MATMULN;
    TIMED(be, k, bytes, tw_matmul_n(in, n, ys, x, ws, biases, NULL));
}

static void p_rmsnorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                      const struct tw_tensor *w, float eps)
{
    TIMED(be, P_RMSNORM, 0, tw_rmsnorm(in, y, x, w, eps));
}

static void p_layernorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, const struct tw_tensor *b, float eps)
{
    TIMED(be, P_LAYERNORM, 0, tw_layernorm(in, y, x, w, b, eps));
}

static void p_rope(struct tw_backend *be, struct tw_tensor *x, const int32_t *pos,
                   const struct tw_rope *r)
{
    TIMED(be, P_ROPE, 0, tw_rope(in, x, pos, r));
}

static void p_attention(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                        const struct tw_tensor *k, const struct tw_tensor *v,
                        const struct tw_attn *a)
{
    TIMED(be, P_ATTENTION, 0, tw_attention(in, out, q, k, v, a));
}

static bool p_attention_seqs(struct tw_backend *be, struct tw_tensor *out,
                             const struct tw_tensor *q, const struct tw_attn_seq *seqs, int n,
                             const struct tw_attn *a)
{
    TIMED(be, P_ATTENTION, 0, tw_attention_seqs(in, out, q, seqs, n, a));
    return true;
}

static void p_pool_seqs(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_attn_seq *seqs, int n, enum tw_pooling mode)
{
    TIMED(be, P_POOL, 0, tw_pooling_seqs(in, y, x, seqs, n, mode));
}

static void p_softmax(struct tw_backend *be, struct tw_tensor *x)
{
    TIMED(be, P_SOFTMAX, 0, tw_softmax(in, x));
}

static void p_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *gate,
                     const struct tw_tensor *up)
{
    TIMED(be, P_SWIGLU, 0, tw_swiglu(in, y, gate, up));
}

static void p_act(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                  enum tw_act act)
{
    TIMED(be, P_ACT, 0, tw_act(in, y, x, act));
}

static void p_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *a,
                  const struct tw_tensor *b)
{
    TIMED(be, P_ADD, 0, tw_add(in, y, a, b));
}

static void p_pool(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                   enum tw_pooling mode)
{
    TIMED(be, P_POOL, 0, tw_pooling(in, y, x, mode));
}

static void p_l2norm(struct tw_backend *be, struct tw_tensor *x)
{
    TIMED(be, P_L2NORM, 0, tw_l2norm(in, x));
}

static void p_set_rows(struct tw_backend *be, float *dst, const struct tw_tensor *src,
                       const int32_t *rows)
{
    TIMED(be, P_SET_ROWS, 0, tw_set_rows(in, dst, src, rows));
}

static void p_topk(struct tw_backend *be, const struct tw_tensor *x, int32_t k, float *vals,
                   int32_t *ids)
{
    TIMED(be, P_TOPK, 0, tw_topk(in, x, k, vals, ids));
}

// Memory is the wrapped backend's.
static void *p_alloc(struct tw_backend *be, size_t bytes)
{
    return tw_backend_alloc(P(be)->inner, bytes);
}

static void p_release(struct tw_backend *be, void *p)
{
    tw_backend_release(P(be)->inner, p);
}

static int p_upload(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    return tw_backend_upload(P(be)->inner, dst, src, n);
}

static int p_download(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    return tw_backend_download(P(be)->inner, dst, src, n);
}

static void p_copy(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    tw_backend_copy(P(be)->inner, dst, src, n);
}

static int p_sync(struct tw_backend *be)
{
    return tw_backend_sync(P(be)->inner);
}

// ---- the training ops, forwarded to the inner backend's.

static const struct tw_grad_ops *G(struct tw_backend *be)
{
    return tw_backend_grad(P(be)->inner);
}

static void g_rmsnorm_fwd(struct tw_backend *be, float *y, float *rstd, const float *x,
                          const float *w, int64_t N, int64_t C, float eps)
{
    TIMED(be, P_G_RMSNORM_FWD, 0, G(be)->rmsnorm_fwd(in, y, rstd, x, w, N, C, eps));
}

static void g_rmsnorm_bwd(struct tw_backend *be, float *dx, float *dw, const float *dy,
                          const float *x, const float *w, const float *rstd, int64_t N, int64_t C)
{
    TIMED(be, P_G_RMSNORM_BWD, 0, G(be)->rmsnorm_bwd(in, dx, dw, dy, x, w, rstd, N, C));
}

static void g_attn_fwd(struct tw_backend *be, float *out, float *lse, const float *q,
                       const float *k, const float *v, const int32_t *start,
                       const struct tw_attn_shape *s)
{
    TIMED(be, P_G_ATTN_FWD, 0, G(be)->attn_fwd(in, out, lse, q, k, v, start, s));
}

static void g_attn_bwd(struct tw_backend *be, float *dq, float *dk, float *dv, const float *dout,
                       const float *q, const float *k, const float *v, const float *out,
                       const float *lse, const int32_t *start, const struct tw_attn_shape *s)
{
    TIMED(be, P_G_ATTN_BWD, 0, G(be)->attn_bwd(in, dq, dk, dv, dout, q, k, v, out, lse, start, s));
}

static void g_swiglu_bwd(struct tw_backend *be, float *dg, float *du, const float *dh,
                         const float *g, const float *u, int64_t n)
{
    TIMED(be, P_G_SWIGLU_BWD, 0, G(be)->swiglu_bwd(in, dg, du, dh, g, u, n));
}

static int g_linear_fwd(struct tw_backend *be, float *y, const float *x, const struct tw_tensor *w,
                        const float *b, int64_t N)
{
    int rc;
    TIMED(be, P_G_LINEAR_FWD, 0, rc = G(be)->linear_fwd(in, y, x, w, b, N));
    return rc;
}

static int g_linear_bwd(struct tw_backend *be, float *dx, bool add, float *dw, float *db,
                        const float *dy, const float *x, const struct tw_tensor *w, int64_t N)
{
    int rc;
    TIMED(be, P_G_LINEAR_BWD, 0, rc = G(be)->linear_bwd(in, dx, add, dw, db, dy, x, w, N));
    return rc;
}

static int g_head_logp(struct tw_backend *be, const float *x, const struct tw_tensor *w,
                       const int32_t *targets, int64_t N, float *logp, const float *coef,
                       float *dx, float *dw, double *sum)
{
    int rc;
    TIMED(be, P_G_HEAD, 0, rc = G(be)->head_logp(in, x, w, targets, N, logp, coef, dx, dw, sum));
    return rc;
}

static void g_embedding_bwd(struct tw_backend *be, float *dtable, const int32_t *ids,
                            const float *dy, int64_t N, int64_t C)
{
    TIMED(be, P_G_EMBEDDING_BWD, 0, G(be)->embedding_bwd(in, dtable, ids, dy, N, C));
}

static void g_gemm(struct tw_backend *be, bool lowp, bool ta, bool tb, int64_t M, int64_t N,
                   int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                   int64_t ldb, float beta, float *C, int64_t ldc)
{
    TIMED(be,
          tb   ? P_G_GEMM
          : ta ? P_G_GEMM_DW
               : P_G_GEMM_DX,
          0, G(be)->gemm(in, lowp, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
}

static void g_dropout(struct tw_backend *be, float *y, const float *x, int64_t n, float p,
                      uint64_t key, bool add)
{
    TIMED(be, P_G_DROPOUT, 0, G(be)->dropout(in, y, x, n, p, key, add));
}

static void g_zero(struct tw_backend *be, void *p, size_t bytes)
{
    TIMED(be, P_G_ZERO, 0, G(be)->zero(in, p, bytes));
}

static void g_adamw(struct tw_backend *be, float *w, const float *g, float *m, float *v, size_t n,
                    const struct tw_adamw_args *a)
{
    TIMED(be, P_G_OPTIM, 0, G(be)->adamw(in, w, g, m, v, n, a));
}

static void g_adamw_multi(struct tw_backend *be, const struct tw_adamw_seg *seg, int nseg,
                          const struct tw_adamw_args *a)
{
    TIMED(be, P_G_OPTIM, 0, G(be)->adamw_multi(in, seg, nseg, a));
}

static void g_sumsq(struct tw_backend *be, const float *x, size_t n, double *acc)
{
    TIMED(be, P_G_OPTIM, 0, G(be)->sumsq(in, x, n, acc));
}

static void g_scale(struct tw_backend *be, float *x, size_t n, float c)
{
    TIMED(be, P_G_OPTIM, 0, G(be)->scale(in, x, n, c));
}

static void g_convert(struct tw_backend *be, void *dst, enum tw_dtype dt, const float *src,
                      size_t n)
{
    TIMED(be, P_G_OPTIM, 0, G(be)->convert(in, dst, dt, src, n));
}

static void g_lora_sync(struct tw_backend *be, const struct tw_tensor *w, int64_t r,
                        const float *A, const float *B)
{
    TIMED(be, P_G_OPTIM, 0, G(be)->lora_sync(in, w, r, A, B));
}

static int g_lora_fwd(struct tw_backend *be, float *y, void *xc, const struct tw_tensor *w,
                      const float *b, int64_t r, float s, void *xa, int64_t N)
{
    int rc;
    TIMED(be, P_G_LINEAR_FWD, 0, rc = G(be)->lora_fwd(in, y, xc, w, b, r, s, xa, N));
    return rc;
}

static void g_round_bf16(struct tw_backend *be, void *dst, int64_t ld, const float *src,
                         int64_t rows, int64_t cols)
{
    TIMED(be, P_G_LINEAR_FWD, 0, G(be)->round_bf16(in, dst, ld, src, rows, cols));
}

static int g_lora_bwd(struct tw_backend *be, float *dx, bool add, float *dA, float *dB, float *db,
                      const float *dy, const void *xc, const void *xa, const struct tw_tensor *w,
                      int64_t r, float s, int64_t N)
{
    int rc;
    TIMED(be, P_G_LINEAR_BWD, 0,
          rc = G(be)->lora_bwd(in, dx, add, dA, dB, db, dy, xc, xa, w, r, s, N));
    return rc;
}

static void g_rmsnorm_fwd_bf16(struct tw_backend *be, void *y, float *rstd, const float *x,
                               const float *w, int64_t N, int64_t C, float eps)
{
    TIMED(be, P_G_RMSNORM_FWD, 0, G(be)->rmsnorm_fwd_bf16(in, y, rstd, x, w, N, C, eps));
}

static void g_rmsnorm_bwd_bf16(struct tw_backend *be, float *dx, void *dxb, float *dw,
                               const float *dy, const float *x, const float *w, const float *rstd,
                               int64_t N, int64_t C)
{
    TIMED(be, P_G_RMSNORM_BWD, 0, G(be)->rmsnorm_bwd_bf16(in, dx, dxb, dw, dy, x, w, rstd, N, C));
}

static void g_rope_bf16(struct tw_backend *be, void *xb, int64_t ld, float *x, bool keep,
                        const int32_t *pos, int64_t N, int64_t heads, const struct tw_rope *r)
{
    TIMED(be, P_ROPE, 0, G(be)->rope_bf16(in, xb, ld, x, keep, pos, N, heads, r));
}

static bool g_attn_keeps(struct tw_backend *be, const struct tw_attn_shape *sh)
{
    return G(be)->attn_keeps(P(be)->inner, sh);
}

static void g_swiglu_bf16(struct tw_backend *be, void *h, const void *g, const void *u, int64_t N,
                          int64_t F, int64_t ld)
{
    TIMED(be, P_SWIGLU, 0, G(be)->swiglu_bf16(in, h, g, u, N, F, ld));
}

static void g_swiglu_bwd_bf16(struct tw_backend *be, void *dg, void *du, const void *dh,
                              const void *g, const void *u, int64_t N, int64_t F, int64_t ld)
{
    TIMED(be, P_G_SWIGLU_BWD, 0, G(be)->swiglu_bwd_bf16(in, dg, du, dh, g, u, N, F, ld));
}

static int g_linear_fwd_bf16(struct tw_backend *be, float *y, void *yb, const void *xb,
                             const struct tw_tensor *w, const float *b, int64_t N)
{
    int rc;
    TIMED(be, P_G_LINEAR_FWD, 0, rc = G(be)->linear_fwd_bf16(in, y, yb, xb, w, b, N));
    return rc;
}

static int g_linear_bwd_bf16(struct tw_backend *be, float *dx, void *dxb, bool add, float *dw,
                             float *db, const float *dy, const void *dyb, const void *xb,
                             const struct tw_tensor *w, int64_t N)
{
    int rc;
    TIMED(be, P_G_LINEAR_BWD, 0,
          rc = G(be)->linear_bwd_bf16(in, dx, dxb, add, dw, db, dy, dyb, xb, w, N));
    return rc;
}

static void g_add_bf16(struct tw_backend *be, float *y, const float *a, const void *b, int64_t n)
{
    TIMED(be, P_ADD, 0, G(be)->add_bf16(in, y, a, b, n));
}

// Every op forwarded; tw_backend_profile_new leaves the optional ones (grad.h: LoRA's fused
// products, the hand-offs) out where the inner backend has none, so that callers see what
// the inner backend can do.
static const struct tw_grad_ops profile_grad_ops = {
    .rmsnorm_fwd = g_rmsnorm_fwd,
    .rmsnorm_bwd = g_rmsnorm_bwd,
    .attn_fwd = g_attn_fwd,
    .attn_bwd = g_attn_bwd,
    .swiglu_bwd = g_swiglu_bwd,
    .linear_fwd = g_linear_fwd,
    .linear_bwd = g_linear_bwd,
    .head_logp = g_head_logp,
    .embedding_bwd = g_embedding_bwd,
    .gemm = g_gemm,
    .lora_sync = g_lora_sync,
    .lora_fwd = g_lora_fwd,
    .lora_bwd = g_lora_bwd,
    .round_bf16 = g_round_bf16,
    .rmsnorm_fwd_bf16 = g_rmsnorm_fwd_bf16,
    .rmsnorm_bwd_bf16 = g_rmsnorm_bwd_bf16,
    .rope_bf16 = g_rope_bf16,
    .attn_keeps = g_attn_keeps,
    .swiglu_bf16 = g_swiglu_bf16,
    .swiglu_bwd_bf16 = g_swiglu_bwd_bf16,
    .linear_fwd_bf16 = g_linear_fwd_bf16,
    .linear_bwd_bf16 = g_linear_bwd_bf16,
    .add_bf16 = g_add_bf16,
    .dropout = g_dropout,
    .zero = g_zero,
    .adamw = g_adamw,
    .adamw_multi = g_adamw_multi,
    .sumsq = g_sumsq,
    .scale = g_scale,
    .convert = g_convert,
};

static const struct tw_backend_ops profile_ops = {
    .name = "profile",
    .free = p_free,
    .embedding = p_embedding,
    .matmul = p_matmul,
    .matmul_n = p_matmul_n,
    .rmsnorm = p_rmsnorm,
    .layernorm = p_layernorm,
    .rope = p_rope,
    .attention = p_attention,
    .attention_seqs = p_attention_seqs,
    .pool_seqs = p_pool_seqs,
    .softmax = p_softmax,
    .swiglu = p_swiglu,
    .act = p_act,
    .add = p_add,
    .pool = p_pool,
    .l2norm = p_l2norm,
    .set_rows = p_set_rows,
    .topk = p_topk,
    .alloc = p_alloc,
    .release = p_release,
    .upload = p_upload,
    .download = p_download,
    .copy = p_copy,
    .sync = p_sync,
    .grad = &profile_grad_ops,
};

int tw_backend_profile_new(struct tw_backend *inner, struct tw_backend **out)
{
    struct tw_backend *be = tw_calloc(1, sizeof *be);
    struct prof *p = tw_calloc(1, sizeof *p);
    if (!be || !p) {
        tw_free(be);
        tw_free(p);
        return tw_error_set(TW_ENOMEM, "out of memory for a profiling backend");
    }
    p->inner = inner;
    p->grad = profile_grad_ops;
    const struct tw_grad_ops *ig = tw_backend_grad(inner);
#define OPTIONAL(op) \
    if (!ig->op)     \
        p->grad.op = NULL;
    OPTIONAL(adamw_multi)
    OPTIONAL(lora_sync)
    OPTIONAL(lora_fwd)
    OPTIONAL(lora_bwd)
    OPTIONAL(rmsnorm_fwd_bf16)
    OPTIONAL(rmsnorm_bwd_bf16)
    OPTIONAL(rope_bf16)
    OPTIONAL(attn_keeps)
    OPTIONAL(swiglu_bf16)
    OPTIONAL(swiglu_bwd_bf16)
    OPTIONAL(linear_fwd_bf16)
    OPTIONAL(linear_bwd_bf16)
    OPTIONAL(add_bf16)
#undef OPTIONAL
    p->ops = profile_ops;
    p->ops.grad = &p->grad;
    be->ops = &p->ops;
    be->device = inner->device;
    be->n_threads = inner->n_threads;
    be->impl = p;
    *out = be;
    return 0;
}

bool tw_backend_profile_stat(struct tw_backend *be, int i, struct tw_op_stat *st)
{
    if (be->ops->free != profile_ops.free || i < 0 || i >= P_COUNT)
        return false;
    *st = P(be)->stat[i];
    st->name = op_names[i];
    return true;
}

void tw_backend_profile_reset(struct tw_backend *be)
{
    if (be->ops->free == profile_ops.free)
        for (int i = 0; i < P_COUNT; i++)
            P(be)->stat[i] = (struct tw_op_stat){ 0 };
}

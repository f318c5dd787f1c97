// Implements profile.h: a backend whose ops forward to another one and add up, per op, the
// calls, the wall time and (matmuls) the weight bytes read. Every op is timed on the calling
// thread around the inner call, so the times are those a caller waits for, fork and join of
// the inner backend's threads included.
#include <stdio.h>
#include <time.h>

#include "base/error.h"
#include "base/mem.h"
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
    P_COUNT
};

static const char *const op_names[P_COUNT] = {
    "embedding", "matmul T=1", "matmul T>1", "rmsnorm",  "layernorm",
    "rope",      "attention",  "softmax",    "swiglu",   "act",
    "add",       "pool",       "l2norm",     "set_rows", "topk",
};

struct prof {
    struct tw_backend *inner;
    struct tw_op_stat stat[P_COUNT];
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
    be->ops = &profile_ops;
    be->device = inner->device;
    be->n_threads = inner->n_threads;
    be->impl = p;
    *out = be;
    return 0;
}

bool tw_backend_profile_stat(struct tw_backend *be, int i, struct tw_op_stat *st)
{
    if (be->ops != &profile_ops || i < 0 || i >= P_COUNT)
        return false;
    *st = P(be)->stat[i];
    st->name = op_names[i];
    return true;
}

void tw_backend_profile_reset(struct tw_backend *be)
{
    if (be->ops == &profile_ops)
        for (int i = 0; i < P_COUNT; i++)
            P(be)->stat[i] = (struct tw_op_stat){ 0 };
}

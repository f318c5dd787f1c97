// The engine's ops and the backends that run them. Model code calls tw_matmul, tw_rmsnorm,
// tw_rope, tw_attention, ... (llm.c's manner); each checks shapes and dispatches through the
// backend's table of function pointers (ggml-backend's shape). Backends:
//   cpu_ref  plain C, one thread: the reference every other backend is tested against;
//   cpu      SIMD dot kernels chosen at run time (cpu_dot.h), a team of threads (team.h),
//            OpenBLAS GEMMs for batched matmuls (prefill); ops with no fast path run the
//            reference code;
//   cuda     (tensor/cuda/) when built with nvcc.
// Activations are f32 on the CPU backends; matmul and embedding take weights of any dtype.
// Shape mismatches are the caller's bugs and are asserted, not reported.
#ifndef TW_TENSOR_BACKEND_H
#define TW_TENSOR_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/tensor.h"

struct tw_backend;
struct tw_grad_ops;

enum tw_act { TW_ACT_GELU, TW_ACT_GELU_TANH, TW_ACT_SILU, TW_ACT_TANH, TW_ACT_RELU };
enum tw_pooling { TW_POOL_MEAN, TW_POOL_CLS, TW_POOL_MAX, TW_POOL_LAST };

// Rotary position embedding of one head's first n_rot dims (RoFormer; Llama's rotary).
struct tw_rope {
    int32_t head_dim;
    int32_t n_rot;         // even, <= head_dim; the rest of the head passes unchanged
    bool neox;             // pairs (i, i + n_rot/2) as HF's rotate_half; else (2i, 2i + 1) as
                           // GGUF's permuted Llama weights expect
    const float *inv_freq; // n_rot / 2 angular frequencies, scaling already applied
};

struct tw_attn {
    int32_t n_head, n_head_kv, head_dim; // n_head a multiple of n_head_kv (grouped queries)
    float scale;                         // usually 1 / sqrt(head_dim)
    bool causal;
    int32_t window; // sliding window, 0 = none: the query at position p sees keys at
                    // positions j with p - window < j <= p (Mistral's rule)
    int32_t n_past; // the query rows are positions n_past .. n_past + T - 1
    bool lowp;      // bf16 arithmetic is good enough (the model's weights are bf16 or
                    // quantised): the CUDA backend may use bf16 tensor cores; the CPU ignores it
    // A paged cache (tw_attn_seq.pages): rows per page (a power of two) and the entries of
    // each sequence's page table; gather, room for a sequence's keys and values in order
    // (2 * max_pages * page * n_head_kv * head_dim floats, host memory) where the CPU backend
    // needs them so (a prefill's rows).
    int32_t page, max_pages;
    float *gather;
    // Changes whenever the page tables may have (the context's step count): while it stays,
    // a backend may keep the copy it made of them (one per step rather than per layer).
    uint64_t pages_gen;
};

// An RMSNorm applied to a product's input first (tw_matmul_n, tw_matmul_swiglu): the product
// reads x / sqrt(mean(x^2) + eps) * w of each row (w: K floats). A backend that folds it into
// its matrix-vector kernel never forms it; the others write it to xn (x's shape; it may be x
// itself) and multiply that.
struct tw_prenorm {
    const struct tw_tensor *w;
    float eps;
    struct tw_tensor *xn;
};

// One sequence's share of a batch that holds several (tw_attention_seqs): its query rows and
// its own cache.
struct tw_attn_seq {
    int32_t row0, n_rows; // its rows of q and out
    int32_t n_past;       // they are positions n_past .. n_past + n_rows - 1
    const float *k, *v;   // its cache rows 0 .. n_past + n_rows - 1, each (n_head_kv, head_dim)
    // NULL: those rows are k, v's first ones. Else the cache is paged (vLLM's PagedAttention,
    // Kwon et al. 2023): k and v are a pool that several sequences share, and the sequence's
    // row j is the pool's row pages[j / a->page] * a->page + j % a->page (a->max_pages
    // entries, host memory).
    const int32_t *pages;
};

struct tw_backend_ops {
    const char *name;
    void (*free)(struct tw_backend *be);
    void (*embedding)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *table,
                      const int32_t *ids);
    void (*matmul)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                   const struct tw_tensor *w, const struct tw_tensor *bias);
    // NULL: tw_matmul_n calls matmul for each
    void (*matmul_n)(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                     const struct tw_tensor *x, const struct tw_tensor *const *ws,
                     const struct tw_tensor *const *biases);
    void (*rmsnorm)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                    const struct tw_tensor *w, float eps);
    void (*layernorm)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                      const struct tw_tensor *w, const struct tw_tensor *b, float eps);
    void (*rope)(struct tw_backend *be, struct tw_tensor *x, const int32_t *pos,
                 const struct tw_rope *r);
    void (*attention)(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                      const struct tw_tensor *k, const struct tw_tensor *v,
                      const struct tw_attn *a);
    // NULL, or false returned: tw_attention_seqs calls attention for each sequence
    bool (*attention_seqs)(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                           const struct tw_attn_seq *seqs, int n, const struct tw_attn *a);
    void (*softmax)(struct tw_backend *be, struct tw_tensor *x);
    void (*swiglu)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *gate,
                   const struct tw_tensor *up);
    void (*act)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                enum tw_act act);
    void (*add)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *a,
                const struct tw_tensor *b);
    void (*pool)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                 enum tw_pooling mode);
    // NULL: tw_pooling_seqs calls pool for each sequence
    void (*pool_seqs)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                      const struct tw_attn_seq *seqs, int n, enum tw_pooling mode);
    void (*l2norm)(struct tw_backend *be, struct tw_tensor *x);
    void (*set_rows)(struct tw_backend *be, float *dst, const struct tw_tensor *src,
                     const int32_t *rows);
    void (*topk)(struct tw_backend *be, const struct tw_tensor *x, int32_t k, float *vals,
                 int32_t *ids);
    // Fused forms (NULL: tw_matmul_add, tw_matmul_swiglu, tw_mlp_add, tw_self_attention_add,
    // tw_matmul_n with a norm and tw_rope_store compose the plain ops; those returning bool,
    // false too: not this case, nothing done).
    bool (*norm_matmul_n)(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                          const struct tw_tensor *x, const struct tw_tensor *const *ws,
                          const struct tw_tensor *const *biases, const struct tw_prenorm *pn);
    bool (*norm_matmul_swiglu)(struct tw_backend *be, struct tw_tensor *y,
                               const struct tw_tensor *x, const struct tw_tensor *wg,
                               const struct tw_tensor *wu, const struct tw_prenorm *pn);
    void (*rope_store)(struct tw_backend *be, struct tw_tensor *q, struct tw_tensor *k,
                       const struct tw_tensor *v, const int32_t *pos, const struct tw_rope *r,
                       float *k_cache, float *v_cache, const int32_t *rows);
    bool (*matmul_add)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                       const struct tw_tensor *w, const struct tw_tensor *bias);
    bool (*matmul_swiglu)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                          const struct tw_tensor *wg, const struct tw_tensor *wu);
    void (*mlp_add)(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                    const struct tw_tensor *wu, const struct tw_tensor *bu, enum tw_act act,
                    const struct tw_tensor *wd, const struct tw_tensor *bd, struct tw_tensor *u);
    // False: not this case (tw_self_attention_add composes the plain ops).
    bool (*self_attention_add)(struct tw_backend *be, struct tw_tensor *y,
                               const struct tw_tensor *x, const struct tw_tensor *const *w,
                               const struct tw_tensor *const *b, const struct tw_attn_seq *seqs,
                               int n, const struct tw_attn *a, struct tw_tensor *const *s);
    // Graphs (NULL: the backend runs every op as it comes): see tw_backend_graph_begin.
    int (*graph_begin)(struct tw_backend *be, void **graph, int32_t kv_bound, int32_t rows_bound);
    int (*graph_end)(struct tw_backend *be, void **graph);
    void (*graph_free)(struct tw_backend *be, void *graph);
    // The memory ops read and write (device memory for cuda). NULL on the CPU backends:
    // host memory (tw_malloc, memcpy), and tw_backend_sync has nothing to wait for.
    void *(*alloc)(struct tw_backend *be, size_t bytes);
    void (*release)(struct tw_backend *be, void *p);
    int (*upload)(struct tw_backend *be, void *dst, const void *src, size_t n);
    int (*download)(struct tw_backend *be, void *dst, const void *src, size_t n);
    void (*copy)(struct tw_backend *be, void *dst, const void *src, size_t n);
    int (*sync)(struct tw_backend *be);
    // The training ops on this backend's memory (tensor/grad.h); NULL: the CPU's.
    const struct tw_grad_ops *grad;
};

struct tw_backend {
    const struct tw_backend_ops *ops;
    enum tw_device device;
    int n_threads;
    void *impl;          // the backend's own state
    size_t stream_bytes; // the weights a forward on it reads, set by the model that runs it (0:
                         // not known): the CPU kernels prefetch further when they exceed the
                         // last-level cache
};

// ---- memory of a backend. On the CPU backends these are tw_malloc, tw_free and memcpy; on
// cuda, device memory from the backend's pool and copies on its stream (ops run in order on
// that stream; tw_backend_download waits for the ops before it).

// `bytes` of the backend's memory, 256-byte aligned; NULL (and a message) when there is none.
void *tw_backend_alloc(struct tw_backend *be, size_t bytes);
void tw_backend_release(struct tw_backend *be, void *p);
// Host -> backend and backend -> host copies of n bytes. Return 0, or TW_EDEVICE.
int tw_backend_upload(struct tw_backend *be, void *dst, const void *src, size_t n);
int tw_backend_download(struct tw_backend *be, void *dst, const void *src, size_t n);
// Backend -> backend copy of n bytes (regions must not overlap), in order with the ops.
void tw_backend_copy(struct tw_backend *be, void *dst, const void *src, size_t n);
// Waits for the enqueued ops. Returns 0, or TW_EDEVICE naming the first op that failed since
// the last sync (device ops cannot return errors one by one: they are asynchronous).
int tw_backend_sync(struct tw_backend *be);
// *dev = a copy of the contiguous tensor t in the backend's memory (shape, dtype and name
// kept, device set). Returns 0, or TW_ENOMEM / TW_EDEVICE; release dev->data when done.
int tw_backend_tensor_upload(struct tw_backend *be, const struct tw_tensor *t,
                             struct tw_tensor *dev);

enum tw_device_choice { TW_CHOOSE_CPU, TW_CHOOSE_CUDA, TW_CHOOSE_AUTO };

// Reads a device name: "cpu", "cuda" or "cuda:N" (*gpu = N, 0 for "cuda"), "auto". False
// when s is NULL or names none of these.
bool tw_device_name_parse(const char *s, enum tw_device_choice *choice, int *gpu);
// The backend `device` names: "cpu" (threads threads, <= 0: every CPU), "cuda" or "cuda:N"
// (GPU N), "auto" (GPU 0 when there is one, else the CPU); NULL reads $TWIN_DEVICE, "auto"
// when it is unset. Returns 0, or an error naming the device.
int tw_backend_open(const char *device, int threads, struct tw_backend **out);

// The reference backend: a static object, never freed (tw_backend_free ignores it).
struct tw_backend *tw_backend_cpu_ref(void);
// The fast CPU backend with n_threads threads (<= 0: every online CPU), its own team of them
// (tensor/team.h: they spin between its parallel regions). Returns 0, TW_ENOMEM, or TW_EIO
// when a thread cannot be started.
int tw_backend_cpu_new(int n_threads, struct tw_backend **out);
// The same whose parallel regions are OpenMP's, for a caller whose own work between the
// backend's ops runs OpenMP regions too (CPU training: tensor/grad.c); see tw_team_new_openmp.
int tw_backend_cpu_new_openmp(int n_threads, struct tw_backend **out);
void tw_backend_free(struct tw_backend *be);

// ---- ops. y may alias x where noted; every tensor is contiguous f32 unless noted.

// y (T, C) = table[ids[t]] for t < T; table (V, C) of any dtype; ids < V (asserted).
void tw_embedding(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *table,
                  const int32_t *ids);
// y (T, N) = x (T, K) w (N, K)^T (+ bias (N)); w of any dtype; y must not alias x.
void tw_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
               const struct tw_tensor *w, const struct tw_tensor *bias);
// n matmuls of the same input: ys[i] = x ws[i]^T (+ biases[i], which may be NULL entries or a
// NULL array) — q, k and v, or gate and up, in one pass of the threads. With pn, x is
// normalised first (tw_prenorm).
void tw_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                 const struct tw_tensor *x, const struct tw_tensor *const *ws,
                 const struct tw_tensor *const *biases, const struct tw_prenorm *pn);
// y (T, N) += x (T, K) w (N, K)^T (+ bias): a projection added to the residual stream. tmp
// (T, N) is scratch for backends that compose it from tw_matmul and tw_add.
void tw_matmul_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                   const struct tw_tensor *w, const struct tw_tensor *bias, struct tw_tensor *tmp);
// y (T, F) = silu(x wg^T) * (x wu^T): LLaMA's gated MLP before its down projection. tmp
// (T, F) is scratch for backends that compose it from tw_matmul_n and tw_swiglu. With pn, x
// is normalised first (tw_prenorm).
void tw_matmul_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                      const struct tw_tensor *wg, const struct tw_tensor *wu,
                      struct tw_tensor *tmp, const struct tw_prenorm *pn);
// y (T, C) += act(x (T, C) wu (F, C)^T + bu) wd (C, F)^T + bd: BERT's MLP added to the
// residual stream (biases may be NULL). u (T, F) is scratch: what it holds afterwards is
// unspecified (a backend may keep the hidden layer there in another dtype); tmp (T, C) is
// scratch for backends that compose it. y may alias x.
void tw_mlp_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                const struct tw_tensor *wu, const struct tw_tensor *bu, enum tw_act act,
                const struct tw_tensor *wd, const struct tw_tensor *bd, struct tw_tensor *u,
                struct tw_tensor *tmp);
// y (T, C) += attention(x wq^T + bq, x wk^T + bk, x wv^T + bv) wo^T + bo: an encoder's
// self-attention sublayer added to the residual stream, over the sequences seqs[0..n) that
// partition x's first rows, each attending to its own rows only (n_past 0, no pages). w = {wq,
// wk, wv, wo}, b their biases (entries, or b itself, may be NULL). s = {q (T, H * D), k, v (T,
// Hkv * D), att (T, H * D)}: f32 scratch that a backend may hold in another dtype, so what it
// holds afterwards is unspecified; seqs[i].k and .v point at the sequence's rows of s[1] and
// s[2] (the composed path's attention reads them there). tmp (T, C): scratch for backends
// that compose the residual add. y may alias x.
void tw_self_attention_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                           const struct tw_tensor *const *w, const struct tw_tensor *const *b,
                           const struct tw_attn_seq *seqs, int n, const struct tw_attn *a,
                           struct tw_tensor *const *s, struct tw_tensor *tmp);
// Over rows of C: y = x / sqrt(mean(x^2) + eps) * w (w may be NULL); y may alias x.
void tw_rmsnorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                const struct tw_tensor *w, float eps);
// Over rows of C: y = (x - mean) / sqrt(var + eps) * w + b; y may alias x.
void tw_layernorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                  const struct tw_tensor *w, const struct tw_tensor *b, float eps);
// In place on x (T, H, head_dim): rotates each head of token t by angle pos[t] * inv_freq.
void tw_rope(struct tw_backend *be, struct tw_tensor *x, const int32_t *pos,
             const struct tw_rope *r);
// out (T, n_head * head_dim) = softmax(q k^T * scale + mask) v per head, with
// q (T, n_head, head_dim) and k, v (S, n_head_kv, head_dim) where S = n_past + T (the cache
// rows up to and including this batch); query head h reads kv head h / (n_head / n_head_kv).
void tw_attention(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                  const struct tw_tensor *k, const struct tw_tensor *v, const struct tw_attn *a);
// tw_attention for a batch of several sequences (continuous batching): q and out (T, ...) as
// there, seqs[0..n) partition the first rows, and each sequence's rows attend to its own cache
// (a->n_past is ignored). Rows past the last sequence's (a recorded step padded to its bound)
// are filler: their output is unspecified.
void tw_attention_seqs(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                       const struct tw_attn_seq *seqs, int n, const struct tw_attn *a);
// Softmax over each row of x, in place.
void tw_softmax(struct tw_backend *be, struct tw_tensor *x);
// y = silu(gate) * up, elementwise; y may alias gate or up.
void tw_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *gate,
               const struct tw_tensor *up);
// y = act(x) elementwise; GELU is the erf form, GELU_TANH the tanh approximation.
void tw_act(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
            enum tw_act act);
// y = a + b elementwise (same shapes); y may alias either.
void tw_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *a,
            const struct tw_tensor *b);
// y (C) from x (T, C): the mean, the first row, the elementwise max or the last row.
void tw_pooling(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                enum tw_pooling mode);
// Row i of y (n, C) pooled from sequence i's rows of x (T, C): seqs[i].row0 and n_rows (> 0;
// the other fields unused), in one launch where the backend can.
void tw_pooling_seqs(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                     const struct tw_attn_seq *seqs, int n, enum tw_pooling mode);
// Each row of x divided by its L2 norm (rows of norm 0 stay 0), in place.
void tw_l2norm(struct tw_backend *be, struct tw_tensor *x);
// Scatters the rows of src (T, C): row t goes to dst + rows[t] * C (a KV cache's slots; rows
// are distinct). rows is a host array, read when the op runs (a graph replay reads it again).
void tw_set_rows(struct tw_backend *be, float *dst, const struct tw_tensor *src,
                 const int32_t *rows);

// A decoder step's new keys and values into their cache: q (T, H, head_dim) and k
// (T, H_kv, head_dim) rotated in place (tw_rope with pos and r), then the rows of k and of v
// (T, H_kv * head_dim) stored at rows[t] of k_cache and v_cache (tw_set_rows).
void tw_rope_store(struct tw_backend *be, struct tw_tensor *q, struct tw_tensor *k,
                   const struct tw_tensor *v, const int32_t *pos, const struct tw_rope *r,
                   float *k_cache, float *v_cache, const int32_t *rows);

// The most values tw_topk returns per row.
#define TW_TOPK_MAX 256

// For each row r of x (R, V), the k (1 <= k <= TW_TOPK_MAX, k <= V) largest values and their
// column ids into the HOST arrays vals and ids (R, k): row r's at vals + r * k, ordered by
// value descending, equal values by id ascending (so of equal values at the boundary the
// lowest ids are kept); NaN counts as -inf and is returned as -inf, other values bit for bit
// (-0 and +0 are equal). What a sampler needs instead of the whole row (tw_sampler_top_n).
// Returns with vals and ids filled: on a device it waits for the ops before it and for its
// own. A device failure leaves them unspecified and is reported by the next tw_backend_sync.
// Not for graphs (a recording that contains it fails).
void tw_topk(struct tw_backend *be, const struct tw_tensor *x, int32_t k, float *vals,
             int32_t *ids);

// ---- graphs: a step of ops recorded once and replayed (CUDA graphs: one launch instead of
// hundreds; the fast CPU backend records the step anew each time and runs it as one region of
// its team, cpu_step.h). Between tw_backend_graph_begin(be, &g, ...) and
// tw_backend_graph_end(be, &g), the caller issues a step's ops. The first time (g == NULL)
// they are recorded and then run; later, with the same ops on the same tensors (shapes and
// memory), the ops only take in their host arrays (ids, positions, rows, sequences: the values
// may change) and the recording is replayed. Every buffer the ops use must live until the end.
// kv_bound bounds every sequence's cache rows in the step, rows_bound its rows (attention is
// recorded for that many). Returns 0; TW_EUNSUPPORTED when the backend has no graphs or could
// not record this step (the ops did not run: run them again without a graph); TW_EDEVICE;
// TW_ENOMEM. tw_backend_graph_free releases a recording (NULL is fine).
int tw_backend_graph_begin(struct tw_backend *be, void **graph, int32_t kv_bound,
                           int32_t rows_bound);
int tw_backend_graph_end(struct tw_backend *be, void **graph);
void tw_backend_graph_free(struct tw_backend *be, void *graph);

// The reference implementations, callable directly (the fast backends fall back to them).
extern const struct tw_backend_ops tw_cpu_ref_ops;

#endif

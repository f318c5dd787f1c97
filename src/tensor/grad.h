// The training engine's ops: the forward passes that keep what their backward needs, and the
// backward passes of the Llama-family decoder (RMSNorm, attention over packed examples,
// SwiGLU, linear layers of any weight dtype, the output projection fused with the
// cross-entropy), with the optimiser's vector ops. RoPE, SwiGLU's forward, the embedding
// lookup and the residual adds are the engine's own ops (tensor/backend.h); RoPE's backward
// is the rotation by the opposite angles, tw_rope at negated positions.
//
// A backend's table of them (struct tw_grad_ops, tw_backend_grad) takes pointers into that
// backend's memory; the functions declared first are the CPU's implementations (all f32,
// rows of contiguous floats, OpenMP threads, OpenBLAS for the GEMMs), and the reference the
// CUDA backend's are tested against.
//
// Conventions: a backward pass ADDS to its input gradients and its parameter gradients (the
// caller zeroes them once per step); an absent parameter gradient (NULL) means the parameter
// is frozen. Row counts are N = B * T tokens of a batch.
#ifndef TW_TENSOR_GRAD_H
#define TW_TENSOR_GRAD_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor/backend.h"
#include "tensor/tensor.h"

// ---- RMSNorm over rows of C: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps).

// y and rstd (N floats, kept for the backward); y may alias x.
void tw_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                    float eps);
// dx += d/dx, dw += d/dw (dw may be NULL) of y's gradient dy; x and rstd as the forward had them.
void tw_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                    const float *rstd, int64_t N, int64_t C);

// ---- Attention over a batch of B rows of T tokens, examples packed in the rows: the query
// at t (row-local) sees the keys j of its row with start[t] <= j <= t (start: the row-local
// index of the first token of t's example), and with window > 0 also t - window < j (Mistral's
// sliding window). q, out (N, H, D); k, v (N, Hkv, D); query head h reads KV head
// h / (H / Hkv). lse (N, H) keeps each row's log-sum-exp of the scaled scores.
struct tw_attn_shape {
    int64_t B, T, H, Hkv, D;
    float scale;
    int32_t window;
    bool lowp;    // bf16 arithmetic is good enough (the weights are bf16 or quantised): a device
                  // may multiply in TF32; the CPU ignores it
    void *keep;   // NULL, or room for bf16 copies of q, k, v (N (H + 2 Hkv) D values) in the
                  // backend's memory: a device that multiplies them in bf16 rounds them into it
                  // in the forward and its backward reads them from there (the same q, k, v)
                  // instead of rounding them again; the CPU ignores it
    bool kept_qk; // keep's q and k hold their copies already (the caller's rope_bf16 wrote
                  // them): the forward rounds only v
    bool kept_v;  // and keep's v (its product wrote it as bf16); with all three kept and
                  // attn_keeps true, the forward and backward read no f32 q, k, v (NULL)
    bool assign;  // the backward writes dq, dk, dv (their old values ignored) instead of adding
                  // to them: the caller's zeroing pass and the device's reads of the old values
                  // saved
    void *out_b;  // with attn_keeps, NULL or room for the output as bf16 (N H D values): the
                  // forward writes it there instead of out (NULL) and the backward reads it
                  // from there (as FlashAttention keeps O in bf16); the CPU ignores it
};
void tw_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                 const int32_t *start, const struct tw_attn_shape *s);
// dq, dk, dv += the gradients for the output gradient dout (= with s->assign), recomputing the
// probabilities from q, k and lse (nothing of size T x T is kept); out is the forward's output.
void tw_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                 const float *k, const float *v, const float *out, const float *lse,
                 const int32_t *start, const struct tw_attn_shape *s);
// The same with plain loops, row by row: the reference the GEMM path above is tested against
// (tw_attn_bwd takes it for rows longer than 2048 tokens, or when scratch memory is short).
void tw_attn_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *q,
                     const float *k, const float *v, const float *out, const float *lse,
                     const int32_t *start, const struct tw_attn_shape *s);

// ---- SwiGLU's backward (the forward is the engine's tw_swiglu): h = silu(g) * u over n
// values gives dg = dh * u * silu'(g), du = dh * silu(g) (written, not added: the first and
// only writer of both in a layer's backward).
void tw_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                   int64_t n);

// ---- Linear layers: y (N, out) = x (N, in) W^T + b, W (out, in) of any dtype (f32 trainable
// weights; bf16 or block-quantised frozen bases, dequantised a tile of rows at a time). Not the
// engine's tw_matmul: for speed that rounds the activations to bf16 (bf16 weights) or int8
// (block weights, few rows), and training keeps them f32 so that the forward is the function
// the backward differentiates.

// y = x W^T (+ b); y must not alias x. Returns 0, or TW_ENOMEM (no memory for the tiles of a
// weight that needs dequantising; y untouched).
int tw_linear_fwd(float *y, const float *x, const struct tw_tensor *w, const float *b, int64_t N);
// dx += dy W, or with add false dx = dy W (dx may be NULL: the input needs no gradient; writing
// spares its first writer a zeroing pass); dw += dy^T x (dw NULL: W frozen;
// else W is f32 of dw's shape); db += the column sums of dy (db may be NULL). Returns 0 or
// TW_ENOMEM (tiles, as tw_linear_fwd; nothing added).
int tw_linear_bwd(float *dx, bool add, float *dw, float *db, const float *dy, const float *x,
                  const struct tw_tensor *w, int64_t N);

// ---- The output projection fused with the log-softmax, over chunks of rows so that the
// (N, V) logits never exist at once.
// For every row t with targets[t] >= 0: logp[t] = log softmax(x_t W^T)[targets[t]] (rows with
// targets[t] < 0 get 0). With coef != NULL, also the backward of L = sum_t coef[t] logp[t]:
// dx += dL/dx, dw += dL/dW (NULL: frozen). *sum gets the sum of logp over the targeted rows
// (NaN or inf when the logits are). Returns 0 or TW_ENOMEM.
int tw_lm_head_logp(const float *x, const struct tw_tensor *w, const int32_t *targets, int64_t N,
                    float *logp, const float *coef, float *dx, float *dw, double *sum);

// ---- The token embedding's backward: dtable[ids[t]] += dy[t] (rows of C).
void tw_embedding_bwd(float *dtable, const int32_t *ids, const float *dy, int64_t N, int64_t C);

// ---- the rest of the CPU's table (plain loops, OpenBLAS).

// C (M, N) = alpha op(A) op(B) + beta C, row-major f32; op(A) is (M, K): A^T when ta (A then
// stored (K, M)), likewise B (K, N) or B^T; lda, ldb, ldc the row strides.
void tw_gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
// Dropout's mask as a hash of (key, element): element i is kept when
// splitmix64(key ^ i * 0xD1B54A32D192ED03) >= p * 2^64, then scaled by 1 / (1 - p);
// y = mask(x), or y += mask(x) when add. The same key gives the same mask on every backend.
void tw_dropout(float *y, const float *x, int64_t n, float p, uint64_t key, bool add);

// One AdamW step of torch.optim.AdamW over n elements: w, its gradient g and moments m, v.
struct tw_adamw_args {
    float step_size; // lr / (1 - beta1^t)
    float beta1, beta2, eps;
    float decay;    // the weight's factor 1 - lr * weight_decay (1: no decay)
    float bc2_sqrt; // sqrt(1 - beta2^t)
};
void tw_adamw_update(float *w, const float *g, float *m, float *v, size_t n,
                     const struct tw_adamw_args *a);

// A tensor of a multi-tensor AdamW step (grad ops' adamw_multi): w, its gradient g and moments
// m, v (n values each, the backend's memory), decay whether the args' decay applies (else 1),
// and wb (else NULL) room for w's bf16 copy, written with the updated weights rounded.
struct tw_adamw_seg {
    float *w;
    const float *g;
    float *m, *v;
    void *wb;
    int64_t n;
    bool decay;
};

// ---- a backend's table. Pointers are the backend's memory (the CPU's: host memory); `be` is
// the backend they run on. Device backends run the ops in order and report failures at
// tw_backend_sync; the CPU's run them at once.
struct tw_grad_ops {
    void (*rmsnorm_fwd)(struct tw_backend *be, float *y, float *rstd, const float *x,
                        const float *w, int64_t N, int64_t C, float eps);
    void (*rmsnorm_bwd)(struct tw_backend *be, float *dx, float *dw, const float *dy,
                        const float *x, const float *w, const float *rstd, int64_t N, int64_t C);
    // start: (B * T) in the backend's memory
    void (*attn_fwd)(struct tw_backend *be, float *out, float *lse, const float *q, const float *k,
                     const float *v, const int32_t *start, const struct tw_attn_shape *s);
    void (*attn_bwd)(struct tw_backend *be, float *dq, float *dk, float *dv, const float *dout,
                     const float *q, const float *k, const float *v, const float *out,
                     const float *lse, const int32_t *start, const struct tw_attn_shape *s);
    void (*swiglu_bwd)(struct tw_backend *be, float *dg, float *du, const float *dh,
                       const float *g, const float *u, int64_t n);
    // w in the backend's memory (tw_model_to_backend); 0 or TW_ENOMEM
    int (*linear_fwd)(struct tw_backend *be, float *y, const float *x, const struct tw_tensor *w,
                      const float *b, int64_t N);
    int (*linear_bwd)(struct tw_backend *be, float *dx, bool add, float *dw, float *db,
                      const float *dy, const float *x, const struct tw_tensor *w, int64_t N);
    // tw_lm_head_logp: targets, logp, coef in the backend's memory; *sum on the host (a
    // device waits for the chunks to give it)
    int (*head_logp)(struct tw_backend *be, const float *x, const struct tw_tensor *w,
                     const int32_t *targets, int64_t N, float *logp, const float *coef, float *dx,
                     float *dw, double *sum);
    // ids: host memory (a device orders the tokens by id there)
    void (*embedding_bwd)(struct tw_backend *be, float *dtable, const int32_t *ids,
                          const float *dy, int64_t N, int64_t C);
    // tw_gemm_f32; lowp: TF32 arithmetic is good enough (a device may use it; the CPU ignores)
    void (*gemm)(struct tw_backend *be, bool lowp, bool ta, bool tb, int64_t M, int64_t N,
                 int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);
    void (*dropout)(struct tw_backend *be, float *y, const float *x, int64_t n, float p,
                    uint64_t key, bool add);
    void (*zero)(struct tw_backend *be, void *p, size_t bytes);
    void (*adamw)(struct tw_backend *be, float *w, const float *g, float *m, float *v, size_t n,
                  const struct tw_adamw_args *a);
    // adamw over nseg tensors at once (seg: host memory), each with its bf16 copy where wb is
    // given (convert's rounding of the new w): a step's optimiser in one launch, the bf16
    // compute's conversions folded in (optional: NULL where a backend has none)
    void (*adamw_multi)(struct tw_backend *be, const struct tw_adamw_seg *seg, int nseg,
                        const struct tw_adamw_args *a);
    // *acc (one double in the backend's memory) += sum of x^2, in double; scale: x *= c
    void (*sumsq)(struct tw_backend *be, const float *x, size_t n, double *acc);
    void (*scale)(struct tw_backend *be, float *x, size_t n, float c);
    // dst (n values of dtype dt: F32 or BF16) = src rounded
    void (*convert)(struct tw_backend *be, void *dst, enum tw_dtype dt, const float *src,
                    size_t n);

    // ---- LoRA fused into the base's products (optional: NULL where a backend has none).
    // A frozen bf16 weight w (out, in) stored in a block of (out + r) rows of (in + r) values
    // (w->nb[0] the row's bytes): W at the top left, bf16 copies of B (out, r) at the top
    // right and of A (r, in) at the bottom left. Then y = x W^T + s (x A^T) B^T is one product
    // [x | s x A^T] [W | B]^T, and dx = dy W + (s dy B) A is [dy | s dy B] [W ; A]: LoRA's
    // passes over y and dx ride along the base's (no dropout: its mask sits between).
    // lora_sync: A's and B's blocks from the f32 adapters (after each optimiser step).
    void (*lora_sync)(struct tw_backend *be, const struct tw_tensor *w, int64_t r, const float *A,
                      const float *B);
    // The input x comes as xc (N, in + r) bf16: x rounded (round_bf16 with ld in + r) in the
    // first in columns, so that the projections of one input (q, k, v; gate, up) round it once.
    // y = x W^T + b + s (x A^T) B^T; lora_fwd writes s x A^T into xc's last r columns, and xa
    // (N, r) bf16 keeps it for the backward.
    int (*lora_fwd)(struct tw_backend *be, float *y, void *xc, const struct tw_tensor *w,
                    const float *b, int64_t r, float s, void *xa, int64_t N);
    // dx (+)= dy W + s (dy B) A; dA += s (dy B)^T x; dB += dy^T xa (xa: lora_fwd's); db += the
    // column sums of dy (NULL: none).
    int (*lora_bwd)(struct tw_backend *be, float *dx, bool add, float *dA, float *dB, float *db,
                    const float *dy, const void *xc, const void *xa, const struct tw_tensor *w,
                    int64_t r, float s, int64_t N);
    // dst (rows, cols; rows ld apart) = src (rows, cols, dense) rounded to bf16.
    void (*round_bf16)(struct tw_backend *be, void *dst, int64_t ld, const float *src,
                       int64_t rows, int64_t cols);

    // ---- bf16 hand-offs (optional: NULL where a backend has none). Full training of a lowp
    // model multiplies bf16 copies of each product's operands; with these the op that makes
    // an input writes the copy itself, once, and the forward keeps it for the backward's dW,
    // instead of an f32 tensor that every product rounds again (q, k and v each rounded the
    // norm's output; each dW rounded its input once more). The values are the same: these are
    // the ops above with their outputs rounded to bf16 (round-to-nearest-even), and the
    // products given the rounded operands; but the products may also hand their outputs on as
    // bf16 (yb, dxb: their f32 sums rounded once, as PyTorch's autocast keeps q, k, v, the gate
    // and up outputs and dh), where f32 activations keep them f32 (TWIN_TRAIN_ACTS=f32). bf16
    // arguments are void * (n bf16 values).
    // rmsnorm_fwd, y as bf16 only
    void (*rmsnorm_fwd_bf16)(struct tw_backend *be, void *y, float *rstd, const float *x,
                             const float *w, int64_t N, int64_t C, float eps);
    // rmsnorm_bwd, and dxb = the new dx rounded (the next products' dy)
    void (*rmsnorm_bwd_bf16)(struct tw_backend *be, float *dx, void *dxb, float *dw,
                             const float *dy, const float *x, const float *w, const float *rstd,
                             int64_t N, int64_t C);
    // x (N, heads, r->head_dim) rotated by positions pos (host memory) as the engine's tw_rope
    // does, written to xb as bf16 (rows ld apart; 0: heads x head_dim), and to x as well when
    // keep (else x is left as it was); with x NULL, xb's bf16 values rotated in place (in f32,
    // rounded once)
    void (*rope_bf16)(struct tw_backend *be, void *xb, int64_t ld, float *x, bool keep,
                      const int32_t *pos, int64_t N, int64_t heads, const struct tw_rope *r);
    // Whether attn_fwd and attn_bwd of shape sh, given a keep, multiply its bf16 q, k, v alone
    // (the fused kernels; sh->keep itself is not read): then the caller may give them there
    // only (kept_qk, kept_v) and pass NULL for the f32 ones
    bool (*attn_keeps)(struct tw_backend *be, const struct tw_attn_shape *sh);
    // h (N, F) = silu(g) * u (the engine's tw_swiglu, in f32 on bf16 g and u) as bf16; g and
    // u rows of F values ld apart (ld 2F, u = g + F: the gate and up products stacked as one)
    void (*swiglu_bf16)(struct tw_backend *be, void *h, const void *g, const void *u, int64_t N,
                        int64_t F, int64_t ld);
    // swiglu_bwd on bf16 dh (N, F), g and u, dg and du as bf16 (written); g, u, dg, du rows of
    // F values ld apart (as swiglu_bf16's g and u)
    void (*swiglu_bwd_bf16)(struct tw_backend *be, void *dg, void *du, const void *dh,
                            const void *g, const void *u, int64_t N, int64_t F, int64_t ld);
    // linear_fwd with x as its bf16 copy xb; w bf16 or block-quantised; y as f32, or (y NULL)
    // yb as bf16: the product's f32 sums (and the bias) rounded once, as PyTorch's autocast
    // keeps a bf16 product's output (the gate and up projections' g and u)
    int (*linear_fwd_bf16)(struct tw_backend *be, float *y, void *yb, const void *xb,
                           const struct tw_tensor *w, const float *b, int64_t N);
    // linear_bwd with x as its bf16 copy xb and dy as f32 (dy, dyb NULL) or as its bf16 copy
    // (dyb; dy then read only for db, and may be NULL without one); dx as f32, or (dx NULL,
    // add false) dxb written as bf16, rounded once (the down projection's dh)
    int (*linear_bwd_bf16)(struct tw_backend *be, float *dx, void *dxb, bool add, float *dw,
                           float *db, const float *dy, const void *dyb, const void *xb,
                           const struct tw_tensor *w, int64_t N);
    // y = a + b over n values, a f32 and b bf16: a product's bf16 output (the o and down
    // projections', as PyTorch's autocast keeps them) added to the f32 residual stream
    void (*add_bf16)(struct tw_backend *be, float *y, const float *a, const void *b, int64_t n);
};

extern const struct tw_grad_ops tw_cpu_grad_ops;

// The training ops of be's device: the CPU's for the CPU backends.
const struct tw_grad_ops *tw_backend_grad(const struct tw_backend *be);

#endif

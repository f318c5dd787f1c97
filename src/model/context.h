// An inference context: one sequence's KV cache and the activations of a batch, planned up
// front and carved out of one allocation; the forward passes of the decoders (incremental
// decoding, cached-prefix reuse) and of the BERT encoders (embeddings, reranker scores).
#ifndef TW_MODEL_CONTEXT_H
#define TW_MODEL_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "tensor/backend.h"

struct tw_ctx_params {
    int32_t n_ctx;   // KV cache positions of each sequence (decoders); 0: min(n_ctx_train, 4096)
    int32_t n_batch; // tokens per forward step; longer inputs go in steps; 0: 512 (encoders:
                     // at least the model's positions; more packs several texts in a pass)
    int32_t n_seq;   // sequences, each with a cache of its own (decoders; continuous
                     // batching); 0: 1
    // The decoders' KV cache is paged: one pool of pages of `page` positions (a power of two;
    // 0: 32) that the sequences take as they grow and give back when truncated (vLLM's
    // PagedAttention, Kwon et al. 2023). n_kv: the pool's positions (rounded up to pages; at
    // least n_ctx); 0: n_seq * n_ctx, so that every sequence can be full at once.
    int32_t n_kv;
    int32_t page;
};

typedef struct tw_ctx tw_ctx;

// A context for model m on backend be (both must outlive it). Returns 0, TW_ENOMEM, or
// TW_EINVAL for bad sizes.
int tw_ctx_new(const struct tw_model *m, struct tw_backend *be, const struct tw_ctx_params *p,
               tw_ctx **out);
void tw_ctx_free(tw_ctx *c);
// Bytes of the context's allocation (KV cache + activations).
size_t tw_ctx_bytes(const tw_ctx *c);
int32_t tw_ctx_n_ctx(const tw_ctx *c);

// ---- decoders

// Runs tokens[0..n) at positions n_past.. and appends them to the cache. logits gets
// (n, n_vocab) floats when all_logits, else the last token's n_vocab (NULL: none). Returns
// 0; TW_ELIMIT when the sequence or the shared pool (n_kv) would overflow (nothing is
// changed); TW_EINVAL for a token id outside the vocabulary (naming it).
int tw_ctx_decode(tw_ctx *c, const int32_t *tokens, int32_t n, float *logits, bool all_logits);
// Tokens in the cache.
int32_t tw_ctx_n_past(const tw_ctx *c);
const int32_t *tw_ctx_tokens(const tw_ctx *c);
// Forgets positions >= n (n <= n_past), giving back the pages past them. (A sequence that
// shares pages, tw_ctx_seq_share, keeps fewer when n falls inside a shared page: the pages
// before it; tw_ctx_seq_past says how many.)
void tw_ctx_truncate(tw_ctx *c, int32_t n);
// Evaluates a whole prompt, reusing the longest prefix already in the cache (at most n - 1
// tokens, so that the last one is run and its logits, n_vocab floats, come out). *reused (may
// be NULL) gets the number of cached tokens kept.
int tw_ctx_prefill(tw_ctx *c, const int32_t *tokens, int32_t n, float *logits, int32_t *reused);

// ---- logits left on the GPU: a step's logits rows are read back whole (tw_ctx_logits) or
// as each row's largest values (tw_ctx_top, for tw_sampler_sample_top), instead of being
// copied to the caller's buffer by every step. On the CPU they are in that buffer already.

// With keep, steps given a logits buffer compute the logits but leave them in the backend's
// memory (a GPU's): they are the "last step's" that the two functions below read.
void tw_ctx_keep_logits(tw_ctx *c, bool keep);
// Whether the logits live in device memory (a GPU backend), where the two below save copies.
bool tw_ctx_logits_on_device(const tw_ctx *c);
// The last step's logits rows (one per run, or every row: as the step was asked) into
// logits. Returns 0, TW_ESTATE before any step with logits, or TW_EDEVICE.
int tw_ctx_logits(tw_ctx *c, float *logits);
// The k (1..TW_TOPK_MAX) largest logits of each of the last step's rows and their ids (vals,
// ids: rows x k, descending, ties by ascending id). Returns 0 or an error.
int tw_ctx_top(tw_ctx *c, int32_t k, float *vals, int32_t *ids);

// ---- several sequences (tw_ctx_params.n_seq): the functions above work on sequence 0

int32_t tw_ctx_n_seq(const tw_ctx *c);
int32_t tw_ctx_seq_past(const tw_ctx *c, int32_t seq);
const int32_t *tw_ctx_seq_tokens(const tw_ctx *c, int32_t seq);
void tw_ctx_seq_truncate(tw_ctx *c, int32_t seq, int32_t n);
// tw_ctx_decode on sequence seq.
int tw_ctx_decode_seq(tw_ctx *c, int32_t seq, const int32_t *tokens, int32_t n, float *logits,
                      bool all_logits);

// The paged cache: pages of `page` positions, `pages` in the pool, `free` of them free.
struct tw_ctx_kv {
    int32_t page, pages, free;
};
void tw_ctx_kv(const tw_ctx *c, struct tw_ctx_kv *out);
// The free pages that sequence seq must take to add n tokens (a decode fails with TW_ELIMIT,
// changing nothing, when the pool has fewer). Truncating a sequence gives its pages back.
int32_t tw_ctx_seq_pages_needed(const tw_ctx *c, int32_t seq, int32_t n);
// Empties sequence dst's cache and gives it the first n positions of src's (n <= src's past)
// as far as they fill whole pages, which the two then share (no copy, no new page: a prompt
// prefix that several sequences have is cached once). Returns the positions dst has.
int32_t tw_ctx_seq_share(tw_ctx *c, int32_t dst, int32_t src, int32_t n);

// A sequence's tokens in one step of tw_ctx_decode_runs.
struct tw_ctx_run {
    int32_t seq;
    int32_t n; // >= 1
    const int32_t *tokens;
};

// One forward step over several sequences at once (their matmuls share each weight read):
// run i appends its tokens to sequence runs[i].seq's cache. A sequence appears at most once;
// the runs hold at most n_batch tokens in all. logits (may be NULL) gets n rows of n_vocab
// floats: the logits after each run's last token. Returns 0; TW_ELIMIT when a run overflows
// its sequence's cache or the runs overflow the batch; TW_EINVAL for a bad run or token id
// (nothing is changed on an error).
int tw_ctx_decode_runs(tw_ctx *c, const struct tw_ctx_run *runs, int n, float *logits);

// Perplexity of a text's tokens: they are cut into chunks of the context's length, each run
// from an empty cache, and every token after a chunk's first is scored by the logits of the
// one before it. *nll gets the summed negative log-likelihood (natural log), *count the
// number of scored tokens; exp(*nll / *count) is the perplexity. Clears the cache.
int tw_ctx_perplexity(tw_ctx *c, const int32_t *tokens, int32_t n, double *nll, int32_t *count);

// ---- encoders

// hidden (n, n_embd) = the encoder's last hidden states for one sequence; type_ids may be
// NULL (all 0). n must be <= the model's max positions (TW_ELIMIT otherwise).
int tw_ctx_encode(tw_ctx *c, const int32_t *ids, const int32_t *type_ids, int32_t n,
                  float *hidden);
// The sentence embedding of one tokenised text (with its special tokens) as the model's
// pooling config says (mean / CLS / max / last, then L2 normalisation when configured):
// n_embd floats into out.
int tw_ctx_embed(tw_ctx *c, const int32_t *ids, int32_t n, float *out);
// The embeddings (n rows of n_embd floats into out) of n token sequences (ids[i], lens[i]
// tokens, each at most the model's positions) as tw_ctx_embed gives them one by one, packed
// into passes of up to the context's n_batch tokens (tw_ctx_params.n_batch: 256 texts of 128
// tokens in one pass with 32768). Returns 0, or an error naming the text.
int tw_ctx_embed_batch(tw_ctx *c, const int32_t *const *ids, const int32_t *lens, int n,
                       float *out);
// The classifier's logits (n_labels floats) for one encoded pair (BertForSequenceClassification:
// CLS -> pooler dense + tanh -> classifier).
int tw_ctx_classify(tw_ctx *c, const int32_t *ids, const int32_t *type_ids, int32_t n, float *out);

// ---- a model with its backend and context, opened together

// What a command or pipeline that runs one model holds: the model, a backend, and one
// context. On the CPU, m is the model as opened (weights mmapped); on a GPU, m is its copy in
// device memory and host the model as opened (m shares its configuration and tokenizer).
struct tw_session {
    struct tw_model *m;
    struct tw_backend *be;
    tw_ctx *c;
    struct tw_model *host; // NULL on the CPU
};

// Opens the model at path (a Hugging Face folder or a GGUF file), a backend and a context of
// n_ctx positions (0: the model's, at most 4096). device: "cpu" (threads threads, 0: every
// CPU), "cuda" or "cuda:N" (GPU N), "auto" (GPU 0 when there is one, else the CPU); NULL
// reads $TWIN_DEVICE, and "auto" when it is unset. On failure nothing stays open. Returns 0
// or an error naming path or the device.
int tw_session_open_on(const char *path, const char *device, int threads, int32_t n_ctx,
                       struct tw_session *s);
// tw_session_open_on with device NULL.
int tw_session_open(const char *path, int threads, int32_t n_ctx, struct tw_session *s);
// Closes what tw_session_open opened; a zeroed session is fine.
void tw_session_close(struct tw_session *s);

#endif

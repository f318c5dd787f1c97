// Text in, vectors and scores out, for the BERT encoders: sentence embeddings as
// sentence-transformers computes them (tokenise with [CLS]/[SEP], truncate to max_seq_length,
// pool, normalise), and cross-encoder scores for (query, document) pairs as its CrossEncoder
// does (the pair's segments truncated longest-first as HF's fast tokenizers do, the logit,
// and its sigmoid).
#ifndef TW_MODEL_EMBED_H
#define TW_MODEL_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "base/vec.h"
#include "model/context.h"
#include "model/model.h"

// The ids (int32_t) of one text as the embedder sees it: [CLS] tokens [SEP], at most
// cfg.max_seq in all.
int tw_embed_tokenize(const struct tw_model *m, const char *text, size_t len, tw_vec *ids);
// The embedding (n_embd floats) of text.
int tw_embed_text(tw_ctx *c, const struct tw_model *m, const char *text, size_t len, float *out);

// The embeddings of n texts (rows of n_embd floats into out), as tw_embed_text gives them
// one by one, packed into as few passes as the context's batch allows (tw_ctx_embed_batch);
// tokens (may be NULL) gets the number of tokens embedded added to it.
int tw_embed_texts(tw_ctx *c, const struct tw_model *m, const char *const *texts,
                   const size_t *lens, int n, float *out, int64_t *tokens);

// The pair encoding [CLS] q [SEP] d [SEP] with token types 0 then 1, truncated to max_seq.
int tw_rerank_tokenize(const struct tw_model *m, const char *q, size_t qlen, const char *d,
                       size_t dlen, tw_vec *ids, tw_vec *types);
// The relevance logit of d for q (the classifier's first label).
int tw_rerank_score(tw_ctx *c, const struct tw_model *m, const char *q, size_t qlen, const char *d,
                    size_t dlen, float *logit);

#endif

// RAG inference (`twin ask`, the server's /rag): a question goes through self-query (author
// and category filters, from the LLM's validated JSON or the deterministic name matcher),
// query expansion (n rewrites from the LLM), retrieval per query (sparse, dense or hybrid,
// with the filters), fusion across the queries, reranking (a cross-encoder, else the fused
// score), prompt assembly within the context budget with numbered sources, and generation
// through the model's chat template. Every step's inputs, outputs and latency go into one
// JSON trace, which tw_rag_ask also writes to the home's traces table.
#ifndef TW_RAG_ASK_H
#define TW_RAG_ASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/str.h"
#include "model/context.h"
#include "model/generate.h"
#include "rag/retrieve.h"
#include "text/chat.h"

// The LLM as the pipeline calls it: a reply to one user message under a system message.
// The default (tw_rag's llm_fn NULL) renders them with the model's chat template and runs
// tw_generate on tw_rag's llm session; a caller may put any generator here (the server's
// scheduler; a test's scripted replies). n_prompt and n_gen (may be NULL) get token counts.
typedef int (*tw_rag_llm_fn)(void *ud, const char *system, const char *user,
                             const struct tw_gen_params *p, tw_gen_fn stream, void *stream_ud,
                             tw_str *reply, int32_t *n_prompt, int32_t *n_gen);

struct tw_rag {
    tw_retriever *r;             // required
    struct tw_session *llm;      // the answering model; NULL: retrieval only (no LLM steps)
    enum tw_chat_family family;  // its chat template
    struct tw_session *reranker; // a cross-encoder; NULL: rank by the fused score
    tw_rag_llm_fn llm_fn;        // NULL: the llm session through its template
    void *llm_ud;
    // With llm_fn: the model whose template and context the prompt must fit (NULL: not
    // measured) and its context's positions.
    const struct tw_model *llm_model;
    int32_t llm_ctx;
    const char *model_id; // for the trace: the model's path or registry name
};

struct tw_rag_options {
    uint32_t k;               // sources kept (default 3, as the reference)
    int expand;               // queries after expansion, the question included (default 3;
                              // 1: off)
    bool self_query;          // extract filters from the question (default on)
    const char *author;       // an explicit author filter (overrides self-query)
    const char *category;     // an explicit category filter
    enum tw_search_mode mode; // per query (default hybrid: sparse without a dense index)
    uint32_t depth;           // results per query and list (default 20)
    uint32_t rerank_depth;    // fused candidates sent to the reranker (default 12)
    struct tw_gen_params gen; // the answer's sampling (tw_rag_options_default: the
                              // reference's: 150 tokens, temperature 0.01, top-p 0.9,
                              // repetition penalty 1.1)
    tw_gen_fn stream;         // the answer's text as it is generated (NULL: none)
    void *stream_ud;
    bool trace; // write the trace to the home (default on; an evaluation of many queries
                // turns it off)
};

void tw_rag_options_default(struct tw_rag_options *o);

struct tw_rag_source {
    struct tw_rag_chunk chunk;
    double fused;  // the fused retrieval score
    double rerank; // the cross-encoder's logit (NAN without a reranker)
};

struct tw_rag_result {
    char *answer;                  // NULL without an LLM (retrieval only)
    struct tw_rag_source *sources; // n_sources, best first
    size_t n_sources;
    json_t *trace; // the whole trace (owned); its "id" is the traces row
    int64_t trace_id;
    int32_t prompt_tokens, completion_tokens;
};

// Runs the pipeline for question and writes the trace to h (which must be the retriever's
// home). A failure after the trace started is traced too (status = the message). Returns 0
// (res filled; free with tw_rag_result_free) or an error naming the step.
int tw_rag_ask(struct tw_home *h, const struct tw_rag *rag, const char *question,
               const struct tw_rag_options *opt, struct tw_rag_result *res);
void tw_rag_result_free(struct tw_rag_result *res);

// The system message of the answering step and the user message built from sources (the
// numbered context, then the question): what tw_rag_ask sends, exposed for tests and for
// the server. Appends to *out. Returns 0 or TW_ENOMEM.
extern const char *const tw_rag_system_prompt;
int tw_rag_user_prompt(const char *question, const struct tw_rag_source *sources, size_t n,
                       tw_str *out);

#endif

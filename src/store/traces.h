// Prompt monitoring: every traced request (`twin ask`, the server's RAG and completion routes)
// is one row of the traces table: what was asked and answered, by which models, the token
// counts and the total latency as columns, and each step's detail (filters, expanded queries,
// retrieved chunks and scores per stage, the final prompt, per-step latencies) as JSON.
// `twin traces` reads them; the dashboard and the evaluation read them later.
#ifndef TW_STORE_TRACES_H
#define TW_STORE_TRACES_H

#include <stdint.h>

#include "store/home.h"

struct tw_trace {
    int64_t id;         // assigned by tw_trace_put
    int64_t created_at; // unix milliseconds (tw_trace_put: 0 means now)
    const char *kind;   // "ask", "rag", ...
    const char *question;
    const char *answer;              // NULL when it failed before answering
    const char *model, *embed_model; // NULL: none
    int64_t prompt_tokens, completion_tokens;
    double total_ms;
    const char *status; // "ok" or the error's message
    const char *detail; // a JSON object's text
};

// Writes t (id and, when 0, created_at are set on t). detail must be a JSON object.
// Returns 0, TW_EINVAL (detail is not a JSON object), TW_EDB.
int tw_trace_put(struct tw_home *h, struct tw_trace *t);

// Calls fn for the newest `limit` traces (0: all), newest first, kind NULL: every kind; the
// strings are valid during the call; a non-zero return from fn stops and is returned.
int tw_traces_list(struct tw_home *h, const char *kind, int64_t limit,
                   int (*fn)(void *ud, const struct tw_trace *t), void *ud);
// Calls fn once for trace id. Returns 0, TW_ENOENT (no such trace), TW_EDB, or fn's return.
int tw_trace_get(struct tw_home *h, int64_t id, int (*fn)(void *ud, const struct tw_trace *t),
                 void *ud);

#endif

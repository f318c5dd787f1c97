// Retrieval evaluation: labelled query sets (hand-written ones read from JSON Lines, and a
// deterministic set generated from the corpus' own sentences) and the metrics over ranked
// results, recall@k and mean reciprocal rank, at the level of documents: a retrieved chunk is
// relevant when its document is one of the query's relevant documents. The runner that sends
// the queries through the retriever is `twin eval retrieval` (cli/cmd_eval.c).
#ifndef TW_EVAL_RETRIEVAL_H
#define TW_EVAL_RETRIEVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tw_eval_query {
    char *id;          // "hand-001", "gen-0042"
    char *question;    // what is asked
    char **relevant;   // keys of the relevant documents: a document is relevant when its URI
    size_t n_relevant; // contains one of them ("1823_james_monroe" for the SOTU files)
    char *author;      // the author the question names (full name), NULL: none named
};

// Reads a query set from JSON Lines, one object per line: {"id": S, "question": S,
// "relevant": [S, ...] (at least one), "author": S or null (optional)}; blank lines and lines
// starting with '#' are skipped. *out (free with tw_eval_queries_free) gets *n queries.
// Errors name the file, the line and the key: "q.jsonl:12: \"relevant\": expected a
// non-empty array of strings". Returns 0, TW_EIO, TW_EFORMAT, TW_ENOMEM.
int tw_eval_queries_load(const char *path, struct tw_eval_query **out, size_t *n);
void tw_eval_queries_free(struct tw_eval_query *q, size_t n);

// A document the generator may draw from.
struct tw_eval_doc {
    const char *uri;    // relevant key of the questions drawn from it (the whole URI)
    const char *author; // full name, or NULL
    const char *text;
    size_t len;
};

// Generates `want` questions (fewer when the documents have too few usable sentences) from
// the documents, deterministically for a seed: sentences are drawn at random (seeded), and a
// usable one (long enough, with enough distinctive words) becomes a question by templates
// over its content words, with the document as the relevant one and its author as the
// question's author. Ids are "gen-0001", ... Returns 0 or TW_ENOMEM.
int tw_eval_generate(const struct tw_eval_doc *docs, size_t n_docs, size_t want, uint64_t seed,
                     struct tw_eval_query **out, size_t *n);

// The cut-offs reported.
#define TW_EVAL_NK 4
extern const uint32_t tw_eval_ks[TW_EVAL_NK]; // 1, 3, 5, 10

// Metrics accumulated over queries.
struct tw_eval_acc {
    size_t n;                      // queries scored
    double recall_sum[TW_EVAL_NK]; // sum of per-query recall@k
    double rr_sum;                 // sum of reciprocal ranks (0 when none relevant)
};

// Scores one query's ranked results: uris[0..n) are the documents of the retrieved chunks,
// best first (a document may repeat). recall@k = the fraction of the query's relevant keys
// matched by some document in the first k; the reciprocal rank is 1 / the rank of the first
// relevant chunk (0 when none in the n). Adds to acc.
void tw_eval_score(const struct tw_eval_query *q, const char *const *uris, size_t n,
                   struct tw_eval_acc *acc);
// The means: recall[i] at tw_eval_ks[i], and the MRR (all 0 for n = 0).
void tw_eval_means(const struct tw_eval_acc *acc, double recall[TW_EVAL_NK], double *mrr);

#endif

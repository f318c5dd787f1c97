// Retrieval over the feature store: the newest feature run's BM25 index, vector index and
// embedding model, opened once and searched many times (`twin search`, `twin ask`, the
// server), with author and category filters applied inside both searches, reciprocal rank
// fusion of ranked lists, and the chunks' documents held in memory so that a filter costs a
// table lookup, not a query.
#ifndef TW_RAG_RETRIEVE_H
#define TW_RAG_RETRIEVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/vec.h"
#include "store/home.h"

// Reciprocal rank fusion's constant (Cormack, Clarke & Buettcher, SIGIR 2009).
#define TW_RRF_K 60

enum tw_search_mode { TW_SEARCH_HYBRID, TW_SEARCH_DENSE, TW_SEARCH_SPARSE };
// "hybrid", "dense", "sparse".
const char *tw_search_mode_name(enum tw_search_mode m);
// The mode called name (one of those three); false when name is none of them.
bool tw_search_mode_parse(const char *name, enum tw_search_mode *out);

typedef struct tw_retriever tw_retriever;
struct tw_authors; // rag/selfquery.h

// Opens the newest feature run of home h (which must stay open while the retriever lives):
// the BM25 index, and when the run has an embedding model, the vector index and the model
// (threads: its CPU threads, 0 every CPU). Returns 0, TW_ESTATE when there is no feature run
// (the message says to run `twin features`), or an error naming what failed to load.
int tw_retriever_open(struct tw_home *h, int threads, tw_retriever **out);
void tw_retriever_free(tw_retriever *r);

// What the retriever holds.
struct tw_retriever_info {
    int64_t run_id, version;
    size_t chunks, documents, authors;
    const char *embed_model; // the embedding model's path; NULL: BM25 only
};
void tw_retriever_info(const tw_retriever *r, struct tw_retriever_info *out);
// The full names of the authors of the indexed documents (n of them; the retriever owns
// them), for the self-query's matcher.
const char *const *tw_retriever_authors(const tw_retriever *r, size_t *n);
// The self-query's name matcher over those names (built once at open; its indexes are the
// names' above), owned by the retriever.
const struct tw_authors *tw_retriever_matcher(const tw_retriever *r);

// Which chunks may be returned: documents by any of authors (full names, ASCII case ignored;
// n_authors 0: any author) and of category (NULL: any).
struct tw_rag_filter {
    const char *const *authors;
    size_t n_authors;
    const char *category;
};

struct tw_rag_hit {
    int64_t chunk; // the chunk's seq (its point id in both indexes)
    double score;  // BM25, cosine, or a fused sum of reciprocal ranks
};

// The depth best chunks for query by BM25 (sparse) or by the embedding model and the vector
// index (dense), among those the filter admits (NULL: all). out (room for depth) gets them
// best first, *n their number. Dense search on a run without a model is TW_ESTATE.
// dense_ms (may be NULL) gets the milliseconds spent embedding the query. Not thread-safe
// (the embedder has one context).
int tw_retriever_sparse(tw_retriever *r, const char *query, const struct tw_rag_filter *f,
                        uint32_t depth, struct tw_rag_hit *out, size_t *n);
int tw_retriever_dense(tw_retriever *r, const char *query, const struct tw_rag_filter *f,
                       uint32_t depth, struct tw_rag_hit *out, size_t *n, double *embed_ms);

// One query's lists: the caller's buffers, and what tw_retriever_query put in them.
struct tw_rag_lists {
    struct tw_rag_hit *sparse, *dense; // room for depth each
    size_t n_sparse, n_dense;          // 0 for a list the mode does not run
    enum tw_search_mode used;          // the mode that ran: hybrid is sparse without a dense index
    double embed_ms;                   // embedding the query (0 without a dense search)
};

// One query in mode: its sparse and dense lists (as the mode asks) into l, and its ranking
// into out (a tw_vec of struct tw_rag_hit, cleared first): the two lists fused by RRF under
// hybrid, else the one list. Returns 0 or an error (as the searches').
int tw_retriever_query(tw_retriever *r, const char *query, enum tw_search_mode mode,
                       const struct tw_rag_filter *f, uint32_t depth, struct tw_rag_lists *l,
                       tw_vec *out);

// Reciprocal rank fusion: each chunk scores the sum over the lists of 1 / (TW_RRF_K + rank)
// (rank from 1) for each list it appears in; out (a tw_vec of struct tw_rag_hit, cleared
// first) gets every chunk once, best first (ties: smaller chunk first). Returns 0 or
// TW_ENOMEM.
int tw_rrf_fuse(const struct tw_rag_hit *const *lists, const size_t *lens, size_t n_lists,
                tw_vec *out);

// A chunk with its document, for display and prompts. Strings are tw_malloc'd (free with
// tw_rag_chunk_clear).
struct tw_rag_chunk {
    int64_t chunk;
    char document_id[37];
    char *author, *title, *category, *uri, *text;
    int64_t published_at;
};
// Fills *out for chunk seq. Returns 0, TW_ENOENT (not in the feature store), TW_EDB,
// TW_ENOMEM.
int tw_retriever_chunk(tw_retriever *r, int64_t seq, struct tw_rag_chunk *out);
void tw_rag_chunk_clear(struct tw_rag_chunk *c);

// ---- one-shot search (`twin search`)

struct tw_search_options {
    enum tw_search_mode mode; // hybrid falls back to sparse without a dense index
    uint32_t k;               // 0: 10
    const char *author;       // full name (ASCII case ignored), NULL: any
    const char *category;     // NULL: any
};

struct tw_search_hit {
    int64_t chunk; // chunk seq
    double score;  // BM25, cosine, or the reciprocal-rank-fusion sum
    char document_id[37];
    char *author, *title, *category, *text; // tw_malloc'd
};

// The k best chunks for query with the options' filters: hybrid is both lists, 5k deep,
// fused by RRF. *hits (free with tw_search_hits_free) gets *n of them, best first; *used
// the mode that ran. Returns 0, TW_ESTATE (dense asked of a run without a model), or an
// error.
int tw_search(tw_retriever *r, const char *query, const struct tw_search_options *opt,
              struct tw_search_hit **hits, size_t *n, enum tw_search_mode *used);
void tw_search_hits_free(struct tw_search_hit *hits, size_t n);

#endif

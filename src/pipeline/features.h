// The feature pipeline (`twin features`; search over its output is rag/retrieve.h): the
// warehouse's documents cleaned (text/clean.h) and chunked (text/chunk.h) per category, the
// chunks put into a BM25 index and, when an embedding model is given, embedded into a vector
// index (index/index.h) with their payload (author, category, platform, document, date).
// Cleaned documents and chunks are kept in twin.db; both indexes are blobs of the home. Each
// run is a row of feature_runs naming what it read (the warehouse change it reached, the
// documents it processed), the model and the parameters, and the blobs it wrote: a versioned
// artifact with lineage. Runs are incremental from the warehouse's change log; a different
// embedding model starts a new index version and embeds every chunk again.
#ifndef TW_PIPELINE_FEATURES_H
#define TW_PIPELINE_FEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/home.h"

struct tw_features_options {
    const char *model; // a BERT-family embedder (HF folder or GGUF); NULL: BM25 only
    int threads;       // 0: every CPU
    bool full;         // process every document again
    bool progress;     // a progress bar on stderr
    uint32_t hnsw_m;   // 0: 16
    uint32_t hnsw_ef;  // ef_construction; 0: 200
};

struct tw_features_summary {
    int64_t run_id, version;
    int64_t processed, deleted, unchanged; // documents
    int64_t chunks_added, chunks_removed, chunks_total, documents_total;
    bool dense; // an embedding model was used
    double seconds;
};

// Runs the pipeline on the home. Everything it writes to twin.db is one transaction: a
// failed or killed run leaves the previous run's features as they were. Returns 0 or an
// error naming the input (the model, a document) and what went wrong.
int tw_features_run(struct tw_home *h, const struct tw_features_options *opt,
                    struct tw_features_summary *out);

#endif

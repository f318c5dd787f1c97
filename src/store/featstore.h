// The feature store's registry rows as other layers read them: the newest feature run (its
// index version, the warehouse change it reached, the embedding model, the BM25 and vector
// index blobs). The pipeline that writes them is pipeline/features.c.
#ifndef TW_STORE_FEATSTORE_H
#define TW_STORE_FEATSTORE_H

#include <stdint.h>

#include "store/blob.h"
#include "store/home.h"

struct tw_feature_run {
    int64_t id; // 0: no run yet
    int64_t version, change_seq;
    char *model; // the embedding model's path (tw_malloc'd), NULL: BM25 only
    char bm25[TW_BLOB_HEX], vectors[TW_BLOB_HEX]; // vectors "" without a model
};

// The newest run into *out (id 0 when there is none). Returns 0 or TW_EDB.
int tw_feature_run_latest(struct tw_home *h, struct tw_feature_run *out);
void tw_feature_run_free(struct tw_feature_run *r);

#endif

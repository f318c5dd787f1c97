// The data warehouse in the home's twin.db: authors, documents and the change log (schema in
// store/schema.c). Documents are keyed by their source URI; putting a document whose URI is
// there already updates it when the content changed and does nothing otherwise; every insert,
// update and delete appends a row to the change log, which the feature pipeline reads to work
// incrementally. The caller groups writes in transactions (tw_wh_begin / tw_wh_commit).
#ifndef TW_STORE_WAREHOUSE_H
#define TW_STORE_WAREHOUSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sha256.h"
#include "store/home.h"

#define TW_UUID_LEN 36 // "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx"

// A fresh random (version 4) UUID from the system's random source.
void tw_uuid_v4(char out[TW_UUID_LEN + 1]);

int tw_wh_begin(struct tw_home *h);
int tw_wh_commit(struct tw_home *h);
void tw_wh_rollback(struct tw_home *h); // no-op outside a transaction

struct tw_wh_author {
    char id[TW_UUID_LEN + 1];
    const char *full_name, *first_name, *last_name; // valid during the callback
    int64_t n_documents;
};

// The author named full_name (ASCII case ignored), created when absent (first name: all but
// the last word; last name: the last word). *created (may be NULL) tells which. An empty name
// is TW_EINVAL.
int tw_wh_author_ensure(struct tw_home *h, const char *full_name, char id[TW_UUID_LEN + 1],
                        bool *created);
// Calls fn for each author, by full name, with their document counts.
int tw_wh_authors(struct tw_home *h, int (*fn)(void *ud, const struct tw_wh_author *a), void *ud);

// A document as stored. On reads, the strings are valid during the callback.
struct tw_wh_doc {
    char id[TW_UUID_LEN + 1];
    int64_t seq; // small stable number (MinHash ids)
    char author_id[TW_UUID_LEN + 1];
    const char *author;                            // full name (reads only)
    const char *category, *platform, *uri, *title; // title may be NULL
    const char *content;
    size_t content_len;
    char sha256[2 * TW_SHA256_LEN + 1];
    const char *metadata; // JSON object text; NULL on writes means "{}"
    int64_t published_at; // 0: unknown
    int64_t fetched_at;
    const char *extractor;
};

enum tw_wh_put {
    TW_WH_INSERTED,
    TW_WH_UPDATED,   // same URI, new content (or metadata/title)
    TW_WH_UNCHANGED, // same URI, same content: nothing written
};

// Inserts d (id and seq are assigned: written back to d) or updates the document with d's
// URI, keeping its id. minhash (n slots; NULL: none) is stored beside it. *result says what
// happened. sha256 must be the content's.
int tw_wh_doc_put(struct tw_home *h, struct tw_wh_doc *d, const uint32_t *minhash, size_t n,
                  enum tw_wh_put *result);
// Calls fn with the document with this id, or with this URI, or whose id starts with this
// prefix (at least 8 characters, unique): TW_ENOENT naming it when none, TW_EINVAL when a
// prefix is ambiguous. fn's return is returned.
int tw_wh_doc_get(struct tw_home *h, const char *id_or_uri,
                  int (*fn)(void *ud, const struct tw_wh_doc *d), void *ud);
// The id, seq, author_id and sha256 of the document with this URI / this content hash / this
// seq (the string fields of out are set to NULL): 0, or TW_ENOENT (no message set: not
// finding one is the common case).
int tw_wh_doc_find_uri(struct tw_home *h, const char *uri, struct tw_wh_doc *out);
int tw_wh_doc_find_sha256(struct tw_home *h, const char *sha256, struct tw_wh_doc *out);
int tw_wh_doc_find_seq(struct tw_home *h, int64_t seq, struct tw_wh_doc *out);
// Deletes a document (and logs it); TW_ENOENT when absent.
int tw_wh_doc_delete(struct tw_home *h, const char *id);

struct tw_wh_filter {
    const char *author;   // full name, NULL: any
    const char *category; // NULL: any
    int64_t limit;        // 0: no limit
    bool with_content;    // read content too (else content is NULL)
};
// Calls fn for each matching document, by author, then published_at, then URI. A non-zero
// return from fn stops and is returned.
int tw_wh_docs(struct tw_home *h, const struct tw_wh_filter *f,
               int (*fn)(void *ud, const struct tw_wh_doc *d), void *ud);
// Counts: documents and authors.
int tw_wh_count(struct tw_home *h, int64_t *documents, int64_t *authors);

// Calls fn(ud, seq, sig) for every stored MinHash signature of n slots (other sizes skipped).
int tw_wh_minhashes(struct tw_home *h, size_t n,
                    int (*fn)(void *ud, int64_t seq, const uint32_t *sig), void *ud);

struct tw_wh_change {
    int64_t seq;
    const char *document_id;
    const char *op; // "insert", "update", "delete"
    int64_t at;
};
// Calls fn for each change after seq `after`, in order; *last (may be NULL) gets the last seq.
int tw_wh_changes(struct tw_home *h, int64_t after,
                  int (*fn)(void *ud, const struct tw_wh_change *c), void *ud, int64_t *last);

// Ingest runs: a row at the start (*id), the summary JSON at the end.
int tw_wh_ingest_begin(struct tw_home *h, const char *sources_json, int64_t *id);
int tw_wh_ingest_end(struct tw_home *h, int64_t id, const char *summary_json);

#endif

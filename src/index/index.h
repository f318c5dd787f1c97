// The vector index of the feature store (twin's own, in place of the reference's Qdrant):
// points (a 64-bit id, a vector, a payload) searched by exact scan (flat) or by an HNSW graph
// (Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
// Hierarchical Navigable Small World graphs", 2016/2018: M, ef_construction, ef), under
// cosine, dot-product or L2 distance, with f32 vectors or int8-quantised vectors whose
// candidates are rescored in f32. Payload filters (must / should / must-not of equality,
// sets and ranges) are applied during the graph search, so a selective filter still returns k
// results. One file per index: versioned header, checksums, atomic save, mmap on load.
#ifndef TW_INDEX_INDEX_H
#define TW_INDEX_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tw_metric {
    TW_METRIC_COSINE, // vectors normalised on insert; score = dot product (1 = same)
    TW_METRIC_DOT,    // score = dot product
    TW_METRIC_L2,     // score = -squared L2 distance (higher is nearer, like the others)
};

enum tw_index_kind {
    TW_INDEX_FLAT, // exact scan
    TW_INDEX_HNSW,
};

struct tw_index_options {
    enum tw_index_kind kind;
    enum tw_metric metric;
    uint32_t dim;             // 1..65536
    bool int8;                // store int8-quantised vectors too and search on them, rescoring
                              // the candidates with the f32 vectors
    uint32_t m;               // HNSW: links per node on layers > 0 (16); layer 0 has 2 * m
    uint32_t ef_construction; // HNSW: candidate list while inserting (200)
    uint64_t seed;            // HNSW: level generator (42)
};
struct tw_index_options tw_index_options_default(uint32_t dim);

// ---- payload: a small set of named fields per point, each a string or an integer (dates
// are Unix seconds); the filter language matches on them.
enum tw_pvalue_type { TW_PV_STR, TW_PV_INT };
struct tw_pfield {
    const char *key;
    enum tw_pvalue_type type;
    const char *s; // TW_PV_STR
    int64_t i;     // TW_PV_INT
};

// A condition on one field: equality (one value), membership (any of n values), or an
// integer range [lo, hi] (inclusive; use INT64_MIN / INT64_MAX for open ends). A point
// without the field fails the condition.
enum tw_cond_op { TW_COND_EQ, TW_COND_IN, TW_COND_RANGE };
struct tw_cond {
    const char *key;
    enum tw_cond_op op;
    enum tw_pvalue_type type; // of the values (EQ, IN)
    const char *const *strs;  // EQ: strs[0]; IN: n of them
    const int64_t *ints;
    size_t n;
    int64_t lo, hi; // RANGE
};
// A filter matches a point when every `must` holds, at least one `should` holds (when there
// are any), and no `must_not` holds. NULL filter: every point.
struct tw_filter {
    const struct tw_cond *must, *should, *must_not;
    size_t n_must, n_should, n_must_not;
};

typedef struct tw_index tw_index;

struct tw_hit {
    uint64_t id;
    float score; // higher is nearer (see enum tw_metric)
};

// A new empty index. Returns 0, TW_EINVAL (bad options), TW_ENOMEM.
int tw_index_new(const struct tw_index_options *opt, tw_index **out);
void tw_index_free(tw_index *ix);

// Inserts or replaces point id with vector v (dim floats, finite; a zero vector under cosine
// is TW_EINVAL) and its payload (copied). Replacing keeps no trace of the old vector in
// results. Not thread-safe with other calls on ix (tw_index_add_batch parallelises).
int tw_index_upsert(tw_index *ix, uint64_t id, const float *v, const struct tw_pfield *payload,
                    size_t n_fields);
// n points at once (vs: n * dim floats; payloads[i] with n_fields[i] fields, or NULL), built
// with n_threads threads (0: every CPU). The result's quality equals serial inserts'.
int tw_index_add_batch(tw_index *ix, size_t n, const uint64_t *ids, const float *vs,
                       const struct tw_pfield *const *payloads, const size_t *n_fields,
                       int n_threads);
// Deletes point id: it is never returned again. TW_ENOENT when absent.
int tw_index_delete(tw_index *ix, uint64_t id);
// Rebuilds the storage without the deleted points (the graph is repaired or rebuilt so that
// recall holds). Ids are kept.
int tw_index_compact(tw_index *ix, int n_threads);

// The k nearest live points to q that match filter (may be NULL), best first, into hits
// (room for k); *n_hits gets how many (< k only when fewer points match). ef: HNSW's search
// list (max(ef, k) is used; 0: max(64, k)); flat ignores it. Thread-safe with other
// searches (not with writes).
int tw_index_search(const tw_index *ix, const float *q, uint32_t k, uint32_t ef,
                    const struct tw_filter *filter, struct tw_hit *hits, uint32_t *n_hits);

// The k nearest to q among the points ids[0..n) (ids not in the index are skipped), by exact
// f32 scores: the search for a caller that already knows which points a filter admits and
// that they are few (scoring them all beats walking a graph where most nodes fail the
// filter). Same output as tw_index_search. Thread-safe with other searches.
int tw_index_search_among(const tw_index *ix, const float *q, uint32_t k, const uint64_t *ids,
                          size_t n, struct tw_hit *hits, uint32_t *n_hits);

// Counts: live points, deleted points awaiting compaction.
size_t tw_index_count(const tw_index *ix);
size_t tw_index_deleted(const tw_index *ix);
struct tw_index_options tw_index_get_options(const tw_index *ix);
// The payload field key of point id (valid until the next write), or NULL.
const struct tw_pfield *tw_index_payload(const tw_index *ix, uint64_t id, const char *key);
// Bytes of memory the index holds (vectors, graph, payloads), for the benchmarks.
size_t tw_index_memory(const tw_index *ix);

// Writes the index to path atomically (a temporary file, fsync, rename): a header with magic
// "TWIX", a format version, the options and section sizes, then the sections, each with a
// CRC-32C or SHA-256 checksum. Returns 0 or TW_EIO / TW_ENOMEM naming the path.
int tw_index_save(const tw_index *ix, const char *path);
// Loads an index saved by tw_index_save, mapping the file (vectors and graph read in place
// where the layout allows). A truncated or corrupted file, a wrong magic or version, a
// checksum mismatch, or sizes that contradict each other is TW_EFORMAT naming the path and
// the section, never a crash. The loaded index gives the same results as the saved one, and
// accepts further writes.
int tw_index_load(const char *path, tw_index **out);

#endif

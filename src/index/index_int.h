// Internals of the vector index shared by its files: the distance kernels (a scalar reference,
// AVX2 and AVX-512 versions chosen at run time), the index struct, and the CRC-32C used by the
// file format. Nothing here is public API.
#ifndef TW_INDEX_INDEX_INT_H
#define TW_INDEX_INDEX_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/map.h"
#include "index/index.h"
#include "base/cpu.h"

// ---- distance kernels over n elements (any n >= 0)
typedef float (*tw_ix_f32_fn)(const float *a, const float *b, size_t n);
typedef int32_t (*tw_ix_i8_fn)(const int8_t *a, const int8_t *b, size_t n);
struct tw_ix_kernels {
    tw_ix_f32_fn dot; // sum a[i] * b[i]
    tw_ix_f32_fn l2;  // sum (a[i] - b[i])^2
    tw_ix_i8_fn dot8; // sum a[i] * b[i] in int32 (exact; n <= 65536 cannot overflow)
};
// The kernels of isa (lowered to what the CPU has); scalar ones are the reference.
void tw_ix_kernels_get(enum tw_cpu_isa isa, struct tw_ix_kernels *k);
// Filled by distance_avx2.c / distance_avx512.c; false when the compiler cannot build them.
bool tw_ix_kernels_avx2(struct tw_ix_kernels *k);
bool tw_ix_kernels_avx512(struct tw_ix_kernels *k);

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), in software; crc starts at 0.
uint32_t tw_ix_crc32c(uint32_t crc, const void *data, size_t n);

// ---- the index
struct tw_ix_payload {
    size_t n;
    struct tw_pfield *f; // keys and strings owned
};

struct tw_ix_vpool; // visited sets for concurrent searches

struct tw_index {
    struct tw_index_options opt;
    struct tw_ix_kernels k;
    size_t n, cap; // slots used / allocated (deleted slots included)
    size_t n_deleted;
    float *vecs;      // (cap, dim) f32, normalised under cosine
    float *norm2;     // (cap) squared norms (L2 on int8)
    int8_t *qv;       // (cap, dim) int8 when opt.int8
    float *qscale;    // (cap) x ~ qv * qscale
    uint64_t *ids;    // (cap)
    uint8_t *deleted; // (cap) 0/1
    uint8_t *levels;  // (cap) HNSW level of each node
    uint32_t *link0;  // (cap, 1 + 2m) level 0 lists, one block per node: [count, 2m ids]
    uint32_t **links; // (cap) per node above level 0: per level [count, m]; NULL at level 0
    struct tw_ix_payload *payloads; // (cap)
    tw_map slot_of;                 // live id -> slot
    uint32_t entry;                 // HNSW entry point (valid when has_entry)
    int max_level;
    bool has_entry;
    uint64_t rng; // level generator state
    struct tw_ix_vpool *pool;
};

#define TW_IX_MAX_LEVEL 32

// Sizes of a node's link blocks in words: level 0's, and the one of its upper levels.
static inline size_t tw_ix_link0_words(const struct tw_index *ix)
{
    return (size_t)1 + 2 * (size_t)ix->opt.m;
}
static inline size_t tw_ix_upper_words(const struct tw_index *ix, int level)
{
    return (size_t)level * (1 + (size_t)ix->opt.m);
}
// A node's list at level: [count, ids...].
static inline uint32_t *tw_ix_links_at(const struct tw_index *ix, uint32_t node, int level)
{
    if (level == 0)
        return ix->link0 + (size_t)node * tw_ix_link0_words(ix);
    return ix->links[node] + (size_t)(level - 1) * (1 + ix->opt.m);
}

// index.c: grows every per-slot array to hold at least n slots.
int tw_ix_reserve(struct tw_index *ix, size_t n);
// Sets slot's derived data (norm, int8 copy) from its f32 vector.
void tw_ix_derive(struct tw_index *ix, size_t slot);
int tw_ix_alloc_core(const struct tw_index_options *opt, struct tw_index **out);

#endif

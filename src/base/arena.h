// tw_arena, the bump allocator: many small allocations carved from large chunks (obtained with
// tw_malloc) and released all together, by a reset or by rewinding to a mark. Allocations too
// big for a chunk (over a quarter of the chunk size, which also bounds the space a chunk
// wastes at its end to a quarter) get a chunk of their own.
// Chunks of the standard size are kept for reuse after a rewind or reset; tw_arena_free
// releases everything.
#ifndef TW_ARENA_H
#define TW_ARENA_H

#include <stddef.h>

struct tw_arena_chunk;

typedef struct tw_arena {
    struct tw_arena_chunk *head;  // newest chunk in use; each links to the one before it
    struct tw_arena_chunk *cur;   // the chunk small allocations are carved from (or NULL)
    struct tw_arena_chunk *spare; // standard chunks released by a rewind, for reuse
    size_t chunk_size;            // data bytes of a standard chunk
    size_t used;                  // bytes handed out, alignment padding included
} tw_arena;

// A point to rewind to (see tw_arena_mark). No typedef: the name is the function's.
struct tw_arena_mark {
    struct tw_arena_chunk *head, *cur;
    size_t off;  // cur's fill at the mark
    size_t used; // the arena's tw_arena_used at the mark
};

#define TW_ARENA_DEFAULT_CHUNK ((size_t)64 * 1024)

// An empty arena whose standard chunks hold chunk_size bytes (0: TW_ARENA_DEFAULT_CHUNK).
// Allocates nothing.
void tw_arena_init(tw_arena *a, size_t chunk_size);
// Frees every chunk (spares included); the arena is empty and reusable afterwards.
void tw_arena_free(tw_arena *a);

// size bytes aligned to align (a power of two, asserted), uninitialised, valid until the
// arena is reset, rewound past it, or freed. size 0 gives a valid pointer to no bytes.
// NULL on failure, with TW_ENOMEM or TW_EOVERFLOW recorded; the arena is then unchanged.
void *tw_arena_alloc(tw_arena *a, size_t size, size_t align);
// n elements of size bytes each, aligned to align; NULL (TW_EOVERFLOW) when n * size overflows.
void *tw_arena_alloc_array(tw_arena *a, size_t n, size_t size, size_t align);
// A copy of the n bytes at s followed by a NUL, in the arena (s may be NULL when n is 0).
// NULL on failure, as above.
char *tw_arena_strndup(tw_arena *a, const char *s, size_t n);

// Bytes handed out since the last reset, alignment padding included.
size_t tw_arena_used(const tw_arena *a);

// The current point. tw_arena_rewind(a, mark) releases everything allocated after it: chunks
// of the standard size become spares, bigger ones are freed. A mark stays valid until a
// rewind to an earlier mark, a reset or a free.
struct tw_arena_mark tw_arena_mark(const tw_arena *a);
void tw_arena_rewind(tw_arena *a, struct tw_arena_mark mark);
// Releases every allocation (as a rewind to the empty arena); standard chunks are kept.
void tw_arena_reset(tw_arena *a);

#endif

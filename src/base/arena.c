// Implements arena.h: a list of chunks, newest first, each a header followed by its data;
// allocations bump the fill of the current chunk, and a mark (newest chunk, current chunk and
// its fill) is enough to undo everything after it, because only chunks newer than the mark's
// newest, and the mark's current chunk past its fill, can have received allocations since.
#include "base/arena.h"

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"

struct tw_arena_chunk {
    struct tw_arena_chunk *prev; // the next older chunk (or the next spare)
    size_t cap;                  // data bytes
    size_t used;                 // data bytes handed out, padding included
};

// The data starts this far into a chunk, so it is aligned as malloc's blocks are.
#define HDR_SIZE                                                                           \
    ((sizeof(struct tw_arena_chunk) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * \
     _Alignof(max_align_t))

static char *chunk_data(struct tw_arena_chunk *c)
{
    return (char *)c + HDR_SIZE;
}

void tw_arena_init(tw_arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->cur = NULL;
    a->spare = NULL;
    a->chunk_size = chunk_size ? chunk_size : TW_ARENA_DEFAULT_CHUNK;
    a->used = 0;
}

static void free_list(struct tw_arena_chunk *c)
{
    while (c) {
        struct tw_arena_chunk *prev = c->prev;
        tw_free(c);
        c = prev;
    }
}

void tw_arena_free(tw_arena *a)
{
    free_list(a->head);
    free_list(a->spare);
    tw_arena_init(a, a->chunk_size);
}

// The offset in c where size bytes aligned to align would start, or SIZE_MAX if they do not
// fit in what is left of c.
static size_t fit(struct tw_arena_chunk *c, size_t size, size_t align)
{
    uintptr_t at = (uintptr_t)(chunk_data(c) + c->used);
    size_t pad = (size_t)(-at & (align - 1));
    size_t left = c->cap - c->used;
    if (pad > left || size > left - pad)
        return SIZE_MAX;
    return c->used + pad;
}

static void *take(tw_arena *a, struct tw_arena_chunk *c, size_t off, size_t size)
{
    a->used += off + size - c->used;
    c->used = off + size;
    return chunk_data(c) + off;
}

// A chunk with cap data bytes: a spare when cap is the standard size and one is kept.
static struct tw_arena_chunk *new_chunk(tw_arena *a, size_t cap)
{
    struct tw_arena_chunk *c = a->spare;
    if (c && cap == a->chunk_size) {
        a->spare = c->prev;
    } else {
        size_t bytes;
        if (tw_add_overflow(HDR_SIZE, cap, &bytes)) {
            tw_error_set(TW_EOVERFLOW, "arena: chunk of %zu bytes: size overflow", cap);
            return NULL;
        }
        c = tw_malloc(bytes);
        if (!c) {
            tw_error_set(TW_ENOMEM, "arena: cannot allocate a chunk of %zu bytes", bytes);
            return NULL;
        }
        c->cap = cap;
    }
    c->used = 0;
    c->prev = a->head;
    a->head = c;
    return c;
}

void *tw_arena_alloc(tw_arena *a, size_t size, size_t align)
{
    assert(align != 0 && (align & (align - 1)) == 0);
    size_t off;
    if (a->cur && (off = fit(a->cur, size, align)) != SIZE_MAX)
        return take(a, a->cur, off, size);
    size_t worst; // room that holds the allocation wherever the data starts
    if (tw_add_overflow(size, align - 1, &worst)) {
        tw_error_set(TW_EOVERFLOW, "arena: %zu bytes aligned to %zu: size overflow", size, align);
        return NULL;
    }
    // A big allocation gets a chunk of its own and the current chunk stays current, so the
    // space left in it is not lost.
    bool own = worst > a->chunk_size / 4;
    struct tw_arena_chunk *c = new_chunk(a, own ? worst : a->chunk_size);
    if (!c)
        return NULL;
    if (!own)
        a->cur = c;
    off = fit(c, size, align);
    assert(off != SIZE_MAX);
    return take(a, c, off, size);
}

void *tw_arena_alloc_array(tw_arena *a, size_t n, size_t size, size_t align)
{
    size_t bytes;
    if (tw_mul_overflow(n, size, &bytes)) {
        tw_error_set(TW_EOVERFLOW, "arena: %zu elements of %zu bytes: size overflow", n, size);
        return NULL;
    }
    return tw_arena_alloc(a, bytes, align);
}

char *tw_arena_strndup(tw_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX) {
        tw_error_set(TW_EOVERFLOW, "arena: string of %zu bytes: size overflow", n);
        return NULL;
    }
    char *d = tw_arena_alloc(a, n + 1, 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

size_t tw_arena_used(const tw_arena *a)
{
    return a->used;
}

struct tw_arena_mark tw_arena_mark(const tw_arena *a)
{
    return (struct tw_arena_mark){
        .head = a->head, .cur = a->cur, .off = a->cur ? a->cur->used : 0, .used = a->used
    };
}

void tw_arena_rewind(tw_arena *a, struct tw_arena_mark mark)
{
    while (a->head != mark.head) {
        struct tw_arena_chunk *c = a->head;
        assert(c); // else the mark was not taken on this arena, or was already undone
        a->head = c->prev;
        if (c->cap == a->chunk_size) {
            c->prev = a->spare;
            a->spare = c;
        } else {
            tw_free(c);
        }
    }
    a->cur = mark.cur;
    if (a->cur)
        a->cur->used = mark.off;
    a->used = mark.used;
}

void tw_arena_reset(tw_arena *a)
{
    tw_arena_rewind(a, (struct tw_arena_mark){ 0 });
}

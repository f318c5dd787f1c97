// Memory: the allocation functions every structure of twin goes through, overflow-checked
// size arithmetic, and the test hooks (allocation-failure injection, a live-allocation count)
// that let tests prove a structure survives a failed allocation without leaking.
#ifndef TW_MEM_H
#define TW_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// malloc/calloc/realloc/free, counted. They return NULL on failure (or when a failure is
// injected) and never abort. tw_realloc(p, 0) behaves as tw_realloc(p, 1).
void *tw_malloc(size_t n);
void *tw_calloc(size_t n, size_t size);
void *tw_realloc(void *p, size_t n);
void tw_free(void *p);

// n * size bytes, or NULL when the product overflows or the allocation fails.
void *tw_malloc_array(size_t n, size_t size);
// Copies of a string (NUL-terminated) and of n bytes (adds a NUL); free with tw_free.
char *tw_strdup(const char *s);
char *tw_strndup(const char *s, size_t n);

// Asks the kernel to back [p, p + n) with transparent huge pages where it can (Linux, THP in
// "madvise" or "always" mode): for large arrays read at random, such as an index's vectors,
// it saves a TLB miss per access. Only whole 2 MiB pages inside the range are advised; a
// hint, never an error.
void tw_mem_hint_huge(void *p, size_t n);

// Overflow-checked arithmetic: return true (and leave *out untouched) on overflow.
static inline bool tw_mul_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out);
}
static inline bool tw_add_overflow(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out);
}

// Test hook: the k-th allocation (tw_malloc, tw_calloc or tw_realloc) made by this thread
// from now on fails, once (k >= 1); k <= 0 switches injection off.
void tw_mem_fail_after(long k);
// Test hook: allocations made by any thread and not yet freed.
long tw_mem_live(void);
// Test and benchmark hook: when on, every tw_realloc of this thread moves the block (new
// allocation, copy, free), as an allocator that can never grow in place would. It measures
// what a growth policy costs in copies, and makes a stale pointer into a moved block fail
// loudly under AddressSanitizer.
void tw_mem_force_move(bool on);

#endif

// Implements mem.h over the C library's allocator, with a per-thread failure countdown and a
// process-wide count of live blocks (relaxed atomics: it is a statistic, not a lock).
#include "base/mem.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static _Thread_local long fail_countdown; // 0: off; 1: the next allocation fails
static _Thread_local bool force_move;
static atomic_long live_blocks;

static bool inject_failure(void)
{
    if (fail_countdown <= 0)
        return false;
    return --fail_countdown == 0;
}

void tw_mem_fail_after(long k)
{
    fail_countdown = k > 0 ? k : 0;
}

void tw_mem_force_move(bool on)
{
    force_move = on;
}

long tw_mem_live(void)
{
    return atomic_load_explicit(&live_blocks, memory_order_relaxed);
}

static void *counted(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
    return p;
}

void *tw_malloc(size_t n)
{
    if (inject_failure())
        return NULL;
    return counted(malloc(n ? n : 1));
}

void *tw_calloc(size_t n, size_t size)
{
    if (inject_failure())
        return NULL;
    if (n == 0 || size == 0)
        n = size = 1;
    return counted(calloc(n, size));
}

void *tw_realloc(void *p, size_t n)
{
    if (inject_failure())
        return NULL;
    if (!p)
        return counted(malloc(n ? n : 1));
    if (force_move) {
        void *q = malloc(n ? n : 1);
        if (!q)
            return NULL;
        size_t old = malloc_usable_size(p);
        memcpy(q, p, old < n ? old : n);
        free(p);
        return q;
    }
    return realloc(p, n ? n : 1);
}

void tw_free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    free(p);
}

void *tw_malloc_array(size_t n, size_t size)
{
    size_t bytes;
    if (tw_mul_overflow(n, size, &bytes))
        return NULL;
    return tw_malloc(bytes);
}

char *tw_strndup(const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *d = tw_malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *tw_strdup(const char *s)
{
    return tw_strndup(s, strlen(s));
}

void tw_mem_hint_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + n) & ~(huge - 1);
    if (p && e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

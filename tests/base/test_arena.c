// Tests for tw_arena (src/base/arena.h): alignment and non-overlap of many allocations, big
// allocations in their own chunks, mark/rewind and reset (memory reused, big chunks freed),
// strndup, overflow checks, and allocation failures at every point (NULL, no leak).
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/arena.h"
#include "base/mem.h"
#include "check.h"

#define NALLOC 2000

struct block {
    unsigned char *p;
    size_t size;
    unsigned char fill;
};

// Random sizes (some over the chunk size) and alignments up to 4096, each block filled with
// its own byte; afterwards every block still holds its byte, so none overlapped.
static void test_alignment(void)
{
    static struct block b[NALLOC];
    uint64_t seed = 7;
    tw_arena a;
    tw_arena_init(&a, 1024);
    size_t misaligned = 0, corrupt = 0;
    for (int i = 0; i < NALLOC; i++) {
        uint64_t r = check_rand(&seed);
        size_t align = (size_t)1 << (r % 13);
        size_t size = r >> 40 & 7 ? (r >> 20) % 200 : (r >> 20) % 3000;
        b[i] = (struct block){ tw_arena_alloc(&a, size, align), size, (unsigned char)i };
        if (!b[i].p) {
            CHECK(b[i].p != NULL);
            break;
        }
        misaligned += ((uintptr_t)b[i].p & (align - 1)) != 0;
        memset(b[i].p, b[i].fill, size);
    }
    for (int i = 0; i < NALLOC && b[i].p; i++)
        for (size_t k = 0; k < b[i].size; k++)
            corrupt += b[i].p[k] != b[i].fill;
    CHECK_EQ_INT(misaligned, 0);
    CHECK_EQ_INT(corrupt, 0);
    tw_arena_free(&a);
}

static void test_used_and_big(void)
{
    long live0 = tw_mem_live();
    tw_arena a;
    tw_arena_init(&a, 1024);
    CHECK_EQ_INT(tw_mem_live(), live0); // init allocates nothing
    char *p1 = tw_arena_alloc(&a, 10, 1);
    CHECK_EQ_INT(tw_mem_live(), live0 + 1);
    CHECK_EQ_INT(tw_arena_used(&a), 10);
    char *p2 = tw_arena_alloc(&a, 6, 1);
    CHECK(p2 == p1 + 10); // bumped
    char *p3 = tw_arena_alloc(&a, 8, 8);
    CHECK(((uintptr_t)p3 & 7) == 0 && p3 >= p2 + 6 && p3 < p2 + 6 + 8);
    CHECK_EQ_INT(tw_arena_used(&a), (size_t)(p3 + 8 - p1)); // padding counts

    // Bigger than the chunk: a chunk of its own; the current chunk keeps filling.
    size_t used0 = tw_arena_used(&a);
    char *big = tw_arena_alloc(&a, 5000, 16);
    CHECK(big != NULL && ((uintptr_t)big & 15) == 0);
    memset(big, 1, 5000);
    CHECK_EQ_INT(tw_mem_live(), live0 + 2);
    CHECK(tw_arena_used(&a) >= used0 + 5000);
    char *p4 = tw_arena_alloc(&a, 1, 1);
    CHECK(p4 == p3 + 8);

    // Over a quarter of the chunk and not fitting in what is left: a chunk of its own too.
    char *q = tw_arena_alloc(&a, 800, 1); // fits: bumped
    CHECK(q == p4 + 1);
    CHECK(tw_arena_alloc(&a, 300, 1) != NULL);
    CHECK_EQ_INT(tw_mem_live(), live0 + 3);
    CHECK(tw_arena_alloc(&a, 1, 1) == q + 800);

    // A small allocation that does not fit opens a new standard chunk (826 of 1024 used).
    CHECK(tw_arena_alloc(&a, 150, 1) == q + 801);
    CHECK_EQ_INT(tw_mem_live(), live0 + 3);
    CHECK(tw_arena_alloc(&a, 150, 1) != NULL);
    CHECK_EQ_INT(tw_mem_live(), live0 + 4);

    void *z = tw_arena_alloc(&a, 0, 1); // size 0: a valid pointer
    CHECK(z != NULL);
    tw_arena_free(&a);
    CHECK_EQ_INT(tw_mem_live(), live0);
    CHECK_EQ_INT(tw_arena_used(&a), 0);
    CHECK(tw_arena_alloc(&a, 3, 1) != NULL); // reusable after free
    tw_arena_free(&a);

    tw_arena_init(&a, 0);
    CHECK_EQ_INT(a.chunk_size, TW_ARENA_DEFAULT_CHUNK);
    tw_arena_free(&a);
}

static void test_mark_rewind(void)
{
    long live0 = tw_mem_live();
    tw_arena a;
    tw_arena_init(&a, 1024);
    char *keep = tw_arena_strndup(&a, "keep", 4);
    struct tw_arena_mark m1 = tw_arena_mark(&a);
    size_t used1 = tw_arena_used(&a);
    char *first = tw_arena_alloc(&a, 100, 1);
    for (int i = 0; i < 50; i++) // several standard chunks and two big ones
        CHECK(tw_arena_alloc(&a, 200, 8) != NULL);
    CHECK(tw_arena_alloc(&a, 4000, 1) != NULL);
    struct tw_arena_mark m2 = tw_arena_mark(&a);
    char *second = tw_arena_alloc(&a, 100, 1);
    CHECK(tw_arena_alloc(&a, 9000, 1) != NULL);
    long live_full = tw_mem_live();

    tw_arena_rewind(&a, m2); // the big chunk made after m2 is freed
    CHECK_EQ_INT(tw_mem_live(), live_full - 1);
    CHECK(tw_arena_alloc(&a, 100, 1) == second);

    tw_arena_rewind(&a, m1);
    CHECK_EQ_INT(tw_arena_used(&a), used1);
    CHECK_EQ_STR(keep, "keep");
    long live_spares = tw_mem_live(); // standard chunks kept as spares
    CHECK(live_spares > live0 + 1);
    CHECK(tw_arena_alloc(&a, 100, 1) == first);
    for (int i = 0; i < 50; i++)
        CHECK(tw_arena_alloc(&a, 200, 8) != NULL);
    CHECK_EQ_INT(tw_mem_live(), live_spares); // the spares were reused, nothing new

    tw_arena_reset(&a);
    CHECK_EQ_INT(tw_arena_used(&a), 0);
    CHECK_EQ_INT(tw_mem_live(), live_spares);
    tw_arena_rewind(&a, tw_arena_mark(&a)); // a rewind to now changes nothing
    CHECK_EQ_INT(tw_arena_used(&a), 0);
    tw_arena_free(&a);
    CHECK_EQ_INT(tw_mem_live(), live0);
}

static void test_strndup_and_overflow(void)
{
    tw_arena a;
    tw_arena_init(&a, 64);
    char *s = tw_arena_strndup(&a, "ab\0cd", 5);
    CHECK(s && memcmp(s, "ab\0cd", 6) == 0);
    char *e = tw_arena_strndup(&a, NULL, 0);
    CHECK(e && e[0] == '\0');
    char *t = tw_arena_strndup(&a, "truncate", 5);
    CHECK_EQ_STR(t, "trunc");

    size_t used = tw_arena_used(&a);
    tw_error_clear();
    CHECK(tw_arena_strndup(&a, "x", SIZE_MAX) == NULL);
    CHECK_EQ_INT(tw_error_code(), TW_EOVERFLOW);
    tw_error_clear();
    CHECK(tw_arena_alloc(&a, SIZE_MAX - 4, 16) == NULL);
    CHECK_EQ_INT(tw_error_code(), TW_EOVERFLOW);
    tw_error_clear();
    CHECK(tw_arena_alloc(&a, SIZE_MAX - 4, 1) == NULL); // the chunk header overflows
    CHECK_EQ_INT(tw_error_code(), TW_EOVERFLOW);
    tw_error_clear();
    CHECK(tw_arena_alloc_array(&a, SIZE_MAX / 2, 3, 1) == NULL);
    CHECK_EQ_INT(tw_error_code(), TW_EOVERFLOW);
    CHECK_EQ_INT(tw_arena_used(&a), used);
    uint32_t *arr = tw_arena_alloc_array(&a, 10, sizeof(uint32_t), _Alignof(uint32_t));
    CHECK(arr && ((uintptr_t)arr & 3) == 0);
    tw_arena_free(&a);
}

// One run of a fixed sequence with the k-th allocation failing: the failing call returns NULL
// with TW_ENOMEM and leaves the used count as it was; nothing leaks. *failed: it hit.
static void run_failing(long k, bool *failed)
{
    static const char text[1000];
    long live0 = tw_mem_live();
    tw_arena a;
    tw_arena_init(&a, 256);
    tw_mem_fail_after(k);
    struct tw_arena_mark m = tw_arena_mark(&a);
    for (int i = 0; i < 60; i++) {
        if (i == 30)
            tw_arena_rewind(&a, m);
        if (i == 20)
            m = tw_arena_mark(&a);
        size_t size = i % 7 == 0 ? 1000 : 40, used = tw_arena_used(&a);
        tw_error_clear();
        char *p = i % 2 ? tw_arena_alloc(&a, size, 16) : tw_arena_strndup(&a, text, size);
        if (!p) {
            *failed = true;
            CHECK_EQ_INT(tw_error_code(), TW_ENOMEM);
            CHECK_EQ_INT(tw_arena_used(&a), used);
        } else {
            memset(p, 0, size);
        }
    }
    tw_mem_fail_after(0);
    tw_arena_free(&a);
    CHECK_EQ_INT(tw_mem_live(), live0);
}

static void test_alloc_failures(void)
{
    long k = 1;
    for (;; k++) {
        bool failed = false;
        run_failing(k, &failed);
        if (!failed)
            break;
    }
    CHECK(k > 10);
}

int main(void)
{
    test_alignment();
    test_used_and_big();
    test_mark_rewind();
    test_strndup_and_overflow();
    test_alloc_failures();
    return check_report("arena");
}

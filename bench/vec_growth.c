// bench/vec_growth: what tw_vec's growth and shrink policies cost.
// Table 1: N appends under growth by +1, +8, x1.5 and x2 — reallocations, element copies
// (each reallocation copies the live elements if the block moves: the policy's cost), how
// many reallocations really moved the block, and the time on a quiet heap and on a busy one
// (a small allocation after each append, so the block can rarely grow in place).
// Table 2: the same with every reallocation moving the block (tw_mem_force_move), at N/10
// appends: what the copies cost when the allocator cannot grow in place.
// Table 3: alternating push/pop at a capacity boundary under shrink-at-half versus
// shrink-at-a-quarter, with realloc and with forced moves.
// glibc's mmap threshold is fixed high so that every block comes from the heap in every run:
// otherwise the first runs pay page faults for fresh mappings and the later ones do not.
// Usage: vec_growth [N] [OPS] [BOUNDARY]
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "base/mem.h"
#include "base/vec.h"

struct result {
    uint64_t reallocs, copies, moves, moved_elems;
    double seconds;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Notes a capacity change: the policy copies the live elements; a new address means the
// allocator really moved them.
static void observe(struct result *r, const tw_vec *v, size_t cap0, const void *data0, size_t len0)
{
    if (v->cap == cap0)
        return;
    r->reallocs++;
    r->copies += len0;
    if (v->data != data0 && data0) {
        r->moves++;
        r->moved_elems += len0;
    }
}

static int appends(const struct tw_vec_policy *p, size_t n, int busy, struct result *r)
{
    tw_vec v;
    void **junk = busy ? calloc(n, sizeof *junk) : NULL;
    if (busy && !junk)
        return -1;
    tw_vec_init_policy(&v, sizeof(uint64_t), p);
    *r = (struct result){ 0 };
    double t0 = now();
    for (uint64_t i = 0; i < n; i++) {
        size_t cap0 = v.cap, len0 = v.len;
        void *data0 = v.data;
        if (tw_vec_push(&v, &i))
            return -1;
        observe(r, &v, cap0, data0, len0);
        if (busy)
            junk[i] = tw_malloc(16);
    }
    r->seconds = now() - t0;
    tw_vec_free(&v);
    if (busy) {
        for (size_t i = 0; i < n; i++)
            tw_free(junk[i]);
        free(junk);
    }
    return 0;
}

static int boundary(const struct tw_vec_policy *p, size_t ops, size_t at, struct result *r)
{
    tw_vec v;
    tw_vec_init_policy(&v, sizeof(uint64_t), p);
    if (tw_vec_resize(&v, at))
        return -1;
    *r = (struct result){ 0 };
    double t0 = now();
    for (size_t i = 0; i < ops; i++) {
        size_t cap0 = v.cap, len0 = v.len;
        void *data0 = v.data;
        uint64_t x = i;
        if ((i % 2 == 0 ? tw_vec_push(&v, &x) : tw_vec_pop(&v, NULL)) != 0)
            return -1;
        observe(r, &v, cap0, data0, len0);
    }
    r->seconds = now() - t0;
    tw_vec_free(&v);
    return 0;
}

int main(int argc, char **argv)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    size_t ops = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    size_t at = argc > 3 ? strtoull(argv[3], NULL, 10) : 4096;
    static const struct tw_vec_policy plus1 = { .grow_add = 1, .min_cap = 1 };
    static const struct tw_vec_policy plus8 = { .grow_add = 8, .min_cap = 1 };
    static const struct tw_vec_policy x15 = { .grow_num = 3, .grow_den = 2, .min_cap = 1 };
    static const struct tw_vec_policy x2 = { .grow_num = 2, .grow_den = 1, .min_cap = 1 };
    static const struct tw_vec_policy half = {
        .grow_num = 2, .grow_den = 1, .shrink_div = 2, .min_cap = 8
    };
    static const struct tw_vec_policy quarter = {
        .grow_num = 2, .grow_den = 1, .shrink_div = 4, .min_cap = 8
    };
    const struct {
        const char *name;
        const struct tw_vec_policy *p;
    } grow[] = { { "+1", &plus1 }, { "+8", &plus8 }, { "x1.5", &x15 }, { "x2", &x2 } };

    printf("vec_growth: %zu appends of 8-byte elements\n", n);
    printf("%-6s %10s %16s %12s %10s %14s %14s\n", "growth", "reallocs", "copies", "copies/elem",
           "moves", "quiet heap ms", "busy heap ms");
    struct result quiet[4], busy;
    for (int g = 0; g < 4; g++) {
        if (appends(grow[g].p, n, 0, &quiet[g]) || appends(grow[g].p, n, 1, &busy)) {
            fprintf(stderr, "vec_growth: out of memory\n");
            return 1;
        }
        printf("%-6s %10llu %16llu %12.2f %10llu %14.1f %14.1f\n", grow[g].name,
               (unsigned long long)quiet[g].reallocs, (unsigned long long)quiet[g].copies,
               (double)quiet[g].copies / (double)n, (unsigned long long)busy.moves,
               quiet[g].seconds * 1e3, busy.seconds * 1e3);
    }

    size_t small = n / 10;
    printf("\nvec_growth: %zu appends, every reallocation moves the block\n", small);
    printf("%-6s %10s %16s %12s %10s\n", "growth", "reallocs", "copies", "copies/elem", "ms");
    for (int g = 0; g < 4; g++) {
        struct result f;
        tw_mem_force_move(true);
        int rc = appends(grow[g].p, small, 0, &f);
        tw_mem_force_move(false);
        if (rc) {
            fprintf(stderr, "vec_growth: out of memory\n");
            return 1;
        }
        printf("%-6s %10llu %16llu %12.2f %10.1f\n", grow[g].name, (unsigned long long)f.reallocs,
               (unsigned long long)f.copies, (double)f.copies / (double)small, f.seconds * 1e3);
    }

    printf("\nvec_growth: %zu alternating push/pop with %zu elements at a capacity boundary\n",
           ops, at);
    printf("%-16s %10s %16s %10s %14s\n", "shrink", "reallocs", "copies", "ms", "forced-move ms");
    struct result rh, rq, fh, fq;
    int rc = boundary(&half, ops, at, &rh) || boundary(&quarter, ops, at, &rq);
    tw_mem_force_move(true);
    rc = rc || boundary(&half, ops, at, &fh) || boundary(&quarter, ops, at, &fq);
    tw_mem_force_move(false);
    if (rc) {
        fprintf(stderr, "vec_growth: out of memory\n");
        return 1;
    }
    printf("%-16s %10llu %16llu %10.1f %14.1f\n", "at a half", (unsigned long long)rh.reallocs,
           (unsigned long long)rh.copies, rh.seconds * 1e3, fh.seconds * 1e3);
    printf("%-16s %10llu %16llu %10.1f %14.1f\n", "at a quarter", (unsigned long long)rq.reallocs,
           (unsigned long long)rq.copies, rq.seconds * 1e3, fq.seconds * 1e3);
    printf("\nheadline: x2 growth copies %.2f elements per append, +1 growth %.0f; "
           "shrink at a quarter reallocates %llu times at the boundary, at a half %llu\n",
           (double)quiet[3].copies / (double)n, (double)quiet[0].copies / (double)n,
           (unsigned long long)rq.reallocs, (unsigned long long)rh.reallocs);
    return 0;
}

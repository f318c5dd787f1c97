// Tests tw_pool: parallel-for covers every index once for many sizes, grains and thread
// counts; worker ids are in range and never shared at once; tasks (and tasks that submit
// tasks) all run; inline pools; nested and concurrent loops; failures leave nothing behind;
// the default size is the CPUs the process may run on.
#define _GNU_SOURCE // sched_getaffinity, CPU_SET
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/mem.h"
#include "base/pool.h"
#include "check.h"

#define MAX_WORKERS 64

struct cover {
    atomic_int *hits;
    size_t n, grain;
    int size;
    atomic_int busy[MAX_WORKERS]; // 1 while a chunk runs under that worker id
    atomic_int bad_id, shared_id, short_chunk, calls;
    uint64_t sums[MAX_WORKERS]; // per-worker scratch: no atomics needed
};

static void cover_fn(void *ctx, size_t begin, size_t end, int worker)
{
    struct cover *c = ctx;
    atomic_fetch_add(&c->calls, 1);
    if (worker < 0 || worker >= c->size || worker >= MAX_WORKERS) {
        atomic_fetch_add(&c->bad_id, 1);
        return;
    }
    if (atomic_exchange(&c->busy[worker], 1) != 0)
        atomic_fetch_add(&c->shared_id, 1);
    if (end - begin < c->grain && end != c->n)
        atomic_fetch_add(&c->short_chunk, 1);
    for (size_t i = begin; i < end; i++) {
        atomic_fetch_add(&c->hits[i], 1);
        c->sums[worker] += i;
    }
    atomic_store(&c->busy[worker], 0);
}

// Runs one loop and checks coverage, ids, chunk sizes and the sum; returns failures seen.
static int cover_once(tw_pool *p, size_t n, size_t grain)
{
    struct cover *c = calloc(1, sizeof *c);
    c->hits = calloc(n ? n : 1, sizeof *c->hits);
    c->n = n;
    c->grain = grain;
    c->size = tw_pool_size(p);
    int bad = tw_pool_for(p, n, grain, cover_fn, c) != 0;
    uint64_t sum = 0;
    for (int w = 0; w < MAX_WORKERS; w++)
        sum += c->sums[w];
    for (size_t i = 0; i < n; i++)
        bad += atomic_load(&c->hits[i]) != 1;
    bad += sum != (uint64_t)n * (n ? n - 1 : 0) / 2;
    bad += c->bad_id + c->shared_id + c->short_chunk;
    bad += n == 0 && c->calls != 0;
    free(c->hits);
    free(c);
    return bad;
}

static void test_cover(void)
{
    static const int threads[] = { 1, 2, 3, 4, 8 };
    static const size_t sizes[] = { 0, 1, 2, 3, 7, 8, 9, 31, 100, 1000, 100003 };
    static const size_t grains[] = { 0, 1, 2, 7, 64, 1000, 200000 };
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        tw_pool *p = NULL;
        CHECK_OK(tw_pool_init(&p, threads[t]));
        if (!p)
            continue;
        CHECK_EQ_INT(tw_pool_size(p), threads[t]);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            for (size_t g = 0; g < sizeof grains / sizeof grains[0]; g++)
                CHECK_EQ_INT(cover_once(p, sizes[s], grains[g]), 0);
        tw_pool_free(p);
    }
}

static void test_null_pool(void)
{
    CHECK_EQ_INT(tw_pool_size(NULL), 1);
    CHECK_EQ_INT(cover_once(NULL, 1000, 10), 0);
    CHECK_EQ_INT(cover_once(NULL, 0, 10), 0);
    CHECK(tw_pool_for(NULL, 10, 1, NULL, NULL) == TW_EINVAL);
}

// A pool of one (and a NULL pool) makes exactly one call covering [0, n) on the caller.
struct inline_check {
    pthread_t caller;
    int calls, other_thread;
    size_t begin, end;
};

static void inline_fn(void *ctx, size_t begin, size_t end, int worker)
{
    struct inline_check *c = ctx;
    c->calls++;
    c->other_thread += !pthread_equal(pthread_self(), c->caller) || worker != 0;
    c->begin = begin;
    c->end = end;
}

static void inline_task(void *arg)
{
    struct inline_check *c = arg;
    c->calls++;
    c->other_thread += !pthread_equal(pthread_self(), c->caller);
}

static void test_inline(void)
{
    tw_pool *p = NULL;
    CHECK_OK(tw_pool_init(&p, 1));
    tw_pool *pools[2] = { p, NULL };
    for (int i = 0; i < 2; i++) {
        struct inline_check c = { .caller = pthread_self() };
        CHECK_OK(tw_pool_for(pools[i], 5000, 1, inline_fn, &c));
        CHECK_EQ_INT(c.calls, 1);
        CHECK_EQ_INT(c.begin, 0);
        CHECK_EQ_INT(c.end, 5000);
        CHECK_OK(tw_pool_submit(pools[i], inline_task, &c));
        CHECK_EQ_INT(c.calls, 2); // ran before submit returned
        tw_pool_wait(pools[i]);
        CHECK_EQ_INT(c.other_thread, 0);
    }
    tw_pool_free(p);
    tw_pool_free(NULL);
}

struct tasks {
    tw_pool *pool;
    atomic_int runs;
    atomic_int done[1000];
};

static void leaf_task(void *arg)
{
    atomic_int *slot = arg;
    atomic_fetch_add(slot, 1);
}

struct spawn {
    struct tasks *t;
    int first, count;
};

// Submits `count` leaf tasks from inside a task.
static void spawn_task(void *arg)
{
    struct spawn *s = arg;
    for (int i = 0; i < s->count; i++)
        if (tw_pool_submit(s->t->pool, leaf_task, &s->t->done[s->first + i]) != 0)
            atomic_fetch_add(&s->t->runs, 1000000);
    atomic_fetch_add(&s->t->runs, 1);
}

static void test_tasks(int nthreads)
{
    static struct tasks t;
    static struct spawn spawns[10];
    memset(&t, 0, sizeof t);
    CHECK_OK(tw_pool_init(&t.pool, nthreads));
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 1000; i++)
            atomic_store(&t.done[i], 0);
        atomic_store(&t.runs, 0);
        for (int i = 0; i < 500; i++)
            CHECK_OK(tw_pool_submit(t.pool, leaf_task, &t.done[i]));
        for (int i = 0; i < 10; i++) {
            spawns[i] = (struct spawn){ .t = &t, .first = 500 + 50 * i, .count = 50 };
            CHECK_OK(tw_pool_submit(t.pool, spawn_task, &spawns[i]));
        }
        tw_pool_wait(t.pool);
        int wrong = 0;
        for (int i = 0; i < 1000; i++)
            wrong += atomic_load(&t.done[i]) != 1;
        CHECK_EQ_INT(wrong, 0);
        CHECK_EQ_INT(atomic_load(&t.runs), 10);
    }
    CHECK(tw_pool_submit(t.pool, NULL, NULL) == TW_EINVAL);
    // Tasks still queued at free run before the workers stop.
    for (int i = 0; i < 1000; i++)
        atomic_store(&t.done[i], 0);
    for (int i = 0; i < 1000; i++)
        CHECK_OK(tw_pool_submit(t.pool, leaf_task, &t.done[i]));
    tw_pool_free(t.pool);
    int wrong = 0;
    for (int i = 0; i < 1000; i++)
        wrong += atomic_load(&t.done[i]) != 1;
    CHECK_EQ_INT(wrong, 0);
}

static void test_repeated(void)
{
    tw_pool *p = NULL;
    CHECK_OK(tw_pool_init(&p, 4));
    int bad = 0;
    for (int i = 0; i < 3000; i++)
        bad += cover_once(p, (size_t)(i % 97), (size_t)(i % 5));
    CHECK_EQ_INT(bad, 0);
    tw_pool_free(p);
}

// A loop started from inside a loop's fn runs inline under the same worker id.
struct nested {
    tw_pool *pool;
    atomic_int hits[64 * 50];
    atomic_int wrong_id;
};

struct inner {
    struct nested *n;
    size_t row;
    int outer_worker;
};

static void inner_fn(void *ctx, size_t begin, size_t end, int worker)
{
    struct inner *in = ctx;
    if (worker != in->outer_worker)
        atomic_fetch_add(&in->n->wrong_id, 1);
    for (size_t j = begin; j < end; j++)
        atomic_fetch_add(&in->n->hits[in->row * 50 + j], 1);
}

static void outer_fn(void *ctx, size_t begin, size_t end, int worker)
{
    struct nested *n = ctx;
    for (size_t i = begin; i < end; i++) {
        struct inner in = { .n = n, .row = i, .outer_worker = worker };
        tw_pool_for(n->pool, 50, 1, inner_fn, &in);
    }
}

static void test_nested(void)
{
    static struct nested n;
    CHECK_OK(tw_pool_init(&n.pool, 4));
    CHECK_OK(tw_pool_for(n.pool, 64, 1, outer_fn, &n));
    int wrong = 0;
    for (int i = 0; i < 64 * 50; i++)
        wrong += atomic_load(&n.hits[i]) != 1;
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(atomic_load(&n.wrong_id), 0);
    tw_pool_free(n.pool);
}

// Two outside threads run loops on one pool at once: ids must never be shared.
static void *loop_thread(void *arg)
{
    tw_pool *p = arg;
    long bad = 0;
    for (int i = 0; i < 200; i++)
        bad += cover_once(p, 1000 + (size_t)i, 3);
    return (void *)bad;
}

static void test_concurrent_callers(void)
{
    tw_pool *p = NULL;
    CHECK_OK(tw_pool_init(&p, 3));
    pthread_t a, b;
    void *ra, *rb;
    pthread_create(&a, NULL, loop_thread, p);
    pthread_create(&b, NULL, loop_thread, p);
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    CHECK_EQ_INT((long)ra, 0);
    CHECK_EQ_INT((long)rb, 0);
    tw_pool_free(p);
}

static void test_init_and_failures(void)
{
    tw_pool *p = NULL;
    CHECK_OK(tw_pool_init(&p, 0));
    CHECK_EQ_INT(tw_pool_size(p), tw_cpu_count());
    tw_pool_free(p);

    // The default follows the CPUs the process may run on (taskset, a container's cpuset),
    // not the machine's: confined to one CPU, one thread.
    cpu_set_t was, one;
    CHECK_OK(sched_getaffinity(0, sizeof was, &was));
    CHECK_EQ_INT(tw_cpu_count(), CPU_COUNT(&was));
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(tw_cpu_count() >= 1 && tw_cpu_count() <= online);
    int first = 0;
    while (!CPU_ISSET(first, &was))
        first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    CHECK_OK(sched_setaffinity(0, sizeof one, &one));
    CHECK_EQ_INT(tw_cpu_count(), 1);
    p = NULL;
    CHECK_OK(tw_pool_init(&p, 0));
    CHECK_EQ_INT(tw_pool_size(p), 1);
    tw_pool_free(p);
    CHECK_OK(sched_setaffinity(0, sizeof was, &was));
    CHECK_EQ_INT(tw_cpu_count(), CPU_COUNT(&was));

    p = NULL;
    CHECK(tw_pool_init(&p, 100000) == TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "100000") != NULL);
    CHECK(p == NULL);

    long live = tw_mem_live();
    for (int k = 1; k <= 2; k++) {
        tw_mem_fail_after(k);
        CHECK(tw_pool_init(&p, 4) == TW_ENOMEM);
        tw_mem_fail_after(0);
        CHECK(p == NULL);
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK_OK(tw_pool_init(&p, 2));
    atomic_int slot = 0;
    tw_mem_fail_after(1);
    CHECK(tw_pool_submit(p, leaf_task, &slot) == TW_ENOMEM);
    tw_mem_fail_after(0);
    tw_pool_wait(p);
    CHECK_EQ_INT(atomic_load(&slot), 0);
    tw_pool_free(p);
    CHECK_EQ_INT(tw_mem_live(), live);
}

int main(void)
{
    long live = tw_mem_live();
    test_cover();
    test_null_pool();
    test_inline();
    test_tasks(1);
    test_tasks(2);
    test_tasks(5);
    test_repeated();
    test_nested();
    test_concurrent_callers();
    test_init_and_failures();
    CHECK_EQ_INT(tw_mem_live(), live);
    return check_report("pool");
}

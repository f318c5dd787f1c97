// Implements pool.h. One mutex guards the pool; `wake` rouses workers (a loop started, a task
// queued, stop), `idle` rouses waiters (a loop's helpers left, the task queue drained). A
// loop's chunks are claimed with an atomic counter outside the lock; a loop generation number
// lets each worker join each loop at most once.
#include "base/pool.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/error.h"
#include "base/mem.h"

#define POOL_MAX_THREADS  1024
#define CHUNKS_PER_THREAD 8

typedef void (*loop_fn)(void *ctx, size_t begin, size_t end, int worker);

struct task {
    void (*fn)(void *arg);
    void *arg;
    struct task *next;
};

struct loop {
    loop_fn fn;
    void *ctx;
    size_t n, chunk, nchunks;
};

struct worker {
    tw_pool *pool;
    pthread_t thread;
    int id;
};

struct tw_pool {
    int nthreads;            // caller included
    struct worker *workers;  // nthreads - 1 of them, ids 1 ..
    pthread_mutex_t mu;      // guards everything below but `next`
    pthread_cond_t wake;     // workers wait here
    pthread_cond_t idle;     // tw_pool_for and tw_pool_wait wait here
    pthread_mutex_t loop_mu; // one tw_pool_for at a time
    bool stop;
    bool loop_active;       // the current loop still has chunks to hand out
    unsigned long loop_gen; // bumped by each loop
    int helpers;            // workers inside the current loop
    struct loop loop;
    atomic_size_t next; // the next chunk of the current loop
    struct task *head, *tail;
    int running; // tasks being run
};

// Which pool this thread works for (and as which worker), so nested calls run inline.
static _Thread_local tw_pool *self_pool;
static _Thread_local int self_id;
// The pool whose task this thread is running, to catch a task calling tw_pool_wait.
static _Thread_local tw_pool *task_pool;

static void run_chunks(tw_pool *p, const struct loop *l, int id)
{
    for (;;) {
        size_t c = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (c >= l->nchunks)
            return;
        size_t begin = c * l->chunk;
        size_t end = l->n - begin < l->chunk ? l->n : begin + l->chunk;
        l->fn(l->ctx, begin, end, id);
    }
}

// Called and returns with p->mu held.
static void join_loop(tw_pool *p, int id)
{
    struct loop l = p->loop;
    p->helpers++;
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, &l, id);
    pthread_mutex_lock(&p->mu);
    if (--p->helpers == 0)
        pthread_cond_broadcast(&p->idle);
}

// Called and returns with p->mu held; p->head is not NULL.
static void run_task(tw_pool *p)
{
    struct task *t = p->head;
    p->head = t->next;
    if (!p->head)
        p->tail = NULL;
    p->running++;
    pthread_mutex_unlock(&p->mu);
    void (*fn)(void *) = t->fn;
    void *arg = t->arg;
    tw_free(t);
    tw_pool *saved = task_pool;
    task_pool = p;
    fn(arg);
    task_pool = saved;
    pthread_mutex_lock(&p->mu);
    if (--p->running == 0 && !p->head)
        pthread_cond_broadcast(&p->idle);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    tw_pool *p = w->pool;
    unsigned long seen_gen = 0;
    self_pool = p;
    self_id = w->id;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->loop_active && seen_gen != p->loop_gen) {
            seen_gen = p->loop_gen;
            join_loop(p, w->id);
        } else if (p->head) {
            run_task(p);
        } else if (p->stop) {
            break;
        } else {
            pthread_cond_wait(&p->wake, &p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int sync_init(tw_pool *p)
{
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        return -1;
    if (pthread_mutex_init(&p->loop_mu, NULL) != 0)
        goto no_loop_mu;
    if (pthread_cond_init(&p->wake, NULL) != 0)
        goto no_wake;
    if (pthread_cond_init(&p->idle, NULL) != 0)
        goto no_idle;
    return 0;
no_idle:
    pthread_cond_destroy(&p->wake);
no_wake:
    pthread_mutex_destroy(&p->loop_mu);
no_loop_mu:
    pthread_mutex_destroy(&p->mu);
    return -1;
}

static void sync_destroy(tw_pool *p)
{
    pthread_cond_destroy(&p->idle);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->loop_mu);
    pthread_mutex_destroy(&p->mu);
}

// Stops and joins the first `started` workers.
static void stop_workers(tw_pool *p, int started)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++)
        pthread_join(p->workers[i].thread, NULL);
}

static int start_workers(tw_pool *p)
{
    for (int i = 0; i < p->nthreads - 1; i++) {
        struct worker *w = &p->workers[i];
        w->pool = p;
        w->id = i + 1;
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            stop_workers(p, i);
            return tw_error_set(TW_EIO, "pool: cannot start thread %d of %d: %s", i + 2,
                                p->nthreads, strerror(rc));
        }
    }
    return 0;
}

int tw_pool_init(tw_pool **out, int n)
{
    if (n <= 0) {
        int cpus = tw_cpu_count();
        n = cpus > POOL_MAX_THREADS ? POOL_MAX_THREADS : cpus;
    }
    if (n > POOL_MAX_THREADS)
        return tw_error_set(TW_EINVAL, "pool: %d threads asked for, at most %d", n,
                            POOL_MAX_THREADS);
    tw_pool *p = tw_calloc(1, sizeof *p);
    if (!p)
        return tw_error_set(TW_ENOMEM, "pool: out of memory");
    p->nthreads = n;
    p->workers = tw_calloc((size_t)n - 1, sizeof *p->workers);
    if (!p->workers) {
        tw_free(p);
        return tw_error_set(TW_ENOMEM, "pool: out of memory");
    }
    if (sync_init(p) != 0) {
        tw_free(p->workers);
        tw_free(p);
        return tw_error_set(TW_ENOMEM, "pool: cannot create a mutex or condition variable");
    }
    int rc = start_workers(p);
    if (rc != 0) {
        sync_destroy(p);
        tw_free(p->workers);
        tw_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void tw_pool_free(tw_pool *p)
{
    if (!p)
        return;
    tw_pool_wait(p);
    stop_workers(p, p->nthreads - 1);
    sync_destroy(p);
    tw_free(p->workers);
    tw_free(p);
}

int tw_pool_size(const tw_pool *p)
{
    return p ? p->nthreads : 1;
}

static size_t chunk_size(const tw_pool *p, size_t n, size_t grain)
{
    size_t parts = (size_t)p->nthreads * CHUNKS_PER_THREAD;
    size_t even = n / parts + (n % parts != 0);
    size_t chunk = grain > even ? grain : even;
    return chunk ? chunk : 1;
}

// Runs a loop with the workers; called with p->loop_mu held.
static void run_loop(tw_pool *p, const struct loop *l)
{
    pthread_mutex_lock(&p->mu);
    p->loop = *l;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    p->loop_gen++;
    p->loop_active = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    run_chunks(p, l, 0);

    // Every chunk is claimed; wait for the workers still running theirs.
    pthread_mutex_lock(&p->mu);
    p->loop_active = false;
    while (p->helpers > 0)
        pthread_cond_wait(&p->idle, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

int tw_pool_for(tw_pool *p, size_t n, size_t grain, loop_fn fn, void *ctx)
{
    if (!fn)
        return tw_error_set(TW_EINVAL, "pool: tw_pool_for: no function");
    if (n == 0)
        return 0;
    if (!p || self_pool == p) {
        fn(ctx, 0, n, p ? self_id : 0);
        return 0;
    }
    struct loop l = { .fn = fn, .ctx = ctx, .n = n, .chunk = chunk_size(p, n, grain) };
    l.nchunks = n / l.chunk + (n % l.chunk != 0);

    pthread_mutex_lock(&p->loop_mu);
    tw_pool *saved_pool = self_pool;
    int saved_id = self_id;
    self_pool = p;
    self_id = 0;
    if (p->nthreads == 1 || l.nchunks == 1)
        fn(ctx, 0, n, 0);
    else
        run_loop(p, &l);
    self_pool = saved_pool;
    self_id = saved_id;
    pthread_mutex_unlock(&p->loop_mu);
    return 0;
}

int tw_pool_submit(tw_pool *p, void (*fn)(void *arg), void *arg)
{
    if (!fn)
        return tw_error_set(TW_EINVAL, "pool: tw_pool_submit: no function");
    if (!p || p->nthreads == 1) {
        fn(arg);
        return 0;
    }
    struct task *t = tw_malloc(sizeof *t);
    if (!t)
        return tw_error_set(TW_ENOMEM, "pool: out of memory queuing a task");
    *t = (struct task){ .fn = fn, .arg = arg, .next = NULL };
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void tw_pool_wait(tw_pool *p)
{
    if (!p)
        return;
    assert(task_pool != p); // the task would wait for itself
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (p->head)
            run_task(p);
        else if (p->running > 0)
            pthread_cond_wait(&p->idle, &p->mu);
        else
            break;
    }
    pthread_mutex_unlock(&p->mu);
}

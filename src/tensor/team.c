// Implements team.h. A region: the caller writes the job (fn, ctx) and bumps the generation
// counter; the workers, spinning on it (or woken from their condition variable when they
// slept), run the job and each publish the generation in a line of its own, which the caller
// waits for. A central counter of finished workers would serialise their increments on one
// line (sixteen transfers in a row); separate lines are read by the caller in parallel.
#define _GNU_SOURCE // pthread_setaffinity_np, CPU_SET
#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/error.h"
#include "base/mem.h"
#include "tensor/team.h"

#define TEAM_MAX 4096
#define LINE     64

// Worker id's place, a cache line's bytes (so that two workers' flags are never in one line,
// wherever the array starts): its flag, the last generation it finished, and its team and id
// (its thread's argument).
struct slot {
    _Atomic uint32_t done;
    _Atomic uint32_t arrived; // the last barrier it reached (tw_team_barrier)
    uint32_t barriers;        // barriers it passed (its own count; every thread's is the same)
    int id;
    struct tw_team *t;
    char pad[LINE - 3 * sizeof(uint32_t) - sizeof(int) - sizeof(struct tw_team *)];
};
_Static_assert(sizeof(struct slot) == LINE, "a slot is a cache line's bytes");

struct tw_team {
    int n;
    bool openmp;        // regions are OpenMP's (tw_team_new_openmp); nothing below is used
    pthread_t *threads; // n - 1
    struct slot *slots; // [i] for worker i (1 .. n - 1)

    // the job, written by the caller before gen is bumped, read by the workers after
    tw_team_fn fn;
    void *ctx;
    _Atomic uint32_t gen;
    _Atomic int sleepers;
    _Atomic bool stop;
    // the barrier passed last, a line's bytes away from what others write
    char pad0[LINE];
    _Atomic uint32_t bar_gen;
    char pad1[LINE];

    pthread_mutex_t run_mu; // one region at a time
    pthread_mutex_t mu;     // the sleepers' condition variable
    pthread_cond_t wake;
};

// Set on the threads of a running region: a region asked for from inside one runs inline.
static _Thread_local bool in_region;
// The thread's id in its team: a worker's, or 0 (the caller of a region).
static _Thread_local int team_id;

// One step of a wait loop: a pause instruction for the first `pauses` steps, then a
// sched_yield a step, so that a thread waited for that shares our core (more threads than
// cores: tests run side by side, a team larger than the machine, or two of a new team's
// threads placed on one CPU before the kernel balances them) gets it within microseconds
// rather than at the end of our time slice. 64 pauses (a few microseconds) rather than 2048:
// no slower (run Z5, docs/perf.md), and a guard against such stacking, a suspect of run Z4's
// decode runs ten times slower than their neighbours. TWIN_TEAM_PAUSES overrides, for
// measuring.
static unsigned pauses = 64;
static inline void relax(unsigned *steps)
{
    if (++*steps > pauses) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// TW_TEAM_SPIN_NS, or TWIN_TEAM_SPIN_US's microseconds (read once, as TWIN_TEAM_PAUSES), for
// measuring.
static uint64_t spin_budget = TW_TEAM_SPIN_NS;
// TWIN_TEAM_PIN=1 (read once, as the above): worker id bound to the id-th CPU the process may
// run on (the caller left free), for measuring whether pinned threads keep their caches better.
static bool pin;
static pthread_once_t spin_once = PTHREAD_ONCE_INIT;

static void spin_read_env(void)
{
    const char *e = getenv("TWIN_TEAM_SPIN_US");
    long us = e ? atol(e) : -1;
    if (us >= 0)
        spin_budget = (uint64_t)us * 1000;
    e = getenv("TWIN_TEAM_PIN");
    pin = e && strcmp(e, "1") == 0;
    e = getenv("TWIN_TEAM_PAUSES");
    long p = e ? atol(e) : -1;
    if (p >= 0 && p < (1L << 30))
        pauses = (unsigned)p;
}

// Waits until t->gen differs from seen and returns it: spinning for TW_TEAM_SPIN_NS, then
// asleep on the condition variable. The sleeper count and gen are sequentially consistent, so
// either the caller sees the sleeper and signals, or the sleeper sees the new generation.
static uint32_t wait_gen(struct tw_team *t, uint32_t seen)
{
    uint64_t t0 = 0;
    for (unsigned steps = 0;;) {
        uint32_t g = atomic_load_explicit(&t->gen, memory_order_acquire);
        if (g != seen)
            return g;
        relax(&steps);
        if (steps % 256 != 0)
            continue;
        uint64_t now = now_ns();
        if (t0 == 0) {
            t0 = now;
        } else if (now - t0 > spin_budget) {
            pthread_mutex_lock(&t->mu);
            atomic_fetch_add(&t->sleepers, 1);
            while ((g = atomic_load(&t->gen)) == seen)
                pthread_cond_wait(&t->wake, &t->mu);
            atomic_fetch_sub(&t->sleepers, 1);
            pthread_mutex_unlock(&t->mu);
            return g;
        }
    }
}

static void pin_to(int id)
{
    cpu_set_t all, one;
    if (sched_getaffinity(0, sizeof all, &all) != 0)
        return;
    for (int c = 0, k = 0, want = id % CPU_COUNT(&all); c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all) && k++ == want) {
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
}

static void *worker_main(void *p)
{
    const struct slot *me = p;
    struct tw_team *t = me->t;
    int id = team_id = me->id;
    if (pin)
        pin_to(id);
    in_region = true; // a worker only ever runs inside regions
    uint32_t seen = 0;
    for (;;) {
        seen = wait_gen(t, seen);
        if (atomic_load_explicit(&t->stop, memory_order_acquire))
            return NULL;
        t->fn(t->ctx, id, t->n);
        atomic_store_explicit(&t->slots[id].done, seen, memory_order_release);
    }
}

// Bumps the generation (the job already written) and wakes the sleepers; returns it.
static uint32_t post(struct tw_team *t)
{
    uint32_t g = atomic_load_explicit(&t->gen, memory_order_relaxed) + 1;
    atomic_store(&t->gen, g);
    if (atomic_load(&t->sleepers) > 0) {
        pthread_mutex_lock(&t->mu);
        pthread_cond_broadcast(&t->wake);
        pthread_mutex_unlock(&t->mu);
    }
    return g;
}

static void stop_workers(struct tw_team *t, int started)
{
    atomic_store(&t->stop, true);
    post(t);
    for (int i = 0; i < started; i++)
        pthread_join(t->threads[i], NULL);
}

static void team_destroy(struct tw_team *t)
{
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->mu);
    pthread_mutex_destroy(&t->run_mu);
    tw_free(t->slots);
    tw_free(t->threads);
    tw_free(t);
}

int tw_team_new(int n, struct tw_team **out)
{
    if (n <= 0) {
        int cpus = tw_cpu_count();
        n = cpus > TEAM_MAX ? TEAM_MAX : cpus;
    }
    if (n > TEAM_MAX)
        return tw_error_set(TW_EINVAL, "team: %d threads asked for, at most %d", n, TEAM_MAX);
    pthread_once(&spin_once, spin_read_env);
    struct tw_team *t = tw_calloc(1, sizeof *t);
    if (!t)
        return tw_error_set(TW_ENOMEM, "team: out of memory");
    t->n = n;
    pthread_mutex_init(&t->run_mu, NULL);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->wake, NULL);
    t->threads = tw_calloc((size_t)n, sizeof *t->threads);
    t->slots = tw_calloc((size_t)n, sizeof *t->slots);
    if (!t->threads || !t->slots) {
        team_destroy(t);
        return tw_error_set(TW_ENOMEM, "team: out of memory");
    }
    for (int i = 1; i < n; i++) {
        t->slots[i].id = i, t->slots[i].t = t;
        int rc = pthread_create(&t->threads[i - 1], NULL, worker_main, &t->slots[i]);
        if (rc != 0) {
            stop_workers(t, i - 1);
            team_destroy(t);
            return tw_error_set(TW_EIO, "team: cannot start thread %d of %d: %s", i + 1, n,
                                strerror(rc));
        }
    }
    *out = t;
    return 0;
}

int tw_team_new_openmp(int n, struct tw_team **out)
{
    struct tw_team *t = tw_calloc(1, sizeof *t);
    if (!t)
        return tw_error_set(TW_ENOMEM, "team: out of memory");
    t->n = n > 0 ? n : omp_get_max_threads();
    t->openmp = true;
    *out = t;
    return 0;
}

void tw_team_free(struct tw_team *t)
{
    if (!t)
        return;
    if (t->openmp) {
        tw_free(t);
        return;
    }
    stop_workers(t, t->n - 1);
    team_destroy(t);
}

int tw_team_size(const struct tw_team *t)
{
    return t ? t->n : 1;
}

void tw_team_run(struct tw_team *t, tw_team_fn fn, void *ctx)
{
    if (!t || t->n == 1 || in_region || omp_in_parallel()) {
        fn(ctx, 0, 1);
        return;
    }
    if (t->openmp) {
#pragma omp parallel num_threads(t->n)
        fn(ctx, omp_get_thread_num(), omp_get_num_threads());
        return;
    }
    pthread_mutex_lock(&t->run_mu);
    t->fn = fn;
    t->ctx = ctx;
    uint32_t g = post(t);
    in_region = true;
    fn(ctx, 0, t->n);
    in_region = false;
    unsigned steps = 0;
    for (int i = 1; i < t->n; i++)
        while (atomic_load_explicit(&t->slots[i].done, memory_order_acquire) != g)
            relax(&steps);
    pthread_mutex_unlock(&t->run_mu);
}

void tw_team_barrier(struct tw_team *t, int nt)
{
    if (!t || nt <= 1)
        return;
    if (t->openmp) {
#pragma omp barrier
        return;
    }
    // Each thread publishes its count in its own line; thread 0 reads them all, then publishes
    // the barrier passed. A counter all increment would take sixteen transfers of its line in
    // a row: 1.3 us a barrier at sixteen threads on the device tool's host (bench/team,
    // docs/perf.md).
    struct slot *me = &t->slots[team_id];
    uint32_t b = ++me->barriers;
    unsigned steps = 0;
    if (team_id == 0) {
        for (int i = 1; i < nt; i++)
            while (atomic_load_explicit(&t->slots[i].arrived, memory_order_acquire) != b)
                relax(&steps);
        atomic_store_explicit(&t->bar_gen, b, memory_order_release);
        return;
    }
    atomic_store_explicit(&me->arrived, b, memory_order_release);
    while (atomic_load_explicit(&t->bar_gen, memory_order_acquire) != b)
        relax(&steps);
}

// Implements cpu_step.h: the queue of a recorded step (nodes and their jobs in an arena),
// its scratch, and running it as one region of the team.
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/mem.h"
#include "tensor/cpu_step.h"

#define ALIGN    64
#define MEMO_KEY 128

struct node {
    const struct cpu_node_kind *kind;
    void *job;
    bool par; // run by every thread (else by thread 0 alone, as one of one)
    struct node *next;
};

struct cpu_step {
    struct tw_backend *be;
    struct tw_team *team;
    tw_arena arena; // the nodes, their jobs and what they copied
    struct node *head, *tail;
    size_t shared, per_thread; // the most any queued node asked for
    char *scratch;             // shared + nt * per_thread bytes (+ ALIGN), kept step to step
    size_t scratch_bytes;
    unsigned char memo_key[MEMO_KEY];
    size_t memo_n; // 0: no memo
    void *memo;
    bool failed; // a node found no memory: the step runs nothing and its end reports it
};

// The step this thread records, and on which backend.
static _Thread_local struct cpu_step *recording;

static size_t round_up(size_t n)
{
    return (n + ALIGN - 1) / ALIGN * ALIGN;
}

struct cpu_step *cpu_step_of(const struct tw_backend *be)
{
    return recording && recording->be == be ? recording : NULL;
}

void *cpu_step_alloc(struct cpu_step *s, size_t n)
{
    void *p = tw_arena_alloc(&s->arena, n, ALIGN);
    s->failed |= p == NULL; // (the error set): the step ends in it, having run nothing
    return p;
}

void *cpu_step_copy(struct cpu_step *s, const void *p, size_t n)
{
    void *q = cpu_step_alloc(s, n);
    if (q && n)
        memcpy(q, p, n);
    return q;
}

void *cpu_step_memo(const struct cpu_step *s, const void *key, size_t n)
{
    return s->memo_n == n && memcmp(s->memo_key, key, n) == 0 ? s->memo : NULL;
}

void cpu_step_memo_put(struct cpu_step *s, const void *key, size_t n, void *value)
{
    if (n > MEMO_KEY) {
        s->memo_n = 0;
        return;
    }
    memcpy(s->memo_key, key, n);
    s->memo_n = n;
    s->memo = value;
}

struct one {
    cpu_node_fn fn;
    void *job;
    char *scratch;
    size_t shared, per_thread;
    struct tw_team *team;
};

static struct cpu_run run_of(struct tw_team *team, char *scratch, size_t shared, size_t per_thread,
                             int id)
{
    scratch = (char *)(((uintptr_t)scratch + ALIGN - 1) / ALIGN * ALIGN); // (NULL stays NULL)
    return (struct cpu_run){ .team = team,
                             .shared = scratch,
                             .mine = scratch + shared + (size_t)id * per_thread };
}

static void one_region(void *ctx, int id, int nt)
{
    struct one *o = ctx;
    struct cpu_run run = run_of(o->team, o->scratch, o->shared, o->per_thread, id);
    o->fn(o->job, &run, id, nt);
}

// TWIN_CPU_STEP_PROFILE: thread 0's time in the nodes of each kind and in the barriers after
// them (kinds told apart by name; a few dozen at most). One table for the process, unguarded:
// for a benchmark's one backend stepping on one thread.
#define PROF_KINDS 32
static struct prof {
    const char *name;
    uint64_t n, work_ns, wait_ns;
} prof[PROF_KINDS];
static bool profiling;
static pthread_once_t prof_once = PTHREAD_ONCE_INIT;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Each thread's time in the nodes' work, in a line of its own (the first PROF_THREADS).
#define PROF_THREADS 64
static struct {
    uint64_t ns;
    char pad[56];
} prof_thread[PROF_THREADS];

static void prof_print(void)
{
    uint64_t all = 0, lo = UINT64_MAX, hi = 0, sum = 0;
    int n = 0;
    for (int i = 0; i < PROF_THREADS; i++)
        if (prof_thread[i].ns) {
            uint64_t v = prof_thread[i].ns;
            lo = v < lo ? v : lo, hi = v > hi ? v : hi, sum += v, n++;
        }
    if (n)
        fprintf(stderr, "cpu steps: %d threads' work %.3f ms at least, %.3f mean, %.3f at most\n",
                n, (double)lo / 1e6, (double)sum / 1e6 / n, (double)hi / 1e6);
    for (int i = 0; i < PROF_KINDS && prof[i].name; i++)
        all += prof[i].work_ns + prof[i].wait_ns;
    fprintf(stderr, "cpu steps (thread 0): node, count, work ms, barrier ms, share\n");
    for (int i = 0; i < PROF_KINDS && prof[i].name; i++)
        fprintf(stderr, "  %-10s %9llu %10.3f %10.3f %6.1f%%\n", prof[i].name,
                (unsigned long long)prof[i].n, (double)prof[i].work_ns / 1e6,
                (double)prof[i].wait_ns / 1e6,
                all ? 100.0 * (double)(prof[i].work_ns + prof[i].wait_ns) / (double)all : 0.0);
}

static void prof_init(void)
{
    const char *e = getenv("TWIN_CPU_STEP_PROFILE");
    profiling = e && strcmp(e, "1") == 0;
    if (profiling)
        atexit(prof_print);
}

static void prof_add(const char *name, uint64_t work, uint64_t wait)
{
    int i = 0;
    while (i < PROF_KINDS - 1 && prof[i].name && strcmp(prof[i].name, name) != 0)
        i++;
    prof[i].name = name;
    prof[i].n++;
    prof[i].work_ns += work;
    prof[i].wait_ns += wait;
}

static void step_region(void *ctx, int id, int nt)
{
    struct cpu_step *s = ctx;
    struct cpu_run run = run_of(s->team, s->scratch, s->shared, s->per_thread, id);
    bool timed = profiling && id == 0;
    uint64_t mine = 0;
    for (struct node *n = s->head; n; n = n->next) {
        uint64_t t0 = profiling ? now_ns() : 0, t1 = 0;
        if (n->par || id == 0)
            n->kind->fn(n->job, &run, n->par ? id : 0, n->par ? nt : 1);
        if (profiling)
            t1 = now_ns(), mine += t1 - t0;
        if (n->next)
            tw_team_barrier(s->team, nt);
        if (timed)
            prof_add(n->kind->name, t1 - t0, now_ns() - t1);
    }
    if (profiling && id < PROF_THREADS)
        prof_thread[id].ns += mine;
}

// Runs the queued nodes and empties the queue (the memo too). False when the scratch found no
// memory or a node could not be queued (nothing ran).
static bool step_run(struct cpu_step *s)
{
    bool ok = !s->failed;
    if (s->head && ok) {
        size_t need = 0, all = 0;
        bool over = tw_mul_overflow((size_t)tw_team_size(s->team), s->per_thread, &all) ||
                    tw_add_overflow(all, s->shared, &need) ||
                    tw_add_overflow(need, (size_t)ALIGN, &need); // (run_of aligns its start)
        if (over || need > s->scratch_bytes) {
            tw_free(s->scratch);
            s->scratch_bytes = 0;
            s->scratch = over ? NULL : tw_malloc(need);
            if (s->scratch)
                s->scratch_bytes = need;
        }
        if (!over && (s->scratch || need == 0))
            tw_team_run(s->team, step_region, s);
        else
            ok = (tw_error_set(TW_ENOMEM, "cpu backend: no memory for a step's scratch"), false);
    }
    s->head = s->tail = NULL;
    s->shared = s->per_thread = 0;
    s->memo_n = 0;
    tw_arena_reset(&s->arena);
    return ok;
}

bool cpu_exec(struct tw_backend *be, struct tw_team *team, const struct cpu_node_kind *kind,
              const void *job, size_t bytes, size_t shared, size_t per_thread, bool par)
{
    shared = round_up(shared), per_thread = round_up(per_thread);
    struct cpu_step *s = cpu_step_of(be);
    if (s) {
        struct node *n = cpu_step_alloc(s, sizeof *n);
        void *copy = n ? cpu_step_copy(s, job, bytes) : NULL;
        if (copy) {
            *n = (struct node){ .kind = kind, .job = copy, .par = par };
            if (s->tail)
                s->tail->next = n;
            else
                s->head = n;
            s->tail = n;
            s->shared = shared > s->shared ? shared : s->shared;
            s->per_thread = per_thread > s->per_thread ? per_thread : s->per_thread;
            return true;
        }
        return false; // (marked failed by cpu_step_alloc)
    }
    int nt = par ? tw_team_size(team) : 1;
    size_t need = shared + (size_t)nt * per_thread;
    char *scratch = need ? tw_malloc(need + ALIGN) : NULL; // (run_of aligns its start)
    if (need && !scratch)
        return (tw_error_set(TW_ENOMEM, "cpu backend: out of memory (%zu bytes)", need), false);
    struct one o = { kind->fn, (void *)job, scratch, shared, per_thread, team };
    tw_team_run(par ? team : NULL, one_region, &o);
    tw_free(scratch);
    return true;
}

void cpu_step_flush(struct tw_backend *be)
{
    struct cpu_step *s = cpu_step_of(be);
    if (s)
        step_run(s);
}

int cpu_step_begin(struct tw_backend *be, struct tw_team *team, void **graph)
{
    if (recording)
        return tw_error_set(TW_EUNSUPPORTED, "cpu backend: a step is recorded already");
    struct cpu_step *s = *graph;
    if (!s) {
        s = tw_calloc(1, sizeof *s);
        if (!s)
            return tw_error_set(TW_ENOMEM, "cpu backend: out of memory");
        tw_arena_init(&s->arena, 0);
        *graph = s;
    }
    s->be = be;
    s->team = team;
    recording = s;
    pthread_once(&prof_once, prof_init);
    return 0;
}

int cpu_step_end(struct tw_backend *be, void **graph)
{
    struct cpu_step *s = *graph;
    if (!s || recording != s || s->be != be)
        return tw_error_set(TW_ESTATE, "cpu backend: no step is recorded");
    recording = NULL;
    bool ok = step_run(s);
    if (s->failed) {
        s->failed = false;
        return tw_error_set(TW_ENOMEM, "cpu backend: out of memory recording a step");
    }
    return ok ? 0 : tw_error_code();
}

void cpu_step_free(void *graph)
{
    struct cpu_step *s = graph;
    if (!s)
        return;
    if (recording == s)
        recording = NULL;
    tw_arena_free(&s->arena);
    tw_free(s->scratch);
    tw_free(s);
}

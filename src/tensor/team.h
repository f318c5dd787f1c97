// tw_team: the CPU backend's threads for its parallel regions. A region runs one function on
// every thread of the team at once, the caller as thread 0, and returns when all have
// finished; the function splits the work by its thread id (tw_team_range). Between regions the
// workers spin on a generation counter for a while (TW_TEAM_SPIN_NS) before they sleep, so that
// the regions of a decoded token, a hundred or more a few microseconds apart, each cost about
// a cache line's round trip to start and one to finish instead of a fork and a join:
// libgomp's took 3.2 us a region at sixteen threads on the device tool's host, where
// SmolLM2's matmuls run 17 us each (docs/perf.md). base/pool.h's pool, whose workers sleep on a
// condition variable and take chunks from a queue, is for independent tasks instead.
#ifndef TW_TENSOR_TEAM_H
#define TW_TENSOR_TEAM_H

#include <stdint.h>

struct tw_team;

// How long an idle worker spins before it sleeps: longer than the gaps between a decoded
// token's regions (a sampler's step included), short enough not to take cores from other work
// for long once decoding stops. The environment variable TWIN_TEAM_SPIN_US (microseconds, read
// once) overrides it, for measuring.
#define TW_TEAM_SPIN_NS 1000000

// A region's function: thread id of nt (0 <= id < nt) does its share of ctx's work.
typedef void (*tw_team_fn)(void *ctx, int id, int nt);

// A team of n threads in all (n - 1 workers started; n <= 0: the online CPUs). Returns 0 and
// sets *out (free with tw_team_free), TW_EINVAL for n above 4096, TW_ENOMEM, or TW_EIO when a
// thread cannot be started (none is left running then).
int tw_team_new(int n, struct tw_team **out);

// A team whose regions are OpenMP parallel regions of n threads (n <= 0: OpenMP's default),
// for a backend used beside code that runs its own OpenMP regions (the training passes of
// tensor/grad.c): two sets of threads, each spinning between its regions, would take the cores
// from each other (a CPU training step 7-10 % slower, docs/perf.md). Returns 0 or TW_ENOMEM.
int tw_team_new_openmp(int n, struct tw_team **out);

// Stops and joins the workers and frees the team; NULL is a no-op. No region may be running.
void tw_team_free(struct tw_team *t);

// The team's threads, the caller included (1 for NULL).
int tw_team_size(const struct tw_team *t);

// Runs fn(ctx, id, nt) for every id in [0, nt), nt = tw_team_size(t), and returns when all
// have returned (their writes are then visible to the caller). A NULL or one-thread team, or
// a call from inside a region (of any team, or an OpenMP parallel region), runs fn(ctx, 0, 1) on
// the calling thread. Calls from several threads at once run one region after another.
void tw_team_run(struct tw_team *t, tw_team_fn fn, void *ctx);

// Inside a region of nt threads: returns once all nt have called it (writes before it are
// visible after it). Every thread of the region must call it the same number of times. No-op
// for nt <= 1.
void tw_team_barrier(struct tw_team *t, int nt);

// Thread id's share [*lo, *hi) of n items cut into nt near-equal contiguous pieces.
static inline void tw_team_range(int64_t n, int id, int nt, int64_t *lo, int64_t *hi)
{
    *lo = n * id / nt;
    *hi = n * (id + 1) / nt;
}

#endif

// tw_pool, the thread pool: a fixed set of pthreads that run parallel-for loops (the caller
// takes part, chunks handed out by an atomic counter) and independent tasks (a FIFO queue).
// Idle workers sleep on a condition variable; nothing spins. A pool of one thread, or a NULL
// pool, runs everything inline on the calling thread.
#ifndef TW_POOL_H
#define TW_POOL_H

#include <stddef.h>

typedef struct tw_pool tw_pool;

// Creates a pool of n threads in all, the thread that calls tw_pool_for or tw_pool_wait
// included: n - 1 workers are started. n <= 0 means the number of online CPUs. Returns 0 and
// sets *out (free with tw_pool_free), TW_EINVAL for an absurd n, TW_ENOMEM, or TW_EIO when a
// thread cannot be started (nothing is left running then).
int tw_pool_init(tw_pool **out, int n);

// Runs the tasks still queued, stops and joins the workers, frees the pool. NULL is a no-op.
void tw_pool_free(tw_pool *p);

// The number of threads that share the work, caller included (1 for a NULL pool); worker ids
// passed to tw_pool_for's fn lie in [0, tw_pool_size(p)).
int tw_pool_size(const tw_pool *p);

// Calls fn(ctx, begin, end, worker) over chunks that cover [0, n) exactly once, and returns
// when all have run. Chunks but the last hold at least `grain` items (0 counts as 1), more
// when n is large (about eight chunks per thread); the caller runs chunks too, as worker 0.
// Chunks are handed out in order, each to whichever thread asks next. At any moment
// each worker id is used by at most one thread, so fn may use per-worker scratch indexed by
// it. Calls from several threads are run one after another. A call from inside fn or from a
// task running on a worker runs inline on that thread, under that thread's worker id.
// Returns 0, or TW_EINVAL when fn is NULL.
int tw_pool_for(tw_pool *p, size_t n, size_t grain,
                void (*fn)(void *ctx, size_t begin, size_t end, int worker), void *ctx);

// Queues fn(arg) to run on a worker (inline, before returning, for a pool of one or NULL).
// Tasks may submit more tasks. Returns 0, TW_EINVAL when fn is NULL, or TW_ENOMEM (the task
// was not queued).
int tw_pool_submit(tw_pool *p, void (*fn)(void *arg), void *arg);

// Returns once every submitted task has finished, including tasks those tasks submitted; the
// caller runs queued tasks itself meanwhile. Must not be called from a task of the same pool.
void tw_pool_wait(tw_pool *p);

#endif

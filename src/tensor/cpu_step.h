// The fast CPU backend's ops as nodes, and its recorded steps (tw_backend_graph_begin ..
// graph_end): a decode step's ops queued as nodes and run in one region of the backend's team,
// every thread passing a barrier after each node, instead of a region an op with the small ops
// on the caller between them (SmolLM2's decoded token: ~120 regions and 0.4 ms of such ops at
// 16 threads, docs/perf.md). Outside a recording a node runs as a region of its own.
#ifndef TW_TENSOR_CPU_STEP_H
#define TW_TENSOR_CPU_STEP_H

#include <stdbool.h>
#include <stddef.h>

#include "tensor/backend.h"
#include "tensor/team.h"

// What a node's function gets besides its job: the team (for barriers inside the node), the
// scratch all threads share and the calling thread's own (the sizes the node asked for).
struct cpu_run {
    struct tw_team *team;
    char *shared;
    char *mine;
};

// Thread id of nt runs its share of the node's job (which it may change: counters); a node
// not shared out (cpu_exec's par) runs as thread 0 of 1.
typedef void (*cpu_node_fn)(void *job, const struct cpu_run *run, int id, int nt);

// A kind of node: its function and its name (for TWIN_CPU_STEP_PROFILE). CPU_NODE(x) defines
// x_kind, of x_node.
struct cpu_node_kind {
    cpu_node_fn fn;
    const char *name;
};
#define CPU_NODE(x) static const struct cpu_node_kind x##_kind = { x##_node, #x }

struct cpu_step;

// The step this thread records on be, or NULL (the ops run as they come).
struct cpu_step *cpu_step_of(const struct tw_backend *be);

// Runs kind's function over job: queued (job's bytes copied) when this thread records a step on
// be, else at once, on the team when par (else on the calling thread alone), with shared bytes of
// scratch for all threads and per_thread bytes for each. A queued job must hold no pointer to
// the caller's memory that dies before the step runs (cpu_step_copy). False when memory ran
// out (nothing ran then; an error is set).
bool cpu_exec(struct tw_backend *be, struct tw_team *team, const struct cpu_node_kind *kind,
              const void *job, size_t bytes, size_t shared, size_t per_thread, bool par);

// A copy of n bytes in the step's memory, valid until it has run; NULL when out of memory
// (the step then runs nothing and its end returns TW_ENOMEM).
void *cpu_step_copy(struct cpu_step *s, const void *p, size_t n);
// n bytes of the step's memory, 64-byte aligned, valid until it has run; NULL as above.
void *cpu_step_alloc(struct cpu_step *s, size_t n);

// One value an op keeps for the rest of the step under a key of its own (RoPE's angles, the
// same in every layer): the value last put under an equal key (the key's bytes compared), or
// NULL. The memo holds one key at a time.
void *cpu_step_memo(const struct cpu_step *s, const void *key, size_t n);
void cpu_step_memo_put(struct cpu_step *s, const void *key, size_t n, void *value);

// Runs the nodes queued on be so far (an op that cannot be queued comes next: it reads or
// writes what they do). A no-op when none is recorded.
void cpu_step_flush(struct tw_backend *be);

// The backend's graph ops (backend.h): a step is recorded anew every time and run at its end.
// With the environment variable TWIN_CPU_STEP_PROFILE=1 (read once), thread 0 times each
// recorded node (its share of the work, then the barrier after it) and the totals by kind go
// to stderr when the process exits.
int cpu_step_begin(struct tw_backend *be, struct tw_team *team, void **graph);
int cpu_step_end(struct tw_backend *be, void **graph);
void cpu_step_free(void *graph);

// A node's barrier: every thread of the node calls it alike.
static inline void cpu_barrier(const struct cpu_run *run, int nt)
{
    tw_team_barrier(run->team, nt);
}

#endif

// The server's scheduler: continuous batching of text generations over N slots of one
// context (one sequence each). One engine thread runs the loop: waiting requests take free
// slots (the slot whose cache shares the longest prefix with the prompt: prefix reuse; or a
// longer prefix in another slot's cache, running or not, whose whole pages the two then
// share), and
// each step runs every active slot's next piece in one forward pass — a decode token for the
// generating ones, a chunk of the prompt for the prefilling ones — so that requests join and
// leave the batch at token boundaries. The slots' KV caches are pages of one pool (n_kv
// positions): a request is admitted when the pool has room for its prompt, idle slots' caches
// give way when the running ones need pages, and when the pool is still short the latest
// admitted sequence is preempted (its pages freed, its tokens fed again later: vLLM's
// recomputation). A bounded queue refuses requests when full; each request has a token limit
// and a deadline, and is cancelled when its caller says so.
#ifndef TW_SERVE_SCHED_H
#define TW_SERVE_SCHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "model/context.h"
#include "model/generate.h"
#include "model/model.h"

struct tw_sched_params {
    int32_t n_slots; // concurrent generations (default 4)
    int32_t n_ctx;   // positions per slot (default: the model's, at most 4096)
    int32_t n_batch; // tokens per step, prompt chunks included (default 512)
    int32_t n_queue; // waiting requests at most (default 4 * n_slots)
    int32_t n_kv;    // positions of the KV cache the slots share (default n_slots * n_ctx;
                     // at least n_ctx)
};

struct tw_job_result {
    int rc;                // 0, or the error that ended the job (msg says more)
    char msg[256];         // the error's message
    enum tw_finish finish; // when rc == 0
    bool timed_out;        // the deadline passed (finish is TW_FINISH_CANCEL)
    int32_t n_prompt, n_reused, n_gen;
    double queue_s, ttft_s, total_s; // waiting; submit to first token; submit to the end
};

// A request. The caller owns what the pointers point at and keeps it alive until on_done has
// been called (exactly once, on the engine thread, also when the job fails or is cancelled).
struct tw_job {
    const int32_t *prompt;
    int32_t n_prompt;
    struct tw_gen_params gen;
    double deadline; // CLOCK_MONOTONIC seconds; 0: none
    // The text as it is generated (engine thread); non-zero cancels.
    tw_gen_fn on_text;
    // Called once a step while the job waits or runs; false cancels (a client that went away).
    bool (*alive)(void *ud);
    void (*on_done)(void *ud, const struct tw_job_result *r);
    void *ud;
    atomic_bool cancel; // set by any thread to cancel
    // The scheduler's own.
    struct tw_job *next;
    double t_submit;
};

struct tw_sched_stats {
    int32_t n_slots, busy, queued, n_ctx;
    int64_t kv_used;                   // cached positions over all slots (after the last step)
    int32_t kv_page, kv_pages;         // the shared cache: positions a page, pages in all
    int32_t kv_pages_used;             // held by the slots (after the last step)
    int64_t preempted;                 // sequences preempted (their pages taken, recomputed)
    int64_t prompt_tokens, gen_tokens; // since the start
    int64_t steps, reused_tokens;
    int64_t shared_tokens; // of reused_tokens, those in pages shared with another slot's cache
    double busy_s;         // seconds spent in forward steps
};

typedef struct tw_sched tw_sched;

// Starts the engine thread on model m and backend be (both outlive the scheduler). Returns 0,
// TW_ENOMEM (the slots' caches did not fit: fewer slots or positions) or TW_EIO.
int tw_sched_new(const struct tw_model *m, struct tw_backend *be, const struct tw_sched_params *p,
                 tw_sched **out);
// Finishes the queued and running jobs, stops the thread and frees the scheduler. With
// cancel, the jobs are cancelled instead (each still gets its on_done).
void tw_sched_free(tw_sched *s, bool cancel);

// Queues job j. Returns 0; TW_ELIMIT when the queue is full (the server's 429) or the prompt
// leaves no room in a slot's context (its 400), with a message; TW_ESTATE while stopping.
int tw_sched_submit(tw_sched *s, struct tw_job *j);
// Wakes the engine thread (after setting a job's cancel flag, say).
void tw_sched_wake(tw_sched *s);
void tw_sched_stats(tw_sched *s, struct tw_sched_stats *out);
int32_t tw_sched_n_ctx(const tw_sched *s);

#endif

// The continuous-batching scheduler (sched.h). The engine thread owns the context and the
// slots; the lock guards only the queue, the flags and the statistics, so that submitting
// never waits for a forward step.
#include "serve/sched.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/log.h"
#include "base/mem.h"

struct slot {
    struct tw_job *job; // NULL: free
    struct tw_gen_state g;
    // What the slot feeds before it samples: the job's prompt, or after a preemption the
    // tokens it had (resume: the prompt, those generated, and the pending one).
    const int32_t *feed;
    int32_t n_feed;
    tw_vec resume;
    int32_t fed;     // tokens of feed in the cache
    int32_t tok;     // generating: the sampled token to decode next
    bool generating; // feed is in; tok is pending
    int32_t reused;
    uint64_t used; // step of the last use (least recently used goes first)
    double t_admit, t_first;
};

struct tw_sched {
    const struct tw_model *m;
    tw_ctx *c;
    struct tw_sched_params p;
    struct slot *slots;
    float *logits; // (n_slots, n_vocab)
    // On a GPU the step's logits stay there and the slots sample from each row's top: k
    // values and ids a row (n_slots, TW_TOPK_MAX), or the rows copied when a sampler needs them.
    bool dev;
    float *vals;
    int32_t *ids;
    struct tw_ctx_run *runs;
    int32_t *run_slot;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct tw_job *head, *tail; // the queue
    int32_t queued;
    bool stopping, cancel_all;
    struct tw_sched_stats st;
    uint64_t step;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void done(struct tw_job *j, struct tw_job_result *r)
{
    r->total_s = now() - j->t_submit;
    j->on_done(j->ud, r);
}

static void fail(struct tw_job *j, int rc, const char *msg)
{
    struct tw_job_result r = { .rc = rc, .n_prompt = j->n_prompt };
    snprintf(r.msg, sizeof r.msg, "%s", msg);
    r.queue_s = now() - j->t_submit;
    done(j, &r);
}

static void cancelled(struct tw_job *j, bool timed_out)
{
    struct tw_job_result r = { .finish = TW_FINISH_CANCEL,
                               .timed_out = timed_out,
                               .n_prompt = j->n_prompt };
    r.queue_s = now() - j->t_submit;
    done(j, &r);
}

// Ends the job of slot sl (its cache stays for prefix reuse).
static void finish_slot(tw_sched *s, struct slot *sl, int rc, bool timed_out)
{
    struct tw_job *j = sl->job;
    struct tw_job_result r = { .rc = rc,
                               .finish = sl->g.finish,
                               .timed_out = timed_out,
                               .n_prompt = j->n_prompt,
                               .n_reused = sl->reused,
                               .n_gen = (int32_t)sl->g.gen.len };
    if (rc != 0)
        snprintf(r.msg, sizeof r.msg, "%s", tw_error_msg());
    if (timed_out || (rc == 0 && !sl->g.done))
        r.finish = TW_FINISH_CANCEL;
    r.queue_s = sl->t_admit - j->t_submit;
    r.ttft_s = sl->t_first > 0 ? sl->t_first - j->t_submit : 0;
    tw_gen_free(&sl->g);
    sl->job = NULL;
    sl->generating = false;
    tw_vec_clear(&sl->resume);
    pthread_mutex_lock(&s->lock);
    s->st.busy--;
    s->st.gen_tokens += r.n_gen;
    pthread_mutex_unlock(&s->lock);
    done(j, &r);
}

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb)
{
    int32_t n = 0;
    while (n < na && n < nb && a[n] == b[n])
        n++;
    return n;
}

// Pages of the shared KV cache that the slots without a job hold (their caches, kept for
// prefix reuse, are given up when a running sequence needs the room).
static int32_t idle_pages(const tw_sched *s)
{
    struct tw_ctx_kv kv;
    tw_ctx_kv(s->c, &kv);
    int32_t n = 0;
    for (int i = 0; i < s->p.n_slots; i++)
        if (!s->slots[i].job)
            n += (tw_ctx_seq_past(s->c, i) + kv.page - 1) / kv.page;
    return n;
}

// Empties the cache of the least recently used slot without a job that holds pages. False
// when there is none.
static bool evict_idle(tw_sched *s)
{
    int best = -1;
    for (int i = 0; i < s->p.n_slots; i++)
        if (!s->slots[i].job && tw_ctx_seq_past(s->c, i) > 0 &&
            (best < 0 || s->slots[i].used < s->slots[best].used))
            best = i;
    if (best >= 0)
        tw_ctx_seq_truncate(s->c, best, 0);
    return best >= 0;
}

// Puts job j into a free slot: the one whose cache shares the longest prefix with the
// prompt, else the least recently used. Returns false when none is free, or when the shared
// cache (free pages and those of idle caches) lacks room for the prompt's new tokens and a
// page for each running sequence to grow into (vLLM's watermark): the job waits.
static bool admit(tw_sched *s, struct tw_job *j)
{
    struct tw_ctx_kv kv;
    tw_ctx_kv(s->c, &kv);
    // At least the prompt's last token runs, so that its logits come out: prefixes of at most
    // n_prompt - 1 count. best: the free slot; src: any slot (running or idle) with the longest
    // prefix in whole pages, which it lends when that beats best's own (shared, not copied).
    int best = -1, src = -1, active = 0;
    int32_t best_len = -1, src_len = 0;
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        int32_t len = common_prefix(tw_ctx_seq_tokens(s->c, i), tw_ctx_seq_past(s->c, i),
                                    j->prompt, j->n_prompt - 1);
        if (len / kv.page * kv.page > src_len)
            src = i, src_len = len / kv.page * kv.page;
        active += sl->job != NULL;
        if (!sl->job && (len > best_len || (len == best_len && sl->used < s->slots[best].used)))
            best = i, best_len = len;
    }
    if (best < 0)
        return false;
    if (src == best || src_len <= best_len)
        src = -1;
    int32_t kept = (best_len + kv.page - 1) / kv.page;
    int32_t need = (j->n_prompt + kv.page - 1) / kv.page - kept + active;
    if (active > 0 && need > kv.free + idle_pages(s) - kept)
        return false;
    struct slot *sl = &s->slots[best];
    int rc = tw_gen_begin(&sl->g, s->m, j->prompt, j->n_prompt, &j->gen, j->on_text, j->ud);
    if (rc != 0) {
        fail(j, rc, tw_error_msg());
        return true;
    }
    int32_t keep;
    if (src >= 0) {
        keep = tw_ctx_seq_share(s->c, best, src, src_len);
    } else {
        tw_ctx_seq_truncate(s->c, best, best_len);
        keep = tw_ctx_seq_past(s->c, best); // fewer when best_len fell inside a shared page
    }
    sl->job = j;
    sl->feed = j->prompt;
    sl->n_feed = j->n_prompt;
    sl->fed = keep;
    sl->reused = keep;
    sl->generating = false;
    sl->t_first = 0;
    sl->t_admit = now();
    pthread_mutex_lock(&s->lock);
    s->st.busy++;
    s->st.prompt_tokens += j->n_prompt;
    s->st.reused_tokens += keep;
    s->st.shared_tokens += src >= 0 ? keep : 0;
    pthread_mutex_unlock(&s->lock);
    return true;
}

// Takes the queued jobs that were cancelled or whose client left; the rest stay in order.
static void sweep_queue(tw_sched *s, double t)
{
    pthread_mutex_lock(&s->lock);
    struct tw_job **pp = &s->head, *gone = NULL, *last = NULL;
    while (*pp) {
        struct tw_job *j = *pp;
        bool late = j->deadline > 0 && t > j->deadline;
        if (s->cancel_all || atomic_load(&j->cancel) || late || (j->alive && !j->alive(j->ud))) {
            *pp = j->next;
            j->next = gone;
            gone = j;
            s->queued--;
        } else {
            last = j;
            pp = &j->next;
        }
    }
    s->tail = last;
    pthread_mutex_unlock(&s->lock);
    while (gone) {
        struct tw_job *j = gone;
        gone = j->next;
        cancelled(j, j->deadline > 0 && t > j->deadline);
    }
}

static struct tw_job *pop(tw_sched *s)
{
    struct tw_job *j = s->head;
    if (j) {
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        j->next = NULL;
    }
    return j;
}

static bool any_active(const tw_sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++)
        if (s->slots[i].job)
            return true;
    return false;
}

static bool any_free(const tw_sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++)
        if (!s->slots[i].job)
            return true;
    return false;
}

// Takes run k (of n) out of the step.
static int drop_run(tw_sched *s, int k, int n)
{
    memmove(s->runs + k, s->runs + k + 1, (size_t)(n - k - 1) * sizeof *s->runs);
    memmove(s->run_slot + k, s->run_slot + k + 1, (size_t)(n - k - 1) * sizeof *s->run_slot);
    return n - 1;
}

// Sends slot i's sequence back to the queue's front in all but name: its pages go back to the
// pool and it will feed again what it had — its prompt, or once it generates, the prompt, the
// tokens generated and the pending one (vLLM's preemption by recomputation) — before it
// samples on. Its generation state (text, stop strings, sampler) carries on.
static bool preempt(tw_sched *s, int i)
{
    struct slot *sl = &s->slots[i];
    if (sl->generating) {
        int32_t past = tw_ctx_seq_past(s->c, i);
        tw_vec_clear(&sl->resume);
        if (tw_vec_append(&sl->resume, tw_ctx_seq_tokens(s->c, i), (size_t)past) != 0 ||
            tw_vec_push(&sl->resume, &sl->tok) != 0)
            return false;
        sl->feed = sl->resume.data;
        sl->n_feed = (int32_t)sl->resume.len;
        sl->generating = false;
    }
    sl->fed = 0;
    tw_ctx_seq_truncate(s->c, i, 0);
    pthread_mutex_lock(&s->lock);
    s->st.preempted++;
    pthread_mutex_unlock(&s->lock);
    return true;
}

// Makes the step's n runs fit the free pages of the shared cache: first the caches of idle
// slots go (least recently used first), then prompt chunks wait (the last ones first), then
// running sequences are preempted, the latest admitted first. Returns the runs left; the
// first run of the earliest admitted sequence always fits (a sequence alone fits the pool).
static int fit_pages(tw_sched *s, int n)
{
    for (;;) {
        struct tw_ctx_kv kv;
        tw_ctx_kv(s->c, &kv);
        int32_t need = 0;
        for (int k = 0; k < n; k++)
            need += tw_ctx_seq_pages_needed(s->c, s->runs[k].seq, s->runs[k].n);
        if (need <= kv.free || n == 0)
            return n;
        if (evict_idle(s))
            continue;
        int last_prompt = -1, latest = -1;
        for (int k = 0; k < n; k++)
            if (!s->slots[s->run_slot[k]].generating)
                last_prompt = k;
        if (last_prompt >= 0 && n > 1) {
            n = drop_run(s, last_prompt, n);
            continue;
        }
        // The latest admitted active slot other than the earliest one in the step.
        int keep = s->run_slot[0];
        for (int k = 1; k < n; k++)
            if (s->slots[s->run_slot[k]].t_admit < s->slots[keep].t_admit)
                keep = s->run_slot[k];
        for (int i = 0; i < s->p.n_slots; i++)
            if (s->slots[i].job && i != keep && tw_ctx_seq_past(s->c, i) > 0 &&
                (latest < 0 || s->slots[i].t_admit > s->slots[latest].t_admit))
                latest = i;
        if (latest < 0 || !preempt(s, latest)) {
            // Nothing left to free: the earliest sequence's run alone (it fits, or its decode
            // reports the full cache).
            for (int k = n - 1; k >= 0; k--)
                if (s->run_slot[k] != keep)
                    n = drop_run(s, k, n);
            return n;
        }
        for (int k = 0; k < n; k++)
            if (s->run_slot[k] == latest) {
                n = drop_run(s, k, n);
                break;
            }
    }
}

// Streams the text of the tokens drawn last step (tw_gen_flush), ending the jobs that a stop
// string or their caller ends there.
static void flush_all(tw_sched *s)
{
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        bool fin = false;
        if (!sl->job || !sl->g.pending)
            continue;
        int rc = tw_gen_flush(&sl->g, &fin);
        if (rc != 0 || fin)
            finish_slot(s, sl, rc, false);
    }
}

// One step: every active slot's next piece in one forward pass; while the GPU runs it, the
// text of the tokens drawn last step goes out (detokenising and streaming overlap the pass);
// then each slot draws its next token. A slot whose job a stop string ended meanwhile has
// had its token run for nothing (it stays in the slot's cache, for prefix reuse).
static void step(tw_sched *s)
{
    double t = now();
    int n = 0;
    int32_t budget = s->p.n_batch;
    // Cancelled, abandoned and late jobs leave first.
    for (int i = 0; i < s->p.n_slots; i++) {
        struct slot *sl = &s->slots[i];
        struct tw_job *j = sl->job;
        if (!j)
            continue;
        bool late = j->deadline > 0 && t > j->deadline;
        if (s->cancel_all || atomic_load(&j->cancel) || late || (j->alive && !j->alive(j->ud))) {
            tw_gen_cancel(&sl->g);
            finish_slot(s, sl, 0, late);
        }
    }
    // Decode tokens, then prompt chunks with what is left of the batch.
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->p.n_slots && budget > 0; i++) {
            struct slot *sl = &s->slots[i];
            if (!sl->job || sl->generating != (pass == 0))
                continue;
            struct tw_ctx_run *r = &s->runs[n];
            r->seq = i;
            if (sl->generating) {
                r->n = 1;
                r->tokens = &sl->tok;
            } else {
                int32_t left = sl->n_feed - sl->fed;
                r->n = left < budget ? left : budget;
                r->tokens = sl->feed + sl->fed;
            }
            budget -= r->n;
            s->run_slot[n++] = i;
        }
    n = fit_pages(s, n);
    if (n == 0) {
        flush_all(s);
        return;
    }
    double t0 = now();
    int rc = tw_ctx_decode_runs(s->c, s->runs, n, s->logits);
    flush_all(s);
    int64_t used = 0;
    for (int i = 0; i < s->p.n_slots; i++)
        used += tw_ctx_seq_past(s->c, i);
    struct tw_ctx_kv kv;
    tw_ctx_kv(s->c, &kv);
    pthread_mutex_lock(&s->lock);
    s->st.kv_used = used;
    s->st.kv_pages_used = kv.pages - kv.free;
    s->st.steps++;
    pthread_mutex_unlock(&s->lock);
    s->step++;
    size_t V = (size_t)s->m->cfg.n_vocab;
    // One read of the step's logits for every slot that samples: their largest top, or all.
    int32_t top = 0;
    bool whole = false;
    for (int k = 0; rc == 0 && s->dev && k < n; k++) {
        struct slot *sl = &s->slots[s->run_slot[k]];
        if (sl->job && (sl->generating || sl->fed + s->runs[k].n >= sl->n_feed)) {
            int32_t want = tw_sampler_top_n(&sl->g.s);
            whole |= want == 0;
            top = want > top ? want : top;
        }
    }
    if (rc == 0 && s->dev && (whole || top > 0))
        rc = whole ? tw_ctx_logits(s->c, s->logits) : tw_ctx_top(s->c, top, s->vals, s->ids);
    double t1 = now();
    pthread_mutex_lock(&s->lock);
    s->st.busy_s += t1 - t0;
    pthread_mutex_unlock(&s->lock);
    for (int k = 0; k < n; k++) {
        int i = s->run_slot[k];
        struct slot *sl = &s->slots[i];
        sl->used = s->step;
        if (!sl->job) // ended by flush_all
            continue;
        if (rc != 0) {
            finish_slot(s, sl, rc, false);
            continue;
        }
        if (!sl->generating) {
            sl->fed += s->runs[k].n;
            if (sl->fed < sl->n_feed)
                continue;
            sl->generating = true;
        }
        bool fin = false;
        bool room = tw_ctx_seq_past(s->c, i) < tw_ctx_n_ctx(s->c);
        int src =
            s->dev && !whole
                ? tw_gen_sample_top(&sl->g, s->vals + (size_t)k * (size_t)top,
                                    s->ids + (size_t)k * (size_t)top, top, room, &sl->tok, &fin)
                : tw_gen_sample(&sl->g, s->logits + (size_t)k * V, room, &sl->tok, &fin);
        if (src == 0 && !fin && sl->t_first == 0) // the first token goes out at once
            src = tw_gen_flush(&sl->g, &fin);
        if (sl->t_first == 0)
            sl->t_first = now();
        if (src != 0 || fin)
            finish_slot(s, sl, src, false);
    }
}

static void *engine(void *arg)
{
    tw_sched *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        // Admit waiting jobs into free slots, in order, while the cache has room (a job it
        // has none for goes back to the queue's front; while being admitted, a job is not
        // counted as waiting).
        while (s->head && any_free(s)) {
            struct tw_job *j = pop(s);
            pthread_mutex_unlock(&s->lock);
            bool gone = s->cancel_all || atomic_load(&j->cancel);
            bool in = !gone && admit(s, j);
            if (gone)
                cancelled(j, false);
            pthread_mutex_lock(&s->lock);
            if (!gone && !in) {
                j->next = s->head;
                s->head = j;
                if (!s->tail)
                    s->tail = j;
                s->queued++;
                break;
            }
        }
        bool active = any_active(s);
        if (!active && !s->head) {
            if (s->stopping)
                break;
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        double t = now();
        if (s->head)
            sweep_queue(s, t);
        step(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

// Frees what tw_sched_new allocated (the thread is not running).
static void release(tw_sched *s)
{
    for (int i = 0; s->slots && i < s->p.n_slots; i++)
        tw_vec_free(&s->slots[i].resume);
    tw_free(s->slots);
    tw_free(s->logits);
    tw_free(s->vals);
    tw_free(s->ids);
    tw_free(s->runs);
    tw_free(s->run_slot);
    tw_ctx_free(s->c);
    tw_free(s);
}

int tw_sched_new(const struct tw_model *m, struct tw_backend *be, const struct tw_sched_params *p,
                 tw_sched **out)
{
    if (!tw_arch_is_decoder(m->cfg.arch))
        return tw_error_set(TW_EINVAL, "%s: an encoder cannot generate", m->path);
    if (!m->tok)
        return tw_error_set(TW_EINVAL, "%s: the model has no tokenizer", m->path);
    tw_sched *s = tw_calloc(1, sizeof *s);
    if (!s)
        return tw_error_set(TW_ENOMEM, "scheduler: out of memory");
    s->m = m;
    s->p = *p;
    if (s->p.n_slots <= 0)
        s->p.n_slots = 4;
    if (s->p.n_batch <= 0)
        s->p.n_batch = 512;
    if (s->p.n_batch < s->p.n_slots)
        s->p.n_batch = s->p.n_slots;
    if (s->p.n_queue <= 0)
        s->p.n_queue = 4 * s->p.n_slots;
    struct tw_ctx_params cp = {
        .n_ctx = s->p.n_ctx, .n_batch = s->p.n_batch, .n_seq = s->p.n_slots, .n_kv = s->p.n_kv
    };
    int rc = tw_ctx_new(m, be, &cp, &s->c);
    if (rc != 0) {
        tw_free(s);
        return rc;
    }
    s->p.n_ctx = tw_ctx_n_ctx(s->c);
    size_t V = (size_t)m->cfg.n_vocab, N = (size_t)s->p.n_slots;
    s->slots = tw_calloc(N, sizeof *s->slots);
    s->logits = tw_malloc_array(N * V, sizeof(float));
    s->runs = tw_calloc(N, sizeof *s->runs);
    s->run_slot = tw_calloc(N, sizeof *s->run_slot);
    s->dev = tw_ctx_logits_on_device(s->c);
    tw_ctx_keep_logits(s->c, s->dev);
    s->vals = tw_malloc_array(N * TW_TOPK_MAX, sizeof(float));
    s->ids = tw_malloc_array(N * TW_TOPK_MAX, sizeof(int32_t));
    for (int i = 0; s->slots && i < s->p.n_slots; i++)
        tw_vec_init(&s->slots[i].resume, sizeof(int32_t));
    struct tw_ctx_kv kv;
    tw_ctx_kv(s->c, &kv);
    s->st.n_slots = s->p.n_slots;
    s->st.n_ctx = s->p.n_ctx;
    s->st.kv_page = kv.page;
    s->st.kv_pages = kv.pages;
    if (!s->slots || !s->logits || !s->runs || !s->run_slot || !s->vals || !s->ids) {
        rc = tw_error_set(TW_ENOMEM, "scheduler: out of memory");
    } else {
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
        if (pthread_create(&s->thread, NULL, engine, s) != 0) {
            pthread_cond_destroy(&s->cond);
            pthread_mutex_destroy(&s->lock);
            rc = tw_error_set(TW_EIO, "scheduler: cannot start the engine thread");
        }
    }
    if (rc != 0) {
        release(s);
        return rc;
    }
    *out = s;
    return 0;
}

void tw_sched_free(tw_sched *s, bool cancel)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    s->cancel_all |= cancel;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    release(s);
}

int tw_sched_submit(tw_sched *s, struct tw_job *j)
{
    if (j->n_prompt <= 0)
        return tw_error_set(TW_EINVAL, "the prompt is empty");
    if (j->n_prompt >= s->p.n_ctx)
        return tw_error_set(TW_ELIMIT,
                            "the prompt's %d tokens leave no room in the context of %d positions",
                            j->n_prompt, s->p.n_ctx);
    for (int32_t i = 0; i < j->n_prompt; i++)
        if (j->prompt[i] < 0 || j->prompt[i] >= s->m->cfg.n_vocab)
            return tw_error_set(TW_EINVAL, "token id %d at position %d is outside 0..%d",
                                j->prompt[i], i, s->m->cfg.n_vocab - 1);
    j->next = NULL;
    j->t_submit = now();
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (s->stopping)
        rc = tw_error_set(TW_ESTATE, "the server is stopping");
    // Queued jobs that free slots will take at the engine's next turn (it admits between
    // steps) are not waiting for a slot: they do not count against the queue's limit.
    else if (s->queued >= s->p.n_queue + (s->p.n_slots - s->st.busy))
        rc = tw_error_set(TW_ELIMIT, "the queue is full (%d requests waiting)",
                          s->queued - (s->p.n_slots - s->st.busy));
    if (rc == 0) {
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        s->queued++;
        pthread_cond_signal(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

void tw_sched_wake(tw_sched *s)
{
    pthread_mutex_lock(&s->lock);
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void tw_sched_stats(tw_sched *s, struct tw_sched_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->queued = s->queued;
    pthread_mutex_unlock(&s->lock);
}

int32_t tw_sched_n_ctx(const tw_sched *s)
{
    return s->p.n_ctx;
}

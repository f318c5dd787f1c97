// The continuous-batching scheduler on the golden tiny Llama: eight greedy requests over three
// slots (joining and leaving the batch as others finish) each give exactly the tokens that
// tw_generate gives alone, also when six slots share a KV cache of one sequence's size
// (idle caches given up, sequences preempted and recomputed); a prompt a running generation
// has cached is shared from it; a repeated prompt reuses its
// cached prefix; a full queue, an empty
// or oversized prompt and a stopping scheduler are refused; a cancelled request, a client
// that went away and a passed deadline end their jobs; every job gets exactly one on_done.
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/str.h"
#include "check.h"
#include "golden_models.h"
#include "model/generate.h"
#include "serve/sched.h"

#define NJOB 8

struct req {
    struct tw_job job;
    tw_vec prompt;
    tw_str text;
    struct tw_job_result res;
    int n_done;
    bool gone; // alive() says false
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
};

static int on_text(void *ud, const char *t, size_t n)
{
    struct req *r = ud;
    return tw_str_append(&r->text, t, n);
}

static bool alive(void *ud)
{
    struct req *r = ud;
    return !r->gone;
}

static void on_done(void *ud, const struct tw_job_result *res)
{
    struct req *r = ud;
    pthread_mutex_lock(r->lock);
    r->res = *res;
    r->n_done++;
    pthread_cond_broadcast(r->cond);
    pthread_mutex_unlock(r->lock);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

static void req_init(struct req *r, const struct tw_model *m, const char *prompt, int max_tokens)
{
    memset(r, 0, sizeof *r);
    tw_vec_init(&r->prompt, sizeof(int32_t));
    tw_str_init(&r->text);
    REQUIRE(tw_tokenizer_encode(m->tok, prompt, strlen(prompt), TW_TOK_ADD_SPECIAL, &r->prompt,
                                NULL) == 0);
    r->lock = &lock;
    r->cond = &cond;
    r->job.prompt = r->prompt.data;
    r->job.n_prompt = (int32_t)r->prompt.len;
    tw_sampler_params_default(&r->job.gen.sampling);
    r->job.gen.sampling.temperature = 0; // greedy
    r->job.gen.max_tokens = max_tokens;
    r->job.gen.ignore_eos = true;
    r->job.on_text = on_text;
    r->job.alive = alive;
    r->job.on_done = on_done;
    r->job.ud = r;
}

static void req_free(struct req *r)
{
    tw_vec_free(&r->prompt);
    tw_str_free(&r->text);
}

static void wait_done(struct req *r)
{
    pthread_mutex_lock(&lock);
    while (r->n_done == 0)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
}

// The NJOB prompts submitted together, prompt i for max[i] tokens: each ends at its limit
// with the text want[i]. r: the requests (req_free them).
static void run_all(tw_sched *s, const struct tw_model *m, const char *const *prompts,
                    const int *max, tw_str *want, struct req *r)
{
    for (int i = 0; i < NJOB; i++) {
        req_init(&r[i], m, prompts[i], max[i]);
        CHECK_OK(tw_sched_submit(s, &r[i].job));
    }
    for (int i = 0; i < NJOB; i++) {
        wait_done(&r[i]);
        CHECK_EQ_INT(r[i].res.rc, 0);
        CHECK_EQ_INT(r[i].res.finish, TW_FINISH_LENGTH);
        CHECK_EQ_INT(r[i].res.n_gen, max[i]);
        CHECK_EQ_STR(tw_str_cstr(&r[i].text), tw_str_cstr(&want[i]));
        CHECK(r[i].res.ttft_s > 0 && r[i].res.total_s >= r[i].res.ttft_s);
    }
}

int main(void)
{
    struct golden g;
    golden_open(&g, "llama");
    struct tw_model *m = NULL;
    test_need_source(tw_model_open(g.dir, &m) == 0, g.dir);
    struct tw_backend *be = NULL;
    REQUIRE(tw_backend_cpu_new(2, &be) == 0);
    const char *prompts[NJOB] = {
        "Mr. Speaker, Mr. Vice President, members of Congress",
        "The state of the Union is strong.",
        "We the people",
        "Tonight I want to talk about the economy and jobs, and about the future",
        "Fellow citizens",
        "It is a great honor",
        "In the year that has passed since I last addressed you",
        "Thank you",
    };
    int maxt[NJOB] = { 24, 9, 40, 17, 30, 5, 33, 12 };

    // Alone: tw_generate in a context of one sequence; the long ones fill most of a slot.
    int maxl[NJOB] = { 90, 100, 80, 85, 100, 85, 70, 100 };
    tw_str want[NJOB], want_long[NJOB];
    tw_ctx *one = NULL;
    struct tw_ctx_params cp = { .n_ctx = 128 };
    REQUIRE(tw_ctx_new(m, be, &cp, &one) == 0);
    for (int i = 0; i < 2 * NJOB; i++) {
        struct req r;
        int n = i < NJOB ? maxt[i] : maxl[i - NJOB];
        tw_str *w = i < NJOB ? &want[i] : &want_long[i - NJOB];
        req_init(&r, m, prompts[i % NJOB], n);
        struct tw_gen_result gr;
        tw_ctx_truncate(one, 0);
        CHECK_OK(tw_generate(one, m, r.job.prompt, r.job.n_prompt, &r.job.gen, on_text, &r, &gr));
        CHECK_EQ_INT(gr.n_gen, n);
        tw_gen_result_free(&gr);
        tw_str_init(w);
        CHECK_OK(tw_str_append(w, tw_str_cstr(&r.text), r.text.v.len));
        req_free(&r);
    }
    tw_ctx_free(one);

    // Together: three slots, prompt chunks of at most 16 tokens per step.
    tw_sched *s = NULL;
    struct tw_sched_params sp = { .n_slots = 3, .n_ctx = 128, .n_batch = 16, .n_queue = 16 };
    REQUIRE(tw_sched_new(m, be, &sp, &s) == 0);
    struct req r[NJOB];
    run_all(s, m, prompts, maxt, want, r);
    struct tw_sched_stats st;
    tw_sched_stats(s, &st);
    CHECK_EQ_INT(st.busy, 0);
    CHECK_EQ_INT(st.queued, 0);
    int64_t gen = 0;
    for (int i = 0; i < NJOB; i++)
        gen += maxt[i];
    CHECK_EQ_INT(st.gen_tokens, gen);
    CHECK(st.steps < gen); // several sequences shared steps

    // Six slots on a shared cache of 128 positions (4 pages of 32), where the eight long
    // requests (up to 4 pages each) cannot all fit at once: the same texts.
    tw_sched *small = NULL;
    struct tw_sched_params sps = {
        .n_slots = 6, .n_ctx = 128, .n_batch = 16, .n_queue = 16, .n_kv = 128
    };
    REQUIRE(tw_sched_new(m, be, &sps, &small) == 0);
    struct req rs[NJOB];
    run_all(small, m, prompts, maxl, want_long, rs);
    tw_sched_stats(small, &st);
    CHECK_EQ_INT(st.kv_page, 32);
    CHECK_EQ_INT(st.kv_pages, 4);
    CHECK(st.kv_pages_used <= 4);
    CHECK(st.preempted > 0);
    fprintf(stderr, "shared cache of 4 pages: %lld preemptions, %lld steps\n",
            (long long)st.preempted, (long long)st.steps);
    tw_sched_free(small, false);
    for (int i = 0; i < NJOB; i++)
        req_free(&rs[i]);

    // A prompt that a running generation has in its cache: the second slot shares its whole
    // pages (no recomputation) and gives the text it gives alone.
    tw_sched *two = NULL;
    struct tw_sched_params sp2 = { .n_slots = 2, .n_ctx = 1024, .n_queue = 4 };
    REQUIRE(tw_sched_new(m, be, &sp2, &two) == 0);
    const char *lp = "Mr. Speaker, Mr. Vice President, members of Congress, distinguished guests, "
                     "and fellow Americans: tonight I report on the state of our Union";
    struct req ra, rb, alone;
    req_init(&ra, m, lp, 1000);
    req_init(&rb, m, lp, 7);
    REQUIRE(rb.job.n_prompt > 33);
    req_init(&alone, m, lp, 7);
    struct tw_gen_result gr;
    REQUIRE(tw_ctx_new(m, be, &cp, &one) == 0);
    CHECK_OK(tw_generate(one, m, alone.job.prompt, alone.job.n_prompt, &alone.job.gen, on_text,
                         &alone, &gr));
    tw_gen_result_free(&gr);
    tw_ctx_free(one);
    CHECK_OK(tw_sched_submit(two, &ra.job));
    for (int t = 0; t < 100000; t++) { // until its prompt is in the cache
        tw_sched_stats(two, &st);
        if (st.steps >= 2)
            break;
        usleep(100);
    }
    CHECK_OK(tw_sched_submit(two, &rb.job));
    wait_done(&rb);
    CHECK_EQ_STR(tw_str_cstr(&rb.text), tw_str_cstr(&alone.text));
    CHECK(rb.res.n_reused >= 32);
    tw_sched_stats(two, &st);
    CHECK_EQ_INT(st.shared_tokens, rb.res.n_reused);
    atomic_store(&ra.job.cancel, true);
    tw_sched_wake(two);
    wait_done(&ra);
    CHECK_EQ_INT(ra.res.finish, TW_FINISH_CANCEL);
    tw_sched_free(two, false);
    req_free(&ra), req_free(&rb), req_free(&alone);

    // The same prompt twice: the second time all but its last token come from a slot's cache.
    for (int k = 0; k < 2; k++) {
        struct req again;
        req_init(&again, m, prompts[3], maxt[3]);
        CHECK_OK(tw_sched_submit(s, &again.job));
        wait_done(&again);
        if (k == 1)
            CHECK_EQ_INT(again.res.n_reused, again.job.n_prompt - 1);
        CHECK_EQ_STR(tw_str_cstr(&again.text), tw_str_cstr(&want[3]));
        req_free(&again);
    }

    // Refusals.
    struct req bad;
    req_init(&bad, m, "x", 4);
    bad.job.n_prompt = 0;
    CHECK_EQ_INT(tw_sched_submit(s, &bad.job), TW_EINVAL);
    int32_t big[200] = { 0 };
    bad.job.prompt = big;
    bad.job.n_prompt = 128;
    CHECK_EQ_INT(tw_sched_submit(s, &bad.job), TW_ELIMIT);
    CHECK(strstr(tw_error_msg(), "128 tokens") != NULL);
    big[3] = m->cfg.n_vocab;
    bad.job.n_prompt = 10;
    CHECK_EQ_INT(tw_sched_submit(s, &bad.job), TW_EINVAL);
    CHECK_EQ_INT(bad.n_done, 0);
    req_free(&bad);

    // Cancellation, a client gone, a deadline passed: long generations end early.
    struct req c3[3];
    for (int i = 0; i < 3; i++) {
        req_init(&c3[i], m, prompts[i], 100);
        CHECK_OK(tw_sched_submit(s, &c3[i].job));
    }
    atomic_store(&c3[0].job.cancel, true);
    tw_sched_wake(s);
    pthread_mutex_lock(&lock);
    c3[1].gone = true;
    pthread_mutex_unlock(&lock);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    c3[2].job.deadline = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - 1;
    for (int i = 0; i < 3; i++) {
        wait_done(&c3[i]);
        CHECK_EQ_INT(c3[i].res.finish, TW_FINISH_CANCEL);
        CHECK(c3[i].res.n_gen < 100);
    }
    CHECK(c3[2].res.timed_out);
    CHECK(!c3[0].res.timed_out);

    // A full queue: one slot busy with a long job, a queue of two.
    tw_sched_free(s, false);
    struct tw_sched_params sp1 = { .n_slots = 1, .n_ctx = 128, .n_queue = 2 };
    REQUIRE(tw_sched_new(m, be, &sp1, &s) == 0);
    struct req q[4];
    int refused = 0, accepted = 0;
    for (int i = 0; i < 4; i++) {
        req_init(&q[i], m, prompts[i], 90);
        int rc = tw_sched_submit(s, &q[i].job);
        for (int t = 0; i == 0 && t < 10000; t++) { // until the first job holds the slot
            tw_sched_stats(s, &st);
            if (st.busy == 1)
                break;
            usleep(100);
        }
        if (rc == TW_ELIMIT) {
            refused++;
            CHECK(strstr(tw_error_msg(), "queue is full") != NULL);
        } else {
            CHECK_OK(rc);
            accepted++;
        }
    }
    CHECK_EQ_INT(refused, 1);
    CHECK_EQ_INT(accepted, 3);
    // Stopping with cancel: every accepted job still gets its one on_done.
    tw_sched_free(s, true);
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(q[i].n_done, i < accepted ? 1 : 0);
        req_free(&q[i]);
    }
    for (int i = 0; i < 3; i++)
        req_free(&c3[i]);
    for (int i = 0; i < NJOB; i++) {
        CHECK_EQ_INT(r[i].n_done, 1);
        req_free(&r[i]);
        tw_str_free(&want[i]);
        tw_str_free(&want_long[i]);
    }
    tw_backend_free(be);
    tw_model_close(m);
    golden_close(&g);
    return check_report("serve_test_sched");
}

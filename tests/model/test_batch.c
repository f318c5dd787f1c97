// Continuous batching in the engine: several sequences in one context (tw_ctx_decode_runs),
// fed on a random schedule that mixes prompt chunks and single decode tokens in each step,
// give every run's logits equal to those of the same tokens run alone in a context of one
// sequence — on the golden tiny decoders (Llama, Mistral with its sliding window, Qwen3 with
// q/k norms) and on both CPU backends, the sequences' caches paged in one pool (pages of 4
// positions, so that each sequence's pages interleave with the others'). Bad runs are refused
// and change nothing; truncating a sequence and running it again gives its logits again; a
// full pool refuses a step whole, and a truncated sequence's pages serve another; sequences
// share a prefix's pages.
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "golden_models.h"
#include "model/context.h"
#include "model/model.h"

#define NSEQ   5
#define MAXLEN 48
#define TOL    1e-4

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

// The golden model `name`, opened (tw_model_close it, golden_close g), and its vocabulary size.
static struct tw_model *open_golden(struct golden *g, const char *name, size_t *V)
{
    golden_open(g, name);
    struct tw_model *m = NULL;
    test_need_source(tw_model_open(g->dir, &m) == 0, g->dir);
    *V = (size_t)m->cfg.n_vocab;
    return m;
}

static void model(const char *name, struct tw_backend *be)
{
    struct golden g;
    size_t V;
    struct tw_model *m = open_golden(&g, name, &V);
    int32_t toks[NSEQ][MAXLEN], len[NSEQ];
    float *want[NSEQ];

    // The reference: each sequence alone, every position's logits.
    tw_ctx *one = NULL;
    struct tw_ctx_params p1 = { .n_ctx = 64 };
    REQUIRE(tw_ctx_new(m, be, &p1, &one) == 0);
    for (int s = 0; s < NSEQ; s++) {
        len[s] = 8 + (int32_t)(next() % (MAXLEN - 8));
        for (int32_t i = 0; i < len[s]; i++)
            toks[s][i] = (int32_t)(next() % V);
        want[s] = tw_malloc_array((size_t)len[s] * V, sizeof(float));
        REQUIRE(want[s]);
        tw_ctx_truncate(one, 0);
        CHECK_OK(tw_ctx_decode(one, toks[s], len[s], want[s], true));
    }
    tw_ctx_free(one);

    // The batch: at each step a random subset of the unfinished sequences, each with a chunk
    // of 1 .. 20 tokens (above 16 the attention takes its prefill path), within a batch of 32;
    // the pool holds what the sequences need and two pages more.
    tw_ctx *c = NULL;
    int32_t pages = 2;
    for (int s = 0; s < NSEQ; s++)
        pages += (len[s] + 3) / 4;
    pages = pages > 16 ? pages : 16;
    struct tw_ctx_params p = {
        .n_ctx = 64, .n_batch = 32, .n_seq = NSEQ, .page = 4, .n_kv = 4 * pages
    };
    REQUIRE(tw_ctx_new(m, be, &p, &c) == 0);
    CHECK_EQ_INT(tw_ctx_n_seq(c), NSEQ);
    float *logits = tw_malloc_array(NSEQ * V, sizeof(float));
    REQUIRE(logits);
    double worst = 0;
    int steps = 0, multi = 0;
    for (;;) {
        struct tw_ctx_run runs[NSEQ];
        int n = 0, total = 0;
        for (int s = 0; s < NSEQ; s++) {
            int32_t at = tw_ctx_seq_past(c, s), left = len[s] - at;
            if (left <= 0 || next() % 3 == 0)
                continue;
            int32_t k = 1 + (int32_t)(next() % 20);
            k = k < left ? k : left;
            if (total + k > 32)
                continue;
            runs[n++] = (struct tw_ctx_run){ .seq = s, .n = k, .tokens = toks[s] + at };
            total += k;
        }
        bool done = true;
        for (int s = 0; s < NSEQ; s++)
            done &= tw_ctx_seq_past(c, s) == len[s];
        if (done)
            break;
        if (n == 0)
            continue;
        // Shuffle the order of the runs: any order is allowed.
        for (int i = n - 1; i > 0; i--) {
            int j = (int)(next() % (uint32_t)(i + 1));
            struct tw_ctx_run t = runs[i];
            runs[i] = runs[j];
            runs[j] = t;
        }
        int32_t at[NSEQ];
        for (int i = 0; i < n; i++)
            at[i] = tw_ctx_seq_past(c, runs[i].seq);
        CHECK_OK(tw_ctx_decode_runs(c, runs, n, logits));
        steps++;
        multi += n > 1;
        for (int i = 0; i < n; i++) {
            int32_t last = at[i] + runs[i].n - 1;
            double e = golden_rel(logits + (size_t)i * V, want[runs[i].seq] + (size_t)last * V, V);
            worst = e > worst ? e : worst;
            CHECK_EQ_INT(tw_ctx_seq_past(c, runs[i].seq), at[i] + runs[i].n);
        }
    }
    if (worst > TOL)
        fprintf(stderr, "%s/%s: batched logits off by %g\n", name, be->ops->name, worst);
    CHECK(worst <= TOL);
    CHECK(multi > 3);
    for (int s = 0; s < NSEQ; s++)
        CHECK(memcmp(tw_ctx_seq_tokens(c, s), toks[s], (size_t)len[s] * 4) == 0);
    struct tw_ctx_kv kv;
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.page, 4);
    CHECK_EQ_INT(kv.pages, pages);
    int32_t held = 0;
    for (int s = 0; s < NSEQ; s++)
        held += (len[s] + 3) / 4;
    CHECK_EQ_INT(kv.free, pages - held);

    // Bad runs: nothing changes.
    struct tw_ctx_run bad[2] = { { .seq = 0, .n = 1, .tokens = toks[0] },
                                 { .seq = 0, .n = 1, .tokens = toks[1] } };
    CHECK_EQ_INT(tw_ctx_decode_runs(c, bad, 2, logits), TW_EINVAL);
    bad[1].seq = NSEQ;
    CHECK_EQ_INT(tw_ctx_decode_runs(c, bad, 2, logits), TW_EINVAL);
    int32_t big[64] = { 0 };
    bad[1] = (struct tw_ctx_run){ .seq = 1, .n = 64, .tokens = big };
    CHECK_EQ_INT(tw_ctx_decode_runs(c, bad, 2, logits), TW_ELIMIT);
    int32_t oov = (int32_t)V;
    bad[1] = (struct tw_ctx_run){ .seq = 1, .n = 1, .tokens = &oov };
    CHECK_EQ_INT(tw_ctx_decode_runs(c, bad, 2, logits), TW_EINVAL);
    for (int s = 0; s < NSEQ; s++)
        CHECK_EQ_INT(tw_ctx_seq_past(c, s), len[s]);

    // Drop the last 8 tokens of two sequences and run them again, together, in one step.
    tw_ctx_seq_truncate(c, 1, len[1] - 8);
    tw_ctx_seq_truncate(c, 3, len[3] - 8);
    CHECK_EQ_INT(tw_ctx_seq_past(c, 1), len[1] - 8);
    struct tw_ctx_run again[2] = { { .seq = 3, .n = 8, .tokens = toks[3] + len[3] - 8 },
                                   { .seq = 1, .n = 8, .tokens = toks[1] + len[1] - 8 } };
    CHECK_OK(tw_ctx_decode_runs(c, again, 2, logits));
    CHECK(golden_rel(logits, want[3] + (size_t)(len[3] - 1) * V, V) <= TOL);
    CHECK(golden_rel(logits + V, want[1] + (size_t)(len[1] - 1) * V, V) <= TOL);
    tw_free(logits);
    for (int s = 0; s < NSEQ; s++)
        tw_free(want[s]);
    tw_ctx_free(c);
    tw_model_close(m);
    golden_close(&g);
}

// A pool of 6 pages of 4 positions shared by three sequences of up to 16: when it is full a
// step is refused whole (TW_ELIMIT, nothing changed), truncating gives pages back, and a
// sequence on another's old pages has the logits it has alone.
static void pool(const char *name, struct tw_backend *be)
{
    struct golden g;
    size_t V;
    struct tw_model *m = open_golden(&g, name, &V);
    int32_t t[3][16];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 16; i++)
            t[s][i] = (int32_t)(next() % V);
    float *want = tw_malloc_array(16 * V, sizeof(float)), *got = tw_malloc_array(16 * V, 4);
    REQUIRE(want && got);
    tw_ctx *one = NULL, *c = NULL;
    struct tw_ctx_params p1 = { .n_ctx = 16 };
    REQUIRE(tw_ctx_new(m, be, &p1, &one) == 0);
    CHECK_OK(tw_ctx_decode(one, t[2], 8, want, true)); // sequence 2's 8 tokens alone

    struct tw_ctx_params p = { .n_ctx = 16, .n_batch = 4, .n_seq = 3, .page = 4, .n_kv = 24 };
    REQUIRE(tw_ctx_new(m, be, &p, &c) == 0);
    struct tw_ctx_kv kv;
    CHECK_OK(tw_ctx_decode_seq(c, 0, t[0], 16, NULL, false)); // 4 pages, in 4 steps
    CHECK_OK(tw_ctx_decode_seq(c, 1, t[1], 8, NULL, false));  // 2
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.free, 0);
    CHECK_EQ_INT(tw_ctx_seq_pages_needed(c, 1, 1), 1);
    CHECK_EQ_INT(tw_ctx_seq_pages_needed(c, 2, 8), 2);
    CHECK_EQ_INT(tw_ctx_decode_seq(c, 2, t[2], 1, got, false), TW_ELIMIT);
    struct tw_ctx_run runs[2] = { { .seq = 2, .n = 1, .tokens = t[2] },
                                  { .seq = 1, .n = 1, .tokens = t[1] + 8 } };
    CHECK_EQ_INT(tw_ctx_decode_runs(c, runs, 2, got), TW_ELIMIT);
    CHECK_EQ_INT(tw_ctx_seq_past(c, 1), 8);
    CHECK_EQ_INT(tw_ctx_seq_past(c, 2), 0);

    // Sequence 0 keeps 5 positions (2 pages); sequence 2 takes the other two, in 2 steps of
    // 4, the second after a refused 12-token decode (3 pages: refused before any step).
    tw_ctx_seq_truncate(c, 0, 5);
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.free, 2);
    CHECK_EQ_INT(tw_ctx_decode_seq(c, 2, t[2], 12, got, false), TW_ELIMIT);
    CHECK_EQ_INT(tw_ctx_seq_past(c, 2), 0);
    CHECK_OK(tw_ctx_decode_seq(c, 2, t[2], 8, got, true));
    CHECK(golden_rel(got, want, 8 * V) <= TOL);
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.free, 0);
    // Sequence 0 grows within its pages (positions 5..7), then needs a page that is not there.
    CHECK_OK(tw_ctx_decode_seq(c, 0, t[0] + 5, 3, NULL, false));
    CHECK_EQ_INT(tw_ctx_decode_seq(c, 0, t[0] + 8, 1, NULL, false), TW_ELIMIT);
    CHECK_EQ_INT(tw_ctx_seq_past(c, 0), 8);
    // A pool smaller than one sequence, and a page size that is not a power of two: refused.
    tw_ctx *bad = NULL;
    struct tw_ctx_params pb = { .n_ctx = 16, .n_seq = 2, .page = 4, .n_kv = 12 };
    CHECK_EQ_INT(tw_ctx_new(m, be, &pb, &bad), TW_EINVAL);
    pb.n_kv = 0, pb.page = 6;
    CHECK_EQ_INT(tw_ctx_new(m, be, &pb, &bad), TW_EINVAL);
    tw_ctx_free(c);
    tw_ctx_free(one);
    tw_free(want), tw_free(got);
    tw_model_close(m);
    golden_close(&g);
}

// Rows [from, to) of got (to - from rows) against the same rows of want.
static bool rows_close(const float *got, const float *want, int from, int to, size_t V)
{
    return golden_rel(got, want + (size_t)from * V, (size_t)(to - from) * V) <= TOL;
}

// Sequence 1 shares sequence 0's first two pages (of 4 positions) instead of computing them:
// both go on with the logits they have alone; truncating sequence 0 inside a shared page keeps
// the page before it and leaves sequence 1's intact; the pages go back to the pool only when
// neither holds them.
static void share(const char *name, struct tw_backend *be)
{
    struct golden g;
    size_t V;
    struct tw_model *m = open_golden(&g, name, &V);
    int32_t t0[28], t1[28];
    for (int i = 0; i < 28; i++) {
        t0[i] = (int32_t)(next() % V);
        t1[i] = i < 10 ? t0[i] : (int32_t)(next() % V);
    }
    float *want0 = tw_malloc_array(28 * V, sizeof(float)), *want1 = tw_malloc_array(28 * V, 4);
    float *got = tw_malloc_array(28 * V, sizeof(float));
    REQUIRE(want0 && want1 && got);
    tw_ctx *one = NULL, *c = NULL;
    struct tw_ctx_params p1 = { .n_ctx = 32 };
    REQUIRE(tw_ctx_new(m, be, &p1, &one) == 0);
    CHECK_OK(tw_ctx_decode(one, t0, 28, want0, true));
    tw_ctx_truncate(one, 0);
    CHECK_OK(tw_ctx_decode(one, t1, 28, want1, true));

    struct tw_ctx_params p = { .n_ctx = 32, .n_batch = 8, .n_seq = 2, .page = 4, .n_kv = 64 };
    REQUIRE(tw_ctx_new(m, be, &p, &c) == 0);
    struct tw_ctx_kv kv;
    CHECK_OK(tw_ctx_decode_seq(c, 0, t0, 16, NULL, false));
    CHECK_EQ_INT(tw_ctx_seq_share(c, 1, 0, 10), 8); // the 2 whole pages of the 10 in common
    CHECK_EQ_INT(tw_ctx_seq_past(c, 1), 8);
    CHECK(memcmp(tw_ctx_seq_tokens(c, 1), t0, 8 * sizeof(int32_t)) == 0);
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.free, 12);
    CHECK_OK(tw_ctx_decode_seq(c, 1, t1 + 8, 16, got, true));
    CHECK(rows_close(got, want1, 8, 24, V));
    CHECK_OK(tw_ctx_decode_seq(c, 0, t0 + 16, 8, got, true));
    CHECK(rows_close(got, want0, 16, 24, V));
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.free, 16 - 6 - 4);
    tw_ctx_seq_truncate(c, 0, 6); // inside page 1, shared: back to 4
    CHECK_EQ_INT(tw_ctx_seq_past(c, 0), 4);
    CHECK_OK(tw_ctx_decode_seq(c, 0, t0 + 4, 24, got, true));
    CHECK(rows_close(got, want0, 4, 28, V));
    CHECK_OK(tw_ctx_decode_seq(c, 1, t1 + 24, 4, got, true));
    CHECK(rows_close(got, want1, 24, 28, V));
    tw_ctx_seq_truncate(c, 0, 0);
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.free, 16 - 7); // sequence 1's 7 pages, the first of them shared no more
    tw_ctx_seq_truncate(c, 1, 0);
    tw_ctx_kv(c, &kv);
    CHECK_EQ_INT(kv.free, 16);
    tw_ctx_free(c);
    tw_ctx_free(one);
    tw_free(want0), tw_free(want1), tw_free(got);
    tw_model_close(m);
    golden_close(&g);
}

int main(void)
{
    struct tw_backend *fast = NULL;
    REQUIRE(tw_backend_cpu_new(2, &fast) == 0);
    const char *names[] = { "llama", "mistral", "qwen3" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        model(names[i], tw_backend_cpu_ref());
        model(names[i], fast);
    }
    pool("llama", tw_backend_cpu_ref());
    pool("mistral", fast);
    share("llama", tw_backend_cpu_ref());
    share("qwen3", fast);
    tw_backend_free(fast);
    return check_report("model_test_batch");
}

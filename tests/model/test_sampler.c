// Tests model/sampler: the generator against xoshiro256**'s published outputs; greedy and its
// tie rule; frequencies of 100k seeded draws against distributions computed here in double;
// exact top-p and min-p boundaries; exact penalty values; seeds; -inf, +inf and NaN logits;
// the whole chain on a 150k vocabulary against a plain full-sort reference; sampling from the
// row's top logits (tw_topk) against sampling the whole row, token for token, over long seeded
// runs with penalties; no allocation per token; and the stop-string matcher, piece by piece
// and against a reference on random text.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "model/sampler.h"
#include "tensor/backend.h"

static struct tw_sampler_params plain(float temperature)
{
    struct tw_sampler_params p;
    tw_sampler_params_default(&p);
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    return p;
}

// ---- generator

static void test_rng(void)
{
    // rand_xoshiro's reference test: state {1, 2, 3, 4}, outputs of the reference C code.
    static const uint64_t want[] = { 11520u,
                                     0u,
                                     1509978240u,
                                     1215971899390074240u,
                                     1216172134540287360u,
                                     607988272756665600u,
                                     16172922978634559625u,
                                     8476171486693032832u,
                                     10595114339597558777u,
                                     2904607092377533576u };
    struct tw_rng r = { { 1, 2, 3, 4 } };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(tw_rng_next(&r) == want[i]);

    // Seeding: four splitmix64 outputs (check.h's own splitmix64; the first from 0 is the
    // published 0xE220A8397B1DCDAF).
    tw_rng_seed(&r, 0);
    CHECK(r.s[0] == 0xE220A8397B1DCDAFull);
    CHECK(r.s[1] == 0x6E789E6AA1B965F4ull);
    uint64_t sm = 12345;
    tw_rng_seed(&r, 12345);
    for (int i = 0; i < 4; i++)
        CHECK(r.s[i] == check_rand(&sm));

    double lo = 1, hi = 0, mean = 0;
    for (int i = 0; i < 100000; i++) {
        double u = tw_rng_uniform(&r);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        mean += u / 100000;
    }
    CHECK(lo >= 0 && lo < 1e-3 && hi < 1 && hi > 1 - 1e-3);
    CHECK(fabs(mean - 0.5) < 0.005); // sd of the mean: 0.00091
}

// ---- parameters

static void test_params(void)
{
    struct tw_sampler_params p;
    tw_sampler_params_default(&p);
    CHECK(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f);
    CHECK(p.repetition_penalty == 1.0f && p.frequency_penalty == 0 && p.presence_penalty == 0);
    CHECK(p.penalty_last_n == 64 && p.seed == 0);

    long live = tw_mem_live();
    struct tw_sampler s;
    struct tw_sampler_params bad[9];
    for (int i = 0; i < 9; i++)
        tw_sampler_params_default(&bad[i]);
    bad[0].temperature = -0.1f;
    bad[1].temperature = NAN;
    bad[2].top_k = -1;
    bad[3].top_p = 1.5f;
    bad[4].top_p = NAN;
    bad[5].min_p = -0.1f;
    bad[6].repetition_penalty = 0;
    bad[7].penalty_last_n = -2;
    bad[8].frequency_penalty = INFINITY;
    for (int i = 0; i < 9; i++) {
        CHECK_EQ_INT(tw_sampler_init(&s, &bad[i], 10), TW_EINVAL);
        CHECK(strstr(tw_error_msg(), "sampler: ") == tw_error_msg());
    }
    CHECK_EQ_INT(tw_sampler_init(&s, &p, 0), TW_EINVAL);
    CHECK_EQ_INT(tw_mem_live(), live);

    // A failed allocation at any point of init leaves nothing behind.
    p.repetition_penalty = 1.1f;
    int ok = 0;
    for (long k = 1; k <= 10 && !ok; k++) {
        tw_mem_fail_after(k);
        int rc = tw_sampler_init(&s, &p, 1000);
        tw_mem_fail_after(0);
        if (rc == 0) {
            ok = 1;
            tw_sampler_free(&s);
        } else {
            CHECK_EQ_INT(rc, TW_ENOMEM);
        }
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK(ok);
}

// ---- greedy, -inf, NaN, +inf

static void test_greedy(void)
{
    struct tw_sampler s;
    struct tw_sampler_params p = plain(0);
    REQUIRE(tw_sampler_init(&s, &p, 4) == 0);
    float a[] = { 1, 3, 2, 3 };
    CHECK_EQ_INT(tw_sampler_sample(&s, a), 1); // tie between 1 and 3: the lowest id
    float b[] = { NAN, -INFINITY, -5, NAN };
    CHECK_EQ_INT(tw_sampler_sample(&s, b), 2);
    CHECK(b[0] == -INFINITY && b[3] == -INFINITY); // NaN is read as -inf, in place
    float c[] = { -INFINITY, NAN, -INFINITY, NAN };
    CHECK_EQ_INT(tw_sampler_sample(&s, c), TW_EINVAL);
    CHECK_EQ_STR(tw_error_msg(), "sampler: every logit is -inf or NaN");
    float d[] = { 1, INFINITY, 7, INFINITY };
    CHECK_EQ_INT(tw_sampler_sample(&s, d), 1);
    tw_sampler_free(&s);

    // Sampling: -inf and NaN are never drawn, even at a huge temperature.
    p = plain(1000);
    REQUIRE(tw_sampler_init(&s, &p, 4) == 0);
    int hits[4] = { 0 };
    for (int i = 0; i < 2000; i++) {
        float e[] = { -INFINITY, 0, NAN, -50 };
        int32_t t = tw_sampler_sample(&s, e);
        REQUIRE(t >= 0 && t < 4);
        hits[t]++;
    }
    CHECK(hits[0] == 0 && hits[2] == 0 && hits[1] > 900 && hits[3] > 900);
    float f[] = { NAN, NAN, NAN, -INFINITY };
    CHECK_EQ_INT(tw_sampler_sample(&s, f), TW_EINVAL);
    const struct tw_sampler_candidate *cand;
    size_t n;
    float g[] = { NAN, NAN, NAN, -INFINITY };
    CHECK_EQ_INT(tw_sampler_candidates(&s, g, &cand, &n), TW_EINVAL);
    // +inf logits share all the probability.
    memset(hits, 0, sizeof hits);
    for (int i = 0; i < 2000; i++) {
        float e[] = { INFINITY, 1e30f, INFINITY, 0 };
        hits[tw_sampler_sample(&s, e)]++;
    }
    CHECK(hits[1] == 0 && hits[3] == 0 && hits[0] > 900 && hits[2] > 900);
    tw_sampler_free(&s);
}

// Reference argmax (lowest id on ties), NaN and -inf skipped.
static int32_t ref_argmax(const float *x, int32_t n)
{
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(x[i]) && x[i] != -INFINITY && (best < 0 || x[i] > x[best]))
            best = i;
    return best;
}

static void test_top_k_one(void)
{
    const int32_t V = 1000;
    float *x = malloc(V * sizeof *x), *y = malloc(V * sizeof *y);
    REQUIRE(x && y);
    uint64_t seed = 7;
    static const float temps[] = { 0.05f, 0.7f, 1, 5, 1000 };
    for (int round = 0; round < 50; round++) {
        for (int32_t i = 0; i < V; i++) // few levels: many ties for the maximum
            x[i] = (float)(check_rand(&seed) % 16) - 8;
        x[check_rand(&seed) % V] = NAN;
        int32_t want = ref_argmax(x, V);
        for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
            struct tw_sampler s;
            struct tw_sampler_params p = plain(temps[t]);
            p.top_k = 1;
            p.top_p = 0.3f;
            p.min_p = 0.01f;
            p.seed = round;
            REQUIRE(tw_sampler_init(&s, &p, V) == 0);
            memcpy(y, x, V * sizeof *y);
            CHECK_EQ_INT(tw_sampler_sample(&s, y), want);
            tw_sampler_free(&s);
        }
        struct tw_sampler s;
        struct tw_sampler_params p = plain(0);
        REQUIRE(tw_sampler_init(&s, &p, V) == 0);
        CHECK_EQ_INT(tw_sampler_sample(&s, x), want);
        tw_sampler_free(&s);
    }
    free(x);
    free(y);
}

// ---- distributions

// The distribution the chain should give, computed independently in double: order by logit,
// top-k, softmax at T, top-p (smallest prefix with mass >= top_p), min-p, renormalise.
static void expected_dist(const float *logits, int n, double temp, int top_k, double top_p,
                          double min_p, double *out)
{
    int order[64], m = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(logits[i]) || logits[i] == -INFINITY)
            continue;
        int j = m++;
        while (j > 0 && logits[order[j - 1]] < logits[i]) { // stable: ties keep id order
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    if (top_k > 0 && top_k < m)
        m = top_k;
    double w[64], total = 0;
    for (int j = 0; j < m; j++)
        total += w[j] = exp(((double)logits[order[j]] - logits[order[0]]) / temp);
    int keep = m;
    double cum = 0;
    for (int j = 0; j < m; j++) {
        cum += w[j] / total;
        if (cum >= top_p) {
            keep = j + 1;
            break;
        }
    }
    double sum = 0;
    for (int i = 0; i < n; i++)
        out[i] = 0;
    for (int j = 0; j < keep; j++)
        if (w[j] / total >= min_p * (w[0] / total))
            sum += out[order[j]] = w[j];
    for (int i = 0; i < n; i++)
        out[i] /= sum;
}

static void check_frequencies(const struct tw_sampler_params *p, const float *logits, int n,
                              int expect_kept)
{
    double want[64];
    expected_dist(logits, n, p->temperature, p->top_k, p->top_p, p->min_p, want);
    int kept = 0;
    for (int i = 0; i < n; i++)
        kept += want[i] > 0;
    CHECK_EQ_INT(kept, expect_kept);

    enum { N = 100000 };
    struct tw_sampler s;
    REQUIRE(tw_sampler_init(&s, p, n) == 0);
    long hits[64] = { 0 };
    float x[64];
    for (int i = 0; i < N; i++) {
        memcpy(x, logits, n * sizeof *x);
        int32_t t = tw_sampler_sample(&s, x);
        REQUIRE(t >= 0 && t < n);
        hits[t]++;
    }
    tw_sampler_free(&s);

    double chi2 = 0;
    for (int i = 0; i < n; i++) {
        if (want[i] == 0) {
            CHECK_EQ_INT(hits[i], 0); // filtered tokens are never drawn
            continue;
        }
        double e = N * want[i], sd = sqrt(N * want[i] * (1 - want[i]));
        chi2 += (hits[i] - e) * (hits[i] - e) / e;
        if (fabs(hits[i] - e) > 5 * sd + 1)
            fprintf(stderr, "token %d: %ld draws, expected %.1f\n", i, hits[i], e);
        CHECK(fabs(hits[i] - e) <= 5 * sd + 1);
    }
    // chi-square with kept - 1 degrees of freedom: mean df, sd sqrt(2 df); a wrong
    // distribution at 100k draws lands in the hundreds.
    double df = kept - 1;
    if (df > 0) {
        if (!(chi2 < df + 6 * sqrt(2 * df) + 5))
            fprintf(stderr, "chi2 %.2f with %g degrees of freedom\n", chi2, df);
        CHECK(chi2 < df + 6 * sqrt(2 * df) + 5);
    }
}

static void test_frequencies(void)
{
    const float l[] = { 1.0f, 2.5f, -1.0f, 0.3f, 2.0f, -INFINITY, 1.7f, NAN, -0.5f, 0.9f };
    // softmax at T=1, by weight: ids 1 .374, 4 .227, 6 .168, 0 .084, 9 .076, 3 .042, 8 .019, 2
    // .011
    struct tw_sampler_params p = plain(1);
    p.seed = 1;
    check_frequencies(&p, l, 10, 8);
    p.temperature = 0.7f;
    p.top_p = 0.8f; // at T=0.7 the cumulative runs .478 .712 .865: 3 tokens
    p.seed = 2;
    check_frequencies(&p, l, 10, 3);
    p = plain(1.3f);
    p.min_p = 0.3f; // p / p_max: 1 .68 .54 .315 | .292: 4 tokens
    p.seed = 3;
    check_frequencies(&p, l, 10, 4);
    p = plain(2);
    p.top_k = 3;
    p.seed = 4;
    check_frequencies(&p, l, 10, 3);
    p = plain(0.9f);
    p.top_k = 6;
    p.top_p = 0.9f;
    p.min_p = 0.1f; // top-p: cumulative .895 | .964: 5 tokens; min-p keeps those 5
    p.seed = 5;
    check_frequencies(&p, l, 10, 5);
}

// The candidates the chain keeps, by id (tests on small vocabularies).
static size_t kept_ids(const struct tw_sampler_params *p, const float *logits, int n, int32_t *ids,
                       float *probs)
{
    struct tw_sampler s;
    REQUIRE(tw_sampler_init(&s, p, n) == 0);
    float x[64];
    memcpy(x, logits, n * sizeof *x);
    const struct tw_sampler_candidate *c;
    size_t m = 0;
    REQUIRE(tw_sampler_candidates(&s, x, &c, &m) == 0);
    for (int i = 0; i < n; i++)
        probs[i] = 0;
    for (size_t j = 0; j < m; j++)
        probs[c[j].id] = c[j].p;
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (probs[i] > 0)
            ids[k++] = i;
    tw_sampler_free(&s);
    return k;
}

static void test_top_p_boundaries(void)
{
    // Four equal logits: every probability is exactly 0.25, every cumulative sum exact.
    const float eq[] = { 2, 2, -INFINITY, 2, 2 };
    int32_t ids[8];
    float pr[8];
    struct tw_sampler_params p = plain(1);
    p.top_p = 0.5f; // cumulative 0.5 reaches 0.5 exactly: two tokens, the lowest ids
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 2);
    CHECK(ids[0] == 0 && ids[1] == 1 && pr[0] == 0.5f && pr[1] == 0.5f);
    p.top_p = nextafterf(0.5f, 1); // just over: a third is needed
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 3);
    CHECK(ids[2] == 3 && fabsf(pr[3] - 1.0f / 3) < 1e-7f);
    p.top_p = nextafterf(0.5f, 0);
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 2);
    p.top_p = 0.75f;
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 3);
    p.top_p = 0.25f;
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 1);
    CHECK(ids[0] == 0 && pr[0] == 1.0f);
    p.top_p = 0; // at least one token is always kept
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 1);
    p.top_p = 1;
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 4);
    CHECK(pr[4] == 0.25f && pr[2] == 0);
    p.top_p = nextafterf(1, 0);
    CHECK_EQ_INT(kept_ids(&p, eq, 5, ids, pr), 4);

    // 0.5, 0.3, 0.2: the set grows at each cumulative step; kept ones are renormalised.
    const float l[] = { logf(0.3f), logf(0.5f), logf(0.2f) };
    static const struct {
        float top_p;
        size_t n;
    } cases[] = { { 0.49f, 1 }, { 0.51f, 2 }, { 0.79f, 2 }, { 0.81f, 3 }, { 0.99f, 3 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p.top_p = cases[i].top_p;
        CHECK_EQ_INT(kept_ids(&p, l, 3, ids, pr), cases[i].n);
    }
    p.top_p = 0.7f;
    CHECK_EQ_INT(kept_ids(&p, l, 3, ids, pr), 2);
    CHECK(fabsf(pr[1] - 0.625f) < 1e-6f && fabsf(pr[0] - 0.375f) < 1e-6f && pr[2] == 0);
}

static void test_min_p(void)
{
    const float l[] = { logf(0.05f), logf(0.5f), logf(0.15f), logf(0.3f) };
    int32_t ids[8];
    float pr[8];
    struct tw_sampler_params p = plain(1);
    p.min_p = 0.25f; // threshold 0.125: 0.5 0.3 0.15
    CHECK_EQ_INT(kept_ids(&p, l, 4, ids, pr), 3);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 3);
    CHECK(fabsf(pr[1] - 0.5f / 0.95f) < 1e-6f && fabsf(pr[2] - 0.15f / 0.95f) < 1e-6f);
    p.min_p = 0.5f; // threshold 0.25: 0.5 0.3
    CHECK_EQ_INT(kept_ids(&p, l, 4, ids, pr), 2);
    p.min_p = 0.09f; // threshold 0.045: all
    CHECK_EQ_INT(kept_ids(&p, l, 4, ids, pr), 4);
    // The temperature comes first: at T=0.5 the ratios to the maximum are squared
    // (0.36, 0.09, 0.01), so 0.25 keeps two.
    p = plain(0.5f);
    p.min_p = 0.25f;
    CHECK_EQ_INT(kept_ids(&p, l, 4, ids, pr), 2);
    // min_p = 1 keeps exactly the tokens tied with the maximum (p >= p_max is inclusive).
    const float t[] = { 1, 3, 3, 2.9999f, 3 };
    p = plain(1);
    p.min_p = 1;
    CHECK_EQ_INT(kept_ids(&p, t, 5, ids, pr), 3);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 4 && fabsf(pr[4] - 1.0f / 3) < 1e-7f);
    // top-p and min-p together: the smaller of the two sets.
    const float u[] = { logf(0.4f), logf(0.3f), logf(0.2f), logf(0.1f) };
    p.min_p = 0.3f;  // threshold 0.12: three
    p.top_p = 0.65f; // two
    CHECK_EQ_INT(kept_ids(&p, u, 4, ids, pr), 2);
    p.top_p = 0.95f; // four; min-p three
    CHECK_EQ_INT(kept_ids(&p, u, 4, ids, pr), 3);
}

// ---- penalties

static void penalised(const struct tw_sampler_params *p, const int32_t *hist, int nh,
                      const float *in, float *out, int n)
{
    struct tw_sampler s;
    REQUIRE(tw_sampler_init(&s, p, n) == 0);
    for (int i = 0; i < nh; i++)
        REQUIRE(tw_sampler_accept(&s, hist[i]) == 0);
    memcpy(out, in, n * sizeof *out);
    tw_sampler_apply_penalties(&s, out);
    tw_sampler_free(&s);
}

static void test_penalties(void)
{
    const float l[] = { 2, -2, 0, 1, -1, 3 };
    const int32_t hist[] = { 0, 1, 2, 0 }; // counts: 0 twice, 1 and 2 once
    float x[6];
    struct tw_sampler_params p = plain(0);
    p.repetition_penalty = 1.5f;
    penalised(&p, hist, 4, l, x, 6);
    CHECK(x[0] == 2.0f / 1.5f && x[1] == -2.0f * 1.5f && x[2] == 0);
    CHECK(x[3] == 1 && x[4] == -1 && x[5] == 3); // not seen: untouched

    p = plain(0);
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    penalised(&p, hist, 4, l, x, 6);
    CHECK(x[0] == 0.75f && x[1] == -2.75f && x[2] == -0.75f && x[3] == 1 && x[5] == 3);

    p.repetition_penalty = 2; // repetition first, then frequency and presence
    penalised(&p, hist, 4, l, x, 6);
    CHECK(x[0] == -0.25f && x[1] == -4.75f && x[2] == -0.75f && x[4] == -1);

    // Negative penalties (OpenAI allows -2..2) raise the logits of seen tokens.
    p = plain(0);
    p.frequency_penalty = -1;
    p.presence_penalty = -0.5f;
    penalised(&p, hist, 4, l, x, 6);
    CHECK(x[0] == 4.5f && x[1] == -0.5f && x[2] == 1.5f);

    // The window: only the last two tokens (2, 0) count.
    p = plain(0);
    p.repetition_penalty = 2;
    p.penalty_last_n = 2;
    penalised(&p, hist, 4, l, x, 6);
    CHECK(x[0] == 1 && x[1] == -2 && x[2] == 0 && x[3] == 1);
    p.penalty_last_n = 0; // off
    penalised(&p, hist, 4, l, x, 6);
    CHECK(memcmp(x, l, sizeof l) == 0);

    // Default window of 64: a token 65 tokens back no longer counts; -1 counts everything.
    int32_t longh[70];
    longh[0] = 5;
    for (int i = 1; i < 70; i++)
        longh[i] = i < 5 ? 5 : 4; // 5 five times, then 4 sixty-five times
    p = plain(0);
    p.frequency_penalty = 0.01f;
    penalised(&p, longh, 70, l, x, 6);
    CHECK(x[5] == 3 && x[4] == -1 - 64 * 0.01f);
    penalised(&p, longh, 64 + 4, l, x, 6); // the window still holds one 5
    CHECK(x[5] == 3 - 0.01f && x[4] == -1 - 63 * 0.01f);
    p.penalty_last_n = -1;
    penalised(&p, longh, 70, l, x, 6);
    CHECK(x[5] == 3 - 5 * 0.01f && x[4] == -1 - 65 * 0.01f);

    // -inf stays -inf; NaN becomes -inf when sampled.
    const float m[] = { -INFINITY, NAN, 1 };
    const int32_t h2[] = { 0, 1 };
    p = plain(0);
    p.repetition_penalty = 1.3f;
    p.presence_penalty = -5;
    penalised(&p, h2, 2, m, x, 3);
    CHECK(x[0] == -INFINITY && isnan(x[1]) && x[2] == 1);

    // The penalty changes the greedy choice, and reset forgets the history.
    struct tw_sampler s;
    p = plain(0);
    p.repetition_penalty = 1.1f;
    REQUIRE(tw_sampler_init(&s, &p, 3) == 0);
    CHECK_OK(tw_sampler_accept(&s, 0));
    float y[] = { 3, 2.9f, 0 };
    CHECK_EQ_INT(tw_sampler_sample(&s, y), 1);
    CHECK(y[0] == 3 / 1.1f); // candidates see the penalised logits
    tw_sampler_reset(&s);
    float z[] = { 3, 2.9f, 0 };
    CHECK_EQ_INT(tw_sampler_sample(&s, z), 0);
    CHECK_EQ_INT(tw_sampler_accept(&s, 3), TW_EINVAL);
    CHECK_EQ_INT(tw_sampler_accept(&s, -1), TW_EINVAL);
    tw_sampler_free(&s);

    // The ring and the distinct list stay consistent over a long run: compare the counts
    // with a recount of the last n tokens.
    p = plain(1);
    p.frequency_penalty = 1;
    p.penalty_last_n = 37;
    REQUIRE(tw_sampler_init(&s, &p, 20) == 0);
    int32_t all[3000];
    uint64_t seed = 99;
    for (int i = 0; i < 3000; i++) {
        all[i] = (int32_t)(check_rand(&seed) % 20);
        REQUIRE(tw_sampler_accept(&s, all[i]) == 0);
        if (i % 97 == 0 || i == 2999) {
            float z20[20] = { 0 };
            tw_sampler_apply_penalties(&s, z20);
            int cnt[20] = { 0 };
            for (int j = i; j >= 0 && j > i - 37; j--)
                cnt[all[j]]++;
            int same = 1;
            for (int t = 0; t < 20; t++)
                same &= z20[t] == -(float)cnt[t];
            CHECK(same);
        }
    }
    tw_sampler_free(&s);
}

// ---- seeds

static void draw_many(uint64_t seed, int32_t *out, int n, struct tw_sampler *keep)
{
    struct tw_sampler s;
    struct tw_sampler_params p = plain(1);
    p.seed = seed;
    REQUIRE(tw_sampler_init(&s, &p, 8) == 0);
    for (int i = 0; i < n; i++) {
        float x[8] = { 0, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f };
        out[i] = tw_sampler_sample(&s, x);
    }
    if (keep)
        *keep = s;
    else
        tw_sampler_free(&s);
}

static void test_seeds(void)
{
    enum { N = 2000 };
    static int32_t a[N], b[N], c[N];
    struct tw_sampler s;
    draw_many(7, a, N, &s);
    draw_many(7, b, N, NULL);
    CHECK(memcmp(a, b, sizeof a) == 0);
    draw_many(8, c, N, NULL);
    int differ = 0;
    for (int i = 0; i < N; i++)
        differ += a[i] != c[i];
    CHECK(differ > N / 2); // ~7/8 expected for 8 near-uniform tokens

    // Each draw takes exactly one output of the generator.
    struct tw_rng r;
    tw_rng_seed(&r, 7);
    for (int i = 0; i < N; i++)
        tw_rng_next(&r);
    CHECK(memcmp(r.s, s.rng.s, sizeof r.s) == 0);
    // Reset reseeds: the same sequence again.
    tw_sampler_reset(&s);
    for (int i = 0; i < N; i++) {
        float x[8] = { 0, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f };
        b[i] = tw_sampler_sample(&s, x);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    tw_sampler_free(&s);

    // The draw is the inverse CDF of the kept distribution: with one candidate at p=1 of two
    // at a hundredth, u < 0.5 picks the heavier one (candidates walk heaviest first after top-p).
    struct tw_sampler_params p = plain(1);
    p.seed = 3;
    p.top_p = 0.999f;
    REQUIRE(tw_sampler_init(&s, &p, 2) == 0);
    tw_rng_seed(&r, 3);
    for (int i = 0; i < 200; i++) {
        float x[2] = { 0, 0 }; // equal: top-p orders 0 then 1
        double u = tw_rng_uniform(&r);
        CHECK_EQ_INT(tw_sampler_sample(&s, x), u < 0.5 ? 0 : 1);
    }
    tw_sampler_free(&s);
}

// ---- a large vocabulary against a plain reference

static int cmp_logit_ref(const void *pa, const void *pb)
{
    const struct tw_sampler_candidate *a = pa, *b = pb;
    if (a->logit != b->logit)
        return a->logit > b->logit ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int cmp_weight_ref(const void *pa, const void *pb)
{
    const struct tw_sampler_candidate *a = pa, *b = pb;
    if (a->p != b->p)
        return a->p > b->p ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

// The chain written plainly: full sorts, then each step in the documented order. The weights
// use the same float expression as the sampler, so boundaries fall identically. probs[id].
static void reference_chain(const struct tw_sampler_params *p, const float *logits, int32_t n,
                            struct tw_sampler_candidate *c, double *probs)
{
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        probs[i] = 0;
        if (!isnan(logits[i]) && logits[i] != -INFINITY)
            c[m++] = (struct tw_sampler_candidate){ i, logits[i], 0 };
    }
    qsort(c, m, sizeof *c, cmp_logit_ref);
    if (p->top_k > 0 && p->top_k < m)
        m = p->top_k;
    double total = 0;
    for (int32_t i = 0; i < m; i++)
        total += c[i].p = expf((c[i].logit - c[0].logit) / p->temperature);
    qsort(c, m, sizeof *c, cmp_weight_ref);
    int32_t keep = m;
    if (p->top_p < 1) {
        double cum = 0;
        for (int32_t i = 0; i < m; i++) {
            cum += c[i].p;
            if (cum >= (double)p->top_p * total) {
                keep = i + 1;
                break;
            }
        }
    }
    double sum = 0;
    for (int32_t i = 0; i < keep; i++)
        if (c[i].p >= p->min_p * c[0].p)
            sum += probs[c[i].id] = c[i].p;
    for (int32_t i = 0; i < keep; i++)
        probs[c[i].id] /= sum;
}

static void test_large_vocab(void)
{
    const int32_t V = 151936; // Qwen2's vocabulary
    float *x = malloc(V * sizeof *x), *y = malloc(V * sizeof *y);
    double *want = malloc(V * sizeof *want), *got = malloc(V * sizeof *got);
    char *in = malloc(V);
    struct tw_sampler_candidate *work = malloc(V * sizeof *work);
    REQUIRE(x && y && want && got && in && work);
    static const struct {
        float temp;
        int32_t k;
        float top_p, min_p;
    } cfg[] = {
        { 0.8f, 40, 0.95f, 0.05f }, { 1.0f, 0, 0.9f, 0 },   { 1.5f, 0, 1, 0.1f },
        { 0.3f, 1000, 0.5f, 0 },    { 1.0f, 0, 1, 0 },      { 2.0f, 5000, 0.99f, 0.001f },
        { 1.0f, 0, 0.3f, 0.2f },    { 0.6f, 77, 1, 0.02f },
    };
    uint64_t seed = 2024;
    for (int shape = 0; shape < 4; shape++) {
        for (int32_t i = 0; i < V; i++) {
            // 0: smooth (sum of uniforms, a bell); 1: few levels (ties everywhere);
            // 2: ascending with the id; 3: descending (sorted inputs for the selection)
            double u = 0;
            for (int j = 0; j < 4; j++)
                u += (double)(check_rand(&seed) >> 11) * 0x1.0p-53;
            x[i] = shape == 0   ? (float)((u - 2) * 6)
                   : shape == 1 ? (float)(check_rand(&seed) % 12)
                   : shape == 2 ? (float)i * 1e-3f
                                : -(float)i * 1e-3f;
        }
        for (int j = 0; j < 100; j++)
            x[check_rand(&seed) % V] = j % 2 ? NAN : -INFINITY;
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
            struct tw_sampler_params p = plain(cfg[c].temp);
            p.top_k = cfg[c].k;
            p.top_p = cfg[c].top_p;
            p.min_p = cfg[c].min_p;
            reference_chain(&p, x, V, work, want);
            struct tw_sampler s;
            REQUIRE(tw_sampler_init(&s, &p, V) == 0);
            memcpy(y, x, V * sizeof *y);
            const struct tw_sampler_candidate *cand;
            size_t n;
            REQUIRE(tw_sampler_candidates(&s, y, &cand, &n) == 0);
            for (int32_t i = 0; i < V; i++) {
                got[i] = 0;
                in[i] = 0;
            }
            double total = 0;
            for (size_t i = 0; i < n; i++) {
                got[cand[i].id] = cand[i].p;
                in[cand[i].id]++;
                total += cand[i].p;
            }
            int32_t bad = 0, n_want = 0;
            for (int32_t i = 0; i < V; i++) {
                n_want += want[i] > 0;
                // Membership from the list: a probability below FLT_TRUE_MIN is 0 as a float.
                if ((want[i] > 0) != (in[i] == 1) ||
                    fabs(want[i] - got[i]) > 1e-6 * want[i] + 1e-9)
                    bad++;
            }
            if (bad)
                fprintf(stderr, "shape %d config %zu: %d of %zu tokens differ (want %d)\n", shape,
                        c, bad, n, n_want);
            CHECK_EQ_INT(bad, 0);
            CHECK(fabs(total - 1) < 1e-4);
            // Sampling from it lands on a kept token.
            memcpy(y, x, V * sizeof *y);
            int32_t t = tw_sampler_sample(&s, y);
            CHECK(t >= 0 && t < V && want[t] > 0);
            tw_sampler_free(&s);
        }
    }
    free(x);
    free(y);
    free(want);
    free(got);
    free(in);
    free(work);
}

// ---- sampling from the row's largest logits (tw_sampler_sample_top)

static void test_top_n(void)
{
    struct tw_sampler s;
    struct tw_sampler_params p = plain(0.8f);
    p.top_k = 40;
    REQUIRE(tw_sampler_init(&s, &p, 1000) == 0);
    CHECK_EQ_INT(tw_sampler_top_n(&s), 40); // no penalties: n_seen stays 0
    tw_sampler_free(&s);
    p.repetition_penalty = 1.3f;
    p.penalty_last_n = 3;
    REQUIRE(tw_sampler_init(&s, &p, 1000) == 0);
    const int32_t hist[] = { 7, 8, 7, 9, 9, 9 };
    int32_t want[] = { 41, 42, 42, 43, 42, 41 }; // distinct ids among the last three
    for (int i = 0; i < 6; i++) {
        REQUIRE(tw_sampler_accept(&s, hist[i]) == 0);
        CHECK_EQ_INT(tw_sampler_top_n(&s), want[i]);
    }
    tw_sampler_free(&s);
    // Greedy ignores top_k; the vocabulary caps the count.
    p.temperature = 0;
    p.top_k = 0;
    REQUIRE(tw_sampler_init(&s, &p, 3) == 0);
    CHECK_EQ_INT(tw_sampler_top_n(&s), 1);
    for (int i = 0; i < 3; i++)
        REQUIRE(tw_sampler_accept(&s, i) == 0);
    CHECK_EQ_INT(tw_sampler_top_n(&s), 3);
    tw_sampler_free(&s);
    // No bound: top-k off, past TW_TOPK_MAX, or a penalty that can raise a logit.
    struct tw_sampler_params none[5];
    for (int i = 0; i < 5; i++) {
        none[i] = plain(1);
        none[i].top_k = 10;
    }
    none[0].top_k = 0;
    none[1].top_k = TW_TOPK_MAX + 1;
    none[2].repetition_penalty = 0.9f;
    none[3].frequency_penalty = -0.1f;
    none[4].presence_penalty = -0.1f;
    for (int i = 0; i < 5; i++) {
        REQUIRE(tw_sampler_init(&s, &none[i], 1000) == 0);
        CHECK_EQ_INT(tw_sampler_top_n(&s), 0);
        tw_sampler_free(&s);
    }
    none[2].penalty_last_n = 0; // penalties off: the bound holds
    REQUIRE(tw_sampler_init(&s, &none[2], 1000) == 0);
    CHECK_EQ_INT(tw_sampler_top_n(&s), 10);
    tw_sampler_free(&s);
    // top_k = TW_TOPK_MAX fits until a penalty counts a token.
    p = plain(1);
    p.top_k = TW_TOPK_MAX;
    p.presence_penalty = 0.5f;
    REQUIRE(tw_sampler_init(&s, &p, 1000) == 0);
    CHECK_EQ_INT(tw_sampler_top_n(&s), TW_TOPK_MAX);
    REQUIRE(tw_sampler_accept(&s, 1) == 0);
    CHECK_EQ_INT(tw_sampler_top_n(&s), 0);
    tw_sampler_free(&s);
}

// A row of logits of one of five kinds: 0 smooth; 1 few levels (ties everywhere); 2 smooth
// with -inf, NaN and +inf sprinkled in; 3 mostly -inf (fewer finite values than top_k);
// 4 -inf and NaN only, now and then. Half the time the recent tokens get logits near the
// top, where the penalties change the order.
static void top_row(float *x, int32_t V, int kind, const int32_t *recent, int n_recent,
                    uint64_t *seed)
{
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++) {
        uint64_t r = check_rand(seed);
        float u = (float)((r >> 11) * 0x1.0p-53) * 16 - 8;
        x[i] = kind == 1 ? (float)(r % 7) - 3 : u;
        if (kind == 2 && r % 29 == 0)
            x[i] = r % 3 == 0 ? -INFINITY : r % 3 == 1 ? NAN : (r & 64) ? INFINITY : -0.0f;
        if (kind == 3 && r % 8 != 0)
            x[i] = r % 2 ? -INFINITY : NAN;
        if (kind == 4 && (r & 1023) == 0)
            x[i] = r % 2 ? -INFINITY : NAN;
        mx = x[i] > mx ? x[i] : mx;
    }
    if (kind == 4 && check_rand(seed) % 4 != 0)
        for (int32_t i = 0; i < V; i++)
            x[i] = i % 3 ? -INFINITY : NAN;
    if (kind != 4 && check_rand(seed) % 2 && isfinite(mx))
        for (int i = 0; i < n_recent; i++)
            x[recent[i]] = kind == 1 ? mx : mx - (float)(check_rand(seed) % 100) * 0.01f;
}

// Two samplers with the same parameters and seed fed the same history: one samples whole
// rows, the other their top-n from the reference tw_topk; the tokens and the generators
// must stay equal over a long sequence.
static void top_equivalence(const struct tw_sampler_params *p, int32_t V, uint64_t seed,
                            int *used_top, int *used_full)
{
    struct tw_backend *ref = tw_backend_cpu_ref();
    struct tw_sampler a, b;
    REQUIRE(tw_sampler_init(&a, p, V) == 0);
    REQUIRE(tw_sampler_init(&b, p, V) == 0);
    float *x = malloc(V * sizeof *x), *y = malloc(V * sizeof *y);
    float vals[TW_TOPK_MAX];
    int32_t ids[TW_TOPK_MAX], recent[8] = { 0 };
    REQUIRE(x && y);
    int n_recent = 0, bad = 0;
    for (int i = 0; i < 12; i++) { // a prompt
        int32_t t = (int32_t)(check_rand(&seed) % (uint64_t)V);
        REQUIRE(tw_sampler_accept(&a, t) == 0 && tw_sampler_accept(&b, t) == 0);
        recent[n_recent++ % 8] = t;
    }
    for (int step = 0; step < 150; step++) {
        int kind = (int)(check_rand(&seed) % 5);
        top_row(x, V, kind, recent, n_recent < 8 ? n_recent : 8, &seed);
        memcpy(y, x, V * sizeof *y);
        int32_t want = tw_sampler_sample(&a, y), got, n = tw_sampler_top_n(&b);
        if (n > 0) {
            // Sometimes more than needed: the answer must not change.
            int32_t more = (int32_t)(check_rand(&seed) % 3) * 7;
            n = n + more <= V && n + more <= TW_TOPK_MAX ? n + more : n;
            struct tw_tensor t = tw_tensor_f32_2d(x, 1, V);
            tw_topk(ref, &t, n, vals, ids);
            got = tw_sampler_sample_top(&b, vals, ids, n);
            ++*used_top;
        } else {
            memcpy(y, x, V * sizeof *y);
            got = tw_sampler_sample(&b, y);
            ++*used_full;
        }
        if (got != want && bad++ < 3)
            fprintf(stderr, "V %d T %g top_k %d seed %llu step %d kind %d: %d, want %d\n", V,
                    p->temperature, p->top_k, (unsigned long long)seed, step, kind, got, want);
        int32_t t = want >= 0 ? want : (int32_t)(check_rand(&seed) % (uint64_t)V);
        REQUIRE(tw_sampler_accept(&a, t) == 0 && tw_sampler_accept(&b, t) == 0);
        recent[n_recent++ % 8] = t;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(memcmp(a.rng.s, b.rng.s, sizeof a.rng.s) == 0);
    tw_sampler_free(&a);
    tw_sampler_free(&b);
    free(x);
    free(y);
}

static void test_sample_top(void)
{
    static const struct {
        float temp;
        int32_t top_k;
        float top_p, min_p, rep, freq, pres;
        int32_t last_n;
    } cfg[] = {
        { 0, 0, 1, 0, 1, 0, 0, 64 },               // greedy, no penalties
        { 0, 40, 1, 0, 1.3f, 0, 0, 64 },           // greedy, repetition
        { 0, 0, 1, 0, 1, 0.5f, 0.5f, 8 },          // greedy, frequency and presence
        { 0.8f, 1, 0.9f, 0.05f, 1.3f, 0, 0, 16 },  // top-k 1 is greedy too
        { 0.7f, 5, 1, 0, 1, 0, 0, 64 },            // plain top-k
        { 1, 5, 0.9f, 0.05f, 1.3f, 0.5f, 0, 16 },  // top-p and min-p, penalties
        { 0.8f, 40, 0.95f, 0.05f, 1, 0, 0, 64 },   // the defaults
        { 1, 40, 1, 0, 1.3f, 0.5f, 0.5f, 64 },     // every penalty
        { 2, 40, 0.8f, 0, 1, 0, 0.5f, -1 },        // the whole history
        { 0.05f, 40, 0.95f, 0.1f, 1.3f, 0, 0, 4 }, // weights underflow
        { 1.5f, 256, 1, 0, 1, 0, 0, 64 },          // top_k TW_TOPK_MAX
        { 0.6f, 256, 0.5f, 0.02f, 1, 0.5f, 0, 2 }, // fits only before any token counts
        { 1, 100, 0.99f, 0, 1, 0.5f, 0.5f, 200 },  // the bound passes TW_TOPK_MAX
        { 1, 40, 0.9f, 0, 0.9f, 0, 0, 64 },        // a penalty that raises: whole rows
        { 1, 0, 0.9f, 0, 1, 0, 0, 64 },            // top-k off: whole rows
    };
    static const int32_t vocab[] = { 50, 5000 };
    int used_top = 0, used_full = 0;
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++)
        for (int v = 0; v < 2; v++)
            for (uint64_t seed = 1; seed <= 4; seed++) {
                struct tw_sampler_params p = plain(cfg[c].temp);
                p.top_k = cfg[c].top_k;
                p.top_p = cfg[c].top_p;
                p.min_p = cfg[c].min_p;
                p.repetition_penalty = cfg[c].rep;
                p.frequency_penalty = cfg[c].freq;
                p.presence_penalty = cfg[c].pres;
                p.penalty_last_n = cfg[c].last_n;
                p.seed = seed * 1000 + c;
                top_equivalence(&p, vocab[v], seed * 77 + c * 5 + (uint64_t)v, &used_top,
                                &used_full);
            }
    CHECK(used_top > 10000 && used_full > 2000); // both paths ran often
}

// No allocation per token: with the next allocation set to fail, a long run still succeeds.
static void test_no_allocation(void)
{
    const int32_t V = 5000;
    struct tw_sampler s;
    struct tw_sampler_params p;
    tw_sampler_params_default(&p);
    p.repetition_penalty = 1.2f;
    p.frequency_penalty = 0.1f;
    p.presence_penalty = 0.1f;
    REQUIRE(tw_sampler_init(&s, &p, V) == 0);
    const char *stops[] = { "</s>", "\nUser:" };
    struct tw_stopper st;
    REQUIRE(tw_stopper_init(&st, stops, 2) == 0);
    float *x = malloc(V * sizeof *x);
    REQUIRE(x);
    uint64_t seed = 5;
    long live = tw_mem_live();
    tw_mem_fail_after(1);
    int failures = 0;
    for (int i = 0; i < 300; i++) {
        for (int32_t j = 0; j < V; j++)
            x[j] = (float)(check_rand(&seed) % 1000) * 0.01f;
        int32_t t = tw_sampler_sample(&s, x);
        failures += t < 0 || tw_sampler_accept(&s, t) != 0;
        struct tw_stop_out o;
        const char *piece = i % 3 ? " tok" : "\nUs";
        failures += tw_stopper_feed(&st, piece, strlen(piece), &o) != 0;
    }
    tw_mem_fail_after(0);
    CHECK_EQ_INT(failures, 0);
    CHECK_EQ_INT(tw_mem_live(), live);
    free(x);
    tw_stopper_free(&st);
    tw_sampler_free(&s);
}

// ---- stopper

// Feeds pieces; appends what is released to out (NUL-terminated); returns the stop index or -1.
static int feed_all(struct tw_stopper *st, const char *const *pieces, size_t n, char *out,
                    size_t *released)
{
    size_t len = 0;
    struct tw_stop_out o = { 0 };
    for (size_t i = 0; i < n; i++) {
        REQUIRE(tw_stopper_feed(st, pieces[i], strlen(pieces[i]), &o) == 0);
        memcpy(out + len, o.text, o.len);
        len += o.len;
        if (released)
            released[i] = o.len;
    }
    if (!o.stopped) {
        tw_stopper_flush(st, &o);
        memcpy(out + len, o.text, o.len);
        len += o.len;
    }
    out[len] = 0;
    return o.stopped ? o.stop : -1;
}

static void test_stopper(void)
{
    const char *stops[] = { "</s>", "\nUser:", "###" };
    struct tw_stopper st;
    REQUIRE(tw_stopper_init(&st, stops, 3) == 0);
    char out[4096];
    size_t rel[16];

    // A stop string split over several pieces: the held "<", "</" ... then the stop.
    const char *a[] = { "Hello", " wor", "ld<", "/", "s>", "never" };
    CHECK_EQ_INT(feed_all(&st, a, 6, out, rel), 0);
    CHECK_EQ_STR(out, "Hello world");
    CHECK(rel[0] == 5 && rel[1] == 4 && rel[2] == 2 && rel[3] == 0 && rel[4] == 0 && rel[5] == 0);

    // A partial match that turns out not to be a stop: the held bytes come back.
    tw_stopper_reset(&st);
    const char *b[] = { "a<", "/x", "\nUse", "d #", "#", " ok" };
    CHECK_EQ_INT(feed_all(&st, b, 6, out, rel), -1);
    CHECK_EQ_STR(out, "a</x\nUsed ## ok");
    CHECK(rel[0] == 1 && rel[1] == 3 && rel[2] == 0 && rel[3] == 6 && rel[4] == 0 && rel[5] == 5);

    // Several stop strings; the one that completes decides.
    tw_stopper_reset(&st);
    const char *c[] = { "answer\n", "Us", "er:", "</s>" };
    CHECK_EQ_INT(feed_all(&st, c, 4, out, NULL), 1);
    CHECK_EQ_STR(out, "answer");
    tw_stopper_reset(&st);
    const char *c2[] = { "x ##", "#</s>" };
    CHECK_EQ_INT(feed_all(&st, c2, 2, out, NULL), 2);
    CHECK_EQ_STR(out, "x ");

    // A stop at the very start, and one in the middle of a piece.
    tw_stopper_reset(&st);
    const char *d[] = { "</s>" };
    CHECK_EQ_INT(feed_all(&st, d, 1, out, rel), 0);
    CHECK(out[0] == 0 && rel[0] == 0);
    tw_stopper_reset(&st);
    const char *e[] = { "abc</s>def" };
    CHECK_EQ_INT(feed_all(&st, e, 1, out, NULL), 0);
    CHECK_EQ_STR(out, "abc");

    // After a stop nothing more is released, flush included.
    struct tw_stop_out o;
    CHECK_OK(tw_stopper_feed(&st, "more", 4, &o));
    CHECK(o.len == 0 && o.stopped && o.stop == 0);
    tw_stopper_flush(&st, &o);
    CHECK(o.len == 0);

    // Flush at the end of generation releases a held tail.
    tw_stopper_reset(&st);
    CHECK_OK(tw_stopper_feed(&st, "end\nUs", 6, &o));
    CHECK(o.len == 3 && memcmp(o.text, "end", 3) == 0 && !o.stopped && o.stop == -1);
    tw_stopper_flush(&st, &o);
    CHECK(o.len == 3 && memcmp(o.text, "\nUs", 3) == 0);

    // A cut UTF-8 sequence is held until completed (or shown not to be).
    tw_stopper_reset(&st);
    CHECK_OK(tw_stopper_feed(&st, "caf\xc3", 4, &o));
    CHECK(o.len == 3);
    CHECK_OK(tw_stopper_feed(&st, "\xa9!", 2, &o));
    CHECK(o.len == 3 && memcmp(o.text, "\xc3\xa9!", 3) == 0);
    CHECK_OK(tw_stopper_feed(&st, "\xf0\x9f", 2, &o));
    CHECK(o.len == 0);
    CHECK_OK(tw_stopper_feed(&st, "\x8e", 1, &o));
    CHECK(o.len == 0);
    CHECK_OK(tw_stopper_feed(&st, "\x89", 1, &o));
    CHECK(o.len == 4 && memcmp(o.text, "\xf0\x9f\x8e\x89", 4) == 0);
    CHECK_OK(tw_stopper_feed(&st, "\xe2", 1, &o));
    CHECK(o.len == 0);
    CHECK_OK(tw_stopper_feed(&st, "A", 1, &o)); // not a continuation: both released
    CHECK(o.len == 2 && memcmp(o.text,
                               "\xe2"
                               "A",
                               2) == 0);
    tw_stopper_free(&st);

    // Overlapping stops: the one that ends first wins, however the text is cut.
    const char *ov[] = { "abcd", "bc" };
    REQUIRE(tw_stopper_init(&st, ov, 2) == 0);
    const char *f1[] = { "xabcd" };
    CHECK_EQ_INT(feed_all(&st, f1, 1, out, NULL), 1);
    CHECK_EQ_STR(out, "xa");
    tw_stopper_reset(&st);
    const char *f2[] = { "x", "a", "b", "c", "d" };
    CHECK_EQ_INT(feed_all(&st, f2, 5, out, NULL), 1);
    CHECK_EQ_STR(out, "xa");
    tw_stopper_free(&st);
    const char *ov2[] = { "bc", "abc" }; // same end: the longer one
    REQUIRE(tw_stopper_init(&st, ov2, 2) == 0);
    CHECK_EQ_INT(feed_all(&st, f1, 1, out, NULL), 1);
    CHECK_EQ_STR(out, "x");
    tw_stopper_free(&st);

    // No stop strings: everything passes straight through. A long piece grows the buffer.
    REQUIRE(tw_stopper_init(&st, NULL, 0) == 0);
    char big[3000];
    memset(big, 'z', sizeof big);
    CHECK_OK(tw_stopper_feed(&st, big, sizeof big, &o));
    CHECK(o.len == sizeof big && memcmp(o.text, big, sizeof big) == 0);
    tw_stopper_free(&st);
    REQUIRE(tw_stopper_init(&st, stops, 3) == 0);
    CHECK_OK(tw_stopper_feed(&st, "#", 1, &o));
    CHECK(o.len == 0);
    big[sizeof big - 1] = '#';
    CHECK_OK(tw_stopper_feed(&st, big, sizeof big, &o)); // "#" + 2999 z... + "#"
    CHECK(o.len == sizeof big && o.text[0] == '#' && o.text[1] == 'z');
    tw_stopper_flush(&st, &o);
    CHECK(o.len == 1 && o.text[0] == '#');
    tw_stopper_free(&st);

    // Errors.
    long live = tw_mem_live();
    const char *empty[] = { "ok", "" };
    CHECK_EQ_INT(tw_stopper_init(&st, empty, 2), TW_EINVAL);
    CHECK_EQ_STR(tw_error_msg(), "stop strings: string 1 is empty");
    int ok = 0;
    for (long k = 1; k <= 10 && !ok; k++) {
        tw_mem_fail_after(k);
        int rc = tw_stopper_init(&st, stops, 3);
        tw_mem_fail_after(0);
        if (rc == 0) {
            ok = 1;
            tw_stopper_free(&st);
        } else {
            CHECK_EQ_INT(rc, TW_ENOMEM);
        }
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK(ok);
    // A failed growth leaves the stopper as it was.
    REQUIRE(tw_stopper_init(&st, stops, 3) == 0);
    CHECK_OK(tw_stopper_feed(&st, "x#", 2, &o));
    tw_mem_fail_after(1);
    CHECK_EQ_INT(tw_stopper_feed(&st, big, sizeof big, &o), TW_ENOMEM);
    tw_mem_fail_after(0);
    CHECK_OK(tw_stopper_feed(&st, "##", 2, &o));
    CHECK(o.stopped && o.stop == 2 && o.len == 0);
    tw_stopper_free(&st);
}

// Random text cut at random places: the released bytes must equal the reference (the text up
// to the stop that ends first, the longest of those; all of it when none), and what is
// released at each step must never be taken back.
static void test_stopper_random(void)
{
    static const char *const alpha[] = { "a", "b", "c", "\xc3\xa9", "ab" };
    const char *stops[] = { "abc", "ca", "\xc3\xa9\xc3\xa9", "bcab", "cc\xc3" };
    struct tw_stopper st;
    REQUIRE(tw_stopper_init(&st, stops, 5) == 0);
    uint64_t seed = 11;
    int n_stopped = 0;
    for (int round = 0; round < 2000; round++) {
        char text[128];
        size_t len = 0;
        int n_tok = 1 + (int)(check_rand(&seed) % 20);
        for (int i = 0; i < n_tok; i++) {
            const char *t = alpha[check_rand(&seed) % 5];
            memcpy(text + len, t, strlen(t));
            len += strlen(t);
        }
        // reference
        size_t best_end = SIZE_MAX, best_start = 0;
        int best = -1;
        for (size_t at = 0; at < len; at++)
            for (int k = 0; k < 5; k++) {
                size_t sl = strlen(stops[k]);
                if (at + sl <= len && memcmp(text + at, stops[k], sl) == 0 &&
                    (at + sl < best_end || (at + sl == best_end && at < best_start))) {
                    best = k;
                    best_end = at + sl;
                    best_start = at;
                }
            }
        size_t want_len = best >= 0 ? best_start : len;

        tw_stopper_reset(&st);
        char got[256];
        size_t got_len = 0, pos = 0;
        struct tw_stop_out o = { 0 };
        int prefix_ok = 1;
        while (pos < len && !o.stopped) {
            size_t cut = 1 + check_rand(&seed) % 6;
            cut = cut > len - pos ? len - pos : cut;
            REQUIRE(tw_stopper_feed(&st, text + pos, cut, &o) == 0);
            pos += cut;
            memcpy(got + got_len, o.text, o.len);
            got_len += o.len;
            prefix_ok &= got_len <= want_len && memcmp(got, text, got_len) == 0;
        }
        if (!o.stopped) {
            tw_stopper_flush(&st, &o);
            memcpy(got + got_len, o.text, o.len);
            got_len += o.len;
        }
        n_stopped += o.stopped;
        CHECK(prefix_ok);
        CHECK_EQ_INT(o.stopped ? o.stop : -1, best);
        CHECK(got_len == want_len && memcmp(got, text, want_len) == 0);
    }
    CHECK(n_stopped > 200 && n_stopped < 1900); // both outcomes exercised
    tw_stopper_free(&st);
}

static void test_is_eog(void)
{
    const int32_t eog[] = { 2, 151643, 151645 };
    CHECK(tw_sampler_is_eog(eog, 3, 151645));
    CHECK(tw_sampler_is_eog(eog, 3, 2));
    CHECK(!tw_sampler_is_eog(eog, 3, 3));
    CHECK(!tw_sampler_is_eog(NULL, 0, 2));
}

int main(void)
{
    test_rng();
    test_params();
    test_greedy();
    test_top_k_one();
    test_frequencies();
    test_top_p_boundaries();
    test_min_p();
    test_penalties();
    test_seeds();
    test_large_vocab();
    test_top_n();
    test_sample_top();
    test_no_allocation();
    test_stopper();
    test_stopper_random();
    test_is_eog();
    return check_report("model_test_sampler");
}

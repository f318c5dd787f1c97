// Implements model/sampler.h: the sampler chain over a vocabulary-sized workspace (top-k by a
// bounded heap or by selection, top-p by a heap popped only as far as needed, so a 150k
// vocabulary costs a few linear passes), or over a row's top logits (tw_topk's) with the same
// result; the xoshiro256** generator, the stop-string matcher.
#include "model/sampler.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/backend.h"

// ---- generator

void tw_rng_seed(struct tw_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = tw_splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

// xoshiro256** 1.0 (Blackman and Vigna, "Scrambled linear pseudorandom number generators",
// ACM TOMS 2021; https://prng.di.unimi.it/xoshiro256starstar.c).
uint64_t tw_rng_next(struct tw_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double tw_rng_uniform(struct tw_rng *r)
{
    return (double)(tw_rng_next(r) >> 11) * 0x1.0p-53;
}

// ---- sampler: parameters and lifetime

void tw_sampler_params_default(struct tw_sampler_params *p)
{
    *p = (struct tw_sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repetition_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = 64,
        .seed = 0,
    };
}

#define MAX_PENALTY_WINDOW (1 << 24)

static int check_params(const struct tw_sampler_params *p, int32_t n_vocab)
{
    if (n_vocab <= 0)
        return tw_error_set(TW_EINVAL, "sampler: vocabulary size %d is not positive", n_vocab);
    if (!(p->temperature >= 0 && isfinite(p->temperature)))
        return tw_error_set(TW_EINVAL, "sampler: temperature %g is not a finite number >= 0",
                            p->temperature);
    if (p->top_k < 0)
        return tw_error_set(TW_EINVAL, "sampler: top_k %d is negative", p->top_k);
    if (!(p->top_p >= 0 && p->top_p <= 1))
        return tw_error_set(TW_EINVAL, "sampler: top_p %g is not in [0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return tw_error_set(TW_EINVAL, "sampler: min_p %g is not in [0, 1]", p->min_p);
    if (!(p->repetition_penalty > 0 && isfinite(p->repetition_penalty)))
        return tw_error_set(TW_EINVAL, "sampler: repetition_penalty %g is not a finite number > 0",
                            p->repetition_penalty);
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return tw_error_set(TW_EINVAL,
                            "sampler: frequency_penalty %g or presence_penalty %g "
                            "is not finite",
                            p->frequency_penalty, p->presence_penalty);
    if (p->penalty_last_n < -1 || p->penalty_last_n > MAX_PENALTY_WINDOW)
        return tw_error_set(TW_EINVAL, "sampler: penalty_last_n %d is not in [-1, %d]",
                            p->penalty_last_n, MAX_PENALTY_WINDOW);
    return 0;
}

static bool penalties_on(const struct tw_sampler_params *p)
{
    return p->penalty_last_n != 0 && (p->repetition_penalty != 1.0f ||
                                      p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

int tw_sampler_init(struct tw_sampler *s, const struct tw_sampler_params *p, int32_t n_vocab)
{
    int rc = check_params(p, n_vocab);
    if (rc)
        return rc;
    memset(s, 0, sizeof *s);
    s->params = *p;
    s->n_vocab = n_vocab;
    size_t nv = (size_t)n_vocab;
    s->cand = tw_malloc_array(nv, sizeof *s->cand);
    if (!s->cand)
        goto nomem;
    if (penalties_on(p)) {
        // The window holds at most penalty_last_n tokens, hence as many distinct ids.
        size_t n_seen = p->penalty_last_n > 0 && (size_t)p->penalty_last_n < nv
                            ? (size_t)p->penalty_last_n
                            : nv;
        s->count = tw_calloc(nv, sizeof *s->count);
        s->slot = tw_malloc_array(nv, sizeof *s->slot);
        s->seen = tw_malloc_array(n_seen, sizeof *s->seen);
        if (!s->count || !s->slot || !s->seen)
            goto nomem;
        if (p->penalty_last_n > 0) {
            s->ring = tw_malloc_array((size_t)p->penalty_last_n, sizeof *s->ring);
            if (!s->ring)
                goto nomem;
        }
    }
    tw_sampler_reset(s);
    return 0;
nomem:
    tw_sampler_free(s);
    return tw_error_set(TW_ENOMEM, "sampler: out of memory for a vocabulary of %d", n_vocab);
}

void tw_sampler_free(struct tw_sampler *s)
{
    tw_free(s->cand);
    tw_free(s->count);
    tw_free(s->slot);
    tw_free(s->seen);
    tw_free(s->ring);
    memset(s, 0, sizeof *s);
}

void tw_sampler_reset(struct tw_sampler *s)
{
    tw_rng_seed(&s->rng, s->params.seed);
    if (s->count) {
        memset(s->count, 0, (size_t)s->n_vocab * sizeof *s->count);
        memset(s->slot, 0xff, (size_t)s->n_vocab * sizeof *s->slot); // all -1
    }
    s->n_seen = 0;
    s->ring_len = 0;
    s->ring_head = 0;
}

// ---- penalties

static void count_add(struct tw_sampler *s, int32_t id)
{
    if (s->count[id] == INT32_MAX) // only reachable with a whole-context window
        return;
    if (s->count[id]++ == 0) {
        s->slot[id] = s->n_seen;
        s->seen[s->n_seen++] = id;
    }
}

static void count_remove(struct tw_sampler *s, int32_t id)
{
    if (--s->count[id] == 0) {
        // swap-remove from the distinct list
        int32_t i = s->slot[id], last = s->seen[--s->n_seen];
        s->seen[i] = last;
        s->slot[last] = i;
        s->slot[id] = -1;
    }
}

int tw_sampler_accept(struct tw_sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab)
        return tw_error_set(TW_EINVAL, "sampler: token %d is outside the vocabulary [0, %d)",
                            token, s->n_vocab);
    if (!s->count)
        return 0;
    if (s->ring) {
        int32_t n = s->params.penalty_last_n;
        if (s->ring_len == n) {
            count_remove(s, s->ring[s->ring_head]);
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % n;
        } else {
            s->ring[(s->ring_head + s->ring_len++) % n] = token;
        }
    }
    count_add(s, token);
    return 0;
}

// The penalised logit of id, seen count[id] > 0 times; the one formula of both paths.
static inline float penalised(const struct tw_sampler *s, int32_t id, float x)
{
    const struct tw_sampler_params *p = &s->params;
    x = x > 0 ? x / p->repetition_penalty : x * p->repetition_penalty;
    return x - ((float)s->count[id] * p->frequency_penalty + p->presence_penalty);
}

void tw_sampler_apply_penalties(const struct tw_sampler *s, float *logits)
{
    for (int32_t i = 0; i < s->n_seen; i++) {
        int32_t id = s->seen[i];
        logits[id] = penalised(s, id, logits[id]);
    }
}

int32_t tw_sampler_top_n(const struct tw_sampler *s)
{
    const struct tw_sampler_params *p = &s->params;
    // A penalty that can raise a logit could lift a token from anywhere in the row.
    if (s->count &&
        (p->repetition_penalty < 1 || p->frequency_penalty < 0 || p->presence_penalty < 0))
        return 0;
    int64_t k = p->temperature == 0 ? 1 : p->top_k;
    if (k <= 0)
        return 0;
    int64_t n = k + s->n_seen;
    n = n < s->n_vocab ? n : s->n_vocab;
    return n <= TW_TOPK_MAX ? (int32_t)n : 0;
}

// ---- the chain

typedef struct tw_sampler_candidate cand_t;

// Whether a ranks before b by logit (ties: lower id first); a strict total order.
static inline bool by_logit(const cand_t *a, const cand_t *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

// The same by weight (.p), for top-p: weights of distinct logits may round to the same value.
static inline bool by_weight(const cand_t *a, const cand_t *b)
{
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

static inline void swap_cand(cand_t *a, cand_t *b)
{
    cand_t t = *a;
    *a = *b;
    *b = t;
}

// Binary heap over h[0, n) whose root ranks first by `before`.
static void sift_down(cand_t *h, size_t n, size_t i,
                      bool (*before)(const cand_t *, const cand_t *))
{
    for (;;) {
        size_t top = i, l = 2 * i + 1, r = l + 1;
        if (l < n && before(&h[l], &h[top]))
            top = l;
        if (r < n && before(&h[r], &h[top]))
            top = r;
        if (top == i)
            return;
        swap_cand(&h[i], &h[top]);
        i = top;
    }
}

static bool after_logit(const cand_t *a, const cand_t *b)
{
    return by_logit(b, a);
}

// A heap c[0, n) whose root is the last by_logit, popped to the end: c sorted by_logit.
static void pop_to_sorted(cand_t *c, size_t n)
{
    for (size_t end = n; end > 1;) {
        swap_cand(&c[0], &c[--end]);
        sift_down(c, end, 0, after_logit);
    }
}

// Heapsort of c[0, n) by_logit (no allocation, unlike qsort).
static void sort_by_logit(cand_t *c, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(c, n, i, after_logit);
    pop_to_sorted(c, n);
}

// Rearranges c[0, n) so that c[0, k) are the k first by_logit (0 < k < n), in no order:
// quickselect (Hoare's FIND) with a median-of-three pivot, falling back to sorting the rest
// when the ranges stop shrinking (introselect), so the worst case stays O(n log n).
static void select_top_k(cand_t *c, size_t n, size_t k)
{
    size_t lo = 0, hi = n - 1, kth = k - 1;
    int budget = 2 * 64;
    while (lo < hi) {
        if (budget-- == 0) {
            sort_by_logit(c + lo, hi - lo + 1);
            return;
        }
        size_t mid = lo + (hi - lo) / 2;
        // median of c[lo], c[mid], c[hi] into c[hi] as the pivot
        if (by_logit(&c[mid], &c[lo]))
            swap_cand(&c[mid], &c[lo]);
        if (by_logit(&c[hi], &c[lo]))
            swap_cand(&c[hi], &c[lo]);
        if (by_logit(&c[mid], &c[hi]))
            swap_cand(&c[mid], &c[hi]);
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (by_logit(&c[i], &c[hi]))
                swap_cand(&c[i], &c[store++]);
        swap_cand(&c[store], &c[hi]);
        if (store == kth)
            return;
        if (kth < store)
            hi = store - 1;
        else
            lo = store + 1;
    }
}

// Top-k for a small k in the same pass that reads the logits: the k best so far are kept in
// a heap whose root is the worst of them, so most tokens cost one comparison with the root.
// Returns how many were kept (k, or fewer when fewer logits are above -inf), sorted by_logit:
// an order that depends only on the kept set, so that tw_sampler_sample_top, which forms the
// same set from fewer tokens, lays them out (and so sums and draws them) the same way.
#define SMALL_K 1024

static void sift_up(cand_t *h, size_t i, bool (*before)(const cand_t *, const cand_t *))
{
    while (i > 0 && before(&h[i], &h[(i - 1) / 2])) {
        swap_cand(&h[i], &h[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}

static size_t scan_top_k(cand_t *c, float *logits, int32_t n_vocab, size_t k)
{
    size_t m = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        float x = logits[i];
        if (isnan(x))
            logits[i] = x = -INFINITY;
        if (x == -INFINITY)
            continue;
        cand_t t = { i, x, 0 };
        if (m < k) {
            c[m] = t;
            sift_up(c, m++, after_logit);
        } else if (by_logit(&t, &c[0])) {
            c[0] = t;
            sift_down(c, m, 0, after_logit);
        }
    }
    pop_to_sorted(c, m);
    return m;
}

// Top-p over c[0, n) by weight: the smallest set of the heaviest with total >= target. A heap
// is built in O(n) and popped only as far as the set reaches, each popped candidate going to
// the end of the array. Returns the index where the kept ones start, heaviest first.
static size_t top_p(cand_t *c, size_t n, double target)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(c, n, i, by_weight);
    size_t end = n;
    double cum = 0;
    while (end > 0 && (end == n || cum < target)) { // at least one, even for top_p 0
        cum += c[0].p;
        swap_cand(&c[0], &c[--end]);
        sift_down(c, end, 0, by_weight);
    }
    for (size_t i = end, j = n - 1; i < j; i++, j--)
        swap_cand(&c[i], &c[j]);
    return end;
}

// Greedy: the argmax, ties to the lowest id; NaN becomes -inf. -1 when none.
static int32_t argmax(float *logits, int32_t n)
{
    int32_t best = -1;
    float best_x = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        float x = logits[i];
        if (isnan(x))
            logits[i] = x = -INFINITY;
        if (x > best_x) {
            best_x = x;
            best = i;
        }
    }
    return best;
}

// The chain after the candidates are formed: c[0, nc) hold the tokens top-k kept (greedy:
// the one best), their logits penalised and above -inf. The kept candidates end up at
// s->cand[*first, *first + *n), with their weights exp((logit - max) / T) in .p; returns their
// sum (> 0), or -1 when nothing is left.
static double finish_chain(struct tw_sampler *s, size_t nc, size_t *first, size_t *n)
{
    const struct tw_sampler_params *p = &s->params;
    cand_t *c = s->cand;
    *first = 0;
    if (nc == 0)
        return -1;
    if (p->temperature == 0) {
        c[0].p = 1.0f;
        *n = 1;
        return 1;
    }
    float max = -INFINITY;
    for (size_t i = 0; i < nc; i++)
        max = c[i].logit > max ? c[i].logit : max;
    // Softmax weights; the maximum gets exactly 1 (expf(0)), so p / p_max is the weight. With
    // +inf logits present, they share everything (the limit of the softmax).
    double total = 0;
    for (size_t i = 0; i < nc; i++) {
        float w = max == INFINITY ? (c[i].logit == INFINITY ? 1.0f : 0.0f)
                                  : expf((c[i].logit - max) / p->temperature);
        c[i].p = w;
        total += w;
    }
    // min-p before top-p: both keep a prefix of the candidates ordered by weight, so the
    // result is the shorter prefix either way, and min-p first leaves top-p less to order.
    // top-p's target still counts the mass of everything top-k kept. Weights that underflowed
    // to 0 go too: they cannot be drawn.
    size_t m = 0;
    for (size_t i = 0; i < nc; i++)
        if (c[i].p > 0 && c[i].p >= p->min_p)
            c[m++] = c[i];
    nc = m;
    if (p->top_p < 1 && nc > 1) {
        size_t start = top_p(c, nc, (double)p->top_p * total);
        *first = start;
        nc -= start;
    }
    double sum = 0;
    for (size_t i = *first; i < *first + nc; i++)
        sum += c[i].p;
    *n = nc;
    return sum;
}

// The chain over a whole row of logits: penalties, then the candidates (greedy's argmax or
// top-k's), then finish_chain.
static double run_chain(struct tw_sampler *s, float *logits, size_t *first, size_t *n)
{
    const struct tw_sampler_params *p = &s->params;
    cand_t *c = s->cand;
    tw_sampler_apply_penalties(s, logits);
    size_t nc = 0;
    if (p->temperature == 0) {
        int32_t best = argmax(logits, s->n_vocab);
        if (best >= 0)
            c[nc++] = (cand_t){ best, logits[best], 0 };
    } else if (p->top_k > 0 && p->top_k <= SMALL_K) {
        nc = scan_top_k(c, logits, s->n_vocab, (size_t)p->top_k);
    } else {
        for (int32_t i = 0; i < s->n_vocab; i++) {
            float x = logits[i];
            if (isnan(x))
                logits[i] = x = -INFINITY;
            if (x != -INFINITY)
                c[nc++] = (cand_t){ i, x, 0 };
        }
        if (p->top_k > 0 && (size_t)p->top_k < nc) {
            select_top_k(c, nc, (size_t)p->top_k);
            nc = (size_t)p->top_k;
        }
    }
    return finish_chain(s, nc, first, n);
}

// The same from the n best logits of the row (before penalties): the seen ones among them are
// penalised, and greedy's one or top-k's k (sorted by_logit, as scan_top_k leaves them) are
// picked from these. tw_sampler_top_n's bound makes them the row's own (sampler.h).
static double run_chain_top(struct tw_sampler *s, const float *vals, const int32_t *ids, int32_t n,
                            size_t *first, size_t *nk)
{
    const struct tw_sampler_params *p = &s->params;
    cand_t *c = s->cand;
    size_t nc = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        assert(id >= 0 && id < s->n_vocab);
        float x = vals[i];
        if (s->count && s->count[id] > 0)
            x = penalised(s, id, x);
        if (!isnan(x) && x != -INFINITY)
            c[nc++] = (cand_t){ id, x, 0 };
    }
    size_t k = p->temperature == 0 ? 1 : (size_t)p->top_k;
    if (k == 1) {
        for (size_t i = 1; i < nc; i++)
            if (by_logit(&c[i], &c[0]))
                c[0] = c[i];
    } else {
        sort_by_logit(c, nc);
    }
    return finish_chain(s, nc < k ? nc : k, first, nk);
}

static int all_masked(void)
{
    return tw_error_set(TW_EINVAL, "sampler: every logit is -inf or NaN");
}

int tw_sampler_candidates(struct tw_sampler *s, float *logits,
                          const struct tw_sampler_candidate **out, size_t *n)
{
    size_t first, nc;
    double sum = run_chain(s, logits, &first, &nc);
    if (sum < 0)
        return all_masked();
    cand_t *c = s->cand + first;
    for (size_t i = 0; i < nc; i++)
        c[i].p = (float)(c[i].p / sum);
    *out = c;
    *n = nc;
    return 0;
}

// The draw from the kept candidates s->cand[first, first + nc) of total weight sum.
static int32_t draw(struct tw_sampler *s, double sum, size_t first, size_t nc)
{
    if (sum < 0)
        return all_masked();
    const cand_t *c = s->cand + first;
    if (s->params.temperature == 0)
        return c[0].id;
    // Inverse transform: the first candidate whose cumulative weight passes u * sum. A weight
    // of 0 is never picked; rounding that runs past the end picks the last positive weight.
    double r = tw_rng_uniform(&s->rng) * sum, cum = 0;
    int32_t last = c[0].id;
    for (size_t i = 0; i < nc; i++) {
        if (c[i].p <= 0)
            continue;
        cum += c[i].p;
        last = c[i].id;
        if (cum > r)
            return c[i].id;
    }
    return last;
}

int32_t tw_sampler_sample(struct tw_sampler *s, float *logits)
{
    size_t first, nc;
    double sum = run_chain(s, logits, &first, &nc);
    return draw(s, sum, first, nc);
}

int32_t tw_sampler_sample_top(struct tw_sampler *s, const float *vals, const int32_t *ids,
                              int32_t n)
{
    assert(tw_sampler_top_n(s) > 0 && tw_sampler_top_n(s) <= n);
    size_t first, nc;
    double sum = run_chain_top(s, vals, ids, n, &first, &nc);
    return draw(s, sum, first, nc);
}

bool tw_sampler_is_eog(const int32_t *eog_ids, size_t n, int32_t tok)
{
    for (size_t i = 0; i < n; i++)
        if (eog_ids[i] == tok)
            return true;
    return false;
}

// ---- stopper

int tw_stopper_init(struct tw_stopper *st, const char *const *stops, size_t n_stops)
{
    memset(st, 0, sizeof *st);
    st->which = -1;
    size_t max_len = 0;
    for (size_t i = 0; i < n_stops; i++) {
        size_t len = strlen(stops[i]);
        if (len == 0)
            return tw_error_set(TW_EINVAL, "stop strings: string %zu is empty", i);
        max_len = len > max_len ? len : max_len;
    }
    if (n_stops) {
        st->stops = tw_calloc(n_stops, sizeof *st->stops);
        st->lens = tw_malloc_array(n_stops, sizeof *st->lens);
        if (!st->stops || !st->lens)
            goto nomem;
        st->n_stops = n_stops;
        for (size_t i = 0; i < n_stops; i++) {
            st->lens[i] = strlen(stops[i]);
            if (!(st->stops[i] = tw_strndup(stops[i], st->lens[i])))
                goto nomem;
        }
    }
    // Room for the held bytes (< max_len, or 3 of a cut UTF-8 sequence) and a usual piece.
    st->cap = 2 * max_len + 256;
    if (!(st->buf = tw_malloc(st->cap)))
        goto nomem;
    return 0;
nomem:
    tw_stopper_free(st);
    return tw_error_set(TW_ENOMEM, "stop strings: out of memory");
}

void tw_stopper_free(struct tw_stopper *st)
{
    for (size_t i = 0; st->stops && i < st->n_stops; i++)
        tw_free(st->stops[i]);
    tw_free(st->stops);
    tw_free(st->lens);
    tw_free(st->buf);
    memset(st, 0, sizeof *st);
    st->which = -1;
}

void tw_stopper_reset(struct tw_stopper *st)
{
    st->held_off = st->held_len = 0;
    st->stopped = false;
    st->which = -1;
}

// The length of a UTF-8 sequence cut short at the end of t[0, n): a lead byte among the last
// three followed only by continuation bytes, fewer than it announces. 0 when none.
static size_t utf8_cut_tail(const unsigned char *t, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned b = t[n - k];
        if ((b & 0xC0) == 0x80)
            continue;
        size_t need = b >= 0xC2 && b <= 0xDF   ? 2
                      : b >= 0xE0 && b <= 0xEF ? 3
                      : b >= 0xF0 && b <= 0xF4 ? 4
                                               : 1;
        return need > k ? k : 0;
    }
    return 0;
}

// The first complete stop string in t[0, n): the one ending first, then the longest. Sets
// *start and returns its index, or -1.
static int32_t find_stop(const struct tw_stopper *st, const char *t, size_t n, size_t *start)
{
    int32_t best = -1;
    size_t best_end = SIZE_MAX, best_start = 0;
    for (size_t i = 0; i < st->n_stops; i++) {
        size_t len = st->lens[i];
        const char *s = st->stops[i];
        for (size_t at = 0; at + len <= n && at + len <= best_end; at++) {
            if (t[at] == s[0] && memcmp(t + at, s, len) == 0) {
                if (at + len < best_end || at < best_start) {
                    best = (int32_t)i;
                    best_end = at + len;
                    best_start = at;
                }
                break;
            }
        }
    }
    *start = best_start;
    return best;
}

// The longest tail of t[0, n) that is a proper prefix of a stop string.
static size_t stop_prefix_tail(const struct tw_stopper *st, const char *t, size_t n)
{
    size_t hold = 0;
    for (size_t i = 0; i < st->n_stops; i++) {
        size_t k = st->lens[i] - 1 < n ? st->lens[i] - 1 : n;
        for (; k > hold; k--)
            if (memcmp(t + n - k, st->stops[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

int tw_stopper_feed(struct tw_stopper *st, const char *piece, size_t len, struct tw_stop_out *out)
{
    *out = (struct tw_stop_out){
        .text = st->buf, .len = 0, .stopped = st->stopped, .stop = st->which
    };
    if (st->stopped)
        return 0;
    size_t n;
    if (tw_add_overflow(st->held_len, len, &n))
        return tw_error_set(TW_EOVERFLOW, "stop strings: piece of %zu bytes is too long", len);
    if (n > st->cap) {
        size_t cap = st->cap;
        while (cap < n)
            cap = cap > SIZE_MAX / 2 ? n : 2 * cap;
        char *buf = tw_malloc(cap);
        if (!buf)
            return tw_error_set(TW_ENOMEM, "stop strings: out of memory for %zu bytes", n);
        memcpy(buf, st->buf + st->held_off, st->held_len);
        tw_free(st->buf);
        st->buf = buf;
        st->cap = cap;
        st->held_off = 0;
    }
    // The bytes released by the last call may still be read by the caller until now.
    memmove(st->buf, st->buf + st->held_off, st->held_len);
    if (len)
        memcpy(st->buf + st->held_len, piece, len);
    const char *t = st->buf;
    out->text = t;
    size_t start;
    int32_t which = find_stop(st, t, n, &start);
    if (which >= 0) {
        st->stopped = true;
        st->which = which;
        st->held_off = st->held_len = 0;
        out->len = start;
        out->stopped = true;
        out->stop = which;
        return 0;
    }
    size_t hold = stop_prefix_tail(st, t, n), cut = utf8_cut_tail((const unsigned char *)t, n);
    hold = cut > hold ? cut : hold;
    out->len = n - hold;
    st->held_off = n - hold;
    st->held_len = hold;
    return 0;
}

void tw_stopper_flush(struct tw_stopper *st, struct tw_stop_out *out)
{
    *out = (struct tw_stop_out){ .text = st->buf + st->held_off,
                                 .len = st->held_len,
                                 .stopped = st->stopped,
                                 .stop = st->which };
    st->held_off += st->held_len;
    st->held_len = 0;
}

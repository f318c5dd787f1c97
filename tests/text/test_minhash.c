// Tests of src/text/minhash.c: shingling (normalisation, short texts, characters), estimated
// against exact Jaccard similarity on random document pairs of controlled overlap, the LSH
// shape, near-duplicate copies of State of the Union addresses found at 0.8 and unrelated
// addresses not, queries and clusters, determinism (same seed, same signatures; fixed values),
// bad options, and failed allocations (index unchanged, nothing leaked).
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "check.h"
#include "sotu.h"
#include "text/minhash.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static tw_minhash *make(uint32_t n_perm, uint32_t k, bool chars, uint64_t seed)
{
    struct tw_minhash_options o = tw_minhash_options_default();
    o.n_perm = n_perm;
    o.shingle = k;
    o.char_shingles = chars;
    if (seed)
        o.seed = seed;
    tw_minhash *mh = NULL;
    REQUIRE(tw_minhash_new(&o, &mh) == 0);
    return mh;
}

static size_t shingles(const tw_minhash *mh, const char *text, tw_vec *out)
{
    tw_vec_clear(out);
    CHECK_OK(tw_minhash_shingles(mh, text, strlen(text), out));
    return out->len;
}

static bool same_hashes(const tw_vec *a, const tw_vec *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len * sizeof(uint64_t)) == 0;
}

static void test_shingles(void)
{
    tw_minhash *w5 = make(128, 5, false, 0), *c2 = make(128, 2, true, 0);
    tw_minhash *c5 = make(128, 5, true, 0);
    tw_vec a, b;
    tw_vec_init(&a, sizeof(uint64_t));
    tw_vec_init(&b, sizeof(uint64_t));
    CHECK_EQ_INT(shingles(w5, "the quick brown fox jumps over the lazy dog", &a), 5);
    // Case and white space do not matter.
    CHECK_EQ_INT(shingles(w5, "  THE Quick\tbrown\n\nfox jumps\xC2\xA0over the LAZY dog \n", &b),
                 5);
    CHECK(same_hashes(&a, &b));
    // Order matters (the first two shingles hold both swapped words); a repeated shingle is
    // repeated.
    shingles(w5, "quick the brown fox jumps over the lazy dog", &b);
    CHECK(b.len == 5 && TW_VEC_AT(&a, uint64_t, 0) != TW_VEC_AT(&b, uint64_t, 0) &&
          TW_VEC_AT(&a, uint64_t, 1) != TW_VEC_AT(&b, uint64_t, 1) &&
          memcmp((uint64_t *)a.data + 2, (uint64_t *)b.data + 2, 3 * sizeof(uint64_t)) == 0);
    CHECK_EQ_INT(shingles(w5, "a b c d e a b c d e", &a), 6);
    CHECK(TW_VEC_AT(&a, uint64_t, 0) == TW_VEC_AT(&a, uint64_t, 5));
    // Fewer than k words: one shingle; none: none.
    CHECK_EQ_INT(shingles(w5, "three short words", &a), 1);
    CHECK_EQ_INT(shingles(w5, "Three  SHORT words ", &b), 1);
    CHECK(same_hashes(&a, &b));
    CHECK_EQ_INT(shingles(w5, "", &a), 0);
    CHECK_EQ_INT(shingles(w5, " \t\n\xE2\x80\x83 ", &a), 0); // U+2003 em space
    // Unicode lower case.
    shingles(w5,
             "\xC3\x89"
             "COLE na\xC3\xAFve",
             &a);
    shingles(w5,
             "\xC3\xA9"
             "cole NA\xC3\x8FVE",
             &b);
    CHECK(a.len == 1 && same_hashes(&a, &b));
    // Characters: white space runs are one space, none at the ends.
    CHECK_EQ_INT(shingles(c2, " ab  c ", &a), 3); // "ab", "b ", " c"
    CHECK_EQ_INT(shingles(c2, "AB\tC", &b), 3);
    CHECK(same_hashes(&a, &b));
    CHECK_EQ_INT(shingles(c5, "ab c", &a), 1);
    CHECK_EQ_INT(shingles(c5, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87", &a),
                 1);
    CHECK_EQ_INT(shingles(c2, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", &a), 2);
    // Invalid bytes are characters (U+FFFD) like any other.
    CHECK_EQ_INT(shingles(c2,
                          "a\xFF"
                          "b",
                          &a),
                 2);
    tw_vec_free(&a);
    tw_vec_free(&b);
    tw_minhash_free(w5);
    tw_minhash_free(c2);
    tw_minhash_free(c5);
}

// ---- Estimated against exact Jaccard --------------------------------------------------------

// A random document of n words drawn from "w0" .. "w4999" (so a repeated 5-word shingle is
// vanishingly rare), as text; words[] gets the word numbers.
static void random_doc(uint64_t *seed, uint32_t *words, size_t n)
{
    for (size_t i = 0; i < n; i++)
        words[i] = (uint32_t)(check_rand(seed) % 5000);
}

static char *doc_text(const uint32_t *words, size_t n)
{
    tw_str s;
    tw_str_init(&s);
    for (size_t i = 0; i < n; i++)
        REQUIRE(tw_str_printf(&s, "%sw%u", i ? " " : "", words[i]) == 0);
    char *out;
    REQUIRE(tw_str_detach(&s, &out, NULL) == 0);
    return out;
}

// The set of 5-word shingles of words, as strings, in a map.
static void shingle_set(const uint32_t *words, size_t n, tw_map *set)
{
    tw_map_init(set, TW_MAP_STR);
    for (size_t i = 0; i + 5 <= n; i++) {
        char buf[64];
        int l = snprintf(buf, sizeof buf, "%u %u %u %u %u", words[i], words[i + 1], words[i + 2],
                         words[i + 3], words[i + 4]);
        REQUIRE(tw_map_put_str(set, buf, (size_t)l, 1) == 0);
    }
}

static double exact_jaccard(const tw_map *a, const tw_map *b)
{
    size_t inter = 0, pos = 0;
    struct tw_map_entry e;
    while (tw_map_next(a, &pos, &e))
        inter += tw_map_get_str(b, e.str, e.len, NULL);
    size_t uni = tw_map_len(a) + tw_map_len(b) - inter;
    return uni ? (double)inter / (double)uni : 0.0;
}

// The same from the library's shingle hashes.
static double hash_jaccard(const tw_minhash *mh, const char *x, const char *y)
{
    tw_vec hx, hy;
    tw_vec_init(&hx, sizeof(uint64_t));
    tw_vec_init(&hy, sizeof(uint64_t));
    REQUIRE(tw_minhash_shingles(mh, x, strlen(x), &hx) == 0);
    REQUIRE(tw_minhash_shingles(mh, y, strlen(y), &hy) == 0);
    tw_map sx, sy;
    tw_map_init(&sx, TW_MAP_U64);
    tw_map_init(&sy, TW_MAP_U64);
    for (size_t i = 0; i < hx.len; i++)
        REQUIRE(tw_map_put_u64(&sx, TW_VEC_AT(&hx, uint64_t, i), 1) == 0);
    for (size_t i = 0; i < hy.len; i++)
        REQUIRE(tw_map_put_u64(&sy, TW_VEC_AT(&hy, uint64_t, i), 1) == 0);
    size_t inter = 0, pos = 0;
    struct tw_map_entry e;
    while (tw_map_next(&sx, &pos, &e))
        inter += tw_map_get_u64(&sy, e.u64, NULL);
    size_t uni = tw_map_len(&sx) + tw_map_len(&sy) - inter;
    tw_map_free(&sx);
    tw_map_free(&sy);
    tw_vec_free(&hx);
    tw_vec_free(&hy);
    return uni ? (double)inter / (double)uni : 0.0;
}

static void test_estimates(void)
{
    enum { PAIRS = 200, LEN = 300 };
    uint32_t ns[] = { 64, 128, 256 };
    double tol[] = { 0.14, 0.1, 0.07 }; // about 2.5 standard deviations at J = 0.5
    uint64_t seed = 1234;
    uint32_t *x = tw_malloc_array(LEN, sizeof *x), *y = tw_malloc_array(LEN, sizeof *y);
    uint32_t *sx = tw_malloc_array(256, sizeof *sx), *sy = tw_malloc_array(256, sizeof *sy);
    REQUIRE(x && y && sx && sy);
    for (size_t v = 0; v < N(ns); v++) {
        tw_minhash *mh = make(ns[v], 5, false, 0);
        int within = 0, exact_eq = 0;
        double bias = 0, lo_j = 1, hi_j = 0;
        for (int p = 0; p < PAIRS; p++) {
            // y is x with each word replaced with probability 0 to 0.5 (J from 1 to ~0.02).
            random_doc(&seed, x, LEN);
            memcpy(y, x, LEN * sizeof *x);
            double prob = 0.5 * (double)p / PAIRS;
            for (size_t i = 0; i < LEN; i++)
                if ((double)(check_rand(&seed) % 10000) < prob * 10000)
                    y[i] = 5000 + (uint32_t)(check_rand(&seed) % 5000);
            char *tx = doc_text(x, LEN), *ty = doc_text(y, LEN);
            tw_map a, b;
            shingle_set(x, LEN, &a);
            shingle_set(y, LEN, &b);
            double j = exact_jaccard(&a, &b);
            exact_eq += fabs(hash_jaccard(mh, tx, ty) - j) < 1e-12;
            size_t nx = 0, ny = 0;
            CHECK_OK(tw_minhash_signature(mh, tx, strlen(tx), sx, &nx));
            CHECK_OK(tw_minhash_signature(mh, ty, strlen(ty), sy, &ny));
            CHECK(nx == LEN - 4 && ny == LEN - 4);
            double est = tw_minhash_similarity(sx, sy, ns[v]);
            within += fabs(est - j) < tol[v];
            bias += est - j;
            lo_j = j < lo_j ? j : lo_j;
            hi_j = j > hi_j ? j : hi_j;
            tw_map_free(&a);
            tw_map_free(&b);
            tw_free(tx);
            tw_free(ty);
        }
        CHECK_EQ_INT(exact_eq, PAIRS); // the library's shingles are the independent ones
        CHECK(within >= PAIRS * 95 / 100);
        CHECK(fabs(bias / PAIRS) < 0.015); // unbiased
        CHECK(lo_j < 0.2 && hi_j == 1.0);  // the overlaps covered the range
        if (within < PAIRS * 95 / 100 || fabs(bias / PAIRS) >= 0.015)
            fprintf(stderr, "  n=%u: %d of %d within %.2f, bias %.4f\n", ns[v], within, PAIRS,
                    tol[v], bias / PAIRS);
        tw_minhash_free(mh);
    }
    tw_free(x);
    tw_free(y);
    tw_free(sx);
    tw_free(sy);
}

// ---- Determinism, the LSH shape, options ----------------------------------------------------

static void test_determinism(void)
{
    const char *text = "We hold these truths to be self-evident, that all men are created "
                       "equal, that they are endowed by their Creator with certain unalienable "
                       "Rights, that among these are Life, Liberty and the pursuit of Happiness.";
    tw_minhash *a = make(128, 5, false, 0), *b = make(128, 5, false, 0);
    tw_minhash *c = make(128, 5, false, 99);
    uint32_t sa[128], sb[128], sc[128];
    size_t n = 0;
    CHECK_OK(tw_minhash_signature(a, text, strlen(text), sa, &n));
    CHECK_EQ_INT(n, 31);
    CHECK_OK(tw_minhash_signature(b, text, strlen(text), sb, NULL));
    CHECK_OK(tw_minhash_signature(c, text, strlen(text), sc, NULL));
    CHECK(memcmp(sa, sb, sizeof sa) == 0);
    CHECK(memcmp(sa, sc, sizeof sa) != 0);
    CHECK(tw_minhash_similarity(sa, sc, 128) < 0.1);
    // Fixed values: signatures are stored, so the hashing must never change silently.
    CHECK(sa[0] == 166458467u && sa[1] == 303041290u && sa[2] == 15162805u && sa[3] == 136685430u);
    // Empty text: every slot UINT32_MAX.
    CHECK_OK(tw_minhash_signature(a, "  ", 2, sa, &n));
    CHECK_EQ_INT(n, 0);
    CHECK(sa[0] == UINT32_MAX && sa[127] == UINT32_MAX);
    tw_minhash_free(a);
    tw_minhash_free(b);
    tw_minhash_free(c);

    uint32_t bands, rows;
    tw_minhash_lsh_shape(128, 0.8, &bands, &rows);
    CHECK(bands == 12 && rows == 10);
    tw_minhash_lsh_shape(256, 0.5, &bands, &rows);
    CHECK(bands * rows <= 256 && bands > 10);
    a = make(128, 5, false, 0);
    struct tw_minhash_options o = tw_minhash_options(a);
    CHECK(o.bands == 12 && o.rows == 10 && o.n_perm == 128 && o.threshold == 0.8);
    tw_minhash_free(a);

    struct tw_minhash_options bad[5];
    for (size_t i = 0; i < N(bad); i++)
        bad[i] = tw_minhash_options_default();
    bad[0].n_perm = 0;
    bad[1].shingle = 0;
    bad[2].threshold = 1.5;
    bad[3].bands = 20;
    bad[3].rows = 10;
    bad[4].bands = 4;
    for (size_t i = 0; i < N(bad); i++) {
        tw_minhash *x = NULL;
        CHECK_EQ_INT(tw_minhash_new(&bad[i], &x), TW_EINVAL);
        CHECK(x == NULL);
    }
}

// ---- Near-duplicates among State of the Union addresses -------------------------------------

struct corpus {
    size_t n;
    char *text[64];
    size_t len[64];
};

static void corpus_load(struct corpus *c, size_t want)
{
    memset(c, 0, sizeof *c);
    char dir[4096];
    char *names[400];
    size_t nn = sotu_list(dir, sizeof dir, names, sizeof names / sizeof names[0]);
    REQUIRE(nn >= want && want <= N(c->text));
    for (size_t i = 0; i < want; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i * nn / want]);
        REQUIRE(tw_file_read(path, 1 << 24, &c->text[i], &c->len[i]) == 0);
        c->n++;
    }
    for (size_t i = 0; i < nn; i++)
        tw_free(names[i]);
}

// A copy of text with `changes` words replaced (a few at random places), one sentence-sized
// stretch of 40 words dropped, and its case and white space disturbed.
static char *near_copy(const char *text, size_t len, int changes, uint64_t *seed)
{
    // Word boundaries.
    tw_vec starts;
    tw_vec_init(&starts, sizeof(size_t));
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && (i == 0 || text[i - 1] == ' '))
            REQUIRE(tw_vec_push(&starts, &i) == 0);
    size_t nw = starts.len;
    size_t drop = (size_t)(check_rand(seed) % (nw - 50));
    tw_str s;
    tw_str_init(&s);
    for (size_t w = 0; w < nw; w++) {
        if (w >= drop && w < drop + 40)
            continue;
        size_t a = TW_VEC_AT(&starts, size_t, w);
        size_t b = a;
        while (b < len && text[b] != ' ')
            b++;
        if ((int)(check_rand(seed) % nw) < changes)
            REQUIRE(tw_str_printf(&s, "changed%u", (unsigned)(check_rand(seed) % 1000)) == 0);
        else if (w % 17 == 0) // upper case: the same word after normalisation
            for (size_t i = a; i < b; i++)
                tw_str_putc(&s, (char)(text[i] >= 'a' && text[i] <= 'z' ? text[i] - 32 : text[i]));
        else
            REQUIRE(tw_str_append(&s, text + a, b - a) == 0);
        tw_str_puts(&s, w % 13 == 0 ? " \n  " : " ");
    }
    tw_vec_free(&starts);
    char *out;
    REQUIRE(tw_str_detach(&s, &out, NULL) == 0);
    return out;
}

static void test_near_duplicates(void)
{
    struct corpus c;
    corpus_load(&c, 40);
    tw_minhash *mh = make(128, 5, false, 0);
    for (size_t i = 0; i < c.n; i++)
        CHECK_OK(tw_minhash_add(mh, 100 + i, c.text[i], c.len[i]));
    // Unrelated addresses: no pair reaches 0.8 (nor 0.5).
    tw_vec pairs;
    tw_vec_init(&pairs, sizeof(struct tw_minhash_pair));
    CHECK_OK(tw_minhash_pairs(mh, -1, &pairs));
    CHECK_EQ_INT(pairs.len, 0);
    CHECK_OK(tw_minhash_pairs(mh, 0.5, &pairs));
    CHECK_EQ_INT(pairs.len, 0);

    // Copies of five addresses with a few words changed (J about 0.85-0.95), and a half of
    // another (J about 0.5: not a near-duplicate at 0.8).
    uint64_t seed = 99;
    size_t orig[5] = { 3, 11, 17, 25, 38 };
    for (size_t i = 0; i < 5; i++) {
        char *copy = near_copy(c.text[orig[i]], c.len[orig[i]], 8, &seed);
        tw_vec hits;
        tw_vec_init(&hits, sizeof(struct tw_minhash_hit));
        CHECK_OK(tw_minhash_query(mh, copy, strlen(copy), -1, &hits));
        CHECK(hits.len == 1 && TW_VEC_AT(&hits, struct tw_minhash_hit, 0).id == 100 + orig[i]);
        if (hits.len)
            CHECK(TW_VEC_AT(&hits, struct tw_minhash_hit, 0).similarity >= 0.8);
        tw_vec_free(&hits);
        CHECK_OK(tw_minhash_add(mh, 1000 + i, copy, strlen(copy)));
        tw_free(copy);
    }
    CHECK_OK(tw_minhash_add(mh, 2000, c.text[7], c.len[7] / 2));
    // A copy of a copy: three in one group.
    char *copy2 = near_copy(c.text[11], c.len[11], 8, &seed);
    CHECK_OK(tw_minhash_add(mh, 3000, copy2, strlen(copy2)));
    tw_free(copy2);

    tw_vec_clear(&pairs);
    CHECK_OK(tw_minhash_pairs(mh, 0.8, &pairs));
    // (orig, copy) five times, plus the second copy of 11 with both.
    CHECK_EQ_INT(pairs.len, 7);
    for (size_t i = 0; i < pairs.len; i++) {
        const struct tw_minhash_pair *p = &TW_VEC_AT(&pairs, struct tw_minhash_pair, i);
        CHECK(p->a < p->b && p->similarity >= 0.8);
        bool ok = false;
        for (size_t k = 0; k < 5; k++)
            ok |= p->a == 100 + orig[k] && p->b == 1000 + k;
        ok |= (p->a == 111 || p->a == 1001) && p->b == 3000;
        CHECK(ok);
        if (i)
            CHECK(p->a > (p - 1)->a || (p->a == (p - 1)->a && p->b > (p - 1)->b));
    }
    tw_vec ids, starts;
    tw_vec_init(&ids, sizeof(uint64_t));
    tw_vec_init(&starts, sizeof(size_t));
    CHECK_OK(tw_minhash_clusters(mh, -1, &ids, &starts));
    CHECK_EQ_INT(starts.len, 6); // five groups
    CHECK_EQ_INT(ids.len, 11);
    if (starts.len == 6 && ids.len == 11) {
        const uint64_t *m = ids.data;
        const size_t *st = starts.data;
        CHECK(st[0] == 0 && st[1] == 2 && st[2] == 5 && st[5] == 11);
        CHECK(m[0] == 103 && m[1] == 1000);
        CHECK(m[2] == 111 && m[3] == 1001 && m[4] == 3000);
        for (size_t g = 0; g + 1 < starts.len; g++)
            for (size_t i = st[g] + 1; i < st[g + 1]; i++)
                CHECK(m[i] > m[i - 1]);
    }
    tw_vec_free(&ids);
    tw_vec_free(&starts);

    // A query with an indexed text finds it first, at similarity 1.
    tw_vec hits;
    tw_vec_init(&hits, sizeof(struct tw_minhash_hit));
    CHECK_OK(tw_minhash_query(mh, c.text[7], c.len[7], 0.3, &hits));
    CHECK(hits.len >= 1 && TW_VEC_AT(&hits, struct tw_minhash_hit, 0).id == 107);
    CHECK(hits.len >= 1 && TW_VEC_AT(&hits, struct tw_minhash_hit, 0).similarity == 1.0);
    tw_vec_free(&hits);
    // Stored signatures.
    CHECK(tw_minhash_get(mh, 103) != NULL && tw_minhash_get(mh, 5) == NULL);
    CHECK_EQ_INT(tw_minhash_count(mh), c.n + 7);
    CHECK_EQ_INT(tw_minhash_add(mh, 103, "x", 1), TW_EEXIST);

    tw_vec_free(&pairs);
    tw_minhash_free(mh);
    for (size_t i = 0; i < c.n; i++)
        tw_free(c.text[i]);
}

// Empty texts are kept but never match; character shingles find near-duplicate short chunks.
static void test_small(void)
{
    tw_minhash *mh = make(128, 5, true, 0);
    const char *docs[] = {
        "",
        "   ",
        "The committee approved the budget for the next fiscal year after a long debate.",
        "the committee approved the budget for the next fiscal year after a long debate!",
        "The committee rejected the budget for the next fiscal year after a short debate.",
        "Completely unrelated sentence about the weather in the mountains in spring.",
    };
    for (size_t i = 0; i < N(docs); i++)
        CHECK_OK(tw_minhash_add(mh, i, docs[i], strlen(docs[i])));
    tw_vec pairs;
    tw_vec_init(&pairs, sizeof(struct tw_minhash_pair));
    CHECK_OK(tw_minhash_pairs(mh, 0.8, &pairs));
    CHECK_EQ_INT(pairs.len, 1);
    if (pairs.len == 1) {
        CHECK(TW_VEC_AT(&pairs, struct tw_minhash_pair, 0).a == 2);
        CHECK(TW_VEC_AT(&pairs, struct tw_minhash_pair, 0).b == 3);
    }
    tw_vec hits;
    tw_vec_init(&hits, sizeof(struct tw_minhash_hit));
    CHECK_OK(tw_minhash_query(mh, "", 0, 0.0, &hits));
    CHECK_EQ_INT(hits.len, 0);
    // The edited sentence is similar, not a near-duplicate.
    const uint32_t *s2 = tw_minhash_get(mh, 2), *s4 = tw_minhash_get(mh, 4);
    const uint32_t *s5 = tw_minhash_get(mh, 5);
    REQUIRE(s2 && s4 && s5);
    double sim24 = tw_minhash_similarity(s2, s4, 128), sim25 = tw_minhash_similarity(s2, s5, 128);
    CHECK(sim24 > 0.3 && sim24 < 0.8);
    CHECK(sim25 < 0.2);
    tw_vec_free(&hits);
    tw_vec_free(&pairs);
    tw_minhash_free(mh);
}

// ---- Failed allocations ---------------------------------------------------------------------

static void test_alloc_failures(void)
{
    long live0 = tw_mem_live();
    tw_minhash *mh = make(64, 3, false, 0);
    char text[64];
    for (int i = 0; i < 300; i++) {
        snprintf(text, sizeof text, "doc %d says hello world %d", i % 50, i % 50);
        REQUIRE(tw_minhash_add(mh, (uint64_t)i, text, strlen(text)) == 0);
    }
    tw_vec before, after;
    tw_vec_init(&before, sizeof(struct tw_minhash_pair));
    tw_vec_init(&after, sizeof(struct tw_minhash_pair));
    REQUIRE(tw_minhash_pairs(mh, -1, &before) == 0);
    int failures = 0;
    for (long k = 1; k < 1000; k++) {
        tw_mem_fail_after(k);
        int rc = tw_minhash_add(mh, 999, "doc 7 says hello world 7", 24);
        tw_mem_fail_after(0);
        if (rc == 0)
            break;
        failures++;
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK_EQ_INT(tw_minhash_count(mh), 300);
        CHECK(tw_minhash_get(mh, 999) == NULL);
        tw_vec_clear(&after);
        REQUIRE(tw_minhash_pairs(mh, -1, &after) == 0);
        CHECK(after.len == before.len &&
              memcmp(after.data, before.data, after.len * sizeof(struct tw_minhash_pair)) == 0);
    }
    CHECK(failures >= 3);
    CHECK(tw_minhash_get(mh, 999) != NULL);
    // Pairs and clusters fail cleanly: the output as it was.
    tw_vec ids, starts;
    tw_vec_init(&ids, sizeof(uint64_t));
    tw_vec_init(&starts, sizeof(size_t));
    for (long k = 1; k < 100000; k++) {
        tw_mem_fail_after(k);
        int rc = tw_minhash_clusters(mh, -1, &ids, &starts);
        tw_mem_fail_after(0);
        if (rc == 0)
            break;
        CHECK(rc == TW_ENOMEM && ids.len == 0 && starts.len == 0);
    }
    CHECK_EQ_INT(starts.len, 51); // 50 texts, each repeated 6 times (7 with doc 999)
    tw_vec_free(&ids);
    tw_vec_free(&starts);
    tw_vec_free(&before);
    tw_vec_free(&after);
    tw_minhash_free(mh);
    CHECK_EQ_INT(tw_mem_live(), live0);
}

int main(void)
{
    test_shingles();
    test_estimates();
    test_determinism();
    test_small();
    test_near_duplicates();
    test_alloc_failures();
    return check_report("test_minhash");
}

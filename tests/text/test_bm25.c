// Tests of src/text/bm25.c: the analyser's terms on hand-written text (punctuation, numbers,
// apostrophes, accents, CJK, invalid UTF-8), scores against a brute-force computation of the
// formula over chunks of 20 State of the Union addresses, ranking, incremental add and delete
// against an index rebuilt from the remaining documents, stop words, stemming, the filter,
// save/load round trips, damaged files (flipped bytes, truncation, forged checksums), and
// failed allocations (index unchanged, nothing leaked).
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "base/str.h"
#include "base/vec.h"
#include "check.h"
#include "sotu.h"
#include "text/bm25.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static double rel_err(double a, double b)
{
    double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
    return m == 0 ? 0 : fabs(a - b) / m;
}

// ---- Analysis -------------------------------------------------------------------------------

static int join_term(void *ctx, const char *t, size_t n)
{
    tw_str *s = ctx;
    if (tw_str_len(s))
        tw_str_putc(s, '|');
    return tw_str_append(s, t, n);
}

// The terms of text joined by '|' (a static buffer, valid until the next call).
static const char *terms_of(const char *text, bool stop, bool stem)
{
    static char out[1024];
    struct tw_bm25_options o = tw_bm25_options_default();
    o.stop_words = stop;
    o.stem = stem;
    tw_str s;
    tw_str_init(&s);
    int rc = tw_bm25_analyze(&o, text, strlen(text), join_term, &s);
    snprintf(out, sizeof out, "%s", rc ? "(error)" : tw_str_cstr(&s));
    tw_str_free(&s);
    return out;
}

static void test_analysis(void)
{
    // Punctuation, numbers, apostrophes, possessives.
    CHECK_EQ_STR(terms_of("Hello, World! It's the nation's 1,000 dollars; 3.14 don't 'quoted' "
                          "end. 12,a x.5",
                          false, false),
                 "hello|world|it|the|nation|1,000|dollars|3.14|don't|quoted|end|12|a|x|5");
    CHECK_EQ_STR(terms_of("don\xE2\x80\x99t O\xE2\x80\x99"
                          "Brien\xE2\x80\x99s",
                          false, false),
                 "don't|o'brien");
    CHECK_EQ_STR(terms_of("snake_case under_ score", false, false), "snake_case|under_|score");
    // Accents: NFC and NFD give the same term; case folding (sharp s), compatibility forms.
    CHECK_EQ_STR(terms_of("Caf\xC3\xA9 CAF\xC3\x89 cafe\xCC\x81 Stra\xC3\x9F"
                          "e STRASSE "
                          "\xEF\xAC\x81nance \xEF\xBC\xA1\xEF\xBC\xA2",
                          false, false),
                 "caf\xC3\xA9|caf\xC3\xA9|caf\xC3\xA9|strasse|strasse|finance|ab");
    // A mark cannot start a word; inside one it stays.
    CHECK_EQ_STR(terms_of(" \xCC\x81"
                          "abc na\xC3\xAFve",
                          false, false),
                 "abc|na\xC3\xAFve");
    // CJK: each Han ideograph and Hiragana is a term; Katakana and Hangul words stay whole.
    CHECK_EQ_STR(
        terms_of("\xE6\x88\x91\xE7\x88\xB1\xE5\x8C\x97\xE4\xBA\xAC\xE3\x80\x82", false, false),
        "\xE6\x88\x91|\xE7\x88\xB1|\xE5\x8C\x97|\xE4\xBA\xAC");
    CHECK_EQ_STR(terms_of("\xE6\x97\xA5\xE6\x9C\xAC\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82"
                          "\xB9\xE3\x83\x88 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
                          false, false),
                 "\xE6\x97\xA5|\xE6\x9C\xAC|\xE3\x81\xAE|\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9"
                 "\xE3\x83\x88|\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4");
    // Invalid UTF-8 separates words; a lone continuation byte too; a truncated sequence at
    // the end is dropped.
    CHECK_EQ_STR(terms_of("ab\xFF"
                          "cd\x80"
                          "ef gh\xE2\x82",
                          false, false),
                 "ab|cd|ef|gh");
    // Overlong words are dropped.
    char longw[300];
    memset(longw, 'x', 200);
    strcpy(longw + 200, " ok");
    CHECK_EQ_STR(terms_of(longw, false, false), "ok");
    // Stop words, then stemming.
    CHECK_EQ_STR(terms_of("The war of 1812 and THE peace", true, false), "war|1812|peace");
    CHECK_EQ_STR(terms_of("running runs ran nations' nation's", false, true),
                 "run|run|ran|nation|nation");
    CHECK_EQ_STR(terms_of("It's what they're doing", true, true), "");
    CHECK_EQ_STR(terms_of("", true, true), "");

    size_t n;
    const char *const *w = tw_bm25_stop_words(&n);
    CHECK(n > 100);
    for (size_t i = 0; i < n; i++) {
        CHECK(tw_bm25_is_stop_word(w[i], strlen(w[i])));
        if (i)
            CHECK(strcmp(w[i - 1], w[i]) < 0);
    }
    CHECK(!tw_bm25_is_stop_word("war", 3));
    CHECK(!tw_bm25_is_stop_word("th", 2));
    CHECK(!tw_bm25_is_stop_word("thee", 4));
}

// ---- The corpus: chunks of 20 addresses -----------------------------------------------------

struct corpus {
    size_t n;
    char **text; // NUL-terminated chunks
    uint64_t *id;
};

static void corpus_push(struct corpus *c, const char *s, size_t len, size_t *cap)
{
    if (c->n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        c->text = tw_realloc(c->text, *cap * sizeof *c->text);
        c->id = tw_realloc(c->id, *cap * sizeof *c->id);
        REQUIRE(c->text && c->id);
    }
    c->text[c->n] = tw_strndup(s, len);
    REQUIRE(c->text[c->n]);
    c->id[c->n] = 1000 + 7 * (uint64_t)c->n; // ids unlike the internal numbering
    c->n++;
}

// Cuts text into chunks of at least 80 words that end at a sentence end.
static void chunk_text(struct corpus *c, const char *text, size_t len, size_t *cap)
{
    size_t start = 0, words = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ' && i > 0 && text[i - 1] != ' ')
            words++;
        bool end = (text[i] == '.' || text[i] == '!' || text[i] == '?') &&
                   (i + 1 == len || text[i + 1] == ' ');
        if ((end && words >= 80) || i + 1 == len) {
            corpus_push(c, text + start, i + 1 - start, cap);
            start = i + 1;
            words = 0;
        }
    }
}

static void corpus_load(struct corpus *c, size_t n_files)
{
    memset(c, 0, sizeof *c);
    char dir[4096];
    char *names[400];
    size_t nn = sotu_list(dir, sizeof dir, names, sizeof names / sizeof names[0]);
    REQUIRE(nn >= n_files);
    size_t cap = 0;
    for (size_t i = 0; i < n_files; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i * nn / n_files]);
        char *text;
        size_t len;
        REQUIRE(tw_file_read(path, 1 << 24, &text, &len) == 0);
        chunk_text(c, text, len, &cap);
        tw_free(text);
    }
    for (size_t i = 0; i < nn; i++)
        tw_free(names[i]);
}

static void corpus_free(struct corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        tw_free(c->text[i]);
    tw_free(c->text);
    tw_free(c->id);
}

// ---- The brute-force model ------------------------------------------------------------------

struct bdoc {
    uint64_t id;
    tw_map tf; // term -> count
    uint64_t len;
    bool live;
};

struct model {
    struct tw_bm25_options opt;
    size_t n;
    struct bdoc *d;
};

static int count_term(void *ctx, const char *t, size_t n)
{
    struct bdoc *d = ctx;
    uint64_t v = 0;
    tw_map_get_str(&d->tf, t, n, &v);
    d->len++;
    return tw_map_put_str(&d->tf, t, n, v + 1);
}

static void model_init(struct model *m, const struct corpus *c, struct tw_bm25_options opt)
{
    m->opt = opt;
    m->n = c->n;
    m->d = tw_calloc(c->n, sizeof *m->d);
    REQUIRE(m->d);
    for (size_t i = 0; i < c->n; i++) {
        m->d[i].id = c->id[i];
        m->d[i].live = true;
        tw_map_init(&m->d[i].tf, TW_MAP_STR);
        REQUIRE(tw_bm25_analyze(&opt, c->text[i], strlen(c->text[i]), count_term, &m->d[i]) == 0);
    }
}

static void model_free(struct model *m)
{
    for (size_t i = 0; i < m->n; i++)
        tw_map_free(&m->d[i].tf);
    tw_free(m->d);
}

static int push_term(void *ctx, const char *t, size_t n)
{
    char *s = tw_strndup(t, n);
    return s ? tw_vec_push(ctx, &s) : TW_ENOMEM;
}

// scores[i] = the formula for live document i, computed from scratch.
static void model_scores(const struct model *m, const char *query, double *scores)
{
    tw_vec q;
    tw_vec_init(&q, sizeof(char *));
    REQUIRE(tw_bm25_analyze(&m->opt, query, strlen(query), push_term, &q) == 0);
    double n = 0, total = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->d[i].live) {
            n++;
            total += (double)m->d[i].len;
        }
    double avgdl = total / n, k1 = m->opt.k1, b = m->opt.b;
    for (size_t i = 0; i < m->n; i++)
        scores[i] = 0;
    for (size_t t = 0; t < q.len; t++) {
        const char *term = TW_VEC_AT(&q, char *, t);
        double df = 0;
        for (size_t i = 0; i < m->n; i++)
            if (m->d[i].live && tw_map_get_str(&m->d[i].tf, term, strlen(term), NULL))
                df++;
        double idf = log(1 + (n - df + 0.5) / (df + 0.5));
        for (size_t i = 0; i < m->n; i++) {
            uint64_t tf;
            if (!m->d[i].live || !tw_map_get_str(&m->d[i].tf, term, strlen(term), &tf))
                continue;
            double dl = (double)m->d[i].len;
            scores[i] +=
                idf * (double)tf * (k1 + 1) / ((double)tf + k1 * (1 - b + b * dl / avgdl));
        }
        tw_free(TW_VEC_AT(&q, char *, t));
    }
    tw_vec_free(&q);
}

struct ranked {
    uint64_t id;
    double score;
};

static int cmp_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static const char *queries[] = {
    "war with Mexico",
    "the economy, taxes and the national debt",
    "slavery",
    "Constitution of the United States",
    "peace treaty with the Indian tribes",
    "running a government that works",
    "nuclear weapons and the Soviet Union",
    "health care for every American family",
    "war war war",
    "zzzunknownword",
};

// Compares one search (all documents, then the top 10) with the model: same documents, scores
// within 1e-9 relative, order by score then id. Also checks tw_bm25_score on a few.
static void check_query(const tw_bm25 *ix, const struct model *m, const char *query)
{
    double *want = tw_calloc(m->n, sizeof *want);
    struct ranked *r = tw_calloc(m->n + 1, sizeof *r);
    struct tw_bm25_hit *hits = tw_calloc(m->n + 1, sizeof *hits);
    REQUIRE(want && r && hits);
    model_scores(m, query, want);
    size_t nr = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->d[i].live && want[i] > 0)
            r[nr++] = (struct ranked){ m->d[i].id, want[i] };
    qsort(r, nr, sizeof *r, cmp_ranked);

    size_t nh = 0;
    CHECK_OK(tw_bm25_search(ix, query, strlen(query), m->n, NULL, NULL, hits, &nh));
    CHECK_EQ_INT(nh, nr);
    int bad = 0;
    for (size_t i = 0; i < nh && i < nr; i++) {
        if (rel_err(hits[i].score, r[i].score) > 1e-9)
            bad++;
        if (i && (hits[i].score > hits[i - 1].score ||
                  (hits[i].score == hits[i - 1].score && hits[i].id < hits[i - 1].id)))
            bad++;
        // The document itself has the model's score.
        size_t di = (size_t)(hits[i].id - 1000) / 7;
        if (di >= m->n || m->d[di].id != hits[i].id || rel_err(hits[i].score, want[di]) > 1e-9)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    if (bad)
        fprintf(stderr, "  query \"%s\": %d mismatches\n", query, bad);

    size_t n10 = 0;
    CHECK_OK(tw_bm25_search(ix, query, strlen(query), 10, NULL, NULL, hits, &n10));
    CHECK_EQ_INT(n10, nr < 10 ? nr : 10);
    for (size_t i = 0; i < n10 && i < nr; i++)
        CHECK(rel_err(hits[i].score, r[i].score) <= 1e-9);

    // The direct path, on the first, a middle, and a non-matching live document.
    for (size_t i = 0; i < m->n; i += m->n / 3 + 1) {
        if (!m->d[i].live)
            continue;
        double s = -1;
        CHECK_OK(tw_bm25_score(ix, query, strlen(query), m->d[i].id, &s));
        CHECK(rel_err(s, want[i]) <= 1e-9);
    }
    tw_free(want);
    tw_free(r);
    tw_free(hits);
}

static tw_bm25 *build(const struct corpus *c, const struct tw_bm25_options *o, const bool *skip)
{
    tw_bm25 *ix = NULL;
    REQUIRE(tw_bm25_new(o, &ix) == 0);
    for (size_t i = 0; i < c->n; i++)
        if (!skip || !skip[i])
            REQUIRE(tw_bm25_add(ix, c->id[i], c->text[i], strlen(c->text[i])) == 0);
    return ix;
}

static void check_stats(const tw_bm25 *ix, const struct model *m)
{
    size_t n = 0;
    double total = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->d[i].live) {
            n++;
            total += (double)m->d[i].len;
            uint32_t len = 0;
            CHECK(tw_bm25_contains(ix, m->d[i].id, &len));
            CHECK_EQ_INT(len, m->d[i].len);
        } else {
            CHECK(!tw_bm25_contains(ix, m->d[i].id, NULL));
        }
    CHECK_EQ_INT(tw_bm25_count(ix), n);
    CHECK(rel_err(tw_bm25_avgdl(ix), n ? total / (double)n : 0) <= 1e-12);
    // df of a few terms.
    const char *terms[] = { "war", "peac", "constitut", "congress", "mexico", "slaveri" };
    for (size_t t = 0; t < N(terms); t++) {
        uint32_t df = 0;
        for (size_t i = 0; i < m->n; i++)
            if (m->d[i].live && tw_map_get_str(&m->d[i].tf, terms[t], strlen(terms[t]), NULL))
                df++;
        CHECK_EQ_INT(tw_bm25_df(ix, terms[t], strlen(terms[t])), df);
    }
}

static void test_scores(const struct corpus *c)
{
    struct tw_bm25_options opts[3] = { tw_bm25_options_default(), tw_bm25_options_default(),
                                       tw_bm25_options_default() };
    opts[1].stop_words = false;
    opts[1].stem = false;
    opts[2].k1 = 2.0;
    opts[2].b = 0.3;
    for (size_t o = 0; o < N(opts); o++) {
        struct model m;
        model_init(&m, c, opts[o]);
        tw_bm25 *ix = build(c, &opts[o], NULL);
        if (o == 0)
            check_stats(ix, &m);
        for (size_t q = 0; q < N(queries); q++)
            check_query(ix, &m, queries[q]);
        tw_bm25_free(ix);
        model_free(&m);
    }
}

// ---- Ranking, stop words, stemming, Unicode on small hand-made indexes ----------------------

static size_t search_ids(const tw_bm25 *ix, const char *q, uint64_t *ids, size_t k)
{
    struct tw_bm25_hit hits[16];
    size_t n = 0;
    CHECK_OK(tw_bm25_search(ix, q, strlen(q), k, NULL, NULL, hits, &n));
    for (size_t i = 0; i < n; i++)
        ids[i] = hits[i].id;
    return n;
}

static void test_small(void)
{
    tw_bm25 *ix = NULL;
    REQUIRE(tw_bm25_new(NULL, &ix) == 0);
    const char *docs[] = {
        "apple apple apple",                           // 1
        "apple banana",                                // 2
        "banana cherry",                               // 3
        "He was running fast through the fields",      // 4
        "Caf\xC3\xA9 au lait, s'il vous pla\xC3\xAEt", // 5
        "a na\xC3\xAFve r\xC3\xA9sum\xC3\xA9",         // 6
        "\xE5\x8C\x97\xE4\xBA\xAC\xE6\x98\xAF\xE4\xB8\xAD\xE5\x9B\xBD\xE7\x9A\x84\xE9\xA6\x96"
        "\xE9\x83\xBD\xE3\x80\x82", // 7: Beijing is China's capital
        "\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x81\xAF\xE6\x97\xA5\xE6\x9C\xAC\xE3\x81\xAE\xE9\xA6\x96"
        "\xE9\x83\xBD\xE3\x81\xA7\xE3\x81\x99", // 8: Tokyo is Japan's capital
        "the of and",                           // 9: only stop words
        "",                                     // 10: empty
    };
    for (size_t i = 0; i < N(docs); i++)
        CHECK_OK(tw_bm25_add(ix, i + 1, docs[i], strlen(docs[i])));
    CHECK_EQ_INT(tw_bm25_count(ix), N(docs));
    uint32_t len = 99;
    CHECK(tw_bm25_contains(ix, 9, &len));
    CHECK_EQ_INT(len, 0);
    CHECK(tw_bm25_contains(ix, 10, &len));
    CHECK_EQ_INT(len, 0);

    uint64_t ids[16];
    size_t n = search_ids(ix, "apple", ids, 10);
    CHECK_EQ_INT(n, 2);
    CHECK(n == 2 && ids[0] == 1 && ids[1] == 2);
    n = search_ids(ix, "cherry", ids, 10);
    CHECK(n == 1 && ids[0] == 3);
    n = search_ids(ix, "banana apple", ids, 10);
    CHECK(n == 3 && ids[0] == 2); // holds both
    n = search_ids(ix, "apple", ids, 1);
    CHECK(n == 1 && ids[0] == 1);
    // Stemming: "runs" and "running" meet at "run".
    n = search_ids(ix, "runs", ids, 10);
    CHECK(n == 1 && ids[0] == 4);
    // Stop words: a query of stop words finds nothing.
    CHECK_EQ_INT(search_ids(ix, "the of", ids, 10), 0);
    CHECK_EQ_INT(search_ids(ix, "", ids, 10), 0);
    // Accents: upper case, NFD.
    n = search_ids(ix, "CAFE\xCC\x81", ids, 10);
    CHECK(n == 1 && ids[0] == 5);
    n = search_ids(ix, "R\xC3\x89SUM\xC3\x89 naive", ids, 10);
    CHECK(n == 1 && ids[0] == 6);
    CHECK_EQ_INT(search_ids(ix, "cafe", ids, 10), 0);
    // CJK: "capital" is in both; "Beijing" shares its second character with "Tokyo".
    n = search_ids(ix, "\xE9\xA6\x96\xE9\x83\xBD", ids, 10);
    CHECK(n == 2 && ((ids[0] == 7 && ids[1] == 8) || (ids[0] == 8 && ids[1] == 7)));
    n = search_ids(ix, "\xE5\x8C\x97\xE4\xBA\xAC", ids, 10);
    CHECK(n == 2 && ids[0] == 7 && ids[1] == 8);
    tw_bm25_free(ix);

    // Without stemming "runs" misses "running"; without stop words "the" is a term.
    struct tw_bm25_options o = tw_bm25_options_default();
    o.stem = false;
    o.stop_words = false;
    REQUIRE(tw_bm25_new(&o, &ix) == 0);
    for (size_t i = 0; i < N(docs); i++)
        CHECK_OK(tw_bm25_add(ix, i + 1, docs[i], strlen(docs[i])));
    CHECK_EQ_INT(search_ids(ix, "runs", ids, 10), 0);
    n = search_ids(ix, "running", ids, 10);
    CHECK(n == 1 && ids[0] == 4);
    n = search_ids(ix, "the", ids, 10);
    CHECK(n == 2 && ids[0] == 9 && ids[1] == 4); // the shorter document ranks first
    tw_bm25_free(ix);

    // Bad options and bad calls.
    o = tw_bm25_options_default();
    o.b = 1.5;
    CHECK_EQ_INT(tw_bm25_new(&o, &ix), TW_EINVAL);
    o.b = 0.75;
    o.k1 = NAN;
    CHECK_EQ_INT(tw_bm25_new(&o, &ix), TW_EINVAL);
    REQUIRE(tw_bm25_new(NULL, &ix) == 0);
    CHECK_OK(tw_bm25_add(ix, 5, "x", 1));
    CHECK_EQ_INT(tw_bm25_add(ix, 5, "y", 1), TW_EEXIST);
    CHECK(strstr(tw_error_msg(), "5") != NULL);
    CHECK_EQ_INT(tw_bm25_delete(ix, 6), TW_ENOENT);
    double s;
    CHECK_EQ_INT(tw_bm25_score(ix, "x", 1, 6, &s), TW_ENOENT);
    CHECK_OK(tw_bm25_delete(ix, 5));
    CHECK_EQ_INT(tw_bm25_count(ix), 0);
    CHECK_EQ_INT(tw_bm25_term_count(ix), 0);
    CHECK_EQ_INT(search_ids(ix, "x", ids, 10), 0);
    tw_bm25_free(ix);
}

// ---- Incremental add and delete -------------------------------------------------------------

// The same results, to 1e-9, from two indexes for every query.
static void check_same(const tw_bm25 *a, const tw_bm25 *b, size_t k)
{
    struct tw_bm25_hit *ha = tw_calloc(k, sizeof *ha), *hb = tw_calloc(k, sizeof *hb);
    REQUIRE(ha && hb);
    for (size_t q = 0; q < N(queries); q++) {
        size_t na = 0, nb = 0;
        CHECK_OK(tw_bm25_search(a, queries[q], strlen(queries[q]), k, NULL, NULL, ha, &na));
        CHECK_OK(tw_bm25_search(b, queries[q], strlen(queries[q]), k, NULL, NULL, hb, &nb));
        CHECK_EQ_INT(na, nb);
        int bad = 0;
        for (size_t i = 0; i < na && i < nb; i++)
            if (rel_err(ha[i].score, hb[i].score) > 1e-9 ||
                (ha[i].id != hb[i].id && rel_err(ha[i].score, hb[i].score) > 1e-12))
                bad++;
        CHECK_EQ_INT(bad, 0);
    }
    tw_free(ha);
    tw_free(hb);
}

static void test_add_delete(const struct corpus *c)
{
    struct tw_bm25_options o = tw_bm25_options_default();
    struct model m;
    model_init(&m, c, o);
    tw_bm25 *ix = build(c, &o, NULL);
    bool *gone = tw_calloc(c->n, sizeof *gone);
    REQUIRE(gone);

    // A few deletes (no compaction yet), then most of the rest of a random 60% (compactions).
    uint64_t seed = 42;
    size_t ndel = 0;
    for (size_t step = 0; step < 2; step++) {
        size_t target = step == 0 ? 5 : c->n * 6 / 10;
        while (ndel < target) {
            size_t i = (size_t)(check_rand(&seed) % c->n);
            if (gone[i])
                continue;
            CHECK_OK(tw_bm25_delete(ix, c->id[i]));
            gone[i] = true;
            m.d[i].live = false;
            ndel++;
        }
        tw_bm25 *fresh = build(c, &o, gone);
        CHECK_EQ_INT(tw_bm25_count(ix), tw_bm25_count(fresh));
        CHECK_EQ_INT(tw_bm25_term_count(ix), tw_bm25_term_count(fresh));
        CHECK(tw_bm25_avgdl(ix) == tw_bm25_avgdl(fresh));
        check_stats(ix, &m);
        check_same(ix, fresh, c->n);
        for (size_t q = 0; q < 4; q++)
            check_query(ix, &m, queries[q]);
        tw_bm25_free(fresh);
    }
    // An explicit compaction changes nothing.
    tw_bm25_compact(ix);
    check_query(ix, &m, queries[0]);

    // Put the deleted documents back (ids reused): as the full index again.
    for (size_t i = 0; i < c->n; i++)
        if (gone[i]) {
            CHECK_OK(tw_bm25_add(ix, c->id[i], c->text[i], strlen(c->text[i])));
            m.d[i].live = true;
        }
    tw_bm25 *full = build(c, &o, NULL);
    check_same(ix, full, 50);
    check_stats(ix, &m);

    // Delete everything: empty, and usable again.
    for (size_t i = 0; i < c->n; i++)
        CHECK_OK(tw_bm25_delete(ix, c->id[i]));
    CHECK_EQ_INT(tw_bm25_count(ix), 0);
    CHECK_EQ_INT(tw_bm25_term_count(ix), 0);
    CHECK(tw_bm25_avgdl(ix) == 0);
    struct tw_bm25_hit h[4];
    size_t nh = 9;
    CHECK_OK(tw_bm25_search(ix, "war", 3, 4, NULL, NULL, h, &nh));
    CHECK_EQ_INT(nh, 0);
    CHECK_OK(tw_bm25_add(ix, 1, "war and peace", 13));
    CHECK_OK(tw_bm25_search(ix, "war", 3, 4, NULL, NULL, h, &nh));
    CHECK(nh == 1 && h[0].id == 1);

    tw_bm25_free(full);
    tw_bm25_free(ix);
    tw_free(gone);
    model_free(&m);
}

// ---- The filter -----------------------------------------------------------------------------

struct filter {
    uint64_t mod;
    size_t calls;
};

static bool keep_mod(void *ctx, uint64_t id)
{
    struct filter *f = ctx;
    f->calls++;
    return (id / 7) % f->mod == 0;
}

static void test_filter(const struct corpus *c)
{
    struct tw_bm25_options o = tw_bm25_options_default();
    struct model m;
    model_init(&m, c, o);
    tw_bm25 *ix = build(c, &o, NULL);
    double *want = tw_calloc(c->n, sizeof *want);
    struct ranked *r = tw_calloc(c->n, sizeof *r);
    struct tw_bm25_hit hits[20];
    REQUIRE(want && r);
    uint64_t mods[] = { 2, 3, 50, 1000000 };
    for (size_t q = 0; q < 8; q++) {
        model_scores(&m, queries[q], want);
        size_t matching = 0;
        for (size_t i = 0; i < c->n; i++)
            matching += want[i] > 0;
        for (size_t k = 0; k < N(mods); k++) {
            struct filter f = { .mod = mods[k] };
            size_t nr = 0;
            for (size_t i = 0; i < c->n; i++)
                if (want[i] > 0 && (c->id[i] / 7) % f.mod == 0)
                    r[nr++] = (struct ranked){ c->id[i], want[i] };
            qsort(r, nr, sizeof *r, cmp_ranked);
            size_t n = 0;
            CHECK_OK(
                tw_bm25_search(ix, queries[q], strlen(queries[q]), 20, keep_mod, &f, hits, &n));
            CHECK_EQ_INT(n, nr < 20 ? nr : 20); // still k when enough pass
            CHECK(f.calls <= matching);
            for (size_t i = 0; i < n; i++) {
                CHECK((hits[i].id / 7) % f.mod == 0);
                CHECK(i >= nr || rel_err(hits[i].score, r[i].score) <= 1e-9);
            }
        }
    }
    tw_free(want);
    tw_free(r);
    tw_bm25_free(ix);
    model_free(&m);
}

// ---- Persistence ----------------------------------------------------------------------------

static char tmpdir[64];

static void tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

// Loading path must fail with code and a message naming path and saying `what`.
static void check_load_fails(int line, const char *path, int code, const char *what)
{
    tw_bm25 *ix = (tw_bm25 *)(uintptr_t)1;
    int rc = tw_bm25_load(path, &ix);
    check_count++;
    if (rc != code || ix != (tw_bm25 *)(uintptr_t)1 || !strstr(tw_error_msg(), path) ||
        (what && !strstr(tw_error_msg(), what))) {
        fprintf(stderr, "%s:%d: load %s: rc %d (want %d): %s (want \"%s\")\n", __FILE__, line,
                path, rc, code, tw_error_msg(), what ? what : "");
        check_failed_count++;
    }
    if (rc == 0 && ix != (tw_bm25 *)(uintptr_t)1)
        tw_bm25_free(ix);
}

// A plain write (no fsync: these files are many and short-lived).
static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp);
    REQUIRE(len == 0 || fwrite(data, 1, len, fp) == len);
    REQUIRE(fclose(fp) == 0);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void test_persistence(const struct corpus *c)
{
    struct tw_bm25_options o = tw_bm25_options_default();
    o.k1 = 1.5; // kept in the file
    tw_bm25 *ix = build(c, &o, NULL);
    // Deleted documents are not written.
    for (size_t i = 0; i < c->n; i += 5)
        CHECK_OK(tw_bm25_delete(ix, c->id[i]));
    char p1[256], p2[256], bad[256];
    tmp_path(p1, sizeof p1, "a.bm25");
    tmp_path(p2, sizeof p2, "b.bm25");
    tmp_path(bad, sizeof bad, "bad.bm25");
    CHECK_OK(tw_bm25_save(ix, p1));

    tw_bm25 *back = NULL;
    CHECK_OK(tw_bm25_load(p1, &back));
    REQUIRE(back);
    CHECK(tw_bm25_options(back).k1 == 1.5);
    CHECK(tw_bm25_options(back).stem && tw_bm25_options(back).stop_words);
    CHECK_EQ_INT(tw_bm25_count(back), tw_bm25_count(ix));
    CHECK_EQ_INT(tw_bm25_term_count(back), tw_bm25_term_count(ix));
    CHECK(tw_bm25_avgdl(back) == tw_bm25_avgdl(ix));
    check_same(ix, back, c->n);
    // Identical results, bit for bit.
    struct tw_bm25_hit ha[10], hb[10];
    for (size_t q = 0; q < N(queries); q++) {
        size_t na = 0, nb = 0;
        CHECK_OK(tw_bm25_search(ix, queries[q], strlen(queries[q]), 10, NULL, NULL, ha, &na));
        CHECK_OK(tw_bm25_search(back, queries[q], strlen(queries[q]), 10, NULL, NULL, hb, &nb));
        CHECK(na == nb && memcmp(ha, hb, na * sizeof ha[0]) == 0);
    }
    // Saving the loaded index gives the same bytes.
    CHECK_OK(tw_bm25_save(back, p2));
    char *a, *b;
    size_t la, lb;
    REQUIRE(tw_file_read(p1, 1 << 28, &a, &la) == 0);
    REQUIRE(tw_file_read(p2, 1 << 28, &b, &lb) == 0);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    tw_free(b);
    // The loaded index is a full index: delete and add work on it.
    for (size_t i = 1; i < c->n; i += 9) {
        CHECK_EQ_INT(tw_bm25_delete(back, c->id[i]), tw_bm25_delete(ix, c->id[i]));
    }
    CHECK_OK(tw_bm25_add(back, 1, "war with Mexico", 15));
    CHECK_OK(tw_bm25_add(ix, 1, "war with Mexico", 15));
    check_same(ix, back, 100);
    tw_bm25_free(back);
    tw_free(a);

    // Damage, on a smaller index (40 chunks, a few deleted): flipped bytes anywhere (checksum,
    // header, body), truncations. A flip in the format version is "unsupported"; anywhere else
    // the file is damaged.
    tw_bm25 *small = NULL;
    REQUIRE(tw_bm25_new(&o, &small) == 0);
    for (size_t i = 0; i < 40; i++)
        REQUIRE(tw_bm25_add(small, c->id[i], c->text[i], strlen(c->text[i])) == 0);
    for (size_t i = 0; i < 40; i += 7)
        REQUIRE(tw_bm25_delete(small, c->id[i]) == 0);
    CHECK_OK(tw_bm25_save(small, p1));
    tw_bm25_free(small);
    REQUIRE(tw_file_read(p1, 1 << 28, &a, &la) == 0);
    uint64_t seed = 7;
    char *f = tw_malloc(la + 3);
    REQUIRE(f);
    for (int t = 0; t < 40; t++) {
        size_t at = t < 8 ? (size_t)t * 11 : (size_t)(check_rand(&seed) % la);
        memcpy(f, a, la);
        f[at] ^= (char)(1 + check_rand(&seed) % 255);
        write_bytes(bad, f, la);
        check_load_fails(__LINE__, bad, at >= 8 && at < 12 ? TW_EUNSUPPORTED : TW_EFORMAT, NULL);
    }
    size_t cuts[] = { 0, 1, 50, 111, 112, la / 2, la - 33, la - 1 };
    for (size_t i = 0; i < N(cuts); i++) {
        write_bytes(bad, a, cuts[i]);
        check_load_fails(__LINE__, bad, TW_EFORMAT, "truncated");
    }
    // Trailing bytes, a foreign file, a missing file.
    memcpy(f, a, la);
    memcpy(f + la, "xyz", 3);
    write_bytes(bad, f, la + 3);
    check_load_fails(__LINE__, bad, TW_EFORMAT, "after the end");
    memset(f, 'h', 200);
    write_bytes(bad, f, 200);
    check_load_fails(__LINE__, bad, TW_EFORMAT, "magic");
    tmp_path(bad, sizeof bad, "missing.bm25");
    check_load_fails(__LINE__, bad, TW_ENOENT, NULL);
    tmp_path(bad, sizeof bad, "bad.bm25");

    // Forged checksums: the structure itself is checked. A posting's document number out of
    // range, then random bytes of the body changed with the checksum recomputed: each load
    // succeeds (a changed id, say) or fails cleanly.
    {
        uint32_t ndocs = 0; // the header's u64 at 40 (small)
        for (int i = 0; i < 4; i++)
            ndocs |= (uint32_t)(uint8_t)a[40 + i] << (8 * i);
        size_t first_term = 80 + 16 * (size_t)ndocs;
        uint32_t klen = (uint8_t)a[first_term] | (uint32_t)(uint8_t)a[first_term + 1] << 8;
        size_t post = first_term + 4 + klen + 4;
        memcpy(f, a, la);
        put32((uint8_t *)f + post, ndocs + 5);
        tw_sha256(f, la - 32, (uint8_t *)f + la - 32);
        write_bytes(bad, f, la);
        check_load_fails(__LINE__, bad, TW_EFORMAT, "posting 0");
        memcpy(f, a, la);
        put32((uint8_t *)f + 12, 99); // another analyser
        tw_sha256(f, la - 32, (uint8_t *)f + la - 32);
        write_bytes(bad, f, la);
        check_load_fails(__LINE__, bad, TW_EUNSUPPORTED, "analyser");
        memcpy(f, a, la);
        f[32 + 7] = (char)0xFF; // b becomes negative
        tw_sha256(f, la - 32, (uint8_t *)f + la - 32);
        write_bytes(bad, f, la);
        check_load_fails(__LINE__, bad, TW_EFORMAT, "b = ");
        int loaded = 0, failed = 0;
        for (int t = 0; t < 300; t++) {
            memcpy(f, a, la);
            int nflip = 1 + (int)(check_rand(&seed) % 3);
            for (int j = 0; j < nflip; j++) {
                size_t at = 16 + (size_t)(check_rand(&seed) % (la - 48));
                f[at] ^= (char)(1 << (check_rand(&seed) % 8));
            }
            tw_sha256(f, la - 32, (uint8_t *)f + la - 32);
            write_bytes(bad, f, la);
            tw_bm25 *x = NULL;
            int rc = tw_bm25_load(bad, &x);
            if (rc == 0) {
                loaded++;
                tw_bm25_free(x);
            } else {
                failed++;
                CHECK(rc == TW_EFORMAT || rc == TW_EUNSUPPORTED);
                CHECK(strstr(tw_error_msg(), bad) != NULL);
            }
        }
        CHECK(failed > 150);
        (void)loaded;
    }
    tw_free(f);
    tw_free(a);

    // An empty index round-trips.
    tw_bm25 *empty = NULL;
    REQUIRE(tw_bm25_new(NULL, &empty) == 0);
    CHECK_OK(tw_bm25_save(empty, p2));
    tw_bm25_free(empty);
    empty = NULL;
    CHECK_OK(tw_bm25_load(p2, &empty));
    CHECK(empty && tw_bm25_count(empty) == 0);
    tw_bm25_free(empty);
    // A directory that does not exist.
    CHECK(tw_bm25_save(ix, "/nonexistent-dir-twin/x.bm25") != 0);
    tw_bm25_free(ix);
}

// ---- Failed allocations ---------------------------------------------------------------------

static void test_alloc_failures(const struct corpus *c)
{
    long live0 = tw_mem_live();
    tw_bm25 *ix = NULL;
    REQUIRE(tw_bm25_new(NULL, &ix) == 0);
    for (size_t i = 0; i < 20; i++)
        REQUIRE(tw_bm25_add(ix, c->id[i], c->text[i], strlen(c->text[i])) == 0);
    struct tw_bm25_hit before[10], after[10];
    size_t nb = 0, na = 0;
    const char *q = queries[4];
    REQUIRE(tw_bm25_search(ix, q, strlen(q), 10, NULL, NULL, before, &nb) == 0);
    size_t terms = tw_bm25_term_count(ix);

    // Adding a document with new terms fails at each allocation in turn, then succeeds.
    const char *text = c->text[100];
    int failures = 0;
    for (long k = 1; k < 10000; k++) {
        tw_mem_fail_after(k);
        int rc = tw_bm25_add(ix, 5, text, strlen(text));
        tw_mem_fail_after(0);
        if (rc == 0)
            break;
        failures++;
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK_EQ_INT(tw_bm25_count(ix), 20);
        CHECK_EQ_INT(tw_bm25_term_count(ix), terms);
        CHECK(!tw_bm25_contains(ix, 5, NULL));
        REQUIRE(tw_bm25_search(ix, q, strlen(q), 10, NULL, NULL, after, &na) == 0);
        CHECK(na == nb && memcmp(before, after, na * sizeof before[0]) == 0);
    }
    CHECK(failures > 3);
    CHECK(tw_bm25_contains(ix, 5, NULL));

    // Searches, saves and loads fail cleanly too.
    char p[256];
    tmp_path(p, sizeof p, "alloc.bm25");
    CHECK_OK(tw_bm25_save(ix, p));
    for (long k = 1; k < 10000; k++) {
        tw_mem_fail_after(k);
        int rc = tw_bm25_search(ix, q, strlen(q), 10, NULL, NULL, after, &na);
        tw_mem_fail_after(0);
        if (rc == 0)
            break;
        CHECK(rc == TW_ENOMEM && na == 0);
    }
    for (long k = 1; k < 100000; k++) {
        tw_bm25 *x = NULL;
        tw_mem_fail_after(k);
        int rc = tw_bm25_load(p, &x);
        tw_mem_fail_after(0);
        if (rc == 0) {
            tw_bm25_free(x);
            break;
        }
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK(x == NULL);
    }
    for (long k = 1; k < 100; k++) {
        tw_mem_fail_after(k);
        int rc = tw_bm25_save(ix, p);
        tw_mem_fail_after(0);
        if (rc == 0)
            break;
        CHECK(rc == TW_ENOMEM || rc == TW_EIO);
    }
    tw_bm25_free(ix);
    CHECK_EQ_INT(tw_mem_live(), live0);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/twin-test-bm25-XXXXXX");
    REQUIRE(mkdtemp(tmpdir));
    test_analysis();
    struct corpus c;
    corpus_load(&c, 20);
    REQUIRE(c.n > 500);
    test_small();
    test_scores(&c);
    test_add_delete(&c);
    test_filter(&c);
    test_persistence(&c);
    test_alloc_failures(&c);
    corpus_free(&c);
    tw_remove_tree(tmpdir);
    return check_report("test_bm25");
}

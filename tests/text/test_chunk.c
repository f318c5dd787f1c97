// Tests text/chunk.h: token windows (coverage, exact overlaps, byte ranges), the sentence
// splitter (abbreviations, quotes, paragraphs), sentence chunks (bounds, boundaries,
// optimality against exhaustive search), code chunks (definitions, lines), the dispatcher,
// stable ids, errors and allocation failures; on the State of the Union corpus where it can.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/sha256.h"
#include "base/str.h"
#include "base/vec.h"
#include "check.h"
#include "sotu.h"
#include "text/chunk.h"
#include "text/clean.h"

#define CHUNK(v, i) TW_VEC_AT(v, struct tw_chunk, i)

// ---- helpers

static bool is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

// The test's tokenizer: maximal runs of non-whitespace bytes.
static void ws_spans(const char *t, size_t len, tw_vec *spans)
{
    tw_vec_init(spans, sizeof(struct tw_span));
    for (size_t i = 0; i < len;) {
        while (i < len && is_ws(t[i]))
            i++;
        size_t s = i;
        while (i < len && !is_ws(t[i]))
            i++;
        if (i > s) {
            struct tw_span sp = { (uint32_t)s, (uint32_t)i };
            REQUIRE(tw_vec_push(spans, &sp) == 0);
        }
    }
}

static bool ws_only(const char *t, size_t a, size_t b)
{
    for (size_t i = a; i < b; i++)
        if (!is_ws(t[i]))
            return false;
    return true;
}

static size_t chars(const char *t, size_t a, size_t b)
{
    return tw_clean_count_chars(t + a, b - a);
}

// Every chunk: not empty, inside the text, its id the sha256 of its bytes, n_chars right.
static void check_chunk_basics(const char *t, size_t len, const tw_vec *v)
{
    for (size_t i = 0; i < v->len; i++) {
        const struct tw_chunk *c = &CHUNK(v, i);
        CHECK(c->start < c->end && c->end <= len);
        uint8_t d[TW_SHA256_LEN];
        char hex[65];
        tw_sha256(t + c->start, c->end - c->start, d);
        tw_sha256_hex(d, hex);
        CHECK_EQ_STR(c->id, hex);
        CHECK_EQ_INT(c->n_chars, chars(t, c->start, c->end));
    }
}

// Chunks in order, not overlapping, only whitespace around and between them.
static void check_tiling(const char *t, size_t len, const tw_vec *v)
{
    size_t prev = 0;
    for (size_t i = 0; i < v->len; i++) {
        const struct tw_chunk *c = &CHUNK(v, i);
        CHECK(c->start >= prev);
        CHECK(ws_only(t, prev, c->start));
        prev = c->end;
    }
    CHECK(ws_only(t, prev, len));
}

static bool same_chunks(const tw_vec *a, const tw_vec *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len * sizeof(struct tw_chunk)) == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The corpus: the State of the Union addresses, in file-name order (NULL when missing).
static char **sotu_names(size_t *n, char *dir, size_t dir_size)
{
    snprintf(dir, dir_size, "%s/.cache/data/sotu", test_source_dir());
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) {
        printf("test_chunk: %s missing, corpus checks skipped\n", dir);
        return NULL;
    }
    char **names = tw_calloc(512, sizeof *names);
    REQUIRE(names);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && *n < 512) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0)
            names[(*n)++] = tw_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, *n, sizeof names[0], cmp_str);
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tw_free(names[i]);
    tw_free(names);
}

// A corpus file cleaned for a category; double spaces (paragraph ends in the few files that
// kept them) become blank lines first.
static void load_clean(const char *dir, const char *name, enum tw_category cat, tw_str *out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    char *raw = test_read_file(path, &len);
    REQUIRE(raw);
    for (size_t k = 1; k + 1 < len; k++)
        if (raw[k] == ' ' && raw[k + 1] == ' ' && raw[k - 1] != ' ')
            raw[k] = raw[k + 1] = '\n';
    tw_str_init(out);
    REQUIRE(tw_text_clean(cat, raw, len, out) == 0);
    tw_free(raw);
}

// ---- token windows

// Every property of token windows (chunk.h) for one text, spans, window and overlap.
static void check_windows(const char *t, size_t len, const struct tw_span *sp, size_t n, size_t w,
                          size_t o)
{
    tw_vec v;
    tw_vec_init(&v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_tokens(t, len, sp, n, w, o, &v));
    check_chunk_basics(t, len, &v);
    if (n == 0) {
        CHECK_EQ_INT(v.len, 0);
        tw_vec_free(&v);
        return;
    }
    size_t want = n <= w ? 1 : 1 + (n - w + (w - o) - 1) / (w - o);
    CHECK_EQ_INT(v.len, want);
    size_t covered = 0;
    tw_str joined;
    tw_str_init(&joined);
    for (size_t i = 0; i < v.len; i++) {
        const struct tw_chunk *c = &CHUNK(&v, i);
        CHECK_EQ_INT(c->tok_start, i * (w - o));
        CHECK_EQ_INT(c->tok_end, c->tok_start + w < n ? c->tok_start + w : n);
        CHECK(c->tok_end > c->tok_start && c->tok_end - c->tok_start <= w);
        CHECK(c->tok_start <= covered); // no token left out
        covered = c->tok_end;
        CHECK_EQ_INT(c->start, sp[c->tok_start].start);
        CHECK_EQ_INT(c->end, sp[c->tok_end - 1].end);
        if (i > 0) {
            const struct tw_chunk *p = &CHUNK(&v, i - 1);
            CHECK_EQ_INT(p->tok_end - c->tok_start, o); // exactly o tokens shared
            CHECK(c->end > p->end);
            // The text minus the overlap: the bytes after the previous chunk's end.
            CHECK_OK(tw_str_append(&joined, t + p->end, c->end - p->end));
        } else {
            CHECK_OK(tw_str_append(&joined, t + c->start, c->end - c->start));
        }
    }
    CHECK_EQ_INT(covered, n);
    size_t a = sp[0].start, b = sp[n - 1].end;
    CHECK(tw_str_len(&joined) == b - a && memcmp(tw_str_cstr(&joined), t + a, b - a) == 0);
    tw_str_free(&joined);

    // The same input gives the same chunks.
    tw_vec again;
    tw_vec_init(&again, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_tokens(t, len, sp, n, w, o, &again));
    CHECK(same_chunks(&v, &again));
    tw_vec_free(&again);
    tw_vec_free(&v);
}

static void test_tokens_small(void)
{
    const char *t = "t0 t1  t2\nt3 t4 t5 t6 t7 t8 t9";
    size_t len = strlen(t);
    tw_vec sp;
    ws_spans(t, len, &sp);
    REQUIRE(sp.len == 10);
    const struct tw_span *s = sp.data;

    tw_vec v;
    tw_vec_init(&v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_tokens(t, len, s, 10, 4, 1, &v));
    REQUIRE(v.len == 3);
    CHECK_EQ_INT(CHUNK(&v, 0).tok_start, 0);
    CHECK_EQ_INT(CHUNK(&v, 0).tok_end, 4);
    CHECK_EQ_INT(CHUNK(&v, 1).tok_start, 3);
    CHECK_EQ_INT(CHUNK(&v, 1).tok_end, 7);
    CHECK_EQ_INT(CHUNK(&v, 2).tok_start, 6);
    CHECK_EQ_INT(CHUNK(&v, 2).tok_end, 10);
    CHECK(CHUNK(&v, 0).start == 0 && CHUNK(&v, 0).end == 12); // "t0 t1  t2\nt3"
    CHECK(memcmp(t + CHUNK(&v, 1).start, "t3 t4 t5 t6", 11) == 0);
    CHECK_EQ_INT(CHUNK(&v, 2).end, len);
    tw_vec_free(&v);

    for (size_t w = 1; w <= 12; w++)
        for (size_t o = 0; o < w; o++)
            check_windows(t, len, s, 10, w, o);
    check_windows(t, len, s, 0, 4, 1); // no tokens: no chunks
    check_windows(t, len, s, 1, 4, 1);

    // Usage errors leave out as it was.
    tw_vec_init(&v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_tokens(t, len, s, 10, 20, 0, &v));
    CHECK_EQ_INT(v.len, 1);
    CHECK_EQ_INT(tw_chunk_tokens(t, len, s, 10, 4, 4, &v), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "overlap") != NULL);
    CHECK_EQ_INT(tw_chunk_tokens(t, len, s, 10, 4, 9, &v), TW_EINVAL);
    CHECK_EQ_INT(tw_chunk_tokens(t, len, s, 10, 0, 0, &v), TW_EINVAL);
    CHECK_EQ_INT(v.len, 1);
    struct tw_span bad[3] = { { 0, 2 }, { 3, 5 }, { 1, 2 } };
    CHECK_EQ_INT(tw_chunk_tokens(t, len, bad, 3, 2, 1, &v), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "span 2") != NULL);
    bad[2] = (struct tw_span){ 6, (uint32_t)len + 1 };
    CHECK_EQ_INT(tw_chunk_tokens(t, len, bad, 3, 2, 1, &v), TW_EINVAL);
    bad[2] = (struct tw_span){ 7, 6 };
    CHECK_EQ_INT(tw_chunk_tokens(t, len, bad, 3, 2, 1, &v), TW_EINVAL);
    CHECK_EQ_INT(v.len, 1);
    tw_vec_free(&v);

    // Empty spans (special tokens) count as tokens but give no bytes; a window of them only
    // gives no chunk.
    struct tw_span sp2[6] = { { 0, 0 }, { 0, 2 }, { 3, 5 }, { 0, 0 }, { 0, 0 }, { 0, 0 } };
    tw_vec_init(&v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_tokens(t, len, sp2, 6, 2, 0, &v));
    REQUIRE(v.len == 2);
    CHECK(CHUNK(&v, 0).start == 0 && CHUNK(&v, 0).end == 2 && CHUNK(&v, 0).tok_end == 2);
    CHECK(CHUNK(&v, 1).start == 3 && CHUNK(&v, 1).end == 5 && CHUNK(&v, 1).tok_start == 2);
    tw_vec_free(&v);
    tw_vec_free(&sp);
}

static void test_tokens_sotu(void)
{
    char dir[4096];
    size_t n;
    char **names = sotu_names(&n, dir, sizeof dir);
    uint64_t rng = 42;
    size_t total_chunks = 0;
    for (size_t i = 0; i < n; i++) {
        tw_str s;
        load_clean(dir, names[i], TW_CATEGORY_POST, &s);
        const char *t = tw_str_cstr(&s);
        size_t len = tw_str_len(&s);
        tw_vec sp;
        ws_spans(t, len, &sp);
        CHECK(sp.len > 0);
        check_windows(t, len, sp.data, sp.len, 250, 25);
        check_windows(t, len, sp.data, sp.len, 1500, 100);
        if (i % 16 == 0) {
            size_t w = 1 + check_rand(&rng) % 700, o = check_rand(&rng) % w;
            check_windows(t, len, sp.data, sp.len, w, o);
        }
        // The dispatcher: posts are token windows of 250 / 25.
        tw_vec a, b;
        tw_vec_init(&a, sizeof(struct tw_chunk));
        tw_vec_init(&b, sizeof(struct tw_chunk));
        CHECK_OK(tw_chunk_document(TW_CATEGORY_POST, t, len, sp.data, sp.len, NULL, &a));
        CHECK_OK(tw_chunk_tokens(t, len, sp.data, sp.len, 250, 25, &b));
        CHECK(a.len > 0 && same_chunks(&a, &b));
        total_chunks += a.len;
        tw_vec_free(&a);
        tw_vec_free(&b);
        tw_vec_free(&sp);
        tw_str_free(&s);
    }
    if (n)
        CHECK(total_chunks > 5000);
    free_names(names, n);
}

// ---- sentences

// The sentences of t, as "[...]" joined.
static const char *sentences(const char *t)
{
    static char out[4096];
    tw_vec v;
    tw_vec_init(&v, sizeof(struct tw_text_range));
    CHECK_OK(tw_sentence_split(t, strlen(t), &v));
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < v.len; i++) {
        const struct tw_text_range *r = tw_vec_at(&v, i);
        o += (size_t)snprintf(out + o, sizeof out - o, "[%.*s]", (int)(r->end - r->start),
                              t + r->start);
    }
    tw_vec_free(&v);
    return out;
}

static void test_sentence_split(void)
{
    CHECK_EQ_STR(sentences("Mr. Smith went to Washington. He met Dr. Jones at St. Mary's, "
                           "e.g. the U.S. Capitol. Then he left! Did he? Yes."),
                 "[Mr. Smith went to Washington.][He met Dr. Jones at St. Mary's, e.g. the U.S. "
                 "Capitol.][Then he left!][Did he?][Yes.]");
    CHECK_EQ_STR(sentences("Mrs. Brown and Prof. Green (cf. Gen. Grant) met Messrs. Hale and "
                           "Sen. Ford, i.e. Sen. Ford Jr. Ford."),
                 "[Mrs. Brown and Prof. Green (cf. Gen. Grant) met Messrs. Hale and Sen. Ford, "
                 "i.e. Sen. Ford Jr. Ford.]");
    // Initials never end a sentence.
    CHECK_EQ_STR(sentences("John F. Kennedy spoke. J. R. R. Tolkien wrote."),
                 "[John F. Kennedy spoke.][J. R. R. Tolkien wrote.]");
    // Quotes and brackets after the stop stay with the sentence; openers start the next one.
    CHECK_EQ_STR(sentences("He said \"Stop.\" Then \"Go.\" (Really.) \xE2\x80\x9CYes!\xE2\x80\x9D "
                           "\xE2\x80\x9CNo.\xE2\x80\x9D And 3.5 is a number."),
                 "[He said \"Stop.\"][Then \"Go.\"][(Really.)][\xE2\x80\x9CYes!\xE2\x80\x9D]"
                 "[\xE2\x80\x9CNo.\xE2\x80\x9D][And 3.5 is a number.]");
    // Not followed by an upper-case letter: no end. Ellipses and runs end like one stop.
    CHECK_EQ_STR(sentences("the end. but not here. Wait... What?! Fine. \xC3\x89lan vital."),
                 "[the end. but not here.][Wait...][What?!][Fine.][\xC3\x89lan vital.]");
    // Paragraph breaks always end a sentence; a single line feed does not.
    CHECK_EQ_STR(sentences("Title without stop\n\nFirst line\nsame sentence. Next one.\n \n"
                           "last"),
                 "[Title without stop][First line\nsame sentence.][Next one.][last]");
    CHECK_EQ_STR(sentences("  \n\n \t "), "");
    CHECK_EQ_STR(sentences(""), "");
    CHECK_EQ_STR(sentences("no stop at all"), "[no stop at all]");
    CHECK_EQ_STR(sentences("Ends here.   "), "[Ends here.]");
}

// Chunks of t (min, max) into v (initialised here).
static void sentence_chunks(const char *t, size_t len, size_t min, size_t max, tw_vec *v)
{
    tw_vec_init(v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_sentences(t, len, min, max, v));
}

// Whether byte offset p is a sentence boundary of the kind given (start or end) in r.
static bool is_boundary(const struct tw_text_range *r, size_t n, size_t p, bool start)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        size_t key = start ? r[mid].start : r[mid].end;
        if (key == p)
            return true;
        if (key < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

// The sentence that holds byte p, or NULL.
static const struct tw_text_range *sentence_at(const struct tw_text_range *r, size_t n, size_t p)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].start <= p && p <= r[i].end)
            return &r[i];
    return NULL;
}

static const char *const abbrevs[] = { " Mr.", " Mrs.", " Dr.", " St.", " U.S.", " Gen." };

// Every property of sentence chunks (chunk.h) for one text; returns the short chunks.
static size_t check_sentence_chunks(const char *t, size_t len, size_t min, size_t max)
{
    tw_vec v, sents;
    sentence_chunks(t, len, min, max, &v);
    tw_vec_init(&sents, sizeof(struct tw_text_range));
    CHECK_OK(tw_sentence_split(t, len, &sents));
    const struct tw_text_range *r = sents.data;
    check_chunk_basics(t, len, &v);
    check_tiling(t, len, &v);
    size_t shorts = 0;
    for (size_t i = 0; i < v.len; i++) {
        const struct tw_chunk *c = &CHUNK(&v, i);
        CHECK(c->n_chars <= max);
        CHECK(!is_ws(t[c->start]) && !is_ws(t[c->end - 1]));
        // Never inside a UTF-8 sequence.
        CHECK(((unsigned char)t[c->start] & 0xC0) != 0x80);
        CHECK(c->end == len || ((unsigned char)t[c->end] & 0xC0) != 0x80);
        // Chunks start and end on sentence boundaries, except inside a sentence over max.
        if (!is_boundary(r, sents.len, c->start, true)) {
            const struct tw_text_range *s = sentence_at(r, sents.len, c->start);
            CHECK(s && chars(t, s->start, s->end) > max);
        }
        if (!is_boundary(r, sents.len, c->end, false)) {
            const struct tw_text_range *s = sentence_at(r, sents.len, c->end);
            CHECK(s && chars(t, s->start, s->end) > max);
        }
        // An abbreviation does not end a chunk (it does not end a sentence).
        for (size_t a = 0; a < sizeof abbrevs / sizeof abbrevs[0]; a++) {
            size_t al = strlen(abbrevs[a]);
            CHECK(c->end - c->start < al || memcmp(t + c->end - al, abbrevs[a], al) != 0);
        }
        // No two neighbours fit in one chunk: else the packing was not the best.
        if (i > 0)
            CHECK(chars(t, CHUNK(&v, i - 1).start, c->end) > max);
        shorts += c->n_chars < min;
    }
    // Packing the same text again gives the same chunks.
    tw_vec again;
    sentence_chunks(t, len, min, max, &again);
    CHECK(same_chunks(&v, &again));
    tw_vec_free(&again);
    tw_vec_free(&sents);
    tw_vec_free(&v);
    return shorts;
}

static void test_sentences_sotu(void)
{
    char dir[4096];
    size_t n;
    char **names = sotu_names(&n, dir, sizeof dir);
    size_t shorts = 0, chunks = 0;
    for (size_t i = 0; i < n; i++) {
        tw_str s;
        load_clean(dir, names[i], TW_CATEGORY_ARTICLE, &s);
        const char *t = tw_str_cstr(&s);
        size_t len = tw_str_len(&s);
        shorts += check_sentence_chunks(t, len, 1000, 2000);
        tw_vec a, b;
        tw_vec_init(&a, sizeof(struct tw_chunk));
        tw_vec_init(&b, sizeof(struct tw_chunk));
        CHECK_OK(tw_chunk_document(TW_CATEGORY_ARTICLE, t, len, NULL, 0, NULL, &a));
        CHECK_OK(tw_chunk_sentences(t, len, 1000, 2000, &b));
        CHECK(a.len > 0 && same_chunks(&a, &b));
        chunks += a.len;
        // Other sizes on some documents.
        if (i % 20 == 0) {
            check_sentence_chunks(t, len, 200, 500);
            check_sentence_chunks(t, len, 0, 300);
            check_sentence_chunks(t, len, 3000, 6000);
        }
        tw_vec_free(&a);
        tw_vec_free(&b);
        tw_str_free(&s);
    }
    if (n) {
        // Only where no packing can help (a sentence of nearly 2000 characters beside a short
        // remainder): one chunk in the whole corpus today; a few would still be fine.
        CHECK(chunks > 5000);
        CHECK(shorts <= 3);
    }
    free_names(names, n);
}

// Exhaustive search: the fewest chunks under min of any packing of sentences of the given
// sizes (separated by one space) into chunks of at most max, and the fewest chunks among
// those packings.
static void brute_force(const size_t *sz, size_t n, size_t min, size_t max, size_t *best_short,
                        size_t *best_chunks)
{
    *best_short = *best_chunks = SIZE_MAX;
    for (uint32_t mask = 0; mask < (1u << (n - 1)); mask++) {
        size_t shorts = 0, count = 0, cur = 0;
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            cur += (cur ? 1 : 0) + sz[i];
            if (i == n - 1 || (mask >> i & 1)) {
                ok = cur <= max;
                shorts += cur < min;
                count++;
                cur = 0;
            }
        }
        if (!ok)
            continue;
        if (shorts < *best_short || (shorts == *best_short && count < *best_chunks)) {
            *best_short = shorts;
            *best_chunks = count;
        }
    }
}

static void test_sentences_optimal(void)
{
    // Eleven sentences of 10 characters, 30 to 60 per chunk: greedy would leave 5 + 5 + 1;
    // the packing is 5 + 3 + 3 (all in range; the fullest first).
    tw_str s;
    tw_str_init(&s);
    for (int i = 0; i < 11; i++)
        CHECK_OK(tw_str_printf(&s, "%sSentence%c.", i ? " " : "", 'a' + i));
    tw_vec v;
    sentence_chunks(tw_str_cstr(&s), tw_str_len(&s), 30, 60, &v);
    REQUIRE(v.len == 3);
    CHECK_EQ_INT(CHUNK(&v, 0).n_chars, 54);
    CHECK_EQ_INT(CHUNK(&v, 1).n_chars, 32);
    CHECK_EQ_INT(CHUNK(&v, 2).n_chars, 32);
    tw_vec_free(&v);

    // Random sentence sizes: as few short chunks and as few chunks as exhaustive search.
    uint64_t rng = 7;
    for (int round = 0; round < 300; round++) {
        size_t n = 1 + check_rand(&rng) % 13, sz[13];
        size_t min = 20 + check_rand(&rng) % 30, max = min + check_rand(&rng) % 40;
        tw_str_clear(&s);
        for (size_t i = 0; i < n; i++) {
            // "Zx...x.": 3 to max characters (not "Z.", an initial, which ends nothing).
            sz[i] = 3 + check_rand(&rng) % (max - 2);
            if (i)
                CHECK_OK(tw_str_putc(&s, ' '));
            CHECK_OK(tw_str_puts(&s, "Zx"));
            for (size_t k = 3; k < sz[i]; k++)
                CHECK_OK(tw_str_putc(&s, 'x'));
            CHECK_OK(tw_str_putc(&s, '.'));
        }
        size_t best_short, best_chunks;
        brute_force(sz, n, min, max, &best_short, &best_chunks);
        sentence_chunks(tw_str_cstr(&s), tw_str_len(&s), min, max, &v);
        size_t shorts = 0;
        for (size_t i = 0; i < v.len; i++)
            shorts += CHUNK(&v, i).n_chars < min;
        CHECK_EQ_INT(shorts, best_short);
        CHECK_EQ_INT(v.len, best_chunks);
        check_tiling(tw_str_cstr(&s), tw_str_len(&s), &v);
        tw_vec_free(&v);
    }
    tw_str_free(&s);
}

static void test_sentences_edges(void)
{
    tw_vec v;
    sentence_chunks("", 0, 1000, 2000, &v);
    CHECK_EQ_INT(v.len, 0);
    tw_vec_free(&v);
    sentence_chunks(" \n\n\t  \n", 7, 1000, 2000, &v);
    CHECK_EQ_INT(v.len, 0);
    tw_vec_free(&v);
    // A text under the minimum is one chunk.
    const char *t = "  Hello there.  ";
    sentence_chunks(t, strlen(t), 1000, 2000, &v);
    REQUIRE(v.len == 1);
    CHECK(CHUNK(&v, 0).start == 2 && CHUNK(&v, 0).end == 14);
    CHECK_EQ_STR(CHUNK(&v, 0).id,
                 "23ea498e82f4435b1c135324eedef4ba64061600897077bf76082a50b41a9c13");
    tw_vec_free(&v);
    // The id is the sha256 of the chunk's bytes: "abc" (FIPS 180-4, appendix B.1).
    sentence_chunks("abc", 3, 1, 10, &v);
    REQUIRE(v.len == 1);
    CHECK_EQ_STR(CHUNK(&v, 0).id,
                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    tw_vec_free(&v);

    // One huge sentence of words: cut at whitespace, every chunk in [1000, 2000].
    tw_str s;
    tw_str_init(&s);
    uint64_t rng = 3;
    CHECK_OK(tw_str_puts(&s, "Lorem"));
    while (tw_str_len(&s) < 5000) {
        CHECK_OK(tw_str_putc(&s, ' '));
        size_t wl = 1 + check_rand(&rng) % 12;
        for (size_t k = 0; k < wl; k++)
            CHECK_OK(tw_str_putc(&s, (char)('a' + check_rand(&rng) % 26)));
    }
    CHECK_OK(tw_str_putc(&s, '.'));
    size_t len = tw_str_len(&s);
    check_sentence_chunks(tw_str_cstr(&s), len, 1000, 2000);
    sentence_chunks(tw_str_cstr(&s), len, 1000, 2000, &v);
    CHECK_EQ_INT(v.len, 3);
    for (size_t i = 0; i < v.len; i++)
        CHECK(CHUNK(&v, i).n_chars >= 1000 && CHUNK(&v, i).n_chars <= 2000);
    tw_vec_free(&v);

    // One huge word of two-byte characters: equal pieces, cut between characters.
    tw_str_clear(&s);
    for (int i = 0; i < 4500; i++)
        CHECK_OK(tw_str_puts(&s, "\xC3\xA9"));
    sentence_chunks(tw_str_cstr(&s), tw_str_len(&s), 1000, 2000, &v);
    REQUIRE(v.len == 3);
    for (size_t i = 0; i < v.len; i++) {
        CHECK_EQ_INT(CHUNK(&v, i).n_chars, 1500);
        CHECK_EQ_INT(CHUNK(&v, i).start, i * 3000);
        CHECK_EQ_INT(CHUNK(&v, i).end - CHUNK(&v, i).start, 3000);
    }
    // All three have the same text, hence the same id.
    CHECK_EQ_STR(CHUNK(&v, 0).id, CHUNK(&v, 2).id);
    tw_vec_free(&v);
    // A huge word inside ordinary sentences: the sentences around it stay whole.
    tw_str_clear(&s);
    CHECK_OK(tw_str_puts(&s, "Short one. "));
    for (int i = 0; i < 2500; i++)
        CHECK_OK(tw_str_putc(&s, 'x'));
    CHECK_OK(tw_str_puts(&s, ". Another short one."));
    check_sentence_chunks(tw_str_cstr(&s), tw_str_len(&s), 100, 1000);
    tw_str_free(&s);

    // Usage errors.
    tw_vec_init(&v, sizeof(struct tw_chunk));
    CHECK_EQ_INT(tw_chunk_sentences("a", 1, 10, 0, &v), TW_EINVAL);
    CHECK_EQ_INT(tw_chunk_sentences("a", 1, 20, 10, &v), TW_EINVAL);
    CHECK_EQ_INT(v.len, 0);
    tw_vec_free(&v);
}

// ---- code

static void test_definitions(void)
{
    static const char *const yes[] = {
        "def f(x):",
        "async def handler(request):",
        "class Foo(Bar):",
        "fn main() {",
        "pub fn new() -> Self {",
        "pub(crate) fn helper(x: u32) -> u32 {",
        "pub struct Point {",
        "impl<T> Vec<T> {",
        "impl Display for Point {",
        "func (s *Server) Run() error {",
        "function draw() {",
        "export default function App() {",
        "export async function load() {",
        "struct tw_vec {",
        "#define TW_MAX(a, b) ((a) > (b) ? (a) : (b))",
        "static int reserve_more(tw_str *s, size_t n)",
        "int main(void) {",
        "const char *tw_str_cstr(const tw_str *s)",
        "void Foo::bar(int x)",
        "typedef struct tw_vec tw_vec;",
        "enum tw_err {",
        "trait Shape {",
        "macro_rules! square {",
        "template <typename T>",
        "interface Props {",
        "public class Main {",
    };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool got = tw_code_is_definition(yes[i], strlen(yes[i]), NULL, 0);
        if (!got)
            fprintf(stderr, "not a definition: %s\n", yes[i]);
        CHECK(got);
    }
    static const char *const no[] = {
        "    def f(x):",      // indented: a method, not top level
        "\tint main(void) {", // indented
        "x = compute(3)",     // an assignment
        "print(x)",           // a call
        "if (x) {",           // a statement
        "return foo(x);",     // a statement
        "int f(void);",       // a prototype
        "} else if (y) {",    // a brace
        "const x = () => {",  // an assignment
        "TW_CHECK(x)",        // a macro call, no brace on the next line
        "# def f(x):",        // a comment
        "#include <stdio.h>", // not a definition
        "classify(x)",        // a call that starts like a keyword
        "object.method()",    // a call on "object"
        "",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        bool got = tw_code_is_definition(no[i], strlen(no[i]), NULL, 0);
        if (got)
            fprintf(stderr, "a definition: %s\n", no[i]);
        CHECK(!got);
    }
    // K&R: the name alone, the brace on the next line.
    CHECK(tw_code_is_definition("main(argc, argv)", 16, "{", 1));
    CHECK(!tw_code_is_definition("main(argc, argv)", 16, "x = 1;", 6));
}

static const char code_sample[] = "#include <stdio.h>\n"
                                  "#include <stdlib.h>\n"
                                  "\n"
                                  "#define SQUARE(x) ((x) * (x))\n"
                                  "\n"
                                  "/* Adds two numbers. */\n"
                                  "static int add(int a, int b)\n"
                                  "{\n"
                                  "    return a + b;\n"
                                  "}\n"
                                  "\n"
                                  "// Prints a greeting\n"
                                  "// on two lines.\n"
                                  "static void greet(const char *name)\n"
                                  "{\n"
                                  "    printf(\"hello, %s\\n\", name);\n"
                                  "\n"
                                  "    printf(\"bye\\n\");\n"
                                  "}\n"
                                  "\n"
                                  "\n"
                                  "int main(void)\n"
                                  "{\n"
                                  "    greet(\"you\");\n"
                                  "    return add(SQUARE(2), 3);\n"
                                  "}\n"
                                  "\n"
                                  "class Point:\n"
                                  "    def __init__(self, x):\n"
                                  "        self.x = x\n"
                                  "\n"
                                  "    def norm(self):\n"
                                  "        return abs(self.x)\n"
                                  "\n"
                                  "@decorator\n"
                                  "def helper(p):\n"
                                  "    return p.norm()\n";

// The chunk texts of code_sample at max.
static const char *code_chunks(size_t max, tw_vec *v)
{
    static char out[4096];
    tw_vec_init(v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_code(code_sample, strlen(code_sample), max, v));
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < v->len; i++) {
        const struct tw_chunk *c = &CHUNK(v, i);
        o += (size_t)snprintf(out + o, sizeof out - o, "<%.*s>", (int)(c->end - c->start),
                              code_sample + c->start);
    }
    return out;
}

// Code chunk invariants: lines kept whole (unless longer than max), bounds, tiling.
static void check_code_chunks(const char *t, size_t len, size_t max, const tw_vec *v)
{
    check_chunk_basics(t, len, v);
    check_tiling(t, len, v);
    for (size_t i = 0; i < v->len; i++) {
        const struct tw_chunk *c = &CHUNK(v, i);
        CHECK(c->n_chars <= max);
        CHECK(!is_ws(t[c->end - 1]));
        CHECK(((unsigned char)t[c->start] & 0xC0) != 0x80);
        CHECK(c->end == len || ((unsigned char)t[c->end] & 0xC0) != 0x80);
        bool line_start = c->start == 0 || t[c->start - 1] == '\n';
        bool line_end = c->end == len || t[c->end] == '\n';
        if (!line_start || !line_end) {
            // Only a line longer than max is cut: find the line and measure it.
            size_t a = c->start, b = c->end;
            while (a > 0 && t[a - 1] != '\n')
                a--;
            while (b < len && t[b] != '\n')
                b++;
            CHECK(chars(t, a, b) > max);
        }
    }
}

static void test_code_chunks(void)
{
    tw_vec v;
    size_t len = strlen(code_sample);
    // Everything fits: one chunk, the file without its last line feed.
    code_chunks(2000, &v);
    REQUIRE(v.len == 1);
    CHECK(CHUNK(&v, 0).start == 0 && CHUNK(&v, 0).end == len - 1);
    tw_vec_free(&v);

    // Small chunks: every chunk starts at a definition with its comments and decorators.
    CHECK_EQ_STR(code_chunks(140, &v),
                 "<#include <stdio.h>\n#include <stdlib.h>\n\n#define SQUARE(x) ((x) * (x))>"
                 "</* Adds two numbers. */\nstatic int add(int a, int b)\n{\n    return a + b;\n}>"
                 "<// Prints a greeting\n// on two lines.\nstatic void greet(const char *name)\n"
                 "{\n    printf(\"hello, %s\\n\", name);\n\n    printf(\"bye\\n\");\n}>"
                 "<int main(void)\n{\n    greet(\"you\");\n    return add(SQUARE(2), 3);\n}>"
                 "<class Point:\n    def __init__(self, x):\n        self.x = x\n\n"
                 "    def norm(self):\n        return abs(self.x)>"
                 "<@decorator\ndef helper(p):\n    return p.norm()>");
    check_code_chunks(code_sample, len, 140, &v);
    tw_vec_free(&v);
    // Smaller still: a section longer than max starts its own chunk and is cut at blank
    // lines, then (a block still too long) at line ends.
    CHECK_EQ_STR(code_chunks(90, &v),
                 "<#include <stdio.h>\n#include <stdlib.h>\n\n#define SQUARE(x) ((x) * (x))>"
                 "</* Adds two numbers. */\nstatic int add(int a, int b)\n{\n    return a + b;\n}>"
                 "<// Prints a greeting\n// on two lines.\nstatic void greet(const char *name)\n{>"
                 "<    printf(\"hello, %s\\n\", name);\n\n    printf(\"bye\\n\");\n}>"
                 "<int main(void)\n{\n    greet(\"you\");\n    return add(SQUARE(2), 3);\n}>"
                 "<class Point:\n    def __init__(self, x):\n        self.x = x>"
                 "<    def norm(self):\n        return abs(self.x)>"
                 "<@decorator\ndef helper(p):\n    return p.norm()>");
    check_code_chunks(code_sample, len, 90, &v);
    tw_vec_free(&v);

    // A line longer than max is the only thing ever cut inside a line.
    tw_str s;
    tw_str_init(&s);
    CHECK_OK(tw_str_puts(&s, "def f():\n    x = \""));
    for (int i = 0; i < 300; i++)
        CHECK_OK(tw_str_putc(&s, 'a' + i % 26));
    CHECK_OK(tw_str_puts(&s, "\"\n    return x\n"));
    tw_vec_init(&v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_code(tw_str_cstr(&s), tw_str_len(&s), 100, &v));
    check_code_chunks(tw_str_cstr(&s), tw_str_len(&s), 100, &v);
    // Units: "def f():", four pieces of 77 or 78 of the long line, "    return x"; the first
    // piece joins "def f():" and the last "    return x".
    REQUIRE(v.len == 4);
    CHECK(CHUNK(&v, 0).start == 0 && CHUNK(&v, 0).n_chars == 8 + 1 + 78);
    CHECK_EQ_INT(CHUNK(&v, 3).n_chars, 77 + 1 + 12);
    tw_vec_free(&v);
    tw_str_free(&s);

    // Edge cases and errors.
    tw_vec_init(&v, sizeof(struct tw_chunk));
    CHECK_OK(tw_chunk_code("", 0, 100, &v));
    CHECK_OK(tw_chunk_code("\n  \n\t\n", 5, 100, &v));
    CHECK_EQ_INT(v.len, 0);
    CHECK_EQ_INT(tw_chunk_code("x", 1, 0, &v), TW_EINVAL);
    CHECK_OK(tw_chunk_code("\n\n  x = 1\n\n", 10, 100, &v));
    REQUIRE(v.len == 1);
    CHECK(CHUNK(&v, 0).start == 2 && CHUNK(&v, 0).end == 9); // indentation kept
    tw_vec_free(&v);
}

static void test_code_real(void)
{
    static const char *const files[] = { "src/base/vec.c", "src/base/str.c", "src/text/chunk.c",
                                         "tests/text/test_chunk.c" };
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", test_source_dir(), files[f]);
        size_t len;
        char *raw = test_read_file(path, &len);
        if (!raw) {
            printf("test_chunk: %s missing, skipped\n", path);
            continue;
        }
        tw_str s;
        tw_str_init(&s);
        CHECK_OK(tw_text_clean(TW_CATEGORY_REPOSITORY, raw, len, &s));
        const char *t = tw_str_cstr(&s);
        size_t tl = tw_str_len(&s);
        size_t sizes[] = { 2000, 500, 80 };
        for (size_t k = 0; k < 3; k++) {
            tw_vec v, again;
            tw_vec_init(&v, sizeof(struct tw_chunk));
            tw_vec_init(&again, sizeof(struct tw_chunk));
            CHECK_OK(tw_chunk_code(t, tl, sizes[k], &v));
            CHECK(v.len > 0);
            check_code_chunks(t, tl, sizes[k], &v);
            CHECK_OK(tw_chunk_document(TW_CATEGORY_REPOSITORY, t, tl, NULL, 0, NULL, &again));
            if (sizes[k] == 2000)
                CHECK(same_chunks(&v, &again));
            tw_vec_free(&v);
            tw_vec_free(&again);
        }
        tw_str_free(&s);
        tw_free(raw);
    }
}

// ---- the dispatcher, failures

static void test_document(void)
{
    const char *t = "One two three. Four five six.";
    size_t len = strlen(t);
    tw_vec sp, a, b;
    ws_spans(t, len, &sp);
    tw_vec_init(&a, sizeof(struct tw_chunk));
    tw_vec_init(&b, sizeof(struct tw_chunk));
    // Posts need token spans.
    CHECK_EQ_INT(tw_chunk_document(TW_CATEGORY_POST, t, len, NULL, 0, NULL, &a), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "token") != NULL);
    CHECK_OK(tw_chunk_document(TW_CATEGORY_POST, "", 0, NULL, 0, NULL, &a));
    CHECK_EQ_INT(a.len, 0);
    // Options: post windows, repositories by tokens.
    struct tw_chunk_opts o;
    tw_chunk_opts_init(&o);
    CHECK(o.post_window == 250 && o.post_overlap == 25 && o.repo_window == 1500 &&
          o.repo_overlap == 100 && o.min_chars == 1000 && o.max_chars == 2000 &&
          o.code_max_chars == 2000 && !o.repo_tokens);
    o.post_window = 3;
    o.post_overlap = 1;
    CHECK_OK(tw_chunk_document(TW_CATEGORY_POST, t, len, sp.data, sp.len, &o, &a));
    CHECK_OK(tw_chunk_tokens(t, len, sp.data, sp.len, 3, 1, &b));
    CHECK(a.len == 3 && same_chunks(&a, &b));
    tw_vec_clear(&a);
    tw_vec_clear(&b);
    o.repo_tokens = true;
    o.repo_window = 4;
    o.repo_overlap = 2;
    CHECK_OK(tw_chunk_document(TW_CATEGORY_REPOSITORY, t, len, sp.data, sp.len, &o, &a));
    CHECK_OK(tw_chunk_tokens(t, len, sp.data, sp.len, 4, 2, &b));
    CHECK(a.len == 2 && same_chunks(&a, &b));
    tw_vec_clear(&a);
    tw_vec_clear(&b);
    // Without spans a repository falls back to code chunks.
    CHECK_OK(tw_chunk_document(TW_CATEGORY_REPOSITORY, t, len, NULL, 0, &o, &a));
    CHECK_OK(tw_chunk_code(t, len, 2000, &b));
    CHECK(a.len == 1 && same_chunks(&a, &b));
    tw_vec_clear(&a);
    tw_vec_clear(&b);
    // Other: sentences with the options' bounds.
    o.min_chars = 5;
    o.max_chars = 15;
    CHECK_OK(tw_chunk_document(TW_CATEGORY_OTHER, t, len, sp.data, sp.len, &o, &a));
    CHECK_OK(tw_chunk_sentences(t, len, 5, 15, &b));
    CHECK(a.len == 2 && same_chunks(&a, &b));
    tw_vec_free(&a);
    tw_vec_free(&b);
    tw_vec_free(&sp);
}

static void test_failures(void)
{
    tw_str s;
    tw_str_init(&s);
    for (int i = 0; i < 40; i++)
        CHECK_OK(tw_str_printf(&s, "Sentence number %d is here. ", i));
    const char *t = tw_str_cstr(&s);
    size_t len = tw_str_len(&s);
    tw_vec sp;
    ws_spans(t, len, &sp);
    long base = tw_mem_live();
    for (int which = 0; which < 3; which++) {
        int failures = 0;
        for (long k = 1; k < 40; k++) {
            tw_vec v;
            tw_vec_init(&v, sizeof(struct tw_chunk));
            struct tw_chunk marker = { .start = 7 };
            CHECK_OK(tw_vec_push(&v, &marker));
            tw_mem_fail_after(k);
            int rc = which == 0   ? tw_chunk_sentences(t, len, 100, 200, &v)
                     : which == 1 ? tw_chunk_code(t, len, 50, &v)
                                  : tw_chunk_tokens(t, len, sp.data, sp.len, 10, 2, &v);
            tw_mem_fail_after(0);
            if (rc) {
                failures++;
                CHECK_EQ_INT(rc, TW_ENOMEM);
                CHECK_EQ_INT(v.len, 1);
                CHECK_EQ_INT(CHUNK(&v, 0).start, 7);
                CHECK(strstr(tw_error_msg(), "chunk") != NULL);
            } else {
                CHECK(v.len > 1);
            }
            tw_vec_free(&v);
        }
        CHECK(failures > 0);
    }
    CHECK_EQ_INT(tw_mem_live(), base);
    tw_vec_free(&sp);
    tw_str_free(&s);
}

int main(void)
{
    test_tokens_small();
    test_tokens_sotu();
    test_sentence_split();
    test_sentences_optimal();
    test_sentences_edges();
    test_sentences_sotu();
    test_definitions();
    test_code_chunks();
    test_code_real();
    test_document();
    test_failures();
    return check_report("test_chunk");
}

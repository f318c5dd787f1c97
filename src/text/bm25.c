// BM25 (src/text/bm25.h): the analyser (segmentation with utf8proc, case folding, stop words,
// libstemmer), the in-memory inverted index with incremental add and delete, term-at-a-time
// search with a dense score accumulator, and the checksummed file format.
// Owns every posting list, term and document record of an index.
#include "text/bm25.h"

#include <assert.h>
#include <libstemmer.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/error.h"
#include "base/file.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "base/vec.h"

// Bumped whenever analysis could give other terms for the same text: an index file written
// with another analyser version would no longer match its own queries.
#define ANALYSER_VERSION 1
#define FORMAT_VERSION   1
#define HEADER_SIZE      80
#define DOC_RECORD_SIZE  16

// Compaction runs when the postings (or document records) of deleted documents are at least
// this many and outnumber the live ones, so its O(index) cost is paid by as many deletes.
#define COMPACT_MIN 4096

struct tw_bm25_options tw_bm25_options_default(void)
{
    return (struct tw_bm25_options){ .k1 = 1.2, .b = 0.75, .stop_words = true, .stem = true };
}

// ---- Stop words -----------------------------------------------------------------------------

// English function words, sorted by strcmp (apostrophe before letters). Possessive "'s" is
// stripped before the lookup, so no entry ends in it.
static const char *const stop_words[] = {
    "a",          "about",   "above",     "after",   "again",     "against",    "all",
    "also",       "am",      "an",        "and",     "any",       "are",        "aren't",
    "as",         "at",      "be",        "because", "been",      "before",     "being",
    "below",      "between", "both",      "but",     "by",        "can",        "can't",
    "cannot",     "could",   "couldn't",  "did",     "didn't",    "do",         "does",
    "doesn't",    "doing",   "don't",     "down",    "during",    "each",       "either",
    "few",        "for",     "from",      "further", "had",       "hadn't",     "has",
    "hasn't",     "have",    "haven't",   "having",  "he",        "her",        "here",
    "hers",       "herself", "him",       "himself", "his",       "how",        "i",
    "i'd",        "i'll",    "i'm",       "i've",    "if",        "in",         "into",
    "is",         "isn't",   "it",        "its",     "itself",    "just",       "may",
    "me",         "might",   "more",      "most",    "must",      "mustn't",    "my",
    "myself",     "neither", "no",        "nor",     "not",       "now",        "of",
    "off",        "on",      "once",      "only",    "or",        "other",      "ought",
    "our",        "ours",    "ourselves", "out",     "over",      "own",        "same",
    "shall",      "shan't",  "she",       "should",  "shouldn't", "so",         "some",
    "such",       "than",    "that",      "the",     "their",     "theirs",     "them",
    "themselves", "then",    "there",     "these",   "they",      "they'd",     "they'll",
    "they're",    "they've", "this",      "those",   "through",   "thus",       "to",
    "too",        "under",   "until",     "up",      "upon",      "us",         "very",
    "was",        "wasn't",  "we",        "we'd",    "we'll",     "we're",      "we've",
    "were",       "weren't", "what",      "when",    "where",     "whether",    "which",
    "while",      "who",     "whom",      "whose",   "why",       "will",       "with",
    "won't",      "would",   "wouldn't",  "yet",     "you",       "you'd",      "you'll",
    "you're",     "you've",  "your",      "yours",   "yourself",  "yourselves",
};

#define N_STOP_WORDS (sizeof stop_words / sizeof stop_words[0])

const char *const *tw_bm25_stop_words(size_t *n)
{
    *n = N_STOP_WORDS;
    return stop_words;
}

// strcmp of the NUL-terminated s with w[0, len), inline (this runs once per word).
static int cmp_word(const char *s, const char *w, size_t len)
{
    size_t i = 0;
    for (; i < len && s[i]; i++)
        if (s[i] != w[i])
            return (unsigned char)s[i] - (unsigned char)w[i];
    return s[i] ? 1 : i < len ? -1 : 0;
}

bool tw_bm25_is_stop_word(const char *word, size_t len)
{
    if (len == 0 || len > 10)
        return false; // no entry is longer ("yourselves")
    size_t lo = 0, hi = N_STOP_WORDS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_word(stop_words[mid], word, len);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

// ---- Segmentation ---------------------------------------------------------------------------

enum cls {
    CL_SEP,    // ends a word
    CL_WORD,   // letter, non-decimal number, connector punctuation
    CL_DIGIT,  // decimal digit (a word character that '.' and ',' may join)
    CL_MARK,   // combining mark: continues a word, never starts one
    CL_IDEO,   // Han ideograph or Hiragana: a word of its own
    CL_APOS,   // apostrophe: joins two word characters
    CL_NUMSEP, // '.' or ',': joins two digits
};

static enum cls classify_ascii(int32_t c)
{
    if ((c | 32) >= 'a' && (c | 32) <= 'z')
        return CL_WORD;
    if (c >= '0' && c <= '9')
        return CL_DIGIT;
    switch (c) {
    case '_':
        return CL_WORD;
    case '\'':
        return CL_APOS;
    case '.':
    case ',':
        return CL_NUMSEP;
    default:
        return CL_SEP;
    }
}

static bool is_ideographic(int32_t cp)
{
    return (cp >= 0x3040 && cp <= 0x309F)       // Hiragana
           || (cp >= 0x3400 && cp <= 0x4DBF)    // CJK Unified Ideographs Extension A
           || (cp >= 0x4E00 && cp <= 0x9FFF)    // CJK Unified Ideographs
           || (cp >= 0xF900 && cp <= 0xFAFF)    // CJK Compatibility Ideographs
           || (cp >= 0x20000 && cp <= 0x323AF); // Extensions B-H, Compatibility Supplement
}

static enum cls classify(int32_t cp)
{
    if (cp < 0)
        return CL_SEP;
    if (cp < 128)
        return classify_ascii(cp);
    if (cp == 0x2019)
        return CL_APOS;
    if (is_ideographic(cp))
        return CL_IDEO;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_PC:
        return CL_WORD;
    case UTF8PROC_CATEGORY_ND:
        return CL_DIGIT;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        return CL_MARK;
    default:
        return CL_SEP;
    }
}

// Decodes the code point at s[i] (i < len) into *cp (-1 for an invalid byte, which is then
// one byte long) and returns its length in bytes.
static size_t decode(const uint8_t *s, size_t len, size_t i, int32_t *cp)
{
    if (s[i] < 0x80) {
        *cp = s[i];
        return 1;
    }
    utf8proc_int32_t c;
    size_t avail = len - i < 4 ? len - i : 4;
    utf8proc_ssize_t n = utf8proc_iterate(s + i, (utf8proc_ssize_t)avail, &c);
    if (n <= 0) {
        *cp = -1;
        return 1;
    }
    *cp = c;
    return (size_t)n;
}

// The end of the word that starts at s[i] with a character of class c (CL_WORD or CL_DIGIT).
static size_t word_end(const uint8_t *s, size_t len, size_t i, enum cls c)
{
    enum cls prev = c; // the last class that was not a mark
    while (i < len) {
        int32_t cp;
        size_t n = decode(s, len, i, &cp);
        enum cls k = classify(cp);
        if (k == CL_WORD || k == CL_DIGIT || k == CL_MARK) {
            if (k != CL_MARK)
                prev = k;
            i += n;
            continue;
        }
        if ((k == CL_APOS || k == CL_NUMSEP) && i + n < len) {
            int32_t cp2;
            size_t n2 = decode(s, len, i + n, &cp2);
            enum cls k2 = classify(cp2);
            bool join = k == CL_APOS ? (k2 == CL_WORD || k2 == CL_DIGIT)
                                     : (prev == CL_DIGIT && k2 == CL_DIGIT);
            if (join) {
                prev = k2;
                i += n + n2;
                continue;
            }
        }
        break;
    }
    return i;
}

// ---- The analyser ---------------------------------------------------------------------------

struct analyser {
    bool stop, stem;
    struct sb_stemmer *stemmer; // NULL when stem is off
    tw_vec cps;                 // int32_t: utf8proc's work buffer
    char low[TW_BM25_MAX_TERM]; // the ASCII fast path's output
};

static int analyser_init(struct analyser *an, bool stop, bool stem)
{
    memset(an, 0, sizeof *an);
    an->stop = stop;
    an->stem = stem;
    tw_vec_init(&an->cps, sizeof(int32_t));
    if (stem) {
        an->stemmer = sb_stemmer_new("english", NULL);
        if (!an->stemmer)
            return tw_error_set(TW_EUNSUPPORTED, "bm25: libstemmer has no English stemmer "
                                                 "(or is out of memory)");
    }
    return 0;
}

static void analyser_free(struct analyser *an)
{
    sb_stemmer_delete(an->stemmer);
    tw_vec_free(&an->cps);
    an->stemmer = NULL;
}

static utf8proc_int32_t map_apostrophe(utf8proc_int32_t cp, void *data)
{
    (void)data;
    return cp == 0x2019 ? 0x27 : cp;
}

#define NORM_OPTIONS \
    (UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD | UTF8PROC_IGNORE)

// Normalises the word w[0, n) (valid UTF-8): *out and *outlen get the folded form (in the
// analyser's buffers), or *outlen 0 when nothing is left or it is too long to be a term.
static int normalise(struct analyser *an, const uint8_t *w, size_t n, const char **out,
                     size_t *outlen)
{
    *outlen = 0;
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++)
        ascii = w[i] < 0x80;
    if (ascii) {
        if (n > TW_BM25_MAX_TERM)
            return 0;
        for (size_t i = 0; i < n; i++)
            an->low[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
        *out = an->low;
        *outlen = n;
        return 0;
    }
    if (n > 4 * TW_BM25_MAX_TERM)
        return 0; // folding cannot bring it under the limit (at most one code point per byte)
    for (;;) {
        utf8proc_ssize_t cap = (utf8proc_ssize_t)an->cps.cap;
        utf8proc_ssize_t r = 0;
        if (cap > 1)
            r = utf8proc_decompose_custom(w, (utf8proc_ssize_t)n, an->cps.data, cap - 1,
                                          NORM_OPTIONS, map_apostrophe, NULL);
        else
            r = (utf8proc_ssize_t)n; // a first guess at the size
        if (r < 0)
            return 0; // cannot happen on valid UTF-8; treat as no term
        if (r + 1 <= cap) {
            // reencode needs one spare slot; it writes the UTF-8 over the code points.
            utf8proc_ssize_t b = utf8proc_reencode(an->cps.data, r, NORM_OPTIONS);
            if (b <= 0 || b > TW_BM25_MAX_TERM)
                return 0;
            *out = an->cps.data;
            *outlen = (size_t)b;
            return 0;
        }
        int rc = tw_vec_reserve(&an->cps, (size_t)r + 1);
        if (rc)
            return rc;
    }
}

// Analyses text and calls fn for each term.
static int analyse(struct analyser *an, const char *text, size_t len, tw_bm25_term_fn fn,
                   void *ctx)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        int32_t cp;
        size_t n = decode(s, len, i, &cp);
        enum cls k = classify(cp);
        size_t start = i, end;
        if (k == CL_IDEO) {
            end = i + n;
            while (end < len) {
                size_t m = decode(s, len, end, &cp);
                if (classify(cp) != CL_MARK)
                    break;
                end += m;
            }
        } else if (k == CL_WORD || k == CL_DIGIT) {
            end = word_end(s, len, i + n, k);
        } else {
            i += n;
            continue;
        }
        i = end;

        const char *w;
        size_t wl;
        int rc = normalise(an, s + start, end - start, &w, &wl);
        if (rc)
            return rc;
        if (wl >= 3 && w[wl - 2] == '\'' && w[wl - 1] == 's')
            wl -= 2; // English possessive
        if (wl == 0 || (an->stop && tw_bm25_is_stop_word(w, wl)))
            continue;
        if (an->stem) {
            const sb_symbol *st = sb_stemmer_stem(an->stemmer, (const sb_symbol *)w, (int)wl);
            if (!st)
                return tw_error_set(TW_ENOMEM, "bm25: the stemmer ran out of memory");
            w = (const char *)st;
            wl = (size_t)sb_stemmer_length(an->stemmer);
            if (wl == 0)
                continue;
        }
        rc = fn(ctx, w, wl);
        if (rc)
            return rc;
    }
    return 0;
}

int tw_bm25_analyze(const struct tw_bm25_options *opt, const char *text, size_t len,
                    tw_bm25_term_fn fn, void *ctx)
{
    struct tw_bm25_options o = opt ? *opt : tw_bm25_options_default();
    struct analyser an;
    int rc = analyser_init(&an, o.stop_words, o.stem);
    if (rc == 0)
        rc = analyse(&an, text, len, fn, ctx);
    analyser_free(&an);
    return rc;
}

// ---- The index ------------------------------------------------------------------------------

struct posting {
    uint32_t doc; // document number (index into docs)
    uint32_t tf;  // occurrences of the term in the document
};

struct term {
    tw_vec post;      // struct posting, ascending doc; deleted documents' until a compaction
    uint32_t df;      // live documents holding the term (>= 1 while the term exists)
    uint32_t pending; // tw_bm25_add's scratch: the count in the document being added
    uint32_t klen;
    char key[]; // klen bytes and a NUL
};

struct doc {
    uint64_t id;
    uint32_t len;        // terms, counted with repetition (dl)
    uint32_t nterms;     // distinct terms
    struct term **terms; // its distinct terms (NULL when none, or deleted)
    uint32_t newno;      // compaction's scratch
    bool live;
};

struct tw_bm25 {
    struct tw_bm25_options opt;
    tw_map dict;         // term bytes -> (uintptr_t)struct term *
    tw_map ids;          // id -> document number
    tw_vec docs;         // struct doc, by document number
    uint64_t n_live;     // N
    uint64_t total_len;  // sum of the live documents' lengths
    size_t live_post;    // postings of live documents
    size_t dead_post;    // postings of deleted documents still in the lists
    struct analyser an;  // used by add (searches use their own: the stemmer is stateful)
    tw_vec scratch_uniq; // add's scratch: struct term *, the document's distinct terms
    tw_vec scratch_new;  // add's scratch: struct term *, terms the document created
};

static struct term *term_of(uint64_t v)
{
    return (struct term *)(uintptr_t)v;
}

static void term_free(struct term *t)
{
    if (t) {
        tw_vec_free(&t->post);
        tw_free(t);
    }
}

static struct term *term_new(const char *key, size_t len)
{
    struct term *t = tw_malloc(sizeof *t + len + 1);
    if (!t) {
        tw_error_set(TW_ENOMEM, "bm25: cannot allocate a term of %zu bytes", len);
        return NULL;
    }
    memset(t, 0, sizeof *t);
    tw_vec_init(&t->post, sizeof(struct posting));
    t->klen = (uint32_t)len;
    memcpy(t->key, key, len);
    t->key[len] = '\0';
    return t;
}

static int check_options(const struct tw_bm25_options *o)
{
    if (!isfinite(o->k1) || o->k1 < 0)
        return tw_error_set(TW_EINVAL, "bm25: k1 = %g: must be a finite number >= 0", o->k1);
    if (!isfinite(o->b) || o->b < 0 || o->b > 1)
        return tw_error_set(TW_EINVAL, "bm25: b = %g: must lie in [0, 1]", o->b);
    return 0;
}

int tw_bm25_new(const struct tw_bm25_options *opt, tw_bm25 **out)
{
    struct tw_bm25_options o = opt ? *opt : tw_bm25_options_default();
    int rc = check_options(&o);
    if (rc)
        return rc;
    tw_bm25 *ix = tw_calloc(1, sizeof *ix);
    if (!ix)
        return tw_error_set(TW_ENOMEM, "bm25: cannot allocate an index");
    ix->opt = o;
    tw_map_init(&ix->dict, TW_MAP_STR);
    tw_map_init(&ix->ids, TW_MAP_U64);
    tw_vec_init(&ix->docs, sizeof(struct doc));
    tw_vec_init(&ix->scratch_uniq, sizeof(struct term *));
    tw_vec_init(&ix->scratch_new, sizeof(struct term *));
    rc = analyser_init(&ix->an, o.stop_words, o.stem);
    if (rc) {
        tw_bm25_free(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

void tw_bm25_free(tw_bm25 *ix)
{
    if (!ix)
        return;
    size_t pos = 0;
    struct tw_map_entry e;
    while (tw_map_next(&ix->dict, &pos, &e))
        term_free(term_of(e.val));
    tw_map_free(&ix->dict);
    tw_map_free(&ix->ids);
    for (size_t i = 0; i < ix->docs.len; i++)
        tw_free(TW_VEC_AT(&ix->docs, struct doc, i).terms);
    tw_vec_free(&ix->docs);
    tw_vec_free(&ix->scratch_uniq);
    tw_vec_free(&ix->scratch_new);
    analyser_free(&ix->an);
    tw_free(ix);
}

struct tw_bm25_options tw_bm25_options(const tw_bm25 *ix)
{
    return ix->opt;
}

size_t tw_bm25_count(const tw_bm25 *ix)
{
    return (size_t)ix->n_live;
}

size_t tw_bm25_term_count(const tw_bm25 *ix)
{
    return tw_map_len(&ix->dict);
}

double tw_bm25_avgdl(const tw_bm25 *ix)
{
    return ix->n_live ? (double)ix->total_len / (double)ix->n_live : 0.0;
}

bool tw_bm25_contains(const tw_bm25 *ix, uint64_t id, uint32_t *len)
{
    uint64_t dn;
    if (!tw_map_get_u64(&ix->ids, id, &dn))
        return false;
    if (len)
        *len = TW_VEC_AT(&ix->docs, struct doc, dn).len;
    return true;
}

uint32_t tw_bm25_df(const tw_bm25 *ix, const char *term, size_t len)
{
    uint64_t v;
    return tw_map_get_str(&ix->dict, term, len, &v) ? term_of(v)->df : 0;
}

// ---- Add and delete -------------------------------------------------------------------------

struct add_ctx {
    tw_bm25 *ix;
    uint64_t ntok;
};

// For each term of the document being added: finds or creates its struct term and counts it.
static int add_term(void *vctx, const char *w, size_t n)
{
    struct add_ctx *c = vctx;
    tw_bm25 *ix = c->ix;
    uint64_t v;
    struct term *t;
    if (tw_map_get_str(&ix->dict, w, n, &v)) {
        t = term_of(v);
    } else {
        int rc = tw_vec_reserve(&ix->scratch_new, ix->scratch_new.len + 1);
        if (rc)
            return rc;
        t = term_new(w, n);
        if (!t)
            return TW_ENOMEM;
        rc = tw_map_put_str(&ix->dict, w, n, (uint64_t)(uintptr_t)t);
        if (rc) {
            term_free(t);
            return rc;
        }
        tw_vec_push(&ix->scratch_new, &t); // reserved above
    }
    if (t->pending == UINT32_MAX)
        return tw_error_set(TW_ELIMIT, "bm25: a term occurs over 2^32 - 1 times in one document");
    if (t->pending == 0) {
        int rc = tw_vec_push(&ix->scratch_uniq, &t);
        if (rc)
            return rc;
    }
    t->pending++;
    c->ntok++;
    return 0;
}

// Undoes a failed add: clears the counts, removes the terms it created.
static void add_rollback(tw_bm25 *ix)
{
    for (size_t i = 0; i < ix->scratch_uniq.len; i++)
        TW_VEC_AT(&ix->scratch_uniq, struct term *, i)->pending = 0;
    for (size_t i = 0; i < ix->scratch_new.len; i++) {
        struct term *t = TW_VEC_AT(&ix->scratch_new, struct term *, i);
        tw_map_del_str(&ix->dict, t->key, t->klen);
        term_free(t);
    }
    tw_vec_clear(&ix->scratch_uniq);
    tw_vec_clear(&ix->scratch_new);
}

int tw_bm25_add(tw_bm25 *ix, uint64_t id, const char *text, size_t len)
{
    if (tw_map_get_u64(&ix->ids, id, NULL))
        return tw_error_set(TW_EEXIST, "bm25: document %llu is in the index already",
                            (unsigned long long)id);
    if (ix->docs.len >= UINT32_MAX - 1)
        return tw_error_set(TW_ELIMIT,
                            "bm25: document %llu: the index holds 2^32 - 2 "
                            "document records already",
                            (unsigned long long)id);
    tw_vec_clear(&ix->scratch_uniq);
    tw_vec_clear(&ix->scratch_new);
    struct add_ctx c = { .ix = ix };
    int rc = analyse(&ix->an, text, len, add_term, &c);
    if (rc == 0 && c.ntok > UINT32_MAX)
        rc = tw_error_set(TW_ELIMIT, "bm25: over 2^32 - 1 terms in one document");

    // Make every later step infallible: room in each posting list, the document table, the
    // document's term list, and its id in the map (the last fallible step).
    size_t nuniq = ix->scratch_uniq.len;
    struct term **uniq = ix->scratch_uniq.data;
    for (size_t i = 0; rc == 0 && i < nuniq; i++)
        rc = tw_vec_reserve(&uniq[i]->post, uniq[i]->post.len + 1);
    if (rc == 0)
        rc = tw_vec_reserve(&ix->docs, ix->docs.len + 1);
    struct term **terms = NULL;
    if (rc == 0 && nuniq) {
        terms = tw_malloc_array(nuniq, sizeof *terms);
        if (!terms)
            rc = tw_error_set(TW_ENOMEM, "bm25: cannot allocate a term list of %zu", nuniq);
    }
    uint32_t dn = (uint32_t)ix->docs.len;
    if (rc == 0)
        rc = tw_map_put_u64(&ix->ids, id, dn);
    if (rc) {
        tw_free(terms);
        add_rollback(ix);
        return tw_error_prefix("bm25: adding document %llu", (unsigned long long)id);
    }

    for (size_t i = 0; i < nuniq; i++) {
        struct term *t = uniq[i];
        struct posting p = { .doc = dn, .tf = t->pending };
        tw_vec_push(&t->post, &p); // reserved
        t->df++;
        t->pending = 0;
        terms[i] = t;
    }
    struct doc d = {
        .id = id, .len = (uint32_t)c.ntok, .nterms = (uint32_t)nuniq, .terms = terms, .live = true
    };
    tw_vec_push(&ix->docs, &d); // reserved
    ix->n_live++;
    ix->total_len += c.ntok;
    ix->live_post += nuniq;
    tw_vec_clear(&ix->scratch_uniq);
    tw_vec_clear(&ix->scratch_new);
    return 0;
}

int tw_bm25_delete(tw_bm25 *ix, uint64_t id)
{
    uint64_t dn;
    if (!tw_map_get_u64(&ix->ids, id, &dn))
        return tw_error_set(TW_ENOENT, "bm25: document %llu is not in the index",
                            (unsigned long long)id);
    struct doc *d = &TW_VEC_AT(&ix->docs, struct doc, dn);
    for (uint32_t i = 0; i < d->nterms; i++) {
        struct term *t = d->terms[i];
        ix->live_post--;
        if (--t->df == 0) {
            // Every other posting of the term belongs to a deleted document already.
            ix->dead_post -= t->post.len - 1;
            tw_map_del_str(&ix->dict, t->key, t->klen);
            term_free(t);
        } else {
            ix->dead_post++;
        }
    }
    tw_free(d->terms);
    d->terms = NULL;
    d->live = false;
    ix->n_live--;
    ix->total_len -= d->len;
    tw_map_del_u64(&ix->ids, id);

    size_t dead_docs = ix->docs.len - ix->n_live;
    if (ix->n_live == 0 || (ix->dead_post >= COMPACT_MIN && ix->dead_post > ix->live_post) ||
        (dead_docs >= COMPACT_MIN && dead_docs > ix->n_live))
        tw_bm25_compact(ix);
    return 0;
}

void tw_bm25_compact(tw_bm25 *ix)
{
    struct doc *docs = ix->docs.data;
    size_t nd = ix->docs.len;
    uint32_t next = 0;
    for (size_t i = 0; i < nd; i++)
        docs[i].newno = docs[i].live ? next++ : UINT32_MAX;

    size_t pos = 0;
    struct tw_map_entry e;
    while (tw_map_next(&ix->dict, &pos, &e)) {
        struct term *t = term_of(e.val);
        struct posting *p = t->post.data;
        size_t w = 0;
        for (size_t i = 0; i < t->post.len; i++)
            if (docs[p[i].doc].live)
                p[w++] = (struct posting){ docs[p[i].doc].newno, p[i].tf };
        tw_vec_resize(&t->post, w); // a shrink: cannot fail
    }

    size_t w = 0;
    for (size_t i = 0; i < nd; i++) {
        if (!docs[i].live)
            continue;
        docs[w] = docs[i];
        int rc = tw_map_put_u64(&ix->ids, docs[w].id, w); // replaces: allocates nothing
        assert(rc == 0);
        (void)rc;
        w++;
    }
    tw_vec_resize(&ix->docs, w);
    ix->dead_post = 0;
}

// ---- Search ---------------------------------------------------------------------------------

struct qterm {
    const struct term *t;
    uint32_t qtf; // occurrences in the query
};

struct query_ctx {
    const tw_bm25 *ix;
    tw_vec terms; // struct qterm, in order of first occurrence
    tw_map seen;  // U64: term pointer -> index in terms
};

static int query_term(void *vctx, const char *w, size_t n)
{
    struct query_ctx *q = vctx;
    uint64_t v, at;
    if (!tw_map_get_str(&q->ix->dict, w, n, &v))
        return 0;
    if (tw_map_get_u64(&q->seen, v, &at)) {
        TW_VEC_AT(&q->terms, struct qterm, at).qtf++;
        return 0;
    }
    struct qterm qt = { .t = term_of(v), .qtf = 1 };
    int rc = tw_vec_push(&q->terms, &qt);
    if (rc == 0)
        rc = tw_map_put_u64(&q->seen, v, q->terms.len - 1);
    if (rc && q->terms.len && TW_VEC_AT(&q->terms, struct qterm, q->terms.len - 1).t == qt.t)
        q->terms.len--;
    return rc;
}

// Analyses the query into q->terms (terms absent from the index are left out).
static int query_parse(const tw_bm25 *ix, const char *query, size_t len, struct query_ctx *q)
{
    q->ix = ix;
    tw_vec_init(&q->terms, sizeof(struct qterm));
    tw_map_init(&q->seen, TW_MAP_U64);
    struct analyser an;
    int rc = analyser_init(&an, ix->opt.stop_words, ix->opt.stem);
    if (rc == 0)
        rc = analyse(&an, query, len, query_term, q);
    analyser_free(&an);
    tw_map_free(&q->seen);
    if (rc)
        tw_vec_free(&q->terms);
    return rc;
}

static double idf(uint64_t n, uint32_t df)
{
    return log1p(((double)n - (double)df + 0.5) / ((double)df + 0.5));
}

// a ranks before b: higher score, then smaller id.
static bool hit_before(const struct tw_bm25_hit *a, const struct tw_bm25_hit *b)
{
    return a->score > b->score || (a->score == b->score && a->id < b->id);
}

// The heap keeps the worst kept hit at the root: parents rank after their children.
static void heap_down(struct tw_bm25_hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && hit_before(&h[w], &h[l]))
            w = l;
        if (r < n && hit_before(&h[w], &h[r]))
            w = r;
        if (w == i)
            return;
        struct tw_bm25_hit tmp = h[i];
        h[i] = h[w];
        h[w] = tmp;
        i = w;
    }
}

static void heap_up(struct tw_bm25_hit *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hit_before(&h[p], &h[i]))
            return;
        struct tw_bm25_hit tmp = h[i];
        h[i] = h[p];
        h[p] = tmp;
        i = p;
    }
}

static int cmp_hits(const void *a, const void *b)
{
    const struct tw_bm25_hit *x = a, *y = b;
    return hit_before(x, y) ? -1 : hit_before(y, x) ? 1 : 0;
}

int tw_bm25_search(const tw_bm25 *ix, const char *query, size_t len, size_t k,
                   tw_bm25_keep_fn keep, void *ctx, struct tw_bm25_hit *hits, size_t *n)
{
    *n = 0;
    if (k == 0 || ix->n_live == 0)
        return 0;
    struct query_ctx q;
    int rc = query_parse(ix, query, len, &q);
    if (rc)
        return tw_error_prefix("bm25: query");
    if (q.terms.len == 0) {
        tw_vec_free(&q.terms);
        return 0;
    }

    // Term at a time into a dense accumulator: acc[d] > 0 exactly when d has a query term
    // (every contribution is positive: idf > 0, tf >= 1), and touched lists those d.
    const struct doc *docs = ix->docs.data;
    double *acc = tw_calloc(ix->docs.len, sizeof *acc);
    tw_vec touched;
    tw_vec_init(&touched, sizeof(uint32_t));
    if (!acc) {
        tw_vec_free(&q.terms);
        return tw_error_set(TW_ENOMEM, "bm25: query: cannot allocate %zu scores", ix->docs.len);
    }
    double k1 = ix->opt.k1, b = ix->opt.b, avgdl = tw_bm25_avgdl(ix);
    for (size_t i = 0; i < q.terms.len && rc == 0; i++) {
        const struct qterm *qt = &TW_VEC_AT(&q.terms, struct qterm, i);
        double w = qt->qtf * idf(ix->n_live, qt->t->df);
        const struct posting *p = qt->t->post.data;
        for (size_t j = 0; j < qt->t->post.len; j++) {
            const struct doc *d = &docs[p[j].doc];
            if (!d->live)
                continue;
            double tf = p[j].tf;
            double s = w * tf * (k1 + 1) / (tf + k1 * (1 - b + b * d->len / avgdl));
            if (acc[p[j].doc] == 0 && (rc = tw_vec_push(&touched, &p[j].doc)) != 0)
                break;
            acc[p[j].doc] += s;
        }
    }

    // The best k among the kept: a bounded heap; keep is asked only about documents that
    // would enter it.
    size_t nh = 0;
    for (size_t i = 0; i < touched.len && rc == 0; i++) {
        uint32_t dn = TW_VEC_AT(&touched, uint32_t, i);
        struct tw_bm25_hit h = { .id = docs[dn].id, .score = acc[dn] };
        if (nh == k && !hit_before(&h, &hits[0]))
            continue;
        if (keep && !keep(ctx, h.id))
            continue;
        if (nh < k) {
            hits[nh] = h;
            heap_up(hits, nh++);
        } else {
            hits[0] = h;
            heap_down(hits, nh, 0);
        }
    }
    tw_free(acc);
    tw_vec_free(&touched);
    tw_vec_free(&q.terms);
    if (rc)
        return tw_error_prefix("bm25: query");
    qsort(hits, nh, sizeof *hits, cmp_hits);
    *n = nh;
    return 0;
}

struct score_ctx {
    const tw_bm25 *ix;
    uint32_t dn, dl;
    double score;
};

static int score_term(void *vctx, const char *w, size_t n)
{
    struct score_ctx *c = vctx;
    uint64_t v;
    if (!tw_map_get_str(&c->ix->dict, w, n, &v))
        return 0;
    const struct term *t = term_of(v);
    const struct posting *p = t->post.data;
    size_t lo = 0, hi = t->post.len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p[mid].doc < c->dn)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->post.len || p[lo].doc != c->dn)
        return 0;
    double k1 = c->ix->opt.k1, b = c->ix->opt.b, tf = p[lo].tf;
    double norm = k1 * (1 - b + b * c->dl / tw_bm25_avgdl(c->ix));
    c->score += idf(c->ix->n_live, t->df) * tf * (k1 + 1) / (tf + norm);
    return 0;
}

int tw_bm25_score(const tw_bm25 *ix, const char *query, size_t len, uint64_t id, double *score)
{
    uint64_t dn;
    if (!tw_map_get_u64(&ix->ids, id, &dn))
        return tw_error_set(TW_ENOENT, "bm25: document %llu is not in the index",
                            (unsigned long long)id);
    struct score_ctx c = { .ix = ix,
                           .dn = (uint32_t)dn,
                           .dl = TW_VEC_AT(&ix->docs, struct doc, dn).len };
    struct analyser an;
    int rc = analyser_init(&an, ix->opt.stop_words, ix->opt.stem);
    if (rc == 0)
        rc = analyse(&an, query, len, score_term, &c);
    analyser_free(&an);
    if (rc)
        return tw_error_prefix("bm25: query");
    *score = c.score;
    return 0;
}

// ---- Persistence ----------------------------------------------------------------------------
//
// Layout (little-endian), version 1:
//    0  "TWINBM25"
//    8  u32 format version        12  u32 analyser version
//   16  u32 flags (1 stop words, 2 stemming)            20  u32 zero
//   24  f64 k1                    32  f64 b
//   40  u64 documents             48  u64 terms
//   56  u64 postings              64  u64 sum of document lengths
//   72  u64 file size
//   80  documents: u64 id, u32 length, u32 distinct terms (16 bytes each)
//       terms, in increasing byte order: u32 length, the bytes, u32 df, then df postings
//       (u32 document number, u32 tf) in increasing document number
//  end  SHA-256 of every byte before it (32 bytes)

static const char MAGIC[8] = { 'T', 'W', 'I', 'N', 'B', 'M', '2', '5' };

#define FLAG_STOP 1u
#define FLAG_STEM 2u

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static uint8_t *put_f64(uint8_t *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, sizeof v);
    return put_u64(p, v);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static int cmp_terms(const void *a, const void *b)
{
    const struct term *x = *(const struct term *const *)a, *y = *(const struct term *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

int tw_bm25_save(const tw_bm25 *ix, const char *path)
{
    size_t nd = ix->docs.len, nt = tw_map_len(&ix->dict);
    const struct doc *docs = ix->docs.data;
    uint32_t *renum = tw_malloc_array(nd ? nd : 1, sizeof *renum);
    struct term **terms = tw_malloc_array(nt ? nt : 1, sizeof *terms);
    uint8_t *buf = NULL;
    int rc = 0;
    if (!renum || !terms) {
        rc = tw_error_set(TW_ENOMEM, "%s: cannot allocate the index's tables", path);
        goto out;
    }
    uint32_t next = 0;
    for (size_t i = 0; i < nd; i++)
        renum[i] = docs[i].live ? next++ : UINT32_MAX;

    size_t pos = 0, i = 0;
    struct tw_map_entry e;
    while (tw_map_next(&ix->dict, &pos, &e))
        terms[i++] = term_of(e.val);
    qsort(terms, nt, sizeof *terms, cmp_terms);

    // Sizes: every term's key and postings are in memory already, so these cannot overflow
    // a size_t on a machine that holds them; check anyway, cheaply.
    size_t size = HEADER_SIZE + TW_SHA256_LEN, part;
    bool over = tw_mul_overflow((size_t)ix->n_live, DOC_RECORD_SIZE, &part) ||
                tw_add_overflow(size, part, &size);
    for (size_t t = 0; t < nt && !over; t++)
        over = tw_mul_overflow(terms[t]->df, 8, &part) || tw_add_overflow(size, part, &size) ||
               tw_add_overflow(size, 8 + (size_t)terms[t]->klen, &size);
    if (over) {
        rc = tw_error_set(TW_EOVERFLOW, "%s: the index is too large to write", path);
        goto out;
    }
    buf = tw_malloc(size);
    if (!buf) {
        rc = tw_error_set(TW_ENOMEM, "%s: cannot allocate %zu bytes to write", path, size);
        goto out;
    }

    uint8_t *p = buf;
    memcpy(p, MAGIC, sizeof MAGIC);
    p += sizeof MAGIC;
    p = put_u32(p, FORMAT_VERSION);
    p = put_u32(p, ANALYSER_VERSION);
    p = put_u32(p, (ix->opt.stop_words ? FLAG_STOP : 0) | (ix->opt.stem ? FLAG_STEM : 0));
    p = put_u32(p, 0);
    p = put_f64(p, ix->opt.k1);
    p = put_f64(p, ix->opt.b);
    p = put_u64(p, ix->n_live);
    p = put_u64(p, nt);
    p = put_u64(p, ix->live_post);
    p = put_u64(p, ix->total_len);
    p = put_u64(p, size);
    for (size_t d = 0; d < nd; d++) {
        if (!docs[d].live)
            continue;
        p = put_u64(p, docs[d].id);
        p = put_u32(p, docs[d].len);
        p = put_u32(p, docs[d].nterms);
    }
    for (size_t t = 0; t < nt; t++) {
        const struct term *tm = terms[t];
        p = put_u32(p, tm->klen);
        memcpy(p, tm->key, tm->klen);
        p += tm->klen;
        p = put_u32(p, tm->df);
        const struct posting *ps = tm->post.data;
        for (size_t j = 0; j < tm->post.len; j++) {
            if (!docs[ps[j].doc].live)
                continue;
            p = put_u32(p, renum[ps[j].doc]);
            p = put_u32(p, ps[j].tf);
        }
    }
    assert((size_t)(p - buf) == size - TW_SHA256_LEN);
    tw_sha256(buf, size - TW_SHA256_LEN, p);
    rc = tw_file_write_atomic(path, buf, size);
out:
    tw_free(buf);
    tw_free(renum);
    tw_free(terms);
    return rc;
}

// Reading: a cursor over the checked bytes; every read checks the bounds.
struct reader {
    const uint8_t *p;
    size_t end; // bytes that may be read (the checksum excluded)
    size_t off;
    const char *path;
};

static int rd_need(struct reader *r, size_t n, const char *what)
{
    if (r->end - r->off < n)
        return tw_error_set(TW_EFORMAT, "%s: %s at byte %zu runs past the end of the data",
                            r->path, what, r->off);
    return 0;
}

static int load_fail(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int load_fail(const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tw_error_set(TW_EFORMAT, "%s: %s", path, msg);
}

// Checks the header and the checksum of the mapped file m; fills the counts.
struct header {
    uint32_t flags;
    double k1, b;
    uint64_t n_docs, n_terms, n_post, total_len;
};

static int read_header(const char *path, const uint8_t *p, size_t len, struct header *h)
{
    if (len < HEADER_SIZE + TW_SHA256_LEN)
        return load_fail(path, "truncated: %zu bytes, and a BM25 index has at least %d", len,
                         HEADER_SIZE + TW_SHA256_LEN);
    if (memcmp(p, MAGIC, sizeof MAGIC) != 0)
        return load_fail(path, "not a twin BM25 index (bad magic)");
    uint32_t fv = get_u32(p + 8), av = get_u32(p + 12);
    if (fv != FORMAT_VERSION)
        return tw_error_set(TW_EUNSUPPORTED, "%s: BM25 format version %u (this build reads %d)",
                            path, fv, FORMAT_VERSION);
    uint64_t size = get_u64(p + 72);
    if (size > len)
        return load_fail(path, "truncated: the header gives %llu bytes, the file has %zu",
                         (unsigned long long)size, len);
    if (size < len)
        return load_fail(path, "%zu unexpected bytes after the end (%llu bytes)",
                         len - (size_t)size, (unsigned long long)size);
    uint8_t sum[TW_SHA256_LEN];
    tw_sha256(p, len - TW_SHA256_LEN, sum);
    if (memcmp(sum, p + len - TW_SHA256_LEN, TW_SHA256_LEN) != 0)
        return load_fail(path, "checksum mismatch: the file is corrupted");
    if (av != ANALYSER_VERSION)
        return tw_error_set(TW_EUNSUPPORTED,
                            "%s: built with BM25 analyser version %u, this build has %d: "
                            "rebuild the index",
                            path, av, ANALYSER_VERSION);
    h->flags = get_u32(p + 16);
    if ((h->flags & ~(FLAG_STOP | FLAG_STEM)) || get_u32(p + 20) != 0)
        return load_fail(path, "unknown flags 0x%x / 0x%x in the header", h->flags,
                         get_u32(p + 20));
    uint64_t v = get_u64(p + 24);
    memcpy(&h->k1, &v, sizeof v);
    v = get_u64(p + 32);
    memcpy(&h->b, &v, sizeof v);
    h->n_docs = get_u64(p + 40);
    h->n_terms = get_u64(p + 48);
    h->n_post = get_u64(p + 56);
    h->total_len = get_u64(p + 64);
    // Cheap bounds before any allocation: every record takes room in the file.
    size_t room = len - HEADER_SIZE - TW_SHA256_LEN;
    if (h->n_docs > room / DOC_RECORD_SIZE || h->n_docs >= UINT32_MAX - 1)
        return load_fail(path, "header: %llu documents cannot fit in %zu bytes",
                         (unsigned long long)h->n_docs, room);
    if (h->n_terms > room / 9 || h->n_post > room / 8)
        return load_fail(path, "header: %llu terms and %llu postings cannot fit in %zu bytes",
                         (unsigned long long)h->n_terms, (unsigned long long)h->n_post, room);
    return 0;
}

// Reads the document records into ix (documents only; their term lists come later).
static int read_docs(tw_bm25 *ix, struct reader *r, uint64_t n_docs)
{
    int rc = rd_need(r, (size_t)n_docs * DOC_RECORD_SIZE, "the document table");
    if (rc == 0)
        rc = tw_vec_reserve(&ix->docs, (size_t)n_docs);
    if (rc == 0)
        rc = tw_map_reserve(&ix->ids, (size_t)n_docs);
    for (uint64_t i = 0; i < n_docs && rc == 0; i++) {
        const uint8_t *p = r->p + r->off;
        struct doc d = { .id = get_u64(p), .len = get_u32(p + 8), .nterms = get_u32(p + 12) };
        d.live = true;
        r->off += DOC_RECORD_SIZE;
        if (tw_map_get_u64(&ix->ids, d.id, NULL))
            return load_fail(r->path, "document %llu: id %llu appears twice",
                             (unsigned long long)i, (unsigned long long)d.id);
        if (d.nterms > d.len)
            return load_fail(r->path, "document %llu: %u distinct terms but length %u",
                             (unsigned long long)i, d.nterms, d.len);
        rc = tw_map_put_u64(&ix->ids, d.id, i);
        if (rc == 0)
            rc = tw_vec_push(&ix->docs, &d);
    }
    return rc;
}

// Reads one term record and appends its struct term to *order.
static int read_term(tw_bm25 *ix, struct reader *r, uint64_t ti, const struct term *prev,
                     uint64_t *sum_tf, uint32_t *count, tw_vec *order)
{
    const char *path = r->path;
    int rc = rd_need(r, 4, "a term length");
    if (rc)
        return rc;
    uint32_t klen = get_u32(r->p + r->off);
    r->off += 4;
    if (klen == 0 || klen > TW_BM25_MAX_TERM)
        return load_fail(path, "term %llu: length %u outside 1..%d", (unsigned long long)ti, klen,
                         TW_BM25_MAX_TERM);
    if ((rc = rd_need(r, (size_t)klen + 4, "a term")) != 0)
        return rc;
    const char *key = (const char *)r->p + r->off;
    r->off += klen;
    uint32_t df = get_u32(r->p + r->off);
    r->off += 4;
    struct term *t = term_new(key, klen);
    if (!t)
        return TW_ENOMEM;
    if (prev && cmp_terms(&prev, &t) >= 0) {
        term_free(t);
        return load_fail(path, "term %llu (\"%.*s\"): out of order or repeated",
                         (unsigned long long)ti, (int)klen, key);
    }
    if (df == 0 || df > ix->docs.len || (rc = rd_need(r, (size_t)df * 8, "postings")) != 0) {
        term_free(t);
        return rc ? rc
                  : load_fail(path, "term %llu (\"%.*s\"): df %u outside 1..%zu",
                              (unsigned long long)ti, (int)klen, key, df, ix->docs.len);
    }
    if ((rc = tw_vec_resize(&t->post, df)) != 0 || (rc = tw_vec_push(order, &t)) != 0) {
        term_free(t);
        return rc;
    }
    // From here t is owned by order (freed with it on failure).
    t->df = df;
    struct posting *ps = t->post.data;
    for (uint32_t j = 0; j < df; j++) {
        const uint8_t *p = r->p + r->off + 8 * (size_t)j;
        ps[j].doc = get_u32(p);
        ps[j].tf = get_u32(p + 4);
        if (ps[j].doc >= ix->docs.len || (j > 0 && ps[j].doc <= ps[j - 1].doc) || ps[j].tf == 0)
            return load_fail(path,
                             "term %llu (\"%.*s\"): posting %u (document %u, tf %u): document "
                             "numbers must increase and be under %zu, tf must be >= 1",
                             (unsigned long long)ti, (int)klen, key, j, ps[j].doc, ps[j].tf,
                             ix->docs.len);
        sum_tf[ps[j].doc] += ps[j].tf;
        count[ps[j].doc]++;
    }
    r->off += (size_t)df * 8;
    return 0;
}

// Checks that the postings add up to the document table, then builds each document's term
// list from the postings.
static int link_docs(tw_bm25 *ix, const char *path, const struct header *h, const uint64_t *sum_tf,
                     uint32_t *count, const tw_vec *order)
{
    struct doc *docs = ix->docs.data;
    uint64_t total = 0, npost = 0;
    for (size_t d = 0; d < ix->docs.len; d++) {
        if (count[d] != docs[d].nterms || sum_tf[d] != docs[d].len)
            return load_fail(path,
                             "document %zu (id %llu): the postings give %u terms of total "
                             "count %llu, the table says %u and %u",
                             d, (unsigned long long)docs[d].id, count[d],
                             (unsigned long long)sum_tf[d], docs[d].nterms, docs[d].len);
        total += docs[d].len;
        npost += count[d];
    }
    if (total != h->total_len || npost != h->n_post)
        return load_fail(path,
                         "header: total length %llu and %llu postings, the data give %llu "
                         "and %llu",
                         (unsigned long long)h->total_len, (unsigned long long)h->n_post,
                         (unsigned long long)total, (unsigned long long)npost);
    for (size_t d = 0; d < ix->docs.len; d++) {
        if (docs[d].nterms == 0)
            continue;
        docs[d].terms = tw_malloc_array(docs[d].nterms, sizeof *docs[d].terms);
        if (!docs[d].terms)
            return tw_error_set(TW_ENOMEM, "%s: cannot allocate document term lists", path);
        count[d] = 0;
    }
    for (size_t i = 0; i < order->len; i++) {
        struct term *t = TW_VEC_AT(order, struct term *, i);
        const struct posting *ps = t->post.data;
        for (size_t j = 0; j < t->post.len; j++)
            docs[ps[j].doc].terms[count[ps[j].doc]++] = t;
    }
    ix->n_live = ix->docs.len;
    ix->total_len = total;
    ix->live_post = (size_t)npost;
    return 0;
}

static int load_body(tw_bm25 *ix, const char *path, const uint8_t *data, size_t len,
                     const struct header *h)
{
    struct reader r = { .p = data, .end = len - TW_SHA256_LEN, .off = HEADER_SIZE, .path = path };
    int rc = read_docs(ix, &r, h->n_docs);
    if (rc)
        return rc;
    size_t nd = ix->docs.len;
    uint64_t *sum_tf = tw_calloc(nd ? nd : 1, sizeof *sum_tf);
    uint32_t *count = tw_calloc(nd ? nd : 1, sizeof *count);
    tw_vec order; // struct term *, in file order; owns them until they enter the dictionary
    tw_vec_init(&order, sizeof(struct term *));
    if (!sum_tf || !count)
        rc = tw_error_set(TW_ENOMEM, "%s: cannot allocate %zu document counters", path, nd);
    if (rc == 0)
        rc = tw_vec_reserve(&order, (size_t)h->n_terms);
    if (rc == 0)
        rc = tw_map_reserve(&ix->dict, (size_t)h->n_terms);
    for (uint64_t t = 0; t < h->n_terms && rc == 0; t++) {
        const struct term *prev = t ? TW_VEC_AT(&order, struct term *, t - 1) : NULL;
        rc = read_term(ix, &r, t, prev, sum_tf, count, &order);
    }
    if (rc == 0 && r.off != r.end)
        rc = load_fail(path, "%zu unexplained bytes before the checksum", r.end - r.off);
    if (rc == 0)
        rc = link_docs(ix, path, h, sum_tf, count, &order);
    size_t moved = 0;
    while (rc == 0 && moved < order.len) {
        struct term *t = TW_VEC_AT(&order, struct term *, moved);
        rc = tw_map_put_str(&ix->dict, t->key, t->klen, (uint64_t)(uintptr_t)t);
        if (rc == 0)
            moved++;
    }
    if (rc) // the terms not yet in the dictionary; tw_bm25_free frees the others
        for (size_t i = moved; i < order.len; i++)
            term_free(TW_VEC_AT(&order, struct term *, i));
    tw_vec_free(&order);
    tw_free(sum_tf);
    tw_free(count);
    return rc;
}

int tw_bm25_load(const char *path, tw_bm25 **out)
{
    struct tw_mmap m = { 0 };
    int rc = tw_mmap_open(&m, path);
    if (rc)
        return rc;
    struct header h = { 0 };
    rc = read_header(path, m.data, m.len, &h);
    tw_bm25 *ix = NULL;
    if (rc == 0) {
        struct tw_bm25_options o = {
            .k1 = h.k1,
            .b = h.b,
            .stop_words = (h.flags & FLAG_STOP) != 0,
            .stem = (h.flags & FLAG_STEM) != 0,
        };
        rc = check_options(&o);
        if (rc)
            rc = load_fail(path, "header: %s", tw_error_msg());
        else
            rc = tw_bm25_new(&o, &ix);
    }
    if (rc == 0)
        rc = load_body(ix, path, m.data, m.len, &h);
    tw_mmap_close(&m);
    if (rc) {
        tw_bm25_free(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

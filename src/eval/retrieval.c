// Retrieval evaluation (eval/retrieval.h): the JSON Lines reader of labelled query sets, the
// seeded generator that turns a corpus' own sentences into questions (sentence splitting,
// content words ranked by tf-idf, templates), and recall@k / MRR over ranked documents.
// Owns the query sets it returns; the documents stay the caller's.
#include "eval/retrieval.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "text/bm25.h"

const uint32_t tw_eval_ks[TW_EVAL_NK] = { 1, 3, 5, 10 };

// A query file is a few hundred hand-written lines; anything near this is a wrong path.
#define QUERIES_LIMIT ((size_t)64 << 20)

// ---- Query sets ---------------------------------------------------------------------------

static void query_clear(struct tw_eval_query *q)
{
    tw_free(q->id);
    tw_free(q->question);
    for (size_t i = 0; i < q->n_relevant; i++)
        tw_free(q->relevant[i]);
    tw_free(q->relevant);
    tw_free(q->author);
    memset(q, 0, sizeof *q);
}

void tw_eval_queries_free(struct tw_eval_query *q, size_t n)
{
    for (size_t i = 0; q && i < n; i++)
        query_clear(&q[i]);
    tw_free(q);
}

// Fills q with copies of the strings (author may be NULL) and one relevant key per entry of
// rel; on failure q is left empty.
static int query_fill(struct tw_eval_query *q, const char *id, const char *question,
                      const char *author, const char *const *rel, size_t n_rel)
{
    memset(q, 0, sizeof *q);
    q->id = tw_strdup(id);
    q->question = tw_strdup(question);
    q->author = author ? tw_strdup(author) : NULL;
    q->relevant = tw_calloc(n_rel, sizeof *q->relevant);
    bool ok = q->id && q->question && (!author || q->author) && q->relevant;
    for (size_t i = 0; ok && i < n_rel; i++) {
        q->relevant[i] = tw_strdup(rel[i]);
        ok = q->relevant[i] != NULL;
        q->n_relevant = i + 1;
    }
    if (!ok) {
        query_clear(q);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

// Moves q into the set v (a tw_vec of queries); on failure q is cleared.
static int query_push(tw_vec *v, struct tw_eval_query *q)
{
    if (tw_vec_push(v, q) != 0) {
        query_clear(q);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

// Hands the set over as the caller's array (the vector's block becomes theirs).
static void queries_detach(tw_vec *v, struct tw_eval_query **out, size_t *n)
{
    *out = v->data;
    *n = v->len;
    tw_vec_init(v, sizeof(struct tw_eval_query));
}

static void queries_drop(tw_vec *v)
{
    tw_eval_queries_free(v->data, v->len);
    tw_vec_init(v, sizeof(struct tw_eval_query));
}

// ---- Reading a query file -------------------------------------------------------------------

static int get_text(const json_t *obj, const char *where, const char *key, const char **out)
{
    int rc = tw_json_get_str(obj, where, key, out);
    if (rc == 0 && !**out)
        rc = tw_error_set(TW_EFORMAT, "%s: \"%s\": expected a non-empty string", where, key);
    return rc;
}

// The relevant keys of obj: a non-empty array of non-empty strings. *rel is a new array of
// borrowed strings (owned by obj) that the caller frees.
static int get_relevant(const json_t *obj, const char *where, const char ***rel, size_t *n)
{
    const json_t *a = json_object_get(obj, "relevant");
    size_t len = json_is_array(a) ? json_array_size(a) : 0;
    for (size_t i = 0; i < len; i++)
        if (!json_is_string(json_array_get(a, i)))
            len = 0;
    if (len == 0)
        return tw_error_set(TW_EFORMAT, "%s: \"relevant\": expected a non-empty array of strings",
                            where);
    const char **v = tw_malloc_array(len, sizeof *v);
    if (!v)
        return tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; i < len; i++) {
        v[i] = json_string_value(json_array_get(a, i));
        if (!*v[i]) {
            tw_free(v);
            // An empty key is contained in every URI: it would make every document relevant.
            return tw_error_set(TW_EFORMAT, "%s: \"relevant\"[%zu]: expected a non-empty string",
                                where, i);
        }
    }
    *rel = v;
    *n = len;
    return 0;
}

// One parsed line into q.
static int query_from_json(const json_t *j, const char *where, struct tw_eval_query *q)
{
    if (!json_is_object(j))
        return tw_error_set(TW_EFORMAT, "%s: expected an object, got %s", where,
                            tw_json_type_name(j));
    const char *id = NULL, *question = NULL, *author = NULL, **rel = NULL;
    size_t n_rel = 0;
    int rc = get_text(j, where, "id", &id);
    if (!rc)
        rc = get_text(j, where, "question", &question);
    if (!rc)
        rc = tw_json_opt_str(j, where, "author", NULL, &author);
    if (!rc && author && !*author)
        rc =
            tw_error_set(TW_EFORMAT, "%s: \"author\": expected a non-empty string or null", where);
    if (!rc)
        rc = get_relevant(j, where, &rel, &n_rel);
    if (rc)
        return rc;
    rc = query_fill(q, id, question, author, rel, n_rel);
    tw_free(rel);
    return rc;
}

// Parses one line (path:lineno, for messages) and appends its query to v; ids maps each id
// seen so far to its line.
static int load_line(const char *path, size_t lineno, const char *s, size_t len, tw_vec *v,
                     tw_map *ids)
{
    char where[1024];
    snprintf(where, sizeof where, "%s:%zu", path, lineno);
    json_t *j;
    int rc = tw_json_parse(where, s, len, &j);
    if (rc)
        return rc;
    struct tw_eval_query q;
    rc = query_from_json(j, where, &q);
    json_decref(j);
    if (rc)
        return rc;
    uint64_t first;
    if (tw_map_get_str(ids, q.id, strlen(q.id), &first)) {
        rc = tw_error_set(TW_EFORMAT, "%s: \"id\": duplicate \"%s\" (first on line %llu)", where,
                          q.id, (unsigned long long)first);
    } else if (tw_map_put_str(ids, q.id, strlen(q.id), lineno) != 0) {
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    }
    if (rc) {
        query_clear(&q);
        return rc;
    }
    return query_push(v, &q);
}

// True when line [s, s + len) is blank or a comment.
static bool skipped_line(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'))
        i++;
    return i == len || s[i] == '#';
}

static int load_lines(const char *path, const char *buf, size_t len, tw_vec *v)
{
    tw_map ids;
    tw_map_init(&ids, TW_MAP_STR);
    int rc = 0;
    size_t lineno = 0;
    for (size_t at = 0; at < len && !rc;) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - buf) : len;
        lineno++;
        if (!skipped_line(buf + at, end - at))
            rc = load_line(path, lineno, buf + at, end - at, v, &ids);
        at = end + 1;
    }
    tw_map_free(&ids);
    return rc;
}

int tw_eval_queries_load(const char *path, struct tw_eval_query **out, size_t *n)
{
    char *buf;
    size_t len;
    int rc = tw_file_read(path, QUERIES_LIMIT, &buf, &len);
    if (rc == TW_ENOENT || rc == TW_ELIMIT) {
        // The contract has one code for a file that cannot be had; the message says why.
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", tw_error_msg());
        return tw_error_set(TW_EIO, "%s", msg);
    }
    if (rc)
        return rc;
    tw_vec v;
    tw_vec_init(&v, sizeof(struct tw_eval_query));
    rc = load_lines(path, buf, len, &v);
    tw_free(buf);
    if (rc) {
        queries_drop(&v);
        return rc;
    }
    queries_detach(&v, out, n);
    return 0;
}

// ---- Metrics --------------------------------------------------------------------------------

static bool uri_has(const char *uri, const char *key)
{
    return uri && strstr(uri, key) != NULL;
}

static bool uri_relevant(const struct tw_eval_query *q, const char *uri)
{
    for (size_t r = 0; r < q->n_relevant; r++)
        if (uri_has(uri, q->relevant[r]))
            return true;
    return false;
}

// The fraction of q's relevant keys found among uris[0, n).
static double recall_at(const struct tw_eval_query *q, const char *const *uris, size_t n)
{
    if (q->n_relevant == 0)
        return 0;
    size_t found = 0;
    for (size_t r = 0; r < q->n_relevant; r++) {
        for (size_t i = 0; i < n; i++) {
            if (uri_has(uris[i], q->relevant[r])) {
                found++;
                break;
            }
        }
    }
    return (double)found / (double)q->n_relevant;
}

void tw_eval_score(const struct tw_eval_query *q, const char *const *uris, size_t n,
                   struct tw_eval_acc *acc)
{
    for (size_t k = 0; k < TW_EVAL_NK; k++)
        acc->recall_sum[k] += recall_at(q, uris, n < tw_eval_ks[k] ? n : tw_eval_ks[k]);
    for (size_t i = 0; i < n; i++) {
        if (uri_relevant(q, uris[i])) {
            acc->rr_sum += 1.0 / (double)(i + 1);
            break;
        }
    }
    acc->n++;
}

void tw_eval_means(const struct tw_eval_acc *acc, double recall[TW_EVAL_NK], double *mrr)
{
    double n = (double)acc->n;
    for (size_t k = 0; k < TW_EVAL_NK; k++)
        recall[k] = acc->n ? acc->recall_sum[k] / n : 0;
    *mrr = acc->n ? acc->rr_sum / n : 0;
}

// ---- Generator: randomness ------------------------------------------------------------------

// splitmix64 (Steele, Lea and Flood 2014): the same sequence on every platform for a seed.
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Uniform enough in [0, n) for n far below 2^64 (n > 0).
static size_t rng_below(uint64_t *s, size_t n)
{
    return (size_t)(rng_next(s) % n);
}

// ---- Generator: words -----------------------------------------------------------------------

// Sentences of this many words make questions: shorter ones say too little to be found,
// longer ones are usually lists or tables run together.
#define SENT_MIN_WORDS 12
#define SENT_MAX_WORDS 60
// Content words: ASCII letters only, of this length (shorter ones are rarely distinctive).
#define WORD_MIN 4
#define WORD_MAX 24
// A usable sentence has this many distinct content words, of which MIN_RARE are rare in the
// corpus; a question takes its words from the best TOP_WORDS, so the choice varies by seed.
#define MIN_CONTENT 4
#define MIN_RARE    3
#define TOP_WORDS   5

// Words that are not stop words but say nothing about a topic: transcript markers of the
// modern addresses ("(Applause.)") and the speech's own frame.
static const char *const filler[] = {
    "applause", "laughter", "tonight", "today", "thank", "thanks"
};

static bool is_alpha(unsigned char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Bytes of the UTF-8 General Punctuation character (U+2000..U+206F: dashes, curly quotes,
// the right single quote used as apostrophe) at s, or 0: these separate words.
static size_t gen_punct_len(const unsigned char *s, size_t n)
{
    return n >= 3 && s[0] == 0xE2 && (s[1] == 0x80 || s[1] == 0x81) ? 3 : 0;
}

// Bytes of the apostrophe at s (ASCII, or the right single quote U+2019), or 0.
static size_t apostrophe_len(const unsigned char *s, size_t n)
{
    if (n >= 1 && s[0] == '\'')
        return 1;
    return n >= 3 && s[0] == 0xE2 && s[1] == 0x80 && s[2] == 0x99 ? 3 : 0;
}

// One word of a sentence: a run of letters and non-ASCII bytes between separators (ASCII
// non-letters and general punctuation). Only all-ASCII words may become content words, so a
// question never holds a piece of a multibyte character or of an accented word.
struct word {
    const char *p;
    size_t len;
    bool ascii;
};

// The next word in [*at, end), advancing *at past it; false when none is left.
static bool next_word(const char *text, size_t *at, size_t end, struct word *w)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t i = *at;
    for (;;) {
        while (i < end && t[i] < 0x80 && !is_alpha(t[i]))
            i++;
        size_t g = i < end ? gen_punct_len(t + i, end - i) : 0;
        if (!g)
            break;
        i += g;
    }
    if (i >= end)
        return false;
    size_t b = i;
    bool ascii = true;
    while (i < end && (is_alpha(t[i]) || t[i] >= 0x80) && !gen_punct_len(t + i, end - i)) {
        ascii = ascii && t[i] < 0x80;
        i++;
    }
    // "shouldn't", "doesn’t": the stem is not a word of its own (and not in the stop list).
    size_t q = apostrophe_len(t + i, end - i);
    if (q && i + q < end && (t[i + q] | 0x20) == 't' &&
        (i + q + 1 == end || !is_alpha(t[i + q + 1])))
        ascii = false;
    *w = (struct word){ text + b, i - b, ascii };
    *at = i;
    return true;
}

// Lower-cases a candidate content word into buf (WORD_MAX + 1 bytes); false when w cannot be
// one (not ASCII, too short or long, a stop word or filler).
static bool content_key(const struct word *w, char *buf)
{
    if (!w->ascii || w->len < WORD_MIN || w->len > WORD_MAX)
        return false;
    for (size_t i = 0; i < w->len; i++)
        buf[i] = (char)(w->p[i] | 0x20);
    buf[w->len] = 0;
    for (size_t k = 0; k < sizeof filler / sizeof *filler; k++)
        if (strcmp(buf, filler[k]) == 0)
            return false;
    return !tw_bm25_is_stop_word(buf, w->len);
}

// Counts of the content words of text[0, len) in a map (lower-case word -> count): the
// document's term frequencies. With `doc`, counts documents instead (see struct df).
static int count_words_into(tw_map *m, const char *text, size_t len, uint32_t doc)
{
    char key[WORD_MAX + 1];
    struct word w;
    for (size_t at = 0; next_word(text, &at, len, &w);) {
        if (!content_key(&w, key))
            continue;
        uint64_t v = 0;
        tw_map_get_str(m, key, w.len, &v);
        if (doc) {
            if ((uint32_t)v == doc)
                continue; // seen in this document already
            v = ((v >> 32) + 1) << 32 | doc;
        } else {
            v++;
        }
        if (tw_map_put_str(m, key, w.len, v) != 0)
            return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

// ---- Generator: document frequencies --------------------------------------------------------

// How many documents each content word appears in (value: df << 32 | last document + 1), so
// that words common to much of the corpus ("government", "congress") are passed over and rare
// ones ("Yeltsin", "wool") preferred.
struct df {
    tw_map map;
    size_t n_docs;
    bool on; // off for tiny corpora, where every word is in "most" documents
};

static int df_build(struct df *df, const struct tw_eval_doc *docs, size_t n_docs)
{
    df->n_docs = n_docs;
    df->on = n_docs >= 4 && n_docs < UINT32_MAX;
    int rc = 0;
    for (size_t i = 0; df->on && !rc && i < n_docs; i++)
        if (docs[i].text)
            rc = count_words_into(&df->map, docs[i].text, docs[i].len, (uint32_t)i + 1);
    return rc;
}

static size_t df_get(const struct df *df, const char *key, size_t len)
{
    uint64_t v = 0;
    tw_map_get_str(&df->map, key, len, &v);
    return (size_t)(v >> 32);
}

// floor(log2(x)) for x >= 1; 0 for 0.
static int log2_floor(size_t x)
{
    int l = 0;
    while (x > 1) {
        x >>= 1;
        l++;
    }
    return l;
}

// ---- Generator: sentences -------------------------------------------------------------------

// Abbreviations whose period does not end a sentence (initials and "U.S."-style tokens are
// handled by the rules in is_abbrev).
static const char *const abbrevs[] = { "Mr",  "Mrs", "Messrs", "Dr",  "St",    "Gen", "Col",
                                       "Gov", "Hon", "Capt",   "Lt",  "Lieut", "Sen", "Rep",
                                       "Jr",  "Sr",  "No",     "Nos", "Vol",   "Art", "Sec" };

// True when the period at text[i] ends an abbreviation: a listed title, a single letter (an
// initial), or a token with an inner period ("U.S.", "D.C.").
static bool is_abbrev(const char *text, size_t b, size_t i)
{
    size_t s = i;
    while (s > b && !is_space((unsigned char)text[s - 1]))
        s--;
    while (s < i && !is_alpha((unsigned char)text[s]))
        s++; // an opening quote or bracket
    size_t n = i - s;
    if (n == 1 || (n > 0 && memchr(text + s, '.', n)))
        return true;
    for (size_t k = 0; k < sizeof abbrevs / sizeof *abbrevs; k++)
        if (strlen(abbrevs[k]) == n && memcmp(abbrevs[k], text + s, n) == 0)
            return true;
    return false;
}

// Past closing quotes and brackets at i (ASCII, or the curly ’ and ”).
static size_t skip_closers(const char *text, size_t i, size_t end)
{
    const unsigned char *t = (const unsigned char *)text;
    for (;;) {
        if (i < end && (t[i] == '"' || t[i] == '\'' || t[i] == ')' || t[i] == ']'))
            i++;
        else if (end - i >= 3 && t[i] == 0xE2 && t[i + 1] == 0x80 &&
                 (t[i + 2] == 0x99 || t[i + 2] == 0x9D))
            i += 3;
        else
            return i;
    }
}

// True when a sentence may start at i: a capital letter, maybe after an opening quote.
static bool starts_sentence(const char *text, size_t i, size_t end)
{
    const unsigned char *t = (const unsigned char *)text;
    if (i < end && (t[i] == '"' || t[i] == '(' || t[i] == '\''))
        i++;
    else if (end - i >= 3 && t[i] == 0xE2 && t[i + 1] == 0x80 && t[i + 2] == 0x9C)
        i += 3;
    return i < end && is_upper(t[i]);
}

// The end (exclusive) of the sentence that starts at b: past the . ! or ? (and its closing
// quotes) that is followed by white space and a capital, or at a blank line, or the end.
static size_t sentence_end(const char *text, size_t b, size_t end)
{
    for (size_t i = b; i < end; i++) {
        char c = text[i];
        if (c == '\n') {
            size_t j = i + 1;
            while (j < end && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r'))
                j++;
            if (j < end && text[j] == '\n')
                return i; // a paragraph break: headings and list items have no period
            continue;
        }
        if (c != '.' && c != '!' && c != '?')
            continue;
        size_t j = skip_closers(text, i + 1, end);
        if (j >= end)
            return end;
        if (!is_space((unsigned char)text[j]))
            continue;
        size_t k = j;
        while (k < end && is_space((unsigned char)text[k]))
            k++;
        if (starts_sentence(text, k, end) && !(c == '.' && is_abbrev(text, b, i)))
            return j;
    }
    return end;
}

static size_t count_words(const char *s, size_t n)
{
    size_t words = 0;
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)s[i]) && (i == 0 || is_space((unsigned char)s[i - 1])))
            words++;
    return words;
}

// A content word of a sentence.
struct cand {
    const char *p;
    size_t len;
    size_t df;   // documents it is in (0: frequencies off)
    bool proper; // capitalised inside the sentence: a name, kept as written
    int score;
};

static bool cand_seen(const struct cand *c, size_t n, const char *key, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].len != len)
            continue;
        size_t k = 0;
        while (k < len && (c[i].p[k] | 0x20) == key[k])
            k++;
        if (k == len)
            return true;
    }
    return false;
}

// The distinct content words of sentence [s, s + n) that are not common to most documents,
// in text order, into c (room for SENT_MAX_WORDS); returns how many.
static size_t sentence_cands(const struct df *df, const char *s, size_t n, struct cand *c)
{
    size_t m = 0, index = 0;
    char key[WORD_MAX + 1];
    struct word w;
    for (size_t at = 0; m < SENT_MAX_WORDS && next_word(s, &at, n, &w); index++) {
        if (!content_key(&w, key) || cand_seen(c, m, key, w.len))
            continue;
        size_t f = df->on ? df_get(df, key, w.len) : 0;
        if (f * 2 > df->n_docs)
            continue;
        bool proper =
            index > 0 && is_upper((unsigned char)w.p[0]) && !is_upper((unsigned char)w.p[1]);
        c[m++] = (struct cand){ w.p, w.len, f, proper, 0 };
    }
    return m;
}

// In at most an eighth of the documents, or in its own only.
static bool is_rare(const struct df *df, const struct cand *c)
{
    return !df->on || c->df <= 1 || c->df * 8 <= df->n_docs;
}

static bool usable(const struct df *df, const char *s, size_t n)
{
    size_t words = count_words(s, n);
    if (words < SENT_MIN_WORDS || words > SENT_MAX_WORDS)
        return false;
    struct cand c[SENT_MAX_WORDS];
    size_t m = sentence_cands(df, s, n, c), rare = 0;
    for (size_t i = 0; i < m; i++)
        rare += is_rare(df, &c[i]);
    return m >= MIN_CONTENT && rare >= MIN_RARE;
}

// A word's weight for the question, tf-idf in whole powers of two: words the document repeats
// (its topic) and the rest of the corpus lacks come first; then longer words and names.
// Adverbs ("constantly") rarely name a topic.
static int cand_score(const struct df *df, const tw_map *tf, const struct cand *c)
{
    char key[WORD_MAX + 1];
    for (size_t i = 0; i < c->len; i++)
        key[i] = (char)(c->p[i] | 0x20);
    uint64_t count = 1;
    tw_map_get_str(tf, key, c->len, &count);
    int idf = df->on && c->df ? log2_floor(df->n_docs / c->df) : 0;
    int score = (log2_floor((size_t)count) + 1) * (idf + 1) * 4 + (int)c->len / 2;
    score += c->proper ? 2 : 0;
    score -= c->len > 4 && key[c->len - 2] == 'l' && key[c->len - 1] == 'y' ? 8 : 0;
    return score;
}

// Scores c[0, m) and sorts them best first (stable: ties keep text order).
static void rank(const struct df *df, const tw_map *tf, struct cand *c, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        struct cand x = c[i];
        x.score = cand_score(df, tf, &x);
        size_t j = i;
        for (; j > 0 && c[j - 1].score < x.score; j--)
            c[j] = c[j - 1];
        c[j] = x;
    }
}

// ---- Generator: questions -------------------------------------------------------------------

// {a}: the author's name; {1} {2} {3}: content words. No template copies the sentence: at
// most three of its words appear, in an order of their own.
static const char *const with_author[] = {
    "What did {a} say about {1} and {2}?",
    "What did {a} say about {1}, {2} and {3}?",
    "{a} on {1}, {2} and {3}",
    "How did {a} speak of {1} and {2}?",
    "What was {a}'s view of {1}, {2} and {3}?",
    "Where does {a} discuss {1}, {2} and {3}?",
};
static const char *const without_author[] = {
    "Which text discusses {1}, {2} and {3}?",
    "What was said about {1}, {2} and {3}?",
    "Who spoke of {1}, {2} and {3}?",
    "Where are {1} and {2} discussed together with {3}?",
    "{1}, {2} and {3}: where are they discussed?",
};

static size_t template_slots(const char *t)
{
    return strstr(t, "{3}") ? 3 : 2;
}

// Appends the word as the question shows it: names as written, other words in lower case.
static int put_word(tw_str *s, const struct cand *c)
{
    for (size_t i = 0; i < c->len; i++) {
        char ch = c->proper && i == 0 ? c->p[i] : (char)(c->p[i] | 0x20);
        if (tw_str_putc(s, ch) != 0)
            return TW_ENOMEM;
    }
    return 0;
}

// Expands template t with the author and words w[0..2] into s.
static int expand(tw_str *s, const char *t, const char *author, const struct cand *const *w)
{
    int rc = 0;
    while (*t && !rc) {
        if (t[0] == '{' && t[1] == 'a' && t[2] == '}') {
            rc = tw_str_puts(s, author);
            t += 3;
        } else if (t[0] == '{' && t[1] >= '1' && t[1] <= '3' && t[2] == '}') {
            rc = put_word(s, w[t[1] - '1']);
            t += 3;
        } else {
            rc = tw_str_putc(s, *t++);
        }
    }
    return rc;
}

// The question for a usable sentence: a template chosen at random, filled with words drawn at
// random from the sentence's best TOP_WORDS (tf: the document's term frequencies). *out
// (tw_free) gets the text.
static int make_question(const struct df *df, const tw_map *tf, const char *s, size_t n,
                         const char *author, uint64_t *rng, char **out)
{
    struct cand c[SENT_MAX_WORDS];
    size_t m = sentence_cands(df, s, n, c), top = m < TOP_WORDS ? m : TOP_WORDS;
    rank(df, tf, c, m);
    const char *t =
        author ? with_author[rng_below(rng, sizeof with_author / sizeof *with_author)]
               : without_author[rng_below(rng, sizeof without_author / sizeof *without_author)];
    assert(top >= template_slots(t)); // usable() asked for MIN_CONTENT words
    const struct cand *w[3];
    size_t idx[TOP_WORDS] = { 0, 1, 2, 3, 4 };
    // The best word always (it makes the question findable), the others at random from the
    // next best: a partial Fisher-Yates shuffle of ranks 1..top-1.
    for (size_t i = 0; i < template_slots(t); i++) {
        size_t j = i ? i + rng_below(rng, top - i) : 0;
        size_t x = idx[i];
        idx[i] = idx[j];
        idx[j] = x;
        w[i] = &c[idx[i]];
    }
    tw_str q;
    tw_str_init(&q);
    int rc = expand(&q, t, author, w);
    if (!rc)
        rc = tw_str_detach(&q, out, NULL);
    tw_str_free(&q);
    if (rc)
        return tw_error_set(TW_ENOMEM, "out of memory");
    if (**out >= 'a' && **out <= 'z') // a template that starts with a word
        **out = (char)(**out - 'a' + 'A');
    return 0;
}

// ---- Generator: drawing sentences -----------------------------------------------------------

// A usable sentence, bytes [off, off + len) of document doc; once drawn, `slot` is the index
// of its question in the set.
struct span {
    size_t doc, off, len, slot;
};

// Each document's usable sentences are spans[begin, begin + n); the first `drawn` of them
// are used (drawing swaps the chosen one there: sampling without replacement).
struct doc_pool {
    size_t begin, n, drawn;
};

// State of one generation.
struct gen {
    const struct tw_eval_doc *docs;
    size_t n_docs;
    uint64_t seed, rng;
    struct df df;
    tw_vec spans; // struct span: every usable sentence
    tw_vec picks; // struct span: the drawn ones, in question order
    struct doc_pool *pools;
    size_t *order;
};

// Appends document doc's usable sentences to g->spans.
static int collect_sentences(struct gen *g, size_t doc)
{
    const struct tw_eval_doc *d = &g->docs[doc];
    for (size_t b = 0; d->text && b < d->len;) {
        while (b < d->len && is_space((unsigned char)d->text[b]))
            b++;
        if (b >= d->len)
            break;
        size_t e = sentence_end(d->text, b, d->len);
        struct span sp = { doc, b, e - b, 0 };
        if (usable(&g->df, d->text + b, e - b) && tw_vec_push(&g->spans, &sp) != 0)
            return tw_error_set(TW_ENOMEM, "out of memory");
        b = e;
    }
    return 0;
}

static int gen_prepare(struct gen *g)
{
    int rc = df_build(&g->df, g->docs, g->n_docs);
    g->pools = rc ? NULL : tw_calloc(g->n_docs, sizeof *g->pools);
    g->order = g->pools ? tw_malloc_array(g->n_docs, sizeof *g->order) : NULL;
    if (!rc && !g->order)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < g->n_docs; i++) {
        g->pools[i].begin = g->spans.len;
        rc = collect_sentences(g, i);
        g->pools[i].n = g->spans.len - g->pools[i].begin;
        g->order[i] = i;
    }
    return rc;
}

static void gen_free(struct gen *g)
{
    tw_map_free(&g->df.map);
    tw_vec_free(&g->spans);
    tw_vec_free(&g->picks);
    tw_free(g->pools);
    tw_free(g->order);
}

static void shuffle(size_t *v, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(rng, i), x = v[i - 1];
        v[i - 1] = v[j];
        v[j] = x;
    }
}

// Draws one unused sentence of document i at random into the picks.
static int draw_one(struct gen *g, size_t i)
{
    struct doc_pool *p = &g->pools[i];
    struct span *sp = g->spans.data;
    size_t at = p->begin + p->drawn, j = at + rng_below(&g->rng, p->n - p->drawn);
    struct span s = sp[j];
    sp[j] = sp[at];
    sp[at] = s;
    p->drawn++;
    s.slot = g->picks.len;
    return tw_vec_push(&g->picks, &s) ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
}

// Rounds over the documents in a fresh random order, one sentence from each document that
// has some left, so that the questions spread over the whole corpus.
static int draw_rounds(struct gen *g, size_t want)
{
    while (g->picks.len < want) {
        shuffle(g->order, g->n_docs, &g->rng);
        size_t before = g->picks.len;
        for (size_t k = 0; k < g->n_docs && g->picks.len < want; k++) {
            size_t i = g->order[k];
            if (g->pools[i].drawn == g->pools[i].n)
                continue;
            int rc = draw_one(g, i);
            if (rc)
                return rc;
        }
        if (g->picks.len == before)
            break; // every usable sentence is used
    }
    return 0;
}

// ---- Generator: writing the questions -------------------------------------------------------

static int cmp_pick(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->doc != y->doc)
        return x->doc < y->doc ? -1 : 1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

// The question of one pick into out[pick->slot]. Its random choices come from a stream of its
// own (seed and slot), so they do not depend on the order questions are written in.
static int write_question(struct gen *g, const tw_map *tf, const struct span *pick,
                          struct tw_eval_query *out)
{
    const struct tw_eval_doc *d = &g->docs[pick->doc];
    const char *author = d->author && *d->author ? d->author : NULL;
    uint64_t rng = g->seed ^ (pick->slot + 1) * 0xD1B54A32D192ED03ull;
    char *question, id[32];
    int rc = make_question(&g->df, tf, d->text + pick->off, pick->len, author, &rng, &question);
    if (rc)
        return rc;
    snprintf(id, sizeof id, "gen-%04zu", pick->slot + 1);
    const char *rel[1] = { d->uri };
    rc = query_fill(&out[pick->slot], id, question, author, rel, 1);
    tw_free(question);
    return rc;
}

// Writes every picked sentence's question into out (picks.len zeroed queries), a document at
// a time so that only one document's term frequencies are held.
static int write_questions(struct gen *g, struct tw_eval_query *out)
{
    struct span *p = g->picks.data;
    size_t n = g->picks.len;
    qsort(p, n, sizeof *p, cmp_pick);
    tw_map tf;
    tw_map_init(&tf, TW_MAP_STR);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const struct tw_eval_doc *d = &g->docs[p[i].doc];
        if (i == 0 || p[i].doc != p[i - 1].doc) {
            tw_map_free(&tf);
            rc = count_words_into(&tf, d->text, d->len, 0);
        }
        if (!rc)
            rc = write_question(g, &tf, &p[i], out);
    }
    tw_map_free(&tf);
    return rc;
}

int tw_eval_generate(const struct tw_eval_doc *docs, size_t n_docs, size_t want, uint64_t seed,
                     struct tw_eval_query **out, size_t *n)
{
    struct gen g = { .docs = docs, .n_docs = n_docs, .seed = seed, .rng = seed };
    tw_map_init(&g.df.map, TW_MAP_STR);
    tw_vec_init(&g.spans, sizeof(struct span));
    tw_vec_init(&g.picks, sizeof(struct span));
    int rc = want && n_docs ? gen_prepare(&g) : 0;
    if (!rc && want && n_docs)
        rc = draw_rounds(&g, want);
    struct tw_eval_query *q = NULL;
    size_t m = g.picks.len;
    if (!rc && m && !(q = tw_calloc(m, sizeof *q)))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc && m)
        rc = write_questions(&g, q);
    gen_free(&g);
    if (rc) {
        tw_eval_queries_free(q, m);
        return rc;
    }
    *out = q;
    *n = m;
    return 0;
}

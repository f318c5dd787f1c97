// Implements selfquery.h: the author matcher (each name split into words once, a question's
// words compared with every author's forms), the self-query and query-expansion prompts, and
// the readers of the LLM's answers (jansson finds and parses the JSON object; the pieces of
// an expansion are cleaned, checked and deduplicated).
#define _GNU_SOURCE
#include "rag/selfquery.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mem.h"
#include "text/utf8.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

// ---- words: runs of letters and digits; punctuation and space between them are ignored

struct word {
    const char *p;
    size_t len;
};

static int fold(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alnum(unsigned char c)
{
    return is_digit((char)c) || (fold(c) >= 'a' && fold(c) <= 'z');
}

// Narrows [*b, *e) to leave out ASCII space at both ends.
static void trim(const char **b, const char **e)
{
    while (*b < *e && is_space(**b))
        (*b)++;
    while (*e > *b && is_space((*e)[-1]))
        (*e)--;
}

// Bytes of punctuation or space at s (0: s is part of a word). Non-ASCII characters belong to
// words ("José"), except the Unicode punctuation that questions typed on phones carry (curly
// quotes and apostrophes, dashes, no-break space): they separate words as their ASCII forms
// do, so "Lincoln’s" reads as "Lincoln" "s" just like "Lincoln's".
static size_t sep_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return is_alnum(s[0]) ? 0 : 1;
    if (n >= 2 && s[0] == 0xC2 && s[1] == 0xA0)
        return 2;
    if (n >= 3 && s[0] == 0xE2 && s[1] == 0x80 &&
        (s[2] == 0x93 || s[2] == 0x94 || (s[2] >= 0x98 && s[2] <= 0x9D)))
        return 3;
    return 0;
}

// The next word of s[0, n) at or after *i; false at the end.
static bool next_word(const char *s, size_t n, size_t *i, struct word *w)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i, sl;
    while (k < n && (sl = sep_len(u + k, n - k)))
        k += sl;
    if (k == n) {
        *i = k;
        return false;
    }
    size_t b = k;
    while (k < n && !sep_len(u + k, n - k))
        k++;
    *w = (struct word){ s + b, k - b };
    *i = k;
    return true;
}

// The words of s[0, n); fills w when not NULL (room for the count a first call returned).
static size_t split_words(const char *s, size_t n, struct word *w)
{
    size_t count = 0, i = 0;
    struct word x;
    while (next_word(s, n, &i, &x)) {
        if (w)
            w[count] = x;
        count++;
    }
    return count;
}

static bool word_eq(struct word a, struct word b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (fold((unsigned char)a.p[i]) != fold((unsigned char)b.p[i]))
            return false;
    return true;
}

// w equals one of the lower-case words of list.
static bool word_in(struct word w, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (word_eq(w, (struct word){ list[i], strlen(list[i]) }))
            return true;
    return false;
}

// q[i, i + n) are the words w[0, n).
static bool seq_at(const struct word *q, size_t m, size_t i, const struct word *w, size_t n)
{
    if (i > m || n > m - i)
        return false;
    for (size_t k = 0; k < n; k++)
        if (!word_eq(q[i + k], w[k]))
            return false;
    return true;
}

// ---- authors and the forms of their names

// Words that belong to the last name when they stand before it ("Martin van Buren": the
// last name is "van Buren"), and suffixes that follow it ("Jr.": not part of the last name).
static const char *const particles[] = { "van", "von", "der", "den", "de",  "da", "di",
                                         "del", "du",  "la",  "le",  "ten", "ter" };
static const char *const suffixes[] = { "jr", "sr", "ii", "iii", "iv" };
// Titles that make "<title> <last name>" a level-2 form ("President Grant"); titles that are
// also common verbs ("judge", "miss") are left out: "we miss Lincoln" names no title.
static const char *const titles[] = {
    "president", "pres",      "senator", "sen",     "governor", "gov",         "general",
    "gen",       "secretary", "mr",      "mrs",     "ms",       "dr",          "professor",
    "prof",      "justice",   "mayor",   "speaker", "rep",      "congressman", "congresswoman"
};

struct author {
    struct word *w; // the name's words, pointing into the copy stored after them (one block)
    size_t n_w;
    size_t last, end; // the last name is w[last, end); w[0] the first name when last > 0
};

struct tw_authors {
    struct author *au;
    size_t n;
};

// The forms of a name (selfquery.h lists them) and their levels. A last name that is also a
// common word ("Ford", "Grant", "Carter", "Bush", "Washington" the city) matches as that word
// does: level 1 only, and whole words only ("Granted" is not "Grant"); the LLM's answer,
// when valid, comes first.
enum form { F_FULL, F_FIRST_LAST, F_INITIALS, F_ACRONYM, F_TITLE_LAST, F_LAST, N_FORMS };
static const int form_level[N_FORMS] = { 3, 2, 2, 2, 2, 1 };

static void name_parts(struct author *au)
{
    size_t end = au->n_w;
    if (end >= 3 && word_in(au->w[end - 1], suffixes, N_OF(suffixes)))
        end--;
    size_t last = end ? end - 1 : 0;
    while (last >= 2 && word_in(au->w[last - 1], particles, N_OF(particles)))
        last--;
    au->last = last;
    au->end = end;
}

// The copy of the name and its words share one block, so an author is one allocation.
static int author_init(struct author *au, const char *name)
{
    size_t len = strlen(name), n_w = split_words(name, len, NULL), size;
    if (tw_mul_overflow(n_w, sizeof(struct word), &size) ||
        tw_add_overflow(size, len + 1, &size) || !(au->w = tw_malloc(size)))
        return tw_error_set(TW_ENOMEM, "author \"%s\": out of memory", name);
    char *copy = (char *)(au->w + n_w);
    memcpy(copy, name, len + 1);
    au->n_w = split_words(copy, len, au->w);
    name_parts(au);
    return 0;
}

int tw_authors_new(const char *const *full_names, size_t n, tw_authors **out)
{
    tw_authors *a = tw_calloc(1, sizeof *a);
    if (!a || (n && !(a->au = tw_calloc(n, sizeof *a->au)))) {
        tw_free(a);
        return tw_error_set(TW_ENOMEM, "authors: out of memory for %zu names", n);
    }
    a->n = n;
    for (size_t i = 0; i < n; i++) {
        int rc = author_init(&a->au[i], full_names[i] ? full_names[i] : "");
        if (rc) {
            tw_authors_free(a);
            return rc;
        }
    }
    *out = a;
    return 0;
}

void tw_authors_free(tw_authors *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        tw_free(a->au[i].w);
    tw_free(a->au);
    tw_free(a);
}

// The k-th name word's initial is the ASCII letter c (upper case only when caps).
static bool initial_is(const struct author *au, size_t k, char c, bool caps)
{
    unsigned char h = (unsigned char)au->w[k].p[0];
    if (h >= 0x80 || (caps && c >= 'a' && c <= 'z'))
        return false;
    return fold(h) == fold((unsigned char)c);
}

// The acronym of the name's words (suffix left out) at q[i]: one word ("FDR") or a run of
// one-letter words ("F. D. R."). In a question it must be written in capitals: a lower-case
// three-letter word is usually a word ("the" would name a Thomas Hugh Evans).
static size_t acronym_at(const struct author *au, const struct word *q, size_t m, size_t i,
                         bool caps)
{
    size_t n = au->end;
    if (n < 3)
        return 0;
    if (q[i].len == n) {
        for (size_t k = 0; k < n; k++)
            if (!initial_is(au, k, q[i].p[k], caps))
                return 0;
        return 1;
    }
    if (n > m - i)
        return 0;
    for (size_t k = 0; k < n; k++)
        if (q[i + k].len != 1 || !initial_is(au, k, q[i + k].p[0], caps))
            return 0;
    return n;
}

// The initials of the first and middle names, then the last name ("F. D. Roosevelt"). Two
// initials at least: a single one would read "a Johnson" as Andrew Johnson.
static size_t initials_at(const struct author *au, const struct word *q, size_t m, size_t i)
{
    if (au->last < 2 || au->last > m - i)
        return 0;
    for (size_t k = 0; k < au->last; k++)
        if (q[i + k].len != 1 || !initial_is(au, k, q[i + k].p[0], false))
            return 0;
    size_t n_last = au->end - au->last;
    return seq_at(q, m, i + au->last, au->w + au->last, n_last) ? au->last + n_last : 0;
}

// The number of words of q, from q[i] (i < m), that form f of au matches; 0: no match there.
static size_t form_at(const struct author *au, enum form f, const struct word *q, size_t m,
                      size_t i, bool caps)
{
    const struct word *last = au->w + au->last;
    size_t n_last = au->end - au->last;
    switch (f) {
    case F_FULL:
        return seq_at(q, m, i, au->w, au->n_w) ? au->n_w : 0;
    case F_FIRST_LAST:
        if (au->last == 0 || !word_eq(q[i], au->w[0]))
            return 0;
        return seq_at(q, m, i + 1, last, n_last) ? 1 + n_last : 0;
    case F_INITIALS:
        return initials_at(au, q, m, i);
    case F_ACRONYM:
        return acronym_at(au, q, m, i, caps);
    case F_TITLE_LAST:
        if (!word_in(q[i], titles, N_OF(titles)))
            return 0;
        return seq_at(q, m, i + 1, last, n_last) ? 1 + n_last : 0;
    case F_LAST:
        return seq_at(q, m, i, last, n_last) ? n_last : 0;
    default:
        return 0;
    }
}

// The strongest level at which au is named anywhere in q (0: not named). The header's rule
// that a form inside a longer, stronger match of another author does not count needs no code
// here: such a form is weaker than that match, so it never reaches the question's strongest
// level, the only one returned.
static int level_in(const struct author *au, const struct word *q, size_t m)
{
    int best = 0;
    if (au->n_w == 0)
        return 0;
    for (size_t i = 0; i < m && best < 3; i++)
        for (int f = 0; f < N_FORMS; f++)
            if (form_level[f] > best && form_at(au, (enum form)f, q, m, i, true))
                best = form_level[f];
    return best;
}

// The strongest level of au's forms of level 2 or 3 that equal q[0, m) as a whole (0: none).
static int level_exact(const struct author *au, const struct word *q, size_t m)
{
    int best = 0;
    if (au->n_w == 0)
        return 0;
    for (int f = 0; f < N_FORMS; f++)
        if (form_level[f] >= 2 && form_level[f] > best &&
            form_at(au, (enum form)f, q, m, 0, false) == m)
            best = form_level[f];
    return best;
}

// Fills lv[j] with author j's level in q; returns the strongest.
static int levels(const tw_authors *a, const struct word *q, size_t m, unsigned char *lv)
{
    int best = 0;
    for (size_t j = 0; j < a->n; j++) {
        lv[j] = (unsigned char)level_in(&a->au[j], q, m);
        if (lv[j] > best)
            best = lv[j];
    }
    return best;
}

int tw_authors_match(const tw_authors *a, const char *question, size_t **out, size_t *n)
{
    size_t len = strlen(question), m = split_words(question, len, NULL), k = 0;
    struct word *q = NULL;
    unsigned char *lv = NULL;
    size_t *idx = NULL;
    int rc = 0;
    if (m && a->n) {
        q = tw_malloc_array(m, sizeof *q);
        lv = tw_malloc(a->n);
        if (!q || !lv) {
            rc = tw_error_set(TW_ENOMEM, "authors: out of memory matching a question");
            goto done;
        }
        split_words(question, len, q);
        int best = levels(a, q, m, lv);
        for (size_t j = 0; best && j < a->n; j++)
            k += lv[j] == best;
        if (k && !(idx = tw_malloc_array(k, sizeof *idx))) {
            rc = tw_error_set(TW_ENOMEM, "authors: out of memory matching a question");
            goto done;
        }
        for (size_t j = 0, t = 0; t < k; j++)
            if (lv[j] == best)
                idx[t++] = j;
    }
    *out = idx;
    *n = k;
done:
    tw_free(q);
    tw_free(lv);
    return rc;
}

// No form of a real name has this many words; a longer input is no name (and needs no heap).
#define FIND_MAX_WORDS 64

long tw_authors_find(const tw_authors *a, const char *name)
{
    struct word q[FIND_MAX_WORDS];
    size_t len = strlen(name), m = split_words(name, len, NULL);
    if (m == 0 || m > FIND_MAX_WORDS)
        return -1;
    split_words(name, len, q);
    int best = 0;
    long found = -1;
    bool tie = false;
    for (size_t j = 0; j < a->n; j++) {
        int lv = level_exact(&a->au[j], q, m);
        if (lv > best) {
            best = lv;
            found = (long)j;
            tie = false;
        } else if (lv && lv == best) {
            tie = true;
        }
    }
    return tie ? -1 : found;
}

// ---- self-query

int tw_selfquery_prompt(const char *question, const char *const *authors, size_t n, tw_str *out)
{
    size_t len0 = tw_str_len(out);
    bool list = n > 0 && n <= 64;
    int rc = tw_str_puts(
        out, "Find the search filters in the question at the end. Answer with one JSON object "
             "and nothing else, of exactly this form:\n"
             "{\"author\": NAME or null, \"category\": \"article\" | \"post\" | \"repository\" "
             "or null}\n");
    if (!rc && list)
        rc = tw_str_puts(out, "- author: the person whose writing the question asks about, as "
                              "a JSON string copied exactly from the list of authors below; "
                              "null when the question names no one of that list.\n");
    else if (!rc)
        rc = tw_str_puts(out, "- author: the full name of the person whose writing the "
                              "question asks about, as a JSON string; null when the question "
                              "names no one.\n");
    if (!rc)
        rc = tw_str_puts(out, "- category: \"article\", \"post\" or \"repository\" when the "
                              "question asks for that kind of document; null otherwise.\n");
    if (!rc && list)
        rc = tw_str_puts(out, "\nAuthors:\n");
    for (size_t i = 0; !rc && list && i < n; i++)
        rc = tw_str_printf(out, "- %s\n", authors[i]);
    if (!rc)
        rc = tw_str_printf(out, "\nQuestion: %s", question);
    if (rc)
        tw_str_truncate(out, len0);
    return rc;
}

// The category a word names (0 article, 1 post, 2 repository), -1 none.
static int category_of(struct word w)
{
    static const struct {
        const char *word;
        int category;
    } names[] = { { "article", 0 },    { "articles", 0 },     { "post", 1 }, { "posts", 1 },
                  { "repository", 2 }, { "repositories", 2 }, { "repo", 2 }, { "repos", 2 } };
    for (size_t i = 0; i < N_OF(names); i++)
        if (word_eq(w, (struct word){ names[i].word, strlen(names[i].word) }))
            return names[i].category;
    return -1;
}

int tw_selfquery_category(const char *question)
{
    size_t len = strlen(question), i = 0;
    struct word w;
    int found = -1;
    while (next_word(question, len, &i, &w)) {
        int c = category_of(w);
        size_t b = (size_t)(w.p - question);
        // "post-war" and "re-post" are other words than "post".
        if (c < 0 || (b > 0 && question[b - 1] == '-') || (i < len && question[i] == '-'))
            continue;
        if (found >= 0 && found != c)
            return -1;
        found = c;
    }
    return found;
}

// Records why the answer is invalid; returns false.
__attribute__((format(printf, 2, 3))) static bool invalid(struct tw_selfquery *r, const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    r->valid = false;
    return false;
}

// At most max bytes of the UTF-8 string s, cut at a character boundary, so that the error
// (which goes into the JSON trace) stays valid UTF-8.
static int utf8_prefix(const char *s, int max)
{
    int n = (int)strnlen(s, (size_t)max + 1);
    if (n <= max)
        return n;
    n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    return n;
}

// Reads obj[key], which must be present and a string or null (*s NULL for null).
static bool member(json_t *obj, const char *key, const char **s, struct tw_selfquery *r)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return invalid(r, "missing \"%s\"", key);
    if (!json_is_null(v) && !json_is_string(v))
        return invalid(r, "\"%s\": expected a string or null, got %s", key, tw_json_type_name(v));
    *s = json_string_value(v);
    return true;
}

static bool read_author(const tw_authors *a, json_t *obj, struct tw_selfquery *r)
{
    const char *s = NULL;
    if (!member(obj, "author", &s, r))
        return false;
    if (s && (r->author = tw_authors_find(a, s)) < 0)
        return invalid(r, "\"author\": \"%.*s\" is not one of the known authors",
                       utf8_prefix(s, 80), s);
    return true;
}

static bool read_category(json_t *obj, struct tw_selfquery *r)
{
    const char *s = NULL;
    if (!member(obj, "category", &s, r))
        return false;
    if (!s)
        return true;
    const char *b = s, *e = s + strlen(s);
    trim(&b, &e);
    // The whole value must be one of the words: "blog post" is no category.
    if ((r->category = category_of((struct word){ b, (size_t)(e - b) })) < 0)
        return invalid(r, "\"category\": \"%.*s\" is not article, post or repository",
                       utf8_prefix(s, 40), s);
    return true;
}

// The first JSON object in s[0, len): jansson is tried at each '{' and stops after the value
// (JSON_DISABLE_EOF_CHECK), so text or a code fence after the object does not matter. *obj
// is NULL when there is none. tw_json_parse_flags, unlike a bare json_loadb, tells a failed
// allocation from bad JSON.
static int first_object(const char *s, size_t len, json_t **obj)
{
    *obj = NULL;
    if (!s || !len)
        return 0;
    for (const char *p = s; (p = memchr(p, '{', len - (size_t)(p - s))) != NULL; p++) {
        json_t *v;
        int rc = tw_json_parse_flags("self-query answer", p, len - (size_t)(p - s),
                                     JSON_DISABLE_EOF_CHECK, &v);
        if (rc == TW_ENOMEM)
            return rc;
        if (rc == 0) { // it starts with '{': an object
            *obj = v;
            return 0;
        }
    }
    return 0;
}

int tw_selfquery_parse(const tw_authors *a, const char *answer, size_t len,
                       struct tw_selfquery *out)
{
    json_t *obj;
    int rc = first_object(answer, len, &obj);
    if (rc)
        return rc;
    struct tw_selfquery r = { .author = -1, .category = -1 };
    if (!obj)
        invalid(&r, "no JSON object in the answer");
    else if (read_author(a, obj, &r) && read_category(obj, &r))
        r.valid = true;
    if (!r.valid) {
        r.author = -1;
        r.category = -1;
    }
    json_decref(obj);
    *out = r;
    return 0;
}

// ---- query expansion

#define SEP_LEN          (sizeof TW_EXPAND_SEPARATOR - 1)
#define EXPAND_MAX_BYTES 1000

int tw_expand_prompt(const char *question, int n, tw_str *out)
{
    if (n < 2)
        return tw_error_set(TW_EINVAL, "query expansion: %d queries asked for, at least 2 needed",
                            n);
    size_t len0 = tw_str_len(out);
    int rc;
    if (n == 2)
        rc = tw_str_puts(out, "Write one other version of the question at the end.");
    else
        rc = tw_str_printf(out, "Write %d other versions of the question at the end.", n - 1);
    if (!rc)
        rc = tw_str_puts(out, " Each version asks for the same thing in different words, so "
                              "that a search which ranks passages by their vector distance to "
                              "the question also finds passages that the original wording "
                              "would miss. Write only the questions, with no numbers and no "
                              "comments.\n");
    if (!rc && n > 2)
        rc = tw_str_printf(out,
                           "Put a line with %s between two versions:\n"
                           "first version\n%s\nsecond version\n",
                           TW_EXPAND_SEPARATOR, TW_EXPAND_SEPARATOR);
    if (!rc)
        rc = tw_str_printf(out, "\nQuestion: %s", question);
    if (rc)
        tw_str_truncate(out, len0);
    return rc;
}

// Removes a list marker: "1." or "12)" (not "1.5 million"), "-", "*" or "•" before a space.
static void strip_marker(const char **b, const char **e)
{
    const char *p = *b;
    while (p < *e && p - *b < 3 && is_digit(*p))
        p++;
    if (p > *b) {
        if (p == *e || (*p != '.' && *p != ')'))
            return;
        p++;
        if (p < *e && is_digit(*p))
            return;
    } else if (p < *e && (*p == '-' || *p == '*')) {
        p++;
        if (p < *e && !is_space(*p))
            return;
    } else if (*e - p >= 3 && memcmp(p, "\xE2\x80\xA2", 3) == 0) {
        p += 3;
    } else {
        return;
    }
    *b = p;
    trim(b, e);
}

// Removes one pair of quotes around the piece: "..." '...' `...` “...” ‘...’.
static void strip_quotes(const char **b, const char **e)
{
    static const char *const pairs[][2] = { { "\"", "\"" },
                                            { "'", "'" },
                                            { "`", "`" },
                                            { "\xE2\x80\x9C", "\xE2\x80\x9D" },
                                            { "\xE2\x80\x98", "\xE2\x80\x99" } };
    size_t n = (size_t)(*e - *b);
    for (size_t i = 0; i < N_OF(pairs); i++) {
        size_t lo = strlen(pairs[i][0]), lc = strlen(pairs[i][1]);
        if (n >= lo + lc && memcmp(*b, pairs[i][0], lo) == 0 &&
            memcmp(*e - lc, pairs[i][1], lc) == 0) {
            *b += lo;
            *e -= lc;
            trim(b, e);
            return;
        }
    }
}

// a[0, na) and b[0, nb) are the same text when ASCII case and space are ignored.
static bool same_text(const char *a, size_t na, const char *b, size_t nb)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < na && is_space(a[i]))
            i++;
        while (j < nb && is_space(b[j]))
            j++;
        if (i == na || j == nb)
            return i == na && j == nb;
        if (fold((unsigned char)a[i++]) != fold((unsigned char)b[j++]))
            return false;
    }
}

// The piece [b, e), cleaned, is a query to keep: not empty (nor punctuation alone, as a "---"
// rule is), not too long, UTF-8 without NUL bytes (it becomes a C string), and neither the
// question nor one of the kept queries.
static bool keep_piece(const char *question, char *const *kept, size_t k, const char *b,
                       const char *e)
{
    size_t n = (size_t)(e - b);
    if (n == 0 || n > EXPAND_MAX_BYTES || memchr(b, '\0', n) || !tw_utf8_valid(b, n) ||
        split_words(b, n, NULL) == 0)
        return false;
    if (same_text(b, n, question, strlen(question)))
        return false;
    for (size_t i = 0; i < k; i++)
        if (same_text(b, n, kept[i], strlen(kept[i])))
            return false;
    return true;
}

// Where the piece starting at p ends: at the next separator or, without separators, the next
// line break.
static const char *piece_end(const char *p, const char *end, bool sep)
{
    const char *q = sep ? memmem(p, (size_t)(end - p), TW_EXPAND_SEPARATOR, SEP_LEN)
                        : memchr(p, '\n', (size_t)(end - p));
    return q ? q : end;
}

static size_t count_pieces(const char *s, const char *end, bool sep)
{
    size_t n = 1;
    for (const char *e; (e = piece_end(s, end, sep)) != end; s = e + (sep ? SEP_LEN : 1))
        n++;
    return n;
}

void tw_expand_free(char **queries, size_t n)
{
    if (!queries)
        return;
    for (size_t i = 0; i < n; i++)
        tw_free(queries[i]);
    tw_free(queries);
}

int tw_expand_parse(const char *question, const char *answer, size_t len, size_t max, char ***out,
                    size_t *n_out)
{
    if (!answer || !len || !max) {
        *out = NULL;
        *n_out = 0;
        return 0;
    }
    const char *end = answer + len;
    bool sep = memmem(answer, len, TW_EXPAND_SEPARATOR, SEP_LEN) != NULL;
    size_t cap = count_pieces(answer, end, sep), k = 0;
    if (cap > max)
        cap = max;
    char **q = tw_malloc_array(cap, sizeof *q);
    if (!q)
        return tw_error_set(TW_ENOMEM, "query expansion: out of memory");
    for (const char *p = answer; k < cap;) {
        const char *e = piece_end(p, end, sep), *b = p, *t = e;
        trim(&b, &t);
        strip_marker(&b, &t);
        strip_quotes(&b, &t);
        if (keep_piece(question, q, k, b, t)) {
            if (!(q[k] = tw_strndup(b, (size_t)(t - b)))) {
                tw_expand_free(q, k);
                return tw_error_set(TW_ENOMEM, "query expansion: out of memory");
            }
            k++;
        }
        if (e == end)
            break;
        p = e + (sep ? SEP_LEN : 1);
    }
    if (k == 0) {
        tw_free(q);
        q = NULL;
    }
    *out = q;
    *n_out = k;
    return 0;
}

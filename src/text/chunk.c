// Implements chunk.h. The sentence and code chunkers cut the text into units (whole sentences
// or sections, or the words, blocks, lines and pieces of one that is too long), each with its
// byte range and code point offsets; a packer then groups consecutive units into chunks of
// at most max code points: greedily for code, by dynamic programming for prose.
#include "text/chunk.h"

#include <assert.h>
#include <string.h>
#include <utf8proc.h>

#include "base/error.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "text/utf8.h"

void tw_chunk_opts_init(struct tw_chunk_opts *o)
{
    memset(o, 0, sizeof *o);
    o->post_window = 250;
    o->post_overlap = 25;
    o->repo_window = 1500;
    o->repo_overlap = 100;
    o->min_chars = 1000;
    o->max_chars = 2000;
    o->code_max_chars = 2000;
    o->repo_tokens = false;
}

static int push_chunk(tw_vec *out, const char *text, size_t start, size_t end, size_t n_chars,
                      size_t tok_start, size_t tok_end)
{
    struct tw_chunk c;
    memset(&c, 0, sizeof c);
    c.start = start;
    c.end = end;
    c.n_chars = n_chars;
    c.tok_start = tok_start;
    c.tok_end = tok_end;
    uint8_t d[TW_SHA256_LEN];
    tw_sha256(text + start, end - start, d);
    tw_sha256_hex(d, c.id);
    return tw_vec_push(out, &c);
}

// ---- token windows

static int check_spans(size_t len, const struct tw_span *spans, size_t n)
{
    size_t prev_start = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tw_span *s = &spans[i];
        if (s->start > s->end || s->end > len)
            return tw_error_set(TW_EINVAL,
                                "token span %zu [%u, %u) is not inside the text (%zu bytes)", i,
                                s->start, s->end, len);
        if (s->start == s->end)
            continue;
        if (s->start < prev_start)
            return tw_error_set(TW_EINVAL,
                                "token span %zu starts at %u, before the span before it (%zu)", i,
                                s->start, prev_start);
        prev_start = s->start;
    }
    return 0;
}

int tw_chunk_tokens(const char *text, size_t len, const struct tw_span *spans, size_t n_spans,
                    size_t window, size_t overlap, tw_vec *out)
{
    if (window == 0 || window <= overlap)
        return tw_error_set(TW_EINVAL,
                            "chunk: a token window of %zu must be larger than its overlap of %zu",
                            window, overlap);
    if (n_spans && !spans)
        return tw_error_set(TW_EINVAL, "chunk: %zu token spans but no array", n_spans);
    int rc = check_spans(len, spans, n_spans);
    if (rc)
        return tw_error_prefix("chunk");
    size_t old_len = out->len, step = window - overlap;
    for (size_t i = 0; i < n_spans && rc == 0; i += step) {
        size_t e = n_spans - i > window ? i + window : n_spans;
        size_t lo = SIZE_MAX, hi = 0;
        for (size_t k = i; k < e; k++) {
            if (spans[k].start == spans[k].end)
                continue;
            if (spans[k].start < lo)
                lo = spans[k].start;
            if (spans[k].end > hi)
                hi = spans[k].end;
        }
        if (lo < hi)
            rc = push_chunk(out, text, lo, hi, tw_clean_count_chars(text + lo, hi - lo), i, e);
        if (e == n_spans)
            break;
    }
    if (rc) {
        tw_vec_resize(out, old_len);
        return tw_error_prefix("chunk: token windows");
    }
    return 0;
}

// ---- characters

// The code point at t[i] (i < len); U+FFFD for an invalid subpart (text/utf8.h). *next: the
// offset after it.
static int32_t decode_at(const char *t, size_t len, size_t i, size_t *next)
{
    uint32_t c;
    *next = i + tw_utf8_decode(t + i, len - i, &c);
    return (int32_t)c;
}

// Bytes of the whitespace character at text[i] (ASCII blanks, Zs, Zl, Zp, NEL), 0 if none.
static size_t space_len(const char *t, size_t len, size_t i)
{
    unsigned char b = (unsigned char)t[i];
    if (b < 0x80)
        return b == ' ' || (b >= '\t' && b <= '\r');
    size_t j;
    int32_t c = decode_at(t, len, i, &j);
    utf8proc_category_t cat = utf8proc_category(c);
    if (cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL ||
        cat == UTF8PROC_CATEGORY_ZP || c == 0x85)
        return j - i;
    return 0;
}

// The end of the whitespace from i; *para tells whether it holds a paragraph break (two line
// feeds, or a PARAGRAPH SEPARATOR).
static size_t skip_space(const char *t, size_t len, size_t i, bool *para)
{
    int nl = 0;
    size_t n;
    while (i < len && (n = space_len(t, len, i)) != 0) {
        if (t[i] == '\n')
            nl++;
        else if (n == 3 && memcmp(t + i, "\xE2\x80\xA9", 3) == 0)
            nl += 2;
        i += n;
    }
    *para = nl >= 2;
    return i;
}

static size_t next_cp(const char *t, size_t len, size_t i)
{
    if ((unsigned char)t[i] < 0x80)
        return i + 1;
    size_t j;
    decode_at(t, len, i, &j);
    return j;
}

// Bytes of the closing (close != 0) or opening quote or bracket at t[i], 0 if none.
static size_t quote_len(const char *t, size_t len, size_t i, int close)
{
    unsigned char b = (unsigned char)t[i];
    if (b < 0x80) {
        if (b == '"' || b == '\'')
            return 1;
        return close ? (b == ')' || b == ']') : (b == '(' || b == '[');
    }
    size_t j;
    int32_t c = decode_at(t, len, i, &j);
    if (close)
        return c == 0x201D || c == 0x2019 || c == 0xBB || c == 0x203A ? j - i : 0;
    return c == 0x201C || c == 0x2018 || c == 0xAB || c == 0x2039 ? j - i : 0;
}

static bool is_upper_at(const char *t, size_t len, size_t i)
{
    size_t j;
    utf8proc_category_t cat = utf8proc_category(decode_at(t, len, i, &j));
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT;
}

static bool is_letter_cp(int32_t c)
{
    utf8proc_category_t cat = utf8proc_category(c);
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

// ---- sentences

static const char *const abbreviations[] = {
    "mr",  "mrs",  "ms",     "mx",  "dr",   "prof", "st",   "sr",   "jr",  "mt",     "ft",  "rt",
    "gen", "gov",  "sen",    "rep", "rev",  "hon",  "pres", "capt", "col", "lt",     "sgt", "maj",
    "adm", "cmdr", "messrs", "mme", "mlle", "vs",   "cf",   "viz",  "al",  "approx", "ca",
};

// Single letters joined by dots: "J", "U.S", "e.g", "U.S.A".
static bool is_initialism(const char *w, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j;
        if (!is_letter_cp(decode_at(w, n, i, &j)))
            return false;
        if (j == n)
            return true;
        if (w[j] != '.')
            return false;
        i = j + 1;
    }
    return false; // empty, or a trailing dot
}

// Whether the word that ends at the "." at t[dot] is an abbreviation (chunk.h); the word
// starts after whitespace, an opening quote or bracket, or at s.
static bool ends_abbreviation(const char *t, size_t s, size_t dot)
{
    size_t w = dot;
    while (w > s) {
        unsigned char b = (unsigned char)t[w - 1];
        if (b == ' ' || (b >= '\t' && b <= '\r') || b == '(' || b == '[' || b == '"' || b == '\'')
            break;
        w--;
    }
    size_t k;
    while (w < dot && (k = quote_len(t, dot, w, 0)) != 0)
        w += k;
    size_t n = dot - w;
    if (n == 0)
        return false;
    for (size_t a = 0; a < sizeof abbreviations / sizeof abbreviations[0]; a++) {
        const char *ab = abbreviations[a];
        if (strlen(ab) != n)
            continue;
        size_t i = 0;
        while (i < n && ((unsigned char)t[w + i] | 0x20) == (unsigned char)ab[i])
            i++;
        if (i == n)
            return true;
    }
    return is_initialism(t + w, n);
}

static int push_range(tw_vec *out, size_t start, size_t end)
{
    if (start >= end)
        return 0;
    struct tw_text_range r = { start, end };
    return tw_vec_push(out, &r);
}

int tw_sentence_split(const char *text, size_t len, tw_vec *out)
{
    size_t old_len = out->len;
    bool para;
    size_t i = skip_space(text, len, 0, &para);
    size_t s = i, last = i; // the sentence's start; the end of its last non-blank character
    int rc = 0;
    while (i < len && rc == 0) {
        if (space_len(text, len, i)) {
            size_t j = skip_space(text, len, i, &para);
            if (para) {
                rc = push_range(out, s, last);
                s = last = j;
            }
            i = j;
            continue;
        }
        char c = text[i];
        if (c != '.' && c != '!' && c != '?') {
            i = last = next_cp(text, len, i);
            continue;
        }
        size_t r = i, q, k;
        while (r < len && (text[r] == '.' || text[r] == '!' || text[r] == '?'))
            r++;
        for (q = r; q < len && (k = quote_len(text, len, q, 1)) != 0;)
            q += k;
        last = q;
        if (q < len && space_len(text, len, q)) {
            size_t m = skip_space(text, len, q, &para), o = m;
            while (o < len && (k = quote_len(text, len, o, 0)) != 0)
                o += k;
            // The end of the text and paragraph breaks are handled as whitespace above.
            if (m < len && !para && o < len && is_upper_at(text, len, o) &&
                !(c == '.' && r == i + 1 && ends_abbreviation(text, s, i))) {
                rc = push_range(out, s, q);
                s = last = i = m;
                continue;
            }
        }
        i = q;
    }
    if (rc == 0)
        rc = push_range(out, s, last);
    if (rc) {
        tw_vec_resize(out, old_len);
        return tw_error_prefix("sentences");
    }
    return 0;
}

// ---- units and the packer

struct unit {
    size_t start, end; // bytes
    size_t cs, ce;     // code point offsets of start and end in the text
    bool split;        // a part of a sentence or section longer than the maximum
    bool first;        // the first unit of its sentence or section
};

struct group {
    size_t first, last; // units [first, last]
};

// Code point offsets of byte offsets asked in increasing order.
struct cursor {
    const char *t;
    size_t len, pos, cp;
};

static size_t cp_at(struct cursor *c, size_t byte)
{
    assert(byte >= c->pos);
    while (c->pos < byte) {
        c->pos = next_cp(c->t, c->len, c->pos);
        c->cp++;
    }
    return c->cp;
}

static int push_unit(tw_vec *units, size_t start, size_t end, size_t cs, size_t ce, bool split,
                     bool first)
{
    struct unit u = { start, end, cs, ce, split, first };
    return tw_vec_push(units, &u);
}

// Units for text[start, end) (code points [cs, ce)), a word or line longer than max: the
// fewest pieces of at most max code points, of equal sizes (to one), cut between code points;
// blanks at the cuts are left out, so a piece never starts or ends with one (a line's own
// indentation excepted).
static int push_pieces(tw_vec *units, const char *t, size_t start, size_t end, size_t cs,
                       size_t ce, size_t max, bool *first)
{
    size_t total = ce - cs, k = (total + max - 1) / max;
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        size_t want = total / k + (i < total % k), p = start;
        for (size_t n = 0; n < want && p < end; n++)
            p = next_cp(t, end, p);
        size_t a = start, ac = cs, e = p, ec = cs + want;
        while (i > 0 && a < e && (t[a] == ' ' || t[a] == '\t')) {
            a++;
            ac++;
        }
        while (e > a && (t[e - 1] == ' ' || t[e - 1] == '\t')) {
            e--;
            ec--;
        }
        if (a < e) {
            rc = push_unit(units, a, e, ac, ec, true, *first);
            *first = false;
        }
        start = p;
        cs += want;
    }
    return rc;
}

static size_t gsize(const struct unit *u, size_t a, size_t b)
{
    return u[b].ce - u[a].cs;
}

// Code: packs units greedily into groups of at most max code points; a unit that starts a
// section too long for one chunk starts a new group (chunk.h, tw_chunk_code).
static int pack_greedy(const struct unit *u, size_t n, size_t max, tw_vec *groups)
{
    int rc = 0;
    size_t a = 0;
    for (size_t k = 1; k <= n && rc == 0; k++) {
        if (k == n || (u[k].split && u[k].first) || gsize(u, a, k) > max) {
            struct group g = { a, k - 1 };
            rc = tw_vec_push(groups, &g);
            a = k;
        }
    }
    return rc;
}

struct cost {
    size_t shorts; // chunks under the minimum
    size_t cuts;   // chunk boundaries inside a sentence (between the words of a long one)
    size_t chunks;
};

static int cost_cmp(const struct cost *a, const struct cost *b)
{
    if (a->shorts != b->shorts)
        return a->shorts < b->shorts ? -1 : 1;
    if (a->cuts != b->cuts)
        return a->cuts < b->cuts ? -1 : 1;
    if (a->chunks != b->chunks)
        return a->chunks < b->chunks ? -1 : 1;
    return 0;
}

// Prose: the packing of units into groups of at most max code points that has the fewest
// groups under min, then the fewest boundaries inside a sentence, then the fewest groups;
// among equals, the one whose groups are the fullest from the start (chunk.h). Dynamic
// programming over suffixes: c[i] is the best cost of packing units [i, n) and next[i] the
// end of the first group of that packing. O(n * units per group).
static int pack_best(const struct unit *u, size_t n, size_t min, size_t max, tw_vec *groups)
{
    struct cost *c = tw_malloc_array(n + 1, sizeof *c);
    size_t *next = tw_malloc_array(n + 1, sizeof *next);
    int rc = 0;
    if (!c || !next) {
        rc = tw_error_set(TW_ENOMEM, "packing %zu sentences: out of memory", n);
        goto done;
    }
    memset(&c[n], 0, sizeof c[n]);
    for (size_t i = n; i-- > 0;) {
        struct cost best = { 0 };
        for (size_t b = i; b < n && gsize(u, i, b) <= max; b++) {
            struct cost k = c[b + 1];
            k.shorts += gsize(u, i, b) < min;
            k.cuts += b + 1 < n && u[b + 1].split && !u[b + 1].first;
            k.chunks++;
            if (b == i || cost_cmp(&k, &best) <= 0) {
                best = k;
                next[i] = b + 1;
            }
        }
        c[i] = best;
    }
    for (size_t i = 0; i < n && rc == 0; i = next[i]) {
        struct group g = { i, next[i] - 1 };
        rc = tw_vec_push(groups, &g);
    }
done:
    tw_free(c);
    tw_free(next);
    return rc;
}

// Packs the units (prose: pack_best; code: pack_greedy, min unused) and appends the chunks.
static int emit_groups(const char *text, const struct unit *u, size_t n, bool prose, size_t min,
                       size_t max, tw_vec *out)
{
    if (n == 0)
        return 0;
    tw_vec groups;
    tw_vec_init(&groups, sizeof(struct group));
    int rc = prose ? pack_best(u, n, min, max, &groups) : pack_greedy(u, n, max, &groups);
    const struct group *g = groups.data;
    for (size_t i = 0; i < groups.len && rc == 0; i++) {
        const struct unit *a = &u[g[i].first], *b = &u[g[i].last];
        rc = push_chunk(out, text, a->start, b->end, b->ce - a->cs, 0, 0);
    }
    tw_vec_free(&groups);
    return rc;
}

// ---- sentence chunks

// Units of one sentence longer than max: its words, and pieces of the words longer than max.
static int push_words(tw_vec *units, const char *t, const struct tw_text_range *r,
                      struct cursor *cur, size_t max)
{
    bool first = true;
    int rc = 0;
    size_t i = r->start, n;
    while (i < r->end && rc == 0) {
        while (i < r->end && (n = space_len(t, r->end, i)) != 0)
            i += n;
        size_t w = i;
        while (i < r->end && space_len(t, r->end, i) == 0)
            i = next_cp(t, r->end, i);
        if (w == i)
            break;
        size_t cs = cp_at(cur, w), ce = cp_at(cur, i);
        if (ce - cs <= max) {
            rc = push_unit(units, w, i, cs, ce, true, first);
            first = false;
        } else {
            rc = push_pieces(units, t, w, i, cs, ce, max, &first);
        }
    }
    return rc;
}

int tw_chunk_sentences(const char *text, size_t len, size_t min_chars, size_t max_chars,
                       tw_vec *out)
{
    if (max_chars == 0 || min_chars > max_chars)
        return tw_error_set(TW_EINVAL, "chunk: sentence chunks of %zu to %zu characters",
                            min_chars, max_chars);
    size_t old_len = out->len;
    tw_vec sents, units;
    tw_vec_init(&sents, sizeof(struct tw_text_range));
    tw_vec_init(&units, sizeof(struct unit));
    struct cursor cur = { text, len, 0, 0 };
    int rc = tw_sentence_split(text, len, &sents);
    const struct tw_text_range *r = sents.data;
    for (size_t i = 0; i < sents.len && rc == 0; i++) {
        // The cursor stays at the start: the words of a long sentence are counted from it.
        size_t cs = cp_at(&cur, r[i].start);
        size_t ce = cs + tw_clean_count_chars(text + r[i].start, r[i].end - r[i].start);
        if (ce - cs <= max_chars)
            rc = push_unit(&units, r[i].start, r[i].end, cs, ce, false, true);
        else
            rc = push_words(&units, text, &r[i], &cur, max_chars);
    }
    if (rc == 0)
        rc = emit_groups(text, units.data, units.len, true, min_chars, max_chars, out);
    tw_vec_free(&sents);
    tw_vec_free(&units);
    if (rc) {
        tw_vec_resize(out, old_len);
        return tw_error_prefix("chunk: sentences");
    }
    return 0;
}

// ---- code chunks

static bool is_ident(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static bool word_in(const char *w, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && memcmp(list[i], w, n) == 0)
            return true;
    return false;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const def_modifiers[] = {
    "pub",    "export",  "default",   "async",    "static",   "inline",  "extern",
    "public", "private", "protected", "internal", "abstract", "final",   "sealed",
    "unsafe", "const",   "open",      "override", "data",     "partial",
};

static const char *const def_keywords[] = {
    "def",       "class",  "fn",    "fun",       "func",     "function",    "struct", "enum",
    "union",     "impl",   "trait", "interface", "type",     "typedef",     "module", "mod",
    "namespace", "object", "sub",   "proc",      "template", "macro_rules",
};

static const char *const statement_words[] = {
    "if", "else", "for", "while", "do", "switch", "case", "return", "goto", "sizeof",
};

// A C-family function signature (chunk.h).
static bool is_c_signature(const char *line, size_t len, const char *next, size_t next_len)
{
    const char *paren = memchr(line, '(', len);
    if (!paren || !(is_ident((unsigned char)line[0]) && !(line[0] >= '0' && line[0] <= '9')))
        return false;
    size_t e = len;
    while (e > 0 && (line[e - 1] == ' ' || line[e - 1] == '\t' || line[e - 1] == '\r'))
        e--;
    if (line[e - 1] == ';')
        return false;
    size_t words = 0, p = 0, n = (size_t)(paren - line);
    while (p < n) {
        unsigned char c = (unsigned char)line[p];
        if (is_ident(c)) {
            size_t w = p;
            while (p < n && is_ident((unsigned char)line[p]))
                p++;
            if (words == 0 && word_in(line + w, p - w, statement_words, COUNT(statement_words)))
                return false;
            words++;
        } else if (c == ' ' || c == '\t' || c == '*' || c == '&' || c == ':' || c == '<' ||
                   c == '>' || c == ',' || c == '[' || c == ']' || c == '~') {
            p++;
        } else {
            return false; // '=', ';', '.', quotes...: a statement, not a signature
        }
    }
    if (words >= 2)
        return true;
    return words == 1 && next && next_len > 0 && next[0] == '{';
}

bool tw_code_is_definition(const char *line, size_t len, const char *next_line, size_t next_len)
{
    if (len == 0 || line[0] == ' ' || line[0] == '\t')
        return false;
    if (len >= 7 && memcmp(line, "#define", 7) == 0 &&
        (len == 7 || line[7] == ' ' || line[7] == '\t'))
        return true;
    size_t i = 0;
    while (i < len && is_ident((unsigned char)line[i])) {
        size_t w = i;
        while (i < len && is_ident((unsigned char)line[i]))
            i++;
        size_t n = i - w;
        if (n == 3 && memcmp(line + w, "pub", 3) == 0 && i < len && line[i] == '(') {
            const char *close = memchr(line + i, ')', len - i);
            if (!close)
                break;
            i = (size_t)(close - line) + 1; // pub(crate)
        }
        if (word_in(line + w, n, def_keywords, COUNT(def_keywords))) {
            if (i == len)
                return true;
            char c = line[i];
            return c == ' ' || c == '\t' || c == '<' || c == '!' || c == '*' || c == '{';
        }
        if (!word_in(line + w, n, def_modifiers, COUNT(def_modifiers)))
            break;
        if (i >= len || (line[i] != ' ' && line[i] != '\t'))
            break;
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
    }
    return is_c_signature(line, len, next_line, next_len);
}

// A line that belongs to the definition below it: a comment, decorator or attribute, or a C
// return type on a line of its own.
static bool is_lead_in(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (i == len)
        return false;
    const char *s = line + i;
    size_t n = len - i;
    if (s[0] == '*' || s[0] == '#' || s[0] == '@' || s[0] == ';')
        return true;
    if (n >= 2 && (memcmp(s, "//", 2) == 0 || memcmp(s, "/*", 2) == 0 || memcmp(s, "--", 2) == 0))
        return true;
    if (i > 0 || !is_ident((unsigned char)s[0]))
        return false;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (!is_ident(c) && c != ' ' && c != '\t' && c != '*')
            return false;
    }
    return true;
}

struct line {
    size_t start, end; // the line's bytes without its trailing blanks and line feed
    size_t cs, ce;     // code point offsets of start and end
    bool blank;        // nothing but blanks
    bool def;          // a definition (tw_code_is_definition)
    bool section;      // starts a section
};

static int split_lines(const char *t, size_t len, struct cursor *cur, tw_vec *lines)
{
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        const char *nl = memchr(t + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - t) : len, next = nl ? e + 1 : len, b = i;
        while (e > i && (t[e - 1] == ' ' || (t[e - 1] >= '\t' && t[e - 1] <= '\r')))
            e--;
        while (b < e && (t[b] == ' ' || t[b] == '\t'))
            b++;
        struct line l = { i, e, 0, 0, b == e, false, false };
        l.cs = cp_at(cur, i);
        l.ce = cp_at(cur, e);
        rc = tw_vec_push(lines, &l);
        i = next;
    }
    return rc;
}

// Marks the lines that start sections (chunk.h, tw_chunk_code step 1).
static void mark_sections(const char *t, struct line *l, size_t n)
{
    size_t next = n; // the next non-blank line after the current one
    bool first = true;
    for (size_t i = n; i-- > 0;) {
        if (l[i].blank)
            continue;
        const char *nt = next < n ? t + l[next].start : NULL;
        size_t nn = next < n ? l[next].end - l[next].start : 0;
        l[i].def = tw_code_is_definition(t + l[i].start, l[i].end - l[i].start, nt, nn);
        l[i].section = l[i].def;
        next = i;
    }
    for (size_t i = 0; i < n; i++) {
        if (l[i].blank)
            continue;
        if (first)
            l[i].section = true;
        first = false;
        if (!l[i].section)
            continue;
        size_t s = i;
        while (s > 0 && !l[s - 1].blank && !l[s - 1].def && !l[s - 1].section &&
               is_lead_in(t + l[s - 1].start, l[s - 1].end - l[s - 1].start))
            s--;
        if (s != i) {
            l[i].section = false;
            l[s].section = true;
        }
    }
}

// Units of one section [a, b] of lines (non-blank at both ends).
static int section_units(const char *t, const struct line *l, size_t a, size_t b, size_t max,
                         tw_vec *units)
{
    if (l[b].ce - l[a].cs <= max)
        return push_unit(units, l[a].start, l[b].end, l[a].cs, l[b].ce, false, true);
    bool first = true;
    int rc = 0;
    for (size_t i = a; i <= b && rc == 0;) {
        size_t j = i; // the block [i, j]: non-blank lines
        while (j < b && !l[j + 1].blank)
            j++;
        if (l[j].ce - l[i].cs <= max) {
            rc = push_unit(units, l[i].start, l[j].end, l[i].cs, l[j].ce, true, first);
            first = false;
        } else {
            for (size_t k = i; k <= j && rc == 0; k++) {
                if (l[k].ce - l[k].cs <= max) {
                    rc = push_unit(units, l[k].start, l[k].end, l[k].cs, l[k].ce, true, first);
                    first = false;
                } else {
                    rc =
                        push_pieces(units, t, l[k].start, l[k].end, l[k].cs, l[k].ce, max, &first);
                }
            }
        }
        i = j + 1;
        while (i <= b && l[i].blank)
            i++;
    }
    return rc;
}

int tw_chunk_code(const char *text, size_t len, size_t max_chars, tw_vec *out)
{
    if (max_chars == 0)
        return tw_error_set(TW_EINVAL, "chunk: code chunks of at most 0 characters");
    size_t old_len = out->len;
    tw_vec lines, units;
    tw_vec_init(&lines, sizeof(struct line));
    tw_vec_init(&units, sizeof(struct unit));
    struct cursor cur = { text, len, 0, 0 };
    int rc = split_lines(text, len, &cur, &lines);
    struct line *l = lines.data;
    size_t n = lines.len;
    if (rc == 0)
        mark_sections(text, l, n);
    for (size_t i = 0; i < n && rc == 0;) {
        if (l[i].blank) {
            i++;
            continue;
        }
        size_t j, last = i; // the section [i, last]: up to the next section start
        for (j = i + 1; j < n && !l[j].section; j++)
            if (!l[j].blank)
                last = j;
        rc = section_units(text, l, i, last, max_chars, &units);
        i = j;
    }
    if (rc == 0)
        rc = emit_groups(text, units.data, units.len, false, 0, max_chars, out);
    tw_vec_free(&lines);
    tw_vec_free(&units);
    if (rc) {
        tw_vec_resize(out, old_len);
        return tw_error_prefix("chunk: code");
    }
    return 0;
}

// ---- by category

int tw_chunk_document(enum tw_category cat, const char *text, size_t len,
                      const struct tw_span *spans, size_t n_spans,
                      const struct tw_chunk_opts *opts, tw_vec *out)
{
    struct tw_chunk_opts def;
    if (!opts) {
        tw_chunk_opts_init(&def);
        opts = &def;
    }
    switch (cat) {
    case TW_CATEGORY_POST:
        if (!spans && len > 0)
            return tw_error_set(TW_EINVAL,
                                "chunk: posts are chunked by tokens, and no token spans were "
                                "given");
        return tw_chunk_tokens(text, len, spans, n_spans, opts->post_window, opts->post_overlap,
                               out);
    case TW_CATEGORY_REPOSITORY:
        if (opts->repo_tokens && spans)
            return tw_chunk_tokens(text, len, spans, n_spans, opts->repo_window,
                                   opts->repo_overlap, out);
        return tw_chunk_code(text, len, opts->code_max_chars, out);
    default:
        return tw_chunk_sentences(text, len, opts->min_chars, opts->max_chars, out);
    }
}

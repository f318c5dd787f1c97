// Implements clean.h in two passes around utf8proc's NFC: pass 1 decodes (U+FFFD for invalid
// bytes), normalises line breaks and drops what is removed whatever its neighbours; NFC runs
// on its output; pass 2 applies the category's character rule and lays out whitespace,
// deciding the context-dependent characters (joiners, tags, combining marks) as it goes.
#include "text/clean.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <utf8proc.h>

#include "base/error.h"
#include "base/mem.h"
#include "text/utf8.h"

#define CP_ZWNJ 0x200C
#define CP_ZWJ  0x200D
#define CP_FFFD 0xFFFD

enum tw_category tw_category_parse(const char *name)
{
    static const struct {
        const char *name;
        enum tw_category cat;
    } names[] = {
        { "article", TW_CATEGORY_ARTICLE },
        { "articles", TW_CATEGORY_ARTICLE },
        { "post", TW_CATEGORY_POST },
        { "posts", TW_CATEGORY_POST },
        { "repository", TW_CATEGORY_REPOSITORY },
        { "repositories", TW_CATEGORY_REPOSITORY },
        { "repo", TW_CATEGORY_REPOSITORY },
        { "code", TW_CATEGORY_REPOSITORY },
    };
    if (!name)
        return TW_CATEGORY_OTHER;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *a = names[i].name, *b = name;
        while (*a && (*b | 0x20) == *a) {
            a++;
            b++;
        }
        if (!*a && !*b)
            return names[i].cat;
    }
    return TW_CATEGORY_OTHER;
}

const char *tw_category_name(enum tw_category cat)
{
    switch (cat) {
    case TW_CATEGORY_ARTICLE:
        return "article";
    case TW_CATEGORY_POST:
        return "post";
    case TW_CATEGORY_REPOSITORY:
        return "repository";
    default:
        return "other";
    }
}

// ---- UTF-8

size_t tw_clean_count_chars(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        uint32_t c;
        i += (unsigned char)text[i] < 0x80 ? 1 : tw_utf8_decode(text + i, len - i, &c);
    }
    return n;
}

static int put_cp(tw_str *s, int32_t c)
{
    char b[4];
    return tw_str_append(s, b, tw_utf8_encode((uint32_t)c, b));
}

// ---- character classes

static bool is_tag(int32_t c)
{
    return c == 0xE0001 || (c >= 0xE0020 && c <= 0xE007F);
}

static bool is_letter(utf8proc_category_t cat)
{
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
}

static bool is_mark(utf8proc_category_t cat)
{
    return cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME;
}

static bool is_emoji(int32_t c)
{
    int bc = utf8proc_get_property(c)->boundclass;
    return bc == UTF8PROC_BOUNDCLASS_EXTENDED_PICTOGRAPHIC ||
           bc == UTF8PROC_BOUNDCLASS_REGIONAL_INDICATOR;
}

// A grapheme extender that belongs to the character before it: combining marks, variation
// selectors, emoji modifiers (Sk with Grapheme_Cluster_Break=Extend).
static bool is_extender(int32_t c, utf8proc_category_t cat)
{
    int bc = utf8proc_get_property(c)->boundclass;
    if (bc != UTF8PROC_BOUNDCLASS_EXTEND && bc != UTF8PROC_BOUNDCLASS_SPACINGMARK)
        return false;
    return is_mark(cat) || cat == UTF8PROC_CATEGORY_SK;
}

// Removed in every category, whatever the neighbours (clean.h, step 3). Joiners and tags are
// decided later, in context.
static bool drop_always(int32_t c)
{
    if (c < 0x20)
        return c != '\t' && c != '\n';
    if (c >= 0x7F && c <= 0x9F)
        return true;
    if ((c >= 0xFDD0 && c <= 0xFDEF) || (c & 0xFFFE) == 0xFFFE)
        return true;
    utf8proc_category_t cat = utf8proc_category(c);
    if (cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS)
        return true;
    if (cat == UTF8PROC_CATEGORY_CF)
        return c != CP_ZWJ && c != CP_ZWNJ && !is_tag(c);
    return false;
}

enum keep { NOISE, KEEP_WORD, KEEP_EMOJI };

// The character rule for a base character (not whitespace, not an extender) of an article
// or a post (clean.h).
static enum keep prose_keep(int32_t c, utf8proc_category_t cat, bool post)
{
    if (c == CP_FFFD || c == 0x00B0)
        return KEEP_WORD;
    if (post && is_emoji(c))
        return KEEP_EMOJI;
    switch (cat) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_SC:
        return KEEP_WORD;
    case UTF8PROC_CATEGORY_PO:
        // Markdown emphasis, escapes, bullets and footnote daggers are layout, not prose.
        if (c == '*' || c == '\\' || c == 0x2022 || c == 0x2023 || c == 0x2043 || c == 0x2020 ||
            c == 0x2021)
            return NOISE;
        return KEEP_WORD;
    case UTF8PROC_CATEGORY_SM:
        if (c == '+' || c == 0x00B1 || c == 0x00D7 || c == 0x00F7 || c == 0x2212)
            return KEEP_WORD;
        return NOISE;
    default:
        return NOISE;
    }
}

// ---- pass 1: decode, line breaks, removals

static int pass1(enum tw_category cat, const char *text, size_t len, tw_str *tmp)
{
    bool prose = cat != TW_CATEGORY_REPOSITORY;
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        uint32_t u;
        i += tw_utf8_decode(text + i, len - i, &u);
        int32_t c = (int32_t)u;
        if (c == '\r') {
            if (i < len && text[i] == '\n')
                i++;
            c = '\n';
        }
        if (prose) {
            if (c == 0x0B || c == 0x0C || c == 0x85 || c == 0x2028) {
                c = '\n';
            } else if (c == 0x2029) {
                rc = tw_str_append(tmp, "\n\n", 2);
                continue;
            }
        }
        if (drop_always(c))
            continue;
        rc = put_cp(tmp, c);
    }
    return rc;
}

// ---- pass 2: the category's rule and the layout

enum base { BASE_NONE, BASE_WORD, BASE_EMOJI };

struct layout {
    tw_str *out;
    bool emitted;      // a character has been written by this call
    unsigned pend_nl;  // line breaks since the last character written
    bool pend_sp;      // prose: a space is due before the next character
    size_t ws_from;    // code: the current line's run of blanks, b[ws_from, ws_to)
    size_t ws_to;      //
    enum base base;    // what the last character written starts (NONE after a space)
    bool last_lettery; // the last character written was a letter or a mark
};

// Whether the joiner b[i] (ZWJ or ZWNJ) stays, given what came before it (clean.h, step 3).
static bool joiner_kept(const struct layout *L, const int32_t *b, size_t n, size_t i)
{
    if (L->base == BASE_NONE || i + 1 >= n)
        return false;
    int32_t next = b[i + 1];
    if (b[i] == CP_ZWJ && L->base == BASE_EMOJI && is_emoji(next))
        return true;
    utf8proc_category_t nc = utf8proc_category(next);
    return L->base == BASE_WORD && L->last_lettery && (is_letter(nc) || is_mark(nc));
}

// Writes c after the whitespace due before it.
static int emit_prose(struct layout *L, int32_t c)
{
    int rc = 0;
    if (L->emitted) {
        if (L->pend_nl >= 2)
            rc = tw_str_append(L->out, "\n\n", 2);
        else if (L->pend_nl == 1)
            rc = tw_str_putc(L->out, '\n');
        else if (L->pend_sp)
            rc = tw_str_putc(L->out, ' ');
    }
    L->pend_nl = 0;
    L->pend_sp = false;
    L->emitted = true;
    return rc ? rc : put_cp(L->out, c);
}

static int emit_code(struct layout *L, const int32_t *b, int32_t c)
{
    int rc = 0;
    if (L->emitted) {
        for (unsigned k = 0; k < L->pend_nl && rc == 0; k++)
            rc = tw_str_putc(L->out, '\n');
    }
    for (size_t k = L->ws_from; k < L->ws_to && rc == 0; k++)
        rc = put_cp(L->out, b[k]);
    L->pend_nl = 0;
    L->ws_from = L->ws_to = 0;
    L->emitted = true;
    return rc ? rc : put_cp(L->out, c);
}

static int pass2(enum tw_category cat, const int32_t *b, size_t n, tw_str *out)
{
    bool code = cat == TW_CATEGORY_REPOSITORY;
    bool keep_all = code || cat == TW_CATEGORY_OTHER;
    struct layout L = { .out = out };
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int32_t c = b[i];
        if (c == '\n') {
            L.pend_nl++;
            L.ws_from = L.ws_to = 0; // trailing blanks of the line end here
            L.base = BASE_NONE;
            continue;
        }
        utf8proc_category_t uc = utf8proc_category(c);
        if (c == '\t' || uc == UTF8PROC_CATEGORY_ZS) {
            if (code) {
                if (L.ws_to == 0)
                    L.ws_from = i;
                L.ws_to = i + 1;
            }
            L.pend_sp = true;
            L.base = BASE_NONE;
            continue;
        }
        // Characters that attach to the one before: no whitespace goes between them.
        bool attach = false;
        if (c == CP_ZWJ || c == CP_ZWNJ) {
            if (!joiner_kept(&L, b, n, i))
                continue;
            attach = true;
        } else if (is_tag(c)) {
            if (L.base != BASE_EMOJI)
                continue;
            attach = true;
        } else if (is_extender(c, uc) && L.base != BASE_NONE) {
            attach = true;
        } else if (is_extender(c, uc) && !keep_all) {
            continue; // a mark whose base was noise or whitespace
        }
        if (attach) {
            rc = code ? emit_code(&L, b, c) : emit_prose(&L, c);
            L.last_lettery = is_mark(uc) || is_letter(uc);
            continue;
        }
        enum keep k = KEEP_WORD;
        if (keep_all)
            k = is_emoji(c) ? KEEP_EMOJI : KEEP_WORD;
        else
            k = prose_keep(c, uc, cat == TW_CATEGORY_POST);
        if (k == NOISE) {
            L.pend_sp = true;
            L.base = BASE_NONE;
            continue;
        }
        rc = code ? emit_code(&L, b, c) : emit_prose(&L, c);
        L.base = k == KEEP_EMOJI ? BASE_EMOJI : BASE_WORD;
        L.last_lettery = is_mark(uc) || is_letter(uc);
    }
    if (rc == 0 && code && L.emitted)
        rc = tw_str_putc(out, '\n');
    return rc;
}

// ---- the whole

int tw_text_clean(enum tw_category cat, const char *text, size_t len, tw_str *out)
{
    // utf8proc counts in utf8proc_ssize_t, and decomposition can quadruple the count.
    if (len > (size_t)PTRDIFF_MAX / 16)
        return tw_error_set(TW_EOVERFLOW, "clean: a text of %zu bytes is too large", len);
    size_t out_len = tw_str_len(out);
    const utf8proc_option_t nfc = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    int32_t *buf = NULL;
    tw_str tmp;
    tw_str_init(&tmp);
    int rc = pass1(cat, text, len, &tmp);
    if (rc)
        goto done;
    const utf8proc_uint8_t *s = (const utf8proc_uint8_t *)tw_str_cstr(&tmp);
    utf8proc_ssize_t slen = (utf8proc_ssize_t)tw_str_len(&tmp);
    utf8proc_ssize_t n = utf8proc_decompose(s, slen, NULL, 0, nfc);
    if (n < 0) {
        rc = tw_error_set(TW_EINVAL, "NFC: %s", utf8proc_errmsg(n));
        goto done;
    }
    buf = tw_malloc_array((size_t)n + 1, sizeof *buf);
    if (!buf) {
        rc = tw_error_set(TW_ENOMEM, "NFC: out of memory");
        goto done;
    }
    utf8proc_ssize_t n2 = utf8proc_decompose(s, slen, buf, n, nfc);
    if (n2 >= 0 && n2 <= n)
        n2 = utf8proc_normalize_utf32(buf, n2, nfc);
    if (n2 < 0 || n2 > n) {
        rc = tw_error_set(TW_EINVAL, "NFC: %s", n2 < 0 ? utf8proc_errmsg(n2) : "size");
        goto done;
    }
    rc = pass2(cat, buf, (size_t)n2, out);
done:
    if (rc) {
        tw_error_prefix("clean: %s of %zu bytes", tw_category_name(cat), len);
        tw_str_truncate(out, out_len);
    }
    tw_free(buf);
    tw_str_free(&tmp);
    return rc;
}

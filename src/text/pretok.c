// Pre-tokenizers of HF tokenizers (ByteLevel, Split, Metaspace, BertPreTokenizer, Whitespace,
// WhitespaceSplit, Digits, Punctuation, Sequence): they cut an nstr's pieces into smaller ones
// with the delimiter behaviours of HF's NormalizedString::split (Removed, Isolated,
// MergedWithPrevious, MergedWithNext, Contiguous, and invert).
#include <string.h>

#include <utf8proc.h>

#include "base/error.h"
#include "base/mem.h"
#include "text/tokenizer_int.h"
#include "text/utf8.h"

int pattern_parse(const json_t *j, const char *path, struct pattern *p);

// GPT-2's pre-tokenizer regex, used by ByteLevel when use_regex is true (published with
// GPT-2's encoder.py and HF's byte_level.rs).
static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int compile(const char *re, struct pattern *p)
{
    int err;
    PCRE2_SIZE off;
    p->re = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off,
                          NULL);
    if (!p->re)
        return tw_error_set(TW_EINVAL, "built-in regex failed to compile (%d)", err);
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE);
    return 0;
}

static bool get_bool(const json_t *j, const char *key, bool def)
{
    const json_t *v = json_object_get(j, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static int parse_behavior(const json_t *j, const char *path, enum split_behavior *out)
{
    const char *b = json_string_value(json_object_get(j, "behavior"));
    static const char *const names[] = { "Removed", "Isolated", "MergedWithPrevious",
                                         "MergedWithNext", "Contiguous" };
    if (!b) {
        *out = SPLIT_ISOLATED;
        return 0;
    }
    for (int i = 0; i < 5; i++)
        if (strcmp(b, names[i]) == 0) {
            *out = (enum split_behavior)i;
            return 0;
        }
    return tw_error_set(TW_EUNSUPPORTED,
                        "%s.behavior: \"%s\" is not one of Removed, Isolated, "
                        "MergedWithPrevious, MergedWithNext, Contiguous",
                        path, b);
}

int pretok_parse(const json_t *j, const char *path, struct pretok *p)
{
    memset(p, 0, sizeof *p);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type)
        return tw_error_set(TW_EFORMAT, "%s.type: expected a string", path);
    if (strcmp(type, "ByteLevel") == 0) {
        p->type = PRE_BYTELEVEL;
        p->add_prefix_space = get_bool(j, "add_prefix_space", true);
        p->use_regex = get_bool(j, "use_regex", true);
        return p->use_regex ? compile(gpt2_regex, &p->pat) : 0;
    }
    if (strcmp(type, "Split") == 0) {
        p->type = PRE_SPLIT;
        p->invert = get_bool(j, "invert", false);
        int rc = parse_behavior(j, path, &p->behavior);
        return rc ? rc : pattern_parse(j, path, &p->pat);
    }
    if (strcmp(type, "Metaspace") == 0) {
        p->type = PRE_METASPACE;
        const char *r = json_string_value(json_object_get(j, "replacement"));
        if (!r || strlen(r) >= sizeof p->replacement)
            return tw_error_set(TW_EFORMAT, "%s.replacement: expected one character", path);
        strcpy(p->replacement, r);
        p->split = get_bool(j, "split", true);
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        if (scheme)
            p->prepend_scheme = strcmp(scheme, "first") == 0   ? 1
                                : strcmp(scheme, "never") == 0 ? 2
                                                               : 0;
        else // older files: add_prefix_space
            p->prepend_scheme = get_bool(j, "add_prefix_space", true) ? 0 : 2;
        return 0;
    }
    if (strcmp(type, "BertPreTokenizer") == 0) {
        p->type = PRE_BERT;
        return 0;
    }
    if (strcmp(type, "Whitespace") == 0) {
        p->type = PRE_WHITESPACE;
        return compile("\\w+|[^\\w\\s]+", &p->pat);
    }
    if (strcmp(type, "WhitespaceSplit") == 0) {
        p->type = PRE_WHITESPACE_SPLIT;
        return 0;
    }
    if (strcmp(type, "Digits") == 0) {
        p->type = PRE_DIGITS;
        p->individual_digits = get_bool(j, "individual_digits", false);
        return 0;
    }
    if (strcmp(type, "Punctuation") == 0) {
        p->type = PRE_PUNCTUATION;
        return parse_behavior(j, path, &p->behavior);
    }
    if (strcmp(type, "Sequence") == 0) {
        p->type = PRE_SEQUENCE;
        const json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr))
            return tw_error_set(TW_EFORMAT, "%s.pretokenizers: expected an array", path);
        p->n_kids = json_array_size(arr);
        p->kids = tw_calloc(p->n_kids ? p->n_kids : 1, sizeof *p->kids);
        if (!p->kids)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; i < p->n_kids; i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            int rc = pretok_parse(json_array_get(arr, i), sub, &p->kids[i]);
            if (rc)
                return rc;
        }
        return 0;
    }
    return tw_error_set(TW_EUNSUPPORTED,
                        "%s: pre-tokenizer \"%s\" is not supported (supported: ByteLevel, "
                        "Split, Metaspace, BertPreTokenizer, Whitespace, WhitespaceSplit, "
                        "Digits, Punctuation, Sequence)",
                        path, type);
}

void pretok_free(struct pretok *p)
{
    pattern_free(&p->pat);
    for (size_t i = 0; i < p->n_kids; i++)
        pretok_free(&p->kids[i]);
    tw_free(p->kids);
    memset(p, 0, sizeof *p);
}

bool pretok_has_bytelevel(const struct pretok *p)
{
    if (p->type == PRE_BYTELEVEL)
        return true;
    for (size_t i = 0; i < p->n_kids; i++)
        if (pretok_has_bytelevel(&p->kids[i]))
            return true;
    return false;
}

// ---- splitting one piece by matches

struct seg {
    uint32_t start, end;
    bool match;
};

struct splitter {
    tw_vec segs; // struct seg covering the piece
    uint32_t base, prev;
    int rc;
};

static int on_match(void *c, size_t start, size_t end)
{
    struct splitter *sp = c;
    uint32_t s = sp->base + (uint32_t)start, e = sp->base + (uint32_t)end;
    if (sp->prev < s) {
        struct seg g = { sp->prev, s, false };
        if ((sp->rc = tw_vec_push(&sp->segs, &g)) != 0)
            return 1;
    }
    struct seg m = { s, e, true };
    if ((sp->rc = tw_vec_push(&sp->segs, &m)) != 0)
        return 1;
    sp->prev = e;
    return 0;
}

// Applies a behaviour to the segments of one piece and appends the kept ranges to out.
static int emit_behavior(struct seg *g, size_t n, enum split_behavior b, bool invert, tw_vec *out)
{
    if (invert)
        for (size_t i = 0; i < n; i++)
            g[i].match = !g[i].match;
    size_t first_new = out->len;
    bool prev_match = false;
    int rc = 0;
    if (b == SPLIT_MERGED_NEXT) {
        // Walk backwards: a match joins the segment after it (HF folds in reverse).
        for (size_t k = n; k-- > 0 && !rc;) {
            struct tw_span *last = out->len > first_new ? tw_vec_at(out, out->len - 1) : NULL;
            if (g[k].match && !prev_match && last)
                last->start = g[k].start;
            else
                rc = tw_vec_push(out, &(struct tw_span){ g[k].start, g[k].end });
            prev_match = g[k].match;
        }
        struct tw_span *p = (struct tw_span *)out->data + first_new;
        size_t cnt = out->len - first_new;
        for (size_t i = 0; i < cnt / 2; i++) {
            struct tw_span t = p[i];
            p[i] = p[cnt - 1 - i];
            p[cnt - 1 - i] = t;
        }
    } else {
        for (size_t k = 0; k < n && !rc; k++) {
            struct tw_span *last = out->len > first_new ? tw_vec_at(out, out->len - 1) : NULL;
            struct tw_span s = { g[k].start, g[k].end };
            switch (b) {
            case SPLIT_REMOVED:
                if (!g[k].match)
                    rc = tw_vec_push(out, &s);
                break;
            case SPLIT_ISOLATED:
                rc = tw_vec_push(out, &s);
                break;
            case SPLIT_MERGED_PREV:
                if (g[k].match && !prev_match && last)
                    last->end = s.end;
                else
                    rc = tw_vec_push(out, &s);
                break;
            case SPLIT_CONTIGUOUS:
                if (g[k].match == prev_match && last)
                    last->end = s.end;
                else
                    rc = tw_vec_push(out, &s);
                break;
            case SPLIT_MERGED_NEXT:
                break;
            }
            prev_match = g[k].match;
        }
    }
    if (rc)
        return rc;
    // Empty pieces are dropped.
    size_t w = first_new;
    struct tw_span *p = out->data;
    for (size_t i = first_new; i < out->len; i++)
        if (p[i].end > p[i].start)
            p[w++] = p[i];
    out->len = w;
    return 0;
}

typedef bool (*char_pred)(uint32_t cp);

// Splits every piece of s: by a pattern (pat) or by single characters matching pred.
static int split_all(struct nstr *s, const struct pattern *pat, char_pred pred,
                     enum split_behavior b, bool invert, pcre2_match_data *md, tw_vec *out)
{
    struct splitter sp;
    tw_vec_init(&sp.segs, sizeof(struct seg));
    out->len = 0;
    int rc = 0;
    const char *text = s->b.data;
    const struct tw_span *pieces = s->pieces.data;
    for (size_t i = 0; i < s->pieces.len && !rc; i++) {
        struct tw_span pc = pieces[i];
        sp.segs.len = 0;
        sp.base = sp.prev = pc.start;
        sp.rc = 0;
        if (pat) {
            rc = pattern_each(pat, md, text + pc.start, pc.end - pc.start, on_match, &sp);
        } else {
            for (uint32_t at = pc.start; at < pc.end && !sp.rc;) {
                uint32_t cp;
                size_t l = tw_utf8_decode(text + at, pc.end - at, &cp);
                if (pred(cp))
                    on_match(&sp, at - pc.start, at - pc.start + l);
                at += (uint32_t)l;
            }
        }
        if (!rc)
            rc = sp.rc;
        if (!rc && sp.prev < pc.end)
            rc = tw_vec_push(&sp.segs, &(struct seg){ sp.prev, pc.end, false });
        if (!rc)
            rc = emit_behavior(sp.segs.data, sp.segs.len, b, invert, out);
    }
    tw_vec_free(&sp.segs);
    if (rc)
        return rc;
    tw_vec t = s->pieces;
    s->pieces = *out;
    *out = t;
    return 0;
}

static bool is_ws(uint32_t cp)
{
    return uc_is_whitespace(cp);
}

static bool is_numeric(uint32_t cp)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

// Rewrites each piece: Metaspace (spaces to the replacement, an optional prefix) or
// ByteLevel's add_prefix_space. The result replaces s.
static int rewrite_pieces(const struct pretok *p, struct nstr *s, struct nstr *tmp)
{
    nstr_clear(tmp);
    const char *text = s->b.data;
    const struct tw_span *a = s->a.data;
    const struct tw_span *pieces = s->pieces.data;
    size_t rlen = strlen(p->replacement);
    for (size_t i = 0; i < s->pieces.len; i++) {
        struct tw_span pc = pieces[i];
        uint32_t start = (uint32_t)tmp->b.len;
        int rc = 0;
        if (p->type == PRE_BYTELEVEL) {
            if (pc.end > pc.start && text[pc.start] != ' ')
                rc = nstr_put(tmp, " ", 1, a[pc.start]);
            for (uint32_t k = pc.start; !rc && k < pc.end; k++)
                rc = nstr_put(tmp, text + k, 1, a[k]);
        } else {
            bool starts =
                pc.end - pc.start >= rlen && memcmp(text + pc.start, p->replacement, rlen) == 0;
            bool first = pc.end > pc.start && a[pc.start].start == 0;
            if (pc.end > pc.start && !starts && text[pc.start] != ' ' &&
                (p->prepend_scheme == 0 || (p->prepend_scheme == 1 && first)))
                rc = nstr_put(tmp, p->replacement, rlen, a[pc.start]);
            for (uint32_t k = pc.start; !rc && k < pc.end; k++) {
                if (text[k] == ' ')
                    rc = nstr_put(tmp, p->replacement, rlen, a[k]);
                else
                    rc = nstr_put(tmp, text + k, 1, a[k]);
            }
        }
        if (!rc)
            rc = tw_vec_push(&tmp->pieces, &(struct tw_span){ start, (uint32_t)tmp->b.len });
        if (rc)
            return rc;
    }
    struct nstr t = *s;
    *s = *tmp;
    *tmp = t;
    return 0;
}

int pretok_apply(const struct pretok *p, struct nstr *s, struct nstr *tmp, pcre2_match_data *md)
{
    int rc;
    switch (p->type) {
    case PRE_SEQUENCE:
        for (size_t i = 0; i < p->n_kids; i++)
            if ((rc = pretok_apply(&p->kids[i], s, tmp, md)) != 0)
                return rc;
        return 0;
    case PRE_BYTELEVEL:
        if (p->add_prefix_space && (rc = rewrite_pieces(p, s, tmp)) != 0)
            return rc;
        return p->use_regex ? split_all(s, &p->pat, NULL, SPLIT_ISOLATED, false, md, &tmp->pieces)
                            : 0;
    case PRE_SPLIT:
        return split_all(s, &p->pat, NULL, p->behavior, p->invert, md, &tmp->pieces);
    case PRE_METASPACE: {
        if ((rc = rewrite_pieces(p, s, tmp)) != 0 || !p->split)
            return rc;
        struct pattern lit = { .lit = (char *)p->replacement, .lit_len = strlen(p->replacement) };
        return split_all(s, &lit, NULL, SPLIT_MERGED_NEXT, false, md, &tmp->pieces);
    }
    case PRE_BERT:
        rc = split_all(s, NULL, is_ws, SPLIT_REMOVED, false, md, &tmp->pieces);
        return rc ? rc : split_all(s, NULL, uc_is_punct, SPLIT_ISOLATED, false, md, &tmp->pieces);
    case PRE_WHITESPACE:
        return split_all(s, &p->pat, NULL, SPLIT_REMOVED, true, md, &tmp->pieces);
    case PRE_WHITESPACE_SPLIT:
        return split_all(s, NULL, is_ws, SPLIT_REMOVED, false, md, &tmp->pieces);
    case PRE_DIGITS:
        return split_all(s, NULL, is_numeric,
                         p->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, false, md,
                         &tmp->pieces);
    case PRE_PUNCTUATION:
        return split_all(s, NULL, uc_is_punct, p->behavior, false, md, &tmp->pieces);
    }
    return 0;
}

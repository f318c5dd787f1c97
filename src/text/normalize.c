// Normalizers of HF tokenizers (NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace,
// Prepend, BertNormalizer, Sequence) over struct nstr, keeping for every output byte the input
// span it came from; plus the nstr and pattern helpers and the Unicode predicates.
#define _GNU_SOURCE // memmem
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mem.h"
#include "text/tokenizer_int.h"
#include "text/utf8.h"

void nstr_init(struct nstr *s)
{
    tw_vec_init(&s->b, 1);
    tw_vec_init(&s->a, sizeof(struct tw_span));
    tw_vec_init(&s->pieces, sizeof(struct tw_span));
}

void nstr_free(struct nstr *s)
{
    tw_vec_free(&s->b);
    tw_vec_free(&s->a);
    tw_vec_free(&s->pieces);
}

void nstr_clear(struct nstr *s)
{
    s->b.len = s->a.len = s->pieces.len = 0;
}

int nstr_put(struct nstr *s, const char *p, size_t n, struct tw_span src)
{
    if (n == 0) // nothing to add (and s's buffers may not exist yet: no NULL + 0)
        return 0;
    size_t at = s->a.len;
    int rc = tw_vec_append(&s->b, p, n);
    if (!rc)
        rc = tw_vec_resize(&s->a, at + n);
    if (rc)
        return rc;
    struct tw_span *a = (struct tw_span *)s->a.data + at;
    for (size_t i = 0; i < n; i++)
        a[i] = src;
    return 0;
}

// Copies bytes [from, to) of src with their spans.
static int nstr_copy(struct nstr *dst, const struct nstr *src, size_t from, size_t to)
{
    if (from == to)
        return 0;
    int rc = tw_vec_append(&dst->b, (const char *)src->b.data + from, to - from);
    if (!rc)
        rc = tw_vec_append(&dst->a, (const struct tw_span *)src->a.data + from, to - from);
    return rc;
}

static struct tw_span span_of(const struct nstr *s, size_t from, size_t to)
{
    const struct tw_span *a = s->a.data;
    return (struct tw_span){ a[from].start, a[to - 1].end };
}

static void nstr_swap(struct nstr *a, struct nstr *b)
{
    struct nstr t = *a;
    *a = *b;
    *b = t;
}

void pattern_free(struct pattern *p)
{
    tw_free(p->lit);
    tw_free(p->src);
    pcre2_code_free(p->re);
    memset(p, 0, sizeof *p);
}

int pattern_each(const struct pattern *p, pcre2_match_data *md, const char *s, size_t len,
                 int (*fn)(void *ctx, size_t start, size_t end), void *ctx)
{
    if (p->lit) {
        if (p->lit_len == 0)
            return 0;
        for (size_t i = 0; i + p->lit_len <= len;) {
            const char *hit = memmem(s + i, len - i, p->lit, p->lit_len);
            if (!hit)
                break;
            size_t at = (size_t)(hit - s);
            if (fn(ctx, at, at + p->lit_len))
                return 0;
            i = at + p->lit_len;
        }
        return 0;
    }
    size_t at = 0;
    while (at <= len) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0)
            return tw_error_set(TW_EINVAL, "regex match failed (PCRE2 error %d)", rc);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (fn(ctx, ov[0], ov[1]))
            return 0;
        if (ov[1] > ov[0]) {
            at = ov[1];
        } else { // an empty match: step over one character
            uint32_t cp;
            at = ov[1] + (at < len ? tw_utf8_decode(s + ov[1], len - ov[1], &cp) : 1);
        }
    }
    return 0;
}

// ---- Unicode predicates

bool uc_is_whitespace(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool uc_is_punct(uint32_t c)
{
    if (c < 128)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

bool uc_is_alnum(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_NO) || k == UTF8PROC_CATEGORY_PC;
}

static bool is_chinese(uint32_t c)
{
    // The CJK ranges BERT pads with spaces (BasicTokenizer._is_chinese_char).
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// ---- parsing

static int parse_pattern(const json_t *j, const char *path, struct pattern *p)
{
    const json_t *pat = json_object_get(j, "pattern");
    const char *lit = NULL, *re = NULL;
    if (json_is_object(pat)) {
        lit = json_string_value(json_object_get(pat, "String"));
        re = json_string_value(json_object_get(pat, "Regex"));
    }
    if (!lit && !re)
        return tw_error_set(TW_EFORMAT, "%s.pattern: expected {\"String\"} or {\"Regex\"}", path);
    if (lit) {
        p->lit_len = json_string_length(json_object_get(pat, "String"));
        p->lit = tw_strndup(lit, p->lit_len);
        return p->lit ? 0 : tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    }
    int err;
    PCRE2_SIZE off;
    p->re = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off,
                          NULL);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return tw_error_set(TW_EFORMAT, "%s.pattern.Regex: at offset %zu: %s", path, (size_t)off,
                            (const char *)msg);
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); // optional: interpreted when JIT is absent
    if (!(p->src = tw_strdup(re)))
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    return 0;
}

int pattern_parse(const json_t *j, const char *path, struct pattern *p);
int pattern_parse(const json_t *j, const char *path, struct pattern *p)
{
    return parse_pattern(j, path, p);
}

static bool get_bool(const json_t *j, const char *key, bool def)
{
    const json_t *v = json_object_get(j, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

int norm_parse(const json_t *j, const char *path, struct norm *n)
{
    memset(n, 0, sizeof *n);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type)
        return tw_error_set(TW_EFORMAT, "%s.type: expected a string", path);
    static const struct {
        const char *name;
        enum norm_type type;
    } names[] = { { "NFC", NORM_NFC },
                  { "NFD", NORM_NFD },
                  { "NFKC", NORM_NFKC },
                  { "NFKD", NORM_NFKD },
                  { "Lowercase", NORM_LOWERCASE },
                  { "Strip", NORM_STRIP },
                  { "StripAccents", NORM_STRIP_ACCENTS },
                  { "Replace", NORM_REPLACE },
                  { "Prepend", NORM_PREPEND },
                  { "BertNormalizer", NORM_BERT },
                  { "Sequence", NORM_SEQUENCE } };
    size_t k = 0;
    while (k < sizeof names / sizeof names[0] && strcmp(names[k].name, type) != 0)
        k++;
    if (k == sizeof names / sizeof names[0])
        return tw_error_set(TW_EUNSUPPORTED,
                            "%s: normalizer \"%s\" is not supported (supported: NFC, NFD, NFKC, "
                            "NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, "
                            "BertNormalizer, Sequence)",
                            path, type);
    n->type = names[k].type;
    const char *content =
        json_string_value(json_object_get(j, n->type == NORM_PREPEND ? "prepend" : "content"));
    switch (n->type) {
    case NORM_REPLACE:
    case NORM_PREPEND:
        if (!content)
            return tw_error_set(TW_EFORMAT, "%s.%s: expected a string", path,
                                n->type == NORM_PREPEND ? "prepend" : "content");
        n->content = tw_strdup(content);
        n->content_len = strlen(content);
        if (!n->content)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        return n->type == NORM_REPLACE ? parse_pattern(j, path, &n->pat) : 0;
    case NORM_STRIP:
        n->left = get_bool(j, "left", true);
        n->right = get_bool(j, "right", true);
        return 0;
    case NORM_BERT: {
        n->clean_text = get_bool(j, "clean_text", true);
        n->chinese_chars = get_bool(j, "handle_chinese_chars", true);
        n->lowercase = get_bool(j, "lowercase", true);
        const json_t *sa = json_object_get(j, "strip_accents");
        // strip_accents null: follow lowercase (as HF does)
        n->strip_accents = json_is_boolean(sa) ? json_is_true(sa) : n->lowercase;
        return 0;
    }
    case NORM_SEQUENCE: {
        const json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr))
            return tw_error_set(TW_EFORMAT, "%s.normalizers: expected an array", path);
        n->n_kids = json_array_size(arr);
        n->kids = tw_calloc(n->n_kids ? n->n_kids : 1, sizeof *n->kids);
        if (!n->kids)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; i < n->n_kids; i++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            int rc = norm_parse(json_array_get(arr, i), sub, &n->kids[i]);
            if (rc)
                return rc;
        }
        return 0;
    }
    default:
        return 0;
    }
}

void norm_free(struct norm *n)
{
    pattern_free(&n->pat);
    tw_free(n->content);
    for (size_t i = 0; i < n->n_kids; i++)
        norm_free(&n->kids[i]);
    tw_free(n->kids);
    memset(n, 0, sizeof *n);
}

// ---- applying

// Normalizes one unit (the characters between two stable ASCII characters) with utf8proc.
static int unicode_unit(struct nstr *out, const struct nstr *in, size_t from, size_t to,
                        utf8proc_option_t opts)
{
    const char *s = (const char *)in->b.data + from;
    size_t n = to - from;
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++)
        ascii = (unsigned char)s[i] < 0x80;
    if (ascii)
        return nstr_copy(out, in, from, to);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t m =
        utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opts);
    if (m < 0)
        return tw_error_set(TW_EINVAL, "unicode normalization: %s", utf8proc_errmsg(m));
    // Same number of characters: character k came from character k; otherwise the unit's span.
    size_t cin = 0, cout = 0;
    for (size_t i = 0; i < n; i++)
        cin += ((unsigned char)s[i] & 0xC0) != 0x80;
    for (utf8proc_ssize_t i = 0; i < m; i++)
        cout += (dst[i] & 0xC0) != 0x80;
    int rc = 0;
    if (cin == cout) {
        size_t i = 0, o = 0;
        while (!rc && o < (size_t)m) {
            uint32_t cp;
            size_t li = tw_utf8_decode(s + i, n - i, &cp);
            size_t lo = tw_utf8_decode((const char *)dst + o, (size_t)m - o, &cp);
            rc = nstr_put(out, (const char *)dst + o, lo, span_of(in, from + i, from + i + li));
            i += li;
            o += lo;
        }
    } else {
        rc = nstr_put(out, (const char *)dst, (size_t)m, span_of(in, from, to));
    }
    free(dst);
    return rc;
}

static int unicode_norm(struct nstr *out, const struct nstr *in, utf8proc_option_t opts)
{
    const unsigned char *s = in->b.data;
    size_t n = in->b.len, unit = 0;
    for (size_t i = 0; i < n; i++) {
        // An ASCII character followed by ASCII (or the end) neither composes with what is
        // before it nor with what follows: cut there.
        if (s[i] < 0x80 && (i + 1 == n || s[i + 1] < 0x80)) {
            int rc = unit < i ? unicode_unit(out, in, unit, i, opts) : 0;
            if (!rc)
                rc = nstr_copy(out, in, i, i + 1);
            if (rc)
                return rc;
            unit = i + 1;
        }
    }
    return unit < n ? unicode_unit(out, in, unit, n, opts) : 0;
}

// Calls emit for each character: it writes the replacement characters (or none).
typedef int (*char_map_fn)(const struct norm *n, uint32_t cp, struct nstr *out,
                           struct tw_span src);

static int put_cp(struct nstr *out, uint32_t cp, struct tw_span src)
{
    char buf[4];
    return nstr_put(out, buf, tw_utf8_encode(cp, buf), src);
}

static int lower_char(uint32_t cp, struct nstr *out, struct tw_span src)
{
    if (cp == 0x130) { // the one unconditional multi-character lower case (SpecialCasing)
        int rc = put_cp(out, 'i', src);
        return rc ? rc : put_cp(out, 0x307, src);
    }
    return put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), src);
}

static int map_lower(const struct norm *n, uint32_t cp, struct nstr *out, struct tw_span src)
{
    return lower_char(cp, out, src);
}

static int map_strip_accents(const struct norm *n, uint32_t cp, struct nstr *out,
                             struct tw_span src)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME)
        return 0;
    return put_cp(out, cp, src);
}

static int map_bert(const struct norm *n, uint32_t cp, struct nstr *out, struct tw_span src)
{
    if (n->clean_text) {
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
        bool tab_nl = cp == '\t' || cp == '\n' || cp == '\r';
        bool ws = tab_nl || uc_is_whitespace(cp);
        // Removed before spaces are mapped: so U+0085 (Cc and White_Space) goes, as in HF.
        bool control = !tab_nl && (k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF ||
                                   k == UTF8PROC_CATEGORY_CN || k == UTF8PROC_CATEGORY_CO ||
                                   k == UTF8PROC_CATEGORY_CS);
        if (cp == 0 || cp == 0xFFFD || control)
            return 0;
        if (ws)
            cp = ' ';
    }
    bool pad = n->chinese_chars && is_chinese(cp);
    int rc = pad ? put_cp(out, ' ', src) : 0;
    if (rc)
        return rc;
    // strip accents: NFD, then drop non-spacing marks; then lower case.
    utf8proc_int32_t dec[32];
    utf8proc_ssize_t nd = 1;
    dec[0] = (utf8proc_int32_t)cp;
    if (n->strip_accents) {
        int last = 0;
        nd = utf8proc_decompose_char((utf8proc_int32_t)cp, dec, 32, UTF8PROC_DECOMPOSE, &last);
        if (nd < 0 || nd > 32) {
            nd = 1;
            dec[0] = (utf8proc_int32_t)cp;
        }
    }
    for (utf8proc_ssize_t i = 0; !rc && i < nd; i++) {
        uint32_t c = (uint32_t)dec[i];
        if (n->strip_accents && utf8proc_category(dec[i]) == UTF8PROC_CATEGORY_MN)
            continue;
        rc = n->lowercase ? lower_char(c, out, src) : put_cp(out, c, src);
    }
    if (!rc && pad)
        rc = put_cp(out, ' ', src);
    return rc;
}

static int map_chars(const struct norm *n, char_map_fn fn, struct nstr *out, const struct nstr *in)
{
    const char *s = in->b.data;
    size_t len = in->b.len;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = tw_utf8_decode(s + i, len - i, &cp);
        int rc = fn(n, cp, out, span_of(in, i, i + l));
        if (rc)
            return rc;
        i += l;
    }
    return 0;
}

struct replace_ctx {
    const struct norm *n;
    struct nstr *out;
    const struct nstr *in;
    size_t done;
    int rc;
};

static int replace_hit(void *c, size_t start, size_t end)
{
    struct replace_ctx *r = c;
    r->rc = nstr_copy(r->out, r->in, r->done, start);
    if (!r->rc && end > start)
        r->rc = nstr_put(r->out, r->n->content, r->n->content_len, span_of(r->in, start, end));
    r->done = end;
    return r->rc;
}

static int strip(struct nstr *out, const struct nstr *in, bool left, bool right)
{
    const char *s = in->b.data;
    size_t from = 0, to = in->b.len;
    while (left && from < to) {
        uint32_t cp;
        size_t l = tw_utf8_decode(s + from, to - from, &cp);
        if (!uc_is_whitespace(cp))
            break;
        from += l;
    }
    while (right && to > from) {
        size_t b = to - 1;
        while (b > from && ((unsigned char)s[b] & 0xC0) == 0x80)
            b--;
        uint32_t cp;
        tw_utf8_decode(s + b, to - b, &cp);
        if (!uc_is_whitespace(cp))
            break;
        to = b;
    }
    return nstr_copy(out, in, from, to);
}

int norm_apply(const struct norm *n, struct nstr *s, struct nstr *tmp, pcre2_match_data *md)
{
    if (n->type == NORM_SEQUENCE) {
        for (size_t i = 0; i < n->n_kids; i++) {
            int rc = norm_apply(&n->kids[i], s, tmp, md);
            if (rc)
                return rc;
        }
        return 0;
    }
    nstr_clear(tmp);
    int rc = 0;
    switch (n->type) {
    case NORM_NFC:
        rc = unicode_norm(tmp, s, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        break;
    case NORM_NFD:
        rc = unicode_norm(tmp, s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
        break;
    case NORM_NFKC:
        rc = unicode_norm(tmp, s, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
        break;
    case NORM_NFKD:
        rc = unicode_norm(tmp, s, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
        break;
    case NORM_LOWERCASE:
        rc = map_chars(n, map_lower, tmp, s);
        break;
    case NORM_STRIP_ACCENTS:
        rc = map_chars(n, map_strip_accents, tmp, s);
        break;
    case NORM_BERT:
        rc = map_chars(n, map_bert, tmp, s);
        break;
    case NORM_STRIP:
        rc = strip(tmp, s, n->left, n->right);
        break;
    case NORM_PREPEND:
        if (s->b.len == 0)
            return 0;
        rc = nstr_put(tmp, n->content, n->content_len, span_of(s, 0, 1));
        if (!rc)
            rc = nstr_copy(tmp, s, 0, s->b.len);
        break;
    case NORM_REPLACE: {
        struct replace_ctx r = { n, tmp, s, 0, 0 };
        rc = pattern_each(&n->pat, md, s->b.data, s->b.len, replace_hit, &r);
        if (!rc)
            rc = r.rc;
        if (!rc)
            rc = nstr_copy(tmp, s, r.done, s->b.len);
        break;
    }
    case NORM_SEQUENCE:
        break;
    }
    if (rc)
        return rc;
    nstr_swap(s, tmp);
    return 0;
}

// The encode pipeline: invalid UTF-8 replaced (spans mapped back to the caller's bytes),
// added tokens split out of the raw text (leftmost-longest, with lstrip/rstrip/single_word),
// then per segment: normalizer, normalized added tokens, pre-tokenizer, model; then the
// post-processor's special tokens when asked.
#include <pthread.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "text/tokenizer_int.h"
#include "text/utf8.h"

// A thread's working memory, kept between calls: buffers, the regex match data, and the
// memo of encoded words of the tokenizer it last served.
struct workspace {
    uint64_t uid; // the tokenizer the memo belongs to
    struct bpe_cache cache;
    struct nstr s, tmp;
    tw_vec toks, scratch;
    pcre2_match_data *md;
};

struct enc {
    const tw_tokenizer *t;
    const char *text; // valid UTF-8
    size_t len;
    const uint32_t *remap; // text byte -> caller byte (len + 1 entries), or NULL
    struct nstr s, tmp;
    tw_vec toks, scratch;
    struct bpe_cache *cache;
    pcre2_match_data *md;
    tw_vec *ids, *spans;
};

static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

static void ws_destroy(void *p)
{
    struct workspace *w = p;
    if (!w)
        return;
    bpe_cache_free(&w->cache);
    nstr_free(&w->s);
    nstr_free(&w->tmp);
    tw_vec_free(&w->toks);
    tw_vec_free(&w->scratch);
    pcre2_match_data_free(w->md);
    tw_free(w);
}

static void ws_key_create(void)
{
    pthread_key_create(&ws_key, ws_destroy);
}

void tw_tokenizer_thread_cleanup(void)
{
    pthread_once(&ws_once, ws_key_create);
    ws_destroy(pthread_getspecific(ws_key));
    pthread_setspecific(ws_key, NULL);
}

static struct workspace *workspace(const tw_tokenizer *t)
{
    pthread_once(&ws_once, ws_key_create);
    struct workspace *w = pthread_getspecific(ws_key);
    if (!w) {
        w = tw_calloc(1, sizeof *w);
        if (!w)
            return NULL;
        bpe_cache_init(&w->cache);
        nstr_init(&w->s);
        nstr_init(&w->tmp);
        tw_vec_init(&w->toks, sizeof(struct tok));
        tw_vec_init(&w->scratch, 1);
        w->md = pcre2_match_data_create(4, NULL);
        if (!w->md || pthread_setspecific(ws_key, w) != 0) {
            ws_destroy(w);
            return NULL;
        }
    }
    if (w->uid != t->uid) {
        bpe_cache_clear(&w->cache);
        w->uid = t->uid;
    }
    return w;
}

static uint32_t orig(const struct enc *e, uint32_t at)
{
    return e->remap ? e->remap[at] : at;
}

static int emit(struct enc *e, int32_t id, uint32_t start, uint32_t end)
{
    int rc = tw_vec_push(e->ids, &id);
    if (!rc && e->spans)
        rc = tw_vec_push(e->spans, &(struct tw_span){ orig(e, start), orig(e, end) });
    return rc;
}

// Runs the model over every piece of e->s and emits the tokens.
static int run_model(struct enc *e)
{
    const struct tw_span *pieces = e->s.pieces.data;
    const struct tw_span *a = e->s.a.data;
    const char *b = e->s.b.data;
    for (size_t i = 0; i < e->s.pieces.len; i++) {
        struct tw_span pc = pieces[i];
        e->toks.len = 0;
        int rc = model_encode(&e->t->model, b + pc.start, pc.end - pc.start, &e->toks, &e->scratch,
                              e->cache);
        const struct tok *tk = e->toks.data;
        for (size_t k = 0; !rc && k < e->toks.len; k++)
            rc = emit(e, tk[k].id, a[pc.start + tk[k].start].start,
                      a[pc.start + tk[k].end - 1].end);
        if (rc)
            return rc;
    }
    return 0;
}

static int pretokenize_and_model(struct enc *e, uint32_t from, uint32_t to)
{
    e->s.pieces.len = 0;
    if (to <= from)
        return 0;
    int rc = tw_vec_push(&e->s.pieces, &(struct tw_span){ from, to });
    if (!rc && e->t->has_pre)
        rc = pretok_apply(&e->t->pre, &e->s, &e->tmp, e->md);
    return rc ? rc : run_model(e);
}

// One segment of text between raw added tokens: text[from, to).
static int encode_segment(struct enc *e, uint32_t from, uint32_t to)
{
    if (to <= from)
        return 0;
    nstr_clear(&e->s);
    int rc = tw_vec_append(&e->s.b, e->text + from, to - from);
    if (!rc)
        rc = tw_vec_resize(&e->s.a, to - from);
    if (rc)
        return rc;
    struct tw_span *a = e->s.a.data;
    for (uint32_t i = from; i < to;) {
        uint32_t cp;
        uint32_t l = (unsigned char)e->text[i] < 0x80
                         ? 1
                         : (uint32_t)tw_utf8_decode(e->text + i, to - i, &cp);
        for (uint32_t k = 0; k < l; k++)
            a[i - from + k] = (struct tw_span){ i, i + l };
        i += l;
    }
    if (e->t->has_norm && (rc = norm_apply(&e->t->norm, &e->s, &e->tmp, e->md)) != 0)
        return rc;
    const struct trie *nt = &e->t->normalized;
    if (nt->empty)
        return pretokenize_and_model(e, 0, (uint32_t)e->s.b.len);
    // Normalized added tokens: split the normalized text on them.
    const char *b = e->s.b.data;
    uint32_t n = (uint32_t)e->s.b.len, seg = 0;
    for (uint32_t i = 0; i < n;) {
        size_t ml;
        int32_t k =
            trie_may_start(nt, (unsigned char)b[i]) ? trie_longest(nt, b + i, n - i, &ml) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        rc = pretokenize_and_model(e, seg, i);
        const struct added *ad = tw_vec_at(&e->t->added, (size_t)k);
        const struct tw_span *sa = e->s.a.data;
        if (!rc)
            rc = emit(e, ad->id, sa[i].start, sa[i + ml - 1].end);
        if (rc)
            return rc;
        i += (uint32_t)ml;
        seg = i;
    }
    return pretokenize_and_model(e, seg, n);
}

static bool is_word_char(uint32_t cp)
{
    return cp == '_' || uc_is_alnum(cp);
}

static bool word_before(const char *s, size_t at)
{
    if (at == 0)
        return false;
    size_t b = at - 1;
    while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80)
        b--;
    uint32_t cp;
    tw_utf8_decode(s + b, at - b, &cp);
    return is_word_char(cp);
}

static bool word_at(const char *s, size_t at, size_t n)
{
    uint32_t cp;
    return at < n && (tw_utf8_decode(s + at, n - at, &cp), is_word_char(cp));
}

// Whitespace-extended bounds of an added-token match (lstrip / rstrip), never before `floor`.
static void strip_bounds(const struct added *ad, const char *s, size_t n, size_t floor,
                         size_t *start, size_t *end)
{
    while (ad->lstrip && *start > floor) {
        size_t b = *start - 1;
        while (b > floor && ((unsigned char)s[b] & 0xC0) == 0x80)
            b--;
        uint32_t cp;
        tw_utf8_decode(s + b, *start - b, &cp);
        if (!uc_is_whitespace(cp))
            break;
        *start = b;
    }
    while (ad->rstrip && *end < n) {
        uint32_t cp;
        size_t l = tw_utf8_decode(s + *end, n - *end, &cp);
        if (!uc_is_whitespace(cp))
            break;
        *end += l;
    }
}

static int encode_text(struct enc *e)
{
    const struct trie *rt = &e->t->raw;
    const char *s = e->text;
    size_t n = e->len, seg = 0;
    for (size_t i = 0; !rt->empty && i < n;) {
        size_t ml;
        int32_t k =
            trie_may_start(rt, (unsigned char)s[i]) ? trie_longest(rt, s + i, n - i, &ml) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const struct added *ad = tw_vec_at(&e->t->added, (size_t)k);
        if (ad->single_word && (word_before(s, i) || word_at(s, i + ml, n))) {
            i += ml;
            continue;
        }
        size_t start = i, end = i + ml;
        strip_bounds(ad, s, n, seg, &start, &end);
        int rc = encode_segment(e, (uint32_t)seg, (uint32_t)start);
        if (!rc)
            rc = emit(e, ad->id, (uint32_t)start, (uint32_t)end);
        if (rc)
            return rc;
        i = seg = end;
    }
    return encode_segment(e, (uint32_t)seg, (uint32_t)n);
}

// Valid UTF-8 copy of text with U+FFFD for invalid parts, and where each byte came from.
static int sanitize(const char *text, size_t len, tw_str *out, uint32_t **remap)
{
    int rc = tw_utf8_sanitize(text, len, out);
    if (rc)
        return rc;
    size_t n = tw_str_len(out);
    uint32_t *m = tw_malloc_array(n + 1, sizeof *m);
    if (!m)
        return tw_error_set(TW_ENOMEM, "out of memory");
    const char *o = tw_str_cstr(out);
    size_t i = 0, j = 0; // i in text, j in out
    while (j < n) {
        uint32_t cp;
        size_t li = tw_utf8_decode(text + i, len - i, &cp);
        size_t lo = tw_utf8_decode(o + j, n - j, &cp);
        for (size_t k = 0; k < lo; k++)
            m[j + k] = (uint32_t)i;
        i += li;
        j += lo;
    }
    m[n] = (uint32_t)len;
    *remap = m;
    return 0;
}

int tw_tokenizer_encode(const tw_tokenizer *t, const char *text, size_t len, int flags,
                        tw_vec *ids, tw_vec *spans)
{
    if (len > UINT32_MAX - 8)
        return tw_error_set(TW_ELIMIT, "tokenizer: text of %zu bytes is over 4 GiB", len);
    struct enc e = { .t = t, .text = text, .len = len, .ids = ids, .spans = spans };
    tw_str clean;
    tw_str_init(&clean);
    uint32_t *remap = NULL;
    int rc = 0;
    if (!tw_utf8_valid(text, len)) {
        rc = sanitize(text, len, &clean, &remap);
        e.text = tw_str_cstr(&clean);
        e.len = tw_str_len(&clean);
        e.remap = remap;
    }
    struct workspace *ws = rc ? NULL : workspace(t);
    if (!rc && !ws)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (ws) {
        e.s = ws->s;
        e.tmp = ws->tmp;
        e.toks = ws->toks;
        e.scratch = ws->scratch;
        e.md = ws->md;
        e.cache = &ws->cache;
    }
    size_t first = ids->len, first_span = spans ? spans->len : 0;
    const int32_t *pre = t->post_prefix.data, *suf = t->post_suffix.data;
    for (size_t i = 0; !rc && (flags & TW_TOK_ADD_SPECIAL) && i < t->post_prefix.len; i++)
        rc = tw_vec_push(ids, &pre[i]) || (spans && tw_vec_push(spans, &(struct tw_span){ 0, 0 }));
    if (!rc)
        rc = encode_text(&e);
    for (size_t i = 0; !rc && (flags & TW_TOK_ADD_SPECIAL) && i < t->post_suffix.len; i++) {
        uint32_t end = (uint32_t)len;
        rc = tw_vec_push(ids, &suf[i]) ||
             (spans && tw_vec_push(spans, &(struct tw_span){ end, end }));
    }
    if (rc) {
        rc = tw_error_code() ? tw_error_code() : TW_ENOMEM;
        ids->len = first; // the caller's vectors as they were
        if (spans)
            spans->len = first_span;
    }
    if (ws) { // keep the buffers for the next call, unless a huge text made them huge
        ws->s = e.s;
        ws->tmp = e.tmp;
        ws->toks = e.toks;
        ws->scratch = e.scratch;
        if (ws->s.a.cap > ((size_t)8 << 20)) {
            nstr_free(&ws->s);
            nstr_free(&ws->tmp);
        }
    }
    tw_free(remap);
    tw_str_free(&clean);
    return rc;
}

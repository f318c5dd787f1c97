// The decode pipeline: ids → token strings (added tokens by content, special ones left out on
// request) → the decoders of tokenizer.json (ByteLevel, ByteFallback, Fuse, Replace, Strip,
// Metaspace, WordPiece, Sequence), each a step over the list of strings as in HF's
// decode_chain; the list is joined at the end.
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "text/tokenizer_int.h"
#include "text/utf8.h"

// A list of strings: tw_vec of tw_str.
static void list_free(tw_vec *l)
{
    for (size_t i = 0; i < l->len; i++)
        tw_str_free(tw_vec_at(l, i));
    tw_vec_free(l);
}

static int list_push(tw_vec *l, const char *s, size_t n)
{
    tw_str t;
    tw_str_init(&t);
    int rc = tw_str_append(&t, s, n);
    if (!rc)
        rc = tw_vec_push(l, &t);
    if (rc)
        tw_str_free(&t);
    return rc;
}

// Replaces *l by *next (freeing the old list).
static void list_take(tw_vec *l, tw_vec *next)
{
    list_free(l);
    *l = *next;
}

static int dec_bytelevel(tw_vec *l)
{
    tw_str bytes;
    tw_str_init(&bytes);
    int rc = 0;
    for (size_t i = 0; i < l->len && !rc; i++) {
        tw_str *t = tw_vec_at(l, i);
        const char *s = tw_str_cstr(t);
        size_t n = tw_str_len(t), mark = tw_str_len(&bytes);
        bool all = true;
        for (size_t k = 0; k < n && all && !rc;) {
            uint32_t cp;
            k += tw_utf8_decode(s + k, n - k, &cp);
            int b = bytelevel_byte(cp);
            if (b < 0)
                all = false;
            else
                rc = tw_str_putc(&bytes, (char)b);
        }
        if (!all) { // a character outside the table: the token's own bytes
            tw_str_truncate(&bytes, mark);
            rc = tw_str_append(&bytes, s, n);
        }
    }
    tw_vec next;
    tw_vec_init(&next, sizeof(tw_str));
    tw_str fixed;
    tw_str_init(&fixed);
    if (!rc)
        rc = tw_utf8_sanitize(tw_str_cstr(&bytes), tw_str_len(&bytes), &fixed);
    if (!rc)
        rc = list_push(&next, tw_str_cstr(&fixed), tw_str_len(&fixed));
    tw_str_free(&fixed);
    tw_str_free(&bytes);
    if (rc) {
        list_free(&next);
        return rc;
    }
    list_take(l, &next);
    return 0;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

static int flush_bytes(tw_vec *next, tw_str *pending)
{
    int rc = 0;
    size_t n = tw_str_len(pending);
    if (!n)
        return 0;
    if (tw_utf8_valid(tw_str_cstr(pending), n))
        rc = list_push(next, tw_str_cstr(pending), n);
    else // one U+FFFD per byte, as HF's ByteFallback does
        for (size_t i = 0; i < n && !rc; i++)
            rc = list_push(next, "\xEF\xBF\xBD", 3);
    tw_str_clear(pending);
    return rc;
}

static int dec_bytefallback(tw_vec *l)
{
    tw_vec next;
    tw_vec_init(&next, sizeof(tw_str));
    tw_str pending;
    tw_str_init(&pending);
    int rc = 0;
    for (size_t i = 0; i < l->len && !rc; i++) {
        tw_str *t = tw_vec_at(l, i);
        const char *s = tw_str_cstr(t);
        int hi, lo;
        if (tw_str_len(t) == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' &&
            (hi = hexval(s[3])) >= 0 && (lo = hexval(s[4])) >= 0) {
            rc = tw_str_putc(&pending, (char)(hi * 16 + lo));
            continue;
        }
        rc = flush_bytes(&next, &pending);
        if (!rc)
            rc = list_push(&next, s, tw_str_len(t));
    }
    if (!rc)
        rc = flush_bytes(&next, &pending);
    tw_str_free(&pending);
    if (rc) {
        list_free(&next);
        return rc;
    }
    list_take(l, &next);
    return 0;
}

static int dec_fuse(tw_vec *l)
{
    if (l->len <= 1)
        return 0;
    tw_str *first = tw_vec_at(l, 0);
    for (size_t i = 1; i < l->len; i++) {
        tw_str *t = tw_vec_at(l, i);
        int rc = tw_str_append(first, tw_str_cstr(t), tw_str_len(t));
        if (rc)
            return rc;
        tw_str_free(t);
    }
    l->len = 1;
    return 0;
}

struct repl {
    const char *s;
    const char *content;
    tw_str *out;
    size_t done;
    int rc;
};

static int repl_hit(void *c, size_t start, size_t end)
{
    struct repl *r = c;
    r->rc = tw_str_append(r->out, r->s + r->done, start - r->done);
    if (!r->rc)
        r->rc = tw_str_puts(r->out, r->content);
    r->done = end;
    return r->rc;
}

static int dec_replace(const struct dec *d, tw_vec *l, pcre2_match_data *md)
{
    tw_str out;
    tw_str_init(&out);
    int rc = 0;
    for (size_t i = 0; i < l->len && !rc; i++) {
        tw_str *t = tw_vec_at(l, i);
        tw_str_clear(&out);
        struct repl r = { tw_str_cstr(t), d->content, &out, 0, 0 };
        rc = pattern_each(&d->pat, md, r.s, tw_str_len(t), repl_hit, &r);
        if (!rc)
            rc = r.rc;
        if (!rc)
            rc = tw_str_append(&out, r.s + r.done, tw_str_len(t) - r.done);
        if (!rc) {
            tw_str tmp = *t;
            *t = out;
            out = tmp;
        }
    }
    tw_str_free(&out);
    return rc;
}

static int dec_strip(const struct dec *d, tw_vec *l)
{
    char c[4];
    size_t cl = tw_utf8_encode(d->strip_char, c);
    for (size_t i = 0; i < l->len; i++) {
        tw_str *t = tw_vec_at(l, i);
        const char *s = tw_str_cstr(t);
        size_t n = tw_str_len(t), from = 0, to = n;
        for (size_t k = 0; k < d->start && to - from >= cl && memcmp(s + from, c, cl) == 0; k++)
            from += cl;
        for (size_t k = 0; k < d->stop && to - from >= cl && memcmp(s + to - cl, c, cl) == 0; k++)
            to -= cl;
        memmove((char *)t->v.data, s + from, to - from);
        tw_str_truncate(t, to - from);
    }
    return 0;
}

static int dec_metaspace(const struct dec *d, tw_vec *l, pcre2_match_data *md)
{
    struct dec rep = { .type = DEC_REPLACE,
                       .pat = { .lit = (char *)d->replacement, .lit_len = strlen(d->replacement) },
                       .content = " " };
    int rc = dec_replace(&rep, l, md);
    if (!rc && l->len && d->prepend_scheme != 2) {
        tw_str *t = tw_vec_at(l, 0);
        if (tw_str_len(t) && tw_str_cstr(t)[0] == ' ') {
            memmove(t->v.data, tw_str_cstr(t) + 1, tw_str_len(t) - 1);
            tw_str_truncate(t, tw_str_len(t) - 1);
        }
    }
    return rc;
}

// HF's wordpiece cleanup: spaces before punctuation and English contractions.
static int cleanup(tw_str *t, pcre2_match_data *md)
{
    static const char *const from[] = { " .",  " ?",      " !",  " ,",   " ' ", " n't",
                                        " 'm", " do not", " 's", " 've", " 're" };
    static const char *const to[] = { ".",  "?",      "!",  ",",   "'",  "n't",
                                      "'m", " don't", "'s", "'ve", "'re" };
    tw_vec one;
    tw_vec_init(&one, sizeof(tw_str));
    int rc = tw_vec_push(&one, t);
    for (size_t i = 0; !rc && i < sizeof from / sizeof from[0]; i++) {
        struct dec rep = { .type = DEC_REPLACE,
                           .pat = { .lit = (char *)from[i], .lit_len = strlen(from[i]) },
                           .content = (char *)to[i] };
        rc = dec_replace(&rep, &one, md);
    }
    *t = TW_VEC_AT(&one, tw_str, 0);
    tw_vec_free(&one);
    return rc;
}

static int dec_wordpiece(const struct dec *d, tw_vec *l, pcre2_match_data *md)
{
    size_t pl = strlen(d->prefix);
    int rc = 0;
    for (size_t i = 0; i < l->len && !rc; i++) {
        tw_str *t = tw_vec_at(l, i);
        if (i != 0) {
            if (tw_str_len(t) >= pl && memcmp(tw_str_cstr(t), d->prefix, pl) == 0) {
                memmove(t->v.data, tw_str_cstr(t) + pl, tw_str_len(t) - pl);
                tw_str_truncate(t, tw_str_len(t) - pl);
            } else {
                tw_str s;
                tw_str_init(&s);
                rc = tw_str_putc(&s, ' ');
                if (!rc)
                    rc = tw_str_append(&s, tw_str_cstr(t), tw_str_len(t));
                if (rc) {
                    tw_str_free(&s);
                    break;
                }
                tw_str_free(t);
                *t = s;
            }
        }
        if (d->cleanup)
            rc = cleanup(t, md);
    }
    return rc;
}

static int run_dec(const struct dec *d, tw_vec *l, pcre2_match_data *md)
{
    switch (d->type) {
    case DEC_BYTELEVEL:
        return dec_bytelevel(l);
    case DEC_BYTEFALLBACK:
        return dec_bytefallback(l);
    case DEC_FUSE:
        return dec_fuse(l);
    case DEC_REPLACE:
        return dec_replace(d, l, md);
    case DEC_STRIP:
        return dec_strip(d, l);
    case DEC_METASPACE:
        return dec_metaspace(d, l, md);
    case DEC_WORDPIECE:
        return dec_wordpiece(d, l, md);
    case DEC_SEQUENCE:
        for (size_t i = 0; i < d->n_kids; i++) {
            int rc = run_dec(&d->kids[i], l, md);
            if (rc)
                return rc;
        }
        return 0;
    }
    return 0;
}

int tw_tokenizer_decode(const tw_tokenizer *t, const int32_t *ids, size_t n, int flags,
                        tw_str *out)
{
    tw_vec l;
    tw_vec_init(&l, sizeof(tw_str));
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t k;
        if (tw_map_get_u64(&t->added_by_id, (uint64_t)(uint32_t)ids[i], &k)) {
            const struct added *a = tw_vec_at(&t->added, (size_t)k);
            if (!(a->special && (flags & TW_TOK_SKIP_SPECIAL)))
                rc = list_push(&l, a->content, a->len);
        } else if (ids[i] >= 0 && ids[i] < t->model.n_pieces && t->model.pieces[ids[i]]) {
            const char *p = t->model.pieces[ids[i]];
            rc = list_push(&l, p, strlen(p));
        } // unknown ids are left out, as HF does
    }
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    if (!rc && !md)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc && t->has_dec)
        rc = run_dec(&t->dec, &l, md);
    for (size_t i = 0; i < l.len && !rc; i++) {
        tw_str *s = tw_vec_at(&l, i);
        if (!t->has_dec && i > 0)
            rc = tw_str_putc(out, ' ');
        if (!rc)
            rc = tw_str_append(out, tw_str_cstr(s), tw_str_len(s));
    }
    pcre2_match_data_free(md);
    list_free(&l);
    return rc;
}

void tw_detok_init(struct tw_detok *d)
{
    d->prefix = d->read = 0;
    tw_str_init(&d->win);
}

void tw_detok_free(struct tw_detok *d)
{
    tw_str_free(&d->win);
}

int tw_tokenizer_decode_next(const tw_tokenizer *t, const int32_t *ids, size_t n, int flags,
                             bool final, struct tw_detok *d, tw_str *out)
{
    if (n < d->read)
        return tw_error_set(TW_EINVAL, "decode: %zu ids, fewer than the %zu already given", n,
                            d->read);
    // The text of [prefix, read), then of [prefix, n): what the new ids add is the second's
    // tail. The window starts a token before the new ones, so that what a decoder does at the
    // start of a text (SentencePiece's Strip of the first space) does not touch them.
    tw_str_clear(&d->win);
    int rc = tw_tokenizer_decode(t, ids + d->prefix, d->read - d->prefix, flags, &d->win);
    size_t old = d->win.v.len;
    tw_str_clear(&d->win);
    if (!rc)
        rc = tw_tokenizer_decode(t, ids + d->prefix, n - d->prefix, flags, &d->win);
    if (rc)
        return rc;
    const char *w = tw_str_cstr(&d->win);
    size_t len = d->win.v.len;
    bool incomplete = len >= 3 && memcmp(w + len - 3, "\xEF\xBF\xBD", 3) == 0;
    if (len <= old || (incomplete && !final))
        return 0;
    d->prefix = d->read;
    d->read = n;
    return tw_str_append(out, w + old, len - old);
}

int32_t tw_tokenizer_vocab_size(const tw_tokenizer *t)
{
    return t->vocab_size;
}

const char *tw_tokenizer_id_to_piece(const tw_tokenizer *t, int32_t id)
{
    uint64_t k;
    if (tw_map_get_u64(&t->added_by_id, (uint64_t)(uint32_t)id, &k))
        return ((const struct added *)tw_vec_at(&t->added, (size_t)k))->content;
    if (id >= 0 && id < t->model.n_pieces)
        return t->model.pieces[id];
    return NULL;
}

int32_t tw_tokenizer_piece_to_id(const tw_tokenizer *t, const char *piece, size_t len)
{
    for (size_t i = 0; i < t->added.len; i++) {
        const struct added *a = tw_vec_at(&t->added, i);
        if (a->len == len && memcmp(a->content, piece, len) == 0)
            return a->id;
    }
    for (int32_t i = 0; i < t->model.n_pieces; i++) // by the spelling in the file
        if (t->model.pieces[i] && strlen(t->model.pieces[i]) == len &&
            memcmp(t->model.pieces[i], piece, len) == 0)
            return i;
    return -1;
}

int32_t tw_tokenizer_bos(const tw_tokenizer *t)
{
    return t->bos;
}

int32_t tw_tokenizer_eos(const tw_tokenizer *t)
{
    return t->eos;
}

int32_t tw_tokenizer_pad(const tw_tokenizer *t)
{
    return t->pad;
}

const char *tw_tokenizer_chat_template(const tw_tokenizer *t)
{
    return t->chat_template;
}

// The BPE model of HF tokenizers: vocabulary and ranked merges from tokenizer.json, byte-level
// vocabularies turned back into raw bytes (GPT-2's bytes_to_unicode table), and the merge loop:
// repeatedly merge the adjacent pair of lowest rank, leftmost first — a linear scan for short
// words, a binary heap for long ones (SentencePiece-style text arrives as one long word).
// Byte fallback (<0xXX> tokens), unknown tokens (fused or not) and ignore_merges as in HF.
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "text/tokenizer_int.h"
#include "text/utf8.h"

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the 68 others to 256 + n in
// byte order (openai/gpt-2 encoder.py, published).
static bool printable(int b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t bytelevel_char(uint8_t b)
{
    if (printable(b))
        return b;
    uint32_t n = 0;
    for (int i = 0; i < b; i++)
        n += !printable(i);
    return 256 + n;
}

int bytelevel_byte(uint32_t cp)
{
    if (cp < 256)
        return printable((int)cp) ? (int)cp : -1;
    uint32_t n = cp - 256;
    for (int b = 0; b < 256; b++)
        if (!printable(b) && n-- == 0)
            return b;
    return -1;
}

// The raw bytes a byte-level token stands for; false when a character is outside the table.
static bool unmap_bytelevel(const char *s, size_t len, tw_str *out)
{
    tw_str_clear(out);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += tw_utf8_decode(s + i, len - i, &cp);
        int b = bytelevel_byte(cp);
        if (b < 0)
            return false;
        if (tw_str_putc(out, (char)b))
            return false;
    }
    return true;
}

int model_add_piece(struct model *m, const char *path, const char *piece, size_t len, int32_t id)
{
    if (id < 0)
        return tw_error_set(TW_EFORMAT, "%s: negative id %d", path, (int)id);
    if (id > TOKENIZER_MAX_ID) // also keeps the doubling below from overflowing
        return tw_error_set(TW_ELIMIT, "%s: id %d is over the limit of %d", path, (int)id,
                            TOKENIZER_MAX_ID);
    if (id >= m->n_pieces) {
        int32_t cap = m->n_pieces ? m->n_pieces : 1024;
        while (cap <= id)
            cap *= 2;
        char **p = tw_realloc(m->pieces, (size_t)cap * sizeof *p);
        if (!p)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        memset(p + m->n_pieces, 0, (size_t)(cap - m->n_pieces) * sizeof *p);
        m->pieces = p;
        m->n_pieces = cap;
    }
    if (!m->pieces[id]) {
        m->pieces[id] = tw_strndup(piece, len);
        if (!m->pieces[id])
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    }
    return 0;
}

int model_parse_vocab(const json_t *vocab, const char *path, struct model *m, tw_map *by_name)
{
    if (!json_is_object(vocab))
        return tw_error_set(TW_EFORMAT, "%s.vocab: expected an object", path);
    const char *key;
    json_t *v;
    tw_str raw;
    tw_str_init(&raw);
    int rc = by_name ? tw_map_reserve(by_name, json_object_size(vocab)) : 0;
    if (!rc)
        rc = tw_map_reserve(&m->vocab, json_object_size(vocab));
    int32_t max_id = -1;
    json_object_foreach((json_t *)vocab, key, v)
    {
        if (rc)
            break;
        size_t klen = strlen(key); // jansson keys are NUL-terminated; vocab keys have no NUL
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > INT32_MAX) {
            rc = tw_error_set(TW_EFORMAT, "%s.vocab[\"%s\"]: expected an id", path, key);
            break;
        }
        int32_t id = (int32_t)json_integer_value(v);
        max_id = id > max_id ? id : max_id;
        rc = by_name ? tw_map_put_str(by_name, key, klen, (uint64_t)id) : 0;
        if (!rc && m->byte_level) {
            if (unmap_bytelevel(key, klen, &raw))
                rc = tw_map_put_str(&m->vocab, tw_str_cstr(&raw), tw_str_len(&raw), (uint64_t)id);
        } else if (!rc) {
            rc = tw_map_put_str(&m->vocab, key, klen, (uint64_t)id);
        }
        if (!rc)
            rc = model_add_piece(m, path, key, klen, id);
    }
    tw_str_free(&raw);
    if (!rc && m->n_pieces > max_id + 1)
        m->n_pieces = max_id + 1;
    return rc;
}

static int lookup(const tw_map *by_name, const char *s, size_t n, int32_t *id)
{
    uint64_t v;
    if (!tw_map_get_str(by_name, s, n, &v))
        return 0;
    *id = (int32_t)v;
    return 1;
}

static int parse_merges(const json_t *merges, const char *path, struct model *m,
                        const tw_map *by_name)
{
    if (!json_is_array(merges))
        return tw_error_set(TW_EFORMAT, "%s.merges: expected an array", path);
    size_t n = json_array_size(merges);
    int rc = tw_map_reserve(&m->merges, n);
    tw_str both;
    tw_str_init(&both);
    for (size_t i = 0; i < n && !rc; i++) {
        const json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(e)) { // "left right"
            const char *s = json_string_value(e);
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                rc = tw_error_set(TW_EFORMAT, "%s.merges[%zu]: expected \"left right\"", path, i);
                break;
            }
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            la = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            lb = json_string_length(json_array_get(e, 1));
        } else {
            rc = tw_error_set(TW_EFORMAT, "%s.merges[%zu]: expected a string or a pair of strings",
                              path, i);
            break;
        }
        int32_t ia, ib, inew;
        tw_str_clear(&both);
        rc = tw_str_append(&both, a, la);
        if (!rc)
            rc = tw_str_append(&both, b, lb);
        if (rc)
            break;
        if (!lookup(by_name, a, la, &ia) || !lookup(by_name, b, lb, &ib) ||
            !lookup(by_name, tw_str_cstr(&both), tw_str_len(&both), &inew)) {
            rc = tw_error_set(TW_EFORMAT, "%s.merges[%zu]: \"%.*s %.*s\": a token not in vocab",
                              path, i, (int)la, a, (int)lb, b);
            break;
        }
        uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        uint64_t old;
        if (tw_map_get_u64(&m->merges, key, &old))
            continue; // the first (lowest) rank wins, as in HF
        rc = tw_map_put_u64(&m->merges, key, (uint64_t)i << 32 | (uint32_t)inew);
    }
    tw_str_free(&both);
    return rc;
}

static const char *opt_string(const json_t *j, const char *key)
{
    const json_t *v = json_object_get(j, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

#define META "\xE2\x96\x81" // U+2581, SentencePiece's space

// Records which characters precede "▁" inside some token. A cut before a "▁" whose
// predecessor is not "▁" and not in that set can never be crossed by a merge: every merge
// makes a vocabulary token, and none contains that pair of characters.
static int find_meta_split(struct model *m)
{
    uint64_t v;
    if (!tw_map_get_str(&m->vocab, META, 3, &v))
        return 0;
    for (int32_t id = 0; id < m->n_pieces; id++) {
        const char *p = m->pieces[id];
        if (!p)
            continue;
        size_t n = strlen(p);
        uint32_t prev = 0;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = tw_utf8_decode(p + i, n - i, &cp);
            if (cp == 0x2581 && i > 0 && prev != 0x2581 &&
                tw_map_put_u64(&m->meta_bad_prev, prev, 1))
                return tw_error_set(TW_ENOMEM, "out of memory");
            prev = cp;
            i += l;
        }
    }
    m->meta_split = true;
    return 0;
}

int bpe_parse(const json_t *j, const char *path, bool byte_level, struct model *m)
{
    m->type = MODEL_BPE;
    m->byte_level = byte_level;
    m->byte_fallback = json_is_true(json_object_get(j, "byte_fallback"));
    m->fuse_unk = json_is_true(json_object_get(j, "fuse_unk"));
    m->ignore_merges = json_is_true(json_object_get(j, "ignore_merges"));
    const json_t *dropout = json_object_get(j, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) > 0)
        return tw_error_set(TW_EUNSUPPORTED, "%s.dropout: BPE dropout is not supported", path);
    const char *pre = opt_string(j, "continuing_subword_prefix");
    const char *suf = opt_string(j, "end_of_word_suffix");
    if ((pre && *pre && !(m->cont_prefix = tw_strdup(pre))) ||
        (suf && *suf && !(m->end_suffix = tw_strdup(suf))))
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    tw_map by_name;
    tw_map_init(&by_name, TW_MAP_STR);
    int rc = model_parse_vocab(json_object_get(j, "vocab"), path, m, &by_name);
    if (!rc)
        rc = parse_merges(json_object_get(j, "merges"), path, m, &by_name);
    const char *unk = opt_string(j, "unk_token");
    m->unk_id = -1;
    if (!rc && unk && !lookup(&by_name, unk, strlen(unk), &m->unk_id))
        rc = tw_error_set(TW_EFORMAT, "%s.unk_token: \"%s\" is not in vocab", path, unk);
    for (int b = 0; !rc && b < 256; b++) {
        m->byte_ids[b] = -1;
        char name[8];
        if (m->byte_level) {
            char one = (char)b;
            uint64_t v;
            if (tw_map_get_str(&m->vocab, &one, 1, &v))
                m->byte_ids[b] = (int32_t)v;
        } else if (m->byte_fallback) {
            snprintf(name, sizeof name, "<0x%02X>", b);
            lookup(&by_name, name, 6, &m->byte_ids[b]);
        }
    }
    tw_map_free(&by_name);
    if (!rc && !m->byte_level && !m->cont_prefix && !m->end_suffix)
        rc = find_meta_split(m);
    return rc;
}

// ---- encoding one word

struct sym {
    int32_t id;
    uint32_t start, end;
    int32_t prev, next;
    uint32_t rank;  // of the pair (this, next); UINT32_MAX when it does not merge
    int32_t merged; // the id that pair merges into
};

static int push_sym(tw_vec *syms, int32_t id, uint32_t start, uint32_t end)
{
    int32_t i = (int32_t)syms->len;
    struct sym s = { id, start, end, i - 1, i + 1, UINT32_MAX, -1 };
    return tw_vec_push(syms, &s);
}

// The initial symbols: bytes (byte-level) or characters, with byte fallback and unknowns.
static int initial_symbols(const struct model *m, const char *w, size_t n, tw_vec *syms)
{
    syms->len = 0;
    if (m->byte_level) {
        for (size_t i = 0; i < n; i++) {
            int32_t id = m->byte_ids[(unsigned char)w[i]];
            int rc = id >= 0 ? push_sym(syms, id, (uint32_t)i, (uint32_t)i + 1) : 0;
            if (rc)
                return rc;
        }
        return 0;
    }
    tw_str key;
    tw_str_init(&key);
    int rc = 0;
    int32_t unk_start = -1, unk_end = -1; // a pending unknown symbol
    for (size_t i = 0; i < n && !rc;) {
        uint32_t cp;
        size_t l = tw_utf8_decode(w + i, n - i, &cp);
        const char *s = w + i;
        size_t sl = l;
        if ((m->cont_prefix && i > 0) || (m->end_suffix && i + l == n)) {
            tw_str_clear(&key);
            if (m->cont_prefix && i > 0)
                rc = tw_str_puts(&key, m->cont_prefix);
            if (!rc)
                rc = tw_str_append(&key, w + i, l);
            if (!rc && m->end_suffix && i + l == n)
                rc = tw_str_puts(&key, m->end_suffix);
            s = tw_str_cstr(&key);
            sl = tw_str_len(&key);
        }
        uint64_t v;
        bool fallback = false;
        if (!rc && tw_map_get_str(&m->vocab, s, sl, &v)) {
            if (unk_start >= 0)
                rc = push_sym(syms, m->unk_id, (uint32_t)unk_start, (uint32_t)unk_end);
            unk_start = -1;
            if (!rc)
                rc = push_sym(syms, (int32_t)v, (uint32_t)i, (uint32_t)(i + l));
        } else if (!rc && m->byte_fallback) {
            fallback = true;
            for (size_t k = 0; k < l; k++)
                fallback &= m->byte_ids[(unsigned char)w[i + k]] >= 0;
            if (fallback) {
                if (unk_start >= 0)
                    rc = push_sym(syms, m->unk_id, (uint32_t)unk_start, (uint32_t)unk_end);
                unk_start = -1;
                for (size_t k = 0; k < l && !rc; k++)
                    rc = push_sym(syms, m->byte_ids[(unsigned char)w[i + k]], (uint32_t)(i + k),
                                  (uint32_t)(i + k + 1));
            }
        }
        if (!rc && !fallback && !tw_map_get_str(&m->vocab, s, sl, &v) && m->unk_id >= 0) {
            if (unk_start >= 0 && m->fuse_unk) {
                unk_end = (int32_t)(i + l);
            } else {
                if (unk_start >= 0)
                    rc = push_sym(syms, m->unk_id, (uint32_t)unk_start, (uint32_t)unk_end);
                unk_start = (int32_t)i;
                unk_end = (int32_t)(i + l);
            }
        }
        i += l;
    }
    if (!rc && unk_start >= 0)
        rc = push_sym(syms, m->unk_id, (uint32_t)unk_start, (uint32_t)unk_end);
    tw_str_free(&key);
    return rc;
}

static bool pair_rank(const struct model *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id)
{
    uint64_t v;
    if (!tw_map_get_u64(&m->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v))
        return false;
    *rank = (uint32_t)(v >> 32);
    *id = (int32_t)(uint32_t)v;
    return true;
}

static void merge_at(struct sym *s, int32_t i, int32_t id, int32_t n)
{
    int32_t j = s[i].next;
    s[i].id = id;
    s[i].end = s[j].end;
    s[i].next = s[j].next;
    if (s[j].next < n)
        s[s[j].next].prev = i;
    s[j].id = -1; // gone
}

static void set_pair(const struct model *m, struct sym *s, int32_t i, int32_t n)
{
    if (i < 0 || i >= n)
        return;
    if (s[i].next >= n || !pair_rank(m, s[i].id, s[s[i].next].id, &s[i].rank, &s[i].merged))
        s[i].rank = UINT32_MAX;
}

// Short words: find the pair of lowest rank (leftmost on ties) among the ranks kept on the
// symbols, merge it, update the two pairs it touched, repeat.
static void merge_scan(const struct model *m, struct sym *s, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        set_pair(m, s, i, n);
    for (;;) {
        uint32_t best = UINT32_MAX;
        int32_t at = -1;
        for (int32_t i = 0; i < n; i = s[i].next)
            if (s[i].rank < best) {
                best = s[i].rank;
                at = i;
            }
        if (at < 0)
            return;
        merge_at(s, at, s[at].merged, n);
        set_pair(m, s, at, n);
        set_pair(m, s, s[at].prev, n);
    }
}

struct cand {
    uint32_t rank;
    int32_t pos, id;
};

static bool cand_less(const struct cand *a, const struct cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(tw_vec *h, struct cand c)
{
    int rc = tw_vec_push(h, &c);
    if (rc)
        return rc;
    struct cand *a = h->data;
    for (size_t i = h->len - 1; i > 0;) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&a[i], &a[p]))
            break;
        struct cand t = a[i];
        a[i] = a[p];
        a[p] = t;
        i = p;
    }
    return 0;
}

static struct cand heap_pop(tw_vec *h)
{
    struct cand *a = h->data, top = a[0];
    a[0] = a[--h->len];
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->len && cand_less(&a[l], &a[m]))
            m = l;
        if (r < h->len && cand_less(&a[r], &a[m]))
            m = r;
        if (m == i)
            break;
        struct cand t = a[i];
        a[i] = a[m];
        a[m] = t;
        i = m;
    }
    return top;
}

static int heap_offer(const struct model *m, tw_vec *h, const struct sym *s, int32_t i, int32_t n)
{
    uint32_t r;
    int32_t id;
    if (i < 0 || i >= n || s[i].next >= n || !pair_rank(m, s[i].id, s[s[i].next].id, &r, &id))
        return 0;
    return heap_push(h, (struct cand){ r, i, id });
}

// Long words: a heap of candidate merges ordered by (rank, position); stale ones are skipped.
static int merge_heap(const struct model *m, struct sym *s, int32_t n)
{
    tw_vec h;
    tw_vec_init(&h, sizeof(struct cand));
    int rc = tw_vec_reserve(&h, (size_t)n);
    for (int32_t i = 0; !rc && i + 1 < n; i++)
        rc = heap_offer(m, &h, s, i, n);
    while (!rc && h.len) {
        struct cand c = heap_pop(&h);
        int32_t i = c.pos;
        if (s[i].id < 0 || s[i].next >= n)
            continue;
        uint32_t r;
        int32_t id;
        if (!pair_rank(m, s[i].id, s[s[i].next].id, &r, &id) || id != c.id)
            continue;
        merge_at(s, i, c.id, n);
        rc = heap_offer(m, &h, s, s[i].prev, n);
        if (!rc)
            rc = heap_offer(m, &h, s, i, n);
    }
    tw_vec_free(&h);
    return rc;
}

void bpe_cache_init(struct bpe_cache *c)
{
    tw_map_init(&c->words, TW_MAP_STR);
    tw_vec_init(&c->toks, sizeof(struct tok));
}

void bpe_cache_free(struct bpe_cache *c)
{
    tw_map_free(&c->words);
    tw_vec_free(&c->toks);
}

void bpe_cache_clear(struct bpe_cache *c)
{
    bpe_cache_free(c);
    bpe_cache_init(c);
}

#define CACHE_WORD_MAX    64     // longer words are not memoised
#define CACHE_ENTRIES_MAX 200000 // then the memo starts over

// BPE of one word (no shortcut): initial symbols, then merges.
static int encode_word(const struct model *m, const char *w, size_t n, tw_vec *out,
                       tw_vec *scratch)
{
    if (scratch->esize != sizeof(struct sym)) { // the caller's reusable scratch vector
        tw_vec_free(scratch);
        tw_vec_init(scratch, sizeof(struct sym));
    }
    int rc = initial_symbols(m, w, n, scratch);
    if (rc)
        return rc;
    struct sym *s = scratch->data;
    int32_t ns = (int32_t)scratch->len;
    if (ns > 48)
        rc = merge_heap(m, s, ns);
    else
        merge_scan(m, s, ns);
    for (int32_t i = 0; !rc && i < ns; i = s[i].next)
        rc = tw_vec_push(out, &(struct tok){ s[i].id, s[i].start, s[i].end });
    return rc;
}

// encode_word through the memo: tokens of a cached word are copied out.
static int encode_cached(const struct model *m, const char *w, size_t n, tw_vec *out,
                         tw_vec *scratch, struct bpe_cache *c)
{
    if (!c || n > CACHE_WORD_MAX)
        return encode_word(m, w, n, out, scratch);
    uint64_t v;
    if (tw_map_get_str(&c->words, w, n, &v))
        return tw_vec_append(out, (struct tok *)c->toks.data + (v >> 16), v & 0xFFFF);
    size_t first = out->len;
    int rc = encode_word(m, w, n, out, scratch);
    if (rc)
        return rc;
    if (tw_map_len(&c->words) >= CACHE_ENTRIES_MAX)
        bpe_cache_clear(c);
    size_t at = c->toks.len, count = out->len - first;
    if (count == 0) // a word with no tokens (no unknown token to stand for it): not memoised
        return 0;
    if (tw_vec_append(&c->toks, (struct tok *)out->data + first, count) == 0 &&
        tw_map_put_str(&c->words, w, n, (uint64_t)at << 16 | count) != 0)
        c->toks.len = at; // a memo that failed to grow is only slower
    tw_error_clear();
    return 0;
}

int bpe_encode(const struct model *m, const char *w, size_t n, tw_vec *out, tw_vec *scratch,
               struct bpe_cache *cache)
{
    uint64_t v;
    if (m->ignore_merges && tw_map_get_str(&m->vocab, w, n, &v))
        return tw_vec_push(out, &(struct tok){ (int32_t)v, 0, (uint32_t)n });
    if (!m->meta_split || n <= CACHE_WORD_MAX)
        return encode_cached(m, w, n, out, scratch, cache);
    // Cut before each "▁" that no merge can cross (see find_meta_split) and encode the parts.
    size_t from = 0;
    uint32_t prev = 0;
    for (size_t i = 0; i <= n;) {
        uint32_t cp = 0;
        size_t l = i < n ? tw_utf8_decode(w + i, n - i, &cp) : 1;
        bool cut = i == n || (cp == 0x2581 && i > from && prev != 0x2581 &&
                              !tw_map_get_u64(&m->meta_bad_prev, prev, &v));
        if (cut) {
            size_t first = out->len;
            int rc = encode_cached(m, w + from, i - from, out, scratch, cache);
            if (rc)
                return rc;
            struct tok *t = out->data;
            for (size_t k = first; k < out->len; k++) {
                t[k].start += (uint32_t)from;
                t[k].end += (uint32_t)from;
            }
            from = i;
        }
        prev = cp;
        i += l;
    }
    return 0;
}

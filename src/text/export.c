// Implements tw_tokenizer_export_vocab (tokenizer.h): a loaded tokenizer as the
// tokenizer.ggml.* values of a GGUF file, the reverse of vocab.c. A tokenizer is exported
// only when vocab.c rebuilds it exactly: its normalizer, pre-tokenizer, model flags,
// post-processor, decoder and added tokens must be one of the forms vocab.c builds from the
// values; anything else is TW_EUNSUPPORTED, naming what GGUF cannot say.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "text/tokenizer.h"
#include "text/tokenizer_int.h"

#define META "\xE2\x96\x81" // U+2581, SentencePiece's space
#define WHY  "cannot be written as tokenizer.ggml.*: "

enum kind { KIND_GPT2, KIND_LLAMA, KIND_BERT };

static const char *norm_name(const struct norm *n)
{
    static const char *const names[] = {
        "NFC",          "NFD",     "NFKC",    "NFKD",           "Lowercase", "Strip",
        "StripAccents", "Replace", "Prepend", "BertNormalizer", "Sequence"
    };
    return names[n->type];
}

static const char *pretok_name(const struct pretok *p)
{
    static const char *const names[] = { "ByteLevel",        "Split",       "Metaspace",
                                         "BertPreTokenizer", "Whitespace",  "WhitespaceSplit",
                                         "Digits",           "Punctuation", "Sequence" };
    return names[p->type];
}

static bool is_lit(const struct pattern *p, const char *s)
{
    return p->lit && p->lit_len == strlen(s) && memcmp(p->lit, s, p->lit_len) == 0;
}

static bool is_replace(const struct norm *n, const char *from, const char *to)
{
    return n->type == NORM_REPLACE && is_lit(&n->pat, from) && n->content &&
           strcmp(n->content, to) == 0;
}

// ---- byte-level BPE ("gpt2")

// The entry of gguf_pres whose pre-tokenizer and normalizer t has, or an error naming the
// pre-tokenizer.
static int gpt2_pre(const tw_tokenizer *t, const struct gguf_pre **out)
{
    const struct pretok *p = &t->pre, *bl = p;
    const char *re = NULL;
    bool digits = false;
    if (p->type == PRE_SEQUENCE && p->n_kids == 2 && p->kids[0].type == PRE_SPLIT &&
        p->kids[1].type == PRE_BYTELEVEL && !p->kids[1].use_regex) {
        if (!p->kids[0].pat.src)
            return tw_error_set(TW_EUNSUPPORTED,
                                WHY "the pre-tokenizer splits on a string, not a regex");
        re = p->kids[0].pat.src;
        bl = &p->kids[1];
    } else if (p->type == PRE_SEQUENCE && p->n_kids == 2 && p->kids[0].type == PRE_DIGITS &&
               p->kids[0].individual_digits && p->kids[1].type == PRE_BYTELEVEL &&
               p->kids[1].use_regex) {
        digits = true;
        bl = &p->kids[1];
    } else if (p->type != PRE_BYTELEVEL || !p->use_regex) {
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "pre-tokenizer %s is none of the forms tokenizer.ggml.pre names "
                                "(ByteLevel; Sequence[Split(regex), ByteLevel]; "
                                "Sequence[Digits(individual_digits), ByteLevel])",
                            pretok_name(p));
    }
    if (bl->add_prefix_space)
        return tw_error_set(TW_EUNSUPPORTED, WHY
                            "the ByteLevel pre-tokenizer adds a prefix space (GGUF's byte-level "
                            "vocabularies have no such flag)");
    const struct gguf_pre *e = gguf_pres;
    for (; e->name; e++) {
        if (re ? !e->regex || strcmp(e->regex, re) != 0 : e->regex || e->digits != digits)
            continue;
        if (re && (e->behavior != p->kids[0].behavior || e->invert != p->kids[0].invert))
            return tw_error_set(TW_EUNSUPPORTED,
                                WHY "the pre-tokenizer has %s's regex but not its split "
                                    "behaviour",
                                e->name);
        break;
    }
    if (!e->name)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "the pre-tokenizer regex \"%.300s\" is none that "
                                "tokenizer.ggml.pre names (known: gpt-2, llama-bpe, qwen2, "
                                "gpt-4o, smollm)",
                            re);
    bool nfc = t->has_norm && t->norm.type == NORM_NFC;
    if (t->has_norm && !nfc)
        return tw_error_set(TW_EUNSUPPORTED, WHY "normalizer %s with pre-tokenizer %s",
                            norm_name(&t->norm), e->name);
    if (nfc != e->nfc)
        return tw_error_set(TW_EUNSUPPORTED, WHY "pre-tokenizer %s %s an NFC normalizer", e->name,
                            e->nfc ? "needs" : "comes without");
    if (t->model.ignore_merges != e->ignore_merges)
        return tw_error_set(TW_EUNSUPPORTED, WHY "pre-tokenizer %s with ignore_merges %s", e->name,
                            t->model.ignore_merges ? "true" : "false");
    if (t->model.byte_fallback || t->model.cont_prefix || t->model.end_suffix)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "a byte-level BPE with byte_fallback, a "
                                "continuing_subword_prefix or an end_of_word_suffix");
    if (!t->has_dec || t->dec.type != DEC_BYTELEVEL)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "a byte-level BPE whose decoder is not ByteLevel");
    *out = e;
    return 0;
}

// ---- SentencePiece-style BPE ("llama")

// The pre-tokenization vocab.c builds for tokenizer.ggml.pre (gguf_metaspace_pres): HF's
// Metaspace pre-tokenizer and no normalizer; or the normalizer Sequence[Prepend(▁),
// Replace(" " → ▁)] (add_space_prefix) or Replace(" " → ▁), and no pre-tokenizer or a Split
// on " " (a no-op once the spaces are gone).
static int spm_pre(const tw_tokenizer *t, const char **pre, bool *add_space_prefix)
{
    const struct norm *n = &t->norm;
    if (t->has_pre && t->pre.type == PRE_METASPACE) {
        if (strcmp(t->pre.replacement, META) != 0 || t->has_norm)
            return tw_error_set(TW_EUNSUPPORTED,
                                WHY "a Metaspace pre-tokenizer whose replacement is not \"" META
                                    "\" or that follows a normalizer");
        *pre = gguf_metaspace_pres[t->pre.prepend_scheme][t->pre.split];
        *add_space_prefix = t->pre.prepend_scheme != 2;
        return 0;
    }
    if (t->has_pre && !(t->pre.type == PRE_SPLIT && is_lit(&t->pre.pat, " ") && !t->pre.invert))
        return tw_error_set(TW_EUNSUPPORTED, WHY "pre-tokenizer %s in a SentencePiece-style BPE",
                            pretok_name(&t->pre));
    *pre = "default";
    if (t->has_norm && is_replace(n, " ", META)) {
        *add_space_prefix = false;
    } else if (t->has_norm && n->type == NORM_SEQUENCE && n->n_kids == 2 &&
               n->kids[0].type == NORM_PREPEND && n->kids[0].content &&
               strcmp(n->kids[0].content, META) == 0 && is_replace(&n->kids[1], " ", META)) {
        *add_space_prefix = true;
    } else {
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "normalizer %s in a SentencePiece-style BPE (supported: "
                                "Replace(\" \", \"" META "\"), alone or after Prepend(\"" META
                                "\"); or none, with the Metaspace pre-tokenizer)",
                            t->has_norm ? norm_name(n) : "(none)");
    }
    return 0;
}

// The decoder and model flags vocab.c builds for a SentencePiece-style BPE.
static int spm_pipeline(const tw_tokenizer *t, const char **pre, bool *add_space_prefix)
{
    int rc = spm_pre(t, pre, add_space_prefix);
    if (rc)
        return rc;
    // Sequence[Replace(▁ → " "), ByteFallback, Fuse] and, after a prepended space, Strip.
    const struct dec *d = &t->dec;
    size_t want = *add_space_prefix ? 4 : 3;
    bool ok = t->has_dec && d->type == DEC_SEQUENCE && d->n_kids == want &&
              d->kids[0].type == DEC_REPLACE && is_lit(&d->kids[0].pat, META) &&
              d->kids[0].content && strcmp(d->kids[0].content, " ") == 0 &&
              d->kids[1].type == DEC_BYTEFALLBACK && d->kids[2].type == DEC_FUSE;
    if (ok && want == 4)
        ok = d->kids[3].type == DEC_STRIP && d->kids[3].strip_char == ' ' &&
             d->kids[3].start == 1 && d->kids[3].stop == 0;
    if (!ok)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "the decoder of a SentencePiece-style BPE must be Sequence["
                                "Replace(\"" META "\", \" \"), ByteFallback, Fuse%s]",
                            *add_space_prefix ? ", Strip(\" \", 1, 0)" : "");
    const struct model *m = &t->model;
    if (!m->byte_fallback || !m->fuse_unk || m->ignore_merges || m->cont_prefix || m->end_suffix)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "a SentencePiece-style BPE needs byte_fallback and fuse_unk, and "
                                "no ignore_merges, continuing_subword_prefix or "
                                "end_of_word_suffix");
    return 0;
}

// ---- WordPiece ("bert")

static int bert_pipeline(const tw_tokenizer *t, bool *cased)
{
    const struct norm *n = &t->norm;
    if (!t->has_norm || n->type != NORM_BERT || !n->clean_text || !n->chinese_chars ||
        n->strip_accents != n->lowercase)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "a WordPiece tokenizer needs BertNormalizer with clean_text, "
                                "handle_chinese_chars, and strip_accents as lowercase");
    *cased = !n->lowercase;
    if (!t->has_pre || t->pre.type != PRE_BERT)
        return tw_error_set(TW_EUNSUPPORTED, WHY "a WordPiece tokenizer needs BertPreTokenizer");
    const struct model *m = &t->model;
    if (!m->wp_prefix || strcmp(m->wp_prefix, "##") != 0 || m->wp_max_chars != 100 ||
        m->unk_id < 0)
        return tw_error_set(TW_EUNSUPPORTED, WHY "a WordPiece model needs the prefix \"##\", "
                                                 "max_input_chars_per_word 100 and an unk_token");
    const struct dec *d = &t->dec;
    if (!t->has_dec || d->type != DEC_WORDPIECE || strcmp(d->prefix, "##") != 0 || !d->cleanup)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "a WordPiece tokenizer needs the WordPiece decoder with prefix "
                                "\"##\" and cleanup");
    if (t->post_prefix.len != 1 || t->post_suffix.len != 1)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "a WordPiece tokenizer's post-processor must be [CLS] A [SEP]");
    return 0;
}

// llama.cpp's "phantom space" spelling (convert_hf_to_gguf.py, BertModel.set_vocab): "[X]"
// as is, "##piece" as "piece", "word" as "▁word". Returns 0, TW_ENOMEM, or TW_EUNSUPPORTED
// for a token vocab.c would not read back as itself ("##[X]", "##▁x").
static int phantom(tw_arena *a, const char *tok, const char **out)
{
    size_t n = strlen(tok);
    char *s;
    if (n >= 2 && tok[0] == '[' && tok[n - 1] == ']') {
        s = tw_arena_strndup(a, tok, n);
    } else if (n >= 2 && tok[0] == '#' && tok[1] == '#') {
        const char *rest = tok + 2;
        size_t r = n - 2;
        if ((r >= 2 && rest[0] == '[' && rest[r - 1] == ']') ||
            (r >= 3 && memcmp(rest, META, 3) == 0))
            return tw_error_set(TW_EUNSUPPORTED,
                                WHY "WordPiece token \"%s\" has no phantom-space spelling", tok);
        s = tw_arena_strndup(a, rest, r);
    } else if ((s = tw_arena_alloc(a, n + 4, 1))) {
        memcpy(s, META, 3);
        memcpy(s + 3, tok, n + 1);
    }
    if (!s)
        return tw_error_set(TW_ENOMEM, "out of memory");
    *out = s;
    return 0;
}

// ---- the values

struct exporter {
    const tw_tokenizer *t;
    tw_arena *a;
    enum kind kind;
    struct tw_tokenizer_vocab v;
};

static const struct added *added_of(const tw_tokenizer *t, int32_t id)
{
    uint64_t k;
    if (!tw_map_get_u64(&t->added_by_id, (uint64_t)id, &k))
        return NULL;
    return tw_vec_at(&t->added, (size_t)k);
}

// Added tokens vocab.c can rebuild: matched as written (not normalized), no stripping.
static int check_added(const tw_tokenizer *t)
{
    size_t normalized = 0;
    for (size_t i = 0; i < t->added.len; i++) {
        const struct added *a = tw_vec_at(&t->added, i);
        if (a->lstrip || a->rstrip || a->single_word)
            return tw_error_set(TW_EUNSUPPORTED,
                                WHY "added token %d \"%s\" has lstrip, rstrip or single_word",
                                (int)a->id, a->content);
        if (memchr(a->content, 0, a->len))
            return tw_error_set(TW_EUNSUPPORTED, WHY "added token %d holds a NUL byte",
                                (int)a->id);
        normalized += a->normalized;
    }
    // Without a normalizer, normalized tokens match the same text, but only if they all are
    // (the raw ones are matched first).
    if (normalized && (t->has_norm || normalized != t->added.len))
        return tw_error_set(TW_EUNSUPPORTED, WHY "%zu added tokens are matched in normalized text",
                            normalized);
    return 0;
}

static bool is_byte_token(const struct model *m, const char *s, int32_t id)
{
    unsigned b;
    char end;
    return strlen(s) == 6 && sscanf(s, "<0x%2X%c", &b, &end) == 2 && end == '>' &&
           m->byte_ids[b] == id;
}

// tokens and types, id by id.
static int fill_tokens(struct exporter *x)
{
    const tw_tokenizer *t = x->t;
    const struct model *m = &t->model;
    size_t n = (size_t)tw_tokenizer_vocab_size(t);
    const char **tokens = tw_arena_alloc_array(x->a, n, sizeof *tokens, _Alignof(char *));
    int32_t *types = tw_arena_alloc_array(x->a, n, sizeof *types, _Alignof(int32_t));
    if (!tokens || !types)
        return tw_error_set(TW_ENOMEM, "out of memory");
    tw_map seen;
    tw_map_init(&seen, TW_MAP_STR);
    int rc = tw_map_reserve(&seen, n) ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
    for (size_t i = 0; !rc && i < n; i++) {
        int32_t id = (int32_t)i;
        const char *piece = id < m->n_pieces ? m->pieces[id] : NULL;
        const struct added *a = added_of(t, id);
        if (piece && a && strcmp(piece, a->content) != 0) {
            rc = tw_error_set(TW_EUNSUPPORTED,
                              WHY "id %d is \"%s\" in the vocabulary but added token \"%s\"",
                              (int)id, piece, a->content);
            break;
        }
        int32_t type = 1;
        const char *text = piece ? piece : a ? a->content : NULL;
        char gap[32];
        if (!text) { // llama.cpp's filler for an id no token has (convert_hf_to_gguf.py)
            snprintf(gap, sizeof gap, "[PAD%d]", (int)id);
            text = gap;
            type = 5;
        } else if (a) {
            type = !a->special ? 4 : x->kind != KIND_BERT && id == m->unk_id ? 2 : 3;
        } else if (x->kind == KIND_LLAMA && is_byte_token(m, text, id)) {
            type = 6;
        }
        if (x->kind == KIND_BERT) {
            rc = phantom(x->a, text, &tokens[i]);
        } else if (!(tokens[i] = tw_arena_strndup(x->a, text, strlen(text)))) {
            rc = tw_error_set(TW_ENOMEM, "out of memory");
        }
        if (rc)
            break;
        types[i] = type;
        uint64_t other;
        size_t len = strlen(tokens[i]);
        if (tw_map_get_str(&seen, tokens[i], len, &other)) {
            rc = tw_error_set(TW_EUNSUPPORTED, WHY "ids %d and %d are both spelled \"%s\"",
                              (int)other, (int)id, tokens[i]);
            break;
        }
        if (tw_map_put_str(&seen, tokens[i], len, i))
            rc = tw_error_set(TW_ENOMEM, "out of memory");
    }
    tw_map_free(&seen);
    if (rc)
        return rc;
    x->v.n_tokens = n;
    x->v.tokens = tokens;
    x->v.types = types;
    return 0;
}

struct merge {
    uint32_t rank;
    int32_t left, right, merged;
};

static int by_rank(const void *a, const void *b)
{
    const struct merge *x = a, *y = b;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

// The merges in rank order as "left right" and, for SentencePiece, scores that rank each
// piece by its first merge (so that vocab.c's derivation from scores gives the same merges
// when a reader ignores the list).
static int fill_merges(struct exporter *x)
{
    const struct model *m = &x->t->model;
    size_t n = tw_map_len(&m->merges);
    struct merge *ms = tw_malloc_array(n ? n : 1, sizeof *ms);
    if (!ms)
        return tw_error_set(TW_ENOMEM, "out of memory");
    struct tw_map_entry e;
    size_t pos = 0, k = 0;
    while (k < n && tw_map_next(&m->merges, &pos, &e))
        ms[k++] = (struct merge){ (uint32_t)(e.val >> 32), (int32_t)(e.u64 >> 32),
                                  (int32_t)(uint32_t)e.u64, (int32_t)(uint32_t)e.val };
    qsort(ms, k, sizeof *ms, by_rank);
    const char **merges = tw_arena_alloc_array(x->a, k ? k : 1, sizeof *merges, _Alignof(char *));
    float *scores = NULL;
    int rc = merges ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc && x->kind == KIND_LLAMA) {
        scores = tw_arena_alloc_array(x->a, x->v.n_tokens, sizeof *scores, _Alignof(float));
        if (!scores)
            rc = tw_error_set(TW_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < x->v.n_tokens; i++)
            scores[i] = -1e9f; // below every merged piece: never merged first
    }
    for (size_t i = 0; !rc && i < k; i++) {
        const char *l = m->pieces[ms[i].left], *r = m->pieces[ms[i].right];
        if (strchr(l, ' ') || strchr(r, ' ')) {
            rc = tw_error_set(TW_EUNSUPPORTED, WHY "merge %u \"%s\" + \"%s\" holds a space",
                              ms[i].rank, l, r);
            break;
        }
        size_t ll = strlen(l), rl = strlen(r);
        char *s = tw_arena_alloc(x->a, ll + rl + 2, 1);
        if (!s) {
            rc = tw_error_set(TW_ENOMEM, "out of memory");
            break;
        }
        memcpy(s, l, ll);
        s[ll] = ' ';
        memcpy(s + ll + 1, r, rl + 1);
        merges[i] = s;
        if (scores && scores[ms[i].merged] == -1e9f)
            scores[ms[i].merged] = -(float)i;
    }
    tw_free(ms);
    if (rc)
        return rc;
    x->v.n_merges = k;
    x->v.merges = k ? merges : NULL;
    x->v.scores = scores;
    return 0;
}

// bos, eos, pad and unk; add_bos from the post-processor; cls and sep for WordPiece.
static int fill_specials(struct exporter *x)
{
    const tw_tokenizer *t = x->t;
    struct tw_tokenizer_vocab *v = &x->v;
    v->bos = t->bos;
    v->eos = t->eos;
    v->pad = t->pad;
    v->unk = t->model.unk_id;
    v->cls = v->sep = -1;
    if (x->kind == KIND_BERT) {
        v->cls = TW_VEC_AT(&t->post_prefix, int32_t, 0);
        v->sep = TW_VEC_AT(&t->post_suffix, int32_t, 0);
        v->add_bos = true; // [CLS]
        return 0;
    }
    if (t->post_suffix.len || t->post_prefix.len > 1)
        return tw_error_set(TW_EUNSUPPORTED,
                            WHY "the post-processor adds %zu tokens before the text and %zu "
                                "after (GGUF says only whether to add BOS)",
                            t->post_prefix.len, t->post_suffix.len);
    v->add_bos = t->post_prefix.len == 1;
    if (v->add_bos) {
        int32_t id = TW_VEC_AT(&t->post_prefix, int32_t, 0);
        if (v->bos >= 0 && v->bos != id)
            return tw_error_set(TW_EUNSUPPORTED,
                                WHY "the post-processor adds id %d but bos_token is id %d",
                                (int)id, (int)v->bos);
        v->bos = id;
    }
    return 0;
}

static int export_all(struct exporter *x)
{
    const tw_tokenizer *t = x->t;
    int rc = 0;
    if (t->model.type == MODEL_WORDPIECE) {
        x->kind = KIND_BERT;
        x->v.model = "bert";
        x->v.pre = "default";
        rc = bert_pipeline(t, &x->v.cased);
    } else if (t->model.byte_level) {
        const struct gguf_pre *pre = NULL;
        x->kind = KIND_GPT2;
        x->v.model = "gpt2";
        rc = gpt2_pre(t, &pre);
        x->v.pre = rc ? NULL : pre->name;
    } else if (t->model.byte_fallback) {
        x->kind = KIND_LLAMA;
        x->v.model = "llama";
        rc = spm_pipeline(t, &x->v.pre, &x->v.add_space_prefix);
    } else {
        rc = tw_error_set(TW_EUNSUPPORTED,
                          WHY "a BPE model that is neither byte-level nor byte_fallback");
    }
    if (!rc)
        rc = check_added(t);
    if (!rc)
        rc = fill_specials(x);
    if (!rc)
        rc = fill_tokens(x);
    if (!rc && x->kind != KIND_BERT)
        rc = fill_merges(x);
    if (!rc && t->chat_template &&
        !(x->v.chat_template = tw_arena_strndup(x->a, t->chat_template, strlen(t->chat_template))))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    return rc;
}

int tw_tokenizer_export_vocab(const tw_tokenizer *t, struct tw_tokenizer_vocab *v, tw_arena *arena)
{
    struct tw_arena_mark mark = tw_arena_mark(arena);
    struct exporter x = { .t = t, .a = arena };
    int rc = export_all(&x);
    if (rc) {
        tw_arena_rewind(arena, mark);
        return rc;
    }
    *v = x.v;
    return 0;
}

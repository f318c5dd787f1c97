// Implements tokenizer.h: loading tokenizer.json (+ tokenizer_config.json), the added-token
// matcher (a byte trie, leftmost-longest as HF's Aho-Corasick split), the encode pipeline
// (added tokens → normalizer → pre-tokenizer → model → post-processor) and the decode
// pipeline (ids → pieces → decoders). Components live in normalize.c, pretok.c, bpe.c and
// wordpiece.c; the JSON path of any malformed element is named in the error.
#include <stdatomic.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "text/tokenizer_int.h"
#include "text/utf8.h"

#define TOKENIZER_JSON_LIMIT ((size_t)512 << 20)

int pattern_parse(const json_t *j, const char *path, struct pattern *p);

// ---- the added-token trie

void trie_init(struct trie *t)
{
    tw_map_init(&t->edges, TW_MAP_U64);
    tw_vec_init(&t->term, sizeof(int32_t));
    memset(t->first, 0, sizeof t->first);
    t->empty = true;
}

void trie_free(struct trie *t)
{
    tw_map_free(&t->edges);
    tw_vec_free(&t->term);
}

int trie_add(struct trie *t, const char *s, size_t n, int32_t index)
{
    int32_t none = -1;
    if (t->term.len == 0 && tw_vec_push(&t->term, &none))
        return TW_ENOMEM;
    uint64_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = node << 8 | (unsigned char)s[i], child;
        if (!tw_map_get_u64(&t->edges, key, &child)) {
            child = t->term.len;
            int rc = tw_vec_push(&t->term, &none);
            if (!rc)
                rc = tw_map_put_u64(&t->edges, key, child);
            if (rc)
                return rc;
        }
        node = child;
    }
    if (n == 0)
        return 0;
    t->first[(unsigned char)s[0] >> 3] |= (uint8_t)(1u << ((unsigned char)s[0] & 7));
    t->empty = false;
    int32_t *term = tw_vec_at(&t->term, (size_t)node);
    if (*term < 0) // the first token with this content wins
        *term = index;
    return 0;
}

// The longest token starting at s[0, n): its index, or -1; *len gets its length.
int32_t trie_longest(const struct trie *t, const char *s, size_t n, size_t *len)
{
    uint64_t node = 0;
    int32_t best = -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t child;
        if (!tw_map_get_u64(&t->edges, node << 8 | (unsigned char)s[i], &child))
            break;
        node = child;
        int32_t term = TW_VEC_AT(&t->term, int32_t, node);
        if (term >= 0) {
            best = term;
            *len = i + 1;
        }
    }
    return best;
}

// ---- loading

static int parse_added(tw_tokenizer *t, const json_t *arr, const char *file)
{
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return tw_error_set(TW_EFORMAT, "%s: added_tokens: expected an array", file);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        const json_t *id = json_object_get(e, "id");
        const json_t *content = json_object_get(e, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || !json_is_string(content))
            return tw_error_set(TW_EFORMAT,
                                "%s: added_tokens[%zu]: expected an object with \"id\" and "
                                "\"content\"",
                                file, i);
        if (json_integer_value(id) > TOKENIZER_MAX_ID)
            return tw_error_set(TW_ELIMIT,
                                "%s: added_tokens[%zu]: id %lld is over the limit of %d", file, i,
                                (long long)json_integer_value(id), TOKENIZER_MAX_ID);
        struct added a = {
            .len = json_string_length(content),
            .id = (int32_t)json_integer_value(id),
            .special = json_is_true(json_object_get(e, "special")),
            .lstrip = json_is_true(json_object_get(e, "lstrip")),
            .rstrip = json_is_true(json_object_get(e, "rstrip")),
            .normalized = json_is_true(json_object_get(e, "normalized")),
            .single_word = json_is_true(json_object_get(e, "single_word")),
        };
        a.content = tw_strndup(json_string_value(content), a.len);
        if (!a.content || tw_vec_push(&t->added, &a)) {
            tw_free(a.content);
            return tw_error_set(TW_ENOMEM, "%s: out of memory", file);
        }
        uint64_t old;
        if (!tw_map_get_u64(&t->added_by_id, (uint64_t)a.id, &old) &&
            tw_map_put_u64(&t->added_by_id, (uint64_t)a.id, t->added.len - 1))
            return tw_error_set(TW_ENOMEM, "%s: out of memory", file);
    }
    return 0;
}

// Builds the tries once the normalizer is known (normalized tokens are matched in normalized
// text, so their content is normalized first).
static int build_tries(tw_tokenizer *t, pcre2_match_data *md)
{
    struct nstr s, tmp;
    nstr_init(&s);
    nstr_init(&tmp);
    int rc = 0;
    for (size_t i = 0; i < t->added.len && !rc; i++) {
        const struct added *a = tw_vec_at(&t->added, i);
        if (!a->normalized || !t->has_norm) {
            rc =
                trie_add(a->normalized ? &t->normalized : &t->raw, a->content, a->len, (int32_t)i);
            continue;
        }
        nstr_clear(&s);
        rc = nstr_put(&s, a->content, a->len, (struct tw_span){ 0, (uint32_t)a->len });
        if (!rc)
            rc = norm_apply(&t->norm, &s, &tmp, md);
        if (!rc)
            rc = trie_add(&t->normalized, s.b.data, s.b.len, (int32_t)i);
    }
    nstr_free(&s);
    nstr_free(&tmp);
    return rc;
}

static int32_t special_id(const json_t *post, const char *name, const char *path, int *rc)
{
    const json_t *st = json_object_get(json_object_get(post, "special_tokens"), name);
    const json_t *ids = json_object_get(st, "ids");
    if (!json_is_array(ids) || json_array_size(ids) != 1 ||
        !json_is_integer(json_array_get(ids, 0))) {
        *rc =
            tw_error_set(TW_EFORMAT, "%s.special_tokens[\"%s\"].ids: expected one id", path, name);
        return -1;
    }
    json_int_t id = json_integer_value(json_array_get(ids, 0));
    if (id < 0 || id > TOKENIZER_MAX_ID) {
        *rc = tw_error_set(TW_EFORMAT, "%s.special_tokens[\"%s\"].ids: id %lld outside 0..%d",
                           path, name, (long long)id, TOKENIZER_MAX_ID);
        return -1;
    }
    return (int32_t)id;
}

static int parse_post(tw_tokenizer *t, const json_t *j, const char *path)
{
    if (!j || json_is_null(j))
        return 0;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type)
        return tw_error_set(TW_EFORMAT, "%s.type: expected a string", path);
    int rc = 0;
    if (strcmp(type, "ByteLevel") == 0)
        return 0; // offsets only
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(j, "processors");
        for (size_t i = 0; i < json_array_size(arr) && !rc; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            rc = parse_post(t, json_array_get(arr, i), sub);
        }
        return rc;
    }
    if (strcmp(type, "TemplateProcessing") == 0) {
        const json_t *single = json_object_get(j, "single");
        if (!json_is_array(single))
            return tw_error_set(TW_EFORMAT, "%s.single: expected an array", path);
        bool seen_a = false;
        for (size_t i = 0; i < json_array_size(single) && !rc; i++) {
            const json_t *item = json_array_get(single, i);
            const json_t *sp = json_object_get(json_object_get(item, "SpecialToken"), "id");
            if (json_object_get(item, "Sequence")) {
                seen_a = true;
                continue;
            }
            if (!json_is_string(sp)) {
                rc = tw_error_set(TW_EFORMAT,
                                  "%s.single[%zu]: expected a SpecialToken or a "
                                  "Sequence",
                                  path, i);
                break;
            }
            int32_t id = special_id(j, json_string_value(sp), path, &rc);
            if (!rc)
                rc = tw_vec_push(seen_a ? &t->post_suffix : &t->post_prefix, &id);
        }
        return rc;
    }
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        const json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        if (!json_is_integer(json_array_get(cls, 1)) || !json_is_integer(json_array_get(sep, 1)))
            return tw_error_set(TW_EFORMAT, "%s: expected \"cls\" and \"sep\" as [token, id]",
                                path);
        json_int_t c = json_integer_value(json_array_get(cls, 1));
        json_int_t s = json_integer_value(json_array_get(sep, 1));
        if (c < 0 || c > TOKENIZER_MAX_ID || s < 0 || s > TOKENIZER_MAX_ID)
            return tw_error_set(TW_EFORMAT, "%s: \"cls\" and \"sep\" ids must be in 0..%d", path,
                                TOKENIZER_MAX_ID);
        int32_t cls_id = (int32_t)c, sep_id = (int32_t)s;
        rc = tw_vec_push(&t->post_prefix, &cls_id);
        return rc ? rc : tw_vec_push(&t->post_suffix, &sep_id);
    }
    return tw_error_set(TW_EUNSUPPORTED,
                        "%s: post-processor \"%s\" is not supported (supported: "
                        "TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, "
                        "Sequence)",
                        path, type);
}

static void dec_free(struct dec *d)
{
    pattern_free(&d->pat);
    tw_free(d->content);
    tw_free(d->prefix);
    for (size_t i = 0; i < d->n_kids; i++)
        dec_free(&d->kids[i]);
    tw_free(d->kids);
}

static int parse_dec(struct dec *d, const json_t *j, const char *path)
{
    memset(d, 0, sizeof *d);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type)
        return tw_error_set(TW_EFORMAT, "%s.type: expected a string", path);
    if (strcmp(type, "ByteLevel") == 0) {
        d->type = DEC_BYTELEVEL;
    } else if (strcmp(type, "ByteFallback") == 0) {
        d->type = DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d->type = DEC_FUSE;
    } else if (strcmp(type, "Replace") == 0) {
        d->type = DEC_REPLACE;
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!c)
            return tw_error_set(TW_EFORMAT, "%s.content: expected a string", path);
        if (!(d->content = tw_strdup(c)))
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        return pattern_parse(j, path, &d->pat);
    } else if (strcmp(type, "Strip") == 0) {
        d->type = DEC_STRIP;
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!c || !*c)
            return tw_error_set(TW_EFORMAT, "%s.content: expected a character", path);
        tw_utf8_decode(c, strlen(c), &d->strip_char);
        d->start = (size_t)json_integer_value(json_object_get(j, "start"));
        d->stop = (size_t)json_integer_value(json_object_get(j, "stop"));
    } else if (strcmp(type, "Metaspace") == 0) {
        d->type = DEC_METASPACE;
        const char *r = json_string_value(json_object_get(j, "replacement"));
        if (!r || strlen(r) >= sizeof d->replacement)
            return tw_error_set(TW_EFORMAT, "%s.replacement: expected one character", path);
        strcpy(d->replacement, r);
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        const json_t *aps = json_object_get(j, "add_prefix_space");
        d->prepend_scheme =
            scheme ? (strcmp(scheme, "never") == 0 ? 2 : 0) : (json_is_false(aps) ? 2 : 0);
    } else if (strcmp(type, "WordPiece") == 0) {
        d->type = DEC_WORDPIECE;
        const char *p = json_string_value(json_object_get(j, "prefix"));
        const json_t *cl = json_object_get(j, "cleanup");
        d->cleanup = json_is_boolean(cl) ? json_is_true(cl) : true;
        if (!(d->prefix = tw_strdup(p ? p : "##")))
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    } else if (strcmp(type, "Sequence") == 0) {
        d->type = DEC_SEQUENCE;
        const json_t *arr = json_object_get(j, "decoders");
        d->n_kids = json_array_size(arr);
        d->kids = tw_calloc(d->n_kids ? d->n_kids : 1, sizeof *d->kids);
        if (!d->kids)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
        for (size_t i = 0; i < d->n_kids; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            int rc = parse_dec(&d->kids[i], json_array_get(arr, i), sub);
            if (rc)
                return rc;
        }
    } else {
        return tw_error_set(TW_EUNSUPPORTED,
                            "%s: decoder \"%s\" is not supported (supported: ByteLevel, "
                            "ByteFallback, Fuse, Replace, Strip, Metaspace, WordPiece, "
                            "Sequence)",
                            path, type);
    }
    return 0;
}

static int parse_model(tw_tokenizer *t, const json_t *j, const char *file)
{
    char path[256];
    snprintf(path, sizeof path, "%s: model", file);
    if (!json_is_object(j))
        return tw_error_set(TW_EFORMAT, "%s: expected an object", path);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type && json_object_get(j, "merges"))
        type = "BPE";
    if (type && strcmp(type, "BPE") == 0)
        return bpe_parse(j, path, t->has_pre && pretok_has_bytelevel(&t->pre), &t->model);
    if (type && strcmp(type, "WordPiece") == 0)
        return wordpiece_parse(j, path, &t->model);
    return tw_error_set(TW_EUNSUPPORTED,
                        "%s.type: model \"%s\" is not supported (supported: BPE, WordPiece)", path,
                        type ? type : "(none)");
}

// "bos_token": "<s>" or {"content": "<s>", ...}
static const char *config_token(const json_t *cfg, const char *key)
{
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int parse_config(tw_tokenizer *t, const char *config_path)
{
    json_t *cfg;
    int rc =
        tw_json_load_file_flags(config_path, TOKENIZER_JSON_LIMIT, JSON_DECODE_INT_AS_REAL, &cfg);
    if (rc)
        return rc;
    const char *names[3] = { config_token(cfg, "bos_token"), config_token(cfg, "eos_token"),
                             config_token(cfg, "pad_token") };
    int32_t *ids[3] = { &t->bos, &t->eos, &t->pad };
    for (int i = 0; i < 3; i++)
        if (names[i])
            *ids[i] = tw_tokenizer_piece_to_id(t, names[i], strlen(names[i]));
    const json_t *tpl = json_object_get(cfg, "chat_template");
    if (json_is_array(tpl)) { // [{"name": "default", "template": ...}, ...]
        const json_t *chosen = NULL;
        for (size_t i = 0; i < json_array_size(tpl); i++) {
            const json_t *e = json_array_get(tpl, i);
            if (!chosen || json_equal(json_object_get(e, "name"), json_string("default")))
                chosen = e;
        }
        tpl = json_object_get(chosen, "template");
    }
    if (json_is_string(tpl) && !(t->chat_template = tw_strdup(json_string_value(tpl))))
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", config_path);
    json_decref(cfg);
    return rc;
}

static tw_tokenizer *tokenizer_new(void)
{
    tw_tokenizer *t = tw_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    tw_vec_init(&t->added, sizeof(struct added));
    tw_map_init(&t->added_by_id, TW_MAP_U64);
    trie_init(&t->raw);
    trie_init(&t->normalized);
    tw_vec_init(&t->post_prefix, sizeof(int32_t));
    tw_vec_init(&t->post_suffix, sizeof(int32_t));
    tw_map_init(&t->model.vocab, TW_MAP_STR);
    tw_map_init(&t->model.merges, TW_MAP_U64);
    tw_map_init(&t->model.meta_bad_prev, TW_MAP_U64);
    static atomic_uint_fast64_t next_uid = 1;
    t->uid = atomic_fetch_add(&next_uid, 1);
    t->bos = t->eos = t->pad = -1;
    return t;
}

static void compute_vocab_size(tw_tokenizer *t)
{
    int32_t n = t->model.n_pieces;
    for (size_t i = 0; i < t->added.len; i++) {
        const struct added *a = tw_vec_at(&t->added, i);
        if (a->id + 1 > n)
            n = a->id + 1;
    }
    // The post-processor's ids too: every id that encode can give is under the size.
    const tw_vec *post[2] = { &t->post_prefix, &t->post_suffix };
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < post[k]->len; i++)
            if (TW_VEC_AT(post[k], int32_t, i) + 1 > n)
                n = TW_VEC_AT(post[k], int32_t, i) + 1;
    t->vocab_size = n;
}

static int load_json(tw_tokenizer *t, const json_t *root, const char *file)
{
    char path[256];
    int rc = 0;
    const json_t *n = json_object_get(root, "normalizer");
    if (n && !json_is_null(n)) {
        snprintf(path, sizeof path, "%s: normalizer", file);
        t->has_norm = true;
        rc = norm_parse(n, path, &t->norm);
    }
    const json_t *p = json_object_get(root, "pre_tokenizer");
    if (!rc && p && !json_is_null(p)) {
        snprintf(path, sizeof path, "%s: pre_tokenizer", file);
        t->has_pre = true;
        rc = pretok_parse(p, path, &t->pre);
    }
    if (!rc)
        rc = parse_model(t, json_object_get(root, "model"), file);
    if (!rc)
        rc = parse_added(t, json_object_get(root, "added_tokens"), file);
    if (!rc) {
        snprintf(path, sizeof path, "%s: post_processor", file);
        rc = parse_post(t, json_object_get(root, "post_processor"), path);
    }
    const json_t *d = json_object_get(root, "decoder");
    if (!rc && d && !json_is_null(d)) {
        snprintf(path, sizeof path, "%s: decoder", file);
        t->has_dec = true;
        rc = parse_dec(&t->dec, d, path);
    }
    if (!rc) {
        pcre2_match_data *md = pcre2_match_data_create(16, NULL);
        rc = md ? build_tries(t, md) : tw_error_set(TW_ENOMEM, "out of memory");
        pcre2_match_data_free(md);
    }
    compute_vocab_size(t);
    return rc;
}

int tw_tokenizer_load(const char *json_path, const char *config_path, tw_tokenizer **out)
{
    json_t *root;
    int rc = tw_json_load_file(json_path, TOKENIZER_JSON_LIMIT, &root);
    if (rc)
        return rc;
    tw_tokenizer *t = tokenizer_new();
    if (!t) {
        json_decref(root);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", json_path);
    }
    rc = load_json(t, root, json_path);
    json_decref(root);
    if (!rc && config_path)
        rc = parse_config(t, config_path);
    if (rc) {
        tw_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tokenizer_load_root(const char *what, const json_t *root, tw_tokenizer **out)
{
    tw_tokenizer *t = tokenizer_new();
    int rc = t ? load_json(t, root, what) : tw_error_set(TW_ENOMEM, "%s: out of memory", what);
    if (rc) {
        tw_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tw_tokenizer_load_buffer(const char *what, const char *buf, size_t len, tw_tokenizer **out)
{
    json_t *root;
    int rc = tw_json_parse(what, buf, len, &root);
    if (rc)
        return rc;
    rc = tokenizer_load_root(what, root, out);
    json_decref(root);
    return rc;
}

int tw_tokenizer_load_dir(const char *dir, tw_tokenizer **out)
{
    char json[4096], cfg[4096];
    int rc = tw_path_join(json, sizeof json, dir, "tokenizer.json");
    if (!rc)
        rc = tw_path_join(cfg, sizeof cfg, dir, "tokenizer_config.json");
    if (rc)
        return rc;
    return tw_tokenizer_load(json, tw_file_exists(cfg) ? cfg : NULL, out);
}

int tw_tokenizer_load_wordpiece_vocab(const char *vocab_path, tw_tokenizer **out)
{
    char *buf;
    size_t len;
    int rc = tw_file_read(vocab_path, TOKENIZER_JSON_LIMIT, &buf, &len);
    if (rc)
        return rc;
    // The same tokenizer transformers builds for BertTokenizer's defaults (BertConverter).
    json_t *vocab = json_object();
    int32_t id = 0;
    for (size_t i = 0; i < len && vocab;) {
        size_t e = i;
        while (e < len && buf[e] != '\n')
            e++;
        size_t l = e - i;
        if (l && buf[i + l - 1] == '\r')
            l--;
        char *tok = tw_strndup(buf + i, l);
        if (!tok || json_object_set_new(vocab, tok, json_integer(id++)) != 0) {
            json_decref(vocab);
            vocab = NULL;
        }
        tw_free(tok);
        i = e + 1;
    }
    tw_free(buf);
    if (!vocab)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", vocab_path);
    json_t *root =
        json_pack("{s:{s:s,s:b,s:b,s:n,s:b},s:{s:s},s:{s:s,s:o,s:s,s:s,s:i},s:{s:s,s:s,s:b},"
                  "s:{s:s,s:[s,i],s:[s,i]}}",
                  "normalizer", "type", "BertNormalizer", "clean_text", 1, "handle_chinese_chars",
                  1, "strip_accents", "lowercase", 1, "pre_tokenizer", "type", "BertPreTokenizer",
                  "model", "type", "WordPiece", "vocab", vocab, "unk_token", "[UNK]",
                  "continuing_subword_prefix", "##", "max_input_chars_per_word", 100, "decoder",
                  "type", "WordPiece", "prefix", "##", "cleanup", 1, "post_processor", "type",
                  "BertProcessing", "cls", "[CLS]", 0, "sep", "[SEP]", 0);
    if (!root)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", vocab_path);
    tw_tokenizer *t = tokenizer_new();
    rc = t ? load_json(t, root, vocab_path) : tw_error_set(TW_ENOMEM, "out of memory");
    // cls/sep ids and the special tokens come from the vocabulary itself.
    const char *specials[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
    for (size_t i = 0; !rc && i < 5; i++) {
        uint64_t v;
        if (!tw_map_get_str(&t->model.vocab, specials[i], strlen(specials[i]), &v))
            continue;
        struct added a = { .content = tw_strdup(specials[i]),
                           .len = strlen(specials[i]),
                           .id = (int32_t)v,
                           .special = true };
        rc = a.content ? tw_vec_push(&t->added, &a) : TW_ENOMEM;
        if (!rc)
            rc = tw_map_put_u64(&t->added_by_id, v, t->added.len - 1);
        if (!rc)
            rc = trie_add(&t->raw, a.content, a.len, (int32_t)t->added.len - 1);
        if (!rc && i == 2)
            TW_VEC_AT(&t->post_prefix, int32_t, 0) = (int32_t)v;
        if (!rc && i == 3)
            TW_VEC_AT(&t->post_suffix, int32_t, 0) = (int32_t)v;
        if (rc)
            tw_free(a.content);
    }
    json_decref(root);
    if (rc) {
        tw_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tw_tokenizer_free(tw_tokenizer *t)
{
    if (!t)
        return;
    if (t->has_norm)
        norm_free(&t->norm);
    if (t->has_pre)
        pretok_free(&t->pre);
    if (t->has_dec)
        dec_free(&t->dec);
    model_free(&t->model);
    for (size_t i = 0; i < t->added.len; i++)
        tw_free(((struct added *)tw_vec_at(&t->added, i))->content);
    tw_vec_free(&t->added);
    tw_map_free(&t->added_by_id);
    trie_free(&t->raw);
    trie_free(&t->normalized);
    tw_vec_free(&t->post_prefix);
    tw_vec_free(&t->post_suffix);
    tw_free(t->chat_template);
    tw_free(t);
}

void model_free(struct model *m)
{
    tw_map_free(&m->vocab);
    tw_map_free(&m->merges);
    for (int32_t i = 0; i < m->n_pieces; i++)
        tw_free(m->pieces[i]);
    tw_free(m->pieces);
    tw_free(m->cont_prefix);
    tw_free(m->end_suffix);
    tw_free(m->wp_prefix);
    tw_map_free(&m->meta_bad_prev);
}

int model_encode(const struct model *m, const char *w, size_t n, tw_vec *out, tw_vec *scratch,
                 struct bpe_cache *cache)
{
    return m->type == MODEL_BPE ? bpe_encode(m, w, n, out, scratch, cache)
                                : wordpiece_encode(m, w, n, out);
}

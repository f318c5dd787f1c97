// Builds a tokenizer from vocabulary arrays as a GGUF file stores them (tokenizer.ggml.model,
// .pre, .tokens, .scores, .token_type, .merges, special ids; the keys are published in ggml's
// docs/gguf.md): the arrays are turned into the equivalent tokenizer.json in memory and loaded
// by the same code, so a model read from GGUF tokenizes exactly as its Hugging Face folder.
// "gpt2" is byte-level BPE with merges; "llama" is SentencePiece BPE whose merges, unless the
// file lists them, follow the pieces' scores (best score first, as SentencePiece merges);
// "bert" is WordPiece with the tokens respelled as llama.cpp's converter writes them ("▁" +
// word, "##" dropped). Also the table of tokenizer.ggml.pre names that export.c shares.
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/arena.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "text/tokenizer.h"
#include "text/tokenizer_int.h"

// The pre-tokenizer regexes behind tokenizer.ggml.pre names (the patterns the models'
// tokenizer.json files publish).
static const char re_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_gpt4o[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const struct gguf_pre gguf_pres[] = {
    { "gpt-2", NULL, SPLIT_ISOLATED, false, false, false, false },
    { "llama-bpe", re_llama3, SPLIT_ISOLATED, false, false, true, false },
    { "qwen2", re_qwen2, SPLIT_ISOLATED, false, true, false, false },
    { "gpt-4o", re_gpt4o, SPLIT_REMOVED, true, false, false, false },
    { "smollm", NULL, SPLIT_ISOLATED, false, false, false, true },
    { NULL, NULL, SPLIT_ISOLATED, false, false, false, false },
};

const char *const gguf_metaspace_pres[3][2] = {
    { "metaspace-always", "metaspace-always-split" },
    { "metaspace-first", "metaspace-first-split" },
    { "metaspace-never", "metaspace-never-split" },
};

const struct gguf_pre *gguf_pre_find(const char *name)
{
    if (!name || !strcmp(name, "default") || !strcmp(name, "gpt2"))
        name = "gpt-2";
    else if (!strcmp(name, "llama3") || !strcmp(name, "llama-v3"))
        name = "llama-bpe";
    for (const struct gguf_pre *p = gguf_pres; p->name; p++)
        if (!strcmp(p->name, name))
            return p;
    return NULL;
}

// The normalizer, pre-tokenizer and decoder of a byte-level BPE, from tokenizer.ggml.pre.
static int gpt2_pre(const char *name, json_t *root, bool *ignore_merges)
{
    static const char *const behaviors[] = { "Removed", "Isolated", "MergedWithPrevious",
                                             "MergedWithNext", "Contiguous" };
    const struct gguf_pre *pre = gguf_pre_find(name);
    if (!pre)
        return tw_error_set(TW_EUNSUPPORTED,
                            "tokenizer.ggml.pre: \"%s\" is not supported (supported: default, "
                            "gpt-2, gpt2, llama-bpe, llama3, qwen2, gpt-4o, smollm)",
                            name);
    json_t *p;
    if (pre->regex)
        p = json_pack("{s:s,s:[{s:s,s:{s:s},s:s,s:b},{s:s,s:b,s:b,s:b}]}", "type", "Sequence",
                      "pretokenizers", "type", "Split", "pattern", "Regex", pre->regex, "behavior",
                      behaviors[pre->behavior], "invert", pre->invert, "type", "ByteLevel",
                      "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    else if (pre->digits)
        p = json_pack("{s:s,s:[{s:s,s:b},{s:s,s:b,s:b,s:b}]}", "type", "Sequence", "pretokenizers",
                      "type", "Digits", "individual_digits", 1, "type", "ByteLevel",
                      "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1);
    else
        p = json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                      "trim_offsets", 1, "use_regex", 1);
    *ignore_merges = pre->ignore_merges;
    json_object_set_new(root, "pre_tokenizer", p);
    json_object_set_new(root, "normalizer",
                        pre->nfc ? json_pack("{s:s}", "type", "NFC") : json_null());
    json_object_set_new(root, "decoder",
                        json_pack("{s:s,s:b,s:b,s:b}", "type", "ByteLevel", "add_prefix_space", 1,
                                  "trim_offsets", 1, "use_regex", 1));
    return 0;
}

struct ranked {
    float score;
    int32_t id;
};

static int by_score(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

struct split {
    int32_t left, right;
    size_t cut;
};

static int by_ids(const void *a, const void *b)
{
    const struct split *x = a, *y = b;
    if (x->left != y->left)
        return x->left < y->left ? -1 : 1;
    return x->right < y->right ? -1 : x->right > y->right;
}

// SentencePiece BPE as transformers' SentencePieceExtractor turns it into merges: every split
// of a piece into two pieces of the vocabulary is a merge; pieces in order of score (higher
// first, ties by id), a piece's splits in order of (left id, right id).
static int spm_merges(const struct tw_tokenizer_vocab *v, json_t *merges)
{
    tw_map ids;
    tw_map_init(&ids, TW_MAP_STR);
    struct ranked *order = tw_malloc_array(v->n_tokens, sizeof *order);
    tw_vec splits;
    tw_vec_init(&splits, sizeof(struct split));
    int rc = order ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < v->n_tokens; i++) {
        rc = tw_map_put_str(&ids, v->tokens[i], strlen(v->tokens[i]), i);
        order[i] = (struct ranked){ v->scores ? v->scores[i] : 0, (int32_t)i };
    }
    if (!rc)
        qsort(order, v->n_tokens, sizeof *order, by_score);
    for (size_t k = 0; !rc && k < v->n_tokens; k++) {
        const char *t = v->tokens[order[k].id];
        size_t len = strlen(t);
        splits.len = 0;
        for (size_t cut = 1; !rc && cut < len; cut++) {
            uint64_t l, r;
            if (((unsigned char)t[cut] & 0xC0) == 0x80 || !tw_map_get_str(&ids, t, cut, &l) ||
                !tw_map_get_str(&ids, t + cut, len - cut, &r))
                continue;
            rc = tw_vec_push(&splits, &(struct split){ (int32_t)l, (int32_t)r, cut });
        }
        if (splits.len > 1)
            qsort(splits.data, splits.len, sizeof(struct split), by_ids);
        for (size_t i = 0; !rc && i < splits.len; i++) {
            const struct split *sp = tw_vec_at(&splits, i);
            json_t *pair =
                json_pack("[s#,s#]", t, (int)sp->cut, t + sp->cut, (int)(len - sp->cut));
            if (!pair || json_array_append_new(merges, pair))
                rc = tw_error_set(TW_ENOMEM, "out of memory");
        }
    }
    tw_vec_free(&splits);
    tw_free(order);
    tw_map_free(&ids);
    return rc;
}

static json_t *template_bos(const char *bos, int32_t id)
{
    return json_pack("{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:[],s:{s:{s:s,s:[i],s:[s]}}}", "type",
                     "TemplateProcessing", "single", "SpecialToken", "id", bos, "type_id", 0,
                     "Sequence", "id", "A", "type_id", 0, "pair", "special_tokens", bos, "id", bos,
                     "ids", (int)id, "tokens", bos);
}
// llama.cpp's convert_hf_to_gguf.py writes BERT vocabularies in "phantom space" spelling:
// "[X]" as is, "##piece" as "piece", "word" as "▁word". This undoes it.
static char *wordpiece_spelling(const char *tok)
{
    size_t n = strlen(tok);
    if (n >= 2 && tok[0] == '[' && tok[n - 1] == ']')
        return tw_strdup(tok);
    if (n >= 3 && memcmp(tok, "\xE2\x96\x81", 3) == 0)
        return tw_strdup(tok + 3);
    char *s = tw_malloc(n + 3);
    if (s) {
        memcpy(s, "##", 2);
        memcpy(s + 2, tok, n + 1);
    }
    return s;
}

static int32_t find_token(const struct tw_tokenizer_vocab *v, const char *name)
{
    for (size_t i = 0; i < v->n_tokens; i++)
        if (strcmp(v->tokens[i], name) == 0)
            return (int32_t)i;
    return -1;
}

static int from_wordpiece(const struct tw_tokenizer_vocab *v, json_t *root)
{
    json_t *vocab = json_object(), *added = json_array();
    int rc = vocab && added ? 0 : TW_ENOMEM;
    for (size_t i = 0; !rc && i < v->n_tokens; i++) {
        char *w = wordpiece_spelling(v->tokens[i]);
        rc = w && json_object_get(vocab, w) == NULL
                 ? json_object_set_new(vocab, w, json_integer((json_int_t)i))
                 : (w ? 0 : TW_ENOMEM);
        int type = v->types ? v->types[i] : 1;
        if (!rc && w && (type == 3 || type == 4 || (w[0] == '[' && type != 1)))
            rc = json_array_append_new(added, json_pack("{s:i,s:s,s:b}", "id", (json_int_t)i,
                                                        "content", w, "special", type != 4));
        tw_free(w);
    }
    int32_t cls = v->cls >= 0 ? v->cls : find_token(v, "[CLS]");
    int32_t sep = v->sep >= 0 ? v->sep : find_token(v, "[SEP]");
    int32_t unk = v->unk >= 0 ? v->unk : find_token(v, "[UNK]");
    if (!rc && (cls < 0 || sep < 0 || unk < 0))
        rc = tw_error_set(TW_EFORMAT, "tokenizer.ggml: a bert vocabulary needs [CLS], [SEP] and "
                                      "[UNK] tokens");
    if (rc) {
        json_decref(vocab);
        json_decref(added);
        return rc == TW_ENOMEM ? tw_error_set(TW_ENOMEM, "out of memory") : rc;
    }
    char *unk_name = wordpiece_spelling(v->tokens[unk]);
    char *cls_name = wordpiece_spelling(v->tokens[cls]);
    char *sep_name = wordpiece_spelling(v->tokens[sep]);
    json_object_set_new(root, "normalizer",
                        json_pack("{s:s,s:b,s:b,s:n,s:b}", "type", "BertNormalizer", "clean_text",
                                  1, "handle_chinese_chars", 1, "strip_accents", "lowercase",
                                  !v->cased));
    json_object_set_new(root, "pre_tokenizer", json_pack("{s:s}", "type", "BertPreTokenizer"));
    json_object_set_new(root, "model",
                        json_pack("{s:s,s:o,s:s?,s:s,s:i}", "type", "WordPiece", "vocab", vocab,
                                  "unk_token", unk_name, "continuing_subword_prefix", "##",
                                  "max_input_chars_per_word", 100));
    json_object_set_new(root, "added_tokens", added);
    json_object_set_new(root, "post_processor",
                        json_pack("{s:s,s:[s?,i],s:[s?,i]}", "type", "BertProcessing", "cls",
                                  cls_name, (int)cls, "sep", sep_name, (int)sep));
    json_object_set_new(
        root, "decoder",
        json_pack("{s:s,s:s,s:b}", "type", "WordPiece", "prefix", "##", "cleanup", 1));
    tw_free(unk_name);
    tw_free(cls_name);
    tw_free(sep_name);
    return 0;
}

// Loads root (a tokenizer.json built in memory) and sets the special ids given by v.
static int load_built(const struct tw_tokenizer_vocab *v, json_t *root, tw_tokenizer **out)
{
    tw_tokenizer *t = NULL;
    int rc = tokenizer_load_root("tokenizer.ggml", root, &t);
    if (rc)
        return rc;
    t->bos = v->bos;
    t->eos = v->eos;
    t->pad = v->pad;
    if (v->chat_template && !(t->chat_template = tw_strdup(v->chat_template))) {
        tw_tokenizer_free(t);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    *out = t;
    return 0;
}

// The tokenizer.json that v describes, into *out (the caller decrefs it).
static int build_root(const struct tw_tokenizer_vocab *v, json_t **out)
{
    tw_json_init(); // jansson allocates through twin's allocator before the first json_pack
    if (v->model && strcmp(v->model, "bert") == 0) {
        json_t *root = json_object();
        int rc = root ? from_wordpiece(v, root) : tw_error_set(TW_ENOMEM, "out of memory");
        if (!rc)
            *out = root;
        else
            json_decref(root);
        return rc;
    }
    bool spm = v->model && strcmp(v->model, "llama") == 0;
    bool bpe = v->model && strcmp(v->model, "gpt2") == 0;
    if (!spm && !bpe)
        return tw_error_set(TW_EUNSUPPORTED,
                            "tokenizer.ggml.model: \"%s\" is not supported (supported: gpt2, "
                            "llama, bert)",
                            v->model ? v->model : "(none)");
    json_t *root = json_object(), *vocab = json_object(), *merges = json_array();
    json_t *added = json_array();
    int rc = root && vocab && merges && added ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < v->n_tokens; i++) {
        int type = v->types ? v->types[i] : 1;
        if (json_object_set_new(vocab, v->tokens[i], json_integer((json_int_t)i)))
            rc = tw_error_set(TW_ENOMEM, "out of memory");
        // unknown, control and user-defined tokens are added tokens (HF's tokenizer.json
        // lists <unk> among them too); user-defined ones are not special
        if (!rc && type >= 2 && type <= 4)
            rc = json_array_append_new(added, json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id",
                                                        (json_int_t)i, "content", v->tokens[i],
                                                        "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                        "normalized", 0, "special", type != 4))
                     ? tw_error_set(TW_ENOMEM, "out of memory")
                     : 0;
    }
    // Merges as given: byte-level BPE always has them; for SentencePiece they are optional
    // (twin's export writes HF's, whose order the scores cannot always carry).
    for (size_t i = 0; !rc && i < v->n_merges; i++)
        if (json_array_append_new(merges, json_string(v->merges[i])))
            rc = tw_error_set(TW_ENOMEM, "out of memory");
    bool ignore_merges = false;
    if (!rc && bpe) {
        rc = gpt2_pre(v->pre, root, &ignore_merges);
    } else if (!rc) {
        if (v->n_merges == 0)
            rc = spm_merges(v, merges);
        json_t *norm =
            v->add_space_prefix
                ? json_pack("{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]}", "type", "Sequence",
                            "normalizers", "type", "Prepend", "prepend", "\xE2\x96\x81", "type",
                            "Replace", "pattern", "String", " ", "content", "\xE2\x96\x81")
                : json_pack("{s:s,s:{s:s},s:s}", "type", "Replace", "pattern", "String", " ",
                            "content", "\xE2\x96\x81");
        int scheme = -1, split = 0;
        for (int i = 0; i < 3 && v->pre; i++)
            for (int k = 0; k < 2; k++)
                if (strcmp(v->pre, gguf_metaspace_pres[i][k]) == 0) {
                    scheme = i;
                    split = k;
                }
        if (scheme >= 0) { // HF's Metaspace instead of the normalizer
            static const char *const schemes[] = { "always", "first", "never" };
            json_decref(norm);
            norm = json_null();
            json_object_set_new(root, "pre_tokenizer",
                                json_pack("{s:s,s:s,s:s,s:b}", "type", "Metaspace", "replacement",
                                          "\xE2\x96\x81", "prepend_scheme", schemes[scheme],
                                          "split", split));
        } else {
            json_object_set_new(root, "pre_tokenizer", json_null());
        }
        json_object_set_new(root, "normalizer", norm);
        json_t *dec = json_pack("{s:s,s:[{s:s,s:{s:s},s:s},{s:s},{s:s}]}", "type", "Sequence",
                                "decoders", "type", "Replace", "pattern", "String", "\xE2\x96\x81",
                                "content", " ", "type", "ByteFallback", "type", "Fuse");
        if (v->add_space_prefix) // the space the normalizer (or Metaspace) prepended
            json_array_append_new(json_object_get(dec, "decoders"),
                                  json_pack("{s:s,s:s,s:i,s:i}", "type", "Strip", "content", " ",
                                            "start", 1, "stop", 0));
        json_object_set_new(root, "decoder", dec);
    }
    if (!rc) {
        const char *unk = v->unk >= 0 && (size_t)v->unk < v->n_tokens ? v->tokens[v->unk] : NULL;
        json_t *model =
            json_pack("{s:s,s:O,s:O,s:b,s:b,s:b}", "type", "BPE", "vocab", vocab, "merges", merges,
                      "byte_fallback", spm, "fuse_unk", spm, "ignore_merges", ignore_merges);
        if (model && unk)
            json_object_set_new(model, "unk_token", json_string(unk));
        json_object_set_new(root, "model", model);
        json_object_set_new(root, "added_tokens", json_incref(added));
        bool bos = v->add_bos && v->bos >= 0 && (size_t)v->bos < v->n_tokens;
        json_object_set_new(root, "post_processor",
                            bos ? template_bos(v->tokens[v->bos], v->bos) : json_null());
    }
    json_decref(vocab);
    json_decref(merges);
    json_decref(added);
    if (rc)
        json_decref(root);
    else
        *out = root;
    return rc;
}

int tw_tokenizer_from_vocab(const struct tw_tokenizer_vocab *v, tw_tokenizer **out)
{
    json_t *root = NULL;
    int rc = build_root(v, &root);
    if (!rc)
        rc = load_built(v, root, out);
    json_decref(root);
    return rc;
}

// The name of id in v, or NULL.
static const char *token_name(const struct tw_tokenizer_vocab *v, int32_t id)
{
    return id >= 0 && (size_t)id < v->n_tokens ? v->tokens[id] : NULL;
}

int tw_tokenizer_save(const tw_tokenizer *t, const char *dir)
{
    struct tw_tokenizer_vocab v;
    tw_arena arena;
    tw_arena_init(&arena, 1 << 20);
    json_t *root = NULL, *cfg = NULL;
    char *text = NULL;
    char path[4096];
    int rc = tw_tokenizer_export_vocab(t, &v, &arena);
    if (!rc)
        rc = build_root(&v, &root);
    if (!rc) {
        // tokenizer_config.json as transformers reads it: the special tokens by name, the
        // chat template, the fast tokenizer class.
        cfg = json_pack("{s:s, s:b}", "tokenizer_class", "PreTrainedTokenizerFast",
                        "clean_up_tokenization_spaces", 0);
        static const char *const keys[] = { "bos_token", "eos_token", "pad_token",
                                            "unk_token", "cls_token", "sep_token" };
        int32_t ids[] = { v.bos, v.eos, v.pad, v.unk, v.cls, v.sep };
        for (size_t i = 0; cfg && i < sizeof keys / sizeof *keys; i++)
            if (token_name(&v, ids[i]))
                json_object_set_new(cfg, keys[i], json_string(token_name(&v, ids[i])));
        if (cfg && v.chat_template)
            json_object_set_new(cfg, "chat_template", json_string(v.chat_template));
        if (!cfg)
            rc = tw_error_set(TW_ENOMEM, "out of memory");
    }
    if (!rc && !(rc = tw_path_join(path, sizeof path, dir, "tokenizer.json")) &&
        !(rc = tw_json_dump(root, JSON_COMPACT, &text)))
        rc = tw_file_write_atomic(path, text, strlen(text));
    tw_free(text);
    text = NULL;
    if (!rc && !(rc = tw_path_join(path, sizeof path, dir, "tokenizer_config.json")) &&
        !(rc = tw_json_dump(cfg, JSON_INDENT(2), &text)))
        rc = tw_file_write_atomic(path, text, strlen(text));
    tw_free(text);
    json_decref(root);
    json_decref(cfg);
    tw_arena_free(&arena);
    return rc;
}

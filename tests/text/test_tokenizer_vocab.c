// Tests tw_tokenizer_from_vocab, the path a GGUF file's tokenizer.ggml.* arrays take: the
// arrays are made from each npm tokenizer.json as a GGUF converter would write them, and the
// tokenizer built from them must give HF's ids on the hard set and on addresses of the
// corpus (tests/golden/tokenizers/*.json). For SentencePiece ("llama") no merges are given:
// the scores are set so that their order is the order of tokenizer.json's merges, and the
// merges twin derives from the scores must reproduce HF's ids.
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "check.h"
#include "text/tokenizer.h"

static const char *root;

struct arrays {
    size_t n;
    const char **tokens;
    int32_t *types;
    float *scores;
    size_t n_merges;
    const char **merges;
    char **owned; // merge strings made here
};

static void arrays_free(struct arrays *a)
{
    for (size_t i = 0; i < a->n_merges; i++)
        free(a->owned[i]);
    free(a->owned);
    free(a->tokens);
    free(a->types);
    free(a->scores);
    free(a->merges);
}

// The GGUF arrays of a tokenizer.json: tokens by id, types (added special tokens are
// control), merges as "left right", and scores that rank each piece by its first merge.
static void make_arrays(const json_t *tj, struct arrays *a)
{
    const json_t *vocab = json_object_get(json_object_get(tj, "model"), "vocab");
    const json_t *added = json_object_get(tj, "added_tokens");
    const json_t *merges = json_object_get(json_object_get(tj, "model"), "merges");
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vocab, key, v)
    {
        if ((size_t)json_integer_value(v) + 1 > n)
            n = (size_t)json_integer_value(v) + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        size_t id = (size_t)json_integer_value(json_object_get(json_array_get(added, i), "id"));
        if (id + 1 > n)
            n = id + 1;
    }
    a->n = n;
    a->tokens = calloc(n, sizeof *a->tokens);
    a->types = calloc(n, sizeof *a->types);
    a->scores = calloc(n, sizeof *a->scores);
    json_object_foreach((json_t *)vocab, key, v)
    {
        a->tokens[json_integer_value(v)] = key;
        a->types[json_integer_value(v)] = 1;
        a->scores[json_integer_value(v)] = -1e30f;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *e = json_array_get(added, i);
        size_t id = (size_t)json_integer_value(json_object_get(e, "id"));
        a->tokens[id] = json_string_value(json_object_get(e, "content"));
        a->types[id] = json_is_true(json_object_get(e, "special")) ? 3 : 4;
    }
    for (size_t i = 0; i < n; i++)
        if (!a->tokens[i])
            a->tokens[i] = "";
    a->n_merges = json_array_size(merges);
    a->merges = calloc(a->n_merges, sizeof *a->merges);
    a->owned = calloc(a->n_merges, sizeof *a->owned);
    tw_map ids;
    tw_map_init(&ids, TW_MAP_STR);
    json_object_foreach((json_t *)vocab, key, v)
    {
        tw_map_put_str(&ids, key, strlen(key), (uint64_t)json_integer_value(v));
    }
    for (size_t i = 0; i < a->n_merges; i++) {
        const json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            a->owned[i] = strdup(json_string_value(m));
        } else {
            const char *l = json_string_value(json_array_get(m, 0));
            const char *r = json_string_value(json_array_get(m, 1));
            a->owned[i] = malloc(strlen(l) + strlen(r) + 2);
            sprintf(a->owned[i], "%s %s", l, r);
        }
        a->merges[i] = a->owned[i];
        // score: the merged piece ranks by its first merge (higher score = earlier)
        char *sp = strchr(a->owned[i], ' ');
        char both[1024];
        snprintf(both, sizeof both, "%.*s%s", (int)(sp - a->owned[i]), a->owned[i], sp + 1);
        uint64_t id;
        if (tw_map_get_str(&ids, both, strlen(both), &id) && a->scores[id] == -1e30f)
            a->scores[id] = -(float)i;
    }
    tw_map_free(&ids);
}

static int check_against_golden(const char *name, tw_tokenizer *t, int n_docs)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizers/%s.json", root, name);
    json_t *g;
    if (tw_json_load_file(path, 0, &g) != 0)
        return 1;
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    int bad = 0;
    const json_t *hard = json_object_get(g, "hard");
    for (size_t i = 0; i < json_array_size(hard); i++) {
        const json_t *c = json_array_get(hard, i);
        if (json_is_string(json_object_get(c, "raw_hex")))
            continue;
        const json_t *text = json_object_get(c, "text");
        const json_t *want = json_object_get(c, "ids_special");
        ids.len = 0;
        if (tw_tokenizer_encode(t, json_string_value(text), json_string_length(text),
                                TW_TOK_ADD_SPECIAL, &ids, NULL) != 0 ||
            ids.len != json_array_size(want)) {
            fprintf(stderr, "%s (from vocab): %s: %zu ids, want %zu\n", name,
                    json_string_value(json_object_get(c, "name")), ids.len, json_array_size(want));
            bad++;
            continue;
        }
        for (size_t k = 0; k < ids.len; k++)
            if (TW_VEC_AT(&ids, int32_t, k) != json_integer_value(json_array_get(want, k))) {
                fprintf(stderr, "%s (from vocab): %s: id %zu differs\n", name,
                        json_string_value(json_object_get(c, "name")), k);
                bad++;
                break;
            }
    }
    const json_t *corpus = json_object_get(g, "corpus");
    for (int i = 0; i < n_docs; i++) {
        const json_t *d = json_array_get(corpus, (size_t)(i * 37 % 233));
        snprintf(path, sizeof path, "%s/.cache/data/sotu/%s", root,
                 json_string_value(json_object_get(d, "file")));
        char *text;
        size_t len;
        if (tw_file_read(path, 64 << 20, &text, &len) != 0) {
            bad++;
            continue;
        }
        ids.len = 0;
        CHECK_OK(tw_tokenizer_encode(t, text, len, 0, &ids, NULL));
        uint8_t dg[32];
        char hex[65];
        tw_sha256(ids.data, ids.len * 4, dg);
        tw_sha256_hex(dg, hex);
        if (strcmp(hex, json_string_value(json_object_get(d, "sha256"))) != 0) {
            fprintf(stderr, "%s (from vocab): %s differs\n", name,
                    json_string_value(json_object_get(d, "file")));
            bad++;
        }
        tw_free(text);
    }
    tw_vec_free(&ids);
    json_decref(g);
    return bad;
}

static void check_one(const char *name, const char *model, const char *pre, int32_t bos,
                      bool add_space_prefix)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/.cache/data/tokenizers/%s/tokenizer.json", root, name);
    json_t *tj;
    CHECK_OK(tw_json_load_file(path, 0, &tj));
    if (!tj)
        return;
    struct arrays a;
    make_arrays(tj, &a);
    bool spm = strcmp(model, "llama") == 0;
    struct tw_tokenizer_vocab v = {
        .model = model,
        .pre = pre,
        .n_tokens = a.n,
        .tokens = a.tokens,
        .scores = spm ? a.scores : NULL,
        .types = a.types,
        .n_merges = spm ? 0 : a.n_merges,
        .merges = spm ? NULL : a.merges,
        .bos = bos,
        .eos = -1,
        .unk = spm ? 0 : -1,
        .pad = -1,
        .cls = -1,
        .sep = -1,
        .add_bos = bos >= 0,
        .add_space_prefix = add_space_prefix,
    };
    if (spm && strcmp(name, "gemma3") == 0)
        v.unk = 3;
    tw_tokenizer *t = NULL;
    CHECK_OK(tw_tokenizer_from_vocab(&v, &t));
    if (t) {
        int bad = check_against_golden(name, t, 6);
        if (bad)
            fprintf(stderr, "%s: %d differences\n", name, bad);
        CHECK_EQ_INT(bad, 0);
        CHECK_EQ_INT(tw_tokenizer_bos(t), bos);
        tw_tokenizer_free(t);
    }
    arrays_free(&a);
    json_decref(tj);
}

// BERT as llama.cpp's converter writes it: "[X]" as is, "##piece" as "piece", "word" as
// "▁word" (convert_hf_to_gguf.py, BertModel.set_vocab).
static void check_bert(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizers/bert/tokenizer.json", root);
    json_t *tj;
    CHECK_OK(tw_json_load_file(path, 0, &tj));
    if (!tj)
        return;
    struct arrays a;
    make_arrays(tj, &a);
    char **phantom = calloc(a.n, sizeof *phantom);
    for (size_t i = 0; i < a.n; i++) {
        const char *t = a.tokens[i];
        size_t n = strlen(t);
        phantom[i] = malloc(n + 4);
        if (n >= 2 && t[0] == '[' && t[n - 1] == ']')
            strcpy(phantom[i], t);
        else if (strncmp(t, "##", 2) == 0)
            strcpy(phantom[i], t + 2);
        else
            sprintf(phantom[i], "\xE2\x96\x81%s", t);
    }
    struct tw_tokenizer_vocab v = { .model = "bert",
                                    .n_tokens = a.n,
                                    .tokens = (const char *const *)phantom,
                                    .types = a.types,
                                    .bos = -1,
                                    .eos = -1,
                                    .unk = -1,
                                    .pad = -1,
                                    .cls = -1,
                                    .sep = -1 };
    tw_tokenizer *t = NULL;
    CHECK_OK(tw_tokenizer_from_vocab(&v, &t));
    if (t) {
        int bad = check_against_golden("bert", t, 6);
        if (bad)
            fprintf(stderr, "bert: %d differences\n", bad);
        CHECK_EQ_INT(bad, 0);
        tw_tokenizer_free(t);
    }
    for (size_t i = 0; i < a.n; i++)
        free(phantom[i]);
    free(phantom);
    arrays_free(&a);
    json_decref(tj);
}

int main(void)
{
    root = test_source_dir();
    check_one("llama3", "gpt2", "llama-bpe", -1, false); // its tokenizer.json adds no BOS
    check_one("llama3_1", "gpt2", "llama-bpe", 128000, false);
    check_one("qwen3", "gpt2", "qwen2", -1, false);
    check_one("gpt4o", "gpt2", "gpt-4o", -1, false);
    check_one("llama2", "llama", NULL, 1, true);
    check_one("gemma3", "llama", NULL, 2, false);
    check_bert();

    // Unsupported values are named with what is supported.
    struct tw_tokenizer_vocab v = { .model = "rwkv", .bos = -1, .eos = -1, .unk = -1, .pad = -1 };
    tw_tokenizer *t = NULL;
    CHECK_EQ_INT(tw_tokenizer_from_vocab(&v, &t), TW_EUNSUPPORTED);
    CHECK(strstr(tw_error_msg(), "gpt2, llama, bert") != NULL);
    const char *toks[] = { "a", "b", "ab" };
    v = (struct tw_tokenizer_vocab){ .model = "gpt2",
                                     .pre = "deepseek-coder",
                                     .n_tokens = 3,
                                     .tokens = toks,
                                     .bos = -1,
                                     .eos = -1,
                                     .unk = -1,
                                     .pad = -1 };
    CHECK_EQ_INT(tw_tokenizer_from_vocab(&v, &t), TW_EUNSUPPORTED);
    CHECK(strstr(tw_error_msg(), "deepseek-coder") != NULL);
    tw_tokenizer_thread_cleanup();
    return check_report("tokenizer_vocab");
}

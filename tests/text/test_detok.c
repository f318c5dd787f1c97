// Incremental decoding (tw_tokenizer_decode_next, what a generation streams) against decoding
// all the ids at once, for every tokenizer the tests have (SentencePiece with byte fallback,
// byte-level BPE): the pieces, one token at a time, join into exactly the whole text — for a
// State of the Union address (a stretch of each) and for random ids, whose stray bytes make
// incomplete characters that are held back and then let out at the end. (The random ids
// leave out SentencePiece's byte tokens: HF's ByteFallback turns a whole run of them that
// ends invalid into one U+FFFD a byte, valid characters before included, which text already
// given cannot follow.) Ids that shrink are refused.
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "sotu.h"
#include "text/tokenizer.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint32_t next(void)
{
    return (uint32_t)(check_rand(&rng) >> 32);
}

// ids[0, n) fed one more at a time (final at the end) against one decode of all n.
static void same_text(const char *name, const tw_tokenizer *t, const int32_t *ids, size_t n,
                      int flags)
{
    tw_str whole, pieces;
    tw_str_init(&whole);
    tw_str_init(&pieces);
    CHECK_OK(tw_tokenizer_decode(t, ids, n, flags, &whole));
    struct tw_detok d;
    tw_detok_init(&d);
    for (size_t i = 1; i <= n; i++)
        CHECK_OK(tw_tokenizer_decode_next(t, ids, i, flags, i == n, &d, &pieces));
    bool same = whole.v.len == pieces.v.len &&
                memcmp(tw_str_cstr(&whole), tw_str_cstr(&pieces), whole.v.len) == 0;
    if (!same)
        fprintf(stderr, "%s: %zu ids: incremental text (%zu bytes) differs from the whole (%zu)\n",
                name, n, pieces.v.len, whole.v.len);
    CHECK(same);
    tw_detok_free(&d);
    tw_str_free(&whole);
    tw_str_free(&pieces);
}

int main(void)
{
    const char *root = test_source_dir();
    char dir[1024], path[1200];
    char *names[512];
    size_t nf = sotu_list(dir, sizeof dir, names, 512);
    REQUIRE(nf > 0);
    snprintf(path, sizeof path, "%s/%s", dir, names[nf - 1]);
    size_t len = 0;
    char *text = test_read_file(path, &len);
    REQUIRE(text);
    static const char *const toks[] = {
        "llama2", "llama3", "llama3_1", "qwen3", "gemma3", "gpt4o"
    };
    for (size_t k = 0; k < sizeof toks / sizeof *toks; k++) {
        snprintf(path, sizeof path, "%s/.cache/data/tokenizers/%s", root, toks[k]);
        tw_tokenizer *t = NULL;
        REQUIRE(tw_tokenizer_load_dir(path, &t) == 0);
        tw_vec ids;
        tw_vec_init(&ids, sizeof(int32_t));
        CHECK_OK(tw_tokenizer_encode(t, text, len < 20000 ? len : 20000, TW_TOK_ADD_SPECIAL, &ids,
                                     NULL));
        REQUIRE(ids.len > 100);
        same_text(toks[k], t, ids.data, ids.len, TW_TOK_SKIP_SPECIAL);
        same_text(toks[k], t, ids.data, ids.len, 0);
        // Random ids, many of them single bytes (byte fallback or byte-level pieces).
        int32_t V = tw_tokenizer_vocab_size(t);
        int32_t *r = tw_malloc_array(400, sizeof *r);
        REQUIRE(r);
        for (int rep = 0; rep < 20; rep++) {
            for (int i = 0; i < 400; i++) {
                const char *p;
                do {
                    r[i] = next() % 3 == 0 ? (int32_t)(next() % 300)
                                           : (int32_t)(next() % (uint32_t)V);
                    p = tw_tokenizer_id_to_piece(t, r[i]);
                } while (p && strlen(p) == 6 && strncmp(p, "<0x", 3) == 0 && p[5] == '>');
            }
            same_text(toks[k], t, r, 400, TW_TOK_SKIP_SPECIAL);
        }
        // Fewer ids than the last call: refused.
        struct tw_detok d;
        tw_str out;
        tw_detok_init(&d);
        tw_str_init(&out);
        CHECK_OK(tw_tokenizer_decode_next(t, ids.data, 10, 0, false, &d, &out));
        CHECK(out.v.len > 0);
        CHECK_EQ_INT(tw_tokenizer_decode_next(t, ids.data, 3, 0, false, &d, &out), TW_EINVAL);
        tw_detok_free(&d);
        tw_str_free(&out);
        tw_free(r);
        tw_vec_free(&ids);
        tw_tokenizer_free(t);
    }
    tw_tokenizer_thread_cleanup();
    tw_free(text);
    for (size_t i = 0; i < nf; i++)
        tw_free(names[i]);
    return check_report("text_test_detok");
}

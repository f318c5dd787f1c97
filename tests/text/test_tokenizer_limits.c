// Hostile tokenizer files: token ids are bounded, the vocabulary size covers every id that
// encode gives, and empty pieces are handled. Each case is a bug found with
// fuzz/fuzz_tokenizer_json (inputs kept under fuzz/regressions/fuzz_tokenizer_json/).
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "text/tokenizer.h"

#define VOCAB     "\"vocab\":{\"a\":0,\"b\":1,\"ab\":2}"
#define BPE_MODEL "\"model\":{\"type\":\"BPE\"," VOCAB ",\"merges\":[\"a b\"]}"

static tw_tokenizer *load(const char *json, int want)
{
    tw_tokenizer *t = NULL;
    int rc = tw_tokenizer_load_buffer("tok.json", json, strlen(json), &t);
    if (rc != want)
        fprintf(stderr, "  %s\n  -> %d (%s), want %d\n", json, rc, tw_error_msg(), want);
    CHECK_EQ_INT(rc, want);
    return t;
}

// Every id of encode(text) with the post-processor is in [0, vocab size).
static void check_ids(const tw_tokenizer *t, const char *text)
{
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    CHECK_OK(tw_tokenizer_encode(t, text, strlen(text), TW_TOK_ADD_SPECIAL, &ids, NULL));
    for (size_t i = 0; i < ids.len; i++) {
        int32_t id = TW_VEC_AT(&ids, int32_t, i);
        CHECK(id >= 0 && id < tw_tokenizer_vocab_size(t));
    }
    tw_vec_free(&ids);
}

int main(void)
{
    long live = tw_mem_live();

    // WordPiece: the size is the largest id + 1, not the capacity of the id table (was 1024
    // here, and 32768 for BERT's 30522).
    tw_tokenizer *t = load("{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
                           "\"vocab\":{\"[UNK]\":0,\"a\":1,\"##b\":2,\"c\":4}}}",
                           0);
    if (t)
        CHECK_EQ_INT(tw_tokenizer_vocab_size(t), 5);
    tw_tokenizer_free(t);

    // A huge vocabulary id is refused: it overflowed the table's doubling (signed overflow)
    // and asked for gigabytes.
    load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":2147483647},\"merges\":[]}}", TW_ELIMIT);
    load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":16777216},\"merges\":[]}}", TW_ELIMIT);
    load("{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"a\",\"vocab\":{\"a\":1073741824}}}",
         TW_ELIMIT);
    t = load("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":16777215},\"merges\":[]}}", 0);
    if (t)
        CHECK_EQ_INT(tw_tokenizer_vocab_size(t), 16777216);
    tw_tokenizer_free(t);

    // Added tokens: INT32_MAX overflowed "id + 1" in the size; 2^32 + 2 was read as id 2.
    load("{\"added_tokens\":[{\"id\":2147483647,\"content\":\"<x>\"}]," BPE_MODEL "}", TW_ELIMIT);
    load("{\"added_tokens\":[{\"id\":4294967298,\"content\":\"<x>\"}]," BPE_MODEL "}", TW_ELIMIT);

    // Post-processor ids outside the vocabulary: the size now covers them (encode gave 99999
    // with a size of 3); negative ones are refused.
    t = load("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
             "{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"<s>\":"
             "{\"ids\":[99999]}}}," BPE_MODEL "}",
             0);
    if (t) {
        CHECK_EQ_INT(tw_tokenizer_vocab_size(t), 100000);
        check_ids(t, "ab");
    }
    tw_tokenizer_free(t);
    load("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
         "{\"id\":\"<s>\"}}],\"special_tokens\":{\"<s>\":{\"ids\":[-1]}}}," BPE_MODEL "}",
         TW_EFORMAT);
    load("{\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"x\",-5],\"sep\":[\"y\",7]}"
         "," BPE_MODEL "}",
         TW_EFORMAT);
    t = load("{\"post_processor\":{\"type\":\"BertProcessing\",\"cls\":[\"x\",5],\"sep\":[\"y\",7]"
             "}," BPE_MODEL "}",
             0);
    if (t) {
        CHECK_EQ_INT(tw_tokenizer_vocab_size(t), 8);
        check_ids(t, "ab ba");
    }
    tw_tokenizer_free(t);

    // A BPE without an unknown token drops characters it has no token for; a word with no
    // token at all went through the word memo as NULL + 0 (undefined behaviour).
    t = load("{" BPE_MODEL "}", 0);
    if (t) {
        tw_vec ids;
        tw_vec_init(&ids, sizeof(int32_t));
        for (int k = 0; k < 2; k++) { // the second time through the memo
            tw_vec_clear(&ids);
            CHECK_OK(tw_tokenizer_encode(t, "xyz", 3, 0, &ids, NULL));
            CHECK_EQ_INT(ids.len, 0);
            CHECK_OK(tw_tokenizer_encode(t, "xabx", 4, 0, &ids, NULL));
            CHECK_EQ_INT(ids.len, 1);
        }
        tw_vec_free(&ids);
    }
    tw_tokenizer_free(t);

    // An added token with empty content, normalized: nstr_put of 0 bytes into an empty
    // string computed NULL + 0 (undefined behaviour).
    t = load("{\"normalizer\":{\"type\":\"Prepend\",\"prepend\":\"\"},\"added_tokens\":[{\"id\":1,"
             "\"content\":\"\",\"normalized\":true}]," BPE_MODEL "}",
             0);
    if (t)
        check_ids(t, "ab a");
    tw_tokenizer_free(t);

    tw_tokenizer_thread_cleanup();
    CHECK_EQ_INT(tw_mem_live(), live);
    return check_report("tokenizer_limits");
}

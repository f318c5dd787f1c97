// Bad tokenizer files: each error names the file and the JSON path of the bad element, an
// unsupported component names itself and lists what is supported, and nothing leaks.
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "text/tokenizer.h"

static void expect(const char *json, int code, const char *needle)
{
    tw_tokenizer *t = NULL;
    int rc = tw_tokenizer_load_buffer("tok.json", json, strlen(json), &t);
    CHECK_EQ_INT(rc, code);
    if (!strstr(tw_error_msg(), needle) || strncmp(tw_error_msg(), "tok.json", 8) != 0) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", tw_error_msg(), needle);
        CHECK(0);
    }
    CHECK(t == NULL);
    tw_tokenizer_free(t);
}

#define MODEL(merges) \
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":" merges "}"
#define BPE(merges) "{" MODEL(merges) "}"
// A valid model plus other top-level members.
#define WITH(members) "{" members "," MODEL("[]") "}"

int main(void)
{
    long live = tw_mem_live();
    // A tiny valid tokenizer loads and works.
    tw_tokenizer *t = NULL;
    const char *ok = BPE("[\"a b\"]");
    CHECK_OK(tw_tokenizer_load_buffer("tok.json", ok, strlen(ok), &t));
    if (t) {
        tw_vec ids;
        tw_vec_init(&ids, sizeof(int32_t));
        CHECK_OK(tw_tokenizer_encode(t, "abba", 4, 0, &ids, NULL));
        CHECK_EQ_INT(ids.len, 3); // ab b a
        CHECK_EQ_INT(TW_VEC_AT(&ids, int32_t, 0), 2);
        tw_vec_free(&ids);
        tw_tokenizer_free(t);
    }
    expect("{\"model\": [1,", TW_EFORMAT, "line 1");
    expect(BPE("[\"a b\", 12]"), TW_EFORMAT, "model.merges[1]: expected a string or a pair");
    expect(BPE("[\"a b\", \"a c\"]"), TW_EFORMAT, "model.merges[1]");
    expect(BPE("[\"a b c\"]"), TW_EFORMAT, "model.merges[0]: expected \"left right\"");
    expect(BPE("{}"), TW_EFORMAT, "model.merges: expected an array");
    expect("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", TW_EFORMAT,
           "model.vocab[\"a\"]: expected an id");
    expect("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", TW_EUNSUPPORTED,
           "supported: BPE, WordPiece");
    expect(WITH("\"normalizer\":{\"type\":\"Precompiled\"}"), TW_EUNSUPPORTED,
           "normalizer: normalizer \"Precompiled\" is not supported (supported: NFC");
    expect(WITH("\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":"
                "\"ByteLevel\"},{\"type\":\"UnicodeScripts\"}]}"),
           TW_EUNSUPPORTED, "pre_tokenizer.pretokenizers[1]: pre-tokenizer \"UnicodeScripts\"");
    expect(WITH("\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},"
                "\"behavior\":\"Isolated\"}"),
           TW_EFORMAT, "pre_tokenizer.pattern.Regex: at offset");
    expect(WITH("\"decoder\":{\"type\":\"CTC\"}"), TW_EUNSUPPORTED,
           "decoder \"CTC\" is not supported");
    expect(
        WITH("\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
             "{\"id\":\"<s>\"}}],\"special_tokens\":{}}"),
        TW_EFORMAT, "post_processor.special_tokens[\"<s>\"].ids");
    expect(WITH("\"added_tokens\":[{\"id\":\"x\"}]"), TW_EFORMAT, "added_tokens[0]");
    tw_tokenizer_thread_cleanup();
    CHECK_EQ_INT(tw_mem_live(), live);
    return check_report("tokenizer_errors");
}

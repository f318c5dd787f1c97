// The server's wire formats (serve/api.h): OpenAI requests parsed into engine parameters with
// OpenAI's defaults, every kind of bad request refused with a message that names the field,
// and the responses built in OpenAI's shapes (a completion, stream chunks, usage, errors,
// embeddings as numbers and as base64 of little-endian float32).
#include <math.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/json.h"
#include "check.h"
#include "serve/api.h"

static int parse(const char *body, bool chat, struct tw_api_gen *g)
{
    return tw_api_parse_gen(body, strlen(body), chat, g);
}

static void refused(const char *body, bool chat, int rc, const char *says)
{
    struct tw_api_gen g;
    CHECK_EQ_INT(parse(body, chat, &g), rc);
    if (!strstr(tw_error_msg(), says))
        fprintf(stderr, "%s: message '%s' lacks '%s'\n", body, tw_error_msg(), says);
    CHECK(strstr(tw_error_msg(), says) != NULL);
}

int main(void)
{
    struct tw_api_gen g;
    // A chat request with everything, and text parts joined.
    CHECK_OK(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"Be "
                   "brief.\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                   "\"Hi\"},{\"type\":\"text\",\"text\":\" there\"}]}],\"max_tokens\":12,"
                   "\"temperature\":0,\"top_p\":0.5,\"stop\":[\"a\",\"bb\"],\"stream\":true,"
                   "\"stream_options\":{\"include_usage\":true},\"seed\":7,\"top_k\":3}",
                   true, &g));
    CHECK_EQ_STR(g.model, "m");
    CHECK_EQ_INT(g.n_msgs, 2);
    CHECK_EQ_STR(g.msgs[0].role, "system");
    CHECK_EQ_STR(g.msgs[1].content, "Hi there");
    CHECK_EQ_INT(g.gen.max_tokens, 12);
    CHECK(g.gen.sampling.temperature == 0 && g.gen.sampling.top_p == 0.5f);
    CHECK_EQ_INT(g.gen.sampling.top_k, 3);
    CHECK_EQ_INT(g.gen.sampling.seed, 7);
    CHECK_EQ_INT(g.gen.n_stops, 2);
    CHECK_EQ_STR(g.gen.stops[1], "bb");
    CHECK(g.stream && g.include_usage);
    tw_api_gen_free(&g);
    // OpenAI's defaults; max_completion_tokens is the newer name.
    CHECK_OK(parse("{\"prompt\":\"x\",\"max_completion_tokens\":3,\"stop\":\"\\n\"}", false, &g));
    CHECK(g.gen.sampling.temperature == 1 && g.gen.sampling.top_p == 1 &&
          g.gen.sampling.min_p == 0 && g.gen.sampling.top_k == 0);
    CHECK(g.gen.sampling.repetition_penalty == 1 && g.gen.sampling.penalty_last_n == -1);
    CHECK_EQ_INT(g.gen.max_tokens, 3);
    CHECK_EQ_STR(g.gen.stops[0], "\n");
    CHECK(!g.stream && !g.model);
    tw_api_gen_free(&g);

    // Refusals name what is wrong.
    refused("{\"messages\":[", true, TW_EFORMAT, "line 1, column");
    refused("[1,2]", true, TW_EFORMAT, "expected a JSON object");
    refused("{}", true, TW_EFORMAT, "\"messages\"");
    refused("{\"messages\":[]}", true, TW_EINVAL, "1 to 1024 messages");
    refused("{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", true, TW_EINVAL,
            "messages[0].role");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", true, TW_EINVAL,
            "messages[0].content");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", true,
            TW_EUNSUPPORTED, "only text parts");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", true,
            TW_EINVAL, "temperature: 3 is outside 0..2");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", true,
            TW_EINVAL, "temperature");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", true,
            TW_EUNSUPPORTED, "only 1 choice");
    refused("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", true,
            TW_EUNSUPPORTED, "tools is not supported");
    refused("{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", false, TW_EINVAL,
            "at most 4");
    refused("{\"prompt\":\"x\",\"stop\":[\"\"]}", false, TW_EINVAL, "stop[0] is empty");
    refused("{\"prompt\":\"x\",\"max_tokens\":-1}", false, TW_EINVAL, "max_tokens");
    refused("{\"prompt\":[1,2]}", false, TW_EINVAL, "prompt");
    refused("{\"prompt\":\"x\",\"stream_options\":5}", false, TW_EINVAL, "stream_options");

    // Embeddings requests.
    struct tw_api_embed e;
    const char *eb = "{\"input\":[\"a\",\"b c\"],\"encoding_format\":\"base64\"}";
    CHECK_OK(tw_api_parse_embed(eb, strlen(eb), &e));
    CHECK_EQ_INT(e.n_inputs, 2);
    CHECK_EQ_STR(e.inputs[1], "b c");
    CHECK(e.base64);
    tw_api_embed_free(&e);
    const char *bad[] = { "{\"input\":[]}", "{\"input\":[1,2]}",
                          "{\"input\":\"x\","
                          "\"encoding_format\":\"hex\"}" };
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT(tw_api_parse_embed(bad[i], strlen(bad[i]), &e), TW_EINVAL);
        CHECK(strstr(tw_error_msg(), i < 2 ? "input" : "encoding_format") != NULL);
    }

    // Responses.
    tw_str s;
    tw_str_init(&s);
    CHECK_OK(tw_api_dump(tw_api_completion("c1", 5, "m", true, "hi", "stop", 3, 1), &s));
    CHECK_EQ_STR(tw_str_cstr(&s),
                 "{\"id\":\"c1\",\"object\":\"chat.completion\",\"created\":5,\"model\":\"m\","
                 "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                 "\"hi\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{"
                 "\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}");
    tw_str_clear(&s);
    CHECK_OK(tw_api_chunk(&s, "c1", 5, "m", true, true, "a\"b", 3, NULL));
    CHECK_OK(tw_api_chunk(&s, "c1", 5, "m", false, false, NULL, 0, "length"));
    CHECK_OK(tw_api_usage_chunk(&s, "c1", 5, "m", true, 3, 1));
    CHECK_EQ_STR(tw_str_cstr(&s),
                 "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,"
                 "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                 "\"content\":\"a\\\"b\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                 "data: {\"id\":\"c1\",\"object\":\"text_completion\",\"created\":5,\"model\":"
                 "\"m\",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
                 "\"finish_reason\":\"length\"}]}\n\n"
                 "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":5,"
                 "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                 "\"completion_tokens\":1,\"total_tokens\":4}}\n\n");
    tw_str_clear(&s);
    CHECK_OK(tw_api_dump(tw_api_error("bad", "invalid_request_error", NULL), &s));
    CHECK_EQ_STR(tw_str_cstr(&s), "{\"error\":{\"message\":\"bad\",\"type\":"
                                  "\"invalid_request_error\",\"param\":null,\"code\":null}}");
    CHECK_EQ_STR(tw_api_finish_reason(TW_FINISH_EOS, false), "stop");
    CHECK_EQ_STR(tw_api_finish_reason(TW_FINISH_STOP, false), "stop");
    CHECK_EQ_STR(tw_api_finish_reason(TW_FINISH_LENGTH, false), "length");
    CHECK_EQ_STR(tw_api_finish_reason(TW_FINISH_CANCEL, true), "length");

    // Embeddings: numbers, and base64 that decodes to the same float32 values.
    float v[6] = { 1, -2.5f, 0.1f, 3e-8f, -0.0f, 1234.5f };
    json_t *j = tw_api_embeddings("m", v, 2, 3, true, 9);
    const char *b = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "data"), 1), "embedding"));
    unsigned char raw[16];
    CHECK(b && EVP_DecodeBlock(raw, (const unsigned char *)b, (int)strlen(b)) == 12);
    CHECK(memcmp(raw, v + 3, 12) == 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")),
                 9);
    json_decref(j);
    j = tw_api_embeddings("m", v, 2, 3, false, 9);
    json_t *arr = json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding");
    CHECK_EQ_INT(json_array_size(arr), 3);
    CHECK(json_real_value(json_array_get(arr, 1)) == -2.5);
    CHECK(fabs(json_real_value(json_array_get(arr, 2)) - 0.1) < 1e-7);
    json_decref(j);
    tw_str_free(&s);
    return check_report("serve_test_api");
}

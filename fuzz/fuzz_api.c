// Fuzzes serve/api.c, the parsers of the server's untrusted request bodies, on arbitrary
// bytes: as a chat request, a text completion request and an embeddings request. An accepted
// request must hold what the engine relies on (1 .. 1024 messages with known roles and text,
// at most 4 non-empty stop strings, sampling parameters in their ranges, 1 .. 2048 inputs);
// its strings then go through the response builders (completion, stream chunks, embeddings).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/str.h"
#include "serve/api.h"

static void check_gen(const struct tw_api_gen *g)
{
    const struct tw_sampler_params *s = &g->gen.sampling;
    if (!(s->temperature >= 0 && s->temperature <= 2) || !(s->top_p >= 0 && s->top_p <= 1) ||
        !(s->min_p >= 0 && s->min_p <= 1) || s->top_k < 0 || g->gen.max_tokens < 0 ||
        g->gen.n_stops > TW_API_MAX_STOPS || !(g->timeout_s >= 0))
        abort();
    for (size_t i = 0; i < g->gen.n_stops; i++)
        if (!g->gen.stops[i] || !g->gen.stops[i][0])
            abort();
    if (g->chat) {
        if (g->n_msgs < 1 || g->n_msgs > TW_API_MAX_MESSAGES)
            abort();
        for (size_t i = 0; i < g->n_msgs; i++) {
            const char *r = g->msgs[i].role;
            if (!g->msgs[i].content ||
                (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")))
                abort();
        }
    } else if (!g->prompt) {
        abort();
    }
    // The builders on what was parsed.
    const char *text = g->chat ? g->msgs[g->n_msgs - 1].content : g->prompt;
    tw_str out;
    tw_str_init(&out);
    if (tw_api_dump(
            tw_api_completion("id", 1, g->model ? g->model : "m", g->chat, text, "stop", 1, 2),
            &out) != 0 ||
        tw_api_chunk(&out, "id", 1, "m", g->chat, true, text, strlen(text), NULL) != 0 ||
        tw_api_usage_chunk(&out, "id", 1, "m", g->chat, 1, 2) != 0)
        abort();
    tw_str_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    for (int chat = 0; chat < 2; chat++) {
        struct tw_api_gen g;
        if (tw_api_parse_gen(body, size, chat, &g) == 0) {
            check_gen(&g);
            tw_api_gen_free(&g);
        }
    }
    struct tw_api_embed e;
    if (tw_api_parse_embed(body, size, &e) == 0) {
        if (e.n_inputs < 1 || e.n_inputs > TW_API_MAX_INPUTS)
            abort();
        float v[4] = { 1, -2, 0.5f, 0 };
        json_t *j = tw_api_embeddings("m", v, 1, 4, e.base64, (int64_t)strlen(e.inputs[0]));
        tw_str out;
        tw_str_init(&out);
        if (tw_api_dump(j, &out) != 0)
            abort();
        tw_str_free(&out);
        tw_api_embed_free(&e);
    }
    return 0;
}

// The server's wire formats: OpenAI's requests (chat and text completions, embeddings) parsed
// and validated into engine parameters, and its responses (completion objects, the chunks of
// a Server-Sent-Events stream, embedding lists, error objects) built — no I/O here, so the
// parsers can be fuzzed. References: the OpenAI API reference (platform.openai.com/docs/
// api-reference: chat/create, completions/create, embeddings/create, the error object).
#ifndef TW_SERVE_API_H
#define TW_SERVE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/str.h"
#include "model/generate.h"
#include "text/chat.h"

#define TW_API_MAX_STOPS    4 // OpenAI's limit
#define TW_API_MAX_MESSAGES 1024
#define TW_API_MAX_INPUTS   2048 // embeddings' inputs per request (OpenAI's limit)

// A parsed generation request. Its strings point into root, which it owns.
struct tw_api_gen {
    json_t *root;
    bool chat;                // /v1/chat/completions (messages); else /v1/completions (prompt)
    const char *model;        // NULL when absent
    struct tw_chat_msg *msgs; // chat: n_msgs turns
    size_t n_msgs;
    const char *prompt;       // completions
    struct tw_gen_params gen; // max_tokens 0: until the context is full
    const char *stops[TW_API_MAX_STOPS];
    bool stream, include_usage;
    double timeout_s; // the request's own time limit ("timeout", seconds; 0: the server's)
};

// Parses body as a chat (chat true) or text completion request. Sampling defaults are
// OpenAI's (temperature 1, top_p 1, no penalties); top_k, min_p, repetition_penalty,
// ignore_eos and seed are accepted as llama.cpp's server accepts them. Returns 0; TW_EFORMAT
// for malformed JSON (the message gives jansson's error, line and column); TW_EINVAL for a
// field that is missing, of the wrong type or out of range (the message names it);
// TW_EUNSUPPORTED for what twin does not do (n > 1, tools, logprobs). On failure nothing is
// left to free.
int tw_api_parse_gen(const char *body, size_t len, bool chat, struct tw_api_gen *out);
void tw_api_gen_free(struct tw_api_gen *g);

// A parsed embeddings request: "input" a string or an array of strings.
struct tw_api_embed {
    json_t *root;
    const char *model;
    const char **inputs;
    size_t n_inputs;
    bool base64; // encoding_format "base64" (the openai clients' default)
};
int tw_api_parse_embed(const char *body, size_t len, struct tw_api_embed *out);
void tw_api_embed_free(struct tw_api_embed *e);

// Parses body as a JSON object (any request's first step). Same errors as above.
int tw_api_parse_object(const char *body, size_t len, json_t **out);

// OpenAI's finish_reason: "stop" (end of generation, stop string), "length" (max_tokens, a
// full context, the time limit).
const char *tw_api_finish_reason(enum tw_finish f, bool timed_out);

// The whole response of a completion (chat.completion or text_completion).
json_t *tw_api_completion(const char *id, int64_t created, const char *model, bool chat,
                          const char *text, const char *finish, int32_t n_prompt, int32_t n_gen);
// One SSE event, "data: {chunk}\n\n", appended to out: a chat.completion.chunk (or a
// text_completion) with text (NULL: none) and finish (NULL: null). first: the chat delta
// carries the assistant role.
int tw_api_chunk(tw_str *out, const char *id, int64_t created, const char *model, bool chat,
                 bool first, const char *text, size_t len, const char *finish);
// The usage chunk of stream_options.include_usage (choices empty).
int tw_api_usage_chunk(tw_str *out, const char *id, int64_t created, const char *model, bool chat,
                       int32_t n_prompt, int32_t n_gen);
// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
json_t *tw_api_error(const char *message, const char *type, const char *code);
// The embeddings list; vecs (n, dim) floats, as numbers or base64 of little-endian float32.
json_t *tw_api_embeddings(const char *model, const float *vecs, size_t n, size_t dim, bool base64,
                          int64_t n_tokens);

// JSON text of j (compact), appended to out; j is released.
int tw_api_dump(json_t *j, tw_str *out);

#endif

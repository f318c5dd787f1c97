// OpenAI's wire formats (api.h): request validation into engine parameters, response and
// chunk construction with jansson, base64 of embeddings with OpenSSL's encoder.
#include "serve/api.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mem.h"

#define WHAT "request"

// The current error again with code TW_EINVAL (a getter's TW_EFORMAT is the client's 400 too).
static int invalid(const char *suffix)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s%s", tw_error_msg(), suffix);
    return tw_error_set(TW_EINVAL, "%s", msg);
}

int tw_api_parse_object(const char *body, size_t len, json_t **out)
{
    json_t *root = NULL;
    int rc = tw_json_parse("request body", body, len, &root);
    if (rc != 0)
        return rc;
    if (!json_is_object(root)) {
        json_decref(root);
        return tw_error_set(TW_EFORMAT, "request body: expected a JSON object");
    }
    *out = root;
    return 0;
}

// A message's content: a string, or an array of parts of which the "text" ones count (their
// texts joined are kept in the message as "_text", so that the pointer stays owned by root).
static int content_of(json_t *msg, size_t i, const char **out)
{
    json_t *c = json_object_get(msg, "content");
    if (json_is_string(c)) {
        *out = json_string_value(c);
        return 0;
    }
    if (!json_is_array(c))
        return tw_error_set(TW_EINVAL,
                            "request: messages[%zu].content: expected a string or an "
                            "array of text parts",
                            i);
    tw_str s;
    tw_str_init(&s);
    size_t k;
    json_t *part;
    int rc = 0;
    json_array_foreach(c, k, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        const char *text = json_string_value(json_object_get(part, "text"));
        if (!type || strcmp(type, "text") != 0 || !text) {
            rc = tw_error_set(TW_EUNSUPPORTED,
                              "request: messages[%zu].content[%zu]: only text parts are "
                              "supported",
                              i, k);
            break;
        }
        if ((rc = tw_str_append(&s, text, strlen(text))) != 0)
            break;
    }
    json_t *joined = rc == 0 ? json_stringn(s.v.len ? tw_str_cstr(&s) : "", s.v.len) : NULL;
    tw_str_free(&s);
    if (rc != 0)
        return rc;
    if (!joined || json_object_set_new(msg, "_text", joined) != 0)
        return tw_error_set(TW_EINVAL, "request: messages[%zu].content is not valid UTF-8", i);
    *out = json_string_value(json_object_get(msg, "_text"));
    return 0;
}

static int parse_messages(json_t *root, struct tw_api_gen *g)
{
    json_t *arr = NULL;
    int rc = tw_json_get_array(root, WHAT, "messages", &arr);
    if (rc != 0)
        return rc;
    size_t n = json_array_size(arr);
    if (n == 0 || n > TW_API_MAX_MESSAGES)
        return tw_error_set(TW_EINVAL, "request: messages: expected 1 to %d messages, got %zu",
                            TW_API_MAX_MESSAGES, n);
    g->msgs = tw_calloc(n, sizeof *g->msgs);
    if (!g->msgs)
        return tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(arr, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role)
            return tw_error_set(TW_EINVAL,
                                "request: messages[%zu]: expected an object with a "
                                "\"role\"",
                                i);
        if (strcmp(role, "developer") == 0) // OpenAI's newer name for the system role
            role = "system";
        if (strcmp(role, "system") != 0 && strcmp(role, "user") != 0 &&
            strcmp(role, "assistant") != 0)
            return tw_error_set(TW_EINVAL,
                                "request: messages[%zu].role: \"%s\" is not system, user or "
                                "assistant",
                                i, role);
        g->msgs[i].role = role;
        if ((rc = content_of(m, i, &g->msgs[i].content)) != 0)
            return rc;
    }
    g->n_msgs = n;
    return 0;
}

static int parse_stop(json_t *root, struct tw_api_gen *g)
{
    json_t *st = json_object_get(root, "stop");
    if (!st || json_is_null(st))
        return 0;
    if (json_is_string(st)) {
        g->stops[0] = json_string_value(st);
        g->gen.n_stops = 1;
    } else if (json_is_array(st) && json_array_size(st) <= TW_API_MAX_STOPS) {
        for (size_t i = 0; i < json_array_size(st); i++) {
            const char *s = json_string_value(json_array_get(st, i));
            if (!s)
                return tw_error_set(TW_EINVAL, "request: stop[%zu]: expected a string", i);
            g->stops[i] = s;
        }
        g->gen.n_stops = json_array_size(st);
    } else {
        return tw_error_set(TW_EINVAL,
                            "request: stop: expected a string or an array of at most "
                            "%d strings",
                            TW_API_MAX_STOPS);
    }
    for (size_t i = 0; i < g->gen.n_stops; i++)
        if (!*g->stops[i])
            return tw_error_set(TW_EINVAL, "request: stop[%zu] is empty", i);
    g->gen.stops = g->stops;
    return 0;
}

static int range(double v, double lo, double hi, const char *key)
{
    if (!(v >= lo && v <= hi))
        return tw_error_set(TW_EINVAL, "request: %s: %g is outside %g..%g", key, v, lo, hi);
    return 0;
}

static int parse_sampling(json_t *root, struct tw_api_gen *g)
{
    struct tw_sampler_params *sp = &g->gen.sampling;
    double temp, top_p, min_p, rep, freq, pres, timeout;
    int64_t top_k, seed, n, max_tokens, mct;
    bool ignore_eos;
    int rc;
    if ((rc = tw_json_opt_double(root, WHAT, "temperature", 1, &temp)) ||
        (rc = tw_json_opt_double(root, WHAT, "top_p", 1, &top_p)) ||
        (rc = tw_json_opt_double(root, WHAT, "min_p", 0, &min_p)) ||
        (rc = tw_json_opt_double(root, WHAT, "repetition_penalty", 1, &rep)) ||
        (rc = tw_json_opt_double(root, WHAT, "frequency_penalty", 0, &freq)) ||
        (rc = tw_json_opt_double(root, WHAT, "presence_penalty", 0, &pres)) ||
        (rc = tw_json_opt_double(root, WHAT, "timeout", 0, &timeout)) ||
        (rc = tw_json_opt_int(root, WHAT, "top_k", 0, &top_k)) ||
        (rc = tw_json_opt_int(root, WHAT, "seed", 0, &seed)) ||
        (rc = tw_json_opt_int(root, WHAT, "n", 1, &n)) ||
        (rc = tw_json_opt_int(root, WHAT, "max_tokens", 0, &max_tokens)) ||
        (rc = tw_json_opt_int(root, WHAT, "max_completion_tokens", max_tokens, &mct)) ||
        (rc = tw_json_opt_bool(root, WHAT, "ignore_eos", false, &ignore_eos)))
        return invalid("");
    if ((rc = range(temp, 0, 2, "temperature")) || (rc = range(top_p, 0, 1, "top_p")) ||
        (rc = range(min_p, 0, 1, "min_p")) || (rc = range(rep, 0.01, 10, "repetition_penalty")) ||
        (rc = range(freq, -2, 2, "frequency_penalty")) ||
        (rc = range(pres, -2, 2, "presence_penalty")) ||
        (rc = range((double)top_k, 0, 1 << 20, "top_k")) ||
        (rc = range((double)mct, 0, 1 << 24, "max_tokens")) ||
        (rc = range(timeout, 0, 86400, "timeout")))
        return rc;
    if (n != 1)
        return tw_error_set(TW_EUNSUPPORTED, "request: n: only 1 choice per request");
    tw_sampler_params_default(sp);
    sp->temperature = (float)temp;
    sp->top_p = (float)top_p;
    sp->min_p = (float)min_p;
    sp->top_k = (int32_t)top_k;
    sp->repetition_penalty = (float)rep;
    sp->frequency_penalty = (float)freq;
    sp->presence_penalty = (float)pres;
    sp->seed = (uint64_t)seed;
    sp->penalty_last_n = -1; // OpenAI's penalties count the whole text so far
    g->gen.max_tokens = (int32_t)mct;
    g->gen.ignore_eos = ignore_eos;
    g->timeout_s = timeout;
    return 0;
}

int tw_api_parse_gen(const char *body, size_t len, bool chat, struct tw_api_gen *out)
{
    memset(out, 0, sizeof *out);
    int rc = tw_api_parse_object(body, len, &out->root);
    if (rc != 0)
        return rc;
    json_t *root = out->root;
    out->chat = chat;
    static const char *const unsupported[] = { "tools", "functions", "logprobs", "suffix",
                                               "response_format" };
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        json_t *v = json_object_get(root, unsupported[i]);
        if (v && !json_is_null(v) && !json_is_false(v)) {
            rc = tw_error_set(TW_EUNSUPPORTED, "request: %s is not supported", unsupported[i]);
            goto fail;
        }
    }
    if ((rc = tw_json_opt_str(root, WHAT, "model", NULL, &out->model)) ||
        (rc = tw_json_opt_bool(root, WHAT, "stream", false, &out->stream))) {
        rc = invalid("");
        goto fail;
    }
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        bool iu = false;
        if (!json_is_object(so) ||
            tw_json_opt_bool(so, "request: stream_options", "include_usage", false, &iu)) {
            rc = tw_error_set(TW_EINVAL, "request: stream_options: expected an object with a "
                                         "boolean include_usage");
            goto fail;
        }
        out->include_usage = iu;
    }
    if (chat)
        rc = parse_messages(root, out);
    else if ((rc = tw_json_get_str(root, WHAT, "prompt", &out->prompt)) != 0)
        rc = invalid(" (a string)");
    if (rc == 0)
        rc = parse_sampling(root, out);
    if (rc == 0)
        rc = parse_stop(root, out);
    if (rc == 0)
        return 0;
fail:
    tw_api_gen_free(out);
    return rc;
}

void tw_api_gen_free(struct tw_api_gen *g)
{
    tw_free(g->msgs);
    json_decref(g->root);
    memset(g, 0, sizeof *g);
}

int tw_api_parse_embed(const char *body, size_t len, struct tw_api_embed *out)
{
    memset(out, 0, sizeof *out);
    int rc = tw_api_parse_object(body, len, &out->root);
    if (rc != 0)
        return rc;
    const char *fmt = NULL;
    if ((rc = tw_json_opt_str(out->root, WHAT, "model", NULL, &out->model)) ||
        (rc = tw_json_opt_str(out->root, WHAT, "encoding_format", "float", &fmt))) {
        rc = invalid("");
        goto fail;
    }
    if (strcmp(fmt, "float") != 0 && strcmp(fmt, "base64") != 0) {
        rc = tw_error_set(TW_EINVAL, "request: encoding_format: \"%s\" is not float or base64",
                          fmt);
        goto fail;
    }
    out->base64 = strcmp(fmt, "base64") == 0;
    json_t *in = json_object_get(out->root, "input");
    size_t n = json_is_string(in) ? 1 : json_is_array(in) ? json_array_size(in) : 0;
    if (n == 0 || n > TW_API_MAX_INPUTS) {
        rc = tw_error_set(TW_EINVAL,
                          "request: input: expected a string or an array of 1 to %d "
                          "strings",
                          TW_API_MAX_INPUTS);
        goto fail;
    }
    out->inputs = tw_calloc(n, sizeof *out->inputs);
    if (!out->inputs) {
        rc = tw_error_set(TW_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(in) ? in : json_array_get(in, i);
        if (!json_is_string(s)) {
            rc = tw_error_set(TW_EINVAL,
                              "request: input[%zu]: expected a string (token arrays "
                              "are not supported)",
                              i);
            goto fail;
        }
        out->inputs[i] = json_string_value(s);
    }
    out->n_inputs = n;
    return 0;
fail:
    tw_api_embed_free(out);
    return rc;
}

void tw_api_embed_free(struct tw_api_embed *e)
{
    tw_free(e->inputs);
    json_decref(e->root);
    memset(e, 0, sizeof *e);
}

const char *tw_api_finish_reason(enum tw_finish f, bool timed_out)
{
    if (timed_out)
        return "length";
    return f == TW_FINISH_LENGTH || f == TW_FINISH_CANCEL ? "length" : "stop";
}

json_t *tw_api_completion(const char *id, int64_t created, const char *model, bool chat,
                          const char *text, const char *finish, int32_t n_prompt, int32_t n_gen)
{
    tw_json_init();
    json_t *choice =
        chat ? json_pack("{s:i, s:{s:s, s:s}, s:n, s:s}", "index", 0, "message", "role",
                         "assistant", "content", text, "logprobs", "finish_reason", finish)
             : json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", text, "logprobs",
                         "finish_reason", finish);
    return json_pack("{s:s, s:s, s:I, s:s, s:[o], s:{s:i, s:i, s:i}}", "id", id, "object",
                     chat ? "chat.completion" : "text_completion", "created", (json_int_t)created,
                     "model", model, "choices", choice, "usage", "prompt_tokens", n_prompt,
                     "completion_tokens", n_gen, "total_tokens", n_prompt + n_gen);
}

int tw_api_dump(json_t *j, tw_str *out)
{
    if (!j)
        return tw_error_set(TW_ENOMEM, "out of memory building a response");
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return tw_error_set(TW_ENOMEM, "out of memory building a response");
    int rc = tw_str_append(out, s, strlen(s));
    tw_free(s);
    return rc;
}

static int sse(tw_str *out, json_t *j)
{
    int rc = tw_str_append(out, "data: ", 6);
    if (rc == 0)
        rc = tw_api_dump(j, out);
    else
        json_decref(j);
    if (rc == 0)
        rc = tw_str_append(out, "\n\n", 2);
    return rc;
}

int tw_api_chunk(tw_str *out, const char *id, int64_t created, const char *model, bool chat,
                 bool first, const char *text, size_t len, const char *finish)
{
    tw_json_init();
    json_t *t = text ? json_stringn_nocheck(text, len) : NULL;
    json_t *choice;
    if (chat) {
        json_t *delta = json_object();
        if (delta && first)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (delta && t)
            json_object_set(delta, "content", t);
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs",
                           "finish_reason", finish ? json_string(finish) : json_null());
    } else {
        choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "text",
                           t ? json_incref(t) : json_string(""), "logprobs", "finish_reason",
                           finish ? json_string(finish) : json_null());
    }
    json_decref(t);
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                          chat ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)created, "model", model, "choices", choice);
    return sse(out, j);
}

int tw_api_usage_chunk(tw_str *out, const char *id, int64_t created, const char *model, bool chat,
                       int32_t n_prompt, int32_t n_gen)
{
    tw_json_init();
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[], s:{s:i, s:i, s:i}}", "id", id, "object",
                          chat ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)created, "model", model, "choices", "usage", "prompt_tokens",
                          n_prompt, "completion_tokens", n_gen, "total_tokens", n_prompt + n_gen);
    return sse(out, j);
}

json_t *tw_api_error(const char *message, const char *type, const char *code)
{
    tw_json_init();
    return json_pack("{s:{s:s, s:s, s:n, s:o}}", "error", "message", message, "type", type,
                     "param", "code", code ? json_string(code) : json_null());
}

json_t *tw_api_embeddings(const char *model, const float *vecs, size_t n, size_t dim, bool base64,
                          int64_t n_tokens)
{
    tw_json_init();
    json_t *data = json_array();
    if (!data)
        return NULL;
    char *b64 = base64 ? tw_malloc(4 * ((dim * sizeof(float) + 2) / 3) + 1) : NULL;
    for (size_t i = 0; i < n; i++) {
        const float *v = vecs + i * dim;
        json_t *emb = NULL;
        if (base64 && b64) {
            // OpenAI's base64 embeddings: the float32 array's bytes, little-endian (x86 and
            // arm64 are).
            EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)v,
                            (int)(dim * sizeof(float)));
            emb = json_string(b64);
        } else if (!base64) {
            emb = json_array();
            for (size_t d = 0; emb && d < dim; d++)
                json_array_append_new(emb, json_real(v[d]));
        }
        json_t *item = json_pack("{s:s, s:I, s:o}", "object", "embedding", "index", (json_int_t)i,
                                 "embedding", emb);
        if (!item || json_array_append_new(data, item) != 0) {
            json_decref(data);
            tw_free(b64);
            return NULL;
        }
    }
    tw_free(b64);
    return json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model",
                     model, "usage", "prompt_tokens", (json_int_t)n_tokens, "total_tokens",
                     (json_int_t)n_tokens);
}

// Chat templates: recognition of a template's family by its markers, and one renderer per
// family that writes what transformers' apply_chat_template writes for that family's
// published Jinja template (conversations without tools). The templates are facts read from
// the models' tokenizer_config.json files; each renderer cites the one it follows.
#include "text/chat.h"

#include <stdint.h>
#include <string.h>

#include "base/error.h"

static const char *const family_names[TW_CHAT_FAMILY_COUNT] = {
    [TW_CHAT_LLAMA3] = "llama3",     [TW_CHAT_LLAMA3_LEGACY] = "llama3-legacy",
    [TW_CHAT_LLAMA3_1] = "llama3.1", [TW_CHAT_LLAMA2] = "llama2",
    [TW_CHAT_CHATML] = "chatml",     [TW_CHAT_QWEN3] = "qwen3",
    [TW_CHAT_MISTRAL] = "mistral",   [TW_CHAT_GEMMA] = "gemma",
    [TW_CHAT_PHI3] = "phi3",         [TW_CHAT_ALPACA] = "alpaca",
};

#define FAMILY_LIST \
    "llama3, llama3-legacy, llama3.1, llama2, chatml, qwen3, mistral, gemma, phi3, alpaca"

const char *tw_chat_family_name(enum tw_chat_family f)
{
    if ((unsigned)f >= TW_CHAT_FAMILY_COUNT)
        return "unknown";
    return family_names[f];
}

int tw_chat_family_from_name(const char *name, enum tw_chat_family *out)
{
    for (int f = 0; name && f < TW_CHAT_FAMILY_COUNT; f++) {
        if (strcmp(name, family_names[f]) == 0) {
            *out = (enum tw_chat_family)f;
            return 0;
        }
    }
    return tw_error_set(TW_EINVAL,
                        "chat template \"%.60s\": unknown name (known: " FAMILY_LIST ")",
                        name ? name : "(null)");
}

// ---- recognition ------------------------------------------------------------------------

static int has(const char *t, const char *marker)
{
    return strstr(t, marker) != NULL;
}

// A ChatML template that writes a system turn of its own text when the conversation has
// none (Qwen2's "You are a helpful assistant.", Qwen2.5's "You are Qwen, ..."): the literal
// "<|im_start|>system" followed by a newline (in the template's text or as the escape \n
// inside a Jinja string) and then by text rather than by the end of the string literal.
static int chatml_has_default_system(const char *t)
{
    static const char head[] = "<|im_start|>system";
    for (const char *p = strstr(t, head); p; p = strstr(p + 1, head)) {
        const char *q = p + sizeof head - 1;
        if (q[0] == '\n')
            q += 1;
        else if (q[0] == '\\' && q[1] == 'n')
            q += 2;
        else
            continue;
        if (*q != '\'' && *q != '"')
            return 1;
    }
    return 0;
}

static int unrecognised(const char *what)
{
    return tw_error_set(TW_EUNSUPPORTED,
                        "chat template: %s; twin renders the families " FAMILY_LIST
                        " without a Jinja interpreter: choose one with --template NAME",
                        what);
}

// The markers, and why each refusal is one: a family is claimed only where its renderer
// writes what the template writes.
int tw_chat_family_from_template(const char *t, enum tw_chat_family *out)
{
    enum tw_chat_family f;
    if (!t || !*t)
        return unrecognised("the tokenizer has no chat template");
    if (has(t, "<|start_header_id|>") && has(t, "<|eot_id|>")) {
        if (has(t, "Cutting Knowledge Date")) {
            // Llama 3.2's template dates the system header from the clock (strftime_now).
            if (has(t, "strftime_now"))
                return unrecognised("a Llama 3.x template that writes today's date into the "
                                    "system header, which cannot be reproduced (llama3.1 "
                                    "writes the template's fixed date, 26 Jul 2024)");
            f = TW_CHAT_LLAMA3_1;
        } else if (has(t, "add_generation_prompt")) {
            f = TW_CHAT_LLAMA3;
        } else {
            f = TW_CHAT_LLAMA3_LEGACY;
        }
    } else if (has(t, "<|im_start|>")) {
        if (has(t, "<think>") || has(t, "</think>")) {
            if (!has(t, "last_query_index"))
                return unrecognised("a ChatML template with <think> reasoning blocks other "
                                    "than Qwen3's");
            f = TW_CHAT_QWEN3;
        } else if (chatml_has_default_system(t)) {
            return unrecognised("a ChatML template with a built-in default system message "
                                "(as Qwen2 and Qwen2.5 have; chatml writes none)");
        } else {
            f = TW_CHAT_CHATML;
        }
    } else if (has(t, "<start_of_turn>")) {
        f = TW_CHAT_GEMMA;
    } else if (has(t, "[INST]")) {
        if (has(t, "<<SYS>>")) {
            if (has(t, "DEFAULT_SYSTEM") || has(t, "USE_DEFAULT_PROMPT"))
                return unrecognised("a Llama 2 template with a built-in default system "
                                    "message (llama2 writes none)");
            f = TW_CHAT_LLAMA2;
        } else if (has(t, "system") || has(t, "[AVAILABLE_TOOLS]")) {
            // Mistral's later templates fold a system message in or add tools, and differ
            // in spacing from the v0.1 format ("[INST]" + content + "[/INST]").
            return unrecognised("a Mistral template of a later version than v0.1 (it handles "
                                "a system message or tools)");
        } else {
            f = TW_CHAT_MISTRAL;
        }
    } else if (has(t, "<|user|>") && has(t, "<|end|>")) {
        if (!has(t, "<|system|>"))
            return unrecognised("an early Phi-3 template (no system turn; its user turn opens "
                                "the assistant's)");
        f = TW_CHAT_PHI3;
    } else if (has(t, "### Instruction:") && has(t, "### Response:") &&
               has(t, "Below is an instruction that describes a task")) {
        f = TW_CHAT_ALPACA;
    } else {
        return unrecognised("not recognised");
    }
    *out = f;
    return 0;
}

// ---- text helpers -----------------------------------------------------------------------

// Appends with a sticky error: after the first failure the rest is skipped, and the caller
// reads rc once.
struct sink {
    tw_str *s;
    int rc;
};

static void put_n(struct sink *o, const char *p, size_t n)
{
    if (o->rc == 0 && n > 0)
        o->rc = tw_str_append(o->s, p, n);
}

static void put(struct sink *o, const char *z)
{
    put_n(o, z, strlen(z));
}

// A view into a message's content.
struct span {
    const char *p;
    size_t n;
};

static void put_span(struct sink *o, struct span v)
{
    put_n(o, v.p, v.n);
}

static struct span span_of(const char *z)
{
    return (struct span){ z, strlen(z) };
}

// Decodes one UTF-8 code point at p (n bytes available): its length, or 0 when the bytes
// are not a well-formed sequence (such bytes are never white space).
static size_t utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t c = p[0], min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, c &= 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, c &= 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

// Python's str.isspace(), which str.strip() and Jinja's trim filter use: the characters of
// bidirectional class WS, B or S, or of category Zs (as Python 3 reports them).
static int py_isspace(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

// str.strip() with no argument: Unicode white space off both ends.
static struct span py_strip(struct span v)
{
    const unsigned char *p = (const unsigned char *)v.p;
    size_t start = 0, end = v.n, len;
    uint32_t c;
    while (start < end && (len = utf8_decode(p + start, end - start, &c)) && py_isspace(c))
        start += len;
    while (end > start) {
        size_t k = end - 1;
        while (k > start && end - k < 4 && (p[k] & 0xC0) == 0x80)
            k--;
        len = utf8_decode(p + k, end - k, &c);
        if (len != end - k || !py_isspace(c))
            break;
        end = k;
    }
    return (struct span){ v.p + start, end - start };
}

// str.lstrip('\n') / str.rstrip('\n').
static struct span lstrip_nl(struct span v)
{
    while (v.n > 0 && v.p[0] == '\n')
        v.p++, v.n--;
    return v;
}

static struct span rstrip_nl(struct span v)
{
    while (v.n > 0 && v.p[v.n - 1] == '\n')
        v.n--;
    return v;
}

// The offset of the first / last occurrence of needle in v, or SIZE_MAX.
static size_t find_first(struct span v, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; m <= v.n && i <= v.n - m; i++)
        if (memcmp(v.p + i, needle, m) == 0)
            return i;
    return SIZE_MAX;
}

static size_t find_last(struct span v, const char *needle)
{
    size_t m = strlen(needle);
    if (m > v.n)
        return SIZE_MAX;
    for (size_t i = v.n - m + 1; i-- > 0;)
        if (memcmp(v.p + i, needle, m) == 0)
            return i;
    return SIZE_MAX;
}

static int starts_with(const char *z, const char *prefix)
{
    return strncmp(z, prefix, strlen(prefix)) == 0;
}

static int ends_with(const char *z, const char *suffix)
{
    size_t n = strlen(z), m = strlen(suffix);
    return n >= m && memcmp(z + n - m, suffix, m) == 0;
}

// ---- roles ------------------------------------------------------------------------------

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_OTHER };

static enum role role_of(const struct tw_chat_msg *m)
{
    if (strcmp(m->role, "system") == 0)
        return ROLE_SYSTEM;
    if (strcmp(m->role, "user") == 0)
        return ROLE_USER;
    if (strcmp(m->role, "assistant") == 0)
        return ROLE_ASSISTANT;
    return ROLE_OTHER;
}

static int bad_turn(enum tw_chat_family f, size_t i, const char *why)
{
    return tw_error_set(TW_EINVAL, "chat template %s: message %zu: %s", family_names[f], i, why);
}

// Gemma's, Llama 2's and Mistral's raise_exception: after the optional leading system
// message (skip = 1 when it was taken out), user turns at even positions and others at odd.
static int check_alternation(enum tw_chat_family f, const struct tw_chat_msg *m, size_t n,
                             size_t skip)
{
    for (size_t i = skip; i < n; i++) {
        if ((role_of(&m[i]) == ROLE_USER) != ((i - skip) % 2 == 0))
            return bad_turn(f, i,
                            "conversation roles must alternate user/assistant/user/assistant/...");
    }
    return 0;
}

// ---- renderers --------------------------------------------------------------------------

// Meta-Llama-3-8B-Instruct's template: each message is "<|start_header_id|>" + role +
// "<|end_header_id|>\n\n" + content|trim + "<|eot_id|>", bos_token before the first; the
// assistant header as generation prompt (unconditional in the first published version).
static void render_llama3(struct sink *o, const struct tw_chat_msg *m, size_t n, int gen,
                          const char *bos)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 0)
            put(o, bos);
        put(o, "<|start_header_id|>");
        put(o, m[i].role);
        put(o, "<|end_header_id|>\n\n");
        put_span(o, py_strip(span_of(m[i].content)));
        put(o, "<|eot_id|>");
    }
    if (gen)
        put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Llama-3.1-8B-Instruct's template without tools: bos_token, then always a system turn of
// "Cutting Knowledge Date: December 2023\nToday Date: " + date_string ("26 Jul 2024" when
// not given) + "\n\n" + the first message's content|trim if it is a system message; then
// the other messages as Llama 3 writes them.
static void render_llama3_1(struct sink *o, const struct tw_chat_msg *m, size_t n, int gen,
                            const char *bos)
{
    size_t i = 0;
    put(o, bos);
    put(o, "<|start_header_id|>system<|end_header_id|>\n\n"
           "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (role_of(&m[0]) == ROLE_SYSTEM)
        put_span(o, py_strip(span_of(m[i++].content)));
    put(o, "<|eot_id|>");
    for (; i < n; i++) {
        put(o, "<|start_header_id|>");
        put(o, m[i].role);
        put(o, "<|end_header_id|>\n\n");
        put_span(o, py_strip(span_of(m[i].content)));
        put(o, "<|eot_id|>");
    }
    if (gen)
        put(o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Llama-2-7b-chat-hf's template: a leading system message goes into the first turn as
// "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content; a user turn is bos_token + "[INST] " +
// content.strip() + " [/INST]", an assistant turn " " + content.strip() + " " + eos_token
// ("</s>"); a later system message at an assistant position writes nothing. No generation
// prompt: the user turn ends where the answer starts.
static int render_llama2(struct sink *o, const struct tw_chat_msg *m, size_t n, const char *bos)
{
    size_t skip = role_of(&m[0]) == ROLE_SYSTEM;
    int rc = check_alternation(TW_CHAT_LLAMA2, m, n, skip);
    if (rc)
        return rc;
    for (size_t i = skip; i < n; i++) {
        enum role r = role_of(&m[i]);
        struct span content = span_of(m[i].content);
        tw_str joined;
        tw_str_init(&joined);
        if (i == skip && skip) {
            // The system block and the content are stripped as one string.
            struct sink j = { &joined, 0 };
            put(&j, "<<SYS>>\n");
            put(&j, m[0].content);
            put(&j, "\n<</SYS>>\n\n");
            put(&j, m[i].content);
            if (j.rc) {
                tw_str_free(&joined);
                return tw_error_set(j.rc, "chat template llama2: out of memory");
            }
            content = (struct span){ tw_str_cstr(&joined), tw_str_len(&joined) };
        }
        if (r == ROLE_USER) {
            put(o, bos);
            put(o, "[INST] ");
            put_span(o, py_strip(content));
            put(o, " [/INST]");
        } else if (r == ROLE_ASSISTANT) {
            put(o, " ");
            put_span(o, py_strip(content));
            put(o, " </s>");
        }
        tw_str_free(&joined);
    }
    return 0;
}

// Mixtral-8x7B-Instruct-v0.1's template (Mistral's v0.1 format): bos_token, then "[INST] " +
// content + " [/INST]" for a user turn and content + eos_token ("</s>") for an assistant
// turn; roles must alternate from a user turn, and no other role is accepted.
static int render_mistral(struct sink *o, const struct tw_chat_msg *m, size_t n, const char *bos)
{
    put(o, bos);
    for (size_t i = 0; i < n; i++) {
        enum role r = role_of(&m[i]);
        if ((r == ROLE_USER) != (i % 2 == 0))
            return bad_turn(TW_CHAT_MISTRAL, i,
                            "conversation roles must alternate user/assistant/user/assistant/...");
        if (r == ROLE_USER) {
            put(o, "[INST] ");
            put(o, m[i].content);
            put(o, " [/INST]");
        } else if (r == ROLE_ASSISTANT) {
            put(o, m[i].content);
            put(o, "</s>");
        } else {
            return bad_turn(TW_CHAT_MISTRAL, i, "only user and assistant roles are supported");
        }
    }
    return 0;
}

// gemma-3's template: bos_token; a leading system message's content + "\n\n" opens the first
// remaining turn; roles alternate from a user turn; each turn is "<start_of_turn>" + role
// ("model" for the assistant) + "\n" + content|trim + "<end_of_turn>\n"; generation prompt
// "<start_of_turn>model\n". (Gemma 1 and 2 refuse a system message instead of folding it;
// otherwise they write the same.)
static int render_gemma(struct sink *o, const struct tw_chat_msg *m, size_t n, int gen,
                        const char *bos)
{
    size_t skip = role_of(&m[0]) == ROLE_SYSTEM;
    int rc = check_alternation(TW_CHAT_GEMMA, m, n, skip);
    if (rc)
        return rc;
    put(o, bos);
    for (size_t i = skip; i < n; i++) {
        put(o, "<start_of_turn>");
        put(o, role_of(&m[i]) == ROLE_ASSISTANT ? "model" : m[i].role);
        put(o, "\n");
        if (i == skip && skip) {
            put(o, m[0].content);
            put(o, "\n\n");
        }
        put_span(o, py_strip(span_of(m[i].content)));
        put(o, "<end_of_turn>\n");
    }
    if (gen)
        put(o, "<start_of_turn>model\n");
    return 0;
}

// ChatML as Hugging Face documents it: "<|im_start|>" + role + "\n" + content +
// "<|im_end|>\n" per message; generation prompt "<|im_start|>assistant\n".
static void render_chatml(struct sink *o, const struct tw_chat_msg *m, size_t n, int gen)
{
    for (size_t i = 0; i < n; i++) {
        put(o, "<|im_start|>");
        put(o, m[i].role);
        put(o, "\n");
        put(o, m[i].content);
        put(o, "<|im_end|>\n");
    }
    if (gen)
        put(o, "<|im_start|>assistant\n");
}

// Qwen3's assistant turn: content may carry "<think>reasoning</think>answer". The reasoning
// is what precedes the first "</think>", after its last "<think>", with newlines trimmed;
// the answer is what follows the last "</think>". After the last user query the turn is
// rewritten as "<think>\n" + reasoning + "\n</think>\n\n" + answer when it is the last
// message or has reasoning; elsewhere only the answer is kept.
static void qwen3_assistant(struct sink *o, struct span content, int after_query, int last)
{
    struct span reasoning = { "", 0 };
    if (find_first(content, "</think>") != SIZE_MAX) {
        struct span all = content;
        size_t end = find_last(all, "</think>") + strlen("</think>");
        content = lstrip_nl((struct span){ all.p + end, all.n - end });
        struct span before = rstrip_nl((struct span){ all.p, find_first(all, "</think>") });
        size_t open = find_last(before, "<think>");
        if (open != SIZE_MAX) {
            open += strlen("<think>");
            before = (struct span){ before.p + open, before.n - open };
        }
        reasoning = lstrip_nl(before);
    }
    put(o, "<|im_start|>assistant\n");
    if (after_query && (last || reasoning.n > 0)) {
        put(o, "<think>\n");
        put_span(o, rstrip_nl(lstrip_nl(reasoning)));
        put(o, "\n</think>\n\n");
        put_span(o, lstrip_nl(content));
    } else {
        put_span(o, content);
    }
    put(o, "<|im_end|>\n");
}

// Qwen3's template without tools: a leading system message as a ChatML system turn; user
// turns and later system turns as ChatML; assistant turns as qwen3_assistant, where the
// last user query is the last user message not wrapped in <tool_response> tags (the last
// message when there is none); generation prompt "<|im_start|>assistant\n".
static void render_qwen3(struct sink *o, const struct tw_chat_msg *m, size_t n, int gen)
{
    size_t last_query = n - 1;
    for (size_t i = n; i-- > 0;) {
        if (role_of(&m[i]) == ROLE_USER && !(starts_with(m[i].content, "<tool_response>") &&
                                             ends_with(m[i].content, "</tool_response>"))) {
            last_query = i;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        enum role r = role_of(&m[i]);
        if (r == ROLE_USER || r == ROLE_SYSTEM) {
            put(o, "<|im_start|>");
            put(o, m[i].role);
            put(o, "\n");
            put(o, m[i].content);
            put(o, "<|im_end|>\n");
        } else {
            qwen3_assistant(o, span_of(m[i].content), i > last_query, i == n - 1);
        }
    }
    if (gen)
        put(o, "<|im_start|>assistant\n");
}

// Phi-3-mini-4k-instruct's template: "<|system|>\n", "<|user|>\n" or "<|assistant|>\n" +
// content + "<|end|>\n" per message; then "<|assistant|>\n" as generation prompt, or else
// eos_token ("<|endoftext|>"). (Phi-3.5-mini's template also leaves out an empty system
// message.)
static void render_phi3(struct sink *o, const struct tw_chat_msg *m, size_t n, int gen)
{
    for (size_t i = 0; i < n; i++) {
        put(o, "<|");
        put(o, m[i].role);
        put(o, "|>\n");
        put(o, m[i].content);
        put(o, "<|end|>\n");
    }
    put(o, gen ? "<|assistant|>\n" : "<|endoftext|>");
}

// The reference's (LLM Engineer's Handbook) SFT format, its alpaca_template: "Below is an
// instruction that describes a task. Write a response that appropriately completes the
// request.\n\n### Instruction:\n{instruction}\n\n### Response:\n{output}", the prompt for
// generation being the same with an empty output. twin maps an optional leading system
// message to the first paragraph, then exactly one user message (the instruction) and at
// most one assistant message (the response).
static int render_alpaca(struct sink *o, const struct tw_chat_msg *m, size_t n, int gen)
{
    const char *preamble = "Below is an instruction that describes a task. Write a response "
                           "that appropriately completes the request.";
    size_t i = 0;
    if (role_of(&m[0]) == ROLE_SYSTEM)
        preamble = m[i++].content;
    if (i == n)
        return bad_turn(TW_CHAT_ALPACA, i, "the instruction (a user message) is missing");
    if (role_of(&m[i]) != ROLE_USER)
        return bad_turn(TW_CHAT_ALPACA, i, "expected the instruction (a user message)");
    if (i + 1 < n && role_of(&m[i + 1]) != ROLE_ASSISTANT)
        return bad_turn(TW_CHAT_ALPACA, i + 1, "expected the response (an assistant message)");
    if (i + 2 < n)
        return bad_turn(TW_CHAT_ALPACA, i + 2,
                        "the Alpaca format holds one instruction and one response");
    put(o, preamble);
    put(o, "\n\n### Instruction:\n");
    put(o, m[i].content);
    put(o, "\n\n");
    if (i + 1 < n) {
        put(o, "### Response:\n");
        put(o, m[i + 1].content);
    } else if (gen) {
        put(o, "### Response:\n");
    }
    return 0;
}

int tw_chat_render(enum tw_chat_family f, const struct tw_chat_msg *msgs, size_t n,
                   int add_generation_prompt, const char *bos_token, tw_str *out)
{
    if ((unsigned)f >= TW_CHAT_FAMILY_COUNT)
        return tw_error_set(TW_EINVAL, "chat template: unknown family %d", (int)f);
    if (n == 0)
        return tw_error_set(TW_EINVAL, "chat template %s: the conversation is empty",
                            family_names[f]);
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role)
            return bad_turn(f, i, "no role");
        if (!msgs[i].content)
            return bad_turn(f, i, "no content");
        if (role_of(&msgs[i]) == ROLE_OTHER)
            return tw_error_set(TW_EINVAL,
                                "chat template %s: message %zu: unknown role \"%.40s\" "
                                "(expected system, user or assistant)",
                                family_names[f], i, msgs[i].role);
    }
    const char *bos = bos_token ? bos_token : "";
    int gen = add_generation_prompt != 0;
    size_t len0 = tw_str_len(out);
    struct sink o = { out, 0 };
    int rc = 0;
    switch (f) {
    case TW_CHAT_LLAMA3:
        render_llama3(&o, msgs, n, gen, bos);
        break;
    case TW_CHAT_LLAMA3_LEGACY:
        render_llama3(&o, msgs, n, 1, bos);
        break;
    case TW_CHAT_LLAMA3_1:
        render_llama3_1(&o, msgs, n, gen, bos);
        break;
    case TW_CHAT_LLAMA2:
        rc = render_llama2(&o, msgs, n, bos);
        break;
    case TW_CHAT_CHATML:
        render_chatml(&o, msgs, n, gen);
        break;
    case TW_CHAT_QWEN3:
        render_qwen3(&o, msgs, n, gen);
        break;
    case TW_CHAT_MISTRAL:
        rc = render_mistral(&o, msgs, n, bos);
        break;
    case TW_CHAT_GEMMA:
        rc = render_gemma(&o, msgs, n, gen, bos);
        break;
    case TW_CHAT_PHI3:
        render_phi3(&o, msgs, n, gen);
        break;
    case TW_CHAT_ALPACA:
        rc = render_alpaca(&o, msgs, n, gen);
        break;
    case TW_CHAT_FAMILY_COUNT:
        break;
    }
    if (rc == 0 && o.rc)
        rc = tw_error_set(o.rc, "chat template %s: out of memory", family_names[f]);
    if (rc)
        tw_str_truncate(out, len0);
    return rc;
}

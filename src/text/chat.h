// Chat templates without a Jinja interpreter: twin recognises the family of a
// tokenizer_config.json "chat_template" by its distinctive markers (or takes a family by
// name) and renders a conversation of system / user / assistant turns exactly as
// transformers' apply_chat_template(conversation, tokenize=False, add_generation_prompt=...)
// renders that family's published template, for conversations without tools.
#ifndef TW_TEXT_CHAT_H
#define TW_TEXT_CHAT_H

#include <stddef.h>

#include "base/str.h"

enum tw_chat_family {
    TW_CHAT_LLAMA3,        // "llama3": Meta-Llama-3-Instruct (generation prompt when asked)
    TW_CHAT_LLAMA3_LEGACY, // "llama3-legacy": Llama 3's first template, which ends every
                           // rendering with the assistant header, asked for or not
    TW_CHAT_LLAMA3_1,      // "llama3.1": Llama 3.1 Instruct (a system header with the
                           // knowledge and "today" dates is always emitted)
    TW_CHAT_LLAMA2,        // "llama2": Llama-2-chat ([INST] ... [/INST], <<SYS>>)
    TW_CHAT_CHATML,        // "chatml": <|im_start|>role\n...<|im_end|>\n
    TW_CHAT_QWEN3,         // "qwen3": Qwen3's ChatML with <think> reasoning blocks
    TW_CHAT_MISTRAL,       // "mistral": Mistral-7B / Mixtral-8x7B Instruct v0.1
    TW_CHAT_GEMMA,         // "gemma": Gemma 3 (<start_of_turn>, "model" for the assistant)
    TW_CHAT_PHI3,          // "phi3": Phi-3-mini Instruct (<|user|> ... <|end|>)
    TW_CHAT_ALPACA,        // "alpaca": the reference's training format (one instruction)
    TW_CHAT_FAMILY_COUNT
};

// One turn: role is "system", "user" or "assistant"; content is UTF-8 text. Both are
// borrowed for the duration of the call.
struct tw_chat_msg {
    const char *role;
    const char *content;
};

// Recognises the family of a chat template's text (tokenizer_config.json "chat_template",
// or GGUF tokenizer.chat_template) by its markers, and sets *out. Templates that look like
// a known family but render differently from it (a built-in default system prompt, a date
// taken from the clock, a later Mistral format, ...) are refused rather than guessed.
// Returns 0, or TW_EUNSUPPORTED (also for NULL or empty text) with a message that says what
// was seen, lists the families and suggests --template NAME; *out is untouched on failure.
int tw_chat_family_from_template(const char *template_text, enum tw_chat_family *out);

// The family called `name` (one of the names in the enum's comments, as tw_chat_family_name
// gives them). Returns 0, or TW_EINVAL with a message that lists the names.
int tw_chat_family_from_name(const char *name, enum tw_chat_family *out);

// The family's name ("llama3", "llama3.1", "qwen3", ...); "unknown" for a value out of range.
const char *tw_chat_family_name(enum tw_chat_family f);

// Renders msgs[0..n) as family f's template does and appends the text to *out.
// add_generation_prompt: nonzero appends the opening of an assistant turn where the template
// has one (llama2 and mistral have none: their user turn ends in [/INST]; llama3-legacy
// always appends it; for alpaca it is "### Response:\n" after a conversation that ends with
// the instruction, and has no effect after the response). bos_token: the tokenizer's BOS
// text, emitted where the template emits bos_token (llama3*, llama2, mistral, gemma); NULL
// when the tokenizer has none (emits nothing). The families' EOS texts are fixed by their
// models and written by the renderer: "</s>" (llama2, mistral), "<|endoftext|>" (phi3).
// Alpaca writes no BOS or EOS: the reference appends the tokenizer's EOS after the response
// when it trains, which is the data loader's job (as token id).
// Whitespace is the template's: llama3*, gemma and llama2 strip message content as Python's
// str.strip() does (Unicode white space); chatml, qwen3, mistral and phi3 keep it as is.
// Returns 0; TW_EINVAL for an empty conversation, a NULL or unknown role, NULL content, or
// a conversation the template itself rejects (Gemma's and Llama 2's alternation of user and
// assistant, Mistral's roles, Alpaca's single instruction), the message naming the family
// and the message index; TW_ENOMEM. On failure *out is as it was.
int tw_chat_render(enum tw_chat_family f, const struct tw_chat_msg *msgs, size_t n,
                   int add_generation_prompt, const char *bos_token, tw_str *out);

#endif

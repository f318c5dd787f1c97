// Tests of src/text/chat.c: exact renderings for every family (written by hand from the
// published templates), recognition of the npm tokenizers' templates and of published ones,
// errors for bad roles and the templates' own refusals, failed allocations, and parity with
// transformers' renderings in tests/golden/chat/<name>.json where those files exist.
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "check.h"
#include "text/chat.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

// Prints s with C escapes, for failure messages.
static void print_escaped(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            fputs("\\n", stderr);
        else if (*s == '"' || *s == '\\')
            fprintf(stderr, "\\%c", *s);
        else
            fputc(*s, stderr);
    }
}

static void check_render(int line, enum tw_chat_family f, const struct tw_chat_msg *m, size_t n,
                         int gen, const char *bos, const char *want)
{
    tw_str s;
    tw_str_init(&s);
    int rc = tw_chat_render(f, m, n, gen, bos, &s);
    check_count++;
    if (rc != 0 || strcmp(tw_str_cstr(&s), want) != 0) {
        fprintf(stderr, "%s:%d: render %s gen=%d: rc %d (%s)\n  got  \"", __FILE__, line,
                tw_chat_family_name(f), gen, rc, rc ? tw_error_msg() : "");
        print_escaped(tw_str_cstr(&s));
        fputs("\"\n  want \"", stderr);
        print_escaped(want);
        fputs("\"\n", stderr);
        check_failed_count++;
    }
    tw_str_free(&s);
}

#define EXPECT(f, conv, gen, bos, want) check_render(__LINE__, f, conv, N(conv), gen, bos, want)

// Rendering must fail with TW_EINVAL, leave the output as it was, and say `needle`.
static void check_refused(int line, enum tw_chat_family f, const struct tw_chat_msg *m, size_t n,
                          const char *needle)
{
    tw_str s;
    tw_str_init(&s);
    REQUIRE(tw_str_puts(&s, "kept") == 0);
    int rc = tw_chat_render(f, m, n, 1, "<s>", &s);
    check_count++;
    if (rc != TW_EINVAL || strcmp(tw_str_cstr(&s), "kept") != 0 ||
        !strstr(tw_error_msg(), needle)) {
        fprintf(stderr, "%s:%d: %s: expected TW_EINVAL naming \"%s\"; got %d \"%s\", out \"",
                __FILE__, line, tw_chat_family_name(f), needle, rc, tw_error_msg());
        print_escaped(tw_str_cstr(&s));
        fputs("\"\n", stderr);
        check_failed_count++;
    }
    tw_str_free(&s);
}

#define REFUSED(f, conv, needle) check_refused(__LINE__, f, conv, N(conv), needle)

// ---- conversations ----------------------------------------------------------------------

static const struct tw_chat_msg conv_sys[] = {
    { "system", " Be brief. " },
    { "user", "Hi\n" },
    { "assistant", "Hello." },
    { "user", "Bye" },
};

static const struct tw_chat_msg conv_one[] = {
    { "user", "What is 2+2?" },
};

static const struct tw_chat_msg conv_pair[] = {
    { "user", "Hi\n" },
    { "assistant", "Hello." },
    { "user", "Bye" },
};

#define L3_BOS    "<|begin_of_text|>"
#define L3_SYS    "<|start_header_id|>system<|end_header_id|>\n\n"
#define L3_USER   "<|start_header_id|>user<|end_header_id|>\n\n"
#define L3_ASST   "<|start_header_id|>assistant<|end_header_id|>\n\n"
#define L31_DATES "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"

static void test_llama3(void)
{
    const char *body = L3_BOS L3_SYS "Be brief.<|eot_id|>" L3_USER "Hi<|eot_id|>" L3_ASST
                                     "Hello.<|eot_id|>" L3_USER "Bye<|eot_id|>";
    char with_gen[512];
    snprintf(with_gen, sizeof with_gen, "%s%s", body, L3_ASST);
    EXPECT(TW_CHAT_LLAMA3, conv_sys, 0, L3_BOS, body);
    EXPECT(TW_CHAT_LLAMA3, conv_sys, 1, L3_BOS, with_gen);
    // The first published template writes the assistant header whatever is asked.
    EXPECT(TW_CHAT_LLAMA3_LEGACY, conv_sys, 0, L3_BOS, with_gen);
    EXPECT(TW_CHAT_LLAMA3_LEGACY, conv_sys, 1, L3_BOS, with_gen);
    EXPECT(TW_CHAT_LLAMA3, conv_one, 1, L3_BOS, L3_BOS L3_USER "What is 2+2?<|eot_id|>" L3_ASST);
    // No BOS text when the tokenizer has none.
    EXPECT(TW_CHAT_LLAMA3, conv_one, 0, NULL, L3_USER "What is 2+2?<|eot_id|>");

    // trim is Python's str.strip(): Unicode white space (U+3000, U+00A0, U+2028, U+0085)
    // goes, U+200B (a format character) stays; bytes that are not UTF-8 are not space.
    static const struct tw_chat_msg ws[] = {
        { "user", "\xe3\x80\x80\xc2\xa0 hi \xe2\x80\xa8\xc2\x85" },
        { "assistant", "\xe2\x80\x8bok\xe2\x80\x8b " },
        { "user", " \xe3\x80 \t" },
    };
    EXPECT(TW_CHAT_LLAMA3, ws, 0, "",
           L3_USER "hi<|eot_id|>" L3_ASST "\xe2\x80\x8bok\xe2\x80\x8b<|eot_id|>" L3_USER
                   "\xe3\x80<|eot_id|>");
}

static void test_llama3_1(void)
{
    EXPECT(TW_CHAT_LLAMA3_1, conv_sys, 0, L3_BOS,
           L3_BOS L3_SYS L31_DATES "Be brief.<|eot_id|>" L3_USER "Hi<|eot_id|>" L3_ASST
                                   "Hello.<|eot_id|>" L3_USER "Bye<|eot_id|>");
    // Without a system message the system header is still written, with the dates only.
    EXPECT(TW_CHAT_LLAMA3_1, conv_one, 1, L3_BOS,
           L3_BOS L3_SYS L31_DATES "<|eot_id|>" L3_USER "What is 2+2?<|eot_id|>" L3_ASST);
    // Only a leading system message moves into that header.
    static const struct tw_chat_msg late[] = {
        { "user", "a" },
        { "system", " b " },
    };
    EXPECT(TW_CHAT_LLAMA3_1, late, 0, L3_BOS,
           L3_BOS L3_SYS L31_DATES "<|eot_id|>" L3_USER "a<|eot_id|>" L3_SYS "b<|eot_id|>");
}

static void test_llama2(void)
{
    // The system block joins the first user message and the two are stripped as one.
    EXPECT(TW_CHAT_LLAMA2, conv_sys, 0, "<s>",
           "<s>[INST] <<SYS>>\n Be brief. \n<</SYS>>\n\nHi [/INST] Hello. </s>"
           "<s>[INST] Bye [/INST]");
    // No generation prompt of its own: the same text either way.
    EXPECT(TW_CHAT_LLAMA2, conv_sys, 1, "<s>",
           "<s>[INST] <<SYS>>\n Be brief. \n<</SYS>>\n\nHi [/INST] Hello. </s>"
           "<s>[INST] Bye [/INST]");
    EXPECT(TW_CHAT_LLAMA2, conv_pair, 1, "<s>",
           "<s>[INST] Hi [/INST] Hello. </s><s>[INST] Bye [/INST]");
    // A system message in an assistant's place writes nothing (the template's behaviour).
    static const struct tw_chat_msg late[] = {
        { "user", "a" },
        { "system", "b" },
        { "user", "c" },
    };
    EXPECT(TW_CHAT_LLAMA2, late, 0, "<s>", "<s>[INST] a [/INST]<s>[INST] c [/INST]");
    static const struct tw_chat_msg two_users[] = {
        { "system", "s" },
        { "user", "a" },
        { "user", "b" },
    };
    REFUSED(TW_CHAT_LLAMA2, two_users, "message 2: conversation roles must alternate");
    static const struct tw_chat_msg starts_assistant[] = {
        { "assistant", "a" },
    };
    REFUSED(TW_CHAT_LLAMA2, starts_assistant, "llama2: message 0");
}

static void test_mistral(void)
{
    EXPECT(TW_CHAT_MISTRAL, conv_pair, 0, "<s>",
           "<s>[INST] Hi\n [/INST]Hello.</s>[INST] Bye [/INST]");
    EXPECT(TW_CHAT_MISTRAL, conv_pair, 1, "<s>",
           "<s>[INST] Hi\n [/INST]Hello.</s>[INST] Bye [/INST]");
    EXPECT(TW_CHAT_MISTRAL, conv_one, 1, NULL, "[INST] What is 2+2? [/INST]");
    // The template checks alternation first, then the role.
    REFUSED(TW_CHAT_MISTRAL, conv_sys, "mistral: message 0: conversation roles must alternate");
    static const struct tw_chat_msg sys_late[] = {
        { "user", "a" },
        { "system", "b" },
    };
    REFUSED(TW_CHAT_MISTRAL, sys_late, "message 1: only user and assistant roles");
}

static void test_chatml(void)
{
    const char *body = "<|im_start|>system\n Be brief. <|im_end|>\n"
                       "<|im_start|>user\nHi\n<|im_end|>\n"
                       "<|im_start|>assistant\nHello.<|im_end|>\n"
                       "<|im_start|>user\nBye<|im_end|>\n";
    char with_gen[512];
    snprintf(with_gen, sizeof with_gen, "%s<|im_start|>assistant\n", body);
    EXPECT(TW_CHAT_CHATML, conv_sys, 0, NULL, body);
    EXPECT(TW_CHAT_CHATML, conv_sys, 1, NULL, with_gen);
    // Qwen3 writes the same for a conversation without reasoning after the last query.
    EXPECT(TW_CHAT_QWEN3, conv_sys, 0, NULL, body);
    EXPECT(TW_CHAT_QWEN3, conv_sys, 1, "ignored", with_gen);
}

static void test_qwen3(void)
{
    // Reasoning before the last user query is dropped; after it, it is kept and reshaped.
    static const struct tw_chat_msg think[] = {
        { "user", "Q1" },
        { "assistant", "<think>\nr1\n</think>\n\nA1" },
        { "user", "Q2" },
        { "assistant", "<think>\n\nr2\n\n</think>\n\n\nA2\n" },
    };
    EXPECT(TW_CHAT_QWEN3, think, 0, NULL,
           "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
           "<|im_start|>user\nQ2<|im_end|>\n"
           "<|im_start|>assistant\n<think>\nr2\n</think>\n\nA2\n<|im_end|>\n");
    // After the query: the last message always gets a think block (empty when it has no
    // reasoning); an earlier one only when it has reasoning.
    static const struct tw_chat_msg multi[] = {
        { "user", "Q" },
        { "assistant", "A1" },
        { "assistant", "pre<think>r</think>A2" },
        { "assistant", "\nA3" },
    };
    EXPECT(TW_CHAT_QWEN3, multi, 1, NULL,
           "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
           "<|im_start|>assistant\n<think>\nr\n</think>\n\nA2<|im_end|>\n"
           "<|im_start|>assistant\n<think>\n\n</think>\n\nA3<|im_end|>\n"
           "<|im_start|>assistant\n");
    // A user message wrapped in <tool_response> is not a query; "</think>" without "<think>"
    // takes all before it as reasoning; several "</think>" split at the first and the last.
    static const struct tw_chat_msg tool[] = {
        { "system", "S" },
        { "user", "Q" },
        { "assistant", "r0</think>mid</think>\nA" },
        { "user", "<tool_response>x</tool_response>" },
        { "system", "late" },
        { "assistant", "B" },
    };
    EXPECT(TW_CHAT_QWEN3, tool, 0, NULL,
           "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
           "<|im_start|>assistant\n<think>\nr0\n</think>\n\nA<|im_end|>\n"
           "<|im_start|>user\n<tool_response>x</tool_response><|im_end|>\n"
           "<|im_start|>system\nlate<|im_end|>\n"
           "<|im_start|>assistant\n<think>\n\n</think>\n\nB<|im_end|>\n");
    // With no user message at all, nothing comes after the (absent) query.
    static const struct tw_chat_msg no_user[] = {
        { "assistant", "<think>r</think>A" },
    };
    EXPECT(TW_CHAT_QWEN3, no_user, 0, NULL, "<|im_start|>assistant\nA<|im_end|>\n");
}

static void test_gemma(void)
{
    // The system text, untrimmed, opens the first user turn; turns are trimmed.
    EXPECT(TW_CHAT_GEMMA, conv_sys, 1, "<bos>",
           "<bos><start_of_turn>user\n Be brief. \n\nHi<end_of_turn>\n"
           "<start_of_turn>model\nHello.<end_of_turn>\n"
           "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n");
    EXPECT(TW_CHAT_GEMMA, conv_one, 0, "<bos>",
           "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n");
    // A lone system message leaves no turn at all.
    static const struct tw_chat_msg only_sys[] = {
        { "system", "s" },
    };
    EXPECT(TW_CHAT_GEMMA, only_sys, 0, "<bos>", "<bos>");
    // A later system message in an assistant's place passes the template's check and is
    // written with its own role.
    static const struct tw_chat_msg late[] = {
        { "user", "a" },
        { "system", "b" },
    };
    EXPECT(TW_CHAT_GEMMA, late, 0, "",
           "<start_of_turn>user\na<end_of_turn>\n<start_of_turn>system\nb<end_of_turn>\n");
    static const struct tw_chat_msg two_users[] = {
        { "user", "a" },
        { "user", "b" },
    };
    REFUSED(TW_CHAT_GEMMA, two_users, "gemma: message 1: conversation roles must alternate");
    static const struct tw_chat_msg sys_asst[] = {
        { "system", "s" },
        { "assistant", "a" },
    };
    REFUSED(TW_CHAT_GEMMA, sys_asst, "message 1: conversation roles must alternate");
}

static void test_phi3(void)
{
    EXPECT(TW_CHAT_PHI3, conv_sys, 0, "<s>",
           "<|system|>\n Be brief. <|end|>\n<|user|>\nHi\n<|end|>\n"
           "<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|endoftext|>");
    EXPECT(TW_CHAT_PHI3, conv_sys, 1, "<s>",
           "<|system|>\n Be brief. <|end|>\n<|user|>\nHi\n<|end|>\n"
           "<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n");
}

#define ALPACA_HEAD                                                                       \
    "Below is an instruction that describes a task. Write a response that appropriately " \
    "completes the request.\n\n"

static void test_alpaca(void)
{
    static const struct tw_chat_msg full[] = {
        { "user", "Summarise the speech." },
        { "assistant", "It was short." },
    };
    const char *whole =
        ALPACA_HEAD "### Instruction:\nSummarise the speech.\n\n### Response:\nIt was short.";
    EXPECT(TW_CHAT_ALPACA, full, 0, "<s>", whole);
    EXPECT(TW_CHAT_ALPACA, full, 1, "<s>", whole);
    static const struct tw_chat_msg prompt[] = {
        { "user", "Summarise the speech." },
    };
    EXPECT(TW_CHAT_ALPACA, prompt, 1, NULL,
           ALPACA_HEAD "### Instruction:\nSummarise the speech.\n\n### Response:\n");
    EXPECT(TW_CHAT_ALPACA, prompt, 0, NULL,
           ALPACA_HEAD "### Instruction:\nSummarise the speech.\n\n");
    static const struct tw_chat_msg sys[] = {
        { "system", "Answer as the author." },
        { "user", "Why?" },
    };
    EXPECT(TW_CHAT_ALPACA, sys, 1, NULL,
           "Answer as the author.\n\n### Instruction:\nWhy?\n\n### Response:\n");
    REFUSED(TW_CHAT_ALPACA, conv_pair, "alpaca: message 2: the Alpaca format holds one");
    static const struct tw_chat_msg two_users[] = {
        { "user", "a" },
        { "user", "b" },
    };
    REFUSED(TW_CHAT_ALPACA, two_users, "message 1: expected the response");
    static const struct tw_chat_msg only_sys[] = {
        { "system", "s" },
    };
    REFUSED(TW_CHAT_ALPACA, only_sys, "message 1: the instruction (a user message) is missing");
    static const struct tw_chat_msg asst[] = {
        { "assistant", "a" },
    };
    REFUSED(TW_CHAT_ALPACA, asst, "message 0: expected the instruction");
}

// ---- errors common to all families ------------------------------------------------------

static void test_bad_input(void)
{
    static const struct tw_chat_msg tool[] = {
        { "user", "a" },
        { "assistant", "b" },
        { "tool", "c" },
    };
    static const struct tw_chat_msg upper[] = {
        { "User", "a" },
    };
    static const struct tw_chat_msg no_role[] = {
        { "user", "a" },
        { NULL, "b" },
    };
    static const struct tw_chat_msg no_content[] = {
        { "user", NULL },
    };
    for (int f = 0; f < TW_CHAT_FAMILY_COUNT; f++) {
        enum tw_chat_family fam = (enum tw_chat_family)f;
        REFUSED(fam, tool, "message 2: unknown role \"tool\"");
        REFUSED(fam, upper, "message 0: unknown role \"User\" (expected system, user or");
        REFUSED(fam, no_role, "message 1: no role");
        REFUSED(fam, no_content, "message 0: no content");
        check_refused(__LINE__, fam, conv_one, 0, "the conversation is empty");
    }
    tw_str s;
    tw_str_init(&s);
    CHECK_EQ_INT(tw_chat_render((enum tw_chat_family)99, conv_one, 1, 1, NULL, &s), TW_EINVAL);
    CHECK_EQ_INT(tw_str_len(&s), 0);

    // Rendering appends to what the string holds.
    REQUIRE(tw_str_puts(&s, "head|") == 0);
    CHECK_OK(tw_chat_render(TW_CHAT_CHATML, conv_one, 1, 0, NULL, &s));
    CHECK_EQ_STR(tw_str_cstr(&s), "head|<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    tw_str_free(&s);
}

// Every allocation of a rendering fails once in turn: each failure is TW_ENOMEM, leaves the
// output as it was and leaks nothing; then the rendering succeeds.
static void test_alloc_failures(void)
{
    for (int f = 0; f < TW_CHAT_FAMILY_COUNT; f++) {
        const struct tw_chat_msg *m =
            f == TW_CHAT_MISTRAL || f == TW_CHAT_ALPACA ? conv_one : conv_sys;
        size_t n = m == conv_one ? N(conv_one) : N(conv_sys);
        long live = tw_mem_live();
        int done = 0;
        for (long k = 1; k < 100 && !done; k++) {
            tw_str s;
            tw_str_init(&s);
            REQUIRE(tw_str_puts(&s, "x") == 0);
            tw_mem_fail_after(k);
            int rc = tw_chat_render((enum tw_chat_family)f, m, n, 1, "<s>", &s);
            tw_mem_fail_after(0);
            if (rc == 0) {
                done = 1;
                CHECK(tw_str_len(&s) > 1);
            } else {
                CHECK_EQ_INT(rc, TW_ENOMEM);
                CHECK_EQ_STR(tw_str_cstr(&s), "x");
            }
            tw_str_free(&s);
            CHECK_EQ_INT(tw_mem_live(), live);
        }
        CHECK(done);
    }
}

// ---- names and recognition --------------------------------------------------------------

static void test_names(void)
{
    static const char *names[] = { "llama3", "llama3-legacy", "llama3.1", "llama2", "chatml",
                                   "qwen3",  "mistral",       "gemma",    "phi3",   "alpaca" };
    CHECK_EQ_INT(N(names), TW_CHAT_FAMILY_COUNT);
    for (size_t i = 0; i < N(names); i++) {
        enum tw_chat_family f = TW_CHAT_FAMILY_COUNT;
        CHECK_OK(tw_chat_family_from_name(names[i], &f));
        CHECK_EQ_INT(f, i);
        CHECK_EQ_STR(tw_chat_family_name(f), names[i]);
    }
    enum tw_chat_family f = TW_CHAT_GEMMA;
    CHECK_EQ_INT(tw_chat_family_from_name("llama4", &f), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "\"llama4\""));
    CHECK(strstr(tw_error_msg(), "llama3.1"));
    CHECK(strstr(tw_error_msg(), "alpaca"));
    CHECK_EQ_INT(tw_chat_family_from_name(NULL, &f), TW_EINVAL);
    CHECK_EQ_INT(f, TW_CHAT_GEMMA);
    CHECK_EQ_STR(tw_chat_family_name(TW_CHAT_FAMILY_COUNT), "unknown");
}

// The published templates (tokenizer_config.json "chat_template" of the named models).
static const char tpl_llama2[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% "
    "set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
    "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
    "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 "
    "== 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
    "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
    "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
    "content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
static const char tpl_mixtral[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
    "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' "
    "%}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and "
    "assistant roles are supported!') }}{% endif %}{% endfor %}";
static const char tpl_phi3[] =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' "
    "%}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";
static const char tpl_chatml[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";
// Excerpts: the parts that carry the markers.
static const char tpl_llama3_1[] =
    "{{- bos_token }}\n{%- if not date_string is defined %}\n    {%- set date_string = \"26 "
    "Jul 2024\" %}\n{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" "
    "}}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n{{- \"Today Date: \" + "
    "date_string + \"\\n\\n\" }}\n{{- system_message }}\n{{- \"<|eot_id|>\" }}\n";
static const char tpl_llama3_2[] =
    "{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        "
    "{%- set date_string = strftime_now(\"%d %b %Y\") %}\n{{- "
    "\"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n{{- \"Cutting Knowledge Date: "
    "December 2023\\n\" }}{{- \"<|eot_id|>\" }}";
static const char tpl_qwen25[] =
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- "
    "'<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else "
    "%}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
    "helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}";
static const char tpl_qwen2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif "
    "%}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char tpl_mistral_v3[] =
    "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = "
    "messages[0][\"content\"] %}{{- \"[AVAILABLE_TOOLS] [\" }}{{- \"[INST] \" + "
    "message[\"content\"] + \"[/INST]\" }}";
static const char tpl_phi3_early[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') "
    "%}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + "
    "'\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + "
    "'\n'}}{% endif %}{% endfor %}";
static const char tpl_alpaca[] =
    "{{ 'Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n' + messages[0]['content'] + '\n\n### "
    "Response:\n' }}";

static void check_recognised(int line, const char *tpl, enum tw_chat_family want)
{
    enum tw_chat_family f = TW_CHAT_FAMILY_COUNT;
    int rc = tw_chat_family_from_template(tpl, &f);
    check_count++;
    if (rc != 0 || f != want) {
        fprintf(stderr, "%s:%d: recognised %s (rc %d: %s), want %s\n", __FILE__, line,
                tw_chat_family_name(f), rc, tw_error_msg(), tw_chat_family_name(want));
        check_failed_count++;
    }
}

static void check_unrecognised(int line, const char *tpl, const char *needle)
{
    enum tw_chat_family f = TW_CHAT_FAMILY_COUNT;
    int rc = tw_chat_family_from_template(tpl, &f);
    check_count++;
    if (rc != TW_EUNSUPPORTED || f != TW_CHAT_FAMILY_COUNT ||
        !strstr(tw_error_msg(), "--template NAME") || !strstr(tw_error_msg(), needle) ||
        !strstr(tw_error_msg(), "llama3.1, llama2, chatml, qwen3")) {
        fprintf(stderr, "%s:%d: expected TW_EUNSUPPORTED naming \"%s\"; got %d \"%s\"\n", __FILE__,
                line, needle, rc, tw_error_msg());
        check_failed_count++;
    }
}

static void test_recognition_published(void)
{
    check_recognised(__LINE__, tpl_llama2, TW_CHAT_LLAMA2);
    check_recognised(__LINE__, tpl_mixtral, TW_CHAT_MISTRAL);
    check_recognised(__LINE__, tpl_phi3, TW_CHAT_PHI3);
    check_recognised(__LINE__, tpl_chatml, TW_CHAT_CHATML);
    check_recognised(__LINE__, tpl_llama3_1, TW_CHAT_LLAMA3_1);
    check_recognised(__LINE__, tpl_alpaca, TW_CHAT_ALPACA);
    check_unrecognised(__LINE__, tpl_llama3_2, "today's date");
    check_unrecognised(__LINE__, tpl_qwen25, "default system message");
    check_unrecognised(__LINE__, tpl_qwen2, "default system message");
    check_unrecognised(__LINE__, tpl_mistral_v3, "Mistral template of a later version");
    check_unrecognised(__LINE__, tpl_phi3_early, "early Phi-3");
    check_unrecognised(__LINE__, "{% for m in messages %}{{ m.content }}{% endfor %}",
                       "not recognised");
    check_unrecognised(__LINE__, "", "no chat template");
    check_unrecognised(__LINE__, NULL, "no chat template");
}

// Reads the "chat_template" of .cache/data/tokenizers/<name>/tokenizer_config.json: 1 and
// *tpl (NULL when the file has none) and *bos (NULL unless a string); 0 when the file is
// absent; -1 when it cannot be read or parsed (a failed check). *root keeps the strings alive.
// Integers are read as reals: Llama's files hold model_max_length 1000000000000000019884624838656,
// which does not fit jansson's json_int_t.
static int load_npm_config(const char *name, json_t **root, const char **tpl, const char **bos)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/.cache/data/tokenizers/%s/tokenizer_config.json",
             test_source_dir(), name);
    *root = NULL;
    int rc = tw_json_load_file_flags(path, (size_t)64 << 20, JSON_DECODE_INT_AS_REAL, root);
    if (rc == TW_ENOENT)
        return 0;
    CHECK_OK(rc);
    if (rc)
        return -1;
    json_t *t = json_object_get(*root, "chat_template");
    json_t *b = json_object_get(*root, "bos_token");
    *tpl = json_is_string(t) ? json_string_value(t) : NULL;
    *bos = json_is_string(b) ? json_string_value(b) : NULL;
    return 1;
}

// The four npm tokenizers with a template, the family each is recognised as, and the BOS
// text transformers hands the template.
static const struct {
    const char *name;
    enum tw_chat_family family;
    const char *bos;
} npm[] = {
    // The llama3 package carries Llama 3's first template (the generation prompt is always
    // written); the llama3_1 package carries the later, short Llama 3 template.
    { "llama3", TW_CHAT_LLAMA3_LEGACY, "<|begin_of_text|>" },
    { "llama3_1", TW_CHAT_LLAMA3, "<|begin_of_text|>" },
    { "qwen3", TW_CHAT_QWEN3, NULL },
    { "gemma3", TW_CHAT_GEMMA, "<bos>" },
};

static void test_recognition_npm(void)
{
    for (size_t i = 0; i < N(npm); i++) {
        json_t *root;
        const char *tpl, *bos;
        int got = load_npm_config(npm[i].name, &root, &tpl, &bos);
        if (got < 0)
            continue;
        if (got == 0) {
            printf("test_chat: skipped recognition of %s: its tokenizer_config.json is not "
                   "in %s/.cache/data/tokenizers\n",
                   npm[i].name, test_source_dir());
            continue;
        }
        CHECK(tpl != NULL);
        if (tpl)
            check_recognised(__LINE__, tpl, npm[i].family);
        if (npm[i].bos)
            CHECK(bos && strcmp(bos, npm[i].bos) == 0);
        else
            CHECK(bos == NULL);
        json_decref(root);
    }
    // llama2 and gpt4o ship no template: the error suggests --template.
    static const char *none[] = { "llama2", "gpt4o" };
    for (size_t i = 0; i < N(none); i++) {
        json_t *root;
        const char *tpl, *bos;
        if (load_npm_config(none[i], &root, &tpl, &bos) != 1)
            continue;
        CHECK(tpl == NULL);
        check_unrecognised(__LINE__, tpl, "no chat template");
        json_decref(root);
    }
}

// ---- golden parity with transformers ----------------------------------------------------

// Messages of chat_conversations.json's conversation c (borrowed from root).
static int conversation(json_t *convs, size_t c, struct tw_chat_msg *m, size_t cap, size_t *n)
{
    json_t *conv = json_array_get(convs, c);
    if (!json_is_array(conv) || json_array_size(conv) > cap)
        return -1;
    for (size_t i = 0; i < json_array_size(conv); i++) {
        json_t *msg = json_array_get(conv, i);
        m[i].role = json_string_value(json_object_get(msg, "role"));
        m[i].content = json_string_value(json_object_get(msg, "content"));
        if (!m[i].role || !m[i].content)
            return -1;
    }
    *n = json_array_size(conv);
    return 0;
}

// tests/golden/chat/<name>.json: the rows (an array, or the "rows" of an object) of
// {"conversation", "add_generation_prompt", "text"} -- or "error" where transformers
// raised, which must be a refusal here too.
static void check_golden_file(const char *name, enum tw_chat_family f, const char *bos,
                              json_t *convs, const char *path, json_t *doc)
{
    json_t *rows = json_is_array(doc) ? doc : json_object_get(doc, "rows");
    CHECK(json_is_array(rows) && json_array_size(rows) > 0);
    for (size_t r = 0; json_is_array(rows) && r < json_array_size(rows); r++) {
        json_t *row = json_array_get(rows, r);
        json_t *ci = json_object_get(row, "conversation");
        json_t *gen = json_object_get(row, "add_generation_prompt");
        const char *text = json_string_value(json_object_get(row, "text"));
        int is_error = json_object_get(row, "error") != NULL;
        struct tw_chat_msg m[64];
        size_t n = 0;
        if (!json_is_integer(ci) || !json_is_boolean(gen) || (!text && !is_error) ||
            conversation(convs, (size_t)json_integer_value(ci), m, N(m), &n) != 0) {
            fprintf(stderr, "%s: rows[%zu]: malformed\n", path, r);
            check_count++, check_failed_count++;
            continue;
        }
        tw_str s;
        tw_str_init(&s);
        int rc = tw_chat_render(f, m, n, json_is_true(gen), bos, &s);
        check_count++;
        if (is_error ? rc == 0 : (rc != 0 || strcmp(tw_str_cstr(&s), text) != 0)) {
            fprintf(stderr,
                    "%s: rows[%zu] (conversation %lld, generation prompt %d): "
                    "rc %d (%s)\n  got  \"",
                    path, r, (long long)json_integer_value(ci), json_is_true(gen), rc,
                    rc ? tw_error_msg() : "");
            print_escaped(tw_str_cstr(&s));
            fputs("\"\n  want \"", stderr);
            print_escaped(is_error ? "(an error)" : text);
            fputs("\"\n", stderr);
            check_failed_count++;
        }
        tw_str_free(&s);
    }
    (void)name;
}

static void test_golden(void)
{
    char path[4096];
    json_t *convs = NULL;
    snprintf(path, sizeof path, "%s/tests/golden/chat_conversations.json", test_source_dir());
    CHECK_OK(tw_json_load_file(path, 0, &convs));
    if (!convs)
        return;
    CHECK(json_is_array(convs) && json_array_size(convs) == 4);
    int missing = 0;
    for (size_t i = 0; i < N(npm); i++) {
        // The family is the one recognised from the package's template where it is here.
        enum tw_chat_family f = npm[i].family;
        json_t *cfg;
        const char *tpl, *bos;
        if (load_npm_config(npm[i].name, &cfg, &tpl, &bos) == 1) {
            if (tpl)
                CHECK_OK(tw_chat_family_from_template(tpl, &f));
            CHECK_EQ_INT(f, npm[i].family);
            json_decref(cfg);
        }
        json_t *doc = NULL;
        snprintf(path, sizeof path, "%s/tests/golden/chat/%s.json", test_source_dir(),
                 npm[i].name);
        int rc = tw_json_load_file(path, 0, &doc);
        CHECK_OK(rc); // the golden files are committed: each one is required
        if (rc == TW_ENOENT)
            missing++;
        if (rc == 0)
            check_golden_file(npm[i].name, f, npm[i].bos, convs, path, doc);
        json_decref(doc);
    }
    CHECK_EQ_INT(missing, 0);
    json_decref(convs);
}

int main(void)
{
    test_llama3();
    test_llama3_1();
    test_llama2();
    test_mistral();
    test_chatml();
    test_qwen3();
    test_gemma();
    test_phi3();
    test_alpaca();
    test_bad_input();
    test_alloc_failures();
    test_names();
    test_recognition_published();
    test_recognition_npm();
    test_golden();
    return check_report("test_chat");
}

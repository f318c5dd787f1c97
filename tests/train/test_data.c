// Tests of src/train/data.c on the golden models' real tokenizers and chat templates (llama:
// Llama 3.1's template; qwen3): each format's ids and loss masks (the masked tokens decode to
// exactly the answers and their end markers), the Alpaca text, the piece-by-piece fallback at
// a bound that a merge crosses, truncation (DPO prompts from the left), pretraining windows
// over State of the Union speeches, the split and shuffles, packed, padded and DPO batches
// (shifted targets, positions, attention starts), errors that name file and line, and failed
// allocations.
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "base/str.h"
#include "check.h"
#include "sotu.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/data.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

#define PREAMBLE                                                                          \
    "Below is an instruction that describes a task. Write a response that appropriately " \
    "completes the request.\n\n### Instruction:\n"

static char tmpdir[64];
static tw_tokenizer *llama, *qwen3, *llama31;
static enum tw_chat_family llama_family, qwen3_family, llama31_family;

// A golden model's tokenizer (tests/golden/models/<name>), or the folder under the source
// directory that name starts with "." for, and its chat template's family.
static tw_tokenizer *load_tokenizer(const char *name, enum tw_chat_family *family)
{
    char dir[4200];
    tw_tokenizer *t = NULL;
    if (name[0] == '.')
        snprintf(dir, sizeof dir, "%s/%s", test_source_dir(), name);
    else
        snprintf(dir, sizeof dir, "%s/tests/golden/models/%s", test_source_dir(), name);
    REQUIRE(tw_tokenizer_load_dir(dir, &t) == 0);
    REQUIRE(tw_chat_family_from_template(tw_tokenizer_chat_template(t), family) == 0);
    return t;
}

// Writes text to <tmpdir>/<name> and puts the path in path (4096 bytes).
static const char *write_file(char *path, const char *name, const char *text)
{
    snprintf(path, 4096, "%s/%s", tmpdir, name);
    REQUIRE(tw_file_write_atomic(path, text, strlen(text)) == 0);
    return path;
}

static struct tw_data_options sft_options(enum tw_chat_family f, int32_t max_seq)
{
    return (struct tw_data_options){ .task = TW_DATA_TASK_SFT, .family = f, .max_seq = max_seq };
}

// The text of ids[0, n) (special tokens included); the caller frees it.
static char *decode(const tw_tokenizer *t, const int32_t *ids, size_t n)
{
    tw_str s;
    tw_str_init(&s);
    REQUIRE(tw_tokenizer_decode(t, ids, n, 0, &s) == 0);
    char *out;
    size_t len;
    REQUIRE(tw_str_detach(&s, &out, &len) == 0);
    return out;
}

// The runs of tokens with mask 1 in example e: the text of run k goes to runs[k] (freed by the
// caller); returns how many runs.
static size_t masked_runs(const struct tw_dataset *d, const tw_tokenizer *t,
                          const struct tw_data_example *e, size_t n, char **runs, size_t cap)
{
    const int32_t *ids = tw_dataset_ids(d, e);
    const uint8_t *m = tw_dataset_mask(d, e);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (!m[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && m[j])
            j++;
        if (k < cap)
            runs[k] = decode(t, ids + i, j - i);
        k++;
        i = j;
    }
    return k;
}

// The ids of text tokenised with no post-processor, appended to v.
static void encode_plain(const tw_tokenizer *t, const char *text, tw_vec *v)
{
    REQUIRE(tw_tokenizer_encode(t, text, strlen(text), 0, v, NULL) == 0);
}

static bool ids_equal(const int32_t *a, const tw_vec *b, size_t n)
{
    return n == b->len && (n == 0 || memcmp(a, b->data, n * sizeof(int32_t)) == 0);
}

static const char *piece(const tw_tokenizer *t, int32_t id)
{
    const char *p = tw_tokenizer_id_to_piece(t, id);
    return p ? p : "";
}

// ---- formats and masks ------------------------------------------------------------------

// Alpaca lines with the reference's template: BOS, the text exactly as the reference writes
// it, the response and EOS trained, nothing else; the dataset's sha256 is the file's.
static void test_alpaca(void)
{
    static const char file[] =
        "{\"instruction\": \"Name the nation's strength.\", \"output\": \"Our union is "
        "strong.\"}\n"
        "\n"
        "{\"instruction\": \"Sum up the speech\", \"input\": \"We will rebuild.\", "
        "\"output\": \"A promise to rebuild.\"}\r\n"
        "{\"instruction\": \"Name the nation's strength.\", \"input\": \"\", "
        "\"output\": \"Our union is strong.\"}";
    char path[4096];
    write_file(path, "alpaca.jsonl", file);
    struct tw_dataset d;
    struct tw_data_options o = sft_options(TW_CHAT_ALPACA, 512);
    REQUIRE(tw_dataset_load(&d, path, llama, &o) == 0);
    CHECK_EQ_INT(d.format, TW_DATA_FORMAT_ALPACA);
    CHECK_EQ_INT(tw_dataset_count(&d), 3);
    CHECK_EQ_INT(d.n_truncated, 0);
    CHECK_EQ_INT(d.n_dropped, 0);
    uint8_t h[TW_SHA256_LEN];
    char hex[2 * TW_SHA256_LEN + 1];
    tw_sha256(file, strlen(file), h);
    tw_sha256_hex(h, hex);
    CHECK_EQ_STR(d.sha256_hex, hex);
    CHECK(memcmp(d.sha256, h, sizeof h) == 0);

    static const char *const texts[2] = {
        PREAMBLE "Name the nation's strength.\n\n### Response:\nOur union is strong.",
        PREAMBLE "Sum up the speech\n\nWe will rebuild.\n\n### Response:\nA promise to rebuild.",
    };
    static const char *const answers[2] = { "Our union is strong.", "A promise to rebuild." };
    static const int64_t lines[2] = { 1, 3 };
    int32_t bos = tw_tokenizer_bos(llama), eos = tw_tokenizer_eos(llama);
    int64_t trained = 0, tokens = 0, trained0 = 0;
    for (size_t i = 0; i < 2; i++) {
        const struct tw_data_example *e = tw_dataset_example(&d, i);
        const int32_t *ids = tw_dataset_ids(&d, e);
        const uint8_t *m = tw_dataset_mask(&d, e);
        CHECK_EQ_INT(e->line, lines[i]);
        // [BOS] + the text's ids + [EOS]
        tw_vec want;
        tw_vec_init(&want, sizeof(int32_t));
        REQUIRE(tw_vec_push(&want, &bos) == 0);
        encode_plain(llama, texts[i], &want);
        REQUIRE(tw_vec_push(&want, &eos) == 0);
        CHECK(ids_equal(ids, &want, (size_t)e->len));
        tw_vec_free(&want);
        char *all = decode(llama, ids, (size_t)e->len), expect[512];
        snprintf(expect, sizeof expect, "%s%s%s", piece(llama, bos), texts[i], piece(llama, eos));
        CHECK_EQ_STR(all, expect);
        tw_free(all);
        char *runs[4];
        CHECK_EQ_INT(masked_runs(&d, llama, e, (size_t)e->len, runs, 4), 1);
        snprintf(expect, sizeof expect, "%s%s", answers[i], piece(llama, eos));
        CHECK_EQ_STR(runs[0], expect);
        tw_free(runs[0]);
        CHECK_EQ_INT(m[0], 0);
        CHECK_EQ_INT(m[e->len - 1], 1);
        for (int32_t j = 1; j < e->len; j++)
            trained += m[j];
        tokens += e->len;
        if (i == 0)
            trained0 = trained;
    }
    // An empty "input" adds nothing: line 4 is line 1.
    const struct tw_data_example *e0 = tw_dataset_example(&d, 0), *e2 = tw_dataset_example(&d, 2);
    CHECK_EQ_INT(e2->line, 4);
    CHECK(e2->len == e0->len && memcmp(tw_dataset_ids(&d, e2), tw_dataset_ids(&d, e0),
                                       (size_t)e0->len * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(d.n_trained, trained + trained0);
    CHECK_EQ_INT(d.n_tokens, tokens + e0->len);
    CHECK_EQ_INT(d.n_split, 0);
    CHECK_EQ_INT(d.pad_id, tw_tokenizer_pad(llama));
    tw_dataset_free(&d);
}

// Multi-turn messages with Llama 3's template (the golden model's) and Llama 3.1's (with the
// real Llama 3.1 tokenizer; its system header with the dates is never trained): the ids are the
// whole rendering's, and the two assistant turns (each with its <|eot_id|>) are the only trained
// tokens.
static void test_messages_llama(const tw_tokenizer *tok, enum tw_chat_family family)
{
    static const char line[] =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"You speak plainly.\"},"
        " {\"role\": \"user\", \"content\": \"How is the union?\"},"
        " {\"role\": \"assistant\", \"content\": \"The state of our union is strong.\"},"
        " {\"role\": \"user\", \"content\": \"And the economy?\"},"
        " {\"role\": \"assistant\", \"content\": \"Growing, and we will keep it so.\"}]}\n";
    struct tw_dataset d;
    struct tw_data_options o = sft_options(family, 1024);
    REQUIRE(tw_dataset_load_buffer(&d, "chat.jsonl", line, strlen(line), tok, &o) == 0);
    CHECK_EQ_INT(d.format, TW_DATA_FORMAT_MESSAGES);
    REQUIRE(tw_dataset_count(&d) == 1);
    const struct tw_data_example *e = tw_dataset_example(&d, 0);

    struct tw_chat_msg conv[] = {
        { "system", "You speak plainly." },
        { "user", "How is the union?" },
        { "assistant", "The state of our union is strong." },
        { "user", "And the economy?" },
        { "assistant", "Growing, and we will keep it so." },
    };
    tw_str text;
    tw_str_init(&text);
    REQUIRE(tw_chat_render(family, conv, N(conv), 0, piece(tok, tw_tokenizer_bos(tok)), &text) ==
            0);
    tw_vec want;
    tw_vec_init(&want, sizeof(int32_t));
    encode_plain(tok, tw_str_cstr(&text), &want);
    CHECK(ids_equal(tw_dataset_ids(&d, e), &want, (size_t)e->len));
    CHECK_EQ_INT(tw_dataset_ids(&d, e)[0], tw_tokenizer_bos(tok));
    char *runs[4];
    REQUIRE(masked_runs(&d, tok, e, (size_t)e->len, runs, 4) == 2);
    CHECK_EQ_STR(runs[0], "The state of our union is strong.<|eot_id|>");
    CHECK_EQ_STR(runs[1], "Growing, and we will keep it so.<|eot_id|>");
    tw_free(runs[0]);
    tw_free(runs[1]);
    // The last token is the last <|eot_id|>: the conversation ends with the answer.
    CHECK_EQ_INT(tw_dataset_mask(&d, e)[e->len - 1], 1);
    CHECK_EQ_INT(d.n_split, 0);
    tw_vec_free(&want);
    tw_str_free(&text);
    tw_dataset_free(&d);
}

// Qwen3: the last answer carries the empty think block the template writes; <|im_end|> is
// trained, the newline after it is not. Alpaca lines under a chat family become a user turn
// and an assistant turn.
static void test_qwen3(void)
{
    static const char msgs[] = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello?\"},"
                               " {\"role\": \"assistant\", \"content\": \"Hello, citizens.\"}]}\n";
    struct tw_dataset d;
    struct tw_data_options o = sft_options(qwen3_family, 512);
    REQUIRE(tw_dataset_load_buffer(&d, "q.jsonl", msgs, strlen(msgs), qwen3, &o) == 0);
    const struct tw_data_example *e = tw_dataset_example(&d, 0);
    char *all = decode(qwen3, tw_dataset_ids(&d, e), (size_t)e->len);
    CHECK_EQ_STR(all, "<|im_start|>user\nHello?<|im_end|>\n<|im_start|>assistant\n"
                      "<think>\n\n</think>\n\nHello, citizens.<|im_end|>\n");
    tw_free(all);
    char *runs[2];
    REQUIRE(masked_runs(&d, qwen3, e, (size_t)e->len, runs, 2) == 1);
    CHECK_EQ_STR(runs[0], "<think>\n\n</think>\n\nHello, citizens.<|im_end|>");
    tw_free(runs[0]);
    CHECK_EQ_INT(tw_dataset_mask(&d, e)[e->len - 1], 0); // the "\n" after <|im_end|>
    CHECK_EQ_INT(tw_dataset_ids(&d, e)[e->len - 2], tw_tokenizer_eos(qwen3)); // <|im_end|>
    tw_dataset_free(&d);

    static const char alpaca[] = "{\"instruction\": \"Hello?\", \"output\": \"Hello, citizens.\"}";
    REQUIRE(tw_dataset_load_buffer(&d, "q.jsonl", alpaca, strlen(alpaca), qwen3, &o) == 0);
    e = tw_dataset_example(&d, 0);
    all = decode(qwen3, tw_dataset_ids(&d, e), (size_t)e->len);
    CHECK_EQ_STR(all, "<|im_start|>user\nHello?<|im_end|>\n<|im_start|>assistant\n"
                      "<think>\n\n</think>\n\nHello, citizens.<|im_end|>\n");
    tw_free(all);
    tw_dataset_free(&d);

    // Qwen has no BOS: Alpaca gets none, and EOS (<|im_end|>) after the response.
    o.family = TW_CHAT_ALPACA;
    REQUIRE(tw_dataset_load_buffer(&d, "q.jsonl", alpaca, strlen(alpaca), qwen3, &o) == 0);
    e = tw_dataset_example(&d, 0);
    all = decode(qwen3, tw_dataset_ids(&d, e), (size_t)e->len);
    CHECK_EQ_STR(all, PREAMBLE "Hello?\n\n### Response:\nHello, citizens.<|im_end|>");
    tw_free(all);
    tw_dataset_free(&d);
}

// An answer that starts with newlines: Llama 3's pre-tokenizer takes ":\n" + "\n\n" as one
// word, which its vocabulary has as one token (":\n\n\n"), so the prompt's ids (ending in
// ":\n") are not a prefix of the whole text's; the loader tokenises the prompt and the answer
// apart: the bound is kept and counted.
static void test_split_bound(void)
{
    static const char line[] = "{\"instruction\": \"List.\", \"output\": \"\\n\\nOne, two.\"}";
    const char *prompt = PREAMBLE "List.\n\n### Response:\n";
    const char *answer = "\n\nOne, two.";
    // The premise: tokenising the prompt alone gives ids that the whole text's do not start
    // with.
    tw_vec p, full;
    tw_vec_init(&p, sizeof(int32_t));
    tw_vec_init(&full, sizeof(int32_t));
    encode_plain(llama31, prompt, &p);
    char whole[512];
    snprintf(whole, sizeof whole, "%s%s", prompt, answer);
    encode_plain(llama31, whole, &full);
    bool prefix = p.len <= full.len && memcmp(p.data, full.data, p.len * sizeof(int32_t)) == 0;
    CHECK(!prefix);

    struct tw_dataset d;
    struct tw_data_options o = sft_options(TW_CHAT_ALPACA, 512);
    REQUIRE(tw_dataset_load_buffer(&d, "s.jsonl", line, strlen(line), llama31, &o) == 0);
    CHECK_EQ_INT(d.n_split, 1);
    const struct tw_data_example *e = tw_dataset_example(&d, 0);
    // [BOS] + ids(prompt) + ids(answer) + [EOS]
    tw_vec want;
    tw_vec_init(&want, sizeof(int32_t));
    int32_t bos = tw_tokenizer_bos(llama31), eos = tw_tokenizer_eos(llama31);
    REQUIRE(tw_vec_push(&want, &bos) == 0);
    encode_plain(llama31, prompt, &want);
    size_t answer_at = want.len;
    encode_plain(llama31, answer, &want);
    REQUIRE(tw_vec_push(&want, &eos) == 0);
    CHECK(ids_equal(tw_dataset_ids(&d, e), &want, (size_t)e->len));
    for (size_t j = 0; j < (size_t)e->len; j++)
        CHECK_EQ_INT(tw_dataset_mask(&d, e)[j], j >= answer_at);
    char *runs[2];
    REQUIRE(masked_runs(&d, llama31, e, (size_t)e->len, runs, 2) == 1);
    CHECK_EQ_STR(runs[0], "\n\nOne, two.<|eot_id|>");
    tw_free(runs[0]);
    tw_vec_free(&want);
    tw_vec_free(&p);
    tw_vec_free(&full);
    tw_dataset_free(&d);
}

// SFT examples over max_seq keep their start; one whose answer falls past it is dropped.
static void test_truncation(void)
{
    static const char file[] =
        "{\"instruction\": \"Say it.\", \"output\": \"We hold these truths to be "
        "self-evident.\"}\n"
        "{\"instruction\": \"Say it again, at length, with every word of the long preamble "
        "that comes before it and then some more words.\", \"output\": \"No.\"}\n";
    struct tw_dataset full, cut;
    struct tw_data_options o = sft_options(TW_CHAT_ALPACA, 4096);
    REQUIRE(tw_dataset_load_buffer(&full, "t.jsonl", file, strlen(file), llama, &o) == 0);
    REQUIRE(tw_dataset_count(&full) == 2);
    const struct tw_data_example *f0 = tw_dataset_example(&full, 0);
    const struct tw_data_example *f1 = tw_dataset_example(&full, 1);
    // A limit inside the first answer, before the second one's answer.
    int32_t prompt0 = 0;
    while (!tw_dataset_mask(&full, f0)[prompt0])
        prompt0++;
    o.max_seq = prompt0 + 3;
    REQUIRE(o.max_seq < f0->len);
    CHECK(tw_dataset_mask(&full, f1)[o.max_seq - 1] == 0);
    REQUIRE(tw_dataset_load_buffer(&cut, "t.jsonl", file, strlen(file), llama, &o) == 0);
    CHECK_EQ_INT(tw_dataset_count(&cut), 1);
    CHECK_EQ_INT(cut.n_truncated, 1);
    CHECK_EQ_INT(cut.n_dropped, 1);
    const struct tw_data_example *c0 = tw_dataset_example(&cut, 0);
    CHECK_EQ_INT(c0->len, o.max_seq);
    CHECK(memcmp(tw_dataset_ids(&cut, c0), tw_dataset_ids(&full, f0),
                 (size_t)o.max_seq * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(cut.n_trained, 3);
    tw_dataset_free(&full);
    tw_dataset_free(&cut);
}

// ---- DPO --------------------------------------------------------------------------------

static void test_preference(void)
{
    static const char file[] =
        "{\"prompt\": \"Is the union strong?\", \"chosen\": \"Yes, and growing stronger.\","
        " \"rejected\": \"No.\"}\n"
        "{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
        " {\"role\": \"user\", \"content\": \"Taxes?\"}],"
        " \"chosen\": [{\"role\": \"assistant\", \"content\": \"Lower.\"}],"
        " \"rejected\": \"Higher, much higher.\"}\n";
    struct tw_dataset d;
    struct tw_data_options o = {
        .task = TW_DATA_TASK_DPO, .family = llama_family, .max_len = 1024, .max_prompt = 512
    };
    REQUIRE(tw_dataset_load_buffer(&d, "p.jsonl", file, strlen(file), llama, &o) == 0);
    CHECK_EQ_INT(d.format, TW_DATA_FORMAT_PREFERENCE);
    REQUIRE(tw_dataset_count(&d) == 2);
    struct tw_chat_msg p0[] = { { "user", "Is the union strong?" } };
    struct tw_chat_msg p1[] = { { "system", "Be brief." }, { "user", "Taxes?" } };
    const struct tw_chat_msg *prompts[2] = { p0, p1 };
    size_t np[2] = { 1, 2 };
    static const char *const chosen[2] = { "Yes, and growing stronger.<|eot_id|>",
                                           "Lower.<|eot_id|>" };
    static const char *const rejected[2] = { "No.<|eot_id|>", "Higher, much higher.<|eot_id|>" };
    int64_t targets = 0;
    for (size_t i = 0; i < 2; i++) {
        const struct tw_data_example *e = tw_dataset_example(&d, i);
        const int32_t *ids = tw_dataset_ids(&d, e);
        const uint8_t *m = tw_dataset_mask(&d, e);
        tw_str text;
        tw_str_init(&text);
        REQUIRE(tw_chat_render(llama_family, prompts[i], np[i], 1,
                               piece(llama, tw_tokenizer_bos(llama)), &text) == 0);
        tw_vec want;
        tw_vec_init(&want, sizeof(int32_t));
        encode_plain(llama, tw_str_cstr(&text), &want);
        CHECK(ids_equal(ids, &want, (size_t)e->len));
        char *s = decode(llama, ids + e->len, (size_t)e->len_chosen);
        CHECK_EQ_STR(s, chosen[i]);
        tw_free(s);
        s = decode(llama, ids + e->len + e->len_chosen, (size_t)e->len_rejected);
        CHECK_EQ_STR(s, rejected[i]);
        tw_free(s);
        for (int32_t j = 0; j < e->len + e->len_chosen + e->len_rejected; j++)
            CHECK_EQ_INT(m[j], j >= e->len);
        targets += e->len_chosen + e->len_rejected;
        tw_vec_free(&want);
        tw_str_free(&text);
    }
    CHECK_EQ_INT(d.n_trained, targets);

    // Batches: rows [0, B) chosen, [B, 2B) rejected, targets on the answers only.
    struct tw_batcher b;
    REQUIRE(tw_batcher_init(&b, &d, NULL, 2, 2, 64, TW_BATCH_MODE_PACK) == 0);
    CHECK_EQ_INT(tw_batcher_count(&b), 1);
    const struct tw_batch *bt;
    REQUIRE(tw_batcher_next(&b, &bt));
    CHECK_EQ_INT(bt->rows, 4);
    CHECK_EQ_INT(bt->pairs, 2);
    CHECK_EQ_INT(bt->n_examples, 2);
    CHECK_EQ_INT(bt->n_trained, targets);
    for (int32_t r = 0; r < 4; r++) {
        const struct tw_data_example *e = tw_dataset_example(&d, (size_t)(r % 2));
        const int32_t *ids = tw_dataset_ids(&d, e);
        const int32_t *answer = ids + e->len + (r < 2 ? 0 : e->len_chosen);
        int32_t alen = r < 2 ? e->len_chosen : e->len_rejected, n = e->len + alen;
        const int32_t *row_ids = bt->ids + r * 64, *tg = bt->targets + r * 64;
        CHECK(memcmp(row_ids, ids, (size_t)e->len * sizeof(int32_t)) == 0);
        CHECK(memcmp(row_ids + e->len, answer, (size_t)alen * sizeof(int32_t)) == 0);
        int trained = 0;
        for (int32_t t = 0; t < 64; t++) {
            int32_t want = t + 1 < n && t + 1 >= e->len ? row_ids[t + 1] : TW_DATA_IGNORE;
            CHECK_EQ_INT(tg[t], want);
            CHECK_EQ_INT(bt->start[r * 64 + t], t < n ? 0 : t);
            CHECK_EQ_INT(bt->pos[r * 64 + t], t < n ? t : 0);
            if (t >= n)
                CHECK_EQ_INT(row_ids[t], d.pad_id);
            trained += tg[t] != TW_DATA_IGNORE;
        }
        CHECK_EQ_INT(trained, alen);
    }
    CHECK(!tw_batcher_next(&b, &bt));
    tw_batcher_free(&b);
    tw_dataset_free(&d);
}

// A long prompt keeps its BOS and its last tokens (TRL's left truncation); the answers are
// then cut to what max_len leaves.
static void test_preference_truncation(void)
{
    static const char file[] =
        "{\"prompt\": \"Mr. Speaker, Mr. Vice President, members of Congress, distinguished "
        "guests, and fellow citizens: tell me how the union is.\", \"chosen\": \"It is strong, "
        "and it grows stronger every year that we work together.\", \"rejected\": \"Weak.\"}\n";
    struct tw_dataset full, cut;
    struct tw_data_options o = {
        .task = TW_DATA_TASK_DPO, .family = llama_family, .max_len = 4096, .max_prompt = 2048
    };
    REQUIRE(tw_dataset_load_buffer(&full, "p.jsonl", file, strlen(file), llama, &o) == 0);
    const struct tw_data_example *f = tw_dataset_example(&full, 0);
    const int32_t *fi = tw_dataset_ids(&full, f);
    o.max_prompt = 16;
    o.max_len = 16 + 5;
    REQUIRE(f->len > 16 && f->len_chosen > 5 && f->len_rejected <= 5);
    REQUIRE(tw_dataset_load_buffer(&cut, "p.jsonl", file, strlen(file), llama, &o) == 0);
    CHECK_EQ_INT(cut.n_truncated, 1);
    const struct tw_data_example *c = tw_dataset_example(&cut, 0);
    const int32_t *ci = tw_dataset_ids(&cut, c);
    CHECK_EQ_INT(c->len, 16);
    CHECK_EQ_INT(ci[0], tw_tokenizer_bos(llama));
    CHECK(memcmp(ci + 1, fi + f->len - 15, 15 * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(c->len_chosen, 5);
    CHECK(memcmp(ci + 16, fi + f->len, 5 * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(c->len_rejected, f->len_rejected);
    CHECK(memcmp(ci + 21, fi + f->len + f->len_chosen,
                 (size_t)f->len_rejected * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(cut.longest, 21);
    tw_dataset_free(&full);
    tw_dataset_free(&cut);

    // max_prompt 0 means max_len / 2; max_prompt >= max_len is refused.
    o.max_prompt = 0;
    o.max_len = 20;
    REQUIRE(tw_dataset_load_buffer(&cut, "p.jsonl", file, strlen(file), llama, &o) == 0);
    CHECK_EQ_INT(tw_dataset_example(&cut, 0)->len, 10);
    tw_dataset_free(&cut);
    o.max_prompt = 20;
    CHECK_EQ_INT(tw_dataset_load_buffer(&cut, "p.jsonl", file, strlen(file), llama, &o),
                 TW_EINVAL);
}

// ---- pretraining ------------------------------------------------------------------------

// {"text"} lines and the same documents given as strings: [BOS] + ids + [EOS] per document,
// back to back, cut into windows of max_seq (the last shorter), every token trained.
static void test_text(void)
{
    static const char *const docs[] = {
        "The state of the union is strong.",
        "",
        "We have come through a long winter, and spring is here.",
        "Thank you, God bless you, and God bless America.",
    };
    static const char file[] =
        "{\"text\": \"The state of the union is strong.\"}\n"
        "{\"text\": \"\"}\n"
        "{\"text\": \"We have come through a long winter, and spring is "
        "here.\"}\n"
        "\n"
        "{\"text\": \"Thank you, God bless you, and God bless America.\"}\n";
    int32_t bos = tw_tokenizer_bos(llama), eos = tw_tokenizer_eos(llama);
    tw_vec stream;
    tw_vec_init(&stream, sizeof(int32_t));
    for (size_t i = 0; i < N(docs); i++) {
        if (!*docs[i])
            continue;
        REQUIRE(tw_vec_push(&stream, &bos) == 0);
        encode_plain(llama, docs[i], &stream);
        REQUIRE(tw_vec_push(&stream, &eos) == 0);
    }
    struct tw_data_options o = { .task = TW_DATA_TASK_PRETRAIN,
                                 .family = llama_family,
                                 .max_seq = 16 };
    struct tw_dataset a, b;
    REQUIRE(tw_dataset_load_buffer(&a, "t.jsonl", file, strlen(file), llama, &o) == 0);
    REQUIRE(tw_dataset_from_texts(&b, docs, N(docs), llama, &o) == 0);
    for (int k = 0; k < 2; k++) {
        const struct tw_dataset *d = k ? &b : &a;
        CHECK_EQ_INT(d->format, TW_DATA_FORMAT_TEXT);
        size_t n = (stream.len + 15) / 16, off = 0;
        REQUIRE(tw_dataset_count(d) == n);
        CHECK_EQ_INT(d->n_tokens, stream.len);
        CHECK_EQ_INT(d->n_trained, (int64_t)stream.len - (int64_t)n);
        for (size_t i = 0; i < n; i++) {
            const struct tw_data_example *e = tw_dataset_example(d, i);
            size_t len = stream.len - off < 16 ? stream.len - off : 16;
            CHECK_EQ_INT(e->len, len);
            CHECK(memcmp(tw_dataset_ids(d, e), (int32_t *)stream.data + off,
                         len * sizeof(int32_t)) == 0);
            for (size_t j = 0; j < len; j++)
                CHECK_EQ_INT(tw_dataset_mask(d, e)[j], 1);
            off += len;
        }
        // The line of each window's first document: the first window is line / document 1.
        CHECK_EQ_INT(tw_dataset_example(d, 0)->line, 1);
        CHECK_EQ_INT(tw_dataset_example(d, n - 1)->line, k ? 4 : 5);
    }
    tw_vec_free(&stream);
    tw_dataset_free(&a);
    tw_dataset_free(&b);
}

// State of the Union speeches as documents: windows of 256 tokens, all full but the last,
// which pack one to a row; an epoch's batches count every target once.
static void test_sotu(void)
{
    char dir[4096], *names[64];
    size_t n = sotu_list(dir, sizeof dir, names, N(names));
    REQUIRE(n >= 3);
    char *texts[3];
    size_t total = 0;
    for (size_t i = 0; i < 3; i++) {
        char path[8200];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        texts[i] = test_read_file(path, &len);
        REQUIRE(texts[i]);
        tw_vec ids;
        tw_vec_init(&ids, sizeof(int32_t));
        encode_plain(llama, texts[i], &ids);
        total += ids.len + 2;
        tw_vec_free(&ids);
    }
    struct tw_data_options o = { .task = TW_DATA_TASK_PRETRAIN,
                                 .family = llama_family,
                                 .max_seq = 256 };
    struct tw_dataset d;
    REQUIRE(tw_dataset_from_texts(&d, (const char *const *)texts, 3, llama, &o) == 0);
    size_t windows = (total + 255) / 256;
    if (total % 256 == 1)
        windows--; // a last window of one token trains nothing
    CHECK_EQ_INT(tw_dataset_count(&d), windows);
    CHECK_EQ_INT(d.longest, 256);
    struct tw_batcher b;
    REQUIRE(tw_batcher_init(&b, &d, NULL, tw_dataset_count(&d), 4, 256, TW_BATCH_MODE_PACK) == 0);
    tw_batcher_epoch(&b, 1234, 0, true);
    CHECK_EQ_INT(tw_batcher_count(&b), (windows + 3) / 4);
    const struct tw_batch *bt;
    int64_t trained = 0;
    size_t examples = 0;
    while (tw_batcher_next(&b, &bt)) {
        trained += bt->n_trained;
        examples += (size_t)bt->n_examples;
    }
    CHECK_EQ_INT(trained, d.n_trained);
    CHECK_EQ_INT(examples, windows);
    tw_batcher_free(&b);
    tw_dataset_free(&d);
    for (size_t i = 0; i < 3; i++)
        tw_free(texts[i]);
    for (size_t i = 0; i < n; i++)
        tw_free(names[i]);
}

// ---- split, shuffle, batches ------------------------------------------------------------

static void test_split(void)
{
    struct tw_data_split a, b, c;
    CHECK_OK(tw_data_split_init(&a, 100, 0.1, 7));
    CHECK_OK(tw_data_split_init(&b, 100, 0.1, 7));
    CHECK_OK(tw_data_split_init(&c, 100, 0.1, 8));
    CHECK_EQ_INT(a.n_eval, 10);
    CHECK_EQ_INT(a.n_train, 90);
    // Disjoint, covering, sorted.
    int seen[100] = { 0 };
    for (size_t i = 0; i < a.n_eval; i++)
        seen[a.eval[i]] += 1;
    for (size_t i = 0; i < a.n_train; i++)
        seen[a.train[i]] += 2;
    bool ok = true;
    for (size_t i = 0; i < 100; i++)
        ok = ok && (seen[i] == 1 || seen[i] == 2);
    CHECK(ok);
    for (size_t i = 1; i < a.n_eval; i++)
        CHECK(a.eval[i - 1] < a.eval[i]);
    for (size_t i = 1; i < a.n_train; i++)
        CHECK(a.train[i - 1] < a.train[i]);
    // The same seed, the same split; another seed, another split.
    CHECK(memcmp(a.eval, b.eval, 10 * sizeof(size_t)) == 0);
    CHECK(memcmp(a.eval, c.eval, 10 * sizeof(size_t)) != 0);
    // Pinned: the generator is integer-only, so this holds on every machine.
    static const size_t pinned[10] = { 2, 4, 11, 37, 51, 54, 61, 74, 76, 92 };
    CHECK(memcmp(a.eval, pinned, sizeof pinned) == 0);
    if (memcmp(a.eval, pinned, sizeof pinned) != 0) {
        for (size_t i = 0; i < 10; i++)
            fprintf(stderr, "%zu, ", a.eval[i]);
        fprintf(stderr, "\n");
    }
    tw_data_split_free(&a);
    tw_data_split_free(&b);
    tw_data_split_free(&c);
    // Edges: nothing held out, everything held out, rounding, a bad fraction.
    CHECK_OK(tw_data_split_init(&a, 5, 0, 1));
    CHECK_EQ_INT(a.n_eval, 0);
    CHECK_EQ_INT(a.n_train, 5);
    tw_data_split_free(&a);
    CHECK_OK(tw_data_split_init(&a, 5, 1, 1));
    CHECK_EQ_INT(a.n_eval, 5);
    tw_data_split_free(&a);
    CHECK_OK(tw_data_split_init(&a, 7, 0.25, 1));
    CHECK_EQ_INT(a.n_eval, 2);
    tw_data_split_free(&a);
    CHECK_OK(tw_data_split_init(&a, 0, 0.5, 1));
    CHECK_EQ_INT(a.n_eval + a.n_train, 0);
    tw_data_split_free(&a);
    CHECK_EQ_INT(tw_data_split_init(&a, 5, 1.5, 1), TW_EINVAL);
    CHECK_EQ_INT(tw_data_split_init(&a, 5, -0.1, 1), TW_EINVAL);
}

// A dataset of n Alpaca examples of different lengths.
static void load_many(struct tw_dataset *d, size_t n, int32_t max_seq)
{
    tw_str s;
    tw_str_init(&s);
    static const char *const words[] = { "union",       "freedom",    "the economy",
                                         "our schools", "the budget", "peace" };
    for (size_t i = 0; i < n; i++) {
        REQUIRE(tw_str_printf(&s, "{\"instruction\": \"Speak of %s.\", \"output\": \"",
                              words[i % N(words)]) == 0);
        for (size_t k = 0; k <= i % 5; k++)
            REQUIRE(tw_str_printf(&s, "%s%s is %zu.", k ? " " : "", words[(i + k) % N(words)],
                                  i * 7 + k) == 0);
        REQUIRE(tw_str_puts(&s, "\"}\n") == 0);
    }
    struct tw_data_options o = sft_options(TW_CHAT_ALPACA, max_seq);
    REQUIRE(tw_dataset_load_buffer(d, "many.jsonl", tw_str_cstr(&s), tw_str_len(&s), llama, &o) ==
            0);
    tw_str_free(&s);
}

// Checks every batch of an epoch against the dataset: each example of the pool appears once,
// whole, inside one row, in the epoch's order; ids, targets, positions and starts are right;
// padding is padding; the rows are packed as the greedy rule says.
static void check_epoch(struct tw_batcher *b, const struct tw_dataset *d, bool pack)
{
    int32_t B = b->B, T = b->T;
    size_t placed = 0, rows_used = 0;
    int64_t trained = 0;
    const struct tw_batch *bt;
    bool ok = true;
    size_t batches = 0;
    while (tw_batcher_next(b, &bt)) {
        CHECK_EQ_INT(bt->index, batches);
        batches++;
        int64_t bt_trained = 0;
        for (int32_t r = 0; r < B; r++) {
            const int32_t *ids = bt->ids + (size_t)r * T, *tg = bt->targets + (size_t)r * T;
            const int32_t *pos = bt->pos + (size_t)r * T, *st = bt->start + (size_t)r * T;
            int32_t t = 0, in_row = 0;
            while (placed < b->n_pool) {
                const struct tw_data_example *e = tw_dataset_example(d, b->order[placed]);
                if (t + e->len > T || (!pack && in_row == 1))
                    break;
                const int32_t *ei = tw_dataset_ids(d, e);
                const uint8_t *em = tw_dataset_mask(d, e);
                for (int32_t j = 0; j < e->len; j++) {
                    int32_t want = j + 1 < e->len && em[j + 1] ? ei[j + 1] : TW_DATA_IGNORE;
                    ok = ok && ids[t + j] == ei[j] && tg[t + j] == want && pos[t + j] == j &&
                         st[t + j] == t;
                    bt_trained += want != TW_DATA_IGNORE;
                }
                t += e->len;
                placed++;
                in_row++;
            }
            rows_used += in_row > 0;
            for (; t < T; t++)
                ok = ok && ids[t] == d->pad_id && tg[t] == TW_DATA_IGNORE && pos[t] == 0 &&
                     st[t] == t;
        }
        CHECK_EQ_INT(bt->n_trained, bt_trained);
        trained += bt_trained;
    }
    CHECK(ok);
    CHECK_EQ_INT(placed, b->n_pool);
    CHECK_EQ_INT(batches, tw_batcher_count(b));
    CHECK_EQ_INT(batches, (rows_used + (size_t)B - 1) / (size_t)B);
    int64_t want = 0;
    for (size_t i = 0; i < b->n_pool; i++) {
        const struct tw_data_example *e = tw_dataset_example(d, b->pool[i]);
        for (int32_t j = 1; j < e->len; j++)
            want += tw_dataset_mask(d, e)[j];
    }
    CHECK_EQ_INT(trained, want);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static bool same_order(const struct tw_batcher *a, const struct tw_batcher *b)
{
    return a->n_pool == b->n_pool && memcmp(a->order, b->order, a->n_pool * sizeof(size_t)) == 0;
}

static void test_batches(void)
{
    struct tw_dataset d;
    load_many(&d, 40, 512);
    REQUIRE(tw_dataset_count(&d) == 40);
    int32_t T = d.longest * 3; // a few examples a row
    struct tw_batcher b, c;
    REQUIRE(tw_batcher_init(&b, &d, NULL, 40, 3, T, TW_BATCH_MODE_PACK) == 0);
    REQUIRE(tw_batcher_init(&c, &d, NULL, 40, 3, T, TW_BATCH_MODE_PACK) == 0);
    // Unshuffled: the given order.
    for (size_t i = 0; i < 40; i++)
        CHECK_EQ_INT(b.order[i], i);
    check_epoch(&b, &d, true);
    CHECK(tw_batcher_count(&b) < 40 / 3); // packing puts several examples in a row

    // The same seed and epoch, the same order; another epoch or seed, another order.
    tw_batcher_epoch(&b, 99, 0, true);
    tw_batcher_epoch(&c, 99, 0, true);
    CHECK(same_order(&b, &c));
    check_epoch(&b, &d, true);
    tw_batcher_epoch(&c, 99, 1, true);
    CHECK(!same_order(&b, &c));
    check_epoch(&c, &d, true);
    tw_batcher_epoch(&c, 100, 0, true);
    CHECK(!same_order(&b, &c));
    // seed + epoch: seed 99 epoch 1 is seed 100 epoch 0.
    tw_batcher_epoch(&b, 99, 1, true);
    CHECK(same_order(&b, &c));

    // Seeking: batch 2 again gives the same batch.
    tw_batcher_seek(&b, 2);
    const struct tw_batch *bt;
    REQUIRE(tw_batcher_next(&b, &bt));
    int32_t *first = tw_malloc_array((size_t)3 * T, sizeof(int32_t));
    REQUIRE(first);
    memcpy(first, bt->targets, (size_t)3 * T * sizeof(int32_t));
    tw_batcher_seek(&b, 2);
    REQUIRE(tw_batcher_next(&b, &bt));
    CHECK_EQ_INT(bt->index, 2);
    CHECK(memcmp(first, bt->targets, (size_t)3 * T * sizeof(int32_t)) == 0);
    tw_free(first);
    tw_batcher_seek(&b, 1000);
    CHECK(!tw_batcher_next(&b, &bt));
    tw_batcher_free(&b);
    tw_batcher_free(&c);

    // Padding mode over the training part of a split: one example a row.
    struct tw_data_split s;
    REQUIRE(tw_data_split_init(&s, 40, 0.2, 5) == 0);
    REQUIRE(tw_batcher_init(&b, &d, s.train, s.n_train, 4, d.longest, TW_BATCH_MODE_PAD) == 0);
    tw_batcher_epoch(&b, 3, 0, true);
    CHECK_EQ_INT(tw_batcher_count(&b), (s.n_train + 3) / 4);
    check_epoch(&b, &d, false);
    // The shuffled order is a permutation of the training set.
    size_t *sorted = tw_malloc_array(s.n_train, sizeof(size_t));
    REQUIRE(sorted);
    memcpy(sorted, b.order, s.n_train * sizeof(size_t));
    qsort(sorted, s.n_train, sizeof(size_t), cmp_size);
    CHECK(memcmp(sorted, s.train, s.n_train * sizeof(size_t)) == 0);
    tw_free(sorted);
    tw_batcher_free(&b);
    tw_data_split_free(&s);

    // An example longer than a row, a bad index, bad sizes.
    CHECK_EQ_INT(tw_batcher_init(&b, &d, NULL, 40, 2, d.longest - 1, TW_BATCH_MODE_PACK),
                 TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "line ") != NULL);
    size_t bad = 40;
    CHECK_EQ_INT(tw_batcher_init(&b, &d, &bad, 1, 2, d.longest, TW_BATCH_MODE_PACK), TW_EINVAL);
    CHECK_EQ_INT(tw_batcher_init(&b, &d, NULL, 40, 0, d.longest, TW_BATCH_MODE_PACK), TW_EINVAL);
    CHECK_EQ_INT(tw_batcher_init(&b, &d, NULL, 40, 2, 1, TW_BATCH_MODE_PACK), TW_EINVAL);
    // No examples: no batches.
    REQUIRE(tw_batcher_init(&b, &d, NULL, 0, 2, d.longest, TW_BATCH_MODE_PACK) == 0);
    CHECK_EQ_INT(tw_batcher_count(&b), 0);
    CHECK(!tw_batcher_next(&b, &bt));
    tw_batcher_free(&b);
    tw_dataset_free(&d);
}

// A hand-checked packed row: two short examples side by side, their targets shifted.
static void test_packed_row(void)
{
    struct tw_dataset d;
    load_many(&d, 2, 512);
    const struct tw_data_example *e0 = tw_dataset_example(&d, 0), *e1 = tw_dataset_example(&d, 1);
    int32_t T = e0->len + e1->len + 3;
    struct tw_batcher b;
    REQUIRE(tw_batcher_init(&b, &d, NULL, 2, 1, T, TW_BATCH_MODE_PACK) == 0);
    const struct tw_batch *bt;
    REQUIRE(tw_batcher_next(&b, &bt));
    CHECK_EQ_INT(bt->n_examples, 2);
    int32_t s1 = e0->len;
    // The last token of example 0 (EOS) predicts nothing; example 1 starts over at pos 0.
    CHECK_EQ_INT(bt->ids[s1 - 1], tw_tokenizer_eos(llama));
    CHECK_EQ_INT(bt->targets[s1 - 1], TW_DATA_IGNORE);
    CHECK_EQ_INT(bt->targets[s1 - 2], tw_tokenizer_eos(llama));
    CHECK_EQ_INT(bt->ids[s1], tw_tokenizer_bos(llama));
    CHECK_EQ_INT(bt->pos[s1], 0);
    CHECK_EQ_INT(bt->start[s1], s1);
    CHECK_EQ_INT(bt->start[s1 - 1], 0);
    CHECK_EQ_INT(bt->pos[s1 + 5], 5);
    CHECK_EQ_INT(bt->start[T - 1], T - 1);
    CHECK_EQ_INT(bt->ids[T - 1], d.pad_id);
    CHECK(!tw_batcher_next(&b, &bt));
    tw_batcher_free(&b);
    // With room for one example a row, the second goes to the next row (never split).
    REQUIRE(tw_batcher_init(&b, &d, NULL, 2, 1, e0->len + e1->len - 1, TW_BATCH_MODE_PACK) == 0);
    CHECK_EQ_INT(tw_batcher_count(&b), 2);
    tw_batcher_free(&b);
    tw_dataset_free(&d);
}

// ---- errors -----------------------------------------------------------------------------

// Loading `text` as file `name` fails with code and a message that contains want; the caller's
// dataset is untouched.
static void check_error(int line, const char *name, const char *text, enum tw_data_task task,
                        int code, const char *want)
{
    char path[4096], full[4200];
    write_file(path, name, text);
    snprintf(full, sizeof full, "%s/%s", tmpdir, want);
    struct tw_dataset d;
    memset(&d, 0xAB, sizeof d);
    struct tw_data_options o = {
        .task = task, .family = llama_family, .max_seq = 256, .max_len = 256
    };
    int rc = tw_dataset_load(&d, path, llama, &o);
    check_count++;
    unsigned char *p = (unsigned char *)&d;
    bool untouched = true;
    for (size_t i = 0; i < sizeof d; i++)
        untouched = untouched && p[i] == 0xAB;
    if (rc != code || !strstr(tw_error_msg(), full) || !untouched) {
        fprintf(stderr, "%s:%d: expected %d with \"%s\"; got %d \"%s\"%s\n", __FILE__, line, code,
                full, rc, tw_error_msg(), untouched ? "" : " (dataset changed)");
        check_failed_count++;
    }
    if (rc == 0)
        tw_dataset_free(&d);
}

#define ERR(name, text, task, code, want) check_error(__LINE__, name, text, task, code, want)

static void test_errors(void)
{
    const enum tw_data_task any = TW_DATA_TASK_ANY;
    ERR("bad.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\",\n",
        any, TW_EFORMAT, "bad.jsonl:2: invalid JSON");
    ERR("missing.jsonl", "\n\n{\"instruction\": \"a\"}\n", any, TW_EFORMAT,
        "missing.jsonl:3: missing \"output\"");
    ERR("type.jsonl", "{\"instruction\": \"a\", \"output\": 5}", any, TW_EFORMAT,
        "type.jsonl:1: \"output\" is not a string (got an integer)");
    ERR("mixed.jsonl",
        "{\"instruction\": \"a\", \"output\": \"b\"}\n\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n",
        any, TW_EFORMAT,
        "mixed.jsonl:3: a line of the messages format, but line 1 set the alpaca");
    ERR("empty.jsonl", "", any, TW_EFORMAT, "empty.jsonl: no examples");
    ERR("blank.jsonl", "\n  \n\r\n", any, TW_EFORMAT, "blank.jsonl: no examples");
    ERR("array.jsonl", "[1, 2]\n", any, TW_EFORMAT, "array.jsonl:1: expected a JSON object");
    ERR("unknown.jsonl", "{\"question\": \"a\"}\n", any, TW_EFORMAT,
        "unknown.jsonl:1: unknown format");
    ERR("content.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": 1}]}", any, TW_EFORMAT,
        "content.jsonl:1: messages[0]: \"content\" is not a string (got an integer)");
    ERR("msgobj.jsonl", "{\"messages\": [\"hi\"]}", any, TW_EFORMAT,
        "msgobj.jsonl:1: messages[0] is not an object");
    ERR("msgs.jsonl", "{\"messages\": {}}", any, TW_EFORMAT,
        "msgs.jsonl:1: \"messages\" is not an array");
    ERR("role.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\", "
        "\"content\": \"b\"}]}",
        any, TW_EINVAL, "role.jsonl:1: chat template llama3: message 1: unknown role");
    ERR("noanswer.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}", any,
        TW_EFORMAT, "noanswer.jsonl:1: no assistant message");
    ERR("first.jsonl", "{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}]}", any,
        TW_EFORMAT, "first.jsonl:1: messages[0]: an assistant message cannot open");
    ERR("marker.jsonl", "{\"instruction\": \"a\", \"output\": \"b<|eot_id|>c\"}", any, TW_EFORMAT,
        "marker.jsonl:1: \"output\": the text holds \"<|eot_id|>\"");
    ERR("task.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}", TW_DATA_TASK_DPO, TW_EFORMAT,
        "task.jsonl:1: a line of the alpaca format, but DPO reads");
    ERR("pretrain.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}",
        TW_DATA_TASK_PRETRAIN, TW_EFORMAT, "pretrain.jsonl:1: a line of the preference format");
    ERR("pref.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\"}", any, TW_EFORMAT,
        "pref.jsonl:1: missing \"rejected\"");
    ERR("pref2.jsonl", "{\"prompt\": 3, \"chosen\": \"b\", \"rejected\": \"c\"}", any, TW_EFORMAT,
        "pref2.jsonl:1: \"prompt\" is not a string or an array (got an integer)");
    ERR("pref3.jsonl",
        "{\"prompt\": \"a\", \"chosen\": [{\"role\": \"user\", \"content\": \"b\"}], "
        "\"rejected\": \"c\"}",
        any, TW_EFORMAT, "pref3.jsonl:1: chosen[0]: \"role\" is \"user\", not \"assistant\"");
    ERR("pref4.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": null}", any,
        TW_EFORMAT, "pref4.jsonl:1: \"rejected\" is not a string or an array of one message");
    ERR("text.jsonl", "{\"text\": \"a\"}\n{\"text\": [\"b\"]}\n", any, TW_EFORMAT,
        "text.jsonl:2: \"text\" is not a string (got an array)");
    ERR("nul.jsonl", "{\"instruction\": \"a\\u0000b\", \"output\": \"c\"}", any, TW_EFORMAT,
        "nul.jsonl:1: invalid JSON");

    char path[4096];
    snprintf(path, sizeof path, "%s/absent.jsonl", tmpdir);
    struct tw_dataset d;
    struct tw_data_options o = sft_options(llama_family, 256);
    CHECK_EQ_INT(tw_dataset_load(&d, path, llama, &o), TW_ENOENT);
    static const char ok[] = "{\"instruction\": \"a\", \"output\": \"b\"}";
    o.max_seq = 1;
    CHECK_EQ_INT(tw_dataset_load_buffer(&d, "o.jsonl", ok, strlen(ok), llama, &o), TW_EINVAL);
    o.max_seq = 256;
    o.family = TW_CHAT_FAMILY_COUNT;
    CHECK_EQ_INT(tw_dataset_load_buffer(&d, "o.jsonl", ok, strlen(ok), llama, &o), TW_EINVAL);
    o.family = llama_family;
    CHECK_EQ_INT(tw_dataset_from_texts(&d, NULL, 0, llama, &o), TW_EINVAL); // SFT task
    o.task = TW_DATA_TASK_PRETRAIN;
    CHECK_EQ_INT(tw_dataset_from_texts(&d, NULL, 0, llama, &o), TW_EFORMAT);
    const char *empty[] = { "", "" };
    CHECK_EQ_INT(tw_dataset_from_texts(&d, empty, 2, llama, &o), TW_EFORMAT);
    CHECK(strstr(tw_error_msg(), "no examples left") != NULL);
    // Gemma's template refuses a conversation that does not alternate: the line is named.
    static const char gemma[] = "\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
                                "{\"role\": \"user\", \"content\": \"b\"}, {\"role\": "
                                "\"assistant\", \"content\": \"c\"}]}";
    o.task = TW_DATA_TASK_SFT;
    o.family = TW_CHAT_GEMMA;
    CHECK_EQ_INT(tw_dataset_load_buffer(&d, "g.jsonl", gemma, strlen(gemma), llama, &o),
                 TW_EINVAL);
    CHECK(strncmp(tw_error_msg(), "g.jsonl:2: chat template gemma", 30) == 0);
}

// Every allocation of a load fails once in turn: TW_ENOMEM, nothing leaked, the dataset
// untouched; then the load succeeds.
static void test_alloc_failures(void)
{
    static const char *const files[] = {
        "{\"instruction\": \"Say it.\", \"input\": \"Now.\", \"output\": \"We will.\"}\n",
        "{\"prompt\": \"Is it?\", \"chosen\": \"Yes.\", \"rejected\": \"No.\"}\n",
        "{\"text\": \"One speech.\"}\n{\"text\": \"Another speech.\"}\n",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
        "\"content\": \"Hello.\"}]}\n",
    };
    for (size_t f = 0; f < N(files); f++) {
        struct tw_data_options o = { .family = f == 0 ? TW_CHAT_ALPACA : llama_family,
                                     .max_seq = 1024,
                                     .max_len = 1024 };
        tw_tokenizer_thread_cleanup();
        long live = tw_mem_live();
        bool done = false;
        for (long k = 1; k < 5000 && !done; k++) {
            struct tw_dataset d;
            memset(&d, 0x5A, sizeof d);
            tw_mem_fail_after(k);
            int rc = tw_dataset_load_buffer(&d, "f.jsonl", files[f], strlen(files[f]), llama, &o);
            tw_mem_fail_after(0);
            if (rc == 0) {
                done = true;
                CHECK(tw_dataset_count(&d) > 0);
                tw_dataset_free(&d);
            } else {
                if (rc != TW_ENOMEM)
                    fprintf(stderr, "file %zu k %ld: %s\n", f, k, tw_error_msg());
                CHECK_EQ_INT(rc, TW_ENOMEM);
                CHECK_EQ_INT(((unsigned char *)&d)[0], 0x5A);
            }
            tw_tokenizer_thread_cleanup();
            CHECK_EQ_INT(tw_mem_live(), live);
        }
        CHECK(done);
    }
}

static void cleanup(void)
{
    tw_remove_tree(tmpdir);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/twin-test-data-XXXXXX");
    REQUIRE(mkdtemp(tmpdir));
    atexit(cleanup);
    llama = load_tokenizer("llama", &llama_family);
    qwen3 = load_tokenizer("qwen3", &qwen3_family);
    llama31 = load_tokenizer(".cache/data/tokenizers/llama3_1", &llama31_family);
    CHECK_EQ_INT(llama_family, TW_CHAT_LLAMA3);
    CHECK_EQ_INT(qwen3_family, TW_CHAT_QWEN3);

    test_alpaca();
    test_messages_llama(llama, llama_family);
    test_messages_llama(llama31, TW_CHAT_LLAMA3_1); // its package has Llama 3's template
    test_qwen3();
    test_split_bound();
    test_truncation();
    test_preference();
    test_preference_truncation();
    test_text();
    test_sotu();
    test_split();
    test_batches();
    test_packed_row();
    test_errors();
    test_alloc_failures();

    tw_tokenizer_free(llama);
    tw_tokenizer_free(qwen3);
    tw_tokenizer_free(llama31);
    tw_tokenizer_thread_cleanup();
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("test_data");
}

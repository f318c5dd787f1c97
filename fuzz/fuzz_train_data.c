// Fuzzes train/data.c: the input's first two bytes pick the tokenizer (the golden llama or
// qwen3 model's), the chat template family, the task and the length limits; the rest is read as
// a JSON Lines dataset. Checked, with abort() on violation: a failure is TW_ENOMEM or a message
// naming the input; a success holds examples within the limits, ids in the vocabulary, masks
// of 0 and 1, counts that add up, and batches (packed, then padded or DPO pairs) whose targets
// are the next ids of the same example, whose positions and starts agree, and whose trained
// tokens sum to the dataset's. Paths are relative to TWIN_SOURCE_DIR (default ".").
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "train/data.h"

static tw_tokenizer *toks[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *root = getenv("TWIN_SOURCE_DIR") ? getenv("TWIN_SOURCE_DIR") : ".";
    static const char *const names[2] = { "llama", "qwen3" };
    for (int i = 0; i < 2; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tests/golden/models/%s", root, names[i]);
        if (tw_tokenizer_load_dir(dir, &toks[i]) != 0) {
            fprintf(stderr, "fuzz_train_data: %s: %s\n", dir, tw_error_msg());
            exit(1);
        }
    }
    return 0;
}

static void check_batches(const struct tw_dataset *d, enum tw_batch_mode mode)
{
    struct tw_batcher b;
    if (tw_batcher_init(&b, d, NULL, tw_dataset_count(d), 2, d->longest + 3, mode) != 0)
        abort();
    tw_batcher_epoch(&b, 7, 1, true);
    const struct tw_batch *bt;
    int64_t trained = 0;
    size_t examples = 0, batches = 0;
    while (tw_batcher_next(&b, &bt)) {
        batches++;
        int64_t n = 0;
        for (int32_t r = 0; r < bt->rows; r++) {
            size_t row = (size_t)r * (size_t)bt->T;
            for (int32_t t = 0; t < bt->T; t++) {
                int32_t s = bt->start[row + t], tg = bt->targets[row + t];
                if (s < 0 || s > t || bt->pos[row + t] != t - s)
                    abort();
                if (tg != TW_DATA_IGNORE) {
                    if (t + 1 >= bt->T || bt->start[row + t + 1] != s ||
                        bt->ids[row + t + 1] != tg)
                        abort();
                    n++;
                }
            }
        }
        if (n != bt->n_trained)
            abort();
        trained += n;
        examples += (size_t)bt->n_examples;
    }
    if (trained != d->n_trained || examples != tw_dataset_count(d) ||
        batches != tw_batcher_count(&b))
        abort();
    tw_batcher_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const tw_tokenizer *tok = toks[data[0] & 1];
    struct tw_data_options o = {
        .task = (enum tw_data_task)((data[0] >> 1) % 4),
        .family = (enum tw_chat_family)((data[0] >> 3) % TW_CHAT_FAMILY_COUNT),
        .max_seq = 2 + data[1] % 64 * 8,
        .max_len = 2 + data[1] % 64 * 8,
        .max_prompt = data[1] >> 7 ? 1 : 0,
    };
    struct tw_dataset d;
    int rc = tw_dataset_load_buffer(&d, "fuzz.jsonl", data + 2, size - 2, tok, &o);
    if (rc != 0) {
        if (rc != TW_ENOMEM && strncmp(tw_error_msg(), "fuzz.jsonl", 10) != 0)
            abort();
        return 0;
    }
    bool dpo = d.format == TW_DATA_FORMAT_PREFERENCE;
    int32_t vocab = tw_tokenizer_vocab_size(tok);
    int32_t max_prompt = o.max_prompt ? o.max_prompt : o.max_len / 2;
    int64_t tokens = 0, trained = 0;
    if (tw_dataset_count(&d) == 0 || d.ids.len != d.mask.len)
        abort();
    for (size_t i = 0; i < tw_dataset_count(&d); i++) {
        const struct tw_data_example *e = tw_dataset_example(&d, i);
        int32_t n = e->len + e->len_chosen + e->len_rejected;
        if (e->len < 0 || e->len_chosen < 0 || e->len_rejected < 0 || e->off > d.ids.len ||
            (size_t)n > d.ids.len - e->off)
            abort();
        if (dpo ? e->len > max_prompt || e->len + e->len_chosen > o.max_len ||
                      e->len + e->len_rejected > o.max_len
                : e->len > o.max_seq || e->len_chosen || e->len_rejected)
            abort();
        const int32_t *ids = tw_dataset_ids(&d, e);
        const uint8_t *m = tw_dataset_mask(&d, e);
        for (int32_t j = 0; j < n; j++) {
            if (ids[j] < 0 || ids[j] >= vocab || m[j] > 1 || (dpo && m[j] != (j >= e->len)))
                abort();
        }
        if (dpo) {
            trained += e->len_chosen + e->len_rejected - (e->len == 0) * 2;
        } else {
            for (int32_t j = 1; j < e->len; j++)
                trained += m[j];
        }
        tokens += n;
    }
    if (tokens != d.n_tokens || trained != d.n_trained)
        abort();
    check_batches(&d, TW_BATCH_MODE_PACK);
    check_batches(&d, TW_BATCH_MODE_PAD);
    tw_dataset_free(&d);
    return 0;
}

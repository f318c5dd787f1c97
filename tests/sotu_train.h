// What the training tests share: the golden tiny llama (its tokenizer and rope) and the
// pretraining data, the first three State of the Union addresses (sotu.h) in a tokenizer as a
// dataset of 64-token examples.
#ifndef TW_TEST_SOTU_TRAIN_H
#define TW_TEST_SOTU_TRAIN_H

#include "check.h"
#include "model/model.h"
#include "sotu.h"
#include "train/data.h"

static inline struct tw_model *golden_llama(void)
{
    const char *root = test_source_dir();
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tests/golden/models/llama", root);
    struct tw_model *m;
    test_need_source(tw_model_open(dir, &m) == 0, dir);
    return m;
}

static inline void sotu_pretrain_data(struct tw_dataset *d, const tw_tokenizer *tok)
{
    char dir[4096], *names[300];
    size_t n = sotu_list(dir, sizeof dir, names, 300);
    REQUIRE(n >= 3);
    char *texts[3];
    for (int i = 0; i < 3; i++) {
        char p[8300];
        size_t len;
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        REQUIRE((texts[i] = test_read_file(p, &len)) != NULL);
    }
    struct tw_data_options o = { .task = TW_DATA_TASK_PRETRAIN, .max_seq = 64 };
    REQUIRE(tw_dataset_from_texts(d, (const char *const *)texts, 3, tok, &o) == 0);
    for (int i = 0; i < 3; i++)
        tw_free(texts[i]);
    for (size_t i = 0; i < n; i++)
        tw_free(names[i]);
}

#endif

// Fuzzes text/tokenizer's loader: tw_tokenizer_load_buffer on arbitrary bytes (a hostile
// tokenizer.json). When it loads, the pipeline it built (normalizers, pre-tokenizers, model,
// added tokens, post-processor, decoders) encodes a few fixed strings, and the ids decode;
// every id must be under the vocabulary size and every span inside the text.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/str.h"
#include "base/vec.h"
#include "text/tokenizer.h"

static const char *const texts[] = {
    "Hello, world! It's 2024.",
    "  leading and trailing spaces  \n\ttabs\r\n",
    "caf\xc3\xa9 na\xc3\xafve \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
    "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xe2\x80\x83\xcc\x81 1234567",
    "<s>[CLS] <|endoftext|> <unk> [SEP]</s>",
    "bad \xff\xfe utf-8 \xc3",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "",
};

static void exercise(const tw_tokenizer *t, const char *text, size_t len, int flags)
{
    tw_vec ids, spans;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&spans, sizeof(struct tw_span));
    if (tw_tokenizer_encode(t, text, len, flags, &ids, &spans) == 0) {
        if (spans.len != ids.len)
            abort();
        int32_t vocab = tw_tokenizer_vocab_size(t);
        for (size_t i = 0; i < ids.len; i++) {
            int32_t id = TW_VEC_AT(&ids, int32_t, i);
            const struct tw_span *sp = tw_vec_at(&spans, i);
            if (id < 0 || id >= vocab || sp->start > sp->end || sp->end > len)
                abort();
            tw_tokenizer_id_to_piece(t, id);
        }
        tw_str out;
        tw_str_init(&out);
        tw_tokenizer_decode(t, ids.data, ids.len, 0, &out);
        tw_str_clear(&out);
        tw_tokenizer_decode(t, ids.data, ids.len, TW_TOK_SKIP_SPECIAL, &out);
        tw_str_free(&out);
    }
    tw_vec_free(&ids);
    tw_vec_free(&spans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tw_tokenizer *t;
    if (tw_tokenizer_load_buffer("fuzz.json", (const char *)data, size, &t) != 0)
        return 0;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        exercise(t, texts[i], strlen(texts[i]), 0);
        exercise(t, texts[i], strlen(texts[i]), TW_TOK_ADD_SPECIAL);
    }
    // Ids the vocabulary may not have (gaps, out of range) must decode without harm.
    int32_t odd[] = { 0, 1, tw_tokenizer_vocab_size(t) - 1, tw_tokenizer_vocab_size(t), -1 };
    tw_str out;
    tw_str_init(&out);
    tw_tokenizer_decode(t, odd, sizeof odd / sizeof odd[0], 0, &out);
    tw_str_free(&out);
    tw_tokenizer_piece_to_id(t, "a", 1);
    tw_tokenizer_free(t);
    return 0;
}

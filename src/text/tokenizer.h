// Tokenizers with Hugging Face parity: a tw_tokenizer is built from a tokenizer.json (+ its
// tokenizer_config.json), from a WordPiece vocabulary, or from GGUF tokenizer.ggml.* values
// (and exported to them), and encodes UTF-8 text to ids (with byte offsets into the input)
// and decodes ids to text.
// Supported: models BPE (byte-level; SentencePiece-style with byte fallback) and WordPiece;
// the normalizers, pre-tokenizers, post-processors and decoders those use; added tokens.
#ifndef TW_TEXT_TOKENIZER_H
#define TW_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/str.h"
#include "base/vec.h"

typedef struct tw_tokenizer tw_tokenizer;

// A token's bytes in the text given to encode: [start, end).
struct tw_span {
    uint32_t start, end;
};

enum tw_tok_flags {
    TW_TOK_ADD_SPECIAL = 1,  // encode: apply the post-processor (BOS, [CLS] ... [SEP])
    TW_TOK_SKIP_SPECIAL = 2, // decode: leave special tokens out
};

// Loads tokenizer.json (config_path, the tokenizer_config.json, may be NULL). Errors name
// the file and the JSON path ("tokenizer.json: model.merges[12]: expected a string").
int tw_tokenizer_load(const char *json_path, const char *config_path, tw_tokenizer **out);
// The same from a tokenizer.json already in memory; `what` names it in errors.
int tw_tokenizer_load_buffer(const char *what, const char *buf, size_t len, tw_tokenizer **out);
// Loads DIR/tokenizer.json and DIR/tokenizer_config.json when present.
int tw_tokenizer_load_dir(const char *dir, tw_tokenizer **out);
// A BERT WordPiece tokenizer from a vocabulary (vocab.txt: one token per line, the line
// number is the id), with transformers' BertTokenizer defaults (lower case, strip accents,
// CJK characters split, [CLS] A [SEP]).
int tw_tokenizer_load_wordpiece_vocab(const char *vocab_path, tw_tokenizer **out);
void tw_tokenizer_free(tw_tokenizer *t);

// The tokenizer.ggml.* values of a GGUF file (ggml's docs/gguf.md); nothing is owned.
struct tw_tokenizer_vocab {
    // "gpt2" (byte-level BPE), "llama" (SentencePiece BPE) or "bert" (WordPiece, its tokens in
    // llama.cpp's "phantom space" spelling: "▁word" starts a word, "piece" continues one)
    const char *model;
    const char *pre; // tokenizer.ggml.pre: default, llama-bpe, qwen2, gpt-4o, ...; llama:
                     // default, or twin's metaspace-<always|first|never>[-split]
    size_t n_tokens;
    const char *const *tokens; // id -> token text (NUL-terminated)
    const float *scores;       // llama: piece scores (merges follow them); may be NULL
    const int32_t *types;      // 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
                               // 6 byte; NULL: all normal
    size_t n_merges;
    const char *const *merges;  // "left right" in rank order; gpt2: required; llama: optional
                                // (when absent, the merges follow the scores)
    int32_t bos, eos, unk, pad; // -1 when absent
    int32_t cls, sep;           // bert: [CLS], [SEP]; -1: found by name
    bool add_bos;               // tokenizer.ggml.add_bos_token
    bool add_space_prefix;      // llama: tokenizer.ggml.add_space_prefix
    bool cased;                 // bert: keep case and accents (uncased models lower-case)
    const char *chat_template;  // tokenizer.chat_template, or NULL
};
// Writes t as tokenizer.json and tokenizer_config.json (special tokens, chat template) into
// the folder dir, for transformers' PreTrainedTokenizerFast: the tokenizer.json that
// tw_tokenizer_from_vocab builds from t's exported vocabulary (so the same limits apply:
// TW_EUNSUPPORTED for what tw_tokenizer_export_vocab refuses). Each file is written
// atomically.
int tw_tokenizer_save(const tw_tokenizer *t, const char *dir);
// Builds the tokenizer those values describe (the same as the model's tokenizer.json).
int tw_tokenizer_from_vocab(const struct tw_tokenizer_vocab *v, tw_tokenizer **out);
// The reverse, for writing a GGUF file: fills *v from t, as llama.cpp's convert_hf_to_gguf.py
// writes a tokenizer. "gpt2" (byte-level BPE): tokens as the file spells them, merges in rank
// order, pre the pre-tokenizer's llama.cpp name (gpt-2, llama-bpe, qwen2, gpt-4o, smollm).
// "llama" (SentencePiece-style BPE): scores that rank pieces by their first merge, and the
// merges too (the scores cannot carry every order); pre "default" for the normalizers
// Prepend + Replace, or twin's "metaspace-<scheme>[-split]" for HF's Metaspace (llama.cpp
// ignores pre there). "bert": WordPiece in phantom-space spelling, cls and sep. Types: 3
// control (special added tokens), 4 user-defined (other added tokens), 2 unknown (the
// unk_token when it is a special added token), 6 byte (<0xXX>), 5 unused (an id no token
// has, spelled "[PAD<id>]"), 1 normal. add_bos: the post-processor adds one token before the
// text (bos is then that token, when tokenizer_config.json names none). Only what
// tw_tokenizer_from_vocab rebuilds into a tokenizer that encodes and decodes as t does is
// exported; anything else (a pre-tokenizer regex llama.cpp has no name for, added tokens that
// strip spaces, a post-processor that adds EOS, ...) is TW_EUNSUPPORTED, the message naming
// it. Every string and array is allocated in arena (the caller's; v is valid until the arena
// is freed or rewound); on failure *v is unchanged and the arena holds nothing new.
int tw_tokenizer_export_vocab(const tw_tokenizer *t, struct tw_tokenizer_vocab *v,
                              tw_arena *arena);

// Appends the ids of text[0, len) to ids (int32_t elements) and, when spans is not NULL, each
// token's byte span in text (struct tw_span elements; special tokens added by the
// post-processor get an empty span). Invalid UTF-8 is read as U+FFFD per maximal invalid
// sequence, as decoding the bytes with errors="replace" would before HF tokenizers.
int tw_tokenizer_encode(const tw_tokenizer *t, const char *text, size_t len, int flags,
                        tw_vec *ids, tw_vec *spans);
// Frees this thread's encoding workspace (buffers and the memo of encoded words that
// tw_tokenizer_encode keeps per thread); a thread's workspace is also freed when it exits.
void tw_tokenizer_thread_cleanup(void);
// Appends the text of ids to out.
int tw_tokenizer_decode(const tw_tokenizer *t, const int32_t *ids, size_t n, int flags,
                        tw_str *out);

// Incremental decoding, for a generation's text as its tokens come: each call appends to out
// the text that ids[0, n) add to what the earlier calls gave (ids extending their ids), by
// decoding only the tokens since the one before the last text given — the method of vLLM's
// detokenize_incrementally — rather than all n each time. Text that ends inside a character
// (a trailing U+FFFD) is held back until a later token completes it, unless final.
struct tw_detok {
    size_t prefix, read; // ids[prefix, read): the tokens of the last text given
    tw_str win;
};
void tw_detok_init(struct tw_detok *d);
void tw_detok_free(struct tw_detok *d);
int tw_tokenizer_decode_next(const tw_tokenizer *t, const int32_t *ids, size_t n, int flags,
                             bool final, struct tw_detok *d, tw_str *out);

// Vocabulary size: the largest id + 1, added tokens and the post-processor's special tokens
// included (every id encode gives is under it).
int32_t tw_tokenizer_vocab_size(const tw_tokenizer *t);
// The token's string as the vocabulary spells it, or NULL for an unknown id.
const char *tw_tokenizer_id_to_piece(const tw_tokenizer *t, int32_t id);
// The id of a vocabulary or added token, or -1.
int32_t tw_tokenizer_piece_to_id(const tw_tokenizer *t, const char *piece, size_t len);
// Special ids from tokenizer_config.json (bos_token, eos_token, pad_token, unk_token); -1
// when not set.
int32_t tw_tokenizer_bos(const tw_tokenizer *t);
int32_t tw_tokenizer_eos(const tw_tokenizer *t);
int32_t tw_tokenizer_pad(const tw_tokenizer *t);
// tokenizer_config.json's chat_template, or NULL.
const char *tw_tokenizer_chat_template(const tw_tokenizer *t);

#endif

// Training data: JSON Lines datasets (Alpaca instruction/output, chat messages, DPO preference
// triples, raw {"text"}) and lists of documents, rendered with a chat template, tokenised, given
// loss masks and truncated; a deterministic held-out split and per-epoch shuffles; and the
// batches the trainer consumes (packed or padded rows of T tokens with shifted targets,
// positions and per-token attention starts, or DPO chosen/rejected row pairs).
#ifndef TW_TRAIN_DATA_H
#define TW_TRAIN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/sha256.h"
#include "base/vec.h"
#include "text/chat.h"
#include "text/tokenizer.h"

// The target of a token that is not trained on (Hugging Face's ignore_index).
#define TW_DATA_IGNORE (-100)

// A file's format, detected from the keys of its first non-blank line.
enum tw_data_format {
    TW_DATA_FORMAT_TEXT,       // {"text": ...}, or documents given by the caller: pretraining
    TW_DATA_FORMAT_ALPACA,     // {"instruction", "input"?, "output"}: SFT
    TW_DATA_FORMAT_MESSAGES,   // {"messages": [{"role", "content"}, ...]}: SFT
    TW_DATA_FORMAT_PREFERENCE, // {"prompt", "chosen", "rejected"}: DPO
};

// What the caller trains, which decides the formats it accepts.
enum tw_data_task {
    TW_DATA_TASK_ANY,      // every format
    TW_DATA_TASK_PRETRAIN, // text
    TW_DATA_TASK_SFT,      // alpaca, messages
    TW_DATA_TASK_DPO,      // preference
};

struct tw_data_options {
    enum tw_data_task task;
    // The prompt format: the model's template family, or TW_CHAT_ALPACA for the reference's
    // Alpaca format (which gets the tokenizer's EOS id after each response).
    enum tw_chat_family family;
    int32_t max_seq;    // text and SFT: tokens per example (> 1)
    int32_t max_len;    // DPO: prompt + answer tokens (> 1)
    int32_t max_prompt; // DPO: prompt tokens (0 < max_prompt < max_len; 0: max_len / 2)
};

// One example's tokens in the dataset's ids and mask, from `off` on. Text and SFT: `len`
// tokens. DPO: the prompt's `len` tokens, then `len_chosen` tokens of the chosen answer, then
// `len_rejected` tokens of the rejected one (the answers' mask is 1, the prompt's 0).
struct tw_data_example {
    size_t off;
    int32_t len;
    int32_t len_chosen, len_rejected; // DPO only (0 otherwise)
    // The 1-based line it came from; text windows: the line of the document their first token
    // is in (documents given by the caller: that document's 1-based index).
    int64_t line;
};

// A loaded dataset; the caller owns the struct, tw_dataset_free releases what it holds.
struct tw_dataset {
    enum tw_data_format format;
    enum tw_chat_family family;
    uint8_t sha256[TW_SHA256_LEN]; // of the file's bytes (documents: each one + a NUL)
    char sha256_hex[2 * TW_SHA256_LEN + 1];
    tw_vec ids;          // int32_t: every example's tokens back to back
    tw_vec mask;         // uint8_t, parallel to ids: 1 on the tokens trained on
    tw_vec examples;     // struct tw_data_example, in file order
    int64_t n_tokens;    // the examples' tokens (DPO: prompt + chosen + rejected)
    int64_t n_trained;   // targets over all examples: tokens with mask 1 not first in their
                         // row (DPO: in both rows), what one epoch's batches count
    int64_t n_truncated; // examples cut to max_seq (DPO: to max_prompt or max_len)
    int64_t n_dropped;   // examples with nothing to train on after truncation, left out
    int64_t n_split;     // examples whose boundaries did not survive tokenising the whole
                         // text, tokenised piece by piece instead (see tw_dataset_load)
    int32_t longest;     // the most tokens one row needs (DPO: prompt + longer answer)
    int32_t pad_id;      // the tokenizer's pad, else its EOS, else 0
};

// Reads a JSON Lines file and builds the dataset with tokenizer tok and the options. Blank
// lines are skipped; every other line is one JSON object, and all are of the format of the
// first (TW_DATA_TASK_* says which formats are accepted).
//
// Rendering: an Alpaca line is the conversation [user: instruction (+ "\n\n" + input when that
// is non-empty), assistant: output]; a preference line's prompt is [user: prompt] or a messages
// array, and each answer a string or an array of one assistant message. The conversation is
// rendered with opt->family (tw_chat_render; the tokenizer's BOS text where the template writes
// it, as tw_chat_encode does) and tokenised without the post-processor; for TW_CHAT_ALPACA the
// post-processor's leading BOS (Llama's <|begin_of_text|>; none for Qwen) goes first and the
// tokenizer's EOS id after the response, as the reference's trainer tokenises "text + EOS".
//
// Masks: 1 on each assistant turn's tokens from the end of its generation prompt through the
// template's end-of-turn marker (<|eot_id|>, <|im_end|>, <end_of_turn>, <|end|>, </s>) or the
// EOS id (alpaca); 0 on everything else (system, user, markup, the newline after a marker).
// The turn's text bounds come from rendering the conversation before it with the generation
// prompt, which must be a prefix of the whole rendering. The token bounds come from tokenising
// the text up to each bound: when those ids are a prefix of the whole text's ids the whole
// text's ids are used; otherwise (a merge across a bound) every piece between bounds is
// tokenised on its own and the pieces concatenated, and the example counts in n_split.
// Pretraining text: each document is [BOS of the post-processor] + its tokens + [EOS], all
// trained, the documents back to back and cut into windows of max_seq tokens (the last partial
// window kept unless it holds a single token).
//
// Truncation: SFT examples keep their first max_seq tokens. DPO prompts keep their last
// max_prompt tokens (left truncation, as TRL's; a leading BOS is kept in front of them), then
// each answer its first max_len - prompt tokens. An example left with nothing to train on is
// dropped (n_dropped).
//
// Returns 0, filling *d (which the caller frees with tw_dataset_free). Errors name the file and
// the 1-based line: TW_EFORMAT "data.jsonl:17: \"output\" is not a string (got an integer)",
// invalid JSON, a missing field, mixed formats, an unknown format, a file with no examples;
// TW_EINVAL for bad options or a conversation the template refuses (the line named too);
// TW_EUNSUPPORTED when the template renders the turns before an answer differently inside the
// whole conversation (so the answer's bounds are unknown);
// TW_ENOENT / TW_EIO for the file; TW_ENOMEM. On failure *d is untouched.
int tw_dataset_load(struct tw_dataset *d, const char *path, const tw_tokenizer *tok,
                    const struct tw_data_options *opt);

// The same over len bytes at buf; `what` names the input in errors (as the path does).
int tw_dataset_load_buffer(struct tw_dataset *d, const char *what, const void *buf, size_t len,
                           const tw_tokenizer *tok, const struct tw_data_options *opt);

// A pretraining dataset of n documents (NUL-terminated UTF-8, borrowed for the call), as the
// {"text"} format is built; empty documents are skipped. Returns 0, TW_EINVAL for bad options,
// TW_EFORMAT when no document has text, TW_ENOMEM; on failure *d is untouched.
int tw_dataset_from_texts(struct tw_dataset *d, const char *const *docs, size_t n,
                          const tw_tokenizer *tok, const struct tw_data_options *opt);

void tw_dataset_free(struct tw_dataset *d);

// Examples held, and example i (i < count), with its ids and mask (valid until the dataset is
// freed).
size_t tw_dataset_count(const struct tw_dataset *d);
const struct tw_data_example *tw_dataset_example(const struct tw_dataset *d, size_t i);
const int32_t *tw_dataset_ids(const struct tw_dataset *d, const struct tw_data_example *e);
const uint8_t *tw_dataset_mask(const struct tw_dataset *d, const struct tw_data_example *e);

// The format's name: "text", "alpaca", "messages", "preference".
const char *tw_data_format_name(enum tw_data_format f);

// ---- split and shuffle ------------------------------------------------------------------

// A held-out split of example indices 0..n-1: the eval set is the first round(eval_frac * n)
// of a permutation drawn from seed (xoshiro256** seeded by splitmix64: the same on every
// machine), the training set the rest; each list is in increasing order. The caller owns it.
struct tw_data_split {
    size_t *train, *eval;
    size_t n_train, n_eval;
};

// Returns 0; TW_EINVAL when eval_frac is not in [0, 1]; TW_ENOMEM (*s untouched on failure).
int tw_data_split_init(struct tw_data_split *s, size_t n, double eval_frac, uint64_t seed);
void tw_data_split_free(struct tw_data_split *s);

// Shuffles idx[0..n) in place with a permutation drawn from seed (Fisher-Yates, as above).
void tw_data_shuffle(size_t *idx, size_t n, uint64_t seed);

// ---- batches ----------------------------------------------------------------------------

enum tw_batch_mode {
    TW_BATCH_MODE_PACK, // examples one after another in a row; one that does not fit the rest
                        // of a row opens the next; the tail of a row is padding
    TW_BATCH_MODE_PAD,  // one example a row, the rest padding
};

// One batch of `rows` rows of T tokens, each array (rows, T), row-major. For a token at t of
// a row: ids[t]; targets[t] = ids[t + 1] when that token is trained on and belongs to the same
// example, else TW_DATA_IGNORE; pos[t] its position in its example (from 0); start[t] the
// offset in the row of its example's first token (attention of t is over [start[t], t]).
// Padding: the pad id, TW_DATA_IGNORE, pos 0, start = t. DPO: rows = 2 * pairs, row i holding
// prompt + chosen answer of pair i and row pairs + i prompt + rejected answer of the same pair
// (rows of pairs missing from a short last batch are all padding).
struct tw_batch {
    int32_t rows, T;
    int32_t pairs; // DPO: pairs per batch (B); 0 otherwise
    int32_t *ids, *targets, *pos, *start;
    int64_t n_trained;  // targets that are not TW_DATA_IGNORE (the loss's normaliser)
    int32_t n_examples; // examples (DPO: pairs) in this batch
    size_t index;       // the batch's index in the epoch
};

// Batches over some examples of a dataset; the caller owns the struct.
struct tw_batcher {
    const struct tw_dataset *d;
    enum tw_batch_mode mode;
    int32_t B, T;
    size_t *pool; // the example indices batched (a copy)
    size_t n_pool;
    size_t *order;     // this epoch's order of pool's examples
    size_t *row_first; // text and SFT: row r holds order[row_first[r] .. row_first[r + 1])
    size_t n_rows, n_batches, next;
    struct tw_batch batch;
};

// Prepares batches of B rows (DPO: B pairs, 2 * B rows) of T tokens over the examples idx[0..n)
// of d (idx NULL: all of them, in order), planned for one epoch in the order given (what an
// evaluation wants; tw_batcher_epoch shuffles). mode is ignored for DPO (one pair per row pair).
// Returns 0; TW_EINVAL for B < 1, T < 2, an index out of range, or an example longer than T
// (its line named); TW_EOVERFLOW; TW_ENOMEM. On failure *b holds nothing to free.
int tw_batcher_init(struct tw_batcher *b, const struct tw_dataset *d, const size_t *idx, size_t n,
                    int32_t B, int32_t T, enum tw_batch_mode mode);
void tw_batcher_free(struct tw_batcher *b);

// Plans epoch `epoch`: the examples in an order drawn from seed + epoch (shuffle) or as given
// at init (no shuffle), then packed into rows. Rewinds to the epoch's first batch.
void tw_batcher_epoch(struct tw_batcher *b, uint64_t seed, int64_t epoch, bool shuffle);

// Batches in the planned epoch (the last may be short: its missing rows are padding).
size_t tw_batcher_count(const struct tw_batcher *b);

// Fills the next batch of the epoch and points *out at it (owned by b, valid until the next
// call); false when the epoch is over.
bool tw_batcher_next(struct tw_batcher *b, const struct tw_batch **out);

// Makes batch i the next one (resuming an epoch from a checkpoint); i >= count ends the epoch.
void tw_batcher_seek(struct tw_batcher *b, size_t i);

#endif

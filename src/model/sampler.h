// Token sampling for generation (llama.cpp's sampler chain, transformers' logits processors):
// repetition / frequency / presence penalties over the recent tokens, greedy or top-k,
// temperature, softmax, top-p, min-p and a draw from a seeded xoshiro256**; the stop-string
// matcher for streamed text; the end-of-generation test. Nothing is allocated per token
// after init (the stopper grows its buffer only for a piece longer than any before).
#ifndef TW_MODEL_SAMPLER_H
#define TW_MODEL_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/map.h"

// ---- the generator: xoshiro256** (Blackman and Vigna, 2018) seeded through splitmix64

struct tw_rng {
    uint64_t s[4];
};

// Fills the state with four successive splitmix64 outputs from `seed` (the seeding the
// xoshiro authors recommend; a zero state cannot come out of it).
void tw_rng_seed(struct tw_rng *r, uint64_t seed);
// The next 64 bits.
uint64_t tw_rng_next(struct tw_rng *r);
// A double in [0, 1) from the top 53 bits of the next output.
double tw_rng_uniform(struct tw_rng *r);

// ---- the sampler

struct tw_sampler_params {
    float temperature;        // 0: greedy (argmax, ties to the lowest id); > 0 divides logits
    int32_t top_k;            // keep the k largest logits (ties to the lowest id); 0: off
    float top_p;              // keep the smallest set with cumulative p >= top_p; 1: off
    float min_p;              // keep tokens with p >= min_p * p_max; 0: off
    float repetition_penalty; // transformers' rule: logit > 0 ? logit / r : logit * r; 1: off
    float frequency_penalty;  // OpenAI's rule: logit -= count * frequency_penalty
    float presence_penalty;   //                          + (count > 0) * presence_penalty
    int32_t penalty_last_n;   // penalties count the last n accepted tokens; -1: all; 0: off
    uint64_t seed;            // the generator's seed: the same seed, the same tokens
};

// The defaults (llama.cpp's, except that the seed is fixed, not random): temperature 0.8,
// top_k 40, top_p 0.95, min_p 0.05, repetition_penalty 1, frequency and presence 0,
// penalty_last_n 64, seed 0.
void tw_sampler_params_default(struct tw_sampler_params *p);

// One token with its logit (after the penalties) and its probability among those kept.
struct tw_sampler_candidate {
    int32_t id;
    float logit;
    float p;
};

// Owned by the caller; the fields are private.
struct tw_sampler {
    struct tw_sampler_params params;
    int32_t n_vocab;
    struct tw_rng rng;
    struct tw_sampler_candidate *cand; // n_vocab: the workspace of one sample
    // Penalty state, allocated only when a penalty is on and penalty_last_n != 0.
    int32_t *count; // n_vocab: occurrences of each id in the window
    int32_t *slot;  // n_vocab: index of the id in `seen`, or -1
    int32_t *seen;  // the distinct ids with count > 0 (n_seen of them)
    int32_t n_seen;
    int32_t *ring;     // penalty_last_n > 0: the window, oldest at ring_head
    int32_t ring_len;  // tokens in the window
    int32_t ring_head; // index of the oldest token
};

// Checks the parameters (temperature >= 0, top_k >= 0, top_p and min_p in [0, 1],
// repetition_penalty > 0, all finite, penalty_last_n >= -1 and at most 2^24) and allocates
// the workspaces for a vocabulary of n_vocab ids. TW_EINVAL or TW_ENOMEM on failure (nothing
// is left allocated).
int tw_sampler_init(struct tw_sampler *s, const struct tw_sampler_params *p, int32_t n_vocab);
void tw_sampler_free(struct tw_sampler *s);
// Forgets the accepted tokens and reseeds the generator: the sampler behaves as a new one.
void tw_sampler_reset(struct tw_sampler *s);

// Adds a token to the history the penalties count (feed the prompt's tokens, then each
// generated one: tw_sampler_sample does not do it). TW_EINVAL for an id outside the vocabulary.
int tw_sampler_accept(struct tw_sampler *s, int32_t token);

// Applies the penalties to logits[0, n_vocab) in place: for each id seen count > 0 times in
// the window, first the repetition penalty, then logit -= count * frequency + presence.
void tw_sampler_apply_penalties(const struct tw_sampler *s, float *logits);

// Runs the chain up to the draw: penalties, then greedy (one candidate) or top-k,
// temperature, softmax, top-p, min-p, and renormalisation over what is left. logits are
// modified in place (penalties applied; NaN replaced by -inf). -inf logits are never kept;
// when some logits are +inf they share all the probability; tokens whose weight underflows
// to 0 are left out. *out points into the sampler (valid until its next call) at *n
// candidates, their p summing to 1, in no set order (heaviest first when top-p cut them).
// TW_EINVAL when every logit is -inf or NaN.
int tw_sampler_candidates(struct tw_sampler *s, float *logits,
                          const struct tw_sampler_candidate **out, size_t *n);

// Picks the next token: tw_sampler_candidates, then a draw from the kept distribution that
// consumes exactly one output of the generator (greedy consumes none). Returns the id, or
// TW_EINVAL (negative) when every logit is -inf or NaN.
int32_t tw_sampler_sample(struct tw_sampler *s, float *logits);

// How many of the row's largest logits tw_sampler_sample_top needs to give exactly
// tw_sampler_sample's token: 1 + n_seen for greedy, top_k + n_seen for top-k (n_seen: the
// distinct ids the penalties touch now), at most n_vocab; 0 when no such bound holds or it
// passes TW_TOPK_MAX (tensor/backend.h): top_k off, or a penalty that can raise a logit
// (repetition_penalty < 1, frequency or presence penalty < 0). Why it is exact: a penalty only
// lowers logits, so a token with top_n tokens above it (by logit, ties to the lower id) still
// has top_k unpenalised ones above it afterwards, and top-k cannot keep it. Changes with
// every tw_sampler_accept.
int32_t tw_sampler_top_n(const struct tw_sampler *s);

// tw_sampler_sample from the n largest logits of the row, before the penalties, in the order
// tw_topk gives them (vals (n) descending, ties by ascending ids (n), NaN as -inf), where
// 0 < tw_sampler_top_n(s) <= n: the same token (or TW_EINVAL), the generator advanced the same
// way, so a seeded stream does not depend on which of the two produced it.
int32_t tw_sampler_sample_top(struct tw_sampler *s, const float *vals, const int32_t *ids,
                              int32_t n);

// Whether tok is one of the end-of-generation ids (eos, eot, <|im_end|>, ... as the caller
// gathered them from the tokenizer's configuration).
bool tw_sampler_is_eog(const int32_t *eog_ids, size_t n, int32_t tok);

// ---- stop strings for streamed text

// Feed each generated token's text; the stopper says which bytes are safe to show now. It
// holds back the longest tail that could begin a stop string, and a UTF-8 sequence cut at the
// end, until a later piece settles them. When a stop string completes, the text before it is
// released and the stop string itself is not; of several matches, the one that ends first
// wins (then the longest), so the result does not depend on how the text was cut in pieces.
struct tw_stopper {
    char **stops; // n_stops copies, owned
    size_t *lens;
    size_t n_stops;
    char *buf; // held bytes at [held_off, held_off + held_len); cap bytes
    size_t cap;
    size_t held_off, held_len;
    bool stopped;
    int32_t which;
};

// What one feed released: text[0, len) to show (pointing into the stopper, valid until its
// next call); stopped when stop string number `stop` (an index into stops) completed, after
// which nothing more is released until tw_stopper_reset.
struct tw_stop_out {
    const char *text;
    size_t len;
    bool stopped;
    int32_t stop; // -1 when not stopped
};

// Copies the n_stops stop strings (NUL-terminated, not empty; stops may be NULL when n_stops
// is 0). TW_EINVAL for an empty one, TW_ENOMEM; nothing is left allocated on failure.
int tw_stopper_init(struct tw_stopper *st, const char *const *stops, size_t n_stops);
void tw_stopper_free(struct tw_stopper *st);
// Drops the held bytes and the stopped state, for a new generation with the same stops.
void tw_stopper_reset(struct tw_stopper *st);
// Adds piece[0, len) to the text and sets *out. TW_ENOMEM when the buffer cannot grow for a
// long piece (the stopper is then as it was).
int tw_stopper_feed(struct tw_stopper *st, const char *piece, size_t len, struct tw_stop_out *out);
// At the end of generation (an end-of-generation token, the length limit): releases the held
// bytes (none after a stop).
void tw_stopper_flush(struct tw_stopper *st, struct tw_stop_out *out);

#endif

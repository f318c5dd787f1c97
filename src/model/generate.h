// Text generation: a prompt's tokens through a context (reusing its cached prefix), then
// sampled tokens one at a time, detokenised incrementally and streamed to a callback, until
// an end-of-generation token, a stop string, the token limit or the callback says stop.
#ifndef TW_MODEL_GENERATE_H
#define TW_MODEL_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/context.h"
#include "model/model.h"
#include "base/str.h"
#include "base/vec.h"
#include "model/sampler.h"
#include "text/chat.h"

struct tw_gen_params {
    struct tw_sampler_params sampling;
    int32_t max_tokens;       // generated tokens at most (<= 0: until the context is full)
    const char *const *stops; // stop strings (not shown)
    size_t n_stops;
    bool ignore_eos; // keep going past end-of-generation tokens
};

enum tw_finish { TW_FINISH_EOS, TW_FINISH_STOP, TW_FINISH_LENGTH, TW_FINISH_CANCEL };

struct tw_gen_result {
    int32_t n_prompt, n_reused, n_gen;
    double prompt_s, gen_s; // seconds in prefill and in the token loop
    enum tw_finish finish;
    int32_t *tokens; // the n_gen generated ids (owned: tw_gen_result_free)
};

// Called with each piece of text that is safe to show; return non-zero to stop (the result's
// finish is then TW_FINISH_CANCEL).
typedef int (*tw_gen_fn)(void *arg, const char *text, size_t len);

// The ids of a conversation rendered with family f's chat template (the assistant's turn
// opened) and the model's BOS text, appended to ids (int32_t): what a chat turn feeds the
// model. Returns 0 or the renderer's or tokenizer's error.
int tw_chat_encode(const struct tw_model *m, enum tw_chat_family f, const struct tw_chat_msg *msgs,
                   size_t n, tw_vec *ids);

// One generation's state, stepped by the caller: tw_generate's loop, and one slot of the
// server's scheduler, which runs many in one batch.
struct tw_gen_state {
    const struct tw_model *m;
    struct tw_sampler s;
    struct tw_stopper stop;
    tw_vec gen; // int32_t: the generated ids
    tw_str text;
    struct tw_detok detok; // the text given so far (text: each step's new part)
    int32_t limit;
    bool ignore_eos, done;
    bool pending;          // the last token's text has yet to go out (tw_gen_flush)
    enum tw_finish finish; // once done
    tw_gen_fn fn;
    void *arg;
};

// Starts a generation after prompt[0..n) (which the sampler's penalties count); the caller
// runs the prompt through its context. Returns 0 or an error (nothing to free).
int tw_gen_begin(struct tw_gen_state *g, const struct tw_model *m, const int32_t *prompt,
                 int32_t n, const struct tw_gen_params *p, tw_gen_fn fn, void *arg);
// Given the logits after the last token (modified: penalties) and whether the context has
// room for one more token: samples the next one and streams its text. Either *done is false
// and *tok is the token for the caller to decode before the next step, or *done is true and
// g->finish says why (the text held back has gone out). Returns 0 or an error.
int tw_gen_step(struct tw_gen_state *g, float *logits, bool room, int32_t *tok, bool *done);
// tw_gen_step from the n largest logits of the row and their ids (tw_ctx_top), where
// 0 < tw_sampler_top_n(&g->s) <= n: the same token as from the whole row.
int tw_gen_step_top(struct tw_gen_state *g, const float *vals, const int32_t *ids, int32_t n,
                    bool room, int32_t *tok, bool *done);
// The two halves of a step, for a caller that overlaps streaming with the next forward pass
// (the server's scheduler): tw_gen_sample and tw_gen_sample_top draw the token as the two
// above do, but leave its text to tw_gen_flush (called before the next draw), unless the
// generation ended with it. tw_gen_flush streams it; a stop string or the callback may end
// the generation there (*done), the token handed out by the draw then going unused.
int tw_gen_sample(struct tw_gen_state *g, float *logits, bool room, int32_t *tok, bool *done);
int tw_gen_sample_top(struct tw_gen_state *g, const float *vals, const int32_t *ids, int32_t n,
                      bool room, int32_t *tok, bool *done);
int tw_gen_flush(struct tw_gen_state *g, bool *done);
// tw_gen_step for row `row` of context c's last step, whose logits stayed on the GPU
// (tw_ctx_keep_logits): its top when the sampler can use one (vals, ids: room for the step's
// rows x TW_TOPK_MAX), else the rows copied into logits (rows x n_vocab).
int tw_gen_sample_device(struct tw_gen_state *g, tw_ctx *c, int32_t row, float *logits,
                         float *vals, int32_t *ids, bool room, int32_t *tok, bool *done);
// Ends a generation early (finish TW_FINISH_CANCEL; no more text goes out).
int tw_gen_cancel(struct tw_gen_state *g);
void tw_gen_free(struct tw_gen_state *g);

// Runs the generation; prompt tokens go through tw_ctx_prefill. Returns 0 (result filled) or
// an error (TW_ELIMIT when the prompt does not fit the context).
int tw_generate(tw_ctx *c, const struct tw_model *m, const int32_t *prompt, int32_t n,
                const struct tw_gen_params *p, tw_gen_fn fn, void *arg, struct tw_gen_result *res);
void tw_gen_result_free(struct tw_gen_result *res);
const char *tw_finish_name(enum tw_finish f);

#endif

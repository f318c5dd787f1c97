// The generation loop: prefill, then sample -> decode one token at a time. Text streams out
// as the difference between successive decodings of everything generated so far (so that
// pieces which only make sense together — byte tokens of one character, SentencePiece's
// leading spaces — come out right), held back while it ends in U+FFFD (an incomplete
// character), and through the stop-string matcher.
#include "model/generate.h"

#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *tw_finish_name(enum tw_finish f)
{
    switch (f) {
    case TW_FINISH_EOS:
        return "stop";
    case TW_FINISH_STOP:
        return "stop";
    case TW_FINISH_LENGTH:
        return "length";
    case TW_FINISH_CANCEL:
        return "cancelled";
    }
    return "?";
}

void tw_gen_result_free(struct tw_gen_result *res)
{
    tw_free(res->tokens);
    res->tokens = NULL;
}

// Feeds the new text (decoded incrementally) to the stopper and the callback. *done when a
// stop string completed or the callback asked to stop.
static int emit(struct tw_gen_state *L, bool final, enum tw_finish *done)
{
    tw_str_clear(&L->text);
    int rc = tw_tokenizer_decode_next(L->m->tok, L->gen.data, L->gen.len, TW_TOK_SKIP_SPECIAL,
                                      final, &L->detok, &L->text);
    if (rc != 0)
        return rc;
    struct tw_stop_out out = { 0 };
    if (L->text.v.len > 0) {
        rc = tw_stopper_feed(&L->stop, (const char *)L->text.v.data, L->text.v.len, &out);
        if (rc != 0)
            return rc;
        if (out.len && L->fn && L->fn(L->arg, out.text, out.len) != 0)
            *done = TW_FINISH_CANCEL;
        if (out.stopped)
            *done = TW_FINISH_STOP;
    }
    if (final && !out.stopped) {
        tw_stopper_flush(&L->stop, &out);
        if (out.len && L->fn)
            L->fn(L->arg, out.text, out.len);
    }
    return 0;
}

int tw_chat_encode(const struct tw_model *m, enum tw_chat_family f, const struct tw_chat_msg *msgs,
                   size_t n, tw_vec *ids)
{
    int32_t bos = tw_tokenizer_bos(m->tok);
    tw_str text;
    tw_str_init(&text);
    int rc = tw_chat_render(f, msgs, n, 1, bos >= 0 ? tw_tokenizer_id_to_piece(m->tok, bos) : NULL,
                            &text);
    if (rc == 0)
        rc = tw_tokenizer_encode(m->tok, tw_str_cstr(&text), text.v.len, 0, ids, NULL);
    tw_str_free(&text);
    return rc;
}

int tw_gen_begin(struct tw_gen_state *g, const struct tw_model *m, const int32_t *prompt,
                 int32_t n, const struct tw_gen_params *p, tw_gen_fn fn, void *arg)
{
    memset(g, 0, sizeof *g);
    if (!m->tok)
        return tw_error_set(TW_EINVAL, "%s: the model has no tokenizer", m->path);
    g->m = m;
    g->fn = fn;
    g->arg = arg;
    g->ignore_eos = p->ignore_eos;
    g->limit = p->max_tokens > 0 ? p->max_tokens : INT32_MAX;
    tw_vec_init(&g->gen, sizeof(int32_t));
    tw_str_init(&g->text);
    tw_detok_init(&g->detok);
    int rc = tw_sampler_init(&g->s, &p->sampling, m->cfg.n_vocab);
    if (rc != 0)
        return rc;
    if ((rc = tw_stopper_init(&g->stop, p->stops, p->n_stops)) != 0) {
        tw_sampler_free(&g->s);
        return rc;
    }
    for (int32_t i = 0; rc == 0 && i < n; i++)
        rc = tw_sampler_accept(&g->s, prompt[i]);
    if (rc != 0)
        tw_gen_free(g);
    return rc;
}

// The generation is over: the text held back goes out unless a stop string or the callback
// ended it.
static int finish(struct tw_gen_state *g, enum tw_finish f, bool *done)
{
    g->finish = f;
    g->done = *done = true;
    enum tw_finish ignored = TW_FINISH_LENGTH;
    return f == TW_FINISH_STOP || f == TW_FINISH_CANCEL ? 0 : emit(g, true, &ignored);
}

// The checks before a token is drawn: 1 when one is to be drawn, else 0 (*done set) or an
// error.
static int step_begin(struct tw_gen_state *g, bool room, bool *done)
{
    *done = false;
    if (g->done) {
        *done = true;
        return 0;
    }
    if ((int32_t)g->gen.len >= g->limit || !room) {
        int rc = finish(g, TW_FINISH_LENGTH, done);
        return rc < 0 ? rc : 0;
    }
    return 1;
}

// Takes the drawn token t (or a sampler error): end of generation, or it is kept, counted
// by the penalties, and handed back in *tok; its text goes out now (the last token's) or at
// tw_gen_flush (g->pending).
static int step_end(struct tw_gen_state *g, int32_t t, int32_t *tok, bool *done)
{
    if (t < 0)
        return t;
    if (!g->ignore_eos && tw_model_is_eog(g->m, t))
        return finish(g, TW_FINISH_EOS, done);
    int rc = tw_vec_push(&g->gen, &t);
    if (rc == 0)
        rc = tw_sampler_accept(&g->s, t);
    if (rc != 0)
        return rc;
    *tok = t;
    g->pending = true;
    if ((int32_t)g->gen.len < g->limit)
        return 0;
    if ((rc = tw_gen_flush(g, done)) != 0 || *done)
        return rc;
    return finish(g, TW_FINISH_LENGTH, done);
}

int tw_gen_flush(struct tw_gen_state *g, bool *done)
{
    *done = g->done;
    if (!g->pending || g->done)
        return 0;
    g->pending = false;
    enum tw_finish stop = TW_FINISH_LENGTH;
    int rc = emit(g, false, &stop);
    if (rc != 0)
        return rc;
    return stop != TW_FINISH_LENGTH ? finish(g, stop, done) : 0;
}

int tw_gen_sample(struct tw_gen_state *g, float *logits, bool room, int32_t *tok, bool *done)
{
    int rc = step_begin(g, room, done);
    return rc <= 0 ? rc : step_end(g, tw_sampler_sample(&g->s, logits), tok, done);
}

int tw_gen_sample_top(struct tw_gen_state *g, const float *vals, const int32_t *ids, int32_t n,
                      bool room, int32_t *tok, bool *done)
{
    int rc = step_begin(g, room, done);
    return rc <= 0 ? rc : step_end(g, tw_sampler_sample_top(&g->s, vals, ids, n), tok, done);
}

int tw_gen_step(struct tw_gen_state *g, float *logits, bool room, int32_t *tok, bool *done)
{
    int rc = tw_gen_sample(g, logits, room, tok, done);
    return rc != 0 || *done ? rc : tw_gen_flush(g, done);
}

int tw_gen_step_top(struct tw_gen_state *g, const float *vals, const int32_t *ids, int32_t n,
                    bool room, int32_t *tok, bool *done)
{
    int rc = tw_gen_sample_top(g, vals, ids, n, room, tok, done);
    return rc != 0 || *done ? rc : tw_gen_flush(g, done);
}

int tw_gen_sample_device(struct tw_gen_state *g, tw_ctx *c, int32_t row, float *logits,
                         float *vals, int32_t *ids, bool room, int32_t *tok, bool *done)
{
    int32_t k = tw_sampler_top_n(&g->s);
    int rc;
    if (k > 0) {
        if ((rc = tw_ctx_top(c, k, vals, ids)) != 0)
            return rc;
        return tw_gen_step_top(g, vals + (size_t)row * (size_t)k, ids + (size_t)row * (size_t)k, k,
                               room, tok, done);
    }
    if ((rc = tw_ctx_logits(c, logits)) != 0)
        return rc;
    return tw_gen_step(g, logits + (size_t)row * (size_t)g->m->cfg.n_vocab, room, tok, done);
}

int tw_gen_cancel(struct tw_gen_state *g)
{
    bool done;
    return g->done ? 0 : finish(g, TW_FINISH_CANCEL, &done);
}

void tw_gen_free(struct tw_gen_state *g)
{
    if (!g->m)
        return;
    tw_vec_free(&g->gen);
    tw_str_free(&g->text);
    tw_detok_free(&g->detok);
    tw_stopper_free(&g->stop);
    tw_sampler_free(&g->s);
    g->m = NULL;
}

int tw_generate(tw_ctx *c, const struct tw_model *m, const int32_t *prompt, int32_t n,
                const struct tw_gen_params *p, tw_gen_fn fn, void *arg, struct tw_gen_result *res)
{
    memset(res, 0, sizeof *res);
    struct tw_gen_state g;
    int rc = tw_gen_begin(&g, m, prompt, n, p, fn, arg);
    if (rc != 0)
        return rc;
    float *logits = tw_malloc_array((size_t)m->cfg.n_vocab, sizeof(float));
    if (!logits) {
        tw_gen_free(&g);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    // On a GPU the logits stay there: the sampler reads each row's top (or the row).
    bool dev = tw_ctx_logits_on_device(c);
    float vals[TW_TOPK_MAX];
    int32_t ids[TW_TOPK_MAX];
    tw_ctx_keep_logits(c, dev);
    double t0 = now();
    rc = tw_ctx_prefill(c, prompt, n, logits, &res->n_reused);
    res->n_prompt = n;
    res->prompt_s = now() - t0;
    t0 = now();
    bool done = false;
    while (rc == 0 && !done) {
        int32_t tok;
        bool room = tw_ctx_n_past(c) < tw_ctx_n_ctx(c);
        rc = dev ? tw_gen_sample_device(&g, c, 0, logits, vals, ids, room, &tok, &done)
                 : tw_gen_step(&g, logits, room, &tok, &done);
        if (rc == 0 && !done)
            rc = tw_ctx_decode(c, &tok, 1, logits, false);
    }
    tw_ctx_keep_logits(c, false);
    res->gen_s = now() - t0;
    res->finish = g.finish;
    res->n_gen = (int32_t)g.gen.len;
    if (rc == 0) {
        res->tokens = g.gen.data; // ownership passes to the result
        g.gen.data = NULL;
        g.gen.len = g.gen.cap = 0;
    }
    tw_gen_free(&g);
    tw_free(logits);
    return rc;
}

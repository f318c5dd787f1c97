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

static bool ends_incomplete(const tw_str *s)
{
    const char *d = s->v.data;
    return s->v.len >= 3 && memcmp(d + s->v.len - 3, "\xEF\xBF\xBD", 3) == 0;
}

struct loop {
    tw_vec gen; // int32_t
    tw_str text;
    size_t shown; // bytes of text passed to the stopper
    struct tw_stopper stop;
    tw_gen_fn fn;
    void *arg;
};

// Feeds the new text to the stopper and the callback. *done when a stop string completed or
// the callback asked to stop.
static int emit(struct loop *L, const struct tw_model *m, bool final, enum tw_finish *done)
{
    tw_str_clear(&L->text);
    int rc = tw_tokenizer_decode(m->tok, L->gen.data, L->gen.len, TW_TOK_SKIP_SPECIAL, &L->text);
    if (rc != 0)
        return rc;
    struct tw_stop_out out = { 0 };
    if (L->text.v.len > L->shown && (final || !ends_incomplete(&L->text))) {
        rc = tw_stopper_feed(&L->stop, (const char *)L->text.v.data + L->shown,
                             L->text.v.len - L->shown, &out);
        if (rc != 0)
            return rc;
        L->shown = L->text.v.len;
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

int tw_generate(tw_ctx *c, const struct tw_model *m, const int32_t *prompt, int32_t n,
                const struct tw_gen_params *p, tw_gen_fn fn, void *arg, struct tw_gen_result *res)
{
    memset(res, 0, sizeof *res);
    if (!m->tok)
        return tw_error_set(TW_EINVAL, "%s: the model has no tokenizer", m->path);
    int32_t V = m->cfg.n_vocab;
    float *logits = tw_malloc_array((size_t)V, sizeof(float));
    struct tw_sampler s;
    struct loop L = { .fn = fn, .arg = arg };
    tw_vec_init(&L.gen, sizeof(int32_t));
    tw_str_init(&L.text);
    bool have_s = false, have_stop = false;
    int rc = logits ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    if (rc == 0 && (rc = tw_sampler_init(&s, &p->sampling, V)) == 0)
        have_s = true;
    if (rc == 0 && (rc = tw_stopper_init(&L.stop, p->stops, p->n_stops)) == 0)
        have_stop = true;
    for (int32_t i = 0; rc == 0 && i < n; i++)
        rc = tw_sampler_accept(&s, prompt[i]);
    double t0 = now();
    if (rc == 0)
        rc = tw_ctx_prefill(c, prompt, n, logits, &res->n_reused);
    res->n_prompt = n;
    res->prompt_s = now() - t0;
    t0 = now();
    enum tw_finish done = TW_FINISH_LENGTH;
    int32_t limit = p->max_tokens > 0 ? p->max_tokens : INT32_MAX;
    bool running = rc == 0;
    while (running) {
        if ((int32_t)L.gen.len >= limit || tw_ctx_n_past(c) >= tw_ctx_n_ctx(c)) {
            done = TW_FINISH_LENGTH;
            break;
        }
        int32_t tok = tw_sampler_sample(&s, logits);
        if (tok < 0) {
            rc = tok;
            break;
        }
        if (!p->ignore_eos && tw_model_is_eog(m, tok)) {
            done = TW_FINISH_EOS;
            break;
        }
        if ((rc = tw_vec_push(&L.gen, &tok)) != 0 || (rc = tw_sampler_accept(&s, tok)) != 0)
            break;
        enum tw_finish stop = TW_FINISH_LENGTH;
        if ((rc = emit(&L, m, false, &stop)) != 0)
            break;
        if (stop != TW_FINISH_LENGTH) {
            done = stop;
            break;
        }
        if ((int32_t)L.gen.len < limit && tw_ctx_n_past(c) < tw_ctx_n_ctx(c))
            rc = tw_ctx_decode(c, &tok, 1, logits, false);
        running = rc == 0;
    }
    if (rc == 0 && done != TW_FINISH_STOP && done != TW_FINISH_CANCEL) {
        enum tw_finish ignored = TW_FINISH_LENGTH;
        rc = emit(&L, m, true, &ignored);
    }
    res->gen_s = now() - t0;
    res->finish = done;
    res->n_gen = (int32_t)L.gen.len;
    if (rc == 0) {
        res->tokens = L.gen.data; // ownership passes to the result
        L.gen.data = NULL;
        L.gen.len = L.gen.cap = 0;
    }
    tw_vec_free(&L.gen);
    tw_str_free(&L.text);
    if (have_stop)
        tw_stopper_free(&L.stop);
    if (have_s)
        tw_sampler_free(&s);
    tw_free(logits);
    return rc;
}

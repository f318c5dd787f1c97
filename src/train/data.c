// Implements data.h: JSON Lines datasets read line by line (jansson), conversations rendered
// with text/chat.c and tokenised with text/tokenizer, loss masks from the assistant turns'
// text bounds, truncation, a seeded split and shuffles (xoshiro256**), and the batcher that
// packs or pads examples into rows of T tokens.
#include "train/data.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "model/sampler.h"

// ---- random numbers ---------------------------------------------------------------------

// model/sampler.h's xoshiro256** seeded through splitmix64: integer arithmetic only, so a seed
// gives the same numbers on every machine. Streams keep the split's permutation unrelated to
// the shuffles drawn from the same seed.
enum { STREAM_SPLIT = 1, STREAM_SHUFFLE = 2 };

static void rng_seed(struct tw_rng *r, uint64_t seed, uint64_t stream)
{
    tw_rng_seed(r, seed ^ (stream * 0xD1B54A32D192ED03ull));
}

// Uniform in [0, n), n > 0: values under 2^64 mod n are redrawn so that the modulo is unbiased.
static uint64_t rng_below(struct tw_rng *r, uint64_t n)
{
    uint64_t limit = (0 - n) % n;
    for (;;) {
        uint64_t x = tw_rng_next(r);
        if (x >= limit)
            return x % n;
    }
}

static void shuffle(size_t *idx, size_t n, struct tw_rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(r, i), t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

void tw_data_shuffle(size_t *idx, size_t n, uint64_t seed)
{
    struct tw_rng r;
    rng_seed(&r, seed, STREAM_SHUFFLE);
    shuffle(idx, n, &r);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int tw_data_split_init(struct tw_data_split *s, size_t n, double eval_frac, uint64_t seed)
{
    if (!(eval_frac >= 0 && eval_frac <= 1))
        return tw_error_set(TW_EINVAL, "split: the held-out fraction %g is not in [0, 1]",
                            eval_frac);
    size_t n_eval = (size_t)floor(eval_frac * (double)n + 0.5);
    if (n_eval > n)
        n_eval = n;
    size_t *eval = tw_malloc_array(n_eval ? n_eval : 1, sizeof(size_t));
    size_t *train = tw_malloc_array(n - n_eval ? n - n_eval : 1, sizeof(size_t));
    size_t *perm = tw_malloc_array(n ? n : 1, sizeof(size_t));
    if (!eval || !train || !perm) {
        tw_free(eval);
        tw_free(train);
        tw_free(perm);
        return tw_error_set(TW_ENOMEM, "split: out of memory for %zu examples", n);
    }
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    struct tw_rng r;
    rng_seed(&r, seed, STREAM_SPLIT);
    shuffle(perm, n, &r);
    if (n_eval)
        memcpy(eval, perm, n_eval * sizeof(size_t));
    if (n - n_eval)
        memcpy(train, perm + n_eval, (n - n_eval) * sizeof(size_t));
    tw_free(perm);
    qsort(eval, n_eval, sizeof(size_t), cmp_size);
    qsort(train, n - n_eval, sizeof(size_t), cmp_size);
    *s = (struct tw_data_split){
        .train = train, .eval = eval, .n_train = n - n_eval, .n_eval = n_eval
    };
    return 0;
}

void tw_data_split_free(struct tw_data_split *s)
{
    tw_free(s->train);
    tw_free(s->eval);
    memset(s, 0, sizeof *s);
}

// ---- the loader's state -----------------------------------------------------------------

struct loader {
    const char *what; // the input's name in errors
    const tw_tokenizer *tok;
    struct tw_data_options opt;
    struct tw_dataset *d; // being built
    bool have_format;
    int64_t first_line;   // the line that set the format
    int64_t line;         // the line being read
    const char *bos_text; // the BOS token's text, for templates that write bos_token
    int32_t bos;          // the tokenizer's BOS id, or -1
    int32_t lead_bos;     // the BOS id the post-processor puts before a text, or -1
    int32_t eos;          // the tokenizer's EOS id, or -1
    // per example
    bool split;                 // tokenised piece by piece
    const char *answer_name;    // DPO: "chosen" or "rejected", for errors
    bool prompt_is_string;      // DPO: the prompt was a string (messages are named so)
    tw_str text, prefix, instr; // renderings, the instruction with its input
    tw_vec bounds;              // size_t: text bounds of the trained spans, in pairs
    tw_vec tbounds;             // size_t: the same in tokens
    tw_vec full, part, pids;    // int32_t scratch ids
    tw_vec ex_ids;              // int32_t: the example being built
    tw_vec ex_mask;             // uint8_t
    tw_vec msgs;                // struct tw_chat_msg
    tw_vec docs;                // text: struct doc_start
};

// Where a document starts in the ids of a text dataset, and its line.
struct doc_start {
    size_t off;
    int64_t line;
};

static void loader_init(struct loader *L, struct tw_dataset *d, const char *what,
                        const tw_tokenizer *tok, const struct tw_data_options *opt)
{
    memset(L, 0, sizeof *L);
    L->what = what;
    L->tok = tok;
    L->opt = *opt;
    L->d = d;
    tw_str_init(&L->text);
    tw_str_init(&L->prefix);
    tw_str_init(&L->instr);
    tw_vec_init(&L->bounds, sizeof(size_t));
    tw_vec_init(&L->tbounds, sizeof(size_t));
    tw_vec_init(&L->full, sizeof(int32_t));
    tw_vec_init(&L->part, sizeof(int32_t));
    tw_vec_init(&L->pids, sizeof(int32_t));
    tw_vec_init(&L->ex_ids, sizeof(int32_t));
    tw_vec_init(&L->ex_mask, sizeof(uint8_t));
    tw_vec_init(&L->msgs, sizeof(struct tw_chat_msg));
    tw_vec_init(&L->docs, sizeof(struct doc_start));
}

static void loader_free(struct loader *L)
{
    tw_str_free(&L->text);
    tw_str_free(&L->prefix);
    tw_str_free(&L->instr);
    tw_vec_free(&L->bounds);
    tw_vec_free(&L->tbounds);
    tw_vec_free(&L->full);
    tw_vec_free(&L->part);
    tw_vec_free(&L->pids);
    tw_vec_free(&L->ex_ids);
    tw_vec_free(&L->ex_mask);
    tw_vec_free(&L->msgs);
    tw_vec_free(&L->docs);
}

static void dataset_init(struct tw_dataset *d, enum tw_chat_family family)
{
    memset(d, 0, sizeof *d);
    d->family = family;
    tw_vec_init(&d->ids, sizeof(int32_t));
    tw_vec_init(&d->mask, sizeof(uint8_t));
    tw_vec_init(&d->examples, sizeof(struct tw_data_example));
}

void tw_dataset_free(struct tw_dataset *d)
{
    tw_vec_free(&d->ids);
    tw_vec_free(&d->mask);
    tw_vec_free(&d->examples);
}

// An error about the line being read: "<what>:<line>: <message>".
static int line_error(struct loader *L, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int line_error(struct loader *L, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (L->line > 0)
        return tw_error_set(code, "%s:%lld: %s", L->what, (long long)L->line, msg);
    return tw_error_set(code, "%s: %s", L->what, msg);
}

// Puts the input and line in front of a message set by the renderer or the tokenizer.
static int line_prefix(struct loader *L, int rc)
{
    if (rc == TW_ENOMEM)
        return rc;
    if (L->line > 0)
        tw_error_prefix("%s:%lld", L->what, (long long)L->line);
    else
        tw_error_prefix("%s", L->what);
    return rc;
}

static int nomem(struct loader *L)
{
    return tw_error_set(TW_ENOMEM, "%s: out of memory", L->what);
}

const char *tw_data_format_name(enum tw_data_format f)
{
    switch (f) {
    case TW_DATA_FORMAT_TEXT:
        return "text";
    case TW_DATA_FORMAT_ALPACA:
        return "alpaca";
    case TW_DATA_FORMAT_MESSAGES:
        return "messages";
    case TW_DATA_FORMAT_PREFERENCE:
        return "preference";
    }
    return "unknown";
}

size_t tw_dataset_count(const struct tw_dataset *d)
{
    return d->examples.len;
}

const struct tw_data_example *tw_dataset_example(const struct tw_dataset *d, size_t i)
{
    return tw_vec_at(&d->examples, i);
}

const int32_t *tw_dataset_ids(const struct tw_dataset *d, const struct tw_data_example *e)
{
    return (const int32_t *)d->ids.data + e->off;
}

const uint8_t *tw_dataset_mask(const struct tw_dataset *d, const struct tw_data_example *e)
{
    return (const uint8_t *)d->mask.data + e->off;
}

// ---- tokens -----------------------------------------------------------------------------

// Appends the ids of text[0, n) (no post-processor: the template wrote the special tokens).
static int encode(struct loader *L, const char *text, size_t n, tw_vec *out)
{
    int rc = tw_tokenizer_encode(L->tok, text, n, 0, out, NULL);
    return rc ? line_prefix(L, rc) : 0;
}

static int push_id(struct loader *L, tw_vec *ids, int32_t id)
{
    return tw_vec_push(ids, &id) ? nomem(L) : 0;
}

// Appends n bytes of value m to the example's mask.
static int push_mask(struct loader *L, uint8_t m, size_t n)
{
    void *p;
    if (n == 0)
        return 0;
    if (tw_vec_grow(&L->ex_mask, n, &p))
        return nomem(L);
    memset(p, m, n);
    return 0;
}

// The example's ids so far, with mask m on the ones appended since len0.
static int mask_since(struct loader *L, size_t len0, uint8_t m)
{
    return push_mask(L, m, L->ex_ids.len - len0);
}

static bool is_prefix(const tw_vec *p, const tw_vec *full)
{
    return p->len <= full->len &&
           (p->len == 0 || memcmp(p->data, full->data, p->len * sizeof(int32_t)) == 0);
}

// Tokenises text[0, n) whose trained spans are [bounds[2i], bounds[2i + 1]) into the example
// (ids and mask). The whole text's ids are used when the ids of the text up to each bound are
// a prefix of them (no token crosses a bound); otherwise the pieces between bounds are
// tokenised one by one and concatenated (L->split), which keeps every bound at the cost of ids
// that may differ from the whole text's at the bounds.
static int encode_masked(struct loader *L, const char *text, size_t n, const size_t *bounds,
                         size_t nb)
{
    int rc;
    tw_vec_clear(&L->full);
    tw_vec_clear(&L->tbounds);
    if ((rc = encode(L, text, n, &L->full)))
        return rc;
    bool whole = true;
    size_t prev = 0;
    for (size_t i = 0; i < nb && whole; i++) {
        size_t k = L->full.len;
        if (bounds[i] < n) {
            tw_vec_clear(&L->part);
            if ((rc = encode(L, text, bounds[i], &L->part)))
                return rc;
            whole = is_prefix(&L->part, &L->full);
            k = L->part.len;
        }
        whole = whole && k >= prev;
        prev = k;
        if (tw_vec_push(&L->tbounds, &k))
            return nomem(L);
    }
    if (whole) {
        size_t t = 0;
        if (tw_vec_append(&L->ex_ids, L->full.data, L->full.len))
            return nomem(L);
        for (size_t i = 0; i < nb; i++) {
            size_t k = TW_VEC_AT(&L->tbounds, size_t, i);
            if ((rc = push_mask(L, i % 2, k - t)))
                return rc;
            t = k;
        }
        return push_mask(L, 0, L->full.len - t);
    }
    L->split = true;
    size_t t = 0;
    for (size_t i = 0; i <= nb; i++) {
        size_t b = i < nb ? bounds[i] : n, len0 = L->ex_ids.len;
        if ((rc = encode(L, text + t, b - t, &L->ex_ids)) || (rc = mask_since(L, len0, i % 2)))
            return rc;
        t = b;
    }
    return 0;
}

// ---- conversations ----------------------------------------------------------------------

// The text a family's template writes right after an assistant's content to close the turn;
// NULL for alpaca, whose response is closed by the EOS id the loader appends.
static const char *turn_end(enum tw_chat_family f)
{
    switch (f) {
    case TW_CHAT_LLAMA3:
    case TW_CHAT_LLAMA3_LEGACY:
    case TW_CHAT_LLAMA3_1:
        return "<|eot_id|>";
    case TW_CHAT_LLAMA2:
    case TW_CHAT_MISTRAL:
        return "</s>";
    case TW_CHAT_CHATML:
    case TW_CHAT_QWEN3:
        return "<|im_end|>";
    case TW_CHAT_GEMMA:
        return "<end_of_turn>";
    case TW_CHAT_PHI3:
        return "<|end|>";
    default:
        return NULL;
    }
}

// The name of message k of the line, as the line spells it, for errors.
static void msg_name(const struct loader *L, size_t k, size_t n, char *buf, size_t cap)
{
    switch (L->d->format) {
    case TW_DATA_FORMAT_ALPACA:
        snprintf(buf, cap, "\"%s\"", k + 1 < n ? "instruction" : "output");
        break;
    case TW_DATA_FORMAT_PREFERENCE:
        if (k + 1 == n)
            snprintf(buf, cap, "\"%s\"", L->answer_name);
        else if (L->prompt_is_string)
            snprintf(buf, cap, "\"prompt\"");
        else
            snprintf(buf, cap, "prompt[%zu]", k);
        break;
    default:
        snprintf(buf, cap, "messages[%zu]", k);
        break;
    }
}

static bool is_assistant(const struct tw_chat_msg *m)
{
    return m->role && strcmp(m->role, "assistant") == 0;
}

// Renders the conversation m[0, n) into L->text and puts the text bounds of every assistant
// turn from m[from] on into L->bounds: from the end of the generation prompt (the rendering of
// the turns before it, which must be a prefix of the whole) to the end of the template's end
// marker (alpaca: the end of the text).
static int render_turns(struct loader *L, const struct tw_chat_msg *m, size_t n, size_t from)
{
    enum tw_chat_family f = L->opt.family;
    const char *end = turn_end(f);
    char name[64];
    tw_str_clear(&L->text);
    tw_vec_clear(&L->bounds);
    int rc = tw_chat_render(f, m, n, 0, L->bos_text, &L->text);
    if (rc)
        return line_prefix(L, rc);
    const char *text = tw_str_cstr(&L->text);
    size_t len = tw_str_len(&L->text), last = 0;
    for (size_t k = from; k < n; k++) {
        if (!is_assistant(&m[k]))
            continue;
        msg_name(L, k, n, name, sizeof name);
        if (k == 0)
            return line_error(L, TW_EFORMAT,
                              "%s: an assistant message cannot open the conversation", name);
        if (end && strstr(m[k].content, end))
            return line_error(L, TW_EFORMAT,
                              "%s: the text holds \"%s\", the %s template's end of a turn", name,
                              end, tw_chat_family_name(f));
        tw_str_clear(&L->prefix);
        if ((rc = tw_chat_render(f, m, k, 1, L->bos_text, &L->prefix)))
            return line_prefix(L, rc);
        size_t a = tw_str_len(&L->prefix), b = len;
        if (a > len || a < last || memcmp(tw_str_cstr(&L->prefix), text, a) != 0)
            return line_error(L, TW_EUNSUPPORTED,
                              "%s: the %s template renders the conversation before this turn "
                              "differently inside the whole conversation, so the turn cannot "
                              "be masked",
                              name, tw_chat_family_name(f));
        if (end) {
            const char *p = strstr(text + a, end);
            if (!p)
                return line_error(L, TW_EUNSUPPORTED,
                                  "%s: the %s template wrote no \"%s\" after this turn", name,
                                  tw_chat_family_name(f), end);
            b = (size_t)(p - text) + strlen(end);
        }
        if (tw_vec_push(&L->bounds, &a) || tw_vec_push(&L->bounds, &b))
            return nomem(L);
        last = b;
    }
    if (L->bounds.len == 0)
        return line_error(L, TW_EFORMAT, "no assistant message to train on");
    return 0;
}

// Adds the example in L->ex_ids / L->ex_mask with `targets` trained tokens (0: dropped).
static int store(struct loader *L, int32_t len, int32_t len_c, int32_t len_r, int64_t targets,
                 bool truncated)
{
    struct tw_dataset *d = L->d;
    if (targets == 0) {
        d->n_dropped++;
        return 0;
    }
    struct tw_data_example e = {
        .off = d->ids.len, .len = len, .len_chosen = len_c, .len_rejected = len_r, .line = L->line
    };
    size_t n = (size_t)len + (size_t)len_c + (size_t)len_r;
    // A failure leaves the dataset inconsistent; the load then frees it.
    if (tw_vec_append(&d->ids, L->ex_ids.data, n) || tw_vec_append(&d->mask, L->ex_mask.data, n) ||
        tw_vec_push(&d->examples, &e))
        return nomem(L);
    int32_t row = len + (len_c > len_r ? len_c : len_r);
    d->longest = row > d->longest ? row : d->longest;
    d->n_tokens += (int64_t)n;
    d->n_trained += targets;
    d->n_truncated += truncated;
    d->n_split += L->split;
    return 0;
}

// Targets of a row of n tokens with mask m: trained tokens that have a token before them.
static int64_t count_targets(const uint8_t *m, size_t n)
{
    int64_t k = 0;
    for (size_t j = 1; j < n; j++)
        k += m[j] != 0;
    return k;
}

// One SFT example from the conversation m[0, n): every assistant turn trained.
static int add_conversation(struct loader *L, const struct tw_chat_msg *m, size_t n)
{
    bool alpaca = L->opt.family == TW_CHAT_ALPACA;
    int rc;
    L->split = false;
    tw_vec_clear(&L->ex_ids);
    tw_vec_clear(&L->ex_mask);
    if ((rc = render_turns(L, m, n, 0)))
        return rc;
    if (alpaca && L->lead_bos >= 0 &&
        ((rc = push_id(L, &L->ex_ids, L->lead_bos)) || (rc = push_mask(L, 0, 1))))
        return rc;
    if ((rc = encode_masked(L, tw_str_cstr(&L->text), tw_str_len(&L->text), L->bounds.data,
                            L->bounds.len)))
        return rc;
    if (alpaca && L->eos >= 0 &&
        ((rc = push_id(L, &L->ex_ids, L->eos)) || (rc = push_mask(L, 1, 1))))
        return rc;
    size_t len = L->ex_ids.len;
    bool truncated = len > (size_t)L->opt.max_seq;
    if (truncated)
        len = (size_t)L->opt.max_seq;
    return store(L, (int32_t)len, 0, 0, count_targets(L->ex_mask.data, len), truncated);
}

// The ids of one answer after the prompt m[0, n - 1) (whose ids, without the post-processor's
// BOS, are L->pids: filled from the first answer's rendering) into L->ex_ids, mask 1.
static int add_answer(struct loader *L, const struct tw_chat_msg *m, size_t n)
{
    int rc;
    if ((rc = render_turns(L, m, n, n - 1)))
        return rc;
    const char *text = tw_str_cstr(&L->text);
    size_t a = TW_VEC_AT(&L->bounds, size_t, 0), b = TW_VEC_AT(&L->bounds, size_t, 1);
    size_t len0 = L->ex_ids.len;
    if (L->pids.len == 0 && a > 0 && (rc = encode(L, text, a, &L->pids)))
        return rc;
    tw_vec_clear(&L->full);
    if ((rc = encode(L, text, b, &L->full)))
        return rc;
    if (is_prefix(&L->pids, &L->full)) {
        if (tw_vec_append(&L->ex_ids, (int32_t *)L->full.data + L->pids.len,
                          L->full.len - L->pids.len))
            return nomem(L);
    } else {
        L->split = true;
        if ((rc = encode(L, text + a, b - a, &L->ex_ids)))
            return rc;
    }
    if (L->opt.family == TW_CHAT_ALPACA && L->eos >= 0 && (rc = push_id(L, &L->ex_ids, L->eos)))
        return rc;
    return mask_since(L, len0, 1);
}

// One DPO example: the prompt m[0, np) and the two answers. Stored as prompt, chosen, rejected.
static int add_preference(struct loader *L, size_t np, const char *chosen, const char *rejected)
{
    bool alpaca = L->opt.family == TW_CHAT_ALPACA;
    int rc;
    L->split = false;
    tw_vec_clear(&L->pids);
    tw_vec_clear(&L->ex_ids);
    tw_vec_clear(&L->ex_mask);
    struct tw_chat_msg answer = { "assistant", chosen };
    if (tw_vec_push(&L->msgs, &answer))
        return nomem(L);
    // The answers first (the prompt's ids come with the first), the prompt put in front after.
    const char *texts[2] = { chosen, rejected };
    const char *names[2] = { "chosen", "rejected" };
    size_t lens[2];
    for (int i = 0; i < 2; i++) {
        ((struct tw_chat_msg *)L->msgs.data)[np].content = texts[i];
        L->answer_name = names[i];
        size_t len0 = L->ex_ids.len;
        if ((rc = add_answer(L, L->msgs.data, np + 1)))
            return rc;
        lens[i] = L->ex_ids.len - len0;
    }
    // The prompt: left-truncated to max_prompt, keeping a leading BOS.
    tw_vec_clear(&L->part);
    if (alpaca && L->lead_bos >= 0 && (rc = push_id(L, &L->part, L->lead_bos)))
        return rc;
    if (tw_vec_append(&L->part, L->pids.data, L->pids.len))
        return nomem(L);
    // The prompt keeps p[0, head) (a BOS) and its tail from `from` on.
    const int32_t *p = L->part.data;
    size_t plen = L->part.len, max_prompt = (size_t)L->opt.max_prompt;
    size_t head = plen > 0 && L->bos >= 0 && p[0] == L->bos, from = head;
    bool truncated = plen > max_prompt;
    if (truncated) {
        from = plen - (max_prompt - head);
        plen = max_prompt;
    }
    size_t room = (size_t)L->opt.max_len - plen;
    size_t lc = lens[0] < room ? lens[0] : room, lr = lens[1] < room ? lens[1] : room;
    truncated = truncated || lc < lens[0] || lr < lens[1];
    // ex_ids holds chosen and rejected: rebuild as prompt + chosen[0, lc) + rejected[0, lr).
    tw_vec_clear(&L->full);
    if (tw_vec_append(&L->full, p, head) || tw_vec_append(&L->full, p + from, plen - head) ||
        tw_vec_append(&L->full, L->ex_ids.data, lc) ||
        tw_vec_append(&L->full, (int32_t *)L->ex_ids.data + lens[0], lr))
        return nomem(L);
    tw_vec_clear(&L->ex_ids);
    tw_vec_clear(&L->ex_mask);
    if (tw_vec_append(&L->ex_ids, L->full.data, L->full.len) || push_mask(L, 0, plen) ||
        push_mask(L, 1, lc + lr))
        return nomem(L);
    // Each row trains on its answer (all of it after a prompt of at least one token); a pair
    // with an answer that trains nothing is dropped.
    int64_t tc = (int64_t)lc - (plen == 0 && lc > 0), tr = (int64_t)lr - (plen == 0 && lr > 0);
    return store(L, (int32_t)plen, (int32_t)lc, (int32_t)lr, tc > 0 && tr > 0 ? tc + tr : 0,
                 truncated);
}

// One pretraining document: [lead BOS] + its ids + [EOS], appended to the dataset's stream.
static int add_document(struct loader *L, const char *text, size_t n)
{
    struct tw_dataset *d = L->d;
    if (n == 0)
        return 0;
    struct doc_start s = { d->ids.len, L->line };
    int rc;
    if (tw_vec_push(&L->docs, &s))
        return nomem(L);
    if (L->lead_bos >= 0 && (rc = push_id(L, &d->ids, L->lead_bos)))
        return rc;
    if ((rc = encode(L, text, n, &d->ids)))
        return rc;
    if (L->eos >= 0 && (rc = push_id(L, &d->ids, L->eos)))
        return rc;
    void *m;
    size_t added = d->ids.len - d->mask.len;
    if (tw_vec_grow(&d->mask, added, &m))
        return nomem(L);
    if (added)
        memset(m, 1, added);
    return 0;
}

// Cuts the stream of documents into windows of max_seq tokens (the last may be shorter; one
// of a single token has no target and is dropped).
static int make_windows(struct loader *L)
{
    struct tw_dataset *d = L->d;
    size_t n = d->ids.len, w = (size_t)L->opt.max_seq, doc = 0;
    const struct doc_start *docs = L->docs.data;
    for (size_t off = 0; off < n; off += w) {
        size_t len = n - off < w ? n - off : w;
        while (doc + 1 < L->docs.len && docs[doc + 1].off <= off)
            doc++;
        if (len < 2) {
            d->n_dropped++;
            continue;
        }
        struct tw_data_example e = { .off = off, .len = (int32_t)len, .line = docs[doc].line };
        if (tw_vec_push(&d->examples, &e))
            return nomem(L);
        d->n_tokens += (int64_t)len;
        d->n_trained += (int64_t)len - 1;
        d->longest = (int32_t)len > d->longest ? (int32_t)len : d->longest;
    }
    return 0;
}

// ---- lines ------------------------------------------------------------------------------

static bool task_accepts(enum tw_data_task t, enum tw_data_format f)
{
    switch (t) {
    case TW_DATA_TASK_PRETRAIN:
        return f == TW_DATA_FORMAT_TEXT;
    case TW_DATA_TASK_SFT:
        return f == TW_DATA_FORMAT_ALPACA || f == TW_DATA_FORMAT_MESSAGES;
    case TW_DATA_TASK_DPO:
        return f == TW_DATA_FORMAT_PREFERENCE;
    default:
        return true;
    }
}

static const char *task_wants(enum tw_data_task t)
{
    switch (t) {
    case TW_DATA_TASK_PRETRAIN:
        return "pretraining reads {\"text\"} lines";
    case TW_DATA_TASK_SFT:
        return "SFT reads {\"instruction\", \"output\"} or {\"messages\"} lines";
    default:
        return "DPO reads {\"prompt\", \"chosen\", \"rejected\"} lines";
    }
}

// The options a format needs; max_prompt 0 becomes max_len / 2.
static int check_options(struct loader *L, enum tw_data_format f)
{
    struct tw_data_options *o = &L->opt;
    if (f != TW_DATA_FORMAT_PREFERENCE) {
        if (o->max_seq < 2)
            return tw_error_set(TW_EINVAL, "%s: max_seq must be at least 2 (got %d)", L->what,
                                (int)o->max_seq);
        return 0;
    }
    if (o->max_len < 2)
        return tw_error_set(TW_EINVAL, "%s: max_len must be at least 2 (got %d)", L->what,
                            (int)o->max_len);
    if (o->max_prompt == 0)
        o->max_prompt = o->max_len / 2;
    if (o->max_prompt < 1 || o->max_prompt >= o->max_len)
        return tw_error_set(TW_EINVAL,
                            "%s: max_prompt must be in [1, max_len) (got %d, max_len %d)", L->what,
                            (int)o->max_prompt, (int)o->max_len);
    return 0;
}

// The format of a line from its keys, or -1.
static int detect(const json_t *obj)
{
    if (json_object_get(obj, "messages"))
        return TW_DATA_FORMAT_MESSAGES;
    if (json_object_get(obj, "chosen") || json_object_get(obj, "rejected") ||
        json_object_get(obj, "prompt"))
        return TW_DATA_FORMAT_PREFERENCE;
    if (json_object_get(obj, "instruction") || json_object_get(obj, "output"))
        return TW_DATA_FORMAT_ALPACA;
    if (json_object_get(obj, "text"))
        return TW_DATA_FORMAT_TEXT;
    return -1;
}

// obj[key] as a string (ctx names obj: "" for the line, "messages[2]: "); optional: absent or
// null gives NULL.
static int get_str(struct loader *L, const json_t *obj, const char *ctx, const char *key,
                   bool optional, const char **out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || (optional && json_is_null(v))) {
        *out = NULL;
        return optional ? 0 : line_error(L, TW_EFORMAT, "%smissing \"%s\"", ctx, key);
    }
    if (!json_is_string(v))
        return line_error(L, TW_EFORMAT, "%s\"%s\" is not a string (got %s)", ctx, key,
                          tw_json_type_name(v));
    *out = json_string_value(v);
    return 0;
}

// Appends the messages of the array v (named key) to L->msgs; strings borrowed from v.
static int get_messages(struct loader *L, const json_t *v, const char *key)
{
    if (!json_is_array(v))
        return line_error(L, TW_EFORMAT, "\"%s\" is not an array (got %s)", key,
                          tw_json_type_name(v));
    if (json_array_size(v) == 0)
        return line_error(L, TW_EFORMAT, "\"%s\" is an empty array", key);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "%s[%zu]: ", key, i);
        if (!json_is_object(e))
            return line_error(L, TW_EFORMAT, "%s[%zu] is not an object (got %s)", key, i,
                              tw_json_type_name(e));
        struct tw_chat_msg m;
        int rc;
        if ((rc = get_str(L, e, ctx, "role", false, &m.role)) ||
            (rc = get_str(L, e, ctx, "content", false, &m.content)))
            return rc;
        if (tw_vec_push(&L->msgs, &m))
            return nomem(L);
    }
    return 0;
}

static int line_alpaca(struct loader *L, const json_t *obj)
{
    const char *instr = NULL, *input = NULL, *output = NULL;
    int rc;
    if ((rc = get_str(L, obj, "", "instruction", false, &instr)) ||
        (rc = get_str(L, obj, "", "input", true, &input)) ||
        (rc = get_str(L, obj, "", "output", false, &output)))
        return rc;
    if (input && *input) {
        tw_str_clear(&L->instr);
        if (tw_str_puts(&L->instr, instr) || tw_str_puts(&L->instr, "\n\n") ||
            tw_str_puts(&L->instr, input))
            return nomem(L);
        instr = tw_str_cstr(&L->instr);
    }
    struct tw_chat_msg m[2] = { { "user", instr }, { "assistant", output } };
    return add_conversation(L, m, 2);
}

static int line_messages(struct loader *L, const json_t *obj)
{
    int rc = get_messages(L, json_object_get(obj, "messages"), "messages");
    return rc ? rc : add_conversation(L, L->msgs.data, L->msgs.len);
}

// An answer: a string, or an array of one assistant message (TRL's conversational format).
static int get_answer(struct loader *L, const json_t *obj, const char *key, const char **out)
{
    const json_t *v = json_object_get(obj, key);
    if (!v)
        return line_error(L, TW_EFORMAT, "missing \"%s\"", key);
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return 0;
    }
    const json_t *m = json_array_get(v, 0);
    const char *role;
    char ctx[64];
    snprintf(ctx, sizeof ctx, "%s[0]: ", key);
    if (!json_is_array(v) || json_array_size(v) != 1 || !json_is_object(m))
        return line_error(L, TW_EFORMAT,
                          "\"%s\" is not a string or an array of one message (got %s)", key,
                          tw_json_type_name(v));
    int rc;
    if ((rc = get_str(L, m, ctx, "role", false, &role)) ||
        (rc = get_str(L, m, ctx, "content", false, out)))
        return rc;
    if (strcmp(role, "assistant") != 0)
        return line_error(L, TW_EFORMAT, "%s\"role\" is \"%.40s\", not \"assistant\"", ctx, role);
    return 0;
}

static int line_preference(struct loader *L, const json_t *obj)
{
    const json_t *prompt = json_object_get(obj, "prompt");
    const char *chosen, *rejected;
    int rc;
    if (!prompt)
        return line_error(L, TW_EFORMAT, "missing \"prompt\"");
    L->prompt_is_string = json_is_string(prompt);
    if (!L->prompt_is_string && !json_is_array(prompt))
        return line_error(L, TW_EFORMAT, "\"prompt\" is not a string or an array (got %s)",
                          tw_json_type_name(prompt));
    if (L->prompt_is_string) {
        struct tw_chat_msg m = { "user", json_string_value(prompt) };
        if (tw_vec_push(&L->msgs, &m))
            return nomem(L);
    } else if ((rc = get_messages(L, prompt, "prompt"))) {
        return rc;
    }
    if ((rc = get_answer(L, obj, "chosen", &chosen)) ||
        (rc = get_answer(L, obj, "rejected", &rejected)))
        return rc;
    return add_preference(L, L->msgs.len, chosen, rejected);
}

static int line_text(struct loader *L, const json_t *obj)
{
    const char *text;
    int rc = get_str(L, obj, "", "text", false, &text);
    return rc ? rc : add_document(L, text, strlen(text));
}

// Parses one non-blank line and adds what it holds.
static int read_line(struct loader *L, const char *p, size_t n)
{
    json_t *obj = NULL;
    int rc = tw_json_parse(L->what, p, n, &obj);
    if (rc == TW_EFORMAT) {
        json_error_t err;
        json_t *again = json_loadb(p, n, 0, &err);
        json_decref(again);
        return line_error(L, TW_EFORMAT, "invalid JSON (column %d): %s", err.column, err.text);
    }
    if (rc)
        return rc == TW_ENOMEM ? nomem(L) : rc;
    if (!json_is_object(obj)) {
        rc = line_error(L, TW_EFORMAT, "expected a JSON object, got %s", tw_json_type_name(obj));
        json_decref(obj);
        return rc;
    }
    int f = detect(obj);
    if (f < 0) {
        rc = line_error(L, TW_EFORMAT,
                        "unknown format: expected \"instruction\" and \"output\", \"messages\", "
                        "\"prompt\", \"chosen\" and \"rejected\", or \"text\"");
    } else if (!L->have_format) {
        L->have_format = true;
        L->first_line = L->line;
        L->d->format = (enum tw_data_format)f;
        if (!task_accepts(L->opt.task, (enum tw_data_format)f))
            rc = line_error(L, TW_EFORMAT, "a line of the %s format, but %s",
                            tw_data_format_name((enum tw_data_format)f), task_wants(L->opt.task));
        else
            rc = check_options(L, (enum tw_data_format)f);
    } else if ((enum tw_data_format)f != L->d->format) {
        rc = line_error(L, TW_EFORMAT, "a line of the %s format, but line %lld set the %s format",
                        tw_data_format_name((enum tw_data_format)f), (long long)L->first_line,
                        tw_data_format_name(L->d->format));
    }
    if (rc == 0) {
        tw_vec_clear(&L->msgs);
        switch (L->d->format) {
        case TW_DATA_FORMAT_ALPACA:
            rc = line_alpaca(L, obj);
            break;
        case TW_DATA_FORMAT_MESSAGES:
            rc = line_messages(L, obj);
            break;
        case TW_DATA_FORMAT_PREFERENCE:
            rc = line_preference(L, obj);
            break;
        case TW_DATA_FORMAT_TEXT:
            rc = line_text(L, obj);
            break;
        }
    }
    json_decref(obj);
    return rc;
}

static bool blank(const char *p, const char *end)
{
    for (; p < end; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\v' && *p != '\f')
            return false;
    return true;
}

// The tokenizer's special ids, and the BOS its post-processor puts before a text.
static int loader_tokens(struct loader *L)
{
    const tw_tokenizer *t = L->tok;
    L->bos = tw_tokenizer_bos(t);
    L->eos = tw_tokenizer_eos(t);
    L->bos_text = L->bos >= 0 ? tw_tokenizer_id_to_piece(t, L->bos) : NULL;
    L->lead_bos = -1;
    int32_t pad = tw_tokenizer_pad(t);
    L->d->pad_id = pad >= 0 ? pad : L->eos >= 0 ? L->eos : 0;
    tw_vec_clear(&L->part);
    int rc = tw_tokenizer_encode(t, "", 0, TW_TOK_ADD_SPECIAL, &L->part, NULL);
    if (rc)
        return line_prefix(L, rc);
    if (L->part.len > 0 && L->bos >= 0 && TW_VEC_AT(&L->part, int32_t, 0) == L->bos)
        L->lead_bos = L->bos;
    return 0;
}

static int check_common(const char *what, const tw_tokenizer *tok,
                        const struct tw_data_options *opt)
{
    if (!tok)
        return tw_error_set(TW_EINVAL, "%s: no tokenizer", what);
    if ((unsigned)opt->family >= TW_CHAT_FAMILY_COUNT)
        return tw_error_set(TW_EINVAL, "%s: unknown chat template family %d", what,
                            (int)opt->family);
    if ((unsigned)opt->task > TW_DATA_TASK_DPO)
        return tw_error_set(TW_EINVAL, "%s: unknown task %d", what, (int)opt->task);
    return 0;
}

// The end of a load: windows for text, then a dataset with something to train on.
static int finish(struct loader *L, bool any)
{
    int rc;
    struct tw_dataset *d = L->d;
    L->line = 0;
    if (!any)
        return line_error(L, TW_EFORMAT, "no examples (the input is empty)");
    if (d->format == TW_DATA_FORMAT_TEXT && (rc = make_windows(L)))
        return rc;
    if (d->examples.len == 0)
        return line_error(L, TW_EFORMAT,
                          "no examples left to train on (%lld dropped: empty texts, or nothing "
                          "trained within the length limits)",
                          (long long)d->n_dropped);
    return 0;
}

// The end of a load: the finishing pass when the lines went well, the loader freed, and the
// new dataset handed over on success (freed on failure, the caller's *d untouched).
static int conclude(struct loader *L, struct tw_dataset *nd, bool any, int rc,
                    struct tw_dataset *d)
{
    if (rc == 0)
        rc = finish(L, any);
    loader_free(L);
    if (rc) {
        tw_dataset_free(nd);
        return rc;
    }
    *d = *nd;
    return 0;
}

int tw_dataset_load_buffer(struct tw_dataset *d, const char *what, const void *buf, size_t len,
                           const tw_tokenizer *tok, const struct tw_data_options *opt)
{
    int rc = check_common(what, tok, opt);
    if (rc)
        return rc;
    tw_json_init();
    struct tw_dataset nd;
    struct loader L;
    dataset_init(&nd, opt->family);
    loader_init(&L, &nd, what, tok, opt);
    const char *p = len ? (const char *)buf : "", *end = p + len;
    tw_sha256(p, len, nd.sha256);
    tw_sha256_hex(nd.sha256, nd.sha256_hex);
    bool any = false;
    rc = loader_tokens(&L);
    if (rc == 0 && len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3; // a UTF-8 byte order mark
    while (rc == 0 && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;
        L.line++;
        if (!blank(p, e)) {
            any = true;
            rc = read_line(&L, p, (size_t)(e - p));
        }
        p = nl ? nl + 1 : end;
    }
    return conclude(&L, &nd, any, rc, d);
}

int tw_dataset_load(struct tw_dataset *d, const char *path, const tw_tokenizer *tok,
                    const struct tw_data_options *opt)
{
    struct tw_mmap m = { 0 };
    int rc = check_common(path, tok, opt);
    if (rc || (rc = tw_mmap_open(&m, path)))
        return rc;
    rc = tw_dataset_load_buffer(d, path, m.data, m.len, tok, opt);
    tw_mmap_close(&m);
    return rc;
}

int tw_dataset_from_texts(struct tw_dataset *d, const char *const *docs, size_t n,
                          const tw_tokenizer *tok, const struct tw_data_options *opt)
{
    const char *what = "documents";
    int rc = check_common(what, tok, opt);
    if (rc)
        return rc;
    struct tw_dataset nd;
    struct loader L;
    dataset_init(&nd, opt->family);
    loader_init(&L, &nd, what, tok, opt);
    nd.format = TW_DATA_FORMAT_TEXT;
    rc = task_accepts(opt->task, TW_DATA_FORMAT_TEXT)
             ? check_options(&L, TW_DATA_FORMAT_TEXT)
             : tw_error_set(TW_EINVAL, "documents: raw text, but %s", task_wants(opt->task));
    if (rc == 0)
        rc = loader_tokens(&L);
    struct tw_sha256 h;
    tw_sha256_init(&h);
    bool any = false;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t len = docs[i] ? strlen(docs[i]) : 0;
        tw_sha256_update(&h, docs[i] ? docs[i] : "", len + 1);
        L.line = (int64_t)i + 1;
        any = true;
        rc = add_document(&L, docs[i] ? docs[i] : "", len);
    }
    tw_sha256_final(&h, nd.sha256);
    tw_sha256_hex(nd.sha256, nd.sha256_hex);
    return conclude(&L, &nd, any, rc, d);
}

// ---- batches ----------------------------------------------------------------------------

static bool is_dpo(const struct tw_batcher *b)
{
    return b->d->format == TW_DATA_FORMAT_PREFERENCE;
}

// The tokens a row needs for example e.
static int32_t row_len(const struct tw_dataset *d, const struct tw_data_example *e)
{
    if (d->format == TW_DATA_FORMAT_PREFERENCE)
        return e->len + (e->len_chosen > e->len_rejected ? e->len_chosen : e->len_rejected);
    return e->len;
}

int tw_batcher_init(struct tw_batcher *b, const struct tw_dataset *d, const size_t *idx, size_t n,
                    int32_t B, int32_t T, enum tw_batch_mode mode)
{
    memset(b, 0, sizeof *b);
    bool dpo = d->format == TW_DATA_FORMAT_PREFERENCE;
    if (B < 1 || T < 2 || (dpo && B > INT32_MAX / 2))
        return tw_error_set(TW_EINVAL, "batches: B = %d and T = %d (need B >= 1, T >= 2)", (int)B,
                            (int)T);
    if (mode != TW_BATCH_MODE_PACK && mode != TW_BATCH_MODE_PAD)
        return tw_error_set(TW_EINVAL, "batches: unknown mode %d", (int)mode);
    int32_t rows = dpo ? 2 * B : B;
    size_t cells, count = tw_dataset_count(d);
    if (tw_mul_overflow((size_t)rows, (size_t)T, &cells))
        return tw_error_set(TW_EOVERFLOW, "batches: %d rows of %d tokens", (int)rows, (int)T);
    for (size_t i = 0; i < n; i++) {
        size_t k = idx ? idx[i] : i;
        if (k >= count)
            return tw_error_set(TW_EINVAL, "batches: example %zu of %zu does not exist", k, count);
        const struct tw_data_example *e = tw_dataset_example(d, k);
        if (row_len(d, e) > T)
            return tw_error_set(TW_EINVAL,
                                "batches: the example of line %lld needs %d tokens, more than "
                                "a row's %d",
                                (long long)e->line, (int)row_len(d, e), (int)T);
    }
    struct tw_batch *bt = &b->batch;
    b->pool = tw_malloc_array(n ? n : 1, sizeof(size_t));
    b->order = tw_malloc_array(n ? n : 1, sizeof(size_t));
    b->row_first = tw_malloc_array(n + 1, sizeof(size_t));
    bt->ids = tw_malloc_array(cells, sizeof(int32_t));
    bt->targets = tw_malloc_array(cells, sizeof(int32_t));
    bt->pos = tw_malloc_array(cells, sizeof(int32_t));
    bt->start = tw_malloc_array(cells, sizeof(int32_t));
    if (!b->pool || !b->order || !b->row_first || !bt->ids || !bt->targets || !bt->pos ||
        !bt->start) {
        tw_batcher_free(b);
        return tw_error_set(TW_ENOMEM, "batches: out of memory for %d rows of %d tokens",
                            (int)rows, (int)T);
    }
    for (size_t i = 0; i < n; i++)
        b->pool[i] = idx ? idx[i] : i;
    b->d = d;
    b->mode = dpo ? TW_BATCH_MODE_PAD : mode;
    b->B = B;
    b->T = T;
    b->n_pool = n;
    bt->rows = rows;
    bt->T = T;
    bt->pairs = dpo ? B : 0;
    tw_batcher_epoch(b, 0, 0, false);
    return 0;
}

void tw_batcher_free(struct tw_batcher *b)
{
    tw_free(b->pool);
    tw_free(b->order);
    tw_free(b->row_first);
    tw_free(b->batch.ids);
    tw_free(b->batch.targets);
    tw_free(b->batch.pos);
    tw_free(b->batch.start);
    memset(b, 0, sizeof *b);
}

void tw_batcher_epoch(struct tw_batcher *b, uint64_t seed, int64_t epoch, bool shuffle_it)
{
    size_t n = b->n_pool;
    if (n)
        memcpy(b->order, b->pool, n * sizeof(size_t));
    if (shuffle_it)
        tw_data_shuffle(b->order, n, seed + (uint64_t)epoch);
    b->n_rows = 0;
    if (b->mode == TW_BATCH_MODE_PAD) {
        for (size_t i = 0; i <= n; i++)
            b->row_first[i] = i;
        b->n_rows = n;
    } else {
        // Greedy packing in order: an example that does not fit the rest of the row opens the
        // next one (every example fits an empty row: checked at init).
        int64_t used = 0;
        for (size_t i = 0; i < n; i++) {
            int32_t len = tw_dataset_example(b->d, b->order[i])->len;
            if (b->n_rows == 0 || used + len > b->T) {
                b->row_first[b->n_rows++] = i;
                used = 0;
            }
            used += len;
        }
        b->row_first[b->n_rows] = n;
    }
    b->n_batches = (b->n_rows + (size_t)b->B - 1) / (size_t)b->B;
    b->next = 0;
}

size_t tw_batcher_count(const struct tw_batcher *b)
{
    return b->n_batches;
}

void tw_batcher_seek(struct tw_batcher *b, size_t i)
{
    b->next = i < b->n_batches ? i : b->n_batches;
}

// Writes an example made of pieces a (na tokens) and b (nb tokens) at offset t0 of row `row`;
// returns its targets.
static int64_t place(struct tw_batch *bt, size_t row, int32_t t0, const int32_t *ia,
                     const uint8_t *ma, int32_t na, const int32_t *ib, const uint8_t *mb,
                     int32_t nb)
{
    size_t base = row * (size_t)bt->T + (size_t)t0;
    int32_t n = na + nb;
    int64_t trained = 0;
    for (int32_t j = 0; j < n; j++) {
        int32_t k = j + 1;
        bt->ids[base + j] = j < na ? ia[j] : ib[j - na];
        bt->pos[base + j] = j;
        bt->start[base + j] = t0;
        bt->targets[base + j] = TW_DATA_IGNORE;
        if (k < n && (k < na ? ma[k] : mb[k - na])) {
            bt->targets[base + j] = k < na ? ia[k] : ib[k - na];
            trained++;
        }
    }
    return trained;
}

// Pads row `row` from offset t0 to its end.
static void pad(struct tw_batch *bt, size_t row, int32_t t0, int32_t pad_id)
{
    size_t base = row * (size_t)bt->T;
    for (int32_t t = t0; t < bt->T; t++) {
        bt->ids[base + t] = pad_id;
        bt->targets[base + t] = TW_DATA_IGNORE;
        bt->pos[base + t] = 0;
        bt->start[base + t] = t;
    }
}

static void fill_dpo(struct tw_batcher *b, size_t bi)
{
    struct tw_batch *bt = &b->batch;
    const struct tw_dataset *d = b->d;
    for (int32_t r = 0; r < b->B; r++) {
        size_t p = bi * (size_t)b->B + (size_t)r;
        int32_t tc = 0, tr = 0;
        if (p < b->n_pool) {
            const struct tw_data_example *e = tw_dataset_example(d, b->order[p]);
            const int32_t *ids = tw_dataset_ids(d, e);
            const uint8_t *m = tw_dataset_mask(d, e);
            int32_t c = e->len, rj = e->len + e->len_chosen;
            bt->n_trained +=
                place(bt, (size_t)r, 0, ids, m, e->len, ids + c, m + c, e->len_chosen);
            bt->n_trained += place(bt, (size_t)(b->B + r), 0, ids, m, e->len, ids + rj, m + rj,
                                   e->len_rejected);
            tc = e->len + e->len_chosen;
            tr = e->len + e->len_rejected;
            bt->n_examples++;
        }
        pad(bt, (size_t)r, tc, d->pad_id);
        pad(bt, (size_t)(b->B + r), tr, d->pad_id);
    }
}

static void fill_rows(struct tw_batcher *b, size_t bi)
{
    struct tw_batch *bt = &b->batch;
    const struct tw_dataset *d = b->d;
    for (int32_t r = 0; r < b->B; r++) {
        size_t row = bi * (size_t)b->B + (size_t)r;
        int32_t t = 0;
        size_t first = row < b->n_rows ? b->row_first[row] : 0;
        size_t last = row < b->n_rows ? b->row_first[row + 1] : 0;
        for (size_t i = first; i < last; i++) {
            const struct tw_data_example *e = tw_dataset_example(d, b->order[i]);
            bt->n_trained += place(bt, (size_t)r, t, tw_dataset_ids(d, e), tw_dataset_mask(d, e),
                                   e->len, NULL, NULL, 0);
            t += e->len;
            bt->n_examples++;
        }
        pad(bt, (size_t)r, t, d->pad_id);
    }
}

bool tw_batcher_next(struct tw_batcher *b, const struct tw_batch **out)
{
    if (b->next >= b->n_batches)
        return false;
    size_t bi = b->next++;
    struct tw_batch *bt = &b->batch;
    bt->index = bi;
    bt->n_trained = 0;
    bt->n_examples = 0;
    if (is_dpo(b))
        fill_dpo(b, bi);
    else
        fill_rows(b, bi);
    *out = bt;
    return true;
}

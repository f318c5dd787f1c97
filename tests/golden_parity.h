// The parity checks of the golden tiny models against transformers, on any backend: for
// every decoder the tokenizer gives the same prompt ids, the logits of a full forward are
// within TOL (relative), and 64 greedy tokens through the KV cache are identical with each
// step's logits within TOL; batched steps of several sequences match the reference
// backend's; the BERT embedder gives sentence-transformers' embeddings and the cross-encoder
// its scores, within TOL. Used by tests/model/test_golden_models.c (the CPU backends) and
// tests/cuda/test_golden_cuda.c.
#ifndef TW_TEST_GOLDEN_PARITY_H
#define TW_TEST_GOLDEN_PARITY_H

#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "golden_models.h"
#include "model/context.h"
#include "model/embed.h"
#include "model/model.h"

#ifndef TOL
#define TOL 1e-4
#endif

// m on backend be: m itself on the CPU, else its copy in be's memory (golden_off closes both).
static struct tw_model *golden_on(struct tw_model *m, struct tw_backend *be)
{
    if (be->device == TW_DEVICE_CPU)
        return m;
    struct tw_model *d = NULL;
    REQUIRE(tw_model_to_backend(m, be, &d) == 0);
    return d;
}

static void golden_off(struct tw_model *host, struct tw_model *m)
{
    if (m != host)
        tw_model_close(m);
    tw_model_close(host);
}

static void check_rows(const char *what, const float *got, const float *want, size_t rows,
                       size_t V)
{
    double worst = 0;
    for (size_t r = 0; r < rows; r++) {
        double e = golden_rel(got + r * V, want + r * V, V);
        worst = e > worst ? e : worst;
    }
    if (worst > TOL)
        fprintf(stderr, "%s: relative error %g\n", what, worst);
    CHECK(worst <= TOL);
}

static void decoder(const char *name, struct tw_backend *be)
{
    struct golden g;
    golden_open(&g, name);
    struct tw_model *host = NULL, *m = NULL;
    test_need_source(tw_model_open(g.dir, &host) == 0, g.dir);
    m = golden_on(host, be);
    CHECK_EQ_STR(m->arch_name, json_string_value(json_object_get(g.exp, "class")));
    size_t V = (size_t)m->cfg.n_vocab, n;
    tw_vec ids, want;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&want, sizeof(int32_t));

    // The prompt: ids, then every position's logits in one forward.
    const char *prompt = json_string_value(json_object_get(g.exp, "prompt"));
    golden_ids(json_object_get(g.exp, "prompt_ids"), &want);
    CHECK_OK(tw_tokenizer_encode(m->tok, prompt, strlen(prompt), TW_TOK_ADD_SPECIAL, &ids, NULL));
    CHECK(ids.len == want.len && memcmp(ids.data, want.data, ids.len * 4) == 0);
    tw_ctx *c = NULL;
    // Batches of 16: several steps. A capacity over 512 positions: the GPU's recorded decode
    // step splits the keys for it (attn.cu) and spreads the few there are over the splits.
    struct tw_ctx_params p = { .n_ctx = 1024, .n_batch = 16 };
    REQUIRE(tw_ctx_new(m, be, &p, &c) == 0);
    float *logits = tw_malloc_array(200 * V, sizeof(float));
    REQUIRE(logits);
    const float *exp_prompt = golden_array(&g, "logits_prompt", &n);
    REQUIRE(n == want.len * V);
    CHECK_OK(tw_ctx_decode(c, want.data, (int32_t)want.len, logits, true));
    char what[128];
    snprintf(what, sizeof what, "%s/%s prompt logits", name, be->ops->name);
    check_rows(what, logits, exp_prompt, want.len, V);

    // Greedy: 64 tokens through the cache, each step's logits against transformers'.
    const float *exp_greedy = golden_array(&g, "logits_greedy", &n);
    tw_vec exp_ids;
    tw_vec_init(&exp_ids, sizeof(int32_t));
    golden_ids(json_object_get(g.exp, "greedy_ids"), &exp_ids);
    REQUIRE(n == exp_ids.len * V);
    float *step = logits + (want.len - 1) * V; // the prompt's last row
    int same = 0;
    double worst = 0;
    for (size_t i = 0; i < exp_ids.len; i++) {
        worst = fmax(worst, golden_rel(step, exp_greedy + i * V, V));
        int32_t best = 0;
        for (size_t v = 1; v < V; v++)
            if (step[v] > step[best])
                best = (int32_t)v;
        if (best != ((int32_t *)exp_ids.data)[i])
            break;
        same++;
        CHECK_OK(tw_ctx_decode(c, &best, 1, logits, false));
        step = logits;
    }
    if (same != (int)exp_ids.len || worst > TOL)
        fprintf(stderr, "%s/%s greedy: %d of %zu tokens equal, worst step error %g\n", name,
                be->ops->name, same, exp_ids.len, worst);
    CHECK_EQ_INT(same, exp_ids.len);
    CHECK(worst <= TOL);

    // The chat: a rendered conversation re-using nothing of the cache but its first token.
    const char *chat = json_string_value(json_object_get(g.exp, "chat_text"));
    golden_ids(json_object_get(g.exp, "chat_ids"), &want);
    tw_vec_clear(&ids);
    CHECK_OK(tw_tokenizer_encode(m->tok, chat, strlen(chat), 0, &ids, NULL));
    CHECK(ids.len == want.len && memcmp(ids.data, want.data, ids.len * 4) == 0);
    const float *exp_chat = golden_array(&g, "logits_chat", &n);
    REQUIRE(n == want.len * V && want.len <= 200);
    tw_ctx_truncate(c, 0);
    CHECK_OK(tw_ctx_decode(c, want.data, (int32_t)want.len, logits, true));
    snprintf(what, sizeof what, "%s/%s chat logits", name, be->ops->name);
    check_rows(what, logits, exp_chat, want.len, V);

    // Prefix reuse: the same chat again keeps all but its last token from the cache.
    int32_t reused = -1;
    CHECK_OK(tw_ctx_prefill(c, want.data, (int32_t)want.len, logits, &reused));
    CHECK_EQ_INT(reused, want.len - 1);
    check_rows(what, logits, exp_chat + (want.len - 1) * V, 1, V);

    tw_free(logits);
    tw_vec_free(&ids), tw_vec_free(&want), tw_vec_free(&exp_ids);
    tw_ctx_free(c);
    golden_off(host, m);
    golden_close(&g);
}

// Batched steps as the server runs them (tw_ctx_decode_runs) on be against the reference
// backend running the same steps: three sequences, six steps that mix a decode token with
// prompt chunks (the GPU pads such a step, runs it op by op, then records it and replays it),
// then (sequence 1 cut back to 5 tokens) six of one token each; every run's logits within TOL
// of the reference's. be's cache has pages of 4 positions in a pool of one sequence's size
// (the sequences' pages interleave, and sequence 1's freed ones are taken again); the
// reference's, the defaults.
static void batched(const char *name, struct tw_backend *be)
{
    struct golden g;
    golden_open(&g, name);
    struct tw_model *host = NULL, *m = NULL;
    test_need_source(tw_model_open(g.dir, &host) == 0, g.dir);
    m = golden_on(host, be);
    size_t V = (size_t)m->cfg.n_vocab;
    struct tw_ctx_params p = { .n_ctx = 96, .n_batch = 64, .n_seq = 3 };
    struct tw_ctx_params pp = { .n_ctx = 96, .n_batch = 64, .n_seq = 3, .page = 4, .n_kv = 96 };
    tw_ctx *c = NULL, *r = NULL;
    REQUIRE(tw_ctx_new(m, be, &pp, &c) == 0);
    REQUIRE(tw_ctx_new(host, tw_backend_cpu_ref(), &p, &r) == 0);
    float *got = tw_malloc_array(3 * V, sizeof(float)), *want = tw_malloc_array(3 * V, 4);
    REQUIRE(got && want);
    int32_t tok[64];
    for (int i = 0; i < 64; i++)
        tok[i] = (int32_t)((i * 37 + 11) % (int)V);
    for (int step = 0; step < 12; step++) {
        if (step == 6) {
            tw_ctx_seq_truncate(c, 1, 5);
            tw_ctx_seq_truncate(r, 1, 5);
        }
        struct tw_ctx_run runs[3];
        const int32_t lens[3] = { 1, step < 6 ? 3 : 1, step < 6 ? 2 : 1 };
        for (int s = 0; s < 3; s++)
            runs[s] = (struct tw_ctx_run){ s, lens[s], tok + (step * 7 + s * 5) % 48 };
        CHECK_OK(tw_ctx_decode_runs(c, runs, 3, got));
        CHECK_OK(tw_ctx_decode_runs(r, runs, 3, want));
        char what[128];
        snprintf(what, sizeof what, "%s/%s batched step %d", name, be->ops->name, step);
        check_rows(what, got, want, 3, V);
    }
    tw_free(got), tw_free(want);
    tw_ctx_free(c);
    tw_ctx_free(r);
    golden_off(host, m);
    golden_close(&g);
}

static void embedder(struct tw_backend *be)
{
    struct golden g;
    golden_open(&g, "bert_embed");
    struct tw_model *host = NULL, *m = NULL;
    test_need_source(tw_model_open(g.dir, &host) == 0, g.dir);
    m = golden_on(host, be);
    CHECK(m->cfg.arch == TW_ARCH_BERT && m->cfg.pooling == TW_POOL_MEAN && m->cfg.normalize);
    CHECK_EQ_INT(m->cfg.max_seq, 128);
    tw_ctx *c = NULL;
    REQUIRE(tw_ctx_new(m, be, NULL, &c) == 0);
    size_t n, C = (size_t)m->cfg.n_embd;
    const float *exp = golden_array(&g, "embeddings", &n);
    json_t *sent = json_object_get(g.exp, "sentences"), *all_ids = json_object_get(g.exp, "ids");
    REQUIRE(n == json_array_size(sent) * C);
    tw_vec ids, want;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&want, sizeof(int32_t));
    float *out = tw_malloc_array(C, sizeof(float));
    for (size_t i = 0; i < json_array_size(sent); i++) {
        const char *s = json_string_value(json_array_get(sent, i));
        golden_ids(json_array_get(all_ids, i), &want);
        CHECK_OK(tw_embed_tokenize(m, s, strlen(s), &ids));
        CHECK(ids.len == want.len && memcmp(ids.data, want.data, ids.len * 4) == 0);
        CHECK_OK(tw_embed_text(c, m, s, strlen(s), out));
        double e = golden_rel(out, exp + i * C, C);
        if (e > TOL)
            fprintf(stderr, "bert_embed/%s sentence %zu: error %g\n", be->ops->name, i, e);
        CHECK(e <= TOL);
    }
    // All sentences again in one batch (several passes when the batch holds fewer).
    size_t ns = json_array_size(sent);
    int32_t **all = tw_calloc(ns, sizeof *all), *lens = tw_calloc(ns, sizeof *lens);
    float *outs = tw_malloc_array(ns * C, sizeof(float));
    REQUIRE(all && lens && outs);
    for (size_t i = 0; i < ns; i++) {
        golden_ids(json_array_get(all_ids, i), &want);
        all[i] = tw_malloc_array(want.len, sizeof(int32_t));
        REQUIRE(all[i]);
        memcpy(all[i], want.data, want.len * sizeof(int32_t));
        lens[i] = (int32_t)want.len;
    }
    for (int pass = 0; pass < 2; pass++) {
        tw_ctx *cb = NULL;
        // Pass 0: a batch that holds every sentence; pass 1: one that holds the longest only.
        struct tw_ctx_params bp = { .n_batch = pass == 0 ? 4096 : 1 };
        REQUIRE(tw_ctx_new(m, be, &bp, &cb) == 0);
        CHECK_OK(tw_ctx_embed_batch(cb, (const int32_t *const *)all, lens, (int)ns, outs));
        for (size_t i = 0; i < ns; i++) {
            double e = golden_rel(outs + i * C, exp + i * C, C);
            if (e > TOL)
                fprintf(stderr, "bert_embed/%s batch %d sentence %zu: error %g\n", be->ops->name,
                        pass, i, e);
            CHECK(e <= TOL);
        }
        tw_ctx_free(cb);
    }
    for (size_t i = 0; i < ns; i++)
        tw_free(all[i]);
    tw_free(all), tw_free(lens), tw_free(outs);
    tw_free(out);
    tw_vec_free(&ids), tw_vec_free(&want);
    tw_ctx_free(c);
    golden_off(host, m);
    golden_close(&g);
}

static void reranker(struct tw_backend *be)
{
    struct golden g;
    golden_open(&g, "bert_rerank");
    struct tw_model *host = NULL, *m = NULL;
    test_need_source(tw_model_open(g.dir, &host) == 0, g.dir);
    m = golden_on(host, be);
    CHECK(m->cfg.arch == TW_ARCH_BERT_CLS && m->cfg.n_labels == 1);
    tw_ctx *c = NULL;
    REQUIRE(tw_ctx_new(m, be, NULL, &c) == 0);
    size_t n;
    const float *exp = golden_array(&g, "scores", &n);
    const char *q = json_string_value(json_object_get(g.exp, "query"));
    json_t *docs = json_object_get(g.exp, "passages");
    REQUIRE(n == json_array_size(docs));
    tw_vec ids, types, want;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&types, sizeof(int32_t));
    tw_vec_init(&want, sizeof(int32_t));
    double scale = 0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(exp[i]));
    for (size_t i = 0; i < n; i++) {
        const char *d = json_string_value(json_array_get(docs, i));
        CHECK_OK(tw_rerank_tokenize(m, q, strlen(q), d, strlen(d), &ids, &types));
        golden_ids(json_array_get(json_object_get(g.exp, "input_ids"), i), &want);
        CHECK(ids.len == want.len && memcmp(ids.data, want.data, ids.len * 4) == 0);
        golden_ids(json_array_get(json_object_get(g.exp, "token_type_ids"), i), &want);
        CHECK(types.len == want.len && memcmp(types.data, want.data, types.len * 4) == 0);
        float s = 0;
        CHECK_OK(tw_rerank_score(c, m, q, strlen(q), d, strlen(d), &s));
        double e = fabs(s - exp[i]) / (scale > 0 ? scale : 1);
        if (e > TOL)
            fprintf(stderr, "bert_rerank/%s passage %zu: %g vs %g\n", be->ops->name, i, s, exp[i]);
        CHECK(e <= TOL);
    }
    tw_vec_free(&ids), tw_vec_free(&types), tw_vec_free(&want);
    tw_ctx_free(c);
    golden_off(host, m);
    golden_close(&g);
}

#endif

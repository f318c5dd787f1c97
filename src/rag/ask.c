// Implements ask.h: the RAG inference pipeline step by step, each step timed and traced.
#include "rag/ask.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/mem.h"
#include "model/embed.h"
#include "rag/selfquery.h"
#include "store/traces.h"

const char *const tw_rag_system_prompt =
    "You are the writing twin of the authors of the sources you are given: answer as they "
    "would write, in their voice, with the knowledge in the sources. Use the sources as the "
    "primary source of information and cite them by number, as [1]. If the sources do not "
    "hold the answer, say so.";

void tw_rag_options_default(struct tw_rag_options *o)
{
    memset(o, 0, sizeof *o);
    o->k = 3;
    o->expand = 3;
    o->self_query = true;
    o->trace = true;
    o->mode = TW_SEARCH_HYBRID;
    o->depth = 20;
    o->rerank_depth = 12;
    tw_sampler_params_default(&o->gen.sampling);
    // The reference's generation settings (REFERENCE.md, "RAG inference").
    o->gen.sampling.temperature = 0.01f;
    o->gen.sampling.top_p = 0.9f;
    o->gen.sampling.top_k = 0;
    o->gen.sampling.min_p = 0;
    o->gen.sampling.repetition_penalty = 1.1f;
    o->gen.max_tokens = 150;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

// ---- the LLM through its chat template

struct collect {
    tw_str *reply;
    tw_gen_fn stream;
    void *stream_ud;
};

static int collect_piece(void *ud, const char *text, size_t len)
{
    struct collect *c = ud;
    if (tw_str_append(c->reply, text, len))
        return 1;
    return c->stream ? c->stream(c->stream_ud, text, len) : 0;
}

// The answering model and its context: the session's, else what the caller of llm_fn gave.
static const struct tw_model *llm_model(const struct tw_rag *rag)
{
    return rag->llm ? rag->llm->m : rag->llm_model;
}

static int32_t llm_ctx(const struct tw_rag *rag)
{
    return rag->llm ? tw_ctx_n_ctx(rag->llm->c) : rag->llm_ctx;
}

// Renders [system, user] with the template, leaving room for the reply.
static int render(const struct tw_rag *rag, const char *system, const char *user, tw_vec *ids)
{
    struct tw_chat_msg msgs[2] = { { "system", system }, { "user", user } };
    return tw_chat_encode(llm_model(rag), rag->family, msgs, 2, ids);
}

static int llm_template(const struct tw_rag *rag, const char *system, const char *user,
                        const struct tw_gen_params *p, tw_gen_fn stream, void *stream_ud,
                        tw_str *reply, int32_t *n_prompt, int32_t *n_gen)
{
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    int rc = render(rag, system, user, &ids);
    struct collect c = { reply, stream, stream_ud };
    struct tw_gen_result res;
    if (!rc)
        rc = tw_generate(rag->llm->c, rag->llm->m, ids.data, (int32_t)ids.len, p, collect_piece,
                         &c, &res);
    if (!rc) {
        if (n_prompt)
            *n_prompt = res.n_prompt;
        if (n_gen)
            *n_gen = res.n_gen;
        tw_gen_result_free(&res);
    }
    tw_vec_free(&ids);
    return rc;
}

static bool has_llm(const struct tw_rag *rag)
{
    return rag->llm_fn || rag->llm;
}

static int call_llm(const struct tw_rag *rag, const char *system, const char *user,
                    const struct tw_gen_params *p, tw_gen_fn stream, void *stream_ud,
                    tw_str *reply, int32_t *n_prompt, int32_t *n_gen)
{
    tw_str_clear(reply);
    if (n_prompt)
        *n_prompt = 0;
    if (n_gen)
        *n_gen = 0;
    if (rag->llm_fn)
        return rag->llm_fn(rag->llm_ud, system, user, p, stream, stream_ud, reply, n_prompt,
                           n_gen);
    return llm_template(rag, system, user, p, stream, stream_ud, reply, n_prompt, n_gen);
}

// The settings of the helper calls (self-query, expansion): greedy, short.
static struct tw_gen_params helper_params(int32_t max_tokens)
{
    struct tw_gen_params p = { .max_tokens = max_tokens };
    tw_sampler_params_default(&p.sampling);
    p.sampling.temperature = 0;
    return p;
}

// ---- the run's state

struct run {
    struct tw_home *h;
    const struct tw_rag *rag;
    const struct tw_rag_options *opt;
    const char *question;
    json_t *trace, *lat; // the trace object and its "latency_ms"
    tw_str reply;
    // filters
    const char **authors;
    size_t n_authors;
    const char *category;
    // queries
    char **queries;
    size_t n_queries; // queries[0] is the question (not owned), the rest owned
    // candidates
    tw_vec fused; // struct tw_rag_hit
    struct tw_rag_source *src;
    size_t n_src;
    int32_t n_prompt, n_gen;
};

static json_t *hits_json(const struct tw_rag_hit *h, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("[I,f]", (json_int_t)h[i].chunk, h[i].score));
    return a;
}

static json_t *strs_json(const char *const *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(s[i]));
    return a;
}

static const char *const categories[] = { TW_SELFQUERY_CATEGORIES };

// ---- 1. self-query

static int self_query(struct run *x)
{
    double t0 = now_ms();
    size_t n_names;
    const char *const *names = tw_retriever_authors(x->rag->r, &n_names);
    const tw_authors *am = tw_retriever_matcher(x->rag->r);
    json_t *step = json_object();
    int rc = 0;
    x->category = x->opt->category;
    if (!(x->authors = tw_malloc_array(n_names ? n_names : 1, sizeof *x->authors)))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (rc)
        goto out;
    if (x->opt->author) {
        long a = tw_authors_find(am, x->opt->author);
        if (a < 0) {
            rc = tw_error_set(TW_EINVAL,
                              "--author '%s': not an author of the feature store (twin "
                              "authors ls lists them)",
                              x->opt->author);
            goto out;
        }
        x->authors[x->n_authors++] = names[a];
        json_object_set_new(step, "method", json_string("option"));
    } else if (x->opt->self_query) {
        bool done = false;
        if (has_llm(x->rag)) {
            tw_str prompt;
            tw_str_init(&prompt);
            struct tw_gen_params p = helper_params(64);
            struct tw_selfquery sq;
            rc = tw_selfquery_prompt(x->question, names, n_names, &prompt);
            if (!rc)
                rc = call_llm(x->rag, "You extract search filters and answer in JSON only.",
                              tw_str_cstr(&prompt), &p, NULL, NULL, &x->reply, NULL, NULL);
            if (!rc)
                rc = tw_selfquery_parse(am, tw_str_cstr(&x->reply), x->reply.v.len, &sq);
            tw_str_free(&prompt);
            if (rc)
                goto out;
            json_object_set_new(step, "llm_reply", json_string(tw_str_cstr(&x->reply)));
            json_object_set_new(step, "valid", json_boolean(sq.valid));
            if (sq.valid) {
                done = true;
                json_object_set_new(step, "method", json_string("llm"));
                if (sq.author >= 0)
                    x->authors[x->n_authors++] = names[sq.author];
                if (sq.category >= 0 && !x->category)
                    x->category = categories[sq.category];
            } else {
                json_object_set_new(step, "error", json_string(sq.error));
            }
        }
        if (!done) { // the deterministic fallback
            size_t *idx = NULL, n = 0;
            if ((rc = tw_authors_match(am, x->question, &idx, &n)))
                goto out;
            for (size_t i = 0; i < n; i++)
                x->authors[x->n_authors++] = names[idx[i]];
            tw_free(idx);
            int c = tw_selfquery_category(x->question);
            if (c >= 0 && !x->category)
                x->category = categories[c];
            json_object_set_new(step, "method", json_string("fallback"));
        }
    } else {
        json_object_set_new(step, "method", json_string("off"));
    }
out:
    json_object_set_new(step, "authors", strs_json(x->authors, x->n_authors));
    json_object_set_new(step, "category", x->category ? json_string(x->category) : json_null());
    json_object_set_new(x->trace, "self_query", step);
    json_object_set_new(x->lat, "self_query", json_real(now_ms() - t0));
    return rc;
}

// ---- 2. query expansion

static int expand(struct run *x)
{
    double t0 = now_ms();
    json_t *step = json_object();
    int rc = 0;
    char **more = NULL;
    size_t n_more = 0;
    if (x->opt->expand > 1 && has_llm(x->rag)) {
        tw_str prompt;
        tw_str_init(&prompt);
        struct tw_gen_params p = helper_params(256);
        rc = tw_expand_prompt(x->question, x->opt->expand, &prompt);
        if (!rc)
            rc = call_llm(x->rag, "You rewrite search queries.", tw_str_cstr(&prompt), &p, NULL,
                          NULL, &x->reply, NULL, NULL);
        if (!rc) {
            json_object_set_new(step, "llm_reply", json_string(tw_str_cstr(&x->reply)));
            rc = tw_expand_parse(x->question, tw_str_cstr(&x->reply), x->reply.v.len,
                                 (size_t)x->opt->expand - 1, &more, &n_more);
        }
        tw_str_free(&prompt);
    }
    if (!rc && !(x->queries = tw_malloc_array(1 + n_more, sizeof *x->queries)))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc) {
        x->queries[0] = (char *)x->question;
        for (size_t i = 0; i < n_more; i++)
            x->queries[1 + i] = more[i];
        x->n_queries = 1 + n_more;
        tw_free(more); // the strings moved to x->queries
    } else {
        tw_expand_free(more, n_more);
    }
    json_object_set_new(step, "queries",
                        strs_json((const char *const *)x->queries, x->queries ? x->n_queries : 0));
    json_object_set_new(x->trace, "expand", step);
    json_object_set_new(x->lat, "expand", json_real(now_ms() - t0));
    return rc;
}

// ---- 3. retrieval per query, and fusion across them

static int retrieve_one(struct run *x, const char *q, const struct tw_rag_filter *f,
                        uint32_t depth, struct tw_rag_lists *l, tw_vec *list, json_t *step)
{
    int rc = tw_retriever_query(x->rag->r, q, x->opt->mode, f, depth, l, list);
    if (rc)
        return rc;
    json_t *o = json_pack("{s:s,s:s}", "query", q, "mode", tw_search_mode_name(l->used));
    if (l->used != TW_SEARCH_DENSE)
        json_object_set_new(o, "sparse", hits_json(l->sparse, l->n_sparse));
    if (l->used != TW_SEARCH_SPARSE) {
        json_object_set_new(o, "dense", hits_json(l->dense, l->n_dense));
        json_object_set_new(o, "embed_ms", json_real(l->embed_ms));
    }
    json_array_append_new(step, o);
    return 0;
}

static int retrieve(struct run *x)
{
    double t0 = now_ms();
    struct tw_rag_filter f = { x->authors, x->n_authors, x->category };
    uint32_t d = x->opt->depth ? x->opt->depth : 20;
    struct tw_rag_lists l = { .sparse = tw_malloc_array(d, sizeof *l.sparse),
                              .dense = tw_malloc_array(d, sizeof *l.dense) };
    tw_vec *lists = tw_calloc(x->n_queries, sizeof *lists); // each query's ranking
    const struct tw_rag_hit **ls = tw_malloc_array(x->n_queries, sizeof *ls);
    size_t *lens = tw_malloc_array(x->n_queries, sizeof *lens);
    json_t *step = json_array();
    int rc =
        l.sparse && l.dense && lists && ls && lens ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; i < x->n_queries && lists; i++)
        tw_vec_init(&lists[i], sizeof(struct tw_rag_hit));
    for (size_t i = 0; !rc && i < x->n_queries; i++) {
        rc = retrieve_one(x, x->queries[i], &f, d, &l, &lists[i], step);
        ls[i] = lists[i].data;
        lens[i] = lists[i].len;
    }
    if (!rc && x->n_queries == 1) // one query: its own ranking, scores kept
        rc = tw_vec_append(&x->fused, ls[0], lens[0]) ? tw_error_set(TW_ENOMEM, "out of memory")
                                                      : 0;
    else if (!rc) // across the queries
        rc = tw_rrf_fuse(ls, lens, x->n_queries, &x->fused);
    for (size_t i = 0; i < x->n_queries && lists; i++)
        tw_vec_free(&lists[i]);
    tw_free(lists);
    tw_free(ls);
    tw_free(lens);
    tw_free(l.sparse);
    tw_free(l.dense);
    json_object_set_new(x->trace, "retrieve", step);
    size_t nf = x->fused.len < 50 ? x->fused.len : 50;
    json_object_set_new(x->trace, "fused", hits_json(x->fused.data, nf));
    json_object_set_new(x->lat, "retrieve", json_real(now_ms() - t0));
    return rc;
}

// ---- 4. reranking

static int cmp_rerank(const void *a, const void *b)
{
    const struct tw_rag_source *x = a, *y = b;
    if (x->rerank != y->rerank)
        return x->rerank > y->rerank ? -1 : 1;
    return (x->chunk.chunk > y->chunk.chunk) - (x->chunk.chunk < y->chunk.chunk);
}

static int rerank(struct run *x)
{
    double t0 = now_ms();
    const struct tw_rag *rag = x->rag;
    size_t k = x->opt->k ? x->opt->k : 3, depth = x->opt->rerank_depth;
    if (!rag->reranker || depth < k)
        depth = k; // without a reranker the fused order is final: read only the k kept
    size_t n = x->fused.len < depth ? x->fused.len : depth;
    x->src = n ? tw_calloc(n, sizeof *x->src) : NULL;
    int rc = n && !x->src ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
    json_t *step = json_array();
    for (size_t i = 0; !rc && i < n; i++) {
        const struct tw_rag_hit *hit = tw_vec_at(&x->fused, i);
        if ((rc = tw_retriever_chunk(rag->r, hit->chunk, &x->src[i].chunk)))
            break;
        x->n_src++;
        x->src[i].fused = hit->score;
        x->src[i].rerank = NAN;
        if (rag->reranker) {
            float logit;
            const char *t = x->src[i].chunk.text;
            rc = tw_rerank_score(rag->reranker->c, rag->reranker->m, x->question,
                                 strlen(x->question), t, strlen(t), &logit);
            x->src[i].rerank = logit;
        }
    }
    if (!rc && rag->reranker && x->n_src > 1)
        qsort(x->src, x->n_src, sizeof *x->src, cmp_rerank);
    for (size_t i = 0; i < x->n_src; i++) {
        json_t *o = json_pack("{s:I,s:f}", "chunk", (json_int_t)x->src[i].chunk.chunk, "fused",
                              x->src[i].fused);
        if (rag->reranker)
            json_object_set_new(o, "rerank", json_real(x->src[i].rerank));
        json_array_append_new(step, o);
    }
    for (size_t i = k; i < x->n_src; i++)
        tw_rag_chunk_clear(&x->src[i].chunk);
    if (x->n_src > k)
        x->n_src = k;
    json_object_set_new(x->trace, "rerank", step);
    json_object_set_new(x->lat, "rerank", json_real(now_ms() - t0));
    return rc ? tw_error_prefix("reranking") : 0;
}

// ---- 5. the prompt, within the context

int tw_rag_user_prompt(const char *question, const struct tw_rag_source *s, size_t n, tw_str *out)
{
    int rc = tw_str_printf(out, "Sources:\n\n");
    for (size_t i = 0; !rc && i < n; i++) {
        const struct tw_rag_chunk *c = &s[i].chunk;
        rc = tw_str_printf(out, "[%zu] %s, \"%s\" (%s)\n%s\n\n", i + 1, c->author,
                           c->title && *c->title ? c->title : "untitled", c->category, c->text);
    }
    if (!rc)
        rc = tw_str_printf(out,
                           "Answer the question with the sources above, citing them as [n].\n"
                           "Question: %s",
                           question);
    return rc ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
}

// Builds the user message into *out, dropping the lowest-ranked sources until the rendered
// prompt and the answer's tokens fit the LLM's context.
static int assemble(struct run *x, tw_str *out)
{
    double t0 = now_ms();
    int rc = 0;
    size_t dropped = 0;
    int32_t n_tokens = -1;
    for (;;) {
        tw_str_clear(out);
        if ((rc = tw_rag_user_prompt(x->question, x->src, x->n_src, out)))
            break;
        if (!llm_model(x->rag) || llm_ctx(x->rag) <= 0)
            break; // no template to measure with
        tw_vec ids;
        tw_vec_init(&ids, sizeof(int32_t));
        rc = render(x->rag, tw_rag_system_prompt, tw_str_cstr(out), &ids);
        n_tokens = (int32_t)ids.len;
        tw_vec_free(&ids);
        int32_t room = llm_ctx(x->rag) - (x->opt->gen.max_tokens > 0 ? x->opt->gen.max_tokens : 0);
        if (rc || n_tokens <= room)
            break;
        if (x->n_src == 0) {
            rc = tw_error_set(TW_ELIMIT,
                              "the question (%d tokens with the template) does not fit the "
                              "model's context of %d with %d tokens for the answer",
                              n_tokens, llm_ctx(x->rag), x->opt->gen.max_tokens);
            break;
        }
        tw_rag_chunk_clear(&x->src[--x->n_src].chunk);
        dropped++;
    }
    // tokens: null when there is no template to count with (no model)
    json_t *step =
        json_pack("{s:s,s:s,s:o,s:I}", "system", tw_rag_system_prompt, "user", tw_str_cstr(out),
                  "tokens", n_tokens >= 0 ? json_integer(n_tokens) : json_null(),
                  "sources_dropped", (json_int_t)dropped);
    json_object_set_new(x->trace, "prompt", step);
    json_object_set_new(x->lat, "prompt", json_real(now_ms() - t0));
    return rc;
}

// ---- 6. the answer

static int answer(struct run *x, const char *user)
{
    double t0 = now_ms();
    int rc = call_llm(x->rag, tw_rag_system_prompt, user, &x->opt->gen, x->opt->stream,
                      x->opt->stream_ud, &x->reply, &x->n_prompt, &x->n_gen);
    double ms = now_ms() - t0;
    json_object_set_new(x->lat, "generate", json_real(ms));
    json_object_set_new(x->trace, "generate",
                        json_pack("{s:i,s:i,s:f}", "prompt_tokens", (int)x->n_prompt,
                                  "completion_tokens", (int)x->n_gen, "tokens_per_s",
                                  ms > 0 ? 1e3 * x->n_gen / ms : 0.0));
    return rc ? tw_error_prefix("generating the answer") : 0;
}

// ---- the pipeline

static int write_trace(struct run *x, struct tw_rag_result *res, int rc, double total)
{
    struct tw_retriever_info info;
    tw_retriever_info(x->rag->r, &info);
    char status[512];
    snprintf(status, sizeof status, "%s", rc ? tw_error_msg() : "ok");
    json_object_set_new(x->lat, "total", json_real(total));
    json_object_set_new(x->trace, "latency_ms", x->lat);
    x->lat = NULL;
    json_object_set_new(x->trace, "status", json_string(status));
    char *detail = json_dumps(x->trace, JSON_COMPACT);
    struct tw_trace t = { .kind = "ask",
                          .question = x->question,
                          .answer = res->answer,
                          .model = x->rag->model_id,
                          .embed_model = info.embed_model,
                          .prompt_tokens = x->n_prompt,
                          .completion_tokens = x->n_gen,
                          .total_ms = total,
                          .status = status,
                          .detail = detail };
    int wrc = !detail         ? tw_error_set(TW_ENOMEM, "out of memory")
              : x->opt->trace ? tw_trace_put(x->h, &t)
                              : 0;
    free(detail);
    if (wrc == 0 && t.id) {
        res->trace_id = t.id;
        json_object_set_new(x->trace, "id", json_integer(t.id));
    }
    if (rc) // the pipeline's own error is the one to report
        tw_error_set(rc, "%s", status);
    return rc ? rc : wrc;
}

int tw_rag_ask(struct tw_home *h, const struct tw_rag *rag, const char *question,
               const struct tw_rag_options *opt, struct tw_rag_result *res)
{
    memset(res, 0, sizeof *res);
    double t0 = now_ms();
    struct run x = { .h = h, .rag = rag, .opt = opt, .question = question };
    tw_str_init(&x.reply);
    tw_vec_init(&x.fused, sizeof(struct tw_rag_hit));
    struct tw_retriever_info info;
    tw_retriever_info(rag->r, &info);
    x.trace = json_pack("{s:s,s:s?,s:s?}", "question", question, "model", rag->model_id,
                        "embed_model", info.embed_model);
    x.lat = json_object();
    if (!x.trace || !x.lat) {
        json_decref(x.trace);
        json_decref(x.lat);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    tw_str user;
    tw_str_init(&user);
    int rc = self_query(&x);
    if (!rc)
        rc = expand(&x);
    if (!rc)
        rc = retrieve(&x);
    if (!rc)
        rc = rerank(&x);
    if (!rc)
        rc = assemble(&x, &user);
    if (!rc && has_llm(rag)) {
        rc = answer(&x, tw_str_cstr(&user));
        if (!rc && !(res->answer = tw_strndup(tw_str_cstr(&x.reply), x.reply.v.len)))
            rc = tw_error_set(TW_ENOMEM, "out of memory");
        if (!rc)
            json_object_set_new(x.trace, "answer", json_string(res->answer));
    }
    json_t *srcs = json_array();
    for (size_t i = 0; i < x.n_src; i++) {
        const struct tw_rag_chunk *c = &x.src[i].chunk;
        json_array_append_new(srcs,
                              json_pack("{s:i,s:I,s:s,s:s,s:s,s:f}", "n", (int)i + 1, "chunk",
                                        (json_int_t)c->chunk, "document", c->document_id, "author",
                                        c->author, "title", c->title, "score", x.src[i].fused));
    }
    json_object_set_new(x.trace, "sources", srcs);
    res->prompt_tokens = x.n_prompt;
    res->completion_tokens = x.n_gen;
    rc = write_trace(&x, res, rc, now_ms() - t0);
    res->trace = x.trace;
    res->sources = x.src;
    res->n_sources = x.n_src;
    if (x.queries) {
        for (size_t i = 1; i < x.n_queries; i++)
            tw_free(x.queries[i]);
        tw_free(x.queries);
    }
    tw_free(x.authors);
    tw_str_free(&user);
    tw_str_free(&x.reply);
    tw_vec_free(&x.fused);
    json_decref(x.lat);
    if (rc)
        tw_rag_result_free(res);
    return rc;
}

void tw_rag_result_free(struct tw_rag_result *res)
{
    tw_free(res->answer);
    for (size_t i = 0; i < res->n_sources; i++)
        tw_rag_chunk_clear(&res->sources[i].chunk);
    tw_free(res->sources);
    json_decref(res->trace);
    memset(res, 0, sizeof *res);
}

// twin eval retrieval: recall@k and MRR of the RAG pipeline's retrieval (rag/ask.h without
// an LLM: self-query by the name matcher, retrieval, fusion, reranking) on labelled query
// sets (eval/retrieval.h), for each mode, with and without self-query filters and reranking,
// with the latency of each query.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/error.h"
#include "base/mem.h"
#include "base/vec.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "eval/retrieval.h"
#include "rag/ask.h"
#include "store/home.h"
#include "store/warehouse.h"

struct eval_args {
    const char *queries, *reranker, *modes;
    long generated, seed, threads;
    bool json, self_query_only;
};

// ---- the generated set: the warehouse's documents

static void doc_free(struct tw_eval_doc *e)
{
    tw_free((char *)e->uri);
    tw_free((char *)e->author);
    tw_free((char *)e->text);
}

// Appends a copy of d to the tw_vec of struct tw_eval_doc at ud.
static int add_doc(void *ud, const struct tw_wh_doc *d)
{
    struct tw_eval_doc e = { tw_strdup(d->uri), tw_strdup(d->author),
                             tw_strndup(d->content, d->content_len), d->content_len };
    if (!e.uri || !e.author || !e.text || tw_vec_push(ud, &e)) {
        doc_free(&e);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

static int generate(struct tw_home *h, const struct eval_args *a, struct tw_eval_query **q,
                    size_t *n)
{
    tw_vec ds;
    tw_vec_init(&ds, sizeof(struct tw_eval_doc));
    struct tw_wh_filter f = { .with_content = true };
    int rc = tw_wh_docs(h, &f, add_doc, &ds);
    if (!rc)
        rc = tw_eval_generate(ds.data, ds.len, (size_t)a->generated, (uint64_t)a->seed, q, n);
    for (size_t i = 0; i < ds.len; i++)
        doc_free(tw_vec_at(&ds, i));
    tw_vec_free(&ds);
    return rc;
}

// ---- one configuration over one set

struct row {
    const char *set, *mode;
    bool self_query, rerank;
    size_t n;
    double recall[TW_EVAL_NK], mrr, p50, p99;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_config(struct tw_home *h, const struct tw_rag *rag, const struct tw_eval_query *q,
                      size_t nq, enum tw_search_mode mode, bool self_query, struct row *out)
{
    struct tw_rag_options o;
    tw_rag_options_default(&o);
    o.k = 10;
    o.expand = 1;
    o.self_query = self_query;
    o.mode = mode;
    o.trace = false;
    o.rerank_depth = 30;
    struct tw_eval_acc acc = { 0 };
    double *ms = tw_malloc_array(nq ? nq : 1, sizeof *ms);
    const char *uris[10];
    int rc = ms ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < nq; i++) {
        struct tw_rag_result res;
        if ((rc = tw_rag_ask(h, rag, q[i].question, &o, &res)))
            break;
        for (size_t j = 0; j < res.n_sources && j < 10; j++)
            uris[j] = res.sources[j].chunk.uri;
        tw_eval_score(&q[i], uris, res.n_sources < 10 ? res.n_sources : 10, &acc);
        ms[i] =
            json_real_value(json_object_get(json_object_get(res.trace, "latency_ms"), "total"));
        tw_rag_result_free(&res);
    }
    if (!rc) {
        tw_eval_means(&acc, out->recall, &out->mrr);
        out->n = acc.n;
        qsort(ms, nq, sizeof *ms, cmp_double);
        out->p50 = nq ? ms[nq / 2] : 0;
        out->p99 = nq ? ms[(size_t)((double)(nq - 1) * 0.99)] : 0;
    }
    tw_free(ms);
    return rc;
}

static void print_row(const struct row *r, bool json)
{
    if (json) {
        json_t *o = json_pack("{s:s,s:s,s:b,s:b,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "set", r->set,
                              "mode", r->mode, "self_query", r->self_query, "rerank", r->rerank,
                              "queries", (json_int_t)r->n, "recall@1", r->recall[0], "recall@3",
                              r->recall[1], "recall@5", r->recall[2], "recall@10", r->recall[3],
                              "mrr", r->mrr, "p50_ms", r->p50, "p99_ms", r->p99);
        tw_cli_print_json(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        return;
    }
    printf("%-10s %-7s %-5s %-6s %5zu %6.3f %6.3f %6.3f %6.3f %6.3f %8.2f %8.2f\n", r->set,
           r->mode, r->self_query ? "yes" : "no", r->rerank ? "yes" : "no", r->n, r->recall[0],
           r->recall[1], r->recall[2], r->recall[3], r->mrr, r->p50, r->p99);
}

// ---- the command

static int parse(const struct tw_verb *v, int argc, char **argv, struct eval_args *a)
{
    if (argc < 2 || strcmp(argv[1], "retrieval") != 0)
        return tw_cli_usage_error(v, "give what to evaluate: retrieval");
    for (int i = 2; i < argc; i++) {
        const char *val;
        int urc;
        if (tw_cli_opt(argc, argv, &i, "--queries", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--queries needs a FILE");
            a->queries = val;
        } else if (tw_cli_opt(argc, argv, &i, "--generated", &val)) {
            if ((urc = tw_cli_opt_long(v, "--generated", val, 0, 1000000, &a->generated)))
                return urc;
        } else if (tw_cli_opt(argc, argv, &i, "--seed", &val)) {
            if ((urc = tw_cli_opt_long(v, "--seed", val, 0, 1L << 62, &a->seed)))
                return urc;
        } else if (tw_cli_opt(argc, argv, &i, "--threads", &val)) {
            if ((urc = tw_cli_opt_long(v, "--threads", val, 1, 4096, &a->threads)))
                return urc;
        } else if (tw_cli_opt(argc, argv, &i, "--mode", &val)) {
            enum tw_search_mode m;
            if (!val || (strcmp(val, "all") != 0 && !tw_search_mode_parse(val, &m)))
                return tw_cli_usage_error(v, "--mode is sparse, dense, hybrid or all");
            a->modes = val;
        } else if (tw_cli_opt(argc, argv, &i, "--reranker", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--reranker needs a PATH");
            a->reranker = val;
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!a->queries && a->generated == 0)
        return tw_cli_usage_error(v, "give --queries FILE, --generated N, or both");
    return TW_EXIT_OK;
}

// Every configuration over one set.
static int eval_set(struct tw_home *h, struct tw_rag *rag, struct tw_session *rr,
                    const struct eval_args *a, const char *set, const struct tw_eval_query *q,
                    size_t nq)
{
    struct tw_retriever_info info;
    tw_retriever_info(rag->r, &info);
    static const enum tw_search_mode all[] = { TW_SEARCH_SPARSE, TW_SEARCH_DENSE,
                                               TW_SEARCH_HYBRID };
    int rc = 0;
    for (size_t m = 0; !rc && m < 3; m++) {
        const char *name = tw_search_mode_name(all[m]);
        if (strcmp(a->modes, "all") != 0 && strcmp(a->modes, name) != 0)
            continue;
        if (all[m] != TW_SEARCH_SPARSE && !info.embed_model)
            continue; // no dense index: hybrid would be sparse again
        for (int rerank = 0; !rc && rerank <= (rr->m != NULL); rerank++) {
            rag->reranker = rerank ? rr : NULL;
            for (int sq = 0; !rc && sq < 2; sq++) {
                struct row row = { .set = set, .mode = name, .self_query = sq, .rerank = rerank };
                if (!(rc = run_config(h, rag, q, nq, all[m], sq, &row)))
                    print_row(&row, a->json);
            }
        }
    }
    return rc;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_eval;
    struct eval_args a = { .modes = "all", .seed = 42 };
    int urc = parse(v, argc, argv, &a);
    if (urc)
        return urc;
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    struct tw_rag rag = { 0 };
    struct tw_session rr = { 0 };
    struct tw_eval_query *hand = NULL, *gen = NULL;
    size_t n_hand = 0, n_gen = 0;
    int rc = tw_retriever_open(h, (int)a.threads, &rag.r);
    if (!rc && a.reranker)
        rc = tw_session_open(a.reranker, (int)a.threads, 0, &rr);
    if (!rc && a.queries)
        rc = tw_eval_queries_load(a.queries, &hand, &n_hand);
    if (!rc && a.generated)
        rc = generate(h, &a, &gen, &n_gen);
    if (!rc && !a.json)
        printf("%-10s %-7s %-5s %-6s %5s %6s %6s %6s %6s %6s %8s %8s\n", "set", "mode", "self",
               "rerank", "n", "R@1", "R@3", "R@5", "R@10", "MRR", "p50 ms", "p99 ms");
    if (!rc && n_hand)
        rc = eval_set(h, &rag, &rr, &a, "hand", hand, n_hand);
    if (!rc && n_gen)
        rc = eval_set(h, &rag, &rr, &a, "generated", gen, n_gen);
    tw_eval_queries_free(hand, n_hand);
    tw_eval_queries_free(gen, n_gen);
    tw_session_close(&rr);
    tw_retriever_free(rag.r);
    tw_home_close(h);
    if (rc)
        return tw_cli_fail();
    return tw_cli_flush_stdout() ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_eval = {
    .name = "eval",
    .summary = "evaluate retrieval: recall@k and MRR on labelled questions",
    .usage = "usage: twin [--home DIR] eval retrieval [--queries FILE] [--generated N]\n"
             "                  [--seed 42] [--mode sparse|dense|hybrid|all] [--reranker PATH]\n"
             "                  [--threads N] [--json]\n\n"
             "Runs each labelled question through the RAG pipeline's retrieval (no LLM: the\n"
             "self-query is the name matcher's, no expansion; 10 sources) and scores the\n"
             "sources' documents against the question's relevant ones: recall at 1, 3, 5, 10\n"
             "and the mean reciprocal rank, with the median and 99th-percentile latency per\n"
             "question. --queries: a JSON Lines set ({\"id\", \"question\", \"relevant\": [URI\n"
             "parts], \"author\"}); --generated N: N questions made from the warehouse's own\n"
             "sentences (seeded). Each mode (dense and hybrid need an embedding model in the\n"
             "feature run) runs without and with self-query filters, and with the reranker too\n"
             "when one is given.\n",
    .run = run,
};

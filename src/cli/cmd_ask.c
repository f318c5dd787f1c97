// twin ask: a question through the RAG pipeline (rag/ask.h) — self-query, expansion,
// retrieval, reranking, prompt, answer — with the sources printed and the run traced.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/model_args.h"
#include "cli/text_args.h"
#include "rag/ask.h"
#include "store/home.h"
#include "store/registry.h"

struct ask_args {
    struct tw_cli_model llm;
    struct tw_rag_options o;
    const char *question, *reranker, *template;
    bool json, show_context;
};

static int put(void *ud, const char *text, size_t len)
{
    (void)ud;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

// Parses the verb's own options; -1 when argv[*i] is not one of them.
static int own_opt(const struct tw_verb *v, int argc, char **argv, int *i, struct ask_args *a)
{
    const char *val;
    long n;
    int urc;
    if (tw_cli_opt(argc, argv, i, "--author", &val)) {
        if (!val || !*val)
            return tw_cli_usage_error(v, "--author needs a NAME");
        a->o.author = val;
    } else if (tw_cli_opt(argc, argv, i, "--category", &val)) {
        if (!val || !*val)
            return tw_cli_usage_error(v, "--category needs a name");
        a->o.category = val;
    } else if (tw_cli_opt(argc, argv, i, "--k", &val)) {
        if ((urc = tw_cli_opt_long(v, "--k", val, 1, 100, &n)))
            return urc;
        a->o.k = (uint32_t)n;
    } else if (tw_cli_opt(argc, argv, i, "--expand", &val)) {
        if ((urc = tw_cli_opt_long(v, "--expand", val, 1, 10, &n)))
            return urc;
        a->o.expand = (int)n;
    } else if (strcmp(argv[*i], "--no-expand") == 0) {
        a->o.expand = 1;
    } else if (strcmp(argv[*i], "--no-self-query") == 0) {
        a->o.self_query = false;
    } else if (tw_cli_opt(argc, argv, i, "--mode", &val)) {
        if (!tw_search_mode_parse(val, &a->o.mode))
            return tw_cli_usage_error(v, "--mode is dense, sparse or hybrid");
    } else if (tw_cli_opt(argc, argv, i, "--reranker", &val)) {
        if (!val || !*val)
            return tw_cli_usage_error(v, "--reranker needs a PATH");
        a->reranker = val;
    } else if (tw_cli_opt(argc, argv, i, "--template", &val)) {
        if (!val || !*val)
            return tw_cli_usage_error(v, "--template needs a NAME");
        a->template = val;
    } else if (strcmp(argv[*i], "--show-context") == 0) {
        a->show_context = true;
    } else if (strcmp(argv[*i], "--json") == 0) {
        a->json = true;
    } else {
        return -1;
    }
    return TW_EXIT_OK;
}

static int parse(const struct tw_verb *v, int argc, char **argv, struct ask_args *a)
{
    for (int i = 1; i < argc; i++) {
        int r = tw_cli_model_opt(v, argc, argv, &i, &a->llm, true);
        if (r == -1)
            r = own_opt(v, argc, argv, &i, a);
        if (r == TW_EXIT_USAGE)
            return r;
        if (r == TW_EXIT_OK)
            continue;
        if (argv[i][0] == '-' && argv[i][1])
            return tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        if (a->question)
            return tw_cli_usage_error(v, "unexpected argument '%s' (quote the question)", argv[i]);
        a->question = argv[i];
    }
    if (!a->question || !*a->question)
        return tw_cli_usage_error(v, "give a QUESTION");
    return TW_EXIT_OK;
}

static void print_sources(const struct tw_rag_result *res, bool full)
{
    printf("\nSources:\n");
    for (size_t i = 0; i < res->n_sources; i++) {
        const struct tw_rag_source *s = &res->sources[i];
        const struct tw_rag_chunk *c = &s->chunk;
        printf("[%zu] %s, %s (%s) — chunk %lld, fused %.4f", i + 1, c->author, c->title,
               c->category, (long long)c->chunk, s->fused);
        if (!isnan(s->rerank))
            printf(", rerank %.3f", s->rerank);
        if (full) {
            printf("\n%s\n\n", c->text);
        } else {
            char snippet[201];
            bool cut = tw_cli_snippet(c->text, 200, snippet);
            printf("\n    %s%s\n", snippet, cut ? "…" : "");
        }
    }
    if (res->n_sources == 0)
        printf("(none: nothing in the feature store matched)\n");
}

static void print_summary(const struct tw_rag_result *res)
{
    fflush(stdout); // the sources first, when both streams go to one terminal or file
    json_t *lat = json_object_get(res->trace, "latency_ms");
    fprintf(stderr, "[trace %lld:", (long long)res->trace_id);
    const char *key;
    json_t *val;
    json_object_foreach(lat, key, val)
    {
        fprintf(stderr, " %s %.1f ms", key, json_real_value(val));
    }
    fprintf(stderr, "; %d prompt + %d generated tokens]\n", res->prompt_tokens,
            res->completion_tokens);
}

// Opens the answering model and the reranker that the options name.
static int open_models(struct ask_args *a, struct tw_rag *rag, struct tw_session *llm,
                       struct tw_session *rr)
{
    int rc = 0;
    if (a->llm.model) {
        rc = tw_cli_model_open(&a->llm);
        if (!rc && (!a->llm.m->tok || !tw_arch_is_decoder(a->llm.m->cfg.arch)))
            rc = tw_error_set(TW_EINVAL, "%s: ask needs a decoder model with a tokenizer",
                              a->llm.model);
        if (!rc)
            rc = a->template ? tw_chat_family_from_name(a->template, &rag->family)
                             : tw_chat_family_from_template(
                                   tw_tokenizer_chat_template(a->llm.m->tok), &rag->family);
        if (!rc) {
            *llm = (struct tw_session){ a->llm.m, a->llm.be, a->llm.c, a->llm.host };
            rag->llm = llm;
            rag->model_id = a->llm.model;
        }
    }
    if (!rc && a->reranker) {
        rc = tw_session_open(a->reranker, a->llm.threads, 0, rr);
        if (!rc && rr->m->cfg.arch != TW_ARCH_BERT_CLS)
            rc = tw_error_set(TW_EINVAL, "%s: a %s is not a cross-encoder", a->reranker,
                              rr->m->arch_name);
        if (!rc)
            rag->reranker = rr;
    }
    return rc;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_ask;
    struct ask_args a = { 0 };
    tw_cli_model_init(&a.llm, cli->home);
    tw_rag_options_default(&a.o);
    a.llm.gen = a.o.gen; // the reference's sampling unless the options say otherwise
    int urc = parse(v, argc, argv, &a);
    if (urc)
        return urc;
    a.o.gen = a.llm.gen;
    a.o.gen.stops = a.llm.stops;
    if (!a.json) {
        a.o.stream = put;
    }
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    struct tw_rag rag = { 0 };
    struct tw_session llm = { 0 }, rr = { 0 }; // llm: a.llm's, closed with it
    struct tw_rag_result res = { 0 };
    // No --model: the home's promoted model, when there is one.
    struct tw_model_ref promoted;
    if (!a.llm.model && tw_registry_promoted(h, &promoted) == 0) {
        snprintf(a.llm.path, sizeof a.llm.path, "%s", promoted.path);
        a.llm.model = a.llm.path;
    }
    int rc = tw_retriever_open(h, a.llm.threads, &rag.r);
    if (!rc)
        rc = open_models(&a, &rag, &llm, &rr);
    if (!rc && !rag.llm && !a.json)
        fprintf(stderr, "twin: no --model and no promoted model (twin models promote REF): "
                        "retrieval only (the sources, no answer)\n");
    if (!rc)
        rc = tw_rag_ask(h, &rag, a.question, &a.o, &res);
    if (!rc && a.json) {
        rc = tw_cli_print_json(json_incref(res.trace), 0);
    } else if (!rc) {
        if (res.answer)
            printf("\n");
        print_sources(&res, a.show_context);
        print_summary(&res);
    }
    tw_rag_result_free(&res);
    tw_session_close(&rr);
    tw_retriever_free(rag.r);
    tw_cli_model_close(&a.llm);
    tw_home_close(h);
    if (rc)
        return tw_cli_fail();
    return tw_cli_flush_stdout() ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_ask = {
    .name = "ask",
    .summary = "ask the twin: retrieval-augmented generation over the feature store",
    .usage =
        "usage: twin [--home DIR] ask QUESTION [--model PATH] [--author NAME] [--category C]\n"
        "                  [--k 3] [--expand 3 | --no-expand] [--no-self-query]\n"
        "                  [--mode hybrid|dense|sparse] [--reranker PATH] [--template NAME]\n"
        "                  [--show-context] [--json] [sampling options]\n\n"
        "Answers QUESTION from the newest feature run: self-query (the author and category\n"
        "the question names, from the model's JSON answer or, when that is not valid, by\n"
        "matching the authors' names), query expansion (--expand N queries in all, the\n"
        "question included), retrieval per query (hybrid: BM25 and the embedding model fused\n"
        "by reciprocal rank), fusion across queries, reranking with a cross-encoder\n"
        "(--reranker; else the fused score), the k best chunks as numbered sources in the\n"
        "prompt (as many as the context holds), and the answer through the model's chat\n"
        "template. Without --model: the home's promoted model (twin models promote), else\n"
        "retrieval only. Every run is traced (twin traces).\n\n" TW_CLI_MODEL_USAGE
        "  --author NAME       only this author's documents (overrides self-query)\n"
        "  --category C        only this category (article, post, repository)\n"
        "  --k K               sources in the prompt (default 3)\n"
        "  --expand N          queries after expansion (default 3); --no-expand: 1\n"
        "  --no-self-query     no filters from the question\n"
        "  --reranker PATH     a cross-encoder (BertForSequenceClassification)\n"
        "  --template NAME     the chat template family (default: the tokenizer's)\n"
        "  --show-context      print the sources' whole text\n"
        "  --json              print the trace as one JSON object (answer, sources, every\n"
        "                      step's results and latency)\n"
        "Sampling: the reference's defaults (150 tokens, --temp 0.01, --top-p 0.9,\n"
        "--repeat-penalty 1.1, no top-k or min-p); the options of twin generate change them.\n",
    .run = run,
};

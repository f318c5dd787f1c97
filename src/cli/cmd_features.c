// twin features and twin search: the feature pipeline over the warehouse, and search over
// its newest run.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "pipeline/features.h"
#include "rag/retrieve.h"
#include "store/home.h"

static int features_run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_features;
    struct tw_features_options o = { 0 };
    bool json = false;
    const char *val;
    for (int i = 1; i < argc; i++) {
        long n;
        int urc;
        if (tw_cli_opt(argc, argv, &i, "--model", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--model needs a PATH");
            o.model = val;
        } else if (tw_cli_opt(argc, argv, &i, "--threads", &val)) {
            if ((urc = tw_cli_opt_long(v, "--threads", val, 1, 4096, &n)))
                return urc;
            o.threads = (int)n;
        } else if (strcmp(argv[i], "--full") == 0) {
            o.full = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    o.progress = !json && isatty(STDERR_FILENO);
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    struct tw_features_summary s;
    int rc = tw_features_run(h, &o, &s);
    tw_home_close(h);
    if (rc)
        return tw_cli_fail();
    if (json) {
        json_t *j =
            json_pack("{s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "run",
                      (json_int_t)s.run_id, "version", (json_int_t)s.version, "dense", s.dense,
                      "processed", (json_int_t)s.processed, "deleted", (json_int_t)s.deleted,
                      "chunks_added", (json_int_t)s.chunks_added, "chunks_removed",
                      (json_int_t)s.chunks_removed, "documents", (json_int_t)s.documents_total,
                      "chunks", (json_int_t)s.chunks_total, "seconds", s.seconds);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(j);
    } else {
        printf("feature run %" PRId64 " (index version %" PRId64 "): %" PRId64
               " documents processed, %" PRId64 " deleted; chunks +%" PRId64 " -%" PRId64
               "; now %" PRId64 " documents, %" PRId64 " chunks (%.1f s)\n",
               s.run_id, s.version, s.processed, s.deleted, s.chunks_added, s.chunks_removed,
               s.documents_total, s.chunks_total, s.seconds);
        if (!s.dense)
            printf("no embedding model: BM25 only (twin features --model PATH adds dense "
                   "vectors)\n");
    }
    return tw_cli_flush_stdout() ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_features = {
    .name = "features",
    .summary = "clean, chunk, embed and index the warehouse (the feature pipeline)",
    .usage = "usage: twin [--home DIR] features [--model PATH] [--threads N] [--full] [--json]\n\n"
             "Cleans and chunks the warehouse's documents by category, indexes the chunks for\n"
             "BM25 and, with --model (a BERT-family sentence embedder: HF folder or GGUF),\n"
             "embeds them into an HNSW vector index with their author, category, platform,\n"
             "document and date. Incremental: only documents added, changed or removed since\n"
             "the last run are processed (--full: all); another model starts a new index\n"
             "version. Each run is recorded with its lineage; both indexes are blobs of the\n"
             "home. Without --model the run is BM25 only, and says so.\n",
    .run = features_run,
};

static int search_run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_search;
    struct tw_search_options o = { .mode = TW_SEARCH_HYBRID, .k = 10 };
    int threads = 0;
    bool json = false;
    const char *query = NULL, *val;
    for (int i = 1; i < argc; i++) {
        long n;
        int urc;
        if (tw_cli_opt(argc, argv, &i, "--author", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--author needs a NAME");
            o.author = val;
        } else if (tw_cli_opt(argc, argv, &i, "--category", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--category needs a name");
            o.category = val;
        } else if (tw_cli_opt(argc, argv, &i, "--k", &val)) {
            if ((urc = tw_cli_opt_long(v, "--k", val, 1, 1000000, &n)))
                return urc;
            o.k = (uint32_t)n;
        } else if (tw_cli_opt(argc, argv, &i, "--threads", &val)) {
            if ((urc = tw_cli_opt_long(v, "--threads", val, 1, 4096, &n)))
                return urc;
            threads = (int)n;
        } else if (tw_cli_opt(argc, argv, &i, "--mode", &val)) {
            if (!tw_search_mode_parse(val, &o.mode))
                return tw_cli_usage_error(v, "--mode is dense, sparse or hybrid");
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        } else if (!query) {
            query = argv[i];
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s' (quote the query)", argv[i]);
        }
    }
    if (!query || !*query)
        return tw_cli_usage_error(v, "give a QUERY");
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    struct tw_search_hit *hits = NULL;
    size_t n = 0;
    enum tw_search_mode used = o.mode;
    tw_retriever *r;
    int rc = tw_retriever_open(h, threads, &r);
    if (!rc)
        rc = tw_search(r, query, &o, &hits, &n, &used);
    tw_retriever_free(r);
    tw_home_close(h);
    if (rc)
        return tw_cli_fail();
    for (size_t i = 0; i < n; i++) {
        const struct tw_search_hit *x = &hits[i];
        if (json) {
            json_t *j =
                json_pack("{s:i, s:s, s:f, s:I, s:s, s:s, s:s, s:s, s:s}", "rank", (int)i + 1,
                          "mode", tw_search_mode_name(used), "score", x->score, "chunk",
                          (json_int_t)x->chunk, "document", x->document_id, "author", x->author,
                          "title", x->title, "category", x->category, "text", x->text);
            char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (text)
                printf("%s\n", text);
            free(text);
            json_decref(j);
        } else {
            char snippet[161];
            bool cut = tw_cli_snippet(x->text, 160, snippet);
            printf("%2zu. %.4f  %s, %s (%s)\n    %s%s\n", i + 1, x->score, x->author, x->title,
                   x->category, snippet, cut ? "…" : "");
        }
    }
    if (!json && n == 0)
        printf("no results (%s search)\n", tw_search_mode_name(used));
    tw_search_hits_free(hits, n);
    return tw_cli_flush_stdout() ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_search = {
    .name = "search",
    .summary = "search the feature store (dense, sparse or hybrid)",
    .usage = "usage: twin [--home DIR] search QUERY [--author NAME] [--category C] [--k 10]\n"
             "                  [--mode dense|sparse|hybrid] [--threads N] [--json]\n\n"
             "The k best chunks of the newest feature run for QUERY: BM25 (sparse), the\n"
             "embedding model's cosine similarity over the HNSW index (dense), or both fused by\n"
             "reciprocal rank (k = 60; the default, sparse when the run has no model). Filters\n"
             "on the author (case ignored) and category apply inside the searches. Prints rank,\n"
             "score, author, title, category and a snippet (--json: one object per line).\n",
    .run = search_run,
};

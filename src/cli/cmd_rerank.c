// twin rerank: cross-encoder relevance scores of JSON Lines documents for a query.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "cli/jsonl_in.h"
#include "cli/model_args.h"
#include "cli/text_args.h"
#include "model/embed.h"

struct state {
    struct tw_cli_model *a;
    const char *query;
};

static int one(void *arg, size_t index, const char *text, size_t len, const json_t *id)
{
    struct state *s = arg;
    float logit;
    int rc = tw_rerank_score(s->a->c, s->a->m, s->query, strlen(s->query), text, len, &logit);
    if (rc != 0)
        return tw_error_prefix("item %zu", index);
    printf("{");
    tw_cli_print_id(id);
    // sentence-transformers' CrossEncoder applies a sigmoid to a single logit.
    printf("\"index\": %zu, \"score\": %.8g, \"logit\": %.8g}\n", index,
           1.0 / (1.0 + exp(-(double)logit)), logit);
    return 0;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_rerank;
    struct tw_cli_model a;
    tw_cli_model_init(&a, cli->home);
    const char *input = "-", *val;
    struct state s = { .a = &a };
    for (int i = 1; i < argc; i++) {
        int r = tw_cli_model_opt(v, argc, argv, &i, &a, false);
        if (r == TW_EXIT_USAGE)
            return r;
        if (r == TW_EXIT_OK)
            continue;
        if (tw_cli_opt(argc, argv, &i, "--input", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--input needs a FILE");
            input = val;
        } else if (tw_cli_opt(argc, argv, &i, "--query", &val)) {
            if (!val)
                return tw_cli_usage_error(v, "--query needs a TEXT");
            s.query = val;
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!a.model || !s.query)
        return tw_cli_usage_error(v, "--model PATH and --query TEXT are required");
    int rc = tw_cli_model_open(&a);
    if (rc == 0)
        rc = tw_cli_jsonl_file(input, one, &s);
    if (rc == 0)
        rc = tw_cli_flush_stdout();
    tw_cli_model_close(&a);
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_rerank = {
    .name = "rerank",
    .summary = "score documents for a query with a cross-encoder",
    .usage = "usage: twin rerank --model PATH --query TEXT [--input FILE] [--threads N]\n"
             "\n"
             "Reads documents as JSON Lines (strings, or objects with \"text\" and an optional\n"
             "\"id\") from FILE or stdin and writes one line per document, in input order:\n"
             "  {\"id\": ..., \"index\": I, \"score\": S, \"logit\": L}\n"
             "score is the sigmoid of the classifier's logit, as sentence-transformers'\n"
             "CrossEncoder gives it. The model is a BertForSequenceClassification.\n",
    .run = run,
};

// twin embed: sentence embeddings of JSON Lines texts with a BERT-family embedder.
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
    float *vec;
};

static int one(void *arg, size_t index, const char *text, size_t len, const json_t *id)
{
    struct state *s = arg;
    int rc = tw_embed_text(s->a->c, s->a->m, text, len, s->vec);
    if (rc != 0)
        return tw_error_prefix("item %zu", index);
    printf("{");
    tw_cli_print_id(id);
    printf("\"index\": %zu, \"embedding\": [", index);
    for (int32_t i = 0; i < s->a->m->cfg.n_embd; i++)
        printf(i ? ", %.8g" : "%.8g", s->vec[i]);
    printf("]}\n");
    return 0;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_embed;
    struct tw_cli_model a;
    tw_cli_model_init(&a, cli->home);
    const char *input = "-", *val;
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
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!a.model)
        return tw_cli_usage_error(v, "--model PATH is required");
    int rc = tw_cli_model_open(&a);
    if (rc == 0 && a.m->cfg.arch != TW_ARCH_BERT)
        rc = tw_error_set(TW_EINVAL, "%s: a %s is not a sentence embedder", a.model,
                          a.m->arch_name);
    struct state s = { .a = &a };
    if (rc == 0 && !(s.vec = tw_malloc_array((size_t)a.m->cfg.n_embd, sizeof(float))))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (rc == 0)
        rc = tw_cli_jsonl_file(input, one, &s);
    if (rc == 0)
        rc = tw_cli_flush_stdout();
    tw_free(s.vec);
    tw_cli_model_close(&a);
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_embed = {
    .name = "embed",
    .summary = "sentence embeddings of JSON Lines texts",
    .usage = "usage: twin embed --model PATH [--input FILE] [--threads N]\n"
             "\n"
             "Reads JSON Lines (each line a string, or an object with \"text\" and an optional\n"
             "\"id\") from FILE or stdin and writes one line per item:\n"
             "  {\"id\": ..., \"index\": I, \"embedding\": [...]}\n"
             "The model is a BERT sentence embedder (a sentence-transformers folder or its\n"
             "GGUF): its pooling and normalisation apply.\n",
    .run = run,
};

// twin generate: completes a prompt with a decoder model, streaming the text to stdout, and
// reports prompt and generation speed on stderr.
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "base/vec.h"
#include "cli/cli.h"
#include "cli/model_args.h"
#include "cli/text_args.h"

static int put(void *arg, const char *text, size_t len)
{
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

// Encodes `prompt` with the model's tokenizer (its BOS when the tokenizer adds one), runs
// the generation and prints the statistics line.
int tw_cli_generate(struct tw_cli_model *a, const char *prompt, size_t len, bool quiet);
int tw_cli_generate(struct tw_cli_model *a, const char *prompt, size_t len, bool quiet)
{
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    int rc = tw_tokenizer_encode(a->m->tok, prompt, len, TW_TOK_ADD_SPECIAL, &ids, NULL);
    struct tw_gen_result r;
    if (rc == 0 && ids.len == 0)
        rc = tw_error_set(TW_EINVAL, "the prompt is empty");
    if (rc == 0)
        rc = tw_generate(a->c, a->m, ids.data, (int32_t)ids.len, &a->gen, put, NULL, &r);
    tw_vec_free(&ids);
    if (rc != 0)
        return rc;
    if (!quiet) {
        int32_t fresh = r.n_prompt - r.n_reused;
        fprintf(stderr,
                "\n[prompt %d tokens (%d cached), %.1f tokens/s; generated %d tokens, "
                "%.1f tokens/s; %s]\n",
                r.n_prompt, r.n_reused, r.prompt_s > 0 ? fresh / r.prompt_s : 0.0, r.n_gen,
                r.gen_s > 0 ? r.n_gen / r.gen_s : 0.0, tw_finish_name(r.finish));
    }
    tw_gen_result_free(&r);
    return 0;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_generate;
    struct tw_cli_model a;
    tw_cli_model_init(&a, cli->home);
    const char *prompt = NULL;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        int r = tw_cli_model_opt(v, argc, argv, &i, &a, true);
        if (r == TW_EXIT_USAGE)
            return r;
        if (r == TW_EXIT_OK)
            continue;
        if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (argv[i][0] == '-' && strcmp(argv[i], "-") != 0) {
            return tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        } else if (prompt) {
            return tw_cli_usage_error(v, "unexpected argument '%s' (quote the PROMPT)", argv[i]);
        } else {
            prompt = argv[i];
        }
    }
    if (!a.model)
        return tw_cli_usage_error(v, "--model PATH is required");
    char *text = NULL;
    size_t len = 0;
    if (!prompt || strcmp(prompt, "-") == 0) {
        if (tw_cli_read_input("-", TW_CLI_INPUT_LIMIT, &text, &len) != 0)
            return tw_cli_fail();
        prompt = text;
    } else {
        len = strlen(prompt);
    }
    int rc = tw_cli_model_open(&a);
    if (rc == 0 && !a.m->tok)
        rc = tw_error_set(TW_EINVAL, "%s: the model has no tokenizer", a.model);
    if (rc == 0 && !tw_arch_is_decoder(a.m->cfg.arch))
        rc = tw_error_set(TW_EINVAL, "%s: a %s does not generate text (twin embed / rerank)",
                          a.model, a.m->arch_name);
    if (rc == 0)
        rc = tw_cli_generate(&a, prompt, len, quiet);
    if (rc == 0)
        rc = tw_cli_flush_stdout();
    tw_cli_model_close(&a);
    tw_free(text);
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_generate = {
    .name = "generate",
    .summary = "complete a prompt with a model, streaming the text",
    .usage = "usage: twin generate --model PATH [OPTIONS] [PROMPT | -]\n"
             "\n"
             "Completes PROMPT (or standard input) as plain text — no chat template — and\n"
             "streams the continuation to stdout; speeds go to stderr.\n"
             "\n"
             "options:\n" TW_CLI_MODEL_USAGE TW_CLI_SAMPLING_USAGE
             "  --quiet             no statistics line\n",
    .run = run,
};

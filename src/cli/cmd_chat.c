// twin chat: an interactive conversation with a decoder model through its chat template;
// each turn reuses the KV cache of the conversation so far.
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "cli/cli.h"
#include "cli/model_args.h"
#include "cli/text_args.h"
#include "text/chat.h"

struct turn {
    char *role; // static strings
    char *content;
};

static int put(void *arg, const char *text, size_t len)
{
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return tw_str_append(arg, text, len);
}

static void free_turns(tw_vec *turns)
{
    for (size_t i = 0; i < turns->len; i++)
        tw_free(((struct turn *)turns->data)[i].content);
    tw_vec_clear(turns);
}

static int push_turn(tw_vec *turns, const char *role, const char *text, size_t len)
{
    struct turn t = { (char *)role, tw_strndup(text, len) };
    if (!t.content)
        return tw_error_set(TW_ENOMEM, "out of memory");
    int rc = tw_vec_push(turns, &t);
    if (rc != 0)
        tw_free(t.content);
    return rc;
}

// One exchange: renders the conversation, generates, records the answer.
static int answer(struct tw_cli_model *a, enum tw_chat_family fam, tw_vec *turns)
{
    struct tw_chat_msg *msgs = tw_malloc_array(turns->len, sizeof *msgs);
    if (!msgs)
        return tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; i < turns->len; i++) {
        msgs[i].role = ((struct turn *)turns->data)[i].role;
        msgs[i].content = ((struct turn *)turns->data)[i].content;
    }
    tw_str reply;
    tw_str_init(&reply);
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    int rc = tw_chat_encode(a->m, fam, msgs, turns->len, &ids);
    struct tw_gen_result r;
    if (rc == 0)
        rc = tw_generate(a->c, a->m, ids.data, (int32_t)ids.len, &a->gen, put, &reply, &r);
    if (rc == 0) {
        printf("\n");
        fprintf(stderr, "[%d tokens, %.1f tokens/s; %d of %d prompt tokens cached]\n", r.n_gen,
                r.gen_s > 0 ? r.n_gen / r.gen_s : 0.0, r.n_reused, r.n_prompt);
        tw_gen_result_free(&r);
        rc = push_turn(turns, "assistant", reply.v.data, reply.v.len);
    }
    tw_free(msgs);
    tw_str_free(&reply);
    tw_vec_free(&ids);
    return rc;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_chat;
    struct tw_cli_model a;
    tw_cli_model_init(&a, cli->home);
    const char *system = NULL, *template = NULL, *val;
    for (int i = 1; i < argc; i++) {
        int r = tw_cli_model_opt(v, argc, argv, &i, &a, true);
        if (r == TW_EXIT_USAGE)
            return r;
        if (r == TW_EXIT_OK)
            continue;
        if (tw_cli_opt(argc, argv, &i, "--system", &val)) {
            if (!val)
                return tw_cli_usage_error(v, "--system needs a TEXT");
            system = val;
        } else if (tw_cli_opt(argc, argv, &i, "--template", &val)) {
            if (!val)
                return tw_cli_usage_error(v, "--template needs a NAME");
            template = val;
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!a.model)
        return tw_cli_usage_error(v, "--model PATH is required");
    enum tw_chat_family fam = TW_CHAT_CHATML;
    int rc = tw_cli_model_open(&a);
    if (rc == 0 && (!a.m->tok || !tw_arch_is_decoder(a.m->cfg.arch)))
        rc = tw_error_set(TW_EINVAL, "%s: chat needs a decoder model with a tokenizer", a.model);
    if (rc == 0)
        rc = template ? tw_chat_family_from_name(template, &fam)
                      : tw_chat_family_from_template(tw_tokenizer_chat_template(a.m->tok), &fam);
    tw_vec turns;
    tw_vec_init(&turns, sizeof(struct turn));
    if (rc == 0 && system)
        rc = push_turn(&turns, "system", system, strlen(system));
    char line[65536];
    while (rc == 0) {
        fprintf(stderr, "> ");
        if (!fgets(line, sizeof line, stdin))
            break;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0)
            continue;
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0)
            break;
        if (strcmp(line, "/reset") == 0) {
            free_turns(&turns);
            if (system)
                rc = push_turn(&turns, "system", system, strlen(system));
            continue;
        }
        if ((rc = push_turn(&turns, "user", line, n)) == 0)
            rc = answer(&a, fam, &turns);
    }
    free_turns(&turns);
    tw_vec_free(&turns);
    tw_cli_model_close(&a);
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_chat = {
    .name = "chat",
    .summary = "talk with a model through its chat template",
    .usage = "usage: twin chat --model PATH [OPTIONS]\n"
             "\n"
             "Reads one user message per line from stdin and streams each answer to stdout.\n"
             "The conversation is rendered with the model's chat template and its KV cache is\n"
             "reused from turn to turn. /reset starts over; /exit (or end of input) quits.\n"
             "\n"
             "options:\n" TW_CLI_MODEL_USAGE TW_CLI_SAMPLING_USAGE
             "  --system TEXT       a system message first\n"
             "  --template NAME     the chat template family (default: recognised from the\n"
             "                      tokenizer's template; twin tokenize --help lists names)\n",
    .run = run,
};

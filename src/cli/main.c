// twin's entry point: global options (--home, --help, --version), the verb table, and
// `twin help VERB`. Verbs live one per file (cmd_*.c); later capabilities add rows here.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/log.h"
#include "cli/cli.h"
#include "store/home.h"
#include "twin_config.h"

static const struct tw_verb *const verbs[] = {
    &tw_verb_init,   &tw_verb_status, &tw_verb_tokenize, &tw_verb_chunk,    &tw_verb_generate,
    &tw_verb_chat,   &tw_verb_embed,  &tw_verb_rerank,   &tw_verb_convert,  &tw_verb_model,
    &tw_verb_ingest, &tw_verb_docs,   &tw_verb_authors,  &tw_verb_features, &tw_verb_search,
    &tw_verb_ask,    &tw_verb_traces, &tw_verb_eval,     &tw_verb_serve,    &tw_verb_models,
    &tw_verb_runs,   &tw_verb_train,
};
#define N_VERBS (sizeof verbs / sizeof verbs[0])

static const struct tw_verb *find_verb(const char *name)
{
    for (size_t i = 0; i < N_VERBS; i++)
        if (strcmp(verbs[i]->name, name) == 0)
            return verbs[i];
    return NULL;
}

static void print_help(FILE *out)
{
    fprintf(out,
            "twin %s: the LLM Twin system in one binary\n\n"
            "usage: twin [--home DIR] VERB [ARGS...]\n"
            "       twin help VERB | --help | --version\n\n"
            "verbs:\n",
            TWIN_VERSION);
    for (size_t i = 0; i < N_VERBS; i++)
        fprintf(out, "  %-10s %s\n", verbs[i]->name, verbs[i]->summary);
    fprintf(out, "\noptions:\n"
                 "  --home DIR   the twin home (else $TWIN_HOME, else ./twin-home)\n"
                 "  --help       this text\n"
                 "  --version    the version, commit and compiled backends\n\n"
                 "environment: TWIN_HOME (the home), TWIN_LOG (error, warn, info, debug,"
                 " trace)\n"
                 "exit codes: 0 ok, 1 failure, 2 usage\n");
}

static void print_version(void)
{
    printf("twin %s (commit %s; backends: cpu%s)\n", TWIN_VERSION, TWIN_COMMIT,
           TWIN_HAVE_CUDA ? ", cuda" : "");
}

int tw_cli_fail(void)
{
    fprintf(stderr, "twin: %s\n", tw_error_msg());
    return TW_EXIT_FAIL;
}

int tw_cli_usage_error(const struct tw_verb *verb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "twin %s: ", verb->name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    const char *nl = strchr(verb->usage, '\n');
    fprintf(stderr, "\n%.*s\n", nl ? (int)(nl - verb->usage) : (int)strlen(verb->usage),
            verb->usage);
    return TW_EXIT_USAGE;
}

int tw_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        print_help(stdout);
        return TW_EXIT_OK;
    }
    const struct tw_verb *v = find_verb(argv[1]);
    if (!v) {
        fprintf(stderr, "twin: help: no verb '%s' (twin --help lists them)\n", argv[1]);
        return TW_EXIT_USAGE;
    }
    fputs(v->usage, stdout);
    return TW_EXIT_OK;
}

int main(int argc, char **argv)
{
    struct tw_cli cli = { 0 };
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(stdout);
            return TW_EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            print_version();
            return TW_EXIT_OK;
        } else if (strcmp(a, "--home") == 0 && i + 1 < argc) {
            cli.home_flag = argv[++i];
        } else if (strncmp(a, "--home=", 7) == 0) {
            cli.home_flag = a + 7;
        } else {
            fprintf(stderr, "twin: unknown option '%s' (twin --help)\n", a);
            return TW_EXIT_USAGE;
        }
    }
    if (i == argc) {
        print_help(stderr);
        return TW_EXIT_USAGE;
    }
    const char *level = getenv("TWIN_LOG");
    if (level && *level) {
        int lv;
        if (tw_log_parse_level(level, &lv) != 0) {
            fprintf(stderr, "twin: TWIN_LOG: %s\n", tw_error_msg());
            return TW_EXIT_USAGE;
        }
    }
    const char *name = argv[i];
    if (strcmp(name, "help") == 0)
        return cmd_help(argc - i, argv + i);
    const struct tw_verb *v = find_verb(name);
    if (!v) {
        fprintf(stderr, "twin: unknown verb '%s' (twin --help lists them)\n", name);
        return TW_EXIT_USAGE;
    }
    if (tw_cli_wants_help(argc - i, argv + i)) {
        fputs(v->usage, stdout);
        return TW_EXIT_OK;
    }
    if (tw_home_resolve(cli.home_flag, cli.home, sizeof cli.home) != 0) {
        fprintf(stderr, "twin: %s\n", tw_error_msg());
        return TW_EXIT_USAGE;
    }
    return v->run(&cli, argc - i, argv + i);
}

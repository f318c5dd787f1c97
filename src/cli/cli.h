// The twin command: global options and the table of verbs. Each verb is one file
// (src/cli/cmd_<verb>.c) exporting a struct tw_verb; main.c lists them.
#ifndef TW_CLI_H
#define TW_CLI_H

#include <stdio.h>

// Exit codes (README, "Exit codes").
enum { TW_EXIT_OK = 0, TW_EXIT_FAIL = 1, TW_EXIT_USAGE = 2 };

struct tw_cli {
    const char *home_flag; // --home DIR, or NULL
    char home[4096];       // the resolved home folder
};

struct tw_verb {
    const char *name;
    const char *summary; // one line for `twin --help`
    const char *usage;   // the full text for `twin help VERB`
    // argv[0] is the verb; returns an exit code.
    int (*run)(struct tw_cli *cli, int argc, char **argv);
};

// Prints "twin: <message>" (the thread's error message) on stderr; returns TW_EXIT_FAIL.
int tw_cli_fail(void);
// Prints "twin VERB: <message>" and the verb's usage line on stderr; returns TW_EXIT_USAGE.
int tw_cli_usage_error(const struct tw_verb *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// 1 when argv holds -h or --help.
int tw_cli_wants_help(int argc, char **argv);

extern const struct tw_verb tw_verb_init;
extern const struct tw_verb tw_verb_status;
extern const struct tw_verb tw_verb_tokenize;
extern const struct tw_verb tw_verb_chunk;
extern const struct tw_verb tw_verb_generate;
extern const struct tw_verb tw_verb_chat;
extern const struct tw_verb tw_verb_embed;
extern const struct tw_verb tw_verb_rerank;
extern const struct tw_verb tw_verb_convert;
extern const struct tw_verb tw_verb_ask;
extern const struct tw_verb tw_verb_traces;
extern const struct tw_verb tw_verb_eval;
extern const struct tw_verb tw_verb_model;
extern const struct tw_verb tw_verb_ingest;
extern const struct tw_verb tw_verb_docs;
extern const struct tw_verb tw_verb_authors;
extern const struct tw_verb tw_verb_features;
extern const struct tw_verb tw_verb_search;
extern const struct tw_verb tw_verb_serve;
extern const struct tw_verb tw_verb_models;
extern const struct tw_verb tw_verb_runs;
extern const struct tw_verb tw_verb_train;

#endif

// twin traces ls|show: the prompt-monitoring traces (store/traces.h) that `twin ask` and the
// server write.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "store/home.h"
#include "store/traces.h"

static json_t *trace_json(const struct tw_trace *t, bool detail)
{
    json_t *o = json_pack(
        "{s:I,s:I,s:s,s:s,s:s?,s:s?,s:s?,s:I,s:I,s:f,s:s}", "id", (json_int_t)t->id, "created_at",
        (json_int_t)t->created_at, "kind", t->kind, "question", t->question, "answer", t->answer,
        "model", t->model, "embed_model", t->embed_model, "prompt_tokens",
        (json_int_t)t->prompt_tokens, "completion_tokens", (json_int_t)t->completion_tokens,
        "total_ms", t->total_ms, "status", t->status);
    if (o && detail)
        json_object_set_new(o, "detail", json_loads(t->detail, 0, NULL));
    return o;
}

static int ls_row(void *ud, const struct tw_trace *t)
{
    if (*(bool *)ud)
        return tw_cli_print_json(trace_json(t, false), JSON_COMPACT);
    char when[32], q[61];
    time_t s = (time_t)(t->created_at / 1000);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime_r(&s, &tm));
    bool cut = tw_cli_snippet(t->question, 60, q);
    const char *st =
        strcmp(t->status, "ok") == 0 || strcmp(t->status, "cancelled") == 0 ? t->status : "fail";
    printf("%6" PRId64 "  %s  %-10s %9.1f ms %6" PRId64 " tok  %-9s %s%s\n", t->id, when, t->kind,
           t->total_ms, t->prompt_tokens + t->completion_tokens, st, q, cut ? "…" : "");
    return 0;
}

static int show_row(void *ud, const struct tw_trace *t)
{
    (void)ud;
    return tw_cli_print_json(trace_json(t, true), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_traces;
    if (argc < 2)
        return tw_cli_usage_error(v, "give ls or show ID");
    const char *sub = argv[1], *kind = NULL, *val;
    long limit = 20, id = 0;
    bool json = false;
    for (int i = 2; i < argc; i++) {
        int urc;
        if (tw_cli_opt(argc, argv, &i, "--limit", &val)) {
            if ((urc = tw_cli_opt_long(v, "--limit", val, 0, 1L << 40, &limit)))
                return urc;
        } else if (tw_cli_opt(argc, argv, &i, "--kind", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--kind needs a name");
            kind = val;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(sub, "show") == 0 && id == 0 &&
                   tw_cli_parse_long(argv[i], 1, INT64_MAX, &id)) {
            continue;
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    if (strcmp(sub, "ls") != 0 && strcmp(sub, "show") != 0)
        return tw_cli_usage_error(v, "unknown subcommand '%s' (ls, show)", sub);
    if (strcmp(sub, "show") == 0 && id == 0)
        return tw_cli_usage_error(v, "show needs a trace ID (a whole number >= 1)");
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    int rc = strcmp(sub, "ls") == 0 ? tw_traces_list(h, kind, limit, ls_row, &json)
                                    : tw_trace_get(h, id, show_row, NULL);
    tw_home_close(h);
    if (rc)
        return tw_cli_fail();
    return tw_cli_flush_stdout() ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_traces = {
    .name = "traces",
    .summary = "list and show the traces of twin ask and the server",
    .usage = "usage: twin [--home DIR] traces ls [--limit 20] [--kind K] [--json]\n"
             "       twin [--home DIR] traces show ID\n\n"
             "ls: the newest traces (0: all), one a line: id, time (UTC), kind, total latency,\n"
             "tokens, status and the question (--json: one object a line). show: one trace\n"
             "with every step's detail (filters, expanded queries, retrieved chunks and scores\n"
             "per stage, the prompt, the answer, latencies) as indented JSON.\n",
    .run = run,
};

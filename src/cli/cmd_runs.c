// twin runs (ls, show): the training runs the training pipeline records (store/registry.h) —
// parameters, dataset, status, every step's loss, learning rate, gradient norm and speed, and
// the final metrics.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "store/home.h"
#include "store/registry.h"

static void when(int64_t ms, char *buf, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&s, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, cap, "-");
}

// A number for JSON: null when it was not measured.
static json_t *num(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static json_t *run_json(const struct tw_run *r)
{
    return json_pack(
        "{s:s, s:s, s:s, s:I, s:o?, s:o?, s:s?, s:o?, s:s?, s:s?, s:o?, s:I, s:o, "
        "s:s}",
        "id", r->id, "kind", r->kind, "status", r->status, "started_at", (json_int_t)r->started_at,
        "finished_at", r->finished_at ? json_integer(r->finished_at) : NULL, "params",
        json_loads(r->params, 0, NULL), "base_model", r->base_model, "dataset",
        r->dataset ? json_loads(r->dataset, 0, NULL) : NULL, "output_model", r->output_model,
        "message", r->message, "metrics", json_loads(r->metrics, 0, NULL), "steps",
        (json_int_t)r->n_steps, "last_loss", num(r->last_loss), "twin_version", r->twin_version);
}

struct ctx {
    bool json;
    int rows;
    json_t *run, *steps; // show --json
};

static int ls_row(void *ud, const struct tw_run *r)
{
    struct ctx *c = ud;
    if (c->json)
        return tw_cli_print_json(run_json(r), JSON_COMPACT);
    if (c->rows++ == 0)
        printf("%-28s %-9s %-11s %-19s %9s %6s %9s  %s\n", "RUN", "KIND", "STATUS",
               "STARTED (UTC)", "DURATION", "STEPS", "LOSS", "OUTPUT");
    char at[32], dur[32], loss[32];
    when(r->started_at, at, sizeof at);
    if (r->finished_at)
        snprintf(dur, sizeof dur, "%.1f s", (r->finished_at - r->started_at) / 1000.0);
    else
        snprintf(dur, sizeof dur, "-");
    if (isnan(r->last_loss))
        snprintf(loss, sizeof loss, "-");
    else
        snprintf(loss, sizeof loss, "%.4f", r->last_loss);
    printf("%-28s %-9s %-11s %-19s %9s %6" PRId64 " %9s  %s\n", r->id, r->kind, r->status, at, dur,
           r->n_steps, loss, r->output_model ? r->output_model : "-");
    return 0;
}

static int show_run(void *ud, const struct tw_run *r)
{
    struct ctx *c = ud;
    if (c->json) {
        c->run = run_json(r);
        return c->run ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    }
    char start[32], end[32];
    when(r->started_at, start, sizeof start);
    when(r->finished_at, end, sizeof end);
    printf("run:      %s\n", r->id);
    printf("kind:     %s\n", r->kind);
    printf("status:   %s%s%s\n", r->status, r->message ? ": " : "", r->message ? r->message : "");
    printf("started:  %s UTC by %s\n", start, r->twin_version);
    printf("finished: %s%s\n", end, r->finished_at ? " UTC" : "");
    printf("base:     %s\n", r->base_model ? r->base_model : "-");
    printf("dataset:  %s\n", r->dataset ? r->dataset : "-");
    printf("output:   %s\n", r->output_model ? r->output_model : "-");
    printf("params:   %s\n", r->params);
    printf("metrics:  %s\n", r->metrics);
    printf("steps:    %" PRId64 "\n", r->n_steps);
    return 0;
}

// A column of the steps table: the value, or "-" when it was not measured.
static void cell(const char *fmt, int width, double v)
{
    if (isnan(v))
        printf(" %*s", width, "-");
    else
        printf(fmt, width, v);
}

static int show_step(void *ud, const struct tw_run_step *s)
{
    struct ctx *c = ud;
    if (c->json) {
        json_t *o =
            json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "step", (json_int_t)s->step,
                      "epoch", num(s->epoch), "loss", num(s->loss), "lr", num(s->lr), "grad_norm",
                      num(s->grad_norm), "tokens_per_s", num(s->tokens_per_s), "mem_bytes",
                      s->mem_bytes < 0 ? json_null() : json_integer(s->mem_bytes), "elapsed_s",
                      num(s->elapsed_s), "eval_loss", num(s->eval_loss));
        return o && json_array_append_new(c->steps, o) == 0
                   ? 0
                   : tw_error_set(TW_ENOMEM, "out of memory");
    }
    if (c->rows++ == 0)
        printf("\n%8s %7s %9s %10s %9s %10s %9s %9s %9s\n", "step", "epoch", "loss", "lr",
               "grad_norm", "tokens/s", "mem_MiB", "elapsed", "eval_loss");
    printf("%8" PRId64, s->step);
    cell(" %*.3f", 7, s->epoch);
    cell(" %*.4f", 9, s->loss);
    cell(" %*.3e", 10, s->lr);
    cell(" %*.3f", 9, s->grad_norm);
    cell(" %*.1f", 10, s->tokens_per_s);
    cell(" %*.1f", 9, s->mem_bytes < 0 ? NAN : s->mem_bytes / 1048576.0);
    cell(" %*.1f", 9, s->elapsed_s);
    cell(" %*.4f", 9, s->eval_loss);
    printf("\n");
    return 0;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_runs;
    if (argc < 2)
        return tw_cli_usage_error(v, "give ls or show ID");
    const char *sub = argv[1], *kind = NULL, *id = NULL, *val;
    long limit = 20;
    struct ctx c = { 0 };
    bool ls = strcmp(sub, "ls") == 0, show = strcmp(sub, "show") == 0;
    if (!ls && !show)
        return tw_cli_usage_error(v, "unknown subcommand '%s' (ls, show)", sub);
    for (int i = 2; i < argc; i++) {
        int urc;
        if (ls && tw_cli_opt(argc, argv, &i, "--limit", &val)) {
            if ((urc = tw_cli_opt_long(v, "--limit", val, 0, 1L << 40, &limit)))
                return urc;
        } else if (ls && tw_cli_opt(argc, argv, &i, "--kind", &val)) {
            if (!val || !*val)
                return tw_cli_usage_error(v, "--kind needs a name");
            kind = val;
        } else if (strcmp(argv[i], "--json") == 0) {
            c.json = true;
        } else if (show && !id && argv[i][0] != '-') {
            id = argv[i];
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    if (show && !id)
        return tw_cli_usage_error(v, "show needs a run ID (twin runs ls)");
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    int rc;
    if (ls) {
        rc = tw_runs_list(h, kind, limit, ls_row, &c);
        if (!rc && !c.rows && !c.json)
            fprintf(stderr, "twin: no runs in %s%s%s (the training pipeline records them)\n",
                    cli->home, kind ? " of kind " : "", kind ? kind : "");
    } else {
        c.steps = json_array();
        rc = c.steps ? tw_run_get(h, id, show_run, show_step, &c)
                     : tw_error_set(TW_ENOMEM, "out of memory");
        if (!rc && c.json) {
            json_object_set_new(c.run, "steps", c.steps);
            c.steps = NULL;
            rc = tw_cli_print_json(c.run, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            c.run = NULL;
        }
        json_decref(c.run);
        json_decref(c.steps);
    }
    tw_home_close(h);
    if (!rc)
        rc = tw_cli_flush_stdout();
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_runs = {
    .name = "runs",
    .summary = "the training runs: parameters, status, losses, metrics",
    .usage = "usage: twin [--home DIR] runs ls [--limit 20] [--kind K] [--json]\n"
             "       twin [--home DIR] runs show ID [--json]\n\n"
             "ls: the newest runs (--limit 0: all; --kind pretrain, sft, dpo, ...), one a\n"
             "line: id, kind, status, start (UTC), duration, steps, the last loss and the model\n"
             "it registered (--json: one object a line). show: one run's parameters, dataset,\n"
             "base model, status and message, final metrics, and a table of every step (epoch,\n"
             "loss, learning rate, gradient norm, tokens/s, memory, elapsed time, eval loss);\n"
             "--json: one object with a \"steps\" array.\n",
    .run = run,
};

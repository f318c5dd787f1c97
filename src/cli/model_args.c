// Shared options of the model verbs and opening the model they name.
#include "cli/model_args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/text_args.h"
#include "store/registry.h"

void tw_cli_model_init(struct tw_cli_model *a, const char *home)
{
    memset(a, 0, sizeof *a);
    a->home = home;
    tw_sampler_params_default(&a->gen.sampling);
    a->gen.sampling.temperature = 0.8f;
    a->gen.sampling.top_k = 40;
    a->gen.sampling.top_p = 0.95f;
    a->gen.sampling.min_p = 0.05f;
    a->gen.max_tokens = 256;
    a->gen.stops = a->stops;
}

static bool parse_float(const char *s, double lo, double hi, float *out)
{
    double v;
    if (!tw_cli_parse_double(s, lo, hi, &v))
        return false;
    *out = (float)v;
    return true;
}

bool tw_cli_device_ok(const char *s)
{
    enum tw_device_choice choice;
    int gpu;
    return tw_device_name_parse(s, &choice, &gpu);
}

int tw_cli_model_opt(const struct tw_verb *v, int argc, char **argv, int *i,
                     struct tw_cli_model *a, bool sampling)
{
    const char *val;
    long n;
    struct tw_sampler_params *sp = &a->gen.sampling;
    if (tw_cli_opt(argc, argv, i, "--model", &val)) {
        if (!val || !*val)
            return tw_cli_usage_error(v, "--model needs a PATH");
        a->model = val;
    } else if (tw_cli_opt(argc, argv, i, "--device", &val)) {
        if (!tw_cli_device_ok(val))
            return tw_cli_usage_error(v, "--device needs cpu, cuda, cuda:N or auto");
        a->device = val;
    } else if (tw_cli_opt(argc, argv, i, "--threads", &val)) {
        if (!tw_cli_parse_long(val, 1, 1024, &n))
            return tw_cli_usage_error(v, "--threads needs a number from 1 to 1024");
        a->threads = (int)n;
    } else if (!sampling) {
        return -1;
    } else if (tw_cli_opt(argc, argv, i, "--ctx", &val)) {
        if (!tw_cli_parse_long(val, 16, 1 << 24, &n))
            return tw_cli_usage_error(v, "--ctx needs a number from 16 to 16777216");
        a->ctx = (int32_t)n;
    } else if (tw_cli_opt(argc, argv, i, "--max-tokens", &val) ||
               tw_cli_opt(argc, argv, i, "-n", &val)) {
        if (!tw_cli_parse_long(val, 1, 1 << 24, &n))
            return tw_cli_usage_error(v, "--max-tokens needs a positive number");
        a->gen.max_tokens = (int32_t)n;
    } else if (tw_cli_opt(argc, argv, i, "--temp", &val)) {
        if (!parse_float(val, 0, 100, &sp->temperature))
            return tw_cli_usage_error(v, "--temp needs a number from 0 to 100");
    } else if (tw_cli_opt(argc, argv, i, "--top-k", &val)) {
        if (!tw_cli_parse_long(val, 0, 1 << 24, &n))
            return tw_cli_usage_error(v, "--top-k needs a number >= 0");
        sp->top_k = (int32_t)n;
    } else if (tw_cli_opt(argc, argv, i, "--top-p", &val)) {
        if (!parse_float(val, 0, 1, &sp->top_p))
            return tw_cli_usage_error(v, "--top-p needs a number from 0 to 1");
    } else if (tw_cli_opt(argc, argv, i, "--min-p", &val)) {
        if (!parse_float(val, 0, 1, &sp->min_p))
            return tw_cli_usage_error(v, "--min-p needs a number from 0 to 1");
    } else if (tw_cli_opt(argc, argv, i, "--repeat-penalty", &val)) {
        if (!parse_float(val, 0.01, 100, &sp->repetition_penalty))
            return tw_cli_usage_error(v, "--repeat-penalty needs a number from 0.01 to 100");
    } else if (tw_cli_opt(argc, argv, i, "--frequency-penalty", &val)) {
        if (!parse_float(val, -2, 2, &sp->frequency_penalty))
            return tw_cli_usage_error(v, "--frequency-penalty needs a number from -2 to 2");
    } else if (tw_cli_opt(argc, argv, i, "--presence-penalty", &val)) {
        if (!parse_float(val, -2, 2, &sp->presence_penalty))
            return tw_cli_usage_error(v, "--presence-penalty needs a number from -2 to 2");
    } else if (tw_cli_opt(argc, argv, i, "--seed", &val)) {
        char *end;
        errno = 0;
        unsigned long long s = val ? strtoull(val, &end, 10) : 0;
        if (!val || !*val || *end || errno)
            return tw_cli_usage_error(v, "--seed needs a number");
        sp->seed = s;
    } else if (tw_cli_opt(argc, argv, i, "--stop", &val)) {
        if (!val || !*val)
            return tw_cli_usage_error(v, "--stop needs a non-empty TEXT");
        if (a->gen.n_stops == TW_CLI_MAX_STOPS)
            return tw_cli_usage_error(v, "at most %d --stop strings", TW_CLI_MAX_STOPS);
        a->stops[a->gen.n_stops++] = val;
    } else if (strcmp(argv[*i], "--ignore-eos") == 0) {
        a->gen.ignore_eos = true;
    } else {
        return -1;
    }
    return TW_EXIT_OK;
}

int tw_cli_model_resolve(struct tw_cli_model *a)
{
    // The path first: a folder that happens to be called like a model is that folder.
    if (a->model && (tw_file_exists(a->model) || !tw_registry_is_ref(a->model)))
        return 0;
    struct tw_home *h;
    struct tw_model_ref r;
    int rc = a->home ? tw_home_open(a->home, &h)
                     : tw_error_set(TW_ESTATE, "no twin home to look models up in");
    if (rc && a->model)
        return 0; // no home: opening the path says it is not there, as without a registry
    if (!rc) {
        rc = a->model ? tw_registry_resolve(h, a->model, &r) : tw_registry_promoted(h, &r);
        tw_home_close(h);
    }
    if (rc && a->model)
        return tw_error_prefix("--model %s: not a file or folder", a->model);
    if (rc)
        return tw_error_prefix("--model PATH is required");
    snprintf(a->path, sizeof a->path, "%s", r.path);
    a->model = a->path;
    return 0;
}

int tw_cli_model_open(struct tw_cli_model *a)
{
    struct tw_session s;
    int rc = tw_cli_model_resolve(a);
    if (rc)
        return rc;
    rc = tw_session_open_on(a->model, a->device, a->threads, a->ctx, &s);
    a->m = s.m, a->be = s.be, a->c = s.c, a->host = s.host;
    return rc;
}

void tw_cli_model_close(struct tw_cli_model *a)
{
    struct tw_session s = { a->m, a->be, a->c, a->host };
    tw_session_close(&s);
    a->c = NULL, a->be = NULL, a->m = NULL, a->host = NULL;
}

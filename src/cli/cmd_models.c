// twin models (ls, show, add, promote, export): the model registry (store/registry.h) —
// registered versions with their files and lineage, the promoted model that serve and ask
// use by default, and copies out as a Hugging Face folder, a GGUF file or a PEFT adapter.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "model/convert.h"
#include "model/model.h"
#include "store/home.h"
#include "store/registry.h"

static void when(int64_t ms, char *buf, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&s, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, cap, "-");
}

static void size(int64_t bytes, char *buf, size_t cap)
{
    if (bytes >= 1 << 30)
        snprintf(buf, cap, "%.1f GiB", bytes / 1073741824.0);
    else
        snprintf(buf, cap, "%.1f MiB", bytes / 1048576.0);
}

static json_t *version_json(const struct tw_model_version *m, bool files)
{
    char ref[96];
    snprintf(ref, sizeof ref, "%s:%" PRId64, m->name, m->version);
    json_t *o = json_pack(
        "{s:s, s:s, s:I, s:s, s:s, s:b, s:I, s:s, s:s?, s:s?, s:s?, s:I, s:s?, s:I, s:s?, s:s, "
        "s:o?, s:o?}",
        "ref", ref, "name", m->name, "version", (json_int_t)m->version, "kind", m->kind, "stage",
        m->stage, "promoted", strcmp(m->stage, "production") == 0, "created_at",
        (json_int_t)m->created_at, "path", m->path, "run_id", m->run_id, "base", m->base,
        "dataset_sha256", m->dataset_sha256, "n_params", (json_int_t)m->n_params, "dtype",
        m->dtype, "bytes", (json_int_t)m->bytes, "source", m->source, "twin_version",
        m->twin_version, "params", json_loads(m->params, 0, NULL), "metrics",
        json_loads(m->metrics, 0, NULL));
    if (!o || !files)
        return o;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < m->n_files; i++)
        json_array_append_new(arr,
                              json_pack("{s:s, s:s, s:I}", "file", m->files[i].file, "blob",
                                        m->files[i].blob, "bytes", (json_int_t)m->files[i].bytes));
    json_object_set_new(o, "files", arr ? arr : json_null());
    return o;
}

struct ls_ctx {
    bool json;
    int rows;
};

static int ls_row(void *ud, const struct tw_model_version *m)
{
    struct ls_ctx *c = ud;
    if (c->json)
        return tw_cli_print_json(version_json(m, false), JSON_COMPACT);
    if (c->rows++ == 0)
        printf("%-24s %-9s %-11s %9s %-5s %10s  %-19s  %s\n", "MODEL", "KIND", "STAGE", "PARAMS",
               "DTYPE", "SIZE", "CREATED (UTC)", "RUN");
    char ref[96], at[32], sz[32], np[32];
    snprintf(ref, sizeof ref, "%s:%" PRId64, m->name, m->version);
    when(m->created_at, at, sizeof at);
    size(m->bytes, sz, sizeof sz);
    if (m->n_params > 0)
        snprintf(np, sizeof np, "%.2f M", m->n_params / 1e6);
    else
        snprintf(np, sizeof np, "-");
    printf("%-24s %-9s %-11s %9s %-5s %10s  %-19s  %s\n", ref, m->kind, m->stage, np,
           m->dtype ? m->dtype : "-", sz, at, m->run_id ? m->run_id : "-");
    return 0;
}

static int show_one(void *ud, const struct tw_model_version *m)
{
    if (*(bool *)ud)
        return tw_cli_print_json(version_json(m, true), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    char at[32], sz[32];
    when(m->created_at, at, sizeof at);
    size(m->bytes, sz, sizeof sz);
    printf("model:    %s:%" PRId64 "\n", m->name, m->version);
    printf("kind:     %s\n", m->kind);
    printf("stage:    %s%s\n", m->stage,
           strcmp(m->stage, "production") == 0 ? " (the promoted model)" : "");
    printf("created:  %s UTC by %s\n", at, m->twin_version);
    printf("folder:   %s\n", m->path);
    if (m->n_params > 0)
        printf("weights:  %" PRId64 " parameters (%.2f M), %s\n", m->n_params, m->n_params / 1e6,
               m->dtype ? m->dtype : "dtype unknown");
    printf("size:     %s in %zu files\n", sz, m->n_files);
    printf("run:      %s\n", m->run_id ? m->run_id : "-");
    printf("base:     %s\n", m->base ? m->base : "-");
    printf("dataset:  %s\n", m->dataset_sha256 ? m->dataset_sha256 : "-");
    printf("source:   %s\n", m->source ? m->source : "-");
    printf("params:   %s\n", m->params);
    printf("metrics:  %s\n", m->metrics);
    printf("files:\n");
    for (size_t i = 0; i < m->n_files; i++)
        printf("  %-36s %12" PRId64 "  %s\n", m->files[i].file, m->files[i].bytes,
               m->files[i].blob);
    return 0;
}

static void count_dtype(void *arg, const char *hf, const char *gg, const struct tw_tensor *t)
{
    int64_t *by = arg;
    by[t->dtype] += tw_tensor_nelem(t);
}

// twin models add PATH --name NAME [--kind imported] [--base REF]: a model twin opens (its
// parameters and dtype recorded), or a PEFT adapter folder.
static int add(struct tw_home *h, const char *path, struct tw_model_meta *meta)
{
    char cfg[4200];
    struct tw_model *m = NULL;
    int rc = tw_path_join(cfg, sizeof cfg, path, "config.json");
    if (!rc && tw_file_exists(cfg))
        rc = tw_model_open(path, &m);
    if (rc)
        return rc;
    int64_t by[TW_DTYPE_COUNT] = { 0 };
    if (m) {
        meta->n_params = tw_model_n_params(m);
        tw_model_foreach_tensor(m, count_dtype, by);
        int best = 0;
        for (int t = 1; t < TW_DTYPE_COUNT; t++)
            best = by[t] > by[best] ? t : best;
        meta->dtype = tw_dtype_name((enum tw_dtype)best);
    }
    struct tw_model_ref r;
    rc = tw_registry_add(h, path, meta, &r);
    tw_model_close(m);
    if (!rc)
        printf("registered %s:%" PRId64 " (%s) in %s\n", r.name, r.version, meta->kind, r.path);
    return rc;
}

static int export(struct tw_home *h, const char *ref, const char *format, const char *type,
                  const char *out)
{
    if (strcmp(format, "hf") == 0 || strcmp(format, "peft") == 0) {
        int rc = tw_registry_export(h, ref, out, strcmp(format, "peft") == 0);
        if (!rc)
            printf("wrote %s (%s)\n", out, strcmp(format, "hf") == 0 ? "Hugging Face" : "PEFT");
        return rc;
    }
    enum tw_dtype t = TW_DTYPE_F16;
    if (type && tw_dtype_from_name(type, &t) != 0)
        return TW_EINVAL;
    struct tw_model_ref r;
    struct tw_model *m;
    int rc = tw_registry_resolve(h, ref, &r);
    if (!rc && tw_file_exists(out))
        rc = tw_error_set(TW_EEXIST, "%s: exists already", out);
    if (!rc)
        rc = tw_model_open(r.path, &m);
    if (rc)
        return rc;
    rc = tw_convert_to_gguf(m, out, t);
    if (!rc)
        printf("wrote %s (GGUF, %s)\n", out, tw_dtype_name(t));
    tw_model_close(m);
    return rc;
}

struct args {
    const char *sub, *pos[2], *format, *type;
    int n_pos;
    bool json;
    struct tw_model_meta meta;
};

static int parse(const struct tw_verb *v, int argc, char **argv, struct args *a)
{
    const char *val;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
        } else if (tw_cli_opt(argc, argv, &i, "--name", &val)) {
            a->meta.name = val;
        } else if (tw_cli_opt(argc, argv, &i, "--kind", &val)) {
            a->meta.kind = val;
        } else if (tw_cli_opt(argc, argv, &i, "--base", &val)) {
            a->meta.base = val;
        } else if (tw_cli_opt(argc, argv, &i, "--format", &val)) {
            a->format = val;
        } else if (tw_cli_opt(argc, argv, &i, "--type", &val)) {
            a->type = val;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        } else if (a->n_pos < 2) {
            a->pos[a->n_pos++] = argv[i];
        } else {
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        }
    }
    const char *sub = a->sub;
    int want = strcmp(sub, "ls") == 0 ? 0 : strcmp(sub, "export") == 0 ? 2 : 1;
    if (strcmp(sub, "ls") && strcmp(sub, "show") && strcmp(sub, "add") && strcmp(sub, "promote") &&
        strcmp(sub, "export"))
        return tw_cli_usage_error(v, "unknown subcommand '%s' (ls, show, add, promote, export)",
                                  sub);
    if (a->n_pos != want)
        return tw_cli_usage_error(v, "%s takes %s", sub,
                                  want == 0                 ? "no argument"
                                  : want == 2               ? "REF and OUT"
                                  : strcmp(sub, "add") == 0 ? "a PATH"
                                                            : "a REF");
    if (strcmp(sub, "add") == 0 && (!a->meta.name || !*a->meta.name))
        return tw_cli_usage_error(v, "add needs --name NAME");
    if ((a->meta.name || a->meta.kind || a->meta.base) && strcmp(sub, "add") != 0)
        return tw_cli_usage_error(v, "--name, --kind and --base go with add");
    bool exp = strcmp(sub, "export") == 0;
    if (exp && (!a->format || (strcmp(a->format, "hf") && strcmp(a->format, "gguf") &&
                               strcmp(a->format, "peft"))))
        return tw_cli_usage_error(v, "export needs --format hf, gguf or peft");
    if (a->format && !exp)
        return tw_cli_usage_error(v, "--format goes with export");
    if (a->type && !(exp && strcmp(a->format, "gguf") == 0))
        return tw_cli_usage_error(v, "--type goes with export --format gguf");
    enum tw_dtype t;
    if (a->type && (tw_dtype_from_name(a->type, &t) != 0 || t == TW_DTYPE_Q6_K))
        return tw_cli_usage_error(v, "--type is one of f32, f16, bf16, q8_0, q4_0, q4_K");
    if (a->json && strcmp(sub, "ls") && strcmp(sub, "show"))
        return tw_cli_usage_error(v, "--json goes with ls and show");
    return TW_EXIT_OK;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_models;
    if (argc < 2)
        return tw_cli_usage_error(v, "give ls, show, add, promote or export");
    struct args a = { .sub = argv[1] };
    int urc = parse(v, argc, argv, &a);
    if (urc)
        return urc;
    if (!a.meta.kind)
        a.meta.kind = "imported";
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    int rc = 0;
    const char *sub = a.sub;
    if (strcmp(sub, "ls") == 0) {
        struct ls_ctx c = { .json = a.json };
        rc = tw_registry_list(h, NULL, ls_row, &c);
        if (!rc && !c.rows && !a.json)
            fprintf(stderr, "twin: no models in %s (twin models add PATH --name NAME)\n",
                    cli->home);
    } else if (strcmp(sub, "show") == 0) {
        rc = tw_registry_get(h, a.pos[0], show_one, &a.json);
    } else if (strcmp(sub, "add") == 0) {
        rc = add(h, a.pos[0], &a.meta);
    } else if (strcmp(sub, "promote") == 0) {
        struct tw_model_ref r;
        rc = tw_registry_promote(h, a.pos[0], &r);
        if (!rc)
            printf("promoted %s:%" PRId64 " (%s): serve and ask use it when no --model is "
                   "given\n",
                   r.name, r.version, r.path);
    } else {
        rc = export(h, a.pos[0], a.format, a.type, a.pos[1]);
    }
    tw_home_close(h);
    if (!rc)
        rc = tw_cli_flush_stdout();
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_models = {
    .name = "models",
    .summary = "the model registry: list, show, add, promote, export",
    .usage =
        "usage: twin [--home DIR] models ls [--json]\n"
        "       twin [--home DIR] models show REF [--json]\n"
        "       twin [--home DIR] models add PATH --name NAME [--kind imported] [--base REF]\n"
        "       twin [--home DIR] models promote REF\n"
        "       twin [--home DIR] models export REF --format hf|gguf|peft [--type f16] OUT\n\n"
        "The registry holds models as immutable versions NAME:1, NAME:2, ... whose files are\n"
        "blobs of the home, each shown as a Hugging Face folder HOME/models/NAME/vN. REF is\n"
        "NAME (its newest version), NAME:VERSION, NAME:latest, NAME:promoted or @promoted.\n"
        "ls: every version (kind, stage, parameters, dtype, size, time, run; --json: one\n"
        "object a line). show: one version's files with their sizes and blobs, its lineage\n"
        "(run, base model, dataset) and its parameters and metrics.\n"
        "add: registers the Hugging Face folder PATH (config.json and safetensors weights,\n"
        "or a PEFT adapter) as the next version of NAME; --kind is base, pretrain, sft, dpo,\n"
        "merged, adapter or imported (default); --base names the model it came from.\n"
        "promote: REF becomes the promoted model (the one before is archived); twin serve,\n"
        "twin ask, and --model @promoted use it when no --model is given.\n"
        "export: a new Hugging Face folder (hf), a GGUF file (gguf, --type f32, f16\n"
        "(default), bf16, q8_0, q4_0 or q4_K, as twin convert) or the PEFT adapter's files\n"
        "(peft) at OUT, which must not exist.\n",
    .run = run,
};

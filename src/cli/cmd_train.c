// twin train (pretrain, sft, dpo): the training pipeline — the data (a JSON Lines file, or the
// warehouse's documents of chosen authors), the model (a base, with LoRA or QLoRA, or a shape
// with random weights), the loop (train/trainer.h) with a progress line, the run recorded in
// the registry step by step, and the result registered as a model with its lineage.
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/vec.h"
#include "cli/cli.h"
#include "cli/model_args.h"
#include "cli/text_args.h"
#include "model/model.h"
#include "store/home.h"
#include "store/registry.h"
#include "store/warehouse.h"
#include "tensor/comm.h"
#include "train/export.h"
#include "train/trainer.h"

#define MAX_AUTHORS 16

struct args {
    enum tw_train_task task;
    const char *base, *shape, *tokenizer, *data, *out, *template, *resume;
    const char *authors[MAX_AUTHORS];
    int n_authors;
    struct tw_lm_opts lora;
    enum tw_dtype dtype, compute;
    const char *device; // --device (NULL: $TWIN_DEVICE, else auto)
    int gpus;           // --gpus: data-parallel workers, one per GPU (0: one process)
    int threads;
    bool quiet;
    struct tw_train_opts o;
};

static const char *const task_names[] = { "pretrain", "sft", "dpo" };

// "r=32,alpha=32,dropout=0.05,targets=q,k,v" (targets last: its commas list projections).
static int parse_lora(const struct tw_verb *v, const char *s, struct tw_lm_opts *o)
{
    static const char *const proj[TW_PROJ_COUNT] = { "q", "k", "v", "o", "gate", "up", "down" };
    o->lora_r = 32, o->lora_alpha = 32, o->lora_dropout = 0, o->lora_targets = TW_PROJ_ALL;
    char buf[256];
    if (!s || snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf)
        return tw_cli_usage_error(v, "--lora needs r=R,alpha=A,dropout=P,targets=LIST");
    char *save = NULL;
    bool in_targets = false;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double x;
        char *eq = strchr(t, '=');
        const char *key = eq ? (*eq = 0, t) : NULL, *val = eq ? eq + 1 : t;
        if (key && strcmp(key, "targets") == 0) {
            in_targets = true;
            o->lora_targets = 0;
        } else if (key) {
            in_targets = false;
            if (strcmp(key, "r") == 0 && tw_cli_parse_double(val, 1, 4096, &x) && x == (int)x)
                o->lora_r = (int32_t)x;
            else if (strcmp(key, "alpha") == 0 && tw_cli_parse_double(val, 1e-6, 1e6, &x))
                o->lora_alpha = (float)x;
            else if (strcmp(key, "dropout") == 0 && tw_cli_parse_double(val, 0, 0.99, &x))
                o->lora_dropout = (float)x;
            else
                return tw_cli_usage_error(v,
                                          "--lora: \"%s=%s\" is not r=N, alpha=X, "
                                          "dropout=P (0 <= P < 1) or targets=LIST",
                                          key, val);
            continue;
        }
        if (!in_targets)
            return tw_cli_usage_error(v, "--lora: \"%s\" is not KEY=VALUE", t);
        if (strcmp(val, "all") == 0) {
            o->lora_targets = TW_PROJ_ALL;
            continue;
        }
        int p = 0;
        while (p < TW_PROJ_COUNT && strcmp(val, proj[p]) != 0)
            p++;
        if (p == TW_PROJ_COUNT)
            return tw_cli_usage_error(v,
                                      "--lora: target \"%s\": want all or some of q, k, v, "
                                      "o, gate, up, down",
                                      val);
        o->lora_targets |= 1u << p;
    }
    if (!o->lora_targets)
        return tw_cli_usage_error(v, "--lora: targets= names no projection");
    return 0;
}

static int parse(const struct tw_verb *v, int argc, char **argv, struct args *a)
{
    tw_train_opts_default(&a->o, a->task);
    a->dtype = TW_DTYPE_BF16;
    a->compute = TW_DTYPE_F32;
    a->lora.qlora = TW_DTYPE_F32;
    a->lora.seed = 42;
    for (int i = 2; i < argc; i++) {
        const char *val;
        long n;
        double x;
        int rc = 0;
        struct tw_train_opts *o = &a->o;
#define NUM(opt, lo, hi, dst)                                                          \
    (tw_cli_parse_double(val, lo, hi, &x)                                              \
         ? ((dst) = x, 0)                                                              \
         : tw_cli_usage_error(v, "%s needs a number from %g to %g", opt, (double)(lo), \
                              (double)(hi)))
        if (tw_cli_opt(argc, argv, &i, "--base", &val))
            a->base = val;
        else if (tw_cli_opt(argc, argv, &i, "--shape", &val))
            a->shape = val;
        else if (tw_cli_opt(argc, argv, &i, "--tokenizer", &val))
            a->tokenizer = val;
        else if (tw_cli_opt(argc, argv, &i, "--data", &val))
            a->data = val;
        else if (tw_cli_opt(argc, argv, &i, "--author", &val)) {
            if (!val || a->n_authors == MAX_AUTHORS)
                return tw_cli_usage_error(v, "--author needs a NAME (at most %d)", MAX_AUTHORS);
            a->authors[a->n_authors++] = val;
        } else if (tw_cli_opt(argc, argv, &i, "--out", &val))
            a->out = val;
        else if (tw_cli_opt(argc, argv, &i, "--template", &val))
            a->template = val;
        else if (tw_cli_opt(argc, argv, &i, "--resume", &val))
            a->resume = val;
        else if (tw_cli_opt(argc, argv, &i, "--lora", &val))
            rc = parse_lora(v, val, &a->lora);
        else if (tw_cli_opt(argc, argv, &i, "--qlora", &val)) {
            const char *q = val && strcmp(val, "q4") == 0   ? "q4_0"
                            : val && strcmp(val, "q8") == 0 ? "q8_0"
                                                            : val;
            if (!q || tw_dtype_from_name(q, &a->lora.qlora) != 0)
                return tw_cli_usage_error(v, "--qlora needs q4 (q4_0), q4_K or q8 (q8_0)");
            if (!a->lora.lora_r)
                rc = parse_lora(v, "r=32", &a->lora);
        } else if (tw_cli_opt(argc, argv, &i, "--dtype", &val)) {
            if (!val || tw_dtype_from_name(val, &a->dtype) != 0 ||
                (a->dtype != TW_DTYPE_F32 && a->dtype != TW_DTYPE_F16 &&
                 a->dtype != TW_DTYPE_BF16))
                return tw_cli_usage_error(v, "--dtype needs f32, f16 or bf16");
        } else if (tw_cli_opt(argc, argv, &i, "--compute", &val)) {
            if (!val || tw_dtype_from_name(val, &a->compute) != 0 ||
                (a->compute != TW_DTYPE_F32 && a->compute != TW_DTYPE_BF16))
                return tw_cli_usage_error(v, "--compute needs f32 or bf16");
        } else if (tw_cli_opt(argc, argv, &i, "--schedule", &val)) {
            if (!val || tw_schedule_from_name(val, &o->schedule) != 0)
                return tw_cli_usage_error(v, "--schedule needs constant, linear or cosine");
        } else if (tw_cli_opt(argc, argv, &i, "--epochs", &val))
            rc = tw_cli_opt_long(v, "--epochs", val, 1, 100000, &n), o->epochs = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--max-steps", &val))
            rc = tw_cli_opt_long(v, "--max-steps", val, 1, 1L << 40, &n), o->max_steps = n;
        else if (tw_cli_opt(argc, argv, &i, "--batch", &val))
            rc = tw_cli_opt_long(v, "--batch", val, 1, 4096, &n), o->batch = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--accum", &val))
            rc = tw_cli_opt_long(v, "--accum", val, 1, 4096, &n), o->accum = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--seq", &val))
            rc = tw_cli_opt_long(v, "--seq", val, 2, 1 << 20, &n), o->seq = (int32_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--warmup", &val))
            rc = tw_cli_opt_long(v, "--warmup", val, 0, 1L << 40, &n), o->warmup = n;
        else if (tw_cli_opt(argc, argv, &i, "--checkpoint-every", &val))
            rc = tw_cli_opt_long(v, "--checkpoint-every", val, 1, 1L << 40, &n),
            o->checkpoint_every = n;
        else if (tw_cli_opt(argc, argv, &i, "--seed", &val))
            rc = tw_cli_opt_long(v, "--seed", val, 0, 1L << 62, &n), o->seed = (uint64_t)n,
            a->lora.seed = (uint64_t)n;
        else if (tw_cli_opt(argc, argv, &i, "--device", &val))
            rc = tw_cli_device_ok(val) ? (a->device = val, 0)
                                       : tw_cli_usage_error(v, "--device needs cpu, cuda, "
                                                               "cuda:N or auto");
        else if (tw_cli_opt(argc, argv, &i, "--gpus", &val))
            rc = tw_cli_opt_long(v, "--gpus", val, 1, 64, &n), a->gpus = (int)n;
        else if (tw_cli_opt(argc, argv, &i, "--threads", &val))
            rc = tw_cli_opt_long(v, "--threads", val, 1, 1024, &n), a->threads = (int)n;
        else if (tw_cli_opt(argc, argv, &i, "--lr", &val))
            rc = NUM("--lr", 1e-12, 10, o->lr);
        else if (tw_cli_opt(argc, argv, &i, "--weight-decay", &val))
            rc = NUM("--weight-decay", 0, 10, o->weight_decay);
        else if (tw_cli_opt(argc, argv, &i, "--clip", &val))
            rc = NUM("--clip", 0, 1e9, o->clip);
        else if (tw_cli_opt(argc, argv, &i, "--beta", &val))
            rc = NUM("--beta", 1e-6, 100, o->beta);
        else if (tw_cli_opt(argc, argv, &i, "--eval", &val))
            rc = NUM("--eval", 0, 0.9, o->eval_frac);
        else if (strcmp(argv[i], "--pad") == 0)
            o->mode = TW_BATCH_MODE_PAD;
        else if (strcmp(argv[i], "--recompute") == 0)
            o->recompute = true;
        else if (strcmp(argv[i], "--quiet") == 0)
            a->quiet = true;
        else
            return tw_cli_usage_error(v, "unknown option %s", argv[i]);
#undef NUM
        if (rc)
            return rc;
    }
    if (!a->out)
        return tw_cli_usage_error(v, "--out NAME is required (the registered model's name)");
    if (!a->base == !a->shape)
        return tw_cli_usage_error(v, "give --base MODEL, or --shape NAME --tokenizer DIR to "
                                     "pretrain from scratch");
    if (a->shape && (!a->tokenizer || a->task != TW_TRAIN_PRETRAIN))
        return tw_cli_usage_error(v, "--shape is for pretrain, with --tokenizer DIR");
    if (!a->data == !a->n_authors || (a->n_authors && a->task != TW_TRAIN_PRETRAIN))
        return tw_cli_usage_error(v, "give --data FILE (or, to pretrain, --author NAME)");
    if (a->task == TW_TRAIN_DPO && !a->lora.lora_r && a->shape)
        return tw_cli_usage_error(v, "DPO starts from a model (--base)");
    if (a->gpus > 1 && a->device && strcmp(a->device, "cuda") != 0 &&
        strcmp(a->device, "auto") != 0)
        return tw_cli_usage_error(v, "--gpus N trains on the first N GPUs (choose them with "
                                     "CUDA_VISIBLE_DEVICES): --device is cuda or auto");
    return 0;
}

// ---- the data.

struct docs {
    tw_vec texts; // char *
};

static int add_doc(void *ud, const struct tw_wh_doc *d)
{
    struct docs *ds = ud;
    char *t = tw_malloc(d->content_len + 1);
    if (!t)
        return tw_error_set(TW_ENOMEM, "out of memory");
    memcpy(t, d->content, d->content_len);
    t[d->content_len] = 0;
    if (tw_vec_push(&ds->texts, &t) != 0) {
        tw_free(t);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

static int load_data(struct tw_home *h, const struct args *a, const tw_tokenizer *tok,
                     enum tw_chat_family fam, struct tw_dataset *d)
{
    struct tw_data_options o = { .family = fam, .max_seq = a->o.seq, .max_len = a->o.seq };
    o.task = a->task == TW_TRAIN_PRETRAIN ? TW_DATA_TASK_PRETRAIN
             : a->task == TW_TRAIN_SFT    ? TW_DATA_TASK_SFT
                                          : TW_DATA_TASK_DPO;
    if (a->data)
        return tw_dataset_load(d, a->data, tok, &o);
    struct docs ds;
    tw_vec_init(&ds.texts, sizeof(char *));
    int rc = 0;
    for (int i = 0; i < a->n_authors && !rc; i++) {
        size_t before = ds.texts.len;
        struct tw_wh_filter f = { .author = a->authors[i], .with_content = true };
        rc = tw_wh_docs(h, &f, add_doc, &ds);
        if (!rc && ds.texts.len == before)
            rc = tw_error_set(TW_ENOENT,
                              "%s: no documents by \"%s\" in the warehouse (twin "
                              "authors ls)",
                              h->path, a->authors[i]);
    }
    if (!rc)
        rc = tw_dataset_from_texts(d, ds.texts.data, ds.texts.len, tok, &o);
    for (size_t i = 0; i < ds.texts.len; i++)
        tw_free(*(char **)tw_vec_at(&ds.texts, i));
    tw_vec_free(&ds.texts);
    return rc;
}

// ---- progress and the run's records.

struct ctx {
    struct tw_home *h;
    const struct args *a;
    char run[TW_RUN_ID_LEN];
    double first_loss;
    bool tty;
};

static void clock_text(double s, char *buf, size_t cap)
{
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

static int on_step(void *ud, const struct tw_train_progress *p)
{
    struct ctx *c = ud;
    if (p->step == 1)
        c->first_loss = p->loss;
    struct tw_run_step s = { .step = p->step,
                             .epoch = p->epoch,
                             .loss = p->loss,
                             .lr = p->lr,
                             .grad_norm = p->grad_norm,
                             .tokens_per_s = p->tokens_per_s,
                             .mem_bytes = p->mem_bytes,
                             .elapsed_s = p->elapsed_s,
                             .eval_loss = p->eval_loss };
    int rc = tw_run_log_step(c->h, c->run, &s);
    if (rc || c->a->quiet)
        return rc;
    bool last = p->step == p->total;
    int64_t every = p->total / 20 > 1 ? p->total / 20 : 1; // about twenty lines in a log
    if (!c->tty && !last && p->step % every != 0 && isnan(p->eval_loss))
        return 0;
    char left[32];
    clock_text(p->eta_s, left, sizeof left);
    fprintf(stderr,
            "%sstep %" PRId64 "/%" PRId64 "  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  %s left",
            c->tty ? "\r" : "", p->step, p->total, p->loss, p->lr, p->grad_norm, p->tokens_per_s,
            left);
    if (!isnan(p->eval_loss))
        fprintf(stderr, "  eval loss %.4f", p->eval_loss);
    if (c->a->task == TW_TRAIN_DPO)
        fprintf(stderr, "  margin %.3f  acc %.2f", p->dpo.rewards_margins,
                p->dpo.rewards_accuracies);
    fputs(c->tty && !last && isnan(p->eval_loss) ? "\033[K" : "\n", stderr);
    return 0;
}

static json_t *params_json(const struct args *a)
{
    const struct tw_train_opts *o = &a->o;
    json_t *j = json_pack(
        "{s:s, s:i, s:I, s:i, s:i, s:i, s:s, s:f, s:s, s:I, s:f, s:f, s:f, "
        "s:f, s:f, s:f, s:I, s:s, s:s, s:b}",
        "task", task_names[a->task], "epochs", o->epochs, "max_steps", (json_int_t)o->max_steps,
        "batch", o->batch, "accum", o->accum, "seq", o->seq, "packing",
        o->mode == TW_BATCH_MODE_PACK ? "pack" : "pad", "lr", o->lr, "schedule",
        tw_schedule_name(o->schedule), "warmup", (json_int_t)o->warmup, "beta1", o->beta1, "beta2",
        o->beta2, "weight_decay", o->weight_decay, "clip", o->clip, "eval", o->eval_frac, "beta",
        o->beta, "seed", (json_int_t)o->seed, "dtype", tw_dtype_name(a->dtype), "compute",
        tw_dtype_name(a->compute), "recompute", (int)o->recompute);
    if (j && a->gpus > 1)
        json_object_set_new(j, "gpus", json_integer(a->gpus));
    if (j && a->lora.lora_r)
        json_object_set_new(j, "lora",
                            json_pack("{s:i, s:f, s:f, s:i, s:s}", "r", a->lora.lora_r, "alpha",
                                      (double)a->lora.lora_alpha, "dropout",
                                      (double)a->lora.lora_dropout, "targets",
                                      (int)a->lora.lora_targets, "qlora",
                                      tw_dtype_name(a->lora.qlora)));
    if (j && a->shape)
        json_object_set_new(j, "shape", json_string(a->shape));
    if (j && a->resume)
        json_object_set_new(j, "resumed_from", json_string(a->resume));
    return j;
}

static char *dump(json_t *j)
{
    char *s = NULL;
    if (j)
        tw_json_dump(j, JSON_COMPACT | JSON_REAL_PRECISION(10), &s);
    json_decref(j);
    return s;
}

// ---- the run.

static volatile sig_atomic_t stop_flag;

static void on_sigint(int sig)
{
    (void)sig;
    stop_flag = 1;
}

struct model_src {
    struct tw_model *base; // opened base, or the tokenizer's stand-in for export
    tw_tokenizer *tok;     // --tokenizer's (pretraining from scratch)
    char base_ref[PATH_MAX + 32];
    struct tw_model side; // --shape: the tokenizer's folder as the export's side model
};

// The model to train: the base (a path or a registered model), or a shape with random
// weights and the tokenizer's vocabulary.
static int open_model(struct tw_home *h, struct args *a, struct model_src *ms, tw_lm **lm,
                      tw_lm **ref)
{
    int rc;
    if (a->base) {
        const char *path = a->base;
        struct tw_model_ref r;
        snprintf(ms->base_ref, sizeof ms->base_ref, "%s", a->base);
        if (!tw_file_exists(a->base) && tw_registry_is_ref(a->base)) {
            if ((rc = tw_registry_resolve(h, a->base, &r)))
                return rc;
            path = r.path;
            snprintf(ms->base_ref, sizeof ms->base_ref, "%s:%" PRId64, r.name, r.version);
        }
        if ((rc = tw_model_open(path, &ms->base)))
            return rc;
        if (!ms->base->tok)
            return tw_error_set(TW_EINVAL, "%s: the model has no tokenizer to read the data with",
                                path);
        if ((rc = tw_lm_new(ms->base, &a->lora, lm)) || (rc = tw_lm_set_compute(*lm, a->compute)))
            return rc;
        // DPO of a fully trained model: the reference is a frozen copy of the start
        if (a->task == TW_TRAIN_DPO && !a->lora.lora_r) {
            struct tw_lm_opts frozen = { .lora_r = 0 };
            rc = tw_lm_new(ms->base, &frozen, ref);
        }
        return rc;
    }
    const struct tw_model_shape *sh = tw_model_shape_find(a->shape);
    if (!sh)
        return tw_error_set(TW_EINVAL, "--shape %s: want one of %s", a->shape,
                            tw_model_shape_names());
    if ((rc = tw_cli_tokenizer_open(a->tokenizer, &ms->tok)))
        return rc;
    struct tw_model_config c = sh->cfg;
    c.n_vocab = tw_tokenizer_vocab_size(ms->tok);
    snprintf(ms->base_ref, sizeof ms->base_ref, "shape:%s", a->shape);
    ms->side.path = (char *)a->tokenizer;
    ms->side.tok = ms->tok;
    rc = tw_lm_new_random(&c, a->o.seed, lm);
    return rc ? rc : tw_lm_set_compute(*lm, a->compute);
}

// Exports the trained model into a folder of the run, registers it, and returns its
// reference in ref.
static int register_model(struct ctx *c, tw_lm *lm, struct model_src *ms,
                          const struct tw_dataset *d, const struct tw_train_result *res,
                          struct tw_model_ref *out)
{
    const struct args *a = c->a;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/runs/%s", c->h->path, c->run);
    int rc = tw_mkdir_p(dir, 0755);
    snprintf(dir, sizeof dir, "%s/runs/%s/model", c->h->path, c->run);
    tw_remove_tree(dir); // a leftover of a failed registration of this run
    const struct tw_model *side = ms->base ? ms->base : &ms->side;
    if (!rc)
        rc = tw_lm_export_hf(lm, side, dir, a->dtype);
    if (!rc && tw_lm_is_lora(lm))
        rc = tw_lm_save_adapter(lm, dir, ms->base_ref);
    struct tw_model *merged;
    if (!rc)
        rc = tw_lm_merged(lm, &merged);
    json_t *metrics = json_pack("{s:f, s:f, s:I}", "loss", res->loss, "first_loss", c->first_loss,
                                "steps", (json_int_t)res->steps);
    if (metrics && !isnan(res->eval_loss))
        json_object_set_new(metrics, "eval_loss", json_real(res->eval_loss));
    char *params = dump(params_json(a)), *mtext = dump(metrics);
    if (!rc) {
        struct tw_model_meta meta = { .name = a->out,
                                      .kind = task_names[a->task],
                                      .run_id = c->run,
                                      .base = ms->base_ref,
                                      .dataset_sha256 = d->sha256_hex,
                                      .params = params,
                                      .metrics = mtext,
                                      .n_params = tw_model_n_params(merged),
                                      .dtype = tw_dtype_name(a->dtype) };
        rc = tw_registry_add(c->h, dir, &meta, out);
    }
    tw_free(params), tw_free(mtext);
    tw_remove_tree(dir); // the registry holds its own copy
    return rc;
}

static int train(struct tw_home *h, struct args *a)
{
    struct model_src ms = { 0 };
    tw_lm *lm = NULL, *ref = NULL;
    struct tw_dataset d = { 0 };
    bool have_data = false;
    struct tw_backend *be = NULL;
    int rc = open_model(h, a, &ms, &lm, &ref);
    // the passes on the device (a GPU when there is one, unless --device cpu)
    if (!rc && !(rc = tw_backend_open(a->device, a->threads, &be)) &&
        !(rc = tw_lm_use_backend(lm, be)) && ref)
        rc = tw_lm_use_backend(ref, be);
    enum tw_chat_family fam = TW_CHAT_ALPACA;
    const tw_tokenizer *tok = ms.base ? ms.base->tok : ms.tok;
    if (!rc && a->template)
        rc = tw_chat_family_from_name(a->template, &fam);
    else if (!rc && tw_tokenizer_chat_template(tok))
        rc = tw_chat_family_from_template(tw_tokenizer_chat_template(tok), &fam);
    if (!rc)
        have_data = (rc = load_data(h, a, tok, fam, &d)) == 0;
    struct ctx c = { .h = h, .a = a, .tty = isatty(2) };
    char ck[PATH_MAX];
    json_t *dj = NULL;
    // Data parallelism: rank 0 keeps the records, the checkpoints and the registry; the
    // other workers train beside it (and read the checkpoint they resume from).
    bool lead = !a->o.comm || tw_comm_rank(a->o.comm) == 0;
    if (!rc && lead) {
        dj = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "source",
                       a->data ? a->data : "warehouse", "format", tw_data_format_name(d.format),
                       "sha256", d.sha256_hex, "examples", (json_int_t)tw_dataset_count(&d),
                       "tokens", (json_int_t)d.n_tokens, "trained", (json_int_t)d.n_trained,
                       "truncated", (json_int_t)d.n_truncated);
        char *params = dump(params_json(a)), *dtext = dump(dj);
        struct tw_run_start rs = { .kind = task_names[a->task],
                                   .params = params,
                                   .base_model = ms.base_ref,
                                   .dataset = dtext };
        rc = tw_run_begin(h, &rs, c.run);
        tw_free(params), tw_free(dtext);
    }
    if (!rc && (lead || a->resume)) {
        snprintf(ck, sizeof ck, "%s/runs/%s", h->path, a->resume ? a->resume : c.run);
        rc = tw_mkdir_p(ck, 0755);
        size_t len = strlen(ck);
        snprintf(ck + len, sizeof ck - len, "/checkpoint.safetensors");
        if (!rc && a->resume && !tw_file_exists(ck))
            rc = tw_error_set(TW_ENOENT, "--resume %s: no checkpoint %s", a->resume, ck);
    }
    struct tw_train_result res = { 0 };
    if (!rc) {
        a->o.checkpoint = lead || a->resume ? ck : NULL;
        a->o.resume = a->resume != NULL;
        a->o.stop = &stop_flag;
        if (lead)
            a->o.on_step = on_step, a->o.ud = &c;
        if (!a->quiet && lead)
            fprintf(stderr,
                    "twin train %s: run %s; %zu examples (%" PRId64 " tokens, %" PRId64
                    " trained, %s); %" PRId64 " trainable parameters%s; %d GPU%s\n",
                    task_names[a->task], c.run, tw_dataset_count(&d), d.n_tokens, d.n_trained,
                    tw_data_format_name(d.format), tw_lm_n_trainable(lm),
                    tw_lm_is_lora(lm) ? " (LoRA)" : "", a->gpus > 1 ? a->gpus : 1,
                    a->gpus > 1 ? "s, data-parallel" : "");
        struct sigaction sa = { .sa_handler = on_sigint }, old;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old);
        rc = tw_train(lm, ref, &d, &a->o, &res);
        sigaction(SIGINT, &old, NULL);
    }
    struct tw_model_ref out;
    if (!rc && lead)
        rc = register_model(&c, lm, &ms, &d, &res, &out);
    if (c.run[0]) { // the run's end, whatever happened
        char ref_text[TW_MODEL_NAME_MAX + 32];
        if (!rc) {
            snprintf(ref_text, sizeof ref_text, "%s:%" PRId64, out.name, out.version);
            tw_run_set_output(h, c.run, ref_text);
            tw_run_set_metric(h, c.run, "loss", res.loss);
            if (!isnan(res.eval_loss))
                tw_run_set_metric(h, c.run, "eval_loss", res.eval_loss);
            if (a->task == TW_TRAIN_DPO) {
                tw_run_set_metric(h, c.run, "rewards/chosen", res.dpo.rewards_chosen);
                tw_run_set_metric(h, c.run, "rewards/rejected", res.dpo.rewards_rejected);
                tw_run_set_metric(h, c.run, "rewards/margins", res.dpo.rewards_margins);
                tw_run_set_metric(h, c.run, "rewards/accuracies", res.dpo.rewards_accuracies);
                tw_run_set_metric(h, c.run, "logps/chosen", res.dpo.logps_chosen);
                tw_run_set_metric(h, c.run, "logps/rejected", res.dpo.logps_rejected);
            }
            tw_run_finish(h, c.run, TW_RUN_FINISHED, NULL);
            printf("trained %s (%s, %" PRId64 " steps): loss %.4f -> %.4f", ref_text,
                   task_names[a->task], res.steps, c.first_loss, res.loss);
            if (!isnan(res.eval_loss))
                printf(", held-out loss %.4f", res.eval_loss);
            printf("; run %s\n", c.run);
        } else {
            char msg[1200];
            snprintf(msg, sizeof msg, "%s", tw_error_msg());
            bool stopped = rc == TW_ECANCELED;
            tw_run_finish(h, c.run, stopped ? TW_RUN_INTERRUPTED : TW_RUN_FAILED, msg);
            if (stopped)
                tw_error_set(TW_ECANCELED, "%s; resume with the same options and --resume %s", msg,
                             a->resume ? a->resume : c.run);
            else
                tw_error_set(rc, "%s", msg);
        }
    }
    if (have_data)
        tw_dataset_free(&d);
    tw_lm_free(lm);
    tw_lm_free(ref);
    tw_backend_free(be);
    tw_model_close(ms.base);
    if (ms.tok)
        tw_tokenizer_free(ms.tok);
    return rc;
}

// A data-parallel worker: the whole command on its GPU, with its rank.
struct worker_ctx {
    const char *home;
    struct args *a;
};

static int train_worker(tw_comm *comm, void *ud)
{
    struct worker_ctx *w = ud;
    w->a->o.comm = comm;
    struct tw_home *h;
    int rc = tw_home_open(w->home, &h);
    if (rc)
        return rc;
    rc = train(h, w->a);
    tw_home_close(h);
    return rc ? rc : tw_cli_flush_stdout();
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_train;
    if (argc < 2)
        return tw_cli_usage_error(v, "give pretrain, sft or dpo");
    struct args a = { 0 };
    int t = 0;
    while (t < 3 && strcmp(argv[1], task_names[t]) != 0)
        t++;
    if (t == 3)
        return tw_cli_usage_error(v, "\"%s\": give pretrain, sft or dpo", argv[1]);
    a.task = (enum tw_train_task)t;
    int urc = parse(v, argc, argv, &a);
    if (urc)
        return urc;
    if (a.threads > 0)
        omp_set_num_threads(a.threads);
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0) // made here, before any worker starts
        return tw_cli_fail();
    int rc;
    if (a.gpus > 1) { // one worker process per GPU, this one waiting for them
        tw_home_close(h);
        struct worker_ctx w = { cli->home, &a };
        rc = tw_comm_launch(a.gpus, TW_COMM_NCCL, train_worker, &w);
        return rc ? tw_cli_fail() : TW_EXIT_OK;
    }
    rc = train(h, &a);
    tw_home_close(h);
    if (!rc)
        rc = tw_cli_flush_stdout();
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_train = {
    .name = "train",
    .summary = "train a model: pretrain, SFT (full, LoRA, QLoRA) or DPO; registered with its run",
    .usage =
        "usage: twin [--home DIR] train pretrain|sft|dpo --out NAME [options]\n"
        "Trains on the CPU and registers the result as the next version of NAME (twin models),\n"
        "with its run (twin runs): parameters, every step's loss, learning rate, gradient norm,\n"
        "tokens/s and memory, the base and the data it came from. Ctrl-C stops after the\n"
        "current step with a checkpoint; --resume RUN continues it exactly.\n\n"
        "  --base MODEL        the model to start from: a Hugging Face folder, a .gguf file or\n"
        "                      a registered model (NAME[:VERSION])\n"
        "  --shape NAME        pretrain from scratch: a model of this shape (twin model random's\n"
        "                      shapes) with transformers' initialisation, and\n"
        "  --tokenizer DIR     its tokenizer (its vocabulary sets the model's)\n"
        "  --data FILE         JSON Lines: {\"text\"} (pretrain), {\"instruction\",\"output\"} "
        "or\n"
        "                      {\"messages\"} (sft), {\"prompt\",\"chosen\",\"rejected\"} (dpo)\n"
        "  --author NAME       pretrain on the warehouse's documents of this author (repeat for\n"
        "                      more)\n"
        "  --template NAME     the prompt format (default: the tokenizer's chat template, else\n"
        "                      alpaca, the reference's)\n"
        "  --lora SPEC         LoRA: r=32,alpha=32,dropout=0,targets=all (or some of\n"
        "                      q,k,v,o,gate,up,down; targets last); default: full training\n"
        "  --qlora TYPE        QLoRA: the frozen base held in q4 (q4_0), q4_K or q8 (q8_0)\n"
        "  --epochs N          passes over the data (default 1)\n"
        "  --max-steps N       stop after N optimiser steps\n"
        "  --lr X              peak learning rate (default 3e-4)\n"
        "  --schedule S        constant, linear or cosine, after the warm-up (default linear)\n"
        "  --warmup N          warm-up steps (default 10)\n"
        "  --batch B           rows a micro-batch; DPO: pairs (default 4)\n"
        "  --accum N           micro-batches an optimiser step (default 1)\n"
        "  --seq T             tokens a row (default 256)\n"
        "  --pad               one example a row (default: examples packed into rows)\n"
        "  --recompute         keep one layer's activations; recompute the others in the\n"
        "                      backward (less memory, a third more compute)\n"
        "  --weight-decay X    AdamW's (default 0.01); --clip X: gradient norm (default 1)\n"
        "  --beta X            DPO's beta (default 0.1)\n"
        "  --eval F            the share of examples held out (default 0.05)\n"
        "  --seed N            data order, split and LoRA's init (default 42)\n"
        "  --compute T         full training's compute dtype: f32 (default) or bf16 (the\n"
        "                      passes read bf16 weights; f32 master weights take the updates)\n"
        "  --dtype T           the registered weights: f32, f16 or bf16 (default bf16)\n"
        "  --checkpoint-every N  a checkpoint every N steps (always at the end and on Ctrl-C)\n"
        "  --resume RUN        continue the interrupted run RUN from its checkpoint\n"
        "  --device D          cpu, cuda, cuda:N or auto (default: a GPU when there is one;\n"
        "                      $TWIN_DEVICE); on a GPU, --compute bf16 multiplies on its\n"
        "                      tensor cores\n"
        "  --gpus N            data-parallel training on N GPUs (the first N visible; NCCL),\n"
        "                      one worker process each; --batch and --accum are per GPU\n"
        "  --threads N         CPU threads (default: all)\n"
        "  --quiet             no progress line\n",
    .run = run,
};

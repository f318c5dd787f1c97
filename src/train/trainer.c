// Implements trainer.h. An optimiser step takes `accum` micro-batches, copied out of the
// batcher first so that the loss can be normalised by the trained tokens of all of them (as
// transformers' Trainer does with num_items_in_batch). The data order is a function of the
// seed and the epoch, so a checkpoint needs only the parameters, AdamW's moments and the step
// number to resume exactly where the run was.
//
// Data parallelism (o->comm): every worker reads the same batches in the same order; an
// optimiser step takes accum micro-batches per worker, micro-batch j of the step going to
// worker j % size, so that the step is the one a single process takes with accum * size
// micro-batches (its checkpoint says so, and either resumes it). The gradients, the loss and
// the token counts are summed across the workers before the clip; every worker then applies
// the same update to its replica.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "base/mem.h"
#include "model/safetensors.h"
#include "tensor/comm.h"
#include "train/trainer.h"

void tw_train_opts_default(struct tw_train_opts *o, enum tw_train_task task)
{
    memset(o, 0, sizeof *o);
    o->task = task;
    o->epochs = 1;
    o->batch = 4;
    o->accum = 1;
    o->seq = 256;
    o->mode = TW_BATCH_MODE_PACK;
    o->lr = 3e-4;
    o->schedule = TW_SCHEDULE_LINEAR;
    o->warmup = 10;
    o->beta1 = 0.9, o->beta2 = 0.999, o->eps = 1e-8, o->weight_decay = 0.01, o->clip = 1.0;
    o->beta = 0.1;
    o->eval_frac = 0.05;
    o->seed = 42;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f)
        return -1;
    int n = fscanf(f, "%ld %ld", &pages, &rss);
    fclose(f);
    return n == 2 ? (int64_t)rss * 4096 : -1;
}

// ---- micro-batches copied out of the batcher.

struct micro {
    int32_t rows, T;
    int32_t *ids, *targets, *pos, *start; // (rows, T), in buf
    int64_t n_trained;
};

// Copies batch b; DPO keeps only its real pairs (chosen rows, then the same pairs' rejected
// rows), so that a short last batch's padding pairs do not count in the mean.
static void micro_copy(struct micro *m, const struct tw_batch *b, bool dpo)
{
    int32_t T = b->T;
    m->T = T;
    m->n_trained = b->n_trained;
    const int32_t *src[4] = { b->ids, b->targets, b->pos, b->start };
    int32_t *dst[4] = { m->ids, m->targets, m->pos, m->start };
    if (!dpo) {
        m->rows = b->rows;
        for (int k = 0; k < 4; k++)
            memcpy(dst[k], src[k], (size_t)b->rows * (size_t)T * sizeof(int32_t));
        return;
    }
    int32_t n = b->n_examples;
    m->rows = 2 * n;
    for (int k = 0; k < 4; k++) {
        memcpy(dst[k], src[k], (size_t)n * (size_t)T * sizeof(int32_t));
        memcpy(dst[k] + (size_t)n * (size_t)T, src[k] + (size_t)b->pairs * (size_t)T,
               (size_t)n * (size_t)T * sizeof(int32_t));
    }
}

static struct tw_lm_batch lm_batch(const struct micro *m)
{
    return (struct tw_lm_batch){ m->rows, m->T, m->ids, m->targets, m->pos, m->start };
}

// ---- checkpoints: one safetensors file of the parameters ("param.NAME") and AdamW's moments
// ("adam.m.NAME", "adam.v.NAME"), with the step and the options it was written under.

static void options_text(const struct tw_train_opts *o, const struct tw_dataset *d,
                         const tw_lm *lm, int world, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "task=%d epochs=%d max_steps=%lld batch=%d accum=%d seq=%d mode=%d lr=%.17g "
             "schedule=%s warmup=%lld betas=%.17g,%.17g eps=%.17g wd=%.17g clip=%.17g "
             "beta=%.17g eval=%.17g seed=%llu data=%s params=%lld",
             (int)o->task, o->epochs, (long long)o->max_steps, o->batch, o->accum * world, o->seq,
             (int)o->mode, o->lr, tw_schedule_name(o->schedule), (long long)o->warmup, o->beta1,
             o->beta2, o->eps, o->weight_decay, o->clip, o->beta, o->eval_frac,
             (unsigned long long)o->seed, d->sha256_hex, (long long)tw_lm_n_trainable(lm));
}

static int checkpoint_save(const char *path, tw_lm *lm, struct tw_adamw *a, const char *opts)
{
    int rc = tw_lm_pull(lm, false); // a device's values to the host copies
    if (rc || (rc = tw_adamw_pull(a)))
        return rc;
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)a->step);
    rc = tw_st_writer_metadata(&w, "twin.step", step);
    if (!rc)
        rc = tw_st_writer_metadata(&w, "twin.options", opts);
    size_t off = 0;
    for (size_t i = 0; !rc && i < tw_lm_n_params(lm); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(lm, i);
        const float *data[3] = { p->w, a->m + off, a->v + off };
        static const char *const pre[3] = { "param.", "adam.m.", "adam.v." };
        for (int k = 0; !rc && k < 3; k++) {
            char name[400];
            snprintf(name, sizeof name, "%s%s", pre[k], p->name);
            rc = tw_st_writer_add(&w, name, TW_ST_DTYPE_F32, p->ne, p->ndim, data[k],
                                  p->n * sizeof(float));
        }
        off += p->n;
    }
    if (!rc)
        rc = tw_st_write(&w, path);
    tw_st_writer_free(&w);
    return rc ? tw_error_prefix("checkpoint %s", path) : 0;
}

static int checkpoint_load(const char *path, tw_lm *lm, struct tw_adamw *a, const char *opts)
{
    tw_st_file *f;
    int rc = tw_st_open(path, &f);
    if (rc)
        return tw_error_prefix("resuming");
    const char *saved = tw_st_meta_get(f, "twin.options"), *step = tw_st_meta_get(f, "twin.step");
    if (!saved || !step)
        rc = tw_error_set(TW_EFORMAT, "%s: not a twin checkpoint (no twin.step or twin.options)",
                          path);
    else if (strcmp(saved, opts) != 0)
        rc = tw_error_set(TW_EINVAL,
                          "%s: written for other options or data; it has \"%s\", this run "
                          "\"%s\"",
                          path, saved, opts);
    // Read everything before touching the model: a bad file leaves it as it was.
    size_t n = tw_lm_n_params(lm), off = 0;
    const struct tw_st_tensor **ts = rc ? NULL : tw_malloc_array(3 * (n ? n : 1), sizeof *ts);
    if (!rc && !ts)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        const struct tw_lm_param *p = tw_lm_param_at(lm, i);
        static const char *const pre[3] = { "param.", "adam.m.", "adam.v." };
        for (int k = 0; !rc && k < 3; k++) {
            char name[400];
            snprintf(name, sizeof name, "%s%s", pre[k], p->name);
            const struct tw_st_tensor *t = ts[3 * i + k] = tw_st_find(f, name);
            if (!t || t->dtype != TW_ST_DTYPE_F32 || t->nbytes != p->n * sizeof(float))
                rc = tw_error_set(TW_EFORMAT, "%s: tensor %s is missing or of another shape", path,
                                  name);
        }
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) {
            const struct tw_lm_param *p = tw_lm_param_at(lm, i);
            memcpy(p->w, ts[3 * i]->data, p->n * sizeof(float));
            memcpy(a->m + off, ts[3 * i + 1]->data, p->n * sizeof(float));
            memcpy(a->v + off, ts[3 * i + 2]->data, p->n * sizeof(float));
            off += p->n;
        }
        a->step = strtoll(step, NULL, 10);
        rc = tw_adamw_push(a); // and on to a device
    }
    tw_free(ts);
    tw_st_close(f);
    return rc;
}

// ---- the loop.

// This worker's rank and the number of workers (0 and 1 without o->comm).
static int rank_of(const struct tw_train_opts *o)
{
    return o->comm ? tw_comm_rank(o->comm) : 0;
}

static int world_of(const struct tw_train_opts *o)
{
    return o->comm ? tw_comm_size(o->comm) : 1;
}

// The mean cross-entropy over the batches of b (one pass, no gradients; batch j on worker
// j % size).
static int evaluate(tw_lm *lm, const struct tw_train_opts *o, struct tw_batcher *b,
                    struct micro *m, float *logp, double *out)
{
    double acc[2] = { 0, 0 }; // -sum logp, trained tokens
    const struct tw_batch *bt;
    tw_batcher_epoch(b, 0, 0, false);
    for (int j = 0; tw_batcher_next(b, &bt); j++) {
        if (j % world_of(o) != rank_of(o))
            continue;
        micro_copy(m, bt, false);
        struct tw_lm_batch lb = lm_batch(m);
        double s;
        int rc = tw_lm_forward(lm, &lb, logp, &s);
        if (rc)
            return rc;
        acc[0] -= s;
        acc[1] += (double)m->n_trained;
    }
    if (o->comm) {
        int rc = tw_comm_sum_host(o->comm, tw_lm_backend(lm), acc, 2);
        if (rc)
            return rc;
    }
    *out = acc[1] > 0 ? acc[0] / acc[1] : NAN;
    return 0;
}

static bool task_fits(enum tw_train_task t, enum tw_data_format f)
{
    return t == TW_TRAIN_DPO   ? f == TW_DATA_FORMAT_PREFERENCE
           : t == TW_TRAIN_SFT ? f == TW_DATA_FORMAT_ALPACA || f == TW_DATA_FORMAT_MESSAGES
                               : f == TW_DATA_FORMAT_TEXT;
}

// What one run holds; released by run_free.
struct run {
    struct tw_data_split split;
    struct tw_batcher train, eval;
    bool have_eval;
    struct tw_adamw adam;
    struct micro *mb; // accum micro-batches
    int32_t *buf;
    float *logp;
};

static void run_free(struct run *r)
{
    tw_data_split_free(&r->split);
    tw_batcher_free(&r->train);
    if (r->have_eval)
        tw_batcher_free(&r->eval);
    tw_adamw_free(&r->adam);
    tw_free(r->mb);
    tw_free(r->buf);
    tw_free(r->logp);
}

static int run_init(struct run *r, tw_lm *lm, const struct tw_dataset *d,
                    const struct tw_train_opts *o)
{
    memset(r, 0, sizeof *r);
    bool dpo = o->task == TW_TRAIN_DPO;
    int rc = tw_data_split_init(&r->split, tw_dataset_count(d), o->eval_frac, o->seed);
    if (rc)
        return rc;
    if (r->split.n_train == 0)
        return tw_error_set(TW_EINVAL, "no training examples left after holding out %g of %zu",
                            o->eval_frac, tw_dataset_count(d));
    if ((rc = tw_batcher_init(&r->train, d, r->split.train, r->split.n_train, o->batch, o->seq,
                              o->mode)))
        return rc;
    if (r->split.n_eval > 0 && !dpo) {
        if ((rc = tw_batcher_init(&r->eval, d, r->split.eval, r->split.n_eval, o->batch, o->seq,
                                  o->mode)))
            return rc;
        r->have_eval = true;
    }
    struct tw_adamw_opts ao = { o->lr, o->beta1, o->beta2, o->eps, o->weight_decay };
    if ((rc = tw_adamw_init(&r->adam, lm, &ao)))
        return rc;
    size_t rows = (size_t)o->batch * (dpo ? 2 : 1), per = rows * (size_t)o->seq;
    r->mb = tw_calloc((size_t)o->accum, sizeof *r->mb);
    r->buf = tw_malloc_array((size_t)o->accum * 4, per * sizeof(int32_t));
    r->logp = tw_malloc_array(per, sizeof(float));
    if (!r->mb || !r->buf || !r->logp)
        return tw_error_set(TW_ENOMEM, "out of memory for the batches");
    for (int32_t i = 0; i < o->accum; i++) {
        int32_t *b = r->buf + (size_t)i * 4 * per;
        r->mb[i] = (struct micro){
            .ids = b, .targets = b + per, .pos = b + 2 * per, .start = b + 3 * per
        };
    }
    return 0;
}

static int check_opts(const struct tw_train_opts *o, const struct tw_dataset *d)
{
    if (o->epochs < 1 || o->batch < 1 || o->accum < 1 || o->seq < 2 || o->max_steps < 0 ||
        !(o->lr > 0) || o->warmup < 0 || o->eval_frac < 0 || o->eval_frac >= 1 || o->clip < 0)
        return tw_error_set(TW_EINVAL,
                            "training options: epochs %d, batch %d, accum %d, seq %d, lr %g, "
                            "warm-up %lld, eval %g: want epochs, batch, accum >= 1, seq >= 2, "
                            "lr > 0, warm-up >= 0, 0 <= eval < 1",
                            o->epochs, o->batch, o->accum, o->seq, o->lr, (long long)o->warmup,
                            o->eval_frac);
    if (!task_fits(o->task, d->format))
        return tw_error_set(TW_EINVAL, "a %s dataset cannot train %s",
                            tw_data_format_name(d->format),
                            o->task == TW_TRAIN_DPO   ? "DPO (it needs prompt, chosen, rejected)"
                            : o->task == TW_TRAIN_SFT ? "SFT (it needs instructions or messages)"
                                                      : "pretraining (it needs text)");
    return 0;
}

// One optimiser step's micro-batches: accum per worker from the batcher, micro-batch j to
// worker j % size. This worker's are copied into r->mb (their count in *n); the step's
// count and trained tokens over all workers in *n_all and *trained.
static void take_micro(struct run *r, const struct tw_train_opts *o, int32_t *n, int32_t *n_all,
                       int64_t *trained)
{
    const struct tw_batch *bt;
    int W = world_of(o);
    *n = *n_all = 0, *trained = 0;
    while (*n_all < o->accum * W && tw_batcher_next(&r->train, &bt)) {
        *trained += bt->n_trained;
        if ((*n_all)++ % W == rank_of(o))
            micro_copy(&r->mb[(*n)++], bt, o->task == TW_TRAIN_DPO);
    }
}

// struct tw_dpo_stats as an array of its doubles (summed and averaged member by member).
#define DPO_NV ((int)(sizeof(struct tw_dpo_stats) / sizeof(double)))
_Static_assert(sizeof(struct tw_dpo_stats) == DPO_NV * sizeof(double), "tw_dpo_stats: doubles");

// Forward and backward over this worker's micro-batches of the step (n of the step's n_all,
// which train `total` tokens): its share of the step's mean loss in *loss.
static int step_grads(struct run *r, tw_lm *lm, tw_lm *ref, const struct tw_train_opts *o,
                      int32_t n, int32_t n_all, int64_t total, double *loss, int64_t *tokens,
                      struct tw_dpo_stats *st)
{
    tw_lm_zero_grad(lm);
    *loss = 0, *tokens = 0;
    memset(st, 0, sizeof *st);
    for (int32_t i = 0; i < n; i++) {
        struct tw_lm_batch b = lm_batch(&r->mb[i]);
        *tokens += (int64_t)b.B * b.T;
        int rc;
        if (o->task == TW_TRAIN_DPO) {
            if (b.B == 0)
                continue;
            struct tw_dpo_stats s;
            rc = tw_dpo_step(lm, ref, &b, o->beta, 1.0f / (float)n_all, &s);
            *loss += s.loss / n_all;
            double sv[DPO_NV], tv[DPO_NV]; // every metric: its mean over the step
            memcpy(sv, &s, sizeof s), memcpy(tv, st, sizeof *st);
            for (int k = 0; k < DPO_NV; k++)
                tv[k] += sv[k] / n_all;
            memcpy(st, tv, sizeof *st);
        } else {
            double sum;
            int64_t nt;
            rc = tw_lm_step_ce(lm, &b, total ? 1.0f / (float)total : 0.0f, &sum, &nt);
            *loss += total ? sum / (double)total : 0;
        }
        if (rc)
            return rc;
    }
    return 0;
}

// Data parallelism: the step's gradients, loss, tokens, DPO metrics and stop flag summed over
// the workers (*stop: any worker was asked to stop).
static int step_reduce(tw_lm *lm, const struct tw_train_opts *o, double *loss, int64_t *tokens,
                       struct tw_dpo_stats *st, bool *stop)
{
    int rc = tw_lm_sum_grads(lm, o->comm);
    double v[3 + DPO_NV] = { *loss, (double)*tokens, o->stop && *o->stop ? 1.0 : 0.0 };
    memcpy(v + 3, st, sizeof *st);
    if (rc || (rc = tw_comm_sum_host(o->comm, tw_lm_backend(lm), v, 3 + DPO_NV)))
        return rc;
    *loss = v[0], *tokens = (int64_t)v[1], *stop = v[2] > 0;
    memcpy(st, v + 3, sizeof *st);
    return 0;
}

int tw_train(tw_lm *lm, tw_lm *ref, const struct tw_dataset *d, const struct tw_train_opts *o,
             struct tw_train_result *res)
{
    int rc = check_opts(o, d);
    if (rc)
        return rc;
    struct run r;
    if ((rc = run_init(&r, lm, d, o))) {
        run_free(&r);
        return rc;
    }
    char opts[1024];
    int64_t per_step = (int64_t)o->accum * world_of(o); // micro-batches over all workers
    bool writer = rank_of(o) == 0;                      // checkpoints
    options_text(o, d, lm, world_of(o), opts, sizeof opts);
    tw_lm_set_recompute(lm, o->recompute);
    int64_t spe = ((int64_t)tw_batcher_count(&r.train) + per_step - 1) / per_step;
    int64_t total = spe * o->epochs;
    if (o->max_steps > 0 && o->max_steps < total)
        total = o->max_steps;
    if (o->resume &&
        ((rc = checkpoint_load(o->checkpoint, lm, &r.adam, opts)) || (rc = tw_lm_push(lm)))) {
        run_free(&r);
        return rc;
    }
    memset(res, 0, sizeof *res);
    res->eval_loss = NAN;
    double t0 = now_s();
    int64_t tokens = 0, start = r.adam.step;
    for (int64_t s = start; s < total && !rc; s++) {
        int64_t epoch = s / spe;
        if (s == start || s % spe == 0) { // the epoch's order, then where step s begins
            tw_batcher_epoch(&r.train, o->seed, epoch, true);
            tw_batcher_seek(&r.train, (size_t)((s % spe) * per_step));
        }
        int32_t n, n_all;
        int64_t trained;
        take_micro(&r, o, &n, &n_all, &trained);
        struct tw_train_progress p = { .step = s + 1, .total = total, .eval_loss = NAN };
        int64_t tk;
        tw_lm_set_step(lm, s);
        bool stop_all = false;
        if ((rc = step_grads(&r, lm, ref, o, n, n_all, trained, &p.loss, &tk, &p.dpo)) ||
            (o->comm && (rc = step_reduce(lm, o, &p.loss, &tk, &p.dpo, &stop_all))))
            break;
        if ((rc = tw_clip_grad_norm(lm, o->clip, &p.grad_norm)))
            break;
        if (!isfinite(p.loss) || !isfinite(p.grad_norm)) {
            rc = tw_error_set(TW_ESTATE,
                              "step %lld: the %s is %g; stopping (lower the learning "
                              "rate, or check the data)",
                              (long long)(s + 1), isfinite(p.loss) ? "gradient norm" : "loss",
                              isfinite(p.loss) ? p.grad_norm : p.loss);
            break;
        }
        p.lr = tw_schedule_lr(o->schedule, o->lr, s, o->warmup, total);
        tw_adamw_step(&r.adam, lm, p.lr);
        if ((rc = tw_lm_sync(lm))) // bf16 compute: the copy the passes read
            break;
        tokens += tk;
        p.elapsed_s = now_s() - t0;
        p.tokens_per_s = p.elapsed_s > 0 ? (double)tokens / p.elapsed_s : 0;
        p.eta_s = p.elapsed_s / (double)(s + 1 - start) * (double)(total - s - 1);
        p.epoch = (double)(s + 1) / (double)spe;
        p.mem_bytes = resident_bytes();
        bool epoch_end = (s + 1) % spe == 0 || s + 1 == total;
        if (epoch_end && r.have_eval &&
            (rc = evaluate(lm, o, &r.eval, &r.mb[0], r.logp, &p.eval_loss)))
            break;
        res->steps = s + 1, res->loss = p.loss, res->dpo = p.dpo;
        res->tokens_per_s = p.tokens_per_s;
        if (!isnan(p.eval_loss))
            res->eval_loss = p.eval_loss;
        if (o->on_step && (rc = o->on_step(o->ud, &p)))
            break;
        bool stop = o->comm ? stop_all : o->stop && *o->stop; // workers stop at the same step
        if (o->checkpoint && writer &&
            (stop || s + 1 == total ||
             (o->checkpoint_every > 0 && (s + 1) % o->checkpoint_every == 0)))
            rc = checkpoint_save(o->checkpoint, lm, &r.adam, opts);
        if (!rc && stop)
            rc = tw_error_set(TW_ECANCELED, "stopped after step %lld of %lld%s%s",
                              (long long)(s + 1), (long long)total,
                              o->checkpoint ? "; checkpoint " : "",
                              o->checkpoint ? o->checkpoint : "");
    }
    run_free(&r);
    int prc = tw_lm_pull(lm, false); // the host copies current for what follows (export, adapters)
    return rc ? rc : prc;
}

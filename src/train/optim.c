// Implements optim.h. AdamW follows torch.optim.AdamW's single-tensor update, in its order:
//   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
#include <limits.h>
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/comm.h"
#include "tensor/grad.h"
#include "train/optim.h"

// Whether the moments live on a device (host copies beside them).
static bool on_device(const struct tw_adamw *a)
{
    return a->be->device != TW_DEVICE_CPU;
}

int tw_adamw_init(struct tw_adamw *a, const tw_lm *lm, const struct tw_adamw_opts *o)
{
    memset(a, 0, sizeof *a);
    a->o = *o;
    a->n = (size_t)tw_lm_n_trainable(lm);
    a->be = tw_lm_backend(lm);
    size_t bytes = (a->n ? a->n : 1) * sizeof(float);
    a->m = tw_calloc(a->n ? a->n : 1, sizeof(float));
    a->v = tw_calloc(a->n ? a->n : 1, sizeof(float));
    if (!a->m || !a->v) {
        tw_adamw_free(a);
        return tw_error_set(TW_ENOMEM, "out of memory for AdamW's moments of %zu parameters",
                            a->n);
    }
    a->bm = a->m, a->bv = a->v;
    if (on_device(a)) {
        a->bm = tw_backend_alloc(a->be, bytes);
        a->bv = tw_backend_alloc(a->be, bytes);
        int rc = a->bm && a->bv ? tw_adamw_push(a) : TW_ENOMEM;
        if (rc) {
            tw_adamw_free(a);
            return rc;
        }
    }
    return 0;
}

void tw_adamw_free(struct tw_adamw *a)
{
    if (a->be && on_device(a)) {
        tw_backend_release(a->be, a->bm);
        tw_backend_release(a->be, a->bv);
    }
    tw_free(a->m);
    tw_free(a->v);
    a->m = a->v = a->bm = a->bv = NULL;
}

int tw_adamw_pull(struct tw_adamw *a)
{
    if (!on_device(a))
        return 0;
    int rc = tw_backend_download(a->be, a->m, a->bm, a->n * sizeof(float));
    return rc ? rc : tw_backend_download(a->be, a->v, a->bv, a->n * sizeof(float));
}

int tw_adamw_push(struct tw_adamw *a)
{
    if (!on_device(a))
        return 0;
    int rc = tw_backend_upload(a->be, a->bm, a->m, a->n * sizeof(float));
    return rc ? rc : tw_backend_upload(a->be, a->bv, a->v, a->n * sizeof(float));
}

void tw_adamw_step(struct tw_adamw *a, tw_lm *lm, double lr)
{
    a->step++;
    const struct tw_adamw_opts *o = &a->o;
    const struct tw_grad_ops *go = tw_backend_grad(a->be);
    double bc1 = 1.0 - pow(o->beta1, (double)a->step), bc2 = 1.0 - pow(o->beta2, (double)a->step);
    struct tw_adamw_args args = { .step_size = (float)(lr / bc1),
                                  .beta1 = (float)o->beta1,
                                  .beta2 = (float)o->beta2,
                                  .eps = (float)o->eps,
                                  .bc2_sqrt = (float)sqrt(bc2) };
    size_t off = 0, n, np = tw_lm_n_params(lm);
    struct tw_adamw_seg *seg =
        go->adamw_multi && np <= INT_MAX ? tw_malloc_array(np ? np : 1, sizeof *seg) : NULL;
    if (seg) { // one launch; with bf16 compute the copies the passes read written too
        bool any = false;
        for (size_t i = 0; i < np; i++) {
            const struct tw_lm_param *p = tw_lm_param_at(lm, i);
            seg[i] = (struct tw_adamw_seg){ .w = p->bw,
                                            .g = p->bg,
                                            .m = a->bm + off,
                                            .v = a->bv + off,
                                            .wb = p->bwb,
                                            .n = (int64_t)p->n,
                                            .decay = p->decay };
            any |= p->bwb != NULL;
            off += p->n;
        }
        args.decay = (float)(1.0 - lr * o->weight_decay);
        go->adamw_multi(a->be, seg, (int)np, &args);
        tw_free(seg);
        if (any)
            tw_lm_copies_written(lm);
        return;
    }
    for (size_t i = 0, j; i < np; i = j) { // the moments follow in order
        const struct tw_lm_param *p = tw_lm_param_at(lm, i);
        j = tw_lm_param_run(lm, i, true, &n);
        args.decay = p->decay ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
        go->adamw(a->be, p->bw, p->bg, a->bm + off, a->bv + off, n, &args);
        off += n;
    }
}

int tw_clip_grad_norm(tw_lm *lm, double max_norm, double *norm_out)
{
    // Sums in a fixed order (in double), so that a run and its resumption from a checkpoint
    // clip by the very same factor.
    struct tw_backend *be = tw_lm_backend(lm);
    const struct tw_grad_ops *go = tw_backend_grad(be);
    double ss, *acc = tw_backend_alloc(be, sizeof(double)); // where the gradients are
    if (!acc)
        return TW_ENOMEM;
    go->zero(be, acc, sizeof(double));
    size_t n;
    for (size_t i = 0, j; i < tw_lm_n_params(lm); i = j) {
        j = tw_lm_param_run(lm, i, false, &n);
        go->sumsq(be, tw_lm_param_at(lm, i)->bg, n, acc);
    }
    int rc = tw_backend_download(be, &ss, acc, sizeof(double));
    tw_backend_release(be, acc);
    if (rc)
        return rc;
    double norm = sqrt(ss);
    if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
        float c = (float)(max_norm / (norm + 1e-6));
        for (size_t i = 0, j; i < tw_lm_n_params(lm); i = j) {
            j = tw_lm_param_run(lm, i, false, &n);
            go->scale(be, tw_lm_param_at(lm, i)->bg, n, c);
        }
    }
    *norm_out = norm;
    return 0;
}

int tw_lm_sum_grads(tw_lm *lm, struct tw_comm *c)
{
    int rc = 0;
    size_t n;
    for (size_t i = 0, j; !rc && i < tw_lm_n_params(lm); i = j) { // a run or two, as a rule
        j = tw_lm_param_run(lm, i, false, &n);
        float *g = tw_lm_param_at(lm, i)->bg;
        rc = tw_comm_sum(c, tw_lm_backend(lm), &g, &n, 1);
    }
    return rc;
}

static const char *const sched_names[] = { "constant", "linear", "cosine" };

int tw_schedule_from_name(const char *name, enum tw_schedule *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, sched_names[i]) == 0) {
            *out = (enum tw_schedule)i;
            return 0;
        }
    return tw_error_set(TW_EINVAL, "schedule \"%s\": want constant, linear or cosine", name);
}

const char *tw_schedule_name(enum tw_schedule s)
{
    return (unsigned)s < 3 ? sched_names[s] : "?";
}

double tw_schedule_lr(enum tw_schedule s, double peak, int64_t step, int64_t warmup, int64_t total)
{
    if (step < warmup)
        return peak * (double)step / (double)(warmup > 1 ? warmup : 1);
    if (s == TW_SCHEDULE_CONSTANT)
        return peak;
    double span = (double)(total - warmup > 1 ? total - warmup : 1);
    double progress = (double)(step - warmup) / span;
    double f = s == TW_SCHEDULE_LINEAR ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    return peak * (f > 0 ? f : 0);
}

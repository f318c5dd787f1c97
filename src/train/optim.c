// Implements optim.h. AdamW follows torch.optim.AdamW's single-tensor update, in its order:
//   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "train/optim.h"

int tw_adamw_init(struct tw_adamw *a, const tw_lm *lm, const struct tw_adamw_opts *o)
{
    memset(a, 0, sizeof *a);
    a->o = *o;
    a->n = (size_t)tw_lm_n_trainable(lm);
    a->m = tw_calloc(a->n ? a->n : 1, sizeof(float));
    a->v = tw_calloc(a->n ? a->n : 1, sizeof(float));
    if (!a->m || !a->v) {
        tw_adamw_free(a);
        return tw_error_set(TW_ENOMEM, "out of memory for AdamW's moments of %zu parameters",
                            a->n);
    }
    return 0;
}

void tw_adamw_free(struct tw_adamw *a)
{
    tw_free(a->m);
    tw_free(a->v);
    a->m = a->v = NULL;
}

void tw_adamw_step(struct tw_adamw *a, tw_lm *lm, double lr)
{
    a->step++;
    const struct tw_adamw_opts *o = &a->o;
    float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps;
    double bc1 = 1.0 - pow(o->beta1, (double)a->step), bc2 = 1.0 - pow(o->beta2, (double)a->step);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    size_t off = 0;
    for (size_t i = 0; i < tw_lm_n_params(lm); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(lm, i);
        float decay = p->decay ? (float)(1.0 - lr * o->weight_decay) : 1.0f;
        float *m = a->m + off, *v = a->v + off;
#pragma omp parallel for schedule(static) if (p->n >= 65536)
        for (size_t j = 0; j < p->n; j++) {
            float g = p->g[j];
            p->w[j] *= decay;
            m[j] += (g - m[j]) * (1.0f - b1); // torch's lerp
            v[j] = v[j] * b2 + (1.0f - b2) * g * g;
            p->w[j] -= step_size * m[j] / (sqrtf(v[j]) / bc2_sqrt + eps);
        }
        off += p->n;
    }
}

double tw_clip_grad_norm(tw_lm *lm, double max_norm)
{
    // Sums in a fixed order (serial, in double), so that a run and its resumption from a
    // checkpoint clip by the very same factor.
    double ss = 0;
    for (size_t i = 0; i < tw_lm_n_params(lm); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(lm, i);
        for (size_t j = 0; j < p->n; j++)
            ss += (double)p->g[j] * p->g[j];
    }
    double norm = sqrt(ss);
    if (max_norm > 0 && isfinite(norm) && norm > max_norm) {
        float c = (float)(max_norm / (norm + 1e-6));
        for (size_t i = 0; i < tw_lm_n_params(lm); i++) {
            const struct tw_lm_param *p = tw_lm_param_at(lm, i);
            for (size_t j = 0; j < p->n; j++)
                p->g[j] *= c;
        }
    }
    return norm;
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

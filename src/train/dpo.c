// Implements dpo.h. d loss / d z_i = -sigmoid(-z_i) / n; z_i moves with +beta in the chosen
// row's log-probabilities and -beta in the rejected row's, so each answer token of row i gets
// the coefficient -+beta sigmoid(-z_i) / n in tw_lm_backward.
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "train/dpo.h"

// The summed log-probabilities of each row of b.
static void row_sums(const float *logp, const struct tw_lm_batch *b, double *out)
{
    for (int32_t r = 0; r < b->B; r++) {
        double s = 0;
        for (int32_t t = 0; t < b->T; t++)
            s += logp[(int64_t)r * b->T + t];
        out[r] = s;
    }
}

static double log_sigmoid(double z)
{
    return z >= 0 ? -log1p(exp(-z)) : z - log1p(exp(z));
}

int tw_dpo_step(tw_lm *policy, tw_lm *ref, const struct tw_lm_batch *b, double beta, float scale,
                struct tw_dpo_stats *st)
{
    if (b->B < 2 || b->B % 2)
        return tw_error_set(TW_EINVAL, "DPO: %d rows; want chosen and rejected rows in pairs",
                            b->B);
    if (!ref && !tw_lm_is_lora(policy))
        return tw_error_set(TW_EINVAL, "DPO: the policy is not a LoRA model, so a separate "
                                       "reference model is needed");
    int64_t N = (int64_t)b->B * b->T;
    int n = b->B / 2;
    float *logp = tw_malloc_array((size_t)N, sizeof(float)), *coef = NULL;
    double *pi = tw_malloc_array((size_t)b->B * 2, sizeof(double)), *rf = pi ? pi + b->B : NULL;
    if (logp)
        coef = tw_malloc_array((size_t)N, sizeof(float));
    int rc = !logp || !pi || !coef ? tw_error_set(TW_ENOMEM, "DPO: out of memory") : 0;
    double sum;
    // the reference first: the policy's activations must be the last forward's
    if (!rc && ref) {
        rc = tw_lm_forward(ref, b, logp, &sum);
    } else if (!rc) {
        tw_lm_set_lora_enabled(policy, false);
        rc = tw_lm_forward(policy, b, logp, &sum);
        tw_lm_set_lora_enabled(policy, true);
    }
    if (!rc) {
        row_sums(logp, b, rf);
        rc = tw_lm_forward(policy, b, logp, &sum);
    }
    if (!rc) {
        row_sums(logp, b, pi);
        memset(st, 0, sizeof *st);
        for (int i = 0; i < n; i++) {
            double rc_ = beta * (pi[i] - rf[i]), rr = beta * (pi[n + i] - rf[n + i]);
            double z = rc_ - rr, g = scale / (1.0 + exp(z)) / n; // sigmoid(-z) / n
            st->loss -= log_sigmoid(z) / n;
            st->rewards_chosen += rc_ / n, st->rewards_rejected += rr / n;
            st->rewards_margins += z / n, st->rewards_accuracies += (rc_ > rr) / (double)n;
            st->logps_chosen += pi[i] / n, st->logps_rejected += pi[n + i] / n;
            st->ref_logps_chosen += rf[i] / n, st->ref_logps_rejected += rf[n + i] / n;
            for (int32_t t = 0; t < b->T; t++) {
                int64_t c = (int64_t)i * b->T + t, r = (int64_t)(n + i) * b->T + t;
                coef[c] = b->targets[c] >= 0 ? (float)(-beta * g) : 0.0f;
                coef[r] = b->targets[r] >= 0 ? (float)(beta * g) : 0.0f;
            }
        }
        rc = tw_lm_backward(policy, b, coef);
    }
    tw_free(logp), tw_free(coef), tw_free(pi);
    return rc;
}

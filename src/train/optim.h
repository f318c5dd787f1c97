// The optimiser side of training: AdamW as torch.optim.AdamW computes it (decoupled weight
// decay, bias-corrected moments), the global gradient-norm clip of torch.nn.utils.
// clip_grad_norm_, and the learning-rate schedules of transformers' get_scheduler (constant,
// linear and cosine, each with a linear warm-up).
#ifndef TW_TRAIN_OPTIM_H
#define TW_TRAIN_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "train/lm.h"

struct tw_adamw_opts {
    double lr, beta1, beta2, eps, weight_decay;
};

// The moments of every trainable parameter of an LM (2 floats per element) and the step count.
// They live where the LM's passes run (tw_lm_backend): bm, bv in that backend's memory; m, v
// are host copies that tw_adamw_pull refreshes (the same buffers on the CPU).
struct tw_adamw {
    struct tw_adamw_opts o;
    int64_t step; // steps taken
    size_t n;     // elements
    float *m, *v;
    float *bm, *bv;
    struct tw_backend *be;
};

int tw_adamw_init(struct tw_adamw *a, const tw_lm *lm, const struct tw_adamw_opts *o);
void tw_adamw_free(struct tw_adamw *a);
// The host copies m, v from the backend's (pull), or the backend's from them (push). 0 or
// TW_EDEVICE.
int tw_adamw_pull(struct tw_adamw *a);
int tw_adamw_push(struct tw_adamw *a);
// One step at learning rate lr over lm's parameters and their gradients (weight decay only
// on parameters marked decay). On a device with a multi-tensor AdamW, one launch for all of
// them that also writes bf16 compute's copies (tw_lm_copies_written: tw_lm_sync then leaves
// them).
void tw_adamw_step(struct tw_adamw *a, tw_lm *lm, double lr);

// The L2 norm of all the gradients together (summed in double) into *norm (inf or NaN when a
// gradient is), before clipping: when max_norm > 0 and the norm exceeds it, every gradient is
// scaled by max_norm / (norm + 1e-6) as PyTorch does. 0, or TW_ENOMEM / TW_EDEVICE (a device).
int tw_clip_grad_norm(tw_lm *lm, double max_norm, double *norm);

// Data parallelism: every trainable parameter's gradient summed over the workers of c, in
// place (contiguous gradients in one collective). 0, or TW_EDEVICE / TW_EIO.
struct tw_comm;
int tw_lm_sum_grads(tw_lm *lm, struct tw_comm *c);

enum tw_schedule { TW_SCHEDULE_CONSTANT, TW_SCHEDULE_LINEAR, TW_SCHEDULE_COSINE };
// The schedule called name ("constant", "linear", "cosine"): 0, or TW_EINVAL naming them.
int tw_schedule_from_name(const char *name, enum tw_schedule *out);
const char *tw_schedule_name(enum tw_schedule s);
// The learning rate of optimiser step `step` (0-based) of `total`: peak * the factor of
// transformers' schedule, step / warmup during the warm-up, then 1 (constant), (total -
// step) / (total - warmup) (linear) or 0.5 (1 + cos(pi progress)) (cosine), never below 0.
double tw_schedule_lr(enum tw_schedule s, double peak, int64_t step, int64_t warmup,
                      int64_t total);

#endif

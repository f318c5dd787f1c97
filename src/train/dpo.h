// Direct Preference Optimization (Rafailov et al., 2023) with the sigmoid loss, as TRL's
// DPOTrainer computes it: z = beta ((pi_c - ref_c) - (pi_r - ref_r)) per pair, where pi and
// ref are the summed log-probabilities of the answer tokens under the policy and the
// reference; loss = -mean log sigmoid(z). The reference is the policy with its LoRA adapter
// switched off, or a separate frozen model.
#ifndef TW_TRAIN_DPO_H
#define TW_TRAIN_DPO_H

#include "train/lm.h"

// What TRL reports for a batch (means over its pairs).
struct tw_dpo_stats {
    double loss;
    double rewards_chosen, rewards_rejected, rewards_margins, rewards_accuracies;
    double logps_chosen, logps_rejected; // the policy's
    double ref_logps_chosen, ref_logps_rejected;
};

// One DPO forward and backward over b: rows 0 .. B/2 - 1 hold prompt + chosen answer, rows
// B/2 .. B - 1 prompt + rejected answer of the same pairs, targets only on the answers. ref
// NULL: the reference is policy with LoRA off (policy must then be a LoRA model). Adds
// scale * dloss/dparam to the policy's gradients (scale 1: the gradient of the batch's mean
// loss). 0, TW_EINVAL (an odd row count, or no reference), TW_ENOMEM.
int tw_dpo_step(tw_lm *policy, tw_lm *ref, const struct tw_lm_batch *b, double beta, float scale,
                struct tw_dpo_stats *st);

#endif

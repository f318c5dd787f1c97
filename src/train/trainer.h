// The training loop: batches of a dataset (train/data.h) through a trainable model
// (train/lm.h) with AdamW, the schedule, clipping and gradient accumulation; the cross-entropy
// for pretraining and SFT, DPO for preference data; an evaluation on the held-out split;
// checkpoints that a later run resumes bit-identically; a stop flag (SIGINT) that ends the
// run with a checkpoint; a NaN or inf in the loss or the gradients stops the run naming the
// step. What the run records (the registry) is the caller's, through the step callback.
#ifndef TW_TRAIN_TRAINER_H
#define TW_TRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "tensor/comm.h"
#include "train/data.h"
#include "train/dpo.h"
#include "train/lm.h"
#include "train/optim.h"

enum tw_train_task { TW_TRAIN_PRETRAIN, TW_TRAIN_SFT, TW_TRAIN_DPO };

// Where a run stands after an optimiser step.
struct tw_train_progress {
    int64_t step, total;  // optimiser steps done, and planned
    double epoch;         // epochs done, fractional
    double loss;          // the step's mean loss (DPO: its sigmoid loss)
    double lr, grad_norm; // the rate the step used; the norm before clipping
    double tokens_per_s;  // trained tokens (DPO: tokens of both rows) per second so far
    double elapsed_s, eta_s;
    double eval_loss;        // NAN unless an evaluation ran after this step
    int64_t mem_bytes;       // the process's resident memory
    struct tw_dpo_stats dpo; // DPO's metrics of the step
};

struct tw_train_opts {
    enum tw_train_task task;
    int32_t epochs;    // passes over the training split (>= 1)
    int64_t max_steps; // 0: the epochs decide; else at most this many optimiser steps
    int32_t batch;     // rows a micro-batch (DPO: pairs)
    int32_t accum;     // micro-batches an optimiser step
    int32_t seq;       // tokens a row
    enum tw_batch_mode mode;
    double lr;
    enum tw_schedule schedule;
    int64_t warmup; // steps of linear warm-up
    double beta1, beta2, eps, weight_decay, clip;
    double beta;      // DPO
    double eval_frac; // the held-out share of the examples (0: none)
    uint64_t seed;    // split, shuffles
    bool recompute;   // activation recompute (tw_lm_set_recompute)
    // Checkpoints: written to checkpoint (a file) every checkpoint_every steps (0: only at
    // the end and on a stop); with resume, the run starts from it.
    const char *checkpoint;
    int64_t checkpoint_every;
    bool resume;
    volatile sig_atomic_t *stop; // set (by a signal handler): finish the step, checkpoint,
                                 // return TW_ECANCELED
    // Data parallelism: this worker's group (tensor/comm.h), NULL for one process. Every
    // worker calls tw_train with the same options and data; o->accum micro-batches per worker
    // make a step; only rank 0 writes checkpoints (all read one to resume), and on_step is
    // best left to it.
    struct tw_comm *comm;
    // Called after every optimiser step; a non-zero return stops the run with that code.
    int (*on_step)(void *ud, const struct tw_train_progress *p);
    void *ud;
};

// Sensible defaults: 1 epoch, batch 4, accum 1, seq 256, packing, lr 3e-4, linear schedule
// with 10 warm-up steps, AdamW (0.9, 0.999, 1e-8, weight decay 0.01), clip 1.0, beta 0.1,
// 5 % held out, seed 42.
void tw_train_opts_default(struct tw_train_opts *o, enum tw_train_task task);

struct tw_train_result {
    int64_t steps;
    double loss;      // the last step's
    double eval_loss; // the last evaluation's (NAN: none)
    double tokens_per_s;
    struct tw_dpo_stats dpo; // the last step's (DPO)
};

// Trains lm on d. ref: DPO's reference model when lm is not a LoRA model (else NULL: the
// adapter switched off). Returns 0; TW_ECANCELED when stopped (a checkpoint written when
// o->checkpoint is set); TW_ESTATE "step N: the loss is nan" (or the gradient norm); TW_EINVAL
// for bad options or a dataset of the wrong kind; errors of the checkpoint file; TW_ENOMEM.
int tw_train(tw_lm *lm, tw_lm *ref, const struct tw_dataset *d, const struct tw_train_opts *o,
             struct tw_train_result *res);

#endif

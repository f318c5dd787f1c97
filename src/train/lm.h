// The trainable Llama-family decoder (Llama, Mistral, Qwen2, Qwen3 shapes): its parameters in
// f32 with their gradients, a forward pass over a batch of packed examples that keeps what the
// backward needs, and the backward (train/grad.h's ops). Three ways to train:
//   full      every parameter in f32, from a model or from random initialisation (pretraining);
//   LoRA      the base frozen as stored (bf16, f32, ...), low-rank adapters A (r, in) and
//             B (out, r) on chosen projections: y = x W^T + (alpha / r) (drop(x) A^T) B^T, with
//             PEFT's initialisation (A kaiming-uniform, B zero);
//   QLoRA     LoRA over a base held quantised in memory (q8_0, q4_0, q4_K), dequantised a tile
//             at a time inside the matmuls.
// Parameter names are Hugging Face's (and PEFT's for the adapters), so gradients, checkpoints
// and exports line up with transformers and peft.
#ifndef TW_TRAIN_LM_H
#define TW_TRAIN_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "tensor/backend.h"
#include "tensor/dtype.h"

// The projections LoRA can target (bits of tw_lm_opts.lora_targets).
enum tw_lm_proj {
    TW_PROJ_Q,
    TW_PROJ_K,
    TW_PROJ_V,
    TW_PROJ_O,
    TW_PROJ_GATE,
    TW_PROJ_UP,
    TW_PROJ_DOWN,
    TW_PROJ_COUNT
};
#define TW_PROJ_ALL ((1u << TW_PROJ_COUNT) - 1)

struct tw_lm_opts {
    int32_t lora_r;        // 0: full training of every parameter
    float lora_alpha;      // scaling alpha / r
    float lora_dropout;    // on the adapters' input, 0 <= p < 1
    uint32_t lora_targets; // bits 1 << TW_PROJ_*
    enum tw_dtype qlora;   // with LoRA: F32 keeps the base as stored; Q8_0, Q4_0, Q4_K hold
                           // its matrices quantised in memory (QLoRA)
    uint64_t seed;         // LoRA's A, dropout masks
};

// One trainable parameter: w and its gradient g, both n floats, shape (ne[0]) or (ne[0], ne[1]).
struct tw_lm_param {
    const char *name; // HF's name ("model.layers.0.self_attn.q_proj.weight") or PEFT's
    int ndim;
    int64_t ne[2];
    size_t n;
    float *w, *g;   // host memory: on a device, copies that tw_lm_pull refreshes
    float *bw, *bg; // the same in the memory of the backend the passes run on (tw_lm_backend;
                    // w and g themselves on the CPU): what training updates
    void *bwb;      // full training in bf16 compute on a device: the bf16 copy of bw that the
                    // passes read (tw_lm_sync refreshes it; tw_lm_copies_written); NULL where
                    // that copy is not bf16 (norms stay f32) or there is none
    bool decay;     // AdamW's weight decay applies (matrices; not norms or biases)
};

// A batch: B rows of T tokens. targets[t]: the id to predict at t (-100: none); pos[t]: the
// position within its example; start[t]: the row-local index of the first token of t's
// example (attention stays inside it).
struct tw_lm_batch {
    int32_t B, T;
    const int32_t *ids, *targets, *pos, *start;
};

typedef struct tw_lm tw_lm;

// A trainable model over base (a decoder: Llama, Mistral, Qwen2, Qwen3; base must stay open
// while the LM lives, its weights are read in place when frozen). Returns 0, TW_EUNSUPPORTED
// (an encoder, or a qlora dtype that is not a block type), TW_EINVAL (bad options), TW_ENOMEM.
int tw_lm_new(const struct tw_model *base, const struct tw_lm_opts *o, tw_lm **out);
// A model of configuration cfg with transformers' initialisation (matrices and embeddings
// normal(0, 0.02), norms 1, biases 0) from seed, fully trainable: pretraining from scratch.
int tw_lm_new_random(const struct tw_model_config *cfg, uint64_t seed, tw_lm **out);
void tw_lm_free(tw_lm *m);

const struct tw_model_config *tw_lm_config(const tw_lm *m);
// The trainable parameters, in a fixed order (HF's order: embeddings, layers, norm, head).
size_t tw_lm_n_params(const tw_lm *m);
const struct tw_lm_param *tw_lm_param_at(const tw_lm *m, size_t i);
const struct tw_lm_param *tw_lm_param_find(const tw_lm *m, const char *name);
int64_t tw_lm_n_trainable(const tw_lm *m); // elements over all trainable parameters
bool tw_lm_is_lora(const tw_lm *m);
// The options it was made with (all zero for tw_lm_new_random).
const struct tw_lm_opts *tw_lm_options(const tw_lm *m);
void tw_lm_zero_grad(tw_lm *m);
// Parameters i .. j-1 whose gradients lie one after another in the backend's memory (with
// weights: their weights too, and their decay the same): returns j (> i), their elements in
// *n. The optimiser, the norm and the collectives take each run in one launch.
size_t tw_lm_param_run(const tw_lm *m, size_t i, bool weights, size_t *n);
// LoRA off: the adapters are skipped (the base model alone), as peft's disable_adapter(): the
// DPO reference policy. No effect without LoRA.
void tw_lm_set_lora_enabled(tw_lm *m, bool on);
// The compute dtype of full training: F32 (the default), or BF16: the passes read a bf16
// copy of the weights while the parameters (and the optimiser's updates) stay f32 master
// weights — mixed precision as PyTorch's bf16 training with fp32 masters; activations and
// gradients stay f32 on the CPU. 0, TW_EUNSUPPORTED (another dtype), TW_EINVAL (a LoRA model),
// TW_ENOMEM.
int tw_lm_set_compute(tw_lm *m, enum tw_dtype dt);
// After the parameters changed (an optimiser step, a checkpoint loaded), refreshes the bf16
// copy the passes read; nothing to do in f32. 0 or TW_ENOMEM.
int tw_lm_sync(tw_lm *m);
// The optimiser wrote the parameters' bf16 copies (every bwb) itself: the next tw_lm_sync
// refreshes only the copies that are not bf16 (tw_lm_push refreshes all in any case).
void tw_lm_copies_written(tw_lm *m);
// Activation recompute: keep only each layer's input through the forward and run the layer's
// forward again just before its backward (one layer's activations in memory instead of all,
// for a third more compute). The gradients are the same to the bit.
void tw_lm_set_recompute(tw_lm *m, bool on);
// The dropout masks of the next forward passes come from this step number (and the seed).
void tw_lm_set_step(tw_lm *m, int64_t step);

// Runs the passes on be from now on (be a GPU backend; a CPU one changes nothing): the
// weights the passes read (and bf16 compute's masters), the gradients and the adapters are
// copied to be's memory, and the parameters' w and g become host copies that tw_lm_pull
// refreshes. Call once, after tw_lm_set_compute; be must outlive m. 0, or TW_ENOMEM /
// TW_EDEVICE (m unchanged).
int tw_lm_use_backend(tw_lm *m, struct tw_backend *be);
// The backend the passes run on (the engine's CPU backend unless tw_lm_use_backend moved it).
struct tw_backend *tw_lm_backend(const tw_lm *m);
// On a device: every parameter's w (and with grads its g) on the host from the device's copies
// (tw_lm_pull), or the device's weights from the host's w (tw_lm_push, then tw_lm_sync).
// Nothing to do on the CPU. 0 or TW_EDEVICE.
int tw_lm_pull(tw_lm *m, bool grads);
int tw_lm_push(tw_lm *m);

// Forward over the batch, keeping the activations; logp[t] (B * T floats) = the log
// probability of targets[t] at t (0 where there is no target). *sum gets their sum. 0, or
// TW_ENOMEM.
int tw_lm_forward(tw_lm *m, const struct tw_lm_batch *b, float *logp, double *sum);
// Backward of L = sum_t coef[t] logp[t] after tw_lm_forward on the same batch: adds dL/dparam
// to every trainable parameter's gradient. 0, or TW_ENOMEM.
int tw_lm_backward(tw_lm *m, const struct tw_lm_batch *b, const float *coef);
// Forward and backward of the cross-entropy scale * sum_t -logp[t] in one pass (the output
// projection's logits computed once): the SFT and pretraining step. *loss_sum gets
// sum_t -logp[t] and *n_tokens the targeted tokens. 0, or TW_ENOMEM.
int tw_lm_step_ce(tw_lm *m, const struct tw_lm_batch *b, float scale, double *loss_sum,
                  int64_t *n_tokens);

// A model of the current weights (LoRA merged into the base, in f32), for export through
// model/convert.h (tw_convert_to_hf, tw_convert_to_gguf) or for generation; it has no
// tokenizer. m owns it: it stays valid until the next call, a training step or tw_lm_free.
// 0 or TW_ENOMEM.
int tw_lm_merged(tw_lm *m, struct tw_model **out);

#endif

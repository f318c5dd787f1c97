// Models: the architectures twin runs (Llama-family decoders, BERT encoders), read from a
// Hugging Face folder (config.json + safetensors, sharded or not) or a GGUF file, with their
// weights memory-mapped and bound to tensors without copying (small norm and bias vectors
// are widened to f32). Shapes are checked against the configuration; an error names the file
// and the tensor.
#ifndef TW_MODEL_MODEL_H
#define TW_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/backend.h"
#include "text/tokenizer.h"

enum tw_arch {
    TW_ARCH_LLAMA,    // LlamaForCausalLM (Llama 2/3, SmolLM2)
    TW_ARCH_MISTRAL,  // MistralForCausalLM (Llama with a sliding window)
    TW_ARCH_QWEN2,    // Qwen2ForCausalLM (q, k, v biases)
    TW_ARCH_QWEN3,    // Qwen3ForCausalLM (q and k RMSNorms per head)
    TW_ARCH_BERT,     // BertModel: a sentence embedder
    TW_ARCH_BERT_CLS, // BertForSequenceClassification: a cross-encoder reranker
};

enum tw_rope_scaling { TW_ROPE_SCALING_NONE, TW_ROPE_SCALING_LLAMA3, TW_ROPE_SCALING_LINEAR };

struct tw_model_config {
    enum tw_arch arch;
    int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int32_t n_ctx_train; // max_position_embeddings
    float norm_eps;
    float rope_theta;
    enum tw_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int32_t rope_orig_ctx;
    bool rope_neox; // HF's rotate_half pairing; false for GGUF's permuted Llama weights
    bool tied_embeddings;
    bool attn_bias;         // q, k, v (and o for Llama's attention_bias) biases
    bool qk_norm;           // Qwen3
    int32_t sliding_window; // 0: none
    enum tw_act act;        // the MLP's activation (SwiGLU's gate for decoders)
    // BERT
    int32_t n_type_vocab;
    int32_t n_labels;        // BertForSequenceClassification
    enum tw_pooling pooling; // sentence-transformers' 1_Pooling (mean when absent)
    bool normalize;          // a Normalize module follows the pooling
    int32_t max_seq;         // sentence_bert_config.json's max_seq_length (else n_ctx_train)
};

struct tw_layer {
    struct tw_tensor attn_norm, attn_norm_b; // BERT: attention.output.LayerNorm (after)
    struct tw_tensor wq, wk, wv, wo, bq, bk, bv, bo;
    struct tw_tensor q_norm, k_norm;
    struct tw_tensor ffn_norm, ffn_norm_b; // BERT: output.LayerNorm (after)
    struct tw_tensor w_gate, w_up, w_down, b_up, b_down;
};

// Absent tensors have data == NULL.
struct tw_model {
    struct tw_model_config cfg;
    char *path;
    const char *arch_name; // "LlamaForCausalLM", ...
    const char *format;    // "safetensors" or "gguf"
    struct tw_tensor tok_embd, pos_embd, type_embd, embd_norm, embd_norm_b;
    struct tw_tensor out_norm, output; // output aliases tok_embd when tied
    struct tw_tensor pooler_w, pooler_b, cls_w, cls_b;
    struct tw_layer *layers;
    float *rope_inv_freq; // head_dim / 2 frequencies, scaling applied
    tw_tokenizer *tok;    // NULL when the folder has none
    int32_t *eog;         // end-of-generation ids (eos, eot, im_end, ... from the configs)
    size_t n_eog;
    void *impl; // the open files and owned buffers (model.c)
};

// Opens a model: a folder with config.json (and a safetensors model, sharded or not, and a
// tokenizer) or a .gguf file. Returns 0, or an error naming the file and what is wrong:
// TW_ENOENT, TW_EFORMAT (malformed, shapes that contradict the config, a missing tensor),
// TW_EUNSUPPORTED (architecture, dtype).
int tw_model_open(const char *path, struct tw_model **out);
void tw_model_close(struct tw_model *m);
// *out = m with every weight copied to backend be's memory (the CUDA backend's device), for a
// context on be; configuration, tokenizer, names and end ids are m's (m must outlive it).
// Close it with tw_model_close before freeing be. Returns 0, or TW_ENOMEM / TW_EDEVICE with
// a message naming the model and the tensor.
int tw_model_to_backend(const struct tw_model *m, struct tw_backend *be, struct tw_model **out);

const char *tw_arch_name(enum tw_arch a);
bool tw_arch_is_decoder(enum tw_arch a);
// Parameters, and the bytes of the weights as stored.
int64_t tw_model_n_params(const struct tw_model *m);
size_t tw_model_weight_bytes(const struct tw_model *m);
// Calls fn for every weight tensor present (the tied output once), in file order of slots.
void tw_model_foreach_tensor(const struct tw_model *m,
                             void (*fn)(void *arg, const char *hf_name, const char *gguf_name,
                                        const struct tw_tensor *t),
                             void *arg);
bool tw_model_is_eog(const struct tw_model *m, int32_t token);

// A published model's shape (its config), for random-weight benchmarks and tests.
struct tw_model_shape {
    const char *name; // "smollm2-135m", "llama-3.2-1b", "tiny"
    struct tw_model_config cfg;
};
// The shape called name, or NULL; tw_model_shape_names lists them.
const struct tw_model_shape *tw_model_shape_find(const char *name);
const char *tw_model_shape_names(void);

// A model of configuration cfg with random weights (uniform, standard deviation 0.02; norm
// weights around 1) held in memory, matrices in dtype (falling back where rows do not fill
// its blocks, as tw_matrix_dtype says), norms and biases f32; no tokenizer. The same seed
// gives the same weights. For benchmarks of real shapes and for tests.
int tw_model_random(const struct tw_model_config *cfg, enum tw_dtype dtype, uint64_t seed,
                    struct tw_model **out);
// The dtype a matrix with rows of ncols elements gets when dtype is asked for: q4_K and q6_K
// need rows of whole 256-blocks (else q4_0), q8_0 and q4_0 rows of 32 (else f16).
enum tw_dtype tw_matrix_dtype(enum tw_dtype dtype, int64_t ncols);

// Frequencies for RoPE: inv_freq[i] = theta^(-2i / n_rot), then Llama 3's scaling (HF's
// _compute_llama3_parameters) or linear scaling; n_rot / 2 values.
void tw_rope_inv_freq(const struct tw_model_config *c, int32_t n_rot, float *inv_freq);

#endif

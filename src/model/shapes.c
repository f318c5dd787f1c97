// The shapes of real models (config.json values of the published checkpoints), for
// benchmarks and tests with random weights: SmolLM2-135M, Llama-3.2-1B, Llama-3.1-8B, GPT-2
// small's dimensions as a Llama (pretraining's MFU), MiniLM-L6, and a tiny one.
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static const struct tw_model_shape shapes[] = {
    { "smollm2-135m",
      { .arch = TW_ARCH_LLAMA,
        .n_vocab = 49152,
        .n_embd = 576,
        .n_layer = 30,
        .n_head = 9,
        .n_head_kv = 3,
        .head_dim = 64,
        .n_ff = 1536,
        .n_ctx_train = 8192,
        .norm_eps = 1e-5f,
        .rope_theta = 100000,
        .rope_neox = true,
        .tied_embeddings = true,
        .act = TW_ACT_SILU } },
    { "llama-3.2-1b",
      { .arch = TW_ARCH_LLAMA,
        .n_vocab = 128256,
        .n_embd = 2048,
        .n_layer = 16,
        .n_head = 32,
        .n_head_kv = 8,
        .head_dim = 64,
        .n_ff = 8192,
        .n_ctx_train = 131072,
        .norm_eps = 1e-5f,
        .rope_theta = 500000,
        .rope_scaling = TW_ROPE_SCALING_LLAMA3,
        .rope_factor = 32,
        .rope_low_freq_factor = 1,
        .rope_high_freq_factor = 4,
        .rope_orig_ctx = 8192,
        .rope_neox = true,
        .tied_embeddings = true,
        .act = TW_ACT_SILU } },
    { "llama-3.1-8b",
      { .arch = TW_ARCH_LLAMA,
        .n_vocab = 128256,
        .n_embd = 4096,
        .n_layer = 32,
        .n_head = 32,
        .n_head_kv = 8,
        .head_dim = 128,
        .n_ff = 14336,
        .n_ctx_train = 131072,
        .norm_eps = 1e-5f,
        .rope_theta = 500000,
        .rope_scaling = TW_ROPE_SCALING_LLAMA3,
        .rope_factor = 8,
        .rope_low_freq_factor = 1,
        .rope_high_freq_factor = 4,
        .rope_orig_ctx = 8192,
        .rope_neox = true,
        .tied_embeddings = false,
        .act = TW_ACT_SILU } },
    { "llama-124m", // GPT-2 small's dimensions (llm.c's 124M model) in a Llama: 768 wide, 12
                    // layers of 12 heads of 64, SwiGLU of 2048 (GPT-2's 3072-wide MLP's
                    // parameters), vocab 50304 (GPT-2's padded as llm.c pads it), tied: 124M
      { .arch = TW_ARCH_LLAMA,
        .n_vocab = 50304,
        .n_embd = 768,
        .n_layer = 12,
        .n_head = 12,
        .n_head_kv = 12,
        .head_dim = 64,
        .n_ff = 2048,
        .n_ctx_train = 1024,
        .norm_eps = 1e-5f,
        .rope_theta = 10000,
        .rope_neox = true,
        .tied_embeddings = true,
        .act = TW_ACT_SILU } },
    { "minilm-l6", // sentence-transformers/all-MiniLM-L6-v2
      { .arch = TW_ARCH_BERT,
        .n_vocab = 30522,
        .n_embd = 384,
        .n_layer = 6,
        .n_head = 12,
        .n_head_kv = 12,
        .head_dim = 32,
        .n_ff = 1536,
        .n_ctx_train = 512,
        .norm_eps = 1e-12f,
        .rope_theta = 10000, // unused: BERT's positions are learned
        .act = TW_ACT_GELU,
        .n_type_vocab = 2,
        .pooling = TW_POOL_MEAN,
        .normalize = true,
        .max_seq = 256 } },
    { "tiny",
      { .arch = TW_ARCH_LLAMA,
        .n_vocab = 1024,
        .n_embd = 256,
        .n_layer = 2,
        .n_head = 4,
        .n_head_kv = 2,
        .head_dim = 64,
        .n_ff = 512,
        .n_ctx_train = 2048,
        .norm_eps = 1e-5f,
        .rope_theta = 10000,
        .rope_neox = true,
        .act = TW_ACT_SILU } },
};

const struct tw_model_shape *tw_model_shape_find(const char *name)
{
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (strcmp(shapes[i].name, name) == 0)
            return &shapes[i];
    return NULL;
}

// The table's names, ", " between them, made once.
static char shape_names[256];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void make_names(void)
{
    size_t len = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        int n = snprintf(shape_names + len, sizeof shape_names - len, "%s%s", i ? ", " : "",
                         shapes[i].name);
        if (n < 0 || (size_t)n >= sizeof shape_names - len)
            break; // (a list that outgrew the buffer ends early)
        len += (size_t)n;
    }
}

const char *tw_model_shape_names(void)
{
    pthread_once(&names_once, make_names);
    return shape_names;
}

// twin model info: what a model file or folder holds — architecture, sizes, parameters,
// dtypes, memory — without running it.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "model/model.h"
#include "text/chat.h"

struct dtype_count {
    int64_t params[TW_DTYPE_COUNT];
    size_t bytes[TW_DTYPE_COUNT];
    int tensors[TW_DTYPE_COUNT];
};

static void count(void *arg, const char *hf, const char *gg, const struct tw_tensor *t)
{
    struct dtype_count *c = arg;
    c->params[t->dtype] += tw_tensor_nelem(t);
    c->bytes[t->dtype] += tw_tensor_nbytes(t);
    c->tensors[t->dtype]++;
}

static void print_info(const struct tw_model *m)
{
    const struct tw_model_config *c = &m->cfg;
    struct dtype_count dc = { 0 };
    tw_model_foreach_tensor(m, count, &dc);
    int64_t params = tw_model_n_params(m);
    printf("path:          %s (%s)\n", m->path, m->format);
    printf("architecture:  %s\n", m->arch_name);
    printf("parameters:    %" PRId64 " (%.1f M)\n", params, params / 1e6);
    printf("layers:        %d, hidden %d, intermediate %d\n", c->n_layer, c->n_embd, c->n_ff);
    printf("attention:     %d heads of %d, %d kv heads%s%s\n", c->n_head, c->head_dim,
           c->n_head_kv, c->qk_norm ? ", q/k norms" : "", c->attn_bias ? ", biases" : "");
    printf("vocabulary:    %d%s\n", c->n_vocab, c->tied_embeddings ? " (tied embeddings)" : "");
    printf("context:       %d positions\n", c->n_ctx_train);
    if (tw_arch_is_decoder(c->arch)) {
        printf("rope:          theta %g%s%s\n", c->rope_theta,
               c->rope_scaling == TW_ROPE_SCALING_LLAMA3   ? ", llama3 scaling"
               : c->rope_scaling == TW_ROPE_SCALING_LINEAR ? ", linear scaling"
                                                           : "",
               c->rope_neox ? "" : ", adjacent pairs (GGUF order)");
        if (c->sliding_window)
            printf("window:        %d\n", c->sliding_window);
        double kv = 2.0 * c->n_layer * c->n_head_kv * c->head_dim * sizeof(float);
        printf("kv cache:      %.0f bytes per token (f32)\n", kv);
    } else {
        static const char *const pools[] = { "mean", "cls", "max", "last" };
        printf("pooling:       %s%s, max %d tokens\n", pools[c->pooling],
               c->normalize ? ", normalised" : "", c->max_seq);
        if (c->arch == TW_ARCH_BERT_CLS)
            printf("labels:        %d\n", c->n_labels);
    }
    printf("weights:       %.1f MiB\n", tw_model_weight_bytes(m) / 1048576.0);
    for (int t = 0; t < TW_DTYPE_COUNT; t++)
        if (dc.tensors[t])
            printf("  %-5s        %d tensors, %" PRId64 " parameters, %.1f MiB\n",
                   tw_dtype_name((enum tw_dtype)t), dc.tensors[t], dc.params[t],
                   dc.bytes[t] / 1048576.0);
    if (m->tok) {
        enum tw_chat_family f;
        const char *tpl = tw_tokenizer_chat_template(m->tok);
        printf("tokenizer:     %d tokens, bos %d, eos %d\n", tw_tokenizer_vocab_size(m->tok),
               tw_tokenizer_bos(m->tok), tw_tokenizer_eos(m->tok));
        printf("chat template: %s\n", !tpl ? "none"
                                      : tw_chat_family_from_template(tpl, &f) == 0
                                          ? tw_chat_family_name(f)
                                          : "unrecognised");
        printf("stop tokens:  ");
        for (size_t i = 0; i < m->n_eog; i++)
            printf(" %d (%s)", m->eog[i], tw_tokenizer_id_to_piece(m->tok, m->eog[i]));
        printf("\n");
    } else {
        printf("tokenizer:     none\n");
    }
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_model;
    if (argc != 3 || strcmp(argv[1], "info") != 0)
        return tw_cli_usage_error(v, argc < 2 ? "a subcommand is required" : "bad arguments");
    struct tw_model *m;
    if (tw_model_open(argv[2], &m) != 0)
        return tw_cli_fail();
    tw_error_clear();
    print_info(m);
    tw_model_close(m);
    return TW_EXIT_OK;
}

const struct tw_verb tw_verb_model = {
    .name = "model",
    .summary = "describe a model (twin model info PATH)",
    .usage = "usage: twin model info PATH\n"
             "\n"
             "Prints a model's architecture, sizes, parameters by dtype, weight and KV-cache\n"
             "memory, tokenizer and chat template. PATH is a Hugging Face folder (config.json\n"
             "and safetensors) or a .gguf file.\n",
    .run = run,
};

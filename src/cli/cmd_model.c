// twin model info: what a model file or folder holds — architecture, sizes, parameters,
// dtypes, memory — without running it. twin model random: a model of a published shape with
// random weights and a real tokenizer, written as a Hugging Face folder or a GGUF file
// (benchmarks, tests; the GGUF of bench/infer_cuda's model, for llama.cpp beside it).
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "model/convert.h"
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

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

// twin model random SHAPE OUT[.gguf] --tokenizer DIR [--dtype bf16] [--seed 42]
static int random_model(const struct tw_verb *v, int argc, char **argv)
{
    const char *shape = NULL, *out = NULL, *tok_dir = NULL, *dtype = "bf16", *val;
    long seed = 42;
    for (int i = 2; i < argc; i++) {
        int urc = 0;
        if (tw_cli_opt(argc, argv, &i, "--tokenizer", &val))
            tok_dir = val;
        else if (tw_cli_opt(argc, argv, &i, "--dtype", &val))
            dtype = val;
        else if (tw_cli_opt(argc, argv, &i, "--seed", &val))
            urc = tw_cli_opt_long(v, "--seed", val, 0, 1L << 62, &seed);
        else if (argv[i][0] == '-')
            return tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        else if (!shape)
            shape = argv[i];
        else if (!out)
            out = argv[i];
        else
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
        if (urc)
            return urc;
    }
    if (!shape || !out || !tok_dir || !dtype)
        return tw_cli_usage_error(v, "give SHAPE, OUT and --tokenizer DIR");
    const struct tw_model_shape *sh = tw_model_shape_find(shape);
    if (!sh)
        return tw_cli_usage_error(v, "no shape '%s' (%s)", shape, tw_model_shape_names());
    bool gguf = ends_with(out, ".gguf");
    enum tw_dtype dt;
    if (gguf && (tw_dtype_from_name(dtype, &dt) != 0 || dt == TW_DTYPE_Q6_K))
        return tw_cli_usage_error(v, "--dtype is one of f32, f16, bf16, q8_0, q4_0, q4_K");
    if (!gguf && (tw_dtype_from_name(dtype, &dt) != 0 ||
                  (dt != TW_DTYPE_F32 && dt != TW_DTYPE_F16 && dt != TW_DTYPE_BF16)))
        return tw_cli_usage_error(v, "--dtype is f32, f16 or bf16 (twin convert quantises; "
                                     "an OUT.gguf takes q8_0, q4_0 and q4_K too)");
    tw_tokenizer *tok = NULL;
    if (tw_tokenizer_load_dir(tok_dir, &tok) != 0)
        return tw_cli_fail();
    struct tw_model_config cfg = sh->cfg;
    cfg.n_vocab = tw_tokenizer_vocab_size(tok); // the tokenizer's ids are the model's
    struct tw_model *m = NULL;
    struct dtype_count dc = { 0 };
    int rc = tw_model_random(&cfg, dt, (uint64_t)seed, &m);
    if (rc == 0) {
        tw_model_foreach_tensor(m, count, &dc);
        m->tok = tok; // the model frees it
        tok = NULL;
        // The weights are made in dt itself, as bench/infer_cuda makes them, and written
        // with their bytes as they are.
        rc = gguf ? tw_convert_to_gguf(m, out, dt) : tw_convert_to_hf(m, out, dt);
    }
    tw_tokenizer_free(tok);
    tw_model_close(m);
    if (rc)
        return tw_cli_fail();
    printf("%s: %s shape (vocabulary %d from %s), random weights in %s", out, shape, cfg.n_vocab,
           tok_dir, dtype);
    // (the tensors by dtype: norms stay f32, and matrices whose rows are not whole blocks of
    // the dtype take another)
    const char *sep = "; tensors: ";
    for (int t = 0; t < TW_DTYPE_COUNT; t++) {
        if (dc.tensors[t]) {
            printf("%s%s %d", sep, tw_dtype_name((enum tw_dtype)t), dc.tensors[t]);
            sep = ", ";
        }
    }
    printf("\n");
    return TW_EXIT_OK;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_model;
    (void)cli;
    if (argc >= 2 && strcmp(argv[1], "random") == 0)
        return random_model(v, argc, argv);
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
    .summary = "describe a model (twin model info PATH); make a random one",
    .usage = "usage: twin model info PATH\n"
             "       twin model random SHAPE OUT[.gguf] --tokenizer DIR [--dtype bf16]\n"
             "                         [--seed 42]\n"
             "\n"
             "info: prints a model's architecture, sizes, parameters by dtype, weight and\n"
             "KV-cache memory, tokenizer and chat template. PATH is a Hugging Face folder\n"
             "(config.json and safetensors) or a .gguf file.\n"
             "random: writes a Hugging Face folder OUT (which must not exist) holding a model of\n"
             "a published SHAPE (smollm2-135m, llama-3.2-1b, llama-3.1-8b, tiny) with random\n"
             "weights (the same seed, the same weights) and the tokenizer of DIR\n"
             "(tokenizer.json and tokenizer_config.json; its size sets the vocabulary): a model\n"
             "of real size for benchmarks of the server and the engine. An OUT ending in .gguf\n"
             "gets a GGUF file instead (twin convert's layout, which llama.cpp reads) whose\n"
             "weights are made in the dtype itself (f32, f16, bf16, q8_0, q4_0 or q4_K) and\n"
             "kept as they are (a matrix whose rows are not whole blocks of it takes q4_0; the\n"
             "report counts the tensors by dtype): with the default seed and a tokenizer of the\n"
             "shape's vocabulary, the model bench/infer_cuda times.\n",
    .run = run,
};

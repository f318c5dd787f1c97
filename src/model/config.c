// Model configurations: Hugging Face's config.json (transformers' defaults where a key is
// absent) with sentence-transformers' pooling files, and GGUF's metadata (llama.cpp's keys,
// gguf-py's constants.py).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "model/model_int.h"

static const struct {
    const char *name;
    enum tw_arch arch;
} hf_archs[] = {
    { "LlamaForCausalLM", TW_ARCH_LLAMA },
    { "MistralForCausalLM", TW_ARCH_MISTRAL },
    { "Qwen2ForCausalLM", TW_ARCH_QWEN2 },
    { "Qwen3ForCausalLM", TW_ARCH_QWEN3 },
    { "BertModel", TW_ARCH_BERT },
    { "BertForMaskedLM", TW_ARCH_BERT },
    { "BertForSequenceClassification", TW_ARCH_BERT_CLS },
};

static const struct {
    const char *name;
    enum tw_arch arch;
} model_types[] = {
    { "llama", TW_ARCH_LLAMA }, { "mistral", TW_ARCH_MISTRAL }, { "qwen2", TW_ARCH_QWEN2 },
    { "qwen3", TW_ARCH_QWEN3 }, { "bert", TW_ARCH_BERT },
};

int tw_model_config_check(const struct tw_model_config *c, const char *what)
{
    struct {
        const char *name;
        int64_t v, max;
    } sizes[] = {
        { "vocabulary size", c->n_vocab, 1 << 24 }, { "hidden size", c->n_embd, 1 << 17 },
        { "layer count", c->n_layer, 1024 },        { "head count", c->n_head, 1024 },
        { "kv head count", c->n_head_kv, 1024 },    { "head dim", c->head_dim, 512 },
        { "intermediate size", c->n_ff, 1 << 20 },  { "context length", c->n_ctx_train, 1 << 24 },
    };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        if (sizes[i].v <= 0 || sizes[i].v > sizes[i].max)
            return tw_error_set(TW_EFORMAT, "%s: %s %lld is out of range (1 to %lld)", what,
                                sizes[i].name, (long long)sizes[i].v, (long long)sizes[i].max);
    if (c->n_head % c->n_head_kv != 0)
        return tw_error_set(TW_EFORMAT, "%s: %d heads are not a multiple of %d kv heads", what,
                            c->n_head, c->n_head_kv);
    if (tw_arch_is_decoder(c->arch) && c->head_dim % 2 != 0)
        return tw_error_set(TW_EFORMAT, "%s: head dim %d is odd (RoPE needs pairs)", what,
                            c->head_dim);
    if (!tw_arch_is_decoder(c->arch) && c->n_head * c->head_dim != c->n_embd)
        return tw_error_set(TW_EFORMAT, "%s: %d heads of %d do not make the hidden size %d", what,
                            c->n_head, c->head_dim, c->n_embd);
    if (!(c->norm_eps >= 0) || !(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return tw_error_set(TW_EFORMAT, "%s: bad norm epsilon or rope theta", what);
    if (c->rope_scaling != TW_ROPE_SCALING_NONE && !(c->rope_factor > 0))
        return tw_error_set(TW_EFORMAT, "%s: rope scaling factor must be positive", what);
    if (c->rope_scaling == TW_ROPE_SCALING_LLAMA3 &&
        (c->rope_orig_ctx <= 0 || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !(c->rope_low_freq_factor > 0)))
        return tw_error_set(TW_EFORMAT, "%s: bad llama3 rope scaling parameters", what);
    if (c->arch == TW_ARCH_BERT_CLS && (c->n_labels <= 0 || c->n_labels > 1 << 16))
        return tw_error_set(TW_EFORMAT, "%s: %d labels", what, c->n_labels);
    if (!tw_arch_is_decoder(c->arch) && (c->n_type_vocab <= 0 || c->n_type_vocab > 1 << 16))
        return tw_error_set(TW_EFORMAT, "%s: %d token types", what, c->n_type_vocab);
    return 0;
}

static int act_from_name(const char *what, const char *s, enum tw_act *out)
{
    if (strcmp(s, "silu") == 0 || strcmp(s, "swish") == 0)
        *out = TW_ACT_SILU;
    else if (strcmp(s, "gelu") == 0)
        *out = TW_ACT_GELU;
    else if (strcmp(s, "gelu_new") == 0 || strcmp(s, "gelu_pytorch_tanh") == 0)
        *out = TW_ACT_GELU_TANH;
    else if (strcmp(s, "relu") == 0)
        *out = TW_ACT_RELU;
    else
        return tw_error_set(TW_EUNSUPPORTED, "%s: hidden_act \"%s\" is not supported", what, s);
    return 0;
}

static int get_i32(const json_t *j, const char *what, const char *key, int64_t def, int32_t *out)
{
    int64_t v;
    int rc = def == INT64_MIN ? tw_json_get_int(j, what, key, &v)
                              : tw_json_opt_int(j, what, key, def, &v);
    if (rc != 0)
        return rc;
    if (v < INT32_MIN || v > INT32_MAX)
        return tw_error_set(TW_EFORMAT, "%s: \"%s\" is out of range", what, key);
    *out = (int32_t)v;
    return 0;
}

static int get_f32(const json_t *j, const char *what, const char *key, double def, float *out)
{
    double v;
    int rc = tw_json_opt_double(j, what, key, def, &v);
    if (rc == 0)
        *out = (float)v;
    return rc;
}

// transformers 4 writes rope_theta and rope_scaling at the top; transformers 5 one
// rope_parameters object holding rope_theta, rope_type and the scaling parameters.
static int rope_scaling_hf(const json_t *j, const char *what, struct tw_model_config *c)
{
    const char *key = "rope_parameters";
    json_t *rs = json_object_get(j, key);
    if (!rs || json_is_null(rs))
        rs = json_object_get(j, key = "rope_scaling");
    if (!rs || json_is_null(rs))
        return 0;
    char w[4200];
    snprintf(w, sizeof w, "%s: %s", what, key);
    if (!json_is_object(rs))
        return tw_error_set(TW_EFORMAT, "%s: expected an object", w);
    const char *type = NULL;
    int rc = get_f32(rs, w, "rope_theta", c->rope_theta, &c->rope_theta);
    if (rc == 0)
        rc = tw_json_opt_str(rs, w, "rope_type", NULL, &type);
    if (rc == 0 && !type)
        rc = tw_json_get_str(rs, w, "type", &type);
    if (rc != 0)
        return rc;
    if (strcmp(type, "default") == 0)
        return 0;
    if (strcmp(type, "linear") == 0) {
        c->rope_scaling = TW_ROPE_SCALING_LINEAR;
        return get_f32(rs, w, "factor", NAN, &c->rope_factor);
    }
    if (strcmp(type, "llama3") != 0)
        return tw_error_set(TW_EUNSUPPORTED, "%s: rope type \"%s\" is not supported", w, type);
    c->rope_scaling = TW_ROPE_SCALING_LLAMA3;
    if ((rc = get_f32(rs, w, "factor", NAN, &c->rope_factor)) != 0 ||
        (rc = get_f32(rs, w, "low_freq_factor", NAN, &c->rope_low_freq_factor)) != 0 ||
        (rc = get_f32(rs, w, "high_freq_factor", NAN, &c->rope_high_freq_factor)) != 0 ||
        (rc = get_i32(rs, w, "original_max_position_embeddings", INT64_MIN, &c->rope_orig_ctx)) !=
            0)
        return rc;
    return 0;
}

// sentence-transformers: modules.json lists the modules; the Pooling module's folder holds
// config.json with pooling_mode_* flags; a Normalize module L2-normalises the result.
static int sentence_transformers(const char *dir, struct tw_model_config *c)
{
    char p[4096];
    c->pooling = TW_POOL_MEAN;
    if (tw_path_join(p, sizeof p, dir, "sentence_bert_config.json") == 0 && tw_file_exists(p)) {
        json_t *j;
        int rc = tw_json_load_file(p, 1 << 20, &j);
        if (rc != 0)
            return rc;
        rc = get_i32(j, p, "max_seq_length", c->max_seq, &c->max_seq);
        json_decref(j);
        if (rc != 0)
            return rc;
    }
    if (tw_path_join(p, sizeof p, dir, "modules.json") != 0 || !tw_file_exists(p))
        return 0;
    json_t *mods;
    int rc = tw_json_load_file(p, 1 << 20, &mods);
    if (rc != 0)
        return rc;
    if (!json_is_array(mods)) {
        json_decref(mods);
        return tw_error_set(TW_EFORMAT, "%s: expected an array", p);
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(mods); i++) {
        const char *type = NULL, *path = NULL;
        json_t *mod = json_array_get(mods, i);
        if ((rc = tw_json_get_str(mod, p, "type", &type)) != 0 ||
            (rc = tw_json_opt_str(mod, p, "path", "", &path)) != 0)
            break;
        if (strstr(type, "Normalize"))
            c->normalize = true;
        if (!strstr(type, "Pooling"))
            continue;
        char sub[4096], cfg[4096];
        if (strstr(path, "..") || tw_path_join(sub, sizeof sub, dir, path) != 0 ||
            tw_path_join(cfg, sizeof cfg, sub, "config.json") != 0) {
            rc = tw_error_set(TW_EFORMAT, "%s: bad path \"%s\"", p, path);
            break;
        }
        json_t *pj;
        if ((rc = tw_json_load_file(cfg, 1 << 20, &pj)) != 0)
            break;
        static const struct {
            const char *key;
            enum tw_pooling mode;
        } modes[] = { { "pooling_mode_cls_token", TW_POOL_CLS },
                      { "pooling_mode_mean_tokens", TW_POOL_MEAN },
                      { "pooling_mode_max_tokens", TW_POOL_MAX },
                      { "pooling_mode_lasttoken", TW_POOL_LAST } };
        int found = 0;
        for (size_t k = 0; rc == 0 && k < sizeof modes / sizeof *modes; k++) {
            bool on = false;
            rc = tw_json_opt_bool(pj, cfg, modes[k].key, false, &on);
            if (on && found++ == 0)
                c->pooling = modes[k].mode;
        }
        if (rc == 0 && found != 1)
            rc = tw_error_set(TW_EUNSUPPORTED, "%s: exactly one pooling mode must be on (%d are)",
                              cfg, found);
        json_decref(pj);
    }
    json_decref(mods);
    return rc;
}

int tw_model_config_hf(const char *dir, struct tw_model_config *out)
{
    char path[4096];
    if (tw_path_join(path, sizeof path, dir, "config.json") != 0)
        return tw_error_prefix("%s", dir);
    json_t *j;
    int rc = tw_json_load_file_flags(path, 16 << 20, JSON_DECODE_INT_AS_REAL, &j);
    if (rc != 0)
        return rc;
    struct tw_model_config c;
    memset(&c, 0, sizeof c);
    const char *name = NULL, *mtype = NULL;
    json_t *archs = json_object_get(j, "architectures");
    if (json_is_array(archs) && json_is_string(json_array_get(archs, 0)))
        name = json_string_value(json_array_get(archs, 0));
    rc = tw_json_opt_str(j, path, "model_type", "", &mtype);
    bool found = false;
    for (size_t i = 0; rc == 0 && name && i < sizeof hf_archs / sizeof *hf_archs; i++)
        if (strcmp(name, hf_archs[i].name) == 0)
            c.arch = hf_archs[i].arch, found = true;
    for (size_t i = 0; rc == 0 && !name && i < sizeof model_types / sizeof *model_types; i++)
        if (strcmp(mtype, model_types[i].name) == 0)
            c.arch = model_types[i].arch, found = true;
    if (rc == 0 && !found)
        rc = tw_error_set(TW_EUNSUPPORTED,
                          "%s: architecture \"%s\" is not supported (twin runs Llama, Mistral, "
                          "Qwen2, Qwen3 and BERT models)",
                          path, name ? name : mtype);
    bool dec = tw_arch_is_decoder(c.arch);
    const char *act = NULL;
    if (rc == 0 && (rc = get_i32(j, path, "vocab_size", INT64_MIN, &c.n_vocab)) == 0 &&
        (rc = get_i32(j, path, "hidden_size", INT64_MIN, &c.n_embd)) == 0 &&
        (rc = get_i32(j, path, "num_hidden_layers", INT64_MIN, &c.n_layer)) == 0 &&
        (rc = get_i32(j, path, "num_attention_heads", INT64_MIN, &c.n_head)) == 0 &&
        (rc = get_i32(j, path, "num_key_value_heads", c.n_head, &c.n_head_kv)) == 0 &&
        (rc = get_i32(j, path, "head_dim", c.n_head ? c.n_embd / c.n_head : 0, &c.head_dim)) ==
            0 &&
        (rc = get_i32(j, path, "intermediate_size", INT64_MIN, &c.n_ff)) == 0 &&
        (rc = get_i32(j, path, "max_position_embeddings", dec ? 2048 : 512, &c.n_ctx_train)) ==
            0 &&
        (rc = get_f32(j, path, dec ? "rms_norm_eps" : "layer_norm_eps", dec ? 1e-6 : 1e-12,
                      &c.norm_eps)) == 0 &&
        (rc = get_f32(j, path, "rope_theta", 10000.0, &c.rope_theta)) == 0 &&
        (rc = tw_json_opt_bool(j, path, "tie_word_embeddings", false, &c.tied_embeddings)) == 0 &&
        (rc = tw_json_opt_bool(j, path, "attention_bias", c.arch == TW_ARCH_QWEN2,
                               &c.attn_bias)) == 0 &&
        (rc = tw_json_opt_str(j, path, "hidden_act", dec ? "silu" : "gelu", &act)) == 0)
        rc = act_from_name(path, act, &c.act);
    if (rc == 0)
        rc = rope_scaling_hf(j, path, &c);
    if (rc == 0 && dec) {
        c.rope_neox = true;
        c.qk_norm = c.arch == TW_ARCH_QWEN3;
        bool use_sw = c.arch == TW_ARCH_MISTRAL;
        if (c.arch == TW_ARCH_QWEN2 || c.arch == TW_ARCH_QWEN3)
            rc = tw_json_opt_bool(j, path, "use_sliding_window", false, &use_sw);
        if (rc == 0 && use_sw)
            rc = get_i32(j, path, "sliding_window", 0, &c.sliding_window);
    }
    if (rc == 0 && !dec) {
        rc = get_i32(j, path, "type_vocab_size", 2, &c.n_type_vocab);
        json_t *labels = json_object_get(j, "id2label");
        c.n_labels = json_is_object(labels) ? (int32_t)json_object_size(labels) : 2;
        if (rc == 0)
            rc = get_i32(j, path, "num_labels", c.n_labels, &c.n_labels);
        c.max_seq = c.n_ctx_train;
        if (rc == 0)
            rc = sentence_transformers(dir, &c);
        if (rc == 0 && (c.max_seq <= 0 || c.max_seq > c.n_ctx_train))
            c.max_seq = c.n_ctx_train;
    }
    json_decref(j);
    if (rc == 0)
        rc = tw_model_config_check(&c, path);
    if (rc == 0)
        *out = c;
    return rc;
}

// ---- GGUF.

static int gguf_i32(const tw_gguf *g, const char *path, const char *arch, const char *key,
                    int64_t def, int32_t *out)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int64_t v = def;
    if (tw_gguf_find_key(g, k) >= 0) {
        if (tw_gguf_get_int(g, k, &v) != 0)
            return tw_error_prefix("%s", path);
    } else if (def == INT64_MIN) {
        return tw_error_set(TW_EFORMAT, "%s: key \"%s\" is missing", path, k);
    }
    if (v < 0 || v > INT32_MAX)
        return tw_error_set(TW_EFORMAT, "%s: \"%s\" is out of range", path, k);
    *out = (int32_t)v;
    return 0;
}

static int gguf_f32(const tw_gguf *g, const char *path, const char *arch, const char *key,
                    float def, float *out)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    *out = def;
    if (tw_gguf_find_key(g, k) >= 0 && tw_gguf_get_f32(g, k, out) != 0)
        return tw_error_prefix("%s", path);
    return 0;
}

int tw_model_config_gguf(const tw_gguf *g, const char *path, struct tw_model_config *out)
{
    const char *arch;
    size_t alen;
    if (tw_gguf_get_str(g, "general.architecture", &arch, &alen) != 0)
        return tw_error_prefix("%s", path);
    char a[32];
    if (alen >= sizeof a)
        return tw_error_set(TW_EUNSUPPORTED, "%s: architecture name too long", path);
    memcpy(a, arch, alen);
    a[alen] = 0;
    struct tw_model_config c;
    memset(&c, 0, sizeof c);
    if (strcmp(a, "llama") == 0)
        c.arch = TW_ARCH_LLAMA;
    else if (strcmp(a, "qwen2") == 0)
        c.arch = TW_ARCH_QWEN2;
    else if (strcmp(a, "qwen3") == 0)
        c.arch = TW_ARCH_QWEN3;
    else if (strcmp(a, "bert") == 0)
        c.arch = tw_gguf_find_tensor(g, "cls.output.weight") ? TW_ARCH_BERT_CLS : TW_ARCH_BERT;
    else
        return tw_error_set(TW_EUNSUPPORTED,
                            "%s: architecture \"%s\" is not supported (twin runs llama, qwen2, "
                            "qwen3 and bert)",
                            path, a);
    bool dec = tw_arch_is_decoder(c.arch);
    const struct tw_gguf_tensor *emb = tw_gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return tw_error_set(TW_EFORMAT, "%s: tensor \"token_embd.weight\" is missing or not 2-D",
                            path);
    int rc;
    if ((rc = gguf_i32(g, path, a, "vocab_size", (int64_t)emb->dims[1], &c.n_vocab)) != 0 ||
        (rc = gguf_i32(g, path, a, "embedding_length", INT64_MIN, &c.n_embd)) != 0 ||
        (rc = gguf_i32(g, path, a, "block_count", INT64_MIN, &c.n_layer)) != 0 ||
        (rc = gguf_i32(g, path, a, "feed_forward_length", INT64_MIN, &c.n_ff)) != 0 ||
        (rc = gguf_i32(g, path, a, "context_length", INT64_MIN, &c.n_ctx_train)) != 0 ||
        (rc = gguf_i32(g, path, a, "attention.head_count", INT64_MIN, &c.n_head)) != 0 ||
        (rc = gguf_i32(g, path, a, "attention.head_count_kv", c.n_head, &c.n_head_kv)) != 0 ||
        (rc = gguf_i32(g, path, a, "attention.key_length", c.n_head ? c.n_embd / c.n_head : 0,
                       &c.head_dim)) != 0 ||
        (rc = gguf_f32(g, path, a, "rope.freq_base", 10000.0f, &c.rope_theta)) != 0 ||
        (rc = gguf_f32(g, path, a,
                       dec ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon",
                       dec ? 1e-6f : 1e-12f, &c.norm_eps)) != 0 ||
        (rc = gguf_i32(g, path, a, "attention.sliding_window", 0, &c.sliding_window)) != 0)
        return rc;
    if (c.sliding_window > 0 && c.arch == TW_ARCH_LLAMA)
        c.arch = TW_ARCH_MISTRAL;
    char k[128];
    snprintf(k, sizeof k, "%s.rope.scaling.type", a);
    const char *st;
    size_t stlen;
    if (tw_gguf_find_key(g, k) >= 0 && tw_gguf_get_str(g, k, &st, &stlen) == 0 && stlen == 6 &&
        memcmp(st, "linear", 6) == 0) {
        c.rope_scaling = TW_ROPE_SCALING_LINEAR;
        if ((rc = gguf_f32(g, path, a, "rope.scaling.factor", 1.0f, &c.rope_factor)) != 0)
            return rc;
    }
    // twin's own record of Llama 3's scaling (llama.cpp keeps only rope_freqs.weight).
    struct tw_gguf_arr l3;
    if (tw_gguf_find_key(g, "twin.rope.llama3") >= 0) {
        double v[3];
        int64_t orig = 0;
        if (tw_gguf_get_arr(g, "twin.rope.llama3", &l3) != 0 || l3.count != 3 ||
            tw_gguf_arr_get_float(g, &l3, 0, &v[0]) != 0 ||
            tw_gguf_arr_get_float(g, &l3, 1, &v[1]) != 0 ||
            tw_gguf_arr_get_float(g, &l3, 2, &v[2]) != 0 ||
            tw_gguf_get_int(g, "twin.rope.llama3.original_context", &orig) != 0 || orig <= 0 ||
            orig > INT32_MAX)
            return tw_error_set(TW_EFORMAT, "%s: bad twin.rope.llama3 keys", path);
        c.rope_scaling = TW_ROPE_SCALING_LLAMA3;
        c.rope_factor = (float)v[0];
        c.rope_low_freq_factor = (float)v[1];
        c.rope_high_freq_factor = (float)v[2];
        c.rope_orig_ctx = (int32_t)orig;
    }
    // llama.cpp's convert permutes Llama's q and k rows for its adjacent-pair rotation;
    // Qwen's stay in HF order (NEOX rotation).
    c.rope_neox = c.arch == TW_ARCH_QWEN2 || c.arch == TW_ARCH_QWEN3;
    c.qk_norm = c.arch == TW_ARCH_QWEN3;
    c.attn_bias = tw_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    c.tied_embeddings = dec && !tw_gguf_find_tensor(g, "output.weight");
    c.act = dec ? TW_ACT_SILU : TW_ACT_GELU;
    if (!dec) {
        const struct tw_gguf_tensor *tt = tw_gguf_find_tensor(g, "token_types.weight");
        c.n_type_vocab = tt && tt->n_dims == 2 ? (int32_t)tt->dims[1] : 2;
        const struct tw_gguf_tensor *cl = tw_gguf_find_tensor(g, "cls.output.weight");
        c.n_labels = cl && cl->n_dims == 2 ? (int32_t)cl->dims[1] : 0;
        int32_t pooling = 1;
        if ((rc = gguf_i32(g, path, a, "pooling_type", 1, &pooling)) != 0)
            return rc;
        // llama_pooling_type: 1 mean, 2 cls, 3 last.
        c.pooling = pooling == 2 ? TW_POOL_CLS : pooling == 3 ? TW_POOL_LAST : TW_POOL_MEAN;
        bool norm = true;
        if (tw_gguf_find_key(g, "twin.embedding.normalize") >= 0 &&
            tw_gguf_get_bool(g, "twin.embedding.normalize", &norm) != 0)
            return tw_error_prefix("%s", path);
        c.normalize = norm;
        c.max_seq = c.n_ctx_train;
    }
    if ((rc = tw_model_config_check(&c, path)) != 0)
        return rc;
    *out = c;
    return 0;
}

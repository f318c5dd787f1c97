// Format conversion: every weight of an open model re-encoded (and, for Llama's q and k, its
// rows reordered) into a GGUF file or a Hugging Face folder. GGUF keys and tensor names are
// llama.cpp's (gguf-py constants.py); the Llama q/k permutation is the one llama.cpp's
// convert_hf_to_gguf.py applies so that its adjacent-pair RoPE matches HF's rotate_half.
#include "model/convert.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "model/gguf.h"
#include "model/model_int.h"
#include "model/safetensors.h"

// Converted tensors awaiting the writer (which keeps data by reference).
struct conv {
    const struct tw_model *m;
    tw_arena names;
    tw_vec bufs; // void *, owned
    int rc;
    bool gguf;
    enum tw_dtype type;
    tw_gguf_writer *gw;
    struct tw_st_writer *sw;
};

// Which rows of q / k to reorder for GGUF's Llama layout: the head count, or 0.
static int permute_heads(const struct tw_model *m, const struct tw_tensor *t)
{
    if (m->cfg.arch != TW_ARCH_LLAMA && m->cfg.arch != TW_ARCH_MISTRAL)
        return 0;
    for (int il = 0; il < m->cfg.n_layer; il++) {
        const struct tw_layer *L = &m->layers[il];
        if (t == &L->wq || t == &L->bq)
            return m->cfg.n_head;
        if (t == &L->wk || t == &L->bk)
            return m->cfg.n_head_kv;
    }
    return 0;
}

// Source row of destination row r. to_gguf: within each head of hd rows, destination row
// 2i + s comes from row s * hd/2 + i (HF -> GGUF); the inverse otherwise.
static int64_t src_row(int64_t r, int64_t hd, bool to_gguf)
{
    int64_t h = r / hd, j = r % hd, half = hd / 2;
    if (to_gguf)
        return h * hd + (j % 2) * half + j / 2;
    return h * hd + (j % half) * 2 + j / half;
}

static enum tw_dtype target_type(const struct conv *cv, const struct tw_tensor *t)
{
    if (t->ndim == 1)
        return TW_DTYPE_F32;
    enum tw_dtype want = cv->type;
    const struct tw_model *m = cv->m;
    if (!cv->gguf)
        return want;
    if (t == &m->pos_embd || t == &m->type_embd)
        return TW_DTYPE_F32;
    // Q4_K_M's output in q6_K, unless it is q4_K already (re-encoding adds bytes, not bits).
    if (want == TW_DTYPE_Q4_K && t == &m->output && !m->cfg.tied_embeddings &&
        t->dtype != TW_DTYPE_Q4_K)
        want = TW_DTYPE_Q6_K;
    return tw_matrix_dtype(want, tw_tensor_ncols(t));
}

// The bytes of t as dtype dt with rows reordered for `heads` heads (0: none). *data is either
// t's own data (borrowed) or a new buffer recorded in cv->bufs.
static int encode(struct conv *cv, const struct tw_tensor *t, enum tw_dtype dt, int heads,
                  const void **data, size_t *nbytes)
{
    int64_t rows = tw_tensor_nrows(t), cols = tw_tensor_ncols(t);
    size_t row_bytes;
    if (tw_dtype_nbytes(dt, (size_t)cols, &row_bytes) != 0)
        return tw_error_prefix("%s", t->name);
    *nbytes = row_bytes * (size_t)rows;
    if (dt == t->dtype && heads == 0) {
        *data = t->data;
        return 0;
    }
    char *out = tw_malloc(*nbytes ? *nbytes : 1);
    float *tmp = tw_malloc_array((size_t)cols, sizeof(float));
    if (!out || tw_vec_push(&cv->bufs, &out) != 0) {
        tw_free(out), tw_free(tmp);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", t->name);
    }
    if (!tmp)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", t->name);
    if (t->ndim == 1) { // a bias: its elements reorder as a matrix's rows do
        float *src = tw_malloc_array((size_t)cols, sizeof(float));
        if (!src) {
            tw_free(tmp);
            return tw_error_set(TW_ENOMEM, "%s: out of memory", t->name);
        }
        tw_dequantize_row(t->dtype, t->data, src, (size_t)cols);
        for (int64_t i = 0; i < cols; i++)
            tmp[i] = src[heads ? src_row(i, cols / heads, cv->gguf) : i];
        tw_free(src);
        tw_quantize_row(dt, tmp, out, (size_t)cols);
    } else {
        int failed = 0;
        bool to_gguf = cv->gguf;
#pragma omp parallel
        {
            float *row = tw_malloc_array((size_t)cols, sizeof(float));
            if (!row) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                if (!row)
                    continue;
                int64_t s = heads ? src_row(r, rows / heads, to_gguf) : r;
                if (dt == t->dtype) { // rows only reordered: their bytes as they are
                    memcpy(out + (size_t)r * row_bytes, tw_tensor_row(t, s), row_bytes);
                    continue;
                }
                tw_dequantize_row(t->dtype, tw_tensor_row(t, s), row, (size_t)cols);
                tw_quantize_row(dt, row, out + (size_t)r * row_bytes, (size_t)cols);
            }
            tw_free(row);
        }
        if (failed) {
            tw_free(tmp);
            return tw_error_set(TW_ENOMEM, "%s: out of memory", t->name);
        }
    }
    tw_free(tmp);
    *data = out;
    return 0;
}

static void add_tensor(void *arg, const char *hf, const char *gg, const struct tw_tensor *t)
{
    struct conv *cv = arg;
    if (cv->rc != 0)
        return;
    enum tw_dtype dt = target_type(cv, t);
    const void *data = NULL;
    size_t nbytes = 0;
    int heads = permute_heads(cv->m, t);
    // A GGUF from llama.cpp already has the GGUF row order; an HF source the HF order.
    bool src_gguf = strcmp(cv->m->format, "gguf") == 0;
    if (src_gguf == cv->gguf)
        heads = 0;
    int rc = encode(cv, t, dt, heads, &data, &nbytes);
    if (rc == 0 && cv->gguf) {
        uint64_t dims[2] = { (uint64_t)tw_tensor_ncols(t), (uint64_t)t->ne[0] };
        rc = tw_gguf_writer_add_tensor(cv->gw, gg, (enum tw_ggml_type)tw_dtype_ggml_type(dt), dims,
                                       (uint32_t)t->ndim, data, nbytes);
    } else if (rc == 0) {
        int st = dt == TW_DTYPE_F32   ? TW_ST_DTYPE_F32
                 : dt == TW_DTYPE_F16 ? TW_ST_DTYPE_F16
                                      : TW_ST_DTYPE_BF16;
        rc = tw_st_writer_add(cv->sw, hf, st, t->ne, t->ndim, data, nbytes);
    }
    if (rc != 0)
        cv->rc = tw_error_prefix("%s", cv->gguf ? gg : hf);
}

static void conv_free(struct conv *cv)
{
    for (size_t i = 0; i < cv->bufs.len; i++)
        tw_free(*(void **)tw_vec_at(&cv->bufs, i));
    tw_vec_free(&cv->bufs);
    tw_arena_free(&cv->names);
}

// ---- GGUF

static const char *gguf_arch(enum tw_arch a)
{
    switch (a) {
    case TW_ARCH_LLAMA:
    case TW_ARCH_MISTRAL:
        return "llama";
    case TW_ARCH_QWEN2:
        return "qwen2";
    case TW_ARCH_QWEN3:
        return "qwen3";
    case TW_ARCH_BERT:
    case TW_ARCH_BERT_CLS:
        return "bert";
    }
    return "?";
}

// llama_ftype numbers (llama.h): the file's predominant type.
static uint32_t file_type(enum tw_dtype t)
{
    switch (t) {
    case TW_DTYPE_F32:
        return 0;
    case TW_DTYPE_F16:
        return 1;
    case TW_DTYPE_Q4_0:
        return 2;
    case TW_DTYPE_Q8_0:
        return 7;
    case TW_DTYPE_Q4_K:
        return 15; // Q4_K_M
    case TW_DTYPE_BF16:
        return 32;
    default:
        return 0;
    }
}

static int kv_u32(tw_gguf_writer *w, const char *arch, const char *key, uint32_t v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return tw_gguf_writer_add_u32(w, k, v);
}

static int kv_f32(tw_gguf_writer *w, const char *arch, const char *key, float v)
{
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return tw_gguf_writer_add_kv(w, k, TW_GGUF_TYPE_F32, &v);
}

static int gguf_metadata(tw_gguf_writer *w, const struct tw_model *m, enum tw_dtype type,
                         float *rope_div)
{
    const struct tw_model_config *c = &m->cfg;
    const char *a = gguf_arch(c->arch);
    bool dec = tw_arch_is_decoder(c->arch);
    const char *base = strrchr(m->path, '/');
    base = base && base[1] ? base + 1 : m->path;
    int rc = tw_gguf_writer_add_str(w, "general.architecture", a, strlen(a));
    if (rc == 0)
        rc = tw_gguf_writer_add_str(w, "general.name", base, strlen(base));
    if (rc == 0)
        rc = tw_gguf_writer_add_u32(w, "general.file_type", file_type(type));
    if (rc == 0 && tw_dtype_is_quantized(type))
        rc = tw_gguf_writer_add_u32(w, "general.quantization_version", 2);
    if (rc == 0)
        rc = kv_u32(w, a, "vocab_size", (uint32_t)c->n_vocab);
    if (rc == 0)
        rc = kv_u32(w, a, "context_length", (uint32_t)c->n_ctx_train);
    if (rc == 0)
        rc = kv_u32(w, a, "embedding_length", (uint32_t)c->n_embd);
    if (rc == 0)
        rc = kv_u32(w, a, "block_count", (uint32_t)c->n_layer);
    if (rc == 0)
        rc = kv_u32(w, a, "feed_forward_length", (uint32_t)c->n_ff);
    if (rc == 0)
        rc = kv_u32(w, a, "attention.head_count", (uint32_t)c->n_head);
    if (rc == 0)
        rc = kv_u32(w, a, "attention.head_count_kv", (uint32_t)c->n_head_kv);
    if (rc == 0)
        rc = kv_u32(w, a, "attention.key_length", (uint32_t)c->head_dim);
    if (rc == 0)
        rc = kv_u32(w, a, "attention.value_length", (uint32_t)c->head_dim);
    if (rc == 0)
        rc =
            kv_f32(w, a, dec ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon",
                   c->norm_eps);
    if (rc == 0 && dec) {
        rc = kv_f32(w, a, "rope.freq_base", c->rope_theta);
        if (rc == 0)
            rc = kv_u32(w, a, "rope.dimension_count", (uint32_t)c->head_dim);
        if (rc == 0 && c->sliding_window > 0)
            rc = kv_u32(w, a, "attention.sliding_window", (uint32_t)c->sliding_window);
        if (rc == 0 && c->rope_scaling == TW_ROPE_SCALING_LINEAR) {
            rc = tw_gguf_writer_add_str(w, "llama.rope.scaling.type", "linear", 6);
            if (rc == 0)
                rc = kv_f32(w, a, "rope.scaling.factor", c->rope_factor);
        }
    }
    if (rc == 0 && !dec) {
        bool f = false;
        char k[64];
        snprintf(k, sizeof k, "%s.attention.causal", a);
        rc = tw_gguf_writer_add_kv(w, k, TW_GGUF_TYPE_BOOL, &f);
        uint32_t pool = c->pooling == TW_POOL_CLS ? 2 : c->pooling == TW_POOL_LAST ? 3 : 1;
        if (rc == 0)
            rc = kv_u32(w, a, "pooling_type", pool);
        bool norm = c->normalize;
        if (rc == 0)
            rc = tw_gguf_writer_add_kv(w, "twin.embedding.normalize", TW_GGUF_TYPE_BOOL, &norm);
    }
    if (rc == 0 && c->rope_scaling == TW_ROPE_SCALING_LLAMA3) {
        // llama.cpp's form: per-frequency divisors in rope_freqs.weight; twin's keys keep the
        // parameters so that the file converts back to a config.json.
        struct tw_model_config plain = *c;
        plain.rope_scaling = TW_ROPE_SCALING_NONE;
        int32_t half = c->head_dim / 2;
        float *base_f = rope_div + half;
        tw_rope_inv_freq(&plain, c->head_dim, base_f);
        for (int32_t i = 0; i < half; i++)
            rope_div[i] = base_f[i] / m->rope_inv_freq[i];
        uint64_t dims[1] = { (uint64_t)half };
        rc = tw_gguf_writer_add_tensor(w, "rope_freqs.weight", TW_GGML_TYPE_F32, dims, 1, rope_div,
                                       (size_t)half * sizeof(float));
        float v[3] = { c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor };
        struct tw_gguf_warr arr = { TW_GGUF_TYPE_F32, v, 3 };
        if (rc == 0)
            rc = tw_gguf_writer_add_arr(w, "twin.rope.llama3", &arr);
        if (rc == 0)
            rc = tw_gguf_writer_add_u32(w, "twin.rope.llama3.original_context",
                                        (uint32_t)c->rope_orig_ctx);
    }
    return rc;
}

// A decoder's embedding rows past the tokenizer's ids (a vocabulary padded, as Qwen's is)
// get tokens too, as convert_hf_to_gguf.py gives them: "[PAD<id>]", unused (type 5); for
// llama.cpp a file has one token per row.
static int pad_vocab(struct tw_tokenizer_vocab *v, size_t n, tw_arena *a)
{
    if (v->n_tokens >= n)
        return 0;
    const char **tokens = tw_arena_alloc_array(a, n, sizeof *tokens, 8);
    int32_t *types = tw_arena_alloc_array(a, n, sizeof *types, 4);
    float *scores = v->scores ? tw_arena_alloc_array(a, n, sizeof *scores, 4) : NULL;
    if (!tokens || !types || (v->scores && !scores))
        return tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char pad[32];
        bool have = i < v->n_tokens;
        snprintf(pad, sizeof pad, "[PAD%zu]", i);
        tokens[i] = have ? v->tokens[i] : tw_arena_strndup(a, pad, strlen(pad));
        types[i] = !have ? 5 : v->types ? v->types[i] : 1;
        if (scores)
            scores[i] = have ? v->scores[i] : 0.0f;
        if (!tokens[i])
            return tw_error_set(TW_ENOMEM, "out of memory");
    }
    v->tokens = tokens, v->types = types, v->scores = scores, v->n_tokens = n;
    return 0;
}

int tw_convert_to_gguf(const struct tw_model *m, const char *path, enum tw_dtype type)
{
    if (tw_file_exists(path)) // (as a Hugging Face folder: nothing is written over)
        return tw_error_set(TW_EEXIST, "%s exists already", path);
    tw_gguf_writer w;
    tw_gguf_writer_init(&w);
    struct conv cv = { .m = m, .gguf = true, .type = type, .gw = &w };
    tw_arena_init(&cv.names, 1 << 12);
    tw_vec_init(&cv.bufs, sizeof(void *));
    float *rope_div = tw_malloc_array((size_t)m->cfg.head_dim, sizeof(float));
    int rc = rope_div ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    if (rc == 0)
        rc = gguf_metadata(&w, m, type, rope_div);
    if (rc == 0 && m->tok) {
        struct tw_tokenizer_vocab v;
        tw_arena a;
        tw_arena_init(&a, 1 << 20);
        rc = tw_tokenizer_export_vocab(m->tok, &v, &a);
        if (rc == 0 && tw_arch_is_decoder(m->cfg.arch))
            rc = pad_vocab(&v, (size_t)m->cfg.n_vocab, &a);
        if (rc == 0)
            rc = tw_gguf_writer_add_tokenizer(&w, &v);
        tw_arena_free(&a);
        if (rc != 0)
            rc = tw_error_prefix("%s: tokenizer", m->path);
    }
    if (rc == 0) {
        tw_model_foreach_tensor(m, add_tensor, &cv);
        rc = cv.rc;
    }
    if (rc == 0)
        rc = tw_gguf_write(&w, path);
    tw_gguf_writer_free(&w);
    conv_free(&cv);
    tw_free(rope_div);
    return rc;
}

// ---- Hugging Face

static json_t *hf_config(const struct tw_model *m, enum tw_dtype type)
{
    const struct tw_model_config *c = &m->cfg;
    bool dec = tw_arch_is_decoder(c->arch);
    static const char *const model_type[] = {
        "llama", "mistral", "qwen2", "qwen3", "bert", "bert"
    };
    static const char *const acts[] = { "gelu", "gelu_pytorch_tanh", "silu", "tanh", "relu" };
    json_t *j = json_object();
    json_object_set_new(j, "architectures", json_pack("[s]", tw_arch_name(c->arch)));
    json_object_set_new(j, "model_type", json_string(model_type[c->arch]));
    json_object_set_new(j, "vocab_size", json_integer(c->n_vocab));
    json_object_set_new(j, "hidden_size", json_integer(c->n_embd));
    json_object_set_new(j, "intermediate_size", json_integer(c->n_ff));
    json_object_set_new(j, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(j, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(j, "max_position_embeddings", json_integer(c->n_ctx_train));
    json_object_set_new(j, "hidden_act", json_string(acts[c->act]));
    json_object_set_new(j, "torch_dtype",
                        json_string(type == TW_DTYPE_F32   ? "float32"
                                    : type == TW_DTYPE_F16 ? "float16"
                                                           : "bfloat16"));
    if (dec) {
        json_object_set_new(j, "num_key_value_heads", json_integer(c->n_head_kv));
        json_object_set_new(j, "head_dim", json_integer(c->head_dim));
        json_object_set_new(j, "rms_norm_eps", json_real(c->norm_eps));
        json_object_set_new(j, "rope_theta", json_real(c->rope_theta));
        json_object_set_new(j, "tie_word_embeddings", json_boolean(c->tied_embeddings));
        if (c->arch == TW_ARCH_LLAMA)
            json_object_set_new(j, "attention_bias", json_boolean(c->attn_bias));
        if (c->arch == TW_ARCH_MISTRAL)
            json_object_set_new(j, "sliding_window",
                                c->sliding_window > 0 ? json_integer(c->sliding_window)
                                                      : json_null());
        if (c->rope_scaling == TW_ROPE_SCALING_LLAMA3)
            json_object_set_new(j, "rope_scaling",
                                json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3",
                                          "factor", (double)c->rope_factor, "low_freq_factor",
                                          (double)c->rope_low_freq_factor, "high_freq_factor",
                                          (double)c->rope_high_freq_factor,
                                          "original_max_position_embeddings",
                                          (json_int_t)c->rope_orig_ctx));
        else if (c->rope_scaling == TW_ROPE_SCALING_LINEAR)
            json_object_set_new(
                j, "rope_scaling",
                json_pack("{s:s, s:f}", "rope_type", "linear", "factor", (double)c->rope_factor));
        if (m->tok && tw_tokenizer_bos(m->tok) >= 0)
            json_object_set_new(j, "bos_token_id", json_integer(tw_tokenizer_bos(m->tok)));
        if (m->tok && tw_tokenizer_eos(m->tok) >= 0)
            json_object_set_new(j, "eos_token_id", json_integer(tw_tokenizer_eos(m->tok)));
    } else {
        json_object_set_new(j, "type_vocab_size", json_integer(c->n_type_vocab));
        json_object_set_new(j, "layer_norm_eps", json_real(c->norm_eps));
        if (c->arch == TW_ARCH_BERT_CLS) {
            json_t *labels = json_object();
            for (int32_t i = 0; i < c->n_labels; i++) {
                char k[16], v[24];
                snprintf(k, sizeof k, "%d", i);
                snprintf(v, sizeof v, "LABEL_%d", i);
                json_object_set_new(labels, k, json_string(v));
            }
            json_object_set_new(j, "id2label", labels);
        }
    }
    return j;
}

static int write_json(const char *dir, const char *name, json_t *j)
{
    char path[4096], *text = NULL;
    int rc = tw_path_join(path, sizeof path, dir, name);
    if (rc == 0)
        rc = tw_json_dump(j, JSON_INDENT(2), &text);
    if (rc == 0)
        rc = tw_file_write_atomic(path, text, strlen(text));
    tw_free(text);
    return rc;
}

// sentence-transformers' module files for an embedder: Transformer, Pooling, Normalize.
static int write_st_modules(const struct tw_model *m, const char *dir)
{
    const struct tw_model_config *c = &m->cfg;
    json_t *mods =
        json_pack("[{s:i, s:s, s:s, s:s}, {s:i, s:s, s:s, s:s}]", "idx", 0, "name", "0", "path",
                  "", "type", "sentence_transformers.models.Transformer", "idx", 1, "name", "1",
                  "path", "1_Pooling", "type", "sentence_transformers.models.Pooling");
    if (c->normalize)
        json_array_append_new(mods, json_pack("{s:i, s:s, s:s, s:s}", "idx", 2, "name", "2",
                                              "path", "2_Normalize", "type",
                                              "sentence_transformers.models.Normalize"));
    json_t *pool =
        json_pack("{s:i, s:b, s:b, s:b, s:b}", "word_embedding_dimension", c->n_embd,
                  "pooling_mode_cls_token", c->pooling == TW_POOL_CLS, "pooling_mode_mean_tokens",
                  c->pooling == TW_POOL_MEAN, "pooling_mode_max_tokens", c->pooling == TW_POOL_MAX,
                  "pooling_mode_lasttoken", c->pooling == TW_POOL_LAST);
    json_t *sb = json_pack("{s:i, s:b}", "max_seq_length", c->max_seq, "do_lower_case", 0);
    char sub[4096];
    int rc = write_json(dir, "modules.json", mods);
    if (rc == 0)
        rc = write_json(dir, "sentence_bert_config.json", sb);
    if (rc == 0)
        rc = tw_path_join(sub, sizeof sub, dir, "1_Pooling");
    if (rc == 0)
        rc = tw_mkdir_p(sub, 0755);
    if (rc == 0)
        rc = write_json(sub, "config.json", pool);
    if (rc == 0 && c->normalize) {
        rc = tw_path_join(sub, sizeof sub, dir, "2_Normalize");
        if (rc == 0)
            rc = tw_mkdir_p(sub, 0755);
    }
    json_decref(mods), json_decref(pool), json_decref(sb);
    return rc;
}

// The source folder's tokenizer and generation files, copied as they are.
static int copy_side_files(const struct tw_model *m, const char *dir)
{
    static const char *const names[] = { "tokenizer.json",
                                         "tokenizer_config.json",
                                         "special_tokens_map.json",
                                         "generation_config.json",
                                         "vocab.txt",
                                         "chat_template.jinja" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char src[4096], dst[4096];
        if (tw_path_join(src, sizeof src, m->path, names[i]) != 0 || !tw_file_exists(src))
            continue;
        char *data = NULL;
        size_t len = 0;
        int rc = tw_file_read(src, 256u << 20, &data, &len);
        if (rc == 0)
            rc = tw_path_join(dst, sizeof dst, dir, names[i]);
        if (rc == 0)
            rc = tw_file_write_atomic(dst, data, len);
        tw_free(data);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int tw_convert_to_hf(const struct tw_model *m, const char *dir, enum tw_dtype type)
{
    if (type != TW_DTYPE_F32 && type != TW_DTYPE_F16 && type != TW_DTYPE_BF16)
        return tw_error_set(TW_EINVAL, "%s: a Hugging Face folder holds f32, f16 or bf16, not %s",
                            dir, tw_dtype_name(type));
    if (tw_file_exists(dir))
        return tw_error_set(TW_EEXIST, "%s exists already", dir);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", dir) >= (int)sizeof tmp || !mkdtemp(tmp))
        return tw_error_set(TW_EIO, "%s: cannot create a temporary folder beside it", dir);
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    struct conv cv = { .m = m, .gguf = false, .type = type, .sw = &w };
    tw_arena_init(&cv.names, 1 << 12);
    tw_vec_init(&cv.bufs, sizeof(void *));
    json_t *cfg = hf_config(m, type);
    int rc = cfg ? write_json(tmp, "config.json", cfg) : tw_error_set(TW_ENOMEM, "out of memory");
    json_decref(cfg);
    if (rc == 0)
        rc = tw_st_writer_metadata(&w, "format", "pt");
    if (rc == 0) {
        tw_model_foreach_tensor(m, add_tensor, &cv);
        rc = cv.rc;
    }
    char st[4096];
    if (rc == 0)
        rc = tw_path_join(st, sizeof st, tmp, "model.safetensors");
    if (rc == 0)
        rc = tw_st_write(&w, st);
    if (rc == 0 && strcmp(m->format, "safetensors") == 0)
        rc = copy_side_files(m, tmp);
    else if (rc == 0 && m->tok)
        rc = tw_tokenizer_save(m->tok, tmp);
    if (rc == 0 && m->cfg.arch == TW_ARCH_BERT && strcmp(m->format, "gguf") == 0)
        rc = write_st_modules(m, tmp);
    else if (rc == 0 && m->cfg.arch == TW_ARCH_BERT) {
        char src[4096];
        if (tw_path_join(src, sizeof src, m->path, "modules.json") == 0 && tw_file_exists(src))
            rc = write_st_modules(m, tmp);
    }
    tw_st_writer_free(&w);
    conv_free(&cv);
    if (rc == 0 && rename(tmp, dir) != 0)
        rc = tw_error_set(TW_EIO, "%s: cannot rename the finished folder into place", dir);
    if (rc != 0) {
        int keep = rc;
        tw_remove_tree(tmp);
        return keep;
    }
    return 0;
}

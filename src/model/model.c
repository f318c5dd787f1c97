// Opening a model: the configuration (config.json and sentence-transformers' files, or GGUF
// metadata), then every weight slot bound to its tensor by the names of slots.c, shapes
// checked against the configuration. Weights stay in the mapped files; 1-D vectors (norms,
// biases) are widened to f32 into an arena the model owns.
#include "model/model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/arena.h"
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "model/gguf.h"
#include "model/model_int.h"
#include "model/safetensors.h"
#include "model/sampler.h"
#include "tensor/team.h"

struct model_impl {
    tw_st_model *st;
    tw_gguf *g;
    tw_arena arena;
    void *weights; // tw_model_random's weights
    // A copy on a backend (tw_model_to_backend): its tensors' memory belongs to `be`; the
    // configuration, tokenizer, names and end ids are the host model's. Each layer's tensors
    // lie in one allocation, layer_blocks[il].
    struct tw_backend *be;
    void **layer_blocks;
};

const char *tw_arch_name(enum tw_arch a)
{
    switch (a) {
    case TW_ARCH_LLAMA:
        return "LlamaForCausalLM";
    case TW_ARCH_MISTRAL:
        return "MistralForCausalLM";
    case TW_ARCH_QWEN2:
        return "Qwen2ForCausalLM";
    case TW_ARCH_QWEN3:
        return "Qwen3ForCausalLM";
    case TW_ARCH_BERT:
        return "BertModel";
    case TW_ARCH_BERT_CLS:
        return "BertForSequenceClassification";
    }
    return "?";
}

bool tw_arch_is_decoder(enum tw_arch a)
{
    return a != TW_ARCH_BERT && a != TW_ARCH_BERT_CLS;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// ---- raw tensors from either format.

struct raw {
    enum tw_dtype dtype;
    int ndim;
    int64_t shape[TW_MAX_DIMS]; // outermost first
    const void *data;
    const char *file;
};

// 1: absent; 0: found; < 0: an error (a dtype twin does not run).
static int raw_find(struct tw_model *m, const char *name, struct raw *r)
{
    struct model_impl *im = m->impl;
    if (im->st) {
        const tw_st_file *f = NULL;
        const struct tw_st_tensor *t = tw_st_model_find(im->st, name, &f);
        if (!t)
            return 1;
        r->file = f ? tw_st_path(f) : m->path;
        switch (t->dtype) {
        case TW_ST_DTYPE_F32:
            r->dtype = TW_DTYPE_F32;
            break;
        case TW_ST_DTYPE_F16:
            r->dtype = TW_DTYPE_F16;
            break;
        case TW_ST_DTYPE_BF16:
            r->dtype = TW_DTYPE_BF16;
            break;
        default:
            return tw_error_set(TW_EUNSUPPORTED, "%s: tensor \"%s\": dtype %s is not supported",
                                r->file, name, tw_st_dtype_name(t->dtype));
        }
        if (t->n_dims < 1 || t->n_dims > TW_MAX_DIMS)
            return tw_error_set(TW_EFORMAT, "%s: tensor \"%s\": %d dimensions", r->file, name,
                                t->n_dims);
        r->ndim = t->n_dims;
        for (int i = 0; i < t->n_dims; i++)
            r->shape[i] = t->shape[i];
        r->data = t->data;
        return 0;
    }
    const struct tw_gguf_tensor *t = tw_gguf_find_tensor(im->g, name);
    if (!t)
        return 1;
    r->file = m->path;
    if (tw_dtype_from_ggml(t->type, &r->dtype) != 0)
        return tw_error_prefix("%s: tensor \"%s\"", r->file, name);
    if (t->n_dims < 1)
        return tw_error_set(TW_EFORMAT, "%s: tensor \"%s\": 0 dimensions", r->file, name);
    r->ndim = (int)t->n_dims;
    for (uint32_t i = 0; i < t->n_dims; i++)
        r->shape[i] = (int64_t)t->dims[t->n_dims - 1 - i]; // ggml order is innermost first
    r->data = t->data;
    return 0;
}

// Binds slot `s` (layer il, or -1) into *t, checking the shape; 1-D vectors become f32.
static int bind(struct tw_model *m, const struct tw_slot *s, int il, struct tw_tensor *t)
{
    char name[160];
    int64_t want[2];
    int want_dims = tw_slot_shape(&m->cfg, s->kind, want);
    if (want_dims == 0)
        return 0; // not part of this configuration
    bool gguf = ((struct model_impl *)m->impl)->g != NULL;
    struct raw r;
    int rc = 1;
    for (int attempt = 0; attempt < 2 && rc == 1; attempt++) {
        if (!tw_slot_name(&m->cfg, s, il, gguf, attempt, name, sizeof name))
            continue;
        rc = raw_find(m, name, &r);
    }
    if (rc < 0)
        return rc;
    if (rc == 1) {
        if (!tw_slot_required(&m->cfg, s))
            return 0;
        tw_slot_name(&m->cfg, s, il, gguf, 0, name, sizeof name);
        return tw_error_set(TW_EFORMAT, "%s: tensor \"%s\" is missing", m->path, name);
    }
    bool ok = r.ndim == want_dims;
    for (int i = 0; ok && i < want_dims; i++)
        ok = r.shape[i] == want[i];
    if (!ok) {
        char got[64] = "", exp[64] = "";
        for (int i = 0; i < r.ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), i ? ", %lld" : "%lld",
                     (long long)r.shape[i]);
        for (int i = 0; i < want_dims; i++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), i ? ", %lld" : "%lld",
                     (long long)want[i]);
        return tw_error_set(TW_EFORMAT,
                            "%s: tensor \"%s\" has shape (%s), the configuration gives (%s)",
                            r.file, name, got, exp);
    }
    char *keep = tw_arena_strndup(&((struct model_impl *)m->impl)->arena, name, strlen(name));
    if (!keep)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", m->path);
    if (want_dims == 1 && r.dtype != TW_DTYPE_F32) {
        float *v = tw_arena_alloc_array(&((struct model_impl *)m->impl)->arena, (size_t)want[0],
                                        sizeof(float), 64);
        if (!v)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", m->path);
        tw_dequantize_row(r.dtype, r.data, v, (size_t)want[0]);
        return tw_tensor_init(t, TW_DTYPE_F32, 1, want, v, keep);
    }
    rc = tw_tensor_init(t, r.dtype, want_dims, want, (void *)r.data, keep);
    if (rc != 0)
        return tw_error_prefix("%s", r.file);
    return 0;
}

static int bind_all(struct tw_model *m)
{
    size_t n;
    const struct tw_slot *slots = tw_slots(&n);
    for (size_t i = 0; i < n; i++) {
        const struct tw_slot *s = &slots[i];
        if (!s->per_layer) {
            int rc = bind(m, s, -1, (struct tw_tensor *)((char *)m + s->offset));
            if (rc != 0)
                return rc;
            continue;
        }
        for (int il = 0; il < m->cfg.n_layer; il++) {
            int rc = bind(m, s, il, (struct tw_tensor *)((char *)&m->layers[il] + s->offset));
            if (rc != 0)
                return rc;
        }
    }
    if (tw_arch_is_decoder(m->cfg.arch) && !m->output.data) {
        m->output = m->tok_embd;
        m->cfg.tied_embeddings = true;
    }
    return 0;
}

// ---- RoPE frequencies.

void tw_rope_inv_freq(const struct tw_model_config *c, int32_t n_rot, float *inv_freq)
{
    for (int32_t i = 0; i < n_rot / 2; i++) {
        // theta^(-2i/d) in f32 as transformers computes it (a float power of the base).
        float f = (float)(1.0 / pow((double)c->rope_theta, (double)(2 * i) / n_rot));
        if (c->rope_scaling == TW_ROPE_SCALING_LINEAR) {
            f /= c->rope_factor;
        } else if (c->rope_scaling == TW_ROPE_SCALING_LLAMA3) {
            // transformers' _compute_llama3_parameters (modeling_rope_utils.py).
            double low_wavelen = c->rope_orig_ctx / c->rope_low_freq_factor;
            double high_wavelen = c->rope_orig_ctx / c->rope_high_freq_factor;
            double wavelen = 2 * M_PI / f;
            if (wavelen > low_wavelen) {
                f = f / c->rope_factor;
            } else if (wavelen >= high_wavelen) {
                double smooth = (c->rope_orig_ctx / wavelen - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                f = (float)((1 - smooth) * f / c->rope_factor + smooth * f);
            }
        }
        inv_freq[i] = f;
    }
}

// ---- open / close.

static int load_tokenizer(struct tw_model *m, const char *dir)
{
    char tj[4096], vt[4096];
    if (tw_path_join(tj, sizeof tj, dir, "tokenizer.json") != 0 ||
        tw_path_join(vt, sizeof vt, dir, "vocab.txt") != 0)
        return tw_error_prefix("%s", dir);
    if (tw_file_exists(tj))
        return tw_tokenizer_load_dir(dir, &m->tok);
    if (tw_file_exists(vt))
        return tw_tokenizer_load_wordpiece_vocab(vt, &m->tok);
    return 0;
}

static int load_gguf_tokenizer(struct tw_model *m)
{
    struct model_impl *im = m->impl;
    if (tw_gguf_find_key(im->g, "tokenizer.ggml.model") < 0)
        return 0;
    struct tw_tokenizer_vocab v;
    tw_arena a;
    tw_arena_init(&a, 1 << 20);
    int rc = tw_gguf_tokenizer_vocab(im->g, &v, &a);
    if (rc == 0)
        rc = tw_tokenizer_from_vocab(&v, &m->tok);
    tw_arena_free(&a);
    return rc != 0 ? tw_error_prefix("%s", m->path) : 0;
}

static int add_eog(struct tw_model *m, int32_t id)
{
    if (id < 0 || (m->tok && id >= tw_tokenizer_vocab_size(m->tok)) || tw_model_is_eog(m, id))
        return 0;
    int32_t *e = tw_realloc(m->eog, (m->n_eog + 1) * sizeof *e);
    if (!e)
        return tw_error_set(TW_ENOMEM, "out of memory");
    m->eog = e;
    m->eog[m->n_eog++] = id;
    return 0;
}

// End-of-generation ids: the tokenizer's eos, generation_config.json's eos_token_id (an id
// or a list), and the chat templates' end-of-turn tokens when the vocabulary has them.
static int find_eog(struct tw_model *m, const char *dir)
{
    if (!m->tok)
        return 0;
    int rc = add_eog(m, tw_tokenizer_eos(m->tok));
    static const char *const turn_ends[] = { "<|eot_id|>",      "<|im_end|>",    "<end_of_turn>",
                                             "<|end_of_text|>", "<|endoftext|>", "</s>" };
    for (size_t i = 0; rc == 0 && i < sizeof turn_ends / sizeof *turn_ends; i++)
        rc = add_eog(m, tw_tokenizer_piece_to_id(m->tok, turn_ends[i], strlen(turn_ends[i])));
    if (rc != 0 || !dir)
        return rc;
    char p[4096];
    if (tw_path_join(p, sizeof p, dir, "generation_config.json") != 0)
        return tw_error_prefix("%s", dir);
    json_t *j = NULL;
    if (tw_file_exists(p) && tw_json_load_file(p, 1 << 20, &j) == 0) {
        json_t *e = json_object_get(j, "eos_token_id");
        if (json_is_integer(e))
            rc = add_eog(m, (int32_t)json_integer_value(e));
        for (size_t i = 0; rc == 0 && json_is_array(e) && i < json_array_size(e); i++)
            if (json_is_integer(json_array_get(e, i)))
                rc = add_eog(m, (int32_t)json_integer_value(json_array_get(e, i)));
        json_decref(j);
    }
    return rc;
}

bool tw_model_is_eog(const struct tw_model *m, int32_t token)
{
    for (size_t i = 0; i < m->n_eog; i++)
        if (m->eog[i] == token)
            return true;
    return false;
}

static int finish(struct tw_model *m)
{
    struct model_impl *im = m->impl;
    m->layers = tw_arena_alloc_array(&im->arena, (size_t)m->cfg.n_layer, sizeof *m->layers, 64);
    if (!m->layers)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", m->path);
    memset(m->layers, 0, (size_t)m->cfg.n_layer * sizeof *m->layers);
    int rc = bind_all(m);
    if (rc != 0)
        return rc;
    if (tw_arch_is_decoder(m->cfg.arch)) {
        int32_t n_rot = m->cfg.head_dim;
        m->rope_inv_freq = tw_arena_alloc_array(&im->arena, (size_t)n_rot / 2, sizeof(float), 64);
        if (!m->rope_inv_freq)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", m->path);
        tw_rope_inv_freq(&m->cfg, n_rot, m->rope_inv_freq);
        if (im->g &&
            m->cfg.rope_scaling == TW_ROPE_SCALING_NONE) { // llama.cpp keeps Llama 3's scaling as
                                                           // divisors in rope_freqs.weight
            const struct tw_gguf_tensor *f = tw_gguf_find_tensor(im->g, "rope_freqs.weight");
            if (f) {
                if (f->type != TW_GGML_TYPE_F32 || f->n_dims != 1 ||
                    f->dims[0] != (uint64_t)n_rot / 2)
                    return tw_error_set(TW_EFORMAT,
                                        "%s: tensor \"rope_freqs.weight\": expected f32 (%d)",
                                        m->path, n_rot / 2);
                const float *div = f->data;
                for (int32_t i = 0; i < n_rot / 2; i++)
                    m->rope_inv_freq[i] /= div[i];
            }
        }
    }
    if (m->tok && tw_tokenizer_vocab_size(m->tok) > m->cfg.n_vocab)
        return tw_error_set(TW_EFORMAT,
                            "%s: the tokenizer has %d tokens, more than the model's %d", m->path,
                            tw_tokenizer_vocab_size(m->tok), m->cfg.n_vocab);
    return 0;
}

int tw_model_open(const char *path, struct tw_model **out)
{
    struct tw_model *m = tw_calloc(1, sizeof *m);
    struct model_impl *im = tw_calloc(1, sizeof *im);
    if (!m || !im) {
        tw_free(m), tw_free(im);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    }
    tw_arena_init(&im->arena, 1 << 16);
    m->impl = im;
    m->path = tw_strdup(path);
    int rc = m->path ? 0 : tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    if (rc == 0 && is_dir(path)) {
        m->format = "safetensors";
        rc = tw_model_config_hf(path, &m->cfg);
        if (rc == 0)
            rc = tw_st_open_model(path, &im->st);
        if (rc == 0)
            rc = load_tokenizer(m, path);
        if (rc == 0)
            rc = find_eog(m, path);
    } else if (rc == 0) {
        m->format = "gguf";
        rc = tw_gguf_open(path, &im->g);
        if (rc == 0)
            rc = tw_model_config_gguf(im->g, path, &m->cfg);
        if (rc == 0)
            rc = load_gguf_tokenizer(m);
        if (rc == 0)
            rc = find_eog(m, NULL);
    }
    if (rc == 0)
        rc = finish(m);
    if (rc != 0) {
        tw_model_close(m);
        return rc;
    }
    m->arch_name = tw_arch_name(m->cfg.arch);
    *out = m;
    return 0;
}

// The tensor of slot s in layer il (or the model's own), inside m.
static struct tw_tensor *slot_tensor(struct tw_model *m, const struct tw_slot *s, int il)
{
    char *base = s->per_layer ? (char *)&m->layers[il] : (char *)m;
    return (struct tw_tensor *)(base + s->offset);
}

// Releases a backend copy's tensors (those not aliasing another: the tied output) and its
// layers' blocks.
static void release_on_backend(struct tw_model *d)
{
    size_t n;
    const struct tw_slot *slots = tw_slots(&n);
    struct model_impl *im = d->impl;
    bool tied = d->output.data && d->output.data == d->tok_embd.data;
    for (size_t i = 0; i < n; i++)
        if (!slots[i].per_layer) {
            struct tw_tensor *t = slot_tensor(d, &slots[i], 0);
            if (t->data && !(t == &d->output && tied))
                tw_backend_release(im->be, t->data);
            t->data = NULL;
        }
    for (int il = 0; il < d->cfg.n_layer && im->layer_blocks; il++)
        tw_backend_release(im->be, im->layer_blocks[il]);
    tw_free(im->layer_blocks);
    im->layer_blocks = NULL;
}

// A layer's tensor's room in its block: its bytes to the next 256-byte boundary.
static size_t block_room(const struct tw_tensor *t)
{
    return (tw_tensor_nbytes(t) + 255) / 256 * 256;
}

// Slot s's tensor of layer il in m when it goes in pass `pass` of its layer's block (0: the
// matrices, 1: the rest); else NULL.
static const struct tw_tensor *block_member(const struct tw_model *m, const struct tw_slot *s,
                                            int il, int pass)
{
    const struct tw_tensor *t = slot_tensor((struct tw_model *)m, s, il);
    return s->per_layer && t->data && (t->ndim == 2) == (pass == 0) ? t : NULL;
}

// Layer il of m into one block of be's memory, d's layer pointing into it: the matrices first
// in slot order, then the vectors, so that the layer's q, k, v weights (and gate, up) lie one
// after another wherever their sizes are multiples of 256 bytes (train/lm.c then multiplies
// them as one stacked matrix).
static int layer_to_backend(const struct tw_model *m, struct tw_model *d, int il,
                            struct tw_backend *be, void **block)
{
    size_t n, total = 0;
    const struct tw_slot *slots = tw_slots(&n);
    const struct tw_tensor *t;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++)
            if ((t = block_member(m, &slots[i], il, pass)))
                total += block_room(t);
    char *p = *block = total ? tw_backend_alloc(be, total) : NULL;
    if (total && !p)
        return tw_error_code() ? tw_error_code() : TW_ENOMEM;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            if (!(t = block_member(m, &slots[i], il, pass)))
                continue;
            assert(tw_tensor_is_contiguous(t));
            if (tw_backend_upload(be, p, t->data, tw_tensor_nbytes(t)))
                return tw_error_prefix("%s", t->name ? t->name : "a weight");
            struct tw_tensor *dt = slot_tensor(d, &slots[i], il);
            dt->data = p, dt->device = be->device;
            p += block_room(t);
        }
    return 0;
}

int tw_model_to_backend(const struct tw_model *m, struct tw_backend *be, struct tw_model **out)
{
    struct tw_model *d = tw_calloc(1, sizeof *d);
    struct model_impl *im = tw_calloc(1, sizeof *im);
    struct tw_layer *layers = tw_calloc((size_t)m->cfg.n_layer, sizeof *layers);
    void **blocks = tw_calloc((size_t)m->cfg.n_layer + 1, sizeof *blocks); // (+ 1: never 0)
    if (!d || !im || !layers || !blocks) {
        tw_free(d), tw_free(im), tw_free(layers), tw_free(blocks);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", m->path);
    }
    *d = *m;
    memcpy(layers, m->layers, (size_t)m->cfg.n_layer * sizeof *layers);
    d->layers = layers;
    d->impl = im;
    im->be = be, im->layer_blocks = blocks;
    size_t n;
    const struct tw_slot *slots = tw_slots(&n);
    // until uploaded, nothing of d points at m's memory
    for (size_t i = 0; i < n; i++)
        for (int il = 0; il < (slots[i].per_layer ? m->cfg.n_layer : 1); il++)
            slot_tensor(d, &slots[i], il)->data = NULL;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct tw_tensor *t = slot_tensor((struct tw_model *)m, &slots[i], 0);
        if (slots[i].per_layer || !t->data ||
            (t == &m->output && m->output.data == m->tok_embd.data))
            continue;
        if ((rc = tw_backend_tensor_upload(be, t, slot_tensor(d, &slots[i], 0))) != 0)
            tw_error_prefix("%s: %s", m->path, t->name ? t->name : "a weight");
    }
    for (int il = 0; il < m->cfg.n_layer && rc == 0; il++)
        if ((rc = layer_to_backend(m, d, il, be, &blocks[il])) != 0)
            tw_error_prefix("%s: layer %d", m->path, il);
    if (rc == 0 && m->output.data && m->output.data == m->tok_embd.data)
        d->output = d->tok_embd, d->output.name = m->output.name;
    if (rc != 0) {
        tw_model_close(d);
        return rc;
    }
    *out = d;
    return 0;
}

void tw_model_close(struct tw_model *m)
{
    if (!m)
        return;
    struct model_impl *im = m->impl;
    if (im && im->be) {
        release_on_backend(m);
        tw_free(m->layers);
        tw_free(im);
        tw_free(m);
        return;
    }
    if (im) {
        tw_st_close_model(im->st);
        tw_gguf_close(im->g);
        tw_arena_free(&im->arena);
        tw_free(im->weights);
        tw_free(im);
    }
    tw_tokenizer_free(m->tok);
    tw_free(m->eog);
    tw_free(m->path);
    tw_free(m);
}

// ---- walking the weights.

void tw_model_foreach_tensor(const struct tw_model *m,
                             void (*fn)(void *arg, const char *hf_name, const char *gguf_name,
                                        const struct tw_tensor *t),
                             void *arg)
{
    size_t n;
    const struct tw_slot *slots = tw_slots(&n);
    char hf[160], gg[160];
    for (size_t i = 0; i < n; i++) {
        const struct tw_slot *s = &slots[i];
        int64_t shape[2];
        if (tw_slot_shape(&m->cfg, s->kind, shape) == 0)
            continue;
        int layers = s->per_layer ? m->cfg.n_layer : 1;
        for (int il = 0; il < layers; il++) {
            const struct tw_tensor *t =
                (const struct tw_tensor *)((const char *)(s->per_layer
                                                              ? (const void *)&m->layers[il]
                                                              : (const void *)m) +
                                           s->offset);
            if (!t->data)
                continue;
            if (t == &m->output && m->cfg.tied_embeddings)
                continue;
            tw_slot_name(&m->cfg, s, s->per_layer ? il : -1, false, 0, hf, sizeof hf);
            tw_slot_name(&m->cfg, s, s->per_layer ? il : -1, true, 0, gg, sizeof gg);
            fn(arg, hf, gg, t);
        }
    }
}

static void count_params(void *arg, const char *hf, const char *gg, const struct tw_tensor *t)
{
    ((int64_t *)arg)[0] += tw_tensor_nelem(t);
    ((int64_t *)arg)[1] += (int64_t)tw_tensor_nbytes(t);
}

int64_t tw_model_n_params(const struct tw_model *m)
{
    int64_t acc[2] = { 0, 0 };
    tw_model_foreach_tensor(m, count_params, acc);
    return acc[0];
}

size_t tw_model_weight_bytes(const struct tw_model *m)
{
    int64_t acc[2] = { 0, 0 };
    tw_model_foreach_tensor(m, count_params, acc);
    return (size_t)acc[1];
}

// ---- random weights

// Fills row r of tensor number ti: uniform values of standard deviation 0.02 (norm weights
// around 1), encoded in the tensor's dtype. Each row has its own stream, so the weights do
// not depend on the thread count.
static void random_row(struct tw_tensor *t, int64_t r, uint64_t seed, size_t ti, bool norm,
                       float *tmp)
{
    uint64_t st = seed ^ (ti * 0x100000001B3ull) ^ ((uint64_t)r << 20);
    int64_t n = tw_tensor_ncols(t);
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(tw_splitmix64(&st) >> 11) * (1.0 / 9007199254740992.0);
        float v = (float)((u * 2 - 1) * 0.0346); // sqrt(3) * 0.02
        tmp[i] = norm ? 1.0f + v : v;
    }
    tw_quantize_row(t->dtype, tmp, tw_tensor_row(t, r), (size_t)n);
}

// The rows of tensor number ti, shared out over a team (random_rows).
struct random_job {
    struct tw_tensor *t;
    int64_t rows, cols;
    uint64_t seed;
    size_t ti;
    bool norm;
};

// A thread's share of a random_job's rows.
static void random_rows(void *ctx, int id, int nt)
{
    const struct random_job *j = ctx;
    int64_t r0, r1;
    tw_team_range(j->rows, id, nt, &r0, &r1);
    float *tmp = tw_malloc_array((size_t)j->cols, sizeof(float));
    for (int64_t r = r0; r < r1 && tmp; r++)
        random_row(j->t, r, j->seed, j->ti, j->norm, tmp);
    tw_free(tmp);
}

int tw_model_random(const struct tw_model_config *cfg, enum tw_dtype dtype, uint64_t seed,
                    struct tw_model **out)
{
    int rc = tw_model_config_check(cfg, "random model");
    if (rc != 0)
        return rc;
    struct tw_model *m = tw_calloc(1, sizeof *m);
    struct model_impl *im = tw_calloc(1, sizeof *im);
    if (!m || !im) {
        tw_free(m), tw_free(im);
        return tw_error_set(TW_ENOMEM, "random model: out of memory");
    }
    tw_arena_init(&im->arena, 1 << 16);
    m->impl = im;
    m->cfg = *cfg;
    m->path = tw_strdup("(random)");
    m->format = "random";
    m->arch_name = tw_arch_name(cfg->arch);
    m->layers = tw_arena_alloc_array(&im->arena, (size_t)cfg->n_layer, sizeof *m->layers, 64);
    if (m->layers)
        memset(m->layers, 0, (size_t)cfg->n_layer * sizeof *m->layers);
    size_t n_slots;
    const struct tw_slot *slots = tw_slots(&n_slots);
    // Two passes: sizes (data == NULL), then the tensors in one allocation.
    size_t total = 0;
    for (int pass = 0; pass < 2 && m->layers && m->path; pass++) {
        size_t off = 0;
        for (size_t i = 0; i < n_slots; i++) {
            int64_t shape[2];
            int nd = tw_slot_shape(cfg, slots[i].kind, shape);
            for (int il = 0; nd > 0 && il < (slots[i].per_layer ? cfg->n_layer : 1); il++) {
                enum tw_dtype dt = nd == 1 ? TW_DTYPE_F32 : tw_matrix_dtype(dtype, shape[1]);
                struct tw_tensor t;
                if (tw_tensor_init(&t, dt, nd, shape, NULL, NULL) != 0)
                    return tw_model_close(m), tw_error_prefix("random model");
                off = (off + 63) & ~(size_t)63;
                if (pass == 1) {
                    t.data = (char *)im->weights + off;
                    void *base = slots[i].per_layer ? (void *)&m->layers[il] : (void *)m;
                    *(struct tw_tensor *)((char *)base + slots[i].offset) = t;
                }
                off += tw_tensor_nbytes(&t);
            }
        }
        total = off;
        if (pass == 0 && !(im->weights = tw_malloc(total ? total : 1)))
            break;
    }
    if (!m->layers || !m->path || !im->weights) {
        tw_model_close(m);
        return tw_error_set(TW_ENOMEM, "random model: cannot allocate %zu MiB", total >> 20);
    }
    // Fill every row in parallel, on a team of the engine's kind (tensor/team.h) freed at the
    // end: OpenMP's threads would spin on for milliseconds, taking cores from the backend's.
    struct tw_team *team = NULL; // (stays NULL, the rows then on this thread, if it fails)
    (void)tw_team_new(0, &team);
    size_t ti = 0;
    for (size_t i = 0; i < n_slots; i++) {
        int64_t shape[2];
        if (tw_slot_shape(cfg, slots[i].kind, shape) == 0)
            continue;
        bool norm = slots[i].kind == TW_SLOT_NORM || slots[i].kind == TW_SLOT_OUT_NORM ||
                    slots[i].kind == TW_SLOT_QK_NORM ||
                    (slots[i].kind == TW_SLOT_ENC_NORM && strstr(slots[i].hf_enc, "weight")) ||
                    (slots[i].kind == TW_SLOT_EMBD_NORM && strstr(slots[i].hf_enc, "weight"));
        for (int il = 0; il < (slots[i].per_layer ? cfg->n_layer : 1); il++, ti++) {
            void *base = slots[i].per_layer ? (void *)&m->layers[il] : (void *)m;
            struct tw_tensor *t = (struct tw_tensor *)((char *)base + slots[i].offset);
            int64_t rows = tw_tensor_nrows(t), cols = tw_tensor_ncols(t);
            struct random_job j = { t, rows, cols, seed, ti, norm };
            tw_team_run(team, random_rows, &j);
        }
    }
    tw_team_free(team);
    if (tw_arch_is_decoder(cfg->arch)) {
        if (!m->output.data) {
            m->output = m->tok_embd;
            m->cfg.tied_embeddings = true;
        }
        m->rope_inv_freq =
            tw_arena_alloc_array(&im->arena, (size_t)cfg->head_dim / 2, sizeof(float), 64);
        if (!m->rope_inv_freq) {
            tw_model_close(m);
            return tw_error_set(TW_ENOMEM, "random model: out of memory");
        }
        tw_rope_inv_freq(&m->cfg, cfg->head_dim, m->rope_inv_freq);
    }
    *out = m;
    return 0;
}

// Implements lm.h: the weights are a struct tw_model (the base itself when frozen, else an f32
// copy that training updates in place), the gradients a second struct tw_model's tensors at
// the same slots (model_int.h's slot table gives names, shapes and offsets for both), LoRA's
// adapters per (layer, projection), and the activations of one batch in one allocation.
// The passes call the training ops of a backend (tensor/grad.h) on its memory: on the CPU the
// host buffers themselves; on a GPU copies of the weights, gradients and adapters that
// tw_lm_use_backend made, the host ones then being mirrors (tw_lm_pull, tw_lm_push).
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "model/model_int.h"
#include "model/sampler.h"
#include "tensor/grad.h"
#include "train/lm.h"

struct lora {
    float *A, *B, *dA, *dB;     // (r, in), (out, r): the host's
    float *bA, *bB, *bdA, *bdB; // the same in the backend's memory (the host's on the CPU)
    int64_t in, out;
};

// One layer's activations (N rows each), kept from the forward for the backward.
struct acts {
    float *x_mid, *xn1, *xn2, *rstd1, *rstd2; // (N, C), (N)
    float *q, *k, *v, *att, *lse;             // (N, H*D), (N, Hkv*D), (N, H*D), (N, H)
    float *q_pre, *k_pre, *q_rstd, *k_rstd;   // qk_norm: before the norms; (N*H), (N*Hkv)
    float *g, *u, *h;                         // (N, F)
    float *xa[TW_PROJ_COUNT];                 // LoRA: drop(x) A^T (N, r)
    // with bf16 hand-offs (grad.h; xn1, xn2, h, g and u then NULL): the products' inputs as
    // bf16, q, k, v as the attention multiplies them (struct tw_attn_shape's keep), and the
    // gate and up projections' outputs as bf16 (as PyTorch's autocast keeps them)
    void *xn1b, *xn2b, *attb, *hb, *qkvb; // (N, C), (N, C), (N, H*D), (N, F), (N, (H+2Hkv)*D)
    void *gb, *ub; // (N, F), rows gu_ld apart (tw_lm's: 2F with u = g + F when stacked)
};

struct tw_lm {
    struct tw_model_config cfg;
    struct tw_backend *be; // the backend the passes run on: the engine's CPU backend (own_be),
                           // or the one tw_lm_use_backend gave
    bool own_be;
    const struct tw_grad_ops *go; // be's training ops
    struct tw_model *w;           // the weights the passes read (host)
    bool own_w;
    struct tw_model *master; // full training in bf16: the f32 weights the optimiser updates
                             // (w their bf16 copy, refreshed by tw_lm_sync); else NULL
    struct tw_model gm;      // gradients at the weights' slots (data NULL: frozen)
    struct tw_layer *gl;
    float *grad_buf;
    size_t n_grad, n_lora; // floats of grad_buf and lora_buf
    // In the backend's memory: the weights and masters, the gradients (bgm's tensors in
    // bgrad) and the adapters (blora). On the CPU these are w, master, &gm, grad_buf and
    // lora_buf themselves.
    struct tw_model *bw, *bmaster, *bgm;
    struct tw_model dgm; // bgm on a device
    struct tw_layer *dgl;
    float *bgrad, *blora;
    tw_vec params; // struct tw_lm_param
    tw_vec names;  // char * owned
    // LoRA
    struct tw_lm_opts opts; // as created (lora_r 0: full)
    int32_t r;
    float scale, dropout;
    uint64_t seed;
    int64_t step;
    bool lora_on;
    bool fused;         // on a device: the adapters ride along the bf16 base's products (grad.h's
                        // lora_fwd; bw's targeted weights are [[W, B], [A, 0]] blocks)
    const float *xc_of; // fused: the input whose bf16 rounding m->tmp holds in this group of
                        // projections (lora_input, start_group)
    struct lora *lora;  // (n_layer * TW_PROJ_COUNT), in == 0 where not targeted
    float *lora_buf;
    // activations for n_alloc tokens: every layer's, or with recompute one layer's (each
    // layer's forward runs again just before its backward)
    int64_t n_alloc;
    bool acts_bf16;      // the activations were laid out for bf16 hand-offs (handoffs())
    bool qkv_kept;       // and the attention multiplies its keep's q, k, v alone (attn_keeps): the
                         // products write them there, no f32 v (nor q, k without q/k norms) kept
    bool stack_qkv;      // with hand-offs, every layer's q, k, v weights (and gradients) lie one
                         // after another: their backward is one product of the stacked matrix
                         // (stacked()), its dy q's, k's and v's gradients side by side in a row
    bool stack_gu;       // and gate's and up's: one product forward and backward, g and u (and
                         // their gradients) side by side in a row
    int64_t gu_ld;       // the row stride of g, u and their gradients (2F stacked, else F)
    bool copies_written; // tw_lm_copies_written: the bf16 copies hold the masters' values
    bool recompute;
    float *act_buf;
    float **xs;          // n_layer + 1 residual streams (N, C)
    struct acts *a;      // per layer
    float *xf, *rstdf;   // the final norm
    float *dx, *dxn;     // (N, C)
    float *dh, *dg, *du; // (N, F)
    float *datt, *dq, *dk, *dv, *dqp, *dkp;
    float *dxa, *tmp;      // (N, r), (N, max(C, F)): LoRA's backward, dropout's masked inputs
    void *dgb, *dub, *dhb; // (N, F) bf16: SwiGLU's backward and its dh with hand-offs
    void *dxb;             // (N, C) bf16: dx rounded by the norms' backward, with hand-offs
    void *ob;              // (N, C) bf16: the o and down products' outputs, with hand-offs
                           // (and add_bf16), before the residual adds
    void *dqb, *dkb, *dvb; // (N, H*D), (N, Hkv*D) bf16: RoPE's backward's, with hand-offs;
                           // with stack_qkv, with dv's, in one (N, (H + 2 Hkv) D) (qkv_ld)
    int64_t qkv_ld;
    float *logp, *coef;                // (N): the output projection's per-token values
    float *hlogp, *hcoef;              // (N): their host copies
    int32_t *bids, *btargets, *bstart; // (N): the batch in the backend's memory
    int32_t *negpos;                   // (N): RoPE's backward rotates by the opposite angles
    struct tw_model *merged;           // tw_lm_merged's last result (LoRA)
};

static const size_t proj_off[TW_PROJ_COUNT] = {
    offsetof(struct tw_layer, wq),     offsetof(struct tw_layer, wk),
    offsetof(struct tw_layer, wv),     offsetof(struct tw_layer, wo),
    offsetof(struct tw_layer, w_gate), offsetof(struct tw_layer, w_up),
    offsetof(struct tw_layer, w_down),
};
static const size_t bias_off[TW_PROJ_COUNT] = {
    offsetof(struct tw_layer, bq),
    offsetof(struct tw_layer, bk),
    offsetof(struct tw_layer, bv),
    offsetof(struct tw_layer, bo),
    0,
    0,
    0,
};

static struct tw_tensor *slot_at(struct tw_model *m, const struct tw_slot *s, int il)
{
    void *base = s->per_layer ? (void *)&m->layers[il] : (void *)m;
    return (struct tw_tensor *)((char *)base + s->offset);
}

static struct tw_tensor *lt(struct tw_layer *L, size_t off)
{
    return (struct tw_tensor *)((char *)L + off);
}

static float *f(const struct tw_tensor *t)
{
    return (float *)t->data;
}

// ---- construction.

static bool is_decoder_slot(const struct tw_model_config *c, const struct tw_slot *s)
{
    int64_t shape[2];
    return s->hf_dec && tw_slot_shape(c, s->kind, shape) > 0;
}

// Whether the passes run on a device (tw_lm_use_backend), with the host buffers as mirrors.
static bool on_device(const tw_lm *m)
{
    return m->bw != m->w;
}

static int add_param(tw_lm *m, const char *name, const struct tw_tensor *w, float *g)
{
    char *nm = tw_strdup(name);
    struct tw_lm_param p = { .name = nm, .ndim = w->ndim, .w = f(w), .g = g, .bw = f(w), .bg = g };
    p.ne[0] = w->ne[0];
    p.ne[1] = w->ndim > 1 ? w->ne[1] : 1;
    p.n = (size_t)tw_tensor_nelem(w);
    p.decay = w->ndim == 2;
    if (!nm || tw_vec_push(&m->names, &nm) != 0) {
        tw_free(nm);
        return tw_error_set(TW_ENOMEM, "out of memory for the parameter list");
    }
    if (tw_vec_push(&m->params, &p) != 0)
        return tw_error_set(TW_ENOMEM, "out of memory for the parameter list");
    return 0;
}

// The f32 weights that the parameters are: the master copy in bf16 compute, else the
// weights themselves.
static struct tw_model *weights(const tw_lm *m)
{
    return m->master ? m->master : m->w;
}

// Slot i's weight of layer il as a parameter: its gradient at grad_buf + *off (pass 1 only:
// pass 0 counts), 16-float aligned.
static int add_full_param(tw_lm *m, const struct tw_slot *s, int il, int pass, size_t *off)
{
    struct tw_tensor *w = slot_at(weights(m), s, il);
    if (!w->data)
        return 0;
    size_t n = (size_t)tw_tensor_nelem(w);
    if (pass == 1) {
        struct tw_tensor *g = slot_at(&m->gm, s, il);
        *g = *w;
        g->data = m->grad_buf + *off;
        char name[256];
        if (!tw_slot_name(&m->cfg, s, il, false, 0, name, sizeof name))
            return tw_error_set(TW_EINVAL, "no HF name for a weight slot");
        int rc = add_param(m, name, w, f(g));
        if (rc)
            return rc;
    }
    *off += (n + 15) / 16 * 16;
    return 0;
}

// Gradient buffers for every weight slot when full, and the parameter list, in HF's order
// (the embeddings, each layer's weights, the final norm and the head); within a layer the
// matrices first, so that q's, k's and v's gradients (and gate's and up's) lie one after
// another as the backend copy's weights do (tw_model_to_backend): stacked products.
static int setup_full(tw_lm *m)
{
    const struct tw_model_config *c = &m->cfg;
    size_t n_slots, total = 0, first_layer = 0;
    const struct tw_slot *slots = tw_slots(&n_slots);
    while (first_layer < n_slots && !slots[first_layer].per_layer)
        first_layer++;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
        int rc = 0;
        for (size_t i = 0; i <= n_slots && !rc; i++) {
            if (i == first_layer) // every layer's slots here
                for (int il = 0; il < c->n_layer && !rc; il++)
                    for (int mat = 1; mat >= 0 && !rc; mat--)
                        for (size_t j = 0; j < n_slots && !rc; j++)
                            if (slots[j].per_layer && is_decoder_slot(c, &slots[j]) &&
                                (slot_at(weights(m), &slots[j], il)->ndim == 2) == mat)
                                rc = add_full_param(m, &slots[j], il, pass, &off);
            if (i == n_slots || slots[i].per_layer || !is_decoder_slot(c, &slots[i]) ||
                (slots[i].kind == TW_SLOT_OUTPUT && c->tied_embeddings))
                continue;
            rc = add_full_param(m, &slots[i], 0, pass, &off);
        }
        if (rc)
            return rc;
        total = off;
        m->n_grad = total;
        if (pass == 0 && !(m->grad_buf = tw_calloc(total ? total : 1, sizeof(float))))
            return tw_error_set(TW_ENOMEM, "out of memory for %zu MiB of gradients",
                                total * sizeof(float) >> 20);
    }
    if (c->tied_embeddings)
        m->gm.output = m->gm.tok_embd;
    return 0;
}

static double uniform01(uint64_t *st)
{
    return (double)(tw_splitmix64(st) >> 11) * (1.0 / 9007199254740992.0);
}

// HF's name of projection p's weight in layer il, from the slot table.
static int proj_name(const struct tw_model_config *c, int il, int p, char *buf, size_t cap)
{
    size_t n_slots;
    const struct tw_slot *slots = tw_slots(&n_slots);
    for (size_t i = 0; i < n_slots; i++)
        if (slots[i].per_layer && slots[i].offset == proj_off[p] && slots[i].hf_dec &&
            tw_slot_name(c, &slots[i], il, false, 0, buf, cap))
            return 0;
    return tw_error_set(TW_EINVAL, "no HF name for projection %d of layer %d", p, il);
}

// LoRA adapters on the targeted projections: A kaiming-uniform(a = sqrt(5)) as PEFT
// (torch.nn.init.kaiming_uniform_: bound = sqrt(6 / ((1 + a^2) fan_in)) = 1 / sqrt(in)), B 0.
static int setup_lora(tw_lm *m, uint32_t targets)
{
    const struct tw_model_config *c = &m->cfg;
    size_t total = 0;
    for (int il = 0; il < c->n_layer; il++)
        for (int p = 0; p < TW_PROJ_COUNT; p++) {
            struct lora *L = &m->lora[il * TW_PROJ_COUNT + p];
            const struct tw_tensor *w = lt(&m->w->layers[il], proj_off[p]);
            if (!(targets & (1u << p)) || !w->data)
                continue;
            L->out = w->ne[0], L->in = w->ne[1];
            total += 2 * (size_t)m->r * (size_t)(L->in + L->out);
        }
    m->n_lora = total;
    if (!(m->lora_buf = tw_calloc(total ? total : 1, sizeof(float))))
        return tw_error_set(TW_ENOMEM, "out of memory for the LoRA adapters");
    // The adapters' weights in the first half, their gradients at the same places of the
    // second: each half one run, for the optimiser's and the collectives' single launches.
    float *b = m->lora_buf, *gb = m->lora_buf + total / 2;
    for (int il = 0; il < c->n_layer; il++)
        for (int p = 0; p < TW_PROJ_COUNT; p++) {
            struct lora *L = &m->lora[il * TW_PROJ_COUNT + p];
            if (!L->in)
                continue;
            size_t na = (size_t)m->r * (size_t)L->in, nb = (size_t)L->out * (size_t)m->r;
            L->A = b, L->dA = gb, L->B = b + na, L->dB = gb + na;
            L->bA = L->A, L->bdA = L->dA, L->bB = L->B, L->bdB = L->dB;
            b += na + nb, gb += na + nb;
            uint64_t st = m->seed ^ ((uint64_t)(il * TW_PROJ_COUNT + p + 1) << 32);
            double bound = 1.0 / sqrt((double)L->in);
            for (size_t i = 0; i < na; i++)
                L->A[i] = (float)((uniform01(&st) * 2 - 1) * bound);
            // PEFT's names: "base_model.model." + the base weight's, ".weight" -> ".lora_A.weight"
            char hf[256], name[300];
            int rc = proj_name(c, il, p, hf, sizeof hf);
            if (rc)
                return rc;
            struct tw_tensor ta = tw_tensor_f32_2d(L->A, m->r, L->in);
            struct tw_tensor tb = tw_tensor_f32_2d(L->B, L->out, m->r);
            snprintf(name, sizeof name, "base_model.model.%.*s.lora_A.weight",
                     (int)(strlen(hf) - strlen(".weight")), hf);
            rc = add_param(m, name, &ta, L->dA);
            snprintf(name, sizeof name, "base_model.model.%.*s.lora_B.weight",
                     (int)(strlen(hf) - strlen(".weight")), hf);
            if (rc || (rc = add_param(m, name, &tb, L->dB)))
                return rc;
        }
    return 0;
}

// An f32 (or qlora-dtype) copy of base's decoder weights in a model of the same configuration.
// Every decoder weight of src into the tensors of dst (a model of the same configuration),
// converted to dst's dtypes a row at a time.
static int copy_into(const struct tw_model *src, struct tw_model *dst)
{
    size_t n_slots;
    const struct tw_slot *slots = tw_slots(&n_slots);
    for (size_t i = 0; i < n_slots; i++) {
        if (!is_decoder_slot(&src->cfg, &slots[i]))
            continue;
        for (int il = 0; il < (slots[i].per_layer ? src->cfg.n_layer : 1); il++) {
            const struct tw_tensor *s = slot_at((struct tw_model *)src, &slots[i], il);
            struct tw_tensor *d = slot_at(dst, &slots[i], il);
            if (!s->data || !d->data ||
                (slots[i].kind == TW_SLOT_OUTPUT && src->cfg.tied_embeddings))
                continue;
            int64_t rows = tw_tensor_nrows(s), cols = tw_tensor_ncols(s);
            int rc = 0;
#pragma omp parallel
            {
                float *row = tw_malloc_array((size_t)cols, sizeof(float));
                if (!row) {
#pragma omp atomic write
                    rc = TW_ENOMEM;
                }
#pragma omp for schedule(static)
                for (int64_t r = 0; r < rows; r++)
                    if (row) {
                        tw_dequantize_row(s->dtype, tw_tensor_row(s, r), row, (size_t)cols);
                        tw_quantize_row(d->dtype, row, tw_tensor_row(d, r), (size_t)cols);
                    }
                tw_free(row);
            }
            if (rc)
                return tw_error_set(TW_ENOMEM, "out of memory copying the weights");
        }
    }
    return 0;
}

// A copy of base's decoder weights with matrices in dt (norms and biases f32).
static int copy_weights(const struct tw_model *base, enum tw_dtype dt, struct tw_model **out)
{
    struct tw_model *w;
    int rc = tw_model_random(&base->cfg, dt, 0, &w);
    if (!rc && (rc = copy_into(base, w)))
        tw_model_close(w);
    if (!rc)
        *out = w;
    return rc;
}

// On the CPU the passes read the host's buffers themselves.
static void host_views(tw_lm *m)
{
    m->bw = m->w, m->bmaster = m->master;
    m->bgrad = m->grad_buf, m->blora = m->lora_buf;
}

static int lm_alloc(const struct tw_model_config *c, tw_lm **out)
{
    tw_lm *m = tw_calloc(1, sizeof *m);
    if (!m)
        return tw_error_set(TW_ENOMEM, "out of memory for a trainable model");
    m->cfg = *c;
    tw_vec_init(&m->params, sizeof(struct tw_lm_param));
    tw_vec_init(&m->names, sizeof(char *));
    m->gl = tw_calloc((size_t)c->n_layer, sizeof *m->gl);
    m->lora = tw_calloc((size_t)c->n_layer * TW_PROJ_COUNT, sizeof *m->lora);
    m->lora_on = true;
    // the engine's ops get the threads the training ops get (OpenMP's team)
    if (!m->gl || !m->lora || tw_backend_cpu_new_openmp(omp_get_max_threads(), &m->be) != 0) {
        tw_lm_free(m);
        return tw_error_set(TW_ENOMEM, "out of memory for a trainable model");
    }
    m->own_be = true;
    m->go = tw_backend_grad(m->be);
    m->gm.layers = m->gl;
    m->gm.cfg = *c;
    m->bgm = &m->gm;
    *out = m;
    return 0;
}

int tw_lm_new(const struct tw_model *base, const struct tw_lm_opts *o, tw_lm **out)
{
    if (!tw_arch_is_decoder(base->cfg.arch))
        return tw_error_set(TW_EUNSUPPORTED, "%s: %s is not a decoder; twin trains decoders",
                            base->path, base->arch_name);
    if (o->lora_r < 0 || (o->lora_r > 0 && (o->lora_alpha <= 0 || o->lora_dropout < 0 ||
                                            o->lora_dropout >= 1 || !o->lora_targets)))
        return tw_error_set(TW_EINVAL,
                            "LoRA: rank %d, alpha %g, dropout %g: want rank >= 1, "
                            "alpha > 0, 0 <= dropout < 1 and at least one target",
                            o->lora_r, o->lora_alpha, o->lora_dropout);
    if (o->lora_r > 0 && o->qlora != TW_DTYPE_F32 && o->qlora != TW_DTYPE_Q8_0 &&
        o->qlora != TW_DTYPE_Q4_0 && o->qlora != TW_DTYPE_Q4_K)
        return tw_error_set(TW_EUNSUPPORTED,
                            "QLoRA: the base can be held in q8_0, q4_0 or "
                            "q4_K, not %s",
                            tw_dtype_name(o->qlora));
    tw_lm *m;
    int rc = lm_alloc(&base->cfg, &m);
    if (rc)
        return rc;
    m->seed = o->seed;
    m->opts = *o;
    if (o->lora_r == 0) { // full: an f32 copy that training updates
        rc = copy_weights(base, TW_DTYPE_F32, &m->w);
        m->own_w = rc == 0;
        if (!rc)
            rc = setup_full(m);
    } else {
        m->r = o->lora_r;
        m->scale = o->lora_alpha / (float)o->lora_r;
        m->dropout = o->lora_dropout;
        if (o->qlora != TW_DTYPE_F32) {
            rc = copy_weights(base, o->qlora, &m->w);
            m->own_w = rc == 0;
        } else {
            m->w = (struct tw_model *)base;
        }
        if (!rc)
            rc = setup_lora(m, o->lora_targets);
    }
    if (rc) {
        tw_lm_free(m);
        return rc;
    }
    host_views(m);
    *out = m;
    return 0;
}

// transformers' _init_weights for Llama-family models: normal(0, initializer_range = 0.02)
// for linear layers and embeddings, biases 0, RMSNorm weights 1.
int tw_lm_new_random(const struct tw_model_config *cfg, uint64_t seed, tw_lm **out)
{
    if (!tw_arch_is_decoder(cfg->arch))
        return tw_error_set(TW_EUNSUPPORTED, "twin pretrains decoders, not %s",
                            tw_arch_name(cfg->arch));
    tw_lm *m;
    int rc = lm_alloc(cfg, &m);
    if (rc)
        return rc;
    m->seed = seed;
    rc = tw_model_random(cfg, TW_DTYPE_F32, seed, &m->w);
    m->own_w = rc == 0;
    if (!rc)
        rc = setup_full(m);
    if (rc) {
        tw_lm_free(m);
        return rc;
    }
    m->cfg = m->w->cfg; // tw_model_random ties the output when the config has none
    host_views(m);
    for (size_t i = 0; i < m->params.len; i++) {
        struct tw_lm_param *p = tw_vec_at(&m->params, i);
        bool norm = strstr(p->name, "norm") != NULL, bias = strstr(p->name, ".bias") != NULL;
        uint64_t st = seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
        for (size_t j = 0; j < p->n; j += 2) { // Box-Muller, two normals a draw
            double u1 = uniform01(&st), u2 = uniform01(&st);
            double rad = sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-300)), th = 2 * M_PI * u2;
            p->w[j] = norm ? 1.0f : bias ? 0.0f : (float)(0.02 * rad * cos(th));
            if (j + 1 < p->n)
                p->w[j + 1] = norm ? 1.0f : bias ? 0.0f : (float)(0.02 * rad * sin(th));
        }
    }
    *out = m;
    return 0;
}

void tw_lm_free(tw_lm *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->names.len; i++)
        tw_free(*(char **)tw_vec_at(&m->names, i));
    tw_vec_free(&m->names);
    tw_vec_free(&m->params);
    if (on_device(m)) {
        tw_model_close(m->bw);
        tw_model_close(m->bmaster);
        tw_backend_release(m->be, m->bgrad);
        tw_backend_release(m->be, m->blora);
        tw_free(m->dgl);
    }
    tw_backend_release(m->be, m->act_buf);
    tw_backend_release(m->be, m->bids);
    if (m->own_w)
        tw_model_close(m->w);
    tw_model_close(m->master);
    tw_model_close(m->merged);
    tw_free(m->grad_buf);
    tw_free(m->lora_buf);
    tw_free(m->lora);
    tw_free(m->gl);
    tw_free(m->xs);
    tw_free(m->a);
    tw_free(m->negpos);
    tw_free(m->hlogp);
    if (m->own_be)
        tw_backend_free(m->be);
    tw_free(m);
}

const struct tw_model_config *tw_lm_config(const tw_lm *m)
{
    return &m->cfg;
}

size_t tw_lm_n_params(const tw_lm *m)
{
    return m->params.len;
}

const struct tw_lm_param *tw_lm_param_at(const tw_lm *m, size_t i)
{
    return i < m->params.len ? tw_vec_at(&m->params, i) : NULL;
}

const struct tw_lm_param *tw_lm_param_find(const tw_lm *m, const char *name)
{
    for (size_t i = 0; i < m->params.len; i++) {
        const struct tw_lm_param *p = tw_vec_at(&m->params, i);
        if (strcmp(p->name, name) == 0)
            return p;
    }
    return NULL;
}

int64_t tw_lm_n_trainable(const tw_lm *m)
{
    int64_t n = 0;
    for (size_t i = 0; i < m->params.len; i++)
        n += (int64_t)((const struct tw_lm_param *)tw_vec_at(&m->params, i))->n;
    return n;
}

const struct tw_lm_opts *tw_lm_options(const tw_lm *m)
{
    return &m->opts;
}

bool tw_lm_is_lora(const tw_lm *m)
{
    return m->r > 0;
}

size_t tw_lm_param_run(const tw_lm *m, size_t i, bool weights, size_t *n)
{
    const struct tw_lm_param *p = tw_vec_at(&m->params, i);
    size_t j = i + 1;
    *n = p->n;
    for (; j < m->params.len; j++) {
        const struct tw_lm_param *q = tw_vec_at(&m->params, j);
        if (q->bg != p->bg + *n || (weights && (q->bw != p->bw + *n || q->decay != p->decay)))
            break;
        *n += q->n;
    }
    return j;
}

void tw_lm_zero_grad(tw_lm *m)
{
    size_t n;
    for (size_t i = 0, j; i < m->params.len; i = j) {
        j = tw_lm_param_run(m, i, false, &n);
        m->go->zero(m->be, tw_lm_param_at(m, i)->bg, n * sizeof(float));
    }
}

void tw_lm_set_lora_enabled(tw_lm *m, bool on)
{
    m->lora_on = on;
}

int tw_lm_set_compute(tw_lm *m, enum tw_dtype dt)
{
    if (dt != TW_DTYPE_F32 && dt != TW_DTYPE_BF16)
        return tw_error_set(TW_EUNSUPPORTED, "compute dtype %s: twin trains in f32 or bf16",
                            tw_dtype_name(dt));
    if (dt == TW_DTYPE_BF16 && m->r > 0)
        return tw_error_set(TW_EINVAL, "bf16 compute is for full training: LoRA's base is "
                                       "read as stored and its adapters stay f32");
    if ((dt == TW_DTYPE_BF16) == (m->master != NULL))
        return 0;
    if (on_device(m))
        return tw_error_set(TW_EINVAL, "the compute dtype is chosen before the model moves to "
                                       "its device");
    if (dt == TW_DTYPE_F32) { // the masters become the weights again
        tw_model_close(m->w);
        m->w = m->master;
        m->master = NULL;
        host_views(m);
        return 0;
    }
    struct tw_model *shadow;
    int rc = copy_weights(m->w, TW_DTYPE_BF16, &shadow);
    if (rc)
        return rc;
    m->master = m->w;
    m->w = shadow;
    host_views(m);
    return 0;
}

int tw_lm_sync(tw_lm *m)
{
    for (int i = 0; m->fused && i < m->cfg.n_layer * TW_PROJ_COUNT; i++) {
        struct lora *L = &m->lora[i];
        if (L->in) // the adapters' bf16 copies beside the base weight
            m->go->lora_sync(m->be,
                             lt(&m->bw->layers[i / TW_PROJ_COUNT], proj_off[i % TW_PROJ_COUNT]),
                             m->r, L->bA, L->bB);
    }
    if (!m->master)
        return 0; // (the fused copies are enqueued: the next step's ops follow them in order)
    bool written = m->copies_written; // the bf16 ones, by the optimiser (the f32 ones here)
    m->copies_written = false;
    // the bf16 copy from the masters, tensor by tensor, where the passes run
    size_t n_slots;
    const struct tw_slot *slots = tw_slots(&n_slots);
    for (size_t i = 0; i < n_slots; i++) {
        if (!is_decoder_slot(&m->cfg, &slots[i]) ||
            (slots[i].kind == TW_SLOT_OUTPUT && m->cfg.tied_embeddings))
            continue;
        for (int il = 0; il < (slots[i].per_layer ? m->cfg.n_layer : 1); il++) {
            struct tw_tensor *s = slot_at(m->bmaster, &slots[i], il);
            struct tw_tensor *d = slot_at(m->bw, &slots[i], il);
            if (s->data && d->data && !(written && d->dtype == TW_DTYPE_BF16))
                m->go->convert(m->be, d->data, d->dtype, f(s), (size_t)tw_tensor_nelem(s));
        }
    }
    return tw_backend_sync(m->be);
}

// ---- the backend's copies.

// Whether LoRA can ride along the base's products on be (grad.h's lora_fwd): a device that
// has the ops, no dropout (its mask sits between), every targeted weight bf16.
static bool can_fuse(const tw_lm *m, const struct tw_backend *be)
{
    const struct tw_grad_ops *go = tw_backend_grad(be);
    if (m->r <= 0 || m->dropout > 0 || !go->lora_fwd || be->device == TW_DEVICE_CPU ||
        getenv("TWIN_LORA_UNFUSED"))
        return false;
    for (int il = 0; il < m->cfg.n_layer; il++)
        for (int p = 0; p < TW_PROJ_COUNT; p++)
            if (m->lora[il * TW_PROJ_COUNT + p].in &&
                lt(&m->w->layers[il], proj_off[p])->dtype != TW_DTYPE_BF16)
                return false;
    return true;
}

// m->w on be with each targeted weight W (out, in) in a block of (out + r) rows of in + r
// bf16 values, W at its top left (A's and B's places filled by tw_lm_sync).
static int upload_fused(tw_lm *m, struct tw_backend *be, struct tw_model **out)
{
    struct tw_model shallow = *m->w; // the targeted weights left out of the plain upload
    struct tw_layer *ls = tw_malloc_array((size_t)m->cfg.n_layer, sizeof *ls);
    if (!ls)
        return tw_error_set(TW_ENOMEM, "out of memory");
    memcpy(ls, m->w->layers, (size_t)m->cfg.n_layer * sizeof *ls);
    shallow.layers = ls;
    for (int il = 0; il < m->cfg.n_layer; il++)
        for (int p = 0; p < TW_PROJ_COUNT; p++)
            if (m->lora[il * TW_PROJ_COUNT + p].in)
                lt(&ls[il], proj_off[p])->data = NULL;
    int rc = tw_model_to_backend(&shallow, be, out);
    tw_free(ls);
    int64_t r = m->r;
    for (int il = 0; il < m->cfg.n_layer && !rc; il++)
        for (int p = 0; p < TW_PROJ_COUNT && !rc; p++) {
            if (!m->lora[il * TW_PROJ_COUNT + p].in)
                continue;
            const struct tw_tensor *h = lt(&m->w->layers[il], proj_off[p]);
            struct tw_tensor *d = lt(&(*out)->layers[il], proj_off[p]);
            int64_t rows = h->ne[0], cols = h->ne[1], ld = cols + r;
            size_t bytes = (size_t)((rows + r) * ld) * 2;
            uint16_t *host = tw_calloc(bytes, 1);
            void *dev = host ? tw_backend_alloc(be, bytes) : NULL;
            if (!dev) {
                tw_free(host);
                rc = host ? TW_ENOMEM : tw_error_set(TW_ENOMEM, "out of memory");
                break;
            }
            for (int64_t i = 0; i < rows; i++)
                memcpy(host + i * ld, tw_tensor_row(h, i), (size_t)cols * 2);
            rc = tw_backend_upload(be, dev, host, bytes);
            tw_free(host);
            *d = *h;
            d->data = dev, d->device = be->device, d->nb[0] = (size_t)ld * 2;
        }
    if (rc && *out) {
        tw_model_close(*out);
        *out = NULL;
    }
    return rc;
}

// p, a pointer into the host buffer `host`, moved to the same offset of `dev`.
static float *rebase(float *p, const float *host, float *dev)
{
    return p ? dev + (p - host) : NULL;
}

// The device tensor at the slot where the host model h has data `p` (NULL: none).
static struct tw_tensor *device_slot(tw_lm *m, struct tw_model *h, struct tw_model *d,
                                     const float *p)
{
    size_t n_slots;
    const struct tw_slot *slots = tw_slots(&n_slots);
    for (size_t i = 0; i < n_slots; i++)
        for (int il = 0; il < (slots[i].per_layer ? m->cfg.n_layer : 1); il++)
            if (slot_at(h, &slots[i], il)->data == p)
                return slot_at(d, &slots[i], il);
    return NULL;
}

static float *device_twin(tw_lm *m, struct tw_model *h, struct tw_model *d, const float *p)
{
    struct tw_tensor *t = device_slot(m, h, d, p);
    return t ? f(t) : NULL;
}

int tw_lm_use_backend(tw_lm *m, struct tw_backend *be)
{
    if (be->device == TW_DEVICE_CPU || on_device(m))
        return 0;
    tw_backend_release(m->be, m->act_buf);
    tw_backend_release(m->be, m->bids);
    m->act_buf = NULL, m->bids = NULL, m->n_alloc = 0;
    const struct tw_grad_ops *go = tw_backend_grad(be);
    struct tw_model *bw = NULL, *bmaster = NULL;
    float *bgrad = NULL, *blora = NULL;
    struct tw_layer *dgl = tw_calloc((size_t)m->cfg.n_layer, sizeof *dgl);
    int rc = dgl ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    bool fused = can_fuse(m, be);
    if (!rc)
        rc = fused ? upload_fused(m, be, &bw) : tw_model_to_backend(m->w, be, &bw);
    if (!rc && m->master)
        rc = tw_model_to_backend(m->master, be, &bmaster);
    size_t ng = m->n_grad ? m->n_grad : 1, nl = m->n_lora ? m->n_lora : 1;
    if (!rc && m->grad_buf && !(bgrad = tw_backend_alloc(be, ng * sizeof(float))))
        rc = TW_ENOMEM;
    if (!rc && m->lora_buf && !(blora = tw_backend_alloc(be, nl * sizeof(float))))
        rc = TW_ENOMEM;
    if (!rc && bgrad)
        go->zero(be, bgrad, ng * sizeof(float));
    if (!rc && blora)
        rc = tw_backend_upload(be, blora, m->lora_buf, nl * sizeof(float));
    if (!rc)
        rc = tw_backend_sync(be);
    if (rc) {
        tw_model_close(bw), tw_model_close(bmaster);
        tw_backend_release(be, bgrad), tw_backend_release(be, blora);
        tw_free(dgl);
        return tw_error_prefix("moving the model to %s", be->ops->name);
    }
    m->bw = bw, m->bmaster = bmaster, m->bgrad = bgrad, m->blora = blora, m->dgl = dgl;
    // the gradient tensors at the same offsets of bgrad
    m->dgm = m->gm;
    m->dgm.layers = dgl;
    size_t n_slots;
    const struct tw_slot *slots = tw_slots(&n_slots);
    for (size_t i = 0; i < n_slots; i++)
        for (int il = 0; il < (slots[i].per_layer ? m->cfg.n_layer : 1); il++) {
            struct tw_tensor *h = slot_at(&m->gm, &slots[i], il);
            struct tw_tensor *d = slot_at(&m->dgm, &slots[i], il);
            *d = *h;
            d->data = h->data ? rebase(f(h), m->grad_buf, bgrad) : NULL;
        }
    m->bgm = &m->dgm;
    for (int i = 0; i < m->cfg.n_layer * TW_PROJ_COUNT; i++) {
        struct lora *L = &m->lora[i];
        L->bA = rebase(L->A, m->lora_buf, blora), L->bB = rebase(L->B, m->lora_buf, blora);
        L->bdA = rebase(L->dA, m->lora_buf, blora), L->bdB = rebase(L->dB, m->lora_buf, blora);
    }
    for (size_t i = 0; i < m->params.len; i++) {
        struct tw_lm_param *p = tw_vec_at(&m->params, i);
        if (m->r > 0) {
            p->bw = rebase(p->w, m->lora_buf, blora);
            p->bg = rebase(p->g, m->lora_buf, blora);
        } else {
            p->bw = device_twin(m, weights(m), bmaster ? bmaster : bw, p->w);
            p->bg = rebase(p->g, m->grad_buf, bgrad);
            struct tw_tensor *c = bmaster ? device_slot(m, weights(m), bw, p->w) : NULL;
            p->bwb = c && c->dtype == TW_DTYPE_BF16 ? c->data : NULL; // (norms stay f32)
        }
    }
    if (m->own_be)
        tw_backend_free(m->be);
    m->be = be, m->own_be = false, m->go = go, m->fused = fused;
    if (fused && !(rc = tw_lm_sync(m))) // the adapters' bf16 copies, checked once here
        rc = tw_backend_sync(be);
    return rc;
}

struct tw_backend *tw_lm_backend(const tw_lm *m)
{
    return m->be;
}

int tw_lm_pull(tw_lm *m, bool grads)
{
    int rc = 0;
    for (size_t i = 0; i < m->params.len && on_device(m) && !rc; i++) {
        struct tw_lm_param *p = tw_vec_at(&m->params, i);
        rc = tw_backend_download(m->be, p->w, p->bw, p->n * sizeof(float));
        if (!rc && grads)
            rc = tw_backend_download(m->be, p->g, p->bg, p->n * sizeof(float));
    }
    return rc;
}

void tw_lm_copies_written(tw_lm *m)
{
    m->copies_written = m->master != NULL && on_device(m);
}

int tw_lm_push(tw_lm *m)
{
    int rc = 0;
    m->copies_written = false;
    for (size_t i = 0; i < m->params.len && on_device(m) && !rc; i++) {
        struct tw_lm_param *p = tw_vec_at(&m->params, i);
        rc = tw_backend_upload(m->be, p->bw, p->w, p->n * sizeof(float));
    }
    return rc ? rc : tw_lm_sync(m);
}

void tw_lm_set_recompute(tw_lm *m, bool on)
{
    if (on != m->recompute) {
        m->recompute = on;
        m->n_alloc = 0; // the next batch allocates for the new plan
    }
}

void tw_lm_set_step(tw_lm *m, int64_t step)
{
    m->step = step;
}

// ---- activations.

// Whether bf16 arithmetic is good enough: the weights the passes read are bf16 or quantised
// (a device then multiplies attention and the adapters in TF32 or bf16).
static bool lowp(const tw_lm *m)
{
    return m->bw->layers[0].wq.dtype != TW_DTYPE_F32;
}

// Whether the passes hand bf16 copies from op to op (grad.h's hand-offs): full training of a
// lowp model on a device that has them, unless TWIN_TRAIN_ACTS=f32 asks for f32 activations
// that each product rounds (the comparison for tests and benchmarks).
static bool handoffs(const tw_lm *m)
{
    const char *e = getenv("TWIN_TRAIN_ACTS");
    return m->r == 0 && m->be->device != TW_DEVICE_CPU && m->go->linear_fwd_bf16 && lowp(m) &&
           !(e && strcmp(e, "f32") == 0);
}

static const float *bias_of(struct tw_layer *L, int p);

// Projections p0 .. p0 + n - 1 of layer il as one stacked matrix (rows of each after the
// other, the same inputs): *w a view of it and *dw the start of their gradients, when their
// bf16 weights lie one after another (tw_model_to_backend's layer blocks) and so do their
// gradients (setup_full's order), with no bias. Else false.
static bool stacked(tw_lm *m, int il, int p0, int n, struct tw_tensor *w, float **dw)
{
    struct tw_layer *L = &m->bw->layers[il], *G = &m->bgm->layers[il];
    const struct tw_tensor *w0 = lt(L, proj_off[p0]), *g0 = lt(G, proj_off[p0]);
    if (w0->dtype != TW_DTYPE_BF16 || !w0->data || !g0->data || w0->ndim != 2)
        return false;
    int64_t K = w0->ne[1], rows = 0; // the rows of the projections before p
    for (int p = p0; p < p0 + n; p++) {
        const struct tw_tensor *wp = lt(L, proj_off[p]), *gp = lt(G, proj_off[p]);
        if (bias_of(L, p) || wp->dtype != w0->dtype || wp->ne[1] != K ||
            !tw_tensor_is_contiguous(wp) || !gp->data ||
            (char *)wp->data != (char *)w0->data + rows * K * 2 || f(gp) != f(g0) + rows * K)
            return false;
        rows += wp->ne[0];
    }
    *w = *w0, w->ne[0] = rows;
    *dw = f(g0);
    return true;
}

// Whether every layer's projections p0 .. p0 + n - 1 are stacked() (TWIN_TRAIN_STACK=0: never,
// for comparisons).
static bool all_stacked(tw_lm *m, int p0, int n)
{
    const char *e = getenv("TWIN_TRAIN_STACK");
    struct tw_tensor w;
    float *dw;
    if (e && strcmp(e, "0") == 0)
        return false;
    for (int il = 0; il < m->cfg.n_layer; il++)
        if (!stacked(m, il, p0, n, &w, &dw))
            return false;
    return true;
}

// Floats that hold n bf16 values at a 32-byte boundary (TAKE_H below).
static int64_t halves(int64_t n)
{
    return (n + 1) / 2 + 8;
}

static int ensure_acts(tw_lm *m, int64_t N)
{
    bool hb = handoffs(m);
    if (N <= m->n_alloc && hb == m->acts_bf16)
        return 0;
    const struct tw_model_config *c = &m->cfg;
    // (attn_keeps asks about the head size and the precision)
    struct tw_attn_shape sh = {
        .B = 1, .T = 1, .H = c->n_head, .Hkv = c->n_head_kv, .D = c->head_dim, .lowp = lowp(m)
    };
    bool kq = hb && m->go->attn_keeps && m->go->attn_keeps(m->be, &sh);
    bool sq = hb && !c->qk_norm && all_stacked(m, TW_PROJ_Q, 3);
    bool sg = hb && all_stacked(m, TW_PROJ_GATE, 2);
    int64_t C = c->n_embd, HD = (int64_t)c->n_head * c->head_dim;
    int64_t KV = (int64_t)c->n_head_kv * c->head_dim, F = c->n_ff, L = c->n_layer;
    int64_t W = C > F ? C : F;
    W = W > HD ? W : HD;
    int64_t per_layer = 3 * N * C + 2 * N + 2 * N * HD + 2 * N * KV + N * HD + N * c->n_head +
                        3 * N * F + (int64_t)TW_PROJ_COUNT * N * m->r;
    if (c->qk_norm)
        per_layer += N * HD + N * KV + N * c->n_head + N * c->n_head_kv;
    if (hb) // xn1, xn2, h, g, u as bf16 only; q, k, v kept as bf16 too
        per_layer += 2 * halves(N * C) + halves(N * HD) + 3 * halves(N * F) +
                     halves(N * (HD + 2 * KV)) - 2 * N * C - 3 * N * F;
    if (kq) // no f32 v, nor q and k but for q/k norms, nor the attention's f32 output
        per_layer -= N * KV + N * HD + (c->qk_norm ? 0 : N * (HD + KV));
    int64_t LA = m->recompute ? 1 : L; // layers whose activations are kept
    // (with hand-offs no f32 dh, dg, du: SwiGLU's backward works on their bf16 copies; no
    // scratch row either: it serves LoRA, which hand-offs exclude)
    int64_t total =
        (L + 1) * N * C + LA * per_layer + N * C + N + 2 * N * C + 4 * N * HD + 4 * N * KV +
        N * m->r + 2 * N +
        (hb ? 3 * halves(N * F) + 2 * halves(N * C) + halves(N * HD) + 2 * halves(N * KV)
            : 3 * N * F + N * W);
    total += 4 * (L + 1 + 32 * LA + 32); // (TAKE's alignment: up to 3 floats a tensor)
    tw_backend_release(m->be, m->act_buf), tw_backend_release(m->be, m->bids);
    tw_free(m->xs), tw_free(m->a), tw_free(m->negpos), tw_free(m->hlogp);
    m->act_buf = NULL, m->bids = NULL, m->xs = NULL, m->a = NULL, m->negpos = NULL;
    m->hlogp = NULL, m->n_alloc = 0;
    float *buf = tw_backend_alloc(m->be, (size_t)total * sizeof(float));
    int32_t *bids = tw_backend_alloc(m->be, (size_t)(3 * N) * sizeof(int32_t));
    float **xs = tw_malloc_array((size_t)L + 1, sizeof *xs);
    struct acts *a = tw_calloc((size_t)LA, sizeof *a);
    int32_t *negpos = tw_malloc_array((size_t)N, sizeof(int32_t));
    float *hlogp = tw_malloc_array((size_t)(2 * N), sizeof(float));
    if (!buf || !bids || !xs || !a || !negpos || !hlogp) {
        tw_backend_release(m->be, buf), tw_backend_release(m->be, bids);
        tw_free(xs), tw_free(a), tw_free(negpos), tw_free(hlogp);
        return tw_error_set(TW_ENOMEM,
                            "out of memory for the activations of %lld tokens "
                            "(%lld MiB)",
                            (long long)N, (long long)(total * 4 >> 20));
    }
    m->act_buf = buf, m->xs = xs, m->a = a, m->negpos = negpos, m->n_alloc = N;
    m->acts_bf16 = hb, m->qkv_kept = kq, m->stack_qkv = sq, m->stack_gu = sg;
    m->gu_ld = sg ? 2 * F : F;
    m->bids = bids, m->btargets = bids + N, m->bstart = bids + 2 * N;
    m->hlogp = hlogp, m->hcoef = hlogp + N;
    float *p = buf;
    // every tensor from a 16-byte boundary: the device's kernels take 16-byte pieces where
    // their arrays allow (and so the same kernels, the same bits, with recompute's layout)
#define TAKE(n) (p = buf + (p - buf + 3) / 4 * 4, p += (n), p - (n))
    // n bf16 values from a 32-byte boundary (buf's is the allocator's)
#define TAKE_H(n) (p = buf + (p - buf + 7) / 8 * 8, (void *)TAKE(halves(n) - 8))
    for (int64_t l = 0; l <= L; l++)
        xs[l] = TAKE(N * C);
    for (int64_t l = 0; l < LA; l++) {
        struct acts *t = &a[l];
        t->x_mid = TAKE(N * C), t->rstd1 = TAKE(N), t->rstd2 = TAKE(N);
        t->att = kq ? NULL : TAKE(N * HD); // (kq: the attention writes attb alone)
        t->q = t->k = t->v = NULL;
        if (!kq || c->qk_norm)
            t->q = TAKE(N * HD), t->k = TAKE(N * KV);
        if (!kq)
            t->v = TAKE(N * KV);
        t->lse = TAKE(N * c->n_head);
        if (hb) {
            t->xn1b = TAKE_H(N * C), t->xn2b = TAKE_H(N * C), t->attb = TAKE_H(N * HD);
            t->hb = TAKE_H(N * F), t->qkvb = TAKE_H(N * (HD + 2 * KV));
            t->gb = TAKE_H(N * F * (sg ? 2 : 1)), t->ub = (uint16_t *)t->gb + F;
            if (!sg)
                t->ub = TAKE_H(N * F);
        } else {
            t->xn1 = TAKE(N * C), t->xn2 = TAKE(N * C), t->h = TAKE(N * F);
            t->g = TAKE(N * F), t->u = TAKE(N * F);
        }
        for (int q = 0; q < TW_PROJ_COUNT; q++)
            t->xa[q] = TAKE(N * m->r);
        if (c->qk_norm) {
            t->q_pre = TAKE(N * HD), t->k_pre = TAKE(N * KV);
            t->q_rstd = TAKE(N * c->n_head), t->k_rstd = TAKE(N * c->n_head_kv);
        }
    }
    m->xf = TAKE(N * C), m->rstdf = TAKE(N);
    m->dx = TAKE(N * C), m->dxn = TAKE(N * C);
    m->dh = m->dg = m->du = m->tmp = NULL;
    if (!hb)
        m->dh = TAKE(N * F), m->dg = TAKE(N * F), m->du = TAKE(N * F), m->tmp = TAKE(N * W);
    m->datt = TAKE(N * HD), m->dq = TAKE(N * HD), m->dqp = TAKE(N * HD);
    m->dk = TAKE(N * KV), m->dv = TAKE(N * KV), m->dkp = TAKE(N * KV);
    m->dxa = TAKE(N * m->r);
    m->logp = TAKE(N), m->coef = TAKE(N);
    m->dgb = m->dub = m->dhb = m->dxb = m->dqb = m->dkb = m->dvb = m->ob = NULL;
    m->qkv_ld = 0;
    if (hb) {
        m->dgb = TAKE_H(N * F * (sg ? 2 : 1)), m->dub = (uint16_t *)m->dgb + F;
        if (!sg)
            m->dub = TAKE_H(N * F);
        m->dhb = TAKE_H(N * F), m->dxb = TAKE_H(N * C);
        if (m->go->add_bf16)
            m->ob = TAKE_H(N * C);
        if (sq) { // q's, k's and v's side by side in a row
            m->qkv_ld = HD + 2 * KV;
            m->dqb = TAKE_H(N * m->qkv_ld);
            m->dkb = (uint16_t *)m->dqb + HD, m->dvb = (uint16_t *)m->dkb + KV;
        } else {
            m->dqb = TAKE_H(N * HD), m->dkb = TAKE_H(N * KV);
        }
    }
#undef TAKE_H
#undef TAKE
    return 0;
}

// Layer il's activations.
static struct acts *acts_of(tw_lm *m, int il)
{
    return &m->a[m->recompute ? 0 : il];
}

// ---- linear layers with their adapters.

static struct lora *lora_at(tw_lm *m, int il, int p)
{
    struct lora *L = &m->lora[il * TW_PROJ_COUNT + p];
    return m->r > 0 && m->lora_on && L->in ? L : NULL;
}

// PEFT's dropout on an adapter's input, as a mask from a hash of (seed, step, layer,
// projection, element) so that the backward regenerates it: y = mask * x / (1 - p), or
// y += that when add (the backward's dx).
static void drop_mask(const tw_lm *m, int il, int p, float *y, const float *x, int64_t n, bool add)
{
    uint64_t key = m->seed ^ ((uint64_t)m->step * 0x9E3779B97F4A7C15ull) ^
                   ((uint64_t)(il * TW_PROJ_COUNT + p + 1) << 40);
    m->go->dropout(m->be, y, x, n, m->dropout, key, add);
}

// The adapter's input drop(x) (N, in): in m->tmp with dropout, else x itself.
static const float *dropped(tw_lm *m, int il, int p, const float *x, int64_t N, int64_t in)
{
    if (m->dropout <= 0)
        return x;
    drop_mask(m, il, p, m->tmp, x, N * in, false);
    return m->tmp;
}

static const float *bias_of(struct tw_layer *L, int p)
{
    return bias_off[p] && lt(L, bias_off[p])->data ? f(lt(L, bias_off[p])) : NULL;
}

// Fused LoRA: x (N, in) rounded to bf16 in m->tmp, rows in + r apart (grad.h's lora_fwd
// input), unless this group of projections of one input already rounded it (m->xc_of, which
// start_group clears). m->tmp is free: fused means no dropout.
static void *lora_input(tw_lm *m, const float *x, int64_t N, int64_t in)
{
    if (m->xc_of != x) {
        m->go->round_bf16(m->be, m->tmp, in + m->r, x, N, in);
        m->xc_of = x;
    }
    return m->tmp;
}

// same_x false: a projection of a new input (q; gate; o; down), whose rounding (lora_input)
// the projections of the same input after it (k, v; up) share. The rounding kept from an
// earlier group is stale even where x is the same buffer (the next layer's or step's values).
static void start_group(tw_lm *m, bool same_x)
{
    if (!same_x)
        m->xc_of = NULL;
}

// y (N, out) = x W^T + b + scale (drop(x) A^T) B^T, x given as f32 or, with hand-offs (no
// adapters), as its bf16 copy xb, and then y as f32 or (y NULL) as bf16 in yb. same_x: see
// start_group.
static int lin_fwd(tw_lm *m, int il, int p, float *y, void *yb, const float *x, const void *xb,
                   int64_t N, bool same_x)
{
    struct tw_layer *L = &m->bw->layers[il];
    struct lora *a = lora_at(m, il, p);
    if (xb)
        return m->go->linear_fwd_bf16(m->be, y, yb, xb, lt(L, proj_off[p]), bias_of(L, p), N);
    start_group(m, same_x);
    if (a && m->fused) // s drop(x) A^T kept in bf16 where xa's floats are
        return m->go->lora_fwd(m->be, y, lora_input(m, x, N, a->in), lt(L, proj_off[p]),
                               bias_of(L, p), m->r, m->scale, acts_of(m, il)->xa[p], N);
    int rc = m->go->linear_fwd(m->be, y, x, lt(L, proj_off[p]), bias_of(L, p), N);
    if (rc || !a)
        return rc;
    float *xa = acts_of(m, il)->xa[p];
    const float *xd = dropped(m, il, p, x, N, a->in);
    m->go->gemm(m->be, lowp(m), false, true, N, m->r, a->in, 1.0f, xd, a->in, a->bA, a->in, 0.0f,
                xa, m->r);
    m->go->gemm(m->be, lowp(m), false, true, N, a->out, m->r, m->scale, xa, m->r, a->bB, m->r,
                1.0f, y, a->out);
    return 0;
}

// dx += dy W (+ the adapter's path), or with add false dx = that; the gradients of whatever is
// trainable. With hand-offs x comes as its bf16 copy xb and dy may come as one (dyb; dy then
// only for a bias), and dx may go as bf16 to dxb (dx NULL, add false). same_x: see start_group.
static int lin_bwd(tw_lm *m, int il, int p, float *dx, void *dxb, bool add, const float *dy,
                   const void *dyb, const float *x, const void *xb, int64_t N, bool same_x)
{
    struct tw_layer *L = &m->bw->layers[il], *G = &m->bgm->layers[il];
    struct tw_tensor *gw = lt(G, proj_off[p]);
    float *gb = bias_off[p] && lt(G, bias_off[p])->data ? f(lt(G, bias_off[p])) : NULL;
    struct lora *a = lora_at(m, il, p);
    if (xb)
        return m->go->linear_bwd_bf16(m->be, dx, dxb, add, gw->data ? f(gw) : NULL, gb, dy, dyb,
                                      xb, lt(L, proj_off[p]), N);
    start_group(m, same_x);
    if (a && m->fused)
        return m->go->lora_bwd(m->be, dx, add, a->bdA, a->bdB, gb, dy, lora_input(m, x, N, a->in),
                               acts_of(m, il)->xa[p], lt(L, proj_off[p]), m->r, m->scale, N);
    int rc = m->go->linear_bwd(m->be, dx, add, gw->data ? f(gw) : NULL, gb, dy, x,
                               lt(L, proj_off[p]), N);
    if (rc || !a)
        return rc;
    int64_t r = m->r, in = a->in, out = a->out;
    const float *xa = acts_of(m, il)->xa[p];
    // dB += scale dy^T xa; dxa = scale dy B; dA += dxa^T drop(x); dx += drop'(dxa A)
    m->go->gemm(m->be, lowp(m), true, false, out, r, N, m->scale, dy, out, xa, r, 1.0f, a->bdB, r);
    m->go->gemm(m->be, lowp(m), false, false, N, r, out, m->scale, dy, out, a->bB, r, 0.0f, m->dxa,
                r);
    const float *xd = dropped(m, il, p, x, N, in);
    m->go->gemm(m->be, lowp(m), true, false, r, in, N, 1.0f, m->dxa, r, xd, in, 1.0f, a->bdA, in);
    if (m->dropout <= 0) {
        m->go->gemm(m->be, lowp(m), false, false, N, in, r, 1.0f, m->dxa, r, a->bA, in, 1.0f, dx,
                    in);
        return 0;
    }
    // dx += mask (dxa A) / (1 - p): m->tmp held drop(x) for dA and is free again
    m->go->gemm(m->be, lowp(m), false, false, N, in, r, 1.0f, m->dxa, r, a->bA, in, 0.0f, m->tmp,
                in);
    drop_mask(m, il, p, dx, m->tmp, N * in, true);
    return 0;
}

// ---- the forward and backward passes.

static struct tw_attn_shape attn_shape(const tw_lm *m, const struct tw_lm_batch *b)
{
    const struct tw_model_config *c = &m->cfg;
    return (struct tw_attn_shape){ .B = b->B,
                                   .T = b->T,
                                   .H = c->n_head,
                                   .Hkv = c->n_head_kv,
                                   .D = c->head_dim,
                                   .scale = 1.0f / sqrtf((float)c->head_dim),
                                   .window = c->sliding_window,
                                   .lowp = lowp(m) };
}

// RoPE on x (N, heads, head_dim) at positions pos, through the engine's op; with xb (hand-offs)
// through rope_bf16, into xb as bf16 (rows ld apart, 0: dense) and, with keep, in place too;
// with x NULL, xb in place.
static void rope(tw_lm *m, float *x, void *xb, int64_t ld, bool keep, const int32_t *pos,
                 int64_t N, int64_t heads)
{
    const struct tw_model_config *c = &m->cfg;
    struct tw_tensor t = tw_tensor_f32_3d(x, N, heads, c->head_dim);
    struct tw_rope r = { .head_dim = c->head_dim,
                         .n_rot = c->head_dim,
                         .neox = c->rope_neox,
                         .inv_freq = m->w->rope_inv_freq };
    if (xb)
        m->go->rope_bf16(m->be, xb, ld, x, keep, pos, N, heads, &r);
    else
        tw_rope(m->be, &t, pos, &r);
}

// y = a + b over (N, C).
static void add(tw_lm *m, float *y, const float *a, const float *b, int64_t N, int64_t C)
{
    struct tw_tensor ty = tw_tensor_f32_2d(y, N, C);
    struct tw_tensor ta = tw_tensor_f32_2d((float *)a, N, C);
    struct tw_tensor tb = tw_tensor_f32_2d((float *)b, N, C);
    tw_add(m->be, &ty, &ta, &tb);
}

static int check_batch(const tw_lm *m, const struct tw_lm_batch *b)
{
    int64_t N = (int64_t)b->B * b->T;
    if (b->B <= 0 || b->T <= 0)
        return tw_error_set(TW_EINVAL, "batch: %d rows of %d tokens", b->B, b->T);
    for (int64_t n = 0; n < N; n++) {
        int64_t t = n % b->T;
        if (b->ids[n] < 0 || b->ids[n] >= m->cfg.n_vocab || b->targets[n] >= m->cfg.n_vocab ||
            b->start[n] < 0 || b->start[n] > t || b->pos[n] < 0)
            return tw_error_set(TW_EINVAL,
                                "batch: token %lld (row %lld, column %lld): id %d, target %d, "
                                "start %d, position %d out of range (vocabulary %d)",
                                (long long)n, (long long)(n / b->T), (long long)t, b->ids[n],
                                b->targets[n], b->start[n], b->pos[n], m->cfg.n_vocab);
    }
    return 0;
}

// y = RMSNorm(x) of a residual stream (N rows of the model's width), or with hand-offs
// (m->acts_bf16) its bf16 copy yb alone.
static void norm_fwd(tw_lm *m, float *y, void *yb, float *rstd, const float *x, const float *w,
                     int64_t N)
{
    int64_t C = m->cfg.n_embd;
    if (m->acts_bf16)
        m->go->rmsnorm_fwd_bf16(m->be, yb, rstd, x, w, N, C, m->cfg.norm_eps);
    else
        m->go->rmsnorm_fwd(m->be, y, rstd, x, w, N, C, m->cfg.norm_eps);
}

// y = x + the product just written (N rows of the model's width): its bf16 output m->ob (the
// hand-offs: PyTorch's autocast keeps the o and down projections' outputs in bf16 and adds
// them to the f32 stream), else its f32 output m->dxn.
static void add_product(tw_lm *m, float *y, const float *x, int64_t N)
{
    if (m->ob)
        m->go->add_bf16(m->be, y, x, m->ob, N * m->cfg.n_embd);
    else
        add(m, y, x, m->dxn, N, m->cfg.n_embd);
}

// With hand-offs (m->acts_bf16: ensure_acts laid them out) the norms, the attention's output
// and SwiGLU hand the products bf16 copies, kept for the backward's dW, and the attention
// keeps its bf16 q, k, v; else f32 activations that the backend rounds where it needs to.
static int layer_fwd(tw_lm *m, int il, const struct tw_lm_batch *b)
{
    const struct tw_model_config *c = &m->cfg;
    struct tw_layer *L = &m->bw->layers[il];
    struct acts *a = acts_of(m, il);
    const struct tw_grad_ops *go = m->go;
    int64_t N = (int64_t)b->B * b->T, H = c->n_head, Hkv = c->n_head_kv;
    int64_t D = c->head_dim, F = c->n_ff;
    const float *x = m->xs[il];
    float *y = m->xs[il + 1];
    struct tw_attn_shape as = attn_shape(m, b);
    bool hb = m->acts_bf16;
    as.keep = a->qkvb;
    // with hand-offs q's, k's and v's bf16 copies go to the attention's keep; where the
    // attention multiplies those alone (attn_keeps), v's product writes its copy there, and so
    // do q's and k's unless q/k norms read them in f32 first (RoPE then rotates them in place)
    uint16_t *qb = hb ? (uint16_t *)a->qkvb : NULL, *kb = hb ? qb + N * H * D : NULL;
    uint16_t *vb = hb ? kb + N * Hkv * D : NULL;
    bool direct = m->qkv_kept;
    bool qk16 = direct && !c->qk_norm;
    float *q = qk16 ? NULL : a->q, *k = qk16 ? NULL : a->k, *v = direct ? NULL : a->v;
    norm_fwd(m, a->xn1, a->xn1b, a->rstd1, x, f(&L->attn_norm), N);
    int rc = lin_fwd(m, il, TW_PROJ_Q, q, qk16 ? qb : NULL, a->xn1, a->xn1b, N, false);
    if (!rc)
        rc = lin_fwd(m, il, TW_PROJ_K, k, qk16 ? kb : NULL, a->xn1, a->xn1b, N, true);
    if (!rc)
        rc = lin_fwd(m, il, TW_PROJ_V, v, direct ? vb : NULL, a->xn1, a->xn1b, N, true);
    if (rc)
        return rc;
    if (c->qk_norm) {
        tw_backend_copy(m->be, a->q_pre, a->q, (size_t)(N * H * D) * sizeof(float));
        tw_backend_copy(m->be, a->k_pre, a->k, (size_t)(N * Hkv * D) * sizeof(float));
        go->rmsnorm_fwd(m->be, a->q, a->q_rstd, a->q_pre, f(&L->q_norm), N * H, D, c->norm_eps);
        go->rmsnorm_fwd(m->be, a->k, a->k_rstd, a->k_pre, f(&L->k_norm), N * Hkv, D, c->norm_eps);
    }
    // (the rotated f32 q and k kept for an attention that reads them)
    rope(m, q, qb, 0, !direct, b->pos, N, H);
    rope(m, k, kb, 0, !direct, b->pos, N, Hkv);
    as.kept_qk = hb, as.kept_v = direct;
    // the output straight to the o product's bf16 input where the fused kernels run, else
    // rounded there once for its forward and its dW
    as.out_b = direct ? a->attb : NULL;
    go->attn_fwd(m->be, a->att, a->lse, q, k, v, m->bstart, &as);
    if (hb && !direct)
        go->round_bf16(m->be, a->attb, H * D, a->att, N, H * D);
    if ((rc = lin_fwd(m, il, TW_PROJ_O, m->ob ? NULL : m->dxn, m->ob, a->att, a->attb, N, false)))
        return rc;
    add_product(m, a->x_mid, x, N);
    norm_fwd(m, a->xn2, a->xn2b, a->rstd2, a->x_mid, f(&L->ffn_norm), N);
    struct tw_tensor ws;
    float *dws;
    if (m->stack_gu && stacked(m, il, TW_PROJ_GATE, 2, &ws, &dws))
        rc = go->linear_fwd_bf16(m->be, NULL, a->gb, a->xn2b, &ws, NULL, N); // g | u a row
    else if (!(rc = lin_fwd(m, il, TW_PROJ_GATE, a->g, a->gb, a->xn2, a->xn2b, N, false)))
        rc = lin_fwd(m, il, TW_PROJ_UP, a->u, a->ub, a->xn2, a->xn2b, N, true);
    if (rc)
        return rc;
    if (hb) {
        go->swiglu_bf16(m->be, a->hb, a->gb, a->ub, N, F, m->gu_ld);
    } else {
        struct tw_tensor th = tw_tensor_f32_2d(a->h, N, F), tg = tw_tensor_f32_2d(a->g, N, F);
        struct tw_tensor tu = tw_tensor_f32_2d(a->u, N, F);
        tw_swiglu(m->be, &th, &tg, &tu);
    }
    if ((rc = lin_fwd(m, il, TW_PROJ_DOWN, m->ob ? NULL : m->dxn, m->ob, a->h, a->hb, N, false)))
        return rc;
    add_product(m, y, a->x_mid, N);
    return 0;
}

// dx += RMSNorm's backward (rows of C) of dy (a residual stream's norm); with hand-offs (dxb)
// also m->dxb = dx rounded, the dy of the products that read the stream next (o; down).
static void norm_bwd(tw_lm *m, float *dx, float *dw, const float *dy, const float *x,
                     const float *w, const float *rstd, int64_t N, int64_t C)
{
    if (m->acts_bf16)
        m->go->rmsnorm_bwd_bf16(m->be, dx, m->dxb, dw, dy, x, w, rstd, N, C);
    else
        m->go->rmsnorm_bwd(m->be, dx, dw, dy, x, w, rstd, N, C);
}

// m->dx holds the gradient of the layer's output (and with hand-offs m->dxb its bf16 copy); on
// return, of its input.
static int layer_bwd(tw_lm *m, int il, const struct tw_lm_batch *b)
{
    const struct tw_model_config *c = &m->cfg;
    struct tw_layer *L = &m->bw->layers[il], *G = &m->bgm->layers[il];
    struct acts *a = acts_of(m, il);
    const struct tw_grad_ops *go = m->go;
    struct tw_backend *be = m->be;
    int64_t N = (int64_t)b->B * b->T, C = c->n_embd, H = c->n_head, Hkv = c->n_head_kv;
    int64_t D = c->head_dim, F = c->n_ff;
    struct tw_attn_shape as = attn_shape(m, b);
    bool hb = m->acts_bf16;
    as.keep = a->qkvb;
    size_t nQ = (size_t)(N * H * D) * sizeof(float), nK = (size_t)(N * Hkv * D) * sizeof(float);
    // the MLP: y = x_mid + down(silu(gate(xn2)) * up(xn2)); each gradient buffer's first
    // writer writes it (no zeroing passes); with hand-offs SwiGLU's backward writes dg and du
    // as the bf16 copies their products read
    int rc =
        lin_bwd(m, il, TW_PROJ_DOWN, m->dh, m->dhb, false, m->dx, m->dxb, a->h, a->hb, N, false);
    if (rc)
        return rc;
    if (hb)
        go->swiglu_bwd_bf16(be, m->dgb, m->dub, m->dhb, a->gb, a->ub, N, F, m->gu_ld);
    else
        go->swiglu_bwd(be, m->dg, m->du, m->dh, a->g, a->u, N * F);
    struct tw_tensor ws;
    float *dws;
    if (m->stack_gu && stacked(m, il, TW_PROJ_GATE, 2, &ws, &dws))
        rc =
            go->linear_bwd_bf16(be, m->dxn, NULL, false, dws, NULL, NULL, m->dgb, a->xn2b, &ws, N);
    else if (!(rc = lin_bwd(m, il, TW_PROJ_GATE, m->dxn, NULL, false, m->dg, m->dgb, a->xn2,
                            a->xn2b, N, false)))
        rc = lin_bwd(m, il, TW_PROJ_UP, m->dxn, NULL, true, m->du, m->dub, a->xn2, a->xn2b, N,
                     true);
    if (rc)
        return rc;
    norm_bwd(m, m->dx, G->ffn_norm.data ? f(&G->ffn_norm) : NULL, m->dxn, a->x_mid,
             f(&L->ffn_norm), a->rstd2, N, C);
    // attention: x_mid = x + o(attn(rope(q), rope(k), v))
    if ((rc = lin_bwd(m, il, TW_PROJ_O, m->datt, NULL, false, m->dx, m->dxb, a->att, a->attb, N,
                      false)))
        return rc;
    as.assign = true; // dq, dk, dv written whole (no zeroing pass)
    as.out_b = m->qkv_kept ? a->attb : NULL;
    go->attn_bwd(be, m->dq, m->dk, m->dv, m->datt, a->q, a->k, a->v, a->att, a->lse, m->bstart,
                 &as);
    // the transpose of a rotation: the opposite angles; with hand-offs (no q/k norms after)
    // straight into the bf16 copies the products read, dq and dk left unrotated unless the
    // biases' gradients (their column sums) read them
    bool rf = hb && !c->qk_norm;
    void *dqb = rf ? m->dqb : NULL, *dkb = rf ? m->dkb : NULL;
    rope(m, m->dq, dqb, m->qkv_ld, c->attn_bias, m->negpos, N, H);
    rope(m, m->dk, dkb, m->qkv_ld, c->attn_bias, m->negpos, N, Hkv);
    float *dq = m->dq, *dk = m->dk;
    if (c->qk_norm) {
        go->zero(be, m->dqp, nQ), go->zero(be, m->dkp, nK);
        go->rmsnorm_bwd(be, m->dqp, G->q_norm.data ? f(&G->q_norm) : NULL, m->dq, a->q_pre,
                        f(&L->q_norm), a->q_rstd, N * H, D);
        go->rmsnorm_bwd(be, m->dkp, G->k_norm.data ? f(&G->k_norm) : NULL, m->dk, a->k_pre,
                        f(&L->k_norm), a->k_rstd, N * Hkv, D);
        dq = m->dqp, dk = m->dkp;
    }
    if (m->stack_qkv && stacked(m, il, TW_PROJ_Q, 3, &ws, &dws)) { // dq | dk | dv a row
        go->round_bf16(be, m->dvb, m->qkv_ld, m->dv, N, Hkv * D);
        rc =
            go->linear_bwd_bf16(be, m->dxn, NULL, false, dws, NULL, NULL, m->dqb, a->xn1b, &ws, N);
    } else if (!(rc = lin_bwd(m, il, TW_PROJ_Q, m->dxn, NULL, false, dq, dqb, a->xn1, a->xn1b, N,
                              false)) &&
               !(rc = lin_bwd(m, il, TW_PROJ_K, m->dxn, NULL, true, dk, dkb, a->xn1, a->xn1b, N,
                              true))) {
        rc = lin_bwd(m, il, TW_PROJ_V, m->dxn, NULL, true, m->dv, NULL, a->xn1, a->xn1b, N, true);
    }
    if (rc)
        return rc;
    norm_bwd(m, m->dx, G->attn_norm.data ? f(&G->attn_norm) : NULL, m->dxn, m->xs[il],
             f(&L->attn_norm), a->rstd1, N, C);
    return 0;
}

// Embedding, layers and final norm: m->xf.
static int trunk_fwd(tw_lm *m, const struct tw_lm_batch *b)
{
    int64_t N = (int64_t)b->B * b->T, C = m->cfg.n_embd;
    int rc = check_batch(m, b);
    if (rc || (rc = ensure_acts(m, N)))
        return rc;
    // the batch's ids, targets and example starts where the ops read them
    size_t ni = (size_t)N * sizeof(int32_t);
    if ((rc = tw_backend_upload(m->be, m->bids, b->ids, ni)) ||
        (rc = tw_backend_upload(m->be, m->btargets, b->targets, ni)) ||
        (rc = tw_backend_upload(m->be, m->bstart, b->start, ni)))
        return rc;
    struct tw_tensor x0 = tw_tensor_f32_2d(m->xs[0], N, C);
    tw_embedding(m->be, &x0, &m->bw->tok_embd, b->ids);
    for (int il = 0; il < m->cfg.n_layer && !rc; il++)
        rc = layer_fwd(m, il, b);
    if (!rc)
        m->go->rmsnorm_fwd(m->be, m->xf, m->rstdf, m->xs[m->cfg.n_layer], f(&m->bw->out_norm), N,
                           C, m->cfg.norm_eps);
    return rc;
}

// From the gradient of xf in m->dxn down to the embeddings.
static int trunk_bwd(tw_lm *m, const struct tw_lm_batch *b)
{
    int64_t N = (int64_t)b->B * b->T, C = m->cfg.n_embd;
    for (int64_t n = 0; n < N; n++)
        m->negpos[n] = -b->pos[n];
    m->go->zero(m->be, m->dx, (size_t)(N * C) * sizeof(float));
    norm_bwd(m, m->dx, m->bgm->out_norm.data ? f(&m->bgm->out_norm) : NULL, m->dxn,
             m->xs[m->cfg.n_layer], f(&m->bw->out_norm), m->rstdf, N, C);
    int rc = 0;
    for (int il = m->cfg.n_layer - 1; il >= 0 && !rc; il--) {
        if (m->recompute) // the layer's activations again, from its kept input
            rc = layer_fwd(m, il, b);
        if (!rc)
            rc = layer_bwd(m, il, b);
    }
    if (!rc && m->bgm->tok_embd.data)
        m->go->embedding_bwd(m->be, f(&m->bgm->tok_embd), b->ids, m->dx, N, C);
    return rc;
}

static float *head_grad(tw_lm *m)
{
    return m->bgm->output.data ? f(&m->bgm->output) : NULL;
}

int tw_lm_forward(tw_lm *m, const struct tw_lm_batch *b, float *logp, double *sum)
{
    int rc = trunk_fwd(m, b);
    int64_t N = (int64_t)b->B * b->T;
    if (!rc)
        rc = m->go->head_logp(m->be, m->xf, &m->bw->output, m->btargets, N, m->logp, NULL, NULL,
                              NULL, sum);
    if (!rc)
        rc = tw_backend_download(m->be, logp, m->logp, (size_t)N * sizeof(float));
    return rc;
}

// The output projection's backward with coef (host; its logits recomputed) and then the
// trunk's; *sum gets the sum of the targets' log-probabilities.
static int head_and_trunk_bwd(tw_lm *m, const struct tw_lm_batch *b, const float *coef,
                              double *sum)
{
    int64_t N = (int64_t)b->B * b->T;
    int rc = tw_backend_upload(m->be, m->coef, coef, (size_t)N * sizeof(float));
    if (rc)
        return rc;
    m->go->zero(m->be, m->dxn, (size_t)(N * m->cfg.n_embd) * sizeof(float));
    rc = m->go->head_logp(m->be, m->xf, &m->bw->output, m->btargets, N, m->logp, m->coef, m->dxn,
                          head_grad(m), sum);
    if (!rc)
        rc = trunk_bwd(m, b);
    return rc ? rc : tw_backend_sync(m->be);
}

int tw_lm_backward(tw_lm *m, const struct tw_lm_batch *b, const float *coef)
{
    double s;
    return head_and_trunk_bwd(m, b, coef, &s);
}

int tw_lm_step_ce(tw_lm *m, const struct tw_lm_batch *b, float scale, double *loss_sum,
                  int64_t *n_tokens)
{
    int rc = trunk_fwd(m, b);
    if (rc)
        return rc;
    int64_t N = (int64_t)b->B * b->T, n = 0;
    for (int64_t t = 0; t < N; t++) {
        m->hcoef[t] = b->targets[t] >= 0 ? -scale : 0.0f;
        n += b->targets[t] >= 0;
    }
    double s;
    rc = head_and_trunk_bwd(m, b, m->hcoef, &s);
    *loss_sum = -s;
    *n_tokens = n;
    return rc;
}

// ---- the merged view.

int tw_lm_merged(tw_lm *m, struct tw_model **out)
{
    int rc = tw_lm_pull(m, false);
    if (rc)
        return rc;
    if (m->r == 0) { // full: the (f32) weights themselves
        *out = weights(m);
        return 0;
    }
    tw_model_close(m->merged);
    m->merged = NULL;
    struct tw_model *v;
    rc = copy_weights(m->w, TW_DTYPE_F32, &v);
    if (rc)
        return rc;
    for (int il = 0; il < m->cfg.n_layer; il++)
        for (int p = 0; p < TW_PROJ_COUNT; p++) {
            struct lora *a = &m->lora[il * TW_PROJ_COUNT + p];
            if (!a->in)
                continue;
            // W += scale B A: (out, r) (r, in)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)a->out, (int)a->in, m->r,
                        m->scale, a->B, m->r, a->A, (int)a->in, 1.0f,
                        f(lt(&v->layers[il], proj_off[p])), (int)a->in);
        }
    m->merged = v;
    *out = v;
    return 0;
}

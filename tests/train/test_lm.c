// The trainable decoder's gradients against finite differences of its own forward pass, for
// every architecture's features (Llama; Qwen2's biases; Qwen3's q/k norms; Mistral's window),
// full training, LoRA (with dropout) and QLoRA, over a batch with packed examples and masked
// targets; and the LoRA model with B = 0 against its base (PEFT's init leaves the model
// unchanged).
#include <math.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "model/context.h"
#include "train/lm.h"

enum { B = 2, T = 7 };

static struct tw_model_config small(enum tw_arch arch)
{
    struct tw_model_config c = { .arch = arch,
                                 .n_vocab = 61,
                                 .n_embd = 16,
                                 .n_layer = 2,
                                 .n_head = 4,
                                 .n_head_kv = 2,
                                 .head_dim = 4,
                                 .n_ff = 24,
                                 .n_ctx_train = 64,
                                 .norm_eps = 1e-5f,
                                 .rope_theta = 10000.0f,
                                 .rope_neox = true,
                                 .act = TW_ACT_SILU };
    c.attn_bias = arch == TW_ARCH_QWEN2;
    c.qk_norm = arch == TW_ARCH_QWEN3;
    c.sliding_window = arch == TW_ARCH_MISTRAL ? 3 : 0;
    c.tied_embeddings = arch == TW_ARCH_QWEN3;
    return c;
}

// Row 0 packs two examples (3 + 4 tokens), row 1 holds one of 5 and two pads.
static int32_t ids[B * T] = { 5, 9, 14, 3, 33, 60, 2, 7, 7, 40, 12, 1, 0, 0 };
static int32_t tg[B * T] = { -100, 14, 3, -100, 60, 2, 8, 7, 40, 12, 1, -100, -100, -100 };
static int32_t pos[B * T] = { 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 0 };
static int32_t st[B * T] = { 0, 0, 0, 3, 3, 3, 3, 0, 0, 0, 0, 0, 5, 6 };

static double objective(tw_lm *m, const struct tw_lm_batch *b, const float *coef)
{
    float logp[B * T];
    double s;
    REQUIRE(tw_lm_forward(m, b, logp, &s) == 0);
    double L = 0;
    for (int i = 0; i < B * T; i++)
        L += coef[i] * logp[i];
    return L;
}

// Every parameter's gradient against central differences at a few entries of each.
static void check_grads(tw_lm *m, const char *what)
{
    struct tw_lm_batch b = { B, T, ids, tg, pos, st };
    float coef[B * T];
    for (int i = 0; i < B * T; i++)
        coef[i] = tg[i] >= 0 ? 0.3f + 0.1f * (float)(i % 5) : 0.0f;
    tw_lm_zero_grad(m);
    float logp[B * T];
    double s;
    REQUIRE(tw_lm_forward(m, &b, logp, &s) == 0);
    REQUIRE(tw_lm_backward(m, &b, coef) == 0);
    double worst = 0;
    int checked = 0;
    for (size_t i = 0; i < tw_lm_n_params(m); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(m, i);
        double gmax = 0;
        for (size_t j = 0; j < p->n; j++)
            gmax = fmax(gmax, fabs(p->g[j]));
        for (size_t k = 0; k < 4; k++) {
            size_t j = (k * 7919 + i * 31) % p->n;
            // the five-point stencil: truncation O(h^4); the f32 forward's rounding leaves
            // about 4e-3 of noise, the absolute floor of the comparison
            float keep = p->w[j], h = 4e-3f;
            double f[4];
            for (int q = 0; q < 4; q++) {
                p->w[j] = keep + (float)(q < 2 ? q + 1 : -(q - 1)) * h;
                f[q] = objective(m, &b, coef);
            }
            p->w[j] = keep;
            double num = (8 * (f[0] - f[2]) - (f[1] - f[3])) / (12.0 * h);
            double err = fmax(0, fabs(num - p->g[j]) - 4e-3) / fmax(gmax, 0.02);
            if (err > worst)
                worst = err;
            if (err > 2e-2)
                fprintf(stderr, "%s: %s[%zu]: analytic %g, numeric %g\n", what, p->name, j,
                        p->g[j], num);
            checked++;
        }
    }
    CHECK(checked > 20);
    CHECK(worst < 2e-2);
    // The one-pass cross-entropy step gives the same gradients as forward + backward.
    tw_lm_zero_grad(m);
    float coef2[B * T];
    for (int i = 0; i < B * T; i++)
        coef2[i] = tg[i] >= 0 ? -0.25f : 0.0f;
    REQUIRE(tw_lm_forward(m, &b, logp, &s) == 0);
    REQUIRE(tw_lm_backward(m, &b, coef2) == 0);
    const struct tw_lm_param *p0 = tw_lm_param_at(m, 1);
    float *g1 = tw_malloc_array(p0->n, sizeof(float));
    memcpy(g1, p0->g, p0->n * sizeof(float));
    tw_lm_zero_grad(m);
    double loss;
    int64_t nt;
    REQUIRE(tw_lm_step_ce(m, &b, 0.25f, &loss, &nt) == 0);
    CHECK_EQ_INT(nt, 9);
    CHECK(fabs(loss + s) < 1e-9 * fabs(s) + 1e-9);
    double e = 0;
    for (size_t j = 0; j < p0->n; j++)
        e = fmax(e, fabs(g1[j] - p0->g[j]));
    CHECK(e < 1e-6);
    tw_free(g1);
}

static void test_full(enum tw_arch arch)
{
    struct tw_model_config c = small(arch);
    tw_lm *m;
    REQUIRE(tw_lm_new_random(&c, 7, &m) == 0);
    // norms away from 1 and biases away from 0, so that their gradients matter
    for (size_t i = 0; i < tw_lm_n_params(m); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(m, i);
        for (size_t j = 0; j < p->n; j++)
            p->w[j] += 0.05f * (float)sin((double)(j * 13 + i));
        for (size_t j = 0; p->ndim == 2 && j < p->n; j++)
            p->w[j] *= 10; // std 0.2: logits that move
    }
    CHECK(tw_lm_param_find(m, "model.layers.1.mlp.down_proj.weight") != NULL);
    CHECK((tw_lm_param_find(m, "lm_head.weight") != NULL) == !c.tied_embeddings);
    CHECK((tw_lm_param_find(m, "model.layers.0.self_attn.q_norm.weight") != NULL) == c.qk_norm);
    CHECK((tw_lm_param_find(m, "model.layers.0.self_attn.k_proj.bias") != NULL) == c.attn_bias);
    check_grads(m, tw_arch_name(arch));
    tw_lm_free(m);
}

static void test_lora(enum tw_arch arch, float dropout, enum tw_dtype qlora)
{
    struct tw_model_config c = small(arch);
    struct tw_model *base;
    REQUIRE(tw_model_random(&c, TW_DTYPE_F32, 11, &base) == 0);
    for (int il = 0; il < c.n_layer; il++) { // weights of std ~0.2
        struct tw_tensor *ws[] = { &base->layers[il].wq, &base->layers[il].w_up };
        for (int k = 0; k < 2; k++)
            for (int64_t j = 0; j < tw_tensor_nelem(ws[k]); j++)
                ((float *)ws[k]->data)[j] *= 6;
    }
    struct tw_lm_opts o = { .lora_r = 3,
                            .lora_alpha = 6,
                            .lora_dropout = dropout,
                            .lora_targets = TW_PROJ_ALL,
                            .qlora = qlora,
                            .seed = 5 };
    tw_lm *m;
    REQUIRE(tw_lm_new(base, &o, &m) == 0);
    CHECK(tw_lm_is_lora(m));
    CHECK_EQ_INT(tw_lm_n_params(m), 2 * 7 * c.n_layer);
    const struct tw_lm_param *pb =
        tw_lm_param_find(m, "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
    REQUIRE(pb != NULL);
    CHECK_EQ_INT(pb->ne[0], 16);
    CHECK_EQ_INT(pb->ne[1], 3);
    // B = 0: the adapted model computes the base's log-probabilities.
    struct tw_lm_batch b = { B, T, ids, tg, pos, st };
    float lp1[B * T], lp2[B * T];
    double s1, s2;
    if (dropout == 0) {
        REQUIRE(tw_lm_forward(m, &b, lp1, &s1) == 0);
        tw_lm_set_lora_enabled(m, false);
        REQUIRE(tw_lm_forward(m, &b, lp2, &s2) == 0);
        tw_lm_set_lora_enabled(m, true);
        CHECK(fabs(s1 - s2) < 1e-6);
    }
    for (size_t i = 0; i < tw_lm_n_params(m); i++) { // B != 0 for the test
        const struct tw_lm_param *p = tw_lm_param_at(m, i);
        if (strstr(p->name, "lora_B"))
            for (size_t j = 0; j < p->n; j++)
                p->w[j] = 0.3f * (float)cos((double)(j * 7 + i));
    }
    REQUIRE(tw_lm_forward(m, &b, lp1, &s1) == 0);
    tw_lm_set_lora_enabled(m, false);
    REQUIRE(tw_lm_forward(m, &b, lp2, &s2) == 0);
    tw_lm_set_lora_enabled(m, true);
    CHECK(fabs(s1 - s2) > 1e-3);
    tw_lm_set_step(m, 3);
    char what[64];
    snprintf(what, sizeof what, "%s lora dropout %g", tw_arch_name(arch), dropout);
    check_grads(m, what);
    // The merged model's logits equal the adapted model's (no dropout).
    if (dropout == 0 && qlora == TW_DTYPE_F32) {
        struct tw_model *mm;
        REQUIRE(tw_lm_merged(m, &mm) == 0);
        struct tw_backend *be = tw_backend_cpu_ref();
        tw_ctx *cx;
        struct tw_ctx_params cp = { .n_ctx = 8, .n_batch = 8 };
        REQUIRE(tw_ctx_new(mm, be, &cp, &cx) == 0);
        float *logits = tw_malloc_array((size_t)c.n_vocab, sizeof(float));
        REQUIRE(tw_ctx_decode(cx, ids + 7, 4, logits, false) == 0);
        // logp of target 1 after the first 4 tokens of row 1 (its last trained position)
        double mx = -1e30, sum = 0;
        for (int j = 0; j < c.n_vocab; j++)
            mx = fmax(mx, logits[j]);
        for (int j = 0; j < c.n_vocab; j++)
            sum += exp(logits[j] - mx);
        double want = logits[1] - mx - log(sum);
        REQUIRE(tw_lm_forward(m, &b, lp1, &s1) == 0);
        CHECK(fabs(lp1[7 + 3] - want) < 1e-4);
        tw_free(logits);
        tw_ctx_free(cx);
    }
    tw_lm_free(m);
    tw_model_close(base);
}

// Activation recompute gives the very same gradients (full Qwen3; LoRA with dropout).
static void test_recompute(void)
{
    struct tw_model_config c = small(TW_ARCH_QWEN3);
    struct tw_model *base;
    REQUIRE(tw_model_random(&c, TW_DTYPE_F32, 4, &base) == 0);
    struct tw_lm_opts full = { 0 }, lora = { .lora_r = 2,
                                             .lora_alpha = 4,
                                             .lora_dropout = 0.3f,
                                             .lora_targets = TW_PROJ_ALL,
                                             .qlora = TW_DTYPE_F32,
                                             .seed = 9 };
    const struct tw_lm_opts *opts[2] = { &full, &lora };
    struct tw_lm_batch b = { B, T, ids, tg, pos, st };
    for (int k = 0; k < 2; k++) {
        tw_lm *m;
        REQUIRE(tw_lm_new(base, opts[k], &m) == 0);
        for (size_t i = 0; i < tw_lm_n_params(m); i++) { // adapters that matter
            const struct tw_lm_param *p = tw_lm_param_at(m, i);
            if (strstr(p->name, "lora_B"))
                for (size_t j = 0; j < p->n; j++)
                    p->w[j] = 0.1f * (float)sin((double)j);
        }
        tw_lm_set_step(m, 2);
        size_t n = (size_t)tw_lm_n_trainable(m), off = 0;
        float *g = tw_malloc_array(n, sizeof(float));
        double l1, l2;
        int64_t nt;
        tw_lm_zero_grad(m);
        REQUIRE(tw_lm_step_ce(m, &b, 0.1f, &l1, &nt) == 0);
        for (size_t i = 0; i < tw_lm_n_params(m); i++) {
            const struct tw_lm_param *p = tw_lm_param_at(m, i);
            memcpy(g + off, p->g, p->n * sizeof(float));
            off += p->n;
        }
        tw_lm_set_recompute(m, true);
        tw_lm_zero_grad(m);
        REQUIRE(tw_lm_step_ce(m, &b, 0.1f, &l2, &nt) == 0);
        CHECK(l1 == l2);
        bool same = true;
        off = 0;
        for (size_t i = 0; i < tw_lm_n_params(m); i++) {
            const struct tw_lm_param *p = tw_lm_param_at(m, i);
            same &= memcmp(g + off, p->g, p->n * sizeof(float)) == 0;
            off += p->n;
        }
        CHECK(same);
        tw_free(g);
        tw_lm_free(m);
    }
    tw_model_close(base);
}

int main(void)
{
    test_recompute();
    test_full(TW_ARCH_LLAMA);
    test_full(TW_ARCH_QWEN2);
    test_full(TW_ARCH_QWEN3);
    test_full(TW_ARCH_MISTRAL);
    test_lora(TW_ARCH_LLAMA, 0.0f, TW_DTYPE_F32);
    test_lora(TW_ARCH_QWEN3, 0.0f, TW_DTYPE_F32);
    test_lora(TW_ARCH_LLAMA, 0.2f, TW_DTYPE_F32);
    // QLoRA: rows of 16 and 24 fall back from q4_0 to f16, dequantised in tiles all the same
    test_lora(TW_ARCH_QWEN2, 0.0f, TW_DTYPE_Q4_0);
    return check_report("train_test_lm");
}

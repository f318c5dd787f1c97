// The training engine on the GPU against the same engine on the CPU (the reference), on one
// batch of packed examples with masked targets: the loss, every token's log-probability and
// every trainable parameter's gradient, for full training in f32 and in bf16 compute, the
// architectures' features (Qwen2's biases, Qwen3's q/k norms and tied embeddings, Mistral's
// window), LoRA with dropout over a bf16 base and QLoRA over a q4_K one; then the training
// loop on the GPU: its losses beside the CPU's, and a run stopped and resumed from its
// checkpoint ending bit-identical to the uninterrupted run. First the training attention alone
// (the fused bf16 kernels of lowp models) against the CPU's, over head sizes 32, 64 and 128,
// rows that are not multiples of the tiles, packed examples, grouped queries and a window;
// its backward twice, with the same bits. With --attention only that part (ctest runs it
// again with TWIN_FA_DQ=1: dQ added by dK/dV's kernel, in order).
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "model/model.h"
#include "cuda_check.h"
#include "golden_models.h"
#include "sotu_train.h"
#include "tensor/grad.h"
#include "tensor/profile.h"
#include "train/trainer.h"

enum { B = 3, T = 45 };

static struct tw_backend *gpu;

// The golden llama's rope and vocabulary, larger layers: rows of 512 and 1024 (q4_K's blocks
// fit), 8 query heads over 2 KV heads of 64.
static struct tw_model_config cfg_of(const struct tw_model *g, enum tw_arch arch)
{
    struct tw_model_config c = g->cfg;
    c.arch = arch;
    c.n_embd = 512, c.n_head = 8, c.n_head_kv = 2, c.head_dim = 64, c.n_ff = 1024;
    c.n_layer = 2;
    c.attn_bias = arch == TW_ARCH_QWEN2;
    c.qk_norm = arch == TW_ARCH_QWEN3;
    c.tied_embeddings = arch == TW_ARCH_QWEN3;
    c.sliding_window = arch == TW_ARCH_MISTRAL ? 7 : 0;
    return c;
}

// Row 0 packs examples of 20 and 25 tokens, row 1 holds one of 45, row 2 one of 30 and 15 pads.
struct batch {
    int32_t ids[B * T], tg[B * T], pos[B * T], st[B * T];
    struct tw_lm_batch b;
};

static void make_batch(struct batch *x, int32_t vocab)
{
    uint64_t rng = 77;
    const int lens[B][2] = { { 20, 25 }, { 45, 0 }, { 30, 0 } };
    for (int r = 0; r < B; r++) {
        int t = 0;
        for (int e = 0; e < 2 && lens[r][e]; e++)
            for (int i = 0; i < lens[r][e]; i++, t++) {
                int n = r * T + t;
                x->ids[n] = (int32_t)(check_rand(&rng) % (uint64_t)vocab);
                x->pos[n] = i, x->st[n] = t - i;
                x->tg[n] = i + 1 < lens[r][e] && i % 7 != 3
                               ? (int32_t)(check_rand(&rng) % (uint64_t)vocab)
                               : -100;
            }
        for (; t < T; t++) { // padding: its own one-token examples, no targets
            int n = r * T + t;
            x->ids[n] = 0, x->pos[n] = 0, x->st[n] = t, x->tg[n] = -100;
        }
    }
    x->b = (struct tw_lm_batch){ B, T, x->ids, x->tg, x->pos, x->st };
}

// One step of the cross-entropy on the CPU model a and its GPU twin b (made alike): the loss,
// log-probabilities and gradients within tol.
static void compare(const char *what, tw_lm *a, tw_lm *b, double tol)
{
    struct batch x;
    make_batch(&x, tw_lm_config(a)->n_vocab);
    REQUIRE(tw_lm_use_backend(b, gpu) == 0);
    tw_lm_set_step(a, 3), tw_lm_set_step(b, 3);
    float la[B * T], lb[B * T];
    double sa, sb;
    REQUIRE(tw_lm_forward(a, &x.b, la, &sa) == 0);
    REQUIRE(tw_lm_forward(b, &x.b, lb, &sb) == 0);
    double dl = 0;
    for (int i = 0; i < B * T; i++)
        dl = fmax(dl, fabs((double)la[i] - lb[i]));
    tw_lm_zero_grad(a), tw_lm_zero_grad(b);
    double ca, cb;
    int64_t na, nb;
    REQUIRE(tw_lm_step_ce(a, &x.b, 0.01f, &ca, &na) == 0);
    REQUIRE(tw_lm_step_ce(b, &x.b, 0.01f, &cb, &nb) == 0);
    REQUIRE(tw_lm_pull(b, true) == 0);
    CHECK_EQ_INT(na, nb);
    double worst = 0, gmax = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < tw_lm_n_params(a); i++) {
        const struct tw_lm_param *pa = tw_lm_param_at(a, i), *pb = tw_lm_param_at(b, i);
        REQUIRE(strcmp(pa->name, pb->name) == 0 && pa->n == pb->n);
        double e = golden_rel(pb->g, pa->g, pa->n);
        for (size_t j = 0; j < pa->n; j++)
            gmax = fmax(gmax, fabs(pa->g[j]));
        if (e > worst)
            worst = e, worst_name = pa->name;
    }
    printf("%-24s loss %.6f / %.6f, logp max diff %.2e, gradients worst %.2e (%s)\n", what,
           ca / (double)na, cb / (double)nb, dl, worst, worst_name);
    CHECK(fabs(ca - cb) < tol * fabs(ca));
    CHECK(dl < 50 * tol);
    CHECK(worst < tol * 10);
    CHECK(gmax > 0); // something was learned from
    tw_lm_free(a), tw_lm_free(b);
}

// Full training in bf16 compute on the GPU with the bf16 hand-offs between ops (grad.h) against
// the same model's f32 activations (TWIN_TRAIN_ACTS=f32, rounded by each product): the same
// roundings of the same values but for the hand-offs' bf16 q, k, v, g, u and dh (products'
// outputs, as PyTorch's autocast keeps them), so the same step within bf16's noise (each side
// measured 1.0-1.5e-2 from the CPU's gradients, 1.0-1.3e-2 from each other, on an H200).
static void compare_handoffs(const char *what, tw_lm *a, tw_lm *b)
{
    struct batch x;
    make_batch(&x, tw_lm_config(a)->n_vocab);
    tw_lm *m[2] = { a, b };
    float lp[2][B * T];
    double ce[2];
    int64_t n[2];
    for (int i = 0; i < 2; i++) {
        if (i == 0)
            setenv("TWIN_TRAIN_ACTS", "f32", 1);
        REQUIRE(tw_lm_use_backend(m[i], gpu) == 0);
        tw_lm_set_step(m[i], 3);
        double sum;
        REQUIRE(tw_lm_forward(m[i], &x.b, lp[i], &sum) == 0);
        tw_lm_zero_grad(m[i]);
        REQUIRE(tw_lm_step_ce(m[i], &x.b, 0.01f, &ce[i], &n[i]) == 0);
        REQUIRE(tw_lm_pull(m[i], true) == 0);
        unsetenv("TWIN_TRAIN_ACTS");
    }
    double dl = 0, worst = 0;
    for (int i = 0; i < B * T; i++)
        dl = fmax(dl, fabs((double)lp[0][i] - lp[1][i]));
    for (size_t i = 0; i < tw_lm_n_params(a); i++) {
        const struct tw_lm_param *pa = tw_lm_param_at(a, i), *pb = tw_lm_param_at(b, i);
        REQUIRE(strcmp(pa->name, pb->name) == 0 && pa->n == pb->n);
        worst = fmax(worst, golden_rel(pb->g, pa->g, pa->n));
    }
    printf("%-24s hand-offs against f32 activations: loss %.7f / %.7f, logp max diff %.2e, "
           "gradients worst %.2e\n",
           what, ce[0] / (double)n[0], ce[1] / (double)n[1], dl, worst);
    CHECK_EQ_INT(n[0], n[1]);
    CHECK(fabs(ce[0] - ce[1]) < 2e-4 * fabs(ce[0]));
    CHECK(dl < 3e-2);
    CHECK(worst < 4e-2);
    tw_lm_free(a), tw_lm_free(b);
}

// Activation recompute on the GPU with the hand-offs (the products' bf16 outputs, q, k, v in the
// attention's keep alone): the same loss and gradients to the bit as keeping every layer's
// activations (the layer's forward runs again just before its backward, on the same inputs).
static void test_recompute(const struct tw_model *g)
{
    const enum tw_arch archs[] = { TW_ARCH_LLAMA, TW_ARCH_QWEN3 };
    for (int k = 0; k < 2; k++) {
        struct tw_model_config c = cfg_of(g, archs[k]);
        struct batch x;
        make_batch(&x, c.n_vocab);
        tw_lm *m[2];
        double ce[2];
        int64_t n[2];
        for (int i = 0; i < 2; i++) {
            REQUIRE(tw_lm_new_random(&c, 14, &m[i]) == 0);
            REQUIRE(tw_lm_set_compute(m[i], TW_DTYPE_BF16) == 0);
            tw_lm_set_recompute(m[i], i == 1);
            REQUIRE(tw_lm_use_backend(m[i], gpu) == 0);
            tw_lm_zero_grad(m[i]);
            REQUIRE(tw_lm_step_ce(m[i], &x.b, 0.01f, &ce[i], &n[i]) == 0);
            REQUIRE(tw_lm_pull(m[i], true) == 0);
        }
        bool same = ce[0] == ce[1] && n[0] == n[1];
        for (size_t i = 0; i < tw_lm_n_params(m[0]); i++) {
            const struct tw_lm_param *pa = tw_lm_param_at(m[0], i), *pb = tw_lm_param_at(m[1], i);
            same &= memcmp(pa->g, pb->g, pa->n * sizeof(float)) == 0;
        }
        printf("%s bf16 hand-offs, recompute: loss %.7f / %.7f, gradients %s\n",
               k ? "qwen3" : "llama", ce[0] / (double)n[0], ce[1] / (double)n[1],
               same ? "the same bits" : "differ");
        CHECK(same);
        tw_lm_free(m[0]), tw_lm_free(m[1]);
    }
}

// The linear layers' backward calls a profiling backend counted in a step of m.
static double linear_bwd_calls(struct tw_backend *pb)
{
    struct tw_op_stat st;
    for (int i = 0; tw_backend_profile_stat(pb, i, &st); i++)
        if (strcmp(st.name, "linear bwd") == 0)
            return st.calls;
    return -1;
}

// The stacked products (q, k, v as one matrix, and gate, up; lm.c's stacked()) against the
// projections one by one (TWIN_TRAIN_STACK=0), with the hand-offs: the backward makes 3 calls
// a layer fewer on llama (2 for q, k, v, 1 for gate, up), 1 fewer on qwen2 (biases: q, k, v
// not stacked) and qwen3 (q/k norms); the loss and gradients within bf16's rounding (another
// order of the products' sums).
static void test_stacked(const struct tw_model *g)
{
    const enum tw_arch archs[] = { TW_ARCH_LLAMA, TW_ARCH_QWEN2, TW_ARCH_QWEN3 };
    const int fewer[] = { 3, 1, 1 };
    for (int k = 0; k < 3; k++) {
        struct tw_model_config c = cfg_of(g, archs[k]);
        struct batch x;
        make_batch(&x, c.n_vocab);
        tw_lm *m[2];
        struct tw_backend *pb[2];
        double ce[2], calls[2];
        int64_t n[2];
        for (int i = 0; i < 2; i++) {
            REQUIRE(tw_backend_profile_new(gpu, &pb[i]) == 0);
            REQUIRE(tw_lm_new_random(&c, 15, &m[i]) == 0);
            REQUIRE(tw_lm_set_compute(m[i], TW_DTYPE_BF16) == 0);
            REQUIRE(tw_lm_use_backend(m[i], pb[i]) == 0);
            if (i == 0)
                setenv("TWIN_TRAIN_STACK", "0", 1);
            tw_lm_zero_grad(m[i]);
            tw_backend_profile_reset(pb[i]);
            REQUIRE(tw_lm_step_ce(m[i], &x.b, 0.01f, &ce[i], &n[i]) == 0);
            calls[i] = linear_bwd_calls(pb[i]);
            unsetenv("TWIN_TRAIN_STACK");
            REQUIRE(tw_lm_pull(m[i], true) == 0);
        }
        double worst = 0;
        for (size_t i = 0; i < tw_lm_n_params(m[0]); i++) {
            const struct tw_lm_param *pa = tw_lm_param_at(m[0], i), *pq = tw_lm_param_at(m[1], i);
            worst = fmax(worst, golden_rel(pq->g, pa->g, pa->n));
        }
        printf("%-8s stacked products: linear backward calls %.0f / %.0f, loss %.7f / %.7f, "
               "gradients worst %.2e\n",
               tw_arch_name(archs[k]), calls[0], calls[1], ce[0] / (double)n[0],
               ce[1] / (double)n[1], worst);
        CHECK(calls[0] - calls[1] == fewer[k] * c.n_layer);
        CHECK(n[0] == n[1] && fabs(ce[0] - ce[1]) < 1e-5 * fabs(ce[0]));
        CHECK(worst < 2e-2);
        tw_lm_free(m[0]), tw_lm_free(m[1]);
        tw_backend_free(pb[0]), tw_backend_free(pb[1]);
    }
}

static void test_full(const struct tw_model *g)
{
    const enum tw_arch archs[] = { TW_ARCH_LLAMA, TW_ARCH_QWEN2, TW_ARCH_QWEN3, TW_ARCH_MISTRAL };
    const char *names[] = { "llama f32", "qwen2 f32", "qwen3 f32", "mistral f32" };
    for (int i = 0; i < 4; i++) {
        struct tw_model_config c = cfg_of(g, archs[i]);
        tw_lm *a, *b;
        REQUIRE(tw_lm_new_random(&c, 11, &a) == 0);
        REQUIRE(tw_lm_new_random(&c, 11, &b) == 0);
        compare(names[i], a, b, 2e-3);
    }
    struct tw_model_config c = cfg_of(g, TW_ARCH_LLAMA);
    tw_lm *a, *b;
    REQUIRE(tw_lm_new_random(&c, 12, &a) == 0 && tw_lm_set_compute(a, TW_DTYPE_BF16) == 0);
    REQUIRE(tw_lm_new_random(&c, 12, &b) == 0 && tw_lm_set_compute(b, TW_DTYPE_BF16) == 0);
    compare("llama bf16 compute", a, b, 1e-2);
    // bf16 compute of every architecture, with the hand-offs: against the CPU, and against the
    // GPU's f32 activations
    const char *bnames[] = { "llama bf16 hand-offs", "qwen2 bf16 hand-offs",
                             "qwen3 bf16 hand-offs", "mistral bf16 hand-offs" };
    for (int i = 0; i < 4; i++) {
        c = cfg_of(g, archs[i]);
        REQUIRE(tw_lm_new_random(&c, 13, &a) == 0 && tw_lm_set_compute(a, TW_DTYPE_BF16) == 0);
        REQUIRE(tw_lm_new_random(&c, 13, &b) == 0 && tw_lm_set_compute(b, TW_DTYPE_BF16) == 0);
        compare(bnames[i], a, b, 1e-2);
        REQUIRE(tw_lm_new_random(&c, 13, &a) == 0 && tw_lm_set_compute(a, TW_DTYPE_BF16) == 0);
        REQUIRE(tw_lm_new_random(&c, 13, &b) == 0 && tw_lm_set_compute(b, TW_DTYPE_BF16) == 0);
        compare_handoffs(bnames[i], a, b);
    }
}

// LoRA's B starts at 0, which leaves A's gradient 0: both get the same nonzero B first.
static void fill_b(tw_lm *m)
{
    for (size_t i = 0; i < tw_lm_n_params(m); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(m, i);
        if (strstr(p->name, "lora_B"))
            for (size_t j = 0; j < p->n; j++)
                p->w[j] = 0.01f * (float)((int)((j * 2654435761u + i) % 17) - 8);
    }
}

static void test_lora(const struct tw_model *g)
{
    struct tw_model_config c = cfg_of(g, TW_ARCH_LLAMA);
    const enum tw_dtype base_dt[] = { TW_DTYPE_BF16, TW_DTYPE_BF16 };
    const enum tw_dtype held[] = { TW_DTYPE_F32, TW_DTYPE_Q4_K };
    const char *names[] = { "lora r16 bf16 base", "qlora r16 q4_K" };
    for (int i = 0; i < 2; i++) {
        struct tw_model *base;
        REQUIRE(tw_model_random(&c, base_dt[i], 5, &base) == 0);
        struct tw_lm_opts o = { .lora_r = 16,
                                .lora_alpha = 32,
                                .lora_dropout = 0.1f,
                                .lora_targets = TW_PROJ_ALL,
                                .qlora = held[i],
                                .seed = 9 };
        tw_lm *a, *b;
        REQUIRE(tw_lm_new(base, &o, &a) == 0);
        REQUIRE(tw_lm_new(base, &o, &b) == 0);
        fill_b(a), fill_b(b);
        compare(names[i], a, b, 1e-2);
        tw_model_close(base);
    }
    // No dropout over a bf16 base: the adapters ride along the base's products on the GPU
    // (grad.h's lora_fwd / lora_bwd, bf16 arithmetic); Qwen2's q/k/v biases too.
    c = cfg_of(g, TW_ARCH_QWEN2);
    struct tw_model *base;
    REQUIRE(tw_model_random(&c, TW_DTYPE_BF16, 6, &base) == 0);
    struct tw_lm_opts o = { .lora_r = 16,
                            .lora_alpha = 32,
                            .lora_targets = TW_PROJ_ALL,
                            .qlora = TW_DTYPE_F32,
                            .seed = 9 };
    tw_lm *a, *b;
    REQUIRE(tw_lm_new(base, &o, &a) == 0);
    REQUIRE(tw_lm_new(base, &o, &b) == 0);
    fill_b(a), fill_b(b);
    compare("lora r16 fused (qwen2)", a, b, 1e-2);
    // the adapter switched off (DPO's reference) reads the base out of the fused blocks
    REQUIRE(tw_lm_new(base, &o, &a) == 0);
    REQUIRE(tw_lm_new(base, &o, &b) == 0);
    fill_b(a), fill_b(b);
    REQUIRE(tw_lm_use_backend(b, gpu) == 0);
    struct batch x;
    make_batch(&x, c.n_vocab);
    float la[B * T], lb[B * T], lc[B * T];
    double sa, sb, sc;
    REQUIRE(tw_lm_forward(b, &x.b, lc, &sc) == 0); // with the adapter: another function
    tw_lm_set_lora_enabled(a, false), tw_lm_set_lora_enabled(b, false);
    REQUIRE(tw_lm_forward(a, &x.b, la, &sa) == 0);
    REQUIRE(tw_lm_forward(b, &x.b, lb, &sb) == 0);
    double d_off = 0, d_on = 0;
    for (int i = 0; i < B * T; i++)
        d_off = fmax(d_off, fabs((double)la[i] - lb[i])),
        d_on = fmax(d_on, fabs((double)lc[i] - lb[i]));
    printf("lora off (fused blocks)  logp max diff %.2e (with the adapter on: %.2e)\n", d_off,
           d_on);
    CHECK(d_off < 0.5);
    CHECK(d_on > 2 * d_off);
    tw_lm_free(a), tw_lm_free(b);
    tw_model_close(base);
}

// ---- the loop.

struct log {
    double loss[32];
    int64_t n, stop_at;
    volatile sig_atomic_t *stop;
};

static int on_step(void *ud, const struct tw_train_progress *p)
{
    struct log *l = ud;
    if (l->n < 32)
        l->loss[l->n++] = p->loss;
    if (l->stop && p->step == l->stop_at)
        *l->stop = 1;
    return 0;
}

static void test_loop(const struct tw_model *g)
{
    struct tw_dataset d;
    sotu_pretrain_data(&d, g->tok);
    struct tw_model_config c = cfg_of(g, TW_ARCH_LLAMA);
    c.n_embd = 128, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 32, c.n_ff = 256;
    struct tw_train_opts o;
    tw_train_opts_default(&o, TW_TRAIN_PRETRAIN);
    o.batch = 4, o.seq = 64, o.lr = 3e-3, o.warmup = 2, o.max_steps = 8, o.eval_frac = 0;
    char tmpl[] = "/tmp/twin-cuda-train-XXXXXX", ck[4200];
    REQUIRE(mkdtemp(tmpl) != NULL);
    snprintf(ck, sizeof ck, "%s/state.safetensors", tmpl);
    // the CPU's run, the GPU's straight through, the GPU's stopped at 3 and resumed
    tw_lm *cpu, *a, *b;
    REQUIRE(tw_lm_new_random(&c, 3, &cpu) == 0);
    REQUIRE(tw_lm_new_random(&c, 3, &a) == 0 && tw_lm_use_backend(a, gpu) == 0);
    struct log lc = { 0 }, la = { 0 };
    struct tw_train_result r;
    o.on_step = on_step, o.ud = &lc;
    REQUIRE(tw_train(cpu, NULL, &d, &o, &r) == 0);
    o.ud = &la;
    REQUIRE(tw_train(a, NULL, &d, &o, &r) == 0);
    CHECK_EQ_INT(la.n, 8);
    double worst = 0;
    for (int i = 0; i < 8; i++)
        worst = fmax(worst, fabs(la.loss[i] - lc.loss[i]) / lc.loss[i]);
    printf("loop: losses %.4f -> %.4f (CPU %.4f -> %.4f), worst relative difference %.2e\n",
           la.loss[0], la.loss[7], lc.loss[0], lc.loss[7], worst);
    CHECK(worst < 1e-2);
    CHECK(la.loss[7] < la.loss[0] - 0.3);
    volatile sig_atomic_t stop = 0;
    struct log lb = { .stop_at = 3, .stop = &stop };
    o.ud = &lb, o.stop = &stop, o.checkpoint = ck;
    REQUIRE(tw_lm_new_random(&c, 3, &b) == 0 && tw_lm_use_backend(b, gpu) == 0);
    CHECK_EQ_INT(tw_train(b, NULL, &d, &o, &r), TW_ECANCELED);
    tw_lm_free(b);
    REQUIRE(tw_lm_new_random(&c, 99, &b) == 0 && tw_lm_use_backend(b, gpu) == 0);
    stop = 0, lb.stop = NULL, o.resume = true;
    REQUIRE(tw_train(b, NULL, &d, &o, &r) == 0);
    CHECK_EQ_INT(lb.n, 8);
    CHECK(memcmp(la.loss, lb.loss, sizeof la.loss) == 0);
    bool same = true;
    for (size_t i = 0; i < tw_lm_n_params(a); i++) {
        const struct tw_lm_param *pa = tw_lm_param_at(a, i), *pb = tw_lm_param_at(b, i);
        same &= memcmp(pa->w, pb->w, pa->n * sizeof(float)) == 0;
    }
    CHECK(same);
    unlink(ck), rmdir(tmpl);
    tw_lm_free(cpu), tw_lm_free(a), tw_lm_free(b);
    tw_dataset_free(&d);
}

// One attention shape: forward and backward on the GPU (lowp: the fused kernels) against the
// CPU's functions.
static void attn_case(int64_t Bn, int64_t Tn, int64_t H, int64_t Hkv, int64_t D, int32_t window)
{
    struct tw_attn_shape sh = { .B = Bn,
                                .T = Tn,
                                .H = H,
                                .Hkv = Hkv,
                                .D = D,
                                .scale = 1.0f / sqrtf((float)D),
                                .window = window,
                                .lowp = true };
    size_t nq = (size_t)(Bn * Tn * H * D), nk = (size_t)(Bn * Tn * Hkv * D);
    size_t nl = (size_t)(Bn * Tn * H), nt = (size_t)(Bn * Tn);
    uint64_t rng = (uint64_t)(Tn * 131 + D * 7 + H + window);
    float *q = host_random(&rng, nq, 1.5f), *k = host_random(&rng, nk, 1.5f);
    float *v = host_random(&rng, nk, 1.0f), *go = host_random(&rng, nq, 1.0f);
    int32_t *st = tw_malloc_array(nt, sizeof(int32_t));
    REQUIRE(st);
    for (int64_t b = 0; b < Bn; b++) // examples of 37 tokens (row 1: one example)
        for (int64_t t = 0; t < Tn; t++)
            st[b * Tn + t] = (int32_t)(b == 1 ? 0 : t / 37 * 37);
    float *out = tw_malloc_array(nq, sizeof(float)), *lse = tw_malloc_array(nl, sizeof(float));
    float *dq = tw_calloc(nq, sizeof(float)), *dk = tw_calloc(nk, sizeof(float));
    float *dv = tw_calloc(nk, sizeof(float));
    REQUIRE(out && lse && dq && dk && dv);
    tw_attn_fwd(out, lse, q, k, v, st, &sh);
    tw_attn_bwd(dq, dk, dv, go, q, k, v, out, lse, st, &sh);
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    float *Q = dev_of(gpu, q, nq), *K = dev_of(gpu, k, nk), *V = dev_of(gpu, v, nk);
    // the outputs one float into their allocations: the engine carves them out of one buffer,
    // 4-byte aligned only
    float *GO = dev_of(gpu, go, nq), *O0 = dev_poisoned(gpu, nq + 1), *L = dev_poisoned(gpu, nl);
    float *zq = tw_calloc(nq + 1, sizeof(float)), *zk = tw_calloc(nk + 1, sizeof(float));
    REQUIRE(zq && zk);
    float *DQ0 = dev_of(gpu, zq, nq + 1), *DK0 = dev_of(gpu, zk, nk + 1);
    float *DV0 = dev_of(gpu, zk, nk + 1);
    float *O = O0 + 1, *DQ = DQ0 + 1, *DK = DK0 + 1, *DV = DV0 + 1;
    int32_t *ST = tw_backend_alloc(gpu, nt * sizeof(int32_t));
    REQUIRE(ST);
    CHECK_OK(tw_backend_upload(gpu, ST, st, nt * sizeof(int32_t)));
    g->attn_fwd(gpu, O, L, Q, K, V, ST, &sh);
    g->attn_bwd(gpu, DQ, DK, DV, GO, Q, K, V, O, L, ST, &sh);
    // again, the forward keeping its bf16 q, k, v for the backward (struct tw_attn_shape's
    // keep), the backward writing its gradients (assign) over poisoned ones: the same bits as
    // adding into zeros (the same roundings; dQ's sums over key tiles, added by many blocks,
    // keep their order)
    struct tw_attn_shape sk = sh;
    sk.keep = tw_backend_alloc(gpu, (nq + 2 * nk) * 2);
    sk.assign = true;
    float *DQ2 = dev_poisoned(gpu, nq), *DK2 = dev_poisoned(gpu, nk), *DV2 = dev_poisoned(gpu, nk);
    float *O2 = dev_poisoned(gpu, nq), *L2 = dev_poisoned(gpu, nl);
    REQUIRE(sk.keep);
    g->attn_fwd(gpu, O2, L2, Q, K, V, ST, &sk);
    g->attn_bwd(gpu, DQ2, DK2, DV2, GO, Q, K, V, O2, L2, ST, &sk);
    CHECK_OK(tw_backend_sync(gpu));
    float *ho = tw_malloc_array(nq, sizeof(float)), *hl = tw_malloc_array(nl, sizeof(float));
    float *hq = tw_malloc_array(nq, sizeof(float)), *hk = tw_malloc_array(nk, sizeof(float));
    float *hv = tw_malloc_array(nk, sizeof(float));
    REQUIRE(ho && hl && hq && hk && hv);
    CHECK_OK(tw_backend_download(gpu, ho, O, nq * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, hl, L, nl * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, hq, DQ, nq * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, hk, DK, nk * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, hv, DV, nk * sizeof(float)));
    float *h2 = tw_malloc_array(nq > nk ? nq : nk, sizeof(float));
    REQUIRE(h2);
    CHECK_OK(tw_backend_download(gpu, h2, O2, nq * sizeof(float)));
    CHECK(memcmp(h2, ho, nq * sizeof(float)) == 0);
    CHECK_OK(tw_backend_download(gpu, h2, L2, nl * sizeof(float)));
    CHECK(memcmp(h2, hl, nl * sizeof(float)) == 0);
    CHECK_OK(tw_backend_download(gpu, h2, DQ2, nq * sizeof(float)));
    CHECK(memcmp(h2, hq, nq * sizeof(float)) == 0);
    CHECK_OK(tw_backend_download(gpu, h2, DK2, nk * sizeof(float)));
    CHECK(memcmp(h2, hk, nk * sizeof(float)) == 0);
    CHECK_OK(tw_backend_download(gpu, h2, DV2, nk * sizeof(float)));
    CHECK(memcmp(h2, hv, nk * sizeof(float)) == 0);
    // once more with the output as bf16 (struct tw_attn_shape's out_b, no f32 out): the f32
    // output rounded, bit for bit, the same lse; the backward's delta from the bf16 O (as
    // FlashAttention's): its gradients near the f32 O's and within the same bounds of the CPU's
    struct tw_attn_shape sb = sk;
    sb.out_b = tw_backend_alloc(gpu, nq * 2);
    float *DQ3 = dev_poisoned(gpu, nq), *DK3 = dev_poisoned(gpu, nk), *DV3 = dev_poisoned(gpu, nk);
    float *L3 = dev_poisoned(gpu, nl);
    uint16_t *ob = tw_malloc_array(nq, 2);
    REQUIRE(sb.out_b && ob);
    g->attn_fwd(gpu, NULL, L3, Q, K, V, ST, &sb);
    g->attn_bwd(gpu, DQ3, DK3, DV3, GO, Q, K, V, NULL, L3, ST, &sb);
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, ob, sb.out_b, nq * 2));
    bool rounded = true;
    for (size_t i = 0; i < nq; i++)
        rounded &= ob[i] == tw_f32_to_bf16(ho[i]);
    CHECK(rounded);
    CHECK_OK(tw_backend_download(gpu, h2, L3, nl * sizeof(float)));
    CHECK(memcmp(h2, hl, nl * sizeof(float)) == 0);
    double e3[3];
    float *d3[3] = { DQ3, DK3, DV3 }, *want3[3] = { dq, dk, dv }, *near3[3] = { hq, hk, hv };
    size_t n3[3] = { nq, nk, nk };
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tw_backend_download(gpu, h2, d3[i], n3[i] * sizeof(float)));
        e3[i] = golden_rel(h2, want3[i], n3[i]);
        CHECK(golden_rel(h2, near3[i], n3[i]) < 1e-2);
    }
    printf("attention, output as bf16: dq %.2e dk %.2e dv %.2e from the CPU's\n", e3[0], e3[1],
           e3[2]);
    CHECK(e3[0] < 3e-2 && e3[1] < 3e-2 && e3[2] < 3e-2);
    float *devs3[] = { DQ3, DK3, DV3, L3, (float *)sb.out_b };
    for (size_t i = 0; i < sizeof devs3 / sizeof *devs3; i++)
        tw_backend_release(gpu, devs3[i]);
    tw_free(ob);
    tw_free(h2);
    double eo = golden_rel(ho, out, nq), el = golden_rel(hl, lse, nl), eq = golden_rel(hq, dq, nq);
    double ek = golden_rel(hk, dk, nk), ev = golden_rel(hv, dv, nk);
    printf("attention B %lld T %lld H %lld/%lld D %lld window %d: out %.2e lse %.2e dq %.2e dk "
           "%.2e dv %.2e\n",
           (long long)Bn, (long long)Tn, (long long)H, (long long)Hkv, (long long)D, window, eo,
           el, eq, ek, ev);
    CHECK(eo < 2e-2 && el < 2e-2 && eq < 3e-2 && ek < 3e-2 && ev < 3e-2);
    float *devs[] = { Q, K, V, GO, O0, L, DQ0, DK0, DV0, DQ2, DK2, DV2, O2, L2, (float *)sk.keep };
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++)
        tw_backend_release(gpu, devs[i]);
    tw_backend_release(gpu, ST);
    float *hs[] = { q, k, v, go, out, lse, dq, dk, dv, zq, zk, ho, hl, hq, hk, hv };
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++)
        tw_free(hs[i]);
    tw_free(st);
}

static void test_attention(void)
{
    attn_case(2, 100, 4, 2, 64, 0);
    attn_case(2, 130, 8, 2, 32, 0);
    attn_case(3, 77, 4, 4, 128, 0);
    attn_case(2, 200, 6, 2, 64, 50);
    attn_case(1, 64, 2, 1, 64, 0);
    attn_case(2, 1100, 4, 1, 64, 0); // chains of 18 key tiles adding into a query tile
    attn_case(1, 700, 4, 2, 128, 300);
}

// round_bf16 (rows ld apart) against tw_f32_to_bf16, bit for bit, the gaps between rows kept:
// rows whose starts allow the 16-byte path, rows that end in a partial group of eight, a
// source one float into its allocation (element by element), more rows than a grid's y.
static void round_case(int64_t rows, int64_t cols, int64_t ld, int64_t src_off)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    size_t n = (size_t)(rows * cols), nd = (size_t)(rows * ld);
    float *x = host_random(&(uint64_t){ (uint64_t)(rows * 31 + cols) }, n + 1, 4.0f);
    uint16_t *want = tw_malloc_array(nd, sizeof(uint16_t)), *got = tw_malloc(nd * 2);
    REQUIRE(x && want && got);
    for (size_t i = 0; i < nd; i++)
        want[i] = 0x7fc1; // the poison, kept in the gaps
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            want[r * ld + c] = tw_f32_to_bf16(x[src_off + r * cols + c]);
    float *dx = dev_of(gpu, x, n + 1);
    uint16_t *dy = tw_backend_alloc(gpu, nd * 2), *poison = tw_malloc(nd * 2);
    REQUIRE(dy && poison);
    for (size_t i = 0; i < nd; i++)
        poison[i] = 0x7fc1;
    CHECK_OK(tw_backend_upload(gpu, dy, poison, nd * 2));
    g->round_bf16(gpu, dy, ld, dx + src_off, rows, cols);
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, got, dy, nd * 2));
    if (memcmp(got, want, nd * 2) != 0)
        fprintf(stderr, "round_bf16 %lld x %lld (ld %lld, source +%lld) differs\n",
                (long long)rows, (long long)cols, (long long)ld, (long long)src_off);
    CHECK(memcmp(got, want, nd * 2) == 0);
    tw_backend_release(gpu, dx), tw_backend_release(gpu, dy);
    tw_free(x), tw_free(want), tw_free(got), tw_free(poison);
}

static void test_round(void)
{
    round_case(9, 64, 72, 0);   // 16-byte loads and stores
    round_case(4, 100, 104, 0); // and four left at each row's end
    round_case(5, 37, 40, 0);   // rows that break the 16-byte alignment
    round_case(3, 64, 96, 1);   // a source not 16-byte aligned
    round_case(70001, 3, 5, 0); // short rows, many to a block
    round_case(1, 1000003, 1000003, 0);
}

// SwiGLU's backward against the CPU's, from aligned arrays (16-byte path) and from arrays one
// float in (element by element), n not a multiple of four.
static void test_swiglu_bwd(void)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    size_t n = 1001;
    uint64_t rng = 77;
    float *dh = host_random(&rng, n + 1, 1.0f), *ga = host_random(&rng, n + 1, 3.0f);
    float *u = host_random(&rng, n + 1, 2.0f);
    float *wg = tw_malloc_array(n + 1, sizeof(float)), *wu = tw_malloc_array(n + 1, sizeof(float));
    float *hg = tw_malloc_array(n, sizeof(float)), *hu = tw_malloc_array(n, sizeof(float));
    REQUIRE(wg && wu && hg && hu);
    float *Dh = dev_of(gpu, dh, n + 1), *Ga = dev_of(gpu, ga, n + 1), *U = dev_of(gpu, u, n + 1);
    float *Dg = dev_poisoned(gpu, n + 1), *Du = dev_poisoned(gpu, n + 1);
    for (size_t off = 0; off < 2; off++) {
        tw_cpu_grad_ops.swiglu_bwd(tw_backend_cpu_ref(), wg + off, wu + off, dh + off, ga + off,
                                   u + off, n);
        g->swiglu_bwd(gpu, Dg + off, Du + off, Dh + off, Ga + off, U + off, n);
        CHECK_OK(tw_backend_sync(gpu));
        CHECK_OK(tw_backend_download(gpu, hg, Dg + off, n * sizeof(float)));
        CHECK_OK(tw_backend_download(gpu, hu, Du + off, n * sizeof(float)));
        double eg = golden_rel(hg, wg + off, n), eu = golden_rel(hu, wu + off, n);
        if (!(eg < 1e-6 && eu < 1e-6))
            fprintf(stderr, "swiglu backward (+%zu): %g %g\n", off, eg, eu);
        CHECK(eg < 1e-6 && eu < 1e-6);
    }
    float *devs[] = { Dh, Ga, U, Dg, Du };
    for (size_t i = 0; i < 5; i++)
        tw_backend_release(gpu, devs[i]);
    float *hs[] = { dh, ga, u, wg, wu, hg, hu };
    for (size_t i = 0; i < 7; i++)
        tw_free(hs[i]);
}

// x's values rounded to bf16 in place (as floats), and their bf16 copy (n values, tw_malloc'd).
static uint16_t *round_host(float *x, size_t n)
{
    uint16_t *b = tw_malloc_array(n, 2);
    REQUIRE(b);
    for (size_t i = 0; i < n; i++)
        b[i] = tw_f32_to_bf16(x[i]), x[i] = tw_bf16_to_f32(b[i]);
    return b;
}

// n bf16 values on the device, copied from the host.
static uint16_t *dev_bf16(const uint16_t *h, size_t n)
{
    uint16_t *d = tw_backend_alloc(gpu, n * 2);
    REQUIRE(d);
    CHECK_OK(tw_backend_upload(gpu, d, h, n * 2));
    return d;
}

// The bf16 hand-offs' SwiGLU (grad.h) on bf16 dh, g, u: its backward's dg, du the f32 op's on
// the same values, rounded, within one bf16 step (the bf16 kernels take the sigmoid by fast
// exp and reciprocal: a few f32 ulp that may tip a rounding); its forward within a rounding of
// silu(g) u; aligned arrays and arrays one value in (element by element).
static void test_swiglu_bf16(void)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    size_t n = 1001;
    uint64_t rng = 78;
    float *dh = host_random(&rng, n + 1, 1.0f), *ga = host_random(&rng, n + 1, 3.0f);
    float *u = host_random(&rng, n + 1, 2.0f), *hf = tw_malloc_array(n, sizeof(float));
    uint16_t *hb = tw_malloc_array(n, 2), *hb2 = tw_malloc_array(n, 2);
    REQUIRE(hf && hb && hb2);
    uint16_t *dhh = round_host(dh, n + 1), *gah = round_host(ga, n + 1),
             *uh = round_host(u, n + 1);
    float *Dh = dev_of(gpu, dh, n + 1), *Ga = dev_of(gpu, ga, n + 1), *U = dev_of(gpu, u, n + 1);
    uint16_t *Dhb = dev_bf16(dhh, n + 1), *Gab = dev_bf16(gah, n + 1), *Uab = dev_bf16(uh, n + 1);
    float *Dg = dev_poisoned(gpu, n + 1);
    uint16_t *Gb = tw_backend_alloc(gpu, 2 * (n + 1)), *Ub = tw_backend_alloc(gpu, 2 * (n + 1));
    REQUIRE(Gb && Ub);
    for (size_t off = 0; off < 2; off++) {
        bool same = true;
        g->swiglu_bwd_bf16(gpu, Gb + off, Ub + off, Dhb + off, Gab + off, Uab + off, 1, n, n);
        for (int which = 0; which < 2; which++) { // dg, then du
            float *Du = dev_poisoned(gpu, n + 1);
            g->swiglu_bwd(gpu, which ? Du + off : Dg + off, which ? Dg + off : Du + off, Dh + off,
                          Ga + off, U + off, n);
            CHECK_OK(tw_backend_sync(gpu));
            CHECK_OK(tw_backend_download(gpu, hf, Dg + off, n * sizeof(float)));
            CHECK_OK(tw_backend_download(gpu, hb, (which ? Ub : Gb) + off, n * 2));
            for (size_t i = 0; i < n; i++)
                same &= abs((int)hb[i] - (int)tw_f32_to_bf16(hf[i])) <= 1;
            tw_backend_release(gpu, Du);
        }
        CHECK(same);
        g->swiglu_bf16(gpu, Gb + off, Gab + off, Uab + off, 1, n, n);
        CHECK_OK(tw_backend_sync(gpu));
        CHECK_OK(tw_backend_download(gpu, hb2, Gb + off, n * 2));
        double worst = 0;
        for (size_t i = 0; i < n; i++) {
            double x = ga[off + i], want = x / (1 + exp(-x)) * u[off + i];
            worst = fmax(worst, fabs(tw_bf16_to_f32(hb2[i]) - want) / (fabs(want) + 1e-3));
        }
        if (!(worst < 8e-3))
            fprintf(stderr, "swiglu_bf16 (+%zu): %g\n", off, worst);
        CHECK(worst < 8e-3);
    }
    void *devs[] = { Dh, Ga, U, Dg, Gb, Ub, Dhb, Gab, Uab };
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++)
        tw_backend_release(gpu, devs[i]);
    tw_free(dh), tw_free(ga), tw_free(u), tw_free(hf), tw_free(hb), tw_free(hb2);
    tw_free(dhh), tw_free(gah), tw_free(uh);
}

// The hand-offs' SwiGLU on g and u side by side in rows (the stacked gate and up products'
// output: rows of 2F, u = g + F; and rows wider still): h, dg and du the same bits as the dense
// ops' on the same values, the gaps between rows untouched; F a multiple of 8 (16-byte pieces)
// and not (element by element).
static void swiglu_rows_case(int64_t N, int64_t F, int64_t ld)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    size_t n = (size_t)(N * F), nr = (size_t)(N * ld);
    uint64_t rng = (uint64_t)(N + F + ld);
    float *x = host_random(&rng, nr, 2.0f), *d = host_random(&rng, n, 1.0f);
    uint16_t *gu = round_host(x, nr), *dh = round_host(d, n);
    uint16_t *gd = tw_malloc_array(n, 2), *ud = tw_malloc_array(n, 2);
    uint16_t *want = tw_malloc_array(3 * n, 2), *got = tw_malloc_array(nr + n, 2);
    REQUIRE(gd && ud && want && got);
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < F; i++)
            gd[t * F + i] = gu[t * ld + i], ud[t * F + i] = gu[t * ld + F + i];
    uint16_t *GU = dev_bf16(gu, nr), *G = dev_bf16(gd, n), *U = dev_bf16(ud, n);
    uint16_t *DH = dev_bf16(dh, n), *D3 = tw_backend_alloc(gpu, 3 * n * 2);
    uint16_t *DGU = dev_bf16(gu, nr), *H = tw_backend_alloc(gpu, n * 2); // (gaps: gu's values)
    REQUIRE(D3 && H);
    g->swiglu_bf16(gpu, D3, G, U, N, F, F);
    g->swiglu_bwd_bf16(gpu, D3 + n, D3 + 2 * n, DH, G, U, N, F, F);
    g->swiglu_bf16(gpu, H, GU, GU + F, N, F, ld);
    g->swiglu_bwd_bf16(gpu, DGU, DGU + F, DH, GU, GU + F, N, F, ld);
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, want, D3, 3 * n * 2));
    CHECK_OK(tw_backend_download(gpu, got, DGU, nr * 2));
    CHECK_OK(tw_backend_download(gpu, got + nr, H, n * 2));
    bool same = memcmp(got + nr, want, n * 2) == 0;
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < ld; i++) {
            uint16_t v = got[t * ld + i];
            same &= i < F       ? v == want[n + t * F + i]
                    : i < 2 * F ? v == want[2 * n + t * F + i - F]
                                : v == gu[t * ld + i];
        }
    if (!same)
        fprintf(stderr, "swiglu on rows (N %lld, F %lld, ld %lld) differs from dense\n",
                (long long)N, (long long)F, (long long)ld);
    CHECK(same);
    void *devs[] = { GU, G, U, DH, D3, DGU, H };
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++)
        tw_backend_release(gpu, devs[i]);
    tw_free(x), tw_free(d), tw_free(gu), tw_free(dh), tw_free(gd), tw_free(ud), tw_free(want);
    tw_free(got);
}

// add_bf16 (grad.h: a product's bf16 output added to the f32 residual stream) against the
// host's a + b, bit for bit; aligned arrays and arrays one value in (element by element).
static void test_add_bf16(void)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    size_t n = 1001;
    uint64_t rng = 17;
    float *a = host_random(&rng, n + 1, 3.0f), *b = host_random(&rng, n + 1, 1.0f);
    float *y = tw_malloc_array(n, sizeof(float));
    REQUIRE(y);
    uint16_t *bh = round_host(b, n + 1), *B16 = dev_bf16(bh, n + 1);
    float *A = dev_of(gpu, a, n + 1), *Y = dev_poisoned(gpu, n + 1);
    for (size_t off = 0; off < 2; off++) {
        g->add_bf16(gpu, Y + off, A + off, B16 + off, (int64_t)n);
        CHECK_OK(tw_backend_sync(gpu));
        CHECK_OK(tw_backend_download(gpu, y, Y + off, n * sizeof(float)));
        bool same = true;
        for (size_t i = 0; i < n; i++)
            same &= y[i] == a[off + i] + tw_bf16_to_f32(bh[off + i]);
        CHECK(same);
    }
    tw_backend_release(gpu, A), tw_backend_release(gpu, Y), tw_backend_release(gpu, B16);
    tw_free(a), tw_free(b), tw_free(y), tw_free(bh);
}

static void test_swiglu_rows(void)
{
    swiglu_rows_case(37, 24, 48);
    swiglu_rows_case(19, 13, 26);
    swiglu_rows_case(5, 16, 40);
}

// The hand-offs' RoPE in place on bf16 values (x NULL) against its rotation of the same values
// given in f32 (rounded into a copy), bit for bit: neox pairs and interleaved ones, a head of
// 64 rotated whole and one of 128 with 96 dims rotated (the rest passed through), negative
// positions (the backward's).
static void rope_bf16_case(int64_t N, int64_t heads, int32_t D, int32_t n_rot, bool neox)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    size_t n = (size_t)(N * heads * D);
    uint64_t rng = (uint64_t)(N * 7 + D + neox);
    float *x = host_random(&rng, n, 2.0f), *freq = tw_malloc_array((size_t)n_rot / 2, 4);
    int32_t *pos = tw_malloc_array((size_t)N, sizeof(int32_t));
    uint16_t *a = tw_malloc_array(n, 2), *b = tw_malloc_array(n, 2);
    REQUIRE(freq && pos && a && b);
    for (int i = 0; i < n_rot / 2; i++)
        freq[i] = powf(10000.0f, -2.0f * (float)i / (float)n_rot);
    for (int64_t t = 0; t < N; t++)
        pos[t] = (int32_t)(t % 2 ? t * 37 % 3001 : -(t * 11 % 997));
    uint16_t *xh = round_host(x, n);
    float *X = dev_of(gpu, x, n);
    uint16_t *A = tw_backend_alloc(gpu, n * 2), *Bb = dev_bf16(xh, n);
    REQUIRE(A);
    struct tw_rope r = { .head_dim = D, .n_rot = n_rot, .neox = neox, .inv_freq = freq };
    g->rope_bf16(gpu, A, 0, X, false, pos, N, heads, &r);
    g->rope_bf16(gpu, Bb, 0, NULL, false, pos, N, heads, &r);
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, a, A, n * 2));
    CHECK_OK(tw_backend_download(gpu, b, Bb, n * 2));
    if (memcmp(a, b, n * 2) != 0)
        fprintf(stderr, "rope_bf16 in place (N %lld, heads %lld, D %d, rot %d) differs\n",
                (long long)N, (long long)heads, D, n_rot);
    CHECK(memcmp(a, b, n * 2) == 0);
    // into rows wider than the heads (the stacked q, k, v gradients' rows): the same values,
    // the gaps untouched
    int64_t ld = heads * D + 40;
    uint16_t *w = tw_malloc_array((size_t)(N * ld), 2);
    REQUIRE(w);
    memset(w, 0x7f, (size_t)(N * ld) * 2);
    uint16_t *Wd = dev_bf16(w, (size_t)(N * ld));
    g->rope_bf16(gpu, Wd, ld, X, false, pos, N, heads, &r);
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, w, Wd, (size_t)(N * ld) * 2));
    bool rows_same = true;
    for (int64_t t = 0; t < N; t++) {
        rows_same &= memcmp(w + t * ld, a + t * heads * D, (size_t)(heads * D) * 2) == 0;
        for (int64_t i = heads * D; i < ld; i++)
            rows_same &= w[t * ld + i] == 0x7f7f;
    }
    CHECK(rows_same);
    tw_backend_release(gpu, Wd), tw_free(w);
    // against the rotation in double (the angle in f32, as the kernel forms it): within a bf16
    // rounding; the dims past n_rot passed through as they were
    double worst = 0;
    bool kept = true;
    for (int64_t t = 0; t < N; t++)
        for (int64_t h = 0; h < heads; h++) {
            const float *xr = x + (t * heads + h) * D;
            const uint16_t *br = b + (t * heads + h) * D;
            for (int i = 0; i < n_rot / 2; i++) {
                int i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
                double ang = (double)((float)pos[t] * freq[i]);
                double r0 = xr[i0] * cos(ang) - xr[i1] * sin(ang);
                double r1 = xr[i1] * cos(ang) + xr[i0] * sin(ang);
                worst = fmax(worst, fabs(tw_bf16_to_f32(br[i0]) - r0) / (fabs(r0) + 1e-3));
                worst = fmax(worst, fabs(tw_bf16_to_f32(br[i1]) - r1) / (fabs(r1) + 1e-3));
            }
            for (int i = n_rot; i < D; i++)
                kept &= br[i] == xh[(t * heads + h) * D + i];
        }
    if (!(worst < 8e-3))
        fprintf(stderr, "rope_bf16 (D %d, rot %d): %g from the rotation in double\n", D, n_rot,
                worst);
    CHECK(worst < 8e-3);
    CHECK(kept);
    tw_backend_release(gpu, X), tw_backend_release(gpu, A), tw_backend_release(gpu, Bb);
    tw_free(x), tw_free(freq), tw_free(pos), tw_free(a), tw_free(b), tw_free(xh);
}

static void test_rope_bf16(void)
{
    rope_bf16_case(77, 12, 64, 64, true);
    rope_bf16_case(5000, 3, 64, 64, false); // enough rows for 8 heads a warp
    rope_bf16_case(301, 4, 128, 96, true);
}

// The hand-offs' products with bf16 outputs (grad.h): linear_fwd_bf16's yb against its f32 y
// (within one rounding: cuBLAS may sum in another order for another output type; with a bias
// the same product, so the f32 y plus the bias rounded, bit for bit), and linear_bwd_bf16's dxb
// against its f32 dx, on rows that are not multiples of a tile.
static void test_linear_bf16(void)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    const int64_t N = 77, K = 200, M = 136;
    uint64_t rng = 91;
    float *x = host_random(&rng, (size_t)(N * K), 1.0f),
          *w = host_random(&rng, (size_t)(M * K), 0.1f);
    float *dy = host_random(&rng, (size_t)(N * M), 1.0f), *b = host_random(&rng, (size_t)M, 1.0f);
    uint16_t *xh = round_host(x, (size_t)(N * K)), *wh = round_host(w, (size_t)(M * K));
    uint16_t *dyh = round_host(dy, (size_t)(N * M));
    uint16_t *Xb = dev_bf16(xh, (size_t)(N * K)), *Wb = dev_bf16(wh, (size_t)(M * K));
    uint16_t *Dyb = dev_bf16(dyh, (size_t)(N * M));
    float *Bias = dev_of(gpu, b, (size_t)M), *Y = dev_poisoned(gpu, (size_t)(N * M));
    float *Dx = dev_poisoned(gpu, (size_t)(N * K));
    uint16_t *Yb = tw_backend_alloc(gpu, (size_t)(N * M) * 2);
    uint16_t *Dxb = tw_backend_alloc(gpu, (size_t)(N * K) * 2);
    REQUIRE(Yb && Dxb);
    struct tw_tensor wt;
    REQUIRE(tw_tensor_init(&wt, TW_DTYPE_BF16, 2, (int64_t[]){ M, K }, Wb, "w") == 0);
    wt.device = TW_DEVICE_CUDA;
    float *yf = tw_malloc_array((size_t)(N * K), sizeof(float));
    uint16_t *yb = tw_malloc_array((size_t)(N * K), 2);
    REQUIRE(yf && yb);
    for (int bias = 0; bias < 2; bias++) {
        const float *bp = bias ? Bias : NULL;
        CHECK_OK(g->linear_fwd_bf16(gpu, Y, NULL, Xb, &wt, bp, N));
        CHECK_OK(g->linear_fwd_bf16(gpu, NULL, Yb, Xb, &wt, bp, N));
        CHECK_OK(tw_backend_sync(gpu));
        CHECK_OK(tw_backend_download(gpu, yf, Y, (size_t)(N * M) * sizeof(float)));
        CHECK_OK(tw_backend_download(gpu, yb, Yb, (size_t)(N * M) * 2));
        bool same = true;
        double worst = 0;
        for (int64_t i = 0; i < N * M; i++) {
            same &= yb[i] == tw_f32_to_bf16(yf[i]);
            worst = fmax(worst, fabs(tw_bf16_to_f32(yb[i]) - yf[i]) / (fabs(yf[i]) + 1e-2));
        }
        printf("linear_fwd_bf16 (bias %d): bf16 output against f32's, worst %.2e, %s\n", bias,
               worst, same ? "bit for bit" : "not bit for bit");
        CHECK(worst < 8e-3);
        if (bias)
            CHECK(same);
    }
    CHECK_OK(g->linear_bwd_bf16(gpu, Dx, NULL, false, NULL, NULL, NULL, Dyb, Xb, &wt, N));
    CHECK_OK(g->linear_bwd_bf16(gpu, NULL, Dxb, false, NULL, NULL, NULL, Dyb, Xb, &wt, N));
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, yf, Dx, (size_t)(N * K) * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, yb, Dxb, (size_t)(N * K) * 2));
    double worst = 0;
    for (int64_t i = 0; i < N * K; i++)
        worst = fmax(worst, fabs(tw_bf16_to_f32(yb[i]) - yf[i]) / (fabs(yf[i]) + 1e-2));
    printf("linear_bwd_bf16: bf16 dx against f32's, worst %.2e\n", worst);
    CHECK(worst < 8e-3);
    void *devs[] = { Xb, Wb, Dyb, Bias, Y, Dx, Yb, Dxb };
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++)
        tw_backend_release(gpu, devs[i]);
    tw_free(x), tw_free(w), tw_free(dy), tw_free(b), tw_free(xh), tw_free(wh), tw_free(dyh);
    tw_free(yf), tw_free(yb);
}

// adamw_multi (one launch over many tensors, grad.h) against adamw tensor by tensor: the same
// weights and moments bit for bit, each tensor's decay or none, and the bf16 copies where asked
// for the new weights rounded; sizes around a block's 1024 elements, and an empty tensor.
static void test_adamw_multi(void)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    enum { NS = 5 };
    const int64_t ns[NS] = { 1000, 1024, 0, 4097, 33 };
    const bool decay[NS] = { true, false, true, true, false },
               copy[NS] = { true, true, false, false, true };
    int64_t total = 0;
    for (int i = 0; i < NS; i++)
        total += ns[i];
    uint64_t rng = 5;
    float *w = host_random(&rng, (size_t)total, 1.0f),
          *gr = host_random(&rng, (size_t)total, 1.0f);
    float *m = host_random(&rng, (size_t)total, 0.1f), *v = host_random(&rng, (size_t)total, 0.1f);
    for (int64_t i = 0; i < total; i++)
        v[i] = fabsf(v[i]);
    float *W[2], *M[2], *V[2], *G = dev_of(gpu, gr, (size_t)total);
    for (int k = 0; k < 2; k++)
        W[k] = dev_of(gpu, w, (size_t)total), M[k] = dev_of(gpu, m, (size_t)total),
        V[k] = dev_of(gpu, v, (size_t)total);
    uint16_t *Wb = tw_backend_alloc(gpu, (size_t)total * 2);
    REQUIRE(Wb);
    struct tw_adamw_args a = { .step_size = 1e-3f,
                               .beta1 = 0.9f,
                               .beta2 = 0.95f,
                               .eps = 1e-8f,
                               .decay = 0.999f,
                               .bc2_sqrt = 0.3f };
    struct tw_adamw_seg seg[NS];
    for (int rep = 0; rep < 2; rep++) { // twice: the second finds its table on the device
        int64_t off = 0;
        for (int i = 0; i < NS; i++) {
            struct tw_adamw_args ai = a;
            ai.decay = decay[i] ? a.decay : 1.0f;
            g->adamw(gpu, W[0] + off, G + off, M[0] + off, V[0] + off, (size_t)ns[i], &ai);
            seg[i] = (struct tw_adamw_seg){
                W[1] + off, G + off, M[1] + off, V[1] + off, copy[i] ? Wb + off : NULL,
                ns[i],      decay[i]
            };
            off += ns[i];
        }
        g->adamw_multi(gpu, seg, NS, &a);
    }
    CHECK_OK(tw_backend_sync(gpu));
    float *h[2][3];
    for (int k = 0; k < 2; k++) {
        float *src[3] = { W[k], M[k], V[k] };
        for (int j = 0; j < 3; j++) {
            h[k][j] = tw_malloc_array((size_t)total, sizeof(float));
            REQUIRE(h[k][j]);
            CHECK_OK(tw_backend_download(gpu, h[k][j], src[j], (size_t)total * sizeof(float)));
        }
    }
    uint16_t *hb = tw_malloc_array((size_t)total, 2);
    REQUIRE(hb);
    CHECK_OK(tw_backend_download(gpu, hb, Wb, (size_t)total * 2));
    bool same = true, copies = true, moved = false;
    for (int j = 0; j < 3; j++)
        same &= memcmp(h[0][j], h[1][j], (size_t)total * sizeof(float)) == 0;
    int64_t off = 0;
    for (int i = 0; i < NS; i++) {
        for (int64_t e = off; e < off + ns[i] && copy[i]; e++)
            copies &= hb[e] == tw_f32_to_bf16(h[1][0][e]);
        off += ns[i];
    }
    for (int64_t e = 0; e < total; e++)
        moved |= h[1][0][e] != w[e];
    if (!same || !copies)
        fprintf(stderr, "adamw_multi: %s, copies %s\n", same ? "same" : "differs",
                copies ? "equal" : "differ");
    CHECK(same && copies && moved);
    void *devs[] = { W[0], W[1], M[0], M[1], V[0], V[1], G, Wb };
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++)
        tw_backend_release(gpu, devs[i]);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 3; j++)
            tw_free(h[k][j]);
    tw_free(w), tw_free(gr), tw_free(m), tw_free(v), tw_free(hb);
}

// RMSNorm's passes on the GPU against the CPU's, N rows of C: the backward adding into dx (the
// CPU's within 1e-5) and into dw (its column sums: within 1e-4), its hand-off's bf16 dx the f32
// one rounded and its forward's bf16 y the f32 one rounded, bit for bit. C from a head's 64 to
// past a warp's 1024 (the block path), rows of sizes that are not multiples of 32.
static void norm_case(int64_t N, int64_t C)
{
    const struct tw_grad_ops *g = tw_backend_grad(gpu);
    size_t n = (size_t)(N * C);
    uint64_t rng = (uint64_t)(N * 7 + C);
    float *x = host_random(&rng, n, 2.0f), *dy = host_random(&rng, n, 1.0f);
    float *w = host_random(&rng, (size_t)C, 1.0f), *dx = host_random(&rng, n, 1.0f);
    float *dw = host_random(&rng, (size_t)C, 1.0f), *y = tw_malloc_array(n, sizeof(float));
    float *rstd = tw_malloc_array((size_t)N, sizeof(float)), *h = tw_malloc_array(n, 4);
    uint16_t *hb = tw_malloc_array(n, 2);
    REQUIRE(y && rstd && h && hb);
    float *X = dev_of(gpu, x, n), *DY = dev_of(gpu, dy, n), *W = dev_of(gpu, w, (size_t)C);
    float *DX = dev_of(gpu, dx, n), *DW = dev_of(gpu, dw, (size_t)C), *Y = dev_poisoned(gpu, n);
    float *R = dev_poisoned(gpu, (size_t)N);
    uint16_t *B16 = tw_backend_alloc(gpu, n * 2);
    REQUIRE(B16);
    tw_rmsnorm_fwd(y, rstd, x, w, N, C, 1e-5f);
    tw_rmsnorm_bwd(dx, dw, dy, x, w, rstd, N, C);
    g->rmsnorm_fwd(gpu, Y, R, X, W, N, C, 1e-5f);
    g->rmsnorm_bwd_bf16(gpu, DX, B16, DW, DY, X, W, R, N, C);
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, h, DX, n * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, hb, B16, n * 2));
    double ex = golden_rel(h, dx, n);
    bool same = true;
    for (size_t i = 0; i < n; i++)
        same &= hb[i] == tw_f32_to_bf16(h[i]);
    CHECK_OK(tw_backend_download(gpu, h, DW, (size_t)C * sizeof(float)));
    double ew = golden_rel(h, dw, (size_t)C);
    g->rmsnorm_fwd_bf16(gpu, B16, R, X, W, N, C, 1e-5f);
    CHECK_OK(tw_backend_sync(gpu));
    CHECK_OK(tw_backend_download(gpu, h, Y, n * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, hb, B16, n * 2));
    double ey = golden_rel(h, y, n);
    for (size_t i = 0; i < n; i++)
        same &= hb[i] == tw_f32_to_bf16(h[i]);
    if (!(ex < 1e-5 && ew < 1e-4 && ey < 1e-5 && same))
        fprintf(stderr, "rmsnorm %lld x %lld: dx %g dw %g y %g, bf16 copies %s\n", (long long)N,
                (long long)C, ex, ew, ey, same ? "equal" : "differ");
    CHECK(ex < 1e-5 && ew < 1e-4 && ey < 1e-5 && same);
    float *devs[] = { X, DY, W, DX, DW, Y, R, (float *)B16 };
    for (size_t i = 0; i < 8; i++)
        tw_backend_release(gpu, devs[i]);
    float *hs[] = { x, dy, w, dx, dw, y, rstd, h, (float *)hb };
    for (size_t i = 0; i < 9; i++)
        tw_free(hs[i]);
}

static void test_norms(void)
{
    norm_case(1000, 64);
    norm_case(333, 100);
    norm_case(77, 90); // (not a multiple of 4: the scalar warp kernel)
    norm_case(130, 576);
    norm_case(257, 768);
    norm_case(70, 1024);
    norm_case(50, 1500);
}

int main(int argc, char **argv)
{
    REQUIRE(tw_backend_open("cuda", 0, &gpu) == 0);
    test_round();
    test_swiglu_bwd();
    test_swiglu_bf16();
    test_swiglu_rows();
    test_add_bf16();
    test_linear_bf16();
    test_rope_bf16();
    test_adamw_multi();
    test_norms();
    test_attention();
    if (argc > 1 && strcmp(argv[1], "--attention") == 0) {
        tw_backend_free(gpu);
        return check_report("cuda_test_train --attention");
    }
    struct tw_model *g = golden_llama();
    test_full(g);
    test_recompute(g);
    test_stacked(g);
    test_lora(g);
    test_loop(g);
    tw_model_close(g);
    tw_backend_free(gpu);
    return check_report("cuda_test_train");
}

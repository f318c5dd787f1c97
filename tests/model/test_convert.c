// twin convert on the golden models: HF -> GGUF f32 gives the same logits and the same 64
// greedy tokens (through llama.cpp's q/k row order and adjacent-pair RoPE), the tokenizer
// travels in the GGUF; f16, bf16, q8_0, q4_0 and q4_K stay within their tolerance and move
// the perplexity on a State of the Union address by a bounded amount (printed: the recorded
// figures); GGUF -> HF gives back the same weights; the embedder and the reranker convert
// too; quantised weights written in their own dtype keep their bytes; a damaged GGUF is an
// error.
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/mem.h"
#include "check.h"
#include "golden_models.h"
#include "model/context.h"
#include "model/convert.h"
#include "model/embed.h"
#include "model/model.h"
#include "sotu.h"

static char root[] = "/tmp/twin-test-convert-XXXXXX";
static struct tw_backend *be;

static const char *tmp(const char *name)
{
    static char p[4][4200];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", root, name);
    return p[k];
}

// Logits of every prompt position, (n, V) into out.
static void prompt_logits(struct tw_model *m, const int32_t *ids, int32_t n, float *out)
{
    tw_ctx *c;
    struct tw_ctx_params p = { .n_ctx = 512 };
    REQUIRE(tw_ctx_new(m, be, &p, &c) == 0);
    CHECK_OK(tw_ctx_decode(c, ids, n, out, true));
    tw_ctx_free(c);
}

static double perplexity(struct tw_model *m, const int32_t *ids, int32_t n)
{
    tw_ctx *c;
    struct tw_ctx_params p = { .n_ctx = 256 };
    REQUIRE(tw_ctx_new(m, be, &p, &c) == 0);
    double nll = 0;
    int32_t count = 0;
    CHECK_OK(tw_ctx_perplexity(c, ids, n, &nll, &count));
    tw_ctx_free(c);
    return exp(nll / count);
}

// The first 1024 tokens of Washington's first address.
static int32_t sotu_ids(struct tw_model *m, int32_t *out, int32_t cap)
{
    const char *top = test_source_dir();
    char p[4200];
    snprintf(p, sizeof p, "%s/.cache/data/sotu/1790_george_washington_n.txt", top);
    char *text;
    size_t len;
    REQUIRE(tw_file_read(p, 1 << 20, &text, &len) == 0);
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    REQUIRE(tw_tokenizer_encode(m->tok, text, len, TW_TOK_ADD_SPECIAL, &ids, NULL) == 0);
    int32_t n = (int32_t)ids.len < cap ? (int32_t)ids.len : cap;
    memcpy(out, ids.data, (size_t)n * sizeof(int32_t));
    tw_vec_free(&ids);
    tw_free(text);
    return n;
}

static void decoder(const char *name)
{
    struct golden g;
    golden_open(&g, name);
    struct tw_model *hf;
    test_need_source(tw_model_open(g.dir, &hf) == 0, g.dir);
    size_t V = (size_t)hf->cfg.n_vocab, n;
    tw_vec want;
    tw_vec_init(&want, sizeof(int32_t));
    golden_ids(json_object_get(g.exp, "prompt_ids"), &want);
    const float *exp_logits = golden_array(&g, "logits_prompt", &n);
    int32_t T = (int32_t)want.len;
    float *logits = tw_malloc_array((size_t)T * V, sizeof(float));
    int32_t ppl_ids[1024];
    int32_t n_ppl = sotu_ids(hf, ppl_ids, 1024);
    double ppl_hf = perplexity(hf, ppl_ids, n_ppl);

    static const struct {
        const char *type;
        double tol, ppl_tol; // relative logit error; relative perplexity change
    } types[] = { { "f32", 1e-5, 1e-5 },  { "f16", 5e-3, 2e-3 },  { "bf16", 3e-2, 1e-2 },
                  { "q8_0", 6e-2, 1e-2 }, { "q4_0", 7e-1, 3e-2 }, { "q4_K", 7e-1, 3e-2 } };
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        enum tw_dtype dt;
        REQUIRE(tw_dtype_from_name(types[k].type, &dt) == 0);
        char file[128];
        snprintf(file, sizeof file, "%s-%s.gguf", name, types[k].type);
        CHECK_OK(tw_convert_to_gguf(hf, tmp(file), dt));
        // The file exists now: a second conversion is refused, the file as it was.
        struct stat before, after;
        CHECK(stat(tmp(file), &before) == 0);
        CHECK(tw_convert_to_gguf(hf, tmp(file), TW_DTYPE_F32) == TW_EEXIST);
        CHECK(stat(tmp(file), &after) == 0 && after.st_size == before.st_size &&
              after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
        struct tw_model *gg = NULL;
        CHECK_OK(tw_model_open(tmp(file), &gg));
        if (!gg)
            continue;
        // The tokenizer came along: the same prompt ids.
        tw_vec ids;
        tw_vec_init(&ids, sizeof(int32_t));
        const char *prompt = json_string_value(json_object_get(g.exp, "prompt"));
        CHECK(gg->tok != NULL);
        if (gg->tok) {
            CHECK_OK(tw_tokenizer_encode(gg->tok, prompt, strlen(prompt), TW_TOK_ADD_SPECIAL, &ids,
                                         NULL));
            CHECK(ids.len == want.len && memcmp(ids.data, want.data, ids.len * 4) == 0);
        }
        tw_vec_free(&ids);
        prompt_logits(gg, want.data, T, logits);
        double e = 0;
        for (int32_t t = 0; t < T; t++)
            e = fmax(e, golden_rel(logits + (size_t)t * V, exp_logits + (size_t)t * V, V));
        double ppl = perplexity(gg, ppl_ids, n_ppl);
        double dppl = (ppl - ppl_hf) / ppl_hf;
        printf("%-8s %-5s logits rel. error %.2e, perplexity %.4f -> %.4f (%+.3f%%)\n", name,
               types[k].type, e, ppl_hf, ppl, 100 * dppl);
        CHECK(e <= types[k].tol);
        CHECK(fabs(dppl) <= types[k].ppl_tol);
        // f32: back to a Hugging Face folder, the same weights bit for bit.
        if (dt == TW_DTYPE_F32) {
            char dir[128];
            snprintf(dir, sizeof dir, "%s-back", name);
            CHECK_OK(tw_convert_to_hf(gg, tmp(dir), TW_DTYPE_F32));
            struct tw_model *back = NULL;
            CHECK_OK(tw_model_open(tmp(dir), &back));
            if (back) {
                CHECK(back->cfg.rope_neox && back->cfg.n_layer == hf->cfg.n_layer);
                // The tokenizer was written as tokenizer.json: the same ids again.
                tw_vec ids2;
                tw_vec_init(&ids2, sizeof(int32_t));
                CHECK(back->tok != NULL);
                if (back->tok)
                    CHECK_OK(tw_tokenizer_encode(back->tok, prompt, strlen(prompt),
                                                 TW_TOK_ADD_SPECIAL, &ids2, NULL));
                CHECK(ids2.len == want.len && memcmp(ids2.data, want.data, ids2.len * 4) == 0);
                tw_vec_free(&ids2);
                prompt_logits(back, want.data, T, logits);
                float *orig = tw_malloc_array((size_t)T * V, sizeof(float));
                prompt_logits(hf, want.data, T, orig);
                CHECK(memcmp(orig, logits, (size_t)T * V * sizeof(float)) == 0);
                tw_free(orig);
            }
            tw_model_close(back);
            // The destination exists now: a second conversion is refused, nothing changed.
            CHECK(tw_convert_to_hf(gg, tmp(dir), TW_DTYPE_F32) == TW_EEXIST);
        }
        tw_model_close(gg);
    }
    tw_free(logits);
    tw_vec_free(&want);
    tw_model_close(hf);
    golden_close(&g);
}

static void encoders(void)
{
    struct golden g;
    golden_open(&g, "bert_embed");
    struct tw_model *hf, *gg = NULL;
    test_need_source(tw_model_open(g.dir, &hf) == 0, g.dir);
    CHECK_OK(tw_convert_to_gguf(hf, tmp("embed.gguf"), TW_DTYPE_F32));
    CHECK_OK(tw_model_open(tmp("embed.gguf"), &gg));
    size_t n, C = (size_t)hf->cfg.n_embd;
    const float *exp = golden_array(&g, "embeddings", &n);
    json_t *sent = json_object_get(g.exp, "sentences");
    if (gg) {
        CHECK(gg->cfg.arch == TW_ARCH_BERT && gg->cfg.normalize &&
              gg->cfg.pooling == TW_POOL_MEAN);
        tw_ctx *c;
        REQUIRE(tw_ctx_new(gg, be, NULL, &c) == 0);
        float *out = tw_malloc_array(C, sizeof(float));
        for (size_t i = 0; i < json_array_size(sent); i++) {
            const char *s = json_string_value(json_array_get(sent, i));
            CHECK_OK(tw_embed_text(c, gg, s, strlen(s), out));
            CHECK(golden_rel(out, exp + i * C, C) <= 1e-4);
        }
        tw_free(out);
        tw_ctx_free(c);
    }
    tw_model_close(gg);
    tw_model_close(hf);
    golden_close(&g);

    golden_open(&g, "bert_rerank");
    test_need_source(tw_model_open(g.dir, &hf) == 0, g.dir);
    gg = NULL;
    CHECK_OK(tw_convert_to_gguf(hf, tmp("rerank.gguf"), TW_DTYPE_F32));
    CHECK_OK(tw_model_open(tmp("rerank.gguf"), &gg));
    if (gg) {
        CHECK(gg->cfg.arch == TW_ARCH_BERT_CLS && gg->cfg.n_labels == 1);
        const float *scores = golden_array(&g, "scores", &n);
        const char *q = json_string_value(json_object_get(g.exp, "query"));
        json_t *docs = json_object_get(g.exp, "passages");
        tw_ctx *c;
        REQUIRE(tw_ctx_new(gg, be, NULL, &c) == 0);
        for (size_t i = 0; i < n; i++) {
            const char *d = json_string_value(json_array_get(docs, i));
            float s = 0;
            CHECK_OK(tw_rerank_score(c, gg, q, strlen(q), d, strlen(d), &s));
            CHECK(fabs(s - scores[i]) <= 1e-4 * fabs(scores[i]) + 1e-6);
        }
        tw_ctx_free(c);
    }
    tw_model_close(gg);
    tw_model_close(hf);
    golden_close(&g);
}

// q4_K proper (the golden models' rows of 64 fall back to q4_0): a random model with rows of
// 256, its f32 logits against its q4_K and q6_K... conversion's.
static void kquants(void)
{
    struct tw_model_config c = { .arch = TW_ARCH_QWEN2,
                                 .n_vocab = 300,
                                 .n_embd = 256,
                                 .n_layer = 2,
                                 .n_head = 4,
                                 .n_head_kv = 2,
                                 .head_dim = 64,
                                 .n_ff = 512,
                                 .n_ctx_train = 1024,
                                 .norm_eps = 1e-6f,
                                 .rope_theta = 10000,
                                 .rope_neox = true,
                                 .attn_bias = true,
                                 .act = TW_ACT_SILU };
    struct tw_model *m;
    REQUIRE(tw_model_random(&c, TW_DTYPE_F32, 7, &m) == 0);
    int32_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = (i * 37 + 11) % 300;
    size_t V = 300;
    float *ref = tw_malloc_array(40 * V, sizeof(float)), *got = tw_malloc_array(40 * V, 4);
    prompt_logits(m, ids, 40, ref);
    static const char *const types[] = { "q4_K", "q8_0" };
    static const double tol[] = { 0.3, 0.03 };
    for (int k = 0; k < 2; k++) {
        enum tw_dtype dt;
        REQUIRE(tw_dtype_from_name(types[k], &dt) == 0);
        remove(tmp("k.gguf")); // (the last iteration's)
        CHECK_OK(tw_convert_to_gguf(m, tmp("k.gguf"), dt));
        struct tw_model *q = NULL;
        CHECK_OK(tw_model_open(tmp("k.gguf"), &q));
        if (!q)
            continue;
        CHECK(q->layers[0].wq.dtype == dt && q->layers[1].w_down.dtype == dt);
        prompt_logits(q, ids, 40, got);
        double e = 0;
        for (int t = 0; t < 40; t++)
            e = fmax(e, golden_rel(got + t * V, ref + t * V, V));
        printf("random   %-5s logits rel. error %.2e\n", types[k], e);
        CHECK(e <= tol[k]);
        tw_model_close(q);
    }
    tw_free(ref), tw_free(got);
    tw_model_close(m);
}

// A Llama of weights made in q4_K and q8_0 (as bench/infer_cuda makes them, untied output
// included) written in its own dtype keeps its bytes: the same dtypes come back (the output
// stays q4_K, not Q4_K_M's q6_K), q and k only reordered, so the logits are the same up to
// the two RoPE layouts' rounding.
static void exact(void)
{
    const struct tw_model_shape *sh = tw_model_shape_find("tiny"); // a Llama, output untied
    REQUIRE(sh);
    const struct tw_model_config c = sh->cfg;
    size_t V = (size_t)c.n_vocab;
    int32_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = (int32_t)((i * 37 + 11) % (int)V);
    float *ref = tw_malloc_array(40 * V, sizeof(float)), *got = tw_malloc_array(40 * V, 4);
    static const enum tw_dtype types[] = { TW_DTYPE_Q4_K, TW_DTYPE_Q8_0 };
    for (int k = 0; k < 2; k++) {
        struct tw_model *m, *q = NULL;
        REQUIRE(tw_model_random(&c, types[k], 5, &m) == 0);
        CHECK(m->output.dtype == types[k] && !m->cfg.tied_embeddings);
        prompt_logits(m, ids, 40, ref);
        remove(tmp("exact.gguf")); // (the last iteration's)
        CHECK_OK(tw_convert_to_gguf(m, tmp("exact.gguf"), types[k]));
        CHECK_OK(tw_model_open(tmp("exact.gguf"), &q));
        if (q) {
            CHECK(q->output.dtype == types[k] && q->layers[1].wk.dtype == types[k]);
            CHECK(memcmp(q->layers[1].w_down.data, m->layers[1].w_down.data,
                         tw_tensor_nbytes(&m->layers[1].w_down)) == 0);
            prompt_logits(q, ids, 40, got);
            double e = 0;
            for (int t = 0; t < 40; t++)
                e = fmax(e, golden_rel(got + t * V, ref + t * V, V));
            printf("random   %-5s written as it is: logits rel. error %.2e\n",
                   tw_dtype_name(types[k]), e);
            CHECK(e <= 1e-5);
            tw_model_close(q);
        }
        tw_model_close(m);
    }
    tw_free(ref), tw_free(got);
}

// A converted file cut short, or with its magic broken: errors naming the file.
static void damaged(void)
{
    const char *p = tmp("llama-f32.gguf");
    char *data;
    size_t len;
    REQUIRE(tw_file_read(p, 64 << 20, &data, &len) == 0);
    const char *cut = tmp("cut.gguf");
    REQUIRE(tw_file_write_atomic(cut, data, len / 2) == 0);
    struct tw_model *m = NULL;
    CHECK(tw_model_open(cut, &m) < 0 && !m && strstr(tw_error_msg(), "cut.gguf"));
    data[0] = 'X';
    REQUIRE(tw_file_write_atomic(cut, data, len) == 0);
    CHECK(tw_model_open(cut, &m) == TW_EFORMAT && !m && strstr(tw_error_msg(), "cut.gguf"));
    tw_free(data);
}

int main(void)
{
    REQUIRE(mkdtemp(root));
    REQUIRE(tw_backend_cpu_new(2, &be) == 0);
    static const char *const names[] = { "llama", "smollm2", "mistral", "qwen2", "qwen3" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        decoder(names[i]);
    encoders();
    kquants();
    exact();
    damaged();
    tw_backend_free(be);
    tw_remove_tree(root);
    tw_tokenizer_thread_cleanup();
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("model_test_convert");
}

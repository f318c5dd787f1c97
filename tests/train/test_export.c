// Export against the reference libraries (tests/golden/train/export/): a model twin trained
// (LoRA SFT on the golden llama) was exported as a merged Hugging Face folder and a PEFT
// adapter; transformers' logits for the merged folder and peft's for the base with the adapter
// are recorded there. Here: twin's engine gives the merged folder those logits; loading the
// adapter's tensors back into a LoRA model and exporting again writes the same bytes for the
// adapter file and the merged weights to within 1e-6 (same_tensors says why not bytes); the
// exported folder opens with twin's model loader.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "check.h"
#include "golden_models.h"
#include "model/context.h"
#include "model/model.h"
#include "train/export.h"
#include "train/lm.h"

static char root[4200];

// The logits (n, V) of ids through twin's engine for the model folder dir.
static float *logits_of(const char *dir, const int32_t *ids, int32_t n, int32_t *V)
{
    struct tw_model *m;
    REQUIRE(tw_model_open(dir, &m) == 0);
    tw_ctx *c;
    struct tw_ctx_params p = { .n_ctx = 64, .n_batch = 64 };
    REQUIRE(tw_ctx_new(m, tw_backend_cpu_ref(), &p, &c) == 0);
    *V = m->cfg.n_vocab;
    float *l = tw_malloc_array((size_t)n * (size_t)*V, sizeof(float));
    REQUIRE(tw_ctx_decode(c, ids, n, l, true) == 0);
    tw_ctx_free(c);
    tw_model_close(m);
    return l;
}

static bool same_file(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool same = tw_file_read(a, 64 << 20, &x, &nx) == 0 &&
                tw_file_read(b, 64 << 20, &y, &ny) == 0 && nx == ny && memcmp(x, y, nx) == 0;
    tw_free(x), tw_free(y);
    return same;
}

// The merged weights: the same tensors (names, dtypes, shapes) as peft's, each value within
// 1e-6 of it relative. W + scale B A is a BLAS product, whose last bit depends on the
// library's kernel for the CPU it runs on (PyTorch's as much as OpenBLAS's): not bytes.
static bool same_tensors(const char *a, const char *b)
{
    tw_st_file *fa = NULL, *fb = NULL;
    bool same =
        tw_st_open(a, &fa) == 0 && tw_st_open(b, &fb) == 0 && tw_st_count(fa) == tw_st_count(fb);
    for (size_t i = 0; same && i < tw_st_count(fb); i++) {
        const struct tw_st_tensor *y = tw_st_tensor_at(fb, i), *x = tw_st_find(fa, y->name);
        same = x && x->dtype == y->dtype && x->dtype == TW_ST_DTYPE_F32 &&
               x->n_dims == y->n_dims && x->nbytes == y->nbytes &&
               memcmp(x->shape, y->shape, sizeof x->shape) == 0;
        const float *xv = x ? x->data : NULL, *yv = y->data;
        for (size_t j = 0; same && j < y->nbytes / sizeof(float); j++)
            same = fabsf(xv[j] - yv[j]) <= 1e-6f * fmaxf(1.0f, fabsf(yv[j]));
        if (!same)
            fprintf(stderr, "%s: tensor %s differs from %s's\n", a, y->name, b);
    }
    tw_st_close(fa);
    tw_st_close(fb);
    return same;
}

int main(void)
{
    snprintf(root, sizeof root, "%s/tests/golden/train/export", test_source_dir());
    char p[4400];
    snprintf(p, sizeof p, "%s/expected.json", root);
    json_t *exp;
    REQUIRE(tw_json_load_file(p, 1 << 20, &exp) == 0);
    snprintf(p, sizeof p, "%s/expected.safetensors", root);
    tw_st_file *st;
    REQUIRE(tw_st_open(p, &st) == 0);
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    golden_ids(json_object_get(exp, "ids"), &ids);
    int32_t n = (int32_t)ids.len, V;
    size_t ne;
    const float *want = golden_array(&(struct golden){ .st = st }, "merged_logits", &ne);
    const float *peft = golden_array(&(struct golden){ .st = st }, "peft_logits", &ne);
    // 1. twin's engine on the merged folder: transformers' logits, and peft's.
    snprintf(p, sizeof p, "%s/merged", root);
    float *got = logits_of(p, ids.data, n, &V);
    REQUIRE(ne == (size_t)n * (size_t)V);
    CHECK(golden_rel(got, want, ne) < 1e-4);
    CHECK(golden_rel(got, peft, ne) < 1e-4);
    tw_free(got);
    // 2. The adapter loaded back into a LoRA model over the base exports the same files.
    char base[4400];
    snprintf(base, sizeof base, "%s/../../models/llama", root);
    struct tw_model *bm;
    REQUIRE(tw_model_open(base, &bm) == 0);
    struct tw_lm_opts o = {
        .lora_r = 4, .lora_alpha = 8, .lora_targets = TW_PROJ_ALL, .qlora = TW_DTYPE_F32
    };
    tw_lm *lm;
    REQUIRE(tw_lm_new(bm, &o, &lm) == 0);
    snprintf(p, sizeof p, "%s/adapter/adapter_model.safetensors", root);
    tw_st_file *ad;
    REQUIRE(tw_st_open(p, &ad) == 0);
    for (size_t i = 0; i < tw_lm_n_params(lm); i++) {
        const struct tw_lm_param *q = tw_lm_param_at(lm, i);
        const struct tw_st_tensor *t = tw_st_find(ad, q->name);
        REQUIRE(t && t->nbytes == q->n * sizeof(float));
        memcpy(q->w, t->data, t->nbytes);
    }
    tw_st_close(ad);
    char tmp[] = "/tmp/twin-export-XXXXXX", dir[4200], a[4400], b[8900];
    REQUIRE(mkdtemp(tmp) != NULL);
    snprintf(dir, sizeof dir, "%s/out", tmp);
    REQUIRE(tw_lm_export_hf(lm, bm, dir, TW_DTYPE_F32) == 0);
    REQUIRE(tw_lm_save_adapter(lm, dir, base) == 0);
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", dir);
    snprintf(b, sizeof b, "%s/adapter/adapter_model.safetensors", root);
    CHECK(same_file(a, b));
    snprintf(a, sizeof a, "%s/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/merged/model.safetensors", root);
    CHECK(same_tensors(a, b));
    snprintf(a, sizeof a, "%s/tokenizer.json", dir);
    snprintf(b, sizeof b, "%s/tokenizer.json", base);
    CHECK(same_file(a, b));
    got = logits_of(dir, ids.data, n, &V);
    CHECK(golden_rel(got, want, ne) < 1e-4);
    tw_free(got);
    // An adapter needs a LoRA model; the folder must not exist yet.
    CHECK_EQ_INT(tw_lm_export_hf(lm, bm, dir, TW_DTYPE_F32), TW_EEXIST);
    tw_lm *full;
    struct tw_lm_opts fo = { 0 };
    REQUIRE(tw_lm_new(bm, &fo, &full) == 0);
    CHECK_EQ_INT(tw_lm_save_adapter(full, dir, base), TW_EINVAL);
    tw_lm_free(full);
    tw_remove_tree(tmp);
    tw_lm_free(lm);
    tw_model_close(bm);
    tw_vec_free(&ids);
    tw_st_close(st);
    json_decref(exp);
    return check_report("train_test_export");
}

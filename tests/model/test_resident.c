// Weights stay memory-mapped: opening a model copies none of them (anonymous memory barely
// moves), and after a generation run the process holds the touched weights as file-backed
// pages, plus the context (KV cache and activations) as anonymous memory — nothing more.
// Read from /proc/self/status (RssAnon, RssFile) around each step, on a random model of
// about 40 MB written as a Hugging Face folder.
#include <stdio.h>
#include <string.h>

#include "base/file.h"
#include "base/mem.h"
#include "check.h"
#include "model/context.h"
#include "model/convert.h"
#include "model/model.h"
#include "tensor/backend.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

// kB of the /proc/self/status line `key`.
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    REQUIRE(f);
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, k) == 0 && line[k] == ':')
            v = strtol(line + k + 1, NULL, 10);
    fclose(f);
    REQUIRE(v >= 0);
    return v;
}

int main(void)
{
    char root[] = "/tmp/twin-test-resident-XXXXXX";
    REQUIRE(mkdtemp(root));
    char dir[256];
    snprintf(dir, sizeof dir, "%s/model", root);
    struct tw_model_config cfg = { .arch = TW_ARCH_LLAMA,
                                   .n_vocab = 8192,
                                   .n_embd = 512,
                                   .n_layer = 4,
                                   .n_head = 8,
                                   .n_head_kv = 4,
                                   .head_dim = 64,
                                   .n_ff = 1536,
                                   .n_ctx_train = 4096,
                                   .norm_eps = 1e-5f,
                                   .rope_theta = 10000,
                                   .rope_neox = true,
                                   .act = TW_ACT_SILU };
    struct tw_model *r;
    REQUIRE(tw_model_random(&cfg, TW_DTYPE_F32, 3, &r) == 0);
    size_t weights = tw_model_weight_bytes(r);
    // Decode reads every matrix but the embedding table, of which it reads a row per token.
    long touched_kb = (long)((weights - tw_tensor_nbytes(&r->tok_embd)) >> 10);
    REQUIRE(tw_convert_to_hf(r, dir, TW_DTYPE_F32) == 0);
    tw_model_close(r);

    struct tw_backend *be;
    REQUIRE(tw_backend_cpu_new(2, &be) == 0);
    long anon0 = status_kb("RssAnon"), file0 = status_kb("RssFile");
    struct tw_model *m;
    REQUIRE(tw_model_open(dir, &m) == 0);
    long anon1 = status_kb("RssAnon"), file1 = status_kb("RssFile");
    printf("open:   anon %+ld kB, file %+ld kB (weights %zu kB)\n", anon1 - anon0, file1 - file0,
           weights >> 10);
    // Zero copy: the open leaves the weights on disk (the header and config only).
    CHECK(file1 - file0 < 1024);
    if (!SANITIZED)
        CHECK(anon1 - anon0 < 1024);

    tw_ctx *c;
    struct tw_ctx_params p = { .n_ctx = 256, .n_batch = 16 };
    REQUIRE(tw_ctx_new(m, be, &p, &c) == 0);
    float *logits = tw_malloc_array((size_t)cfg.n_vocab, sizeof(float));
    int32_t ids[12];
    for (int i = 0; i < 12; i++)
        ids[i] = i * 31 + 5;
    CHECK_OK(tw_ctx_decode(c, ids, 8, logits, false));
    for (int i = 8; i < 12; i++)
        CHECK_OK(tw_ctx_decode(c, ids + i, 1, logits, false));
    // The context told the backend what a forward streams (its kernels' prefetch follows it).
    CHECK_EQ_INT(be->stream_bytes, tw_model_weight_bytes(m));
    long anon2 = status_kb("RssAnon"), file2 = status_kb("RssFile");
    long ctx_kb = (long)(tw_ctx_bytes(c) >> 10), logits_kb = (cfg.n_vocab * 4) >> 10;
    printf(
        "decode: anon %+ld kB (context %ld kB, logits %ld kB), file %+ld kB (matrices %ld kB)\n",
        anon2 - anon1, ctx_kb, logits_kb, file2 - file1, touched_kb);
    // Every matrix was read and resides as file pages, the embedding table only in part.
    CHECK(file2 - file1 >= touched_kb);
    CHECK(file2 - file1 <= touched_kb + 2048); // the embedding rows, with fault-around
    // Anonymous memory: the context (touched part) and the logits, plus slack for the
    // threads' stacks and the allocator.
    if (!SANITIZED)
        CHECK(anon2 - anon1 <= ctx_kb + logits_kb + 2048);
    tw_free(logits);
    tw_ctx_free(c);
    tw_model_close(m);
    tw_backend_free(be);
    tw_remove_tree(root);
    return check_report("model_test_resident");
}

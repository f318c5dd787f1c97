// bench/embed: sentence embeddings per second of a BERT encoder of a real shape with random
// weights (all-MiniLM-L6-v2's: 6 layers, hidden 384), batches of --batch texts of --len
// tokens each, on the device that `twin embed` would use (--device cpu|cuda|cuda:N|auto). The peer
// is bench/embed_peers.py (sentence-transformers on the same device, same batch), run in the
// same session.
// Usage: embed [--device D] [--batch 256] [--len 128] [--batches 20] [--shape minilm-l6]
//              [--profile]   (then a batch through tensor/profile.h's wrapper: time per op)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "model/context.h"
#include "model/model.h"
#include "tensor/cuda.h"
#include "tensor/profile.h"

#include "bench_util.h"

static int fail(const char *what)
{
    fprintf(stderr, "embed: %s: %s\n", what, tw_error_msg());
    return 1;
}

int main(int argc, char **argv)
{
    const char *device = "auto", *shape = "minilm-l6";
    int batch = 256, len = 128, batches = 20;
    bool profile = false;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--device") == 0)
            device = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0)
            batch = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--len") == 0)
            len = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--batches") == 0)
            batches = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--shape") == 0)
            shape = argv[++i];
        else if (strcmp(argv[i], "--profile") == 0)
            profile = true;
        else
            return fprintf(stderr, "usage: embed [--device D] [--batch N] [--len N] "
                                   "[--batches N] [--shape S] [--profile]\n"),
                   2;
    }
    const struct tw_model_shape *shp = tw_model_shape_find(shape);
    if (!shp || batch < 1 || len < 2 || len > shp->cfg.n_ctx_train || batches < 1)
        return fprintf(stderr, "embed: bad --shape, --batch, --len or --batches\n"), 2;
    struct tw_backend *be = NULL;
    if (tw_backend_open(device, 0, &be))
        return fail(device);
    bool cuda = be->device != TW_DEVICE_CPU;
    struct tw_model *host, *m;
    if (tw_model_random(&shp->cfg, TW_DTYPE_BF16, 7, &host))
        return fail("model");
    if (cuda ? tw_model_to_backend(host, be, &m) : (m = host, 0))
        return fail("upload");
    // Texts of [CLS] + random ids + [SEP], as the tokenizer gives them.
    int32_t **ids = tw_calloc((size_t)batch, sizeof *ids), *lens = tw_calloc((size_t)batch, 4);
    float *out = tw_malloc_array((size_t)batch * (size_t)shp->cfg.n_embd, sizeof(float));
    if (!ids || !lens || !out)
        return fail("memory");
    for (int i = 0; i < batch; i++) {
        ids[i] = tw_malloc_array((size_t)len, sizeof(int32_t));
        if (!ids[i])
            return fail("memory");
        lens[i] = len;
        for (int t = 0; t < len; t++)
            ids[i][t] = t == 0         ? 101
                        : t == len - 1 ? 102
                                       : 1000 + (int32_t)((i * 31 + t * 7) % 28000);
    }
    tw_ctx *c;
    struct tw_ctx_params p = { .n_batch = batch * len };
    if (tw_ctx_new(m, be, &p, &c))
        return fail("context");
    if (tw_ctx_embed_batch(c, (const int32_t *const *)ids, lens, batch, out)) // warm-up
        return fail("embed");
    double t0 = now();
    for (int b = 0; b < batches; b++)
        if (tw_ctx_embed_batch(c, (const int32_t *const *)ids, lens, batch, out))
            return fail("embed");
    double dt = now() - t0;
    char name[256] = "cpu";
    if (cuda)
        tw_cuda_device_name(0, name, sizeof name);
    printf("embed: %s, %s (bf16 weights), %d texts of %d tokens a batch, %d batches\n", name,
           shape, batch, len, batches);
    printf("headline: %.0f sequences/s (%.0f tokens/s)\n", batch * batches / dt,
           (double)batch * len * batches / dt);
    tw_ctx_free(c);
    struct tw_backend *pbe = NULL;
    if (profile && tw_backend_profile_new(be, &pbe) == 0 && tw_ctx_new(m, pbe, &p, &c) == 0) {
        int rc = tw_ctx_embed_batch(c, (const int32_t *const *)ids, lens, batch, out); // warm
        tw_backend_profile_reset(pbe);
        double t1 = now();
        rc |= tw_ctx_embed_batch(c, (const int32_t *const *)ids, lens, batch, out);
        double all = now() - t1;
        printf("profile: one batch, each op synchronised: %.2f ms%s\n", all * 1e3,
               rc ? " (an error)" : "");
        struct tw_op_stat st;
        for (int i = 0; tw_backend_profile_stat(pbe, i, &st); i++)
            if (st.calls > 0)
                printf("  %-16s %6.0f calls %9.3f ms %5.1f%%\n", st.name, st.calls,
                       st.seconds * 1e3, 100 * st.seconds / all);
        tw_ctx_free(c);
    }
    tw_backend_free(pbe);
    if (m != host)
        tw_model_close(m);
    tw_model_close(host);
    for (int i = 0; i < batch; i++)
        tw_free(ids[i]);
    tw_free(ids), tw_free(lens), tw_free(out);
    tw_backend_free(be);
    return 0;
}

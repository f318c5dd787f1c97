// What the inference benchmarks share: the bytes a decoded token reads and where a step's
// time goes, op by op.
#ifndef TW_BENCH_INFER_H
#define TW_BENCH_INFER_H

#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "model/context.h"
#include "tensor/profile.h"

#include "bench_util.h"

// Bytes decode reads per token: every matrix but the embedding table (read one row), plus
// the table when it is also the output projection; KV reads are added by the caller.
static void add_bytes(void *arg, const char *hf, const char *gg, const struct tw_tensor *t)
{
    (void)hf, (void)gg;
    *(double *)arg += (double)tw_tensor_nbytes(t);
}

static double weight_bytes_per_token(const struct tw_model *m)
{
    double b = 0;
    tw_model_foreach_tensor(m, add_bytes, &b);
    if (!m->cfg.tied_embeddings)
        b -= (double)tw_tensor_nbytes(&m->tok_embd);
    return b;
}

// Runs n steps of `step` tokens each (after the same 17-token start; step 1: decoding, one
// step of the whole prompt: prefill) through a profiling wrapper of be and prints each op's
// share of a step: ms per step, calls per step, and for the matmuls the GB/s of weights read
// while they ran. tok holds 17 + n * step ids; the context ctx_len positions.
static void print_profile_steps(const struct tw_model *m, struct tw_backend *be,
                                const int32_t *tok, int n, int step, int32_t ctx_len,
                                float *logits)
{
    struct tw_backend *pb;
    tw_ctx *cx;
    struct tw_ctx_params p = { .n_ctx = ctx_len, .n_batch = step > 16 ? step : 16 };
    if (tw_backend_profile_new(be, &pb) || tw_ctx_new(m, pb, &p, &cx)) {
        fprintf(stderr, "profile: %s\n", tw_error_msg());
        return;
    }
    tw_ctx_decode(cx, tok, 16, logits, false);
    tw_ctx_decode(cx, tok + 16, 1, logits, false);
    tw_backend_profile_reset(pb);
    double t0 = now();
    for (int i = 0; i < n; i++)
        tw_ctx_decode(cx, tok + 17 + i * step, step, logits, false);
    double total = (now() - t0) / n, ops = 0;
    struct tw_op_stat st;
    printf("    (%d %s of %d token%s)\n", n, n == 1 ? "step" : "steps", step,
           step == 1 ? "" : "s");
    for (int i = 0; tw_backend_profile_stat(pb, i, &st); i++) {
        if (st.calls == 0)
            continue;
        ops += st.seconds / n;
        printf("    %-12s %8.3f ms %5.1f%% %7.1f calls", st.name, 1e3 * st.seconds / n,
               100 * st.seconds / n / total, st.calls / n);
        if (st.bytes > 0)
            printf(" %8.1f GB/s", st.bytes / st.seconds / 1e9);
        printf("\n");
    }
    printf("    %-12s %8.3f ms %5.1f%%   (the model's code between ops)\n", "other",
           1e3 * (total - ops), 100 * (total - ops) / total);
    tw_ctx_free(cx);
    tw_backend_free(pb);
}

// n decode steps of one token.
static void print_profile(const struct tw_model *m, struct tw_backend *be, const int32_t *tok,
                          int n, int32_t ctx_len, float *logits)
{
    print_profile_steps(m, be, tok, n, 1, ctx_len, logits);
}

#endif

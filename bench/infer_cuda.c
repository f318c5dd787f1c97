// bench/infer_cuda: decode and prefill speed of the CUDA backend on models of real shapes
// with random weights (SmolLM2-135M, Llama-3.2-1B, Llama-3.1-8B), for each weight dtype,
// beside two ceilings measured on the same card in the same run: the device-to-device copy
// bandwidth (decode reads every matrix once per token plus the KV cache, so its roofline is
// bandwidth / bytes per token) and the rate of cuBLASLt's bf16 GEMM at the prefill's largest
// matrix shape (prefill is GEMMs: its share of that rate is what the table gives).
// Decode is what `twin generate` does for each token: one forward of one token (a CUDA graph)
// and its logits read back as their 40 largest values (tw_ctx_top, what generate reads for a
// top-k sampler).
// With --profile, each row is followed by where a decoded token's time goes, op by op (each
// op waited for: launch plus run, without the graph).
// With --batches, each row is followed by batched decode (B sequences a step, as the server
// runs them) for each B listed.
// Usage: infer_cuda [--shapes a,b] [--types bf16,q8_0,q4_K] [--prefill N] [--decode N]
//                   [--profile] [--batches 1,8,32,64]
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "model/context.h"
#include "model/model.h"
#include "tensor/cuda.h"

#include "bench_infer.h"
#include "bench_util.h"

#define TOP 40 // the largest logits a batched step reads back per row

static int fail(const char *what)
{
    fprintf(stderr, "infer_cuda: %s: %s\n", what, tw_error_msg());
    return 1;
}

// Batched decode as the server runs it: B sequences, each after its own 16-token prompt,
// advance one token a step in one forward (tw_ctx_decode_runs: a CUDA graph from the third
// step on; the first two, a step op by op and its recording, are the warm-up), each step's B
// rows of logits left on the GPU and read back as their 40 largest values (tw_ctx_top, what
// the server's scheduler reads for a top-k sampler). Prints tokens/s for every B in the list;
// returns 0 or 1.
static int batched(struct tw_model *m, struct tw_backend *be, const char *name, const char *ty,
                   const int *bs, int n_bs, int n_decode)
{
    const struct tw_model_config *c = &m->cfg;
    double one = 0;
    for (int b = 0; b < n_bs; b++) {
        int B = bs[b];
        tw_ctx *cx;
        struct tw_ctx_params p = { .n_ctx = 16 + n_decode + 2,
                                   .n_batch = B > 16 ? B : 16,
                                   .n_seq = B };
        float *logits = tw_malloc_array((size_t)B * (size_t)c->n_vocab, sizeof(float));
        float *vals = tw_malloc_array((size_t)B * TOP, sizeof(float));
        int32_t *ids = tw_malloc_array((size_t)B * TOP, sizeof(int32_t));
        struct tw_ctx_run *runs = tw_malloc_array((size_t)B, sizeof *runs);
        int32_t *tok = tw_malloc_array((size_t)B * (size_t)(19 + n_decode), sizeof(int32_t));
        if (!logits || !vals || !ids || !runs || !tok || tw_ctx_new(m, be, &p, &cx) != 0)
            return fail("batched context");
        tw_ctx_keep_logits(cx, true);
        for (int i = 0; i < B * (19 + n_decode); i++)
            tok[i] = (int32_t)((i * 7919u + 13) % (uint32_t)c->n_vocab);
        for (int s = 0; s < B; s++)
            if (tw_ctx_decode_seq(cx, s, tok + s * (19 + n_decode), 16, NULL, false) != 0)
                return fail("batched prompt");
        double t0 = 0;
        for (int step = 0; step < n_decode + 2; step++) {
            if (step == 2)
                t0 = now();
            for (int s = 0; s < B; s++)
                runs[s] = (struct tw_ctx_run){ s, 1, tok + s * (19 + n_decode) + 16 + step };
            if (tw_ctx_decode_runs(cx, runs, B, logits) != 0 || tw_ctx_top(cx, TOP, vals, ids))
                return fail("batched decode");
        }
        double tps = (double)B * n_decode / (now() - t0);
        one = B == 1 ? tps : one;
        printf("%-13s %-5s batch %3d: %9.1f tokens/s", name, ty, B, tps);
        if (one > 0 && B > 1)
            printf("  (%.1fx one sequence)", tps / one);
        printf("\n");
        fflush(stdout);
        tw_ctx_free(cx);
        tw_free(logits), tw_free(vals), tw_free(ids), tw_free(runs), tw_free(tok);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *shape_list = "smollm2-135m,llama-3.2-1b,llama-3.1-8b";
    const char *type_list = "bf16,q8_0,q4_K";
    int n_prefill = 2048, n_decode = 128;
    bool profile = false;
    int bs[8], n_bs = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--profile") == 0) {
            profile = true;
        } else if (i + 1 < argc && strcmp(argv[i], "--batches") == 0) {
            char items[8][32];
            int k = parse_list(argv[++i], items, 8);
            for (n_bs = 0; n_bs < k; n_bs++)
                bs[n_bs] = atoi(items[n_bs]) > 0 ? atoi(items[n_bs]) : 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--shapes") == 0) {
            shape_list = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--types") == 0) {
            type_list = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--prefill") == 0) {
            n_prefill = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--decode") == 0) {
            n_decode = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: infer_cuda [--shapes a,b] [--types t,u] [--prefill N] "
                            "[--decode N] [--profile] [--batches 1,8,32,64]\n");
            return 2;
        }
    }
    if (n_prefill < 1 || n_decode < 1)
        return fprintf(stderr, "infer_cuda: --prefill and --decode need positive numbers\n"), 2;
    struct tw_backend *be;
    if (tw_backend_cuda_new(0, &be) != 0)
        return fail("cuda");
    char gpu[256];
    tw_cuda_device_name(0, gpu, sizeof gpu);
    char sh[8][32], ty[8][32];
    int n_sh = parse_list(shape_list, sh, 8), n_ty = parse_list(type_list, ty, 8);
    printf("infer_cuda: %s; prefill %d tokens, decode %d tokens after a 16-token prompt\n", gpu,
           n_prefill, n_decode);
    printf("%-13s %-5s %8s %9s %11s %8s %7s %10s %9s %7s\n", "model", "type", "copy GB/s",
           "MB/token", "prefill t/s", "TFLOP/s", "of GEMM", "decode t/s", "roof t/s", "of roof");
    double worst_roof = 1e9, worst_gemm = 1e9;
    for (int s = 0; s < n_sh; s++) {
        const struct tw_model_shape *shp = tw_model_shape_find(sh[s]);
        if (!shp) {
            fprintf(stderr, "infer_cuda: no shape %s (%s)\n", sh[s], tw_model_shape_names());
            return 2;
        }
        const struct tw_model_config *c = &shp->cfg;
        // The ceiling of prefill: cuBLASLt's bf16 GEMM at the MLP's shape for this many rows.
        double gemm = tw_cuda_gemm_rate(be, n_prefill, c->n_ff, c->n_embd, 20);
        for (int d = 0; d < n_ty; d++) {
            enum tw_dtype dt;
            struct tw_model *host, *m;
            if (tw_dtype_from_name(ty[d], &dt) != 0 || tw_model_random(c, dt, 42, &host))
                return fail(ty[d]);
            if (tw_model_to_backend(host, be, &m) != 0)
                return fail("upload");
            double wbytes = weight_bytes_per_token(host);
            double params = (double)tw_model_n_params(host);
            int32_t ctx_len = n_prefill + n_decode + 16;
            int32_t *tok = tw_malloc_array((size_t)ctx_len, sizeof(int32_t));
            float *logits = tw_malloc_array((size_t)c->n_vocab, sizeof(float));
            if (!tok || !logits)
                return fail("memory");
            for (int32_t i = 0; i < ctx_len; i++)
                tok[i] = (int32_t)((i * 7919u + 13) % (uint32_t)c->n_vocab);
            tw_ctx *cx;
            struct tw_ctx_params p = { .n_ctx = ctx_len, .n_batch = n_prefill };
            if (tw_ctx_new(m, be, &p, &cx) != 0)
                return fail("context");
            // Prefill: the best of three runs of the whole prompt (the first warms up).
            double pre = 1e30;
            for (int rep = 0; rep < 3; rep++) {
                tw_ctx_truncate(cx, 0);
                double t0 = now();
                if (tw_ctx_decode(cx, tok, n_prefill, logits, false) != 0)
                    return fail("prefill");
                double dt2 = now() - t0;
                if (rep > 0 && dt2 < pre)
                    pre = dt2;
            }
            // Decode: one token at a time after a 16-token prompt (one warm-up token).
            tw_ctx_truncate(cx, 0);
            if (tw_ctx_decode(cx, tok, 16, logits, false) != 0 ||
                tw_ctx_decode(cx, tok + 16, 1, logits, false) != 0)
                return fail("decode");
            double bw = tw_cuda_copy_bandwidth(be, (size_t)1 << 30, 10);
            float vals[TOP];
            int32_t ids[TOP];
            tw_ctx_keep_logits(cx, true);
            double t0 = now();
            for (int i = 0; i < n_decode; i++)
                if (tw_ctx_decode(cx, tok + 17 + i, 1, logits, false) != 0 ||
                    tw_ctx_top(cx, TOP, vals, ids) != 0)
                    return fail("decode");
            double dec = now() - t0;
            tw_ctx_keep_logits(cx, false);
            double bw2 = tw_cuda_copy_bandwidth(be, (size_t)1 << 30, 10);
            bw = bw2 > bw ? bw2 : bw;
            // The KV cache is f32: keys and values of every layer, at the run's mean length.
            double kv = 2.0 * c->n_layer * c->n_head_kv * c->head_dim * sizeof(float) *
                        (17 + n_decode / 2.0);
            double per_tok = wbytes + kv;
            // Copy bandwidth counts bytes read and written; decode only reads: the ceiling is
            // the copy's rate of moving bytes, read and written alike.
            double roof = bw * 1e9 / per_tok, got = n_decode / dec;
            // Prefill FLOPs: 2 per parameter of the matrices per token, plus attention's
            // QK^T and PV over the causal half.
            double att = 2.0 * 2.0 * c->n_layer * (double)c->n_head * c->head_dim *
                         (double)n_prefill * n_prefill / 2.0;
            double flops = 2.0 * (params - (double)c->n_vocab * c->n_embd) * n_prefill + att;
            double tflops = flops / pre / 1e12;
            printf("%-13s %-5s %8.0f %9.1f %11.0f %8.1f %6.1f%% %10.1f %9.1f %6.1f%%\n", sh[s],
                   ty[d], bw, per_tok / 1e6, n_prefill / pre, tflops, 100 * tflops / gemm, got,
                   roof, 100 * got / roof);
            fflush(stdout);
            if (profile) {
                print_profile(m, be, tok, n_decode < 32 ? n_decode : 32, ctx_len, logits);
                print_profile_steps(m, be, tok, 1, n_prefill - 17, ctx_len, logits);
            }
            if (n_bs > 0 && batched(m, be, sh[s], ty[d], bs, n_bs, n_decode) != 0)
                return 1;
            worst_roof = got / roof < worst_roof ? got / roof : worst_roof;
            if (dt == TW_DTYPE_BF16 && tflops / gemm < worst_gemm)
                worst_gemm = tflops / gemm;
            tw_ctx_free(cx);
            tw_model_close(m);
            tw_model_close(host);
            tw_free(tok);
            tw_free(logits);
        }
        printf("%-13s cuBLASLt bf16 GEMM (%d x %d x %d): %.1f TFLOP/s\n", sh[s], n_prefill,
               c->n_ff, c->n_embd, gemm);
    }
    if (tw_backend_sync(be) != 0)
        return fail("device");
    tw_backend_free(be);
    printf("headline: decode reaches at least %.1f%% of the copy-bandwidth roofline",
           100 * worst_roof);
    if (worst_gemm < 1e9) // a run without bf16 rows has no prefill share to give
        printf("; bf16 prefill at least %.1f%% of cuBLASLt's GEMM rate", 100 * worst_gemm);
    printf("\n");
    return 0;
}

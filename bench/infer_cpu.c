// bench/infer_cpu: decode and prefill speed of the CPU engine on models of real shapes with
// random weights (SmolLM2-135M, Llama-3.2-1B), for each weight dtype and thread count, beside
// the machine's memory bandwidth measured with the same threads just before and just after
// each decode run (the larger of the two: the bandwidth of these virtual machines moves by
// a third from one minute to the next, so a figure taken at the start of the run would not
// bound the later rows). Decode reads
// every matrix once per token, so its ceiling (the roofline) is bandwidth / bytes per token;
// the table gives the share of it reached.
// With --profile, each row is followed by where a decoded token's time goes, op by op (a
// second decode run through tensor/profile.h's wrapper), with the matmuls' weight GB/s.
// With --model PATH (repeatable: a .gguf file or a Hugging Face folder) the models are those,
// memory-mapped as the CLI opens them (the files another engine reads, for a side-by-side),
// instead of the shapes.
// Usage: infer_cpu [--quick] [--shapes a,b] [--types bf16,q8_0,...] [--model PATH]...
//                  [--threads 1,2,0] [--prefill N] [--decode N] [--profile]
//                  (threads 0 = every CPU)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/error.h"
#include "base/mem.h"
#include "model/context.h"
#include "model/model.h"
#include "tensor/cpu_dot.h"
#include "tensor/profile.h"

#include "bench_infer.h"
#include "bench_util.h"

// The options every model's rows share.
struct run_opts {
    int n_prefill, n_decode, n_th;
    int threads[8];
    size_t bw_bytes;
    bool profile;
};

// Prefill and decode of m at each thread count, a table row each; returns the lowest share
// of the roofline at the last thread count (or -1 on an error).
static double bench_model(const char *name, const char *type, const struct tw_model *m,
                          const struct run_opts *o)
{
    const struct tw_model_config *c = &m->cfg;
    int n_prefill = o->n_prefill, n_decode = o->n_decode;
    double wbytes = weight_bytes_per_token(m), worst = 1e9;
    volatile float sink = 0;
    int32_t ctx_len = n_prefill + n_decode + 16;
    int32_t *tok = tw_malloc_array((size_t)ctx_len, sizeof(int32_t));
    float *logits = tw_malloc_array((size_t)c->n_vocab, sizeof(float));
    for (int32_t i = 0; i < ctx_len; i++)
        tok[i] = (int32_t)((i * 7919u + 13) % (uint32_t)c->n_vocab);
    for (int t = 0; t < o->n_th; t++) {
        struct tw_backend *be;
        tw_ctx *cx;
        struct tw_ctx_params p = { .n_ctx = ctx_len, .n_batch = n_prefill };
        if (tw_backend_cpu_new(o->threads[t], &be) != 0) {
            worst = -1;
            break;
        }
        if (tw_ctx_new(m, be, &p, &cx) != 0) {
            tw_backend_free(be);
            worst = -1;
            break;
        }
        // Prefill: the best of two runs of the whole prompt.
        double pre = 1e30;
        for (int rep = 0; rep < 2; rep++) {
            tw_ctx_truncate(cx, 0);
            double t0 = now();
            tw_ctx_decode(cx, tok, n_prefill, logits, false);
            double dt2 = now() - t0;
            pre = dt2 < pre ? dt2 : pre;
        }
        // Decode: one token at a time after a 16-token prompt (one warm-up token).
        tw_ctx_truncate(cx, 0);
        tw_ctx_decode(cx, tok, 16, logits, false);
        tw_ctx_decode(cx, tok + 16, 1, logits, false);
        double bw = read_bandwidth(o->bw_bytes, 4, o->threads[t], &sink);
        double t0 = now();
        for (int i = 0; i < n_decode; i++)
            tw_ctx_decode(cx, tok + 17 + i, 1, logits, false);
        double dec = now() - t0;
        double bw2 = read_bandwidth(o->bw_bytes, 4, o->threads[t], &sink);
        bw = bw2 > bw ? bw2 : bw;
        double kv =
            2.0 * c->n_layer * c->n_head_kv * c->head_dim * sizeof(float) * (17 + n_decode / 2.0);
        double per_tok = wbytes + kv;
        double roof = bw * 1e9 / per_tok, got = n_decode / dec;
        printf("%-13s %-5s %7d %8.1f %10.1f %11.1f %10.2f %10.2f %7.1f%%\n", name, type,
               o->threads[t], bw, per_tok / 1e6, n_prefill / pre, got, roof, 100 * got / roof);
        fflush(stdout);
        if (t == o->n_th - 1 && got / roof < worst)
            worst = got / roof;
        if (o->profile)
            print_profile(m, be, tok, n_decode, ctx_len, logits);
        tw_ctx_free(cx);
        tw_backend_free(be);
    }
    tw_free(tok);
    tw_free(logits);
    return worst;
}

// The dtype of a file's first layer's up projection (the bulk of its weights), for the table.
static const char *model_type(const struct tw_model *m)
{
    return m->cfg.n_layer > 0 && m->layers[0].w_up.data ? tw_dtype_name(m->layers[0].w_up.dtype)
                                                        : "?";
}

int main(int argc, char **argv)
{
    const char *shape_list = "smollm2-135m,llama-3.2-1b", *type_list = "bf16,q8_0,q4_0,q4_K";
    const char *thread_list = "1,2,0", *files[8];
    int n_files = 0;
    struct run_opts o = { .n_prefill = 128, .n_decode = 32, .bw_bytes = (size_t)1 << 30 };
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            shape_list = "tiny", type_list = "q8_0,q4_K", thread_list = "1";
            o.n_prefill = 20, o.n_decode = 4, o.bw_bytes = (size_t)64 << 20;
        } else if (strcmp(argv[i], "--profile") == 0) {
            o.profile = true;
        } else if (i + 1 < argc && strcmp(argv[i], "--shapes") == 0) {
            shape_list = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--types") == 0) {
            type_list = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--model") == 0 && n_files < 8) {
            files[n_files++] = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
            thread_list = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--prefill") == 0) {
            o.n_prefill = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--decode") == 0) {
            o.n_decode = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: infer_cpu [--quick] [--shapes a,b] [--types t,u] "
                            "[--model PATH]... [--threads 1,2,0] [--prefill N] [--decode N] "
                            "[--profile]\n");
            return 2;
        }
    }
    char sh[8][32], ty[8][32], th[8][32];
    int n_sh = n_files ? 0 : parse_list(shape_list, sh, 8), n_ty = parse_list(type_list, ty, 8);
    o.n_th = parse_list(thread_list, th, 8);
    int ncpu = tw_cpu_count();
    for (int t = 0; t < o.n_th; t++)
        o.threads[t] = atoi(th[t]) > 0 ? atoi(th[t]) : ncpu;
    printf("infer_cpu: %d CPUs, ISA %s; prefill %d tokens, decode %d tokens after a 16-token "
           "prompt\n",
           ncpu, tw_cpu_isa_name(tw_cpu_isa_best()), o.n_prefill, o.n_decode);
    printf("%-13s %-5s %7s %8s %10s %11s %10s %10s %8s\n", "model", "type", "threads", "GB/s",
           "MB/token", "prefill t/s", "decode t/s", "roof t/s", "of roof");
    double worst_all = 1e9;
    for (int f = 0; f < n_files; f++) { // a model's weights, memory-mapped, as the CLI reads them
        struct tw_model *m;
        if (tw_model_open(files[f], &m) != 0) {
            fprintf(stderr, "infer_cpu: %s\n", tw_error_msg());
            return 1;
        }
        const char *base = strrchr(files[f], '/');
        char name[14];
        snprintf(name, sizeof name, "%s", base ? base + 1 : files[f]);
        double w = bench_model(name, model_type(m), m, &o);
        tw_model_close(m);
        if (w < 0) {
            fprintf(stderr, "infer_cpu: %s\n", tw_error_msg());
            return 1;
        }
        worst_all = w < worst_all ? w : worst_all;
    }
    for (int s = 0; s < n_sh; s++) {
        const struct tw_model_shape *shp = tw_model_shape_find(sh[s]);
        if (!shp) {
            fprintf(stderr, "infer_cpu: no shape %s (%s)\n", sh[s], tw_model_shape_names());
            return 2;
        }
        for (int d = 0; d < n_ty; d++) {
            enum tw_dtype dt;
            struct tw_model *m;
            if (tw_dtype_from_name(ty[d], &dt) != 0 || tw_model_random(&shp->cfg, dt, 42, &m)) {
                fprintf(stderr, "infer_cpu: %s\n", tw_error_msg());
                return 1;
            }
            double w = bench_model(sh[s], ty[d], m, &o);
            tw_model_close(m);
            if (w < 0) {
                fprintf(stderr, "infer_cpu: %s\n", tw_error_msg());
                return 1;
            }
            worst_all = w < worst_all ? w : worst_all;
        }
    }
    printf("headline: decode with %d threads reaches at least %.1f%% of the memory roofline\n",
           o.threads[o.n_th - 1], 100 * worst_all);
    return 0;
}

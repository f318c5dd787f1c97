// bench/train: training throughput of the CPU training engine (train/lm.h, train/optim.h) on
// a ~10M-parameter Llama-shaped model (or a named shape), for full training in f32, LoRA over
// an f32 base and QLoRA over a q4_0 base: tokens trained per second, ms per step and how much
// of it is forward + backward (tw_lm_step_ce) against the optimiser (zero_grad, clip, AdamW),
// the model FLOP/s, the loss at the first and the last step on one fixed batch (it should fall;
// printed, not checked), and the peak resident memory of each mode.
// Model FLOPs per token (as MFU counts them): P = the multiplied weights (q k v o gate up down
// of every layer and the output head), A = attention's forward (4 H D (T + 1) / 2 a layer);
// full = 6 P + 3 A, LoRA = 4 P + 3 A + 6 P_adapters (the frozen base needs only dx).
// With --device cuda the same on the GPU (bench/train_cuda.sh runs it beside PyTorch + PEFT):
// full training with --compute bf16 (f32 masters), LoRA over a --base bf16 model, QLoRA over
// --qlora q4_0/q4_K/q8_0; "peak MiB" is then the GPU memory the run took (cudaMemGetInfo
// after it, less before: the pool keeps what it took, as PyTorch's max_memory_reserved).
// Usage: train [--quick] [--shape NAME] [--modes full,lora,qlora,dpo] [--threads N] [--batch B]
//              [--seq T] [--steps S] [--warmup W] [--lr X] [--device D] [--rank R]
//              [--base f32|bf16] [--qlora TYPE] [--compute f32|bf16] [--recompute] [--profile]
//              [--gpus N]
// --profile (a GPU): where a timed step's time goes, op by op (each op waited for).
// --gpus N: data-parallel over N GPUs (tensor/comm.h, NCCL), one worker process each with a
// batch of its own; the gradients summed across them every step (tw_lm_sum_grads); tokens/s
// counts every worker's tokens, the other columns are worker 0's.
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/error.h"
#include "base/mem.h"
#include "model/model.h"
#include "tensor/cpu_dot.h"
#include "tensor/comm.h"
#include "tensor/cuda.h"
#include "tensor/profile.h"
#include "train/dpo.h"
#include "train/lm.h"
#include "train/optim.h"

#include "bench_util.h"

// About 10M parameters, Llama-shaped: 8 layers of 256 with 8 query and 4 KV heads of 32, an
// FFN of 704 (2.75x, Llama's ratio; rows of whole 32-blocks for q4_0) and untied embeddings
// of 8192.
static const struct tw_model_config shape_10m = { .arch = TW_ARCH_LLAMA,
                                                  .n_vocab = 8192,
                                                  .n_embd = 256,
                                                  .n_layer = 8,
                                                  .n_head = 8,
                                                  .n_head_kv = 4,
                                                  .head_dim = 32,
                                                  .n_ff = 704,
                                                  .n_ctx_train = 2048,
                                                  .norm_eps = 1e-5f,
                                                  .rope_theta = 10000,
                                                  .rope_neox = true,
                                                  .act = TW_ACT_SILU };

// dpo: a DPO step of the LoRA model (tw_dpo_step: the reference is the adapter switched off;
// rows 0 .. B/2 - 1 the chosen, B/2 .. the rejected answers; loss columns give DPO's loss).
enum mode { MODE_FULL, MODE_LORA, MODE_QLORA, MODE_DPO, MODE_COUNT };
static const char *const mode_names[] = { "full", "lora", "qlora", "dpo" };

// The weights one token multiplies: every layer's projections and the output head.
static double matmul_params(const struct tw_model_config *c)
{
    double C = c->n_embd, Q = (double)c->n_head * c->head_dim;
    double KV = (double)c->n_head_kv * c->head_dim;
    double layer = C * Q * 2 + C * KV * 2 + 3 * C * c->n_ff;
    return layer * c->n_layer + (double)c->n_vocab * C;
}

// Every parameter: the above, the embedding table (unless tied), norms and biases.
static double model_params(const struct tw_model_config *c)
{
    double C = c->n_embd, Q = (double)c->n_head * c->head_dim;
    double KV = (double)c->n_head_kv * c->head_dim;
    double extra = 2 * C + (c->attn_bias ? Q + 2 * KV : 0) + (c->qk_norm ? 2 * c->head_dim : 0);
    double p = matmul_params(c) + extra * c->n_layer + C;
    return p + (c->tied_embeddings ? 0 : (double)c->n_vocab * C);
}

// A field of /proc/self/status in kB ("VmRSS", "VmHWM"), or -1.
static long proc_status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = atol(line + n + 1);
            break;
        }
    fclose(f);
    return v;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so that each mode's peak is its own.
static bool reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

struct run_opts {
    int B, T, steps, warmup;
    double lr; // 0: the mode's default
    int rank;
    enum tw_dtype base, qlora, compute;
    bool recompute;
    struct tw_backend *be;  // where the passes run
    struct tw_backend *dev; // be's device (be itself unless profiling)
    bool profile;           // be is a profiling backend: print where a step's time goes
    tw_comm *comm;          // --gpus: this worker's group (NULL: one process)
};

struct result {
    double params, trainable, ms_step, tok_s, fb_share, gflops, loss0, loss1;
    double peak_mib, delta_mib;
};

// One fixed batch of B rows of T random ids; targets are the next ids (all trained).
struct batch_buf {
    int32_t *ids, *tg, *pos, *st;
    struct tw_lm_batch b;
};

static int batch_init(struct batch_buf *bb, int B, int T, int32_t vocab, int rank)
{
    size_t n = (size_t)B * (size_t)T;
    int32_t *row = tw_malloc_array((size_t)T + 1, sizeof(int32_t));
    bb->ids = tw_malloc_array(n, sizeof(int32_t));
    bb->tg = tw_malloc_array(n, sizeof(int32_t));
    bb->pos = tw_malloc_array(n, sizeof(int32_t));
    bb->st = tw_calloc(n, sizeof(int32_t));
    if (!row || !bb->ids || !bb->tg || !bb->pos || !bb->st) {
        tw_free(row);
        return -1;
    }
    bench_rng = 0x5eed + (uint64_t)rank; // each worker a batch of its own
    for (int r = 0; r < B; r++) {
        for (int t = 0; t <= T; t++)
            row[t] = (int32_t)((uniform() + 1) * 0.5f * (float)vocab) % vocab;
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * (size_t)T + (size_t)t;
            bb->ids[i] = row[t];
            bb->tg[i] = row[t + 1];
            bb->pos[i] = t;
        }
    }
    tw_free(row);
    bb->b = (struct tw_lm_batch){ B, T, bb->ids, bb->tg, bb->pos, bb->st };
    return 0;
}

static void batch_free(struct batch_buf *bb)
{
    tw_free(bb->ids);
    tw_free(bb->tg);
    tw_free(bb->pos);
    tw_free(bb->st);
}

// The LM of a mode (and its base, which must outlive it; NULL for full training).
static int make_lm(enum mode md, const struct tw_model_config *c, const struct run_opts *ro,
                   struct tw_model **base, tw_lm **lm)
{
    *base = NULL;
    int rc;
    if (md == MODE_FULL) {
        rc = tw_lm_new_random(c, 42, lm);
        if (!rc && (rc = tw_lm_set_compute(*lm, ro->compute)))
            tw_lm_free(*lm);
    } else {
        enum tw_dtype dt = md == MODE_QLORA ? ro->qlora : ro->base;
        if ((rc = tw_model_random(c, dt, 42, base)))
            return rc;
        struct tw_lm_opts o = { .lora_r = ro->rank,
                                .lora_alpha = (float)ro->rank,
                                .lora_dropout = 0,
                                .lora_targets = TW_PROJ_ALL,
                                .qlora = md == MODE_QLORA ? dt : TW_DTYPE_F32,
                                .seed = 7 };
        rc = tw_lm_new(*base, &o, lm);
    }
    if (!rc) {
        tw_lm_set_recompute(*lm, ro->recompute);
        if ((rc = tw_lm_use_backend(*lm, ro->be)))
            tw_lm_free(*lm);
    }
    if (rc) {
        tw_model_close(*base);
        *base = NULL;
    }
    return rc;
}

static int run_mode(enum mode md, const struct tw_model_config *c, const struct run_opts *ro,
                    struct result *res)
{
    struct batch_buf bb;
    int rank = ro->comm ? tw_comm_rank(ro->comm) : 0, W = ro->comm ? tw_comm_size(ro->comm) : 1;
    if (batch_init(&bb, ro->B, ro->T, c->n_vocab, rank)) {
        batch_free(&bb);
        return tw_error_set(TW_ENOMEM, "out of memory for the batch");
    }
    malloc_trim(0); // what the last mode freed leaves the RSS
    bool hwm = reset_peak_rss();
    long rss0 = proc_status_kb("VmRSS"), peak_rss = rss0;
    bool gpu = ro->be->device != TW_DEVICE_CPU;
    size_t dev0 = gpu ? tw_cuda_mem_used(ro->dev) : 0;
    struct tw_model *base;
    tw_lm *lm;
    int rc = make_lm(md, c, ro, &base, &lm);
    if (rc) {
        batch_free(&bb);
        return rc;
    }
    struct tw_adamw opt;
    struct tw_adamw_opts ao = { .lr = ro->lr > 0 ? ro->lr : 1e-3,
                                .beta1 = 0.9,
                                .beta2 = 0.999,
                                .eps = 1e-8,
                                .weight_decay = md == MODE_FULL ? 0.01 : 0.0 };
    if ((rc = tw_adamw_init(&opt, lm, &ao))) {
        tw_lm_free(lm);
        tw_model_close(base);
        batch_free(&bb);
        return rc;
    }
    double n_tok = (double)ro->B * ro->T, t_fb = 0, t_all = 0;
    for (int s = 0; s < ro->warmup + ro->steps && !rc; s++) {
        if (ro->profile && s == ro->warmup)
            tw_backend_profile_reset(ro->be);
        double t0 = now(), loss;
        int64_t nt;
        tw_lm_set_step(lm, s);
        tw_lm_zero_grad(lm);
        double t1 = now();
        if (md == MODE_DPO) {
            struct tw_dpo_stats ds;
            rc = tw_dpo_step(lm, NULL, &bb.b, 0.1, 1.0f, &ds);
            loss = ds.loss, nt = 1;
        } else {
            rc = tw_lm_step_ce(lm, &bb.b, 1.0f / (float)n_tok, &loss, &nt);
        }
        if (!rc && ro->comm) // data parallelism: every worker's gradients summed
            rc = tw_lm_sum_grads(lm, ro->comm);
        double t2 = now();
        double norm;
        tw_clip_grad_norm(lm, 1.0, &norm);
        tw_adamw_step(&opt, lm, ao.lr);
        if (!rc) // bf16 compute: the copy the passes read
            rc = tw_lm_sync(lm);
        if (!rc)
            rc = tw_backend_sync(ro->be);
        double t3 = now();
        if (s == 0)
            res->loss0 = loss / (double)nt;
        res->loss1 = loss / (double)nt;
        if (s >= ro->warmup) {
            t_fb += t2 - t1;
            t_all += t3 - t0;
        }
        long r = proc_status_kb("VmRSS");
        peak_rss = r > peak_rss ? r : peak_rss;
    }
    struct tw_op_stat st;
    for (int i = 0; ro->profile && tw_backend_profile_stat(ro->be, i, &st); i++)
        if (st.calls > 0)
            printf("    %-34s %9.2f ms/step %8.0f calls\n", st.name, 1e3 * st.seconds / ro->steps,
                   st.calls / ro->steps);
    if (hwm) // the kernel's high-water mark also sees peaks between the samples
        peak_rss = proc_status_kb("VmHWM");
    if (gpu) // the device's memory instead: what the run took and kept in its pool
        rss0 = 0, peak_rss = (long)((tw_cuda_mem_used(ro->dev) - dev0) >> 10);
    double P = matmul_params(c), D = (double)c->n_head * c->head_dim;
    double attn = 4 * D * (ro->T + 1) / 2.0 * c->n_layer;
    double trainable = (double)tw_lm_n_trainable(lm);
    double flops = md == MODE_FULL ? 6 * P + 3 * attn : 4 * P + 3 * attn + 6 * trainable;
    if (md == MODE_DPO) // and the reference's forward
        flops += 2 * P + attn;
    res->params = model_params(c);
    res->trainable = trainable;
    res->ms_step = 1e3 * t_all / ro->steps;
    res->tok_s = W * n_tok * ro->steps / t_all;
    res->fb_share = t_fb / t_all;
    res->gflops = flops * res->tok_s / 1e9;
    res->peak_mib = (double)peak_rss / 1024;
    res->delta_mib = (double)(peak_rss - rss0) / 1024;
    tw_adamw_free(&opt);
    tw_lm_free(lm);
    tw_model_close(base);
    batch_free(&bb);
    return rc;
}

static int parse_modes(const char *s, enum mode *out, int max)
{
    int n = 0;
    while (s && *s && n < max) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        int k = -1;
        for (int i = 0; i < MODE_COUNT; i++)
            if (strlen(mode_names[i]) == len && strncmp(s, mode_names[i], len) == 0)
                k = i;
        if (k < 0)
            return -1;
        out[n++] = (enum mode)k;
        s = e ? e + 1 : NULL;
    }
    return n;
}

static int usage(void)
{
    fprintf(stderr, "usage: train [--quick] [--shape NAME] [--modes full,lora,qlora,dpo] "
                    "[--threads N] [--batch B] [--seq T] [--steps S] [--warmup W] [--lr X] "
                    "[--device D] [--rank R] [--base f32|bf16] [--qlora TYPE] "
                    "[--compute f32|bf16] [--recompute] [--profile]\n");
    return 2;
}

struct bench {
    const char *shape, *device;
    int threads, n_modes;
    enum mode modes[8];
    struct tw_model_config cfg;
    struct run_opts ro;
};

static int bench_run(struct bench *bn);

static int bench_worker(tw_comm *c, void *ud)
{
    struct bench *bn = ud;
    bn->ro.comm = c;
    if (tw_comm_rank(c) != 0 && !freopen("/dev/null", "w", stdout)) // worker 0 reports
        return tw_error_set(TW_EIO, "no /dev/null");
    return bench_run(bn) ? tw_error_set(TW_EDEVICE, "worker %d failed", tw_comm_rank(c)) : 0;
}

int main(int argc, char **argv)
{
    const char *shape = NULL, *mode_list = "full,lora,qlora";
    struct run_opts ro = { .B = 8,
                           .T = 128,
                           .steps = 20,
                           .warmup = 3,
                           .lr = 0,
                           .rank = 16,
                           .base = TW_DTYPE_F32,
                           .qlora = TW_DTYPE_Q4_0,
                           .compute = TW_DTYPE_F32 };
    const char *device = "cpu";
    int threads = tw_cpu_count(), gpus = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            shape = "tiny";
            ro.B = 2, ro.T = 32, ro.steps = 2, ro.warmup = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--shape") == 0) {
            shape = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--modes") == 0) {
            mode_list = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
            threads = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0) {
            ro.B = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--seq") == 0) {
            ro.T = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--steps") == 0) {
            ro.steps = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--warmup") == 0) {
            ro.warmup = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--lr") == 0) {
            ro.lr = atof(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--device") == 0) {
            device = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--rank") == 0) {
            ro.rank = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--base") == 0) {
            if (tw_dtype_from_name(argv[++i], &ro.base))
                return usage();
        } else if (i + 1 < argc && strcmp(argv[i], "--qlora") == 0) {
            if (tw_dtype_from_name(argv[++i], &ro.qlora))
                return usage();
        } else if (i + 1 < argc && strcmp(argv[i], "--compute") == 0) {
            if (tw_dtype_from_name(argv[++i], &ro.compute))
                return usage();
        } else if (i + 1 < argc && strcmp(argv[i], "--gpus") == 0) {
            gpus = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--recompute") == 0) {
            ro.recompute = true;
        } else if (strcmp(argv[i], "--profile") == 0) {
            ro.profile = true;
        } else {
            return usage();
        }
    }
    enum mode modes[8];
    int n_modes = parse_modes(mode_list, modes, 8);
    bool dpo = false;
    for (int k = 0; k < n_modes; k++)
        dpo |= modes[k] == MODE_DPO;
    if (dpo && ro.B % 2) {
        fprintf(stderr, "train: dpo takes pairs of rows: an even --batch\n");
        return 2;
    }
    if (n_modes <= 0 || threads < 1 || ro.B < 1 || ro.T < 2 || ro.steps < 1 || ro.warmup < 0 ||
        ro.rank < 1)
        return usage();
    struct tw_model_config cfg = shape_10m;
    if (shape) {
        const struct tw_model_shape *sh = tw_model_shape_find(shape);
        if (!sh) {
            fprintf(stderr, "train: no shape %s (%s)\n", shape, tw_model_shape_names());
            return 2;
        }
        cfg = sh->cfg;
    }
    struct bench bn = { .shape = shape,
                        .device = device,
                        .threads = threads,
                        .n_modes = n_modes,
                        .cfg = cfg,
                        .ro = ro };
    memcpy(bn.modes, modes, sizeof modes);
    if (gpus > 1) {
        printf("data-parallel: %d GPUs (NCCL), one worker process each\n", gpus);
        if (tw_comm_launch(gpus, TW_COMM_NCCL, bench_worker, &bn)) {
            fprintf(stderr, "train: %s\n", tw_error_msg());
            return 1;
        }
        return 0;
    }
    return bench_run(&bn);
}

static int bench_run(struct bench *bn)
{
    const char *shape = bn->shape, *device = bn->device;
    int threads = bn->threads, n_modes = bn->n_modes;
    const enum mode *modes = bn->modes;
    struct tw_model_config cfg = bn->cfg;
    struct run_opts ro = bn->ro;
    omp_set_num_threads(threads);
    struct tw_backend *dev_be;
    if (tw_backend_open(device, threads, &dev_be) ||
        (ro.profile && tw_backend_profile_new(dev_be, &ro.be))) {
        fprintf(stderr, "train: %s\n", tw_error_msg());
        return 1;
    }
    if (!ro.profile)
        ro.be = dev_be;
    ro.dev = dev_be;
    char gpu_name[128] = "";
    if (ro.be->device != TW_DEVICE_CPU)
        tw_cuda_device_name(0, gpu_name, sizeof gpu_name);
    printf("device %s%s%s; compute %s, LoRA base %s, QLoRA %s%s\n", ro.be->ops->name,
           gpu_name[0] ? " " : "", gpu_name, tw_dtype_name(ro.compute), tw_dtype_name(ro.base),
           tw_dtype_name(ro.qlora), ro.recompute ? ", activation recompute" : "");
    printf("train: %ld CPUs, %d threads, ISA %s; shape %s (vocab %d, hidden %d, %d layers, "
           "%d/%d heads of %d, FFN %d%s), %.2fM parameters\n",
           (long)tw_cpu_count(), threads, tw_cpu_isa_name(tw_cpu_isa_best()),
           shape ? shape : "10m", cfg.n_vocab, cfg.n_embd, cfg.n_layer, cfg.n_head, cfg.n_head_kv,
           cfg.head_dim, cfg.n_ff, cfg.tied_embeddings ? ", tied" : "", model_params(&cfg) / 1e6);
    printf("batch %d x %d tokens (one fixed batch, all trained), %d warm-up + %d timed steps; "
           "LoRA r=%d alpha=%d on all projections; AdamW lr %g, clip 1.0\n",
           ro.B, ro.T, ro.warmup, ro.steps, ro.rank, ro.rank, ro.lr > 0 ? ro.lr : 1e-3);
    printf("%-6s %8s %10s %9s %9s %8s %7s %8s %8s %8s %9s %8s\n", "mode", "params", "trainable",
           "ms/step", "tokens/s", "fwd+bwd", "optim", "GFLOP/s", "loss[0]", "loss[-1]", "peak MiB",
           "+MiB");
    double full_tok_s = -1, first_tok_s = 0;
    for (int k = 0; k < n_modes; k++) {
        struct result r = { 0 };
        if (run_mode(modes[k], &cfg, &ro, &r)) {
            fprintf(stderr, "train: %s: %s\n", mode_names[modes[k]], tw_error_msg());
            if (ro.profile)
                tw_backend_free(ro.be);
            tw_backend_free(dev_be);
            return 1;
        }
        printf("%-6s %7.2fM %9.3fM %9.1f %9.1f %7.1f%% %6.1f%% %8.1f %8.4f %8.4f %9.1f %8.1f\n",
               mode_names[modes[k]], r.params / 1e6, r.trainable / 1e6, r.ms_step, r.tok_s,
               100 * r.fb_share, 100 * (1 - r.fb_share), r.gflops, r.loss0, r.loss1, r.peak_mib,
               r.delta_mib);
        fflush(stdout);
        if (modes[k] == MODE_FULL)
            full_tok_s = r.tok_s;
        if (k == 0)
            first_tok_s = r.tok_s;
    }
    if (full_tok_s >= 0)
        printf("headline: full training of a %.1fM-parameter model at %d threads: %.0f "
               "tokens/s\n",
               model_params(&cfg) / 1e6, threads, full_tok_s);
    else
        printf("headline: %s training of a %.1fM-parameter model at %d threads: %.0f "
               "tokens/s\n",
               mode_names[modes[0]], model_params(&cfg) / 1e6, threads, first_tok_s);
    if (ro.profile)
        tw_backend_free(ro.be);
    tw_backend_free(dev_be);
    return 0;
}

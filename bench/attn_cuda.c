// bench/attn_cuda: the training attention on the GPU alone (the fused forward and backward of
// fattn.cu, through the training ops as a layer calls them: f32 q, k, v and dO rounded to bf16
// first), at the attention shapes of the training benchmark's models, causal, one example a
// row. Prints each pass's time a layer and its rate in TFLOP/s, counted as FlashAttention's
// papers count them (forward 4 B H D times the (query, key) pairs a causal mask keeps; the
// backward 2.5 times that), so that the rows compare with PyTorch's sdpa in
// bench/attn_cuda_peers.py.
// This is the kernel development harness of issue 11 ("in the manner of llm.c's dev/cuda"):
// built with -DCMAKE_CUDA_FLAGS=-DFA_SWEEP, TWIN_FA_SWEEP=i picks variant i of fattn.cu's
// kernels (TWIN_FA_SPLIT=n: dK/dV's split over n parts of the query heads, TWIN_FA_FWD=i the
// forward's variant i), and `--sweep 0,1,s2,f1,...` runs the table once for each (a name sN
// sets the split, fN the forward's variant), its outputs checked against the default's
// (relative L2 distance).
// Usage: attn_cuda [--shapes 135m,1b,8b] [--seq T] [--reps R] [--sweep a,b] [--quick]
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/backend.h"
#include "tensor/cuda.h"
#include "tensor/grad.h"

#include "bench_util.h"

struct shape {
    const char *name;
    int64_t B, H, Hkv, D;
};

// The training benchmark's batches (bench/train_cuda.sh): rows of 2048 tokens (llama-124m's
// of 1024: run it with --seq 1024).
static const struct shape shapes[] = {
    { "135m", 8, 9, 3, 64 },
    { "1b", 4, 32, 8, 64 },
    { "8b", 1, 32, 8, 128 },
    { "124m", 16, 12, 12, 64 },
};

static int fail(const char *what)
{
    fprintf(stderr, "attn_cuda: %s: %s\n", what, tw_error_msg());
    return 1;
}

struct bufs {
    float *q, *k, *v, *dout, *out, *lse, *dq, *dk, *dv;
    int32_t *start;
    size_t nq, nk, nl;
};

static float *dev_random(struct tw_backend *be, size_t n, uint64_t seed, float amp)
{
    float *h = tw_malloc_array(n, sizeof(float));
    float *d = tw_backend_alloc(be, n * sizeof(float));
    if (!h || !d) {
        tw_free(h);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        h[i] = amp * uniform_of(seed * 0x9E3779B97F4A7C15ull + i);
    int rc = tw_backend_upload(be, d, h, n * sizeof(float));
    tw_free(h);
    return rc ? NULL : d;
}

// Downloads the outputs (out, dq, dk, dv) into one host array.
static float *outputs(struct tw_backend *be, const struct bufs *b)
{
    size_t n = 2 * b->nq + 2 * b->nk;
    float *h = tw_malloc_array(n, sizeof(float));
    if (!h || tw_backend_download(be, h, b->out, b->nq * sizeof(float)) ||
        tw_backend_download(be, h + b->nq, b->dq, b->nq * sizeof(float)) ||
        tw_backend_download(be, h + 2 * b->nq, b->dk, b->nk * sizeof(float)) ||
        tw_backend_download(be, h + 2 * b->nq + b->nk, b->dv, b->nk * sizeof(float))) {
        tw_free(h);
        return NULL;
    }
    return h;
}

// One forward and one backward (its gradients written: the shape's assign).
static void pass(struct tw_backend *be, const struct tw_grad_ops *g, const struct bufs *b,
                 const struct tw_attn_shape *s, bool fwd, bool bwd)
{
    if (fwd)
        g->attn_fwd(be, b->out, b->lse, b->q, b->k, b->v, b->start, s);
    if (bwd)
        g->attn_bwd(be, b->dq, b->dk, b->dv, b->dout, b->q, b->k, b->v, b->out, b->lse, b->start,
                    s);
}

// Seconds a call of the forward (bwd false) or backward: the best of three rounds of reps.
static double time_pass(struct tw_backend *be, const struct tw_grad_ops *g, const struct bufs *b,
                        const struct tw_attn_shape *s, bool bwd, int reps)
{
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        if (tw_backend_sync(be) != 0)
            return -1;
        double t0 = now();
        for (int i = 0; i < reps; i++)
            pass(be, g, b, s, !bwd, bwd);
        if (tw_backend_sync(be) != 0)
            return -1;
        double t = (now() - t0) / reps;
        best = t < best ? t : best;
    }
    return best;
}

static int run_shape(struct tw_backend *be, const struct shape *sh, int64_t T, int reps,
                     char (*sw)[32], int n_sw)
{
    const struct tw_grad_ops *g = tw_backend_grad(be);
    struct tw_attn_shape s = { .B = sh->B,
                               .T = T,
                               .H = sh->H,
                               .Hkv = sh->Hkv,
                               .D = sh->D,
                               .scale = 1.0f / sqrtf((float)sh->D),
                               .lowp = true,
                               .assign = true }; // as training calls it: gradients written
    struct bufs b = { 0 };
    b.nq = (size_t)(sh->B * T * sh->H * sh->D), b.nk = (size_t)(sh->B * T * sh->Hkv * sh->D);
    b.nl = (size_t)(sh->B * T * sh->H);
    b.q = dev_random(be, b.nq, 1, 1.5f), b.k = dev_random(be, b.nk, 2, 1.5f);
    b.v = dev_random(be, b.nk, 3, 1.0f), b.dout = dev_random(be, b.nq, 4, 1.0f);
    b.out = tw_backend_alloc(be, b.nq * sizeof(float));
    b.lse = tw_backend_alloc(be, b.nl * sizeof(float));
    b.dq = tw_backend_alloc(be, b.nq * sizeof(float));
    b.dk = tw_backend_alloc(be, b.nk * sizeof(float));
    b.dv = tw_backend_alloc(be, b.nk * sizeof(float));
    b.start = tw_backend_alloc(be, (size_t)(sh->B * T) * sizeof(int32_t));
    int32_t *hs = tw_calloc((size_t)(sh->B * T), sizeof(int32_t)); // one example a row
    if (!b.q || !b.k || !b.v || !b.dout || !b.out || !b.lse || !b.dq || !b.dk || !b.dv ||
        !b.start || !hs || tw_backend_upload(be, b.start, hs, (size_t)(sh->B * T) * 4))
        return fail("memory");
    tw_free(hs);
    // causal pairs: each row's T (T + 1) / 2
    double fwd_flop = 4.0 * (double)(sh->B * sh->H * sh->D) * (double)T * (double)(T + 1) / 2;
    float *ref = NULL;
    for (int v = -1; v < n_sw; v++) {
        const char *name = v < 0 ? "default" : sw[v];
        unsetenv("TWIN_FA_SWEEP"), unsetenv("TWIN_FA_SPLIT"), unsetenv("TWIN_FA_FWD");
        if (v >= 0 && sw[v][0] == 's')
            setenv("TWIN_FA_SPLIT", sw[v] + 1, 1);
        else if (v >= 0 && sw[v][0] == 'f')
            setenv("TWIN_FA_FWD", sw[v] + 1, 1);
        else if (v >= 0)
            setenv("TWIN_FA_SWEEP", sw[v], 1);
        pass(be, g, &b, &s, true, true); // warm-up, and the outputs to check
        if (tw_backend_sync(be) != 0)
            return fail("attention");
        float *o = outputs(be, &b);
        if (!o)
            return fail("download");
        double diff = 0;
        if (!ref)
            ref = o;
        else
            diff = rel_diff(o, ref, 2 * b.nq + 2 * b.nk);
        double tf = time_pass(be, g, &b, &s, false, reps);
        double tb = time_pass(be, g, &b, &s, true, reps);
        if (tf < 0 || tb < 0)
            return fail("attention");
        printf("%-5s %-8s %2lld x %5lld  %2lld/%-2lld %4lld  %9.3f %8.1f  %9.3f %8.1f  %.2e\n",
               sh->name, name, (long long)sh->B, (long long)T, (long long)sh->H,
               (long long)sh->Hkv, (long long)sh->D, tf * 1e3, fwd_flop / tf * 1e-12, tb * 1e3,
               2.5 * fwd_flop / tb * 1e-12, diff);
        if (o != ref)
            tw_free(o);
        if (diff > 2e-2)
            return fprintf(stderr, "attn_cuda: variant %s differs from the default\n", name), 1;
    }
    unsetenv("TWIN_FA_SWEEP"), unsetenv("TWIN_FA_SPLIT"), unsetenv("TWIN_FA_FWD");
    tw_free(ref);
    void *all[] = { b.q, b.k, b.v, b.dout, b.out, b.lse, b.dq, b.dk, b.dv, b.start };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tw_backend_release(be, all[i]);
    return 0;
}

int main(int argc, char **argv)
{
    const char *names = "135m,1b,8b", *sweep = "";
    int64_t T = 2048;
    int reps = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            names = "1b", T = 256, reps = 2;
        } else if (i + 1 < argc && strcmp(argv[i], "--shapes") == 0) {
            names = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--seq") == 0) {
            T = atoll(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) {
            reps = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--sweep") == 0) {
            sweep = argv[++i];
        } else {
            fprintf(stderr, "usage: attn_cuda [--shapes 135m,1b,8b] [--seq T] [--reps R] "
                            "[--sweep a,b] [--quick]\n");
            return 2;
        }
    }
    if (T < 1 || T > 65536 || reps < 1)
        return fprintf(stderr, "attn_cuda: --seq takes 1 to 65536, --reps at least 1\n"), 2;
    struct tw_backend *be;
    if (tw_backend_cuda_new(0, &be) != 0)
        return fail("cuda");
    char gpu[256], sh[8][32], sw[24][32];
    tw_cuda_device_name(0, gpu, sizeof gpu);
    int n_sh = parse_list(names, sh, 8), n_sw = parse_list(sweep, sw, 24);
    printf("attn_cuda: %s; causal, one example a row; best of 3 rounds of %d calls\n", gpu, reps);
    printf("%-5s %-8s %12s  %5s %4s  %9s %8s  %9s %8s  %s\n", "shape", "variant", "B x T", "H/Hkv",
           "D", "fwd ms", "TFLOP/s", "bwd ms", "TFLOP/s", "vs default");
    for (int i = 0; i < n_sh; i++) {
        const struct shape *s = NULL;
        for (size_t j = 0; j < sizeof shapes / sizeof *shapes; j++)
            if (strcmp(shapes[j].name, sh[i]) == 0)
                s = &shapes[j];
        if (!s)
            return fprintf(stderr, "attn_cuda: no shape %s (135m, 1b, 8b)\n", sh[i]), 2;
        if (run_shape(be, s, T, reps, sw, n_sw) != 0)
            return 1;
    }
    tw_backend_free(be);
    printf("headline: the training attention's passes timed at %d shapes\n", n_sh);
    return 0;
}

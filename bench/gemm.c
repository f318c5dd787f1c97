// bench/gemm: the prefill / batched-decode matmul y (T, N) = x (T, K) · w (N, K)^T for bf16
// weights, at the shapes of SmolLM2-135M (K=576: N=576 q/o, 192 k/v, 1536 gate/up; K=1536,
// N=576 down) and Llama-3.2-1B (K=2048: N=2048, 512, 8192; K=8192, N=2048), T = 16, 64, 256
// and 512 activation rows. Two paths, each as the fast CPU backend runs it (cpu.c's
// matmul_gemm: every OpenMP thread takes a slice of the N output columns):
//   old  dequantise a tile of weight rows to f32 and call OpenBLAS' single-threaded sgemm;
//   new  x rounded to bf16 and packed once (by all threads), then the AVX-512 BF16 kernel of
//        tensor/cpu_gemm.h on each thread's slice.
// on one thread and on --threads (default: every online CPU). The table gives GFLOP/s
// (2 T N K / time, the best of several runs) and the largest difference between the paths
// relative to max |y|; the headline is the new path's speed-up at T=64 on the SmolLM2 shapes
// with all threads (the sum of their times). Without AVX-512 BF16 only the old path runs.
// Usage: gemm [--quick] [--threads N]   (--quick: small shapes and one run, a smoke run)
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "tensor/cpu_gemm.h"
#include "tensor/dtype.h"

#define TILE_BYTES (2u << 20) // cpu.c's per-thread tile of dequantised weights

struct shape {
    const char *model, *name;
    int64_t K, N;
};

static const struct shape shapes[] = {
    { "smollm2", "q/o", 576, 576 },       { "smollm2", "k/v", 576, 192 },
    { "smollm2", "gate/up", 576, 1536 },  { "smollm2", "down", 1536, 576 },
    { "llama1b", "q/o", 2048, 2048 },     { "llama1b", "k/v", 2048, 512 },
    { "llama1b", "gate/up", 2048, 8192 }, { "llama1b", "down", 8192, 2048 },
};
static const struct shape quick_shapes[] = { { "small", "odd", 130, 100 } };

struct problem {
    int64_t T, K, N;
    const uint16_t *w; // (N, K) bf16
    const float *x;    // (T, K)
    float *y;          // (T, N)
    float *tiles;      // TILE_BYTES per thread
};

// The slice of N columns thread id of nt takes (cpu.c's split: multiples of 16).
static void slice(int64_t N, int id, int nt, int64_t *n0, int64_t *n1)
{
    int64_t per = (N + nt - 1) / nt;
    per = (per + 15) / 16 * 16;
    *n0 = (int64_t)id * per < N ? (int64_t)id * per : N;
    *n1 = *n0 + per < N ? *n0 + per : N;
}

static void run_old(const struct problem *p, int threads)
{
    int64_t T = p->T, K = p->K, N = p->N, rows = (int64_t)(TILE_BYTES / sizeof(float)) / K;
#pragma omp parallel num_threads(threads)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t n0, n1;
        slice(N, id, nt, &n0, &n1);
        float *tile = p->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
        for (int64_t r0 = n0; r0 < n1; r0 += rows) {
            int64_t nr = n1 - r0 < rows ? n1 - r0 : rows;
            for (int64_t r = 0; r < nr; r++)
                tw_dequantize_row(TW_DTYPE_BF16, p->w + (r0 + r) * K, tile + r * K, (size_t)K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, (int)K, 1.0f,
                        p->x, (int)K, tile, (int)K, 0.0f, p->y + r0, (int)N);
        }
    }
}

// As cpu.c runs it, with the packed x allocated per call.
static void run_new(const struct problem *p, int threads)
{
    int64_t T = p->T, K = p->K, N = p->N;
    void *xp = malloc(tw_gemm_bf16_packed_bytes(T, K));
    if (!xp) {
        fprintf(stderr, "gemm: out of memory\n");
        exit(1);
    }
#pragma omp parallel num_threads(threads)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        tw_gemm_bf16_pack_x(p->x, T, K, xp, id, nt);
#pragma omp barrier
        int64_t n0, n1;
        slice(N, id, nt, &n0, &n1);
        float *tile = p->tiles + (size_t)id * (TILE_BYTES / sizeof(float));
        tw_gemm_bf16(xp, T, K, p->w + n0 * K, (size_t)K, n1 - n0, p->y + n0, (size_t)N, tile);
    }
    free(xp);
}

// GFLOP/s of path f: the best of `runs` after a warm-up run; each run repeats the call until
// it has taken 50 ms (1 call in quick mode).
static double gflops(void (*f)(const struct problem *, int), const struct problem *p, int threads,
                     int runs, int quick)
{
    double best = 1e30;
    for (int r = 0; r < runs + 1; r++) {
        int calls = 0;
        double t0 = now(), dt;
        do {
            f(p, threads);
            calls++;
            dt = now() - t0;
        } while (!quick && dt < 0.05);
        if (r > 0 && dt / calls < best)
            best = dt / calls;
    }
    return 2.0 * (double)p->T * (double)p->N * (double)p->K / best / 1e9;
}

static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m + 1e-30);
}

int main(int argc, char **argv)
{
    int quick = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: gemm [--quick] [--threads N]\n");
            return 2;
        }
    }
    if (threads <= 0)
        threads = tw_cpu_count();
    openblas_set_num_threads(1); // as the fast backend does: the OpenMP team owns the cores
    bool have = tw_gemm_bf16_usable(tw_cpu_isa_best());
    const struct shape *sh = quick ? quick_shapes : shapes;
    size_t nshapes = quick ? 1 : sizeof shapes / sizeof *shapes;
    int64_t Ts_full[] = { 16, 64, 256, 512 }, Ts_quick[] = { 17, 64 };
    const int64_t *Ts = quick ? Ts_quick : Ts_full;
    int nT = quick ? 2 : 4, runs = quick ? 1 : 3;

    printf("gemm: y = x w^T, bf16 w, GFLOP/s (2 T N K / time, best of %d); old = dequantise + "
           "OpenBLAS sgemm (%s), new = AVX-512 BF16 kernel%s\n",
           runs, openblas_get_corename(), have ? "" : " (not on this CPU: skipped)");
    printf("%-8s %-8s %5s %5s %4s %8s %8s %6s %8s %8s %6s %9s\n", "model", "matrix", "K", "N", "T",
           "old 1t", "new 1t", "x", "old", "new", "x", "rel diff");
    printf("%62s threads: %d\n", "", threads);
    double t_old = 0, t_new = 0; // seconds of the headline shapes
    float *tiles = malloc((size_t)threads * TILE_BYTES);
    if (!tiles) {
        fprintf(stderr, "gemm: out of memory\n");
        return 1;
    }
    for (size_t s = 0; s < nshapes; s++) {
        int64_t K = sh[s].K, N = sh[s].N, Tmax = Ts[nT - 1];
        uint16_t *w = malloc((size_t)(N * K) * sizeof *w);
        float *x = malloc((size_t)(Tmax * K) * sizeof *x);
        float *y0 = malloc((size_t)(Tmax * N) * sizeof *y0);
        float *y1 = malloc((size_t)(Tmax * N) * sizeof *y1);
        if (!w || !x || !y0 || !y1) {
            fprintf(stderr, "gemm: out of memory\n");
            return 1;
        }
        for (int64_t i = 0; i < N * K; i++)
            w[i] = tw_f32_to_bf16(uniform() * 0.05f);
        for (int64_t i = 0; i < Tmax * K; i++)
            x[i] = uniform();
        for (int i = 0; i < nT; i++) {
            struct problem p = { Ts[i], K, N, w, x, y0, tiles };
            double o1 = gflops(run_old, &p, 1, runs, quick);
            double on = gflops(run_old, &p, threads, runs, quick);
            double n1 = 0, nn = 0, diff = 0;
            if (have) {
                p.y = y1;
                n1 = gflops(run_new, &p, 1, runs, quick);
                nn = gflops(run_new, &p, threads, runs, quick);
                diff = max_rel_diff(y1, y0, (size_t)(Ts[i] * N));
            }
            printf("%-8s %-8s %5lld %5lld %4lld %8.1f %8.1f %6.2f %8.1f %8.1f %6.2f %9.1e\n",
                   sh[s].model, sh[s].name, (long long)K, (long long)N, (long long)Ts[i], o1, n1,
                   n1 / o1, on, nn, nn / on, diff);
            fflush(stdout);
            if (Ts[i] == 64 && (quick || strcmp(sh[s].model, "smollm2") == 0)) {
                double f = 2.0 * 64 * (double)N * (double)K / 1e9;
                t_old += f / on;
                t_new += have ? f / nn : 0;
            }
        }
        free(w), free(x), free(y0), free(y1);
    }
    free(tiles);
    if (have)
        printf("\nheadline: at T=64 on the %s shapes with %d threads the bf16 kernel is %.2fx as "
               "fast as dequantise + sgemm (total time of the matmuls)\n",
               quick ? "quick" : "SmolLM2", threads, t_old / t_new);
    else
        printf("\nheadline: no AVX-512 BF16 on this CPU; dequantise + sgemm only\n");
    return 0;
}

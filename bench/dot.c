// bench/dot: how fast the CPU dot kernels (tensor/cpu_dot.h) stream weights, on one thread.
// For each dtype and each ISA this machine has, a matrix of 256 MiB of weights or twice the
// L3, whichever is larger (rows of 4096, too large for the caches), is multiplied by one
// activation row (nx=1: decoding a token) and by a tile of four (nx=4: prefill), whole rows at
// a time (the four activation rows, 64 KiB, come from L2) and in K slices of 1024 columns
// (nx=4/k: they stay in L1, as in a K-blocked matmul). The table gives GB/s of weight bytes
// read (the best of several passes), and nx=1 as a share of the plain memory-read bandwidth
// of the same thread (a sum over a float array of 256 MiB or twice the L3), the ceiling the
// decode path runs against.
// Usage: dot [--quick]   (--quick: 1 MiB of weights and one pass, a smoke run)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/cpu_dot.h"
#include "tensor/dtype.h"

#include "bench_util.h"

#define COLS    BENCH_COLS
#define NX_TILE 4
#define KC      1024 // columns of a K slice (nx=4/k): 4 x 1024 floats of activations, 16 KiB

// ---- the kernels.

// GB/s of weight bytes for one pass of kernel f over m against nx activation rows (best of
// `passes`, after a warm-up pass). With kc < COLS the rows are cut into slices of kc columns
// and the matrix is swept slice by slice, as a K-blocked matmul calls the kernel so that the
// nx activation slices stay in L1; the weights are still read once a pass.
static double stream(const struct matrix *m, tw_dot_fn f, const float *x, int nx, size_t kc,
                     int passes, volatile float *sink)
{
    double best = 1e30;
    float out[NX_TILE];
    for (int p = 0; p < passes + 1; p++) {
        float s = 0.0f;
        double t0 = now();
        for (size_t k0 = 0; k0 < COLS; k0 += kc) {
            size_t off;
            if (tw_dtype_nbytes(m->t, k0, &off))
                return 0.0;
            for (size_t r = 0; r < m->rows; r++) {
                f(m->data + r * m->row_bytes + off, x + k0, COLS, nx, kc, out);
                s += out[0];
            }
        }
        double dt = now() - t0;
        *sink += s;
        if (p > 0 && dt < best)
            best = dt;
    }
    return (double)(m->rows * m->row_bytes) / best / 1e9;
}

int main(int argc, char **argv)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: dot [--quick]\n");
            return 2;
        }
    }
    size_t weight_bytes = quick ? (size_t)1 << 20 : beyond_llc((size_t)256 << 20);
    size_t read_bytes = quick ? (size_t)4 << 20 : beyond_llc((size_t)256 << 20);
    int passes = quick ? 1 : 3;
    volatile float sink = 0.0f;

    enum tw_cpu_isa top = tw_cpu_isa_best();
    double mem = read_bandwidth(read_bytes, passes, 1, &sink);
    printf("dot: one thread, %zu MiB of weights in rows of %d, GB/s of weight bytes read; "
           "kernels up to %s\n",
           weight_bytes >> 20, COLS, tw_cpu_isa_name(top));
    printf("memory read (sum of a %zu MiB float array): %.1f GB/s\n\n", read_bytes >> 20, mem);

    printf("%-6s %-7s %8s %8s %8s %10s\n", "dtype", "isa", "nx=1", "nx=4", "nx=4/k", "nx=1/mem");

    // The activations 64-byte aligned, as a matmul should keep them (AVX-512 loads that
    // straddle cache lines cost twice).
    float *x = aligned_alloc(64, (size_t)NX_TILE * COLS * sizeof *x);
    if (!x) {
        fprintf(stderr, "dot: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)NX_TILE * COLS; i++)
        x[i] = uniform();
    double head[3] = { 0 };
    for (int t = 0; t < TW_DTYPE_COUNT; t++) {
        struct matrix m;
        if (matrix_init(&m, (enum tw_dtype)t, weight_bytes)) {
            fprintf(stderr, "dot: out of memory\n");
            return 1;
        }
        for (int isa = TW_ISA_SCALAR; isa <= (int)top; isa++) {
            tw_dot_fn f = tw_dot_kernel((enum tw_dtype)t, (enum tw_cpu_isa)isa);
            double g1 = stream(&m, f, x, 1, COLS, passes, &sink);
            double g4 = stream(&m, f, x, NX_TILE, COLS, passes, &sink);
            double g4k = stream(&m, f, x, NX_TILE, KC, passes, &sink);
            printf("%-6s %-7s %8.1f %8.1f %8.1f %9.0f%%\n", tw_dtype_name((enum tw_dtype)t),
                   tw_cpu_isa_name((enum tw_cpu_isa)isa), g1, g4, g4k, 100.0 * g1 / mem);
            fflush(stdout);
            if (t == TW_DTYPE_Q4_K && isa == (int)top) {
                head[0] = g1;
                head[1] = g4;
                head[2] = g4k;
            }
        }
        free(m.data);
    }
    free(x);
    printf("\nheadline: %s q4_K streams %.1f GB/s at nx=1 (%.0f%% of the %.1f GB/s memory "
           "read), %.1f at nx=4, %.1f at nx=4 in K slices\n",
           tw_cpu_isa_name(top), head[0], 100.0 * head[0] / mem, mem, head[1], head[2]);
    return 0;
}

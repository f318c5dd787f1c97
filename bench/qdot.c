// bench/qdot: how fast the integer dot kernels (tensor/cpu_qdot.h) stream weights, on one
// thread. For each block dtype and each ISA this machine has, a matrix of 64 MiB of weights or
// twice the L3, whichever is larger (rows of 4096, too large for the caches), is multiplied by
// one activation row (nx=1: decoding a token) and by a tile of four (nx=4: prefill). Each pass
// quantizes its activation rows first (tw_q8_act_quantize), inside the timed region, as a
// matmul does once for all rows. The table gives GB/s of weight bytes read (best of several
// passes), nx=1 as a share of the plain memory-read bandwidth of the same thread (a sum over a
// float array of 256 MiB or twice the L3), the one-row
// kernel over packed activations (q8_0, q4_0 and q4_K: tw_qdot_k_fn, the packing in the timed
// region) where the ISA has one, q4_0's over activations laid out in place (tw_qdot_m_fn,
// "in-place"), and, for comparison, the float-activation kernel of cpu_dot.h
// at the same ISA.
// Usage: qdot [--quick | --l2]   (--quick: 1 MiB of weights and one pass, a smoke run; --l2:
// 256 KiB of weights, which stay in L2: the kernels' arithmetic rather than the memory's pace)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tensor/cpu_dot.h"
#include "tensor/cpu_qdot.h"
#include "tensor/dtype.h"

#include "bench_util.h"

#define COLS    BENCH_COLS
#define NX_TILE 4

// ---- the kernels.

// GB/s of weight bytes for one pass of the integer kernel f over m against nx activation
// rows, quantized by q at the start of each pass (best of `passes`, after a warm-up pass).
static double stream_q(const struct matrix *m, tw_qdot_fn f, tw_q8_act_fn q, const float *x,
                       struct tw_q8_act *xq, int nx, int passes, volatile float *sink)
{
    double best = 1e30;
    float out[NX_TILE];
    for (int p = 0; p < passes + 1; p++) {
        float s = 0.0f;
        double t0 = now();
        for (int j = 0; j < nx; j++)
            q(x + (size_t)j * COLS, COLS, xq + (size_t)j * (COLS / TW_QK8_ACT));
        for (size_t r = 0; r < m->rows; r++) {
            f(m->data + r * m->row_bytes, xq, COLS / TW_QK8_ACT, nx, COLS, out);
            s += out[0];
        }
        double dt = now() - t0;
        *sink += s;
        if (p > 0 && dt < best)
            best = dt;
    }
    return (double)(m->rows * m->row_bytes) / best / 1e9;
}

// The same for a one-row kernel over activations prepared after the quantizing (nx = 1):
// packed into xk for fk (tw_q8k_act), or laid out in place into xm for fm (q4_0's tw_q40m).
static double stream_1(const struct matrix *m, tw_qdot_k_fn fk, tw_qdot_m_fn fm, tw_q8_act_fn q,
                       const float *x, struct tw_q8_act *xq, struct tw_q8k_act *xk,
                       struct tw_q40m *xm, int passes, volatile float *sink)
{
    double best = 1e30;
    for (int p = 0; p < passes + 1; p++) {
        float s = 0.0f, out;
        double t0 = now();
        q(x, COLS, xq);
        if (fk)
            tw_q8k_act_pack(xq, COLS, xk);
        else
            tw_q40m_pack(xq, 0, COLS / TW_QK8_ACT, COLS / TW_QK8_ACT, xm);
        for (size_t r = 0; r < m->rows; r++) {
            const uint8_t *row = m->data + r * m->row_bytes;
            if (fk)
                fk(row, xk, COLS, &out);
            else
                fm(row, xm, COLS, &out);
            s += out;
        }
        double dt = now() - t0;
        *sink += s;
        if (p > 0 && dt < best)
            best = dt;
    }
    return (double)(m->rows * m->row_bytes) / best / 1e9;
}

// The same for the float-activation kernel of cpu_dot.h.
static double stream_f(const struct matrix *m, tw_dot_fn f, const float *x, int nx, int passes,
                       volatile float *sink)
{
    double best = 1e30;
    float out[NX_TILE];
    for (int p = 0; p < passes + 1; p++) {
        float s = 0.0f;
        double t0 = now();
        for (size_t r = 0; r < m->rows; r++) {
            f(m->data + r * m->row_bytes, x, COLS, nx, COLS, out);
            s += out[0];
        }
        double dt = now() - t0;
        *sink += s;
        if (p > 0 && dt < best)
            best = dt;
    }
    return (double)(m->rows * m->row_bytes) / best / 1e9;
}

// Nanoseconds to quantize one activation row of COLS floats (best of many).
static double quantize_ns(tw_q8_act_fn q, const float *x, struct tw_q8_act *xq)
{
    double best = 1e30;
    for (int p = 0; p < 200; p++) {
        double t0 = now();
        q(x, COLS, xq);
        double dt = now() - t0;
        if (dt < best)
            best = dt;
    }
    return best * 1e9;
}

int main(int argc, char **argv)
{
    int quick = 0, l2 = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--l2") == 0) {
            l2 = 1;
        } else {
            fprintf(stderr, "usage: qdot [--quick | --l2]\n");
            return 2;
        }
    }
    size_t weight_bytes = quick ? (size_t)1 << 20
                          : l2  ? (size_t)256 << 10
                                : beyond_llc((size_t)64 << 20);
    size_t read_bytes = quick ? (size_t)4 << 20 : beyond_llc((size_t)256 << 20);
    int passes = quick ? 1 : l2 ? 400 : 5;
    volatile float sink = 0.0f;
    tw_dot_stream_set(!quick && !l2); // the matrix streams from DRAM (cpu_dot.h's far prefetch)

    enum tw_cpu_isa top = tw_cpu_isa_best();
    double mem = read_bandwidth(read_bytes, passes, 1, &sink);
    printf("qdot: one thread, %zu KiB of weights in rows of %d, GB/s of weight bytes read "
           "(activations quantized to int8 in each pass); kernels up to %s\n",
           weight_bytes >> 10, COLS, tw_cpu_isa_name(top));
    printf("memory read (sum of a %zu MiB float array): %.1f GB/s\n", read_bytes >> 20, mem);

    float *x = aligned_alloc(64, (size_t)NX_TILE * COLS * sizeof *x);
    struct tw_q8_act *xq = malloc((size_t)NX_TILE * (COLS / TW_QK8_ACT) * sizeof *xq);
    struct tw_q8k_act *xk = malloc((COLS / 256) * sizeof *xk);
    struct tw_q40m *xm = aligned_alloc(64, tw_q40m_count(COLS) * sizeof *xm);
    if (!x || !xq || !xk || !xm) {
        fprintf(stderr, "qdot: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)NX_TILE * COLS; i++)
        x[i] = uniform();
    for (int isa = TW_ISA_SCALAR; isa <= (int)top; isa++)
        printf("quantize a row of %d activations, %s: %.0f ns\n", COLS,
               tw_cpu_isa_name((enum tw_cpu_isa)isa),
               quantize_ns(tw_q8_act_quantizer((enum tw_cpu_isa)isa), x, xq));

    printf("\n%-6s %-7s %8s %8s %10s %8s %8s %12s\n", "dtype", "isa", "nx=1", "nx=4", "nx=1/mem",
           "packed", "in-place", "f32-act nx=1");
    static const enum tw_dtype types[] = { TW_DTYPE_Q8_0, TW_DTYPE_Q4_0, TW_DTYPE_Q4_K,
                                           TW_DTYPE_Q6_K };
    double head[4] = { 0 };
    for (int k = 0; k < 4; k++) {
        enum tw_dtype t = types[k];
        struct matrix m;
        if (matrix_init(&m, t, weight_bytes)) {
            fprintf(stderr, "qdot: out of memory\n");
            return 1;
        }
        for (int isa = TW_ISA_SCALAR; isa <= (int)top; isa++) {
            tw_qdot_fn f = tw_qdot_kernel(t, (enum tw_cpu_isa)isa);
            tw_q8_act_fn q = tw_q8_act_quantizer((enum tw_cpu_isa)isa);
            double g1 = stream_q(&m, f, q, x, xq, 1, passes, &sink);
            double g4 = stream_q(&m, f, q, x, xq, NX_TILE, passes, &sink);
            double gf = stream_f(&m, tw_dot_kernel(t, (enum tw_cpu_isa)isa), x, 1, passes, &sink);
            tw_qdot_k_fn fk = tw_qdot_k_kernel(t, (enum tw_cpu_isa)isa);
            char gk[16] = "-";
            if (fk)
                snprintf(gk, sizeof gk, "%.1f",
                         stream_1(&m, fk, NULL, q, x, xq, xk, xm, passes, &sink));
            tw_qdot_m_fn fm = tw_qdot_m_kernel(t, (enum tw_cpu_isa)isa);
            char gm[16] = "-";
            if (fm)
                snprintf(gm, sizeof gm, "%.1f",
                         stream_1(&m, NULL, fm, q, x, xq, xk, xm, passes, &sink));
            printf("%-6s %-7s %8.1f %8.1f %9.0f%% %8s %8s %12.1f\n", tw_dtype_name(t),
                   tw_cpu_isa_name((enum tw_cpu_isa)isa), g1, g4, 100.0 * g1 / mem, gk, gm, gf);
            fflush(stdout);
            if (isa == (int)top)
                head[k] = g1;
        }
        free(m.data);
    }
    free(x);
    free(xq);
    free(xk);
    free(xm);
    printf("\nheadline: %s at nx=1 streams q8_0 %.1f, q4_0 %.1f, q4_K %.1f, q6_K %.1f GB/s "
           "(memory read %.1f GB/s; q4_K at %.0f%% of it)\n",
           tw_cpu_isa_name(top), head[0], head[1], head[2], head[3], mem, 100.0 * head[2] / mem);
    return 0;
}

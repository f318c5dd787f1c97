// The bf16 GEMM kernel (tensor/cpu_gemm.h) against the scalar reference (tw_dequantize_row and
// a dot product in double) on sizes that are not multiples of the tiles: within cpu_gemm.h's
// bound of the exact product, and within f32 accumulation error of the product with x rounded
// to bf16; x rounded to nearest even (a one-hot w reads the rounded x back exactly); the
// packing of x shared by threads; padding of y and w left alone. Then tw_matmul on the fast
// backend (bf16 weights, T = 20 and 64) against the reference backend within the same bound.
// Without AVX-512 BF16 the kernel tests are skipped and the matmul test runs the old path.
// GEMM_TEST_VERBOSE=1 prints the errors of each case (cpu_gemm.h's measured values).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "tensor/backend.h"
#include "tensor/cpu_gemm.h"
#include "tensor/dtype.h"

// The bounds the tests hold, relative to sum_k |w_k x_k| of each output (cpu_gemm.h gives the
// measured values they leave room for): the proven one of the rounding of x, 2^-8 per term
// (plus room for f32 sums); the statistical one of random data, where the errors of the terms
// have random signs (about 0.009 / sqrt(K) measured); and the f32 accumulation alone.
#define BOUND_ROUNDED 1e-5 // against the product with x rounded to bf16
static double bound_exact(int64_t K)
{
    double proven = 0x1p-8 + BOUND_ROUNDED, random = 0.02 / sqrt((double)K);
    return K >= 64 && random < proven ? random : proven;
}

static uint64_t rng = 0xB16B00B5ull;

static float uniform(void) // in [-1, 1)
{
    return (float)((double)(check_rand(&rng) >> 11) * 0x1p-52 - 1.0);
}

static int64_t pick(int64_t lo, int64_t hi) // in [lo, hi]
{
    return lo + (int64_t)(check_rand(&rng) % (uint64_t)(hi - lo + 1));
}

static double worst_exact, worst_rounded; // the largest errors seen, for the header

// (T, N) outputs of x (T, K) · w (N, K)^T into y (ldy apart) against the reference; w rows ldw
// elements apart. Records the largest errors relative to sum |w x| and checks the bounds.
static void compare(const float *x, int64_t T, int64_t K, const uint16_t *w, size_t ldw, int64_t N,
                    const float *y, size_t ldy, const char *what)
{
    float *wf = tw_malloc((size_t)K * sizeof *wf), *xr = tw_malloc((size_t)K * sizeof *xr);
    REQUIRE(wf && xr);
    double e_exact = 0, e_rounded = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * K;
        for (int64_t k = 0; k < K; k++)
            xr[k] = tw_bf16_to_f32(tw_f32_to_bf16(xt[k]));
        for (int64_t n = 0; n < N; n++) {
            tw_dequantize_row(TW_DTYPE_BF16, w + (size_t)n * ldw, wf, (size_t)K);
            double exact = 0, rounded = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                exact += (double)wf[k] * xt[k];
                rounded += (double)wf[k] * xr[k];
                mag += fabs((double)wf[k] * xt[k]);
            }
            double v = y[(size_t)t * ldy + (size_t)n], m = mag > 0 ? mag : 1e-30;
            e_exact = fmax(e_exact, fabs(v - exact) / m);
            e_rounded = fmax(e_rounded, fabs(v - rounded) / m);
            if (isnan(v))
                e_exact = e_rounded = INFINITY;
        }
    }
    if (e_exact > bound_exact(K) || e_rounded > BOUND_ROUNDED)
        fprintf(stderr, "%s: T=%lld N=%lld K=%lld: error %.3g of sum|w x| (rounded x: %.3g)\n",
                what, (long long)T, (long long)N, (long long)K, e_exact, e_rounded);
    CHECK(e_exact <= bound_exact(K));
    CHECK(e_rounded <= BOUND_ROUNDED);
    if (getenv("GEMM_TEST_VERBOSE"))
        printf("%s T=%lld N=%lld K=%lld: %.3g %.3g\n", what, (long long)T, (long long)N,
               (long long)K, e_exact, e_rounded);
    worst_exact = fmax(worst_exact, e_exact);
    worst_rounded = fmax(worst_rounded, e_rounded);
    tw_free(wf), tw_free(xr);
}

// One kernel call on random data: w of N rows (padded to ldw = K + wpad), y with ldy = N +
// ypad, whose padding must come back untouched. Scales vary over the rows and columns, so
// that the errors are relative to magnitudes of several sizes.
static void check_kernel(int64_t T, int64_t N, int64_t K, int wpad, int ypad)
{
    size_t ldw = (size_t)(K + wpad), ldy = (size_t)(N + ypad);
    uint16_t *w = tw_malloc((size_t)N * ldw * sizeof *w);
    float *x = tw_malloc((size_t)(T * K) * sizeof *x);
    float *y = tw_malloc((size_t)T * ldy * sizeof *y);
    void *xp = tw_malloc(tw_gemm_bf16_packed_bytes(T, K));
    void *xp3 = tw_malloc(tw_gemm_bf16_packed_bytes(T, K));
    void *scratch = tw_malloc(TW_GEMM_BF16_SCRATCH);
    REQUIRE(w && x && y && xp && xp3 && scratch);
    for (int64_t n = 0; n < N; n++) {
        float s = ldexpf(1.0f, (int)pick(-6, 2));
        for (size_t k = 0; k < ldw; k++)
            w[(size_t)n * ldw + k] = (int64_t)k < K ? tw_f32_to_bf16(uniform() * s) : 0x7FC0;
    }
    for (int64_t t = 0; t < T; t++) {
        float s = ldexpf(1.0f, (int)pick(-4, 4));
        for (int64_t k = 0; k < K; k++)
            x[t * K + k] = uniform() * s;
    }
    for (size_t i = 0; i < (size_t)T * ldy; i++)
        y[i] = -7.0f;
    // The packing shared by three threads, in any order, gives the same bytes as one.
    tw_gemm_bf16_pack_x(x, T, K, xp, 0, 1);
    for (int part = 2; part >= 0; part--)
        tw_gemm_bf16_pack_x(x, T, K, xp3, part, 3);
    CHECK(memcmp(xp, xp3, tw_gemm_bf16_packed_bytes(T, K)) == 0);
    tw_gemm_bf16(xp, T, K, w, ldw, N, y, ldy, scratch);
    compare(x, T, K, w, ldw, N, y, ldy, "kernel");
    bool pad_ok = true;
    for (int64_t t = 0; t < T; t++)
        for (size_t n = (size_t)N; n < ldy; n++)
            pad_ok &= y[(size_t)t * ldy + n] == -7.0f;
    CHECK(pad_ok);
    tw_free(w), tw_free(x), tw_free(y), tw_free(xp), tw_free(xp3), tw_free(scratch);
}

static void test_kernel_sizes(void)
{
    // Fixed corners: one column, one row of x, tile edges +- 1, an odd K (bf16 rows may have
    // any length: the last pair is half zero), more than one k block (K > 2048).
    static const int64_t fixed[][3] = {
        { 17, 1, 64 },    { 1, 1, 2 },      { 8, 32, 64 },     { 9, 33, 66 },
        { 33, 31, 130 },  { 64, 16, 4096 }, { 100, 47, 3001 }, { 512, 65, 512 },
        { 17, 3000, 64 }, { 7, 17, 1 },     { 64, 64, 4097 },  { 20, 100, 6002 },
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        check_kernel(fixed[i][0], fixed[i][1], fixed[i][2], (int)(i % 3), (int)(i % 2) * 5);
    // Random sizes: T from the batch sizes a server sees, N in 1..3000, K even in 64..4096,
    // with N cut so that the double reference stays quick.
    static const int64_t Ts[] = { 17, 33, 64, 100, 512 };
    for (int i = 0; i < 15; i++) {
        int64_t T = Ts[i % 5], K = 2 * pick(32, 2048), N = pick(1, 3000);
        int64_t cap = 20000000 / (T * K);
        if (N > cap)
            N = cap > 1 ? pick(cap / 2, cap) : 1;
        check_kernel(T, N, K, i % 2 ? 0 : 3, i % 3 ? 0 : 1);
    }
}

// x rounded once, to nearest even: with w the identity (bf16 1.0 on the diagonal), y is the
// rounded x exactly, ties going to the even neighbour. A NaN in x makes its row NaN.
static void test_rounding(void)
{
    enum { K = 40, T = 19 };
    static const float ties[] = {
        1.0f + 0x1p-8f,            // between 1 and 1 + 2^-7: to 1
        1.0f + 3 * 0x1p-8f,        // between 1 + 2^-7 and 1 + 2^-6: to 1 + 2^-6
        -(1.0f + 0x1p-8f),         // the same, negative
        1.0f + 0x1p-8f + 0x1p-20f, // just above the tie: up
        65504.0f,
        -3.0e-30f,
    };
    static uint16_t w[K * K];
    static float x[T * K], y[T * K];
    for (int k = 0; k < K; k++)
        w[k * K + k] = 0x3F80; // 1.0
    for (int i = 0; i < T * K; i++)
        x[i] = i % 5 == 0 ? ties[(i / 5) % 6] : uniform() * 100.0f;
    x[3 * K + 11] = NAN;
    void *xp = tw_malloc(tw_gemm_bf16_packed_bytes(T, K));
    void *scratch = tw_malloc(TW_GEMM_BF16_SCRATCH);
    REQUIRE(xp && scratch);
    tw_gemm_bf16_pack_x(x, T, K, xp, 0, 1);
    tw_gemm_bf16(xp, T, K, w, K, K, y, K, scratch);
    int wrong = 0;
    for (int i = 0; i < T * K; i++) {
        bool nan_row = i / K == 3;
        if (nan_row ? !isnan(y[i]) : y[i] != tw_bf16_to_f32(tw_f32_to_bf16(x[i])))
            wrong++;
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK(y[0] == 1.0f && y[5] == 1.0f + 0x1p-6f && y[15] == 1.0f + 0x1p-7f);
    tw_free(xp), tw_free(scratch);
}

// tw_matmul on the fast backend (the bf16 kernel where the CPU has it, else dequantise +
// sgemm) against the reference backend, with and without a bias.
static void test_matmul(int threads)
{
    struct tw_backend *fast = NULL;
    REQUIRE(tw_backend_cpu_new(threads, &fast) == 0);
    static const int64_t Ts[] = { 20, 64 }, Ns[] = { 301, 64 }, Ks[] = { 576, 130 };
    for (int i = 0; i < 2; i++) {
        int64_t T = Ts[i], N = Ns[i], K = Ks[i];
        uint16_t *w = tw_malloc((size_t)(N * K) * sizeof *w);
        float *x = tw_malloc((size_t)(T * K) * sizeof *x), *b = tw_malloc((size_t)N * sizeof *b);
        float *y0 = tw_malloc((size_t)(T * N) * sizeof *y0);
        float *y1 = tw_malloc((size_t)(T * N) * sizeof *y1);
        REQUIRE(w && x && b && y0 && y1);
        for (int64_t j = 0; j < N * K; j++)
            w[j] = tw_f32_to_bf16(uniform() * 0.1f);
        for (int64_t j = 0; j < T * K; j++)
            x[j] = uniform();
        for (int64_t j = 0; j < N; j++)
            b[j] = uniform();
        struct tw_tensor tw_, tx = tw_tensor_f32_2d(x, T, K), tb = tw_tensor_f32_1d(b, N);
        REQUIRE(tw_tensor_init(&tw_, TW_DTYPE_BF16, 2, (int64_t[]){ N, K }, w, "w") == 0);
        struct tw_tensor t0 = tw_tensor_f32_2d(y0, T, N), t1 = tw_tensor_f32_2d(y1, T, N);
        double *mag = tw_malloc((size_t)(T * N) * sizeof *mag); // sum |w x| of each output
        REQUIRE(mag);
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++) {
                double m = 0;
                for (int64_t k = 0; k < K; k++)
                    m += fabs((double)tw_bf16_to_f32(w[n * K + k]) * x[t * K + k]);
                mag[t * N + n] = m;
            }
        for (int bias = 0; bias < 2; bias++) {
            tw_matmul(tw_backend_cpu_ref(), &t0, &tx, &tw_, bias ? &tb : NULL);
            tw_matmul(fast, &t1, &tx, &tw_, bias ? &tb : NULL);
            // The reference rounds its double sum to float (and adds the bias in float): a
            // few 1e-8 of sum |w x| on top of the kernel's bound.
            double e = 0;
            for (int64_t j = 0; j < T * N; j++)
                e = fmax(e, fabs((double)y1[j] - y0[j]) / mag[j]);
            if (e > bound_exact(K))
                fprintf(stderr, "tw_matmul T=%lld N=%lld K=%lld bias %d: error %.3g\n",
                        (long long)T, (long long)N, (long long)K, bias, e);
            CHECK(e <= bound_exact(K));
        }
        tw_free(mag);
        tw_free(w), tw_free(x), tw_free(b), tw_free(y0), tw_free(y1);
    }
    tw_backend_free(fast);
}

int main(void)
{
    bool have = tw_cpu_has_avx512_bf16() && tw_gemm_bf16_built_avx512();
    if (have) {
        test_kernel_sizes();
        test_rounding();
        printf("tensor_test_cpu_gemm: largest error %.2e of sum|w x| (x rounded to bf16: %.2e)\n",
               worst_exact, worst_rounded);
    } else {
        printf("tensor_test_cpu_gemm: no AVX-512 BF16 on this CPU: kernel tests skipped\n");
    }
    printf("tensor_test_cpu_gemm: tw_matmul runs the %s path\n",
           tw_gemm_bf16_usable(tw_cpu_isa_best()) ? "bf16 kernel" : "dequantise + sgemm");
    test_matmul(1);
    test_matmul(3);
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("tensor_test_cpu_gemm");
}

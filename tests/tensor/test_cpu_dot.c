// The CPU dot kernels (tensor/cpu_dot.h) against the reference tw_vec_dot_row: every dtype,
// every ISA this machine has, tiles of 1 to 8 activation rows, row lengths from one block to
// odd block counts (and float rows of any length), on rows quantized from random floats and
// on random bytes with valid fp16 scales; and the choice of kernel under TWIN_ISA.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tensor/cpu_dot.h"
#include "tensor/dtype.h"

#define NXMAX 8

static uint64_t rng = 0x5EEDC0DEull;

static float uniform(void) // in [-1, 1)
{
    return (float)((double)(check_rand(&rng) >> 11) * 0x1p-52 - 1.0);
}

// A finite fp16 scale, now and then subnormal or zero (F16C and the reference must agree).
static uint16_t random_scale(void)
{
    uint64_t r = check_rand(&rng) % 16;
    if (r == 0)
        return 0;
    if (r == 1)
        return (uint16_t)(check_rand(&rng) & 0x83FF); // subnormal, either sign
    return tw_f32_to_f16(uniform() * 0.05f);
}

// A row of n elements of dtype t into buf (nbytes). kind 0: random floats encoded with
// tw_quantize_row (of varied magnitude); kind 1: random bytes, every fp16 field a valid scale.
static void make_row(enum tw_dtype t, int kind, void *buf, size_t nbytes, size_t n)
{
    if (kind == 0) {
        float *f = malloc(n * sizeof *f);
        REQUIRE(f);
        float scale = ldexpf(1.0f, (int)(check_rand(&rng) % 9) - 4);
        for (size_t i = 0; i < n; i++)
            f[i] = uniform() * scale;
        tw_quantize_row(t, f, buf, n);
        free(f);
        return;
    }
    uint8_t *p = buf;
    for (size_t i = 0; i < nbytes; i++)
        p[i] = (uint8_t)check_rand(&rng);
    size_t bb = tw_dtype_block_bytes(t), nb = nbytes / bb;
    for (size_t i = 0; i < nb; i++) {
        uint8_t *blk = p + i * bb;
        uint16_t h[2] = { random_scale(), random_scale() };
        switch (t) {
        case TW_DTYPE_F16: { // any finite half: flip the top exponent bit of inf / NaN
            uint16_t v;
            memcpy(&v, blk, 2);
            if ((v & 0x7C00) == 0x7C00)
                v ^= 0x4000;
            memcpy(blk, &v, 2);
            break;
        }
        case TW_DTYPE_BF16: { // exponents of 2^-30..2^30, or a subnormal now and then
            uint16_t v;
            memcpy(&v, blk, 2);
            uint16_t e = check_rand(&rng) % 32 == 0 ? 0 : (uint16_t)(97 + v % 61);
            v = (uint16_t)((v & 0x807F) | (e << 7));
            memcpy(blk, &v, 2);
            break;
        }
        case TW_DTYPE_F32: { // exponents of 2^-30..2^30
            uint32_t v;
            memcpy(&v, blk, 4);
            v = (v & 0x807FFFFFu) | ((97u + v % 61u) << 23);
            memcpy(blk, &v, 4);
            break;
        }
        case TW_DTYPE_Q8_0:
        case TW_DTYPE_Q4_0:
            memcpy(blk, h, 2);
            break;
        case TW_DTYPE_Q4_K:
            memcpy(blk, h, 4); // d, dmin
            break;
        case TW_DTYPE_Q6_K:
            memcpy(blk + 208, h, 2);
            break;
        default:
            break;
        }
    }
}

struct result {
    int cases, bad;
    double worst; // the largest |error| / sum |decoded * x| seen
};

// One row against nx activation rows with every kernel up to `top`.
static void check_row(enum tw_dtype t, const void *row, size_t n, const float *x, size_t ldx,
                      enum tw_cpu_isa top, const char *what, struct result *res)
{
    float *w = malloc(n * sizeof *w);
    REQUIRE(w);
    tw_dequantize_row(t, row, w, n);
    double ref[NXMAX], tol[NXMAX];
    for (int j = 0; j < NXMAX; j++) {
        const float *xj = x + (size_t)j * ldx;
        double mag = 0.0;
        for (size_t i = 0; i < n; i++)
            mag += fabs((double)w[i] * xj[i]);
        ref[j] = tw_vec_dot_row(t, row, xj, n);
        tol[j] = 1e-5 * mag + 1e-35;
    }
    free(w);

    static const int nxs[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    for (int isa = TW_ISA_SCALAR; isa <= (int)top; isa++) {
        tw_dot_fn f = tw_dot_kernel(t, (enum tw_cpu_isa)isa);
        CHECK(f != NULL);
        if (!f)
            continue;
        for (size_t k = 0; k < sizeof nxs / sizeof nxs[0]; k++) {
            int nx = nxs[k];
            float out[NXMAX + 1];
            for (int j = 0; j <= NXMAX; j++)
                out[j] = -12345.0f; // untouched past nx
            f(row, x, ldx, nx, n, out);
            res->cases++;
            bool ok = out[nx] == -12345.0f;
            for (int j = 0; j < nx; j++) {
                double err = fabs((double)out[j] - ref[j]), rel = err / (tol[j] / 1e-5);
                if (rel > res->worst)
                    res->worst = rel;
                if (!(err <= tol[j])) {
                    ok = false;
                    if (res->bad < 20)
                        fprintf(stderr,
                                "%s %s n=%zu %s nx=%d row %d: got %.9g, reference %.9g "
                                "(tolerance %.3g)\n",
                                tw_dtype_name(t), tw_cpu_isa_name((enum tw_cpu_isa)isa), n, what,
                                nx, j, (double)out[j], ref[j], tol[j]);
                }
            }
            if (!ok)
                res->bad++;
            CHECK(ok);
        }
    }
}

// Row lengths: one block, a few, odd counts, a long row; float rows of any length.
static size_t lengths(enum tw_dtype t, size_t *out)
{
    static const size_t floats[] = { 1, 7, 16, 31, 32, 33, 64, 100, 257, 4096 + 13 };
    static const size_t blocks32[] = { 1, 2, 3, 7, 33, 129 };
    static const size_t blocks256[] = { 1, 2, 3, 5, 17 };
    const size_t *b = floats;
    size_t k = sizeof floats / sizeof floats[0];
    if (tw_dtype_block_size(t) == 32) {
        b = blocks32;
        k = sizeof blocks32 / sizeof blocks32[0];
    } else if (tw_dtype_block_size(t) == 256) {
        b = blocks256;
        k = sizeof blocks256 / sizeof blocks256[0];
    }
    for (size_t i = 0; i < k; i++)
        out[i] = b[i] * tw_dtype_block_size(t);
    return k;
}

static void test_kernels(enum tw_cpu_isa top)
{
    struct result res = { 0, 0, 0.0 };
    for (int ti = 0; ti < TW_DTYPE_COUNT; ti++) {
        enum tw_dtype t = (enum tw_dtype)ti;
        size_t ns[16], k = lengths(t, ns);
        for (size_t a = 0; a < k; a++) {
            size_t n = ns[a], nbytes;
            CHECK_OK(tw_dtype_nbytes(t, n, &nbytes));
            // x rows apart by more than n (ldx != n), so each row starts at another alignment.
            size_t ldx = n + 1 + check_rand(&rng) % 7;
            float *x = malloc(NXMAX * ldx * sizeof *x);
            // The row at an address of the least alignment dtype.h allows (4 for f32, 2 else),
            // so that no kernel relies on more.
            size_t off = t == TW_DTYPE_F32 ? 4 : 2;
            uint8_t *buf = malloc(nbytes + 64);
            REQUIRE(x && buf);
            void *row = buf + 32 + off;
            for (size_t i = 0; i < NXMAX * ldx; i++)
                x[i] = uniform();
            for (int kind = 0; kind < 2; kind++) {
                make_row(t, kind, row, nbytes, n);
                check_row(t, row, n, x, ldx, top, kind ? "random bytes" : "quantized", &res);
            }
            free(buf);
            free(x);
        }
    }
    printf(
        "kernels up to %s: %d cases, %d wrong; largest error %.2g of sum |w x| (allowed 1e-5)\n",
        tw_cpu_isa_name(top), res.cases, res.bad, res.worst);
}

// Cancellation: a sum near zero of large terms is held to the sum of the magnitudes.
static void test_cancellation(enum tw_cpu_isa top)
{
    size_t n = 1024;
    float w[1024], x[1024];
    for (size_t i = 0; i < n; i += 2) {
        w[i] = w[i + 1] = uniform() * 100.0f;
        x[i] = uniform();
        x[i + 1] = -x[i];
    }
    struct result res = { 0, 0, 0.0 };
    check_row(TW_DTYPE_F32, w, n, x, 0, top, "cancelling", &res); // ldx 0: one row, nx times
    CHECK_EQ_INT(res.bad, 0);
}

static void test_isa_choice(enum tw_cpu_isa hw)
{
    CHECK_EQ_STR(tw_cpu_isa_name(TW_ISA_SCALAR), "scalar");
    CHECK_EQ_STR(tw_cpu_isa_name(TW_ISA_AVX2), "avx2");
    CHECK_EQ_STR(tw_cpu_isa_name(TW_ISA_AVX512), "avx512");
    CHECK_EQ_STR(tw_cpu_isa_name((enum tw_cpu_isa)7), "?");
    CHECK(tw_dot_kernel(TW_DTYPE_COUNT, TW_ISA_SCALAR) == NULL);
    CHECK(tw_dot_kernel((enum tw_dtype) - 1, hw) == NULL);

    static const char *caps[] = { "scalar", "avx2", "avx512" };
    for (int c = 0; c < 3; c++) {
        CHECK_OK(setenv("TWIN_ISA", caps[c], 1));
        enum tw_cpu_isa want = c < (int)hw ? (enum tw_cpu_isa)c : hw;
        CHECK_EQ_INT(tw_cpu_isa_best(), want);
        for (int t = 0; t < TW_DTYPE_COUNT; t++) {
            tw_dot_fn f = tw_dot_kernel((enum tw_dtype)t, tw_cpu_isa_best());
            CHECK(f == tw_dot_kernel((enum tw_dtype)t, want));
            // The kernels of different ISAs are different functions.
            if (want > TW_ISA_SCALAR)
                CHECK(f != tw_dot_kernel((enum tw_dtype)t, want - 1));
        }
    }
    CHECK_OK(setenv("TWIN_ISA", "sse9", 1)); // not an ISA: ignored
    CHECK_EQ_INT(tw_cpu_isa_best(), hw);
    CHECK_OK(unsetenv("TWIN_ISA"));
    CHECK_EQ_INT(tw_cpu_isa_best(), hw);
    // An ISA above the CPU's is lowered to it.
    CHECK(tw_dot_kernel(TW_DTYPE_Q4_K, (enum tw_cpu_isa)9) == tw_dot_kernel(TW_DTYPE_Q4_K, hw));
}

int main(void)
{
    // What the CPU has, and what TWIN_ISA (if set) leaves of it for the kernel tests.
    enum tw_cpu_isa top = tw_cpu_isa_best();
    const char *env = getenv("TWIN_ISA");
    char *saved = env ? strdup(env) : NULL;
    unsetenv("TWIN_ISA");
    enum tw_cpu_isa hw = tw_cpu_isa_best();
    printf("cpu: %s; testing scalar..%s\n", tw_cpu_isa_name(hw), tw_cpu_isa_name(top));

    test_kernels(top);
    test_cancellation(top);
    test_isa_choice(hw);
    // The int8 kernels' prefetch: a far one for weights from DRAM only (TWIN_DOT_PREFETCH
    // overrides both; unset here)
    if (!getenv("TWIN_DOT_PREFETCH")) {
        tw_dot_stream_set(true);
        CHECK(tw_dot_stream_cfg.far > tw_dot_stream_cfg.near && tw_dot_stream_cfg.near > 0);
        tw_dot_stream_set(false);
        CHECK(tw_dot_stream_cfg.far == 0 && tw_dot_stream_cfg.near == TW_DOT_PREFETCH);
    }
    if (saved) {
        setenv("TWIN_ISA", saved, 1);
        free(saved);
    }
    return check_report("test_cpu_dot");
}

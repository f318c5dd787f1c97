// The integer dot kernels (tensor/cpu_qdot.h): the activation quantizer of every ISA against
// its definition, bit for bit, and against its error bound; every block dtype x ISA x tile
// height x row length against a double-precision sum over the exactly decoded weights and the
// decoded activations (tight: only float rounding differs), and against the f32-activation
// reference tw_vec_dot_row within the bound of the activations' rounding; the multi-row
// kernels the same way; and a deliberately broken kernel (one activation off by one) that the
// comparison must reject.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tensor/cpu_qdot.h"
#include "tensor/dtype.h"

#define NXMAX 8
#define REL   1e-5 // of the sum of the magnitudes of the terms: float rounding only

static uint64_t rng = 0xC0FFEE11ull;

static float uniform(void) // in [-1, 1)
{
    return (float)((double)(check_rand(&rng) >> 11) * 0x1p-52 - 1.0);
}

static uint16_t random_scale(void)
{
    uint64_t r = check_rand(&rng) % 16;
    if (r == 0)
        return 0;
    if (r == 1)
        return (uint16_t)(check_rand(&rng) & 0x83FF); // subnormal, either sign
    return tw_f32_to_f16(uniform() * 0.05f);
}

// ---- the quantizer.

// cpu_qdot.h's definition, written out again.
static void quantize_def(const float *x, struct tw_q8_act *o)
{
    float a = 0.0f;
    for (int i = 0; i < 32; i++)
        a = fabsf(x[i]) > a ? fabsf(x[i]) : a;
    if (a < 0x1p-100f)
        a = 0.0f;
    volatile float id = a > 0.0f ? 127.0f / a : 0.0f; // no contraction with what follows
    o->d = a / 127.0f;
    for (int i = 0; i < 32; i++) {
        volatile float p = x[i] * id;
        o->qs[i] = (int8_t)rintf(p);
    }
}

// Blocks of several kinds: scaled uniform, zeros, tiny, exact ties, one large outlier.
static void fill_activations(float *x, size_t n)
{
    for (size_t b = 0; b < n / 32; b++) {
        float *v = x + 32 * b;
        int kind = (int)(check_rand(&rng) % 8);
        float scale = ldexpf(1.0f, (int)(check_rand(&rng) % 13) - 6);
        for (int i = 0; i < 32; i++)
            v[i] = uniform() * scale;
        if (kind == 0) {
            memset(v, 0, 32 * sizeof *v);
        } else if (kind == 1) {
            for (int i = 0; i < 32; i++)
                v[i] *= 0x1p-110f;
        } else if (kind == 2) { // max 127: id = 1, halves round to even
            for (int i = 0; i < 32; i++)
                v[i] = (float)((int)(check_rand(&rng) % 255) - 127) + 0.5f * (i & 1);
            v[5] = -127.0f;
        } else if (kind == 3) {
            v[check_rand(&rng) % 32] = -1000.0f * scale;
        }
    }
}

static void test_quantizer(enum tw_cpu_isa top)
{
    size_t n = 32 * 200;
    float *x = malloc(n * sizeof *x);
    struct tw_q8_act *want = malloc(n / 32 * sizeof *want), *got = malloc(n / 32 * sizeof *got);
    REQUIRE(x && want && got);
    fill_activations(x, n);
    for (size_t b = 0; b < n / 32; b++)
        quantize_def(x + 32 * b, &want[b]);
    int bound_bad = 0;
    for (size_t i = 0; i < n; i++) { // |x - d q| <= d / 2, up to the rounding of x * id
        const struct tw_q8_act *o = &want[i / 32];
        double e = fabs((double)x[i] - (double)o->d * o->qs[i % 32]);
        bound_bad += !(e <= 0.5 * o->d * (1.0 + 1e-5) + 1e-30 || fabsf(x[i]) < 0x1p-100f);
    }
    CHECK_EQ_INT(bound_bad, 0);
    for (int isa = TW_ISA_SCALAR; isa <= (int)top; isa++) {
        tw_q8_act_fn f = tw_q8_act_quantizer((enum tw_cpu_isa)isa);
        memset(got, 0x55, n / 32 * sizeof *got);
        f(x, n, got);
        int bad = 0;
        for (size_t b = 0; b < n / 32; b++)
            bad += memcmp(&got[b].d, &want[b].d, sizeof(float)) != 0 ||
                   memcmp(got[b].qs, want[b].qs, 32) != 0;
        if (bad)
            fprintf(stderr, "quantizer %s: %d blocks differ\n",
                    tw_cpu_isa_name((enum tw_cpu_isa)isa), bad);
        CHECK_EQ_INT(bad, 0);
    }
    free(x);
    free(want);
    free(got);
}

// ---- exact decoding of the weights: element e is hi[e] - lo[e] (both exact in double: a
// product of an fp16, a small integer and, for q4_K, a 6-bit scale); |hi| + |lo| is the
// magnitude that float rounding is relative to.

static void decode_exact(enum tw_dtype t, const void *row, size_t n, double *hi, double *lo)
{
    for (size_t e = 0; e < n; e++)
        lo[e] = 0.0;
    if (t == TW_DTYPE_Q8_0) {
        const struct tw_block_q8_0 *b = row;
        for (size_t e = 0; e < n; e++)
            hi[e] = (double)tw_f16_to_f32(b[e / 32].d) * b[e / 32].qs[e % 32];
    } else if (t == TW_DTYPE_Q4_0) {
        const struct tw_block_q4_0 *b = row;
        for (size_t e = 0; e < n; e++) {
            uint8_t v = b[e / 32].qs[e % 16];
            int q = e % 32 < 16 ? v & 0x0F : v >> 4;
            hi[e] = (double)tw_f16_to_f32(b[e / 32].d) * (q - 8);
        }
    } else if (t == TW_DTYPE_Q4_K) {
        const struct tw_block_q4_k *b = row;
        for (size_t e = 0; e < n; e++) {
            const struct tw_block_q4_k *k = &b[e / 256];
            int r = (int)(e % 256), s = r / 32;
            uint8_t sc, m, v = k->qs[32 * (r / 64) + r % 32];
            tw_q4_k_scale_min(k->scales, s, &sc, &m);
            int q = s % 2 ? v >> 4 : v & 0x0F;
            hi[e] = (double)tw_f16_to_f32(k->d) * sc * q;
            lo[e] = (double)tw_f16_to_f32(k->dmin) * m;
        }
    } else if (t == TW_DTYPE_Q6_K) {
        const struct tw_block_q6_k *b = row;
        for (size_t e = 0; e < n; e++) {
            const struct tw_block_q6_k *k = &b[e / 256];
            int r = (int)(e % 256), h = r / 128, g = r % 128 / 32, i = r % 32;
            uint8_t l = k->ql[64 * h + 32 * (g & 1) + i];
            int q = (g < 2 ? l & 0x0F : l >> 4) | ((k->qh[32 * h + i] >> (2 * g) & 3) << 4);
            hi[e] = (double)tw_f16_to_f32(k->d) * k->scales[r / 16] * (q - 32);
        }
    }
}

// A row of dtype t: kind 0 quantized from random floats, kind 1 random bytes with valid fp16
// scales (q8_0 then holds -128, q4_K large mins).
static void make_row(enum tw_dtype t, int kind, uint8_t *p, size_t nbytes, size_t n)
{
    if (kind == 0) {
        float *f = malloc(n * sizeof *f);
        REQUIRE(f);
        float scale = ldexpf(1.0f, (int)(check_rand(&rng) % 9) - 4);
        for (size_t i = 0; i < n; i++)
            f[i] = uniform() * scale;
        tw_quantize_row(t, f, p, n);
        free(f);
        return;
    }
    for (size_t i = 0; i < nbytes; i++)
        p[i] = (uint8_t)check_rand(&rng);
    size_t bb = tw_dtype_block_bytes(t);
    for (size_t i = 0; i < nbytes / bb; i++) {
        uint16_t h[2] = { random_scale(), random_scale() };
        size_t at = t == TW_DTYPE_Q6_K ? 208 : 0, len = t == TW_DTYPE_Q4_K ? 4 : 2;
        memcpy(p + i * bb + at, h, len);
    }
}

// ---- the kernels.

struct tile {
    enum tw_dtype t;
    const void *row;
    size_t n, ldx;
    const struct tw_q8_act *x; // NXMAX rows of n / 32 blocks, ldx apart
    const float *xf;           // the f32 rows they were quantized from, n apart
    double ref[NXMAX], tol[NXMAX], ref32[NXMAX], tol32[NXMAX];
    size_t sensitive; // in row 0, the element whose activation moves the sum most
};

static void tile_refs(struct tile *tl)
{
    size_t n = tl->n;
    double *hi = malloc(n * sizeof *hi), *lo = malloc(n * sizeof *lo);
    float *w = malloc(n * sizeof *w);
    REQUIRE(hi && lo && w);
    decode_exact(tl->t, tl->row, n, hi, lo);
    tw_dequantize_row(tl->t, tl->row, w, n);
    int decode_bad = 0; // the test's decoding is the reference's, up to float rounding
    for (size_t e = 0; e < n; e++) {
        bool ok = fabs(w[e] - (hi[e] - lo[e])) <= 3e-7 * (fabs(hi[e]) + fabs(lo[e])) + 1e-40;
        decode_bad += !ok;
    }
    CHECK_EQ_INT(decode_bad, 0);
    double most = 0.0;
    tl->sensitive = SIZE_MAX; // none, when row 0's products are all zero
    for (size_t e = 0; e < n; e++) {
        double v = fabs(hi[e] - lo[e]) * tl->x[e / 32].d;
        if (v > most) {
            most = v;
            tl->sensitive = e;
        }
    }
    for (int j = 0; j < NXMAX; j++) {
        const struct tw_q8_act *a = tl->x + (size_t)j * tl->ldx;
        const float *xf = tl->xf + (size_t)j * n;
        double s = 0.0, mag = 0.0, err = 0.0, mag32 = 0.0;
        for (size_t e = 0; e < n; e++) {
            double xd = (double)a[e / 32].d * a[e / 32].qs[e % 32];
            s += (hi[e] - lo[e]) * xd;
            mag += (fabs(hi[e]) + fabs(lo[e])) * fabs(xd);
            // the activation's rounding, |x - d q| <= d / 2 (+ the rounding of x * id)
            err += fabs((double)w[e]) * (0.5 * a[e / 32].d * (1.0 + 1e-5) + 1e-30);
            mag32 += fabs((double)w[e] * xf[e]);
        }
        tl->ref[j] = s;
        tl->tol[j] = REL * mag + 1e-35;
        tl->ref32[j] = tw_vec_dot_row(tl->t, tl->row, xf, n);
        tl->tol32[j] = err + REL * (mag + mag32) + 1e-35;
    }
    free(hi);
    free(lo);
    free(w);
}

// The number of wrong results of f on the tile for tile heights 1, 2, 3, 4 and 8 (messages
// when loud); results past nx must stay untouched.
static int check_kernel(const struct tile *tl, tw_qdot_fn f, const char *what, int loud)
{
    static const int nxs[] = { 1, 2, 3, 4, 8 };
    int bad = 0;
    for (size_t k = 0; k < sizeof nxs / sizeof nxs[0]; k++) {
        int nx = nxs[k];
        float out[NXMAX + 1];
        for (int j = 0; j <= NXMAX; j++)
            out[j] = -12345.0f;
        f(tl->row, tl->x, tl->ldx, nx, tl->n, out);
        bool ok = nx == NXMAX || out[nx] == -12345.0f;
        for (int j = 0; j < nx; j++) {
            bool exact = fabs(out[j] - tl->ref[j]) <= tl->tol[j];
            bool near32 = fabs(out[j] - tl->ref32[j]) <= tl->tol32[j];
            if (!(exact && near32)) {
                ok = false;
                if (loud)
                    fprintf(stderr,
                            "%s %s n=%zu nx=%d row %d: got %.9g, exact %.9g (tol %.3g), "
                            "f32 reference %.9g (tol %.3g)\n",
                            tw_dtype_name(tl->t), what, tl->n, nx, j, (double)out[j], tl->ref[j],
                            tl->tol[j], tl->ref32[j], tl->tol32[j]);
            }
        }
        bad += !ok;
    }
    return bad;
}

// A broken kernel: the right one, but with one activation of row 0 off by one (element `at`).
static tw_qdot_fn broken_inner;
static size_t broken_at;

static void broken_kernel(const void *row, const struct tw_q8_act *x, size_t ldx, int nx, size_t n,
                          float *out)
{
    size_t nb = (nx - 1) * ldx + n / 32;
    struct tw_q8_act *y = malloc(nb * sizeof *y);
    REQUIRE(y);
    memcpy(y, x, nb * sizeof *y);
    int8_t *q = &y[broken_at / 32].qs[broken_at % 32];
    *q = (int8_t)(*q > 0 ? *q - 1 : *q + 1);
    broken_inner(row, y, ldx, nx, n, out);
    free(y);
}

static size_t lengths(enum tw_dtype t, size_t *out)
{
    static const size_t b32[] = { 1, 2, 3, 7, 10, 18, 33, 128 }, b256[] = { 1, 2, 3, 16 };
    bool k = tw_dtype_block_size(t) == 256;
    size_t cnt = k ? 4 : 8;
    for (size_t i = 0; i < cnt; i++)
        out[i] = (k ? b256[i] : b32[i]) * tw_dtype_block_size(t);
    return cnt;
}

// Whether the AVX-512 kernels' variant without GFNI is tested besides the dispatcher's (which
// takes GFNI where the CPU has it): at the AVX-512 ISA on a CPU with VNNI.
static bool no_gfni_variant(int isa)
{
    return isa == TW_ISA_AVX512 && tw_cpu_has_avx512_vnni();
}

// One-row kernels' outputs o[r] for the weight rows r of tiles tl (TW_QDOT_ROWS): each within
// its tile's tolerances of the exact and the float references; counted into *cases and *bad
// (the first misses printed).
static void check_rows(const struct tile *tl, const float *o, const char *what, int *cases,
                       int *bad)
{
    for (int r = 0; r < TW_QDOT_ROWS; r++) {
        const struct tile *t = &tl[r];
        bool ok = fabs(o[r] - t->ref[0]) <= t->tol[0] && fabs(o[r] - t->ref32[0]) <= t->tol32[0];
        if (!ok && *bad < 20)
            fprintf(stderr, "%s %s n=%zu row %d: got %.9g, exact %.9g\n", tw_dtype_name(t->t),
                    what, t->n, r, (double)o[r], t->ref[0]);
        ++*cases;
        *bad += !ok;
    }
}

static const enum tw_dtype block_types[4] = { TW_DTYPE_Q8_0, TW_DTYPE_Q4_0, TW_DTYPE_Q4_K,
                                              TW_DTYPE_Q6_K };

// NXMAX rows of n random activations (*xf, malloc'd) and their int8 blocks (returned,
// malloc'd), block rows ldx apart with garbage in the gaps.
static struct tw_q8_act *activations(size_t n, size_t ldx, float **xf)
{
    *xf = malloc(NXMAX * n * sizeof **xf);
    struct tw_q8_act *x = malloc(NXMAX * ldx * sizeof *x);
    REQUIRE(*xf && x);
    fill_activations(*xf, NXMAX * n);
    memset(x, 0x7F, NXMAX * ldx * sizeof *x);
    for (int j = 0; j < NXMAX; j++)
        tw_q8_act_quantize(*xf + (size_t)j * n, n, x + (size_t)j * ldx);
    return x;
}

static void test_kernels(enum tw_cpu_isa top)
{
    const enum tw_dtype *types = block_types;
    int cases = 0, bad = 0, caught = 0, broken_cases = 0;
    for (size_t ti = 0; ti < 4; ti++) {
        enum tw_dtype t = types[ti];
        size_t ns[8], cnt = lengths(t, ns);
        for (size_t li = 0; li < cnt; li++) {
            size_t n = ns[li], nbytes, nb = n / 32;
            CHECK_OK(tw_dtype_nbytes(t, n, &nbytes));
            size_t ldx = nb + check_rand(&rng) % 3;
            float *xf;
            struct tw_q8_act *x = activations(n, ldx, &xf);
            uint8_t *buf = malloc(nbytes + 64);
            REQUIRE(buf);
            for (int kind = 0; kind < 2; kind++) {
                struct tile tl = { .t = t, .row = buf + 34, .n = n, .ldx = ldx, .x = x, .xf = xf };
                make_row(t, kind, buf + 34, nbytes, n);
                tile_refs(&tl);
                for (int isa = TW_ISA_SCALAR; isa <= (int)top; isa++) {
                    tw_qdot_fn f = tw_qdot_kernel(t, (enum tw_cpu_isa)isa);
                    REQUIRE(f);
                    char what[64];
                    snprintf(what, sizeof what, "%s %s", tw_cpu_isa_name((enum tw_cpu_isa)isa),
                             kind ? "random bytes" : "quantized");
                    int b = check_kernel(&tl, f, what, bad < 20);
                    cases += 5;
                    bad += b;
                    // The comparison catches one activation off by one, on short rows where
                    // that is more than float rounding.
                    if (kind == 0 && n <= 256 && tl.sensitive != SIZE_MAX) {
                        broken_inner = f;
                        broken_at = tl.sensitive;
                        broken_cases++;
                        int cb = check_kernel(&tl, broken_kernel, what, 0) > 0;
                        caught += cb;
                    }
                }
            }
            free(buf);
            free(x);
            free(xf);
        }
    }
    printf("kernels up to %s: %d cases, %d wrong; a broken kernel caught in %d of %d\n",
           tw_cpu_isa_name(top), cases, bad, caught, broken_cases);
    CHECK_EQ_INT(bad, 0);
    CHECK(broken_cases > 0);
    CHECK_EQ_INT(caught, broken_cases);
}

// The multi-row kernels (where an ISA has one): 1..TW_QDOT_ROWS rows, ldw bytes apart at odd
// offsets, against one activation row, each row's result held to check_kernel's bounds;
// results past nw stay untouched.
static void test_rows_kernels(enum tw_cpu_isa top)
{
    const enum tw_dtype *types = block_types;
    int cases = 0, bad = 0;
    for (size_t ti = 0; ti < 4; ti++) {
        enum tw_dtype t = types[ti];
        size_t ns[8], cnt = lengths(t, ns);
        for (size_t li = 0; li < cnt; li++) {
            size_t n = ns[li], nbytes, nb = n / 32;
            CHECK_OK(tw_dtype_nbytes(t, n, &nbytes));
            size_t ldw = nbytes + 2 * (check_rand(&rng) % 40); // 2-byte aligned, odd lines
            float *xf; // tile_refs' rows; the kernels take row 0
            struct tw_q8_act *x = activations(n, nb, &xf);
            uint8_t *buf = malloc(TW_QDOT_ROWS * ldw + 64);
            REQUIRE(buf);
            for (int kind = 0; kind < 2; kind++) {
                struct tile tl[TW_QDOT_ROWS];
                for (int r = 0; r < TW_QDOT_ROWS; r++) {
                    uint8_t *row = buf + 34 + (size_t)r * ldw;
                    make_row(t, kind, row, nbytes, n);
                    tl[r] =
                        (struct tile){ .t = t, .row = row, .n = n, .ldx = nb, .x = x, .xf = xf };
                    tile_refs(&tl[r]);
                }
                for (int isa = TW_ISA_SCALAR; isa <= (int)top; isa++) {
                    // The one-row kernel over packed activations (Q4_K, Q4_0, Q8_0), row by
                    // row (AVX-512: with GFNI where the CPU has it, and without, both).
                    for (int v = 0; v < 2 && n % 256 == 0; v++) {
                        tw_qdot_k_fn fk = v == 0 ? tw_qdot_k_kernel(t, (enum tw_cpu_isa)isa)
                                          : no_gfni_variant(isa)
                                              ? tw_qdot_k_kernel_avx512(t, false)
                                              : NULL;
                        if (!fk)
                            continue;
                        struct tw_q8k_act *xk = aligned_alloc(64, n / 256 * sizeof *xk);
                        REQUIRE(xk);
                        tw_q8k_act_pack(x, n, xk);
                        float o[TW_QDOT_ROWS];
                        for (int r = 0; r < TW_QDOT_ROWS; r++)
                            fk(buf + 34 + (size_t)r * ldw, xk, n, &o[r]);
                        check_rows(tl, o, "packed", &cases, &bad);
                        free(xk);
                    }
                    // The one-row kernel over activations laid out as the rows' bytes (Q4_0):
                    // packed in two parts, the second first (the parts write apart), over
                    // garbage.
                    // (AVX-512: with GFNI where the CPU has it, and without, both.)
                    for (int v = 0; v < 2; v++) {
                        tw_qdot_m_fn fm = v == 0 ? tw_qdot_m_kernel(t, (enum tw_cpu_isa)isa)
                                          : no_gfni_variant(isa)
                                              ? tw_qdot_m_kernel_avx512(t, false)
                                              : NULL;
                        if (!fm)
                            continue;
                        size_t groups = tw_q40m_count(n), half = nb / 2;
                        struct tw_q40m *xm = aligned_alloc(64, groups * sizeof *xm);
                        REQUIRE(xm);
                        memset(xm, 0xFF, groups * sizeof *xm); // NaN scales where not packed
                        tw_q40m_pack(x, half, nb - half, nb, xm);
                        tw_q40m_pack(x, 0, half, nb, xm);
                        float o[TW_QDOT_ROWS];
                        for (int r = 0; r < TW_QDOT_ROWS; r++)
                            fm(buf + 34 + (size_t)r * ldw, xm, n, &o[r]);
                        check_rows(tl, o, "in place", &cases, &bad);
                        free(xm);
                    }
                    tw_qdot_rows_fn f = tw_qdot_rows_kernel(t, (enum tw_cpu_isa)isa);
                    if (!f)
                        continue;
                    for (int nw = 1; nw <= TW_QDOT_ROWS; nw++) {
                        float out[TW_QDOT_ROWS + 1];
                        for (int r = 0; r <= TW_QDOT_ROWS; r++)
                            out[r] = -12345.0f;
                        f(buf + 34, ldw, nw, x, n, out);
                        bool ok = nw == TW_QDOT_ROWS || out[nw] == -12345.0f;
                        for (int r = 0; r < nw; r++) {
                            bool exact = fabs(out[r] - tl[r].ref[0]) <= tl[r].tol[0];
                            bool near32 = fabs(out[r] - tl[r].ref32[0]) <= tl[r].tol32[0];
                            if (!(exact && near32) && bad < 20)
                                fprintf(stderr,
                                        "%s %s rows n=%zu nw=%d row %d: got %.9g, exact %.9g "
                                        "(tol %.3g)\n",
                                        tw_dtype_name(t), tw_cpu_isa_name((enum tw_cpu_isa)isa), n,
                                        nw, r, (double)out[r], tl[r].ref[0], tl[r].tol[0]);
                            ok &= exact && near32;
                        }
                        cases++;
                        bad += !ok;
                    }
                }
            }
            free(buf);
            free(x);
            free(xf);
        }
    }
    printf("multi-row kernels up to %s: %d cases, %d wrong\n", tw_cpu_isa_name(top), cases, bad);
    CHECK_EQ_INT(bad, 0);
    // AVX-512 (with VNNI) has them for q8_0, q4_0 and q4_K (and the packed one-row kernels);
    // no ISA for the float dtypes.
    CHECK(tw_qdot_rows_kernel(TW_DTYPE_BF16, top) == NULL);
    CHECK(tw_qdot_rows_kernel(TW_DTYPE_Q4_K, TW_ISA_SCALAR) == NULL);
    CHECK(tw_qdot_k_kernel(TW_DTYPE_Q4_K, TW_ISA_AVX2) == NULL);
    CHECK(tw_qdot_m_kernel(TW_DTYPE_Q4_0, TW_ISA_AVX2) == NULL);
    CHECK(tw_qdot_m_kernel(TW_DTYPE_Q8_0, top) == NULL);
    CHECK(tw_qdot_k_kernel(TW_DTYPE_Q6_K, top) == NULL);
    if (tw_qdot_kernel(TW_DTYPE_Q4_K, top) == tw_qdot_kernel(TW_DTYPE_Q4_K, TW_ISA_AVX512) &&
        top == TW_ISA_AVX512)
        CHECK(cases > 0);
}

static void test_choice(enum tw_cpu_isa hw)
{
    CHECK(tw_qdot_kernel(TW_DTYPE_F32, hw) == NULL);
    CHECK(tw_qdot_kernel(TW_DTYPE_BF16, hw) == NULL);
    CHECK(tw_qdot_kernel(TW_DTYPE_COUNT, hw) == NULL);
    CHECK(tw_qdot_kernel(TW_DTYPE_Q4_K, (enum tw_cpu_isa)9) == tw_qdot_kernel(TW_DTYPE_Q4_K, hw));
    // The kernels of different ISAs are different functions (where the CPU has both).
    for (int isa = TW_ISA_AVX2; isa <= (int)hw; isa++) {
        CHECK(tw_qdot_kernel(TW_DTYPE_Q8_0, (enum tw_cpu_isa)isa) !=
              tw_qdot_kernel(TW_DTYPE_Q8_0, (enum tw_cpu_isa)(isa - 1)));
        CHECK(tw_q8_act_quantizer((enum tw_cpu_isa)isa) !=
              tw_q8_act_quantizer((enum tw_cpu_isa)(isa - 1)));
    }
}

int main(void)
{
    // What TWIN_ISA (if set) leaves of the CPU for the kernel tests, and the CPU's own.
    enum tw_cpu_isa top = tw_cpu_isa_best();
    const char *env = getenv("TWIN_ISA");
    char *saved = env ? strdup(env) : NULL;
    unsetenv("TWIN_ISA");
    enum tw_cpu_isa hw = tw_cpu_isa_best();
    printf("testing scalar..%s\n", tw_cpu_isa_name(top));
    test_quantizer(top);
    test_kernels(top);
    test_rows_kernels(top);
    test_choice(hw);
    if (saved) {
        setenv("TWIN_ISA", saved, 1);
        free(saved);
    }
    return check_report("test_cpu_qdot");
}

// Tests src/tensor/dtype.c: names and sizes; f16 (all 65536 values, rounding) and bf16; the
// row converters against the scalars; blocks built by hand from the published GGUF/ggml
// layouts decoding to the expected floats; quantisation error bounds on random data; vec_dot.
// Golden bytes from llama.cpp / gguf-py would check the layouts best but are not available on
// this machine: the hand-built blocks (bytes written from the layout description) do for now.
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "tensor/dtype.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static bool half_is_nan(uint16_t h)
{
    return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0;
}

// The value of a half computed from the definition (independent of dtype.c).
static double half_value(uint16_t h)
{
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 31)
        return m ? NAN : (h & 0x8000) ? -INFINITY : INFINITY;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double uniform(uint64_t *st)
{
    return (double)(check_rand(st) >> 11) * 0x1p-53;
}

static double gaussian(uint64_t *st)
{
    double u = uniform(st), v = uniform(st);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static void test_names_and_sizes(void)
{
    static const struct {
        enum tw_dtype t;
        const char *name;
        size_t bs, bytes;
        uint32_t ggml;
    } want[] = {
        { TW_DTYPE_F32, "f32", 1, 4, 0 },        { TW_DTYPE_F16, "f16", 1, 2, 1 },
        { TW_DTYPE_BF16, "bf16", 1, 2, 30 },     { TW_DTYPE_Q8_0, "q8_0", 32, 34, 8 },
        { TW_DTYPE_Q4_0, "q4_0", 32, 18, 2 },    { TW_DTYPE_Q4_K, "q4_K", 256, 144, 12 },
        { TW_DTYPE_Q6_K, "q6_K", 256, 210, 14 },
    };
    CHECK_EQ_INT(sizeof want / sizeof want[0], TW_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        enum tw_dtype t = want[i].t, back = TW_DTYPE_COUNT;
        CHECK_EQ_STR(tw_dtype_name(t), want[i].name);
        CHECK_EQ_INT(tw_dtype_block_size(t), want[i].bs);
        CHECK_EQ_INT(tw_dtype_block_bytes(t), want[i].bytes);
        CHECK(tw_dtype_is_quantized(t) == (want[i].bs > 1));
        CHECK_OK(tw_dtype_from_name(want[i].name, &back));
        CHECK_EQ_INT(back, t);
        CHECK_EQ_INT(tw_dtype_ggml_type(t), want[i].ggml);
        back = TW_DTYPE_COUNT;
        CHECK_OK(tw_dtype_from_ggml(want[i].ggml, &back));
        CHECK_EQ_INT(back, t);

        size_t nbytes = 0;
        CHECK_OK(tw_dtype_nbytes(t, 4 * want[i].bs, &nbytes));
        CHECK_EQ_INT(nbytes, 4 * want[i].bytes);
        CHECK_OK(tw_dtype_nbytes(t, 0, &nbytes));
        CHECK_EQ_INT(nbytes, 0);
        if (want[i].bs > 1) { // not a multiple of the block: an error, *out untouched
            nbytes = 12345;
            CHECK_EQ_INT(tw_dtype_nbytes(t, want[i].bs + 1, &nbytes), TW_EINVAL);
            CHECK_EQ_INT(nbytes, 12345);
            CHECK(strstr(tw_error_msg(), "not a multiple") != NULL);
        }
        // The largest multiple of the block size: the byte count overflows where a block
        // has more bytes than elements (f32, f16, bf16, q8_0); the others fit.
        size_t big = SIZE_MAX - SIZE_MAX % want[i].bs;
        nbytes = 7;
        if (want[i].bytes > want[i].bs) {
            CHECK_EQ_INT(tw_dtype_nbytes(t, big, &nbytes), TW_EOVERFLOW);
            CHECK_EQ_INT(nbytes, 7);
        } else {
            CHECK_OK(tw_dtype_nbytes(t, big, &nbytes));
            CHECK(nbytes == big / want[i].bs * want[i].bytes);
        }
    }
    enum tw_dtype t = TW_DTYPE_F32;
    CHECK_OK(tw_dtype_from_name("Q4_K", &t));
    CHECK_EQ_INT(t, TW_DTYPE_Q4_K);
    CHECK_OK(tw_dtype_from_name("BF16", &t));
    CHECK_EQ_INT(t, TW_DTYPE_BF16);
    t = TW_DTYPE_F16;
    CHECK_EQ_INT(tw_dtype_from_name("q4_k_m", &t), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "q4_k_m") != NULL);
    CHECK_EQ_INT(tw_dtype_from_name("", &t), TW_EINVAL);
    CHECK_EQ_INT(t, TW_DTYPE_F16);
    CHECK_EQ_INT(tw_dtype_from_ggml(3, &t), TW_EUNSUPPORTED); // Q4_1
    CHECK_EQ_INT(tw_dtype_from_ggml(UINT32_MAX, &t), TW_EUNSUPPORTED);
    CHECK_EQ_STR(tw_dtype_name(TW_DTYPE_COUNT), "?");
    CHECK_EQ_INT(tw_dtype_block_size(TW_DTYPE_COUNT), 0);
    size_t nb = 0;
    CHECK_EQ_INT(tw_dtype_nbytes(TW_DTYPE_COUNT, 1, &nb), TW_EINVAL);
}

static void test_f16_all_values(void)
{
    int bad_value = 0, bad_trip = 0, bad_nan = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = tw_f16_to_f32(h);
        uint16_t back = tw_f32_to_f16(f);
        if (half_is_nan(h)) {
            // NaN stays NaN with its sign; a quiet NaN comes back with the same bits, a
            // signalling one quieted (bit 9 set).
            if (!isnan(f) || !half_is_nan(back) || back != (h | 0x0200) ||
                ((bits(f) >> 31) != (uint32_t)(h >> 15)))
                bad_nan++;
            continue;
        }
        if ((double)f != half_value(h) || (signbit(f) != 0) != ((h & 0x8000) != 0))
            bad_value++;
        if (back != h)
            bad_trip++;
    }
    CHECK_EQ_INT(bad_value, 0);
    CHECK_EQ_INT(bad_trip, 0);
    CHECK_EQ_INT(bad_nan, 0);
}

static void test_f16_known(void)
{
    static const struct {
        float f;
        uint16_t h;
    } cases[] = {
        { 1.0f, 0x3C00 },
        { -2.0f, 0xC000 },
        { 0.5f, 0x3800 },
        { 0.1f, 0x2E66 },
        { 65504.0f, 0x7BFF },           // the largest half
        { 65519.99f, 0x7BFF },          // below the midpoint to infinity
        { 65520.0f, 0x7C00 },           // the midpoint: ties to even = infinity
        { 1e6f, 0x7C00 },               // overflow
        { -1e6f, 0xFC00 },              //
        { 0x1p-24f, 0x0001 },           // the smallest subnormal
        { 0x1p-25f, 0x0000 },           // half of it: a tie, to even (0)
        { 0x1.000002p-25f, 0x0001 },    // just above the tie
        { 0x1.8p-24f, 0x0002 },         // 1.5 steps: a tie, to even (2)
        { 0x1.4p-23f, 0x0002 },         // 2.5 steps: a tie, to even (2)
        { 0x1p-14f, 0x0400 },           // the smallest normal
        { 0x1.ff8p-15f, 0x03FF },       // the largest subnormal (1023 steps)
        { 0x1.ffcp-15f, 0x0400 },       // 1023.5 steps: a tie, to even (1024 = smallest normal)
        { 1.0f + 0x1p-11f, 0x3C00 },    // halfway between 1 and 1 + 2^-10: to even
        { 1.0f + 0x3p-11f, 0x3C02 },    // halfway between 1 + 2^-10 and 1 + 2^-9: to even
        { 1.0f + 0x1.02p-11f, 0x3C01 }, // just above the tie
        { 1e-10f, 0x0000 },
        { -1e-10f, 0x8000 },
        { 0.0f, 0x0000 },
        { -0.0f, 0x8000 },
        { INFINITY, 0x7C00 },
        { -INFINITY, 0xFC00 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = tw_f32_to_f16(cases[i].f);
        if (h != cases[i].h)
            fprintf(stderr, "f16 case %zu: %a -> 0x%04x, want 0x%04x\n", i, cases[i].f, h,
                    cases[i].h);
        CHECK_EQ_INT(h, cases[i].h);
    }
    CHECK(tw_f16_to_f32(0x3C00) == 1.0f);
    CHECK(tw_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(tw_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(isinf(tw_f16_to_f32(0xFC00)) && tw_f16_to_f32(0xFC00) < 0);
    // NaNs: never infinity, even when only the low payload bits are set.
    CHECK_EQ_INT(tw_f32_to_f16(from_bits(0x7F800001)), 0x7E00);
    CHECK_EQ_INT(tw_f32_to_f16(from_bits(0xFFC00000)), 0xFE00);
    CHECK(half_is_nan(tw_f32_to_f16(NAN)));
}

// The nearest-even rule checked against the definition on random f32 values.
static void test_f16_rounding_random(void)
{
    uint64_t st = 42;
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        // Exponents from 2^-27 to 2^17 cover zero, subnormals, normals and overflow.
        uint32_t u = (uint32_t)(check_rand(&st) & 0x007FFFFF) |
                     (uint32_t)(100 + check_rand(&st) % 45) << 23;
        if (i % 7 == 0)
            u = (u & ~0x1FFFu) | 0x1000u; // force exact ties at bit 13
        float f = from_bits(u);
        uint16_t h = tw_f32_to_f16(f);
        if (tw_f32_to_f16(-f) != (h | 0x8000)) {
            bad++;
            continue;
        }
        if (h == 0x7C00) {
            bad += f < 65520.0f;
            continue;
        }
        double e0 = fabs(f - half_value(h));
        double below = h > 0 ? fabs(f - half_value((uint16_t)(h - 1))) : INFINITY;
        double above = h < 0x7BFF ? fabs(f - half_value((uint16_t)(h + 1))) : fabs(f - 65536.0);
        if (e0 > below || e0 > above)
            bad++;
        else if ((e0 == below || e0 == above) && (h & 1))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_bf16(void)
{
    static const struct {
        uint32_t f;
        uint16_t h;
    } cases[] = {
        { 0x3F800000, 0x3F80 }, // 1.0
        { 0x3F808000, 0x3F80 }, // halfway between 1.0 and the next bf16: to even
        { 0x3F818000, 0x3F82 }, // halfway above an odd mantissa: up to even
        { 0x3F808001, 0x3F81 }, // just above the tie
        { 0x3F807FFF, 0x3F80 }, // just below it
        { 0xBF808000, 0xBF80 }, // negative tie
        { 0x7F7FFFFF, 0x7F80 }, // FLT_MAX rounds to infinity
        { 0x7F800000, 0x7F80 }, // inf
        { 0xFF800000, 0xFF80 }, // -inf
        { 0x80000000, 0x8000 }, // -0
        { 0x00000001, 0x0000 }, // the smallest f32 subnormal
        { 0x00008000, 0x0000 }, // a subnormal tie: to even
        { 0x00018000, 0x0002 }, //
        { 0x7FC00000, 0x7FC0 }, // NaNs: 0x7FC0, PyTorch's choice
        { 0xFFC00001, 0x7FC0 }, //
        { 0x7F800001, 0x7FC0 }, // a signalling NaN that naive rounding would make infinity
        { 0x7FFFFFFF, 0x7FC0 }, //
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_EQ_INT(tw_f32_to_bf16(from_bits(cases[i].f)), cases[i].h);
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = tw_bf16_to_f32(h);
        if (bits(f) != i << 16)
            bad++;
        bool nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F);
        if (tw_f32_to_bf16(f) != (nan ? 0x7FC0 : h))
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

// The row converters (an AVX2/F16C path on x86) against the scalar functions, bit for bit.
static void test_rows_vs_scalar(void)
{
    enum { N = 65536 + 13 }; // a tail that is not a multiple of the vector width
    uint16_t *h = tw_malloc_array(N, sizeof *h), *h2 = tw_malloc_array(N, sizeof *h2);
    float *f = tw_malloc_array(N, sizeof *f), *f2 = tw_malloc_array(N, sizeof *f2);
    REQUIRE(h && h2 && f && f2);
    for (size_t i = 0; i < N; i++)
        h[i] = (uint16_t)i;
    int bad = 0;
    tw_f16_to_f32_row(h, f, N);
    for (size_t i = 0; i < N; i++)
        bad += bits(f[i]) != bits(tw_f16_to_f32(h[i]));
    tw_bf16_to_f32_row(h, f, N);
    for (size_t i = 0; i < N; i++)
        bad += bits(f[i]) != bits(tw_bf16_to_f32(h[i]));
    CHECK_EQ_INT(bad, 0);

    uint64_t st = 7;
    static const uint32_t special[] = { 0x7F800001, 0xFFC00000, 0x7F800000, 0x477FF000,
                                        0x477FEFFF, 0x33000000, 0x33000001, 0x387FE000,
                                        0x7F7FFFFF, 0x3F808000, 0x3F818000, 0x80000000 };
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < N; i++) {
            uint32_t u = (uint32_t)check_rand(&st);
            if (round == 1) // around the f16 range
                u = (u & 0x807FFFFF) | (uint32_t)(96 + (u >> 23) % 50) << 23;
            if (i < sizeof special / sizeof special[0])
                u = special[i];
            f[i] = from_bits(u);
        }
        tw_f32_to_f16_row(f, h, N);
        tw_f32_to_bf16_row(f, h2, N);
        for (size_t i = 0; i < N; i++) {
            bad += h[i] != tw_f32_to_f16(f[i]);
            bad += h2[i] != tw_f32_to_bf16(f[i]);
        }
    }
    CHECK_EQ_INT(bad, 0);

    // tw_quantize_row / tw_dequantize_row of the float types are these conversions.
    for (size_t i = 0; i < N; i++)
        f[i] = (float)gaussian(&st);
    tw_quantize_row(TW_DTYPE_F16, f, h, N);
    tw_dequantize_row(TW_DTYPE_F16, h, f2, N);
    for (size_t i = 0; i < N; i++)
        bad += h[i] != tw_f32_to_f16(f[i]) || bits(f2[i]) != bits(tw_f16_to_f32(h[i]));
    tw_quantize_row(TW_DTYPE_BF16, f, h, N);
    tw_dequantize_row(TW_DTYPE_BF16, h, f2, N);
    for (size_t i = 0; i < N; i++)
        bad += h[i] != tw_f32_to_bf16(f[i]) || bits(f2[i]) != bits(tw_bf16_to_f32(h[i]));
    tw_quantize_row(TW_DTYPE_F32, f, f2, N);
    bad += memcmp(f, f2, N * sizeof *f) != 0;
    CHECK_EQ_INT(bad, 0);
    tw_free(h);
    tw_free(h2);
    tw_free(f);
    tw_free(f2);
}

// ---- hand-built blocks: bytes written from the layout, decoded values worked out by hand.

static int count_mismatch(const float *y, const double *want, int n, const char *what)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if ((double)y[i] != want[i]) {
            if (bad < 5)
                fprintf(stderr, "%s: element %d = %g, want %g\n", what, i, y[i], want[i]);
            bad++;
        }
    }
    return bad;
}

static void test_q8_0_layout(void)
{
    uint8_t blk[34 * 2] = { 0x00, 0x38 }; // d = fp16 0x3800 = 0.5, little-endian
    double want[64];
    for (int j = 0; j < 32; j++) {
        blk[2 + j] = (uint8_t)(j - 16);
        want[j] = (j - 16) * 0.5;
    }
    blk[2] = 0x80; // int8 -128
    want[0] = -64.0;
    blk[34] = 0x00; // second block: d = fp16 0xC000 = -2
    blk[35] = 0xC0;
    for (int j = 0; j < 32; j++) {
        blk[36 + j] = (uint8_t)(127 - j);
        want[32 + j] = (127 - j) * -2.0;
    }
    _Alignas(4) uint8_t row[sizeof blk];
    memcpy(row, blk, sizeof blk);
    float y[64];
    tw_dequantize_row(TW_DTYPE_Q8_0, row, y, 64);
    CHECK_EQ_INT(count_mismatch(y, want, 64, "q8_0"), 0);
}

static void test_q4_0_layout(void)
{
    _Alignas(4) uint8_t blk[18] = { 0x00, 0x40 }; // d = 2.0
    double want[32];
    for (int j = 0; j < 16; j++) {
        blk[2 + j] = (uint8_t)(j | ((15 - j) << 4)); // element j low, element j + 16 high
        want[j] = (j - 8) * 2.0;
        want[j + 16] = (15 - j - 8) * 2.0;
    }
    float y[32];
    tw_dequantize_row(TW_DTYPE_Q4_0, blk, y, 32);
    CHECK_EQ_INT(count_mismatch(y, want, 32, "q4_0"), 0);
}

static void test_q4_k_layout(void)
{
    // (a) d = 1, dmin = 0, every scale 1: the values are the nibbles. Scales 0-3 in the low 6
    // bits of bytes 4-7, mins 0-3 in bytes 8-11 (0), scales 4-7 in the low nibbles of bytes
    // 12-15 (mins 4-7 in their high nibbles: 0).
    _Alignas(4) uint8_t blk[144] = { 0x00, 0x3C, 0x00, 0x00, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1 };
    double want[256];
    for (int c = 0; c < 4; c++) {
        for (int i = 0; i < 32; i++) {
            blk[16 + 32 * c + i] = (uint8_t)((i & 15) | (((i + 5) & 15) << 4));
            want[64 * c + i] = i & 15;            // low nibble: sub-block 2c
            want[64 * c + 32 + i] = (i + 5) & 15; // high nibble: sub-block 2c + 1
        }
    }
    float y[256];
    tw_dequantize_row(TW_DTYPE_Q4_K, blk, y, 256);
    CHECK_EQ_INT(count_mismatch(y, want, 256, "q4_K (a)"), 0);

    // (b) d = 0.5, dmin = 0.25, distinct 6-bit scales and mins (several >= 16, so the top
    // bits stored in bits 6-7 of bytes 0-7 matter). Packed by hand:
    //   sc = 1 2 3 63 17 33 48 5, m = 0 7 63 1 20 36 2 59
    //   byte j (0-3)  = sc[j]   | (sc[j+4] >> 4) << 6 : 0x41 0x82 0xC3 0x3F
    //   byte j+4      = m[j]    | (m[j+4] >> 4) << 6  : 0x40 0x87 0x3F 0xC1
    //   byte j+8      = sc[j+4] & 15 | (m[j+4] & 15) << 4 : 0x41 0x41 0x20 0xB5
    static const uint8_t hdr[16] = { 0x00, 0x38, 0x00, 0x34, 0x41, 0x82, 0xC3, 0x3F,
                                     0x40, 0x87, 0x3F, 0xC1, 0x41, 0x41, 0x20, 0xB5 };
    static const int sc[8] = { 1, 2, 3, 63, 17, 33, 48, 5 },
                     mn[8] = { 0, 7, 63, 1, 20, 36, 2, 59 };
    memcpy(blk, hdr, sizeof hdr);
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        tw_q4_k_scale_min(blk + 4, j, &s, &m);
        CHECK_EQ_INT(s, sc[j]);
        CHECK_EQ_INT(m, mn[j]);
    }
    for (int c = 0; c < 4; c++) {
        for (int i = 0; i < 32; i++) {
            int lo = i & 15, hi = (i + 5) & 15;
            want[64 * c + i] = 0.5 * sc[2 * c] * lo - 0.25 * mn[2 * c];
            want[64 * c + 32 + i] = 0.5 * sc[2 * c + 1] * hi - 0.25 * mn[2 * c + 1];
        }
    }
    tw_dequantize_row(TW_DTYPE_Q4_K, blk, y, 256);
    CHECK_EQ_INT(count_mismatch(y, want, 256, "q4_K (b)"), 0);

    // (c) one byte probe: qs[33] = 0xA5 sets element 64 + 1 (low nibble 5) and element
    // 96 + 1 (high nibble 10) and nothing else.
    memset(blk + 16, 0, 128);
    blk[16 + 33] = 0xA5;
    for (int e = 0; e < 256; e++)
        want[e] = -0.25 * mn[e / 32];
    want[65] = 0.5 * sc[2] * 5 - 0.25 * mn[2];
    want[97] = 0.5 * sc[3] * 10 - 0.25 * mn[3];
    tw_dequantize_row(TW_DTYPE_Q4_K, blk, y, 256);
    CHECK_EQ_INT(count_mismatch(y, want, 256, "q4_K (c)"), 0);
}

static void test_q6_k_layout(void)
{
    // ql at 0, qh at 128, scales at 192, d at 208 (0x3400 = 0.25).
    static const int8_t sc[16] = { 1, -2, 3, -4, 5, 6, 7, 8, -1, 2, -3, 4, 127, -128, 10, 11 };
    _Alignas(4) uint8_t blk[210] = { 0 };
    memcpy(blk + 192, sc, 16);
    blk[208] = 0x00;
    blk[209] = 0x34;
    double want[256];

    // (a) byte probes: everything 0 (q = -32) except
    //   qh[32 + 5] = 0x1B = 0b00 01 10 11: elements 128+5, 160+5, 192+5, 224+5 get high bits
    //   3, 2, 1, 0; ql[64 + 32 + 5] = 0x9C: element 160+5 low nibble 12, 224+5 low nibble 9.
    blk[128 + 32 + 5] = 0x1B;
    blk[64 + 32 + 5] = 0x9C;
    for (int e = 0; e < 256; e++)
        want[e] = 0.25 * sc[e / 16] * -32;
    want[133] = 0.25 * sc[8] * (48 - 32);
    want[165] = 0.25 * sc[10] * (32 + 12 - 32);
    want[197] = 0.25 * sc[12] * (16 - 32);
    want[229] = 0.25 * sc[14] * (9 - 32);
    float y[256];
    tw_dequantize_row(TW_DTYPE_Q6_K, blk, y, 256);
    CHECK_EQ_INT(count_mismatch(y, want, 256, "q6_K (a)"), 0);

    // (b) every element its own 6-bit value u(e), packed from the layout table: in half h,
    // for l < 32, ql[64h + l] holds e = 128h + l (low) and 128h + 64 + l (high), ql[64h + 32
    // + l] holds 128h + 32 + l and 128h + 96 + l, qh[32h + l] the top two bits of the four.
    memset(blk, 0, 192);
    for (int h = 0; h < 2; h++) {
        for (int l = 0; l < 32; l++) {
            int e[4] = { 128 * h + l, 128 * h + 32 + l, 128 * h + 64 + l, 128 * h + 96 + l };
            int u[4];
            for (int k = 0; k < 4; k++) {
                u[k] = (e[k] * 7 + 3) % 64;
                want[e[k]] = 0.25 * sc[e[k] / 16] * (u[k] - 32);
            }
            blk[64 * h + l] = (uint8_t)((u[0] & 15) | ((u[2] & 15) << 4));
            blk[64 * h + 32 + l] = (uint8_t)((u[1] & 15) | ((u[3] & 15) << 4));
            blk[128 + 32 * h + l] =
                (uint8_t)((u[0] >> 4) | (u[1] >> 4) << 2 | (u[2] >> 4) << 4 | (u[3] >> 4) << 6);
        }
    }
    tw_dequantize_row(TW_DTYPE_Q6_K, blk, y, 256);
    CHECK_EQ_INT(count_mismatch(y, want, 256, "q6_K (b)"), 0);
}

// ---- quantisation error on random data.

enum { NBLOCKS = 1000 };

static void fill(float *x, size_t n, int gauss, double scale, uint64_t *st)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * (gauss ? gaussian(st) : 2.0 * uniform(st) - 1.0));
}

static void test_q8_0_error(const float *x, size_t n, const char *what)
{
    struct tw_block_q8_0 *b = tw_malloc_array(n / 32, sizeof *b);
    float *y = tw_malloc_array(n, sizeof *y);
    REQUIRE(b && y);
    tw_quantize_row(TW_DTYPE_Q8_0, x, b, n);
    tw_dequantize_row(TW_DTYPE_Q8_0, b, y, n);
    int bad = 0;
    double worst = 0.0; // the largest error as a fraction of d / 2
    for (size_t i = 0; i < n / 32; i++) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[32 * i + j]));
        float d = amax / 127.0f;
        double d16 = tw_f16_to_f32(b[i].d);
        bad += b[i].d != tw_f32_to_f16(d); // ggml's scale
        // |x - q d| <= d/2, plus |q| |d - fp16(d)| <= 127 |d - fp16(d)|.
        double bound = d / 2.0 + 127.0 * fabs(d - d16) + 1e-6 * amax;
        for (int j = 0; j < 32; j++) {
            double err = fabs((double)y[32 * i + j] - x[32 * i + j]);
            bad += err > bound || b[i].qs[j] == -128;
            if (d > 0)
                worst = fmax(worst, err / (d / 2.0));
        }
    }
    if (bad)
        fprintf(stderr, "q8_0 %s: %d elements over the bound\n", what, bad);
    CHECK_EQ_INT(bad, 0);
    printf("  q8_0 %-16s max error %.4f x d/2\n", what, worst);
    tw_free(b);
    tw_free(y);
}

static void test_q4_0_error(const float *x, size_t n, const char *what)
{
    struct tw_block_q4_0 *b = tw_malloc_array(n / 32, sizeof *b);
    float *y = tw_malloc_array(n, sizeof *y);
    REQUIRE(b && y);
    tw_quantize_row(TW_DTYPE_Q4_0, x, b, n);
    tw_dequantize_row(TW_DTYPE_Q4_0, b, y, n);
    int bad = 0, clamped = 0;
    double worst = 0.0, worst_clamped = 0.0; // as fractions of |d| / 2
    for (size_t i = 0; i < n / 32; i++) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (fabsf(x[32 * i + j]) > amax) {
                amax = fabsf(x[32 * i + j]);
                max = x[32 * i + j];
            }
        }
        double d = max / -8.0f, d16 = tw_f16_to_f32(b[i].d), ad = fabs(d);
        bad += b[i].d != tw_f32_to_f16((float)d);
        double fp16_term = 8.0 * fabs(d - d16), eps = 1e-6 * amax;
        for (int j = 0; j < 32; j++) {
            float v = x[32 * i + j];
            double err = fabs((double)y[32 * i + j] - v);
            if (ad == 0)
                continue;
            if (v / d <= 7.5) { // a level on each side: rounding error only
                bad += err > ad / 2.0 * (1.0 + 1e-5) + fp16_term + eps;
                worst = fmax(worst, err / (ad / 2.0));
            } else { // beyond the top level 7: clamped to it, error below |d|
                clamped++;
                bad += err > ad * (1.0 + 1e-5) + fp16_term + eps;
                worst_clamped = fmax(worst_clamped, err / (ad / 2.0));
            }
        }
    }
    if (bad)
        fprintf(stderr, "q4_0 %s: %d elements over the bound\n", what, bad);
    CHECK_EQ_INT(bad, 0);
    printf("  q4_0 %-16s max error %.4f x |d|/2; clamped side (%d elements): %.4f x |d|/2\n", what,
           worst, clamped, worst_clamped);
    tw_free(b);
    tw_free(y);
}

// RMS(y - x) / RMS(x) over the row, and the largest |y - x| / max|x of its block|.
static void kquant_error(enum tw_dtype t, const float *x, size_t n, double *rel_rms,
                         double *rel_max)
{
    size_t bytes = 0;
    REQUIRE(tw_dtype_nbytes(t, n, &bytes) == 0);
    void *q = tw_malloc(bytes);
    float *y = tw_malloc_array(n, sizeof *y);
    REQUIRE(q && y);
    tw_quantize_row(t, x, q, n);
    tw_dequantize_row(t, q, y, n);
    double se = 0.0, sx = 0.0, mx = 0.0;
    for (size_t i = 0; i < n; i += 256) {
        double amax = 0.0, emax = 0.0;
        for (size_t j = i; j < i + 256; j++) {
            double e = (double)y[j] - x[j];
            se += e * e;
            sx += (double)x[j] * x[j];
            amax = fmax(amax, fabs(x[j]));
            emax = fmax(emax, fabs(e));
        }
        if (amax > 0)
            mx = fmax(mx, emax / amax);
    }
    *rel_rms = sx > 0 ? sqrt(se / sx) : sqrt(se);
    *rel_max = mx;
    tw_free(q);
    tw_free(y);
}

// Bounds on RMS(error) / RMS(x) and on max|error| / max|x| of the block, measured on 1000
// blocks of uniform and Gaussian data at scales 0.01, 1 and 100 (the values print when the
// test runs), with a margin of about 1.2-1.3x:
//   q4_K: RMS 0.058 (uniform), 0.075 (Gaussian); max 0.067 (= range / 30: uniform data
//         spans about 2 max|x| in a sub-block, and half a step is range / 30);
//   q6_K: RMS 0.0132 (uniform), 0.0174 (Gaussian); max 0.031 (a sub-block whose v / -32
//         scale wins may clamp one element by a full step, 1/32 of its max).
#define Q4_K_RMS_UNIF  0.070
#define Q4_K_RMS_GAUSS 0.090
#define Q4_K_MAX       0.080
#define Q6_K_RMS_UNIF  0.017
#define Q6_K_RMS_GAUSS 0.022
#define Q6_K_MAX       0.040

static void test_error_bounds(void)
{
    static const double scales[] = { 1e-2, 1.0, 100.0 };
    float *x = tw_malloc_array(NBLOCKS * 256, sizeof *x);
    REQUIRE(x);
    uint64_t st = 1234;
    printf("quantisation error, %d blocks each:\n", NBLOCKS);
    for (int gauss = 0; gauss < 2; gauss++) {
        for (size_t k = 0; k < sizeof scales / sizeof scales[0]; k++) {
            char what[48];
            snprintf(what, sizeof what, "%s x %g", gauss ? "gauss" : "uniform", scales[k]);
            fill(x, NBLOCKS * 256, gauss, scales[k], &st);
            test_q8_0_error(x, NBLOCKS * 32, what);
            test_q4_0_error(x, NBLOCKS * 32, what);
            double rms, mx;
            kquant_error(TW_DTYPE_Q4_K, x, NBLOCKS * 256, &rms, &mx);
            printf("  q4_K %-16s rms %.4f of rms(x), max %.4f of max|x|\n", what, rms, mx);
            CHECK(rms < (gauss ? Q4_K_RMS_GAUSS : Q4_K_RMS_UNIF));
            CHECK(mx < Q4_K_MAX);
            kquant_error(TW_DTYPE_Q6_K, x, NBLOCKS * 256, &rms, &mx);
            printf("  q6_K %-16s rms %.4f of rms(x), max %.4f of max|x|\n", what, rms, mx);
            CHECK(rms < (gauss ? Q6_K_RMS_GAUSS : Q6_K_RMS_UNIF));
            CHECK(mx < Q6_K_MAX);
        }
    }
    tw_free(x);
}

// Special blocks: all zero, constant, one spike, all negative: decoded finite and within the
// rounding bound of each format.
static void test_special_blocks(void)
{
    static const enum tw_dtype types[] = { TW_DTYPE_Q8_0, TW_DTYPE_Q4_0, TW_DTYPE_Q4_K,
                                           TW_DTYPE_Q6_K, TW_DTYPE_F16,  TW_DTYPE_BF16 };
    _Alignas(8) uint8_t q[1024]; // 512 elements of any block type
    float x[512], y[512];
    for (int kind = 0; kind < 5; kind++) {
        for (int i = 0; i < 512; i++) {
            switch (kind) {
            case 0:
                x[i] = 0.0f;
                break;
            case 1:
                x[i] = 3.0f;
                break;
            case 2:
                x[i] = -0.75f;
                break;
            case 3:
                x[i] = i == 77 ? 1000.0f : 0.001f * (float)(i % 5);
                break;
            default:
                x[i] = -1.0f - (float)(i % 17) * 0.1f;
                break;
            }
        }
        for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
            // Tolerance: a fraction of the block's max|x| (of the element for the floats).
            static const double frac[] = {
                1.2 / 254, 1.1 / 16, 1.2 / 15, 1.1 / 31, 0x1p-11, 0x1p-8
            };
            enum tw_dtype t = types[k];
            size_t n = tw_dtype_is_quantized(t) ? 512 : 64, bs = tw_dtype_block_size(t);
            tw_quantize_row(t, x, q, n);
            tw_dequantize_row(t, q, y, n);
            int bad = 0;
            for (size_t i = 0; i < n; i++) {
                double amax = 0.0;
                for (size_t j = i / bs * bs; j < i / bs * bs + bs; j++)
                    amax = fmax(amax, fabs(x[j]));
                bad += !isfinite(y[i]) || fabs(y[i] - x[i]) > frac[k] * amax;
                if (kind == 0)
                    bad += y[i] != 0.0f;
            }
            if (bad)
                fprintf(stderr, "special block %d, %s: %d bad\n", kind, tw_dtype_name(t), bad);
            CHECK_EQ_INT(bad, 0);
        }
    }
}

static void test_vec_dot(void)
{
    enum { N = 1024 };
    float *w = tw_malloc_array(N, sizeof *w), *x = tw_malloc_array(N, sizeof *x);
    float *y = tw_malloc_array(N, sizeof *y);
    void *row = tw_malloc(N * 4);
    REQUIRE(w && x && y && row);
    uint64_t st = 99;
    for (int t = 0; t < TW_DTYPE_COUNT; t++) {
        for (int trial = 0; trial < 5; trial++) {
            fill(w, N, 1, 0.05, &st);
            fill(x, N, trial % 2, 3.0, &st);
            tw_quantize_row((enum tw_dtype)t, w, row, N);
            tw_dequantize_row((enum tw_dtype)t, row, y, N);
            double ref = 0.0, mag = 0.0;
            for (int i = 0; i < N; i++) {
                ref += (double)y[i] * x[i];
                mag += fabs((double)y[i] * x[i]);
            }
            float dot = tw_vec_dot_row((enum tw_dtype)t, row, x, N);
            if (!(fabs(dot - ref) <= 1e-5 * mag))
                fprintf(stderr, "vec_dot %s: %.9g vs %.9g\n", tw_dtype_name((enum tw_dtype)t), dot,
                        ref);
            CHECK(fabs(dot - ref) <= 1e-5 * mag);
            CHECK(fabs(dot - ref) <= 1e-5 * fabs(ref) + 1e-7 * mag);
        }
    }
    tw_free(w);
    tw_free(x);
    tw_free(y);
    tw_free(row);
}

int main(void)
{
    test_names_and_sizes();
    test_f16_all_values();
    test_f16_known();
    test_f16_rounding_random();
    test_bf16();
    test_rows_vs_scalar();
    test_q8_0_layout();
    test_q4_0_layout();
    test_q4_k_layout();
    test_q6_k_layout();
    test_special_blocks();
    test_vec_dot();
    test_error_bounds();
    return check_report("tensor_test_dtype");
}

// Implements dtype.h: the dtype table, f16 / bf16 conversions (scalar, and an AVX2 + F16C row
// path on x86-64), and the reference encoders, decoders and dot products of ggml's Q8_0,
// Q4_0, Q4_K and Q6_K blocks. Layouts and decoding formulas are ggml's published ones
// (ggml-common.h block structs, ggml-quants.c dequantize_row_*); the code is twin's own, and
// the K-quant encoders are twin's simpler min/max encoders, not ggml's iterative search.
#include "tensor/dtype.h"

#include <assert.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/mem.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define TW_DTYPE_X86 1
#else
#define TW_DTYPE_X86 0
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the block formats are read in place: twin needs a little-endian target"
#endif

_Static_assert(sizeof(struct tw_block_q8_0) == 34, "Q8_0 block is 34 bytes");
_Static_assert(sizeof(struct tw_block_q4_0) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(struct tw_block_q4_k) == 144, "Q4_K block is 144 bytes");
_Static_assert(sizeof(struct tw_block_q6_k) == 210, "Q6_K block is 210 bytes");

struct dtype_info {
    const char *name;
    size_t block_size;
    size_t block_bytes;
    uint32_t ggml_type; // ggml.h's enum ggml_type, as GGUF stores it
};

static const struct dtype_info infos[TW_DTYPE_COUNT] = {
    [TW_DTYPE_F32] = { "f32", 1, 4, 0 },
    [TW_DTYPE_F16] = { "f16", 1, 2, 1 },
    [TW_DTYPE_BF16] = { "bf16", 1, 2, 30 },
    [TW_DTYPE_Q8_0] = { "q8_0", TW_QK8_0, sizeof(struct tw_block_q8_0), 8 },
    [TW_DTYPE_Q4_0] = { "q4_0", TW_QK4_0, sizeof(struct tw_block_q4_0), 2 },
    [TW_DTYPE_Q4_K] = { "q4_K", TW_QK_K, sizeof(struct tw_block_q4_k), 12 },
    [TW_DTYPE_Q6_K] = { "q6_K", TW_QK_K, sizeof(struct tw_block_q6_k), 14 },
};

static bool valid(enum tw_dtype t)
{
    return (unsigned)t < TW_DTYPE_COUNT;
}

const char *tw_dtype_name(enum tw_dtype t)
{
    return valid(t) ? infos[t].name : "?";
}

int tw_dtype_from_name(const char *name, enum tw_dtype *out)
{
    for (int t = 0; t < TW_DTYPE_COUNT; t++) {
        if (strcasecmp(name, infos[t].name) == 0) {
            *out = (enum tw_dtype)t;
            return 0;
        }
    }
    return tw_error_set(TW_EINVAL, "'%s': not a dtype (f32, f16, bf16, q8_0, q4_0, q4_K, q6_K)",
                        name);
}

size_t tw_dtype_block_size(enum tw_dtype t)
{
    return valid(t) ? infos[t].block_size : 0;
}

size_t tw_dtype_block_bytes(enum tw_dtype t)
{
    return valid(t) ? infos[t].block_bytes : 0;
}

bool tw_dtype_is_quantized(enum tw_dtype t)
{
    return valid(t) && infos[t].block_size > 1;
}

int tw_dtype_nbytes(enum tw_dtype t, size_t n, size_t *out)
{
    if (!valid(t))
        return tw_error_set(TW_EINVAL, "dtype %d: not a dtype", (int)t);
    size_t bs = infos[t].block_size, bytes;
    if (n % bs != 0)
        return tw_error_set(TW_EINVAL, "%s: %zu elements is not a multiple of the block size %zu",
                            infos[t].name, n, bs);
    if (tw_mul_overflow(n / bs, infos[t].block_bytes, &bytes))
        return tw_error_set(TW_EOVERFLOW, "%s: %zu elements: the byte size overflows",
                            infos[t].name, n);
    *out = bytes;
    return 0;
}

int tw_dtype_from_ggml(uint32_t ggml_type, enum tw_dtype *out)
{
    for (int t = 0; t < TW_DTYPE_COUNT; t++) {
        if (infos[t].ggml_type == ggml_type) {
            *out = (enum tw_dtype)t;
            return 0;
        }
    }
    return tw_error_set(TW_EUNSUPPORTED, "ggml tensor type %u is not supported", ggml_type);
}

uint32_t tw_dtype_ggml_type(enum tw_dtype t)
{
    return valid(t) ? infos[t].ggml_type : UINT32_MAX;
}

// ---- f16 and bf16 scalars.

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t tw_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) // NaN: quiet bit set, top payload bits kept
        return sign | 0x7E00 | (uint16_t)((a >> 13) & 0x3FF);
    if (a >= 0x477FF000u) // >= 65520 = 65504 + half an ulp: the tie goes to inf (even)
        return sign | 0x7C00;
    if (a >= 0x38800000u) { // >= 2^-14: a normal half; rebias the exponent 127 -> 15
        uint32_t r = a - 0x38000000u;
        r += 0x0FFFu + ((r >> 13) & 1); // round to nearest even at bit 13; carries are right
        return sign | (uint16_t)(r >> 13);
    }
    // Subnormal or zero: adding 0.5 makes the f32 ulp 2^-24, the half subnormal step, so the
    // FPU's own round-to-nearest-even picks the half mantissa (1024 means 2^-14, which is
    // exactly the bit pattern of the smallest normal).
    float t = f32_from_bits(a) + 0.5f;
    return sign | (uint16_t)(f32_bits(t) - 0x3F000000u);
}

float tw_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
    if (e == 0x1F) // inf, or NaN (quieted, as the hardware converters do)
        return f32_from_bits(sign | 0x7F800000u | (m << 13) | (m ? 0x00400000u : 0));
    if (e == 0) // zero or subnormal: m * 2^-24, exact in f32
        return f32_from_bits(sign | f32_bits((float)m * 0x1p-24f));
    return f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
}

uint16_t tw_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u)
        return 0x7FC0;
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1)) >> 16);
}

float tw_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

// ---- rows of f16 / bf16: AVX2 + F16C on x86-64 when the CPU has them, scalar tails.

#if TW_DTYPE_X86
// AVX2 (which __builtin_cpu_supports checks together with the OS's YMM state) and F16C
// (CPUID.1:ECX bit 29; not every compiler's __builtin_cpu_supports knows it), asked once:
// CPUID can trap to the hypervisor in a VM.
static bool have_avx2_f16c(void)
{
    static _Atomic int known = -1;
    int v = atomic_load_explicit(&known, memory_order_relaxed);
    if (v < 0) {
        unsigned a, b, c = 0, d;
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
        atomic_store_explicit(&known, v, memory_order_relaxed);
    }
    return v;
}

__attribute__((target("avx2,f16c"))) static size_t f32_to_f16_avx2(const float *x, uint16_t *y,
                                                                   size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(y + i), h);
    }
    return i;
}

__attribute__((target("avx2,f16c"))) static size_t f16_to_f32_avx2(const uint16_t *x, float *y,
                                                                   size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    return i;
}

__attribute__((target("avx2"))) static size_t f32_to_bf16_avx2(const float *x, uint16_t *y,
                                                               size_t n)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7FFF);
    const __m256i qnan = _mm256_set1_epi32(0x7FC0);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 f = _mm256_loadu_ps(x + i);
        __m256i u = _mm256_castps_si256(f);
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
        __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q));
        r = _mm256_blendv_epi8(r, qnan, nan);
        __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
        _mm_storeu_si128((__m128i *)(y + i), _mm_packus_epi32(lo, hi)); // r <= 0xFFFF
    }
    return i;
}

__attribute__((target("avx2"))) static size_t bf16_to_f32_avx2(const uint16_t *x, float *y,
                                                               size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_slli_epi32(w, 16));
    }
    return i;
}
#endif

void tw_f32_to_f16_row(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
#if TW_DTYPE_X86
    if (have_avx2_f16c())
        i = f32_to_f16_avx2(x, y, n);
#endif
    for (; i < n; i++)
        y[i] = tw_f32_to_f16(x[i]);
}

void tw_f16_to_f32_row(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
#if TW_DTYPE_X86
    if (have_avx2_f16c())
        i = f16_to_f32_avx2(x, y, n);
#endif
    for (; i < n; i++)
        y[i] = tw_f16_to_f32(x[i]);
}

void tw_f32_to_bf16_row(const float *x, uint16_t *y, size_t n)
{
    size_t i = 0;
#if TW_DTYPE_X86
    if (have_avx2_f16c())
        i = f32_to_bf16_avx2(x, y, n);
#endif
    for (; i < n; i++)
        y[i] = tw_f32_to_bf16(x[i]);
}

void tw_bf16_to_f32_row(const uint16_t *x, float *y, size_t n)
{
    size_t i = 0;
#if TW_DTYPE_X86
    if (have_avx2_f16c())
        i = bf16_to_f32_avx2(x, y, n);
#endif
    for (; i < n; i++)
        y[i] = tw_bf16_to_f32(x[i]);
}

// ---- helpers for the encoders.

// round-to-nearest-even of v, clamped to [lo, hi] first (so NaN and huge values are safe).
static int round_clamp(float v, int lo, int hi)
{
    v = fminf(fmaxf(v, (float)lo), (float)hi);
    return (int)nearbyintf(v);
}

// ---- Q8_0 (ggml-common.h block_q8_0; ggml-quants.c quantize_row_q8_0_ref's rule).

static void quantize_q8_0(const float *x, struct tw_block_q8_0 *b)
{
    float amax = 0.0f;
    for (int j = 0; j < TW_QK8_0; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = tw_f32_to_f16(d);
    for (int j = 0; j < TW_QK8_0; j++) // roundf: ties away from zero, as ggml
        b->qs[j] = (int8_t)roundf(fminf(fmaxf(x[j] * id, -127.0f), 127.0f));
}

static void dequantize_q8_0(const struct tw_block_q8_0 *b, float *y)
{
    float d = tw_f16_to_f32(b->d);
    for (int j = 0; j < TW_QK8_0; j++)
        y[j] = (float)b->qs[j] * d;
}

// ---- Q4_0 (block_q4_0; quantize_row_q4_0_ref's rule).

static void quantize_q4_0(const float *x, struct tw_block_q4_0 *b)
{
    float amax = 0.0f, max = 0.0f; // the value of largest magnitude, sign kept
    for (int j = 0; j < TW_QK4_0; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = tw_f32_to_f16(d);
    for (int j = 0; j < TW_QK4_0 / 2; j++) {
        // ggml truncates x/d + 8.5 (x/d >= -8, so this rounds half up) and clamps at 15.
        int q0 = (int)fminf(fmaxf(x[j] * id + 8.5f, 0.0f), 15.0f);
        int q1 = (int)fminf(fmaxf(x[j + 16] * id + 8.5f, 0.0f), 15.0f);
        b->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void dequantize_q4_0(const struct tw_block_q4_0 *b, float *y)
{
    float d = tw_f16_to_f32(b->d);
    for (int j = 0; j < TW_QK4_0 / 2; j++) {
        y[j] = (float)((b->qs[j] & 0x0F) - 8) * d;
        y[j + 16] = (float)((b->qs[j] >> 4) - 8) * d;
    }
}

// ---- Q4_K (block_q4_K; dequantize_row_q4_K and get_scale_min_k4 define the layout).

void tw_q4_k_scale_min(const uint8_t scales[12], int j, uint8_t *sc, uint8_t *m)
{
    assert(j >= 0 && j < 8);
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

// Writes nibble q of element e (0..255) into a Q4_K block's qs (zeroed beforehand).
static void q4_k_put(uint8_t *qs, int e, int q)
{
    int c = e / 64, k = e % 64;
    if (k < 32)
        qs[32 * c + k] |= (uint8_t)q;
    else
        qs[32 * c + k - 32] |= (uint8_t)(q << 4);
}

// Squared error of sub-block x[0..31] decoded with scale ds and min dm (the decoder's floats),
// each element taking its nearest level; the levels go to q when q is not NULL.
static double q4_k_sub_error(const float *x, float ds, float dm, uint8_t *q)
{
    double err = 0.0;
    for (int i = 0; i < 32; i++) {
        int l = ds > 0.0f ? round_clamp((x[i] + dm) / ds, 0, 15) : 0;
        double e = (double)(ds * (float)l - dm) - x[i];
        err += e * e;
        if (q)
            q[i] = (uint8_t)l;
    }
    return err;
}

static void quantize_q4_k(const float *x, struct tw_block_q4_k *b)
{
    float lo[8], hi[8], max_min = 0.0f;
    for (int s = 0; s < 8; s++) {
        lo[s] = 0.0f; // the min is subtracted with a non-negative 6-bit factor: min <= 0
        hi[s] = x[32 * s];
        for (int i = 0; i < 32; i++) {
            lo[s] = fminf(lo[s], x[32 * s + i]);
            hi[s] = fmaxf(hi[s], x[32 * s + i]);
        }
        max_min = fmaxf(max_min, -lo[s]);
    }
    memset(b, 0, sizeof *b);
    b->dmin = tw_f32_to_f16(max_min / 63.0f);
    float dmin = tw_f16_to_f32(b->dmin);

    // Each sub-block's min rounds down or up to the 6-bit grid; the scale must cover the
    // range from the rounded-up min to the sub-block's max.
    int lm0[8];
    float max_scale = 0.0f;
    for (int s = 0; s < 8; s++) {
        lm0[s] = dmin > 0.0f ? round_clamp(floorf(-lo[s] / dmin), 0, 63) : 0;
        int lm1 = lm0[s] < 63 && dmin > 0.0f ? lm0[s] + 1 : lm0[s];
        max_scale = fmaxf(max_scale, (hi[s] + dmin * (float)lm1) / 15.0f);
    }
    b->d = tw_f32_to_f16(max_scale / 63.0f);
    float d = tw_f16_to_f32(b->d);

    // Per sub-block: of the 6-bit (scale, min) pairs next to the ideal ones, keep the one with
    // the least squared error.
    uint8_t ls[8], lm[8], q[32];
    for (int s = 0; s < 8; s++) {
        const float *xs = x + 32 * s;
        double best = INFINITY;
        ls[s] = lm[s] = 0;
        for (int a = 0; a < 2; a++) {
            int m = lm0[s] + a;
            if (m > 63 || (a == 1 && dmin == 0.0f))
                continue;
            float dm = dmin * (float)m;
            float u = d > 0.0f ? (hi[s] + dm) / (15.0f * d) : 0.0f;
            int sc0 = round_clamp(floorf(u), 0, 63);
            for (int c = 0; c < 2; c++) {
                int sc = sc0 + c;
                if (sc > 63 || (c == 1 && d == 0.0f))
                    continue;
                double err = q4_k_sub_error(xs, d * (float)sc, dm, NULL);
                if (err < best) {
                    best = err;
                    ls[s] = (uint8_t)sc;
                    lm[s] = (uint8_t)m;
                }
            }
        }
    }

    // Pack the scales and mins (the inverse of tw_q4_k_scale_min).
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            b->scales[j] = ls[j];
            b->scales[j + 4] = lm[j];
        } else {
            b->scales[j + 4] = (uint8_t)((ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4));
            b->scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            b->scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    for (int s = 0; s < 8; s++) {
        q4_k_sub_error(x + 32 * s, d * (float)ls[s], dmin * (float)lm[s], q);
        for (int i = 0; i < 32; i++)
            q4_k_put(b->qs, 32 * s + i, q[i]);
    }
}

static void dequantize_q4_k(const struct tw_block_q4_k *b, float *y)
{
    float d = tw_f16_to_f32(b->d), dmin = tw_f16_to_f32(b->dmin);
    for (int c = 0; c < 4; c++) { // 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high)
        uint8_t sc, m;
        tw_q4_k_scale_min(b->scales, 2 * c, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        tw_q4_k_scale_min(b->scales, 2 * c + 1, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *qs = b->qs + 32 * c;
        for (int i = 0; i < 32; i++) {
            y[64 * c + i] = d1 * (float)(qs[i] & 0x0F) - m1;
            y[64 * c + 32 + i] = d2 * (float)(qs[i] >> 4) - m2;
        }
    }
}

// ---- Q6_K (block_q6_K; dequantize_row_q6_K defines the layout).

// Squared error of sub-block x[0..15] decoded as (d * sc) * q, q in -32..31; levels to q.
static double q6_k_sub_error(const float *x, float d, int sc, int8_t *q)
{
    float ds = d * (float)sc;
    double err = 0.0;
    for (int i = 0; i < 16; i++) {
        int l = ds != 0.0f ? round_clamp(x[i] / ds, -32, 31) : 0;
        double e = (double)(ds * (float)l) - x[i];
        err += e * e;
        if (q)
            q[i] = (int8_t)l;
    }
    return err;
}

static void quantize_q6_k(const float *x, struct tw_block_q6_k *b)
{
    // Two candidate scales per sub-block of 16, from its value v of largest magnitude:
    // v / -32 maps v to -32, the level without a positive twin (Q4_0's rule; an opposite
    // value near -v then clamps at 31), and v / 31 keeps both signs inside -31..31 at a
    // coarser step. d maps the largest-magnitude candidate of the block to -128.
    float cand[16][2], max_scale = 0.0f;
    for (int s = 0; s < 16; s++) {
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < 16; i++) {
            if (fabsf(x[16 * s + i]) > amax) {
                amax = fabsf(x[16 * s + i]);
                max = x[16 * s + i];
            }
        }
        cand[s][0] = max / -32.0f;
        cand[s][1] = max / 31.0f;
        if (fabsf(cand[s][1]) > fabsf(max_scale))
            max_scale = cand[s][1];
    }
    memset(b, 0, sizeof *b);
    b->d = tw_f32_to_f16(max_scale / -128.0f);
    float d = tw_f16_to_f32(b->d);

    // Per sub-block, of the int8 scales next to each candidate, keep the one with the least
    // squared error.
    int8_t q[16];
    for (int s = 0; s < 16; s++) {
        const float *xs = x + 16 * s;
        int best_sc = 0;
        double best = INFINITY;
        for (int k = 0; k < 4 && d != 0.0f; k++) {
            int sc = round_clamp(floorf(cand[s][k >> 1] / d), -128, 127) + (k & 1);
            if (sc > 127)
                continue;
            double err = q6_k_sub_error(xs, d, sc, NULL);
            if (err < best) {
                best = err;
                best_sc = sc;
            }
        }
        b->scales[s] = (int8_t)best_sc;
        q6_k_sub_error(xs, d, best_sc, q);
        for (int i = 0; i < 16; i++) {
            int e = 16 * s + i, h = e / 128, k = e % 128, l = k % 32;
            int u = q[i] + 32; // 0..63: 4 low bits in ql, 2 high bits in qh
            uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            int row = k / 32; // 0: ql[l] lo, 1: ql[32+l] lo, 2: ql[l] hi, 3: ql[32+l] hi
            ql[l + 32 * (row & 1)] |= (uint8_t)((u & 0x0F) << (4 * (row >> 1)));
            qh[l] |= (uint8_t)((u >> 4) << (2 * row));
        }
    }
}

static void dequantize_q6_k(const struct tw_block_q6_k *b, float *y)
{
    float d = tw_f16_to_f32(b->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const int8_t *sc = b->scales + 8 * h;
        float *yh = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yh[l] = d * (float)sc[is] * (float)q1;
            yh[l + 32] = d * (float)sc[is + 2] * (float)q2;
            yh[l + 64] = d * (float)sc[is + 4] * (float)q3;
            yh[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

// ---- rows.

static void check_row(enum tw_dtype t, const void *p, size_t n)
{
    (void)p;
    (void)n;
    assert(valid(t));
    assert(n % infos[t].block_size == 0);
    assert(t == TW_DTYPE_F32 ? ((uintptr_t)p & 3) == 0 : ((uintptr_t)p & 1) == 0);
}

void tw_quantize_row(enum tw_dtype t, const float *x, void *out, size_t n)
{
    check_row(t, out, n);
    size_t nb = n / infos[t].block_size;
    switch (t) {
    case TW_DTYPE_F32:
        memmove(out, x, n * sizeof(float));
        break;
    case TW_DTYPE_F16:
        tw_f32_to_f16_row(x, out, n);
        break;
    case TW_DTYPE_BF16:
        tw_f32_to_bf16_row(x, out, n);
        break;
    case TW_DTYPE_Q8_0:
        for (size_t i = 0; i < nb; i++)
            quantize_q8_0(x + i * TW_QK8_0, (struct tw_block_q8_0 *)out + i);
        break;
    case TW_DTYPE_Q4_0:
        for (size_t i = 0; i < nb; i++)
            quantize_q4_0(x + i * TW_QK4_0, (struct tw_block_q4_0 *)out + i);
        break;
    case TW_DTYPE_Q4_K:
        for (size_t i = 0; i < nb; i++)
            quantize_q4_k(x + i * TW_QK_K, (struct tw_block_q4_k *)out + i);
        break;
    case TW_DTYPE_Q6_K:
        for (size_t i = 0; i < nb; i++)
            quantize_q6_k(x + i * TW_QK_K, (struct tw_block_q6_k *)out + i);
        break;
    default:
        assert(0 && "not a dtype");
    }
}

// Decodes block i of a row of dtype t (a block type) into y (block_size floats).
static void dequantize_block(enum tw_dtype t, const void *in, size_t i, float *y)
{
    switch (t) {
    case TW_DTYPE_Q8_0:
        dequantize_q8_0((const struct tw_block_q8_0 *)in + i, y);
        break;
    case TW_DTYPE_Q4_0:
        dequantize_q4_0((const struct tw_block_q4_0 *)in + i, y);
        break;
    case TW_DTYPE_Q4_K:
        dequantize_q4_k((const struct tw_block_q4_k *)in + i, y);
        break;
    case TW_DTYPE_Q6_K:
        dequantize_q6_k((const struct tw_block_q6_k *)in + i, y);
        break;
    default:
        assert(0 && "not a block dtype");
    }
}

void tw_dequantize_row(enum tw_dtype t, const void *in, float *y, size_t n)
{
    check_row(t, in, n);
    switch (t) {
    case TW_DTYPE_F32:
        memmove(y, in, n * sizeof(float));
        return;
    case TW_DTYPE_F16:
        tw_f16_to_f32_row(in, y, n);
        return;
    case TW_DTYPE_BF16:
        tw_bf16_to_f32_row(in, y, n);
        return;
    default:
        break;
    }
    size_t bs = infos[t].block_size;
    for (size_t i = 0; i < n / bs; i++)
        dequantize_block(t, in, i, y + i * bs);
}

float tw_vec_dot_row(enum tw_dtype t, const void *row, const float *x, size_t n)
{
    check_row(t, row, n);
    double sum = 0.0;
    switch (t) {
    case TW_DTYPE_F32:
        for (size_t i = 0; i < n; i++)
            sum += (double)((const float *)row)[i] * x[i];
        return (float)sum;
    case TW_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            sum += (double)tw_f16_to_f32(((const uint16_t *)row)[i]) * x[i];
        return (float)sum;
    case TW_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            sum += (double)tw_bf16_to_f32(((const uint16_t *)row)[i]) * x[i];
        return (float)sum;
    default:
        break;
    }
    size_t bs = infos[t].block_size;
    float y[TW_QK_K];
    for (size_t i = 0; i < n / bs; i++) {
        dequantize_block(t, row, i, y);
        for (size_t j = 0; j < bs; j++)
            sum += (double)y[j] * x[i * bs + j];
    }
    return (float)sum;
}

// The AVX2 kernels of cpu_qdot.h and the AVX2 activation quantizer, compiled with target
// attributes so that the file builds with default flags. A ymm holds the 32 weights of one
// block of activations: vpmaddubsw multiplies unsigned weight bytes by signed activation bytes
// and adds pairs into int16 (no pair can reach the saturation bound: |w| <= 128 and
// |x| <= 127), vpmaddwd widens to int32 lanes, which are converted to float and scaled.
#include "tensor/cpu_qdot.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdalign.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

#define NXMAX 8

// acc[s][j], as in cpu_qdot_avx512.c: two sets for tiles of up to four rows.
typedef __m256 accs[2][NXMAX];
#define EACH_ROW(ROW) ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)

INLINE int other_set(int nx)
{
    return nx <= 4 ? 1 : 0;
}

INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// The accumulators of the rows in use (constant indices, so that none goes through memory).
INLINE void acc_zero(accs acc, int nx)
{
#define ROW(j)                           \
    if (j < nx) {                        \
        acc[0][j] = _mm256_setzero_ps(); \
        acc[1][j] = _mm256_setzero_ps(); \
    }
    EACH_ROW(ROW)
#undef ROW
}

INLINE void acc_store(accs acc, int nx, float *out)
{
#define ROW(j)  \
    if (j < nx) \
        out[j] = hsum(other_set(nx) ? _mm256_add_ps(acc[0][j], acc[1][j]) : acc[0][j]);
    EACH_ROW(ROW)
#undef ROW
}

INLINE float f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

INLINE __m256i load32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

// int32 lanes: sums of four products u * s (u unsigned, s signed bytes).
INLINE __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// Signed weights w (32 int8) of scale dw against activation block i of each row:
// acc[s][j] += float(sum4 |w| * (x with w's sign)) * dw * d_x.
INLINE void signed_step(accs acc, int s, __m256i w, float dw, const struct tw_q8_act *x, size_t i,
                        size_t ldx, int nx)
{
    __m256i aw = _mm256_abs_epi8(w);
#define ROW(j)                                                                \
    if (j < nx) {                                                             \
        const struct tw_q8_act *a = x + (size_t)(j)*ldx + i;                  \
        __m256i xq = _mm256_sign_epi8(load32(a->qs), w);                      \
        __m256 p = _mm256_cvtepi32_ps(dot_u8s8(aw, xq));                      \
        acc[s][j] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * a->d), acc[s][j]); \
    }
    EACH_ROW(ROW)
#undef ROW
}

// ---- Q8_0 and Q4_0: one block a step.

INLINE void q8_0_step(accs acc, int s, const struct tw_block_q8_0 *b, const struct tw_q8_act *x,
                      size_t i, size_t ldx, int nx)
{
    signed_step(acc, s, load32(b[i].qs), f16(b[i].d), x, i, ldx, nx);
}

INLINE void q4_0_step(accs acc, int s, const struct tw_block_q4_0 *b, const struct tw_q8_act *x,
                      size_t i, size_t ldx, int nx)
{
    __m128i v = _mm_loadu_si128((const __m128i *)b[i].qs);
    __m256i q = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    q = _mm256_and_si256(q, _mm256_set1_epi8(0x0F));
    __m256i w = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
    signed_step(acc, s, w, f16(b[i].d), x, i, ldx, nx);
}

#define BLOCK32_NX(name, btype)                                                           \
    INLINE void name##_nx(const void *row, const struct tw_q8_act *x, size_t ldx, int nx, \
                          size_t n, float *out)                                           \
    {                                                                                     \
        const btype *b = row;                                                             \
        size_t nb = n / 32, i = 0;                                                        \
        accs acc;                                                                         \
        acc_zero(acc, nx);                                                                \
        for (; i + 2 <= nb; i += 2) {                                                     \
            tw_dot_prefetch_l1(b + i, 2 * sizeof *b);                                     \
            name##_step(acc, 0, b, x, i, ldx, nx);                                        \
            name##_step(acc, other_set(nx), b, x, i + 1, ldx, nx);                        \
        }                                                                                 \
        if (i < nb)                                                                       \
            name##_step(acc, 0, b, x, i, ldx, nx);                                        \
        acc_store(acc, nx, out);                                                          \
    }

BLOCK32_NX(q8_0, struct tw_block_q8_0)
BLOCK32_NX(q4_0, struct tw_block_q4_0)

// ---- Q4_K: per sub-block s of 32, d * sc * sum(q x) - dmin * m * sum(x), times d_x.

// f[k] = d * sc[k], f[8 + k] = dmin * m[k] (cpu_qdot_avx512.c's unpacking of the 6-bit fields).
INLINE void q4_k_factors(const struct tw_block_q4_k *b, float *f)
{
    uint32_t u[3];
    memcpy(u, b->scales, sizeof u);
    uint32_t sc_lo = u[0] & 0x3F3F3F3Fu, m_lo = u[1] & 0x3F3F3F3Fu;
    uint32_t sc_hi = (u[2] & 0x0F0F0F0Fu) | ((u[0] >> 6 & 0x03030303u) << 4);
    uint32_t m_hi = (u[2] >> 4 & 0x0F0F0F0Fu) | ((u[1] >> 6 & 0x03030303u) << 4);
    __m256 sc =
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)sc_hi, (int)sc_lo)));
    __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, (int)m_hi, (int)m_lo)));
    _mm256_store_ps(f, _mm256_mul_ps(sc, _mm256_set1_ps(f16(b->d))));
    _mm256_store_ps(f + 8, _mm256_mul_ps(m, _mm256_set1_ps(f16(b->dmin))));
}

INLINE void q4_k_step(accs acc, int k, __m256i q, const float *f, const struct tw_q8_act *x,
                      size_t ldx, int nx)
{
    int s = k & other_set(nx);
    __m256 dsc = _mm256_broadcast_ss(f + k), dm = _mm256_broadcast_ss(f + 8 + k);
#define ROW(j)                                                                 \
    if (j < nx) {                                                              \
        const struct tw_q8_act *a = x + (size_t)(j)*ldx + k;                   \
        __m256i xq = load32(a->qs);                                            \
        __m256 p = _mm256_cvtepi32_ps(dot_u8s8(q, xq));                        \
        __m256 sx = _mm256_cvtepi32_ps(dot_u8s8(_mm256_set1_epi8(1), xq));     \
        __m256 t = _mm256_fmsub_ps(p, dsc, _mm256_mul_ps(sx, dm));             \
        acc[s][j] = _mm256_fmadd_ps(t, _mm256_broadcast_ss(&a->d), acc[s][j]); \
    }
    EACH_ROW(ROW)
#undef ROW
}

INLINE void q4_k_chunk(accs acc, int c, const struct tw_block_q4_k *b, const float *f,
                       const struct tw_q8_act *x, size_t ldx, int nx)
{
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    __m256i raw = load32(b->qs + 32 * c);
    q4_k_step(acc, 2 * c, _mm256_and_si256(raw, m0f), f, x, ldx, nx);
    q4_k_step(acc, 2 * c + 1, _mm256_and_si256(_mm256_srli_epi16(raw, 4), m0f), f, x, ldx, nx);
}

INLINE void q4_k_nx(const void *row, const struct tw_q8_act *x, size_t ldx, int nx, size_t n,
                    float *out)
{
    const struct tw_block_q4_k *b = row;
    accs acc;
    acc_zero(acc, nx);
    alignas(32) float f[16];
    for (size_t i = 0; i < n / TW_QK_K; i++, b++, x += 8) {
        tw_dot_prefetch_l1(b, sizeof *b);
        q4_k_factors(b, f);
        q4_k_chunk(acc, 0, b, f, x, ldx, nx);
        q4_k_chunk(acc, 1, b, f, x, ldx, nx);
        q4_k_chunk(acc, 2, b, f, x, ldx, nx);
        q4_k_chunk(acc, 3, b, f, x, ldx, nx);
    }
    acc_store(acc, nx, out);
}

// ---- Q6_K: activation block g of half h (elements 128h + 32g ..) holds q - 32 of sub-blocks
// 8h + 2g (the low 128 bits, after vpmaddubsw: eight int16 pairs) and 8h + 2g + 1 (the high);
// vpmaddwd against their int8 scales gives int32 lanes of sc * sum((q - 32) x), scaled by
// d * d_x in float.

// e: the eight scales of half h as int32 lanes whose two int16 halves both hold the scale.
INLINE void q6_k_step(accs acc, int s, int g, __m256i q, __m256i e, float d,
                      const struct tw_q8_act *x, size_t ldx, int nx)
{
    __m256i sc =
        _mm256_permutevar8x32_epi32(e, _mm256_set_epi32(2 * g + 1, 2 * g + 1, 2 * g + 1, 2 * g + 1,
                                                        2 * g, 2 * g, 2 * g, 2 * g));
    __m256i w = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
    __m256i aw = _mm256_abs_epi8(w);
#define ROW(j)                                                                                   \
    if (j < nx) {                                                                                \
        const struct tw_q8_act *a = x + (size_t)(j)*ldx + g;                                     \
        __m256i xq = _mm256_sign_epi8(load32(a->qs), w);                                         \
        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xq), sc);                         \
        acc[s][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * a->d), acc[s][j]); \
    }
    EACH_ROW(ROW)
#undef ROW
}

INLINE void q6_k_half(accs acc, int h, const struct tw_block_q6_k *b, float d,
                      const struct tw_q8_act *x, size_t ldx, int nx)
{
    const __m256i m0f = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256i l0 = load32(b->ql + 64 * h), l1 = load32(b->ql + 64 * h + 32);
    __m256i hb = load32(b->qh + 32 * h);
    __m256i e = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->scales + 8 * h)));
    e = _mm256_or_si256(_mm256_slli_epi32(e, 16), _mm256_and_si256(e, _mm256_set1_epi32(0xFFFF)));
    // 16-bit shifts: bits that cross into the other byte fall outside 0x30.
    __m256i q0 = _mm256_or_si256(_mm256_and_si256(l0, m0f),
                                 _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
    __m256i q1 = _mm256_or_si256(_mm256_and_si256(l1, m0f),
                                 _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
    __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m0f),
                                 _mm256_and_si256(hb, m30));
    __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m0f),
                                 _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
    x += 4 * h;
    q6_k_step(acc, 0, 0, q0, e, d, x, ldx, nx);
    q6_k_step(acc, other_set(nx), 1, q1, e, d, x, ldx, nx);
    q6_k_step(acc, 0, 2, q2, e, d, x, ldx, nx);
    q6_k_step(acc, other_set(nx), 3, q3, e, d, x, ldx, nx);
}

INLINE void q6_k_nx(const void *row, const struct tw_q8_act *x, size_t ldx, int nx, size_t n,
                    float *out)
{
    const struct tw_block_q6_k *b = row;
    accs acc;
    acc_zero(acc, nx);
    for (size_t i = 0; i < n / TW_QK_K; i++, b++, x += 8) {
        tw_dot_prefetch_l1(b, sizeof *b);
        float d = f16(b->d);
        q6_k_half(acc, 0, b, d, x, ldx, nx);
        q6_k_half(acc, 1, b, d, x, ldx, nx);
    }
    acc_store(acc, nx, out);
}

// ---- one function per tile height, and the dispatch on nx.

#define KERNEL_NX(name, k)                                                            \
    TARGET __attribute__((noinline)) static void name##_##k(                          \
        const void *row, const struct tw_q8_act *x, size_t ldx, size_t n, float *out) \
    {                                                                                 \
        name##_nx(row, x, ldx, k, n, out);                                            \
    }

#define KERNEL(name)                                                                             \
    KERNEL_NX(name, 1)                                                                           \
    KERNEL_NX(name, 2)                                                                           \
    KERNEL_NX(name, 3)                                                                           \
    KERNEL_NX(name, 4)                                                                           \
    KERNEL_NX(name, 5)                                                                           \
    KERNEL_NX(name, 6)                                                                           \
    KERNEL_NX(name, 7)                                                                           \
    KERNEL_NX(name, 8)                                                                           \
    static void qdot_##name(const void *row, const struct tw_q8_act *x, size_t ldx, int nx,      \
                            size_t n, float *out)                                                \
    {                                                                                            \
        static void (*const fns[NXMAX + 1])(const void *, const struct tw_q8_act *, size_t,      \
                                            size_t, float *) = { NULL,     name##_1, name##_2,   \
                                                                 name##_3, name##_4, name##_5,   \
                                                                 name##_6, name##_7, name##_8 }; \
        for (; nx > NXMAX; nx -= NXMAX, x += NXMAX * ldx, out += NXMAX)                          \
            fns[NXMAX](row, x, ldx, n, out);                                                     \
        if (nx > 0)                                                                              \
            fns[nx](row, x, ldx, n, out);                                                        \
    }

KERNEL(q8_0)
KERNEL(q4_0)
KERNEL(q4_k)
KERNEL(q6_k)

tw_qdot_fn tw_qdot_kernel_avx2(enum tw_dtype t)
{
    switch (t) {
    case TW_DTYPE_Q8_0:
        return qdot_q8_0;
    case TW_DTYPE_Q4_0:
        return qdot_q4_0;
    case TW_DTYPE_Q4_K:
        return qdot_q4_k;
    case TW_DTYPE_Q6_K:
        return qdot_q6_k;
    default:
        return NULL;
    }
}

// ---- the quantizer: cpu_qdot.h's definition, the same float operations 8 lanes at a time.

TARGET static void q8_act_quantize(const float *x, size_t n, struct tw_q8_act *out)
{
    const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (size_t b = 0; b < n / TW_QK8_ACT; b++, x += TW_QK8_ACT) {
        __m256 v[4];
        for (int k = 0; k < 4; k++)
            v[k] = _mm256_loadu_ps(x + 8 * k);
        __m256 m =
            _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], nosign), _mm256_and_ps(v[1], nosign)),
                          _mm256_max_ps(_mm256_and_ps(v[2], nosign), _mm256_and_ps(v[3], nosign)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float a = _mm_cvtss_f32(h);
        if (a < TW_Q8_ACT_TINY)
            a = 0.0f;
        float id = a > 0.0f ? 127.0f / a : 0.0f;
        out[b].d = a / 127.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
        // the packs work within 128-bit lanes: put the dwords of four elements back in order
        __m256i p =
            _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)out[b].qs, p);
    }
}

tw_q8_act_fn tw_q8_act_quantizer_avx2(void)
{
    return q8_act_quantize;
}

#else

tw_qdot_fn tw_qdot_kernel_avx2(enum tw_dtype t)
{
    (void)t;
    return NULL;
}

tw_q8_act_fn tw_q8_act_quantizer_avx2(void)
{
    return NULL;
}

#endif

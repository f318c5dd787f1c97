// The AVX-512 VNNI kernels of cpu_qdot.h and the AVX-512 activation quantizer, compiled with
// target attributes so that the file builds with default flags; cpu_qdot.c calls them only on
// a CPU with AVX-512 F, BW, VL and VNNI. A zmm holds 64 weights, two blocks of 32 activations:
// vpdpbusd sums 4 products of unsigned weight bytes and signed activation bytes per dword
// lane, exactly; the lanes are converted to float and scaled lane by lane.
#include "tensor/cpu_qdot.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline)) TARGET

#define NXMAX 8

// acc[s][j]: set s, activation row j. Consecutive steps alternate between two sets when the
// tile has four rows or fewer, for independent FMA chains; constant indices keep them in
// registers (EACH_ROW expands a row's code eight times, guarded by j < nx).
typedef __m512 accs[2][NXMAX];
#define EACH_ROW(ROW) ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)

INLINE int other_set(int nx)
{
    return nx <= 4 ? 1 : 0;
}

// The accumulators of the rows in use (constant indices, so that none goes through memory).
INLINE void acc_zero(accs acc, int nx)
{
#define ROW(j)                           \
    if (j < nx) {                        \
        acc[0][j] = _mm512_setzero_ps(); \
        acc[1][j] = _mm512_setzero_ps(); \
    }
    EACH_ROW(ROW)
#undef ROW
}

INLINE void acc_store(accs acc, int nx, float *out)
{
#define ROW(j)                                                                            \
    if (j < nx)                                                                           \
        out[j] = _mm512_reduce_add_ps(other_set(nx) ? _mm512_add_ps(acc[0][j], acc[1][j]) \
                                                    : acc[0][j]);
    EACH_ROW(ROW)
#undef ROW
}

INLINE float f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

// 32 bytes at a in the low half, 32 at b in the high half (zeros when two is 0).
INLINE __m512i load_2x32(const void *a, const void *b, int two)
{
    __m256i lo = _mm256_loadu_si256((const __m256i *)a);
    if (!two)
        return _mm512_zextsi256_si512(lo);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)b),
                              1);
}

// a in lanes 0..7, b in lanes 8..15.
INLINE __m512 pair_ps(float a, float b)
{
    return _mm512_mask_mov_ps(_mm512_set1_ps(a), 0xFF00, _mm512_set1_ps(b));
}

// The activation scales of blocks a[0] and a[1] (a[0]'s alone when two is 0).
INLINE __m512 act_scales(const struct tw_q8_act *a, int two)
{
    return two ? pair_ps(a[0].d, a[1].d) : _mm512_set1_ps(a[0].d);
}

// float(sum4 |w| * (xq with w's sign)) lane by lane, for signed weights w (64 int8) and
// activation bytes xq: activations are never -128, so the sign flip is exact; |w| = 128 reads
// as unsigned 128. (|w| and w's sign are common subexpressions across activation rows.)
INLINE __m512 signed_dot(__m512i w, __m512i xq)
{
    const __m512i z = _mm512_setzero_si512();
    xq = _mm512_mask_sub_epi8(xq, _mm512_movepi8_mask(w), z, xq);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, _mm512_abs_epi8(w), xq));
}

// Signed weights w (64 int8) with lane factors dw, against activation blocks i, i + 1 of each
// row: acc[s][j] += signed_dot(w, x) * dw * d_x.
INLINE void signed_step(accs acc, int s, __m512i w, __m512 dw, const struct tw_q8_act *x, size_t i,
                        size_t ldx, int nx, int two)
{
#define ROW(j)                                                                            \
    if (j < nx) {                                                                         \
        const struct tw_q8_act *a = x + (size_t)(j)*ldx + i;                              \
        __m512 p = signed_dot(w, load_2x32(a[0].qs, a[1].qs, two));                       \
        acc[s][j] = _mm512_fmadd_ps(p, _mm512_mul_ps(dw, act_scales(a, two)), acc[s][j]); \
    }
    EACH_ROW(ROW)
#undef ROW
}

// ---- Q8_0 and Q4_0: two blocks a step.

// The signed weights of blocks i, i + 1 (block i's alone when two is 0) and their scales.
INLINE __m512i q8_0_weights(const struct tw_block_q8_0 *b, size_t i, int two, __m512 *dw)
{
    *dw = two ? pair_ps(f16(b[i].d), f16(b[i + 1].d)) : _mm512_set1_ps(f16(b[i].d));
    return load_2x32(b[i].qs, b[i + two].qs, two);
}

// The nibbles of blocks b0 (lanes 0..7) and b1 (8..15; zeros when b1 is NULL), each block's
// low nibbles (elements 0..15) before its high ones (16..31).
INLINE __m512i q4_0_qs_of(const struct tw_block_q4_0 *b0, const struct tw_block_q4_0 *b1)
{
    __m128i q0 = _mm_loadu_si128((const __m128i *)b0->qs);
    __m512i v = b1 ? _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(q0), 0xFF00,
                                                 _mm_loadu_si128((const __m128i *)b1->qs))
                   : _mm512_maskz_broadcast_i32x4(0x00FF, q0);
    return _mm512_and_si512(_mm512_mask_blend_epi64(0xCC, v, _mm512_srli_epi16(v, 4)),
                            _mm512_set1_epi8(0x0F));
}

// Block i's 16 bytes in 128-bit lanes 0 and 1, block i + 1's in lanes 2 and 3; lanes 1 and 3
// take the high nibbles (elements 16..31), giving the nibbles q (0..15) in element order
// (zero past block i when two is 0).
INLINE __m512i q4_0_qs(const struct tw_block_q4_0 *b, size_t i, int two)
{
    return q4_0_qs_of(b + i, two ? b + i + 1 : NULL);
}

// The same, and the blocks' scales in lanes 0..7 and 8..15 (*dw).
INLINE __m512i q4_0_nibbles(const struct tw_block_q4_0 *b, size_t i, int two, __m512 *dw)
{
    *dw = two ? pair_ps(f16(b[i].d), f16(b[i + 1].d)) : _mm512_set1_ps(f16(b[i].d));
    return q4_0_qs(b, i, two);
}

// The signed weights q - 8.
INLINE __m512i q4_0_weights(const struct tw_block_q4_0 *b, size_t i, int two, __m512 *dw)
{
    return _mm512_sub_epi8(q4_0_nibbles(b, i, two, dw), _mm512_set1_epi8(8));
}

#define BLOCK32_STEP(name, btype)                                                                 \
    INLINE void name##_step(accs acc, int s, const btype *b, const struct tw_q8_act *x, size_t i, \
                            size_t ldx, int nx, int two)                                          \
    {                                                                                             \
        __m512 dw;                                                                                \
        __m512i w = name##_weights(b, i, two, &dw);                                               \
        signed_step(acc, s, w, dw, x, i, ldx, nx, two);                                           \
    }

BLOCK32_STEP(q8_0, struct tw_block_q8_0)
BLOCK32_STEP(q4_0, struct tw_block_q4_0)

#define BLOCK32_NX(name, btype)                                                           \
    INLINE void name##_nx(const void *row, const struct tw_q8_act *x, size_t ldx, int nx, \
                          size_t n, float *out)                                           \
    {                                                                                     \
        const btype *b = row;                                                             \
        size_t nb = n / 32, i = 0;                                                        \
        accs acc;                                                                         \
        acc_zero(acc, nx);                                                                \
        for (; i + 4 <= nb; i += 4) {                                                     \
            tw_dot_prefetch_l1(b + i, 4 * sizeof *b);                                     \
            name##_step(acc, 0, b, x, i, ldx, nx, 1);                                     \
            name##_step(acc, other_set(nx), b, x, i + 2, ldx, nx, 1);                     \
        }                                                                                 \
        if (i + 2 <= nb) {                                                                \
            name##_step(acc, 0, b, x, i, ldx, nx, 1);                                     \
            i += 2;                                                                       \
        }                                                                                 \
        if (i < nb)                                                                       \
            name##_step(acc, other_set(nx), b, x, i, ldx, nx, 0);                         \
        acc_store(acc, nx, out);                                                          \
    }

BLOCK32_NX(q8_0, struct tw_block_q8_0)
BLOCK32_NX(q4_0, struct tw_block_q4_0)

// ---- Q4_K: a block is four steps of 64 weights (the low and high nibbles of 32 bytes of qs:
// sub-blocks 2c and 2c + 1). Per sub-block, d * sc * sum(q x) - dmin * m * sum(x), times d_x;
// the sums of x come from a second vpdpbusd against bytes of 1.

// f: d * sc[k] in lanes k < 8, dmin * m[k - 8] in lanes 8..15. The 6-bit fields are unpacked
// four at a time from the three little-endian words of scales (dtype.h's tw_q4_k_scale_min) in
// general registers; the eight scales and the eight mins reach the vector unit as two 8-byte
// words widened to dwords, d and dmin by one conversion of the block's first 8 bytes. (Through
// memory instead, stored and loaded back, it ran at 0.4-0.8 times the speed on the development
// VM: the loads wait on the stores.)
INLINE __m512 q4_k_factors(const struct tw_block_q4_k *b)
{
    uint32_t u[3];
    memcpy(u, b->scales, sizeof u);
    uint32_t sc_lo = u[0] & 0x3F3F3F3Fu, m_lo = u[1] & 0x3F3F3F3Fu;
    uint32_t sc_hi = (u[2] & 0x0F0F0F0Fu) | ((u[0] >> 6 & 0x03030303u) << 4);
    uint32_t m_hi = (u[2] >> 4 & 0x0F0F0F0Fu) | ((u[1] >> 6 & 0x03030303u) << 4);
    uint64_t sm[2] = { sc_lo | (uint64_t)sc_hi << 32, m_lo | (uint64_t)m_hi << 32 };
    __m256i sc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&sm[0]));
    __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&sm[1]));
    __m512 f = _mm512_cvtepi32_ps(_mm512_inserti64x4(_mm512_castsi256_si512(sc), m, 1));
    // [d, dmin, ...] as floats, then d in lanes 0..7 and dmin in 8..15
    __m128 dd = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)b));
    __m512i idx = _mm512_mask_blend_epi32(0xFF00, _mm512_setzero_si512(), _mm512_set1_epi32(1));
    return _mm512_mul_ps(f, _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(dd)));
}

// Step c of block b, f its factors (q4_k_factors), against activation bytes xq whose
// four-byte sums are sx: d * sc * sum4(q x) - dmin * m * sx lane by lane (to be scaled by d_x).
INLINE __m512 q4_k_term(const struct tw_block_q4_k *b, __m512 f, int c, __m512i xq, __m512 sx)
{
    __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * c));
    __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(raw), _mm256_srli_epi16(raw, 4), 1);
    q = _mm512_and_si512(q, _mm512_set1_epi8(0x0F));
    // lanes 0..7 take sub-block 2c's factors, 8..15 sub-block 2c + 1's
    __m512i idx = _mm512_set_epi32(2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                   2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c, 2 * c, 2 * c, 2 * c,
                                   2 * c, 2 * c, 2 * c, 2 * c);
    __m512 dsc = _mm512_permutexvar_ps(idx, f);
    __m512 dm = _mm512_permutexvar_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(8)), f);
    __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xq));
    return _mm512_fmsub_ps(p, dsc, _mm512_mul_ps(sx, dm));
}

// The four-byte sums of activation bytes xq, as floats.
INLINE __m512 byte_sums(__m512i xq)
{
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), xq);
    return _mm512_cvtepi32_ps(s);
}

INLINE void q4_k_step(accs acc, int c, const struct tw_block_q4_k *b, __m512 f,
                      const struct tw_q8_act *x, size_t ldx, int nx)
{
    int s = c & other_set(nx);
#define ROW(j)                                                       \
    if (j < nx) {                                                    \
        const struct tw_q8_act *a = x + (size_t)(j)*ldx + 2 * c;     \
        __m512i xq = load_2x32(a[0].qs, a[1].qs, 1);                 \
        __m512 t = q4_k_term(b, f, c, xq, byte_sums(xq));            \
        acc[s][j] = _mm512_fmadd_ps(t, act_scales(a, 1), acc[s][j]); \
    }
    EACH_ROW(ROW)
#undef ROW
}

INLINE void q4_k_nx(const void *row, const struct tw_q8_act *x, size_t ldx, int nx, size_t n,
                    float *out)
{
    const struct tw_block_q4_k *b = row;
    accs acc;
    acc_zero(acc, nx);
    for (size_t i = 0; i < n / TW_QK_K; i++, b++, x += 8) {
        tw_dot_prefetch_l1(b, sizeof *b);
        __m512 f = q4_k_factors(b);
        q4_k_step(acc, 0, b, f, x, ldx, nx);
        q4_k_step(acc, 1, b, f, x, ldx, nx);
        q4_k_step(acc, 2, b, f, x, ldx, nx);
        q4_k_step(acc, 3, b, f, x, ldx, nx);
    }
    acc_store(acc, nx, out);
}

// ---- Q6_K: a half of 128 weights is two steps of 64: qa (elements 0..63 of the half: low
// nibbles of ql[0..63] with bits 0-1 / 2-3 of qh) and qb (64..127: high nibbles, bits 4-5 /
// 6-7), each signed as q - 32. Lane k of a step covers four weights of one sub-block of 16:
// its factor is d * scales[8h + k / 4] (qa) or d * scales[8h + 4 + k / 4] (qb).

INLINE void q6_k_half(accs acc, int h, const struct tw_block_q6_k *b, __m512 f,
                      const struct tw_q8_act *x, size_t ldx, int nx)
{
    const __m512i m0f = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i k32 = _mm512_set1_epi8(32);
    __m512i l = load_2x32(b->ql + 64 * h, b->ql + 64 * h + 32, 1);
    __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
    // 16-bit shifts: bits that cross into the other byte fall outside 0x30.
    __m512i sa = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4),
            sb = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    sa = _mm512_or_si512(sa, _mm512_slli_epi64(sa, 16));
    sa = _mm512_or_si512(sa, _mm512_slli_epi64(sa, 32));
    sb = _mm512_or_si512(sb, _mm512_slli_epi64(sb, 16));
    sb = _mm512_or_si512(sb, _mm512_slli_epi64(sb, 32));
    // a | (b & c) is ternary logic 0xF8
    __m512i qa =
        _mm512_ternarylogic_epi32(_mm512_and_si512(l, m0f), _mm512_sllv_epi16(hb, sa), m30, 0xF8);
    __m512i qb = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(l, 4), m0f),
                                           _mm512_srlv_epi16(hb, sb), m30, 0xF8);
    __m512i ia = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    ia = _mm512_add_epi32(ia, _mm512_set1_epi32(8 * h));
    __m512 fa = _mm512_permutexvar_ps(ia, f);
    __m512 fb = _mm512_permutexvar_ps(_mm512_add_epi32(ia, _mm512_set1_epi32(4)), f);
    signed_step(acc, 0, _mm512_sub_epi8(qa, k32), fa, x, 4 * h, ldx, nx, 1);
    signed_step(acc, other_set(nx), _mm512_sub_epi8(qb, k32), fb, x, 4 * h + 2, ldx, nx, 1);
}

INLINE void q6_k_nx(const void *row, const struct tw_q8_act *x, size_t ldx, int nx, size_t n,
                    float *out)
{
    const struct tw_block_q6_k *b = row;
    accs acc;
    acc_zero(acc, nx);
    for (size_t i = 0; i < n / TW_QK_K; i++, b++, x += 8) {
        tw_dot_prefetch_l1(b, sizeof *b);
        __m512 sc =
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales)));
        __m512 f = _mm512_mul_ps(sc, _mm512_set1_ps(f16(b->d)));
        q6_k_half(acc, 0, b, f, x, ldx, nx);
        q6_k_half(acc, 1, b, f, x, ldx, nx);
    }
    acc_store(acc, nx, out);
}

// ---- several weight rows against one activation row (tw_qdot_rows_fn): the activations'
// side of a step (their bytes, scales and byte sums) is loaded once for all the rows, which
// take the places of the activation rows in acc[s][r]; the rows' sums are reduced together.

INLINE void acc_store_rows(accs acc, int nw, float *out)
{
    __m512 a[TW_QDOT_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < TW_QDOT_ROWS; r++)
        a[r] = r < nw ? _mm512_add_ps(acc[0][r], acc[1][r]) : _mm512_setzero_ps();
    // per 128-bit lane: the sums of rows 0 and 1 interleaved (2 and 3), then rows 0..3 in order
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
    __m512d lo = _mm512_unpacklo_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23));
    __m512d hi = _mm512_unpackhi_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23));
    __m512 t = _mm512_add_ps(_mm512_castpd_ps(lo), _mm512_castpd_ps(hi));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(t),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1)));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_mask_storeu_ps(out, (__mmask8)((1u << nw) - 1), q);
}

// Row r of a q4_0 step: blocks i, i + 1 against xq, the
// unsigned nibbles straight into vpdpbusd and their offset of 8 taken off with sx8 (8 times
// the sums of xq by four bytes, once for all the rows): the same integers as signed_dot's.
#define Q4_0_ROW(r)                                                                           \
    if (r < nw) {                                                                             \
        const struct tw_block_q4_0 *b =                                                       \
            (const struct tw_block_q4_0 *)((const char *)w + (size_t)(r)*ldw);                \
        __m512 dw;                                                                            \
        __m512i q = q4_0_nibbles(b, i, two, &dw);                                             \
        __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q, xq), sx8);                     \
        acc[s][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw, dx), acc[s][r]); \
    }

// 8 times the sums of the activation bytes xq by four (the unsigned nibbles' offset of 8).
INLINE __m512i offset8(__m512i xq)
{
    const __m512i z = _mm512_setzero_si512();
    return _mm512_slli_epi32(_mm512_dpbusd_epi32(z, _mm512_set1_epi8(1), xq), 3);
}

INLINE void q4_0_rows_step(accs acc, int s, const void *w, size_t ldw, int nw,
                           const struct tw_q8_act *x, size_t i, int two)
{
    const __m512i z = _mm512_setzero_si512();
    __m512i xq = load_2x32(x[i].qs, x[i + two].qs, two);
    __m512i sx8 = offset8(xq);
    __m512 dx = act_scales(x + i, two);
    Q4_0_ROW(0)
    Q4_0_ROW(1)
    Q4_0_ROW(2)
    Q4_0_ROW(3)
}

// The fp16 scales of eight q4_0 blocks (144 bytes; the scales lie in the first 128, at words
// 9j) from those 128 bytes, lo and hi, in words 0..7: one two-register word permute.
INLINE __m128i q4_0_scale_words(__m512i lo, __m512i hi)
{
    const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 63 << 16 | 54,
                                         45 << 16 | 36, 27 << 16 | 18, 9 << 16 | 0);
    return _mm512_castsi512_si128(_mm512_permutex2var_epi16(lo, idx, hi));
}

// The same from the blocks at b, as floats in lanes 0..7.
INLINE __m256 q4_0_scales8(const struct tw_block_q4_0 *b)
{
    return _mm256_cvtph_ps(
        q4_0_scale_words(_mm512_loadu_si512(b), _mm512_loadu_si512((const char *)b + 64)));
}

// The scales of the eight activation blocks from x, in lanes 0..7 (36 bytes apart: 9 floats).
INLINE __m256 act_scales8(const struct tw_q8_act *x)
{
    return _mm256_i32gather_ps(&x->d, _mm256_setr_epi32(0, 9, 18, 27, 36, 45, 54, 63), 4);
}

// Lanes 0..7 of f8 (a group's eight factors) broadcast as step c's: factor 2c in lanes 0..7,
// 2c + 1 in 8..15.
INLINE __m512 step_factors(__m512 f8, int c)
{
    __m512i idx =
        _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * c), _mm512_set1_epi32(2 * c + 1));
    return _mm512_permutexvar_ps(idx, f8);
}

// A group of eight blocks from block i of row r: the rows' factors dw * dx taken once a group
// (q4_0_scales8) instead of twice a step, then four steps as Q4_0_ROW's.
#define Q4_0_GROUP_FACTORS(r)                                                      \
    if (r < nw) {                                                                  \
        const struct tw_block_q4_0 *b =                                            \
            (const struct tw_block_q4_0 *)((const char *)w + (size_t)(r)*ldw) + i; \
        tw_dot_prefetch_l1(b, 8 * sizeof *b);                                      \
        f[r] = _mm512_castps256_ps512(_mm256_mul_ps(q4_0_scales8(b), dx8));        \
    }
#define Q4_0_GROUP_ROW(r)                                                                        \
    if (r < nw) {                                                                                \
        const struct tw_block_q4_0 *b =                                                          \
            (const struct tw_block_q4_0 *)((const char *)w + (size_t)(r)*ldw);                   \
        __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q4_0_qs(b, i + 2 * c, 1), xq), sx8); \
        acc[c & 1][r] =                                                                          \
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), step_factors(f[r], c), acc[c & 1][r]);        \
    }

// The multi-row kernel name##_rows_nw over groups of eight blocks: per group each row's
// factors (FACTORS(r): f[r], lanes 0..7 from the activations' scales dx8), then four steps of
// two blocks, the activations' bytes xq loaded once (and what STEP_X derives from them) for
// every row's ROW(r); the blocks past the last group through name##_rows_step.
#define GROUPED_ROWS_NW(name, FACTORS, STEP_X, ROW)                                          \
    INLINE void name##_rows_nw(const void *w, size_t ldw, int nw, const struct tw_q8_act *x, \
                               size_t n, float *out)                                         \
    {                                                                                        \
        size_t nb = n / 32, i = 0;                                                           \
        accs acc;                                                                            \
        acc_zero(acc, nw);                                                                   \
        for (; i + 8 <= nb; i += 8) {                                                        \
            __m256 dx8 = act_scales8(x + i);                                                 \
            __m512 f[TW_QDOT_ROWS];                                                          \
            FACTORS(0)                                                                       \
            FACTORS(1)                                                                       \
            FACTORS(2)                                                                       \
            FACTORS(3)                                                                       \
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)                              \
            {                                                                                \
                __m512i xq = load_2x32(x[i + 2 * c].qs, x[i + 2 * c + 1].qs, 1);             \
                STEP_X                                                                       \
                ROW(0)                                                                       \
                ROW(1)                                                                       \
                ROW(2)                                                                       \
                ROW(3)                                                                       \
            }                                                                                \
        }                                                                                    \
        for (; i + 2 <= nb; i += 2)                                                          \
            name##_rows_step(acc, 0, w, ldw, nw, x, i, 1);                                   \
        if (i < nb)                                                                          \
            name##_rows_step(acc, 1, w, ldw, nw, x, i, 0);                                   \
        acc_store_rows(acc, nw, out);                                                        \
    }

GROUPED_ROWS_NW(q4_0, Q4_0_GROUP_FACTORS, const __m512i z = _mm512_setzero_si512();
                __m512i sx8 = offset8(xq);, Q4_0_GROUP_ROW)

// Row r's block i: its factors, then the prefetch of its stream.
#define Q4_K_FACTORS(r)                                                               \
    if (r < nw) {                                                                     \
        b[r] = (const struct tw_block_q4_k *)((const char *)w + (size_t)(r)*ldw) + i; \
        tw_dot_prefetch_l1(b[r], sizeof *b[r]);                                       \
        f[r] = q4_k_factors(b[r]);                                                    \
    }
#define Q4_K_ROW(r) \
    if (r < nw)     \
        acc[c & 1][r] = _mm512_fmadd_ps(q4_k_term(b[r], f[r], c, xq, sx), dx, acc[c & 1][r]);

INLINE void q4_k_rows_nw(const void *w, size_t ldw, int nw, const struct tw_q8_act *x, size_t n,
                         float *out)
{
    accs acc;
    acc_zero(acc, nw);
    for (size_t i = 0; i < n / TW_QK_K; i++, x += 8) {
        const struct tw_block_q4_k *b[TW_QDOT_ROWS];
        __m512 f[TW_QDOT_ROWS];
        Q4_K_FACTORS(0);
        Q4_K_FACTORS(1);
        Q4_K_FACTORS(2);
        Q4_K_FACTORS(3);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i xq = load_2x32(x[2 * c].qs, x[2 * c + 1].qs, 1);
            __m512 sx = byte_sums(xq), dx = act_scales(x + 2 * c, 1);
            Q4_K_ROW(0);
            Q4_K_ROW(1);
            Q4_K_ROW(2);
            Q4_K_ROW(3);
        }
    }
    acc_store_rows(acc, nw, out);
}

// ---- one function per tile height (as in cpu_dot_avx512.c), and the dispatch on nx.

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

// The multi-row kernels: one function per row count.
#define ROWS_NW(name, k)                                                            \
    TARGET __attribute__((noinline)) static void name##_rows_##k(                   \
        const void *w, size_t ldw, const struct tw_q8_act *x, size_t n, float *out) \
    {                                                                               \
        name##_rows_nw(w, ldw, k, x, n, out);                                       \
    }

#define ROWS_KERNEL(name)                                                                      \
    ROWS_NW(name, 1)                                                                           \
    ROWS_NW(name, 2)                                                                           \
    ROWS_NW(name, 3)                                                                           \
    ROWS_NW(name, 4)                                                                           \
    static void qdot_rows_##name(const void *w, size_t ldw, int nw, const struct tw_q8_act *x, \
                                 size_t n, float *out)                                         \
    {                                                                                          \
        static void (*const fns[TW_QDOT_ROWS + 1])(                                            \
            const void *, size_t, const struct tw_q8_act *, size_t,                            \
            float *) = { NULL, name##_rows_1, name##_rows_2, name##_rows_3, name##_rows_4 };   \
        fns[nw](w, ldw, x, n, out);                                                            \
    }

ROWS_KERNEL(q4_0)
ROWS_KERNEL(q4_k)

// The high nibbles of 64 bytes: a shift and a mask, or with GFNI one affine transform (the
// matrix's row i, byte 7 - i, takes bit i + 4 to bit i for i < 4; rows 4..7 are 0).
#define HI_SHIFT(v) _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F))
#define HI_GFNI(v)  _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(0x1020408000000000LL), 0)

// The kernels with GFNI's affine transform (a CPU with AVX-512 VNNI and GFNI).
#define TARGET_GFNI \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,gfni")))

// The sub-blocks of a group of 256 whose activations are the packed row's 64 bytes c (slots 2c
// and 2c + 1, cpu_qdot.h): the packed kernels' step c takes these blocks of 32.
#define STEP_SUB0(c) TW_Q8K_SLOT(2 * (c))
#define STEP_SUB1(c) TW_Q8K_SLOT(2 * (c) + 1)

// The packed kernels' step c: p, the integer sums of its 64 elements by four (lanes 0..7:
// sub-block STEP_SUB0(c)), times fv's lanes of its sub-blocks, into acc. (The permutes' indices
// from a table: built in registers they took vector operations every call.)
#define STEP_IDX(c)                                                                             \
    {                                                                                           \
        STEP_SUB0(c), STEP_SUB0(c), STEP_SUB0(c), STEP_SUB0(c), STEP_SUB0(c), STEP_SUB0(c),     \
            STEP_SUB0(c), STEP_SUB0(c), STEP_SUB1(c), STEP_SUB1(c), STEP_SUB1(c), STEP_SUB1(c), \
            STEP_SUB1(c), STEP_SUB1(c), STEP_SUB1(c), STEP_SUB1(c)                              \
    }
static const int32_t step_idx[4][16]
    __attribute__((aligned(64))) = { STEP_IDX(0), STEP_IDX(1), STEP_IDX(2), STEP_IDX(3) };

INLINE __m512 packed_fma(__m512 acc, int c, __m512 p, __m512 fv)
{
    __m512 f = _mm512_permutexvar_ps(_mm512_load_si512(step_idx[c]), fv);
    return _mm512_fmadd_ps(p, f, acc);
}

// The same for unsigned nibbles q against the activations' bytes.
INLINE __m512 packed_step(__m512 acc, int c, __m512i q, const struct tw_q8k_act *x, __m512 fv)
{
    __m512i xq = _mm512_loadu_si512(x->qs + 64 * c);
    __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, xq));
    return packed_fma(acc, c, p, fv);
}

// Eight floats in lanes 0..7 and again in 8..15.
INLINE __m512 dup8(__m256 d8)
{
    __m512d lo = _mm512_castpd256_pd512(_mm256_castps_pd(d8));
    return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(d8), 1));
}

// The fp16 scales of eight consecutive q8_0 blocks at b (34 bytes apart), as floats in lanes
// 0..7. (Two-register word permutes of the 256 bytes they span were 5 % slower from L2 on the
// development VM; q4_0's 128 bytes take one, q4_0_scales8, 9 % faster than this.)
INLINE __m256 q8_0_scales8(const struct tw_block_q8_0 *b)
{
    uint16_t h[8];
    for (int j = 0; j < 8; j++)
        memcpy(&h[j], &b[j].d, sizeof h[j]);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

// Q4_K against packed activations: per block, f * v gives d*sc_j*d_j (lanes 0..7) and
// dmin*m_j * d_j*sum(q_j) (lanes 8..15, the min terms, summed once a block); per 64 bytes of
// nibbles (128 weights: sub-blocks 4h and 4h + 2 in the low nibbles, 4h + 1 and 4h + 3 in the
// high ones, as the packed activations lie) one load, the nibbles unmasked (and; shift and and,
// or one GFNI affine transform), and per 64 weights one vpdpbusd, a conversion, a permute of
// the block's factors and an FMA.
#define Q4_K_PACKED_KERNEL(name, ATTR, HI)                                                       \
    ATTR __attribute__((noinline)) static void name(const void *row, const struct tw_q8k_act *x, \
                                                    size_t n, float *out)                        \
    {                                                                                            \
        const struct tw_block_q4_k *b = row;                                                     \
        __m512 acc[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() };                            \
        __m512 accm = _mm512_setzero_ps();                                                       \
        for (size_t i = 0; i < n / TW_QK_K; i++, b++, x++) {                                     \
            tw_dot_prefetch_l1(b, sizeof *b);                                                    \
            __m512 fv = _mm512_mul_ps(q4_k_factors(b), _mm512_loadu_ps(x->v));                   \
            accm = _mm512_mask_add_ps(accm, 0xFF00, accm, fv);                                   \
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)                                  \
            {                                                                                    \
                __m512i v = _mm512_loadu_si512(b->qs + 64 * h);                                  \
                __m512i lo = _mm512_and_si512(v, _mm512_set1_epi8(0x0F)), hi = HI(v);            \
                acc[0] = packed_step(acc[0], 2 * h, lo, x, fv);                                  \
                acc[1] = packed_step(acc[1], 2 * h + 1, hi, x, fv);                              \
            }                                                                                    \
        }                                                                                        \
        *out = _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(acc[0], acc[1]), accm));         \
    }

Q4_K_PACKED_KERNEL(qdot_k_q4_k, TARGET, HI_SHIFT)
Q4_K_PACKED_KERNEL(qdot_k_q4_k_gfni, TARGET_GFNI, HI_GFNI)

// Q4_0 against packed activations (n a multiple of 256): per group of eight blocks, their
// scales dw_j times v give dw_j * d_j (lanes 0..7) and 8 * dw_j * d_j * sum(q_j) (lanes
// 8..15: the offset of 8 that the unsigned nibbles carry, taken off once a group); per two
// blocks one vpdpbusd of the nibbles, a conversion, a permute and an FMA.
TARGET __attribute__((noinline)) static void
qdot_k_q4_0(const void *row, const struct tw_q8k_act *x, size_t n, float *out)
{
    const struct tw_block_q4_0 *b = row;
    const __m512 eight_hi = _mm512_mask_mov_ps(_mm512_set1_ps(1.0f), 0xFF00, _mm512_set1_ps(8.0f));
    __m512 acc[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() }, accm = _mm512_setzero_ps();
    for (size_t g = 0; g < n / 256; g++, b += 8, x++) {
        tw_dot_prefetch_l1(b, 8 * sizeof *b);
        __m512 dw = dup8(q4_0_scales8(b));
        __m512 fv = _mm512_mul_ps(_mm512_mul_ps(dw, eight_hi), _mm512_loadu_ps(x->v));
        accm = _mm512_mask_add_ps(accm, 0xFF00, accm, fv);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            acc[c % 2] =
                packed_step(acc[c % 2], c, q4_0_qs_of(b + STEP_SUB0(c), b + STEP_SUB1(c)), x, fv);
    }
    *out = _mm512_reduce_add_ps(_mm512_sub_ps(_mm512_add_ps(acc[0], acc[1]), accm));
}

// Q8_0 against packed activations (n a multiple of 256): per group of eight blocks, their
// scales times v (lanes 0..7: dw_j * d_j); per two blocks the signed products (signed_dot),
// a permute and an FMA.
TARGET __attribute__((noinline)) static void
qdot_k_q8_0(const void *row, const struct tw_q8k_act *x, size_t n, float *out)
{
    const struct tw_block_q8_0 *b = row;
    __m512 acc[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() };
    for (size_t g = 0; g < n / 256; g++, b += 8, x++) {
        tw_dot_prefetch_l1(b, 8 * sizeof *b);
        __m512 fv = _mm512_mul_ps(dup8(q8_0_scales8(b)), _mm512_loadu_ps(x->v));
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i w = load_2x32(b[STEP_SUB0(c)].qs, b[STEP_SUB1(c)].qs, 1);
            __m512 p = signed_dot(w, _mm512_loadu_si512(x->qs + 64 * c));
            acc[c % 2] = packed_fma(acc[c % 2], c, p, fv);
        }
    }
    *out = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

// Q8_0, several rows against one activation row: per group of eight blocks the rows' factors
// dw * dx once (q8_0_scales8), then per step of two blocks the activations' bytes loaded once
// for all the rows and each row's signed products.
#define Q8_0_GROUP_FACTORS(r)                                                      \
    if (r < nw) {                                                                  \
        const struct tw_block_q8_0 *b =                                            \
            (const struct tw_block_q8_0 *)((const char *)w + (size_t)(r)*ldw) + i; \
        tw_dot_prefetch_l1(b, 8 * sizeof *b);                                      \
        f[r] = _mm512_castps256_ps512(_mm256_mul_ps(q8_0_scales8(b), dx8));        \
    }
#define Q8_0_GROUP_ROW(r)                                                                  \
    if (r < nw) {                                                                          \
        const struct tw_block_q8_0 *b =                                                    \
            (const struct tw_block_q8_0 *)((const char *)w + (size_t)(r)*ldw) + i + 2 * c; \
        __m512 p = signed_dot(load_2x32(b[0].qs, b[1].qs, 1), xq);                         \
        acc[c & 1][r] = _mm512_fmadd_ps(p, step_factors(f[r], c), acc[c & 1][r]);          \
    }
#define Q8_0_ROW(r)                                                                          \
    if (r < nw) {                                                                            \
        __m512 dw;                                                                           \
        __m512i q = q8_0_weights(                                                            \
            (const struct tw_block_q8_0 *)((const char *)w + (size_t)(r)*ldw), i, two, &dw); \
        acc[s][r] = _mm512_fmadd_ps(signed_dot(q, xq), _mm512_mul_ps(dw, dx), acc[s][r]);    \
    }

INLINE void q8_0_rows_step(accs acc, int s, const void *w, size_t ldw, int nw,
                           const struct tw_q8_act *x, size_t i, int two)
{
    __m512i xq = load_2x32(x[i].qs, x[i + two].qs, two);
    __m512 dx = act_scales(x + i, two);
    Q8_0_ROW(0)
    Q8_0_ROW(1)
    Q8_0_ROW(2)
    Q8_0_ROW(3)
}

GROUPED_ROWS_NW(q8_0, Q8_0_GROUP_FACTORS, , Q8_0_GROUP_ROW)

ROWS_KERNEL(q8_0)

// Q4_0 against activations laid out as the row's bytes (tw_q40m), a group of 32 blocks (576
// bytes, nine stretches of 64) at a time: the blocks' factors dw * dx first, 16 to a register
// (four word permutes pick the 32 scales out of the bytes, q4_0_scale_words); then per 64 bytes
// the nibbles unmasked in place (and, shift, and), two vpdpbusd into the lanes' offsets, the
// lanes' factors by one permute of the two factor registers (q40m_blk: lane l of stretch c
// holds quants of block (64c + 4l) / 18), a conversion and an FMA.
#define Q40M_BLK(c, l) ((64 * (c) + 4 * (l)) / 18)
#define Q40M_ROW(c)                                                                              \
    {                                                                                            \
        Q40M_BLK(c, 0), Q40M_BLK(c, 1), Q40M_BLK(c, 2), Q40M_BLK(c, 3), Q40M_BLK(c, 4),          \
            Q40M_BLK(c, 5), Q40M_BLK(c, 6), Q40M_BLK(c, 7), Q40M_BLK(c, 8), Q40M_BLK(c, 9),      \
            Q40M_BLK(c, 10), Q40M_BLK(c, 11), Q40M_BLK(c, 12), Q40M_BLK(c, 13), Q40M_BLK(c, 14), \
            Q40M_BLK(c, 15)                                                                      \
    }
static const int32_t q40m_blk[9][16] __attribute__((aligned(64))) = {
    Q40M_ROW(0), Q40M_ROW(1), Q40M_ROW(2), Q40M_ROW(3), Q40M_ROW(4),
    Q40M_ROW(5), Q40M_ROW(6), Q40M_ROW(7), Q40M_ROW(8),
};

// 64 bytes at w + off of which the first rem - off are the row's (the rest read as 0).
#define Q40M_LOAD(w, off, rem)                             \
    ((off) + 64 <= (rem) ? _mm512_loadu_si512((w) + (off)) \
     : (off) >= (rem)                                      \
         ? _mm512_setzero_si512()                          \
         : _mm512_maskz_loadu_epi8(((__mmask64)1 << ((rem) - (off))) - 1, (w) + (off)))

// name##_group (the group of 32 blocks at w, of which rem bytes are the row's: the last
// group of a row may be short) and name (a row), the high nibbles by HI.
#define Q40M_KERNEL(name, ATTR, HI)                                                            \
    static inline __attribute__((always_inline))                                               \
    ATTR void name##_group(__m512 acc[2], const char *w, size_t rem, const struct tw_q40m *x)  \
    {                                                                                          \
        __m128i s8[4]; /* the scales of blocks 8k .. 8k + 7 */                                 \
        for (int k = 0; k < 4; k++)                                                            \
            s8[k] = q4_0_scale_words(Q40M_LOAD(w, 144 * (size_t)k, rem),                       \
                                     Q40M_LOAD(w, 144 * (size_t)k + 64, rem));                 \
        __m512 f0 =                                                                            \
            _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(s8[0]), s8[1], 1)); \
        __m512 f1 =                                                                            \
            _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(s8[2]), s8[3], 1)); \
        f0 = _mm512_mul_ps(f0, _mm512_load_ps(x->d));                                          \
        f1 = _mm512_mul_ps(f1, _mm512_load_ps(x->d + 16));                                     \
        _Pragma("GCC unroll 9") for (int c = 0; c < 9; c++)                                    \
        {                                                                                      \
            if (64 * (size_t)c < rem) { /* (a short group: its stretches only) */              \
                __m512i cur = Q40M_LOAD(w, 64 * (size_t)c, rem);                               \
                __m512i lo = _mm512_and_si512(cur, _mm512_set1_epi8(0x0F)), hi = HI(cur);      \
                __m512i p = _mm512_dpbusd_epi32(_mm512_load_si512(x->off + 16 * c), lo,        \
                                                _mm512_load_si512(x->lo + 64 * c));            \
                p = _mm512_dpbusd_epi32(p, hi, _mm512_load_si512(x->hi + 64 * c));             \
                __m512 f = _mm512_permutex2var_ps(f0, _mm512_load_si512(q40m_blk[c]), f1);     \
                acc[c & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), f, acc[c & 1]);            \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    ATTR __attribute__((noinline)) static void name(const void *row, const struct tw_q40m *x,  \
                                                    size_t n, float *out)                      \
    {                                                                                          \
        const char *w = row;                                                                   \
        size_t kb = n / 32, g = 0;                                                             \
        __m512 acc[2] = { _mm512_setzero_ps(), _mm512_setzero_ps() };                          \
        for (; (g + 1) * TW_Q40M_BLOCKS <= kb; g++) {                                          \
            tw_dot_prefetch_l1(w + g * TW_Q40M_BYTES, TW_Q40M_BYTES);                          \
            name##_group(acc, w + g * TW_Q40M_BYTES, TW_Q40M_BYTES, x + g);                    \
        }                                                                                      \
        if (g * TW_Q40M_BLOCKS < kb)                                                           \
            name##_group(acc, w + g * TW_Q40M_BYTES,                                           \
                         (kb - g * TW_Q40M_BLOCKS) * sizeof(struct tw_block_q4_0), x + g);     \
        *out = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));                            \
    }

Q40M_KERNEL(qdot_m_q4_0, TARGET, HI_SHIFT)
Q40M_KERNEL(qdot_m_q4_0_gfni, TARGET_GFNI, HI_GFNI)

tw_qdot_m_fn tw_qdot_m_kernel_avx512(enum tw_dtype t, bool gfni)
{
    if (t != TW_DTYPE_Q4_0)
        return NULL;
    return gfni ? qdot_m_q4_0_gfni : qdot_m_q4_0;
}

tw_qdot_k_fn tw_qdot_k_kernel_avx512(enum tw_dtype t, bool gfni)
{
    switch (t) {
    case TW_DTYPE_Q8_0:
        return qdot_k_q8_0;
    case TW_DTYPE_Q4_0:
        return qdot_k_q4_0;
    case TW_DTYPE_Q4_K:
        return gfni ? qdot_k_q4_k_gfni : qdot_k_q4_k;
    default:
        return NULL;
    }
}

tw_qdot_rows_fn tw_qdot_rows_kernel_avx512(enum tw_dtype t)
{
    switch (t) {
    case TW_DTYPE_Q8_0:
        return qdot_rows_q8_0;
    case TW_DTYPE_Q4_0:
        return qdot_rows_q4_0;
    case TW_DTYPE_Q4_K:
        return qdot_rows_q4_k;
    default:
        return NULL;
    }
}

tw_qdot_fn tw_qdot_kernel_avx512(enum tw_dtype t)
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

// ---- the quantizer: cpu_qdot.h's definition, the same float operations 16 lanes at a time
// (vcvtps2dq rounds half to even, as rintf does in the default rounding mode).

TARGET static void q8_act_quantize(const float *x, size_t n, struct tw_q8_act *out)
{
    for (size_t b = 0; b < n / TW_QK8_ACT; b++, x += TW_QK8_ACT) {
        __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        float a = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        if (a < TW_Q8_ACT_TINY)
            a = 0.0f;
        float id = a > 0.0f ? 127.0f / a : 0.0f;
        out[b].d = a / 127.0f;
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(id)));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(id)));
        _mm_storeu_si128((__m128i *)out[b].qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(out[b].qs + 16), _mm512_cvtepi32_epi8(q1));
    }
}

tw_q8_act_fn tw_q8_act_quantizer_avx512(void)
{
    return q8_act_quantize;
}

#else

tw_qdot_fn tw_qdot_kernel_avx512(enum tw_dtype t)
{
    (void)t;
    return NULL;
}

tw_qdot_rows_fn tw_qdot_rows_kernel_avx512(enum tw_dtype t)
{
    (void)t;
    return NULL;
}

tw_qdot_k_fn tw_qdot_k_kernel_avx512(enum tw_dtype t, bool gfni)
{
    (void)t, (void)gfni;
    return NULL;
}

tw_qdot_m_fn tw_qdot_m_kernel_avx512(enum tw_dtype t, bool gfni)
{
    (void)t, (void)gfni;
    return NULL;
}

tw_q8_act_fn tw_q8_act_quantizer_avx512(void)
{
    return NULL;
}

#endif

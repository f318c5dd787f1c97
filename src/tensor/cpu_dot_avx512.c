// The AVX-512 dot kernels of cpu_dot.h (F, BW, VL, with F16C for the fp16 scales), compiled
// with target attributes so that the file builds with default flags; cpu_dot.c calls them only
// on a CPU that has them. Each kernel decodes 32 weights at a time into two zmm registers,
// exactly to the floats of tw_dequantize_row, and FMAs them into the accumulators of every
// activation row, so the row is read from memory once for all of them.
#include "tensor/cpu_dot.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

// UBSan's pointer-overflow check on every address of the unrolled kernels multiplies clang's
// compile time of this file many times over (minutes in the sanitizer and fuzz builds); the
// accesses themselves are still checked by ASan, and the index arithmetic by the other checks.
#if defined(__clang__)
#define NO_PTR_CHECK __attribute__((no_sanitize("pointer-overflow")))
#else
#define NO_PTR_CHECK
#endif
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) NO_PTR_CHECK
#define INLINE static inline __attribute__((always_inline)) TARGET

#define NXMAX 8 // activation rows per pass over the weight row

#if defined(__SANITIZE_ADDRESS__)
#define TW_DOT_LEAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TW_DOT_LEAN 1
#endif
#endif
#ifndef TW_DOT_LEAN
#define TW_DOT_LEAN 0
#endif

// The accumulators acc[s][j][c]: set s, activation row j, chain c (the two halves of a piece
// of 32 weights). Consecutive pieces go to sets(nx) different sets, so that there are at least
// eight independent FMA chains (an FMA takes four or five cycles and two issue a cycle); the
// sets a tile height does not use are dropped by the compiler, as are the rows past nx.
#define SETS 4
typedef __m512 accs[SETS][NXMAX][2];

INLINE int sets(int nx)
{
    return nx == 1 ? 4 : nx <= 4 ? 2 : 1;
}

// Expands ROW(j) for the eight rows a tile can have; ROW guards its code with j < nx. The
// accumulators' indices are then constants in the source, which keeps them in registers without
// relying on the compiler to unroll loops before it breaks up the array (clang 14 does not).
#define EACH_ROW(ROW) ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)

INLINE void acc_store(accs acc, int nx, float *out)
{
    int ns = sets(nx);
#define ROW(j)                                                               \
    if (j < nx) {                                                            \
        __m512 a = _mm512_add_ps(acc[0][j][0], acc[0][j][1]);                \
        if (ns > 1)                                                          \
            a = _mm512_add_ps(a, _mm512_add_ps(acc[1][j][0], acc[1][j][1])); \
        if (ns > 2)                                                          \
            a = _mm512_add_ps(a, _mm512_add_ps(acc[2][j][0], acc[2][j][1])); \
        if (ns > 3)                                                          \
            a = _mm512_add_ps(a, _mm512_add_ps(acc[3][j][0], acc[3][j][1])); \
        out[j] = _mm512_reduce_add_ps(a);                                    \
    }
    EACH_ROW(ROW)
#undef ROW
}

// Piece number p of a loop (w0: weights 0..15, w1: 16..31) times x_j[0..31], added to the
// accumulators of its set, for j < nx.
INLINE void fma_piece(accs acc, int p, __m512 w0, __m512 w1, const float *x, size_t ldx, int nx)
{
    int s = p % sets(nx);
#define ROW(j)                                                                      \
    if (j < nx) {                                                                   \
        const float *xj = x + (size_t)(j)*ldx;                                      \
        acc[s][j][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xj), acc[s][j][0]);      \
        acc[s][j][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xj + 16), acc[s][j][1]); \
    }
    EACH_ROW(ROW)
#undef ROW
}

// Half c (0: weights 0..15, 1: 16..31) of piece number p, w, times x_j[0..15].
INLINE void fma_half(accs acc, int p, int c, __m512 w, const float *x, size_t ldx, int nx)
{
    int s = p % sets(nx);
#define ROW(j)  \
    if (j < nx) \
        acc[s][j][c] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + (size_t)(j)*ldx), acc[s][j][c]);
    EACH_ROW(ROW)
#undef ROW
}

// The same for the last piece of a float row, of fewer weights: m0 / m1 mask them.
INLINE void fma_piece_masked(accs acc, __m512 w0, __m512 w1, const float *x, size_t ldx, int nx,
                             __mmask16 m0, __mmask16 m1)
{
#define ROW(j)                                                                              \
    if (j < nx) {                                                                           \
        const float *xj = x + (size_t)(j)*ldx;                                              \
        __m512 x0 = _mm512_maskz_loadu_ps(m0, xj), x1 = _mm512_maskz_loadu_ps(m1, xj + 16); \
        acc[0][j][0] = _mm512_fmadd_ps(w0, x0, acc[0][j][0]);                               \
        acc[0][j][1] = _mm512_fmadd_ps(w1, x1, acc[0][j][1]);                               \
    }
    EACH_ROW(ROW)
#undef ROW
}

// v itself, but the compiler may not fuse the multiplication that made it with the
// subtraction that follows (GCC contracts a * b - c into one FMA by default; the decoded value
// must be rounded twice, as the reference rounds it).
INLINE __m512 unfused(__m512 v)
{
    __asm__("" : "+v"(v));
    return v;
}

// Makes the compiler read the 16 floats at p back from memory, as broadcast loads or memory
// operands, rather than take them apart from the register that wrote them (with shuffles,
// which are the scarce resource of these kernels).
#define FROM_MEMORY16(p) __asm__("" : "+m"(*(float(*)[16])(p)))

// Widens 16 bytes at p to 16 dwords, zero- or sign-extended.
INLINE __m512i u8x16(const void *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

INLINE __m512i i8x16(const void *p)
{
    return _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p));
}

// ---- float rows: pieces of 32 elements, four at a time; the last n % 32 with masked loads.

INLINE __m512 load_f32(const void *row, size_t i, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, (const float *)row + i);
}

INLINE __m512 load_f16(const void *row, size_t i, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i));
}

INLINE __m512 load_bf16(const void *row, size_t i, __mmask16 m) // bf16 is the top half of f32
{
    __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

#define FLOAT_KERNEL(name, load, esize)                                                        \
    INLINE void name##_piece(accs acc, int p, const void *row, size_t i, const float *x,       \
                             size_t ldx, int nx)                                               \
    {                                                                                          \
        const __mmask16 all = 0xFFFF;                                                          \
        fma_piece(acc, p, load(row, i, all), load(row, i + 16, all), x + i, ldx, nx);          \
    }                                                                                          \
    INLINE void name##_nx(const void *row, const float *x, size_t ldx, int nx, size_t n,       \
                          float *out)                                                          \
    {                                                                                          \
        accs acc = { 0 };                                                                      \
        size_t i = 0;                                                                          \
        for (; i + 128 <= n; i += 128) {                                                       \
            tw_dot_prefetch((const char *)row + i * (esize), 128 * (esize));                   \
            name##_piece(acc, 0, row, i, x, ldx, nx);                                          \
            name##_piece(acc, 1, row, i + 32, x, ldx, nx);                                     \
            name##_piece(acc, 2, row, i + 64, x, ldx, nx);                                     \
            name##_piece(acc, 3, row, i + 96, x, ldx, nx);                                     \
        }                                                                                      \
        for (; i + 32 <= n; i += 32)                                                           \
            name##_piece(acc, 0, row, i, x, ldx, nx);                                          \
        if (i < n) {                                                                           \
            uint32_t m = (1u << (n - i)) - 1;                                                  \
            __mmask16 m0 = (__mmask16)m, m1 = (__mmask16)(m >> 16);                            \
            fma_piece_masked(acc, load(row, i, m0), load(row, i + 16, m1), x + i, ldx, nx, m0, \
                             m1);                                                              \
        }                                                                                      \
        acc_store(acc, nx, out);                                                               \
    }

FLOAT_KERNEL(dot_f32, load_f32, 4)
FLOAT_KERNEL(dot_f16, load_f16, 2)
FLOAT_KERNEL(dot_bf16, load_bf16, 2)

// ---- Q8_0 and Q4_0: a block is a piece; four blocks at a time.

// The fp16 scale h as a float in every lane.
INLINE __m512 scale_bcast(const uint16_t *h)
{
    return _mm512_cvtph_ps(_mm256_set1_epi16((short)*h)); // a broadcast load, a conversion
}

INLINE void q8_0_piece(accs acc, int p, const struct tw_block_q8_0 *b, const float *x, size_t ldx,
                       int nx)
{
    __m512 d = scale_bcast(&b->d);
    __m512 w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(i8x16(b->qs)), d); // (float)q * d
    __m512 w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(i8x16(b->qs + 16)), d);
    fma_piece(acc, p, w0, w1, x, ldx, nx);
}

// The 16 values a nibble decodes to, (q - 8) * d, looked up with the nibble as the index.
INLINE void q4_0_piece(accs acc, int p, const struct tw_block_q4_0 *b, const float *x, size_t ldx,
                       int nx)
{
    const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    __m512 table = _mm512_mul_ps(levels, scale_bcast(&b->d));
    __m512i q = u8x16(b->qs); // permutexvar reads the low 4 bits of each index
    __m512 w0 = _mm512_permutexvar_ps(q, table);
    __m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
    fma_piece(acc, p, w0, w1, x, ldx, nx);
}

#define BLOCK32_KERNEL(name, block, piece)                                               \
    INLINE void name##_nx(const void *row, const float *x, size_t ldx, int nx, size_t n, \
                          float *out)                                                    \
    {                                                                                    \
        const block *b = row;                                                            \
        size_t nb = n / 32, i = 0;                                                       \
        accs acc = { 0 };                                                                \
        for (; i + 4 <= nb; i += 4) {                                                    \
            piece(acc, 0, b + i, x + 32 * i, ldx, nx);                                   \
            piece(acc, 1, b + i + 1, x + 32 * i + 32, ldx, nx);                          \
            piece(acc, 2, b + i + 2, x + 32 * i + 64, ldx, nx);                          \
            piece(acc, 3, b + i + 3, x + 32 * i + 96, ldx, nx);                          \
        }                                                                                \
        for (; i < nb; i++)                                                              \
            piece(acc, 0, b + i, x + 32 * i, ldx, nx);                                   \
        acc_store(acc, nx, out);                                                         \
    }

BLOCK32_KERNEL(dot_q8_0, struct tw_block_q8_0, q8_0_piece)
BLOCK32_KERNEL(dot_q4_0, struct tw_block_q4_0, q4_0_piece)

// ---- Q4_K: per sub-block of 32, the 16 values its nibbles decode to, d * sc * q - dmin * m,
// are a table looked up with the nibble as the index.

// dm[k] = d * sc[k] and dm[8 + k] = dmin * m[k], the reference's factors of sub-block k.
INLINE void q4_k_factors(const struct tw_block_q4_k *b, float *dm)
{
    // The 6-bit scales and mins (dtype.h's tw_q4_k_scale_min), four bytes at a time: bytes
    // 0..7 of `sm` are the scales of sub-blocks 0..7, bytes 8..15 their mins.
    uint32_t u[3], sm[4];
    memcpy(u, b->scales, sizeof u);
    sm[0] = u[0] & 0x3F3F3F3Fu;
    sm[1] = (u[2] & 0x0F0F0F0Fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    sm[2] = u[1] & 0x3F3F3F3Fu;
    sm[3] = ((u[2] >> 4) & 0x0F0F0F0Fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    __m512 f = _mm512_cvtepi32_ps(u8x16(sm));
    __m128 dd = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(b->d | (uint32_t)b->dmin << 16)));
    __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    _mm512_store_ps(dm, _mm512_mul_ps(f, _mm512_permutexvar_ps(sel, _mm512_castps128_ps512(dd))));
}

// One block, with its factors dm (q4_k_factors) computed ahead.
INLINE void q4_k_block(accs acc, const struct tw_block_q4_k *b, const float *dm, const float *x,
                       size_t ldx, int nx)
{
    const __m512 levels = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) { // 64 elements: sub-blocks 2c (low nibbles), 2c + 1 (high)
        const uint8_t *qs = b->qs + 32 * c;
        __m512i q0 = u8x16(qs), q1 = u8x16(qs + 16);
        __m512 t = unfused(_mm512_mul_ps(levels, _mm512_set1_ps(dm[2 * c])));
        t = _mm512_sub_ps(t, _mm512_set1_ps(dm[8 + 2 * c]));
        __m512 h = unfused(_mm512_mul_ps(levels, _mm512_set1_ps(dm[2 * c + 1])));
        h = _mm512_sub_ps(h, _mm512_set1_ps(dm[8 + 2 * c + 1]));
        fma_piece(acc, 2 * c, _mm512_permutexvar_ps(q0, t), _mm512_permutexvar_ps(q1, t),
                  x + 64 * c, ldx, nx);
        fma_piece(acc, 2 * c + 1, _mm512_permutexvar_ps(_mm512_srli_epi32(q0, 4), h),
                  _mm512_permutexvar_ps(_mm512_srli_epi32(q1, 4), h), x + 64 * c + 32, ldx, nx);
    }
}

// The factors of block i + 1 are computed before block i is multiplied, so that their latency
// (general registers to vector registers, through the stack) overlaps with its work.
INLINE void dot_q4_k_nx(const void *row, const float *x, size_t ldx, int nx, size_t n, float *out)
{
    const struct tw_block_q4_k *b = row;
    size_t nb = n / TW_QK_K;
    accs acc = { 0 };
    alignas(64) float dm[2][16];
    q4_k_factors(b, dm[0]);
    for (size_t i = 0; i < nb; i++) {
        if (i + 1 < nb)
            q4_k_factors(b + i + 1, dm[(i + 1) & 1]);
        FROM_MEMORY16(dm[i & 1]);
        q4_k_block(acc, b + i, dm[i & 1], x + TW_QK_K * i, ldx, nx);
    }
    acc_store(acc, nx, out);
}

// ---- Q6_K: d * sc * (q - 32) with q put together from ql and qh in dwords.

// ds[k] = d * scales[k], the reference's factor of sub-block k.
INLINE void q6_k_factors(const struct tw_block_q6_k *b, float *ds)
{
    __m512 sc = _mm512_cvtepi32_ps(i8x16(b->scales));
    _mm512_store_ps(ds, _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(b->d)), sc));
}

// One block, with its factors ds (q6_k_factors) computed ahead. In half h, for l < 32, the
// 6-bit values of rows k = 0..3 (elements 128h + 32k + l) are put together from ql[l] or
// ql[32 + l] and two bits of qh[l], 16 l at a time in dwords.
INLINE void q6_k_block(accs acc, const struct tw_block_q6_k *b, const float *ds, const float *x,
                       size_t ldx, int nx)
{
    const __m512i m4 = _mm512_set1_epi32(0x0F), m30 = _mm512_set1_epi32(0x30);
    const __m512i k32 = _mm512_set1_epi32(32);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
#pragma GCC unroll 2
        for (int c = 0; c < 2; c++) { // l = 16c .. 16c + 15
            const uint8_t *ql = b->ql + 64 * h + 16 * c, *qh = b->qh + 32 * h + 16 * c;
            __m512i la = u8x16(ql), lb = u8x16(ql + 32), hb = u8x16(qh);
            // a | (b & c) is ternary logic 0xF8: the nibble, and bits 4-5 from qh.
            __m512i r[4] = {
                _mm512_ternarylogic_epi32(_mm512_and_si512(la, m4), _mm512_slli_epi32(hb, 4), m30,
                                          0xF8),
                _mm512_ternarylogic_epi32(_mm512_and_si512(lb, m4), _mm512_slli_epi32(hb, 2), m30,
                                          0xF8),
                _mm512_ternarylogic_epi32(_mm512_srli_epi32(la, 4), hb, m30, 0xF8),
                _mm512_ternarylogic_epi32(_mm512_srli_epi32(lb, 4), _mm512_srli_epi32(hb, 2), m30,
                                          0xF8),
            };
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) { // d * sc * (q - 32), sub-block 8h + 2k + c
                __m512 w = _mm512_cvtepi32_ps(_mm512_sub_epi32(r[k], k32));
                w = _mm512_mul_ps(w, _mm512_set1_ps(ds[8 * h + 2 * k + c]));
                fma_half(acc, 4 * h + k, c, w, x + 128 * h + 32 * k + 16 * c, ldx, nx);
            }
        }
    }
}

// As for Q4_K, the factors of block i + 1 are computed before block i is multiplied.
INLINE void dot_q6_k_nx(const void *row, const float *x, size_t ldx, int nx, size_t n, float *out)
{
    const struct tw_block_q6_k *b = row;
    size_t nb = n / TW_QK_K;
    accs acc = { 0 };
    alignas(64) float ds[2][16];
    q6_k_factors(b, ds[0]);
    for (size_t i = 0; i < nb; i++) {
        if (i + 1 < nb)
            q6_k_factors(b + i + 1, ds[(i + 1) & 1]);
        FROM_MEMORY16(ds[i & 1]);
        q6_k_block(acc, b + i, ds[i & 1], x + TW_QK_K * i, ldx, nx);
    }
    acc_store(acc, nx, out);
}

// ---- the kernels: one copy of each body per tile height, so that the accumulators of the
// nx rows live in registers.

#define KERNEL_NX(name, k)                                                                    \
    TARGET __attribute__((noinline)) static void name##_##k(const void *row, const float *x,  \
                                                            size_t ldx, size_t n, float *out) \
    {                                                                                         \
        name##_nx(row, x, ldx, k, n, out);                                                    \
    }

// A tile of k = a + b rows as two calls (reading the row twice).
#define KERNEL_SPLIT(name, k, a, b)                                                      \
    TARGET static void name##_##k(const void *row, const float *x, size_t ldx, size_t n, \
                                  float *out)                                            \
    {                                                                                    \
        name##_##a(row, x, ldx, n, out);                                                 \
        name##_##b(row, x + (a)*ldx, ldx, n, out + (a));                                 \
    }

// One function per tile height (separate functions, not one switch over eight inlined copies:
// compilers, and the sanitizers' instrumentation most, take far longer on one huge body). In
// builds with AddressSanitizer, where the instrumented copies take minutes to compile, only
// heights 1, 2, 4 and 8 have their own; the others are put together from them.
#if TW_DOT_LEAN
#define KERNEL_HEIGHTS(name)    \
    KERNEL_NX(name, 1)          \
    KERNEL_NX(name, 2)          \
    KERNEL_NX(name, 4)          \
    KERNEL_NX(name, 8)          \
    KERNEL_SPLIT(name, 3, 2, 1) \
    KERNEL_SPLIT(name, 5, 4, 1) \
    KERNEL_SPLIT(name, 6, 4, 2) \
    KERNEL_SPLIT(name, 7, 4, 3)
#else
#define KERNEL_HEIGHTS(name) \
    KERNEL_NX(name, 1)       \
    KERNEL_NX(name, 2)       \
    KERNEL_NX(name, 3)       \
    KERNEL_NX(name, 4)       \
    KERNEL_NX(name, 5)       \
    KERNEL_NX(name, 6)       \
    KERNEL_NX(name, 7)       \
    KERNEL_NX(name, 8)
#endif

#define KERNEL(name)                                                                       \
    KERNEL_HEIGHTS(name)                                                                   \
    TARGET static void name(const void *row, const float *x, size_t ldx, int nx, size_t n, \
                            float *out)                                                    \
    {                                                                                      \
        static void (*const fns[NXMAX + 1])(const void *, const float *, size_t, size_t,   \
                                            float *) = { NULL,     name##_1, name##_2,     \
                                                         name##_3, name##_4, name##_5,     \
                                                         name##_6, name##_7, name##_8 };   \
        for (; nx > NXMAX; nx -= NXMAX, x += NXMAX * ldx, out += NXMAX)                    \
            fns[NXMAX](row, x, ldx, n, out);                                               \
        if (nx > 0)                                                                        \
            fns[nx](row, x, ldx, n, out);                                                  \
    }

KERNEL(dot_f32)
KERNEL(dot_f16)
KERNEL(dot_bf16)
KERNEL(dot_q8_0)
KERNEL(dot_q4_0)
KERNEL(dot_q4_k)
KERNEL(dot_q6_k)

tw_dot_fn tw_dot_kernel_avx512(enum tw_dtype t)
{
    switch (t) {
    case TW_DTYPE_F32:
        return dot_f32;
    case TW_DTYPE_F16:
        return dot_f16;
    case TW_DTYPE_BF16:
        return dot_bf16;
    case TW_DTYPE_Q8_0:
        return dot_q8_0;
    case TW_DTYPE_Q4_0:
        return dot_q4_0;
    case TW_DTYPE_Q4_K:
        return dot_q4_k;
    case TW_DTYPE_Q6_K:
        return dot_q6_k;
    default:
        return NULL;
    }
}

#else

tw_dot_fn tw_dot_kernel_avx512(enum tw_dtype t)
{
    (void)t;
    return NULL;
}

#endif

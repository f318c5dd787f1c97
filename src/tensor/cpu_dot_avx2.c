// The AVX2 dot kernels of cpu_dot.h (with FMA, and F16C for f16 weights and fp16 scales),
// compiled with target attributes so that the file builds with default flags; cpu_dot.c calls
// them only on a CPU that has them. Each kernel decodes 32 weights at a time into four ymm
// registers, exactly to the floats of tw_dequantize_row, and FMAs them into the accumulators
// of every activation row, so the row is read from memory once for all of them.
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
#define TARGET __attribute__((target("avx2,fma,f16c"))) NO_PTR_CHECK
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

// The accumulators acc[s][j][c]: set s, activation row j, chain c. A piece of 32 weights is
// four vectors; vector v goes to chain v % chains(nx), so that there are enough independent
// FMA chains to hide the FMA latency without running out of the 16 ymm registers: 4 chains a
// row for one or two rows, 2 for three or four, 1 beyond. With one row, pieces also alternate
// between the two sets (8 chains); otherwise set 1 is unused and the compiler drops it.
typedef __m256 accs[2][NXMAX][4];

INLINE int chains(int nx)
{
    return nx <= 2 ? 4 : nx <= 4 ? 2 : 1;
}

INLINE float hsum(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

// Expands ROW(j) for the eight rows a tile can have; ROW guards its code with j < nx. The
// accumulators' indices are then constants in the source, which keeps them in registers without
// relying on the compiler to unroll loops before it breaks up the array (clang 14 does not).
#define EACH_ROW(ROW) ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)

// The sum of the chains of row j in set s.
#define CHAINS(s, j)                                                     \
    (k == 1   ? acc[s][j][0]                                             \
     : k == 2 ? _mm256_add_ps(acc[s][j][0], acc[s][j][1])                \
              : _mm256_add_ps(_mm256_add_ps(acc[s][j][0], acc[s][j][1]), \
                              _mm256_add_ps(acc[s][j][2], acc[s][j][3])))

INLINE void acc_store(accs acc, int nx, float *out)
{
    const int k = chains(nx);
#define ROW(j)  \
    if (j < nx) \
        out[j] = hsum(nx == 1 ? _mm256_add_ps(CHAINS(0, j), CHAINS(1, j)) : CHAINS(0, j));
    EACH_ROW(ROW)
#undef ROW
}

// acc[s][j] += the piece (w[v]: elements 8v..8v+7) times x_j[0..31], for j < nx.
INLINE void fma_piece(accs acc, int s, const __m256 w[4], const float *x, size_t ldx, int nx)
{
    const int k = chains(nx);
#define ROW(j)                                                                                \
    if (j < nx) {                                                                             \
        const float *xj = x + (size_t)(j)*ldx;                                                \
        acc[s][j][0] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xj), acc[s][j][0]);              \
        acc[s][j][1 % k] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xj + 8), acc[s][j][1 % k]);  \
        acc[s][j][2 % k] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xj + 16), acc[s][j][2 % k]); \
        acc[s][j][3 % k] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xj + 24), acc[s][j][3 % k]); \
    }
    EACH_ROW(ROW)
#undef ROW
}

// v itself, but the compiler may not fuse the multiplication that made it with the
// subtraction that follows (GCC contracts a * b - c into one FMA by default; the decoded value
// must be rounded twice, as the reference rounds it).
INLINE __m256 unfused(__m256 v)
{
    __asm__("" : "+x"(v));
    return v;
}

// Widens 8 bytes at p to 8 dwords, zero- or sign-extended.
INLINE __m256i u8x8(const void *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

INLINE __m256i i8x8(const void *p)
{
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

// ---- float rows: pieces of 32 elements, two at a time; the last n % 32 are copied into a
// zero-padded piece (and the activations with them).

INLINE __m256 load_f32(const void *row, size_t i)
{
    return _mm256_loadu_ps((const float *)row + i);
}

INLINE __m256 load_f16(const void *row, size_t i)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
}

INLINE __m256 load_bf16(const void *row, size_t i) // bf16 is the top half of f32
{
    __m256i h =
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

#define FLOAT_KERNEL(name, load, esize)                                                         \
    INLINE void name##_piece(accs acc, int s, const void *row, size_t i, const float *x,        \
                             size_t ldx, int nx)                                                \
    {                                                                                           \
        __m256 w[4] = { load(row, i), load(row, i + 8), load(row, i + 16), load(row, i + 24) }; \
        fma_piece(acc, s, w, x, ldx, nx);                                                       \
    }                                                                                           \
    INLINE void name##_nx(const void *row, const float *x, size_t ldx, int nx, size_t n,        \
                          float *out)                                                           \
    {                                                                                           \
        accs acc = { 0 };                                                                       \
        size_t i = 0;                                                                           \
        for (; i + 64 <= n; i += 64) {                                                          \
            tw_dot_prefetch((const char *)row + i * (esize), 64 * (esize));                     \
            name##_piece(acc, 0, row, i, x + i, ldx, nx);                                       \
            name##_piece(acc, nx == 1, row, i + 32, x + i + 32, ldx, nx);                       \
        }                                                                                       \
        for (; i + 32 <= n; i += 32)                                                            \
            name##_piece(acc, 0, row, i, x + i, ldx, nx);                                       \
        if (i < n) {                                                                            \
            size_t r = n - i;                                                                   \
            alignas(32) uint8_t wt[32 * (esize)] = { 0 };                                       \
            alignas(32) float xt[NXMAX][32] = { { 0 } };                                        \
            memcpy(wt, (const uint8_t *)row + i * (esize), r * (esize));                        \
            for (int j = 0; j < nx; j++)                                                        \
                memcpy(xt[j], x + (size_t)j * ldx + i, r * sizeof(float));                      \
            name##_piece(acc, 0, wt, 0, xt[0], 32, nx);                                         \
        }                                                                                       \
        acc_store(acc, nx, out);                                                                \
    }

FLOAT_KERNEL(dot_f32, load_f32, 4)
FLOAT_KERNEL(dot_f16, load_f16, 2)
FLOAT_KERNEL(dot_bf16, load_bf16, 2)

// ---- Q8_0 and Q4_0: a block is a piece; two blocks at a time.

INLINE void q8_0_piece(accs acc, int s, const struct tw_block_q8_0 *b, const float *x, size_t ldx,
                       int nx)
{
    __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)b->d)), w[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) // (float)q * d
        w[v] = _mm256_mul_ps(_mm256_cvtepi32_ps(i8x8(b->qs + 8 * v)), d);
    fma_piece(acc, s, w, x, ldx, nx);
}

INLINE void q4_0_piece(accs acc, int s, const struct tw_block_q4_0 *b, const float *x, size_t ldx,
                       int nx)
{
    const __m256i m4 = _mm256_set1_epi32(0x0F), k8 = _mm256_set1_epi32(8);
    __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)b->d)), w[4];
    __m256i q0 = u8x8(b->qs), q1 = u8x8(b->qs + 8);
    __m256i e[4] = { _mm256_and_si256(q0, m4), _mm256_and_si256(q1, m4), _mm256_srli_epi32(q0, 4),
                     _mm256_srli_epi32(q1, 4) };
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) // (float)(q - 8) * d
        w[v] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(e[v], k8)), d);
    fma_piece(acc, s, w, x, ldx, nx);
}

#define BLOCK32_KERNEL(name, block, piece)                                               \
    INLINE void name##_nx(const void *row, const float *x, size_t ldx, int nx, size_t n, \
                          float *out)                                                    \
    {                                                                                    \
        const block *b = row;                                                            \
        size_t nb = n / 32, i = 0;                                                       \
        accs acc = { 0 };                                                                \
        for (; i + 2 <= nb; i += 2) {                                                    \
            piece(acc, 0, b + i, x + 32 * i, ldx, nx);                                   \
            piece(acc, nx == 1, b + i + 1, x + 32 * i + 32, ldx, nx);                    \
        }                                                                                \
        if (i < nb)                                                                      \
            piece(acc, 0, b + i, x + 32 * i, ldx, nx);                                   \
        acc_store(acc, nx, out);                                                         \
    }

BLOCK32_KERNEL(dot_q8_0, struct tw_block_q8_0, q8_0_piece)
BLOCK32_KERNEL(dot_q4_0, struct tw_block_q4_0, q4_0_piece)

// ---- Q4_K: per sub-block of 32, d * sc * q - dmin * m from the nibbles.

// Makes the compiler read the 16 floats at p back from memory, as broadcast loads, rather than
// take them apart from the registers that wrote them with shuffles.
#define FROM_MEMORY16(p) __asm__("" : "+m"(*(float(*)[16])(p)))

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
    __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d)), dmin = _mm256_set1_ps(_cvtsh_ss(b->dmin));
    _mm256_store_ps(dm, _mm256_mul_ps(_mm256_cvtepi32_ps(u8x8(sm)), d));
    _mm256_store_ps(dm + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(u8x8(sm + 2)), dmin));
}

// One block, with its factors dm (q4_k_factors) computed ahead.
INLINE void q4_k_block(accs acc, const struct tw_block_q4_k *b, const float *dm, const float *x,
                       size_t ldx, int nx)
{
    const __m256i m4 = _mm256_set1_epi32(0x0F);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) { // 64 elements: sub-blocks 2c (low nibbles), 2c + 1 (high)
        const uint8_t *qs = b->qs + 32 * c;
        __m256i q[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            q[v] = u8x8(qs + 8 * v);
        __m256 w[4];
        __m256 d1 = _mm256_set1_ps(dm[2 * c]), m1 = _mm256_set1_ps(dm[8 + 2 * c]);
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) { // d1 * q - m1, rounded twice
            __m256 t = _mm256_cvtepi32_ps(_mm256_and_si256(q[v], m4));
            w[v] = _mm256_sub_ps(unfused(_mm256_mul_ps(t, d1)), m1);
        }
        fma_piece(acc, 0, w, x + 64 * c, ldx, nx);
        __m256 d2 = _mm256_set1_ps(dm[2 * c + 1]), m2 = _mm256_set1_ps(dm[8 + 2 * c + 1]);
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++) {
            __m256 t = _mm256_cvtepi32_ps(_mm256_srli_epi32(q[v], 4));
            w[v] = _mm256_sub_ps(unfused(_mm256_mul_ps(t, d2)), m2);
        }
        fma_piece(acc, nx == 1, w, x + 64 * c + 32, ldx, nx);
    }
}

// The factors of block i + 1 are computed before block i is multiplied, so that their latency
// (general registers to vector registers, through the stack) overlaps with its work.
INLINE void dot_q4_k_nx(const void *row, const float *x, size_t ldx, int nx, size_t n, float *out)
{
    const struct tw_block_q4_k *b = row;
    size_t nb = n / TW_QK_K;
    accs acc = { 0 };
    alignas(32) float dm[2][16];
    q4_k_factors(b, dm[0]);
    for (size_t i = 0; i < nb; i++) {
        if (i + 1 < nb)
            q4_k_factors(b + i + 1, dm[(i + 1) & 1]);
        FROM_MEMORY16(dm[i & 1]);
        q4_k_block(acc, b + i, dm[i & 1], x + TW_QK_K * i, ldx, nx);
    }
    acc_store(acc, nx, out);
}

// ---- Q6_K.

// ds[k] = d * scales[k], the reference's factor of sub-block k.
INLINE void q6_k_factors(const struct tw_block_q6_k *b, float *ds)
{
    __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
    _mm256_store_ps(ds, _mm256_mul_ps(d, _mm256_cvtepi32_ps(i8x8(b->scales))));
    _mm256_store_ps(ds + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(i8x8(b->scales + 8))));
}

// One block, with its factors ds (q6_k_factors) computed ahead. The 6-bit values of a half
// block (128) are put together 32 bytes at a time, less 32, into a buffer, and widened from
// there 8 at a time.
INLINE void q6_k_block(accs acc, const struct tw_block_q6_k *b, const float *ds, const float *x,
                       size_t ldx, int nx)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i k32 = _mm256_set1_epi8(32);
    alignas(32) int8_t q[128];
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i la = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
        __m256i lb = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
        __m256i hb = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        // Four rows of 32 (elements 0, 32, 64, 96 of the half): a nibble of ql and two bits
        // of qh as bits 4-5 (16-bit shifts: what crosses into the other byte is masked off).
        __m256i r[4] = {
            _mm256_or_si256(_mm256_and_si256(la, m4),
                            _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30)),
            _mm256_or_si256(_mm256_and_si256(lb, m4),
                            _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(la, 4), m4),
                            _mm256_and_si256(hb, m30)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lb, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30)),
        };
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++)
            _mm256_store_si256((__m256i *)(q + 32 * p), _mm256_sub_epi8(r[p], k32));
        __asm__("" : "+m"(q));
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) { // elements 32p.. of the half: sub-blocks 8h + 2p, +1
            __m256 w[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                __m256 t = _mm256_cvtepi32_ps(i8x8(q + 32 * p + 8 * v));
                w[v] = _mm256_mul_ps(t, _mm256_set1_ps(ds[8 * h + 2 * p + v / 2]));
            }
            fma_piece(acc, nx == 1 && (p & 1), w, x + 128 * h + 32 * p, ldx, nx);
        }
    }
}

// As for Q4_K, the factors of block i + 1 are computed before block i is multiplied.
INLINE void dot_q6_k_nx(const void *row, const float *x, size_t ldx, int nx, size_t n, float *out)
{
    const struct tw_block_q6_k *b = row;
    size_t nb = n / TW_QK_K;
    accs acc = { 0 };
    alignas(32) float ds[2][16];
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

tw_dot_fn tw_dot_kernel_avx2(enum tw_dtype t)
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

tw_dot_fn tw_dot_kernel_avx2(enum tw_dtype t)
{
    (void)t;
    return NULL;
}

#endif

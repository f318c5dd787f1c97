// The AVX-512 BF16 kernel of cpu_gemm.h, compiled with target attributes so that the file
// builds with default flags; cpu_gemm.c calls it only on a CPU that has AVX-512 BF16.
// Blocking, for one thread's columns of y: the k pairs in blocks of KC; per block, each panel
// of NR weight rows is packed [KC][NR] (pairs of bf16, 16 rows a vector: the layout VDPBF16PS
// multiplies) and then met by every panel of MR rows of x, in an MR x NR microkernel whose
// accumulators stay in zmm registers: per k pair, NR/16 weight vectors are loaded, the pair of
// each row of x is broadcast, and MR * NR/16 VDPBF16PS are issued.
#include "tensor/cpu_gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 10) ||    \
     (defined(__clang__) && __clang_major__ >= 9))
#include <assert.h>
#include <immintrin.h>
#include <stdint.h>

// UBSan's pointer-overflow check on every address of the unrolled kernels multiplies clang's
// compile time (as in cpu_dot_avx512.c); ASan still checks the accesses.
#if defined(__clang__)
#define NO_PTR_CHECK __attribute__((no_sanitize("pointer-overflow")))
#else
#define NO_PTR_CHECK
#endif
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) NO_PTR_CHECK
#define INLINE static inline __attribute__((always_inline)) TARGET

#define MR TW_GEMM_BF16_MR
#define NV 2         // vectors of 16 weight rows in a panel
#define NR (16 * NV) // weight rows (columns of y) in a panel
#define KC 1024      // k pairs in a block, at most: a packed panel takes KC * NR * 4 = 128 KiB

_Static_assert(MR == 8 && NV == 2, "the kernel tables below are written for 8 x 2");
_Static_assert(64 + 4 * KC * NR <= TW_GEMM_BF16_SCRATCH, "scratch");

// ---- packing a panel of weight rows.

// Straight-line code for i = 0..15 (or 0..7, 0..3): the compiler then keeps the vectors of a
// transpose in registers, where loops over arrays of them would go through the stack.
#define EACH4(X)  X(0) X(1) X(2) X(3)
#define EACH8(X)  EACH4(X) X(4) X(5) X(6) X(7)
#define EACH16(X) EACH8(X) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
// The two unpack steps of the 32-bit transposes below (a from rows r, then b from a), shared
// by the weight and the activation packers.
#define UNPACK32(i)                                           \
    a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]); \
    a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
#define UNPACK64(i)                                                   \
    b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);         \
    b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);     \
    b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]); \
    b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);

// The 16 x 16 transpose of 32-bit elements: r[i] holds pairs 0..15 of row i; afterwards r[p]
// holds pair p of rows 0..15. Unpacks within 128-bit lanes, then a 4 x 4 transpose of lanes.
INLINE void transpose16(__m512i r[16])
{
    __m512i a[16], b[16];
    EACH8(UNPACK32)
    // b[4i + e], lane L: pair 4L + e of rows 4i .. 4i + 3.
    EACH4(UNPACK64)
#define LANES(e)                                                      \
    {                                                                 \
        __m512i c0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x44);      \
        __m512i c1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xEE);      \
        __m512i c2 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0x44); \
        __m512i c3 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0xEE); \
        r[e] = _mm512_shuffle_i32x4(c0, c2, 0x88);                    \
        r[4 + e] = _mm512_shuffle_i32x4(c0, c2, 0xDD);                \
        r[8 + e] = _mm512_shuffle_i32x4(c1, c3, 0x88);                \
        r[12 + e] = _mm512_shuffle_i32x4(c1, c3, 0xDD);               \
    }
    EACH4(LANES)
#undef LANES
}

// Packs pairs [p0, p0 + kc) of weight rows 0 .. nr (nr <= NR; w at row 0, ldw elements apart,
// K elements a row) into bp, [kc][NR] pairs; rows nr .. NR and the missing half of an odd K's
// last pair are zeros. Sixteen rows and sixteen pairs at a time: whole blocks with plain
// loads, the last block of a row and the rows of a partial group with masked ones.
TARGET static void pack_w(const uint16_t *w, size_t ldw, int nr, int64_t K, size_t p0, size_t kc,
                          uint32_t *bp)
{
    for (int g = 0; g < NV && 16 * g < nr; g++) { // groups past nr: the kernel does not read
        const uint16_t *wg = w + (size_t)(16 * g) * ldw;
        int rows = nr - 16 * g; // of this group: 16 or fewer
        for (size_t p = 0; p < kc; p += 16) {
            size_t np = kc - p < 16 ? kc - p : 16, k0 = 2 * (p0 + p);
            size_t ne = (size_t)K - k0 < 2 * np ? (size_t)K - k0 : 2 * np; // bf16 to load
            __m512i r[16];
            uint32_t *dst = bp + p * NR + 16 * g;
            if (ne == 32 && rows >= 16) {
#define LOAD(i) r[i] = _mm512_loadu_si512(wg + (size_t)(i)*ldw + k0);
                EACH16(LOAD)
#undef LOAD
            } else {
                __mmask32 m = ne == 32 ? 0xFFFFFFFFu : (__mmask32)((1u << ne) - 1);
#define LOAD(i)                                                                \
    r[i] = (i) < rows ? _mm512_maskz_loadu_epi16(m, wg + (size_t)(i)*ldw + k0) \
                      : _mm512_setzero_si512();
                EACH16(LOAD)
#undef LOAD
            }
            transpose16(r);
            if (np == 16) {
#define STORE(i) _mm512_store_si512(dst + (i)*NR, r[i]);
                EACH16(STORE)
#undef STORE
            } else {
#define STORE(i)          \
    if ((size_t)(i) < np) \
        _mm512_store_si512(dst + (i)*NR, r[i]);
                EACH16(STORE)
#undef STORE
            }
        }
    }
}

// ---- packing x.

// Rows t0 .. t0 + MR of x (rows past T as zeros) rounded to bf16 and packed as a panel,
// [kp][MR] pairs: 16 pairs of the MR = 8 rows at a time, converted by VCVTNE2PS2BF16 (to
// nearest even; subnormals to zero, as VDPBF16PS would take them anyway; a NaN stays NaN),
// then transposed 8 x 16 -> 16 x 8 in the manner of transpose16.
TARGET static void pack_x_panel(const float *x, int64_t T, int64_t K, int64_t t0, uint32_t *dst)
{
    size_t kp = (size_t)((K + 1) / 2);
    int rows = T - t0 < MR ? (int)(T - t0) : MR;
    for (size_t p = 0; p < kp; p += 16) {
        size_t np = kp - p < 16 ? kp - p : 16, k0 = 2 * p;
        size_t ne = (size_t)K - k0 < 32 ? (size_t)K - k0 : 32; // floats to load
        uint32_t m = ne == 32 ? 0xFFFFFFFFu : (1u << ne) - 1;
        __m512i r[8], a[8], b[8];
#define LOAD(i)                                                           \
    if ((i) < rows) {                                                     \
        const float *xi = x + (size_t)(t0 + (i)) * (size_t)K + k0;        \
        __m512 lo = _mm512_maskz_loadu_ps((__mmask16)m, xi);              \
        __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), xi + 16); \
        r[i] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);                      \
    } else {                                                              \
        r[i] = _mm512_setzero_si512();                                    \
    }
        EACH8(LOAD)
#undef LOAD
        EACH4(UNPACK32)
        // b[e], lane L: pair 4L + e of rows 0..3; b[4 + e]: of rows 4..7.
        UNPACK64(0)
        UNPACK64(1)
        // Out vector j holds pairs 2j and 2j + 1 of the 8 rows: for pair 4L + e (e = 0, 2),
        // lane L of b[e], b[4 + e], b[e + 1], b[5 + e].
#define LANES(e)                                                     \
    {                                                                \
        __m512i c0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x44);     \
        __m512i c1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xEE);     \
        __m512i c2 = _mm512_shuffle_i32x4(b[e + 1], b[5 + e], 0x44); \
        __m512i c3 = _mm512_shuffle_i32x4(b[e + 1], b[5 + e], 0xEE); \
        r[e / 2] = _mm512_shuffle_i32x4(c0, c2, 0x88);               \
        r[2 + e / 2] = _mm512_shuffle_i32x4(c0, c2, 0xDD);           \
        r[4 + e / 2] = _mm512_shuffle_i32x4(c1, c3, 0x88);           \
        r[6 + e / 2] = _mm512_shuffle_i32x4(c1, c3, 0xDD);           \
    }
        LANES(0)
        LANES(2)
#undef LANES
        uint32_t *d = dst + p * MR;
#define STORE(j)                                   \
    if (2 * (j) + 1 < (int)np)                     \
        _mm512_storeu_si512(d + 2 * (j)*MR, r[j]); \
    else if (2 * (j) < (int)np)                    \
        _mm256_storeu_si256((__m256i *)(d + 2 * (j)*MR), _mm512_castsi512_si256(r[j]));
        EACH8(STORE)
#undef STORE
    }
}

TARGET void tw_gemm_bf16_pack_x_avx512(const float *x, int64_t T, int64_t K, void *xp, size_t q0,
                                       size_t q1)
{
    size_t kp = (size_t)((K + 1) / 2);
    for (size_t q = q0; q < q1; q++)
        pack_x_panel(x, T, K, (int64_t)q * MR, (uint32_t *)xp + q * kp * MR);
}

// ---- the microkernel: y (M, 16 V) (+)= xp panel (M rows of MR, kc pairs) · bp (kc, NR)^T.

// Expands X(i) for every row a panel can have; X guards its code with i < M. The indices of
// the accumulators are then constants in the source, which keeps them in registers without
// relying on the compiler to unroll loops (as in cpu_dot_avx512.c).
#define EACH_ROW(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

INLINE __m512 dot2(__m512 acc, __m512i a, __m512i b)
{
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

INLINE __mmask16 cols_mask(int nc, int v)
{
    int n = nc - 16 * v;
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// y[0..16) masked by m = s, or += s when add (a later k block).
INLINE void store(float *y, __m512 s, __mmask16 m, int add)
{
    if (add)
        s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(m, y));
    _mm512_mask_storeu_ps(y, m, s);
}

INLINE void micro(const int M, const int V, size_t kc, const uint32_t *a, const uint32_t *b,
                  float *y, size_t ldy, int nc, int add)
{
    __m512 acc[MR][NV];
#define ZERO(i)                                      \
    if (i < M) {                                     \
        acc[i][0] = acc[i][1] = _mm512_setzero_ps(); \
    }
    EACH_ROW(ZERO)
#undef ZERO
    for (size_t p = 0; p < kc; p++, a += MR, b += NR) {
        __m512i b0 = _mm512_load_si512(b);
        __m512i b1 = V > 1 ? _mm512_load_si512(b + 16) : b0;
#define STEP(i)                                    \
    if (i < M) {                                   \
        __m512i ai = _mm512_set1_epi32((int)a[i]); \
        acc[i][0] = dot2(acc[i][0], ai, b0);       \
        if (V > 1)                                 \
            acc[i][1] = dot2(acc[i][1], ai, b1);   \
    }
        EACH_ROW(STEP)
#undef STEP
    }
#define STORE(i)                                                               \
    if (i < M) {                                                               \
        store(y + (size_t)(i)*ldy, acc[i][0], cols_mask(nc, 0), add);          \
        if (V > 1)                                                             \
            store(y + (size_t)(i)*ldy + 16, acc[i][1], cols_mask(nc, 1), add); \
    }
    EACH_ROW(STORE)
#undef STORE
}

typedef void (*micro_fn)(size_t kc, const uint32_t *a, const uint32_t *b, float *y, size_t ldy,
                         int nc, int add);

// One function per (rows, vectors): M = 1..MR rows of x (the last panel may have fewer), and
// V = 1..NV vectors of weight rows (the last panel of a thread's columns may have fewer).
#define MICRO(m, v)                                                                             \
    TARGET __attribute__((noinline)) static void micro_##m##_##v(                               \
        size_t kc, const uint32_t *a, const uint32_t *b, float *y, size_t ldy, int nc, int add) \
    {                                                                                           \
        micro(m, v, kc, a, b, y, ldy, nc, add);                                                 \
    }
#define MICRO_V(m) MICRO(m, 1) MICRO(m, 2)
MICRO_V(1)
MICRO_V(2)
MICRO_V(3)
MICRO_V(4)
MICRO_V(5)
MICRO_V(6)
MICRO_V(7)
MICRO_V(8)
#undef MICRO_V
#undef MICRO

static const micro_fn micros[MR][NV] = {
    { micro_1_1, micro_1_2 }, { micro_2_1, micro_2_2 }, { micro_3_1, micro_3_2 },
    { micro_4_1, micro_4_2 }, { micro_5_1, micro_5_2 }, { micro_6_1, micro_6_2 },
    { micro_7_1, micro_7_2 }, { micro_8_1, micro_8_2 },
};

bool tw_gemm_bf16_built_avx512(void)
{
    return true;
}

TARGET void tw_gemm_bf16_avx512(const void *xp, int64_t T, int64_t K, const uint16_t *w,
                                size_t ldw, int64_t N, float *y, size_t ldy, void *scratch)
{
    assert(K >= 1 && T >= 0 && N >= 0);
    size_t kp = (size_t)((K + 1) / 2);
    // k blocks of equal size (rounded up to 16 pairs), none longer than KC
    size_t nblk = (kp + KC - 1) / KC, kb = ((kp + nblk - 1) / nblk + 15) / 16 * 16;
    uint32_t *bp = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const uint32_t *xa = xp;
    for (size_t p0 = 0; p0 < kp; p0 += kb) {
        size_t kc = kp - p0 < kb ? kp - p0 : kb;
        for (int64_t n = 0; n < N; n += NR) {
            int nc = N - n < NR ? (int)(N - n) : NR, v = (nc + 15) / 16;
            pack_w(w + (size_t)n * ldw, ldw, nc, K, p0, kc, bp);
            for (int64_t t = 0; t < T; t += MR) {
                int m = T - t < MR ? (int)(T - t) : MR;
                const uint32_t *a = xa + (size_t)(t / MR) * kp * MR + p0 * MR;
                micros[m - 1][v - 1](kc, a, bp, y + (size_t)t * ldy + n, ldy, nc, p0 > 0);
            }
        }
    }
}

#else

bool tw_gemm_bf16_built_avx512(void)
{
    return false;
}

void tw_gemm_bf16_pack_x_avx512(const float *x, int64_t T, int64_t K, void *xp, size_t q0,
                                size_t q1)
{
    (void)x, (void)T, (void)K, (void)xp, (void)q0, (void)q1;
}

void tw_gemm_bf16_avx512(const void *xp, int64_t T, int64_t K, const uint16_t *w, size_t ldw,
                         int64_t N, float *y, size_t ldy, void *scratch)
{
    (void)xp, (void)T, (void)K, (void)w, (void)ldw, (void)N, (void)y, (void)ldy, (void)scratch;
}

#endif

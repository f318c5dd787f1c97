// One query row against a run of cached keys and values, with an online softmax (a running
// max and sum, rescaled per block of 32 keys): the decode path of the CPU backend's attention,
// where each (row, head) is its own small job. The scalar version is the portable one; the
// AVX2 and AVX-512 versions (target attributes, chosen at run time) keep the query and the
// accumulator in registers for head sizes of 64 and 128 and vectorise the dot products and
// the weighted sum of the values; exp is scalar, one per key, except in the grouped kernels,
// which take a block's exponentials through cpu_vec.c's vector exp. Each also gives, where asked,
// the log of its softmax's sum (m + log l): a row's keys can then be split into parts whose
// outputs are merged (the decode path's split over threads, cpu.c).
#include "tensor/cpu_int.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>

#define BLOCK 32

static void attend_scalar(const float *q, const float *k, const float *v,
                          const struct tw_kv_map *map, int64_t lo, int64_t hi, int64_t D,
                          float scale, float *out, float *lse)
{
    float acc[512];
    float s[BLOCK];
    assert(D <= 512);
    float m = -INFINITY, l = 0;
    for (int64_t d = 0; d < D; d++)
        acc[d] = 0;
    for (int64_t j0 = lo; j0 < hi; j0 += BLOCK) {
        int64_t nj = hi - j0 < BLOCK ? hi - j0 : BLOCK;
        float bm = -INFINITY;
        for (int64_t j = 0; j < nj; j++) {
            const float *kj = k + tw_kv_off(map, j0 + j);
            float dot = 0;
            for (int64_t d = 0; d < D; d++)
                dot += q[d] * kj[d];
            s[j] = dot * scale;
            bm = s[j] > bm ? s[j] : bm;
        }
        if (bm > m) {
            float c = expf(m - bm);
            l *= c;
            for (int64_t d = 0; d < D; d++)
                acc[d] *= c;
            m = bm;
        }
        for (int64_t j = 0; j < nj; j++) {
            float p = expf(s[j] - m);
            const float *vj = v + tw_kv_off(map, j0 + j);
            l += p;
            for (int64_t d = 0; d < D; d++)
                acc[d] += p * vj[d];
        }
    }
    for (int64_t d = 0; d < D; d++)
        out[d] = acc[d] / l;
    if (lse)
        *lse = m + logf(l);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx2,fma")))
#define T256 __attribute__((target("avx2,fma")))

// The online softmax over vectors of W floats: NV of them hold a head (D = NV * W). Written
// once as a macro for the two widths; NV is a constant in each instance, so q and acc stay in
// registers.
#define ATTEND_BODY(VEC, LOAD, STORE, FMA, MUL, SET1, ZERO, RED, W, NV) \
    VEC qv[NV], acc[NV];                                                \
    float s[BLOCK], m = -INFINITY, l = 0;                               \
    for (int i = 0; i < NV; i++) {                                      \
        qv[i] = MUL(LOAD(q + i * W), SET1(scale));                      \
        acc[i] = ZERO();                                                \
    }                                                                   \
    for (int64_t j0 = lo; j0 < hi; j0 += BLOCK) {                       \
        int64_t nj = hi - j0 < BLOCK ? hi - j0 : BLOCK;                 \
        float bm = -INFINITY;                                           \
        for (int64_t j = 0; j < nj; j++) {                              \
            const float *kj = k + tw_kv_off(map, j0 + j);               \
            VEC d = MUL(qv[0], LOAD(kj));                               \
            for (int i = 1; i < NV; i++)                                \
                d = FMA(qv[i], LOAD(kj + i * W), d);                    \
            s[j] = RED(d);                                              \
            bm = s[j] > bm ? s[j] : bm;                                 \
        }                                                               \
        if (bm > m) {                                                   \
            float c = expf(m - bm);                                     \
            l *= c;                                                     \
            for (int i = 0; i < NV; i++)                                \
                acc[i] = MUL(acc[i], SET1(c));                          \
            m = bm;                                                     \
        }                                                               \
        for (int64_t j = 0; j < nj; j++) {                              \
            float p = expf(s[j] - m);                                   \
            const float *vj = v + tw_kv_off(map, j0 + j);               \
            l += p;                                                     \
            VEC pv = SET1(p);                                           \
            for (int i = 0; i < NV; i++)                                \
                acc[i] = FMA(pv, LOAD(vj + i * W), acc[i]);             \
        }                                                               \
    }                                                                   \
    VEC inv = SET1(1.0f / l);                                           \
    for (int i = 0; i < NV; i++)                                        \
        STORE(out + i * W, MUL(acc[i], inv));                           \
    if (lse)                                                            \
        *lse = m + logf(l);

T256 static inline float hsum256(__m256 x)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

#define A512(NV)                                                                               \
    T512 static void attend512_##NV(const float *q, const float *k, const float *v,            \
                                    const struct tw_kv_map *map, int64_t lo, int64_t hi,       \
                                    float scale, float *out, float *lse)                       \
    {                                                                                          \
        ATTEND_BODY(__m512, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, \
                    _mm512_set1_ps, _mm512_setzero_ps, _mm512_reduce_add_ps, 16, NV)           \
    }
#define A256(NV)                                                                               \
    T256 static void attend256_##NV(const float *q, const float *k, const float *v,            \
                                    const struct tw_kv_map *map, int64_t lo, int64_t hi,       \
                                    float scale, float *out, float *lse)                       \
    {                                                                                          \
        ATTEND_BODY(__m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps, \
                    _mm256_set1_ps, _mm256_setzero_ps, hsum256, 8, NV)                         \
    }
A512(4)
A512(8)

// G query heads that share one key-value head (grouped-query attention), D = 64: each key and
// value row is read once for all G. q and out hold the G heads one after another.
#define G512(G)                                                                         \
    T512 static void group512_##G(const float *q, const float *k, const float *v,       \
                                  const struct tw_kv_map *map, int64_t lo, int64_t hi,  \
                                  float scale, float *out, float *lse)                  \
    {                                                                                   \
        __m512 acc[G][4];                                                               \
        float s[G][BLOCK], m[G], l[G];                                                  \
        for (int g = 0; g < G; g++) {                                                   \
            m[g] = -INFINITY;                                                           \
            l[g] = 0;                                                                   \
            for (int i = 0; i < 4; i++)                                                 \
                acc[g][i] = _mm512_setzero_ps();                                        \
        }                                                                               \
        for (int64_t j0 = lo; j0 < hi; j0 += BLOCK) {                                   \
            int64_t nj = hi - j0 < BLOCK ? hi - j0 : BLOCK;                             \
            for (int64_t j = 0; j < nj; j++) {                                          \
                const float *kj = k + tw_kv_off(map, j0 + j);                           \
                __m512 k0 = _mm512_loadu_ps(kj), k1 = _mm512_loadu_ps(kj + 16);         \
                __m512 k2 = _mm512_loadu_ps(kj + 32), k3 = _mm512_loadu_ps(kj + 48);    \
                for (int g = 0; g < G; g++) {                                           \
                    const float *qg = q + g * 64;                                       \
                    __m512 d = _mm512_mul_ps(_mm512_loadu_ps(qg), k0);                  \
                    d = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 16), k1, d);               \
                    d = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 32), k2, d);               \
                    d = _mm512_fmadd_ps(_mm512_loadu_ps(qg + 48), k3, d);               \
                    s[g][j] = _mm512_reduce_add_ps(d) * scale;                          \
                }                                                                       \
            }                                                                           \
            for (int g = 0; g < G; g++) {                                               \
                float bm = -INFINITY;                                                   \
                for (int64_t j = 0; j < nj; j++)                                        \
                    bm = s[g][j] > bm ? s[g][j] : bm;                                   \
                if (bm > m[g]) {                                                        \
                    float c = expf(m[g] - bm);                                          \
                    l[g] *= c;                                                          \
                    for (int i = 0; i < 4; i++)                                         \
                        acc[g][i] = _mm512_mul_ps(acc[g][i], _mm512_set1_ps(c));        \
                    m[g] = bm;                                                          \
                }                                                                       \
                l[g] += tw_exp_sub_sum_avx512(s[g], (size_t)nj, m[g]);                  \
            }                                                                           \
            for (int64_t j = 0; j < nj; j++) {                                          \
                const float *vj = v + tw_kv_off(map, j0 + j);                           \
                __m512 v0 = _mm512_loadu_ps(vj), v1 = _mm512_loadu_ps(vj + 16);         \
                __m512 v2 = _mm512_loadu_ps(vj + 32), v3 = _mm512_loadu_ps(vj + 48);    \
                for (int g = 0; g < G; g++) {                                           \
                    __m512 p = _mm512_set1_ps(s[g][j]);                                 \
                    acc[g][0] = _mm512_fmadd_ps(p, v0, acc[g][0]);                      \
                    acc[g][1] = _mm512_fmadd_ps(p, v1, acc[g][1]);                      \
                    acc[g][2] = _mm512_fmadd_ps(p, v2, acc[g][2]);                      \
                    acc[g][3] = _mm512_fmadd_ps(p, v3, acc[g][3]);                      \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        for (int g = 0; g < G; g++) {                                                   \
            __m512 inv = _mm512_set1_ps(1.0f / l[g]);                                   \
            for (int i = 0; i < 4; i++)                                                 \
                _mm512_storeu_ps(out + g * 64 + i * 16, _mm512_mul_ps(acc[g][i], inv)); \
            if (lse)                                                                    \
                lse[g] = m[g] + logf(l[g]);                                             \
        }                                                                               \
    }
G512(2)
G512(3)
G512(4)
A256(8)
A256(16)

static void attend_avx512(const float *q, const float *k, const float *v,
                          const struct tw_kv_map *map, int64_t lo, int64_t hi, int64_t D,
                          float scale, float *out, float *lse)
{
    if (D == 64)
        attend512_4(q, k, v, map, lo, hi, scale, out, lse);
    else if (D == 128)
        attend512_8(q, k, v, map, lo, hi, scale, out, lse);
    else
        attend_scalar(q, k, v, map, lo, hi, D, scale, out, lse);
}

static bool group_avx512(const float *q, const float *k, const float *v,
                         const struct tw_kv_map *map, int64_t lo, int64_t hi, int64_t D, int G,
                         float scale, float *out, float *lse)
{
    if (D != 64 || G < 2 || G > 4)
        return false;
    if (G == 2)
        group512_2(q, k, v, map, lo, hi, scale, out, lse);
    else if (G == 3)
        group512_3(q, k, v, map, lo, hi, scale, out, lse);
    else
        group512_4(q, k, v, map, lo, hi, scale, out, lse);
    return true;
}

static void attend_avx2(const float *q, const float *k, const float *v,
                        const struct tw_kv_map *map, int64_t lo, int64_t hi, int64_t D,
                        float scale, float *out, float *lse)
{
    if (D == 64)
        attend256_8(q, k, v, map, lo, hi, scale, out, lse);
    else if (D == 128)
        attend256_16(q, k, v, map, lo, hi, scale, out, lse);
    else
        attend_scalar(q, k, v, map, lo, hi, D, scale, out, lse);
}
#endif

// The G query heads of one key-value head: the grouped kernel where there is one, else the
// single-head kernel G times.
void tw_attend_group(tw_attend_fn one, enum tw_cpu_isa isa, const float *q, const float *k,
                     const float *v, const struct tw_kv_map *map, int64_t lo, int64_t hi,
                     int64_t D, int G, float scale, float *out, float *lse)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (isa == TW_ISA_AVX512 && one == attend_avx512 &&
        group_avx512(q, k, v, map, lo, hi, D, G, scale, out, lse))
        return;
#endif
    (void)isa;
    for (int g = 0; g < G; g++)
        one(q + g * D, k, v, map, lo, hi, D, scale, out + g * D, lse ? lse + g : NULL);
}

tw_attend_fn tw_attend_kernel(enum tw_cpu_isa isa)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    enum tw_cpu_isa have = tw_cpu_isa_have();
    isa = isa < have ? isa : have;
    if (isa == TW_ISA_AVX512)
        return attend_avx512;
    if (isa == TW_ISA_AVX2)
        return attend_avx2;
#endif
    (void)isa;
    return attend_scalar;
}

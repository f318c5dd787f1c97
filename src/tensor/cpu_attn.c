// One query row against a run of cached keys and values, with an online softmax (a running
// max and sum, rescaled per block of 32 keys): the decode path of the CPU backend's attention,
// where each (row, head) is its own small job. The scalar version is the portable one; the
// AVX2 and AVX-512 versions (target attributes, chosen at run time) keep the query and the
// accumulator in registers for head sizes of 64 and 128 and vectorise the dot products and
// the weighted sum of the values; exp stays scalar, one per key.
#include "tensor/cpu_int.h"

#include <assert.h>
#include <math.h>

#define BLOCK 32

static void attend_scalar(const float *q, const float *k, const float *v, int64_t kv_stride,
                          int64_t lo, int64_t hi, int64_t D, float scale, float *out)
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
            const float *kj = k + (j0 + j) * kv_stride;
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
            const float *vj = v + (j0 + j) * kv_stride;
            l += p;
            for (int64_t d = 0; d < D; d++)
                acc[d] += p * vj[d];
        }
    }
    for (int64_t d = 0; d < D; d++)
        out[d] = acc[d] / l;
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
            const float *kj = k + (j0 + j) * kv_stride;                 \
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
            const float *vj = v + (j0 + j) * kv_stride;                 \
            l += p;                                                     \
            VEC pv = SET1(p);                                           \
            for (int i = 0; i < NV; i++)                                \
                acc[i] = FMA(pv, LOAD(vj + i * W), acc[i]);             \
        }                                                               \
    }                                                                   \
    VEC inv = SET1(1.0f / l);                                           \
    for (int i = 0; i < NV; i++)                                        \
        STORE(out + i * W, MUL(acc[i], inv));

T256 static inline float hsum256(__m256 x)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

#define A512(NV)                                                                               \
    T512 static void attend512_##NV(const float *q, const float *k, const float *v,            \
                                    int64_t kv_stride, int64_t lo, int64_t hi, float scale,    \
                                    float *out)                                                \
    {                                                                                          \
        ATTEND_BODY(__m512, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, \
                    _mm512_set1_ps, _mm512_setzero_ps, _mm512_reduce_add_ps, 16, NV)           \
    }
#define A256(NV)                                                                               \
    T256 static void attend256_##NV(const float *q, const float *k, const float *v,            \
                                    int64_t kv_stride, int64_t lo, int64_t hi, float scale,    \
                                    float *out)                                                \
    {                                                                                          \
        ATTEND_BODY(__m256, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps, \
                    _mm256_set1_ps, _mm256_setzero_ps, hsum256, 8, NV)                         \
    }
A512(4)
A512(8)
A256(8)
A256(16)

static void attend_avx512(const float *q, const float *k, const float *v, int64_t kv_stride,
                          int64_t lo, int64_t hi, int64_t D, float scale, float *out)
{
    if (D == 64)
        attend512_4(q, k, v, kv_stride, lo, hi, scale, out);
    else if (D == 128)
        attend512_8(q, k, v, kv_stride, lo, hi, scale, out);
    else
        attend_scalar(q, k, v, kv_stride, lo, hi, D, scale, out);
}

static void attend_avx2(const float *q, const float *k, const float *v, int64_t kv_stride,
                        int64_t lo, int64_t hi, int64_t D, float scale, float *out)
{
    if (D == 64)
        attend256_8(q, k, v, kv_stride, lo, hi, scale, out);
    else if (D == 128)
        attend256_16(q, k, v, kv_stride, lo, hi, scale, out);
    else
        attend_scalar(q, k, v, kv_stride, lo, hi, D, scale, out);
}
#endif

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

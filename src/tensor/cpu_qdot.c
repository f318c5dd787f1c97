// Implements cpu_qdot.h: the activation quantizer and the scalar kernels (integer sums per
// block of 32 activations, scaled in float), and the choice of kernel.
// The SIMD versions live in cpu_qdot_avx2.c and cpu_qdot_avx512.c.
#include "tensor/cpu_qdot.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>

// ---- which ISA: cpu_dot.c's detection, with AVX-512 counted only when the CPU also has
// AVX-512 VNNI.
static enum tw_cpu_isa cpu_isa(void)
{
    enum tw_cpu_isa isa = tw_cpu_isa_have();
    return isa == TW_ISA_AVX512 && !tw_cpu_has_avx512_vnni() ? TW_ISA_AVX2 : isa;
}

// ---- the quantizer.

static void q8_act_quantize_scalar(const float *x, size_t n, struct tw_q8_act *out)
{
    assert(n % TW_QK8_ACT == 0);
    for (size_t b = 0; b < n / TW_QK8_ACT; b++, x += TW_QK8_ACT) {
        float a = 0.0f;
        for (int i = 0; i < TW_QK8_ACT; i++)
            a = fmaxf(a, fabsf(x[i]));
        if (a < TW_Q8_ACT_TINY)
            a = 0.0f;
        float id = a > 0.0f ? 127.0f / a : 0.0f;
        out[b].d = a / 127.0f;
        for (int i = 0; i < TW_QK8_ACT; i++)
            out[b].qs[i] = (int8_t)rintf(x[i] * id);
    }
}

tw_q8_act_fn tw_q8_act_quantizer(enum tw_cpu_isa isa)
{
    enum tw_cpu_isa have = cpu_isa();
    if (isa > have)
        isa = have;
    tw_q8_act_fn f = NULL;
    if (isa >= TW_ISA_AVX512)
        f = tw_q8_act_quantizer_avx512();
    if (!f && isa >= TW_ISA_AVX2)
        f = tw_q8_act_quantizer_avx2();
    return f ? f : q8_act_quantize_scalar;
}

void tw_q8_act_quantize(const float *x, size_t n, struct tw_q8_act *out)
{
    tw_q8_act_quantizer(tw_cpu_isa_best())(x, n, out);
}

// ---- scalar kernels: per block of 32 activations an exact integer sum, scaled in float.

static int32_t dot32(const int8_t *w, const int8_t *x, int m)
{
    int32_t s = 0;
    for (int i = 0; i < m; i++)
        s += (int32_t)w[i] * x[i];
    return s;
}

static void qdot_q8_0_scalar(const void *row, const struct tw_q8_act *x, size_t ldx, int nx,
                             size_t n, float *out)
{
    const struct tw_block_q8_0 *b = row;
    for (int j = 0; j < nx; j++) {
        const struct tw_q8_act *a = x + (size_t)j * ldx;
        float s = 0.0f;
        for (size_t i = 0; i < n / TW_QK8_0; i++)
            s += tw_f16_to_f32(b[i].d) * a[i].d * (float)dot32(b[i].qs, a[i].qs, 32);
        out[j] = s;
    }
}

static void qdot_q4_0_scalar(const void *row, const struct tw_q8_act *x, size_t ldx, int nx,
                             size_t n, float *out)
{
    const struct tw_block_q4_0 *b = row;
    for (int j = 0; j < nx; j++)
        out[j] = 0.0f;
    for (size_t i = 0; i < n / TW_QK4_0; i++) {
        int8_t w[32];
        for (int k = 0; k < 16; k++) {
            w[k] = (int8_t)((b[i].qs[k] & 0x0F) - 8);
            w[k + 16] = (int8_t)((b[i].qs[k] >> 4) - 8);
        }
        float d = tw_f16_to_f32(b[i].d);
        for (int j = 0; j < nx; j++) {
            const struct tw_q8_act *a = x + (size_t)j * ldx + i;
            out[j] += d * a->d * (float)dot32(w, a->qs, 32);
        }
    }
}

// Sub-block s of 32 (element e = 64c + 32h + i is nibble h of qs[32c + i]):
// d * sc * sum(q * x) - dmin * m * sum(x), times the activation block's scale.
static void qdot_q4_k_scalar(const void *row, const struct tw_q8_act *x, size_t ldx, int nx,
                             size_t n, float *out)
{
    const struct tw_block_q4_k *b = row;
    for (int j = 0; j < nx; j++)
        out[j] = 0.0f;
    for (size_t i = 0; i < n / TW_QK_K; i++) {
        float d = tw_f16_to_f32(b[i].d), dmin = tw_f16_to_f32(b[i].dmin);
        for (int s = 0; s < 8; s++) {
            uint8_t sc, m;
            tw_q4_k_scale_min(b[i].scales, s, &sc, &m);
            const uint8_t *qs = b[i].qs + 32 * (s / 2);
            int8_t w[32], one[32];
            for (int k = 0; k < 32; k++) {
                w[k] = (int8_t)(s % 2 ? qs[k] >> 4 : qs[k] & 0x0F);
                one[k] = 1;
            }
            for (int j = 0; j < nx; j++) {
                const struct tw_q8_act *a = x + (size_t)j * ldx + 8 * i + s;
                float t = d * (float)sc * (float)dot32(w, a->qs, 32) -
                          dmin * (float)m * (float)dot32(one, a->qs, 32);
                out[j] += a->d * t;
            }
        }
    }
}

// The 6-bit value (0..63) of element e of a Q6_K block (dtype.h's layout).
static int q6_k_value(const struct tw_block_q6_k *b, int e)
{
    int h = e / 128, g = e % 128 / 32, i = e % 32;
    uint8_t l = b->ql[64 * h + 32 * (g & 1) + i];
    int nib = g < 2 ? l & 0x0F : l >> 4;
    return nib | ((b->qh[32 * h + i] >> (2 * g) & 3) << 4);
}

// Per block of 32 activations (two sub-blocks of 16): d * x.d * sum_k sc_k * sum (q - 32) x.
static void qdot_q6_k_scalar(const void *row, const struct tw_q8_act *x, size_t ldx, int nx,
                             size_t n, float *out)
{
    const struct tw_block_q6_k *b = row;
    for (int j = 0; j < nx; j++)
        out[j] = 0.0f;
    for (size_t i = 0; i < n / TW_QK_K; i++) {
        int8_t w[TW_QK_K];
        for (int e = 0; e < TW_QK_K; e++)
            w[e] = (int8_t)(q6_k_value(&b[i], e) - 32);
        float d = tw_f16_to_f32(b[i].d);
        for (int k = 0; k < 8; k++) {
            const int8_t *wk = w + 32 * k, *sc = b[i].scales + 2 * k;
            for (int j = 0; j < nx; j++) {
                const struct tw_q8_act *a = x + (size_t)j * ldx + 8 * i + k;
                int32_t t = sc[0] * dot32(wk, a->qs, 16) + sc[1] * dot32(wk + 16, a->qs + 16, 16);
                out[j] += d * a->d * (float)t;
            }
        }
    }
}

static tw_qdot_fn kernel_scalar(enum tw_dtype t)
{
    switch (t) {
    case TW_DTYPE_Q8_0:
        return qdot_q8_0_scalar;
    case TW_DTYPE_Q4_0:
        return qdot_q4_0_scalar;
    case TW_DTYPE_Q4_K:
        return qdot_q4_k_scalar;
    case TW_DTYPE_Q6_K:
        return qdot_q6_k_scalar;
    default:
        return NULL;
    }
}

// The ISA of tw_qdot_kernel(t, isa): the highest up to isa (lowered to the CPU's) with a
// kernel for t; TW_ISA_SCALAR when none has one.
static enum tw_cpu_isa kernel_isa(enum tw_dtype t, enum tw_cpu_isa isa)
{
    enum tw_cpu_isa have = cpu_isa();
    if (isa > have)
        isa = have;
    if (isa >= TW_ISA_AVX512 && tw_qdot_kernel_avx512(t))
        return TW_ISA_AVX512;
    if (isa >= TW_ISA_AVX2 && tw_qdot_kernel_avx2(t))
        return TW_ISA_AVX2;
    return TW_ISA_SCALAR;
}

tw_qdot_fn tw_qdot_kernel(enum tw_dtype t, enum tw_cpu_isa isa)
{
    if (!kernel_scalar(t))
        return NULL;
    switch (kernel_isa(t, isa)) {
    case TW_ISA_AVX512:
        return tw_qdot_kernel_avx512(t);
    case TW_ISA_AVX2:
        return tw_qdot_kernel_avx2(t);
    default:
        return kernel_scalar(t);
    }
}

tw_qdot_k_fn tw_qdot_k_kernel(enum tw_dtype t, enum tw_cpu_isa isa)
{
    return kernel_isa(t, isa) == TW_ISA_AVX512
               ? tw_qdot_k_kernel_avx512(t, tw_cpu_has_avx512_gfni())
               : NULL;
}

void tw_q8k_act_pack(const struct tw_q8_act *x, size_t n, struct tw_q8k_act *out)
{
    assert(n % 256 == 0);
    for (size_t g = 0; g < n / 256; g++, out++) {
        for (int j = 0; j < 8; j++, x++) {
            int s = 0;
            for (int i = 0; i < TW_QK8_ACT; i++)
                s += x->qs[i];
            memcpy(out->qs + 32 * TW_Q8K_SLOT(j), x->qs, TW_QK8_ACT);
            out->v[j] = x->d;
            out->v[8 + j] = x->d * (float)s;
        }
    }
}

tw_qdot_m_fn tw_qdot_m_kernel(enum tw_dtype t, enum tw_cpu_isa isa)
{
    return kernel_isa(t, isa) == TW_ISA_AVX512
               ? tw_qdot_m_kernel_avx512(t, tw_cpu_has_avx512_gfni())
               : NULL;
}

#define Q40_BYTES 18 // sizeof(struct tw_block_q4_0): a 2-byte scale, then 16 bytes of nibbles

size_t tw_q40m_count(size_t n)
{
    return (n / 32 + TW_Q40M_BLOCKS - 1) / TW_Q40M_BLOCKS;
}

void tw_q40m_pack(const struct tw_q8_act *x, size_t b0, size_t nb, size_t kb, struct tw_q40m *out)
{
    assert(b0 + nb <= kb);
    for (size_t b = b0; b < b0 + nb; b++) {
        const struct tw_q8_act *a = x + b;
        struct tw_q40m *g = out + b / TW_Q40M_BLOCKS;
        size_t j = b % TW_Q40M_BLOCKS, at = j * Q40_BYTES, end = at + Q40_BYTES;
        bool last = b + 1 == kb; // then it clears the rest of the group: no weights meet it
        if (last)
            end = TW_Q40M_BYTES;
        for (size_t p = at; p < end; p++) {
            size_t k = p - at - 2; // the nibbles' byte k (of 16), from at + 2
            bool q = p >= at + 2 && k < 16;
            g->lo[p] = q ? a->qs[k] : 0;
            g->hi[p] = q ? a->qs[16 + k] : 0;
        }
        g->d[j] = a->d;
        for (size_t r = j + 1; last && r < TW_Q40M_BLOCKS; r++)
            g->d[r] = 0.0f;
        // the lanes whose first byte lies in [at, end)
        for (size_t l = (at + 3) / 4; l < (end + 3) / 4; l++) {
            int s = 0;
            for (size_t i = 4 * l; i < 4 * l + 4 && i < end; i++) // (past end: the next scale)
                s += g->lo[i] + g->hi[i];
            g->off[l] = -8 * s;
        }
    }
}

tw_qdot_rows_fn tw_qdot_rows_kernel(enum tw_dtype t, enum tw_cpu_isa isa)
{
    if (!kernel_scalar(t))
        return NULL;
    return kernel_isa(t, isa) == TW_ISA_AVX512 ? tw_qdot_rows_kernel_avx512(t) : NULL;
}

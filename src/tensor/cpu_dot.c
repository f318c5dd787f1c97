// Implements cpu_dot.h: the choice of kernel, and the scalar kernels: plain float code that
// decodes a block of the row once into a small buffer and sums it against each activation row. The
// SIMD kernels live in cpu_dot_avx2.c and cpu_dot_avx512.c.
#include "tensor/cpu_dot.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- scalar kernels: decode a block into w (the reference's floats), then one float sum per
// block and activation row, added to that row's total (short sums keep the float error low).

#define CHUNK 32 // elements of a float row decoded at a time

// out[j] += sum_{i < m} w[i] * x[j * ldx + i], for j < nx.
static void dot_block(const float *w, const float *x, size_t ldx, int nx, int m, float *out)
{
    for (int j = 0; j < nx; j++) {
        const float *xj = x + (size_t)j * ldx;
        float s = 0.0f;
        for (int i = 0; i < m; i++)
            s += w[i] * xj[i];
        out[j] += s;
    }
}

static void zero(float *out, int nx)
{
    for (int j = 0; j < nx; j++)
        out[j] = 0.0f;
}

static void dot_f32_scalar(const void *row, const float *x, size_t ldx, int nx, size_t n,
                           float *out)
{
    const float *r = row;
    zero(out, nx);
    for (size_t i = 0; i < n; i += CHUNK) {
        int m = n - i < CHUNK ? (int)(n - i) : CHUNK;
        dot_block(r + i, x + i, ldx, nx, m, out);
    }
}

static void dot_f16_scalar(const void *row, const float *x, size_t ldx, int nx, size_t n,
                           float *out)
{
    const uint16_t *r = row;
    float w[CHUNK];
    zero(out, nx);
    for (size_t i = 0; i < n; i += CHUNK) {
        int m = n - i < CHUNK ? (int)(n - i) : CHUNK;
        for (int k = 0; k < m; k++)
            w[k] = tw_f16_to_f32(r[i + k]);
        dot_block(w, x + i, ldx, nx, m, out);
    }
}

static void dot_bf16_scalar(const void *row, const float *x, size_t ldx, int nx, size_t n,
                            float *out)
{
    const uint16_t *r = row;
    float w[CHUNK];
    zero(out, nx);
    for (size_t i = 0; i < n; i += CHUNK) {
        int m = n - i < CHUNK ? (int)(n - i) : CHUNK;
        for (int k = 0; k < m; k++) {
            uint32_t u = (uint32_t)r[i + k] << 16;
            memcpy(&w[k], &u, sizeof u);
        }
        dot_block(w, x + i, ldx, nx, m, out);
    }
}

static void dot_q8_0_scalar(const void *row, const float *x, size_t ldx, int nx, size_t n,
                            float *out)
{
    const struct tw_block_q8_0 *b = row;
    float w[TW_QK8_0];
    zero(out, nx);
    for (size_t i = 0; i < n / TW_QK8_0; i++, b++) {
        float d = tw_f16_to_f32(b->d);
        for (int k = 0; k < TW_QK8_0; k++)
            w[k] = (float)b->qs[k] * d;
        dot_block(w, x + i * TW_QK8_0, ldx, nx, TW_QK8_0, out);
    }
}

static void dot_q4_0_scalar(const void *row, const float *x, size_t ldx, int nx, size_t n,
                            float *out)
{
    const struct tw_block_q4_0 *b = row;
    float w[TW_QK4_0];
    zero(out, nx);
    for (size_t i = 0; i < n / TW_QK4_0; i++, b++) {
        float d = tw_f16_to_f32(b->d);
        for (int k = 0; k < TW_QK4_0 / 2; k++) {
            w[k] = (float)((b->qs[k] & 0x0F) - 8) * d;
            w[k + 16] = (float)((b->qs[k] >> 4) - 8) * d;
        }
        dot_block(w, x + i * TW_QK4_0, ldx, nx, TW_QK4_0, out);
    }
}

static void dot_q4_k_scalar(const void *row, const float *x, size_t ldx, int nx, size_t n,
                            float *out)
{
    const struct tw_block_q4_k *b = row;
    float w[64];
    zero(out, nx);
    for (size_t i = 0; i < n / TW_QK_K; i++, b++) {
        float d = tw_f16_to_f32(b->d), dmin = tw_f16_to_f32(b->dmin);
        for (int c = 0; c < 4; c++) { // 64 elements: sub-blocks 2c (low nibbles), 2c+1 (high)
            uint8_t sc, m;
            tw_q4_k_scale_min(b->scales, 2 * c, &sc, &m);
            float d1 = d * (float)sc, m1 = dmin * (float)m;
            tw_q4_k_scale_min(b->scales, 2 * c + 1, &sc, &m);
            float d2 = d * (float)sc, m2 = dmin * (float)m;
            const uint8_t *qs = b->qs + 32 * c;
            for (int k = 0; k < 32; k++) {
                w[k] = d1 * (float)(qs[k] & 0x0F) - m1;
                w[32 + k] = d2 * (float)(qs[k] >> 4) - m2;
            }
            dot_block(w, x + i * TW_QK_K + 64 * c, ldx, nx, 64, out);
        }
    }
}

static void dot_q6_k_scalar(const void *row, const float *x, size_t ldx, int nx, size_t n,
                            float *out)
{
    const struct tw_block_q6_k *b = row;
    float w[128];
    zero(out, nx);
    for (size_t i = 0; i < n / TW_QK_K; i++, b++) {
        float d = tw_f16_to_f32(b->d);
        for (int h = 0; h < 2; h++) { // 128 elements
            const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            const int8_t *sc = b->scales + 8 * h;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                w[l] = d * (float)sc[is] * (float)q1;
                w[l + 32] = d * (float)sc[is + 2] * (float)q2;
                w[l + 64] = d * (float)sc[is + 4] * (float)q3;
                w[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
            dot_block(w, x + i * TW_QK_K + 128 * h, ldx, nx, 128, out);
        }
    }
}

static tw_dot_fn kernel_scalar(enum tw_dtype t)
{
    switch (t) {
    case TW_DTYPE_F32:
        return dot_f32_scalar;
    case TW_DTYPE_F16:
        return dot_f16_scalar;
    case TW_DTYPE_BF16:
        return dot_bf16_scalar;
    case TW_DTYPE_Q8_0:
        return dot_q8_0_scalar;
    case TW_DTYPE_Q4_0:
        return dot_q4_0_scalar;
    case TW_DTYPE_Q4_K:
        return dot_q4_k_scalar;
    case TW_DTYPE_Q6_K:
        return dot_q6_k_scalar;
    default:
        return NULL;
    }
}

tw_dot_fn tw_dot_kernel(enum tw_dtype t, enum tw_cpu_isa isa)
{
    tw_dot_fn f = kernel_scalar(t);
    if (!f)
        return NULL;
    enum tw_cpu_isa have = tw_cpu_isa_have();
    if (isa > have)
        isa = have;
    tw_dot_fn g = NULL;
    if (isa >= TW_ISA_AVX512)
        g = tw_dot_kernel_avx512(t);
    if (!g && isa >= TW_ISA_AVX2)
        g = tw_dot_kernel_avx2(t);
    return g ? g : f;
}

// ---- the int8 kernels' prefetch distances (cpu_dot.h)

// From the cache: one prefetcht0 4 KiB ahead. From DRAM: prefetcht0 2 KiB ahead and prefetcht1
// 16 KiB ahead (the development VM, docs/perf.md: the 1B's q8_0 decode at one thread from 72 %
// of its roofline to 82 %, q4_0 and q4_K a few points; SmolLM2, whose weights stay in the L3,
// lost 7 % with it).
static const struct tw_dot_stream in_cache = { TW_DOT_PREFETCH, 0 }, in_dram = { 2048, 16384 };
struct tw_dot_stream tw_dot_stream_cfg = { TW_DOT_PREFETCH, 0 }; // in_cache

static struct tw_dot_stream stream_over; // TWIN_DOT_PREFETCH's, when stream_env
static bool stream_env;
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;

static void stream_read_env(void)
{
    const char *e = getenv("TWIN_DOT_PREFETCH");
    unsigned n = 0, f = 0;
    stream_env = e && sscanf(e, "%u,%u", &n, &f) == 2 && n <= 65536 && f <= 1048576;
    stream_over = (struct tw_dot_stream){ n, f };
}

// Called before every matmul: it stores only a change, so that the threads' copies of the
// line stay valid from one matmul to the next.
void tw_dot_stream_set(bool from_dram)
{
    pthread_once(&stream_once, stream_read_env);
    const struct tw_dot_stream *s = stream_env ? &stream_over : from_dram ? &in_dram : &in_cache;
    if (tw_dot_stream_cfg.near != s->near || tw_dot_stream_cfg.far != s->far)
        tw_dot_stream_cfg = *s;
}

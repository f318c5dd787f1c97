// The fast CPU backend: matmuls through the SIMD dot kernels of cpu_dot.h (decode: one
// weight row read once for up to 8 activation rows) or through OpenBLAS' sgemm on
// dequantised tiles of the weights (prefill); attention with an online softmax per
// (token, head); OpenMP threads over rows. Ops without a fast path run the reference.
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/backend.h"
#include "tensor/cpu_dot.h"
#include "tensor/cpu_int.h"

// Batches of more activation rows than this go to sgemm.
#define GEMM_MIN_ROWS 16
// Work (multiply-adds) under which an op stays on the calling thread.
#define PAR_MIN (1 << 16)
// Bytes of dequantised weights per sgemm tile.
#define TILE_BYTES (8u << 20)

struct cpu_impl {
    tw_dot_fn dot[TW_DTYPE_COUNT];
    float *tile; // TILE_BYTES
};

static float *f32(const struct tw_tensor *t)
{
    return (float *)t->data;
}

static struct cpu_impl *impl(struct tw_backend *be)
{
    return be->impl;
}

// y (T, N) for T <= GEMM_MIN_ROWS: each thread takes a range of weight rows and streams each
// row once against up to 8 activation rows at a time.
static void matmul_dot(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                       const struct tw_tensor *w, const struct tw_tensor *bias)
{
    int64_t T = tw_tensor_nrows(x), K = w->ne[1], N = w->ne[0];
    tw_dot_fn dot = impl(be)->dot[w->dtype];
    const float *xs = f32(x), *b = bias ? f32(bias) : NULL;
    float *ys = f32(y);
#pragma omp parallel for num_threads(be->n_threads) schedule(static) if (N * K * T >= PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const void *row = tw_tensor_row(w, n);
        float out[8];
        for (int64_t t0 = 0; t0 < T; t0 += 8) {
            int nx = T - t0 < 8 ? (int)(T - t0) : 8;
            dot(row, xs + t0 * K, (size_t)K, nx, (size_t)K, out);
            for (int j = 0; j < nx; j++)
                ys[(t0 + j) * N + n] = b ? out[j] + b[n] : out[j];
        }
    }
}

static void matmul_gemm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, const struct tw_tensor *bias)
{
    int64_t T = tw_tensor_nrows(x), K = w->ne[1], N = w->ne[0];
    if (w->dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(w)) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)N, (int)K, 1.0f, f32(x),
                    (int)K, w->data, (int)K, 0.0f, f32(y), (int)N);
    } else {
        float *tile = impl(be)->tile;
        int64_t rows = (int64_t)(TILE_BYTES / sizeof(float)) / K;
        assert(rows > 0);
        for (int64_t n0 = 0; n0 < N; n0 += rows) {
            int64_t nr = N - n0 < rows ? N - n0 : rows;
#pragma omp parallel for num_threads(be->n_threads) schedule(static)
            for (int64_t r = 0; r < nr; r++)
                tw_dequantize_row(w->dtype, tw_tensor_row(w, n0 + r), tile + r * K, (size_t)K);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)nr, (int)K, 1.0f,
                        f32(x), (int)K, tile, (int)K, 0.0f, f32(y) + n0, (int)N);
        }
    }
    if (bias) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++)
                f32(y)[t * N + n] += f32(bias)[n];
    }
}

static void cpu_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                       const struct tw_tensor *w, const struct tw_tensor *bias)
{
    int64_t K = w->ne[1];
    if (tw_tensor_nrows(x) > GEMM_MIN_ROWS && K * (int64_t)sizeof(float) <= TILE_BYTES)
        matmul_gemm(be, y, x, w, bias);
    else
        matmul_dot(be, y, x, w, bias);
}

// One query row against keys [lo, hi), with a running max and sum (online softmax) so that
// no score buffer is needed; blocks of 32 keys keep the rescaling rare.
static void attend_row(const float *q, const float *k, const float *v, int64_t kv_stride,
                       int64_t lo, int64_t hi, int64_t D, float scale, float *out)
{
    float acc[512];
    float s[32];
    assert(D <= 512);
    float m = -INFINITY, l = 0;
    for (int64_t d = 0; d < D; d++)
        acc[d] = 0;
    for (int64_t j0 = lo; j0 < hi; j0 += 32) {
        int64_t nj = hi - j0 < 32 ? hi - j0 : 32;
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

static void cpu_attention(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                          const struct tw_tensor *k, const struct tw_tensor *v,
                          const struct tw_attn *a)
{
    int64_t T = q->ne[0], H = a->n_head, D = a->head_dim, S = k->ne[0];
    int64_t Hkv = a->n_head_kv, group = H / Hkv;
#pragma omp parallel for num_threads(be->n_threads) schedule(dynamic, 1) collapse(2) \
    if (T * H * S * D >= PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < H; h++) {
            int64_t lo, hi;
            tw_attn_range(a, a->n_past + t, S, &lo, &hi);
            int64_t kvh = h / group;
            attend_row(f32(q) + (t * H + h) * D, f32(k) + kvh * D, f32(v) + kvh * D, Hkv * D, lo,
                       hi, D, a->scale, f32(out) + (t * H + h) * D);
        }
    }
}

static void cpu_free(struct tw_backend *be)
{
    tw_free(impl(be)->tile);
    tw_free(be->impl);
    tw_free(be);
}

static struct tw_backend_ops cpu_ops; // tw_cpu_ref_ops with the fast ops put in
static pthread_once_t cpu_ops_once = PTHREAD_ONCE_INIT;

static void cpu_ops_init(void)
{
    cpu_ops = tw_cpu_ref_ops;
    cpu_ops.name = "cpu";
    cpu_ops.free = cpu_free;
    cpu_ops.matmul = cpu_matmul;
    cpu_ops.attention = cpu_attention;
}

int tw_backend_cpu_new(int n_threads, struct tw_backend **out)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    struct tw_backend *be = tw_calloc(1, sizeof *be);
    struct cpu_impl *im = tw_calloc(1, sizeof *im);
    float *tile = tw_malloc(TILE_BYTES);
    if (!be || !im || !tile) {
        tw_free(be);
        tw_free(im);
        tw_free(tile);
        return tw_error_set(TW_ENOMEM, "cpu backend: out of memory");
    }
    im->tile = tile;
    enum tw_cpu_isa isa = tw_cpu_isa_best();
    for (int t = 0; t < TW_DTYPE_COUNT; t++)
        im->dot[t] = tw_dot_kernel((enum tw_dtype)t, isa);
    pthread_once(&cpu_ops_once, cpu_ops_init);
    openblas_set_num_threads(n_threads);
    be->ops = &cpu_ops;
    be->device = TW_DEVICE_CPU;
    be->n_threads = n_threads;
    be->impl = im;
    *out = be;
    return 0;
}

// The CUDA backend's row-wise ops against the reference backend on fresh random inputs, at
// sizes that are not multiples of a block: RMSNorm (with and without weights), LayerNorm,
// RoPE (both pairings, partial rotation) and RoPE with the KV cache store, softmax, SwiGLU,
// every activation, add, the four poolings, L2 normalisation; and the memory ops (alloc,
// upload, copy, download, and an error reported by sync). Outputs are poisoned with NaN
// first, so an unwritten element fails. Run by `make test-cuda` on the GPU machine.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "cuda/cuda_check.h"
#include "tensor/backend.h"
#include "tensor/cuda.h"

static struct tw_backend *gpu;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

// ‖got − want‖ / ‖want‖ of the device array against the host one; NaN when any element is.
static double rel_err(const float *dev, const float *want, size_t n)
{
    float *got = tw_malloc_array(n, sizeof(float));
    REQUIRE(got);
    CHECK_OK(tw_backend_download(gpu, got, dev, n * sizeof(float)));
    double d = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]))
            d = NAN;
        d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        w += (double)want[i] * want[i];
    }
    tw_free(got);
    return sqrt(d) / (w > 0 ? sqrt(w) : 1);
}

static void expect(const char *what, double err, double tol)
{
    if (!(err <= tol))
        fprintf(stderr, "%s: relative error %g (tolerance %g)\n", what, err, tol);
    CHECK(err <= tol);
}

static void rows_ops(int64_t R, int64_t C)
{
    size_t n = (size_t)(R * C);
    float *x = host_random(&rng, n, 3.0f), *w = host_random(&rng, (size_t)C, 1.0f);
    float *b = host_random(&rng, (size_t)C, 0.5f), *y = tw_malloc_array(n, sizeof(float));
    float *dx = dev_of(gpu, x, n), *dw = dev_of(gpu, w, (size_t)C),
          *db = dev_of(gpu, b, (size_t)C);
    struct tw_backend *ref = tw_backend_cpu_ref();
    struct tw_tensor hx = tw_tensor_f32_2d(x, R, C), hy = tw_tensor_f32_2d(y, R, C);
    struct tw_tensor hw = tw_tensor_f32_1d(w, C), hb = tw_tensor_f32_1d(b, C);
    struct tw_tensor gx = tw_tensor_f32_2d(dx, R, C), gw = tw_tensor_f32_1d(dw, C);
    struct tw_tensor gb = tw_tensor_f32_1d(db, C);
    char what[96];

    float *dy = dev_poisoned(gpu, n);
    struct tw_tensor gy = tw_tensor_f32_2d(dy, R, C);
    for (int with_w = 0; with_w < 2; with_w++) {
        tw_rmsnorm(ref, &hy, &hx, with_w ? &hw : NULL, 1e-5f);
        tw_rmsnorm(gpu, &gy, &gx, with_w ? &gw : NULL, 1e-5f);
        snprintf(what, sizeof what, "rmsnorm %lldx%lld w=%d", (long long)R, (long long)C, with_w);
        expect(what, rel_err(dy, y, n), 1e-6);
    }
    tw_layernorm(ref, &hy, &hx, &hw, &hb, 1e-12f);
    tw_layernorm(gpu, &gy, &gx, &gw, &gb, 1e-12f);
    snprintf(what, sizeof what, "layernorm %lldx%lld", (long long)R, (long long)C);
    expect(what, rel_err(dy, y, n), 1e-6);

    // Softmax in place on copies.
    memcpy(y, x, n * sizeof(float));
    tw_softmax(ref, &hy);
    tw_backend_copy(gpu, dy, dx, n * sizeof(float));
    tw_softmax(gpu, &gy);
    snprintf(what, sizeof what, "softmax %lldx%lld", (long long)R, (long long)C);
    expect(what, rel_err(dy, y, n), 1e-6);

    memcpy(y, x, n * sizeof(float));
    tw_l2norm(ref, &hy);
    tw_backend_copy(gpu, dy, dx, n * sizeof(float));
    tw_l2norm(gpu, &gy);
    expect("l2norm", rel_err(dy, y, n), 1e-6);

    // Elementwise: SwiGLU, add, the activations.
    float *u = host_random(&rng, n, 2.0f), *du = dev_of(gpu, u, n);
    struct tw_tensor hu = tw_tensor_f32_2d(u, R, C), gu = tw_tensor_f32_2d(du, R, C);
    tw_swiglu(ref, &hy, &hx, &hu);
    tw_swiglu(gpu, &gy, &gx, &gu);
    expect("swiglu", rel_err(dy, y, n), 1e-6);
    tw_add(ref, &hy, &hx, &hu);
    tw_add(gpu, &gy, &gx, &gu);
    expect("add", rel_err(dy, y, n), 1e-7);
    // the same one float into the arrays: not 16-byte aligned, element by element
    struct tw_tensor hx1 = tw_tensor_f32_1d(x + 1, (int64_t)n - 1);
    struct tw_tensor hu1 = tw_tensor_f32_1d(u + 1, (int64_t)n - 1);
    struct tw_tensor hy1 = tw_tensor_f32_1d(y + 1, (int64_t)n - 1);
    struct tw_tensor gx1 = tw_tensor_f32_1d(dx + 1, (int64_t)n - 1);
    struct tw_tensor gu1 = tw_tensor_f32_1d(du + 1, (int64_t)n - 1);
    struct tw_tensor gy1 = tw_tensor_f32_1d(dy + 1, (int64_t)n - 1);
    tw_swiglu(ref, &hy1, &hx1, &hu1);
    tw_swiglu(gpu, &gy1, &gx1, &gu1);
    expect("swiglu (unaligned)", rel_err(dy + 1, y + 1, n - 1), 1e-6);
    tw_add(ref, &hy1, &hx1, &hu1);
    tw_add(gpu, &gy1, &gx1, &gu1);
    expect("add (unaligned)", rel_err(dy + 1, y + 1, n - 1), 1e-7);
    static const enum tw_act acts[] = { TW_ACT_GELU, TW_ACT_GELU_TANH, TW_ACT_SILU, TW_ACT_TANH,
                                        TW_ACT_RELU };
    for (size_t a = 0; a < sizeof acts / sizeof *acts; a++) {
        tw_act(ref, &hy, &hx, acts[a]);
        tw_act(gpu, &gy, &gx, acts[a]);
        snprintf(what, sizeof what, "act %zu", a);
        expect(what, rel_err(dy, y, n), 1e-6);
    }

    // Pooling over the R rows.
    static const enum tw_pooling pools[] = { TW_POOL_MEAN, TW_POOL_CLS, TW_POOL_MAX,
                                             TW_POOL_LAST };
    float *dp = dev_poisoned(gpu, (size_t)C);
    struct tw_tensor hp = tw_tensor_f32_1d(y, C), gp = tw_tensor_f32_1d(dp, C);
    for (size_t p = 0; p < sizeof pools / sizeof *pools; p++) {
        tw_pooling(ref, &hp, &hx, pools[p]);
        tw_pooling(gpu, &gp, &gx, pools[p]);
        snprintf(what, sizeof what, "pool %zu", p);
        expect(what, rel_err(dp, y, (size_t)C), 1e-6);
    }

    CHECK_OK(tw_backend_sync(gpu));
    tw_backend_release(gpu, dp);
    tw_backend_release(gpu, du);
    tw_backend_release(gpu, dy);
    tw_backend_release(gpu, dx);
    tw_backend_release(gpu, dw);
    tw_backend_release(gpu, db);
    tw_free(x), tw_free(w), tw_free(b), tw_free(y), tw_free(u);
}

static void rope(int64_t T, int64_t H, int64_t D, int32_t n_rot, bool neox)
{
    size_t n = (size_t)(T * H * D);
    float *x = host_random(&rng, n, 1.0f),
          *freq = tw_malloc_array((size_t)n_rot / 2, sizeof(float));
    int32_t *pos = tw_malloc_array((size_t)T, sizeof(int32_t));
    REQUIRE(freq && pos);
    for (int32_t i = 0; i < n_rot / 2; i++)
        freq[i] = powf(500000.0f, -2.0f * (float)i / (float)n_rot);
    for (int64_t t = 0; t < T; t++)
        pos[t] = (int32_t)(t * 37 % 5000); // positions far along, not in order
    float *dx = dev_of(gpu, x, n);
    struct tw_rope r = { .head_dim = (int32_t)D, .n_rot = n_rot, .neox = neox, .inv_freq = freq };
    struct tw_tensor hx = tw_tensor_f32_3d(x, T, H, D), gx = tw_tensor_f32_3d(dx, T, H, D);
    tw_rope(tw_backend_cpu_ref(), &hx, pos, &r);
    tw_rope(gpu, &gx, pos, &r);
    char what[96];
    snprintf(what, sizeof what, "rope T=%lld H=%lld D=%lld rot=%d neox=%d", (long long)T,
             (long long)H, (long long)D, n_rot, neox);
    expect(what, rel_err(dx, x, n), 1e-6);
    tw_backend_release(gpu, dx);
    tw_free(x), tw_free(freq), tw_free(pos);
}

// tw_rope_store against the reference's rope and set_rows: q (T, H, D) and k (T, Hkv, D)
// rotated, k and v stored at scattered rows of caches of S rows (poisoned: the rows written
// are compared, the others must stay NaN).
static void rope_store(int64_t T, int64_t H, int64_t Hkv, int64_t D, int32_t n_rot, bool neox)
{
    const int64_t S = 3 * T + 5, kvd = Hkv * D;
    size_t nq = (size_t)(T * H * D), nk = (size_t)(T * kvd), nc = (size_t)(S * kvd);
    float *q = host_random(&rng, nq, 1.0f), *k = host_random(&rng, nk, 1.0f);
    float *v = host_random(&rng, nk, 1.0f), *freq = tw_malloc_array((size_t)n_rot / 2, 4);
    float *kc = tw_malloc_array(nc, sizeof(float)), *vc = tw_malloc_array(nc, sizeof(float));
    int32_t *pos = tw_malloc_array((size_t)T, sizeof(int32_t));
    int32_t *rows = tw_malloc_array((size_t)T, sizeof(int32_t));
    REQUIRE(freq && kc && vc && pos && rows);
    for (int32_t i = 0; i < n_rot / 2; i++)
        freq[i] = powf(10000.0f, -2.0f * (float)i / (float)n_rot);
    for (int64_t t = 0; t < T; t++) {
        pos[t] = (int32_t)(100 + t * 13);
        rows[t] = (int32_t)((t * 3 + 2) % S); // distinct: 3 and S are coprime (S % 3 == 2)
    }
    for (size_t i = 0; i < nc; i++)
        kc[i] = vc[i] = NAN;
    float *dq = dev_of(gpu, q, nq), *dk = dev_of(gpu, k, nk), *dv = dev_of(gpu, v, nk);
    float *dkc = dev_poisoned(gpu, nc), *dvc = dev_poisoned(gpu, nc);
    struct tw_rope r = { .head_dim = (int32_t)D, .n_rot = n_rot, .neox = neox, .inv_freq = freq };
    struct tw_tensor hq = tw_tensor_f32_3d(q, T, H, D), hk = tw_tensor_f32_3d(k, T, Hkv, D);
    struct tw_tensor hv = tw_tensor_f32_2d(v, T, kvd), gv = tw_tensor_f32_2d(dv, T, kvd);
    struct tw_tensor gq = tw_tensor_f32_3d(dq, T, H, D), gk = tw_tensor_f32_3d(dk, T, Hkv, D);
    tw_rope_store(tw_backend_cpu_ref(), &hq, &hk, &hv, pos, &r, kc, vc, rows);
    tw_rope_store(gpu, &gq, &gk, &gv, pos, &r, dkc, dvc, rows);
    // The rows not written are NaN on both sides: compare the written ones.
    float *gkc = tw_malloc_array(nc, sizeof(float)), *gvc = tw_malloc_array(nc, sizeof(float));
    REQUIRE(gkc && gvc);
    CHECK_OK(tw_backend_download(gpu, gkc, dkc, nc * sizeof(float)));
    CHECK_OK(tw_backend_download(gpu, gvc, dvc, nc * sizeof(float)));
    size_t mismatched = 0;
    for (size_t i = 0; i < nc; i++) {
        bool ref_nan = isnan(kc[i]);
        if (ref_nan != (bool)isnan(gkc[i]) || ref_nan != (bool)isnan(gvc[i]) ||
            (!ref_nan && (fabsf(kc[i] - gkc[i]) > 1e-6f * (1 + fabsf(kc[i])) || vc[i] != gvc[i])))
            mismatched++;
    }
    char what[112];
    snprintf(what, sizeof what, "rope_store T=%lld H=%lld/%lld D=%lld rot=%d neox=%d",
             (long long)T, (long long)H, (long long)Hkv, (long long)D, n_rot, neox);
    if (mismatched)
        fprintf(stderr, "%s: %zu cache values differ\n", what, mismatched);
    CHECK_EQ_INT(mismatched, 0);
    expect(what, rel_err(dq, q, nq), 1e-6);
    expect(what, rel_err(dk, k, nk), 1e-6);
    float *bufs[] = { dq, dk, dv, dkc, dvc };
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        tw_backend_release(gpu, bufs[i]);
    tw_free(q), tw_free(k), tw_free(v), tw_free(freq), tw_free(kc), tw_free(vc);
    tw_free(gkc), tw_free(gvc), tw_free(pos), tw_free(rows);
}

static void memory(void)
{
    // A block released is reused for a request it fits.
    void *a = tw_backend_alloc(gpu, 3 << 20);
    REQUIRE(a);
    tw_backend_release(gpu, a);
    void *b = tw_backend_alloc(gpu, (3 << 20) - 1000);
    CHECK(a == b);
    tw_backend_release(gpu, b);
    // Round trip through copy.
    size_t n = 100003;
    float *h = host_random(&rng, n, 1.0f), *d1 = dev_of(gpu, h, n), *d2 = dev_poisoned(gpu, n);
    tw_backend_copy(gpu, d2, d1, n * sizeof(float));
    CHECK(rel_err(d2, h, n) == 0.0);
    // An impossible allocation fails with a message, and the backend goes on working.
    CHECK(tw_backend_alloc(gpu, (size_t)1 << 50) == NULL);
    CHECK(strstr(tw_error_msg(), "device memory") != NULL);
    CHECK(rel_err(d1, h, n) == 0.0);
    tw_backend_release(gpu, d1);
    tw_backend_release(gpu, d2);
    tw_free(h);
}

int main(void)
{
    REQUIRE(tw_backend_cuda_new(0, &gpu) == 0);
    memory();
    // (rows of a multiple of 4 floats up to 1024, LayerNorm, or 2048, RMSNorm: the norms' warp
    // a row kernel; the others: a block a row)
    int64_t shapes[][2] = { { 1, 1 },    { 3, 64 },  { 7, 1000 },   { 33, 2049 }, { 2, 8192 },
                            { 37, 384 }, { 9, 100 }, { 300, 1024 }, { 5, 2048 } };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        rows_ops(shapes[i][0], shapes[i][1]);
    rope(1, 4, 64, 64, true);
    rope(5, 3, 128, 128, false);
    rope(17, 2, 96, 32, true); // partial rotation
    rope(130, 8, 16, 16, false);
    rope_store(1, 32, 8, 64, 64, true);
    rope_store(5, 4, 2, 128, 128, false);
    rope_store(7, 6, 3, 96, 32, true); // partial rotation: k's other dims copied
    rope_store(40, 9, 3, 16, 16, false);
    // rows enough for eight heads a warp (the angles computed once for them): groups that
    // straddle q's and k's heads, a last group short, partial rotation
    rope(2200, 8, 64, 64, true);
    rope_store(1100, 12, 4, 64, 32, true);
    rope_store(1500, 9, 3, 64, 64, false);
    CHECK_OK(tw_backend_sync(gpu));
    tw_backend_free(gpu);
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("cuda_ops");
}

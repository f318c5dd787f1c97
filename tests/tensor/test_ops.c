// Tests src/tensor: the reference ops on values worked out by hand (norms, RoPE, attention,
// softmax, activations, pooling), then the fast CPU backend against the reference on random
// inputs for every op — matmul for every weight dtype on both its paths (dot kernels and
// sgemm tiles), attention with grouped heads, a cache prefix and a sliding window; top-k by
// hand and against a full sort, on the reference, the fast and the profiling backends.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "rand.h"
#include "tensor/backend.h"
#include "tensor/cpu_gemm.h"
#include "tensor/cpu_int.h"
#include "tensor/cpu_qdot.h"
#include "tensor/grad.h"
#include "tensor/profile.h"

static void test_reference_values(void)
{
    struct tw_backend *be = tw_backend_cpu_ref();
    // rmsnorm of (3, 4): mean square 12.5.
    float x[2] = { 3, 4 }, y[2], w[2] = { 1, 2 };
    struct tw_tensor tx = tw_tensor_f32_2d(x, 1, 2), ty = tw_tensor_f32_2d(y, 1, 2);
    struct tw_tensor tw = tw_tensor_f32_1d(w, 2);
    tw_rmsnorm(be, &ty, &tx, &tw, 0);
    CHECK(fabsf(y[0] - 3 / sqrtf(12.5f)) < 1e-6f && fabsf(y[1] - 8 / sqrtf(12.5f)) < 1e-6f);
    // layernorm of (1, 3): mean 2, variance 1.
    float b[2] = { 0.5f, -0.5f };
    struct tw_tensor tb = tw_tensor_f32_1d(b, 2);
    x[0] = 1, x[1] = 3;
    tw_layernorm(be, &ty, &tx, &tw, &tb, 0);
    CHECK(fabsf(y[0] - (-1 + 0.5f)) < 1e-6f && fabsf(y[1] - (2 - 0.5f)) < 1e-6f);
    // RoPE: (1, 0, 0, 1) at position 1 with frequencies (pi/2, pi): neox pairs (0,2), (1,3).
    float inv[2] = { (float)M_PI / 2, (float)M_PI };
    float q[4] = { 1, 0, 0, 1 };
    struct tw_tensor tq = tw_tensor_f32_3d(q, 1, 1, 4);
    struct tw_rope r = { .head_dim = 4, .n_rot = 4, .neox = true, .inv_freq = inv };
    int32_t pos = 1;
    tw_rope(be, &tq, &pos, &r);
    // pair (0,2) rotated by pi/2: (1,0) -> (0,1); pair (1,3) by pi: (0,1) -> (0,-1).
    CHECK(fabsf(q[0]) < 1e-6f && fabsf(q[2] - 1) < 1e-6f);
    CHECK(fabsf(q[1]) < 1e-6f && fabsf(q[3] + 1) < 1e-6f);
    float q2[4] = { 1, 0, 0, 1 };
    tq.data = q2;
    r.neox = false; // pairs (0,1) by pi/2, (2,3) by pi
    tw_rope(be, &tq, &pos, &r);
    CHECK(fabsf(q2[0]) < 1e-6f && fabsf(q2[1] - 1) < 1e-6f);
    CHECK(fabsf(q2[2]) < 1e-6f && fabsf(q2[3] + 1) < 1e-6f);
    // Attention: one query, two keys with scores 0 and ln 3 -> weights 1/4, 3/4.
    float qa[1] = { 1 }, k[2] = { 0, logf(3) }, v[2] = { 10, 20 }, o[1];
    struct tw_tensor tqa = tw_tensor_f32_3d(qa, 1, 1, 1), tk = tw_tensor_f32_3d(k, 2, 1, 1);
    struct tw_tensor tv = tw_tensor_f32_3d(v, 2, 1, 1), to = tw_tensor_f32_2d(o, 1, 1);
    struct tw_attn a = {
        .n_head = 1, .n_head_kv = 1, .head_dim = 1, .scale = 1, .causal = true, .n_past = 1
    };
    tw_attention(be, &to, &tqa, &tk, &tv, &a);
    CHECK(fabsf(o[0] - 17.5f) < 1e-5f);
    a.window = 1; // sees only itself
    tw_attention(be, &to, &tqa, &tk, &tv, &a);
    CHECK(fabsf(o[0] - 20) < 1e-5f);
    // softmax, activations, pooling, l2norm.
    float s[3] = { 0, logf(2), logf(5) };
    struct tw_tensor ts = tw_tensor_f32_2d(s, 1, 3);
    tw_softmax(be, &ts);
    CHECK(fabsf(s[0] - 0.125f) < 1e-6f && fabsf(s[2] - 0.625f) < 1e-6f);
    float g[3] = { 1, -2, 0 }, ga[3];
    struct tw_tensor tg = tw_tensor_f32_1d(g, 3), tga = tw_tensor_f32_1d(ga, 3);
    tw_act(be, &tga, &tg, TW_ACT_GELU);
    CHECK(fabsf(ga[0] - 0.8413447f) < 1e-6f && fabsf(ga[1] + 0.0455003f) < 1e-6f);
    tw_act(be, &tga, &tg, TW_ACT_SILU);
    CHECK(fabsf(ga[0] - 0.7310586f) < 1e-6f && ga[2] == 0);
    float p[6] = { 1, 2, 3, 4, 5, 9 }, py[2];
    struct tw_tensor tp = tw_tensor_f32_2d(p, 3, 2), tpy = tw_tensor_f32_1d(py, 2);
    tw_pooling(be, &tpy, &tp, TW_POOL_MEAN);
    CHECK(py[0] == 3 && py[1] == 5);
    tw_pooling(be, &tpy, &tp, TW_POOL_CLS);
    CHECK(py[0] == 1 && py[1] == 2);
    tw_pooling(be, &tpy, &tp, TW_POOL_MAX);
    CHECK(py[0] == 5 && py[1] == 9);
    tw_l2norm(be, &tx);
    CHECK(fabsf(x[0] - 1 / sqrtf(10)) < 1e-6f && fabsf(x[1] - 3 / sqrtf(10)) < 1e-6f);
}

// What the fast backend multiplies block-quantised weights with at decode sizes (T <= 16):
// the activations rounded to int8 blocks (cpu_qdot.h); and bf16 weights at larger T, where
// the CPU has the bf16 GEMM (cpu_gemm.h): the activations rounded to bf16. A copy of x as
// those values when dt and T are such, so that the reference sees the same input; else a
// plain copy. The rounding itself is checked separately, against the unrounded reference.
static float *fast_input(enum tw_dtype dt, const float *x, int64_t T, int64_t K)
{
    float *xr = tw_malloc((size_t)(T * K) * sizeof(float));
    REQUIRE(xr);
    memcpy(xr, x, (size_t)(T * K) * sizeof(float));
    if (T > 16 && dt == TW_DTYPE_BF16 && tw_gemm_bf16_usable(tw_cpu_isa_best())) {
        for (int64_t i = 0; i < T * K; i++)
            xr[i] = tw_bf16_to_f32(tw_f32_to_bf16(x[i]));
        return xr;
    }
    if (T > 16 || tw_qdot_kernel(dt, TW_ISA_SCALAR) == NULL)
        return xr;
    struct tw_q8_act *q = tw_malloc_array((size_t)(T * K / TW_QK8_ACT), sizeof *q);
    REQUIRE(q);
    tw_q8_act_quantize(x, (size_t)(T * K), q);
    for (int64_t i = 0; i < T * K; i++)
        xr[i] = q[i / TW_QK8_ACT].d * (float)q[i / TW_QK8_ACT].qs[i % TW_QK8_ACT];
    tw_free(q);
    return xr;
}

// Fast matmul against the reference for one dtype and T activation rows.
static void check_matmul(struct tw_backend *fast, enum tw_dtype dt, int64_t T, int64_t N,
                         int64_t K, bool with_bias)
{
    float *wf = rand_buf((size_t)(N * K));
    size_t row_bytes = 0;
    REQUIRE(tw_dtype_nbytes(dt, (size_t)K, &row_bytes) == 0);
    void *wq = tw_malloc(row_bytes * (size_t)N);
    REQUIRE(wq);
    for (int64_t n = 0; n < N; n++)
        tw_quantize_row(dt, wf + n * K, (char *)wq + (size_t)n * row_bytes, (size_t)K);
    struct tw_tensor w;
    REQUIRE(tw_tensor_init(&w, dt, 2, (int64_t[]){ N, K }, wq, "w") == 0);
    float *x = rand_buf((size_t)(T * K)), *bias = rand_buf((size_t)N);
    float *y0 = tw_malloc((size_t)(T * N) * sizeof(float));
    float *y1 = tw_malloc((size_t)(T * N) * sizeof(float));
    REQUIRE(y0 && y1);
    float *xr = fast_input(dt, x, T, K);
    struct tw_tensor tx = tw_tensor_f32_2d(x, T, K), tb = tw_tensor_f32_1d(bias, N);
    struct tw_tensor txr = tw_tensor_f32_2d(xr, T, K);
    struct tw_tensor t0 = tw_tensor_f32_2d(y0, T, N), t1 = tw_tensor_f32_2d(y1, T, N);
    tw_matmul(fast, &t1, &tx, &w, with_bias ? &tb : NULL);
    // The int8 rounding of the activations: close to the unrounded product, not equal
    // (about 4e-3 on these sizes).
    tw_matmul(tw_backend_cpu_ref(), &t0, &tx, &w, with_bias ? &tb : NULL);
    CHECK(rel_err(y1, y0, (size_t)(T * N)) <= 2e-2);
    tw_matmul(tw_backend_cpu_ref(), &t0, &txr, &w, with_bias ? &tb : NULL);
    double e = rel_err(y1, y0, (size_t)(T * N));
    if (e > 2e-5)
        fprintf(stderr, "matmul %s T=%lld N=%lld K=%lld: rel err %g\n", tw_dtype_name(dt),
                (long long)T, (long long)N, (long long)K, e);
    CHECK(e <= 2e-5);
    tw_free(wf), tw_free(wq), tw_free(x), tw_free(xr), tw_free(bias), tw_free(y0), tw_free(y1);
}

static void test_matmul(struct tw_backend *fast)
{
    enum tw_dtype all[] = { TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q8_0,
                            TW_DTYPE_Q4_0, TW_DTYPE_Q4_K, TW_DTYPE_Q6_K };
    int64_t Ts[] = { 1, 3, 9, 40 };
    for (size_t d = 0; d < sizeof all / sizeof *all; d++)
        for (size_t i = 0; i < sizeof Ts / sizeof *Ts; i++)
            check_matmul(fast, all[d], Ts[i], 37, 512, i % 2 == 0);
    // K = 576 (SmolLM2's width: not whole groups of 256) and K = 2048 (at one row, the
    // quantised types over packed activations: cpu.c's PACK_MIN_K).
    enum tw_dtype k32[] = { TW_DTYPE_F32, TW_DTYPE_BF16, TW_DTYPE_Q8_0, TW_DTYPE_Q4_0 };
    for (size_t d = 0; d < sizeof k32 / sizeof *k32; d++)
        for (size_t i = 0; i < 2; i++)
            check_matmul(fast, k32[d], Ts[i], 37, 576, i % 2 == 1);
    enum tw_dtype kq[] = { TW_DTYPE_Q8_0, TW_DTYPE_Q4_0, TW_DTYPE_Q4_K };
    for (size_t d = 0; d < sizeof kq / sizeof *kq; d++)
        check_matmul(fast, kq[d], 1, 37, 2048, d % 2 == 0);
    // q4_0 over activations laid out in place (cpu.c's INPLACE_MIN_K), its last group short
    check_matmul(fast, TW_DTYPE_Q4_0, 1, 37, 2048 + 5 * 32, true);
}

// Several weights of one input in one call (q, k, v): each output equals its own matmul on
// the reference, for T = Ts[0] and Ts[1] rows, with mixed dtypes dts and biases.
static void check_matmul_n(struct tw_backend *fast, int64_t K, const enum tw_dtype dts[3],
                           const int64_t Ts[2])
{
    int64_t Ns[3] = { 48, 16, 33 };
    void *wq[3];
    struct tw_tensor w[3], y0[3], y1[3], b[3];
    float *bias[3], *out0[3], *out1[3];
    float *x = rand_buf((size_t)(Ts[1] * K));
    for (int i = 0; i < 3; i++) {
        size_t rb = 0;
        REQUIRE(tw_dtype_nbytes(dts[i], (size_t)K, &rb) == 0);
        float *wf = rand_buf((size_t)(Ns[i] * K));
        wq[i] = tw_malloc(rb * (size_t)Ns[i]);
        for (int64_t n = 0; n < Ns[i]; n++)
            tw_quantize_row(dts[i], wf + n * K, (char *)wq[i] + (size_t)n * rb, (size_t)K);
        tw_free(wf);
        REQUIRE(tw_tensor_init(&w[i], dts[i], 2, (int64_t[]){ Ns[i], K }, wq[i], "w") == 0);
        bias[i] = rand_buf((size_t)Ns[i]);
        b[i] = tw_tensor_f32_1d(bias[i], Ns[i]);
        out0[i] = rand_buf((size_t)(Ts[1] * Ns[i]));
        out1[i] = rand_buf((size_t)(Ts[1] * Ns[i]));
    }
    for (int k = 0; k < 2; k++) {
        int64_t T = Ts[k];
        struct tw_tensor tx = tw_tensor_f32_2d(x, T, K);
        float *xr[3];
        struct tw_tensor txr[3];
        struct tw_tensor *ys[3];
        const struct tw_tensor *ws[3] = { &w[0], &w[1], &w[2] };
        const struct tw_tensor *bs[3] = { &b[0], NULL, &b[2] };
        for (int i = 0; i < 3; i++) {
            y0[i] = tw_tensor_f32_2d(out0[i], T, Ns[i]);
            y1[i] = tw_tensor_f32_2d(out1[i], T, Ns[i]);
            xr[i] = fast_input(dts[i], x, T, K);
            txr[i] = tw_tensor_f32_2d(xr[i], T, K);
            tw_matmul(tw_backend_cpu_ref(), &y0[i], &txr[i], ws[i], bs[i]);
            ys[i] = &y1[i];
        }
        tw_matmul_n(fast, 3, ys, &tx, ws, bs, NULL);
        for (int i = 0; i < 3; i++) {
            CHECK(rel_err(out1[i], out0[i], (size_t)(T * Ns[i])) <= 2e-5);
            tw_free(xr[i]);
        }
    }
    for (int i = 0; i < 3; i++)
        tw_free(wq[i]), tw_free(bias[i]), tw_free(out0[i]), tw_free(out1[i]);
    tw_free(x);
}

static void test_matmul_n(struct tw_backend *fast)
{
    // every path (T small and large)
    check_matmul_n(fast, 256, (enum tw_dtype[]){ TW_DTYPE_Q8_0, TW_DTYPE_BF16, TW_DTYPE_Q4_K },
                   (int64_t[]){ 2, 30 });
    // one row of K >= 2048: q4_0's activations laid out in place beside the others' packed
    // groups, in one job (2304: 72 blocks, two whole groups of 32 and 8 more)
    check_matmul_n(fast, 2304, (enum tw_dtype[]){ TW_DTYPE_Q4_0, TW_DTYPE_Q4_K, TW_DTYPE_Q8_0 },
                   (int64_t[]){ 1, 1 });
}

// tw_mlp_add (BERT's MLP on a residual, y aliasing x) against the formula in double:
// y = x + gelu(x wu^T + bu) wd^T + bd, f32 weights.
static void test_mlp_add(struct tw_backend *be)
{
    const int64_t T = 5, C = 24, F = 40;
    float *x = rand_buf((size_t)(T * C)), *wu = rand_buf((size_t)(F * C));
    float *wd = rand_buf((size_t)(C * F)), *bu = rand_buf((size_t)F), *bd = rand_buf((size_t)C);
    float *y = tw_malloc((size_t)(T * C) * sizeof *y), *u = tw_malloc((size_t)(T * F) * 4);
    float *tmp = tw_malloc((size_t)(T * C) * sizeof *tmp);
    double *want = tw_malloc((size_t)(T * C) * sizeof *want);
    REQUIRE(y && u && tmp && want);
    for (int64_t t = 0; t < T; t++) {
        double h[40];
        for (int64_t f = 0; f < F; f++) {
            double a = bu[f];
            for (int64_t c = 0; c < C; c++)
                a += (double)x[t * C + c] * wu[f * C + c];
            h[f] = 0.5 * a * (1.0 + erf(a / sqrt(2.0)));
        }
        for (int64_t c = 0; c < C; c++) {
            double a = (double)x[t * C + c] + bd[c];
            for (int64_t f = 0; f < F; f++)
                a += h[f] * wd[c * F + f];
            want[t * C + c] = a;
        }
    }
    memcpy(y, x, (size_t)(T * C) * sizeof *y);
    struct tw_tensor ty = tw_tensor_f32_2d(y, T, C), tu = tw_tensor_f32_2d(u, T, F);
    struct tw_tensor ttmp = tw_tensor_f32_2d(tmp, T, C);
    struct tw_tensor twu = tw_tensor_f32_2d(wu, F, C), twd = tw_tensor_f32_2d(wd, C, F);
    struct tw_tensor tbu = tw_tensor_f32_1d(bu, F), tbd = tw_tensor_f32_1d(bd, C);
    tw_mlp_add(be, &ty, &ty, &twu, &tbu, TW_ACT_GELU, &twd, &tbd, &tu, &ttmp);
    double worst = 0;
    for (int64_t i = 0; i < T * C; i++)
        worst = fmax(worst, fabs(y[i] - want[i]) / (fabs(want[i]) + 1.0));
    CHECK(worst < 1e-5);
    tw_free(x), tw_free(wu), tw_free(wd), tw_free(bu), tw_free(bd);
    tw_free(y), tw_free(u), tw_free(tmp), tw_free(want);
}

static void test_attention(struct tw_backend *fast)
{
    struct {
        int64_t T, n_past, H, Hkv, D;
        int32_t window;
        bool causal;
    } cases[] = { { 1, 0, 4, 2, 16, 0, true },
                  { 7, 0, 4, 4, 8, 0, true },
                  { 5, 70, 8, 2, 32, 0, true },
                  { 1, 100, 4, 1, 64, 16, true },
                  { 3, 300, 8, 2, 128, 0, true },
                  { 5, 200, 9, 3, 64, 0, true },
                  { 2, 50, 4, 2, 64, 0, true },
                  { 9, 30, 2, 2, 16, 5, true },
                  { 12, 0, 4, 4, 16, 0, false },
                  // decode rows split over their keys (fewer row and key-value head pairs
                  // than threads): three parts, two, parts over a window of 2 keys (some
                  // empty), a head size without a vector kernel
                  { 1, 300, 4, 1, 64, 0, true },
                  { 1, 77, 6, 2, 32, 0, true },
                  { 1, 200, 4, 1, 64, 2, true },
                  { 1, 500, 8, 2, 128, 0, true },
                  { 1, 130, 3, 1, 96, 0, true },
                  // prefill sizes (the blocked sgemm path): several blocks, a window, a past
                  { 150, 0, 6, 2, 32, 0, true },
                  { 90, 40, 4, 1, 64, 24, true },
                  { 40, 0, 3, 3, 16, 0, false } };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t T = cases[c].T, S = cases[c].n_past + T, H = cases[c].H, Hkv = cases[c].Hkv;
        int64_t D = cases[c].D;
        float *q = rand_buf((size_t)(T * H * D)), *k = rand_buf((size_t)(S * Hkv * D));
        float *v = rand_buf((size_t)(S * Hkv * D));
        float *o0 = rand_buf((size_t)(T * H * D)), *o1 = rand_buf((size_t)(T * H * D));
        struct tw_tensor tq = tw_tensor_f32_3d(q, T, H, D), tk = tw_tensor_f32_3d(k, S, Hkv, D);
        struct tw_tensor tv = tw_tensor_f32_3d(v, S, Hkv, D);
        struct tw_tensor t0 = tw_tensor_f32_2d(o0, T, H * D), t1 = tw_tensor_f32_2d(o1, T, H * D);
        struct tw_attn a = { .n_head = (int32_t)H,
                             .n_head_kv = (int32_t)Hkv,
                             .head_dim = (int32_t)D,
                             .scale = 1 / sqrtf((float)D),
                             .causal = cases[c].causal,
                             .window = cases[c].window,
                             .n_past = (int32_t)cases[c].n_past };
        tw_attention(tw_backend_cpu_ref(), &t0, &tq, &tk, &tv, &a);
        tw_attention(fast, &t1, &tq, &tk, &tv, &a);
        CHECK(rel_err(o1, o0, (size_t)(T * H * D)) < 1e-5);
        tw_free(q), tw_free(k), tw_free(v), tw_free(o0), tw_free(o1);
    }
}

// Several sequences' decode rows in one tw_attention_seqs call on the fast backend against the
// reference (each sequence alone), from flat caches and from paged ones (pages of 8 rows in a
// shuffled order): one sequence of one key-value head and two of them (split over their keys
// at 3 threads), four sequences of two heads (not split), a window.
static void test_attention_seqs(struct tw_backend *fast)
{
    struct {
        int n, H, Hkv, D;
        int32_t window, n_past[4], n_rows[4];
    } cases[] = { { 1, 4, 1, 64, 0, { 300 }, { 1 } },
                  { 2, 6, 1, 32, 0, { 150, 70 }, { 1, 1 } },
                  { 4, 8, 2, 64, 0, { 40, 90, 3, 130 }, { 1, 1, 3, 1 } },
                  { 2, 4, 1, 64, 20, { 200, 120 }, { 1, 1 } } };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int n = cases[c].n;
        int64_t H = cases[c].H, Hkv = cases[c].Hkv, D = cases[c].D, row = Hkv * D, T = 0;
        int32_t P = 8, max_pages = 0;
        struct tw_attn_seq flat[4], paged[4];
        float *pools[8];
        int32_t *tabs[4];
        for (int i = 0; i < n; i++) {
            int32_t S = cases[c].n_past[i] + cases[c].n_rows[i], np = (S + P - 1) / P;
            float *k = rand_buf((size_t)(S * row)), *v = rand_buf((size_t)(S * row));
            float *pk = tw_calloc((size_t)(np * P * row), sizeof(float));
            float *pv = tw_calloc((size_t)(np * P * row), sizeof(float));
            tabs[i] = tw_malloc_array((size_t)np, sizeof(int32_t));
            REQUIRE(pk && pv && tabs[i]);
            for (int32_t g = 0; g < np; g++)
                tabs[i][g] = np % 7 ? (g * 7 + 3) % np : g; // a permutation
            for (int32_t j = 0; j < S; j++) {
                size_t at = ((size_t)tabs[i][j / P] * (size_t)P + (size_t)(j % P)) * (size_t)row;
                memcpy(pk + at, k + j * row, (size_t)row * sizeof(float));
                memcpy(pv + at, v + j * row, (size_t)row * sizeof(float));
            }
            flat[i] =
                (struct tw_attn_seq){ (int32_t)T, cases[c].n_rows[i], cases[c].n_past[i], k, v,
                                      NULL };
            paged[i] = flat[i];
            paged[i].k = pk, paged[i].v = pv, paged[i].pages = tabs[i];
            pools[2 * i] = pk, pools[2 * i + 1] = pv;
            T += cases[c].n_rows[i];
            max_pages = np > max_pages ? np : max_pages;
        }
        float *q = rand_buf((size_t)(T * H * D)), *o0 = rand_buf((size_t)(T * H * D));
        float *o1 = rand_buf((size_t)(T * H * D));
        float *gather = tw_malloc_array((size_t)(2 * max_pages * P * row), sizeof(float));
        REQUIRE(gather);
        struct tw_tensor tq = tw_tensor_f32_3d(q, T, H, D), t0 = tw_tensor_f32_2d(o0, T, H * D);
        struct tw_tensor t1 = tw_tensor_f32_2d(o1, T, H * D);
        struct tw_attn a = { .n_head = (int32_t)H,
                             .n_head_kv = (int32_t)Hkv,
                             .head_dim = (int32_t)D,
                             .scale = 1 / sqrtf((float)D),
                             .causal = true,
                             .window = cases[c].window,
                             .page = P,
                             .max_pages = max_pages,
                             .gather = gather };
        tw_attention_seqs(tw_backend_cpu_ref(), &t0, &tq, flat, n, &a);
        tw_attention_seqs(fast, &t1, &tq, flat, n, &a);
        CHECK(rel_err(o1, o0, (size_t)(T * H * D)) < 1e-5);
        memset(o1, 0, (size_t)(T * H * D) * sizeof(float));
        tw_attention_seqs(fast, &t1, &tq, paged, n, &a);
        CHECK(rel_err(o1, o0, (size_t)(T * H * D)) < 1e-5);
        for (int i = 0; i < n; i++) {
            tw_free((void *)flat[i].k), tw_free((void *)flat[i].v);
            tw_free(pools[2 * i]), tw_free(pools[2 * i + 1]), tw_free(tabs[i]);
        }
        tw_free(q), tw_free(o0), tw_free(o1), tw_free(gather);
    }
}

// The ops the fast backend shares with the reference still go through its table.
static void test_elementwise(struct tw_backend *fast)
{
    int64_t T = 5, C = 48;
    float *x = rand_buf((size_t)(T * C)), *w = rand_buf((size_t)C), *b = rand_buf((size_t)C);
    float *y0 = rand_buf((size_t)(T * C)), *y1 = rand_buf((size_t)(T * C));
    struct tw_tensor tx = tw_tensor_f32_2d(x, T, C), tw = tw_tensor_f32_1d(w, C);
    struct tw_tensor tb = tw_tensor_f32_1d(b, C);
    struct tw_tensor t0 = tw_tensor_f32_2d(y0, T, C), t1 = tw_tensor_f32_2d(y1, T, C);
    tw_rmsnorm(tw_backend_cpu_ref(), &t0, &tx, &tw, 1e-5f);
    tw_rmsnorm(fast, &t1, &tx, &tw, 1e-5f);
    CHECK(rel_err(y1, y0, (size_t)(T * C)) < 1e-6);
    tw_layernorm(tw_backend_cpu_ref(), &t0, &tx, &tw, &tb, 1e-12f);
    tw_layernorm(fast, &t1, &tx, &tw, &tb, 1e-12f);
    CHECK(rel_err(y1, y0, (size_t)(T * C)) < 1e-6);
    tw_swiglu(tw_backend_cpu_ref(), &t0, &tx, &tx);
    tw_swiglu(fast, &t1, &tx, &tx);
    CHECK(rel_err(y1, y0, (size_t)(T * C)) < 1e-6);
    int32_t ids[3] = { 4, 0, 2 };
    struct tw_tensor e0 = tw_tensor_f32_2d(y0, 3, C), e1 = tw_tensor_f32_2d(y1, 3, C);
    tw_embedding(fast, &e1, &tx, ids);
    tw_embedding(tw_backend_cpu_ref(), &e0, &tx, ids);
    CHECK(memcmp(y0, y1, 3 * (size_t)C * sizeof(float)) == 0);
    CHECK(y1[0] == x[4 * C] && y1[C] == x[0]);
    tw_free(x), tw_free(w), tw_free(b), tw_free(y0), tw_free(y1);
}

// The SwiGLU kernels of every ISA the CPU has against the reference's double, on random rows
// of lengths that are not multiples of the vector, and on values where exp saturates.
static void test_swiglu_kernels(void)
{
    enum { N = 1000 };
    float *g = rand_buf(N), *u = rand_buf(N), y[N];
    for (int i = 0; i < N; i++)
        g[i] *= 12.0f;
    const float edge[] = { 0.0f,   -0.0f,  1e-30f,  -1e-30f, 87.0f, -87.0f, 88.5f,
                           -88.5f, 100.0f, -100.0f, 1e4f,    -1e4f, 20.0f,  -20.0f };
    memcpy(g, edge, sizeof edge);
    for (int isa = TW_ISA_SCALAR; isa <= (int)tw_cpu_isa_have(); isa++) {
        int lens[] = { N, 1, 7, 15, 17, 33 };
        for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
            int n = lens[l];
            tw_swiglu_kernel((enum tw_cpu_isa)isa)(y, g, u, (size_t)n);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                double gd = g[i], want = gd / (1.0 + exp(-gd)) * u[i];
                double e = fabs(y[i] - want) / (fabs(want) + 1e-30);
                if (fabs(want) < 1e-30) // silu(g < -87.3): absolute, below 1e-34
                    e = fabs(y[i] - want) * 1e28;
                worst = fmax(worst, e);
            }
            CHECK(worst < 1e-6);
        }
    }
    tw_free(g);
    tw_free(u);
}

// The decode attention kernels of every ISA the CPU has (cpu_attn.c) against the scalar one,
// for the head sizes they specialise and one they do not; and each reading the same rows
// through a page table (pages of 8 rows in a shuffled order, the grouped kernels too).
static void test_attend_kernels(void)
{
    int64_t Ds[] = { 64, 128, 96 }, S = 77, stride = 3 * 128, P = 8, np = (S + P - 1) / P;
    float *q = rand_buf(4 * 128), *k = rand_buf((size_t)(S * stride)),
          *v = rand_buf((size_t)(S * stride));
    float *pk = tw_calloc((size_t)(np * P * stride), sizeof(float));
    float *pv = tw_calloc((size_t)(np * P * stride), sizeof(float));
    int32_t pages[16];
    REQUIRE(pk && pv && np <= 16);
    for (int64_t i = 0; i < np; i++)
        pages[i] = (int32_t)((i * 7 + 3) % np); // 7 is prime to np = 10: a permutation
    for (int64_t j = 0; j < S; j++) {
        size_t at = ((size_t)pages[j / P] * (size_t)P + (size_t)(j % P)) * (size_t)stride;
        memcpy(pk + at, k + j * stride, (size_t)stride * sizeof(float));
        memcpy(pv + at, v + j * stride, (size_t)stride * sizeof(float));
    }
    struct tw_kv_map flat = { stride, NULL, 0 }, paged = { stride, pages, 3 };
    float o0[4 * 128], o1[4 * 128];
    tw_attend_fn ref = tw_attend_kernel(TW_ISA_SCALAR);
    for (int isa = TW_ISA_SCALAR; isa <= TW_ISA_AVX512; isa++)
        for (size_t i = 0; i < 3; i++) {
            int64_t D = Ds[i];
            tw_attend_fn fn = tw_attend_kernel((enum tw_cpu_isa)isa);
            float l0, l1;
            ref(q, k, v, &flat, 5, S, D, 0.125f, o0, &l0);
            fn(q, k, v, &flat, 5, S, D, 0.125f, o1, &l1);
            double e = 0, want = 0;
            for (int64_t d = 0; d < D; d++)
                e = fmax(e, fabs((double)o0[d] - o1[d]));
            CHECK(e < 1e-5);
            for (int64_t j = 5; j < S; j++) { // the log of the softmax's sum, in double
                double dot = 0;
                for (int64_t d = 0; d < D; d++)
                    dot += (double)q[d] * k[j * stride + d];
                want += exp(0.125 * dot);
            }
            CHECK(fabs(l0 - log(want)) < 1e-4 && fabs(l1 - log(want)) < 1e-4);
            fn(q, pk, pv, &paged, 5, S, D, 0.125f, o1, NULL);
            e = 0;
            for (int64_t d = 0; d < D; d++)
                e = fmax(e, fabs((double)o0[d] - o1[d]));
            CHECK(e < 1e-5);
            for (int G = 2; G <= 4 && D == 64; G++) { // grouped heads, paged
                float lg0[4], lg1[4];
                for (int g = 0; g < G; g++)
                    ref(q + g * D, k, v, &flat, 9, S, D, 0.125f, o0 + g * D, lg0 + g);
                tw_attend_group(fn, (enum tw_cpu_isa)isa, q, pk, pv, &paged, 9, S, D, G, 0.125f,
                                o1, lg1);
                e = 0;
                for (int64_t d = 0; d < G * D; d++)
                    e = fmax(e, fabs((double)o0[d] - o1[d]));
                for (int g = 0; g < G; g++)
                    e = fmax(e, fabs((double)lg0[g] - lg1[g]));
                CHECK(e < 1e-5);
            }
        }
    tw_free(q);
    tw_free(k);
    tw_free(v);
    tw_free(pk);
    tw_free(pv);
}

// ---- top-k

struct vid {
    float v;
    int32_t id;
};

static int cmp_vid(const void *pa, const void *pb)
{
    const struct vid *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

// tw_topk on be against a full sort of each row (NaN as -inf, ties by id), bit for bit.
static void check_topk(struct tw_backend *be, const float *x, int64_t R, int64_t V, int32_t k)
{
    float *vals = tw_malloc_array((size_t)(R * k), sizeof *vals);
    int32_t *ids = tw_malloc_array((size_t)(R * k), sizeof *ids);
    struct vid *all = tw_malloc_array((size_t)V, sizeof *all);
    REQUIRE(vals && ids && all);
    struct tw_tensor t = tw_tensor_f32_2d((float *)x, R, V);
    tw_topk(be, &t, k, vals, ids);
    int bad = 0;
    for (int64_t r = 0; r < R; r++) {
        for (int64_t i = 0; i < V; i++)
            all[i] = (struct vid){ isnan(x[r * V + i]) ? -INFINITY : x[r * V + i], (int32_t)i };
        qsort(all, (size_t)V, sizeof *all, cmp_vid);
        for (int32_t j = 0; j < k; j++)
            bad += ids[r * k + j] != all[j].id ||
                   memcmp(&vals[r * k + j], &all[j].v, sizeof(float)) != 0;
    }
    if (bad)
        fprintf(stderr, "%s topk R %lld V %lld k %d: %d wrong\n", be->ops->name, (long long)R,
                (long long)V, k, bad);
    CHECK_EQ_INT(bad, 0);
    tw_free(vals);
    tw_free(ids);
    tw_free(all);
}

static void test_topk(struct tw_backend *be)
{
    // By hand: ties to the lower id, -0 equal to 0 (and returned as it was), NaN as -inf.
    const float x[] = { 1, 3, NAN, 3, -INFINITY, 2, -0.0f, 0.0f };
    float v[8];
    int32_t id[8];
    struct tw_tensor t = tw_tensor_f32_2d((float *)x, 1, 8);
    tw_topk(be, &t, 8, v, id);
    const int32_t want[] = { 1, 3, 5, 0, 6, 7, 2, 4 };
    for (int i = 0; i < 8; i++)
        CHECK_EQ_INT(id[i], want[i]);
    CHECK(v[0] == 3 && v[2] == 2 && v[3] == 1 && v[6] == -INFINITY && v[7] == -INFINITY);
    CHECK(signbit(v[4]) && !signbit(v[5]));
    tw_topk(be, &t, 1, v, id);
    CHECK(id[0] == 1 && v[0] == 3);

    // Random rows: smooth, few levels, specials, ascending and descending (the worst orders
    // for an insertion), k up to the row's length.
    static const int64_t shapes[][3] = { { 1, 50, 1 },     { 3, 50, 50 },    { 2, 1000, 40 },
                                         { 4, 1000, 104 }, { 2, 5000, 256 }, { 1, 300, 256 } };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t R = shapes[s][0], V = shapes[s][1];
        float *xs = tw_malloc_array((size_t)(R * V), sizeof *xs);
        REQUIRE(xs);
        for (int kind = 0; kind < 5; kind++) {
            for (int64_t i = 0; i < R * V; i++) {
                float u = frand();
                xs[i] = kind == 0   ? u * 10
                        : kind == 1 ? floorf(u * 3)
                        : kind == 2 ? (float)(i % V)
                        : kind == 3 ? -(float)(i % V)
                                    : u;
                if (kind == 4 && fabsf(u) > 0.8f)
                    xs[i] = u > 0.95f ? NAN : u > 0.9f ? INFINITY : u > 0.85f ? -0.0f : -INFINITY;
            }
            check_topk(be, xs, R, V, (int32_t)shapes[s][2]);
        }
        tw_free(xs);
    }
}

int main(void)
{
    test_reference_values();
    test_swiglu_kernels();
    test_attend_kernels();
    test_topk(tw_backend_cpu_ref());
    struct tw_backend *prof = NULL; // forwards it
    REQUIRE(tw_backend_profile_new(tw_backend_cpu_ref(), &prof) == 0);
    test_topk(prof);
    // its training ops: every one the CPU has, timed; the optional ones the CPU lacks absent
    const struct tw_grad_ops *pg = tw_backend_grad(prof);
    CHECK(pg != &tw_cpu_grad_ops && pg->attn_bwd && pg->adamw && pg->sumsq);
    CHECK(!tw_cpu_grad_ops.rope_bf16 && !pg->rope_bf16);
    CHECK(!tw_cpu_grad_ops.linear_bwd_bf16 && !pg->linear_bwd_bf16);
    CHECK(!tw_cpu_grad_ops.lora_fwd && !pg->lora_fwd);
    CHECK(!tw_cpu_grad_ops.adamw_multi && !pg->adamw_multi);
    CHECK(!tw_cpu_grad_ops.attn_keeps && !pg->attn_keeps);
    CHECK(!tw_cpu_grad_ops.add_bf16 && !pg->add_bf16);
    struct tw_op_stat st;
    CHECK(tw_backend_profile_stat(prof, 0, &st) &&
          !tw_backend_profile_stat(tw_backend_cpu_ref(), 0, &st));
    tw_backend_free(prof);
    int threads[] = { 1, 3 };
    for (int i = 0; i < 2; i++) {
        struct tw_backend *fast = NULL;
        REQUIRE(tw_backend_cpu_new(threads[i], &fast) == 0);
        CHECK_EQ_STR(fast->ops->name, "cpu");
        test_matmul(fast);
        test_matmul_n(fast);
        test_mlp_add(fast);
        test_attention(fast);
        test_attention_seqs(fast);
        test_elementwise(fast);
        test_topk(fast);
        tw_backend_free(fast);
    }
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("tensor_test_ops");
}

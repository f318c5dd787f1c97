// The CUDA backend's matmul and embedding against the reference backend, through the public
// API, for every weight dtype: the gemv path (T <= 8: the weights decoded in f32, sums in
// f32: relative error < 1e-5) and the GEMM path (T > 8: x and the weights rounded to bf16:
// < 1e-2); N not a multiple of anything, K of one to a few blocks, with and without bias, x
// at an address that is not 16-byte aligned, outputs poisoned with NaN first so that an
// element left unwritten shows; likewise the fused forms (several products of one x, the gated
// MLP, the residual add, each with an RMSNorm folded in; BERT's MLP and attention). Q4_0 and Q4_K
// at T <= 8, and Q8_0 at 2 <= T <= 8, meet x rounded to int8 blocks on the device (the CPU's
// rounding, cpu_qdot.h): their reference is the same product of x rounded on the host (< 1e-5;
// with an RMSNorm first, which the two sides compute in their own order and which may move a
// rounding by one step: < 1e-3), and they stay near the unrounded product (< 2e-2). Run by `make
// test-cuda` on the GPU machine only.
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "tensor/backend.h"
#include "tensor/cpu_qdot.h"
#include "tensor/cuda.h"
#include "tensor/dtype.h"

#define GEMV_MAX_T 8    // TWC_GEMV_MAX_T (tensor/cuda/kernels.cuh): above it, the GEMM path
#define TOL_GEMV   1e-5 // ||y - ref|| / ||ref||: same decoded weights, f32 vs double sums
#define TOL_GEMM   1e-2 // x and weights rounded to bf16 (8 significant bits)
#define TOL_EMBED  1e-6 // the same decoding: exact but for contracted host arithmetic
#define TOL_NORM8  1e-3 // int8 rounding after an RMSNorm computed in another order
#define TOL_INT8   2e-2 // int8-rounded x against the unrounded product

static struct tw_backend *cuda;
static uint64_t rng = 0x67656D76ull;

static float uniform(void) // in [-1, 1)
{
    return (float)((double)(check_rand(&rng) >> 11) * 0x1p-52 - 1.0);
}

// (N, K) host weights of dtype dt from uniform floats, data from tw_malloc.
static struct tw_tensor make_weights(enum tw_dtype dt, int64_t N, int64_t K)
{
    size_t rb;
    REQUIRE(tw_dtype_nbytes(dt, (size_t)K, &rb) == 0);
    char *q = tw_malloc(rb * (size_t)N);
    float *row = tw_malloc((size_t)K * sizeof *row);
    REQUIRE(q && row);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++)
            row[k] = uniform();
        tw_quantize_row(dt, row, q + (size_t)n * rb, (size_t)K);
    }
    tw_free(row);
    struct tw_tensor w;
    REQUIRE(tw_tensor_init(&w, dt, 2, (int64_t[]){ N, K }, q, "w") == 0);
    return w;
}

// Whether the matvec of dt at T rows rounds x to int8 (twc_gemv_int8 in kernels.cuh).
static bool int8_path(enum tw_dtype dt, int64_t T)
{
    return T <= GEMV_MAX_T &&
           ((dt == TW_DTYPE_Q8_0 && T >= 2) || dt == TW_DTYPE_Q4_0 || dt == TW_DTYPE_Q4_K);
}

// A copy of x (T, K) as the values its int8 rounding stands for (tw_q8_act_quantize's).
static float *rounded(const float *x, int64_t T, int64_t K)
{
    float *xr = tw_malloc((size_t)(T * K) * sizeof *xr);
    struct tw_q8_act *q = tw_malloc_array((size_t)(T * K / TW_QK8_ACT), sizeof *q);
    REQUIRE(xr && q);
    tw_q8_act_quantize(x, (size_t)(T * K), q);
    for (int64_t i = 0; i < T * K; i++)
        xr[i] = q[i / TW_QK8_ACT].d * (float)q[i / TW_QK8_ACT].qs[i % TW_QK8_ACT];
    tw_free(q);
    return xr;
}

static float *rand_floats(size_t n)
{
    float *p = tw_malloc(n * sizeof *p);
    REQUIRE(p);
    for (size_t i = 0; i < n; i++)
        p[i] = uniform();
    return p;
}

// n floats of device memory holding NaN.
static float *dev_poisoned(size_t n)
{
    float *d = tw_backend_alloc(cuda, n * sizeof *d), *h = tw_malloc(n * sizeof *h);
    REQUIRE(d && h);
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    CHECK_OK(tw_backend_upload(cuda, d, h, n * sizeof *h));
    tw_free(h);
    return d;
}

// ||y - ref|| / ||ref|| over n values; *nan = how many y are NaN (never written).
static double rel_err(const float *y, const float *ref, size_t n, size_t *nan)
{
    double d2 = 0, r2 = 0;
    *nan = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(y[i])) {
            ++*nan;
            continue;
        }
        double d = (double)y[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
    }
    return r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

// y (T, N) = x (T, K) w^T (+ bias) on the GPU against the reference. misalign: x starts one
// float past a 16-byte boundary (the kernels' narrow-load path). Returns the error.
static double matmul_case(enum tw_dtype dt, int64_t T, int64_t N, int64_t K, bool bias,
                          bool misalign)
{
    struct tw_tensor w = make_weights(dt, N, K);
    float *x = rand_floats((size_t)(T * K)), *b = rand_floats((size_t)N);
    float *ref = tw_malloc((size_t)(T * N) * sizeof *ref), *y = tw_malloc((size_t)(T * N) * 4);
    REQUIRE(ref && y);
    bool q8 = int8_path(dt, T);
    float *xr = q8 ? rounded(x, T, K) : x, *ref32 = NULL;
    struct tw_tensor tx = tw_tensor_f32_2d(xr, T, K), tb = tw_tensor_f32_1d(b, N);
    struct tw_tensor tref = tw_tensor_f32_2d(ref, T, N);
    tw_matmul(tw_backend_cpu_ref(), &tref, &tx, &w, bias ? &tb : NULL);
    if (q8) { // the unrounded product too
        REQUIRE((ref32 = tw_malloc((size_t)(T * N) * sizeof *ref32)));
        struct tw_tensor tx32 = tw_tensor_f32_2d(x, T, K), t32 = tw_tensor_f32_2d(ref32, T, N);
        tw_matmul(tw_backend_cpu_ref(), &t32, &tx32, &w, bias ? &tb : NULL);
    }

    struct tw_tensor dw, db;
    CHECK_OK(tw_backend_tensor_upload(cuda, &w, &dw));
    CHECK_OK(tw_backend_tensor_upload(cuda, &tb, &db));
    float *xbuf = tw_backend_alloc(cuda, (size_t)(T * K + 1) * sizeof *xbuf);
    REQUIRE(xbuf);
    float *xd = xbuf + (misalign ? 1 : 0);
    CHECK_OK(tw_backend_upload(cuda, xd, x, (size_t)(T * K) * sizeof *x));
    struct tw_tensor dx = tw_tensor_f32_2d(xd, T, K);
    dx.device = TW_DEVICE_CUDA;
    struct tw_tensor dy = tw_tensor_f32_2d(dev_poisoned((size_t)(T * N)), T, N);
    dy.device = TW_DEVICE_CUDA;

    tw_matmul(cuda, &dy, &dx, &dw, bias ? &db : NULL);
    CHECK_OK(tw_backend_download(cuda, y, dy.data, (size_t)(T * N) * sizeof *y));
    CHECK_OK(tw_backend_sync(cuda));

    size_t nan;
    double err = rel_err(y, ref, (size_t)(T * N), &nan),
           tol = T <= GEMV_MAX_T ? TOL_GEMV : TOL_GEMM;
    if (nan || !(err < tol))
        fprintf(
            stderr, "%s matmul T=%lld N=%lld K=%lld bias=%d misalign=%d: error %.3g, %zu NaN\n",
            tw_dtype_name(dt), (long long)T, (long long)N, (long long)K, bias, misalign, err, nan);
    CHECK_EQ_INT(nan, 0);
    CHECK(err < tol);
    if (q8 && T * N >= 64) { // (a few short dot products may lie near 0)
        double e32 = rel_err(y, ref32, (size_t)(T * N), &nan);
        if (!(e32 < TOL_INT8))
            fprintf(stderr, "%s matmul T=%lld N=%lld K=%lld: %.3g from the unrounded product\n",
                    tw_dtype_name(dt), (long long)T, (long long)N, (long long)K, e32);
        CHECK(e32 < TOL_INT8);
    }
    if (q8) {
        tw_free(xr);
        tw_free(ref32);
    }

    tw_backend_release(cuda, dy.data);
    tw_backend_release(cuda, xbuf);
    tw_backend_release(cuda, db.data);
    tw_backend_release(cuda, dw.data);
    tw_free(w.data);
    tw_free(x);
    tw_free(b);
    tw_free(ref);
    tw_free(y);
    return err;
}

// A (T, K) device copy of host x, starting one float past a 16-byte boundary with misalign;
// *buf is what to release.
static struct tw_tensor dev_x(const float *x, int64_t T, int64_t K, bool misalign, float **buf)
{
    *buf = tw_backend_alloc(cuda, (size_t)(T * K + 1) * sizeof **buf);
    REQUIRE(*buf);
    float *xd = *buf + (misalign ? 1 : 0);
    CHECK_OK(tw_backend_upload(cuda, xd, x, (size_t)(T * K) * sizeof *x));
    struct tw_tensor t = tw_tensor_f32_2d(xd, T, K);
    t.device = TW_DEVICE_CUDA;
    return t;
}

// A (T, N) device output poisoned with NaN, or holding init (T * N floats) when given.
static struct tw_tensor dev_out(int64_t T, int64_t N, const float *init)
{
    float *d = dev_poisoned((size_t)(T * N));
    if (init)
        CHECK_OK(tw_backend_upload(cuda, d, init, (size_t)(T * N) * sizeof *init));
    struct tw_tensor t = tw_tensor_f32_2d(d, T, N);
    t.device = TW_DEVICE_CUDA;
    return t;
}

// The error of device y (T, N) against ref, reported with `what` past tol; the worst so far.
static double compare(const char *what, struct tw_tensor *dy, const float *ref, double tol,
                      double worst)
{
    size_t n = (size_t)tw_tensor_nelem(dy), nan;
    float *y = tw_malloc(n * sizeof *y);
    REQUIRE(y);
    CHECK_OK(tw_backend_download(cuda, y, dy->data, n * sizeof *y));
    double err = rel_err(y, ref, n, &nan);
    if (nan || !(err < tol))
        fprintf(stderr, "%s: error %.3g, %zu NaN\n", what, err, nan);
    CHECK_EQ_INT(nan, 0);
    CHECK(err < tol);
    tw_free(y);
    tw_backend_release(cuda, dy->data);
    return fmax(worst, err);
}

// The fused forms against the reference's composition of plain ops: three products of one x
// (N, N + 5 and N rows; a bias on the second) and the gated MLP, each with and without an
// RMSNorm of x first (tw_prenorm: folded into the matvec at T = 1), and a product added to a
// residual. Returns the worst error.
static double fused_case(enum tw_dtype dt, int64_t T, int64_t N, int64_t K, bool misalign)
{
    struct tw_backend *ref = tw_backend_cpu_ref();
    int64_t Ns[3] = { N, N + 5, N };
    struct tw_tensor w[3], dw[3], tb, db, tg, dg;
    for (int i = 0; i < 3; i++) {
        w[i] = make_weights(dt, Ns[i], K);
        CHECK_OK(tw_backend_tensor_upload(cuda, &w[i], &dw[i]));
    }
    float *x = rand_floats((size_t)(T * K)), *b = rand_floats((size_t)N + 5);
    float *g = rand_floats((size_t)K), *res = rand_floats((size_t)(T * N));
    float *xn = tw_malloc((size_t)(T * K) * sizeof *xn), *tmp = tw_malloc((size_t)(T * N) * 4);
    float *r[3];
    for (int i = 0; i < 3; i++)
        REQUIRE((r[i] = tw_malloc((size_t)(T * Ns[i]) * sizeof(float))));
    REQUIRE(xn && tmp);
    tb = tw_tensor_f32_1d(b, N + 5), tg = tw_tensor_f32_1d(g, K);
    CHECK_OK(tw_backend_tensor_upload(cuda, &tb, &db));
    CHECK_OK(tw_backend_tensor_upload(cuda, &tg, &dg));
    // With int8 rounding the reference takes x rounded (after the norm: xq); else x itself.
    bool q8 = int8_path(dt, T);
    float *xr = q8 ? rounded(x, T, K) : x, *xq = NULL;
    struct tw_tensor tx = tw_tensor_f32_2d(xr, T, K), txn = tw_tensor_f32_2d(xn, T, K);
    float *xbuf, *xnbuf;
    struct tw_tensor dx = dev_x(x, T, K, misalign, &xbuf), dxn = dev_x(x, T, K, false, &xnbuf);
    double tol = T <= GEMV_MAX_T ? TOL_GEMV : TOL_GEMM, worst = 0;
    char what[128];

    for (int norm = 0; norm < 2; norm++) {
        struct tw_prenorm hpn = { &tg, 1e-5f, &txn }, dpn = { &dg, 1e-5f, &dxn };
        struct tw_tensor hx = tx, tx32 = tw_tensor_f32_2d(x, T, K);
        const struct tw_prenorm *hp = norm ? &hpn : NULL;
        double tol_n = tol;
        if (q8 && norm) { // the host normalises, then rounds
            tw_rmsnorm(ref, &txn, &tx32, &tg, 1e-5f);
            xq = rounded(xn, T, K);
            hx = tw_tensor_f32_2d(xq, T, K), hp = NULL, tol_n = TOL_NORM8;
        }
        const struct tw_tensor *hw[3] = { &w[0], &w[1], &w[2] },
                               *gw[3] = { &dw[0], &dw[1], &dw[2] };
        const struct tw_tensor *hb[3] = { NULL, &tb, NULL }, *gb[3] = { NULL, &db, NULL };
        struct tw_tensor hy[3], gy[3], *hyp[3], *gyp[3];
        for (int i = 0; i < 3; i++) {
            hy[i] = tw_tensor_f32_2d(r[i], T, Ns[i]), hyp[i] = &hy[i];
            gy[i] = dev_out(T, Ns[i], NULL), gyp[i] = &gy[i];
        }
        tw_matmul_n(ref, 3, hyp, &hx, hw, hb, hp);
        tw_matmul_n(cuda, 3, gyp, &dx, gw, gb, norm ? &dpn : NULL);
        for (int i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "%s matmul_n[%d] T=%lld N=%lld K=%lld norm=%d",
                     tw_dtype_name(dt), i, (long long)T, (long long)Ns[i], (long long)K, norm);
            worst = compare(what, &gy[i], r[i], tol_n, worst);
        }

        struct tw_tensor htmp = tw_tensor_f32_2d(tmp, T, N), gs = dev_out(T, N, NULL);
        struct tw_tensor gtmp = dev_out(T, N, NULL);
        tw_matmul_swiglu(ref, &hy[0], &hx, &w[0], &w[2], &htmp, hp);
        tw_matmul_swiglu(cuda, &gs, &dx, &dw[0], &dw[2], &gtmp, norm ? &dpn : NULL);
        snprintf(what, sizeof what, "%s matmul_swiglu T=%lld N=%lld K=%lld norm=%d",
                 tw_dtype_name(dt), (long long)T, (long long)N, (long long)K, norm);
        worst = compare(what, &gs, r[0], tol_n, worst);
        tw_backend_release(cuda, gtmp.data);
        tw_free(xq);
        xq = NULL;
    }

    // y += x w^T on a residual.
    memcpy(r[0], res, (size_t)(T * N) * sizeof *res);
    struct tw_tensor hy = tw_tensor_f32_2d(r[0], T, N), htmp = tw_tensor_f32_2d(tmp, T, N);
    struct tw_tensor gy = dev_out(T, N, res), gtmp = dev_out(T, N, NULL);
    tw_matmul_add(ref, &hy, &tx, &w[0], NULL, &htmp);
    tw_matmul_add(cuda, &gy, &dx, &dw[0], NULL, &gtmp);
    snprintf(what, sizeof what, "%s matmul_add T=%lld N=%lld K=%lld", tw_dtype_name(dt),
             (long long)T, (long long)N, (long long)K);
    worst = compare(what, &gy, r[0], tol, worst);
    tw_backend_release(cuda, gtmp.data);
    CHECK_OK(tw_backend_sync(cuda));

    for (int i = 0; i < 3; i++) {
        tw_backend_release(cuda, dw[i].data);
        tw_free(w[i].data);
        tw_free(r[i]);
    }
    tw_backend_release(cuda, db.data);
    tw_backend_release(cuda, dg.data);
    tw_backend_release(cuda, xbuf);
    tw_backend_release(cuda, xnbuf);
    if (q8)
        tw_free(xr);
    tw_free(x), tw_free(b), tw_free(g), tw_free(res), tw_free(xn), tw_free(tmp);
    return worst;
}

// BERT's MLP added to a residual, y += act(x wu^T + bu) wd^T + bd (tw_mlp_add), against the
// reference's composition of the plain ops: x (T, C), wu (F, C), wd (C, F); with alias, y is x
// itself (as the encoder calls it). With bf16 weights, F % 8 == 0 and T > 8 the CUDA backend
// keeps the hidden layer in bf16 (rounded once more than the composition: TOL_GEMM). Returns
// the error.
static double mlp_case(enum tw_dtype dt, int64_t T, int64_t C, int64_t F, bool bias,
                       enum tw_act act, bool alias)
{
    struct tw_backend *ref = tw_backend_cpu_ref();
    struct tw_tensor wu = make_weights(dt, F, C), wd = make_weights(dt, C, F), dwu, dwd;
    CHECK_OK(tw_backend_tensor_upload(cuda, &wu, &dwu));
    CHECK_OK(tw_backend_tensor_upload(cuda, &wd, &dwd));
    float *x = rand_floats((size_t)(T * C)), *res = rand_floats((size_t)(T * C));
    float *bu = rand_floats((size_t)F), *bd = rand_floats((size_t)C);
    float *y = tw_malloc((size_t)(T * C) * sizeof *y), *u = tw_malloc((size_t)(T * F) * 4);
    float *tmp = tw_malloc((size_t)(T * C) * sizeof *tmp);
    REQUIRE(y && u && tmp);
    memcpy(y, alias ? x : res, (size_t)(T * C) * sizeof *y);
    struct tw_tensor tbu = tw_tensor_f32_1d(bu, F), tbd = tw_tensor_f32_1d(bd, C), dbu, dbd;
    CHECK_OK(tw_backend_tensor_upload(cuda, &tbu, &dbu));
    CHECK_OK(tw_backend_tensor_upload(cuda, &tbd, &dbd));
    struct tw_tensor hx = tw_tensor_f32_2d(x, T, C), hy = tw_tensor_f32_2d(y, T, C);
    struct tw_tensor hu = tw_tensor_f32_2d(u, T, F), htmp = tw_tensor_f32_2d(tmp, T, C);
    tw_mlp_add(ref, &hy, alias ? &hy : &hx, &wu, bias ? &tbu : NULL, act, &wd, bias ? &tbd : NULL,
               &hu, &htmp);

    float *xbuf;
    struct tw_tensor gx = dev_x(x, T, C, false, &xbuf);
    struct tw_tensor gy = dev_out(T, C, alias ? x : res), gu = dev_out(T, F, NULL);
    struct tw_tensor gtmp = dev_out(T, C, NULL);
    tw_mlp_add(cuda, &gy, alias ? &gy : &gx, &dwu, bias ? &dbu : NULL, act, &dwd,
               bias ? &dbd : NULL, &gu, &gtmp);
    char what[128];
    snprintf(what, sizeof what, "%s mlp_add T=%lld C=%lld F=%lld bias=%d act=%d alias=%d",
             tw_dtype_name(dt), (long long)T, (long long)C, (long long)F, bias, (int)act, alias);
    double err = compare(what, &gy, y, T <= GEMV_MAX_T ? TOL_GEMV : TOL_GEMM, 0);
    tw_backend_release(cuda, gu.data);
    tw_backend_release(cuda, gtmp.data);
    tw_backend_release(cuda, xbuf);
    tw_backend_release(cuda, dwu.data);
    tw_backend_release(cuda, dwd.data);
    tw_backend_release(cuda, dbu.data);
    tw_backend_release(cuda, dbd.data);
    CHECK_OK(tw_backend_sync(cuda));
    tw_free(wu.data), tw_free(wd.data);
    tw_free(x), tw_free(res), tw_free(bu), tw_free(bd), tw_free(y), tw_free(u), tw_free(tmp);
    return err;
}

// An encoder's self-attention sublayer (tw_self_attention_add) over n packed sequences of
// lens[i] rows, y aliasing x: the CUDA backend against the reference's composition of the
// plain ops. With bf16 weights, more than 8 rows and a query tile well filled, q, k, v and the
// attention's output stay bf16 between the products (TOL_GEMM); else the composed ops.
static double selfattn_case(enum tw_dtype dt, const int32_t *lens, int n, int64_t C, int H,
                            int Hkv, int D)
{
    struct tw_backend *ref = tw_backend_cpu_ref();
    int64_t T = 0, HD = (int64_t)H * D, KD = (int64_t)Hkv * D;
    for (int i = 0; i < n; i++)
        T += lens[i];
    const int64_t rows[4] = { HD, KD, KD, C }, cols[4] = { C, C, C, HD };
    const int64_t ns[4] = { T * HD, T * KD, T * KD, T * HD };
    struct tw_tensor w[4], dw[4], hb[4], db[4], hs[4], gs[4];
    float *bias[4], *hbuf[4];
    const struct tw_tensor *hwp[4], *dwp[4], *hbp[4], *dbp[4];
    struct tw_tensor *hsp[4], *gsp[4];
    for (int i = 0; i < 4; i++) {
        w[i] = make_weights(dt, rows[i], cols[i]);
        CHECK_OK(tw_backend_tensor_upload(cuda, &w[i], &dw[i]));
        bias[i] = rand_floats((size_t)rows[i]);
        hb[i] = tw_tensor_f32_1d(bias[i], rows[i]);
        CHECK_OK(tw_backend_tensor_upload(cuda, &hb[i], &db[i]));
        REQUIRE((hbuf[i] = tw_malloc((size_t)ns[i] * sizeof(float))));
        hs[i] = tw_tensor_f32_2d(hbuf[i], T, ns[i] / T);
        gs[i] = dev_out(T, ns[i] / T, NULL);
        hwp[i] = &w[i], dwp[i] = &dw[i], hbp[i] = &hb[i], dbp[i] = &db[i];
        hsp[i] = &hs[i], gsp[i] = &gs[i];
    }
    // x in [-0.1, 0.1): with weights in [-1, 1) the scores' spread stays a few units, as a
    // trained model's (at x in [-1, 1) they spread by hundreds, and bf16's rounding of q and k
    // moves which key a query picks).
    float *x = rand_floats((size_t)(T * C)), *tmp = tw_malloc((size_t)(T * C) * sizeof(float));
    REQUIRE(tmp);
    for (int64_t i = 0; i < T * C; i++)
        x[i] *= 0.1f;
    struct tw_attn_seq hseq[8], dseq[8];
    REQUIRE(n <= 8);
    for (int i = 0, r0 = 0; i < n; r0 += lens[i++]) {
        hseq[i] = (struct tw_attn_seq){ .row0 = r0, .n_rows = lens[i] };
        dseq[i] = hseq[i];
        hseq[i].k = hbuf[1] + (size_t)r0 * KD, hseq[i].v = hbuf[2] + (size_t)r0 * KD;
        dseq[i].k = (float *)gs[1].data + (size_t)r0 * KD;
        dseq[i].v = (float *)gs[2].data + (size_t)r0 * KD;
    }
    struct tw_attn a = { .n_head = H,
                         .n_head_kv = Hkv,
                         .head_dim = D,
                         .scale = 1.0f / sqrtf((float)D),
                         .lowp = dt != TW_DTYPE_F32 };
    float *want = tw_malloc((size_t)(T * C) * sizeof(float));
    REQUIRE(want);
    memcpy(want, x, (size_t)(T * C) * sizeof(float));
    struct tw_tensor hy = tw_tensor_f32_2d(want, T, C), htmp = tw_tensor_f32_2d(tmp, T, C);
    tw_self_attention_add(ref, &hy, &hy, hwp, hbp, hseq, n, &a, hsp, &htmp);
    struct tw_tensor gy = dev_out(T, C, x), gtmp = dev_out(T, C, NULL);
    tw_self_attention_add(cuda, &gy, &gy, dwp, dbp, dseq, n, &a, gsp, &gtmp);
    char what[128];
    snprintf(what, sizeof what, "%s self_attention_add T=%lld n=%d C=%lld H=%d/%d D=%d",
             tw_dtype_name(dt), (long long)T, n, (long long)C, H, Hkv, D);
    double err = compare(what, &gy, want, dt == TW_DTYPE_F32 ? TOL_GEMV : TOL_GEMM, 0);
    tw_backend_release(cuda, gtmp.data);
    for (int i = 0; i < 4; i++) {
        tw_backend_release(cuda, gs[i].data);
        tw_backend_release(cuda, dw[i].data);
        tw_backend_release(cuda, db[i].data);
        tw_free(w[i].data), tw_free(bias[i]), tw_free(hbuf[i]);
    }
    CHECK_OK(tw_backend_sync(cuda));
    tw_free(x), tw_free(tmp), tw_free(want);
    return err;
}

// T rows of a (V, K) table, the first and last rows among them, against the reference.
static double embedding_case(enum tw_dtype dt, int64_t V, int64_t K, int64_t T)
{
    struct tw_tensor table = make_weights(dt, V, K);
    int32_t *ids = tw_malloc((size_t)T * sizeof *ids);
    float *ref = tw_malloc((size_t)(T * K) * sizeof *ref), *y = tw_malloc((size_t)(T * K) * 4);
    REQUIRE(ids && ref && y);
    for (int64_t t = 0; t < T; t++)
        ids[t] = (int32_t)(check_rand(&rng) % (uint64_t)V);
    ids[0] = 0;
    ids[T - 1] = (int32_t)(V - 1);
    struct tw_tensor tref = tw_tensor_f32_2d(ref, T, K);
    tw_embedding(tw_backend_cpu_ref(), &tref, &table, ids);

    struct tw_tensor dt_table;
    CHECK_OK(tw_backend_tensor_upload(cuda, &table, &dt_table));
    struct tw_tensor dy = tw_tensor_f32_2d(dev_poisoned((size_t)(T * K)), T, K);
    dy.device = TW_DEVICE_CUDA;
    tw_embedding(cuda, &dy, &dt_table, ids);
    CHECK_OK(tw_backend_download(cuda, y, dy.data, (size_t)(T * K) * sizeof *y));
    CHECK_OK(tw_backend_sync(cuda));

    size_t nan;
    double err = rel_err(y, ref, (size_t)(T * K), &nan);
    if (nan || !(err < TOL_EMBED))
        fprintf(stderr, "%s embedding V=%lld K=%lld T=%lld: error %.3g, %zu NaN\n",
                tw_dtype_name(dt), (long long)V, (long long)K, (long long)T, err, nan);
    CHECK_EQ_INT(nan, 0);
    CHECK(err < TOL_EMBED);

    tw_backend_release(cuda, dy.data);
    tw_backend_release(cuda, dt_table.data);
    tw_free(table.data);
    tw_free(ids);
    tw_free(ref);
    tw_free(y);
    return err;
}

int main(void)
{
    REQUIRE(tw_cuda_device_count() > 0);
    CHECK_OK(tw_backend_cuda_new(0, &cuda));
    REQUIRE(cuda);

    static const int64_t Ts[] = { 1, 3, 8, 17, 64 }, Ns[] = { 1, 7, 1000, 4097 };
    const int nT = sizeof Ts / sizeof Ts[0], nN = sizeof Ns / sizeof Ns[0];
    for (int d = 0; d < TW_DTYPE_COUNT; d++) {
        enum tw_dtype dt = (enum tw_dtype)d;
        // K of one block, a few blocks, and nine Q4_K blocks (2048 + 256); the float types
        // also take K = 37, whose rows are not 16-byte multiples.
        int64_t Ks[4];
        int nK = 0;
        if (tw_dtype_block_size(dt) <= 32)
            Ks[nK++] = 32;
        Ks[nK++] = 256;
        Ks[nK++] = 2048 + 256;
        if (!tw_dtype_is_quantized(dt))
            Ks[nK++] = 37;

        int cases = 0;
        double worst_gemv = 0, worst_gemm = 0, worst_embed = 0;
        for (int i = 0; i < nT; i++) {
            for (int j = 0; j < nN; j++) {
                int64_t T = Ts[i], N = Ns[j], K = Ks[(i + j) % nK];
                if (T * N * K > ((int64_t)1 << 28)) // the double-precision reference is slow
                    K = Ks[0];
                bool bias = (i + j) % 2 == 0, misalign = T <= GEMV_MAX_T && j % 2 == 1;
                double e = matmul_case(dt, T, N, K, bias, misalign);
                if (T <= GEMV_MAX_T)
                    worst_gemv = fmax(worst_gemv, e);
                else
                    worst_gemm = fmax(worst_gemm, e);
                cases++;
            }
        }
        // Every K once more at T = 1 and 8, both ways of bias.
        for (int k = 0; k < nK; k++) {
            worst_gemv = fmax(worst_gemv, matmul_case(dt, 1, 1000, Ks[k], k % 2 == 0, false));
            worst_gemv = fmax(worst_gemv, matmul_case(dt, 8, 7, Ks[k], k % 2 == 1, false));
            cases += 2;
            worst_embed = fmax(worst_embed, embedding_case(dt, 1000, Ks[k], 7));
        }
        // Long rows (K >= 12288: the 16-bit types' launch shape of the 8B's down projection).
        worst_gemv = fmax(worst_gemv, matmul_case(dt, 1, 67, 14336, true, false));
        cases++;
        // The fused forms at T = 1 (the norm folded in), 3 (gemv) and 17 (cuBLASLt).
        double worst_fused = 0;
        for (int k = 0; k < nK; k++) {
            worst_fused = fmax(worst_fused, fused_case(dt, 1, 1000, Ks[k], k % 2 == 1));
            worst_fused = fmax(worst_fused, fused_case(dt, 3, 7, Ks[k], false));
        }
        worst_fused = fmax(worst_fused, fused_case(dt, 1, 67, 14336, false));
        fused_case(dt, 17, 300, Ks[nK - 1], false);
        printf("%-4s matmul: %d cases, worst error %.2g (gemv), %.2g (gemm); "
               "embedding %.2g; fused at T <= 8 %.2g\n",
               tw_dtype_name(dt), cases, worst_gemv, worst_gemm, worst_embed, worst_fused);
    }
    // BERT's MLP: the bf16 hidden layer (MiniLM's shape, a short one, C not a multiple of 8),
    // the composed path beside it (F % 8 != 0, T <= 8, f32 weights).
    double worst_mlp = 0;
    for (int d = 0; d < 2; d++) {
        enum tw_dtype dt = d == 0 ? TW_DTYPE_BF16 : TW_DTYPE_F32;
        worst_mlp = fmax(worst_mlp, mlp_case(dt, 64, 384, 1536, true, TW_ACT_GELU, true));
        worst_mlp = fmax(worst_mlp, mlp_case(dt, 200, 128, 1000, false, TW_ACT_GELU_TANH, false));
        worst_mlp = fmax(worst_mlp, mlp_case(dt, 17, 37, 96, true, TW_ACT_RELU, false));
        worst_mlp = fmax(worst_mlp, mlp_case(dt, 33, 64, 100, true, TW_ACT_GELU, true));
        worst_mlp = fmax(worst_mlp, mlp_case(dt, 3, 64, 256, true, TW_ACT_GELU, false));
    }
    printf("mlp_add: worst error %.2g\n", worst_mlp);
    // The encoder's attention sublayer: MiniLM's shape (three sequences of 128), one
    // sequence with grouped heads of 64, uneven lengths, head sizes 128 and 36, the composed path
    // (a query tile too thin for the tensor cores; f32 weights).
    double worst_sa = 0;
    worst_sa = fmax(
        worst_sa, selfattn_case(TW_DTYPE_BF16, (int32_t[]){ 128, 128, 128 }, 3, 384, 12, 12, 32));
    worst_sa = fmax(worst_sa, selfattn_case(TW_DTYPE_BF16, (int32_t[]){ 64 }, 1, 256, 4, 2, 64));
    worst_sa =
        fmax(worst_sa, selfattn_case(TW_DTYPE_BF16, (int32_t[]){ 40, 70, 33 }, 3, 128, 2, 2, 64));
    worst_sa = fmax(worst_sa, selfattn_case(TW_DTYPE_BF16, (int32_t[]){ 100 }, 1, 256, 2, 1, 128));
    // head size 36: the second sequence's k and v rows start 8 bytes off a 16-byte boundary
    // (its blocks take the element-by-element loads)
    worst_sa =
        fmax(worst_sa, selfattn_case(TW_DTYPE_BF16, (int32_t[]){ 33, 70 }, 2, 64, 2, 1, 36));
    worst_sa =
        fmax(worst_sa, selfattn_case(TW_DTYPE_BF16, (int32_t[]){ 20, 30 }, 2, 64, 2, 2, 32));
    worst_sa = fmax(worst_sa, selfattn_case(TW_DTYPE_F32, (int32_t[]){ 50, 60 }, 2, 64, 4, 4, 16));
    printf("self_attention_add: worst error %.2g\n", worst_sa);
    tw_backend_free(cuda);
    return check_report("cuda_gemv");
}

// Tests the fast CPU backend's fused ops and its recorded steps (tensor/cpu_step.h): each
// fused op (an RMSNorm folded into products, a product added to a residual, the SwiGLU of two
// products, RoPE with the caches' stores) against the same backend's plain ops and against
// the reference; then a decoder layer's ops, with a copy and an op that has no node of its own
// among them, run op by op and as one recorded step: the results are the same bits, for a
// decoded row, a few rows of two sequences over paged caches, and prefill rows (sgemm and the
// blocked attention over gathered pages); the graph calls out of order; backends of one thread
// count sharing a team.
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "rand.h"
#include "tensor/backend.h"

static float *copy_buf(const float *src, size_t n)
{
    float *p = tw_malloc(n * sizeof *p);
    REQUIRE(p);
    memcpy(p, src, n * sizeof *p);
    return p;
}

// A random (N, K) weight of dtype dt (its bytes and its tensor).
struct weight {
    void *data;
    struct tw_tensor t;
};

static struct weight weight(enum tw_dtype dt, int64_t N, int64_t K)
{
    struct weight w;
    size_t row = 0;
    REQUIRE(tw_dtype_nbytes(dt, (size_t)K, &row) == 0);
    w.data = tw_malloc(row * (size_t)N);
    float *f = rand_buf((size_t)K);
    REQUIRE(w.data);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++)
            f[k] = frand() * 0.2f;
        tw_quantize_row(dt, f, (char *)w.data + (size_t)n * row, (size_t)K);
    }
    tw_free(f);
    REQUIRE(tw_tensor_init(&w.t, dt, 2, (int64_t[]){ N, K }, w.data, "w") == 0);
    return w;
}

// The fused ops against the backend's plain ops (the same bits where they share their
// arithmetic) and against the reference.
static void test_fused(struct tw_backend *be, enum tw_dtype dt, int64_t T)
{
    const int64_t K = 256, N = 256, F = 256;
    struct weight wq = weight(dt, N, K), wk = weight(dt, 32, K), wo = weight(dt, K, N);
    struct weight wg = weight(dt, F, K), wu = weight(dt, F, K);
    float *x = rand_buf((size_t)(T * K)), *nw = rand_buf((size_t)K), *bias = rand_buf((size_t)N);
    float *xn = rand_buf((size_t)(T * K)), *y[4], *r0 = rand_buf((size_t)(T * K));
    for (int i = 0; i < 4; i++)
        y[i] = rand_buf((size_t)(T * F));
    struct tw_tensor tx = tw_tensor_f32_2d(x, T, K), txn = tw_tensor_f32_2d(xn, T, K);
    struct tw_tensor tnw = tw_tensor_f32_1d(nw, K), tb = tw_tensor_f32_1d(bias, N);
    struct tw_prenorm pn = { &tnw, 1e-5f, &txn };

    // RMSNorm folded into two products, one with a bias
    struct tw_tensor q0 = tw_tensor_f32_2d(y[0], T, N), k0 = tw_tensor_f32_2d(y[1], T, 32);
    struct tw_tensor q1 = tw_tensor_f32_2d(y[2], T, N), k1 = tw_tensor_f32_2d(y[3], T, 32);
    struct tw_tensor *ys0[2] = { &q0, &k0 }, *ys1[2] = { &q1, &k1 };
    const struct tw_tensor *ws[2] = { &wq.t, &wk.t }, *bs[2] = { &tb, NULL };
    tw_matmul_n(be, 2, ys1, &tx, ws, bs, &pn);
    tw_rmsnorm(be, &txn, &tx, &tnw, 1e-5f);
    tw_matmul_n(be, 2, ys0, &txn, ws, bs, NULL);
    CHECK(memcmp(y[0], y[2], (size_t)(T * N) * sizeof(float)) == 0);
    CHECK(memcmp(y[1], y[3], (size_t)(T * 32) * sizeof(float)) == 0);
    tw_rmsnorm(tw_backend_cpu_ref(), &txn, &tx, &tnw, 1e-5f);
    tw_matmul_n(tw_backend_cpu_ref(), 2, ys0, &txn, ws, bs, NULL);
    CHECK(rel_err(y[2], y[0], (size_t)(T * N)) < 3e-2);

    // a product added to a residual
    float *ra = copy_buf(r0, (size_t)(T * K)), *rb = copy_buf(r0, (size_t)(T * K));
    struct tw_tensor tra = tw_tensor_f32_2d(ra, T, K), trb = tw_tensor_f32_2d(rb, T, K);
    struct tw_tensor tq = tw_tensor_f32_2d(y[0], T, N), tmp = tw_tensor_f32_2d(xn, T, K);
    tw_matmul_add(be, &tra, &tq, &wo.t, NULL, &tmp);
    tw_matmul(be, &tmp, &tq, &wo.t, NULL);
    tw_add(be, &trb, &trb, &tmp);
    CHECK(memcmp(ra, rb, (size_t)(T * K) * sizeof(float)) == 0);
    memcpy(rb, r0, (size_t)(T * K) * sizeof(float));
    tw_matmul_add(tw_backend_cpu_ref(), &trb, &tq, &wo.t, NULL, &tmp);
    CHECK(rel_err(ra, rb, (size_t)(T * K)) < 3e-2);

    // SwiGLU of two products of a normalised x (its float arithmetic: within an ulp or so)
    struct tw_tensor g0 = tw_tensor_f32_2d(y[0], T, F), u0 = tw_tensor_f32_2d(y[1], T, F);
    struct tw_tensor g1 = tw_tensor_f32_2d(y[2], T, F), u1 = tw_tensor_f32_2d(y[3], T, F);
    tw_matmul_swiglu(be, &g1, &tx, &wg.t, &wu.t, &u1, &pn);
    tw_rmsnorm(be, &txn, &tx, &tnw, 1e-5f);
    struct tw_tensor *gu[2] = { &g0, &u0 };
    const struct tw_tensor *w2[2] = { &wg.t, &wu.t };
    tw_matmul_n(be, 2, gu, &txn, w2, NULL, NULL);
    tw_swiglu(be, &g0, &g0, &u0);
    CHECK(rel_err(y[2], y[0], (size_t)(T * F)) < 1e-6);
    tw_matmul_swiglu(tw_backend_cpu_ref(), &g0, &tx, &wg.t, &wu.t, &u0, &pn);
    CHECK(rel_err(y[2], y[0], (size_t)(T * F)) < 3e-2);

    tw_free(ra), tw_free(rb), tw_free(x), tw_free(nw), tw_free(bias), tw_free(xn), tw_free(r0);
    for (int i = 0; i < 4; i++)
        tw_free(y[i]);
    struct weight all[] = { wq, wk, wo, wg, wu };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tw_free(all[i].data);
}

// RoPE and the caches' stores: the reference's angles and rotation, so the same bits.
static void test_rope_store(struct tw_backend *be)
{
    const int64_t T = 5, H = 6, Hkv = 2, D = 64, kvd = Hkv * D;
    float inv[32];
    for (int i = 0; i < 32; i++)
        inv[i] = powf(10000.0f, -2.0f * (float)i / (float)D);
    int32_t pos[5] = { 0, 7, 8, 300, 4095 }, rows[5] = { 9, 3, 0, 4, 11 };
    for (int neox = 0; neox < 2; neox++) {
        float *q[2], *k[2], *kc[2], *vc[2], *v = rand_buf((size_t)(T * kvd));
        q[0] = rand_buf((size_t)(T * H * D)), k[0] = rand_buf((size_t)(T * kvd));
        kc[0] = rand_buf((size_t)(12 * kvd)), vc[0] = rand_buf((size_t)(12 * kvd));
        q[1] = copy_buf(q[0], (size_t)(T * H * D)), k[1] = copy_buf(k[0], (size_t)(T * kvd));
        kc[1] = copy_buf(kc[0], (size_t)(12 * kvd)), vc[1] = copy_buf(vc[0], (size_t)(12 * kvd));
        struct tw_rope r = { .head_dim = 64, .n_rot = 64, .neox = neox, .inv_freq = inv };
        struct tw_tensor tv = tw_tensor_f32_2d(v, T, kvd);
        struct tw_backend *bes[2] = { tw_backend_cpu_ref(), be };
        for (int i = 0; i < 2; i++) {
            struct tw_tensor tq = tw_tensor_f32_3d(q[i], T, H, D);
            struct tw_tensor tk = tw_tensor_f32_3d(k[i], T, Hkv, D);
            tw_rope_store(bes[i], &tq, &tk, &tv, pos, &r, kc[i], vc[i], rows);
        }
        CHECK(memcmp(q[0], q[1], (size_t)(T * H * D) * sizeof(float)) == 0);
        CHECK(memcmp(k[0], k[1], (size_t)(T * kvd) * sizeof(float)) == 0);
        CHECK(memcmp(kc[0], kc[1], (size_t)(12 * kvd) * sizeof(float)) == 0);
        CHECK(memcmp(vc[0], vc[1], (size_t)(12 * kvd) * sizeof(float)) == 0);
        for (int i = 0; i < 2; i++)
            tw_free(q[i]), tw_free(k[i]), tw_free(kc[i]), tw_free(vc[i]);
        tw_free(v);
    }
}

// A decoder layer's state: the activations, the paged caches and the outputs.
enum { C = 256, H = 4, HKV = 2, D = 64, FF = 512, PAGE = 4, PAGES = 24 };
struct layer {
    float *x, *kc, *vc, *soft; // soft: a copy of the attention's output, softmaxed
};

struct weights {
    struct weight wq, wk, wv, wo, wg, wu, wd;
    float *an, *fn, *inv;
};

// A layer's scratch: as a context's, it lives until the step has run.
struct scratch {
    float *q, *k, *v, *att, *xn, *g, *u, *gather;
    int32_t *pos, *slots;
};

static struct scratch scratch_new(int64_t T)
{
    int64_t kvd = HKV * D;
    struct scratch s = { tw_calloc((size_t)(T * H * D), sizeof(float)),
                         tw_calloc((size_t)(T * kvd), sizeof(float)),
                         tw_calloc((size_t)(T * kvd), sizeof(float)),
                         tw_calloc((size_t)(T * H * D), sizeof(float)),
                         tw_calloc((size_t)(T * C), sizeof(float)),
                         tw_calloc((size_t)(T * FF), sizeof(float)),
                         tw_calloc((size_t)(T * FF), sizeof(float)),
                         tw_calloc((size_t)(2 * PAGES * PAGE * kvd), sizeof(float)),
                         tw_malloc_array((size_t)T, sizeof(int32_t)),
                         tw_malloc_array((size_t)T, sizeof(int32_t)) };
    REQUIRE(s.q && s.k && s.v && s.att && s.xn && s.g && s.u && s.gather && s.pos && s.slots);
    return s;
}

static void scratch_free(struct scratch *s)
{
    tw_free(s->q), tw_free(s->k), tw_free(s->v), tw_free(s->att), tw_free(s->xn);
    tw_free(s->g), tw_free(s->u), tw_free(s->gather), tw_free(s->pos), tw_free(s->slots);
}

// The ops of a decoder layer (context.c's) on two sequences of n0 and n1 rows after 5 and 9
// cached ones (n1 = 0: one sequence), with a copy and a softmax (no node of its own) after the
// attention.
static void run_layer(struct tw_backend *be, const struct weights *w, struct layer *L,
                      const struct scratch *sc, int64_t n0, int64_t n1)
{
    int64_t T = n0 + n1, kvd = HKV * D;
    // sequence 0's pages 0, 2, 4, ...; sequence 1's 1, 3, 5, ... (its own of the pool)
    static const int32_t tab0[] = { 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22 };
    static const int32_t tab1[] = { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23 };
    struct tw_attn_seq seqs[2] = { { 0, (int32_t)n0, 5, L->kc, L->vc, tab0 },
                                   { (int32_t)n0, (int32_t)n1, 9, L->kc, L->vc, tab1 } };
    for (int64_t t = 0; t < T; t++) {
        const struct tw_attn_seq *s = &seqs[t < n0 ? 0 : 1];
        int32_t p = s->n_past + (int32_t)(t - s->row0);
        sc->pos[t] = p;
        sc->slots[t] = s->pages[p / PAGE] * PAGE + p % PAGE;
    }
    struct tw_tensor x = tw_tensor_f32_2d(L->x, T, C), txn = tw_tensor_f32_2d(sc->xn, T, C);
    struct tw_tensor tq = tw_tensor_f32_2d(sc->q, T, H * D);
    struct tw_tensor tk = tw_tensor_f32_2d(sc->k, T, kvd), tv = tw_tensor_f32_2d(sc->v, T, kvd);
    struct tw_tensor an = tw_tensor_f32_1d(w->an, C), fn = tw_tensor_f32_1d(w->fn, C);
    struct tw_tensor *qkv[3] = { &tq, &tk, &tv };
    const struct tw_tensor *w3[3] = { &w->wq.t, &w->wk.t, &w->wv.t };
    struct tw_prenorm pn = { &an, 1e-5f, &txn };
    tw_matmul_n(be, 3, qkv, &x, w3, NULL, &pn);
    struct tw_tensor qh = tw_tensor_f32_3d(sc->q, T, H, D);
    struct tw_tensor kh = tw_tensor_f32_3d(sc->k, T, HKV, D);
    struct tw_rope r = { .head_dim = D, .n_rot = D, .neox = true, .inv_freq = w->inv };
    tw_rope_store(be, &qh, &kh, &tv, sc->pos, &r, L->kc, L->vc, sc->slots);
    struct tw_attn a = { .n_head = H,
                         .n_head_kv = HKV,
                         .head_dim = D,
                         .scale = 0.125f,
                         .causal = true,
                         .page = PAGE,
                         .max_pages = PAGES,
                         .gather = sc->gather };
    struct tw_tensor ta = tw_tensor_f32_2d(sc->att, T, H * D);
    tw_attention_seqs(be, &ta, &qh, seqs, n1 > 0 ? 2 : 1, &a);
    tw_backend_copy(be, L->soft, sc->att, (size_t)(T * H * D) * sizeof(float));
    struct tw_tensor ts = tw_tensor_f32_2d(L->soft, T * H, D);
    tw_softmax(be, &ts);
    tw_matmul_add(be, &x, &ta, &w->wo.t, NULL, &txn);
    struct tw_tensor tg = tw_tensor_f32_2d(sc->g, T, FF), tu = tw_tensor_f32_2d(sc->u, T, FF);
    pn.w = &fn;
    tw_matmul_swiglu(be, &tg, &x, &w->wg.t, &w->wu.t, &tu, &pn);
    tw_matmul_add(be, &x, &tg, &w->wd.t, NULL, &txn);
}

static struct layer layer_copy(const struct layer *L, int64_t T)
{
    size_t pool = (size_t)(PAGES * PAGE * HKV * D);
    return (struct layer){ copy_buf(L->x, (size_t)(T * C)), copy_buf(L->kc, pool),
                           copy_buf(L->vc, pool), copy_buf(L->soft, (size_t)(T * H * D)) };
}

static void layer_free(struct layer *L)
{
    tw_free(L->x), tw_free(L->kc), tw_free(L->vc), tw_free(L->soft);
}

// The layer op by op and recorded (twice: the recording's memory reused), the same bits.
static void test_step(struct tw_backend *be, enum tw_dtype dt, int64_t n0, int64_t n1)
{
    int64_t T = n0 + n1;
    struct weights w = { weight(dt, H * D, C),
                         weight(dt, HKV * D, C),
                         weight(dt, HKV * D, C),
                         weight(dt, C, H * D),
                         weight(dt, FF, C),
                         weight(dt, FF, C),
                         weight(dt, C, FF),
                         rand_buf(C),
                         rand_buf(C),
                         tw_malloc(32 * sizeof(float)) };
    REQUIRE(w.inv);
    for (int i = 0; i < 32; i++)
        w.inv[i] = powf(10000.0f, -2.0f * (float)i / (float)D);
    size_t pool = (size_t)(PAGES * PAGE * HKV * D);
    struct layer L0 = { rand_buf((size_t)(T * C)), rand_buf(pool), rand_buf(pool),
                        rand_buf((size_t)(T * H * D)) };
    struct layer eager = layer_copy(&L0, T);
    struct scratch sc = scratch_new(T);
    run_layer(be, &w, &eager, &sc, n0, n1);
    scratch_free(&sc);
    void *g = NULL;
    for (int rep = 0; rep < 2; rep++) {
        struct layer rec = layer_copy(&L0, T);
        sc = scratch_new(T); // zeros: nothing left from the run before
        CHECK_OK(tw_backend_graph_begin(be, &g, PAGES * PAGE, (int32_t)T));
        run_layer(be, &w, &rec, &sc, n0, n1);
        CHECK_OK(tw_backend_graph_end(be, &g));
        scratch_free(&sc);
        CHECK(memcmp(rec.x, eager.x, (size_t)(T * C) * sizeof(float)) == 0);
        CHECK(memcmp(rec.kc, eager.kc, pool * sizeof(float)) == 0);
        CHECK(memcmp(rec.vc, eager.vc, pool * sizeof(float)) == 0);
        CHECK(memcmp(rec.soft, eager.soft, (size_t)(T * H * D) * sizeof(float)) == 0);
        layer_free(&rec);
    }
    tw_backend_graph_free(be, g);
    // the layer changed x and the caches
    CHECK(memcmp(L0.x, eager.x, (size_t)(T * C) * sizeof(float)) != 0);
    CHECK(memcmp(L0.kc, eager.kc, pool * sizeof(float)) != 0);
    layer_free(&L0), layer_free(&eager);
    struct weight all[] = { w.wq, w.wk, w.wv, w.wo, w.wg, w.wu, w.wd };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        tw_free(all[i].data);
    tw_free(w.an), tw_free(w.fn), tw_free(w.inv);
}

// graph_end without a recording, and a second recording begun inside one.
static void test_graph_calls(struct tw_backend *be)
{
    void *g = NULL, *g2 = NULL;
    CHECK_EQ_INT(tw_backend_graph_end(be, &g), TW_ESTATE);
    tw_error_clear();
    CHECK_OK(tw_backend_graph_begin(be, &g, 16, 1));
    CHECK_EQ_INT(tw_backend_graph_begin(be, &g2, 16, 1), TW_EUNSUPPORTED);
    tw_error_clear();
    float a[4] = { 1, 2, 3, 4 }, b[4] = { 10, 20, 30, 40 };
    struct tw_tensor ta = tw_tensor_f32_2d(a, 1, 4), tb = tw_tensor_f32_2d(b, 1, 4);
    tw_add(be, &ta, &ta, &tb);
    CHECK(a[0] == 1); // queued, not run yet
    CHECK_OK(tw_backend_graph_end(be, &g));
    CHECK(a[0] == 11 && a[3] == 44);
    tw_backend_graph_free(be, g);
    tw_backend_graph_free(be, g2);
}

// The threads of this process (/proc/self/task's entries).
static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    REQUIRE(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

// Backends of one thread count share a team: a second one starts no threads, and works after
// the first is gone; the last one's end stops them.
static void test_shared_team(void)
{
    struct tw_backend *one = NULL, *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(tw_backend_cpu_new(1, &one) == 0); // no workers; OpenBLAS set up, its threads made
    int before = threads_now();
    REQUIRE(tw_backend_cpu_new(5, &a) == 0);
    CHECK_EQ_INT(threads_now(), before + 4);
    REQUIRE(tw_backend_cpu_new(5, &b) == 0);
    CHECK_EQ_INT(threads_now(), before + 4);
    REQUIRE(tw_backend_cpu_new(3, &c) == 0); // another count: a team of its own
    CHECK_EQ_INT(threads_now(), before + 6);
    tw_backend_free(a);
    CHECK_EQ_INT(threads_now(), before + 6);
    float x[4] = { 1, 2, 3, 4 }, y[4] = { 10, 20, 30, 40 };
    struct tw_tensor tx = tw_tensor_f32_2d(x, 1, 4), ty = tw_tensor_f32_2d(y, 1, 4);
    void *g = NULL;
    CHECK_OK(tw_backend_graph_begin(b, &g, 16, 1));
    tw_add(b, &tx, &tx, &ty);
    CHECK_OK(tw_backend_graph_end(b, &g));
    tw_backend_graph_free(b, g);
    CHECK(x[0] == 11 && x[3] == 44);
    tw_backend_free(b);
    CHECK_EQ_INT(threads_now(), before + 2);
    tw_backend_free(c);
    CHECK_EQ_INT(threads_now(), before);
    tw_backend_free(one);
}

int main(void)
{
    test_rng = 0x2545F4914F6CDD1Dull;
    test_shared_team();
    enum tw_dtype dts[] = { TW_DTYPE_F32, TW_DTYPE_BF16, TW_DTYPE_Q8_0, TW_DTYPE_Q4_0,
                            TW_DTYPE_Q4_K };
    int threads[] = { 1, 4 };
    for (int i = 0; i < 2; i++) {
        struct tw_backend *be = NULL;
        REQUIRE(tw_backend_cpu_new(threads[i], &be) == 0);
        for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
            test_fused(be, dts[d], 1);
            test_fused(be, dts[d], 3);
            test_fused(be, dts[d], 40);
            test_step(be, dts[d], 1, 0); // a decoded row
            test_step(be, dts[d], 3, 2);
            test_step(be, dts[d], 20, 19); // prefill rows: sgemm, blocks over gathered pages
        }
        test_rope_store(be);
        test_graph_calls(be);
        tw_backend_free(be);
    }
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("tensor_test_cpu_step");
}

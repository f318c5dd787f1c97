// The CUDA backend's attention (src/tensor/cuda/attn.cu, through tw_attention and
// tw_attention_seqs) against the reference backend on random inputs: decode rows over short
// and long caches (the long ones split across blocks), prefill tiles that are not multiples
// of the kernel's, grouped-query heads, a sliding window, non-causal (encoder) attention,
// and several sequences of different lengths in one call, their caches apart or paged in one
// pool (pages in a shuffled order); with lowp, prefill on bf16 tensor
// cores (a looser bound) while decode stays f32, and prefills of fresh sequences on the
// training attention's forward (TWIN_PREFILL_FLASH=1: all of them, whatever their size). Outputs
// are poisoned with NaN first, so an unwritten element fails. Run by `make test-cuda` on the GPU
// machine.
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "cuda/cuda_check.h"
#include "tensor/backend.h"
#include "tensor/cuda.h"

static struct tw_backend *gpu;
static uint64_t rng = 0x5EEDull;

// The device result against the reference: every element written (finite), ‖got − want‖ /
// ‖want‖ < tol and no element off by more than tol (outputs are averages of values in
// [-1, 1), so of order 1). tol: 1e-5 for f32; 1e-2 for the bf16 path, whose inputs carry
// 8 significant bits (relative errors near 3e-3 are expected).
static void check_close(const float *dev, const float *want, size_t n, double tol,
                        const char *what)
{
    float *got = tw_malloc_array(n, sizeof(float));
    REQUIRE(got);
    CHECK_OK(tw_backend_download(gpu, got, dev, n * sizeof(float)));
    size_t bad = 0;
    double d = 0, w = 0, max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            bad++;
            continue;
        }
        double e = fabs((double)got[i] - want[i]);
        d += e * e;
        w += (double)want[i] * want[i];
        max_abs = e > max_abs ? e : max_abs;
    }
    double rel = sqrt(d / w);
    bool ok = bad == 0 && rel < tol && max_abs < tol;
    if (!ok)
        fprintf(stderr, "%s: %zu unwritten, rel %.3g, max abs %.3g\n", what, bad, rel, max_abs);
    CHECK_EQ_INT(bad, 0);
    CHECK(rel < tol);
    CHECK(max_abs < tol);
    tw_free(got);
}

struct attn_case {
    int64_t T, n_past, H, Hkv, D;
    int32_t window;
    bool causal;
    bool lowp; // bf16 allowed: prefill-sized work runs on tensor cores, decode stays f32
};

// The bound for a case's result: bf16's only where the tensor cores may have run.
static double tol_of(bool lowp, int64_t T)
{
    return lowp && T > 1 ? 1e-2 : 1e-5;
}

static struct tw_attn attn_of(int64_t H, int64_t Hkv, int64_t D, int32_t window, bool causal,
                              int64_t n_past, bool lowp)
{
    struct tw_attn a = { .n_head = (int32_t)H,
                         .n_head_kv = (int32_t)Hkv,
                         .head_dim = (int32_t)D,
                         .scale = 1 / sqrtf((float)D),
                         .causal = causal,
                         .window = window,
                         .n_past = (int32_t)n_past,
                         .lowp = lowp };
    return a;
}

// One sequence through tw_attention: q (T, H, D), k and v (n_past + T, Hkv, D).
static void test_one(const struct attn_case *c)
{
    int64_t T = c->T, S = c->n_past + T, H = c->H, Hkv = c->Hkv, D = c->D;
    char what[160];
    snprintf(what, sizeof what,
             "attention T %lld n_past %lld heads %lld/%lld D %lld window %d%s%s", (long long)T,
             (long long)c->n_past, (long long)H, (long long)Hkv, (long long)D, c->window,
             c->causal ? "" : " non-causal", c->lowp ? " lowp" : "");
    float *q = host_random(&rng, (size_t)(T * H * D), 1.0f),
          *k = host_random(&rng, (size_t)(S * Hkv * D), 1.0f);
    float *v = host_random(&rng, (size_t)(S * Hkv * D), 1.0f),
          *ref = host_random(&rng, (size_t)(T * H * D), 1.0f);
    struct tw_tensor tq = tw_tensor_f32_3d(q, T, H, D), tk = tw_tensor_f32_3d(k, S, Hkv, D);
    struct tw_tensor tv = tw_tensor_f32_3d(v, S, Hkv, D), tr = tw_tensor_f32_2d(ref, T, H * D);
    struct tw_attn a = attn_of(H, Hkv, D, c->window, c->causal, c->n_past, c->lowp);
    tw_attention(tw_backend_cpu_ref(), &tr, &tq, &tk, &tv, &a);

    struct tw_tensor dq, dk, dv;
    CHECK_OK(tw_backend_tensor_upload(gpu, &tq, &dq));
    CHECK_OK(tw_backend_tensor_upload(gpu, &tk, &dk));
    CHECK_OK(tw_backend_tensor_upload(gpu, &tv, &dv));
    float *dout = dev_poisoned(gpu, (size_t)(T * H * D));
    struct tw_tensor to = tw_tensor_f32_2d(dout, T, H * D);
    to.device = TW_DEVICE_CUDA;
    tw_attention(gpu, &to, &dq, &dk, &dv, &a);
    CHECK_OK(tw_backend_sync(gpu));
    check_close(dout, ref, (size_t)(T * H * D), tol_of(c->lowp, T), what);

    tw_backend_release(gpu, dq.data), tw_backend_release(gpu, dk.data);
    tw_backend_release(gpu, dv.data), tw_backend_release(gpu, dout);
    tw_free(q), tw_free(k), tw_free(v), tw_free(ref);
}

struct seq_shape {
    int32_t n_past, n_rows;
};

// Several sequences in one tw_attention_seqs call, each with its own cache; a->n_past is set
// to a value no sequence has, since it must be ignored. With page > 0 the GPU reads the
// caches from one pool of pages of that many rows, each sequence's pages scattered through it
// (the reference, from the caches apart).
static void test_seqs(int64_t H, int64_t Hkv, int64_t D, int32_t window,
                      const struct seq_shape *shapes, int n, bool lowp, int32_t page)
{
    char what[160];
    snprintf(what, sizeof what,
             "attention_seqs %d seqs heads %lld/%lld D %lld window %d%s page %d", n, (long long)H,
             (long long)Hkv, (long long)D, window, lowp ? " lowp" : "", page);
    int64_t T = 0, max_rows = 0;
    for (int i = 0; i < n; i++) {
        T += shapes[i].n_rows;
        max_rows = shapes[i].n_rows > max_rows ? shapes[i].n_rows : max_rows;
    }
    struct tw_attn_seq *hs = tw_malloc_array((size_t)n, sizeof *hs);
    struct tw_attn_seq *ds = tw_malloc_array((size_t)n, sizeof *ds);
    REQUIRE(hs && ds);
    int32_t row0 = 0;
    for (int i = 0; i < n; i++) {
        size_t kv = (size_t)(shapes[i].n_past + shapes[i].n_rows) * (size_t)(Hkv * D);
        float *k = host_random(&rng, kv, 1.0f), *v = host_random(&rng, kv, 1.0f);
        hs[i] = (struct tw_attn_seq){ row0, shapes[i].n_rows, shapes[i].n_past, k, v, NULL };
        ds[i] = (struct tw_attn_seq){
            row0, shapes[i].n_rows, shapes[i].n_past, dev_of(gpu, k, kv), dev_of(gpu, v, kv), NULL
        };
        row0 += shapes[i].n_rows;
    }
    float *q = host_random(&rng, (size_t)(T * H * D), 1.0f),
          *ref = host_random(&rng, (size_t)(T * H * D), 1.0f);
    struct tw_tensor tq = tw_tensor_f32_3d(q, T, H, D), tr = tw_tensor_f32_2d(ref, T, H * D);
    struct tw_attn a = attn_of(H, Hkv, D, window, true, 12345, lowp);
    tw_attention_seqs(tw_backend_cpu_ref(), &tr, &tq, hs, n, &a);

    // The pool: page p of sequence i is the pool's page perm[first[i] + p].
    int32_t *tabs = NULL;
    float *pool_k = NULL, *pool_v = NULL;
    if (page > 0) {
        int32_t np = 0, maxp = 0, *first = tw_malloc_array((size_t)n, sizeof *first);
        REQUIRE(first);
        for (int i = 0; i < n; i++) {
            int32_t k = (shapes[i].n_past + shapes[i].n_rows + page - 1) / page;
            first[i] = np;
            np += k;
            maxp = k > maxp ? k : maxp;
        }
        size_t row = (size_t)(Hkv * D), bytes = (size_t)np * (size_t)page * row;
        float *hk = tw_calloc(bytes, sizeof(float)), *hv = tw_calloc(bytes, sizeof(float));
        tabs = tw_calloc((size_t)n * (size_t)maxp, sizeof *tabs);
        REQUIRE(hk && hv && tabs);
        for (int i = 0; i < n; i++) {
            int32_t S = shapes[i].n_past + shapes[i].n_rows;
            for (int32_t j = 0; j < S; j++) {
                int32_t g = first[i] + j / page;
                int32_t at = (int32_t)(((int64_t)g * 7919 + 13) % np); // 7919 prime: a shuffle
                if (np % 7919 == 0)
                    at = g;
                tabs[(size_t)i * (size_t)maxp + (size_t)(j / page)] = at;
                size_t dst = ((size_t)at * (size_t)page + (size_t)(j % page)) * row;
                memcpy(hk + dst, hs[i].k + (size_t)j * row, row * sizeof(float));
                memcpy(hv + dst, hs[i].v + (size_t)j * row, row * sizeof(float));
            }
        }
        pool_k = dev_of(gpu, hk, bytes), pool_v = dev_of(gpu, hv, bytes);
        for (int i = 0; i < n; i++) {
            tw_backend_release(gpu, (void *)ds[i].k), tw_backend_release(gpu, (void *)ds[i].v);
            ds[i].k = pool_k, ds[i].v = pool_v;
            ds[i].pages = tabs + (size_t)i * (size_t)maxp;
        }
        a.page = page, a.max_pages = maxp;
        tw_free(hk), tw_free(hv), tw_free(first);
    }
    struct tw_tensor dq;
    CHECK_OK(tw_backend_tensor_upload(gpu, &tq, &dq));
    float *dout = dev_poisoned(gpu, (size_t)(T * H * D));
    struct tw_tensor to = tw_tensor_f32_2d(dout, T, H * D);
    to.device = TW_DEVICE_CUDA;
    tw_attention_seqs(gpu, &to, &dq, ds, n, &a);
    CHECK_OK(tw_backend_sync(gpu));
    check_close(dout, ref, (size_t)(T * H * D), tol_of(lowp, max_rows), what);

    for (int i = 0; i < n; i++) {
        tw_free((void *)hs[i].k), tw_free((void *)hs[i].v);
        if (page == 0)
            tw_backend_release(gpu, (void *)ds[i].k), tw_backend_release(gpu, (void *)ds[i].v);
    }
    if (page > 0)
        tw_backend_release(gpu, pool_k), tw_backend_release(gpu, pool_v);
    tw_free(tabs);
    tw_backend_release(gpu, dq.data), tw_backend_release(gpu, dout);
    tw_free(hs), tw_free(ds), tw_free(q), tw_free(ref);
}

int main(void)
{
    REQUIRE(tw_cuda_device_count() > 0);
    // Every fresh lowp prefill on fattn's forward, whatever its size (by default only those
    // whose grid fills the GPU go there); those with a cached prefix keep tc_kernel.
    setenv("TWIN_PREFILL_FLASH", "1", 1);
    CHECK_OK(tw_backend_cuda_new(0, &gpu));
    REQUIRE(gpu);
    static const struct attn_case cases[] = {
        // decode: empty and short caches, long ones (split across blocks), GQA shapes
        { 1, 0, 8, 2, 64, 0, true, false },
        { 1, 1, 8, 2, 64, 0, true, false },
        { 1, 37, 8, 2, 64, 0, true, false },
        { 1, 1000, 8, 2, 64, 0, true, false },
        { 1, 5000, 8, 2, 64, 0, true, false },
        { 1, 1000, 4, 4, 128, 0, true, false },
        { 1, 5000, 4, 4, 128, 0, true, false },
        { 1, 1000, 32, 8, 64, 0, true, false },
        { 1, 5000, 32, 8, 128, 0, true, false },
        { 1, 1000, 14, 2, 64, 0, true, false }, // Qwen2-0.5B
        { 3, 1000, 14, 2, 64, 0, true, false },
        { 4, 2000, 32, 8, 128, 0, true, false },
        { 1, 37, 4, 2, 16, 0, true, false }, // the tiny test models' heads
        { 1, 5000, 4, 2, 16, 0, true, false },
        // sliding window, decode and prefill
        { 1, 1000, 8, 2, 64, 16, true, false },
        { 4, 300, 4, 4, 128, 16, true, false },
        { 64, 0, 8, 2, 128, 16, true, false },
        { 130, 50, 14, 2, 64, 16, true, false },
        // prefill: sizes around the kernel's tiles, with and without a cached prefix
        { 1, 0, 8, 2, 64, 0, true, false },
        { 5, 0, 8, 2, 64, 0, true, false },
        { 64, 0, 8, 2, 64, 0, true, false },
        { 130, 0, 8, 2, 64, 0, true, false },
        { 1, 50, 8, 2, 64, 0, true, false },
        { 5, 50, 8, 2, 64, 0, true, false },
        { 64, 50, 8, 2, 64, 0, true, false },
        { 130, 50, 8, 2, 64, 0, true, false },
        { 130, 50, 4, 4, 128, 0, true, false },
        { 130, 0, 32, 8, 128, 0, true, false },
        { 130, 50, 4, 2, 16, 0, true, false },
        { 5, 50, 4, 2, 16, 0, true, false },
        // non-causal (BERT): every row sees all rows
        { 40, 0, 4, 2, 64, 0, false, false },
        { 40, 0, 4, 4, 16, 0, false, false },
        { 40, 0, 12, 12, 64, 0, false, false },
        { 40, 0, 4, 4, 128, 0, false, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_one(&cases[i]);

    // lowp: prefill on bf16 tensor cores (the tile sizes' edges, a cached prefix, GQA and
    // head sizes of Llama-3 8B, Qwen2 0.5B and a plain model, a window); decode stays f32.
    static const int64_t shapes[][3] = { { 32, 8, 128 }, { 14, 2, 64 }, { 8, 8, 64 } };
    for (int i = 0; i < 3; i++) {
        int64_t H = shapes[i][0], Hkv = shapes[i][1], D = shapes[i][2];
        static const int64_t Ts[] = { 64, 130 };
        for (int t = 0; t < 2; t++)
            for (int64_t n_past = 0; n_past <= 50; n_past += 50)
                for (int32_t window = 0; window <= 16; window += 16) {
                    struct attn_case c = { Ts[t], n_past, H, Hkv, D, window, true, true };
                    test_one(&c);
                }
        struct attn_case big = { 1000, 0, H, Hkv, D, 0, true, true };
        test_one(&big);
        struct attn_case big_past = { 1000, 50, H, Hkv, D, 16, true, true };
        test_one(&big_past);
        struct attn_case decode = { 1, 1000, H, Hkv, D, 0, true, true };
        test_one(&decode);
    }
    static const struct attn_case lowp_cases[] = {
        { 200, 0, 4, 4, 128, 0, false, true },  // non-causal
        { 130, 50, 4, 2, 80, 0, true, true },   // head size padded to 128
        { 130, 50, 4, 2, 48, 16, true, true },  // head size padded to 64
        { 5, 50, 8, 2, 64, 0, true, true },     // too few rows: f32
        { 1, 5000, 32, 8, 128, 0, true, true }, // decode, split across blocks
        { 128, 0, 12, 12, 32, 0, false, true }, // BERT's MiniLM: head size 32, non-causal
        { 100, 37, 8, 2, 32, 0, true, true },   // head size 32, causal, grouped
        { 70, 0, 4, 4, 20, 0, false, true },    // head size padded to 32
    };
    for (size_t i = 0; i < sizeof lowp_cases / sizeof lowp_cases[0]; i++)
        test_one(&lowp_cases[i]);

    static const struct seq_shape mixed[] = { { 0, 7 }, { 20, 1 }, { 100, 3 } };
    static const int64_t dims[] = { 16, 64, 128 };
    for (int i = 0; i < 3; i++) {
        test_seqs(8, 2, dims[i], 0, mixed, 3, false, 0);
        test_seqs(8, 2, dims[i], 16, mixed, 3, false, 0);
    }
    // Continuous batching: decode rows over caches of very different lengths (the longest
    // split across blocks), and decode mixed with a prefill.
    static const struct seq_shape decode[] = { { 0, 1 },    { 5, 1 },    { 300, 1 },
                                               { 1000, 1 }, { 4000, 1 }, { 17, 1 } };
    test_seqs(14, 2, 64, 0, decode, 6, false, 0);
    static const struct seq_shape prefill_and_decode[] = { { 3000, 1 }, { 0, 130 }, { 50, 4 } };
    test_seqs(32, 8, 128, 0, prefill_and_decode, 3, false, 0);
    test_seqs(32, 8, 128, 16, prefill_and_decode, 3, false, 0);
    // The same with lowp (the batch is prefill-sized, so every sequence goes to the tensor
    // cores, the decode rows included), prefills of several sizes, and decode alone (f32).
    test_seqs(32, 8, 128, 0, prefill_and_decode, 3, true, 0);
    test_seqs(32, 8, 128, 16, prefill_and_decode, 3, true, 0);
    static const struct seq_shape prefills[] = { { 0, 130 }, { 50, 64 }, { 7, 300 }, { 1000, 1 } };
    test_seqs(32, 8, 128, 0, prefills, 4, true, 0);
    test_seqs(14, 2, 64, 16, prefills, 4, true, 0);
    test_seqs(8, 8, 64, 0, prefills, 4, true, 0);
    test_seqs(12, 12, 32, 0, prefills, 4, true, 0);
    test_seqs(12, 4, 32, 16, prefills, 4, true, 16);
    test_seqs(14, 2, 64, 0, decode, 6, true, 0);
    // Fresh prefills only (every n_past 0): the step runs as packed examples on fattn.cu's
    // forward (twc_attention_flash), contiguous and paged, with GQA, a window, head size 32.
    static const struct seq_shape fresh[] = { { 0, 130 }, { 0, 64 }, { 0, 300 }, { 0, 7 } };
    test_seqs(32, 8, 128, 0, fresh, 4, true, 0);
    test_seqs(14, 2, 64, 16, fresh, 4, true, 16);
    test_seqs(12, 4, 32, 0, fresh, 4, true, 32);
    test_seqs(8, 8, 64, 0, fresh + 2, 1, true, 16);
    // Paged: pages of 32 and 16 rows (the context's default and a smaller one), decode, a
    // prefill with decode, and prefills on the tensor cores, with and without a window.
    test_seqs(14, 2, 64, 0, decode, 6, false, 32);
    test_seqs(32, 8, 128, 16, prefill_and_decode, 3, false, 16);
    test_seqs(32, 8, 128, 0, prefill_and_decode, 3, true, 32);
    test_seqs(14, 2, 64, 16, prefills, 4, true, 16);

    tw_backend_free(gpu);
    return check_report("cuda_attn");
}

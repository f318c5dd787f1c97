// The attention backward's GEMM path against its reference loops (train/grad.h), on random
// inputs with packed examples, padding, grouped-query heads and a sliding window.
#include <math.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "tensor/grad.h"

static uint64_t st = 88172645463325252ull;

static float rnd(void)
{
    st ^= st << 13, st ^= st >> 7, st ^= st << 17;
    return (float)((double)(st >> 11) / 9007199254740992.0 * 2 - 1);
}

static float *rand_buf(size_t n)
{
    float *p = tw_malloc_array(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = rnd();
    return p;
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static void one(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t D, int32_t window)
{
    struct tw_attn_shape s = { .B = B,
                               .T = T,
                               .H = H,
                               .Hkv = Hkv,
                               .D = D,
                               .scale = 1.0f / sqrtf((float)D),
                               .window = window };
    size_t nq = (size_t)(B * T * H * D), nk = (size_t)(B * T * Hkv * D);
    float *q = rand_buf(nq), *k = rand_buf(nk), *v = rand_buf(nk), *go = rand_buf(nq);
    float *out = tw_malloc_array(nq, sizeof(float));
    float *lse = tw_malloc_array((size_t)(B * T * H), sizeof(float));
    int32_t *start = tw_malloc_array((size_t)(B * T), sizeof(int32_t));
    for (int64_t b = 0; b < B; b++) { // row b: examples of 5 + b tokens, then 3 pads
        int64_t len = 5 + b;
        for (int64_t t = 0; t < T; t++)
            start[b * T + t] = (int32_t)(t >= T - 3 ? t : t / len * len);
    }
    tw_attn_fwd(out, lse, q, k, v, start, &s);
    float *g[2][3];
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++) {
            g[r][i] = tw_calloc(i == 0 ? nq : nk, sizeof(float));
            // start from the same non-zero values: the backward adds
            for (size_t j = 0; j < (i == 0 ? nq : nk); j++)
                g[r][i][j] = 0.01f * (float)(j % 7);
        }
    tw_attn_bwd_ref(g[0][0], g[0][1], g[0][2], go, q, k, v, out, lse, start, &s);
    tw_attn_bwd(g[1][0], g[1][1], g[1][2], go, q, k, v, out, lse, start, &s);
    CHECK(max_rel(g[1][0], g[0][0], nq) < 1e-5);
    CHECK(max_rel(g[1][1], g[0][1], nk) < 1e-5);
    CHECK(max_rel(g[1][2], g[0][2], nk) < 1e-5);
    CHECK(max_rel(g[1][2], g[1][1], nk) > 1e-2); // the three are different arrays
    // with assign the gradients are written over whatever was there: plus the start values
    // above, the sums above
    struct tw_attn_shape sa = s;
    sa.assign = true;
    for (int r = 0; r < 2; r++) {
        float *w[3];
        for (int i = 0; i < 3; i++) {
            size_t n = i == 0 ? nq : nk;
            w[i] = tw_malloc_array(n, sizeof(float));
            REQUIRE(w[i]);
            for (size_t j = 0; j < n; j++)
                w[i][j] = 1e30f;
        }
        if (r == 0)
            tw_attn_bwd_ref(w[0], w[1], w[2], go, q, k, v, out, lse, start, &sa);
        else
            tw_attn_bwd(w[0], w[1], w[2], go, q, k, v, out, lse, start, &sa);
        for (int i = 0; i < 3; i++) {
            size_t n = i == 0 ? nq : nk;
            for (size_t j = 0; j < n; j++)
                w[i][j] += 0.01f * (float)(j % 7);
            CHECK(max_rel(w[i], g[r][i], n) < 1e-5);
            tw_free(w[i]);
        }
    }
    for (int r = 0; r < 2; r++)
        for (int i = 0; i < 3; i++)
            tw_free(g[r][i]);
    tw_free(q), tw_free(k), tw_free(v), tw_free(go), tw_free(out), tw_free(lse), tw_free(start);
}

int main(void)
{
    one(2, 37, 4, 2, 8, 0);
    one(3, 29, 6, 2, 16, 0);
    one(2, 40, 4, 4, 8, 4); // a sliding window
    one(1, 17, 2, 1, 32, 0);
    return check_report("train_test_grad");
}

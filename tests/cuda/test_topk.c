// tw_topk on the CUDA backend against the reference backend, bit for bit (values and ids), on
// random rows: 1, 3 and 64 rows of 50, 1000 and 128256 values, k 1, 40, 104 and 256, rows
// smooth, with few levels (ties everywhere), with NaN, -inf, +inf and -0 sprinkled in, mostly
// -inf, all equal, ascending and descending. Also: several calls in a row reuse the buffers,
// and a row list that the backend has just written (an op before it) is waited for. Run by
// `make test-cuda` on the GPU machine.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "check.h"
#include "tensor/backend.h"
#include "tensor/cuda.h"

static struct tw_backend *gpu;
static uint64_t seed = 42;

static void fill(float *x, int64_t R, int64_t V, int kind)
{
    for (int64_t i = 0; i < R * V; i++) {
        uint64_t r = check_rand(&seed);
        float u = (float)((r >> 11) * 0x1.0p-53) * 2 - 1; // [-1, 1)
        int64_t col = i % V;
        switch (kind) {
        case 0: // smooth
            x[i] = u * 20;
            break;
        case 1: // few levels
            x[i] = (float)(r % 5);
            break;
        case 2: // specials
            x[i] = r % 11 == 0   ? NAN
                   : r % 11 == 1 ? -INFINITY
                   : r % 53 == 2 ? INFINITY
                   : r % 11 == 3 ? -0.0f
                   : r % 11 == 4 ? 0.0f
                                 : u;
            break;
        case 3: // mostly -inf: fewer finite values than k
            x[i] = r % 97 == 0 ? u : r % 2 ? -INFINITY : NAN;
            break;
        case 4: // all equal
            x[i] = 1.5f;
            break;
        case 5: // ascending, then descending in the next row
            x[i] = (float)((i / V) % 2 ? V - col : col);
            break;
        }
    }
}

static void check_case(int64_t R, int64_t V, int32_t k, int kind)
{
    size_t n = (size_t)(R * V), nk = (size_t)(R * k);
    float *x = tw_malloc_array(n, sizeof *x), *want_v = tw_malloc_array(nk, sizeof(float));
    float *got_v = tw_malloc_array(nk, sizeof(float));
    int32_t *want_i = tw_malloc_array(nk, sizeof(int32_t));
    int32_t *got_i = tw_malloc_array(nk, sizeof(int32_t));
    REQUIRE(x && want_v && got_v && want_i && got_i);
    fill(x, R, V, kind);
    struct tw_tensor h = tw_tensor_f32_2d(x, R, V), d;
    tw_topk(tw_backend_cpu_ref(), &h, k, want_v, want_i);
    REQUIRE(tw_backend_tensor_upload(gpu, &h, &d) == 0);
    for (size_t i = 0; i < nk; i++) {
        got_v[i] = NAN;
        got_i[i] = -7;
    }
    tw_topk(gpu, &d, k, got_v, got_i);
    CHECK_OK(tw_backend_sync(gpu));
    size_t bad = 0;
    for (size_t i = 0; i < nk; i++)
        bad += got_i[i] != want_i[i] || memcmp(&got_v[i], &want_v[i], sizeof(float)) != 0;
    if (bad)
        fprintf(stderr, "R %lld V %lld k %d kind %d: %zu of %zu differ\n", (long long)R,
                (long long)V, k, kind, bad, nk);
    CHECK(bad == 0);
    tw_backend_release(gpu, d.data);
    tw_free(x);
    tw_free(want_v);
    tw_free(got_v);
    tw_free(want_i);
    tw_free(got_i);
}

// The logits written by an op just before (a copy on the stream) are the ones ranked.
static void after_an_op(void)
{
    const int64_t V = 128256;
    float *x = tw_malloc_array(V, sizeof *x);
    REQUIRE(x);
    fill(x, 1, V, 0);
    struct tw_tensor h = tw_tensor_f32_2d(x, 1, V), d;
    REQUIRE(tw_backend_tensor_upload(gpu, &h, &d) == 0);
    float *d2 = tw_backend_alloc(gpu, V * sizeof(float));
    REQUIRE(d2);
    for (int round = 0; round < 3; round++) {
        x[round * 1000 + 7] = 1000.0f + (float)round; // the new maximum
        CHECK_OK(tw_backend_upload(gpu, d.data, x, V * sizeof(float)));
        tw_backend_copy(gpu, d2, d.data, V * sizeof(float));
        struct tw_tensor t = tw_tensor_f32_2d(d2, 1, V);
        float v[3];
        int32_t id[3];
        tw_topk(gpu, &t, 3, v, id);
        CHECK_EQ_INT(id[0], round * 1000 + 7);
        CHECK(v[0] == 1000.0f + (float)round);
    }
    CHECK_OK(tw_backend_sync(gpu));
    tw_backend_release(gpu, d2);
    tw_backend_release(gpu, d.data);
    tw_free(x);
}

int main(void)
{
    REQUIRE(tw_backend_cuda_new(0, &gpu) == 0);
    static const int64_t rows[] = { 1, 3, 64 }, cols[] = { 50, 1000, 128256 };
    static const int32_t ks[] = { 1, 40, 104, 256 };
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 3; c++)
            for (int k = 0; k < 4; k++)
                for (int kind = 0; kind < 6; kind++) {
                    if (ks[k] > cols[c] || (rows[r] == 64 && cols[c] == 128256 && kind > 2))
                        continue;
                    check_case(rows[r], cols[c], ks[k], kind);
                }
    check_case(2, 256, 256, 2); // k = V
    check_case(2, 300000, 256, 0);
    after_an_op();
    tw_backend_free(gpu);
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("cuda_topk");
}

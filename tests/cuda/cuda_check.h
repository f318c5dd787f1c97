// What the CUDA op tests share: random host arrays, their device copies, and device arrays
// poisoned with NaN (so that an element a kernel fails to write shows up).
#ifndef TW_TEST_CUDA_CHECK_H
#define TW_TEST_CUDA_CHECK_H

#include <math.h>

#include "base/mem.h"
#include "check.h"
#include "tensor/backend.h"

// n floats uniform in [-scale, scale), from the generator *rng.
static inline float *host_random(uint64_t *rng, size_t n, float scale)
{
    float *p = tw_malloc_array(n, sizeof(float));
    REQUIRE(p);
    for (size_t i = 0; i < n; i++)
        p[i] = ((float)((check_rand(rng) >> 40) * (1.0 / (1ull << 24))) * 2.0f - 1.0f) * scale;
    return p;
}

// A copy of host[0..n) in be's memory.
static inline float *dev_of(struct tw_backend *be, const float *host, size_t n)
{
    float *d = tw_backend_alloc(be, n * sizeof(float));
    REQUIRE(d);
    CHECK_OK(tw_backend_upload(be, d, host, n * sizeof(float)));
    return d;
}

// n floats of be's memory holding NaN.
static inline float *dev_poisoned(struct tw_backend *be, size_t n)
{
    float *h = tw_malloc_array(n, sizeof(float));
    REQUIRE(h);
    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    float *d = dev_of(be, h, n);
    tw_free(h);
    return d;
}

#endif

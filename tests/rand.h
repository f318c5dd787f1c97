// The tests' random inputs: a xorshift generator (seeded with test_rng; a test may set another
// seed), buffers of its values, and the relative error the numeric tests compare by.
#ifndef TW_TESTS_RAND_H
#define TW_TESTS_RAND_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"
#include "check.h"

static uint64_t test_rng = 0x9E3779B97F4A7C15ull;

// Uniform in [-1, 1).
static inline float frand(void)
{
    test_rng ^= test_rng << 13;
    test_rng ^= test_rng >> 7;
    test_rng ^= test_rng << 17;
    return (float)((test_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

// n values of frand (tw_free them).
static inline float *rand_buf(size_t n)
{
    float *p = tw_malloc(n * sizeof *p);
    REQUIRE(p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
    return p;
}

// max |a - b| / (max |b| + 1e-6) over n values.
static inline double rel_err(const float *a, const float *b, size_t n)
{
    double mx = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        mx = d > mx ? d : mx;
        ref = fabs(b[i]) > ref ? fabs(b[i]) : ref;
    }
    return mx / (ref + 1e-6);
}

#endif

// What the benchmarks share: a monotonic clock, a seeded uniform generator, the relative
// distance of two outputs, the plain memory-read bandwidth (the roofline's ceiling, measured
// with the same threads as the kernels it bounds), and a matrix of quantised random rows that
// does not fit the caches.
#ifndef TW_BENCH_UTIL_H
#define TW_BENCH_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cpu.h"
#include "tensor/cpu_dot.h"
#include "tensor/dtype.h"
#include "tensor/team.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

// At least min bytes, and at least twice the last-level cache where the C library reports it
// (glibc's _SC_LEVEL3_CACHE_SIZE): a Xeon of these machines has 300 MiB of L3, which a 64 or
// 256 MiB array fits, so a "memory" stream over it read the cache instead.
static inline size_t beyond_llc(size_t min)
{
    size_t l3 = tw_cpu_llc_bytes();
    return 2 * l3 > min ? 2 * l3 : min;
}

// A comma-separated option ("bf16,q4_K") split into at most max items of up to 31 bytes;
// returns how many.
static inline int parse_list(const char *s, char items[][32], int max)
{
    int n = 0;
    while (s && *s && n < max) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        snprintf(items[n++], 32, "%.*s", (int)len, s);
        s = e ? e + 1 : NULL;
    }
    return n;
}

// ||a - b|| / ||b|| over n values (a variant's output against the default's).
static inline double rel_diff(const float *a, const float *b, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        d2 += d * d;
        r2 += (double)b[i] * b[i];
    }
    return r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t bench_rng = 0x1234567ull;

// splitmix64's output for state z, as a float in [-1, 1).
static inline float uniform_of(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 11) * 0x1p-52 - 1.0);
}

static inline float uniform(void) // in [-1, 1)
{
    return uniform_of(bench_rng += 0x9E3779B97F4A7C15ull);
}

// The i-th value of a stream from counter i alone (rows filled in parallel).
static inline float uniform_at(uint64_t i)
{
    return uniform_of(0x1234567ull + (i + 1) * 0x9E3779B97F4A7C15ull);
}

// ---- memory-read bandwidth: a float sum with enough independent adds not to be the limit,
// with and without the software prefetch of the dot kernels (cpu_dot.h), whichever reads faster:
// the kernels prefetch, so a ceiling measured without it would not bound them.

#if BENCH_X86
// Eight independent adds of 64 bytes in flight (eight of 32 with AVX2): the loads, not the
// adds, set the pace.
__attribute__((target("avx512f"))) static float sum_avx512(const float *a, size_t n, bool pf)
{
    __m512 s[8];
    for (int k = 0; k < 8; k++)
        s[k] = _mm512_setzero_ps();
    for (size_t i = 0; i + 128 <= n; i += 128) {
        if (pf)
            tw_dot_prefetch(a + i, 512);
        for (int k = 0; k < 8; k++)
            s[k] = _mm512_add_ps(s[k], _mm512_loadu_ps(a + i + 16 * k));
    }
    for (int k = 1; k < 8; k++)
        s[0] = _mm512_add_ps(s[0], s[k]);
    return _mm512_reduce_add_ps(s[0]);
}

__attribute__((target("avx2"))) static float sum_avx2(const float *a, size_t n, bool pf)
{
    __m256 s[8];
    for (int k = 0; k < 8; k++)
        s[k] = _mm256_setzero_ps();
    for (size_t i = 0; i + 64 <= n; i += 64) {
        if (pf)
            tw_dot_prefetch(a + i, 256);
        for (int k = 0; k < 8; k++)
            s[k] = _mm256_add_ps(s[k], _mm256_loadu_ps(a + i + 8 * k));
    }
    for (int k = 1; k < 8; k++)
        s[0] = _mm256_add_ps(s[0], s[k]);
    float t[8];
    _mm256_storeu_ps(t, s[0]);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

static float sum_scalar(const float *a, size_t n, bool pf)
{
    float s[8] = { 0 };
    for (size_t i = 0; i + 8 <= n; i += 8) {
        if (pf && i % 16 == 0)
            tw_dot_prefetch(a + i, 64);
        for (int k = 0; k < 8; k++)
            s[k] += a[i + k];
    }
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

static inline float sum_best(const float *a, size_t n, bool pf)
{
#if BENCH_X86
    enum tw_cpu_isa isa = tw_cpu_isa_best();
    return isa >= TW_ISA_AVX512 ? sum_avx512(a, n, pf)
           : isa >= TW_ISA_AVX2 ? sum_avx2(a, n, pf)
                                : sum_scalar(a, n, pf);
#else
    return sum_scalar(a, n, pf);
#endif
}

struct read_job {
    const float *a;
    size_t part;
    bool pf;
    float sums[64];
};

// Parts [lo, hi) of the 64 for thread id: their sums.
static void read_region(void *ctx, int id, int nt)
{
    struct read_job *j = ctx;
    int64_t lo, hi;
    tw_team_range(64, id, nt, &lo, &hi);
    for (int64_t k = lo; k < hi; k++)
        j->sums[k] = sum_best(j->a + j->part * (size_t)k, j->part, j->pf);
}

// GB/s of reading `bytes` with `threads` threads (each sums its 64th parts of one buffer),
// the best of `passes` after a warm-up pass; sink keeps the sums alive. The threads are a
// team of the engine's kind (tensor/team.h), freed before it returns: OpenMP's, which spin
// for milliseconds after their last region, would take cores from the decode measured next.
static inline double read_bandwidth(size_t bytes, int passes, int threads, volatile float *sink)
{
    size_t n = bytes / sizeof(float) / 64 * 64;
    struct read_job j = { .part = n / 64 };
    float *a = aligned_alloc(64, n * sizeof *a);
    struct tw_team *team = NULL;
    if (!a || tw_team_new(threads, &team) != 0) {
        free(a);
        return 0.0;
    }
    for (size_t i = 0; i < n; i++) // touch every page before timing
        a[i] = (float)(i & 1023);
    j.a = a;
    double best = 1e30;
    for (int p = 0; p < 2 * (passes + 1); p++) { // odd passes prefetch; the first two warm up
        j.pf = p % 2;
        double t0 = now();
        tw_team_run(team, read_region, &j);
        double dt = now() - t0;
        for (int k = 0; k < 64; k++)
            *sink += j.sums[k];
        if (p > 1 && dt < best)
            best = dt;
    }
    tw_team_free(team);
    free(a);
    return (double)(n * sizeof(float)) / best / 1e9;
}

// ---- a matrix of PATTERNS random rows of BENCH_COLS weights, repeated to fill `bytes`.

#define BENCH_COLS 4096
#define PATTERNS   16

struct matrix {
    enum tw_dtype t;
    size_t rows, row_bytes;
    uint8_t *data; // rows * row_bytes
};

static inline int matrix_init(struct matrix *m, enum tw_dtype t, size_t bytes)
{
    if (tw_dtype_nbytes(t, BENCH_COLS, &m->row_bytes))
        return -1;
    m->t = t;
    m->rows = bytes / m->row_bytes;
    m->data = aligned_alloc(64, (m->rows * m->row_bytes + 63) / 64 * 64);
    float *f = malloc(BENCH_COLS * sizeof *f);
    if (!m->data || !f) {
        free(f);
        free(m->data);
        return -1;
    }
    for (size_t r = 0; r < m->rows; r++) {
        uint8_t *row = m->data + r * m->row_bytes;
        if (r < PATTERNS) {
            for (size_t i = 0; i < BENCH_COLS; i++)
                f[i] = uniform();
            tw_quantize_row(t, f, row, BENCH_COLS);
        } else {
            memcpy(row, m->data + (r % PATTERNS) * m->row_bytes, m->row_bytes);
        }
    }
    free(f);
    return 0;
}

#endif

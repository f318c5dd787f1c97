// bench/index: the vector index on normalised vectors from a Gaussian mixture (fixed seed)
// of a real embedding's low intrinsic dimension:
// HNSW build time (all threads), memory per vector, and single-thread queries/s against
// recall@10 (ground truth from the flat index) over a sweep of ef, f32 and int8.
// Usage: index [--quick] [--n N] [--dim D] [--queries Q] [--m M] [--efc EF] [--threads T]
//              [--repeat R] [--vectors f32|int8|both] [--dump PATH]
// Each ef is timed `repeat` times (default 3) and the best pass counts.
// --dump writes the data set for a peer measured in the same run (the vectors, the queries and
// the true 10 nearest ids): u64 n, nq, dim; n * dim f32; nq * dim f32; nq * 10 u64.
// The headline is the queries/s at the smallest ef whose recall@10 reaches 0.95.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "bench_util.h"
#include "index/index.h"

static float gauss(void) // Box-Muller over the bench generator
{
    double u1 = (uniform() + 1.0) * 0.5, u2 = (uniform() + 1.0) * 0.5;
    return (float)(sqrt(-2.0 * log(u1 > 1e-300 ? u1 : 1e-300)) * cos(6.283185307179586 * u2));
}

// n unit vectors of dim with the low intrinsic dimension of real embeddings: a Gaussian
// mixture in a 32-d latent space (64 centres, N(0, 1) components; each point a centre plus
// N(0, 0.35^2) noise), mapped to dim by one fixed Gaussian projection, then normalised. The
// projection and centres come from seed 7; the points from seed.
#define LATENT 32
static float *mixture(size_t n, uint32_t dim, uint64_t seed)
{
    size_t nc = 64;
    float *c = malloc(nc * LATENT * sizeof *c), *p = malloc((size_t)dim * LATENT * sizeof *p);
    float *v = malloc(n * dim * sizeof *v);
    if (!c || !p || !v)
        exit(1);
    bench_rng = 7;
    for (size_t i = 0; i < nc * LATENT; i++)
        c[i] = gauss();
    for (size_t i = 0; i < (size_t)dim * LATENT; i++)
        p[i] = gauss();
    bench_rng = seed;
    for (size_t i = 0; i < n; i++) {
        const float *ci =
            c + (size_t)(((uniform() + 1.0f) * 0.5f) * (float)(nc - 1) + 0.5f) * LATENT;
        float z[LATENT];
        for (int l = 0; l < LATENT; l++)
            z[l] = ci[l] + 0.35f * gauss();
        double norm = 0;
        for (uint32_t d = 0; d < dim; d++) {
            float x = 0;
            for (int l = 0; l < LATENT; l++)
                x += p[(size_t)d * LATENT + l] * z[l];
            v[i * dim + d] = x;
            norm += (double)x * x;
        }
        float inv = (float)(1 / sqrt(norm));
        for (uint32_t d = 0; d < dim; d++)
            v[i * dim + d] *= inv;
    }
    free(c);
    free(p);
    return v;
}

static tw_index *build(const float *v, size_t n, uint32_t dim, enum tw_index_kind kind, bool int8,
                       uint32_t m, uint32_t efc, int threads, double *secs)
{
    struct tw_index_options o = tw_index_options_default(dim);
    o.kind = kind;
    o.metric = TW_METRIC_COSINE;
    o.int8 = int8;
    o.m = m;
    o.ef_construction = efc;
    tw_index *ix;
    uint64_t *ids = malloc(n * sizeof *ids);
    if (!ids || tw_index_new(&o, &ix)) {
        fprintf(stderr, "index: %s\n", tw_error_msg());
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = i;
    double t0 = now();
    if (tw_index_add_batch(ix, n, ids, v, NULL, NULL, threads)) {
        fprintf(stderr, "index: %s\n", tw_error_msg());
        exit(1);
    }
    *secs = now() - t0;
    free(ids);
    return ix;
}

int main(int argc, char **argv)
{
    size_t n = 1000000, nq = 1000;
    uint32_t dim = 384, m = 16, efc = 200;
    int threads = 0, repeat = 3, first_kind = 0, last_kind = 1;
    const char *dump = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            n = 3000, nq = 100, dim = 64;
        } else if (val && strcmp(a, "--n") == 0) {
            n = (size_t)atol(val), i++;
        } else if (val && strcmp(a, "--dim") == 0) {
            dim = (uint32_t)atoi(val), i++;
        } else if (val && strcmp(a, "--queries") == 0) {
            nq = (size_t)atol(val), i++;
        } else if (val && strcmp(a, "--m") == 0) {
            m = (uint32_t)atoi(val), i++;
        } else if (val && strcmp(a, "--efc") == 0) {
            efc = (uint32_t)atoi(val), i++;
        } else if (val && strcmp(a, "--dump") == 0) {
            dump = val, i++;
        } else if (val && strcmp(a, "--repeat") == 0) {
            repeat = atoi(val) > 0 ? atoi(val) : 1, i++;
        } else if (val && strcmp(a, "--vectors") == 0) {
            first_kind = strcmp(val, "int8") == 0;
            last_kind = strcmp(val, "f32") == 0 ? 0 : 1;
            i++;
        } else if (val && strcmp(a, "--threads") == 0) {
            threads = atoi(val), i++;
        } else {
            fprintf(stderr, "usage: index [--quick] [--n N] [--dim D] [--queries Q] [--m M] "
                            "[--efc EF] [--threads T] [--repeat R] [--vectors f32|int8|both] "
                            "[--dump PATH]\n");
            return 2;
        }
    }
    float *v = mixture(n, dim, 42), *q = mixture(nq, dim, 4242);
    // Ground truth: the flat index, exact.
    double t_flat;
    tw_index *flat = build(v, n, dim, TW_INDEX_FLAT, false, m, efc, threads, &t_flat);
    struct tw_hit *truth = malloc(nq * 10 * sizeof *truth), hits[10];
    int bad = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : bad)
    for (size_t i = 0; i < nq; i++) {
        uint32_t n_got;
        bad |= tw_index_search(flat, q + i * dim, 10, 0, NULL, truth + i * 10, &n_got) != 0 ||
               n_got != 10;
    }
    if (bad)
        return 1;
    uint32_t got;
    tw_index_free(flat);
    if (dump) {
        FILE *f = fopen(dump, "wb");
        uint64_t hdr[3] = { n, nq, dim };
        if (!f || fwrite(hdr, sizeof hdr, 1, f) != 1 || fwrite(v, sizeof *v * dim, n, f) != n ||
            fwrite(q, sizeof *q * dim, nq, f) != nq)
            return 1;
        for (size_t i = 0; i < nq * 10; i++)
            if (fwrite(&truth[i].id, sizeof truth[i].id, 1, f) != 1)
                return 1;
        if (fclose(f))
            return 1;
    }
    printf("index: %zu normalised %u-d vectors (32-d Gaussian mixture, projected; seed 42), %zu "
           "queries, "
           "cosine, M %u, ef_construction %u\n",
           n, dim, nq, m, efc);
    printf("%-6s %9s %10s %6s %9s %12s\n", "vectors", "build s", "bytes/vec", "ef", "recall@10",
           "queries/s");
    double headline = 0;
    for (int int8 = first_kind; int8 <= last_kind; int8++) {
        double secs;
        tw_index *ix = build(v, n, dim, TW_INDEX_HNSW, int8, m, efc, threads, &secs);
        double bpv = (double)tw_index_memory(ix) / (double)n;
        static const uint32_t efs[] = { 10, 16, 24, 32, 48, 64, 96, 128, 256, 512 };
        bool first = true;
        for (size_t e = 0; e < sizeof efs / sizeof *efs; e++) {
            size_t found = 0;
            double best = 0;
            for (int r = 0; r < repeat; r++) { // the best of `repeat` passes
                found = 0;
                double t0 = now();
                for (size_t i = 0; i < nq; i++) {
                    if (tw_index_search(ix, q + i * dim, 10, efs[e], NULL, hits, &got))
                        return 1;
                    for (uint32_t a = 0; a < got; a++)
                        for (int b = 0; b < 10; b++)
                            found += hits[a].id == truth[i * 10 + b].id;
                }
                double t = now() - t0;
                if (r == 0 || t < best)
                    best = t;
            }
            double qps = (double)nq / best, recall = (double)found / (double)(nq * 10);
            printf("%-6s %9.2f %10.0f %6u %9.4f %12.0f\n", int8 ? "int8" : "f32", first ? secs : 0,
                   bpv, efs[e], recall, qps);
            first = false;
            if (!int8 && headline == 0 && recall >= 0.95)
                headline = qps;
        }
        tw_index_free(ix);
    }
    printf("headline: %.0f single-thread queries/s at recall@10 >= 0.95 (f32, %zu vectors)\n",
           headline, n);
    free(v);
    free(q);
    free(truth);
    return 0;
}

// Tests of src/index: the distance kernels (scalar, AVX2, AVX-512 agree), the exact scan
// against brute force, HNSW recall against the exact scan (f32 and int8), payload filters
// (must / should / must_not, EQ, IN, RANGE; a 1% filter still gives k results equal to the
// filtered scan's), upsert and delete, compaction, save/load (same results, further writes),
// corrupted files (truncated, flipped bytes, wrong magic and version: TW_EFORMAT), bad options.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/mem.h"
#include "check.h"
#include "index/index.h"
#include "index/index_int.h"

#if defined(__SANITIZE_ADDRESS__)
#define SMALL 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SMALL 1
#endif
#endif
#ifndef SMALL
#define SMALL 0
#endif

#define DIM  64
#define NPTS (SMALL ? 4000 : 20000)
#define NQ   (SMALL ? 50 : 200)
#define K    10

static uint64_t rng = 7;

static double gauss(void)
{
    double u = ((double)(check_rand(&rng) >> 11) + 1) * 0x1.0p-53;
    double v = (double)(check_rand(&rng) >> 11) * 0x1.0p-53;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

// n vectors from a mixture of 32 Gaussian clusters (normalised when norm).
static float *mixture(size_t n, bool norm)
{
    static float centres[32][DIM];
    static bool ready;
    if (!ready) {
        for (int c = 0; c < 32; c++)
            for (int j = 0; j < DIM; j++)
                centres[c][j] = (float)gauss();
        ready = true;
    }
    float *v = malloc(n * DIM * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        int c = (int)(check_rand(&rng) % 32);
        double ss = 0;
        for (int j = 0; j < DIM; j++) {
            v[i * DIM + j] = centres[c][j] + 0.6f * (float)gauss();
            ss += v[i * DIM + j] * v[i * DIM + j];
        }
        if (norm)
            for (int j = 0; j < DIM; j++)
                v[i * DIM + j] /= (float)sqrt(ss);
    }
    return v;
}

static const char *colours[4] = { "red", "green", "blue", "grey" };

// payload of point i: colour (4 values), year (2000 + i % 25), rare (i % 100 == 0 -> "yes")
struct pl3 {
    struct tw_pfield f[3];
};
static void payload_of(size_t i, struct pl3 *p)
{
    p->f[0] = (struct tw_pfield){ .key = "colour", .type = TW_PV_STR, .s = colours[i % 4] };
    p->f[1] =
        (struct tw_pfield){ .key = "year", .type = TW_PV_INT, .i = 2000 + (int64_t)(i % 25) };
    p->f[2] =
        (struct tw_pfield){ .key = "rare", .type = TW_PV_STR, .s = i % 100 == 0 ? "yes" : "no" };
}

static tw_index *build(enum tw_index_kind kind, enum tw_metric metric, bool int8, const float *v,
                       size_t n, int threads)
{
    struct tw_index_options o = tw_index_options_default(DIM);
    o.kind = kind;
    o.metric = metric;
    o.int8 = int8;
    o.ef_construction = SMALL ? 100 : 200;
    tw_index *ix = NULL;
    REQUIRE(tw_index_new(&o, &ix) == 0);
    uint64_t *ids = malloc(n * sizeof *ids);
    struct pl3 *pls = malloc(n * sizeof *pls);
    const struct tw_pfield **pp = malloc(n * sizeof *pp);
    size_t *nf = malloc(n * sizeof *nf);
    for (size_t i = 0; i < n; i++) {
        ids[i] = 1000 + i;
        payload_of(i, &pls[i]);
        pp[i] = pls[i].f;
        nf[i] = 3;
    }
    CHECK_OK(tw_index_add_batch(ix, n, ids, v, pp, nf, threads));
    free(ids);
    free(pls);
    free(pp);
    free(nf);
    return ix;
}

static void test_kernels(void)
{
    struct tw_ix_kernels ref, k2, k5;
    tw_ix_kernels_get(TW_ISA_SCALAR, &ref);
    tw_ix_kernels_get(TW_ISA_AVX2, &k2);
    tw_ix_kernels_get(TW_ISA_AVX512, &k5);
    float a[300], b[300];
    int8_t qa[300], qb[300];
    for (int i = 0; i < 300; i++) {
        a[i] = (float)gauss();
        b[i] = (float)gauss();
        qa[i] = (int8_t)(check_rand(&rng) % 255 - 127);
        qb[i] = (int8_t)(check_rand(&rng) % 255 - 127);
    }
    for (size_t n = 0; n <= 300; n += (n < 40 ? 1 : 37)) {
        float d = ref.dot(a, b, n), l = ref.l2(a, b, n);
        double tol = 1e-4 * (double)(n + 1);
        CHECK(fabs(k2.dot(a, b, n) - d) < tol && fabs(k5.dot(a, b, n) - d) < tol);
        CHECK(fabs(k2.l2(a, b, n) - l) < tol && fabs(k5.l2(a, b, n) - l) < tol);
        int32_t q = ref.dot8(qa, qb, n);
        CHECK_EQ_INT(k2.dot8(qa, qb, n), q);
        CHECK_EQ_INT(k5.dot8(qa, qb, n), q);
    }
    CHECK(tw_ix_crc32c(0, "123456789", 9) == 0xE3069283u); // the CRC-32C check value
}

static float brute_score(enum tw_metric m, const float *q, const float *v)
{
    double s = 0, qq = 0, vv = 0;
    for (int j = 0; j < DIM; j++) {
        s += m == TW_METRIC_L2 ? (q[j] - v[j]) * (double)(q[j] - v[j]) : (double)q[j] * v[j];
        qq += (double)q[j] * q[j];
        vv += (double)v[j] * v[j];
    }
    if (m == TW_METRIC_COSINE)
        return (float)(s / sqrt(qq * vv));
    return m == TW_METRIC_L2 ? (float)-s : (float)s;
}

static void test_flat_exact(void)
{
    size_t n = 2000;
    float *v = mixture(n, false), *q = mixture(20, false);
    enum tw_metric ms[3] = { TW_METRIC_COSINE, TW_METRIC_DOT, TW_METRIC_L2 };
    for (int mi = 0; mi < 3; mi++) {
        tw_index *ix = build(TW_INDEX_FLAT, ms[mi], false, v, n, 1);
        for (int qi = 0; qi < 20; qi++) {
            struct tw_hit h[K];
            uint32_t nh;
            CHECK_OK(tw_index_search(ix, q + qi * DIM, K, 0, NULL, h, &nh));
            CHECK_EQ_INT(nh, K);
            // brute force: the k best by double-precision score
            float best[K];
            uint64_t bid[K];
            for (int j = 0; j < K; j++) {
                best[j] = -INFINITY;
                bid[j] = 0;
            }
            for (size_t i = 0; i < n; i++) {
                float s = brute_score(ms[mi], q + qi * DIM, v + i * DIM);
                if (s <= best[K - 1])
                    continue;
                int j = K - 1;
                while (j > 0 && best[j - 1] < s) {
                    best[j] = best[j - 1];
                    bid[j] = bid[j - 1];
                    j--;
                }
                best[j] = s;
                bid[j] = 1000 + i;
            }
            for (int j = 0; j < K; j++) {
                CHECK(h[j].id == bid[j]);
                CHECK(fabsf(h[j].score - best[j]) < 1e-3f * (1 + fabsf(best[j])));
            }
        }
        tw_index_free(ix);
    }
    free(v);
    free(q);
}

// The exact search among a list of ids: the k best of that subset by brute force; ids not in
// the index (never added, or deleted) are skipped.
static void test_among(void)
{
    size_t n = 1500;
    float *v = mixture(n, false), *q = mixture(5, false);
    tw_index *ix = build(TW_INDEX_HNSW, TW_METRIC_COSINE, false, v, n, 1);
    uint64_t ids[300];
    size_t m = 0;
    for (size_t i = 0; i < n && m < 298; i += 7)
        ids[m++] = 1000 + i;
    ids[m++] = 5;                        // never added
    ids[m++] = 1000 + 14;                // twice: counted once
    CHECK_OK(tw_index_delete(ix, 1007)); // in the list, then deleted
    for (int qi = 0; qi < 5; qi++) {
        struct tw_hit h[K];
        uint32_t nh;
        CHECK_OK(tw_index_search_among(ix, q + qi * DIM, K, ids, m, h, &nh));
        CHECK_EQ_INT(nh, K);
        for (uint32_t j = 0; j < nh; j++) {
            CHECK(h[j].id >= 1000 && (h[j].id - 1000) % 7 == 0 && h[j].id != 1007);
            CHECK(j == 0 || h[j].id != h[j - 1].id);
            // nothing in the subset beats the j-th hit that is not ranked above it
            int better = 0;
            for (size_t i = 0; i < n; i += 7)
                if (1000 + i != 1007 &&
                    brute_score(TW_METRIC_COSINE, q + qi * DIM, v + i * DIM) > h[j].score + 1e-5f)
                    better++;
            CHECK_EQ_INT(better, (int)j);
        }
    }
    uint32_t nh;
    struct tw_hit h[K];
    CHECK_OK(tw_index_search_among(ix, q, K, ids, 0, h, &nh));
    CHECK_EQ_INT(nh, 0);
    float zero[DIM] = { 0 };
    CHECK_EQ_INT(tw_index_search_among(ix, zero, K, ids, m, h, &nh), TW_EINVAL);
    tw_index_free(ix);
    free(v);
    free(q);
}

// recall@K of ix against exact on nq queries
static double recall(const tw_index *ix, const tw_index *exact, const float *q, int nq,
                     uint32_t ef, const struct tw_filter *f)
{
    size_t found = 0, total = 0;
    for (int i = 0; i < nq; i++) {
        struct tw_hit a[K], b[K];
        uint32_t na, nb;
        CHECK_OK(tw_index_search(ix, q + i * DIM, K, ef, f, a, &na));
        CHECK_OK(tw_index_search(exact, q + i * DIM, K, 0, f, b, &nb));
        for (uint32_t x = 0; x < nb; x++) {
            for (uint32_t y = 0; y < na; y++)
                found += a[y].id == b[x].id;
        }
        total += nb;
    }
    return total ? (double)found / (double)total : 1;
}

static bool same_results(const tw_index *a, const tw_index *b, const float *q, int nq,
                         const struct tw_filter *f)
{
    for (int i = 0; i < nq; i++) {
        struct tw_hit x[K], y[K];
        uint32_t nx, ny;
        if (tw_index_search(a, q + i * DIM, K, 50, f, x, &nx) ||
            tw_index_search(b, q + i * DIM, K, 50, f, y, &ny) || nx != ny)
            return false;
        for (uint32_t j = 0; j < nx; j++) {
            if (x[j].id != y[j].id || x[j].score != y[j].score)
                return false;
        }
    }
    return true;
}

static char tmpdir[64];

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static void test_corrupt(const char *path)
{
    char *data;
    size_t len;
    REQUIRE(tw_file_read(path, 1u << 30, &data, &len) == 0);
    char bad[128];
    path_of(bad, sizeof bad, "bad.twix");
    tw_index *ix;
    // truncated at many offsets
    for (size_t cut = 0; cut < len; cut += (cut < 400 ? 7 : len / 37 + 1)) {
        REQUIRE(tw_file_write_atomic(bad, data, cut) == 0);
        ix = NULL;
        CHECK_EQ_INT(tw_index_load(bad, &ix), TW_EFORMAT);
        CHECK(ix == NULL && strstr(tw_error_msg(), bad));
    }
    // a flipped byte at many places (every section)
    for (size_t at = 0; at < len; at += (at < 400 ? 3 : len / 101 + 1)) {
        data[at] ^= 0x5A;
        REQUIRE(tw_file_write_atomic(bad, data, len) == 0);
        data[at] ^= 0x5A;
        ix = NULL;
        CHECK_EQ_INT(tw_index_load(bad, &ix), TW_EFORMAT);
    }
    // wrong version, with the header checksum fixed up: still refused for the version
    data[4] = 9;
    REQUIRE(tw_file_write_atomic(bad, data, len) == 0);
    CHECK_EQ_INT(tw_index_load(bad, &ix), TW_EFORMAT);
    CHECK(strstr(tw_error_msg(), "version") != NULL);
    data[4] = 1;
    memcpy(data, "TWIY", 4);
    REQUIRE(tw_file_write_atomic(bad, data, len) == 0);
    CHECK_EQ_INT(tw_index_load(bad, &ix), TW_EFORMAT);
    CHECK(strstr(tw_error_msg(), "magic") != NULL);
    unlink(bad);
    tw_free(data);
}

static void test_hnsw(void)
{
    float *v = mixture(NPTS, true), *q = mixture(NQ, true);
    tw_index *flat = build(TW_INDEX_FLAT, TW_METRIC_COSINE, false, v, NPTS, 1);
    tw_index *h = build(TW_INDEX_HNSW, TW_METRIC_COSINE, false, v, NPTS, 2);
    tw_index *h8 = build(TW_INDEX_HNSW, TW_METRIC_COSINE, true, v, NPTS, 2);
    CHECK_EQ_INT(tw_index_count(h), NPTS);
    double r = recall(h, flat, q, NQ, 100, NULL), r8 = recall(h8, flat, q, NQ, 100, NULL);
    printf("index: recall@%d at ef=100: f32 %.4f, int8 %.4f (%d points)\n", K, r, r8, NPTS);
    CHECK(r >= 0.95);
    CHECK(r8 >= 0.90);

    // L2, serial build on a smaller set
    size_t nl = NPTS / 4;
    tw_index *fl = build(TW_INDEX_FLAT, TW_METRIC_L2, false, v, nl, 1);
    tw_index *hl = build(TW_INDEX_HNSW, TW_METRIC_L2, false, v, nl, 1);
    tw_index *hl8 = build(TW_INDEX_HNSW, TW_METRIC_L2, true, v, nl, 1);
    CHECK(recall(hl, fl, q, NQ / 2, 100, NULL) >= 0.95);
    CHECK(recall(hl8, fl, q, NQ / 2, 100, NULL) >= 0.90);

    // filters: every hit matches; the 1% filter gives K results equal to the exact scan's
    const char *red[] = { "red" }, *rb[] = { "red", "blue" }, *yes[] = { "yes" };
    struct tw_cond c_red = { .key = "colour", .op = TW_COND_EQ, .type = TW_PV_STR, .strs = red };
    struct tw_cond c_rb = {
        .key = "colour", .op = TW_COND_IN, .type = TW_PV_STR, .strs = rb, .n = 2
    };
    struct tw_cond c_yr = { .key = "year", .op = TW_COND_RANGE, .lo = 2005, .hi = 2010 };
    struct tw_cond c_rare = { .key = "rare", .op = TW_COND_EQ, .type = TW_PV_STR, .strs = yes };
    struct tw_filter f1 = { .must = &c_rb, .n_must = 1, .must_not = &c_red, .n_must_not = 1 };
    struct tw_filter f2 = { .should = (struct tw_cond[]){ c_red, c_yr }, .n_should = 2 };
    struct tw_filter f3 = { .must = &c_rare, .n_must = 1 };
    CHECK(recall(h, flat, q, NQ / 4, 100, &f1) >= 0.95);
    CHECK(recall(h, flat, q, NQ / 4, 100, &f2) >= 0.95);
    for (int i = 0; i < NQ / 4; i++) {
        struct tw_hit a[K], b[K];
        uint32_t na, nb;
        CHECK_OK(tw_index_search(h, q + i * DIM, K, 100, &f1, a, &na));
        CHECK_EQ_INT(na, K);
        for (uint32_t j = 0; j < na; j++) {
            size_t p = a[j].id - 1000;
            CHECK(p % 4 == 2); // blue: in {red, blue} and not red
        }
        CHECK_OK(tw_index_search(h, q + i * DIM, K, 100, &f2, a, &na));
        for (uint32_t j = 0; j < na; j++) {
            size_t p = a[j].id - 1000;
            CHECK(p % 4 == 0 || (p % 25 >= 5 && p % 25 <= 10));
        }
        tw_index *ixs[2] = { h, h8 };
        for (int w = 0; w < 2; w++) {
            CHECK_OK(tw_index_search(ixs[w], q + i * DIM, K, 100, &f3, a, &na));
            CHECK_OK(tw_index_search(flat, q + i * DIM, K, 100, &f3, b, &nb));
            CHECK_EQ_INT(na, K);
            CHECK_EQ_INT(nb, K);
            for (uint32_t j = 0; j < na && j < nb; j++)
                CHECK(a[j].id == b[j].id && fabsf(a[j].score - b[j].score) < 1e-6f);
        }
    }
    // a filter nothing matches; a condition on a missing key
    struct tw_cond c_none = {
        .key = "nope", .op = TW_COND_RANGE, .lo = INT64_MIN, .hi = INT64_MAX
    };
    struct tw_filter f4 = { .must = &c_none, .n_must = 1 };
    struct tw_hit hh[K];
    uint32_t nh = 99;
    CHECK_OK(tw_index_search(h, q, K, 100, &f4, hh, &nh));
    CHECK_EQ_INT(nh, 0);
    CHECK(tw_index_payload(h, 1003, "colour") &&
          strcmp(tw_index_payload(h, 1003, "colour")->s, "grey") == 0);
    CHECK(tw_index_payload(h, 1003, "year")->i == 2003);
    CHECK(tw_index_payload(h, 1003, "missing") == NULL);

    // save / load: same results for flat, HNSW, int8; the loaded index takes more writes
    tw_index *all[3] = { flat, h, h8 };
    const char *names[3] = { "flat.twix", "hnsw.twix", "int8.twix" };
    for (int w = 0; w < 3; w++) {
        char path[128];
        path_of(path, sizeof path, names[w]);
        CHECK_OK(tw_index_save(all[w], path));
        tw_index *l = NULL;
        CHECK_OK(tw_index_load(path, &l));
        REQUIRE(l);
        CHECK(same_results(all[w], l, q, NQ / 4, NULL));
        CHECK(same_results(all[w], l, q, NQ / 4, &f1));
        CHECK_EQ_INT(tw_index_count(l), NPTS);
        CHECK(tw_index_get_options(l).int8 == tw_index_get_options(all[w]).int8);
        CHECK_OK(tw_index_upsert(l, 1000, q, NULL, 0));
        CHECK_EQ_INT(tw_index_count(l), NPTS);
        CHECK_EQ_INT(tw_index_deleted(l), 1);
        struct tw_hit x[1];
        uint32_t nx;
        CHECK_OK(tw_index_search(l, q, 1, 100, NULL, x, &nx));
        CHECK(nx == 1 && x[0].id == 1000 && x[0].score > 0.999f);
        tw_index_free(l);
    }
    free(v);
    free(q);
    tw_index_free(flat);
    tw_index_free(h);
    tw_index_free(h8);
    tw_index_free(fl);
    tw_index_free(hl);
    tw_index_free(hl8);
}

// small indexes: upsert, delete, compact, save of corrupted files, fuzz seeds
static void test_writes(void)
{
    size_t n = 1500;
    float *v = mixture(n, true), *q = mixture(20, true);
    for (int kind = 0; kind < 2; kind++) {
        tw_index *ix = build((enum tw_index_kind)kind, TW_METRIC_COSINE, kind == 1, v, n, 1);
        // the exact scan over the same writes: what the HNSW graph is measured against
        tw_index *ref = build(TW_INDEX_FLAT, TW_METRIC_COSINE, false, v, n, 1);
        // upsert replaces: the old vector's own query no longer finds the id at score 1
        const float *old = v + 5 * DIM;
        struct tw_hit h[K];
        uint32_t nh;
        CHECK_OK(tw_index_search(ix, old, 1, 0, NULL, h, &nh));
        CHECK(nh == 1 && h[0].id == 1005 && h[0].score > 0.999f);
        struct tw_pfield pf = { .key = "colour", .type = TW_PV_STR, .s = "violet" };
        CHECK_OK(tw_index_upsert(ix, 1005, v + 6 * DIM, &pf, 1));
        CHECK_OK(tw_index_upsert(ref, 1005, v + 6 * DIM, &pf, 1));
        CHECK_EQ_INT(tw_index_count(ix), n);
        CHECK_OK(tw_index_search(ix, old, K, 0, NULL, h, &nh));
        for (uint32_t j = 0; j < nh; j++)
            CHECK(!(h[j].id == 1005 && h[j].score > 0.999f));
        CHECK_EQ_STR(tw_index_payload(ix, 1005, "colour")->s, "violet");
        CHECK(tw_index_payload(ix, 1005, "year") == NULL);
        // delete: never returned, counts change
        for (uint64_t id = 1000; id < 1000 + n; id += 3) {
            CHECK_OK(tw_index_delete(ix, id));
            CHECK_OK(tw_index_delete(ref, id));
        }
        CHECK_EQ_INT(tw_index_delete(ix, 1000), TW_ENOENT);
        size_t live = n - (n + 2) / 3;
        CHECK_EQ_INT(tw_index_count(ix), live);
        for (int i = 0; i < 20; i++) {
            CHECK_OK(tw_index_search(ix, q + i * DIM, K, 0, NULL, h, &nh));
            CHECK_EQ_INT(nh, K);
            for (uint32_t j = 0; j < nh; j++)
                CHECK((h[j].id - 1000) % 3 != 0);
        }
        CHECK_OK(tw_index_search(ix, v, K, 0, NULL, h, &nh));
        struct tw_hit before[20][K];
        uint32_t nb[20];
        for (int i = 0; i < 20; i++)
            CHECK_OK(tw_index_search(ix, q + i * DIM, K, 200, NULL, before[i], &nb[i]));
        if (kind == 1) { // a seed for the fuzzer and the corruption tests, tombstones included
            char path[128];
            path_of(path, sizeof path, "small.twix");
            CHECK_OK(tw_index_save(ix, path));
            test_corrupt(path);
            const char *seed_dir = getenv("TWIN_INDEX_SEED_DIR");
            for (int w = 0; seed_dir && w < 2; w++) {
                char sp[256];
                snprintf(sp, sizeof sp, "%s/%s", seed_dir, w ? "flat_l2.twix" : "hnsw_int8.twix");
                tw_index *s = NULL;
                struct tw_index_options so = tw_index_get_options(ix);
                so.dim = 8;
                so.m = 4;
                if (w) {
                    so.kind = TW_INDEX_FLAT;
                    so.metric = TW_METRIC_L2;
                    so.int8 = false;
                }
                REQUIRE(tw_index_new(&so, &s) == 0);
                for (uint64_t i = 0; i < 40; i++) {
                    struct pl3 p;
                    payload_of(i, &p);
                    CHECK_OK(tw_index_upsert(s, i, v + i * DIM, p.f, 3));
                }
                CHECK_OK(tw_index_delete(s, 3));
                CHECK_OK(tw_index_save(s, sp));
                tw_index_free(s);
            }
        }
        double r_before = recall(ix, ref, q, 20, 200, NULL);
        CHECK_OK(tw_index_compact(ix, 2));
        CHECK_EQ_INT(tw_index_deleted(ix), 0);
        CHECK_EQ_INT(tw_index_count(ix), live);
        size_t same = 0, tot = 0;
        for (int i = 0; i < 20; i++) {
            CHECK_OK(tw_index_search(ix, q + i * DIM, K, 200, NULL, h, &nh));
            CHECK_EQ_INT(nh, nb[i]);
            for (uint32_t j = 0; j < nh; j++) {
                CHECK((h[j].id - 1000) % 3 != 0);
                for (uint32_t x = 0; x < nb[i]; x++)
                    same += h[j].id == before[i][x].id;
            }
            tot += nb[i];
        }
        // the flat index is rebuilt exactly; the graph, rebuilt by two threads in an order that
        // varies from run to run, is held to its recall against the exact scan: as good as the
        // serial build's (1.000 here), within two hits of 200 (the parallel build that linked
        // top down left concurrent descents on empty lists: 0.985-0.995, below 0.95 once)
        double r_after = recall(ix, ref, q, 20, 200, NULL);
        CHECK(kind == 0 ? same == tot && r_after == 1 : r_after >= 0.99);
        if (kind == 1)
            printf("index: int8 graph's recall@%d before compact %.3f, after %.3f (%zu of %zu "
                   "hits as before)\n",
                   K, r_before, r_after, same, tot);
        CHECK_EQ_STR(tw_index_payload(ix, 1005, "colour")->s, "violet");
        tw_index_free(ix);
        tw_index_free(ref);
    }
    free(v);
    free(q);
}

static void test_bad_input(void)
{
    tw_index *ix = NULL;
    struct tw_index_options o = tw_index_options_default(0);
    CHECK_EQ_INT(tw_index_new(&o, &ix), TW_EINVAL);
    o = tw_index_options_default(8);
    o.m = 0;
    CHECK_EQ_INT(tw_index_new(&o, &ix), TW_EINVAL);
    o = tw_index_options_default(8);
    o.ef_construction = 0;
    CHECK_EQ_INT(tw_index_new(&o, &ix), TW_EINVAL);
    o = tw_index_options_default(70000);
    CHECK_EQ_INT(tw_index_new(&o, &ix), TW_EINVAL);
    o = tw_index_options_default(4);
    REQUIRE(tw_index_new(&o, &ix) == 0);
    float z[4] = { 0 }, one[4] = { 1, 0, 0, 0 }, nan[4] = { NAN, 0, 0, 0 };
    CHECK_EQ_INT(tw_index_upsert(ix, 1, z, NULL, 0), TW_EINVAL);
    CHECK_EQ_INT(tw_index_upsert(ix, 1, nan, NULL, 0), TW_EINVAL);
    CHECK_EQ_INT(tw_index_count(ix), 0);
    struct tw_hit h[2];
    uint32_t nh = 5;
    CHECK_OK(tw_index_search(ix, one, 2, 0, NULL, h, &nh));
    CHECK_EQ_INT(nh, 0);
    CHECK_OK(tw_index_upsert(ix, 1, one, NULL, 0));
    CHECK_EQ_INT(tw_index_search(ix, z, 2, 0, NULL, h, &nh), TW_EINVAL);
    CHECK_OK(tw_index_search(ix, one, 2, 0, NULL, h, &nh));
    CHECK(nh == 1 && h[0].id == 1);
    struct tw_cond c = { .key = NULL, .op = TW_COND_EQ };
    struct tw_filter f = { .must = &c, .n_must = 1 };
    CHECK_EQ_INT(tw_index_search(ix, one, 2, 0, &f, h, &nh), TW_EINVAL);
    char path[128];
    path_of(path, sizeof path, "missing.twix");
    CHECK(tw_index_load(path, &ix) != 0);
    tw_index_free(ix);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/twin-test-index-XXXXXX");
    REQUIRE(mkdtemp(tmpdir));
    test_kernels();
    test_bad_input();
    test_flat_exact();
    test_among();
    test_writes();
    test_hnsw();
    tw_remove_tree(tmpdir);
    return check_report("index");
}

// The golden tiny models (tests/golden/models/<name>/, made by make_golden.py with
// transformers): their folder, expected.json and the arrays of expected.safetensors.
#ifndef TW_TEST_GOLDEN_MODELS_H
#define TW_TEST_GOLDEN_MODELS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/json.h"
#include "base/vec.h"
#include "check.h"
#include "model/safetensors.h"

struct golden {
    char dir[4096];
    json_t *exp;    // expected.json
    tw_st_file *st; // expected.safetensors
};

static inline void golden_open(struct golden *g, const char *name)
{
    const char *root = test_source_dir();
    char p[4200];
    snprintf(g->dir, sizeof g->dir, "%s/tests/golden/models/%s", root, name);
    snprintf(p, sizeof p, "%s/expected.json", g->dir);
    test_need_source(tw_json_load_file(p, 64 << 20, &g->exp) == 0, p);
    snprintf(p, sizeof p, "%s/expected.safetensors", g->dir);
    test_need_source(tw_st_open(p, &g->st) == 0, p);
}

static inline void golden_close(struct golden *g)
{
    json_decref(g->exp);
    tw_st_close(g->st);
}

// The f32 array called name; *n gets its element count.
static inline const float *golden_array(const struct golden *g, const char *name, size_t *n)
{
    const struct tw_st_tensor *t = tw_st_find(g->st, name);
    REQUIRE(t && t->dtype == TW_ST_DTYPE_F32);
    *n = t->nbytes / sizeof(float);
    return t->data;
}

// ids (a JSON array of integers at exp[key], or the array a) into v (int32_t).
static inline void golden_ids(const json_t *a, tw_vec *v)
{
    REQUIRE(json_is_array(a));
    tw_vec_clear(v);
    for (size_t i = 0; i < json_array_size(a); i++) {
        int32_t id = (int32_t)json_integer_value(json_array_get(a, i));
        REQUIRE(tw_vec_push(v, &id) == 0);
    }
}

// max |a - b| / max |b|: the relative error of a against the reference b.
static inline double golden_rel(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
        m = fabs(b[i]) > m ? fabs(b[i]) : m;
    }
    return d / (m > 0 ? m : 1);
}

#endif

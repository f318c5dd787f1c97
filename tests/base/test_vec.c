// Tests tw_vec: a randomized run against a plain-array model, the capacity rules (doubling,
// shrink at a quarter), overflow checks, and allocation-failure injection (no change, no leak).
#include <stdint.h>
#include <stdlib.h>

#include "base/mem.h"
#include "base/vec.h"
#include "check.h"

#define MODEL_MAX 4096

struct model {
    uint32_t a[MODEL_MAX];
    size_t len;
};

static int same(const tw_vec *v, const struct model *m)
{
    if (v->len != m->len || v->cap < v->len)
        return 0;
    for (size_t i = 0; i < m->len; i++)
        if (TW_VEC_AT(v, uint32_t, i) != m->a[i])
            return 0;
    return 1;
}

// After any operation that lowers the length the array is more than a quarter full
// (or at the minimum capacity).
static int shrink_rule_holds(const tw_vec *v)
{
    return v->cap <= 8 || v->len > v->cap / 4;
}

static void model_insert(struct model *m, size_t i, uint32_t x)
{
    memmove(m->a + i + 1, m->a + i, (m->len - i) * sizeof m->a[0]);
    m->a[i] = x;
    m->len++;
}

static void model_remove(struct model *m, size_t i)
{
    memmove(m->a + i, m->a + i + 1, (m->len - i - 1) * sizeof m->a[0]);
    m->len--;
}

static void test_random_ops(void)
{
    static struct model m;
    tw_vec v;
    tw_vec_init(&v, sizeof(uint32_t));
    uint64_t rng = 42;
    int mismatches = 0, rule_breaks = 0;
    for (int step = 0; step < 60000; step++) {
        uint64_t r = check_rand(&rng);
        uint32_t x = (uint32_t)(r >> 32);
        int op = (int)(r % 9);
        // Bias towards growth early and shrinkage late so both regimes are exercised.
        if (step > 30000 && op < 3)
            op = 3 + op;
        size_t at = m.len ? (size_t)(check_rand(&rng) % (m.len + 1)) : 0;
        uint32_t got = 0;
        size_t len_before = m.len;
        switch (op) {
        case 0:
        case 1:
            if (m.len < MODEL_MAX) {
                CHECK_OK(tw_vec_push(&v, &x));
                m.a[m.len++] = x;
            }
            break;
        case 2:
            if (m.len < MODEL_MAX) {
                CHECK_OK(tw_vec_insert(&v, at, &x));
                model_insert(&m, at, x);
            }
            break;
        case 3:
            if (m.len) {
                CHECK_OK(tw_vec_pop(&v, &got));
                CHECK_EQ_INT(got, m.a[--m.len]);
            } else {
                CHECK_EQ_INT(tw_vec_pop(&v, &got), TW_EINVAL);
            }
            break;
        case 4:
            if (at < m.len) {
                CHECK_OK(tw_vec_remove(&v, at, &got));
                CHECK_EQ_INT(got, m.a[at]);
                model_remove(&m, at);
            } else {
                CHECK_EQ_INT(tw_vec_remove(&v, at, NULL), TW_EINVAL);
            }
            break;
        case 5:
            if (at < m.len) {
                CHECK_OK(tw_vec_swap_remove(&v, at, &got));
                CHECK_EQ_INT(got, m.a[at]);
                m.a[at] = m.a[m.len - 1];
                m.len--;
            }
            break;
        case 6: {
            uint32_t chunk[17];
            size_t n = (size_t)(r >> 8) % 17;
            for (size_t i = 0; i < n; i++)
                chunk[i] = x + (uint32_t)i;
            if (m.len + n <= MODEL_MAX) {
                CHECK_OK(tw_vec_append(&v, chunk, n));
                memcpy(m.a + m.len, chunk, n * sizeof chunk[0]);
                m.len += n;
            }
            break;
        }
        case 7: {
            size_t n = (size_t)(r >> 16) % (m.len + 20);
            if (n <= MODEL_MAX) {
                CHECK_OK(tw_vec_resize(&v, n));
                for (size_t i = m.len; i < n; i++)
                    m.a[i] = 0;
                m.len = n;
            }
            break;
        }
        case 8:
            CHECK_OK(tw_vec_reserve(&v, (size_t)(r >> 20) % 3000));
            break;
        }
        if (!same(&v, &m))
            mismatches++;
        if (op >= 3 && op <= 5 && m.len < len_before && !shrink_rule_holds(&v))
            rule_breaks++;
    }
    CHECK_EQ_INT(mismatches, 0);
    CHECK_EQ_INT(rule_breaks, 0);
    tw_vec_free(&v);
    CHECK_EQ_INT(v.cap, 0);
}

static void test_doubling_and_hysteresis(void)
{
    tw_vec v;
    tw_vec_init(&v, sizeof(uint64_t));
    size_t caps[32], ncaps = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        size_t before = v.cap;
        CHECK_OK(tw_vec_push(&v, &i));
        if (v.cap != before && ncaps < 32)
            caps[ncaps++] = v.cap;
    }
    // 8, 16, 32, ..., 1024: every growth doubles.
    CHECK_EQ_INT(ncaps, 8);
    for (size_t i = 0; i < ncaps; i++)
        CHECK_EQ_INT(caps[i], (size_t)8 << i);

    // Fill to exactly a capacity boundary, then alternate push/pop: one growth, no more.
    CHECK_OK(tw_vec_resize(&v, 1024));
    CHECK_EQ_INT(v.cap, 1024);
    int reallocs = 0;
    for (int i = 0; i < 1000; i++) {
        size_t before = v.cap;
        uint64_t x = (uint64_t)i;
        CHECK_OK(tw_vec_push(&v, &x));
        reallocs += v.cap != before;
        before = v.cap;
        CHECK_OK(tw_vec_pop(&v, NULL));
        reallocs += v.cap != before;
    }
    CHECK_EQ_INT(reallocs, 1);
    // Shrinking happens at a quarter: 2048 holds 513 without shrinking, 512 halves it.
    CHECK_OK(tw_vec_resize(&v, 513));
    CHECK_EQ_INT(v.cap, 2048);
    CHECK_OK(tw_vec_pop(&v, NULL));
    CHECK_EQ_INT(v.cap, 1024);
    // Emptying shrinks to the minimum in one step.
    CHECK_OK(tw_vec_resize(&v, 0));
    CHECK_EQ_INT(v.cap, 8);
    tw_vec_free(&v);

    // The shrink-at-half policy (kept for the benchmark) does thrash at the boundary.
    static const struct tw_vec_policy half = {
        .grow_num = 2, .grow_den = 1, .shrink_div = 2, .min_cap = 8
    };
    tw_vec_init_policy(&v, sizeof(uint64_t), &half);
    CHECK_OK(tw_vec_resize(&v, 1024));
    reallocs = 0;
    for (int i = 0; i < 100; i++) {
        size_t before = v.cap;
        uint64_t x = 1;
        CHECK_OK(tw_vec_push(&v, &x));
        reallocs += v.cap != before;
        before = v.cap;
        CHECK_OK(tw_vec_pop(&v, NULL));
        reallocs += v.cap != before;
    }
    CHECK_EQ_INT(reallocs, 200);
    tw_vec_free(&v);
}

static void test_growth_policies(void)
{
    static const struct tw_vec_policy plus8 = { .grow_add = 8, .min_cap = 1 };
    static const struct tw_vec_policy x15 = { .grow_num = 3, .grow_den = 2, .min_cap = 1 };
    tw_vec v;
    tw_vec_init_policy(&v, 1, &plus8);
    for (int i = 0; i < 100; i++)
        CHECK_OK(tw_vec_push(&v, "x"));
    CHECK_EQ_INT(v.cap, 105); // 1, 9, 17, ..., 105
    tw_vec_free(&v);
    tw_vec_init_policy(&v, 1, &x15);
    size_t last = 0;
    int ok = 1;
    for (int i = 0; i < 10000; i++) {
        CHECK_OK(tw_vec_push(&v, "x"));
        if (v.cap != last && last >= 2)
            ok &= v.cap == last * 3 / 2 || v.cap == last + 1;
        last = v.cap;
    }
    CHECK(ok);
    tw_vec_free(&v);
}

static void test_overflow_and_bounds(void)
{
    tw_vec v;
    tw_vec_init(&v, 16);
    uint8_t elem[16] = { 1 };
    CHECK_OK(tw_vec_push(&v, elem));
    void *data = v.data;
    CHECK_EQ_INT(tw_vec_reserve(&v, SIZE_MAX / 8), TW_EOVERFLOW);
    CHECK_EQ_INT(tw_vec_reserve(&v, SIZE_MAX), TW_EOVERFLOW);
    CHECK(v.data == data && v.len == 1 && v.cap == 8);
    CHECK_EQ_INT(tw_vec_append(&v, elem, SIZE_MAX), TW_EOVERFLOW);
    CHECK_EQ_INT(v.len, 1);
    CHECK_EQ_INT(tw_vec_insert(&v, 2, elem), TW_EINVAL);
    CHECK_EQ_INT(tw_vec_remove(&v, 1, NULL), TW_EINVAL);
    CHECK_EQ_INT(tw_vec_swap_remove(&v, 5, NULL), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "remove at 5") != NULL);
    CHECK_OK(tw_vec_shrink_to_fit(&v));
    CHECK_EQ_INT(v.cap, 1);
    tw_vec_free(&v);
}

// The k-th allocation fails, for every k that a sequence of operations reaches: the failing
// call returns TW_ENOMEM, the array is unchanged, and nothing leaks.
static void test_alloc_failure(void)
{
    long base = tw_mem_live();
    int failures_seen = 0;
    for (long k = 1; k < 64; k++) {
        static struct model m;
        tw_vec v;
        tw_vec_init(&v, sizeof(uint32_t));
        m.len = 0;
        int failed = 0;
        tw_mem_fail_after(k);
        for (uint32_t i = 0; i < 300 && !failed; i++) {
            void *data = v.data;
            size_t cap = v.cap;
            int rc = (i % 3 == 2) ? tw_vec_insert(&v, m.len / 2, &i) : tw_vec_push(&v, &i);
            if (rc) {
                CHECK_EQ_INT(rc, TW_ENOMEM);
                CHECK(v.data == data && v.cap == cap);
                failed = 1;
            } else if (i % 3 == 2) {
                model_insert(&m, m.len / 2, i);
            } else {
                m.a[m.len++] = i;
            }
            CHECK(same(&v, &m));
        }
        tw_mem_fail_after(0);
        failures_seen += failed;
        tw_vec_free(&v);
        CHECK_EQ_INT(tw_mem_live(), base);
        if (!failed)
            break; // k is past the last allocation of the sequence
    }
    CHECK(failures_seen >= 5); // 8, 16, ..., 512: six growths can fail
}

int main(void)
{
    test_random_ops();
    test_doubling_and_hysteresis();
    test_growth_policies();
    test_overflow_and_bounds();
    test_alloc_failure();
    return check_report("vec");
}

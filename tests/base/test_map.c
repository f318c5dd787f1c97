// Tests for tw_map (src/base/map.h): random operations in both key modes checked against a
// plain array model, the table's probing invariant, allocation failures at every point of a
// sequence (contents unchanged, no leak), and the grow/shrink hysteresis.
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "base/map.h"
#include "base/mem.h"
#include "check.h"

#define NKEYS   600
#define MAX_KEY 64

// The model: key index -> present, value.
struct model {
    bool present[NKEYS];
    uint64_t val[NKEYS];
    size_t len;
};

// String key number i: i in base 7 over an alphabet with NUL, 0xff and a newline (key 0 is the
// empty string), and every fifth key followed by a long tail of 'x', which is not a digit.
static const char digits[7] = { '\0', 'a', (char)0xff, '\n', 'A', '\1', 'z' };

static size_t str_key(size_t i, char *out)
{
    size_t n = 0;
    for (size_t v = i; v; v /= 7)
        out[n++] = digits[v % 7];
    if (i % 5 == 0 && i)
        for (int k = 0; k < 40; k++)
            out[n++] = 'x';
    return n;
}

static size_t str_key_index(const char *key, size_t len)
{
    size_t i = 0, scale = 1;
    for (size_t p = 0; p < len && key[p] != 'x'; p++, scale *= 7) {
        const char *d = memchr(digits, key[p], sizeof digits);
        if (!d)
            return SIZE_MAX;
        i += (size_t)(d - digits) * scale;
    }
    char buf[MAX_KEY];
    if (i >= NKEYS || str_key(i, buf) != len || (len && memcmp(buf, key, len)))
        return SIZE_MAX;
    return i;
}

// Integer key number i: small integers, values near UINT64_MAX, and multiples of 2^50 (equal
// in their low 50 bits, so only the hash's mixing spreads them).
static uint64_t u64_key(size_t i)
{
    switch (i % 3) {
    case 0:
        return (uint64_t)i << 50;
    case 1:
        return UINT64_MAX - i;
    default:
        return i;
    }
}

static size_t u64_key_index(uint64_t key)
{
    size_t cand[3] = { (size_t)(key >> 50), (size_t)(UINT64_MAX - key), (size_t)key };
    for (int c = 0; c < 3; c++)
        if (cand[c] < NKEYS && u64_key(cand[c]) == key)
            return cand[c];
    return SIZE_MAX;
}

static int put(tw_map *m, size_t i, uint64_t val)
{
    char buf[MAX_KEY];
    if (m->kind == TW_MAP_U64)
        return tw_map_put_u64(m, u64_key(i), val);
    return tw_map_put_str(m, buf, str_key(i, buf), val);
}

static int get(const tw_map *m, size_t i, uint64_t *val)
{
    char buf[MAX_KEY];
    if (m->kind == TW_MAP_U64)
        return tw_map_get_u64(m, u64_key(i), val);
    return tw_map_get_str(m, buf, str_key(i, buf), val);
}

static int del(tw_map *m, size_t i)
{
    char buf[MAX_KEY];
    if (m->kind == TW_MAP_U64)
        return tw_map_del_u64(m, u64_key(i));
    return tw_map_del_str(m, buf, str_key(i, buf));
}

// Table invariants: capacity a power of two, load within bounds, the count of full slots, and
// every entry reachable from its home slot without crossing an empty slot.
static void check_table(const tw_map *m)
{
    CHECK(m->cap == 0 || (m->cap >= 8 && (m->cap & (m->cap - 1)) == 0));
    CHECK(m->len <= m->cap / 4 * 3);
    size_t full = 0, bad = 0;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash)
            continue;
        full++;
        for (size_t j = m->slots[i].hash & (m->cap - 1); j != i; j = (j + 1) & (m->cap - 1))
            bad += !m->slots[j].hash;
    }
    CHECK_EQ_INT(full, m->len);
    CHECK_EQ_INT(bad, 0);
}

// The map holds exactly the model: every key's presence and value, and the iteration visits
// each live entry once.
static void check_contents(const tw_map *m, const struct model *md)
{
    CHECK_EQ_INT(tw_map_len(m), md->len);
    size_t wrong = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        uint64_t v = 0;
        int found = get(m, i, &v);
        wrong += found != md->present[i] || (found && v != md->val[i]);
    }
    CHECK_EQ_INT(wrong, 0);

    bool seen[NKEYS] = { false };
    size_t pos = 0, visits = 0;
    struct tw_map_entry e;
    while (tw_map_next(m, &pos, &e)) {
        size_t i = m->kind == TW_MAP_U64 ? u64_key_index(e.u64) : str_key_index(e.str, e.len);
        if (i >= NKEYS) {
            CHECK(i < NKEYS); // a key the model never made
            return;
        }
        if (m->kind == TW_MAP_STR)
            CHECK(e.str[e.len] == '\0');
        CHECK(md->present[i] && !seen[i] && e.val == md->val[i]);
        seen[i] = true;
        visits++;
    }
    CHECK_EQ_INT(visits, md->len);
    CHECK(!tw_map_next(m, &pos, &e)); // stays at the end
    check_table(m);
}

static void model_put(struct model *md, size_t i, uint64_t val)
{
    md->len += !md->present[i];
    md->present[i] = true;
    md->val[i] = val;
}

static void model_del(struct model *md, size_t i)
{
    md->len -= md->present[i];
    md->present[i] = false;
}

// Random puts, replaces, gets and deletes over NKEYS keys. Phases alternately favour puts
// (the map fills to about 7/8 of the keys) and deletes (it drains to about 1/8), so the table
// grows and shrinks across several capacities; the contents are compared every few operations
// and after every resize.
static void test_random(enum tw_map_kind kind, uint64_t seed)
{
    static struct model md;
    memset(&md, 0, sizeof md);
    tw_map m;
    tw_map_init(&m, kind);
    long live0 = tw_mem_live();
    int grows = 0, shrinks = 0;
    for (int op = 0; op < 20000; op++) {
        bool filling = (op / 2500) % 2 == 0;
        unsigned put_pct = filling ? 70 : 10, del_pct = filling ? 10 : 70;
        uint64_t r = check_rand(&seed);
        size_t i = (size_t)(r >> 32) % NKEYS;
        unsigned what = (unsigned)(r % 100);
        size_t cap0 = m.cap;
        if (what < put_pct) {
            uint64_t v = check_rand(&seed);
            CHECK_OK(put(&m, i, v));
            model_put(&md, i, v);
        } else if (what < put_pct + del_pct) {
            CHECK_EQ_INT(del(&m, i), md.present[i]);
            model_del(&md, i);
        } else {
            uint64_t v = 12345;
            int found = get(&m, i, &v);
            CHECK_EQ_INT(found, md.present[i]);
            CHECK(found ? v == md.val[i] : v == 12345); // untouched on a miss
        }
        CHECK_EQ_INT(tw_map_len(&m), md.len);
        grows += m.cap > cap0;
        shrinks += m.cap < cap0;
        if (m.cap != cap0 || op % 8 == 0)
            check_contents(&m, &md);
    }
    CHECK(grows >= 8 && shrinks >= 3);
    for (size_t i = 0; i < NKEYS; i++) { // drain: back to the smallest table
        CHECK_EQ_INT(del(&m, i), md.present[i]);
        model_del(&md, i);
    }
    check_contents(&m, &md);
    CHECK_EQ_INT(m.cap, 8);
    tw_map_free(&m);
    CHECK_EQ_INT(tw_mem_live(), live0);
    CHECK_EQ_INT(m.len, 0);
}

// A put that fails must leave everything as it was: contents, table, capacity.
static void put_or_fail(tw_map *m, struct model *md, size_t i, uint64_t v, bool *failed)
{
    tw_map_slot *slots0 = m->slots;
    size_t cap0 = m->cap;
    int rc = put(m, i, v);
    if (rc == 0) {
        model_put(md, i, v);
        return;
    }
    *failed = true;
    CHECK_EQ_INT(rc, TW_ENOMEM);
    CHECK(m->slots == slots0 && m->cap == cap0);
    check_contents(m, md);
}

// One run of a fixed sequence (puts, replaces, deletes, puts) with the k-th allocation failing.
// *failed tells whether the failure hit (a put returned TW_ENOMEM, or a shrink was skipped).
static void run_failing(enum tw_map_kind kind, long k, bool *failed)
{
    static struct model md;
    memset(&md, 0, sizeof md);
    tw_map m;
    tw_map_init(&m, kind);
    long live0 = tw_mem_live();
    tw_mem_fail_after(k);
    for (size_t i = 0; i < 200; i++)
        put_or_fail(&m, &md, i, i + 1, failed);
    for (size_t i = 0; i < 50; i++)
        put_or_fail(&m, &md, i, i + 1000, failed); // replaces: no allocation
    for (size_t i = 0; i < 190; i++) {
        CHECK_EQ_INT(del(&m, i), md.present[i]);
        model_del(&md, i);
        // A successful shrink leaves the table at least 1/8 full (or at its minimum).
        if (m.cap > 8 && m.len < m.cap / 8)
            *failed = true;
    }
    for (size_t i = 300; i < 340; i++)
        put_or_fail(&m, &md, i, i, failed);
    tw_mem_fail_after(0);
    check_contents(&m, &md);
    tw_map_free(&m);
    CHECK_EQ_INT(tw_mem_live(), live0);
}

static void test_alloc_failures(enum tw_map_kind kind)
{
    long k = 1;
    for (;; k++) {
        bool failed = false;
        run_failing(kind, k, &failed);
        if (!failed)
            break;
    }
    // Every key copy and every resize is an allocation point: STR has over 240 of them.
    CHECK(k > (kind == TW_MAP_STR ? 240 : 10));
}

// Alternating insert/delete right at a resize boundary keeps the capacity.
static void test_hysteresis(void)
{
    tw_map m;
    tw_map_init(&m, TW_MAP_U64);
    uint64_t n = 0;
    for (; m.cap < 128; n++)
        CHECK_OK(tw_map_put_u64(&m, n, n));
    CHECK_EQ_INT(m.len, 64 / 4 * 3 + 1); // grew on the insert past 3/4 of 64
    int changes = 0;
    for (int r = 0; r < 1000; r++) {
        CHECK_EQ_INT(tw_map_del_u64(&m, n - 1), 1);
        changes += m.cap != 128;
        CHECK_OK(tw_map_put_u64(&m, n - 1, r));
        changes += m.cap != 128;
    }
    while (m.cap == 128)
        CHECK_EQ_INT(tw_map_del_u64(&m, --n), 1);
    CHECK_EQ_INT(m.cap, 64);
    CHECK_EQ_INT(m.len, 128 / 8 - 1); // shrank on the delete under 1/8 of 128
    for (int r = 0; r < 1000; r++) {
        CHECK_OK(tw_map_put_u64(&m, n, r));
        changes += m.cap != 64;
        CHECK_EQ_INT(tw_map_del_u64(&m, n), 1);
        changes += m.cap != 64;
    }
    CHECK_EQ_INT(changes, 0);
    for (uint64_t i = 0; i < n; i++)
        CHECK(tw_map_get_u64(&m, i, NULL));
    tw_map_free(&m);
}

static void test_reserve(void)
{
    tw_map m;
    tw_map_init(&m, TW_MAP_STR);
    CHECK_OK(tw_map_reserve(&m, 1000));
    CHECK_EQ_INT(m.cap, 2048);        // 1024 slots hold only 768
    CHECK_OK(tw_map_reserve(&m, 10)); // never shrinks
    CHECK_EQ_INT(m.cap, 2048);
    char buf[32];
    for (int i = 0; i < 1000; i++)
        CHECK_OK(tw_map_put_str(&m, buf, (size_t)snprintf(buf, sizeof buf, "k%d", i), i));
    CHECK_EQ_INT(m.cap, 2048);
    CHECK_EQ_INT(tw_map_reserve(&m, SIZE_MAX), TW_EOVERFLOW);
    CHECK_EQ_INT(tw_map_reserve(&m, SIZE_MAX / 2), TW_EOVERFLOW);
    CHECK_EQ_INT(m.cap, 2048);
    CHECK_EQ_INT(tw_map_len(&m), 1000);
    tw_map_free(&m);
}

static void test_edges(void)
{
    long live0 = tw_mem_live();
    tw_map m;
    tw_map_init(&m, TW_MAP_STR);
    uint64_t v = 0;
    size_t pos = 0;
    struct tw_map_entry e;
    CHECK(!tw_map_get_str(&m, "a", 1, &v) && !tw_map_del_str(&m, "a", 1));
    CHECK(!tw_map_next(&m, &pos, &e));
    CHECK_EQ_INT(tw_mem_live(), live0); // an empty map allocates nothing

    // The empty key (NULL allowed) and keys that differ only by trailing NULs are distinct.
    CHECK_OK(tw_map_put_str(&m, NULL, 0, 7));
    CHECK_OK(tw_map_put_str(&m, "a", 1, 1));
    CHECK_OK(tw_map_put_str(&m, "a\0", 2, 2));
    CHECK_OK(tw_map_put_str(&m, "a\0\0", 3, 3));
    CHECK_OK(tw_map_put_str(&m, "a\0", 2, 22)); // replace
    CHECK_EQ_INT(tw_map_len(&m), 4);
    CHECK(tw_map_get_str(&m, "", 0, &v) && v == 7);
    CHECK(tw_map_get_str(&m, "a\0", 2, &v) && v == 22);
    CHECK(tw_map_get_str(&m, "a\0\0", 3, NULL));
    CHECK(!tw_map_get_str(&m, "a\0\0\0", 4, NULL));

    // The map owns its key copies: the caller's buffer may change.
    char buf[] = "borrowed";
    int x = 5;
    CHECK_OK(tw_map_put_str(&m, buf, 8, (uint64_t)(uintptr_t)&x));
    memcpy(buf, "scribble", 8);
    CHECK(tw_map_get_str(&m, "borrowed", 8, &v) && *(int *)(uintptr_t)v == 5);
    int seen = 0;
    for (pos = 0; tw_map_next(&m, &pos, &e);) {
        if (e.len == 8) {
            CHECK_EQ_STR(e.str, "borrowed");
            seen++;
        }
    }
    CHECK_EQ_INT(seen, 1);

    CHECK_EQ_INT(tw_map_del_str(&m, NULL, 0), 1);
    CHECK_EQ_INT(tw_map_del_str(&m, NULL, 0), 0);
    tw_map_free(&m);
    CHECK_EQ_INT(tw_mem_live(), live0);
    CHECK_OK(tw_map_put_str(&m, "again", 5, 1)); // reusable after free
    CHECK_EQ_INT(tw_map_len(&m), 1);
    tw_map_free(&m);

    tw_map_init(&m, TW_MAP_U64);
    CHECK_OK(tw_map_put_u64(&m, 0, 10));
    CHECK_OK(tw_map_put_u64(&m, UINT64_MAX, 20));
    CHECK(tw_map_get_u64(&m, 0, &v) && v == 10);
    CHECK(tw_map_get_u64(&m, UINT64_MAX, &v) && v == 20);
    CHECK(!tw_map_get_u64(&m, 1, NULL));
    tw_map_free(&m);

    CHECK(tw_map_hash_str(NULL, 0) != 0 && tw_map_hash_u64(0) != 0);
    CHECK(tw_map_hash_str("a", 1) != tw_map_hash_str("a\0", 2));
    CHECK(tw_map_hash_str("abc", 3) == tw_map_hash_str("abcd", 3));
}

int main(void)
{
    test_edges();
    test_reserve();
    test_hysteresis();
    test_random(TW_MAP_STR, 1);
    test_random(TW_MAP_U64, 2);
    test_random(TW_MAP_STR, 3);
    test_alloc_failures(TW_MAP_STR);
    test_alloc_failures(TW_MAP_U64);
    return check_report("map");
}

// Implements map.h: linear probing over a power-of-two table of slots that carry the full
// hash (so a rehash never rereads a key), backward-shift deletion, one tw_malloc'd copy per
// string key, and the grow-at-3/4 / shrink-under-1/8 policy explained in the header.
#include "base/map.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"

#define MIN_CAP 8

// FNV-1a 64 (Fowler, Noll, Vo; http://www.isthe.com/chongo/tech/comp/fnv/): offset basis
// 14695981039346656037 and prime 1099511628211. FNV's low bits depend only on the low bits of
// the input bytes (multiplication carries upwards only), and the table is indexed by the low
// bits, so the result goes through MurmurHash3's fmix64 finalizer (Austin Appleby, constants
// 0xff51afd7ed558ccd and 0xc4ceb9fe1a85ec53), which makes every output bit depend on all.
static uint64_t fmix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

uint64_t tw_map_hash_str(const char *key, size_t len)
{
    const unsigned char *p = (const unsigned char *)key;
    uint64_t h = 0xcbf29ce484222325ull; // 14695981039346656037
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull; // 1099511628211
    }
    h = fmix64(h);
    return h ? h : 1; // 0 marks an empty slot
}

// The finalizer of splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number
// generators", OOPSLA 2014; the constants of Vigna's variant 13 of Stafford's mixers).
uint64_t tw_map_hash_u64(uint64_t key)
{
    uint64_t z = key;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}

void tw_map_init(tw_map *m, enum tw_map_kind kind)
{
    m->slots = NULL;
    m->len = 0;
    m->cap = 0;
    m->kind = kind;
}

void tw_map_free(tw_map *m)
{
    if (m->kind == TW_MAP_STR) {
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].hash)
                tw_free(m->slots[i].key.str);
    }
    tw_free(m->slots);
    tw_map_init(m, m->kind);
}

size_t tw_map_len(const tw_map *m)
{
    return m->len;
}

// The most entries a table of cap slots holds before it must grow: 3/4 of it.
static size_t max_load(size_t cap)
{
    return cap / 4 * 3;
}

// Moves every entry into a new table of cap slots (a power of two >= len). On failure the
// old table stays.
static int rehash(tw_map *m, size_t cap)
{
    size_t bytes;
    if (tw_mul_overflow(cap, sizeof(tw_map_slot), &bytes))
        return tw_error_set(TW_EOVERFLOW, "map of %zu slots: size overflow", cap);
    tw_map_slot *slots = tw_calloc(cap, sizeof(tw_map_slot));
    if (!slots)
        return tw_error_set(TW_ENOMEM, "map: cannot allocate %zu bytes", bytes);
    size_t mask = cap - 1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash)
            continue;
        size_t j = m->slots[i].hash & mask;
        while (slots[j].hash)
            j = (j + 1) & mask;
        slots[j] = m->slots[i];
    }
    tw_free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

// The capacity that holds n entries under the 3/4 load limit.
static int cap_for(size_t n, size_t *out)
{
    size_t cap = MIN_CAP;
    while (max_load(cap) < n) {
        if (cap > SIZE_MAX / 2 / sizeof(tw_map_slot))
            return tw_error_set(TW_EOVERFLOW, "map of %zu entries: size overflow", n);
        cap *= 2;
    }
    *out = cap;
    return 0;
}

int tw_map_reserve(tw_map *m, size_t n)
{
    size_t cap = 0;
    int rc = cap_for(n, &cap);
    if (rc)
        return rc;
    return cap > m->cap ? rehash(m, cap) : 0;
}

// Makes room for one more entry (doubling when the load would pass 3/4).
static int grow_for_one(tw_map *m)
{
    if (m->len < max_load(m->cap))
        return 0;
    if (m->cap == 0)
        return rehash(m, MIN_CAP);
    if (m->cap > SIZE_MAX / 2 / sizeof(tw_map_slot))
        return tw_error_set(TW_EOVERFLOW, "map of %zu slots: cannot grow", m->cap);
    return rehash(m, m->cap * 2);
}

// After a delete: halve while under 1/8 full. Keeping the larger table is always correct.
static void maybe_shrink(tw_map *m)
{
    size_t cap = m->cap;
    while (cap > MIN_CAP && m->len < cap / 8)
        cap /= 2;
    if (cap < m->cap && rehash(m, cap) != 0)
        tw_error_clear();
}

static bool slot_matches(const tw_map *m, const tw_map_slot *s, uint64_t hash, const char *str,
                         size_t len, uint64_t u64)
{
    if (s->hash != hash)
        return false;
    if (m->kind == TW_MAP_U64)
        return s->key.u64 == u64;
    return s->klen == len && (len == 0 || memcmp(s->key.str, str, len) == 0);
}

// The slot holding the key, or the empty slot where the probe ended (the insertion point).
// The table must have at least one empty slot (the load limit guarantees it).
static size_t probe(const tw_map *m, uint64_t hash, const char *str, size_t len, uint64_t u64)
{
    size_t mask = m->cap - 1;
    size_t i = hash & mask;
    while (m->slots[i].hash && !slot_matches(m, &m->slots[i], hash, str, len, u64))
        i = (i + 1) & mask;
    return i;
}

// Empties slot i and moves later entries of its probe run back, so that every entry stays
// reachable from its home slot without a tombstone. An entry at j (home k) may move to the hole
// at i only when k does not lie cyclically in (i, j], i.e. when it is at least as far from its
// home as the hole is.
static void remove_at(tw_map *m, size_t i)
{
    size_t mask = m->cap - 1;
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!m->slots[j].hash)
            break;
        size_t k = m->slots[j].hash & mask;
        if (((j - k) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    memset(&m->slots[i], 0, sizeof m->slots[i]);
    m->len--;
    maybe_shrink(m);
}

int tw_map_put_str(tw_map *m, const char *key, size_t len, uint64_t val)
{
    assert(m->kind == TW_MAP_STR);
    uint64_t hash = tw_map_hash_str(key, len);
    if (m->cap) {
        size_t i = probe(m, hash, key, len, 0);
        if (m->slots[i].hash) {
            m->slots[i].val = val;
            return 0;
        }
    }
    // Copy the key first: if the grow then fails, freeing the copy restores the map.
    if (len == SIZE_MAX)
        return tw_error_set(TW_EOVERFLOW, "map: key of %zu bytes", len);
    char *copy = tw_malloc(len + 1);
    if (!copy)
        return tw_error_set(TW_ENOMEM, "map: cannot copy a key of %zu bytes", len);
    if (len)
        memcpy(copy, key, len);
    copy[len] = '\0';
    int rc = grow_for_one(m);
    if (rc) {
        tw_free(copy);
        return rc;
    }
    size_t i = probe(m, hash, key, len, 0);
    m->slots[i] = (tw_map_slot){ .hash = hash, .key.str = copy, .klen = len, .val = val };
    m->len++;
    return 0;
}

int tw_map_get_str(const tw_map *m, const char *key, size_t len, uint64_t *val)
{
    assert(m->kind == TW_MAP_STR);
    if (m->len == 0)
        return 0;
    size_t i = probe(m, tw_map_hash_str(key, len), key, len, 0);
    if (!m->slots[i].hash)
        return 0;
    if (val)
        *val = m->slots[i].val;
    return 1;
}

int tw_map_del_str(tw_map *m, const char *key, size_t len)
{
    assert(m->kind == TW_MAP_STR);
    if (m->len == 0)
        return 0;
    size_t i = probe(m, tw_map_hash_str(key, len), key, len, 0);
    if (!m->slots[i].hash)
        return 0;
    tw_free(m->slots[i].key.str);
    remove_at(m, i);
    return 1;
}

int tw_map_put_u64(tw_map *m, uint64_t key, uint64_t val)
{
    assert(m->kind == TW_MAP_U64);
    uint64_t hash = tw_map_hash_u64(key);
    if (m->cap) {
        size_t i = probe(m, hash, NULL, 0, key);
        if (m->slots[i].hash) {
            m->slots[i].val = val;
            return 0;
        }
    }
    int rc = grow_for_one(m);
    if (rc)
        return rc;
    size_t i = probe(m, hash, NULL, 0, key);
    m->slots[i] = (tw_map_slot){ .hash = hash, .key.u64 = key, .val = val };
    m->len++;
    return 0;
}

int tw_map_get_u64(const tw_map *m, uint64_t key, uint64_t *val)
{
    assert(m->kind == TW_MAP_U64);
    if (m->len == 0)
        return 0;
    size_t i = probe(m, tw_map_hash_u64(key), NULL, 0, key);
    if (!m->slots[i].hash)
        return 0;
    if (val)
        *val = m->slots[i].val;
    return 1;
}

int tw_map_del_u64(tw_map *m, uint64_t key)
{
    assert(m->kind == TW_MAP_U64);
    if (m->len == 0)
        return 0;
    size_t i = probe(m, tw_map_hash_u64(key), NULL, 0, key);
    if (!m->slots[i].hash)
        return 0;
    remove_at(m, i);
    return 1;
}

int tw_map_next(const tw_map *m, size_t *pos, struct tw_map_entry *e)
{
    for (size_t i = *pos; i < m->cap; i++) {
        const tw_map_slot *s = &m->slots[i];
        if (!s->hash)
            continue;
        *e = (struct tw_map_entry){ .val = s->val };
        if (m->kind == TW_MAP_STR) {
            e->str = s->key.str;
            e->len = s->klen;
        } else {
            e->u64 = s->key.u64;
        }
        *pos = i + 1;
        return 1;
    }
    *pos = m->cap;
    return 0;
}

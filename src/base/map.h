// tw_map, the hash map: keys that are byte strings (any bytes, explicit length; the map owns
// a copy of each) or uint64 integers, chosen at init, mapping to uint64 values (ids, offsets,
// or pointers cast through uintptr_t). Open addressing with linear probing over a
// power-of-two table; deletion shifts the following entries back, so there are no tombstones.
//
// Load and hysteresis. The table doubles when an insert would take the load past 3/4 and
// halves when a delete leaves it under 1/8. Right after a grow from C to 2C slots the table
// holds about 3C/4 entries (load 3/8): it takes about C/2 deletes to reach the shrink point
// (C/4 entries). Right after a shrink from C to C/2 it holds about C/8 entries (load 1/4): it
// takes about C/4 inserts to grow again. So every rehash (O(C) work) is paid for by Theta(C)
// cheap operations, and alternating insert/delete at either boundary never rehashes twice.
// (Shrinking under 3/8, half the grow point, would undo a grow after a couple of deletes.)
//
// Sizes are overflow-checked. When an allocation fails the function returns TW_ENOMEM and the
// map is exactly as it was (the old table and no new key). A failed shrink is not an error:
// the map keeps its larger table.
#ifndef TW_MAP_H
#define TW_MAP_H

#include <stddef.h>
#include <stdint.h>

enum tw_map_kind {
    TW_MAP_STR, // keys are byte strings (bytes + length)
    TW_MAP_U64, // keys are uint64_t
};

typedef struct tw_map_slot {
    uint64_t hash; // the key's hash, never 0; 0 marks an empty slot
    union {
        uint64_t u64; // TW_MAP_U64: the key
        char *str;    // TW_MAP_STR: the map's copy of the key (klen bytes, then a NUL)
    } key;
    size_t klen; // TW_MAP_STR: the key's length in bytes
    uint64_t val;
} tw_map_slot;

typedef struct tw_map {
    tw_map_slot *slots; // cap slots; NULL while cap == 0
    size_t len;         // entries in the map
    size_t cap;         // slots: 0 or a power of two >= 8 (read-only for callers)
    enum tw_map_kind kind;
} tw_map;

// One entry, as the iterator hands it out.
struct tw_map_entry {
    const char *str; // TW_MAP_STR: the key (len bytes, then a NUL), owned by the map
    size_t len;      // TW_MAP_STR: the key's length
    uint64_t u64;    // TW_MAP_U64: the key
    uint64_t val;
};

// An empty map with keys of the given kind. Allocates nothing.
void tw_map_init(tw_map *m, enum tw_map_kind kind);
// Frees the table and every key copy; the map is empty (same kind) and reusable afterwards.
void tw_map_free(tw_map *m);

// Entries in the map.
size_t tw_map_len(const tw_map *m);
// Makes room for n entries in all, so that inserts up to n do not rehash (deletes may still
// shrink the table). 0, TW_ENOMEM or TW_EOVERFLOW (map unchanged).
int tw_map_reserve(tw_map *m, size_t n);

// String keys (TW_MAP_STR maps only): key points to len bytes, which may hold any byte,
// NUL included; key may be NULL when len is 0. The map copies the key; the caller keeps its
// buffer.
// Inserts key -> val, or replaces the value when the key is present. 0, or TW_ENOMEM /
// TW_EOVERFLOW with the map unchanged.
int tw_map_put_str(tw_map *m, const char *key, size_t len, uint64_t val);
// 1 and the value in *val (when val is not NULL) if the key is present, else 0.
int tw_map_get_str(const tw_map *m, const char *key, size_t len, uint64_t *val);
// Removes the key and frees its copy: 1 if it was present, 0 if absent.
int tw_map_del_str(tw_map *m, const char *key, size_t len);

// Integer keys (TW_MAP_U64 maps only); same contracts as above.
int tw_map_put_u64(tw_map *m, uint64_t key, uint64_t val);
int tw_map_get_u64(const tw_map *m, uint64_t key, uint64_t *val);
int tw_map_del_u64(tw_map *m, uint64_t key);

// Iteration in table order (unspecified, changes on rehash):
//     size_t pos = 0;
//     struct tw_map_entry e;
//     while (tw_map_next(&m, &pos, &e)) { ... }
// Returns 1 and fills *e with the next entry, or 0 when none is left. The map must not change
// during the iteration; e->str stays valid until its key is deleted or the map freed.
int tw_map_next(const tw_map *m, size_t *pos, struct tw_map_entry *e);

// The hashes the map uses (exposed for tests and for callers that want the same mixing):
// FNV-1a 64 finished with MurmurHash3's fmix64, and splitmix64's finalizer. Never 0.
uint64_t tw_map_hash_str(const char *key, size_t len);
uint64_t tw_map_hash_u64(uint64_t key);

// splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
// OOPSLA 2014): advances *x and returns its next output (also a hash of a counter); the
// seeding https://prng.di.unimi.it/ recommends for xoshiro.
static inline uint64_t tw_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif

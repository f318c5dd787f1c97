// MinHash with LSH (src/text/minhash.h): shingling of normalised text, signatures under
// (a*h + b) mod (2^61 - 1) permutations, the LSH shape choice, and the band tables (one hash
// map per band whose buckets chain documents through a `next` array).
// Owns the permutation parameters, the stored signatures and the band tables.
#include "text/minhash.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"

#define P61 ((UINT64_C(1) << 61) - 1) // the Mersenne prime 2^61 - 1

struct tw_minhash {
    struct tw_minhash_options opt;
    uint64_t *pa, *pb; // n_perm permutation parameters: a in [1, p), b in [0, p)
    tw_vec ids;        // uint64_t, by document number
    tw_vec sigs;       // uint32_t, n_perm per document
    tw_map index;      // U64: id -> document number
    tw_map *bands;     // opt.bands maps: band hash -> 1 + the newest document in the bucket
    tw_vec next;       // uint32_t, bands per document: 1 + the previous one in its bucket, or 0
};

struct tw_minhash_options tw_minhash_options_default(void)
{
    return (struct tw_minhash_options){
        .n_perm = 128, .shingle = 5, .seed = 0x7477696e, .threshold = 0.8
    };
}

// ---- Hashing --------------------------------------------------------------------------------

// MurmurHash3's 64-bit finaliser (Appleby): a bijection that mixes every input bit.
static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

// splitmix64 (Steele, Lea, Flood 2014): the permutation parameters' generator.
static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

#define FNV_OFFSET UINT64_C(0xcbf29ce484222325) // FNV-1a 64 (Fowler, Noll, Vo)
#define FNV_PRIME  UINT64_C(0x100000001b3)

// x mod p for x < 2^122 + 2^61 (a product of two residues plus a residue): 2^61 = 1 mod p.
static inline uint64_t mod_p61(unsigned __int128 x)
{
    uint64_t r = ((uint64_t)x & P61) + (uint64_t)(x >> 61);
    r = (r & P61) + (r >> 61);
    return r >= P61 ? r - P61 : r;
}

// ---- Shingles -------------------------------------------------------------------------------

static bool is_space(int32_t cp)
{
    if (cp < 128)
        return cp == ' ' || (cp >= '\t' && cp <= '\r');
    utf8proc_category_t c = utf8proc_category(cp);
    return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

// The lower-cased code point at s[*i] (U+FFFD for an invalid byte); advances *i.
static int32_t next_lower(const uint8_t *s, size_t len, size_t *i)
{
    uint8_t c = s[*i];
    if (c < 0x80) {
        (*i)++;
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    }
    utf8proc_int32_t cp;
    size_t avail = len - *i < 4 ? len - *i : 4;
    utf8proc_ssize_t n = utf8proc_iterate(s + *i, (utf8proc_ssize_t)avail, &cp);
    if (n <= 0) {
        (*i)++;
        return 0xFFFD;
    }
    *i += (size_t)n;
    return utf8proc_tolower(cp);
}

// Word hashes (FNV-1a over the lower-cased code points, finalised) into words.
static int word_hashes(const char *text, size_t len, tw_vec *words)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    while (i < len) {
        int32_t cp = next_lower(s, len, &i);
        if (is_space(cp))
            continue;
        uint64_t h = FNV_OFFSET;
        for (;;) {
            h = (h ^ (uint32_t)cp) * FNV_PRIME;
            if (i >= len)
                break;
            cp = next_lower(s, len, &i);
            if (is_space(cp))
                break;
        }
        h = fmix64(h);
        int rc = tw_vec_push(words, &h);
        if (rc)
            return rc;
    }
    return 0;
}

// The normalised code points: lower case, white space runs as one ' ', none at either end.
static int char_points(const char *text, size_t len, tw_vec *cps)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    bool pending_space = false;
    while (i < len) {
        int32_t cp = next_lower(s, len, &i);
        if (is_space(cp)) {
            pending_space = cps->len > 0;
            continue;
        }
        int32_t sp = ' ';
        int rc = 0;
        if (pending_space)
            rc = tw_vec_push(cps, &sp);
        if (rc == 0)
            rc = tw_vec_push(cps, &cp);
        if (rc)
            return rc;
        pending_space = false;
    }
    return 0;
}

int tw_minhash_shingles(const tw_minhash *mh, const char *text, size_t len, tw_vec *hashes)
{
    size_t k = mh->opt.shingle, old = hashes->len;
    tw_vec units; // word hashes (uint64_t) or code points (int32_t)
    tw_vec_init(&units, mh->opt.char_shingles ? sizeof(int32_t) : sizeof(uint64_t));
    int rc =
        mh->opt.char_shingles ? char_points(text, len, &units) : word_hashes(text, len, &units);
    size_t n = units.len;
    size_t count = n == 0 ? 0 : n < k ? 1 : n - k + 1;
    if (rc == 0)
        rc = tw_vec_reserve(hashes, old + count);
    for (size_t s = 0; rc == 0 && s < count; s++) {
        size_t w = n < k ? n : k;
        uint64_t h;
        if (mh->opt.char_shingles) {
            const int32_t *cp = (const int32_t *)units.data + s;
            h = FNV_OFFSET;
            for (size_t j = 0; j < w; j++)
                h = (h ^ (uint32_t)cp[j]) * FNV_PRIME;
            h = fmix64(h ^ w);
        } else {
            // Chained finalisers: order-sensitive, and every word hash is mixed in fully.
            const uint64_t *wh = (const uint64_t *)units.data + s;
            h = w;
            for (size_t j = 0; j < w; j++)
                h = fmix64(h ^ wh[j]) + UINT64_C(0x9E3779B97F4A7C15);
        }
        tw_vec_push(hashes, &h); // reserved
    }
    tw_vec_free(&units);
    if (rc) {
        hashes->len = old;
        return tw_error_prefix("minhash: shingles");
    }
    return 0;
}

// ---- Signatures -----------------------------------------------------------------------------

static void sig_from_hashes(const tw_minhash *mh, const uint64_t *h, size_t n, uint32_t *sig)
{
    uint32_t np = mh->opt.n_perm;
    if (n == 0) {
        for (uint32_t i = 0; i < np; i++)
            sig[i] = UINT32_MAX;
        return;
    }
    uint64_t mins[256];
    const uint64_t *pa = mh->pa, *pb = mh->pb;
    // Slots in blocks of 256 so the running minima stay in registers and L1.
    for (uint32_t base = 0; base < np; base += 256) {
        uint32_t m = np - base < 256 ? np - base : 256;
        for (uint32_t i = 0; i < m; i++)
            mins[i] = UINT64_MAX;
        for (size_t s = 0; s < n; s++) {
            uint64_t x = (h[s] & P61) + (h[s] >> 61); // < p + 8
            x = x >= P61 ? x - P61 : x;
            for (uint32_t i = 0; i < m; i++) {
                uint64_t v = mod_p61((unsigned __int128)pa[base + i] * x + pb[base + i]);
                mins[i] = v < mins[i] ? v : mins[i];
            }
        }
        for (uint32_t i = 0; i < m; i++)
            sig[base + i] = (uint32_t)(mins[i] >> 29); // the high 32 of 61 bits
    }
}

int tw_minhash_signature(const tw_minhash *mh, const char *text, size_t len, uint32_t *sig,
                         size_t *n_shingles)
{
    tw_vec h;
    tw_vec_init(&h, sizeof(uint64_t));
    int rc = tw_minhash_shingles(mh, text, len, &h);
    if (rc)
        return rc;
    sig_from_hashes(mh, h.data, h.len, sig);
    if (n_shingles)
        *n_shingles = h.len;
    tw_vec_free(&h);
    return 0;
}

double tw_minhash_similarity(const uint32_t *a, const uint32_t *b, size_t n)
{
    size_t eq = 0;
    for (size_t i = 0; i < n; i++)
        eq += a[i] == b[i];
    return n ? (double)eq / (double)n : 0.0;
}

static bool sig_empty(const uint32_t *sig, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (sig[i] != UINT32_MAX)
            return false;
    return true;
}

// ---- The LSH shape --------------------------------------------------------------------------

// Probability that a pair of similarity s shares at least one of b bands of r rows.
static double p_candidate(double s, uint32_t b, uint32_t r)
{
    return 1.0 - pow(1.0 - pow(s, (double)r), (double)b);
}

// Midpoint rule: enough for choosing among shapes.
static double area(double lo, double hi, uint32_t b, uint32_t r, bool above)
{
    const int steps = 64;
    double w = (hi - lo) / steps, sum = 0;
    for (int i = 0; i < steps; i++) {
        double p = p_candidate(lo + (i + 0.5) * w, b, r);
        sum += above ? 1.0 - p : p;
    }
    return sum * w;
}

// False negatives weigh four times as much as false positives: every candidate is verified
// on its signature, so a false positive costs only time. (For 128 slots and 0.8 this gives 12
// bands of 10 rows: pairs at similarity 0.85 become candidates with probability 0.93, pairs
// at 0.5 with 0.012.)
void tw_minhash_lsh_shape(uint32_t n_perm, double threshold, uint32_t *bands, uint32_t *rows)
{
    double best = INFINITY;
    *bands = 1;
    *rows = n_perm ? n_perm : 1;
    for (uint32_t b = 1; b <= n_perm; b++)
        for (uint32_t r = 1; r <= n_perm / b; r++) {
            double err =
                0.2 * area(0, threshold, b, r, false) + 0.8 * area(threshold, 1, b, r, true);
            if (err < best) {
                best = err;
                *bands = b;
                *rows = r;
            }
        }
}

// ---- The index ------------------------------------------------------------------------------

int tw_minhash_new(const struct tw_minhash_options *opt, tw_minhash **out)
{
    struct tw_minhash_options o = opt ? *opt : tw_minhash_options_default();
    if (o.n_perm == 0 || o.n_perm > TW_MINHASH_MAX_PERM)
        return tw_error_set(TW_EINVAL, "minhash: n_perm = %u: must be in 1..%d", o.n_perm,
                            TW_MINHASH_MAX_PERM);
    if (o.shingle == 0)
        return tw_error_set(TW_EINVAL, "minhash: shingle size 0");
    if (!(o.threshold > 0 && o.threshold <= 1))
        return tw_error_set(TW_EINVAL, "minhash: threshold %g: must lie in (0, 1]", o.threshold);
    if ((o.bands == 0) != (o.rows == 0))
        return tw_error_set(TW_EINVAL, "minhash: bands %u and rows %u: give both or neither",
                            o.bands, o.rows);
    if (o.bands == 0)
        tw_minhash_lsh_shape(o.n_perm, o.threshold, &o.bands, &o.rows);
    else if ((uint64_t)o.bands * o.rows > o.n_perm)
        return tw_error_set(TW_EINVAL, "minhash: %u bands of %u rows need more than %u slots",
                            o.bands, o.rows, o.n_perm);

    tw_minhash *mh = tw_calloc(1, sizeof *mh);
    if (!mh)
        return tw_error_set(TW_ENOMEM, "minhash: cannot allocate an index");
    mh->opt = o;
    tw_vec_init(&mh->ids, sizeof(uint64_t));
    tw_vec_init(&mh->sigs, sizeof(uint32_t));
    tw_vec_init(&mh->next, sizeof(uint32_t));
    tw_map_init(&mh->index, TW_MAP_U64);
    mh->pa = tw_malloc_array(o.n_perm, sizeof *mh->pa);
    mh->pb = tw_malloc_array(o.n_perm, sizeof *mh->pb);
    mh->bands = tw_malloc_array(o.bands, sizeof *mh->bands);
    if (!mh->pa || !mh->pb || !mh->bands) {
        tw_free(mh->bands);
        mh->bands = NULL;
        tw_minhash_free(mh);
        return tw_error_set(TW_ENOMEM, "minhash: cannot allocate %u permutations", o.n_perm);
    }
    for (uint32_t i = 0; i < o.bands; i++)
        tw_map_init(&mh->bands[i], TW_MAP_U64);
    uint64_t s = o.seed;
    for (uint32_t i = 0; i < o.n_perm; i++) {
        do
            mh->pa[i] = splitmix64(&s) >> 3; // < 2^61
        while (mh->pa[i] == 0 || mh->pa[i] >= P61);
        do
            mh->pb[i] = splitmix64(&s) >> 3;
        while (mh->pb[i] >= P61);
    }
    *out = mh;
    return 0;
}

void tw_minhash_free(tw_minhash *mh)
{
    if (!mh)
        return;
    if (mh->bands)
        for (uint32_t i = 0; i < mh->opt.bands; i++)
            tw_map_free(&mh->bands[i]);
    tw_free(mh->bands);
    tw_free(mh->pa);
    tw_free(mh->pb);
    tw_vec_free(&mh->ids);
    tw_vec_free(&mh->sigs);
    tw_vec_free(&mh->next);
    tw_map_free(&mh->index);
    tw_free(mh);
}

struct tw_minhash_options tw_minhash_options(const tw_minhash *mh)
{
    return mh->opt;
}

size_t tw_minhash_count(const tw_minhash *mh)
{
    return mh->ids.len;
}

static const uint32_t *sig_at(const tw_minhash *mh, size_t d)
{
    return (const uint32_t *)mh->sigs.data + d * mh->opt.n_perm;
}

const uint32_t *tw_minhash_get(const tw_minhash *mh, uint64_t id)
{
    uint64_t d;
    return tw_map_get_u64(&mh->index, id, &d) ? sig_at(mh, (size_t)d) : NULL;
}

// The key of band `band` of sig: its rows hashed together.
static uint64_t band_key(const tw_minhash *mh, const uint32_t *sig, uint32_t band)
{
    const uint32_t *p = sig + (size_t)band * mh->opt.rows;
    uint64_t h = FNV_OFFSET;
    for (uint32_t i = 0; i < mh->opt.rows; i++)
        h = (h ^ p[i]) * FNV_PRIME;
    return fmix64(h);
}

int tw_minhash_add_signature(tw_minhash *mh, uint64_t id, const uint32_t *sig)
{
    if (tw_map_get_u64(&mh->index, id, NULL))
        return tw_error_set(TW_EEXIST, "minhash: document %llu is in the index already",
                            (unsigned long long)id);
    if (mh->ids.len >= UINT32_MAX - 1)
        return tw_error_set(TW_ELIMIT, "minhash: document %llu: 2^32 - 2 documents already",
                            (unsigned long long)id);
    uint32_t nb = mh->opt.bands, np = mh->opt.n_perm, d = (uint32_t)mh->ids.len;
    uint32_t old[TW_MINHASH_MAX_PERM]; // each band's previous head (bands <= n_perm)
    bool empty = sig_empty(sig, np);
    int rc = tw_vec_reserve(&mh->ids, mh->ids.len + 1);
    if (rc == 0)
        rc = tw_vec_reserve(&mh->sigs, mh->sigs.len + np);
    if (rc == 0)
        rc = tw_vec_reserve(&mh->next, mh->next.len + nb);
    if (rc == 0)
        rc = tw_map_put_u64(&mh->index, id, d);
    if (rc)
        return tw_error_prefix("minhash: adding document %llu", (unsigned long long)id);
    uint32_t done = 0;
    for (; !empty && done < nb; done++) {
        uint64_t key = band_key(mh, sig, done), head = 0;
        tw_map_get_u64(&mh->bands[done], key, &head);
        old[done] = (uint32_t)head;
        rc = tw_map_put_u64(&mh->bands[done], key, (uint64_t)d + 1);
        if (rc)
            break;
    }
    if (rc) {
        for (uint32_t j = 0; j < done; j++) {
            uint64_t key = band_key(mh, sig, j);
            if (old[j])
                tw_map_put_u64(&mh->bands[j], key, old[j]); // replaces: allocates nothing
            else
                tw_map_del_u64(&mh->bands[j], key);
        }
        tw_map_del_u64(&mh->index, id);
        return tw_error_prefix("minhash: adding document %llu", (unsigned long long)id);
    }
    tw_vec_push(&mh->ids, &id); // all three reserved
    tw_vec_append(&mh->sigs, sig, np);
    for (uint32_t j = 0; j < nb; j++) {
        uint32_t prev = empty ? 0 : old[j];
        tw_vec_push(&mh->next, &prev);
    }
    return 0;
}

int tw_minhash_add(tw_minhash *mh, uint64_t id, const char *text, size_t len)
{
    uint32_t *sig = tw_malloc_array(mh->opt.n_perm, sizeof *sig);
    if (!sig)
        return tw_error_set(TW_ENOMEM, "minhash: cannot allocate a signature");
    int rc = tw_minhash_signature(mh, text, len, sig, NULL);
    if (rc == 0)
        rc = tw_minhash_add_signature(mh, id, sig);
    tw_free(sig);
    return rc;
}

// ---- Queries --------------------------------------------------------------------------------

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_hit(const void *a, const void *b)
{
    const struct tw_minhash_hit *x = a, *y = b;
    if (x->similarity != y->similarity)
        return x->similarity > y->similarity ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int tw_minhash_query_signature(const tw_minhash *mh, const uint32_t *sig, double threshold,
                               tw_vec *hits)
{
    uint32_t nb = mh->opt.bands, np = mh->opt.n_perm;
    if (threshold < 0)
        threshold = mh->opt.threshold;
    if (sig_empty(sig, np))
        return 0;
    tw_vec cand;
    tw_vec_init(&cand, sizeof(uint32_t));
    const uint32_t *next = mh->next.data;
    int rc = 0;
    for (uint32_t b = 0; b < nb && rc == 0; b++) {
        uint64_t head = 0;
        if (!tw_map_get_u64(&mh->bands[b], band_key(mh, sig, b), &head))
            continue;
        for (uint32_t d1 = (uint32_t)head; d1 && rc == 0; d1 = next[(size_t)(d1 - 1) * nb + b]) {
            uint32_t d = d1 - 1;
            rc = tw_vec_push(&cand, &d);
        }
    }
    size_t old = hits->len;
    if (rc == 0 && cand.len)
        qsort(cand.data, cand.len, sizeof(uint32_t), cmp_u32);
    for (size_t i = 0; i < cand.len && rc == 0; i++) {
        uint32_t d = TW_VEC_AT(&cand, uint32_t, i);
        if (i && d == TW_VEC_AT(&cand, uint32_t, i - 1))
            continue;
        double sim = tw_minhash_similarity(sig, sig_at(mh, d), np);
        if (sim < threshold)
            continue;
        struct tw_minhash_hit h = { .id = TW_VEC_AT(&mh->ids, uint64_t, d), .similarity = sim };
        rc = tw_vec_push(hits, &h);
    }
    tw_vec_free(&cand);
    if (rc) {
        hits->len = old;
        return tw_error_prefix("minhash: query");
    }
    if (hits->len > old)
        qsort((struct tw_minhash_hit *)hits->data + old, hits->len - old,
              sizeof(struct tw_minhash_hit), cmp_hit);
    return 0;
}

int tw_minhash_query(const tw_minhash *mh, const char *text, size_t len, double threshold,
                     tw_vec *hits)
{
    uint32_t *sig = tw_malloc_array(mh->opt.n_perm, sizeof *sig);
    if (!sig)
        return tw_error_set(TW_ENOMEM, "minhash: cannot allocate a signature");
    int rc = tw_minhash_signature(mh, text, len, sig, NULL);
    if (rc == 0)
        rc = tw_minhash_query_signature(mh, sig, threshold, hits);
    tw_free(sig);
    return rc;
}

// A verified pair of document numbers (da < db).
struct dpair {
    uint32_t da, db;
    double sim;
};

// Every verified pair, in document numbers, into out (struct dpair).
static int doc_pairs(const tw_minhash *mh, double threshold, tw_vec *out)
{
    uint32_t nb = mh->opt.bands, np = mh->opt.n_perm;
    const uint32_t *next = mh->next.data;
    tw_map seen; // U64: (da << 32 | db) of pairs verified already
    tw_map_init(&seen, TW_MAP_U64);
    tw_vec bucket;
    tw_vec_init(&bucket, sizeof(uint32_t));
    int rc = 0;
    for (uint32_t b = 0; b < nb && rc == 0; b++) {
        size_t pos = 0;
        struct tw_map_entry e;
        while (rc == 0 && tw_map_next(&mh->bands[b], &pos, &e)) {
            tw_vec_clear(&bucket);
            for (uint32_t d1 = (uint32_t)e.val; d1 && rc == 0;
                 d1 = next[(size_t)(d1 - 1) * nb + b]) {
                uint32_t d = d1 - 1;
                rc = tw_vec_push(&bucket, &d);
            }
            const uint32_t *m = bucket.data;
            for (size_t i = 0; i < bucket.len && rc == 0; i++)
                for (size_t j = i + 1; j < bucket.len && rc == 0; j++) {
                    uint32_t da = m[i] < m[j] ? m[i] : m[j], db = m[i] < m[j] ? m[j] : m[i];
                    uint64_t key = (uint64_t)da << 32 | db;
                    if (tw_map_get_u64(&seen, key, NULL))
                        continue;
                    if ((rc = tw_map_put_u64(&seen, key, 1)) != 0)
                        break;
                    double sim = tw_minhash_similarity(sig_at(mh, da), sig_at(mh, db), np);
                    if (sim >= threshold) {
                        struct dpair p = { da, db, sim };
                        rc = tw_vec_push(out, &p);
                    }
                }
        }
    }
    tw_map_free(&seen);
    tw_vec_free(&bucket);
    return rc;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct tw_minhash_pair *x = a, *y = b;
    if (x->a != y->a)
        return x->a < y->a ? -1 : 1;
    return (x->b > y->b) - (x->b < y->b);
}

int tw_minhash_pairs(const tw_minhash *mh, double threshold, tw_vec *pairs)
{
    if (threshold < 0)
        threshold = mh->opt.threshold;
    tw_vec dp;
    tw_vec_init(&dp, sizeof(struct dpair));
    size_t old = pairs->len;
    int rc = doc_pairs(mh, threshold, &dp);
    if (rc == 0)
        rc = tw_vec_reserve(pairs, old + dp.len);
    for (size_t i = 0; i < dp.len && rc == 0; i++) {
        const struct dpair *p = &TW_VEC_AT(&dp, struct dpair, i);
        uint64_t a = TW_VEC_AT(&mh->ids, uint64_t, p->da);
        uint64_t b = TW_VEC_AT(&mh->ids, uint64_t, p->db);
        struct tw_minhash_pair q = { a < b ? a : b, a < b ? b : a, p->sim };
        tw_vec_push(pairs, &q); // reserved
    }
    tw_vec_free(&dp);
    if (rc) {
        pairs->len = old;
        return tw_error_prefix("minhash: pairs");
    }
    if (pairs->len > old)
        qsort((struct tw_minhash_pair *)pairs->data + old, pairs->len - old,
              sizeof(struct tw_minhash_pair), cmp_pair);
    return 0;
}

// Union-find with path halving.
static uint32_t uf_find(uint32_t *parent, uint32_t x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

struct member {
    uint64_t group; // the smallest id of its group
    uint64_t id;
};

static int cmp_member(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

int tw_minhash_clusters(const tw_minhash *mh, double threshold, tw_vec *ids, tw_vec *starts)
{
    if (threshold < 0)
        threshold = mh->opt.threshold;
    size_t n = mh->ids.len, old_ids = ids->len, old_starts = starts->len;
    const uint64_t *id = mh->ids.data;
    tw_vec dp;
    tw_vec_init(&dp, sizeof(struct dpair));
    uint32_t *parent = tw_malloc_array(n ? n : 1, sizeof *parent);
    uint32_t *size = tw_calloc(n ? n : 1, sizeof *size);
    uint64_t *min_id = tw_malloc_array(n ? n : 1, sizeof *min_id);
    struct member *mem = tw_malloc_array(n ? n : 1, sizeof *mem);
    int rc = parent && size && min_id && mem ? 0 : tw_error_set(TW_ENOMEM, "minhash: clusters");
    if (rc == 0)
        rc = doc_pairs(mh, threshold, &dp);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            parent[i] = (uint32_t)i;
        for (size_t i = 0; i < dp.len; i++) {
            const struct dpair *p = &TW_VEC_AT(&dp, struct dpair, i);
            uint32_t ra = uf_find(parent, p->da), rb = uf_find(parent, p->db);
            if (ra != rb)
                parent[ra < rb ? rb : ra] = ra < rb ? ra : rb;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t r = uf_find(parent, (uint32_t)i);
            if (size[r]++ == 0 || id[i] < min_id[r])
                min_id[r] = id[i];
        }
        size_t nm = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t r = uf_find(parent, (uint32_t)i);
            if (size[r] >= 2)
                mem[nm++] = (struct member){ min_id[r], id[i] };
        }
        qsort(mem, nm, sizeof *mem, cmp_member);
        rc = tw_vec_reserve(ids, old_ids + nm);
        for (size_t i = 0; i < nm && rc == 0; i++) {
            if (i == 0 || mem[i].group != mem[i - 1].group) {
                size_t at = ids->len;
                rc = tw_vec_push(starts, &at);
            }
            if (rc == 0)
                tw_vec_push(ids, &mem[i].id); // reserved
        }
        if (rc == 0) {
            size_t at = ids->len;
            rc = tw_vec_push(starts, &at);
        }
    }
    tw_vec_free(&dp);
    tw_free(parent);
    tw_free(size);
    tw_free(min_id);
    tw_free(mem);
    if (rc) {
        ids->len = old_ids;
        starts->len = old_starts;
        return tw_error_prefix("minhash: clusters");
    }
    return 0;
}

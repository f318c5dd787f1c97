// MinHash near-duplicate detection: signatures of a text's shingle set (k-word or k-character
// shingles of the lower-cased, whitespace-collapsed text) under n hash permutations from a
// fixed seed, Jaccard similarity estimated as the fraction of equal slots, and an LSH index
// (b bands of r rows) that finds candidate pairs, verified by their signatures.
// Owns the signatures and band tables of the documents added; the caller owns the texts.
#ifndef TW_TEXT_MINHASH_H
#define TW_TEXT_MINHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/vec.h"

#define TW_MINHASH_MAX_PERM 4096

struct tw_minhash_options {
    uint32_t n_perm;      // signature slots, 1..TW_MINHASH_MAX_PERM (128)
    uint32_t shingle;     // k: words per shingle, or characters with char_shingles (5)
    bool char_shingles;   // shingles of k characters (code points) instead of k words (false)
    uint64_t seed;        // the permutations' seed: same seed, same signatures
    double threshold;     // the Jaccard similarity a near-duplicate reaches, in (0, 1] (0.8)
    uint32_t bands, rows; // LSH shape (bands * rows <= n_perm); 0 and 0: chosen from threshold
};

// n_perm 128, 5-word shingles, seed 0x7477696e (ASCII "twin"), threshold 0.8, LSH shape chosen.
struct tw_minhash_options tw_minhash_options_default(void);

// The LSH shape for n_perm slots and a threshold: the (bands, rows) with bands * rows <= n_perm
// minimising the sum of the false-positive area (the probability 1 - (1 - s^r)^b of becoming
// a candidate, integrated over similarities s below the threshold) and the false-negative
// area (1 minus it, integrated over s above), the criterion of Leskovec, Rajaraman and
// Ullman, "Mining of Massive Datasets", ch. 3.4, with false negatives weighted 4 : 1 since
// candidates are verified on their signatures.
void tw_minhash_lsh_shape(uint32_t n_perm, double threshold, uint32_t *bands, uint32_t *rows);

typedef struct tw_minhash tw_minhash;

// A new empty index (opt NULL: the defaults); *out is the caller's, freed with
// tw_minhash_free. Returns 0, TW_EINVAL (n_perm or shingle 0, n_perm too big, threshold
// outside (0, 1], bands * rows > n_perm, only one of bands and rows given), TW_ENOMEM.
int tw_minhash_new(const struct tw_minhash_options *opt, tw_minhash **out);
void tw_minhash_free(tw_minhash *mh);

// The options in force (bands and rows filled in).
struct tw_minhash_options tw_minhash_options(const tw_minhash *mh);

// Appends to hashes (uint64_t elements) the 64-bit hash of each shingle of text[0, len), in
// text order, repeats included. Text is normalised first: lower-cased (Unicode simple case
// mapping; invalid UTF-8 bytes read as U+FFFD) and every run of white space (Unicode Zs, Zl,
// Zp, and the ASCII controls \t \n \v \f \r) taken as one separator (one space, for character
// shingles; leading and trailing white space dropped). A word shingle is k consecutive words;
// a text of fewer than k words (but at least one) gives one shingle of all of them, and
// likewise for characters. Returns 0 or TW_ENOMEM (hashes then as it was). Thread-safe.
int tw_minhash_shingles(const tw_minhash *mh, const char *text, size_t len, tw_vec *hashes);

// Writes the signature of text[0, len) to sig (n_perm slots): slot i holds the minimum over
// the shingles of permutation i, (a_i * h + b_i) mod (2^61 - 1), keeping its high 32 bits
// (the universal hash family of Carter and Wegman over the Mersenne prime 2^61 - 1, with a_i,
// b_i drawn from the seed by splitmix64). *n_shingles (may be NULL) gets the number of
// shingles; a text without any gives 0 and every slot UINT32_MAX. Returns 0 or TW_ENOMEM.
// Thread-safe.
int tw_minhash_signature(const tw_minhash *mh, const char *text, size_t len, uint32_t *sig,
                         size_t *n_shingles);

// The estimated Jaccard similarity of two signatures of n slots: the fraction of equal slots.
double tw_minhash_similarity(const uint32_t *a, const uint32_t *b, size_t n);

// Adds document id with the signature of text[0, len). A text without shingles is kept (it
// counts) but never matches anything. Returns 0; TW_EEXIST when id is present; TW_ELIMIT past
// 2^32 - 2 documents; TW_ENOMEM. On failure the index is as it was.
int tw_minhash_add(tw_minhash *mh, uint64_t id, const char *text, size_t len);
// The same with a signature computed already (n_perm slots, copied; all slots UINT32_MAX
// marks a text without shingles).
int tw_minhash_add_signature(tw_minhash *mh, uint64_t id, const uint32_t *sig);

// Documents in the index.
size_t tw_minhash_count(const tw_minhash *mh);
// The stored signature of id (n_perm slots, valid until the next add), or NULL when absent.
const uint32_t *tw_minhash_get(const tw_minhash *mh, uint64_t id);

struct tw_minhash_hit {
    uint64_t id;
    double similarity; // estimated Jaccard similarity
};

// Appends to hits (struct tw_minhash_hit elements) the documents whose signature shares a
// band with text's and whose estimated similarity is >= threshold, by similarity (highest
// first), then id. threshold < 0 means the index's. The band shape is tuned for the index's
// threshold: at lower thresholds fewer of the true matches become candidates. Returns 0 or
// TW_ENOMEM (hits then as it was). Read-only: queries may run in parallel with each other.
int tw_minhash_query(const tw_minhash *mh, const char *text, size_t len, double threshold,
                     tw_vec *hits);
// The same for a signature (n_perm slots).
int tw_minhash_query_signature(const tw_minhash *mh, const uint32_t *sig, double threshold,
                               tw_vec *hits);

struct tw_minhash_pair {
    uint64_t a, b;     // ids, a < b
    double similarity; // estimated Jaccard similarity
};

// Appends to pairs (struct tw_minhash_pair elements) every pair of documents that share a band
// and whose estimated similarity is >= threshold (< 0: the index's), ordered by a, then b.
// Returns 0 or TW_ENOMEM (pairs then as it was). Read-only.
int tw_minhash_pairs(const tw_minhash *mh, double threshold, tw_vec *pairs);

// The groups of near-duplicates: connected components of the graph of tw_minhash_pairs, of two
// documents or more. ids (uint64_t elements) gets the members, group after group, each group
// in increasing id, the groups by their smallest id; starts (size_t elements) gets the index
// in ids where each group starts, then one last entry, ids' new length (so the groups number
// one less than the entries appended to starts). Keeping the first id of each group and
// dropping the rest deduplicates the collection. Returns 0 or TW_ENOMEM
// (both vectors then as they were). Read-only.
int tw_minhash_clusters(const tw_minhash *mh, double threshold, tw_vec *ids, tw_vec *starts);

#endif

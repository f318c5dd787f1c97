// BM25 sparse retrieval: an inverted index over chunks identified by uint64 ids (the chunk's
// row id), with the analysis that turns text into terms (Unicode word segmentation, NFKC case
// folding, optional English stop words, optional Snowball English stemming), incremental add
// and delete, top-k search with a filter, and a checksummed single-file persistence.
// Owns the term dictionary, the postings and the document table; the caller owns the texts.
#ifndef TW_TEXT_BM25_H
#define TW_TEXT_BM25_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Terms (after normalisation) longer than this many bytes are dropped: they are not words.
#define TW_BM25_MAX_TERM 128

struct tw_bm25_options {
    double k1;       // term-frequency saturation, >= 0 (1.2)
    double b;        // document-length normalisation, in [0, 1] (0.75)
    bool stop_words; // drop the built-in English stop words (true)
    bool stem;       // Snowball English stemming through libstemmer (true)
};

// k1 = 1.2, b = 0.75, stop words and stemming on.
struct tw_bm25_options tw_bm25_options_default(void);

// ---- Analysis -------------------------------------------------------------------------------
//
// Text is read as UTF-8 (an invalid byte separates words). A word is a run of letters, digits,
// combining marks and connector punctuation (Unicode categories L*, N*, M*, Pc) that does not
// start with a mark; an apostrophe (U+0027 or U+2019) between two word characters stays inside
// the word ("don't"), and so does a '.' or ',' between two decimal digits ("3.14", "1,000").
// Han ideographs and Hiragana have no spaces between words: each is a term of its own (with
// any marks that follow it). Each word is normalised to NFKC with Unicode case folding and
// default-ignorable characters removed (utf8proc), U+2019 becomes "'", and a final English
// possessive "'s" is dropped. Then, when enabled, stop words are dropped and the rest stemmed.

// Called for each term, in text order; term is not NUL-terminated and is valid only during
// the call. A non-zero return stops the analysis, and tw_bm25_analyze returns that value.
typedef int (*tw_bm25_term_fn)(void *ctx, const char *term, size_t len);

// Runs the analysis above on text[0, len) with opt's stop_words and stem (opt NULL: the
// defaults). Returns 0, TW_ENOMEM, TW_EUNSUPPORTED (libstemmer has no English stemmer), or
// fn's non-zero return. Thread-safe.
int tw_bm25_analyze(const struct tw_bm25_options *opt, const char *text, size_t len,
                    tw_bm25_term_fn fn, void *ctx);

// true when word (len bytes, lower case) is one of the built-in English stop words.
bool tw_bm25_is_stop_word(const char *word, size_t len);
// The built-in stop words, sorted by strcmp; *n gets their number. Static storage.
const char *const *tw_bm25_stop_words(size_t *n);

// ---- The index ------------------------------------------------------------------------------

typedef struct tw_bm25 tw_bm25;

// A new empty index with the given options (NULL: the defaults); *out is the caller's, freed
// with tw_bm25_free. Returns 0, TW_EINVAL (k1 < 0, b outside [0, 1], or not finite),
// TW_ENOMEM, TW_EUNSUPPORTED (no English stemmer in libstemmer).
int tw_bm25_new(const struct tw_bm25_options *opt, tw_bm25 **out);
// Frees the index and everything in it; NULL is fine.
void tw_bm25_free(tw_bm25 *ix);

// The options the index analyses and scores with.
struct tw_bm25_options tw_bm25_options(const tw_bm25 *ix);

// Adds document id with the terms of text[0, len) (the index keeps no copy of the text).
// A document with no terms (empty, or only stop words) counts in N and in the average length.
// Returns 0; TW_EEXIST when id is in the index already (delete it first to replace it);
// TW_ELIMIT past 2^32 - 1 documents or terms in one document; TW_ENOMEM. On failure the
// index is as it was.
int tw_bm25_add(tw_bm25 *ix, uint64_t id, const char *text, size_t len);

// Removes document id: N, document frequencies and the average length change at once, exactly
// as if it had never been added. Postings of deleted documents are skipped by searches and
// dropped by a compaction, which runs by itself when they outnumber the live ones. Returns 0,
// or TW_ENOENT when id is not in the index.
int tw_bm25_delete(tw_bm25 *ix, uint64_t id);

// Drops the postings of deleted documents and renumbers the documents now. Never fails.
void tw_bm25_compact(tw_bm25 *ix);

// Documents in the index (N), distinct terms held by them, and the average document length
// in terms (0 for an empty index).
size_t tw_bm25_count(const tw_bm25 *ix);
size_t tw_bm25_term_count(const tw_bm25 *ix);
double tw_bm25_avgdl(const tw_bm25 *ix);
// true when id is in the index; *len (may be NULL) gets its length in terms.
bool tw_bm25_contains(const tw_bm25 *ix, uint64_t id, uint32_t *len);
// Document frequency of an analysed term (as tw_bm25_analyze gives it): 0 when absent.
uint32_t tw_bm25_df(const tw_bm25 *ix, const char *term, size_t len);

// ---- Search ---------------------------------------------------------------------------------
//
// score(q, d) = sum over the terms t of the analysed query (a term repeated in the query counts
// each time) of idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)), where tf is
// t's count in d, dl is d's length in terms, avgdl the mean length over the index, and
// idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) (Robertson-Sparck Jones idf with Lucene's
// "1 +", which keeps it positive). Only documents holding a query term score.

struct tw_bm25_hit {
    uint64_t id;
    double score;
};

// A filter: return true to keep document id. Called only for documents that would enter the
// top k, so a costly filter runs seldom.
typedef bool (*tw_bm25_keep_fn)(void *ctx, uint64_t id);

// The k best documents for query[0, len) among those keep accepts (keep NULL: all): hits (room
// for k, the caller's) gets them by score, highest first (equal scores: smaller id first), and
// *n their number: k, or fewer when fewer documents match and pass the filter. Returns 0 or
// TW_ENOMEM (then *n is 0). Read-only: searches may run in parallel with each other (not with
// add, delete, compact).
int tw_bm25_search(const tw_bm25 *ix, const char *query, size_t len, size_t k,
                   tw_bm25_keep_fn keep, void *ctx, struct tw_bm25_hit *hits, size_t *n);

// The score of one document for query[0, len), computed directly from its postings (the
// reference path of tw_bm25_search; 0 when no query term is in it). Returns 0, TW_ENOENT when
// id is not in the index, TW_ENOMEM. Read-only.
int tw_bm25_score(const tw_bm25 *ix, const char *query, size_t len, uint64_t id, double *score);

// ---- Persistence ----------------------------------------------------------------------------
//
// One little-endian file: a header (magic "TWINBM25", format version, analyser version,
// options, counts, the file's size), the documents (id, length, distinct terms), the terms in
// byte order each with its postings (document number, tf), and the SHA-256 of all the bytes
// before it. Deleted documents are not written. The same index gives the same bytes.

// Writes the index to path atomically (tw_file_write_atomic). Returns 0, TW_ENOMEM, or the
// write's error (which names the path). Read-only.
int tw_bm25_save(const tw_bm25 *ix, const char *path);

// Reads an index written by tw_bm25_save into a new one (*out, the caller's). Everything is
// checked (size, magic, versions, checksum, then every count, offset, and the consistency of
// postings with document lengths), so a damaged file is an error, never a crash. Returns 0;
// TW_ENOENT; TW_EIO; TW_EFORMAT (damaged: the message names the path and what is wrong);
// TW_EUNSUPPORTED (another format or analyser version); TW_ENOMEM. *out is unchanged on failure.
int tw_bm25_load(const char *path, tw_bm25 **out);

#endif

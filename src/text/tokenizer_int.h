// The tokenizer's private parts, shared by tokenizer.c (loading, added tokens, the encode and
// decode pipelines, post-processors, decoders), normalize.c, pretok.c, bpe.c and
// wordpiece.c. Text flows as a struct nstr: normalized bytes, each with the span of the
// input character it came from, cut into pieces by the pre-tokenizers.
#ifndef TW_TEXT_TOKENIZER_INT_H
#define TW_TEXT_TOKENIZER_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "base/map.h"
#include "base/str.h"
#include "base/vec.h"
#include "text/tokenizer.h"

// A string on its way through the pipeline: bytes, and for each byte the span of the input
// character that produced it; pieces are [start, end) byte ranges after pre-tokenization.
struct nstr {
    tw_vec b;      // char
    tw_vec a;      // struct tw_span, one per byte of b
    tw_vec pieces; // struct tw_span into b
};
void nstr_init(struct nstr *s);
void nstr_free(struct nstr *s);
void nstr_clear(struct nstr *s);
// Appends bytes that all come from the input span src.
int nstr_put(struct nstr *s, const char *p, size_t n, struct tw_span src);

// A regex (PCRE2, UTF + UCP, JIT when available) or a literal string.
struct pattern {
    char *lit; // the literal, when not a regex
    size_t lit_len;
    pcre2_code *re;
    char *src; // the regex as the file writes it (export.c names pre-tokenizers by it)
};
void pattern_free(struct pattern *p);
// Calls fn for every match in s[0, len) from left to right; fn returns non-zero to stop.
int pattern_each(const struct pattern *p, pcre2_match_data *md, const char *s, size_t len,
                 int (*fn)(void *ctx, size_t start, size_t end), void *ctx);

// ---- normalizers (normalize.c)
enum norm_type {
    NORM_NFC,
    NORM_NFD,
    NORM_NFKC,
    NORM_NFKD,
    NORM_LOWERCASE,
    NORM_STRIP,
    NORM_STRIP_ACCENTS,
    NORM_REPLACE,
    NORM_PREPEND,
    NORM_BERT,
    NORM_SEQUENCE
};
struct norm {
    enum norm_type type;
    struct pattern pat; // Replace
    char *content;      // Replace, Prepend
    size_t content_len;
    bool left, right;                                         // Strip
    bool clean_text, chinese_chars, strip_accents, lowercase; // BertNormalizer
    struct norm *kids;                                        // Sequence
    size_t n_kids;
};
int norm_parse(const json_t *j, const char *path, struct norm *out);
void norm_free(struct norm *n);
// Rewrites s (its bytes and spans; pieces are not used yet).
int norm_apply(const struct norm *n, struct nstr *s, struct nstr *tmp, pcre2_match_data *md);

// ---- pre-tokenizers (pretok.c)
enum pretok_type {
    PRE_BYTELEVEL,
    PRE_SPLIT,
    PRE_METASPACE,
    PRE_BERT,
    PRE_WHITESPACE,
    PRE_WHITESPACE_SPLIT,
    PRE_DIGITS,
    PRE_PUNCTUATION,
    PRE_SEQUENCE
};
enum split_behavior {
    SPLIT_REMOVED,
    SPLIT_ISOLATED,
    SPLIT_MERGED_PREV,
    SPLIT_MERGED_NEXT,
    SPLIT_CONTIGUOUS
};
struct pretok {
    enum pretok_type type;
    struct pattern pat; // Split; ByteLevel with use_regex (GPT-2's pattern); Whitespace
    enum split_behavior behavior;
    bool invert;
    bool add_prefix_space, use_regex; // ByteLevel
    char replacement[8];              // Metaspace
    int prepend_scheme;               // Metaspace: 0 always, 1 first, 2 never
    bool split;                       // Metaspace
    bool individual_digits;           // Digits
    struct pretok *kids;
    size_t n_kids;
};
int pretok_parse(const json_t *j, const char *path, struct pretok *out);
void pretok_free(struct pretok *p);
// Cuts s's pieces further (or rewrites them). On entry s->pieces holds one or more pieces.
int pretok_apply(const struct pretok *p, struct nstr *s, struct nstr *tmp, pcre2_match_data *md);
bool pretok_has_bytelevel(const struct pretok *p);

// ---- models (bpe.c, wordpiece.c)
struct tok {
    int32_t id;
    uint32_t start, end; // bytes of the piece
};
enum model_type { MODEL_BPE, MODEL_WORDPIECE };

// A thread's memo of words already encoded by one BPE model (encode.c keeps one per thread
// and clears it when the thread switches tokenizers): word bytes -> its tokens.
struct bpe_cache {
    tw_map words; // word -> (offset << 16 | count) into toks
    tw_vec toks;  // struct tok
};
void bpe_cache_init(struct bpe_cache *c);
void bpe_cache_free(struct bpe_cache *c);
void bpe_cache_clear(struct bpe_cache *c);
struct model {
    enum model_type type;
    tw_map vocab;     // token bytes -> id (byte-level BPE: the raw bytes, not the mapped chars)
    char **pieces;    // id -> the token as the file spells it (NULL for gaps)
    int32_t n_pieces; // max id + 1
    int32_t unk_id;   // -1 when none
    // BPE
    tw_map merges; // (left id << 32 | right id) -> (rank << 32 | merged id)
    bool byte_level, byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256]; // byte-level: the id of each single byte; byte fallback: <0xXX>
    char *cont_prefix, *end_suffix;
    // SentencePiece-style vocabularies: a word may be cut before a "▁" whose preceding
    // character never precedes "▁" inside a token (proven at load): no merge crosses there.
    bool meta_split;
    tw_map meta_bad_prev; // code points that precede "▁" inside some token
    // WordPiece
    char *wp_prefix;
    size_t wp_max_chars;
};
int model_parse(const json_t *j, const char *path, bool byte_level, struct model *out);
void model_free(struct model *m);
// Appends the tokens of one piece to out (struct tok).
int model_encode(const struct model *m, const char *w, size_t n, tw_vec *out, tw_vec *scratch,
                 struct bpe_cache *cache);
int bpe_parse(const json_t *j, const char *path, bool byte_level, struct model *m);
int bpe_encode(const struct model *m, const char *w, size_t n, tw_vec *out, tw_vec *scratch,
               struct bpe_cache *cache);
int wordpiece_parse(const json_t *j, const char *path, struct model *m);
int wordpiece_encode(const struct model *m, const char *w, size_t n, tw_vec *out);
// The largest token id a file may give: ids index dense tables (id -> piece), so a hostile
// file must not make the loader allocate for 2^31 of them. Far above any published vocabulary.
#define TOKENIZER_MAX_ID ((1 << 24) - 1)
// Records piece as the spelling of id; TW_EFORMAT for a negative id, TW_ELIMIT past
// TOKENIZER_MAX_ID.
int model_add_piece(struct model *m, const char *path, const char *piece, size_t len, int32_t id);
// Reads model.vocab ({token: id}) into m->vocab and m->pieces (byte-level vocabularies as raw
// bytes) and, when by_name is not NULL, the tokens as spelled into by_name.
int model_parse_vocab(const json_t *vocab, const char *path, struct model *m, tw_map *by_name);

// GPT-2's byte <-> character table (the published bytes_to_unicode mapping).
uint32_t bytelevel_char(uint8_t b);
int bytelevel_byte(uint32_t cp); // -1 when cp is not in the table

// Unicode helpers (utf8proc) that several stages share.
bool uc_is_whitespace(uint32_t cp); // Rust's char::is_whitespace (White_Space)
bool uc_is_punct(uint32_t cp);      // Unicode P* or ASCII punctuation (BERT)
bool uc_is_alnum(uint32_t cp);      // letters, marks, numbers, connector punctuation (\w)

// ---- GGUF vocabularies (vocab.c builds tokenizers from them, export.c makes them)
// A byte-level pre-tokenizer that tokenizer.ggml.pre names: Split(regex, behavior, invert)
// then ByteLevel without a regex of its own, or, when regex is NULL, ByteLevel with GPT-2's
// regex, after Digits(individual_digits) when digits; nfc: an NFC normalizer comes first;
// ignore_merges: the BPE model's flag as the model family's tokenizer.json sets it.
struct gguf_pre {
    const char *name; // llama.cpp's name (convert_hf_to_gguf.py, llama-vocab.cpp)
    const char *regex;
    enum split_behavior behavior;
    bool invert, nfc, ignore_merges, digits;
};
extern const struct gguf_pre gguf_pres[]; // ends with an entry whose name is NULL
// The entry of a tokenizer.ggml.pre value (aliases included: NULL, "default" and "gpt2" are
// GPT-2's; "llama3" and "llama-v3" are "llama-bpe"), or NULL.
const struct gguf_pre *gguf_pre_find(const char *name);
// tokenizer.ggml.pre of a "llama" vocabulary (llama.cpp reads no pre there): "default" (or
// any other value) is the normalizer Prepend("▁") (when add_space_prefix) + Replace(" ",
// "▁") of legacy Llama files, as llama.cpp tokenizes; these twin values are HF's Metaspace
// pre-tokenizer, by [prepend_scheme (0 always, 1 first, 2 never)][split].
extern const char *const gguf_metaspace_pres[3][2];

// ---- the tokenizer (tokenizer.c loads it; encode.c and decode.c run it)
struct added {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
};

// A byte trie over added tokens: edges in a hash map keyed (node << 8 | byte).
struct trie {
    tw_map edges;
    tw_vec term; // int32_t per node: index into tokenizer.added, or -1
    uint8_t first[32];
    bool empty;
};

enum dec_type {
    DEC_BYTELEVEL,
    DEC_REPLACE,
    DEC_BYTEFALLBACK,
    DEC_FUSE,
    DEC_STRIP,
    DEC_METASPACE,
    DEC_WORDPIECE,
    DEC_SEQUENCE
};
struct dec {
    enum dec_type type;
    struct pattern pat;
    char *content;
    uint32_t strip_char;
    size_t start, stop;
    char *prefix;
    bool cleanup;
    char replacement[8];
    int prepend_scheme;
    struct dec *kids;
    size_t n_kids;
};

struct tw_tokenizer {
    bool has_norm, has_pre, has_dec;
    struct norm norm;
    struct pretok pre;
    struct model model;
    struct dec dec;
    tw_vec added; // struct added
    tw_map added_by_id;
    struct trie raw, normalized;
    tw_vec post_prefix, post_suffix; // int32_t
    uint64_t uid;                    // distinguishes tokenizers for per-thread caches
    char *chat_template;
    int32_t bos, eos, pad, vocab_size;
};

// Builds a tokenizer from a tokenizer.json already parsed (or built: vocab.c); `what` names
// it in errors.
int tokenizer_load_root(const char *what, const json_t *root, tw_tokenizer **out);

void trie_init(struct trie *t);
void trie_free(struct trie *t);
int trie_add(struct trie *t, const char *s, size_t n, int32_t index);
// The longest added token starting at s[0, n): its index in tokenizer.added, or -1.
int32_t trie_longest(const struct trie *t, const char *s, size_t n, size_t *len);
static inline bool trie_may_start(const struct trie *t, unsigned char c)
{
    return t->first[c >> 3] & (1u << (c & 7));
}

#endif

// GGUF, the llama.cpp / ggml model file (layout published in ggml's docs/gguf.md): a reader
// that maps the file and validates every length, count, type and offset against its size
// (tensor data stay in the map, zero copy), a writer that streams a new file through a temp
// file and a rename, and the tokenizer.ggml.* values as a struct tw_tokenizer_vocab.
#ifndef TW_MODEL_GGUF_H
#define TW_MODEL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/map.h"
#include "base/str.h"
#include "base/vec.h"

struct tw_tokenizer_vocab;

// Metadata value types (the numbers stored in the file).
enum tw_gguf_type {
    TW_GGUF_TYPE_U8 = 0,
    TW_GGUF_TYPE_I8 = 1,
    TW_GGUF_TYPE_U16 = 2,
    TW_GGUF_TYPE_I16 = 3,
    TW_GGUF_TYPE_U32 = 4,
    TW_GGUF_TYPE_I32 = 5,
    TW_GGUF_TYPE_F32 = 6,
    TW_GGUF_TYPE_BOOL = 7,   // one byte, 0 or 1
    TW_GGUF_TYPE_STRING = 8, // u64 length + UTF-8 bytes (no NUL)
    TW_GGUF_TYPE_ARRAY = 9,  // u32 element type + u64 count + elements
    TW_GGUF_TYPE_U64 = 10,
    TW_GGUF_TYPE_I64 = 11,
    TW_GGUF_TYPE_F64 = 12,
};

// Tensor element types (ggml's enum ggml_type numbers). The ones named here can be sized;
// a file with any other type is refused.
enum tw_ggml_type {
    TW_GGML_TYPE_F32 = 0,
    TW_GGML_TYPE_F16 = 1,
    TW_GGML_TYPE_Q4_0 = 2,
    TW_GGML_TYPE_Q4_1 = 3,
    TW_GGML_TYPE_Q5_0 = 6,
    TW_GGML_TYPE_Q5_1 = 7,
    TW_GGML_TYPE_Q8_0 = 8,
    TW_GGML_TYPE_Q8_1 = 9,
    TW_GGML_TYPE_Q2_K = 10,
    TW_GGML_TYPE_Q3_K = 11,
    TW_GGML_TYPE_Q4_K = 12,
    TW_GGML_TYPE_Q5_K = 13,
    TW_GGML_TYPE_Q6_K = 14,
    TW_GGML_TYPE_Q8_K = 15,
    TW_GGML_TYPE_I8 = 24,
    TW_GGML_TYPE_I16 = 25,
    TW_GGML_TYPE_I32 = 26,
    TW_GGML_TYPE_I64 = 27,
    TW_GGML_TYPE_F64 = 28,
    TW_GGML_TYPE_BF16 = 30,
};

#define TW_GGUF_MAX_DIMS          4
#define TW_GGUF_DEFAULT_ALIGNMENT 32
#define TW_GGUF_MAX_NESTING       8 // arrays of arrays: at most this many levels

// The name of a value type ("u32", "string", ...) or of a ggml type ("q4_K", "bf16", ...);
// "unknown" for numbers outside the tables (ggml's other types have names but no size here).
const char *tw_gguf_type_name(uint32_t type);
const char *tw_ggml_type_name(uint32_t type);
// Block geometry of a ggml type: *block_weights weights take *block_bytes bytes (F32: 1 and
// 4; Q4_K: 256 and 144). Returns 0, or TW_EUNSUPPORTED (message names the type) for a type
// that cannot be sized.
int tw_ggml_type_block(uint32_t type, uint32_t *block_weights, uint32_t *block_bytes);
// Bytes of a tensor of that type with n_dims (<= 4) dimensions dims[0..n_dims) (ggml order:
// dims[0] is the contiguous one, and must be a multiple of the block size). Returns 0,
// TW_EUNSUPPORTED (type), TW_EINVAL (n_dims, or dims[0] not a multiple of the block) or
// TW_EOVERFLOW; the message says what, the caller prefixes the file and the tensor.
int tw_ggml_tensor_size(uint32_t type, const uint64_t *dims, uint32_t n_dims, size_t *out);

// ---- reading

typedef struct tw_gguf tw_gguf;

// A tensor of an open file; every pointer stays valid until tw_gguf_close.
struct tw_gguf_tensor {
    const char *name;                // NUL-terminated copy
    uint32_t n_dims;                 // 0..4
    uint64_t dims[TW_GGUF_MAX_DIMS]; // ggml order (dims[0] contiguous); 1 past n_dims
    enum tw_ggml_type type;
    uint64_t offset;  // from the start of the data section (a multiple of the alignment)
    const void *data; // size bytes in the map (aligned as the file aligns them)
    size_t size;
};

// An array value: count elements of one type. For the fixed-size types, data points at the
// elements in the map, little-endian and possibly unaligned (read them with the
// tw_gguf_arr_get_* functions or memcpy); for strings and arrays data is NULL and elements
// are reached through tw_gguf_arr_get_str / tw_gguf_arr_get_arr. Valid until tw_gguf_close.
struct tw_gguf_arr {
    enum tw_gguf_type type;
    uint64_t count;
    const void *data;
    uint32_t node; // the reader's own index of the array
};

// Maps path and parses and validates everything but the tensors' bytes: the header (magic
// "GGUF", version 2 or 3, counts), every key/value (duplicate keys refused), general.alignment
// (a u32 power of two; 32 when absent), every tensor info (name unique, n_dims <= 4, a type
// that can be sized, offset aligned, data inside the file). On success *out is a new reader
// (free with tw_gguf_close). Returns 0; TW_ENOENT / TW_EIO (file); TW_EFORMAT (malformed;
// the message names the file and the key or tensor: "m.gguf: tensor 3 \"blk.0.attn_q.weight\":
// data (offset 64, 4096 bytes) run past the end of the file (...)"); TW_EUNSUPPORTED (version,
// tensor type); TW_EOVERFLOW; TW_ENOMEM. Never reads outside the file.
int tw_gguf_open(const char *path, tw_gguf **out);
// The same over len bytes at data, which the caller keeps alive and unchanged until
// tw_gguf_close; `what` names them in errors.
int tw_gguf_open_buffer(const char *what, const void *data, size_t len, tw_gguf **out);
void tw_gguf_close(tw_gguf *g);

uint32_t tw_gguf_version(const tw_gguf *g);
uint32_t tw_gguf_alignment(const tw_gguf *g);
// Byte offset of the data section in the file.
uint64_t tw_gguf_data_offset(const tw_gguf *g);
// The path (or `what`) given to open.
const char *tw_gguf_path(const tw_gguf *g);

// Keys, in file order: i < tw_gguf_key_count(g).
size_t tw_gguf_key_count(const tw_gguf *g);
const char *tw_gguf_key_name(const tw_gguf *g, size_t i); // NUL-terminated; NULL: i too big
enum tw_gguf_type tw_gguf_key_type(const tw_gguf *g, size_t i);
// The index of key, or -1 when absent.
int64_t tw_gguf_find_key(const tw_gguf *g, const char *key);

// Typed getters. Each returns 0 and sets *out; TW_ENOENT when the key is absent and TW_EFORMAT
// when its type differs ("m.gguf: key \"general.alignment\": expected u32, found string");
// *out is then unchanged.
int tw_gguf_get_u32(const tw_gguf *g, const char *key, uint32_t *out);
int tw_gguf_get_u64(const tw_gguf *g, const char *key, uint64_t *out);
int tw_gguf_get_i64(const tw_gguf *g, const char *key, int64_t *out);
int tw_gguf_get_f32(const tw_gguf *g, const char *key, float *out);
int tw_gguf_get_bool(const tw_gguf *g, const char *key, bool *out);
// A string: *s points at *len bytes in the map (not NUL-terminated).
int tw_gguf_get_str(const tw_gguf *g, const char *key, const char **s, size_t *len);
int tw_gguf_get_arr(const tw_gguf *g, const char *key, struct tw_gguf_arr *out);
// Any integer type (u8 .. i64, u64) as int64_t; TW_EOVERFLOW for a u64 over INT64_MAX.
int tw_gguf_get_int(const tw_gguf *g, const char *key, int64_t *out);

// Element i of an array (i < a->count, else TW_EINVAL). get_int takes any integer element
// type (TW_EOVERFLOW as above); get_float takes f32 and f64; get_bool bool; get_str strings
// (pointer + length into the map); get_arr arrays. A wrong element type gives TW_EFORMAT.
int tw_gguf_arr_get_int(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, int64_t *out);
int tw_gguf_arr_get_float(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, double *out);
int tw_gguf_arr_get_bool(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, bool *out);
int tw_gguf_arr_get_str(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, const char **s,
                        size_t *len);
int tw_gguf_arr_get_arr(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i,
                        struct tw_gguf_arr *out);

// Tensors, in file order: i < tw_gguf_tensor_count(g) (NULL past the end).
size_t tw_gguf_tensor_count(const tw_gguf *g);
const struct tw_gguf_tensor *tw_gguf_tensor_at(const tw_gguf *g, size_t i);
// The tensor called name, or NULL.
const struct tw_gguf_tensor *tw_gguf_find_tensor(const tw_gguf *g, const char *name);
// The same as an error: TW_ENOENT ("m.gguf: tensor \"output.weight\" is missing").
int tw_gguf_get_tensor(const tw_gguf *g, const char *name, const struct tw_gguf_tensor **out);

// Fills *v from the tokenizer.ggml.* keys and tokenizer.chat_template: model and tokens are
// required; scores and token_type, when present, must have one entry per token; ids that
// are absent or not a token id (llama.cpp ignores those too) become -1; add_bos and
// add_space_prefix default to true for "llama" and false otherwise; cased is false.
// Every string and array *v points to (tokens, merges and the rest, NUL-terminated) is
// copied into arena, which the caller owns: v is valid until the arena is freed or rewound
// (tw_arena_free). On failure *v is unchanged and the arena holds nothing new.
int tw_gguf_tokenizer_vocab(const tw_gguf *g, struct tw_tokenizer_vocab *v, tw_arena *arena);

// ---- writing

// An array to write: count elements of type. elems points to count C values: uint8_t,
// int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, const char * (NUL-terminated
// strings), struct tw_gguf_warr (nested arrays), uint64_t, int64_t, double.
struct tw_gguf_warr {
    enum tw_gguf_type type;
    const void *elems;
    size_t count;
};

// A file being built. The key/values are serialised as they are added (the caller's values
// may go at once); tensors are kept by reference (their data must stay valid until
// tw_gguf_write). Fields are the writer's own.
typedef struct tw_gguf_writer {
    tw_str meta; // the key/value section so far
    uint64_t n_kv;
    tw_vec tensors;     // struct tw_gguf_wtensor (gguf.c)
    tw_map keys;        // key -> 1 (duplicates refused)
    tw_map names;       // tensor name -> 1
    uint32_t alignment; // general.alignment (32 unless set)
} tw_gguf_writer;

void tw_gguf_writer_init(tw_gguf_writer *w);
void tw_gguf_writer_free(tw_gguf_writer *w);

// Adds a scalar: val points to the C value of type (any type but STRING and ARRAY).
// "general.alignment" must be a u32 power of two and sets the data alignment. Each returns 0;
// TW_EEXIST for a key added already; TW_EINVAL for a bad type or value; TW_ENOMEM. The writer is
// unchanged on failure.
int tw_gguf_writer_add_kv(tw_gguf_writer *w, const char *key, enum tw_gguf_type type,
                          const void *val);
int tw_gguf_writer_add_u32(tw_gguf_writer *w, const char *key, uint32_t val);
// A string of len bytes (any bytes).
int tw_gguf_writer_add_str(tw_gguf_writer *w, const char *key, const char *s, size_t len);
int tw_gguf_writer_add_arr(tw_gguf_writer *w, const char *key, const struct tw_gguf_warr *a);
// Adds a tensor whose size bytes at data (kept by reference) hold n_dims <= 4 dimensions
// dims (ggml order) of type; size must be what tw_ggml_tensor_size gives. Tensors are laid
// out in the order added, each at an offset that is a multiple of the alignment. TW_EEXIST for a
// name added already; TW_EINVAL / TW_EUNSUPPORTED for a bad shape, type or size.
int tw_gguf_writer_add_tensor(tw_gguf_writer *w, const char *name, enum tw_ggml_type type,
                              const uint64_t *dims, uint32_t n_dims, const void *data,
                              size_t size);
// Adds the tokenizer.ggml.* keys and tokenizer.chat_template of v, the ones
// tw_gguf_tokenizer_vocab reads, with llama.cpp's names and types: model, pre (when set),
// tokens, scores and token_type (when set), merges (when any), the bos, eos, unknown,
// seperator (sic), padding and cls ids (those >= 0, as u32), add_bos_token, add_space_prefix
// ("llama" only) and chat_template (when set). Returns 0; TW_EINVAL (no model, an id not
// under n_tokens); TW_EUNSUPPORTED (a cased "bert" vocabulary, which GGUF cannot mark);
// TW_EEXIST (a key added already); TW_ENOMEM. The writer is unchanged on failure.
int tw_gguf_writer_add_tokenizer(tw_gguf_writer *w, const struct tw_tokenizer_vocab *v);
// Writes a GGUF v3 file at path: a temp file ".<name>.tmp-XXXXXX" beside it, written in full,
// fsync'ed and renamed over path (then the folder is fsync'ed), so that path holds the old
// content or the new, never a mix. Tensor data are padded to the alignment. Returns 0 or a
// negative code (the message names path); on failure path is untouched.
int tw_gguf_write(const tw_gguf_writer *w, const char *path);

#endif

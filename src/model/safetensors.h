// safetensors: Hugging Face's tensor file format. Reads a file by memory-mapping it (tensor
// data are pointers into the mapping, never copied) after validating the whole header; opens
// a model folder (one file, or shards listed by model.safetensors.index.json) as one set of
// tensors; writes files byte for byte as the reference implementation (Python/Rust
// `safetensors`) does, atomically.
#ifndef TW_MODEL_SAFETENSORS_H
#define TW_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/map.h"
#include "base/vec.h"

// The format (https://github.com/huggingface/safetensors, README "Format"): 8 bytes, N, a
// little-endian u64; N bytes of UTF-8 JSON, an object {"TENSOR": {"dtype": "F32", "shape":
// [d0, d1, ...], "data_offsets": [begin, end]}, ..., "__metadata__": {"key": "value", ...}},
// possibly padded with spaces; then the data buffer, to the end of the file. Offsets are
// relative to the start of the data buffer; tensors are little-endian, row-major, must not
// overlap and must cover the buffer without holes.

// The dtypes, in the order of the reference's `Dtype` enum (increasing alignment): the writer
// sorts tensors by this order, descending, as the reference does.
enum tw_st_dtype {
    TW_ST_DTYPE_BOOL,
    TW_ST_DTYPE_U8,
    TW_ST_DTYPE_I8,
    TW_ST_DTYPE_F8_E5M2,
    TW_ST_DTYPE_F8_E4M3,
    TW_ST_DTYPE_I16,
    TW_ST_DTYPE_U16,
    TW_ST_DTYPE_F16,
    TW_ST_DTYPE_BF16,
    TW_ST_DTYPE_I32,
    TW_ST_DTYPE_U32,
    TW_ST_DTYPE_F32,
    TW_ST_DTYPE_F64,
    TW_ST_DTYPE_I64,
    TW_ST_DTYPE_U64,
    TW_ST_DTYPE_COUNT
};

#define TW_ST_MAX_DIMS   8
#define TW_ST_MAX_HEADER 100000000 // bytes of header JSON, the reference's MAX_HEADER_SIZE

// The size in bytes of one element of dtype (1, 2, 4 or 8), or 0 for a value that is not a
// dtype.
size_t tw_st_dtype_size(int dtype);
// The name the format uses ("F32", "BF16", ...), or NULL for a value that is not a dtype.
const char *tw_st_dtype_name(int dtype);
// The dtype named name (exact, case-sensitive: "F32"), or -1 when none is.
int tw_st_dtype_from_name(const char *name);

// One tensor of an open file. Everything points into the file's mapping or header and stays
// valid until the file (or the model holding it) is closed.
struct tw_st_tensor {
    const char *name;
    int dtype; // enum tw_st_dtype
    int n_dims;
    int64_t shape[TW_ST_MAX_DIMS]; // n_dims entries; the rest are 0
    const void *data; // nbytes bytes inside the mapping; aligned to the element size when the
                      // header length is a multiple of 8 (as every writer pads it), else not
    size_t nbytes;    // product(shape) * tw_st_dtype_size(dtype)
};

// ---- Reading one file ------------------------------------------------------------------------

typedef struct tw_st_file tw_st_file;

// Maps the file at path and validates it: the header length fits in the file and is at most
// TW_ST_MAX_HEADER; the header is a JSON object (no duplicate keys); each tensor has a known
// dtype, a shape of 0 to TW_ST_MAX_DIMS non-negative integers and data_offsets [begin, end]
// with begin <= end <= the data's size and end - begin == product(shape) * element size; the
// tensors do not overlap and cover the data without holes; "__metadata__", when present and
// not null, maps strings to strings. Members of a tensor entry other than those three are
// ignored, as the reference does. Sets *out to a new handle (free with tw_st_close) and returns
// 0, or returns TW_ENOENT / TW_EIO (the file), TW_EFORMAT (a malformed header or tensor),
// TW_EUNSUPPORTED (an unknown dtype, more than 8 dimensions), TW_ELIMIT (the header is too
// long), TW_ENOMEM; the message names the file and, where there is one, the tensor. *out is
// unchanged on failure.
int tw_st_open(const char *path, tw_st_file **out);
// Unmaps the file and frees the handle; every pointer it gave out dies. NULL is fine.
void tw_st_close(tw_st_file *f);

// The path the file was opened with.
const char *tw_st_path(const tw_st_file *f);
// The number of tensors, and tensor i (i < count) in file order: by data offset (for files the
// reference writes, also the order of the header), ties (empty tensors) in header order.
size_t tw_st_count(const tw_st_file *f);
const struct tw_st_tensor *tw_st_tensor_at(const tw_st_file *f, size_t i);
// The tensor called name, or NULL when the file has none.
const struct tw_st_tensor *tw_st_find(const tw_st_file *f, const char *name);

// The metadata: the value of key (NULL when absent), and the pairs in header order
// (i < tw_st_meta_count; *key and *value stay owned by f).
const char *tw_st_meta_get(const tw_st_file *f, const char *key);
size_t tw_st_meta_count(const tw_st_file *f);
void tw_st_meta_at(const tw_st_file *f, size_t i, const char **key, const char **value);

// ---- Reading a model folder ------------------------------------------------------------------

typedef struct tw_st_model tw_st_model;

// Opens the tensors of a Hugging Face model folder: DIR/model.safetensors when it exists, else
// DIR/model.safetensors.index.json ({"weight_map": {"tensor": "shard file", ...}}, other
// members ignored) and every shard it names (relative to DIR; absolute names and ".." are
// refused). dir may also be a .safetensors file or an index file itself. Every tensor of every
// shard must be in the weight map under that shard, and every entry of the weight map must be
// found: a tensor in a shard other than the one the index names, a tensor in two shards, a
// tensor of no shard, and a shard that does not exist are errors that name the index, the
// shard(s) and the tensor. Returns 0 and a new handle in *out (free with tw_st_close_model),
// or the codes of tw_st_open (TW_ENOENT when the folder holds neither file); *out is
// unchanged on failure.
int tw_st_open_model(const char *dir, tw_st_model **out);
void tw_st_close_model(tw_st_model *m);

// All tensors: count, and tensor i in order of shard file name, then file order.
size_t tw_st_model_count(const tw_st_model *m);
const struct tw_st_tensor *tw_st_model_tensor_at(const tw_st_model *m, size_t i);
// The tensor called name, or NULL; when file is not NULL it gets the shard holding it (for
// tw_st_path in messages), or NULL.
const struct tw_st_tensor *tw_st_model_find(const tw_st_model *m, const char *name,
                                            const tw_st_file **file);
// The files: 1 for a single-file model, else the shards sorted by name.
size_t tw_st_model_n_files(const tw_st_model *m);
const tw_st_file *tw_st_model_file(const tw_st_model *m, size_t i);

// ---- Writing ---------------------------------------------------------------------------------

// A file being assembled; the caller owns the struct (tw_st_writer_init / _free) and must
// not touch its members. Tensor data are borrowed: each must stay valid and unchanged until
// tw_st_write returns (or the writer is freed). Names, keys and values are copied.
struct tw_st_writer {
    tw_vec tensors; // struct st_wtensor (safetensors.c)
    tw_vec meta;    // struct st_wmeta
    tw_map names;   // tensor name -> index in tensors
};

void tw_st_writer_init(struct tw_st_writer *w);
void tw_st_writer_free(struct tw_st_writer *w);

// Adds a tensor: name (UTF-8, not "__metadata__", not added before), dtype, shape (n_dims
// from 0 to TW_ST_MAX_DIMS entries >= 0), and nbytes of data (== product(shape) * element
// size; data may be NULL when nbytes is 0). Returns 0, TW_EINVAL (the message names the
// tensor), TW_EEXIST (a second tensor of that name), TW_EOVERFLOW, TW_ENOMEM; on failure the
// writer is unchanged.
int tw_st_writer_add(struct tw_st_writer *w, const char *name, int dtype, const int64_t *shape,
                     int n_dims, const void *data, size_t nbytes);
// Sets metadata key to value (both UTF-8; replaces an earlier value of key). A writer with no
// metadata writes no "__metadata__" (as the reference does when given none). 0, TW_EINVAL or
// TW_ENOMEM (writer unchanged).
int tw_st_writer_metadata(struct tw_st_writer *w, const char *key, const char *value);

// The bytes that come before the data: the 8-byte length and the header JSON, compact, with
// "__metadata__" first (keys sorted) and then the tensors in data order, which is the
// reference's: dtypes from U64 down to BOOL (enum order, descending), then names in byte order;
// padded with spaces to a multiple of 8 bytes so that each tensor's data is aligned to its
// element size. *out (free with tw_free) gets *len bytes. 0, TW_ELIMIT (header over
// TW_ST_MAX_HEADER), TW_ENOMEM.
int tw_st_writer_header(const struct tw_st_writer *w, char **out, size_t *len);
// Writes the file to path atomically: a temp file ".<name>.tmp-XXXXXX" in the same folder
// gets the header and then every tensor's data (streamed, never assembled in memory), is
// fsync'ed and renamed over path, and the folder is fsync'ed; mode 0644. Returns 0, the codes
// of tw_st_writer_header, TW_ENOENT (no such folder) or TW_EIO; on failure path is untouched
// and the temp file removed.
int tw_st_write(const struct tw_st_writer *w, const char *path);

#endif

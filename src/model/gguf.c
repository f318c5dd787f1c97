// GGUF reader and writer. The layout is the one published in ggml's docs/gguf.md: header
// (magic, version, counts), key/values, tensor infos, padding to general.alignment, data.
// The reader validates every read against the file's size before it happens and keeps an
// index of the variable-size array elements (strings, nested arrays) for O(1) access; the
// writer serialises key/values as they come and streams tensor data to a temp file.
#define _GNU_SOURCE // mkostemp
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "model/gguf.h"
#include "text/tokenizer.h"

#define GGUF_MAGIC "GGUF"

// ---- type tables

static const char *const value_type_names[] = { "u8",  "i8",  "u16",  "i16",    "u32",
                                                "i32", "f32", "bool", "string", "array",
                                                "u64", "i64", "f64" };
#define N_VALUE_TYPES (sizeof value_type_names / sizeof value_type_names[0])

// Bytes of one value of a fixed-size type; 0 for strings and arrays.
static const uint8_t value_type_size[N_VALUE_TYPES] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

// ggml's type table (ggml.h's enum ggml_type; block sizes of ggml-common.h's block structs,
// as docs/gguf.md lists them): name, weights per block, bytes per block (0: no size known).
// q8_1 is ggml's current block of two fp16 and 32 int8 (36 B; older ggml had two f32).
static const struct {
    const char *name;
    uint16_t weights, bytes;
} ggml_types[] = {
    [0] = { "f32", 1, 4 },       [1] = { "f16", 1, 2 },       [2] = { "q4_0", 32, 18 },
    [3] = { "q4_1", 32, 20 },    [4] = { "q4_2", 0, 0 },      [5] = { "q4_3", 0, 0 },
    [6] = { "q5_0", 32, 22 },    [7] = { "q5_1", 32, 24 },    [8] = { "q8_0", 32, 34 },
    [9] = { "q8_1", 32, 36 },    [10] = { "q2_K", 256, 84 },  [11] = { "q3_K", 256, 110 },
    [12] = { "q4_K", 256, 144 }, [13] = { "q5_K", 256, 176 }, [14] = { "q6_K", 256, 210 },
    [15] = { "q8_K", 256, 292 }, [16] = { "iq2_xxs", 0, 0 },  [17] = { "iq2_xs", 0, 0 },
    [18] = { "iq3_xxs", 0, 0 },  [19] = { "iq1_s", 0, 0 },    [20] = { "iq4_nl", 0, 0 },
    [21] = { "iq3_s", 0, 0 },    [22] = { "iq2_s", 0, 0 },    [23] = { "iq4_xs", 0, 0 },
    [24] = { "i8", 1, 1 },       [25] = { "i16", 1, 2 },      [26] = { "i32", 1, 4 },
    [27] = { "i64", 1, 8 },      [28] = { "f64", 1, 8 },      [29] = { "iq1_m", 0, 0 },
    [30] = { "bf16", 1, 2 },     [34] = { "tq1_0", 0, 0 },    [35] = { "tq2_0", 0, 0 },
    [39] = { "mxfp4", 0, 0 },
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *tw_gguf_type_name(uint32_t type)
{
    return type < N_VALUE_TYPES ? value_type_names[type] : "unknown";
}

const char *tw_ggml_type_name(uint32_t type)
{
    return type < N_GGML_TYPES && ggml_types[type].name ? ggml_types[type].name : "unknown";
}

int tw_ggml_type_block(uint32_t type, uint32_t *block_weights, uint32_t *block_bytes)
{
    if (type >= N_GGML_TYPES || ggml_types[type].bytes == 0)
        return tw_error_set(TW_EUNSUPPORTED, "type %" PRIu32 " (%s) is not supported", type,
                            tw_ggml_type_name(type));
    *block_weights = ggml_types[type].weights;
    *block_bytes = ggml_types[type].bytes;
    return 0;
}

int tw_ggml_tensor_size(uint32_t type, const uint64_t *dims, uint32_t n_dims, size_t *out)
{
    uint32_t bw = 1, bb = 1;
    int rc = tw_ggml_type_block(type, &bw, &bb);
    if (rc)
        return rc;
    if (n_dims > TW_GGUF_MAX_DIMS)
        return tw_error_set(TW_EINVAL, "%" PRIu32 " dimensions (at most %d)", n_dims,
                            TW_GGUF_MAX_DIMS);
    uint64_t d0 = n_dims > 0 ? dims[0] : 1;
    if (d0 % bw != 0)
        return tw_error_set(TW_EINVAL,
                            "rows of %" PRIu64 " weights are not a multiple of %s's block of "
                            "%" PRIu32,
                            d0, tw_ggml_type_name(type), bw);
    // ggml counts elements in int64_t: the element count must fit, and so must the bytes.
    size_t bytes = (size_t)(d0 / bw) * bb, elems = (size_t)d0;
    bool over = d0 > INT64_MAX || (size_t)(d0 / bw) > SIZE_MAX / bb;
    for (uint32_t i = 1; i < n_dims && !over; i++)
        over = dims[i] > INT64_MAX || tw_mul_overflow(bytes, (size_t)dims[i], &bytes) ||
               tw_mul_overflow(elems, (size_t)dims[i], &elems) || elems > INT64_MAX;
    if (over)
        return tw_error_set(TW_EOVERFLOW, "its size in bytes overflows (type %s)",
                            tw_ggml_type_name(type));
    *out = bytes;
    return 0;
}

// ---- the reader's state

struct kv {
    const char *key; // NUL-terminated copy in names
    uint32_t type;   // enum tw_gguf_type
    uint64_t off;    // scalar: the value's offset; string: the bytes' offset
    uint64_t len;    // string: its length
    uint32_t node;   // array: its index in nodes
};

// An array (top-level value or element of another).
struct node {
    uint32_t type; // element type
    uint64_t count;
    uint64_t off; // fixed-size elements: offset of the first
    size_t first; // strings: index in strs of the first; arrays: index in nodes of the first
};

// A string element of an array.
struct strref {
    uint64_t off, len;
};

struct tw_gguf {
    struct tw_mmap map; // empty for tw_gguf_open_buffer
    const uint8_t *base;
    size_t size;
    char *path;
    uint32_t version, alignment;
    uint64_t data_off;
    struct kv *kvs;
    size_t n_kv;
    struct tw_gguf_tensor *tensors;
    size_t n_tensors;
    tw_vec nodes;      // struct node
    tw_vec strs;       // struct strref
    tw_map key_index;  // key -> index in kvs
    tw_map name_index; // tensor name -> index in tensors
    tw_arena names;    // keys and tensor names
};

static uint64_t load_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

// Checks that n bytes at pos are inside the file; `what` names them for the message.
static int need(const tw_gguf *g, uint64_t pos, uint64_t n, const char *what)
{
    if (pos > g->size || n > g->size - pos)
        return tw_error_set(TW_EFORMAT,
                            "%s (%" PRIu64 " bytes at offset %" PRIu64
                            ") runs past the end of the file (%zu bytes)",
                            what, n, pos, g->size);
    return 0;
}

static int read_uint(const tw_gguf *g, uint64_t *pos, unsigned n, const char *what, uint64_t *v)
{
    int rc = need(g, *pos, n, what);
    if (rc)
        return rc;
    *v = load_le(g->base + *pos, n);
    *pos += n;
    return 0;
}

static int read_u32(const tw_gguf *g, uint64_t *pos, const char *what, uint32_t *v)
{
    uint64_t x;
    int rc = read_uint(g, pos, 4, what, &x);
    if (!rc)
        *v = (uint32_t)x;
    return rc;
}

// A string: u64 length, then the bytes (left in the map: *off, *len).
static int read_string(const tw_gguf *g, uint64_t *pos, const char *what, uint64_t *off,
                       uint64_t *len)
{
    int rc = read_uint(g, pos, 8, what, len);
    if (!rc && *len > g->size - *pos)
        rc = tw_error_set(TW_EFORMAT,
                          "%s: length %" PRIu64 " at offset %" PRIu64
                          " runs past the end of the file (%zu bytes)",
                          what, *len, *pos - 8, g->size);
    if (rc)
        return rc;
    *off = *pos;
    *pos += *len;
    return 0;
}

// A key or tensor name: no NUL byte inside (names are C strings), copied into g->names.
static int read_name(tw_gguf *g, uint64_t *pos, const char *what, const char **out)
{
    uint64_t off, len;
    int rc = read_string(g, pos, what, &off, &len);
    if (rc)
        return rc;
    if (memchr(g->base + off, 0, len))
        return tw_error_set(TW_EFORMAT, "%s holds a NUL byte", what);
    char *s = tw_arena_strndup(&g->names, (const char *)g->base + off, len);
    if (!s)
        return tw_error_set(TW_ENOMEM, "out of memory");
    *out = s;
    return 0;
}

static int check_bools(const tw_gguf *g, uint64_t off, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (g->base[off + i] > 1)
            return tw_error_set(TW_EFORMAT, "bool value %u at offset %" PRIu64 " is not 0 or 1",
                                g->base[off + i], off + i);
    return 0;
}

// Parses the array at *pos into nodes[idx] (which exists); depth counts the levels so far.
static int parse_array(tw_gguf *g, uint64_t *pos, size_t idx, int depth)
{
    if (depth > TW_GGUF_MAX_NESTING)
        return tw_error_set(TW_EFORMAT, "arrays nested deeper than %d levels at offset %" PRIu64,
                            TW_GGUF_MAX_NESTING, *pos);
    uint32_t type;
    uint64_t count;
    int rc = read_u32(g, pos, "the array's element type", &type);
    if (!rc && type >= N_VALUE_TYPES)
        rc = tw_error_set(TW_EFORMAT, "unknown array element type %" PRIu32 " at offset %" PRIu64,
                          type, *pos - 4);
    if (!rc)
        rc = read_uint(g, pos, 8, "the array's length", &count);
    if (rc)
        return rc;
    // The smallest element: a string's length (8 bytes), an array's type and count (12).
    uint64_t min = value_type_size[type] ? value_type_size[type] : type == 8 ? 8 : 12;
    if (count > (g->size - *pos) / min ||
        (type == TW_GGUF_TYPE_ARRAY && count > UINT32_MAX - g->nodes.len))
        return tw_error_set(TW_EFORMAT,
                            "an array of %" PRIu64 " %s values at offset %" PRIu64
                            " runs past the end of the file (%zu bytes)",
                            count, value_type_names[type], *pos, g->size);
    struct node n = { .type = type, .count = count, .off = *pos };
    if (value_type_size[type]) {
        if (type == TW_GGUF_TYPE_BOOL && (rc = check_bools(g, *pos, count)))
            return rc;
        *pos += count * value_type_size[type];
    } else if (type == TW_GGUF_TYPE_STRING) {
        struct strref *s;
        n.first = g->strs.len;
        // (no grow for an empty array: tw_vec_grow of 0 on an empty tw_vec computes NULL + 0)
        if (count > 0 && tw_vec_grow(&g->strs, (size_t)count, (void **)&s))
            return tw_error_set(TW_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < count; i++) {
            struct strref r;
            if ((rc = read_string(g, pos, "a string in an array", &r.off, &r.len)))
                return rc;
            TW_VEC_AT(&g->strs, struct strref, n.first + i) = r;
        }
    } else {
        struct node *kids;
        n.first = g->nodes.len;
        if (count > 0 && tw_vec_grow(&g->nodes, (size_t)count, (void **)&kids))
            return tw_error_set(TW_ENOMEM, "out of memory");
        for (uint64_t i = 0; i < count; i++)
            if ((rc = parse_array(g, pos, n.first + i, depth + 1)))
                return rc;
    }
    TW_VEC_AT(&g->nodes, struct node, idx) = n;
    return 0;
}

static int parse_kv(tw_gguf *g, uint64_t *pos, size_t i)
{
    struct kv *kv = &g->kvs[i];
    void *slot;
    int rc = read_name(g, pos, "the key", &kv->key);
    if (rc)
        return tw_error_prefix("key %zu", i);
    if (tw_map_get_str(&g->key_index, kv->key, strlen(kv->key), NULL))
        return tw_error_set(TW_EFORMAT, "key %zu \"%s\": a second value for this key", i, kv->key);
    rc = read_u32(g, pos, "the value type", &kv->type);
    if (!rc && kv->type >= N_VALUE_TYPES)
        rc = tw_error_set(TW_EFORMAT, "unknown value type %" PRIu32, kv->type);
    if (!rc && value_type_size[kv->type]) {
        kv->off = *pos;
        rc = need(g, *pos, value_type_size[kv->type], "the value");
        if (!rc && kv->type == TW_GGUF_TYPE_BOOL)
            rc = check_bools(g, *pos, 1);
        *pos += value_type_size[kv->type];
    } else if (!rc && kv->type == TW_GGUF_TYPE_STRING) {
        rc = read_string(g, pos, "the string", &kv->off, &kv->len);
    } else if (!rc) {
        kv->node = (uint32_t)g->nodes.len; // arrays in the file: at most UINT32_MAX
        if (g->nodes.len >= UINT32_MAX)
            rc = tw_error_set(TW_ELIMIT, "more than %" PRIu32 " arrays", UINT32_MAX);
        else if (tw_vec_grow(&g->nodes, 1, &slot))
            rc = tw_error_set(TW_ENOMEM, "out of memory");
        else
            rc = parse_array(g, pos, kv->node, 1);
    }
    if (!rc && tw_map_put_str(&g->key_index, kv->key, strlen(kv->key), i))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (rc)
        return tw_error_prefix("key %zu \"%s\"", i, kv->key);
    return 0;
}

static int parse_tensor_info(tw_gguf *g, uint64_t *pos, size_t i)
{
    struct tw_gguf_tensor *t = &g->tensors[i];
    int rc = read_name(g, pos, "the name", &t->name);
    if (rc)
        return tw_error_prefix("tensor %zu", i);
    if (tw_map_get_str(&g->name_index, t->name, strlen(t->name), NULL))
        return tw_error_set(TW_EFORMAT, "tensor %zu \"%s\": a second tensor of this name", i,
                            t->name);
    uint32_t type = 0;
    uint64_t off = 0;
    rc = read_u32(g, pos, "the number of dimensions", &t->n_dims);
    if (!rc && t->n_dims > TW_GGUF_MAX_DIMS)
        rc = tw_error_set(TW_EFORMAT, "%" PRIu32 " dimensions (at most %d)", t->n_dims,
                          TW_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < TW_GGUF_MAX_DIMS; d++)
        t->dims[d] = 1;
    for (uint32_t d = 0; !rc && d < t->n_dims; d++)
        rc = read_uint(g, pos, 8, "a dimension", &t->dims[d]);
    if (!rc)
        rc = read_u32(g, pos, "the type", &type);
    if (!rc)
        rc = read_uint(g, pos, 8, "the offset", &off);
    if (!rc && (rc = tw_ggml_tensor_size(type, t->dims, t->n_dims, &t->size)) == TW_EINVAL) {
        char msg[256]; // a shape that contradicts the type is a malformed file here
        snprintf(msg, sizeof msg, "%s", tw_error_msg());
        rc = tw_error_set(TW_EFORMAT, "%s", msg);
    }
    if (!rc && off % g->alignment != 0)
        rc = tw_error_set(TW_EFORMAT,
                          "offset %" PRIu64 " is not a multiple of the alignment %" PRIu32, off,
                          g->alignment);
    if (!rc && tw_map_put_str(&g->name_index, t->name, strlen(t->name), i))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (rc)
        return tw_error_prefix("tensor %zu \"%s\"", i, t->name);
    t->type = (enum tw_ggml_type)type;
    t->offset = off;
    return 0;
}

static int parse_alignment(tw_gguf *g)
{
    g->alignment = TW_GGUF_DEFAULT_ALIGNMENT;
    uint64_t i;
    if (!tw_map_get_str(&g->key_index, "general.alignment", strlen("general.alignment"), &i))
        return 0;
    const struct kv *kv = &g->kvs[i];
    if (kv->type != TW_GGUF_TYPE_U32)
        return tw_error_set(TW_EFORMAT, "key \"general.alignment\": expected u32, found %s",
                            value_type_names[kv->type]);
    uint32_t a = (uint32_t)load_le(g->base + kv->off, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return tw_error_set(TW_EFORMAT,
                            "key \"general.alignment\": %" PRIu32 " is not a power of two", a);
    g->alignment = a;
    return 0;
}

// The tensors' data: the section starts at the first multiple of the alignment after the
// infos, and every tensor must lie inside the file.
static int place_data(tw_gguf *g, uint64_t pos)
{
    uint64_t a = g->alignment, pad = (a - pos % a) % a;
    g->data_off = pos + pad; // pos <= size, so this cannot overflow
    if (g->n_tensors == 0)
        return 0;
    if (g->data_off > g->size)
        return tw_error_set(TW_EFORMAT,
                            "the data section (offset %" PRIu64
                            ") starts past the end of the file (%zu bytes)",
                            g->data_off, g->size);
    uint64_t avail = g->size - g->data_off;
    for (size_t i = 0; i < g->n_tensors; i++) {
        struct tw_gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->size > avail - t->offset)
            return tw_error_set(TW_EFORMAT,
                                "tensor %zu \"%s\": data (offset %" PRIu64 ", %zu bytes) run "
                                "past the end of the file (data section at %" PRIu64
                                ", file %zu bytes)",
                                i, t->name, t->offset, t->size, g->data_off, g->size);
        t->data = g->base + g->data_off + t->offset;
    }
    return 0;
}

static int parse(tw_gguf *g)
{
    uint64_t pos = 0, n_tensors, n_kv;
    int rc = need(g, 0, 4, "the magic");
    if (rc)
        return rc;
    if (memcmp(g->base, GGUF_MAGIC, 4) != 0)
        return tw_error_set(TW_EFORMAT, "not a GGUF file (the magic is not \"GGUF\")");
    pos = 4;
    if ((rc = read_u32(g, &pos, "the version", &g->version)))
        return rc;
    if (g->version != 2 && g->version != 3)
        return tw_error_set(TW_EUNSUPPORTED,
                            "GGUF version %" PRIu32 " is not supported (2 and 3 are)%s",
                            g->version, (g->version & 0xffff) == 0 ? " (a big-endian file?)" : "");
    if ((rc = read_uint(g, &pos, 8, "the tensor count", &n_tensors)) ||
        (rc = read_uint(g, &pos, 8, "the key/value count", &n_kv)))
        return rc;
    // Each key/value takes at least 13 bytes and each tensor info at least 24: counts that
    // cannot fit are refused before anything is allocated for them.
    uint64_t rest = g->size - pos;
    if (n_kv > rest / 13 || n_tensors > (rest - n_kv * 13) / 24)
        return tw_error_set(TW_EFORMAT,
                            "%" PRIu64 " keys and %" PRIu64
                            " tensors cannot fit in the file (%zu bytes)",
                            n_kv, n_tensors, g->size);
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
    g->kvs = tw_calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kvs);
    g->tensors = tw_calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kvs || !g->tensors)
        return tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(g, &pos, i)))
            return rc;
    if ((rc = parse_alignment(g)))
        return rc;
    for (size_t i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor_info(g, &pos, i)))
            return rc;
    return place_data(g, pos);
}

static int open_common(tw_gguf *g, const char *what, tw_gguf **out)
{
    tw_vec_init(&g->nodes, sizeof(struct node));
    tw_vec_init(&g->strs, sizeof(struct strref));
    tw_map_init(&g->key_index, TW_MAP_STR);
    tw_map_init(&g->name_index, TW_MAP_STR);
    tw_arena_init(&g->names, 0);
    g->alignment = TW_GGUF_DEFAULT_ALIGNMENT;
    int rc = (g->path = tw_strdup(what)) ? parse(g) : tw_error_set(TW_ENOMEM, "out of memory");
    if (rc) {
        tw_error_prefix("%s", what);
        tw_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int tw_gguf_open(const char *path, tw_gguf **out)
{
    tw_gguf *g = tw_calloc(1, sizeof *g);
    if (!g)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    int rc = tw_mmap_open(&g->map, path);
    if (rc) {
        tw_free(g);
        return rc;
    }
    g->base = g->map.data;
    g->size = g->map.len;
    return open_common(g, path, out);
}

int tw_gguf_open_buffer(const char *what, const void *data, size_t len, tw_gguf **out)
{
    tw_gguf *g = tw_calloc(1, sizeof *g);
    if (!g)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", what);
    g->base = data;
    g->size = data ? len : 0;
    return open_common(g, what, out);
}

void tw_gguf_close(tw_gguf *g)
{
    if (!g)
        return;
    tw_mmap_close(&g->map);
    tw_free(g->path);
    tw_free(g->kvs);
    tw_free(g->tensors);
    tw_vec_free(&g->nodes);
    tw_vec_free(&g->strs);
    tw_map_free(&g->key_index);
    tw_map_free(&g->name_index);
    tw_arena_free(&g->names);
    tw_free(g);
}

// ---- reading: accessors

uint32_t tw_gguf_version(const tw_gguf *g)
{
    return g->version;
}

uint32_t tw_gguf_alignment(const tw_gguf *g)
{
    return g->alignment;
}

uint64_t tw_gguf_data_offset(const tw_gguf *g)
{
    return g->data_off;
}

const char *tw_gguf_path(const tw_gguf *g)
{
    return g->path;
}

size_t tw_gguf_key_count(const tw_gguf *g)
{
    return g->n_kv;
}

const char *tw_gguf_key_name(const tw_gguf *g, size_t i)
{
    return i < g->n_kv ? g->kvs[i].key : NULL;
}

enum tw_gguf_type tw_gguf_key_type(const tw_gguf *g, size_t i)
{
    return i < g->n_kv ? (enum tw_gguf_type)g->kvs[i].type : TW_GGUF_TYPE_U8;
}

int64_t tw_gguf_find_key(const tw_gguf *g, const char *key)
{
    uint64_t i;
    return tw_map_get_str(&g->key_index, key, strlen(key), &i) ? (int64_t)i : -1;
}

// The key/value of key; with want_type >= 0, it must have that type.
static int lookup(const tw_gguf *g, const char *key, int want_type, const struct kv **out)
{
    uint64_t i;
    if (!tw_map_get_str(&g->key_index, key, strlen(key), &i))
        return tw_error_set(TW_ENOENT, "%s: key \"%s\" is missing", g->path, key);
    const struct kv *kv = &g->kvs[i];
    if (want_type >= 0 && kv->type != (uint32_t)want_type)
        return tw_error_set(TW_EFORMAT, "%s: key \"%s\": expected %s, found %s", g->path, key,
                            value_type_names[want_type], value_type_names[kv->type]);
    *out = kv;
    return 0;
}

#define INT_TYPES                                                               \
    (1u << TW_GGUF_TYPE_U8 | 1u << TW_GGUF_TYPE_I8 | 1u << TW_GGUF_TYPE_U16 |   \
     1u << TW_GGUF_TYPE_I16 | 1u << TW_GGUF_TYPE_U32 | 1u << TW_GGUF_TYPE_I32 | \
     1u << TW_GGUF_TYPE_U64 | 1u << TW_GGUF_TYPE_I64)

// A fixed-size integer value at p of the given type as int64_t.
static int int_value(uint32_t type, const uint8_t *p, int64_t *out)
{
    uint64_t u = load_le(p, value_type_size[type]);
    switch (type) {
    case TW_GGUF_TYPE_U8:
    case TW_GGUF_TYPE_U16:
    case TW_GGUF_TYPE_U32:
        *out = (int64_t)u;
        return 0;
    case TW_GGUF_TYPE_I8:
        *out = (int8_t)(uint8_t)u;
        return 0;
    case TW_GGUF_TYPE_I16:
        *out = (int16_t)(uint16_t)u;
        return 0;
    case TW_GGUF_TYPE_I32:
        *out = (int32_t)(uint32_t)u;
        return 0;
    case TW_GGUF_TYPE_I64:
        *out = (int64_t)u;
        return 0;
    case TW_GGUF_TYPE_U64:
        if (u > INT64_MAX)
            return tw_error_set(TW_EOVERFLOW, "%" PRIu64 " does not fit in int64", u);
        *out = (int64_t)u;
        return 0;
    default:
        return tw_error_set(TW_EFORMAT, "expected an integer, found %s", value_type_names[type]);
    }
}

static float f32_value(const uint8_t *p)
{
    uint32_t bits = (uint32_t)load_le(p, 4);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static double f64_value(const uint8_t *p)
{
    uint64_t bits = load_le(p, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

int tw_gguf_get_u32(const tw_gguf *g, const char *key, uint32_t *out)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, TW_GGUF_TYPE_U32, &kv);
    if (!rc)
        *out = (uint32_t)load_le(g->base + kv->off, 4);
    return rc;
}

int tw_gguf_get_u64(const tw_gguf *g, const char *key, uint64_t *out)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, TW_GGUF_TYPE_U64, &kv);
    if (!rc)
        *out = load_le(g->base + kv->off, 8);
    return rc;
}

int tw_gguf_get_i64(const tw_gguf *g, const char *key, int64_t *out)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, TW_GGUF_TYPE_I64, &kv);
    if (!rc)
        *out = (int64_t)load_le(g->base + kv->off, 8);
    return rc;
}

int tw_gguf_get_f32(const tw_gguf *g, const char *key, float *out)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, TW_GGUF_TYPE_F32, &kv);
    if (!rc)
        *out = f32_value(g->base + kv->off);
    return rc;
}

int tw_gguf_get_bool(const tw_gguf *g, const char *key, bool *out)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, TW_GGUF_TYPE_BOOL, &kv);
    if (!rc)
        *out = g->base[kv->off] != 0;
    return rc;
}

int tw_gguf_get_str(const tw_gguf *g, const char *key, const char **s, size_t *len)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, TW_GGUF_TYPE_STRING, &kv);
    if (!rc) {
        *s = (const char *)g->base + kv->off;
        *len = (size_t)kv->len;
    }
    return rc;
}

static void arr_view(const tw_gguf *g, size_t node, struct tw_gguf_arr *out)
{
    const struct node *n = &TW_VEC_AT(&g->nodes, struct node, node);
    out->type = (enum tw_gguf_type)n->type;
    out->count = n->count;
    out->data = value_type_size[n->type] ? g->base + n->off : NULL;
    out->node = (uint32_t)node;
}

int tw_gguf_get_arr(const tw_gguf *g, const char *key, struct tw_gguf_arr *out)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, TW_GGUF_TYPE_ARRAY, &kv);
    if (!rc)
        arr_view(g, kv->node, out);
    return rc;
}

int tw_gguf_get_int(const tw_gguf *g, const char *key, int64_t *out)
{
    const struct kv *kv = NULL;
    int rc = lookup(g, key, -1, &kv);
    if (rc)
        return rc;
    if (!(INT_TYPES >> kv->type & 1))
        return tw_error_set(TW_EFORMAT, "%s: key \"%s\": expected an integer, found %s", g->path,
                            key, value_type_names[kv->type]);
    if ((rc = int_value(kv->type, g->base + kv->off, out)))
        return tw_error_prefix("%s: key \"%s\"", g->path, key);
    return 0;
}

// Element i of a: checks the index and that the element type is one of `types` (a bit mask).
static int arr_elem(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, unsigned types,
                    const char *want, const struct node **out)
{
    if (a->node >= g->nodes.len)
        return tw_error_set(TW_EINVAL, "%s: not an array of this file", g->path);
    const struct node *n = &TW_VEC_AT(&g->nodes, struct node, a->node);
    if (i >= n->count)
        return tw_error_set(TW_EINVAL, "%s: index %" PRIu64 " of an array of %" PRIu64, g->path, i,
                            n->count);
    if (!(types >> n->type & 1))
        return tw_error_set(TW_EFORMAT, "%s: expected an array of %s, found one of %s", g->path,
                            want, value_type_names[n->type]);
    *out = n;
    return 0;
}

int tw_gguf_arr_get_int(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, int64_t *out)
{
    const struct node *n = NULL;
    int rc = arr_elem(g, a, i, INT_TYPES, "integers", &n);
    if (!rc && (rc = int_value(n->type, g->base + n->off + i * value_type_size[n->type], out)))
        tw_error_prefix("%s: element %" PRIu64, g->path, i);
    return rc;
}

int tw_gguf_arr_get_float(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, double *out)
{
    const struct node *n = NULL;
    int rc = arr_elem(g, a, i, 1u << TW_GGUF_TYPE_F32 | 1u << TW_GGUF_TYPE_F64, "floats", &n);
    if (!rc) {
        const uint8_t *p = g->base + n->off + i * value_type_size[n->type];
        *out = n->type == TW_GGUF_TYPE_F32 ? f32_value(p) : f64_value(p);
    }
    return rc;
}

int tw_gguf_arr_get_bool(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, bool *out)
{
    const struct node *n = NULL;
    int rc = arr_elem(g, a, i, 1u << TW_GGUF_TYPE_BOOL, "bool", &n);
    if (!rc)
        *out = g->base[n->off + i] != 0;
    return rc;
}

int tw_gguf_arr_get_str(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i, const char **s,
                        size_t *len)
{
    const struct node *n = NULL;
    int rc = arr_elem(g, a, i, 1u << TW_GGUF_TYPE_STRING, "string", &n);
    if (!rc) {
        const struct strref *r = &TW_VEC_AT(&g->strs, struct strref, n->first + (size_t)i);
        *s = (const char *)g->base + r->off;
        *len = (size_t)r->len;
    }
    return rc;
}

int tw_gguf_arr_get_arr(const tw_gguf *g, const struct tw_gguf_arr *a, uint64_t i,
                        struct tw_gguf_arr *out)
{
    const struct node *n = NULL;
    int rc = arr_elem(g, a, i, 1u << TW_GGUF_TYPE_ARRAY, "array", &n);
    if (!rc)
        arr_view(g, n->first + (size_t)i, out);
    return rc;
}

size_t tw_gguf_tensor_count(const tw_gguf *g)
{
    return g->n_tensors;
}

const struct tw_gguf_tensor *tw_gguf_tensor_at(const tw_gguf *g, size_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct tw_gguf_tensor *tw_gguf_find_tensor(const tw_gguf *g, const char *name)
{
    uint64_t i;
    return tw_map_get_str(&g->name_index, name, strlen(name), &i) ? &g->tensors[i] : NULL;
}

int tw_gguf_get_tensor(const tw_gguf *g, const char *name, const struct tw_gguf_tensor **out)
{
    const struct tw_gguf_tensor *t = tw_gguf_find_tensor(g, name);
    if (!t)
        return tw_error_set(TW_ENOENT, "%s: tensor \"%s\" is missing", g->path, name);
    *out = t;
    return 0;
}

// ---- the tokenizer vocabulary

// An optional string value copied into the arena (NULL when absent).
static int vocab_str(const tw_gguf *g, const char *key, tw_arena *a, const char **out)
{
    const char *s;
    size_t len;
    if (tw_gguf_find_key(g, key) < 0)
        return 0;
    int rc = tw_gguf_get_str(g, key, &s, &len);
    if (!rc && !(*out = tw_arena_strndup(a, s, len)))
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", g->path);
    return rc;
}

// An array of strings copied into the arena as NUL-terminated strings (none holds a NUL).
static int vocab_strings(const tw_gguf *g, const char *key, tw_arena *a, size_t *n,
                         const char *const **out)
{
    struct tw_gguf_arr arr;
    int rc = tw_gguf_get_arr(g, key, &arr);
    if (!rc && arr.type != TW_GGUF_TYPE_STRING)
        rc = tw_error_set(TW_EFORMAT,
                          "%s: key \"%s\": expected an array of string, found one "
                          "of %s",
                          g->path, key, value_type_names[arr.type]);
    if (rc)
        return rc;
    const char **v = tw_arena_alloc_array(a, (size_t)arr.count, sizeof *v, _Alignof(char *));
    if (!v)
        return tw_error_prefix("%s: %s", g->path, key);
    for (uint64_t i = 0; i < arr.count; i++) {
        const char *s;
        size_t len;
        if ((rc = tw_gguf_arr_get_str(g, &arr, i, &s, &len)))
            return rc;
        if (memchr(s, 0, len))
            return tw_error_set(TW_EFORMAT, "%s: %s[%" PRIu64 "]: holds a NUL byte", g->path, key,
                                i);
        if (!(v[i] = tw_arena_strndup(a, s, len)))
            return tw_error_prefix("%s: %s", g->path, key);
    }
    *n = (size_t)arr.count;
    *out = v;
    return 0;
}

// An optional per-token array (scores or token types): one element per token, of one of
// the element types in the mask `types`.
static int vocab_per_token(const tw_gguf *g, const char *key, size_t n_tokens, unsigned types,
                           const char *want, struct tw_gguf_arr *arr, bool *present)
{
    *present = false;
    if (tw_gguf_find_key(g, key) < 0)
        return 0;
    int rc = tw_gguf_get_arr(g, key, arr);
    if (!rc && !(types >> arr->type & 1))
        rc = tw_error_set(TW_EFORMAT, "%s: key \"%s\": expected an array of %s, found one of %s",
                          g->path, key, want, value_type_names[arr->type]);
    if (!rc && arr->count != n_tokens)
        rc = tw_error_set(TW_EFORMAT, "%s: %s: %" PRIu64 " entries for %zu tokens", g->path, key,
                          arr->count, n_tokens);
    *present = rc == 0;
    return rc;
}

static int vocab_scores(const tw_gguf *g, tw_arena *a, struct tw_tokenizer_vocab *v)
{
    static const char key[] = "tokenizer.ggml.scores";
    struct tw_gguf_arr arr;
    bool present;
    int rc = vocab_per_token(g, key, v->n_tokens, 1u << TW_GGUF_TYPE_F32 | 1u << TW_GGUF_TYPE_F64,
                             "floats", &arr, &present);
    if (rc || !present)
        return rc;
    float *s = tw_arena_alloc_array(a, v->n_tokens, sizeof *s, _Alignof(float));
    if (!s)
        return tw_error_prefix("%s: %s", g->path, key);
    for (size_t i = 0; i < v->n_tokens; i++) {
        double d = 0;
        tw_gguf_arr_get_float(g, &arr, i, &d); // the type and count are checked
        s[i] = (float)d;
    }
    v->scores = s;
    return 0;
}

static int vocab_types(const tw_gguf *g, tw_arena *a, struct tw_tokenizer_vocab *v)
{
    static const char key[] = "tokenizer.ggml.token_type";
    struct tw_gguf_arr arr;
    bool present;
    int rc = vocab_per_token(g, key, v->n_tokens, INT_TYPES, "integers", &arr, &present);
    if (rc || !present)
        return rc;
    int32_t *t = tw_arena_alloc_array(a, v->n_tokens, sizeof *t, _Alignof(int32_t));
    if (!t)
        return tw_error_prefix("%s: %s", g->path, key);
    for (size_t i = 0; i < v->n_tokens; i++) {
        int64_t x = 0;
        if (tw_gguf_arr_get_int(g, &arr, i, &x) || x < INT32_MIN || x > INT32_MAX)
            return tw_error_set(TW_EFORMAT, "%s: %s[%zu]: outside the range of a token type",
                                g->path, key, i);
        t[i] = (int32_t)x;
    }
    v->types = t;
    return 0;
}

// A special token id: -1 when absent or not an id of the vocabulary.
static int vocab_id(const tw_gguf *g, const char *key, size_t n_tokens, int32_t *out)
{
    int64_t x;
    *out = -1;
    if (tw_gguf_find_key(g, key) < 0)
        return 0;
    int rc = tw_gguf_get_int(g, key, &x);
    if (!rc && x >= 0 && (uint64_t)x < n_tokens && x <= INT32_MAX)
        *out = (int32_t)x;
    return rc;
}

static int vocab_bool(const tw_gguf *g, const char *key, bool def, bool *out)
{
    *out = def;
    return tw_gguf_find_key(g, key) < 0 ? 0 : tw_gguf_get_bool(g, key, out);
}

static int fill_vocab(const tw_gguf *g, tw_arena *a, struct tw_tokenizer_vocab *v)
{
    if (tw_gguf_find_key(g, "tokenizer.ggml.model") < 0)
        return tw_error_set(TW_ENOENT, "%s: key \"tokenizer.ggml.model\" is missing", g->path);
    int rc = vocab_str(g, "tokenizer.ggml.model", a, &v->model);
    if (!rc)
        rc = vocab_str(g, "tokenizer.ggml.pre", a, &v->pre);
    if (!rc)
        rc = vocab_strings(g, "tokenizer.ggml.tokens", a, &v->n_tokens, &v->tokens);
    if (!rc && v->n_tokens > INT32_MAX)
        rc = tw_error_set(TW_ELIMIT, "%s: tokenizer.ggml.tokens: %zu tokens (at most %d)", g->path,
                          v->n_tokens, INT32_MAX);
    if (!rc)
        rc = vocab_scores(g, a, v);
    if (!rc)
        rc = vocab_types(g, a, v);
    if (!rc && tw_gguf_find_key(g, "tokenizer.ggml.merges") >= 0)
        rc = vocab_strings(g, "tokenizer.ggml.merges", a, &v->n_merges, &v->merges);
    static const struct {
        const char *key;
        size_t field;
    } ids[] = {
        { "tokenizer.ggml.bos_token_id", offsetof(struct tw_tokenizer_vocab, bos) },
        { "tokenizer.ggml.eos_token_id", offsetof(struct tw_tokenizer_vocab, eos) },
        { "tokenizer.ggml.unknown_token_id", offsetof(struct tw_tokenizer_vocab, unk) },
        { "tokenizer.ggml.padding_token_id", offsetof(struct tw_tokenizer_vocab, pad) },
        { "tokenizer.ggml.cls_token_id", offsetof(struct tw_tokenizer_vocab, cls) },
        // llama.cpp's spelling of the key
        { "tokenizer.ggml.seperator_token_id", offsetof(struct tw_tokenizer_vocab, sep) },
    };
    for (size_t i = 0; !rc && i < sizeof ids / sizeof ids[0]; i++)
        rc = vocab_id(g, ids[i].key, v->n_tokens, (int32_t *)((char *)v + ids[i].field));
    bool spm = strcmp(v->model ? v->model : "", "llama") == 0;
    if (!rc)
        rc = vocab_bool(g, "tokenizer.ggml.add_bos_token", spm, &v->add_bos);
    if (!rc)
        rc = vocab_bool(g, "tokenizer.ggml.add_space_prefix", spm, &v->add_space_prefix);
    if (!rc)
        rc = vocab_str(g, "tokenizer.chat_template", a, &v->chat_template);
    return rc;
}

int tw_gguf_tokenizer_vocab(const tw_gguf *g, struct tw_tokenizer_vocab *v, tw_arena *arena)
{
    struct tw_arena_mark mark = tw_arena_mark(arena);
    struct tw_tokenizer_vocab r;
    memset(&r, 0, sizeof r);
    int rc = fill_vocab(g, arena, &r);
    if (rc) {
        tw_arena_rewind(arena, mark);
        return rc;
    }
    *v = r;
    return 0;
}

// ---- writing

struct tw_gguf_wtensor {
    char *name;
    uint32_t n_dims, type;
    uint64_t dims[TW_GGUF_MAX_DIMS];
    const void *data;
    size_t size;
};

void tw_gguf_writer_init(tw_gguf_writer *w)
{
    memset(w, 0, sizeof *w);
    tw_str_init(&w->meta);
    tw_vec_init(&w->tensors, sizeof(struct tw_gguf_wtensor));
    tw_map_init(&w->keys, TW_MAP_STR);
    tw_map_init(&w->names, TW_MAP_STR);
    w->alignment = TW_GGUF_DEFAULT_ALIGNMENT;
}

void tw_gguf_writer_free(tw_gguf_writer *w)
{
    for (size_t i = 0; i < w->tensors.len; i++)
        tw_free(TW_VEC_AT(&w->tensors, struct tw_gguf_wtensor, i).name);
    tw_str_free(&w->meta);
    tw_vec_free(&w->tensors);
    tw_map_free(&w->keys);
    tw_map_free(&w->names);
    tw_gguf_writer_init(w);
}

static int put_le(tw_str *s, uint64_t v, unsigned n)
{
    uint8_t b[8];
    for (unsigned i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    return tw_str_append(s, b, n);
}

static int put_string(tw_str *s, const char *p, size_t len)
{
    return put_le(s, len, 8) || tw_str_append(s, p, len) ? TW_ENOMEM : 0;
}

// The bits of the C value at p of a fixed-size type, as the file stores them.
static int scalar_bits(enum tw_gguf_type type, const void *p, uint64_t *out)
{
    switch (type) {
    case TW_GGUF_TYPE_U8:
    case TW_GGUF_TYPE_I8:
        *out = *(const uint8_t *)p;
        return 0;
    case TW_GGUF_TYPE_U16:
    case TW_GGUF_TYPE_I16:
        *out = *(const uint16_t *)p;
        return 0;
    case TW_GGUF_TYPE_U32:
    case TW_GGUF_TYPE_I32:
        *out = *(const uint32_t *)p;
        return 0;
    case TW_GGUF_TYPE_F32: {
        uint32_t b;
        memcpy(&b, p, 4);
        *out = b;
        return 0;
    }
    case TW_GGUF_TYPE_BOOL:
        *out = *(const bool *)p ? 1 : 0;
        return 0;
    case TW_GGUF_TYPE_U64:
    case TW_GGUF_TYPE_I64:
    case TW_GGUF_TYPE_F64:
        memcpy(out, p, 8);
        return 0;
    default:
        return TW_EINVAL;
    }
}

// C sizes of the element types in struct tw_gguf_warr's elems.
static size_t c_size(enum tw_gguf_type type)
{
    switch (type) {
    case TW_GGUF_TYPE_BOOL:
        return sizeof(bool);
    case TW_GGUF_TYPE_STRING:
        return sizeof(const char *);
    case TW_GGUF_TYPE_ARRAY:
        return sizeof(struct tw_gguf_warr);
    default:
        return value_type_size[type];
    }
}

static int put_array(tw_str *s, const struct tw_gguf_warr *a, int depth)
{
    if (depth > TW_GGUF_MAX_NESTING)
        return tw_error_set(TW_EINVAL, "arrays nested deeper than %d levels", TW_GGUF_MAX_NESTING);
    if ((unsigned)a->type >= N_VALUE_TYPES)
        return tw_error_set(TW_EINVAL, "unknown array element type %d", (int)a->type);
    if (a->count > 0 && !a->elems)
        return tw_error_set(TW_EINVAL, "an array of %zu elements without elements", a->count);
    if (put_le(s, a->type, 4) || put_le(s, a->count, 8))
        return tw_error_set(TW_ENOMEM, "out of memory");
    size_t esz = c_size(a->type);
    for (size_t i = 0; i < a->count; i++) {
        const void *e = (const char *)a->elems + i * esz;
        int rc = 0;
        if (a->type == TW_GGUF_TYPE_STRING) {
            const char *str = *(const char *const *)e;
            if (!str)
                return tw_error_set(TW_EINVAL, "string %zu of an array is NULL", i);
            rc = put_string(s, str, strlen(str));
        } else if (a->type == TW_GGUF_TYPE_ARRAY) {
            if ((rc = put_array(s, e, depth + 1)))
                return tw_error_prefix("element %zu", i);
        } else {
            uint64_t bits = 0;
            scalar_bits(a->type, e, &bits);
            rc = put_le(s, bits, value_type_size[a->type]);
        }
        if (rc)
            return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

// Adds a key whose value the caller appends to w->meta through fn; undoes it all on failure.
static int add_key(tw_gguf_writer *w, const char *key, enum tw_gguf_type type,
                   int (*fn)(tw_str *s, const void *ctx), const void *ctx)
{
    if (!key)
        return tw_error_set(TW_EINVAL, "a key must not be NULL");
    size_t klen = strlen(key), mark = tw_str_len(&w->meta);
    if (tw_map_get_str(&w->keys, key, klen, NULL))
        return tw_error_set(TW_EEXIST, "key \"%s\": added twice", key);
    int rc = put_string(&w->meta, key, klen) || put_le(&w->meta, type, 4)
                 ? tw_error_set(TW_ENOMEM, "out of memory")
                 : 0;
    if (!rc && (rc = fn(&w->meta, ctx)))
        tw_error_prefix("key \"%s\"", key);
    if (!rc && tw_map_put_str(&w->keys, key, klen, 1))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (rc) {
        tw_str_truncate(&w->meta, mark);
        return rc;
    }
    w->n_kv++;
    return 0;
}

struct scalar_ctx {
    enum tw_gguf_type type;
    const void *val;
};

static int put_scalar(tw_str *s, const void *ctx)
{
    const struct scalar_ctx *c = ctx;
    uint64_t bits = 0;
    if ((unsigned)c->type >= N_VALUE_TYPES || !value_type_size[c->type])
        return tw_error_set(TW_EINVAL, "type %d is not a scalar type", (int)c->type);
    if (!c->val)
        return tw_error_set(TW_EINVAL, "no value");
    scalar_bits(c->type, c->val, &bits);
    return put_le(s, bits, value_type_size[c->type]) ? tw_error_set(TW_ENOMEM, "out of memory")
                                                     : 0;
}

int tw_gguf_writer_add_kv(tw_gguf_writer *w, const char *key, enum tw_gguf_type type,
                          const void *val)
{
    uint32_t align = 0;
    if (key && strcmp(key, "general.alignment") == 0) {
        if (type != TW_GGUF_TYPE_U32 || !val)
            return tw_error_set(TW_EINVAL, "key \"general.alignment\": must be a u32");
        align = *(const uint32_t *)val;
        if (align == 0 || (align & (align - 1)) != 0)
            return tw_error_set(
                TW_EINVAL, "key \"general.alignment\": %" PRIu32 " is not a power of two", align);
    }
    struct scalar_ctx c = { type, val };
    int rc = add_key(w, key, type, put_scalar, &c);
    if (!rc && align)
        w->alignment = align;
    return rc;
}

int tw_gguf_writer_add_u32(tw_gguf_writer *w, const char *key, uint32_t val)
{
    return tw_gguf_writer_add_kv(w, key, TW_GGUF_TYPE_U32, &val);
}

struct str_ctx {
    const char *s;
    size_t len;
};

static int put_str_ctx(tw_str *s, const void *ctx)
{
    const struct str_ctx *c = ctx;
    if (!c->s && c->len)
        return tw_error_set(TW_EINVAL, "no string");
    return put_string(s, c->s ? c->s : "", c->len) ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
}

int tw_gguf_writer_add_str(tw_gguf_writer *w, const char *key, const char *s, size_t len)
{
    if (key && strcmp(key, "general.alignment") == 0)
        return tw_error_set(TW_EINVAL, "key \"general.alignment\": must be a u32");
    struct str_ctx c = { s, len };
    return add_key(w, key, TW_GGUF_TYPE_STRING, put_str_ctx, &c);
}

static int put_arr_ctx(tw_str *s, const void *ctx)
{
    return put_array(s, ctx, 1);
}

int tw_gguf_writer_add_arr(tw_gguf_writer *w, const char *key, const struct tw_gguf_warr *a)
{
    if (key && strcmp(key, "general.alignment") == 0)
        return tw_error_set(TW_EINVAL, "key \"general.alignment\": must be a u32");
    if (!a)
        return tw_error_set(TW_EINVAL, "key \"%s\": no array", key ? key : "(null)");
    return add_key(w, key, TW_GGUF_TYPE_ARRAY, put_arr_ctx, a);
}

int tw_gguf_writer_add_tensor(tw_gguf_writer *w, const char *name, enum tw_ggml_type type,
                              const uint64_t *dims, uint32_t n_dims, const void *data, size_t size)
{
    if (!name)
        return tw_error_set(TW_EINVAL, "a tensor name must not be NULL");
    size_t want;
    int rc = tw_ggml_tensor_size((uint32_t)type, dims, n_dims, &want);
    if (rc)
        return tw_error_prefix("tensor \"%s\"", name);
    if (size != want)
        return tw_error_set(TW_EINVAL, "tensor \"%s\": %zu bytes given, %s needs %zu", name, size,
                            tw_ggml_type_name((uint32_t)type), want);
    if (size > 0 && !data)
        return tw_error_set(TW_EINVAL, "tensor \"%s\": no data", name);
    if (tw_map_get_str(&w->names, name, strlen(name), NULL))
        return tw_error_set(TW_EEXIST, "tensor \"%s\": added twice", name);
    struct tw_gguf_wtensor t = {
        .n_dims = n_dims, .type = (uint32_t)type, .data = data, .size = size
    };
    for (uint32_t d = 0; d < TW_GGUF_MAX_DIMS; d++)
        t.dims[d] = d < n_dims ? dims[d] : 1;
    if (!(t.name = tw_strdup(name)))
        return tw_error_set(TW_ENOMEM, "out of memory");
    if (tw_vec_push(&w->tensors, &t)) {
        tw_free(t.name);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    if (tw_map_put_str(&w->names, name, strlen(name), 1)) {
        tw_vec_pop(&w->tensors, NULL);
        tw_free(t.name);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

// ---- the tokenizer vocabulary, written

// The keys of tw_gguf_tokenizer_vocab, as llama.cpp names them (gguf-py's constants.py,
// Keys.Tokenizer; "seperator" is its spelling). Values go in llama.cpp's types: ids u32,
// scores f32, token types i32.
static int add_tokenizer_keys(tw_gguf_writer *w, const struct tw_tokenizer_vocab *v,
                              const char **added, size_t *n_added)
{
#define ADD(key, call)               \
    do {                             \
        int rc_ = (call);            \
        if (rc_)                     \
            return rc_;              \
        added[(*n_added)++] = (key); \
    } while (0)
    bool llama = strcmp(v->model, "llama") == 0;
    ADD("tokenizer.ggml.model",
        tw_gguf_writer_add_str(w, "tokenizer.ggml.model", v->model, strlen(v->model)));
    if (v->pre)
        ADD("tokenizer.ggml.pre",
            tw_gguf_writer_add_str(w, "tokenizer.ggml.pre", v->pre, strlen(v->pre)));
    struct tw_gguf_warr a = { TW_GGUF_TYPE_STRING, v->tokens, v->n_tokens };
    ADD("tokenizer.ggml.tokens", tw_gguf_writer_add_arr(w, "tokenizer.ggml.tokens", &a));
    if (v->scores) {
        a = (struct tw_gguf_warr){ TW_GGUF_TYPE_F32, v->scores, v->n_tokens };
        ADD("tokenizer.ggml.scores", tw_gguf_writer_add_arr(w, "tokenizer.ggml.scores", &a));
    }
    if (v->types) {
        a = (struct tw_gguf_warr){ TW_GGUF_TYPE_I32, v->types, v->n_tokens };
        ADD("tokenizer.ggml.token_type",
            tw_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", &a));
    }
    if (v->n_merges) {
        a = (struct tw_gguf_warr){ TW_GGUF_TYPE_STRING, v->merges, v->n_merges };
        ADD("tokenizer.ggml.merges", tw_gguf_writer_add_arr(w, "tokenizer.ggml.merges", &a));
    }
    const struct {
        const char *key;
        int32_t id;
    } ids[] = {
        { "tokenizer.ggml.bos_token_id", v->bos },
        { "tokenizer.ggml.eos_token_id", v->eos },
        { "tokenizer.ggml.unknown_token_id", v->unk },
        { "tokenizer.ggml.seperator_token_id", v->sep },
        { "tokenizer.ggml.padding_token_id", v->pad },
        { "tokenizer.ggml.cls_token_id", v->cls },
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= 0)
            ADD(ids[i].key, tw_gguf_writer_add_u32(w, ids[i].key, (uint32_t)ids[i].id));
    ADD("tokenizer.ggml.add_bos_token",
        tw_gguf_writer_add_kv(w, "tokenizer.ggml.add_bos_token", TW_GGUF_TYPE_BOOL, &v->add_bos));
    if (llama)
        ADD("tokenizer.ggml.add_space_prefix",
            tw_gguf_writer_add_kv(w, "tokenizer.ggml.add_space_prefix", TW_GGUF_TYPE_BOOL,
                                  &v->add_space_prefix));
    if (v->chat_template)
        ADD("tokenizer.chat_template",
            tw_gguf_writer_add_str(w, "tokenizer.chat_template", v->chat_template,
                                   strlen(v->chat_template)));
#undef ADD
    return 0;
}

int tw_gguf_writer_add_tokenizer(tw_gguf_writer *w, const struct tw_tokenizer_vocab *v)
{
    if (!v->model)
        return tw_error_set(TW_EINVAL, "tokenizer.ggml.model: no model");
    if ((v->n_tokens && !v->tokens) || (v->n_merges && !v->merges))
        return tw_error_set(TW_EINVAL, "tokenizer.ggml: tokens or merges missing");
    if (v->n_tokens > INT32_MAX)
        return tw_error_set(TW_ELIMIT, "tokenizer.ggml.tokens: %zu tokens (at most %d)",
                            v->n_tokens, INT32_MAX);
    const int32_t ids[] = { v->bos, v->eos, v->unk, v->pad, v->cls, v->sep };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i] >= 0 && (size_t)ids[i] >= v->n_tokens)
            return tw_error_set(TW_EINVAL, "tokenizer.ggml: special id %d is not under %zu tokens",
                                (int)ids[i], v->n_tokens);
    // llama.cpp lower-cases every bert vocabulary and GGUF has no key that says otherwise.
    if (strcmp(v->model, "bert") == 0 && v->cased)
        return tw_error_set(TW_EUNSUPPORTED,
                            "tokenizer.ggml: a cased WordPiece vocabulary cannot be written (GGUF "
                            "has no key for it; readers lower-case bert vocabularies)");
    size_t mark = tw_str_len(&w->meta), n_kv = w->n_kv, n_added = 0;
    const char *added[32];
    int rc = add_tokenizer_keys(w, v, added, &n_added);
    if (rc) { // leave the writer as it was
        for (size_t i = 0; i < n_added; i++)
            tw_map_del_str(&w->keys, added[i], strlen(added[i]));
        tw_str_truncate(&w->meta, mark);
        w->n_kv = n_kv;
    }
    return rc;
}

static uint64_t padding(uint64_t pos, uint64_t align)
{
    return (align - pos % align) % align;
}

// Everything before the data section: header, key/values, tensor infos, padding.
static int build_head(const tw_gguf_writer *w, tw_str *h)
{
    uint64_t off = 0;
    int bad = tw_str_append(h, GGUF_MAGIC, 4) || put_le(h, 3, 4) || put_le(h, w->tensors.len, 8) ||
              put_le(h, w->n_kv, 8) ||
              tw_str_append(h, tw_str_cstr(&w->meta), tw_str_len(&w->meta));
    for (size_t i = 0; !bad && i < w->tensors.len; i++) {
        const struct tw_gguf_wtensor *t = &TW_VEC_AT(&w->tensors, struct tw_gguf_wtensor, i);
        bad = put_string(h, t->name, strlen(t->name)) || put_le(h, t->n_dims, 4);
        for (uint32_t d = 0; !bad && d < t->n_dims; d++)
            bad = put_le(h, t->dims[d], 8);
        bad = bad || put_le(h, t->type, 4) || put_le(h, off, 8);
        off += t->size + padding(t->size, w->alignment);
    }
    for (uint64_t p = padding(tw_str_len(h), w->alignment); !bad && p > 0; p--)
        bad = tw_str_putc(h, 0);
    return bad ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
}

static int fill(struct tw_atomic *a, const tw_gguf_writer *w)
{
    static const char zeros[256];
    tw_str head;
    tw_str_init(&head);
    int rc = build_head(w, &head);
    if (!rc)
        rc = tw_atomic_write(a, tw_str_cstr(&head), tw_str_len(&head));
    tw_str_free(&head);
    for (size_t i = 0; !rc && i < w->tensors.len; i++) {
        const struct tw_gguf_wtensor *t = &TW_VEC_AT(&w->tensors, struct tw_gguf_wtensor, i);
        if (t->size)
            rc = tw_atomic_write(a, t->data, t->size);
        for (uint64_t p = padding(t->size, w->alignment); !rc && p > 0;) {
            size_t k = p < sizeof zeros ? (size_t)p : sizeof zeros;
            rc = tw_atomic_write(a, zeros, k);
            p -= k;
        }
    }
    return rc;
}

int tw_gguf_write(const tw_gguf_writer *w, const char *path)
{
    struct tw_atomic a;
    int rc = tw_atomic_open(&a, path, 0644);
    if (rc)
        return rc;
    rc = fill(&a, w);
    if (rc) {
        tw_atomic_abort(&a);
        return rc;
    }
    return tw_atomic_commit(&a);
}

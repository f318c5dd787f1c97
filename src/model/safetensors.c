// Implements safetensors.h: the reader (mmap, header parsed by jansson, every tensor checked
// against the data's size and the others), the model folder (single file or sharded with an
// index), and the writer (the reference's order and padding, streamed to a temp file that is
// renamed). Format: https://github.com/huggingface/safetensors (README, "Format").
#define _GNU_SOURCE // mkostemp
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "text/utf8.h"

// Names in messages are cut to this many bytes (a name may be megabytes long).
#define NAME_MAX_SHOWN 256

static const struct {
    const char *name;
    uint8_t size;
} dtypes[TW_ST_DTYPE_COUNT] = {
    [TW_ST_DTYPE_BOOL] = { "BOOL", 1 },       [TW_ST_DTYPE_U8] = { "U8", 1 },
    [TW_ST_DTYPE_I8] = { "I8", 1 },           [TW_ST_DTYPE_F8_E5M2] = { "F8_E5M2", 1 },
    [TW_ST_DTYPE_F8_E4M3] = { "F8_E4M3", 1 }, [TW_ST_DTYPE_I16] = { "I16", 2 },
    [TW_ST_DTYPE_U16] = { "U16", 2 },         [TW_ST_DTYPE_F16] = { "F16", 2 },
    [TW_ST_DTYPE_BF16] = { "BF16", 2 },       [TW_ST_DTYPE_I32] = { "I32", 4 },
    [TW_ST_DTYPE_U32] = { "U32", 4 },         [TW_ST_DTYPE_F32] = { "F32", 4 },
    [TW_ST_DTYPE_F64] = { "F64", 8 },         [TW_ST_DTYPE_I64] = { "I64", 8 },
    [TW_ST_DTYPE_U64] = { "U64", 8 },
};

size_t tw_st_dtype_size(int dtype)
{
    return dtype >= 0 && dtype < TW_ST_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

const char *tw_st_dtype_name(int dtype)
{
    return dtype >= 0 && dtype < TW_ST_DTYPE_COUNT ? dtypes[dtype].name : NULL;
}

int tw_st_dtype_from_name(const char *name)
{
    for (int i = 0; i < TW_ST_DTYPE_COUNT; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return i;
    return -1;
}

// Writes "[d0, d1, ...]" into buf (at least 8 * 21 + 3 bytes).
static void format_shape(char *buf, size_t cap, const int64_t *shape, int n_dims)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n_dims && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap)
        snprintf(buf + at, cap - at, "]");
}

// ---- Reading one file ------------------------------------------------------------------------

struct st_entry {
    struct tw_st_tensor t;
    uint64_t begin, end; // data_offsets
    size_t order;        // position in the header (ties in the sort)
};

struct tw_st_file {
    char *path;
    struct tw_mmap map;
    json_t *header;           // owns the names and the metadata strings
    struct st_entry *entries; // count, in data order
    size_t count;
    tw_map by_name;    // name -> index in entries
    const char **meta; // n_meta pairs: key, value
    size_t n_meta;
};

// Records "<path>: tensor "<name>": <message>" with code.
static int tensor_error(int code, const char *path, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int tensor_error(int code, const char *path, const char *name, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return tw_error_set(code, "%s: tensor \"%.*s\": %s", path, NAME_MAX_SHOWN, name, msg);
}

// A non-negative JSON integer, or false.
static bool get_count(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int parse_shape(const char *path, const char *name, const json_t *shape,
                       struct tw_st_tensor *t, uint64_t *n_elems)
{
    if (!json_is_array(shape))
        return tensor_error(TW_EFORMAT, path, name, "\"shape\": expected an array, got %s",
                            tw_json_type_name(shape));
    size_t nd = json_array_size(shape);
    if (nd > TW_ST_MAX_DIMS)
        return tensor_error(TW_EUNSUPPORTED, path, name,
                            "\"shape\" has %zu dimensions; at most %d are supported", nd,
                            TW_ST_MAX_DIMS);
    // The exact product: a zero dimension makes it 0 even where the others overflow.
    uint64_t n = 1;
    bool zero = false, over = false;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        const json_t *v = json_array_get(shape, i);
        if (json_is_integer(v) && json_integer_value(v) < 0)
            return tensor_error(TW_EFORMAT, path, name, "shape[%zu] is negative (%lld)", i,
                                (long long)json_integer_value(v));
        if (!get_count(v, &d))
            return tensor_error(TW_EFORMAT, path, name,
                                "shape[%zu]: expected a non-negative integer, got %s", i,
                                tw_json_type_name(v));
        t->shape[i] = (int64_t)d;
        zero |= d == 0;
        over |= __builtin_mul_overflow(n, d, &n);
    }
    t->n_dims = (int)nd;
    if (zero) {
        n = 0;
    } else if (over) {
        char s[200];
        format_shape(s, sizeof s, t->shape, t->n_dims);
        return tensor_error(TW_EFORMAT, path, name, "shape %s has too many elements", s);
    }
    *n_elems = n;
    return 0;
}

// Fills e from the header's entry v; data_size is the size of the data buffer.
static int parse_tensor(const char *path, const char *name, const json_t *v, size_t data_size,
                        struct st_entry *e)
{
    struct tw_st_tensor *t = &e->t;
    t->name = name;
    if (!json_is_object(v))
        return tensor_error(TW_EFORMAT, path, name, "expected an object, got %s",
                            tw_json_type_name(v));
    const json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return tensor_error(TW_EFORMAT, path, name, "\"dtype\": expected a string, got %s",
                            tw_json_type_name(dt));
    t->dtype = tw_st_dtype_from_name(json_string_value(dt));
    if (t->dtype < 0)
        return tensor_error(TW_EUNSUPPORTED, path, name, "unknown dtype \"%.32s\"",
                            json_string_value(dt));
    uint64_t n_elems = 0;
    int rc = parse_shape(path, name, json_object_get(v, "shape"), t, &n_elems);
    if (rc)
        return rc;

    const json_t *off = json_object_get(v, "data_offsets");
    uint64_t b, end;
    if (!json_is_array(off) || json_array_size(off) != 2 ||
        !get_count(json_array_get(off, 0), &b) || !get_count(json_array_get(off, 1), &end))
        return tensor_error(TW_EFORMAT, path, name,
                            "\"data_offsets\": expected [begin, end], two non-negative integers");
    if (b > end)
        return tensor_error(TW_EFORMAT, path, name,
                            "data_offsets [%llu, %llu]: begin is after end", (unsigned long long)b,
                            (unsigned long long)end);
    if (end > data_size)
        return tensor_error(TW_EFORMAT, path, name,
                            "data_offsets [%llu, %llu] run past the end of the data (%zu bytes)",
                            (unsigned long long)b, (unsigned long long)end, data_size);
    uint64_t need;
    char s[200];
    format_shape(s, sizeof s, t->shape, t->n_dims);
    if (__builtin_mul_overflow(n_elems, (uint64_t)dtypes[t->dtype].size, &need))
        return tensor_error(TW_EFORMAT, path, name, "shape %s of %s has too many bytes", s,
                            dtypes[t->dtype].name);
    if (end - b != need)
        return tensor_error(TW_EFORMAT, path, name,
                            "shape %s of %s needs %llu bytes, but data_offsets [%llu, %llu] "
                            "hold %llu",
                            s, dtypes[t->dtype].name, (unsigned long long)need,
                            (unsigned long long)b, (unsigned long long)end,
                            (unsigned long long)(end - b));
    e->begin = b;
    e->end = end;
    t->nbytes = (size_t)need;
    return 0;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const struct st_entry *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

// The tensors, sorted by offset, must tile [0, data_size) exactly (the spec: no overlap, no
// holes; the reference refuses a file whose last tensor does not end at the end of the file).
static int check_coverage(const struct tw_st_file *f, size_t data_size)
{
    uint64_t at = 0;
    for (size_t i = 0; i < f->count; i++) {
        const struct st_entry *e = &f->entries[i];
        if (e->begin < at) {
            const struct st_entry *p = &f->entries[i - 1]; // ends at `at`
            return tw_error_set(TW_EFORMAT,
                                "%s: tensor \"%.*s\" (data_offsets [%llu, %llu]) overlaps "
                                "tensor \"%.*s\" ([%llu, %llu])",
                                f->path, NAME_MAX_SHOWN, e->t.name, (unsigned long long)e->begin,
                                (unsigned long long)e->end, NAME_MAX_SHOWN, p->t.name,
                                (unsigned long long)p->begin, (unsigned long long)p->end);
        }
        if (e->begin > at) {
            if (i == 0)
                return tw_error_set(TW_EFORMAT,
                                    "%s: data bytes [0, %llu), before tensor \"%.*s\", belong "
                                    "to no tensor",
                                    f->path, (unsigned long long)e->begin, NAME_MAX_SHOWN,
                                    e->t.name);
            return tw_error_set(TW_EFORMAT,
                                "%s: data bytes [%llu, %llu), between tensor \"%.*s\" and "
                                "tensor \"%.*s\", belong to no tensor",
                                f->path, (unsigned long long)at, (unsigned long long)e->begin,
                                NAME_MAX_SHOWN, f->entries[i - 1].t.name, NAME_MAX_SHOWN,
                                e->t.name);
        }
        at = e->end;
    }
    if (at != data_size) {
        if (f->count == 0)
            return tw_error_set(TW_EFORMAT,
                                "%s: the header lists no tensor, but %zu bytes of "
                                "data follow it",
                                f->path, data_size);
        return tw_error_set(TW_EFORMAT,
                            "%s: data bytes [%llu, %zu), after the last tensor \"%.*s\", belong "
                            "to no tensor",
                            f->path, (unsigned long long)at, data_size, NAME_MAX_SHOWN,
                            f->entries[f->count - 1].t.name);
    }
    return 0;
}

static int parse_metadata(struct tw_st_file *f, const json_t *meta)
{
    if (!meta || json_is_null(meta))
        return 0;
    if (!json_is_object(meta))
        return tw_error_set(TW_EFORMAT, "%s: \"__metadata__\": expected an object, got %s",
                            f->path, tw_json_type_name(meta));
    size_t n = json_object_size(meta);
    f->meta = tw_malloc_array(n ? 2 * n : 1, sizeof *f->meta);
    if (!f->meta)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", f->path);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)meta, key, v)
    {
        if (!json_is_string(v))
            return tw_error_set(TW_EFORMAT,
                                "%s: \"__metadata__\": \"%.*s\": expected a string, got %s",
                                f->path, NAME_MAX_SHOWN, key, tw_json_type_name(v));
        f->meta[2 * f->n_meta] = key;
        f->meta[2 * f->n_meta + 1] = json_string_value(v);
        f->n_meta++;
    }
    return 0;
}

// Parses and checks the header of the mapped file f.
static int parse_header(struct tw_st_file *f)
{
    const unsigned char *p = f->map.data;
    size_t len = f->map.len;
    if (len < 8)
        return tw_error_set(TW_EFORMAT, "%s: %zu bytes: too short for the 8-byte header length",
                            f->path, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) // little-endian u64
        n = n << 8 | p[i];
    if (n > len - 8)
        return tw_error_set(TW_EFORMAT,
                            "%s: header length %llu runs past the end of the file (%zu bytes)",
                            f->path, (unsigned long long)n, len);
    if (n > TW_ST_MAX_HEADER)
        return tw_error_set(TW_ELIMIT, "%s: header length %llu is over the limit of %d bytes",
                            f->path, (unsigned long long)n, TW_ST_MAX_HEADER);
    size_t data_size = len - 8 - (size_t)n;
    const unsigned char *data = p + 8 + n;

    tw_str what;
    tw_str_init(&what);
    int rc = tw_str_printf(&what, "%s: header", f->path);
    if (rc)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", f->path);
    rc = tw_json_parse_flags(tw_str_cstr(&what), (const char *)p + 8, (size_t)n,
                             JSON_REJECT_DUPLICATES, &f->header);
    tw_str_free(&what);
    if (rc)
        return rc;
    if (!json_is_object(f->header))
        return tw_error_set(TW_EFORMAT, "%s: header: expected a JSON object, got %s", f->path,
                            tw_json_type_name(f->header));

    const json_t *meta = json_object_get(f->header, "__metadata__");
    size_t n_tensors = json_object_size(f->header) - (meta ? 1 : 0);
    f->entries = tw_calloc(n_tensors ? n_tensors : 1, sizeof *f->entries);
    if (!f->entries)
        return tw_error_set(TW_ENOMEM, "%s: out of memory for %zu tensors", f->path, n_tensors);
    rc = parse_metadata(f, meta);
    if (rc)
        return rc;
    const char *key;
    const json_t *v;
    json_object_foreach(f->header, key, v)
    {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        struct st_entry *e = &f->entries[f->count];
        rc = parse_tensor(f->path, key, v, data_size, e);
        if (rc)
            return rc;
        e->order = f->count++;
    }
    qsort(f->entries, f->count, sizeof *f->entries, cmp_entry);
    rc = check_coverage(f, data_size);
    if (rc)
        return rc;

    if (tw_map_reserve(&f->by_name, f->count) != 0)
        return tw_error_set(TW_ENOMEM, "%s: out of memory for %zu tensors", f->path, f->count);
    for (size_t i = 0; i < f->count; i++) {
        struct st_entry *e = &f->entries[i];
        e->t.data = data + e->begin;
        // Keys never hold a NUL (jansson refuses "\u0000" in keys), so strlen is the length.
        if (tw_map_put_str(&f->by_name, e->t.name, strlen(e->t.name), i) != 0)
            return tw_error_set(TW_ENOMEM, "%s: out of memory", f->path);
    }
    return 0;
}

int tw_st_open(const char *path, tw_st_file **out)
{
    tw_st_file *f = tw_calloc(1, sizeof *f);
    if (!f)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    tw_map_init(&f->by_name, TW_MAP_STR);
    f->path = tw_strdup(path);
    if (!f->path) {
        tw_free(f);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    }
    int rc = tw_mmap_open(&f->map, path);
    if (rc == 0)
        rc = parse_header(f);
    if (rc) {
        tw_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void tw_st_close(tw_st_file *f)
{
    if (!f)
        return;
    tw_map_free(&f->by_name);
    tw_free(f->meta);
    tw_free(f->entries);
    if (f->header)
        json_decref(f->header);
    tw_mmap_close(&f->map);
    tw_free(f->path);
    tw_free(f);
}

const char *tw_st_path(const tw_st_file *f)
{
    return f->path;
}

size_t tw_st_count(const tw_st_file *f)
{
    return f->count;
}

const struct tw_st_tensor *tw_st_tensor_at(const tw_st_file *f, size_t i)
{
    return i < f->count ? &f->entries[i].t : NULL;
}

const struct tw_st_tensor *tw_st_find(const tw_st_file *f, const char *name)
{
    uint64_t i;
    if (!tw_map_get_str(&f->by_name, name, strlen(name), &i))
        return NULL;
    return &f->entries[i].t;
}

const char *tw_st_meta_get(const tw_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

size_t tw_st_meta_count(const tw_st_file *f)
{
    return f->n_meta;
}

void tw_st_meta_at(const tw_st_file *f, size_t i, const char **key, const char **value)
{
    *key = i < f->n_meta ? f->meta[2 * i] : NULL;
    *value = i < f->n_meta ? f->meta[2 * i + 1] : NULL;
}

// ---- Reading a model folder ------------------------------------------------------------------

struct st_model_entry {
    const struct tw_st_tensor *t;
    size_t file;
};

struct tw_st_model {
    tw_st_file **files;
    size_t n_files;
    struct st_model_entry *all; // count
    size_t count;
    tw_map by_name; // name -> index in all
};

#define INDEX_NAME  "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

void tw_st_close_model(tw_st_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_files; i++)
        tw_st_close(m->files[i]);
    tw_free(m->files);
    tw_free(m->all);
    tw_map_free(&m->by_name);
    tw_free(m);
}

static tw_st_model *model_new(size_t n_files)
{
    tw_st_model *m = tw_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    tw_map_init(&m->by_name, TW_MAP_STR);
    m->files = tw_calloc(n_files ? n_files : 1, sizeof *m->files);
    if (!m->files) {
        tw_free(m);
        return NULL;
    }
    return m;
}

// Lists every tensor of m's (open) files in m->all and m->by_name. index (the index's path)
// and wm (its weight map) are NULL for a single file; shard[i] is file i's name in wm.
static int model_collect(tw_st_model *m, const char *index, const json_t *wm,
                         const char *const *shard)
{
    size_t total = 0;
    for (size_t i = 0; i < m->n_files; i++)
        total += tw_st_count(m->files[i]); // each is a mapping's worth at most: no overflow
    m->all = tw_malloc_array(total ? total : 1, sizeof *m->all);
    if (!m->all || tw_map_reserve(&m->by_name, total) != 0)
        return tw_error_set(TW_ENOMEM, "out of memory for %zu tensors", total);
    for (size_t i = 0; i < m->n_files; i++) {
        for (size_t j = 0; j < tw_st_count(m->files[i]); j++) {
            const struct tw_st_tensor *t = tw_st_tensor_at(m->files[i], j);
            size_t len = strlen(t->name);
            uint64_t prev;
            if (tw_map_get_str(&m->by_name, t->name, len, &prev))
                return tw_error_set(
                    TW_EFORMAT, "%s: tensor \"%.*s\" is in two shards, \"%s\" and \"%s\"", index,
                    NAME_MAX_SHOWN, t->name, shard[m->all[prev].file], shard[i]);
            if (wm) {
                const char *want = json_string_value(json_object_get(wm, t->name));
                if (!want)
                    return tw_error_set(TW_EFORMAT,
                                        "%s: tensor \"%.*s\" of shard \"%s\" is not in "
                                        "weight_map",
                                        index, NAME_MAX_SHOWN, t->name, shard[i]);
                if (strcmp(want, shard[i]) != 0)
                    return tw_error_set(TW_EFORMAT,
                                        "%s: tensor \"%.*s\" is in shard \"%s\", but weight_map "
                                        "puts it in \"%s\"",
                                        index, NAME_MAX_SHOWN, t->name, shard[i], want);
            }
            if (tw_map_put_str(&m->by_name, t->name, len, m->count) != 0)
                return tw_error_set(TW_ENOMEM, "out of memory for %zu tensors", total);
            m->all[m->count].t = t;
            m->all[m->count].file = i;
            m->count++;
        }
    }
    if (wm && m->count != json_object_size(wm)) {
        const char *name;
        const json_t *v;
        json_object_foreach((json_t *)wm, name, v)
        {
            if (!tw_map_get_str(&m->by_name, name, strlen(name), NULL))
                return tw_error_set(TW_EFORMAT,
                                    "%s: weight_map puts tensor \"%.*s\" in shard \"%s\", "
                                    "which does not hold it",
                                    index, NAME_MAX_SHOWN, name, json_string_value(v));
        }
    }
    return 0;
}

static int open_single(const char *path, tw_st_model **out)
{
    tw_st_model *m = model_new(1);
    if (!m)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    int rc = tw_st_open(path, &m->files[0]);
    if (rc == 0) {
        m->n_files = 1;
        const char *name = path;
        rc = model_collect(m, NULL, NULL, &name);
    }
    if (rc) {
        tw_st_close_model(m);
        return rc;
    }
    *out = m;
    return 0;
}

// A shard's name must stay inside the model's folder.
static bool shard_name_ok(const char *s)
{
    if (!*s || *s == '/')
        return false;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// The distinct shard names of the weight map wm, sorted, into *out (free with tw_free).
static int list_shards(const char *index, const json_t *wm, const char ***out, size_t *n_out)
{
    tw_map seen;
    tw_map_init(&seen, TW_MAP_STR);
    size_t cap = json_object_size(wm), n = 0;
    const char **names = tw_malloc_array(cap ? cap : 1, sizeof *names);
    if (!names)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", index);
    int rc = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)wm, key, v)
    {
        const char *s = json_string_value(v);
        if (!s) {
            rc = tw_error_set(TW_EFORMAT, "%s: weight_map: \"%.*s\": expected a string, got %s",
                              index, NAME_MAX_SHOWN, key, tw_json_type_name(v));
            break;
        }
        if (!shard_name_ok(s)) {
            rc = tw_error_set(TW_EFORMAT,
                              "%s: weight_map: \"%.*s\": \"%.*s\" is not a file inside the "
                              "model's folder",
                              index, NAME_MAX_SHOWN, key, NAME_MAX_SHOWN, s);
            break;
        }
        if (tw_map_get_str(&seen, s, strlen(s), NULL))
            continue;
        if (tw_map_put_str(&seen, s, strlen(s), 0) != 0) {
            rc = tw_error_set(TW_ENOMEM, "%s: out of memory", index);
            break;
        }
        names[n++] = s;
    }
    tw_map_free(&seen);
    if (rc) {
        tw_free(names);
        return rc;
    }
    qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *n_out = n;
    return 0;
}

static int open_shards(tw_st_model *m, const char *index, const char *dir,
                       const char *const *shards, size_t n)
{
    tw_str path;
    tw_str_init(&path);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        tw_str_clear(&path);
        if (tw_str_printf(&path, "%s/%s", dir, shards[i]) != 0) {
            rc = tw_error_set(TW_ENOMEM, "%s: out of memory", index);
        } else if (!tw_file_exists(tw_str_cstr(&path))) {
            rc = tw_error_set(TW_ENOENT,
                              "%s: weight_map names shard \"%s\", which does not "
                              "exist (%s)",
                              index, shards[i], tw_str_cstr(&path));
        } else {
            rc = tw_st_open(tw_str_cstr(&path), &m->files[i]);
            if (rc == 0)
                m->n_files++;
        }
    }
    tw_str_free(&path);
    return rc;
}

static int open_index(const char *index, const char *dir, tw_st_model **out)
{
    json_t *root = NULL;
    int rc = tw_json_load_file(index, TW_ST_MAX_HEADER, &root);
    if (rc)
        return rc;
    json_t *wm;
    const char **shards = NULL;
    size_t n = 0;
    tw_st_model *m = NULL;
    rc = tw_json_get_object(root, index, "weight_map", &wm);
    if (rc == 0)
        rc = list_shards(index, wm, &shards, &n);
    if (rc == 0 && !(m = model_new(n)))
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", index);
    if (rc == 0)
        rc = open_shards(m, index, dir, shards, n);
    if (rc == 0)
        rc = model_collect(m, index, wm, shards);
    tw_free(shards);
    json_decref(root);
    if (rc) {
        tw_st_close_model(m);
        return rc;
    }
    *out = m;
    return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

// An index file named directly: its shards are in its folder.
static int open_index_file(const char *path, tw_st_model **out)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return open_index(path, ".", out);
    if (slash == path)
        return open_index(path, "/", out);
    char *dir = tw_strndup(path, (size_t)(slash - path));
    if (!dir)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    int rc = open_index(path, dir, out);
    tw_free(dir);
    return rc;
}

int tw_st_open_model(const char *dir, tw_st_model **out)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return tw_error_set(errno == ENOENT ? TW_ENOENT : TW_EIO, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return ends_with(dir, ".json") ? open_index_file(dir, out) : open_single(dir, out);
    tw_str a;
    tw_str_init(&a);
    int rc;
    if (tw_str_printf(&a, "%s/" SINGLE_NAME, dir) != 0) {
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", dir);
    } else if (tw_file_exists(tw_str_cstr(&a))) {
        rc = open_single(tw_str_cstr(&a), out);
    } else {
        tw_str_clear(&a);
        if (tw_str_printf(&a, "%s/" INDEX_NAME, dir) != 0)
            rc = tw_error_set(TW_ENOMEM, "%s: out of memory", dir);
        else if (tw_file_exists(tw_str_cstr(&a)))
            rc = open_index(tw_str_cstr(&a), dir, out);
        else
            rc = tw_error_set(TW_ENOENT, "%s: holds neither " SINGLE_NAME " nor " INDEX_NAME, dir);
    }
    tw_str_free(&a);
    return rc;
}

size_t tw_st_model_count(const tw_st_model *m)
{
    return m->count;
}

const struct tw_st_tensor *tw_st_model_tensor_at(const tw_st_model *m, size_t i)
{
    return i < m->count ? m->all[i].t : NULL;
}

const struct tw_st_tensor *tw_st_model_find(const tw_st_model *m, const char *name,
                                            const tw_st_file **file)
{
    uint64_t i;
    if (!tw_map_get_str(&m->by_name, name, strlen(name), &i)) {
        if (file)
            *file = NULL;
        return NULL;
    }
    if (file)
        *file = m->files[m->all[i].file];
    return m->all[i].t;
}

size_t tw_st_model_n_files(const tw_st_model *m)
{
    return m->n_files;
}

const tw_st_file *tw_st_model_file(const tw_st_model *m, size_t i)
{
    return i < m->n_files ? m->files[i] : NULL;
}

// ---- Writing ---------------------------------------------------------------------------------

struct st_wtensor {
    char *name;
    int dtype;
    int n_dims;
    int64_t shape[TW_ST_MAX_DIMS];
    const void *data; // borrowed
    size_t nbytes;
};

struct st_wmeta {
    char *key;
    char *value;
};

void tw_st_writer_init(struct tw_st_writer *w)
{
    tw_vec_init(&w->tensors, sizeof(struct st_wtensor));
    tw_vec_init(&w->meta, sizeof(struct st_wmeta));
    tw_map_init(&w->names, TW_MAP_STR);
}

void tw_st_writer_free(struct tw_st_writer *w)
{
    for (size_t i = 0; i < w->tensors.len; i++)
        tw_free(TW_VEC_AT(&w->tensors, struct st_wtensor, i).name);
    for (size_t i = 0; i < w->meta.len; i++) {
        tw_free(TW_VEC_AT(&w->meta, struct st_wmeta, i).key);
        tw_free(TW_VEC_AT(&w->meta, struct st_wmeta, i).value);
    }
    tw_vec_free(&w->tensors);
    tw_vec_free(&w->meta);
    tw_map_free(&w->names);
}

static int check_new_tensor(const struct tw_st_writer *w, const char *name, int dtype,
                            const int64_t *shape, int n_dims, const void *data, size_t nbytes)
{
    if (!name || !tw_utf8_valid(name, strlen(name)))
        return tw_error_set(TW_EINVAL, "tensor name is not UTF-8");
    if (strcmp(name, "__metadata__") == 0)
        return tw_error_set(TW_EINVAL, "\"__metadata__\" cannot name a tensor");
    if (tw_map_get_str(&w->names, name, strlen(name), NULL))
        return tw_error_set(TW_EEXIST, "tensor \"%.*s\": added twice", NAME_MAX_SHOWN, name);
    if (tw_st_dtype_size(dtype) == 0)
        return tw_error_set(TW_EINVAL, "tensor \"%.*s\": %d is not a dtype", NAME_MAX_SHOWN, name,
                            dtype);
    if (n_dims < 0 || n_dims > TW_ST_MAX_DIMS || (n_dims > 0 && !shape))
        return tw_error_set(TW_EINVAL, "tensor \"%.*s\": %d dimensions (0 to %d allowed)",
                            NAME_MAX_SHOWN, name, n_dims, TW_ST_MAX_DIMS);
    size_t n = tw_st_dtype_size(dtype);
    bool zero = false, over = false;
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0)
            return tw_error_set(TW_EINVAL, "tensor \"%.*s\": shape[%d] is negative (%lld)",
                                NAME_MAX_SHOWN, name, i, (long long)shape[i]);
        zero |= shape[i] == 0;
        over |= tw_mul_overflow(n, (size_t)shape[i], &n);
    }
    if (zero)
        n = 0;
    else if (over)
        return tw_error_set(TW_EOVERFLOW, "tensor \"%.*s\": the shape's size overflows",
                            NAME_MAX_SHOWN, name);
    if (n != nbytes)
        return tw_error_set(TW_EINVAL, "tensor \"%.*s\": shape and dtype give %zu bytes, not %zu",
                            NAME_MAX_SHOWN, name, n, nbytes);
    if (!data && nbytes)
        return tw_error_set(TW_EINVAL, "tensor \"%.*s\": no data", NAME_MAX_SHOWN, name);
    return 0;
}

int tw_st_writer_add(struct tw_st_writer *w, const char *name, int dtype, const int64_t *shape,
                     int n_dims, const void *data, size_t nbytes)
{
    int rc = check_new_tensor(w, name, dtype, shape, n_dims, data, nbytes);
    if (rc)
        return rc;
    struct st_wtensor t = { .dtype = dtype, .n_dims = n_dims, .data = data, .nbytes = nbytes };
    for (int i = 0; i < n_dims; i++)
        t.shape[i] = shape[i];
    size_t len = strlen(name);
    t.name = tw_strdup(name);
    if (!t.name || tw_vec_reserve(&w->tensors, w->tensors.len + 1) != 0 ||
        tw_map_put_str(&w->names, name, len, w->tensors.len) != 0) {
        tw_free(t.name);
        return tw_error_set(TW_ENOMEM, "tensor \"%.*s\": out of memory", NAME_MAX_SHOWN, name);
    }
    tw_vec_push(&w->tensors, &t); // room was reserved: cannot fail
    return 0;
}

int tw_st_writer_metadata(struct tw_st_writer *w, const char *key, const char *value)
{
    if (!key || !value || !tw_utf8_valid(key, strlen(key)) || !tw_utf8_valid(value, strlen(value)))
        return tw_error_set(TW_EINVAL, "metadata keys and values must be UTF-8 strings");
    char *v = tw_strdup(value);
    if (!v)
        return tw_error_set(TW_ENOMEM, "metadata \"%.*s\": out of memory", NAME_MAX_SHOWN, key);
    for (size_t i = 0; i < w->meta.len; i++) {
        struct st_wmeta *m = tw_vec_at(&w->meta, i);
        if (strcmp(m->key, key) == 0) {
            tw_free(m->value);
            m->value = v;
            return 0;
        }
    }
    struct st_wmeta m = { tw_strdup(key), v };
    if (!m.key || tw_vec_push(&w->meta, &m) != 0) {
        tw_free(m.key);
        tw_free(v);
        return tw_error_set(TW_ENOMEM, "metadata \"%.*s\": out of memory", NAME_MAX_SHOWN, key);
    }
    return 0;
}

// The reference's order of the data: larger dtypes first (its Dtype enum, descending), then
// names in byte order; it keeps every tensor aligned to its element size.
static int cmp_wtensor(const void *pa, const void *pb)
{
    const struct st_wtensor *a = *(const struct st_wtensor *const *)pa;
    const struct st_wtensor *b = *(const struct st_wtensor *const *)pb;
    if (a->dtype != b->dtype)
        return a->dtype > b->dtype ? -1 : 1;
    return strcmp(a->name, b->name);
}

static int cmp_wmeta(const void *pa, const void *pb)
{
    const struct st_wmeta *a = *(const struct st_wmeta *const *)pa;
    const struct st_wmeta *b = *(const struct st_wmeta *const *)pb;
    return strcmp(a->key, b->key);
}

// The tensors of w in data order (an array of pointers; free with tw_free).
static int sorted_tensors(const struct tw_st_writer *w, const struct st_wtensor ***out)
{
    size_t n = w->tensors.len;
    const struct st_wtensor **s = tw_malloc_array(n ? n : 1, sizeof *s);
    if (!s)
        return tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        s[i] = tw_vec_at(&w->tensors, i);
    qsort(s, n, sizeof *s, cmp_wtensor);
    *out = s;
    return 0;
}

// Sets key in obj to v (which it takes); false when either allocation failed.
static bool set_new(json_t *obj, const char *key, json_t *v)
{
    return v && json_object_set_new(obj, key, v) == 0;
}

static json_t *tensor_json(const struct st_wtensor *t, uint64_t begin)
{
    json_t *o = json_object(), *shape = json_array(), *off = json_array();
    bool ok = o && shape && off;
    for (int i = 0; ok && i < t->n_dims; i++)
        ok = json_array_append_new(shape, json_integer(t->shape[i])) == 0;
    ok = ok && json_array_append_new(off, json_integer((json_int_t)begin)) == 0 &&
         json_array_append_new(off, json_integer((json_int_t)(begin + t->nbytes))) == 0;
    // Member order as the reference writes them: dtype, shape, data_offsets.
    ok = ok && set_new(o, "dtype", json_string(dtypes[t->dtype].name));
    ok = ok && json_object_set(o, "shape", shape) == 0 &&
         json_object_set(o, "data_offsets", off) == 0;
    if (shape)
        json_decref(shape);
    if (off)
        json_decref(off);
    if (!ok && o) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

// Builds the header object: "__metadata__" (sorted keys) first, then the tensors of s.
static int header_json(const struct tw_st_writer *w, const struct st_wtensor *const *s,
                       json_t **out)
{
    tw_json_init();
    json_t *root = json_object();
    bool ok = root != NULL;
    if (ok && w->meta.len) {
        const struct st_wmeta **m = tw_malloc_array(w->meta.len, sizeof *m);
        json_t *meta = json_object();
        ok = m && meta;
        if (ok) {
            for (size_t i = 0; i < w->meta.len; i++)
                m[i] = tw_vec_at(&w->meta, i);
            qsort(m, w->meta.len, sizeof *m, cmp_wmeta);
            for (size_t i = 0; ok && i < w->meta.len; i++)
                ok = set_new(meta, m[i]->key, json_string(m[i]->value));
        }
        ok = ok && json_object_set(root, "__metadata__", meta) == 0;
        if (meta)
            json_decref(meta);
        tw_free(m);
    }
    uint64_t at = 0;
    for (size_t i = 0; ok && i < w->tensors.len; i++) {
        ok = set_new(root, s[i]->name, tensor_json(s[i], at));
        at += s[i]->nbytes;
    }
    if (!ok) {
        if (root)
            json_decref(root);
        return tw_error_set(TW_ENOMEM, "out of memory building a safetensors header");
    }
    *out = root;
    return 0;
}

int tw_st_writer_header(const struct tw_st_writer *w, char **out, size_t *len)
{
    uint64_t total = 0;
    for (size_t i = 0; i < w->tensors.len; i++) {
        // The data must fit one file's offsets (json_int_t) and the reader's size_t.
        size_t nb = TW_VEC_AT(&w->tensors, struct st_wtensor, i).nbytes;
        if (__builtin_add_overflow(total, (uint64_t)nb, &total) || total > INT64_MAX)
            return tw_error_set(TW_EOVERFLOW, "the tensors hold more bytes than a file can");
    }
    const struct st_wtensor **s = NULL;
    int rc = sorted_tensors(w, &s);
    if (rc)
        return rc;
    json_t *root = NULL;
    rc = header_json(w, s, &root);
    tw_free(s);
    if (rc)
        return rc;
    char *text;
    // Compact, UTF-8 unescaped, '/' unescaped: serde_json's output, which the reference uses.
    // (The one difference: a control character other than \b \f \n \r \t in a name or
    // value is written \u001F here and \u001f there; both read back the same.)
    rc = tw_json_dump(root, JSON_COMPACT, &text);
    json_decref(root);
    if (rc)
        return rc;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8; // the reference pads to 8 with spaces
    if (padded > TW_ST_MAX_HEADER) {
        tw_free(text);
        return tw_error_set(TW_ELIMIT, "a header of %zu bytes is over the limit of %d", padded,
                            TW_ST_MAX_HEADER);
    }
    char *buf = tw_malloc(8 + padded);
    if (!buf) {
        tw_free(text);
        return tw_error_set(TW_ENOMEM, "out of memory for a header of %zu bytes", padded);
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (char)(uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, text, n);
    memset(buf + 8 + n, ' ', padded - n);
    tw_free(text);
    *out = buf;
    *len = 8 + padded;
    return 0;
}

// Writes the header and the data in order.
static int write_contents(struct tw_atomic *a, const struct tw_st_writer *w)
{
    char *hdr;
    size_t hlen;
    int rc = tw_st_writer_header(w, &hdr, &hlen);
    if (rc)
        return rc;
    rc = tw_atomic_write(a, hdr, hlen);
    tw_free(hdr);
    const struct st_wtensor **s = NULL;
    if (rc == 0)
        rc = sorted_tensors(w, &s);
    for (size_t i = 0; rc == 0 && i < w->tensors.len; i++)
        rc = tw_atomic_write(a, s[i]->data, s[i]->nbytes);
    tw_free(s);
    return rc;
}

int tw_st_write(const struct tw_st_writer *w, const char *path)
{
    struct tw_atomic a;
    int rc = tw_atomic_open(&a, path, 0644);
    if (rc)
        return rc;
    rc = write_contents(&a, w);
    if (rc) {
        tw_atomic_abort(&a);
        return rc;
    }
    return tw_atomic_commit(&a);
}

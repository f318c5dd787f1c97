// Tests of src/model/safetensors.c: dtype helpers; write/read round trips of files with
// tensors of every dtype and random contents, metadata included; byte-exact agreement with
// the reference implementation's output (hand-built vectors); sharded models with an index;
// every kind of malformed file, index and writer call (each error names the file and tensor);
// failed allocations (no leak). Everything happens in a fresh folder under /tmp.
#define _GNU_SOURCE // memmem
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/mem.h"
#include "check.h"
#include "model/safetensors.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char root[] = "/tmp/twin-test-safetensors-XXXXXX";

// root/name in a static buffer (four in rotation, so a few can be alive at once).
static const char *tmp_path(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", root, name);
    return b;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    REQUIRE(tw_file_write_atomic(path, p, n) == 0);
}

// A file of: the 8-byte length of hdr, hdr itself (not padded), then dlen bytes of data.
static const char *raw_file(const char *name, const char *hdr, const void *data, size_t dlen)
{
    size_t h = strlen(hdr);
    char *buf = malloc(8 + h + dlen + 1);
    REQUIRE(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (char)(uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, hdr, h);
    if (dlen)
        memcpy(buf + 8 + h, data, dlen);
    const char *path = tmp_path(name);
    write_bytes(path, buf, 8 + h + dlen);
    free(buf);
    return path;
}

// Opening path must fail with code, and the message must name the file and hold each of the
// NULL-terminated strings that follow.
static void expect_fail_at(int line, const char *path, int code, ...)
{
    tw_st_file *f = (tw_st_file *)(uintptr_t)1;
    int rc = tw_st_open(path, &f);
    check_count++;
    const char *msg = tw_error_msg();
    bool ok = rc == code && f == (tw_st_file *)(uintptr_t)1 && strstr(msg, path);
    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *));)
        ok = ok && strstr(msg, s);
    va_end(ap);
    if (!ok) {
        fprintf(stderr, "%s:%d: expected code %d, got %d: %s\n", __FILE__, line, code, rc, msg);
        check_failed_count++;
    }
    if (rc == 0 && f != (tw_st_file *)(uintptr_t)1)
        tw_st_close(f);
}
#define EXPECT_FAIL(path, code, ...) expect_fail_at(__LINE__, path, code, __VA_ARGS__, NULL)

// The same for tw_st_open_model.
static void expect_model_fail_at(int line, const char *dir, int code, ...)
{
    tw_st_model *m = NULL;
    int rc = tw_st_open_model(dir, &m);
    check_count++;
    const char *msg = tw_error_msg();
    bool ok = rc == code && m == NULL;
    va_list ap;
    va_start(ap, code);
    for (const char *s; (s = va_arg(ap, const char *));)
        ok = ok && strstr(msg, s);
    va_end(ap);
    if (!ok) {
        fprintf(stderr, "%s:%d: expected code %d, got %d: %s\n", __FILE__, line, code, rc, msg);
        check_failed_count++;
    }
    if (rc == 0)
        tw_st_close_model(m);
}
#define EXPECT_MODEL_FAIL(dir, code, ...) \
    expect_model_fail_at(__LINE__, dir, code, __VA_ARGS__, NULL)

static char *read_all(const char *path, size_t *len)
{
    char *buf;
    REQUIRE(tw_file_read(path, SIZE_MAX - 1, &buf, len) == 0);
    return buf;
}

// Files in root whose names hold ".tmp-" (left over by a writer).
static int temp_files(void)
{
    DIR *d = opendir(root);
    REQUIRE(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

// ---- dtypes ----------------------------------------------------------------------------------

static void test_dtypes(void)
{
    static const struct {
        const char *name;
        size_t size;
    } want[] = { { "BOOL", 1 }, { "U8", 1 },  { "I8", 1 },  { "F8_E5M2", 1 }, { "F8_E4M3", 1 },
                 { "I16", 2 },  { "U16", 2 }, { "F16", 2 }, { "BF16", 2 },    { "I32", 4 },
                 { "U32", 4 },  { "F32", 4 }, { "F64", 8 }, { "I64", 8 },     { "U64", 8 } };
    CHECK_EQ_INT(N(want), TW_ST_DTYPE_COUNT);
    for (int i = 0; i < TW_ST_DTYPE_COUNT; i++) {
        CHECK_EQ_STR(tw_st_dtype_name(i), want[i].name);
        CHECK_EQ_INT(tw_st_dtype_size(i), want[i].size);
        CHECK_EQ_INT(tw_st_dtype_from_name(want[i].name), i);
    }
    CHECK_EQ_INT(tw_st_dtype_from_name("f32"), -1);
    CHECK_EQ_INT(tw_st_dtype_from_name("F4"), -1);
    CHECK_EQ_INT(tw_st_dtype_from_name(""), -1);
    CHECK(tw_st_dtype_name(-1) == NULL && tw_st_dtype_name(TW_ST_DTYPE_COUNT) == NULL);
    CHECK_EQ_INT(tw_st_dtype_size(-1), 0);
    CHECK_EQ_INT(tw_st_dtype_size(TW_ST_DTYPE_COUNT), 0);
}

// ---- round trips -----------------------------------------------------------------------------

struct spec {
    char name[64];
    int dtype;
    int n_dims;
    int64_t shape[TW_ST_MAX_DIMS];
    uint8_t *data;
    size_t nbytes;
};

// n random tensors: every dtype, 0 to 4 dimensions of 0 to 5 (empty and scalar tensors
// included), random bytes.
static struct spec *random_specs(uint64_t *seed, size_t n, const char *prefix)
{
    struct spec *s = calloc(n, sizeof *s);
    REQUIRE(s);
    for (size_t i = 0; i < n; i++) {
        snprintf(s[i].name, sizeof s[i].name, "%s.layers.%zu.w%llu", prefix, i,
                 (unsigned long long)(check_rand(seed) % 1000));
        s[i].dtype = (int)(i % TW_ST_DTYPE_COUNT);
        s[i].n_dims = (int)(check_rand(seed) % 5);
        size_t elems = 1;
        for (int d = 0; d < s[i].n_dims; d++) {
            // Mostly non-empty: a zero dimension one time in twelve.
            s[i].shape[d] = check_rand(seed) % 12 == 0 ? 0 : 1 + (int64_t)(check_rand(seed) % 5);
            elems *= (size_t)s[i].shape[d];
        }
        s[i].nbytes = elems * tw_st_dtype_size(s[i].dtype);
        s[i].data = malloc(s[i].nbytes ? s[i].nbytes : 1);
        REQUIRE(s[i].data);
        for (size_t b = 0; b < s[i].nbytes; b++)
            s[i].data[b] = (uint8_t)check_rand(seed);
    }
    return s;
}

static void free_specs(struct spec *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].data);
    free(s);
}

static void add_specs(struct tw_st_writer *w, const struct spec *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK_OK(tw_st_writer_add(w, s[i].name, s[i].dtype, s[i].shape, s[i].n_dims,
                                  s[i].nbytes ? s[i].data : NULL, s[i].nbytes));
}

static bool same_tensor(const struct tw_st_tensor *t, const struct spec *s)
{
    if (!t || strcmp(t->name, s->name) != 0 || t->dtype != s->dtype || t->n_dims != s->n_dims ||
        t->nbytes != s->nbytes)
        return false;
    for (int d = 0; d < s->n_dims; d++)
        if (t->shape[d] != s->shape[d])
            return false;
    return t->nbytes == 0 || memcmp(t->data, s->data, t->nbytes) == 0;
}

// Writes the tensors of f with a new writer to path (metadata included).
static void rewrite(const tw_st_file *f, const char *path)
{
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    for (size_t i = 0; i < tw_st_count(f); i++) {
        const struct tw_st_tensor *t = tw_st_tensor_at(f, i);
        CHECK_OK(tw_st_writer_add(&w, t->name, t->dtype, t->shape, t->n_dims, t->data, t->nbytes));
    }
    for (size_t i = 0; i < tw_st_meta_count(f); i++) {
        const char *k, *v;
        tw_st_meta_at(f, i, &k, &v);
        CHECK_OK(tw_st_writer_metadata(&w, k, v));
    }
    CHECK_OK(tw_st_write(&w, path));
    tw_st_writer_free(&w);
}

static void test_round_trip(void)
{
    uint64_t seed = 42;
    for (int round = 0; round < 6; round++) {
        size_t n = round == 0 ? 0 : round == 1 ? 1 : 3 * TW_ST_DTYPE_COUNT + (size_t)round;
        struct spec *s = random_specs(&seed, n, round % 2 ? "model" : "encoder");
        struct tw_st_writer w;
        tw_st_writer_init(&w);
        add_specs(&w, s, n);
        if (round >= 2) {
            CHECK_OK(tw_st_writer_metadata(&w, "format", "np"));
            CHECK_OK(tw_st_writer_metadata(&w, "zeta", "caf\xc3\xa9 \"q\" \\ /\n"));
            CHECK_OK(tw_st_writer_metadata(&w, "alpha", ""));
            CHECK_OK(tw_st_writer_metadata(&w, "format", "pt")); // replaces
        }
        const char *path = tmp_path("round.safetensors");
        CHECK_OK(tw_st_write(&w, path));
        tw_st_writer_free(&w);
        CHECK_EQ_INT(temp_files(), 0);

        size_t len;
        char *bytes = read_all(path, &len);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | (uint8_t)bytes[i];
        CHECK_EQ_INT(hlen % 8, 0);
        CHECK(bytes[8] == '{');

        tw_st_file *f = NULL;
        CHECK_OK(tw_st_open(path, &f));
        REQUIRE(f);
        CHECK_EQ_STR(tw_st_path(f), path);
        CHECK_EQ_INT(tw_st_count(f), n);
        for (size_t i = 0; i < n; i++) {
            const struct tw_st_tensor *t = tw_st_find(f, s[i].name);
            CHECK(same_tensor(t, &s[i]));
            // Aligned to its element size, as the reference's order and padding promise.
            CHECK(t && (uintptr_t)t->data % tw_st_dtype_size(t->dtype) == 0);
        }
        CHECK(tw_st_find(f, "missing") == NULL);
        CHECK(tw_st_tensor_at(f, n) == NULL);
        // File order: contiguous data; dtypes descending, then names ascending.
        const char *at = bytes + 8 + hlen;
        for (size_t i = 0; i < n; i++) {
            const struct tw_st_tensor *t = tw_st_tensor_at(f, i);
            CHECK((const char *)t->data - (const char *)tw_st_tensor_at(f, 0)->data ==
                  at - (bytes + 8 + hlen));
            at += t->nbytes;
            if (i > 0) {
                const struct tw_st_tensor *p = tw_st_tensor_at(f, i - 1);
                CHECK(p->dtype > t->dtype ||
                      (p->dtype == t->dtype && strcmp(p->name, t->name) < 0));
            }
        }
        CHECK(at == bytes + len);

        if (round >= 2) {
            CHECK_EQ_INT(tw_st_meta_count(f), 3);
            CHECK_EQ_STR(tw_st_meta_get(f, "format"), "pt");
            CHECK_EQ_STR(tw_st_meta_get(f, "zeta"), "caf\xc3\xa9 \"q\" \\ /\n");
            CHECK_EQ_STR(tw_st_meta_get(f, "alpha"), "");
            const char *k, *v;
            tw_st_meta_at(f, 0, &k, &v); // keys sorted, "__metadata__" first in the header
            CHECK_EQ_STR(k, "alpha");
            tw_st_meta_at(f, 2, &k, &v);
            CHECK_EQ_STR(k, "zeta");
            CHECK(memcmp(bytes + 8, "{\"__metadata__\":{\"alpha\":\"\",\"format\":\"pt\"", 41) ==
                  0);
        } else {
            CHECK_EQ_INT(tw_st_meta_count(f), 0);
            CHECK(tw_st_meta_get(f, "format") == NULL);
            CHECK(!memmem(bytes, len, "__metadata__", 12));
        }

        // Writing what was read gives the same bytes: the format is canonical for the writer.
        const char *path2 = tmp_path("round2.safetensors");
        rewrite(f, path2);
        size_t len2;
        char *bytes2 = read_all(path2, &len2);
        CHECK(len2 == len && memcmp(bytes, bytes2, len) == 0);
        tw_free(bytes2);
        tw_free(bytes);
        tw_st_close(f);
        free_specs(s, n);
    }
    tw_st_close(NULL);
}

// ---- the reference's bytes -------------------------------------------------------------------

// Files as the reference (Python safetensors.torch.save_file over Rust safetensors) writes
// them: the compact header, "__metadata__" only when metadata is given, tensors sorted by
// dtype (descending in its Dtype enum) then name, spaces to a multiple of 8. The "attn", empty
// and metadata vectors are the expected outputs of the reference's own serialization tests
// (safetensors/src/tensor.rs); "a" is the brief's one-F32-tensor case; "abc" follows its
// ordering rule over three dtypes.
struct ref_tensor {
    const char *name;
    int dtype;
    int n_dims;
    int64_t shape[4];
    const char *data;
    size_t nbytes;
};

struct ref_vector {
    const char *what;
    const char *bytes;
    size_t len;
    const char *meta_key, *meta_value;
    struct ref_tensor t[3];
    size_t n;
};

#define F32_0_TO_5 "\0\0\0\0\0\0\x80\x3f\0\0\0\x40\0\0\x40\x40\0\0\x80\x40\0\0\xa0\x40"

static const struct ref_vector ref_vectors[] = {
    { "a",
      "\x38\0\0\0\0\0\0\0"
      "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  "
      "\0\0\x80\x3f\0\0\0\x40",
      8 + 56 + 8,
      NULL,
      NULL,
      { { "a", TW_ST_DTYPE_F32, 1, { 2 }, "\0\0\x80\x3f\0\0\0\x40", 8 } },
      1 },
    { "attn.0",
      "\x40\0\0\0\0\0\0\0"
      "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}" F32_0_TO_5,
      8 + 64 + 24,
      NULL,
      NULL,
      { { "attn.0", TW_ST_DTYPE_F32, 3, { 1, 2, 3 }, F32_0_TO_5, 24 } },
      1 },
    { "attn0",
      "\x48\0\0\0\0\0\0\0"
      "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}      "
      " " F32_0_TO_5,
      8 + 72 + 24,
      NULL,
      NULL,
      { { "attn0", TW_ST_DTYPE_F32, 4, { 1, 1, 2, 3 }, F32_0_TO_5, 24 } },
      1 },
    { "empty", "\x08\0\0\0\0\0\0\0{}      ", 16, NULL, NULL, { { 0 } }, 0 },
    { "metadata",
      "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ",
      48,
      "framework",
      "pt",
      { { 0 } },
      0 },
    { "abc",
      "\xa8\0\0\0\0\0\0\0"
      "{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
      "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[12,14]}}      "
      "\x07\0\0\0\0\0\0\0"
      "\0\0\x80\x3f"
      "\x01\x02",
      8 + 168 + 14,
      NULL,
      NULL,
      { { "b", TW_ST_DTYPE_F32, 1, { 1 }, "\0\0\x80\x3f", 4 },
        { "c", TW_ST_DTYPE_U8, 1, { 2 }, "\x01\x02", 2 },
        { "a", TW_ST_DTYPE_I64, 1, { 1 }, "\x07\0\0\0\0\0\0\0", 8 } },
      3 },
};

static void test_reference_bytes(void)
{
    for (size_t v = 0; v < N(ref_vectors); v++) {
        const struct ref_vector *r = &ref_vectors[v];
        // The reader parses the reference's file.
        const char *path = tmp_path("ref.safetensors");
        write_bytes(path, r->bytes, r->len);
        tw_st_file *f = NULL;
        CHECK_OK(tw_st_open(path, &f));
        REQUIRE(f);
        CHECK_EQ_INT(tw_st_count(f), r->n);
        for (size_t i = 0; i < r->n; i++) {
            const struct ref_tensor *rt = &r->t[i];
            const struct tw_st_tensor *t = tw_st_find(f, rt->name);
            CHECK(t && t->dtype == rt->dtype && t->n_dims == rt->n_dims &&
                  t->nbytes == rt->nbytes && memcmp(t->data, rt->data, rt->nbytes) == 0);
            for (int d = 0; t && d < rt->n_dims; d++)
                CHECK_EQ_INT(t->shape[d], rt->shape[d]);
        }
        CHECK_EQ_INT(tw_st_meta_count(f), r->meta_key ? 1 : 0);
        if (r->meta_key)
            CHECK_EQ_STR(tw_st_meta_get(f, r->meta_key), r->meta_value);
        tw_st_close(f);

        // The writer, given the same tensors in another order, writes the same bytes.
        struct tw_st_writer w;
        tw_st_writer_init(&w);
        for (size_t i = 0; i < r->n; i++) {
            const struct ref_tensor *rt = &r->t[i];
            CHECK_OK(tw_st_writer_add(&w, rt->name, rt->dtype, rt->shape, rt->n_dims, rt->data,
                                      rt->nbytes));
        }
        if (r->meta_key)
            CHECK_OK(tw_st_writer_metadata(&w, r->meta_key, r->meta_value));
        const char *out = tmp_path("ours.safetensors");
        CHECK_OK(tw_st_write(&w, out));
        size_t len;
        char *bytes = read_all(out, &len);
        check_count++;
        if (len != r->len || memcmp(bytes, r->bytes, len) != 0) {
            fprintf(stderr,
                    "%s:%d: vector \"%s\": the writer's %zu bytes differ from the "
                    "reference's %zu: %.*s\n",
                    __FILE__, __LINE__, r->what, len, r->len, (int)len, bytes);
            check_failed_count++;
        }
        char *hdr;
        size_t hlen;
        CHECK_OK(tw_st_writer_header(&w, &hdr, &hlen));
        CHECK(hlen <= len && memcmp(hdr, r->bytes, hlen) == 0);
        tw_free(hdr);
        tw_free(bytes);
        tw_st_writer_free(&w);
    }
}

// ---- sharded models --------------------------------------------------------------------------

static void write_specs(const char *path, const struct spec *s, size_t n)
{
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    add_specs(&w, s, n);
    CHECK_OK(tw_st_writer_metadata(&w, "format", "pt"));
    CHECK_OK(tw_st_write(&w, path));
    tw_st_writer_free(&w);
}

// The index of shards {shard1: s1[0..n1), shard2: s2[0..n2)} as JSON text (malloc'ed).
static char *index_json(const struct spec *s1, size_t n1, const char *shard1,
                        const struct spec *s2, size_t n2, const char *shard2)
{
    size_t cap = 200 + (n1 + n2) * 200, at = 0;
    char *j = malloc(cap);
    REQUIRE(j);
    at += (size_t)snprintf(j + at, cap - at,
                           "{\"metadata\": {\"total_size\": 12345},\n \"weight_map\": {");
    for (size_t i = 0; i < n1 + n2; i++) {
        const char *name = i < n1 ? s1[i].name : s2[i - n1].name;
        at += (size_t)snprintf(j + at, cap - at, "%s\n  \"%s\": \"%s\"", i ? "," : "", name,
                               i < n1 ? shard1 : shard2);
    }
    snprintf(j + at, cap - at, "\n}}\n");
    return j;
}

static void test_sharded(void)
{
    uint64_t seed = 7;
    size_t n1 = 20, n2 = 17;
    struct spec *s1 = random_specs(&seed, n1, "model");
    struct spec *s2 = random_specs(&seed, n2, "lm_head");
    const char *dir = tmp_path("sharded");
    REQUIRE(mkdir(dir, 0755) == 0);
    char p1[600], p2[600], pi[600];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(pi, sizeof pi, "%s/model.safetensors.index.json", dir);
    write_specs(p1, s1, n1);
    write_specs(p2, s2, n2);
    // The second shard is listed first: the model sorts its shards by name.
    char *j = index_json(s2, n2, "model-00002-of-00002.safetensors", s1, n1,
                         "model-00001-of-00002.safetensors");
    write_bytes(pi, j, strlen(j));
    free(j);

    for (int how = 0; how < 2; how++) {
        tw_st_model *m = NULL;
        CHECK_OK(tw_st_open_model(how == 0 ? dir : pi, &m));
        REQUIRE(m);
        CHECK_EQ_INT(tw_st_model_count(m), n1 + n2);
        CHECK_EQ_INT(tw_st_model_n_files(m), 2);
        CHECK_EQ_STR(tw_st_path(tw_st_model_file(m, 0)), p1);
        CHECK_EQ_STR(tw_st_path(tw_st_model_file(m, 1)), p2);
        CHECK(tw_st_model_file(m, 2) == NULL);
        for (size_t i = 0; i < n1 + n2; i++) {
            const struct spec *s = i < n1 ? &s1[i] : &s2[i - n1];
            const tw_st_file *file = NULL;
            const struct tw_st_tensor *t = tw_st_model_find(m, s->name, &file);
            CHECK(same_tensor(t, s));
            CHECK(file == tw_st_model_file(m, i < n1 ? 0 : 1));
            CHECK(tw_st_model_find(m, s->name, NULL) == t);
        }
        // Iteration: the first shard's tensors, then the second's.
        for (size_t i = 0; i < n1 + n2; i++) {
            const struct tw_st_tensor *t = tw_st_model_tensor_at(m, i);
            CHECK(t == tw_st_tensor_at(tw_st_model_file(m, i < n1 ? 0 : 1), i < n1 ? i : i - n1));
        }
        CHECK(tw_st_model_tensor_at(m, n1 + n2) == NULL);
        const tw_st_file *file = (const tw_st_file *)(uintptr_t)1;
        CHECK(tw_st_model_find(m, "nope", &file) == NULL && file == NULL);
        CHECK_EQ_STR(tw_st_meta_get(tw_st_model_file(m, 1), "format"), "pt");
        tw_st_close_model(m);
    }

    // A single-file folder, and a file named directly.
    const char *one = tmp_path("single");
    REQUIRE(mkdir(one, 0755) == 0);
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", one);
    write_specs(p, s1, n1);
    for (int how = 0; how < 2; how++) {
        tw_st_model *m = NULL;
        CHECK_OK(tw_st_open_model(how == 0 ? one : p, &m));
        REQUIRE(m);
        CHECK_EQ_INT(tw_st_model_count(m), n1);
        CHECK_EQ_INT(tw_st_model_n_files(m), 1);
        for (size_t i = 0; i < n1; i++)
            CHECK(same_tensor(tw_st_model_find(m, s1[i].name, NULL), &s1[i]));
        tw_st_close_model(m);
    }

    // ---- errors
    const char *bad = tmp_path("bad");
    REQUIRE(mkdir(bad, 0755) == 0);
    EXPECT_MODEL_FAIL(bad, TW_ENOENT, bad, "model.safetensors");
    EXPECT_MODEL_FAIL(tmp_path("no-such-folder"), TW_ENOENT, "no-such-folder");
    char bi[600], b1[600], b2[600];
    snprintf(bi, sizeof bi, "%s/model.safetensors.index.json", bad);
    snprintf(b1, sizeof b1, "%s/a.safetensors", bad);
    snprintf(b2, sizeof b2, "%s/b.safetensors", bad);
    write_specs(b1, s1, 3);
    write_specs(b2, s2, 3);
    // A shard that does not exist.
    j = index_json(s1, 3, "a.safetensors", s2, 3, "gone.safetensors");
    write_bytes(bi, j, strlen(j));
    free(j);
    EXPECT_MODEL_FAIL(bad, TW_ENOENT, "model.safetensors.index.json", "\"gone.safetensors\"");
    // A tensor in a shard other than the index says: both named. (b holds s2[0].)
    j = index_json(s1, 3, "a.safetensors", s2 + 1, 2, "b.safetensors");
    char *end = strstr(j, "}}");
    REQUIRE(end);
    snprintf(end, 300, ",\"%s\": \"a.safetensors\"}}", s2[0].name);
    write_bytes(bi, j, strlen(j));
    free(j);
    EXPECT_MODEL_FAIL(bad, TW_EFORMAT, "model.safetensors.index.json", s2[0].name,
                      "\"b.safetensors\"", "\"a.safetensors\"");
    // A tensor of a shard that the index does not list; a listed tensor no shard holds.
    j = index_json(s1, 3, "a.safetensors", s2, 2, "b.safetensors");
    write_bytes(bi, j, strlen(j));
    free(j);
    EXPECT_MODEL_FAIL(bad, TW_EFORMAT, "index.json", s2[2].name, "not in weight_map");
    j = index_json(s1, 3, "a.safetensors", s2, 4, "b.safetensors");
    write_bytes(bi, j, strlen(j));
    free(j);
    EXPECT_MODEL_FAIL(bad, TW_EFORMAT, "index.json", s2[3].name, "b.safetensors",
                      "does not hold it");
    // The same tensor in two shards.
    write_specs(b2, s1, 1);
    j = index_json(s1, 3, "a.safetensors", s2, 0, "b.safetensors");
    char *k = strstr(j, "}}");
    REQUIRE(k);
    snprintf(k, 60, ",\"zz\": \"b.safetensors\"}}");
    write_bytes(bi, j, strlen(j));
    free(j);
    EXPECT_MODEL_FAIL(bad, TW_EFORMAT, s1[0].name, "two shards", "a.safetensors", "b.safetensors");
    // A broken shard: its own error, naming it.
    write_bytes(b2, "\x08\0\0\0\0\0\0\0{}", 10);
    j = index_json(s1, 3, "a.safetensors", s2, 1, "b.safetensors");
    write_bytes(bi, j, strlen(j));
    free(j);
    EXPECT_MODEL_FAIL(bad, TW_EFORMAT, "b.safetensors", "header length");
    // Bad index files.
    static const struct {
        const char *json;
        const char *want;
    } idx[] = {
        { "{\"weight_map\": {\"x\": \"../a.safetensors\"}}", "not a file inside" },
        { "{\"weight_map\": {\"x\": \"/etc/passwd\"}}", "not a file inside" },
        { "{\"weight_map\": {\"x\": 3}}", "expected a string" },
        { "{\"weight_map\": [1]}", "weight_map" },
        { "{\"metadata\": {}}", "missing \"weight_map\"" },
        { "{\"weight_map\": {", "line 1, column" },
    };
    for (size_t i = 0; i < N(idx); i++) {
        write_bytes(bi, idx[i].json, strlen(idx[i].json));
        EXPECT_MODEL_FAIL(bad, TW_EFORMAT, "model.safetensors.index.json", idx[i].want);
    }
    // An empty weight map is an empty model.
    write_bytes(bi, "{\"weight_map\": {}}", 18);
    tw_st_model *m = NULL;
    CHECK_OK(tw_st_open_model(bad, &m));
    CHECK(m && tw_st_model_count(m) == 0 && tw_st_model_n_files(m) == 0);
    tw_st_close_model(m);

    free_specs(s1, n1);
    free_specs(s2, n2);
}

// ---- malformed files -------------------------------------------------------------------------

static void test_truncated(void)
{
    uint64_t seed = 99;
    size_t n = 5;
    struct spec *s = random_specs(&seed, n, "t");
    const char *path = tmp_path("whole.safetensors");
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    add_specs(&w, s, n);
    CHECK_OK(tw_st_writer_metadata(&w, "k", "v"));
    CHECK_OK(tw_st_write(&w, path));
    tw_st_writer_free(&w);
    size_t len;
    char *bytes = read_all(path, &len);
    REQUIRE(len > 100);
    // Every proper prefix fails; each message names the file.
    const char *cut = tmp_path("cut.safetensors");
    int fails = 0;
    for (size_t k = 0; k < len; k++) {
        write_bytes(cut, bytes, k);
        tw_st_file *f = NULL;
        int rc = tw_st_open(cut, &f);
        fails += rc == TW_EFORMAT && f == NULL && strstr(tw_error_msg(), cut) != NULL;
        if (rc == 0)
            tw_st_close(f);
    }
    CHECK_EQ_INT(fails, len);
    // Cut inside the data: the last tensor that loses bytes is named.
    write_bytes(cut, bytes, len - 1);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (uint8_t)bytes[i];
    tw_st_file *f;
    REQUIRE(tw_st_open(path, &f) == 0);
    const struct tw_st_tensor *last = tw_st_tensor_at(f, tw_st_count(f) - 1);
    size_t i = tw_st_count(f) - 1;
    while (last->nbytes == 0) // an empty tensor at the end loses nothing
        last = tw_st_tensor_at(f, --i);
    EXPECT_FAIL(cut, TW_EFORMAT, last->name, "past the end of the data");
    // Bytes appended: they belong to no tensor.
    char *longer = malloc(len + 3);
    REQUIRE(longer);
    memcpy(longer, bytes, len);
    memcpy(longer + len, "xyz", 3);
    write_bytes(cut, longer, len + 3);
    EXPECT_FAIL(cut, TW_EFORMAT, "belong to no tensor",
                tw_st_tensor_at(f, tw_st_count(f) - 1)->name);
    free(longer);
    tw_st_close(f);
    tw_free(bytes);
    free_specs(s, n);
}

static void test_header_length(void)
{
    const char *path = tmp_path("hl.safetensors");
    EXPECT_FAIL(raw_file("empty.safetensors", "", NULL, 0), TW_EFORMAT, "header: line");
    write_bytes(path, "", 0);
    EXPECT_FAIL(path, TW_EFORMAT, "too short");
    write_bytes(path, "\x02\0\0", 3);
    EXPECT_FAIL(path, TW_EFORMAT, "too short");
    // One past the end, and 2^64 - 1.
    write_bytes(path, "\x03\0\0\0\0\0\0\0{}", 10);
    EXPECT_FAIL(path, TW_EFORMAT, "header length 3 runs past the end");
    write_bytes(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    EXPECT_FAIL(path, TW_EFORMAT, "header length 18446744073709551615 runs past the end");
    // Over the limit in a file long enough to hold it (sparse: nothing is written).
    int fd = open(path, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0);
    uint64_t big = TW_ST_MAX_HEADER + 1;
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(big >> (8 * i));
    REQUIRE(write(fd, le, 8) == 8);
    REQUIRE(ftruncate(fd, 8 + TW_ST_MAX_HEADER + 16) == 0);
    close(fd);
    EXPECT_FAIL(path, TW_ELIMIT, "over the limit");
    EXPECT_FAIL(tmp_path("missing.safetensors"), TW_ENOENT, "missing.safetensors");
    EXPECT_FAIL(root, TW_EINVAL, root); // a folder
}

static void test_bad_headers(void)
{
    static const char data16[16] = "0123456789abcdef";
    static const struct {
        const char *hdr;
        size_t dlen;
        int code;
        const char *want1, *want2;
    } cases[] = {
        // Not JSON, not an object: jansson's line and column.
        { "{\"a\": {\"dtype\": \"F32\",", 0, TW_EFORMAT, "header: line 1, column", NULL },
        { "{\n\"a\": nope}", 0, TW_EFORMAT, "header: line 2, column", NULL },
        { "[1, 2]", 0, TW_EFORMAT, "expected a JSON object, got an array", NULL },
        { "{} x", 0, TW_EFORMAT, "header: line 1", NULL },
        { "\xff{}", 0, TW_EFORMAT, "header: line 1", NULL },
        { "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"
          "\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
          0, TW_EFORMAT, "duplicate", NULL },
        // Tensor entries.
        { "{\"w.0\": 5}", 0, TW_EFORMAT, "tensor \"w.0\"", "expected an object, got an integer" },
        { "{\"w.0\": {\"shape\": [], \"data_offsets\": [0, 0]}}", 0, TW_EFORMAT, "tensor \"w.0\"",
          "\"dtype\": expected a string, got nothing" },
        { "{\"w.0\": {\"dtype\": \"F4\", \"shape\": [2], \"data_offsets\": [0, 1]}}", 1,
          TW_EUNSUPPORTED, "tensor \"w.0\"", "unknown dtype \"F4\"" },
        { "{\"w.0\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
          TW_EUNSUPPORTED, "tensor \"w.0\"", "unknown dtype \"f32\"" },
        { "{\"w.0\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, TW_EFORMAT,
          "tensor \"w.0\"", "\"shape\": expected an array" },
        { "{\"w.0\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
          TW_EFORMAT, "tensor \"w.0\"", "shape[0] is negative (-1)" },
        { "{\"w.0\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}", 4,
          TW_EFORMAT, "tensor \"w.0\"", "shape[0]: expected a non-negative integer" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], "
          "\"data_offsets\": [0, 1]}}",
          1, TW_EUNSUPPORTED, "tensor \"w.0\"", "9 dimensions" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296], "
          "\"data_offsets\": [0, 1]}}",
          1, TW_EFORMAT, "tensor \"w.0\"", "too many elements" },
        { "{\"w.0\": {\"dtype\": \"F64\", \"shape\": [4294967296, 536870912], "
          "\"data_offsets\": [0, 1]}}",
          1, TW_EFORMAT, "tensor \"w.0\"", "too many bytes" },
        // Shape product against byte length.
        { "{\"w.0\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 16]}}", 16,
          TW_EFORMAT, "tensor \"w.0\"", "shape [2, 3] of F32 needs 24 bytes" },
        { "{\"w.0\": {\"dtype\": \"BF16\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4,
          TW_EFORMAT, "tensor \"w.0\"", "shape [] of BF16 needs 2 bytes" },
        // Offsets.
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 20]}}", 16,
          TW_EFORMAT, "tensor \"w.0\"", "[0, 20] run past the end of the data (16 bytes)" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [8, 4]}}", 16,
          TW_EFORMAT, "tensor \"w.0\"", "begin is after end" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0]}}", 16, TW_EFORMAT,
          "tensor \"w.0\"", "expected [begin, end]" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, -4]}}", 16,
          TW_EFORMAT, "tensor \"w.0\"", "expected [begin, end]" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": {\"a\": 1}}}", 16,
          TW_EFORMAT, "tensor \"w.0\"", "expected [begin, end]" },
        // Overlaps and holes.
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
          " \"w.1\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [4, 12]},"
          " \"w.2\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [12, 16]}}",
          16, TW_EFORMAT, "tensor \"w.1\" (data_offsets [4, 12]) overlaps tensor \"w.0\"", NULL },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
          " \"w.1\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
          " \"w.2\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [8, 16]}}",
          16, TW_EFORMAT, "overlaps", "\"w.0\"" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
          " \"w.1\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [8, 16]}}",
          16, TW_EFORMAT, "bytes [4, 8), between tensor \"w.0\" and tensor \"w.1\"",
          "belong to no tensor" },
        { "{\"w.1\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [8, 16]}}", 16,
          TW_EFORMAT, "bytes [0, 8), before tensor \"w.1\"", "belong to no tensor" },
        { "{\"w.0\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]}}", 16,
          TW_EFORMAT, "bytes [8, 16), after the last tensor \"w.0\"", "belong to no tensor" },
        { "{}", 16, TW_EFORMAT, "no tensor", "16 bytes" },
        // Metadata.
        { "{\"__metadata__\": {\"a\": 1}}", 0, TW_EFORMAT, "\"__metadata__\": \"a\"",
          "expected a string, got an integer" },
        { "{\"__metadata__\": [\"a\"]}", 0, TW_EFORMAT, "\"__metadata__\": expected an object",
          NULL },
    };
    for (size_t i = 0; i < N(cases); i++) {
        char name[64];
        snprintf(name, sizeof name, "bad%zu.safetensors", i);
        const char *path = raw_file(name, cases[i].hdr, data16, cases[i].dlen);
        expect_fail_at(__LINE__ + 1000 * (int)i, path, cases[i].code, cases[i].want1,
                       cases[i].want2, NULL);
    }

    // What is valid: empty tensors anywhere in the order, members the format does not define,
    // null metadata, tensors listed out of data order, an unpadded header (data not aligned).
    static const struct {
        const char *hdr;
        size_t dlen, n;
    } good[] = {
        { "{\"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [0, 0]}}", 0, 1 },
        { "{\"b\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [8, 16]},"
          " \"e\": {\"dtype\": \"F64\", \"shape\": [2, 0], \"data_offsets\": [8, 8], \"x\": 1},"
          " \"a\": {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [0, 8]},"
          " \"__metadata__\": null}",
          16, 3 },
        { "{\"__metadata__\": {}, \"a\": {\"dtype\": \"BOOL\", \"shape\": [3, 5], "
          "\"data_offsets\": [0, 15]}}",
          15, 1 },
    };
    for (size_t i = 0; i < N(good); i++) {
        const char *path = raw_file("good.safetensors", good[i].hdr, data16, good[i].dlen);
        tw_st_file *f = NULL;
        CHECK_OK(tw_st_open(path, &f));
        if (!f)
            continue;
        CHECK_EQ_INT(tw_st_count(f), good[i].n);
        CHECK_EQ_INT(tw_st_meta_count(f), 0);
        if (i == 1) {
            // File order: a [0, 8), then the empty e [8, 8) before b [8, 16).
            CHECK_EQ_STR(tw_st_tensor_at(f, 0)->name, "a");
            CHECK_EQ_STR(tw_st_tensor_at(f, 1)->name, "e");
            CHECK_EQ_STR(tw_st_tensor_at(f, 2)->name, "b");
            const struct tw_st_tensor *a = tw_st_find(f, "a");
            CHECK(a && a->n_dims == 0 && a->nbytes == 8 && memcmp(a->data, "01234567", 8) == 0);
            const struct tw_st_tensor *b = tw_st_find(f, "b");
            CHECK(b && b->nbytes == 8 && memcmp(b->data, "89abcdef", 8) == 0);
        }
        tw_st_close(f);
    }
}

// ---- the writer's refusals -------------------------------------------------------------------

static void test_writer_errors(void)
{
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    int64_t shape[9] = { 2, 3 };
    float data[6] = { 0 };
    CHECK_OK(tw_st_writer_add(&w, "x", TW_ST_DTYPE_F32, shape, 2, data, 24));
    CHECK_EQ_INT(tw_st_writer_add(&w, "x", TW_ST_DTYPE_F32, shape, 2, data, 24), TW_EEXIST);
    CHECK(strstr(tw_error_msg(), "\"x\""));
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", TW_ST_DTYPE_F32, shape, 2, data, 20), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "tensor \"y\""));
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", TW_ST_DTYPE_COUNT, shape, 2, data, 24), TW_EINVAL);
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", -1, shape, 2, data, 24), TW_EINVAL);
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", TW_ST_DTYPE_U8, shape, 9, data, 6), TW_EINVAL);
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", TW_ST_DTYPE_U8, shape, -1, data, 6), TW_EINVAL);
    int64_t neg[2] = { 2, -3 };
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", TW_ST_DTYPE_U8, neg, 2, data, 6), TW_EINVAL);
    int64_t huge[3] = { INT64_MAX, INT64_MAX, 2 };
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", TW_ST_DTYPE_U8, huge, 3, data, 6), TW_EOVERFLOW);
    int64_t huge0[3] = { INT64_MAX, INT64_MAX, 0 };
    CHECK_OK(tw_st_writer_add(&w, "empty", TW_ST_DTYPE_U8, huge0, 3, NULL, 0));
    CHECK_EQ_INT(tw_st_writer_add(&w, "y", TW_ST_DTYPE_U8, shape, 2, NULL, 6), TW_EINVAL);
    CHECK_EQ_INT(tw_st_writer_add(&w, "__metadata__", TW_ST_DTYPE_U8, shape, 2, data, 6),
                 TW_EINVAL);
    CHECK_EQ_INT(tw_st_writer_add(&w, "bad\xff", TW_ST_DTYPE_U8, shape, 2, data, 6), TW_EINVAL);
    CHECK_EQ_INT(tw_st_writer_metadata(&w, "k\xc0", "v"), TW_EINVAL);
    CHECK_EQ_INT(tw_st_writer_metadata(&w, "k", "\xed\xa0\x80"), TW_EINVAL); // a surrogate
    CHECK_EQ_INT(w.tensors.len, 2);
    CHECK_EQ_INT(w.meta.len, 0);

    // A folder that does not exist: nothing is left behind.
    CHECK_EQ_INT(tw_st_write(&w, tmp_path("nope/x.safetensors")), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "nope/x.safetensors"));
    CHECK_EQ_INT(tw_st_write(&w, tmp_path("")), TW_EINVAL);
    CHECK_EQ_INT(temp_files(), 0);
    // The empty tensor with huge dimensions round-trips.
    const char *path = tmp_path("huge0.safetensors");
    CHECK_OK(tw_st_write(&w, path));
    tw_st_file *f = NULL;
    CHECK_OK(tw_st_open(path, &f));
    const struct tw_st_tensor *t = f ? tw_st_find(f, "empty") : NULL;
    CHECK(t && t->n_dims == 3 && t->shape[0] == INT64_MAX && t->nbytes == 0);
    tw_st_close(f);
    tw_st_writer_free(&w);
}

// ---- failed allocations ----------------------------------------------------------------------

static void test_alloc_failures(void)
{
    uint64_t seed = 5;
    struct spec *s = random_specs(&seed, 6, "m");
    const char *dir = tmp_path("alloc");
    REQUIRE(mkdir(dir, 0755) == 0);
    char p1[600], p2[600], pi[600];
    snprintf(p1, sizeof p1, "%s/one.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/two.safetensors", dir);
    snprintf(pi, sizeof pi, "%s/model.safetensors.index.json", dir);
    write_specs(p1, s, 3);
    write_specs(p2, s + 3, 3);
    char *j = index_json(s, 3, "one.safetensors", s + 3, 3, "two.safetensors");
    write_bytes(pi, j, strlen(j));
    free(j);

    // Each allocation in turn fails: an error, nothing leaked, until all of them pass.
    int done = 0;
    for (long k = 1; k < 2000 && done != 7; k++) {
        long live = tw_mem_live();
        tw_st_model *m = NULL;
        tw_mem_fail_after(k);
        int rc = tw_st_open_model(dir, &m);
        tw_mem_fail_after(0);
        CHECK(rc == 0 ? m != NULL : m == NULL && rc < 0);
        tw_st_close_model(m);
        done |= rc == 0;

        struct tw_st_writer w;
        tw_st_writer_init(&w);
        tw_mem_fail_after(k);
        rc = 0;
        for (int i = 0; i < 6 && rc == 0; i++)
            rc = tw_st_writer_add(&w, s[i].name, s[i].dtype, s[i].shape, s[i].n_dims, s[i].data,
                                  s[i].nbytes);
        if (rc == 0)
            rc = tw_st_writer_metadata(&w, "key", "value");
        if (rc == 0)
            rc = tw_st_write(&w, tmp_path("alloc.safetensors"));
        tw_mem_fail_after(0);
        CHECK(rc == 0 || rc == TW_ENOMEM);
        done |= (rc == 0) << 1;
        tw_st_writer_free(&w);

        tw_st_file *f = NULL;
        tw_mem_fail_after(k);
        rc = tw_st_open(p1, &f);
        tw_mem_fail_after(0);
        CHECK(rc == 0 ? f != NULL : f == NULL && rc < 0);
        tw_st_close(f);
        done |= (rc == 0) << 2;
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK_EQ_INT(done, 7);
    CHECK_EQ_INT(temp_files(), 0);
    free_specs(s, 6);
}

int main(void)
{
    REQUIRE(mkdtemp(root));
    test_dtypes();
    test_round_trip();
    test_reference_bytes();
    test_sharded();
    test_truncated();
    test_header_length();
    test_bad_headers();
    test_writer_errors();
    test_alloc_failures();
    tw_remove_tree(root);
    return check_report("test_safetensors");
}

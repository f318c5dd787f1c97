// Tests model/gguf: a file with every metadata type and tensors of the common ggml types is
// written and read back at alignments 32 and 64; a hand-built file pins the byte layout of
// ggml's docs/gguf.md; truncated and corrupted files must fail with a message naming the file
// (and the key or tensor), never crash; and llama3's tokenizer.json, carried through GGUF
// tokenizer.ggml.* arrays, must still encode as Hugging Face does.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/file.h"
#include "base/json.h"
#include "base/map.h"
#include "base/mem.h"
#include "check.h"
#include "model/gguf.h"
#include "text/tokenizer.h"

static char dir[64];
static const char *root;

static void path_in(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static void write_raw(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(n == 0 || fwrite(p, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

// ---- the full file: every metadata type, nested arrays, tensors of several types

static const char *const strs[] = { "alpha", "", "h\xc3\xa9llo w\xc3\xb6rld",
                                    "\xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x8e\x89", "a b" };
static const uint8_t u8s[] = { 0, 1, 255 };
static const int8_t i8s[] = { -128, -1, 0, 127 };
static const uint16_t u16s[] = { 0, 65535, 1234 };
static const int16_t i16s[] = { -32768, 32767, -2 };
static const uint32_t u32s[] = { 0, 4000000000u, 7 };
static const int32_t i32s[] = { INT32_MIN, INT32_MAX, -7, 0 };
static const float f32s[] = { 1.5f, -0.0f, 3.25e-8f, INFINITY };
static const bool bools[] = { true, false, true };
static const uint64_t u64s[] = { UINT64_MAX, 0, 1ull << 40 };
static const int64_t i64s[] = { INT64_MIN, INT64_MAX, -1 };
static const double f64s[] = { 3.141592653589793, -1e300 };

#define N(a) (sizeof(a) / sizeof((a)[0]))

// Nested: [[s0, s1], [], [s2, s3, s4]] and [[[1, 2], [3]], [[]]] (i32)
static const char *const nest_a[] = { "alpha", "" };
static const char *const nest_b[] = { "h\xc3\xa9llo w\xc3\xb6rld", "x", "a b" };
static const struct tw_gguf_warr nested_strs[] = {
    { TW_GGUF_TYPE_STRING, nest_a, 2 },
    { TW_GGUF_TYPE_STRING, NULL, 0 },
    { TW_GGUF_TYPE_STRING, nest_b, 3 },
};
static const int32_t n12[] = { 1, 2 }, n3[] = { 3 };
static const struct tw_gguf_warr lvl3_a[] = { { TW_GGUF_TYPE_I32, n12, 2 },
                                              { TW_GGUF_TYPE_I32, n3, 1 } };
static const struct tw_gguf_warr lvl3_b[] = { { TW_GGUF_TYPE_I32, NULL, 0 } };
static const struct tw_gguf_warr nested3[] = { { TW_GGUF_TYPE_ARRAY, lvl3_a, 2 },
                                               { TW_GGUF_TYPE_ARRAY, lvl3_b, 1 } };

struct tensor_spec {
    const char *name;
    enum tw_ggml_type type;
    uint32_t n_dims;
    uint64_t dims[4];
    size_t size;
};

static const struct tensor_spec specs[] = {
    { "token_embd.weight", TW_GGML_TYPE_F32, 2, { 7, 3 }, 7 * 3 * 4 },
    { "blk.0.attn_norm.weight", TW_GGML_TYPE_F16, 1, { 5 }, 10 },
    { "blk.0.ffn_up.weight", TW_GGML_TYPE_BF16, 3, { 3, 2, 2 }, 24 },
    { "blk.0.attn_q.weight", TW_GGML_TYPE_Q8_0, 2, { 64, 2 }, 4 * 34 },
    { "blk.0.attn_k.weight", TW_GGML_TYPE_Q4_0, 2, { 32, 3 }, 3 * 18 },
    { "blk.0.attn_v.weight", TW_GGML_TYPE_Q4_K, 2, { 256, 2 }, 2 * 144 },
    { "blk.0.ffn_down.weight", TW_GGML_TYPE_Q6_K, 4, { 512, 1, 1, 2 }, 4 * 210 },
    { "empty", TW_GGML_TYPE_F32, 2, { 0, 4 }, 0 },
    { "scalar", TW_GGML_TYPE_I32, 0, { 0 }, 4 },
};
#define N_SPECS N(specs)

static uint8_t *tensor_bytes[N_SPECS];

static void make_tensor_bytes(void)
{
    uint64_t seed = 42;
    for (size_t i = 0; i < N_SPECS; i++) {
        tensor_bytes[i] = malloc(specs[i].size + 1);
        for (size_t k = 0; k < specs[i].size; k++)
            tensor_bytes[i][k] = (uint8_t)check_rand(&seed);
    }
}

#define ADD(expr)       \
    do {                \
        CHECK_OK(expr); \
        n++;            \
    } while (0)

// Scalars of every type, then arrays; returns the number of keys added.
static size_t add_all_kvs(tw_gguf_writer *w, uint32_t align)
{
    uint8_t u8 = 200;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int16_t i16 = -300;
    int32_t i32 = -70000;
    float f32 = 3.5f;
    bool t = true, f = false;
    uint64_t u64 = UINT64_MAX;
    int64_t i64 = INT64_MIN;
    double f64 = 2.718281828459045;
    size_t n = 0;
    ADD(tw_gguf_writer_add_str(w, "general.architecture", "llama", 5));
    ADD(tw_gguf_writer_add_kv(w, "t.u8", TW_GGUF_TYPE_U8, &u8));
    ADD(tw_gguf_writer_add_kv(w, "t.i8", TW_GGUF_TYPE_I8, &i8));
    ADD(tw_gguf_writer_add_kv(w, "t.u16", TW_GGUF_TYPE_U16, &u16));
    ADD(tw_gguf_writer_add_kv(w, "t.i16", TW_GGUF_TYPE_I16, &i16));
    ADD(tw_gguf_writer_add_u32(w, "t.u32", 4000000000u));
    ADD(tw_gguf_writer_add_kv(w, "t.i32", TW_GGUF_TYPE_I32, &i32));
    ADD(tw_gguf_writer_add_kv(w, "t.f32", TW_GGUF_TYPE_F32, &f32));
    ADD(tw_gguf_writer_add_kv(w, "t.true", TW_GGUF_TYPE_BOOL, &t));
    ADD(tw_gguf_writer_add_kv(w, "t.false", TW_GGUF_TYPE_BOOL, &f));
    ADD(tw_gguf_writer_add_str(w, "t.str", strs[3], strlen(strs[3])));
    ADD(tw_gguf_writer_add_str(w, "t.empty_str", "", 0));
    ADD(tw_gguf_writer_add_str(w, "t.nul_str", "a\0b", 3));
    ADD(tw_gguf_writer_add_kv(w, "t.u64", TW_GGUF_TYPE_U64, &u64));
    ADD(tw_gguf_writer_add_kv(w, "t.i64", TW_GGUF_TYPE_I64, &i64));
    ADD(tw_gguf_writer_add_kv(w, "t.f64", TW_GGUF_TYPE_F64, &f64));
    if (align != 32)
        ADD(tw_gguf_writer_add_u32(w, "general.alignment", align));
    const struct tw_gguf_warr arrs[] = {
        { TW_GGUF_TYPE_U8, u8s, N(u8s) },       { TW_GGUF_TYPE_I8, i8s, N(i8s) },
        { TW_GGUF_TYPE_U16, u16s, N(u16s) },    { TW_GGUF_TYPE_I16, i16s, N(i16s) },
        { TW_GGUF_TYPE_U32, u32s, N(u32s) },    { TW_GGUF_TYPE_I32, i32s, N(i32s) },
        { TW_GGUF_TYPE_F32, f32s, N(f32s) },    { TW_GGUF_TYPE_BOOL, bools, N(bools) },
        { TW_GGUF_TYPE_STRING, strs, N(strs) }, { TW_GGUF_TYPE_U64, u64s, N(u64s) },
        { TW_GGUF_TYPE_I64, i64s, N(i64s) },    { TW_GGUF_TYPE_F64, f64s, N(f64s) },
    };
    for (size_t i = 0; i < N(arrs); i++) {
        char key[32];
        snprintf(key, sizeof key, "a.%s", tw_gguf_type_name(arrs[i].type));
        ADD(tw_gguf_writer_add_arr(w, key, &arrs[i]));
    }
    struct tw_gguf_warr empty = { TW_GGUF_TYPE_U32, NULL, 0 };
    struct tw_gguf_warr empty_s = { TW_GGUF_TYPE_STRING, NULL, 0 };
    struct tw_gguf_warr ns = { TW_GGUF_TYPE_ARRAY, nested_strs, N(nested_strs) };
    struct tw_gguf_warr n3a = { TW_GGUF_TYPE_ARRAY, nested3, N(nested3) };
    ADD(tw_gguf_writer_add_arr(w, "a.empty", &empty));
    ADD(tw_gguf_writer_add_arr(w, "a.empty_strings", &empty_s));
    ADD(tw_gguf_writer_add_arr(w, "a.nested_strings", &ns));
    ADD(tw_gguf_writer_add_arr(w, "a.nested3", &n3a));
    return n;
}

static size_t write_full(const char *path, uint32_t align)
{
    tw_gguf_writer w;
    tw_gguf_writer_init(&w);
    size_t n_kv = add_all_kvs(&w, align);
    for (size_t i = 0; i < N_SPECS; i++)
        CHECK_OK(tw_gguf_writer_add_tensor(&w, specs[i].name, specs[i].type, specs[i].dims,
                                           specs[i].n_dims, tensor_bytes[i], specs[i].size));
    CHECK_OK(tw_gguf_write(&w, path));
    tw_gguf_writer_free(&w);
    return n_kv;
}

static void check_int_arr(const tw_gguf *g, const char *key, enum tw_gguf_type type,
                          const void *vals, size_t n, size_t esize, bool is_signed)
{
    struct tw_gguf_arr a;
    CHECK_OK(tw_gguf_get_arr(g, key, &a));
    CHECK_EQ_INT(a.type, type);
    CHECK_EQ_INT(a.count, n);
    CHECK(a.data != NULL);
    for (size_t i = 0; i < n && a.count == n; i++) {
        int64_t want = 0, got = 0;
        const char *p = (const char *)vals + i * esize;
        if (esize == 1)
            want = is_signed ? *(const int8_t *)p : *(const uint8_t *)p;
        else if (esize == 2)
            want = is_signed ? *(const int16_t *)p : *(const uint16_t *)p;
        else if (esize == 4 && is_signed)
            want = *(const int32_t *)p;
        else if (esize == 4)
            want = *(const uint32_t *)p;
        else
            want = *(const int64_t *)p;
        if (type == TW_GGUF_TYPE_U64 && *(const uint64_t *)p > INT64_MAX) {
            CHECK_EQ_INT(tw_gguf_arr_get_int(g, &a, i, &got), TW_EOVERFLOW);
            continue;
        }
        CHECK_OK(tw_gguf_arr_get_int(g, &a, i, &got));
        CHECK_EQ_INT(got, want);
        // the raw bytes in the map are the little-endian values
        CHECK(memcmp((const char *)a.data + i * esize, p, esize) == 0);
    }
}

static void check_str_arr(const tw_gguf *g, const struct tw_gguf_arr *a, const char *const *want,
                          size_t n)
{
    CHECK_EQ_INT(a->type, TW_GGUF_TYPE_STRING);
    CHECK_EQ_INT(a->count, n);
    CHECK(a->data == NULL);
    for (size_t i = 0; i < n && a->count == n; i++) {
        const char *s;
        size_t len;
        CHECK_OK(tw_gguf_arr_get_str(g, a, i, &s, &len));
        CHECK(len == strlen(want[i]) && memcmp(s, want[i], len) == 0);
    }
}

static void check_scalars(const tw_gguf *g)
{
    int64_t v;
    uint32_t u32;
    uint64_t u64;
    float f;
    bool b;
    const char *s;
    size_t len;
    static const struct {
        const char *key;
        int64_t want;
    } ints[] = { { "t.u8", 200 },           { "t.i8", -5 },
                 { "t.u16", 60000 },        { "t.i16", -300 },
                 { "t.u32", 4000000000ll }, { "t.i32", -70000 },
                 { "t.i64", INT64_MIN } };
    for (size_t i = 0; i < N(ints); i++) {
        v = 0;
        CHECK_OK(tw_gguf_get_int(g, ints[i].key, &v));
        CHECK_EQ_INT(v, ints[i].want);
    }
    CHECK_OK(tw_gguf_get_u32(g, "t.u32", &u32));
    CHECK_EQ_INT(u32, 4000000000u);
    CHECK_OK(tw_gguf_get_i64(g, "t.i64", &v));
    CHECK_EQ_INT(v, INT64_MIN);
    CHECK_OK(tw_gguf_get_u64(g, "t.u64", &u64));
    CHECK(u64 == UINT64_MAX);
    CHECK_EQ_INT(tw_gguf_get_int(g, "t.u64", &v), TW_EOVERFLOW);
    CHECK(strstr(tw_error_msg(), "t.u64") != NULL);
    CHECK_OK(tw_gguf_get_f32(g, "t.f32", &f));
    CHECK(f == 3.5f);
    CHECK_OK(tw_gguf_get_bool(g, "t.true", &b));
    CHECK(b);
    CHECK_OK(tw_gguf_get_bool(g, "t.false", &b));
    CHECK(!b);
    CHECK_OK(tw_gguf_get_str(g, "t.str", &s, &len));
    CHECK(len == strlen(strs[3]) && memcmp(s, strs[3], len) == 0);
    CHECK_OK(tw_gguf_get_str(g, "t.empty_str", &s, &len));
    CHECK_EQ_INT(len, 0);
    CHECK_OK(tw_gguf_get_str(g, "t.nul_str", &s, &len));
    CHECK(len == 3 && memcmp(s, "a\0b", 3) == 0);
    CHECK_OK(tw_gguf_get_str(g, "general.architecture", &s, &len));
    CHECK(len == 5 && memcmp(s, "llama", 5) == 0);
    int64_t k = tw_gguf_find_key(g, "t.f64");
    REQUIRE(k >= 0);
    CHECK_EQ_INT(tw_gguf_key_type(g, (size_t)k), TW_GGUF_TYPE_F64);
    CHECK_EQ_STR(tw_gguf_key_name(g, (size_t)k), "t.f64");
    CHECK_EQ_INT(tw_gguf_find_key(g, "t.nope"), -1);

    // type mismatches and missing keys: clear errors naming the file and the key; out unchanged
    u32 = 77;
    CHECK_EQ_INT(tw_gguf_get_u32(g, "t.str", &u32), TW_EFORMAT);
    CHECK_EQ_INT(u32, 77);
    CHECK(strstr(tw_error_msg(), tw_gguf_path(g)) == tw_error_msg());
    CHECK(strstr(tw_error_msg(), "\"t.str\": expected u32, found string") != NULL);
    CHECK_EQ_INT(tw_gguf_get_int(g, "t.f32", &v), TW_EFORMAT);
    CHECK_EQ_INT(tw_gguf_get_int(g, "t.true", &v), TW_EFORMAT);
    CHECK_EQ_INT(tw_gguf_get_bool(g, "t.u8", &b), TW_EFORMAT);
    CHECK_EQ_INT(tw_gguf_get_str(g, "t.u8", &s, &len), TW_EFORMAT);
    CHECK_EQ_INT(tw_gguf_get_f32(g, "t.f64", &f), TW_EFORMAT);
    CHECK_EQ_INT(tw_gguf_get_i64(g, "t.u64", &v), TW_EFORMAT);
    struct tw_gguf_arr a;
    CHECK_EQ_INT(tw_gguf_get_arr(g, "t.str", &a), TW_EFORMAT);
    CHECK_EQ_INT(tw_gguf_get_u32(g, "t.missing", &u32), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "\"t.missing\" is missing") != NULL);
}

static void check_arrays(const tw_gguf *g)
{
    check_int_arr(g, "a.u8", TW_GGUF_TYPE_U8, u8s, N(u8s), 1, false);
    check_int_arr(g, "a.i8", TW_GGUF_TYPE_I8, i8s, N(i8s), 1, true);
    check_int_arr(g, "a.u16", TW_GGUF_TYPE_U16, u16s, N(u16s), 2, false);
    check_int_arr(g, "a.i16", TW_GGUF_TYPE_I16, i16s, N(i16s), 2, true);
    check_int_arr(g, "a.u32", TW_GGUF_TYPE_U32, u32s, N(u32s), 4, false);
    check_int_arr(g, "a.i32", TW_GGUF_TYPE_I32, i32s, N(i32s), 4, true);
    check_int_arr(g, "a.u64", TW_GGUF_TYPE_U64, u64s, N(u64s), 8, false);
    check_int_arr(g, "a.i64", TW_GGUF_TYPE_I64, i64s, N(i64s), 8, true);
    struct tw_gguf_arr a, b, c;
    double d;
    bool bv;
    CHECK_OK(tw_gguf_get_arr(g, "a.f32", &a));
    CHECK_EQ_INT(a.count, N(f32s));
    for (size_t i = 0; i < N(f32s) && a.count == N(f32s); i++) {
        CHECK_OK(tw_gguf_arr_get_float(g, &a, i, &d));
        CHECK(memcmp(&(float){ (float)d }, &f32s[i], 4) == 0); // -0.0 and inf too
    }
    CHECK_EQ_INT(tw_gguf_arr_get_float(g, &a, N(f32s), &d), TW_EINVAL); // past the end
    CHECK_EQ_INT(tw_gguf_arr_get_int(g, &a, 0, &(int64_t){ 0 }), TW_EFORMAT);
    CHECK_OK(tw_gguf_get_arr(g, "a.f64", &a));
    for (size_t i = 0; i < N(f64s) && a.count == N(f64s); i++) {
        CHECK_OK(tw_gguf_arr_get_float(g, &a, i, &d));
        CHECK(d == f64s[i]);
    }
    CHECK_OK(tw_gguf_get_arr(g, "a.bool", &a));
    CHECK_EQ_INT(a.count, N(bools));
    for (size_t i = 0; i < N(bools) && a.count == N(bools); i++) {
        CHECK_OK(tw_gguf_arr_get_bool(g, &a, i, &bv));
        CHECK(bv == bools[i]);
    }
    CHECK_OK(tw_gguf_get_arr(g, "a.string", &a));
    check_str_arr(g, &a, strs, N(strs));
    CHECK_EQ_INT(tw_gguf_arr_get_arr(g, &a, 0, &b), TW_EFORMAT);
    CHECK_OK(tw_gguf_get_arr(g, "a.empty", &a));
    CHECK_EQ_INT(a.type, TW_GGUF_TYPE_U32);
    CHECK_EQ_INT(a.count, 0);
    CHECK_EQ_INT(tw_gguf_arr_get_int(g, &a, 0, &(int64_t){ 0 }), TW_EINVAL);
    CHECK_OK(tw_gguf_get_arr(g, "a.empty_strings", &a));
    check_str_arr(g, &a, NULL, 0);

    CHECK_OK(tw_gguf_get_arr(g, "a.nested_strings", &a));
    CHECK_EQ_INT(a.type, TW_GGUF_TYPE_ARRAY);
    CHECK_EQ_INT(a.count, 3);
    CHECK(a.data == NULL);
    for (size_t i = 0; i < 3 && a.count == 3; i++) {
        CHECK_OK(tw_gguf_arr_get_arr(g, &a, i, &b));
        check_str_arr(g, &b, (const char *const *)nested_strs[i].elems, nested_strs[i].count);
    }
    CHECK_EQ_INT(tw_gguf_arr_get_str(g, &a, 0, &(const char *){ 0 }, &(size_t){ 0 }), TW_EFORMAT);
    CHECK_OK(tw_gguf_get_arr(g, "a.nested3", &a));
    CHECK_EQ_INT(a.count, 2);
    int64_t v;
    CHECK_OK(tw_gguf_arr_get_arr(g, &a, 0, &b));
    CHECK_EQ_INT(b.type, TW_GGUF_TYPE_ARRAY);
    CHECK_EQ_INT(b.count, 2);
    CHECK_OK(tw_gguf_arr_get_arr(g, &b, 0, &c));
    CHECK_EQ_INT(c.count, 2);
    CHECK_OK(tw_gguf_arr_get_int(g, &c, 1, &v));
    CHECK_EQ_INT(v, 2);
    CHECK_OK(tw_gguf_arr_get_arr(g, &b, 1, &c));
    CHECK_EQ_INT(c.count, 1);
    CHECK_OK(tw_gguf_arr_get_int(g, &c, 0, &v));
    CHECK_EQ_INT(v, 3);
    CHECK_OK(tw_gguf_arr_get_arr(g, &a, 1, &b));
    CHECK_EQ_INT(b.count, 1);
    CHECK_OK(tw_gguf_arr_get_arr(g, &b, 0, &c));
    CHECK_EQ_INT(c.type, TW_GGUF_TYPE_I32);
    CHECK_EQ_INT(c.count, 0);
}

static void check_tensors(const tw_gguf *g, uint32_t align)
{
    REQUIRE(tw_gguf_tensor_count(g) == N_SPECS);
    for (size_t i = 0; i < N_SPECS; i++) {
        const struct tw_gguf_tensor *t = tw_gguf_tensor_at(g, i);
        CHECK_EQ_STR(t->name, specs[i].name);
        CHECK(tw_gguf_find_tensor(g, specs[i].name) == t);
        CHECK_EQ_INT(t->type, specs[i].type);
        CHECK_EQ_INT(t->n_dims, specs[i].n_dims);
        for (uint32_t d = 0; d < 4; d++)
            CHECK_EQ_INT(t->dims[d], d < specs[i].n_dims ? specs[i].dims[d] : 1);
        CHECK_EQ_INT(t->size, specs[i].size);
        CHECK(t->size == 0 || memcmp(t->data, tensor_bytes[i], t->size) == 0);
        CHECK_EQ_INT(t->offset % align, 0);
        CHECK_EQ_INT((uintptr_t)t->data % align, 0); // the map is page-aligned
    }
    CHECK(tw_gguf_tensor_at(g, N_SPECS) == NULL);
    CHECK(tw_gguf_find_tensor(g, "output.weight") == NULL);
    const struct tw_gguf_tensor *t = NULL;
    CHECK_EQ_INT(tw_gguf_get_tensor(g, "output.weight", &t), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "\"output.weight\" is missing") != NULL);
    CHECK_OK(tw_gguf_get_tensor(g, specs[3].name, &t));
}

static void test_roundtrip(uint32_t align, bool explicit32)
{
    char path[128];
    path_in(path, sizeof path, "full.gguf");
    size_t n_kv;
    if (explicit32) { // general.alignment = 32 written out
        tw_gguf_writer w;
        tw_gguf_writer_init(&w);
        CHECK_OK(tw_gguf_writer_add_u32(&w, "general.alignment", 32));
        n_kv = add_all_kvs(&w, 32) + 1;
        for (size_t i = 0; i < N_SPECS; i++)
            CHECK_OK(tw_gguf_writer_add_tensor(&w, specs[i].name, specs[i].type, specs[i].dims,
                                               specs[i].n_dims, tensor_bytes[i], specs[i].size));
        CHECK_OK(tw_gguf_write(&w, path));
        tw_gguf_writer_free(&w);
    } else {
        n_kv = write_full(path, align);
    }
    tw_gguf *g = NULL;
    CHECK_OK(tw_gguf_open(path, &g));
    REQUIRE(g);
    CHECK_EQ_INT(tw_gguf_version(g), 3);
    CHECK_EQ_INT(tw_gguf_alignment(g), align);
    CHECK_EQ_INT(tw_gguf_data_offset(g) % align, 0);
    CHECK_EQ_INT(tw_gguf_key_count(g), n_kv);
    CHECK(tw_gguf_key_name(g, n_kv) == NULL);
    CHECK_EQ_STR(tw_gguf_key_name(g, explicit32 ? 1 : 0), "general.architecture");
    // keys in file order, each findable
    for (size_t i = 0; i < tw_gguf_key_count(g); i++)
        CHECK_EQ_INT(tw_gguf_find_key(g, tw_gguf_key_name(g, i)), i);
    check_scalars(g);
    check_arrays(g);
    check_tensors(g, align);
    tw_gguf_close(g);
    // the same bytes through tw_gguf_open_buffer
    char *buf;
    size_t len;
    REQUIRE(tw_file_read(path, SIZE_MAX - 1, &buf, &len) == 0);
    CHECK_EQ_INT(len % align, 0); // the last tensor is padded too
    CHECK_OK(tw_gguf_open_buffer("mem.gguf", buf, len, &g));
    if (g) {
        CHECK_EQ_INT(tw_gguf_key_count(g), n_kv);
        tw_gguf_close(g);
    }
    tw_free(buf);
}

// ---- a hand-built file: the layout of docs/gguf.md, byte for byte

static void put_u32(tw_str *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        tw_str_putc(b, (char)(v >> (8 * i)));
}

static void put_u64(tw_str *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        tw_str_putc(b, (char)(v >> (8 * i)));
}

static void put_str(tw_str *b, const char *s)
{
    put_u64(b, strlen(s));
    tw_str_puts(b, s);
}

static void put_header(tw_str *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    tw_str_append(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

static void put_tinfo(tw_str *b, const char *name, uint32_t n_dims, const uint64_t *dims,
                      uint32_t type, uint64_t off)
{
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        put_u64(b, dims[i]);
    put_u32(b, type);
    put_u64(b, off);
}

static void put_pad(tw_str *b, size_t align)
{
    while (tw_str_len(b) % align)
        tw_str_putc(b, 0);
}

static void test_layout(void)
{
    tw_str b;
    tw_str_init(&b);
    put_header(&b, 3, 1, 2);
    put_str(&b, "general.architecture");
    put_u32(&b, 8);
    put_str(&b, "llama");
    put_str(&b, "general.alignment");
    put_u32(&b, 4);
    put_u32(&b, 16);
    put_tinfo(&b, "t", 1, (uint64_t[]){ 2 }, 0, 0);
    put_pad(&b, 16);
    float data[2] = { 1.0f, 2.0f };
    tw_str_append(&b, data, 8);
    put_pad(&b, 16);

    char path[128];
    path_in(path, sizeof path, "layout.gguf");
    tw_gguf_writer w;
    tw_gguf_writer_init(&w);
    CHECK_OK(tw_gguf_writer_add_str(&w, "general.architecture", "llama", 5));
    CHECK_OK(tw_gguf_writer_add_u32(&w, "general.alignment", 16));
    CHECK_OK(tw_gguf_writer_add_tensor(&w, "t", TW_GGML_TYPE_F32, (uint64_t[]){ 2 }, 1, data, 8));
    CHECK_OK(tw_gguf_write(&w, path));
    tw_gguf_writer_free(&w);
    char *got;
    size_t len;
    REQUIRE(tw_file_read(path, 1 << 20, &got, &len) == 0);
    CHECK_EQ_INT(len, tw_str_len(&b));
    CHECK(len == tw_str_len(&b) && memcmp(got, tw_str_cstr(&b), len) == 0);
    tw_free(got);

    // version 2 has the same layout
    ((char *)b.v.data)[4] = 2;
    tw_gguf *g = NULL;
    CHECK_OK(tw_gguf_open_buffer("v2.gguf", b.v.data, b.v.len, &g));
    if (g) {
        CHECK_EQ_INT(tw_gguf_version(g), 2);
        CHECK_EQ_INT(tw_gguf_alignment(g), 16);
        const struct tw_gguf_tensor *t = tw_gguf_find_tensor(g, "t");
        CHECK(t && t->size == 8 && memcmp(t->data, data, 8) == 0);
        tw_gguf_close(g);
    }
    // metadata only (no tensors, no padding) is a valid file; its first arrays are empty ones
    // of strings and of arrays (a fuzzer's find: the reader grew its empty index of elements
    // by 0, and tw_vec computed NULL + 0, which clang's UBSan refuses; the reproducer is in
    // fuzz/regressions/fuzz_gguf/)
    tw_str_clear(&b);
    put_header(&b, 3, 0, 3);
    put_str(&b, "general.name");
    put_u32(&b, 8);
    put_str(&b, "x");
    for (uint32_t type = 8; type <= 9; type++) {
        put_str(&b, type == 8 ? "e.strings" : "e.arrays");
        put_u32(&b, 9);
        put_u32(&b, type);
        put_u64(&b, 0);
    }
    g = NULL;
    CHECK_OK(tw_gguf_open_buffer("meta.gguf", b.v.data, b.v.len, &g));
    if (g) {
        struct tw_gguf_arr a;
        CHECK_OK(tw_gguf_get_arr(g, "e.arrays", &a));
        CHECK_EQ_INT(a.type, TW_GGUF_TYPE_ARRAY);
        CHECK_EQ_INT(a.count, 0);
        CHECK_EQ_INT(tw_gguf_tensor_count(g), 0);
        tw_gguf_close(g);
    }
    tw_str_free(&b);
}

// ---- truncation: every prefix of the header region, and prefixes into the data

static void test_truncation(void)
{
    char path[128], cut[128];
    path_in(path, sizeof path, "full.gguf");
    path_in(cut, sizeof cut, "cut.gguf");
    write_full(path, 32);
    char *buf;
    size_t len;
    REQUIRE(tw_file_read(path, SIZE_MAX - 1, &buf, &len) == 0);
    tw_gguf *g;
    REQUIRE(tw_gguf_open(path, &g) == 0);
    size_t data_off = (size_t)tw_gguf_data_offset(g), data_end = 0;
    for (size_t i = 0; i < tw_gguf_tensor_count(g); i++) {
        const struct tw_gguf_tensor *t = tw_gguf_tensor_at(g, i);
        if (data_off + t->offset + t->size > data_end)
            data_end = data_off + (size_t)t->offset + t->size;
    }
    tw_gguf_close(g);
    int bad = 0, tried = 0;
    for (size_t n = 0; n < len; n++) {
        // every offset of the header region; then every 7th byte of the data
        if (n >= data_off && (n - data_off) % 7 != 0 && n != data_end - 1)
            continue;
        write_raw(cut, buf, n);
        g = NULL;
        int rc = tw_gguf_open(cut, &g);
        tried++;
        if (n < data_end) {
            if (rc == 0 || strncmp(tw_error_msg(), cut, strlen(cut)) != 0) {
                if (bad++ < 5)
                    fprintf(stderr, "truncated at %zu: rc %d: %s\n", n, rc, tw_error_msg());
            }
        } else if (rc != 0) { // only the padding after the last tensor is missing
            if (bad++ < 5)
                fprintf(stderr, "truncated at %zu (after the data): %s\n", n, tw_error_msg());
        }
        tw_gguf_close(g);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(tried > (int)data_off);
    // the same through tw_gguf_open_buffer, every offset (a fresh allocation each time, so
    // that ASan sees a read past the end)
    bad = 0;
    for (size_t n = 0; n < data_end; n++) {
        char *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        g = NULL;
        if (tw_gguf_open_buffer("cut.gguf", copy, n, &g) == 0 ||
            strncmp(tw_error_msg(), "cut.gguf: ", 10) != 0)
            bad++;
        tw_gguf_close(g);
        free(copy);
    }
    CHECK_EQ_INT(bad, 0);
    tw_free(buf);
}

// ---- corrupted files

static void expect_bad(const tw_str *b, const char *name, int code, const char *what)
{
    char path[128];
    path_in(path, sizeof path, name);
    write_raw(path, b->v.data, b->v.len);
    tw_gguf *g = NULL;
    int rc = tw_gguf_open(path, &g);
    CHECK_EQ_INT(rc, code);
    CHECK(g == NULL);
    const char *msg = tw_error_msg();
    if (strncmp(msg, path, strlen(path)) != 0 || !strstr(msg, what)) {
        fprintf(stderr, "%s: unexpected message: %s (wanted \"%s\")\n", name, msg, what);
        CHECK(0);
    }
    tw_gguf_close(g);
}

// A valid file with one key and one F32 tensor of 4 weights; each case changes one thing.
static void base_file(tw_str *b, uint32_t version, const char *tname, uint32_t n_dims,
                      const uint64_t *dims, uint32_t type, uint64_t off)
{
    tw_str_clear(b);
    put_header(b, version, 1, 1);
    put_str(b, "general.name");
    put_u32(b, 8);
    put_str(b, "tiny");
    put_tinfo(b, tname, n_dims, dims, type, off);
    put_pad(b, 32);
    for (int i = 0; i < 16; i++)
        tw_str_putc(b, (char)i);
    put_pad(b, 32);
}

static void test_corruption(void)
{
    tw_str b;
    tw_str_init(&b);
    static const uint64_t d4[] = { 4 };
    const char *tn = "blk.0.attn_q.weight";

    base_file(&b, 3, tn, 1, d4, 0, 0);
    tw_gguf *g = NULL;
    CHECK_OK(tw_gguf_open_buffer("base.gguf", b.v.data, b.v.len, &g)); // the base is valid
    tw_gguf_close(g);

    ((char *)b.v.data)[3] = 'X';
    expect_bad(&b, "magic.gguf", TW_EFORMAT, "not a GGUF file");
    base_file(&b, 4, tn, 1, d4, 0, 0);
    expect_bad(&b, "v4.gguf", TW_EUNSUPPORTED, "version 4");
    base_file(&b, 1, tn, 1, d4, 0, 0);
    expect_bad(&b, "v1.gguf", TW_EUNSUPPORTED, "version 1");
    base_file(&b, 3u << 24, tn, 1, d4, 0, 0);
    expect_bad(&b, "be.gguf", TW_EUNSUPPORTED, "big-endian");
    base_file(&b, 3, tn, 5, (uint64_t[]){ 4, 1, 1, 1, 1 }, 0, 0);
    expect_bad(&b, "ndims5.gguf", TW_EFORMAT, "tensor 0 \"blk.0.attn_q.weight\": 5 dimensions");
    base_file(&b, 3, tn, 1, d4, 0, 32);
    expect_bad(&b, "offset.gguf", TW_EFORMAT,
               "tensor 0 \"blk.0.attn_q.weight\": data (offset 32, 16 bytes) run past the end");
    base_file(&b, 3, tn, 1, (uint64_t[]){ 9 }, 0, 0);
    expect_bad(&b, "size.gguf", TW_EFORMAT, "\"blk.0.attn_q.weight\": data (offset 0, 36 bytes)");
    base_file(&b, 3, tn, 1, d4, 0, 8);
    expect_bad(&b, "misaligned.gguf", TW_EFORMAT, "not a multiple of the alignment 32");
    base_file(&b, 3, tn, 1, d4, 16, 0);
    expect_bad(&b, "iq2.gguf", TW_EUNSUPPORTED, "\"blk.0.attn_q.weight\": type 16 (iq2_xxs)");
    base_file(&b, 3, tn, 1, d4, 99, 0);
    expect_bad(&b, "type99.gguf", TW_EUNSUPPORTED, "type 99 (unknown) is not supported");
    base_file(&b, 3, tn, 1, (uint64_t[]){ 33 }, TW_GGML_TYPE_Q4_0, 0);
    expect_bad(&b, "block.gguf", TW_EFORMAT, "not a multiple of q4_0's block of 32");
    base_file(&b, 3, tn, 2, (uint64_t[]){ 1ull << 40, 1ull << 40 }, 0, 0);
    expect_bad(&b, "dims.gguf", TW_EOVERFLOW, "overflows");
    base_file(&b, 3, tn, 1, (uint64_t[]){ 1ull << 63 }, TW_GGML_TYPE_I8, 0);
    expect_bad(&b, "dim63.gguf", TW_EOVERFLOW, "overflows");

    // a string length of 2^63 (count * size overflow), in a value and in a key
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "general.name");
    put_u32(&b, 8);
    put_u64(&b, 1ull << 63);
    tw_str_puts(&b, "tiny");
    expect_bad(&b, "strlen.gguf", TW_EFORMAT,
               "key 0 \"general.name\": the string: length "
               "9223372036854775808");
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_u64(&b, 1ull << 63);
    put_u64(&b, 0); // room for a key/value, as far as the counts go
    put_u64(&b, 0);
    expect_bad(&b, "keylen.gguf", TW_EFORMAT, "key 0: the key: length 9223372036854775808");
    // an array of 2^61 u64 (count * 8 wraps to 0) and of 2^62 strings
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "a");
    put_u32(&b, 9);
    put_u32(&b, 10);
    put_u64(&b, 1ull << 61);
    put_u64(&b, 0);
    expect_bad(&b, "arrcount.gguf", TW_EFORMAT,
               "key 0 \"a\": an array of 2305843009213693952 u64");
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "tokenizer.ggml.tokens");
    put_u32(&b, 9);
    put_u32(&b, 8);
    put_u64(&b, 1ull << 62);
    put_str(&b, "x");
    expect_bad(&b, "strcount.gguf", TW_EFORMAT, "\"tokenizer.ggml.tokens\": an array of");
    // counts in the header no file could hold
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1ull << 62);
    expect_bad(&b, "kvcount.gguf", TW_EFORMAT, "cannot fit");
    tw_str_clear(&b);
    put_header(&b, 3, UINT64_MAX, 0);
    expect_bad(&b, "tcount.gguf", TW_EFORMAT, "cannot fit");
    // a duplicate key and a duplicate tensor name
    tw_str_clear(&b);
    put_header(&b, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        put_str(&b, "general.name");
        put_u32(&b, 4);
        put_u32(&b, (uint32_t)i);
    }
    expect_bad(&b, "dupkey.gguf", TW_EFORMAT, "key 1 \"general.name\": a second value");
    tw_str_clear(&b);
    put_header(&b, 3, 2, 0);
    put_tinfo(&b, "w", 1, d4, 0, 0);
    put_tinfo(&b, "w", 1, d4, 0, 32);
    put_pad(&b, 32);
    for (int i = 0; i < 64; i++)
        tw_str_putc(&b, 0);
    expect_bad(&b, "dupname.gguf", TW_EFORMAT, "tensor 1 \"w\": a second tensor");
    // unknown types, a bool that is not 0 or 1, a NUL inside a key, nesting too deep
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 13);
    put_u32(&b, 0);
    expect_bad(&b, "vtype.gguf", TW_EFORMAT, "key 0 \"k\": unknown value type 13");
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 9);
    put_u32(&b, 99);
    put_u64(&b, 0);
    expect_bad(&b, "atype.gguf", TW_EFORMAT, "unknown array element type 99");
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 7);
    tw_str_putc(&b, 2);
    expect_bad(&b, "bool.gguf", TW_EFORMAT, "bool value 2");
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_u64(&b, 3);
    tw_str_append(&b, "a\0b", 3);
    put_u32(&b, 4);
    put_u32(&b, 0);
    expect_bad(&b, "nulkey.gguf", TW_EFORMAT, "key 0: the key holds a NUL byte");
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, 9);
    for (int i = 0; i < TW_GGUF_MAX_NESTING; i++) {
        put_u32(&b, 9);
        put_u64(&b, 1);
    }
    put_u32(&b, 4);
    put_u64(&b, 0);
    expect_bad(&b, "deep.gguf", TW_EFORMAT, "\"deep\": arrays nested deeper than 8");
    // general.alignment: not a power of two, zero, not a u32
    uint32_t aligns[] = { 48, 0 };
    for (int i = 0; i < 2; i++) {
        tw_str_clear(&b);
        put_header(&b, 3, 0, 1);
        put_str(&b, "general.alignment");
        put_u32(&b, 4);
        put_u32(&b, aligns[i]);
        expect_bad(&b, "align.gguf", TW_EFORMAT, "is not a power of two");
    }
    tw_str_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, 10);
    put_u64(&b, 32);
    expect_bad(&b, "align64.gguf", TW_EFORMAT, "\"general.alignment\": expected u32, found u64");
    // empty and missing files
    tw_str_clear(&b);
    expect_bad(&b, "empty.gguf", TW_EFORMAT, "the magic (4 bytes at offset 0) runs past the end");
    char path[128];
    path_in(path, sizeof path, "missing.gguf");
    CHECK_EQ_INT(tw_gguf_open(path, &g), TW_ENOENT);
    tw_str_free(&b);
}

// ---- the writer's own checks

static void test_writer_errors(void)
{
    tw_gguf_writer w;
    tw_gguf_writer_init(&w);
    uint64_t d[] = { 32 };
    uint8_t data[34] = { 0 };
    CHECK_OK(tw_gguf_writer_add_u32(&w, "k", 1));
    CHECK_EQ_INT(tw_gguf_writer_add_u32(&w, "k", 2), TW_EEXIST);
    CHECK_EQ_INT(tw_gguf_writer_add_str(&w, "k", "x", 1), TW_EEXIST);
    CHECK_EQ_INT(tw_gguf_writer_add_u32(&w, "general.alignment", 24), TW_EINVAL);
    CHECK_EQ_INT(tw_gguf_writer_add_str(&w, "general.alignment", "32", 2), TW_EINVAL);
    CHECK_EQ_INT(tw_gguf_writer_add_kv(&w, "s", TW_GGUF_TYPE_STRING, "x"), TW_EINVAL);
    const char *bad_strs[] = { "a", NULL };
    struct tw_gguf_warr bad = { TW_GGUF_TYPE_STRING, bad_strs, 2 };
    size_t meta = tw_str_len(&w.meta);
    CHECK_EQ_INT(tw_gguf_writer_add_arr(&w, "arr", &bad), TW_EINVAL);
    CHECK_EQ_INT(tw_str_len(&w.meta), meta); // a failed add leaves nothing behind
    CHECK_EQ_INT(w.n_kv, 1);
    CHECK_OK(tw_gguf_writer_add_tensor(&w, "q", TW_GGML_TYPE_Q8_0, d, 1, data, 34));
    CHECK_EQ_INT(tw_gguf_writer_add_tensor(&w, "q", TW_GGML_TYPE_Q8_0, d, 1, data, 34), TW_EEXIST);
    CHECK_EQ_INT(tw_gguf_writer_add_tensor(&w, "r", TW_GGML_TYPE_Q8_0, d, 1, data, 33), TW_EINVAL);
    CHECK_EQ_INT(tw_gguf_writer_add_tensor(&w, "r", (enum tw_ggml_type)16, d, 1, data, 34),
                 TW_EUNSUPPORTED);
    CHECK_EQ_INT(tw_gguf_writer_add_tensor(&w, "r", TW_GGML_TYPE_F32, d, 5, data, 34), TW_EINVAL);
    // a folder that does not exist: an error naming the path, nothing left behind
    char path[128];
    path_in(path, sizeof path, "no/such/dir/x.gguf");
    CHECK(tw_gguf_write(&w, path) < 0);
    CHECK(strstr(tw_error_msg(), path) != NULL);
    path_in(path, sizeof path, "w.gguf");
    CHECK_OK(tw_gguf_write(&w, path));
    tw_gguf *g = NULL;
    CHECK_OK(tw_gguf_open(path, &g));
    if (g) {
        CHECK_EQ_INT(tw_gguf_key_count(g), 1);
        CHECK_EQ_INT(tw_gguf_tensor_count(g), 1);
        tw_gguf_close(g);
    }
    tw_gguf_writer_free(&w);
}

// Every allocation of an open fails in turn: each failure is a clean TW_ENOMEM, no leak.
static void test_alloc_failures(void)
{
    char path[128];
    path_in(path, sizeof path, "full.gguf");
    write_full(path, 64);
    long live = tw_mem_live();
    int failures = 0;
    for (long k = 1; k < 10000; k++) {
        tw_gguf *g = NULL;
        tw_mem_fail_after(k);
        int rc = tw_gguf_open(path, &g);
        tw_mem_fail_after(0);
        if (rc == 0) {
            tw_gguf_close(g);
            break;
        }
        failures++;
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK(failures > 3);
}

// ---- tokenizer vocabularies

static void test_vocab_small(void)
{
    char path[128];
    path_in(path, sizeof path, "vocab.gguf");
    const char *tokens[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81h", "i", "\xe2\x96\x81hi" };
    // "▁hi" scores best: vocab.c's spm_merges calls qsort(NULL, 0, ...) (UBSan: a null
    // argument) when the best-scored pieces have no split into two pieces
    float scores[] = { -1000, -1000, -1000, -1, -2, -0.5f };
    int32_t types[] = { 2, 3, 3, 1, 1, 1 };
    const char *merges[] = { "\xe2\x96\x81h i" };
    tw_gguf_writer w;
    tw_gguf_writer_init(&w);
    CHECK_OK(tw_gguf_writer_add_str(&w, "tokenizer.ggml.model", "llama", 5));
    CHECK_OK(tw_gguf_writer_add_arr(&w, "tokenizer.ggml.tokens",
                                    &(struct tw_gguf_warr){ TW_GGUF_TYPE_STRING, tokens, 6 }));
    CHECK_OK(tw_gguf_writer_add_arr(&w, "tokenizer.ggml.scores",
                                    &(struct tw_gguf_warr){ TW_GGUF_TYPE_F32, scores, 6 }));
    CHECK_OK(tw_gguf_writer_add_arr(&w, "tokenizer.ggml.token_type",
                                    &(struct tw_gguf_warr){ TW_GGUF_TYPE_I32, types, 6 }));
    CHECK_OK(tw_gguf_writer_add_arr(&w, "tokenizer.ggml.merges",
                                    &(struct tw_gguf_warr){ TW_GGUF_TYPE_STRING, merges, 1 }));
    CHECK_OK(tw_gguf_writer_add_u32(&w, "tokenizer.ggml.bos_token_id", 1));
    CHECK_OK(tw_gguf_writer_add_u32(&w, "tokenizer.ggml.eos_token_id", 2));
    CHECK_OK(tw_gguf_writer_add_u32(&w, "tokenizer.ggml.unknown_token_id", 0));
    CHECK_OK(tw_gguf_writer_add_u32(&w, "tokenizer.ggml.padding_token_id", 6)); // not an id
    int64_t sep = 5;
    CHECK_OK(
        tw_gguf_writer_add_kv(&w, "tokenizer.ggml.seperator_token_id", TW_GGUF_TYPE_I64, &sep));
    bool f = false;
    CHECK_OK(tw_gguf_writer_add_kv(&w, "tokenizer.ggml.add_space_prefix", TW_GGUF_TYPE_BOOL, &f));
    CHECK_OK(tw_gguf_writer_add_str(&w, "tokenizer.chat_template", "{{ x }}", 7));
    CHECK_OK(tw_gguf_write(&w, path));
    tw_gguf_writer_free(&w);

    tw_gguf *g = NULL;
    REQUIRE(tw_gguf_open(path, &g) == 0);
    tw_arena a;
    tw_arena_init(&a, 0);
    struct tw_tokenizer_vocab v;
    CHECK_OK(tw_gguf_tokenizer_vocab(g, &v, &a));
    CHECK_EQ_STR(v.model, "llama");
    CHECK(v.pre == NULL);
    CHECK_EQ_INT(v.n_tokens, 6);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_STR(v.tokens[i], tokens[i]);
        CHECK(v.scores[i] == scores[i]);
        CHECK_EQ_INT(v.types[i], types[i]);
    }
    CHECK_EQ_INT(v.n_merges, 1);
    CHECK_EQ_STR(v.merges[0], merges[0]);
    CHECK_EQ_INT(v.bos, 1);
    CHECK_EQ_INT(v.eos, 2);
    CHECK_EQ_INT(v.unk, 0);
    CHECK_EQ_INT(v.pad, -1);
    CHECK_EQ_INT(v.cls, -1);
    CHECK_EQ_INT(v.sep, 5);
    CHECK(v.add_bos);           // llama's default
    CHECK(!v.add_space_prefix); // as written
    CHECK_EQ_STR(v.chat_template, "{{ x }}");
    tw_tokenizer *t = NULL;
    CHECK_OK(tw_tokenizer_from_vocab(&v, &t));
    tw_tokenizer_free(t);
    tw_arena_free(&a);
    tw_gguf_close(g);

    // bad vocabularies: the arena keeps nothing, the message names the file and the key
    struct {
        const char *key;
        struct tw_gguf_warr arr;
        const char *what;
    } cases[] = {
        { "tokenizer.ggml.scores", { TW_GGUF_TYPE_F32, scores, 5 }, "5 entries for 6 tokens" },
        { "tokenizer.ggml.scores", { TW_GGUF_TYPE_STRING, tokens, 6 }, "array of floats" },
        { "tokenizer.ggml.token_type", { TW_GGUF_TYPE_F32, scores, 6 }, "array of integers" },
        { "tokenizer.ggml.merges", { TW_GGUF_TYPE_I32, types, 6 }, "array of string" },
    };
    for (size_t c = 0; c < N(cases) + 2; c++) {
        tw_gguf_writer_init(&w);
        if (c != N(cases)) // the last-but-one case has no model
            CHECK_OK(tw_gguf_writer_add_str(&w, "tokenizer.ggml.model", "gpt2", 4));
        if (c == N(cases) + 1) // the last one has tokens that are not strings
            CHECK_OK(tw_gguf_writer_add_arr(&w, "tokenizer.ggml.tokens",
                                            &(struct tw_gguf_warr){ TW_GGUF_TYPE_I32, types, 6 }));
        else
            CHECK_OK(
                tw_gguf_writer_add_arr(&w, "tokenizer.ggml.tokens",
                                       &(struct tw_gguf_warr){ TW_GGUF_TYPE_STRING, tokens, 6 }));
        if (c < N(cases))
            CHECK_OK(tw_gguf_writer_add_arr(&w, cases[c].key, &cases[c].arr));
        CHECK_OK(tw_gguf_write(&w, path));
        tw_gguf_writer_free(&w);
        REQUIRE(tw_gguf_open(path, &g) == 0);
        tw_arena_init(&a, 0);
        memset(&v, 0x5a, sizeof v);
        struct tw_tokenizer_vocab before = v;
        CHECK(tw_gguf_tokenizer_vocab(g, &v, &a) < 0);
        CHECK(memcmp(&v, &before, sizeof v) == 0);
        CHECK_EQ_INT(tw_arena_used(&a), 0);
        const char *want = c < N(cases)    ? cases[c].what
                           : c == N(cases) ? "\"tokenizer.ggml.model\" is missing"
                                           : "\"tokenizer.ggml.tokens\": expected an array";
        if (strncmp(tw_error_msg(), path, strlen(path)) != 0 || !strstr(tw_error_msg(), want)) {
            fprintf(stderr, "vocab case %zu: %s\n", c, tw_error_msg());
            CHECK(0);
        }
        tw_arena_free(&a);
        tw_gguf_close(g);
    }
}

// llama3's tokenizer.json as a GGUF converter writes it: model "gpt2", pre "llama-bpe",
// tokens by id (added tokens of type 3), merges as "a b".
static void test_vocab_llama3(void)
{
    char src[1024], path[128];
    snprintf(src, sizeof src, "%s/.cache/data/tokenizers/llama3/tokenizer.json", root);
    path_in(path, sizeof path, "llama3.gguf");
    json_t *tj = NULL;
    CHECK_OK(tw_json_load_file(src, 0, &tj));
    if (!tj)
        return;
    const json_t *model = json_object_get(tj, "model");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *added = json_object_get(tj, "added_tokens");
    const json_t *jm = json_object_get(model, "merges");
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)vocab, key, val)
    {
        if ((size_t)json_integer_value(val) + 1 > n)
            n = (size_t)json_integer_value(val) + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        size_t id = (size_t)json_integer_value(json_object_get(json_array_get(added, i), "id"));
        if (id + 1 > n)
            n = id + 1;
    }
    const char **tokens = calloc(n, sizeof *tokens);
    int32_t *types = calloc(n, sizeof *types);
    json_object_foreach((json_t *)vocab, key, val)
    {
        tokens[json_integer_value(val)] = key;
        types[json_integer_value(val)] = 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *e = json_array_get(added, i);
        size_t id = (size_t)json_integer_value(json_object_get(e, "id"));
        tokens[id] = json_string_value(json_object_get(e, "content"));
        types[id] = 3;
    }
    for (size_t i = 0; i < n; i++)
        REQUIRE(tokens[i] != NULL);
    size_t n_merges = json_array_size(jm);
    char **merges = calloc(n_merges, sizeof *merges);
    for (size_t i = 0; i < n_merges; i++) {
        const json_t *m = json_array_get(jm, i);
        if (json_is_string(m)) {
            merges[i] = strdup(json_string_value(m));
        } else {
            const char *l = json_string_value(json_array_get(m, 0));
            const char *r = json_string_value(json_array_get(m, 1));
            merges[i] = malloc(strlen(l) + strlen(r) + 2);
            sprintf(merges[i], "%s %s", l, r);
        }
    }
    tw_gguf_writer w;
    tw_gguf_writer_init(&w);
    CHECK_OK(tw_gguf_writer_add_str(&w, "general.architecture", "llama", 5));
    CHECK_OK(tw_gguf_writer_add_str(&w, "tokenizer.ggml.model", "gpt2", 4));
    CHECK_OK(tw_gguf_writer_add_str(&w, "tokenizer.ggml.pre", "llama-bpe", 9));
    CHECK_OK(tw_gguf_writer_add_arr(&w, "tokenizer.ggml.tokens",
                                    &(struct tw_gguf_warr){ TW_GGUF_TYPE_STRING, tokens, n }));
    CHECK_OK(tw_gguf_writer_add_arr(&w, "tokenizer.ggml.token_type",
                                    &(struct tw_gguf_warr){ TW_GGUF_TYPE_I32, types, n }));
    CHECK_OK(
        tw_gguf_writer_add_arr(&w, "tokenizer.ggml.merges",
                               &(struct tw_gguf_warr){ TW_GGUF_TYPE_STRING, merges, n_merges }));
    CHECK_OK(tw_gguf_writer_add_u32(&w, "tokenizer.ggml.bos_token_id", 128000));
    CHECK_OK(tw_gguf_writer_add_u32(&w, "tokenizer.ggml.eos_token_id", 128001));
    bool f = false;
    CHECK_OK(tw_gguf_writer_add_kv(&w, "tokenizer.ggml.add_bos_token", TW_GGUF_TYPE_BOOL, &f));
    float x[8] = { 0 };
    CHECK_OK(tw_gguf_writer_add_tensor(&w, "output_norm.weight", TW_GGML_TYPE_F32,
                                       (uint64_t[]){ 8 }, 1, x, sizeof x));
    CHECK_OK(tw_gguf_write(&w, path));
    tw_gguf_writer_free(&w);

    tw_gguf *g = NULL;
    CHECK_OK(tw_gguf_open(path, &g));
    tw_arena a;
    tw_arena_init(&a, 0);
    struct tw_tokenizer_vocab v;
    tw_tokenizer *t = NULL;
    if (g) {
        CHECK_OK(tw_gguf_tokenizer_vocab(g, &v, &a));
        CHECK_EQ_STR(v.model, "gpt2");
        CHECK_EQ_STR(v.pre, "llama-bpe");
        CHECK_EQ_INT(v.n_tokens, n);
        CHECK_EQ_INT(v.n_merges, n_merges);
        CHECK(v.scores == NULL);
        CHECK(!v.add_bos);
        int diff = 0;
        for (size_t i = 0; i < n && v.n_tokens == n; i++)
            diff += strcmp(v.tokens[i], tokens[i]) != 0 || v.types[i] != types[i];
        for (size_t i = 0; i < n_merges && v.n_merges == n_merges; i++)
            diff += strcmp(v.merges[i], merges[i]) != 0;
        CHECK_EQ_INT(diff, 0);
        CHECK_OK(tw_tokenizer_from_vocab(&v, &t));
    }
    if (t) {
        static const char text[] = "Fellow-Citizens of the Senate and House of Representatives:";
        static const int32_t want[] = { 37,    5412, 7813, 275, 30060, 315, 279,
                                        10092, 323,  4783, 315, 40845, 25 };
        tw_vec ids;
        tw_vec_init(&ids, sizeof(int32_t));
        CHECK_OK(tw_tokenizer_encode(t, text, strlen(text), 0, &ids, NULL));
        CHECK_EQ_INT(ids.len, N(want));
        for (size_t i = 0; i < N(want) && ids.len == N(want); i++)
            CHECK_EQ_INT(TW_VEC_AT(&ids, int32_t, i), want[i]);
        tw_str back;
        tw_str_init(&back);
        CHECK_OK(tw_tokenizer_decode(t, ids.data, ids.len, 0, &back));
        CHECK_EQ_STR(tw_str_cstr(&back), text);
        tw_str_free(&back);
        tw_vec_free(&ids);
        tw_tokenizer_free(t);
    }
    tw_arena_free(&a);
    tw_gguf_close(g);
    for (size_t i = 0; i < n_merges; i++)
        free(merges[i]);
    free(merges);
    free(tokens);
    free(types);
    json_decref(tj);
}

int main(void)
{
    root = test_source_dir();
    snprintf(dir, sizeof dir, "/tmp/twin-test-gguf-XXXXXX");
    REQUIRE(mkdtemp(dir) != NULL);
    make_tensor_bytes();
    test_layout();
    test_roundtrip(32, false);
    test_roundtrip(32, true);
    test_roundtrip(64, false);
    test_roundtrip(128, false);
    test_truncation();
    test_corruption();
    test_writer_errors();
    test_alloc_failures();
    test_vocab_small();
    test_vocab_llama3();
    for (size_t i = 0; i < N_SPECS; i++)
        free(tensor_bytes[i]);
    tw_tokenizer_thread_cleanup();
    tw_remove_tree(dir);
    return check_report("model_test_gguf");
}

// Fuzzes model/gguf's reader: the input is written to a file and opened with tw_gguf_open;
// when it opens, every key is read with its typed getters (and a wrong one), every array
// element is visited (nested arrays too), every tensor's first and last byte is touched, and
// the tokenizer vocabulary is extracted. tw_gguf_open_buffer must agree with tw_gguf_open.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/error.h"
#include "model/gguf.h"
#include "text/tokenizer.h"

static char path[64];
static volatile uint8_t sink;

static void touch(const void *p, size_t n)
{
    if (n > 0) {
        sink ^= ((const volatile uint8_t *)p)[0];
        sink ^= ((const volatile uint8_t *)p)[n - 1];
    }
}

static void walk_array(const tw_gguf *g, const struct tw_gguf_arr *a, int depth)
{
    if (depth > TW_GGUF_MAX_NESTING)
        abort(); // the reader let a deeper array through
    for (uint64_t i = 0; i < a->count; i++) {
        int64_t iv;
        double d;
        bool b;
        const char *s;
        size_t len;
        struct tw_gguf_arr sub;
        int rc;
        switch (a->type) {
        case TW_GGUF_TYPE_STRING:
            if (tw_gguf_arr_get_str(g, a, i, &s, &len) != 0)
                abort();
            touch(s, len);
            break;
        case TW_GGUF_TYPE_ARRAY:
            if (tw_gguf_arr_get_arr(g, a, i, &sub) != 0)
                abort();
            walk_array(g, &sub, depth + 1);
            break;
        case TW_GGUF_TYPE_F32:
        case TW_GGUF_TYPE_F64:
            if (tw_gguf_arr_get_float(g, a, i, &d) != 0)
                abort();
            break;
        case TW_GGUF_TYPE_BOOL:
            if (tw_gguf_arr_get_bool(g, a, i, &b) != 0)
                abort();
            sink ^= (uint8_t)b;
            break;
        default:
            rc = tw_gguf_arr_get_int(g, a, i, &iv);
            if (rc != 0 && !(rc == TW_EOVERFLOW && a->type == TW_GGUF_TYPE_U64))
                abort();
            break;
        }
    }
    // past the end, and a getter of the wrong kind
    int64_t iv;
    if (tw_gguf_arr_get_int(g, a, a->count, &iv) == 0)
        abort();
    const char *s;
    size_t len;
    if (a->type != TW_GGUF_TYPE_STRING && a->count > 0 &&
        tw_gguf_arr_get_str(g, a, 0, &s, &len) == 0)
        abort();
}

static void walk_keys(const tw_gguf *g)
{
    for (size_t i = 0; i < tw_gguf_key_count(g); i++) {
        const char *key = tw_gguf_key_name(g, i);
        enum tw_gguf_type type = tw_gguf_key_type(g, i);
        if (!key || tw_gguf_find_key(g, key) != (int64_t)i)
            abort();
        uint32_t u32;
        uint64_t u64;
        int64_t i64;
        float f;
        bool b;
        const char *s;
        size_t len;
        struct tw_gguf_arr a;
        if ((tw_gguf_get_u32(g, key, &u32) == 0) != (type == TW_GGUF_TYPE_U32) ||
            (tw_gguf_get_u64(g, key, &u64) == 0) != (type == TW_GGUF_TYPE_U64) ||
            (tw_gguf_get_i64(g, key, &i64) == 0) != (type == TW_GGUF_TYPE_I64) ||
            (tw_gguf_get_f32(g, key, &f) == 0) != (type == TW_GGUF_TYPE_F32) ||
            (tw_gguf_get_bool(g, key, &b) == 0) != (type == TW_GGUF_TYPE_BOOL))
            abort();
        tw_gguf_get_int(g, key, &i64);
        if (tw_gguf_get_str(g, key, &s, &len) == 0)
            touch(s, len);
        if (tw_gguf_get_arr(g, key, &a) == 0)
            walk_array(g, &a, 1);
        else if (type == TW_GGUF_TYPE_ARRAY)
            abort();
    }
}

static void walk_tensors(const tw_gguf *g, size_t size)
{
    for (size_t i = 0; i < tw_gguf_tensor_count(g); i++) {
        const struct tw_gguf_tensor *t = tw_gguf_tensor_at(g, i);
        if (!t || tw_gguf_find_tensor(g, t->name) != t || t->n_dims > TW_GGUF_MAX_DIMS ||
            t->offset % tw_gguf_alignment(g) != 0 ||
            tw_gguf_data_offset(g) + t->offset + t->size > size)
            abort();
        size_t want;
        if (tw_ggml_tensor_size(t->type, t->dims, t->n_dims, &want) != 0 || want != t->size)
            abort();
        touch(t->data, t->size);
    }
}

static void walk_vocab(const tw_gguf *g)
{
    tw_arena a;
    tw_arena_init(&a, 0);
    struct tw_tokenizer_vocab v;
    if (tw_gguf_tokenizer_vocab(g, &v, &a) == 0) {
        for (size_t i = 0; i < v.n_tokens; i++)
            sink ^= (uint8_t)strlen(v.tokens[i]);
        for (size_t i = 0; i < v.n_merges; i++)
            sink ^= (uint8_t)strlen(v.merges[i]);
        if (v.scores && v.n_tokens)
            sink ^= (uint8_t)(v.scores[v.n_tokens - 1] > 0);
        if (v.types && v.n_tokens)
            sink ^= (uint8_t)v.types[v.n_tokens - 1];
        if ((v.bos >= 0 && (size_t)v.bos >= v.n_tokens) || !v.model)
            abort();
    } else if (tw_arena_used(&a) != 0) {
        abort(); // a failure must leave the arena as it was
    }
    tw_arena_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/twin-fuzz-gguf-%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();

    tw_gguf *g = NULL;
    int rc = tw_gguf_open(path, &g);
    if (rc != 0 && strncmp(tw_error_msg(), path, strlen(path)) != 0)
        abort(); // every error names the file
    tw_gguf *gb = NULL;
    int rcb = tw_gguf_open_buffer("buffer", data, size, &gb);
    if (rc != rcb)
        abort();
    tw_gguf_close(gb);
    if (rc == 0) {
        walk_keys(g);
        walk_tensors(g, size);
        walk_vocab(g);
        tw_gguf_close(g);
    }
    unlink(path);
    return 0;
}

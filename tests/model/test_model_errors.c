// Bad models give errors that name the file and the tensor, never a crash: a config whose
// shapes contradict the weights, an unknown architecture, a missing tensor, a dtype twin does
// not run, a truncated file, impossible head counts. Each case is a copy of the golden Llama
// folder with one thing broken, in a fresh folder under /tmp.
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "check.h"
#include "golden_models.h"
#include "model/model.h"

static char root[] = "/tmp/twin-test-model-errors-XXXXXX";
static char src[4096];

// A copy of the golden llama folder at root/name.
static const char *copy_model(const char *name)
{
    static char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    REQUIRE(tw_mkdir_p(dir, 0755) == 0);
    static const char *const files[] = { "config.json", "model.safetensors", "tokenizer.json",
                                         "tokenizer_config.json" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char a[8400], b[8400];
        snprintf(a, sizeof a, "%s/%s", src, files[i]);
        snprintf(b, sizeof b, "%s/%s", dir, files[i]);
        char *data;
        size_t len;
        REQUIRE(tw_file_read(a, 64 << 20, &data, &len) == 0);
        REQUIRE(tw_file_write_atomic(b, data, len) == 0);
        tw_free(data);
    }
    return dir;
}

// Sets config.json's key to the JSON value text.
static void set_config(const char *dir, const char *key, const char *value)
{
    char p[8400];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *j, *v;
    REQUIRE(tw_json_load_file(p, 1 << 20, &j) == 0);
    REQUIRE(tw_json_parse("value", value, strlen(value), &v) == 0 || (v = NULL, false));
    json_object_set_new(j, key, v);
    char *text;
    REQUIRE(tw_json_dump(j, JSON_INDENT(2), &text) == 0);
    REQUIRE(tw_file_write_atomic(p, text, strlen(text)) == 0);
    tw_free(text);
    json_decref(j);
}

// Rewrites model.safetensors without `drop` and with `retype` stored as I32 bytes.
static void rewrite_weights(const char *dir, const char *drop, const char *retype)
{
    char p[8400];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    tw_st_file *f;
    REQUIRE(tw_st_open(p, &f) == 0);
    struct tw_st_writer w;
    tw_st_writer_init(&w);
    for (size_t i = 0; i < tw_st_count(f); i++) {
        const struct tw_st_tensor *t = tw_st_tensor_at(f, i);
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        int dt = retype && strcmp(t->name, retype) == 0 ? TW_ST_DTYPE_I32 : t->dtype;
        REQUIRE(tw_st_writer_add(&w, t->name, dt, t->shape, t->n_dims, t->data, t->nbytes) == 0);
    }
    char q[8400];
    snprintf(q, sizeof q, "%s/new.safetensors", dir);
    REQUIRE(tw_st_write(&w, q) == 0);
    tw_st_writer_free(&w);
    tw_st_close(f);
    REQUIRE(rename(q, p) == 0);
}

// Opening dir fails with code and a message holding every given fragment.
static void expect_fail(int line, const char *dir, int code, const char *a, const char *b)
{
    struct tw_model *m = NULL;
    int rc = tw_model_open(dir, &m);
    const char *msg = tw_error_msg();
    bool ok = rc == code && !m && strstr(msg, a) && (!b || strstr(msg, b));
    if (!ok)
        fprintf(stderr, "line %d: rc %d (want %d), message \"%s\"\n", line, rc, code, msg);
    CHECK(ok);
    tw_model_close(m);
}

int main(void)
{
    REQUIRE(mkdtemp(root));
    const char *top = test_source_dir();
    snprintf(src, sizeof src, "%s/tests/golden/models/llama", top);

    const char *d = copy_model("ok");
    struct tw_model *m = NULL;
    CHECK_OK(tw_model_open(d, &m));
    tw_model_close(m);

    d = copy_model("shape");
    set_config(d, "intermediate_size", "96");
    expect_fail(__LINE__, d, TW_EFORMAT, "model.layers.0.mlp.gate_proj.weight",
                "has shape (128, 64), the configuration gives (96, 64)");

    d = copy_model("arch");
    set_config(d, "architectures", "[\"GPT2LMHeadModel\"]");
    expect_fail(__LINE__, d, TW_EUNSUPPORTED, "config.json",
                "\"GPT2LMHeadModel\" is not supported");

    d = copy_model("missing");
    rewrite_weights(d, "model.layers.1.mlp.up_proj.weight", NULL);
    expect_fail(__LINE__, d, TW_EFORMAT, "model.layers.1.mlp.up_proj.weight", "is missing");

    d = copy_model("dtype");
    rewrite_weights(d, NULL, "model.norm.weight");
    expect_fail(__LINE__, d, TW_EUNSUPPORTED, "model.safetensors",
                "\"model.norm.weight\": dtype I32");

    d = copy_model("heads");
    set_config(d, "num_key_value_heads", "3");
    expect_fail(__LINE__, d, TW_EFORMAT, "config.json", "not a multiple of 3 kv heads");

    d = copy_model("zero");
    set_config(d, "num_hidden_layers", "0");
    expect_fail(__LINE__, d, TW_EFORMAT, "config.json", "layer count 0 is out of range");

    d = copy_model("notjson");
    char p[8400];
    snprintf(p, sizeof p, "%s/config.json", d);
    REQUIRE(tw_file_write_atomic(p, "{\"architectures\": [", 19) == 0);
    expect_fail(__LINE__, d, TW_EFORMAT, "config.json", NULL);

    d = copy_model("truncated");
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    REQUIRE(truncate(p, 1000) == 0);
    expect_fail(__LINE__, d, TW_EFORMAT, "model.safetensors", NULL);

    expect_fail(__LINE__, "/nonexistent/model.gguf", TW_ENOENT, "/nonexistent/model.gguf", NULL);

    tw_remove_tree(root);
    CHECK_EQ_INT(tw_mem_live(), 0);
    return check_report("model_test_model_errors");
}

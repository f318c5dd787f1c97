// Tests the JSON helpers: parsing and loading with errors that name the input, line and
// column; the typed and optional getters and their messages; dumping and parsing back; and
// allocation failures injected into jansson (through tw_malloc), which must not leak.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/mem.h"
#include "check.h"

static const char doc[] =
    "{\"name\": \"twin\", \"layers\": 32, \"eps\": 1e-5, \"on\": true,\n"
    " \"nothing\": null, \"width\": 4096.0, \"half\": 2.5, \"huge\": 1e30,\n"
    " \"min\": -9223372036854775808, \"sub\": {\"k\": 3}, \"list\": [1, 2],\n"
    " \"text\": \"h\\u00e9\\u4e16\"}";

static json_t *parse_doc(void)
{
    json_t *v = NULL;
    CHECK_OK(tw_json_parse("config.json", doc, strlen(doc), &v));
    return v;
}

static void test_parse_errors(void)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        { "{\n  \"a\": 1,\n  \"b\": ]\n}",
          "config.json: line 3, column 8: unexpected token near ']'" },
        { "{\"a\":1} x", "config.json: line 1, column 9: end of file expected near 'x'" },
        { "[1, 2", "config.json: line 1, column 5: ']' expected near end of file" },
        { "", "config.json: line 1, column 0: unexpected token near end of file" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = (json_t *)&v; // must stay untouched
        json_t *before = v;
        CHECK_EQ_INT(tw_json_parse("config.json", cases[i].text, strlen(cases[i].text), &v),
                     TW_EFORMAT);
        CHECK_EQ_STR(tw_error_msg(), cases[i].msg);
        CHECK(v == before);
    }
    // Any value may be at the top; the length bounds the input.
    json_t *v = NULL;
    CHECK_OK(tw_json_parse("n", "42 trailing", 2, &v));
    CHECK(json_is_integer(v) && json_integer_value(v) == 42);
    json_decref(v);
    CHECK_EQ_INT(tw_json_parse("n", NULL, 3, &v), TW_EINVAL);
}

static void test_getters(void)
{
    json_t *o = parse_doc();
    if (!o)
        return;
    const char *s = NULL;
    int64_t i = 0;
    double d = 0;
    bool b = false;
    json_t *sub = NULL, *list = NULL;
    CHECK_OK(tw_json_get_str(o, "config.json", "name", &s));
    CHECK_EQ_STR(s, "twin");
    CHECK_OK(tw_json_get_str(o, "config.json", "text", &s));
    CHECK_EQ_STR(s, "h\xc3\xa9\xe4\xb8\x96");
    CHECK_OK(tw_json_get_int(o, "config.json", "layers", &i));
    CHECK_EQ_INT(i, 32);
    CHECK_OK(tw_json_get_int(o, "config.json", "width", &i));
    CHECK_EQ_INT(i, 4096);
    CHECK_OK(tw_json_get_int(o, "config.json", "min", &i));
    CHECK(i == INT64_MIN);
    CHECK_OK(tw_json_get_double(o, "config.json", "eps", &d));
    CHECK(d == 1e-5);
    CHECK_OK(tw_json_get_double(o, "config.json", "layers", &d));
    CHECK(d == 32.0);
    CHECK_OK(tw_json_get_bool(o, "config.json", "on", &b));
    CHECK(b);
    CHECK_OK(tw_json_get_object(o, "config.json", "sub", &sub));
    CHECK_OK(tw_json_get_int(sub, "config.json: sub", "k", &i));
    CHECK_EQ_INT(i, 3);
    CHECK_OK(tw_json_get_array(o, "config.json", "list", &list));
    CHECK_EQ_INT(json_array_size(list), 2);
    json_decref(o);
}

// Each call must fail with TW_EFORMAT and this message, leaving its output alone.
#define CHECK_FAILS(call, out, msg)                     \
    do {                                                \
        __typeof__(out) before_ = out;                  \
        CHECK_EQ_INT(call, TW_EFORMAT);                 \
        CHECK_EQ_STR(tw_error_msg(), msg);              \
        CHECK(memcmp(&before_, &out, sizeof out) == 0); \
    } while (0)

static void test_getter_errors(void)
{
    json_t *o = parse_doc();
    if (!o)
        return;
    const char *s = "keep";
    int64_t i = 7;
    double d = 7;
    bool b = false;
    json_t *j = NULL;
    const char *w = "config.json";
    CHECK_FAILS(tw_json_get_str(o, w, "layers", &s), s,
                "config.json: \"layers\": expected a string, got an integer");
    CHECK_FAILS(tw_json_get_str(o, w, "hidden_size", &s), s,
                "config.json: missing \"hidden_size\"");
    CHECK_FAILS(tw_json_get_str(o, w, "nothing", &s), s,
                "config.json: \"nothing\": expected a string, got null");
    CHECK_FAILS(tw_json_get_int(o, w, "half", &i), i,
                "config.json: \"half\": expected an integer, got 2.5");
    CHECK_FAILS(tw_json_get_int(o, w, "huge", &i), i,
                "config.json: \"huge\": 1e+30 is out of range for an integer");
    CHECK_FAILS(tw_json_get_int(o, w, "name", &i), i,
                "config.json: \"name\": expected an integer, got a string");
    CHECK_FAILS(tw_json_get_double(o, w, "on", &d), d,
                "config.json: \"on\": expected a number, got a boolean");
    CHECK_FAILS(tw_json_get_bool(o, w, "layers", &b), b,
                "config.json: \"layers\": expected a boolean, got an integer");
    CHECK_FAILS(tw_json_get_object(o, w, "list", &j), j,
                "config.json: \"list\": expected an object, got an array");
    CHECK_FAILS(tw_json_get_array(o, w, "sub", &j), j,
                "config.json: \"sub\": expected an array, got an object");
    json_t *list = json_object_get(o, "list");
    CHECK_FAILS(tw_json_get_int(list, "config.json: list", "k", &i), i,
                "config.json: list: expected an object, got an array");
    CHECK_FAILS(tw_json_get_int(NULL, "config.json", "k", &i), i,
                "config.json: expected an object, got nothing");
    json_decref(o);
}

static void test_optional(void)
{
    json_t *o = parse_doc();
    if (!o)
        return;
    const char *s = NULL;
    int64_t i = 0;
    double d = 0;
    bool b = true;
    const char *w = "config.json";
    CHECK_OK(tw_json_opt_str(o, w, "absent", "dflt", &s));
    CHECK_EQ_STR(s, "dflt");
    CHECK_OK(tw_json_opt_str(o, w, "nothing", "null gives default", &s));
    CHECK_EQ_STR(s, "null gives default");
    CHECK_OK(tw_json_opt_str(o, w, "name", "dflt", &s));
    CHECK_EQ_STR(s, "twin");
    CHECK_OK(tw_json_opt_int(o, w, "absent", -5, &i));
    CHECK_EQ_INT(i, -5);
    CHECK_OK(tw_json_opt_int(o, w, "layers", -5, &i));
    CHECK_EQ_INT(i, 32);
    CHECK_OK(tw_json_opt_double(o, w, "nothing", 0.25, &d));
    CHECK(d == 0.25);
    CHECK_OK(tw_json_opt_double(o, w, "half", 0.25, &d));
    CHECK(d == 2.5);
    CHECK_OK(tw_json_opt_bool(o, w, "absent", false, &b));
    CHECK(!b);
    CHECK_OK(tw_json_opt_bool(o, w, "on", false, &b));
    CHECK(b);
    CHECK_FAILS(tw_json_opt_str(o, w, "layers", "dflt", &s), s,
                "config.json: \"layers\": expected a string, got an integer");
    CHECK_FAILS(tw_json_opt_int(o, w, "half", 1, &i), i,
                "config.json: \"half\": expected an integer, got 2.5");
    CHECK_FAILS(tw_json_opt_double(o, w, "name", 1, &d), d,
                "config.json: \"name\": expected a number, got a string");
    CHECK_FAILS(tw_json_opt_bool(o, w, "sub", true, &b), b,
                "config.json: \"sub\": expected a boolean, got an object");
    CHECK_FAILS(tw_json_opt_int(NULL, w, "x", 1, &i), i,
                "config.json: expected an object, got nothing");
    json_decref(o);
}

static void test_dump(void)
{
    tw_json_init(); // the cycle below is built with jansson directly
    json_t *o = parse_doc();
    if (!o)
        return;
    char *s = NULL;
    CHECK_OK(tw_json_dump(json_object_get(o, "sub"), JSON_COMPACT, &s));
    CHECK_EQ_STR(s, "{\"k\":3}");
    tw_free(s);
    CHECK_OK(tw_json_dump(json_object_get(o, "layers"), 0, &s)); // a scalar at the top
    CHECK_EQ_STR(s, "32");
    tw_free(s);
    CHECK_OK(tw_json_dump(json_object_get(o, "list"), JSON_INDENT(2), &s));
    CHECK_EQ_STR(s, "[\n  1,\n  2\n]");
    tw_free(s);
    CHECK_EQ_INT(tw_json_dump(NULL, 0, &s), TW_EINVAL);

    // A value that contains itself is refused (and the cycle broken, or it would leak).
    json_t *a = json_array(), *b = json_object();
    json_array_append(a, b);
    json_object_set(b, "a", a);
    s = NULL;
    CHECK_EQ_INT(tw_json_dump(a, 0, &s), TW_EINVAL);
    CHECK(s == NULL);
    json_object_clear(b);
    json_decref(a);
    json_decref(b);

    // Round trip: dump, parse back, compare.
    CHECK_OK(tw_json_dump(o, JSON_SORT_KEYS | JSON_INDENT(1), &s));
    json_t *back = NULL;
    CHECK_OK(tw_json_parse("dump", s, strlen(s), &back));
    CHECK(json_equal(o, back));
    tw_free(s);
    json_decref(back);
    json_decref(o);
}

static char dir[] = "/tmp/twin_json_XXXXXX";

static const char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static void test_load_file(void)
{
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    json_t *v = NULL;
    const char *path = write_file("config.json", doc);
    CHECK_OK(tw_json_load_file(path, 0, &v));
    int64_t i = 0;
    CHECK_OK(tw_json_get_int(v, path, "layers", &i));
    CHECK_EQ_INT(i, 32);
    json_decref(v);
    CHECK_OK(tw_json_load_file(path, sizeof doc - 1, &v)); // exactly at the limit
    json_decref(v);

    char want[512];
    v = NULL;
    CHECK_EQ_INT(tw_json_load_file(path, sizeof doc - 2, &v), TW_ELIMIT);
    snprintf(want, sizeof want, "%s: %zu bytes, over the limit of %zu bytes", path, sizeof doc - 1,
             sizeof doc - 2);
    CHECK_EQ_STR(tw_error_msg(), want);
    CHECK(v == NULL);

    path = write_file("tokenizer.json", "{\n  \"model\": {\n    \"vocab\": [1,, 2]\n}");
    CHECK_EQ_INT(tw_json_load_file(path, 0, &v), TW_EFORMAT);
    snprintf(want, sizeof want, "%s: line 3, column 17: unexpected token near ','", path);
    CHECK_EQ_STR(tw_error_msg(), want);

    path = write_file("missing.json", "");
    unlink(path);
    CHECK_EQ_INT(tw_json_load_file(path, 0, &v), TW_ENOENT);
    CHECK(strncmp(tw_error_msg(), path, strlen(path)) == 0);
    CHECK_EQ_INT(tw_json_load_file(dir, 0, &v), TW_EIO);
    snprintf(want, sizeof want, "%s: cannot read: Is a directory", dir);
    CHECK_EQ_STR(tw_error_msg(), want);
    CHECK(v == NULL);

    // Allocation failures while reading or parsing the file: TW_ENOMEM, nothing leaked.
    path = write_file("config.json", doc);
    long live = tw_mem_live();
    int k;
    for (k = 1; k < 10000; k++) {
        tw_mem_fail_after(k);
        int rc = tw_json_load_file(path, 0, &v);
        tw_mem_fail_after(0);
        if (rc == 0)
            break;
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK(k > 10);
    json_decref(v);

    unlink(path);
    unlink(write_file("tokenizer.json", ""));
    rmdir(dir);
}

// Fails the k-th allocation for k = 1, 2, ... until the call succeeds: every failure must be
// TW_ENOMEM and leave the live-allocation count where it was.
static void test_alloc_failures(void)
{
    long live = tw_mem_live();
    json_t *v = NULL;
    int k, failures = 0;
    for (k = 1; k < 10000; k++) {
        tw_mem_fail_after(k);
        int rc = tw_json_parse("config.json", doc, strlen(doc), &v);
        tw_mem_fail_after(0);
        if (rc == 0)
            break;
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK_EQ_INT(tw_mem_live(), live);
        failures++;
    }
    CHECK(failures > 10);
    // jansson allocates through tw_malloc: the value's blocks are counted.
    CHECK(tw_mem_live() > live);
    for (k = 1; k < 10000; k++) {
        char *s = NULL;
        tw_mem_fail_after(k);
        int rc = tw_json_dump(v, JSON_SORT_KEYS, &s);
        tw_mem_fail_after(0);
        if (rc == 0) {
            tw_free(s);
            break;
        }
        CHECK_EQ_INT(rc, TW_ENOMEM);
    }
    CHECK(k > 1);
    json_decref(v);
    CHECK_EQ_INT(tw_mem_live(), live);
}

// A failure inside jansson's string buffer used to come back as a successful parse with the
// string cut short: whatever allocation fails, a parse either fails with TW_ENOMEM or gives the
// whole value.
static void test_alloc_failure_never_truncates(void)
{
    char text[600];
    memset(text, 'x', sizeof text);
    memcpy(text, "{\"author\": \"", 12);
    memcpy(text + sizeof text - 3, "\"}", 3);
    json_t *ref = NULL;
    REQUIRE(tw_json_parse("q", text, strlen(text), &ref) == 0);
    for (int k = 1; k < 64; k++) {
        json_t *v = NULL;
        tw_mem_fail_after(k);
        int rc = tw_json_parse("q", text, strlen(text), &v);
        tw_mem_fail_after(0);
        if (rc == 0)
            CHECK(json_equal(v, ref));
        else
            CHECK_EQ_INT(rc, TW_ENOMEM);
        json_decref(v);
    }
    json_decref(ref);
}

int main(void)
{
    long live = tw_mem_live();
    test_parse_errors();
    test_getters();
    test_getter_errors();
    test_optional();
    test_dump();
    test_load_file();
    test_alloc_failures();
    test_alloc_failure_never_truncates();
    CHECK_EQ_INT(tw_mem_live(), live);
    return check_report("json");
}

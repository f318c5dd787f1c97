// Implements json.h: jansson allocating through tw_malloc/tw_free (set once), files read
// with tw_file_read, and getters that turn jansson's types into twin's error messages.
// jansson does not report a failed allocation reliably (a failed string copy comes back as
// "invalid token"), so the allocator notes failures itself, per thread.
#include "base/json.h"

#include <pthread.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;
static _Thread_local bool alloc_failed;

static void *counted_malloc(size_t n)
{
    void *p = tw_malloc(n);
    if (!p)
        alloc_failed = true;
    return p;
}

static void set_alloc_funcs(void)
{
    json_set_alloc_funcs(counted_malloc, tw_free);
}

void tw_json_init(void)
{
    pthread_once(&alloc_once, set_alloc_funcs);
}

static int parse_error(const char *what, const json_error_t *err)
{
    if (alloc_failed || json_error_code(err) == json_error_out_of_memory)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", what);
    if (err->line > 0)
        return tw_error_set(TW_EFORMAT, "%s: line %d, column %d: %s", what, err->line, err->column,
                            err->text);
    return tw_error_set(TW_EFORMAT, "%s: %s", what, err->text);
}

int tw_json_parse(const char *what, const char *buf, size_t len, json_t **out)
{
    return tw_json_parse_flags(what, buf, len, 0, out);
}

int tw_json_parse_flags(const char *what, const char *buf, size_t len, size_t flags, json_t **out)
{
    tw_json_init();
    if (!buf && len)
        return tw_error_set(TW_EINVAL, "%s: no buffer", what);
    json_error_t err;
    alloc_failed = false;
    json_t *v = json_loadb(buf ? buf : "", len, JSON_DECODE_ANY | flags, &err);
    if (!v)
        return parse_error(what, &err);
    if (alloc_failed) { // jansson can drop a failed growth of a string and still succeed
        json_decref(v);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", what);
    }
    *out = v;
    return 0;
}

int tw_json_load_file(const char *path, size_t limit, json_t **out)
{
    return tw_json_load_file_flags(path, limit, 0, out);
}

int tw_json_load_file_flags(const char *path, size_t limit, size_t flags, json_t **out)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = tw_file_read(path, limit ? limit : SIZE_MAX - 1, &buf, &len);
    if (rc != 0)
        return rc;
    rc = tw_json_parse_flags(path, buf, len, flags, out);
    tw_free(buf);
    return rc;
}

const char *tw_json_type_name(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        break;
    }
    return v ? "null" : "nothing";
}

// Finds obj[key]: sets *v (NULL when optional and absent or null) or fails.
static int member(const json_t *obj, const char *what, const char *key, bool optional, json_t **v)
{
    if (!json_is_object(obj))
        return tw_error_set(TW_EFORMAT, "%s: expected an object, got %s", what,
                            tw_json_type_name(obj));
    json_t *m = json_object_get(obj, key);
    if (optional && json_is_null(m))
        m = NULL;
    if (!m && !optional)
        return tw_error_set(TW_EFORMAT, "%s: missing \"%s\"", what, key);
    *v = m;
    return 0;
}

static int wrong_type(const char *what, const char *key, const char *expected, const json_t *v)
{
    return tw_error_set(TW_EFORMAT, "%s: \"%s\": expected %s, got %s", what, key, expected,
                        tw_json_type_name(v));
}

static int as_int(const char *what, const char *key, const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_real(v))
        return wrong_type(what, key, "an integer", v);
    double d = json_real_value(v);
    // 2^63 is exact as a double; a real in [-2^63, 2^63) converts without overflow.
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return tw_error_set(TW_EFORMAT, "%s: \"%s\": %g is out of range for an integer", what, key,
                            d);
    if ((double)(int64_t)d != d)
        return tw_error_set(TW_EFORMAT, "%s: \"%s\": expected an integer, got %g", what, key, d);
    *out = (int64_t)d;
    return 0;
}

static int as_str(const char *what, const char *key, const json_t *v, const char **out)
{
    if (!json_is_string(v))
        return wrong_type(what, key, "a string", v);
    *out = json_string_value(v);
    return 0;
}

static int as_double(const char *what, const char *key, const json_t *v, double *out)
{
    if (!json_is_number(v))
        return wrong_type(what, key, "a number", v);
    *out = json_number_value(v);
    return 0;
}

static int as_bool(const char *what, const char *key, const json_t *v, bool *out)
{
    if (!json_is_boolean(v))
        return wrong_type(what, key, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

// The getters and the optional getters share one shape each; these macros write them.
#define GETTER(name, type, conv)                                              \
    int name(const json_t *obj, const char *what, const char *key, type *out) \
    {                                                                         \
        json_t *v = NULL;                                                     \
        int rc = member(obj, what, key, false, &v);                           \
        return rc ? rc : conv(what, key, v, out);                             \
    }
#define OPT_GETTER(name, type, conv)                                                    \
    int name(const json_t *obj, const char *what, const char *key, type def, type *out) \
    {                                                                                   \
        json_t *v = NULL;                                                               \
        int rc = member(obj, what, key, true, &v);                                      \
        if (rc != 0)                                                                    \
            return rc;                                                                  \
        if (!v) {                                                                       \
            *out = def;                                                                 \
            return 0;                                                                   \
        }                                                                               \
        return conv(what, key, v, out);                                                 \
    }

GETTER(tw_json_get_str, const char *, as_str)
GETTER(tw_json_get_int, int64_t, as_int)
GETTER(tw_json_get_double, double, as_double)
GETTER(tw_json_get_bool, bool, as_bool)
OPT_GETTER(tw_json_opt_str, const char *, as_str)
OPT_GETTER(tw_json_opt_int, int64_t, as_int)
OPT_GETTER(tw_json_opt_double, double, as_double)
OPT_GETTER(tw_json_opt_bool, bool, as_bool)

int tw_json_get_object(const json_t *obj, const char *what, const char *key, json_t **out)
{
    json_t *v = NULL;
    int rc = member(obj, what, key, false, &v);
    if (rc == 0 && !json_is_object(v))
        rc = wrong_type(what, key, "an object", v);
    if (rc == 0)
        *out = v;
    return rc;
}

int tw_json_get_array(const json_t *obj, const char *what, const char *key, json_t **out)
{
    json_t *v = NULL;
    int rc = member(obj, what, key, false, &v);
    if (rc == 0 && !json_is_array(v))
        rc = wrong_type(what, key, "an array", v);
    if (rc == 0)
        *out = v;
    return rc;
}

int tw_json_dump(const json_t *v, size_t flags, char **out)
{
    tw_json_init();
    if (!v)
        return tw_error_set(TW_EINVAL, "json: nothing to encode");
    // Allocated by jansson with tw_malloc (tw_json_init), so the caller frees it with tw_free.
    alloc_failed = false;
    char *s = json_dumps(v, flags | JSON_ENCODE_ANY);
    if (!s && alloc_failed)
        return tw_error_set(TW_ENOMEM, "json: out of memory while encoding");
    if (!s)
        return tw_error_set(TW_EINVAL,
                            "json: cannot encode a value that contains itself or bad UTF-8");
    *out = s;
    return 0;
}

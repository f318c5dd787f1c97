// Fuzzes base/json: tw_json_parse (and the _flags variant with JSON_DECODE_INT_AS_REAL) on
// arbitrary bytes, then every typed getter on every member of every object in the result, and
// tw_json_dump: what was parsed must dump, and the dump must parse back to an equal value.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/mem.h"

// Calls each getter (required and optional) for key on obj; the results only have to be sane.
static void get_all(const json_t *obj, const char *key)
{
    const char *s;
    int64_t i;
    double d;
    bool b;
    json_t *j;
    if (tw_json_get_str(obj, "fuzz", key, &s) == 0 && !s)
        abort();
    tw_json_get_int(obj, "fuzz", key, &i);
    tw_json_get_double(obj, "fuzz", key, &d);
    tw_json_get_bool(obj, "fuzz", key, &b);
    if (tw_json_get_object(obj, "fuzz", key, &j) == 0 && !json_is_object(j))
        abort();
    if (tw_json_get_array(obj, "fuzz", key, &j) == 0 && !json_is_array(j))
        abort();
    tw_json_opt_str(obj, "fuzz", key, NULL, &s);
    tw_json_opt_int(obj, "fuzz", key, -1, &i);
    tw_json_opt_double(obj, "fuzz", key, 0.5, &d);
    tw_json_opt_bool(obj, "fuzz", key, true, &b);
}

static void walk(const json_t *v, int depth)
{
    if (depth > 64)
        return;
    if (json_is_object(v)) {
        const char *key;
        json_t *m;
        json_object_foreach((json_t *)v, key, m)
        {
            get_all(v, key);
            walk(m, depth + 1);
        }
        get_all(v, "absent key"); // missing members take the error path
    } else if (json_is_array(v)) {
        get_all(v, "x"); // not an object: every getter must refuse it
        for (size_t i = 0; i < json_array_size(v); i++)
            walk(json_array_get(v, i), depth + 1);
    }
}

// parse(dump(v)) must give back v.
static void round_trip(const json_t *v, size_t flags)
{
    char *s;
    if (tw_json_dump(v, flags, &s) != 0)
        abort(); // a parsed value is always encodable
    json_t *back;
    if (tw_json_parse("dump", s, strlen(s), &back) != 0 || !json_equal(v, back))
        abort();
    json_decref(back);
    tw_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v;
    if (tw_json_parse("fuzz", (const char *)data, size, &v) == 0) {
        walk(v, 0);
        round_trip(v, JSON_COMPACT);
        round_trip(v, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
        json_decref(v);
    }
    if (tw_json_parse_flags("fuzz", (const char *)data, size, JSON_DECODE_INT_AS_REAL, &v) == 0) {
        walk(v, 0);
        json_decref(v);
    }
    return 0;
}

// Reading JSON Lines items for the model verbs.
#include "cli/jsonl_in.h"

#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mem.h"
#include "cli/text_args.h"

int tw_cli_jsonl_each(const char *what, const char *buf, size_t len,
                      int (*fn)(void *arg, size_t index, const char *text, size_t text_len,
                                const json_t *id),
                      void *arg)
{
    size_t index = 0, line = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - buf) : len;
        line++;
        size_t b = at;
        while (b < end && (buf[b] == ' ' || buf[b] == '\t' || buf[b] == '\r'))
            b++;
        if (b < end) {
            char where[512];
            snprintf(where, sizeof where, "%s:%zu", what, line);
            json_t *j;
            int rc = tw_json_parse(where, buf + at, end - at, &j);
            if (rc != 0)
                return rc;
            const json_t *text = json_is_string(j) ? j : json_object_get(j, "text");
            if (!text && json_is_object(j))
                text = json_object_get(j, "input");
            if (!json_is_string(text)) {
                json_decref(j);
                return tw_error_set(TW_EFORMAT, "%s: expected a string or an object with \"text\"",
                                    where);
            }
            const json_t *id = json_is_object(j) ? json_object_get(j, "id") : NULL;
            rc = fn(arg, index++, json_string_value(text), json_string_length(text), id);
            json_decref(j);
            if (rc != 0)
                return rc;
        }
        at = end + 1;
    }
    return 0;
}

int tw_cli_jsonl_file(const char *path,
                      int (*fn)(void *arg, size_t index, const char *text, size_t text_len,
                                const json_t *id),
                      void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = tw_cli_read_input(path, TW_CLI_INPUT_LIMIT, &buf, &len);
    if (rc == 0)
        rc = tw_cli_jsonl_each(strcmp(path, "-") == 0 ? "stdin" : path, buf, len, fn, arg);
    tw_free(buf);
    return rc;
}

void tw_cli_print_id(const json_t *id)
{
    char *s = NULL;
    if (id && tw_json_dump(id, JSON_COMPACT | JSON_ENCODE_ANY, &s) == 0)
        printf("\"id\": %s, ", s);
    tw_free(s);
}

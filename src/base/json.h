// JSON helpers over jansson (Debian's libjansson): loading a file or a buffer with errors that
// name the input, line and column; typed getters for object members whose errors name the
// input and key; dumping to a string. jansson is set, once, to allocate with tw_malloc and
// tw_free (see tw_json_init), so its blocks are counted and failure injection reaches them.
#ifndef TW_JSON_H
#define TW_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

// Points jansson's allocator at tw_malloc/tw_free; runs once (pthread_once), and every helper
// below calls it first. The setting is process-wide, and jansson frees each block with the
// function current at the time, so it is sound only if no jansson value outlives a change of
// functions: call tw_json_init() before creating values with jansson directly (json_object,
// json_pack, ...). Should a block made earlier with malloc reach tw_free, the memory is still
// released correctly (tw_malloc is malloc underneath) but tw_mem_live() drifts by one.
void tw_json_init(void);

// Parses len bytes of buf (any JSON value at the top) into *out, a new reference the caller
// releases with json_decref. `what` names the input in errors: TW_EFORMAT
// "<what>: line L, column C: <jansson's text>", or TW_ENOMEM. *out is untouched on failure.
int tw_json_parse(const char *what, const char *buf, size_t len, json_t **out);

// Reads and parses the file at path, as tw_json_parse with the path as `what`. A file over
// `limit` bytes (0: no limit) is refused with TW_ELIMIT; TW_ENOENT when it does not exist,
// TW_EIO when it cannot be read.
int tw_json_load_file(const char *path, size_t limit, json_t **out);
// The same with jansson's decoding flags added (JSON_DECODE_INT_AS_REAL for files whose
// integers may exceed int64, such as tokenizer_config.json's model_max_length = 1e30).
int tw_json_parse_flags(const char *what, const char *buf, size_t len, size_t flags, json_t **out);
int tw_json_load_file_flags(const char *path, size_t limit, size_t flags, json_t **out);

// Getters for obj[key]. `what` names obj in errors ("config.json", "config.json: rope_scaling").
// They return 0 and set *out, or TW_EFORMAT with "<what>: missing \"key\"" or
// "<what>: \"key\": expected <type>, got <type>" (and "<what>: expected an object, got ..."
// when obj is not one); *out is untouched on failure. A string stays owned by obj. An integer
// may be written as a real with no fraction (4096.0) within the range of int64_t; others
// are refused. A double accepts integers and reals.
int tw_json_get_str(const json_t *obj, const char *what, const char *key, const char **out);
int tw_json_get_int(const json_t *obj, const char *what, const char *key, int64_t *out);
int tw_json_get_double(const json_t *obj, const char *what, const char *key, double *out);
int tw_json_get_bool(const json_t *obj, const char *what, const char *key, bool *out);
// Members that must be an object or an array (borrowed references, owned by obj).
int tw_json_get_object(const json_t *obj, const char *what, const char *key, json_t **out);
int tw_json_get_array(const json_t *obj, const char *what, const char *key, json_t **out);

// Optional members: absent or null gives `def`; present with the wrong type is an error, as
// for the getters above.
int tw_json_opt_str(const json_t *obj, const char *what, const char *key, const char *def,
                    const char **out);
int tw_json_opt_int(const json_t *obj, const char *what, const char *key, int64_t def,
                    int64_t *out);
int tw_json_opt_double(const json_t *obj, const char *what, const char *key, double def,
                       double *out);
int tw_json_opt_bool(const json_t *obj, const char *what, const char *key, bool def, bool *out);

// Encodes v with jansson's flags (JSON_INDENT(n), JSON_SORT_KEYS, JSON_COMPACT, ...; any
// value may be at the top) into *out, a NUL-terminated string the caller frees with tw_free.
// Returns 0, TW_ENOMEM, or TW_EINVAL for a NULL v or one that contains itself (or a string
// made with json_stringn_nocheck that is not UTF-8).
int tw_json_dump(const json_t *v, size_t flags, char **out);

// "an object", "an array", "a string", "an integer", "a real number", "a boolean", "null";
// "nothing" for NULL: for messages such as "expected a string, got an integer".
const char *tw_json_type_name(const json_t *v);

#endif

// JSON Lines input of the embed and rerank verbs: each line a JSON string, or an object with
// "text" (or "input") and an optional "id" that is echoed back.
#ifndef TW_CLI_JSONL_IN_H
#define TW_CLI_JSONL_IN_H

#include <jansson.h>
#include <stddef.h>

// Calls fn for every non-blank line of buf: index (0-based among items), the text, and the
// item's "id" (NULL when none). A line that is not such an item is TW_EFORMAT naming
// `what` and the line number; fn's non-zero return stops the walk and is returned.
int tw_cli_jsonl_each(const char *what, const char *buf, size_t len,
                      int (*fn)(void *arg, size_t index, const char *text, size_t text_len,
                                const json_t *id),
                      void *arg);
// The same over the file at path, or standard input when path is "-" (named "stdin"), read
// whole (TW_CLI_INPUT_LIMIT).
int tw_cli_jsonl_file(const char *path,
                      int (*fn)(void *arg, size_t index, const char *text, size_t text_len,
                                const json_t *id),
                      void *arg);
// Prints `"id": <id>, ` (compact JSON) when id is not NULL.
void tw_cli_print_id(const json_t *id);

#endif

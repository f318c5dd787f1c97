// tw_str, the string builder: bytes in a tw_vec, always followed by a NUL so that
// tw_str_cstr() can be handed to C APIs. Growth is tw_vec's (doubling); on a failed
// allocation the string is as it was.
#ifndef TW_STR_H
#define TW_STR_H

#include <stdarg.h>
#include <stddef.h>

#include "base/vec.h"

typedef struct tw_str {
    tw_vec v; // char elements; v.len excludes the NUL kept at v.data[v.len]
} tw_str;

void tw_str_init(tw_str *s);
void tw_str_free(tw_str *s);

// Appends n bytes (may contain NUL bytes) / a C string / one byte / formatted text.
int tw_str_append(tw_str *s, const void *p, size_t n);
int tw_str_puts(tw_str *s, const char *z);
int tw_str_putc(tw_str *s, char c);
int tw_str_printf(tw_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tw_str_vprintf(tw_str *s, const char *fmt, va_list ap);

// The text, NUL-terminated ("" when empty); valid until the next change.
const char *tw_str_cstr(const tw_str *s);
size_t tw_str_len(const tw_str *s);
// Cuts the string to n bytes (n <= length).
void tw_str_truncate(tw_str *s, size_t n);
void tw_str_clear(tw_str *s);
// Hands the buffer to the caller (free with tw_free; never NULL on success) and empties s.
int tw_str_detach(tw_str *s, char **out, size_t *len);

#endif

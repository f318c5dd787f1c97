// UTF-8: decoding with U+FFFD for invalid input (one per maximal invalid subpart, as Python's
// errors="replace" and Rust's from_utf8_lossy do: Unicode 15, section 3.9, "U+FFFD
// Substitution of Maximal Subparts"), encoding, and validation.
#ifndef TW_TEXT_UTF8_H
#define TW_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/str.h"

// Decodes the character at s[0, len) (len >= 1) into *cp and returns the bytes it took:
// 1 to 4 for a valid character; for invalid input *cp = 0xFFFD and the length of the
// maximal invalid subpart (at least 1).
size_t tw_utf8_decode(const char *s, size_t len, uint32_t *cp);
// Writes cp as UTF-8 to buf (4 bytes of room) and returns the length.
size_t tw_utf8_encode(uint32_t cp, char *buf);
// True when s[0, len) is valid UTF-8.
bool tw_utf8_valid(const char *s, size_t len);
// Appends s[0, len) to out with each invalid subpart replaced by U+FFFD.
int tw_utf8_sanitize(const char *s, size_t len, tw_str *out);

#endif

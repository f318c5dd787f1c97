// SHA-256 (FIPS 180-4): an incremental context and a one-shot helper, used for content
// addresses and integrity checks. Inputs of any length and alignment; no allocation.
#ifndef TW_SHA256_H
#define TW_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define TW_SHA256_LEN 32 // digest bytes

// A hash in progress. The caller owns it (on the stack is fine); the fields are private.
struct tw_sha256 {
    uint32_t h[8];   // the intermediate hash value H(i)
    uint64_t len;    // bytes fed so far
    uint8_t buf[64]; // the partial block: the first len % 64 bytes are data
};

// Starts a new hash (also to reuse a context after tw_sha256_final).
void tw_sha256_init(struct tw_sha256 *ctx);
// Feeds len bytes (data may be NULL when len is 0). Pieces of any size give the same digest
// as feeding their concatenation at once.
void tw_sha256_update(struct tw_sha256 *ctx, const void *data, size_t len);
// Writes the 32-byte digest to out. The context is used up: call tw_sha256_init to reuse it.
void tw_sha256_final(struct tw_sha256 *ctx, uint8_t out[TW_SHA256_LEN]);

// The digest of len bytes at data, in one call.
void tw_sha256(const void *data, size_t len, uint8_t out[TW_SHA256_LEN]);
// A digest as 64 lower-case hex digits and a NUL.
void tw_sha256_hex(const uint8_t d[TW_SHA256_LEN], char out[2 * TW_SHA256_LEN + 1]);

#endif

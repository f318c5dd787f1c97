// The content-addressed artifact store of the home (ARCHITECTURE.md, "The twin home"): a blob
// is named by the SHA-256 of its bytes and lives at HOME/blobs/<2 hex>/<62 hex>, written by
// rename from a temporary file in the same folder tree, never changed afterwards.
#ifndef TW_STORE_BLOB_H
#define TW_STORE_BLOB_H

#include <stddef.h>

#include "store/home.h"

#define TW_BLOB_HEX 65 // 64 hex digits and a NUL

// Stores data; hex receives its name. Storing bytes that are already there is a no-op.
int tw_blob_put(const struct tw_home *h, const void *data, size_t len, char hex[TW_BLOB_HEX]);
// A path under HOME/blobs where a caller may write a file before tw_blob_put_file (same file
// system, so the move is a rename); the file name is unique to the call.
int tw_blob_tmp_path(const struct tw_home *h, char *buf, size_t cap);
// Hashes the file at src and moves it into the store (src is gone afterwards, also when the
// blob already existed); hex receives its name.
int tw_blob_put_file(const struct tw_home *h, const char *src, char hex[TW_BLOB_HEX]);
// The path of blob hex (TW_ENOENT naming it when absent; TW_EINVAL for a malformed name).
int tw_blob_path(const struct tw_home *h, const char *hex, char *buf, size_t cap);
// Reads blob hex (at most limit bytes) and checks that its bytes still hash to its name
// (TW_EFORMAT naming the blob when not). Free *out with tw_free.
int tw_blob_read(const struct tw_home *h, const char *hex, size_t limit, char **out, size_t *len);

#endif

// Fuzzes text/bm25's persistence: tw_bm25_load on a file holding the input; when it loads,
// searches (with and without a filter) and scores run on the index, each hit's score must
// match tw_bm25_score's, and saving the index must give back the same bytes (the format is
// canonical). The harness sets the file's SHA-256 and its size field right before the load
// (when the input is long enough to hold them), so that mutated inputs get past those two
// checks and reach the structural ones behind them.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "text/bm25.h"

#define HEADER_SIZE 80 // bm25.c's header; the file's size is its last field (offset 72)

static char path[64], path2[64];

static bool keep_odd(void *ctx, uint64_t id)
{
    return id & 1;
}

static void search_all(const tw_bm25 *ix)
{
    static const char *const queries[] = { "the quick brown fox", "union state UNION", "a b",
                                           "caf\xc3\xa9 \xe4\xb8\xad", "" };
    struct tw_bm25_hit hits[8];
    size_t n;
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
        const char *s = queries[q];
        if (tw_bm25_search(ix, s, strlen(s), 8, NULL, NULL, hits, &n) != 0 || n > 8)
            abort();
        for (size_t i = 0; i < n; i++) {
            double score;
            if (!tw_bm25_contains(ix, hits[i].id, NULL) ||
                tw_bm25_score(ix, s, strlen(s), hits[i].id, &score) != 0 ||
                !(fabs(score - hits[i].score) <= 1e-9 * fmax(1.0, fabs(score))))
                abort();
            if (i > 0 && hits[i].score > hits[i - 1].score)
                abort();
        }
        if (tw_bm25_search(ix, s, strlen(s), 3, keep_odd, NULL, hits, &n) != 0 || n > 3)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!keep_odd(NULL, hits[i].id))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/twin-fuzz-bm25-%d.idx", (int)getpid());
        snprintf(path2, sizeof path2, "/tmp/twin-fuzz-bm25-%d-saved.idx", (int)getpid());
    }
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    if (size >= HEADER_SIZE + TW_SHA256_LEN) {
        for (int i = 0; i < 8; i++) // little-endian u64
            buf[72 + i] = (uint8_t)((uint64_t)size >> (8 * i));
        tw_sha256(buf, size - TW_SHA256_LEN, buf + size - TW_SHA256_LEN);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0)
        abort();

    tw_bm25 *ix;
    if (tw_bm25_load(path, &ix) == 0) {
        search_all(ix);
        char *saved;
        size_t len;
        if (tw_bm25_save(ix, path2) != 0 || tw_file_read(path2, SIZE_MAX - 1, &saved, &len) != 0)
            abort();
        if (len != size || memcmp(saved, buf, size) != 0)
            abort(); // load accepted a file that is not what save writes for the same index
        tw_free(saved);
        unlink(path2);
        tw_bm25_free(ix);
    }
    free(buf);
    unlink(path);
    return 0;
}

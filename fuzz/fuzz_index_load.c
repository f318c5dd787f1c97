// Fuzzes index/index_io.c's reader: the input is written to a file and loaded with
// tw_index_load; a failure must be TW_EFORMAT naming the file, and an index that loads is
// searched (with and without a filter), written to, compacted and freed.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "index/index.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/twin-fuzz-index-%d.twix", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    tw_index *ix = NULL;
    int rc = tw_index_load(path, &ix);
    if (rc != 0 && (rc != TW_EFORMAT || strncmp(tw_error_msg(), path, strlen(path)) != 0))
        abort(); // every failure is a format error naming the file
    if (rc == 0) {
        struct tw_index_options o = tw_index_get_options(ix);
        float *q = tw_malloc_array(o.dim, sizeof *q);
        if (!q)
            abort();
        for (uint32_t i = 0; i < o.dim; i++)
            q[i] = (float)(i % 7) - 2.5f;
        struct tw_hit hits[8];
        uint32_t n = 0;
        const char *v[] = { "red" };
        struct tw_cond c = { .key = "colour", .op = TW_COND_EQ, .type = TW_PV_STR, .strs = v };
        struct tw_filter flt = { .must_not = &c, .n_must_not = 1 };
        if (tw_index_search(ix, q, 8, 16, NULL, hits, &n) != 0 || n > 8 ||
            n > tw_index_count(ix) || tw_index_search(ix, q, 8, 16, &flt, hits, &n) != 0)
            abort();
        if (tw_index_upsert(ix, 12345, q, NULL, 0) != 0 || tw_index_compact(ix, 1) != 0)
            abort();
        tw_free(q);
        tw_index_free(ix);
    }
    unlink(path);
    return 0;
}

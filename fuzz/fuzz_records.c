// Fuzzes etl/records.c: tw_source_records on a file holding the input, read as .jsonl, .csv
// and .json with a map naming every target. Whatever the bytes, the source must return 0 (the
// file exists, the map is valid: bad records go to fail), every document must have content,
// a URI and metadata that is an object which encodes, and every failure must name the file.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/mem.h"
#include "etl/source.h"

#define MAP "author=name|author,content=text|body,title=title,date=date|year,uri=url,category=kind"

static char dir[64];
static const char *path_now;

static void write_file(const char *p, const void *data, size_t size)
{
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

static int on_doc(void *ud, const struct tw_doc_in *d)
{
    (void)ud;
    if (!d->uri || !d->content || !d->content_len || strcmp(d->extractor, "records") != 0)
        abort();
    if (d->metadata) {
        char *s;
        if (!json_is_object(d->metadata) || json_object_size(d->metadata) == 0 ||
            tw_json_dump(d->metadata, JSON_COMPACT, &s) != 0)
            abort();
        tw_free(s);
    }
    return 0;
}

static void on_skip(void *ud, const char *uri, const char *reason)
{
    (void)ud, (void)uri, (void)reason;
    abort(); // records are never skipped
}

static void on_fail(void *ud, const char *uri, const char *message)
{
    (void)ud;
    if (!uri || strncmp(message, path_now, strlen(path_now)) != 0)
        abort();
}

static void cleanup(void)
{
    static const char *const names[] = { "in.jsonl", "in.csv", "in.json" };
    char p[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/twin-fuzz-records-%d", (int)getpid());
        if (mkdir(dir, 0700) != 0)
            abort();
        atexit(cleanup);
    }
    static const char *const names[] = { "in.jsonl", "in.csv", "in.json" };
    struct tw_sink sink = { .doc = on_doc, .skip = on_skip, .fail = on_fail };
    for (size_t i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        write_file(p, data, size);
        path_now = p;
        if (tw_source_records(p, MAP, &sink) != 0)
            abort();
    }
    return 0;
}

// Fuzzes etl/feed: tw_feed_parse (RSS, Atom, sitemaps through libxml2) on arbitrary bytes, and
// tw_web_url_normalize on the bytes as a link. Checks that every item is an http(s) URL that
// normalisation leaves as it is (the crawler's dedupe depends on it), that items are unique,
// and that a document of no known kind has no items.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "base/mem.h"
#include "etl/feed.h"

#define BASE "http://fuzz.example:8080/dir/page.html?q=1"

// normalize(url) must be url itself.
static void fixed_point(const char *url)
{
    char *again = NULL;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        abort();
    if (tw_web_url_normalize(NULL, url, &again) != 0 || strcmp(again, url))
        abort();
    tw_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        xmlInitParser();
        init = 1;
    }
    struct tw_feed f;
    tw_feed_init(&f);
    if (tw_feed_parse((const char *)data, size, NULL, BASE, 1000, &f) == 0) {
        if (f.kind == TW_FEED_NONE && f.items.len)
            abort();
        for (size_t i = 0; i < f.items.len; i++) {
            const struct tw_feed_item *it = &TW_VEC_AT(&f.items, struct tw_feed_item, i);
            fixed_point(it->url);
            for (size_t k = 0; k < i; k++)
                if (!strcmp(TW_VEC_AT(&f.items, struct tw_feed_item, k).url, it->url))
                    abort();
        }
    }
    tw_feed_free(&f);

    if (size < 2048 && !memchr(data, 0, size)) {
        char *ref = tw_strndup((const char *)data, size), *url = NULL;
        if (ref && tw_web_url_normalize(BASE, ref, &url) == 0)
            fixed_point(url);
        tw_free(url);
        tw_free(ref);
    }
    return 0;
}

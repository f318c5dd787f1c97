// Link sources of the web source (web.c): RSS (2.0 and 1.0/RDF) and Atom feeds, sitemaps and
// sitemap indexes (sitemaps.org), read with libxml2 into a list of absolute URLs; and the URL
// normalisation the crawler and these lists share (through libcurl's URL API).
#ifndef TW_ETL_FEED_H
#define TW_ETL_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "base/vec.h"

enum tw_feed_kind {
    TW_FEED_NONE = 0,      // well-formed XML, but not one of the kinds below
    TW_FEED_RSS,           // root <rss> or <rdf:RDF>: <item><link>
    TW_FEED_ATOM,          // root <feed>: <entry><link href>
    TW_FEED_SITEMAP,       // root <urlset>: <url><loc>
    TW_FEED_SITEMAP_INDEX, // root <sitemapindex>: <sitemap><loc>
};

struct tw_feed_item {
    char *url;            // absolute http(s) URL, normalised (tw_web_url_normalize)
    char *title;          // the item's title, or NULL (sitemaps have none)
    int64_t published_at; // Unix seconds (pubDate, dc:date, published/updated, lastmod), or 0
};

struct tw_feed {
    enum tw_feed_kind kind;
    char *title;  // the channel's / feed's title, or NULL
    tw_vec items; // struct tw_feed_item, in document order, duplicate URLs removed
};

void tw_feed_init(struct tw_feed *f);
void tw_feed_free(struct tw_feed *f);

// Parses xml (len bytes) fetched from base_url (against which relative links are resolved).
// encoding names the bytes' charset when the HTTP header gave one (NULL: the XML declaration,
// a BOM, else UTF-8). Items whose link is missing or not http(s) are left out; at most
// max_items are kept (0: no limit). External entities and DTDs are never loaded. 0 (kind
// TW_FEED_NONE when the root element is none of the above), TW_EFORMAT when the XML is not
// well-formed (the message names base_url and the line), or TW_ENOMEM. f must be freshly
// initialised; on failure it is left empty.
int tw_feed_parse(const char *xml, size_t len, const char *encoding, const char *base_url,
                  size_t max_items, struct tw_feed *f);

// Resolves ref against base (NULL: ref must be absolute) and normalises the result: http or
// https only, scheme and host lower-cased, the default port dropped, an empty path made "/",
// the fragment removed, spaces and non-ASCII bytes percent-encoded. *out is tw_malloc'd.
// 0, TW_EINVAL when ref is not a usable http(s) URL (no message set: callers report it), or
// TW_ENOMEM.
int tw_web_url_normalize(const char *base, const char *ref, char **out);

// The parts of a normalised URL: origin "scheme://host:port" (the port always written, so
// that http://a and http://a:80 are one origin), host name, and path with query ("/" at
// least). Each out pointer may be NULL; the others are tw_malloc'd. 0, TW_EINVAL or TW_ENOMEM.
int tw_web_url_split(const char *url, char **origin, char **host, char **path_query);

#endif

// Feeds (RSS 2.0, RSS 1.0/RDF, Atom — RFC 4287) and sitemaps (sitemaps.org protocol 0.9) as
// lists of links, through libxml2's tree parser; and URL normalisation through libcurl's URL
// API. Implements feed.h.
#define _GNU_SOURCE // timegm
#include "etl/feed.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/str.h"

// ---- URLs

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

// Lower-cases the host of u in place (curl keeps its case).
static int lower_host(CURLU *u)
{
    char *host = NULL;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        return TW_EINVAL;
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    CURLUcode uc = curl_url_set(u, CURLUPART_HOST, host, 0);
    curl_free(host);
    return uc == CURLUE_OK ? 0 : TW_EINVAL;
}

static bool scheme_ok(CURLU *u)
{
    char *scheme = NULL;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        return false;
    bool ok = strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0;
    curl_free(scheme);
    return ok;
}

int tw_web_url_normalize(const char *base, const char *ref, char **out)
{
    // HTML strips leading and trailing white space from an href.
    while (is_ws(*ref))
        ref++;
    size_t n = strlen(ref);
    while (n && is_ws(ref[n - 1]))
        n--;
    char *r = tw_strndup(ref, n);
    CURLU *u = curl_url();
    if (!r || !u) {
        tw_free(r);
        curl_url_cleanup(u);
        return TW_ENOMEM;
    }
    int rc = 0;
    if (base && curl_url_set(u, CURLUPART_URL, base, CURLU_URLENCODE) != CURLUE_OK)
        rc = TW_EINVAL;
    // An empty reference or a bare fragment is the base document itself (RFC 3986 5.2.2),
    // which curl's resolution gets wrong: keep the base.
    else if ((!base || (r[0] && r[0] != '#')) &&
             curl_url_set(u, CURLUPART_URL, r, CURLU_URLENCODE) != CURLUE_OK)
        rc = TW_EINVAL;
    if (!rc && !scheme_ok(u))
        rc = TW_EINVAL;
    if (!rc && curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0) != CURLUE_OK)
        rc = TW_EINVAL;
    if (!rc)
        rc = lower_host(u);
    char *s = NULL;
    if (!rc && curl_url_get(u, CURLUPART_URL, &s, CURLU_NO_DEFAULT_PORT) != CURLUE_OK)
        rc = TW_EINVAL;
    if (!rc && !(*out = tw_strdup(s)))
        rc = TW_ENOMEM;
    curl_free(s);
    curl_url_cleanup(u);
    tw_free(r);
    return rc;
}

static int url_part(CURLU *u, CURLUPart part, unsigned flags, char **out)
{
    char *s = NULL;
    if (curl_url_get(u, part, &s, flags) != CURLUE_OK)
        return TW_EINVAL;
    *out = tw_strdup(s);
    curl_free(s);
    return *out ? 0 : TW_ENOMEM;
}

int tw_web_url_split(const char *url, char **origin, char **host, char **path_query)
{
    CURLU *u = curl_url();
    if (!u)
        return TW_ENOMEM;
    char *scheme = NULL, *h = NULL, *port = NULL, *path = NULL, *query = NULL;
    int rc = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK ? 0 : TW_EINVAL;
    if (!rc)
        rc = url_part(u, CURLUPART_SCHEME, 0, &scheme);
    if (!rc)
        rc = url_part(u, CURLUPART_HOST, 0, &h);
    if (!rc)
        rc = url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT, &port);
    if (!rc)
        rc = url_part(u, CURLUPART_PATH, 0, &path);
    if (!rc && url_part(u, CURLUPART_QUERY, 0, &query) == TW_ENOMEM)
        rc = TW_ENOMEM; // no query is not an error
    tw_str s;
    tw_str_init(&s);
    for (char *p = h; !rc && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (!rc && origin) {
        if (tw_str_printf(&s, "%s://%s:%s", scheme, h, port) || tw_str_detach(&s, origin, NULL))
            rc = TW_ENOMEM;
    }
    if (!rc && path_query) {
        if (tw_str_puts(&s, path[0] ? path : "/") ||
            (query && (tw_str_putc(&s, '?') || tw_str_puts(&s, query))) ||
            tw_str_detach(&s, path_query, NULL)) {
            rc = TW_ENOMEM;
            if (origin) {
                tw_free(*origin);
                *origin = NULL;
            }
        }
    }
    if (!rc && host) {
        *host = h;
        h = NULL;
    }
    tw_str_free(&s);
    tw_free(scheme);
    tw_free(h);
    tw_free(port);
    tw_free(path);
    tw_free(query);
    curl_url_cleanup(u);
    return rc;
}

// ---- dates

// An ISO 8601 / W3C date-time ("2024-05-01", "2024-05-01T10:20Z", "2024-05-01T10:20:30.5+02:00")
// as Unix seconds, or 0 when it is none.
static int64_t parse_iso8601(const char *s)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3)
        return 0;
    const char *p = s + used;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &k) != 2)
            return 0;
        p += 1 + k;
        if (*p == ':') {
            if (sscanf(p + 1, "%2d%n", &sec, &k) != 1)
                return 0;
            p += 1 + k;
            if (*p == '.' || *p == ',')
                for (p++; isdigit((unsigned char)*p); p++) {
                }
        }
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 24 || mi > 59 || sec > 60 || y < 1970)
        return 0;
    int64_t off = 0;
    if (*p == '+' || *p == '-') {
        int oh = 0, om = 0;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) < 1 && sscanf(p + 1, "%2d%2d", &oh, &om) < 1)
            return 0;
        off = (*p == '+' ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
    }
    struct tm tm = { .tm_year = y - 1900,
                     .tm_mon = mo - 1,
                     .tm_mday = d,
                     .tm_hour = h,
                     .tm_min = mi,
                     .tm_sec = sec };
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t - off;
}

// An RFC 822 date (RSS pubDate) through curl_getdate, else ISO 8601.
static int64_t parse_date(const char *s)
{
    if (!s)
        return 0;
    int64_t t = parse_iso8601(s);
    if (t)
        return t;
    time_t c = curl_getdate(s, NULL);
    return c > 0 ? (int64_t)c : 0;
}

// ---- the tree

static bool named(const xmlNode *n, const char *name)
{
    return n->type == XML_ELEMENT_NODE && n->name && strcmp((const char *)n->name, name) == 0;
}

// The text directly inside n (text and CDATA children; entity references other than the
// predefined ones are left out, so that a document cannot make us expand them), trimmed;
// tw_malloc'd, NULL when empty or out of memory (*oom set).
static char *text_of(const xmlNode *n, bool *oom)
{
    tw_str s;
    tw_str_init(&s);
    for (const xmlNode *c = n->children; c; c = c->next)
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content &&
            tw_str_puts(&s, (const char *)c->content)) {
            *oom = true;
            break;
        }
    const char *b = tw_str_cstr(&s);
    size_t len = tw_str_len(&s);
    while (len && is_ws(*b)) {
        b++;
        len--;
    }
    while (len && is_ws(b[len - 1]))
        len--;
    char *r = NULL;
    if (!*oom && len && !(r = tw_strndup(b, len)))
        *oom = true;
    tw_str_free(&s);
    return r;
}

static char *attr_of(const xmlNode *n, const char *name, bool *oom)
{
    xmlChar *v = xmlGetNoNsProp(n, (const xmlChar *)name);
    if (!v)
        return NULL;
    char *r = tw_strdup((const char *)v);
    xmlFree(v);
    if (!r)
        *oom = true;
    return r;
}

struct collect {
    const char *base;
    size_t max_items;
    struct tw_feed *f;
    tw_map seen; // normalised URL -> 1
    bool oom;
};

// Adds an item (taking link and title) when link is a new http(s) URL.
static void add_item(struct collect *c, char *link, char *title, int64_t date)
{
    char *url = NULL;
    if (!link || c->oom || (c->max_items && c->f->items.len >= c->max_items))
        goto out;
    int rc = tw_web_url_normalize(c->base, link, &url);
    if (rc) {
        c->oom = rc == TW_ENOMEM;
        goto out;
    }
    if (tw_map_get_str(&c->seen, url, strlen(url), NULL))
        goto out;
    struct tw_feed_item it = { .url = url, .title = title, .published_at = date };
    if (tw_map_put_str(&c->seen, url, strlen(url), 1) || tw_vec_push(&c->f->items, &it)) {
        tw_map_del_str(&c->seen, url, strlen(url));
        c->oom = true;
        goto out;
    }
    tw_free(link);
    return;
out:
    tw_free(url);
    tw_free(link);
    tw_free(title);
}

// An RSS <item>: <link> text (or an atom:link href), else a permalink <guid>.
static void rss_item(struct collect *c, const xmlNode *item)
{
    char *link = NULL, *guid = NULL, *title = NULL, *date = NULL;
    for (const xmlNode *n = item->children; n && !c->oom; n = n->next) {
        if (named(n, "link") && !link) {
            link = text_of(n, &c->oom);
            if (!link)
                link = attr_of(n, "href", &c->oom);
        } else if (named(n, "guid") && !guid) {
            char *perma = attr_of(n, "isPermaLink", &c->oom);
            if (!perma || strcasecmp(perma, "false") != 0)
                guid = text_of(n, &c->oom);
            tw_free(perma);
        } else if (named(n, "title") && !title) {
            title = text_of(n, &c->oom);
        } else if ((named(n, "pubDate") || named(n, "date")) && !date) {
            date = text_of(n, &c->oom);
        }
    }
    if (!link) {
        link = guid;
        guid = NULL;
    }
    add_item(c, link, title, parse_date(date));
    tw_free(guid);
    tw_free(date);
}

// An Atom <entry>: the href of its rel="alternate" link (a link without rel is alternate).
static void atom_entry(struct collect *c, const xmlNode *entry)
{
    char *link = NULL, *title = NULL, *published = NULL, *updated = NULL;
    for (const xmlNode *n = entry->children; n && !c->oom; n = n->next) {
        if (named(n, "link") && !link) {
            char *rel = attr_of(n, "rel", &c->oom);
            if (!rel || strcmp(rel, "alternate") == 0)
                link = attr_of(n, "href", &c->oom);
            tw_free(rel);
        } else if (named(n, "title") && !title) {
            title = text_of(n, &c->oom);
        } else if (named(n, "published") && !published) {
            published = text_of(n, &c->oom);
        } else if (named(n, "updated") && !updated) {
            updated = text_of(n, &c->oom);
        }
    }
    add_item(c, link, title, parse_date(published ? published : updated));
    tw_free(published);
    tw_free(updated);
}

// A sitemap's <url> or a sitemap index's <sitemap>: <loc> and <lastmod>.
static void sitemap_entry(struct collect *c, const xmlNode *e)
{
    char *loc = NULL, *lastmod = NULL;
    for (const xmlNode *n = e->children; n && !c->oom; n = n->next) {
        if (named(n, "loc") && !loc)
            loc = text_of(n, &c->oom);
        else if (named(n, "lastmod") && !lastmod)
            lastmod = text_of(n, &c->oom);
    }
    add_item(c, loc, NULL, parse_date(lastmod));
    tw_free(lastmod);
}

static void walk(struct collect *c, const xmlNode *root)
{
    struct tw_feed *f = c->f;
    for (const xmlNode *n = root->children; n && !c->oom; n = n->next) {
        switch (f->kind) {
        case TW_FEED_RSS:
            if (named(n, "channel")) {
                for (const xmlNode *k = n->children; k && !c->oom; k = k->next) {
                    if (named(k, "item"))
                        rss_item(c, k);
                    else if (named(k, "title") && !f->title)
                        f->title = text_of(k, &c->oom);
                }
            } else if (named(n, "item")) { // RSS 1.0 puts items beside the channel
                rss_item(c, n);
            }
            break;
        case TW_FEED_ATOM:
            if (named(n, "entry"))
                atom_entry(c, n);
            else if (named(n, "title") && !f->title)
                f->title = text_of(n, &c->oom);
            break;
        case TW_FEED_SITEMAP:
            if (named(n, "url"))
                sitemap_entry(c, n);
            break;
        case TW_FEED_SITEMAP_INDEX:
            if (named(n, "sitemap"))
                sitemap_entry(c, n);
            break;
        case TW_FEED_NONE:
            return;
        }
    }
}

void tw_feed_init(struct tw_feed *f)
{
    f->kind = TW_FEED_NONE;
    f->title = NULL;
    tw_vec_init(&f->items, sizeof(struct tw_feed_item));
}

void tw_feed_free(struct tw_feed *f)
{
    for (size_t i = 0; i < f->items.len; i++) {
        struct tw_feed_item *it = &TW_VEC_AT(&f->items, struct tw_feed_item, i);
        tw_free(it->url);
        tw_free(it->title);
    }
    tw_vec_free(&f->items);
    tw_free(f->title);
    f->title = NULL;
    f->kind = TW_FEED_NONE;
}

// libxml2 reports some errors (bad bytes for the encoding) through its generic handler,
// which prints to stderr whatever the parse options: silenced during a parse.
static void quiet(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

int tw_feed_parse(const char *xml, size_t len, const char *encoding, const char *base_url,
                  size_t max_items, struct tw_feed *f)
{
    if (len > INT_MAX)
        return tw_error_set(TW_ELIMIT, "%s: XML document too large", base_url);
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", base_url);
    // No entity substitution, no DTD loading, no network: only the bytes given are read.
    int flags = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA;
    xmlGenericErrorFunc old_func = xmlGenericError; // this thread's handler
    void *old_ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, quiet);
    xmlDocPtr doc = xmlCtxtReadMemory(ctxt, xml, (int)len, base_url, encoding, flags);
    xmlSetGenericErrorFunc(old_ctx, old_func);
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        char msg[160] = "not well-formed";
        if (e && e->message) {
            snprintf(msg, sizeof msg, "%s", e->message);
            size_t k = strlen(msg);
            while (k && is_ws(msg[k - 1]))
                msg[--k] = '\0';
        }
        int line = e ? e->line : 0;
        xmlFreeParserCtxt(ctxt);
        return tw_error_set(TW_EFORMAT, "%s: line %d: malformed XML: %s", base_url, line, msg);
    }
    const xmlNode *root = xmlDocGetRootElement(doc);
    f->kind = !root                         ? TW_FEED_NONE
              : named(root, "rss")          ? TW_FEED_RSS
              : named(root, "RDF")          ? TW_FEED_RSS
              : named(root, "feed")         ? TW_FEED_ATOM
              : named(root, "urlset")       ? TW_FEED_SITEMAP
              : named(root, "sitemapindex") ? TW_FEED_SITEMAP_INDEX
                                            : TW_FEED_NONE;
    struct collect c = { .base = base_url, .max_items = max_items, .f = f };
    tw_map_init(&c.seen, TW_MAP_STR);
    if (root)
        walk(&c, root);
    tw_map_free(&c.seen);
    xmlFreeDoc(doc);
    xmlFreeParserCtxt(ctxt);
    if (c.oom) {
        tw_feed_free(f);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", base_url);
    }
    return 0;
}

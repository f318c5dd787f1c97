// The web source (source.h's tw_source_web): fetches pages with one libcurl easy handle (its
// connections kept alive), obeys robots.txt (robots.h), waits between requests to one origin,
// retries with exponential back-off, converts charsets to UTF-8 with iconv, extracts HTML and
// plain text into documents (extract.h), reads feeds and sitemaps as lists of links (feed.h),
// and with depth > 0 crawls breadth-first within each start URL's origin.
#define _GNU_SOURCE // nanosleep, gmtime_r, strncasecmp
#include "etl/source.h"

#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "etl/extract.h"
#include "etl/feed.h"
#include "etl/robots.h"
#include "twin_config.h"

#define DEFAULT_UA         "twin/" TWIN_VERSION " (+https://github.com/twin)"
#define ROBOTS_MAX_BYTES   (512 * 1024) // RFC 9309 2.5: parse at least 500 KiB
#define SNIFF_BYTES        1024         // where <meta charset> may be (HTML's prescan)
#define MAX_ITEMS_PER_FEED 50000        // a sitemap's own limit (sitemaps.org)

// The options with their defaults filled in.
struct opts {
    const char *user_agent;
    char agent[64]; // the product token matched against robots.txt groups
    int depth;
    int64_t max_pages;
    int64_t max_items; // items fetched in all (documents, failures, skips after a request)
    double interval_s; // between two requests to one origin
    long timeout_ms;
    int retries;
    long max_redirects;
    int64_t max_bytes;
    bool refresh;
    double backoff_s;     // the first retry's wait, doubled on each further one
    double backoff_max_s; // the longest wait
};

enum robots_state { ROBOTS_UNKNOWN, ROBOTS_READY, ROBOTS_UNREACHABLE };

// One origin (scheme://host:port): its rate limit and its robots.txt.
struct host {
    char *origin;
    double next_s; // monotonic time before which no request to it may start
    enum robots_state robots_state;
    struct tw_robots robots;
    char *robots_error; // ROBOTS_UNREACHABLE: why
};

// A URL waiting in the crawl queue.
struct item {
    char *url; // normalised
    int depth;
    size_t root;      // the start URL it descends from (index into crawl.roots)
    bool is_start;    // the start URL itself
    char *feed_title; // the title a feed gave it, or NULL
    int64_t feed_date;
};

struct root {
    char *origin;       // of the start URL
    char *final_origin; // of where the start URL redirected to, or NULL
};

// One response, after redirects and retries.
struct response {
    CURL *curl;
    tw_str body; // the 2xx body (error bodies are dropped)
    long status;
    char *final_url;    // tw_malloc'd
    char *content_type; // tw_malloc'd header value, or NULL when none
    CURLcode cc;
    int attempts;
    int64_t max_bytes;
    bool keep_truncated; // past max_bytes: keep what fit (robots.txt) rather than nothing
    bool check_type;     // abort a 2xx body whose type we cannot use
    bool type_checked;
    bool too_large, wrong_type, oom;
    char errbuf[CURL_ERROR_SIZE];
};

struct crawl {
    struct opts o;
    const struct tw_sink *sink;
    CURL *curl;
    tw_vec hosts;   // struct host *
    tw_map host_ix; // origin -> index into hosts
    tw_vec queue;   // struct item, consumed from head
    size_t head;
    tw_map queued;  // normalised URLs ever queued or reached by a redirect -> 1
    tw_map emitted; // URLs handed to the sink as documents -> 1
    tw_vec roots;   // struct root
    int64_t docs, items;
};

// ---- time

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// Waits until a request to h may start, and books the next slot.
static void rate_wait(struct crawl *c, struct host *h)
{
    double now = mono_s();
    if (now < h->next_s) {
        sleep_s(h->next_s - now);
        now = h->next_s;
    }
    h->next_s = now + c->o.interval_s;
}

// ---- content types and charsets

enum ctype { CT_OTHER, CT_HTML, CT_TEXT, CT_XML, CT_NONE };

// The media type of a Content-Type value, lower-cased, into out.
static void media_type(const char *ct, char *out, size_t n)
{
    size_t k = 0;
    while (ct && (*ct == ' ' || *ct == '\t'))
        ct++;
    for (; ct && *ct && *ct != ';' && *ct != ' ' && k + 1 < n; ct++)
        out[k++] = (char)tolower((unsigned char)*ct);
    out[k] = '\0';
}

static enum ctype classify(const char *ct)
{
    char m[128];
    media_type(ct, m, sizeof m);
    if (!m[0])
        return CT_NONE;
    if (!strcmp(m, "text/html") || !strcmp(m, "application/xhtml+xml"))
        return CT_HTML;
    if (!strcmp(m, "text/plain"))
        return CT_TEXT;
    size_t n = strlen(m);
    if (!strcmp(m, "application/xml") || !strcmp(m, "text/xml") ||
        (n > 4 && !strcmp(m + n - 4, "+xml")))
        return CT_XML; // rss+xml, atom+xml, rdf+xml, ... (what is inside decides)
    return CT_OTHER;
}

// A response without Content-Type: markup that names html is HTML, other markup XML, text
// that does not look binary plain text.
static enum ctype sniff(const char *p, size_t len)
{
    size_t i = 0, lim = len < SNIFF_BYTES ? len : SNIFF_BYTES;
    if (lim >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3))
        i = 3;
    while (i < lim && isspace((unsigned char)p[i]))
        i++;
    if (i < lim && p[i] == '<') {
        for (size_t k = i; k + 5 <= lim; k++)
            if (!strncasecmp(p + k, "<html", 5) || !strncasecmp(p + k, "<!doc", 5))
                return CT_HTML;
        return CT_XML;
    }
    return tw_looks_binary(p, len) ? CT_OTHER : CT_TEXT;
}

static bool is_charset_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '-' || ch == '_' || ch == '.' || ch == ':';
}

// Copies the charset name at p (after optional spaces, '=' when want_eq, spaces, a quote)
// into out; false when there is none.
static bool read_charset(const char *p, const char *end, bool want_eq, char *out, size_t n)
{
    while (p < end && isspace((unsigned char)*p))
        p++;
    if (want_eq) {
        if (p >= end || *p != '=')
            return false;
        p++;
        while (p < end && isspace((unsigned char)*p))
            p++;
    }
    if (p < end && (*p == '"' || *p == '\''))
        p++;
    size_t k = 0;
    for (; p < end && is_charset_char(*p) && k + 1 < n; p++)
        out[k++] = (char)tolower((unsigned char)*p);
    out[k] = '\0';
    return k > 0;
}

// Case-insensitive search for needle in [p, end).
static const char *find_ci(const char *p, const char *end, const char *needle)
{
    size_t n = strlen(needle);
    for (; p + n <= end; p++)
        if (!strncasecmp(p, needle, n))
            return p;
    return NULL;
}

// charset=... in a Content-Type value.
static bool header_charset(const char *ct, char *out, size_t n)
{
    if (!ct)
        return false;
    const char *semi = strchr(ct, ';'), *end = ct + strlen(ct);
    const char *at = semi ? find_ci(semi, end, "charset") : NULL;
    return at && read_charset(at + 7, end, true, out, n);
}

// <meta charset="x"> or <meta http-equiv="content-type" content="...; charset=x"> in the
// first SNIFF_BYTES bytes.
static bool meta_charset(const char *p, size_t len, char *out, size_t n)
{
    const char *end = p + (len < SNIFF_BYTES ? len : SNIFF_BYTES);
    for (const char *m = find_ci(p, end, "<meta"); m; m = find_ci(m + 5, end, "<meta")) {
        const char *gt = memchr(m, '>', (size_t)(end - m));
        const char *tag_end = gt ? gt : end;
        const char *cs = find_ci(m, tag_end, "charset");
        if (cs && read_charset(cs + 7, tag_end, true, out, n))
            return true;
    }
    return false;
}

// encoding="x" in an XML declaration at the start.
static bool xml_decl_charset(const char *p, size_t len, char *out, size_t n)
{
    const char *end = p + (len < SNIFF_BYTES ? len : SNIFF_BYTES);
    if (end - p < 5 || strncmp(p, "<?xml", 5) != 0)
        return false;
    const char *close = find_ci(p, end, "?>");
    const char *enc = find_ci(p, close ? close : end, "encoding");
    return enc && read_charset(enc + 8, close ? close : end, true, out, n);
}

// The charset of a body, lower-cased, by the HTML standard's order: a BOM (its length in
// *bom), the header, <meta> (HTML), the XML declaration, else UTF-8. Names WHATWG maps to
// windows-1252 (latin1, iso-8859-1, us-ascii) are mapped so, as browsers do.
static void detect_charset(const char *ct, const char *p, size_t len, enum ctype t, char *out,
                           size_t n, size_t *bom)
{
    *bom = 0;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) {
        snprintf(out, n, "utf-8");
        *bom = 3;
    } else if (len >= 2 && !memcmp(p, "\xFF\xFE", 2)) {
        snprintf(out, n, "utf-16le");
        *bom = 2;
    } else if (len >= 2 && !memcmp(p, "\xFE\xFF", 2)) {
        snprintf(out, n, "utf-16be");
        *bom = 2;
    } else if (!header_charset(ct, out, n) && !(t == CT_HTML && meta_charset(p, len, out, n)) &&
               !xml_decl_charset(p, len, out, n)) {
        snprintf(out, n, "utf-8");
    }
    static const char *const latin1[] = { "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1",
                                          "l1",         "us-ascii",  "ascii",      "cp819" };
    for (size_t i = 0; i < sizeof latin1 / sizeof *latin1; i++)
        if (!strcmp(out, latin1[i]))
            snprintf(out, n, "windows-1252");
    if (!strcmp(out, "utf8"))
        snprintf(out, n, "utf-8");
}

// Converts len bytes in charset cs to UTF-8, appended to out; bytes that are invalid in cs
// become U+FFFD. A charset iconv does not know is taken as UTF-8 (*cs_used says which).
static int to_utf8(const char *p, size_t len, const char *cs, tw_str *out, const char **cs_used)
{
    *cs_used = cs;
    iconv_t cd = (iconv_t)-1;
    if (strcmp(cs, "utf-8") != 0 && (cd = iconv_open("UTF-8", cs)) == (iconv_t)-1)
        *cs_used = "utf-8";
    if (cd == (iconv_t)-1)
        return tw_str_append(out, p, len);
    char buf[4096];
    char *in = (char *)p;
    size_t left = len;
    int rc = 0;
    while (!rc && left) {
        char *o = buf;
        size_t room = sizeof buf;
        size_t r = iconv(cd, &in, &left, &o, &room);
        int err = errno;
        rc = tw_str_append(out, buf, (size_t)(o - buf));
        if (!rc && r == (size_t)-1 && err != E2BIG) { // EILSEQ, EINVAL: skip one byte
            rc = tw_str_append(out, "\xEF\xBF\xBD", 3);
            in++;
            left--;
            iconv(cd, NULL, NULL, NULL, NULL);
        }
    }
    iconv_close(cd);
    return rc;
}

// ---- one request

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct response *r = ud;
    size_t k = size * n;
    long status = 0;
    curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
        return k; // redirect and error bodies are not kept
    if (r->check_type && !r->type_checked) {
        // Known once the headers are in: an image is not downloaded to be thrown away.
        char *ct = NULL;
        curl_easy_getinfo(r->curl, CURLINFO_CONTENT_TYPE, &ct);
        r->type_checked = true;
        if (classify(ct) == CT_OTHER) {
            r->wrong_type = true;
            return 0;
        }
    }
    size_t have = tw_str_len(&r->body);
    if (r->max_bytes > 0 && (int64_t)(have + k) > r->max_bytes) {
        r->too_large = true;
        if (r->keep_truncated && tw_str_append(&r->body, p, (size_t)r->max_bytes - have))
            r->oom = true;
        return 0; // aborts the transfer (CURLE_WRITE_ERROR)
    }
    if (tw_str_append(&r->body, p, k)) {
        r->oom = true;
        return 0;
    }
    return k;
}

static void response_reset(struct response *r)
{
    tw_str_clear(&r->body);
    tw_free(r->final_url);
    tw_free(r->content_type);
    r->final_url = r->content_type = NULL;
    r->status = 0;
    r->cc = CURLE_OK;
    r->type_checked = r->too_large = r->wrong_type = r->oom = false;
    r->errbuf[0] = '\0';
}

static void response_free(struct response *r)
{
    response_reset(r);
    tw_str_free(&r->body);
}

static bool retryable(const struct response *r)
{
    switch (r->cc) {
    case CURLE_OK:
        return r->status >= 500 || r->status == 429;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return true;
    default:
        return false;
    }
}

static void perform(struct crawl *c, const char *url, struct response *r)
{
    CURL *e = c->curl;
    response_reset(r);
    r->curl = e;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
                     (curl_off_t)(r->keep_truncated ? 0 : r->max_bytes));
    r->cc = curl_easy_perform(e);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL); // r does not outlive this request
    if (r->cc == CURLE_FILESIZE_EXCEEDED)           // a Content-Length over the limit
        r->too_large = true;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    char *s = NULL;
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &s);
    r->final_url = tw_strdup(s ? s : url);
    s = NULL;
    curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &s);
    if (s)
        r->content_type = tw_strdup(s);
    if (!r->final_url || (s && !r->content_type))
        r->oom = true;
}

// GET url with the retries; r holds the last attempt. TW_ENOMEM only.
static int fetch(struct crawl *c, struct host *h, const char *url, struct response *r)
{
    double wait = c->o.backoff_s;
    for (r->attempts = 1;; r->attempts++) {
        rate_wait(c, h);
        perform(c, url, r);
        if (r->oom)
            return tw_error_set(TW_ENOMEM, "GET %s: out of memory", url);
        if (r->attempts > c->o.retries || !retryable(r))
            return 0;
        double delay = wait;
        curl_off_t after = 0; // Retry-After, heeded up to the longest back-off
        if (curl_easy_getinfo(c->curl, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
            delay = (double)after < c->o.backoff_max_s ? (double)after : c->o.backoff_max_s;
        sleep_s(delay);
        wait = wait * 2 < c->o.backoff_max_s ? wait * 2 : c->o.backoff_max_s;
    }
}

// Appends to msg why a response is a failure (an HTTP status, a curl error).
static void failure_message(const struct crawl *c, const char *url, const struct response *r,
                            tw_str *msg)
{
    tw_str_printf(msg, "GET %s: ", url);
    switch (r->cc) {
    case CURLE_OK:
        tw_str_printf(msg, "HTTP %ld", r->status);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        tw_str_printf(msg, "timed out after %ld ms", c->o.timeout_ms);
        break;
    case CURLE_TOO_MANY_REDIRECTS:
        tw_str_printf(msg, "more than %ld redirects (a redirect loop?)", c->o.max_redirects);
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        tw_str_puts(msg, "could not resolve the host name");
        break;
    case CURLE_COULDNT_CONNECT:
        tw_str_puts(msg, "could not connect");
        break;
    default:
        tw_str_puts(msg, r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->cc));
        break;
    }
    if (r->attempts > 1)
        tw_str_printf(msg, " (%d attempts)", r->attempts);
}

// ---- hosts and robots.txt

static struct host *host_get(struct crawl *c, const char *origin)
{
    uint64_t ix;
    if (tw_map_get_str(&c->host_ix, origin, strlen(origin), &ix))
        return TW_VEC_AT(&c->hosts, struct host *, ix);
    struct host *h = tw_calloc(1, sizeof *h);
    if (!h)
        return NULL;
    tw_robots_init(&h->robots);
    h->origin = tw_strdup(origin);
    if (!h->origin || tw_vec_push(&c->hosts, &h)) {
        tw_free(h->origin);
        tw_free(h);
        return NULL;
    }
    if (tw_map_put_str(&c->host_ix, origin, strlen(origin), c->hosts.len - 1)) {
        c->hosts.len--;
        tw_free(h->origin);
        tw_free(h);
        return NULL;
    }
    return h;
}

static void host_free(struct host *h)
{
    tw_robots_free(&h->robots);
    tw_free(h->robots_error);
    tw_free(h->origin);
    tw_free(h);
}

// Fetches and parses h's robots.txt the first time (RFC 9309 2.3.1: 4xx -> everything
// allowed; 5xx, 429 -> nothing allowed for this run; unreachable -> nothing, reported).
static int robots_load(struct crawl *c, struct host *h)
{
    if (h->robots_state != ROBOTS_UNKNOWN)
        return 0;
    tw_str url, msg;
    tw_str_init(&url);
    tw_str_init(&msg);
    struct response r = { .max_bytes = ROBOTS_MAX_BYTES, .keep_truncated = true };
    tw_str_init(&r.body);
    int rc = tw_str_printf(&url, "%s/robots.txt", h->origin) ? TW_ENOMEM : 0;
    if (!rc)
        rc = fetch(c, h, tw_str_cstr(&url), &r);
    if (rc) {
        // fetch set the message
    } else if ((r.cc == CURLE_OK || r.too_large) && r.status >= 200 && r.status < 300) {
        h->robots_state = ROBOTS_READY;
        rc = tw_robots_parse(&h->robots, tw_str_cstr(&r.body), tw_str_len(&r.body), c->o.agent);
    } else if (r.cc == CURLE_OK && (r.status >= 500 || r.status == 429)) {
        h->robots_state = ROBOTS_READY;
        h->robots.disallow_all = true;
    } else if (r.cc == CURLE_OK || r.cc == CURLE_TOO_MANY_REDIRECTS) {
        h->robots_state = ROBOTS_READY; // 4xx, or unavailable: no rules
    } else {
        failure_message(c, tw_str_cstr(&url), &r, &msg);
        h->robots_state = ROBOTS_UNREACHABLE;
        if (tw_str_detach(&msg, &h->robots_error, NULL))
            rc = tw_error_set(TW_ENOMEM, "%s: out of memory", tw_str_cstr(&url));
    }
    response_free(&r);
    tw_str_free(&url);
    tw_str_free(&msg);
    return rc;
}

// ---- the queue

static void item_free(struct item *it)
{
    tw_free(it->url);
    tw_free(it->feed_title);
}

// Whether url belongs to the crawl of root (its origin, or where its start redirected to).
static bool in_scope(const struct crawl *c, size_t root, const char *origin)
{
    const struct root *r = &TW_VEC_AT(&c->roots, struct root, root);
    return !strcmp(origin, r->origin) || (r->final_origin && !strcmp(origin, r->final_origin));
}

// Queues url (absolute; normalised here) unless it is out of scope or was queued before.
// Takes nothing; TW_ENOMEM only.
static int enqueue(struct crawl *c, const char *url, int depth, size_t root, const char *title,
                   int64_t date)
{
    char *norm = NULL, *origin = NULL;
    int rc = tw_web_url_normalize(NULL, url, &norm);
    if (rc == TW_EINVAL)
        return 0; // not http(s)
    if (!rc)
        rc = tw_web_url_split(norm, &origin, NULL, NULL);
    if (rc == TW_EINVAL || (!rc && !in_scope(c, root, origin)) ||
        (!rc && tw_map_get_str(&c->queued, norm, strlen(norm), NULL))) {
        tw_free(norm);
        tw_free(origin);
        return 0;
    }
    tw_free(origin);
    struct item it = { .url = norm, .depth = depth, .root = root, .feed_date = date };
    if (!rc && title && !(it.feed_title = tw_strdup(title)))
        rc = TW_ENOMEM;
    if (!rc && tw_map_put_str(&c->queued, norm, strlen(norm), 1))
        rc = TW_ENOMEM;
    if (!rc && tw_vec_push(&c->queue, &it)) {
        tw_map_del_str(&c->queued, norm, strlen(norm));
        rc = TW_ENOMEM;
    }
    if (rc) {
        item_free(&it);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", url);
    }
    return 0;
}

// ---- pages

static void iso_time(char *out, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

// A feed or sitemap: its links join the queue at the feed's own depth.
static int visit_feed(struct crawl *c, const struct item *it, const struct response *r)
{
    char cs[64];
    const char *enc = header_charset(r->content_type, cs, sizeof cs) ? cs : NULL;
    struct tw_feed f;
    tw_feed_init(&f);
    int rc = tw_feed_parse(tw_str_cstr(&r->body), tw_str_len(&r->body), enc, r->final_url,
                           MAX_ITEMS_PER_FEED, &f);
    if (rc && rc != TW_ENOMEM) { // malformed: this item fails, the crawl goes on
        c->sink->fail(c->sink->ud, it->url, tw_error_msg());
        return 0;
    }
    if (!rc && f.kind == TW_FEED_NONE)
        c->sink->skip(c->sink->ud, it->url, "content type");
    for (size_t i = 0; !rc && i < f.items.len; i++) {
        const struct tw_feed_item *fi = &TW_VEC_AT(&f.items, struct tw_feed_item, i);
        rc = enqueue(c, fi->url, it->depth, it->root, fi->title, fi->published_at);
    }
    tw_feed_free(&f);
    return rc;
}

static json_t *page_metadata(const struct item *it, const struct response *r, const char *cs)
{
    char when[32];
    iso_time(when, sizeof when);
    json_t *m = json_pack("{s:s, s:s, s:I, s:s?, s:s, s:s, s:i}", "url", it->url, "final_url",
                          r->final_url, "status", (json_int_t)r->status, "content_type",
                          r->content_type, "charset", cs, "fetched_at", when, "depth", it->depth);
    if (m && it->feed_title && json_object_set_new(m, "feed_title", json_string(it->feed_title))) {
        json_decref(m);
        m = NULL;
    }
    return m;
}

// An HTML or text page: a document, and its links queued when the crawl goes deeper.
static int visit_page(struct crawl *c, const struct item *it, const struct response *r,
                      enum ctype t)
{
    const char *body = tw_str_cstr(&r->body);
    size_t len = tw_str_len(&r->body), bom;
    char cs[64];
    const char *cs_used;
    detect_charset(r->content_type, body, len, t, cs, sizeof cs, &bom);
    tw_str utf8;
    tw_str_init(&utf8);
    struct tw_extracted ex;
    tw_extracted_init(&ex);
    json_t *meta = NULL;
    char *host = NULL;
    int rc = to_utf8(body + bom, len - bom, cs, &utf8, &cs_used) ? TW_ENOMEM : 0;
    if (!rc)
        rc = t == CT_HTML
                 ? tw_extract_html(tw_str_cstr(&utf8), tw_str_len(&utf8), r->final_url, &ex)
                 : tw_extract_text(tw_str_cstr(&utf8), tw_str_len(&utf8), &ex);
    if (!rc && tw_web_url_split(r->final_url, NULL, &host, NULL) == TW_ENOMEM)
        rc = TW_ENOMEM;
    if (!rc && !(meta = page_metadata(it, r, cs_used)))
        rc = TW_ENOMEM;
    if (rc) {
        if (rc == TW_ENOMEM)
            tw_error_set(rc, "%s: out of memory", it->url);
        else
            tw_error_prefix("%s", it->url);
        goto out;
    }
    for (size_t i = 0; !rc && it->depth < c->o.depth && i < ex.links.len; i++)
        rc = enqueue(c, TW_VEC_AT(&ex.links, char *, i), it->depth + 1, it->root, NULL, 0);
    if (rc)
        goto out;
    struct tw_doc_in d = {
        .uri = r->final_url,
        .platform = host,
        .title = tw_str_len(&ex.title) ? tw_str_cstr(&ex.title) : it->feed_title,
        .content = tw_str_cstr(&ex.text),
        .content_len = tw_str_len(&ex.text),
        .published_at = it->feed_date,
        .metadata = meta,
        .extractor = t == CT_HTML ? "html" : "text",
    };
    if (tw_map_put_str(&c->emitted, r->final_url, strlen(r->final_url), 1)) {
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", it->url);
        goto out;
    }
    rc = c->sink->doc(c->sink->ud, &d);
    c->docs++;
    if (c->sink->progress)
        c->sink->progress(c->sink->ud, c->docs, c->o.max_pages);
out:
    tw_free(host);
    json_decref(meta);
    tw_extracted_free(&ex);
    tw_str_free(&utf8);
    return rc;
}

// The request for a URL that passed the checks, and what its response becomes.
static int visit_fetch(struct crawl *c, struct host *h, const struct item *it)
{
    const struct tw_sink *s = c->sink;
    struct response r = { .max_bytes = c->o.max_bytes, .check_type = true };
    tw_str_init(&r.body);
    tw_str msg;
    tw_str_init(&msg);
    char *origin = NULL;
    c->items++;
    int rc = fetch(c, h, it->url, &r);
    if (rc)
        goto out;
    if (r.too_large) {
        s->skip(s->ud, it->url, "too large");
        goto out;
    }
    if (r.wrong_type) {
        s->skip(s->ud, it->url, "content type");
        goto out;
    }
    if (r.cc != CURLE_OK || r.status < 200 || r.status >= 300) {
        failure_message(c, it->url, &r, &msg);
        s->fail(s->ud, it->url, tw_str_cstr(&msg));
        goto out;
    }
    // Where the redirects ended: one document per final URL, known to the dedupe.
    char *final = NULL;
    rc = tw_web_url_normalize(NULL, r.final_url, &final);
    if (rc == TW_ENOMEM)
        goto oom;
    if (!rc) {
        tw_free(r.final_url);
        r.final_url = final;
    }
    rc = 0;
    if (strcmp(r.final_url, it->url) != 0) {
        size_t fn = strlen(r.final_url);
        if (tw_map_get_str(&c->emitted, r.final_url, fn, NULL)) {
            s->skip(s->ud, it->url, "duplicate");
            goto out;
        }
        if (tw_map_put_str(&c->queued, r.final_url, fn, 1))
            goto oom;
        if (!c->o.refresh && s->seen && s->seen(s->ud, r.final_url)) {
            s->skip(s->ud, it->url, "already ingested");
            goto out;
        }
        if (it->is_start) { // the start's links are on the origin it redirected to
            struct root *root = &TW_VEC_AT(&c->roots, struct root, it->root);
            if (tw_web_url_split(r.final_url, &origin, NULL, NULL) == TW_ENOMEM)
                goto oom;
            tw_free(root->final_origin);
            root->final_origin = origin;
            origin = NULL;
        }
    }
    enum ctype t = classify(r.content_type);
    if (t == CT_NONE)
        t = sniff(tw_str_cstr(&r.body), tw_str_len(&r.body));
    if (t == CT_HTML || t == CT_TEXT)
        rc = visit_page(c, it, &r, t);
    else if (t == CT_XML)
        rc = visit_feed(c, it, &r);
    else
        s->skip(s->ud, it->url, "content type");
    goto out;
oom:
    rc = tw_error_set(TW_ENOMEM, "%s: out of memory", it->url);
out:
    tw_free(origin);
    tw_str_free(&msg);
    response_free(&r);
    return rc;
}

// One queued URL: the checks that need no request (dedupe, the warehouse, robots.txt) first.
static int visit(struct crawl *c, const struct item *it)
{
    const struct tw_sink *s = c->sink;
    if (tw_map_get_str(&c->emitted, it->url, strlen(it->url), NULL)) {
        s->skip(s->ud, it->url, "duplicate"); // reached before through a redirect
        return 0;
    }
    if (!c->o.refresh && s->seen && s->seen(s->ud, it->url)) {
        s->skip(s->ud, it->url, "already ingested");
        return 0;
    }
    char *origin = NULL, *path = NULL;
    struct host *h = NULL;
    int rc = tw_web_url_split(it->url, &origin, NULL, &path);
    if (!rc && !(h = host_get(c, origin)))
        rc = TW_ENOMEM;
    if (!rc)
        rc = robots_load(c, h);
    if (rc == TW_ENOMEM) {
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", it->url);
    } else if (rc) {
        rc = 0; // a normalised URL always splits
    } else if (h->robots_state == ROBOTS_UNREACHABLE) {
        tw_str msg;
        tw_str_init(&msg);
        tw_str_printf(&msg, "GET %s: not fetched: robots.txt unreachable: %s", it->url,
                      h->robots_error);
        s->fail(s->ud, it->url, tw_str_len(&msg) ? tw_str_cstr(&msg) : h->robots_error);
        tw_str_free(&msg);
    } else if (!tw_robots_allowed(&h->robots, path)) {
        s->skip(s->ud, it->url, "robots.txt");
    } else {
        rc = visit_fetch(c, h, it);
    }
    tw_free(origin);
    tw_free(path);
    return rc;
}

// ---- the source

static pthread_once_t global_once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    xmlInitParser();
}

static void options_resolve(struct opts *o, const struct tw_web_options *opt, size_t n_urls)
{
    const struct tw_web_options none = { 0 };
    if (!opt)
        opt = &none;
    o->user_agent = opt->user_agent && opt->user_agent[0] ? opt->user_agent : DEFAULT_UA;
    tw_robots_agent_token(o->user_agent, o->agent, sizeof o->agent);
    o->depth = opt->depth > 0 ? opt->depth : 0;
    o->max_pages = opt->max_pages > 0 ? opt->max_pages : 100;
    o->max_items = 4 * o->max_pages + (int64_t)n_urls;
    o->interval_s = 1.0 / (opt->rate_per_host > 0 ? opt->rate_per_host : 1.0);
    o->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : 20000;
    o->retries = opt->retries > 0 ? opt->retries : opt->retries < 0 ? 0 : 3;
    o->max_redirects = opt->max_redirects > 0 ? opt->max_redirects : 5;
    o->max_bytes = opt->max_bytes > 0 ? opt->max_bytes : (int64_t)10 << 20;
    o->refresh = opt->refresh;
    // Back-off: timeout/40, within [10 ms, 0.5 s] (0.5 s for the default 20 s timeout; short
    // where a caller asked for short timeouts), doubling up to 8 times that.
    double b = (double)o->timeout_ms / 40e3;
    o->backoff_s = b < 0.01 ? 0.01 : b > 0.5 ? 0.5 : b;
    o->backoff_max_s = 8 * o->backoff_s;
}

static int curl_setup(struct crawl *c)
{
    CURL *e = c->curl = curl_easy_init();
    if (!e)
        return tw_error_set(TW_ENOMEM, "web: cannot start libcurl");
    CURLcode cc = CURLE_OK;
#define SET(opt, val)                               \
    do {                                            \
        if (cc == CURLE_OK)                         \
            cc = curl_easy_setopt(e, (opt), (val)); \
    } while (0)
    SET(CURLOPT_USERAGENT, c->o.user_agent);
    SET(CURLOPT_FOLLOWLOCATION, 1L);
    SET(CURLOPT_MAXREDIRS, c->o.max_redirects);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->o.timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, c->o.timeout_ms);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ACCEPT_ENCODING, ""); // what curl can decode; max_bytes counts decoded bytes
    SET(CURLOPT_WRITEFUNCTION, on_body);
#undef SET
    if (cc != CURLE_OK)
        return tw_error_set(TW_EUNSUPPORTED, "web: libcurl: %s", curl_easy_strerror(cc));
    return 0;
}

// Queues the start URLs (each a root of its own crawl); a URL that is not http(s) fails.
static int add_starts(struct crawl *c, const char *const *urls, size_t n_urls)
{
    for (size_t i = 0; i < n_urls; i++) {
        char *norm = NULL;
        struct root root = { 0 };
        int rc = tw_web_url_normalize(NULL, urls[i], &norm);
        if (!rc)
            rc = tw_web_url_split(norm, &root.origin, NULL, NULL);
        if (rc == TW_EINVAL) {
            tw_free(norm);
            c->sink->fail(c->sink->ud, urls[i], "not an http(s) URL");
            continue;
        }
        if (!rc && tw_vec_push(&c->roots, &root))
            rc = TW_ENOMEM;
        if (rc) {
            tw_free(root.origin);
            tw_free(norm);
            return tw_error_set(TW_ENOMEM, "%s: out of memory", urls[i]);
        }
        size_t before = c->queue.len;
        rc = enqueue(c, norm, 0, c->roots.len - 1, NULL, 0);
        tw_free(norm);
        if (rc)
            return rc;
        if (c->queue.len > before)
            TW_VEC_AT(&c->queue, struct item, before).is_start = true;
    }
    return 0;
}

int tw_source_web(const char *const *urls, size_t n_urls, const struct tw_web_options *opt,
                  const struct tw_sink *sink)
{
    pthread_once(&global_once, global_init);
    struct crawl c = { .sink = sink };
    options_resolve(&c.o, opt, n_urls);
    tw_vec_init(&c.hosts, sizeof(struct host *));
    tw_map_init(&c.host_ix, TW_MAP_STR);
    tw_vec_init(&c.queue, sizeof(struct item));
    tw_map_init(&c.queued, TW_MAP_STR);
    tw_map_init(&c.emitted, TW_MAP_STR);
    tw_vec_init(&c.roots, sizeof(struct root));
    int rc = curl_setup(&c);
    if (!rc)
        rc = add_starts(&c, urls, n_urls);
    // Breadth first: the queue is in order of depth, and each start's pages are interleaved.
    while (!rc && c.head < c.queue.len && c.docs < c.o.max_pages && c.items < c.o.max_items) {
        struct item it = TW_VEC_AT(&c.queue, struct item, c.head);
        memset(&TW_VEC_AT(&c.queue, struct item, c.head), 0, sizeof it);
        c.head++;
        rc = visit(&c, &it);
        item_free(&it);
    }
    for (size_t i = c.head; i < c.queue.len; i++)
        item_free(&TW_VEC_AT(&c.queue, struct item, i));
    for (size_t i = 0; i < c.hosts.len; i++)
        host_free(TW_VEC_AT(&c.hosts, struct host *, i));
    for (size_t i = 0; i < c.roots.len; i++) {
        tw_free(TW_VEC_AT(&c.roots, struct root, i).origin);
        tw_free(TW_VEC_AT(&c.roots, struct root, i).final_origin);
    }
    tw_vec_free(&c.queue);
    tw_vec_free(&c.hosts);
    tw_vec_free(&c.roots);
    tw_map_free(&c.host_ix);
    tw_map_free(&c.queued);
    tw_map_free(&c.emitted);
    if (c.curl)
        curl_easy_cleanup(c.curl);
    return rc;
}

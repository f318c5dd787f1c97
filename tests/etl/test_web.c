// Tests for the web source (src/etl/web.c) against a real HTTP server on 127.0.0.1 (an
// ephemeral port, libmicrohttpd): crawl scope and depth, robots.txt, feeds and sitemaps,
// redirects, retries, time-outs, size and type limits, charsets, the rate limiter, seen();
// and the robots.txt matcher and URL normalisation on their own.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "base/mem.h"
#include "check.h"
#include "etl/feed.h"
#include "etl/robots.h"
#include "etl/source.h"

// ---- the fixture server

enum mode { SITE, ROBOTS_500, ROBOTS_404 };

struct server {
    struct MHD_Daemon *d;
    char base[64]; // http://127.0.0.1:PORT
    enum mode mode;
    pthread_mutex_t mu;
    struct {
        char path[96];
        int count;
    } hits[96];
    int n_hits;
    int flaky; // requests of /flaky.html so far
    char user_agent[128];
};

static int hits(struct server *s, const char *path)
{
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_hits; i++)
        if (!strcmp(s->hits[i].path, path))
            n = s->hits[i].count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int total_hits(struct server *s)
{
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_hits; i++)
        n += s->hits[i].count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

// Counts a request; returns how many requests of this path came before it.
static int count_hit(struct server *s, const char *path, const char *ua)
{
    pthread_mutex_lock(&s->mu);
    int i = 0;
    while (i < s->n_hits && strcmp(s->hits[i].path, path))
        i++;
    if (i == s->n_hits && i < (int)(sizeof s->hits / sizeof *s->hits)) {
        snprintf(s->hits[i].path, sizeof s->hits[i].path, "%s", path);
        s->hits[i].count = 0;
        s->n_hits++;
    }
    int before = i < s->n_hits ? s->hits[i].count++ : 0;
    if (ua)
        snprintf(s->user_agent, sizeof s->user_agent, "%s", ua);
    pthread_mutex_unlock(&s->mu);
    return before;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             const char *body, size_t len, const char *location)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (ctype)
        MHD_add_response_header(r, "Content-Type", ctype);
    if (location)
        MHD_add_response_header(r, "Location", location);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result html(struct MHD_Connection *conn, const char *body)
{
    return reply(conn, 200, "text/html; charset=utf-8", body, strlen(body), NULL);
}

// The body of /huge-chunked.html: 100 000 bytes of markup, length unknown (chunked).
static ssize_t chunked_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= 100000)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = max < 100000 - pos ? max : (size_t)(100000 - pos);
    memset(buf, 'x', n);
    return (ssize_t)n;
}

static const char robots_txt[] = "# the fixture's robots.txt\n"
                                 "User-agent: *\n"
                                 "Disallow: /\n"
                                 "\n"
                                 "User-agent: twin-test\n"
                                 "User-agent: somebot\n"
                                 "Disallow: /private/\n"
                                 "Allow: /private/open.html   # longer: wins\n"
                                 "Disallow: /*.pdf$\n";

static const char index_html[] =
    "<!DOCTYPE html><html><head><title>Index</title></head><body><h1>Welcome</h1>"
    "<p>The index page.</p><ul>"
    "<li><a href=\"page1.html\">one</a>"
    "<li><a href=\"%s/page2.html\">two</a>"
    "<li><a href=\"/page1.html#section\">one again</a>"
    "<li><a href=\"http://other.invalid/x.html\">elsewhere</a>"
    "<li><a href=\"/private/secret.html\">secret</a>"
    "<li><a href=\"/private/open.html\">open</a>"
    "<li><a href=\"/doc.pdf\">pdf</a>"
    "<li><a href=\"/doc.pdf?x=1\">pdf with a query</a>"
    "<li><a href=\"/deep/level1.html\">deep</a>"
    "<li><a href=\"/latin1.html\">latin1</a>"
    "<li><a href=\"/cp1252.html\">cp1252</a>"
    "<li><a href=\"/plain.txt\">text</a>"
    "<li><a href=\"/image.png\">image</a>"
    "<li><a href=\"/huge.html\">huge</a>"
    "<li><a href=\"/huge-chunked.html\">huge, chunked</a>"
    "<li><a href=\"/broken.html\">broken</a>"
    "<li><a href=\"/missing.html\">missing</a>"
    "<li><a href=\"/redirect1\">redirect</a>"
    "<li><a href=\"/target.html\">target</a>"
    "<li><a href=\"/loop\">loop</a>"
    "<li><a href=\"/flaky.html\">flaky</a>"
    "<li><a href=\"/error.html\">error</a>"
    "<li><a href=\"/slow.html\">slow</a>"
    "<li><a href=\"/notype\">no content type</a>"
    "<li><a href=\"index.html\">self</a>"
    "</ul></body></html>";

static const char rss_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<rss version=\"2.0\"><channel><title>Fixture feed</title>"
    "<link>%s/</link><description>d</description>"
    "<item><title>Feed item one</title><link>%s/page1.html</link>"
    "<pubDate>Tue, 02 Jan 2024 03:04:05 GMT</pubDate></item>"
    "<item><title><![CDATA[Item <two>]]></title><link>/page2.html</link></item>"
    "<item><title>Elsewhere</title><link>http://other.invalid/post</link></item>"
    "<item><title>By guid</title><guid>%s/plain.txt</guid></item>"
    "<item><title>Not a permalink</title><guid isPermaLink=\"false\">abc-1</guid></item>"
    "</channel></rss>\n";

static const char atom_xml[] =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
    "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title>Atom fixture</title>"
    "<entry><title>Deep entry</title><link rel=\"self\" href=\"/self.xml\"/>"
    "<link rel=\"alternate\" href=\"/deep/level1.html\"/>"
    "<published>2024-05-01T10:00:00+02:00</published><updated>2024-06-01T00:00:00Z</updated>"
    "</entry>"
    "<entry><title>Open</title><link href=\"private/open.html\"/>"
    "<updated>2023-11-15</updated></entry>"
    "</feed>\n";

static const char sitemap_index_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"
    "<sitemap><loc>%s/sitemap.xml</loc></sitemap></sitemapindex>\n";

static const char sitemap_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"
    "<url><loc>%s/page1.html</loc><lastmod>2023-11-15</lastmod></url>"
    "<url><loc> %s/private/secret.html </loc></url>"
    "<url><loc>%s/latin1.html</loc></url>"
    "</urlset>\n";

static enum MHD_Result route(struct server *s, struct MHD_Connection *conn, const char *path)
{
    char buf[4096];
    const char *b = s->base;
    if (!strcmp(path, "/robots.txt")) {
        if (s->mode == ROBOTS_500)
            return reply(conn, 500, "text/plain", "oops", 4, NULL);
        if (s->mode == ROBOTS_404)
            return reply(conn, 404, "text/plain", "no", 2, NULL);
        return reply(conn, 200, "text/plain", robots_txt, strlen(robots_txt), NULL);
    }
    if (!strcmp(path, "/index.html")) {
        snprintf(buf, sizeof buf, index_html, b);
        return html(conn, buf);
    }
    if (!strcmp(path, "/page1.html"))
        return html(conn, "<html><head><title>Page One</title></head><body>"
                          "<p>First page text.</p><a href=\"/index.html\">home</a></body></html>");
    if (!strcmp(path, "/page2.html"))
        return html(conn, "<html><head><title>Page Two</title></head><body>"
                          "<p>Second page text.</p><a href=\"/page1.html\">one</a></body></html>");
    if (!strcmp(path, "/private/open.html") || !strcmp(path, "/private/secret.html"))
        return html(conn, "<html><head><title>Open Private</title></head><body>"
                          "<p>Allowed inside private.</p></body></html>");
    if (!strcmp(path, "/deep/level1.html"))
        return html(conn, "<html><head><title>Level One</title></head><body><p>One down.</p>"
                          "<a href=\"level2.html\">down</a></body></html>");
    if (!strcmp(path, "/deep/level2.html"))
        return html(conn, "<html><head><title>Level Two</title></head><body><p>Two down.</p>"
                          "<a href=\"level3.html\">down</a></body></html>");
    if (!strcmp(path, "/latin1.html")) {
        const char *p = "<html><head><title>Caf\xe9</title></head><body>"
                        "<p>Un caf\xe9 cr\xe8me.</p></body></html>";
        return reply(conn, 200, "text/html; charset=ISO-8859-1", p, strlen(p), NULL);
    }
    if (!strcmp(path, "/cp1252.html")) {
        const char *p = "<html><head><meta charset=\"windows-1252\"><title>Quotes</title></head>"
                        "<body><p>\x93quoted\x94 na\xefve</p></body></html>";
        return reply(conn, 200, "text/html", p, strlen(p), NULL);
    }
    if (!strcmp(path, "/plain.txt")) {
        const char *p = "Plain title\n\nPlain body line.\n";
        return reply(conn, 200, "text/plain; charset=utf-8", p, strlen(p), NULL);
    }
    if (!strcmp(path, "/image.png"))
        return reply(conn, 200, "image/png", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16, NULL);
    if (!strcmp(path, "/doc.pdf"))
        return reply(conn, 200, "application/pdf", "%PDF-1.4\n", 9, NULL);
    if (!strcmp(path, "/huge.html")) {
        static char huge[100001];
        memset(huge, 'x', sizeof huge - 1);
        return reply(conn, 200, "text/html", huge, sizeof huge - 1, NULL);
    }
    if (!strcmp(path, "/huge-chunked.html")) {
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, chunked_body, NULL, NULL);
        MHD_add_response_header(r, "Content-Type", "text/html");
        enum MHD_Result ret = MHD_queue_response(conn, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (!strcmp(path, "/broken.html"))
        return html(conn, "<html><body><p>Broken <b>bold <i>text</p><div>unclosed <table><tr>"
                          "<td>cell");
    if (!strcmp(path, "/redirect1"))
        return reply(conn, 301, "text/html", "moved", 5, "/redirect2");
    if (!strcmp(path, "/redirect2"))
        return reply(conn, 302, "text/html", "found", 5, "/target.html");
    if (!strcmp(path, "/target.html"))
        return html(conn, "<html><head><title>Target</title></head><body>"
                          "<p>Redirect target.</p></body></html>");
    if (!strcmp(path, "/loop"))
        return reply(conn, 302, "text/html", "again", 5, "/loop");
    if (!strcmp(path, "/flaky.html")) {
        pthread_mutex_lock(&s->mu);
        int n = s->flaky++;
        pthread_mutex_unlock(&s->mu);
        if (n == 0)
            return reply(conn, 500, "text/html", "busy", 4, NULL);
        return html(conn, "<html><head><title>Flaky</title></head><body><p>Second time lucky."
                          "</p></body></html>");
    }
    if (!strcmp(path, "/error.html"))
        return reply(conn, 500, "text/html", "broken server", 13, NULL);
    if (!strcmp(path, "/slow.html")) {
        usleep(1000 * 1000);
        return html(conn, "<html><body>too late</body></html>");
    }
    if (!strcmp(path, "/notype")) {
        const char *p = "<!DOCTYPE html><html><head><title>No type</title></head><body>"
                        "<p>Sniffed as HTML.</p></body></html>";
        return reply(conn, 200, NULL, p, strlen(p), NULL);
    }
    if (!strcmp(path, "/feed.xml")) {
        snprintf(buf, sizeof buf, rss_xml, b, b, b);
        return reply(conn, 200, "application/rss+xml", buf, strlen(buf), NULL);
    }
    if (!strcmp(path, "/atom.xml"))
        return reply(conn, 200, "application/atom+xml", atom_xml, strlen(atom_xml), NULL);
    if (!strcmp(path, "/sitemap_index.xml")) {
        snprintf(buf, sizeof buf, sitemap_index_xml, b);
        return reply(conn, 200, "application/xml", buf, strlen(buf), NULL);
    }
    if (!strcmp(path, "/sitemap.xml")) {
        snprintf(buf, sizeof buf, sitemap_xml, b, b, b);
        return reply(conn, 200, "text/xml", buf, strlen(buf), NULL);
    }
    if (!strcmp(path, "/bad.xml"))
        return reply(conn, 200, "application/xml", "<urlset><url>\n<loc>x</url>", 26, NULL);
    if (!strcmp(path, "/other.xml"))
        return reply(conn, 200, "application/xml", "<svg><g/></svg>", 15, NULL);
    return reply(conn, 404, "text/html", "not found", 9, NULL);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    (void)method, (void)version, (void)upload_data, (void)upload_data_size;
    struct server *s = cls;
    static int marker;
    if (!*con_cls) { // the headers are in; answer on the next call
        *con_cls = &marker;
        return MHD_YES;
    }
    char path[96];
    const char *x = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "x");
    snprintf(path, sizeof path, "%s%s%s", url, x ? "?x=" : "", x ? x : "");
    count_hit(s, path, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "User-Agent"));
    return route(s, conn, url);
}

static void server_start(struct server *s, enum mode mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    REQUIRE(s->d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    REQUIRE(info && info->port);
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%u", (unsigned)info->port);
}

static void server_stop(struct server *s)
{
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
}

// ---- the recording sink

struct rdoc {
    char *uri, *title, *content, *platform, *extractor;
    int64_t published_at;
    json_t *meta;
};

struct note {
    char *uri, *text;
};

struct rec {
    struct rdoc docs[64];
    int n_docs;
    struct note skips[64], fails[64];
    int n_skips, n_fails;
    const char *seen_uri; // seen() answers true for this one
    int seen_calls;
    int stop_after; // > 0: doc() returns TW_ECANCELED after this many documents
    int64_t prog_done, prog_total;
};

static char *dup_or_null(const char *s)
{
    return s ? tw_strdup(s) : NULL;
}

static int rec_doc(void *ud, const struct tw_doc_in *d)
{
    struct rec *r = ud;
    REQUIRE(r->n_docs < 64);
    struct rdoc *x = &r->docs[r->n_docs++];
    x->uri = tw_strdup(d->uri);
    x->title = dup_or_null(d->title);
    x->content = tw_strndup(d->content, d->content_len);
    x->platform = dup_or_null(d->platform);
    x->extractor = dup_or_null(d->extractor);
    x->published_at = d->published_at;
    x->meta = d->metadata ? json_deep_copy(d->metadata) : NULL;
    CHECK(d->category == NULL);
    return r->stop_after && r->n_docs >= r->stop_after ? TW_ECANCELED : 0;
}

static void rec_note(struct note *n, int *count, const char *uri, const char *text)
{
    REQUIRE(*count < 64);
    n[*count].uri = tw_strdup(uri);
    n[*count].text = tw_strdup(text);
    (*count)++;
}

static void rec_skip(void *ud, const char *uri, const char *reason)
{
    struct rec *r = ud;
    rec_note(r->skips, &r->n_skips, uri, reason);
}

static void rec_fail(void *ud, const char *uri, const char *message)
{
    struct rec *r = ud;
    rec_note(r->fails, &r->n_fails, uri, message);
}

static bool rec_seen(void *ud, const char *uri)
{
    struct rec *r = ud;
    r->seen_calls++;
    return r->seen_uri && !strcmp(uri, r->seen_uri);
}

static void rec_progress(void *ud, int64_t done, int64_t total)
{
    struct rec *r = ud;
    r->prog_done = done;
    r->prog_total = total;
}

static void rec_free(struct rec *r)
{
    for (int i = 0; i < r->n_docs; i++) {
        struct rdoc *x = &r->docs[i];
        tw_free(x->uri);
        tw_free(x->title);
        tw_free(x->content);
        tw_free(x->platform);
        tw_free(x->extractor);
        json_decref(x->meta);
    }
    for (int i = 0; i < r->n_skips; i++) {
        tw_free(r->skips[i].uri);
        tw_free(r->skips[i].text);
    }
    for (int i = 0; i < r->n_fails; i++) {
        tw_free(r->fails[i].uri);
        tw_free(r->fails[i].text);
    }
    memset(r, 0, sizeof *r);
}

static struct tw_sink sink_of(struct rec *r)
{
    return (struct tw_sink){ .ud = r,
                             .doc = rec_doc,
                             .skip = rec_skip,
                             .fail = rec_fail,
                             .seen = rec_seen,
                             .progress = rec_progress };
}

// The document / skip reason / failure message recorded for base + path, or NULL.
static const struct rdoc *doc_at(const struct rec *r, const char *base, const char *path)
{
    char uri[256];
    snprintf(uri, sizeof uri, "%s%s", base, path);
    for (int i = 0; i < r->n_docs; i++)
        if (!strcmp(r->docs[i].uri, uri))
            return &r->docs[i];
    return NULL;
}

static const char *note_at(const struct note *n, int count, const char *base, const char *path)
{
    char uri[256];
    snprintf(uri, sizeof uri, "%s%s", base, path);
    for (int i = 0; i < count; i++)
        if (!strcmp(n[i].uri, uri))
            return n[i].text;
    return NULL;
}

#define SKIP_AT(r, s, path) note_at((r)->skips, (r)->n_skips, (s)->base, path)
#define FAIL_AT(r, s, path) note_at((r)->fails, (r)->n_fails, (s)->base, path)

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle);
}

static const char *meta_str(const struct rdoc *d, const char *key)
{
    return d && d->meta ? json_string_value(json_object_get(d->meta, key)) : NULL;
}

static long long meta_int(const struct rdoc *d, const char *key)
{
    return d && d->meta ? json_integer_value(json_object_get(d->meta, key)) : -1;
}

static struct tw_web_options fast_options(void)
{
    return (struct tw_web_options){ .user_agent = "twin-test/1.0",
                                    .rate_per_host = 1000,
                                    .timeout_ms = 300,
                                    .retries = 2,
                                    .max_redirects = 3,
                                    .max_bytes = 20000 };
}

static int run(struct rec *r, const struct tw_web_options *o, const char *base,
               const char *const *paths, size_t n)
{
    char urls[8][256];
    const char *list[8];
    REQUIRE(n <= 8);
    for (size_t i = 0; i < n; i++) {
        snprintf(urls[i], sizeof urls[i], "%s%s", base, paths[i]);
        list[i] = urls[i];
    }
    struct tw_sink sink = sink_of(r);
    return tw_source_web(list, n, o, &sink);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// ---- the crawl

// A depth-1 crawl of the index: every kind of page the index links to.
static void test_crawl(struct server *s)
{
    struct rec r = { 0 };
    struct tw_web_options o = fast_options();
    o.depth = 1;
    const char *start[] = { "/index.html" };
    CHECK_OK(run(&r, &o, s->base, start, 1));

    // Documents: the index, and every page at depth 1 that robots.txt, the limits and the
    // content types let through.
    const char *docs[] = { "/index.html",        "/page1.html",       "/page2.html",
                           "/private/open.html", "/deep/level1.html", "/latin1.html",
                           "/cp1252.html",       "/plain.txt",        "/broken.html",
                           "/target.html",       "/flaky.html",       "/notype" };
    size_t n_docs = sizeof docs / sizeof *docs;
    CHECK_EQ_INT(r.n_docs, n_docs);
    for (size_t i = 0; i < n_docs; i++) {
        const struct rdoc *d = doc_at(&r, s->base, docs[i]);
        if (!d)
            fprintf(stderr, "missing document %s\n", docs[i]);
        CHECK(d != NULL);
        if (d)
            CHECK_EQ_STR(d->platform, "127.0.0.1");
    }
    CHECK(r.n_docs > 0 && doc_at(&r, s->base, "/index.html") == &r.docs[0]); // BFS

    const struct rdoc *d = doc_at(&r, s->base, "/index.html");
    CHECK_EQ_STR(d ? d->title : NULL, "Index");
    CHECK(d && contains(d->content, "The index page."));
    CHECK_EQ_STR(d ? d->extractor : NULL, "html");
    CHECK_EQ_INT(meta_int(d, "depth"), 0);
    CHECK_EQ_INT(meta_int(d, "status"), 200);
    CHECK_EQ_STR(meta_str(d, "content_type"), "text/html; charset=utf-8");
    CHECK_EQ_STR(meta_str(d, "charset"), "utf-8");
    CHECK(meta_str(d, "fetched_at") && strlen(meta_str(d, "fetched_at")) == 20);
    d = doc_at(&r, s->base, "/page1.html");
    CHECK_EQ_STR(d ? d->title : NULL, "Page One");
    CHECK(d && contains(d->content, "First page text."));
    CHECK_EQ_INT(meta_int(d, "depth"), 1);
    CHECK_EQ_INT(d ? d->published_at : -1, 0);
    d = doc_at(&r, s->base, "/private/open.html");
    CHECK(d && contains(d->content, "Allowed inside private."));

    // Charsets: the header's ISO-8859-1 (read as windows-1252), and a <meta> alone.
    d = doc_at(&r, s->base, "/latin1.html");
    CHECK_EQ_STR(d ? d->title : NULL, "Caf\xc3\xa9");
    CHECK(d && contains(d->content, "Un caf\xc3\xa9 cr\xc3\xa8me."));
    CHECK_EQ_STR(meta_str(d, "charset"), "windows-1252");
    d = doc_at(&r, s->base, "/cp1252.html");
    CHECK(d && contains(d->content, "\xe2\x80\x9cquoted\xe2\x80\x9d na\xc3\xafve"));
    CHECK_EQ_STR(meta_str(d, "charset"), "windows-1252");

    d = doc_at(&r, s->base, "/plain.txt");
    CHECK_EQ_STR(d ? d->extractor : NULL, "text");
    CHECK_EQ_STR(d ? d->title : NULL, "Plain title");
    CHECK(d && contains(d->content, "Plain body line."));
    d = doc_at(&r, s->base, "/broken.html");
    CHECK(d && contains(d->content, "Broken") && contains(d->content, "unclosed"));
    d = doc_at(&r, s->base, "/notype");
    CHECK_EQ_STR(d ? d->title : NULL, "No type");
    CHECK_EQ_STR(d ? d->extractor : NULL, "html");

    // The redirect chain: the document is the final URL, the metadata keeps the requested one;
    // the direct link to the target is then a duplicate and is not fetched again.
    d = doc_at(&r, s->base, "/target.html");
    CHECK(d && contains(d->content, "Redirect target."));
    char want[256];
    snprintf(want, sizeof want, "%s/redirect1", s->base);
    CHECK_EQ_STR(meta_str(d, "url"), want);
    snprintf(want, sizeof want, "%s/target.html", s->base);
    CHECK_EQ_STR(meta_str(d, "final_url"), want);
    CHECK_EQ_STR(SKIP_AT(&r, s, "/target.html"), "duplicate");
    CHECK_EQ_INT(hits(s, "/target.html"), 1);
    CHECK_EQ_INT(hits(s, "/redirect2"), 1);

    // Retries: 500 then 200 is a document after two requests.
    d = doc_at(&r, s->base, "/flaky.html");
    CHECK(d && contains(d->content, "Second time lucky."));
    CHECK_EQ_INT(hits(s, "/flaky.html"), 2);

    // Skips.
    CHECK_EQ_INT(r.n_skips, 7);
    CHECK_EQ_STR(SKIP_AT(&r, s, "/private/secret.html"), "robots.txt");
    CHECK_EQ_STR(SKIP_AT(&r, s, "/doc.pdf"), "robots.txt");
    CHECK_EQ_STR(SKIP_AT(&r, s, "/doc.pdf?x=1"), "content type");
    CHECK_EQ_STR(SKIP_AT(&r, s, "/image.png"), "content type");
    CHECK_EQ_STR(SKIP_AT(&r, s, "/huge.html"), "too large");
    CHECK_EQ_STR(SKIP_AT(&r, s, "/huge-chunked.html"), "too large");

    // Failures, with their messages.
    CHECK_EQ_INT(r.n_fails, 4);
    snprintf(want, sizeof want, "GET %s/missing.html: HTTP 404", s->base);
    CHECK_EQ_STR(FAIL_AT(&r, s, "/missing.html"), want);
    snprintf(want, sizeof want, "GET %s/error.html: HTTP 500 (3 attempts)", s->base);
    CHECK_EQ_STR(FAIL_AT(&r, s, "/error.html"), want);
    snprintf(want, sizeof want, "GET %s/slow.html: timed out after 300 ms (3 attempts)", s->base);
    CHECK_EQ_STR(FAIL_AT(&r, s, "/slow.html"), want);
    snprintf(want, sizeof want, "GET %s/loop: more than 3 redirects (a redirect loop?)", s->base);
    CHECK_EQ_STR(FAIL_AT(&r, s, "/loop"), want);

    // What the server saw: robots.txt once, nothing it disallows, nothing past depth 1,
    // nothing twice that was linked twice, a 404 once (no retry), a 500 three times.
    CHECK_EQ_INT(hits(s, "/robots.txt"), 1);
    CHECK_EQ_INT(hits(s, "/private/secret.html"), 0);
    CHECK_EQ_INT(hits(s, "/doc.pdf"), 0);
    CHECK_EQ_INT(hits(s, "/doc.pdf?x=1"), 1);
    CHECK_EQ_INT(hits(s, "/deep/level2.html"), 0);
    CHECK_EQ_INT(hits(s, "/index.html"), 1);
    CHECK_EQ_INT(hits(s, "/page1.html"), 1);
    CHECK_EQ_INT(hits(s, "/missing.html"), 1);
    CHECK_EQ_INT(hits(s, "/error.html"), 3);
    CHECK_EQ_INT(hits(s, "/slow.html"), 3);
    CHECK_EQ_STR(s->user_agent, "twin-test/1.0");

    CHECK_EQ_INT(r.prog_done, n_docs);
    CHECK_EQ_INT(r.prog_total, 100);
    rec_free(&r);
}

// Feeds and sitemaps are link sources at depth 0: their items are fetched, they are not
// documents themselves, and items off the origin are left alone.
static void test_feeds(struct server *s)
{
    struct rec r = { 0 };
    struct tw_web_options o = fast_options();
    const char *rss[] = { "/feed.xml" };
    CHECK_OK(run(&r, &o, s->base, rss, 1));
    CHECK_EQ_INT(r.n_docs, 3);
    CHECK_EQ_INT(r.n_fails, 0);
    CHECK_EQ_INT(r.n_skips, 0);
    const struct rdoc *d = doc_at(&r, s->base, "/page1.html");
    CHECK_EQ_STR(d ? d->title : NULL, "Page One");
    CHECK_EQ_INT(d ? d->published_at : -1, 1704164645);
    CHECK_EQ_STR(meta_str(d, "feed_title"), "Feed item one");
    CHECK_EQ_INT(meta_int(d, "depth"), 0);
    d = doc_at(&r, s->base, "/page2.html");
    CHECK_EQ_STR(meta_str(d, "feed_title"), "Item <two>");
    CHECK(doc_at(&r, s->base, "/plain.txt") != NULL);
    rec_free(&r);

    const char *atom[] = { "/atom.xml" };
    CHECK_OK(run(&r, &o, s->base, atom, 1));
    CHECK_EQ_INT(r.n_docs, 2);
    d = doc_at(&r, s->base, "/deep/level1.html");
    CHECK_EQ_INT(d ? d->published_at : -1, 1714550400); // published wins over updated
    CHECK_EQ_STR(meta_str(d, "feed_title"), "Deep entry");
    d = doc_at(&r, s->base, "/private/open.html");
    CHECK_EQ_INT(d ? d->published_at : -1, 1700006400);
    CHECK_EQ_INT(hits(s, "/self.xml"), 0);
    CHECK_EQ_INT(hits(s, "/deep/level2.html"), 0); // depth 0: pages are not expanded
    rec_free(&r);

    const char *maps[] = { "/sitemap_index.xml" };
    CHECK_OK(run(&r, &o, s->base, maps, 1));
    CHECK_EQ_INT(r.n_docs, 2);
    CHECK(doc_at(&r, s->base, "/page1.html") != NULL);
    CHECK(doc_at(&r, s->base, "/latin1.html") != NULL);
    CHECK_EQ_INT(r.n_skips, 1);
    CHECK_EQ_STR(SKIP_AT(&r, s, "/private/secret.html"), "robots.txt");
    CHECK_EQ_INT(hits(s, "/sitemap.xml"), 1);
    rec_free(&r);

    const char *bad[] = { "/bad.xml", "/other.xml" };
    CHECK_OK(run(&r, &o, s->base, bad, 2));
    CHECK_EQ_INT(r.n_docs, 0);
    const char *msg = FAIL_AT(&r, s, "/bad.xml");
    CHECK(contains(msg, "/bad.xml: line 2: malformed XML"));
    CHECK_EQ_STR(SKIP_AT(&r, s, "/other.xml"), "content type");
    rec_free(&r);
}

// max_pages stops a crawl after that many documents (breadth first: the nearest pages);
// depth bounds how far links are followed.
static void test_limits(struct server *s)
{
    struct rec r = { 0 };
    struct tw_web_options o = fast_options();
    o.depth = 2;
    o.max_pages = 3;
    const char *start[] = { "/index.html" };
    CHECK_OK(run(&r, &o, s->base, start, 1));
    CHECK_EQ_INT(r.n_docs, 3);
    CHECK(doc_at(&r, s->base, "/index.html") && doc_at(&r, s->base, "/page1.html") &&
          doc_at(&r, s->base, "/page2.html"));
    CHECK_EQ_INT(r.prog_done, 3);
    CHECK_EQ_INT(r.prog_total, 3);
    rec_free(&r);

    o = fast_options();
    o.depth = 1;
    int level2 = hits(s, "/deep/level2.html");
    const char *deep[] = { "/deep/level1.html" };
    CHECK_OK(run(&r, &o, s->base, deep, 1));
    CHECK_EQ_INT(r.n_docs, 2);
    CHECK(doc_at(&r, s->base, "/deep/level2.html") != NULL);
    CHECK_EQ_INT(hits(s, "/deep/level2.html"), level2 + 1);
    CHECK_EQ_INT(hits(s, "/deep/level3.html"), 0);
    rec_free(&r);

    // A sink that asks to stop: the source returns its code.
    r.stop_after = 1;
    CHECK_EQ_INT(run(&r, &o, s->base, start, 1), TW_ECANCELED);
    CHECK_EQ_INT(r.n_docs, 1);
    rec_free(&r);
}

// seen(): a page the warehouse has is neither fetched nor expanded, unless refreshing.
static void test_seen(struct server *s)
{
    struct rec r = { 0 };
    char seen[256];
    snprintf(seen, sizeof seen, "%s/page1.html", s->base);
    struct tw_web_options o = fast_options();
    const char *start[] = { "/page1.html", "/page2.html" };
    int before = hits(s, "/page1.html");
    r.seen_uri = seen;
    CHECK_OK(run(&r, &o, s->base, start, 2));
    CHECK_EQ_INT(r.n_docs, 1);
    CHECK(doc_at(&r, s->base, "/page2.html") != NULL);
    CHECK_EQ_STR(SKIP_AT(&r, s, "/page1.html"), "already ingested");
    CHECK_EQ_INT(hits(s, "/page1.html"), before);
    rec_free(&r);

    o.refresh = true;
    r.seen_uri = seen;
    CHECK_OK(run(&r, &o, s->base, start, 2));
    CHECK_EQ_INT(r.n_docs, 2);
    CHECK_EQ_INT(r.seen_calls, 0);
    CHECK_EQ_INT(hits(s, "/page1.html"), before + 1);
    rec_free(&r);
}

// The limiter: N requests to one origin at R per second take at least (N - 1) / R seconds.
static void test_rate(struct server *s)
{
    struct rec r = { 0 };
    struct tw_web_options o = fast_options();
    o.rate_per_host = 10;
    const char *start[] = { "/page1.html", "/page2.html", "/plain.txt", "/latin1.html" };
    int before = total_hits(s);
    double t0 = now_s();
    CHECK_OK(run(&r, &o, s->base, start, 4));
    double took = now_s() - t0;
    int n = total_hits(s) - before;
    CHECK_EQ_INT(n, 5); // robots.txt and the four pages
    CHECK(took >= (n - 1) / 10.0 * 0.95);
    CHECK_EQ_INT(r.n_docs, 4);
    rec_free(&r);
}

// robots.txt groups and answers: another product token gets the "*" group (everything
// disallowed); a 5xx robots.txt disallows the whole origin; a 404 allows it; an unreachable
// origin fails its pages; a URL that is not http(s) fails.
static void test_robots_answers(struct server *s)
{
    struct rec r = { 0 };
    struct tw_web_options o = fast_options();
    o.user_agent = "OtherBot/2.0";
    const char *start[] = { "/page2.html" };
    int before = hits(s, "/page2.html");
    CHECK_OK(run(&r, &o, s->base, start, 1));
    CHECK_EQ_INT(r.n_docs, 0);
    CHECK_EQ_STR(SKIP_AT(&r, s, "/page2.html"), "robots.txt");
    CHECK_EQ_INT(hits(s, "/page2.html"), before);
    rec_free(&r);

    o = fast_options();
    o.user_agent = "SomeBot"; // the second User-agent line of the twin-test group
    CHECK_OK(run(&r, &o, s->base, start, 1));
    CHECK_EQ_INT(r.n_docs, 1);
    rec_free(&r);

    struct server s5;
    server_start(&s5, ROBOTS_500);
    o = fast_options();
    CHECK_OK(run(&r, &o, s5.base, start, 1));
    CHECK_EQ_INT(r.n_docs, 0);
    CHECK_EQ_STR(SKIP_AT(&r, &s5, "/page2.html"), "robots.txt");
    CHECK_EQ_INT(hits(&s5, "/page2.html"), 0);
    CHECK_EQ_INT(hits(&s5, "/robots.txt"), 3); // a 5xx is retried
    rec_free(&r);
    server_stop(&s5);

    struct server s4;
    server_start(&s4, ROBOTS_404);
    const char *secret[] = { "/private/secret.html" };
    CHECK_OK(run(&r, &o, s4.base, secret, 1));
    CHECK_EQ_INT(r.n_docs, 1);
    CHECK_EQ_INT(hits(&s4, "/robots.txt"), 1);
    rec_free(&r);
    server_stop(&s4);

    // A port nobody listens on: bind one, note it, close it.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    close(fd);
    const char *pages[] = { "/a.html", "/b.html" };
    CHECK_OK(run(&r, &o, dead, pages, 2));
    CHECK_EQ_INT(r.n_docs, 0);
    CHECK_EQ_INT(r.n_fails, 2);
    char want[256];
    snprintf(want, sizeof want,
             "GET %s/b.html: not fetched: robots.txt unreachable: GET %s/robots.txt: "
             "could not connect (3 attempts)",
             dead, dead);
    CHECK_EQ_STR(note_at(r.fails, r.n_fails, dead, "/b.html"), want);
    rec_free(&r);

    const char *bad[] = { "ftp://example.org/x", "not a url" };
    struct tw_sink sink = sink_of(&r);
    CHECK_OK(tw_source_web(bad, 2, &o, &sink));
    CHECK_EQ_INT(r.n_fails, 2);
    CHECK_EQ_STR(r.fails[0].text, "not an http(s) URL");
    rec_free(&r);
}

// ---- the parts on their own

static bool allowed(const char *txt, const char *agent, const char *path)
{
    struct tw_robots rb;
    tw_robots_init(&rb);
    REQUIRE(tw_robots_parse(&rb, txt, strlen(txt), agent) == 0);
    bool ok = tw_robots_allowed(&rb, path);
    tw_robots_free(&rb);
    return ok;
}

static void test_robots_matcher(void)
{
    // RFC 9309's examples of groups and precedence.
    const char *t = "user-agent: ExampleBot\r\ndisallow: /foo\rallow: /foo/bar\n"
                    "\nUser-Agent: *\nDisallow: /\n";
    CHECK(!allowed(t, "examplebot", "/foo"));
    CHECK(!allowed(t, "ExampleBot", "/foo/"));
    CHECK(allowed(t, "ExampleBot", "/foo/bar/baz"));
    CHECK(allowed(t, "ExampleBot", "/other"));
    CHECK(!allowed(t, "Other", "/other"));
    CHECK(allowed(t, "Other", "/robots.txt"));
    // Wildcards and the end anchor.
    t = "User-agent: *\nDisallow: /*.gif$\nDisallow: /a*b*c\nAllow: /a*b*cd\n";
    CHECK(!allowed(t, "x", "/img/x.gif"));
    CHECK(allowed(t, "x", "/img/x.gif?y"));
    CHECK(!allowed(t, "x", "/aXbYc/z"));
    CHECK(allowed(t, "x", "/aXbYcd"));
    CHECK(allowed(t, "x", "/aXc"));
    // A tie goes to Allow; an empty Disallow and lines without a group are ignored.
    t = "Disallow: /\nUser-agent: *\nAllow: /p\nDisallow: /p\nDisallow:\n";
    CHECK(allowed(t, "x", "/p"));
    CHECK(allowed(t, "x", "/q"));
    // Groups naming one agent are merged; a group with no rules allows everything.
    t = "User-agent: a\nDisallow: /x\n\nUser-agent: b\nUser-agent: a\nDisallow: /y\n"
        "User-agent: c\n\nUser-agent: *\nDisallow: /\nUser-agent: d\n";
    CHECK(!allowed(t, "a", "/x") && !allowed(t, "a", "/y") && allowed(t, "a", "/z"));
    CHECK(allowed(t, "b", "/x") && !allowed(t, "b", "/y"));
    CHECK(!allowed(t, "c", "/anything")); // blank lines do not end a group (RFC 9309's ABNF)
    CHECK(allowed(t, "d", "/anything"));
    CHECK(allowed("", "x", "/"));

    char tok[16];
    tw_robots_agent_token("twin/0.1 (+https://x)", tok, sizeof tok);
    CHECK_EQ_STR(tok, "twin");
    tw_robots_agent_token("a-very-long_product-token/1", tok, sizeof tok);
    CHECK_EQ_STR(tok, "a-very-long_pro");
}

static void check_norm(const char *base, const char *ref, const char *want)
{
    char *out = NULL;
    int rc = tw_web_url_normalize(base, ref, &out);
    if (!want) {
        CHECK_EQ_INT(rc, TW_EINVAL);
    } else {
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(out, want);
    }
    tw_free(out);
}

static void test_urls(void)
{
    const char *b = "HTTP://Example.COM:80/dir/page.html?q=1#top";
    check_norm(NULL, b, "http://example.com/dir/page.html?q=1");
    check_norm(b, "other.html#x", "http://example.com/dir/other.html");
    check_norm(b, "../up", "http://example.com/up");
    check_norm(b, "#frag", "http://example.com/dir/page.html?q=1");
    check_norm(b, "  ", "http://example.com/dir/page.html?q=1");
    check_norm(b, "//Other.org", "http://other.org/");
    check_norm(b, "https://h:443/a b", "https://h/a%20b");
    check_norm(b, "mailto:me@example.com", NULL);
    check_norm(b, "javascript:void(0)", NULL);
    check_norm(NULL, "ftp://example.com/", NULL);
    check_norm(NULL, "relative/path", NULL);

    char *origin = NULL, *host = NULL, *pq = NULL;
    CHECK_OK(tw_web_url_split("http://Example.com/a/b?c=d", &origin, &host, &pq));
    CHECK_EQ_STR(origin, "http://example.com:80");
    CHECK_EQ_STR(host, "example.com");
    CHECK_EQ_STR(pq, "/a/b?c=d");
    tw_free(origin);
    tw_free(host);
    tw_free(pq);
}

int main(void)
{
    test_robots_matcher();
    test_urls();
    struct server s;
    server_start(&s, SITE);
    test_crawl(&s);
    test_feeds(&s);
    test_limits(&s);
    test_seen(&s);
    test_rate(&s);
    test_robots_answers(&s);
    server_stop(&s);
    return check_report("test_web");
}

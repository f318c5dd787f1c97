// bench/serve: a load generator for `twin serve`, the OpenAI-compatible HTTP server, run as a
// second process against a server on loopback. One thread drives N concurrent transfers with
// libcurl's multi interface; each client keeps its connection alive and sends its next request
// as soon as its last one finished. Per concurrency level: requests, failures, requests/s, for
// chat the aggregate tokens/s and the time to first token, latency p50/p99, and with --pid the
// server's resident memory before and after. scripts/bench_serve.sh starts a server and runs it.
#define _GNU_SOURCE
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base/str.h"
#include "base/vec.h"
#include "bench_util.h"

#define USAGE                                                                                    \
    "usage: serve --url http://127.0.0.1:PORT --mode health|embeddings|chat\n"                   \
    "             [--concurrency N[,N...]] [--requests N | --duration SECONDS]\n"                \
    "             [--max-tokens N] [--prompt TEXT] [--model NAME] [--api-key KEY] [--pid PID]\n" \
    "             [--timeout SECONDS] [--quick]\n"                                               \
    "  --concurrency  clients per level, each level run in turn (default 1,8,64)\n"              \
    "  --requests     requests per level, at least one per client (default: chat 4 per\n"        \
    "                 client and at least 16; health and embeddings run 5 s per level)\n"        \
    "  --duration     seconds per level; requests in flight at the end finish and count\n"       \
    "  --max-tokens   chat: max_tokens of each request (default 128)\n"                          \
    "  --prompt       chat: the user message; embeddings: the input (default: a short task)\n"   \
    "  --model        the request's \"model\" (default: none, the server's own)\n"               \
    "  --api-key      sent as Authorization: Bearer KEY\n"                                       \
    "  --pid          the server's process id: its VmRSS before and after each level\n"          \
    "  --timeout      seconds one request may take before it fails (default 600)\n"              \
    "  --quick        8 requests per level at concurrency 1,2 (chat: max_tokens 16)\n"           \
    "Exit status: 0 when every request succeeded, 1 when any failed, 2 on bad usage.\n"

#define MAX_LEVELS 16
#define MAX_CONC   4096
#define SHOW_FAILS 5   // failure reasons printed on stderr
#define KEEP_BODY  512 // bytes of a streamed body kept for the failure message

enum mode { MODE_HEALTH, MODE_EMBEDDINGS, MODE_CHAT };
static const char *mode_names[] = { "health", "embeddings", "chat" };
static const char *mode_paths[] = { "/health", "/v1/embeddings", "/v1/chat/completions" };

static struct options {
    const char *url, *prompt, *model, *api_key;
    enum mode mode;
    int levels[MAX_LEVELS];
    size_t n_levels;
    long requests;   // per level; 0: the default
    double duration; // seconds per level; 0: count requests
    long max_tokens;
    long pid; // 0: none
    double timeout;
} opt;

struct sample {
    double latency, ttft; // seconds; ttft < 0 when no content came
    int64_t tokens;
};

// One concurrency level: its budget and what its requests gave.
struct level {
    int conc;
    long limit;      // requests to send (count mode)
    double deadline; // no request starts after it (duration mode; 0 otherwise)
    long issued, failed, conns, no_usage;
    double wall, cpu, rss0, rss1;
    tw_vec samples; // struct sample, one per successful request
};

// One client: an easy handle reused for each of its requests (so its connection is too), and
// the state of the request in flight.
struct client {
    CURL *h;
    struct level *lv;
    long seq;                     // the request's number in its level, from 1
    double t0, t_first;           // send, first content chunk (now() seconds)
    tw_str line;                  // SSE: the line read so far
    tw_str event;                 // SSE: the data lines of the event being read, joined by '\n'
    bool in_event;                // a data line came since the last blank line
    bool done;                    // data: [DONE] came
    int64_t usage_tokens, chunks; // usage.completion_tokens (-1: none); content chunks
    tw_str body;                  // the body (health, embeddings) or its first bytes (chat)
    char why[320];                // the first reason this request failed; "" while none
    char curl_err[CURL_ERROR_SIZE];
};

static long fails_shown;

static void fail(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct client *c, const char *fmt, ...)
{
    if (c->why[0])
        return; // the first reason is the one that explains the rest
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
}

// Up to cap - 1 bytes of p on one line (newlines and control bytes become spaces).
static void one_line(char *dst, size_t cap, const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        dst[k++] = (unsigned char)p[i] < 0x20 ? ' ' : p[i];
    dst[k] = '\0';
}

// ---- Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html):
// lines ending in "\n" or "\r\n"; "data:" lines accumulate an event, a blank line dispatches
// it, lines starting with ':' are comments, other fields (event, id, retry) are ignored here.

static void sse_event(struct client *c)
{
    const char *d = tw_str_cstr(&c->event);
    size_t n = tw_str_len(&c->event);
    c->in_event = false;
    if (c->done) {
        fail(c, "an event after data: [DONE]");
    } else if (strcmp(d, "[DONE]") == 0) {
        c->done = true;
    } else {
        json_error_t e;
        json_t *j = json_loadb(d, n, 0, &e);
        char head[100];
        one_line(head, sizeof head, d, n);
        if (!j) {
            fail(c, "malformed JSON in a chunk (%s): %s", e.text, head);
        } else if (!json_is_object(j)) {
            fail(c, "a chunk that is not a JSON object: %s", head);
        } else if (json_object_get(j, "error")) {
            json_t *err = json_object_get(j, "error");
            const char *msg = json_string_value(json_object_get(err, "message"));
            fail(c, "an error in the stream: %s", msg ? msg : head);
        } else {
            json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
            json_t *delta = json_object_get(ch, "delta");
            const char *text = json_string_value(json_object_get(delta, "content"));
            if (text && text[0] && c->chunks++ == 0)
                c->t_first = now();
            json_t *ct = json_object_get(json_object_get(j, "usage"), "completion_tokens");
            if (json_is_integer(ct))
                c->usage_tokens = json_integer_value(ct);
        }
        json_decref(j);
    }
    tw_str_clear(&c->event);
}

static void sse_line(struct client *c, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n == 0) {
        if (c->in_event)
            sse_event(c);
        return;
    }
    if (s[0] == ':')
        return;
    const char *colon = memchr(s, ':', n);
    size_t name = colon ? (size_t)(colon - s) : n;
    if (name != 4 || memcmp(s, "data", 4) != 0)
        return;
    const char *v = colon ? colon + 1 : s + n;
    if (v < s + n && *v == ' ')
        v++;
    if ((c->in_event && tw_str_putc(&c->event, '\n')) ||
        tw_str_append(&c->event, v, (size_t)(s + n - v)))
        fail(c, "out of memory reading the stream");
    c->in_event = true;
}

// Chunks of the body may end anywhere: a partial line waits in c->line for the rest.
static void sse_feed(struct client *c, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (!nl || tw_str_len(&c->line) > 0) {
            if (tw_str_append(&c->line, p, take)) {
                fail(c, "out of memory reading the stream");
                return;
            }
            if (!nl)
                return;
            sse_line(c, tw_str_cstr(&c->line), tw_str_len(&c->line));
            tw_str_clear(&c->line);
        } else {
            sse_line(c, p, take); // a whole line in this chunk: no copy
        }
        p += take + 1;
        n -= take + 1;
    }
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct client *c = arg;
    size_t n = size * nmemb;
    if (opt.mode != MODE_CHAT) {
        if (tw_str_append(&c->body, p, n))
            fail(c, "out of memory reading the body");
        return n;
    }
    size_t room = tw_str_len(&c->body) < KEEP_BODY ? KEEP_BODY - tw_str_len(&c->body) : 0;
    if (room && tw_str_append(&c->body, p, n < room ? n : room))
        fail(c, "out of memory reading the body");
    sse_feed(c, p, n);
    return n;
}

// ---- requests

static void request_start(CURLM *m, struct client *c)
{
    c->t0 = now();
    c->t_first = 0;
    c->in_event = c->done = false;
    c->usage_tokens = -1;
    c->chunks = 0;
    c->why[0] = c->curl_err[0] = '\0';
    tw_str_clear(&c->line);
    tw_str_clear(&c->event);
    tw_str_clear(&c->body);
    c->seq = ++c->lv->issued;
    CURLMcode mc = curl_multi_add_handle(m, c->h);
    if (mc != CURLM_OK) {
        fprintf(stderr, "serve: curl_multi_add_handle: %s\n", curl_multi_strerror(mc));
        exit(1);
    }
}

// Why a finished request failed ("" when it did not), from the checks that need the whole
// answer: transport, status, content type, the end of the stream, the embeddings' JSON.
static void request_check(struct client *c, CURLcode rc, long status)
{
    char head[200];
    one_line(head, sizeof head, tw_str_cstr(&c->body), tw_str_len(&c->body));
    if (rc != CURLE_OK) {
        c->why[0] = '\0'; // the transport's reason explains whatever the parser saw
        fail(c, "transport: %s", c->curl_err[0] ? c->curl_err : curl_easy_strerror(rc));
    } else if (status != 200) {
        c->why[0] = '\0';
        fail(c, "HTTP %ld: %s", status, head);
    } else if (opt.mode == MODE_CHAT) {
        char *type = NULL;
        curl_easy_getinfo(c->h, CURLINFO_CONTENT_TYPE, &type);
        if (!type || strncmp(type, "text/event-stream", 17) != 0)
            fail(c, "Content-Type %s, expected text/event-stream", type ? type : "missing");
        if (!c->done && (c->in_event || tw_str_len(&c->line) > 0))
            fail(c, "the stream ended inside an event (no blank line after its last line)");
        else if (!c->done)
            fail(c, "the stream ended without data: [DONE]");
    } else if (opt.mode == MODE_EMBEDDINGS) {
        json_error_t e;
        json_t *j = json_loadb(tw_str_cstr(&c->body), tw_str_len(&c->body), 0, &e);
        json_t *d0 = json_array_get(json_object_get(j, "data"), 0);
        json_t *emb = json_object_get(d0, "embedding");
        if (!j)
            fail(c, "malformed JSON (%s): %s", e.text, head);
        else if (!json_is_array(emb) || json_array_size(emb) == 0)
            fail(c, "no data[0].embedding array: %s", head);
        json_decref(j);
    }
}

static void request_done(struct client *c, CURLcode rc)
{
    double t = now();
    struct level *lv = c->lv;
    long status = 0, conns = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c->h, CURLINFO_NUM_CONNECTS, &conns);
    lv->conns += conns;
    request_check(c, rc, status);
    if (c->why[0]) {
        lv->failed++;
        if (fails_shown++ < SHOW_FAILS)
            fprintf(stderr, "serve: %s, concurrency %d, request %ld of the level: %s\n",
                    mode_names[opt.mode], lv->conc, c->seq, c->why);
        return;
    }
    struct sample s = { .latency = t - c->t0, .ttft = -1, .tokens = 0 };
    if (opt.mode == MODE_CHAT) {
        s.ttft = c->chunks ? c->t_first - c->t0 : -1;
        s.tokens = c->usage_tokens >= 0 ? c->usage_tokens : c->chunks;
        lv->no_usage += c->usage_tokens < 0;
    }
    if (tw_vec_push(&lv->samples, &s)) {
        fprintf(stderr, "serve: out of memory\n");
        exit(1);
    }
}

static bool level_wants_more(const struct level *lv)
{
    return lv->deadline > 0 ? now() < lv->deadline : lv->issued < lv->limit;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

// Runs one level: lv->conc clients, each sending its next request when its last one ends.
static void level_run(CURLM *m, struct client *cl, struct level *lv, double duration)
{
    double t_start = now(), cpu0 = cpu_seconds();
    lv->deadline = duration > 0 ? t_start + duration : 0;
    int active = 0;
    for (int i = 0; i < lv->conc && level_wants_more(lv); i++) {
        cl[i].lv = lv;
        request_start(m, &cl[i]);
        active++;
    }
    while (active > 0) {
        int running;
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK) {
            fprintf(stderr, "serve: curl_multi_perform: %s\n", curl_multi_strerror(mc));
            exit(1);
        }
        CURLMsg *msg;
        int queued;
        while ((msg = curl_multi_info_read(m, &queued))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            CURLcode rc = msg->data.result; // msg is invalid once the handle is removed
            char *priv;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            struct client *c = (struct client *)priv;
            curl_multi_remove_handle(m, c->h);
            request_done(c, rc);
            active--;
            if (level_wants_more(lv)) {
                request_start(m, c);
                active++;
            }
        }
        // Returns at once when a transfer just started (its timer is due) or a socket is ready.
        if (active > 0)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    lv->wall = now() - t_start;
    lv->cpu = cpu_seconds() - cpu0;
}

static int client_init(struct client *c, const char *url, struct curl_slist *hdrs,
                       const char *body)
{
    memset(c, 0, sizeof *c);
    tw_str_init(&c->line);
    tw_str_init(&c->event);
    tw_str_init(&c->body);
    if (!(c->h = curl_easy_init()))
        return -1;
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, (char *)c);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_PROXY, ""); // loopback: never through an http_proxy
    curl_easy_setopt(c->h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, (long)(opt.timeout * 1000));
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdrs);
    if (body) { // body outlives every transfer (main owns it)
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    return 0;
}

static void client_free(struct client *c)
{
    if (c->h)
        curl_easy_cleanup(c->h);
    tw_str_free(&c->line);
    tw_str_free(&c->event);
    tw_str_free(&c->body);
}

// ---- report

// The server's resident memory in MiB from /proc/PID/status; -1 when it cannot be read.
static double rss_mib(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    double mib = -1;
    long kb;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
            mib = (double)kb / 1024.0;
            break;
        }
    }
    if (f)
        fclose(f);
    return mib;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

// The p-quantile (0 < p <= 1) of the n sorted values by the nearest-rank rule: the smallest
// value with at least p * n values at or below it. -1 when n == 0.
static double quantile(const double *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t r = (size_t)ceil(p * (double)n);
    return v[r > 0 ? r - 1 : 0];
}

// A number in a column of width w, or "-" when v < 0 (not measured).
static const char *col(char *buf, size_t cap, double v, int w, int prec)
{
    if (v < 0 || isnan(v))
        snprintf(buf, cap, "%*s", w, "-");
    else
        snprintf(buf, cap, "%*.*f", w, prec, v);
    return buf;
}

// The columns: conc clients; reqs sent, fail of them failed; conns new connections opened
// (keep-alive keeps it at the clients not yet connected); req/s and tok/s over the level's
// wall time, successful requests only; tok/req completion tokens per request; ttft, from
// handing the request to curl to the first chunk with content, and lat, to the end of the
// transfer, in ms over the successful requests; cpu% this program's own CPU use (so that
// the load generator is seen not to be the limit); rss0/rss1 the server's VmRSS around it.
static void print_header(void)
{
    printf("%5s %6s %5s %5s %8s %8s %7s %9s %9s %9s %9s %5s %8s %8s\n", "conc", "reqs", "fail",
           "conns", "req/s", "tok/s", "tok/req", "ttft p50", "ttft p99", "lat p50", "lat p99",
           "cpu%", "rss0 MiB", "rss1 MiB");
}

// One row; the token rate goes to *tok_s and the request rate to *req_s.
static void print_row(struct level *lv, double *req_s, double *tok_s)
{
    size_t n = lv->samples.len;
    const struct sample *s = lv->samples.data;
    double *lat = malloc((n ? n : 1) * sizeof *lat), *ttft = malloc((n ? n : 1) * sizeof *ttft);
    if (!lat || !ttft) {
        fprintf(stderr, "serve: out of memory\n");
        exit(1);
    }
    size_t nt = 0;
    double tokens = 0;
    for (size_t i = 0; i < n; i++) {
        lat[i] = s[i].latency * 1e3;
        if (s[i].ttft >= 0)
            ttft[nt++] = s[i].ttft * 1e3;
        tokens += (double)s[i].tokens;
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    qsort(ttft, nt, sizeof *ttft, cmp_double);
    bool chat = opt.mode == MODE_CHAT;
    *req_s = (double)n / lv->wall;
    *tok_s = chat ? tokens / lv->wall : -1;
    char b[8][32];
    printf("%5d %6ld %5ld %5ld %8.1f %s %s %s %s %s %s %5.0f %s %s\n", lv->conc, lv->issued,
           lv->failed, lv->conns, *req_s, col(b[0], 32, *tok_s, 8, 1),
           col(b[1], 32, chat && n ? tokens / (double)n : -1, 7, 1),
           col(b[2], 32, chat ? quantile(ttft, nt, 0.50) : -1, 9, 1),
           col(b[3], 32, chat ? quantile(ttft, nt, 0.99) : -1, 9, 1),
           col(b[4], 32, quantile(lat, n, 0.50), 9, 2),
           col(b[5], 32, quantile(lat, n, 0.99), 9, 2), 100 * lv->cpu / lv->wall,
           col(b[6], 32, lv->rss0, 8, 1), col(b[7], 32, lv->rss1, 8, 1));
    fflush(stdout);
    free(lat);
    free(ttft);
}

// ---- options

static int parse_levels(const char *s)
{
    opt.n_levels = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > MAX_CONC || opt.n_levels == MAX_LEVELS ||
            (*end && *end != ','))
            return -1;
        opt.levels[opt.n_levels++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return opt.n_levels ? 0 : -1;
}

static bool positive(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == '\0' && *out > 0;
}

// Parses argv into opt; returns 0, or 2 on bad usage.
static int parse_args(int argc, char **argv)
{
    bool quick = false, have_mode = false, have_levels = false, have_tokens = false;
    opt = (struct options){ .model = NULL, .max_tokens = 128, .timeout = 600 };
    opt.prompt = "Write a short story about a lighthouse keeper who finds a message in a bottle.";
    double v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--quick") == 0) {
            quick = true;
            continue;
        }
        if (!val)
            return 2;
        if (strcmp(a, "--url") == 0) {
            opt.url = val;
        } else if (strcmp(a, "--mode") == 0) {
            opt.mode = strcmp(val, "health") == 0       ? MODE_HEALTH
                       : strcmp(val, "embeddings") == 0 ? MODE_EMBEDDINGS
                                                        : MODE_CHAT;
            ok = have_mode = opt.mode != MODE_CHAT || strcmp(val, "chat") == 0;
        } else if (strcmp(a, "--concurrency") == 0) {
            ok = have_levels = parse_levels(val) == 0;
        } else if (strcmp(a, "--requests") == 0) {
            ok = positive(val, &v) && v == floor(v);
            opt.requests = (long)v;
        } else if (strcmp(a, "--duration") == 0) {
            ok = positive(val, &opt.duration);
        } else if (strcmp(a, "--max-tokens") == 0) {
            ok = have_tokens = positive(val, &v) && v == floor(v);
            opt.max_tokens = (long)v;
        } else if (strcmp(a, "--prompt") == 0) {
            opt.prompt = val;
        } else if (strcmp(a, "--model") == 0) {
            opt.model = val;
        } else if (strcmp(a, "--api-key") == 0) {
            opt.api_key = val;
        } else if (strcmp(a, "--pid") == 0) {
            ok = positive(val, &v) && v == floor(v);
            opt.pid = (long)v;
        } else if (strcmp(a, "--timeout") == 0) {
            ok = positive(val, &opt.timeout);
        } else {
            ok = false;
        }
        if (!ok)
            return 2;
        i++;
    }
    if (!opt.url || !have_mode || (opt.requests && opt.duration > 0))
        return 2;
    if (!have_levels)
        parse_levels(quick ? "1,2" : "1,8,64");
    if (quick && !opt.requests && opt.duration <= 0)
        opt.requests = 8;
    if (quick && !have_tokens)
        opt.max_tokens = 16;
    if (!opt.requests && opt.duration <= 0 && opt.mode != MODE_CHAT)
        opt.duration = 5;
    return 0;
}

// The request body (NULL for GET); free with free().
static char *make_body(void)
{
    json_t *j = NULL;
    if (opt.mode == MODE_EMBEDDINGS) {
        j = json_pack("{s:s}", "input", opt.prompt);
    } else if (opt.mode == MODE_CHAT) {
        j = json_pack("{s:[{s:s,s:s}],s:I,s:i,s:b,s:{s:b}}", "messages", "role", "user", "content",
                      opt.prompt, "max_tokens", (json_int_t)opt.max_tokens, "temperature", 0,
                      "stream", 1, "stream_options", "include_usage", 1);
    }
    if (j && opt.model)
        json_object_set_new(j, "model", json_string(opt.model));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static void print_budget(const char *endpoint)
{
    printf("serve: %s, %s", mode_names[opt.mode], endpoint);
    if (opt.mode == MODE_CHAT)
        printf(", model %s, max_tokens %ld, a prompt of %zu bytes, streamed",
               opt.model ? opt.model : "(the server's)", opt.max_tokens, strlen(opt.prompt));
    else if (opt.mode == MODE_EMBEDDINGS)
        printf(", model %s, an input of %zu bytes", opt.model ? opt.model : "(the server's)",
               strlen(opt.prompt));
    if (opt.duration > 0)
        printf("; %.1f s per level", opt.duration);
    else if (opt.requests)
        printf("; %ld requests per level (at least one per client)", opt.requests);
    else
        printf("; 4 requests per client per level, at least 16");
    printf("; one thread, libcurl multi, keep-alive; times in ms");
    if (opt.pid)
        printf(", rss of pid %ld", opt.pid);
    printf("\n");
}

int main(int argc, char **argv)
{
    // `make bench` runs every benchmark without arguments: with no server there is nothing to
    // measure, which is not an error.
    if (argc == 1 || (argc == 2 && strcmp(argv[1], "--quick") == 0)) {
        printf("serve: no --url: nothing to measure (scripts/bench_serve.sh BUILD_DIR MODEL "
               "starts twin serve and runs this)\nheadline: skipped, no server\n");
        return 0;
    }
    if (parse_args(argc, argv)) {
        fputs(USAGE, stderr);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return fprintf(stderr, "serve: curl_global_init failed\n"), 1;
    char endpoint[1024];
    size_t ul = strlen(opt.url);
    while (ul > 0 && opt.url[ul - 1] == '/')
        ul--;
    snprintf(endpoint, sizeof endpoint, "%.*s%s", (int)ul, opt.url, mode_paths[opt.mode]);
    char *body = make_body(), auth[1024];
    struct curl_slist *hdrs = NULL;
    if (body) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:"); // no 100-continue round trip
    }
    if (opt.api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", opt.api_key);
        hdrs = curl_slist_append(hdrs, auth);
    }
    int max_conc = 0;
    for (size_t i = 0; i < opt.n_levels; i++)
        max_conc = opt.levels[i] > max_conc ? opt.levels[i] : max_conc;
    CURLM *m = curl_multi_init();
    struct client *cl = calloc((size_t)max_conc, sizeof *cl);
    if (!m || !cl || (opt.mode != MODE_HEALTH && !body))
        return fprintf(stderr, "serve: out of memory\n"), 1;
    // The connection cache keeps one connection per client between levels.
    curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)max_conc);
    for (int i = 0; i < max_conc; i++)
        if (client_init(&cl[i], endpoint, hdrs, body))
            return fprintf(stderr, "serve: curl_easy_init failed\n"), 1;

    print_budget(endpoint);
    print_header();
    long failed = 0, no_usage = 0;
    double best_req = 0, tok_one = -1, tok_top = -1;
    int best_conc = 0, top_conc = 0;
    for (size_t k = 0; k < opt.n_levels; k++) {
        struct level lv = { .conc = opt.levels[k], .rss0 = -1, .rss1 = -1 };
        tw_vec_init(&lv.samples, sizeof(struct sample));
        lv.limit = opt.requests ? (opt.requests > lv.conc ? opt.requests : lv.conc)
                                : (4L * lv.conc > 16 ? 4L * lv.conc : 16);
        if (opt.pid)
            lv.rss0 = rss_mib(opt.pid);
        level_run(m, cl, &lv, opt.duration);
        if (opt.pid)
            lv.rss1 = rss_mib(opt.pid);
        double req_s, tok_s;
        print_row(&lv, &req_s, &tok_s);
        failed += lv.failed;
        no_usage += lv.no_usage;
        if (req_s > best_req)
            best_req = req_s, best_conc = lv.conc;
        if (lv.conc == 1)
            tok_one = tok_s;
        if (lv.conc >= top_conc)
            top_conc = lv.conc, tok_top = tok_s;
        tw_vec_free(&lv.samples);
    }
    if (fails_shown > SHOW_FAILS)
        fprintf(stderr, "serve: %ld more failures not shown\n", fails_shown - SHOW_FAILS);
    if (no_usage)
        fprintf(stderr,
                "serve: %ld streams carried no usage.completion_tokens; their tokens are the "
                "content chunks counted\n",
                no_usage);
    if (opt.pid && rss_mib(opt.pid) < 0)
        fprintf(stderr, "serve: /proc/%ld/status: cannot read VmRSS\n", opt.pid);

    char fails[64] = "";
    if (failed)
        snprintf(fails, sizeof fails, "; %ld requests failed", failed);
    if (opt.mode == MODE_CHAT && top_conc > 1 && tok_one > 0)
        printf("headline: %d streams give %.1fx the tokens/s of one (%.1f vs %.1f tokens/s)%s\n",
               top_conc, tok_top / tok_one, tok_top, tok_one, fails);
    else if (best_req == 0)
        printf("headline: %s: no request succeeded%s\n", mode_names[opt.mode], fails);
    else
        printf("headline: %s: %.1f requests/s at best (concurrency %d)%s\n", mode_names[opt.mode],
               best_req, best_conc, fails);

    for (int i = 0; i < max_conc; i++)
        client_free(&cl[i]);
    free(cl);
    curl_multi_cleanup(m);
    curl_slist_free_all(hdrs);
    free(body);
    curl_global_cleanup();
    return failed ? 1 : 0;
}

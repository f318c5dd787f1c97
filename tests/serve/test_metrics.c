// Tests tw_metrics on its rendered text: labelled counters updated from several threads while
// another renders, cumulative histogram buckets with _sum and _count, escaping of help and
// label values, number formatting, the gauge callback, name validation, misuse of kinds,
// folding of label tuples past the limit, and a failed render that leaves the output as it was.
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>

#include "base/mem.h"
#include "serve/metrics.h"
#include "check.h"

// The registry's whole text (freed by the caller), or NULL.
static char *render(tw_metrics *m)
{
    tw_str s;
    tw_str_init(&s);
    char *text = NULL;
    size_t len;
    if (tw_metrics_render(m, &s) != 0 || tw_str_detach(&s, &text, &len) != 0)
        text = NULL;
    tw_str_free(&s);
    return text;
}

// 1 when text holds exactly this line (a whole line, newline excluded).
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

static int count_prefix(const char *text, const char *prefix)
{
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

#define THREADS 4
#define ITERS   10000

struct work {
    tw_metric *requests, *inflight;
    tw_metrics *reg;
    atomic_int done;
    int renders_ok;
};

static void *hammer(void *arg)
{
    struct work *w = arg;
    const char *ok[] = { "/v1/chat/completions", "200" };
    const char *bad[] = { "/v1/chat/completions", "500" };
    for (int i = 0; i < ITERS; i++) {
        int rc = tw_metric_add(w->requests, ok, 1);
        rc |= tw_metric_add(w->inflight, NULL, 1);
        rc |= tw_metric_add(w->inflight, NULL, -1);
        if (i % 10 == 0)
            rc |= tw_metric_add(w->requests, bad, 1);
        if (rc)
            return (void *)1;
    }
    return NULL;
}

static void *renderer(void *arg)
{
    struct work *w = arg;
    while (!atomic_load(&w->done)) {
        char *text = render(w->reg);
        w->renders_ok += text != NULL;
        tw_free(text);
    }
    return NULL;
}

static void test_threads(void)
{
    struct work w = { 0 };
    const char *labels[] = { "route", "status" };
    REQUIRE(tw_metrics_new(&w.reg) == 0);
    CHECK_OK(tw_metrics_counter(w.reg, "twin_http_requests_total", "HTTP requests.", 2, labels,
                                &w.requests));
    CHECK_OK(tw_metrics_gauge(w.reg, "twin_http_inflight", "Requests in flight.", 0, NULL,
                              &w.inflight));
    REQUIRE(w.requests && w.inflight);
    pthread_t t[THREADS], r;
    REQUIRE(pthread_create(&r, NULL, renderer, &w) == 0);
    for (int i = 0; i < THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, hammer, &w) == 0);
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        CHECK(ret == NULL);
    }
    atomic_store(&w.done, 1);
    pthread_join(r, NULL);
    CHECK(w.renders_ok > 0);

    char *text = render(w.reg);
    REQUIRE(text);
    const char *want = "# HELP twin_http_requests_total HTTP requests.\n"
                       "# TYPE twin_http_requests_total counter\n"
                       "twin_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"}"
                       " 40000\n"
                       "twin_http_requests_total{route=\"/v1/chat/completions\",status=\"500\"}"
                       " 4000\n"
                       "# HELP twin_http_inflight Requests in flight.\n"
                       "# TYPE twin_http_inflight gauge\n"
                       "twin_http_inflight 0\n";
    CHECK_EQ_STR(text, want);
    tw_free(text);
    tw_metrics_free(w.reg);
}

static void test_histogram(void)
{
    tw_metrics *m;
    tw_metric *h, *plain;
    REQUIRE(tw_metrics_new(&m) == 0);
    const double bounds[] = { 0.1, 0.5, 1, 5 };
    const char *labels[] = { "route" };
    CHECK_OK(
        tw_metrics_histogram(m, "twin_latency_seconds", "Latency.", 1, labels, bounds, 4, &h));
    CHECK_OK(tw_metrics_histogram(m, "twin_plain", "", 0, NULL, bounds + 2, 2, &plain));
    REQUIRE(h && plain);
    // 0.5 sits on a bound: buckets are "<= le". Values are exact in binary, so the sum is too.
    const double obs[] = { 0.125, 0.25, 0.5, 0.75, 2, 7, 100 };
    const char *x[] = { "/x" }, *y[] = { "/y" };
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        CHECK_OK(tw_metric_observe(h, x, obs[i]));
    CHECK_OK(tw_metric_observe(h, y, 0.05));
    char *text = render(m);
    REQUIRE(text);
    const char *want = "# HELP twin_latency_seconds Latency.\n"
                       "# TYPE twin_latency_seconds histogram\n"
                       "twin_latency_seconds_bucket{route=\"/x\",le=\"0.1\"} 0\n"
                       "twin_latency_seconds_bucket{route=\"/x\",le=\"0.5\"} 3\n"
                       "twin_latency_seconds_bucket{route=\"/x\",le=\"1\"} 4\n"
                       "twin_latency_seconds_bucket{route=\"/x\",le=\"5\"} 5\n"
                       "twin_latency_seconds_bucket{route=\"/x\",le=\"+Inf\"} 7\n"
                       "twin_latency_seconds_sum{route=\"/x\"} 110.625\n"
                       "twin_latency_seconds_count{route=\"/x\"} 7\n"
                       "twin_latency_seconds_bucket{route=\"/y\",le=\"0.1\"} 1\n"
                       "twin_latency_seconds_bucket{route=\"/y\",le=\"0.5\"} 1\n"
                       "twin_latency_seconds_bucket{route=\"/y\",le=\"1\"} 1\n"
                       "twin_latency_seconds_bucket{route=\"/y\",le=\"5\"} 1\n"
                       "twin_latency_seconds_bucket{route=\"/y\",le=\"+Inf\"} 1\n"
                       "twin_latency_seconds_sum{route=\"/y\"} 0.05\n"
                       "twin_latency_seconds_count{route=\"/y\"} 1\n"
                       // Without labels a histogram renders its zeros from registration.
                       "# HELP twin_plain \n"
                       "# TYPE twin_plain histogram\n"
                       "twin_plain_bucket{le=\"1\"} 0\n"
                       "twin_plain_bucket{le=\"5\"} 0\n"
                       "twin_plain_bucket{le=\"+Inf\"} 0\n"
                       "twin_plain_sum 0\n"
                       "twin_plain_count 0\n";
    CHECK_EQ_STR(text, want);
    tw_free(text);
    tw_metrics_free(m);
}

static double read_depth(void *ud)
{
    return *(double *)ud;
}

static void test_escaping_and_numbers(void)
{
    tw_metrics *m;
    tw_metric *c, *g;
    REQUIRE(tw_metrics_new(&m) == 0);
    const char *labels[] = { "v" };
    CHECK_OK(tw_metrics_counter(m, "esc_total", "a \\ b\nc \"q\"", 1, labels, &c));
    CHECK_OK(tw_metrics_gauge(m, "num", "Numbers.", 1, labels, &g));
    double depth = 3;
    CHECK_OK(tw_metrics_gauge_fn(m, "twin_queue_depth", "Queued requests.", read_depth, &depth));
    REQUIRE(c && g);
    const char *weird[] = { "a\"b\\c\nd" };
    CHECK_OK(tw_metric_add(c, weird, 2.5));
    struct {
        const char *label;
        double v;
        const char *want;
    } nums[] = {
        { "int", 123456789012.0, "num{v=\"int\"} 123456789012" },
        { "neg", -7, "num{v=\"neg\"} -7" },
        { "zero", -0.0, "num{v=\"zero\"} 0" },
        { "tenth", 0.1, "num{v=\"tenth\"} 0.1" },
        { "third", 1.0 / 3, "num{v=\"third\"} 0.33333333333333331" },
        { "big", 1e300, "num{v=\"big\"} 1e+300" },
        { "nan", NAN, "num{v=\"nan\"} NaN" },
        { "inf", INFINITY, "num{v=\"inf\"} +Inf" },
        { "ninf", -INFINITY, "num{v=\"ninf\"} -Inf" },
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        CHECK_OK(tw_metric_set(g, &nums[i].label, nums[i].v));
    char *text = render(m);
    REQUIRE(text);
    CHECK(has_line(text, "# HELP esc_total a \\\\ b\\nc \"q\""));
    CHECK(has_line(text, "# TYPE esc_total counter"));
    CHECK(has_line(text, "esc_total{v=\"a\\\"b\\\\c\\nd\"} 2.5"));
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        CHECK(has_line(text, nums[i].want));
    CHECK(has_line(text, "# TYPE twin_queue_depth gauge"));
    CHECK(has_line(text, "twin_queue_depth 3"));
    tw_free(text);
    depth = 17.5; // read again at the next render
    text = render(m);
    REQUIRE(text);
    CHECK(has_line(text, "twin_queue_depth 17.5"));
    CHECK(!has_line(text, "twin_queue_depth 3"));
    tw_free(text);
    tw_metrics_free(m);
}

static void test_bad_names(void)
{
    tw_metrics *m;
    static char sentinel; // to see that a failed registration sets *out to NULL
    tw_metric *mt = (tw_metric *)&sentinel, *ok;
    REQUIRE(tw_metrics_new(&m) == 0);
    const char *bad[] = { "", "9lives", "a-b", "has space", "caf\xc3\xa9" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(tw_metrics_counter(m, bad[i], "", 0, NULL, &mt), TW_EINVAL);
        CHECK(mt == NULL);
        mt = (tw_metric *)&sentinel;
    }
    CHECK_EQ_INT(tw_metrics_gauge(m, NULL, "", 0, NULL, &mt), TW_EINVAL);
    CHECK_EQ_INT(tw_metrics_counter(m, "a-b", "", 0, NULL, &mt), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "\"a-b\"") != NULL);
    CHECK_OK(tw_metrics_counter(m, "ok:name_1", "", 0, NULL, &ok));

    const char *colon[] = { "a:b" }, *reserved[] = { "__x" }, *dup[] = { "a", "a" };
    const char *le[] = { "le" }, *four[] = { "a", "b", "c", "d" };
    CHECK_EQ_INT(tw_metrics_counter(m, "l1", "", 1, colon, &mt), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "l1") && strstr(tw_error_msg(), "\"a:b\""));
    CHECK_EQ_INT(tw_metrics_counter(m, "l2", "", 1, reserved, &mt), TW_EINVAL);
    CHECK_EQ_INT(tw_metrics_counter(m, "l3", "", 2, dup, &mt), TW_EINVAL);
    CHECK_EQ_INT(tw_metrics_gauge(m, "l4", "", 4, four, &mt), TW_EINVAL);
    const double b[] = { 1, 2 }, unsorted[] = { 2, 1 }, inf[] = { 1, INFINITY };
    CHECK_EQ_INT(tw_metrics_histogram(m, "h1", "", 1, le, b, 2, &mt), TW_EINVAL);
    CHECK_EQ_INT(tw_metrics_histogram(m, "h2", "", 0, NULL, unsorted, 2, &mt), TW_EINVAL);
    CHECK_EQ_INT(tw_metrics_histogram(m, "h3", "", 0, NULL, inf, 2, &mt), TW_EINVAL);
    CHECK_OK(tw_metrics_gauge(m, "le_ok", "", 1, le, &mt)); // "le" is reserved in histograms only
    CHECK_EQ_INT(tw_metrics_gauge(m, "ok:name_1", "", 0, NULL, &mt), TW_EEXIST);
    CHECK(mt == NULL);
    CHECK_EQ_INT(tw_metrics_gauge_fn(m, "f-1", "", read_depth, NULL), TW_EINVAL);
    CHECK_EQ_INT(tw_metrics_gauge_fn(m, "f1", "", NULL, NULL), TW_EINVAL);

    // Misuse of a registered metric: wrong kind, bad increment, missing label values.
    tw_metric *h, *g;
    CHECK_OK(tw_metrics_histogram(m, "h_ok", "", 0, NULL, b, 2, &h));
    CHECK_OK(tw_metrics_gauge(m, "g_ok", "", 0, NULL, &g));
    CHECK_EQ_INT(tw_metric_set(ok, NULL, 1), TW_EINVAL);
    CHECK_EQ_INT(tw_metric_add(ok, NULL, -1), TW_EINVAL);
    CHECK_EQ_INT(tw_metric_add(ok, NULL, NAN), TW_EINVAL);
    CHECK_EQ_INT(tw_metric_observe(ok, NULL, 1), TW_EINVAL);
    CHECK_EQ_INT(tw_metric_add(h, NULL, 1), TW_EINVAL);
    CHECK_EQ_INT(tw_metric_observe(g, NULL, 1), TW_EINVAL);
    REQUIRE(tw_metrics_gauge(m, "lab", "", 1, le, &mt) == 0);
    const char *null_value[] = { NULL };
    CHECK_EQ_INT(tw_metric_set(mt, NULL, 1), TW_EINVAL);
    CHECK_EQ_INT(tw_metric_set(mt, null_value, 1), TW_EINVAL);
    char *text = render(m);
    REQUIRE(text);
    CHECK(has_line(text, "ok:name_1 0"));
    CHECK(has_line(text, "g_ok 0")); // the failed updates changed nothing
    CHECK(has_line(text, "# TYPE lab gauge"));
    CHECK_EQ_INT(count_prefix(text, "lab"), 0); // labelled, never set: no sample line
    CHECK(!strstr(text, "l1") && !strstr(text, "h1_") && !strstr(text, "f1"));
    tw_free(text);
    tw_metrics_free(m);
}

static void test_overflow(void)
{
    tw_metrics *m;
    tw_metric *c;
    REQUIRE(tw_metrics_new(&m) == 0);
    const char *labels[] = { "model", "route" };
    CHECK_OK(tw_metrics_counter(m, "fold_total", "Folding.", 2, labels, &c));
    REQUIRE(c);
    char value[32];
    const char *v[] = { value, "r" };
    for (int i = 0; i < TW_METRICS_MAX_TUPLES + 44; i++) {
        snprintf(value, sizeof value, "m%d", i);
        CHECK_OK(tw_metric_add(c, v, 1));
    }
    snprintf(value, sizeof value, "m0"); // an old tuple keeps counting
    CHECK_OK(tw_metric_add(c, v, 1));
    char *text = render(m);
    REQUIRE(text);
    CHECK_EQ_INT(count_prefix(text, "fold_total{"), TW_METRICS_MAX_TUPLES + 1);
    CHECK(has_line(text, "fold_total{model=\"m0\",route=\"r\"} 2"));
    CHECK(has_line(text, "fold_total{model=\"m255\",route=\"r\"} 1"));
    CHECK(!strstr(text, "\"m256\""));
    CHECK(has_line(text, "fold_total{model=\"other\",route=\"other\"} 44"));
    tw_free(text);
    tw_metrics_free(m);
}

// A render whose allocation fails leaves the output as it was; a failed update changes nothing.
static void test_alloc_failure(void)
{
    long live = tw_mem_live();
    tw_metrics *m;
    tw_metric *c;
    REQUIRE(tw_metrics_new(&m) == 0);
    const char *labels[] = { "k" }, *a[] = { "a" }, *b[] = { "b" };
    CHECK_OK(tw_metrics_counter(m, "af_total", "", 1, labels, &c));
    CHECK_OK(tw_metric_add(c, a, 1));
    tw_str s;
    tw_str_init(&s);
    CHECK_OK(tw_str_puts(&s, "before\n"));
    int failures = 0;
    for (long k = 1; k < 20; k++) {
        tw_mem_fail_after(k);
        int rc = tw_metric_add(c, b, 1);
        tw_mem_fail_after(0);
        failures += rc == TW_ENOMEM;
        CHECK(rc == 0 || rc == TW_ENOMEM);
        if (rc == 0)
            break;
    }
    CHECK(failures > 0);
    for (long k = 1; k < 20; k++) {
        tw_mem_fail_after(k);
        int rc = tw_metrics_render(m, &s);
        tw_mem_fail_after(0);
        CHECK(rc == 0 || rc == TW_ENOMEM);
        if (rc == 0)
            break;
        CHECK_EQ_STR(tw_str_cstr(&s), "before\n");
    }
    CHECK_EQ_STR(tw_str_cstr(&s), "before\n# HELP af_total \n# TYPE af_total counter\n"
                                  "af_total{k=\"a\"} 1\naf_total{k=\"b\"} 1\n");
    tw_str_free(&s);
    tw_metrics_free(m);
    CHECK_EQ_INT(tw_mem_live(), live);
}

int main(void)
{
    test_threads();
    test_histogram();
    test_escaping_and_numbers();
    test_bad_names();
    test_overflow();
    test_alloc_failure();
    return check_report("serve_test_metrics");
}

// Tests tw_progress with a fake clock: the plain lines at each tenth of a known total and the
// final line, a jump over several tenths, the timed lines of an unknown total, the redraw
// rate and format on a (forced) terminal, quiet mode, and adds from several threads.
#include <pthread.h>
#include <stdlib.h>

#include "base/progress.h"
#include "check.h"

static uint64_t fake_ns;

static uint64_t fake_clock(void)
{
    return fake_ns;
}

#define MS 1000000ull

struct capture {
    char *buf;
    size_t size;
    FILE *f;
};

static void start(struct tw_progress *p, struct capture *cap, const char *label, uint64_t total,
                  int mode)
{
    cap->buf = NULL;
    cap->f = open_memstream(&cap->buf, &cap->size);
    tw_progress_init(p, label, total, cap->f);
    CHECK_EQ_INT(p->mode, TW_PROGRESS_PLAIN); // a memory stream is no terminal
    p->mode = mode;
    fake_ns = 1000 * MS;
    tw_progress_set_clock(p, fake_clock);
}

static void finish(struct tw_progress *p, struct capture *cap)
{
    tw_progress_done(p);
    fclose(cap->f);
}

static void test_plain_total(void)
{
    struct tw_progress p;
    struct capture cap;
    start(&p, &cap, "embed", 100, TW_PROGRESS_PLAIN);
    for (int i = 0; i < 100; i++) {
        fake_ns += 50 * MS;
        tw_progress_add(&p, 1);
    }
    finish(&p, &cap);
    // 20 items a second; the ETA is rounded to the second.
    CHECK_EQ_STR(cap.buf, "embed: 10/100 (10%), 20.0/s, ETA 0:05\n"
                          "embed: 20/100 (20%), 20.0/s, ETA 0:04\n"
                          "embed: 30/100 (30%), 20.0/s, ETA 0:04\n"
                          "embed: 40/100 (40%), 20.0/s, ETA 0:03\n"
                          "embed: 50/100 (50%), 20.0/s, ETA 0:03\n"
                          "embed: 60/100 (60%), 20.0/s, ETA 0:02\n"
                          "embed: 70/100 (70%), 20.0/s, ETA 0:02\n"
                          "embed: 80/100 (80%), 20.0/s, ETA 0:01\n"
                          "embed: 90/100 (90%), 20.0/s, ETA 0:01\n"
                          "embed: 100/100 (100%) in 0:05, 20.0/s\n");
    free(cap.buf);
}

static void test_plain_jumps(void)
{
    struct tw_progress p;
    struct capture cap;
    start(&p, &cap, "", 7, TW_PROGRESS_PLAIN);
    fake_ns += 1000 * MS;
    tw_progress_add(&p, 3); // past 10%, 20%, 30% (the marks are 1, 2, 3): one line
    tw_progress_add(&p, 0);
    fake_ns += 1000 * MS;
    tw_progress_add(&p, 1);
    fake_ns += 3000 * MS;
    tw_progress_add(&p, 3);
    finish(&p, &cap);
    CHECK_EQ_STR(cap.buf, "3/7 (42%), 3.00/s, ETA 0:01\n"
                          "4/7 (57%), 2.00/s, ETA 0:02\n"
                          "7/7 (100%), 1.40/s\n"
                          "7/7 (100%) in 0:05, 1.40/s\n");
    free(cap.buf);
}

static void test_plain_unknown(void)
{
    struct tw_progress p;
    struct capture cap;
    start(&p, &cap, "crawl", 0, TW_PROGRESS_PLAIN);
    for (int i = 0; i < 25; i++) {
        fake_ns += 1000 * MS;
        tw_progress_add(&p, 7);
    }
    finish(&p, &cap);
    CHECK_EQ_STR(cap.buf, "crawl: 70 in 0:10, 7.00/s\n"
                          "crawl: 140 in 0:20, 7.00/s\n"
                          "crawl: 175 in 0:25, 7.00/s\n");
    free(cap.buf);

    start(&p, &cap, "slow", 0, TW_PROGRESS_PLAIN);
    p.interval_ns = 3600000 * MS;
    fake_ns += 7200000 * MS;
    tw_progress_add(&p, 1);
    finish(&p, &cap);
    CHECK_EQ_STR(cap.buf, "slow: 1 in 2:00:00, 0.00/s\n"
                          "slow: 1 in 2:00:00, 0.00/s\n");
    free(cap.buf);
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_tty(void)
{
    struct tw_progress p;
    struct capture cap;
    start(&p, &cap, "embed", 100, TW_PROGRESS_TTY);
    for (int i = 0; i < 50; i++) {
        fake_ns += 30 * MS;
        tw_progress_add(&p, 1);
    }
    fflush(cap.f);
    // 1.5 s in steps of 30 ms: a redraw every 120 ms (the first 0.1 s boundary each time).
    CHECK_EQ_INT(count_char(cap.buf, '\r'), 12);
    const char *first = "\rembed [--------------------] 4/100 (4%), 33.3/s, ETA 0:03\x1b[K\r";
    CHECK(strncmp(cap.buf, first, strlen(first)) == 0);
    CHECK(strchr(cap.buf, '\n') == NULL);
    finish(&p, &cap);
    const char *last = strrchr(cap.buf, '\r');
    CHECK_EQ_STR(last, "\rembed [##########----------] 50/100 (50%) in 0:02, 33.3/s\x1b[K\n");
    free(cap.buf);

    start(&p, &cap, "scan", 0, TW_PROGRESS_TTY);
    fake_ns += 250 * MS;
    tw_progress_add(&p, 1000);
    finish(&p, &cap);
    CHECK_EQ_STR(cap.buf, "\rscan 1000 in 0:00, 4.0k/s\x1b[K"
                          "\rscan 1000 in 0:00, 4.0k/s\x1b[K\n");
    free(cap.buf);
}

static void test_quiet(void)
{
    struct tw_progress p;
    struct capture cap;
    start(&p, &cap, "x", 10, TW_PROGRESS_QUIET);
    for (int i = 0; i < 10; i++) {
        fake_ns += 1000 * MS;
        tw_progress_add(&p, 1);
    }
    finish(&p, &cap);
    CHECK(cap.buf == NULL || cap.buf[0] == '\0');
    free(cap.buf);
}

#define THREADS 4
#define ADDS    20000

static void *add_thread(void *arg)
{
    for (int i = 0; i < ADDS; i++)
        tw_progress_add(arg, 1);
    return NULL;
}

static void test_threads(void)
{
    struct tw_progress p;
    struct capture cap;
    start(&p, &cap, "par", THREADS * ADDS, TW_PROGRESS_PLAIN);
    tw_progress_set_clock(&p, NULL);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, add_thread, &p);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(atomic_load(&p.count), THREADS * ADDS);
    finish(&p, &cap);
    // Lines: increasing counts, each at or past a tenth not printed before, then the final.
    int lines = 0, bad = 0;
    unsigned long long prev = 0;
    for (char *s = cap.buf, *nl; (nl = strchr(s, '\n')); s = nl + 1, lines++) {
        unsigned long long c, total;
        if (sscanf(s, "par: %llu/%llu", &c, &total) != 2 || total != THREADS * ADDS || c <= prev ||
            (c * 10 / total == prev * 10 / total && c != total))
            bad++;
        prev = c;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(lines >= 2 && lines <= 10);
    CHECK(strstr(cap.buf, "par: 80000/80000 (100%) in ") != NULL);
    free(cap.buf);
}

int main(void)
{
    test_plain_total();
    test_plain_jumps();
    test_plain_unknown();
    test_tty();
    test_quiet();
    test_threads();
    return check_report("progress");
}

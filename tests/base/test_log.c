// Tests the logger: level parsing (names, numbers, bad values), TWIN_LOG read at first use
// (in child processes), filtering by level into a sink, long lines cut, the macros not
// evaluating their arguments when off, and whole lines from several threads.
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "check.h"

static void test_parse(void)
{
    static const struct {
        const char *s;
        int level;
    } good[] = {
        { "off", 0 },     { "error", 1 }, { "ERROR", 1 }, { "warn", 2 },
        { "Warning", 2 }, { "info", 3 },  { "debug", 4 }, { "TRACE", 5 },
        { "0", 0 },       { "5", 5 },     { "3", 3 },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int level = -1;
        CHECK_OK(tw_log_parse_level(good[i].s, &level));
        CHECK_EQ_INT(level, good[i].level);
    }
    static const char *const bad[] = { "", "6", "-1", "12", "verbose", "warn ", "debugx" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int level = 42;
        CHECK_EQ_INT(tw_log_parse_level(bad[i], &level), TW_EINVAL);
        CHECK_EQ_INT(level, 42);
        char want[64];
        snprintf(want, sizeof want, "\"%s\"", bad[i]);
        CHECK(strstr(tw_error_msg(), want) != NULL);
    }
    int level = 42;
    CHECK_EQ_INT(tw_log_parse_level(NULL, &level), TW_EINVAL);
    CHECK_EQ_STR(tw_log_level_name(TW_LOG_LEVEL_WARN), "warn");
    CHECK_EQ_STR(tw_log_level_name(99), "off");
}

// Runs a child with TWIN_LOG=value; it logs into a pipe one line at each level and exits.
static void child_output(const char *value, char *out, size_t cap)
{
    int fds[2];
    out[0] = '\0';
    if (pipe(fds) != 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        setenv("TWIN_LOG", value, 1);
        FILE *f = fdopen(fds[1], "w");
        tw_log_set_sink(f);
        for (int level = TW_LOG_LEVEL_ERROR; level <= TW_LOG_LEVEL_TRACE; level++)
            tw_log(level, "at %s", tw_log_level_name(level));
        fclose(f);
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    while (len + 1 < cap && (r = read(fds[0], out + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = '\0';
    close(fds[0]);
    waitpid(pid, NULL, 0);
}

// Must run before anything in this process reads the level, or the children inherit it.
static void test_env(void)
{
    char out[1024];
    child_output("info", out, sizeof out);
    CHECK_EQ_STR(out, "twin: error: at error\ntwin: warn: at warn\ntwin: info: at info\n");
    child_output("1", out, sizeof out);
    CHECK_EQ_STR(out, "twin: error: at error\n");
    child_output("", out, sizeof out);
    CHECK_EQ_STR(out, "twin: error: at error\ntwin: warn: at warn\n");
    child_output("loud", out, sizeof out);
    CHECK_EQ_STR(out, "twin: warn: TWIN_LOG: unknown log level \"loud\"; using warn\n"
                      "twin: error: at error\ntwin: warn: at warn\n");
    child_output("Trace", out, sizeof out);
    CHECK(strstr(out, "twin: debug: [") != NULL);
    CHECK(strstr(out, "s] at debug\n") != NULL);
    CHECK(strstr(out, "s] at trace\n") != NULL);
}

static int evaluated;

static int side_effect(void)
{
    return ++evaluated;
}

static void test_filter(void)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    tw_log_set_sink(f);

    tw_log_set_level(TW_LOG_LEVEL_WARN);
    CHECK_EQ_INT(tw_log_level(), TW_LOG_LEVEL_WARN);
    CHECK(tw_log_enabled(TW_LOG_LEVEL_ERROR));
    CHECK(!tw_log_enabled(TW_LOG_LEVEL_INFO));
    CHECK(!tw_log_enabled(TW_LOG_LEVEL_OFF));
    TW_LOG_ERROR("bad %d", 1);
    TW_LOG_WARN("careful %s", "now");
    TW_LOG_INFO("hidden %d", side_effect());
    TW_LOG_DEBUG("hidden");
    TW_LOG_TRACE("hidden");
    CHECK_EQ_INT(evaluated, 0);
    CHECK_EQ_STR(buf, "twin: error: bad 1\ntwin: warn: careful now\n");

    tw_log_set_level(TW_LOG_LEVEL_OFF);
    TW_LOG_ERROR("silent");
    tw_log_set_level(99);
    CHECK_EQ_INT(tw_log_level(), TW_LOG_LEVEL_TRACE);
    tw_log_set_level(-3);
    CHECK_EQ_INT(tw_log_level(), TW_LOG_LEVEL_OFF);
    tw_log_set_level(TW_LOG_LEVEL_INFO);
    TW_LOG_INFO("shown %d", side_effect());
    CHECK_EQ_INT(evaluated, 1);
    CHECK_EQ_STR(buf, "twin: error: bad 1\ntwin: warn: careful now\ntwin: info: shown 1\n");

    // Logging leaves a pending error message alone.
    tw_error_set(TW_EIO, "x.bin: short read");
    TW_LOG_INFO("after the error");
    CHECK_EQ_STR(tw_error_msg(), "x.bin: short read");

    // A long message is cut, ends in "...", and stays one line.
    size_t before = size;
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    TW_LOG_WARN("%s", big);
    CHECK(size - before > 1000 && size - before <= 2048);
    CHECK(memcmp(buf + size - 4, "...\n", 4) == 0);
    CHECK(memchr(buf + before, '\n', size - before - 1) == NULL);

    tw_log_set_sink(NULL);
    fclose(f);
    free(buf);
}

#define THREADS 4
#define LINES   500

static void *log_thread(void *arg)
{
    long id = (long)arg;
    for (int i = 0; i < LINES; i++)
        tw_log(TW_LOG_LEVEL_ERROR, "thread %ld line %d end", id, i);
    return NULL;
}

static void test_threads(void)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    tw_log_set_sink(f);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, log_thread, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    tw_log_set_sink(NULL);
    fclose(f);
    int lines = 0, malformed = 0;
    for (char *s = buf, *nl; (nl = strchr(s, '\n')); s = nl + 1) {
        long id;
        int i, used = 0;
        lines++;
        if (sscanf(s, "twin: error: thread %ld line %d end%n", &id, &i, &used) != 2 ||
            s + used != nl)
            malformed++;
    }
    CHECK_EQ_INT(lines, THREADS * LINES);
    CHECK_EQ_INT(malformed, 0);
    free(buf);
}

int main(void)
{
    test_parse();
    test_env();
    test_filter();
    test_threads();
    return check_report("log");
}

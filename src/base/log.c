// Implements log.h: the level in an atomic int set once from TWIN_LOG (pthread_once), lines
// formatted on the stack and written with one fwrite under a mutex, then flushed.
#include "base/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/error.h"

#define LINE_CAP 2048

static const char *const level_names[] = { "off", "error", "warn", "info", "debug", "trace" };
#define LEVEL_MAX TW_LOG_LEVEL_TRACE

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int current_level = TW_LOG_LEVEL_WARN;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *sink; // NULL: stderr
static struct timespec start_time;

// Parses without touching the error message (logging must not clobber a pending error).
static bool parse_level(const char *s, int *level)
{
    if (!s)
        return false;
    if (s[0] >= '0' && s[0] <= '0' + LEVEL_MAX && s[1] == '\0') {
        *level = s[0] - '0';
        return true;
    }
    if (strcasecmp(s, "warning") == 0) {
        *level = TW_LOG_LEVEL_WARN;
        return true;
    }
    for (int i = 0; i <= LEVEL_MAX; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *level = i;
            return true;
        }
    }
    return false;
}

static void write_line(const char *line, size_t len)
{
    pthread_mutex_lock(&sink_lock);
    FILE *f = sink ? sink : stderr;
    fwrite(line, 1, len, f);
    fflush(f);
    pthread_mutex_unlock(&sink_lock);
}

static void init_from_env(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start_time);
    const char *env = getenv("TWIN_LOG");
    int level;
    if (!env || !*env)
        return;
    if (parse_level(env, &level)) {
        atomic_store(&current_level, level);
        return;
    }
    char line[256];
    int n = snprintf(line, sizeof line,
                     "twin: warn: TWIN_LOG: unknown log level \"%.64s\"; using warn\n", env);
    write_line(line, (size_t)n);
}

int tw_log_level(void)
{
    pthread_once(&init_once, init_from_env);
    return atomic_load_explicit(&current_level, memory_order_relaxed);
}

bool tw_log_enabled(int level)
{
    return level >= TW_LOG_LEVEL_ERROR && level <= tw_log_level();
}

void tw_log_set_level(int level)
{
    pthread_once(&init_once, init_from_env);
    level = level < 0 ? 0 : level > LEVEL_MAX ? LEVEL_MAX : level;
    atomic_store(&current_level, level);
}

int tw_log_parse_level(const char *s, int *level)
{
    if (parse_level(s, level))
        return 0;
    return tw_error_set(TW_EINVAL,
                        "unknown log level \"%s\" (expected off, error, warn, info, debug, "
                        "trace or 0 to 5)",
                        s ? s : "(null)");
}

const char *tw_log_level_name(int level)
{
    return level >= 0 && level <= LEVEL_MAX ? level_names[level] : level_names[0];
}

void tw_log_set_sink(FILE *f)
{
    pthread_mutex_lock(&sink_lock);
    sink = f;
    pthread_mutex_unlock(&sink_lock);
}

static double elapsed_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start_time.tv_sec) +
           (double)(now.tv_nsec - start_time.tv_nsec) * 1e-9;
}

void tw_logv(int level, const char *fmt, va_list ap)
{
    if (!tw_log_enabled(level))
        return;
    char line[LINE_CAP];
    int n;
    if (level >= TW_LOG_LEVEL_DEBUG)
        n = snprintf(line, sizeof line, "twin: %s: [%.3fs] ", level_names[level],
                     elapsed_seconds());
    else
        n = snprintf(line, sizeof line, "twin: %s: ", level_names[level]);
    // Leave room for "...\n" when the message is cut.
    size_t room = sizeof line - (size_t)n - 4;
    int m = vsnprintf(line + n, room + 1, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (m >= 0 && (size_t)m > room) {
        len = (size_t)n + room;
        memcpy(line + len, "...", 3);
        len += 3;
    }
    line[len++] = '\n';
    write_line(line, len);
}

void tw_log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tw_logv(level, fmt, ap);
    va_end(ap);
}

// Logging: one line per message on stderr (or a sink set for tests), "twin: <level>: text",
// filtered by a level read once from the environment variable TWIN_LOG (default "warn").
// Thread-safe: each line is formatted apart and written whole under a lock.
#ifndef TW_LOG_H
#define TW_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

enum tw_log_level {
    TW_LOG_LEVEL_OFF = 0, // nothing is printed
    TW_LOG_LEVEL_ERROR = 1,
    TW_LOG_LEVEL_WARN = 2,
    TW_LOG_LEVEL_INFO = 3,
    TW_LOG_LEVEL_DEBUG = 4, // debug and trace lines carry the seconds since logging started
    TW_LOG_LEVEL_TRACE = 5,
};

// Prints one line when `level` is enabled (1 <= level <= the current level). The message
// gets "twin: <level>: " in front and a newline after; one longer than about 2000 bytes is
// cut and ends in "...". Never fails and never touches tw_error_msg().
void tw_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tw_logv(int level, const char *fmt, va_list ap);

// The macros skip evaluating their arguments when the level is off.
#define TW_LOG_AT(level, ...)           \
    do {                                \
        if (tw_log_enabled(level))      \
            tw_log(level, __VA_ARGS__); \
    } while (0)
#define TW_LOG_ERROR(...) TW_LOG_AT(TW_LOG_LEVEL_ERROR, __VA_ARGS__)
#define TW_LOG_WARN(...)  TW_LOG_AT(TW_LOG_LEVEL_WARN, __VA_ARGS__)
#define TW_LOG_INFO(...)  TW_LOG_AT(TW_LOG_LEVEL_INFO, __VA_ARGS__)
#define TW_LOG_DEBUG(...) TW_LOG_AT(TW_LOG_LEVEL_DEBUG, __VA_ARGS__)
#define TW_LOG_TRACE(...) TW_LOG_AT(TW_LOG_LEVEL_TRACE, __VA_ARGS__)

// The current level. The first call of any function here reads TWIN_LOG; a bad value there
// prints a warning and leaves the default, warn.
int tw_log_level(void);
// True when a line at `level` would be printed.
bool tw_log_enabled(int level);
// Sets the level (clamped to off .. trace); it wins over TWIN_LOG.
void tw_log_set_level(int level);

// Parses a level name ("off", "error", "warn" or "warning", "info", "debug", "trace", any
// case) or number ("0" to "5") into *level. Returns 0, or TW_EINVAL naming the bad value
// (*level is left as it was).
int tw_log_parse_level(const char *s, int *level);
// "error", "warn", ... for a level; "off" for 0 and anything out of range.
const char *tw_log_level_name(int level);

// Sends lines to `f` instead of stderr (NULL: back to stderr). The caller keeps ownership of
// f and must not close it while it is the sink.
void tw_log_set_sink(FILE *f);

#endif

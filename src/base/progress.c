// Implements progress.h: an atomic count; a line is due by count (plain mode with a total) or
// by time since the last line (terminal: 0.1 s; plain without a total: interval_ns). The
// adder that finds a line due prints it if it wins the trylock; the others carry on.
#include "base/progress.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TTY_REDRAW_NS     100000000ull // ten redraws a second at most
#define PLAIN_INTERVAL_NS 10000000000ull
#define BAR_WIDTH         20

static uint64_t monotonic_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

// The first count at or past the next tenth of the total after c (UINT64_MAX past 90%: the
// line at 100% is done's).
static uint64_t next_mark(uint64_t total, uint64_t c)
{
    unsigned __int128 k = (unsigned __int128)c * 10 / total + 1;
    if (k >= 10)
        return UINT64_MAX;
    return (uint64_t)(((unsigned __int128)total * k + 9) / 10);
}

void tw_progress_init(struct tw_progress *p, const char *label, uint64_t total, FILE *out)
{
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total;
    p->out = out ? out : stderr;
    p->mode = isatty(fileno(p->out)) ? TW_PROGRESS_TTY : TW_PROGRESS_PLAIN;
    p->interval_ns = PLAIN_INTERVAL_NS;
    atomic_init(&p->count, 0);
    atomic_init(&p->last_ns, 0);
    atomic_init(&p->next_count, total ? next_mark(total, 0) : UINT64_MAX);
    pthread_mutex_init(&p->lock, NULL); // cannot fail for a default mutex on Linux
    tw_progress_set_clock(p, NULL);
}

void tw_progress_set_clock(struct tw_progress *p, uint64_t (*now_ns)(void))
{
    p->now_ns = now_ns ? now_ns : monotonic_ns;
    p->start_ns = p->now_ns();
    atomic_store(&p->last_ns, p->start_ns);
}

static void format_duration(char *buf, size_t cap, double seconds)
{
    uint64_t s = seconds < 1e12 ? (uint64_t)(seconds + 0.5) : 999999999999ull;
    if (s >= 3600)
        snprintf(buf, cap, "%" PRIu64 ":%02" PRIu64 ":%02" PRIu64, s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%" PRIu64 ":%02" PRIu64, s / 60, s % 60);
}

static void format_rate(char *buf, size_t cap, double r)
{
    if (r >= 1e6)
        snprintf(buf, cap, "%.2fM", r / 1e6);
    else if (r >= 1e3)
        snprintf(buf, cap, "%.1fk", r / 1e3);
    else if (r >= 10)
        snprintf(buf, cap, "%.1f", r);
    else
        snprintf(buf, cap, "%.2f", r);
}

// Appends to buf at *n, never past cap (a cut status is better than an overrun).
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t cap, size_t *n,
                                                         const char *fmt, ...)
{
    if (*n >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + *n, cap - *n, fmt, ap);
    va_end(ap);
    if (m > 0)
        *n = *n + (size_t)m < cap ? *n + (size_t)m : cap;
}

// "<count>[/<total> (<pct>%)][ in <elapsed>][, <rate>/s][, ETA <eta>]"
static void format_status(char *buf, size_t cap, const struct tw_progress *p, uint64_t c,
                          uint64_t now, bool final)
{
    double elapsed = (double)(now - p->start_ns) * 1e-9;
    double rate = elapsed > 0 ? (double)c / elapsed : 0;
    char tmp[32];
    size_t n = 0;
    if (p->total) {
        uint64_t pct = c >= p->total ? 100 : (uint64_t)((unsigned __int128)c * 100 / p->total);
        append(buf, cap, &n, "%" PRIu64 "/%" PRIu64 " (%" PRIu64 "%%)", c, p->total, pct);
    } else {
        append(buf, cap, &n, "%" PRIu64, c);
    }
    if (final || !p->total) {
        format_duration(tmp, sizeof tmp, elapsed);
        append(buf, cap, &n, " in %s", tmp);
    }
    if (rate > 0) {
        format_rate(tmp, sizeof tmp, rate);
        append(buf, cap, &n, ", %s/s", tmp);
    }
    if (p->total && !final && rate > 0 && c < p->total) {
        format_duration(tmp, sizeof tmp, (double)(p->total - c) / rate);
        append(buf, cap, &n, ", ETA %s", tmp);
    }
}

// Called with p->lock held.
static void print_line(struct tw_progress *p, uint64_t c, uint64_t now, bool final)
{
    char status[160];
    format_status(status, sizeof status, p, c, now, final);
    const char *sep = p->label[0] ? " " : "";
    if (p->mode == TW_PROGRESS_PLAIN) {
        fprintf(p->out, "%s%s%s%s\n", p->label, p->label[0] ? ":" : "", sep, status);
    } else if (!p->total) {
        fprintf(p->out, "\r%s%s%s\x1b[K%s", p->label, sep, status, final ? "\n" : "");
    } else {
        char bar[BAR_WIDTH + 1];
        size_t filled =
            c >= p->total ? BAR_WIDTH : (size_t)(c * (double)BAR_WIDTH / (double)p->total);
        memset(bar, '#', filled);
        memset(bar + filled, '-', BAR_WIDTH - filled);
        bar[BAR_WIDTH] = '\0';
        fprintf(p->out, "\r%s%s[%s] %s\x1b[K%s", p->label, sep, bar, status, final ? "\n" : "");
    }
    fflush(p->out);
}

static bool line_due(struct tw_progress *p, uint64_t c, uint64_t now)
{
    if (p->mode == TW_PROGRESS_PLAIN && p->total)
        return c >= atomic_load_explicit(&p->next_count, memory_order_relaxed);
    uint64_t every = p->mode == TW_PROGRESS_TTY ? TTY_REDRAW_NS : p->interval_ns;
    return now - atomic_load_explicit(&p->last_ns, memory_order_relaxed) >= every;
}

void tw_progress_add(struct tw_progress *p, uint64_t n)
{
    uint64_t c = atomic_fetch_add_explicit(&p->count, n, memory_order_relaxed) + n;
    if (p->mode == TW_PROGRESS_QUIET || !line_due(p, c, p->now_ns()))
        return;
    if (pthread_mutex_trylock(&p->lock) != 0)
        return; // someone is printing; a later add prints what is still due
    uint64_t now = p->now_ns();
    c = atomic_load_explicit(&p->count, memory_order_relaxed);
    if (line_due(p, c, now)) {
        print_line(p, c, now, false);
        atomic_store_explicit(&p->last_ns, now, memory_order_relaxed);
        if (p->total)
            atomic_store_explicit(&p->next_count, next_mark(p->total, c), memory_order_relaxed);
    }
    pthread_mutex_unlock(&p->lock);
}

void tw_progress_done(struct tw_progress *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->mode != TW_PROGRESS_QUIET)
        print_line(p, atomic_load(&p->count), p->now_ns(), true);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_destroy(&p->lock);
}

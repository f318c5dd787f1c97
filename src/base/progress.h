// tw_progress, a progress report for long jobs. On a terminal it redraws one line with "\r"
// (label, bar, count/total, percent, rate, ETA) at most ten times a second; elsewhere (log
// files, CI) it prints a plain line at every tenth of the total, or every interval when the
// total is unknown, and a final line at done. tw_progress_add may be called from any thread.
#ifndef TW_PROGRESS_H
#define TW_PROGRESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum tw_progress_mode {
    TW_PROGRESS_QUIET = 0, // print nothing
    TW_PROGRESS_PLAIN = 1, // whole lines now and then
    TW_PROGRESS_TTY = 2,   // one line redrawn in place
};

// The caller owns the struct; the fields marked "settable" may be changed after
// tw_progress_init and before the first tw_progress_add, the rest are private.
struct tw_progress {
    char label[64];
    uint64_t total;           // 0: unknown
    FILE *out;                // not owned
    int mode;                 // settable: enum tw_progress_mode (init picks TTY or PLAIN)
    uint64_t interval_ns;     // settable: plain lines when the total is unknown (10 s)
    uint64_t (*now_ns)(void); // the clock, in ns; change it with tw_progress_set_clock
    uint64_t start_ns;
    _Atomic uint64_t count;
    _Atomic uint64_t last_ns;    // when the last line was printed (start at first)
    _Atomic uint64_t next_count; // PLAIN with a total: print again at this count
    pthread_mutex_t lock;        // held while printing; adders that find it taken skip
};

// Starts a report of `total` items (0: unknown) on `out` (NULL: stderr); the label is copied
// (cut to 63 bytes). The mode is TTY when out is a terminal, PLAIN otherwise. Prints nothing
// yet. Cannot fail.
void tw_progress_init(struct tw_progress *p, const char *label, uint64_t total, FILE *out);

// Replaces the clock (a monotonic time in nanoseconds; NULL: CLOCK_MONOTONIC) and restarts
// the timing from its current reading: the hook that makes tests deterministic.
void tw_progress_set_clock(struct tw_progress *p, uint64_t (*now_ns)(void));

// Counts n more items done and prints if a line is due. Safe from several threads at once.
void tw_progress_add(struct tw_progress *p, uint64_t n);

// Prints the final line (ending the redrawn line with a newline on a terminal) and releases
// what init took. Call it once, after every tw_progress_add has returned; p is dead after.
void tw_progress_done(struct tw_progress *p);

#endif

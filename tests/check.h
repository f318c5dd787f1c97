// The unit tests' assertions: each failed check prints file:line and the values, and the
// test's main returns check_report() (1 when any check failed). Tests assert on values only.
#ifndef TW_TEST_CHECK_H
#define TW_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

static int check_failed_count;
static int check_count;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        check_count++;                                                               \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failed_count++;                                                    \
        }                                                                            \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                        \
    do {                                                                                          \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                           \
        check_count++;                                                                            \
        if (check_a_ != check_b_) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__, __LINE__, \
                    #a, #b, check_a_, check_b_);                                                  \
            check_failed_count++;                                                                 \
        }                                                                                         \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                  \
    do {                                                                                    \
        const char *check_a_ = (a), *check_b_ = (b);                                        \
        check_count++;                                                                      \
        if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", __FILE__, \
                    __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",                       \
                    check_b_ ? check_b_ : "(null)");                                        \
            check_failed_count++;                                                           \
        }                                                                                   \
    } while (0)

// expr returns 0 on success; on failure the twin error message is printed.
#define CHECK_OK(expr)                                                                           \
    do {                                                                                         \
        int check_rc_ = (expr);                                                                  \
        check_count++;                                                                           \
        if (check_rc_ != 0) {                                                                    \
            fprintf(stderr, "%s:%d: CHECK_OK failed: %s returned %d (%s)\n", __FILE__, __LINE__, \
                    #expr, check_rc_, tw_error_msg());                                           \
            check_failed_count++;                                                                \
        }                                                                                        \
    } while (0)

// Stops the test program at once: for checks whose failure makes the rest meaningless.
#define REQUIRE(cond)                                                                           \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, tw_error_msg());                                                     \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static inline int check_report(const char *name)
{
    if (check_failed_count) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, check_failed_count, check_count);
        return 1;
    }
    printf("%s: %d checks passed\n", name, check_count);
    return 0;
}

// The source tree, where the tests find their data: $TWIN_SOURCE_DIR (ctest sets it) when set
// and not empty, else the current folder.
static inline const char *test_source_dir(void)
{
    const char *d = getenv("TWIN_SOURCE_DIR");
    return d && *d ? d : ".";
}

// Stops the test when a file or folder of the source tree (path) could not be read, saying
// where the tests look for it.
static inline void test_need_source(int ok, const char *path)
{
    if (ok)
        return;
    const char *msg = tw_error_msg();
    fprintf(stderr,
            "%s%s%s (the tests read the source tree at $TWIN_SOURCE_DIR, else the "
            "current folder)\n",
            strstr(msg, path) ? "" : path, strstr(msg, path) ? "" : ": ", msg);
    exit(1);
}

// A small deterministic generator for randomized tests (splitmix64), so a failure repeats.
static inline uint64_t check_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif

// Fuzzes etl/robots: tw_robots_parse on arbitrary bytes for a few product tokens, then
// tw_robots_allowed on fixed paths and on every rule's own pattern. Checks that /robots.txt is
// always allowed, that a parse is deterministic, and that a literal pattern (no '*', no '$')
// from a file with that one rule matches the path equal to it.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "etl/robots.h"

static const char *const paths[] = { "/",      "/robots.txt", "/a", "/a/b?c=d", "/private/x.html",
                                     "/x.gif", "/%7Efoo",     "" };

static void check(const struct tw_robots *r, const struct tw_robots *again)
{
    if (!tw_robots_allowed(r, "/robots.txt"))
        abort();
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (tw_robots_allowed(r, paths[i]) != tw_robots_allowed(again, paths[i]))
            abort();
    for (size_t i = 0; i < r->rules.len; i++) {
        const struct tw_robots_rule *rule = &TW_VEC_AT(&r->rules, struct tw_robots_rule, i);
        char *p = tw_strndup(rule->pattern, rule->len);
        if (!p)
            abort();
        tw_robots_allowed(r, p);
        tw_free(p);
    }
}

// One rule, written literally: the path equal to it must get its verdict.
static void literal(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 200 || data[0] != '/')
        return;
    for (size_t i = 0; i < size; i++)
        if (data[i] < 0x21 || data[i] > 0x7e || data[i] == '*' || data[i] == '$' || data[i] == '#')
            return;
    char txt[256], path[256];
    memcpy(path, data, size);
    path[size] = '\0';
    int n = snprintf(txt, sizeof txt, "User-agent: *\nDisallow: %s\n", path);
    struct tw_robots r;
    tw_robots_init(&r);
    if (tw_robots_parse(&r, txt, (size_t)n, "fuzzbot") == 0 && strcmp(path, "/robots.txt") &&
        tw_robots_allowed(&r, path))
        abort();
    tw_robots_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const agents[] = { "twin", "Googlebot", "", "a" };
    for (size_t a = 0; a < sizeof agents / sizeof *agents; a++) {
        struct tw_robots r, again;
        tw_robots_init(&r);
        tw_robots_init(&again);
        if (tw_robots_parse(&r, (const char *)data, size, agents[a]) == 0 &&
            tw_robots_parse(&again, (const char *)data, size, agents[a]) == 0)
            check(&r, &again);
        tw_robots_free(&r);
        tw_robots_free(&again);
    }
    literal(data, size);
    return 0;
}

// robots.txt (RFC 9309, the Robots Exclusion Protocol): parsing one file for one crawler and
// matching URL paths against the rules of the group that applies to it. Used by the web
// source (web.c); kept apart so that the parser can be fuzzed on its own.
#ifndef TW_ETL_ROBOTS_H
#define TW_ETL_ROBOTS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/vec.h"

struct tw_robots_rule {
    char *pattern; // tw_malloc'd, as written after "Allow:"/"Disallow:" (never empty)
    size_t len;
    bool allow;
};

struct tw_robots {
    tw_vec rules;      // struct tw_robots_rule, the rules of the groups that apply
    bool disallow_all; // set by the caller (robots.txt answered 5xx or was unreachable)
};

void tw_robots_init(struct tw_robots *r);
void tw_robots_free(struct tw_robots *r);

// The product token of a User-Agent string: its leading run of letters, digits, '_' and '-'
// ("twin/0.1 (+https://...)" -> "twin"), written NUL-terminated to out (n bytes, truncated).
void tw_robots_agent_token(const char *user_agent, char *out, size_t n);

// Parses robots.txt text (len bytes, any bytes; lines end with LF, CR or CRLF; '#' starts a
// comment) and keeps the rules for the crawler whose product token is agent: those of every
// group with a User-agent line equal to agent (case-insensitive), else those of every "*"
// group, else none (all allowed). A group is one or more User-agent lines followed by its
// rules; rules before the first User-agent line and unknown lines are ignored, and so is an
// empty Disallow. Replaces r's rules. 0, or TW_ENOMEM with r unchanged.
int tw_robots_parse(struct tw_robots *r, const char *txt, size_t len, const char *agent);

// Whether path (a URL's path and query, starting with '/') may be fetched: the longest
// matching rule (in pattern bytes) wins, Allow winning a tie; '*' in a pattern matches any
// run of bytes and a final '$' anchors it at the end of path; no match: allowed.
// "/robots.txt" is always allowed. Worst case O(rules * pattern * path) time.
bool tw_robots_allowed(const struct tw_robots *r, const char *path);

#endif

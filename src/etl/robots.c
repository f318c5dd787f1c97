// robots.txt parsing and matching after RFC 9309 (groups by product token, Allow/Disallow
// with longest-match precedence, '*' and '$' in patterns). Implements robots.h.
#include "etl/robots.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/mem.h"

void tw_robots_init(struct tw_robots *r)
{
    tw_vec_init(&r->rules, sizeof(struct tw_robots_rule));
    r->disallow_all = false;
}

static void rules_free(tw_vec *v)
{
    for (size_t i = 0; i < v->len; i++)
        tw_free(TW_VEC_AT(v, struct tw_robots_rule, i).pattern);
    tw_vec_free(v);
}

void tw_robots_free(struct tw_robots *r)
{
    rules_free(&r->rules);
    r->disallow_all = false;
}

static bool is_token_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-';
}

void tw_robots_agent_token(const char *user_agent, char *out, size_t n)
{
    size_t k = 0;
    if (!n)
        return;
    while (user_agent && is_token_char(user_agent[k]) && k + 1 < n) {
        out[k] = user_agent[k];
        k++;
    }
    out[k] = '\0';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\v' || c == '\f';
}

// Trims [*b, *e) of white space on both sides.
static void trim(const char **b, const char **e)
{
    while (*b < *e && is_space(**b))
        (*b)++;
    while (*e > *b && is_space((*e)[-1]))
        (*e)--;
}

static bool key_is(const char *k, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(k, name, n) == 0;
}

static int rule_push(tw_vec *v, const char *p, size_t n, bool allow)
{
    struct tw_robots_rule rule = { .pattern = tw_strndup(p, n), .len = n, .allow = allow };
    if (!rule.pattern || tw_vec_push(v, &rule)) {
        tw_free(rule.pattern);
        return TW_ENOMEM;
    }
    return 0;
}

// The state of the parse: which group the current rules belong to.
struct parse {
    const char *agent;
    size_t agent_len;
    bool in_agents;   // the previous meaningful line was a User-agent line
    bool cur_token;   // the current group names our product token
    bool cur_star;    // the current group names "*"
    bool token_group; // some group named our product token
    tw_vec token_rules, star_rules;
};

static int parse_line(struct parse *ps, const char *b, const char *e)
{
    const char *hash = memchr(b, '#', (size_t)(e - b));
    if (hash)
        e = hash;
    const char *colon = memchr(b, ':', (size_t)(e - b));
    if (!colon)
        return 0;
    const char *kb = b, *ke = colon, *vb = colon + 1, *ve = e;
    trim(&kb, &ke);
    trim(&vb, &ve);
    size_t kn = (size_t)(ke - kb), vn = (size_t)(ve - vb);
    if (key_is(kb, kn, "user-agent")) {
        if (!ps->in_agents)
            ps->cur_token = ps->cur_star = false; // a new group starts
        ps->in_agents = true;
        if (vn && vb[0] == '*') {
            ps->cur_star = true;
        } else {
            size_t tn = 0;
            while (tn < vn && is_token_char(vb[tn]))
                tn++;
            if (tn && tn == ps->agent_len && strncasecmp(vb, ps->agent, tn) == 0) {
                ps->cur_token = true;
                ps->token_group = true;
            }
        }
        return 0;
    }
    bool allow = key_is(kb, kn, "allow");
    if (!allow && !key_is(kb, kn, "disallow"))
        return 0; // Sitemap, Crawl-delay and unknown keys do not end a group
    ps->in_agents = false;
    if (!vn)
        return 0; // an empty rule matches nothing
    if (ps->cur_token && rule_push(&ps->token_rules, vb, vn, allow))
        return TW_ENOMEM;
    if (ps->cur_star && rule_push(&ps->star_rules, vb, vn, allow))
        return TW_ENOMEM;
    return 0;
}

int tw_robots_parse(struct tw_robots *r, const char *txt, size_t len, const char *agent)
{
    struct parse ps = { .agent = agent ? agent : "", .agent_len = agent ? strlen(agent) : 0 };
    tw_vec_init(&ps.token_rules, sizeof(struct tw_robots_rule));
    tw_vec_init(&ps.star_rules, sizeof(struct tw_robots_rule));
    int rc = 0;
    const char *p = txt, *end = txt + len;
    while (!rc && p < end) {
        const char *e = p;
        while (e < end && *e != '\n' && *e != '\r')
            e++;
        rc = parse_line(&ps, p, e);
        p = e < end ? e + 1 : e;
    }
    if (rc) {
        rules_free(&ps.token_rules);
        rules_free(&ps.star_rules);
        return tw_error_set(TW_ENOMEM, "robots.txt: out of memory");
    }
    rules_free(&r->rules);
    if (ps.token_group) {
        r->rules = ps.token_rules;
        rules_free(&ps.star_rules);
    } else {
        r->rules = ps.star_rules;
        rules_free(&ps.token_rules);
    }
    return 0;
}

// Whether pattern p (pn bytes, '*' a wildcard) matches all of s (anchored) or a prefix of it.
// The greedy match with one back-tracking point (the last '*') is exact for patterns whose
// only wildcard is '*', and takes O(pn * sn) steps at worst.
static bool glob_match(const char *p, size_t pn, const char *s, size_t sn, bool anchored)
{
    size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;
    for (;;) {
        if (pi == pn && !anchored)
            return true; // the rest of s is free
        if (si == sn)
            break;
        if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (pi < pn && p[pi] == s[si]) {
            pi++;
            si++;
        } else if (star != SIZE_MAX) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

bool tw_robots_allowed(const struct tw_robots *r, const char *path)
{
    if (strcmp(path, "/robots.txt") == 0)
        return true;
    if (r->disallow_all)
        return false;
    size_t sn = strlen(path), best = 0;
    bool allowed = true, any = false;
    for (size_t i = 0; i < r->rules.len; i++) {
        const struct tw_robots_rule *rule = &TW_VEC_AT(&r->rules, struct tw_robots_rule, i);
        size_t pn = rule->len;
        bool anchored = pn && rule->pattern[pn - 1] == '$';
        if (!glob_match(rule->pattern, anchored ? pn - 1 : pn, path, sn, anchored))
            continue;
        if (!any || rule->len > best || (rule->len == best && rule->allow)) {
            best = rule->len;
            allowed = rule->allow;
            any = true;
        }
    }
    return allowed;
}

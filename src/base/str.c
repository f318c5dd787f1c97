// Implements str.h on tw_vec: each change reserves room for the bytes and the NUL first,
// so a failed allocation leaves the string untouched.
#include "base/str.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"

void tw_str_init(tw_str *s)
{
    tw_vec_init(&s->v, 1);
}

void tw_str_free(tw_str *s)
{
    tw_vec_free(&s->v);
}

// Room for n more bytes and the NUL after them.
static int reserve_more(tw_str *s, size_t n)
{
    size_t need;
    if (tw_add_overflow(s->v.len, n, &need) || tw_add_overflow(need, 1, &need))
        return tw_error_set(TW_EOVERFLOW, "string: %zu + %zu bytes overflow", s->v.len, n);
    return tw_vec_reserve(&s->v, need);
}

static void terminate(tw_str *s)
{
    ((char *)s->v.data)[s->v.len] = '\0';
}

int tw_str_append(tw_str *s, const void *p, size_t n)
{
    int rc = reserve_more(s, n);
    if (rc)
        return rc;
    if (n)
        memcpy((char *)s->v.data + s->v.len, p, n);
    s->v.len += n;
    terminate(s);
    return 0;
}

int tw_str_puts(tw_str *s, const char *z)
{
    return tw_str_append(s, z, strlen(z));
}

int tw_str_putc(tw_str *s, char c)
{
    return tw_str_append(s, &c, 1);
}

int tw_str_vprintf(tw_str *s, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return tw_error_set(TW_EINVAL, "string: bad format \"%s\"", fmt);
    int rc = reserve_more(s, (size_t)n);
    if (rc)
        return rc;
    vsnprintf((char *)s->v.data + s->v.len, (size_t)n + 1, fmt, ap);
    s->v.len += (size_t)n;
    return 0;
}

int tw_str_printf(tw_str *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = tw_str_vprintf(s, fmt, ap);
    va_end(ap);
    return rc;
}

const char *tw_str_cstr(const tw_str *s)
{
    return s->v.data ? (const char *)s->v.data : "";
}

size_t tw_str_len(const tw_str *s)
{
    return s->v.len;
}

void tw_str_truncate(tw_str *s, size_t n)
{
    assert(n <= s->v.len);
    if (!s->v.data)
        return;
    s->v.len = n;
    terminate(s);
}

void tw_str_clear(tw_str *s)
{
    tw_str_truncate(s, 0);
}

int tw_str_detach(tw_str *s, char **out, size_t *len)
{
    int rc = reserve_more(s, 0); // an empty string still hands back a "" buffer
    if (rc)
        return rc;
    terminate(s);
    *out = s->v.data;
    if (len)
        *len = s->v.len;
    tw_vec_init(&s->v, 1);
    return 0;
}

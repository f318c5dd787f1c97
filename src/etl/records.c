// Implements tw_source_records (source.h): record exports as documents. Owns the field map
// (parsing and defaults), the three formats (.json with jansson, .jsonl line by line, .csv
// with libcsv fed one physical line at a time so that rows know their line), and the reading
// of a record's fields into a struct tw_doc_in (text of any JSON value, dates, metadata).
#define _GNU_SOURCE // realpath
#include "etl/source.h"

#include <csv.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "text/utf8.h"

// ---- the field map

enum target { T_AUTHOR, T_CONTENT, T_TITLE, T_DATE, T_URI, T_CATEGORY, T_PLATFORM, N_TARGETS };

static const char *const target_names[N_TARGETS] = {
    "author", "content", "title", "date", "uri", "category", "platform",
};

// Used when map is NULL, and for each target a given map leaves out.
static const char *const default_map[N_TARGETS] = {
    "author", "content|text", "title", "date", "url|link", NULL, NULL,
};

struct fieldmap {
    char *buf;                 // the copy of the map the names below point into
    tw_vec names[N_TARGETS];   // const char *: the record fields to try, in order
    char label[N_TARGETS][96]; // "content|text": the names for messages
};

static void fieldmap_free(struct fieldmap *m)
{
    for (int t = 0; t < N_TARGETS; t++)
        tw_vec_free(&m->names[t]);
    tw_free(m->buf);
    m->buf = NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

// Splits "a|b|c" (in place) into the target's names.
static int add_names(struct fieldmap *m, int t, char *spec)
{
    for (char *save = NULL, *name = strtok_r(spec, "|", &save); name;
         name = strtok_r(NULL, "|", &save)) {
        name = trim(name);
        if (!*name)
            continue;
        const char *p = name;
        if (tw_vec_push(&m->names[t], &p))
            return tw_error_set(TW_ENOMEM, "map: out of memory");
    }
    if (m->names[t].len == 0)
        return tw_error_set(TW_EINVAL, "map: \"%s\" names no record field", target_names[t]);
    return 0;
}

static int fieldmap_parse(struct fieldmap *m, const char *map)
{
    memset(m, 0, sizeof *m);
    for (int t = 0; t < N_TARGETS; t++)
        tw_vec_init(&m->names[t], sizeof(const char *));
    size_t dlen = 0;
    for (int t = 0; t < N_TARGETS; t++)
        dlen += default_map[t] ? strlen(default_map[t]) + 1 : 0;
    size_t mlen = map ? strlen(map) : 0;
    // The user's map first, then the defaults, in one buffer.
    m->buf = tw_malloc(mlen + 1 + dlen + 1);
    if (!m->buf)
        return tw_error_set(TW_ENOMEM, "map: out of memory");
    memcpy(m->buf, map ? map : "", mlen + 1);
    char *defs = m->buf + mlen + 1;
    int rc = 0;
    for (char *save = NULL, *pair = strtok_r(m->buf, ",", &save); pair && !rc;
         pair = strtok_r(NULL, ",", &save)) {
        pair = trim(pair);
        if (!*pair)
            continue;
        char *eq = strchr(pair, '=');
        if (eq)
            *eq = 0;
        char *key = trim(pair);
        int t = 0;
        while (t < N_TARGETS && strcmp(key, target_names[t]) != 0)
            t++;
        if (t == N_TARGETS)
            rc = tw_error_set(TW_EINVAL,
                              "map: unknown field \"%s\" (author, content, title, date, uri, "
                              "category, platform)",
                              key);
        else if (!eq)
            rc = tw_error_set(TW_EINVAL, "map: \"%s\" without \"=record field\"", key);
        else if (m->names[t].len)
            rc = tw_error_set(TW_EINVAL, "map: \"%s\" given twice", key);
        else
            rc = add_names(m, t, eq + 1);
    }
    for (int t = 0; t < N_TARGETS && !rc; t++) {
        if (m->names[t].len || !default_map[t])
            continue;
        size_t n = strlen(default_map[t]);
        memcpy(defs, default_map[t], n + 1);
        rc = add_names(m, t, defs);
        defs += n + 1;
    }
    for (int t = 0; t < N_TARGETS && !rc; t++) {
        size_t at = 0;
        m->label[t][0] = 0;
        for (size_t i = 0; i < m->names[t].len; i++) {
            int w = snprintf(m->label[t] + at, sizeof m->label[t] - at, "%s%s", i ? "|" : "",
                             TW_VEC_AT(&m->names[t], const char *, i));
            at = w < 0 || (size_t)w >= sizeof m->label[t] - at ? sizeof m->label[t] - 1 : at + w;
        }
    }
    if (rc)
        fieldmap_free(m);
    return rc;
}

// ---- dates

// Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar: the days_from_civil
// formula of H. Hinnant, "chrono-Compatible Low-Level Date Algorithms" (eras of 400 years).
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int64_t y, int m)
{
    static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

// Reads exactly n digits at *p (advancing it); -1 when they are not there.
static int digits(const char **p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return v;
}

// ISO 8601: YYYY-MM, YYYY-MM-DD, then optionally T (or a space) HH:MM[:SS[.fraction]] and
// Z or an offset ±HH[:MM] / ±HHMM; without an offset the time is taken as UTC.
static bool parse_iso(const char *s, int64_t *out)
{
    const char *p = s;
    int y = digits(&p, 4), mo = -1, d = 1, h = 0, mi = 0, sec = 0, off = 0;
    if (y < 0 || *p++ != '-' || (mo = digits(&p, 2)) < 1 || mo > 12)
        return false;
    if (*p == '-') {
        p++;
        if ((d = digits(&p, 2)) < 1 || d > days_in_month(y, mo))
            return false;
        if (*p == 'T' || *p == 't' || (*p == ' ' && p[1])) {
            p++;
            if ((h = digits(&p, 2)) < 0 || h > 23 || *p++ != ':' || (mi = digits(&p, 2)) < 0 ||
                mi > 59)
                return false;
            if (*p == ':') {
                p++;
                if ((sec = digits(&p, 2)) < 0 || sec > 60)
                    return false;
                if (*p == '.' || *p == ',') {
                    p++;
                    if (*p < '0' || *p > '9')
                        return false;
                    while (*p >= '0' && *p <= '9')
                        p++;
                }
            }
            if (*p == 'Z' || *p == 'z') {
                p++;
            } else if (*p == '+' || *p == '-') {
                int sign = *p++ == '-' ? -1 : 1, oh = digits(&p, 2), om = 0;
                if (oh < 0 || oh > 23)
                    return false;
                if (*p == ':')
                    p++;
                if (*p && (om = digits(&p, 2)) < 0)
                    return false;
                if (om > 59)
                    return false;
                off = sign * (oh * 3600 + om * 60);
            }
        }
    }
    if (*p)
        return false;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return true;
}

// A date field: a JSON integer from 1000 to 9999 or a string of 4 digits is a year (January
// 1, UTC); other integers, reals and strings of digits are Unix seconds; other strings ISO
// 8601.
static bool parse_date(const json_t *v, const char *text, int64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        *out = i >= 1000 && i <= 9999 ? days_from_civil(i, 1, 1) * 86400 : (int64_t)i;
        return true;
    }
    if (json_is_real(v)) {
        double r = json_real_value(v);
        if (!(r > -9.2e18 && r < 9.2e18))
            return false;
        *out = (int64_t)r;
        return true;
    }
    if (!json_is_string(v))
        return false;
    while (*text == ' ' || *text == '\t')
        text++;
    char buf[64];
    size_t n = strlen(text);
    while (n && (text[n - 1] == ' ' || text[n - 1] == '\t' || text[n - 1] == '\r'))
        n--;
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, text, n);
    buf[n] = 0;
    const char *p = buf + (buf[0] == '-');
    if (*p && strspn(p, "0123456789") == strlen(p)) {
        if (n == 4 && buf[0] != '-') {
            *out = days_from_civil(atoi(buf), 1, 1) * 86400;
            return true;
        }
        if (strlen(p) > 18)
            return false;
        *out = strtoll(buf, NULL, 10);
        return true;
    }
    return parse_iso(buf, out);
}

// ---- one record

struct records {
    const char *path; // as given, for messages
    char *abs;        // absolute path, for URIs
    struct fieldmap map;
    const struct tw_sink *sink;
    int64_t done, total;
};

// The text of a field: strings as they are, null as nothing, anything else as compact JSON
// (1790 -> "1790"). *owned is set when the text was rendered (free it with tw_free).
static int value_text(const json_t *v, const char **s, size_t *n, char **owned)
{
    *owned = NULL;
    if (!v || json_is_null(v)) {
        *s = NULL;
        *n = 0;
        return 0;
    }
    if (json_is_string(v)) {
        *s = json_string_value(v);
        *n = json_string_length(v);
        return 0;
    }
    int rc = tw_json_dump(v, JSON_COMPACT, owned);
    if (rc)
        return rc;
    *s = *owned;
    *n = strlen(*owned);
    return 0;
}

// The first of the target's fields present in rec (not null, not an empty string).
static const char *find_field(const struct records *r, const json_t *rec, int t, json_t **v)
{
    for (size_t i = 0; i < r->map.names[t].len; i++) {
        const char *name = TW_VEC_AT(&r->map.names[t], const char *, i);
        json_t *x = json_object_get(rec, name);
        if (!x || json_is_null(x) || (json_is_string(x) && json_string_length(x) == 0))
            continue;
        *v = x;
        return name;
    }
    *v = NULL;
    return NULL;
}

// One more record seen (a document or a failure).
static void count(struct records *r)
{
    r->done++;
    if (r->sink->progress)
        r->sink->progress(r->sink->ud, r->done, r->total);
}

// Whether n bytes at s are all blanks (spaces, tabs, line ends); s need not end in a NUL.
static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static void fail(const struct records *r, const char *uri, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(const struct records *r, const char *uri, const char *fmt, ...)
{
    tw_str s;
    tw_str_init(&s);
    va_list ap;
    va_start(ap, fmt);
    int rc = tw_str_vprintf(&s, fmt, ap);
    va_end(ap);
    r->sink->fail(r->sink->ud, uri, rc ? "out of memory" : tw_str_cstr(&s));
    tw_str_free(&s);
}

// The unmapped fields of rec, as a new object (NULL when none); invalid UTF-8 in strings
// (CSV fields) is replaced so that the metadata always encodes.
static int metadata_of(const json_t *rec, const char *const used[N_TARGETS], json_t **out)
{
    *out = NULL;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)rec, key, v)
    {
        bool is_used = false;
        for (int t = 0; t < N_TARGETS && !is_used; t++)
            is_used = used[t] && strcmp(used[t], key) == 0;
        if (is_used || json_is_null(v))
            continue;
        if (!*out && !(*out = json_object()))
            return TW_ENOMEM;
        json_t *copy = NULL;
        if (json_is_string(v) && !tw_utf8_valid(json_string_value(v), json_string_length(v))) {
            tw_str s;
            tw_str_init(&s);
            if (tw_utf8_sanitize(json_string_value(v), json_string_length(v), &s) == 0)
                copy = json_stringn(tw_str_cstr(&s), tw_str_len(&s));
            tw_str_free(&s);
        } else {
            copy = json_incref(v);
        }
        if (!copy || json_object_set_new(*out, key, copy)) {
            json_decref(*out);
            *out = NULL;
            return TW_ENOMEM;
        }
    }
    return 0;
}

// Hands one record to the sink. place is "<path>:<line>" or "<path>: record <i>" for
// messages, pos the line or index for the default URI. Returns the sink's stop value, or
// TW_ENOMEM; a bad record goes to fail and returns 0.
static int emit(struct records *r, const json_t *rec, const char *place, int64_t pos)
{
    char defuri[PATH_MAX + 32];
    snprintf(defuri, sizeof defuri, "%s#%lld", r->abs, (long long)pos);
    count(r);
    if (!json_is_object(rec)) {
        fail(r, defuri, "%s: expected an object, got %s", place, tw_json_type_name(rec));
        return 0;
    }
    const char *used[N_TARGETS] = { 0 };
    const char *text[N_TARGETS] = { 0 };
    size_t len[N_TARGETS] = { 0 };
    char *owned[N_TARGETS] = { 0 };
    json_t *vals[N_TARGETS] = { 0 };
    int rc = 0;
    for (int t = 0; t < N_TARGETS && !rc; t++) {
        used[t] = find_field(r, rec, t, &vals[t]);
        rc = value_text(vals[t], &text[t], &len[t], &owned[t]);
    }
    const char *uri = text[T_URI] && len[T_URI] == strlen(text[T_URI]) ? text[T_URI] : defuri;
    int64_t date = 0;
    json_t *meta = NULL;
    if (rc) {
        rc = TW_ENOMEM;
    } else if (!text[T_CONTENT]) {
        fail(r, uri, "%s: no content field \"%s\"", place, r->map.label[T_CONTENT]);
    } else if (vals[T_DATE] && !parse_date(vals[T_DATE], text[T_DATE], &date)) {
        fail(r, uri,
             "%s: date field \"%s\": \"%.40s\" is not Unix seconds, a year or an ISO 8601 date",
             place, used[T_DATE], text[T_DATE]);
    } else if (metadata_of(rec, used, &meta)) {
        rc = TW_ENOMEM;
    } else {
        struct tw_doc_in d = {
            .uri = uri,
            .category = text[T_CATEGORY],
            .platform = text[T_PLATFORM],
            .author = text[T_AUTHOR],
            .title = text[T_TITLE],
            .content = text[T_CONTENT],
            .content_len = len[T_CONTENT],
            .published_at = date,
            .metadata = meta,
            .extractor = "records",
        };
        rc = r->sink->doc(r->sink->ud, &d);
        json_decref(meta);
    }
    for (int t = 0; t < N_TARGETS; t++)
        tw_free(owned[t]);
    if (rc == TW_ENOMEM)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", place);
    return rc;
}

// ---- .json and .jsonl

static int read_json(struct records *r, const char *buf, size_t len)
{
    json_error_t err;
    json_t *top = json_loadb(buf, len, JSON_DECODE_ANY, &err);
    if (!top) {
        fail(r, r->abs, "%s:%d:%d: %s", r->path, err.line, err.column, err.text);
        return 0;
    }
    int rc = 0;
    char place[PATH_MAX + 64];
    if (json_is_array(top)) {
        r->total = (int64_t)json_array_size(top);
        for (size_t i = 0; i < json_array_size(top) && !rc; i++) {
            snprintf(place, sizeof place, "%s: record %zu", r->path, i + 1);
            rc = emit(r, json_array_get(top, i), place, (int64_t)i + 1);
        }
    } else if (json_is_object(top)) {
        r->total = 1;
        snprintf(place, sizeof place, "%s", r->path);
        rc = emit(r, top, place, 1);
    } else {
        fail(r, r->abs, "%s: expected an array of objects or an object, got %s", r->path,
             tw_json_type_name(top));
    }
    json_decref(top);
    return rc;
}

static int read_jsonl(struct records *r, const char *buf, size_t len)
{
    int rc = 0;
    int64_t line = 0;
    char place[PATH_MAX + 64];
    for (size_t at = 0; at < len && !rc;) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - buf) : len, n = end - at;
        const char *s = buf + at;
        at = nl ? end + 1 : len;
        line++;
        if (n && s[n - 1] == '\r')
            n--;
        if (blank(s, n))
            continue;
        snprintf(place, sizeof place, "%s:%lld", r->path, (long long)line);
        json_error_t err;
        json_t *rec = json_loadb(s, n, 0, &err);
        if (!rec) {
            char uri[PATH_MAX + 32];
            snprintf(uri, sizeof uri, "%s#%lld", r->abs, (long long)line);
            count(r);
            fail(r, uri, "%s: %s", place, err.text);
            continue;
        }
        rc = emit(r, rec, place, line);
        json_decref(rec);
    }
    return rc;
}

// ---- .csv

struct csv_state {
    struct records *r;
    tw_vec header; // char * (tw_malloc'd, valid UTF-8): the field names
    bool have_header;
    tw_vec row;     // tw_str: the fields of the row being read
    size_t nfields; // fields of that row so far
    bool in_row;    // a row has begun (its first line is row_line)
    int64_t line, row_line;
    int rc; // the first error (TW_ENOMEM or the sink's stop value)
};

static void csv_field(void *s, size_t n, void *ud)
{
    struct csv_state *c = ud;
    if (c->rc)
        return;
    c->in_row = true;
    if (c->nfields == c->row.len) {
        tw_str *f;
        if (tw_vec_grow(&c->row, 1, (void **)&f)) {
            c->rc = TW_ENOMEM;
            return;
        }
        tw_str_init(f);
    }
    tw_str *f = &TW_VEC_AT(&c->row, tw_str, c->nfields);
    tw_str_clear(f);
    if (n && tw_str_append(f, s, n))
        c->rc = TW_ENOMEM;
    c->nfields++;
}

static int take_header(struct csv_state *c)
{
    for (size_t i = 0; i < c->nfields; i++) {
        tw_str *f = &TW_VEC_AT(&c->row, tw_str, i);
        tw_str name;
        tw_str_init(&name);
        int rc = tw_str_len(f) ? tw_utf8_sanitize(tw_str_cstr(f), tw_str_len(f), &name)
                               : tw_str_printf(&name, "field%zu", i + 1);
        char *z = NULL;
        if (!rc)
            rc = tw_str_detach(&name, &z, NULL);
        tw_str_free(&name);
        if (rc || tw_vec_push(&c->header, &z)) {
            tw_free(z);
            return TW_ENOMEM;
        }
    }
    c->have_header = true;
    return 0;
}

static int take_row(struct csv_state *c)
{
    struct records *r = c->r;
    char place[PATH_MAX + 64];
    snprintf(place, sizeof place, "%s:%lld", r->path, (long long)c->row_line);
    if (c->nfields != c->header.len) {
        char uri[PATH_MAX + 32];
        snprintf(uri, sizeof uri, "%s#%lld", r->abs, (long long)c->row_line);
        count(r);
        fail(r, uri, "%s: expected %zu fields, found %zu", place, c->header.len, c->nfields);
        return 0;
    }
    json_t *rec = json_object();
    if (!rec)
        return TW_ENOMEM;
    for (size_t i = 0; i < c->nfields; i++) {
        tw_str *f = &TW_VEC_AT(&c->row, tw_str, i);
        if (!tw_str_len(f)) // CSV has no null: an empty field is an absent one
            continue;
        // Bytes as they are (the ingest replaces invalid UTF-8 and counts it).
        json_t *v = json_stringn_nocheck(tw_str_cstr(f), tw_str_len(f));
        if (!v || json_object_set_new(rec, TW_VEC_AT(&c->header, char *, i), v)) {
            json_decref(rec);
            return TW_ENOMEM;
        }
    }
    int rc = emit(r, rec, place, c->row_line);
    json_decref(rec);
    return rc;
}

static void csv_row(int term, void *ud)
{
    (void)term;
    struct csv_state *c = ud;
    if (!c->rc) {
        if (!c->have_header)
            c->rc = take_header(c);
        else if (!(c->nfields == 1 && !tw_str_len(&TW_VEC_AT(&c->row, tw_str, 0))))
            c->rc = take_row(c);
    }
    c->nfields = 0;
    c->in_row = false;
}

static void csv_state_free(struct csv_state *c)
{
    for (size_t i = 0; i < c->header.len; i++)
        tw_free(TW_VEC_AT(&c->header, char *, i));
    for (size_t i = 0; i < c->row.len; i++)
        tw_str_free(&TW_VEC_AT(&c->row, tw_str, i));
    tw_vec_free(&c->header);
    tw_vec_free(&c->row);
}

static int csv_start(struct csv_parser *p)
{
    if (csv_init(p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
        return TW_ENOMEM;
    csv_set_realloc_func(p, tw_realloc);
    csv_set_free_func(p, tw_free);
    return 0;
}

// A strict-mode error: the row is reported and dropped, and parsing starts afresh on the
// next line.
static int csv_restart(struct csv_state *c, struct csv_parser *p, const char *what)
{
    struct records *r = c->r;
    char uri[PATH_MAX + 32];
    snprintf(uri, sizeof uri, "%s#%lld", r->abs, (long long)c->row_line);
    count(r);
    fail(r, uri, "%s:%lld: %s", r->path, (long long)c->row_line, what);
    csv_free(p);
    c->nfields = 0;
    c->in_row = false;
    return csv_start(p);
}

static int read_csv(struct records *r, const char *buf, size_t len)
{
    struct csv_state c = { .r = r };
    tw_vec_init(&c.header, sizeof(char *));
    tw_vec_init(&c.row, sizeof(tw_str));
    struct csv_parser p;
    if (csv_start(&p))
        return tw_error_set(TW_ENOMEM, "%s: out of memory", r->path);
    // One physical line at a time: a row that begins with this line starts here.
    for (size_t at = 0; at < len && !c.rc;) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t n = (nl ? (size_t)(nl - buf) + 1 : len) - at;
        const char *s = buf + at;
        at += n;
        c.line++;
        if (!c.in_row) {
            c.row_line = c.line;
            c.in_row = !blank(s, n); // libcsv skips blank lines
        }
        if (csv_parse(&p, s, n, csv_field, csv_row, &c) != n && !c.rc)
            c.rc = csv_restart(&c, &p,
                               "malformed quoted field (a quote inside a quoted "
                               "field is written twice)");
    }
    if (!c.rc && csv_fini(&p, csv_field, csv_row, &c) != 0 && !c.rc)
        c.rc = csv_restart(&c, &p, "quoted field not closed at the end of the file");
    csv_free(&p);
    csv_state_free(&c);
    if (c.rc == TW_ENOMEM)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", r->path);
    return c.rc;
}

// ---- the source

static bool has_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), m = strlen(ext);
    return n > m && strcasecmp(path + n - m, ext) == 0;
}

int tw_source_records(const char *path, const char *map, const struct tw_sink *sink)
{
    int (*reader)(struct records *, const char *, size_t);
    if (has_ext(path, ".json"))
        reader = read_json;
    else if (has_ext(path, ".jsonl") || has_ext(path, ".ndjson"))
        reader = read_jsonl;
    else if (has_ext(path, ".csv"))
        reader = read_csv;
    else
        return tw_error_set(TW_EINVAL, "%s: unknown records format (.json, .jsonl, .ndjson, .csv)",
                            path);
    tw_json_init();
    struct records r = { .path = path, .sink = sink };
    int rc = fieldmap_parse(&r.map, map);
    if (rc)
        return rc;
    struct tw_mmap m = { 0 };
    rc = tw_mmap_open(&m, path);
    if (!rc && !(r.abs = realpath(path, NULL)))
        rc = tw_error_set(TW_EIO, "%s: cannot resolve the path", path);
    if (!rc) {
        const char *buf = m.data ? m.data : "";
        size_t len = m.len;
        if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) { // a UTF-8 byte order mark
            buf += 3;
            len -= 3;
        }
        rc = reader(&r, buf, len);
    }
    free(r.abs); // realpath's, from malloc
    tw_mmap_close(&m);
    fieldmap_free(&r.map);
    return rc;
}

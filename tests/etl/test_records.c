// Tests etl/records.c (tw_source_records): .jsonl with a malformed line, .json arrays and
// single objects, .csv with quoting and bad rows, field maps, dates, metadata, missing
// content, errors, and the State of the Union corpus ($TWIN_SOURCE_DIR/.cache/data/sotu).
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/vec.h"
#include "check.h"
#include "etl/source.h"

// ---- a sink that keeps copies of everything

struct doc {
    char *uri, *author, *title, *content, *category, *platform, *meta, *extractor;
    int64_t published_at;
};

struct issue {
    char *uri, *message;
};

struct collect {
    tw_vec docs;  // struct doc
    tw_vec fails; // struct issue
    int64_t last_done, last_total;
    int stop_after; // > 0: doc returns 7 once this many documents were taken
};

static char *dup_or_null(const char *s)
{
    return s ? tw_strdup(s) : NULL;
}

static int on_doc(void *ud, const struct tw_doc_in *d)
{
    struct collect *c = ud;
    struct doc x = {
        .uri = dup_or_null(d->uri),
        .author = dup_or_null(d->author),
        .title = dup_or_null(d->title),
        .content = tw_strndup(d->content, d->content_len),
        .category = dup_or_null(d->category),
        .platform = dup_or_null(d->platform),
        .extractor = dup_or_null(d->extractor),
        .published_at = d->published_at,
    };
    if (d->metadata)
        REQUIRE(tw_json_dump(d->metadata, JSON_COMPACT | JSON_SORT_KEYS, &x.meta) == 0);
    REQUIRE(tw_vec_push(&c->docs, &x) == 0);
    if (c->stop_after && (int)c->docs.len >= c->stop_after)
        return 7;
    return 0;
}

static void on_skip(void *ud, const char *uri, const char *reason)
{
    (void)ud;
    fprintf(stderr, "unexpected skip %s: %s\n", uri, reason);
    CHECK(0);
}

static void on_fail(void *ud, const char *uri, const char *message)
{
    struct collect *c = ud;
    struct issue x = { tw_strdup(uri), tw_strdup(message) };
    REQUIRE(tw_vec_push(&c->fails, &x) == 0);
}

static void on_progress(void *ud, int64_t done, int64_t total)
{
    struct collect *c = ud;
    CHECK(done == c->last_done + 1);
    c->last_done = done;
    c->last_total = total;
}

static void collect_init(struct collect *c, struct tw_sink *s)
{
    memset(c, 0, sizeof *c);
    tw_vec_init(&c->docs, sizeof(struct doc));
    tw_vec_init(&c->fails, sizeof(struct issue));
    *s = (struct tw_sink){
        .ud = c, .doc = on_doc, .skip = on_skip, .fail = on_fail, .progress = on_progress
    };
}

static void collect_free(struct collect *c)
{
    for (size_t i = 0; i < c->docs.len; i++) {
        struct doc *d = &TW_VEC_AT(&c->docs, struct doc, i);
        tw_free(d->uri);
        tw_free(d->author);
        tw_free(d->title);
        tw_free(d->content);
        tw_free(d->category);
        tw_free(d->platform);
        tw_free(d->meta);
        tw_free(d->extractor);
    }
    for (size_t i = 0; i < c->fails.len; i++) {
        tw_free(TW_VEC_AT(&c->fails, struct issue, i).uri);
        tw_free(TW_VEC_AT(&c->fails, struct issue, i).message);
    }
    tw_vec_free(&c->docs);
    tw_vec_free(&c->fails);
}

#define DOC(c, i)  (&TW_VEC_AT(&(c)->docs, struct doc, (i)))
#define FAIL(c, i) (&TW_VEC_AT(&(c)->fails, struct issue, (i)))

// ---- files

static char tmpdir[PATH_MAX];

// Writes data to tmpdir/name; path gets the path, abs its realpath (for URIs).
static void write_file(const char *name, const char *data, char *path, char *abs)
{
    REQUIRE(snprintf(path, PATH_MAX, "%s/%s", tmpdir, name) < PATH_MAX);
    REQUIRE(tw_file_write_atomic(path, data, strlen(data)) == 0);
    if (abs)
        REQUIRE(realpath(path, abs) != NULL);
}

static char *uri_at(const char *abs, int pos, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s#%d", abs, pos);
    return buf;
}

// ---- tests

static void test_jsonl(void)
{
    char path[PATH_MAX], abs[PATH_MAX], uri[PATH_MAX + 16], msg[PATH_MAX + 64];
    write_file("a.jsonl",
               "{\"text\":\"one\",\"author\":\"Ann\",\"date\":\"2020-01-02\"}\n"
               "{\"text\": \"two\",\n"
               "{\"text\":\"three\",\"title\":\"T3\",\"extra\":5,\"tags\":[\"x\"],\"n\":null}\r\n"
               "\n"
               "   \n"
               "{\"content\":\"four\",\"text\":\"not this\",\"date\":1700000000}",
               path, abs);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    REQUIRE(c.docs.len == 3);
    REQUIRE(c.fails.len == 1);
    snprintf(msg, sizeof msg, "%s:2: ", path);
    CHECK(strncmp(FAIL(&c, 0)->message, msg, strlen(msg)) == 0);
    CHECK_EQ_STR(FAIL(&c, 0)->uri, uri_at(abs, 2, uri, sizeof uri));

    CHECK_EQ_STR(DOC(&c, 0)->content, "one");
    CHECK_EQ_STR(DOC(&c, 0)->author, "Ann");
    CHECK(DOC(&c, 0)->title == NULL);
    CHECK_EQ_INT(DOC(&c, 0)->published_at, 1577923200); // 2020-01-02T00:00:00Z
    CHECK_EQ_STR(DOC(&c, 0)->uri, uri_at(abs, 1, uri, sizeof uri));
    CHECK(DOC(&c, 0)->meta == NULL);
    CHECK(DOC(&c, 0)->platform == NULL);
    CHECK(DOC(&c, 0)->category == NULL);
    CHECK_EQ_STR(DOC(&c, 0)->extractor, "records");

    CHECK_EQ_STR(DOC(&c, 1)->content, "three");
    CHECK_EQ_STR(DOC(&c, 1)->title, "T3");
    CHECK_EQ_STR(DOC(&c, 1)->uri, uri_at(abs, 3, uri, sizeof uri));
    CHECK_EQ_STR(DOC(&c, 1)->meta, "{\"extra\":5,\"tags\":[\"x\"]}"); // JSON types kept
    CHECK_EQ_INT(DOC(&c, 1)->published_at, 0);

    // content before text in the default map; the unused "text" goes to the metadata.
    CHECK_EQ_STR(DOC(&c, 2)->content, "four");
    CHECK_EQ_STR(DOC(&c, 2)->uri, uri_at(abs, 6, uri, sizeof uri));
    CHECK_EQ_INT(DOC(&c, 2)->published_at, 1700000000);
    CHECK_EQ_STR(DOC(&c, 2)->meta, "{\"text\":\"not this\"}");
    CHECK_EQ_INT(c.last_done, 4);
    CHECK_EQ_INT(c.last_total, 0);
    collect_free(&c);

    // The same file again gives the same URIs (a re-ingest deduplicates by them).
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    REQUIRE(c.docs.len == 3);
    CHECK_EQ_STR(DOC(&c, 2)->uri, uri_at(abs, 6, uri, sizeof uri));
    collect_free(&c);
}

static void test_json_array(void)
{
    char path[PATH_MAX], abs[PATH_MAX], uri[PATH_MAX + 16], msg[PATH_MAX + 128];
    write_file("b.json",
               "[{\"content\":\"a\",\"title\":\"x\",\"kind\":\"post\",\"p\":\"blog\"},\n"
               " 5,\n"
               " {\"title\":\"no content\"},\n"
               " {\"content\":\"b\",\"url\":\"https://example.com/1\",\"score\":1.5},\n"
               " {\"content\":\"\"}]",
               path, abs);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, "category=kind, platform = p", &s));
    REQUIRE(c.docs.len == 2);
    REQUIRE(c.fails.len == 3);
    CHECK_EQ_STR(DOC(&c, 0)->content, "a");
    CHECK_EQ_STR(DOC(&c, 0)->category, "post");
    CHECK_EQ_STR(DOC(&c, 0)->platform, "blog");
    CHECK_EQ_STR(DOC(&c, 0)->uri, uri_at(abs, 1, uri, sizeof uri));
    CHECK_EQ_STR(DOC(&c, 1)->uri, "https://example.com/1");
    CHECK_EQ_STR(DOC(&c, 1)->meta, "{\"score\":1.5}");
    snprintf(msg, sizeof msg, "%s: record 2: expected an object, got an integer", path);
    CHECK_EQ_STR(FAIL(&c, 0)->message, msg);
    CHECK_EQ_STR(FAIL(&c, 0)->uri, uri_at(abs, 2, uri, sizeof uri));
    snprintf(msg, sizeof msg, "%s: record 3: no content field \"content|text\"", path);
    CHECK_EQ_STR(FAIL(&c, 1)->message, msg);
    snprintf(msg, sizeof msg, "%s: record 5: no content field \"content|text\"", path);
    CHECK_EQ_STR(FAIL(&c, 2)->message, msg);
    CHECK_EQ_INT(c.last_done, 5);
    CHECK_EQ_INT(c.last_total, 5);
    collect_free(&c);

    // A malformed .json file is one failure naming the line, not an error.
    write_file("bad.json", "[{\"content\":\"a\"},\n {\"content\" 1}]", path, abs);
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    CHECK_EQ_INT(c.docs.len, 0);
    REQUIRE(c.fails.len == 1);
    snprintf(msg, sizeof msg, "%s:2:", path);
    CHECK(strncmp(FAIL(&c, 0)->message, msg, strlen(msg)) == 0);
    collect_free(&c);

    // A top-level value that is neither.
    write_file("str.json", "\"just a string\"", path, abs);
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    REQUIRE(c.fails.len == 1);
    CHECK(strstr(FAIL(&c, 0)->message, "expected an array of objects or an object") != NULL);
    collect_free(&c);
}

static void test_json_single(void)
{
    char path[PATH_MAX], abs[PATH_MAX], uri[PATH_MAX + 16];
    // The shape of the State of the Union files, with a byte order mark in front.
    write_file("1790_x.json",
               "\xEF\xBB\xBF{\"year\":1790,\"name\":\"George Washington\",\"party\":\"none\","
               "\"text\":\"Fellow-Citizens\"}",
               path, abs);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, "author=name,content=text,title=year,date=year", &s));
    REQUIRE(c.docs.len == 1);
    CHECK_EQ_INT(c.fails.len, 0);
    CHECK_EQ_STR(DOC(&c, 0)->content, "Fellow-Citizens");
    CHECK_EQ_STR(DOC(&c, 0)->author, "George Washington");
    CHECK_EQ_STR(DOC(&c, 0)->title, "1790");               // a number rendered as text
    CHECK_EQ_INT(DOC(&c, 0)->published_at, -5680195200LL); // 1790-01-01T00:00:00Z
    CHECK_EQ_STR(DOC(&c, 0)->meta, "{\"party\":\"none\"}");
    CHECK_EQ_STR(DOC(&c, 0)->uri, uri_at(abs, 1, uri, sizeof uri));
    CHECK_EQ_INT(c.last_done, 1);
    CHECK_EQ_INT(c.last_total, 1);
    collect_free(&c);
}

static void test_csv(void)
{
    char path[PATH_MAX], abs[PATH_MAX], uri[PATH_MAX + 16], msg[PATH_MAX + 128];
    write_file("c.csv",
               "title,text,year,tag\n"                                 // 1
               "\"Hello, world\",\"line one\n"                         // 2
               "line two\",1999,7\n"                                   // 3
               "plain,\"she said \"\"hi\"\"\",2001-05-06T07:08:09Z,\n" // 4
               "short,row\n"                                           // 5
               "\n"                                                    // 6
               "\"multi\n"                                             // 7
               "line title\",body,,x\n"                                // 8
               "bad,\"x\"y,1,2\n"                                      // 9
               "after,bad,1234567890,\"\"\n"                           // 10
               "too,many,fields,here,!\n"                              // 11
               "last,no newline,0,z",                                  // 12
               path, abs);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, "content=text,date=year", &s));
    REQUIRE(c.docs.len == 5);
    REQUIRE(c.fails.len == 3);
    CHECK_EQ_STR(DOC(&c, 0)->title, "Hello, world");
    CHECK_EQ_STR(DOC(&c, 0)->content, "line one\nline two");
    CHECK_EQ_INT(DOC(&c, 0)->published_at, 915148800); // 1999-01-01
    CHECK_EQ_STR(DOC(&c, 0)->meta, "{\"tag\":\"7\"}"); // CSV values are strings
    CHECK_EQ_STR(DOC(&c, 0)->uri, uri_at(abs, 2, uri, sizeof uri));
    CHECK_EQ_STR(DOC(&c, 1)->content, "she said \"hi\"");
    CHECK_EQ_INT(DOC(&c, 1)->published_at, 989132889); // 2001-05-06T07:08:09Z
    CHECK(DOC(&c, 1)->meta == NULL);                   // an empty field is absent
    CHECK_EQ_STR(DOC(&c, 1)->uri, uri_at(abs, 4, uri, sizeof uri));
    CHECK_EQ_STR(DOC(&c, 2)->title, "multi\nline title");
    CHECK_EQ_STR(DOC(&c, 2)->content, "body");
    CHECK_EQ_INT(DOC(&c, 2)->published_at, 0);
    CHECK_EQ_STR(DOC(&c, 2)->uri, uri_at(abs, 7, uri, sizeof uri));
    CHECK_EQ_STR(DOC(&c, 3)->title, "after");
    CHECK_EQ_INT(DOC(&c, 3)->published_at, 1234567890);
    CHECK_EQ_STR(DOC(&c, 3)->uri, uri_at(abs, 10, uri, sizeof uri));
    CHECK_EQ_STR(DOC(&c, 4)->content, "no newline");
    CHECK_EQ_STR(DOC(&c, 4)->uri, uri_at(abs, 12, uri, sizeof uri));
    snprintf(msg, sizeof msg, "%s:5: expected 4 fields, found 2", path);
    CHECK_EQ_STR(FAIL(&c, 0)->message, msg);
    CHECK_EQ_STR(FAIL(&c, 0)->uri, uri_at(abs, 5, uri, sizeof uri));
    snprintf(msg, sizeof msg, "%s:9: malformed quoted field", path);
    CHECK(strncmp(FAIL(&c, 1)->message, msg, strlen(msg)) == 0);
    snprintf(msg, sizeof msg, "%s:11: expected 4 fields, found 5", path);
    CHECK_EQ_STR(FAIL(&c, 2)->message, msg);
    CHECK_EQ_INT(c.last_done, 8);
    collect_free(&c);

    // CRLF line ends, a quoted field left open at the end.
    write_file("d.csv", "text\r\nA\r\n\r\nB\r\n\"open\r\nstill open", path, abs);
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    REQUIRE(c.docs.len == 2);
    CHECK_EQ_STR(DOC(&c, 0)->content, "A");
    CHECK_EQ_STR(DOC(&c, 0)->uri, uri_at(abs, 2, uri, sizeof uri));
    CHECK_EQ_STR(DOC(&c, 1)->content, "B");
    CHECK_EQ_STR(DOC(&c, 1)->uri, uri_at(abs, 4, uri, sizeof uri));
    REQUIRE(c.fails.len == 1);
    snprintf(msg, sizeof msg, "%s:5: quoted field not closed", path);
    CHECK(strncmp(FAIL(&c, 0)->message, msg, strlen(msg)) == 0);
    collect_free(&c);

    // Invalid UTF-8 in a field: kept in the content (the ingest replaces it), replaced in
    // the metadata so that it always encodes.
    write_file("e.csv", "text,note\nok,\xff\xfe\n", path, abs);
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    REQUIRE(c.docs.len == 1);
    CHECK_EQ_STR(DOC(&c, 0)->meta, "{\"note\":\"\xEF\xBF\xBD\xEF\xBF\xBD\"}");
    collect_free(&c);

    // An empty file and a header alone: nothing.
    write_file("f.csv", "", path, abs);
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    CHECK_EQ_INT(c.docs.len + c.fails.len, 0);
    collect_free(&c);
    write_file("g.csv", "text,title\n", path, abs);
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    CHECK_EQ_INT(c.docs.len + c.fails.len, 0);
    collect_free(&c);
}

static void test_maps(void)
{
    char path[PATH_MAX], abs[PATH_MAX];
    write_file("m.jsonl", "{\"body\":\"x\",\"who\":\"W\",\"when\":\"1999\"}\n", path, abs);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);

    CHECK_EQ_INT(tw_source_records(path, "autor=who,content=body", &s), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "\"autor\"") != NULL);
    CHECK_EQ_INT(tw_source_records(path, "author", &s), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "\"author\"") != NULL);
    CHECK_EQ_INT(tw_source_records(path, "author=a,author=b", &s), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "twice") != NULL);
    CHECK_EQ_INT(tw_source_records(path, "content=", &s), TW_EINVAL);
    CHECK_EQ_INT(tw_source_records(path, "content=|", &s), TW_EINVAL);
    CHECK_EQ_INT(c.docs.len + c.fails.len, 0);

    // Alternatives: the first present one wins.
    CHECK_OK(tw_source_records(path, "content=text|body, author=who, date=when,", &s));
    REQUIRE(c.docs.len == 1);
    CHECK_EQ_STR(DOC(&c, 0)->content, "x");
    CHECK_EQ_STR(DOC(&c, 0)->author, "W");
    CHECK_EQ_INT(DOC(&c, 0)->published_at, 915148800);
    CHECK(DOC(&c, 0)->meta == NULL);

    // The default map has no "body": the record fails, naming the fields it looked for.
    c.last_done = 0;
    CHECK_OK(tw_source_records(path, "", &s));
    REQUIRE(c.fails.len == 1);
    CHECK(strstr(FAIL(&c, 0)->message, ":1: no content field \"content|text\"") != NULL);
    c.last_done = 0;
    CHECK_OK(tw_source_records(path, "content=text", &s));
    REQUIRE(c.fails.len == 2);
    CHECK(strstr(FAIL(&c, 1)->message, ":1: no content field \"text\"") != NULL);
    collect_free(&c);
}

static void test_dates(void)
{
    char path[PATH_MAX], abs[PATH_MAX];
    write_file("dates.jsonl",
               "{\"text\":\"a\",\"date\":\"2020-01-02T03:04:05+02:00\"}\n"
               "{\"text\":\"b\",\"date\":\"1999\"}\n"
               "{\"text\":\"c\",\"date\":1999}\n"
               "{\"text\":\"d\",\"date\":\"2020-02\"}\n"
               "{\"text\":\"e\",\"date\":\"1700000000\"}\n"
               "{\"text\":\"f\",\"date\":1700000000.75}\n"
               "{\"text\":\"g\",\"date\":\"2020-03-04 05:06:07.123Z\"}\n"
               "{\"text\":\"h\",\"date\":\"2020-03-04T05:06-0130\"}\n"
               "{\"text\":\"i\",\"date\":\"1600-03-01\"}\n"
               "{\"text\":\"j\",\"date\":\"bogus\"}\n"
               "{\"text\":\"k\",\"date\":\"2021-02-29\"}\n"
               "{\"text\":\"l\",\"date\":true}\n"
               "{\"text\":\"m\",\"date\":\"2020-13-01\"}\n"
               "{\"text\":\"n\",\"date\":null}\n",
               path, abs);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    CHECK_OK(tw_source_records(path, NULL, &s));
    REQUIRE(c.docs.len == 10);
    static const int64_t want[] = {
        1577927045,   // 2020-01-02T01:04:05Z
        915148800,    // 1999-01-01
        915148800,    //
        1580515200,   // 2020-02-01
        1700000000,   //
        1700000000,   // seconds, fraction dropped
        1583298367,   // 2020-03-04T05:06:07Z
        1583303760,   // 2020-03-04T06:36:00Z
        -11670912000, // 1600-03-01
        0,            // null: unknown
    };
    for (size_t i = 0; i < 10; i++)
        CHECK_EQ_INT(DOC(&c, i)->published_at, want[i]);
    REQUIRE(c.fails.len == 4);
    CHECK(strstr(FAIL(&c, 0)->message, ":10: date field \"date\": \"bogus\" is not") != NULL);
    CHECK(strstr(FAIL(&c, 1)->message, ":11: date field") != NULL);
    CHECK(strstr(FAIL(&c, 2)->message, ":12: date field") != NULL);
    CHECK(strstr(FAIL(&c, 3)->message, ":13: date field") != NULL);
    collect_free(&c);
}

static void test_errors(void)
{
    char path[PATH_MAX];
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    REQUIRE(snprintf(path, sizeof path, "%s/missing.jsonl", tmpdir) < PATH_MAX);
    CHECK_EQ_INT(tw_source_records(path, NULL, &s), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), path) != NULL);
    CHECK_EQ_INT(tw_source_records("notes.txt", NULL, &s), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "notes.txt") != NULL);
    // A folder with a records name cannot be read as one.
    REQUIRE(snprintf(path, sizeof path, "%s/dir.json", tmpdir) < PATH_MAX);
    REQUIRE(tw_mkdir_p(path, 0755) == 0);
    CHECK(tw_source_records(path, NULL, &s) < 0);
    CHECK(strstr(tw_error_msg(), path) != NULL);

    // The sink's stop value ends the source and is returned.
    write_file("stop.jsonl", "{\"text\":\"1\"}\n{\"text\":\"2\"}\n{\"text\":\"3\"}\n", path, NULL);
    c.stop_after = 2;
    CHECK_EQ_INT(tw_source_records(path, NULL, &s), 7);
    CHECK_EQ_INT(c.docs.len, 2);
    collect_free(&c);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The State of the Union corpus: 233 single-object .json files {"year","name","party","text"}.
static void test_sotu(void)
{
    const char *root = test_source_dir();
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/.cache/data/sotu", root);
    DIR *d = opendir(dir);
    if (!d) {
        printf("test_records: %s missing (scripts/deps.sh fetches it): corpus test skipped\n",
               dir);
        return;
    }
    tw_vec names;
    tw_vec_init(&names, sizeof(char *));
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0) {
            char *n = tw_strdup(e->d_name);
            REQUIRE(n && tw_vec_push(&names, &n) == 0);
        }
    }
    closedir(d);
    qsort(names.data, names.len, sizeof(char *), name_cmp);

    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    for (size_t i = 0; i < names.len; i++) {
        char path[PATH_MAX];
        REQUIRE(snprintf(path, sizeof path, "%s/%s", dir, TW_VEC_AT(&names, char *, i)) <
                PATH_MAX);
        c.last_done = 0;
        CHECK_OK(tw_source_records(path, "author=name,content=text,title=year,date=year", &s));
        tw_free(TW_VEC_AT(&names, char *, i));
    }
    tw_vec_free(&names);
    CHECK_EQ_INT(c.docs.len, 233);
    CHECK_EQ_INT(c.fails.len, 0);
    // Distinct authors, counted with python3 over the files: 43 ("George Bush" and
    // "George W Bush" are two names).
    size_t distinct = 0;
    for (size_t i = 0; i < c.docs.len; i++) {
        size_t j = 0;
        while (j < i && strcmp(DOC(&c, j)->author, DOC(&c, i)->author) != 0)
            j++;
        distinct += j == i;
        CHECK(DOC(&c, i)->content && strlen(DOC(&c, i)->content) > 1000);
        CHECK(DOC(&c, i)->meta && strncmp(DOC(&c, i)->meta, "{\"party\":", 9) == 0);
    }
    CHECK_EQ_INT(distinct, 43);
    if (c.docs.len) {
        CHECK_EQ_STR(DOC(&c, 0)->author, "George Washington");
        CHECK_EQ_STR(DOC(&c, 0)->title, "1790");
        CHECK_EQ_INT(DOC(&c, 0)->published_at, -5680195200LL);
        CHECK(strncmp(DOC(&c, 0)->content, "Fellow-Citizens of the Senate", 29) == 0);
    }
    collect_free(&c);
}

int main(void)
{
    tw_json_init();
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/twin-records-XXXXXX", t && *t ? t : "/tmp");
    REQUIRE(mkdtemp(tmpdir) != NULL);
    long live = tw_mem_live();
    test_jsonl();
    test_json_array();
    test_json_single();
    test_csv();
    test_maps();
    test_dates();
    test_errors();
    test_sotu();
    CHECK_EQ_INT(tw_mem_live(), live);
    tw_remove_tree(tmpdir);
    return check_report("test_records");
}

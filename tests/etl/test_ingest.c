// Tests the ingest: standardisation (invalid UTF-8 replaced and counted, NFC, line breaks,
// white space, code kept), deduplication (exact under another URI, near by MinHash), the
// summary's counts and reasons, re-ingest (unchanged), updates, a bad source that leaves the
// warehouse untouched, and the State of the Union corpus from its JSON records: 233
// documents, the count per author that the files themselves give, and nothing added again.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/mem.h"
#include "base/str.h"
#include "check.h"
#include "etl/ingest.h"
#include "store/home.h"
#include "store/warehouse.h"

static void std_case(const char *in, size_t len, bool code, const char *want, int64_t invalid)
{
    tw_str out;
    tw_str_init(&out);
    int64_t n = 0;
    CHECK_OK(tw_standardize(in, len, code, &out, &n));
    CHECK_EQ_STR(tw_str_cstr(&out), want);
    CHECK_EQ_INT(n, invalid);
    tw_str_free(&out);
}

static void test_standardize(void)
{
    const char *s = "  Fellow-Citizens\t of the   Senate  \r\n\r\n\r\n\n  and House\r";
    std_case(s, strlen(s), false, "Fellow-Citizens of the Senate\n\nand House", 0);
    std_case("e\xcc\x81t\xc3\xa9", 6, false, "\xc3\xa9t\xc3\xa9", 0); // NFC: e + U+0301 -> é
    std_case("a\xff"
             "b\xe2\x82",
             5, false,
             "a\xef\xbf\xbd"
             "b\xef\xbf\xbd",
             2);
    std_case("\xef\xbf\xbd ok", 6, false, "\xef\xbf\xbd ok", 0);    // a real U+FFFD is not counted
    std_case("\xef\xbb\xbfhi\0there\x01", 13, false, "hithere", 0); // BOM, NUL, controls
    const char *code = "\n\nint main(void)  \n{\n\n\n    return 0;\t\n}\n\n";
    std_case(code, strlen(code), true, "int main(void)\n{\n\n\n    return 0;\n}\n", 0);
    std_case(" \n\t\n", 4, false, "", 0);
}

static struct tw_home *new_home(char *dir)
{
    strcpy(dir, "/tmp/twin-ingest-XXXXXX");
    REQUIRE(mkdtemp(dir));
    char home[300];
    snprintf(home, sizeof home, "%s/home", dir);
    int created;
    REQUIRE(tw_home_init(home, &created) == 0);
    struct tw_home *h;
    REQUIRE(tw_home_open(home, &h) == 0);
    return h;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static int64_t reason(const struct tw_ingest_summary *s, const char *name)
{
    for (size_t i = 0; i < s->skips.len; i++) {
        const struct tw_ingest_count *c = tw_vec_at(&s->skips, i);
        if (strcmp(c->reason, name) == 0)
            return c->n;
    }
    return 0;
}

static int64_t count_rows(struct tw_home *h, const char *sql)
{
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(h->db, sql, -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

// A paragraph long enough for MinHash to tell a one-word change from a different text.
static const char *para =
    "We observe today not a victory of party but a celebration of freedom symbolizing an end "
    "as well as a beginning signifying renewal as well as change. For I have sworn before "
    "you and Almighty God the same solemn oath our forebears prescribed nearly a century and "
    "three quarters ago. The world is very different now. For man holds in his mortal hands "
    "the power to abolish all forms of human poverty and all forms of human life.";

static void test_records_flow(void)
{
    char dir[64], path[300], bad[300];
    struct tw_home *h = new_home(dir);
    snprintf(path, sizeof path, "%s/posts.jsonl", dir);
    tw_str f;
    tw_str_init(&f);
    tw_str_printf(&f, "{\"who\": \"Ada Lovelace\", \"text\": \"%s\", \"url\": \"u:1\"}\n", para);
    tw_str_printf(&f, "{\"who\": \"Ada Lovelace\", \"text\": \"Notes on the engine.\", "
                      "\"url\": \"u:2\"}\n");
    tw_str_printf(&f, "{\"who\": \"Charles Babbage\", \"text\": \"Notes on the engine.\", "
                      "\"url\": \"u:3\"}\n"); // exact duplicate of u:2
    tw_str_printf(&f, "{\"who\": \"Ada Lovelace\", \"text\": \"%s Indeed.\", \"url\": \"u:4\"}\n",
                  para); // one word more: a near-duplicate of u:1
    tw_str_printf(&f, "{\"who\": \"Charles Babbage\", \"text\": \"On the economy of machinery "
                      "and manufactures\", \"url\": \"u:5\"}\n");
    tw_str_printf(&f, "{\"who\": \"broken\n"); // malformed
    tw_str_printf(&f, "{\"who\": \"Charles Babbage\", \"text\": \"\\t \", \"url\": \"u:6\"}\n");
    write_file(path, tw_str_cstr(&f));
    tw_str_free(&f);

    const char *src[] = { path };
    struct tw_ingest_options o = { .map = "author=who,content=text,uri=url" };
    struct tw_ingest_summary s;
    tw_ingest_summary_init(&s);
    CHECK_OK(tw_ingest(h, src, 1, &o, &s));
    CHECK_EQ_INT(s.inserted, 3);
    CHECK_EQ_INT(s.duplicates, 1);
    CHECK_EQ_INT(s.near_duplicates, 1);
    CHECK_EQ_INT(s.failed, 1);
    CHECK_EQ_INT(reason(&s, "empty"), 1);
    CHECK_EQ_INT(s.found, 5);
    REQUIRE(s.dups.len == 2);
    const struct tw_ingest_issue *dup = tw_vec_at(&s.dups, 0);
    CHECK_EQ_STR(dup->uri, "u:3");
    struct tw_wh_doc k;
    CHECK_OK(tw_wh_doc_find_uri(h, "u:2", &k));
    CHECK_EQ_STR(dup->message, k.id);
    REQUIRE(s.failures.len == 1);
    const struct tw_ingest_issue *fail = tw_vec_at(&s.failures, 0);
    CHECK(strstr(fail->message, ":6") != NULL); // the malformed record's line
    tw_ingest_summary_free(&s);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM documents"), 3);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM authors"), 2);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM ingests WHERE finished_at IS NOT NULL"), 1);

    // Again: nothing new, nothing changed.
    tw_ingest_summary_init(&s);
    CHECK_OK(tw_ingest(h, src, 1, &o, &s));
    CHECK_EQ_INT(s.inserted, 0);
    CHECK_EQ_INT(s.unchanged, 3);
    CHECK_EQ_INT(s.duplicates, 1);
    CHECK_EQ_INT(s.near_duplicates, 1);
    tw_ingest_summary_free(&s);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM changes"), 3);

    // One record changed: an update, logged.
    write_file(path, "{\"who\": \"Ada Lovelace\", \"text\": \"Notes on the analytical engine.\", "
                     "\"url\": \"u:2\"}\n");
    tw_ingest_summary_init(&s);
    CHECK_OK(tw_ingest(h, src, 1, &o, &s));
    CHECK_EQ_INT(s.updated, 1);
    tw_ingest_summary_free(&s);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM changes WHERE op = 'update'"), 1);

    // A missing source among good ones: an error naming it, nothing written, no run recorded.
    snprintf(bad, sizeof bad, "%s/missing.jsonl", dir);
    const char *two[] = { path, bad };
    int64_t runs = count_rows(h, "SELECT count(*) FROM ingests");
    tw_ingest_summary_init(&s);
    CHECK_EQ_INT(tw_ingest(h, two, 2, &o, &s), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "missing.jsonl") != NULL);
    CHECK_EQ_INT(s.found, 0);
    tw_ingest_summary_free(&s);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM ingests"), runs);

    // No author anywhere: each document fails, naming the way out.
    write_file(path, "{\"text\": \"anonymous\"}\n");
    tw_ingest_summary_init(&s);
    CHECK_OK(tw_ingest(h, src, 1, &(struct tw_ingest_options){ .map = "content=text" }, &s));
    CHECK_EQ_INT(s.failed, 1);
    REQUIRE(s.failures.len == 1);
    CHECK(strstr(((struct tw_ingest_issue *)tw_vec_at(&s.failures, 0))->message, "--author"));
    tw_ingest_summary_free(&s);

    tw_home_close(h);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

struct author_count {
    tw_str got;
};

static int add_author(void *ud, const struct tw_wh_author *a)
{
    tw_str_printf(ud, "%s=%lld;", a->full_name, (long long)a->n_documents);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The corpus's authors and counts read straight from its files, "name=n;" by name.
static size_t expected_authors(const char *corpus, tw_str *out)
{
    DIR *d = opendir(corpus);
    REQUIRE(d);
    char *names[400];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 400) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", corpus, e->d_name);
        json_error_t err;
        json_t *j = json_load_file(p, 0, &err);
        REQUIRE(j);
        names[n++] = tw_strdup(json_string_value(json_object_get(j, "name")));
        json_decref(j);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    // Case-insensitive order as the warehouse's NOCASE collation: the names are ASCII.
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && strcmp(names[j], names[i]) == 0)
            j++;
        tw_str_printf(out, "%s=%zu;", names[i], j - i);
        i = j;
    }
    for (size_t i = 0; i < n; i++)
        tw_free(names[i]);
    return n;
}

static void test_sotu(void)
{
    const char *root = test_source_dir();
    char corpus[512], dir[64];
    snprintf(corpus, sizeof corpus, "%s/.cache/data/sotu", root);
    tw_str want, got;
    tw_str_init(&want);
    tw_str_init(&got);
    size_t n_files = expected_authors(corpus, &want);
    CHECK_EQ_INT(n_files, 233);
    struct tw_home *h = new_home(dir);
    const char *src[] = { corpus };
    struct tw_ingest_options o = { .map = "author=name,content=text,title=year,date=year" };
    struct tw_ingest_summary s;
    tw_ingest_summary_init(&s);
    CHECK_OK(tw_ingest(h, src, 1, &o, &s));
    CHECK_EQ_INT(s.found, 233);
    CHECK_EQ_INT(s.inserted, 233);
    CHECK_EQ_INT(s.failed + s.duplicates + s.near_duplicates, 0);
    tw_ingest_summary_free(&s);
    CHECK_OK(tw_wh_authors(h, add_author, &got));
    CHECK_EQ_STR(tw_str_cstr(&got), tw_str_cstr(&want));
    // Washington's first address is dated 1790 and titled by its year.
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM documents WHERE title = '1790' AND "
                               "published_at = -5680195200"),
                 1);
    tw_ingest_summary_init(&s);
    CHECK_OK(tw_ingest(h, src, 1, &o, &s));
    CHECK_EQ_INT(s.inserted + s.updated, 0);
    CHECK_EQ_INT(s.unchanged, 233);
    tw_ingest_summary_free(&s);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM documents"), 233);
    tw_str_free(&want);
    tw_str_free(&got);
    tw_home_close(h);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    test_standardize();
    test_records_flow();
    test_sotu();
    return check_report("ingest");
}

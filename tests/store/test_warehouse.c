// Tests the warehouse: UUIDs, authors (case-insensitive, first/last names), documents put by
// URI (insert, unchanged, update keeping the id), lookups by URI, hash, seq and id prefix,
// listing with filters, deletion, the change log, MinHash signatures round trip, ingest runs,
// and that a rolled-back transaction leaves nothing behind.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/sha256.h"
#include "base/str.h"
#include "check.h"
#include "store/home.h"
#include "store/warehouse.h"

static struct tw_home *open_home(char *dir)
{
    strcpy(dir, "/tmp/twin-wh-XXXXXX");
    REQUIRE(mkdtemp(dir));
    char home[300];
    snprintf(home, sizeof home, "%s/home", dir);
    int created;
    REQUIRE(tw_home_init(home, &created) == 0);
    struct tw_home *h;
    REQUIRE(tw_home_open(home, &h) == 0);
    return h;
}

static void fill(struct tw_wh_doc *d, const char *author_id, const char *uri, const char *text)
{
    memset(d, 0, sizeof *d);
    memcpy(d->author_id, author_id, TW_UUID_LEN + 1);
    d->category = "article";
    d->platform = "test";
    d->uri = uri;
    d->title = "T";
    d->content = text;
    d->content_len = strlen(text);
    uint8_t dg[TW_SHA256_LEN];
    tw_sha256(text, d->content_len, dg);
    tw_sha256_hex(dg, d->sha256);
    d->fetched_at = 1700000000;
    d->published_at = -5364662400; // 1800-01-01: dates before 1970 are negative
    d->extractor = "test/1";
}

struct seen {
    int n;
    char last_uri[256];
    char content[256];
    char author[64];
    int64_t published_at;
};

static int count_doc(void *ud, const struct tw_wh_doc *d)
{
    struct seen *s = ud;
    s->n++;
    snprintf(s->last_uri, sizeof s->last_uri, "%s", d->uri);
    snprintf(s->author, sizeof s->author, "%s", d->author);
    if (d->content)
        snprintf(s->content, sizeof s->content, "%.*s", (int)d->content_len, d->content);
    s->published_at = d->published_at;
    return 0;
}

static int count_change(void *ud, const struct tw_wh_change *c)
{
    tw_str *ops = ud;
    tw_str_puts(ops, c->op);
    tw_str_putc(ops, ' ');
    return 0;
}

static int count_author(void *ud, const struct tw_wh_author *a)
{
    tw_str *s = ud;
    tw_str_printf(s, "%s|%s|%s|%lld;", a->full_name, a->first_name, a->last_name,
                  (long long)a->n_documents);
    return 0;
}

static int sum_sig(void *ud, int64_t seq, const uint32_t *sig)
{
    uint64_t *acc = ud;
    *acc += (uint64_t)seq * 1000 + sig[0] + sig[3];
    return 0;
}

int main(void)
{
    char uuid[TW_UUID_LEN + 1], uuid2[TW_UUID_LEN + 1];
    tw_uuid_v4(uuid);
    tw_uuid_v4(uuid2);
    CHECK_EQ_INT(strlen(uuid), 36);
    CHECK(uuid[14] == '4' && strchr("89ab", uuid[19]) && uuid[8] == '-' && uuid[23] == '-');
    CHECK(strcmp(uuid, uuid2) != 0);

    char dir[64];
    struct tw_home *h = open_home(dir);
    char a1[TW_UUID_LEN + 1], a2[TW_UUID_LEN + 1], a3[TW_UUID_LEN + 1];
    bool created = false;
    CHECK_OK(tw_wh_author_ensure(h, "George Washington", a1, &created));
    CHECK(created);
    CHECK_OK(tw_wh_author_ensure(h, "  george WASHINGTON ", a2, &created));
    CHECK(!created && strcmp(a1, a2) == 0);
    CHECK_OK(tw_wh_author_ensure(h, "Cher", a3, &created));
    CHECK(created && strcmp(a1, a3) != 0);
    CHECK_EQ_INT(tw_wh_author_ensure(h, "   ", a3, NULL), TW_EINVAL);

    // Insert, then the same content again (unchanged), then new content (update, same id).
    struct tw_wh_doc d, e, f;
    enum tw_wh_put what;
    uint32_t sig[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    fill(&d, a1, "file:///a.txt", "Fellow-Citizens of the Senate");
    CHECK_OK(tw_wh_begin(h));
    CHECK_OK(tw_wh_doc_put(h, &d, sig, 8, &what));
    CHECK_OK(tw_wh_commit(h));
    CHECK_EQ_INT(what, TW_WH_INSERTED);
    CHECK(d.seq > 0 && strlen(d.id) == 36);
    fill(&e, a1, "file:///a.txt", "Fellow-Citizens of the Senate");
    CHECK_OK(tw_wh_doc_put(h, &e, NULL, 0, &what));
    CHECK_EQ_INT(what, TW_WH_UNCHANGED);
    CHECK(strcmp(e.id, d.id) == 0 && e.seq == d.seq);
    fill(&e, a1, "file:///a.txt", "Fellow-Citizens of the Senate and House");
    CHECK_OK(tw_wh_doc_put(h, &e, sig, 8, &what));
    CHECK_EQ_INT(what, TW_WH_UPDATED);
    CHECK(strcmp(e.id, d.id) == 0);
    fill(&f, a3, "https://x.test/b", "Believe");
    f.published_at = 0;
    CHECK_OK(tw_wh_doc_put(h, &f, NULL, 0, &what));
    CHECK_EQ_INT(what, TW_WH_INSERTED);

    // Lookups.
    struct tw_wh_doc k;
    CHECK_OK(tw_wh_doc_find_uri(h, "file:///a.txt", &k));
    CHECK(strcmp(k.id, d.id) == 0 && strcmp(k.sha256, e.sha256) == 0 && k.uri == NULL);
    CHECK_EQ_INT(tw_wh_doc_find_uri(h, "file:///none", &k), TW_ENOENT);
    CHECK_OK(tw_wh_doc_find_sha256(h, f.sha256, &k));
    CHECK(strcmp(k.id, f.id) == 0);
    CHECK_EQ_INT(tw_wh_doc_find_sha256(h, d.sha256, &k), TW_ENOENT); // replaced by the update
    CHECK_OK(tw_wh_doc_find_seq(h, f.seq, &k));
    CHECK(strcmp(k.id, f.id) == 0);
    struct seen s = { 0 };
    char prefix[9];
    memcpy(prefix, f.id, 8);
    prefix[8] = 0;
    CHECK_OK(tw_wh_doc_get(h, prefix, count_doc, &s));
    CHECK(s.n == 1 && strcmp(s.last_uri, "https://x.test/b") == 0);
    CHECK(strcmp(s.content, "Believe") == 0 && strcmp(s.author, "Cher") == 0);
    s.n = 0;
    CHECK_OK(tw_wh_doc_get(h, "file:///a.txt", count_doc, &s));
    CHECK(s.n == 1 && strcmp(s.content, "Fellow-Citizens of the Senate and House") == 0);
    CHECK(s.published_at == -5364662400);
    CHECK_EQ_INT(tw_wh_doc_get(h, "nope", count_doc, &s), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "nope") != NULL);

    // Listing and filters.
    s.n = 0;
    CHECK_OK(tw_wh_docs(h, &(struct tw_wh_filter){ 0 }, count_doc, &s));
    CHECK_EQ_INT(s.n, 2);
    s.n = 0;
    CHECK_OK(tw_wh_docs(h, &(struct tw_wh_filter){ .author = "Cher" }, count_doc, &s));
    CHECK(s.n == 1 && strcmp(s.author, "Cher") == 0);
    s.n = 0;
    CHECK_OK(tw_wh_docs(h, &(struct tw_wh_filter){ .category = "post" }, count_doc, &s));
    CHECK_EQ_INT(s.n, 0);
    int64_t nd = 0, na = 0;
    CHECK_OK(tw_wh_count(h, &nd, &na));
    CHECK(nd == 2 && na == 2);
    tw_str authors;
    tw_str_init(&authors);
    CHECK_OK(tw_wh_authors(h, count_author, &authors));
    CHECK_EQ_STR(tw_str_cstr(&authors), "Cher|Cher||1;George Washington|George|Washington|1;");
    tw_str_free(&authors);

    // Signatures round trip (only the updated one has 8 slots).
    uint64_t acc = 0;
    CHECK_OK(tw_wh_minhashes(h, 8, sum_sig, &acc));
    CHECK_EQ_INT(acc, (uint64_t)d.seq * 1000 + 1 + 4);

    // A rolled-back transaction leaves nothing.
    struct tw_wh_doc g;
    fill(&g, a1, "file:///rolled.txt", "never");
    CHECK_OK(tw_wh_begin(h));
    CHECK_OK(tw_wh_doc_put(h, &g, NULL, 0, &what));
    tw_wh_rollback(h);
    CHECK_EQ_INT(tw_wh_doc_find_uri(h, "file:///rolled.txt", &k), TW_ENOENT);

    // Delete, and the change log in order.
    CHECK_OK(tw_wh_doc_delete(h, f.id));
    CHECK_EQ_INT(tw_wh_doc_delete(h, f.id), TW_ENOENT);
    tw_str ops;
    tw_str_init(&ops);
    int64_t last = 0;
    CHECK_OK(tw_wh_changes(h, 0, count_change, &ops, &last));
    CHECK_EQ_STR(tw_str_cstr(&ops), "insert update insert delete ");
    tw_str_clear(&ops);
    CHECK_OK(tw_wh_changes(h, last - 1, count_change, &ops, NULL));
    CHECK_EQ_STR(tw_str_cstr(&ops), "delete ");
    tw_str_free(&ops);

    int64_t run = 0;
    CHECK_OK(tw_wh_ingest_begin(h, "[\"x\"]", &run));
    CHECK(run > 0);
    CHECK_OK(tw_wh_ingest_end(h, run, "{\"found\":0}"));

    tw_home_close(h);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_report("warehouse");
}

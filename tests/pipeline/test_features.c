// Tests the feature pipeline and search: a BM25-only run over a small warehouse (cleaned
// documents and chunks stored, sparse search with author and category filters), incremental
// runs from the change log (added, changed, deleted documents; a deleted document never comes
// back), lineage, a run with the golden BERT embedder (a new index version, every chunk
// embedded; dense search finds a verbatim sentence first, filters hold; hybrid fuses both),
// and the errors of searching before any run or densely without a model.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/mem.h"
#include "base/str.h"
#include "check.h"
#include "etl/ingest.h"
#include "pipeline/features.h"
#include "rag/retrieve.h"
#include "store/home.h"
#include "store/warehouse.h"

static char dir[64];

static int64_t count_rows(struct tw_home *h, const char *sql)
{
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(h->db, sql, -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void write_records(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static const char *records =
    "{\"who\": \"Ada Lovelace\", \"kind\": \"article\", \"url\": \"u:1\", \"title\": \"Engine\", "
    "\"text\": \"The Analytical Engine weaves algebraic patterns just as the Jacquard loom "
    "weaves flowers and leaves. It might act upon other things besides number.\"}\n"
    "{\"who\": \"Ada Lovelace\", \"kind\": \"post\", \"url\": \"u:2\", \"title\": \"Poetry\", "
    "\"text\": \"That brain of mine is something more than merely mortal, as time will show.\"}\n"
    "{\"who\": \"Charles Babbage\", \"kind\": \"article\", \"url\": \"u:3\", \"title\": "
    "\"Machinery\", \"text\": \"On the economy of machinery and manufactures: the division of "
    "labour applies to mental as well as to physical processes.\"}\n"
    "{\"who\": \"Charles Babbage\", \"kind\": \"article\", \"url\": \"u:4\", \"title\": "
    "\"Errors\", \"text\": \"Errors using inadequate data are much less than those using no "
    "data at all. The whole of the developments of analysis are now capable of being "
    "executed by machinery.\"}\n";

static void ingest(struct tw_home *h, const char *path)
{
    const char *src[] = { path };
    struct tw_ingest_options o = { .map = "author=who,content=text,uri=url,category=kind" };
    struct tw_ingest_summary s;
    tw_ingest_summary_init(&s);
    CHECK_OK(tw_ingest(h, src, 1, &o, &s));
    tw_ingest_summary_free(&s);
}

// tw_search on a retriever of the home's newest run.
static int search_home(struct tw_home *h, const char *q, const struct tw_search_options *o,
                       struct tw_search_hit **hits, size_t *n, enum tw_search_mode *used)
{
    tw_retriever *r;
    int rc = tw_retriever_open(h, 1, &r);
    if (rc == 0)
        rc = tw_search(r, q, o, hits, n, used);
    tw_retriever_free(r);
    return rc;
}

// Searches and returns the number of hits; *top gets the first hit's title ("" when none).
static size_t search(struct tw_home *h, const char *q, enum tw_search_mode mode,
                     const char *author, const char *category, char *top, bool *all_author)
{
    struct tw_search_options o = { .mode = mode, .k = 5, .author = author, .category = category };
    struct tw_search_hit *hits = NULL;
    size_t n = 0;
    enum tw_search_mode used;
    CHECK_OK(search_home(h, q, &o, &hits, &n, &used));
    snprintf(top, 64, "%s", n ? hits[0].title : "");
    if (all_author) {
        *all_author = true;
        for (size_t i = 0; i < n; i++)
            *all_author &= author && strcmp(hits[i].author, author) == 0;
    }
    tw_search_hits_free(hits, n);
    return n;
}

int main(void)
{
    strcpy(dir, "/tmp/twin-features-XXXXXX");
    REQUIRE(mkdtemp(dir));
    char home[300], path[300], top[64];
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(path, sizeof path, "%s/r.jsonl", dir);
    int created;
    REQUIRE(tw_home_init(home, &created) == 0);
    struct tw_home *h;
    REQUIRE(tw_home_open(home, &h) == 0);

    struct tw_search_hit *hits;
    size_t n;
    enum tw_search_mode used;
    struct tw_search_options so = { .k = 3 };
    CHECK_EQ_INT(search_home(h, "engine", &so, &hits, &n, &used), TW_ESTATE);
    CHECK(strstr(tw_error_msg(), "twin features") != NULL);

    write_records(path, records);
    ingest(h, path);
    struct tw_features_options fo = { .threads = 1 };
    struct tw_features_summary s;
    CHECK_OK(tw_features_run(h, &fo, &s));
    CHECK(!s.dense && s.version == 1 && s.processed == 4 && s.deleted == 0);
    CHECK_EQ_INT(s.documents_total, 4);
    CHECK(s.chunks_total >= 4);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM cleaned_documents"), 4);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM feature_runs WHERE vector_blob IS NULL"), 1);

    CHECK_EQ_INT(search(h, "Jacquard loom", TW_SEARCH_SPARSE, NULL, NULL, top, NULL), 1);
    CHECK_EQ_STR(top, "Engine");
    // Hybrid without a dense index is sparse; dense is an error that says what to do.
    CHECK(search(h, "machinery", TW_SEARCH_HYBRID, NULL, NULL, top, NULL) == 2);
    bool only = false;
    CHECK(search(h, "machinery data", TW_SEARCH_SPARSE, "charles babbage", NULL, top, &only) == 2);
    CHECK(search(h, "machinery", TW_SEARCH_SPARSE, "Ada Lovelace", NULL, top, NULL) == 0);
    CHECK(search(h, "mortal", TW_SEARCH_SPARSE, NULL, "article", top, NULL) == 0);
    CHECK(search(h, "mortal", TW_SEARCH_SPARSE, NULL, "post", top, NULL) == 1);
    so.mode = TW_SEARCH_DENSE;
    CHECK_EQ_INT(search_home(h, "engine", &so, &hits, &n, &used), TW_ESTATE);
    CHECK(strstr(tw_error_msg(), "--model") != NULL);

    // Nothing changed: nothing processed, same version.
    CHECK_OK(tw_features_run(h, &fo, &s));
    CHECK(s.processed == 0 && s.deleted == 0 && s.version == 1 && s.chunks_total >= 4);

    // One changed, one added, one deleted.
    write_records(path, "{\"who\": \"Ada Lovelace\", \"kind\": \"post\", \"url\": \"u:2\", "
                        "\"title\": \"Poetry\", \"text\": \"Imagination is the discovering "
                        "faculty, pre-eminently.\"}\n"
                        "{\"who\": \"Mary Somerville\", \"kind\": \"article\", \"url\": "
                        "\"u:5\", \"title\": \"Sciences\", \"text\": \"On the connexion of the "
                        "physical sciences.\"}\n");
    ingest(h, path);
    struct tw_wh_doc d;
    REQUIRE(tw_wh_doc_find_uri(h, "u:3", &d) == 0);
    CHECK_OK(tw_wh_doc_delete(h, d.id));
    CHECK_OK(tw_features_run(h, &fo, &s));
    CHECK_EQ_INT(s.processed, 2);
    CHECK_EQ_INT(s.deleted, 1);
    CHECK_EQ_INT(s.documents_total, 4);
    CHECK(search(h, "mortal", TW_SEARCH_SPARSE, NULL, NULL, top, NULL) == 0);
    CHECK(search(h, "discovering faculty", TW_SEARCH_SPARSE, NULL, NULL, top, NULL) == 1);
    CHECK(search(h, "division of labour", TW_SEARCH_SPARSE, NULL, NULL, top, NULL) == 0);
    CHECK(search(h, "connexion", TW_SEARCH_SPARSE, NULL, NULL, top, NULL) == 1);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM chunks WHERE document_id = '%s'", d.id);
    CHECK_EQ_INT(count_rows(h, sql), 0);
    CHECK_EQ_INT(count_rows(h, "SELECT json_array_length(lineage, '$.processed') FROM "
                               "feature_runs ORDER BY id DESC LIMIT 1"),
                 2);
    CHECK_EQ_INT(count_rows(h, "SELECT json_extract(lineage, '$.previous_run') FROM "
                               "feature_runs ORDER BY id DESC LIMIT 1"),
                 2);

    // The golden embedder: a new index version, everything embedded.
    const char *src = test_source_dir();
    char model[512];
    snprintf(model, sizeof model, "%s/tests/golden/models/bert_embed", src);
    fo.model = model;
    CHECK_OK(tw_features_run(h, &fo, &s));
    CHECK(s.dense && s.version == 2 && s.processed == 4);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM feature_runs WHERE vector_blob IS NOT "
                               "NULL AND dim > 0"),
                 1);
    // A query equal to a chunk's text embeds to that chunk's vector: cosine 1, first.
    const char *verbatim = "The Analytical Engine weaves algebraic patterns just as the Jacquard "
                           "loom weaves flowers and leaves. It might act upon other things "
                           "besides number.";
    CHECK(search(h, verbatim, TW_SEARCH_DENSE, NULL, NULL, top, NULL) >= 1);
    CHECK_EQ_STR(top, "Engine");
    CHECK(search(h, verbatim, TW_SEARCH_DENSE, "Mary Somerville", NULL, top, &only) == 1);
    CHECK(only && strcmp(top, "Sciences") == 0);
    CHECK(search(h, "Jacquard loom", TW_SEARCH_HYBRID, NULL, NULL, top, NULL) >= 1);
    CHECK_EQ_STR(top, "Engine");
    // Incremental with the same model keeps the version and embeds only what changed.
    write_records(path, "{\"who\": \"Mary Somerville\", \"kind\": \"article\", \"url\": "
                        "\"u:6\", \"title\": \"Molecular\", \"text\": \"On molecular and "
                        "microscopic science.\"}\n");
    ingest(h, path);
    CHECK_OK(tw_features_run(h, &fo, &s));
    CHECK(s.dense && s.version == 2 && s.processed == 1);
    CHECK(search(h, "On molecular and microscopic science.", TW_SEARCH_DENSE, NULL, NULL, top,
                 NULL) >= 1);
    CHECK_EQ_STR(top, "Molecular");

    tw_home_close(h);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_report("features");
}

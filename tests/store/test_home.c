// Tests the twin home: creation (atomic, idempotent), refusal of foreign folders, opening,
// schema versions (current, newer), the meta facts and the status figures.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/file.h"
#include "base/mem.h"
#include "check.h"
#include "store/home.h"
#include "store/schema.h"

static char root[256];

static void path(char *buf, const char *name)
{
    snprintf(buf, 512, "%s/%s", root, name);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int count_entries(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 0", dir);
    return system(cmd) == 0 ? 0 : 1;
}

static void test_create_and_reopen(void)
{
    char home[512], p[600];
    path(home, "a/b/home"); // missing parents are created
    int created = -1;
    CHECK_OK(tw_home_init(home, &created));
    CHECK_EQ_INT(created, 1);
    snprintf(p, sizeof p, "%s/twin.db", home);
    CHECK(tw_file_exists(p));
    snprintf(p, sizeof p, "%s/blobs", home);
    CHECK(is_dir(p));
    snprintf(p, sizeof p, "%s/.twin.db.init", home);
    CHECK(!tw_file_exists(p));
    // Nothing but the home is left beside it (the temporary build folder was renamed).
    snprintf(p, sizeof p, "test $(ls -A '%s/a/b' | wc -l) -eq 1", root);
    CHECK(system(p) == 0);

    CHECK_OK(tw_home_init(home, &created));
    CHECK_EQ_INT(created, 0);

    struct tw_home *h = NULL;
    CHECK_OK(tw_home_open(home, &h));
    REQUIRE(h);
    struct tw_home_stats st;
    CHECK_OK(tw_home_stats(h, &st));
    CHECK_EQ_INT(st.schema_version, tw_schema_count());
    CHECK(st.db_bytes > 0);
    CHECK_EQ_INT(st.blob_count, 0);
    char *by = tw_home_meta(h, "created_by");
    CHECK(by && strncmp(by, "twin ", 5) == 0);
    tw_free(by);
    char *at = tw_home_meta(h, "created_at");
    CHECK(at && strlen(at) == 20 && at[10] == 'T' && at[19] == 'Z');
    tw_free(at);
    CHECK(tw_home_meta(h, "no such key") == NULL);
    tw_home_close(h);

    // A blob is counted.
    snprintf(p, sizeof p, "%s/blobs/ab", home);
    CHECK_OK(tw_mkdir_p(p, 0755));
    snprintf(p, sizeof p, "%s/blobs/ab/cdef", home);
    CHECK_OK(tw_file_write_atomic(p, "12345", 5));
    CHECK_OK(tw_home_open(home, &h));
    CHECK_OK(tw_home_stats(h, &st));
    CHECK_EQ_INT(st.blob_count, 1);
    CHECK_EQ_INT(st.blob_bytes, 5);
    tw_home_close(h);
}

static void test_refusals(void)
{
    char dir[512], p[600];
    int created = -1;
    // A folder with someone else's files is not touched.
    path(dir, "foreign");
    CHECK_OK(tw_mkdir_p(dir, 0755));
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    CHECK_OK(tw_file_write_atomic(p, "mine", 4));
    CHECK_EQ_INT(tw_home_init(dir, &created), TW_EEXIST);
    CHECK(strstr(tw_error_msg(), dir) != NULL);
    CHECK_EQ_INT(created, 0);
    snprintf(p, sizeof p, "test $(ls -A '%s') = notes.txt", dir);
    CHECK(system(p) == 0);
    // A file in the way.
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    CHECK_EQ_INT(tw_home_init(p, &created), TW_EEXIST);
    CHECK(strstr(tw_error_msg(), "not a folder") != NULL);
    // Opening a folder that is not a home names it and says what to do.
    struct tw_home *h = NULL;
    CHECK_EQ_INT(tw_home_open(dir, &h), TW_ESTATE);
    CHECK(strstr(tw_error_msg(), "twin init") != NULL);
    // An empty folder becomes a home.
    path(dir, "empty");
    CHECK_OK(tw_mkdir_p(dir, 0755));
    CHECK_OK(tw_home_init(dir, &created));
    CHECK_EQ_INT(created, 1);
    CHECK_EQ_INT(count_entries(dir), 1);
}

static void test_schema_versions(void)
{
    char home[512], db_path[600];
    int created;
    path(home, "versions");
    CHECK_OK(tw_home_init(home, &created));
    snprintf(db_path, sizeof db_path, "%s/twin.db", home);
    sqlite3 *db;
    REQUIRE(sqlite3_open(db_path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    struct tw_home *h = NULL;
    CHECK_EQ_INT(tw_home_open(home, &h), TW_EUNSUPPORTED);
    CHECK(strstr(tw_error_msg(), "newer") != NULL);
    // A database that is not twin's (version 0) is refused, not migrated.
    path(home, "foreign_db");
    CHECK_OK(tw_mkdir_p(home, 0755));
    snprintf(db_path, sizeof db_path, "%s/twin.db", home);
    REQUIRE(sqlite3_open(db_path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(tw_home_open(home, &h), TW_EFORMAT);
}

// A crash during init leaves a "<home>.init-XXXXXX" folder; it is not a home, and the next
// init succeeds beside it.
static void test_leftover_from_crash(void)
{
    char home[512], left[600];
    path(home, "crashed");
    snprintf(left, sizeof left, "%s.init-AbC123/blobs", home);
    CHECK_OK(tw_mkdir_p(left, 0755));
    struct tw_home *h = NULL;
    CHECK(tw_home_open(home, &h) != 0);
    int created;
    CHECK_OK(tw_home_init(home, &created));
    CHECK_EQ_INT(created, 1);
    CHECK_OK(tw_home_open(home, &h));
    tw_home_close(h);
}

static void test_resolve(void)
{
    char buf[64];
    unsetenv("TWIN_HOME");
    CHECK_OK(tw_home_resolve(NULL, buf, sizeof buf));
    CHECK_EQ_STR(buf, "./twin-home");
    setenv("TWIN_HOME", "/env/home", 1);
    CHECK_OK(tw_home_resolve(NULL, buf, sizeof buf));
    CHECK_EQ_STR(buf, "/env/home");
    CHECK_OK(tw_home_resolve("/flag/home", buf, sizeof buf));
    CHECK_EQ_STR(buf, "/flag/home");
    CHECK_EQ_INT(tw_home_resolve("", buf, sizeof buf), TW_EINVAL);
    char longp[100];
    memset(longp, 'x', sizeof longp - 1);
    longp[99] = '\0';
    CHECK_EQ_INT(tw_home_resolve(longp, buf, sizeof buf), TW_EOVERFLOW);
    unsetenv("TWIN_HOME");
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/twin-test-home-XXXXXX");
    REQUIRE(mkdtemp(root));
    long live = tw_mem_live();
    test_create_and_reopen();
    test_refusals();
    test_schema_versions();
    test_leftover_from_crash();
    test_resolve();
    CHECK_EQ_INT(tw_mem_live(), live);
    CHECK_OK(tw_remove_tree(root));
    CHECK(!tw_file_exists(root));
    return check_report("home");
}

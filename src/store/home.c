// Implements home.h: resolving, creating (atomically) and opening the twin home, schema
// migrations in one transaction, and the figures `twin status` prints.
#define _XOPEN_SOURCE 700
#include "store/home.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "store/schema.h"
#include "twin_config.h"

#define DB_NAME "twin.db"

int tw_home_resolve(const char *flag, char *buf, size_t cap)
{
    const char *env = getenv("TWIN_HOME");
    const char *path = flag ? flag : (env && *env ? env : "./twin-home");
    if (!*path)
        return tw_error_set(TW_EINVAL, "--home: empty folder name");
    if (strlen(path) >= cap)
        return tw_error_set(TW_EOVERFLOW, "%s: home path too long", path);
    memcpy(buf, path, strlen(path) + 1);
    return 0;
}

int tw_home_db_fail(struct tw_home *h, const char *what)
{
    return tw_error_set(TW_EDB, "%s/twin.db: %s: %s", h->path, what, sqlite3_errmsg(h->db));
}

int tw_home_prepare(struct tw_home *h, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(h->db, sql, -1, st, NULL) != SQLITE_OK)
        return tw_home_db_fail(h, "preparing a statement");
    return 0;
}

static int db_error(sqlite3 *db, const char *file, const char *what)
{
    return tw_error_set(TW_EDB, "%s: %s: %s", file, what, db ? sqlite3_errmsg(db) : "no db");
}

static int db_exec(sqlite3 *db, const char *file, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        tw_error_set(TW_EDB, "%s: %s", file, err ? err : sqlite3_errmsg(db));
        sqlite3_free(err);
        return TW_EDB;
    }
    return 0;
}

static int db_open(const char *file, int create, sqlite3 **out)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    if (sqlite3_open_v2(file, &db, flags, NULL) != SQLITE_OK) {
        int rc = db_error(db, file, "cannot open");
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 5000);
    int rc = db_exec(db, file, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;");
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int user_version(sqlite3 *db, const char *file, int *out)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_error(db, file, "reading the schema version");
    int rc = sqlite3_step(st);
    *out = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : db_error(db, file, "reading the schema version");
}

// Applies the migrations from the database's version to the newest, all or none.
static int migrate(sqlite3 *db, const char *file)
{
    int rc = db_exec(db, file, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    int v;
    rc = user_version(db, file, &v);
    if (!rc && v > tw_schema_count())
        rc = tw_error_set(TW_EUNSUPPORTED,
                          "%s: schema version %d is newer than this twin's (%d): upgrade twin",
                          file, v, tw_schema_count());
    for (; !rc && v < tw_schema_count(); v++) {
        rc = db_exec(db, file, tw_schema_migration(v));
        if (rc)
            tw_error_prefix("migration %d -> %d", v, v + 1);
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (!rc)
            rc = db_exec(db, file, sql);
    }
    if (rc) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return db_exec(db, file, "COMMIT");
}

static int put_meta(sqlite3 *db, const char *file, const char *key, const char *value)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)", -1, &st,
                           NULL) != SQLITE_OK)
        return db_error(db, file, "writing meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(db, file, "writing meta");
    sqlite3_finalize(st);
    return rc;
}

// Builds a new database at a temporary name in dir and renames it to twin.db, so that a
// crash leaves either no twin.db or a complete one.
static int create_db(const char *dir)
{
    char tmp[PATH_MAX], final[PATH_MAX];
    int rc = tw_path_join(tmp, sizeof tmp, dir, "." DB_NAME ".init");
    if (!rc)
        rc = tw_path_join(final, sizeof final, dir, DB_NAME);
    if (rc)
        return rc;
    unlink(tmp); // the leftover of an earlier crash, if any
    sqlite3 *db = NULL;
    rc = db_open(tmp, 1, &db);
    if (!rc)
        rc = migrate(db, tmp);
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (!rc)
        rc = put_meta(db, tmp, "created_at", stamp);
    if (!rc)
        rc = put_meta(db, tmp, "created_by", "twin " TWIN_VERSION " (" TWIN_COMMIT ")");
    // Closing checkpoints the WAL into the file and removes it: one file to rename.
    if (db && sqlite3_close(db) != SQLITE_OK && !rc)
        rc = tw_error_set(TW_EDB, "%s: cannot close", tmp);
    if (!rc && rename(tmp, final) != 0)
        rc = tw_error_set(TW_EIO, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
    if (!rc)
        rc = tw_fsync_dir(dir);
    if (rc)
        unlink(tmp);
    return rc;
}

static int populate(const char *dir)
{
    char blobs[PATH_MAX];
    int rc = tw_path_join(blobs, sizeof blobs, dir, "blobs");
    if (!rc)
        rc = tw_mkdir_p(blobs, 0755);
    if (!rc)
        rc = create_db(dir);
    return rc;
}

// 1 when the folder has no entries but . and .., 0 when it has some, < 0 on error.
static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return tw_error_set(TW_EIO, "%s: cannot read the folder: %s", path, strerror(errno));
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

// A new home: built in "<path>.init-XXXXXX" beside it and renamed into place.
static int init_new(const char *path)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.init-XXXXXX", path) >= (int)sizeof tmp)
        return tw_error_set(TW_EOVERFLOW, "%s: home path too long", path);
    char parent[PATH_MAX];
    memcpy(parent, tmp, strlen(tmp) + 1);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        int rc = tw_mkdir_p(parent, 0755);
        if (rc)
            return rc;
    } else {
        strcpy(parent, slash ? "/" : ".");
    }
    if (!mkdtemp(tmp))
        return tw_error_set(TW_EIO, "%s: cannot create a folder: %s", tmp, strerror(errno));
    chmod(tmp, 0755);
    int rc = populate(tmp);
    if (!rc && rename(tmp, path) != 0)
        rc = tw_error_set(TW_EIO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (!rc)
        rc = tw_fsync_dir(parent);
    if (rc)
        tw_remove_tree(tmp);
    return rc;
}

int tw_home_init(const char *path, int *created)
{
    struct stat st;
    *created = 0;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT)
            return tw_error_set(TW_EIO, "%s: %s", path, strerror(errno));
        int rc = init_new(path);
        *created = rc == 0;
        return rc;
    }
    if (!S_ISDIR(st.st_mode))
        return tw_error_set(TW_EEXIST, "%s: exists and is not a folder", path);
    char db[PATH_MAX];
    int rc = tw_path_join(db, sizeof db, path, DB_NAME);
    if (rc)
        return rc;
    if (tw_file_exists(db)) {
        struct tw_home *h;
        rc = tw_home_open(path, &h); // migrates
        if (!rc)
            tw_home_close(h);
        return rc;
    }
    int empty = dir_is_empty(path);
    if (empty < 0)
        return empty;
    if (!empty)
        return tw_error_set(
            TW_EEXIST, "%s: the folder is not empty and holds no twin.db: not a twin home", path);
    rc = populate(path);
    *created = rc == 0;
    return rc;
}

int tw_home_open(const char *path, struct tw_home **out)
{
    char db_path[PATH_MAX];
    int rc = tw_path_join(db_path, sizeof db_path, path, DB_NAME);
    if (rc)
        return rc;
    if (!tw_file_exists(db_path))
        return tw_error_set(TW_ESTATE, "%s: not a twin home (no twin.db): run 'twin init'", path);
    struct tw_home *h = tw_calloc(1, sizeof *h);
    if (!h)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    h->path = tw_strdup(path);
    rc = h->path ? db_open(db_path, 0, &h->db) : tw_error_set(TW_ENOMEM, "out of memory");
    int v = 0;
    if (!rc)
        rc = user_version(h->db, db_path, &v);
    if (!rc && v == 0)
        rc = tw_error_set(TW_EFORMAT, "%s: not a twin database (schema version 0)", db_path);
    if (!rc)
        rc = migrate(h->db, db_path);
    if (rc) {
        tw_home_close(h);
        return rc;
    }
    *out = h;
    return 0;
}

void tw_home_close(struct tw_home *h)
{
    if (!h)
        return;
    sqlite3_close(h->db);
    tw_free(h->path);
    tw_free(h);
}

char *tw_home_meta(struct tw_home *h, const char *key)
{
    sqlite3_stmt *st;
    char *value = NULL;
    if (sqlite3_prepare_v2(h->db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL))
        return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        value = tw_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return value;
}

// nftw has no context argument: the walk's totals live here for the one walk in progress.
static _Thread_local int64_t walk_files, walk_bytes;

static int count_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    if (type == FTW_F) {
        walk_files++;
        walk_bytes += st->st_size;
    }
    return 0;
}

static int64_t file_size(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    if (tw_path_join(p, sizeof p, dir, name) || stat(p, &st) != 0)
        return 0;
    return st.st_size;
}

int tw_home_stats(struct tw_home *h, struct tw_home_stats *st)
{
    memset(st, 0, sizeof *st);
    int rc = user_version(h->db, h->path, &st->schema_version);
    if (rc)
        return rc;
    st->db_bytes = file_size(h->path, DB_NAME) + file_size(h->path, DB_NAME "-wal");
    char blobs[PATH_MAX];
    rc = tw_path_join(blobs, sizeof blobs, h->path, "blobs");
    if (rc)
        return rc;
    walk_files = walk_bytes = 0;
    if (tw_file_exists(blobs) && nftw(blobs, count_file, 16, FTW_PHYS) != 0)
        return tw_error_set(TW_EIO, "%s: cannot walk: %s", blobs, strerror(errno));
    st->blob_count = walk_files;
    st->blob_bytes = walk_bytes;
    return 0;
}

int tw_home_tables(struct tw_home *h, void (*fn)(void *ctx, const char *table, int64_t rows),
                   void *ctx)
{
    sqlite3_stmt *st;
    const char *sql = "SELECT name FROM sqlite_schema WHERE type = 'table' "
                      "AND name NOT LIKE 'sqlite_%' ORDER BY name";
    if (sqlite3_prepare_v2(h->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(h->db, h->path, "listing tables");
    int rc = 0, step;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        char *count_sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", name);
        sqlite3_stmt *cs;
        if (!count_sql || sqlite3_prepare_v2(h->db, count_sql, -1, &cs, NULL) != SQLITE_OK) {
            rc = db_error(h->db, h->path, "counting rows");
        } else {
            if (sqlite3_step(cs) == SQLITE_ROW)
                fn(ctx, name, sqlite3_column_int64(cs, 0));
            sqlite3_finalize(cs);
        }
        sqlite3_free(count_sql);
    }
    sqlite3_finalize(st);
    return rc;
}

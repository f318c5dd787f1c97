// The twin home: the folder that holds all state (ARCHITECTURE.md, "The twin home"):
// twin.db (SQLite, WAL, schema version in PRAGMA user_version) and blobs/. Creating a home is
// atomic (built in a temporary folder, then renamed), and opening one migrates its schema
// forward in one transaction.
#ifndef TW_STORE_HOME_H
#define TW_STORE_HOME_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct tw_home {
    char *path; // the home folder
    sqlite3 *db;
};

// Picks the home folder: `flag` (from --home) when not NULL, else $TWIN_HOME when set and
// non-empty, else "./twin-home". Writes it to buf (TW_EOVERFLOW when it does not fit).
int tw_home_resolve(const char *flag, char *buf, size_t cap);

// Creates a home at path, or brings an existing one to the current schema. *created is set
// to 1 when a new home was made. A folder that exists and holds other files but no twin.db
// is refused (TW_EEXIST), so init never mixes twin's files into someone else's folder.
int tw_home_init(const char *path, int *created);

// Opens an initialised home (TW_ESTATE naming the folder when it is not one), migrating an
// older schema; a newer schema is TW_EUNSUPPORTED. Free with tw_home_close.
int tw_home_open(const char *path, struct tw_home **out);
void tw_home_close(struct tw_home *h);

// Records the database's last error for an operation on the home's twin.db:
// "<home>/twin.db: <what>: <SQLite's message>". Returns TW_EDB.
int tw_home_db_fail(struct tw_home *h, const char *what);
// Prepares sql on the home's database; 0, or TW_EDB ("preparing a statement").
int tw_home_prepare(struct tw_home *h, const char *sql, sqlite3_stmt **st);

// A key of the meta table ("created_at", "created_by"): a tw_malloc'd copy, or NULL.
char *tw_home_meta(struct tw_home *h, const char *key);

// What a home holds, for `twin status`.
struct tw_home_stats {
    int schema_version;
    int64_t db_bytes;   // twin.db and its WAL
    int64_t blob_count; // files under blobs/
    int64_t blob_bytes;
};
int tw_home_stats(struct tw_home *h, struct tw_home_stats *st);

// Calls fn for each table of the schema with its row count, in name order.
int tw_home_tables(struct tw_home *h, void (*fn)(void *ctx, const char *table, int64_t rows),
                   void *ctx);

#endif

// The schema's migrations (store/schema.c): SQL that brings user_version i to i + 1.
#ifndef TW_STORE_SCHEMA_H
#define TW_STORE_SCHEMA_H

// The number of migrations: the newest schema version.
int tw_schema_count(void);
// The SQL of migration from -> from + 1, or NULL when there is none.
const char *tw_schema_migration(int from);

#endif

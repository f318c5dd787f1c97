// The warehouse and registry schema, as numbered migrations: migration i brings a database
// from user_version i to i + 1. Later capabilities append migrations; they never edit one
// that has shipped.
#include "store/schema.h"

#include <stddef.h>

static const char *const migrations[] = {
    // 0 -> 1: the home's own facts (who created it, when).
    "CREATE TABLE meta (\n"
    "  key   TEXT PRIMARY KEY,\n"
    "  value TEXT NOT NULL\n"
    ") STRICT;\n",
};

int tw_schema_count(void)
{
    return (int)(sizeof migrations / sizeof migrations[0]);
}

const char *tw_schema_migration(int from)
{
    if (from < 0 || from >= tw_schema_count())
        return NULL;
    return migrations[from];
}

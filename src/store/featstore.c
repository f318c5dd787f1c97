// Implements featstore.h: reads of the feature_runs table (schema.c, migration 2 -> 3).
#include "store/featstore.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"

int tw_feature_run_latest(struct tw_home *h, struct tw_feature_run *p)
{
    memset(p, 0, sizeof *p);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->db,
                           "SELECT id, version, change_seq, model, bm25_blob, vector_blob "
                           "FROM feature_runs ORDER BY id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return tw_home_db_fail(h, "reading feature runs");
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        p->id = sqlite3_column_int64(st, 0);
        p->version = sqlite3_column_int64(st, 1);
        p->change_seq = sqlite3_column_int64(st, 2);
        const char *m = (const char *)sqlite3_column_text(st, 3);
        if (m && !(p->model = tw_strdup(m)))
            rc = tw_error_set(TW_ENOMEM, "out of memory");
        snprintf(p->bm25, sizeof p->bm25, "%s", (const char *)sqlite3_column_text(st, 4));
        const char *v = (const char *)sqlite3_column_text(st, 5);
        snprintf(p->vectors, sizeof p->vectors, "%s", v ? v : "");
    }
    sqlite3_finalize(st);
    return rc;
}

void tw_feature_run_free(struct tw_feature_run *r)
{
    tw_free(r->model);
    r->model = NULL;
}

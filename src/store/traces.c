// Implements traces.h over the traces table (schema.c, migration 3 -> 4).
#include "store/traces.h"

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "base/error.h"

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

int tw_trace_put(struct tw_home *h, struct tw_trace *t)
{
    json_error_t e;
    json_t *d = t->detail ? json_loads(t->detail, 0, &e) : NULL;
    bool object = json_is_object(d);
    json_decref(d);
    if (!object)
        return tw_error_set(TW_EINVAL, "trace: the detail is not a JSON object");
    if (t->created_at == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        t->created_at = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->db,
                           "INSERT INTO traces (created_at, kind, question, answer, model, "
                           "embed_model, prompt_tokens, completion_tokens, total_ms, status, "
                           "detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                           -1, &st, NULL) != SQLITE_OK)
        return tw_home_db_fail(h, "traces: preparing");
    sqlite3_bind_int64(st, 1, t->created_at);
    bind_text(st, 2, t->kind ? t->kind : "ask");
    bind_text(st, 3, t->question ? t->question : "");
    bind_text(st, 4, t->answer);
    bind_text(st, 5, t->model);
    bind_text(st, 6, t->embed_model);
    sqlite3_bind_int64(st, 7, t->prompt_tokens);
    sqlite3_bind_int64(st, 8, t->completion_tokens);
    sqlite3_bind_double(st, 9, t->total_ms);
    bind_text(st, 10, t->status ? t->status : "ok");
    bind_text(st, 11, t->detail);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : tw_home_db_fail(h, "traces: writing");
    sqlite3_finalize(st);
    if (rc == 0)
        t->id = sqlite3_last_insert_rowid(h->db);
    return rc;
}

#define COLUMNS                                                                   \
    "id, created_at, kind, question, answer, model, embed_model, prompt_tokens, " \
    "completion_tokens, total_ms, status, detail"

static int each_row(struct tw_home *h, sqlite3_stmt *st,
                    int (*fn)(void *, const struct tw_trace *), void *ud, int *rows)
{
    int step, rc = 0;
    *rows = 0;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct tw_trace t = {
            .id = sqlite3_column_int64(st, 0),
            .created_at = sqlite3_column_int64(st, 1),
            .kind = (const char *)sqlite3_column_text(st, 2),
            .question = (const char *)sqlite3_column_text(st, 3),
            .answer = (const char *)sqlite3_column_text(st, 4),
            .model = (const char *)sqlite3_column_text(st, 5),
            .embed_model = (const char *)sqlite3_column_text(st, 6),
            .prompt_tokens = sqlite3_column_int64(st, 7),
            .completion_tokens = sqlite3_column_int64(st, 8),
            .total_ms = sqlite3_column_double(st, 9),
            .status = (const char *)sqlite3_column_text(st, 10),
            .detail = (const char *)sqlite3_column_text(st, 11),
        };
        (*rows)++;
        rc = fn(ud, &t);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "traces: reading");
    return rc;
}

int tw_traces_list(struct tw_home *h, const char *kind, int64_t limit,
                   int (*fn)(void *ud, const struct tw_trace *t), void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->db,
                           "SELECT " COLUMNS " FROM traces WHERE ?1 IS NULL OR kind = ?1 "
                           "ORDER BY id DESC LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return tw_home_db_fail(h, "traces: preparing");
    bind_text(st, 1, kind);
    sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
    int rows, rc = each_row(h, st, fn, ud, &rows);
    sqlite3_finalize(st);
    return rc;
}

int tw_trace_get(struct tw_home *h, int64_t id, int (*fn)(void *ud, const struct tw_trace *t),
                 void *ud)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h->db, "SELECT " COLUMNS " FROM traces WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK)
        return tw_home_db_fail(h, "traces: preparing");
    sqlite3_bind_int64(st, 1, id);
    int rows, rc = each_row(h, st, fn, ud, &rows);
    sqlite3_finalize(st);
    if (rc == 0 && rows == 0)
        rc = tw_error_set(TW_ENOENT, "%s: no trace %lld (twin traces ls lists them)", h->path,
                          (long long)id);
    return rc;
}

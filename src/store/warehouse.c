// Implements warehouse.h over SQLite: prepared statements per call (the warehouse is written
// a document at a time, and a prepare costs microseconds), the change log written in the same
// transaction as the change it records.
#define _GNU_SOURCE
#include "store/warehouse.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "base/error.h"
#include "base/mem.h"

void tw_uuid_v4(char out[TW_UUID_LEN + 1])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); // version 4 (RFC 9562, section 5.4)
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); // variant 10
    snprintf(out, TW_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static int exec(struct tw_home *h, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(h->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        tw_error_set(TW_EDB, "%s/twin.db: %s: %s", h->path, sql, err ? err : "error");
        sqlite3_free(err);
        return TW_EDB;
    }
    return 0;
}

int tw_wh_begin(struct tw_home *h)
{
    return exec(h, "BEGIN IMMEDIATE");
}

int tw_wh_commit(struct tw_home *h)
{
    return exec(h, "COMMIT");
}

void tw_wh_rollback(struct tw_home *h)
{
    if (!sqlite3_get_autocommit(h->db))
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
}

static void bind_text(sqlite3_stmt *st, int i, const char *z)
{
    if (z)
        sqlite3_bind_text(st, i, z, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static void copy_id(char *dst, const char *src, size_t cap)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

// ---- authors

int tw_wh_author_ensure(struct tw_home *h, const char *full_name, char id[TW_UUID_LEN + 1],
                        bool *created)
{
    while (*full_name == ' ')
        full_name++;
    size_t len = strlen(full_name);
    while (len > 0 && full_name[len - 1] == ' ')
        len--;
    if (len == 0)
        return tw_error_set(TW_EINVAL, "author: empty name");
    char *name = tw_malloc(len + 1);
    if (!name)
        return tw_error_set(TW_ENOMEM, "out of memory");
    memcpy(name, full_name, len);
    name[len] = 0;
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h, "SELECT id FROM authors WHERE full_name = ?1", &st);
    if (rc)
        goto out;
    bind_text(st, 1, name);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        copy_id(id, col_text(st, 0), TW_UUID_LEN + 1);
        sqlite3_finalize(st);
        if (created)
            *created = false;
        goto out;
    }
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        rc = tw_home_db_fail(h, "reading authors");
        goto out;
    }
    // First name: everything before the last word; last name: the last word.
    char *sp = strrchr(name, ' ');
    char *first = sp ? tw_strndup(name, (size_t)(sp - name)) : tw_strdup(name);
    const char *last = sp ? sp + 1 : "";
    if (!first) {
        rc = tw_error_set(TW_ENOMEM, "out of memory");
        goto out;
    }
    tw_uuid_v4(id);
    rc = tw_home_prepare(h,
                         "INSERT INTO authors (id, full_name, first_name, last_name, created_at) "
                         "VALUES (?1, ?2, ?3, ?4, ?5)",
                         &st);
    if (!rc) {
        bind_text(st, 1, id);
        bind_text(st, 2, name);
        bind_text(st, 3, first);
        bind_text(st, 4, last);
        sqlite3_bind_int64(st, 5, (int64_t)time(NULL));
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = tw_home_db_fail(h, "adding an author");
        sqlite3_finalize(st);
    }
    tw_free(first);
    if (!rc && created)
        *created = true;
out:
    tw_free(name);
    return rc;
}

int tw_wh_authors(struct tw_home *h, int (*fn)(void *ud, const struct tw_wh_author *a), void *ud)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h,
                             "SELECT a.id, a.full_name, a.first_name, a.last_name, "
                             "(SELECT count(*) FROM documents d WHERE d.author_id = a.id) "
                             "FROM authors a ORDER BY a.full_name",
                             &st);
    if (rc)
        return rc;
    int step;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct tw_wh_author a;
        copy_id(a.id, col_text(st, 0), sizeof a.id);
        a.full_name = col_text(st, 1);
        a.first_name = col_text(st, 2);
        a.last_name = col_text(st, 3);
        a.n_documents = sqlite3_column_int64(st, 4);
        rc = fn(ud, &a);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "reading authors");
    sqlite3_finalize(st);
    return rc;
}

// ---- documents

static int log_change(struct tw_home *h, const char *doc_id, const char *op)
{
    sqlite3_stmt *st;
    int rc =
        tw_home_prepare(h, "INSERT INTO changes (document_id, op, at) VALUES (?1, ?2, ?3)", &st);
    if (rc)
        return rc;
    bind_text(st, 1, doc_id);
    bind_text(st, 2, op);
    sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = tw_home_db_fail(h, "writing the change log");
    sqlite3_finalize(st);
    return rc;
}

// Fills the key fields of out from a row of (id, seq, author_id, sha256).
static int find_one(struct tw_home *h, const char *sql, const char *text, int64_t num,
                    struct tw_wh_doc *out)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h, sql, &st);
    if (rc)
        return rc;
    if (text)
        bind_text(st, 1, text);
    else
        sqlite3_bind_int64(st, 1, num);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        copy_id(out->id, col_text(st, 0), sizeof out->id);
        out->seq = sqlite3_column_int64(st, 1);
        copy_id(out->author_id, col_text(st, 2), sizeof out->author_id);
        copy_id(out->sha256, col_text(st, 3), sizeof out->sha256);
    } else if (step == SQLITE_DONE) {
        rc = TW_ENOENT;
    } else {
        rc = tw_home_db_fail(h, "reading documents");
    }
    sqlite3_finalize(st);
    return rc;
}

int tw_wh_doc_find_uri(struct tw_home *h, const char *uri, struct tw_wh_doc *out)
{
    return find_one(h, "SELECT id, seq, author_id, sha256 FROM documents WHERE uri = ?1", uri, 0,
                    out);
}

int tw_wh_doc_find_sha256(struct tw_home *h, const char *sha256, struct tw_wh_doc *out)
{
    return find_one(h,
                    "SELECT id, seq, author_id, sha256 FROM documents WHERE sha256 = ?1 "
                    "ORDER BY seq LIMIT 1",
                    sha256, 0, out);
}

int tw_wh_doc_find_seq(struct tw_home *h, int64_t seq, struct tw_wh_doc *out)
{
    return find_one(h, "SELECT id, seq, author_id, sha256 FROM documents WHERE seq = ?1", NULL,
                    seq, out);
}

static void bind_sig(sqlite3_stmt *st, int i, const uint32_t *sig, size_t n, uint8_t *buf)
{
    if (!sig) {
        sqlite3_bind_null(st, i);
        return;
    }
    for (size_t k = 0; k < n; k++)
        for (int b = 0; b < 4; b++)
            buf[4 * k + (size_t)b] = (uint8_t)(sig[k] >> (8 * b));
    sqlite3_bind_blob(st, i, buf, (int)(4 * n), SQLITE_STATIC);
}

// Whether the stored row for d's URI differs from d in what a put writes.
static int differs(struct tw_home *h, const struct tw_wh_doc *d, bool *out)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(
        h,
        "SELECT sha256 = ?2 AND author_id = ?3 AND category = ?4 AND platform = ?5 "
        "AND title IS ?6 AND metadata = ?7 AND published_at IS ?8 "
        "FROM documents WHERE uri = ?1",
        &st);
    if (rc)
        return rc;
    bind_text(st, 1, d->uri);
    bind_text(st, 2, d->sha256);
    bind_text(st, 3, d->author_id);
    bind_text(st, 4, d->category);
    bind_text(st, 5, d->platform);
    bind_text(st, 6, d->title);
    bind_text(st, 7, d->metadata ? d->metadata : "{}");
    if (d->published_at)
        sqlite3_bind_int64(st, 8, d->published_at);
    else
        sqlite3_bind_null(st, 8);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0) == 0;
    else
        rc = tw_home_db_fail(h, "reading documents");
    sqlite3_finalize(st);
    return rc;
}

int tw_wh_doc_put(struct tw_home *h, struct tw_wh_doc *d, const uint32_t *minhash, size_t n,
                  enum tw_wh_put *result)
{
    struct tw_wh_doc old;
    int rc = tw_wh_doc_find_uri(h, d->uri, &old);
    if (rc && rc != TW_ENOENT)
        return rc;
    bool update = rc == 0;
    if (update) {
        bool changed = false;
        if ((rc = differs(h, d, &changed)))
            return rc;
        if (!changed) {
            memcpy(d->id, old.id, sizeof d->id);
            d->seq = old.seq;
            *result = TW_WH_UNCHANGED;
            return 0;
        }
        memcpy(d->id, old.id, sizeof d->id);
    } else {
        tw_uuid_v4(d->id);
    }
    uint8_t *sigbuf = minhash ? tw_malloc(4 * n + 1) : NULL;
    if (minhash && !sigbuf)
        return tw_error_set(TW_ENOMEM, "out of memory");
    sqlite3_stmt *st;
    rc = tw_home_prepare(
        h,
        update ? "UPDATE documents SET author_id = ?2, category = ?3, platform = ?4, "
                 "title = ?5, content = ?6, sha256 = ?7, metadata = ?8, "
                 "published_at = ?9, fetched_at = ?10, extractor = ?11, minhash = ?12 "
                 "WHERE uri = ?13 RETURNING seq"
               : "INSERT INTO documents (id, author_id, category, platform, title, "
                 "content, sha256, metadata, published_at, fetched_at, extractor, "
                 "minhash, uri) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                 "?12, ?13) RETURNING seq",
        &st);
    if (rc) {
        tw_free(sigbuf);
        return rc;
    }
    if (!update)
        bind_text(st, 1, d->id);
    bind_text(st, 2, d->author_id);
    bind_text(st, 3, d->category);
    bind_text(st, 4, d->platform);
    bind_text(st, 5, d->title);
    sqlite3_bind_text(st, 6, d->content, (int)d->content_len, SQLITE_STATIC);
    bind_text(st, 7, d->sha256);
    bind_text(st, 8, d->metadata ? d->metadata : "{}");
    if (d->published_at)
        sqlite3_bind_int64(st, 9, d->published_at);
    else
        sqlite3_bind_null(st, 9);
    sqlite3_bind_int64(st, 10, d->fetched_at);
    bind_text(st, 11, d->extractor);
    bind_sig(st, 12, minhash, n, sigbuf);
    bind_text(st, 13, d->uri);
    if (sqlite3_step(st) == SQLITE_ROW)
        d->seq = sqlite3_column_int64(st, 0);
    else
        rc = tw_home_db_fail(h, update ? "updating a document" : "adding a document");
    sqlite3_finalize(st);
    tw_free(sigbuf);
    if (!rc)
        rc = log_change(h, d->id, update ? "update" : "insert");
    if (!rc)
        *result = update ? TW_WH_UPDATED : TW_WH_INSERTED;
    return rc;
}

int tw_wh_doc_delete(struct tw_home *h, const char *id)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h, "DELETE FROM documents WHERE id = ?1", &st);
    if (rc)
        return rc;
    bind_text(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = tw_home_db_fail(h, "deleting a document");
    else if (sqlite3_changes(h->db) == 0)
        rc = tw_error_set(TW_ENOENT, "document %s: not in the warehouse", id);
    sqlite3_finalize(st);
    return rc ? rc : log_change(h, id, "delete");
}

#define DOC_COLUMNS                                                                         \
    "d.id, d.seq, d.author_id, a.full_name, d.category, d.platform, d.uri, d.title, "       \
    "d.sha256, d.metadata, coalesce(d.published_at, 0), d.fetched_at, d.extractor, length(" \
    "CAST(d.content AS BLOB)) "

// Fills d from a row of DOC_COLUMNS, plus content at column 14 when present.
static void read_doc(sqlite3_stmt *st, bool with_content, struct tw_wh_doc *d)
{
    memset(d, 0, sizeof *d);
    copy_id(d->id, col_text(st, 0), sizeof d->id);
    d->seq = sqlite3_column_int64(st, 1);
    copy_id(d->author_id, col_text(st, 2), sizeof d->author_id);
    d->author = col_text(st, 3);
    d->category = col_text(st, 4);
    d->platform = col_text(st, 5);
    d->uri = col_text(st, 6);
    d->title = col_text(st, 7);
    copy_id(d->sha256, col_text(st, 8), sizeof d->sha256);
    d->metadata = col_text(st, 9);
    d->published_at = sqlite3_column_int64(st, 10);
    d->fetched_at = sqlite3_column_int64(st, 11);
    d->extractor = col_text(st, 12);
    d->content_len = (size_t)sqlite3_column_int64(st, 13);
    if (with_content) {
        d->content = col_text(st, 14);
        d->content_len = (size_t)sqlite3_column_bytes(st, 14);
    }
}

static int each_doc(struct tw_home *h, sqlite3_stmt *st, bool with_content,
                    int (*fn)(void *ud, const struct tw_wh_doc *d), void *ud, int64_t *n)
{
    int rc = 0, step;
    *n = 0;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct tw_wh_doc d;
        read_doc(st, with_content, &d);
        (*n)++;
        rc = fn(ud, &d);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "reading documents");
    return rc;
}

int tw_wh_doc_get(struct tw_home *h, const char *id_or_uri,
                  int (*fn)(void *ud, const struct tw_wh_doc *d), void *ud)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h,
                             "SELECT " DOC_COLUMNS ", d.content FROM documents d "
                             "JOIN authors a ON a.id = d.author_id "
                             "WHERE d.id = ?1 OR d.uri = ?1 OR (length(?1) >= 8 AND "
                             "substr(d.id, 1, length(?1)) = lower(?1)) LIMIT 2",
                             &st);
    if (rc)
        return rc;
    bind_text(st, 1, id_or_uri);
    // Two matches can only come from a prefix: refuse rather than pick one.
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        struct tw_wh_doc d;
        read_doc(st, true, &d);
        bool exact = strcmp(d.id, id_or_uri) == 0 || strcmp(d.uri, id_or_uri) == 0;
        if (!exact && sqlite3_step(st) == SQLITE_ROW)
            rc = tw_error_set(TW_EINVAL, "document %s: the prefix matches several documents",
                              id_or_uri);
        else {
            sqlite3_reset(st);
            sqlite3_step(st); // the first row again: its text pointers are current
            read_doc(st, true, &d);
            rc = fn(ud, &d);
        }
    } else if (step == SQLITE_DONE) {
        rc = tw_error_set(TW_ENOENT, "document %s: not in the warehouse", id_or_uri);
    } else {
        rc = tw_home_db_fail(h, "reading documents");
    }
    sqlite3_finalize(st);
    return rc;
}

int tw_wh_docs(struct tw_home *h, const struct tw_wh_filter *f,
               int (*fn)(void *ud, const struct tw_wh_doc *d), void *ud)
{
    sqlite3_stmt *st;
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT " DOC_COLUMNS "%s FROM documents d JOIN authors a ON a.id = d.author_id "
             "WHERE (?1 IS NULL OR a.full_name = ?1) AND (?2 IS NULL OR d.category = ?2) "
             "ORDER BY a.full_name, coalesce(d.published_at, 0), d.uri LIMIT ?3",
             f->with_content ? ", d.content" : "");
    int rc = tw_home_prepare(h, sql, &st);
    if (rc)
        return rc;
    bind_text(st, 1, f->author);
    bind_text(st, 2, f->category);
    sqlite3_bind_int64(st, 3, f->limit > 0 ? f->limit : -1);
    int64_t n;
    rc = each_doc(h, st, f->with_content, fn, ud, &n);
    sqlite3_finalize(st);
    return rc;
}

int tw_wh_count(struct tw_home *h, int64_t *documents, int64_t *authors)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(
        h, "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM authors)", &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW) {
        *documents = sqlite3_column_int64(st, 0);
        *authors = sqlite3_column_int64(st, 1);
    } else {
        rc = tw_home_db_fail(h, "counting documents");
    }
    sqlite3_finalize(st);
    return rc;
}

int tw_wh_minhashes(struct tw_home *h, size_t n,
                    int (*fn)(void *ud, int64_t seq, const uint32_t *sig), void *ud)
{
    uint32_t *sig = tw_malloc_array(n ? n : 1, sizeof *sig);
    if (!sig)
        return tw_error_set(TW_ENOMEM, "out of memory");
    sqlite3_stmt *st;
    int rc =
        tw_home_prepare(h, "SELECT seq, minhash FROM documents WHERE minhash IS NOT NULL", &st);
    int step = SQLITE_DONE;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *b = sqlite3_column_blob(st, 1);
        if ((size_t)sqlite3_column_bytes(st, 1) != 4 * n)
            continue;
        for (size_t k = 0; k < n; k++)
            sig[k] = (uint32_t)b[4 * k] | (uint32_t)b[4 * k + 1] << 8 |
                     (uint32_t)b[4 * k + 2] << 16 | (uint32_t)b[4 * k + 3] << 24;
        rc = fn(ud, sqlite3_column_int64(st, 0), sig);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "reading signatures");
    sqlite3_finalize(st);
    tw_free(sig);
    return rc;
}

int tw_wh_changes(struct tw_home *h, int64_t after,
                  int (*fn)(void *ud, const struct tw_wh_change *c), void *ud, int64_t *last)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(
        h, "SELECT seq, document_id, op, at FROM changes WHERE seq > ?1 ORDER BY seq", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, after);
    int step;
    int64_t seen = after;
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct tw_wh_change c = { .seq = sqlite3_column_int64(st, 0),
                                  .document_id = col_text(st, 1),
                                  .op = col_text(st, 2),
                                  .at = sqlite3_column_int64(st, 3) };
        seen = c.seq;
        rc = fn(ud, &c);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "reading the change log");
    sqlite3_finalize(st);
    if (last)
        *last = seen;
    return rc;
}

int tw_wh_ingest_begin(struct tw_home *h, const char *sources_json, int64_t *id)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(
        h, "INSERT INTO ingests (started_at, sources) VALUES (?1, ?2) RETURNING id", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)time(NULL));
    bind_text(st, 2, sources_json);
    if (sqlite3_step(st) == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else
        rc = tw_home_db_fail(h, "recording the ingest");
    sqlite3_finalize(st);
    return rc;
}

int tw_wh_ingest_end(struct tw_home *h, int64_t id, const char *summary_json)
{
    sqlite3_stmt *st;
    int rc =
        tw_home_prepare(h, "UPDATE ingests SET finished_at = ?2, summary = ?3 WHERE id = ?1", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
    bind_text(st, 3, summary_json);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = tw_home_db_fail(h, "recording the ingest");
    sqlite3_finalize(st);
    return rc;
}

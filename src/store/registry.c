// Implements registry.h over the runs, run_steps, run_metrics, models and model_files tables
// (schema.c, migration 4 -> 5) and the blob store: a model's files are staged under blobs/
// first, then one transaction assigns the version, writes the rows and renames the folder
// HOME/models/NAME/vN into place, so a failure at any point leaves no row and no folder.
#define _GNU_SOURCE // getrandom, realpath
#include "store/registry.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/sha256.h"
#include "base/vec.h"
#include "store/blob.h"
#include "twin_config.h"

#define TWIN_BUILD "twin " TWIN_VERSION " (" TWIN_COMMIT ")"

// ---- shared helpers

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int exec(struct tw_home *h, const char *sql)
{
    return sqlite3_exec(h->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : tw_home_db_fail(h, sql);
}

static void rollback(struct tw_home *h)
{
    if (!sqlite3_get_autocommit(h->db))
        sqlite3_exec(h->db, "ROLLBACK", NULL, NULL, NULL);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void bind_real(sqlite3_stmt *st, int i, double v)
{
    if (isnan(v))
        sqlite3_bind_null(st, i);
    else
        sqlite3_bind_double(st, i, v);
}

static double column_real(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

static const char *column_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

// 0 when text is NULL or a JSON object; TW_EINVAL naming `what` otherwise.
static int check_object(const char *what, const char *text)
{
    if (!text)
        return 0;
    json_t *j;
    int rc = tw_json_parse(what, text, strlen(text), &j);
    if (rc)
        return rc == TW_ENOMEM ? rc : TW_EINVAL;
    bool object = json_is_object(j);
    json_decref(j);
    return object ? 0 : tw_error_set(TW_EINVAL, "%s: expected a JSON object", what);
}

// 1 when s is 1..max characters of [A-Za-z0-9] and `extra`, not starting with '.'.
static int valid_word(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i]))
            return 0;
    return 1;
}

// ---- runs

const char *tw_run_status_name(enum tw_run_status s)
{
    static const char *const names[] = { "running", "finished", "failed", "interrupted" };
    return (unsigned)s < 4 ? names[s] : "unknown";
}

int tw_run_begin(struct tw_home *h, const struct tw_run_start *s, char id[TW_RUN_ID_LEN])
{
    if (!s->kind || !valid_word(s->kind, 32, "-_"))
        return tw_error_set(TW_EINVAL, "run kind \"%.40s\": expected 1-32 letters, digits, - or _",
                            s->kind ? s->kind : "");
    int rc = check_object("run params", s->params);
    if (!rc)
        rc = check_object("run dataset", s->dataset);
    if (rc)
        return rc;
    int64_t t = now_ms();
    time_t secs = (time_t)(t / 1000);
    struct tm tm;
    char stamp[20];
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", gmtime_r(&secs, &tm));
    uint8_t r[4] = { 0 };
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        r[0] = (uint8_t)t, r[1] = (uint8_t)(t >> 8), r[2] = (uint8_t)getpid(); // still unique
    char new_id[TW_RUN_ID_LEN];
    snprintf(new_id, sizeof new_id, "run-%.15s-%02x%02x%02x%02x", stamp, r[0], r[1], r[2], r[3]);
    sqlite3_stmt *st;
    if ((rc = tw_home_prepare(h,
                              "INSERT INTO runs (id, kind, status, started_at, params, "
                              "base_model, dataset, twin_version) "
                              "VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7)",
                              &st)) != 0)
        return rc;
    bind_text(st, 1, new_id);
    bind_text(st, 2, s->kind);
    sqlite3_bind_int64(st, 3, t);
    bind_text(st, 4, s->params ? s->params : "{}");
    bind_text(st, 5, s->base_model);
    bind_text(st, 6, s->dataset);
    bind_text(st, 7, TWIN_BUILD);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : tw_home_db_fail(h, "runs: recording a new run");
    sqlite3_finalize(st);
    if (!rc)
        memcpy(id, new_id, TW_RUN_ID_LEN);
    return rc;
}

// Why an UPDATE or INSERT of a run changed nothing: TW_ENOENT or TW_ESTATE, with a message.
static int run_state_error(struct tw_home *h, const char *run_id)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h, "SELECT status FROM runs WHERE id = ?1", &st);
    if (rc)
        return rc;
    bind_text(st, 1, run_id);
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = tw_error_set(TW_ESTATE, "%s: run %s has ended (%s)", h->path, run_id,
                          column_text(st, 0));
    else
        rc = tw_error_set(TW_ENOENT, "%s: no run %s (twin runs ls lists them)", h->path, run_id);
    sqlite3_finalize(st);
    return rc;
}

int tw_run_log_step(struct tw_home *h, const char *run_id, const struct tw_run_step *s)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h,
                             "INSERT INTO run_steps (run_id, step, epoch, loss, lr, grad_norm, "
                             "tokens_per_s, mem_bytes, elapsed_s, eval_loss) "
                             "SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM runs "
                             "WHERE id = ?1 AND status = 'running'",
                             &st);
    if (rc)
        return rc;
    bind_text(st, 1, run_id);
    sqlite3_bind_int64(st, 2, s->step);
    bind_real(st, 3, s->epoch);
    bind_real(st, 4, s->loss);
    bind_real(st, 5, s->lr);
    bind_real(st, 6, s->grad_norm);
    bind_real(st, 7, s->tokens_per_s);
    if (s->mem_bytes >= 0)
        sqlite3_bind_int64(st, 8, s->mem_bytes);
    bind_real(st, 9, s->elapsed_s);
    bind_real(st, 10, s->eval_loss);
    int step = sqlite3_step(st);
    if (step == SQLITE_CONSTRAINT)
        rc = tw_error_set(TW_EEXIST, "%s: run %s: step %lld is logged already", h->path, run_id,
                          (long long)s->step);
    else if (step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "run_steps: writing");
    else if (sqlite3_changes(h->db) == 0)
        rc = run_state_error(h, run_id);
    sqlite3_finalize(st);
    return rc;
}

int tw_run_set_metric(struct tw_home *h, const char *run_id, const char *name, double value)
{
    if (!name || !*name || !isfinite(value))
        return tw_error_set(TW_EINVAL, "run %s: metric \"%s\": needs a name and a finite value",
                            run_id, name ? name : "");
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h,
                             "INSERT OR REPLACE INTO run_metrics (run_id, name, value) "
                             "SELECT id, ?2, ?3 FROM runs WHERE id = ?1",
                             &st);
    if (rc)
        return rc;
    bind_text(st, 1, run_id);
    bind_text(st, 2, name);
    sqlite3_bind_double(st, 3, value);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = tw_home_db_fail(h, "run_metrics: writing");
    else if (sqlite3_changes(h->db) == 0)
        rc = run_state_error(h, run_id);
    sqlite3_finalize(st);
    return rc;
}

// Runs an UPDATE of one run (?1 its id, ?2 and ?3 the texts, ?4 now, where the statement has
// them); when it changed no row, TW_ENOENT or TW_ESTATE says why.
static int update_run(struct tw_home *h, const char *sql, const char *run_id, const char *a,
                      const char *b)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h, sql, &st);
    if (rc)
        return rc;
    bind_text(st, 1, run_id);
    bind_text(st, 2, a);
    if (sqlite3_bind_parameter_count(st) >= 3)
        bind_text(st, 3, b);
    if (sqlite3_bind_parameter_count(st) == 4)
        sqlite3_bind_int64(st, 4, now_ms());
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = tw_home_db_fail(h, "runs: writing");
    else if (sqlite3_changes(h->db) == 0)
        rc = run_state_error(h, run_id);
    sqlite3_finalize(st);
    return rc;
}

int tw_run_set_output(struct tw_home *h, const char *run_id, const char *model_ref)
{
    return update_run(h, "UPDATE runs SET output_model = ?2 WHERE id = ?1", run_id, model_ref,
                      NULL);
}

int tw_run_finish(struct tw_home *h, const char *run_id, enum tw_run_status status,
                  const char *message)
{
    if (status != TW_RUN_FINISHED && status != TW_RUN_FAILED && status != TW_RUN_INTERRUPTED)
        return tw_error_set(TW_EINVAL, "run %s: a run ends finished, failed or interrupted",
                            run_id);
    return update_run(h,
                      "UPDATE runs SET status = ?2, message = ?3, finished_at = ?4 "
                      "WHERE id = ?1 AND status = 'running'",
                      run_id, tw_run_status_name(status), message);
}

#define RUN_COLUMNS                                                                            \
    "r.id, r.kind, r.status, r.started_at, r.finished_at, r.params, r.base_model, r.dataset, " \
    "r.output_model, r.message, r.twin_version, "                                              \
    "(SELECT json_group_object(name, value) FROM run_metrics WHERE run_id = r.id), "           \
    "(SELECT count(*) FROM run_steps WHERE run_id = r.id), "                                   \
    "(SELECT loss FROM run_steps WHERE run_id = r.id ORDER BY step DESC LIMIT 1)"

static int each_run(struct tw_home *h, sqlite3_stmt *st, int (*fn)(void *, const struct tw_run *),
                    void *ud, int *rows)
{
    int step, rc = 0;
    *rows = 0;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct tw_run r = {
            .id = column_text(st, 0),
            .kind = column_text(st, 1),
            .status = column_text(st, 2),
            .started_at = sqlite3_column_int64(st, 3),
            .finished_at = sqlite3_column_int64(st, 4),
            .params = column_text(st, 5),
            .base_model = column_text(st, 6),
            .dataset = column_text(st, 7),
            .output_model = column_text(st, 8),
            .message = column_text(st, 9),
            .twin_version = column_text(st, 10),
            .metrics = column_text(st, 11),
            .n_steps = sqlite3_column_int64(st, 12),
            .last_loss = column_real(st, 13),
        };
        (*rows)++;
        rc = fn(ud, &r);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "runs: reading");
    return rc;
}

int tw_runs_list(struct tw_home *h, const char *kind, int64_t limit,
                 int (*fn)(void *ud, const struct tw_run *r), void *ud)
{
    sqlite3_stmt *st;
    int rows, rc = tw_home_prepare(h,
                                   "SELECT " RUN_COLUMNS " FROM runs r WHERE ?1 IS NULL OR "
                                   "r.kind = ?1 ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?2",
                                   &st);
    if (rc)
        return rc;
    bind_text(st, 1, kind);
    sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
    rc = each_run(h, st, fn, ud, &rows);
    sqlite3_finalize(st);
    return rc;
}

static int each_step(struct tw_home *h, const char *id,
                     int (*fn)(void *ud, const struct tw_run_step *s), void *ud)
{
    sqlite3_stmt *st;
    int step, rc = tw_home_prepare(h,
                                   "SELECT step, epoch, loss, lr, grad_norm, tokens_per_s, "
                                   "mem_bytes, elapsed_s, eval_loss FROM run_steps "
                                   "WHERE run_id = ?1 ORDER BY step",
                                   &st);
    if (rc)
        return rc;
    bind_text(st, 1, id);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct tw_run_step s = {
            .step = sqlite3_column_int64(st, 0),
            .epoch = column_real(st, 1),
            .loss = column_real(st, 2),
            .lr = column_real(st, 3),
            .grad_norm = column_real(st, 4),
            .tokens_per_s = column_real(st, 5),
            .mem_bytes =
                sqlite3_column_type(st, 6) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 6),
            .elapsed_s = column_real(st, 7),
            .eval_loss = column_real(st, 8),
        };
        rc = fn(ud, &s);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "run_steps: reading");
    sqlite3_finalize(st);
    return rc;
}

int tw_run_get(struct tw_home *h, const char *id, int (*fn)(void *ud, const struct tw_run *r),
               int (*step_fn)(void *ud, const struct tw_run_step *s), void *ud)
{
    sqlite3_stmt *st;
    int rows, rc = tw_home_prepare(h, "SELECT " RUN_COLUMNS " FROM runs r WHERE r.id = ?1", &st);
    if (rc)
        return rc;
    bind_text(st, 1, id);
    rc = each_run(h, st, fn, ud, &rows);
    sqlite3_finalize(st);
    if (rc == 0 && rows == 0)
        return tw_error_set(TW_ENOENT, "%s: no run %s (twin runs ls lists them)", h->path, id);
    if (rc == 0 && step_fn)
        rc = each_step(h, id, step_fn, ud);
    return rc;
}

// ---- references

static int model_path(const struct tw_home *h, const char *name, int64_t version, char *buf,
                      size_t cap)
{
    int n = version > 0
                ? snprintf(buf, cap, "%s/models/%s/v%lld", h->path, name, (long long)version)
                : snprintf(buf, cap, "%s/models/%s", h->path, name);
    if (n < 0 || (size_t)n >= cap)
        return tw_error_set(TW_EOVERFLOW, "%s: model path too long", h->path);
    return 0;
}

static int valid_name(const char *name)
{
    return valid_word(name, TW_MODEL_NAME_MAX, "._-");
}

// Splits "NAME[:VERSION]" into name and the version part (NULL when absent).
static int split_ref(const char *ref, char name[TW_MODEL_NAME_MAX + 1], const char **ver)
{
    const char *colon = strchr(ref, ':');
    size_t n = colon ? (size_t)(colon - ref) : strlen(ref);
    *ver = colon ? colon + 1 : NULL;
    if (n > TW_MODEL_NAME_MAX)
        return 0;
    memcpy(name, ref, n);
    name[n] = '\0';
    if (!valid_name(name) || (colon && !**ver))
        return 0;
    return 1;
}

// A version part: "latest" (0), "promoted" (-1), "3" or "v3" (3); 0 on success.
static int parse_version(const char *ver, int64_t *out)
{
    if (!ver || strcmp(ver, "latest") == 0) {
        *out = 0;
        return 0;
    }
    if (strcmp(ver, "promoted") == 0) {
        *out = -1;
        return 0;
    }
    const char *d = ver[0] == 'v' ? ver + 1 : ver;
    char *end;
    errno = 0;
    long long v = strtoll(d, &end, 10);
    if (!isdigit((unsigned char)*d) || *end || errno || v < 1)
        return TW_EINVAL;
    *out = v;
    return 0;
}

int tw_registry_is_ref(const char *s)
{
    char name[TW_MODEL_NAME_MAX + 1];
    const char *ver;
    int64_t v;
    if (strcmp(s, "@promoted") == 0)
        return 1;
    return split_ref(s, name, &ver) && parse_version(ver, &v) == 0;
}

static int ref_fill(const struct tw_home *h, const char *name, int64_t version,
                    struct tw_model_ref *out)
{
    snprintf(out->name, sizeof out->name, "%s", name);
    out->version = version;
    return model_path(h, name, version, out->path, sizeof out->path);
}

int tw_registry_promoted(struct tw_home *h, struct tw_model_ref *out)
{
    sqlite3_stmt *st;
    int rc =
        tw_home_prepare(h, "SELECT name, version FROM models WHERE stage = 'production'", &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = ref_fill(h, column_text(st, 0), sqlite3_column_int64(st, 1), out);
    else
        rc = tw_error_set(TW_ENOENT,
                          "%s: no promoted model: register one (twin models add PATH --name "
                          "NAME) and promote it (twin models promote NAME[:VERSION])",
                          h->path);
    sqlite3_finalize(st);
    return rc;
}

int tw_registry_resolve(struct tw_home *h, const char *ref, struct tw_model_ref *out)
{
    char name[TW_MODEL_NAME_MAX + 1];
    const char *ver;
    int64_t want;
    if (strcmp(ref, "@promoted") == 0)
        return tw_registry_promoted(h, out);
    if (!split_ref(ref, name, &ver) || parse_version(ver, &want) != 0)
        return tw_error_set(TW_EINVAL,
                            "model reference \"%.80s\": expected NAME, NAME:VERSION, "
                            "NAME:latest, NAME:promoted or @promoted",
                            ref);
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h,
                             "SELECT max(version), "
                             "max(CASE WHEN version = ?2 THEN version END), "
                             "max(CASE WHEN stage = 'production' THEN version END) "
                             "FROM models WHERE name = ?1",
                             &st);
    if (rc)
        return rc;
    bind_text(st, 1, name);
    sqlite3_bind_int64(st, 2, want);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = tw_home_db_fail(h, "models: reading");
    } else if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
        rc = tw_error_set(TW_ENOENT, "%s: no model named %s in the registry (twin models ls)",
                          h->path, name);
    } else {
        int col = want == 0 ? 0 : want > 0 ? 1 : 2;
        if (sqlite3_column_type(st, col) != SQLITE_NULL)
            rc = ref_fill(h, name, sqlite3_column_int64(st, col), out);
        else if (want > 0)
            rc = tw_error_set(TW_ENOENT, "%s: model %s has no version %lld (the newest is %lld)",
                              h->path, name, (long long)want,
                              (long long)sqlite3_column_int64(st, 0));
        else
            rc = tw_error_set(TW_ENOENT, "%s: no version of %s is promoted", h->path, name);
    }
    sqlite3_finalize(st);
    return rc;
}

int tw_registry_set_stage(struct tw_home *h, const char *ref, const char *stage,
                          struct tw_model_ref *out)
{
    static const char *const stages[] = { "none", "staging", "production", "archived" };
    bool known = false;
    for (size_t i = 0; i < 4; i++)
        known = known || strcmp(stage, stages[i]) == 0;
    if (!known)
        return tw_error_set(TW_EINVAL,
                            "stage \"%.40s\": expected none, staging, production or "
                            "archived",
                            stage);
    struct tw_model_ref r;
    int rc = exec(h, "BEGIN IMMEDIATE");
    if (!rc)
        rc = tw_registry_resolve(h, ref, &r);
    // The one in production before moves to archived (MLflow's transition does the same).
    if (!rc && strcmp(stage, "production") == 0)
        rc = exec(h, "UPDATE models SET stage = 'archived' WHERE stage = 'production'");
    sqlite3_stmt *st = NULL;
    if (!rc)
        rc = tw_home_prepare(h, "UPDATE models SET stage = ?3 WHERE name = ?1 AND version = ?2",
                             &st);
    if (!rc) {
        bind_text(st, 1, r.name);
        sqlite3_bind_int64(st, 2, r.version);
        bind_text(st, 3, stage);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = tw_home_db_fail(h, "models: setting the stage");
    }
    sqlite3_finalize(st);
    if (!rc)
        rc = exec(h, "COMMIT");
    if (rc) {
        rollback(h);
        return rc;
    }
    if (out)
        *out = r;
    return 0;
}

int tw_registry_promote(struct tw_home *h, const char *ref, struct tw_model_ref *out)
{
    return tw_registry_set_stage(h, ref, "production", out);
}

// ---- copying files

// Copies src to dst (created, or truncated when it exists, with mode), synced; hex (when not
// NULL) receives the SHA-256 of the bytes copied.
static int copy_file(const char *src, const char *dst, mode_t mode, char hex[TW_BLOB_HEX])
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return tw_error_set(errno == ENOENT ? TW_ENOENT : TW_EIO, "%s: cannot open: %s", src,
                            strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (out < 0) {
        close(in);
        return tw_error_set(TW_EIO, "%s: cannot create: %s", dst, strerror(errno));
    }
    size_t cap = 1 << 20;
    char *buf = tw_malloc(cap);
    struct tw_sha256 sha;
    tw_sha256_init(&sha);
    int rc = buf ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    while (!rc) {
        ssize_t n = read(in, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = tw_error_set(TW_EIO, "%s: cannot read: %s", src, strerror(errno));
        if (n <= 0)
            break;
        tw_sha256_update(&sha, buf, (size_t)n);
        for (ssize_t off = 0; !rc && off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w <= 0 && !(w < 0 && errno == EINTR))
                rc = tw_error_set(TW_EIO, "%s: cannot write: %s", dst,
                                  w < 0 ? strerror(errno) : "no progress");
            off += w > 0 ? w : 0;
        }
    }
    if (!rc && fsync(out) != 0)
        rc = tw_error_set(TW_EIO, "%s: cannot sync: %s", dst, strerror(errno));
    if (close(out) != 0 && !rc)
        rc = tw_error_set(TW_EIO, "%s: cannot close: %s", dst, strerror(errno));
    close(in);
    tw_free(buf);
    if (!rc && hex) {
        uint8_t d[TW_SHA256_LEN];
        tw_sha256_final(&sha, d);
        tw_sha256_hex(d, hex);
    }
    return rc;
}

// Makes the parent folders of `file` (a relative path with '/') under dir.
static int make_parents(const char *dir, const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash)
        return 0;
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%.*s", dir, (int)(slash - file), file) >= (int)sizeof p)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", dir);
    return tw_mkdir_p(p, 0755);
}

// ---- the files of a model folder

// Where blob hex lives (blob.h's layout), whether it is there or not.
static bool blob_exists(const struct tw_home *h, const char *hex, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/blobs/%.2s/%s", h->path, hex, hex + 2);
    return n > 0 && (size_t)n < cap && tw_file_exists(buf);
}

struct src_file {
    char *file; // relative to the folder: "config.json", "1_Pooling/config.json"
    char *tmp;  // its copy under blobs/ until it is moved into the store; NULL: none
    char hex[TW_BLOB_HEX];
    int64_t bytes;
    bool created; // its blob was new: removed again if the registration fails
};

static void src_files_free(tw_vec *files)
{
    for (size_t i = 0; i < files->len; i++) {
        struct src_file *f = tw_vec_at(files, i);
        if (f->tmp)
            unlink(f->tmp);
        tw_free(f->tmp);
        tw_free(f->file);
    }
    tw_vec_free(files);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

// The files a registered model keeps: configs, weights, tokenizers, templates (not README.md,
// PyTorch .bin or .pth weights, ONNX or GGUF files, nor anything hidden).
static bool wanted(const char *name)
{
    static const char *const ext[] = { ".json", ".safetensors", ".txt", ".model", ".jinja" };
    if (name[0] == '.')
        return false;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (ends_with(name, ext[i]))
            return true;
    return false;
}

// sentence-transformers' module folders: "1_Pooling", "2_Normalize", ...
static bool module_folder(const char *name)
{
    size_t i = 0;
    while (isdigit((unsigned char)name[i]))
        i++;
    return i > 0 && name[i] == '_';
}

static int add_file(tw_vec *files, const char *file)
{
    struct src_file f = { .file = tw_strdup(file) };
    if (!f.file || tw_vec_push(files, &f) != 0) {
        tw_free(f.file);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

// Lists the wanted files of dir/sub (sub "" for the top, where module folders are entered).
static int scan(const char *dir, const char *sub, tw_vec *files)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s%s%s", dir, *sub ? "/" : "", sub) >= (int)sizeof path)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", dir);
    DIR *d = opendir(path);
    if (!d)
        return tw_error_set(errno == ENOENT ? TW_ENOENT : TW_EIO, "%s: cannot read the folder: %s",
                            path, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char rel[PATH_MAX], full[PATH_MAX];
        struct stat st;
        snprintf(rel, sizeof rel, "%s%s%s", sub, *sub ? "/" : "", e->d_name);
        if (snprintf(full, sizeof full, "%s/%s", dir, rel) >= (int)sizeof full) {
            rc = tw_error_set(TW_EOVERFLOW, "%s: path too long", path);
        } else if (stat(full, &st) != 0) {
            // A link to nothing (a half-downloaded cache) is a missing file, if it is wanted.
            if (wanted(e->d_name))
                rc = tw_error_set(TW_ENOENT, "%s: cannot read: %s", full, strerror(errno));
        } else if (S_ISDIR(st.st_mode) && !*sub && module_folder(e->d_name)) {
            rc = scan(dir, e->d_name, files);
        } else if (S_ISREG(st.st_mode) && wanted(e->d_name)) {
            rc = add_file(files, rel);
        }
    }
    closedir(d);
    return rc;
}

static bool has_file(const tw_vec *files, const char *name)
{
    for (size_t i = 0; i < files->len; i++)
        if (strcmp(((struct src_file *)tw_vec_at(files, i))->file, name) == 0)
            return true;
    return false;
}

// Every shard that model.safetensors.index.json names is in files.
static int check_shards(const char *dir, const tw_vec *files)
{
    char p[PATH_MAX];
    json_t *j, *map;
    int rc = tw_path_join(p, sizeof p, dir, "model.safetensors.index.json");
    if (!rc)
        rc = tw_json_load_file(p, 64 << 20, &j);
    if (rc)
        return rc;
    rc = tw_json_get_object(j, p, "weight_map", &map);
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v)
    {
        if (rc)
            break;
        const char *shard = json_string_value(v);
        if (!shard)
            rc = tw_error_set(TW_EFORMAT, "%s: weight_map: \"%s\": expected a string", p, key);
        else if (!has_file(files, shard))
            rc = tw_error_set(TW_ENOENT, "%s/%s: missing (model.safetensors.index.json names it)",
                              dir, shard);
    }
    json_decref(j);
    return rc;
}

static int cmp_files(const void *a, const void *b)
{
    return strcmp(((const struct src_file *)a)->file, ((const struct src_file *)b)->file);
}

// The files of the model folder dir, sorted, checked to make a model or an adapter.
static int collect(const char *dir, tw_vec *files)
{
    int rc = scan(dir, "", files);
    if (rc)
        return rc;
    if (files->len > 1)
        qsort(files->data, files->len, sizeof(struct src_file), cmp_files);
    bool weights = has_file(files, "model.safetensors");
    if (has_file(files, "model.safetensors.index.json")) {
        if ((rc = check_shards(dir, files)) != 0)
            return rc;
        weights = true;
    }
    bool model = has_file(files, "config.json") && weights;
    bool adapter =
        has_file(files, "adapter_config.json") && has_file(files, "adapter_model.safetensors");
    if (!model && !adapter)
        return tw_error_set(TW_ENOENT,
                            "%s: not a model folder: it needs config.json and model.safetensors "
                            "(or model.safetensors.index.json and its shards), or a PEFT adapter "
                            "(adapter_config.json and adapter_model.safetensors)",
                            dir);
    return 0;
}

// Hashes each file; those whose blob is not in the store yet are copied under blobs/.
static int stage(const struct tw_home *h, const char *dir, tw_vec *files)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < files->len; i++) {
        struct src_file *f = tw_vec_at(files, i);
        char src[PATH_MAX], blob[PATH_MAX];
        struct tw_mmap m = { 0 };
        if ((rc = tw_path_join(src, sizeof src, dir, f->file)) != 0 ||
            (rc = tw_mmap_open(&m, src)) != 0)
            break;
        uint8_t d[TW_SHA256_LEN];
        tw_sha256(m.data, m.len, d);
        tw_sha256_hex(d, f->hex);
        f->bytes = (int64_t)m.len;
        tw_mmap_close(&m);
        if (blob_exists(h, f->hex, blob, sizeof blob))
            continue; // stored already: no copy
        char tmp[PATH_MAX];
        if ((rc = tw_blob_tmp_path(h, tmp, sizeof tmp)) != 0)
            break;
        if (!(f->tmp = tw_strdup(tmp))) {
            unlink(tmp);
            rc = tw_error_set(TW_ENOMEM, "out of memory");
            break;
        }
        rc = copy_file(src, f->tmp, 0600, NULL);
    }
    return rc;
}

// Moves the staged copies into the store (the hex of what was copied is the name). Runs
// inside the registering transaction, so that no other registration stores or links a blob
// between this one's store and its undo_store.
static int store(const struct tw_home *h, tw_vec *files)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < files->len; i++) {
        struct src_file *f = tw_vec_at(files, i);
        char blob[PATH_MAX];
        if (!f->tmp)
            continue;
        f->created = !blob_exists(h, f->hex, blob, sizeof blob);
        rc = tw_blob_put_file(h, f->tmp, f->hex);
        tw_free(f->tmp);
        f->tmp = NULL;
    }
    return rc;
}

// Removes the blobs that store created: the home is as it was before the registration.
static void undo_store(const struct tw_home *h, tw_vec *files)
{
    for (size_t i = 0; i < files->len; i++) {
        struct src_file *f = tw_vec_at(files, i);
        char blob[PATH_MAX];
        if (f->created && blob_exists(h, f->hex, blob, sizeof blob))
            unlink(blob);
        f->created = false;
    }
}

// Puts file (a blob) into the folder dir: a hard link, else a relative symbolic link (the
// folder sits at HOME/models/NAME/X, three levels under the home), else a copy.
static int place(const struct tw_home *h, const char *dir, const char *file, const char *hex)
{
    char blob[PATH_MAX], dst[PATH_MAX], rel[PATH_MAX];
    int rc = tw_blob_path(h, hex, blob, sizeof blob);
    if (!rc)
        rc = tw_path_join(dst, sizeof dst, dir, file);
    if (!rc)
        rc = make_parents(dir, file);
    if (rc)
        return rc;
    if (link(blob, dst) == 0)
        return 0;
    size_t n = 0;
    n += (size_t)snprintf(rel, sizeof rel, "../../../");
    for (const char *s = file; (s = strchr(s, '/')) != NULL; s++)
        n += (size_t)snprintf(rel + n, sizeof rel - n, "../");
    snprintf(rel + n, sizeof rel - n, "blobs/%.2s/%s", hex, hex + 2);
    if (symlink(rel, dst) == 0)
        return 0;
    return copy_file(blob, dst, 0444, NULL);
}

// ---- registering

struct add_ctx {
    struct tw_home *h;
    const struct tw_model_meta *meta;
    const tw_vec *files;
    const char *source;
    int64_t bytes;
};

static int insert_rows(struct add_ctx *c, int64_t version)
{
    const struct tw_model_meta *m = c->meta;
    sqlite3_stmt *st, *fs = NULL;
    int rc = tw_home_prepare(c->h,
                             "INSERT INTO models (name, version, kind, created_at, run_id, base, "
                             "dataset_sha256, params, metrics, n_params, dtype, bytes, source, "
                             "twin_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                             "?12, ?13, ?14)",
                             &st);
    if (rc)
        return rc;
    bind_text(st, 1, m->name);
    sqlite3_bind_int64(st, 2, version);
    bind_text(st, 3, m->kind);
    sqlite3_bind_int64(st, 4, now_ms());
    bind_text(st, 5, m->run_id);
    bind_text(st, 6, m->base);
    bind_text(st, 7, m->dataset_sha256);
    bind_text(st, 8, m->params ? m->params : "{}");
    bind_text(st, 9, m->metrics ? m->metrics : "{}");
    if (m->n_params > 0)
        sqlite3_bind_int64(st, 10, m->n_params);
    bind_text(st, 11, m->dtype);
    sqlite3_bind_int64(st, 12, c->bytes);
    bind_text(st, 13, c->source);
    bind_text(st, 14, TWIN_BUILD);
    if (sqlite3_step(st) == SQLITE_DONE)
        rc = 0;
    else if (sqlite3_extended_errcode(c->h->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = tw_error_set(TW_ENOENT, "%s: no run %s (the model's run_id)", c->h->path, m->run_id);
    else
        rc = tw_home_db_fail(c->h, "models: writing");
    sqlite3_finalize(st);
    int64_t id = sqlite3_last_insert_rowid(c->h->db);
    if (!rc)
        rc = tw_home_prepare(c->h,
                             "INSERT INTO model_files (model_id, file, blob, bytes) "
                             "VALUES (?1, ?2, ?3, ?4)",
                             &fs);
    for (size_t i = 0; !rc && i < c->files->len; i++) {
        const struct src_file *f = tw_vec_at(c->files, i);
        sqlite3_reset(fs);
        sqlite3_bind_int64(fs, 1, id);
        bind_text(fs, 2, f->file);
        bind_text(fs, 3, f->hex);
        sqlite3_bind_int64(fs, 4, f->bytes);
        if (sqlite3_step(fs) != SQLITE_DONE)
            rc = tw_home_db_fail(c->h, "model_files: writing");
    }
    sqlite3_finalize(fs);
    return rc;
}

static int next_version(struct tw_home *h, const char *name, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h, "SELECT coalesce(max(version), 0) + 1 FROM models WHERE name = ?1",
                             &st);
    if (rc)
        return rc;
    bind_text(st, 1, name);
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = tw_home_db_fail(h, "models: reading");
    sqlite3_finalize(st);
    return rc;
}

// Builds the version's folder at a temporary name in name_dir: tmp receives it.
static int build_folder(struct add_ctx *c, const char *name_dir, int64_t version, char *tmp)
{
    if (snprintf(tmp, PATH_MAX, "%s/.v%lld.tmp-XXXXXX", name_dir, (long long)version) >= PATH_MAX)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", name_dir);
    if (!mkdtemp(tmp)) {
        int rc = tw_error_set(TW_EIO, "%s: cannot create a folder: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        return rc;
    }
    chmod(tmp, 0755);
    int rc = 0;
    for (size_t i = 0; !rc && i < c->files->len; i++) {
        const struct src_file *f = tw_vec_at(c->files, i);
        rc = place(c->h, tmp, f->file, f->hex);
    }
    return rc;
}

// In one transaction: the blobs stored, the next version, its folder (built at a temporary
// name), the rows, the folder renamed into place, commit. Undone whole on a failure.
static int commit_version(struct add_ctx *c, tw_vec *files, const char *name_dir,
                          struct tw_model_ref *out)
{
    struct tw_home *h = c->h;
    char tmp[PATH_MAX] = "";
    bool renamed = false;
    int64_t version = 0;
    int rc = exec(h, "BEGIN IMMEDIATE");
    if (!rc)
        rc = store(h, files);
    if (!rc)
        rc = next_version(h, c->meta->name, &version);
    if (!rc)
        rc = ref_fill(h, c->meta->name, version, out);
    if (!rc)
        rc = build_folder(c, name_dir, version, tmp);
    if (!rc)
        rc = insert_rows(c, version);
    // A folder of that version without a row is what a crash before COMMIT left: replaced.
    if (!rc)
        rc = tw_remove_tree(out->path);
    if (!rc && rename(tmp, out->path) != 0)
        rc = tw_error_set(TW_EIO, "%s: cannot rename to %s: %s", tmp, out->path, strerror(errno));
    renamed = !rc;
    if (!rc)
        rc = exec(h, "COMMIT");
    if (rc) {
        rollback(h);
        if (renamed)
            tw_remove_tree(out->path);
        else if (tmp[0])
            tw_remove_tree(tmp);
        undo_store(h, files);
        return rc;
    }
    return tw_fsync_dir(name_dir);
}

static int check_meta(const struct tw_model_meta *m)
{
    static const char *const kinds[] = { "base",   "pretrain", "sft",     "dpo",
                                         "merged", "adapter",  "imported" };
    if (!m->name || !valid_name(m->name))
        return tw_error_set(TW_EINVAL,
                            "model name \"%.80s\": expected 1-%d letters, digits, '.', '-' or "
                            "'_', not starting with '.'",
                            m->name ? m->name : "", TW_MODEL_NAME_MAX);
    bool known = false;
    for (size_t i = 0; m->kind && i < sizeof kinds / sizeof kinds[0]; i++)
        known = known || strcmp(m->kind, kinds[i]) == 0;
    if (!known)
        return tw_error_set(TW_EINVAL,
                            "model kind \"%.40s\": expected base, pretrain, sft, dpo, merged, "
                            "adapter or imported",
                            m->kind ? m->kind : "");
    int rc = check_object("model params", m->params);
    return rc ? rc : check_object("model metrics", m->metrics);
}

int tw_registry_add(struct tw_home *h, const char *dir, const struct tw_model_meta *meta,
                    struct tw_model_ref *out)
{
    int rc = check_meta(meta);
    if (rc)
        return rc;
    tw_vec files;
    tw_vec_init(&files, sizeof(struct src_file));
    struct add_ctx c = { .h = h, .meta = meta, .files = &files };
    char models[PATH_MAX], name_dir[PATH_MAX], *source = realpath(dir, NULL);
    c.source = source ? source : dir;
    struct tw_model_ref ref;
    rc = collect(dir, &files);
    if (!rc)
        rc = stage(h, dir, &files);
    for (size_t i = 0; !rc && i < files.len; i++)
        c.bytes += ((struct src_file *)tw_vec_at(&files, i))->bytes;
    if (!rc)
        rc = tw_path_join(models, sizeof models, h->path, "models");
    if (!rc)
        rc = model_path(h, meta->name, 0, name_dir, sizeof name_dir);
    bool made_models = !rc && !tw_file_exists(models);
    bool made_name = !rc && !tw_file_exists(name_dir);
    if (!rc)
        rc = tw_mkdir_p(name_dir, 0755);
    if (!rc)
        rc = commit_version(&c, &files, name_dir, &ref);
    if (rc && made_name) // leave no folder behind that this call made
        rmdir(name_dir);
    if (rc && made_models)
        rmdir(models);
    src_files_free(&files);
    free(source); // realpath's
    if (!rc && out)
        *out = ref;
    return rc;
}

// ---- reading versions

#define MODEL_COLUMNS                                                                    \
    "id, name, version, kind, stage, created_at, run_id, base, dataset_sha256, params, " \
    "metrics, n_params, dtype, bytes, source, twin_version"

struct file_list {
    tw_vec v; // struct tw_model_file, strings owned
};

static void file_list_clear(struct file_list *l)
{
    for (size_t i = 0; i < l->v.len; i++) {
        struct tw_model_file *f = tw_vec_at(&l->v, i);
        tw_free((char *)f->file);
        tw_free((char *)f->blob);
    }
    tw_vec_clear(&l->v);
}

static int read_files(struct tw_home *h, sqlite3_stmt *fs, int64_t id, struct file_list *l)
{
    file_list_clear(l);
    sqlite3_reset(fs);
    sqlite3_bind_int64(fs, 1, id);
    int step;
    while ((step = sqlite3_step(fs)) == SQLITE_ROW) {
        struct tw_model_file f = { tw_strdup(column_text(fs, 0)), tw_strdup(column_text(fs, 1)),
                                   sqlite3_column_int64(fs, 2) };
        if (!f.file || !f.blob || tw_vec_push(&l->v, &f) != 0) {
            tw_free((char *)f.file);
            tw_free((char *)f.blob);
            return tw_error_set(TW_ENOMEM, "out of memory");
        }
    }
    return step == SQLITE_DONE ? 0 : tw_home_db_fail(h, "model_files: reading");
}

// Calls fn for each version of name (NULL: all) or only `version` (0: all).
static int each_version(struct tw_home *h, const char *name, int64_t version,
                        int (*fn)(void *, const struct tw_model_version *), void *ud)
{
    sqlite3_stmt *st = NULL, *fs = NULL;
    int rc =
        tw_home_prepare(h,
                        "SELECT " MODEL_COLUMNS " FROM models WHERE (?1 IS NULL OR name = ?1) "
                        "AND (?2 = 0 OR version = ?2) ORDER BY name, version",
                        &st);
    if (!rc)
        rc = tw_home_prepare(h,
                             "SELECT file, blob, bytes FROM model_files WHERE model_id = ?1 "
                             "ORDER BY file",
                             &fs);
    struct file_list files;
    tw_vec_init(&files.v, sizeof(struct tw_model_file));
    int step = SQLITE_DONE;
    if (!rc) {
        bind_text(st, 1, name);
        sqlite3_bind_int64(st, 2, version);
    }
    while (!rc && (step = sqlite3_step(st)) == SQLITE_ROW) {
        char path[PATH_MAX];
        const char *nm = column_text(st, 1);
        int64_t ver = sqlite3_column_int64(st, 2);
        if ((rc = read_files(h, fs, sqlite3_column_int64(st, 0), &files)) != 0 ||
            (rc = model_path(h, nm, ver, path, sizeof path)) != 0)
            break;
        struct tw_model_version m = {
            .name = nm,
            .version = ver,
            .kind = column_text(st, 3),
            .stage = column_text(st, 4),
            .created_at = sqlite3_column_int64(st, 5),
            .run_id = column_text(st, 6),
            .base = column_text(st, 7),
            .dataset_sha256 = column_text(st, 8),
            .params = column_text(st, 9),
            .metrics = column_text(st, 10),
            .n_params = sqlite3_column_int64(st, 11),
            .dtype = column_text(st, 12),
            .bytes = sqlite3_column_int64(st, 13),
            .source = column_text(st, 14),
            .twin_version = column_text(st, 15),
            .path = path,
            .files = files.v.data,
            .n_files = files.v.len,
        };
        rc = fn(ud, &m);
    }
    if (!rc && step != SQLITE_DONE)
        rc = tw_home_db_fail(h, "models: reading");
    file_list_clear(&files);
    tw_vec_free(&files.v);
    sqlite3_finalize(fs);
    sqlite3_finalize(st);
    return rc;
}

int tw_registry_list(struct tw_home *h, const char *name,
                     int (*fn)(void *ud, const struct tw_model_version *m), void *ud)
{
    return each_version(h, name, 0, fn, ud);
}

int tw_registry_get(struct tw_home *h, const char *ref,
                    int (*fn)(void *ud, const struct tw_model_version *m), void *ud)
{
    struct tw_model_ref r;
    int rc = tw_registry_resolve(h, ref, &r);
    return rc ? rc : each_version(h, r.name, r.version, fn, ud);
}

// ---- export

struct export_ctx {
    struct tw_home *h;
    const char *tmp;
    bool adapter_only;
    int copied;
};

static bool adapter_file(const char *file)
{
    return strcmp(file, "adapter_config.json") == 0 ||
           strcmp(file, "adapter_model.safetensors") == 0;
}

static int export_files(void *ud, const struct tw_model_version *m)
{
    struct export_ctx *x = ud;
    int rc = 0;
    for (size_t i = 0; !rc && i < m->n_files; i++) {
        const struct tw_model_file *f = &m->files[i];
        char blob[PATH_MAX], dst[PATH_MAX], got[TW_BLOB_HEX];
        if (x->adapter_only && !adapter_file(f->file))
            continue;
        if ((rc = tw_blob_path(x->h, f->blob, blob, sizeof blob)) != 0 ||
            (rc = tw_path_join(dst, sizeof dst, x->tmp, f->file)) != 0 ||
            (rc = make_parents(x->tmp, f->file)) != 0 ||
            (rc = copy_file(blob, dst, 0644, got)) != 0)
            break;
        if (strcmp(got, f->blob) != 0)
            rc = tw_error_set(TW_EFORMAT, "%s: corrupted: its bytes hash to %s", blob, got);
        x->copied++;
    }
    if (!rc && x->adapter_only && x->copied < 2)
        rc = tw_error_set(TW_ENOENT,
                          "%s:%lld has no PEFT adapter (adapter_config.json and "
                          "adapter_model.safetensors): export it as a Hugging Face folder",
                          m->name, (long long)m->version);
    return rc;
}

int tw_registry_export(struct tw_home *h, const char *ref, const char *out, bool adapter_only)
{
    struct tw_model_ref r;
    int rc = tw_registry_resolve(h, ref, &r);
    if (rc)
        return rc;
    if (tw_file_exists(out))
        return tw_error_set(TW_EEXIST, "%s: exists already", out);
    char tmp[PATH_MAX], parent[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out) >= (int)sizeof tmp)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", out);
    if (!mkdtemp(tmp))
        return tw_error_set(TW_EIO, "%s: cannot create a folder: %s", tmp, strerror(errno));
    chmod(tmp, 0755);
    struct export_ctx x = { .h = h, .tmp = tmp, .adapter_only = adapter_only };
    rc = each_version(h, r.name, r.version, export_files, &x);
    if (!rc && rename(tmp, out) != 0)
        rc = tw_error_set(TW_EIO, "%s: cannot rename to %s: %s", tmp, out, strerror(errno));
    if (rc) {
        tw_remove_tree(tmp);
        return rc;
    }
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    else
        snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
    return tw_fsync_dir(parent);
}

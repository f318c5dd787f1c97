// Tests the model registry and run records (store/registry.h): the migration from schema 4,
// a run's life (steps, metrics, ending, errors), registering versions of the golden tiny
// models (blobs shared, folders of hard links that tw_model_open reads), references,
// promotion, export, and atomicity: a registration that fails leaves no row, no folder and
// no new blob.
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "check.h"
#include "model/model.h"
#include "store/blob.h"
#include "store/home.h"
#include "store/registry.h"
#include "store/schema.h"

static char root[256], golden[4096];

static int64_t count_rows(struct tw_home *h, const char *sql)
{
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(h->db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int64_t blob_count(struct tw_home *h)
{
    struct tw_home_stats s;
    CHECK_OK(tw_home_stats(h, &s));
    return s.blob_count;
}

static void sh(const char *fmt, const char *a, const char *b)
{
    char cmd[9000];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    REQUIRE(system(cmd) == 0);
}

// A home at schema version 4 (the migrations before the registry), with a trace in it, is
// brought to the newest version with its data kept.
static void test_migration(void)
{
    char home[512], db_path[600];
    snprintf(home, sizeof home, "%s/old", root);
    CHECK_OK(tw_mkdir_p(home, 0755));
    snprintf(db_path, sizeof db_path, "%s/twin.db", home);
    sqlite3 *db;
    REQUIRE(sqlite3_open(db_path, &db) == SQLITE_OK);
    for (int v = 0; v < 4; v++)
        CHECK(sqlite3_exec(db, tw_schema_migration(v), NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO traces (created_at, kind, question, prompt_tokens, "
                       "completion_tokens, total_ms, status, detail) "
                       "VALUES (1, 'ask', 'kept?', 1, 2, 3.0, 'ok', '{}');"
                       "PRAGMA user_version = 4;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(tw_schema_count(), 5);
    struct tw_home *h;
    CHECK_OK(tw_home_open(home, &h));
    REQUIRE(h);
    struct tw_home_stats st;
    CHECK_OK(tw_home_stats(h, &st));
    CHECK_EQ_INT(st.schema_version, 5);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM traces WHERE question = 'kept?'"), 1);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM sqlite_schema WHERE name IN ('runs', "
                               "'run_steps', 'run_metrics', 'models', 'model_files')"),
                 5);
    // The registry works on the migrated home.
    char id[TW_RUN_ID_LEN];
    CHECK_OK(tw_run_begin(h, &(struct tw_run_start){ .kind = "sft" }, id));
    tw_home_close(h);
}

struct runs_seen {
    int n;
    char ids[8][TW_RUN_ID_LEN];
    char status[16], metrics[256], params[256], dataset[256], base[64], output[64], msg[64];
    int64_t n_steps, finished_at;
    double last_loss;
    int steps;
    struct tw_run_step s[4];
};

static int on_run(void *ud, const struct tw_run *r)
{
    struct runs_seen *x = ud;
    if (x->n < 8)
        snprintf(x->ids[x->n], TW_RUN_ID_LEN, "%s", r->id);
    x->n++;
    snprintf(x->status, sizeof x->status, "%s", r->status);
    snprintf(x->metrics, sizeof x->metrics, "%s", r->metrics);
    snprintf(x->params, sizeof x->params, "%s", r->params);
    snprintf(x->dataset, sizeof x->dataset, "%s", r->dataset ? r->dataset : "(null)");
    snprintf(x->base, sizeof x->base, "%s", r->base_model ? r->base_model : "(null)");
    snprintf(x->output, sizeof x->output, "%s", r->output_model ? r->output_model : "(null)");
    snprintf(x->msg, sizeof x->msg, "%s", r->message ? r->message : "(null)");
    x->n_steps = r->n_steps;
    x->finished_at = r->finished_at;
    x->last_loss = r->last_loss;
    CHECK(strncmp(r->twin_version, "twin ", 5) == 0);
    return 0;
}

static int on_step(void *ud, const struct tw_run_step *s)
{
    struct runs_seen *x = ud;
    if (x->steps < 4)
        x->s[x->steps] = *s;
    x->steps++;
    return 0;
}

static void test_runs(struct tw_home *h)
{
    char id[TW_RUN_ID_LEN], id2[TW_RUN_ID_LEN], id3[TW_RUN_ID_LEN];
    struct tw_run_start s = {
        .kind = "sft",
        .params = "{\"lr\": 0.0002, \"epochs\": 3}",
        .base_model = "tiny:1",
        .dataset = "{\"path\": \"d.jsonl\", \"sha256\": \"ab\", \"rows\": 10}",
    };
    CHECK_OK(tw_run_begin(h, &s, id));
    CHECK_EQ_INT(strlen(id), TW_RUN_ID_LEN - 1);
    CHECK(strncmp(id, "run-20", 6) == 0 && id[12] == '-' && id[19] == '-');
    for (int i = 1; i <= 3; i++) {
        struct tw_run_step st = { .step = i,
                                  .epoch = i / 3.0,
                                  .loss = 3.0 - i * 0.5,
                                  .lr = 1e-4 * i,
                                  .grad_norm = 1.5,
                                  .tokens_per_s = 1000 + i,
                                  .mem_bytes = i == 2 ? -1 : 1 << 20,
                                  .elapsed_s = i * 2.0,
                                  .eval_loss = i == 3 ? 1.25 : NAN };
        CHECK_OK(tw_run_log_step(h, id, &st));
    }
    struct tw_run_step dup = { .step = 2,
                               .loss = 9,
                               .epoch = NAN,
                               .lr = NAN,
                               .grad_norm = NAN,
                               .tokens_per_s = NAN,
                               .elapsed_s = NAN,
                               .eval_loss = NAN };
    CHECK_EQ_INT(tw_run_log_step(h, id, &dup), TW_EEXIST);
    CHECK_EQ_INT(tw_run_log_step(h, "run-nope", &dup), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "run-nope") && strstr(tw_error_msg(), "twin runs ls"));
    CHECK_OK(tw_run_set_metric(h, id, "eval_loss", 1.25));
    CHECK_OK(tw_run_set_metric(h, id, "rewards/margins", 0.5));
    CHECK_OK(tw_run_set_metric(h, id, "rewards/margins", 0.75)); // replaced
    CHECK_EQ_INT(tw_run_set_metric(h, id, "x", NAN), TW_EINVAL);
    CHECK_EQ_INT(tw_run_set_metric(h, "run-nope", "x", 1), TW_ENOENT);
    CHECK_OK(tw_run_set_output(h, id, "tiny-sft:1"));
    CHECK_OK(tw_run_finish(h, id, TW_RUN_FINISHED, NULL));
    CHECK_EQ_INT(tw_run_finish(h, id, TW_RUN_FAILED, "again"), TW_ESTATE);
    CHECK(strstr(tw_error_msg(), "has ended (finished)"));
    CHECK_EQ_INT(tw_run_log_step(h, id, &(struct tw_run_step){ .step = 4 }), TW_ESTATE);
    CHECK_EQ_INT(tw_run_finish(h, "run-nope", TW_RUN_FAILED, NULL), TW_ENOENT);

    struct runs_seen x = { 0 };
    CHECK_OK(tw_run_get(h, id, on_run, on_step, &x));
    CHECK_EQ_INT(x.n, 1);
    CHECK_EQ_STR(x.status, "finished");
    CHECK(x.finished_at > 0);
    CHECK_EQ_STR(x.metrics, "{\"eval_loss\":1.25,\"rewards/margins\":0.75}");
    CHECK_EQ_STR(x.params, s.params);
    CHECK_EQ_STR(x.dataset, s.dataset);
    CHECK_EQ_STR(x.base, "tiny:1");
    CHECK_EQ_STR(x.output, "tiny-sft:1");
    CHECK_EQ_STR(x.msg, "(null)");
    CHECK_EQ_INT(x.n_steps, 3);
    CHECK(x.last_loss == 1.5);
    CHECK_EQ_INT(x.steps, 3);
    CHECK_EQ_INT(x.s[0].step, 1);
    CHECK(x.s[0].loss == 2.5 && x.s[2].loss == 1.5);
    CHECK(fabs(x.s[1].lr - 2e-4) < 1e-12 && x.s[1].tokens_per_s == 1002);
    CHECK_EQ_INT(x.s[1].mem_bytes, -1);
    CHECK_EQ_INT(x.s[0].mem_bytes, 1 << 20);
    CHECK(isnan(x.s[0].eval_loss) && x.s[2].eval_loss == 1.25);
    CHECK(x.s[2].elapsed_s == 6.0 && fabs(x.s[2].epoch - 1.0) < 1e-12);

    CHECK_OK(tw_run_begin(h, &(struct tw_run_start){ .kind = "dpo" }, id2));
    CHECK_OK(tw_run_finish(h, id2, TW_RUN_FAILED, "out of memory at step 7"));
    CHECK_OK(tw_run_begin(h, &(struct tw_run_start){ .kind = "sft" }, id3));
    CHECK_OK(tw_run_finish(h, id3, TW_RUN_INTERRUPTED, "SIGINT"));
    CHECK_EQ_INT(tw_run_finish(h, id3, TW_RUN_RUNNING, NULL), TW_EINVAL);

    memset(&x, 0, sizeof x);
    CHECK_OK(tw_run_get(h, id2, on_run, NULL, &x));
    CHECK_EQ_STR(x.status, "failed");
    CHECK_EQ_STR(x.msg, "out of memory at step 7");
    CHECK_EQ_STR(x.metrics, "{}");
    CHECK_EQ_STR(x.params, "{}");
    CHECK(isnan(x.last_loss));
    CHECK_EQ_INT(x.n_steps, 0);

    // Newest first; the kind filter; the limit. (The migration test's run is in another home.)
    memset(&x, 0, sizeof x);
    CHECK_OK(tw_runs_list(h, NULL, 0, on_run, &x));
    CHECK_EQ_INT(x.n, 3);
    CHECK_EQ_STR(x.ids[0], id3);
    CHECK_EQ_STR(x.ids[1], id2);
    CHECK_EQ_STR(x.ids[2], id);
    memset(&x, 0, sizeof x);
    CHECK_OK(tw_runs_list(h, "sft", 0, on_run, &x));
    CHECK_EQ_INT(x.n, 2);
    CHECK_EQ_STR(x.ids[0], id3);
    memset(&x, 0, sizeof x);
    CHECK_OK(tw_runs_list(h, NULL, 1, on_run, &x));
    CHECK_EQ_INT(x.n, 1);
    CHECK_EQ_STR(x.ids[0], id3);
    CHECK_EQ_INT(tw_run_get(h, "run-nope", on_run, NULL, &x), TW_ENOENT);

    CHECK_EQ_INT(tw_run_begin(h, &(struct tw_run_start){ .kind = "s f t" }, id), TW_EINVAL);
    CHECK_EQ_INT(tw_run_begin(h, &(struct tw_run_start){ .kind = "sft", .params = "[1]" }, id),
                 TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "run params"));
    CHECK_EQ_INT(tw_run_begin(h, &(struct tw_run_start){ .kind = "sft", .dataset = "{" }, id),
                 TW_EINVAL);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM runs"), 3);
}

struct version_seen {
    int n;
    char stage[16], kind[16], run[TW_RUN_ID_LEN], base[64], dataset[80], dtype[16];
    char params[128], path[4096];
    int64_t version, n_params, bytes, files_bytes;
    size_t n_files;
    bool has_config, has_weights, has_pooling;
};

static int on_version(void *ud, const struct tw_model_version *m)
{
    struct version_seen *x = ud;
    x->n++;
    x->version = m->version;
    snprintf(x->stage, sizeof x->stage, "%s", m->stage);
    snprintf(x->kind, sizeof x->kind, "%s", m->kind);
    snprintf(x->run, sizeof x->run, "%s", m->run_id ? m->run_id : "(null)");
    snprintf(x->base, sizeof x->base, "%s", m->base ? m->base : "(null)");
    snprintf(x->dataset, sizeof x->dataset, "%s",
             m->dataset_sha256 ? m->dataset_sha256 : "(null)");
    snprintf(x->dtype, sizeof x->dtype, "%s", m->dtype ? m->dtype : "(null)");
    snprintf(x->params, sizeof x->params, "%s", m->params);
    snprintf(x->path, sizeof x->path, "%s", m->path);
    x->n_params = m->n_params;
    x->bytes = m->bytes;
    x->n_files = m->n_files;
    x->files_bytes = 0;
    x->has_config = x->has_weights = x->has_pooling = false;
    for (size_t i = 0; i < m->n_files; i++) {
        x->files_bytes += m->files[i].bytes;
        x->has_config |= strcmp(m->files[i].file, "config.json") == 0;
        x->has_weights |= strcmp(m->files[i].file, "model.safetensors") == 0;
        x->has_pooling |= strcmp(m->files[i].file, "1_Pooling/config.json") == 0;
        CHECK_EQ_INT(strlen(m->files[i].blob), 64);
    }
    return 0;
}

static void check_ref(struct tw_home *h, const char *ref, const char *name, int64_t version)
{
    struct tw_model_ref r;
    int rc = tw_registry_resolve(h, ref, &r);
    CHECK_OK(rc);
    if (rc)
        return;
    CHECK_EQ_STR(r.name, name);
    CHECK_EQ_INT(r.version, version);
    char want[4200];
    snprintf(want, sizeof want, "%s/models/%s/v%lld", h->path, name, (long long)version);
    CHECK_EQ_STR(r.path, want);
}

static void same_inode(const char *a, const char *b)
{
    struct stat sa, sb;
    CHECK(stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino);
}

static void test_register(struct tw_home *h, const char *run_id)
{
    struct tw_model_ref r;
    struct tw_model_meta meta = {
        .name = "tiny", .kind = "imported", .n_params = 1234, .dtype = "f32"
    };
    CHECK_EQ_INT(tw_registry_promoted(h, &r), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "no promoted model") && strstr(tw_error_msg(), h->path) &&
          strstr(tw_error_msg(), "twin models promote"));
    CHECK_EQ_INT(blob_count(h), 0);
    CHECK_OK(tw_registry_add(h, golden, &meta, &r));
    CHECK_EQ_STR(r.name, "tiny");
    CHECK_EQ_INT(r.version, 1);
    int64_t blobs = blob_count(h);
    CHECK(blobs >= 5); // config, weights, tokenizer and its config, generation config, ...
    // The second version of the same files shares their blobs.
    meta.kind = "sft";
    meta.run_id = run_id;
    meta.base = "tiny:1";
    meta.dataset_sha256 = "0123abcd";
    meta.params = "{\"lr\": 0.0001}";
    CHECK_OK(tw_registry_add(h, golden, &meta, &r));
    CHECK_EQ_INT(r.version, 2);
    CHECK_EQ_INT(blob_count(h), blobs);

    // The folder: hard links to the blobs with the HF names; tw_model_open reads it.
    char p[4200], blob[4200];
    snprintf(p, sizeof p, "%s/config.json", r.path);
    struct version_seen x = { 0 };
    CHECK_OK(tw_registry_get(h, "tiny:2", on_version, &x));
    CHECK_EQ_INT(x.n, 1);
    CHECK(x.has_config && x.has_weights);
    CHECK_EQ_INT(x.bytes, x.files_bytes);
    CHECK_EQ_STR(x.kind, "sft");
    CHECK_EQ_STR(x.run, run_id);
    CHECK_EQ_STR(x.base, "tiny:1");
    CHECK_EQ_STR(x.dataset, "0123abcd");
    CHECK_EQ_STR(x.params, "{\"lr\": 0.0001}");
    CHECK_EQ_STR(x.dtype, "f32");
    CHECK_EQ_INT(x.n_params, 1234);
    CHECK_EQ_STR(x.stage, "none");
    CHECK_EQ_STR(x.path, r.path);
    struct tw_mmap a = { 0 }, b = { 0 };
    char src[4200];
    snprintf(src, sizeof src, "%s/model.safetensors", golden);
    snprintf(p, sizeof p, "%s/model.safetensors", r.path);
    CHECK_OK(tw_mmap_open(&a, src));
    CHECK_OK(tw_mmap_open(&b, p));
    CHECK(a.len == b.len && a.len > 0 && memcmp(a.data, b.data, a.len) == 0);
    tw_mmap_close(&a);
    tw_mmap_close(&b);
    // The file's blob is its hard link.
    sqlite3_stmt *st;
    REQUIRE(sqlite3_prepare_v2(h->db,
                               "SELECT blob FROM model_files WHERE file = 'model.safetensors' "
                               "LIMIT 1",
                               -1, &st, NULL) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK_OK(tw_blob_path(h, (const char *)sqlite3_column_text(st, 0), blob, sizeof blob));
    sqlite3_finalize(st);
    same_inode(p, blob);

    struct tw_model *m1, *m2;
    CHECK_OK(tw_model_open(golden, &m1));
    CHECK_OK(tw_model_open(r.path, &m2));
    if (m1 && m2) {
        CHECK_EQ_INT(tw_model_n_params(m2), tw_model_n_params(m1));
        CHECK_EQ_STR(m2->arch_name, m1->arch_name);
        CHECK(m2->tok != NULL);
        CHECK_EQ_INT(m2->n_eog, m1->n_eog);
    }
    tw_model_close(m1);
    tw_model_close(m2);

    // References.
    check_ref(h, "tiny", "tiny", 2);
    check_ref(h, "tiny:latest", "tiny", 2);
    check_ref(h, "tiny:1", "tiny", 1);
    check_ref(h, "tiny:v1", "tiny", 1);
    CHECK_EQ_INT(tw_registry_resolve(h, "tiny:3", &r), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "no version 3") && strstr(tw_error_msg(), "newest is 2"));
    CHECK_EQ_INT(tw_registry_resolve(h, "nope", &r), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "no model named nope") && strstr(tw_error_msg(), h->path));
    CHECK_EQ_INT(tw_registry_resolve(h, "tiny:0", &r), TW_EINVAL);
    CHECK_EQ_INT(tw_registry_resolve(h, "a/b", &r), TW_EINVAL);
    CHECK_EQ_INT(tw_registry_resolve(h, "tiny:promoted", &r), TW_ENOENT);
    CHECK(tw_registry_is_ref("tiny") && tw_registry_is_ref("tiny:3") &&
          tw_registry_is_ref("@promoted") && tw_registry_is_ref("a.b-c_d:latest"));
    CHECK(!tw_registry_is_ref("./tiny") && !tw_registry_is_ref("/x/y") &&
          !tw_registry_is_ref("tiny:") && !tw_registry_is_ref("tiny:x") &&
          !tw_registry_is_ref(".hidden") && !tw_registry_is_ref(""));

    // Promotion moves the one production row.
    CHECK_OK(tw_registry_promote(h, "tiny:1", &r));
    CHECK_EQ_INT(r.version, 1);
    check_ref(h, "@promoted", "tiny", 1);
    check_ref(h, "tiny:promoted", "tiny", 1);
    CHECK_OK(tw_registry_promote(h, "tiny", NULL));
    check_ref(h, "@promoted", "tiny", 2);
    memset(&x, 0, sizeof x);
    CHECK_OK(tw_registry_get(h, "tiny:1", on_version, &x));
    CHECK_EQ_STR(x.stage, "archived");
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM models WHERE stage = 'production'"), 1);
    CHECK_EQ_INT(tw_registry_promote(h, "tiny:9", NULL), TW_ENOENT);
    check_ref(h, "@promoted", "tiny", 2); // a failed promotion changes nothing
    CHECK_EQ_INT(tw_registry_set_stage(h, "tiny:1", "gold", NULL), TW_EINVAL);
    CHECK_OK(tw_registry_set_stage(h, "tiny:1", "staging", NULL));
    CHECK_OK(tw_registry_promoted(h, &r));
    CHECK_EQ_INT(r.version, 2);

    // Another name: its own version numbers; the embedder's module folder is kept.
    char bert[4200];
    snprintf(bert, sizeof bert, "%s/../bert_embed", golden);
    CHECK_OK(
        tw_registry_add(h, bert, &(struct tw_model_meta){ .name = "emb", .kind = "base" }, &r));
    CHECK_EQ_INT(r.version, 1);
    memset(&x, 0, sizeof x);
    CHECK_OK(tw_registry_get(h, "emb", on_version, &x));
    CHECK(x.has_pooling);
    CHECK_EQ_INT(x.n_params, 0);
    CHECK_EQ_STR(x.dtype, "(null)");
    CHECK_OK(tw_model_open(r.path, &m1));
    if (m1)
        CHECK(m1->cfg.pooling == TW_POOL_MEAN && m1->cfg.normalize);
    tw_model_close(m1);
    CHECK_OK(tw_registry_promote(h, "emb", NULL));
    check_ref(h, "@promoted", "emb", 1);
    memset(&x, 0, sizeof x);
    CHECK_OK(tw_registry_list(h, NULL, on_version, &x));
    CHECK_EQ_INT(x.n, 3);
    memset(&x, 0, sizeof x);
    CHECK_OK(tw_registry_list(h, "tiny", on_version, &x));
    CHECK_EQ_INT(x.n, 2);
    CHECK_EQ_STR(x.stage, "archived"); // tiny:2, last in order
}

// Every failed registration leaves the rows, the folders and the blobs as they were.
static void test_atomic(struct tw_home *h)
{
    char dir[512], p[9000], models[4200];
    struct tw_model_ref r;
    int64_t rows = count_rows(h, "SELECT count(*) FROM models");
    int64_t files = count_rows(h, "SELECT count(*) FROM model_files");
    int64_t blobs = blob_count(h);
    snprintf(models, sizeof models, "%s/models/broken", h->path);
    struct tw_model_meta meta = { .name = "broken", .kind = "sft" };

    // A file that the folder names but that is not there (a link to nothing).
    snprintf(dir, sizeof dir, "%s/src-missing", root);
    sh("cp -r '%s' '%s'", golden, dir);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    REQUIRE(symlink("/nonexistent/tokenizer.json", p) == 0);
    CHECK_EQ_INT(tw_registry_add(h, dir, &meta, &r), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "tokenizer.json") != NULL);

    // A shard named by the index that is not there.
    snprintf(dir, sizeof dir, "%s/src-shards", root);
    sh("cp -r '%s' '%s'", golden, dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    char shard[700];
    snprintf(shard, sizeof shard, "%s/model-00001-of-00002.safetensors", dir);
    REQUIRE(rename(p, shard) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    const char *index = "{\"metadata\": {}, \"weight_map\": {\"a\": "
                        "\"model-00001-of-00002.safetensors\", \"b\": "
                        "\"model-00002-of-00002.safetensors\"}}";
    CHECK_OK(tw_file_write_atomic(p, index, strlen(index)));
    CHECK_EQ_INT(tw_registry_add(h, dir, &meta, &r), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "model-00002-of-00002.safetensors: missing") != NULL);

    // Not a model folder at all; a folder that is not there.
    snprintf(dir, sizeof dir, "%s/src-empty", root);
    CHECK_OK(tw_mkdir_p(dir, 0755));
    CHECK_EQ_INT(tw_registry_add(h, dir, &meta, &r), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "not a model folder") != NULL);
    snprintf(dir, sizeof dir, "%s/src-none", root);
    CHECK_EQ_INT(tw_registry_add(h, dir, &meta, &r), TW_ENOENT);

    // A failure midway: new blobs stored and the folder built, then the row refused (the run
    // it names does not exist). The new blob goes again, and so does the folder.
    snprintf(dir, sizeof dir, "%s/src-new", root);
    sh("cp -r '%s' '%s'", golden, dir);
    snprintf(p, sizeof p, "%s/extra.json", dir);
    CHECK_OK(tw_file_write_atomic(p, "{\"new\": true}", 13));
    snprintf(p, sizeof p, "%s/README.md", dir);
    CHECK_OK(tw_file_write_atomic(p, "# a card", 8));
    meta.run_id = "run-nope";
    CHECK_EQ_INT(tw_registry_add(h, dir, &meta, &r), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "no run run-nope") != NULL);

    // Bad names and kinds are refused before anything is written.
    meta.run_id = NULL;
    meta.name = "../x";
    CHECK_EQ_INT(tw_registry_add(h, golden, &meta, &r), TW_EINVAL);
    meta.name = "ok";
    meta.kind = "weird";
    CHECK_EQ_INT(tw_registry_add(h, golden, &meta, &r), TW_EINVAL);
    meta.kind = "sft";
    meta.params = "3";
    CHECK_EQ_INT(tw_registry_add(h, golden, &meta, &r), TW_EINVAL);

    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM models"), rows);
    CHECK_EQ_INT(count_rows(h, "SELECT count(*) FROM model_files"), files);
    CHECK_EQ_INT(blob_count(h), blobs);
    CHECK(!tw_file_exists(models));
    snprintf(p, sizeof p, "%s/models/ok", h->path);
    CHECK(!tw_file_exists(p));
    // Nothing was left under blobs/ either (no staged copies).
    snprintf(p, sizeof p, "test -z \"$(find '%s/blobs' -name '.incoming-*')\"", h->path);
    CHECK(system(p) == 0);

    // The same folder registers without the bad run: as version 1, not a later one; its new
    // file is one new blob; README.md is not a model file and is not taken.
    meta = (struct tw_model_meta){ .name = "broken", .kind = "sft" };
    CHECK_OK(tw_registry_add(h, dir, &meta, &r));
    CHECK_EQ_INT(r.version, 1);
    CHECK_EQ_INT(blob_count(h), blobs + 1);
    snprintf(p, sizeof p, "%s/extra.json", r.path);
    CHECK(tw_file_exists(p));
    snprintf(p, sizeof p, "%s/README.md", r.path);
    CHECK(!tw_file_exists(p));

    // A version folder without a row (a crash between the rename and COMMIT) is replaced.
    snprintf(p, sizeof p, "%s/models/stray/v1", h->path);
    CHECK_OK(tw_mkdir_p(p, 0755));
    snprintf(p, sizeof p, "%s/models/stray/v1/junk.txt", h->path);
    CHECK_OK(tw_file_write_atomic(p, "x", 1));
    meta = (struct tw_model_meta){ .name = "stray", .kind = "sft" };
    CHECK_OK(tw_registry_add(h, golden, &meta, &r));
    CHECK_EQ_INT(r.version, 1);
    CHECK(!tw_file_exists(p));
    snprintf(p, sizeof p, "%s/config.json", r.path);
    CHECK(tw_file_exists(p));
}

static void test_export(struct tw_home *h)
{
    char out[512], p[9000];
    snprintf(out, sizeof out, "%s/export-hf", root);
    CHECK_OK(tw_registry_export(h, "tiny:1", out, false));
    struct stat st;
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1); // a copy
    snprintf(p, sizeof p, "cmp '%s/model.safetensors' '%s'", golden, out);
    strcat(p, "/model.safetensors");
    CHECK(system(p) == 0);
    struct tw_model *m;
    CHECK_OK(tw_model_open(out, &m));
    tw_model_close(m);
    CHECK_EQ_INT(tw_registry_export(h, "tiny:1", out, false), TW_EEXIST);
    snprintf(out, sizeof out, "%s/export-peft", root);
    CHECK_EQ_INT(tw_registry_export(h, "tiny:1", out, true), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "no PEFT adapter") != NULL);
    CHECK(!tw_file_exists(out));
    snprintf(p, sizeof p, "test -z \"$(ls -d '%s'.tmp-* 2>/dev/null)\"", out);
    CHECK(system(p) == 0);

    // An adapter-only folder registers (kind adapter) and exports as PEFT.
    char dir[512];
    snprintf(dir, sizeof dir, "%s/adapter", root);
    CHECK_OK(tw_mkdir_p(dir, 0755));
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 8}";
    CHECK_OK(tw_file_write_atomic(p, cfg, strlen(cfg)));
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    CHECK_OK(tw_file_write_atomic(p, "\x02\0\0\0\0\0\0\0{}", 10));
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK_OK(tw_file_write_atomic(p, "{}", 2));
    struct tw_model_ref r;
    CHECK_OK(tw_registry_add(
        h, dir, &(struct tw_model_meta){ .name = "lora", .kind = "adapter", .base = "tiny:2" },
        &r));
    CHECK_OK(tw_registry_export(h, "lora", out, true));
    snprintf(p, sizeof p,
             "test \"$(ls '%s' | tr '\\n' ' ')\" = "
             "'adapter_config.json adapter_model.safetensors '",
             out);
    CHECK(system(p) == 0);
}

int main(void)
{
    tw_json_init();
    snprintf(root, sizeof root, "/tmp/twin-test-registry-XXXXXX");
    REQUIRE(mkdtemp(root));
    const char *src = test_source_dir();
    snprintf(golden, sizeof golden, "%s/tests/golden/models/llama", src);
    long live = tw_mem_live();
    test_migration();

    char home[512];
    int created;
    snprintf(home, sizeof home, "%s/home", root);
    CHECK_OK(tw_home_init(home, &created));
    struct tw_home *h;
    CHECK_OK(tw_home_open(home, &h));
    REQUIRE(h);
    test_runs(h);
    char run[TW_RUN_ID_LEN];
    CHECK_OK(tw_run_begin(h, &(struct tw_run_start){ .kind = "sft" }, run));
    test_register(h, run);
    test_atomic(h);
    test_export(h);
    tw_home_close(h);

    CHECK_EQ_INT(tw_mem_live(), live);
    CHECK_OK(tw_remove_tree(root));
    return check_report("registry");
}

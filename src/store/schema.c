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
    // 1 -> 2: the data warehouse (store/warehouse.h): authors, documents, the change log the
    // feature pipeline reads, and one row per ingest run.
    "CREATE TABLE authors (\n"
    "  id         TEXT PRIMARY KEY,\n" // UUID
    "  full_name  TEXT NOT NULL UNIQUE COLLATE NOCASE,\n"
    "  first_name TEXT NOT NULL,\n"
    "  last_name  TEXT NOT NULL,\n"
    "  created_at INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE documents (\n"
    "  seq          INTEGER PRIMARY KEY,\n"  // stable small id (MinHash index)
    "  id           TEXT NOT NULL UNIQUE,\n" // UUID
    "  author_id    TEXT NOT NULL REFERENCES authors(id),\n"
    "  category     TEXT NOT NULL,\n"
    "  platform     TEXT NOT NULL,\n"
    "  uri          TEXT NOT NULL UNIQUE,\n"
    "  title        TEXT,\n"
    "  content      TEXT NOT NULL,\n"
    "  sha256       TEXT NOT NULL,\n"              // of content, hex
    "  metadata     TEXT NOT NULL DEFAULT '{}',\n" // JSON object
    "  published_at INTEGER,\n"                    // Unix seconds, NULL when unknown
    "  fetched_at   INTEGER NOT NULL,\n"
    "  extractor    TEXT NOT NULL,\n" // name/version
    "  minhash      BLOB\n"           // signature, uint32 little-endian
    ") STRICT;\n"
    "CREATE INDEX documents_author ON documents(author_id);\n"
    "CREATE INDEX documents_sha256 ON documents(sha256);\n"
    "CREATE TABLE changes (\n"
    "  seq         INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  document_id TEXT NOT NULL,\n"
    "  op          TEXT NOT NULL CHECK (op IN ('insert', 'update', 'delete')),\n"
    "  at          INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE ingests (\n"
    "  id          INTEGER PRIMARY KEY,\n"
    "  started_at  INTEGER NOT NULL,\n"
    "  finished_at INTEGER,\n"       // NULL: killed or still running
    "  sources     TEXT NOT NULL,\n" // JSON array of the command's sources
    "  summary     TEXT\n"           // JSON, as `twin ingest --json` prints
    ") STRICT;\n",
    // 2 -> 3: the feature store (pipeline/features.h): cleaned documents, chunks (their seq
    // is the point id in both indexes), and one row per feature run with its lineage.
    "CREATE TABLE cleaned_documents (\n"
    "  document_id TEXT PRIMARY KEY,\n"
    "  sha256      TEXT NOT NULL,\n" // of the warehouse content it was cleaned from
    "  content     TEXT NOT NULL,\n"
    "  cleaned_at  INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE chunks (\n"
    "  seq         INTEGER PRIMARY KEY AUTOINCREMENT,\n" // never reused: index point ids
    "  id          TEXT NOT NULL,\n"                     // sha256 of the text
    "  document_id TEXT NOT NULL,\n"
    "  idx         INTEGER NOT NULL,\n"
    "  start       INTEGER NOT NULL,\n" // byte range in the cleaned document
    "  end         INTEGER NOT NULL,\n"
    "  text        TEXT NOT NULL,\n"
    "  UNIQUE (document_id, idx)\n"
    ") STRICT;\n"
    "CREATE TABLE feature_runs (\n"
    "  id          INTEGER PRIMARY KEY,\n"
    "  version     INTEGER NOT NULL,\n" // the index version: a new model starts a new one
    "  started_at  INTEGER NOT NULL,\n"
    "  finished_at INTEGER NOT NULL,\n"
    "  change_seq  INTEGER NOT NULL,\n" // the last warehouse change the run includes
    "  model       TEXT,\n"             // the embedding model's path, NULL: BM25 only
    "  dim         INTEGER,\n"
    "  params      TEXT NOT NULL,\n" // JSON: chunking and index parameters
    "  bm25_blob   TEXT NOT NULL,\n"
    "  vector_blob TEXT,\n"
    "  documents   INTEGER NOT NULL,\n"
    "  chunks      INTEGER NOT NULL,\n"
    "  lineage     TEXT NOT NULL\n" // JSON: documents processed and deleted, the run before
    ") STRICT;\n",
    // 3 -> 4: prompt monitoring (store/traces.h): one row per traced request (`twin ask`,
    // the server), the columns a listing shows, and every step's detail as JSON.
    "CREATE TABLE traces (\n"
    "  id          INTEGER PRIMARY KEY,\n"
    "  created_at  INTEGER NOT NULL,\n" // unix milliseconds
    "  kind        TEXT NOT NULL,\n"    // 'ask', 'rag', 'chat', ...
    "  question    TEXT NOT NULL,\n"
    "  answer      TEXT,\n"
    "  model       TEXT,\n"
    "  embed_model TEXT,\n"
    "  prompt_tokens     INTEGER NOT NULL,\n"
    "  completion_tokens INTEGER NOT NULL,\n"
    "  total_ms    REAL NOT NULL,\n"
    "  status      TEXT NOT NULL,\n" // 'ok' or the error's message
    "  detail      TEXT NOT NULL\n"  // JSON: filters, queries, stages, prompt, latencies
    ") STRICT;\n"
    "CREATE INDEX traces_created ON traces (created_at);\n",
    // 4 -> 5: the model registry and run records (store/registry.h): training runs with their
    // steps and final metrics, registered model versions with the blobs of their files, their
    // lineage and their stage (one model at a time is in production: the promoted one).
    "CREATE TABLE runs (\n"
    "  id           TEXT PRIMARY KEY,\n" // run-YYYYMMDD-HHMMSS-xxxxxxxx
    "  kind         TEXT NOT NULL,\n"    // 'pretrain', 'sft', 'dpo', ...
    "  status       TEXT NOT NULL\n"
    "               CHECK (status IN ('running', 'finished', 'failed', 'interrupted')),\n"
    "  started_at   INTEGER NOT NULL,\n" // unix milliseconds
    "  finished_at  INTEGER,\n"          // NULL while running
    "  params       TEXT NOT NULL,\n"    // JSON object: every hyper-parameter
    "  base_model   TEXT,\n"             // NAME:VERSION or a path
    "  dataset      TEXT,\n"             // JSON object: path, sha256, counts
    "  output_model TEXT,\n"             // NAME:VERSION of the model it registered
    "  message      TEXT,\n"             // why it failed or was interrupted
    "  twin_version TEXT NOT NULL\n"
    ") STRICT;\n"
    "CREATE INDEX runs_started ON runs (started_at);\n"
    "CREATE TABLE run_steps (\n"
    "  run_id       TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  step         INTEGER NOT NULL,\n"
    "  epoch        REAL,\n" // NULL: not measured
    "  loss         REAL,\n"
    "  lr           REAL,\n"
    "  grad_norm    REAL,\n"
    "  tokens_per_s REAL,\n"
    "  mem_bytes    INTEGER,\n"
    "  elapsed_s    REAL,\n"
    "  eval_loss    REAL,\n"
    "  PRIMARY KEY (run_id, step)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE TABLE run_metrics (\n"
    "  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,\n"
    "  name   TEXT NOT NULL,\n"
    "  value  REAL NOT NULL,\n"
    "  PRIMARY KEY (run_id, name)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE TABLE models (\n"
    "  id             INTEGER PRIMARY KEY,\n"
    "  name           TEXT NOT NULL,\n"
    "  version        INTEGER NOT NULL,\n" // 1, 2, ... per name, never reused
    "  kind           TEXT NOT NULL CHECK (kind IN ('base', 'pretrain', 'sft', 'dpo', "
    "'merged', 'adapter', 'imported')),\n"
    "  stage          TEXT NOT NULL DEFAULT 'none'\n"
    "                 CHECK (stage IN ('none', 'staging', 'production', 'archived')),\n"
    "  created_at     INTEGER NOT NULL,\n" // unix milliseconds
    "  run_id         TEXT REFERENCES runs(id),\n"
    "  base           TEXT,\n" // the model it came from: NAME:VERSION or a path
    "  dataset_sha256 TEXT,\n"
    "  params         TEXT NOT NULL,\n" // JSON object
    "  metrics        TEXT NOT NULL,\n" // JSON object
    "  n_params       INTEGER,\n"
    "  dtype          TEXT,\n"
    "  bytes          INTEGER NOT NULL,\n" // of all its files
    "  source         TEXT,\n"             // the folder it was registered from
    "  twin_version   TEXT NOT NULL,\n"
    "  UNIQUE (name, version)\n"
    ") STRICT;\n"
    // The promoted model: at most one row in production.
    "CREATE UNIQUE INDEX models_production ON models (stage) WHERE stage = 'production';\n"
    "CREATE TABLE model_files (\n"
    "  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
    "  file     TEXT NOT NULL,\n" // the path in the HF folder: config.json, 1_Pooling/...
    "  blob     TEXT NOT NULL,\n" // sha256 of its bytes (blobs/ab/cdef...)
    "  bytes    INTEGER NOT NULL,\n"
    "  PRIMARY KEY (model_id, file)\n"
    ") STRICT, WITHOUT ROWID;\n",
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

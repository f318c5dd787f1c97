// The model registry and the run records (ARCHITECTURE.md, "The twin home"). A run is one
// training job: its parameters, dataset and base model, a row per optimiser step, its final
// metrics and how it ended. A registered model is an immutable version NAME:1, NAME:2, ...
// whose files are blobs of the home, shown as a Hugging Face folder HOME/models/NAME/vN, with
// its lineage (run, base model, dataset) and a stage; the one in production is the promoted
// model that twin serve and twin ask use when no --model is given.
#ifndef TW_STORE_REGISTRY_H
#define TW_STORE_REGISTRY_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/home.h"

// ---- runs

enum tw_run_status { TW_RUN_RUNNING, TW_RUN_FINISHED, TW_RUN_FAILED, TW_RUN_INTERRUPTED };
// "running", "finished", "failed", "interrupted".
const char *tw_run_status_name(enum tw_run_status s);

#define TW_RUN_ID_LEN 29 // "run-YYYYMMDD-HHMMSS-xxxxxxxx" (UTC, 8 random hex digits) + NUL

// What a run starts with; NULL strings are none. The JSON texts must be objects.
struct tw_run_start {
    const char *kind;       // "pretrain", "sft", "dpo", ...: letters, digits, '-' and '_'
    const char *params;     // every hyper-parameter (NULL: {})
    const char *base_model; // the model trained from: "NAME:VERSION" or a path
    const char *dataset;    // {"path", "sha256", "rows", ...}
};

// Records a new run, status running, started now, with twin's version; id receives its id.
// Returns 0, TW_EINVAL (a bad kind, JSON that is not an object), TW_EDB.
int tw_run_begin(struct tw_home *h, const struct tw_run_start *s, char id[TW_RUN_ID_LEN]);

// One optimiser step. NAN (mem_bytes: -1) is "not measured" and is stored as NULL.
struct tw_run_step {
    int64_t step;
    double epoch, loss, lr, grad_norm, tokens_per_s;
    int64_t mem_bytes;
    double elapsed_s; // since the run began
    double eval_loss; // NAN unless an evaluation ran at this step
};
// Appends a step: one INSERT. TW_ENOENT (no such run), TW_ESTATE (the run has ended),
// TW_EEXIST (that step is logged already), TW_EDB.
int tw_run_log_step(struct tw_home *h, const char *run_id, const struct tw_run_step *s);
// Sets a final metric ("eval_loss", "rewards/margins", ...); setting it again replaces it.
int tw_run_set_metric(struct tw_home *h, const char *run_id, const char *name, double value);
// Records the model the run produced ("NAME:VERSION", as tw_registry_add names it).
int tw_run_set_output(struct tw_home *h, const char *run_id, const char *model_ref);
// Ends a running run with status FINISHED, FAILED or INTERRUPTED, now, and message (why it
// failed or stopped; NULL: none). TW_ENOENT, TW_ESTATE (it has ended already), TW_EINVAL.
int tw_run_finish(struct tw_home *h, const char *run_id, enum tw_run_status status,
                  const char *message);

// A run as read back; the strings live until the callback returns.
struct tw_run {
    const char *id, *kind, *status;
    int64_t started_at, finished_at; // unix milliseconds; finished_at 0 while running
    const char *params;              // JSON object
    const char *base_model, *dataset, *output_model, *message; // NULL: none
    const char *metrics; // JSON object of the final metrics ({} when none)
    const char *twin_version;
    int64_t n_steps;
    double last_loss; // the last step's loss; NAN when none
};
// Calls fn for the newest `limit` runs (0: all), newest first, kind NULL: every kind; a
// non-zero return from fn stops the walk and is returned.
int tw_runs_list(struct tw_home *h, const char *kind, int64_t limit,
                 int (*fn)(void *ud, const struct tw_run *r), void *ud);
// Calls fn once for run id, then step_fn (when not NULL) for each of its steps in order.
// TW_ENOENT names the run and says how to list them.
int tw_run_get(struct tw_home *h, const char *id, int (*fn)(void *ud, const struct tw_run *r),
               int (*step_fn)(void *ud, const struct tw_run_step *s), void *ud);

// ---- models

#define TW_MODEL_NAME_MAX 64

// What is recorded beside a registered model's files; NULL strings are none.
struct tw_model_meta {
    const char *name;             // 1-64 of [A-Za-z0-9._-], not starting with '.'
    const char *kind;             // base, pretrain, sft, dpo, merged, adapter, imported
    const char *run_id;           // the run that produced it (it must exist)
    const char *base;             // the model it came from: "NAME:VERSION" or a path
    const char *dataset_sha256;   // the training data's
    const char *params, *metrics; // JSON objects (NULL: {})
    int64_t n_params;             // 0: unknown
    const char *dtype;            // the weights' ("bf16"); NULL: unknown
};

// A registered version and its folder.
struct tw_model_ref {
    char name[TW_MODEL_NAME_MAX + 1];
    int64_t version;
    char path[PATH_MAX]; // HOME/models/NAME/vVERSION
};

// Registers the Hugging Face folder dir as the next version of meta->name. The files taken
// are the folder's *.json, *.safetensors, *.txt, *.model and *.jinja files, and those of its
// sentence-transformers module folders (1_Pooling/, ...); it must hold config.json and
// weights (model.safetensors, or the shards its model.safetensors.index.json names), or a
// PEFT adapter (adapter_config.json and adapter_model.safetensors). Each file is copied
// into the blob store (a blob already there is not copied again), then one transaction
// assigns the version, writes the rows and renames HOME/models/NAME/vN into place; that
// folder holds hard links to the blobs (symbolic links, or copies, where the file system
// refuses), so tw_model_open and transformers open it. On failure (a missing or unreadable
// file, a bad name or kind) no row and no folder is left. out (may be NULL) receives the
// version. Returns 0, TW_EINVAL, TW_ENOENT, TW_EIO, TW_EDB.
int tw_registry_add(struct tw_home *h, const char *dir, const struct tw_model_meta *meta,
                    struct tw_model_ref *out);

// Resolves a reference: "NAME" or "NAME:latest" (its newest version), "NAME:3" or "NAME:v3",
// "NAME:promoted" (NAME's version in production), "@promoted" (the promoted model, whatever
// its name). TW_ENOENT names the home and the reference; TW_EINVAL for a malformed one.
int tw_registry_resolve(struct tw_home *h, const char *ref, struct tw_model_ref *out);
// 1 when s has the shape of a reference (a name, a name and a version, "@promoted"), else 0:
// a string with '/' is a path.
int tw_registry_is_ref(const char *s);
// The promoted model; TW_ENOENT "HOME: no promoted model: twin models promote REF ...".
int tw_registry_promoted(struct tw_home *h, struct tw_model_ref *out);
// Puts ref in stage "none", "staging", "production" or "archived", in one transaction; a
// model put in production moves the one there before it to "archived". out may be NULL.
int tw_registry_set_stage(struct tw_home *h, const char *ref, const char *stage,
                          struct tw_model_ref *out);
// tw_registry_set_stage(h, ref, "production", out): ref becomes the promoted model.
int tw_registry_promote(struct tw_home *h, const char *ref, struct tw_model_ref *out);

// A file of a registered version.
struct tw_model_file {
    const char *file; // its path in the folder: "config.json", "1_Pooling/config.json"
    const char *blob; // sha256
    int64_t bytes;
};
// A registered version as read back; everything lives until the callback returns.
struct tw_model_version {
    const char *name;
    int64_t version;
    const char *kind, *stage;
    int64_t created_at;                                          // unix milliseconds
    const char *run_id, *base, *dataset_sha256, *dtype, *source; // NULL: none
    const char *params, *metrics;                                // JSON objects
    const char *twin_version;
    int64_t n_params, bytes; // n_params 0: unknown
    const char *path;        // its folder
    const struct tw_model_file *files;
    size_t n_files;
};
// Calls fn for every version (of `name` only, when not NULL), by name then version.
int tw_registry_list(struct tw_home *h, const char *name,
                     int (*fn)(void *ud, const struct tw_model_version *m), void *ud);
// Calls fn once for the version ref resolves to.
int tw_registry_get(struct tw_home *h, const char *ref,
                    int (*fn)(void *ud, const struct tw_model_version *m), void *ud);

// Copies ref's files (only the PEFT adapter's, adapter_config.json and
// adapter_model.safetensors, when adapter_only) into a new folder out, built beside it and
// renamed into place; out must not exist. A version without an adapter is TW_ENOENT with
// adapter_only.
int tw_registry_export(struct tw_home *h, const char *ref, const char *out, bool adapter_only);

#endif

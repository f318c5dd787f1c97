// The ETL pipeline's load step: runs the sources a command names (folder, records, web, git;
// etl/source.h), standardises each document (UTF-8 validated with invalid bytes replaced and
// counted, NFC, line breaks and white space), skips exact duplicates (same content hash under
// another URI) and near-duplicates (MinHash, text/minhash.h, against every document in the
// warehouse and those ingested before it), and writes the rest to the warehouse in
// transactions of a few documents: a killed ingest leaves the warehouse consistent, and
// running it again finishes the work without duplicates (documents are keyed by URI).
#ifndef TW_ETL_INGEST_H
#define TW_ETL_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/str.h"
#include "base/vec.h"
#include "store/home.h"

struct tw_ingest_options {
    const char *author;   // default author; documents without one fail when NULL
    const char *category; // default category (NULL: "article"; code: "repository")
    const char *platform; // overrides every source's platform when not NULL
    const char *map;      // record field map (source.h); with a folder, ingests its .json,
                          // .jsonl and .csv files as records
    int depth, max_pages; // web crawl
    bool refresh;         // web: fetch pages the warehouse has already
    double near_dup;      // MinHash Jaccard threshold; 0: 0.9; > 1: off
    int batch;            // documents per transaction; 0: 64
    bool progress;        // a progress bar on stderr
    const char *user_agent;
    double rate_per_host; // web: requests per second per host (0: 1)
    long timeout_ms;      // web: per request (0: 20000)
};

struct tw_ingest_count {
    char *reason;
    int64_t n;
};

struct tw_ingest_issue {
    char *uri;
    char *message; // the failure, or for duplicates the id of the document kept
};

struct tw_ingest_summary {
    int64_t found;           // documents the sources produced
    int64_t inserted;        // new in the warehouse
    int64_t updated;         // same URI, changed
    int64_t unchanged;       // same URI, same content
    int64_t duplicates;      // exact duplicates of another document (skipped)
    int64_t near_duplicates; // near-duplicates (skipped)
    int64_t skipped;         // passed over by the sources (by reason in skips)
    int64_t failed;          // could not be read or parsed (in failures)
    int64_t invalid_bytes;   // invalid UTF-8 subparts replaced by U+FFFD
    int64_t bytes;           // standardised content bytes of the documents written
    double seconds;
    tw_vec skips;    // struct tw_ingest_count, by first occurrence
    tw_vec failures; // struct tw_ingest_issue (the first 1,000)
    tw_vec dups;     // struct tw_ingest_issue: duplicates and near-duplicates (first 1,000)
};

void tw_ingest_summary_init(struct tw_ingest_summary *s);
void tw_ingest_summary_free(struct tw_ingest_summary *s);
// The summary as a JSON object (a new reference), NULL when out of memory.
json_t *tw_ingest_summary_json(const struct tw_ingest_summary *s);

// Ingests the sources (paths or URLs) into the home's warehouse and fills summary (which the
// caller initialised). Each source is checked before anything is written: a missing path or
// an unknown kind is an error naming it, and the warehouse is untouched. Returns 0 when the
// sources ran (per-document problems are in the summary), or an error.
int tw_ingest(struct tw_home *h, const char *const *sources, size_t n_sources,
              const struct tw_ingest_options *opt, struct tw_ingest_summary *summary);

// Standardisation of one text (exposed for tests): UTF-8 validated (each invalid subpart
// becomes U+FFFD and is counted in *n_invalid), NUL and other C0 controls but TAB and LF
// removed, NFC (utf8proc), CR LF and CR to LF, trailing spaces and tabs of each line removed,
// blank lines at the start and end removed; prose (code false) also collapses runs of spaces
// and tabs to one space, removes leading spaces of lines, and keeps at most one blank line in
// a row; code keeps indentation and blank lines. Appends to out. Returns 0 or TW_ENOMEM.
int tw_standardize(const char *text, size_t len, bool code, tw_str *out, int64_t *n_invalid);

#endif

// The contract between the ETL sources (folder, records, web, git) and the ingest that loads
// their documents into the warehouse (etl/ingest.c): a source walks what it was pointed at,
// extracts each item into a struct tw_doc_in and hands it to the sink; an item it passes over
// (binary, too big, robots.txt, ...) is reported with a short reason that the summary counts,
// and an item that failed (a read error, a 404, a malformed record) with a message naming it.
// A source returns an error only when it cannot go on at all (the root is missing, the
// repository cannot be opened, the sink asked to stop); per-item problems go to the sink.
#ifndef TW_ETL_SOURCE_H
#define TW_ETL_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

// Category names the reference knows (text/clean.h's enum tw_category names them too, as
// TW_CATEGORY_*: these are the strings); a user may name others (--category).
#define TW_DOC_ARTICLE    "article"
#define TW_DOC_POST       "post"
#define TW_DOC_REPOSITORY "repository"

// One extracted item, before standardisation (the ingest validates UTF-8, applies NFC and
// normalises white space). Every pointer is borrowed for the duration of the sink call.
struct tw_doc_in {
    const char *uri;      // where it came from: file:///abs/path, https://host/page, the
                          // repository's URL or path, records file path + "#" + line number
    const char *category; // TW_DOC_* or a user's; NULL: the ingest's --category or
                          // "article"
    const char *platform; // "folder", "web", "git", "records", a host name, or a user's;
                          // NULL: the source's kind
    const char *author;   // NULL: the ingest's --author (records may name one per record)
    const char *title;    // NULL when none
    const char *content;  // the text, content_len bytes (need not be NUL-terminated)
    size_t content_len;
    int64_t published_at;  // Unix seconds, 0 when unknown
    json_t *metadata;      // source-specific facts (an object), or NULL; the sink copies it
    const char *extractor; // "markdown", "html", "text", "code", "records", "git", ...
};

struct tw_sink {
    void *ud;
    // A document. A non-zero return stops the source, which returns that value.
    int (*doc)(void *ud, const struct tw_doc_in *d);
    // An item passed over on purpose; reason is a short fixed phrase ("binary", "too large",
    // "robots.txt", "symlink outside root", "vendored", ...) that the summary counts.
    void (*skip)(void *ud, const char *uri, const char *reason);
    // An item that could not be read or parsed; message names it and the place.
    void (*fail)(void *ud, const char *uri, const char *message);
    // Whether a document with this URI is in the warehouse already (the web source then does
    // not fetch it unless refreshing). May be NULL: nothing is known.
    bool (*seen)(void *ud, const char *uri);
    // Progress: done of total items (total 0 when unknown). May be NULL.
    void (*progress)(void *ud, int64_t done, int64_t total);
};

// ---- the sources (one file each under src/etl/)

// A folder, recursively (folder.c). Symbolic links are followed only when their target stays
// under the root; files larger than max_bytes, binary files and files of unknown kinds are
// skipped with the reason. Markdown (.md, .markdown) → its text and first heading as title;
// HTML (.html, .htm) → the main content without navigation, scripts, styles and footers, and
// <title>; plain text (.txt, files without extension that are text) → as is, the first line
// as title when it is short; source code (by extension) → category "repository", the
// relative path as title. Category and platform are left NULL except for code.
struct tw_folder_options {
    int64_t max_bytes; // per file; 0: 10 MiB
};
int tw_source_folder(const char *root, const struct tw_folder_options *opt,
                     const struct tw_sink *sink);

// Record exports (records.c): .json (an array of objects, or one object), .jsonl (one object
// per line), .csv (RFC 4180, a header row). map names the record field of each document
// field: "author=name,content=text,title=year,date=year,uri=link,category=kind"; content is
// required, the rest optional (date: Unix seconds, a year, or an ISO 8601 date/time). Fields
// of a record that are not mapped go to the metadata. A malformed record (bad JSON, a CSV
// row with the wrong number of fields, a missing content field) is reported with its line
// number through fail and the rest goes on.
int tw_source_records(const char *path, const char *map, const struct tw_sink *sink);

// Web pages (web.c): the given URLs, or with depth > 0 a crawl from each within its host to
// that depth and max_pages pages; robots.txt obeyed for the user agent; RSS/Atom feeds and
// sitemap.xml (and sitemap indexes) read as link sources; per-host rate limit, timeouts,
// retries with exponential back-off on 5xx and time-outs, a redirect limit; the charset of
// the response (header or <meta>) converted to UTF-8; HTML extracted as in extract.h. URIs
// the sink has seen are not fetched unless refresh.
struct tw_web_options {
    const char *user_agent; // NULL: "twin/<version> (+https://github.com/twin)"
    int depth;              // 0: only the given pages (feeds and sitemaps still expand)
    int max_pages;          // 0: 100
    double rate_per_host;   // requests per second per host; 0: 1
    long timeout_ms;        // per request; 0: 20000
    int retries;            // 0: 3
    long max_redirects;     // 0: 5
    int64_t max_bytes;      // per response; 0: 10 MiB
    bool refresh;           // fetch pages the warehouse has already
};
int tw_source_web(const char *const *urls, size_t n_urls, const struct tw_web_options *opt,
                  const struct tw_sink *sink);

// A git repository (git.c), a local path or a URL (cloned into a temporary folder that is
// removed afterwards): the files of HEAD's tree, skipping .git, lock files, binaries, images
// and vendored folders (node_modules, vendor, third_party, ...), as one document of category
// "repository": content is "path:\n<text>\n\n" per file in path order (the reference keeps a
// path → text mapping), title the repository name, metadata {"files": [{"path", "bytes",
// "sha"}], "commit": "<hex>", "branch": ...}.
struct tw_git_options {
    int64_t max_file_bytes; // 0: 1 MiB
    int64_t max_bytes;      // the whole document; 0: 50 MiB
};
int tw_source_git(const char *path_or_url, const struct tw_git_options *opt,
                  const struct tw_sink *sink);

#endif

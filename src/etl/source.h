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

// A folder, recursively (folder.c), in name order (bytewise, depth first). Kinds by name
// (extract.h's tw_file_kind): Markdown → its text and title (front matter or first
// heading); HTML → the main content without navigation, scripts, styles and footers, and
// <title>; plain text (.txt, ..., and files without extension that are text) → as is, the
// first line as title when it is short; code (by extension or build-file name) → as is,
// category TW_DOC_REPOSITORY, the path relative to the root as title. Platform is NULL, and
// category except for code. uri "file://" + the real path of the root + "/" + the relative
// path; published_at the file's mtime; extractor the kind; metadata {"path" (relative),
// "bytes", "kind", "mtime"}. Skipped (sink->skip, with the reason): names starting with '.'
// "hidden" (.git and other folders once each, not entered); the folders node_modules,
// bower_components, vendor, third_party, __pycache__, build, dist, target, .venv, venv, .tox
// "vendored" (once each); images "image"; other extensions "unknown kind"; files over
// max_bytes "too large"; binary files (extract.h) "binary"; nothing left after extraction
// "empty"; fifos, sockets, devices "special file". Symbolic links are followed after the
// walk, so that a file reached both ways is taken under its own name: a target outside the
// root's real path "symlink outside root", a dangling link "broken symlink", a loop (a link
// to itself or to a folder holding it) "symlink loop", a file or folder taken already
// "duplicate"; else the target is taken under the link's path (a linked folder is walked
// the same way). Each file and folder is taken once. A file that cannot be read goes to fail
// as "<path>: <strerror>". Progress: (files met, 0). Returns 0, the sink's stop value,
// TW_ENOMEM, or TW_ENOENT / TW_EINVAL "<root>: ..." when root is missing / not a folder.
struct tw_folder_options {
    int64_t max_bytes; // per file; 0: 10 MiB
};
int tw_source_folder(const char *root, const struct tw_folder_options *opt,
                     const struct tw_sink *sink);

// Record exports (records.c), by extension: .json (an array of objects, or one object: one
// record), .jsonl / .ndjson (one object per line; blank lines ignored), .csv (RFC 4180, a
// header row naming the fields; an empty field is an absent one). A UTF-8 BOM is ignored.
// map names the record field(s) of each document field, alternatives tried in order:
// "author=name,content=text|body,title=year,date=year,uri=link,category=kind,platform=p".
// The targets are author, content, title, date, uri, category, platform (another is
// TW_EINVAL naming it, as is a target given twice or without a field); a target the map
// leaves out (all of them when map is NULL or "") takes its default: content=content|text,
// title=title, author=author, date=date, uri=url|link. Values: strings as they are, numbers
// and other JSON as compact JSON text (1790 -> "1790"), null or "" as absent. date: a JSON
// integer 1000..9999 or a 4-digit string is a year (January 1, 00:00 UTC); other integers,
// reals and digit strings Unix seconds; else ISO 8601 (YYYY-MM[-DD[(T| )hh:mm[:ss[.f]]
// [Z|+hh[:mm]]]], UTC when no offset). Each record's uri is its mapped field, else
// "<absolute path>#<n>", n its first line (.jsonl, .csv) or its 1-based index (.json),
// stable across runs. Fields not used by the map go to the metadata object (JSON types kept;
// CSV values are strings). platform is NULL unless mapped; extractor "records". A malformed
// record (bad JSON, a non-object, a CSV row with the wrong number of fields or a bad quote,
// no content, a date that does not parse) goes to fail as "<path>:<line>: ..." (or
// "<path>: record <i>: ...") and the rest goes on; so does a .json file that does not
// parse. Returns 0, the sink's stop value, or an error for a file that cannot be read
// (TW_ENOENT, TW_EIO, ... naming the path), an unknown extension or a bad map (TW_EINVAL).
// Progress: (records, total) with the total known for .json only (else 0).
int tw_source_records(const char *path, const char *map, const struct tw_sink *sink);

// Web pages (web.c): the given URLs, or with depth > 0 a breadth-first crawl from each within
// its origin (scheme://host:port, or the one its start URL redirected to) to that depth, the
// links taken from the extracted HTML (extract.h), normalised (fragments dropped) and fetched
// once. RSS/Atom feeds and sitemaps (and sitemap indexes) are link sources, not documents:
// their items within the origin are fetched at the feed's own depth, a feed item's date
// becomes published_at and its title "feed_title" in the metadata (and the title when the
// page has none). robots.txt is fetched once per origin and obeyed for the user agent's
// product token (RFC 9309: a 4xx answer allows everything, a 5xx or 429 disallows the origin
// for the run, an unreachable one fails its pages). Requests to one origin are spaced by
// 1/rate_per_host s; a 5xx, 429, time-out or connection error is retried after a back-off of
// timeout_ms/40 (10 ms to 0.5 s), doubling up to 8 times that (or Retry-After within it);
// curl follows redirects up to max_redirects. The charset (a BOM, the Content-Type header,
// <meta> in the first 1024 bytes, the XML declaration, else UTF-8) is converted to UTF-8
// with iconv. Each page is a document: uri the final URL after redirects, platform the host
// name, category NULL, extractor "html" or "text", metadata {"url" (as requested),
// "final_url", "status", "content_type", "charset", "fetched_at" (ISO 8601 UTC), "depth"}.
// Skip reasons: "robots.txt", "already ingested", "duplicate" (a final URL already a
// document), "too large", "content type". Failures ("GET <url>: HTTP 404", "GET <url>: timed
// out after N ms (3 attempts)", a redirect loop, a malformed feed, ...) go to sink->fail. A
// URI the sink has seen is neither fetched nor expanded unless refresh. The crawl stops after
// max_pages documents, or 4 * max_pages + n_urls fetched URLs whatever they gave. Progress:
// (documents, max_pages).
struct tw_web_options {
    const char *user_agent; // NULL: "twin/<version> (+https://github.com/twin)"
    int depth;              // 0: only the given pages (feeds and sitemaps still expand)
    int max_pages;          // 0: 100
    double rate_per_host;   // requests per second per host; 0: 1
    long timeout_ms;        // per request; 0: 20000
    int retries;            // retries of one request; 0: 3; < 0: none
    long max_redirects;     // 0: 5
    int64_t max_bytes;      // per response; 0: 10 MiB
    bool refresh;           // fetch pages the warehouse has already
};
int tw_source_web(const char *const *urls, size_t n_urls, const struct tw_web_options *opt,
                  const struct tw_sink *sink);

// A git repository (git.c): a local path, which must be the repository itself (its work tree
// or git folder; folders above are not searched), or a URL (anything with "://", or
// "git@host:path"), cloned bare into a temporary folder under $TMPDIR (else /tmp) that is
// removed afterwards (url.<base>.insteadOf is not applied). The blobs of HEAD's tree, in
// path order, make one document of category "repository": content is "path:\n<text>\n\n"
// per file (the reference keeps a path → text mapping); uri the URL as given, or
// "file://<absolute work tree (or git folder when bare)>"; platform "git", or the URL's host
// ("github.com"); title the repository name (last path component without ".git"); published_at
// HEAD's commit time; extractor "git"; metadata {"files": [{"path", "bytes", "oid"}] (the
// files in the content, oid the blob's hex id), "commit": "<hex of HEAD>", "branch": its
// short name or null when detached, "file_count": n}. Skipped, with the URI "<uri>/<path>":
// lock files (package-lock.json, yarn.lock, pnpm-lock.yaml, go.sum, *.lock, ...) "lock
// file"; the folders node_modules, vendor, third_party, .venv, dist, build, once each,
// "vendored"; images by name "image"; blobs over max_file_bytes "too large"; binary blobs
// (extract.h) "binary"; submodules "submodule"; symbolic links "symlink"; and once a file
// would take the content past max_bytes, it and every later file "document full". An empty
// repository (no commit on HEAD) goes to fail and returns 0; a path that is not a repository
// is TW_ENOENT (missing) or TW_EINVAL "<path>: not a git repository (...)"; a failed clone
// TW_EIO naming the URL, with libgit2's message.
struct tw_git_options {
    int64_t max_file_bytes; // 0: 1 MiB
    int64_t max_bytes;      // the whole document; 0: 50 MiB
};
int tw_source_git(const char *path_or_url, const struct tw_git_options *opt,
                  const struct tw_sink *sink);

#endif

// Extractors: from a file's or a response's bytes to a document's text and title, shared by
// the folder, web and git sources. The text is UTF-8 as given (the caller converts charsets
// first); blocks are separated by blank lines.
#ifndef TW_ETL_EXTRACT_H
#define TW_ETL_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/str.h"
#include "base/vec.h"

struct tw_extracted {
    tw_str text;  // the content
    tw_str title; // empty when none
    tw_vec links; // char * (tw_malloc'd absolute URLs, fragments removed), HTML only, in
                  // document order, duplicates removed; empty unless asked for
};
void tw_extracted_init(struct tw_extracted *e);
void tw_extracted_free(struct tw_extracted *e);

// HTML (gumbo): the main content — the first <main> (or role="main") when the page has one,
// else its outermost <article>s one after the other, else <body>; an empty main content falls
// back to <body> — without script, style, noscript, template, nav, footer, aside, form,
// iframe, svg, math, button, select, textarea, canvas, video, audio, object, embed, a page-
// level header (an <article>'s or <section>'s own <header> is kept: it holds its heading),
// elements whose role is navigation/banner/contentinfo/complementary, and hidden elements
// (the hidden attribute, aria-hidden="true", style="display:none"). Block elements (p, div,
// h1-h6, li, pre, blockquote, tr, br, ...) become line breaks (blank lines between
// paragraphs), table cells are set apart by a space, runs of white space collapse to one
// space except inside <pre>, which keeps its white space; entities are decoded; no white
// space at the end. Title: <title>, else the first kept <h1>, on one
// line. With base_url, the href of every <a> of the whole document (navigation included, so
// that a crawl sees it; not those inside svg or scripts) resolved against base_url and the
// first <base href> (RFC 3986, libcurl's URL API) into links: http(s) only, host in lower
// case, fragment removed; empty hrefs and "#..." (the page itself) left out; base_url NULL:
// no links. Never fails on broken HTML (gumbo repairs it); TW_ENOMEM only. On success the
// result replaces what out held; on failure out is unchanged (this holds for all three).
int tw_extract_html(const char *html, size_t len, const char *base_url, struct tw_extracted *out);

// Markdown (cmark): the rendered plain text (no markup): text and code as written, soft and
// hard breaks as line breaks, blocks apart by blank lines, list items (of tight lists) on
// lines of their own, code blocks verbatim; raw HTML and images' alt text are left out. A
// UTF-8 BOM and a front matter block at the start ("---" ... "---" or "...", or "+++" ...
// "+++") are not text. Title: the front matter's "title: ..." / "title = ..." (quotes
// removed), else the first heading's text, on one line.
int tw_extract_markdown(const char *md, size_t len, struct tw_extracted *out);

// Plain text: as is (without a UTF-8 BOM); title the first line that is not blank, trimmed,
// when it is under 120 bytes and more text follows (after a blank line or not), else none.
int tw_extract_text(const char *txt, size_t len, struct tw_extracted *out);

// A file's bytes by its kind (tw_file_kind; NULL is "text"): HTML, Markdown and text through
// the extractors above, code ("code" and anything else) as it is. Returns 0 or TW_ENOMEM.
int tw_extract_file(const char *kind, const char *data, size_t len, struct tw_extracted *out);

// Whether bytes look binary: a NUL byte in the first 8 KiB, or more than 30 % of them
// control characters other than \t \n \r \f (after skipping a UTF-8 BOM).
bool tw_looks_binary(const void *p, size_t len);

// The kind of a file by its name (a path's last component; extensions compared ignoring
// case): "markdown", "html", "text" (.txt, .rst, .adoc, .org, and README, LICENSE, ...
// without extension), "code" (C, C++, CUDA, Python, JS/TS, Go, Rust, Java, shell, SQL,
// configuration languages, ..., and build files such as Makefile, CMakeLists.txt,
// Dockerfile), "image" (png, jpg, gif, webp, svg, ico, ...), or NULL when unknown (other
// files without extension included: the folder source reads those as text when they are).
const char *tw_file_kind(const char *name);

#endif

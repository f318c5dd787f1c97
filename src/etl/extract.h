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

// HTML (gumbo): the main content — <main> or <article> when the page has one, else <body> —
// without script, style, noscript, template, nav, header, footer, aside, form, iframe, svg
// and elements whose role is navigation/banner/contentinfo; block elements (p, div, h1-h6,
// li, pre, blockquote, tr, br, ...) become line breaks, text inside <pre> keeps its white
// space. Title: <title>, else the first <h1>. With base_url, the href of every <a> resolved
// against it (and <base href>) into links, http(s) only. Never fails on broken HTML (gumbo
// repairs it); TW_ENOMEM only.
int tw_extract_html(const char *html, size_t len, const char *base_url, struct tw_extracted *out);

// Markdown (cmark): the rendered plain text (no markup), title the first heading's text.
int tw_extract_markdown(const char *md, size_t len, struct tw_extracted *out);

// Plain text: as is; title the first line when it is under 120 bytes and followed by a blank
// line or more text, else none.
int tw_extract_text(const char *txt, size_t len, struct tw_extracted *out);

// Whether bytes look binary: a NUL byte in the first 8 KiB, or more than 30 % of them
// control characters other than \t \n \r \f (after skipping a UTF-8 BOM).
bool tw_looks_binary(const void *p, size_t len);

// The kind of a file by its name (and for files without extension, nothing): "markdown",
// "html", "text", "code" (C, C++, Python, JS/TS, Go, Rust, Java, shell, ..., and build files
// such as Makefile, CMakeLists.txt, Dockerfile), "image" (png, jpg, gif, webp, svg, ico, ...),
// or NULL when unknown.
const char *tw_file_kind(const char *name);

#endif

// Fuzzes etl/extract.c: tw_extract_html (with a base URL, so that every <a href> and <base
// href> goes through the URL resolution), tw_extract_markdown and tw_extract_text on the same
// bytes. Whatever the input, each must succeed; the links must be absolute http(s) URLs
// without fragments and without duplicates; titles must be one trimmed line; the text must
// not end in white space.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etl/extract.h"

static bool ends_in_space(const tw_str *s)
{
    size_t n = tw_str_len(s);
    char c = n ? tw_str_cstr(s)[n - 1] : 'x';
    return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f';
}

static void check_title(const tw_str *t)
{
    const char *s = tw_str_cstr(t);
    if (strchr(s, '\n') || s[0] == ' ' || ends_in_space(t))
        abort();
}

static void check_links(const tw_vec *links)
{
    for (size_t i = 0; i < links->len; i++) {
        const char *u = TW_VEC_AT(links, char *, i);
        if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
            abort();
        if (strchr(u, '#'))
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(u, TW_VEC_AT(links, char *, j)) == 0)
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct tw_extracted e;
    tw_extracted_init(&e);
    if (tw_extract_html(p, size, "https://example.org/dir/page.html?q=1", &e) != 0)
        abort();
    if (ends_in_space(&e.text))
        abort();
    check_title(&e.title);
    check_links(&e.links);
    // Again into the same struct (the result replaces it), without links.
    if (tw_extract_html(p, size, NULL, &e) != 0 || e.links.len != 0)
        abort();
    if (tw_extract_markdown(p, size, &e) != 0 || e.links.len != 0)
        abort();
    if (ends_in_space(&e.text))
        abort();
    check_title(&e.title);
    if (tw_extract_text(p, size, &e) != 0)
        abort();
    check_title(&e.title);
    tw_looks_binary(p, size);
    tw_extracted_free(&e);
    return 0;
}

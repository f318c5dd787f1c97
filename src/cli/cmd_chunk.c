// twin chunk: cleans a document for its category and cuts it into chunks (token windows for
// posts, sentence chunks for articles, code chunks or token windows for repositories),
// printing each chunk's place, size, id and start, or all of it as JSON. Needs no home.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "text/chunk.h"
#include "text/clean.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

// Code points of a chunk shown in the table.
#define PREVIEW_CHARS 60

struct args {
    const char *category_name;
    enum tw_category category;
    const char *tokenizer;
    const char *file;
    const char *window, *overlap, *min, *max; // as written, NULL when not given
    bool json;
};

// A whole number >= min (decimal digits only) into *out; false otherwise.
static bool parse_count(const char *s, size_t min, size_t *out)
{
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 12)
        return false;
    unsigned long long v = strtoull(s, NULL, 10);
    if (v < min)
        return false;
    *out = (size_t)v;
    return true;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    const struct tw_verb *v = &tw_verb_chunk;
    bool only_file = false;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *val = NULL;
        const char **slot = NULL;
        if (only_file || s[0] != '-' || strcmp(s, "-") == 0) {
            if (a->file)
                return tw_cli_usage_error(v, "unexpected argument '%s' (one FILE)", s);
            a->file = s;
            continue;
        }
        if (strcmp(s, "--") == 0)
            only_file = true;
        else if (strcmp(s, "--json") == 0)
            a->json = true;
        else if (tw_cli_opt(argc, argv, &i, "--category", &val))
            slot = &a->category_name;
        else if (tw_cli_opt(argc, argv, &i, "--tokenizer", &val))
            slot = &a->tokenizer;
        else if (tw_cli_opt(argc, argv, &i, "--window", &val))
            slot = &a->window;
        else if (tw_cli_opt(argc, argv, &i, "--overlap", &val))
            slot = &a->overlap;
        else if (tw_cli_opt(argc, argv, &i, "--min", &val))
            slot = &a->min;
        else if (tw_cli_opt(argc, argv, &i, "--max", &val))
            slot = &a->max;
        else
            return tw_cli_usage_error(v, "unknown option '%s'", s);
        if (slot && (!val || !*val))
            return tw_cli_usage_error(v, "%s needs a value", s);
        if (slot)
            *slot = val;
    }
    if (!a->category_name)
        return tw_cli_usage_error(v, "--category is required (article, post, repository, "
                                     "other)");
    a->category = tw_category_parse(a->category_name);
    if (a->category == TW_CATEGORY_OTHER && strcasecmp(a->category_name, "other") != 0)
        return tw_cli_usage_error(v, "unknown category '%s' (article, post, repository, other)",
                                  a->category_name);
    if (!a->file)
        return tw_cli_usage_error(v, "a FILE is required (- for stdin)");
    return TW_EXIT_OK;
}

// The chunker's options from the arguments; a usage error when they do not fit the category.
static int make_opts(const struct args *a, struct tw_chunk_opts *o)
{
    const struct tw_verb *v = &tw_verb_chunk;
    const char *cat = tw_category_name(a->category);
    tw_chunk_opts_init(o);
    bool post = a->category == TW_CATEGORY_POST;
    bool repo = a->category == TW_CATEGORY_REPOSITORY;
    bool windows = post || (repo && a->tokenizer);
    if (post && !a->tokenizer)
        return tw_cli_usage_error(v, "posts are cut into token windows: --tokenizer PATH is "
                                     "needed");
    o->repo_tokens = windows;
    size_t *win = post ? &o->post_window : &o->repo_window;
    size_t *ovl = post ? &o->post_overlap : &o->repo_overlap;
    size_t *max = repo ? &o->code_max_chars : &o->max_chars;
    if ((a->window || a->overlap) && !windows)
        return tw_cli_usage_error(v,
                                  "--window and --overlap are for token windows (posts, or "
                                  "repositories with --tokenizer), not %s",
                                  cat);
    if (a->min && (post || repo))
        return tw_cli_usage_error(v, "--min is for sentence chunks (article, other), not %s", cat);
    if (a->max && windows)
        return tw_cli_usage_error(v, "--max is for chunks measured in characters, not token "
                                     "windows");
    if (a->window && !parse_count(a->window, 1, win))
        return tw_cli_usage_error(v, "--window '%s': expected a number of tokens >= 1", a->window);
    if (a->overlap && !parse_count(a->overlap, 0, ovl))
        return tw_cli_usage_error(v, "--overlap '%s': expected a number of tokens", a->overlap);
    if (a->min && !parse_count(a->min, 0, &o->min_chars))
        return tw_cli_usage_error(v, "--min '%s': expected a number of characters", a->min);
    if (a->max && !parse_count(a->max, 1, max))
        return tw_cli_usage_error(v, "--max '%s': expected a number of characters >= 1", a->max);
    if (windows && *ovl >= *win)
        return tw_cli_usage_error(v, "the overlap (%zu) must be smaller than the window (%zu)",
                                  *ovl, *win);
    if (!windows && !repo && o->min_chars > o->max_chars)
        return tw_cli_usage_error(v, "--min (%zu) is over --max (%zu)", o->min_chars,
                                  o->max_chars);
    return TW_EXIT_OK;
}

// The chunk's first PREVIEW_CHARS code points on one line, "…" when there is more.
static void print_preview(const char *s, size_t len)
{
    size_t n = 0, chars = 0;
    while (n < len && chars < PREVIEW_CHARS) {
        uint32_t cp;
        n += tw_utf8_decode(s + n, len - n, &cp);
        chars++;
    }
    tw_cli_put_escaped(stdout, s, n);
    if (n < len)
        fputs("\xE2\x80\xA6", stdout); // U+2026 HORIZONTAL ELLIPSIS
}

static void print_table(const char *text, const tw_vec *chunks)
{
    for (size_t i = 0; i < chunks->len; i++) {
        const struct tw_chunk *c = &TW_VEC_AT(chunks, struct tw_chunk, i);
        printf("%zu\t%zu-%zu\t%zu\t%s\t", i, c->start, c->end, c->n_chars, c->id);
        print_preview(text + c->start, c->end - c->start);
        printf("\n");
    }
}

// [{"index":0,"start":..,"end":..,"chars":..,"id":"..","text":".."},...]
static int print_json(const char *text, const tw_vec *chunks)
{
    tw_json_init();
    json_t *arr = json_array();
    bool bad = !arr;
    for (size_t i = 0; i < chunks->len && !bad; i++) {
        const struct tw_chunk *c = &TW_VEC_AT(chunks, struct tw_chunk, i);
        // The cleaned text is valid UTF-8, so json_stringn only fails for want of memory.
        json_t *o =
            json_pack("{sIsIsIsIssss%}", "index", (json_int_t)i, "start", (json_int_t)c->start,
                      "end", (json_int_t)c->end, "chars", (json_int_t)c->n_chars, "id", c->id,
                      "text", text + c->start, c->end - c->start);
        bad = json_array_append_new(arr, o) != 0;
    }
    char *out = NULL;
    int rc = bad ? tw_error_set(TW_ENOMEM, "chunk: out of memory building the JSON")
                 : tw_json_dump(arr, JSON_INDENT(2), &out);
    if (!rc)
        printf("%s\n", out);
    tw_free(out);
    json_decref(arr);
    return rc;
}

// Cleans buf for the category, chunks it (token spans from t when given) and prints.
static int chunk(const struct args *a, const struct tw_chunk_opts *o, const tw_tokenizer *t,
                 const char *buf, size_t len)
{
    tw_str clean;
    tw_vec ids, spans, chunks;
    tw_str_init(&clean);
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&spans, sizeof(struct tw_span));
    tw_vec_init(&chunks, sizeof(struct tw_chunk));
    const char *in = strcmp(a->file, "-") == 0 ? "stdin" : a->file;
    int rc = tw_text_clean(a->category, buf, len, &clean);
    const char *text = tw_str_cstr(&clean);
    size_t n = tw_str_len(&clean);
    if (!rc && t)
        rc = tw_tokenizer_encode(t, text, n, 0, &ids, &spans);
    if (!rc)
        rc = tw_chunk_document(a->category, text, n, t ? spans.data : NULL, spans.len, o, &chunks);
    if (rc)
        tw_error_prefix("%s", in);
    else if (a->json)
        rc = print_json(text, &chunks);
    else
        print_table(text, &chunks);
    tw_vec_free(&chunks);
    tw_vec_free(&spans);
    tw_vec_free(&ids);
    tw_str_free(&clean);
    return rc;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    (void)cli;
    struct args a = { 0 };
    struct tw_chunk_opts o;
    int ec = parse_args(argc, argv, &a);
    if (ec == TW_EXIT_OK)
        ec = make_opts(&a, &o);
    if (ec != TW_EXIT_OK)
        return ec;
    tw_tokenizer *t = NULL;
    if (a.tokenizer && tw_cli_tokenizer_open(a.tokenizer, &t) != 0)
        return tw_cli_fail();
    char *buf = NULL;
    size_t len = 0;
    int rc = tw_cli_read_input(a.file, TW_CLI_INPUT_LIMIT, &buf, &len);
    if (!rc)
        rc = chunk(&a, &o, t, buf, len);
    if (!rc)
        rc = tw_cli_flush_stdout();
    tw_free(buf);
    tw_tokenizer_free(t);
    tw_tokenizer_thread_cleanup();
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_chunk = {
    .name = "chunk",
    .summary = "clean a document for its category and cut it into chunks",
    .usage = "usage: twin chunk --category C [--tokenizer PATH] [--window W --overlap O]"
             " [--min N --max N] [--json] FILE|-\n\n"
             "Reads FILE (or stdin for -; at most 64 MiB), cleans it for the category C\n"
             "(article, post, repository or other) and cuts the cleaned text into chunks:\n"
             "  post        token windows of W tokens sharing O (default 250 / 25); needs\n"
             "              --tokenizer PATH (as for twin tokenize)\n"
             "  article,    sentence chunks of --min to --max characters (code points;\n"
             "  other       default 1000 / 2000)\n"
             "  repository  code chunks of at most --max characters (default 2000), cut at\n"
             "              definitions and blank lines; with --tokenizer, token windows\n"
             "              instead (default 1500 / 100)\n"
             "Prints one line per chunk: index<TAB>start-end<TAB>chars<TAB>id<TAB>text, where\n"
             "start-end are the chunk's bytes in the cleaned text, chars its code points, id the\n"
             "SHA-256 of its bytes (64 hex digits), and text its first 60 characters (\\ \\n \\t\n"
             "escaped; ending in an ellipsis, U+2026, when there is more). With --json: an\n"
             "array of {\"index\", \"start\", \"end\", \"chars\", \"id\", \"text\"} with each\n"
             "chunk's whole text. The same input gives the same chunks. Needs no home.\n",
    .run = run,
};

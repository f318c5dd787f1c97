// twin ingest: the ETL pipeline — collect documents from folders, record exports, web sites
// and git repositories into the warehouse, with a summary of what happened.
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "etl/ingest.h"
#include "store/home.h"

static int print_summary(const struct tw_ingest_summary *s)
{
    printf("found %" PRId64 ", ingested %" PRId64 " new and %" PRId64 " updated, %" PRId64
           " unchanged; duplicates %" PRId64 " exact and %" PRId64 " near; skipped %" PRId64
           ", failed %" PRId64 " (%.1f s, %.1f MB)\n",
           s->found, s->inserted, s->updated, s->unchanged, s->duplicates, s->near_duplicates,
           s->skipped, s->failed, s->seconds, (double)s->bytes / 1e6);
    if (s->invalid_bytes)
        printf("invalid UTF-8 replaced: %" PRId64 "\n", s->invalid_bytes);
    for (size_t i = 0; i < s->skips.len; i++) {
        const struct tw_ingest_count *c = tw_vec_at(&s->skips, i);
        printf("skipped  %-22s %" PRId64 "\n", c->reason, c->n);
    }
    for (size_t i = 0; i < s->dups.len && i < 20; i++) {
        const struct tw_ingest_issue *is = tw_vec_at(&s->dups, i);
        printf("duplicate %s of %s\n", is->uri, is->message);
    }
    for (size_t i = 0; i < s->failures.len; i++) {
        const struct tw_ingest_issue *is = tw_vec_at(&s->failures, i);
        printf("failed   %s: %s\n", is->uri, is->message);
    }
    return 0;
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_ingest;
    struct tw_ingest_options o = { 0 };
    bool json = false, quiet = false;
    const char *val;
    const char **sources = tw_malloc_array((size_t)argc, sizeof *sources);
    size_t n = 0;
    if (!sources)
        return tw_cli_fail();
    int urc = 0;
    for (int i = 1; i < argc && !urc; i++) {
        long num;
        if (tw_cli_opt(argc, argv, &i, "--author", &val)) {
            if (!val || !*val)
                urc = tw_cli_usage_error(v, "--author needs a NAME");
            o.author = val;
        } else if (tw_cli_opt(argc, argv, &i, "--category", &val)) {
            if (!val || !*val)
                urc = tw_cli_usage_error(v, "--category needs a name");
            o.category = val;
        } else if (tw_cli_opt(argc, argv, &i, "--platform", &val)) {
            if (!val || !*val)
                urc = tw_cli_usage_error(v, "--platform needs a name");
            o.platform = val;
        } else if (tw_cli_opt(argc, argv, &i, "--map", &val)) {
            if (!val || !*val)
                urc = tw_cli_usage_error(v, "--map needs FIELD=NAME,...");
            o.map = val;
        } else if (tw_cli_opt(argc, argv, &i, "--depth", &val)) {
            if (!(urc = tw_cli_opt_long(v, "--depth", val, 0, INT_MAX, &num)))
                o.depth = (int)num;
        } else if (tw_cli_opt(argc, argv, &i, "--max-pages", &val)) {
            if (!(urc = tw_cli_opt_long(v, "--max-pages", val, 1, INT_MAX, &num)))
                o.max_pages = (int)num;
        } else if (tw_cli_opt(argc, argv, &i, "--near-dup", &val)) {
            char *end;
            o.near_dup = val ? strtod(val, &end) : 0;
            if (!val || *end || o.near_dup <= 0)
                urc = tw_cli_usage_error(v, "--near-dup needs a similarity in (0, 1], or 2 "
                                            "for off");
        } else if (strcmp(argv[i], "--refresh") == 0) {
            o.refresh = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            urc = tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        } else {
            sources[n++] = argv[i];
        }
    }
    if (!urc && n == 0)
        urc = tw_cli_usage_error(v, "give at least one SOURCE");
    if (urc) {
        tw_free(sources);
        return urc;
    }
    o.progress = !quiet && !json && isatty(STDERR_FILENO);
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0) {
        tw_free(sources);
        return tw_cli_fail();
    }
    struct tw_ingest_summary s;
    tw_ingest_summary_init(&s);
    int rc = tw_ingest(h, sources, n, &o, &s);
    if (rc == 0 || s.found > 0) {
        if (json) {
            json_t *j = tw_ingest_summary_json(&s);
            char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
            if (text)
                printf("%s\n", text);
            free(text);
            json_decref(j);
        } else {
            print_summary(&s);
        }
    }
    tw_ingest_summary_free(&s);
    tw_home_close(h);
    tw_free(sources);
    if (rc == 0)
        rc = tw_cli_flush_stdout();
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_ingest = {
    .name = "ingest",
    .summary = "collect documents into the warehouse (folders, records, web, git)",
    .usage =
        "usage: twin [--home DIR] ingest SOURCE... [--author NAME] [--category C]\n"
        "                  [--platform P] [--map FIELD=NAME,...] [--depth N] [--max-pages N]\n"
        "                  [--refresh] [--near-dup S] [--json] [--quiet]\n\n"
        "Each SOURCE is one of:\n"
        "  a folder          Markdown, HTML, plain text and source code files, recursively\n"
        "                    (links that leave the folder, binaries, images and files over\n"
        "                    10 MiB are skipped); with --map, its .json/.jsonl/.csv files\n"
        "                    as records instead\n"
        "  a file            .json, .jsonl or .csv records (see --map), or one Markdown,\n"
        "                    HTML, text or code file\n"
        "  http(s)://...     web pages: the pages given, or a crawl within each host to\n"
        "                    --depth N (default 0) and --max-pages N (default 100); RSS/Atom\n"
        "                    feeds and sitemaps expand to their links; robots.txt is obeyed;\n"
        "                    pages already ingested are not fetched again unless --refresh\n"
        "  a git repository  a local repository (a folder with .git) or a URL ending in .git,\n"
        "                    git@host:path or ssh://...: the files at HEAD as one document\n\n"
        "Documents are standardised (UTF-8 validated, NFC, white space), deduplicated (the\n"
        "same text under another source, or a near-duplicate: MinHash similarity >= 0.9,\n"
        "--near-dup S to change, 2 for off) and written to the warehouse in transactions;\n"
        "an interrupted ingest can simply be run again. --author names the author of\n"
        "documents that do not name one; --category (article, post, repository, or any\n"
        "name) and --platform set those fields. --map maps record fields to document\n"
        "fields: author, content, title, date, uri, category, platform (for example\n"
        "--map author=name,content=text,title=year,date=year). Prints a summary (--json:\n"
        "as JSON) of what was found, ingested, updated, unchanged, duplicated, skipped\n"
        "(by reason) and failed (with the error of each).\n",
    .run = run,
};

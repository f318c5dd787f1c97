// twin docs (ls, show, rm) and twin authors (ls): reading and pruning the warehouse.
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/text_args.h"
#include "store/home.h"
#include "store/warehouse.h"

static void date(int64_t t, char *buf, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (t == 0 || !gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%d", &tm))
        snprintf(buf, cap, "-");
}

static json_t *doc_json(const struct tw_wh_doc *d, bool content)
{
    json_error_t err;
    json_t *meta = json_loads(d->metadata ? d->metadata : "{}", 0, &err);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s, s:I, s:I, s:s, s:I, s:o}", "id",
                          d->id, "author", d->author ? d->author : "", "category", d->category,
                          "platform", d->platform, "uri", d->uri, "title", d->title, "sha256",
                          d->sha256, "bytes", (json_int_t)d->content_len, "published_at",
                          (json_int_t)d->published_at, "extractor", d->extractor, "fetched_at",
                          (json_int_t)d->fetched_at, "metadata", meta ? meta : json_object());
    if (j && content)
        json_object_set_new(j, "content", json_stringn(d->content, d->content_len));
    return j;
}

static int ls_one(void *ud, const struct tw_wh_doc *d)
{
    if (*(bool *)ud)
        return tw_cli_print_json(doc_json(d, false), 0);
    char day[32];
    date(d->published_at, day, sizeof day);
    printf("%.8s  %-10s  %-22.22s  %-10s %8zu  %s\n", d->id, day, d->author, d->category,
           d->content_len, d->title ? d->title : d->uri);
    return 0;
}

static int show_one(void *ud, const struct tw_wh_doc *d)
{
    if (*(bool *)ud)
        return tw_cli_print_json(doc_json(d, true), 0);
    char pub[32], got[32];
    date(d->published_at, pub, sizeof pub);
    date(d->fetched_at, got, sizeof got);
    printf("id:        %s\nauthor:    %s\ncategory:  %s\nplatform:  %s\nuri:       %s\n"
           "title:     %s\npublished: %s\nfetched:   %s\nextractor: %s\nsha256:    %s\n"
           "metadata:  %s\nbytes:     %zu\n\n",
           d->id, d->author, d->category, d->platform, d->uri, d->title ? d->title : "-", pub, got,
           d->extractor, d->sha256, d->metadata, d->content_len);
    fwrite(d->content, 1, d->content_len, stdout);
    printf("\n");
    return 0;
}

static int take_id(void *ud, const struct tw_wh_doc *d)
{
    memcpy(ud, d->id, TW_UUID_LEN + 1);
    return 0;
}

static int docs_run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_docs;
    if (argc < 2)
        return tw_cli_usage_error(v, "give ls, show or rm");
    const char *sub = argv[1], *val;
    struct tw_wh_filter f = { 0 };
    bool json = false;
    const char *args[64];
    int n = 0;
    for (int i = 2; i < argc; i++) {
        if (tw_cli_opt(argc, argv, &i, "--author", &val)) {
            if (!val)
                return tw_cli_usage_error(v, "--author needs a NAME");
            f.author = val;
        } else if (tw_cli_opt(argc, argv, &i, "--category", &val)) {
            if (!val)
                return tw_cli_usage_error(v, "--category needs a name");
            f.category = val;
        } else if (tw_cli_opt(argc, argv, &i, "--limit", &val)) {
            long lim;
            int urc = tw_cli_opt_long(v, "--limit", val, 1, LONG_MAX, &lim);
            if (urc)
                return urc;
            f.limit = lim;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return tw_cli_usage_error(v, "unknown option '%s'", argv[i]);
        } else if (n < 64) {
            args[n++] = argv[i];
        } else {
            return tw_cli_usage_error(v, "at most 64 documents at a time");
        }
    }
    bool ls = strcmp(sub, "ls") == 0, show = strcmp(sub, "show") == 0, rm = strcmp(sub, "rm") == 0;
    if (!ls && !show && !rm)
        return tw_cli_usage_error(v, "unknown subcommand '%s' (ls, show, rm)", sub);
    if (ls && n)
        return tw_cli_usage_error(v, "unexpected argument '%s'", args[0]);
    if ((show || rm) && !n)
        return tw_cli_usage_error(v, "%s needs a document ID (or URI)", sub);
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    int rc = 0;
    if (ls) {
        rc = tw_wh_docs(h, &f, ls_one, &json);
    } else if (show) {
        for (int i = 0; !rc && i < n; i++)
            rc = tw_wh_doc_get(h, args[i], show_one, &json);
    } else {
        // All or none: the ids are resolved and deleted in one transaction.
        rc = tw_wh_begin(h);
        for (int i = 0; !rc && i < n; i++) {
            char id[TW_UUID_LEN + 1];
            rc = tw_wh_doc_get(h, args[i], take_id, id);
            if (!rc)
                rc = tw_wh_doc_delete(h, id);
        }
        if (!rc)
            rc = tw_wh_commit(h);
        if (rc)
            tw_wh_rollback(h);
        else
            printf("removed %d document%s\n", n, n == 1 ? "" : "s");
    }
    tw_home_close(h);
    if (!rc)
        rc = tw_cli_flush_stdout();
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_docs = {
    .name = "docs",
    .summary = "list, show or remove the warehouse's documents",
    .usage = "usage: twin [--home DIR] docs ls [--author NAME] [--category C] [--limit N]\n"
             "                                   [--json]\n"
             "       twin [--home DIR] docs show ID|URI... [--json]\n"
             "       twin [--home DIR] docs rm ID|URI...\n\n"
             "ls prints one line per document (id prefix, date, author, category, bytes,\n"
             "title), by author and date; --json prints one object per line. show prints a\n"
             "document's fields and text (--json: one object with the content). An ID may\n"
             "be a unique prefix of 8 characters or more. rm removes documents (all or\n"
             "none) and records the removal in the change log, so that the feature\n"
             "pipeline drops their chunks.\n",
    .run = docs_run,
};

static int author_one(void *ud, const struct tw_wh_author *a)
{
    if (*(bool *)ud)
        return tw_cli_print_json(json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", a->id, "full_name",
                                           a->full_name, "first_name", a->first_name, "last_name",
                                           a->last_name, "documents", (json_int_t)a->n_documents),
                                 0);
    printf("%.8s  %6" PRId64 "  %s\n", a->id, a->n_documents, a->full_name);
    return 0;
}

static int authors_run(struct tw_cli *cli, int argc, char **argv)
{
    const struct tw_verb *v = &tw_verb_authors;
    bool json = false;
    if (argc < 2 || strcmp(argv[1], "ls") != 0)
        return tw_cli_usage_error(v, "give ls");
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            return tw_cli_usage_error(v, "unexpected argument '%s'", argv[i]);
    }
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    int rc = tw_wh_authors(h, author_one, &json);
    tw_home_close(h);
    if (!rc)
        rc = tw_cli_flush_stdout();
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_authors = {
    .name = "authors",
    .summary = "list the warehouse's authors",
    .usage = "usage: twin [--home DIR] authors ls [--json]\n\n"
             "One line per author: id prefix, number of documents, full name (--json: one\n"
             "object per line with first and last names).\n",
    .run = authors_run,
};

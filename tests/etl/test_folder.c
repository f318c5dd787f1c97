// Tests the folder source (src/etl/folder.c) on a temporary tree: the exact documents (URI,
// title, content, category, extractor, metadata, date) and skip reasons for every kind of
// file, hidden and vendored folders, the size limit, unreadable files, special files, and
// symbolic links (inside the root, outside it, dangling, loops); the walk's order, the
// sink's stop value, progress, and the errors for a missing root or one that is a file.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "check.h"
#include "etl/source.h"

#define MTIME 1700000000

struct doc {
    char *rel; // the URI without "file://<root>/"
    char *title, *content, *category, *platform, *extractor, *meta;
    int64_t published_at;
};

struct rec {
    const char *prefix; // "file://<real root>/"
    struct doc docs[64];
    int n_docs;
    char *skips[64]; // "<rel> <reason>"
    int n_skips;
    char *fails[16]; // "<rel>|<message>"
    int n_fails;
    int64_t last_done, last_total, n_progress;
    int stop_after; // > 0: the doc callback returns 7 at that document
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static const char *rel_of(const struct rec *r, const char *uri)
{
    size_t n = strlen(r->prefix);
    return strncmp(uri, r->prefix, n) == 0 ? uri + n : uri;
}

static int on_doc(void *ud, const struct tw_doc_in *d)
{
    struct rec *r = ud;
    REQUIRE(r->n_docs < 64);
    struct doc *x = &r->docs[r->n_docs++];
    x->rel = strdup(rel_of(r, d->uri));
    x->title = dup_or_null(d->title);
    x->content = strndup(d->content, d->content_len);
    x->category = dup_or_null(d->category);
    x->platform = dup_or_null(d->platform);
    x->extractor = dup_or_null(d->extractor);
    x->published_at = d->published_at;
    char *m = NULL;
    REQUIRE(d->metadata && tw_json_dump(d->metadata, JSON_COMPACT | JSON_SORT_KEYS, &m) == 0);
    x->meta = strdup(m);
    tw_free(m);
    return r->stop_after && r->n_docs == r->stop_after ? 7 : 0;
}

static void on_skip(void *ud, const char *uri, const char *reason)
{
    struct rec *r = ud;
    REQUIRE(r->n_skips < 64);
    char *s;
    REQUIRE(asprintf(&s, "%s %s", rel_of(r, uri), reason) > 0);
    r->skips[r->n_skips++] = s;
}

static void on_fail(void *ud, const char *uri, const char *message)
{
    struct rec *r = ud;
    REQUIRE(r->n_fails < 16);
    char *s;
    REQUIRE(asprintf(&s, "%s|%s", rel_of(r, uri), message) > 0);
    r->fails[r->n_fails++] = s;
}

static void on_progress(void *ud, int64_t done, int64_t total)
{
    struct rec *r = ud;
    CHECK(done == r->last_done + 1); // one step per file
    r->last_done = done;
    r->last_total = total;
    r->n_progress++;
}

static void rec_free(struct rec *r)
{
    for (int i = 0; i < r->n_docs; i++) {
        struct doc *x = &r->docs[i];
        free(x->rel), free(x->title), free(x->content), free(x->category), free(x->platform);
        free(x->extractor), free(x->meta);
    }
    for (int i = 0; i < r->n_skips; i++)
        free(r->skips[i]);
    for (int i = 0; i < r->n_fails; i++)
        free(r->fails[i]);
    memset(r, 0, sizeof *r);
}

static int run(const char *root, int64_t max_bytes, struct rec *r, const char *prefix)
{
    memset(r, 0, sizeof *r);
    r->prefix = prefix;
    struct tw_sink sink = {
        .ud = r, .doc = on_doc, .skip = on_skip, .fail = on_fail, .progress = on_progress
    };
    struct tw_folder_options opt = { .max_bytes = max_bytes };
    return tw_source_folder(root, &opt, &sink);
}

static const struct doc *find_doc(const struct rec *r, const char *rel)
{
    for (int i = 0; i < r->n_docs; i++)
        if (strcmp(r->docs[i].rel, rel) == 0)
            return &r->docs[i];
    return NULL;
}

static char root[64], outside[64];

static void put(const char *rel, const void *data, size_t len)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    REQUIRE(tw_file_write_atomic(p, data, len) == 0);
    struct timespec ts[2] = { { MTIME, 0 }, { MTIME, 0 } };
    REQUIRE(utimensat(AT_FDCWD, p, ts, 0) == 0);
}

static void put_str(const char *rel, const char *s)
{
    put(rel, s, strlen(s));
}

static void dir(const char *rel)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    REQUIRE(mkdir(p, 0755) == 0);
}

static void link_to(const char *target, const char *rel)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    REQUIRE(symlink(target, p) == 0);
}

static bool can_lock_files;

static void make_tree(void)
{
    strcpy(root, "/tmp/twin-test-folder-XXXXXX");
    strcpy(outside, "/tmp/twin-test-outside-XXXXXX");
    REQUIRE(mkdtemp(root) && mkdtemp(outside));
    char p[256];
    snprintf(p, sizeof p, "%s/secret.md", outside);
    REQUIRE(tw_file_write_atomic(p, "# Secret\n", 9) == 0);

    put_str("a.md", "# Alpha\n\nAlpha body.\n");
    put_str("b.html", "<html><head><title>Bee</title></head><body><nav>menu</nav>"
                      "<p>Bee body</p><footer>foot</footer></body></html>");
    put_str("c.txt", "Sea title\n\nSea body\n");
    put_str("d.c", "int main(void)\n{\n    return 0;\n}\n");
    put_str("Makefile", "all:\n\tcc d.c\n");
    put_str("NOTES", "Notes title\n\nnotes body\n"); // no extension, text
    static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0,
                                         0,    13,  'I', 'H', 'D',  'R',  0,    0,    0, 1 };
    put("e.png", png, sizeof png);
    static const char blob[] = "text then\0\0\0 NUL bytes";
    put("blob", blob, sizeof blob - 1);                        // no extension, binary
    put("nul.txt", blob, sizeof blob - 1);                     // a known kind, binary all the same
    put_str("h.txt", "Latin-1 caf\xE9\n\nstill a document\n"); // not UTF-8: standardised later
    char big[300];
    memset(big, 'x', sizeof big);
    put("big.md", big, sizeof big);
    put_str("empty.txt", "");
    put_str("weird.xyz", "text of an unknown kind\n");
    put_str(".hidden.md", "# Hidden\n");
    dir(".git");
    put_str(".git/config", "[core]\n");
    dir("node_modules");
    dir("node_modules/pkg");
    put_str("node_modules/pkg/index.js", "module.exports = 1;\n");
    dir("sub");
    dir("sub/build");
    put_str("sub/build/out.txt", "generated\n");
    put_str("sub/deep.md", "Deep intro\n\n## Deep\n\ntext\n");
    dir(".content");
    put_str(".content/x.md", "# Linked in\n\nreached through docs\n");
    snprintf(p, sizeof p, "%s/fifo", root);
    REQUIRE(mkfifo(p, 0600) == 0);
    // Links: to a file seen under its own name, to a folder only a link reaches, out of the
    // root (file and folder), dangling, to itself, and up to an ancestor.
    link_to("a.md", "link_a.md");
    link_to(".content", "docs");
    snprintf(p, sizeof p, "%s/secret.md", outside);
    link_to(p, "outside.md");
    link_to(outside, "outdir");
    link_to("../sub/../..", "sub/up"); // resolves into /tmp: outside
    link_to("nowhere.md", "broken");
    link_to("self", "self");
    link_to("..", "sub/loop");
    // A file that cannot be read (root reads everything: then it is a document).
    put_str("locked.txt", "Locked\n\nbody\n");
    snprintf(p, sizeof p, "%s/locked.txt", root);
    REQUIRE(chmod(p, 0) == 0);
    int fd = open(p, O_RDONLY);
    can_lock_files = fd < 0;
    if (fd >= 0)
        close(fd);
}

static void test_tree(void)
{
    char *real = realpath(root, NULL);
    REQUIRE(real);
    char prefix[300];
    snprintf(prefix, sizeof prefix, "file://%s/", real);
    struct rec r;
    CHECK_OK(run(root, 200, &r, prefix));

    // The documents, in walk order: names sorted bytewise, links after the walk.
    const char *want_docs[] = { "Makefile",    "NOTES",     "a.md",  "b.html",
                                "c.txt",       "d.c",       "h.txt", "locked.txt",
                                "sub/deep.md", "docs/x.md", NULL };
    int n_want = 0;
    for (int i = 0; want_docs[i]; i++) {
        if (strcmp(want_docs[i], "locked.txt") == 0 && can_lock_files)
            continue;
        CHECK(n_want < r.n_docs && strcmp(r.docs[n_want].rel, want_docs[i]) == 0);
        if (n_want < r.n_docs && strcmp(r.docs[n_want].rel, want_docs[i]) != 0)
            fprintf(stderr, "doc %d: %s, expected %s\n", n_want, r.docs[n_want].rel, want_docs[i]);
        n_want++;
    }
    CHECK_EQ_INT(r.n_docs, n_want);

    const struct doc *d = find_doc(&r, "a.md");
    REQUIRE(d);
    CHECK_EQ_STR(d->title, "Alpha");
    CHECK_EQ_STR(d->content, "Alpha\n\nAlpha body.");
    CHECK_EQ_STR(d->extractor, "markdown");
    CHECK(d->category == NULL && d->platform == NULL);
    CHECK_EQ_INT(d->published_at, MTIME);
    CHECK_EQ_STR(d->meta, "{\"bytes\":21,\"kind\":\"markdown\",\"mtime\":1700000000,\"path\":"
                          "\"a.md\"}");
    d = find_doc(&r, "b.html");
    REQUIRE(d);
    CHECK_EQ_STR(d->title, "Bee");
    CHECK_EQ_STR(d->content, "Bee body");
    CHECK_EQ_STR(d->extractor, "html");
    d = find_doc(&r, "c.txt");
    REQUIRE(d);
    CHECK_EQ_STR(d->title, "Sea title");
    CHECK_EQ_STR(d->content, "Sea title\n\nSea body\n");
    CHECK_EQ_STR(d->extractor, "text");
    d = find_doc(&r, "d.c");
    REQUIRE(d);
    CHECK_EQ_STR(d->title, "d.c");
    CHECK_EQ_STR(d->category, "repository");
    CHECK_EQ_STR(d->extractor, "code");
    CHECK_EQ_STR(d->content, "int main(void)\n{\n    return 0;\n}\n");
    CHECK_EQ_STR(d->meta, "{\"bytes\":33,\"kind\":\"code\",\"mtime\":1700000000,\"path\":"
                          "\"d.c\"}");
    d = find_doc(&r, "Makefile");
    REQUIRE(d);
    CHECK_EQ_STR(d->extractor, "code");
    CHECK_EQ_STR(d->title, "Makefile");
    d = find_doc(&r, "NOTES");
    REQUIRE(d);
    CHECK_EQ_STR(d->extractor, "text");
    CHECK_EQ_STR(d->title, "Notes title");
    d = find_doc(&r, "h.txt");
    REQUIRE(d);
    CHECK_EQ_STR(d->content, "Latin-1 caf\xE9\n\nstill a document\n");
    d = find_doc(&r, "sub/deep.md");
    REQUIRE(d);
    CHECK_EQ_STR(d->title, "Deep");
    CHECK(strstr(d->meta, "\"path\":\"sub/deep.md\"") != NULL);
    d = find_doc(&r, "docs/x.md");
    REQUIRE(d);
    CHECK_EQ_STR(d->title, "Linked in");
    CHECK_EQ_STR(d->content, "Linked in\n\nreached through docs");
    CHECK(strstr(d->meta, "\"path\":\"docs/x.md\"") != NULL);

    // Every skip, with its reason, once.
    const char *want_skips[] = { ".content hidden",
                                 ".git hidden",
                                 ".hidden.md hidden",
                                 "big.md too large",
                                 "blob binary",
                                 "e.png image",
                                 "empty.txt empty",
                                 "fifo special file",
                                 "node_modules vendored",
                                 "nul.txt binary",
                                 "sub/build vendored",
                                 "weird.xyz unknown kind",
                                 "broken broken symlink",
                                 "link_a.md duplicate",
                                 "outdir symlink outside root",
                                 "outside.md symlink outside root",
                                 "self symlink loop",
                                 "sub/loop symlink loop",
                                 "sub/up symlink outside root",
                                 NULL };
    int n_skips = 0;
    for (int i = 0; want_skips[i]; i++, n_skips++) {
        CHECK(i < r.n_skips && strcmp(r.skips[i], want_skips[i]) == 0);
        if (i < r.n_skips && strcmp(r.skips[i], want_skips[i]) != 0)
            fprintf(stderr, "skip %d: %s, expected %s\n", i, r.skips[i], want_skips[i]);
    }
    CHECK_EQ_INT(r.n_skips, n_skips);

    if (can_lock_files) {
        CHECK_EQ_INT(r.n_fails, 1);
        char want[400];
        snprintf(want, sizeof want, "locked.txt|%s/locked.txt: %s", real, strerror(EACCES));
        CHECK(r.n_fails == 1 && strcmp(r.fails[0], want) == 0);
    } else {
        CHECK_EQ_INT(r.n_fails, 0);
    }
    // Progress: one step per regular file met outside hidden and vendored folders (documents,
    // files skipped or failed, the duplicate), total unknown.
    CHECK_EQ_INT(r.last_total, 0);
    CHECK_EQ_INT(r.n_progress, 17);
    rec_free(&r);

    // The default limit (10 MiB) takes big.md; the same walk twice gives the same result.
    CHECK_OK(run(root, 0, &r, prefix));
    CHECK(find_doc(&r, "big.md") != NULL);
    CHECK_EQ_INT(r.n_docs, n_want + 1);
    struct rec r2;
    CHECK_OK(run(root, 0, &r2, prefix));
    CHECK_EQ_INT(r2.n_docs, r.n_docs);
    for (int i = 0; i < r.n_docs && i < r2.n_docs; i++)
        CHECK_EQ_STR(r2.docs[i].rel, r.docs[i].rel);
    rec_free(&r2);
    rec_free(&r);

    // A root given through a link and with a trailing slash: the same URIs (the real path).
    char via[300];
    snprintf(via, sizeof via, "%s/docs/", root);
    char p[300];
    snprintf(p, sizeof p, "%s.lnk", root);
    REQUIRE(symlink(root, p) == 0);
    strcat(p, "/");
    CHECK_OK(run(p, 200, &r, prefix));
    CHECK_EQ_INT(r.n_docs, n_want);
    CHECK(find_doc(&r, "a.md") != NULL);
    rec_free(&r);
    p[strlen(p) - 1] = 0;
    unlink(p);

    // The root itself a link-reached folder: links inside it resolve against its real path.
    snprintf(prefix, sizeof prefix, "file://%s/.content/", real);
    CHECK_OK(run(via, 0, &r, prefix));
    CHECK_EQ_INT(r.n_docs, 1);
    CHECK(find_doc(&r, "x.md") != NULL);
    rec_free(&r);
    free(real);
}

static int count_doc(void *ud, const struct tw_doc_in *d)
{
    struct rec *r = ud;
    (void)d;
    r->n_docs++;
    return 0;
}

static void on_skip_quiet(void *ud, const char *uri, const char *reason)
{
    (void)ud, (void)uri, (void)reason;
}

static void on_fail_quiet(void *ud, const char *uri, const char *message)
{
    (void)ud, (void)uri, (void)message;
}

static void test_stop_and_errors(void)
{
    struct rec r;
    memset(&r, 0, sizeof r);
    r.prefix = "";
    r.stop_after = 2;
    struct tw_sink sink = { .ud = &r, .doc = on_doc, .skip = on_skip, .fail = on_fail };
    CHECK_EQ_INT(tw_source_folder(root, NULL, &sink), 7);
    CHECK_EQ_INT(r.n_docs, 2);
    rec_free(&r);

    r.prefix = "";
    char p[300];
    snprintf(p, sizeof p, "%s/no-such-folder", root);
    CHECK_EQ_INT(tw_source_folder(p, NULL, &sink), TW_ENOENT);
    CHECK(strncmp(tw_error_msg(), p, strlen(p)) == 0);
    snprintf(p, sizeof p, "%s/a.md", root);
    CHECK_EQ_INT(tw_source_folder(p, NULL, &sink), TW_EINVAL);
    char want[400];
    snprintf(want, sizeof want, "%s: not a directory", p);
    CHECK_EQ_STR(tw_error_msg(), want);
    CHECK_EQ_INT(r.n_docs + r.n_skips + r.n_fails, 0);

    // Allocation failures: an error, never a crash or a leak (a sink that allocates nothing).
    struct tw_sink counting = {
        .ud = &r, .doc = count_doc, .skip = on_skip_quiet, .fail = on_fail_quiet
    };
    long live = tw_mem_live();
    int failures = 0, rc = 0;
    for (long k = 1; k < 2000; k++) {
        memset(&r, 0, sizeof r);
        tw_mem_fail_after(k);
        rc = tw_source_folder(root, NULL, &counting);
        tw_mem_fail_after(0);
        CHECK_EQ_INT(tw_mem_live(), live);
        if (rc == 0)
            break;
        failures++;
        CHECK_EQ_INT(rc, TW_ENOMEM);
    }
    CHECK(rc == 0 && failures > 0);
}

// Removes the chain of folders named `name` under dfd, depth levels deep (paths too long for
// nftw).
static void remove_chain(int dfd, const char *name, int depth)
{
    if (depth > 1) {
        int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY);
        REQUIRE(sub >= 0);
        remove_chain(sub, name, depth - 1);
        close(sub);
    }
    CHECK(unlinkat(dfd, name, AT_REMOVEDIR) == 0);
}

// A folder whose path is longer than PATH_MAX cannot be listed: a failure that names it, and
// the walk goes on (works whoever runs it, root included).
static void test_read_failure(void)
{
    char top[64] = "/tmp/twin-test-deep-XXXXXX";
    REQUIRE(mkdtemp(top));
    char name[201];
    memset(name, 'd', 200);
    name[200] = 0;
    int depth = 25; // 25 * 201 bytes > PATH_MAX
    int fd = open(top, O_RDONLY | O_DIRECTORY);
    REQUIRE(fd >= 0);
    for (int i = 0; i < depth; i++) {
        REQUIRE(mkdirat(fd, name, 0755) == 0);
        int sub = openat(fd, name, O_RDONLY | O_DIRECTORY);
        REQUIRE(sub >= 0);
        close(fd);
        fd = sub;
    }
    close(fd);
    char p[300];
    snprintf(p, sizeof p, "%s/ok.txt", top);
    REQUIRE(tw_file_write_atomic(p, "fine\n", 5) == 0);
    char *real = realpath(top, NULL);
    REQUIRE(real);
    char prefix[300];
    snprintf(prefix, sizeof prefix, "file://%s/", real);
    struct rec r;
    CHECK_OK(run(top, 0, &r, prefix));
    CHECK_EQ_INT(r.n_docs, 1);
    CHECK(r.n_docs == 1 && strcmp(r.docs[0].rel, "ok.txt") == 0);
    CHECK_EQ_INT(r.n_fails, 1);
    if (r.n_fails == 1) {
        const char *msg = strchr(r.fails[0], '|');
        CHECK(msg && strncmp(msg + 1, real, strlen(real)) == 0);
        CHECK(msg && strstr(msg, strerror(ENAMETOOLONG)) != NULL);
        CHECK(strncmp(r.fails[0], name, 200) == 0); // the URI names the folder
    }
    rec_free(&r);
    unlink(p);
    fd = open(top, O_RDONLY | O_DIRECTORY);
    REQUIRE(fd >= 0);
    remove_chain(fd, name, depth);
    close(fd);
    CHECK(rmdir(top) == 0);
    free(real);
}

int main(void)
{
    make_tree();
    test_tree();
    test_stop_and_errors();
    test_read_failure();
    char p[300];
    snprintf(p, sizeof p, "%s/locked.txt", root);
    chmod(p, 0600);
    CHECK_OK(tw_remove_tree(root));
    CHECK_OK(tw_remove_tree(outside));
    return check_report("test_folder");
}

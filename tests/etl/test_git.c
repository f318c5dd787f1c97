// Tests etl/git.c (tw_source_git) on repositories made here with libgit2: the document's
// content (order and format), its metadata (files, commit, branch), the skip reasons, a
// second commit, the document limit, a detached HEAD, an empty repository, paths that are
// not repositories, and a clone through a file:// URL whose temporary folder must be gone.
#define _GNU_SOURCE
#include <dirent.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/vec.h"
#include "check.h"
#include "etl/source.h"

// ---- a sink that keeps what it is given

struct reason_count {
    char reason[32];
    int n;
};

struct collect {
    int docs;
    char *uri, *platform, *title, *content, *category, *extractor, *fail;
    int64_t published_at;
    json_t *meta;
    struct reason_count skips[16];
    int n_skips;
    tw_vec skip_uris; // char *
};

static int on_doc(void *ud, const struct tw_doc_in *d)
{
    struct collect *c = ud;
    c->docs++;
    c->uri = tw_strdup(d->uri);
    c->platform = d->platform ? tw_strdup(d->platform) : NULL;
    c->title = d->title ? tw_strdup(d->title) : NULL;
    c->content = tw_strndup(d->content, d->content_len);
    c->category = d->category ? tw_strdup(d->category) : NULL;
    c->extractor = tw_strdup(d->extractor);
    c->published_at = d->published_at;
    c->meta = d->metadata ? json_deep_copy(d->metadata) : NULL;
    return 0;
}

static void on_skip(void *ud, const char *uri, const char *reason)
{
    struct collect *c = ud;
    char *u = tw_strdup(uri);
    REQUIRE(u && tw_vec_push(&c->skip_uris, &u) == 0);
    for (int i = 0; i < c->n_skips; i++) {
        if (strcmp(c->skips[i].reason, reason) == 0) {
            c->skips[i].n++;
            return;
        }
    }
    REQUIRE(c->n_skips < 16);
    snprintf(c->skips[c->n_skips].reason, sizeof c->skips[0].reason, "%s", reason);
    c->skips[c->n_skips++].n = 1;
}

static void on_fail(void *ud, const char *uri, const char *message)
{
    struct collect *c = ud;
    (void)uri;
    tw_free(c->fail);
    c->fail = tw_strdup(message);
}

static void collect_init(struct collect *c, struct tw_sink *s)
{
    memset(c, 0, sizeof *c);
    tw_vec_init(&c->skip_uris, sizeof(char *));
    *s = (struct tw_sink){ .ud = c, .doc = on_doc, .skip = on_skip, .fail = on_fail };
}

static void collect_free(struct collect *c)
{
    tw_free(c->uri);
    tw_free(c->platform);
    tw_free(c->title);
    tw_free(c->content);
    tw_free(c->category);
    tw_free(c->extractor);
    tw_free(c->fail);
    json_decref(c->meta);
    for (size_t i = 0; i < c->skip_uris.len; i++)
        tw_free(TW_VEC_AT(&c->skip_uris, char *, i));
    tw_vec_free(&c->skip_uris);
}

static int skipped(const struct collect *c, const char *reason)
{
    for (int i = 0; i < c->n_skips; i++)
        if (strcmp(c->skips[i].reason, reason) == 0)
            return c->skips[i].n;
    return 0;
}

static bool skipped_uri(const struct collect *c, const char *uri)
{
    for (size_t i = 0; i < c->skip_uris.len; i++)
        if (strcmp(TW_VEC_AT(&c->skip_uris, char *, i), uri) == 0)
            return true;
    return false;
}

// ---- making repositories

static char tmpdir[1024];

static void put(const char *repo_dir, const char *rel, const void *data, size_t len)
{
    char path[PATH_MAX];
    REQUIRE(snprintf(path, sizeof path, "%s/%s", repo_dir, rel) < (int)sizeof path);
    char *slash = strrchr(path, '/');
    *slash = 0;
    REQUIRE(tw_mkdir_p(path, 0755) == 0);
    *slash = '/';
    REQUIRE(tw_file_write_atomic(path, data, len) == 0);
}

static void puts_file(const char *repo_dir, const char *rel, const char *text)
{
    put(repo_dir, rel, text, strlen(text));
}

static git_repository *init_repo(const char *dir)
{
    git_repository *repo;
    git_repository_init_options o;
    git_repository_init_options_init(&o, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    o.flags = GIT_REPOSITORY_INIT_MKPATH;
    o.initial_head = "main"; // whatever the user's init.defaultBranch says
    REQUIRE(git_repository_init_ext(&repo, dir, &o) == 0);
    return repo;
}

// Commits the work tree (everything, plus a submodule entry "ext" when with_submodule) on
// HEAD at the given time; the new commit's id goes to *out.
static void commit_all(git_repository *repo, int64_t when, bool with_submodule, git_oid *out)
{
    git_index *index;
    REQUIRE(git_repository_index(&index, repo) == 0);
    REQUIRE(git_index_add_all(index, NULL, 0, NULL, NULL) == 0);
    if (with_submodule) {
        git_index_entry e;
        memset(&e, 0, sizeof e);
        e.path = "ext";
        e.mode = GIT_FILEMODE_COMMIT;
        REQUIRE(git_oid_fromstr(&e.id, "0123456789abcdef0123456789abcdef01234567") == 0);
        REQUIRE(git_index_add(index, &e) == 0);
    }
    REQUIRE(git_index_write(index) == 0);
    git_oid tree_id;
    REQUIRE(git_index_write_tree(&tree_id, index) == 0);
    git_index_free(index);
    git_tree *tree;
    REQUIRE(git_tree_lookup(&tree, repo, &tree_id) == 0);
    git_signature *sig;
    REQUIRE(git_signature_new(&sig, "Tess Ter", "tess@example.com", when, 0) == 0);
    git_oid parent_id;
    git_commit *parent = NULL;
    if (git_reference_name_to_id(&parent_id, repo, "HEAD") == 0)
        REQUIRE(git_commit_lookup(&parent, repo, &parent_id) == 0);
    const git_commit *parents[1] = { parent };
    REQUIRE(git_commit_create(out, repo, "HEAD", sig, sig, NULL, "a commit", tree, parent ? 1 : 0,
                              parents) == 0);
    git_commit_free(parent);
    git_signature_free(sig);
    git_tree_free(tree);
}

static void blob_hex(const char *text, char *hex)
{
    git_oid id;
    REQUIRE(git_odb_hash(&id, text, strlen(text), GIT_OBJECT_BLOB) == 0);
    git_oid_tostr(hex, GIT_OID_HEXSZ + 1, &id);
}

// The demo repository: text files in nested folders, and one of each thing to skip.
static const char *const README = "# Demo\n\nHello.\n";
static const char *const NOTES = "notes\n";
static const char *const UTIL = "#define X 1\n";
static const char *const MAIN1 = "int main(void) { return 0; }\n";
static const char *const MAIN2 = "int main(void) { return 1; }\n";
static const char *const LAST = "z";

static void fill_demo(const char *dir)
{
    puts_file(dir, "README.md", README);
    puts_file(dir, "src-notes.txt", NOTES); // '-' sorts before "src/"
    puts_file(dir, "src/lib/util.h", UTIL);
    puts_file(dir, "src/main.c", MAIN1);
    puts_file(dir, "srcz.txt", LAST);
    put(dir, "data.bin", "ab\0cd\0\1\2", 8);
    static const unsigned char png[] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0 };
    put(dir, "img/logo.png", png, sizeof png);
    puts_file(dir, "package-lock.json", "{}\n");
    puts_file(dir, "Cargo.lock", "# lock\n");
    puts_file(dir, "node_modules/x.js", "var x;\n");
    puts_file(dir, "node_modules/y/z.js", "var z;\n");
    puts_file(dir, "pkg/vendor/b.go", "package b\n");
    char big[2000];
    memset(big, 'a', sizeof big);
    put(dir, "big.txt", big, sizeof big);
    char target[PATH_MAX], link[PATH_MAX];
    snprintf(target, sizeof target, "README.md");
    REQUIRE(snprintf(link, sizeof link, "%s/readme-link", dir) < (int)sizeof link);
    REQUIRE(symlink(target, link) == 0);
}

static const char *demo_content(const char *main_c, char *buf, size_t cap)
{
    snprintf(buf, cap,
             "README.md:\n%s\n\n"
             "src-notes.txt:\n%s\n\n"
             "src/lib/util.h:\n%s\n\n"
             "src/main.c:\n%s\n\n"
             "srcz.txt:\n%s\n\n",
             README, NOTES, UTIL, main_c, LAST);
    return buf;
}

static void check_files(const json_t *meta, const char *main_c)
{
    static const char *const paths[] = { "README.md", "src-notes.txt", "src/lib/util.h",
                                         "src/main.c", "srcz.txt" };
    const char *texts[] = { README, NOTES, UTIL, main_c, LAST };
    json_t *files = json_object_get(meta, "files");
    REQUIRE(json_is_array(files));
    CHECK_EQ_INT(json_array_size(files), 5);
    CHECK_EQ_INT(json_integer_value(json_object_get(meta, "file_count")), 5);
    for (size_t i = 0; i < 5 && i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i);
        char hex[GIT_OID_HEXSZ + 1];
        blob_hex(texts[i], hex);
        CHECK_EQ_STR(json_string_value(json_object_get(f, "path")), paths[i]);
        CHECK_EQ_INT(json_integer_value(json_object_get(f, "bytes")), strlen(texts[i]));
        CHECK_EQ_STR(json_string_value(json_object_get(f, "oid")), hex);
    }
}

// ---- tests

static void test_local(void)
{
    char dir[PATH_MAX], abs[PATH_MAX], uri[PATH_MAX + 8], want[4096], hex[GIT_OID_HEXSZ + 1];
    REQUIRE(snprintf(dir, sizeof dir, "%s/demo", tmpdir) < (int)sizeof dir);
    git_repository *repo = init_repo(dir);
    fill_demo(dir);
    git_oid c1;
    commit_all(repo, 1700000000, true, &c1);
    REQUIRE(realpath(dir, abs));
    snprintf(uri, sizeof uri, "file://%s", abs);

    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    struct tw_git_options opt = { .max_file_bytes = 1000 };
    CHECK_OK(tw_source_git(dir, &opt, &s));
    REQUIRE(c.docs == 1);
    CHECK(c.fail == NULL);
    CHECK_EQ_STR(c.uri, uri);
    CHECK_EQ_STR(c.title, "demo");
    CHECK_EQ_STR(c.platform, "git");
    CHECK_EQ_STR(c.category, TW_DOC_REPOSITORY);
    CHECK_EQ_STR(c.extractor, "git");
    CHECK_EQ_INT(c.published_at, 1700000000);
    CHECK_EQ_STR(c.content, demo_content(MAIN1, want, sizeof want));
    check_files(c.meta, MAIN1);
    git_oid_tostr(hex, sizeof hex, &c1);
    CHECK_EQ_STR(json_string_value(json_object_get(c.meta, "commit")), hex);
    CHECK_EQ_STR(json_string_value(json_object_get(c.meta, "branch")), "main");
    CHECK_EQ_INT(skipped(&c, "lock file"), 2);
    CHECK_EQ_INT(skipped(&c, "vendored"), 2); // node_modules (once) and pkg/vendor
    CHECK_EQ_INT(skipped(&c, "image"), 1);
    CHECK_EQ_INT(skipped(&c, "binary"), 1);
    CHECK_EQ_INT(skipped(&c, "too large"), 1);
    CHECK_EQ_INT(skipped(&c, "submodule"), 1);
    CHECK_EQ_INT(skipped(&c, "symlink"), 1);
    CHECK_EQ_INT(c.n_skips, 7);
    char su[PATH_MAX + 64];
    snprintf(su, sizeof su, "%s/node_modules", uri);
    CHECK(skipped_uri(&c, su));
    snprintf(su, sizeof su, "%s/pkg/vendor", uri);
    CHECK(skipped_uri(&c, su));
    snprintf(su, sizeof su, "%s/img/logo.png", uri);
    CHECK(skipped_uri(&c, su));
    collect_free(&c);

    // The default limit (1 MiB a file) takes big.txt; a trailing slash changes nothing.
    char slashed[PATH_MAX + 2];
    snprintf(slashed, sizeof slashed, "%s/", dir);
    collect_init(&c, &s);
    CHECK_OK(tw_source_git(slashed, NULL, &s));
    REQUIRE(c.docs == 1);
    CHECK_EQ_STR(c.uri, uri);
    CHECK_EQ_INT(skipped(&c, "too large"), 0);
    CHECK(strstr(c.content, "big.txt:\naaaa") != NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(c.meta, "file_count")), 6);
    collect_free(&c);

    // The document limit: README.md fits, the rest is "document full".
    opt.max_bytes = (int64_t)(strlen("README.md:\n\n\n") + strlen(README) + 5);
    collect_init(&c, &s);
    CHECK_OK(tw_source_git(dir, &opt, &s));
    REQUIRE(c.docs == 1);
    snprintf(want, sizeof want, "README.md:\n%s\n\n", README);
    CHECK_EQ_STR(c.content, want);
    CHECK_EQ_INT(skipped(&c, "document full"), 4);
    CHECK_EQ_INT(json_integer_value(json_object_get(c.meta, "file_count")), 1);
    opt.max_bytes = 0;
    collect_free(&c);

    // A second commit: new content, new commit id, its time.
    puts_file(dir, "src/main.c", MAIN2);
    git_oid c2;
    commit_all(repo, 1700000100, true, &c2);
    collect_init(&c, &s);
    CHECK_OK(tw_source_git(dir, &opt, &s));
    REQUIRE(c.docs == 1);
    CHECK_EQ_STR(c.content, demo_content(MAIN2, want, sizeof want));
    check_files(c.meta, MAIN2);
    git_oid_tostr(hex, sizeof hex, &c2);
    CHECK_EQ_STR(json_string_value(json_object_get(c.meta, "commit")), hex);
    CHECK(!git_oid_equal(&c1, &c2));
    CHECK_EQ_INT(c.published_at, 1700000100);
    collect_free(&c);

    // A detached HEAD at the first commit: its content, no branch.
    REQUIRE(git_repository_set_head_detached(repo, &c1) == 0);
    collect_init(&c, &s);
    CHECK_OK(tw_source_git(dir, &opt, &s));
    REQUIRE(c.docs == 1);
    CHECK_EQ_STR(c.content, demo_content(MAIN1, want, sizeof want));
    CHECK(json_is_null(json_object_get(c.meta, "branch")));
    collect_free(&c);
    REQUIRE(git_repository_set_head(repo, "refs/heads/main") == 0);
    git_repository_free(repo);
}

static int entries_in(const char *dir)
{
    DIR *d = opendir(dir);
    REQUIRE(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void test_clone(void)
{
    char dir[PATH_MAX], abs[PATH_MAX], url[PATH_MAX + 8], clones[PATH_MAX], want[4096];
    REQUIRE(snprintf(dir, sizeof dir, "%s/demo", tmpdir) < (int)sizeof dir);
    REQUIRE(realpath(dir, abs));
    snprintf(url, sizeof url, "file://%s", abs);
    // The clone goes under $TMPDIR: a folder of our own, empty before and after.
    REQUIRE(snprintf(clones, sizeof clones, "%s/clones", tmpdir) < (int)sizeof clones);
    REQUIRE(tw_mkdir_p(clones, 0755) == 0);
    char *old = getenv("TMPDIR") ? tw_strdup(getenv("TMPDIR")) : NULL;
    REQUIRE(setenv("TMPDIR", clones, 1) == 0);

    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    struct tw_git_options opt = { .max_file_bytes = 1000 };
    CHECK_OK(tw_source_git(url, &opt, &s));
    REQUIRE(c.docs == 1);
    CHECK_EQ_STR(c.uri, url);
    CHECK_EQ_STR(c.platform, "git"); // a file:// URL has no host
    CHECK_EQ_STR(c.title, "demo");
    CHECK_EQ_STR(c.content, demo_content(MAIN2, want, sizeof want));
    CHECK_EQ_STR(json_string_value(json_object_get(c.meta, "branch")), "main");
    CHECK_EQ_INT(skipped(&c, "too large"), 1);
    CHECK_EQ_INT(skipped(&c, "vendored"), 2);
    CHECK_EQ_INT(entries_in(clones), 0);
    collect_free(&c);

    // A URL that cannot be cloned: an error naming it, and no folder left behind.
    char bad[PATH_MAX + 32];
    snprintf(bad, sizeof bad, "file://%s/nothing-here.git", tmpdir);
    collect_init(&c, &s);
    CHECK_EQ_INT(tw_source_git(bad, NULL, &s), TW_EIO);
    CHECK(strstr(tw_error_msg(), bad) != NULL);
    CHECK_EQ_INT(c.docs, 0);
    CHECK_EQ_INT(entries_in(clones), 0);
    collect_free(&c);

    if (old) {
        setenv("TMPDIR", old, 1);
        tw_free(old);
    } else {
        unsetenv("TMPDIR");
    }
}

// git_clone's remote without insteadOf lookups, as git.c makes it (libgit2 1.5 leaks in them).
static int make_remote(git_remote **out, git_repository *repo, const char *name, const char *url,
                       void *payload)
{
    (void)payload;
    git_remote_create_options ro;
    git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    ro.repository = repo;
    ro.name = name;
    ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
    return git_remote_create_with_opts(out, url, &ro);
}

static void test_bare(void)
{
    // A bare clone of the demo, opened as a local path: named without ".git".
    char src[PATH_MAX], dir[PATH_MAX], abs[PATH_MAX], uri[PATH_MAX + 8];
    REQUIRE(snprintf(src, sizeof src, "%s/demo", tmpdir) < (int)sizeof src);
    REQUIRE(snprintf(dir, sizeof dir, "%s/mirror.git", tmpdir) < (int)sizeof dir);
    git_clone_options co;
    git_clone_options_init(&co, GIT_CLONE_OPTIONS_VERSION);
    co.bare = 1;
    co.remote_cb = make_remote;
    git_repository *repo;
    REQUIRE(git_clone(&repo, src, dir, &co) == 0);
    git_repository_free(repo);
    REQUIRE(realpath(dir, abs));
    snprintf(uri, sizeof uri, "file://%s", abs);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    CHECK_OK(tw_source_git(dir, NULL, &s));
    REQUIRE(c.docs == 1);
    CHECK_EQ_STR(c.uri, uri);
    CHECK_EQ_STR(c.title, "mirror");
    CHECK_EQ_INT(json_integer_value(json_object_get(c.meta, "file_count")), 6);
    collect_free(&c);
}

static void test_empty_and_errors(void)
{
    char dir[PATH_MAX];
    REQUIRE(snprintf(dir, sizeof dir, "%s/empty", tmpdir) < (int)sizeof dir);
    git_repository *repo = init_repo(dir);
    git_repository_free(repo);
    struct collect c;
    struct tw_sink s;
    collect_init(&c, &s);
    CHECK_OK(tw_source_git(dir, NULL, &s));
    CHECK_EQ_INT(c.docs, 0);
    REQUIRE(c.fail != NULL);
    CHECK(strstr(c.fail, "empty repository") != NULL);
    CHECK(strstr(c.fail, dir) != NULL);
    collect_free(&c);

    // A folder that is not a repository (nor in one: /tmp is not searched upwards).
    REQUIRE(snprintf(dir, sizeof dir, "%s/plain/sub", tmpdir) < (int)sizeof dir);
    REQUIRE(tw_mkdir_p(dir, 0755) == 0);
    collect_init(&c, &s);
    CHECK_EQ_INT(tw_source_git(dir, NULL, &s), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "not a git repository") != NULL);
    CHECK(strstr(tw_error_msg(), dir) != NULL);
    // A folder inside a repository is not the repository.
    REQUIRE(snprintf(dir, sizeof dir, "%s/demo/src", tmpdir) < (int)sizeof dir);
    CHECK_EQ_INT(tw_source_git(dir, NULL, &s), TW_EINVAL);
    REQUIRE(snprintf(dir, sizeof dir, "%s/missing", tmpdir) < (int)sizeof dir);
    CHECK_EQ_INT(tw_source_git(dir, NULL, &s), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "not a git repository") != NULL);
    CHECK_EQ_INT(c.docs, 0);
    collect_free(&c);
}

int main(void)
{
    tw_json_init();
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/twin-gittest-XXXXXX", t && *t ? t : "/tmp");
    REQUIRE(mkdtemp(tmpdir) != NULL);
    REQUIRE(git_libgit2_init() > 0);
    long live = tw_mem_live();
    test_local();
    test_clone();
    test_bare();
    test_empty_and_errors();
    CHECK_EQ_INT(tw_mem_live(), live);
    git_libgit2_shutdown();
    tw_remove_tree(tmpdir);
    return check_report("test_git");
}

// Implements tw_source_git (source.h): a git repository as one document. Owns opening a local
// repository or cloning a URL (bare, into a temporary folder under $TMPDIR that is removed
// afterwards), the walk of HEAD's tree with its skip rules (lock files, vendored folders,
// images, binaries, large blobs, submodules, symbolic links), and the document's content and
// metadata. libgit2 does the git work.
#define _GNU_SOURCE // mkdtemp
#include "etl/source.h"

#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "etl/extract.h"
#include "text/utf8.h"

#define DEFAULT_MAX_FILE_BYTES (1 << 20)
#define DEFAULT_MAX_BYTES      (50 << 20)

// The message of libgit2's last error, for ours.
static const char *git_msg(void)
{
    const git_error *e = git_error_last();
    return e && e->message ? e->message : "unknown libgit2 error";
}

// ---- names

static const char *const lock_files[] = {
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock",     "pnpm-lock.yaml", "Cargo.lock",
    "poetry.lock",       "Gemfile.lock",        "composer.lock", "go.sum",         "Pipfile.lock",
    "flake.lock",
};

static const char *const vendored_dirs[] = {
    "node_modules", "vendor", "third_party", ".venv", "dist", "build",
};

static bool is_lock_file(const char *name)
{
    for (size_t i = 0; i < sizeof lock_files / sizeof *lock_files; i++)
        if (strcmp(name, lock_files[i]) == 0)
            return true;
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, ".lock") == 0;
}

static bool is_vendored(const char *name)
{
    for (size_t i = 0; i < sizeof vendored_dirs / sizeof *vendored_dirs; i++)
        if (strcmp(name, vendored_dirs[i]) == 0)
            return true;
    return false;
}

static bool is_url(const char *s)
{
    return strstr(s, "://") != NULL || strncmp(s, "git@", 4) == 0;
}

// The host of "scheme://[user@]host[:port]/path" or of "user@host:path" into buf; "" when
// there is none (file:///path).
static void url_host(const char *url, char *buf, size_t cap)
{
    const char *s = strstr(url, "://");
    const char *end;
    if (s) {
        s += 3;
        const char *slash = s + strcspn(s, "/");
        const char *at = memchr(s, '@', (size_t)(slash - s));
        if (at)
            s = at + 1;
        end = s + strcspn(s, ":/");
    } else {
        const char *at = strchr(url, '@');
        s = at ? at + 1 : url;
        end = s + strcspn(s, ":/");
    }
    size_t n = (size_t)(end - s) < cap ? (size_t)(end - s) : cap - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
}

// The repository's name: the last component of a path or URL, without a final ".git".
static void repo_name(const char *path, char *buf, size_t cap)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/' && path[start - 1] != ':')
        start--;
    size_t len = n - start;
    if (len > 4 && strncmp(path + n - 4, ".git", 4) == 0)
        len -= 4;
    if (len == 0 || len >= cap) {
        snprintf(buf, cap, "repository");
        return;
    }
    memcpy(buf, path + start, len);
    buf[len] = 0;
}

// ---- the walk

struct entry {
    char *path; // tw_malloc'd, relative to the root
    git_oid oid;
};

struct walk {
    const char *uri; // the document's, for the URIs of skipped files ("<uri>/<path>")
    const struct tw_sink *sink;
    tw_vec entries; // struct entry: the blobs to read
    int rc;         // TW_ENOMEM when the walk stopped for lack of memory
};

static void skip(struct walk *w, const char *root, const char *name, const char *reason)
{
    tw_str s;
    tw_str_init(&s);
    const char *uri = tw_str_printf(&s, "%s/%s%s", w->uri, root, name) ? name : tw_str_cstr(&s);
    w->sink->skip(w->sink->ud, uri, reason);
    tw_str_free(&s);
}

// git_tree_walk's callback (pre-order): root is the folder, "" or "a/b/". A return of 1
// skips a folder's subtree, a negative one stops the walk.
static int visit(const char *root, const git_tree_entry *e, void *payload)
{
    struct walk *w = payload;
    const char *name = git_tree_entry_name(e);
    switch (git_tree_entry_type(e)) {
    case GIT_OBJECT_TREE:
        if (is_vendored(name)) {
            skip(w, root, name, "vendored");
            return 1;
        }
        return strcmp(name, ".git") == 0 ? 1 : 0;
    case GIT_OBJECT_COMMIT:
        skip(w, root, name, "submodule");
        return 0;
    case GIT_OBJECT_BLOB:
        break;
    default:
        return 0;
    }
    const char *kind = tw_file_kind(name);
    if (git_tree_entry_filemode(e) == GIT_FILEMODE_LINK) {
        skip(w, root, name, "symlink");
    } else if (is_lock_file(name)) {
        skip(w, root, name, "lock file");
    } else if (kind && strcmp(kind, "image") == 0) {
        skip(w, root, name, "image");
    } else {
        struct entry x = { .oid = *git_tree_entry_id(e) };
        tw_str p;
        tw_str_init(&p);
        if (tw_str_printf(&p, "%s%s", root, name) || tw_str_detach(&p, &x.path, NULL) ||
            tw_vec_push(&w->entries, &x)) {
            tw_str_free(&p);
            tw_free(x.path);
            w->rc = TW_ENOMEM;
            return -1;
        }
    }
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static void entries_free(tw_vec *v)
{
    for (size_t i = 0; i < v->len; i++)
        tw_free(TW_VEC_AT(v, struct entry, i).path);
    tw_vec_free(v);
}

// ---- the document

struct repo_doc {
    const char *what;     // the path or URL as given, for messages
    const char *uri;      // the document's URI
    const char *platform; // "git" or the URL's host
    const char *title;    // the repository's name
};

// {"path", "bytes", "oid"} of a file; a path that is not UTF-8 gets U+FFFD for the bad bytes
// (git paths are bytes; JSON strings are not).
static json_t *file_json(const struct entry *x, int64_t size)
{
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof hex, &x->oid);
    tw_str p;
    tw_str_init(&p);
    json_t *f = NULL;
    if (tw_utf8_sanitize(x->path, strlen(x->path), &p) == 0)
        f = json_pack("{s:s, s:I, s:s}", "path", tw_str_cstr(&p), "bytes", (json_int_t)size, "oid",
                      hex);
    tw_str_free(&p);
    return f;
}

// Appends "path:\n<text>\n\n" per readable file of the walk, in path order, and the file
// list to files. Returns 0, TW_ENOMEM or TW_EIO (a blob that cannot be read).
static int add_files(git_repository *repo, struct walk *w, const struct tw_git_options *opt,
                     const struct repo_doc *rd, tw_str *content, json_t *files)
{
    int64_t max_file =
        opt && opt->max_file_bytes > 0 ? opt->max_file_bytes : DEFAULT_MAX_FILE_BYTES;
    int64_t max_bytes = opt && opt->max_bytes > 0 ? opt->max_bytes : DEFAULT_MAX_BYTES;
    bool full = false;
    qsort(w->entries.data, w->entries.len, sizeof(struct entry), entry_cmp);
    for (size_t i = 0; i < w->entries.len; i++) {
        struct entry *x = &TW_VEC_AT(&w->entries, struct entry, i);
        if (w->sink->progress)
            w->sink->progress(w->sink->ud, (int64_t)i + 1, (int64_t)w->entries.len);
        if (full) {
            skip(w, "", x->path, "document full");
            continue;
        }
        git_blob *blob;
        if (git_blob_lookup(&blob, repo, &x->oid) != 0)
            return tw_error_set(TW_EIO, "%s: %s: %s", rd->what, x->path, git_msg());
        int64_t size = (int64_t)git_blob_rawsize(blob);
        const char *data = git_blob_rawcontent(blob);
        data = data ? data : "";
        size_t plen = strlen(x->path);
        int rc = 0;
        if (size > max_file) {
            skip(w, "", x->path, "too large");
        } else if (tw_looks_binary(data, (size_t)size)) {
            skip(w, "", x->path, "binary");
        } else if ((int64_t)tw_str_len(content) + (int64_t)plen + 4 + size > max_bytes) {
            full = true;
            skip(w, "", x->path, "document full");
        } else {
            json_t *f = file_json(x, size);
            if (!f || json_array_append_new(files, f) || tw_str_append(content, x->path, plen) ||
                tw_str_append(content, ":\n", 2) || tw_str_append(content, data, (size_t)size) ||
                tw_str_append(content, "\n\n", 2))
                rc = tw_error_set(TW_ENOMEM, "%s: out of memory", rd->what);
        }
        git_blob_free(blob);
        if (rc)
            return rc;
    }
    return 0;
}

// The document of HEAD's tree; an empty repository is reported through fail.
static int ingest_repo(git_repository *repo, const struct repo_doc *rd,
                       const struct tw_git_options *opt, const struct tw_sink *sink)
{
    git_reference *head = NULL;
    int e = git_repository_head(&head, repo);
    if (e == GIT_EUNBORNBRANCH || e == GIT_ENOTFOUND) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s: empty repository (HEAD has no commit)", rd->what);
        sink->fail(sink->ud, rd->uri, msg);
        return 0;
    }
    if (e != 0)
        return tw_error_set(TW_EIO, "%s: HEAD: %s", rd->what, git_msg());
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    json_t *meta = NULL, *files = NULL;
    tw_str content;
    tw_str_init(&content);
    struct walk w = { .uri = rd->uri, .sink = sink };
    tw_vec_init(&w.entries, sizeof(struct entry));
    int rc = 0;
    if (git_reference_peel((git_object **)&commit, head, GIT_OBJECT_COMMIT) != 0 ||
        git_commit_tree(&tree, commit) != 0) {
        rc = tw_error_set(TW_EIO, "%s: HEAD's commit: %s", rd->what, git_msg());
        goto out;
    }
    e = git_tree_walk(tree, GIT_TREEWALK_PRE, visit, &w);
    if (w.rc) {
        rc = tw_error_set(w.rc, "%s: out of memory", rd->what);
        goto out;
    }
    if (e != 0) {
        rc = tw_error_set(TW_EIO, "%s: walking the tree: %s", rd->what, git_msg());
        goto out;
    }
    if (!(files = json_array())) {
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", rd->what);
        goto out;
    }
    if ((rc = add_files(repo, &w, opt, rd, &content, files)) != 0)
        goto out;
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof hex, git_commit_id(commit));
    const char *branch = git_reference_is_branch(head) ? git_reference_shorthand(head) : NULL;
    size_t n_files = json_array_size(files);
    json_t *jbranch = branch ? json_string(branch) : NULL; // NULL too when not UTF-8
    meta = json_pack("{s:O, s:s, s:o, s:I}", "files", files, "commit", hex, "branch",
                     jbranch ? jbranch : json_null(), "file_count", (json_int_t)n_files);
    if (!meta) {
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", rd->what);
        goto out;
    }
    struct tw_doc_in d = {
        .uri = rd->uri,
        .category = TW_DOC_REPOSITORY,
        .platform = rd->platform,
        .title = rd->title,
        .content = tw_str_cstr(&content),
        .content_len = tw_str_len(&content),
        .published_at = (int64_t)git_commit_time(commit),
        .metadata = meta,
        .extractor = "git",
    };
    rc = sink->doc(sink->ud, &d);
out:
    json_decref(meta);
    json_decref(files);
    entries_free(&w.entries);
    tw_str_free(&content);
    git_tree_free(tree);
    git_commit_free(commit);
    git_reference_free(head);
    return rc;
}

// ---- local paths and URLs

static int open_local(const char *path, const struct tw_git_options *opt,
                      const struct tw_sink *sink)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return tw_error_set(errno == ENOENT ? TW_ENOENT : TW_EIO, "%s: not a git repository (%s)",
                            path, strerror(errno));
    git_repository *repo;
    // NO_SEARCH: the path itself must be the repository (its work tree or git folder), not a
    // folder inside one.
    if (git_repository_open_ext(&repo, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) != 0)
        return tw_error_set(TW_EINVAL, "%s: not a git repository (%s)", path, git_msg());
    const char *wd = git_repository_workdir(repo);
    const char *root = wd ? wd : git_repository_path(repo); // bare: the git folder
    tw_str uri;
    tw_str_init(&uri);
    int rc = tw_str_printf(&uri, "file://%s", root);
    if (rc) {
        git_repository_free(repo);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    }
    while (tw_str_len(&uri) > 8 && tw_str_cstr(&uri)[tw_str_len(&uri) - 1] == '/')
        tw_str_truncate(&uri, tw_str_len(&uri) - 1);
    char title[256];
    repo_name(tw_str_cstr(&uri) + 7, title, sizeof title);
    struct repo_doc rd = {
        .what = path, .uri = tw_str_cstr(&uri), .platform = "git", .title = title
    };
    rc = ingest_repo(repo, &rd, opt, sink);
    git_repository_free(repo);
    tw_str_free(&uri);
    return rc;
}

// The clone's remote, as git_clone makes it but without url.<base>.insteadOf rewriting:
// libgit2 1.5 leaks a PCRE2 match block for every config entry its insteadOf lookup does not
// match (fixed in 1.6, libgit2 pull request #6382), which LeakSanitizer reports.
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

static int clone_url(const char *url, const struct tw_git_options *opt, const struct tw_sink *sink)
{
    const char *t = getenv("TMPDIR");
    char tmp[4096], dir[4200];
    if (snprintf(tmp, sizeof tmp, "%s/twin-git-XXXXXX", t && *t ? t : "/tmp") >= (int)sizeof tmp)
        return tw_error_set(TW_EINVAL, "TMPDIR: path too long");
    if (!mkdtemp(tmp))
        return tw_error_set(TW_EIO, "%s: cannot make a folder to clone %s into: %s", tmp, url,
                            strerror(errno));
    snprintf(dir, sizeof dir, "%s/repo.git", tmp);
    git_clone_options co;
    git_clone_options_init(&co, GIT_CLONE_OPTIONS_VERSION);
    co.bare = 1; // the tree is read from the object database: no checkout needed
    co.remote_cb = make_remote;
    git_repository *repo = NULL;
    int rc;
    if (git_clone(&repo, url, dir, &co) != 0) {
        rc = tw_error_set(TW_EIO, "%s: cannot clone: %s", url, git_msg());
    } else {
        char host[256], title[256];
        url_host(url, host, sizeof host);
        repo_name(url, title, sizeof title);
        struct repo_doc rd = {
            .what = url, .uri = url, .platform = *host ? host : "git", .title = title
        };
        rc = ingest_repo(repo, &rd, opt, sink);
        git_repository_free(repo);
    }
    // Only the folder made above, which holds nothing but the clone.
    int rm = tw_remove_tree(tmp);
    return rc ? rc : rm;
}

int tw_source_git(const char *path_or_url, const struct tw_git_options *opt,
                  const struct tw_sink *sink)
{
    tw_json_init();
    if (git_libgit2_init() < 0)
        return tw_error_set(TW_EIO, "libgit2: cannot initialise: %s", git_msg());
    int rc = is_url(path_or_url) ? clone_url(path_or_url, opt, sink)
                                 : open_local(path_or_url, opt, sink);
    git_libgit2_shutdown();
    return rc;
}

// Implements tw_source_folder (source.h): a recursive walk of a folder in name order. Owns the
// rules of what is taken (kinds, sizes, hidden and vendored folders), the symbolic-link policy
// (links are followed after the walk, only to targets under the root, each file or folder
// taken once) and the reading and extraction of one file into a document.
#define _GNU_SOURCE // realpath, fstatat, O_CLOEXEC
#include "etl/source.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/str.h"
#include "base/vec.h"
#include "etl/extract.h"
#include "text/utf8.h"

#define DEFAULT_MAX_BYTES ((int64_t)10 << 20)

struct folder {
    const struct tw_sink *sink;
    int64_t max_bytes;
    char *root; // the root's real path, no trailing '/' (except for "/" itself)
    size_t root_len;
    tw_map seen;  // (dev, ino) of every file and folder taken so far
    tw_vec links; // char *: symbolic links met (paths relative to the root), in walk order
    int64_t done; // files handled, for progress
};

// Folders of other people's code or of build output, passed over by name.
static const char *const vendored_names[] = {
    "node_modules", "bower_components", "vendor", "third_party", "__pycache__", "build",
    "dist",         "target",           ".venv",  "venv",        ".tox",        NULL
};

static bool is_vendored(const char *name)
{
    for (size_t i = 0; vendored_names[i]; i++)
        if (strcmp(name, vendored_names[i]) == 0)
            return true;
    return false;
}

// The absolute path of rel ("" is the root) in a new string.
static int abs_path(const struct folder *f, const char *rel, tw_str *out)
{
    tw_str_clear(out);
    const char *sep = rel[0] && f->root[f->root_len - 1] != '/' ? "/" : "";
    return tw_str_printf(out, "%s%s%s", f->root, sep, rel) ? TW_ENOMEM : 0;
}

static void skip(struct folder *f, const char *rel, const char *reason)
{
    tw_str p, uri;
    tw_str_init(&p);
    tw_str_init(&uri);
    if (abs_path(f, rel, &p) == 0 && tw_str_printf(&uri, "file://%s", tw_str_cstr(&p)) == 0)
        f->sink->skip(f->sink->ud, tw_str_cstr(&uri), reason);
    tw_str_free(&p);
    tw_str_free(&uri);
}

static void fail(struct folder *f, const char *rel, int err)
{
    tw_str p, uri, msg;
    tw_str_init(&p);
    tw_str_init(&uri);
    tw_str_init(&msg);
    if (abs_path(f, rel, &p) == 0 && tw_str_printf(&uri, "file://%s", tw_str_cstr(&p)) == 0 &&
        tw_str_printf(&msg, "%s: %s", tw_str_cstr(&p), strerror(err)) == 0)
        f->sink->fail(f->sink->ud, tw_str_cstr(&uri), tw_str_cstr(&msg));
    tw_str_free(&p);
    tw_str_free(&uri);
    tw_str_free(&msg);
}

static void progress(struct folder *f)
{
    f->done++;
    if (f->sink->progress)
        f->sink->progress(f->sink->ud, f->done, 0);
}

// Marks the file or folder st as taken: 1 when it was new, 0 when taken before, < 0 error.
static int mark_seen(struct folder *f, const struct stat *st)
{
    uint64_t key[2] = { (uint64_t)st->st_dev, (uint64_t)st->st_ino };
    if (tw_map_get_str(&f->seen, (const char *)key, sizeof key, NULL))
        return 0;
    return tw_map_put_str(&f->seen, (const char *)key, sizeof key, 1) ? TW_ENOMEM : 1;
}

// ---- one file

// Reads the regular file at path, at most max bytes: 0, 1 when it holds more than max, or -1
// with errno set.
static int read_file(const char *path, int64_t max, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) { // replaced by something else since the walk saw it
        close(fd);
        errno = EINVAL;
        return -1;
    }
    if (st.st_size > max) {
        close(fd);
        return 1;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0; // + 1: sees a file that grew since
    char *buf = tw_malloc(cap + 1);
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return -1;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            tw_free(buf);
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) { // it grew: read on, up to max + 1 bytes
            if ((int64_t)n > max) {
                tw_free(buf);
                close(fd);
                return 1;
            }
            size_t ncap = cap * 2 > (size_t)max + 1 ? (size_t)max + 1 : cap * 2;
            char *nb = tw_realloc(buf, ncap + 1);
            if (!nb) {
                tw_free(buf);
                close(fd);
                errno = ENOMEM;
                return -1;
            }
            buf = nb, cap = ncap;
        }
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

// Whether a name has an extension ("a.b"; ".profile" has none).
static bool has_extension(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && dot != name;
}

// Hands the extracted document of the file at rel to the sink.
static int emit(struct folder *f, const char *rel, const char *kind, const struct stat *st,
                const struct tw_extracted *e, size_t bytes)
{
    tw_str p, uri, path;
    tw_str_init(&p);
    tw_str_init(&uri);
    tw_str_init(&path); // rel as valid UTF-8, for JSON and the title of code
    int rc = abs_path(f, rel, &p);
    if (!rc && (tw_str_printf(&uri, "file://%s", tw_str_cstr(&p)) ||
                tw_utf8_sanitize(rel, strlen(rel), &path)))
        rc = TW_ENOMEM;
    json_t *meta = NULL;
    if (!rc) {
        meta = json_pack("{s:s, s:I, s:s, s:I}", "path", tw_str_cstr(&path), "bytes",
                         (json_int_t)bytes, "kind", kind, "mtime", (json_int_t)st->st_mtime);
        if (!meta)
            rc = TW_ENOMEM;
    }
    if (!rc) {
        bool code = strcmp(kind, "code") == 0;
        const char *title = code                    ? tw_str_cstr(&path)
                            : tw_str_len(&e->title) ? tw_str_cstr(&e->title)
                                                    : NULL;
        struct tw_doc_in d = {
            .uri = tw_str_cstr(&uri),
            .category = code ? TW_DOC_REPOSITORY : NULL,
            .title = title,
            .content = tw_str_cstr(&e->text),
            .content_len = tw_str_len(&e->text),
            .published_at = (int64_t)st->st_mtime,
            .metadata = meta,
            .extractor = kind,
        };
        rc = f->sink->doc(f->sink->ud, &d);
    } else {
        rc = tw_error_set(rc, "%s: out of memory", f->root);
    }
    json_decref(meta);
    tw_str_free(&p);
    tw_str_free(&uri);
    tw_str_free(&path);
    return rc;
}

// The file at rel (named kind_name for its kind: the target's name for a link). Returns 0
// (document, skip or failure reported) or an error / the sink's stop value.
static int take_file(struct folder *f, const char *rel, const char *kind_name,
                     const struct stat *st)
{
    const char *kind = tw_file_kind(kind_name);
    if (kind && strcmp(kind, "image") == 0) {
        skip(f, rel, "image");
        return 0;
    }
    if (!kind && has_extension(kind_name)) {
        skip(f, rel, "unknown kind");
        return 0;
    }
    if (st->st_size > f->max_bytes) {
        skip(f, rel, "too large");
        return 0;
    }
    tw_str p;
    tw_str_init(&p);
    if (abs_path(f, rel, &p)) {
        tw_str_free(&p);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
    }
    char *data = NULL;
    size_t len = 0;
    int r = read_file(tw_str_cstr(&p), f->max_bytes, &data, &len);
    tw_str_free(&p);
    if (r < 0 && errno == ENOMEM)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
    if (r < 0) {
        fail(f, rel, errno);
        return 0;
    }
    if (r > 0) {
        skip(f, rel, "too large");
        return 0;
    }
    int rc = 0;
    if (tw_looks_binary(data, len)) {
        skip(f, rel, "binary");
    } else {
        if (!kind)
            kind = "text"; // a text file without extension: README, NOTES, ...
        struct tw_extracted e;
        tw_extracted_init(&e);
        rc = tw_extract_file(kind, data, len, &e); // code: as it is
        if (rc)
            tw_error_prefix("%s", f->root);
        if (!rc && tw_str_len(&e.text) == 0)
            skip(f, rel, "empty");
        else if (!rc)
            rc = emit(f, rel, kind, st, &e, len);
        tw_extracted_free(&e);
    }
    tw_free(data);
    return rc;
}

// ---- the walk

static int walk_dir(struct folder *f, const char *rel);

// A file or folder met at rel (by the walk or through a link), stat'ed with st.
static int take(struct folder *f, const char *rel, const char *kind_name, const struct stat *st)
{
    if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode)) {
        skip(f, rel, "special file");
        return 0;
    }
    int fresh = mark_seen(f, st);
    if (fresh < 0)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
    if (!fresh) { // reached before, under another name: once is enough
        skip(f, rel, "duplicate");
        if (S_ISREG(st->st_mode))
            progress(f);
        return 0;
    }
    if (S_ISDIR(st->st_mode))
        return walk_dir(f, rel);
    int rc = take_file(f, rel, kind_name, st);
    progress(f);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(tw_vec *names)
{
    for (size_t i = 0; i < names->len; i++)
        tw_free(TW_VEC_AT(names, char *, i));
    tw_vec_free(names);
}

// The names in the folder at path, sorted (bytewise); NULL-free. -1 with errno on failure.
static int list_dir(const char *path, tw_vec *names)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *s = tw_strdup(de->d_name);
        if (!s || tw_vec_push(names, &s)) {
            tw_free(s);
            closedir(d);
            errno = ENOMEM;
            return -1;
        }
        errno = 0;
    }
    int e = errno;
    closedir(d);
    if (e) {
        errno = e;
        return -1;
    }
    qsort(names->data, names->len, sizeof(char *), cmp_names);
    return 0;
}

// One entry of a folder: hidden and vendored names are passed over, links kept for later.
static int walk_entry(struct folder *f, const char *dir_abs, const char *rel, const char *name)
{
    struct stat st;
    tw_str p;
    tw_str_init(&p);
    int rc = 0;
    if (tw_str_printf(&p, "%s/%s", dir_abs, name)) {
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
    } else if (lstat(tw_str_cstr(&p), &st) != 0) {
        fail(f, rel, errno);
    } else if ((S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)) && is_vendored(name)) {
        skip(f, rel, "vendored");
    } else if (name[0] == '.') {
        skip(f, rel, "hidden");
    } else if (S_ISLNK(st.st_mode)) {
        char *copy = tw_strdup(rel);
        if (!copy || tw_vec_push(&f->links, &copy)) {
            tw_free(copy);
            rc = tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
        }
    } else {
        rc = take(f, rel, name, &st);
    }
    tw_str_free(&p);
    return rc;
}

static int walk_dir(struct folder *f, const char *rel)
{
    tw_str dir, child;
    tw_str_init(&dir);
    tw_str_init(&child);
    tw_vec names;
    tw_vec_init(&names, sizeof(char *));
    int rc = abs_path(f, rel, &dir);
    if (!rc && list_dir(tw_str_cstr(&dir), &names) != 0) {
        if (errno == ENOMEM)
            rc = TW_ENOMEM;
        else
            fail(f, rel, errno);
    }
    for (size_t i = 0; !rc && i < names.len; i++) {
        const char *name = TW_VEC_AT(&names, char *, i);
        tw_str_clear(&child);
        if (tw_str_printf(&child, "%s%s%s", rel, rel[0] ? "/" : "", name))
            rc = TW_ENOMEM;
        else
            rc = walk_entry(f, tw_str_cstr(&dir), tw_str_cstr(&child), name);
    }
    if (rc == TW_ENOMEM && tw_error_code() != TW_ENOMEM)
        rc = tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
    free_names(&names);
    tw_str_free(&dir);
    tw_str_free(&child);
    return rc;
}

// Whether the real path p is the root or under it.
static bool under_root(const struct folder *f, const char *p)
{
    if (strcmp(f->root, "/") == 0)
        return true;
    return strncmp(p, f->root, f->root_len) == 0 && (p[f->root_len] == '/' || p[f->root_len] == 0);
}

// Whether the folder `dir` (a real path) is the folder holding the link at abs, or above it.
static bool is_ancestor(const char *dir, const char *abs)
{
    char *parent = tw_strdup(abs);
    if (!parent)
        return false;
    char *slash = strrchr(parent, '/');
    if (slash)
        *slash = 0;
    char *real = realpath(slash && parent[0] ? parent : "/", NULL);
    tw_free(parent);
    if (!real)
        return false;
    size_t n = strlen(dir);
    bool up =
        strcmp(dir, "/") == 0 || (strncmp(real, dir, n) == 0 && (real[n] == '/' || real[n] == 0));
    free(real);
    return up;
}

// A symbolic link met by the walk, at rel: followed when its target is under the root.
static int follow_link(struct folder *f, const char *rel)
{
    tw_str p;
    tw_str_init(&p);
    if (abs_path(f, rel, &p)) {
        tw_str_free(&p);
        return tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
    }
    int rc = 0;
    struct stat st;
    char *real = realpath(tw_str_cstr(&p), NULL);
    if (!real) {
        if (errno == ELOOP)
            skip(f, rel, "symlink loop");
        else if (errno == ENOENT || errno == ENOTDIR)
            skip(f, rel, "broken symlink");
        else if (errno == ENOMEM)
            rc = tw_error_set(TW_ENOMEM, "%s: out of memory", f->root);
        else
            fail(f, rel, errno);
    } else if (!under_root(f, real)) {
        skip(f, rel, "symlink outside root");
    } else if (stat(real, &st) != 0) {
        fail(f, rel, errno);
    } else if (S_ISDIR(st.st_mode) && is_ancestor(real, tw_str_cstr(&p))) {
        skip(f, rel, "symlink loop");
    } else {
        const char *base = strrchr(real, '/');
        rc = take(f, rel, base ? base + 1 : real, &st);
    }
    free(real);
    tw_str_free(&p);
    return rc;
}

int tw_source_folder(const char *root, const struct tw_folder_options *opt,
                     const struct tw_sink *sink)
{
    struct stat st;
    if (stat(root, &st) != 0) {
        int e = errno;
        return tw_error_set(e == ENOENT || e == ENOTDIR ? TW_ENOENT : TW_EIO, "%s: %s", root,
                            strerror(e));
    }
    if (!S_ISDIR(st.st_mode))
        return tw_error_set(TW_EINVAL, "%s: not a directory", root);
    struct folder f = { .sink = sink };
    f.max_bytes = opt && opt->max_bytes > 0 ? opt->max_bytes : DEFAULT_MAX_BYTES;
    f.root = realpath(root, NULL);
    if (!f.root) {
        int e = errno;
        return tw_error_set(e == ENOMEM ? TW_ENOMEM : TW_EIO, "%s: %s", root, strerror(e));
    }
    f.root_len = strlen(f.root);
    tw_map_init(&f.seen, TW_MAP_STR);
    tw_vec_init(&f.links, sizeof(char *));
    int rc = mark_seen(&f, &st) < 0 ? tw_error_set(TW_ENOMEM, "%s: out of memory", root) : 0;
    if (!rc)
        rc = walk_dir(&f, "");
    // Links last, so that a file reached both ways is taken under its own name; following
    // a link to a folder may add links (the list grows while it is read).
    for (size_t i = 0; !rc && i < f.links.len; i++)
        rc = follow_link(&f, TW_VEC_AT(&f.links, char *, i));
    free_names(&f.links);
    tw_map_free(&f.seen);
    free(f.root);
    return rc;
}

// Implements file.h over POSIX: read(2) loops that stop one byte past the limit, mmap(2),
// and atomic replacement by mkostemp + write + fsync + rename + directory fsync.
#define _GNU_SOURCE // mkostemp
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>  // rename
#include <stdlib.h> // mkostemp
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"

static _Thread_local enum tw_file_fault fault;

void tw_file_set_fault(enum tw_file_fault f)
{
    fault = f;
}

static bool take_fault(enum tw_file_fault f)
{
    if (fault != f)
        return false;
    fault = TW_FILE_FAULT_NONE;
    return true;
}

// Records "<path>: <what>: <strerror(errno)>"; ENOENT is the one errno callers act on.
static int sys_error(const char *path, const char *what)
{
    int err = errno;
    return tw_error_set(err == ENOENT ? TW_ENOENT : TW_EIO, "%s: %s: %s", path, what,
                        strerror(err));
}

// Reads fd to end of file. The buffer never holds more than limit + 1 bytes of data: reading
// that one byte past the limit is how "over" is told from "exactly at" when the size is not
// known beforehand (pipes). hint is the expected size, 0 when unknown.
static int read_fd(int fd, const char *path, size_t limit, size_t hint, char **out, size_t *len)
{
    size_t want = limit + 1; // the caller keeps limit <= SIZE_MAX - 2
    size_t cap = hint ? hint + 1 : 4096, n = 0;
    if (cap > want)
        cap = want;
    char *buf = tw_malloc(cap + 1);
    if (!buf)
        return tw_error_set(TW_ENOMEM, "%s: out of memory reading %zu bytes", path, cap);
    for (;;) {
        if (n > limit) {
            tw_free(buf);
            return tw_error_set(TW_ELIMIT, "%s: more than the limit of %zu bytes", path, limit);
        }
        if (n == cap) { // here cap <= limit < want
            size_t grown = cap > want / 2 ? want : cap * 2;
            char *p = tw_realloc(buf, grown + 1);
            if (!p) {
                tw_free(buf);
                return tw_error_set(TW_ENOMEM, "%s: out of memory reading %zu bytes", path, grown);
            }
            buf = p;
            cap = grown;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int rc = sys_error(path, "cannot read");
            tw_free(buf);
            return rc;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

int tw_file_read(const char *path, size_t limit, char **out, size_t *len)
{
    if (limit > SIZE_MAX - 2)
        limit = SIZE_MAX - 2;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sys_error(path, "cannot open");
    struct stat st;
    int rc;
    if (fstat(fd, &st) != 0)
        rc = sys_error(path, "cannot stat");
    else if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > limit)
        rc = tw_error_set(TW_ELIMIT, "%s: %jd bytes, over the limit of %zu bytes", path,
                          (intmax_t)st.st_size, limit);
    else
        rc = read_fd(fd, path, limit, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0, out, len);
    close(fd);
    return rc;
}

int tw_mmap_open(struct tw_mmap *m, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sys_error(path, "cannot open");
    struct stat st;
    void *p = NULL;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = sys_error(path, "cannot stat");
    else if (!S_ISREG(st.st_mode))
        rc = tw_error_set(TW_EINVAL, "%s: cannot map: not a regular file", path);
    else if ((uintmax_t)st.st_size > SIZE_MAX)
        rc = tw_error_set(TW_EOVERFLOW, "%s: cannot map: too large", path);
    else if (st.st_size > 0) {
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            rc = sys_error(path, "cannot map");
    }
    close(fd); // the mapping keeps the file open
    if (rc == 0) {
        m->data = p;
        m->len = p ? (size_t)st.st_size : 0;
    }
    return rc;
}

void tw_mmap_close(struct tw_mmap *m)
{
    if (m->data)
        munmap((void *)m->data, m->len);
    m->data = NULL;
    m->len = 0;
}

// Writes all of data, going on after short writes and interruptions.
static int write_all(int fd, const char *path, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t r = write(fd, data, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) // not expected of a regular file; do not spin
            errno = ENOSPC;
        if (r <= 0)
            return sys_error(path, "cannot write the temporary file");
        data += r;
        len -= (size_t)r;
    }
    return 0;
}

int tw_atomic_open(struct tw_atomic *a, const char *path, mode_t mode)
{
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0; // with the '/'
    const char *base = path + dirlen;
    a->fd = -1;
    a->tmp = NULL;
    a->path = path;
    a->dirlen = dirlen;
    if (*base == '\0')
        return tw_error_set(TW_EINVAL, "%s: not a file name", path);
    // tmp = <dir/> "." <base> ".tmp-XXXXXX"
    char *tmp = tw_malloc(strlen(path) + sizeof "..tmp-XXXXXX");
    if (!tmp)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    memcpy(tmp, path, dirlen);
    strcpy(tmp + dirlen, ".");
    strcat(tmp + dirlen, base);
    strcat(tmp + dirlen, ".tmp-XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int rc = sys_error(path, "cannot create a temporary file");
        tw_free(tmp);
        return rc;
    }
    if (fchmod(fd, mode) != 0) {
        int rc = sys_error(path, "cannot set the mode of the temporary file");
        close(fd);
        unlink(tmp);
        tw_free(tmp);
        return rc;
    }
    a->fd = fd;
    a->tmp = tmp;
    return 0;
}

int tw_atomic_write(struct tw_atomic *a, const void *data, size_t len)
{
    if (take_fault(TW_FILE_FAULT_WRITE)) {
        errno = EIO;
        return sys_error(a->path, "cannot write the temporary file (test fault)");
    }
    return write_all(a->fd, a->path, data, len);
}

void tw_atomic_abort(struct tw_atomic *a)
{
    if (a->fd >= 0)
        close(a->fd);
    if (a->tmp)
        unlink(a->tmp);
    tw_free(a->tmp);
    a->fd = -1;
    a->tmp = NULL;
}

int tw_atomic_commit(struct tw_atomic *a)
{
    const char *path = a->path;
    int rc = 0;
    if (fsync(a->fd) != 0)
        rc = sys_error(path, "cannot sync the temporary file");
    if (close(a->fd) != 0 && rc == 0)
        rc = sys_error(path, "cannot close the temporary file");
    a->fd = -1;
    if (rc == 0 && take_fault(TW_FILE_FAULT_KILL_BEFORE_RENAME))
        raise(SIGKILL); // does not return
    if (rc == 0 && take_fault(TW_FILE_FAULT_BEFORE_RENAME)) {
        tw_free(a->tmp); // left on disk, as a crash would leave it
        a->tmp = NULL;
        return tw_error_set(TW_EIO, "%s: interrupted before the rename (test fault)", path);
    }
    if (rc == 0 && rename(a->tmp, path) != 0)
        rc = sys_error(path, "cannot rename the temporary file over it");
    if (rc != 0) {
        tw_atomic_abort(a);
        return rc;
    }
    // The rename is durable only once the directory's entries are on disk.
    a->tmp[a->dirlen] = '\0';
    rc = tw_fsync_dir(a->dirlen ? a->tmp : ".");
    tw_free(a->tmp);
    a->tmp = NULL;
    return rc;
}

int tw_file_write_atomic_mode(const char *path, const void *data, size_t len, mode_t mode)
{
    struct tw_atomic a;
    int rc = tw_atomic_open(&a, path, mode);
    if (rc)
        return rc;
    rc = tw_atomic_write(&a, data, len);
    if (rc) {
        tw_atomic_abort(&a);
        return rc;
    }
    return tw_atomic_commit(&a);
}

int tw_file_write_atomic(const char *path, const void *data, size_t len)
{
    return tw_file_write_atomic_mode(path, data, len, 0644);
}

int tw_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int mkdir_one(const char *dir, mode_t mode)
{
    if (mkdir(dir, mode) == 0)
        return 0;
    int err = errno;
    struct stat st;
    // Whatever mkdir said (EEXIST, or EACCES / EROFS for a parent that is only passed
    // through), a directory that is there will do.
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        return tw_error_set(TW_EEXIST, "%s: cannot create directory: not a directory", dir);
    }
    errno = err;
    return sys_error(dir, "cannot create directory");
}

int tw_mkdir_p(const char *path, mode_t mode)
{
    if (*path == '\0')
        return tw_error_set(TW_EINVAL, "cannot create a directory with an empty name");
    char *buf = tw_strdup(path);
    if (!buf)
        return tw_error_set(TW_ENOMEM, "%s: out of memory", path);
    int rc = 0;
    // Each '/' that ends a component marks a parent to create first.
    for (char *p = buf + 1; *p && rc == 0; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        rc = mkdir_one(buf, mode);
        *p = '/';
    }
    if (rc == 0)
        rc = mkdir_one(buf, mode);
    tw_free(buf);
    return rc;
}

int tw_path_join(char *buf, size_t cap, const char *a, const char *b)
{
    size_t na = strlen(a);
    if (na > 0)
        while (*b == '/')
            b++;
    size_t nb = strlen(b);
    size_t sep = na > 0 && nb > 0 && a[na - 1] != '/';
    if (na + sep + nb >= cap)
        return tw_error_set(TW_EOVERFLOW, "%s/%s: path does not fit in %zu bytes", a, b, cap);
    memmove(buf, a, na);
    if (sep)
        buf[na] = '/';
    memcpy(buf + na + sep, b, nb);
    buf[na + sep + nb] = '\0';
    return 0;
}

int tw_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return sys_error(dir, "cannot open directory");
    int rc = 0;
    // Some file systems cannot sync a directory (EINVAL): there is nothing more to do then.
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = sys_error(dir, "cannot sync directory");
    close(fd);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int tw_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : tw_error_set(TW_EIO, "%s: %s", path, strerror(errno));
    // Depth first (children before their folder); FTW_PHYS: a link is removed, not followed.
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return tw_error_set(TW_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

// Implements blob.h: SHA-256 names, atomic writes through tw_file_write_atomic or a rename of
// a file already written under blobs/, and verification on read.
#define _GNU_SOURCE // mkstemp
#include "store/blob.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "base/sha256.h"

static int valid_hex(const char *hex)
{
    for (int i = 0; i < 64; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return 0;
    return hex[64] == '\0';
}

// HOME/blobs/ab and HOME/blobs/ab/cdef...
static int blob_paths(const struct tw_home *h, const char *hex, char *dir, char *file)
{
    if (snprintf(dir, PATH_MAX, "%s/blobs/%.2s", h->path, hex) >= PATH_MAX ||
        snprintf(file, PATH_MAX, "%s/%s", dir, hex + 2) >= PATH_MAX)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", h->path);
    return 0;
}

int tw_blob_put(const struct tw_home *h, const void *data, size_t len, char hex[TW_BLOB_HEX])
{
    uint8_t digest[32];
    tw_sha256(data, len, digest);
    tw_sha256_hex(digest, hex);
    char dir[PATH_MAX], file[PATH_MAX];
    int rc = blob_paths(h, hex, dir, file);
    if (rc || tw_file_exists(file))
        return rc;
    rc = tw_mkdir_p(dir, 0755);
    return rc ? rc : tw_file_write_atomic_mode(file, data, len, 0444);
}

int tw_blob_tmp_path(const struct tw_home *h, char *buf, size_t cap)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/blobs", h->path) >= (int)sizeof dir ||
        snprintf(buf, cap, "%s/.incoming-XXXXXX", dir) >= (int)cap)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", h->path);
    int rc = tw_mkdir_p(dir, 0755);
    if (rc)
        return rc;
    int fd = mkstemp(buf);
    if (fd < 0)
        return tw_error_set(TW_EIO, "%s: cannot create a file: %s", dir, strerror(errno));
    close(fd);
    return 0;
}

static int hash_file(const char *path, char hex[TW_BLOB_HEX])
{
    struct tw_mmap m;
    int rc = tw_mmap_open(&m, path);
    if (rc)
        return rc;
    uint8_t digest[32];
    tw_sha256(m.data, m.len, digest);
    tw_sha256_hex(digest, hex);
    tw_mmap_close(&m);
    return 0;
}

int tw_blob_put_file(const struct tw_home *h, const char *src, char hex[TW_BLOB_HEX])
{
    int rc = hash_file(src, hex);
    char dir[PATH_MAX], file[PATH_MAX];
    if (!rc)
        rc = blob_paths(h, hex, dir, file);
    if (rc)
        return rc;
    if (tw_file_exists(file)) {
        unlink(src);
        return 0;
    }
    rc = tw_mkdir_p(dir, 0755);
    if (rc)
        return rc;
    // The file's bytes are on disk before its name appears (fsync, rename, fsync the folder).
    FILE *f = fopen(src, "r");
    if (!f || fsync(fileno(f)) != 0) {
        rc = tw_error_set(TW_EIO, "%s: cannot sync: %s", src, strerror(errno));
        if (f)
            fclose(f);
        return rc;
    }
    fclose(f);
    chmod(src, 0444);
    if (rename(src, file) != 0)
        return tw_error_set(TW_EIO, "%s: cannot move to %s: %s", src, file, strerror(errno));
    return tw_fsync_dir(dir);
}

int tw_blob_path(const struct tw_home *h, const char *hex, char *buf, size_t cap)
{
    if (!valid_hex(hex))
        return tw_error_set(TW_EINVAL, "blob \"%.70s\": not a SHA-256 name (64 hex digits)", hex);
    char dir[PATH_MAX], file[PATH_MAX];
    int rc = blob_paths(h, hex, dir, file);
    if (rc)
        return rc;
    if (!tw_file_exists(file))
        return tw_error_set(TW_ENOENT, "%s: blob %s is not in the home", h->path, hex);
    if (strlen(file) >= cap)
        return tw_error_set(TW_EOVERFLOW, "%s: path too long", file);
    memcpy(buf, file, strlen(file) + 1);
    return 0;
}

int tw_blob_read(const struct tw_home *h, const char *hex, size_t limit, char **out, size_t *len)
{
    char file[PATH_MAX];
    int rc = tw_blob_path(h, hex, file, sizeof file);
    char *buf = NULL;
    size_t n = 0;
    if (!rc)
        rc = tw_file_read(file, limit, &buf, &n);
    if (rc)
        return rc;
    uint8_t digest[32];
    char got[TW_BLOB_HEX];
    tw_sha256(buf, n, digest);
    tw_sha256_hex(digest, got);
    if (strcmp(got, hex) != 0) {
        tw_free(buf);
        return tw_error_set(TW_EFORMAT, "%s: corrupted: its bytes hash to %s", file, got);
    }
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

// Tests file.c: limited reads (regular files and FIFOs), mappings, atomic writes and their
// failure paths, including a child killed just before the rename, and the path helpers.
// Everything happens in a fresh directory under /tmp, removed at the end.
#define _GNU_SOURCE // nftw's FTW_PHYS
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/file.h"
#include "base/mem.h"
#include "check.h"

static char root[] = "/tmp/twin-test-file-XXXXXX";

// root/name, in a ring of buffers: a path stays valid for the next 31 calls.
static const char *at(const char *name)
{
    static char bufs[32][512];
    static unsigned next;
    char *b = bufs[next++ % 32];
    snprintf(b, sizeof bufs[0], "%s/%s", root, name);
    return b;
}

static void put(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

// 1 when the file at path holds exactly len bytes of data.
static int holds(const char *path, const char *data, size_t len)
{
    char *got;
    size_t n;
    if (tw_file_read(path, 1 << 26, &got, &n) != 0)
        return 0;
    int same = n == len && memcmp(got, data, len) == 0;
    tw_free(got);
    return same;
}

// Temp files (".<name>.tmp-*") in dir; removes them when drop is set.
static int temps_in(const char *dir, int drop)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    char path[600];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] != '.' || !strstr(e->d_name, ".tmp-"))
            continue;
        n++;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (drop)
            unlink(path);
    }
    closedir(d);
    return n;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void test_read_limit(void)
{
    const char *p = at("five");
    put(p, "hello", 5);
    char *out = NULL;
    size_t len = 0;
    CHECK_OK(tw_file_read(p, 10, &out, &len));
    CHECK_EQ_INT(len, 5);
    CHECK_EQ_STR(out, "hello"); // NUL-terminated
    tw_free(out);

    out = NULL;
    CHECK_OK(tw_file_read(p, 5, &out, NULL)); // exactly at the limit; len may be NULL
    CHECK_EQ_STR(out, "hello");
    tw_free(out);

    char *keep = (char *)"untouched";
    out = keep;
    len = 77;
    CHECK_EQ_INT(tw_file_read(p, 4, &out, &len), TW_ELIMIT);
    CHECK(strstr(tw_error_msg(), p) && strstr(tw_error_msg(), "5 bytes"));
    CHECK(strstr(tw_error_msg(), "limit of 4 bytes") != NULL);
    CHECK(out == keep && len == 77);

    const char *missing = at("no-such-file");
    CHECK_EQ_INT(tw_file_read(missing, 10, &out, &len), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), missing) != NULL);
    CHECK(strstr(tw_error_msg(), "No such file or directory") != NULL);
    CHECK(out == keep);

    CHECK_EQ_INT(tw_file_read(root, 10, &out, &len), TW_EIO); // a directory
    CHECK(strstr(tw_error_msg(), root) != NULL);

    put(at("empty"), "", 0);
    CHECK_OK(tw_file_read(at("empty"), 0, &out, &len));
    CHECK(len == 0 && out != keep && out[0] == '\0');
    tw_free(out);

    out = keep;
    tw_mem_fail_after(1);
    CHECK_EQ_INT(tw_file_read(p, 10, &out, &len), TW_ENOMEM);
    CHECK(out == keep && strstr(tw_error_msg(), p));
}

static void test_read_large(void)
{
    size_t n = 300000;
    char *data = tw_malloc(n);
    uint64_t rng = 7;
    for (size_t i = 0; i < n; i++)
        data[i] = (char)check_rand(&rng);
    put(at("large"), data, n);
    CHECK(holds(at("large"), data, n));
    tw_free(data);
}

// Feeds n bytes into the FIFO at path from a child and reads them with the given limit.
static int read_fifo(const char *path, size_t n, size_t limit, size_t *len)
{
    pid_t pid = fork();
    if (pid == 0) {
        FILE *f = fopen(path, "wb");
        for (size_t i = 0; f && i < n; i++)
            fputc('a' + (int)(i % 26), f);
        _exit(f && fclose(f) == 0 ? 0 : 1);
    }
    char *out;
    int rc = tw_file_read(path, limit, &out, len);
    if (rc == 0) {
        for (size_t i = 0; i < *len; i++)
            rc |= out[i] != 'a' + (int)(i % 26);
        tw_free(out);
    }
    waitpid(pid, NULL, 0); // the writer may die of SIGPIPE when the read stops early
    return rc;
}

static void test_read_fifo(void)
{
    const char *p = at("fifo");
    CHECK(mkfifo(p, 0600) == 0);
    if (!tw_file_exists(p))
        return;
    size_t len = 0;
    CHECK_OK(read_fifo(p, 20000, 1 << 20, &len)); // grows past the first 4096 bytes
    CHECK_EQ_INT(len, 20000);
    CHECK_OK(read_fifo(p, 20000, 20000, &len)); // exactly at the limit
    CHECK_EQ_INT(len, 20000);
    CHECK_EQ_INT(read_fifo(p, 20000, 19999, &len), TW_ELIMIT);
    CHECK(strstr(tw_error_msg(), p) && strstr(tw_error_msg(), "19999"));
    CHECK_OK(read_fifo(p, 0, 10, &len));
    CHECK_EQ_INT(len, 0);
}

static void test_mmap(void)
{
    struct tw_mmap m = { 0 };
    put(at("three"), "abc", 3);
    CHECK_OK(tw_mmap_open(&m, at("three")));
    CHECK(m.len == 3 && m.data && memcmp(m.data, "abc", 3) == 0);
    tw_mmap_close(&m);
    CHECK(m.data == NULL && m.len == 0);
    tw_mmap_close(&m); // twice is harmless

    put(at("empty"), "", 0);
    m.len = 99;
    CHECK_OK(tw_mmap_open(&m, at("empty")));
    CHECK(m.data == NULL && m.len == 0);
    tw_mmap_close(&m);

    struct tw_mmap keep = { "x", 1 };
    m = keep;
    CHECK_EQ_INT(tw_mmap_open(&m, at("no-such-file")), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "no-such-file") != NULL);
    CHECK_EQ_INT(tw_mmap_open(&m, root), TW_EINVAL);
    CHECK(m.data == keep.data && m.len == 1);
}

static void test_write_atomic(void)
{
    const char *p = at("atomic");
    CHECK_OK(tw_file_write_atomic(p, "first", 5));
    CHECK(holds(p, "first", 5));
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0644);

    CHECK_OK(tw_file_write_atomic(p, "a longer second version", 23));
    CHECK(holds(p, "a longer second version", 23));
    CHECK_OK(tw_file_write_atomic(p, "3", 1));
    CHECK(holds(p, "3", 1));
    CHECK_OK(tw_file_write_atomic(p, NULL, 0));
    CHECK(holds(p, "", 0));

    CHECK_OK(tw_file_write_atomic_mode(at("secret"), "key", 3, 0600));
    CHECK(stat(at("secret"), &st) == 0 && (st.st_mode & 0777) == 0600);

    size_t n = 3 << 20;
    char *big = tw_malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 31 + (i >> 12));
    CHECK_OK(tw_file_write_atomic(p, big, n));
    CHECK(holds(p, big, n));
    tw_free(big);

    // A relative path (the directory fsync'ed is then ".").
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) && chdir(root) == 0);
    CHECK_OK(tw_file_write_atomic("relative", "r", 1));
    CHECK(holds(at("relative"), "r", 1));
    CHECK(chdir(cwd) == 0);
    CHECK_EQ_INT(temps_in(root, 0), 0);
}

static void test_fault_before_rename(void)
{
    const char *p = at("faulty");
    CHECK_OK(tw_file_write_atomic(p, "old content", 11));
    tw_file_set_fault(TW_FILE_FAULT_BEFORE_RENAME);
    int rc = tw_file_write_atomic(p, "NEW", 3);
    CHECK(rc < 0);
    CHECK(strstr(tw_error_msg(), p) != NULL);
    CHECK(holds(p, "old content", 11));
    CHECK_EQ_INT(temps_in(root, 1), 1); // left behind as a crash would, then dropped

    CHECK_OK(tw_file_write_atomic(p, "NEW", 3)); // the hook fired once only
    CHECK(holds(p, "NEW", 3));
}

static void test_clean_failures(void)
{
    const char *p = at("clean");
    CHECK_OK(tw_file_write_atomic(p, "old", 3));
    tw_file_set_fault(TW_FILE_FAULT_WRITE);
    CHECK_EQ_INT(tw_file_write_atomic(p, "new", 3), TW_EIO);
    CHECK(strstr(tw_error_msg(), p) != NULL);
    CHECK(holds(p, "old", 3));
    CHECK_EQ_INT(temps_in(root, 0), 0);

    const char *nodir = at("no-such-dir/file");
    CHECK_EQ_INT(tw_file_write_atomic(nodir, "x", 1), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), nodir) != NULL);
    CHECK(!tw_file_exists(at("no-such-dir")));

    // The rename fails (works as root too): path is a non-empty directory.
    const char *isdir = at("isdir");
    CHECK(mkdir(isdir, 0755) == 0);
    put(at("isdir/inside"), "in", 2);
    CHECK(tw_file_write_atomic(isdir, "x", 1) < 0);
    CHECK(strstr(tw_error_msg(), isdir) != NULL);
    CHECK(holds(at("isdir/inside"), "in", 2));
    CHECK_EQ_INT(temps_in(root, 0), 0);

    CHECK_EQ_INT(tw_file_write_atomic(at("trailing/"), "x", 1), TW_EINVAL);
    tw_mem_fail_after(1);
    CHECK_EQ_INT(tw_file_write_atomic(p, "new", 3), TW_ENOMEM);
    CHECK(holds(p, "old", 3));
}

// A real crash: the child dies of SIGKILL right before the rename.
static void test_kill_before_rename(void)
{
    const char *p = at("crash");
    CHECK_OK(tw_file_write_atomic(p, "the old bytes", 13));
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid < 0)
        return;
    if (pid == 0) {
        tw_file_set_fault(TW_FILE_FAULT_KILL_BEFORE_RENAME);
        tw_file_write_atomic(p, "NEW BYTES", 9);
        _exit(3); // not reached
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    CHECK(holds(p, "the old bytes", 13));
    CHECK_EQ_INT(temps_in(root, 1), 1);
}

static void test_mkdir_p(void)
{
    CHECK_OK(tw_mkdir_p(at("a/b/c"), 0755));
    struct stat st;
    CHECK(stat(at("a/b/c"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_OK(tw_mkdir_p(at("a/b/c"), 0755)); // exists already
    CHECK_OK(tw_mkdir_p(at("a//b/d/"), 0755));
    CHECK(stat(at("a/b/d"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_OK(tw_mkdir_p(root, 0755));

    put(at("a/file"), "f", 1);
    const char *blocked = at("a/file/x/y");
    CHECK_EQ_INT(tw_mkdir_p(blocked, 0755), TW_EEXIST);
    CHECK(strstr(tw_error_msg(), at("a/file:")) != NULL); // names the file in the way
    CHECK_EQ_INT(tw_mkdir_p(at("a/file"), 0755), TW_EEXIST);
    CHECK_EQ_INT(tw_mkdir_p("", 0755), TW_EINVAL);
}

static void test_path_join(void)
{
    char buf[8];
    CHECK_OK(tw_path_join(buf, sizeof buf, "a", "b"));
    CHECK_EQ_STR(buf, "a/b");
    CHECK_OK(tw_path_join(buf, sizeof buf, "a/", "b"));
    CHECK_EQ_STR(buf, "a/b");
    CHECK_OK(tw_path_join(buf, sizeof buf, "a", "//b"));
    CHECK_EQ_STR(buf, "a/b");
    CHECK_OK(tw_path_join(buf, sizeof buf, "", "b"));
    CHECK_EQ_STR(buf, "b");
    CHECK_OK(tw_path_join(buf, sizeof buf, "a", ""));
    CHECK_EQ_STR(buf, "a");
    CHECK_OK(tw_path_join(buf, sizeof buf, "/", "x"));
    CHECK_EQ_STR(buf, "/x");
    CHECK_OK(tw_path_join(buf, sizeof buf, "abc", "def")); // 7 + NUL: exactly fits
    CHECK_EQ_STR(buf, "abc/def");
    CHECK_EQ_INT(tw_path_join(buf, sizeof buf, "abc", "defg"), TW_EOVERFLOW);
    CHECK_EQ_STR(buf, "abc/def"); // unchanged
    CHECK_EQ_INT(tw_path_join(buf, 0, "", ""), TW_EOVERFLOW);
    strcpy(buf, "dir");
    CHECK_OK(tw_path_join(buf, sizeof buf, buf, "f")); // in place
    CHECK_EQ_STR(buf, "dir/f");
}

static void test_exists_and_fsync_dir(void)
{
    put(at("here"), "", 0);
    CHECK_EQ_INT(tw_file_exists(at("here")), 1);
    CHECK_EQ_INT(tw_file_exists(root), 1);
    CHECK_EQ_INT(tw_file_exists(at("not-here")), 0);
    CHECK_OK(tw_fsync_dir(root));
    CHECK_EQ_INT(tw_fsync_dir(at("not-here")), TW_ENOENT);
    CHECK(strstr(tw_error_msg(), "not-here") != NULL);
}

int main(void)
{
    if (!mkdtemp(root)) {
        perror(root);
        return 1;
    }
    test_read_limit();
    test_read_large();
    test_read_fifo();
    test_mmap();
    test_write_atomic();
    test_fault_before_rename();
    test_clean_failures();
    test_kill_before_rename();
    test_mkdir_p();
    test_path_join();
    test_exists_and_fsync_dir();
    CHECK_EQ_INT(tw_mem_live(), 0);
    CHECK(nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0);
    return check_report("file");
}

// Files: whole-file reads under a size limit, read-only mappings, atomic replacement
// (temp file, fsync, rename, directory fsync) with a fault hook for crash tests, and small
// path helpers. Every failure records a message that names the path and what failed.
#ifndef TW_FILE_H
#define TW_FILE_H

#include <stddef.h>
#include <sys/types.h>

// Reads the whole file at path into a new buffer: *out gets the data followed by a NUL
// (not counted in *len; len may be NULL) and the caller frees it with tw_free. Works on pipes
// and other non-regular files too, reading to end of file. Returns 0; TW_ELIMIT when the file
// holds more than limit bytes (exactly limit is fine); TW_ENOENT when path does not exist;
// TW_ENOMEM; TW_EIO for any other failure. On failure *out and *len are unchanged.
int tw_file_read(const char *path, size_t limit, char **out, size_t *len);

// A read-only, private mapping of a whole file. The caller owns the struct.
struct tw_mmap {
    const void *data; // len bytes; NULL when the file is empty (nothing is mapped then)
    size_t len;
};

// Maps the regular file at path (PROT_READ, MAP_PRIVATE); the descriptor is closed at once.
// A file truncated by someone else while mapped raises SIGBUS on access past its new end.
// Returns 0; TW_ENOENT; TW_EINVAL when path is not a regular file; TW_EIO. On failure *m is
// unchanged.
int tw_mmap_open(struct tw_mmap *m, const char *path);
// Unmaps and zeroes *m. A zeroed struct, or one closed already, is left alone.
void tw_mmap_close(struct tw_mmap *m);

// Replaces (or creates) the file at path with len bytes of data so that a reader, or the file
// system after a crash, sees either the old content or the new, never a mix: the data go to
// a temp file ".<name>.tmp-XXXXXX" in the same directory, which is written in full, fsync'ed,
// closed, renamed over path, and then the directory is fsync'ed. The new file gets mode 0644
// (the umask does not apply). Returns 0 or a negative code (TW_ENOENT when the directory does
// not exist; TW_EINVAL when path ends in '/'); on failure the temp file is removed and path is
// untouched, except that a failed directory fsync after the rename leaves the new content in
// place. A crash can leave a temp file behind: it is garbage, never the only copy.
// A file written in pieces and put in place atomically: the bytes go to a temporary file
// beside path ("<dir>/.<name>.tmp-XXXXXX", mode `mode`); commit syncs it, renames it over path
// and syncs the folder; abort (and any failed step of commit) removes it. path must outlive a.
struct tw_atomic {
    int fd;
    char *tmp;
    const char *path;
    size_t dirlen;
};
int tw_atomic_open(struct tw_atomic *a, const char *path, mode_t mode);
int tw_atomic_write(struct tw_atomic *a, const void *data, size_t len);
int tw_atomic_commit(struct tw_atomic *a);
void tw_atomic_abort(struct tw_atomic *a);

int tw_file_write_atomic(const char *path, const void *data, size_t len);
// The same with the given mode (0600 for a file holding secrets).
int tw_file_write_atomic_mode(const char *path, const void *data, size_t len, mode_t mode);

// Test hook: where the next tw_file_write_atomic* on the calling thread fails. The hook fires
// once and then resets itself to TW_FILE_FAULT_NONE.
enum tw_file_fault {
    TW_FILE_FAULT_NONE = 0,
    // A write to the temp file fails (as EIO would): the clean failure path, which removes
    // the temp file and returns TW_EIO.
    TW_FILE_FAULT_WRITE,
    // Stops after the temp file is written, synced and closed, just before the rename, and
    // returns TW_EIO as if the process had died there: the temp file is left in place, as a
    // crash would leave it (the test removes it).
    TW_FILE_FAULT_BEFORE_RENAME,
    // At the same point the process raises SIGKILL: a real crash, for a test's forked child.
    TW_FILE_FAULT_KILL_BEFORE_RENAME,
};
void tw_file_set_fault(enum tw_file_fault f);

// 1 when something exists at path (following symbolic links), else 0.
int tw_file_exists(const char *path);

// Creates the directory path and any missing parents, each with mode (as mkdir(2): the umask
// applies). Directories that exist already are fine. Returns 0; TW_EEXIST when a component is
// something other than a directory (the message names it); TW_EINVAL for an empty path;
// TW_ENOMEM; TW_EIO.
int tw_mkdir_p(const char *path, mode_t mode);

// Writes a and b joined by one '/' into buf (cap bytes with the NUL): "a" + "b" -> "a/b",
// "a/" + "b" -> "a/b", "a" + "/b" -> "a/b", "" + "b" -> "b", "a" + "" -> "a". buf may be a
// itself but must not overlap b. Returns 0, or TW_EOVERFLOW when the result does not fit
// (buf is then unchanged).
int tw_path_join(char *buf, size_t cap, const char *a, const char *b);

// Flushes the directory dir's entries to disk (after a create, rename or unlink in it), so
// that the change survives a crash. Returns 0; TW_ENOENT; TW_EIO.
int tw_fsync_dir(const char *dir);

// Removes path and, when it is a folder, everything under it, without following symbolic
// links out of it. A path that does not exist is not an error.
int tw_remove_tree(const char *path);

#endif

// The State of the Union corpus for tests (.cache/data/sotu, fetched by scripts/deps.sh under
// $TWIN_SOURCE_DIR): the sorted list of its .txt files, and reading a whole file.
#ifndef TW_TEST_SOTU_H
#define TW_TEST_SOTU_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/mem.h"
#include "check.h"

static inline int sotu_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// Fills dir with the corpus folder and names (tw_strdup'd, sorted) with its .txt files;
// returns how many (at most cap). Exits when the folder is missing.
static inline size_t sotu_list(char *dir, size_t dir_cap, char **names, size_t cap)
{
    const char *root = test_source_dir();
    snprintf(dir, dir_cap, "%s/.cache/data/sotu", root);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr,
                "%s: missing (scripts/deps.sh fetches it; the tests look under "
                "$TWIN_SOURCE_DIR, else the current folder)\n",
                dir);
        exit(1);
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0)
            names[n++] = tw_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, sotu_cmp);
    return n;
}

// A whole file (tw_free it), or NULL when it cannot be read.
static inline char *test_read_file(const char *path, size_t *len)
{
    char *buf;
    return tw_file_read(path, (size_t)64 << 20, &buf, len) == 0 ? buf : NULL;
}

#endif

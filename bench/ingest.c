// bench/ingest: the ETL pipeline's speed — documents/s and MB/s of `tw_ingest` into a fresh
// warehouse, for the State of the Union corpus (233 JSON records) and for a generated folder of
// Markdown, HTML, text and code files made from the corpus' sentences (10,000 by default).
// Usage: ingest [--quick] [--files N]      (needs .cache/data/sotu under $TWIN_SOURCE_DIR or .)
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "bench_util.h"
#include "etl/ingest.h"
#include "store/home.h"

static char corpus[512];

// The corpus' text files concatenated: the generator's supply of sentences.
static char *load_text(size_t *len)
{
    DIR *d = opendir(corpus);
    if (!d) {
        fprintf(stderr, "ingest: %s: missing (scripts/deps.sh fetches it)\n", corpus);
        exit(1);
    }
    char *all = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".txt") != 0)
            continue;
        char p[1024], *t;
        size_t tl;
        snprintf(p, sizeof p, "%s/%s", corpus, e->d_name);
        if (tw_file_read(p, 1u << 26, &t, &tl))
            continue;
        all = realloc(all, n + tl + 2);
        memcpy(all + n, t, tl);
        n += tl;
        all[n++] = '\n';
        tw_free(t);
    }
    closedir(d);
    *len = n;
    return all;
}

// n files under dir: slices of the corpus text (2-8 KB), by turns Markdown, HTML, text, C.
static int64_t make_folder(const char *dir, int n, const char *text, size_t len)
{
    int64_t bytes = 0;
    for (int i = 0; i < n; i++) {
        char sub[700], p[800];
        snprintf(sub, sizeof sub, "%s/d%03d", dir, i / 100);
        mkdir(sub, 0755);
        size_t at = ((size_t)i * 7919u * 131u) % (len - 9000);
        size_t sz = 2000 + ((size_t)i * 613u) % 6000;
        static const char *ext[] = { "md", "html", "txt", "c" };
        snprintf(p, sizeof p, "%s/f%05d.%s", sub, i, ext[i % 4]);
        FILE *f = fopen(p, "w");
        if (!f)
            return -1;
        switch (i % 4) {
        case 0:
            fprintf(f, "# Note %d\n\n%.*s\n", i, (int)sz, text + at);
            break;
        case 1:
            fprintf(f,
                    "<html><head><title>Page %d</title></head><body><nav>menu</nav>"
                    "<article><p>%.*s</p></article><footer>f</footer></body></html>",
                    i, (int)sz, text + at);
            break;
        case 2:
            fprintf(f, "%.*s\n", (int)sz, text + at);
            break;
        default:
            fprintf(f, "// file %d\nint f%d(void)\n{\n    return %d; /* %.*s */\n}\n", i, i, i,
                    (int)(sz / 4), text + at);
        }
        bytes += ftell(f);
        fclose(f);
    }
    return bytes;
}

static int run(const char *label, const char *tmp, const char *src, const char *map,
               int64_t in_bytes, double *docs_s, double *mb_s)
{
    char home[600];
    snprintf(home, sizeof home, "%s/home-%s", tmp, label);
    int created;
    struct tw_home *h;
    if (tw_home_init(home, &created) || tw_home_open(home, &h)) {
        fprintf(stderr, "ingest: %s\n", tw_error_msg());
        return 1;
    }
    struct tw_ingest_options o = { .map = map, .author = "Bench Author" };
    struct tw_ingest_summary s;
    tw_ingest_summary_init(&s);
    double t0 = now();
    int rc = tw_ingest(h, &src, 1, &o, &s);
    double dt = now() - t0;
    if (rc)
        fprintf(stderr, "ingest: %s\n", tw_error_msg());
    else {
        *docs_s = (double)s.found / dt;
        *mb_s = (double)in_bytes / 1e6 / dt;
        printf("%-16s %8lld %10.1f %10.1f %10.2f %10.2f\n", label, (long long)s.found,
               (double)in_bytes / 1e6, dt, (double)s.found / dt, (double)in_bytes / 1e6 / dt);
    }
    tw_ingest_summary_free(&s);
    tw_home_close(h);
    return rc ? 1 : 0;
}

int main(int argc, char **argv)
{
    int n_files = 10000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            n_files = 200;
        else if (i + 1 < argc && strcmp(argv[i], "--files") == 0)
            n_files = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: ingest [--quick] [--files N]\n");
            return 2;
        }
    }
    const char *root = getenv("TWIN_SOURCE_DIR") ? getenv("TWIN_SOURCE_DIR") : ".";
    snprintf(corpus, sizeof corpus, "%s/.cache/data/sotu", root);
    char tmp[] = "/tmp/twin-bench-ingest-XXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    size_t len;
    char *text = load_text(&len);
    int64_t sotu_bytes = 0;
    DIR *d = opendir(corpus);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        struct stat st;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", corpus, e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0 && stat(p, &st) == 0)
            sotu_bytes += st.st_size;
    }
    if (d)
        closedir(d);
    char folder[600];
    snprintf(folder, sizeof folder, "%s/folder", tmp);
    mkdir(folder, 0755);
    int64_t folder_bytes = make_folder(folder, n_files, text, len);
    printf("ingest: one thread, a fresh warehouse per run (standardise, MinHash, SQLite WAL)\n");
    printf("%-16s %8s %10s %10s %10s %10s\n", "source", "docs", "MB in", "seconds", "docs/s",
           "MB/s");
    double docs_s = 0, mb_s = 0;
    int rc = run("sotu-records", tmp, corpus, "author=name,content=text,title=year,date=year",
                 sotu_bytes, &docs_s, &mb_s);
    char label[32];
    snprintf(label, sizeof label, "folder-%d", n_files);
    rc |= folder_bytes < 0 || run(label, tmp, folder, NULL, folder_bytes, &docs_s, &mb_s);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        rc = 1;
    free(text);
    if (!rc)
        printf("headline: a folder of %d files ingests at %.0f documents/s, %.1f MB/s\n", n_files,
               docs_s, mb_s);
    return rc;
}

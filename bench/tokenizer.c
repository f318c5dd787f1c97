// bench/tokenizer: encode throughput of twin's tokenizers on the State of the Union corpus.
// For each tokenizer: load time, single-thread encode MB/s and tokens/s (best of R runs over
// the whole corpus), and batch encoding over 1, 2, 4, ... threads (one document per task).
// The peers (HF tokenizers, tiktoken) are timed by bench/tokenizer_peers.py in the same run
// (bench/tokenizer_peers.py runs this program and them). usage: tokenizer [DATA_DIR [NAME...]]
// (DATA_DIR, default .cache/data, holds sotu/ and tokenizers/<NAME>/)
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/cpu.h"
#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "base/pool.h"
#include "text/tokenizer.h"

struct doc {
    char *text;
    size_t len;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_corpus(const char *data, struct doc **out, size_t *n, size_t *bytes)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/sotu", data);
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    char *names[1024];
    size_t k = 0;
    struct dirent *e;
    while ((e = readdir(d)) && k < 1024)
        if (strstr(e->d_name, ".txt"))
            names[k++] = strdup(e->d_name);
    closedir(d);
    qsort(names, k, sizeof names[0], cmp_str);
    *out = calloc(k, sizeof **out);
    *bytes = 0;
    for (size_t i = 0; i < k; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (tw_file_read(path, 64 << 20, &(*out)[i].text, &(*out)[i].len))
            return -1;
        *bytes += (*out)[i].len;
        free(names[i]);
    }
    *n = k;
    return 0;
}

struct batch {
    const tw_tokenizer *t;
    const struct doc *docs;
    tw_vec *ids; // one per worker
    size_t *tokens;
};

static void encode_range(void *ctx, size_t begin, size_t end, int worker)
{
    struct batch *b = ctx;
    for (size_t i = begin; i < end; i++) {
        b->ids[worker].len = 0;
        if (tw_tokenizer_encode(b->t, b->docs[i].text, b->docs[i].len, 0, &b->ids[worker], NULL))
            abort();
        b->tokens[worker] += b->ids[worker].len;
    }
}

static double run_batch(const tw_tokenizer *t, const struct doc *docs, size_t n, int threads,
                        size_t *tokens)
{
    tw_pool *pool = NULL;
    if (threads > 1 && tw_pool_init(&pool, threads))
        return -1;
    int nw = tw_pool_size(pool);
    tw_vec ids[256];
    size_t counts[256] = { 0 };
    for (int w = 0; w < nw; w++)
        tw_vec_init(&ids[w], sizeof(int32_t));
    struct batch b = { t, docs, ids, counts };
    double t0 = now();
    tw_pool_for(pool, n, 1, encode_range, &b);
    double dt = now() - t0;
    *tokens = 0;
    for (int w = 0; w < nw; w++) {
        *tokens += counts[w];
        tw_vec_free(&ids[w]);
    }
    tw_pool_free(pool);
    return dt;
}

int main(int argc, char **argv)
{
    const char *data = argc > 1 ? argv[1] : ".cache/data";
    const char *all[] = { "llama2", "llama3", "qwen3", "gemma3", "gpt4o" };
    const char **names = argc > 2 ? (const char **)argv + 2 : all;
    int n_names = argc > 2 ? argc - 2 : 5;
    struct doc *docs;
    size_t n_docs, bytes;
    if (load_corpus(data, &docs, &n_docs, &bytes)) {
        fprintf(stderr, "tokenizer: cannot read the corpus under %s/sotu\n", data);
        return 1;
    }
    int cores = tw_cpu_count();
    printf("bench/tokenizer: %zu documents, %.2f MB; %d cores\n", n_docs, (double)bytes / 1e6,
           cores);
    printf("%-9s %8s %10s %12s %s\n", "tokenizer", "load s", "1T MB/s", "1T Mtok/s",
           "batch MB/s by threads");
    for (int k = 0; k < n_names; k++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", data, names[k]);
        tw_tokenizer *t;
        double t0 = now();
        if (tw_tokenizer_load_dir(dir, &t)) {
            fprintf(stderr, "tokenizer: %s\n", tw_error_msg());
            return 1;
        }
        double load = now() - t0;
        size_t tokens = 0;
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            double dt = run_batch(t, docs, n_docs, 1, &tokens);
            best = dt < best ? dt : best;
        }
        printf("%-9s %8.2f %10.2f %12.3f ", names[k], load, (double)bytes / best / 1e6,
               (double)tokens / best / 1e6);
        for (int th = 2; th <= cores && th <= 64; th *= 2) {
            double dt = run_batch(t, docs, n_docs, th, &tokens);
            printf(" %dT:%.1f", th, (double)bytes / dt / 1e6);
        }
        printf("\n");
        fflush(stdout);
        tw_tokenizer_free(t);
    }
    for (size_t i = 0; i < n_docs; i++)
        tw_free(docs[i].text);
    free(docs);
    return 0;
}

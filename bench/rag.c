// bench/rag: the RAG pipeline's retrieval latency (everything but the LLM calls: self-query by
// the name matcher, retrieval, fusion, chunk reads) per question, p50 and p99, on one core,
// over a feature store of about N chunks (100,000 by default): the State of the Union
// addresses' sentences recombined into documents by their own authors (seeded), ingested and
// run through the feature pipeline (BM25, and with --model an embedder for dense and hybrid).
// The questions are eval/retrieval.h's generated ones over the real addresses.
// Usage: rag [--quick] [--chunks N] [--queries Q] [--model PATH] [--home DIR]
//   --home DIR reuses a home that a previous run built (its feature store is not rebuilt).
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "base/file.h"
#include "base/mem.h"
#include "bench_util.h"
#include "etl/ingest.h"
#include "eval/retrieval.h"
#include "pipeline/features.h"
#include "rag/ask.h"
#include "store/home.h"

struct addr {
    char *author, *text; // from the corpus' JSON records
    size_t len;
};

static uint64_t next(uint64_t *s) // splitmix64
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t load_corpus(const char *dir, struct addr *out, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "rag: %s: missing (scripts/deps.sh fetches it)\n", dir);
        exit(1);
    }
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        json_t *j = json_load_file(p, 0, NULL);
        const char *name = json_string_value(json_object_get(j, "name"));
        const char *text = json_string_value(json_object_get(j, "text"));
        if (name && text)
            out[n++] = (struct addr){ strdup(name), strdup(text), strlen(text) };
        json_decref(j);
    }
    closedir(d);
    return n;
}

// Writes JSON Lines of documents until about `chars` characters: each document is one
// author's sentences (runs of 1-3 sentences from random places of that author's addresses).
static void make_records(const char *path, const struct addr *a, size_t n, size_t chars)
{
    FILE *f = fopen(path, "w");
    if (!f)
        exit(1);
    uint64_t rng = 42;
    size_t written = 0;
    for (size_t doc = 0; written < chars; doc++) {
        const struct addr *src = &a[next(&rng) % n];
        json_t *text = json_string("");
        char *buf = malloc(16000);
        size_t bl = 0;
        while (bl < 12000) {
            size_t at = next(&rng) % src->len, end;
            while (at > 0 && src->text[at - 1] != '.')
                at--;
            end = at;
            for (int s = 0; s < 3 && end < src->len; s++) {
                const char *dot = memchr(src->text + end, '.', src->len - end);
                end = dot ? (size_t)(dot - src->text) + 1 : src->len;
            }
            if (end - at > 3000 || end <= at)
                continue;
            memcpy(buf + bl, src->text + at, end - at);
            bl += end - at;
            buf[bl++] = ' ';
        }
        json_string_setn(text, buf, bl);
        json_t *rec =
            json_pack("{s:s,s:o,s:I}", "name", src->author, "text", text, "doc", (json_int_t)doc);
        char *line = json_dumps(rec, JSON_COMPACT);
        fprintf(f, "%s\n", line);
        free(line);
        json_decref(rec);
        free(buf);
        written += bl;
    }
    fclose(f);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

// One configuration: every question through tw_rag_ask (no LLM, no trace writes).
static void measure(struct tw_home *h, tw_retriever *r, const struct tw_eval_query *q, size_t nq,
                    enum tw_search_mode mode, bool self_query)
{
    struct tw_rag rag = { .r = r };
    struct tw_rag_options o;
    tw_rag_options_default(&o);
    o.mode = mode;
    o.self_query = self_query;
    o.trace = false;
    double *ms = malloc(nq * sizeof *ms), *ret = malloc(nq * sizeof *ret);
    double *emb = malloc(nq * sizeof *emb);
    for (int pass = 0; pass < 2; pass++) { // the first pass warms the caches
        for (size_t i = 0; i < nq; i++) {
            struct tw_rag_result res;
            if (tw_rag_ask(h, &rag, q[i].question, &o, &res)) {
                fprintf(stderr, "rag: %s\n", tw_error_msg());
                exit(1);
            }
            json_t *lat = json_object_get(res.trace, "latency_ms");
            ms[i] = json_real_value(json_object_get(lat, "total"));
            ret[i] = json_real_value(json_object_get(lat, "retrieve"));
            json_t *q0 = json_array_get(json_object_get(res.trace, "retrieve"), 0);
            emb[i] = json_real_value(json_object_get(q0, "embed_ms")); // 0 when sparse
            tw_rag_result_free(&res);
        }
    }
    qsort(ms, nq, sizeof *ms, cmp_double);
    qsort(ret, nq, sizeof *ret, cmp_double);
    qsort(emb, nq, sizeof *emb, cmp_double);
    size_t p99 = (size_t)((double)(nq - 1) * 0.99);
    printf("%-7s %-5s %6zu %9.3f %9.3f %9.3f %9.3f %9.3f\n", tw_search_mode_name(mode),
           self_query ? "yes" : "no", nq, ms[nq / 2], ms[p99], ret[nq / 2], ret[p99], emb[nq / 2]);
    free(ms);
    free(ret);
    free(emb);
}

int main(int argc, char **argv)
{
    size_t chunks = 100000, nq = 1000;
    const char *model = NULL, *home_arg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--quick") == 0) {
            chunks = 2000, nq = 50;
        } else if (val && strcmp(argv[i], "--chunks") == 0) {
            chunks = (size_t)atol(val), i++;
        } else if (val && strcmp(argv[i], "--queries") == 0) {
            nq = (size_t)atol(val), i++;
        } else if (val && strcmp(argv[i], "--model") == 0) {
            model = val, i++;
        } else if (val && strcmp(argv[i], "--home") == 0) {
            home_arg = val, i++;
        } else {
            fprintf(stderr, "usage: rag [--quick] [--chunks N] [--queries Q] [--model PATH] "
                            "[--home DIR]\n");
            return 2;
        }
    }
    const char *root = getenv("TWIN_SOURCE_DIR") ? getenv("TWIN_SOURCE_DIR") : ".";
    char corpus[600], tmp[64] = "/tmp/twin-bench-rag-XXXXXX", home[700], recs[700];
    snprintf(corpus, sizeof corpus, "%s/.cache/data/sotu", root);
    static struct addr a[400];
    size_t na = load_corpus(corpus, a, 400);
    if (!mkdtemp(tmp))
        return 1;
    snprintf(home, sizeof home, "%s%s", home_arg ? home_arg : tmp, home_arg ? "" : "/home");
    struct stat sb;
    bool build = !home_arg || stat(home, &sb) != 0;
    struct tw_home *h;
    int created;
    if (build) {
        snprintf(recs, sizeof recs, "%s/records.jsonl", tmp);
        // The feature pipeline cuts articles into chunks of 1,000-2,000 characters (1,750 on
        // average on this text).
        make_records(recs, a, na, chunks * 1750);
        if (tw_home_init(home, &created) || tw_home_open(home, &h))
            return fprintf(stderr, "rag: %s\n", tw_error_msg()), 1;
        const char *src[] = { recs };
        struct tw_ingest_options io = { .map = "author=name,content=text", .near_dup = 2 };
        struct tw_ingest_summary is;
        tw_ingest_summary_init(&is);
        double t0 = now();
        if (tw_ingest(h, src, 1, &io, &is))
            return fprintf(stderr, "rag: %s\n", tw_error_msg()), 1;
        tw_ingest_summary_free(&is);
        double t1 = now();
        struct tw_features_options fo = { .model = model };
        struct tw_features_summary fs;
        if (tw_features_run(h, &fo, &fs))
            return fprintf(stderr, "rag: %s\n", tw_error_msg()), 1;
        printf("built: %lld documents, %lld chunks; ingest %.1f s, features %.1f s%s\n",
               (long long)fs.documents_total, (long long)fs.chunks_total, t1 - t0, fs.seconds,
               model ? " (with the embedder)" : "");
    } else if (tw_home_open(home, &h)) {
        return fprintf(stderr, "rag: %s\n", tw_error_msg()), 1;
    }
    // The questions: generated from the real addresses.
    struct tw_eval_doc *docs = malloc(na * sizeof *docs);
    for (size_t i = 0; i < na; i++)
        docs[i] = (struct tw_eval_doc){ "", a[i].author, a[i].text, a[i].len };
    struct tw_eval_query *q;
    size_t got;
    if (tw_eval_generate(docs, na, nq, 7, &q, &got) || got == 0)
        return fprintf(stderr, "rag: no questions\n"), 1;
    // One core from here on.
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
    tw_retriever *r;
    if (tw_retriever_open(h, 1, &r))
        return fprintf(stderr, "rag: %s\n", tw_error_msg()), 1;
    struct tw_retriever_info info;
    tw_retriever_info(r, &info);
    printf("rag: %zu chunks, %zu documents, %zu authors; %zu questions; one core; self-query "
           "by name matching (on, then off), no expansion, k 3; embedder %s\n",
           info.chunks, info.documents, info.authors, got,
           info.embed_model ? info.embed_model : "none");
    printf("%-7s %-5s %6s %9s %9s %9s %9s %9s\n", "mode", "self", "n", "p50 ms", "p99 ms",
           "ret p50", "ret p99", "emb p50");
    for (int sq = 1; sq >= 0; sq--) { // with the self-query's author filter, then without
        measure(h, r, q, got, TW_SEARCH_SPARSE, sq);
        if (info.embed_model) {
            measure(h, r, q, got, TW_SEARCH_DENSE, sq);
            measure(h, r, q, got, TW_SEARCH_HYBRID, sq);
        }
    }
    printf("headline: retrieval p50/p99 over %zu chunks on one core (see the rows above)\n",
           info.chunks);
    tw_retriever_free(r);
    tw_eval_queries_free(q, got);
    tw_home_close(h);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd))
        return 1;
    for (size_t i = 0; i < na; i++)
        free(a[i].author), free(a[i].text);
    free(docs);
    return 0;
}

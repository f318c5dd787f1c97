// Fuzzes eval/retrieval.c's query-set reader: the input is written to a file and loaded with
// tw_eval_queries_load; a failure must be a format error naming the file, and a set that
// loads has every field the header promises (an id, a question, at least one relevant key).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "eval/retrieval.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/twin-fuzz-eval-%d.jsonl", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    struct tw_eval_query *q = NULL;
    size_t n = 0;
    int rc = tw_eval_queries_load(path, &q, &n);
    if (rc != 0 && (rc != TW_EFORMAT || strncmp(tw_error_msg(), path, strlen(path)) != 0))
        abort();
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!q[i].id || !*q[i].id || !q[i].question || !*q[i].question || q[i].n_relevant == 0)
            abort();
        for (size_t j = 0; j < q[i].n_relevant; j++)
            if (!q[i].relevant[j] || !*q[i].relevant[j])
                abort();
    }
    if (rc == 0) {
        const char *uris[2] = { "a/1823_james_monroe_dr.json#1", "b" };
        struct tw_eval_acc acc = { 0 };
        for (size_t i = 0; i < n; i++)
            tw_eval_score(&q[i], uris, 2, &acc);
        double r[TW_EVAL_NK], mrr;
        tw_eval_means(&acc, r, &mrr);
        for (int k = 0; k < TW_EVAL_NK; k++)
            if (!(r[k] >= 0 && r[k] <= 1))
                abort();
        tw_eval_queries_free(q, n);
    }
    return 0;
}

// Fuzzes rag/selfquery.c on arbitrary bytes as an LLM's answer and as a question: the
// self-query answer's reader (a verdict in range, an invalid one with a reason), the
// expansion reader (pieces short, valid UTF-8, distinct, never the question), the author
// matcher (ascending indexes in range) and the category words.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"
#include "rag/selfquery.h"
#include "text/utf8.h"

static const char *const names[] = {
    "George Washington", "John Adams",         "John Quincy Adams",    "Abraham Lincoln",
    "Ulysses S Grant",   "Theodore Roosevelt", "Franklin D Roosevelt", "George Bush",
    "George W Bush",     "Martin Van Buren",   "Lyndon B Johnson",     "Andrew Johnson",
};
#define N_NAMES (sizeof names / sizeof *names)

static tw_authors *am;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!am && tw_authors_new(names, N_NAMES, &am) != 0)
        abort();
    const char *text = (const char *)data;
    struct tw_selfquery sq;
    if (tw_selfquery_parse(am, text, size, &sq) != 0)
        abort();
    if (sq.author < -1 || sq.author >= (long)N_NAMES || sq.category < -1 || sq.category > 2 ||
        (!sq.valid && (sq.author != -1 || sq.category != -1 || !sq.error[0])))
        abort();
    const char *question = "What did Lincoln say about the Union?";
    char **q = NULL;
    size_t n = 0;
    if (tw_expand_parse(question, text, size, 5, &q, &n) != 0 || n > 5)
        abort();
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(q[i]);
        if (len == 0 || len > 1000 || !tw_utf8_valid(q[i], len) || strcasecmp(q[i], question) == 0)
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(q[i], q[j]) == 0)
                abort();
    }
    tw_expand_free(q, n);
    char *z = tw_strndup(text, size); // as a question (stops at a NUL)
    if (!z)
        abort();
    size_t *idx = NULL, m = 0;
    if (tw_authors_match(am, z, &idx, &m) != 0)
        abort();
    for (size_t i = 0; i < m; i++)
        if (idx[i] >= N_NAMES || (i && idx[i] <= idx[i - 1]))
            abort();
    tw_free(idx);
    int c = tw_selfquery_category(z);
    if (c < -1 || c > 2)
        abort();
    tw_free(z);
    return 0;
}

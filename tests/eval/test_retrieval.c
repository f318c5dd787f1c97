// Tests of src/eval/retrieval.c: the hand-written State of the Union question set (it loads,
// every relevant key names corpus files, authors are the corpus' own names), the loader's
// errors (file:line, key) on one temp file per case, recall@k and MRR on hand-made rankings,
// the generator (determinism per seed, count, spread, provenance, no copied runs, sentence
// splitting at abbreviations, multibyte safety), and failed allocations (nothing leaked).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "check.h"
#include "eval/retrieval.h"
#include "sotu.h"

static char tmpdir[64];

static const char *source_dir(void)
{
    return test_source_dir();
}

// ---- The corpus -----------------------------------------------------------------------------

struct corpus {
    char *names[512]; // file names, "1823_james_monroe_dr.txt"
    char *uris[512];  // full paths of the .txt files
    char *authors[512];
    char *texts[512];
    struct tw_eval_doc docs[512];
    size_t n;
};

// The "name" of the address's JSON record (tw_free it).
static char *json_name(const char *dir, const char *txt_name)
{
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/%s", dir, txt_name);
    REQUIRE(n > 4 && (size_t)n < sizeof path);
    strcpy(path + n - 4, ".json"); // x.txt -> x.json
    json_t *j;
    REQUIRE(tw_json_load_file(path, 0, &j) == 0);
    const char *name;
    REQUIRE(tw_json_get_str(j, path, "name", &name) == 0);
    char *copy = tw_strdup(name);
    json_decref(j);
    return copy;
}

static void corpus_load(struct corpus *c)
{
    char dir[1024];
    c->n = sotu_list(dir, sizeof dir, c->names, 512);
    for (size_t i = 0; i < c->n; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, c->names[i]);
        size_t len;
        c->uris[i] = tw_strdup(path);
        c->texts[i] = test_read_file(path, &len);
        REQUIRE(c->texts[i]);
        c->authors[i] = json_name(dir, c->names[i]);
        c->docs[i] = (struct tw_eval_doc){ c->uris[i], c->authors[i], c->texts[i], len };
    }
}

static void corpus_free(struct corpus *c)
{
    for (size_t i = 0; i < c->n; i++) {
        tw_free(c->names[i]);
        tw_free(c->uris[i]);
        tw_free(c->authors[i]);
        tw_free(c->texts[i]);
    }
}

// ---- The hand-written set -------------------------------------------------------------------

static void test_hand_written(const struct corpus *c)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/rag/sotu_questions.jsonl", source_dir());
    struct tw_eval_query *q = NULL;
    size_t n = 0, named = 0;
    CHECK_OK(tw_eval_queries_load(path, &q, &n));
    CHECK(n >= 40);
    for (size_t i = 0; i < n; i++) {
        CHECK(strncmp(q[i].id, "hand-", 5) == 0);
        CHECK(strlen(q[i].question) > 20);
        named += q[i].author != NULL;
        for (size_t r = 0; r < q[i].n_relevant; r++) {
            size_t files = 0;
            for (size_t d = 0; d < c->n; d++) {
                if (!strstr(c->names[d], q[i].relevant[r]))
                    continue;
                files++;
                // A question that names its author names the one who gave the address.
                if (q[i].author && strcmp(q[i].author, c->authors[d]) != 0) {
                    fprintf(stderr, "%s: author %s, but %s is by %s\n", q[i].id, q[i].author,
                            c->names[d], c->authors[d]);
                    CHECK(0);
                }
            }
            if (files < 1)
                fprintf(stderr, "%s: \"%s\" matches no file\n", q[i].id, q[i].relevant[r]);
            CHECK(files >= 1);
        }
    }
    // About half name their president, half do not.
    CHECK(named >= n / 3 && n - named >= n / 3);
    tw_eval_queries_free(q, n);
}

// ---- The loader's errors --------------------------------------------------------------------

static void write_tmp(const char *path, const char *text)
{
    REQUIRE(tw_file_write_atomic(path, text, strlen(text)) == 0);
}

// Loading text must fail with code and a message that starts with "<path>:<line>" (line 0:
// just the path) and contains `what`; the outputs are left as they were.
static void check_fails(int line, const char *text, int code, int at_line, const char *what)
{
    char path[128], prefix[160];
    snprintf(path, sizeof path, "%s/case-%d.jsonl", tmpdir, line);
    if (at_line)
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, at_line);
    else
        snprintf(prefix, sizeof prefix, "%s", path);
    write_tmp(path, text);
    struct tw_eval_query *q = (struct tw_eval_query *)(uintptr_t)1;
    size_t n = 7;
    int rc = tw_eval_queries_load(path, &q, &n);
    const char *msg = tw_error_msg();
    check_count++;
    if (rc != code || q != (struct tw_eval_query *)(uintptr_t)1 || n != 7 ||
        strncmp(msg, prefix, strlen(prefix)) != 0 || !strstr(msg, what)) {
        fprintf(stderr, "%s:%d: load failed with %d \"%s\" (wanted %d, \"%s...%s\")\n", __FILE__,
                line, rc, msg, code, prefix, what);
        check_failed_count++;
    }
    unlink(path);
}

static void test_load_errors(void)
{
    const char *ok = "{\"id\": \"a\", \"question\": \"q?\", \"relevant\": [\"k\"]}\n";
    char two[256];
    check_fails(__LINE__, "{\"id\": \"a\",\n", TW_EFORMAT, 1, "column");
    check_fails(__LINE__, "\n# c\n[1, 2]\n", TW_EFORMAT, 3, "expected an object, got an array");
    check_fails(__LINE__, "{\"question\": \"q\", \"relevant\": [\"k\"]}", TW_EFORMAT, 1,
                "missing \"id\"");
    check_fails(__LINE__, "{\"id\": 4, \"question\": \"q\", \"relevant\": [\"k\"]}", TW_EFORMAT, 1,
                "\"id\": expected a string, got an integer");
    check_fails(__LINE__, "{\"id\": \"a\", \"question\": \"\", \"relevant\": [\"k\"]}", TW_EFORMAT,
                1, "\"question\": expected a non-empty string");
    check_fails(__LINE__, "{\"id\": \"a\", \"question\": \"q\"}", TW_EFORMAT, 1,
                "\"relevant\": expected a non-empty array of strings");
    check_fails(__LINE__, "{\"id\": \"a\", \"question\": \"q\", \"relevant\": []}", TW_EFORMAT, 1,
                "\"relevant\": expected a non-empty array of strings");
    check_fails(__LINE__, "{\"id\": \"a\", \"question\": \"q\", \"relevant\": [\"k\", 3]}",
                TW_EFORMAT, 1, "\"relevant\": expected a non-empty array of strings");
    check_fails(__LINE__, "{\"id\": \"a\", \"question\": \"q\", \"relevant\": \"k\"}", TW_EFORMAT,
                1, "\"relevant\": expected a non-empty array of strings");
    check_fails(__LINE__, "{\"id\": \"a\", \"question\": \"q\", \"relevant\": [\"k\", \"\"]}",
                TW_EFORMAT, 1, "\"relevant\"[1]: expected a non-empty string");
    check_fails(__LINE__,
                "{\"id\": \"a\", \"question\": \"q\", \"relevant\": [\"k\"], \"author\": 5}",
                TW_EFORMAT, 1, "\"author\": expected a string, got an integer");
    check_fails(__LINE__,
                "{\"id\": \"a\", \"question\": \"q\", \"relevant\": [\"k\"], \"author\": \"\"}",
                TW_EFORMAT, 1, "\"author\": expected a non-empty string or null");
    // Line numbers count blank and comment lines.
    snprintf(two, sizeof two, "%s\n# a comment\n%s", ok, ok);
    check_fails(__LINE__, two, TW_EFORMAT, 4, "\"id\": duplicate \"a\" (first on line 1)");
    snprintf(two, sizeof two, "%s{\"id\": \"b\", \"question\": \"q\"} x\n", ok);
    check_fails(__LINE__, two, TW_EFORMAT, 2, "column");

    char missing[128];
    snprintf(missing, sizeof missing, "%s/no-such-file.jsonl", tmpdir);
    struct tw_eval_query *q = NULL;
    size_t n = 0;
    CHECK_EQ_INT(tw_eval_queries_load(missing, &q, &n), TW_EIO);
    CHECK(strstr(tw_error_msg(), missing) != NULL);
}

static void test_load_ok(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/ok.jsonl", tmpdir);
    write_tmp(path,
              "# hand-written\n"
              "\n"
              "{\"id\": \"h1\", \"question\": \"Who?\", \"relevant\": [\"1823_james_monroe\"],"
              " \"author\": \"James Monroe\", \"note\": {\"x\": [1]}}\r\n"
              "   \t\n"
              "  # indented comment\n"
              "{\"id\": \"h2\", \"question\": \"What?\", \"relevant\": [\"a\", \"b\"],"
              " \"author\": null}\n"
              "{\"question\": \"Why?\", \"relevant\": [\"c\"], \"id\": \"h3\"}");
    struct tw_eval_query *q = NULL;
    size_t n = 0;
    CHECK_OK(tw_eval_queries_load(path, &q, &n));
    REQUIRE(n == 3);
    CHECK_EQ_STR(q[0].id, "h1");
    CHECK_EQ_STR(q[0].question, "Who?");
    CHECK_EQ_INT(q[0].n_relevant, 1);
    CHECK_EQ_STR(q[0].relevant[0], "1823_james_monroe");
    CHECK_EQ_STR(q[0].author, "James Monroe");
    CHECK_EQ_STR(q[1].id, "h2");
    CHECK_EQ_INT(q[1].n_relevant, 2);
    CHECK_EQ_STR(q[1].relevant[1], "b");
    CHECK(q[1].author == NULL);
    CHECK_EQ_STR(q[2].id, "h3");
    CHECK(q[2].author == NULL);
    tw_eval_queries_free(q, n);

    // An empty file is an empty set.
    write_tmp(path, "");
    q = (struct tw_eval_query *)(uintptr_t)1;
    CHECK_OK(tw_eval_queries_load(path, &q, &n));
    CHECK_EQ_INT(n, 0);
    tw_eval_queries_free(q, n);
    unlink(path);
}

// ---- Metrics --------------------------------------------------------------------------------

static void test_metrics(void)
{
    CHECK(tw_eval_ks[0] == 1 && tw_eval_ks[1] == 3 && tw_eval_ks[2] == 5 && tw_eval_ks[3] == 10);
    char *two[] = { "1823_james_monroe", "1845_james_polk" }, *one[] = { "k" };
    struct tw_eval_query q2 = { "q2", "?", two, 2, NULL }, q1 = { "q1", "?", one, 1, NULL };
    // Relevant at ranks 2 (twice: chunks of one document) and 5; past rank 10 is not seen.
    const char *ranked[] = {
        "sotu/1901_theodore_roosevelt_r.json",
        "sotu/1823_james_monroe_dr.json",
        "sotu/1823_james_monroe_dr.json",
        NULL,
        "sotu/1845_james_polk_d.json",
        "x6",
        "x7",
        "x8",
        "x9",
        "x10",
        "sotu/1845_james_polk_d.json",
    };
    struct tw_eval_acc acc = { 0 };
    tw_eval_score(&q2, ranked, 11, &acc);
    CHECK(acc.n == 1 && acc.recall_sum[0] == 0 && acc.recall_sum[1] == 0.5);
    CHECK(acc.recall_sum[2] == 1 && acc.recall_sum[3] == 1 && acc.rr_sum == 0.5);

    const char *none[] = { "a", "b", "c" }, *first[] = { "xky" };
    tw_eval_score(&q1, none, 3, &acc);  // nothing relevant
    tw_eval_score(&q1, NULL, 0, &acc);  // nothing retrieved
    tw_eval_score(&q1, first, 1, &acc); // "k" inside the URI, at rank 1
    double recall[TW_EVAL_NK], mrr;
    tw_eval_means(&acc, recall, &mrr);
    CHECK_EQ_INT(acc.n, 4);
    CHECK(recall[0] == 0.25 && recall[1] == 0.375 && recall[2] == 0.5 && recall[3] == 0.5);
    CHECK(mrr == 0.375);

    // Only the first 10 count for recall@10: a relevant document at rank 11 adds nothing.
    struct tw_eval_acc late = { 0 };
    const char *eleven[11] = { "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k" };
    tw_eval_score(&q1, eleven, 10, &late);
    CHECK(late.recall_sum[3] == 0 && late.rr_sum == 0);
    tw_eval_score(&q1, eleven + 8, 3, &late); // "k" at rank 3
    CHECK(late.recall_sum[0] == 0 && late.recall_sum[1] == 1 && late.rr_sum == 1.0 / 3);

    struct tw_eval_acc empty = { 0 };
    recall[0] = mrr = 9;
    tw_eval_means(&empty, recall, &mrr);
    CHECK(recall[0] == 0 && recall[3] == 0 && mrr == 0);
}

// ---- The generator on the corpus ------------------------------------------------------------

static bool same_sets(const struct tw_eval_query *a, size_t na, const struct tw_eval_query *b,
                      size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        if (strcmp(a[i].id, b[i].id) || strcmp(a[i].question, b[i].question) ||
            strcmp(a[i].relevant[0], b[i].relevant[0]) ||
            (a[i].author == NULL) != (b[i].author == NULL) ||
            (a[i].author && strcmp(a[i].author, b[i].author)))
            return false;
    }
    return true;
}

// The text's ASCII words, lower case, each followed by one space ("the union is "), so that a
// run of words is found with strstr. tw_free it.
static char *word_stream(const char *text, size_t len)
{
    char *out = tw_malloc(2 * len + 2), *w = out;
    REQUIRE(out);
    *w++ = ' ';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        bool letter = (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z';
        if (letter)
            *w++ = (char)(ch | 0x20);
        else if (w[-1] != ' ')
            *w++ = ' ';
    }
    if (w[-1] != ' ')
        *w++ = ' ';
    *w = 0;
    return out;
}

// True when 10 consecutive words of question appear in a row in the word stream doc.
static bool copies_run(const char *question, const char *doc)
{
    char *q = word_stream(question, strlen(question));
    size_t starts[65], n = 0, len = strlen(q); // where each word starts, then len
    for (size_t at = 1; at < len && n < 64; at = (size_t)(strchr(q + at, ' ') - q) + 1)
        starts[n++] = at;
    starts[n] = len;
    bool found = false;
    for (size_t i = 0; !found && i + 10 <= n; i++) {
        char run[512]; // " w1 ... w10 ", with the spaces around it
        snprintf(run, sizeof run, "%.*s", (int)(starts[i + 10] - starts[i] + 1),
                 q + starts[i] - 1);
        found = strstr(doc, run) != NULL;
    }
    tw_free(q);
    return found;
}

static void test_generate_corpus(const struct corpus *c)
{
    struct tw_eval_query *a, *b, *d;
    size_t na, nb, nd;
    // Several hundred are possible: far more than 300 usable sentences, and 1000 questions.
    CHECK_OK(tw_eval_generate(c->docs, c->n, 1000, 42, &a, &na));
    CHECK_OK(tw_eval_generate(c->docs, c->n, 1000, 42, &b, &nb));
    CHECK_OK(tw_eval_generate(c->docs, c->n, 1000, 43, &d, &nd));
    CHECK_EQ_INT(na, 1000);
    CHECK(same_sets(a, na, b, nb));
    size_t differ = 0;
    for (size_t i = 0; i < na && i < nd; i++)
        differ += strcmp(a[i].question, d[i].question) != 0;
    CHECK(differ > na / 2);

    // The copy detector itself: ten words in a row, whatever the case and punctuation.
    const char *ten = "One, two three four five six seven eight nine ten eleven.";
    char *ts = word_stream(ten, strlen(ten));
    CHECK(copies_run("Two three FOUR five six seven eight nine ten eleven?", ts));
    CHECK(!copies_run("Two three four five six seven eight nine ten twelve?", ts));
    tw_free(ts);

    size_t per_doc[512] = { 0 }, docs_used = 0, max_per_doc = 0;
    char **streams = tw_calloc(c->n, sizeof *streams);
    REQUIRE(streams);
    for (size_t i = 0; i < na; i++) {
        char id[32];
        snprintf(id, sizeof id, "gen-%04zu", i + 1);
        CHECK_EQ_STR(a[i].id, id);
        REQUIRE(a[i].n_relevant == 1);
        size_t doc = c->n;
        for (size_t k = 0; k < c->n && doc == c->n; k++)
            if (strcmp(a[i].relevant[0], c->uris[k]) == 0)
                doc = k;
        REQUIRE(doc < c->n); // its relevant document is the one it was drawn from
        CHECK_EQ_STR(a[i].author, c->authors[doc]);
        CHECK(strstr(a[i].question, c->authors[doc]) != NULL);
        for (const char *p = a[i].question; *p; p++)
            CHECK((unsigned char)*p < 0x80);
        if (!streams[doc])
            streams[doc] = word_stream(c->texts[doc], c->docs[doc].len);
        if (copies_run(a[i].question, streams[doc])) {
            fprintf(stderr, "copied: %s\n", a[i].question);
            CHECK(0);
        }
        docs_used += per_doc[doc]++ == 0;
        if (per_doc[doc] > max_per_doc)
            max_per_doc = per_doc[doc];
    }
    // Spread over the corpus: rounds over the documents, one question from each per round.
    CHECK(docs_used >= c->n * 9 / 10);
    CHECK(max_per_doc <= (na + c->n - 1) / c->n + 1);
    for (size_t k = 0; k < c->n; k++)
        tw_free(streams[k]);
    tw_free(streams);

    tw_eval_queries_free(a, na);
    tw_eval_queries_free(b, nb);
    tw_eval_queries_free(d, nd);
}

// ---- The generator on small documents -------------------------------------------------------

// Questions from one document (no author), as an array the caller frees.
static struct tw_eval_query *gen_one_doc(const char *text, uint64_t seed, size_t want, size_t *n)
{
    struct tw_eval_doc doc = { "mem://doc", NULL, text, strlen(text) };
    struct tw_eval_query *q = NULL;
    REQUIRE(tw_eval_generate(&doc, 1, want, seed, &q, n) == 0);
    return q;
}

static void test_generate_small(void)
{
    size_t n;
    // One usable sentence between short ones: one question, from its words.
    struct tw_eval_query *q =
        gen_one_doc("Short one. The expedition explored the Missouri toward its distant source "
                    "and finally reached the Pacific coast after two years! Tiny? Yes.",
                    1, 10, &n);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK(q[0].author == NULL);
        CHECK_EQ_STR(q[0].relevant[0], "mem://doc");
        // Its best word (a name: all words are once in the document) is always asked about.
        CHECK(strstr(q[0].question, "Missouri") != NULL);
    }
    tw_eval_queries_free(q, n);

    // Titles, initials and "U.S." do not end a sentence: each of these is 12 or 13 words,
    // usable only when whole (a split anywhere leaves pieces under 12).
    const char *abbrev = "Mr. Jefferson asked Messrs. Lewis and Clarke to explore rivers and "
                         "mountains. The U.S. Army and the Navy guarded frontiers, "
                         "harbors, forts and distant settlements.";
    q = gen_one_doc(abbrev, 3, 10, &n);
    CHECK_EQ_INT(n, 2);
    tw_eval_queries_free(q, n);

    // Words touching a multibyte letter are never used, and nothing cuts a character.
    const char *utf8 = "Envoys from Bogot\xC3\xA1 discussed the nation\xE2\x80\x99s railroads, "
                       "canals, harbors and commerce with \xE2\x80\x9Cour\xE2\x80\x9D merchants "
                       "\xE2\x80\x94 at length.";
    for (uint64_t seed = 0; seed < 40; seed++) {
        q = gen_one_doc(utf8, seed, 5, &n);
        CHECK_EQ_INT(n, 1);
        for (size_t i = 0; i < n; i++) {
            CHECK(!strstr(q[i].question, "Bogot") && !strstr(q[i].question, "bogot"));
            for (const char *p = q[i].question; *p; p++)
                CHECK((unsigned char)*p < 0x80);
        }
        tw_eval_queries_free(q, n);
    }

    // Nothing usable, nothing wanted, no documents: empty sets.
    q = gen_one_doc("Too short. Far too short to ask about.", 1, 10, &n);
    CHECK_EQ_INT(n, 0);
    tw_eval_queries_free(q, n);
    q = gen_one_doc(abbrev, 1, 0, &n);
    CHECK_EQ_INT(n, 0);
    tw_eval_queries_free(q, n);
    CHECK_OK(tw_eval_generate(NULL, 0, 10, 1, &q, &n));
    CHECK_EQ_INT(n, 0);
    tw_eval_queries_free(q, n);
}

// ---- Failed allocations ---------------------------------------------------------------------

static void test_alloc_failures(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/alloc.jsonl", tmpdir);
    write_tmp(path, "{\"id\": \"a\", \"question\": \"q?\", \"relevant\": [\"k\", \"l\"], "
                    "\"author\": \"A B\"}\n# c\n"
                    "{\"id\": \"b\", \"question\": \"r?\", \"relevant\": [\"m\"]}\n"
                    "{\"id\": \"c\", \"question\": \"s?\", \"relevant\": [\"n\"]}\n");
    tw_json_init();
    long live = tw_mem_live();
    int failures = 0;
    for (long k = 1; k < 10000; k++) {
        struct tw_eval_query *q = (struct tw_eval_query *)(uintptr_t)1;
        size_t n = 7;
        tw_mem_fail_after(k);
        int rc = tw_eval_queries_load(path, &q, &n);
        tw_mem_fail_after(0);
        if (rc == 0) {
            CHECK_EQ_INT(n, 3);
            tw_eval_queries_free(q, n);
            break;
        }
        failures++;
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK(q == (struct tw_eval_query *)(uintptr_t)1 && n == 7);
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK(failures > 10);
    CHECK_EQ_INT(tw_mem_live(), live);
    unlink(path);

    // Five documents: enough for the document frequencies to be used too.
    static const char *texts[] = {
        "The expedition explored the Missouri toward its distant source and finally reached "
        "the Pacific coast after two years. The treaty with France ceded Louisiana, the port "
        "of New Orleans and the navigation of the Mississippi to the Union.",
        "Congress should reform the tariff, reduce the surplus hoarded in the Treasury and "
        "return the money of the people to the channels of trade and industry.",
        "The battleship Maine was destroyed in the harbor of Havana while on a mission of "
        "courtesy, and the nation demanded that Spain withdraw from Cuba at once.",
        "We shall build a permanently manned space station within a decade, and invite our "
        "friends and allies to share in the research, medicine and commerce of space.",
        "A new world order is within reach, where aggression meets collective resistance and "
        "nations work together for peace, security, freedom and the rule of law.",
    };
    struct tw_eval_doc docs[5];
    for (size_t i = 0; i < 5; i++)
        docs[i] = (struct tw_eval_doc){ texts[i], i % 2 ? "Some Author" : NULL, texts[i],
                                        strlen(texts[i]) };
    failures = 0;
    for (long k = 1; k < 100000; k++) {
        struct tw_eval_query *q = (struct tw_eval_query *)(uintptr_t)1;
        size_t n = 7;
        tw_mem_fail_after(k);
        int rc = tw_eval_generate(docs, 5, 6, 11, &q, &n);
        tw_mem_fail_after(0);
        if (rc == 0) {
            CHECK_EQ_INT(n, 6);
            tw_eval_queries_free(q, n);
            break;
        }
        failures++;
        CHECK_EQ_INT(rc, TW_ENOMEM);
        CHECK(q == (struct tw_eval_query *)(uintptr_t)1 && n == 7);
        CHECK_EQ_INT(tw_mem_live(), live);
    }
    CHECK(failures > 20);
    CHECK_EQ_INT(tw_mem_live(), live);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/twin-test-eval-XXXXXX");
    REQUIRE(mkdtemp(tmpdir));
    static struct corpus c;
    corpus_load(&c);
    REQUIRE(c.n >= 200);
    test_hand_written(&c);
    test_load_errors();
    test_load_ok();
    test_metrics();
    test_generate_corpus(&c);
    test_generate_small();
    test_alloc_failures();
    corpus_free(&c);
    tw_remove_tree(tmpdir);
    return check_report("test_retrieval");
}

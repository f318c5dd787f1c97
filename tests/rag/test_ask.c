// Tests the RAG pipeline (rag/ask.h) on six State of the Union addresses: with a scripted LLM
// (a valid self-query JSON answer filters by its author; expansions are parsed and each query
// retrieved; the answer's prompt numbers the sources), with an invalid JSON answer (the name
// matcher's fallback is taken), without an LLM (retrieval only), with an explicit and an
// unknown --author, and end to end with the golden tiny Llama, BERT embedder (hybrid) and
// cross-encoder (reranked sources; a small context drops sources to fit). Every run leaves a
// trace row whose detail JSON holds each step.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "etl/ingest.h"
#include "pipeline/features.h"
#include "rag/ask.h"
#include "store/home.h"
#include "store/traces.h"

static const char *files[] = {
    "1790_george_washington_n.json",  "1862_abraham_lincoln_r.json",
    "1905_theodore_roosevelt_r.json", "1941_franklin_d_roosevelt_d.json",
    "1990_george_bush_r.json",        "2002_george_w_bush_r.json",
};

// A scripted LLM: answers each step with the script's text, and records the last prompt.
struct script {
    const char *self_query, *expand, *answer;
    char user[1 << 16]; // the answering step's user message
    int calls;
};

static int scripted(void *ud, const char *system, const char *user, const struct tw_gen_params *p,
                    tw_gen_fn stream, void *stream_ud, tw_str *reply, int32_t *n_prompt,
                    int32_t *n_gen)
{
    (void)p;
    struct script *s = ud;
    s->calls++;
    const char *text = s->answer;
    if (strstr(system, "JSON"))
        text = s->self_query;
    else if (strstr(system, "rewrite"))
        text = s->expand;
    else
        snprintf(s->user, sizeof s->user, "%s", user);
    if (tw_str_puts(reply, text))
        return TW_ENOMEM;
    if (stream)
        stream(stream_ud, text, strlen(text));
    if (n_prompt)
        *n_prompt = (int32_t)strlen(user) / 4;
    if (n_gen)
        *n_gen = 7;
    return 0;
}

static json_t *detail_of(struct tw_home *h, int64_t id);

static int keep_detail(void *ud, const struct tw_trace *t)
{
    *(json_t **)ud = json_loads(t->detail, 0, NULL);
    return 0;
}

static json_t *detail_of(struct tw_home *h, int64_t id)
{
    json_t *d = NULL;
    CHECK_OK(tw_trace_get(h, id, keep_detail, &d));
    REQUIRE(d);
    return d;
}

static bool all_by(const struct tw_rag_result *r, const char *author)
{
    for (size_t i = 0; i < r->n_sources; i++)
        if (strcmp(r->sources[i].chunk.author, author) != 0)
            return false;
    return r->n_sources > 0;
}

static void with_script(struct tw_home *h, tw_retriever *r)
{
    struct script s = { 0 };
    struct tw_rag rag = { .r = r, .llm_fn = scripted, .llm_ud = &s, .model_id = "scripted" };
    struct tw_rag_options o;
    tw_rag_options_default(&o);
    struct tw_rag_result res;

    // A valid self-query answer names Lincoln; two expansions come back.
    s.self_query = "Sure! ```json\n{\"author\": \"Abraham Lincoln\", \"category\": null}\n```";
    s.expand = "What did Lincoln say about emancipation?#next-question#Slavery and the Union "
               "in the 1862 address";
    s.answer = "Gradual, compensated emancipation [1].";
    CHECK_OK(
        tw_rag_ask(h, &rag, "What did the president propose about freeing the slaves?", &o, &res));
    CHECK_EQ_STR(res.answer, "Gradual, compensated emancipation [1].");
    CHECK_EQ_INT((int)res.n_sources, 3);
    CHECK(all_by(&res, "Abraham Lincoln"));
    CHECK(res.trace_id > 0 && res.completion_tokens == 7);
    CHECK(strstr(s.user, "[1] Abraham Lincoln") && strstr(s.user, "[3] ") &&
          !strstr(s.user, "[4] ") && strstr(s.user, "freeing the slaves"));
    json_t *d = detail_of(h, res.trace_id);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(d, "self_query"), "method")),
                 "llm");
    CHECK_EQ_INT((int)json_array_size(json_object_get(json_object_get(d, "expand"), "queries")),
                 3);
    CHECK_EQ_INT((int)json_array_size(json_object_get(d, "retrieve")), 3);
    json_t *lat = json_object_get(d, "latency_ms");
    const char *steps[] = { "self_query", "expand",   "retrieve", "rerank",
                            "prompt",     "generate", "total" };
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
        CHECK(json_is_real(json_object_get(lat, steps[i])));
    CHECK_EQ_STR(json_string_value(json_object_get(d, "status")), "ok");
    json_decref(d);
    tw_rag_result_free(&res);

    // Invalid JSON: the fallback finds "Washington" in the question; the expansion answer
    // has no separator, so its lines are the queries.
    s.self_query = "The author is George Washington.";
    s.expand = "1. public credit and the debt\n2. \"paying the national debt\"\n";
    CHECK_OK(tw_rag_ask(h, &rag, "What did Washington say about the public credit?", &o, &res));
    CHECK(all_by(&res, "George Washington"));
    d = detail_of(h, res.trace_id);
    json_t *sq = json_object_get(d, "self_query");
    CHECK_EQ_STR(json_string_value(json_object_get(sq, "method")), "fallback");
    CHECK(json_is_false(json_object_get(sq, "valid")));
    CHECK_EQ_INT((int)json_array_size(json_object_get(json_object_get(d, "expand"), "queries")),
                 3);
    json_decref(d);
    tw_rag_result_free(&res);

    // A shared last name gives both authors; --no-expand makes one query.
    o.expand = 1;
    s.self_query = "{\"author\": \"Roosevelt\"}"; // not one author: invalid, fallback
    CHECK_OK(tw_rag_ask(h, &rag, "How did Roosevelt describe the freedoms?", &o, &res));
    d = detail_of(h, res.trace_id);
    CHECK_EQ_INT(
        (int)json_array_size(json_object_get(json_object_get(d, "self_query"), "authors")), 2);
    CHECK_EQ_INT((int)json_array_size(json_object_get(d, "retrieve")), 1);
    json_decref(d);
    for (size_t i = 0; i < res.n_sources; i++)
        CHECK(strstr(res.sources[i].chunk.author, "Roosevelt") != NULL);
    tw_rag_result_free(&res);

    // An explicit author overrides; an unknown one fails, and the failure is traced.
    o.author = "george w bush";
    CHECK_OK(tw_rag_ask(h, &rag, "What did Washington say?", &o, &res));
    CHECK(all_by(&res, "George W Bush"));
    tw_rag_result_free(&res);
    o.author = "Nobody Atall";
    CHECK_EQ_INT(tw_rag_ask(h, &rag, "anything", &o, &res), TW_EINVAL);
    CHECK(strstr(tw_error_msg(), "Nobody Atall") != NULL);
    CHECK(res.answer == NULL && res.n_sources == 0);
}

static int last_status(void *ud, const struct tw_trace *t)
{
    snprintf(ud, 256, "%s", t->status);
    return 0;
}

static void without_llm(struct tw_home *h, tw_retriever *r)
{
    char status[256] = "";
    CHECK_OK(tw_traces_list(h, NULL, 1, last_status, status));
    CHECK(strstr(status, "Nobody Atall") != NULL); // the failed run above

    struct tw_rag rag = { .r = r };
    struct tw_rag_options o;
    tw_rag_options_default(&o);
    o.k = 5;
    struct tw_rag_result res;
    CHECK_OK(tw_rag_ask(h, &rag, "Lincoln on compensated emancipation", &o, &res));
    CHECK(res.answer == NULL && res.n_sources == 5 && all_by(&res, "Abraham Lincoln"));
    json_t *d = detail_of(h, res.trace_id);
    CHECK_EQ_STR(json_string_value(json_object_get(json_object_get(d, "self_query"), "method")),
                 "fallback");
    CHECK(json_is_null(json_object_get(json_object_get(d, "prompt"), "tokens"))); // no template
    CHECK(json_object_get(d, "answer") == NULL && json_object_get(d, "generate") == NULL);
    json_decref(d);
    tw_rag_result_free(&res);
}

// The golden tiny models: nonsense answers, real mechanics.
static void with_models(struct tw_home *h, const char *root)
{
    char llama[4200], bert[4200], rerank[4200];
    snprintf(llama, sizeof llama, "%s/tests/golden/models/llama", root);
    snprintf(bert, sizeof bert, "%s/tests/golden/models/bert_embed", root);
    snprintf(rerank, sizeof rerank, "%s/tests/golden/models/bert_rerank", root);
    struct tw_features_options fo = { .model = bert, .threads = 2 };
    struct tw_features_summary fs;
    CHECK_OK(tw_features_run(h, &fo, &fs));
    CHECK(fs.dense);
    tw_retriever *r;
    REQUIRE(tw_retriever_open(h, 2, &r) == 0);
    struct tw_session llm, rr;
    REQUIRE(tw_session_open(llama, 2, 0, &llm) == 0);
    REQUIRE(tw_session_open(rerank, 2, 0, &rr) == 0);
    struct tw_rag rag = { .r = r, .llm = &llm, .reranker = &rr, .model_id = llama };
    CHECK_OK(tw_chat_family_from_template(tw_tokenizer_chat_template(llm.m->tok), &rag.family));
    struct tw_rag_options o;
    tw_rag_options_default(&o);
    o.gen.max_tokens = 8;
    struct tw_rag_result res;
    CHECK_OK(tw_rag_ask(h, &rag, "What did Theodore Roosevelt say about the trusts?", &o, &res));
    CHECK(res.answer != NULL && res.completion_tokens > 0 && res.prompt_tokens > 0);
    CHECK(res.n_sources == 3 && all_by(&res, "Theodore Roosevelt"));
    for (size_t i = 1; i < res.n_sources; i++) // reranked: by the cross-encoder's logit
        CHECK(res.sources[i - 1].rerank >= res.sources[i].rerank);
    json_t *d = detail_of(h, res.trace_id);
    json_t *q0 = json_array_get(json_object_get(d, "retrieve"), 0);
    CHECK_EQ_STR(json_string_value(json_object_get(q0, "mode")), "hybrid");
    CHECK(json_array_size(json_object_get(q0, "dense")) > 0);
    CHECK(json_array_size(json_object_get(d, "rerank")) >= 3);
    CHECK(json_is_string(json_object_get(d, "embed_model")));
    json_decref(d);
    tw_rag_result_free(&res);
    tw_session_close(&llm);

    // A context too small for three sources: the lowest-ranked ones are dropped.
    REQUIRE(tw_session_open(llama, 2, 512, &llm) == 0);
    o.k = 3;
    CHECK_OK(tw_rag_ask(h, &rag, "What did Roosevelt say about the trusts?", &o, &res));
    d = detail_of(h, res.trace_id);
    json_t *pr = json_object_get(d, "prompt");
    CHECK(json_integer_value(json_object_get(pr, "sources_dropped")) >= 1);
    CHECK(json_integer_value(json_object_get(pr, "tokens")) + 8 <= 512);
    CHECK(res.n_sources < 3);
    json_decref(d);
    tw_rag_result_free(&res);
    tw_session_close(&llm);
    tw_session_close(&rr);
    tw_retriever_free(r);
}

int main(void)
{
    const char *root = test_source_dir();
    char dir[64] = "/tmp/twin-ask-XXXXXX", home[128];
    REQUIRE(mkdtemp(dir));
    snprintf(home, sizeof home, "%s/home", dir);
    int created;
    REQUIRE(tw_home_init(home, &created) == 0);
    struct tw_home *h;
    REQUIRE(tw_home_open(home, &h) == 0);
    const char *paths[6];
    char buf[6][4200];
    for (int i = 0; i < 6; i++) {
        snprintf(buf[i], sizeof buf[i], "%s/.cache/data/sotu/%s", root, files[i]);
        paths[i] = buf[i];
    }
    struct tw_ingest_options io = { .map = "author=name,content=text,title=year,date=year" };
    struct tw_ingest_summary is;
    tw_ingest_summary_init(&is);
    REQUIRE(tw_ingest(h, paths, 6, &io, &is) == 0);
    tw_ingest_summary_free(&is);
    struct tw_features_options fo = { .threads = 2 };
    struct tw_features_summary fs;
    REQUIRE(tw_features_run(h, &fo, &fs) == 0);

    tw_retriever *r;
    REQUIRE(tw_retriever_open(h, 2, &r) == 0);
    with_script(h, r);
    without_llm(h, r);
    tw_retriever_free(r);
    with_models(h, root);

    tw_home_close(h);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_report("rag_ask");
}

// Tests tw_tokenizer_export_vocab and tw_gguf_writer_add_tokenizer, the path of `twin convert`:
// each tokenizer of the test data (.cache/data/tokenizers, the bert one and the golden models'
// under tests/golden; tokenizer.json + tokenizer_config.json, or a WordPiece vocab.txt) is
// exported to tokenizer.ggml.* values, written to a GGUF file, read back with
// tw_gguf_tokenizer_vocab and rebuilt with tw_tokenizer_from_vocab; the rebuilt tokenizer must
// have the same pieces and special ids and encode (with and without special tokens) and decode
// the hard set and three State of the Union addresses exactly as the original. Small
// tokenizers built here cover what GGUF cannot say (TW_EUNSUPPORTED), a merge order that the
// scores alone cannot carry, and the writer's all-or-nothing rule.
// usage: test_tokenizer_export [NAME...]
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "base/mem.h"
#include "check.h"
#include "model/gguf.h"
#include "sotu.h"
#include "text/tokenizer.h"

static const char *root;
static char tmpdir[256];
static json_t *hard; // tests/golden/tokenizer_hard.json
static char **texts; // the hard set's texts, then a few addresses
static size_t *lens;
static size_t n_texts;
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;

static int hex_nibble(char c)
{
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

// The texts every tokenizer encodes: the hard set (raw bytes where it gives them) and the
// addresses at three places of the sorted corpus.
static void load_texts(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer_hard.json", root);
    test_need_source(tw_json_load_file(path, 0, &hard) == 0, path);
    char dir[1024], *names[512];
    size_t n_docs = sotu_list(dir, sizeof dir, names, 512);
    REQUIRE(n_docs >= 3);
    size_t picks[3] = { 0, n_docs / 2, n_docs - 1 };
    size_t cap = json_array_size(hard) + 3;
    texts = calloc(cap, sizeof *texts);
    lens = calloc(cap, sizeof *lens);
    for (size_t i = 0; i < json_array_size(hard); i++) {
        const json_t *c = json_array_get(hard, i);
        const char *hex = json_string_value(json_object_get(c, "raw_hex"));
        const json_t *text = json_object_get(c, "text");
        if (hex) {
            size_t n = strlen(hex) / 2;
            texts[n_texts] = tw_malloc(n + 1);
            for (size_t k = 0; k < n; k++)
                texts[n_texts][k] =
                    (char)(hex_nibble(hex[2 * k]) * 16 + hex_nibble(hex[2 * k + 1]));
            lens[n_texts++] = n;
        } else {
            texts[n_texts] = tw_strndup(json_string_value(text), json_string_length(text));
            lens[n_texts++] = json_string_length(text);
        }
    }
    for (int k = 0; k < 3; k++) {
        REQUIRE(tw_path_join(path, sizeof path, dir, names[picks[k]]) == 0);
        texts[n_texts] = test_read_file(path, &lens[n_texts]);
        REQUIRE(texts[n_texts] != NULL);
        n_texts++;
    }
    for (size_t i = 0; i < n_docs; i++)
        tw_free(names[i]);
}

static bool same_ids(const tw_vec *a, const tw_vec *b)
{
    return a->len == b->len &&
           (!a->len || memcmp(a->data, b->data, a->len * sizeof(int32_t)) == 0);
}

// Encodes and decodes every text with both tokenizers; the number of differences.
static int compare(const char *name, const tw_tokenizer *a, const tw_tokenizer *b)
{
    tw_vec ia, ib;
    tw_vec_init(&ia, sizeof(int32_t));
    tw_vec_init(&ib, sizeof(int32_t));
    tw_str da, db;
    tw_str_init(&da);
    tw_str_init(&db);
    int bad = 0;
    for (size_t i = 0; i < n_texts; i++) {
        for (int special = 0; special < 2; special++) {
            int flags = special ? TW_TOK_ADD_SPECIAL : 0;
            ia.len = ib.len = 0;
            if (tw_tokenizer_encode(a, texts[i], lens[i], flags, &ia, NULL) ||
                tw_tokenizer_encode(b, texts[i], lens[i], flags, &ib, NULL)) {
                fprintf(stderr, "%s: text %zu: encode failed: %s\n", name, i, tw_error_msg());
                bad++;
                continue;
            }
            if (!same_ids(&ia, &ib)) {
                size_t k = 0;
                while (k < ia.len && k < ib.len &&
                       TW_VEC_AT(&ia, int32_t, k) == TW_VEC_AT(&ib, int32_t, k))
                    k++;
                fprintf(stderr, "%s: text %zu (special %d): %zu ids vs %zu, first differ at %zu\n",
                        name, i, special, ia.len, ib.len, k);
                bad++;
            }
            for (int skip = 0; skip < 2; skip++) {
                int df = skip ? TW_TOK_SKIP_SPECIAL : 0;
                tw_str_clear(&da);
                tw_str_clear(&db);
                if (tw_tokenizer_decode(a, ia.data, ia.len, df, &da) ||
                    tw_tokenizer_decode(b, ia.data, ia.len, df, &db) ||
                    tw_str_len(&da) != tw_str_len(&db) ||
                    memcmp(tw_str_cstr(&da), tw_str_cstr(&db), tw_str_len(&da)) != 0) {
                    fprintf(stderr, "%s: text %zu (special %d, skip %d): decode differs\n", name,
                            i, special, skip);
                    bad++;
                }
            }
        }
    }
    tw_vec_free(&ia);
    tw_vec_free(&ib);
    tw_str_free(&da);
    tw_str_free(&db);
    return bad;
}

// Pieces, special ids and the chat template; the number of differences.
static int compare_vocab(const char *name, const tw_tokenizer *a, const tw_tokenizer *b)
{
    int bad = 0;
    if (tw_tokenizer_vocab_size(a) != tw_tokenizer_vocab_size(b) ||
        tw_tokenizer_bos(a) != tw_tokenizer_bos(b) || tw_tokenizer_eos(a) != tw_tokenizer_eos(b) ||
        tw_tokenizer_pad(a) != tw_tokenizer_pad(b)) {
        fprintf(stderr, "%s: vocab size or special ids differ\n", name);
        bad++;
    }
    const char *ca = tw_tokenizer_chat_template(a), *cb = tw_tokenizer_chat_template(b);
    if ((ca == NULL) != (cb == NULL) || (ca && strcmp(ca, cb) != 0)) {
        fprintf(stderr, "%s: chat templates differ\n", name);
        bad++;
    }
    for (int32_t id = 0; id < tw_tokenizer_vocab_size(a); id++) {
        const char *pa = tw_tokenizer_id_to_piece(a, id), *pb = tw_tokenizer_id_to_piece(b, id);
        if (pa && (!pb || strcmp(pa, pb) != 0)) { // ids no token has get a filler
            if (bad < 5)
                fprintf(stderr, "%s: id %d: \"%s\" became \"%s\"\n", name, (int)id, pa,
                        pb ? pb : "(null)");
            bad++;
        }
    }
    return bad;
}

struct want {
    const char *name, *model, *pre;
    bool add_bos, add_space_prefix;
    int32_t cls, sep;
};

static const struct want wants[] = {
    { "llama2", "llama", "default", true, true, -1, -1 },
    { "llama3", "gpt2", "llama-bpe", false, false, -1, -1 },
    { "llama3_1", "gpt2", "llama-bpe", true, false, -1, -1 },
    { "qwen3", "gpt2", "qwen2", false, false, -1, -1 },
    { "gemma3", "llama", "default", true, false, -1, -1 },
    { "gpt4o", "gpt2", "gpt-4o", false, false, -1, -1 },
    { "bert", "bert", "default", true, false, 101, 102 },
    { "bert-vocab.txt", "bert", "default", true, false, 101, 102 },
    // the golden models' tokenizers (tests/golden/models), which `twin convert` writes
    { "models/llama", "gpt2", "llama-bpe", true, false, -1, -1 },
    { "models/mistral", "llama", "metaspace-first", true, true, -1, -1 },
    { "models/smollm2", "gpt2", "smollm", false, false, -1, -1 },
    { "models/qwen2", "gpt2", "qwen2", false, false, -1, -1 },
    { "models/qwen3", "gpt2", "qwen2", false, false, -1, -1 },
    { "models/bert_embed", "bert", "default", true, false, 2, 3 },
    { "models/bert_rerank", "bert", "default", true, false, 2, 3 },
};

struct result {
    int rc_load, rc_export, rc_write, rc_read, rc_build;
    char msg[512];
    struct tw_tokenizer_vocab v, back;
    bool keys_ok;
    int bad_vocab, bad_text;
};

static void fail(struct result *r, int *rc, int code)
{
    *rc = code;
    snprintf(r->msg, sizeof r->msg, "%s", tw_error_msg());
}

// Writes vocab.txt (the bert tokenizer's pieces by id) for tw_tokenizer_load_wordpiece_vocab.
static int write_vocab_txt(const tw_tokenizer *t, const char *path)
{
    tw_str s;
    tw_str_init(&s);
    for (int32_t id = 0; id < tw_tokenizer_vocab_size(t); id++) {
        tw_str_puts(&s, tw_tokenizer_id_to_piece(t, id));
        tw_str_putc(&s, '\n');
    }
    int rc = tw_file_write_atomic(path, tw_str_cstr(&s), tw_str_len(&s));
    tw_str_free(&s);
    return rc;
}

// The whole round trip of one tokenizer; the checks are made by the caller (one thread).
static void roundtrip(const struct want *w, struct result *r, tw_arena *arena)
{
    char dir[1024], gguf[1024];
    tw_tokenizer *t = NULL, *t2 = NULL;
    tw_gguf *g = NULL;
    if (strcmp(w->name, "bert-vocab.txt") == 0) {
        snprintf(dir, sizeof dir, "%s/tests/golden/tokenizers/bert", root);
        char txt[1024];
        snprintf(txt, sizeof txt, "%s/vocab.txt", tmpdir);
        if ((r->rc_load = tw_tokenizer_load_dir(dir, &t)) == 0) {
            r->rc_load = write_vocab_txt(t, txt);
            tw_tokenizer_free(t);
            t = NULL;
        }
        if (!r->rc_load)
            r->rc_load = tw_tokenizer_load_wordpiece_vocab(txt, &t);
    } else {
        if (strcmp(w->name, "bert") == 0)
            snprintf(dir, sizeof dir, "%s/tests/golden/tokenizers/bert", root);
        else if (strncmp(w->name, "models/", 7) == 0)
            snprintf(dir, sizeof dir, "%s/tests/golden/%s", root, w->name);
        else
            snprintf(dir, sizeof dir, "%s/.cache/data/tokenizers/%s", root, w->name);
        r->rc_load = tw_tokenizer_load_dir(dir, &t);
    }
    if (r->rc_load) {
        fail(r, &r->rc_load, r->rc_load);
        return;
    }
    int rc = tw_tokenizer_export_vocab(t, &r->v, arena);
    if (rc) {
        fail(r, &r->rc_export, rc);
        goto out;
    }
    tw_gguf_writer wr;
    tw_gguf_writer_init(&wr);
    snprintf(gguf, sizeof gguf, "%s/%s.gguf", tmpdir, w->name);
    for (char *c = gguf + strlen(tmpdir) + 1; *c; c++)
        *c = *c == '/' ? '_' : *c;
    rc = tw_gguf_writer_add_str(&wr, "general.architecture", "llama", 5);
    if (!rc)
        rc = tw_gguf_writer_add_tokenizer(&wr, &r->v);
    if (!rc)
        rc = tw_gguf_write(&wr, gguf);
    tw_gguf_writer_free(&wr);
    if (rc) {
        fail(r, &r->rc_write, rc);
        goto out;
    }
    rc = tw_gguf_open(gguf, &g);
    if (!rc)
        rc = tw_gguf_tokenizer_vocab(g, &r->back, arena);
    if (rc) {
        fail(r, &r->rc_read, rc);
        goto out;
    }
    // llama.cpp's keys: scores only for SentencePiece, the separator in its spelling
    bool llama = strcmp(w->model, "llama") == 0, bert = strcmp(w->model, "bert") == 0;
    r->keys_ok = (tw_gguf_find_key(g, "tokenizer.ggml.scores") >= 0) == llama &&
                 (tw_gguf_find_key(g, "tokenizer.ggml.merges") >= 0) == !bert &&
                 (tw_gguf_find_key(g, "tokenizer.ggml.seperator_token_id") >= 0) == bert &&
                 (tw_gguf_find_key(g, "tokenizer.ggml.add_space_prefix") >= 0) == llama &&
                 tw_gguf_find_key(g, "tokenizer.ggml.add_bos_token") >= 0;
    if ((rc = tw_tokenizer_from_vocab(&r->back, &t2))) {
        fail(r, &r->rc_build, rc);
        goto out;
    }
    r->bad_vocab = compare_vocab(w->name, t, t2);
    r->bad_text = compare(w->name, t, t2);
out:
    tw_gguf_close(g);
    tw_tokenizer_free(t2);
    tw_tokenizer_free(t);
    tw_tokenizer_thread_cleanup();
}

static void check_result(const struct want *w, const struct result *r)
{
    pthread_mutex_lock(&check_lock);
    if (r->msg[0])
        fprintf(stderr, "%s: %s\n", w->name, r->msg);
    CHECK_EQ_INT(r->rc_load, 0);
    CHECK_EQ_INT(r->rc_export, 0);
    CHECK_EQ_INT(r->rc_write, 0);
    CHECK_EQ_INT(r->rc_read, 0);
    CHECK_EQ_INT(r->rc_build, 0);
    if (r->rc_load || r->rc_export || r->rc_write || r->rc_read || r->rc_build) {
        pthread_mutex_unlock(&check_lock);
        return;
    }
    const struct tw_tokenizer_vocab *v = &r->v, *b = &r->back;
    CHECK_EQ_STR(v->model, w->model);
    CHECK_EQ_STR(v->pre, w->pre);
    CHECK_EQ_INT(v->add_bos, w->add_bos);
    CHECK_EQ_INT(v->add_space_prefix, w->add_space_prefix);
    CHECK_EQ_INT(v->cls, w->cls);
    CHECK_EQ_INT(v->sep, w->sep);
    CHECK(r->keys_ok);
    // what was read back is what was written
    CHECK_EQ_STR(b->model, v->model);
    CHECK_EQ_STR(b->pre, v->pre);
    CHECK_EQ_INT(b->n_tokens, v->n_tokens);
    CHECK_EQ_INT(b->n_merges, v->n_merges);
    int differ = 0;
    for (size_t i = 0; i < v->n_tokens && i < b->n_tokens; i++)
        differ += strcmp(v->tokens[i], b->tokens[i]) != 0 || v->types[i] != b->types[i] ||
                  (v->scores && v->scores[i] != b->scores[i]);
    for (size_t i = 0; i < v->n_merges && i < b->n_merges; i++)
        differ += strcmp(v->merges[i], b->merges[i]) != 0;
    CHECK_EQ_INT(differ, 0);
    CHECK((v->scores == NULL) == (b->scores == NULL));
    CHECK_EQ_INT(b->bos, v->bos);
    CHECK_EQ_INT(b->eos, v->eos);
    CHECK_EQ_INT(b->unk, v->unk);
    CHECK_EQ_INT(b->pad, v->pad);
    CHECK_EQ_INT(b->cls, v->cls);
    CHECK_EQ_INT(b->sep, v->sep);
    CHECK_EQ_INT(b->add_bos, v->add_bos);
    CHECK_EQ_INT(b->add_space_prefix, v->add_space_prefix);
    CHECK((b->chat_template == NULL) == (v->chat_template == NULL));
    // and the rebuilt tokenizer is the original
    CHECK_EQ_INT(r->bad_vocab, 0);
    CHECK_EQ_INT(r->bad_text, 0);
    printf("%-18s %-5s pre %-15s %7zu tokens %7zu merges: %zu texts encode and decode alike\n",
           w->name, v->model, v->pre, v->n_tokens, v->n_merges, n_texts);
    pthread_mutex_unlock(&check_lock);
}

// Two workers take the tokenizers in turn (loads dominate; the machine has two cores).
static const char *const *selected;
static size_t n_selected;
static atomic_size_t next_job;

static void *worker(void *arg)
{
    (void)arg;
    for (size_t i; (i = atomic_fetch_add(&next_job, 1)) < n_selected;) {
        const struct want *w = NULL;
        for (size_t k = 0; k < sizeof wants / sizeof wants[0]; k++)
            if (strcmp(wants[k].name, selected[i]) == 0)
                w = &wants[k];
        if (!w) {
            fprintf(stderr, "%s: no such tokenizer\n", selected[i]);
            pthread_mutex_lock(&check_lock);
            CHECK(w != NULL);
            pthread_mutex_unlock(&check_lock);
            continue;
        }
        tw_arena arena;
        tw_arena_init(&arena, 0);
        struct result r;
        memset(&r, 0, sizeof r);
        roundtrip(w, &r, &arena);
        check_result(w, &r);
        tw_arena_free(&arena);
    }
    return NULL;
}

// ---- small tokenizers: what GGUF cannot say, and what it must

static tw_tokenizer *load_json(const char *json)
{
    tw_tokenizer *t = NULL;
    CHECK_OK(tw_tokenizer_load_buffer("test.json", json, strlen(json), &t));
    return t;
}

// Exports json's tokenizer; TW_EUNSUPPORTED with a message naming `what` is expected.
static void check_unsupported(const char *json, const char *what)
{
    tw_tokenizer *t = load_json(json);
    if (!t)
        return;
    tw_arena arena;
    tw_arena_init(&arena, 0);
    struct tw_tokenizer_vocab v = { .model = "untouched" };
    CHECK_EQ_INT(tw_tokenizer_export_vocab(t, &v, &arena), TW_EUNSUPPORTED);
    if (!strstr(tw_error_msg(), what))
        fprintf(stderr, "message \"%s\" does not name \"%s\"\n", tw_error_msg(), what);
    CHECK(strstr(tw_error_msg(), what) != NULL);
    CHECK_EQ_STR(v.model, "untouched");
    CHECK_EQ_INT(tw_arena_used(&arena), 0);
    tw_arena_free(&arena);
    tw_tokenizer_free(t);
}

#define SPM_NORM \
    "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"},"
#define SPM_DEC                                                                           \
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":" \
    "{\"String\":\"▁\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]},"
#define SPM_MODEL(merges)                                                                         \
    "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"byte_fallback\":true,\"fuse_unk\":"    \
    "true,\"vocab\":{\"<unk>\":0,\"a\":1,\"b\":2,\"ab\":3,\"bb\":4,\"abb\":5},\"merges\":" merges \
    "}"
#define SPM_POST_EOS                                                                     \
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":" \
    "{\"id\":\"a\"}},{\"Sequence\":{\"id\":\"A\"}},{\"SpecialToken\":{\"id\":\"b\"}}],"  \
    "\"special_tokens\":{\"a\":{\"ids\":[1]},\"b\":{\"ids\":[2]}}}"
#define BL_DEC "\"decoder\":{\"type\":\"ByteLevel\"},"
#define BL_MODEL                                                                           \
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"Ġ\":3,\"Ġa\":4}," \
    "\"merges\":[\"a b\",\"Ġ a\"]}"
#define BL_PRE(re)                                                                                \
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","            \
    "\"pattern\":"                                                                                \
    "{\"Regex\":\"" re "\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\"," \
    "\"add_prefix_space\":false,\"use_regex\":false}]},"

static void check_small(void)
{
    // SentencePiece-style BPE after a normalizer vocab.c does not build
    check_unsupported("{\"normalizer\":{\"type\":\"NFKC\"}," SPM_DEC SPM_MODEL("[]") "}", "NFKC");
    // a regex no tokenizer.ggml.pre names
    check_unsupported("{" BL_PRE("\\\\p{L}+|\\\\s+") BL_DEC BL_MODEL "}", "\\p{L}+|\\s+");
    // an added token that strips the space before it
    check_unsupported(
        "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false}," BL_DEC BL_MODEL
        ",\"added_tokens\":[{\"id\":5,\"content\":\"<m>\",\"lstrip\":true,"
        "\"special\":true}]}",
        "lstrip");
    // a post-processor that adds EOS too
    check_unsupported("{" SPM_NORM SPM_DEC SPM_MODEL("[]") "," SPM_POST_EOS "}", "post-processor");

    // GPT-2's own regex (ByteLevel with use_regex) is llama.cpp's "gpt-2"
    tw_tokenizer *t = load_json("{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":"
                                "false}," BL_DEC BL_MODEL "}");
    tw_arena arena;
    tw_arena_init(&arena, 0);
    struct tw_tokenizer_vocab v;
    tw_tokenizer *t2 = NULL;
    const char *text = "ab a  b";
    tw_vec ids, ids2;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&ids2, sizeof(int32_t));
    if (t) {
        CHECK_OK(tw_tokenizer_export_vocab(t, &v, &arena));
        CHECK_EQ_STR(v.pre, "gpt-2");
        CHECK_OK(tw_tokenizer_from_vocab(&v, &t2));
        CHECK_OK(tw_tokenizer_encode(t, text, strlen(text), 0, &ids, NULL));
        if (t2)
            CHECK_OK(tw_tokenizer_encode(t2, text, strlen(text), 0, &ids2, NULL));
        CHECK(same_ids(&ids, &ids2));
        tw_tokenizer_free(t2);
        tw_tokenizer_free(t);
    }

    // SentencePiece: "abb" has two merges, ranked 1 (a + bb) and 3 (ab + b) around bb's
    // (b + b). Scores give a piece one rank, so the merges derived from them put ab + b
    // before b + b and "abbb" becomes abb|b instead of HF's ab|bb: the merges are written.
    t = load_json("{" SPM_NORM SPM_DEC SPM_MODEL("[\"a b\",\"a bb\",\"b b\",\"ab b\"]") "}");
    if (t) {
        tw_arena_reset(&arena);
        CHECK_OK(tw_tokenizer_export_vocab(t, &v, &arena));
        CHECK_EQ_STR(v.model, "llama");
        CHECK_EQ_INT(v.n_merges, 4);
        CHECK_EQ_INT(v.types[0], 1); // <unk> is no added token here: a normal one
        int32_t want[2] = { 3, 4 }, derived[2] = { 5, 2 };
        for (int with_merges = 1; with_merges >= 0; with_merges--) {
            struct tw_tokenizer_vocab u = v;
            if (!with_merges) {
                u.n_merges = 0;
                u.merges = NULL;
            }
            t2 = NULL;
            CHECK_OK(tw_tokenizer_from_vocab(&u, &t2));
            ids.len = 0;
            if (t2)
                CHECK_OK(tw_tokenizer_encode(t2, "abbb", 4, 0, &ids, NULL));
            CHECK_EQ_INT(ids.len, 2);
            if (ids.len == 2) {
                CHECK_EQ_INT(TW_VEC_AT(&ids, int32_t, 0), with_merges ? want[0] : derived[0]);
                CHECK_EQ_INT(TW_VEC_AT(&ids, int32_t, 1), with_merges ? want[1] : derived[1]);
            }
            tw_tokenizer_free(t2);
        }
        ids.len = 0;
        CHECK_OK(tw_tokenizer_encode(t, "abbb", 4, 0, &ids, NULL));
        CHECK(ids.len == 2 && TW_VEC_AT(&ids, int32_t, 0) == 3 &&
              TW_VEC_AT(&ids, int32_t, 1) == 4);

        // the writer: all or nothing
        tw_gguf_writer w;
        tw_gguf_writer_init(&w);
        CHECK_OK(tw_gguf_writer_add_u32(&w, "tokenizer.ggml.eos_token_id", 1));
        size_t n_kv = w.n_kv, meta = tw_str_len(&w.meta);
        v.eos = 2;
        CHECK_EQ_INT(tw_gguf_writer_add_tokenizer(&w, &v), TW_EEXIST);
        CHECK_EQ_INT(w.n_kv, n_kv);
        CHECK_EQ_INT(tw_str_len(&w.meta), meta);
        v.eos = -1;
        CHECK_OK(tw_gguf_writer_add_tokenizer(&w, &v)); // the keys of the failed call are free
        v.bos = 99;
        CHECK_EQ_INT(tw_gguf_writer_add_tokenizer(&w, &v), TW_EINVAL);
        tw_gguf_writer_free(&w);
        tw_tokenizer_free(t);
    }
    tw_vec_free(&ids);
    tw_vec_free(&ids2);
    tw_arena_free(&arena);

    // A cased WordPiece vocabulary: GGUF has no key for it.
    struct tw_tokenizer_vocab bert = { .model = "bert",
                                       .cased = true,
                                       .bos = -1,
                                       .eos = -1,
                                       .unk = -1,
                                       .pad = -1,
                                       .cls = -1,
                                       .sep = -1 };
    tw_gguf_writer w;
    tw_gguf_writer_init(&w);
    CHECK_EQ_INT(tw_gguf_writer_add_tokenizer(&w, &bert), TW_EUNSUPPORTED);
    CHECK_EQ_INT(w.n_kv, 0);
    tw_gguf_writer_free(&w);
}

int main(int argc, char **argv)
{
    root = test_source_dir();
    // tmpfs where there is one: the GGUF files (up to 20 MB) are fsync'ed when written
    snprintf(tmpdir, sizeof tmpdir, "/dev/shm/twin-test-export-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/twin-test-export-XXXXXX");
        REQUIRE(mkdtemp(tmpdir) != NULL);
    }
    check_small();
    load_texts();
    static const char *const all[] = { "gemma3",
                                       "llama3_1",
                                       "llama3",
                                       "qwen3",
                                       "gpt4o",
                                       "llama2",
                                       "bert",
                                       "bert-vocab.txt",
                                       "models/llama",
                                       "models/mistral",
                                       "models/smollm2",
                                       "models/qwen2",
                                       "models/qwen3",
                                       "models/bert_embed",
                                       "models/bert_rerank" };
    selected = argc > 1 ? (const char *const *)argv + 1 : all;
    n_selected = argc > 1 ? (size_t)argc - 1 : sizeof all / sizeof all[0];
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&th[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (size_t i = 0; i < n_texts; i++)
        tw_free(texts[i]);
    free(texts);
    free(lens);
    json_decref(hard);
    tw_remove_tree(tmpdir);
    tw_tokenizer_thread_cleanup();
    return check_report("tokenizer_export");
}

// Implements retrieve.h: opening a feature run (indexes from the home's blobs, the chunks'
// documents into memory), filtered sparse and dense search, reciprocal rank fusion, chunk
// lookup, and the one-shot search of `twin search`.
#define _GNU_SOURCE
#include "rag/retrieve.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "index/index.h"
#include "model/context.h"
#include "model/embed.h"
#include "rag/selfquery.h"
#include "store/blob.h"
#include "store/featstore.h"
#include "text/bm25.h"

struct rdoc {
    uint32_t author, category; // indexes into the name tables
};

struct names {  // distinct strings, each with its index
    tw_vec v;   // char *, owned
    tw_map idx; // string -> index
};

struct tw_retriever {
    struct tw_home *h;
    struct tw_feature_run run;
    tw_bm25 *bm;
    tw_index *ix;          // NULL: BM25 only
    struct tw_session emb; // the embedding model when ix
    float *qvec;           // (n_embd) the query's embedding
    tw_vec docs;           // struct rdoc
    tw_map doc_idx;        // document id -> index in docs
    size_t n_chunks;
    struct names authors, categories;
    tw_map chunk_doc;       // chunk seq -> document index
    uint64_t *by_author;    // (n_chunks) chunk seqs grouped by author,
    size_t *author_at;      // (authors + 2) author a's at [author_at[a], author_at[a + 1])
    tw_authors *matcher;    // the authors' names, for the self-query
    sqlite3_stmt *chunk_st; // a chunk with its document, by seq
};

const char *tw_search_mode_name(enum tw_search_mode m)
{
    return m == TW_SEARCH_DENSE ? "dense" : m == TW_SEARCH_SPARSE ? "sparse" : "hybrid";
}

bool tw_search_mode_parse(const char *name, enum tw_search_mode *out)
{
    static const enum tw_search_mode all[] = { TW_SEARCH_HYBRID, TW_SEARCH_DENSE,
                                               TW_SEARCH_SPARSE };
    for (size_t i = 0; name && i < sizeof all / sizeof *all; i++) {
        if (strcmp(name, tw_search_mode_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return 1e3 * (double)(t1.tv_sec - t0->tv_sec) + 1e-6 * (double)(t1.tv_nsec - t0->tv_nsec);
}

// ---- name tables

static void names_init(struct names *t)
{
    tw_vec_init(&t->v, sizeof(char *));
    tw_map_init(&t->idx, TW_MAP_STR);
}

static void names_free(struct names *t)
{
    for (size_t i = 0; i < t->v.len; i++)
        tw_free(TW_VEC_AT(&t->v, char *, i));
    tw_vec_free(&t->v);
    tw_map_free(&t->idx);
}

static const char *name_at(const struct names *t, size_t i)
{
    return TW_VEC_AT(&t->v, char *, i);
}

// The index of s, added when new. Returns 0 or TW_ENOMEM.
static int names_intern(struct names *t, const char *s, uint32_t *out)
{
    uint64_t i;
    size_t len = strlen(s);
    if (tw_map_get_str(&t->idx, s, len, &i)) {
        *out = (uint32_t)i;
        return 0;
    }
    char *copy = tw_strdup(s);
    if (!copy || tw_map_put_str(&t->idx, s, len, t->v.len) || tw_vec_push(&t->v, &copy)) {
        tw_map_del_str(&t->idx, s, len);
        tw_free(copy);
        return TW_ENOMEM;
    }
    *out = (uint32_t)(t->v.len - 1);
    return 0;
}

// ---- opening

// Reads every chunk's document, author and category into memory.
static int load_chunks(tw_retriever *r)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(r->h->db,
                           "SELECT c.seq, d.id, a.full_name, d.category FROM chunks c "
                           "JOIN documents d ON d.id = c.document_id "
                           "JOIN authors a ON a.id = d.author_id",
                           -1, &st, NULL) != SQLITE_OK)
        return tw_home_db_fail(r->h, "reading the chunks");
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 1);
        uint64_t d;
        if (!tw_map_get_str(&r->doc_idx, id, strlen(id), &d)) { // a new document
            struct rdoc doc;
            d = r->docs.len;
            if ((rc = names_intern(&r->authors, (const char *)sqlite3_column_text(st, 2),
                                   &doc.author)) ||
                (rc = names_intern(&r->categories, (const char *)sqlite3_column_text(st, 3),
                                   &doc.category)) ||
                (rc = tw_map_put_str(&r->doc_idx, id, strlen(id), d)) ||
                (rc = tw_vec_push(&r->docs, &doc)))
                break;
        }
        if ((rc = tw_map_put_u64(&r->chunk_doc, (uint64_t)sqlite3_column_int64(st, 0), d)))
            break;
        r->n_chunks++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = tw_home_db_fail(r->h, "reading the chunks");
    sqlite3_finalize(st);
    if (rc == TW_ENOMEM)
        return tw_error_set(TW_ENOMEM, "%s: out of memory reading the chunks", r->h->path);
    return rc;
}

// Groups the chunks by author (a counting sort), for dense searches filtered by author.
static int group_by_author(tw_retriever *r)
{
    size_t na = r->authors.v.len;
    r->author_at = tw_calloc(na + 2, sizeof *r->author_at);
    r->by_author = tw_malloc_array(r->n_chunks ? r->n_chunks : 1, sizeof *r->by_author);
    if (!r->author_at || !r->by_author)
        return tw_error_set(TW_ENOMEM, "%s: out of memory grouping the chunks", r->h->path);
    size_t pos = 0;
    struct tw_map_entry e;
    while (tw_map_next(&r->chunk_doc, &pos, &e))
        r->author_at[TW_VEC_AT(&r->docs, struct rdoc, e.val).author + 2]++;
    for (size_t a = 2; a < na + 2; a++)
        r->author_at[a] += r->author_at[a - 1];
    pos = 0; // author_at[a + 1] is now where author a's chunks start: fill, moving it on
    while (tw_map_next(&r->chunk_doc, &pos, &e))
        r->by_author[r->author_at[TW_VEC_AT(&r->docs, struct rdoc, e.val).author + 1]++] = e.u64;
    return 0;
}

static int load_indexes(tw_retriever *r, int threads)
{
    char path[4096];
    int rc = tw_blob_path(r->h, r->run.bm25, path, sizeof path);
    if (!rc)
        rc = tw_bm25_load(path, &r->bm);
    if (rc || !r->run.model)
        return rc;
    if ((rc = tw_blob_path(r->h, r->run.vectors, path, sizeof path)) ||
        (rc = tw_index_load(path, &r->ix)))
        return rc;
    if ((rc = tw_session_open(r->run.model, threads, 0, &r->emb)))
        return tw_error_prefix("the feature run's embedding model");
    if (r->emb.m->cfg.arch != TW_ARCH_BERT ||
        (uint32_t)r->emb.m->cfg.n_embd != tw_index_get_options(r->ix).dim)
        return tw_error_set(TW_EINVAL, "%s: not the sentence embedder of the vector index (%u-d)",
                            r->run.model, tw_index_get_options(r->ix).dim);
    if (!(r->qvec = tw_malloc_array((size_t)r->emb.m->cfg.n_embd, sizeof(float))))
        return tw_error_set(TW_ENOMEM, "out of memory");
    return 0;
}

int tw_retriever_open(struct tw_home *h, int threads, tw_retriever **out)
{
    *out = NULL;
    tw_retriever *r = tw_calloc(1, sizeof *r);
    if (!r)
        return tw_error_set(TW_ENOMEM, "out of memory");
    r->h = h;
    names_init(&r->authors);
    names_init(&r->categories);
    tw_vec_init(&r->docs, sizeof(struct rdoc));
    tw_map_init(&r->doc_idx, TW_MAP_STR);
    tw_map_init(&r->chunk_doc, TW_MAP_U64);
    int rc = tw_feature_run_latest(h, &r->run);
    if (!rc && !r->run.id)
        rc = tw_error_set(TW_ESTATE, "%s: no features yet: run `twin features` first", h->path);
    if (!rc)
        rc = load_indexes(r, threads);
    if (!rc)
        rc = load_chunks(r);
    if (!rc)
        rc = group_by_author(r);
    if (!rc)
        rc = tw_authors_new((const char *const *)r->authors.v.data, r->authors.v.len, &r->matcher);
    if (!rc && sqlite3_prepare_v2(h->db,
                                  "SELECT d.id, a.full_name, d.title, d.category, d.uri, "
                                  "d.published_at, c.text FROM chunks c "
                                  "JOIN documents d ON d.id = c.document_id "
                                  "JOIN authors a ON a.id = d.author_id WHERE c.seq = ?1",
                                  -1, &r->chunk_st, NULL) != SQLITE_OK)
        rc = tw_home_db_fail(h, "preparing the chunk lookup");
    if (rc) {
        tw_retriever_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void tw_retriever_free(tw_retriever *r)
{
    if (!r)
        return;
    sqlite3_finalize(r->chunk_st);
    tw_map_free(&r->chunk_doc);
    tw_authors_free(r->matcher);
    tw_free(r->by_author);
    tw_free(r->author_at);
    names_free(&r->authors);
    names_free(&r->categories);
    tw_map_free(&r->doc_idx);
    tw_vec_free(&r->docs);
    tw_free(r->qvec);
    tw_session_close(&r->emb);
    tw_index_free(r->ix);
    tw_bm25_free(r->bm);
    tw_feature_run_free(&r->run);
    tw_free(r);
}

void tw_retriever_info(const tw_retriever *r, struct tw_retriever_info *out)
{
    *out = (struct tw_retriever_info){
        .run_id = r->run.id,
        .version = r->run.version,
        .chunks = r->n_chunks,
        .documents = r->docs.len,
        .authors = r->authors.v.len,
        .embed_model = r->run.model,
    };
}

const char *const *tw_retriever_authors(const tw_retriever *r, size_t *n)
{
    *n = r->authors.v.len;
    return (const char *const *)r->authors.v.data;
}

const struct tw_authors *tw_retriever_matcher(const tw_retriever *r)
{
    return r->matcher;
}

// ---- filters

// A filter compiled against the name tables: which authors pass (NULL: all) and which
// category (-1: any; -2: a category no document has, so nothing passes).
struct cfilter {
    const tw_retriever *r;
    uint8_t *author_ok;
    bool any_author;
    long category;
};

static int compile(const tw_retriever *r, const struct tw_rag_filter *f, struct cfilter *cf)
{
    *cf = (struct cfilter){ .r = r, .any_author = true, .category = -1 };
    if (!f)
        return 0;
    if (f->n_authors) {
        cf->any_author = false;
        if (!(cf->author_ok = tw_calloc(r->authors.v.len ? r->authors.v.len : 1, 1)))
            return tw_error_set(TW_ENOMEM, "out of memory");
        for (size_t i = 0; i < f->n_authors; i++)
            for (size_t a = 0; a < r->authors.v.len; a++)
                if (strcasecmp(f->authors[i], name_at(&r->authors, a)) == 0)
                    cf->author_ok[a] = 1;
    }
    if (f->category) {
        cf->category = -2;
        for (size_t c = 0; c < r->categories.v.len; c++)
            if (strcmp(f->category, name_at(&r->categories, c)) == 0)
                cf->category = (long)c;
    }
    return 0;
}

static bool admits(void *ud, uint64_t seq)
{
    const struct cfilter *cf = ud;
    uint64_t d;
    if (!tw_map_get_u64(&cf->r->chunk_doc, seq, &d))
        return false;
    const struct rdoc *doc = &TW_VEC_AT(&cf->r->docs, struct rdoc, d);
    return (cf->any_author || cf->author_ok[doc->author]) &&
           (cf->category == -1 || cf->category == (long)doc->category);
}

// ---- searches

int tw_retriever_sparse(tw_retriever *r, const char *query, const struct tw_rag_filter *f,
                        uint32_t depth, struct tw_rag_hit *out, size_t *n)
{
    *n = 0;
    struct cfilter cf;
    int rc = compile(r, f, &cf);
    struct tw_bm25_hit *bh = rc ? NULL : tw_malloc_array(depth ? depth : 1, sizeof *bh);
    if (!rc && !bh)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    bool filtered = f && (f->n_authors || f->category);
    if (!rc)
        rc = tw_bm25_search(r->bm, query, strlen(query), depth, filtered ? admits : NULL, &cf, bh,
                            n);
    for (size_t i = 0; !rc && i < *n; i++)
        out[i] = (struct tw_rag_hit){ (int64_t)bh[i].id, bh[i].score };
    tw_free(bh);
    tw_free(cf.author_ok);
    return rc;
}

// Whether the authors a filter admits have so few chunks that scoring each beats the graph
// search, where most nodes would fail the filter: at most 4,096, or an eighth of all.
static bool few(const tw_retriever *r, const struct cfilter *cf)
{
    size_t n = 0;
    for (size_t a = 0; a < r->authors.v.len; a++)
        if (cf->author_ok[a])
            n += r->author_at[a + 1] - r->author_at[a];
    return n <= 4096 || n * 8 <= r->n_chunks;
}

// The exact search over the chunks the filter admits.
static int among(tw_retriever *r, const struct cfilter *cf, uint32_t depth, struct tw_hit *hits,
                 uint32_t *got)
{
    tw_vec ids;
    tw_vec_init(&ids, sizeof(uint64_t));
    int rc = 0;
    for (size_t a = 0; rc == 0 && a < r->authors.v.len; a++) {
        if (!cf->author_ok[a])
            continue;
        for (size_t i = r->author_at[a]; rc == 0 && i < r->author_at[a + 1]; i++)
            if (cf->category == -1 || admits((void *)cf, r->by_author[i]))
                rc = tw_vec_push(&ids, &r->by_author[i]);
    }
    if (rc)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    else
        rc = tw_index_search_among(r->ix, r->qvec, depth, ids.data, ids.len, hits, got);
    tw_vec_free(&ids);
    return rc;
}

int tw_retriever_dense(tw_retriever *r, const char *query, const struct tw_rag_filter *f,
                       uint32_t depth, struct tw_rag_hit *out, size_t *n, double *embed_ms)
{
    *n = 0;
    if (!r->ix)
        return tw_error_set(TW_ESTATE,
                            "%s: the feature run has no embedding model: run `twin features "
                            "--model PATH` for dense search",
                            r->h->path);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = tw_embed_text(r->emb.c, r->emb.m, query, strlen(query), r->qvec);
    if (embed_ms)
        *embed_ms = ms_since(&t0);
    if (rc)
        return tw_error_prefix("embedding the query");
    // The payload holds the warehouse's spelling of each name: pass the table's.
    struct cfilter cf;
    if ((rc = compile(r, f, &cf)))
        return rc;
    const char **names = tw_malloc_array(r->authors.v.len ? r->authors.v.len : 1, sizeof *names);
    struct tw_hit *hits = tw_malloc_array(depth ? depth : 1, sizeof *hits);
    if (!names || !hits) {
        rc = tw_error_set(TW_ENOMEM, "out of memory");
        goto out;
    }
    size_t nn = 0;
    for (size_t a = 0; !cf.any_author && a < r->authors.v.len; a++)
        if (cf.author_ok[a])
            names[nn++] = name_at(&r->authors, a);
    struct tw_cond conds[2];
    size_t nc = 0;
    if (!cf.any_author)
        conds[nc++] = (struct tw_cond){
            .key = "author", .op = TW_COND_IN, .type = TW_PV_STR, .strs = names, .n = nn
        };
    if (cf.category != -1)
        conds[nc++] = (struct tw_cond){ .key = "category",
                                        .op = TW_COND_EQ,
                                        .type = TW_PV_STR,
                                        .strs = (const char *const *)&f->category,
                                        .n = 1 };
    struct tw_filter flt = { .must = conds, .n_must = nc };
    uint32_t got = 0;
    if ((!cf.any_author && nn == 0) || cf.category == -2)
        goto out; // no document passes
    if (!cf.any_author && few(r, &cf))
        rc = among(r, &cf, depth, hits, &got);
    else
        rc = tw_index_search(r->ix, r->qvec, depth, 0, nc ? &flt : NULL, hits, &got);
    if (rc)
        goto out;
    for (uint32_t i = 0; i < got; i++)
        out[i] = (struct tw_rag_hit){ (int64_t)hits[i].id, hits[i].score };
    *n = got;
out:
    tw_free(names);
    tw_free(hits);
    tw_free(cf.author_ok);
    return rc;
}

static int cmp_hit(const void *a, const void *b)
{
    const struct tw_rag_hit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->chunk > y->chunk) - (x->chunk < y->chunk);
}

int tw_rrf_fuse(const struct tw_rag_hit *const *lists, const size_t *lens, size_t n_lists,
                tw_vec *out)
{
    tw_vec_clear(out);
    tw_map at; // chunk -> position in out
    tw_map_init(&at, TW_MAP_U64);
    int rc = 0;
    for (size_t l = 0; rc == 0 && l < n_lists; l++) {
        for (size_t i = 0; i < lens[l]; i++) {
            uint64_t pos;
            double add = 1.0 / (TW_RRF_K + (double)(i + 1));
            if (tw_map_get_u64(&at, (uint64_t)lists[l][i].chunk, &pos)) {
                ((struct tw_rag_hit *)out->data)[pos].score += add;
                continue;
            }
            struct tw_rag_hit h = { lists[l][i].chunk, add };
            if ((rc = tw_map_put_u64(&at, (uint64_t)h.chunk, out->len)) ||
                (rc = tw_vec_push(out, &h)))
                break;
        }
    }
    tw_map_free(&at);
    if (rc)
        return tw_error_set(TW_ENOMEM, "out of memory fusing results");
    if (out->len > 1)
        qsort(out->data, out->len, sizeof(struct tw_rag_hit), cmp_hit);
    return 0;
}

// ---- chunks

static char *dup_col(sqlite3_stmt *st, int col, bool *oom)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    char *d = tw_strdup(s ? s : "");
    if (!d)
        *oom = true;
    return d;
}

int tw_retriever_chunk(tw_retriever *r, int64_t seq, struct tw_rag_chunk *out)
{
    memset(out, 0, sizeof *out);
    out->chunk = seq;
    sqlite3_stmt *st = r->chunk_st;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, seq);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        return tw_error_set(TW_ENOENT, "chunk %lld: not in the feature store (run twin features)",
                            (long long)seq);
    if (step != SQLITE_ROW)
        return tw_home_db_fail(r->h, "reading a chunk");
    bool oom = false;
    snprintf(out->document_id, sizeof out->document_id, "%s", sqlite3_column_text(st, 0));
    out->author = dup_col(st, 1, &oom);
    out->title = dup_col(st, 2, &oom);
    out->category = dup_col(st, 3, &oom);
    out->uri = dup_col(st, 4, &oom);
    out->published_at = sqlite3_column_int64(st, 5);
    out->text = dup_col(st, 6, &oom);
    sqlite3_reset(st);
    if (oom) {
        tw_rag_chunk_clear(out);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

void tw_rag_chunk_clear(struct tw_rag_chunk *c)
{
    tw_free(c->author);
    tw_free(c->title);
    tw_free(c->category);
    tw_free(c->uri);
    tw_free(c->text);
    c->author = c->title = c->category = c->uri = c->text = NULL;
}

// ---- one-shot search

void tw_search_hits_free(struct tw_search_hit *hits, size_t n)
{
    for (size_t i = 0; hits && i < n; i++) {
        tw_free(hits[i].author);
        tw_free(hits[i].title);
        tw_free(hits[i].category);
        tw_free(hits[i].text);
    }
    tw_free(hits);
}

static int fill_hits(tw_retriever *r, const struct tw_rag_hit *top, size_t n,
                     struct tw_search_hit **out)
{
    struct tw_search_hit *hits = n ? tw_calloc(n, sizeof *hits) : NULL;
    if (n && !hits)
        return tw_error_set(TW_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct tw_rag_chunk c;
        if ((rc = tw_retriever_chunk(r, top[i].chunk, &c)))
            break;
        hits[i] = (struct tw_search_hit){ .chunk = c.chunk,
                                          .score = top[i].score,
                                          .author = c.author,
                                          .title = c.title,
                                          .category = c.category,
                                          .text = c.text };
        memcpy(hits[i].document_id, c.document_id, sizeof c.document_id);
        tw_free(c.uri);
    }
    if (rc) {
        tw_search_hits_free(hits, n);
        return rc;
    }
    *out = hits;
    return 0;
}

int tw_retriever_query(tw_retriever *r, const char *query, enum tw_search_mode mode,
                       const struct tw_rag_filter *f, uint32_t depth, struct tw_rag_lists *l,
                       tw_vec *out)
{
    l->used = mode == TW_SEARCH_HYBRID && !r->ix ? TW_SEARCH_SPARSE : mode;
    l->n_sparse = l->n_dense = 0;
    l->embed_ms = 0;
    int rc = 0;
    if (l->used != TW_SEARCH_DENSE)
        rc = tw_retriever_sparse(r, query, f, depth, l->sparse, &l->n_sparse);
    if (!rc && l->used != TW_SEARCH_SPARSE)
        rc = tw_retriever_dense(r, query, f, depth, l->dense, &l->n_dense, &l->embed_ms);
    if (rc)
        return rc;
    if (l->used == TW_SEARCH_HYBRID) {
        const struct tw_rag_hit *lists[2] = { l->sparse, l->dense };
        size_t lens[2] = { l->n_sparse, l->n_dense };
        return tw_rrf_fuse(lists, lens, 2, out);
    }
    tw_vec_clear(out);
    bool dense = l->used == TW_SEARCH_DENSE;
    if (tw_vec_append(out, dense ? l->dense : l->sparse, dense ? l->n_dense : l->n_sparse))
        return tw_error_set(TW_ENOMEM, "out of memory");
    return 0;
}

int tw_search(tw_retriever *r, const char *query, const struct tw_search_options *opt,
              struct tw_search_hit **hits, size_t *n, enum tw_search_mode *used)
{
    *hits = NULL;
    *n = 0;
    uint32_t k = opt->k ? opt->k : 10, depth = opt->mode == TW_SEARCH_HYBRID ? 5 * k : k;
    const char *authors[1] = { opt->author };
    struct tw_rag_filter f = { authors, opt->author ? 1 : 0, opt->category };
    struct tw_rag_lists l = { .sparse = tw_malloc_array(depth, sizeof *l.sparse),
                              .dense = tw_malloc_array(depth, sizeof *l.dense) };
    tw_vec top;
    tw_vec_init(&top, sizeof(struct tw_rag_hit));
    int rc = l.sparse && l.dense ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc)
        rc = tw_retriever_query(r, query, opt->mode, &f, depth, &l, &top);
    *used = l.used;
    size_t m = top.len < k ? top.len : k;
    if (!rc)
        rc = fill_hits(r, top.data, m, hits);
    if (!rc)
        *n = m;
    tw_vec_free(&top);
    tw_free(l.sparse);
    tw_free(l.dense);
    return rc;
}

// Implements features.h: the incremental feature run (changes → clean → chunk → BM25 and
// vector index → blobs and a feature_runs row, in one transaction) and search over the newest
// run (sparse, dense, or both fused by reciprocal rank).
#define _GNU_SOURCE
#include "pipeline/features.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/progress.h"
#include "base/str.h"
#include "base/vec.h"
#include "index/index.h"
#include "model/context.h"
#include "model/embed.h"
#include "model/model.h"
#include "store/blob.h"
#include "store/warehouse.h"
#include "tensor/backend.h"
#include "text/bm25.h"
#include "text/chunk.h"
#include "text/clean.h"

#define RRF_K 60 // reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009)

static int db_fail(struct tw_home *h, const char *what)
{
    return tw_error_set(TW_EDB, "%s/twin.db: %s: %s", h->path, what, sqlite3_errmsg(h->db));
}

static int prepare(struct tw_home *h, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(h->db, sql, -1, st, NULL) == SQLITE_OK ? 0 : db_fail(h, "preparing");
}

// ---- the embedder

struct embedder {
    struct tw_model *m;
    struct tw_backend *be;
    tw_ctx *c;
    float *vec;
};

static int embedder_open(const char *path, int threads, struct embedder *e)
{
    memset(e, 0, sizeof *e);
    int rc = tw_model_open(path, &e->m);
    if (!rc && e->m->cfg.arch != TW_ARCH_BERT)
        rc = tw_error_set(TW_EINVAL, "%s: a %s is not a sentence embedder", path, e->m->arch_name);
    if (!rc)
        rc = tw_backend_cpu_new(threads, &e->be);
    if (!rc)
        rc = tw_ctx_new(e->m, e->be, &(struct tw_ctx_params){ 0 }, &e->c);
    if (!rc && !(e->vec = tw_malloc_array((size_t)e->m->cfg.n_embd, sizeof(float))))
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    return rc;
}

static void embedder_close(struct embedder *e)
{
    tw_free(e->vec);
    tw_ctx_free(e->c);
    if (e->be)
        tw_backend_free(e->be);
    if (e->m)
        tw_model_close(e->m);
    memset(e, 0, sizeof *e);
}

// ---- the previous run

struct prev_run {
    int64_t id, version, change_seq;
    char *model;
    char bm25[TW_BLOB_HEX], vectors[TW_BLOB_HEX];
};

static int read_prev(struct tw_home *h, struct prev_run *p)
{
    memset(p, 0, sizeof *p);
    sqlite3_stmt *st;
    int rc = prepare(h,
                     "SELECT id, version, change_seq, model, bm25_blob, vector_blob "
                     "FROM feature_runs ORDER BY id DESC LIMIT 1",
                     &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW) {
        p->id = sqlite3_column_int64(st, 0);
        p->version = sqlite3_column_int64(st, 1);
        p->change_seq = sqlite3_column_int64(st, 2);
        const char *m = (const char *)sqlite3_column_text(st, 3);
        p->model = m ? tw_strdup(m) : NULL;
        snprintf(p->bm25, sizeof p->bm25, "%s", (const char *)sqlite3_column_text(st, 4));
        const char *v = (const char *)sqlite3_column_text(st, 5);
        snprintf(p->vectors, sizeof p->vectors, "%s", v ? v : "");
    }
    sqlite3_finalize(st);
    return 0;
}

// ---- a run

struct run {
    struct tw_home *h;
    const struct tw_features_options *opt;
    struct tw_features_summary *sum;
    struct embedder emb; // emb.m NULL: BM25 only
    tw_bm25 *bm;
    tw_index *ix;
    json_t *processed, *deleted; // lineage: document ids
    tw_str clean;
    tw_vec chunks, ids, spans;
    struct tw_progress bar;
    bool bar_on;
};

static void bar_start(struct run *r, int64_t total)
{
    if (!r->opt->progress)
        return;
    tw_progress_init(&r->bar, r->emb.m ? "embed" : "index", (uint64_t)total, stderr);
    r->bar_on = true;
}

// Removes the chunks of document doc_id from both indexes and the table.
static int remove_chunks(struct run *r, const char *doc_id)
{
    sqlite3_stmt *st;
    int rc = prepare(r->h, "SELECT seq FROM chunks WHERE document_id = ?1", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, doc_id, -1, SQLITE_STATIC);
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        int d = tw_bm25_delete(r->bm, seq);
        if (d && d != TW_ENOENT)
            rc = d;
        if (!rc && r->ix) {
            d = tw_index_delete(r->ix, seq);
            if (d && d != TW_ENOENT)
                rc = d;
        }
        r->sum->chunks_removed++;
    }
    sqlite3_finalize(st);
    if (rc)
        return rc;
    if ((rc = prepare(r->h, "DELETE FROM chunks WHERE document_id = ?1", &st)))
        return rc;
    sqlite3_bind_text(st, 1, doc_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(r->h, "removing chunks");
    sqlite3_finalize(st);
    if (rc || (rc = prepare(r->h, "DELETE FROM cleaned_documents WHERE document_id = ?1", &st)))
        return rc;
    sqlite3_bind_text(st, 1, doc_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(r->h, "removing a cleaned document");
    sqlite3_finalize(st);
    return rc;
}

static int put_cleaned(struct run *r, const struct tw_wh_doc *d)
{
    sqlite3_stmt *st;
    int rc = prepare(r->h,
                     "INSERT OR REPLACE INTO cleaned_documents (document_id, sha256, content, "
                     "cleaned_at) VALUES (?1, ?2, ?3, ?4)",
                     &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, d->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, d->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, tw_str_cstr(&r->clean), (int)tw_str_len(&r->clean), SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (int64_t)time(NULL));
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_fail(r->h, "writing a cleaned document");
    sqlite3_finalize(st);
    return rc;
}

static int put_chunk(struct run *r, const struct tw_wh_doc *d, size_t idx,
                     const struct tw_chunk *c, int64_t *seq)
{
    sqlite3_stmt *st;
    int rc = prepare(r->h,
                     "INSERT INTO chunks (id, document_id, idx, start, end, text) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq",
                     &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, d->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)idx);
    sqlite3_bind_int64(st, 4, (int64_t)c->start);
    sqlite3_bind_int64(st, 5, (int64_t)c->end);
    sqlite3_bind_text(st, 6, tw_str_cstr(&r->clean) + c->start, (int)(c->end - c->start),
                      SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        *seq = sqlite3_column_int64(st, 0);
    else
        rc = db_fail(r->h, "writing a chunk");
    sqlite3_finalize(st);
    return rc;
}

// Cleans, chunks and indexes one document (its old chunks removed first).
static int process_doc(void *ud, const struct tw_wh_doc *d)
{
    struct run *r = ud;
    int rc = remove_chunks(r, d->id);
    if (rc)
        return rc;
    enum tw_category cat = tw_category_parse(d->category);
    tw_str_clear(&r->clean);
    if ((rc = tw_text_clean(cat, d->content, d->content_len, &r->clean)))
        return tw_error_prefix("document %s", d->id);
    if ((rc = put_cleaned(r, d)))
        return rc;
    const char *text = tw_str_cstr(&r->clean);
    size_t len = tw_str_len(&r->clean);
    // Posts are token windows of the embedder's tokenizer; without one, sentence chunks.
    tw_tokenizer *tok = r->emb.m ? r->emb.m->tok : NULL;
    if (cat == TW_CATEGORY_POST && !tok)
        cat = TW_CATEGORY_ARTICLE;
    tw_vec_clear(&r->chunks);
    const struct tw_span *spans = NULL;
    size_t n_spans = 0;
    if (cat == TW_CATEGORY_POST) {
        tw_vec_clear(&r->ids);
        tw_vec_clear(&r->spans);
        if ((rc = tw_tokenizer_encode(tok, text, len, 0, &r->ids, &r->spans)))
            return tw_error_prefix("document %s", d->id);
        spans = r->spans.data;
        n_spans = r->spans.len;
    }
    if ((rc = tw_chunk_document(cat, text, len, spans, n_spans, NULL, &r->chunks)))
        return tw_error_prefix("document %s: chunking", d->id);
    for (size_t i = 0; !rc && i < r->chunks.len; i++) {
        const struct tw_chunk *c = tw_vec_at(&r->chunks, i);
        int64_t seq = 0;
        if ((rc = put_chunk(r, d, i, c, &seq)))
            break;
        rc = tw_bm25_add(r->bm, (uint64_t)seq, text + c->start, c->end - c->start);
        if (!rc && r->ix) {
            rc = tw_embed_text(r->emb.c, r->emb.m, text + c->start, c->end - c->start, r->emb.vec);
            struct tw_pfield pf[5] = {
                { .key = "author", .type = TW_PV_STR, .s = d->author },
                { .key = "category", .type = TW_PV_STR, .s = d->category },
                { .key = "platform", .type = TW_PV_STR, .s = d->platform },
                { .key = "document", .type = TW_PV_STR, .s = d->id },
                { .key = "date", .type = TW_PV_INT, .i = d->published_at },
            };
            if (!rc)
                rc = tw_index_upsert(r->ix, (uint64_t)seq, r->emb.vec, pf, 5);
        }
        r->sum->chunks_added++;
    }
    if (rc)
        return tw_error_prefix("document %s", d->id);
    r->sum->processed++;
    json_array_append_new(r->processed, json_string(d->id));
    if (r->bar_on)
        tw_progress_add(&r->bar, 1);
    return 0;
}

// Document ids whose newest change after `after` is an insert/update (process) or a delete.
struct changes {
    tw_map last; // document id -> index into ops
    tw_vec ids;  // char *
    tw_vec ops;  // char: 'p' process, 'd' delete
};

static int collect_change(void *ud, const struct tw_wh_change *c)
{
    struct changes *ch = ud;
    char op = strcmp(c->op, "delete") == 0 ? 'd' : 'p';
    uint64_t at;
    if (tw_map_get_str(&ch->last, c->document_id, strlen(c->document_id), &at)) {
        ((char *)ch->ops.data)[at] = op;
        return 0;
    }
    char *id = tw_strdup(c->document_id);
    at = ch->ids.len;
    if (!id || tw_vec_push(&ch->ids, &id) || tw_vec_push(&ch->ops, &op) ||
        tw_map_put_str(&ch->last, id, strlen(id), at)) {
        tw_free(id);
        return tw_error_set(TW_ENOMEM, "out of memory");
    }
    return 0;
}

static int save_blob(struct run *r, bool vectors, char hex[TW_BLOB_HEX])
{
    char tmp[4096];
    int rc = tw_blob_tmp_path(r->h, tmp, sizeof tmp);
    if (!rc)
        rc = vectors ? tw_index_save(r->ix, tmp) : tw_bm25_save(r->bm, tmp);
    if (!rc)
        rc = tw_blob_put_file(r->h, tmp, hex);
    else
        unlink(tmp);
    return rc;
}

static int load_prev_indexes(struct run *r, const struct prev_run *p)
{
    char path[4096];
    int rc = tw_blob_path(r->h, p->bm25, path, sizeof path);
    if (!rc)
        rc = tw_bm25_load(path, &r->bm);
    if (!rc && r->emb.m) {
        rc = tw_blob_path(r->h, p->vectors, path, sizeof path);
        if (!rc)
            rc = tw_index_load(path, &r->ix);
    }
    return rc;
}

static int count(struct tw_home *h, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = prepare(h, sql, &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = db_fail(h, "counting");
    sqlite3_finalize(st);
    return rc;
}

static int write_run(struct run *r, const struct prev_run *p, int64_t version, int64_t seq,
                     int64_t started, const char *bm_hex, const char *vec_hex)
{
    struct tw_home *h = r->h;
    json_t *params =
        json_pack("{s:i, s:i, s:i, s:i, s:I, s:I}", "article_min_chars", 1000, "article_max_chars",
                  2000, "post_window", 250, "post_overlap", 25, "hnsw_m",
                  (json_int_t)(r->opt->hnsw_m ? r->opt->hnsw_m : 16), "hnsw_ef_construction",
                  (json_int_t)(r->opt->hnsw_ef ? r->opt->hnsw_ef : 200));
    json_t *lineage =
        json_pack("{s:O, s:O, s:I, s:b}", "processed", r->processed, "deleted", r->deleted,
                  "previous_run", (json_int_t)p->id, "full", r->opt->full || !p->id);
    char *ptext = params ? json_dumps(params, JSON_COMPACT) : NULL;
    char *ltext = lineage ? json_dumps(lineage, JSON_COMPACT) : NULL;
    json_decref(params);
    json_decref(lineage);
    sqlite3_stmt *st = NULL;
    int rc = !ptext || !ltext ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
    if (!rc)
        rc = prepare(h,
                     "INSERT INTO feature_runs (version, started_at, finished_at, change_seq, "
                     "model, dim, params, bm25_blob, vector_blob, documents, chunks, lineage) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                     "(SELECT count(*) FROM cleaned_documents), (SELECT count(*) FROM chunks), "
                     "?10) RETURNING id",
                     &st);
    if (!rc) {
        sqlite3_bind_int64(st, 1, version);
        sqlite3_bind_int64(st, 2, started);
        sqlite3_bind_int64(st, 3, (int64_t)time(NULL));
        sqlite3_bind_int64(st, 4, seq);
        if (r->emb.m) {
            sqlite3_bind_text(st, 5, r->opt->model, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 6, r->emb.m->cfg.n_embd);
            sqlite3_bind_text(st, 9, vec_hex, -1, SQLITE_STATIC);
        }
        sqlite3_bind_text(st, 7, ptext, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, bm_hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, ltext, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            r->sum->run_id = sqlite3_column_int64(st, 0);
        else
            rc = db_fail(h, "recording the feature run");
        sqlite3_finalize(st);
    }
    free(ptext);
    free(ltext);
    return rc;
}

static int run_body(struct run *r, const struct prev_run *p)
{
    struct tw_home *h = r->h;
    const struct tw_features_options *opt = r->opt;
    // The model decides the index version: another one (or none after one) starts afresh.
    bool same_model = p->id && ((!opt->model && !p->model) ||
                                (opt->model && p->model && strcmp(opt->model, p->model) == 0));
    bool full = opt->full || !same_model;
    int64_t version = !p->id ? 1 : same_model ? p->version : p->version + 1;
    r->sum->version = version;
    int64_t seq = 0;
    int rc = count(h, "SELECT coalesce(max(seq), 0) FROM changes", &seq);
    if (!rc && !full)
        rc = load_prev_indexes(r, p);
    if (!rc && full) {
        rc = tw_bm25_new(NULL, &r->bm);
        if (!rc && r->emb.m) {
            struct tw_index_options io = tw_index_options_default((uint32_t)r->emb.m->cfg.n_embd);
            io.kind = TW_INDEX_HNSW;
            io.metric = TW_METRIC_COSINE;
            if (opt->hnsw_m)
                io.m = opt->hnsw_m;
            if (opt->hnsw_ef)
                io.ef_construction = opt->hnsw_ef;
            rc = tw_index_new(&io, &r->ix);
        }
        if (!rc && sqlite3_exec(h->db, "DELETE FROM chunks; DELETE FROM cleaned_documents;", NULL,
                                NULL, NULL) != SQLITE_OK)
            rc = db_fail(h, "clearing the features");
    }
    if (rc)
        return rc;
    if (full) {
        struct tw_wh_filter f = { .with_content = true };
        int64_t n_docs = 0, n_authors = 0;
        rc = tw_wh_count(h, &n_docs, &n_authors);
        bar_start(r, n_docs);
        if (!rc)
            rc = tw_wh_docs(h, &f, process_doc, r);
    } else {
        struct changes ch;
        tw_map_init(&ch.last, TW_MAP_STR);
        tw_vec_init(&ch.ids, sizeof(char *));
        tw_vec_init(&ch.ops, 1);
        rc = tw_wh_changes(h, p->change_seq, collect_change, &ch, NULL);
        bar_start(r, (int64_t)ch.ids.len);
        for (size_t i = 0; !rc && i < ch.ids.len; i++) {
            const char *id = TW_VEC_AT(&ch.ids, char *, i);
            if (((char *)ch.ops.data)[i] == 'd') {
                rc = remove_chunks(r, id);
                r->sum->deleted++;
                json_array_append_new(r->deleted, json_string(id));
            } else {
                rc = tw_wh_doc_get(h, id, process_doc, r);
                if (rc == TW_ENOENT) { // inserted, then deleted by a later change
                    tw_error_clear();
                    rc = remove_chunks(r, id);
                }
            }
        }
        for (size_t i = 0; i < ch.ids.len; i++)
            tw_free(TW_VEC_AT(&ch.ids, char *, i));
        tw_map_free(&ch.last);
        tw_vec_free(&ch.ids);
        tw_vec_free(&ch.ops);
    }
    if (r->bar_on) {
        tw_progress_done(&r->bar);
        r->bar_on = false;
    }
    char bm_hex[TW_BLOB_HEX], vec_hex[TW_BLOB_HEX] = "";
    if (!rc && r->ix && tw_index_deleted(r->ix) > tw_index_count(r->ix) / 4)
        rc = tw_index_compact(r->ix, opt->threads);
    if (!rc) {
        tw_bm25_compact(r->bm);
        rc = save_blob(r, false, bm_hex);
    }
    if (!rc && r->ix)
        rc = save_blob(r, true, vec_hex);
    if (!rc)
        rc = count(h, "SELECT count(*) FROM chunks", &r->sum->chunks_total);
    if (!rc)
        rc = count(h, "SELECT count(*) FROM cleaned_documents", &r->sum->documents_total);
    if (!rc)
        rc = write_run(r, p, version, seq, (int64_t)time(NULL), bm_hex, vec_hex);
    return rc;
}

int tw_features_run(struct tw_home *h, const struct tw_features_options *opt,
                    struct tw_features_summary *out)
{
    memset(out, 0, sizeof *out);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct run r = { .h = h, .opt = opt, .sum = out };
    tw_str_init(&r.clean);
    tw_vec_init(&r.chunks, sizeof(struct tw_chunk));
    tw_vec_init(&r.ids, sizeof(int32_t));
    tw_vec_init(&r.spans, sizeof(struct tw_span));
    r.processed = json_array();
    r.deleted = json_array();
    struct prev_run p;
    int rc = !r.processed || !r.deleted ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
    if (!rc && opt->model)
        rc = embedder_open(opt->model, opt->threads, &r.emb);
    out->dense = r.emb.m != NULL;
    // One write transaction: the run's rows appear together or not at all.
    if (!rc)
        rc = tw_wh_begin(h);
    if (!rc) {
        rc = read_prev(h, &p);
        if (!rc)
            rc = run_body(&r, &p);
        if (!rc)
            rc = tw_wh_commit(h);
        if (rc)
            tw_wh_rollback(h);
        tw_free(p.model);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (r.bar_on)
        tw_progress_done(&r.bar);
    tw_bm25_free(r.bm);
    tw_index_free(r.ix);
    embedder_close(&r.emb);
    json_decref(r.processed);
    json_decref(r.deleted);
    tw_str_free(&r.clean);
    tw_vec_free(&r.chunks);
    tw_vec_free(&r.ids);
    tw_vec_free(&r.spans);
    return rc;
}

// ---- search

struct chunk_meta {
    struct tw_home *h;
    const struct tw_search_options *opt;
    sqlite3_stmt *st; // author and category of a chunk's document
};

// Whether chunk seq's document passes the author and category filters.
static bool keep_chunk(void *ud, uint64_t seq)
{
    struct chunk_meta *cm = ud;
    if (!cm->opt->author && !cm->opt->category)
        return true;
    sqlite3_reset(cm->st);
    sqlite3_bind_int64(cm->st, 1, (int64_t)seq);
    if (sqlite3_step(cm->st) != SQLITE_ROW)
        return false;
    const char *author = (const char *)sqlite3_column_text(cm->st, 0);
    const char *category = (const char *)sqlite3_column_text(cm->st, 1);
    return (!cm->opt->author || (author && strcasecmp(author, cm->opt->author) == 0)) &&
           (!cm->opt->category || (category && strcmp(category, cm->opt->category) == 0));
}

struct ranked {
    int64_t seq;
    double score;
};

static int cmp_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    return x->score > y->score   ? -1
           : x->score < y->score ? 1
                                 : (x->seq > y->seq) - (x->seq < y->seq);
}

// Adds 1 / (RRF_K + rank) for each entry of list to the fused scores.
static int fuse(tw_vec *fused, const struct ranked *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < fused->len && ((struct ranked *)fused->data)[j].seq != list[i].seq)
            j++;
        if (j == fused->len) {
            struct ranked z = { list[i].seq, 0 };
            if (tw_vec_push(fused, &z))
                return tw_error_set(TW_ENOMEM, "out of memory");
        }
        ((struct ranked *)fused->data)[j].score += 1.0 / (RRF_K + (double)(i + 1));
    }
    return 0;
}

static int fill_hit(struct tw_home *h, const struct ranked *rk, struct tw_search_hit *hit)
{
    sqlite3_stmt *st;
    int rc = prepare(h,
                     "SELECT d.id, a.full_name, d.title, d.category, c.text FROM chunks c "
                     "JOIN documents d ON d.id = c.document_id JOIN authors a ON a.id = "
                     "d.author_id WHERE c.seq = ?1",
                     &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, rk->seq);
    memset(hit, 0, sizeof *hit);
    hit->chunk = rk->seq;
    hit->score = rk->score;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(hit->document_id, sizeof hit->document_id, "%s", sqlite3_column_text(st, 0));
        const char *t = (const char *)sqlite3_column_text(st, 2);
        hit->author = tw_strdup((const char *)sqlite3_column_text(st, 1));
        hit->title = tw_strdup(t ? t : "");
        hit->category = tw_strdup((const char *)sqlite3_column_text(st, 3));
        hit->text = tw_strdup((const char *)sqlite3_column_text(st, 4));
        if (!hit->author || !hit->title || !hit->category || !hit->text)
            rc = tw_error_set(TW_ENOMEM, "out of memory");
    } else {
        rc = tw_error_set(TW_ESTATE, "chunk %lld: not in the feature store (run twin features)",
                          (long long)rk->seq);
    }
    sqlite3_finalize(st);
    return rc;
}

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

static int dense_list(struct tw_home *h, const struct prev_run *p, const char *query,
                      const struct tw_search_options *opt, uint32_t depth, struct ranked *out,
                      size_t *n)
{
    struct embedder e;
    char path[4096];
    tw_index *ix = NULL;
    int rc = embedder_open(p->model, opt->threads, &e);
    if (!rc)
        rc = tw_embed_text(e.c, e.m, query, strlen(query), e.vec);
    if (!rc)
        rc = tw_blob_path(h, p->vectors, path, sizeof path);
    if (!rc)
        rc = tw_index_load(path, &ix);
    struct tw_cond conds[2];
    size_t nc = 0;
    if (opt->author)
        conds[nc++] = (struct tw_cond){
            .key = "author", .op = TW_COND_EQ, .type = TW_PV_STR, .strs = &opt->author, .n = 1
        };
    if (opt->category)
        conds[nc++] = (struct tw_cond){
            .key = "category", .op = TW_COND_EQ, .type = TW_PV_STR, .strs = &opt->category, .n = 1
        };
    struct tw_filter f = { .must = conds, .n_must = nc };
    struct tw_hit *hits = tw_malloc_array(depth, sizeof *hits);
    uint32_t got = 0;
    if (!rc && !hits)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc)
        rc = tw_index_search(ix, e.vec, depth, 0, nc ? &f : NULL, hits, &got);
    for (uint32_t i = 0; !rc && i < got; i++)
        out[i] = (struct ranked){ (int64_t)hits[i].id, hits[i].score };
    *n = rc ? 0 : got;
    tw_free(hits);
    tw_index_free(ix);
    embedder_close(&e);
    return rc;
}

int tw_search(struct tw_home *h, const char *query, const struct tw_search_options *opt,
              struct tw_search_hit **hits_out, size_t *n_out, enum tw_search_mode *used)
{
    *hits_out = NULL;
    *n_out = 0;
    struct prev_run p;
    int rc = read_prev(h, &p);
    if (rc)
        return rc;
    if (!p.id) {
        tw_free(p.model);
        return tw_error_set(TW_ESTATE, "%s: no features yet: run `twin features` first", h->path);
    }
    enum tw_search_mode mode = opt->mode;
    if (mode == TW_SEARCH_DENSE && !p.model) {
        tw_free(p.model);
        return tw_error_set(TW_ESTATE,
                            "%s: the feature run has no embedding model: run `twin "
                            "features --model PATH` for dense search",
                            h->path);
    }
    if (mode == TW_SEARCH_HYBRID && !p.model)
        mode = TW_SEARCH_SPARSE;
    *used = mode;
    uint32_t k = opt->k ? opt->k : 10, depth = mode == TW_SEARCH_HYBRID ? k * 5 : k;
    struct ranked *sparse = tw_malloc_array(depth, sizeof *sparse);
    struct ranked *dense = tw_malloc_array(depth, sizeof *dense);
    size_t ns = 0, nd = 0;
    struct chunk_meta cm = { .h = h, .opt = opt };
    if (!sparse || !dense)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    if (!rc && mode != TW_SEARCH_DENSE) {
        char path[4096];
        tw_bm25 *bm = NULL;
        struct tw_bm25_hit *bh = tw_malloc_array(depth, sizeof *bh);
        rc = !bh ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
        if (!rc)
            rc = prepare(h,
                         "SELECT a.full_name, d.category FROM chunks c JOIN documents d ON "
                         "d.id = c.document_id JOIN authors a ON a.id = d.author_id "
                         "WHERE c.seq = ?1",
                         &cm.st);
        if (!rc)
            rc = tw_blob_path(h, p.bm25, path, sizeof path);
        if (!rc)
            rc = tw_bm25_load(path, &bm);
        if (!rc)
            rc = tw_bm25_search(bm, query, strlen(query), depth, keep_chunk, &cm, bh, &ns);
        for (size_t i = 0; !rc && i < ns; i++)
            sparse[i] = (struct ranked){ (int64_t)bh[i].id, bh[i].score };
        sqlite3_finalize(cm.st);
        tw_bm25_free(bm);
        tw_free(bh);
    }
    if (!rc && mode != TW_SEARCH_SPARSE)
        rc = dense_list(h, &p, query, opt, depth, dense, &nd);
    tw_vec fused;
    tw_vec_init(&fused, sizeof(struct ranked));
    if (!rc) {
        if (mode == TW_SEARCH_HYBRID) {
            rc = fuse(&fused, sparse, ns);
            if (!rc)
                rc = fuse(&fused, dense, nd);
            qsort(fused.data, fused.len, sizeof(struct ranked), cmp_ranked);
        } else {
            const struct ranked *src = mode == TW_SEARCH_SPARSE ? sparse : dense;
            size_t n = mode == TW_SEARCH_SPARSE ? ns : nd;
            rc = tw_vec_append(&fused, src, n) ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
        }
    }
    size_t n = fused.len < k ? fused.len : k;
    struct tw_search_hit *hits = !rc && n ? tw_calloc(n, sizeof *hits) : NULL;
    if (!rc && n && !hits)
        rc = tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++)
        rc = fill_hit(h, tw_vec_at(&fused, i), &hits[i]);
    if (rc) {
        tw_search_hits_free(hits, n);
    } else {
        *hits_out = hits;
        *n_out = n;
    }
    tw_vec_free(&fused);
    tw_free(sparse);
    tw_free(dense);
    tw_free(p.model);
    return rc;
}

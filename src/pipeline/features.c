// Implements features.h: the incremental feature run (changes → clean → chunk → BM25 and
// vector index → blobs and a feature_runs row, in one transaction).
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
#include "store/featstore.h"
#include "store/warehouse.h"
#include "tensor/backend.h"
#include "text/bm25.h"
#include "text/chunk.h"
#include "text/clean.h"

// ---- the embedder

struct embedder {
    struct tw_session s;
};

static int embedder_open(const char *path, int threads, struct embedder *e)
{
    memset(e, 0, sizeof *e);
    int rc = tw_session_open(path, threads, 0, &e->s);
    if (!rc && e->s.m->cfg.arch != TW_ARCH_BERT)
        rc = tw_error_set(TW_EINVAL, "%s: a %s is not a sentence embedder", path,
                          e->s.m->arch_name);
    return rc;
}

static void embedder_close(struct embedder *e)
{
    tw_session_close(&e->s);
    memset(e, 0, sizeof *e);
}

// ---- the previous run

// ---- a run

struct run {
    struct tw_home *h;
    const struct tw_features_options *opt;
    struct tw_features_summary *sum;
    struct embedder emb; // emb.s.m NULL: BM25 only
    tw_bm25 *bm;
    tw_index *ix;
    json_t *processed, *deleted; // lineage: document ids
    tw_str clean;
    tw_vec chunks, ids, spans;
    struct tw_progress bar;
    bool bar_on;
    sqlite3_stmt *chunk_st; // the chunk insert, prepared once per run (one per chunk)
};

static void bar_start(struct run *r, int64_t total)
{
    if (!r->opt->progress)
        return;
    tw_progress_init(&r->bar, r->emb.s.m ? "embed" : "index", (uint64_t)total, stderr);
    r->bar_on = true;
}

// Removes the chunks of document doc_id from both indexes and the table.
static int remove_chunks(struct run *r, const char *doc_id)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(r->h, "SELECT seq FROM chunks WHERE document_id = ?1", &st);
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
    if ((rc = tw_home_prepare(r->h, "DELETE FROM chunks WHERE document_id = ?1", &st)))
        return rc;
    sqlite3_bind_text(st, 1, doc_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = tw_home_db_fail(r->h, "removing chunks");
    sqlite3_finalize(st);
    if (rc ||
        (rc = tw_home_prepare(r->h, "DELETE FROM cleaned_documents WHERE document_id = ?1", &st)))
        return rc;
    sqlite3_bind_text(st, 1, doc_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = tw_home_db_fail(r->h, "removing a cleaned document");
    sqlite3_finalize(st);
    return rc;
}

static int put_cleaned(struct run *r, const struct tw_wh_doc *d)
{
    sqlite3_stmt *st;
    int rc =
        tw_home_prepare(r->h,
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
        rc = tw_home_db_fail(r->h, "writing a cleaned document");
    sqlite3_finalize(st);
    return rc;
}

static int put_chunk(struct run *r, const struct tw_wh_doc *d, size_t idx,
                     const struct tw_chunk *c, int64_t *seq)
{
    int rc = 0;
    if (!r->chunk_st &&
        (rc = tw_home_prepare(r->h,
                              "INSERT INTO chunks (id, document_id, idx, start, end, text) "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq",
                              &r->chunk_st)))
        return rc;
    sqlite3_stmt *st = r->chunk_st;
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
        rc = tw_home_db_fail(r->h, "writing a chunk");
    sqlite3_reset(st);
    return rc;
}

// The document's chunks (r->chunks over text, stored as seqs) embedded in one batch (as many
// passes as the embedder's context needs) and put in the vector index with their fields.
static int embed_chunks(struct run *r, const struct tw_wh_doc *d, const char *text,
                        const int64_t *seqs)
{
    size_t nc = r->chunks.len, dim = (size_t)r->emb.s.m->cfg.n_embd;
    const char **texts = tw_malloc_array(nc, sizeof *texts);
    size_t *lens = tw_malloc_array(nc, sizeof *lens);
    float *vecs = tw_malloc_array(nc * dim, sizeof *vecs);
    int rc = texts && lens && vecs ? 0 : tw_error_set(TW_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < nc; i++) {
        const struct tw_chunk *c = tw_vec_at(&r->chunks, i);
        texts[i] = text + c->start;
        lens[i] = c->end - c->start;
    }
    if (!rc)
        rc = tw_embed_texts(r->emb.s.c, r->emb.s.m, texts, lens, (int)nc, vecs, NULL);
    struct tw_pfield pf[5] = {
        { .key = "author", .type = TW_PV_STR, .s = d->author },
        { .key = "category", .type = TW_PV_STR, .s = d->category },
        { .key = "platform", .type = TW_PV_STR, .s = d->platform },
        { .key = "document", .type = TW_PV_STR, .s = d->id },
        { .key = "date", .type = TW_PV_INT, .i = d->published_at },
    };
    for (size_t i = 0; !rc && i < nc; i++)
        rc = tw_index_upsert(r->ix, (uint64_t)seqs[i], vecs + i * dim, pf, 5);
    tw_free(texts), tw_free(lens), tw_free(vecs);
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
    tw_tokenizer *tok = r->emb.s.m ? r->emb.s.m->tok : NULL;
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
    size_t nc = r->chunks.len;
    int64_t *seqs = tw_malloc_array(nc ? nc : 1, sizeof *seqs);
    if (!seqs)
        return tw_error_set(TW_ENOMEM, "document %s: out of memory", d->id);
    for (size_t i = 0; !rc && i < nc; i++) {
        const struct tw_chunk *c = tw_vec_at(&r->chunks, i);
        if ((rc = put_chunk(r, d, i, c, &seqs[i])))
            break;
        rc = tw_bm25_add(r->bm, (uint64_t)seqs[i], text + c->start, c->end - c->start);
        r->sum->chunks_added += rc == 0;
    }
    if (!rc && r->ix && nc > 0)
        rc = embed_chunks(r, d, text, seqs);
    tw_free(seqs);
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

static int load_prev_indexes(struct run *r, const struct tw_feature_run *p)
{
    char path[4096];
    int rc = tw_blob_path(r->h, p->bm25, path, sizeof path);
    if (!rc)
        rc = tw_bm25_load(path, &r->bm);
    if (!rc && r->emb.s.m) {
        rc = tw_blob_path(r->h, p->vectors, path, sizeof path);
        if (!rc)
            rc = tw_index_load(path, &r->ix);
    }
    return rc;
}

static int count(struct tw_home *h, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = tw_home_prepare(h, sql, &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = tw_home_db_fail(h, "counting");
    sqlite3_finalize(st);
    return rc;
}

static int write_run(struct run *r, const struct tw_feature_run *p, int64_t version, int64_t seq,
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
        rc = tw_home_prepare(
            h,
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
        if (r->emb.s.m) {
            sqlite3_bind_text(st, 5, r->opt->model, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 6, r->emb.s.m->cfg.n_embd);
            sqlite3_bind_text(st, 9, vec_hex, -1, SQLITE_STATIC);
        }
        sqlite3_bind_text(st, 7, ptext, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, bm_hex, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 10, ltext, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            r->sum->run_id = sqlite3_column_int64(st, 0);
        else
            rc = tw_home_db_fail(h, "recording the feature run");
        sqlite3_finalize(st);
    }
    free(ptext);
    free(ltext);
    return rc;
}

static int run_body(struct run *r, const struct tw_feature_run *p)
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
        if (!rc && r->emb.s.m) {
            struct tw_index_options io =
                tw_index_options_default((uint32_t)r->emb.s.m->cfg.n_embd);
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
            rc = tw_home_db_fail(h, "clearing the features");
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
    struct tw_feature_run p;
    int rc = !r.processed || !r.deleted ? tw_error_set(TW_ENOMEM, "out of memory") : 0;
    if (!rc && opt->model)
        rc = embedder_open(opt->model, opt->threads, &r.emb);
    out->dense = r.emb.s.m != NULL;
    // One write transaction: the run's rows appear together or not at all.
    if (!rc)
        rc = tw_wh_begin(h);
    if (!rc) {
        rc = tw_feature_run_latest(h, &p);
        if (!rc)
            rc = run_body(&r, &p);
        if (!rc)
            rc = tw_wh_commit(h);
        if (rc)
            tw_wh_rollback(h);
        tw_feature_run_free(&p);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (r.bar_on)
        tw_progress_done(&r.bar);
    sqlite3_finalize(r.chunk_st);
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

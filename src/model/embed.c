// Sentence embeddings and cross-encoder scores from text (sentence-transformers' behaviour).
#include "model/embed.h"

#include <string.h>

#include "base/error.h"
#include "base/mem.h"

static int need_tok(const struct tw_model *m)
{
    if (!m->tok)
        return tw_error_set(TW_EINVAL, "%s: the model has no tokenizer", m->path);
    if (tw_arch_is_decoder(m->cfg.arch))
        return tw_error_set(TW_EINVAL, "%s: a %s is not an encoder", m->path, m->arch_name);
    return 0;
}

static int32_t special(const struct tw_model *m, const char *name)
{
    return tw_tokenizer_piece_to_id(m->tok, name, strlen(name));
}

static int encode_plain(const struct tw_model *m, const char *text, size_t len, tw_vec *ids)
{
    tw_vec_clear(ids);
    return tw_tokenizer_encode(m->tok, text, len, 0, ids, NULL);
}

int tw_embed_tokenize(const struct tw_model *m, const char *text, size_t len, tw_vec *ids)
{
    int rc = need_tok(m);
    if (rc != 0)
        return rc;
    tw_vec_clear(ids);
    if ((rc = tw_tokenizer_encode(m->tok, text, len, TW_TOK_ADD_SPECIAL, ids, NULL)) != 0)
        return rc;
    size_t max = (size_t)m->cfg.max_seq;
    if (ids->len > max && max >= 2) {
        // Truncation keeps the closing special token: [CLS] first max - 2 tokens [SEP].
        int32_t *p = ids->data;
        p[max - 1] = p[ids->len - 1];
        ids->len = max;
    }
    return 0;
}

int tw_embed_text(tw_ctx *c, const struct tw_model *m, const char *text, size_t len, float *out)
{
    tw_vec ids;
    tw_vec_init(&ids, sizeof(int32_t));
    int rc = tw_embed_tokenize(m, text, len, &ids);
    if (rc == 0)
        rc = tw_ctx_embed(c, ids.data, (int32_t)ids.len, out);
    tw_vec_free(&ids);
    return rc;
}

int tw_embed_texts(tw_ctx *c, const struct tw_model *m, const char *const *texts,
                   const size_t *lens, int n, float *out, int64_t *tokens)
{
    tw_vec *ids = tw_calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
    const int32_t **rows = tw_calloc((size_t)(n > 0 ? n : 1), sizeof *rows);
    int32_t *counts = tw_calloc((size_t)(n > 0 ? n : 1), sizeof *counts);
    int rc = ids && rows && counts ? 0 : tw_error_set(TW_ENOMEM, "embed: out of memory");
    for (int i = 0; i < n && ids; i++)
        tw_vec_init(&ids[i], sizeof(int32_t));
    for (int i = 0; rc == 0 && i < n; i++) {
        if ((rc = tw_embed_tokenize(m, texts[i], lens[i], &ids[i])) != 0)
            tw_error_prefix("text %d", i);
        rows[i] = ids[i].data;
        counts[i] = (int32_t)ids[i].len;
    }
    if (rc == 0 && n > 0)
        rc = tw_ctx_embed_batch(c, rows, counts, n, out);
    for (int i = 0; rc == 0 && tokens && i < n; i++)
        *tokens += counts[i];
    for (int i = 0; i < n && ids; i++)
        tw_vec_free(&ids[i]);
    tw_free(ids), tw_free(rows), tw_free(counts);
    return rc;
}

// HF tokenizers' LongestFirst truncation of a pair to `budget` tokens (truncation.rs).
static void longest_first(size_t la, size_t lb, size_t budget, size_t *ka, size_t *kb)
{
    if (la + lb <= budget) {
        *ka = la, *kb = lb;
        return;
    }
    bool swap = la > lb;
    size_t n1 = swap ? lb : la, n2;
    if (n1 > budget)
        n2 = n1;
    else
        n2 = n1 > budget - n1 ? n1 : budget - n1;
    if (n1 + n2 > budget) {
        n1 = budget / 2;
        n2 = n1 + budget % 2;
    }
    size_t t1 = swap ? n2 : n1, t2 = swap ? n1 : n2;
    *ka = la < t1 ? la : t1;
    *kb = lb < t2 ? lb : t2;
}

int tw_rerank_tokenize(const struct tw_model *m, const char *q, size_t qlen, const char *d,
                       size_t dlen, tw_vec *ids, tw_vec *types)
{
    int rc = need_tok(m);
    if (rc != 0)
        return rc;
    int32_t cls = special(m, "[CLS]"), sep = special(m, "[SEP]");
    if (cls < 0 || sep < 0)
        return tw_error_set(TW_EUNSUPPORTED, "%s: the vocabulary has no [CLS] / [SEP]", m->path);
    tw_vec qa, da;
    tw_vec_init(&qa, sizeof(int32_t));
    tw_vec_init(&da, sizeof(int32_t));
    rc = encode_plain(m, q, qlen, &qa);
    if (rc == 0)
        rc = encode_plain(m, d, dlen, &da);
    size_t budget = m->cfg.max_seq > 3 ? (size_t)m->cfg.max_seq - 3 : 0, ka = 0, kb = 0;
    longest_first(qa.len, da.len, budget, &ka, &kb);
    tw_vec_clear(ids);
    tw_vec_clear(types);
    int32_t zero = 0, one = 1;
    // [CLS] q [SEP] with type 0, then d [SEP] with type 1.
    for (size_t i = 0; rc == 0 && i < ka + 2; i++) {
        int32_t id = i == 0 ? cls : i == ka + 1 ? sep : ((int32_t *)qa.data)[i - 1];
        if ((rc = tw_vec_push(ids, &id)) == 0)
            rc = tw_vec_push(types, &zero);
    }
    for (size_t i = 0; rc == 0 && i < kb + 1; i++) {
        int32_t id = i == kb ? sep : ((int32_t *)da.data)[i];
        if ((rc = tw_vec_push(ids, &id)) == 0)
            rc = tw_vec_push(types, &one);
    }
    tw_vec_free(&qa);
    tw_vec_free(&da);
    return rc;
}

int tw_rerank_score(tw_ctx *c, const struct tw_model *m, const char *q, size_t qlen, const char *d,
                    size_t dlen, float *logit)
{
    tw_vec ids, types;
    tw_vec_init(&ids, sizeof(int32_t));
    tw_vec_init(&types, sizeof(int32_t));
    float *out = tw_malloc_array((size_t)m->cfg.n_labels, sizeof(float));
    int rc = out ? tw_rerank_tokenize(m, q, qlen, d, dlen, &ids, &types)
                 : tw_error_set(TW_ENOMEM, "out of memory");
    if (rc == 0)
        rc = tw_ctx_classify(c, ids.data, types.data, (int32_t)ids.len, out);
    if (rc == 0)
        *logit = out[0];
    tw_free(out);
    tw_vec_free(&ids);
    tw_vec_free(&types);
    return rc;
}

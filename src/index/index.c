// The vector index: point storage (ids, f32 and int8 vectors, payloads, tombstones), payload
// filters, the exact scan, and the HNSW graph of Malkov & Yashunin, "Efficient and robust
// approximate nearest neighbor search using Hierarchical Navigable Small World graphs"
// (arXiv:1603.09320): insertion (Algorithm 1), layer search (Algorithm 2) and the heuristic
// neighbour selection (Algorithm 4), written from the paper. Persistence is in index_io.c.
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "index/index_int.h"

// ---- candidates and heaps

struct cand {
    float s;       // score, higher is nearer
    uint32_t node; // slot
};

// a is worse than b: lower score, ties broken by the higher slot (so results are
// deterministic).
static inline bool worse(struct cand a, struct cand b)
{
    return a.s < b.s || (a.s == b.s && a.node > b.node);
}

// A binary heap; `max` puts the best on top, otherwise the worst.
struct heap {
    struct cand *a;
    size_t n, cap;
    bool max;
};

static inline bool above(const struct heap *h, struct cand x, struct cand y)
{
    return h->max ? worse(y, x) : worse(x, y);
}

static int heap_push(struct heap *h, struct cand c)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct cand *a = tw_realloc(h->a, cap * sizeof *a);
        if (!a)
            return tw_error_set(TW_ENOMEM, "index: search: out of memory");
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!above(h, c, h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = c;
    return 0;
}

static struct cand heap_pop(struct heap *h)
{
    struct cand top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, b = i;
        struct cand bc = last;
        if (l < h->n && above(h, h->a[l], bc)) {
            b = l;
            bc = h->a[l];
        }
        if (r < h->n && above(h, h->a[r], bc))
            b = r;
        if (b == i)
            break;
        h->a[i] = h->a[b];
        i = b;
    }
    if (h->n > 0)
        h->a[i] = last;
    return top;
}

static int cmp_best_first(const void *pa, const void *pb)
{
    struct cand a = *(const struct cand *)pa, b = *(const struct cand *)pb;
    return worse(b, a) ? -1 : worse(a, b) ? 1 : 0;
}

// ---- visited sets: generation-tagged arrays kept in a pool, one per concurrent search

struct visited {
    uint32_t *tag;
    size_t cap;
    uint32_t gen;
};

struct tw_ix_vpool {
    pthread_mutex_t mu;
    struct visited **free;
    size_t n_free, cap_free;
};

static struct visited *visited_get(const struct tw_index *ix, size_t n)
{
    struct tw_ix_vpool *p = ix->pool;
    struct visited *v = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n_free)
        v = p->free[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    if (!v && !(v = tw_calloc(1, sizeof *v)))
        return NULL;
    if (v->cap < n) {
        uint32_t *t = tw_realloc(v->tag, n * sizeof *t);
        if (!t) {
            tw_free(v->tag);
            tw_free(v);
            return NULL;
        }
        tw_mem_hint_huge(t, n * sizeof *t);
        memset(t + v->cap, 0, (n - v->cap) * sizeof *t);
        v->tag = t;
        v->cap = n;
    }
    if (++v->gen == 0) { // wrapped: clear the tags once every 2^32 searches
        memset(v->tag, 0, v->cap * sizeof *v->tag);
        v->gen = 1;
    }
    return v;
}

static void visited_put(const struct tw_index *ix, struct visited *v)
{
    struct tw_ix_vpool *p = ix->pool;
    pthread_mutex_lock(&p->mu);
    if (p->n_free == p->cap_free) {
        size_t cap = p->cap_free ? p->cap_free * 2 : 8;
        struct visited **a = tw_realloc(p->free, cap * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&p->mu);
            tw_free(v->tag);
            tw_free(v);
            return;
        }
        p->free = a;
        p->cap_free = cap;
    }
    p->free[p->n_free++] = v;
    pthread_mutex_unlock(&p->mu);
}

static void pool_free(struct tw_ix_vpool *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_free; i++) {
        tw_free(p->free[i]->tag);
        tw_free(p->free[i]);
    }
    tw_free(p->free);
    pthread_mutex_destroy(&p->mu);
    tw_free(p);
}

// ---- options, allocation, storage

struct tw_index_options tw_index_options_default(uint32_t dim)
{
    struct tw_index_options o = {
        .kind = TW_INDEX_HNSW,
        .metric = TW_METRIC_COSINE,
        .dim = dim,
        .int8 = false,
        .m = 16,
        .ef_construction = 200,
        .seed = 42,
    };
    return o;
}

static int check_options(const struct tw_index_options *o)
{
    if (!o)
        return tw_error_set(TW_EINVAL, "index: options: NULL");
    if ((unsigned)o->kind > TW_INDEX_HNSW)
        return tw_error_set(TW_EINVAL, "index: options: kind %d is not an index kind", o->kind);
    if ((unsigned)o->metric > TW_METRIC_L2)
        return tw_error_set(TW_EINVAL, "index: options: metric %d is not a metric", o->metric);
    if (o->dim < 1 || o->dim > 65536)
        return tw_error_set(TW_EINVAL, "index: options: dim %u is not in 1..65536", o->dim);
    if (o->kind == TW_INDEX_HNSW) {
        if (o->m < 2 || o->m > 1024)
            return tw_error_set(TW_EINVAL, "index: options: m %u is not in 2..1024", o->m);
        if (o->ef_construction < 1 || o->ef_construction > 100000)
            return tw_error_set(TW_EINVAL,
                                "index: options: ef_construction %u is not in 1..100000",
                                o->ef_construction);
    }
    return 0;
}

int tw_ix_alloc_core(const struct tw_index_options *opt, struct tw_index **out)
{
    int rc = check_options(opt);
    if (rc)
        return rc;
    struct tw_index *ix = tw_calloc(1, sizeof *ix);
    struct tw_ix_vpool *p = tw_calloc(1, sizeof *p);
    if (!ix || !p) {
        tw_free(ix);
        tw_free(p);
        return tw_error_set(TW_ENOMEM, "index: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    ix->pool = p;
    ix->opt = *opt;
    if (ix->opt.kind == TW_INDEX_FLAT) { // the graph options mean nothing for a flat index
        ix->opt.m = opt->m ? opt->m : 16;
        ix->opt.ef_construction = opt->ef_construction ? opt->ef_construction : 200;
    }
    tw_ix_kernels_get(tw_cpu_isa_best(), &ix->k);
    tw_map_init(&ix->slot_of, TW_MAP_U64);
    ix->rng = opt->seed;
    ix->max_level = -1;
    *out = ix;
    return 0;
}

int tw_index_new(const struct tw_index_options *opt, tw_index **out)
{
    return tw_ix_alloc_core(opt, out);
}

static void payload_clear(struct tw_ix_payload *p)
{
    for (size_t i = 0; i < p->n; i++) {
        tw_free((char *)p->f[i].key);
        tw_free((char *)p->f[i].s);
    }
    tw_free(p->f);
    p->f = NULL;
    p->n = 0;
}

void tw_index_free(tw_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        tw_free(ix->links ? ix->links[i] : NULL);
        if (ix->payloads)
            payload_clear(&ix->payloads[i]);
    }
    tw_free(ix->vecs);
    tw_free(ix->norm2);
    tw_free(ix->qv);
    tw_free(ix->qscale);
    tw_free(ix->ids);
    tw_free(ix->deleted);
    tw_free(ix->levels);
    tw_free(ix->links);
    tw_free(ix->link0);
    tw_free(ix->payloads);
    tw_map_free(&ix->slot_of);
    pool_free(ix->pool);
    tw_free(ix);
}

// Grows one array of cap elements to ncap (new elements zeroed).
static int grow(void **p, size_t cap, size_t ncap, size_t esize)
{
    size_t bytes;
    if (tw_mul_overflow(ncap, esize, &bytes))
        return TW_EOVERFLOW;
    void *q = tw_realloc(*p, bytes);
    if (!q)
        return TW_ENOMEM;
    tw_mem_hint_huge(q, bytes); // before the new part is first touched
    memset((char *)q + cap * esize, 0, (ncap - cap) * esize);
    *p = q;
    return 0;
}

int tw_ix_reserve(struct tw_index *ix, size_t n)
{
    if (n <= ix->cap)
        return 0;
    size_t ncap = ix->cap ? ix->cap : 64;
    while (ncap < n)
        ncap *= 2;
    if (ncap > UINT32_MAX)
        return tw_error_set(TW_ELIMIT, "index: more than 2^32 points");
    size_t d = ix->opt.dim, c = ix->cap;
    size_t vbytes;
    if (tw_mul_overflow(ncap, d, &vbytes))
        return tw_error_set(TW_EOVERFLOW, "index: vectors: size overflows");
    int rc = 0;
    // Each array grows on its own; a failure leaves the ones grown so far larger, which is
    // harmless (cap only moves when all have grown).
    if ((rc = grow((void **)&ix->vecs, c * d, ncap * d, sizeof(float))) ||
        (rc = grow((void **)&ix->norm2, c, ncap, sizeof(float))) ||
        (rc = grow((void **)&ix->ids, c, ncap, sizeof(uint64_t))) ||
        (rc = grow((void **)&ix->deleted, c, ncap, 1)) ||
        (rc = grow((void **)&ix->levels, c, ncap, 1)) ||
        (rc = grow((void **)&ix->links, c, ncap, sizeof(uint32_t *))) ||
        (ix->opt.kind == TW_INDEX_HNSW &&
         (rc = grow((void **)&ix->link0, c * tw_ix_link0_words(ix), ncap * tw_ix_link0_words(ix),
                    sizeof(uint32_t)))) ||
        (rc = grow((void **)&ix->payloads, c, ncap, sizeof(struct tw_ix_payload))) ||
        (ix->opt.int8 && ((rc = grow((void **)&ix->qv, c * d, ncap * d, 1)) ||
                          (rc = grow((void **)&ix->qscale, c, ncap, sizeof(float))))))
        return tw_error_set(rc, "index: out of memory growing to %zu points", ncap);
    ix->cap = ncap;
    return 0;
}

// Symmetric per-vector quantisation: scale = max|x| / 127, q = round(x / scale).
static float quantize(const float *x, size_t n, int8_t *q)
{
    float mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fmaxf(mx, fabsf(x[i]));
    if (mx == 0) {
        memset(q, 0, n);
        return 0;
    }
    float scale = mx / 127.0f, inv = 127.0f / mx;
    for (size_t i = 0; i < n; i++) {
        long r = lrintf(x[i] * inv);
        q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
    }
    return scale;
}

void tw_ix_derive(struct tw_index *ix, size_t slot)
{
    size_t d = ix->opt.dim;
    const float *v = ix->vecs + slot * d;
    ix->norm2[slot] = ix->k.dot(v, v, d);
    if (ix->opt.int8)
        ix->qscale[slot] = quantize(v, d, ix->qv + slot * d);
}

// Checks v and writes it (normalised under cosine) to out.
static int prepare_vector(const struct tw_index *ix, const char *what, uint64_t id, const float *v,
                          float *out)
{
    size_t d = ix->opt.dim;
    if (!v)
        return tw_error_set(TW_EINVAL, "index: %s %llu: vector is NULL", what,
                            (unsigned long long)id);
    double ss = 0;
    for (size_t i = 0; i < d; i++) {
        if (!isfinite(v[i]))
            return tw_error_set(TW_EINVAL, "index: %s %llu: element %zu is not finite", what,
                                (unsigned long long)id, i);
        ss += (double)v[i] * v[i];
    }
    if (!isfinite(ss))
        return tw_error_set(TW_EINVAL, "index: %s %llu: the norm overflows", what,
                            (unsigned long long)id);
    if (ix->opt.metric == TW_METRIC_COSINE) {
        if (ss == 0)
            return tw_error_set(TW_EINVAL, "index: %s %llu: a zero vector has no cosine", what,
                                (unsigned long long)id);
        float inv = (float)(1.0 / sqrt(ss));
        for (size_t i = 0; i < d; i++)
            out[i] = v[i] * inv;
    } else {
        memcpy(out, v, d * sizeof *out);
    }
    return 0;
}

static int payload_copy(uint64_t id, const struct tw_pfield *f, size_t n,
                        struct tw_ix_payload *out)
{
    out->n = 0;
    out->f = NULL;
    if (n == 0)
        return 0;
    if (!f)
        return tw_error_set(TW_EINVAL, "index: point %llu: payload is NULL with %zu fields",
                            (unsigned long long)id, n);
    for (size_t i = 0; i < n; i++) {
        if (!f[i].key || (f[i].type != TW_PV_STR && f[i].type != TW_PV_INT) ||
            (f[i].type == TW_PV_STR && !f[i].s))
            return tw_error_set(TW_EINVAL, "index: point %llu: payload field %zu is malformed",
                                (unsigned long long)id, i);
    }
    out->f = tw_calloc(n, sizeof *out->f);
    if (!out->f)
        return tw_error_set(TW_ENOMEM, "index: out of memory");
    for (size_t i = 0; i < n; i++) {
        out->f[i].type = f[i].type;
        out->f[i].i = f[i].type == TW_PV_INT ? f[i].i : 0;
        out->f[i].key = tw_strdup(f[i].key);
        out->f[i].s = f[i].type == TW_PV_STR ? tw_strdup(f[i].s) : NULL;
        out->n = i + 1;
        if (!out->f[i].key || (f[i].type == TW_PV_STR && !out->f[i].s)) {
            payload_clear(out);
            return tw_error_set(TW_ENOMEM, "index: out of memory");
        }
    }
    return 0;
}

// A level drawn as floor(-ln(U) * mL), mL = 1 / ln(M) (the paper's section 4.1), from a
// splitmix64 sequence seeded by opt.seed.
static int random_level(struct tw_index *ix)
{
    uint64_t z = (ix->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    double u = ((double)(z >> 11) + 1.0) * 0x1.0p-53; // (0, 1]
    double l = -log(u) / log((double)ix->opt.m);
    return l >= TW_IX_MAX_LEVEL ? TW_IX_MAX_LEVEL : (int)l;
}

// ---- filters

static const struct tw_pfield *field_of(const struct tw_ix_payload *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->f[i].key, key) == 0)
            return &p->f[i];
    }
    return NULL;
}

static bool value_is(const struct tw_pfield *f, const struct tw_cond *c, size_t j)
{
    if (f->type != c->type)
        return false;
    return f->type == TW_PV_STR ? strcmp(f->s, c->strs[j]) == 0 : f->i == c->ints[j];
}

static bool cond_holds(const struct tw_ix_payload *p, const struct tw_cond *c)
{
    const struct tw_pfield *f = field_of(p, c->key);
    if (!f)
        return false;
    switch (c->op) {
    case TW_COND_EQ:
        return value_is(f, c, 0);
    case TW_COND_IN:
        for (size_t j = 0; j < c->n; j++) {
            if (value_is(f, c, j))
                return true;
        }
        return false;
    case TW_COND_RANGE:
        return f->type == TW_PV_INT && f->i >= c->lo && f->i <= c->hi;
    }
    return false;
}

static bool filter_matches(const struct tw_ix_payload *p, const struct tw_filter *flt)
{
    if (!flt)
        return true;
    for (size_t i = 0; i < flt->n_must; i++) {
        if (!cond_holds(p, &flt->must[i]))
            return false;
    }
    for (size_t i = 0; i < flt->n_must_not; i++) {
        if (cond_holds(p, &flt->must_not[i]))
            return false;
    }
    if (flt->n_should == 0)
        return true;
    for (size_t i = 0; i < flt->n_should; i++) {
        if (cond_holds(p, &flt->should[i]))
            return true;
    }
    return false;
}

static int check_conds(const struct tw_cond *c, size_t n, const char *what)
{
    if (n && !c)
        return tw_error_set(TW_EINVAL, "index: filter: %s is NULL with %zu conditions", what, n);
    for (size_t i = 0; i < n; i++) {
        bool ok = c[i].key != NULL;
        if (c[i].op == TW_COND_EQ || c[i].op == TW_COND_IN) {
            size_t need = c[i].op == TW_COND_EQ ? 1 : c[i].n;
            if (c[i].type == TW_PV_STR) {
                ok = ok && (need == 0 || c[i].strs);
                for (size_t j = 0; ok && j < need; j++)
                    ok = c[i].strs[j] != NULL;
            } else {
                ok = ok && c[i].type == TW_PV_INT && (need == 0 || c[i].ints);
            }
        } else if (c[i].op != TW_COND_RANGE) {
            ok = false;
        }
        if (!ok)
            return tw_error_set(TW_EINVAL, "index: filter: %s[%zu] is malformed", what, i);
    }
    return 0;
}

static int check_filter(const struct tw_filter *f)
{
    int rc;
    if (!f)
        return 0;
    if ((rc = check_conds(f->must, f->n_must, "must")) ||
        (rc = check_conds(f->should, f->n_should, "should")) ||
        (rc = check_conds(f->must_not, f->n_must_not, "must_not")))
        return rc;
    return 0;
}

// ---- scores

// The query as the scorer sees it: f32, and its int8 copy when the index has one.
struct query {
    const float *q;
    const int8_t *q8; // NULL: score in f32
    float qs, qn2;
};

static inline float score_f32(const struct tw_index *ix, const float *q, uint32_t node)
{
    const float *v = ix->vecs + (size_t)node * ix->opt.dim;
    if (ix->opt.metric == TW_METRIC_L2)
        return -ix->k.l2(q, v, ix->opt.dim);
    return ix->k.dot(q, v, ix->opt.dim);
}

static inline float score_q(const struct tw_index *ix, const struct query *q, uint32_t node)
{
    if (!q->q8)
        return score_f32(ix, q->q, node);
    size_t d = ix->opt.dim;
    float dot = (float)ix->k.dot8(q->q8, ix->qv + (size_t)node * d, d) * q->qs * ix->qscale[node];
    if (ix->opt.metric == TW_METRIC_L2) // |q - v|^2 = |q|^2 + |v|^2 - 2 q.v
        return -(q->qn2 + ix->norm2[node] - 2 * dot);
    return dot;
}

static inline float score_nodes(const struct tw_index *ix, uint32_t a, uint32_t b)
{
    return score_f32(ix, ix->vecs + (size_t)a * ix->opt.dim, b);
}

// ---- HNSW layer search (Algorithm 2), with a filter: the graph is explored through every
// node, but only admissible nodes (live and matching; every node while building) enter W.

struct search_ctx {
    const struct tw_index *ix;
    const struct query *q;
    const struct tw_filter *filter;
    bool admit_all;
    pthread_mutex_t *locks; // per-node locks while building in parallel, else NULL
    struct visited *vis;
    struct heap cand, w; // C (best on top) and W (worst on top)
    uint32_t *nbuf;      // a copy of one neighbour list
};

static bool admissible(const struct search_ctx *c, uint32_t node)
{
    if (c->admit_all)
        return true;
    return !c->ix->deleted[node] && filter_matches(&c->ix->payloads[node], c->filter);
}

// Copies node's list at level into c->nbuf; returns its length.
static uint32_t read_links(struct search_ctx *c, uint32_t node, int level)
{
    if (c->locks)
        pthread_mutex_lock(&c->locks[node]);
    const uint32_t *l = tw_ix_links_at(c->ix, node, level);
    uint32_t n = l[0];
    memcpy(c->nbuf, l + 1, n * sizeof *l);
    if (c->locks)
        pthread_mutex_unlock(&c->locks[node]);
    return n;
}

// Hints the cache to fetch node's vector (as the scorer will read it) ahead of its score.
static inline void prefetch_vector(const struct tw_index *ix, const struct query *q, uint32_t node)
{
    const char *p;
    size_t bytes;
    if (q->q8) {
        bytes = ix->opt.dim;
        p = (const char *)(ix->qv + (size_t)node * bytes);
    } else {
        bytes = ix->opt.dim * sizeof(float);
        p = (const char *)(ix->vecs + (size_t)node * ix->opt.dim);
    }
    if (bytes > 4096) // the first 4 KiB: the hardware prefetcher follows a longer one
        bytes = 4096;
    for (size_t o = 0; o < bytes; o += 64)
        __builtin_prefetch(p + o, 0, 3);
}

// Searches level from the entries (marked visited by the caller) with list size ef; W ends in
// c->w. Per expanded node, its unvisited neighbours are gathered first, then scored with the
// next one's vector on its way into the cache (the graph walk is bound by memory latency).
static int search_layer(struct search_ctx *c, const struct cand *entries, size_t n_entries,
                        size_t ef, int level)
{
    const struct tw_index *ix = c->ix;
    uint32_t gen = c->vis->gen, *tag = c->vis->tag;
    c->cand.n = c->w.n = 0;
    int rc;
    for (size_t i = 0; i < n_entries; i++) {
        if ((rc = heap_push(&c->cand, entries[i])))
            return rc;
        if (admissible(c, entries[i].node) && (rc = heap_push(&c->w, entries[i])))
            return rc;
        if (c->w.n > ef)
            heap_pop(&c->w);
    }
    while (c->cand.n) {
        struct cand best = heap_pop(&c->cand);
        if (c->w.n >= ef && worse(best, c->w.a[0]))
            break;                  // every candidate left is worse than all of W
        if (c->cand.n && !c->locks) // the next node to expand, probably
            __builtin_prefetch(tw_ix_links_at(ix, c->cand.a[0].node, level), 0, 3);
        uint32_t nn = read_links(c, best.node, level), nu = 0;
        for (uint32_t j = 0; j < nn; j++)
            __builtin_prefetch(&tag[c->nbuf[j]], 1, 3);
        for (uint32_t j = 0; j < nn; j++) {
            uint32_t e = c->nbuf[j];
            if (tag[e] != gen) {
                tag[e] = gen;
                c->nbuf[nu++] = e;
            }
        }
        if (nu)
            prefetch_vector(ix, c->q, c->nbuf[0]);
        for (uint32_t j = 0; j < nu; j++) {
            uint32_t e = c->nbuf[j];
            if (j + 1 < nu)
                prefetch_vector(ix, c->q, c->nbuf[j + 1]);
            struct cand ce = { score_q(ix, c->q, e), e };
            if (c->w.n < ef || worse(c->w.a[0], ce)) {
                if ((rc = heap_push(&c->cand, ce)))
                    return rc;
                if (admissible(c, e)) {
                    if ((rc = heap_push(&c->w, ce)))
                        return rc;
                    if (c->w.n > ef)
                        heap_pop(&c->w);
                }
            }
        }
    }
    return 0;
}

static void ctx_free(struct search_ctx *c)
{
    tw_free(c->cand.a);
    tw_free(c->w.a);
    tw_free(c->nbuf);
    if (c->vis)
        visited_put(c->ix, c->vis);
}

static int ctx_init(struct search_ctx *c, const struct tw_index *ix, const struct query *q)
{
    memset(c, 0, sizeof *c);
    c->ix = ix;
    c->q = q;
    c->cand.max = true;
    c->nbuf = tw_malloc_array(2 * (size_t)ix->opt.m + 1, sizeof *c->nbuf);
    c->vis = visited_get(ix, ix->n);
    if (!c->nbuf || !c->vis) {
        ctx_free(c);
        return tw_error_set(TW_ENOMEM, "index: search: out of memory");
    }
    return 0;
}

// Greedy descent from the entry point down to level `to` + 1 (ef = 1); *ep gets the nearest
// node found. The visited set is renewed per level.
static int descend(struct search_ctx *c, uint32_t entry, int top, int to, struct cand *ep)
{
    ep->node = entry;
    ep->s = score_q(c->ix, c->q, entry);
    bool admit = c->admit_all;
    c->admit_all = true;
    for (int l = top; l > to; l--) {
        c->vis->tag[ep->node] = c->vis->gen;
        int rc = search_layer(c, ep, 1, 1, l);
        if (rc) {
            c->admit_all = admit;
            return rc;
        }
        if (c->w.n)
            *ep = c->w.a[0];
        if (++c->vis->gen == 0) {
            memset(c->vis->tag, 0, c->vis->cap * sizeof *c->vis->tag);
            c->vis->gen = 1;
        }
    }
    c->admit_all = admit;
    return 0;
}

// ---- HNSW insertion (Algorithm 1) with the heuristic of Algorithm 4

// Chooses at most m of the candidates (sorted best first; scores against the base point) by
// the heuristic: a candidate is kept when it is nearer to the base than to every one kept so
// far, which keeps links pointing in diverse directions. Returns how many were kept, in place.
static size_t select_heuristic(const struct tw_index *ix, struct cand *w, size_t n, size_t m)
{
    size_t kept = 0;
    for (size_t i = 0; i < n && kept < m; i++) {
        bool good = true;
        for (size_t j = 0; j < kept && good; j++)
            good = score_nodes(ix, w[i].node, w[j].node) <= w[i].s;
        if (good)
            w[kept++] = w[i];
    }
    return kept;
}

// Adds node to e's list at level, shrinking the list by the heuristic when it overflows.
// The caller holds e's lock. buf has room for mmax + 1 candidates.
static void add_link(const struct tw_index *ix, uint32_t e, uint32_t node, int level,
                     struct cand *buf)
{
    size_t mmax = level == 0 ? 2 * (size_t)ix->opt.m : ix->opt.m;
    uint32_t *l = tw_ix_links_at(ix, e, level);
    for (uint32_t i = 0; i < l[0]; i++) {
        if (l[1 + i] == node)
            return;
    }
    if (l[0] < mmax) {
        l[1 + l[0]++] = node;
        return;
    }
    size_t n = 0;
    for (uint32_t i = 0; i < l[0]; i++)
        buf[n++] = (struct cand){ score_nodes(ix, e, l[1 + i]), l[1 + i] };
    buf[n++] = (struct cand){ score_nodes(ix, e, node), node };
    qsort(buf, n, sizeof *buf, cmp_best_first);
    size_t k = select_heuristic(ix, buf, n, mmax);
    for (size_t i = 0; i < k; i++)
        l[1 + i] = buf[i].node;
    l[0] = (uint32_t)k;
}

struct build {
    pthread_mutex_t *locks; // per node, or NULL when serial
    pthread_mutex_t *global;
};

static int hnsw_insert(struct tw_index *ix, uint32_t node, const struct build *b)
{
    int level = ix->levels[node];
    if (b->global)
        pthread_mutex_lock(b->global);
    int top = ix->max_level;
    uint32_t entry = ix->entry;
    bool hold = level > top; // a new top level: the entry point changes after this insert
    if (!ix->has_entry) {
        ix->entry = node;
        ix->max_level = level;
        ix->has_entry = true;
        if (b->global)
            pthread_mutex_unlock(b->global);
        return 0;
    }
    if (b->global && !hold)
        pthread_mutex_unlock(b->global);

    struct query q = { .q = ix->vecs + (size_t)node * ix->opt.dim };
    struct search_ctx c;
    int rc = ctx_init(&c, ix, &q);
    struct cand *ep = NULL, *buf = NULL, *work = NULL;
    uint32_t *sel = NULL, *n_sel = NULL;
    if (rc)
        goto out;
    c.admit_all = true;
    c.locks = b->locks;
    size_t efc = ix->opt.ef_construction, m = ix->opt.m;
    const int lt = level < top ? level : top; // the levels linked: lt down to 0
    ep = tw_malloc_array(efc + 1, sizeof *ep);
    buf = tw_malloc_array(2 * m + 2, sizeof *buf);
    work = tw_malloc_array(efc + 1, sizeof *work);
    sel = tw_malloc_array(((size_t)lt + 1) * m, sizeof *sel);
    n_sel = tw_calloc((size_t)lt + 1, sizeof *n_sel);
    if (!ep || !buf || !work || !sel || !n_sel) {
        rc = tw_error_set(TW_ENOMEM, "index: insert: out of memory");
        goto out;
    }
    struct cand e0;
    if ((rc = descend(&c, entry, top, level, &e0)))
        goto out;
    ep[0] = e0;
    size_t n_ep = 1;
    // Every level's neighbours are chosen first (top down), then linked bottom up: a node that
    // another insertion reaches at level l has its lists below l in place already, so a
    // concurrent descent through it never lands on an empty list. (Top-down linking left
    // such descents stranded: the parallel builds' recall fell below the serial ones'.)
    for (int l = lt; l >= 0; l--) {
        c.vis->tag[node] = c.vis->gen; // never link to itself
        for (size_t i = 0; i < n_ep; i++)
            c.vis->tag[ep[i].node] = c.vis->gen;
        if ((rc = search_layer(&c, ep, n_ep, efc, l)))
            goto out;
        n_ep = c.w.n;
        if (n_ep)
            memcpy(ep, c.w.a, n_ep * sizeof *ep);
        if (n_ep > 1)
            qsort(ep, n_ep, sizeof *ep, cmp_best_first);
        // the neighbours: m of W by the heuristic, on a copy (W stays the next entry set)
        memcpy(work, ep, n_ep * sizeof *work);
        size_t k = select_heuristic(ix, work, n_ep, m);
        for (size_t i = 0; i < k; i++)
            sel[(size_t)l * m + i] = work[i].node;
        n_sel[l] = (uint32_t)k;
        if (++c.vis->gen == 0) {
            memset(c.vis->tag, 0, c.vis->cap * sizeof *c.vis->tag);
            c.vis->gen = 1;
        }
    }
    for (int l = 0; l <= lt; l++) {
        const uint32_t *nb = sel + (size_t)l * m;
        if (b->locks)
            pthread_mutex_lock(&b->locks[node]);
        uint32_t *own = tw_ix_links_at(ix, node, l);
        memcpy(own + 1, nb, n_sel[l] * sizeof *own);
        own[0] = n_sel[l];
        if (b->locks)
            pthread_mutex_unlock(&b->locks[node]);
        for (size_t i = 0; i < n_sel[l]; i++) {
            if (b->locks)
                pthread_mutex_lock(&b->locks[nb[i]]);
            add_link(ix, nb[i], node, l, buf);
            if (b->locks)
                pthread_mutex_unlock(&b->locks[nb[i]]);
        }
    }
out:
    if (hold && rc == 0) {
        ix->entry = node;
        ix->max_level = level;
    }
    if (b->global && hold)
        pthread_mutex_unlock(b->global);
    tw_free(ep);
    tw_free(buf);
    tw_free(work);
    tw_free(sel);
    tw_free(n_sel);
    ctx_free(&c);
    return rc;
}

// ---- writes

int tw_index_add_batch(tw_index *ix, size_t n, const uint64_t *ids, const float *vs,
                       const struct tw_pfield *const *payloads, const size_t *n_fields,
                       int n_threads)
{
    if (!ix || (n && (!ids || !vs)))
        return tw_error_set(TW_EINVAL, "index: add: NULL argument");
    if (n == 0)
        return 0;
    size_t d = ix->opt.dim, total;
    if (tw_add_overflow(ix->n, n, &total))
        return tw_error_set(TW_EOVERFLOW, "index: add: too many points");
    int rc;
    uint64_t rng = ix->rng;
    if ((rc = tw_ix_reserve(ix, total)))
        return rc;
    if (tw_map_reserve(&ix->slot_of, tw_map_len(&ix->slot_of) + n))
        return tw_error_set(TW_ENOMEM, "index: add: out of memory");
    // Everything that can fail happens before the index changes: vectors go to the free
    // slots past n, payloads and link blocks to new memory.
    struct tw_ix_payload *pl = tw_calloc(n, sizeof *pl);
    uint32_t **links = tw_calloc(n, sizeof *links);
    if (!pl || !links) {
        rc = tw_error_set(TW_ENOMEM, "index: add: out of memory");
        goto fail;
    }
    uint8_t *lv = ix->levels + ix->n;
    for (size_t i = 0; i < n; i++) {
        size_t slot = ix->n + i;
        if ((rc = prepare_vector(ix, "point", ids[i], vs + i * d, ix->vecs + slot * d)))
            goto fail;
        if (payloads && n_fields && (rc = payload_copy(ids[i], payloads[i], n_fields[i], &pl[i])))
            goto fail;
        lv[i] = ix->opt.kind == TW_INDEX_HNSW ? (uint8_t)random_level(ix) : 0;
        if (ix->opt.kind == TW_INDEX_HNSW && lv[i] > 0) {
            links[i] = tw_calloc(tw_ix_upper_words(ix, lv[i]), sizeof(uint32_t));
            if (!links[i]) {
                rc = tw_error_set(TW_ENOMEM, "index: add: out of memory");
                goto fail;
            }
        }
    }
    // Commit the points.
    size_t first = ix->n;
    for (size_t i = 0; i < n; i++) {
        size_t slot = first + i;
        uint64_t old;
        if (tw_map_get_u64(&ix->slot_of, ids[i], &old)) {
            ix->deleted[old] = 1; // the replaced point stays as a tombstone
            ix->n_deleted++;
            payload_clear(&ix->payloads[old]);
        }
        tw_map_put_u64(&ix->slot_of, ids[i], slot); // cannot fail: reserved above
        ix->ids[slot] = ids[i];
        ix->deleted[slot] = 0;
        ix->links[slot] = links[i];
        ix->payloads[slot] = pl[i];
        tw_ix_derive(ix, slot);
    }
    ix->n = total;
    tw_free(pl);
    tw_free(links);
    if (ix->opt.kind != TW_INDEX_HNSW)
        return 0;

    // Link the new nodes: serially, or in parallel with a lock per node (a neighbour list is
    // read and written under its node's lock) and one for the entry point.
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nt > 1 && n < 64)
        nt = 1;
    struct build b = { 0 };
    pthread_mutex_t global;
    if (nt > 1) {
        b.locks = tw_malloc_array(total, sizeof *b.locks);
        if (!b.locks)
            nt = 1;
    }
    if (nt > 1) {
        for (size_t i = 0; i < total; i++)
            pthread_mutex_init(&b.locks[i], NULL);
        pthread_mutex_init(&global, NULL);
        b.global = &global;
    }
    int err = 0;
    if (nt == 1) {
        for (size_t i = 0; i < n && !err; i++)
            err = hnsw_insert(ix, (uint32_t)(first + i), &b);
    } else {
#pragma omp parallel for schedule(dynamic, 8) num_threads(nt)
        for (size_t i = 0; i < n; i++) {
            if (__atomic_load_n(&err, __ATOMIC_RELAXED))
                continue;
            int r = hnsw_insert(ix, (uint32_t)(first + i), &b);
            if (r)
                __atomic_store_n(&err, r, __ATOMIC_RELAXED);
        }
        for (size_t i = 0; i < total; i++)
            pthread_mutex_destroy(&b.locks[i]);
        pthread_mutex_destroy(&global);
        tw_free(b.locks);
    }
    if (err)
        return tw_error_set(err, "index: add: out of memory while linking (the points are "
                                 "stored and found by the exact scan)");
    return 0;

fail:
    if (pl) {
        for (size_t i = 0; i < n; i++)
            payload_clear(&pl[i]);
    }
    if (links) {
        for (size_t i = 0; i < n; i++)
            tw_free(links[i]);
    }
    tw_free(pl);
    tw_free(links);
    ix->rng = rng;
    return rc;
}

int tw_index_upsert(tw_index *ix, uint64_t id, const float *v, const struct tw_pfield *payload,
                    size_t n_fields)
{
    const struct tw_pfield *p = payload;
    return tw_index_add_batch(ix, 1, &id, v, &p, &n_fields, 1);
}

int tw_index_delete(tw_index *ix, uint64_t id)
{
    uint64_t slot;
    if (!ix || !tw_map_get_u64(&ix->slot_of, id, &slot))
        return tw_error_set(TW_ENOENT, "index: delete: point %llu does not exist",
                            (unsigned long long)id);
    tw_map_del_u64(&ix->slot_of, id);
    ix->deleted[slot] = 1;
    ix->n_deleted++;
    payload_clear(&ix->payloads[slot]);
    return 0;
}

int tw_index_compact(tw_index *ix, int n_threads)
{
    if (!ix)
        return tw_error_set(TW_EINVAL, "index: compact: NULL index");
    if (ix->n_deleted == 0)
        return 0;
    size_t live = ix->n - ix->n_deleted, d = ix->opt.dim;
    tw_index *nx = NULL;
    uint64_t *ids = tw_malloc_array(live ? live : 1, sizeof *ids);
    float *vs = tw_malloc_array(live ? live * d : 1, sizeof *vs);
    const struct tw_pfield **pls = tw_malloc_array(live ? live : 1, sizeof *pls);
    size_t *nf = tw_malloc_array(live ? live : 1, sizeof *nf);
    int rc = 0;
    if (!ids || !vs || !pls || !nf) {
        rc = tw_error_set(TW_ENOMEM, "index: compact: out of memory");
        goto out;
    }
    size_t j = 0;
    for (size_t i = 0; i < ix->n; i++) {
        if (ix->deleted[i])
            continue;
        ids[j] = ix->ids[i];
        memcpy(vs + j * d, ix->vecs + i * d, d * sizeof *vs);
        pls[j] = ix->payloads[i].f;
        nf[j] = ix->payloads[i].n;
        j++;
    }
    if ((rc = tw_ix_alloc_core(&ix->opt, &nx)))
        goto out;
    nx->opt.metric = ix->opt.metric == TW_METRIC_COSINE ? TW_METRIC_DOT : ix->opt.metric;
    // The vectors are normalised already: inserting them under the dot metric keeps them
    // bit for bit (normalising again could move the last bit).
    if ((rc = tw_index_add_batch(nx, live, ids, vs, pls, nf, n_threads)))
        goto out;
    nx->opt.metric = ix->opt.metric;
    nx->rng = ix->rng;
    // swap the contents: the caller's pointer stays valid
    struct tw_index tmp = *ix;
    *ix = *nx;
    *nx = tmp;
out:
    tw_index_free(nx);
    tw_free(ids);
    tw_free(vs);
    tw_free(pls);
    tw_free(nf);
    return rc;
}

// ---- search

// The exact scan over every live matching point: top `want` by f32 (exact) or by int8 score.
static int scan(const tw_index *ix, const struct query *q, size_t want,
                const struct tw_filter *filter, struct heap *top)
{
    top->max = false;
    top->n = 0;
    int rc;
    for (size_t i = 0; i < ix->n; i++) {
        if (ix->deleted[i] || !filter_matches(&ix->payloads[i], filter))
            continue;
        struct cand c = { score_q(ix, q, (uint32_t)i), (uint32_t)i };
        if (top->n < want) {
            if ((rc = heap_push(top, c)))
                return rc;
        } else if (worse(top->a[0], c)) {
            heap_pop(top);
            heap_push(top, c); // cannot fail: room was just made
        }
    }
    return 0;
}

// Rescores cands with f32 (when the search ran on int8), sorts them best first and writes the
// first k to hits.
static uint32_t finish(const tw_index *ix, const float *q, struct cand *c, size_t n, bool rescore,
                       uint32_t k, struct tw_hit *hits)
{
    if (rescore) {
        for (size_t i = 0; i < n; i++)
            c[i].s = score_f32(ix, q, c[i].node);
    }
    if (n > 1)
        qsort(c, n, sizeof *c, cmp_best_first);
    uint32_t m = n < k ? (uint32_t)n : k;
    for (uint32_t i = 0; i < m; i++) {
        hits[i].id = ix->ids[c[i].node];
        hits[i].score = c[i].s;
    }
    return m;
}

// Whether a filter matches so few points that the exact scan beats the graph: the matching
// fraction is estimated on up to 1024 evenly spread slots.
static bool selective(const tw_index *ix, const struct tw_filter *filter, size_t ef)
{
    if (!filter || ix->n == 0)
        return false;
    size_t step = ix->n > 1024 ? ix->n / 1024 : 1, seen = 0, hit = 0;
    for (size_t i = 0; i < ix->n; i += step) {
        if (ix->deleted[i])
            continue;
        seen++;
        hit += filter_matches(&ix->payloads[i], filter);
    }
    if (seen == 0)
        return true;
    double est = (double)hit / (double)seen * (double)(ix->n - ix->n_deleted);
    return est < 10.0 * (double)ef;
}

static int search_exact(const tw_index *ix, const float *q, uint32_t k,
                        const struct tw_filter *filter, struct tw_hit *hits, uint32_t *n_hits)
{
    struct query qq = { .q = q };
    struct heap top = { 0 };
    int rc = scan(ix, &qq, k, filter, &top);
    if (rc == 0)
        *n_hits = finish(ix, q, top.a, top.n, false, k, hits);
    tw_free(top.a);
    return rc;
}

int tw_index_search(const tw_index *ix, const float *q, uint32_t k, uint32_t ef,
                    const struct tw_filter *filter, struct tw_hit *hits, uint32_t *n_hits)
{
    if (!ix || !q || !n_hits || (k && !hits))
        return tw_error_set(TW_EINVAL, "index: search: NULL argument");
    *n_hits = 0;
    int rc;
    if ((rc = check_filter(filter)))
        return rc;
    size_t d = ix->opt.dim;
    float *qn = tw_malloc_array(d, sizeof *qn);
    int8_t *q8 = ix->opt.int8 ? tw_malloc(d) : NULL;
    struct search_ctx c = { 0 };
    if (!qn || (ix->opt.int8 && !q8)) {
        rc = tw_error_set(TW_ENOMEM, "index: search: out of memory");
        goto out;
    }
    if ((rc = prepare_vector(ix, "search", 0, q, qn))) {
        tw_error_set(rc, "index: search: %s",
                     ix->opt.metric == TW_METRIC_COSINE ? "the query is zero or not finite"
                                                        : "the query is not finite");
        goto out;
    }
    if (k == 0 || ix->n == ix->n_deleted)
        goto out;
    size_t efs = ef ? (ef > k ? ef : k) : (k > 64 ? k : 64);
    struct query qq = { .q = qn };
    if (ix->opt.int8) {
        qq.q8 = q8;
        qq.qs = quantize(qn, d, q8);
        qq.qn2 = ix->k.dot(qn, qn, d);
        if (efs < (size_t)k * 4)
            efs = (size_t)k * 4;
    }
    if (ix->opt.kind == TW_INDEX_FLAT || !ix->has_entry || selective(ix, filter, efs)) {
        if (ix->opt.kind == TW_INDEX_FLAT && ix->opt.int8 && !filter) {
            struct heap top = { 0 };
            if ((rc = scan(ix, &qq, efs, NULL, &top)) == 0)
                *n_hits = finish(ix, qn, top.a, top.n, true, k, hits);
            tw_free(top.a);
        } else {
            rc = search_exact(ix, qn, k, filter, hits, n_hits);
        }
        goto out;
    }
    if ((rc = ctx_init(&c, ix, &qq)))
        goto out;
    c.filter = filter;
    c.admit_all = !filter && ix->n_deleted == 0; // every node is a result: skip the checks
    struct cand ep;
    if ((rc = descend(&c, ix->entry, ix->max_level, 0, &ep)))
        goto out;
    c.vis->tag[ep.node] = c.vis->gen;
    if ((rc = search_layer(&c, &ep, 1, efs, 0)))
        goto out;
    *n_hits = finish(ix, qn, c.w.a, c.w.n, ix->opt.int8, k, hits);
    // Too few found (a selective filter, or many tombstones): the exact scan answers.
    if (*n_hits < k && *n_hits < ix->n - ix->n_deleted)
        rc = search_exact(ix, qn, k, filter, hits, n_hits);
out:
    if (c.ix)
        ctx_free(&c);
    tw_free(qn);
    tw_free(q8);
    return rc;
}

int tw_index_search_among(const tw_index *ix, const float *q, uint32_t k, const uint64_t *ids,
                          size_t n, struct tw_hit *hits, uint32_t *n_hits)
{
    if (!ix || !q || !n_hits || (k && !hits) || (n && !ids))
        return tw_error_set(TW_EINVAL, "index: search: NULL argument");
    *n_hits = 0;
    float *qn = tw_malloc_array(ix->opt.dim, sizeof *qn);
    if (!qn)
        return tw_error_set(TW_ENOMEM, "index: search: out of memory");
    int rc = prepare_vector(ix, "search", 0, q, qn);
    if (rc)
        tw_error_set(rc, "index: search: the query is zero or not finite");
    struct visited *vis = rc ? NULL : visited_get(ix, ix->n); // an id listed twice counts once
    if (!rc && !vis)
        rc = tw_error_set(TW_ENOMEM, "index: search: out of memory");
    struct heap top = { 0 }; // the k best so far, worst on top
    for (size_t i = 0; rc == 0 && k && i < n; i++) {
        uint64_t slot;
        if (!tw_map_get_u64(&ix->slot_of, ids[i], &slot) || vis->tag[slot] == vis->gen)
            continue;
        vis->tag[slot] = vis->gen;
        struct cand c = { score_f32(ix, qn, (uint32_t)slot), (uint32_t)slot };
        if (top.n < k) {
            rc = heap_push(&top, c);
        } else if (worse(top.a[0], c)) {
            heap_pop(&top);
            heap_push(&top, c); // cannot fail: room was just made
        }
    }
    if (rc == 0)
        *n_hits = finish(ix, qn, top.a, top.n, false, k, hits);
    if (vis)
        visited_put(ix, vis);
    tw_free(top.a);
    tw_free(qn);
    return rc;
}

// ---- accessors

size_t tw_index_count(const tw_index *ix)
{
    return ix ? ix->n - ix->n_deleted : 0;
}

size_t tw_index_deleted(const tw_index *ix)
{
    return ix ? ix->n_deleted : 0;
}

struct tw_index_options tw_index_get_options(const tw_index *ix)
{
    return ix->opt;
}

const struct tw_pfield *tw_index_payload(const tw_index *ix, uint64_t id, const char *key)
{
    uint64_t slot;
    if (!ix || !key || !tw_map_get_u64(&ix->slot_of, id, &slot))
        return NULL;
    return field_of(&ix->payloads[slot], key);
}

size_t tw_index_memory(const tw_index *ix)
{
    if (!ix)
        return 0;
    size_t d = ix->opt.dim, b = sizeof *ix;
    b += ix->cap * (d * sizeof(float) + sizeof(float) + sizeof(uint64_t) + 2 + sizeof(void *) +
                    sizeof(struct tw_ix_payload));
    if (ix->opt.int8)
        b += ix->cap * (d + sizeof(float));
    if (ix->link0)
        b += ix->cap * tw_ix_link0_words(ix) * sizeof(uint32_t);
    for (size_t i = 0; i < ix->n; i++) {
        if (ix->links[i])
            b += tw_ix_upper_words(ix, ix->levels[i]) * sizeof(uint32_t);
        const struct tw_ix_payload *p = &ix->payloads[i];
        b += p->n * sizeof *p->f;
        for (size_t j = 0; j < p->n; j++)
            b += strlen(p->f[j].key) + 1 + (p->f[j].s ? strlen(p->f[j].s) + 1 : 0);
    }
    b += ix->slot_of.cap * sizeof(tw_map_slot);
    return b;
}

// Inference contexts: the paged KV cache of the sequences and the activation buffers, in one
// allocation, and the forward passes — Llama-family decoders (pre-norm, RoPE, grouped-query
// attention, SwiGLU; Qwen2's biases, Qwen3's q/k norms, Mistral's window) and BERT encoders
// (post-norm, learned positions, GELU), following transformers' modeling_llama.py /
// modeling_bert.py.
#include "model/context.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"

// A GPU backend's recorded step, keyed by its shape: n sequences, T rows (the prompt rows of a
// step that has them padded to a multiple of SG_PAD), `rows` the most a sequence brings
// (rounded up to a power of two). One token of one sequence is generation; n of one token
// each, the server's batched decode; with prompt rows, the server's mixed steps. A shape is
// recorded the first time it comes (one token: generation) or the second (more rows: the
// first runs op by op, which also sizes the backend's scratch for it, and a shape that comes
// once is never recorded); SG_CAP shapes are kept, the least recently used going first.
#define SG_CAP 32
#define SG_PAD 32

struct step_graph {
    int32_t n, T, rows;
    bool seen; // ran op by op once
    uint64_t used;
    void *g; // NULL until recorded
};

struct tw_ctx {
    const struct tw_model *m;
    struct tw_backend *be;
    size_t weight_bytes; // m's, told to be before each forward (its stream_bytes)
    int32_t n_ctx, n_batch, n_seq;
    // The paged cache (decoders): n_pages pages of `page` positions (1 << page_shift) that the
    // sequences take as they grow, max_pages at most each (n_ctx positions); a scratch page
    // after them takes a padded step's filler rows.
    int32_t page, page_shift, n_pages, max_pages;
    int32_t *ptab;    // (n_seq, max_pages) each sequence's pages, held[seq] of them
    int32_t *held;    // (n_seq)
    int32_t *free_pg; // (n_pages) the free pages, n_free of them
    int32_t *refs;    // (n_pages) the sequences holding each page (more than one: shared)
    int32_t n_free;
    float *gather; // the CPU's room for one sequence's cache in order (tw_attn.gather)
    int32_t kv_dim, q_dim;
    void *mem;         // the backend's memory: caches and activations
    void *host;        // the host's: tokens, positions, the step's sequences
    float *logits_dev; // a device backend's logits rows (n_logits of them), else NULL
    int32_t n_logits;
    bool keep_logits; // tw_ctx_keep_logits: a device step's logits stay on the device
    float *last;      // the last step's logits rows (backend memory), last_rows of them
    int32_t last_rows;
    size_t bytes;
    float *k, *v;   // decoders: (n_layer, n_pages + 1, page, kv_dim); encoders: (n_batch, kv_dim)
    float *kb, *vb; // (n_batch, kv_dim) a step's new keys and values
    int32_t *slots; // (n_batch) where they go: rows of a layer's cache (all sequences)
    struct step_graph *sg; // (SG_CAP) a GPU backend's recorded steps, n_sg of them
    int n_sg;
    uint64_t sg_clock;        // steps run through sg, for the least recently used
    uint64_t n_steps;         // decoder steps run (tw_attn.pages_gen)
    bool no_graph;            // recording failed once: run every step op by op
    int32_t *last_idx;        // (n_seq) the row of each run's last token, for its logits
    int32_t *tokens;          // (n_seq, n_ctx) the cached tokens
    int32_t *past;            // (n_seq) tokens in each sequence's cache
    int32_t *pos;             // (n_batch) positions / scratch ids
    int32_t *ids;             // (n_batch) a step's tokens
    float *x, *xn;            // (n_batch, C)
    float *q, *att;           // (n_batch, q_dim)
    float *gate, *up;         // (n_batch, F)
    struct tw_attn_seq *seqs; // (n_seq) a step's sequences
};

// Carves n bytes, 64-byte aligned, from the plan: first pass counts, second assigns.
static void *carve(char *base, size_t *off, size_t n)
{
    size_t at = (*off + 63) & ~(size_t)63;
    *off = at + n;
    return base ? base + at : NULL;
}

// The backend's part (caches and activations) from base, the host's part from hbase; returns
// the backend part's size and the host part's in *hbytes.
static size_t plan(struct tw_ctx *c, char *base, char *hbase, size_t *hbytes)
{
    const struct tw_model_config *cfg = &c->m->cfg;
    size_t off = 0, B = (size_t)c->n_batch, C = (size_t)cfg->n_embd, F = (size_t)cfg->n_ff;
    bool dec = tw_arch_is_decoder(cfg->arch);
    size_t S = (size_t)c->n_seq, kvd = (size_t)c->kv_dim;
    size_t kv_rows = dec ? (size_t)cfg->n_layer * ((size_t)c->n_pages + 1) * (size_t)c->page : B;
    c->k = carve(base, &off, kv_rows * kvd * sizeof(float));
    c->v = carve(base, &off, kv_rows * kvd * sizeof(float));
    size_t gather = dec && c->be->device == TW_DEVICE_CPU
                        ? 2 * (size_t)c->max_pages * (size_t)c->page * kvd * sizeof(float)
                        : 0;
    c->gather = gather ? carve(base, &off, gather) : NULL;
    c->kb = carve(base, &off, B * kvd * sizeof(float));
    c->vb = carve(base, &off, B * kvd * sizeof(float));
    size_t hoff = 0;
    c->tokens = carve(hbase, &hoff, S * (size_t)c->n_ctx * sizeof(int32_t));
    c->past = carve(hbase, &hoff, S * sizeof(int32_t));
    size_t P = dec ? (size_t)c->n_pages : 0, MP = dec ? (size_t)c->max_pages : 0;
    c->ptab = carve(hbase, &hoff, S * MP * sizeof(int32_t));
    c->held = carve(hbase, &hoff, S * sizeof(int32_t));
    c->free_pg = carve(hbase, &hoff, P * sizeof(int32_t));
    c->refs = carve(hbase, &hoff, P * sizeof(int32_t));
    c->pos = carve(hbase, &hoff, B * sizeof(int32_t));
    c->ids = carve(hbase, &hoff, B * sizeof(int32_t));
    c->slots = carve(hbase, &hoff, B * sizeof(int32_t));
    c->sg = carve(hbase, &hoff, SG_CAP * sizeof(struct step_graph));
    c->last_idx = carve(hbase, &hoff, S * sizeof(int32_t));
    // Encoders batch sequences of at least a token each.
    c->seqs = carve(hbase, &hoff, (dec ? S : B) * sizeof(struct tw_attn_seq));
    *hbytes = hoff;
    c->x = carve(base, &off, B * C * sizeof(float));
    c->xn = carve(base, &off, B * C * sizeof(float));
    c->q = carve(base, &off, B * (size_t)c->q_dim * sizeof(float));
    c->att = carve(base, &off, B * (size_t)c->q_dim * sizeof(float));
    c->gate = carve(base, &off, (dec ? B : 1) * F * sizeof(float));
    c->up = carve(base, &off, B * F * sizeof(float));
    return off;
}

static void free_graphs(tw_ctx *c)
{
    for (int i = 0; i < c->n_sg; i++)
        tw_backend_graph_free(c->be, c->sg[i].g);
    c->n_sg = 0;
}

int tw_ctx_new(const struct tw_model *m, struct tw_backend *be, const struct tw_ctx_params *p,
               tw_ctx **out)
{
    const struct tw_model_config *cfg = &m->cfg;
    struct tw_ctx *c = tw_calloc(1, sizeof *c);
    if (!c)
        return tw_error_set(TW_ENOMEM, "context: out of memory");
    c->m = m;
    c->be = be;
    c->weight_bytes = tw_model_weight_bytes(m);
    bool dec = tw_arch_is_decoder(cfg->arch);
    int32_t def_ctx = cfg->n_ctx_train < 4096 ? cfg->n_ctx_train : 4096;
    c->n_ctx = dec ? (p && p->n_ctx > 0 ? p->n_ctx : def_ctx) : cfg->n_ctx_train;
    c->n_batch = p && p->n_batch > 0 ? p->n_batch : 512;
    if (!dec) // whole sequences: at least one of the longest, more when asked (batches)
        c->n_batch = c->n_batch > cfg->n_ctx_train ? c->n_batch : cfg->n_ctx_train;
    if (dec && c->n_batch > c->n_ctx)
        c->n_batch = c->n_ctx;
    c->n_seq = dec && p && p->n_seq > 1 ? p->n_seq : 1;
    c->kv_dim = cfg->n_head_kv * cfg->head_dim;
    c->q_dim = cfg->n_head * cfg->head_dim;
    c->page = p && p->page > 0 ? p->page : 32;
    if (c->n_ctx <= 0 || c->n_ctx > (1 << 24) || c->n_seq > 4096 || c->page > (1 << 16) ||
        (c->page & (c->page - 1)) != 0) {
        int rc = tw_error_set(TW_EINVAL,
                              "context: %d positions, %d sequences or pages of %d positions is "
                              "out of range",
                              c->n_ctx, c->n_seq, c->page);
        tw_free(c);
        return rc;
    }
    while ((1 << c->page_shift) < c->page)
        c->page_shift++;
    c->max_pages = (c->n_ctx + c->page - 1) / c->page;
    // The pool: every sequence full unless asked for less, and at least one full sequence.
    int64_t pages = (int64_t)c->n_seq * c->max_pages;
    if (p && p->n_kv > 0)
        pages = ((int64_t)p->n_kv + c->page - 1) / c->page;
    if (dec && (pages < c->max_pages || pages > INT32_MAX / c->page)) {
        int rc = tw_error_set(TW_EINVAL,
                              "context: a cache of %lld positions cannot hold one sequence of %d "
                              "(or is too large)",
                              (long long)pages * c->page, c->n_ctx);
        tw_free(c);
        return rc;
    }
    c->n_pages = dec ? (int32_t)pages : 0;
    size_t hbytes;
    c->bytes = plan(c, NULL, NULL, &hbytes);
    c->host = tw_malloc(hbytes);
    c->mem = c->host ? tw_backend_alloc(be, c->bytes) : NULL;
    if (!c->mem) {
        size_t mib = (c->bytes + hbytes) >> 20;
        tw_free(c->host);
        tw_free(c);
        return tw_error_set(TW_ENOMEM,
                            "context: cannot allocate %zu MiB on the %s backend (a "
                            "smaller --ctx?)",
                            mib, be->ops->name);
    }
    plan(c, c->mem, c->host, &hbytes);
    // TWIN_GRAPHS=0: every step op by op (for comparing the two in tests and benchmarks).
    const char *graphs = getenv("TWIN_GRAPHS");
    c->no_graph = graphs && strcmp(graphs, "0") == 0;
    c->bytes += hbytes;
    memset(c->past, 0, (size_t)c->n_seq * sizeof *c->past);
    memset(c->held, 0, (size_t)c->n_seq * sizeof *c->held);
    c->n_free = c->n_pages;
    for (int32_t i = 0; i < c->n_pages; i++) // taken from the end: page 0 first
        c->free_pg[i] = c->n_pages - 1 - i, c->refs[i] = 0;
    *out = c;
    return 0;
}

void tw_ctx_free(tw_ctx *c)
{
    if (!c)
        return;
    free_graphs(c);
    tw_backend_release(c->be, c->mem);
    if (c->logits_dev)
        tw_backend_release(c->be, c->logits_dev);
    tw_free(c->host);
    tw_free(c);
}

size_t tw_ctx_bytes(const tw_ctx *c)
{
    return c->bytes;
}

int32_t tw_ctx_n_ctx(const tw_ctx *c)
{
    return c->n_ctx;
}

int32_t tw_ctx_n_seq(const tw_ctx *c)
{
    return c->n_seq;
}

int32_t tw_ctx_seq_past(const tw_ctx *c, int32_t seq)
{
    return seq >= 0 && seq < c->n_seq ? c->past[seq] : 0;
}

const int32_t *tw_ctx_seq_tokens(const tw_ctx *c, int32_t seq)
{
    return c->tokens + (size_t)seq * (size_t)c->n_ctx;
}

// Sequence seq's page table (max_pages entries, held[seq] of them in use).
static int32_t *pages_of(const tw_ctx *c, int32_t seq)
{
    return c->ptab + (size_t)seq * (size_t)c->max_pages;
}

// Sequence seq keeps its first n positions (n <= its past) and gives back the pages past them
// (a page goes back to the pool when no sequence holds it). Shared pages are never written:
// n inside one keeps only the pages before it.
static void set_past(tw_ctx *c, int32_t seq, int32_t n)
{
    int32_t *tab = pages_of(c, seq);
    if (c->n_pages == 0) { // an encoder: no cache to keep
        c->past[seq] = n;
        return;
    }
    if ((n & (c->page - 1)) != 0 && c->refs[tab[n >> c->page_shift]] > 1)
        n &= ~(c->page - 1);
    c->past[seq] = n;
    int32_t keep = (n + c->page - 1) >> c->page_shift;
    while (c->held[seq] > keep) {
        int32_t pg = tab[--c->held[seq]];
        if (--c->refs[pg] == 0)
            c->free_pg[c->n_free++] = pg;
    }
}

int32_t tw_ctx_seq_share(tw_ctx *c, int32_t dst, int32_t src, int32_t n)
{
    if (dst < 0 || dst >= c->n_seq || src < 0 || src >= c->n_seq || dst == src || c->n_pages == 0)
        return 0;
    n = n < c->past[src] ? n : c->past[src];
    int32_t k = n >> c->page_shift; // whole pages
    set_past(c, dst, 0);
    const int32_t *from = pages_of(c, src);
    int32_t *to = pages_of(c, dst);
    for (int32_t i = 0; i < k; i++)
        c->refs[to[i] = from[i]]++;
    c->held[dst] = k;
    c->past[dst] = k << c->page_shift;
    memcpy(c->tokens + (size_t)dst * (size_t)c->n_ctx, c->tokens + (size_t)src * (size_t)c->n_ctx,
           (size_t)c->past[dst] * sizeof(int32_t));
    return c->past[dst];
}

void tw_ctx_seq_truncate(tw_ctx *c, int32_t seq, int32_t n)
{
    if (seq >= 0 && seq < c->n_seq && n >= 0 && n <= c->past[seq] && c->n_pages > 0)
        set_past(c, seq, n);
}

int32_t tw_ctx_seq_pages_needed(const tw_ctx *c, int32_t seq, int32_t n)
{
    int32_t want = (c->past[seq] + n + c->page - 1) >> c->page_shift;
    return want > c->held[seq] ? want - c->held[seq] : 0;
}

void tw_ctx_kv(const tw_ctx *c, struct tw_ctx_kv *out)
{
    *out = (struct tw_ctx_kv){ .page = c->page, .pages = c->n_pages, .free = c->n_free };
}

// Gives each run's sequence the pages its new tokens need, all or none: TW_ELIMIT when the
// pool has too few free.
static int take_pages(tw_ctx *c, const struct tw_ctx_run *runs, int n)
{
    int64_t need = 0;
    for (int i = 0; i < n; i++)
        need += tw_ctx_seq_pages_needed(c, runs[i].seq, runs[i].n);
    if (need > c->n_free)
        return tw_error_set(TW_ELIMIT,
                            "the KV cache is full: the step needs %lld more pages of %d "
                            "positions and %d of %d are free",
                            (long long)need, c->page, c->n_free, c->n_pages);
    for (int i = 0; i < n; i++) {
        int32_t s = runs[i].seq, k = tw_ctx_seq_pages_needed(c, s, runs[i].n);
        int32_t *tab = pages_of(c, s);
        while (k-- > 0) {
            int32_t pg = c->free_pg[--c->n_free];
            c->refs[pg] = 1;
            tab[c->held[s]++] = pg;
        }
    }
    return 0;
}

int32_t tw_ctx_n_past(const tw_ctx *c)
{
    return c->past[0];
}

const int32_t *tw_ctx_tokens(const tw_ctx *c)
{
    return c->tokens;
}

void tw_ctx_truncate(tw_ctx *c, int32_t n)
{
    tw_ctx_seq_truncate(c, 0, n);
}

static int check_ids(const tw_ctx *c, const int32_t *ids, int32_t n, int32_t limit,
                     const char *what)
{
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= limit)
            return tw_error_set(TW_EINVAL, "%s %d at position %d is outside 0..%d", what, ids[i],
                                i, limit - 1);
    return 0;
}

// ---- decoders

static struct tw_tensor rows_of(float *data, int64_t T, int64_t C)
{
    return tw_tensor_f32_2d(data, T, C);
}

// The cache pool of layer il.
static float *kv_at(const tw_ctx *c, float *base, int il)
{
    return base + (size_t)il * ((size_t)c->n_pages + 1) * (size_t)c->page * (size_t)c->kv_dim;
}

// A step's sequences: c->seqs[0..n) with row0, n_rows and n_past set (k, v per layer).
static void decoder_layer(tw_ctx *c, int il, int32_t T, int n)
{
    const struct tw_model_config *cfg = &c->m->cfg;
    const struct tw_layer *L = &c->m->layers[il];
    struct tw_backend *be = c->be;
    int64_t C = cfg->n_embd, F = cfg->n_ff, H = cfg->n_head, Hkv = cfg->n_head_kv;
    int64_t hd = cfg->head_dim, kvd = c->kv_dim;
    struct tw_attn_seq *sq = c->seqs;
    struct tw_tensor x = rows_of(c->x, T, C), xn = rows_of(c->xn, T, C);
    struct tw_tensor q = rows_of(c->q, T, H * hd), att = rows_of(c->att, T, H * hd);
    // The new keys and values go to the batch rows kb, vb, then (after RoPE) to their slots
    // in the layer's cache: the same ops whatever the positions, so a step can be replayed.
    struct tw_tensor kn = rows_of(c->kb, T, kvd), vn = rows_of(c->vb, T, kvd);
    const struct tw_tensor *nb = NULL;

    // Attention block: x += o(attention(rope(q), rope(k), v)) of rmsnorm(x).
    struct tw_tensor *qkv[3] = { &q, &kn, &vn };
    const struct tw_tensor *w3[3] = { &L->wq, &L->wk, &L->wv };
    const struct tw_tensor *b3[3] = { L->bq.data ? &L->bq : nb, L->bk.data ? &L->bk : nb,
                                      L->bv.data ? &L->bv : nb };
    struct tw_prenorm pn = { &L->attn_norm, cfg->norm_eps, &xn };
    tw_matmul_n(be, 3, qkv, &x, w3, b3, &pn);
    struct tw_tensor qh = tw_tensor_f32_3d(c->q, T, H, hd);
    struct tw_tensor kh = tw_tensor_f32_3d(c->kb, T, Hkv, hd);
    if (cfg->qk_norm) {
        struct tw_tensor q2 = rows_of(c->q, T * H, hd), k2 = rows_of(c->kb, T * Hkv, hd);
        tw_rmsnorm(be, &q2, &q2, &L->q_norm, cfg->norm_eps);
        tw_rmsnorm(be, &k2, &k2, &L->k_norm, cfg->norm_eps);
    }
    struct tw_rope r = { .head_dim = (int32_t)hd,
                         .n_rot = (int32_t)hd,
                         .neox = cfg->rope_neox,
                         .inv_freq = c->m->rope_inv_freq };
    tw_rope_store(be, &qh, &kh, &vn, c->pos, &r, kv_at(c, c->k, il), kv_at(c, c->v, il), c->slots);
    struct tw_attn a = { .n_head = (int32_t)H,
                         .n_head_kv = (int32_t)Hkv,
                         .head_dim = (int32_t)hd,
                         .scale = 1.0f / sqrtf((float)hd),
                         .causal = true,
                         .window = cfg->sliding_window,
                         .lowp = L->wq.dtype != TW_DTYPE_F32,
                         .page = c->page,
                         .max_pages = c->max_pages,
                         .gather = c->gather,
                         .pages_gen = c->n_steps };
    tw_attention_seqs(be, &att, &qh, sq, n, &a);
    tw_matmul_add(be, &x, &att, &L->wo, L->bo.data ? &L->bo : nb, &xn);

    // MLP block: x += down(silu(gate(h)) * up(h)) with h = rmsnorm(x).
    struct tw_tensor g = rows_of(c->gate, T, F), u = rows_of(c->up, T, F);
    pn.w = &L->ffn_norm;
    tw_matmul_swiglu(be, &g, &x, &L->w_gate, &L->w_up, &u, &pn);
    tw_matmul_add(be, &x, &g, &L->w_down, NULL, &xn);
}

// One step: runs[0..n) (checked by the caller) of T tokens in all. logits: every row's
// (all_logits, one run only) or each run's last row's.
// Where nrows rows of logits are computed: the caller's buffer on the CPU backends, the
// context's device rows (grown to fit) on the others; NULL when that memory is not there.
static float *logits_rows(tw_ctx *c, float *logits, int32_t nrows)
{
    if (c->be->device == TW_DEVICE_CPU)
        return logits;
    if (c->n_logits < nrows) {
        if (c->logits_dev)
            tw_backend_release(c->be, c->logits_dev);
        free_graphs(c); // they wrote the old rows
        c->n_logits = 0;
        c->logits_dev =
            tw_backend_alloc(c->be, (size_t)nrows * (size_t)c->m->cfg.n_vocab * sizeof(float));
        if (!c->logits_dev)
            return NULL;
        c->n_logits = nrows;
    }
    return c->logits_dev;
}

// The step's ops: the embedding, the layers, and with out the logits of the last row of each
// run (or of every row) into out.
static void forward(tw_ctx *c, const struct tw_ctx_run *runs, int n, int32_t T, float *out,
                    bool all_logits)
{
    const struct tw_model *m = c->m;
    int64_t C = m->cfg.n_embd;
    struct tw_tensor x = rows_of(c->x, T, C);
    c->be->stream_bytes = c->weight_bytes;
    tw_embedding(c->be, &x, &m->tok_embd, c->ids);
    for (int il = 0; il < m->cfg.n_layer; il++) {
        for (int i = 0; i < n; i++) {
            c->seqs[i].k = kv_at(c, c->k, il);
            c->seqs[i].v = kv_at(c, c->v, il);
            c->seqs[i].pages = pages_of(c, runs[i].seq);
        }
        decoder_layer(c, il, T, n);
    }
    if (!out)
        return;
    int32_t nrows = all_logits ? T : n;
    struct tw_tensor xn = rows_of(c->xn, nrows, C);
    if (all_logits) {
        tw_backend_copy(c->be, c->xn, c->x, (size_t)T * (size_t)C * sizeof(float));
    } else { // each run's last row, gathered by indices (a recorded step reads them anew)
        for (int i = 0; i < n; i++)
            c->last_idx[i] = c->seqs[i].row0 + c->seqs[i].n_rows - 1;
        struct tw_tensor rows = rows_of(c->x, T, C);
        tw_embedding(c->be, &xn, &rows, c->last_idx);
    }
    struct tw_tensor lg = rows_of(out, nrows, m->cfg.n_vocab), *lgp = &lg;
    const struct tw_tensor *wout = &m->output;
    struct tw_prenorm pn = { &m->out_norm, m->cfg.norm_eps, &xn };
    tw_matmul_n(c->be, 1, &lgp, &xn, &wout, NULL, &pn);
}

// The recorded step of shape (n, T, rows): found, or made (the least recently used one
// replaced when SG_CAP are kept).
static struct step_graph *step_graph(tw_ctx *c, int n, int32_t T, int32_t rows)
{
    struct step_graph *e = NULL;
    for (int i = 0; i < c->n_sg && !e; i++)
        if (c->sg[i].n == n && c->sg[i].T == T && c->sg[i].rows == rows)
            e = &c->sg[i];
    if (!e) {
        if (c->n_sg < SG_CAP) {
            e = &c->sg[c->n_sg++];
        } else {
            e = &c->sg[0];
            for (int i = 1; i < SG_CAP; i++)
                e = c->sg[i].used < e->used ? &c->sg[i] : e;
            tw_backend_graph_free(c->be, e->g);
        }
        *e = (struct step_graph){ .n = n, .T = T, .rows = rows };
    }
    e->used = ++c->sg_clock;
    return e;
}

// A step of n runs and T rows (padded) with each run's logits, through the backend's
// recorded step when it has graphs (the hot path of generation and of the server: one launch
// instead of hundreds). Returns 0, or an error; TW_EUNSUPPORTED from the backend turns graphs
// off for this context, the step having run op by op instead.
static int forward_graph(tw_ctx *c, const struct tw_ctx_run *runs, int n, int32_t T, int32_t rows,
                         float *out)
{
    struct step_graph *e = step_graph(c, n, T, rows);
    bool record = e->seen || T == 1;
    e->seen = true;
    if (!record) {
        forward(c, runs, n, T, out, false);
        return 0;
    }
    int rc = tw_backend_graph_begin(c->be, &e->g, c->max_pages * c->page, rows);
    if (rc == 0) {
        forward(c, runs, n, T, out, false);
        rc = tw_backend_graph_end(c->be, &e->g);
    }
    if (rc == TW_EUNSUPPORTED) {
        c->no_graph = true;
        tw_error_clear();
        forward(c, runs, n, T, out, false);
        return 0;
    }
    return rc;
}

// Pads a step of n runs and T rows that has prompt rows for a recorded step: the rows to
// *T (a multiple of SG_PAD; token 0 at position 0, all stored at the scratch page, which no
// sequence reads: attention sees only the runs' rows), and *rows to a power of two at least
// the longest run. False, leaving them, when the batch has no room.
static bool pad_step(tw_ctx *c, const struct tw_ctx_run *runs, int n, int32_t *T, int32_t *rows)
{
    int32_t Tp = (*T + SG_PAD - 1) / SG_PAD * SG_PAD, r = 1;
    for (int i = 0; i < n; i++)
        while (r < runs[i].n)
            r *= 2;
    if (Tp > c->n_batch)
        return false;
    for (int32_t t = *T; t < Tp; t++)
        c->ids[t] = 0, c->pos[t] = 0, c->slots[t] = c->n_pages * c->page;
    *T = Tp, *rows = r;
    return true;
}

static int decode_step(tw_ctx *c, const struct tw_ctx_run *runs, int n, int32_t T, float *logits,
                       bool all_logits)
{
    const struct tw_model *m = c->m;
    int rc = take_pages(c, runs, n);
    if (rc != 0)
        return rc;
    c->n_steps++;
    int32_t row = 0;
    for (int i = 0; i < n; i++) {
        int32_t s = runs[i].seq, p0 = c->past[s];
        const int32_t *tab = pages_of(c, s);
        c->seqs[i] = (struct tw_attn_seq){ .row0 = row, .n_rows = runs[i].n, .n_past = p0 };
        for (int32_t t = 0; t < runs[i].n; t++) {
            int32_t p = p0 + t;
            c->pos[row + t] = p;
            c->ids[row + t] = runs[i].tokens[t];
            // the row of a layer's pool
            c->slots[row + t] = tab[p >> c->page_shift] << c->page_shift | (p & (c->page - 1));
        }
        row += runs[i].n;
    }
    int32_t nrows = all_logits ? T : n;
    float *out = logits ? logits_rows(c, logits, nrows) : NULL;
    if (logits && !out)
        return tw_error_code();
    // A recorded step: one token a run, or (several runs) with prompt rows, padded.
    int32_t Tg = T, rows = 1;
    if (c->be->ops->graph_begin && !c->no_graph && out && !all_logits &&
        (T == n || (n > 1 && pad_step(c, runs, n, &Tg, &rows))))
        rc = forward_graph(c, runs, n, Tg, rows, out);
    else
        forward(c, runs, n, T, out, all_logits);
    if (rc != 0)
        return rc;
    for (int i = 0; i < n; i++) {
        int32_t s = runs[i].seq;
        memcpy(c->tokens + (size_t)s * (size_t)c->n_ctx + c->past[s], runs[i].tokens,
               (size_t)runs[i].n * sizeof(int32_t));
        c->past[s] += runs[i].n;
    }
    c->last = out;
    c->last_rows = out ? nrows : 0;
    if (!out || out == logits || c->keep_logits)
        return 0;
    return tw_backend_download(c->be, logits, out,
                               (size_t)nrows * (size_t)m->cfg.n_vocab * sizeof(float));
}

void tw_ctx_keep_logits(tw_ctx *c, bool keep)
{
    c->keep_logits = keep;
}

bool tw_ctx_logits_on_device(const tw_ctx *c)
{
    return c->be->device != TW_DEVICE_CPU;
}

int tw_ctx_logits(tw_ctx *c, float *logits)
{
    if (!c->last)
        return tw_error_set(TW_ESTATE, "context: no step with logits yet");
    if (c->last == logits)
        return 0;
    return tw_backend_download(c->be, logits, c->last,
                               (size_t)c->last_rows * (size_t)c->m->cfg.n_vocab * sizeof(float));
}

int tw_ctx_top(tw_ctx *c, int32_t k, float *vals, int32_t *ids)
{
    if (!c->last)
        return tw_error_set(TW_ESTATE, "context: no step with logits yet");
    if (k < 1 || k > TW_TOPK_MAX || k > c->m->cfg.n_vocab)
        return tw_error_set(TW_EINVAL, "context: top %d of %d logits", k, c->m->cfg.n_vocab);
    struct tw_tensor x = rows_of(c->last, c->last_rows, c->m->cfg.n_vocab);
    tw_topk(c->be, &x, k, vals, ids);
    return tw_backend_sync(c->be);
}

static int check_decoder(const tw_ctx *c)
{
    if (!tw_arch_is_decoder(c->m->cfg.arch))
        return tw_error_set(TW_EINVAL, "%s: an encoder has no decoding", c->m->path);
    return 0;
}

int tw_ctx_decode_seq(tw_ctx *c, int32_t seq, const int32_t *tokens, int32_t n, float *logits,
                      bool all_logits)
{
    int rc = check_decoder(c);
    if (rc != 0)
        return rc;
    if (seq < 0 || seq >= c->n_seq)
        return tw_error_set(TW_EINVAL, "sequence %d is outside 0..%d", seq, c->n_seq - 1);
    if (n <= 0)
        return 0;
    if (n > c->n_ctx - c->past[seq])
        return tw_error_set(TW_ELIMIT,
                            "context full: %d cached + %d new tokens exceed the %d positions",
                            c->past[seq], n, c->n_ctx);
    if ((rc = check_ids(c, tokens, n, c->m->cfg.n_vocab, "token id")) != 0)
        return rc;
    struct tw_ctx_run all = { .seq = seq, .n = n, .tokens = tokens };
    if ((rc = take_pages(c, &all, 1)) != 0) // every step's pages first: all or nothing
        return rc;
    for (int32_t i = 0; i < n; i += c->n_batch) {
        int32_t T = n - i < c->n_batch ? n - i : c->n_batch;
        bool last = i + T == n;
        float *out = NULL;
        if (logits && all_logits)
            out = logits + (size_t)i * (size_t)c->m->cfg.n_vocab;
        else if (logits && last)
            out = logits;
        struct tw_ctx_run run = { .seq = seq, .n = T, .tokens = tokens + i };
        if ((rc = decode_step(c, &run, 1, T, out, all_logits)) != 0)
            return rc;
    }
    return 0;
}

int tw_ctx_decode(tw_ctx *c, const int32_t *tokens, int32_t n, float *logits, bool all_logits)
{
    return tw_ctx_decode_seq(c, 0, tokens, n, logits, all_logits);
}

int tw_ctx_decode_runs(tw_ctx *c, const struct tw_ctx_run *runs, int n, float *logits)
{
    int rc = check_decoder(c);
    if (rc != 0 || n <= 0)
        return rc;
    if (n > c->n_seq)
        return tw_error_set(TW_EINVAL, "%d runs in one step: the context has %d sequences", n,
                            c->n_seq);
    int64_t T = 0;
    for (int i = 0; i < n; i++) {
        int32_t s = runs[i].seq;
        if (s < 0 || s >= c->n_seq)
            return tw_error_set(TW_EINVAL, "run %d: sequence %d is outside 0..%d", i, s,
                                c->n_seq - 1);
        for (int j = 0; j < i; j++)
            if (runs[j].seq == s)
                return tw_error_set(TW_EINVAL, "runs %d and %d are both for sequence %d", j, i, s);
        if (runs[i].n <= 0)
            return tw_error_set(TW_EINVAL, "run %d has %d tokens", i, runs[i].n);
        if (runs[i].n > c->n_ctx - c->past[s])
            return tw_error_set(TW_ELIMIT,
                                "sequence %d full: %d cached + %d new tokens exceed the %d "
                                "positions",
                                s, c->past[s], runs[i].n, c->n_ctx);
        if ((rc = check_ids(c, runs[i].tokens, runs[i].n, c->m->cfg.n_vocab, "token id")) != 0)
            return rc;
        T += runs[i].n;
    }
    if (T > c->n_batch)
        return tw_error_set(TW_ELIMIT, "%lld tokens in one step exceed the batch of %d",
                            (long long)T, c->n_batch);
    return decode_step(c, runs, n, (int32_t)T, logits, false);
}

int tw_ctx_prefill(tw_ctx *c, const int32_t *tokens, int32_t n, float *logits, int32_t *reused)
{
    int32_t keep = 0;
    while (keep < c->past[0] && keep < n - 1 && c->tokens[keep] == tokens[keep])
        keep++;
    if (n > c->n_ctx)
        return tw_error_set(TW_ELIMIT, "prompt of %d tokens exceeds the context's %d positions", n,
                            c->n_ctx);
    set_past(c, 0, keep);
    int rc = tw_ctx_decode(c, tokens + keep, n - keep, logits, false);
    if (rc != 0) {
        set_past(c, 0, keep);
        return rc;
    }
    if (reused)
        *reused = keep;
    return 0;
}

int tw_ctx_perplexity(tw_ctx *c, const int32_t *tokens, int32_t n, double *nll, int32_t *count)
{
    size_t V = (size_t)c->m->cfg.n_vocab;
    int32_t chunk = c->n_ctx < 512 ? c->n_ctx : 512;
    float *logits = tw_malloc_array((size_t)chunk * V, sizeof(float));
    if (!logits)
        return tw_error_set(TW_ENOMEM, "perplexity: out of memory");
    double sum = 0;
    int32_t scored = 0;
    int rc = 0;
    for (int32_t at = 0; rc == 0 && at + 1 < n; at += chunk) {
        int32_t len = n - at < chunk ? n - at : chunk;
        set_past(c, 0, 0);
        rc = tw_ctx_decode(c, tokens + at, len, logits, true);
        for (int32_t i = 0; rc == 0 && i + 1 < len; i++) {
            const float *row = logits + (size_t)i * V;
            double mx = row[0], z = 0;
            for (size_t v = 1; v < V; v++)
                mx = row[v] > mx ? row[v] : mx;
            for (size_t v = 0; v < V; v++)
                z += exp((double)row[v] - mx);
            sum += mx + log(z) - row[tokens[at + i + 1]];
            scored++;
        }
    }
    set_past(c, 0, 0);
    tw_free(logits);
    if (rc == 0) {
        *nll = sum;
        *count = scored;
    }
    return rc;
}

// ---- encoders

// The encoder over c->seqs[0..n_seqs) packed in T rows (ids, types: T each; types may be
// NULL), hidden (T, C) in the backend's memory; each sequence attends to its own rows.
static void encode_rows(tw_ctx *c, const int32_t *ids, const int32_t *types, int32_t T, int n_seqs,
                        float *hidden)
{
    const struct tw_model *m = c->m;
    const struct tw_model_config *cfg = &m->cfg;
    struct tw_backend *be = c->be;
    int64_t C = cfg->n_embd, F = cfg->n_ff, H = cfg->n_head, hd = cfg->head_dim;
    int64_t kvd = c->kv_dim;
    struct tw_tensor x = rows_of(hidden, T, C), xn = rows_of(c->xn, T, C);
    // Embeddings: word + position (within its sequence) + token type, then LayerNorm.
    tw_embedding(be, &x, &m->tok_embd, ids);
    for (int i = 0; i < n_seqs; i++)
        for (int32_t t = 0; t < c->seqs[i].n_rows; t++)
            c->pos[c->seqs[i].row0 + t] = t;
    tw_embedding(be, &xn, &m->pos_embd, c->pos);
    tw_add(be, &x, &x, &xn);
    for (int32_t t = 0; t < T; t++)
        c->pos[t] = types ? types[t] : 0;
    tw_embedding(be, &xn, &m->type_embd, c->pos);
    tw_add(be, &x, &x, &xn);
    tw_layernorm(be, &x, &x, &m->embd_norm, &m->embd_norm_b, cfg->norm_eps);
    struct tw_tensor q = rows_of(c->q, T, H * hd), att = rows_of(c->att, T, H * hd);
    struct tw_tensor k = rows_of(c->k, T, kvd), v = rows_of(c->v, T, kvd);
    struct tw_tensor u = rows_of(c->up, T, F);
    struct tw_attn a = { .n_head = (int32_t)H,
                         .n_head_kv = cfg->n_head_kv,
                         .head_dim = (int32_t)hd,
                         .scale = 1.0f / sqrtf((float)hd),
                         .causal = false,
                         .lowp = m->layers[0].wq.dtype != TW_DTYPE_F32 };
    for (int i = 0; i < n_seqs; i++) {
        c->seqs[i].n_past = 0;
        c->seqs[i].k = c->k + (size_t)c->seqs[i].row0 * (size_t)kvd;
        c->seqs[i].v = c->v + (size_t)c->seqs[i].row0 * (size_t)kvd;
    }
    for (int il = 0; il < cfg->n_layer; il++) {
        const struct tw_layer *L = &m->layers[il];
        struct tw_tensor *sc[4] = { &q, &k, &v, &att };
        const struct tw_tensor *w4[4] = { &L->wq, &L->wk, &L->wv, &L->wo };
        const struct tw_tensor *b4[4] = { &L->bq, &L->bk, &L->bv, &L->bo };
        // Post-norm: x = LayerNorm(x + o(attention(x))), x = LayerNorm(x + down(act(up(x)))),
        // the residual added by the fused forms themselves.
        tw_self_attention_add(be, &x, &x, w4, b4, c->seqs, n_seqs, &a, sc, &xn);
        tw_layernorm(be, &x, &x, &L->attn_norm, &L->attn_norm_b, cfg->norm_eps);
        tw_mlp_add(be, &x, &x, &L->w_up, &L->b_up, cfg->act, &L->w_down, &L->b_down, &u, &xn);
        tw_layernorm(be, &x, &x, &L->ffn_norm, &L->ffn_norm_b, cfg->norm_eps);
    }
}

static int check_encoder(const tw_ctx *c)
{
    if (tw_arch_is_decoder(c->m->cfg.arch))
        return tw_error_set(TW_EINVAL, "%s: a decoder has no encoder pass", c->m->path);
    return 0;
}

int tw_ctx_encode(tw_ctx *c, const int32_t *ids, const int32_t *type_ids, int32_t n, float *hidden)
{
    const struct tw_model_config *cfg = &c->m->cfg;
    int rc = check_encoder(c);
    if (rc != 0)
        return rc;
    if (n <= 0 || n > cfg->n_ctx_train)
        return tw_error_set(TW_ELIMIT, "%d tokens: the encoder takes 1 to %d", n,
                            cfg->n_ctx_train);
    rc = check_ids(c, ids, n, cfg->n_vocab, "token id");
    if (rc == 0 && type_ids)
        rc = check_ids(c, type_ids, n, cfg->n_type_vocab, "token type");
    if (rc != 0)
        return rc;
    c->seqs[0] = (struct tw_attn_seq){ .row0 = 0, .n_rows = n };
    encode_rows(c, ids, type_ids, n, 1, hidden);
    return 0;
}

int tw_ctx_embed(tw_ctx *c, const int32_t *ids, int32_t n, float *out)
{
    return tw_ctx_embed_batch(c, &ids, &n, 1, out);
}

int tw_ctx_embed_batch(tw_ctx *c, const int32_t *const *ids, const int32_t *lens, int n,
                       float *out)
{
    const struct tw_model_config *cfg = &c->m->cfg;
    int rc = check_encoder(c);
    int64_t C = cfg->n_embd;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (lens[i] <= 0 || lens[i] > cfg->n_ctx_train)
            rc = tw_error_set(TW_ELIMIT, "%d tokens: the encoder takes 1 to %d", lens[i],
                              cfg->n_ctx_train);
        else
            rc = check_ids(c, ids[i], lens[i], cfg->n_vocab, "token id");
        if (rc != 0) // one text (tw_ctx_embed) needs no number
            return n > 1 ? tw_error_prefix("text %d", i) : rc;
    }
    // As many whole sequences a pass as the batch holds; their ids side by side in c->ids.
    for (int i0 = 0; rc == 0 && i0 < n;) {
        int32_t T = 0;
        int k = 0;
        while (i0 + k < n && T + lens[i0 + k] <= c->n_batch) {
            c->seqs[k] = (struct tw_attn_seq){ .row0 = T, .n_rows = lens[i0 + k] };
            memcpy(c->ids + T, ids[i0 + k], (size_t)lens[i0 + k] * sizeof(int32_t));
            T += lens[i0 + k++];
        }
        encode_rows(c, c->ids, NULL, T, k, c->x);
        // Each sequence pooled into row j of xn, then all of them normalised and copied out.
        struct tw_tensor ys = rows_of(c->xn, k, C), xs = rows_of(c->x, T, C);
        tw_pooling_seqs(c->be, &ys, &xs, c->seqs, k, cfg->pooling);
        if (cfg->normalize)
            tw_l2norm(c->be, &ys);
        rc = tw_backend_download(c->be, out + (size_t)i0 * (size_t)C, c->xn,
                                 (size_t)k * (size_t)C * sizeof(float));
        i0 += k;
    }
    return rc;
}

int tw_ctx_classify(tw_ctx *c, const int32_t *ids, const int32_t *type_ids, int32_t n, float *out)
{
    const struct tw_model *m = c->m;
    if (m->cfg.arch != TW_ARCH_BERT_CLS)
        return tw_error_set(TW_EINVAL, "%s: a %s has no classifier", m->path, m->arch_name);
    int rc = tw_ctx_encode(c, ids, type_ids, n, c->x);
    if (rc != 0)
        return rc;
    int64_t C = m->cfg.n_embd;
    // BertPooler: tanh(dense(h[CLS])); then the classifier's linear layer.
    struct tw_tensor cls = rows_of(c->x, 1, C), pooled = rows_of(c->xn, 1, C);
    struct tw_tensor y = rows_of(c->q, 1, m->cfg.n_labels); // in the backend's q, copied out
    tw_matmul(c->be, &pooled, &cls, &m->pooler_w, &m->pooler_b);
    tw_act(c->be, &pooled, &pooled, TW_ACT_TANH);
    tw_matmul(c->be, &y, &pooled, &m->cls_w, &m->cls_b);
    return tw_backend_download(c->be, out, c->q, (size_t)m->cfg.n_labels * sizeof(float));
}

// ---- sessions

int tw_session_open_on(const char *path, const char *device, int threads, int32_t n_ctx,
                       struct tw_session *s)
{
    memset(s, 0, sizeof *s);
    int rc = tw_model_open(path, &s->m);
    if (rc == 0)
        rc = tw_backend_open(device, threads, &s->be);
    if (rc == 0 && s->be->device != TW_DEVICE_CPU) {
        s->host = s->m;
        s->m = NULL;
        rc = tw_model_to_backend(s->host, s->be, &s->m);
    }
    struct tw_ctx_params p = { .n_ctx = n_ctx };
    if (rc == 0)
        rc = tw_ctx_new(s->m, s->be, &p, &s->c);
    if (rc)
        tw_session_close(s);
    return rc;
}

int tw_session_open(const char *path, int threads, int32_t n_ctx, struct tw_session *s)
{
    return tw_session_open_on(path, NULL, threads, n_ctx, s);
}

void tw_session_close(struct tw_session *s)
{
    tw_ctx_free(s->c);
    if (s->m)
        tw_model_close(s->m); // a backend copy goes before its backend
    if (s->be)
        tw_backend_free(s->be);
    if (s->host)
        tw_model_close(s->host);
    memset(s, 0, sizeof *s);
}

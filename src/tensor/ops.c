// The op entry points: shape checks (asserted: a mismatch is the caller's bug), then dispatch
// through the backend's table.
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/cuda.h"

#include "tensor/backend.h"

static inline bool is_f32(const struct tw_tensor *t)
{
    return t->dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(t);
}

static inline bool same_shape(const struct tw_tensor *a, const struct tw_tensor *b)
{
    return tw_tensor_nelem(a) == tw_tensor_nelem(b) && tw_tensor_ncols(a) == tw_tensor_ncols(b);
}

void tw_embedding(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *table,
                  const int32_t *ids)
{
    assert(is_f32(y) && table->ndim == 2 && tw_tensor_ncols(y) == table->ne[1]);
    be->ops->embedding(be, y, table, ids);
}

void tw_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
               const struct tw_tensor *w, const struct tw_tensor *bias)
{
    assert(is_f32(y) && is_f32(x) && w->ndim == 2);
    assert(tw_tensor_ncols(x) == w->ne[1] && tw_tensor_ncols(y) == w->ne[0]);
    assert(tw_tensor_nrows(x) == tw_tensor_nrows(y));
    assert(!bias || (is_f32(bias) && tw_tensor_nelem(bias) == w->ne[0]));
    assert(y->data != x->data);
    be->ops->matmul(be, y, x, w, bias);
}

// A prenorm's shapes against x (asserted).
static void check_prenorm(const struct tw_tensor *x, const struct tw_prenorm *pn)
{
    (void)x, (void)pn;
    assert(is_f32(pn->xn) && same_shape(pn->xn, x));
    assert(is_f32(pn->w) && tw_tensor_nelem(pn->w) == tw_tensor_ncols(x));
}

// x normalised into pn->xn for a backend that does not fold the norm: returns what the
// product reads.
static const struct tw_tensor *prenorm(struct tw_backend *be, const struct tw_tensor *x,
                                       const struct tw_prenorm *pn)
{
    tw_rmsnorm(be, pn->xn, x, pn->w, pn->eps);
    return pn->xn;
}

void tw_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                 const struct tw_tensor *x, const struct tw_tensor *const *ws,
                 const struct tw_tensor *const *biases, const struct tw_prenorm *pn)
{
    if (pn) {
        check_prenorm(x, pn);
        if (be->ops->norm_matmul_n && be->ops->norm_matmul_n(be, n, ys, x, ws, biases, pn))
            return;
        x = prenorm(be, x, pn);
    }
#ifndef NDEBUG
    for (int i = 0; i < n; i++) {
        const struct tw_tensor *w = ws[i], *bias = biases ? biases[i] : NULL;
        struct tw_tensor *y = ys[i];
        assert(is_f32(y) && is_f32(x) && w->ndim == 2);
        assert(tw_tensor_ncols(x) == w->ne[1] && tw_tensor_ncols(y) == w->ne[0]);
        assert(tw_tensor_nrows(x) == tw_tensor_nrows(y) && y->data != x->data);
        assert(!bias || (is_f32(bias) && tw_tensor_nelem(bias) == w->ne[0]));
    }
#endif
    if (be->ops->matmul_n) {
        be->ops->matmul_n(be, n, ys, x, ws, biases);
        return;
    }
    for (int i = 0; i < n; i++)
        be->ops->matmul(be, ys[i], x, ws[i], biases ? biases[i] : NULL);
}

void tw_matmul_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                   const struct tw_tensor *w, const struct tw_tensor *bias, struct tw_tensor *tmp)
{
    assert(is_f32(y) && is_f32(tmp) && same_shape(y, tmp) && y->data != x->data);
    assert(is_f32(x) && tw_tensor_ncols(x) == w->ne[1] && tw_tensor_ncols(y) == w->ne[0]);
    assert(tw_tensor_nrows(x) == tw_tensor_nrows(y));
    if (be->ops->matmul_add && be->ops->matmul_add(be, y, x, w, bias))
        return;
    tw_matmul(be, tmp, x, w, bias);
    tw_add(be, y, y, tmp);
}

void tw_matmul_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                      const struct tw_tensor *wg, const struct tw_tensor *wu,
                      struct tw_tensor *tmp, const struct tw_prenorm *pn)
{
    assert(is_f32(y) && is_f32(tmp) && same_shape(y, tmp) && same_shape(wg, wu));
    if (pn) {
        check_prenorm(x, pn);
        assert(tw_tensor_ncols(x) == wg->ne[1] && tw_tensor_ncols(y) == wg->ne[0]);
        if (be->ops->norm_matmul_swiglu && be->ops->norm_matmul_swiglu(be, y, x, wg, wu, pn))
            return;
        x = prenorm(be, x, pn);
    }
    assert(is_f32(x) && tw_tensor_ncols(x) == wg->ne[1] && tw_tensor_ncols(y) == wg->ne[0]);
    assert(tw_tensor_nrows(x) == tw_tensor_nrows(y) && y->data != x->data);
    if (be->ops->matmul_swiglu && be->ops->matmul_swiglu(be, y, x, wg, wu))
        return;
    struct tw_tensor *gu[2] = { y, tmp };
    const struct tw_tensor *w2[2] = { wg, wu };
    tw_matmul_n(be, 2, gu, x, w2, NULL, NULL);
    tw_swiglu(be, y, y, tmp);
}

void tw_mlp_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                const struct tw_tensor *wu, const struct tw_tensor *bu, enum tw_act act,
                const struct tw_tensor *wd, const struct tw_tensor *bd, struct tw_tensor *u,
                struct tw_tensor *tmp)
{
    assert(is_f32(y) && is_f32(x) && is_f32(u) && same_shape(x, y) && wu->ndim == 2);
    assert(wd->ndim == 2 && wu->ne[1] == tw_tensor_ncols(x) && wd->ne[1] == wu->ne[0]);
    assert(wd->ne[0] == tw_tensor_ncols(y) && tw_tensor_ncols(u) == wu->ne[0]);
    assert(tw_tensor_nrows(u) == tw_tensor_nrows(x));
    assert(!bu || (is_f32(bu) && tw_tensor_nelem(bu) == wu->ne[0]));
    assert(!bd || (is_f32(bd) && tw_tensor_nelem(bd) == wd->ne[0]));
    if (be->ops->mlp_add) {
        be->ops->mlp_add(be, y, x, wu, bu, act, wd, bd, u);
        return;
    }
    tw_matmul(be, u, x, wu, bu);
    tw_act(be, u, u, act);
    tw_matmul_add(be, y, u, wd, bd, tmp);
}

void tw_self_attention_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                           const struct tw_tensor *const *w, const struct tw_tensor *const *b,
                           const struct tw_attn_seq *seqs, int n, const struct tw_attn *a,
                           struct tw_tensor *const *s, struct tw_tensor *tmp)
{
    const int64_t T = tw_tensor_nrows(x), H = a->n_head, Hkv = a->n_head_kv, D = a->head_dim;
    assert(is_f32(y) && is_f32(x) && same_shape(x, y) && n >= 1);
    assert(tw_tensor_nelem(s[0]) == T * H * D && tw_tensor_nelem(s[3]) == T * H * D);
    assert(tw_tensor_nelem(s[1]) == T * Hkv * D && tw_tensor_nelem(s[2]) == T * Hkv * D);
    for (int i = 0; i < n; i++)
        assert(seqs[i].n_past == 0 && !seqs[i].pages);
    if (be->ops->self_attention_add && be->ops->self_attention_add(be, y, x, w, b, seqs, n, a, s))
        return;
    tw_matmul_n(be, 3, s, x, w, b, NULL); // (w[3], b[3]: the o product's, below)
    struct tw_tensor qh = tw_tensor_f32_3d((float *)s[0]->data, T, H, D);
    if (n == 1 && seqs[0].row0 == 0 && seqs[0].n_rows == T) { // one sequence: all the rows
        struct tw_tensor kh = tw_tensor_f32_3d((float *)s[1]->data, T, Hkv, D);
        struct tw_tensor vh = tw_tensor_f32_3d((float *)s[2]->data, T, Hkv, D);
        struct tw_attn a1 = *a;
        a1.n_past = 0;
        tw_attention(be, s[3], &qh, &kh, &vh, &a1);
    } else {
        tw_attention_seqs(be, s[3], &qh, seqs, n, a);
    }
    tw_matmul_add(be, y, s[3], w[3], b ? b[3] : NULL, tmp);
}

void tw_rmsnorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                const struct tw_tensor *w, float eps)
{
    assert(is_f32(y) && is_f32(x) && same_shape(x, y));
    assert(!w || (is_f32(w) && tw_tensor_nelem(w) == tw_tensor_ncols(x)));
    be->ops->rmsnorm(be, y, x, w, eps);
}

void tw_layernorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                  const struct tw_tensor *w, const struct tw_tensor *b, float eps)
{
    assert(is_f32(y) && is_f32(x) && same_shape(x, y));
    assert(is_f32(w) && tw_tensor_nelem(w) == tw_tensor_ncols(x));
    assert(is_f32(b) && tw_tensor_nelem(b) == tw_tensor_ncols(x));
    be->ops->layernorm(be, y, x, w, b, eps);
}

void tw_rope(struct tw_backend *be, struct tw_tensor *x, const int32_t *pos,
             const struct tw_rope *r)
{
    assert(is_f32(x) && x->ndim == 3 && x->ne[2] == r->head_dim);
    assert(r->n_rot % 2 == 0 && r->n_rot <= r->head_dim);
    be->ops->rope(be, x, pos, r);
}

void tw_attention(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                  const struct tw_tensor *k, const struct tw_tensor *v, const struct tw_attn *a)
{
    assert(is_f32(out) && is_f32(q) && is_f32(k) && is_f32(v));
    assert(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0);
    assert(q->ndim == 3 && q->ne[1] == a->n_head && q->ne[2] == a->head_dim);
    assert(k->ndim == 3 && k->ne[1] == a->n_head_kv && k->ne[2] == a->head_dim);
    assert(v->ndim == 3 && v->ne[0] == k->ne[0] && v->ne[1] == k->ne[1] && v->ne[2] == k->ne[2]);
    assert(k->ne[0] == a->n_past + q->ne[0]);
    assert(tw_tensor_nelem(out) == tw_tensor_nelem(q));
    be->ops->attention(be, out, q, k, v, a);
}

void tw_attention_seqs(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                       const struct tw_attn_seq *seqs, int n, const struct tw_attn *a)
{
    assert(is_f32(out) && is_f32(q) && q->ndim == 3 && q->ne[1] == a->n_head &&
           q->ne[2] == a->head_dim && tw_tensor_nelem(out) == tw_tensor_nelem(q));
    int64_t rows = 0, HD = (int64_t)a->n_head * a->head_dim;
    for (int i = 0; i < n; i++) {
        assert(seqs[i].row0 == rows && seqs[i].n_rows > 0);
        rows += seqs[i].n_rows;
    }
    assert(rows <= q->ne[0]); // rows past the sequences': a padded step's filler
    (void)rows;
    if (be->ops->attention_seqs && be->ops->attention_seqs(be, out, q, seqs, n, a))
        return;
    for (int i = 0; i < n; i++) {
        const struct tw_attn_seq *s = &seqs[i];
        int64_t S = (int64_t)s->n_past + s->n_rows;
        struct tw_attn ai = *a;
        ai.n_past = s->n_past;
        struct tw_tensor qi =
            tw_tensor_f32_3d((float *)q->data + s->row0 * HD, s->n_rows, a->n_head, a->head_dim);
        struct tw_tensor oi = tw_tensor_f32_2d((float *)out->data + s->row0 * HD, s->n_rows, HD);
        const float *k = s->k, *v = s->v;
        if (s->pages) { // a paged cache, in host memory: its rows gathered in order
            assert(be->device == TW_DEVICE_CPU && a->page > 0 && a->gather &&
                   S <= (int64_t)a->max_pages * a->page);
            size_t row = (size_t)a->n_head_kv * (size_t)a->head_dim;
            float *kv = a->gather;
            for (int64_t j = 0; j < S; j += a->page) {
                size_t at = (size_t)s->pages[j / a->page] * (size_t)a->page * row;
                size_t m = (size_t)(S - j < a->page ? S - j : a->page) * row;
                memcpy(kv + (size_t)j * row, s->k + at, m * sizeof(float));
                memcpy(kv + ((size_t)S + (size_t)j) * row, s->v + at, m * sizeof(float));
            }
            k = kv, v = kv + (size_t)S * row;
        }
        struct tw_tensor ki = tw_tensor_f32_3d((float *)k, S, a->n_head_kv, a->head_dim);
        struct tw_tensor vi = tw_tensor_f32_3d((float *)v, S, a->n_head_kv, a->head_dim);
        tw_attention(be, &oi, &qi, &ki, &vi, &ai);
    }
}

void tw_softmax(struct tw_backend *be, struct tw_tensor *x)
{
    assert(is_f32(x));
    be->ops->softmax(be, x);
}

void tw_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *gate,
               const struct tw_tensor *up)
{
    assert(is_f32(y) && is_f32(gate) && is_f32(up));
    assert(same_shape(y, gate) && same_shape(y, up));
    be->ops->swiglu(be, y, gate, up);
}

void tw_act(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x, enum tw_act act)
{
    assert(is_f32(y) && is_f32(x) && same_shape(x, y));
    be->ops->act(be, y, x, act);
}

void tw_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *a,
            const struct tw_tensor *b)
{
    assert(is_f32(y) && is_f32(a) && is_f32(b) && same_shape(y, a) && same_shape(y, b));
    be->ops->add(be, y, a, b);
}

void tw_pooling(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                enum tw_pooling mode)
{
    assert(is_f32(y) && is_f32(x) && tw_tensor_nelem(y) == tw_tensor_ncols(x));
    assert(tw_tensor_nrows(x) > 0);
    be->ops->pool(be, y, x, mode);
}

void tw_pooling_seqs(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                     const struct tw_attn_seq *seqs, int n, enum tw_pooling mode)
{
    int64_t C = tw_tensor_ncols(x);
    assert(is_f32(y) && is_f32(x) && tw_tensor_nrows(y) == n && tw_tensor_ncols(y) == C);
    for (int i = 0; i < n; i++)
        assert(seqs[i].n_rows > 0 && seqs[i].row0 >= 0 &&
               seqs[i].row0 + seqs[i].n_rows <= tw_tensor_nrows(x));
    if (be->ops->pool_seqs) {
        be->ops->pool_seqs(be, y, x, seqs, n, mode);
        return;
    }
    for (int i = 0; i < n; i++) {
        struct tw_tensor xs = tw_tensor_f32_2d((float *)x->data + (size_t)seqs[i].row0 * (size_t)C,
                                               seqs[i].n_rows, C);
        struct tw_tensor yi = tw_tensor_f32_1d((float *)y->data + (size_t)i * (size_t)C, C);
        xs.device = yi.device = x->device;
        be->ops->pool(be, &yi, &xs, mode);
    }
}

void tw_l2norm(struct tw_backend *be, struct tw_tensor *x)
{
    assert(is_f32(x));
    be->ops->l2norm(be, x);
}

void tw_backend_free(struct tw_backend *be)
{
    if (be && be->ops->free)
        be->ops->free(be);
}

void *tw_backend_alloc(struct tw_backend *be, size_t bytes)
{
    if (be->ops->alloc)
        return be->ops->alloc(be, bytes);
    void *p = tw_malloc(bytes ? bytes : 1);
    if (!p)
        tw_error_set(TW_ENOMEM, "out of memory (%zu bytes)", bytes);
    return p;
}

void tw_backend_release(struct tw_backend *be, void *p)
{
    if (be->ops->release)
        be->ops->release(be, p);
    else
        tw_free(p);
}

int tw_backend_upload(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    if (be->ops->upload)
        return be->ops->upload(be, dst, src, n);
    memcpy(dst, src, n);
    return 0;
}

int tw_backend_download(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    if (be->ops->download)
        return be->ops->download(be, dst, src, n);
    memcpy(dst, src, n);
    return 0;
}

void tw_backend_copy(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    if (be->ops->copy)
        be->ops->copy(be, dst, src, n);
    else
        memmove(dst, src, n);
}

int tw_backend_sync(struct tw_backend *be)
{
    return be->ops->sync ? be->ops->sync(be) : 0;
}

int tw_backend_tensor_upload(struct tw_backend *be, const struct tw_tensor *t,
                             struct tw_tensor *dev)
{
    assert(tw_tensor_is_contiguous(t));
    size_t bytes = tw_tensor_nbytes(t);
    void *p = tw_backend_alloc(be, bytes);
    if (!p)
        return tw_error_code() ? tw_error_code() : TW_ENOMEM;
    int rc = tw_backend_upload(be, p, t->data, bytes);
    if (rc != 0) {
        tw_backend_release(be, p);
        return rc;
    }
    *dev = *t;
    dev->data = p;
    dev->device = be->device;
    return 0;
}

void tw_set_rows(struct tw_backend *be, float *dst, const struct tw_tensor *src,
                 const int32_t *rows)
{
    assert(is_f32(src));
    be->ops->set_rows(be, dst, src, rows);
}

void tw_rope_store(struct tw_backend *be, struct tw_tensor *q, struct tw_tensor *k,
                   const struct tw_tensor *v, const int32_t *pos, const struct tw_rope *r,
                   float *k_cache, float *v_cache, const int32_t *rows)
{
    assert(is_f32(q) && is_f32(k) && is_f32(v) && q->ndim == 3 && k->ndim == 3);
    assert(q->ne[0] == k->ne[0] && q->ne[2] == r->head_dim && k->ne[2] == r->head_dim);
    assert(tw_tensor_nelem(v) == tw_tensor_nelem(k) && tw_tensor_nrows(v) == k->ne[0]);
    assert(r->n_rot % 2 == 0 && r->n_rot <= r->head_dim);
    if (be->ops->rope_store) {
        be->ops->rope_store(be, q, k, v, pos, r, k_cache, v_cache, rows);
        return;
    }
    tw_rope(be, q, pos, r);
    tw_rope(be, k, pos, r);
    struct tw_tensor krows = tw_tensor_f32_2d(k->data, k->ne[0], k->ne[1] * k->ne[2]);
    tw_set_rows(be, k_cache, &krows, rows);
    tw_set_rows(be, v_cache, v, rows);
}

void tw_topk(struct tw_backend *be, const struct tw_tensor *x, int32_t k, float *vals,
             int32_t *ids)
{
    assert(is_f32(x) && k >= 1 && k <= TW_TOPK_MAX && k <= tw_tensor_ncols(x));
    be->ops->topk(be, x, k, vals, ids);
}

int tw_backend_graph_begin(struct tw_backend *be, void **graph, int32_t kv_bound,
                           int32_t rows_bound)
{
    if (!be->ops->graph_begin)
        return tw_error_set(TW_EUNSUPPORTED, "%s backend: no graphs", be->ops->name);
    return be->ops->graph_begin(be, graph, kv_bound, rows_bound);
}

int tw_backend_graph_end(struct tw_backend *be, void **graph)
{
    return be->ops->graph_end ? be->ops->graph_end(be, graph) : TW_EUNSUPPORTED;
}

void tw_backend_graph_free(struct tw_backend *be, void *graph)
{
    if (graph && be->ops->graph_free)
        be->ops->graph_free(be, graph);
}

bool tw_device_name_parse(const char *s, enum tw_device_choice *choice, int *gpu)
{
    char tail;
    *gpu = 0;
    if (!s)
        return false;
    *choice = strcmp(s, "cpu") == 0    ? TW_CHOOSE_CPU
              : strcmp(s, "auto") == 0 ? TW_CHOOSE_AUTO
                                       : TW_CHOOSE_CUDA;
    return *choice != TW_CHOOSE_CUDA || strcmp(s, "cuda") == 0 ||
           (sscanf(s, "cuda:%d%c", gpu, &tail) == 1 && *gpu >= 0);
}

int tw_backend_open(const char *device, int threads, struct tw_backend **out)
{
    if (!device)
        device = getenv("TWIN_DEVICE");
    if (!device || !*device)
        device = "auto";
    enum tw_device_choice choice;
    int gpu;
    if (!tw_device_name_parse(device, &choice, &gpu))
        return tw_error_set(TW_EINVAL, "device '%s': expected cpu, cuda, cuda:N or auto", device);
    if (choice == TW_CHOOSE_AUTO)
        choice = tw_cuda_device_count() > 0 ? TW_CHOOSE_CUDA : TW_CHOOSE_CPU;
    return choice == TW_CHOOSE_CPU ? tw_backend_cpu_new(threads, out)
                                   : tw_backend_cuda_new(gpu, out);
}

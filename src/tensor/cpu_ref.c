// The reference backend: every op in plain C on one thread, sums in double. It defines what
// each op computes; the fast CPU backend and the CUDA backend are tested against it.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "base/mem.h"
#include "tensor/backend.h"
#include "tensor/cpu_int.h"

static float *f32(const struct tw_tensor *t)
{
    return (float *)t->data;
}

static void ref_embedding(struct tw_backend *be, struct tw_tensor *y,
                          const struct tw_tensor *table, const int32_t *ids)
{
    int64_t T = tw_tensor_nrows(y), C = tw_tensor_ncols(y);
    for (int64_t t = 0; t < T; t++) {
        assert(ids[t] >= 0 && ids[t] < table->ne[0]);
        tw_dequantize_row(table->dtype, tw_tensor_row(table, ids[t]), f32(y) + t * C, (size_t)C);
    }
}

static void ref_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                       const struct tw_tensor *w, const struct tw_tensor *bias)
{
    int64_t T = tw_tensor_nrows(x), K = w->ne[1], N = w->ne[0];
    for (int64_t t = 0; t < T; t++) {
        const float *xt = f32(x) + t * K;
        float *yt = f32(y) + t * N;
        for (int64_t n = 0; n < N; n++) {
            float s = tw_vec_dot_row(w->dtype, tw_tensor_row(w, n), xt, (size_t)K);
            yt[n] = bias ? s + f32(bias)[n] : s;
        }
    }
}

static void ref_rmsnorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, float eps)
{
    int64_t R = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    for (int64_t r = 0; r < R; r++) {
        const float *xr = f32(x) + r * C;
        float *yr = f32(y) + r * C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++)
            ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)C + eps));
        for (int64_t i = 0; i < C; i++)
            yr[i] = xr[i] * inv * (w ? f32(w)[i] : 1.0f);
    }
}

static void ref_layernorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                          const struct tw_tensor *w, const struct tw_tensor *b, float eps)
{
    int64_t R = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    for (int64_t r = 0; r < R; r++) {
        const float *xr = f32(x) + r * C;
        float *yr = f32(y) + r * C;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < C; i++)
            mean += xr[i];
        mean /= (double)C;
        for (int64_t i = 0; i < C; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= (double)C;
        double inv = 1.0 / sqrt(var + eps);
        for (int64_t i = 0; i < C; i++)
            yr[i] = (float)((xr[i] - mean) * inv) * f32(w)[i] + f32(b)[i];
    }
}

static void ref_rope(struct tw_backend *be, struct tw_tensor *x, const int32_t *pos,
                     const struct tw_rope *r)
{
    int64_t T = x->ne[0], H = x->ne[1], D = x->ne[2];
    int32_t half = r->n_rot / 2;
    for (int64_t t = 0; t < T; t++) {
        for (int32_t i = 0; i < half; i++) {
            // The angle in f32 as transformers forms it (position times frequency).
            float ang = (float)pos[t] * r->inv_freq[i];
            float c = (float)cos((double)ang), s = (float)sin((double)ang);
            for (int64_t h = 0; h < H; h++) {
                float *v = f32(x) + (t * H + h) * D;
                int32_t i0 = r->neox ? i : 2 * i, i1 = r->neox ? i + half : 2 * i + 1;
                float a = v[i0], b = v[i1];
                v[i0] = a * c - b * s;
                v[i1] = b * c + a * s;
            }
        }
    }
}

// One query row against keys [lo, hi): softmax(q k^T * scale) v into out.
static void attend_row(const float *q, const struct tw_tensor *k, const struct tw_tensor *v,
                       int64_t kvh, int64_t lo, int64_t hi, const struct tw_attn *a,
                       double *scores, float *out)
{
    int64_t D = a->head_dim, Hkv = a->n_head_kv;
    double mx = -INFINITY;
    for (int64_t j = lo; j < hi; j++) {
        const float *kj = f32(k) + (j * Hkv + kvh) * D;
        double s = 0;
        for (int64_t d = 0; d < D; d++)
            s += (double)q[d] * kj[d];
        scores[j - lo] = s * a->scale;
        if (scores[j - lo] > mx)
            mx = scores[j - lo];
    }
    double sum = 0;
    for (int64_t j = lo; j < hi; j++) {
        scores[j - lo] = exp(scores[j - lo] - mx);
        sum += scores[j - lo];
    }
    for (int64_t d = 0; d < D; d++) {
        double acc = 0;
        for (int64_t j = lo; j < hi; j++)
            acc += scores[j - lo] * f32(v)[(j * Hkv + kvh) * D + d];
        out[d] = (float)(acc / sum);
    }
}

void tw_attn_range(const struct tw_attn *a, int64_t p, int64_t S, int64_t *lo, int64_t *hi)
{
    *hi = a->causal ? p + 1 : S;
    *lo = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
}

static void ref_attention(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                          const struct tw_tensor *k, const struct tw_tensor *v,
                          const struct tw_attn *a)
{
    int64_t T = q->ne[0], H = a->n_head, D = a->head_dim, S = k->ne[0];
    int64_t group = H / a->n_head_kv;
    double *scores = tw_malloc((size_t)S * sizeof *scores);
    assert(scores); // the reference backend is for tests: small shapes
    for (int64_t t = 0; t < T; t++) {
        int64_t lo, hi;
        tw_attn_range(a, a->n_past + t, S, &lo, &hi);
        for (int64_t h = 0; h < H; h++)
            attend_row(f32(q) + (t * H + h) * D, k, v, h / group, lo, hi, a, scores,
                       f32(out) + (t * H + h) * D);
    }
    tw_free(scores);
}

static void ref_softmax(struct tw_backend *be, struct tw_tensor *x)
{
    int64_t R = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    for (int64_t r = 0; r < R; r++) {
        float *xr = f32(x) + r * C;
        float mx = -INFINITY;
        for (int64_t i = 0; i < C; i++)
            mx = xr[i] > mx ? xr[i] : mx;
        double sum = 0;
        for (int64_t i = 0; i < C; i++)
            sum += exp((double)xr[i] - mx);
        for (int64_t i = 0; i < C; i++)
            xr[i] = (float)(exp((double)xr[i] - mx) / sum);
    }
}

static void ref_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *gate,
                       const struct tw_tensor *up)
{
    int64_t n = tw_tensor_nelem(y);
    for (int64_t i = 0; i < n; i++) {
        double g = f32(gate)[i];
        f32(y)[i] = (float)(g / (1.0 + exp(-g)) * f32(up)[i]);
    }
}

float tw_act_ref(enum tw_act act, float x)
{
    double v = x;
    switch (act) {
    case TW_ACT_GELU:
        return (float)(0.5 * v * (1.0 + erf(v / sqrt(2.0))));
    case TW_ACT_GELU_TANH:
        return (float)(0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
    case TW_ACT_SILU:
        return (float)(v / (1.0 + exp(-v)));
    case TW_ACT_TANH:
        return (float)tanh(v);
    case TW_ACT_RELU:
        return x > 0 ? x : 0;
    }
    return x;
}

static void ref_act(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                    enum tw_act act)
{
    int64_t n = tw_tensor_nelem(y);
    for (int64_t i = 0; i < n; i++)
        f32(y)[i] = tw_act_ref(act, f32(x)[i]);
}

static void ref_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *a,
                    const struct tw_tensor *b)
{
    int64_t n = tw_tensor_nelem(y);
    for (int64_t i = 0; i < n; i++)
        f32(y)[i] = f32(a)[i] + f32(b)[i];
}

static void ref_pool(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                     enum tw_pooling mode)
{
    int64_t T = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    const float *xs = f32(x);
    for (int64_t c = 0; c < C; c++) {
        double acc = mode == TW_POOL_MAX ? -INFINITY : 0;
        switch (mode) {
        case TW_POOL_MEAN:
            for (int64_t t = 0; t < T; t++)
                acc += xs[t * C + c];
            acc /= (double)T;
            break;
        case TW_POOL_MAX:
            for (int64_t t = 0; t < T; t++)
                acc = xs[t * C + c] > acc ? xs[t * C + c] : acc;
            break;
        case TW_POOL_CLS:
            acc = xs[c];
            break;
        case TW_POOL_LAST:
            acc = xs[(T - 1) * C + c];
            break;
        }
        f32(y)[c] = (float)acc;
    }
}

static void ref_l2norm(struct tw_backend *be, struct tw_tensor *x)
{
    int64_t R = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    for (int64_t r = 0; r < R; r++) {
        float *xr = f32(x) + r * C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++)
            ss += (double)xr[i] * xr[i];
        // sentence-transformers' Normalize: x / max(||x||, 1e-12) (torch's F.normalize).
        double n = sqrt(ss) > 1e-12 ? sqrt(ss) : 1e-12;
        for (int64_t i = 0; i < C; i++)
            xr[i] = (float)(xr[i] / n);
    }
}

static void ref_set_rows(struct tw_backend *be, float *dst, const struct tw_tensor *src,
                         const int32_t *rows)
{
    int64_t T = tw_tensor_nrows(src), C = tw_tensor_ncols(src);
    for (int64_t t = 0; t < T; t++)
        memcpy(dst + (size_t)rows[t] * (size_t)C, f32(src) + t * C, (size_t)C * sizeof(float));
}

// Each row in one pass, the k best so far kept sorted: a value enters only when it beats the
// k-th (strictly: an equal one has a higher id), and moves up past the smaller ones.
static void ref_topk(struct tw_backend *be, const struct tw_tensor *x, int32_t k, float *vals,
                     int32_t *ids)
{
    int64_t R = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    for (int64_t r = 0; r < R; r++) {
        const float *xr = f32(x) + r * C;
        float *v = vals + r * k;
        int32_t *d = ids + r * k, m = 0;
        for (int64_t i = 0; i < C; i++) {
            float a = isnan(xr[i]) ? -INFINITY : xr[i];
            if (m == k && !(a > v[k - 1]))
                continue;
            int32_t j = m < k ? m++ : k - 1;
            for (; j > 0 && v[j - 1] < a; j--) {
                v[j] = v[j - 1];
                d[j] = d[j - 1];
            }
            v[j] = a;
            d[j] = (int32_t)i;
        }
    }
}

const struct tw_backend_ops tw_cpu_ref_ops = {
    .name = "cpu_ref",
    .free = NULL,
    .embedding = ref_embedding,
    .matmul = ref_matmul,
    .rmsnorm = ref_rmsnorm,
    .layernorm = ref_layernorm,
    .rope = ref_rope,
    .attention = ref_attention,
    .softmax = ref_softmax,
    .swiglu = ref_swiglu,
    .act = ref_act,
    .add = ref_add,
    .pool = ref_pool,
    .l2norm = ref_l2norm,
    .set_rows = ref_set_rows,
    .topk = ref_topk,
};

static struct tw_backend cpu_ref = {
    .ops = &tw_cpu_ref_ops, .device = TW_DEVICE_CPU, .n_threads = 1, .impl = NULL
};

struct tw_backend *tw_backend_cpu_ref(void)
{
    return &cpu_ref;
}

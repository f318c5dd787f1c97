// Implements grad.h. The derivations, for the reader checking a backward:
//   RMSNorm  y_i = w_i x_i r, r = (mean(x^2) + eps)^(-1/2):
//            dx_i = r w_i dy_i - x_i r^3 / C * sum_c dy_c w_c x_c,  dw_i = sum_t dy_i x_i r.
//   softmax attention with p_j = exp(s_j - lse), s_j = scale q.k_j, o = sum_j p_j v_j:
//            dv_j += p_j do;  ds_j = p_j (do.v_j - do.o);  dq += scale sum_j ds_j k_j;
//            dk_j += scale ds_j q (FlashAttention's backward, with lse kept from the forward).
//   SwiGLU   h = g s(g) u:  dg = dh u s (1 + g (1 - s)),  du = dh g s.
//   linear   y = x W^T + b:  dx = dy W,  dW = dy^T x,  db = sum_t dy.
//   log-softmax  d logp[target] / d logit_j = [j == target] - p_j.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "base/error.h"
#include "base/map.h"
#include "base/mem.h"
#include "tensor/dtype.h"
#include "tensor/grad.h"

// Floats of dequantised weights per thread's tile.
#define TILE_FLOATS (1u << 19)

void tw_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                    float eps)
{
#pragma omp parallel for schedule(static) if (N * C >= 4096)
    for (int64_t t = 0; t < N; t++) {
        const float *xr = x + t * C;
        float *yr = y + t * C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++)
            ss += (double)xr[i] * xr[i];
        float r = (float)(1.0 / sqrt(ss / (double)C + eps));
        rstd[t] = r;
        for (int64_t i = 0; i < C; i++)
            yr[i] = xr[i] * r * (w ? w[i] : 1.0f);
    }
}

void tw_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                    const float *rstd, int64_t N, int64_t C)
{
#pragma omp parallel for schedule(static) if (N * C >= 4096)
    for (int64_t t = 0; t < N; t++) {
        const float *xr = x + t * C, *gr = dy + t * C;
        float *dr = dx + t * C, r = rstd[t];
        double dot = 0;
        for (int64_t i = 0; i < C; i++)
            dot += (double)gr[i] * (w ? w[i] : 1.0f) * xr[i];
        float k = (float)(dot * r * r * r / (double)C);
        for (int64_t i = 0; i < C; i++)
            dr[i] += r * (w ? w[i] : 1.0f) * gr[i] - xr[i] * k;
    }
    if (!dw)
        return;
#pragma omp parallel for schedule(static) if (N * C >= 4096)
    for (int64_t i = 0; i < C; i++) {
        double s = 0;
        for (int64_t t = 0; t < N; t++)
            s += (double)dy[t * C + i] * x[t * C + i] * rstd[t];
        dw[i] += (float)s;
    }
}

// The keys [*lo, t] that row-local query t sees.
static inline int64_t attn_lo(const struct tw_attn_shape *s, const int32_t *start_row, int64_t t)
{
    int64_t lo = start_row[t];
    if (s->window > 0 && t - s->window + 1 > lo)
        lo = t - s->window + 1;
    return lo;
}

static inline float dotf(const float *a, const float *b, int64_t n)
{
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void tw_attn_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                 const int32_t *start, const struct tw_attn_shape *s)
{
    int64_t B = s->B, T = s->T, H = s->H, Hkv = s->Hkv, D = s->D, G = H / Hkv;
    // An online softmax per query row (no scores kept): the running maximum m rescales the
    // sum and the output when it grows.
#pragma omp parallel for collapse(3) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t n = b * T + t, lo = attn_lo(s, start + b * T, t), kvh = h / G;
                const float *qt = q + (n * H + h) * D;
                float *o = out + (n * H + h) * D, m = -INFINITY;
                double sum = 0;
                memset(o, 0, (size_t)D * sizeof(float));
                for (int64_t j = lo; j <= t; j++) {
                    int64_t kj = ((b * T + j) * Hkv + kvh) * D;
                    float sj = s->scale * dotf(qt, k + kj, D);
                    if (sj > m) {
                        float c = expf(m - sj);
                        sum *= c;
                        for (int64_t d = 0; d < D; d++)
                            o[d] *= c;
                        m = sj;
                    }
                    float pj = expf(sj - m);
                    sum += pj;
                    for (int64_t d = 0; d < D; d++)
                        o[d] += pj * v[kj + d];
                }
                float inv = (float)(1.0 / sum);
                for (int64_t d = 0; d < D; d++)
                    o[d] *= inv;
                lse[n * H + h] = m + (float)log(sum);
            }
}

// With s->assign, dq, dk and dv zeroed (the backward then adds into them).
static void attn_assign(float *dq, float *dk, float *dv, const struct tw_attn_shape *s)
{
    if (!s->assign)
        return;
    size_t nq = (size_t)(s->B * s->T * s->H * s->D), nk = (size_t)(s->B * s->T * s->Hkv * s->D);
    memset(dq, 0, nq * sizeof(float));
    memset(dk, 0, nk * sizeof(float));
    memset(dv, 0, nk * sizeof(float));
}

void tw_attn_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *q,
                     const float *k, const float *v, const float *out, const float *lse,
                     const int32_t *start, const struct tw_attn_shape *s)
{
    int64_t B = s->B, T = s->T, H = s->H, Hkv = s->Hkv, D = s->D, G = H / Hkv;
    attn_assign(dq, dk, dv, s);
    // One thread per (row, KV head): the query heads that share the KV head write its dk, dv.
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kvh = 0; kvh < Hkv; kvh++) {
            const int32_t *st = start + b * T;
            for (int64_t h = kvh * G; h < (kvh + 1) * G; h++)
                for (int64_t t = 0; t < T; t++) {
                    int64_t n = b * T + t, lo = attn_lo(s, st, t);
                    const float *qt = q + (n * H + h) * D, *go = dout + (n * H + h) * D;
                    float *gq = dq + (n * H + h) * D, l = lse[n * H + h];
                    float di = dotf(go, out + (n * H + h) * D, D);
                    for (int64_t j = lo; j <= t; j++) {
                        int64_t kj = ((b * T + j) * Hkv + kvh) * D;
                        float pj = expf(s->scale * dotf(qt, k + kj, D) - l);
                        float ds = pj * (dotf(go, v + kj, D) - di) * s->scale;
                        for (int64_t d = 0; d < D; d++) {
                            dv[kj + d] += pj * go[d];
                            gq[d] += ds * k[kj + d];
                            dk[kj + d] += ds * qt[d];
                        }
                    }
                }
        }
}

// Rows up to which the backward forms a head's (T, T) scores with GEMMs (two such matrices a
// thread); longer rows take the reference loops.
#define ATTN_GEMM_MAX_T 2048

void tw_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                 const float *k, const float *v, const float *out, const float *lse,
                 const int32_t *start, const struct tw_attn_shape *s)
{
    int64_t B = s->B, T = s->T, H = s->H, Hkv = s->Hkv, D = s->D, G = H / Hkv;
    int nt = omp_get_max_threads();
    float *scratch = T <= ATTN_GEMM_MAX_T
                         ? tw_malloc_array((size_t)nt * 2, (size_t)(T * T) * sizeof(float))
                         : NULL;
    if (!scratch) {
        tw_attn_bwd_ref(dq, dk, dv, dout, q, k, v, out, lse, start, s);
        return;
    }
    attn_assign(dq, dk, dv, s);
    int qs = (int)(H * D), ks = (int)(Hkv * D); // row strides of q / out and of k / v
    // One thread per (row, KV head), as the reference: per query head, the scores as GEMMs:
    // P = exp(scale Q K^T - lse) under the mask, dP = dO V^T, dS = P (dP - rowsum(dO O)) scale,
    // then dQ += dS K, dK += dS^T Q, dV += P^T dO.
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nt)
    for (int64_t b = 0; b < B; b++)
        for (int64_t kvh = 0; kvh < Hkv; kvh++) {
            float *P = scratch + (size_t)omp_get_thread_num() * 2 * (size_t)(T * T);
            float *dP = P + T * T;
            const int32_t *st = start + b * T;
            const float *kb = k + (b * T * Hkv + kvh) * D, *vb = v + (b * T * Hkv + kvh) * D;
            for (int64_t h = kvh * G; h < (kvh + 1) * G; h++) {
                const float *qb = q + (b * T * H + h) * D, *gob = dout + (b * T * H + h) * D;
                const float *ob = out + (b * T * H + h) * D;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)D,
                            s->scale, qb, qs, kb, ks, 0.0f, P, (int)T);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)D, 1.0f,
                            gob, qs, vb, ks, 0.0f, dP, (int)T);
                for (int64_t t = 0; t < T; t++) {
                    int64_t lo = attn_lo(s, st, t), n = b * T + t;
                    float l = lse[n * H + h], di = dotf(gob + t * qs, ob + t * qs, D);
                    float *pr = P + t * T, *dr = dP + t * T;
                    for (int64_t j = 0; j < T; j++) {
                        float p = j >= lo && j <= t ? expf(pr[j] - l) : 0.0f;
                        pr[j] = p;
                        dr[j] = p * (dr[j] - di) * s->scale;
                    }
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)D, (int)T,
                            1.0f, dP, (int)T, kb, ks, 1.0f, dq + (b * T * H + h) * D, qs);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)D, (int)T, 1.0f,
                            dP, (int)T, qb, qs, 1.0f, dk + (b * T * Hkv + kvh) * D, ks);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)D, (int)T, 1.0f,
                            P, (int)T, gob, qs, 1.0f, dv + (b * T * Hkv + kvh) * D, ks);
            }
        }
    tw_free(scratch);
}

static inline float sigmoidf(float g)
{
    return 1.0f / (1.0f + expf(-g));
}

void tw_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                   int64_t n)
{
#pragma omp parallel for schedule(static) if (n >= 16384)
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(g[i]);
        dg[i] = dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] = dh[i] * g[i] * s;
    }
}

// The calling OpenMP thread's share [*lo, *hi) of n items, in multiples of align.
static void thread_slice(int64_t n, int64_t align, int64_t *lo, int64_t *hi)
{
    int id = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t per = (n + nt - 1) / nt;
    per = (per + align - 1) / align * align;
    *lo = (int64_t)id * per < n ? (int64_t)id * per : n;
    *hi = *lo + per < n ? *lo + per : n;
}

// Rows r0 .. r0 + nr - 1 of w as f32: the rows themselves when w is contiguous f32, else
// dequantised into tile.
static const float *w_rows(const struct tw_tensor *w, int64_t r0, int64_t nr, float *tile)
{
    int64_t K = w->ne[1];
    if (w->dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(w))
        return (const float *)tw_tensor_row(w, r0);
    for (int64_t r = 0; r < nr; r++)
        tw_dequantize_row(w->dtype, tw_tensor_row(w, r0 + r), tile + r * K, (size_t)K);
    return tile;
}

// Tiles for every thread when w needs dequantising (else NULL, and *ok true), of *rows rows.
static float *tiles_for(const struct tw_tensor *w, int64_t *rows, int nt, bool *ok)
{
    int64_t K = w->ne[1];
    *rows = (int64_t)TILE_FLOATS / K > 0 ? (int64_t)TILE_FLOATS / K : 1;
    *ok = true;
    if (w->dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(w))
        return NULL;
    float *t = tw_malloc_array((size_t)nt, (size_t)(*rows * K) * sizeof(float));
    if (!t)
        *ok = tw_error_set(TW_ENOMEM, "out of memory for weight tiles") == 0;
    return t;
}

int tw_linear_fwd(float *y, const float *x, const struct tw_tensor *w, const float *b, int64_t N)
{
    int64_t K = w->ne[1], M = w->ne[0], rows;
    int nt = omp_get_max_threads();
    bool ok;
    float *tiles = tiles_for(w, &rows, nt, &ok);
    if (!ok)
        return TW_ENOMEM;
        // Each thread takes a slice of the output columns (weight rows) and its tiles.
#pragma omp parallel num_threads(nt)
    {
        int64_t m0, m1;
        thread_slice(M, 16, &m0, &m1);
        float *tile = tiles ? tiles + (size_t)omp_get_thread_num() * (size_t)(rows * K) : NULL;
        for (int64_t r0 = m0; r0 < m1; r0 += rows) {
            int64_t nr = m1 - r0 < rows ? m1 - r0 : rows;
            const float *wt = w_rows(w, r0, nr, tile);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)nr, (int)K, 1.0f, x,
                        (int)K, wt, (int)K, 0.0f, y + r0, (int)M);
            if (b)
                for (int64_t t = 0; t < N; t++)
                    for (int64_t m = r0; m < r0 + nr; m++)
                        y[t * M + m] += b[m];
        }
    }
    tw_free(tiles);
    return 0;
}

int tw_linear_bwd(float *dx, bool add, float *dw, float *db, const float *dy, const float *x,
                  const struct tw_tensor *w, int64_t N)
{
    int64_t K = w->ne[1], M = w->ne[0];
    bool direct = w->dtype == TW_DTYPE_F32 && tw_tensor_is_contiguous(w);
    if (dx) {
        // dx (+)= dy W a tile of W's rows at a time; the threads share out the token rows.
        int64_t rows = M;
        float *tile = NULL;
        if (!direct) {
            bool ok;
            tile = tiles_for(w, &rows, 1, &ok);
            if (!ok)
                return TW_ENOMEM;
        }
        for (int64_t r0 = 0; r0 < M; r0 += rows) {
            int64_t nr = M - r0 < rows ? M - r0 : rows;
            const float *wt = direct ? (const float *)tw_tensor_row(w, r0) : tile;
            if (!direct) {
#pragma omp parallel for schedule(static)
                for (int64_t r = 0; r < nr; r++)
                    tw_dequantize_row(w->dtype, tw_tensor_row(w, r0 + r), tile + r * K, (size_t)K);
            }
#pragma omp parallel
            {
                int64_t t0, t1;
                thread_slice(N, 1, &t0, &t1);
                if (t0 < t1)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(t1 - t0), (int)K,
                                (int)nr, 1.0f, dy + t0 * M + r0, (int)M, wt, (int)K,
                                add || r0 > 0 ? 1.0f : 0.0f, dx + t0 * K, (int)K);
            }
        }
        tw_free(tile);
    }
    if (dw) {
#pragma omp parallel
        {
            int64_t m0, m1;
            thread_slice(M, 1, &m0, &m1);
            if (m0 < m1)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(m1 - m0), (int)K,
                            (int)N, 1.0f, dy + m0, (int)M, x, (int)K, 1.0f, dw + m0 * K, (int)K);
        }
    }
    if (db) {
#pragma omp parallel for schedule(static) if (N * M >= 4096)
        for (int64_t m = 0; m < M; m++) {
            double s = 0;
            for (int64_t t = 0; t < N; t++)
                s += dy[t * M + m];
            db[m] += (float)s;
        }
    }
    return 0;
}

int tw_lm_head_logp(const float *x, const struct tw_tensor *w, const int32_t *targets, int64_t N,
                    float *logp, const float *coef, float *dx, float *dw, double *sum)
{
    int64_t V = w->ne[0], C = w->ne[1];
    int64_t R = (int64_t)(8u << 20) / V; // rows of logits per chunk: 32 MiB of floats
    R = R < 16 ? 16 : R > N ? N : R;
    float *lg = tw_malloc_array((size_t)(R * V), sizeof(float));
    if (!lg)
        return tw_error_set(TW_ENOMEM, "out of memory for %lld rows of logits", (long long)R);
    double total = 0;
    for (int64_t r0 = 0; r0 < N; r0 += R) {
        int64_t nr = N - r0 < R ? N - r0 : R;
        bool any = false;
        for (int64_t t = r0; t < r0 + nr; t++)
            any |= targets[t] >= 0;
        if (!any) {
            for (int64_t t = r0; t < r0 + nr; t++)
                logp[t] = 0;
            continue;
        }
        int rc = tw_linear_fwd(lg, x + r0 * C, w, NULL, nr);
        if (rc) {
            tw_free(lg);
            return rc;
        }
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nr; i++) {
            float *l = lg + i * V;
            int32_t y = targets[r0 + i];
            if (y < 0) {
                logp[r0 + i] = 0;
                if (coef)
                    memset(l, 0, (size_t)V * sizeof(float));
                continue;
            }
            float m = -INFINITY;
            for (int64_t j = 0; j < V; j++)
                m = l[j] > m ? l[j] : m;
            double z = 0;
            for (int64_t j = 0; j < V; j++)
                z += exp((double)l[j] - m);
            double lse = m + log(z);
            logp[r0 + i] = (float)(l[y] - lse);
            if (coef) { // dL/dlogit_j = coef ([j == y] - p_j)
                float c = coef[r0 + i];
                for (int64_t j = 0; j < V; j++)
                    l[j] = -c * (float)exp((double)l[j] - lse);
                l[y] += c;
            }
        }
        for (int64_t i = 0; i < nr; i++) // in row order: the same sum on every run
            total += logp[r0 + i];
        if (coef &&
            (rc = tw_linear_bwd(dx ? dx + r0 * C : NULL, true, dw, NULL, lg, x + r0 * C, w, nr))) {
            tw_free(lg);
            return rc;
        }
    }
    tw_free(lg);
    *sum = total;
    return 0;
}

void tw_embedding_bwd(float *dtable, const int32_t *ids, const float *dy, int64_t N, int64_t C)
{
    for (int64_t t = 0; t < N; t++) {
        float *row = dtable + (int64_t)ids[t] * C;
        const float *g = dy + t * C;
        for (int64_t i = 0; i < C; i++)
            row[i] += g[i];
    }
}

void tw_gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)M, (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

void tw_dropout(float *y, const float *x, int64_t n, float p, uint64_t key, bool add)
{
    float keep = 1.0f / (1.0f - p);
    uint64_t thr = (uint64_t)((double)p * 18446744073709551615.0);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        uint64_t st = key ^ (uint64_t)i * 0xD1B54A32D192ED03ull;
        float v = tw_splitmix64(&st) < thr ? 0.0f : x[i] * keep;
        y[i] = add ? y[i] + v : v;
    }
}

void tw_adamw_update(float *w, const float *g, float *m, float *v, size_t n,
                     const struct tw_adamw_args *a)
{
    float b1 = a->beta1, b2 = a->beta2;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t j = 0; j < n; j++) {
        float gj = g[j];
        w[j] *= a->decay;
        m[j] += (gj - m[j]) * (1.0f - b1); // torch's lerp
        v[j] = v[j] * b2 + (1.0f - b2) * gj * gj;
        w[j] -= a->step_size * m[j] / (sqrtf(v[j]) / a->bc2_sqrt + a->eps);
    }
}

// ---- the CPU's table: the functions above, the backend argument unused.

static void cpu_rmsnorm_fwd(struct tw_backend *be, float *y, float *rstd, const float *x,
                            const float *w, int64_t N, int64_t C, float eps)
{
    (void)be;
    tw_rmsnorm_fwd(y, rstd, x, w, N, C, eps);
}

static void cpu_rmsnorm_bwd(struct tw_backend *be, float *dx, float *dw, const float *dy,
                            const float *x, const float *w, const float *rstd, int64_t N,
                            int64_t C)
{
    (void)be;
    tw_rmsnorm_bwd(dx, dw, dy, x, w, rstd, N, C);
}

static void cpu_attn_fwd(struct tw_backend *be, float *out, float *lse, const float *q,
                         const float *k, const float *v, const int32_t *start,
                         const struct tw_attn_shape *s)
{
    (void)be;
    tw_attn_fwd(out, lse, q, k, v, start, s);
}

static void cpu_attn_bwd(struct tw_backend *be, float *dq, float *dk, float *dv, const float *dout,
                         const float *q, const float *k, const float *v, const float *out,
                         const float *lse, const int32_t *start, const struct tw_attn_shape *s)
{
    (void)be;
    tw_attn_bwd(dq, dk, dv, dout, q, k, v, out, lse, start, s);
}

static void cpu_swiglu_bwd(struct tw_backend *be, float *dg, float *du, const float *dh,
                           const float *g, const float *u, int64_t n)
{
    (void)be;
    tw_swiglu_bwd(dg, du, dh, g, u, n);
}

static int cpu_linear_fwd(struct tw_backend *be, float *y, const float *x,
                          const struct tw_tensor *w, const float *b, int64_t N)
{
    (void)be;
    return tw_linear_fwd(y, x, w, b, N);
}

static int cpu_linear_bwd(struct tw_backend *be, float *dx, bool add, float *dw, float *db,
                          const float *dy, const float *x, const struct tw_tensor *w, int64_t N)
{
    (void)be;
    return tw_linear_bwd(dx, add, dw, db, dy, x, w, N);
}

static int cpu_head_logp(struct tw_backend *be, const float *x, const struct tw_tensor *w,
                         const int32_t *targets, int64_t N, float *logp, const float *coef,
                         float *dx, float *dw, double *sum)
{
    (void)be;
    return tw_lm_head_logp(x, w, targets, N, logp, coef, dx, dw, sum);
}

static void cpu_embedding_bwd(struct tw_backend *be, float *dtable, const int32_t *ids,
                              const float *dy, int64_t N, int64_t C)
{
    (void)be;
    tw_embedding_bwd(dtable, ids, dy, N, C);
}

static void cpu_gemm(struct tw_backend *be, bool lowp, bool ta, bool tb, int64_t M, int64_t N,
                     int64_t K, float alpha, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float beta, float *C, int64_t ldc)
{
    (void)be, (void)lowp;
    tw_gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void cpu_dropout(struct tw_backend *be, float *y, const float *x, int64_t n, float p,
                        uint64_t key, bool add)
{
    (void)be;
    tw_dropout(y, x, n, p, key, add);
}

static void cpu_zero(struct tw_backend *be, void *p, size_t bytes)
{
    (void)be;
    memset(p, 0, bytes);
}

static void cpu_adamw(struct tw_backend *be, float *w, const float *g, float *m, float *v,
                      size_t n, const struct tw_adamw_args *a)
{
    (void)be;
    tw_adamw_update(w, g, m, v, n, a);
}

static void cpu_sumsq(struct tw_backend *be, const float *x, size_t n, double *acc)
{
    (void)be;
    double ss = *acc; // serial, in order: the same sum on every run
    for (size_t j = 0; j < n; j++)
        ss += (double)x[j] * x[j];
    *acc = ss;
}

static void cpu_scale(struct tw_backend *be, float *x, size_t n, float c)
{
    (void)be;
    for (size_t j = 0; j < n; j++)
        x[j] *= c;
}

static void cpu_convert(struct tw_backend *be, void *dst, enum tw_dtype dt, const float *src,
                        size_t n)
{
    (void)be;
    // f32 and bf16 round element by element: chunks of the threads give the same bits
    size_t chunk = 1u << 16, es = tw_dtype_block_bytes(dt); // blocks of one element
#pragma omp parallel for schedule(static) if (n > chunk)
    for (size_t i0 = 0; i0 < n; i0 += chunk)
        tw_quantize_row(dt, src + i0, (char *)dst + i0 * es, n - i0 < chunk ? n - i0 : chunk);
}

const struct tw_grad_ops tw_cpu_grad_ops = {
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .attn_fwd = cpu_attn_fwd,
    .attn_bwd = cpu_attn_bwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .head_logp = cpu_head_logp,
    .embedding_bwd = cpu_embedding_bwd,
    .gemm = cpu_gemm,
    .dropout = cpu_dropout,
    .zero = cpu_zero,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .convert = cpu_convert,
};

const struct tw_grad_ops *tw_backend_grad(const struct tw_backend *be)
{
    return be && be->ops->grad ? be->ops->grad : &tw_cpu_grad_ops;
}

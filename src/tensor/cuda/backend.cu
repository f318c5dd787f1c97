// The CUDA backend: the table of tensor/backend.h's ops over device memory, on one stream.
// Owns the device memory pool (cudaMalloc'd blocks, cached for reuse), the pinned staging
// ring that carries the ops' host arrays (ids, positions, sequences) to the device, cuBLASLt
// and its workspace, and the first error since the last sync. Matmuls of up to
// TWC_GEMV_MAX_T rows go to gemv.cu's kernels (decode: weights read once, from their
// blocks); larger ones to cuBLASLt (bf16 weights as they are, other dtypes dequantised to bf16
// in tiles, f32 weights in f32); attention to attn.cu; top-k to topk.cu; the row-wise ops are
// here.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tensor/cuda/kernels.cuh"

extern "C" {
#include "base/error.h"
#include "base/mem.h"
#include "tensor/cuda.h"
}

#define STAGE_BYTES  ((size_t)4 << 20)  // the staging ring for host arrays
#define LT_WORKSPACE ((size_t)32 << 20) // cuBLASLt's workspace
#define TILE_ELEMS   ((size_t)32 << 20) // bf16 elements of a dequantised weight tile (64 MiB)
#define XQ_BYTES     ((size_t)1 << 20)  // the int8 activations' scratch made at the start
#define PLAN_CACHE   64
#define ROW_THREADS  256

struct pool_block {
    void *p;
    size_t size;
    bool used;
};

// A cuBLASLt matmul set up for one shape: its descriptors and the algorithm the heuristic
// chose, kept for the next call of that shape (creating them costs more host time than the
// launch).
struct lt_plan {
    int64_t m, n, k, ldd;
    int kind;  // 0: bf16 x bf16 -> f32; 1: f32 x f32 -> f32; 2: bf16 x bf16 -> bf16
    bool bias; // the BIAS epilogue
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
};

enum run_mode { EAGER, CAPTURE, PREP };

struct cuda_impl {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;
    struct pool_block *blocks;
    size_t n_blocks, cap_blocks;
    char *stage_host; // pinned
    char *stage_dev;
    size_t stage_off;
    uint64_t stage_epoch; // counts the ring's restarts
    // The step's recent stagings (since the ring's start): the same host array with the same
    // bytes is not copied again (a step's positions serve every layer).
    struct {
        const void *host;
        size_t len, off;
    } recent[8];
    int n_recent;
    __nv_bfloat16 *xbf; // x rounded to bf16 for the GEMMs
    size_t xbf_bytes;
    __nv_bfloat16 *tile; // dequantised weights
    float *f32s;         // the up projection of cuda_matmul_swiglu's composed form
    size_t f32s_bytes;
    void *xq; // x rounded to int8 for the quantised matvecs (twc_gemv_xq_bytes)
    size_t xq_bytes;
    bool xq_off; // TWIN_GEMV_F32X=1: quantised matvecs read x as floats (for measurement)
    void *flash; // bf16 copies of a fresh prefill's q, k, v (twc_attention_flash)
    size_t flash_bytes;
    // TWIN_PREFILL_FLASH: 0 keeps fresh prefills on tc_kernel, 1 sends every one that can go
    // to fattn's forward (for measurement and the tests); unset: where its grid fills the GPU.
    int flash_mode;
    struct lt_plan plans[PLAN_CACHE];
    int n_plans, next_plan; // next_plan: the one a full cache replaces next
    int32_t *zero;          // a device int 0: the block table {0} of a contiguous cache
    int32_t *tabs;          // a step's page tables (host), tabs_n entries
    size_t tabs_n;
    // Their staged copy, for the layers after the first: valid while the step (tw_attn's
    // pages_gen), the tables' shape and the staging ring's epoch (reset when it starts over)
    // stay.
    const int32_t *tabs_dev;
    uint64_t tabs_gen, tabs_epoch;
    size_t tabs_used;
    const int32_t *tabs_first;
    void *topk_host;   // pinned and mapped: tw_topk's kernel writes its answer there
    void *topk_mapped; // the same memory as the device addresses it
    size_t topk_host_bytes;
    // Graphs: EAGER runs each op; CAPTURE records them (tw_backend_graph_begin with no graph
    // yet); PREP, before a replay, only takes in their host arrays (into the staging slots
    // that the recording's copies read).
    enum run_mode mode;
    unsigned scratch_gen; // bumped when a scratch buffer moves: graphs that used it are stale
    int32_t kv_bound;     // while recording or replaying: the cache rows attention is set up for
    int32_t rows_bound;   // and the rows of a sequence
    int err;              // the first failure since the last sync (0: none)
    char msg[256];
    void *grad; // grad.cu's state (the training ops)
};

// Whether ops launch work (all but the PREP pass of a replay).
static bool live(const struct cuda_impl *im)
{
    return im->mode != PREP;
}

static struct cuda_impl *impl(struct tw_backend *be)
{
    return (struct cuda_impl *)be->impl;
}

static float *f32(const struct tw_tensor *t)
{
    return (float *)t->data;
}

// Records the first failure; later ones are consequences of it, as a rule.
static void fail(struct cuda_impl *im, const char *what, const char *why)
{
    if (im->err)
        return;
    im->err = TW_EDEVICE;
    snprintf(im->msg, sizeof im->msg, "cuda: %s: %s", what, why);
}

static bool ck(struct cuda_impl *im, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return true;
    fail(im, what, cudaGetErrorString(e));
    return false;
}

static bool ck_lt(struct cuda_impl *im, cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return true;
    char why[64];
    snprintf(why, sizeof why, "cuBLASLt status %d", (int)st);
    fail(im, what, why);
    return false;
}

// ---- memory: a pool of cudaMalloc'd blocks, a freed one reused by a request that fits it
// without wasting more than half (the caching allocator's rule), all freed with the backend.

static void *cuda_alloc(struct tw_backend *be, size_t bytes)
{
    struct cuda_impl *im = impl(be);
    bytes = (bytes + 255) & ~(size_t)255;
    if (bytes == 0)
        bytes = 256;
    struct pool_block *best = NULL;
    for (size_t i = 0; i < im->n_blocks; i++) {
        struct pool_block *b = &im->blocks[i];
        if (!b->used && b->size >= bytes && b->size / 2 <= bytes &&
            (!best || b->size < best->size))
            best = b;
    }
    if (best) {
        best->used = true;
        return best->p;
    }
    if (im->n_blocks == im->cap_blocks) {
        size_t cap = im->cap_blocks ? 2 * im->cap_blocks : 64;
        void *nb = tw_realloc(im->blocks, cap * sizeof *im->blocks);
        if (!nb) {
            tw_error_set(TW_ENOMEM, "cuda: out of host memory");
            return NULL;
        }
        im->blocks = (struct pool_block *)nb;
        im->cap_blocks = cap;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess && e == cudaErrorMemoryAllocation) {
        // Give the cached blocks back to the driver and try once more.
        cudaGetLastError();
        cudaStreamSynchronize(im->stream);
        size_t kept = 0;
        for (size_t i = 0; i < im->n_blocks; i++) {
            if (im->blocks[i].used)
                im->blocks[kept++] = im->blocks[i];
            else
                cudaFree(im->blocks[i].p);
        }
        im->n_blocks = kept;
        e = cudaMalloc(&p, bytes);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        tw_error_set(TW_ENOMEM, "cuda: cannot allocate %zu MiB of device memory (%zu MiB free)",
                     bytes >> 20, free_b >> 20);
        return NULL;
    }
    im->blocks[im->n_blocks++] = (struct pool_block){ p, bytes, true };
    return p;
}

static void cuda_release(struct tw_backend *be, void *p)
{
    struct cuda_impl *im = impl(be);
    if (!p)
        return;
    for (size_t i = 0; i < im->n_blocks; i++)
        if (im->blocks[i].p == p) {
            im->blocks[i].used = false;
            return;
        }
}

static int report(struct cuda_impl *im)
{
    if (!im->err)
        return 0;
    int rc = tw_error_set(im->err, "%s", im->msg);
    im->err = 0;
    return rc;
}

static int cuda_upload(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    struct cuda_impl *im = impl(be);
    // Pageable memory: the copy is staged by the driver and done when this returns.
    ck(im, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, im->stream), "upload");
    ck(im, cudaStreamSynchronize(im->stream), "upload");
    return report(im);
}

static int cuda_download(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    struct cuda_impl *im = impl(be);
    ck(im, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, im->stream), "download");
    ck(im, cudaStreamSynchronize(im->stream), "download");
    return report(im);
}

static void cuda_copy(struct tw_backend *be, void *dst, const void *src, size_t n)
{
    struct cuda_impl *im = impl(be);
    if (live(im))
        ck(im, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, im->stream), "copy");
}

static int cuda_sync(struct tw_backend *be)
{
    struct cuda_impl *im = impl(be);
    ck(im, cudaStreamSynchronize(im->stream), "sync");
    return report(im);
}

// n bytes of host data on the device, in order with the ops: copied into the pinned ring,
// then to the same offset of the device ring. When the ring wraps, the stream is drained
// first, so that no copy still pending reads a slot being rewritten.
static void *stage(struct cuda_impl *im, const void *host, size_t len)
{
    for (int i = 0; i < im->n_recent; i++)
        if (im->recent[i].host == host && im->recent[i].len == len &&
            memcmp(im->stage_host + im->recent[i].off, host, len) == 0)
            return im->stage_dev + im->recent[i].off;
    size_t n = (len + 255) & ~(size_t)255;
    if (n > STAGE_BYTES) {
        fail(im, "stage", "host array larger than the staging ring");
        return NULL;
    }
    if (im->stage_off + n > STAGE_BYTES) {
        if (im->mode != EAGER) { // a recorded step's arrays must all fit, in one pass
            fail(im, "stage", "a graph's host arrays exceed the staging ring");
            return NULL;
        }
        ck(im, cudaStreamSynchronize(im->stream), "stage");
        im->stage_off = 0;
        im->stage_epoch++;
        im->n_recent = 0;
    }
    char *h = im->stage_host + im->stage_off, *d = im->stage_dev + im->stage_off;
    memcpy(h, host, len);
    // Keyed by the host pointer too: in a recording, which stagings share a slot must not
    // depend on values (two arrays that happen to hold the same ids are separate slots).
    int slot = im->n_recent < 8 ? im->n_recent++ : (int)(im->stage_off / 256 % 8);
    im->recent[slot].host = host;
    im->recent[slot].len = len;
    im->recent[slot].off = im->stage_off;
    im->stage_off += n;
    if (im->mode == PREP) // the recording's copy node moves it
        return d;
    if (!ck(im, cudaMemcpyAsync(d, h, len, cudaMemcpyHostToDevice, im->stream), "stage"))
        return NULL;
    return d;
}

// ---- row-wise kernels: one block of ROW_THREADS per row, sums in f32 through warp shuffles.

static __global__ void rmsnorm_kernel(float *y, const float *x, const float *w, int64_t C,
                                      float eps)
{
    twc_pdl_enter();
    __shared__ float red[32];
    const float *xr = x + blockIdx.x * C;
    float *yr = y + blockIdx.x * C;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        ss += xr[i] * xr[i];
    ss = twc_block_sum(ss, red);
    float inv = 1.0f / sqrtf(ss / (float)C + eps);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        yr[i] = xr[i] * inv * (w ? w[i] : 1.0f);
}

static __global__ void layernorm_kernel(float *y, const float *x, const float *w, const float *b,
                                        int64_t C, float eps)
{
    twc_pdl_enter();
    __shared__ float red[32];
    const float *xr = x + blockIdx.x * C;
    float *yr = y + blockIdx.x * C;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        s += xr[i];
    float mean = twc_block_sum(s, red) / (float)C;
    float v = 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        v += (xr[i] - mean) * (xr[i] - mean);
    float inv = 1.0f / sqrtf(twc_block_sum(v, red) / (float)C + eps);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        yr[i] = (xr[i] - mean) * inv * w[i] + b[i];
}

// LayerNorm (LN) or RMSNorm with one warp a row (rows of C <= 32 * 4 * NV floats, C % 4 == 0,
// x, y, w and b 16-byte aligned; blockDim.x / 32 rows a block): the row's float4s stay in
// registers between the sums and the output, and no block-wide barrier is needed. BERT's rows
// of 384 at 32768 rows a batch ran at 1.3 TB/s on layernorm_kernel (a 256-thread block a row,
// two block sums, x read three times), 3.9 on this (H200, ncu); training's RMSNorm (y in bf16,
// and each row's 1 / rms to rstd) on llama-124m's rows of 768 2.1 TB/s on a scalar loop, 3.4
// on this. RMSNorm's w may be NULL; rstd may be NULL (none).
template <int NV, bool LN, typename OutT>
static __global__ void norm_warp_kernel(OutT *y, float *rstd, const float *x, const float *w,
                                        const float *b, int64_t R, int C, float eps)
{
    twc_pdl_enter();
    const int64_t r = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    if (r >= R)
        return;
    const int lane = threadIdx.x % 32, C4 = C / 4;
    const float4 *xr = (const float4 *)(x + r * C);
    float4 v[NV];
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int j = lane + 32 * i;
        v[i] = j < C4 ? xr[j] : make_float4(0.f, 0.f, 0.f, 0.f);
        s += LN ? (v[i].x + v[i].y) + (v[i].z + v[i].w)
                : (v[i].x * v[i].x + v[i].y * v[i].y) + (v[i].z * v[i].z + v[i].w * v[i].w);
    }
    float mean = 0.0f, inv;
    if (LN) {
        mean = twc_warp_sum(s) / (float)C;
        float q = 0.0f;
#pragma unroll
        for (int i = 0; i < NV; i++) {
            if (lane + 32 * i < C4) {
                float a = v[i].x - mean, bb = v[i].y - mean, c = v[i].z - mean, d = v[i].w - mean;
                q += (a * a + bb * bb) + (c * c + d * d);
            }
        }
        inv = 1.0f / sqrtf(twc_warp_sum(q) / (float)C + eps);
    } else {
        inv = 1.0f / sqrtf(twc_warp_sum(s) / (float)C + eps);
    }
    if (rstd && lane == 0)
        rstd[r] = inv;
    OutT *yr = y + r * C;
#pragma unroll
    for (int i = 0; i < NV; i++) {
        int j = lane + 32 * i;
        if (j < C4) {
            float4 g = w ? ((const float4 *)w)[j] : make_float4(1.f, 1.f, 1.f, 1.f);
            float4 h = LN ? ((const float4 *)b)[j] : make_float4(0.f, 0.f, 0.f, 0.f);
            twc_store4(yr + 4 * j, make_float4((v[i].x - mean) * inv * g.x + h.x,
                                               (v[i].y - mean) * inv * g.y + h.y,
                                               (v[i].z - mean) * inv * g.z + h.z,
                                               (v[i].w - mean) * inv * g.w + h.w));
        }
    }
}

static __global__ void softmax_kernel(float *x, int64_t C)
{
    twc_pdl_enter();
    __shared__ float red[32];
    float *xr = x + blockIdx.x * C;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        mx = fmaxf(mx, xr[i]);
    mx = twc_block_max(mx, red);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        s += expf(xr[i] - mx);
    float inv = 1.0f / twc_block_sum(s, red);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        xr[i] = expf(xr[i] - mx) * inv;
}

static __global__ void l2norm_kernel(float *x, int64_t C)
{
    twc_pdl_enter();
    __shared__ float red[32];
    float *xr = x + blockIdx.x * C;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        ss += xr[i] * xr[i];
    // sentence-transformers' Normalize: x / max(||x||, 1e-12) (torch's F.normalize).
    float n = fmaxf(sqrtf(twc_block_sum(ss, red)), 1e-12f);
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x)
        xr[i] = xr[i] / n;
}

// The two dims of pair i of a head's first 2 * half: (i, i + half) as HF's rotate_half pairs
// them (neox), else (2i, 2i + 1).
static __device__ __forceinline__ int2 rope_dims(int i, int half, bool neox)
{
    return neox ? make_int2(i, i + half) : make_int2(2 * i, 2 * i + 1);
}

// The cosine and sine of position p's angle at inverse frequency f: the angle in f32 as
// transformers forms it, its cosine and sine in double as the reference.
static __device__ __forceinline__ void rope_cs(float p, float f, float *c, float *s)
{
    double sd, cd;
    sincos((double)(p * f), &sd, &cd);
    *c = (float)cd, *s = (float)sd;
}

#define ROPE_HEADS 8 // heads a warp at most

// tw_rope_store: the pairs of each head's first 2 * half dims of q (T, H, D) and k (T, Hkv, D)
// rotated by pos[t] * inv_freq[i], k's pairs also stored into row rows[t] of kc, k's
// unrotated dims and v's rows copied to kc and vc. A warp takes hg <= ROPE_HEADS heads of a row
// (of its H q heads, then Hkv k heads, which also copy their head of v), its lanes over the
// pairs (PAIRS a lane: half <= 32 * PAIRS) and the dims. Each lane's angles (the angle in f32
// as transformers forms it, its cosine and sine in double as the reference) are computed once
// for the hg heads, and their pairs all loaded before any is stored, so that a warp has them
// in flight together; no thread divides 64-bit indices per element (three divisions a pair
// and two an element of v made the version before instruction-bound: 38 us a call on the 8B's
// q and k in training, 5.2 % of SmolLM2's 2048-token prefill, ncu on an H200; a head a warp,
// one load at a time, ran llama-124m's q in training at 1.6 TB/s). With Hkv 0, tw_rope of q
// alone. None writes what another reads.
template <int PAIRS>
static __global__ void rope_store_kernel(float *q, float *k, const float *v, const int32_t *pos,
                                         const float *inv_freq, const int32_t *rows, float *kc,
                                         float *vc, int64_t T, int H, int Hkv, int D, int half,
                                         bool neox, int hg)
{
    twc_pdl_enter();
    const int64_t w = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int ng = (H + Hkv + hg - 1) / hg, lane = threadIdx.x % 32;
    const int64_t t = w / ng;
    if (t >= T)
        return;
    const int h0 = (int)(w - t * ng) * hg, nh = min(hg, H + Hkv - h0);
    const float p = (float)pos[t];
    const int64_t kvd = (int64_t)Hkv * D;
    float c[PAIRS], sn[PAIRS], a[ROPE_HEADS][PAIRS], b[ROPE_HEADS][PAIRS];
#pragma unroll
    for (int j = 0; j < PAIRS; j++) {
        c[j] = 1.0f, sn[j] = 0.0f;
        if (lane + 32 * j < half)
            rope_cs(p, inv_freq[lane + 32 * j], &c[j], &sn[j]);
    }
#pragma unroll
    for (int e = 0; e < ROPE_HEADS; e++) {
        const int h = h0 + e;
        const float *x = h < H ? q + (t * H + h) * D : k + (t * Hkv + (h - H)) * D;
#pragma unroll
        for (int j = 0; j < PAIRS; j++) {
            a[e][j] = b[e][j] = 0.0f;
            if (e < nh && lane + 32 * j < half) {
                int2 d = rope_dims(lane + 32 * j, half, neox);
                a[e][j] = x[d.x], b[e][j] = x[d.y];
            }
        }
    }
#pragma unroll
    for (int e = 0; e < ROPE_HEADS; e++) {
        const int h = h0 + e;
        if (e >= nh)
            break;
        float *x = h < H ? q + (t * H + h) * D : k + (t * Hkv + (h - H)) * D, *dst = NULL;
        if (h >= H)
            dst = kc + (int64_t)rows[t] * kvd + (int64_t)(h - H) * D; // this head's cache row
#pragma unroll
        for (int j = 0; j < PAIRS; j++) {
            if (lane + 32 * j < half) {
                int2 d = rope_dims(lane + 32 * j, half, neox);
                float r0 = a[e][j] * c[j] - b[e][j] * sn[j], r1 = b[e][j] * c[j] + a[e][j] * sn[j];
                x[d.x] = r0, x[d.y] = r1;
                if (dst)
                    dst[d.x] = r0, dst[d.y] = r1;
            }
        }
        if (dst) { // v's head, and k's dims past the rotated ones
            const float *vr = v + (t * Hkv + (h - H)) * D;
            float *vd = vc + (dst - kc);
            for (int d = lane; d < D; d += 32) {
                vd[d] = vr[d];
                if (d >= 2 * half)
                    dst[d] = x[d];
            }
        }
    }
}

// Training's RoPE (twc_rope_train): x (T, H, D) of InT rotated as rope_store_kernel rotates q,
// to yb as bf16 (rows ldb apart) and, where given, to yf as f32 (yf may be x; yb may be x when
// InT is bf16: in place, x's rows then ldb apart too). A warp a row: its lanes' angles once, then
// the heads four at a time, their pairs all loaded before any is stored, by pointers stepped a
// head at a time (rope_store_kernel, general for inference's k heads and caches, spent ~1300
// instructions a warp on 8 heads' indexing and branches: 55-72 us a call on llama-124m's q where
// the traffic needs 12-18, ncu, H200). The rotation's products rounded one by one (no contraction)
// so that both input types give the same bits for the same values.
template <int PAIRS, typename InT>
static __global__ void rope_train_kernel(const InT *x, float *yf, __nv_bfloat16 *yb, int64_t ldb,
                                         const int32_t *pos, const float *inv_freq, int64_t T,
                                         int H, int D, int half, bool neox)
{
    twc_pdl_enter();
    const int64_t t = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (t >= T)
        return;
    float c[PAIRS], sn[PAIRS];
    int2 d[PAIRS];
    bool on[PAIRS];
#pragma unroll
    for (int j = 0; j < PAIRS; j++) {
        on[j] = lane + 32 * j < half;
        c[j] = 1.0f, sn[j] = 0.0f, d[j] = make_int2(0, 0);
        if (on[j]) {
            rope_cs((float)pos[t], inv_freq[lane + 32 * j], &c[j], &sn[j]);
            d[j] = rope_dims(lane + 32 * j, half, neox);
        }
    }
    const bool in_place = (const void *)x == (const void *)yb;
    const int64_t row = t * (int64_t)H * D;
    const InT *xr = x + (in_place ? t * ldb : row);
    float *fr = yf ? yf + row : NULL;
    __nv_bfloat16 *br = yb + t * ldb;
    for (int h = 0; h < H; h += 4, xr += 4 * D, br += 4 * D, fr = fr ? fr + 4 * D : NULL) {
        const int nh = min(4, H - h);
        float a[4][PAIRS], b[4][PAIRS];
#pragma unroll
        for (int e = 0; e < 4; e++)
#pragma unroll
            for (int j = 0; j < PAIRS; j++) {
                a[e][j] = b[e][j] = 0.0f;
                if (e < nh && on[j])
                    a[e][j] = (float)xr[e * D + d[j].x], b[e][j] = (float)xr[e * D + d[j].y];
            }
#pragma unroll
        for (int e = 0; e < 4; e++)
#pragma unroll
            for (int j = 0; j < PAIRS; j++)
                if (e < nh && on[j]) {
                    float r0 = __fsub_rn(__fmul_rn(a[e][j], c[j]), __fmul_rn(b[e][j], sn[j]));
                    float r1 = __fadd_rn(__fmul_rn(b[e][j], c[j]), __fmul_rn(a[e][j], sn[j]));
                    br[e * D + d[j].x] = __float2bfloat16(r0);
                    br[e * D + d[j].y] = __float2bfloat16(r1);
                    if (fr)
                        fr[e * D + d[j].x] = r0, fr[e * D + d[j].y] = r1;
                }
        if (2 * half < D && !in_place) // the dims not rotated
            for (int e = 0; e < nh; e++)
                for (int k = 2 * half + lane; k < D; k += 32) {
                    float v = (float)xr[e * D + k];
                    br[e * D + k] = __float2bfloat16(v);
                    if (fr)
                        fr[e * D + k] = v;
                }
    }
}

enum ew_op { EW_ADD, EW_SWIGLU, EW_GELU, EW_GELU_TANH, EW_SILU, EW_TANH, EW_RELU };

static __device__ __forceinline__ float act_of(enum ew_op op, float v)
{
    switch (op) {
    case EW_GELU:
        return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case EW_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    case EW_SILU:
        return twc_silu(v);
    case EW_TANH:
        return tanhf(v);
    case EW_RELU:
        return v > 0.0f ? v : 0.0f;
    default:
        return v;
    }
}

static __device__ __forceinline__ float ew_of(enum ew_op op, float v, const float *b, int64_t i)
{
    if (op == EW_ADD)
        return v + b[i];
    if (op == EW_SWIGLU)
        return twc_silu(v) * b[i];
    return act_of(op, v);
}

// y = op(a, b), four elements a thread: by 16-byte loads and stores where vec (y, a and b
// aligned for them), element by element otherwise and at the end.
static __global__ void ew_kernel(enum ew_op op, float *y, const float *a, const float *b,
                                 int64_t n, bool vec)
{
    twc_pdl_enter();
    for (int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * 4; i < n;
         i += (int64_t)gridDim.x * blockDim.x * 4) {
        if (vec && i + 4 <= n) {
            float4 v = *(const float4 *)(a + i), w = {};
            if (op == EW_ADD || op == EW_SWIGLU)
                w = *(const float4 *)(b + i);
            float bv[4] = { w.x, w.y, w.z, w.w };
            float4 o = { ew_of(op, v.x, bv, 0), ew_of(op, v.y, bv, 1), ew_of(op, v.z, bv, 2),
                         ew_of(op, v.w, bv, 3) };
            *(float4 *)(y + i) = o;
        } else {
            for (int64_t j = i; j < i + 4 && j < n; j++)
                y[j] = ew_of(op, a[j], b, j);
        }
    }
}

// y (rows, cols; rows ldy apart) = x (rows ldx apart) rounded to bf16. A thread takes eight
// columns of a row: two 16-byte loads and one 16-byte store where vec (every row's start
// aligned for them: twc_to_bf16_2d decides), element by element otherwise and at a row's end.
// Rows by the block's y, no divisions: the per-element 64-bit division and modulo of the
// version before cost more than the memory traffic (24 ms of an 8B LoRA step against ~10 for
// the bytes, ncu on an H200). A block of 256 threads spans several rows where they are short
// (LoRA's B: rows of 32 values).
static __global__ void to_bf16_kernel(__nv_bfloat16 *y, int64_t ldy, const float *x, int64_t ldx,
                                      int64_t rows, int64_t cols, bool vec)
{
    twc_pdl_enter();
    for (int64_t r = blockIdx.y * (int64_t)blockDim.y + threadIdx.y; r < rows;
         r += (int64_t)gridDim.y * blockDim.y) {
        const float *xr = x + r * ldx;
        __nv_bfloat16 *yr = y + r * ldy;
        for (int64_t c = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * 8; c < cols;
             c += (int64_t)gridDim.x * blockDim.x * 8) {
            if (vec && c + 8 <= cols) {
                float4 a = *(const float4 *)(xr + c), b = *(const float4 *)(xr + c + 4);
                __nv_bfloat162 h[4] = { __floats2bfloat162_rn(a.x, a.y),
                                        __floats2bfloat162_rn(a.z, a.w),
                                        __floats2bfloat162_rn(b.x, b.y),
                                        __floats2bfloat162_rn(b.z, b.w) };
                *(uint4 *)(yr + c) = *(const uint4 *)h;
            } else {
                for (int64_t j = c; j < c + 8 && j < cols; j++)
                    yr[j] = __float2bfloat16(xr[j]);
            }
        }
    }
}

// y (T, ldy) columns [0, N) += bias (N).
static __global__ void bias_kernel(float *y, const float *bias, int64_t T, int64_t N, int64_t ldy)
{
    twc_pdl_enter();
    int64_t n = T * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[(i / N) * ldy + i % N] += bias[i % N];
}

// The launch shape of the kernels that take eight columns of a row a thread, rows by the
// block's y (to_bf16_kernel, bias_act_bf16_kernel): 256 threads a block.
static void rows_of_8(int64_t rows, int64_t cols, dim3 *grid, dim3 *block)
{
    int64_t groups = (cols + 7) / 8, bx = 1;
    while (bx < groups && bx < 256)
        bx *= 2;
    // Past a warp, the width that leaves the fewest threads idle on a row's last pass (rows of
    // 1536 bf16: 192 groups, 64 threads of 256 idle; 64 wide, none).
    if (bx > 32) {
        int64_t best = bx, idle = (groups + bx - 1) / bx * bx - groups;
        for (int64_t c = bx / 2; c >= 32; c /= 2) {
            int64_t i = (groups + c - 1) / c * c - groups;
            if (i < idle)
                best = c, idle = i;
        }
        bx = best;
    }
    int64_t by = 256 / bx, gx = (groups + bx - 1) / bx, gy = (rows + by - 1) / by;
    *grid = dim3((unsigned)(gx < 65536 ? gx : 65536), (unsigned)(gy < 65535 ? gy : 65535));
    *block = dim3((unsigned)bx, (unsigned)by);
}

// y (rows, cols) bf16, in place: y = op(y + bias) (bias (cols) may be NULL), op an activation
// known at compile time (its switch folded away: GELU's erff is most of a thread's work).
// Eight columns a thread, rows by the block's y (to_bf16_kernel's shape); 16-byte loads and
// stores where vec (y, bias aligned for them, cols % 8 == 0).
template <enum ew_op op>
static __global__ void bias_act_bf16_kernel(__nv_bfloat16 *y, const float *bias, int64_t rows,
                                            int64_t cols, bool vec)
{
    twc_pdl_enter();
    for (int64_t r = blockIdx.y * (int64_t)blockDim.y + threadIdx.y; r < rows;
         r += (int64_t)gridDim.y * blockDim.y) {
        __nv_bfloat16 *yr = y + r * cols;
        for (int64_t c = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * 8; c < cols;
             c += (int64_t)gridDim.x * blockDim.x * 8) {
            if (vec) {
                uint4 raw = *(const uint4 *)(yr + c);
                __nv_bfloat162 *h = (__nv_bfloat162 *)&raw;
                float b[8] = {};
                if (bias) {
                    float4 b0 = *(const float4 *)(bias + c), b1 = *(const float4 *)(bias + c + 4);
                    b[0] = b0.x, b[1] = b0.y, b[2] = b0.z, b[3] = b0.w;
                    b[4] = b1.x, b[5] = b1.y, b[6] = b1.z, b[7] = b1.w;
                }
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float2 v = __bfloat1622float2(h[i]);
                    h[i] = __floats2bfloat162_rn(act_of(op, v.x + b[2 * i]),
                                                 act_of(op, v.y + b[2 * i + 1]));
                }
                *(uint4 *)(yr + c) = raw;
            } else {
                for (int64_t j = c; j < c + 8 && j < cols; j++)
                    yr[j] = __float2bfloat16(
                        act_of(op, __bfloat162float(yr[j]) + (bias ? bias[j] : 0.0f)));
            }
        }
    }
}

// ---- ops

static void cuda_embedding(struct tw_backend *be, struct tw_tensor *y,
                           const struct tw_tensor *table, const int32_t *ids)
{
    struct cuda_impl *im = impl(be);
    int64_t T = tw_tensor_nrows(y), C = tw_tensor_ncols(y);
    const int32_t *d_ids = (const int32_t *)stage(im, ids, (size_t)T * sizeof *ids);
    if (d_ids && live(im))
        ck(im,
           twc_get_rows(table->dtype, table->data, table->nb[0], C, d_ids, T, f32(y), im->stream),
           "embedding");
}

static void plan_destroy(struct lt_plan *p)
{
    if (p->ld)
        cublasLtMatrixLayoutDestroy(p->ld);
    if (p->lb)
        cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la)
        cublasLtMatrixLayoutDestroy(p->la);
    if (p->op)
        cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

// The plan for D (m, n) = A^T B (+ bias (m)) in column-major terms, A (k, m) and B (k, n) of
// the kind's type, D f32 (bf16 for kind 2) with leading dimension ldd: cached, or made. NULL when
// it cannot be made: with bias, quietly (the caller adds the bias itself); without, with the
// failure recorded.
static struct lt_plan *lt_plan_get(struct cuda_impl *im, int kind, int64_t m, int64_t n, int64_t k,
                                   int64_t ldd, bool bias)
{
    for (int i = 0; i < im->n_plans; i++) {
        struct lt_plan *p = &im->plans[i];
        if (p->m == m && p->n == n && p->k == k && p->ldd == ldd && p->kind == kind &&
            p->bias == bias)
            return p;
    }
    struct lt_plan p;
    memset(&p, 0, sizeof p);
    p.m = m, p.n = n, p.k = k, p.ldd = ldd, p.kind = kind, p.bias = bias;
    cudaDataType_t ab = kind == 1 ? CUDA_R_32F : CUDA_R_16BF;
    cudaDataType_t dt = kind == 2 ? CUDA_R_16BF : CUDA_R_32F;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulPreference_t pref = NULL;
    size_t ws = LT_WORKSPACE;
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    cublasStatus_t st = cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (st == CUBLAS_STATUS_SUCCESS && bias)
        st = cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&p.la, ab, (uint64_t)k, (uint64_t)m, k);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&p.lb, ab, (uint64_t)k, (uint64_t)n, k);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&p.ld, dt, (uint64_t)m, (uint64_t)n, ldd);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceCreate(&pref);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &ws, sizeof ws);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(im->lt, p.op, p.la, p.lb, p.ld, p.ld, pref, 1, &res,
                                            &found);
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
        plan_destroy(&p);
        if (!bias)
            ck_lt(im, st == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : st,
                  "matmul plan");
        return NULL;
    }
    p.algo = res.algo;
    int slot = im->n_plans < PLAN_CACHE ? im->n_plans++ : im->next_plan++ % PLAN_CACHE;
    plan_destroy(&im->plans[slot]);
    im->plans[slot] = p;
    return &im->plans[slot];
}

// y (T, ldy) columns [0, N) += bias (N), after a GEMM that had no bias epilogue.
static void add_bias(struct cuda_impl *im, float *y, const float *bias, int64_t T, int64_t N,
                     int64_t ldy)
{
    ck(im, twc_launch(bias_kernel, twc_grid_for(T * N), 256, 0, im->stream, y, bias, T, N, ldy),
       "matmul (bias)");
}

// y (T, ldy) = x (T, K) w (N, K)^T (+ bias (N)) + beta y through cuBLASLt: kind 0 with w and x
// bf16, kind 1 with both f32 (exact f32 arithmetic, no TF32: the f32 golden models match the
// CPU), y f32; kind 2 with w, x and y bf16 (no bias: its epilogue would want it in bf16). The
// bias goes in the GEMM's epilogue, or a kernel after it where cuBLASLt has none.
static void lt_matmul(struct cuda_impl *im, int kind, const void *w, const void *x, void *y,
                      int64_t T, int64_t N, int64_t K, int64_t ldy, float beta, const float *bias)
{
    struct lt_plan *p = bias ? lt_plan_get(im, kind, N, T, K, ldy, true) : NULL;
    if (bias && p)
        ck_lt(im,
              cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                             sizeof bias),
              "matmul (bias)");
    if (!p)
        p = lt_plan_get(im, kind, N, T, K, ldy, false);
    if (!p)
        return;
    float one = 1.0f;
    ck_lt(im,
          cublasLtMatmul(im->lt, p->op, &one, w, p->la, x, p->lb, &beta, y, p->ld, y, p->ld,
                         &p->algo, im->lt_ws, LT_WORKSPACE, im->stream),
          "matmul");
    if (bias && !p->bias)
        add_bias(im, (float *)y, bias, T, N, ldy);
}

// Grows a scratch buffer of the backend to `bytes` (what it held is lost): waits for the
// stream first, since enqueued work may still read it. While recording it cannot wait: the
// recording fails instead (the step then runs op by op, which grows the buffer).
static bool ensure_scratch(struct cuda_impl *im, void **p, size_t *cap, size_t bytes)
{
    if (bytes <= *cap)
        return true;
    if (im->mode == CAPTURE) {
        fail(im, "matmul scratch", "it would grow while a graph is recorded");
        return false;
    }
    ck(im, cudaStreamSynchronize(im->stream), "matmul");
    cudaFree(*p);
    *p = NULL;
    *cap = 0;
    im->scratch_gen++;
    if (!ck(im, cudaMalloc(p, bytes), "matmul scratch"))
        return false;
    *cap = bytes;
    return true;
}

// x (T, K) rounded to bf16 in the backend's scratch, for cuBLASLt; NULL (failure recorded)
// when the scratch cannot grow.
static const __nv_bfloat16 *x_bf16(struct cuda_impl *im, const struct tw_tensor *x)
{
    int64_t T = tw_tensor_nrows(x), K = tw_tensor_ncols(x);
    if (!ensure_scratch(im, (void **)&im->xbf, &im->xbf_bytes, (size_t)(T * K) * 2))
        return NULL;
    ck(im, twc_to_bf16(im->xbf, f32(x), T * K, im->stream), "matmul (x to bf16)");
    return im->xbf;
}

// y (T, N) = x w^T (+ bias) through cuBLASLt, or y += that with accumulate: f32 weights with
// x in f32; bf16 weights as they are and the others dequantised to bf16 a tile of rows at a
// time, with xb, x rounded to bf16 (x_bf16: several products of one x share it).
static void gemm(struct cuda_impl *im, float *y, const struct tw_tensor *x,
                 const __nv_bfloat16 *xb, const struct tw_tensor *w, const float *b,
                 bool accumulate)
{
    int64_t T = tw_tensor_nrows(x), K = w->ne[1], N = w->ne[0];
    float beta = accumulate ? 1.0f : 0.0f;
    if (w->dtype == TW_DTYPE_F32) {
        lt_matmul(im, 1, w->data, x->data, y, T, N, K, N, beta, b);
    } else if (!xb) {
        return;
    } else if (w->dtype == TW_DTYPE_BF16) {
        lt_matmul(im, 0, w->data, xb, y, T, N, K, N, beta, b);
    } else {
        // Tiles of whole rows, dequantised to bf16, each multiplied into its columns of y.
        int64_t rows = (int64_t)(TILE_ELEMS / (size_t)K);
        rows = rows < 1 ? 1 : rows;
        for (int64_t n0 = 0; n0 < N && !im->err; n0 += rows) {
            int64_t nr = N - n0 < rows ? N - n0 : rows;
            const char *wr = (const char *)w->data + (size_t)n0 * w->nb[0];
            ck(im, twc_dequant_bf16(w->dtype, wr, w->nb[0], nr, K, im->tile, im->stream),
               "matmul (dequantise)");
            lt_matmul(im, 0, im->tile, xb, y + n0, T, nr, K, N, beta, NULL);
        }
        if (b)
            add_bias(im, y, b, T, N, N);
    }
}

// x_bf16 of x when one of the n weights is not f32 (else NULL, unused).
static const __nv_bfloat16 *x_for(struct cuda_impl *im, const struct tw_tensor *x, int n,
                                  const struct tw_tensor *const *ws)
{
    for (int i = 0; i < n; i++)
        if (ws[i]->dtype != TW_DTYPE_F32)
            return x_bf16(im, x);
    return NULL;
}

// Scratch for x (T, K) rounded to int8 when one of the n weights' matvec takes it
// (twc_gemv_int8), else NULL (also when it cannot grow: the failure is recorded). XQ_BYTES,
// made at the start, covers K up to 90k at T = 8, so that recording a graph finds it grown.
static void *gemv_xq(struct cuda_impl *im, int n, const struct tw_tensor *const *ws, int64_t T,
                     int64_t K)
{
    bool any = false;
    for (int i = 0; i < n; i++)
        any = any || twc_gemv_int8(ws[i]->dtype, (int)T);
    if (!any || im->xq_off)
        return NULL;
    return ensure_scratch(im, &im->xq, &im->xq_bytes, twc_gemv_xq_bytes(K, (int)T)) ? im->xq
                                                                                    : NULL;
}

static struct twc_gemv_out gemv_out(const struct tw_tensor *w, float *y,
                                    const struct tw_tensor *bias, const float *res)
{
    return (struct twc_gemv_out){
        w->dtype, w->data, w->nb[0], w->ne[0], y, w->ne[0], bias ? f32(bias) : NULL, res
    };
}

// y = x w^T (+ bias), or y += that with add: the matvec kernels when decoding, else cuBLASLt.
static void matmul_into(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, const struct tw_tensor *bias, bool add)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    int64_t T = tw_tensor_nrows(x), K = w->ne[1];
    if (T <= TWC_GEMV_MAX_T) {
        struct twc_gemv_out o = gemv_out(w, f32(y), bias, add ? f32(y) : NULL);
        ck(im,
           twc_gemv_multi(1, &o, K, f32(x), K, (int)T, NULL, gemv_xq(im, 1, &w, T, K), im->stream),
           "matmul (gemv)");
        return;
    }
    gemm(im, f32(y), x, x_for(im, x, 1, &w), w, bias ? f32(bias) : NULL, add);
}

static void cuda_matmul(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *w, const struct tw_tensor *bias)
{
    matmul_into(be, y, x, w, bias, false);
}

// norm_warp_kernel<1 << i, LN, OutT> over R rows of C, eight rows a 256-thread block.
template <bool LN, typename OutT>
static cudaError_t launch_norm_warp(int i, cudaStream_t s, OutT *y, float *rstd, const float *x,
                                    const float *w, const float *b, int64_t R, int C, float eps)
{
    typedef void (*kernel)(OutT *, float *, const float *, const float *, const float *, int64_t,
                           int, float);
    static const kernel k[] = { norm_warp_kernel<1, LN, OutT>, norm_warp_kernel<2, LN, OutT>,
                                norm_warp_kernel<4, LN, OutT>, norm_warp_kernel<8, LN, OutT>,
                                norm_warp_kernel<16, LN, OutT> };
    const int rows = 8;
    return twc_launch(k[i], (unsigned)((R + rows - 1) / rows), 32 * rows, 0, s, y, rstd, x, w, b,
                      R, C, eps);
}

// y (f32, or bf16 for RMSNorm with y16) = LayerNorm (ln: b given) or RMSNorm (w may be NULL)
// of x's rows by norm_warp_kernel, rstd (NULL: none) the rows' 1 / rms, when its conditions
// hold (rows of up to 2048 floats, 1024 for LayerNorm, a multiple of 4, every array 16-byte
// aligned); false, nothing launched, otherwise.
static bool norm_warp(struct cuda_impl *im, void *y, bool y16, float *rstd, const float *x,
                      const float *w, const float *b, int64_t R, int64_t C, float eps, bool ln,
                      const char *what)
{
    if (C % 4 != 0 || C > (ln ? 1024 : 2048) || !twc_aligned16(x) || !twc_aligned16(y) ||
        (w && !twc_aligned16(w)) || (b && !twc_aligned16(b)) || (ln && y16))
        return false;
    int i = 0; // float4s a lane: 1, 2, 4, ... (C <= 128 << i)
    while ((int64_t)128 << i < C)
        i++;
    ck(im,
       y16  ? launch_norm_warp<false>(i, im->stream, (__nv_bfloat16 *)y, rstd, x, w, b, R, (int)C,
                                     eps)
       : ln ? launch_norm_warp<true>(i, im->stream, (float *)y, rstd, x, w, b, R, (int)C, eps)
            : launch_norm_warp<false>(i, im->stream, (float *)y, rstd, x, w, b, R, (int)C, eps),
       what);
    return true;
}

bool twc_rmsnorm_warp(struct tw_backend *be, void *y, bool y16, float *rstd, const float *x,
                      const float *w, int64_t R, int64_t C, float eps)
{
    struct cuda_impl *im = impl(be);
    return live(im) &&
           norm_warp(im, y, y16, rstd, x, w, NULL, R, C, eps, false, "rmsnorm (training)");
}

static void cuda_rmsnorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                         const struct tw_tensor *w, float eps)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    int64_t R = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    if (norm_warp(im, f32(y), false, NULL, f32(x), w ? f32(w) : NULL, NULL, R, C, eps, false,
                  "rmsnorm"))
        return;
    ck(im,
       twc_launch(rmsnorm_kernel, (unsigned)R, ROW_THREADS, 0, im->stream, f32(y), f32(x),
                  w ? f32(w) : (const float *)NULL, C, eps),
       "rmsnorm");
}

// An RMSNorm pn before a product: *nm for the matvec to fold it in where fold holds (returned),
// else NULL, with x normalised into pn->xn, which *x then is.
static const struct twc_gemv_norm *prenorm(struct tw_backend *be, const struct tw_prenorm *pn,
                                           bool fold, const struct tw_tensor **x,
                                           struct twc_gemv_norm *nm)
{
    if (!pn)
        return NULL;
    if (fold) {
        *nm = (struct twc_gemv_norm){ f32(pn->w), pn->eps };
        return nm;
    }
    cuda_rmsnorm(be, pn->xn, *x, pn->w, pn->eps);
    *x = pn->xn;
    return NULL;
}

// q, k and v (or any n <= TWC_GEMV_MAX_OUTS products of x) in one launch when decoding, an
// RMSNorm pn (may be NULL) folded in at T = 1.
static void matmul_n_into(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                          const struct tw_tensor *x, const struct tw_tensor *const *ws,
                          const struct tw_tensor *const *biases, const struct tw_prenorm *pn)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    int64_t T = tw_tensor_nrows(x), K = ws[0]->ne[1];
    struct twc_gemv_norm nm;
    const struct twc_gemv_norm *norm = prenorm(be, pn, T == 1 && n <= TWC_GEMV_MAX_OUTS, &x, &nm);
    if (T > TWC_GEMV_MAX_T) { // x rounded to bf16 once for all of them
        const __nv_bfloat16 *xb = x_for(im, x, n, ws);
        for (int i = 0; i < n; i++)
            gemm(im, f32(ys[i]), x, xb, ws[i], biases && biases[i] ? f32(biases[i]) : NULL, false);
        return;
    }
    if (n > TWC_GEMV_MAX_OUTS) {
        for (int i = 0; i < n; i++)
            cuda_matmul(be, ys[i], x, ws[i], biases ? biases[i] : NULL);
        return;
    }
    struct twc_gemv_out o[TWC_GEMV_MAX_OUTS];
    for (int i = 0; i < n; i++)
        o[i] = gemv_out(ws[i], f32(ys[i]), biases ? biases[i] : NULL, NULL);
    ck(im, twc_gemv_multi(n, o, K, f32(x), K, (int)T, norm, gemv_xq(im, n, ws, T, K), im->stream),
       "matmul_n (gemv)");
}

static void cuda_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                          const struct tw_tensor *x, const struct tw_tensor *const *ws,
                          const struct tw_tensor *const *biases)
{
    matmul_n_into(be, n, ys, x, ws, biases, NULL);
}

static bool cuda_norm_matmul_n(struct tw_backend *be, int n, struct tw_tensor *const *ys,
                               const struct tw_tensor *x, const struct tw_tensor *const *ws,
                               const struct tw_tensor *const *biases, const struct tw_prenorm *pn)
{
    matmul_n_into(be, n, ys, x, ws, biases, pn);
    return true;
}

static bool cuda_matmul_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                            const struct tw_tensor *w, const struct tw_tensor *bias)
{
    matmul_into(be, y, x, w, bias, true);
    return true;
}

static void ew(struct tw_backend *be, enum ew_op op, float *y, const float *a, const float *b,
               int64_t n, const char *what);

// y = silu(x wg^T) * (x wu^T), in one matvec launch when decoding, an RMSNorm pn (may be NULL)
// folded in at T = 1.
static void swiglu_into(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        const struct tw_tensor *wg, const struct tw_tensor *wu,
                        const struct tw_prenorm *pn)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    int64_t T = tw_tensor_nrows(x), K = wg->ne[1], N = wg->ne[0];
    bool fused = T <= TWC_GEMV_MAX_T && wg->dtype == wu->dtype && wg->nb[0] == wu->nb[0];
    struct twc_gemv_norm nm;
    const struct twc_gemv_norm *norm = prenorm(be, pn, fused && T == 1, &x, &nm);
    if (fused) {
        ck(im,
           twc_gemv_swiglu(wg->dtype, wg->data, wu->data, wg->nb[0], N, K, f32(x), K, (int)T,
                           f32(y), N, norm, gemv_xq(im, 1, &wg, T, K), im->stream),
           "matmul_swiglu (gemv)");
        return;
    }
    // The up projection into the backend's scratch, then SwiGLU in place on the gate's.
    if (!ensure_scratch(im, (void **)&im->f32s, &im->f32s_bytes, (size_t)(T * N) * 4))
        return;
    struct tw_tensor u = tw_tensor_f32_2d(im->f32s, T, N);
    if (T > TWC_GEMV_MAX_T) { // x rounded to bf16 once for both
        const struct tw_tensor *w2[2] = { wg, wu };
        const __nv_bfloat16 *xb = x_for(im, x, 2, w2);
        gemm(im, f32(y), x, xb, wg, NULL, false);
        gemm(im, im->f32s, x, xb, wu, NULL, false);
    } else {
        cuda_matmul(be, y, x, wg, NULL);
        cuda_matmul(be, &u, x, wu, NULL);
    }
    ew(be, EW_SWIGLU, f32(y), f32(y), im->f32s, T * N, "swiglu");
}

static bool cuda_matmul_swiglu(struct tw_backend *be, struct tw_tensor *y,
                               const struct tw_tensor *x, const struct tw_tensor *wg,
                               const struct tw_tensor *wu)
{
    swiglu_into(be, y, x, wg, wu, NULL);
    return true;
}

static bool cuda_norm_matmul_swiglu(struct tw_backend *be, struct tw_tensor *y,
                                    const struct tw_tensor *x, const struct tw_tensor *wg,
                                    const struct tw_tensor *wu, const struct tw_prenorm *pn)
{
    swiglu_into(be, y, x, wg, wu, pn);
    return true;
}

static void cuda_layernorm(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                           const struct tw_tensor *w, const struct tw_tensor *b, float eps)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    int64_t R = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    if (norm_warp(im, f32(y), false, NULL, f32(x), f32(w), f32(b), R, C, eps, true, "layernorm"))
        return;
    ck(im,
       twc_launch(layernorm_kernel, (unsigned)R, ROW_THREADS, 0, im->stream, f32(y), f32(x),
                  f32(w), f32(b), C, eps),
       "layernorm");
}

// q (T, H, D) and k (T, Hkv, D; Hkv = 0: none, tw_rope) through rope_store_kernel.
static void rope_store(struct cuda_impl *im, struct tw_tensor *q, float *k, const float *v,
                       int64_t Hkv, const int32_t *pos, const struct tw_rope *r, float *k_cache,
                       float *v_cache, const int32_t *rows, const char *what)
{
    int64_t T = q->ne[0], H = q->ne[1], D = q->ne[2];
    int half = r->n_rot / 2;
    if (half > 128) {
        fail(im, what, "head size over 256");
        return;
    }
    const int32_t *d_pos = (const int32_t *)stage(im, pos, (size_t)T * sizeof *pos);
    const float *d_freq =
        half ? (const float *)stage(im, r->inv_freq, (size_t)half * sizeof(float)) : NULL;
    const int32_t *d_rows =
        Hkv ? (const int32_t *)stage(im, rows, (size_t)T * sizeof *rows) : NULL;
    if (!d_pos || (half && !d_freq) || (Hkv && !d_rows) || !live(im))
        return;
    int64_t n = T * ((H + Hkv) * half + Hkv * D);
    // Heads a warp: 8 where that still leaves 16 warps an SM of an H100's 132 (prefill,
    // training), else 1 (decode: its few heads spread over as many warps).
    int hg = T * (H + Hkv) >= (int64_t)ROPE_HEADS * 16 * 132 ? ROPE_HEADS : 1;
    int64_t warps = T * ((H + Hkv + hg - 1) / hg);
    void (*kern)(float *, float *, const float *, const int32_t *, const float *, const int32_t *,
                 float *, float *, int64_t, int, int, int, int, bool, int) =
        half <= 32   ? rope_store_kernel<1>
        : half <= 64 ? rope_store_kernel<2>
                     : rope_store_kernel<4>;
    if (n > 0)
        ck(im,
           twc_launch(kern, (unsigned)((warps + 7) / 8), 256, 0, im->stream, f32(q), k, v, d_pos,
                      d_freq, d_rows, k_cache, v_cache, T, (int)H, (int)Hkv, (int)D, half, r->neox,
                      hg), // 8 warps a block
           what);
}

// rope_train_kernel for x of InT, by the pairs a lane takes; a warp a row, 8 warps a block.
template <typename InT>
static cudaError_t launch_rope_train(struct cuda_impl *im, const InT *x, float *yf,
                                     __nv_bfloat16 *yb, int64_t ldb, const int32_t *pos,
                                     const float *freq, int64_t N, int heads, int D, int half,
                                     bool neox)
{
    void (*k)(const InT *, float *, __nv_bfloat16 *, int64_t, const int32_t *, const float *,
              int64_t, int, int, int, bool) = half <= 32   ? rope_train_kernel<1, InT>
                                              : half <= 64 ? rope_train_kernel<2, InT>
                                                           : rope_train_kernel<4, InT>;
    return twc_launch(k, (unsigned)((N + 7) / 8), 256, 0, im->stream, x, yf, yb, ldb, pos, freq, N,
                      heads, D, half, neox);
}

void twc_rope_train(struct tw_backend *be, float *x, void *xb, int64_t ld, bool keep,
                    const int32_t *pos, int64_t N, int64_t heads, const struct tw_rope *r)
{
    struct cuda_impl *im = impl(be);
    int D = r->head_dim, half = r->n_rot / 2;
    if (half > 128) {
        fail(im, "rope (training)", "head size over 256");
        return;
    }
    const int32_t *d_pos = (const int32_t *)stage(im, pos, (size_t)N * sizeof *pos);
    const float *d_freq =
        half ? (const float *)stage(im, r->inv_freq, (size_t)half * sizeof(float)) : NULL;
    if (!d_pos || (half && !d_freq) || !live(im) || N == 0)
        return;
    __nv_bfloat16 *yb = (__nv_bfloat16 *)xb;
    int64_t ldb = ld ? ld : heads * D;
    ck(im,
       x ? launch_rope_train<float>(im, x, keep ? x : NULL, yb, ldb, d_pos, d_freq, N, (int)heads,
                                    D, half, r->neox)
         : launch_rope_train<__nv_bfloat16>(im, yb, NULL, yb, ldb, d_pos, d_freq, N, (int)heads, D,
                                            half, r->neox), // (x NULL: xb in place)
       "rope (training)");
}

static void cuda_rope(struct tw_backend *be, struct tw_tensor *x, const int32_t *pos,
                      const struct tw_rope *r)
{
    rope_store(impl(be), x, NULL, NULL, 0, pos, r, NULL, NULL, NULL, "rope");
}

static void cuda_rope_store(struct tw_backend *be, struct tw_tensor *q, struct tw_tensor *k,
                            const struct tw_tensor *v, const int32_t *pos, const struct tw_rope *r,
                            float *k_cache, float *v_cache, const int32_t *rows)
{
    rope_store(impl(be), q, f32(k), f32(v), k->ne[1], pos, r, k_cache, v_cache, rows,
               "rope_store");
}

// block_rows: a paged cache's page, else 0 (contiguous caches: one block of max_kv rows each).
static void run_attention(struct cuda_impl *im, struct tw_tensor *out, const struct tw_tensor *q,
                          const struct twc_attn_seq *seqs, int n, const struct tw_attn *a,
                          int32_t block_rows)
{
    int32_t max_rows = 0, max_kv = 0;
    for (int i = 0; i < n; i++) {
        max_rows = seqs[i].n_rows > max_rows ? seqs[i].n_rows : max_rows;
        int32_t kv = seqs[i].n_past + seqs[i].n_rows;
        max_kv = kv > max_kv ? kv : max_kv;
    }
    const struct twc_attn_seq *d_seqs =
        (const struct twc_attn_seq *)stage(im, seqs, (size_t)n * sizeof *seqs);
    if (!d_seqs || !live(im))
        return;
    if (im->mode == CAPTURE) { // recorded for every length the replays will have
        max_kv = im->kv_bound > max_kv ? im->kv_bound : max_kv;
        max_rows = im->rows_bound > max_rows ? im->rows_bound : max_rows;
    }
    if (block_rows <= 0)
        block_rows = max_kv > 0 ? max_kv : 1;
    // A prefill of fresh sequences on the training forward's kernel, outside recordings (a
    // replay of the step may bring cached prefixes).
    int32_t T = (int32_t)q->ne[0];
    if (im->mode == EAGER && im->flash_mode != 0 &&
        twc_attention_flash_ok(seqs, n, T, a, im->flash_mode == 1)) {
        if (ensure_scratch(im, &im->flash, &im->flash_bytes, twc_attention_flash_bytes(T, a)))
            ck(im,
               twc_attention_flash(f32(out), f32(q), d_seqs, n, T, block_rows, a, im->flash,
                                   im->stream),
               "attention");
        return;
    }
    ck(im, twc_attention(f32(out), f32(q), d_seqs, n, max_rows, max_kv, block_rows, a, im->stream),
       "attention");
}

static void cuda_attention(struct tw_backend *be, struct tw_tensor *out, const struct tw_tensor *q,
                           const struct tw_tensor *k, const struct tw_tensor *v,
                           const struct tw_attn *a)
{
    struct cuda_impl *im = impl(be);
    const int32_t *table = im->zero;
    int32_t T = (int32_t)q->ne[0];
    // The queries are positions n_past .. n_past + T - 1 of a cache of S rows; a non-causal
    // (encoder) call attends to all S rows whatever its positions.
    int32_t S = (int32_t)k->ne[0];
    struct twc_attn_seq s = { 0, T, a->causal ? a->n_past : S - T, f32(k), f32(v), table };
    run_attention(im, out, q, &s, 1, a, 0);
}

static bool cuda_attention_seqs(struct tw_backend *be, struct tw_tensor *out,
                                const struct tw_tensor *q, const struct tw_attn_seq *seqs, int n,
                                const struct tw_attn *a)
{
    struct cuda_impl *im = impl(be);
    bool paged = seqs[0].pages != NULL;
    struct twc_attn_seq *ds = (struct twc_attn_seq *)tw_malloc_array((size_t)n, sizeof *ds);
    // Paged caches: the step's page tables, one after another, on the device (the same bytes
    // for every layer of a step: staged once).
    size_t tab_n = paged ? (size_t)n * (size_t)a->max_pages : 0;
    if (tab_n > im->tabs_n) {
        tw_free(im->tabs);
        im->tabs = (int32_t *)tw_malloc_array(tab_n, sizeof *im->tabs);
        im->tabs_n = im->tabs ? tab_n : 0;
    }
    if (!ds || (paged && !im->tabs)) {
        tw_free(ds);
        fail(im, "attention", "out of host memory");
        return true;
    }
    const int32_t *d_tabs = im->zero;
    if (paged && im->tabs_dev && im->tabs_gen == a->pages_gen && a->pages_gen != 0 &&
        im->tabs_epoch == im->stage_epoch && im->tabs_used == tab_n &&
        im->tabs_first == seqs[0].pages) {
        d_tabs = im->tabs_dev; // this step's tables, staged by an earlier layer
    } else if (paged) {
        for (int i = 0; i < n; i++)
            memcpy(im->tabs + (size_t)i * (size_t)a->max_pages, seqs[i].pages,
                   (size_t)a->max_pages * sizeof *im->tabs);
        d_tabs = (const int32_t *)stage(im, im->tabs, tab_n * sizeof *im->tabs);
        im->tabs_dev = d_tabs, im->tabs_gen = a->pages_gen, im->tabs_epoch = im->stage_epoch;
        im->tabs_used = tab_n, im->tabs_first = seqs[0].pages;
    }
    for (int i = 0; i < n; i++) {
        const int32_t *table =
            paged && d_tabs ? d_tabs + (size_t)i * (size_t)a->max_pages : d_tabs;
        ds[i] = (struct twc_attn_seq){ seqs[i].row0, seqs[i].n_rows, seqs[i].n_past,
                                       seqs[i].k,    seqs[i].v,      table };
    }
    if (d_tabs)
        run_attention(im, out, q, ds, n, a, paged ? a->page : 0);
    tw_free(ds);
    return true;
}

static void ew(struct tw_backend *be, enum ew_op op, float *y, const float *a, const float *b,
               int64_t n, const char *what)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    bool vec = twc_aligned16(y) && twc_aligned16(a) && twc_aligned16(b);
    ck(im,
       twc_launch(ew_kernel, twc_grid_for((n + 3) / 4), 256, 0, im->stream, op, y, a, b, n, vec),
       what);
}

// tw_self_attention_add with bf16 weights on the GEMM path: nothing between the products in
// f32. x rounded once; q, k and v straight from their products into bf16 (in the first half of
// s's f32 buffers), their biases added by the attention as it reads them; the attention's
// output written as bf16 rows the o product reads as they are, adding into y. Against the
// composed ops: q, k, v and the attention's output each rounded to bf16 once more (after the
// product, before the bias), within bf16's tolerance. False (the plain ops) otherwise.
static bool cuda_self_attention_add(struct tw_backend *be, struct tw_tensor *y,
                                    const struct tw_tensor *x, const struct tw_tensor *const *w,
                                    const struct tw_tensor *const *b,
                                    const struct tw_attn_seq *seqs, int n, const struct tw_attn *a,
                                    struct tw_tensor *const *s)
{
    struct cuda_impl *im = impl(be);
    int64_t T = tw_tensor_nrows(x), C = tw_tensor_ncols(x);
    int64_t HD = (int64_t)a->n_head * a->head_dim, KD = (int64_t)a->n_head_kv * a->head_dim;
    int32_t max_rows = 0;
    for (int i = 0; i < n; i++)
        max_rows = seqs[i].n_rows > max_rows ? seqs[i].n_rows : max_rows;
    bool ok = T > TWC_GEMV_MAX_T && twc_attention_bf16_ok(a, max_rows) && a->window == 0;
    for (int i = 0; i < 4; i++)
        ok = ok && w[i]->dtype == TW_DTYPE_BF16;
    for (int i = 0; i < 4; i++)
        ok = ok && twc_aligned16(s[i]->data) && (!b || !b[i] || twc_aligned16(b[i]->data));
    if (!ok)
        return false;
    if (!live(im))
        return true;
    const __nv_bfloat16 *xb = x_bf16(im, x);
    if (!xb)
        return true;
    __nv_bfloat16 *qkv[3], *att = (__nv_bfloat16 *)s[3]->data;
    for (int i = 0; i < 3; i++) {
        qkv[i] = (__nv_bfloat16 *)s[i]->data;
        int64_t N = i == 0 ? HD : KD;
        lt_matmul(im, 2, w[i]->data, xb, qkv[i], T, N, C, N, 0.0f, NULL);
    }
    struct twc_attn_seq *ds = (struct twc_attn_seq *)tw_malloc_array((size_t)n, sizeof *ds);
    if (!ds) {
        fail(im, "attention", "out of host memory");
        return true;
    }
    for (int i = 0; i < n; i++) // each sequence's keys: its own rows, one block of them
        ds[i] = (struct twc_attn_seq){ seqs[i].row0,
                                       seqs[i].n_rows,
                                       0,
                                       (const float *)(qkv[1] + (size_t)seqs[i].row0 * KD),
                                       (const float *)(qkv[2] + (size_t)seqs[i].row0 * KD),
                                       im->zero };
    const struct twc_attn_seq *d_seqs =
        (const struct twc_attn_seq *)stage(im, ds, (size_t)n * sizeof *ds);
    tw_free(ds);
    if (!d_seqs || !live(im))
        return true;
    const float *bias[3];
    for (int i = 0; i < 3; i++)
        bias[i] = b && b[i] ? f32(b[i]) : NULL;
    ck(im,
       twc_attention_bf16(att, qkv[0], bias[0], bias[1], bias[2], d_seqs, n, max_rows, max_rows,
                          max_rows, a, im->stream),
       "attention (bf16)");
    lt_matmul(im, 0, w[3]->data, att, f32(y), T, C, HD, C, 1.0f, b && b[3] ? f32(b[3]) : NULL);
    return true;
}

static void cuda_softmax(struct tw_backend *be, struct tw_tensor *x)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    ck(im,
       twc_launch(softmax_kernel, (unsigned)tw_tensor_nrows(x), ROW_THREADS, 0, im->stream, f32(x),
                  tw_tensor_ncols(x)),
       "softmax");
}

static void cuda_swiglu(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *gate,
                        const struct tw_tensor *up)
{
    ew(be, EW_SWIGLU, f32(y), f32(gate), f32(up), tw_tensor_nelem(y), "swiglu");
}

static enum ew_op ew_act(enum tw_act act)
{
    static const enum ew_op of[] = { EW_GELU, EW_GELU_TANH, EW_SILU, EW_TANH, EW_RELU };
    return of[act];
}

typedef void (*bias_act_fn)(__nv_bfloat16 *, const float *, int64_t, int64_t, bool);

// bias_act_bf16_kernel for an activation's op.
static bias_act_fn bias_act_kernel(enum ew_op op)
{
    switch (op) {
    case EW_GELU:
        return bias_act_bf16_kernel<EW_GELU>;
    case EW_GELU_TANH:
        return bias_act_bf16_kernel<EW_GELU_TANH>;
    case EW_SILU:
        return bias_act_bf16_kernel<EW_SILU>;
    case EW_TANH:
        return bias_act_bf16_kernel<EW_TANH>;
    default:
        return bias_act_bf16_kernel<EW_RELU>;
    }
}

static void cuda_act(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                     enum tw_act act)
{
    ew(be, ew_act(act), f32(y), f32(x), NULL, tw_tensor_nelem(y), "act");
}

// y += act(x wu^T + bu) wd^T + bd. With bf16 weights on the GEMM path the hidden layer never
// exists in f32: the up projection writes bf16 into u's memory (half of it), one kernel adds
// the bias and applies act there, and the down projection reads it as it is: 4 bytes an
// element of (T, F) read and written instead of 20 (f32 out, act's read and write, the
// rounding's read and write, the GEMM's read). The hidden layer is rounded to bf16 once more
// than on the composed path (after the product, before the bias), within bf16's tolerance.
// Else the plain ops.
static void cuda_mlp_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                         const struct tw_tensor *wu, const struct tw_tensor *bu, enum tw_act act,
                         const struct tw_tensor *wd, const struct tw_tensor *bd,
                         struct tw_tensor *u)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    int64_t T = tw_tensor_nrows(x), K = wu->ne[1], F = wu->ne[0], N = wd->ne[0];
    if (T <= TWC_GEMV_MAX_T || wu->dtype != TW_DTYPE_BF16 || wd->dtype != TW_DTYPE_BF16 ||
        F % 8 != 0 || (bu && !twc_aligned16(bu->data))) {
        matmul_into(be, u, x, wu, bu, false);
        cuda_act(be, u, u, act);
        matmul_into(be, y, u, wd, bd, true);
        return;
    }
    const __nv_bfloat16 *xb = x_bf16(im, x);
    if (!xb)
        return;
    __nv_bfloat16 *ub = (__nv_bfloat16 *)u->data;
    lt_matmul(im, 2, wu->data, xb, ub, T, F, K, F, 0.0f, NULL);
    dim3 grid, block;
    rows_of_8(T, F, &grid, &block);
    ck(im,
       twc_launch(bias_act_kernel(ew_act(act)), grid, block, 0, im->stream, ub,
                  bu ? (const float *)bu->data : (const float *)NULL, T, F, twc_aligned16(ub)),
       "mlp (bias, act)");
    lt_matmul(im, 0, wd->data, ub, f32(y), T, N, F, N, 1.0f, bd ? f32(bd) : NULL);
}

static void cuda_add(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *a,
                     const struct tw_tensor *b)
{
    ew(be, EW_ADD, f32(y), f32(a), f32(b), tw_tensor_nelem(y), "add");
}

// Row blockIdx.y of y (n, C) from the rows seg[2 i], seg[2 i + 1] (start, count) of x (., C).
static __global__ void pool_seqs_kernel(float *y, const float *x, const int32_t *seg, int64_t C,
                                        enum tw_pooling mode)
{
    twc_pdl_enter();
    int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x, i = blockIdx.y;
    if (c >= C)
        return;
    const float *xs = x + (int64_t)seg[2 * i] * C;
    int64_t T = seg[2 * i + 1];
    float acc = mode == TW_POOL_MAX ? -INFINITY : 0.0f;
    if (mode == TW_POOL_CLS)
        acc = xs[c];
    else if (mode == TW_POOL_LAST)
        acc = xs[(T - 1) * C + c];
    else
        for (int64_t t = 0; t < T; t++)
            acc = mode == TW_POOL_MAX ? fmaxf(acc, xs[t * C + c]) : acc + xs[t * C + c];
    y[i * C + c] = mode == TW_POOL_MEAN ? acc / (float)T : acc;
}

static void cuda_pool_seqs(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                           const struct tw_attn_seq *seqs, int n, enum tw_pooling mode)
{
    struct cuda_impl *im = impl(be);
    int32_t *seg = (int32_t *)tw_malloc_array(2 * (size_t)n, sizeof *seg);
    if (!seg) {
        fail(im, "pool", "out of host memory");
        return;
    }
    for (int i = 0; i < n; i++)
        seg[2 * i] = seqs[i].row0, seg[2 * i + 1] = seqs[i].n_rows;
    const int32_t *d_seg = (const int32_t *)stage(im, seg, 2 * (size_t)n * sizeof *seg);
    tw_free(seg);
    if (!d_seg || !live(im))
        return;
    int64_t C = tw_tensor_ncols(x);
    dim3 grid((unsigned)((C + 255) / 256), (unsigned)n);
    ck(im, twc_launch(pool_seqs_kernel, grid, 256, 0, im->stream, f32(y), f32(x), d_seg, C, mode),
       "pool");
}

// One sequence: the kernel of a batch of them.
static void cuda_pool(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                      enum tw_pooling mode)
{
    struct tw_attn_seq one = { 0, (int32_t)tw_tensor_nrows(x), 0, NULL, NULL, NULL };
    cuda_pool_seqs(be, y, x, &one, 1, mode);
}

static void cuda_l2norm(struct tw_backend *be, struct tw_tensor *x)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    ck(im,
       twc_launch(l2norm_kernel, (unsigned)tw_tensor_nrows(x), ROW_THREADS, 0, im->stream, f32(x),
                  tw_tensor_ncols(x)),
       "l2norm");
}

static __global__ void set_rows_kernel(float *dst, const float *src, const int32_t *rows,
                                       int64_t T, int64_t C)
{
    twc_pdl_enter();
    int64_t n = T * C;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[(int64_t)rows[i / C] * C + i % C] = src[i];
}

static void cuda_set_rows(struct tw_backend *be, float *dst, const struct tw_tensor *src,
                          const int32_t *rows)
{
    struct cuda_impl *im = impl(be);
    int64_t T = tw_tensor_nrows(src), C = tw_tensor_ncols(src);
    const int32_t *d_rows = (const int32_t *)stage(im, rows, (size_t)T * sizeof *rows);
    if (!d_rows || !live(im))
        return;
    ck(im,
       twc_launch(set_rows_kernel, twc_grid_for(T * C), 256, 0, im->stream, dst, f32(src), d_rows,
                  T, C),
       "set_rows");
}

// ---- top-k: topk.cu's kernels write the R * k values and ids straight into pinned host
// memory (a copy after them would cost its own few microseconds of latency).

static void cuda_topk(struct tw_backend *be, const struct tw_tensor *x, int32_t k, float *vals,
                      int32_t *ids)
{
    struct cuda_impl *im = impl(be);
    if (!live(im))
        return;
    if (im->mode == CAPTURE) { // it waits for the device: nothing a graph can hold
        fail(im, "topk", "not allowed in a graph");
        return;
    }
    int64_t R = tw_tensor_nrows(x), V = tw_tensor_ncols(x);
    size_t nv = (size_t)(R * k) * sizeof *vals, out = nv + (size_t)(R * k) * sizeof *ids;
    if (im->topk_host_bytes < out) {
        cudaFreeHost(im->topk_host);
        im->topk_host = im->topk_mapped = NULL;
        im->topk_host_bytes = 0;
        if (!ck(im, cudaHostAlloc(&im->topk_host, out, cudaHostAllocMapped), "topk") ||
            !ck(im, cudaHostGetDevicePointer(&im->topk_mapped, im->topk_host, 0), "topk"))
            return;
        im->topk_host_bytes = out;
    }
    size_t scratch = twc_topk_scratch(R, V, k);
    void *d = scratch ? cuda_alloc(be, scratch) : NULL;
    if (scratch && !d) {
        fail(im, "topk", tw_error_msg());
        return;
    }
    float *dv = (float *)im->topk_mapped;
    int32_t *di = (int32_t *)((char *)im->topk_mapped + nv);
    if (ck(im, twc_topk(f32(x), R, V, k, dv, di, d, im->stream), "topk") &&
        ck(im, cudaStreamSynchronize(im->stream), "topk")) {
        memcpy(vals, im->topk_host, nv);
        memcpy(ids, (char *)im->topk_host + nv, out - nv);
    }
    cuda_release(be, d);
}

// ---- graphs: a recorded step is its executable graph and the scratch generation it read.

struct cuda_graph {
    cudaGraphExec_t exec;
    unsigned gen;
};

static void graph_destroy(struct cuda_impl *im, struct cuda_graph *g)
{
    ck(im, cudaStreamSynchronize(im->stream), "graph");
    cudaGraphExecDestroy(g->exec);
    tw_free(g);
}

static int cuda_graph_begin(struct tw_backend *be, void **graph, int32_t kv_bound,
                            int32_t rows_bound)
{
    struct cuda_impl *im = impl(be);
    // The staging slots are rewritten from the start: what read them must be done.
    ck(im, cudaStreamSynchronize(im->stream), "graph");
    int rc = report(im);
    if (rc != 0)
        return rc;
    im->stage_off = 0;
    im->stage_epoch++;
    im->n_recent = 0;
    im->kv_bound = kv_bound;
    im->rows_bound = rows_bound;
    struct cuda_graph *g = (struct cuda_graph *)*graph;
    if (g && g->gen != im->scratch_gen) { // it read scratch that has moved since: record anew
        graph_destroy(im, g);
        *graph = NULL;
    } else if (g) {
        im->mode = PREP;
        return 0;
    }
    if (!ck(im, cudaStreamBeginCapture(im->stream, cudaStreamCaptureModeThreadLocal), "graph"))
        return report(im);
    im->mode = CAPTURE;
    return 0;
}

static int cuda_graph_end(struct tw_backend *be, void **graph)
{
    struct cuda_impl *im = impl(be);
    if (im->mode == PREP) {
        im->mode = EAGER;
        if (im->err) // a staging failure: the replay would read stale arrays
            return report(im);
        ck(im, cudaGraphLaunch(((struct cuda_graph *)*graph)->exec, im->stream), "graph launch");
        return 0;
    }
    im->mode = EAGER;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(im->stream, &g);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && !im->err)
        e = cudaGraphInstantiate(&exec, g, 0);
    if (g)
        cudaGraphDestroy(g);
    struct cuda_graph *cg = NULL;
    if (e == cudaSuccess && !im->err) {
        cg = (struct cuda_graph *)tw_malloc(sizeof *cg);
        if (!cg)
            e = cudaErrorMemoryAllocation;
    }
    if (e != cudaSuccess || im->err) {
        // Nothing of the step ran: the caller runs it again op by op.
        cudaGetLastError();
        char why[300];
        snprintf(why, sizeof why, "%s", im->err ? im->msg : cudaGetErrorString(e));
        im->err = 0;
        if (exec)
            cudaGraphExecDestroy(exec);
        return tw_error_set(TW_EUNSUPPORTED, "cuda: the step could not be recorded (%s)", why);
    }
    *cg = (struct cuda_graph){ exec, im->scratch_gen };
    *graph = cg;
    ck(im, cudaGraphLaunch(exec, im->stream), "graph launch");
    return 0;
}

static void cuda_graph_free(struct tw_backend *be, void *graph)
{
    graph_destroy(impl(be), (struct cuda_graph *)graph);
}

// ---- measurements for the benchmarks

static __global__ void fill_random_bf16(__nv_bfloat16 *p, int64_t n, uint32_t seed)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 16, h *= 0x7feb352du, h ^= h >> 15;
        p[i] = __float2bfloat16(((float)(h >> 8) * (1.0f / 16777216.0f) - 0.5f) * 0.1f);
    }
}

static double elapsed_ms(struct cuda_impl *im, cudaEvent_t a, cudaEvent_t b)
{
    float ms = 0;
    ck(im, cudaEventSynchronize(b), "timing");
    ck(im, cudaEventElapsedTime(&ms, a, b), "timing");
    return ms;
}

extern "C" size_t tw_cuda_mem_used(struct tw_backend *be)
{
    struct cuda_impl *im = impl(be);
    size_t free_b = 0, total_b = 0;
    if (!ck(im, cudaSetDevice(im->device), "memory") ||
        !ck(im, cudaMemGetInfo(&free_b, &total_b), "memory"))
        return 0;
    return total_b - free_b;
}

extern "C" double tw_cuda_copy_bandwidth(struct tw_backend *be, size_t bytes, int reps)
{
    struct cuda_impl *im = impl(be);
    void *a = cuda_alloc(be, bytes), *b = cuda_alloc(be, bytes);
    cudaEvent_t e0, e1;
    double best = 1e30;
    if (a && b && ck(im, cudaEventCreate(&e0), "timing") &&
        ck(im, cudaEventCreate(&e1), "timing")) {
        ck(im, cudaMemsetAsync(a, 1, bytes, im->stream), "copy bandwidth");
        for (int r = 0; r <= reps; r++) {
            cudaEventRecord(e0, im->stream);
            cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, im->stream);
            cudaEventRecord(e1, im->stream);
            double ms = elapsed_ms(im, e0, e1);
            if (r > 0 && ms < best) // the first is a warm-up
                best = ms;
        }
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    }
    cuda_release(be, a);
    cuda_release(be, b);
    return im->err || best >= 1e30 ? 0.0 : 2.0 * (double)bytes / (best * 1e-3) / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

extern "C" double tw_cuda_gemm_rate(struct tw_backend *be, int64_t M, int64_t N, int64_t K,
                                    int reps)
{
    struct cuda_impl *im = impl(be);
    // D (M, N) f32 = A (M, K) B (N, K)^T in row-major terms, as cuda_matmul forms y = x w^T.
    __nv_bfloat16 *x = (__nv_bfloat16 *)cuda_alloc(be, (size_t)(M * K) * 2);
    __nv_bfloat16 *w = (__nv_bfloat16 *)cuda_alloc(be, (size_t)(N * K) * 2);
    float *y = (float *)cuda_alloc(be, (size_t)(M * N) * 4);
    double *ms = (double *)tw_malloc_array((size_t)reps + 1, sizeof(double));
    cudaEvent_t e0, e1;
    double med = 0;
    if (x && w && y && ms && ck(im, cudaEventCreate(&e0), "timing") &&
        ck(im, cudaEventCreate(&e1), "timing")) {
        fill_random_bf16<<<twc_grid_for(M * K), 256, 0, im->stream>>>(x, M * K, 1);
        fill_random_bf16<<<twc_grid_for(N * K), 256, 0, im->stream>>>(w, N * K, 2);
        for (int r = 0; r <= reps; r++) {
            cudaEventRecord(e0, im->stream);
            lt_matmul(im, 0, w, x, y, M, N, K, N, 0.0f, NULL);
            cudaEventRecord(e1, im->stream);
            ms[r] = elapsed_ms(im, e0, e1);
        }
        qsort(ms + 1, (size_t)reps, sizeof *ms, cmp_double); // the first is a warm-up
        med = ms[1 + reps / 2];
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    }
    tw_free(ms);
    cuda_release(be, x);
    cuda_release(be, w);
    cuda_release(be, y);
    return im->err || med <= 0 ? 0.0
                               : 2.0 * (double)M * (double)N * (double)K / (med * 1e-3) / 1e12;
}

// ---- for grad.cu (kernels.cuh).

bool twc_check_blas(struct tw_backend *be, cublasStatus_t st, const char *what)
{
    return ck_lt(impl(be), st, what);
}

bool twc_scratch(struct tw_backend *be, void **p, size_t *cap, size_t bytes)
{
    return ensure_scratch(impl(be), p, cap, bytes);
}

cudaError_t twc_to_bf16_2d(__nv_bfloat16 *y, int64_t ldy, const float *x, int64_t ldx,
                           int64_t rows, int64_t cols, cudaStream_t s)
{
    if (rows <= 0 || cols <= 0)
        return cudaSuccess;
    bool vec =
        twc_aligned16(x) && twc_aligned16(y) && (rows == 1 || (ldx % 4 == 0 && ldy % 8 == 0));
    dim3 grid, block;
    rows_of_8(rows, cols, &grid, &block);
    return twc_launch(to_bf16_kernel, grid, block, 0, s, y, ldy, x, ldx, rows, cols, vec);
}

cudaError_t twc_to_bf16(__nv_bfloat16 *y, const float *x, int64_t n, cudaStream_t s)
{
    return twc_to_bf16_2d(y, n, x, n, 1, n, s);
}

cudaStream_t twc_stream(struct tw_backend *be)
{
    return impl(be)->stream;
}

bool twc_check(struct tw_backend *be, cudaError_t e, const char *what)
{
    return ck(impl(be), e, what);
}

void twc_fail(struct tw_backend *be, const char *what, const char *why)
{
    fail(impl(be), what, why);
}

bool twc_failed(struct tw_backend *be)
{
    return impl(be)->err != 0;
}

void **twc_grad_slot(struct tw_backend *be)
{
    return &impl(be)->grad;
}

static void cuda_free(struct tw_backend *be)
{
    struct cuda_impl *im = impl(be);
    cudaSetDevice(im->device);
    if (im->stream)
        cudaStreamSynchronize(im->stream);
    twc_grad_free(im->grad);
    for (size_t i = 0; i < im->n_blocks; i++)
        cudaFree(im->blocks[i].p);
    tw_free(im->blocks);
    cudaFree(im->xbf);
    cudaFree(im->tile);
    cudaFree(im->f32s);
    cudaFree(im->xq);
    cudaFree(im->flash);
    cudaFree(im->lt_ws);
    cudaFree(im->stage_dev);
    cudaFree(im->zero);
    tw_free(im->tabs);
    for (int i = 0; i < im->n_plans; i++)
        plan_destroy(&im->plans[i]);
    cudaFreeHost(im->stage_host);
    cudaFreeHost(im->topk_host);
    if (im->lt)
        cublasLtDestroy(im->lt);
    if (im->stream)
        cudaStreamDestroy(im->stream);
    tw_free(im);
    tw_free(be);
}

static const struct tw_backend_ops cuda_ops = {
    .name = "cuda",
    .free = cuda_free,
    .embedding = cuda_embedding,
    .matmul = cuda_matmul,
    .matmul_n = cuda_matmul_n,
    .rmsnorm = cuda_rmsnorm,
    .layernorm = cuda_layernorm,
    .rope = cuda_rope,
    .attention = cuda_attention,
    .attention_seqs = cuda_attention_seqs,
    .softmax = cuda_softmax,
    .swiglu = cuda_swiglu,
    .act = cuda_act,
    .add = cuda_add,
    .pool = cuda_pool,
    .pool_seqs = cuda_pool_seqs,
    .l2norm = cuda_l2norm,
    .set_rows = cuda_set_rows,
    .topk = cuda_topk,
    .norm_matmul_n = cuda_norm_matmul_n,
    .norm_matmul_swiglu = cuda_norm_matmul_swiglu,
    .rope_store = cuda_rope_store,
    .matmul_add = cuda_matmul_add,
    .matmul_swiglu = cuda_matmul_swiglu,
    .mlp_add = cuda_mlp_add,
    .self_attention_add = cuda_self_attention_add,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_free = cuda_graph_free,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .sync = cuda_sync,
    .grad = &twc_grad_ops,
};

extern "C" int tw_backend_cuda_new(int device, struct tw_backend **out)
{
    int n = tw_cuda_device_count();
    if (device < 0 || device >= n)
        return tw_error_set(TW_EUNSUPPORTED, "cuda: no GPU %d (%d visible)", device, n);
    struct tw_backend *be = (struct tw_backend *)tw_calloc(1, sizeof *be);
    struct cuda_impl *im = (struct cuda_impl *)tw_calloc(1, sizeof *im);
    if (!be || !im) {
        tw_free(be);
        tw_free(im);
        return tw_error_set(TW_ENOMEM, "cuda backend: out of memory");
    }
    im->device = device;
    const char *f32x = getenv("TWIN_GEMV_F32X");
    im->xq_off = f32x && strcmp(f32x, "0") != 0;
    const char *flash = getenv("TWIN_PREFILL_FLASH");
    im->flash_mode = flash ? (strcmp(flash, "0") == 0 ? 0 : 1) : -1;
    be->ops = &cuda_ops;
    be->device = TW_DEVICE_CUDA;
    be->n_threads = 1;
    be->impl = im;
    bool ok = ck(im, cudaSetDevice(device), "set device") &&
              ck(im, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking), "stream") &&
              ck_lt(im, cublasLtCreate(&im->lt), "cuBLASLt") &&
              ck(im, cudaMalloc(&im->lt_ws, LT_WORKSPACE), "workspace") &&
              ck(im, cudaMalloc(&im->tile, TILE_ELEMS * sizeof *im->tile), "tile") &&
              ck(im, cudaMalloc(&im->xq, XQ_BYTES), "int8 scratch") &&
              ck(im, cudaMallocHost(&im->stage_host, STAGE_BYTES), "staging") &&
              ck(im, cudaMalloc(&im->stage_dev, STAGE_BYTES), "staging") &&
              ck(im, cudaMalloc(&im->zero, sizeof *im->zero), "tables") &&
              ck(im, cudaMemset(im->zero, 0, sizeof *im->zero), "tables");
    if (!ok) {
        int rc = report(im);
        cuda_free(be);
        return rc;
    }
    im->xq_bytes = XQ_BYTES;
    *out = be;
    return 0;
}

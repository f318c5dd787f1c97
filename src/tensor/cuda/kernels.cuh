// The CUDA backend's kernel launchers, shared by its .cu files (C++ only; the C side sees
// tensor/cuda.h). Every launcher enqueues on `s` and returns the launch's error
// (cudaGetLastError after the launch), never synchronising. Pointers are device pointers
// unless a comment says host. Activations are f32 (as on the CPU backends); weights keep
// their dtype's layout (tensor/dtype.h, ggml's blocks, rows packed with `row_bytes` between
// row starts), uploaded as they are stored.
#ifndef TW_TENSOR_CUDA_KERNELS_CUH
#define TW_TENSOR_CUDA_KERNELS_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "tensor/backend.h"
#include "tensor/dtype.h"
}

// ---- programmatic dependent launch (sm_90). A kernel launched through twc_launch may be
// started while the kernel before it on the stream is still running (its launch and its
// prologue overlap that kernel's tail, also inside a CUDA graph): before it touches memory
// that work before it writes or reads, it calls twc_pdl_enter(), which waits for that work to
// be complete and visible, then lets the next kernel be launched in turn. Every kernel
// launched through twc_launch calls it (a kernel that did not could finish before its
// predecessor, and the one after it, waiting only for it, would read too early). Off (plain
// stream order) before sm_90 and with TWIN_PDL=0 in the environment.

// Whether twc_launch asks for programmatic dependent launch (read once, device.cu).
bool twc_pdl_on(void);
// The current device's SMs into *n_sm (device.cu).
cudaError_t twc_sm_count(int *n_sm);

__device__ __forceinline__ void twc_pdl_enter(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches kernel k<<<grid, block, smem, s>>>(args...) with programmatic dependent launch
// when twc_pdl_on(); returns the launch's error.
template <typename... P, typename... A>
cudaError_t twc_launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                       A &&...args)
{
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = twc_pdl_on() ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k, static_cast<A &&>(args)...);
}

// SiLU, v sigmoid(v), as the engine computes it everywhere (SwiGLU is twc_silu(g) * u).
static __device__ __forceinline__ float twc_silu(float v)
{
    return v / (1.0f + expf(-v));
}

// ---- reductions: the sum (max) of v over a warp's lanes or the block's threads, every
// thread getting it; red holds a float per warp (shared memory); blockDim a multiple of 32.

static __device__ __forceinline__ float twc_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float twc_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ float twc_block_sum(float v, float *red)
{
    v = twc_warp_sum(v);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads(); // red may still be read by a previous call
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    return twc_warp_sum(lane < nw ? red[lane] : 0.0f);
}

static __device__ __forceinline__ float twc_block_max(float v, float *red)
{
    v = twc_warp_max(v);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
    __syncthreads();
    if (lane == 0)
        red[warp] = v;
    __syncthreads();
    return twc_warp_max(lane < nw ? red[lane] : -INFINITY);
}

// 2^x flushing results below 2^-126 to zero: one MUFU.EX2 (exp2f's ex2.approx without .ftz
// adds a scaling of small results around it, three instructions more an element): for the
// softmax weights of the bf16 attention kernels, where such weights count for nothing.
static __device__ __forceinline__ float twc_exp2_ftz(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// ---- training attention over packed examples (grad.cu, fattn.cu): the first key row-local
// query t sees, start (its example's first token) or the window's.
static __device__ __forceinline__ int twc_key_lo_at(int start, int t, int window)
{
    return window > 0 && t - window + 1 > start ? t - window + 1 : start;
}

// The same, the start read from start_row[t].
static __device__ __forceinline__ int twc_key_lo(const int32_t *start_row, int t, int window)
{
    return twc_key_lo_at(start_row[t], t, window);
}

// ---- warp-level bf16 tensor-core helpers (attn.cu, fattn.cu). Fragment layouts are the PTX
// ISA's ("Matrix Fragments for mma.m16n8k16", bf16; lane = 4 * g + c): A (16 x 16, row)
// a0 = (g, 2c..2c+1), a1 = (g + 8, 2c..), a2 = (g, 2c + 8..), a3 = (g + 8, 2c + 8..); B (16 x 8,
// col) b0 = (2c..2c+1, g), b1 = (2c + 8.., g); C/D (16 x 8) c0..c1 = (g, 2c..2c+1), c2..c3 =
// (g + 8, 2c..). ldmatrix.x4 reads four 8 x 8 bf16 matrices, lanes 8i .. 8i + 7 naming the rows
// of matrix i, and hands lane 4 * g + c the pair (g, 2c..2c+1) of each (.trans: (2c..2c+1, g)).

// Two floats as a bf16 pair, lo in the low half.
static __device__ __forceinline__ uint32_t twc_pack_bf16(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(const uint32_t *)&h;
}

// A bf16 pair (twc_pack_bf16's word: lo in the low half) as two floats: a bf16 is a float's
// upper 16 bits.
static __device__ __forceinline__ float2 twc_unpack_bf16(uint32_t w)
{
    return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}

// The A fragment (16 x 16, bf16) of two C/D accumulator tiles side by side: columns 0..7 from
// lo, 8..15 from hi (a product's f32 result feeding the next product, as P in P V).
static __device__ __forceinline__ void twc_acc_to_a(uint32_t (&a)[4], const float (&lo)[4],
                                                    const float (&hi)[4])
{
    a[0] = twc_pack_bf16(lo[0], lo[1]);
    a[1] = twc_pack_bf16(lo[2], lo[3]);
    a[2] = twc_pack_bf16(hi[0], hi[1]);
    a[3] = twc_pack_bf16(hi[2], hi[3]);
}

static __device__ __forceinline__ void twc_ldsm_x4(uint32_t (&r)[4], const uint16_t *p)
{
    uint32_t at = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(at)
                 : "memory");
}

static __device__ __forceinline__ void twc_ldsm_x4_t(uint32_t (&r)[4], const uint16_t *p)
{
    uint32_t at = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(at)
                 : "memory");
}

// 16 bytes from global src to shared dst without the registers, asynchronously (cp.async,
// sm_80 on): the first n bytes of src (n = 16 or 0: zeros, src still a valid address).
// Copies issued since the last commit form a group; twc_cp_wait<N> waits until at most N
// groups are in flight (then a barrier makes the data visible to the block).
static __device__ __forceinline__ void twc_cp16(void *dst, const void *src, int n)
{
    uint32_t at = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(at), "l"(src), "r"(n)
                 : "memory");
}

// The same for 4 bytes (n: 4, or 0 to zero-fill), through L1.
static __device__ __forceinline__ void twc_cp4(void *dst, const void *src, int n)
{
    uint32_t at = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(at), "l"(src), "r"(n)
                 : "memory");
}

static __device__ __forceinline__ void twc_cp_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

template <int N> static __device__ __forceinline__ void twc_cp_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// c += a b for one 16 x 8 x 16 step.
static __device__ __forceinline__ void twc_mma_bf16(float (&c)[4], const uint32_t (&a)[4],
                                                    uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---- gemv.cu: decode-sized matmuls read the weights once, straight from their blocks.

// The most activation rows twc_gemv takes in one call.
#define TWC_GEMV_MAX_T 8

// y[t * ldy + n] = sum_k w[n][k] * x[t * ldx + k] (+ bias[n]) for t < T (1..TWC_GEMV_MAX_T)
// and n < N; w has N rows of K elements of dtype dt (K a multiple of its block size), row n
// starting at (const char *)w + n * row_bytes. bias may be NULL.
cudaError_t twc_gemv(enum tw_dtype dt, const void *w, size_t row_bytes, int64_t N, int64_t K,
                     const float *x, int64_t ldx, int T, float *y, int64_t ldy, const float *bias,
                     cudaStream_t s);

// One output of twc_gemv_multi: y (T, ldy) = res + x w^T (+ bias), w (N, K) of dtype dt with
// rows row_bytes apart; bias and res may be NULL; res may alias y (a residual add in place).
struct twc_gemv_out {
    enum tw_dtype dt;
    const void *w;
    size_t row_bytes;
    int64_t N;
    float *y;
    int64_t ldy;
    const float *bias, *res;
};

// The most outputs twc_gemv_multi takes.
#define TWC_GEMV_MAX_OUTS 4

// An RMSNorm of x folded into the products (tw_prenorm): they see x / sqrt(mean(x^2) + eps)
// * w (w: K floats), at T = 1 only.
struct twc_gemv_norm {
    const float *w;
    float eps;
};

// n (1..TWC_GEMV_MAX_OUTS) matrix-vector products of the same x (T rows, ldx apart, K
// columns) in one launch: q, k and v, or gate and up; or one with a residual add (o, down).
// norm: NULL, or (T = 1) the RMSNorm applied to x first. xq: NULL (x read as floats), or
// device scratch of twc_gemv_xq_bytes(K, T) bytes (16-byte aligned) into which x is rounded
// to int8 blocks for the outputs that twc_gemv_int8 names (the CPU's rounding,
// cpu_qdot.h: its results, not the float ones, are what these outputs then give).
cudaError_t twc_gemv_multi(int n, const struct twc_gemv_out *outs, int64_t K, const float *x,
                           int64_t ldx, int T, const struct twc_gemv_norm *norm, void *xq,
                           cudaStream_t s);

// Whether dtype dt's matvec of T rows takes int8 activations (Q4_0 and Q4_K; Q8_0 from T = 2
// on), and the bytes of scratch they need for T rows of K.
bool twc_gemv_int8(enum tw_dtype dt, int T);
size_t twc_gemv_xq_bytes(int64_t K, int T);

// SwiGLU fused with its two products: y[t * ldy + n] = silu(wg[n] . x[t]) * (wu[n] . x[t]),
// wg and wu (N, K) of dtype dt with rows row_bytes apart (LLaMA's gate and up); norm and xq
// as twc_gemv_multi's.
cudaError_t twc_gemv_swiglu(enum tw_dtype dt, const void *wg, const void *wu, size_t row_bytes,
                            int64_t N, int64_t K, const float *x, int64_t ldx, int T, float *y,
                            int64_t ldy, const struct twc_gemv_norm *norm, void *xq,
                            cudaStream_t s);

// ---- dequant.cu: weights to floats, for the GEMMs and the embedding lookup.

// out (rows, K) bf16, contiguous = rows [0, rows) of w (dtype dt, as twc_gemv's w).
cudaError_t twc_dequant_bf16(enum tw_dtype dt, const void *w, size_t row_bytes, int64_t rows,
                             int64_t K, __nv_bfloat16 *out, cudaStream_t s);
// y (T, K) f32: y[t] = row ids[t] of table (dtype dt, rows of K elements, row_bytes apart);
// ids (T) on the device, each < the table's rows (the caller checked).
cudaError_t twc_get_rows(enum tw_dtype dt, const void *table, size_t row_bytes, int64_t K,
                         const int32_t *ids, int64_t T, float *y, cudaStream_t s);

// ---- attn.cu: attention over one or several sequences' caches.

// One sequence's share of a step (tw_attn_seq's meaning): query rows row0 .. row0 + n_rows - 1
// of q and out at positions n_past .. n_past + n_rows - 1, attending to its cache rows
// 0 .. n_past + n_rows - 1 (already holding this step's keys and values). The cache is read
// through a block table: cache row j of the sequence is row j % block_rows of block
// block_table[j / block_rows], and a block holds block_rows rows of (n_head_kv, head_dim)
// floats starting at k_pool + block * block_rows * n_head_kv * head_dim (likewise v_pool).
// A contiguous cache is a table 0, 1, 2, ... over k_pool = the cache's first row.
struct twc_attn_seq {
    int32_t row0, n_rows, n_past;
    const float *k_pool, *v_pool;
    const int32_t *block_table; // device
};

// out (T, n_head * head_dim) f32 for q (T, n_head, head_dim): softmax(q k^T * a->scale + mask)
// v per head and sequence, with a->causal, a->window (Mistral's rule, backend.h) and grouped
// queries (query head h reads kv head h / (n_head / n_head_kv)); a->n_past is ignored (each
// sequence has its own). With a->lowp, prefill-sized work may run on bf16 tensor cores
// (scores and P V with f32 accumulators); without it, f32 throughout. seqs (n_seq) on the
// device; max_rows >= every n_rows and max_kv >= every n_past + n_rows (host-side bounds for
// the grid). Non-causal attention (BERT) is one sequence with n_past 0 attending to all its
// rows.
cudaError_t twc_attention(float *out, const float *q, const struct twc_attn_seq *seqs, int n_seq,
                          int32_t max_rows, int32_t max_kv, int32_t block_rows,
                          const struct tw_attn *a, cudaStream_t s);

// twc_attention with q (T, n_head, head_dim), the pools and out in bf16 (seqs' k_pool and
// v_pool point at bf16 rows, cast), the biases bq (n_head * head_dim) and bk, bv (n_head_kv *
// head_dim; each may be NULL) added to q's, k's and v's rows as they are read: the encoder's
// attention between its bf16 products (tw_self_attention_add). Only on the tensor-core path
// (twc_attention_bf16_ok: a->lowp, head sizes up to 128 and a multiple of 4, enough rows);
// the keys are never split.
bool twc_attention_bf16_ok(const struct tw_attn *a, int32_t max_rows);
cudaError_t twc_attention_bf16(__nv_bfloat16 *out, const __nv_bfloat16 *q, const float *bq,
                               const float *bk, const float *bv, const struct twc_attn_seq *seqs,
                               int n_seq, int32_t max_rows, int32_t max_kv, int32_t block_rows,
                               const struct tw_attn *a, cudaStream_t s);

// Prefill of fresh sequences (every one with n_past 0) on fattn.cu's forward: whether the
// step (T rows, host copies of its sequences) qualifies (lowp, causal, head size 32, 64 or 128,
// at least 64 rows, and unless any_size enough heads and rows to fill the GPU), the device
// scratch it needs, and the attention itself (seqs on the device, as twc_attention's).
bool twc_attention_flash_ok(const struct twc_attn_seq *seqs, int n_seq, int32_t T,
                            const struct tw_attn *a, bool any_size);
size_t twc_attention_flash_bytes(int32_t T, const struct tw_attn *a);
cudaError_t twc_attention_flash(float *out, const float *q, const struct twc_attn_seq *seqs,
                                int n_seq, int32_t T, int32_t block_rows, const struct tw_attn *a,
                                void *scratch, cudaStream_t s);

// ---- topk.cu: the k largest of each row, for sampling without the whole row.

// Device bytes of scratch twc_topk needs for R rows of V values and k.
size_t twc_topk_scratch(int64_t R, int64_t V, int k);
// vals, ids (R, k) = tw_topk's answer for x (R, V) f32 (1 <= k <= TW_TOPK_MAX, k <= V): each
// row's k largest values, descending, equal ones by ascending id, NaN as -inf. vals and ids
// may be mapped host memory (the final kernel writes them once). scratch holds
// twc_topk_scratch(R, V, k) bytes (NULL when that is 0).
cudaError_t twc_topk(const float *x, int64_t R, int64_t V, int k, float *vals, int32_t *ids,
                     void *scratch, cudaStream_t s);

// ---- fattn.cu: training attention (tensor/grad.h's attn_fwd / attn_bwd) fused on bf16
// tensor cores, for lowp models. Shapes as struct tw_attn_shape: q, out, dq, dout (B, T, H, D);
// k, v, dk, dv (B, T, Hkv, D); lse (B, T, H); start (B, T) on the device. q, k, v (and the
// backward's dout_b) are bf16 copies of the f32 activations.

// Whether the fused kernels take head size D (32, 64, 128).
bool twc_flash_ok(int D);
// out: f32, or (out NULL) out_b as bf16 (the f32 values rounded).
cudaError_t twc_flash_fwd(float *out, __nv_bfloat16 *out_b, float *lse, const __nv_bfloat16 *q,
                          const __nv_bfloat16 *k, const __nv_bfloat16 *v, const int32_t *start,
                          int B, int T, int H, int Hkv, int D, float scale, int window,
                          cudaStream_t s);
// dq, dk, dv += the gradients (= with assign); the forward's output as out (f32) or (out NULL)
// out_b (bf16); dout_b: room for dout's bf16 copy (the backward rounds it there); delta: B * T
// * H floats of scratch, part:
// twc_flash_bwd_scratch's floats (NULL when that is 0: the backward then takes no split, and
// dQ its own kernel).
cudaError_t twc_flash_bwd(float *dq, float *dk, float *dv, const float *dout,
                          __nv_bfloat16 *dout_b, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                          const __nv_bfloat16 *v, const float *out, const __nv_bfloat16 *out_b,
                          const float *lse, const int32_t *start, float *delta, float *part, int B,
                          int T, int H, int Hkv, int D, float scale, int window, bool assign,
                          cudaStream_t s);
// The parts dK/dV's blocks of a KV head and key tile are split into (over the query heads),
// and the floats of scratch the backward takes: dQ's counters (with TWIN_FA_DQ=1) and the
// parts' partials.
int twc_flash_bwd_split(int B, int T, int H, int Hkv);
size_t twc_flash_bwd_scratch(int B, int T, int H, int Hkv, int D);

// ---- backend.cu's services for the training ops (grad.cu).

// be's stream.
cudaStream_t twc_stream(struct tw_backend *be);
// Records the first failure of be's ops (tw_backend_sync reports it); true when e (st) is
// success.
bool twc_check(struct tw_backend *be, cudaError_t e, const char *what);
bool twc_check_blas(struct tw_backend *be, cublasStatus_t st, const char *what);
// A scratch buffer of be grown to `bytes` (*p, *cap; what it held is lost, the stream drained
// first); false with the failure recorded.
bool twc_scratch(struct tw_backend *be, void **p, size_t *cap, size_t bytes);
// y = x rounded to bf16 (n values), enqueued on s.
cudaError_t twc_to_bf16(__nv_bfloat16 *y, const float *x, int64_t n, cudaStream_t s);
// y (rows, cols; rows ldy elements apart) = x (rows ldx apart) rounded to bf16.
cudaError_t twc_to_bf16_2d(__nv_bfloat16 *y, int64_t ldy, const float *x, int64_t ldx,
                           int64_t rows, int64_t cols, cudaStream_t s);
// Whether p is 16-byte aligned (where a kernel may read or write it by float4 / uint4).
static inline bool twc_aligned16(const void *p)
{
    return (uintptr_t)p % 16 == 0;
}
// Blocks of 256 threads for a grid-stride loop over n items (at most 65536).
static inline unsigned twc_grid_for(int64_t n)
{
    int64_t g = (n + 255) / 256;
    return (unsigned)(g < 1 ? 1 : g > 65536 ? 65536 : g);
}
void twc_fail(struct tw_backend *be, const char *what, const char *why);
// Whether be has failed since its last sync (later ops are skipped).
bool twc_failed(struct tw_backend *be);
// The slot for grad.cu's state of be (made on first use, freed by twc_grad_free with be).
void **twc_grad_slot(struct tw_backend *be);
void twc_grad_free(void *state);

// Four values of a row kernel's output at p: 16 bytes of f32, or 8 of bf16.
static __device__ __forceinline__ void twc_store4(float *p, float4 v)
{
    *(float4 *)p = v;
}
static __device__ __forceinline__ void twc_store4(__nv_bfloat16 *p, float4 v)
{
    *(uint2 *)p = make_uint2(twc_pack_bf16(v.x, v.y), twc_pack_bf16(v.z, v.w));
}

// RMSNorm of x's R rows of C into y, f32 or (y16) bf16, and each row's 1 / rms into rstd (NULL:
// none), by the engine's warp-a-row kernel (backend.cu's norm_warp_kernel: the row's float4s in
// registers); false, nothing launched, where its conditions do not hold (C a multiple of 4 up
// to 2048, every array 16-byte aligned).
bool twc_rmsnorm_warp(struct tw_backend *be, void *y, bool y16, float *rstd, const float *x,
                      const float *w, int64_t R, int64_t C, float eps);

// Training's RoPE (grad.h's rope_bf16): x (N, heads, r->head_dim) rotated by pos (host
// memory) as tw_rope does, into xb as bf16 (rows ld apart, 0: heads x head_dim) and, with
// keep, into x as well.
void twc_rope_train(struct tw_backend *be, float *x, void *xb, int64_t ld, bool keep,
                    const int32_t *pos, int64_t N, int64_t heads, const struct tw_rope *r);

// ---- grad.cu: the training ops (tensor/grad.h) on the GPU.
extern const struct tw_grad_ops twc_grad_ops;

#endif

// bench/gemv_cuda: the decode matvec (one activation row against a weight matrix) on the GPU,
// alone, for each weight dtype and each matrix shape of the Llama-3.2-1B and Llama-3.1-8B
// layers, against the device-to-device copy bandwidth measured in the same run. A step of R
// products is recorded as a CUDA graph (as decode runs them) over enough copies of the
// matrix that they do not stay in the 50 MB L2, and replayed; each product's time is the
// step's over R, its rate the matrix's bytes over that time. Q8_0 (two rows and more), Q4_0
// and Q4_K round x to int8 first, a kernel of its own in each product here (decode shares one
// rounding between the products of one input).
// This is the kernel development harness of issue 10 ("in the manner of llm.c's dev/cuda"):
// built with -DCMAKE_CUDA_FLAGS=-DGEMV_SWEEP, TWIN_GEMV_SWEEP=i picks launch configuration i of
// gemv.cu's sweep at one row (rows per group, warps per group, pieces in flight), and
// `--sweep 0,1,...` runs the table once for each; the rows are checked against the default
// configuration's output of the same product.
// --only NAME: the matrices whose name contains NAME ("8b down").
// Usage: gemv_cuda [--types bf16,q8_0,q4_0,q4_K] [--shapes 1b,8b] [--rows T] [--sweep a,b]
//                  [--only NAME] [--quick]
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/backend.h"
#include "tensor/cuda.h"
#include "tensor/dtype.h"

#include "bench_util.h"

#define MAX_COPIES 64
#define MIN_BYTES  (512.0 * 1024 * 1024) // the copies' total: ten times the L2

struct mat {
    const char *name;
    int64_t N, K;
};

static const struct mat mats_1b[] = {
    { "1b q,k,v", 3072, 2048 },
    { "1b o", 2048, 2048 },
    { "1b gate,up", 16384, 2048 },
    { "1b down", 2048, 8192 },
};
static const struct mat mats_8b[] = {
    { "8b q,k,v", 6144, 4096 }, { "8b o", 4096, 4096 },      { "8b gate,up", 28672, 4096 },
    { "8b down", 4096, 14336 }, { "8b head", 128256, 4096 },
};

static int fail(const char *what)
{
    fprintf(stderr, "gemv_cuda: %s: %s\n", what, tw_error_msg());
    return 1;
}

// The time of one product in a step of reps products over the copies dw (a recorded graph,
// replayed: the best of five replays), in seconds.
static double time_step(struct tw_backend *be, struct tw_tensor *y, const struct tw_tensor *x,
                        struct tw_tensor *w, void *const *dw, int copies, int reps)
{
    void *g = NULL;
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {
        if (tw_backend_graph_begin(be, &g, 0, 0) != 0)
            return -1;
        for (int i = 0; i < reps; i++) {
            w->data = dw[i % copies];
            tw_matmul(be, y, x, w, NULL);
        }
        double t0 = now();
        if (tw_backend_graph_end(be, &g) != 0 || tw_backend_sync(be) != 0)
            return -1;
        double t = now() - t0;
        if (rep > 0 && t < best) // the first records
            best = t;
    }
    tw_backend_graph_free(be, g);
    return best / reps;
}

// The rows of the table for the product of mt in dtype dt at T rows: the default
// configuration, then each of the n_sw sweep configurations sw (checked against the default's
// output).
static int run_matrix(struct tw_backend *be, const struct mat *mt, enum tw_dtype dt, int T,
                      int reps, double bw, char (*sw)[32], int n_sw, double *lo, double *hi)
{
    size_t rb;
    if (tw_dtype_nbytes(dt, (size_t)mt->K, &rb) != 0)
        return fail("row bytes");
    size_t bytes = rb * (size_t)mt->N, ny = (size_t)(T * mt->N);
    int copies = (int)ceil(MIN_BYTES / (double)bytes);
    copies = copies < 2 ? 2 : copies > MAX_COPIES ? MAX_COPIES : copies;
    // One host matrix of random rows (quantised from uniform floats), uploaded copies times.
    char *hw = tw_malloc(bytes);
    float *hx = tw_malloc((size_t)(T * mt->K) * sizeof *hx);
    float *hy = tw_malloc(ny * sizeof *hy), *ref = tw_malloc(ny * sizeof *ref);
    if (!hw || !hx || !hy || !ref)
        return fail("host memory");
    bool ok = true;
#pragma omp parallel
    {
        float *row = tw_malloc((size_t)mt->K * sizeof *row);
        if (!row) {
#pragma omp atomic write
            ok = false;
        }
#pragma omp for schedule(static)
        for (int64_t n = 0; n < mt->N; n++) {
            if (!row)
                continue;
            for (int64_t k = 0; k < mt->K; k++)
                row[k] = uniform_at((uint64_t)(n * mt->K + k));
            tw_quantize_row(dt, row, hw + (size_t)n * rb, (size_t)mt->K);
        }
        tw_free(row);
    }
    if (!ok)
        return fail("host memory");
    for (int64_t i = 0; i < T * mt->K; i++)
        hx[i] = uniform();
    void *dw[MAX_COPIES];
    for (int c = 0; c < copies; c++) {
        dw[c] = tw_backend_alloc(be, bytes);
        if (!dw[c] || tw_backend_upload(be, dw[c], hw, bytes) != 0)
            return fail("weights");
    }
    float *dx = tw_backend_alloc(be, (size_t)(T * mt->K) * sizeof *dx);
    float *dy = tw_backend_alloc(be, ny * sizeof *dy);
    if (!dx || !dy || tw_backend_upload(be, dx, hx, (size_t)(T * mt->K) * sizeof *hx) != 0)
        return fail("activations");
    struct tw_tensor x, y, w;
    if (tw_tensor_init(&x, TW_DTYPE_F32, 2, (int64_t[]){ T, mt->K }, dx, "x") != 0 ||
        tw_tensor_init(&y, TW_DTYPE_F32, 2, (int64_t[]){ T, mt->N }, dy, "y") != 0 ||
        tw_tensor_init(&w, dt, 2, (int64_t[]){ mt->N, mt->K }, dw[0], "w") != 0)
        return fail("tensors");
    x.device = y.device = w.device = TW_DEVICE_CUDA;

    for (int v = -1; v < n_sw; v++) {
        char name[40] = "default";
        if (v < 0) {
            unsetenv("TWIN_GEMV_SWEEP");
        } else {
            setenv("TWIN_GEMV_SWEEP", sw[v], 1);
            snprintf(name, sizeof name, "sweep %.8s", sw[v]);
        }
        // The check: the first copy's product against the default configuration's.
        w.data = dw[0];
        tw_matmul(be, &y, &x, &w, NULL);
        if (tw_backend_download(be, hy, dy, ny * sizeof *hy) != 0 || tw_backend_sync(be) != 0)
            return fail("product");
        double diff = 0;
        if (v < 0)
            memcpy(ref, hy, ny * sizeof *hy);
        else
            diff = rel_diff(hy, ref, ny);
        double t = time_step(be, &y, &x, &w, dw, copies, reps);
        if (t < 0)
            return fail("step");
        double gbs = (double)bytes / t / 1e9;
        if (v < 0) {
            *lo = gbs / bw < *lo ? gbs / bw : *lo;
            *hi = gbs / bw > *hi ? gbs / bw : *hi;
        }
        printf("%-11s %-5s %2d %-10s %9.1f %9.2f %9.1f %7.1f%%  %.1e\n", mt->name,
               tw_dtype_name(dt), T, name, bytes / 1e6, 1e6 * t, gbs, 100 * gbs / bw, diff);
        fflush(stdout);
    }
    unsetenv("TWIN_GEMV_SWEEP");
    for (int c = 0; c < copies; c++)
        tw_backend_release(be, dw[c]);
    tw_backend_release(be, dx);
    tw_backend_release(be, dy);
    tw_free(hw), tw_free(hx), tw_free(hy), tw_free(ref);
    return 0;
}

int main(int argc, char **argv)
{
    const char *types = "bf16,q8_0,q4_0,q4_K", *shapes = "1b,8b", *sweep = "", *only = "";
    int T = 1, reps = 200;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            shapes = "1b", reps = 20;
        } else if (i + 1 < argc && strcmp(argv[i], "--types") == 0) {
            types = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--shapes") == 0) {
            shapes = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--rows") == 0) {
            T = atoi(argv[++i]);
        } else if (i + 1 < argc && strcmp(argv[i], "--only") == 0) {
            only = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--sweep") == 0) {
            sweep = argv[++i];
        } else {
            fprintf(stderr, "usage: gemv_cuda [--types bf16,q8_0,q4_0,q4_K] [--shapes 1b,8b] "
                            "[--rows T] [--sweep a,b] [--only NAME] [--quick]\n");
            return 2;
        }
    }
    if (T < 1 || T > 8)
        return fprintf(stderr, "gemv_cuda: --rows takes 1 to 8\n"), 2;
    struct tw_backend *be;
    if (tw_backend_cuda_new(0, &be) != 0)
        return fail("cuda");
    char gpu[256], ty[8][32], sh[4][32], sw[24][32];
    tw_cuda_device_name(0, gpu, sizeof gpu);
    int n_ty = parse_list(types, ty, 8), n_sh = parse_list(shapes, sh, 4);
    int n_sw = parse_list(sweep, sw, 24);
    double bw = tw_cuda_copy_bandwidth(be, (size_t)1 << 30, 10);
    printf("gemv_cuda: %s; copy bandwidth %.0f GB/s; %d products a step\n", gpu, bw, reps);
    printf("%-11s %-5s %2s %-10s %9s %9s %9s %8s  %s\n", "matrix", "type", "T", "config", "MB",
           "us", "GB/s", "of copy", "vs default");
    double lo = 1e9, hi = 0;
    for (int s = 0; s < n_sh; s++) {
        bool b8 = strcmp(sh[s], "8b") == 0;
        if (!b8 && strcmp(sh[s], "1b") != 0)
            return fprintf(stderr, "gemv_cuda: no shape %s (1b, 8b)\n", sh[s]), 2;
        const struct mat *mats = b8 ? mats_8b : mats_1b;
        int n_m = b8 ? 5 : 4;
        for (int m = 0; m < n_m; m++)
            for (int d = 0; d < n_ty; d++) {
                enum tw_dtype dt;
                if (!strstr(mats[m].name, only))
                    continue;
                if (tw_dtype_from_name(ty[d], &dt) != 0)
                    return fail(ty[d]);
                if (run_matrix(be, &mats[m], dt, T, reps, bw, sw, n_sw, &lo, &hi) != 0)
                    return 1;
            }
    }
    tw_backend_free(be);
    printf("headline: the default configurations run at %.1f-%.1f%% of the copy bandwidth\n",
           100 * lo, 100 * hi);
    return 0;
}

// Data-parallel training through tensor/comm.h's host transport (two worker processes, CPU
// backends): the same loss curve, held-out loss and weights as one process taking the same
// micro-batches (accum 2), replicas identical to the bit, rank 0's checkpoint resumable by
// one process, a stop asked of one worker honoured by both at the same step, DPO's metrics
// summed, and the launcher's errors (a failing worker named, the other stopped). With
// TWIN_TRAIN_DEVICE=cuda (make test-cuda runs it so as cuda_train_dist, on a machine of two
// GPUs; it skips with 77 on fewer) the workers train on their GPUs through NCCL, and the one
// process on one GPU: the same checks.
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "check.h"
#include "model/model.h"
#include "sotu_train.h"
#include "tensor/comm.h"
#include "tensor/cuda.h"
#include "train/trainer.h"

#define MAX_W (1 << 20) // floats of weights a rank reports

static const char *device;     // TWIN_TRAIN_DEVICE, or NULL: the CPU and the host transport
static enum tw_comm_kind kind; // NCCL on GPUs

// The backend a worker (or the one process) trains on: NULL for the CPU's default.
static struct tw_backend *open_device(void)
{
    struct tw_backend *be = NULL;
    if (device)
        REQUIRE(tw_backend_open(device, 0, &be) == 0);
    return be;
}

// What the workers report to the test (shared pages).
struct shared {
    double loss[2][16], eval[2], margin[2][16];
    int64_t steps[2];
    int rc[2];
    size_t n_w;
    float w[2][MAX_W];
};

struct job {
    const struct tw_dataset *d;
    const struct tw_model_config *cfg;
    const struct tw_model *base; // LoRA (DPO): the frozen base
    struct tw_train_opts o;
    int64_t stop_rank1_at; // > 0: rank 1 asks to stop after this step
    struct shared *sh;
};

struct step_log {
    struct job *j;
    int rank;
    volatile sig_atomic_t stop;
};

static int on_step(void *ud, const struct tw_train_progress *p)
{
    struct step_log *l = ud;
    if (p->step <= 16) {
        l->j->sh->loss[l->rank][p->step - 1] = p->loss;
        l->j->sh->margin[l->rank][p->step - 1] = p->dpo.rewards_margins;
    }
    if (l->rank == 1 && l->j->stop_rank1_at == p->step)
        l->stop = 1;
    return 0;
}

static tw_lm *make_lm(const struct job *j)
{
    tw_lm *m;
    if (j->base) {
        struct tw_lm_opts lo = { .lora_r = 4,
                                 .lora_alpha = 8,
                                 .lora_targets = TW_PROJ_ALL,
                                 .qlora = TW_DTYPE_F32,
                                 .seed = 1 };
        REQUIRE(tw_lm_new(j->base, &lo, &m) == 0);
    } else {
        REQUIRE(tw_lm_new_random(j->cfg, 3, &m) == 0);
    }
    return m;
}

// Trains and reports the weights (one process: rank 0's slot).
static int train_one(struct job *j, tw_comm *c)
{
    int rank = c ? tw_comm_rank(c) : 0;
    struct tw_backend *be = open_device();
    tw_lm *m = make_lm(j);
    if (be)
        REQUIRE(tw_lm_use_backend(m, be) == 0);
    struct step_log l = { .j = j, .rank = rank };
    struct tw_train_opts o = j->o;
    o.comm = c, o.on_step = on_step, o.ud = &l, o.stop = &l.stop;
    if (rank != 0)
        o.checkpoint = NULL; // rank 0 writes it
    struct tw_train_result r;
    int rc = tw_train(m, NULL, j->d, &o, &r);
    j->sh->rc[rank] = rc;
    j->sh->steps[rank] = r.steps;
    j->sh->eval[rank] = r.eval_loss;
    size_t off = 0;
    for (size_t i = 0; i < tw_lm_n_params(m); i++) {
        const struct tw_lm_param *p = tw_lm_param_at(m, i);
        if (off + p->n <= MAX_W)
            memcpy(j->sh->w[rank] + off, p->w, p->n * sizeof(float));
        off += p->n;
    }
    j->sh->n_w = off;
    tw_lm_free(m);
    tw_backend_free(be);
    return rc;
}

static int worker(tw_comm *c, void *ud)
{
    return train_one(ud, c);
}

// One process's run, in a child: this process must not start OpenMP's threads (GNU OpenMP's
// do not survive the forks of the launches that follow).
static int train_alone(struct job *j)
{
    fflush(NULL);
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0)
        _exit(train_one(j, NULL) ? 1 : 0);
    int st;
    REQUIRE(waitpid(p, &st, 0) == p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static struct shared *shared_new(void)
{
    void *p = mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    REQUIRE(p != MAP_FAILED);
    memset(p, 0, sizeof(struct shared));
    return p;
}

static double max_rel(const double *a, const double *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / fmax(fabs(b[i]), 1e-6);
        m = d > m ? d : m;
    }
    return m;
}

static float max_abs(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

// Two workers with accum 1 against one process with accum 2 (the same micro-batches).
static void test_pretrain(const struct tw_dataset *d, const struct tw_model_config *cfg)
{
    char tmpl[] = "/tmp/twin-dist-XXXXXX", ck[4200];
    REQUIRE(mkdtemp(tmpl) != NULL);
    snprintf(ck, sizeof ck, "%s/state.safetensors", tmpl);
    struct shared *dist = shared_new(), *one = shared_new();
    struct job j = { .d = d, .cfg = cfg, .sh = dist };
    tw_train_opts_default(&j.o, TW_TRAIN_PRETRAIN);
    j.o.batch = 2, j.o.seq = 64, j.o.lr = 3e-3, j.o.warmup = 2, j.o.max_steps = 8;
    j.o.eval_frac = 0.05, j.o.checkpoint = ck;
    REQUIRE(tw_comm_launch(2, kind, worker, &j) == 0);
    CHECK_EQ_INT(dist->rc[0], 0);
    CHECK_EQ_INT(dist->steps[0], 8);
    CHECK_EQ_INT(dist->steps[1], 8);
    // the replicas: the very same weights, and the same losses seen on both
    CHECK(dist->n_w > 1000 && dist->n_w <= MAX_W);
    CHECK(memcmp(dist->w[0], dist->w[1], dist->n_w * sizeof(float)) == 0);
    CHECK(memcmp(dist->loss[0], dist->loss[1], sizeof dist->loss[0]) == 0);
    CHECK(dist->eval[0] == dist->eval[1] && !isnan(dist->eval[0]));
    CHECK(dist->loss[0][7] < dist->loss[0][0] - 0.2);
    // one process, two micro-batches a step: the same run up to the order of float sums
    j.sh = one, j.o.accum = 2, j.o.checkpoint = NULL;
    REQUIRE(train_alone(&j) == 0);
    double lr = max_rel(dist->loss[0], one->loss[0], 8);
    CHECK(lr < 1e-5);
    CHECK(fabs(dist->eval[0] - one->eval[0]) < 1e-5 * one->eval[0]);
    CHECK(max_abs(dist->w[0], one->w[0], dist->n_w) < 1e-5f);
    if (lr >= 1e-5)
        fprintf(stderr, "  losses differ by %g (relative)\n", lr);
    // rank 0's checkpoint is one process's (accum 2) at step 8: resuming it ends at once
    j.o.checkpoint = ck, j.o.resume = true;
    memset(one, 0, sizeof *one);
    REQUIRE(train_alone(&j) == 0);
    CHECK(memcmp(dist->w[0], one->w[0], dist->n_w * sizeof(float)) == 0);
    // a stop asked of worker 1 after step 3 is seen at step 4's sum: both stop there, and
    // rank 0 writes the checkpoint
    j.sh = dist, j.o.accum = 1, j.o.resume = false, j.stop_rank1_at = 3;
    memset(dist, 0, sizeof *dist);
    unlink(ck);
    CHECK_EQ_INT(tw_comm_launch(2, kind, worker, &j), TW_ECANCELED);
    CHECK(strstr(tw_error_msg(), "stopped after step 4 of 8") != NULL);
    CHECK_EQ_INT(dist->rc[0], TW_ECANCELED);
    CHECK_EQ_INT(dist->rc[1], TW_ECANCELED);
    CHECK_EQ_INT(dist->steps[0], 4);
    CHECK_EQ_INT(dist->steps[1], 4);
    CHECK(access(ck, R_OK) == 0);
    munmap(dist, sizeof *dist);
    munmap(one, sizeof *one);
    unlink(ck);
    rmdir(tmpl);
}

static const char prefs[] =
    "{\"prompt\": \"Describe the Union.\", \"chosen\": \"It is strong.\", \"rejected\": "
    "\"No idea.\"}\n"
    "{\"prompt\": \"What of the economy?\", \"chosen\": \"It grows.\", \"rejected\": \"Bad.\"}\n"
    "{\"prompt\": \"And the army?\", \"chosen\": \"It is ready.\", \"rejected\": \"Who "
    "knows.\"}\n"
    "{\"prompt\": \"The treasury?\", \"chosen\": \"It is full.\", \"rejected\": \"Empty.\"}\n";

// DPO over LoRA: each worker one pair a step; its metrics summed as one process's.
static void test_dpo(const struct tw_model *g)
{
    struct tw_data_options dopt = {
        .task = TW_DATA_TASK_DPO, .family = TW_CHAT_ALPACA, .max_seq = 64, .max_len = 64
    };
    dopt.max_prompt = 32;
    struct tw_dataset d;
    REQUIRE(tw_dataset_load_buffer(&d, "prefs.jsonl", prefs, sizeof prefs - 1, g->tok, &dopt) ==
            0);
    struct shared *dist = shared_new(), *one = shared_new();
    struct job j = { .d = &d, .base = g, .sh = dist };
    tw_train_opts_default(&j.o, TW_TRAIN_DPO);
    j.o.batch = 1, j.o.seq = 64, j.o.lr = 1e-2, j.o.warmup = 0, j.o.epochs = 3;
    j.o.eval_frac = 0;
    REQUIRE(tw_comm_launch(2, kind, worker, &j) == 0);
    CHECK_EQ_INT(dist->steps[0], 6); // 4 pairs, 2 a step, 3 epochs
    CHECK(fabs(dist->loss[0][0] - log(2.0)) < 1e-6);
    j.sh = one, j.o.accum = 2;
    REQUIRE(train_alone(&j) == 0);
    CHECK(max_rel(dist->loss[0], one->loss[0], 6) < 1e-5);
    CHECK(fabs(dist->margin[0][5] - one->margin[0][5]) < 1e-5);
    CHECK(dist->margin[0][5] > 0);
    CHECK(memcmp(dist->w[0], dist->w[1], dist->n_w * sizeof(float)) == 0);
    CHECK(max_abs(dist->w[0], one->w[0], dist->n_w) < 1e-5f);
    munmap(dist, sizeof *dist);
    munmap(one, sizeof *one);
    tw_dataset_free(&d);
}

// Rank 1 fails at once; rank 0 waits in a sum that never completes, and is stopped.
static int failing(tw_comm *c, void *ud)
{
    (void)ud;
    if (tw_comm_rank(c) == 1)
        return tw_error_set(TW_EINVAL, "worker one gives up");
    double v = 1;
    return tw_comm_sum_host(c, NULL, &v, 1);
}

static int summing(tw_comm *c, void *ud)
{
    // more floats than one slot of the host transport holds: the chunked path
    size_t n = (size_t)3 << 20;
    float *x = tw_malloc_array(n, sizeof(float));
    REQUIRE(x != NULL);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(tw_comm_rank(c) + 1) * (float)(i % 1000);
    struct tw_backend *be = open_device();
    float *dx = be ? tw_backend_alloc(be, n * sizeof(float)) : x;
    REQUIRE(dx != NULL);
    if (be)
        REQUIRE(tw_backend_upload(be, dx, x, n * sizeof(float)) == 0);
    float *bufs[2] = { dx, dx + 5 };
    size_t ns[2] = { 5, n - 5 };
    double h[3] = { 1, 2, (double)tw_comm_rank(c) };
    int rc = tw_comm_sum(c, be, bufs, ns, 2);
    if (!rc)
        rc = tw_comm_sum_host(c, be, h, 3);
    if (!rc && be)
        rc = tw_backend_download(be, x, dx, n * sizeof(float));
    if (be) {
        tw_backend_release(be, dx);
        tw_backend_free(be);
    }
    int W = tw_comm_size(c);
    bool ok = rc == 0 && h[0] == W && h[1] == 2 * W && h[2] == W * (W - 1) / 2;
    for (size_t i = 0; ok && i < n; i++)
        ok = x[i] == (float)(W * (W + 1) / 2) * (float)(i % 1000); // 1 + 2 + ... + W times
    tw_free(x);
    (void)ud;
    return rc ? rc : ok ? 0 : tw_error_set(TW_ESTATE, "rank %d: wrong sums", tw_comm_rank(c));
}

static int crashing(tw_comm *c, void *ud)
{
    (void)ud;
    if (tw_comm_rank(c) == 0)
        raise(SIGKILL);
    double v = 1;
    return tw_comm_sum_host(c, NULL, &v, 1);
}

static void test_launcher(void)
{
    int dummy = 0;
    if (device) { // the NCCL transport's sums; the launcher's errors are the same code
        CHECK_EQ_INT(tw_comm_launch(2, kind, summing, &dummy), 0);
        return;
    }
    setenv("TWIN_COMM_GRACE", "1", 1); // rank 0 is stopped a second after rank 1 failed
    CHECK_EQ_INT(tw_comm_launch(2, TW_COMM_HOST, failing, NULL), TW_EINVAL);
    CHECK(strcmp(tw_error_msg(), "worker one gives up") == 0);
    CHECK_EQ_INT(tw_comm_launch(2, TW_COMM_HOST, crashing, NULL), TW_EIO);
    CHECK(strstr(tw_error_msg(), "worker 0 of 2 ended without a result (signal 9)") != NULL);
    CHECK_EQ_INT(tw_comm_launch(1, TW_COMM_HOST, failing, NULL), TW_EINVAL);
    CHECK_EQ_INT(tw_comm_launch(3, TW_COMM_HOST, summing, &dummy), 0);
    if (!tw_comm_nccl_available()) {
        CHECK_EQ_INT(tw_comm_launch(2, TW_COMM_NCCL, summing, &dummy), TW_EUNSUPPORTED);
        CHECK(strstr(tw_error_msg(), "without NCCL") != NULL);
    }
}

// GPUs this machine has, counted in a child (this process must not touch CUDA: the workers
// are forked from it).
static int gpu_count(void)
{
    pid_t p = fork();
    REQUIRE(p >= 0);
    if (p == 0)
        _exit(tw_cuda_device_count() > 9 ? 9 : tw_cuda_device_count());
    int st;
    REQUIRE(waitpid(p, &st, 0) == p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 0;
}

int main(void)
{
    const char *dev = getenv("TWIN_TRAIN_DEVICE");
    device = dev && *dev ? dev : NULL;
    kind = device ? TW_COMM_NCCL : TW_COMM_HOST;
    if (device && (gpu_count() < 2 || !tw_comm_nccl_available())) {
        printf("train_test_dist: skipped: %d GPU(s) (2 wanted)%s\n", gpu_count(),
               tw_comm_nccl_available() ? "" : ", no NCCL");
        return 77;
    }
    // Nothing here runs an OpenMP region (train_alone): GNU OpenMP's threads do not survive
    // fork.
    test_launcher();
    struct tw_model *g = golden_llama();
    struct tw_dataset d;
    sotu_pretrain_data(&d, g->tok);
    struct tw_model_config c = g->cfg;
    c.n_embd = 48, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 12, c.n_ff = 96, c.n_layer = 2;
    test_pretrain(&d, &c);
    test_dpo(g);
    tw_dataset_free(&d);
    tw_model_close(g);
    return check_report("train_test_dist");
}

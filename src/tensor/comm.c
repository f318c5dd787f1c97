// Implements comm.h: the launcher (fork, a pipe per worker for its result, NCCL's unique id
// handed from rank 0 to the others through pipes) and the host transport (shared pages and a
// process-shared barrier). The NCCL transport is cuda/comm.cu.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/mem.h"
#include "tensor/comm_int.h"
#include "twin_config.h"

#define MAX_RANKS  64
#define SLOT_BYTES ((size_t)4 << 20) // each rank's share of the host transport's pages

// ---- the host transport: every rank copies a chunk into its slot, waits for the others,
// then adds the slots in rank order into its own buffer (the same bits on every rank), and
// waits again before the slots are reused.

struct tw_comm_shm {
    pthread_barrier_t bar;
    char pad[256 - sizeof(pthread_barrier_t) % 256];
    unsigned char slots[]; // size * SLOT_BYTES
};

static size_t shm_bytes(int n)
{
    return sizeof(struct tw_comm_shm) + (size_t)n * SLOT_BYTES;
}

static void *slot(struct tw_comm *c, int r)
{
    return c->shm->slots + (size_t)r * SLOT_BYTES;
}

static int host_wait(struct tw_comm *c)
{
    int rc = pthread_barrier_wait(&c->shm->bar);
    return rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD
               ? 0
               : tw_error_set(TW_EIO, "rank %d: the host barrier failed: %s", c->rank,
                              strerror(rc));
}

// x (n floats, or with f64 doubles) summed over the ranks in place, a slot's worth at a time.
static int host_sum(struct tw_comm *c, void *x, size_t n, bool f64)
{
    const size_t es = f64 ? sizeof(double) : sizeof(float), per = SLOT_BYTES / es;
    for (size_t off = 0; off < n; off += per) {
        size_t k = n - off < per ? n - off : per;
        memcpy(slot(c, c->rank), (char *)x + off * es, k * es);
        int rc = host_wait(c);
        if (rc)
            return rc;
        for (size_t i = 0; i < k; i++) {
            if (f64) {
                double v = ((const double *)slot(c, 0))[i];
                for (int r = 1; r < c->size; r++)
                    v += ((const double *)slot(c, r))[i];
                ((double *)x)[off + i] = v;
            } else {
                float v = ((const float *)slot(c, 0))[i];
                for (int r = 1; r < c->size; r++)
                    v += ((const float *)slot(c, r))[i];
                ((float *)x)[off + i] = v;
            }
        }
        if ((rc = host_wait(c)))
            return rc;
    }
    return 0;
}

// ---- without NCCL: the transport is missing.

static int no_nccl(void)
{
    return tw_error_set(TW_EUNSUPPORTED,
                        "twin was built without NCCL (CUDA's collectives library): one GPU "
                        "only");
}

#if !TWIN_HAVE_NCCL

int twc_nccl_unique_id(unsigned char id[TW_COMM_ID_BYTES])
{
    (void)id;
    return no_nccl();
}

int twc_nccl_init(struct tw_comm *c, const unsigned char id[TW_COMM_ID_BYTES])
{
    (void)c, (void)id;
    return no_nccl();
}

void twc_nccl_free(struct tw_comm *c)
{
    (void)c;
}

int twc_nccl_sum(struct tw_comm *c, struct tw_backend *be, float *const *bufs, const size_t *ns,
                 size_t count)
{
    (void)c, (void)be, (void)bufs, (void)ns, (void)count;
    return no_nccl();
}

int twc_nccl_sum_host(struct tw_comm *c, struct tw_backend *be, double *v, size_t n)
{
    (void)c, (void)be, (void)v, (void)n;
    return no_nccl();
}
#endif

bool tw_comm_nccl_available(void)
{
    return TWIN_HAVE_NCCL != 0;
}

int tw_comm_rank(const tw_comm *c)
{
    return c->rank;
}

int tw_comm_size(const tw_comm *c)
{
    return c->size;
}

int tw_comm_sum(tw_comm *c, struct tw_backend *be, float *const *bufs, const size_t *ns,
                size_t count)
{
    if (c->kind == TW_COMM_NCCL)
        return twc_nccl_sum(c, be, bufs, ns, count);
    for (size_t i = 0; i < count; i++) {
        int rc = host_sum(c, bufs[i], ns[i], false);
        if (rc)
            return rc;
    }
    return 0;
}

int tw_comm_sum_host(tw_comm *c, struct tw_backend *be, double *v, size_t n)
{
    return c->kind == TW_COMM_NCCL ? twc_nccl_sum_host(c, be, v, n) : host_sum(c, v, n, true);
}

// ---- the launcher.

// What a worker sends its parent before it exits.
struct report {
    int rc;
    char msg[1000];
};

// All n bytes written to (wr) or read from fd; -1 on an error or an early end.
static int io_all(int fd, void *p, size_t n, bool wr)
{
    char *b = p;
    while (n > 0) {
        ssize_t k = wr ? write(fd, b, n) : read(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k, n -= (size_t)k;
    }
    return 0;
}

struct launch {
    int n;
    enum tw_comm_kind kind;
    char gpu[MAX_RANKS][32]; // NCCL: each rank's CUDA_VISIBLE_DEVICES
    int id_pipe[MAX_RANKS][2], res_pipe[MAX_RANKS][2];
    struct tw_comm_shm *shm;
};

// Rank 0 makes NCCL's unique id and sends it to every other rank.
static int share_id(struct tw_comm *c, struct launch *l, unsigned char id[TW_COMM_ID_BYTES])
{
    if (c->rank == 0) {
        int rc = twc_nccl_unique_id(id);
        for (int r = 1; r < l->n; r++) {
            if (!rc && io_all(l->id_pipe[r][1], id, TW_COMM_ID_BYTES, true))
                rc = tw_error_set(TW_EIO, "rank 0: cannot send NCCL's id to rank %d: %s", r,
                                  strerror(errno));
            close(l->id_pipe[r][1]);
        }
        return rc;
    }
    int rc = io_all(l->id_pipe[c->rank][0], id, TW_COMM_ID_BYTES, false)
                 ? tw_error_set(TW_EIO, "rank %d: rank 0 sent no NCCL id", c->rank)
                 : 0;
    close(l->id_pipe[c->rank][0]);
    return rc;
}

static void worker(struct launch *l, int rank, int (*fn)(tw_comm *, void *), void *ud)
{
    for (int r = 0; r < l->n; r++) { // keep only this rank's ends
        close(l->res_pipe[r][0]);
        if (r != rank)
            close(l->res_pipe[r][1]);
        if (l->kind == TW_COMM_NCCL) {
            if (r != rank)
                close(l->id_pipe[r][0]);
            if (rank != 0)
                close(l->id_pipe[r][1]);
        }
    }
    struct tw_comm c = { .rank = rank, .size = l->n, .kind = l->kind, .shm = l->shm };
    int rc = 0;
    if (l->kind == TW_COMM_NCCL) {
        setenv("CUDA_VISIBLE_DEVICES", l->gpu[rank], 1);
        setenv("NCCL_NVLS_ENABLE", "0", 0); // no NVLink multicast unless asked for
        unsigned char id[TW_COMM_ID_BYTES];
        if (!(rc = share_id(&c, l, id)))
            rc = twc_nccl_init(&c, id);
    }
    if (!rc)
        rc = fn(&c, ud);
    if (l->kind == TW_COMM_NCCL && !rc)
        twc_nccl_free(&c); // after a failure the others may be gone: leave it to the exit
    struct report rep = { .rc = rc };
    if (rc)
        snprintf(rep.msg, sizeof rep.msg, "%s", tw_error_msg());
    io_all(l->res_pipe[rank][1], &rep, sizeof rep, true);
    fflush(stdout);
    fflush(stderr);
    _exit(rc ? 1 : 0);
}

// The GPUs of the ranks: the first n of CUDA_VISIBLE_DEVICES, or 0 .. n-1.
static int pick_gpus(struct launch *l)
{
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    if (!vis) {
        for (int r = 0; r < l->n; r++)
            snprintf(l->gpu[r], sizeof l->gpu[r], "%d", r);
        return 0;
    }
    int k = 0;
    for (const char *p = vis; *p && k < l->n;) {
        size_t len = strcspn(p, ",");
        if (len > 0 && len < sizeof l->gpu[k])
            snprintf(l->gpu[k++], sizeof l->gpu[0], "%.*s", (int)len, p);
        p += len + (p[len] == ',');
    }
    return k == l->n ? 0
                     : tw_error_set(TW_EINVAL,
                                    "%d GPUs asked for, but CUDA_VISIBLE_DEVICES=\"%s\" lists "
                                    "%d",
                                    l->n, vis, k);
}

static void close_pipes(struct launch *l)
{
    for (int r = 0; r < l->n; r++)
        for (int e = 0; e < 2; e++) {
            if (l->id_pipe[r][e] >= 0)
                close(l->id_pipe[r][e]);
            if (l->res_pipe[r][e] >= 0)
                close(l->res_pipe[r][e]);
            l->id_pipe[r][e] = l->res_pipe[r][e] = -1;
        }
}

static int setup(struct launch *l)
{
    for (int r = 0; r < l->n; r++)
        for (int e = 0; e < 2; e++)
            l->id_pipe[r][e] = l->res_pipe[r][e] = -1;
    if (l->kind == TW_COMM_NCCL) {
        if (!tw_comm_nccl_available())
            return no_nccl();
        int rc = pick_gpus(l);
        if (rc)
            return rc;
    } else {
        void *p =
            mmap(NULL, shm_bytes(l->n), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return tw_error_set(TW_EIO, "%d workers: no shared memory: %s", l->n, strerror(errno));
        l->shm = p;
        pthread_barrierattr_t at;
        pthread_barrierattr_init(&at);
        pthread_barrierattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
        int rc = pthread_barrier_init(&l->shm->bar, &at, (unsigned)l->n);
        pthread_barrierattr_destroy(&at);
        if (rc)
            return tw_error_set(TW_EIO, "%d workers: no barrier: %s", l->n, strerror(rc));
    }
    for (int r = 0; r < l->n; r++)
        if (pipe(l->res_pipe[r]) || (l->kind == TW_COMM_NCCL && pipe(l->id_pipe[r])))
            return tw_error_set(TW_EIO, "%d workers: no pipes: %s", l->n, strerror(errno));
    return 0;
}

static void teardown(struct launch *l)
{
    close_pipes(l);
    if (l->shm) // not pthread_barrier_destroy: it waits for a stopped worker to leave
        munmap(l->shm, shm_bytes(l->n));
}

// Waits for the started workers, each one's report in rep (rc INT32_MIN: none, it crashed or
// was stopped) and its status. When one fails, the others may be waiting for it in a
// collective forever: they are stopped, at once when it ended without a report (a crash; or
// failed: a fork failed), else after $TWIN_COMM_GRACE seconds (30) in which they may end by
// themselves (most errors happen on every worker at the same step, and their records are best
// finished). A stop (TW_ECANCELED) is agreed by all: no deadline.
static void wait_workers(struct launch *l, const pid_t *pid, int started, bool failed,
                         struct report *rep, int *status)
{
    const char *g = getenv("TWIN_COMM_GRACE");
    long grace = g && *g ? strtol(g, NULL, 10) : 30;
    time_t kill_at = failed ? time(NULL) : 0; // 0: none
    bool done[MAX_RANKS] = { false }, killed = false;
    for (int left = started; left > 0;) {
        if (kill_at && !killed && time(NULL) >= kill_at) {
            for (int o = 0; o < started; o++)
                if (!done[o])
                    kill(pid[o], SIGTERM);
            killed = true;
        }
        int st, r = 0;
        pid_t w = waitpid(-1, &st, kill_at && !killed ? WNOHANG : 0);
        if (w == 0)
            usleep(50000);
        if (w < 0 && errno != EINTR)
            return;
        while (w > 0 && r < started && pid[r] != w)
            r++;
        if (w <= 0 || r == started)
            continue;
        done[r] = true, status[r] = st, left--;
        if (io_all(l->res_pipe[r][0], &rep[r], sizeof rep[r], false))
            rep[r].rc = INT32_MIN;
        bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && rep[r].rc == 0;
        if (!ok && !kill_at && rep[r].rc != TW_ECANCELED)
            kill_at = time(NULL) + (rep[r].rc == INT32_MIN ? 0 : grace);
    }
}

// The launch's result: the lowest rank that failed by itself, else one that a signal ended.
static int verdict(int n, const struct report *rep, const int *status)
{
    for (int r = 0; r < n; r++)
        if (rep[r].rc != INT32_MIN && rep[r].rc != 0)
            return tw_error_set(rep[r].rc, "%s", rep[r].msg);
    for (int r = 0; r < n; r++)
        if (rep[r].rc == INT32_MIN)
            return tw_error_set(TW_EIO, "worker %d of %d ended without a result (%s %d)", r, n,
                                WIFSIGNALED(status[r]) ? "signal" : "exit status",
                                WIFSIGNALED(status[r]) ? WTERMSIG(status[r])
                                                       : WEXITSTATUS(status[r]));
    return 0;
}

int tw_comm_launch(int n, enum tw_comm_kind kind, int (*fn)(tw_comm *c, void *ud), void *ud)
{
    if (n < 2 || n > MAX_RANKS)
        return tw_error_set(TW_EINVAL, "%d workers: want 2 to %d", n, MAX_RANKS);
    struct launch *l = tw_calloc(1, sizeof *l);
    if (!l)
        return tw_error_set(TW_ENOMEM, "out of memory");
    l->n = n, l->kind = kind;
    int rc = setup(l);
    pid_t pid[MAX_RANKS];
    int started = 0;
    fflush(NULL); // what stdio holds must not be written once per worker
    while (!rc && started < n) {
        pid_t p = fork();
        if (p == 0)
            worker(l, started, fn, ud); // does not return
        if (p < 0)
            rc = tw_error_set(TW_EIO, "starting worker %d of %d: %s", started, n, strerror(errno));
        else
            pid[started++] = p;
    }
    // The parent: the workers take Ctrl-C (they agree on stopping after a step); it waits.
    struct sigaction ign = { .sa_handler = SIG_IGN }, old;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGINT, &ign, &old);
    for (int r = 0; r < n; r++) { // the write ends are the workers'
        for (int e = 0; e < 2; e++)
            if (l->id_pipe[r][e] >= 0)
                close(l->id_pipe[r][e]), l->id_pipe[r][e] = -1;
        if (l->res_pipe[r][1] >= 0)
            close(l->res_pipe[r][1]), l->res_pipe[r][1] = -1;
    }
    struct report rep[MAX_RANKS];
    int status[MAX_RANKS];
    wait_workers(l, pid, started, rc != 0, rep, status);
    sigaction(SIGINT, &old, NULL);
    if (!rc)
        rc = verdict(n, rep, status);
    teardown(l);
    tw_free(l);
    return rc;
}

// Tests tw_team: every thread id runs once a region and its writes are visible after it; many
// regions in a row (the spinning path) and regions after the workers fell asleep (the waking
// path); barriers order the phases of a region; nested regions and NULL or one-thread teams
// run inline; regions asked for from several threads at once all run; tw_team_range cuts
// without gaps or overlaps; the OpenMP mode does the same with OpenMP's threads.
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "check.h"
#include "tensor/team.h"

#define MAXT 64

struct job {
    int calls[MAXT];    // per id: written by that thread only
    int64_t sum[MAXT];  // per id: its share of 0 .. n - 1
    atomic_int bad, nt; // an id out of range, the nt seen
    int64_t n;
};

static void job_fn(void *ctx, int id, int nt)
{
    struct job *j = ctx;
    if (id < 0 || id >= nt || nt > MAXT) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    atomic_store(&j->nt, nt);
    j->calls[id]++;
    int64_t lo, hi;
    tw_team_range(j->n, id, nt, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        j->sum[id] += i;
}

// One region over n items: true when each id ran once and the shares sum to 0 + .. + n-1.
static bool region_ok(struct tw_team *t, int64_t n, int want_nt)
{
    struct job j = { .n = n };
    tw_team_run(t, job_fn, &j);
    bool ok = atomic_load(&j.bad) == 0 && atomic_load(&j.nt) == want_nt;
    int64_t s = 0;
    for (int i = 0; i < MAXT; i++) {
        ok &= j.calls[i] == (i < want_nt ? 1 : 0);
        s += j.sum[i];
    }
    return ok && s == n * (n - 1) / 2;
}

static void check_region(struct tw_team *t, int64_t n, int want_nt)
{
    CHECK(region_ok(t, n, want_nt));
}

// Phases separated by barriers: in phase k thread id writes a[k][id], then after the barrier
// reads every thread's a[k][*]; a missing or leaky barrier shows as a stale value.
struct phases {
    struct tw_team *t;
    atomic_int a[8][MAXT];
    atomic_int stale;
};

static void phases_fn(void *ctx, int id, int nt)
{
    struct phases *p = ctx;
    for (int k = 0; k < 8; k++) {
        atomic_store_explicit(&p->a[k][id], k + 1, memory_order_relaxed);
        tw_team_barrier(p->t, nt);
        for (int i = 0; i < nt; i++)
            if (atomic_load_explicit(&p->a[k][i], memory_order_relaxed) != k + 1)
                atomic_fetch_add(&p->stale, 1);
    }
}

struct nest {
    struct tw_team *t;
    atomic_int inner_calls, inner_nt_not_1;
};

static void inner_fn(void *ctx, int id, int nt)
{
    struct nest *n = ctx;
    (void)id;
    atomic_fetch_add(&n->inner_calls, 1);
    if (nt != 1)
        atomic_fetch_add(&n->inner_nt_not_1, 1);
}

static void outer_fn(void *ctx, int id, int nt)
{
    struct nest *n = ctx;
    (void)id, (void)nt;
    tw_team_run(n->t, inner_fn, n); // from inside a region: inline
}

static atomic_int caller_bad; // regions of the concurrent callers that went wrong

static void *caller_main(void *arg)
{
    struct tw_team *t = arg;
    for (int r = 0; r < 200; r++)
        if (!region_ok(t, 1000 + r, tw_team_size(t)))
            atomic_fetch_add(&caller_bad, 1);
    return NULL;
}

int main(void)
{
    // tw_team_range: contiguous, covering, near-equal
    for (int nt = 1; nt <= 17; nt++)
        for (int64_t n = 0; n <= 40; n++) {
            int64_t prev = 0;
            for (int id = 0; id < nt; id++) {
                int64_t lo, hi;
                tw_team_range(n, id, nt, &lo, &hi);
                CHECK_EQ_INT(lo, prev);
                CHECK(hi - lo == n / nt || hi - lo == n / nt + 1);
                prev = hi;
            }
            CHECK_EQ_INT(prev, n);
        }

    // NULL and one-thread teams run inline
    check_region(NULL, 100, 1);
    struct tw_team *one;
    CHECK_OK(tw_team_new(1, &one));
    CHECK_EQ_INT(tw_team_size(one), 1);
    check_region(one, 100, 1);
    tw_team_free(one);
    tw_team_free(NULL);

    struct tw_team *big;
    CHECK(tw_team_new(5000, &big) == TW_EINVAL);

    for (int n = 2; n <= 8; n *= 2) {
        struct tw_team *t;
        CHECK_OK(tw_team_new(n, &t));
        CHECK_EQ_INT(tw_team_size(t), n);
        // back to back: the workers stay spinning
        for (int r = 0; r < 2000; r++)
            check_region(t, r, n);
        // after the spin time: the workers sleep and must be woken
        for (int r = 0; r < 3; r++) {
            struct timespec ts = { 0, 3 * TW_TEAM_SPIN_NS };
            nanosleep(&ts, NULL);
            check_region(t, 12345, n);
        }
        // barriers
        struct phases *p = calloc(1, sizeof *p);
        p->t = t;
        for (int r = 0; r < 50; r++)
            tw_team_run(t, phases_fn, p);
        CHECK_EQ_INT(atomic_load(&p->stale), 0);
        free(p);
        // nested regions run inline on each thread
        struct nest ns = { .t = t };
        tw_team_run(t, outer_fn, &ns);
        CHECK_EQ_INT(atomic_load(&ns.inner_calls), n);
        CHECK_EQ_INT(atomic_load(&ns.inner_nt_not_1), 0);
        // several callers at once: their regions run one after another
        pthread_t th[3];
        for (int i = 0; i < 3; i++)
            CHECK_EQ_INT(pthread_create(&th[i], NULL, caller_main, t), 0);
        for (int i = 0; i < 3; i++)
            pthread_join(th[i], NULL);
        CHECK_EQ_INT(atomic_load(&caller_bad), 0);
        tw_team_free(t);
    }
    // OpenMP's regions: the same checks, and no nesting inside an OpenMP region
    struct tw_team *o;
    CHECK_OK(tw_team_new_openmp(3, &o));
    CHECK_EQ_INT(tw_team_size(o), 3);
    for (int r = 0; r < 100; r++) {
        struct job j = { .n = 777 };
        tw_team_run(o, job_fn, &j);
        int nt = atomic_load(&j.nt); // OpenMP may give fewer threads than asked for
        CHECK(nt >= 1 && nt <= 3);
        CHECK(region_ok(o, 777, nt));
    }
    struct phases *ph = calloc(1, sizeof *ph);
    ph->t = o;
    for (int r = 0; r < 20; r++)
        tw_team_run(o, phases_fn, ph);
    CHECK_EQ_INT(atomic_load(&ph->stale), 0);
    free(ph);
    struct nest no = { .t = o };
    tw_team_run(o, outer_fn, &no);
    CHECK(atomic_load(&no.inner_calls) >= 1);
    CHECK_EQ_INT(atomic_load(&no.inner_nt_not_1), 0);
    tw_team_free(o);
    return check_report("team");
}

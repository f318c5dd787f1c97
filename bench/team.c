// bench/team: what the CPU backend's team of threads (tensor/team.h) costs: an empty region
// (the start and the end of one), and a barrier inside a region, with no work between
// barriers and with a few microseconds of it (each thread spinning that long, as a decoded
// token's products do between theirs), and with uneven work (thread i spins i / (n - 1) times
// 8 us: the early ones wait long, as behind a slow thread; the cost counted over the longest).
// Microseconds each, the mean over many.
// Usage: team [--threads 2,4,16] [--quick]
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cpu.h"
#include "tensor/team.h"

#include "bench_util.h"

static double now_us(void)
{
    return now() * 1e6;
}

static void spin_us(double us)
{
    double t0 = now_us();
    while (now_us() - t0 < us)
        ;
}

static void empty_fn(void *ctx, int id, int nt)
{
    (void)ctx, (void)id, (void)nt;
}

struct bars {
    struct tw_team *team;
    int n;
    double work_us;
    bool uneven; // thread id spins id / (nt - 1) times work_us
};

static void bars_fn(void *ctx, int id, int nt)
{
    const struct bars *b = ctx;
    double us = b->uneven ? (nt > 1 ? b->work_us * id / (nt - 1) : 0) : b->work_us;
    for (int i = 0; i < b->n; i++) {
        if (us > 0)
            spin_us(us);
        tw_team_barrier(b->team, nt);
    }
}

int main(int argc, char **argv)
{
    const char *list = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            list = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else {
            fprintf(stderr, "usage: team [--threads 2,4,16] [--quick]\n");
            return 2;
        }
    }
    long cpus = tw_cpu_count();
    char def[64];
    snprintf(def, sizeof def, "2,%ld", cpus > 2 ? cpus : 2);
    char threads[16][32];
    int rows = parse_list(list ? list : def, threads, 16);
    int reps = quick ? 200 : 20000;
    printf("team: %ld CPUs; us each, mean of %d\n", cpus, reps);
    printf("threads  region  barrier  after 2 us  after 0-8 us (over the work)\n");
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        const char *tok = threads[r];
        int n = atoi(tok);
        struct tw_team *t;
        if (n < 1 || tw_team_new(n, &t) != 0) {
            fprintf(stderr, "team: cannot make a team of %s threads\n", tok);
            return 1;
        }
        for (int i = 0; i < 100; i++) // warm: every worker awake and spinning
            tw_team_run(t, empty_fn, NULL);
        double t0 = now_us();
        for (int i = 0; i < reps; i++)
            tw_team_run(t, empty_fn, NULL);
        double region = (now_us() - t0) / reps;
        struct bars b = { t, reps, 0, false };
        t0 = now_us();
        tw_team_run(t, bars_fn, &b);
        double bar = (now_us() - t0) / reps;
        b.work_us = 2, b.n = reps / 4;
        t0 = now_us();
        tw_team_run(t, bars_fn, &b);
        double bar2 = (now_us() - t0) / b.n - 2;
        b.work_us = 8, b.uneven = true;
        t0 = now_us();
        tw_team_run(t, bars_fn, &b);
        double bar8 = (now_us() - t0) / b.n - (n > 1 ? 8 : 0);
        printf("%7d %7.2f %8.2f %11.2f %13.2f\n", n, region, bar, bar2, bar8);
        worst = bar8 > worst ? bar8 : worst;
        tw_team_free(t);
    }
    printf("headline: a barrier after uneven work costs at most %.2f us\n", worst);
    return 0;
}

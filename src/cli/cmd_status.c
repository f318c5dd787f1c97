// twin status: what the home holds — its schema, database, artifacts and the rows of each
// table — and which compute backends this build has.
#include <inttypes.h>
#include <stdio.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "store/home.h"
#include "twin_config.h"
#if TWIN_HAVE_CUDA
#include "tensor/cuda.h"
#endif

static void print_table(void *ctx, const char *table, int64_t rows)
{
    printf("  %-20s %" PRId64 " rows\n", table, rows);
}

static void print_backends(void)
{
    printf("backends:  cpu");
#if TWIN_HAVE_CUDA
    int n = tw_cuda_device_count();
    char name[256];
    if (n > 0 && tw_cuda_device_name(0, name, sizeof name) == 0)
        printf(", cuda (%d device%s: %s)", n, n > 1 ? "s" : "", name);
    else
        printf(", cuda (compiled; no device visible)");
#endif
    printf("\n");
}

static int run(struct tw_cli *cli, int argc, char **argv)
{
    if (argc > 1)
        return tw_cli_usage_error(&tw_verb_status, "unexpected argument '%s'", argv[1]);
    struct tw_home *h;
    if (tw_home_open(cli->home, &h) != 0)
        return tw_cli_fail();
    struct tw_home_stats st;
    if (tw_home_stats(h, &st) != 0) {
        tw_home_close(h);
        return tw_cli_fail();
    }
    char *created_at = tw_home_meta(h, "created_at");
    char *created_by = tw_home_meta(h, "created_by");
    printf("home:      %s\n", h->path);
    printf("created:   %s by %s\n", created_at ? created_at : "?", created_by ? created_by : "?");
    printf("schema:    version %d\n", st.schema_version);
    printf("database:  twin.db, %" PRId64 " bytes\n", st.db_bytes);
    printf("artifacts: %" PRId64 " blobs, %" PRId64 " bytes\n", st.blob_count, st.blob_bytes);
    print_backends();
    printf("tables:\n");
    int rc = tw_home_tables(h, print_table, NULL);
    tw_free(created_at);
    tw_free(created_by);
    tw_home_close(h);
    return rc ? tw_cli_fail() : TW_EXIT_OK;
}

const struct tw_verb tw_verb_status = {
    .name = "status",
    .summary = "show what the home holds",
    .usage = "usage: twin [--home DIR] status\n\n"
             "Prints the home's folder, when and by which twin it was created, its schema\n"
             "version, the size of twin.db, the number and size of the artifacts under\n"
             "blobs/, the compute backends of this build (cpu; cuda with its device when\n"
             "compiled with nvcc), and the row count of every table.\n",
    .run = run,
};

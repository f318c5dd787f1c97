// twin init: creates the home (twin.db with its schema, blobs/), or brings an existing home's
// schema up to date.
#include <stdio.h>

#include "cli/cli.h"
#include "store/home.h"

static int run(struct tw_cli *cli, int argc, char **argv)
{
    if (argc > 1)
        return tw_cli_usage_error(&tw_verb_init, "unexpected argument '%s'", argv[1]);
    int created = 0;
    if (tw_home_init(cli->home, &created) != 0)
        return tw_cli_fail();
    printf("%s the twin home at %s\n", created ? "created" : "checked", cli->home);
    return TW_EXIT_OK;
}

const struct tw_verb tw_verb_init = {
    .name = "init",
    .summary = "create the twin home (twin.db, blobs/)",
    .usage = "usage: twin [--home DIR] init\n\n"
             "Creates the home folder with its database (twin.db, SQLite) and the artifact\n"
             "store (blobs/). Creation is atomic: the home is built beside its final name\n"
             "and renamed into place. On an existing home it migrates the schema to this\n"
             "twin's version and changes nothing else. A folder that holds other files and\n"
             "no twin.db is refused.\n",
    .run = run,
};

/* cmd_train.c: `frugal train`: builds the config from defaults, --config FILE.json
 * and flags, runs it, and turns a failure into a message and an exit code. The
 * work (and the cost summary) is fg_train_run's. Under mpirun / srun (--dp N, --pp M) each
 * rank runs it on the rank grid; a rank that fails ends the whole job (MPI_Abort). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "frugal/dist.h"
#include "frugal/train.h"

static void train_usage(FILE *f)
{
    fprintf(f, "usage: frugal train [--config FILE.json] [--data FILE.txt | --train-shards A.bin,... [--val-shards "
               "..]] [--out DIR] [options]\n");
    fg_train_config_print_help(f);
}

int fg_cmd_train(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            train_usage(stdout);
            return 0;
        }
    fg_train_config c;
    fg_train_config_default(&c);
    fg_status st = fg_train_config_from_args(&c, argc, argv, NULL);
    if (st != FG_OK)
        return fg_cli_fail("train", st, "frugal train --help lists the options");
    if (c.dp * c.ep == 1 && c.pp == 1 && c.tp == 1 && !fg_dist_launched()) {
        fg_train_result r;
        st = fg_train_run(&c, stdout, &r);
        if (st != FG_OK)
            return fg_cli_fail("train", st, NULL);
        return 0;
    }
    fg_comm *world = NULL;
    st = fg_dist_init(&argc, &argv, 1, &world);
    if (st != FG_OK)
        return fg_cli_fail("train", st, "--dp / --tp / --pp / --ep run under mpirun -np (their product; docs/DIST.md)");
    fg_comm_set_timeout(world, c.comm_timeout); /* the watchdog, inherited by every group */
    fg_grid g;
    st = fg_grid_init(&g, world, c.dp, c.tp, c.pp, c.ep);
    int rank = fg_comm_rank(world);
    if (st == FG_OK) {
        fg_train_result r;
        st = fg_train_run_grid(&c, &g, rank == 0 ? stdout : NULL, &r);
    }
    if (st != FG_OK) {
        char cmd[32];
        snprintf(cmd, sizeof cmd, "train (rank %d of %d)", rank, fg_comm_size(world));
        int rc = fg_cli_fail(cmd, st, NULL);
        fflush(stdout);
        if (fg_comm_size(world) > 1)
            fg_comm_abort(world, rc); /* the other ranks wait in a collective: end them all */
        fg_grid_free(&g);
        fg_dist_finalize(world);
        return rc;
    }
    fg_grid_free(&g);
    fg_dist_finalize(world);
    return 0;
}

/* nompi.c: the MPI entry points of a build without MPI (CMake compiles this file only
 * when find_package(MPI) failed): fg_comm_local still works, asking for MPI is an error. */
#include "dist_impl.h"

int fg_dist_have_mpi(void)
{
    return 0;
}

fg_status dist_mpi_init(int *argc, char ***argv, fg_comm **world)
{
    return fg_error(FG_ERR_INVALID, "this frugal was built without MPI (install libopenmpi-dev and rebuild: "
                                    "scripts/deps.sh) so it runs a single process only");
}

void dist_mpi_finalize(void)
{
}

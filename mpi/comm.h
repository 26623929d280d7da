/* comm.h - the communicator the trainer talks to.
 *
 * One interface, two implementations: MPI for CPU ranks (mpi/comm_mpi.c) and,
 * later, NCCL for GPU ranks (its unique id broadcast over MPI). A plain
 * `presight train` is world size 1 through the same calls: no special case.
 * Buffers are contiguous arrays of `real`. */
#ifndef PRESIGHT_COMM_H
#define PRESIGHT_COMM_H

#include <stddef.h>

#include "error.h"
#include "real.h"

typedef struct comm comm;

/* Initialises MPI if needed (a singleton when not launched by mpirun/srun). */
int comm_world(comm **out, int *argc, char ***argv, ps_error *err);
void comm_free(comm *c);
/* Finalises MPI (once, at the end of main). */
void comm_shutdown(void);

int comm_rank(const comm *c);
int comm_size(const comm *c);

/* Sum over ranks, in place. */
int comm_all_reduce_sum(comm *c, real *buf, size_t count, ps_error *err);
int comm_all_reduce_sum_double(comm *c, double *buf, size_t count, ps_error *err);
int comm_broadcast(comm *c, void *buf, size_t bytes, int root, ps_error *err);
int comm_barrier(comm *c, ps_error *err);

/* The MPI communicator behind c, for libraries that take one (parallel HDF5).
 * Declared as void * so this header needs no mpi.h: cast to MPI_Comm *. */
void *comm_mpi_handle(comm *c);

#endif

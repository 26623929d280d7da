/* comm.h - the communicator the trainer talks to.
 *
 * MPI (mpi/comm_mpi.c). The GPU engine's collectives are NCCL, inside the
 * engine (cuda/nccl.cu); this communicator carries their unique ids. A plain
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
/* Ends every rank of the job now (MPI_Abort): for a failure on one rank that
 * the others cannot learn of, because they wait for it inside a collective.
 * Only main (cli/) calls it, after printing the rank's message. */
void comm_abort(comm *c, int code) __attribute__((noreturn));

int comm_rank(const comm *c);
int comm_size(const comm *c);

/* A collective in flight; comm_wait completes and frees it. */
typedef struct comm_request comm_request;

/* recv [size * count] = every rank's send [count], in rank order. send may
 * alias recv + rank * count (in place). */
int comm_all_gather(comm *c, const real *send, real *recv, size_t count, ps_error *err);
int comm_iall_gather(comm *c, const real *send, real *recv, size_t count, comm_request **req, ps_error *err);
/* recv [count] = sum over ranks of their send [rank * count .. (rank + 1) * count). */
int comm_reduce_scatter(comm *c, const real *send, real *recv, size_t count, ps_error *err);
int comm_ireduce_scatter(comm *c, const real *send, real *recv, size_t count, comm_request **req, ps_error *err);
int comm_iall_reduce_sum(comm *c, real *buf, size_t count, comm_request **req, ps_error *err);
int comm_wait(comm_request *req, ps_error *err);

/* Ranks passing the same color form a new communicator, ordered by key. */
int comm_split(comm *c, int color, int key, comm **out, ps_error *err);
/* Ranks that share a node (shared memory), for hybrid sharding. */
int comm_split_node(comm *c, comm **out, ps_error *err);

/* Payload bytes this rank handed to collectives through c (all-gather and
 * reduce-scatter: the full buffer; all-reduce: twice the buffer, as a ring
 * moves it), for the communication-volume benchmark. */
double comm_bytes(const comm *c);

/* Sum over ranks, in place. */
int comm_all_reduce_sum(comm *c, real *buf, size_t count, ps_error *err);
int comm_all_reduce_sum_double(comm *c, double *buf, size_t count, ps_error *err);
int comm_broadcast(comm *c, void *buf, size_t bytes, int root, ps_error *err);
int comm_barrier(comm *c, ps_error *err);

/* The MPI communicator behind c, for libraries that take one (parallel HDF5).
 * Declared as void * so this header needs no mpi.h: cast to MPI_Comm *. */
void *comm_mpi_handle(comm *c);

#endif

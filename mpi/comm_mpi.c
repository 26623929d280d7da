/* comm_mpi.c - the communicator over MPI (CPU ranks). */
#include <mpi.h>
#include <stdlib.h>

#include "comm.h"

struct comm {
    MPI_Comm mpi;
    int rank, size;
};

static MPI_Datatype real_type(void) { return REAL_IS_DOUBLE ? MPI_DOUBLE : MPI_FLOAT; }

int comm_world(comm **out, int *argc, char ***argv, ps_error *err) {
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready && MPI_Init(argc, argv) != MPI_SUCCESS) return ps_fail(err, "MPI_Init failed");
    comm *c = calloc(1, sizeof *c);
    if (!c) return ps_fail(err, "out of memory");
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    MPI_Comm_rank(c->mpi, &c->rank);
    MPI_Comm_size(c->mpi, &c->size);
    *out = c;
    return 0;
}

void comm_free(comm *c) {
    if (!c) return;
    MPI_Comm_free(&c->mpi);
    free(c);
}

void comm_shutdown(void) {
    int ready = 0, done = 0;
    MPI_Initialized(&ready);
    MPI_Finalized(&done);
    if (ready && !done) MPI_Finalize();
}

int comm_rank(const comm *c) { return c->rank; }
int comm_size(const comm *c) { return c->size; }

/* MPI counts are int: large buffers go in slices. */
#define COMM_SLICE ((size_t)1 << 30)

int comm_all_reduce_sum(comm *c, real *buf, size_t count, ps_error *err) {
    for (size_t at = 0; at < count; at += COMM_SLICE) {
        int n = (int)(count - at < COMM_SLICE ? count - at : COMM_SLICE);
        if (MPI_Allreduce(MPI_IN_PLACE, buf + at, n, real_type(), MPI_SUM, c->mpi) != MPI_SUCCESS)
            return ps_fail(err, "MPI_Allreduce of %zu values failed", count);
    }
    return 0;
}

int comm_all_reduce_sum_double(comm *c, double *buf, size_t count, ps_error *err) {
    if (MPI_Allreduce(MPI_IN_PLACE, buf, (int)count, MPI_DOUBLE, MPI_SUM, c->mpi) != MPI_SUCCESS)
        return ps_fail(err, "MPI_Allreduce of %zu doubles failed", count);
    return 0;
}

int comm_broadcast(comm *c, void *buf, size_t bytes, int root, ps_error *err) {
    if (MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, c->mpi) != MPI_SUCCESS)
        return ps_fail(err, "MPI_Bcast of %zu bytes failed", bytes);
    return 0;
}

int comm_barrier(comm *c, ps_error *err) {
    if (MPI_Barrier(c->mpi) != MPI_SUCCESS) return ps_fail(err, "MPI_Barrier failed");
    return 0;
}

void *comm_mpi_handle(comm *c) { return &c->mpi; }

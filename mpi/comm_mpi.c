/* comm_mpi.c - the communicator over MPI (CPU ranks). */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "comm.h"

struct comm {
    MPI_Comm mpi;
    int rank, size;
    double bytes; /* payload handed to collectives (see comm_bytes) */
};

struct comm_request {
    MPI_Request mpi;
};

static MPI_Datatype real_type(void) { return REAL_IS_DOUBLE ? MPI_DOUBLE : MPI_FLOAT; }

static comm *wrap(MPI_Comm mpi) {
    comm *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->mpi = mpi;
    MPI_Comm_rank(mpi, &c->rank);
    MPI_Comm_size(mpi, &c->size);
    return c;
}

int comm_world(comm **out, int *argc, char ***argv, ps_error *err) {
    int ready = 0;
    MPI_Initialized(&ready);
    int provided = 0; /* FUNNELED: OpenMP and the checkpoint hasher run threads, only the main one calls MPI */
    if (!ready && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ps_fail(err, "MPI_Init_thread failed");
    MPI_Comm dup;
    MPI_Comm_dup(MPI_COMM_WORLD, &dup);
    if (!(*out = wrap(dup))) return ps_fail(err, "out of memory");
    return 0;
}

int comm_split(comm *c, int color, int key, comm **out, ps_error *err) {
    MPI_Comm part;
    if (MPI_Comm_split(c->mpi, color, key, &part) != MPI_SUCCESS) return ps_fail(err, "MPI_Comm_split failed");
    if (!(*out = wrap(part))) return ps_fail(err, "out of memory");
    return 0;
}

int comm_split_node(comm *c, comm **out, ps_error *err) {
    MPI_Comm node;
    if (MPI_Comm_split_type(c->mpi, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return ps_fail(err, "MPI_Comm_split_type (node) failed");
    if (!(*out = wrap(node))) return ps_fail(err, "out of memory");
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

void comm_abort(comm *c, int code) {
    MPI_Abort(c ? c->mpi : MPI_COMM_WORLD, code);
    exit(code); /* MPI_Abort does not return; this keeps the compiler sure of it */
}

int comm_rank(const comm *c) { return c->rank; }
int comm_size(const comm *c) { return c->size; }
double comm_bytes(const comm *c) { return c->bytes; }
void *comm_mpi_handle(comm *c) { return &c->mpi; }

/* MPI counts are int. Unit slices stay far below that (a 13B model's largest
 * unit is its 164M-element embedding); say so plainly if one does not. */
static int check_count(size_t count, const char *what, ps_error *err) {
    if (count > INT_MAX) return ps_fail(err, "%s of %zu elements exceeds MPI's int count", what, count);
    return 0;
}

static int issued(int rc, const char *what, size_t count, ps_error *err) {
    if (rc != MPI_SUCCESS) return ps_fail(err, "%s of %zu elements failed (MPI error %d)", what, count, rc);
    return 0;
}

static const void *in_place_or(const comm *c, const real *send, const real *recv, size_t count) {
    return send == recv + (size_t)c->rank * count ? MPI_IN_PLACE : (const void *)send;
}

int comm_all_gather(comm *c, const real *send, real *recv, size_t count, ps_error *err) {
    if (check_count(count, "all-gather", err)) return -1;
    c->bytes += (double)count * c->size * sizeof(real);
    return issued(MPI_Allgather(in_place_or(c, send, recv, count), (int)count, real_type(), recv, (int)count,
                                real_type(), c->mpi),
                  "all-gather", count, err);
}

int comm_iall_gather(comm *c, const real *send, real *recv, size_t count, comm_request **req, ps_error *err) {
    if (check_count(count, "all-gather", err)) return -1;
    if (!(*req = malloc(sizeof **req))) return ps_fail(err, "out of memory");
    c->bytes += (double)count * c->size * sizeof(real);
    return issued(MPI_Iallgather(in_place_or(c, send, recv, count), (int)count, real_type(), recv, (int)count,
                                 real_type(), c->mpi, &(*req)->mpi),
                  "all-gather", count, err);
}

int comm_reduce_scatter(comm *c, const real *send, real *recv, size_t count, ps_error *err) {
    if (check_count(count, "reduce-scatter", err)) return -1;
    c->bytes += (double)count * c->size * sizeof(real);
    return issued(MPI_Reduce_scatter_block(send, recv, (int)count, real_type(), MPI_SUM, c->mpi), "reduce-scatter",
                  count, err);
}

int comm_ireduce_scatter(comm *c, const real *send, real *recv, size_t count, comm_request **req, ps_error *err) {
    if (check_count(count, "reduce-scatter", err)) return -1;
    if (!(*req = malloc(sizeof **req))) return ps_fail(err, "out of memory");
    c->bytes += (double)count * c->size * sizeof(real);
    return issued(MPI_Ireduce_scatter_block(send, recv, (int)count, real_type(), MPI_SUM, c->mpi, &(*req)->mpi),
                  "reduce-scatter", count, err);
}

/* MPI counts are int: large all-reduces go in slices. */
#define COMM_SLICE ((size_t)1 << 30)

int comm_all_reduce_sum(comm *c, real *buf, size_t count, ps_error *err) {
    c->bytes += 2.0 * count * sizeof(real);
    for (size_t at = 0; at < count; at += COMM_SLICE) {
        int n = (int)(count - at < COMM_SLICE ? count - at : COMM_SLICE);
        if (MPI_Allreduce(MPI_IN_PLACE, buf + at, n, real_type(), MPI_SUM, c->mpi) != MPI_SUCCESS)
            return ps_fail(err, "MPI_Allreduce of %zu values failed", count);
    }
    return 0;
}

int comm_iall_reduce_sum(comm *c, real *buf, size_t count, comm_request **req, ps_error *err) {
    if (check_count(count, "all-reduce", err)) return -1;
    if (!(*req = malloc(sizeof **req))) return ps_fail(err, "out of memory");
    c->bytes += 2.0 * count * sizeof(real);
    return issued(MPI_Iallreduce(MPI_IN_PLACE, buf, (int)count, real_type(), MPI_SUM, c->mpi, &(*req)->mpi),
                  "all-reduce", count, err);
}

int comm_wait(comm_request *req, ps_error *err) {
    if (!req) return 0;
    int rc = MPI_Wait(&req->mpi, MPI_STATUS_IGNORE);
    free(req);
    return rc == MPI_SUCCESS ? 0 : ps_fail(err, "waiting for a collective failed (MPI error %d)", rc);
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

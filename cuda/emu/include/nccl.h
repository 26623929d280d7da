/* nccl.h - CPU emulator stand-in (see cuda/emu/emu.h).
 *
 * By default the types only: the loader finds no library, so NCCL reports
 * itself missing (the check's emulator build).
 *
 * With EMU_NCCL_MPI (the engine's emulator build, build/emu/libpresight-cuda.so,
 * loaded into presight's MPI ranks) "loading NCCL" yields the collectives
 * below, done by MPI over communicators split from MPI_COMM_WORLD by the
 * NCCL id (which names the rank that made it): the emulator runs every stream in
 * order, so each rank reaches its collectives in program order, as NCCL
 * requires. That lets tests/t_gpu_train.sh train the GPU engine on several
 * ranks without a GPU. EMU_NO_NCCL=1 makes the library missing again. */
#ifndef PRESIGHT_EMU_NCCL_H
#define PRESIGHT_EMU_NCCL_H
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "../emu.h"

typedef struct {
    char internal[128];
} ncclUniqueId;
typedef struct ncclComm *ncclComm_t;
typedef enum { ncclSuccess = 0, ncclInvalidArgument = 4, ncclInternalError = 3 } ncclResult_t;
typedef enum { ncclFloat32 = 7, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;

#ifndef EMU_NCCL_MPI

static inline void *emu_no_nccl(const char *, int) { return NULL; }
#define dlopen(name, flags) emu_no_nccl(name, flags)

#else

#define OMPI_SKIP_MPICXX 1 /* the C API only: no C++ bindings to link */
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

struct ncclComm {
    MPI_Comm comm;
    int rank;
};

static inline ncclResult_t emu_mpi(int rc) { return rc == MPI_SUCCESS ? ncclSuccess : ncclInternalError; }

static inline ncclResult_t emu_nccl_version(int *v) {
    *v = 0; /* "0.0.0": not a real NCCL */
    return ncclSuccess;
}

/* The id names its maker (world rank + 1): ranks sharing an id form one communicator. */
static inline ncclResult_t emu_nccl_unique_id(ncclUniqueId *id) {
    int me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    memset(id, 0, sizeof *id);
    me += 1;
    memcpy(id->internal, &me, sizeof me);
    return ncclSuccess;
}

/* MPI_Comm_split over the world by the id: every rank creates its
 * communicators in the same order (the engine does), so the splits match. */
static inline ncclResult_t emu_nccl_init(ncclComm_t *c, int world, ncclUniqueId id, int rank) {
    int color = 0, size = 0, me = -1;
    memcpy(&color, id.internal, sizeof color);
    *c = new ncclComm{MPI_COMM_NULL, rank};
    if (MPI_Comm_split(MPI_COMM_WORLD, color, rank, &(*c)->comm) != MPI_SUCCESS) return ncclInternalError;
    MPI_Comm_size((*c)->comm, &size);
    MPI_Comm_rank((*c)->comm, &me);
    return size == world && me == rank ? ncclSuccess : ncclInvalidArgument;
}

static inline ncclResult_t emu_nccl_destroy(ncclComm_t c) {
    MPI_Comm_free(&c->comm);
    delete c;
    return ncclSuccess;
}

/* Sums are fp32 only (the engine reduces fp32 gradients); bf16 is moved, never added. */
static inline ncclResult_t emu_nccl_all_reduce(const void *send, void *recv, size_t count, ncclDataType_t type,
                                               ncclRedOp_t, ncclComm_t c, cudaStream_t) {
    if (type != ncclFloat32) return ncclInvalidArgument;
    return emu_mpi(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, MPI_FLOAT, MPI_SUM, c->comm));
}

static inline ncclResult_t emu_nccl_all_gather(const void *send, void *recv, size_t count, ncclDataType_t type,
                                               ncclComm_t c, cudaStream_t) {
    MPI_Datatype t = type == ncclFloat32 ? MPI_FLOAT : MPI_UINT16_T;
    size_t bytes = count * (type == ncclFloat32 ? 4 : 2);
    const void *in = send == (const char *)recv + c->rank * bytes ? MPI_IN_PLACE : send;
    return emu_mpi(MPI_Allgather(in, (int)count, t, recv, (int)count, t, c->comm));
}

static inline ncclResult_t emu_nccl_reduce_scatter(const void *send, void *recv, size_t count, ncclDataType_t type,
                                                   ncclRedOp_t, ncclComm_t c, cudaStream_t) {
    if (type != ncclFloat32) return ncclInvalidArgument;
    return emu_mpi(MPI_Reduce_scatter_block(send, recv, (int)count, MPI_FLOAT, MPI_SUM, c->comm));
}

static inline const char *emu_nccl_error(ncclResult_t r) {
    return r == ncclInvalidArgument ? "invalid argument (emulated NCCL)" : "MPI failed (emulated NCCL)";
}

static inline void *emu_nccl_open(const char *, int) {
    const char *off = getenv("EMU_NO_NCCL");
    return off && *off ? NULL : (void *)&emu_nccl_open;
}

static inline void *emu_nccl_symbol(void *, const char *name) {
    static const struct {
        const char *name;
        void *fn;
    } table[] = {{"ncclGetVersion", (void *)emu_nccl_version},
                 {"ncclGetUniqueId", (void *)emu_nccl_unique_id},
                 {"ncclCommInitRank", (void *)emu_nccl_init},
                 {"ncclCommDestroy", (void *)emu_nccl_destroy},
                 {"ncclAllReduce", (void *)emu_nccl_all_reduce},
                 {"ncclAllGather", (void *)emu_nccl_all_gather},
                 {"ncclReduceScatter", (void *)emu_nccl_reduce_scatter},
                 {"ncclGetErrorString", (void *)emu_nccl_error}};
    for (const auto &e : table)
        if (!strcmp(e.name, name)) return e.fn;
    return NULL;
}

#define dlopen(name, flags) emu_nccl_open(name, flags)
#define dlsym(handle, name) emu_nccl_symbol(handle, name)
#define dlclose(handle) ((void)(handle), 0)
static inline const char *emu_nccl_dlerror(void) { return NULL; }
#define dlerror() emu_nccl_dlerror()

#endif
#endif

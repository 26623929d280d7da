/* nccl.cu - the NCCL communicator, loaded at run time.
 *
 * libnccl is dlopen()ed (PRESIGHT_NCCL=/path/libnccl.so.2 to choose one;
 * else libnccl.so.2 from the loader's path), so that programs linking this
 * library start, and run on one GPU, where NCCL is missing. nccl.h is used
 * for its types only. Collectives are sums, on the compute stream unless
 * gpu_comm_set_stream gave the communicator a stream of its own. */
#include <dlfcn.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>

#include "gpu_internal.cuh"

static_assert(sizeof(ncclUniqueId) == GPU_COMM_ID_BYTES, "ncclUniqueId size");

struct gpu_comm {
    ncclComm_t comm;
    int world, rank;
    cudaStream_t stream; /* NULL: the compute stream */
};

static cudaStream_t comm_stream(const gpu_comm *c) { return c->stream ? c->stream : gpu_stream_(); }

namespace {

struct NcclApi {
    void *handle = NULL;
    int tried = 0, version = 0;
    char why[512] = "";
    ncclResult_t (*GetVersion)(int *);
    ncclResult_t (*GetUniqueId)(ncclUniqueId *);
    ncclResult_t (*CommInitRank)(ncclComm_t *, int, ncclUniqueId, int);
    ncclResult_t (*CommDestroy)(ncclComm_t);
    ncclResult_t (*AllReduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*AllGather)(const void *, void *, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
    ncclResult_t (*ReduceScatter)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                                  cudaStream_t);
    const char *(*GetErrorString)(ncclResult_t);
};

NcclApi g_nccl;
std::mutex g_nccl_mu;

int load_nccl(void) {
    std::lock_guard<std::mutex> lock(g_nccl_mu);
    if (g_nccl.tried) return g_nccl.handle ? 0 : -1;
    g_nccl.tried = 1;
    const char *force = getenv("PRESIGHT_NCCL");
    const char *names[] = {force && *force ? force : "libnccl.so.2", "libnccl.so"};
    int n_names = force && *force ? 1 : 2;
    for (int i = 0; i < n_names && !g_nccl.handle; i++) {
        dlerror();
        g_nccl.handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!g_nccl.handle) {
            const char *e = dlerror();
            snprintf(g_nccl.why, sizeof g_nccl.why, "cannot load %s (%s)", names[i], e ? e : "?");
        }
    }
    if (!g_nccl.handle) return -1;
#define SYM(field, name)                                                                                  \
    do {                                                                                                  \
        *(void **)&g_nccl.field = dlsym(g_nccl.handle, name);                                             \
        if (!g_nccl.field) {                                                                              \
            snprintf(g_nccl.why, sizeof g_nccl.why, "the loaded libnccl has no %s", name);                \
            dlclose(g_nccl.handle);                                                                       \
            g_nccl.handle = NULL;                                                                         \
            return -1;                                                                                    \
        }                                                                                                 \
    } while (0)
    SYM(GetVersion, "ncclGetVersion");
    SYM(GetUniqueId, "ncclGetUniqueId");
    SYM(CommInitRank, "ncclCommInitRank");
    SYM(CommDestroy, "ncclCommDestroy");
    SYM(AllReduce, "ncclAllReduce");
    SYM(AllGather, "ncclAllGather");
    SYM(ReduceScatter, "ncclReduceScatter");
    SYM(GetErrorString, "ncclGetErrorString");
#undef SYM
    g_nccl.GetVersion(&g_nccl.version);
    return 0;
}

int nccl_fail(ps_error *err, const char *what, ncclResult_t r) {
    return ps_fail(err, "%s: %s (ncclResult %d)", what, g_nccl.GetErrorString ? g_nccl.GetErrorString(r) : "?",
                   (int)r);
}

ncclDataType_t nccl_type(int type) { return type == GPU_F32 ? ncclFloat32 : ncclBfloat16; }

} // namespace

int gpu_comm_available(ps_error *err) {
    if (load_nccl()) {
        ps_fail(err, "NCCL unavailable: %s", g_nccl.why);
        return 0;
    }
    return 1;
}

int gpu_comm_version(void) { return g_nccl.handle ? g_nccl.version : 0; }

int gpu_comm_unique_id(void *id, ps_error *err) {
    if (load_nccl()) return ps_fail(err, "NCCL unavailable: %s", g_nccl.why);
    ncclUniqueId u;
    ncclResult_t r = g_nccl.GetUniqueId(&u);
    if (r != ncclSuccess) return nccl_fail(err, "ncclGetUniqueId", r);
    memcpy(id, &u, sizeof u);
    return 0;
}

gpu_comm *gpu_comm_init(int world, int rank, const void *id, ps_error *err) {
    if (load_nccl()) {
        ps_fail(err, "NCCL unavailable: %s", g_nccl.why);
        return NULL;
    }
    gpu_comm *c = (gpu_comm *)calloc(1, sizeof *c);
    if (!c) {
        ps_fail(err, "out of memory");
        return NULL;
    }
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclResult_t r = g_nccl.CommInitRank(&c->comm, world, u, rank);
    if (r != ncclSuccess) {
        nccl_fail(err, "ncclCommInitRank", r);
        free(c);
        return NULL;
    }
    c->world = world;
    c->rank = rank;
    return c;
}

void gpu_comm_set_stream(gpu_comm *c, void *stream) { c->stream = (cudaStream_t)stream; }

void gpu_comm_free(gpu_comm *c) {
    if (!c) return;
    if (g_nccl.handle) g_nccl.CommDestroy(c->comm);
    free(c);
}

int gpu_all_reduce(gpu_comm *c, const void *send, void *recv, size_t count, int type, ps_error *err) {
    ncclResult_t r = g_nccl.AllReduce(send, recv, count, nccl_type(type), ncclSum, c->comm, comm_stream(c));
    return r == ncclSuccess ? 0 : nccl_fail(err, "ncclAllReduce", r);
}

int gpu_all_gather(gpu_comm *c, const void *send, void *recv, size_t send_count, int type, ps_error *err) {
    ncclResult_t r = g_nccl.AllGather(send, recv, send_count, nccl_type(type), c->comm, comm_stream(c));
    return r == ncclSuccess ? 0 : nccl_fail(err, "ncclAllGather", r);
}

int gpu_reduce_scatter(gpu_comm *c, const void *send, void *recv, size_t recv_count, int type, ps_error *err) {
    ncclResult_t r =
        g_nccl.ReduceScatter(send, recv, recv_count, nccl_type(type), ncclSum, c->comm, comm_stream(c));
    return r == ncclSuccess ? 0 : nccl_fail(err, "ncclReduceScatter", r);
}

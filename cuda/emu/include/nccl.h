/* nccl.h - CPU emulator stand-in (see cuda/emu/emu.h): the types only; the
 * loader finds no library, so NCCL reports itself missing. */
#ifndef PRESIGHT_EMU_NCCL_H
#define PRESIGHT_EMU_NCCL_H
#include <dlfcn.h>

#include "../emu.h"

typedef struct {
    char internal[128];
} ncclUniqueId;
typedef struct ncclComm *ncclComm_t;
typedef enum { ncclSuccess = 0, ncclInternalError = 3 } ncclResult_t;
typedef enum { ncclFloat32 = 7, ncclBfloat16 = 9 } ncclDataType_t;
typedef enum { ncclSum = 0 } ncclRedOp_t;

static inline void *emu_no_nccl(const char *, int) { return NULL; }
#define dlopen(name, flags) emu_no_nccl(name, flags)
#endif

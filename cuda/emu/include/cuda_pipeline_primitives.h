/* cuda_pipeline_primitives.h - CPU emulator stand-in (see cuda/emu/emu.h):
 * the asynchronous copy (cp.async) happens at once, so commit and wait have
 * nothing left to do; the alignment the hardware requires is checked. */
#include "../emu.h"

static inline void __pipeline_memcpy_async(void *dst, const void *src, size_t size_and_align, size_t zfill = 0) {
    if ((size_and_align != 4 && size_and_align != 8 && size_and_align != 16) || zfill > size_and_align ||
        ((uintptr_t)dst | (uintptr_t)src) % size_and_align) {
        fprintf(stderr, "emu: __pipeline_memcpy_async(%p, %p, %zu, %zu): bad size or alignment (kernel %s)\n", dst, src,
                size_and_align, zfill, emu::g.kernel);
        abort();
    }
    memcpy(dst, src, size_and_align - zfill);
    memset((char *)dst + (size_and_align - zfill), 0, zfill);
}
static inline void __pipeline_commit() {}
static inline void __pipeline_wait_prior(size_t) {}

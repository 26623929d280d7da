/* launch.cuh - kernel launches and dynamic shared memory through macros, so
 * that the same sources also build for the CPU emulator (cuda/emu/), which
 * defines both before this file is read. */
#ifndef PRESIGHT_LAUNCH_CUH
#define PRESIGHT_LAUNCH_CUH

#ifndef LAUNCH
#define LAUNCH(kernel, grid, block, smem, stream, ...) kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif
#ifndef DYN_SMEM
#define DYN_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

#endif

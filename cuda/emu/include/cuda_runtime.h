/* cuda_runtime.h - CPU emulator stand-in (see cuda/emu/emu.h). */
#include "../emu.h"

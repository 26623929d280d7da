# mk/gpu.mk - the GPU backend's targets (sources in cuda/, see cuda/README.md).
#
#   make gpu-check    build, then run build/gpu_check on this machine's GPU
#                     (writes bench/gpu.json); without a usable GPU it says so
#   make gpu-bundle   build/gpu-bundle/: gpu_check + presight + the shared
#                     libraries a bare GPU machine lacks + run.sh (< 60 MB)
#
# The Makefile compiles cuda/*.cu into the library when nvcc is found
# (HAVE_CUDA); this file adds the check program (cuda/check/, outside that
# wildcard so that its main() never enters libpresight.a), header
# dependencies for the .cu objects, and the bundle. gpu_check links the CUDA
# runtime statically and cuBLASLt dynamically; NCCL is dlopen()ed at run time.

GPU_CHECK     := $(BUILD)/gpu_check
GPU_BUNDLE    := $(BUILD)/gpu-bundle
GPU_HINT      := no usable GPU here; run \`make gpu-bundle\` and copy build/gpu-bundle to a GPU machine

.PHONY: gpu-check gpu-bundle gpu-emu

# The CPU emulator build (cuda/emu/): the same .cu sources and the same check
# program compiled by the host compiler against stand-in CUDA headers, with
# AddressSanitizer and UBSan. It needs no CUDA toolkit. `make gpu-emu` runs it;
# tests/t_gpu.sh runs it on every `make test`.
GPU_EMU       := $(BUILD)/gpu_check_emu
GPU_EMU_SRC   := $(wildcard cuda/*.cu) cuda/check/gpu_check.cu
GPU_EMU_OBJ   := $(GPU_EMU_SRC:%.cu=$(BUILD)/emu/%.o)
GPU_EMU_CPU   := $(addprefix $(BUILD)/core/,backend_cpu.o blas.o error.o rng.o model.o optim.o)
GPU_EMU_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
GPU_EMU_FLAGS := -std=c++17 -O1 -g -x c++ -DPRESIGHT_EMU -Icuda/emu/include -Icuda -Icore -Impi \
                 -fno-strict-aliasing -fopenmp -Wall -Wno-unused-function -Wno-unknown-pragmas $(GPU_EMU_SAN)

$(BUILD)/emu/%.o: %.cu cuda/emu/emu.h cuda/emu/include/nccl.h cuda/gpu.h cuda/gpu_internal.cuh cuda/launch.cuh
	@mkdir -p $(dir $@)
	$(CXX) $(GPU_EMU_FLAGS) -c $< -o $@

$(GPU_EMU): $(GPU_EMU_OBJ) $(GPU_EMU_CPU)
	$(CXX) $(GPU_EMU_SAN) -o $@ $^ -fopenmp -ldl -lm

tests-build: $(GPU_EMU)

gpu-emu: $(GPU_EMU)
	@GPU_CHECK_TIMEOUT_SCALE=$${GPU_CHECK_TIMEOUT_SCALE:-4} ASAN_OPTIONS=detect_leaks=0 $(GPU_EMU) --json $(BUILD)/gpu-emu.json

ifeq ($(HAVE_CUDA),1)

GPU_CHECK_OBJ := $(BUILD)/cuda/check/gpu_check.o
GPU_CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/%.o)
GPU_HDRS      := cuda/gpu.h cuda/gpu_internal.cuh cuda/launch.cuh core/error.h
GPU_LDLIBS    := -fopenmp -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static \
                 -ldl -lrt -lpthread -lm -lstdc++

# The Makefile's .cu rule writes no dependency files: name the headers here.
$(GPU_CU_OBJ): $(GPU_HDRS)

$(GPU_CHECK_OBJ): cuda/check/gpu_check.cu $(GPU_HDRS) core/backend.h core/model.h core/blas.h core/optim.h core/config.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -Icuda -c $< -o $@

$(GPU_CHECK): $(GPU_CHECK_OBJ) $(LIB)
	$(CXX) -o $@ $(GPU_CHECK_OBJ) $(LIB) $(GPU_LDLIBS)

# CI compiles and links the check on every `make test` (tests/t_gpu.sh runs it).
tests-build: $(GPU_CHECK)

gpu-check: $(BIN) $(GPU_CHECK)
	@rc=0; $(GPU_CHECK) --json bench/gpu.json || rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "$(GPU_HINT)"; exit 0; fi; exit $$rc

gpu-bundle: $(BIN) $(GPU_CHECK)
	@bash cuda/bundle.sh $(GPU_BUNDLE) $(BIN) $(GPU_CHECK)

else

gpu-check gpu-bundle:
	@echo "$@: no CUDA toolkit here (nvcc not on PATH nor in /usr/local/cuda/bin): the GPU backend is not built" >&2; exit 1

endif

# mk/gpu.mk - the GPU backend's targets (sources in cuda/, see cuda/README.md).
#
#   make gpu-check    build, then run build/gpu_check on this machine's GPU
#                     (writes bench/gpu.json); without a usable GPU it says so
#   make gpu-bundle   build/gpu-bundle/: gpu_check + presight + the shared
#                     libraries a bare GPU machine lacks + run.sh (< 60 MB)
#
# The trainer's GPU path is build/libpresight-cuda.so (cuda/*.cu, the engine
# of stages/gpu_engine.h), which presight dlopen()s only when run.backend asks
# for the GPU; `make` builds it beside presight whenever nvcc is found. Its
# CPU-emulator twin build/emu/libpresight-cuda.so lets tests/t_gpu_train.sh
# train through the engine on machines without a GPU.
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
GPU_EMU_CPU   := $(addprefix $(BUILD)/core/,backend_cpu.o blas.o error.o rng.o model.o optim.o simd.o simd_avx2.o simd_avx512.o)
GPU_EMU_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
GPU_EMU_FLAGS := -std=c++17 -O1 -g -x c++ -DPRESIGHT_EMU -Icuda/emu/include -Icuda -Icore -Impi -Istages \
                 -fno-strict-aliasing -fopenmp -Wall -Wno-unused-function -Wno-unknown-pragmas $(GPU_EMU_SAN)

$(BUILD)/emu/%.o: %.cu cuda/check/one_rank.cuh cuda/emu/emu.h cuda/emu/include/nccl.h cuda/emu/include/cuda_pipeline_primitives.h cuda/gpu.h cuda/gpu_internal.cuh cuda/launch.cuh cuda/block.cuh stages/gpu_engine.h
	@mkdir -p $(dir $@)
	$(CXX) $(GPU_EMU_FLAGS) -c $< -o $@

$(GPU_EMU): $(GPU_EMU_OBJ) $(GPU_EMU_CPU)
	$(CXX) $(GPU_EMU_SAN) -o $@ $^ -fopenmp -ldl -lm

tests-build: $(GPU_EMU)

# The engine's model contract against core/model.c (tests/t_gpu_contract.sh),
# on the same emulator objects.
GPU_CONTRACT_EMU := $(BUILD)/engine_check_emu
$(GPU_CONTRACT_EMU): $(filter-out %/gpu_check.o,$(GPU_EMU_OBJ)) $(BUILD)/emu/cuda/check/engine_check.o $(GPU_EMU_CPU) \
                     $(BUILD)/core/decode.o $(BUILD)/core/projector.o
	$(CXX) $(GPU_EMU_SAN) -o $@ $^ -fopenmp -ldl -lm

tests-build: $(GPU_CONTRACT_EMU)

# The engine on the emulator: the same sources, position-independent, without
# the sanitizers (they cannot load into an uninstrumented presight), -O2.
GPU_EMU_SO     := $(BUILD)/emu/libpresight-cuda.so
GPU_EMU_SO_OBJ := $(patsubst %.cu,$(BUILD)/emu-pic/%.o,$(wildcard cuda/*.cu)) $(BUILD)/emu-pic/core/error.o
# Its NCCL is MPI (cuda/emu/include/nccl.h), so several ranks can train through it.
GPU_EMU_SO_FLAGS := $(filter-out $(GPU_EMU_SAN) -O1,$(GPU_EMU_FLAGS)) -O2 -fPIC -DEMU_NCCL_MPI \
                    $(shell pkg-config --cflags ompi-c)

$(BUILD)/emu-pic/%.o: %.cu cuda/emu/emu.h cuda/emu/include/nccl.h cuda/emu/include/cuda_pipeline_primitives.h cuda/gpu.h cuda/gpu_internal.cuh cuda/launch.cuh cuda/block.cuh stages/gpu_engine.h
	@mkdir -p $(dir $@)
	$(CXX) $(GPU_EMU_SO_FLAGS) -c $< -o $@

$(BUILD)/emu-pic/core/error.o: core/error.c core/error.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -fPIC -Icore -c $< -o $@

$(GPU_EMU_SO): $(GPU_EMU_SO_OBJ)
	@mkdir -p $(dir $@)
	$(CXX) -shared -Wl,--no-undefined -o $@ $^ -fopenmp -ldl -lm $(shell pkg-config --libs ompi-c)

tests-build: $(GPU_EMU_SO)

gpu-emu: $(GPU_EMU)
	@GPU_CHECK_TIMEOUT_SCALE=$${GPU_CHECK_TIMEOUT_SCALE:-4} ASAN_OPTIONS=detect_leaks=0 $(GPU_EMU) --json $(BUILD)/gpu-emu.json

ifeq ($(HAVE_CUDA),1)

GPU_CHECK_OBJ := $(BUILD)/cuda/check/gpu_check.o
GPU_CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/%.o)
GPU_HDRS      := cuda/gpu.h cuda/gpu_internal.cuh cuda/launch.cuh cuda/block.cuh core/error.h stages/gpu_engine.h \
                 core/model.h mpi/sharding.h
GPU_ENGINE    := $(BUILD)/libpresight-cuda.so
GPU_LDLIBS    := -fopenmp -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static \
                 -ldl -lrt -lpthread -lm -lstdc++

# The Makefile's .cu rule writes no dependency files: name the headers here.
$(GPU_CU_OBJ): $(GPU_HDRS)

$(GPU_CHECK_OBJ): cuda/check/gpu_check.cu cuda/check/one_rank.cuh $(GPU_HDRS) core/backend.h core/model.h core/blas.h core/optim.h core/config.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -Icuda -c $< -o $@

$(GPU_CHECK): $(GPU_CHECK_OBJ) $(LIB)
	$(CXX) -o $@ $(GPU_CHECK_OBJ) $(LIB) $(GPU_LDLIBS)

# The engine presight loads for run.backend = cuda: cuBLASLt linked
# dynamically (found through the rpath or LD_LIBRARY_PATH), the CUDA runtime
# statically, NCCL dlopen()ed; error.c is its only part of the C library.
$(BUILD)/pic/core/error.o: core/error.c core/error.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -fPIC -Icore -c $< -o $@

$(GPU_ENGINE): $(GPU_CU_OBJ) $(BUILD)/pic/core/error.o
	$(CXX) -shared -Wl,--no-undefined -o $@ $^ -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt \
	    -lcudart_static -ldl -lrt -lpthread -lm -lstdc++

all: $(GPU_ENGINE)

# The engine's model contract (decoding, projector) for a real GPU: cuda/check/device_decode.sh
# builds the same program on a GPU machine without the Makefile's dependencies and runs it.
ENGINE_CHECK := $(BUILD)/engine_check
$(BUILD)/cuda/check/engine_check.o: cuda/check/engine_check.cu cuda/check/one_rank.cuh $(GPU_HDRS) core/decode.h core/projector.h core/optim.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -Icuda -c $< -o $@

$(ENGINE_CHECK): $(BUILD)/cuda/check/engine_check.o $(LIB)
	$(CXX) -o $@ $< $(LIB) $(GPU_LDLIBS)

# CI compiles and links the checks and the engine on every `make test` (tests/t_gpu.sh runs the check).
tests-build: $(GPU_CHECK) $(GPU_ENGINE) $(ENGINE_CHECK)

gpu-check: $(BIN) $(GPU_CHECK)
	@rc=0; $(GPU_CHECK) --json bench/gpu.json || rc=$$?; \
	if [ $$rc -eq 77 ]; then echo "$(GPU_HINT)"; exit 0; fi; exit $$rc

gpu-bundle: $(BIN) $(GPU_CHECK) $(GPU_ENGINE) $(BUILD)/bench/train_bench
	@bash cuda/bundle.sh $(GPU_BUNDLE) $(BIN) $(GPU_CHECK) $(GPU_ENGINE) $(BUILD)/bench/train_bench

else

gpu-check gpu-bundle:
	@echo "$@: no CUDA toolkit here (nvcc not on PATH nor in /usr/local/cuda/bin): the GPU backend is not built" >&2; exit 1

endif

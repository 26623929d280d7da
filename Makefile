# presight - one entry point for humans and CI.
#
#   make deps        install missing Debian packages (fast no-op when present)
#   make / all       build build/presight
#   make test        deps + build + every test (unit, gradient, reference, ...)
#   make check       the fast tier: unit tests + fast scripted ones (< 1 min once built)
#   make quickstart  deps + build + a small end-to-end run on embedded data
#   make bench       performance table (never part of make test)
#
# Sources are found by folder, one layer each (README, "Layout"): core/ (the
# leaf: model, backends, config, optimizer math), mpi/ (communicators,
# sharding) and datasets/ (data readers) on core, stages/ (the job runner,
# checkpoints, planner, stages) on those three, slurm/ (studies) on stages,
# cli/ (the presight binary) on top. A folder's files see the headers of
# their own folder and the folders below only (LAYER_INC), so a wrong-way
# include is a build error. Each tests/test_*.c is
# a Criterion binary; tests/f64_*.c are built against a double-precision build
# of the model and CPU backend for finite-difference checks. mk/*.mk add
# targets owned by one part of the project (data set-up, ...).

CC      ?= gcc
BUILD   := build
PYTHON  := /usr/bin/python3

PKGS      := hdf5-openmpi libconfig libpcre2-8 ompi-c json-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS  ?= -O3 -march=native -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp $(LAYER_INC) -MMD -MP
LDLIBS  += $(PKG_LIBS) -fopenmp -ldl -lm -lz -lpng -ljpeg

# Include paths by layer (pattern-specific, so each object gets its folder's).
# core/ sees neither MPI's nor HDF5's headers; tests, tools and benchmarks
# see everything.
INC_core     := -Icore $(shell pkg-config --cflags libconfig 2>/dev/null)
INC_mpi      := -Icore -Impi $(PKG_CFLAGS)
INC_datasets := -Icore -Idatasets $(PKG_CFLAGS)
INC_stages   := -Icore -Impi -Idatasets -Istages $(PKG_CFLAGS)
INC_slurm    := $(INC_stages) -Islurm
INC_cli      := $(INC_slurm) -Icli
LAYER_INC     = $(INC_cli)
$(BUILD)/core/%.o $(BUILD)/f64/core/%.o: LAYER_INC = $(INC_core)
$(BUILD)/mpi/%.o: LAYER_INC = $(INC_mpi)
$(BUILD)/datasets/%.o: LAYER_INC = $(INC_datasets)
$(BUILD)/stages/%.o: LAYER_INC = $(INC_stages)
$(BUILD)/slurm/%.o: LAYER_INC = $(INC_slurm)

# The run-time dispatched kernels (core/simd.h): each ISA file is compiled
# for that ISA alone, so that the AVX2 set holds no AVX-512 instruction even
# under -march=native on an AVX-512 machine (its functions also carry target
# attributes, so builds without these flags - sanitizers, fuzz - still work).
$(BUILD)/core/simd_avx2.o: CFLAGS += -mno-avx512f -mavx2 -mfma
$(BUILD)/core/simd_avx512.o: CFLAGS += -mavx512f -mavx512dq -mavx2 -mfma

# CUDA is optional: when nvcc is found, cuda/*.cu are compiled into the
# library and PRESIGHT_CUDA is defined; otherwise the CPU backend stands alone.
NVCC    ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CU_SRC  := $(wildcard cuda/*.cu)
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CU_SRC)),)
HAVE_CUDA := 1
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CFLAGS    += -DPRESIGHT_CUDA -I$(CUDA_HOME)/include -Icuda
NVFLAGS   ?= -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -Icore -Impi -Istages \
             -Xcompiler -fPIC
# --as-needed: only binaries that call into cuda/ (gpu_check) record the CUDA
# libraries; presight itself probes for a GPU with dlopen and stays light.
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,--as-needed -lcudart -lcublasLt -lcublas -lnccl -lstdc++ -Wl,--no-as-needed
endif
endif

LIB_SRC  := $(wildcard core/*.c mpi/*.c datasets/*.c stages/*.c slurm/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(if $(HAVE_CUDA),$(CU_SRC:%.cu=$(BUILD)/%.o))
CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
LIB      := $(BUILD)/libpresight.a
BIN      := $(BUILD)/presight

# The double-precision twin of the numeric core, for gradient checks.
F64_SRC  := core/model.c core/backend_cpu.c core/blas.c core/error.c core/rng.c core/projector.c core/decode.c
F64_OBJ  := $(F64_SRC:%.c=$(BUILD)/f64/%.o)

# stages/ (the eval scoring files for now) until per-layer include paths define INC_stages.
ifndef INC_stages
CFLAGS   += -Istages
endif

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
F64_TEST_SRC := $(wildcard tests/f64_*.c)
F64_TEST_BIN := $(F64_TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOL_SRC := $(wildcard tests/tools/*.c bench/*.c)
TOOL_BIN := $(patsubst %.c,$(BUILD)/%,$(TOOL_SRC))

.PHONY: all deps test check quickstart bench clean gpu-check format
all: $(BIN)

deps:
	@bash mk/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/f64/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DPRESIGHT_REAL_DOUBLE -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/test_%: tests/test_%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS) -lcriterion

$(BUILD)/tests/f64_%: tests/f64_%.c $(F64_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DPRESIGHT_REAL_DOUBLE $< $(F64_OBJ) -o $@ $(LDLIBS) -lcriterion

$(BUILD)/tests/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)

tests-build: $(BIN) $(TEST_BIN) $(F64_TEST_BIN) $(TOOL_BIN)

test: deps
	@$(MAKE) --no-print-directory tests-build test-data
	@bash tests/run.sh

check: deps
	@$(MAKE) --no-print-directory tests-build test-data
	@bash tests/run.sh --fast

quickstart: deps
	@$(MAKE) --no-print-directory $(BIN) quickstart-data
	@bash mk/quickstart.sh

bench: deps
	@$(MAKE) --no-print-directory $(BIN) $(TOOL_BIN) bench-data
	@bash bench/run.sh

clean:
	rm -rf $(BUILD)

format:
	clang-format -i core/*.[ch] cli/*.[ch] mpi/*.[ch] datasets/*.[ch] stages/*.[ch] slurm/*.[ch] tests/*.c

# Data set-up hooks; mk/*.mk fragments add prerequisites to these.
.PHONY: test-data quickstart-data bench-data tests-build
test-data:
quickstart-data:
bench-data:

-include $(wildcard mk/*.mk)
-include $(shell find $(BUILD) -type f -name '*.d' 2>/dev/null)

# `make print-INC_core` etc.: a variable's value, for scripts (tests/t_layers.sh).
print-%:
	@echo '$($*)'

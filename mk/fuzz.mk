# mk/fuzz.mk - libFuzzer targets for every reader of other people's files
# (tests/fuzz/fuzz_*.c), built with clang and AddressSanitizer + UBSan.
#
#   make fuzz                     each target for FUZZ_SECONDS (60) on its seed corpus
#   make fuzz FUZZ_SECONDS=3600   a campaign; findings land in build/fuzz/findings/
#   make fuzz-build               the binaries only (tests/t_fuzz.sh runs each briefly)
#   make fuzz-campaign FUZZ_SECONDS=3600   every target at once on idle cycles only
#                                 (tests/fuzz/campaign.sh: SCHED_IDLE, one thread each)
#
# The library is compiled a second time with clang (coverage + sanitizers), into
# build/fuzz/obj: every folder below cli/, found by glob like the main build.
# A new reader gets a tests/fuzz/fuzz_<reader>.c and, when it has real files to
# start from, a seed line in tests/fuzz/seeds.sh.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -O1 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-pass-failed -fopenmp $(FUZZ_SAN) \
                $(addprefix -I,$(filter-out cli cuda,$(patsubst %/,%,$(sort $(dir $(LIB_SRC)))))) $(PKG_CFLAGS)
# The project's libraries less CUDA's (the fuzz build has no GPU objects).
fuzz_comma   := ,
FUZZ_LDLIBS  := $(filter-out -fopenmp -L$(CUDA_HOME)/lib64 -Wl$(fuzz_comma)--as-needed -Wl$(fuzz_comma)--no-as-needed \
                  -lcudart -lcublasLt -lcublas -lnccl -lstdc++,$(LDLIBS))
FUZZ_LIB_SRC := $(LIB_SRC)
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_LIB     := $(FUZZ_DIR)/libpresight-fuzz.a
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN     := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_DIR)/%)

.PHONY: fuzz fuzz-build fuzz-campaign
fuzz-build: $(FUZZ_BIN)

fuzz-campaign: deps
	@$(MAKE) --no-print-directory fuzz-build test-data
	@bash tests/fuzz/campaign.sh $(FUZZ_SECONDS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build test-data
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_LIB): $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_input.h tests/fuzz/fuzz_h5.h $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_LIB) -o $@ $(FUZZ_LDLIBS)

# make test builds the targets too: tests/t_fuzz.sh runs each for a few seconds,
# so a target that no longer builds, or a reader that crashes at once, fails CI.
tests-build: $(FUZZ_BIN)

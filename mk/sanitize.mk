# mk/sanitize.mk - the library, the presight binary and the unit tests built
# again with AddressSanitizer + UndefinedBehaviorSanitizer (LeakSanitizer on),
# into build/san/ (tests/t_sanitizers.sh runs them; part of make test).
#
#   make sanitize-build      build/san/presight and build/san/tests/test_*
#
# The CPU build only (no CUDA objects: the GPU engine has its own ASan build,
# cuda/emu). -Werror stays with the main build: gcc warns differently at -O1. Suppressions, third-party libraries only: tests/sanitizers/lsan.supp.
SAN_DIR    := $(BUILD)/san
SAN_FLAGS  := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
SAN_CFLAGS := $(filter-out -O3 -Werror -DPRESIGHT_CUDA -I$(CUDA_HOME)/include -Icuda,$(CFLAGS)) $(SAN_FLAGS)
SAN_LDLIBS := $(filter-out -lcudart -lcublasLt -lcublas -lnccl -lstdc++,$(LDLIBS)) $(SAN_FLAGS)
SAN_LIB    := $(SAN_DIR)/libpresight.a
SAN_OBJ    := $(LIB_SRC:%.c=$(SAN_DIR)/%.o)
SAN_TESTS  := $(TEST_SRC:tests/%.c=$(SAN_DIR)/tests/%) $(SAN_DIR)/tests/planted_leak

.PHONY: sanitize-build
sanitize-build: $(SAN_DIR)/presight $(SAN_TESTS)
tests-build: sanitize-build

$(SAN_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -c $< -o $@

$(SAN_LIB): $(SAN_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SAN_DIR)/presight: $(CLI_SRC:%.c=$(SAN_DIR)/%.o) $(SAN_LIB)
	$(CC) $(SAN_CFLAGS) $^ -o $@ $(SAN_LDLIBS)

$(SAN_DIR)/tests/test_%: tests/test_%.c $(SAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) $< $(SAN_LIB) -o $@ $(SAN_LDLIBS) -lcriterion

$(SAN_DIR)/tests/planted_leak: tests/sanitizers/planted_leak.c $(SAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) $< $(SAN_LIB) -o $@ $(SAN_LDLIBS)

sanitize-build: $(SAN_DIR)/no_dlclose.so
$(SAN_DIR)/no_dlclose.so: tests/sanitizers/no_dlclose.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -shared -fPIC $< -o $@

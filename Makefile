# Thin wrapper around Meson. The two commands that matter: `make demo`, `make check`.
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
MESON_TEST = meson test --print-errorlogs --num-processes 2

.PHONY: all deps build check check-unit check-integration check-lxc check-asan demo install \
        fuzz clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

# Meson puts binaries beside their sources; scripts and docs use build/ctagentd
# and build/ctagent.
build: $(BUILD)/build.ninja
	ninja -C $(BUILD)
	@ln -sf src/daemon/ctagentd $(BUILD)/ctagentd
	@ln -sf src/cli/ctagent $(BUILD)/ctagent

# Every test: unit, XSD validation, fuzz-corpus replay, integration against real
# daemons, and (as root) real LXC containers.
check: deps build
	@suites="--suite unit --suite fuzz-replay --suite integration"; \
	 if [ "$$(id -u)" = 0 ]; then suites="$$suites --suite lxc"; \
	 else echo "check: not root, skipping the lxc suite (real containers)"; fi; \
	 $(MESON_TEST) -C $(BUILD) $$suites; rc=$$?; \
	 ./scripts/test-summary.py $(BUILD); exit $$rc

check-unit: build
	$(MESON_TEST) -C $(BUILD) --suite unit --suite fuzz-replay

check-integration: build
	$(MESON_TEST) -C $(BUILD) --suite integration

check-lxc: build
	$(MESON_TEST) -C $(BUILD) --suite lxc

$(ASAN_BUILD)/build.ninja:
	CC=clang meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false \
		--buildtype=debug -Dc_args=-fno-sanitize-recover=all

# The same suites under AddressSanitizer + UndefinedBehaviorSanitizer.
check-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	@ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
	 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	 $(MESON_TEST) -C $(ASAN_BUILD) --suite unit --suite fuzz-replay --suite integration; \
	 rc=$$?; ./scripts/test-summary.py $(ASAN_BUILD); exit $$rc

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzzing=true --buildtype=debug

# Run every libFuzzer target for FUZZ_SECONDS (default 60) each.
FUZZ_SECONDS ?= 60
fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	./scripts/run-fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

demo: deps build
	./scripts/demo.sh $(BUILD)

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

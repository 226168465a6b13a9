# Makefile: the two README commands and their helpers. CMake does the real build;
# this file only installs packages, configures build folders and runs things.
JOBS ?= $(shell nproc)
BUILD ?= build
.PHONY: demo test test-asan lint build deps clean

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The main job: train a small MoE model on the default corpus, sample, print costs,
# then plot the run (`frugal plot`, through gnuplot) and print where the plot is.
DEMO_OUT = $(or $(FG_DEMO_OUT),runs/demo)
demo: build
	@scripts/demo.sh $(BUILD)/frugal
	@$(BUILD)/frugal plot $(DEMO_OUT) >/dev/null
	@echo "demo: plot of the run: $(DEMO_OUT)/plot.png (and plot.svg)"

# The whole test suite (warnings are errors), the real clients of the export formats
# (scripts/client_checks.sh; skipped without their Python packages), format and static checks, then the
# same suite again under AddressSanitizer + UBSan.
test: deps
	@cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFG_WERROR=ON >/dev/null
	@cmake --build build-test -j $(JOBS)
	@cd build-test && ctest -j $(JOBS) --output-on-failure --timeout 900
	@scripts/client_checks.sh build-test/frugal
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory test-asan

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFG_SANITIZE=ON -DFG_WERROR=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest -j $(JOBS) --output-on-failure --timeout 1800

lint:
	@scripts/lint.sh

clean:
	rm -rf build build-test build-asan

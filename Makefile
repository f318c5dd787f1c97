# twin's front door. Every target first runs scripts/deps.sh (packages + test data).
#   make        build (build/)            make test   format check, sanitizer tests, all tests
#   make demo   the main job, end to end  make bench  the benchmarks (bench/)
#   make fuzz   the fuzz targets (fuzz/), FUZZ_SECONDS (20) each, clang, in build-fuzz/
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 20
TEST_FUZZ_SECONDS ?= 10
CMAKE_FLAGS ?=

.PHONY: all deps build test test-unit test-asan test-fuzz fuzz format-check format demo bench \
	test-cuda clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

# The order puts CTest's summary of the full build last (after a short run of the fuzzers).
test: deps format-check test-asan test-fuzz build
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -LE cuda

test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DTWIN_SANITIZE=ON -DTWIN_BENCH=OFF >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS) -- --no-print-directory
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -L unit

# libFuzzer targets over the parsers of untrusted input (fuzz/; scripts/fuzz.sh says more).
fuzz: deps
	@FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(FUZZ_SECONDS)

test-fuzz: deps
	@FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(TEST_FUZZ_SECONDS)

# The GPU machine only: the CUDA tests (label cuda), then the op tests again under
# compute-sanitizer's memcheck (API errors not reported: test_ops provokes an out-of-memory).
CUDA_MEMCHECK_TESTS = cuda_test_ops cuda_test_gemv cuda_test_attn cuda_test_train
test-cuda: build
	@ctest --test-dir $(BUILD) --output-on-failure -L cuda
	@for t in $(CUDA_MEMCHECK_TESTS); do \
	    echo "memcheck $$t"; \
	    compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 1 \
	        $(BUILD)/$$t > $(BUILD)/$$t.memcheck 2>&1 || { cat $(BUILD)/$$t.memcheck; exit 1; }; \
	    grep "ERROR SUMMARY" $(BUILD)/$$t.memcheck; \
	done

format-check: deps
	@scripts/check_format.sh

format:
	@scripts/check_format.sh --fix

demo: build
	@scripts/demo.sh $(BUILD)

bench: build
	@scripts/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

# The two commands of the README:
#   make demo   installs what is missing, builds, runs examples/mlp (GPU if present, else CPU sim)
#   make test   the same set-up and build, then every test that can run on this machine, then the
#               whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer
# and make install PREFIX=/some/where (default /usr/local; DESTDIR=... stages it for packaging).
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX ?= /usr/local

.PHONY: all setup build demo install test test-fast asan clean

all: build

setup:
	@sh scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/examples/mlp_demo

# mlkc, libmlkrt (.a and .so), the headers, the stdlib, the CMake package and mlkrt.pc.
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# GPU tests (label gpu) run verbosely, so that a machine without a GPU shows why they skip.
test-fast: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -LE gpu
	@ctest --test-dir $(BUILD) --output-on-failure -L gpu -V > $(BUILD)/gpu-tests.log 2>&1; rc=$$?; \
	  grep -E "SKIP|^[0-9]+: (ok|FAIL|device|backend)|Test +#|tests passed" $(BUILD)/gpu-tests.log; exit $$rc

asan: setup
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMLK_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE gpu

test: test-fast asan

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

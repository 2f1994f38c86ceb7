# dtmm - the README's two commands are `make demo` and `make test`.
# Each creates .venv if missing, installs the pinned Python packages and the
# Debian packages (QEMU, Arm GCC, newlib; Chromium for the report's browser test) the project needs, then runs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dtmm-setup-stamp
DEB_PACKAGES := qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# CI and fresh machines have 2 cores: run tests on both.
PYTEST_ARGS ?= -n 2 -q

.PHONY: setup apt demo test test-all test-sanitize fuzz clean

setup: apt $(STAMP)

apt:
	@if command -v qemu-system-arm >/dev/null && command -v arm-none-eabi-gcc >/dev/null \
	    && dpkg -s libnewlib-arm-none-eabi >/dev/null 2>&1 && command -v chromium >/dev/null; then \
	  echo "Debian packages present: $(DEB_PACKAGES)"; \
	else \
	  echo "installing Debian packages: $(DEB_PACKAGES)"; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(DEB_PACKAGES); \
	fi

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned to 2.13.0 (CPU build) in requirements.lock: never unpinned.
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

demo: setup
	$(BIN)/dtmm demo

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow" --doctest-modules dtmm tests

test-all: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS) --doctest-modules dtmm tests

# The host kernels and generated models built with -fsanitize=address,undefined
# -fno-sanitize-recover=all (any finding aborts the test run): the kernel tests, the
# zoo / synthetic / compressed bit-exact tests of the generated C model on the host,
# the compressed-op tests (FWCS / CSR / pattern conv, compressed FC, concat in place)
# and the hostile-file tests. Builds go to their own cache (build/sanitize-cache).
# Not run here: tests that only exercise torch's C++ loader or TFLite Micro refusing a
# model (a preloaded ASan runtime aborts in its __cxa_throw interceptor on the first C++
# exception torch or TFLM's interpreter throws: an ASan/preload limitation, not a finding
# in dtmm's C code).
ASAN_LIB = $(shell gcc -print-file-name=libasan.so)
SANITIZE_ENV = DTMM_SANITIZE=1 DTMM_CACHE_DIR=$(CURDIR)/build/sanitize-cache \
	LD_PRELOAD=$(ASAN_LIB) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
SANITIZE_TESTS = tests/test_kernels.py tests/test_codegen.py tests/test_untrusted.py \
	tests/test_compressed.py tests/test_compressed_fc.py tests/test_concat_in_place.py
test-sanitize: setup
	$(SANITIZE_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS) -p no:cacheprovider \
	  -m "not slow and not qemu" \
	  -k "not qemu and not firmware and not cortex_m and not damaged_checkpoints and not tflm_refuses" \
	  $(SANITIZE_TESTS)

# The fuzz harness at full size (scripts/fuzz_models.py; writes BENCHMARKS.md).
fuzz: setup
	$(BIN)/python scripts/fuzz_models.py --mutants 10000 --seed 12

clean:
	rm -rf build runs .pytest_cache

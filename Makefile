# dtmm - the README's two commands are `make demo` and `make test`.
# Each creates .venv if missing, installs the pinned Python packages and the
# Debian packages (QEMU, Arm GCC, newlib) the project needs, then runs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dtmm-setup-stamp
DEB_PACKAGES := qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# CI and fresh machines have 2 cores: run tests on both.
PYTEST_ARGS ?= -n 2 -q

.PHONY: setup apt demo test test-all clean

setup: apt $(STAMP)

apt:
	@if command -v qemu-system-arm >/dev/null && command -v arm-none-eabi-gcc >/dev/null \
	    && dpkg -s libnewlib-arm-none-eabi >/dev/null 2>&1; then \
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

clean:
	rm -rf build runs .pytest_cache
